//! The caching stage (chapter 5's Varnish tier), an RFC 9111 shared cache.
//!
//! - [`control`]: `Cache-Control` parsing;
//! - [`policy`]: storability, freshness, age, reuse, Vary, 304 merging (pure);
//! - [`store`]: the memory-bounded store of responses and their variants;
//! - [`mapped`]: large bodies in mappings of their own, returned to the kernel on eviction;
//! - [`fill`]: request coalescing;
//! - [`invalidations`]: purges made while a response was on its way are not undone;
//! - [`budget`]: the bound on bodies being stored as they arrive.
//!
//! A request goes: unsafe methods pass and invalidate; a fresh stored response answers at
//! once (`X-Cache: HIT`); a stale one is served while revalidated in the background when
//! `stale-while-revalidate` allows (`STALE`), else revalidated with `If-None-Match` /
//! `If-Modified-Since` (a 304 about the stored response refreshes its head), or served
//! stale on an origin error when `stale-if-error` allows; a miss is fetched once however
//! many clients ask (`MISS`), stored when RFC 9111 allows, and streamed to the client as
//! it arrives. Revalidations are coalesced like misses.

pub mod budget;
pub mod control;
pub mod fill;
pub mod invalidations;
pub mod mapped;
pub mod policy;
pub mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use podkit_core::http::{full, Body, BoxError};

use crate::error::ProxyError;
use crate::upstream::pool::Head;
use budget::FillBudget;
use control::CacheControl;
use fill::{FillGuard, FillState, Fills, Role};
use policy::{Freshness, Stored};
use store::{BodyFill, Entry, Store, StoredBody};

/// Fetches a request from the origin (the rest of the proxy).
pub trait Fetch: Clone + Send + Sync + 'static {
    fn fetch(
        &self,
        head: Head,
        body: Option<Body>,
    ) -> impl Future<Output = Result<Response<Body>, ProxyError>> + Send;
}

/// How a response was produced, as `X-Cache` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Stale,
    Pass,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
            Outcome::Pass => "PASS",
        }
    }
}

/// Counters of one cache.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub stale: Counter,
    pub passes: Counter,
    pub revalidated: Counter,
    pub coalesced: Counter,
}

/// Settings of one cache.
#[derive(Debug, Clone)]
pub struct Settings {
    pub memory: u64,
    pub max_object: u64,
    pub x_cache: bool,
    pub coalesce_timeout: Duration,
}

/// One route's cache.
#[derive(Debug)]
pub struct HttpCache {
    store: Arc<Store>,
    fills: Arc<Fills>,
    filling: Arc<FillBudget>,
    settings: Settings,
    metrics: CacheMetrics,
    /// Requests answered from the store or fetched as misses (for the hit ratio).
    lookups: AtomicU64,
}

impl HttpCache {
    /// A cache with `settings`.
    pub fn new(settings: Settings, metrics: CacheMetrics) -> HttpCache {
        let store = Arc::new(Store::new(settings.memory, settings.max_object));
        let mut settings = settings;
        settings.max_object = settings.max_object.min(store.max_entry());
        HttpCache {
            store,
            fills: Arc::new(Fills::default()),
            filling: FillBudget::new(fill_budget(settings.memory, settings.max_object)),
            settings,
            metrics,
            lookups: AtomicU64::new(0),
        }
    }

    /// The store (for the admin endpoint and metrics).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Bytes of responses being stored as they arrive.
    pub fn filling_bytes(&self) -> u64 {
        self.filling.used()
    }

    /// Answers a request through the cache; `key` is the request's primary cache key and
    /// `key_of_path` gives the key of another path on the same host (for invalidation).
    pub async fn serve<F: Fetch>(
        self: &Arc<Self>,
        key: String,
        key_of_path: impl Fn(&str) -> Option<String>,
        head: Head,
        body: Option<Body>,
        fetch: F,
    ) -> Response<Body> {
        let method = head.method.clone();
        if method != Method::GET && method != Method::HEAD {
            let response = fetch.fetch(head, body).await;
            if let Ok(response) = &response {
                if policy::invalidates(&method, response.status()) {
                    self.invalidate(&key, response.headers(), key_of_path);
                }
            }
            return self.pass(response);
        }
        let request_cc = CacheControl::parse_request(&head.headers);
        if body.is_some() || head.headers.contains_key(header::RANGE) || request_cc.no_store {
            return self.pass(fetch.fetch(head, body).await);
        }
        let now = SystemTime::now();
        if let Some(entry) = self.store.lookup(&key, &head.headers) {
            let response_cc = CacheControl::parse(&entry.stored.headers);
            let freshness = Freshness::of(&entry.stored, &response_cc, now);
            if policy::reusable_without_validation(freshness, &response_cc, &request_cc) {
                self.count(&self.metrics.hits);
                return self.respond(&entry, &head, freshness.age, Outcome::Hit);
            }
            if policy::serve_while_revalidating(freshness, &response_cc, &request_cc) {
                self.count(&self.metrics.stale);
                if let Some(guard) = self.fills.try_lead(&key) {
                    let (cache, entry, head, fetch, key) = (
                        self.clone(),
                        entry.clone(),
                        head.clone(),
                        fetch.clone(),
                        key.clone(),
                    );
                    tokio::spawn(async move {
                        let response = cache
                            .validate(&key, &entry, &head, &fetch, Some(guard))
                            .await;
                        drain(response).await;
                    });
                }
                return self.respond(&entry, &head, freshness.age, Outcome::Stale);
            }
            if request_cc.only_if_cached {
                // Stored, but not usable without the origin (§5.2.1.7).
                return self.label(ProxyError::NotCached.into_response(), Outcome::Miss);
            }
            return self.revalidate(key, entry, head, fetch).await;
        }
        if request_cc.only_if_cached {
            return self.label(ProxyError::NotCached.into_response(), Outcome::Miss);
        }
        if head.method == Method::HEAD {
            return self.pass(fetch.fetch(head, None).await);
        }
        self.miss(key, head, fetch).await
    }

