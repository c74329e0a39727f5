//! RFC 9111 as pure functions: whether a response may be stored by a shared cache, how
//! long it stays fresh, how old it is, whether a stored response may answer a request
//! (with or without validation, fresh or stale), Vary matching, and updating a stored
//! response from a 304.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::control::CacheControl;

/// Heuristic freshness is this fraction of the time since `Last-Modified` (§4.2.2).
const HEURISTIC_FRACTION: f64 = 0.1;
/// Upper bound of a heuristic lifetime.
const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The times and head of a stored response, what age and freshness are computed from.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// When the request that produced it was sent.
    pub request_time: SystemTime,
    /// When the response was received.
    pub response_time: SystemTime,
}

/// Whether a shared cache may store this response to a GET (RFC 9111 §3).
pub fn storable(
    request: &HeaderMap,
    request_cc: &CacheControl,
    status: StatusCode,
    response: &HeaderMap,
    response_cc: &CacheControl,
) -> bool {
    if request_cc.no_store || response_cc.no_store || response_cc.private {
        return false;
    }
    // Partial content and 304s are not whole representations.
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    if request.contains_key(header::AUTHORIZATION)
        && !(response_cc.must_revalidate || response_cc.public || response_cc.s_maxage.is_some())
    {
        return false;
    }
    if vary_fields(response).is_none() {
        return false;
    }
    let explicit = response_cc.s_maxage.is_some()
        || response_cc.max_age.is_some()
        || response.contains_key(header::EXPIRES);
    if !(explicit || response_cc.public || heuristically_cacheable(status)) {
        return false;
    }
    // Keep only what can be reused: fresh for a while, or revalidatable.
    let lifetime = freshness_lifetime(status, response, response_cc);
    !lifetime.is_zero()
        || response.contains_key(header::ETAG)
        || response.contains_key(header::LAST_MODIFIED)
}

/// The freshness lifetime (§4.2.1): `s-maxage`, else `max-age`, else `Expires` − `Date`,
/// else a heuristic from `Last-Modified` for heuristically cacheable or public responses.
pub fn freshness_lifetime(status: StatusCode, headers: &HeaderMap, cc: &CacheControl) -> Duration {
    if let Some(s) = cc.s_maxage {
        return Duration::from_secs(s);
    }
    if let Some(s) = cc.max_age {
        return Duration::from_secs(s);
    }
    let date_value = date(headers, header::DATE);
    if headers.contains_key(header::EXPIRES) {
        // An invalid Expires means "already expired".
        return match (date(headers, header::EXPIRES), date_value) {
            (Some(expires), Some(date)) => expires.duration_since(date).unwrap_or(Duration::ZERO),
            (Some(expires), None) => expires
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        };
    }
    if heuristically_cacheable(status) || cc.public {
        if let Some(modified) = date(headers, header::LAST_MODIFIED) {
            let reference = date_value.unwrap_or_else(SystemTime::now);
            if let Ok(since) = reference.duration_since(modified) {
                return since.mul_f64(HEURISTIC_FRACTION).min(HEURISTIC_MAX);
            }
        }
    }
    Duration::ZERO
}

/// The current age of a stored response at `now` (§4.2.3).
pub fn current_age(stored: &Stored, now: SystemTime) -> Duration {
    let age_value = stored
        .headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let date_value = date(&stored.headers, header::DATE).unwrap_or(stored.response_time);
    let apparent_age = stored
        .response_time
        .duration_since(date_value)
        .unwrap_or_default();
    let response_delay = stored
        .response_time
        .duration_since(stored.request_time)
        .unwrap_or_default();
    let corrected_age_value = age_value + response_delay;
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.duration_since(stored.response_time).unwrap_or_default();
    corrected_initial_age + resident_time
}

/// Age and lifetime of a stored response at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub age: Duration,
    pub lifetime: Duration,
}

