//! The request path: match a route, apply its stages (rate limit, cache), pick a pool
//! (directly, by experiment side, or by shard), forward, and turn the backend's answer
//! into the client's response.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;

use podkit_core::http::{text, Body, ConnInfo};
use podkit_hash::nginx::Ring;

use crate::body::{Limited, Tracked};
use crate::cache::{Fetch, HttpCache, Settings};
use crate::config::{ListenerConfig, RouteConfig, Target};
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::{class_index, ProxyMetrics, RouteMetrics};
use crate::ratelimit::{Decision, Limiter};
use crate::tee::Tee;
use crate::template::{RequestView, Template};
use crate::upstream::pool::{Head, Pool};

/// What a route does.
#[derive(Debug)]
enum Action {
    Pool(Arc<Pool>),
    Split {
        sticky: Template,
        weights: Vec<u32>,
        sides: Vec<(Arc<Pool>, Counter)>,
    },
    Shard {
        key: Template,
        ring: Ring,
        shards: Vec<(Arc<Pool>, Counter)>,
    },
    RedirectHttps {
        port: u16,
        status: StatusCode,
    },
}

/// A route's rate limits.
#[derive(Debug)]
pub struct RateStage {
    pub anon: Arc<Limiter>,
    anon_key: Template,
    pub user: Option<(Arc<Limiter>, Template)>,
    allowed: Counter,
    limited: Counter,
}

#[derive(Debug)]
struct Route {
    host: Option<String>,
    path: String,
    action: Action,
    tee: Option<Tee>,
    cache: Option<KeyedCache>,
    rate: Option<RateStage>,
    metrics: RouteMetrics,
}

/// The routes of one listener.
#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    max_body_bytes: u64,
}

