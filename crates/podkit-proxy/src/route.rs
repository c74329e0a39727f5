//! The request path: match a route, pick a pool (directly, by experiment side, or by
//! shard), forward, and turn the backend's answer into the client's response.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
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
use crate::config::{ListenerConfig, RouteConfig, Target};
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::{class_index, ProxyMetrics, RouteMetrics};
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

#[derive(Debug)]
struct Route {
    host: Option<String>,
    path: String,
    action: Action,
    tee: Option<Tee>,
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
        mut req: Request<Incoming>,
        conn: ConnInfo,
        host: &str,
    ) -> Response<Body> {
        if let Action::RedirectHttps { port, status } = &route.action {
            return redirect(&req, host, *port, *status);
        }
        let content_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if content_length.is_some_and(|n| n > self.max_body_bytes) {
            return ProxyError::BodyTooLarge {
                limit: self.max_body_bytes,
            }
            .into_response();
        }
        let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, incoming) = req.into_parts();
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
        let head = upstream_head(&mut parts, conn, upgrade);
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = if incoming.is_end_stream() {
            None
        } else {
            Some(
                Limited::new(
                    incoming,
                    self.max_body_bytes,
                    exceeded.clone(),
                    route.metrics.bytes_in.clone(),
                )
                .boxed(),
            )
        };
        let body = match &route.tee {
            Some(tee) => tee.mirror(&head, body, content_length),
            None => body,
        };
        match pool.forward(head, body, key.as_deref()).await {
            Ok(upstream) => {
                let mut response = upstream.response;
                let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
                    splice_upgrades(client_upgrade, hyper::upgrade::on(&mut response));
                }
                let (mut parts, body) = response.into_parts();
                headers::to_client(&mut parts.headers, switching);
                // An upgraded connection is spliced, never reused.
                let reuse = if switching { None } else { upstream.reuse };
                let bytes_out = route.metrics.bytes_out.clone();
                let body = Tracked::new(body, bytes_out, upstream.in_flight, reuse).boxed();
                Response::from_parts(parts, body)
            }
            Err(_) if exceeded.load(std::sync::atomic::Ordering::SeqCst) => {
                ProxyError::BodyTooLarge {
                    limit: self.max_body_bytes,
                }
                .into_response()
            }
            Err(err) => {
                tracing::debug!(error = %err, "request failed");
                err.into_response()
            }
        }
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

fn redirect(req: &Request<Incoming>, host: &str, port: u16, status: StatusCode) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
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
    Some(Route {
        host: config.host.clone(),
        path: config.path.clone(),
        tee: config
            .tee
            .as_ref()
            .and_then(|t| Tee::new(t, metrics.tee(&name))),
        action,
        metrics: metrics.route(&name),
    })
}