    async fn miss<F: Fetch>(self: &Arc<Self>, key: String, head: Head, fetch: F) -> Response<Body> {
        match self.fills.join(&key) {
            Role::Leader(guard) => self.fetch_and_store(&key, head, &fetch, Some(guard)).await,
            Role::Follower(waiting) => match self.after_fill(&key, &head, waiting).await {
                Some(response) => response,
                // Not storable, another variant, or too slow: fetch on our own.
                None => self.fetch_and_store(&key, head, &fetch, None).await,
            },
        }
    }

    /// Revalidates a stale stored response once however many clients ask for it at the
    /// same time: the others wait for that validation and use its result.
    async fn revalidate<F: Fetch>(
        self: &Arc<Self>,
        key: String,
        entry: Arc<Entry>,
        head: Head,
        fetch: F,
    ) -> Response<Body> {
        match self.fills.join(&key) {
            Role::Leader(guard) => {
                self.validate(&key, &entry, &head, &fetch, Some(guard))
                    .await
            }
            Role::Follower(waiting) => match self.after_fill(&key, &head, waiting).await {
                Some(response) => response,
                None => self.validate(&key, &entry, &head, &fetch, None).await,
            },
        }
    }

    /// Waits (up to the coalescing timeout) for another request's fetch or validation of
    /// `key`, then answers from what it stored if that may answer this request.
    async fn after_fill(
        &self,
        key: &str,
        head: &Head,
        waiting: tokio::sync::watch::Receiver<FillState>,
    ) -> Option<Response<Body>> {
        self.metrics.coalesced.inc();
        let ended = tokio::time::timeout(self.settings.coalesce_timeout, fill::wait(waiting)).await;
        if ended != Ok(FillState::Stored) {
            return None;
        }
        let entry = self.store.lookup(key, &head.headers)?;
        let request_cc = CacheControl::parse_request(&head.headers);
        let response_cc = CacheControl::parse(&entry.stored.headers);
        let freshness = Freshness::of(&entry.stored, &response_cc, SystemTime::now());
        if !policy::reusable_without_validation(freshness, &response_cc, &request_cc) {
            return None;
        }
        self.count(&self.metrics.hits);
        Some(self.respond(&entry, head, freshness.age, Outcome::Hit))
    }