impl Router {
    /// Builds the routes of `listener` (the config is already validated).
    pub fn new(
        listener: &ListenerConfig,
        pools: &BTreeMap<String, Arc<Pool>>,
        metrics: &ProxyMetrics,
        max_body_bytes: u64,
    ) -> Router {
        let mut routes: Vec<Route> = listener
            .routes
            .iter()
            .filter_map(|config| build_route(listener, config, pools, metrics))
            .collect();
        // Host-specific routes first, then longer path prefixes.
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.path.len().cmp(&a.path.len()))
        });
        Router {
            routes,
            max_body_bytes,
        }
    }

    /// The caches of this listener's routes, with their keys.
    pub fn caches(&self) -> Vec<KeyedCache> {
        self.routes.iter().filter_map(|r| r.cache.clone()).collect()
    }

    /// The rate limiters of this listener's routes.
    pub fn limiters(&self) -> Vec<Arc<Limiter>> {
        self.routes
            .iter()
            .filter_map(|r| r.rate.as_ref())
            .flat_map(|r| {
                std::iter::once(r.anon.clone()).chain(r.user.as_ref().map(|(l, _)| l.clone()))
            })
            .collect()
    }

    fn find(&self, host: &str, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            r.host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host))
                && path.starts_with(&r.path)
        })
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let host = crate::template::host_of(req.uri(), req.headers()).to_string();
        let Some(route) = self.find(&host, req.uri().path()) else {
            return ProxyError::NoRoute.into_response();
        };
        let started = Instant::now();
        route.metrics.in_flight.inc();
        let response = self.proxy(route, req, conn, &host).await;
        route.metrics.in_flight.dec();
        route.metrics.requests[class_index(response.status())].inc();
        route
            .metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        response
    }

    async fn proxy(
        &self,
        route: &Route,
        req: Request<Incoming>,
        conn: ConnInfo,
        host: &str,
    ) -> Response<Body> {
        let (parts, incoming) = req.into_parts();
        let verdict = route.rate.as_ref().map(|rate| {
            rate.check(&RequestView {
                parts: &parts,
                remote_ip: conn.peer.ip(),
                tls: conn.tls,
            })
        });
        if let Some(verdict) = verdict.filter(|v| !v.allowed) {
            let mut response = text(StatusCode::TOO_MANY_REQUESTS, "podkit: too many requests\n");
            verdict.write_headers(response.headers_mut());
            return response;
        }
        let mut response = self.forward(route, parts, incoming, conn, host).await;
        if let Some(verdict) = verdict {
            verdict.write_headers(response.headers_mut());
        }
        response
    }

    async fn forward(
        &self,
        route: &Route,
        mut parts: http::request::Parts,
        incoming: Incoming,
        conn: ConnInfo,
        host: &str,
    ) -> Response<Body> {
        if let Action::RedirectHttps { port, status } = &route.action {
            return redirect(&parts, host, *port, *status);
        }
        let content_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if content_length.is_some_and(|n| n > self.max_body_bytes) {
            return ProxyError::BodyTooLarge {
                limit: self.max_body_bytes,
            }
            .into_response();
        }
        let upgrade = parts.version == Version::HTTP_11 && headers::is_upgrade(&parts.headers);
        let client_upgrade = if upgrade {
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        } else {
            None
        };
        let view = RequestView {
            parts: &parts,
            remote_ip: conn.peer.ip(),
            tls: conn.tls,
        };
        let (Some(pool), key) = choose(&route.action, &view) else {
            return ProxyError::NoBackend {
                pool: "(every shard)".into(),
            }
            .into_response();
        };
        let cache_key = route.cache.as_ref().map(|stage| stage.key.render(&view));
        // An unsafe method may invalidate other targets too (its response's Location and
        // Content-Location): their keys are rendered from this request's fields.
        let invalidating = (route.cache.is_some() && !parts.method.is_safe())
            .then(|| (parts.headers.clone(), conn.peer.ip(), conn.tls));
        let head = upstream_head(&mut parts, conn, upgrade);
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = if incoming.is_end_stream() {
            None
        } else {
            let limited = Limited::new(
                incoming,
                self.max_body_bytes,
                exceeded.clone(),
                route.metrics.bytes_in.clone(),
            );
            Some(limited.boxed())
        };
        let body = match &route.tee {
            Some(tee) => tee.mirror(&head, body, content_length),
            None => body,
        };
        let fetch = UpstreamFetch {
            pool,
            key,
            bytes_out: route.metrics.bytes_out.clone(),
        };
        let response = match (&route.cache, cache_key) {
            (Some(stage), Some(cache_key)) if !upgrade => {
                let (template, host) = (stage.key.clone(), host.to_string());
                let key_of_path = move |target: &str| {
                    let (headers, remote_ip, tls) = invalidating.as_ref()?;
                    let view = TargetView {
                        headers,
                        remote_ip: *remote_ip,
                        tls: *tls,
                        host: &host,
                    };
                    key_for_target(&template, &view, target)
                };
                stage
                    .cache
                    .serve(cache_key, key_of_path, head, body, fetch)
                    .await
            }
            _ => fetch
                .send(head, body, client_upgrade)
                .await
                .unwrap_or_else(ProxyError::into_response),
        };
        if exceeded.load(Ordering::SeqCst) {
            return ProxyError::BodyTooLarge {
                limit: self.max_body_bytes,
            }
            .into_response();
        }
        response
    }
}

// === impl RateStage ===

impl RateStage {
    /// The verdict for this request: the user limit when the user key is present.
    fn check(&self, view: &RequestView<'_>) -> Decision {
        let decision = match &self.user {
            Some((limiter, key)) => match key.render(view) {
                user if !user.is_empty() => limiter.check(&user),
                _ => self.anon.check(&self.anon_key.render(view)),
            },
            None => self.anon.check(&self.anon_key.render(view)),
        };
        if decision.allowed {
            self.allowed.inc();
        } else {
            self.limited.inc();
        }
        decision
    }
}

/// A route's cache with its key template (the admin endpoint's purge by URL renders it).
#[derive(Debug, Clone)]
pub struct KeyedCache {
    pub cache: Arc<HttpCache>,
    key: Template,
}

