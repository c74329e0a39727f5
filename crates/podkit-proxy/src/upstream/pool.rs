//! A pool of equivalent backends and the forwarding of one request to it: the balancer
//! gives the order, idempotent requests without a body move on to the next backend when a
//! try fails before any response byte, and every try is bounded by the per-try timeout
//! and the request's total deadline.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;

use podkit_core::http::Body;

use super::backend::{Backend, InFlight};
use super::conn::{connect, Reuse};
use super::eject::Outcome;
use crate::balance::Balancer;
use crate::config::{BackendConfig, Eject, Policy, PoolConfig, Timeouts};
use crate::error::ProxyError;
use crate::metrics::{class_index, ProxyMetrics};
use crate::template::Template;

/// The HTTP client toward backends.
pub type UpstreamClient = Client<HttpConnector, Body>;

/// Builds a pooled keep-alive HTTP/1.1 client.
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// The backends of a pool at one moment, and the balancer built over them.
#[derive(Debug)]
pub struct Members {
    pub backends: Vec<Arc<Backend>>,
    balancer: Balancer,
}

/// A pool and its runtime state.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    members: RwLock<Arc<Members>>,
    policy: Policy,
    /// Whether backends are probed (new ones then start unready).
    probed: bool,
    /// The key of the `hash` policy.
    pub hash_key: Option<Template>,
    client: UpstreamClient,
    timeouts: Timeouts,
    retries: u32,
    eject: Eject,
    retry_counter: Counter,
    metrics: ProxyMetrics,
}

/// The head of a request to send, without a body.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    /// Origin-form path and query.
    pub path_and_query: PathAndQuery,
    pub headers: http::HeaderMap,
}

/// A backend's response, with the backend, its in-flight slot, and the connection to
/// give back once the body has been read.
#[derive(Debug)]
pub struct Upstream {
    pub response: Response<Incoming>,
    pub backend: Arc<Backend>,
    pub in_flight: InFlight,
    pub reuse: Option<Reuse>,
}

impl Pool {
    /// Builds the pool `name` from its config; backends start ready unless probed.
    pub fn new(name: &str, config: &PoolConfig, metrics: &ProxyMetrics) -> Pool {
        let pool = Pool {
            name: name.to_string(),
            members: RwLock::new(Arc::new(Members {
                backends: Vec::new(),
                balancer: Balancer::new(config.policy, &[]),
            })),
            policy: config.policy,
            probed: !config.ready.path.is_empty(),
            hash_key: config.hash_key.as_deref().and_then(|k| k.parse().ok()),
            client: client(config.timeouts.connect.get()),
            timeouts: config.timeouts.clone(),
            retries: config.retries,
            eject: config.eject.clone(),
            retry_counter: metrics.retries(name),
            metrics: metrics.clone(),
        };
        pool.set_backends(&config.backends);
        pool
    }