    /// Revalidates a stored response with the origin (RFC 9111 §4.3).
    async fn validate<F: Fetch>(
        self: &Arc<Self>,
        key: &str,
        entry: &Arc<Entry>,
        head: &Head,
        fetch: &F,
        guard: Option<FillGuard>,
    ) -> Response<Body> {
        let mut conditional = head.clone();
        conditional.method = Method::GET;
        conditional.headers.remove(header::IF_NONE_MATCH);
        conditional.headers.remove(header::IF_MODIFIED_SINCE);
        if let Some(etag) = entry.stored.headers.get(header::ETAG) {
            conditional
                .headers
                .insert(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(modified) = entry.stored.headers.get(header::LAST_MODIFIED) {
            conditional
                .headers
                .insert(header::IF_MODIFIED_SINCE, modified.clone());
        }
        let request_time = SystemTime::now();
        let fetched_at = self.store.generation();
        let response_cc = CacheControl::parse(&entry.stored.headers);
        let request_cc = CacheControl::parse_request(&head.headers);
        let result = fetch.fetch(conditional, None).await;
        let now = SystemTime::now();
        let stale_ok = || {
            policy::serve_if_error(
                Freshness::of(&entry.stored, &response_cc, now),
                &response_cc,
                &request_cc,
            )
        };
        match result {
            Ok(response)
                if response.status() == StatusCode::NOT_MODIFIED
                    && !policy::not_modified_matches(&entry.stored.headers, response.headers()) =>
            {
                // A 304 about another representation updates nothing (§4.3.4): ask again,
                // unconditionally.
                drain(response).await;
                self.fetch_and_store(key, head.clone(), fetch, guard).await
            }
            Ok(response) if response.status() == StatusCode::NOT_MODIFIED => {
                let mut stored = entry.stored.clone();
                policy::merge_not_modified(
                    &mut stored.headers,
                    &store::owned_headers(response.headers()),
                );
                stored.request_time = request_time;
                stored.response_time = now;
                let refreshed = Entry {
                    stored,
                    body: entry.body.clone(),
                    vary: entry.vary.clone(),
                    vary_values: entry.vary_values.clone(),
                };
                self.metrics.revalidated.inc();
                self.count(&self.metrics.hits);
                let age = policy::current_age(&refreshed.stored, now);
                let response = self.respond(&refreshed, head, age, Outcome::Hit);
                let stored = self.store.insert(key, refreshed, fetched_at);
                if let Some(guard) = guard {
                    guard.finish(stored);
                }
                response
            }
            Ok(response) if response.status().is_server_error() && stale_ok() => {
                drain(response).await;
                self.count(&self.metrics.stale);
                let age = policy::current_age(&entry.stored, now);
                self.respond(entry, head, age, Outcome::Stale)
            }
            Err(_) if stale_ok() => {
                self.count(&self.metrics.stale);
                let age = policy::current_age(&entry.stored, now);
                self.respond(entry, head, age, Outcome::Stale)
            }
            other => {
                // A new full response (or an error): store it like a miss would.
                self.store_response(key, head, other, (request_time, fetched_at), guard)
                    .await
            }
        }
    }

    async fn fetch_and_store<F: Fetch>(
        self: &Arc<Self>,
        key: &str,
        head: Head,
        fetch: &F,
        guard: Option<FillGuard>,
    ) -> Response<Body> {
        // The origin is asked unconditionally; the client's conditions are answered here.
        let mut upstream = head.clone();
        upstream.headers.remove(header::IF_NONE_MATCH);
        upstream.headers.remove(header::IF_MODIFIED_SINCE);
        let asked = (SystemTime::now(), self.store.generation());
        let result = fetch.fetch(upstream, None).await;
        self.store_response(key, &head, result, asked, guard).await
    }

    /// Stores a fresh origin response when RFC 9111 allows, streaming it to the client.
    /// `asked` is when the origin was asked, and the store's generation then.
    async fn store_response(
        self: &Arc<Self>,
        key: &str,
        head: &Head,
        result: Result<Response<Body>, ProxyError>,
        asked: (SystemTime, u64),
        guard: Option<FillGuard>,
    ) -> Response<Body> {
        let (request_time, fetched_at) = asked;
        self.count(&self.metrics.misses);
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                if let Some(guard) = guard {
                    guard.finish(false);
                }
                return self.label(err.into_response(), Outcome::Miss);
            }
        };
        let request_cc = CacheControl::parse_request(&head.headers);
        let response_cc = CacheControl::parse(response.headers());
        let too_large = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.settings.max_object);
        let storable = !too_large
            && policy::storable(
                &head.headers,
                &request_cc,
                response.status(),
                response.headers(),
                &response_cc,
            );
        if !storable {
            if let Some(guard) = guard {
                guard.finish(false);
            }
            return self.label(response, Outcome::Miss);
        }
        let (mut parts, body) = response.into_parts();
        let response_time = SystemTime::now();
        if !parts.headers.contains_key(header::DATE) {
            // A cache adds the Date an origin left out (RFC 9110 §6.6.1), so that an
            // Expires is measured from when the response was made.
            parts.headers.insert(
                header::DATE,
                HeaderValue::from_str(&httpdate::fmt_http_date(response_time))
                    .expect("an HTTP-date is a valid header value"),
            );
        }
        let stored = Stored {
            status: parts.status,
            headers: store::owned_headers(&parts.headers),
            request_time,
            response_time,
        };
        let vary = policy::vary_fields(&parts.headers).unwrap_or_default();
        let vary_values = policy::vary_values(&vary, &head.headers);
        let answers_304 = parts.status == StatusCode::OK
            && policy::not_modified_for(&head.headers, &parts.headers);
        let (tx, rx) = mpsc::channel(16);
        let (cache, key) = (self.clone(), key.to_string());
        tokio::spawn(async move {
            let body = cache.fill(body, tx).await;
            let stored_ok = match body {
                Some(body) => {
                    let entry = Entry {
                        stored,
                        body,
                        vary,
                        vary_values,
                    };
                    cache.store.insert(&key, entry, fetched_at)
                }
                None => false,
            };
            if let Some(guard) = guard {
                guard.finish(stored_ok);
            }
        });
        let mut response = Response::from_parts(parts, ChannelBody(rx).boxed());
        if answers_304 {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            *response.body_mut() = full(Bytes::new());
        }
        self.label(response, Outcome::Miss)
    }

    /// Reads the origin's body to the end, passing it on to the client while the client
    /// listens; returns the whole body if it fit under `--max-object` and in the budget
    /// of bodies being stored. The stored copy holds only the body's own bytes (see
    /// [`BodyFill`]), so that the memory charged to an entry is the memory it holds.
    async fn fill(
        &self,
        mut body: Body,
        tx: mpsc::Sender<Result<Bytes, BoxError>>,
    ) -> Option<StoredBody> {
        let expected = body.size_hint().exact();
        // A body of known length reserves all of it now; one of unknown length, as it comes.
        let mut reservation = match expected {
            Some(len) if len > self.settings.max_object => None,
            known => self.filling.reserve(known.unwrap_or(0)),
        };
        let mut keep = reservation.is_some();
        let mut stored = BodyFill::expecting(expected.filter(|_| keep));
        let mut client = Some(tx);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let total = stored.len() + data.len() as u64;
                    let fits = total <= self.settings.max_object
                        && reservation.as_mut().is_some_and(|r| r.cover(total));
                    if keep && fits {
                        stored.extend(&data);
                    } else if keep {
                        keep = false;
                        stored = BodyFill::default();
                        reservation = None;
                    }
                    if let Some(tx) = &client {
                        if tx.send(Ok(data)).await.is_err() {
                            // The client went away; the fill goes on for the others.
                            client = None;
                            if !keep {
                                return None;
                            }
                        }
                    }
                }
                Err(err) => {
                    if let Some(tx) = &client {
                        let _ = tx.send(Err(err)).await;
                    }
                    return None;
                }
            }
        }
        keep.then(|| stored.finish())
    }

    /// A response from a stored entry: `Age` set, 304 when the client's conditions match,
    /// no body for HEAD.
    fn respond(
        &self,
        entry: &Entry,
        head: &Head,
        age: Duration,
        outcome: Outcome,
    ) -> Response<Body> {
        let not_modified = entry.stored.status == StatusCode::OK
            && policy::not_modified_for(&head.headers, &entry.stored.headers);
        let body = if head.method == Method::HEAD || not_modified {
            full(Bytes::new())
        } else {
            blocks_body(&entry.body)
        };
        let mut response = Response::new(body);
        *response.status_mut() = if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            entry.stored.status
        };
        *response.headers_mut() = entry.stored.headers.clone();
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
        self.label(response, outcome)
    }

    fn pass(&self, result: Result<Response<Body>, ProxyError>) -> Response<Body> {
        self.metrics.passes.inc();
        let response = result.unwrap_or_else(ProxyError::into_response);
        self.label(response, Outcome::Pass)
    }

    fn label(&self, mut response: Response<Body>, outcome: Outcome) -> Response<Body> {
        if self.settings.x_cache {
            response
                .headers_mut()
                .insert("x-cache", HeaderValue::from_static(outcome.label()));
        }
        response
    }

    fn count(&self, counter: &Counter) {
        counter.inc();
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }

    /// Purges the target and the `Location` / `Content-Location` targets of an unsafe
    /// request's response (§4.4).
    fn invalidate(
        &self,
        key: &str,
        response: &HeaderMap,
        key_of_path: impl Fn(&str) -> Option<String>,
    ) {
        self.store.purge(key);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(target) = response.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            if let Some(other) = key_of_path(target) {
                self.store.purge(&other);
            }
        }
    }

    /// Hits over hits and misses so far.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.metrics.hits.get() as f64;
        let lookups = self.lookups.load(Ordering::Relaxed) as f64;
        if lookups == 0.0 {
            0.0
        } else {
            hits / lookups
        }
    }
}

/// Reads and discards a body (so that the connection can be reused).
async fn drain(response: Response<Body>) {
    let _ = response.into_body().collect().await;
}

/// A response body of a stored body's blocks.
fn blocks_body(body: &StoredBody) -> Body {
    match body.blocks() {
        [] => full(Bytes::new()),
        [one] => full(one.clone()),
        blocks => BlocksBody(blocks.iter().rev().cloned().collect()).boxed(),
    }
}

/// Bytes that bodies on their way into the store may hold at once: a quarter of the
/// store's memory, and at least one object of the largest size.
fn fill_budget(memory: u64, max_object: u64) -> u64 {
    (memory / 4).max(max_object)
}

/// Yields blocks, last first popped from the end of the vector.
struct BlocksBody(Vec<Bytes>);

impl HttpBody for BlocksBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// A body fed by the fill task.
struct ChannelBody(mpsc::Receiver<Result<Bytes, BoxError>>);

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}