impl KeyedCache {
    /// The key a plain GET of `url` (`http://host/path?query`) is stored under; fields
    /// the URL does not give (the client's address, other headers) render empty.
    pub fn key_of_url(&self, url: &str) -> Option<String> {
        let uri: http::Uri = url.parse().ok()?;
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, uri.authority()?.as_str().parse().ok()?);
        let view = TargetView {
            headers: &headers,
            remote_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            tls: uri.scheme_str() == Some("https"),
            host: uri.host()?,
        };
        key_for_target(&self.key, &view, url)
    }
}

/// The request an unsafe method's response names another target for.
struct TargetView<'a> {
    headers: &'a http::HeaderMap,
    remote_ip: std::net::IpAddr,
    tls: bool,
    /// The request's host.
    host: &'a str,
}

/// The cache key of `target` (a Location or Content-Location): the key template rendered
/// for a GET of it with the request's other fields. `None` for another host, whose
/// responses an unsafe method here must not invalidate (RFC 9111 §4.4), or for a target
/// that is not a path or URL.
fn key_for_target(template: &Template, request: &TargetView<'_>, target: &str) -> Option<String> {
    let uri: http::Uri = target.parse().ok()?;
    if let Some(other_host) = uri.host() {
        if !other_host.eq_ignore_ascii_case(request.host) {
            return None;
        }
    }
    let path = uri.path_and_query()?.as_str();
    if !path.starts_with('/') {
        return None;
    }
    let mut get = http::Request::get(path).body(()).ok()?;
    *get.headers_mut() = request.headers.clone();
    let (parts, ()) = get.into_parts();
    Some(template.render(&RequestView {
        parts: &parts,
        remote_ip: request.remote_ip,
        tls: request.tls,
    }))
}

/// Forwards to a pool and turns the backend's answer into the client's response.
#[derive(Debug, Clone)]
struct UpstreamFetch {
    pool: Arc<Pool>,
    key: Option<String>,
    bytes_out: Counter,
}

impl UpstreamFetch {
    async fn send(
        &self,
        head: Head,
        body: Option<Body>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Response<Body>, ProxyError> {
        let upstream = self.pool.forward(head, body, self.key.as_deref()).await?;
        let mut response = upstream.response;
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
            splice_upgrades(client_upgrade, hyper::upgrade::on(&mut response));
        }
        let (mut parts, body) = response.into_parts();
        headers::to_client(&mut parts.headers, switching);
        // An upgraded connection is spliced, never reused.
        let reuse = if switching { None } else { upstream.reuse };
        let body = Tracked::new(body, self.bytes_out.clone(), upstream.in_flight, reuse).boxed();
        Ok(Response::from_parts(parts, body))
    }
}

impl Fetch for UpstreamFetch {
    async fn fetch(&self, head: Head, body: Option<Body>) -> Result<Response<Body>, ProxyError> {
        self.send(head, body, None).await
    }
}

/// The pool to use and the hash key for its balancer.
fn choose(action: &Action, view: &RequestView<'_>) -> (Option<Arc<Pool>>, Option<String>) {
    let pool_key = |pool: &Arc<Pool>| pool.hash_key.as_ref().map(|t| t.render(view));
    match action {
        Action::Pool(pool) => (Some(pool.clone()), pool_key(pool)),
        Action::Split {
            sticky,
            weights,
            sides,
        } => {
            let key = sticky.render(view);
            let side = podkit_hash::sticky::bucket(key.as_bytes(), weights);
            let (pool, counter) = &sides[side];
            counter.inc();
            (Some(pool.clone()), pool_key(pool))
        }
        Action::Shard { key, ring, shards } => {
            let key = key.render(view);
            let mut walk = ring.walk(key.as_bytes());
            let first = walk.next();
            // Like nginx, move along the ring past shards with nothing available.
            let chosen = std::iter::once(first)
                .flatten()
                .chain(walk)
                .find(|&i| shards[i].0.has_available())
                .or(first);
            match chosen {
                Some(i) => {
                    let (pool, counter) = &shards[i];
                    counter.inc();
                    (Some(pool.clone()), pool_key(pool))
                }
                None => (None, None),
            }
        }
        Action::RedirectHttps { .. } => (None, None),
    }
}