impl Freshness {
    /// Computes both for `stored` at `now`.
    pub fn of(stored: &Stored, cc: &CacheControl, now: SystemTime) -> Freshness {
        Freshness {
            age: current_age(stored, now),
            lifetime: freshness_lifetime(stored.status, &stored.headers, cc),
        }
    }

    /// Whether it is still fresh.
    pub fn is_fresh(&self) -> bool {
        self.age < self.lifetime
    }

    /// How long past its lifetime it is (zero while fresh).
    pub fn staleness(&self) -> Duration {
        self.age.saturating_sub(self.lifetime)
    }
}

/// Whether the stored response may answer the request without contacting the origin
/// (§4.2, §5.2.1, §5.2.2).
pub fn reusable_without_validation(
    f: Freshness,
    response_cc: &CacheControl,
    request_cc: &CacheControl,
) -> bool {
    if response_cc.no_cache || request_cc.no_cache {
        return false;
    }
    if request_cc
        .max_age
        .is_some_and(|max| f.age > Duration::from_secs(max))
    {
        return false;
    }
    if let Some(min_fresh) = request_cc.min_fresh {
        if f.age + Duration::from_secs(min_fresh) >= f.lifetime {
            return false;
        }
    }
    if f.is_fresh() {
        return true;
    }
    if forbids_stale(response_cc) {
        return false;
    }
    match request_cc.max_stale {
        Some(None) => true,
        Some(Some(max)) => f.staleness() <= Duration::from_secs(max),
        None => false,
    }
}

/// A shared cache never serves these stale (§5.2.2.2, §5.2.2.8; `s-maxage` implies
/// `proxy-revalidate`, §5.2.2.10).
fn forbids_stale(cc: &CacheControl) -> bool {
    cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some()
}

/// Whether a request with `max-age` or `min-fresh` and no `max-stale` asks for a fresh
/// response only (§5.2.1.1, §5.2.1.3).
fn wants_fresh(request_cc: &CacheControl) -> bool {
    (request_cc.max_age.is_some() || request_cc.min_fresh.is_some())
        && request_cc.max_stale.is_none()
}

/// Whether a stale response may be served while it is revalidated in the background
/// (RFC 5861 §3), unless the request asks for a fresh one.
pub fn serve_while_revalidating(
    f: Freshness,
    response_cc: &CacheControl,
    request_cc: &CacheControl,
) -> bool {
    !f.is_fresh()
        && !forbids_stale(response_cc)
        && !response_cc.no_cache
        && !request_cc.no_cache
        && !wants_fresh(request_cc)
        && response_cc
            .stale_while_revalidate
            .is_some_and(|window| f.staleness() <= Duration::from_secs(window))
}

/// Whether a stale response may be served because the origin failed (RFC 5861 §4); never
/// one whose directives forbid serving it stale, `no-cache` included (§4.2.4).
pub fn serve_if_error(f: Freshness, response_cc: &CacheControl, request_cc: &CacheControl) -> bool {
    if forbids_stale(response_cc) || response_cc.no_cache {
        return false;
    }
    let window = request_cc.stale_if_error.or(response_cc.stale_if_error);
    window.is_some_and(|w| f.staleness() <= Duration::from_secs(w))
}

/// The header names a response varies on; `None` for `Vary: *` (matches nothing).
pub fn vary_fields(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut fields = Vec::new();
    for value in headers.get_all(header::VARY) {
        let text = value.to_str().ok()?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
            if !fields.contains(&name) {
                fields.push(name);
            }
        }
    }
    fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(fields)
}

/// The request's values of the Vary fields, normalised (field lines joined, whitespace
/// around commas removed): the secondary key of §4.1.
pub fn vary_values(fields: &[HeaderName], request: &HeaderMap) -> Vec<Option<String>> {
    fields
        .iter()
        .map(|name| {
            let values: Vec<String> = request
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_string())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        })
        .collect()
}