    /// The current backends.
    pub fn members(&self) -> Arc<Members> {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the set of backends. Backends that stay keep their state (readiness,
    /// ejection, idle connections); new ones start ready unless the pool is probed.
    pub fn set_backends(&self, configs: &[BackendConfig]) {
        let current = self.members();
        let mut backends = Vec::with_capacity(configs.len());
        for config in configs {
            let Ok(authority) = crate::config::backend_authority(&config.url) else {
                continue;
            };
            let kept = current
                .backends
                .iter()
                .find(|b| b.authority == authority && b.weight == config.weight);
            let backend = match kept {
                Some(backend) => backend.clone(),
                None => Arc::new(Backend::new(
                    config.url.clone(),
                    authority.clone(),
                    config.weight,
                    !self.probed,
                    self.metrics.backend(&self.name, authority.as_str()),
                )),
            };
            if !backends
                .iter()
                .any(|b: &Arc<Backend>| b.authority == backend.authority)
            {
                backends.push(backend);
            }
        }
        for gone in current
            .backends
            .iter()
            .filter(|b| !backends.iter().any(|n| n.authority == b.authority))
        {
            self.metrics
                .remove_backend(&self.name, gone.authority.as_str());
        }
        let members = Members {
            balancer: Balancer::new(self.policy, &backends),
            backends,
        };
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(members);
    }

    /// The client of this pool (probes share its connections).
    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// Whether any backend can take traffic now.
    pub fn has_available(&self) -> bool {
        let now = Instant::now();
        self.members().backends.iter().any(|b| b.is_available(now))
    }

    /// Sends the request to the pool's backends in the balancer's order. `body` is `None`
    /// for a request without a body, which may then be retried when idempotent.
    pub async fn forward(
        &self,
        mut head: Head,
        body: Option<Body>,
        key: Option<&str>,
    ) -> Result<Upstream, ProxyError> {
        let members = self.members();
        let order = members.balancer.order(&members.backends, key);
        if order.is_empty() {
            return Err(ProxyError::NoBackend {
                pool: self.name.clone(),
            });
        }
        let retryable = body.is_none() && is_idempotent(&head.method);
        let tries = if retryable {
            order.len().min(1 + self.retries as usize)
        } else {
            1
        };
        let deadline = Instant::now() + self.timeouts.total.get();
        let mut body = body;
        let mut last_error = None;
        for (attempt, &index) in order.iter().take(tries).enumerate() {
            if attempt > 0 {
                self.retry_counter.inc();
            }
            let backend = &members.backends[index];
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            // The last try takes the headers; earlier ones send a copy.
            let headers = if attempt + 1 == tries {
                std::mem::take(&mut head.headers)
            } else {
                head.headers.clone()
            };
            let request = build_request(&head, headers, backend, body.take());
            let in_flight = backend.start();
            let started = Instant::now();
            let limit = self.timeouts.per_try.get().min(remaining);
            match tokio::time::timeout(limit, self.exchange(backend, request)).await {
                Ok(Ok((response, sender))) => {
                    let outcome = if response.status().is_server_error() {
                        Outcome::ServerError
                    } else {
                        Outcome::Success
                    };
                    self.note(backend, outcome, Some(started.elapsed()));
                    backend.metrics.responses[class_index(response.status())].inc();
                    return Ok(Upstream {
                        response,
                        backend: backend.clone(),
                        in_flight,
                        reuse: Some(Reuse::new(sender, backend.clone())),
                    });
                }
                Ok(Err(message)) => {
                    backend.metrics.failures.inc();
                    self.note(backend, Outcome::Failure, None);
                    tracing::debug!(pool = %self.name, backend = %backend.authority, error = %message, "try failed");
                    last_error = Some(ProxyError::Upstream {
                        backend: backend.authority.to_string(),
                        message,
                    });
                }
                Err(_) => {
                    backend.metrics.failures.inc();
                    self.note(backend, Outcome::Failure, None);
                    last_error = Some(ProxyError::Timeout {
                        backend: backend.authority.to_string(),
                    });
                }
            }
        }
        Err(last_error.unwrap_or(ProxyError::Timeout {
            backend: self.name.clone(),
        }))
    }

    /// One request on one backend: on a kept-alive connection if there is one. A request
    /// that a reused connection never sent (the backend had closed it) goes once more on
    /// a fresh connection, whatever its method, since the backend never saw it.
    async fn exchange(
        &self,
        backend: &Backend,
        request: Request<Body>,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), String> {
        let connect_timeout = self.timeouts.connect.get();
        let mut conn = backend
            .connections
            .checkout(&backend.authority, connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        match conn.sender.try_send_request(request).await {
            Ok(response) => Ok((response, conn.sender)),
            Err(mut err) => match (conn.reused, err.take_message()) {
                (true, Some(request)) => {
                    let mut fresh = connect(&backend.authority, connect_timeout)
                        .await
                        .map_err(|e| e.to_string())?;
                    let response = fresh
                        .send_request(request)
                        .await
                        .map_err(|e| describe(&e))?;
                    Ok((response, fresh))
                }
                _ => Err(describe(&err.into_error())),
            },
        }
    }

    fn note(&self, backend: &Backend, outcome: Outcome, latency: Option<Duration>) {
        if let Some(time) = backend.record(outcome, latency, &self.eject) {
            tracing::warn!(
                pool = %self.name,
                backend = %backend.authority,
                seconds = time.as_secs_f64(),
                "backend ejected after failures"
            );
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request for one try: origin-form target (`GET /path HTTP/1.1`), with `Host` set
/// to the backend when the client sent none.
fn build_request(
    head: &Head,
    mut headers: http::HeaderMap,
    backend: &Backend,
    body: Option<Body>,
) -> Request<Body> {
    let mut request = Request::new(body.unwrap_or_else(|| {
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed()
    }));
    *request.method_mut() = head.method.clone();
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(head.path_and_query.clone());
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    if !headers.contains_key(http::header::HOST) {
        if let Ok(host) = http::HeaderValue::from_str(backend.authority.as_str()) {
            headers.insert(http::header::HOST, host);
        }
    }
    *request.headers_mut() = headers;
    request
}

/// The error and its causes on one line.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
