//! The proxy's routes on the admin endpoint: purging one cached key and banning every key
//! under a prefix.
//!
//! - `PURGE /cache/purge?url=http://example.com/dog` (or `POST`, `DELETE`): removes what a
//!   GET of that URL is stored under, by each route's key template; `?key=example.com/dog`
//!   names the key itself (the default key is `$host$request_uri`);
//! - `POST /cache/ban?prefix=example.com/images/`: removes every key with that prefix.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use podkit_core::admin::AdminRoutes;
use podkit_core::http::{query_pairs, text, Body};

use crate::route::KeyedCache;

/// Registers `/cache/purge` and `/cache/ban` for `caches`.
pub fn add_cache_routes(routes: &AdminRoutes, caches: Vec<KeyedCache>) {
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

fn purge_key(caches: &[KeyedCache], req: &Request<Incoming>) -> http::Response<Body> {
    if !(req.method().as_str() == "PURGE"
        || req.method() == Method::POST
        || req.method() == Method::DELETE)
    {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use PURGE, POST or DELETE\n",
        );
    }
    let (what, purged) = match (param(req, "url"), param(req, "key")) {
        (Some(url), _) => {
            let keys: Vec<(&KeyedCache, String)> = caches
                .iter()
                .filter_map(|c| c.key_of_url(&url).map(|key| (c, key)))
                .collect();
            if keys.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("'{url}' is not a URL such as http://example.com/dog\n"),
                );
            }
            let purged = keys
                .iter()
                .filter(|(c, key)| c.cache.store().purge(key))
                .count();
            (url, purged)
        }
        (None, Some(key)) => {
            let purged = caches
                .iter()
                .filter(|c| c.cache.store().purge(&key))
                .count();
            (key, purged)
        }
        (None, None) => {
            return text(
                StatusCode::BAD_REQUEST,
                "give ?url=<URL> or ?key=<cache key>, e.g. ?url=http://example.com/dog\n",
            )
        }
    };
    if purged > 0 {
        text(StatusCode::OK, format!("purged {what}\n"))
    } else {
        text(StatusCode::NOT_FOUND, format!("{what} is not cached\n"))
    }
}

fn ban_prefix(caches: &[KeyedCache], req: &Request<Incoming>) -> http::Response<Body> {
    if req.method() != Method::POST && req.method().as_str() != "BAN" {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use POST or BAN\n");
    }
    let Some(prefix) = param(req, "prefix") else {
        return text(StatusCode::BAD_REQUEST, "give ?prefix=<key prefix>\n");
    };
    let banned: usize = caches.iter().map(|c| c.cache.store().ban(&prefix)).sum();
    text(
        StatusCode::OK,
        format!("banned {banned} keys under {prefix}\n"),
    )
}