/// The head sent upstream: origin-form target, `Host` kept (or taken from an HTTP/2
/// authority), hop-by-hop headers removed, forwarding headers added.
fn upstream_head(parts: &mut http::request::Parts, conn: ConnInfo, upgrade: bool) -> Head {
    let mut headers = std::mem::take(&mut parts.headers);
    if !headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                headers.insert(header::HOST, value);
            }
        }
    }
    headers::to_upstream(&mut headers, conn.peer.ip(), conn.tls, upgrade);
    Head {
        method: parts.method.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        headers,
    }
}

fn redirect(
    parts: &http::request::Parts,
    host: &str,
    port: u16,
    status: StatusCode,
) -> Response<Body> {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let authority = if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let location = format!("https://{authority}{target}");
    let mut response = text(status, format!("podkit: moved to {location}\n"));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Joins the client's and the backend's upgraded connections and copies both ways.
fn splice_upgrades(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
}

fn build_route(
    listener: &ListenerConfig,
    config: &RouteConfig,
    pools: &BTreeMap<String, Arc<Pool>>,
    metrics: &ProxyMetrics,
) -> Option<Route> {
    let name = format!(
        "{}{}{}",
        listener.listen,
        config
            .host
            .as_deref()
            .map(|h| format!(" {h}"))
            .unwrap_or_default(),
        config.path
    );
    let action = match &config.to {
        Target::Pool(pool) => Action::Pool(pools.get(pool)?.clone()),
        Target::Split(split) => Action::Split {
            sticky: split.sticky.parse().ok()?,
            weights: split.sides.iter().map(|s| s.weight).collect(),
            sides: split
                .sides
                .iter()
                .filter_map(|s| {
                    Some((
                        pools.get(&s.pool)?.clone(),
                        metrics.split_side(&name, &s.name),
                    ))
                })
                .collect(),
        },
        Target::Shard(shard) => Action::Shard {
            key: shard.key.parse().ok()?,
            ring: Ring::new(
                &shard
                    .shards
                    .iter()
                    .map(|s| (s.id.as_str(), 1))
                    .collect::<Vec<_>>(),
            ),
            shards: shard
                .shards
                .iter()
                .filter_map(|s| Some((pools.get(&s.pool)?.clone(), metrics.shard(&name, &s.id))))
                .collect(),
        },
        Target::RedirectHttps(redirect) => Action::RedirectHttps {
            port: redirect.https_port,
            status: StatusCode::from_u16(redirect.status).ok()?,
        },
    };
    let cache = match &config.cache {
        Some(cache) => Some(KeyedCache {
            key: cache.key.parse().ok()?,
            cache: metrics.cache(&name, |counters| {
                Arc::new(HttpCache::new(
                    Settings {
                        memory: cache.memory.bytes(),
                        max_object: cache.max_object_bytes(),
                        x_cache: cache.x_cache,
                        coalesce_timeout: cache.coalesce_timeout.get(),
                    },
                    counters,
                ))
            }),
        }),
        None => None,
    };
    let rate = match &config.rate_limit {
        Some(limit) => {
            let anon = Arc::new(Limiter::new(limit.anon, limit.max_keys));
            let user = match (&limit.user, &limit.user_key) {
                (Some(rate), Some(key)) => Some((
                    Arc::new(Limiter::new(*rate, limit.max_keys)),
                    key.parse().ok()?,
                )),
                _ => None,
            };
            let mut all = vec![anon.clone()];
            all.extend(user.as_ref().map(|(l, _)| l.clone()));
            let (allowed, limited) = metrics.rate_limit(&name, all);
            Some(RateStage {
                anon,
                anon_key: limit.key.parse().ok()?,
                user,
                allowed,
                limited,
            })
        }
        None => None,
    };
    Some(Route {
        host: config.host.clone(),
        path: config.path.clone(),
        tee: config
            .tee
            .as_ref()
            .and_then(|t| Tee::new(t, metrics.tee(&name))),
        action,
        cache,
        rate,
        metrics: metrics.route(&name),
    })
}