/// Updates a stored head from a 304's fields (§3.2, §4.3.4), keeping the stored body's
/// framing. The stored `Age` gives way to the 304's, or goes: the response has just been
/// validated, and the refreshed entry's age counts from then.
pub fn merge_not_modified(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    if !not_modified.contains_key(header::AGE) {
        stored.remove(header::AGE);
    }
    for name in not_modified.keys() {
        if [
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::TRANSFER_ENCODING,
            header::CONTENT_ENCODING,
        ]
        .contains(name)
        {
            continue;
        }
        let values: Vec<HeaderValue> = not_modified.get_all(name).iter().cloned().collect();
        stored.remove(name);
        for value in values {
            stored.append(name.clone(), value);
        }
    }
}

/// Whether a 304 speaks of the stored response it revalidated, so that it may update it
/// (§4.3.4): an entity tag it carries must match the stored one (strongly when both are
/// strong), else a `Last-Modified` it carries must equal the stored one. A 304 without
/// validators updates the response it was asked about.
pub fn not_modified_matches(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let field = |h: &HeaderMap, name| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    if let Some(tag) = field(not_modified, header::ETAG) {
        let Some(stored_tag) = field(stored, header::ETAG) else {
            return false;
        };
        let weak = |t: &str| t.starts_with("W/");
        return if weak(&tag) || weak(&stored_tag) {
            opaque_tag(&tag) == opaque_tag(&stored_tag)
        } else {
            tag == stored_tag
        };
    }
    match (
        date(not_modified, header::LAST_MODIFIED),
        date(stored, header::LAST_MODIFIED),
    ) {
        (Some(new), Some(old)) => new == old,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Whether the client's conditional request (`If-None-Match`, else `If-Modified-Since`)
/// is satisfied by the stored response, so that a 304 answers it (RFC 9110 §13.2.2).
pub fn not_modified_for(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(if_none_match) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let Some(etag) = stored.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        return if_none_match.trim() == "*"
            || if_none_match
                .split(',')
                .any(|t| opaque_tag(t) == opaque_tag(etag));
    }
    match (
        date(request, header::IF_MODIFIED_SINCE),
        date(stored, header::LAST_MODIFIED),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// An entity tag without its weakness mark, for the weak comparison (RFC 9110 §8.8.3.2).
fn opaque_tag(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// Whether a response to `method` invalidates stored responses for its URI (§4.4).
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !method.is_safe() && (status.is_success() || status.is_redirection())
}

/// An HTTP-date header as a time.
pub fn date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn http_date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    fn cc(v: &str) -> CacheControl {
        CacheControl::parse(&headers(&[("cache-control", v.into())]))
    }

    #[test]
    fn lifetime_precedence() {
        let h = headers(&[("date", http_date(at(0))), ("expires", http_date(at(300)))]);
        assert_eq!(
            freshness_lifetime(StatusCode::OK, &h, &cc("s-maxage=10, max-age=20")),
            Duration::from_secs(10)
        );
        assert_eq!(
            freshness_lifetime(StatusCode::OK, &h, &cc("max-age=20")),
            Duration::from_secs(20)
        );
        assert_eq!(
            freshness_lifetime(StatusCode::OK, &h, &CacheControl::default()),
            Duration::from_secs(300)
        );
        let bad = headers(&[("date", http_date(at(0))), ("expires", "0".into())]);
        assert_eq!(
            freshness_lifetime(StatusCode::OK, &bad, &CacheControl::default()),
            Duration::ZERO
        );
    }

    #[test]
    fn heuristic_only_where_allowed() {
        let h = headers(&[
            ("date", http_date(at(1000))),
            ("last-modified", http_date(at(0))),
        ]);
        assert_eq!(
            freshness_lifetime(StatusCode::OK, &h, &CacheControl::default()),
            Duration::from_secs(100)
        );
        assert_eq!(
            freshness_lifetime(StatusCode::CREATED, &h, &CacheControl::default()),
            Duration::ZERO
        );
        assert_eq!(
            freshness_lifetime(StatusCode::CREATED, &h, &cc("public")),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn age_follows_rfc_9111() {
        let stored = Stored {
            status: StatusCode::OK,
            headers: headers(&[("date", http_date(at(100))), ("age", "30".into())]),
            request_time: at(100),
            response_time: at(102),
        };
        // corrected_initial_age = max(apparent 2, 30 + delay 2) = 32; resident 8.
        assert_eq!(current_age(&stored, at(110)), Duration::from_secs(40));
    }

    #[test]
    fn storability() {
        // (request headers, request Cache-Control, status, response headers, response
        // Cache-Control, storable?)
        type Pairs = &'static [(&'static str, &'static str)];
        const AUTH: Pairs = &[("authorization", "Bearer x")];
        let cases: [(Pairs, &str, StatusCode, Pairs, &str, bool); 11] = [
            (&[], "", StatusCode::OK, &[], "max-age=60", true),
            (&[], "", StatusCode::OK, &[], "no-store, max-age=60", false),
            (&[], "no-store", StatusCode::OK, &[], "max-age=60", false),
            (&[], "", StatusCode::OK, &[], "private, max-age=60", false),
            (AUTH, "", StatusCode::OK, &[], "max-age=60", false),
            (AUTH, "", StatusCode::OK, &[], "s-maxage=60", true),
            (AUTH, "", StatusCode::OK, &[], "public, max-age=60", true),
            (
                &[],
                "",
                StatusCode::OK,
                &[("vary", "*")],
                "max-age=60",
                false,
            ),
            (
                &[],
                "",
                StatusCode::PARTIAL_CONTENT,
                &[],
                "max-age=60",
                false,
            ),
            // No freshness and no validator: nothing to reuse.
            (&[], "", StatusCode::OK, &[], "", false),
            (&[], "", StatusCode::OK, &[("etag", "\"v1\"")], "", true),
        ];
        let map = |pairs: &[(&str, &str)]| {
            headers(
                &pairs
                    .iter()
                    .map(|(k, v)| (*k, v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        for (request, request_cc, status, response, response_cc, expected) in cases {
            assert_eq!(
                storable(
                    &map(request),
                    &cc(request_cc),
                    status,
                    &map(response),
                    &cc(response_cc)
                ),
                expected,
                "{request:?} {request_cc:?} {status} {response:?} {response_cc:?}"
            );
        }
    }

    #[test]
    fn reuse_rules() {
        let fresh = Freshness {
            age: Duration::from_secs(10),
            lifetime: Duration::from_secs(60),
        };
        let stale = Freshness {
            age: Duration::from_secs(70),
            lifetime: Duration::from_secs(60),
        };
        let none = CacheControl::default();
        assert!(reusable_without_validation(fresh, &none, &none));
        assert!(!reusable_without_validation(stale, &none, &none));
        assert!(!reusable_without_validation(fresh, &cc("no-cache"), &none));
        assert!(!reusable_without_validation(fresh, &none, &cc("no-cache")));
        assert!(!reusable_without_validation(fresh, &none, &cc("max-age=5")));
        assert!(!reusable_without_validation(
            fresh,
            &none,
            &cc("min-fresh=55")
        ));
        assert!(reusable_without_validation(
            stale,
            &none,
            &cc("max-stale=20")
        ));
        assert!(!reusable_without_validation(
            stale,
            &cc("must-revalidate"),
            &cc("max-stale")
        ));
        assert!(serve_while_revalidating(
            stale,
            &cc("stale-while-revalidate=30"),
            &none
        ));
        assert!(!serve_while_revalidating(
            stale,
            &cc("stale-while-revalidate=5"),
            &none
        ));
        assert!(!serve_while_revalidating(
            stale,
            &cc("stale-while-revalidate=30, must-revalidate"),
            &none
        ));
        assert!(serve_if_error(stale, &cc("stale-if-error=60"), &none));
        assert!(!serve_if_error(
            stale,
            &cc("stale-if-error=60, proxy-revalidate"),
            &none
        ));
        assert!(serve_if_error(stale, &none, &cc("stale-if-error=60")));
        // A request that asks for a fresh response does not get a stale one while the
        // cache revalidates, unless it also accepts staleness.
        let swr = cc("stale-while-revalidate=30");
        assert!(!serve_while_revalidating(stale, &swr, &cc("max-age=0")));
        assert!(!serve_while_revalidating(stale, &swr, &cc("min-fresh=1")));
        assert!(serve_while_revalidating(
            stale,
            &swr,
            &cc("max-age=0, max-stale=5")
        ));
        // no-cache forbids serving stale on an error too (§4.2.4).
        assert!(!serve_if_error(
            stale,
            &cc("no-cache, stale-if-error=60"),
            &none
        ));
    }

    #[test]
    fn a_304_updates_only_the_response_it_speaks_of() {
        let stored = headers(&[
            ("etag", "\"v1\"".into()),
            ("last-modified", http_date(at(0))),
        ]);
        let matches = |pairs: &[(&str, String)]| not_modified_matches(&stored, &headers(pairs));
        assert!(matches(&[]));
        assert!(matches(&[("etag", "\"v1\"".into())]));
        assert!(matches(&[("etag", "W/\"v1\"".into())]));
        assert!(!matches(&[("etag", "\"v2\"".into())]));
        assert!(matches(&[("last-modified", http_date(at(0)))]));
        assert!(!matches(&[("last-modified", http_date(at(5)))]));
        let untagged = headers(&[("last-modified", http_date(at(0)))]);
        assert!(!not_modified_matches(
            &untagged,
            &headers(&[("etag", "\"v1\"".into())])
        ));
    }

    #[test]
    fn vary_keys() {
        let resp = headers(&[("vary", "Accept-Language, accept-encoding".into())]);
        let fields = vary_fields(&resp).unwrap();
        assert_eq!(
            fields,
            vec![
                HeaderName::from_static("accept-encoding"),
                HeaderName::from_static("accept-language")
            ]
        );
        let a = headers(&[("accept-language", "en, fr".into())]);
        let b = headers(&[("accept-language", "en,fr".into())]);
        let c = headers(&[("accept-language", "de".into())]);
        assert_eq!(vary_values(&fields, &a), vary_values(&fields, &b));
        assert_ne!(vary_values(&fields, &a), vary_values(&fields, &c));
    }

    #[test]
    fn not_modified_merge_and_conditionals() {
        let mut stored = headers(&[
            ("etag", "\"v1\"".into()),
            ("content-length", "5".into()),
            ("x-old", "1".into()),
            ("age", "600".into()),
        ]);
        let update = headers(&[
            ("etag", "\"v1\"".into()),
            ("content-length", "0".into()),
            ("x-old", "2".into()),
            ("x-new", "3".into()),
        ]);
        merge_not_modified(&mut stored, &update);
        assert_eq!(stored["content-length"], "5");
        assert_eq!(stored["x-old"], "2");
        assert_eq!(stored["x-new"], "3");
        assert!(stored.get("age").is_none(), "validated just now");
        assert!(not_modified_for(
            &headers(&[("if-none-match", "W/\"v0\", \"v1\"".into())]),
            &stored
        ));
        assert!(!not_modified_for(
            &headers(&[("if-none-match", "\"v2\"".into())]),
            &stored
        ));
        let lm = headers(&[("last-modified", http_date(at(0)))]);
        assert!(not_modified_for(
            &headers(&[("if-modified-since", http_date(at(5)))]),
            &lm
        ));
        assert!(!not_modified_for(
            &headers(&[(
                "if-modified-since",
                http_date(at(0) - Duration::from_secs(5))
            )]),
            &lm
        ));
    }

    #[test]
    fn unsafe_methods_invalidate() {
        assert!(invalidates(&Method::POST, StatusCode::OK));
        assert!(invalidates(&Method::DELETE, StatusCode::NO_CONTENT));
        assert!(!invalidates(
            &Method::POST,
            StatusCode::INTERNAL_SERVER_ERROR
        ));
        assert!(!invalidates(&Method::GET, StatusCode::OK));
    }
}
