//! The proxy's metrics. Handles for each route and backend are created once at start,
//! so that serving a request does no label lookups.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use std::sync::{Arc, Mutex};

use crate::cache::{CacheMetrics, HttpCache};
use crate::ratelimit::Limiter;
use crate::upstream::backend::BackendMetrics;

/// Components reported on each scrape, by route.
type ByRoute<T> = Arc<Mutex<Vec<(String, T)>>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    pool: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendClassLabels {
    pool: String,
    backend: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteClassLabels {
    route: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChoiceLabels {
    route: String,
    choice: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    route: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TeeLabels {
    route: String,
    outcome: String,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Metric families of the proxy.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    backend_responses: Family<BackendClassLabels, Counter>,
    backend_failures: Family<BackendLabels, Counter>,
    backend_in_flight: Family<BackendLabels, Gauge>,
    backend_ready: Family<BackendLabels, Gauge>,
    backend_ejected: Family<BackendLabels, Gauge>,
    backend_ejections: Family<BackendLabels, Counter>,
    requests: Family<RouteClassLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<RouteLabels, Gauge>,
    bytes_in: Family<RouteLabels, Counter>,
    bytes_out: Family<RouteLabels, Counter>,
    retries: Family<PoolLabels, Counter>,
    shard_requests: Family<ChoiceLabels, Counter>,
    split_requests: Family<ChoiceLabels, Counter>,
    tee: Family<TeeLabels, Counter>,
    cache_requests: Family<OutcomeLabels, Counter>,
    cache_coalesced: Family<RouteLabels, Counter>,
    cache_revalidated: Family<RouteLabels, Counter>,
    ratelimit: Family<OutcomeLabels, Counter>,
    caches: CacheCollector,
}

/// Reads the state of every cache and limiter on each scrape.
#[derive(Clone, Debug, Default)]
pub struct CacheCollector {
    caches: ByRoute<Arc<HttpCache>>,
    limiters: ByRoute<Vec<Arc<Limiter>>>,
}

impl prometheus_client::collector::Collector for CacheCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let caches = self.caches.lock().map(|c| c.clone()).unwrap_or_default();
        let limiters = self.limiters.lock().map(|l| l.clone()).unwrap_or_default();
        type Reading = fn(&HttpCache) -> f64;
        let gauges: [(&str, &str, Reading); 4] = [
            (
                "podkit_cache_stored_bytes",
                "Bytes charged for stored responses (bodies, heads, overhead)",
                |c| c.store().weight() as f64,
            ),
            (
                "podkit_cache_filling_bytes",
                "Bytes of responses being stored as they arrive",
                |c| c.filling_bytes() as f64,
            ),
            ("podkit_cache_entries", "Keys stored", |c| {
                c.store().len() as f64
            }),
            (
                "podkit_cache_hit_ratio",
                "Hits over hits and misses since start",
                |c| c.hit_ratio(),
            ),
        ];
        for (name, help, read) in gauges {
            if caches.is_empty() {
                break;
            }
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (route, cache) in &caches {
                let labels = RouteLabels {
                    route: route.clone(),
                };
                ConstGauge::new(read(cache)).encode(family.encode_family(&labels)?)?;
            }
        }
        if !caches.is_empty() {
            let mut family = encoder.encode_descriptor(
                "podkit_cache_evictions",
                "Stored responses evicted to stay within --memory",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (route, cache) in &caches {
                let labels = RouteLabels {
                    route: route.clone(),
                };
                ConstCounter::new(cache.store().evictions())
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        if !limiters.is_empty() {
            let mut family = encoder.encode_descriptor(
                "podkit_ratelimit_keys",
                "Clients tracked by the rate limiter",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (route, route_limiters) in &limiters {
                let labels = RouteLabels {
                    route: route.clone(),
                };
                let keys: usize = route_limiters.iter().map(|l| l.keys()).sum();
                ConstGauge::new(keys as i64).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Handles of one route.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    /// Responses by status class (1xx..5xx).
    pub requests: [Counter; 5],
    pub duration: Histogram,
    pub in_flight: Gauge,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// Handles of a tee.
#[derive(Clone, Debug, Default)]
pub struct TeeMetrics {
    pub sent: Counter,
    pub dropped: Counter,
    pub failed: Counter,
}

/// The index of a status code's class in `[1xx, 2xx, 3xx, 4xx, 5xx]`.
pub fn class_index(status: http::StatusCode) -> usize {
    (usize::from(status.as_u16() / 100)).clamp(1, 5) - 1
}

impl ProxyMetrics {
    /// Registers the families in `metrics`.
    pub fn register(metrics: &podkit_core::metrics::Metrics) -> ProxyMetrics {
        let m = ProxyMetrics {
            backend_responses: Family::default(),
            backend_failures: Family::default(),
            backend_in_flight: Family::default(),
            backend_ready: Family::default(),
            backend_ejected: Family::default(),
            backend_ejections: Family::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            retries: Family::default(),
            shard_requests: Family::default(),
            split_requests: Family::default(),
            tee: Family::default(),
            cache_requests: Family::default(),
            cache_coalesced: Family::default(),
            cache_revalidated: Family::default(),
            ratelimit: Family::default(),
            caches: CacheCollector::default(),
        };
        macro_rules! reg {
            ($name:expr, $help:expr, $family:expr) => {
                metrics.register($name, $help, $family.clone())
            };
        }
        reg!(
            "podkit_proxy_backend_responses",
            "Responses from each backend by status class",
            m.backend_responses
        );
        reg!(
            "podkit_proxy_backend_failures",
            "Tries that got no response from the backend (refused, reset, timeout)",
            m.backend_failures
        );
        reg!(
            "podkit_proxy_backend_in_flight",
            "Requests in flight to each backend",
            m.backend_in_flight
        );
        reg!(
            "podkit_proxy_backend_ready",
            "1 when the backend's readiness probe passes",
            m.backend_ready
        );
        reg!(
            "podkit_proxy_backend_ejected",
            "1 while the backend is ejected after failures",
            m.backend_ejected
        );
        reg!(
            "podkit_proxy_backend_ejections",
            "Times the backend was ejected",
            m.backend_ejections
        );
        reg!(
            "podkit_proxy_requests",
            "Requests answered by route and status class",
            m.requests
        );
        reg!(
            "podkit_proxy_request_duration_seconds",
            "Time from request to response head by route",
            m.duration
        );
        reg!(
            "podkit_proxy_in_flight",
            "Requests in flight by route",
            m.in_flight
        );
        reg!(
            "podkit_proxy_request_bytes",
            "Request body bytes received by route",
            m.bytes_in
        );
        reg!(
            "podkit_proxy_response_bytes",
            "Response body bytes sent by route",
            m.bytes_out
        );
        reg!(
            "podkit_proxy_retries",
            "Tries on another backend after a failure, by pool",
            m.retries
        );
        reg!(
            "podkit_proxy_shard_requests",
            "Requests by shard (a hot shard shows here)",
            m.shard_requests
        );
        reg!(
            "podkit_proxy_split_requests",
            "Requests by side of an experiment split",
            m.split_requests
        );
        reg!(
            "podkit_proxy_tee_requests",
            "Mirrored requests by outcome (sent, dropped, failed)",
            m.tee
        );
        reg!(
            "podkit_cache_requests",
            "Requests through the cache by outcome (hit, miss, stale, pass)",
            m.cache_requests
        );
        reg!(
            "podkit_cache_coalesced",
            "Misses that waited for another request's fetch of the same key",
            m.cache_coalesced
        );
        reg!(
            "podkit_cache_revalidations",
            "Stale responses refreshed by a 304 from the origin",
            m.cache_revalidated
        );
        reg!(
            "podkit_ratelimit_requests",
            "Requests by rate-limit verdict (allowed, limited)",
            m.ratelimit
        );
        metrics.register_collector(m.caches.clone());
        m
    }

    /// Handles for one backend of `pool`.
    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        let labels = BackendLabels {
            pool: pool.to_string(),
            backend: backend.to_string(),
        };
        BackendMetrics {
            responses: CLASSES.map(|class| {
                self.backend_responses
                    .get_or_create(&BackendClassLabels {
                        pool: pool.to_string(),
                        backend: backend.to_string(),
                        class: class.to_string(),
                    })
                    .clone()
            }),
            failures: self.backend_failures.get_or_create(&labels).clone(),
            in_flight: self.backend_in_flight.get_or_create(&labels).clone(),
            ready: self.backend_ready.get_or_create(&labels).clone(),
            ejected: self.backend_ejected.get_or_create(&labels).clone(),
            ejections: self.backend_ejections.get_or_create(&labels).clone(),
        }
    }

    /// Forgets the series of a backend that left its pool.
    pub fn remove_backend(&self, pool: &str, backend: &str) {
        let labels = BackendLabels {
            pool: pool.to_string(),
            backend: backend.to_string(),
        };
        for class in CLASSES {
            self.backend_responses.remove(&BackendClassLabels {
                pool: pool.to_string(),
                backend: backend.to_string(),
                class: class.to_string(),
            });
        }
        self.backend_failures.remove(&labels);
        self.backend_in_flight.remove(&labels);
        self.backend_ready.remove(&labels);
        self.backend_ejected.remove(&labels);
        self.backend_ejections.remove(&labels);
    }

    /// Handles for one route.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let labels = RouteLabels {
            route: route.to_string(),
        };
        RouteMetrics {
            requests: CLASSES.map(|class| {
                self.requests
                    .get_or_create(&RouteClassLabels {
                        route: route.to_string(),
                        class: class.to_string(),
                    })
                    .clone()
            }),
            duration: self.duration.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            bytes_in: self.bytes_in.get_or_create(&labels).clone(),
            bytes_out: self.bytes_out.get_or_create(&labels).clone(),
        }
    }

    /// The retry counter of a pool.
    pub fn retries(&self, pool: &str) -> Counter {
        self.retries
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .clone()
    }

    /// The request counter of one shard of a route.
    pub fn shard(&self, route: &str, shard: &str) -> Counter {
        self.shard_requests
            .get_or_create(&ChoiceLabels {
                route: route.to_string(),
                choice: shard.to_string(),
            })
            .clone()
    }

    /// The request counter of one side of a split.
    pub fn split_side(&self, route: &str, side: &str) -> Counter {
        self.split_requests
            .get_or_create(&ChoiceLabels {
                route: route.to_string(),
                choice: side.to_string(),
            })
            .clone()
    }

    /// The counters of a route's cache, which is also reported on each scrape.
    pub fn cache(
        &self,
        route: &str,
        cache_of: impl FnOnce(CacheMetrics) -> Arc<HttpCache>,
    ) -> Arc<HttpCache> {
        let get = |outcome: &str| {
            self.cache_requests
                .get_or_create(&OutcomeLabels {
                    route: route.to_string(),
                    outcome: outcome.to_string(),
                })
                .clone()
        };
        let labels = RouteLabels {
            route: route.to_string(),
        };
        let counters = CacheMetrics {
            hits: get("hit"),
            misses: get("miss"),
            stale: get("stale"),
            passes: get("pass"),
            revalidated: self.cache_revalidated.get_or_create(&labels).clone(),
            coalesced: self.cache_coalesced.get_or_create(&labels).clone(),
        };
        let cache = cache_of(counters);
        if let Ok(mut caches) = self.caches.caches.lock() {
            caches.push((route.to_string(), cache.clone()));
        }
        cache
    }

    /// The verdict counters of a route's rate limit; the limiter is reported on scrapes.
    pub fn rate_limit(&self, route: &str, route_limiters: Vec<Arc<Limiter>>) -> (Counter, Counter) {
        if let Ok(mut limiters) = self.caches.limiters.lock() {
            limiters.push((route.to_string(), route_limiters));
        }
        let get = |outcome: &str| {
            self.ratelimit
                .get_or_create(&OutcomeLabels {
                    route: route.to_string(),
                    outcome: outcome.to_string(),
                })
                .clone()
        };
        (get("allowed"), get("limited"))
    }

    /// The counters of a route's tee.
    pub fn tee(&self, route: &str) -> TeeMetrics {
        let get = |outcome: &str| {
            self.tee
                .get_or_create(&TeeLabels {
                    route: route.to_string(),
                    outcome: outcome.to_string(),
                })
                .clone()
        };
        TeeMetrics {
            sent: get("sent"),
            dropped: get("dropped"),
            failed: get("failed"),
        }
    }
}
