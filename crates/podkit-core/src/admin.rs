//! The admin endpoint: `/healthz`, `/readyz`, `/metrics`, and routes a component adds
//! (`/leader`, `/status`, `PURGE`...).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::http::{response, serve, text, Body, ServeOptions};
use crate::metrics::{wants_openmetrics, Metrics, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::readiness::{Readiness, Status};
use crate::shutdown::Shutdown;

type RouteFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
type Route = Arc<dyn Fn(Request<Incoming>) -> RouteFuture + Send + Sync>;

/// Extra admin routes, matched by path prefix (longest first).
#[derive(Clone, Default)]
pub struct AdminRoutes {
    routes: Arc<RwLock<BTreeMap<String, Route>>>,
}

impl std::fmt::Debug for AdminRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        f.debug_list().entries(routes.keys()).finish()
    }
}

impl AdminRoutes {
    /// Serves requests whose path starts with `prefix` with `handler`.
    pub fn add<F, Fut>(&self, prefix: &str, handler: F)
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let route: Route = Arc::new(move |req| Box::pin(handler(req)));
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(prefix.to_string(), route);
    }

    fn find(&self, path: &str) -> Option<Route> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .rev()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, route)| route.clone())
    }
}

/// What the admin endpoint reports on.
#[derive(Clone, Debug)]
pub struct Admin {
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub routes: AdminRoutes,
}

impl Admin {
    /// Answers one admin request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match self.readiness.status() {
                Status::Ready => text(StatusCode::OK, "ready\n"),
                Status::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
                Status::Waiting(reasons) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("waiting for: {}\n", reasons.join(", ")),
                ),
            },
            "/metrics" => {
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                if wants_openmetrics(accept) {
                    response(
                        StatusCode::OK,
                        OPENMETRICS_CONTENT_TYPE,
                        self.metrics.encode_openmetrics(),
                    )
                } else {
                    response(
                        StatusCode::OK,
                        TEXT_CONTENT_TYPE,
                        self.metrics.encode_text(),
                    )
                }
            }
            path => match self.routes.find(path) {
                Some(route) => route(req).await,
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }

    /// Serves the admin endpoint on `listener` until shutdown has drained the component.
    pub async fn serve(self, listener: TcpListener, stop: Shutdown) {
        let admin = Arc::new(self);
        let handler = move |req: Request<Incoming>, _conn: crate::http::ConnInfo| {
            let admin = admin.clone();
            async move { admin.handle(req).await }
        };
        let options = ServeOptions {
            max_connections: 256,
            ..ServeOptions::default()
        };
        serve(listener, handler, stop, options).await;
    }
}
