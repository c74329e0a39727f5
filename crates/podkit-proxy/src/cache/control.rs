//! `Cache-Control` directives (RFC 9111 §5.2), parsed from every `Cache-Control` field line.

use http::header::{HeaderMap, CACHE_CONTROL, PRAGMA};

/// The directives podkit's shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    pub only_if_cached: bool,
    /// `max-stale` on a request: `Some(None)` accepts any staleness.
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<u64>,
}

impl CacheControl {
    /// Parses the `Cache-Control` fields of `headers`. Directive names are case-insensitive;
    /// the qualified forms `no-cache="f"` and `private="f"` are treated as unqualified,
    /// which RFC 9111 allows. A malformed delta-seconds value counts as 0 (stale); of a
    /// directive given more than once, the first occurrence counts (§4.2.1).
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in split_directives(text) {
                let (name, argument) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds = || argument.map(|a| a.parse::<u64>().unwrap_or(0));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "max-age" => first(&mut cc.max_age, seconds().unwrap_or(0)),
                    "s-maxage" => first(&mut cc.s_maxage, seconds().unwrap_or(0)),
                    "stale-while-revalidate" => {
                        first(&mut cc.stale_while_revalidate, seconds().unwrap_or(0))
                    }
                    "stale-if-error" => first(&mut cc.stale_if_error, seconds().unwrap_or(0)),
                    "only-if-cached" => cc.only_if_cached = true,
                    "max-stale" => first(&mut cc.max_stale, seconds()),
                    "min-fresh" => first(&mut cc.min_fresh, seconds().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        cc
    }

    /// Request directives, with `Pragma: no-cache` read as `no-cache` when the request has
    /// no `Cache-Control` (RFC 9111 §5.4).
    pub fn parse_request(headers: &HeaderMap) -> CacheControl {
        let mut cc = CacheControl::parse(headers);
        if !headers.contains_key(CACHE_CONTROL) {
            let pragma_no_cache = headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.to_ascii_lowercase().contains("no-cache"));
            cc.no_cache |= pragma_no_cache;
        }
        cc
    }
}

/// Sets a directive's value unless an earlier occurrence already did.
fn first<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// Splits on commas outside quoted strings.
fn split_directives(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(values: &[&str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(CACHE_CONTROL, v.parse().unwrap());
        }
        CacheControl::parse(&h)
    }

    #[test]
    fn directives() {
        let c = cc(&[
            "public, max-age=60, S-MAXAGE=120",
            "stale-while-revalidate=30,stale-if-error=600",
        ]);
        assert!(c.public);
        assert_eq!(c.max_age, Some(60));
        assert_eq!(c.s_maxage, Some(120));
        assert_eq!(c.stale_while_revalidate, Some(30));
        assert_eq!(c.stale_if_error, Some(600));
        let c = cc(&["no-cache=\"Set-Cookie, X-Foo\", private"]);
        assert!(c.no_cache && c.private);
        assert_eq!(cc(&["max-age=abc"]).max_age, Some(0));
        assert_eq!(cc(&["max-stale"]).max_stale, Some(None));
        assert_eq!(cc(&["max-stale=5"]).max_stale, Some(Some(5)));
    }

    #[test]
    fn the_first_of_a_repeated_directive_counts() {
        assert_eq!(cc(&["max-age=60, max-age=3600"]).max_age, Some(60));
        assert_eq!(cc(&["s-maxage=5", "s-maxage=500"]).s_maxage, Some(5));
        assert_eq!(cc(&["max-stale, max-stale=5"]).max_stale, Some(None));
    }

    #[test]
    fn pragma_only_without_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(PRAGMA, "no-cache".parse().unwrap());
        assert!(CacheControl::parse_request(&h).no_cache);
        h.insert(CACHE_CONTROL, "max-age=5".parse().unwrap());
        assert!(!CacheControl::parse_request(&h).no_cache);
    }
}
