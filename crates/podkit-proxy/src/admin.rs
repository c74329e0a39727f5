//! The proxy's routes on the admin endpoint: purging one cached key and banning every key
//! under a prefix.
//!
//! - `PURGE /cache/purge?key=example.com/dog` (or `POST`, `DELETE`): removes one key (the
//!   default key is `$host$request_uri`, so a URL's key is its host and path);
//! - `POST /cache/ban?prefix=example.com/images/`: removes every key with that prefix.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use podkit_core::admin::AdminRoutes;
use podkit_core::http::{query_pairs, text, Body};

use crate::cache::HttpCache;

/// Registers `/cache/purge` and `/cache/ban` for `caches`.
pub fn add_cache_routes(routes: &AdminRoutes, caches: Vec<Arc<HttpCache>>) {
    let caches = Arc::new(caches);
    let purge = caches.clone();
    routes.add("/cache/purge", move |req: Request<Incoming>| {
        let caches = purge.clone();
        async move { purge_key(&caches, &req) }
    });
    routes.add("/cache/ban", move |req: Request<Incoming>| {
        let caches = caches.clone();
        async move { ban_prefix(&caches, &req) }
    });
}

fn param(req: &Request<Incoming>, name: &str) -> Option<String> {
    query_pairs(req.uri())
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn purge_key(caches: &[Arc<HttpCache>], req: &Request<Incoming>) -> http::Response<Body> {
    if !(req.method().as_str() == "PURGE"
        || req.method() == Method::POST
        || req.method() == Method::DELETE)
    {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use PURGE, POST or DELETE\n",
        );
    }
    let Some(key) = param(req, "key") else {
        return text(
            StatusCode::BAD_REQUEST,
            "give ?key=<cache key>, e.g. ?key=example.com/dog\n",
        );
    };
    let purged = caches.iter().filter(|c| c.store().purge(&key)).count();
    if purged > 0 {
        text(StatusCode::OK, format!("purged {key}\n"))
    } else {
        text(StatusCode::NOT_FOUND, format!("{key} is not cached\n"))
    }
}

fn ban_prefix(caches: &[Arc<HttpCache>], req: &Request<Incoming>) -> http::Response<Body> {
    if req.method() != Method::POST && req.method().as_str() != "BAN" {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST or BAN\n");
    }
    let Some(prefix) = param(req, "prefix") else {
        return text(StatusCode::BAD_REQUEST, "give ?prefix=<key prefix>\n");
    };
    let banned: usize = caches.iter().map(|c| c.store().ban(&prefix)).sum();
    text(
        StatusCode::OK,
        format!("banned {banned} keys under {prefix}\n"),
    )
}
