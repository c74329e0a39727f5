//! The general form of the proxy's configuration (`podkit proxy -c proxy.yaml`), which
//! every preset (`podkit lb`, `sidecar tls`, `ambassador split`, `shard`) also produces
//! and prints with `--print-config`.
//!
//! ```yaml
//! listeners:
//!   - listen: 0.0.0.0:8443
//!     tls: { cert: cert.pem, key: key.pem }
//!     routes:
//!       - path: /
//!         to: { pool: web }
//! pools:
//!   web:
//!     backends: [ http://10.0.0.1:8080, { url: http://10.0.0.2:8080, weight: 2 } ]
//!     policy: round-robin
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use podkit_core::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

use crate::template::Template;

/// The whole proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Addresses to accept clients on, each with its routes.
    pub listeners: Vec<ListenerConfig>,
    /// Named groups of backends that routes send to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, PoolConfig>,
    /// Limits on what clients may send.
    #[serde(default)]
    pub limits: Limits,
}

/// One listening address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub listen: SocketAddr,
    /// Terminate TLS with this certificate (HTTP/2 and HTTP/1.1 by ALPN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Routes, matched by host (if given) and longest path prefix.
    pub routes: Vec<RouteConfig>,
}

/// A certificate and key in PEM files, reloaded when the files change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for changes.
    #[serde(default = "default_reload_check")]
    pub reload_check: HumanDuration,
}

fn default_reload_check() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}

/// Where a matching request goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Match only this `Host` (without port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Match paths starting with this prefix.
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub to: Target,
    /// Mirror every request to a shadow backend whose answer is discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tee: Option<TeeConfig>,
    /// Cache responses (an RFC 9111 shared cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheConfig>,
    /// Limit the request rate per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

/// The caching stage of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory for stored responses: bodies, heads and per-entry overhead.
    pub memory: ByteSize,
    /// Larger responses pass through uncached; at most half of `memory`. Unset: 16MiB, or
    /// half of `memory` when that is less.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_object: Option<ByteSize>,
    /// The cache key (a key template).
    pub key: String,
    /// Add `X-Cache: HIT|MISS|STALE|PASS` to responses.
    pub x_cache: bool,
    /// How long a request waits for another request's fetch of the same key.
    pub coalesce_timeout: HumanDuration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: ByteSize(256 << 20),
            max_object: None,
            key: "$host$request_uri".into(),
            x_cache: true,
            coalesce_timeout: HumanDuration(std::time::Duration::from_secs(10)),
        }
    }
}

impl CacheConfig {
    /// The default largest object, when memory allows.
    pub const DEFAULT_MAX_OBJECT: u64 = 16 << 20;
    /// The least memory a cache accepts.
    pub const MIN_MEMORY: u64 = 1 << 20;

    /// The largest object stored: as set, else the default or half of `memory`.
    pub fn max_object_bytes(&self) -> u64 {
        self.max_object
            .map(ByteSize::bytes)
            .unwrap_or_else(|| Self::DEFAULT_MAX_OBJECT.min(self.memory.bytes() / 2))
    }

    /// Why `memory` and `max_object` cannot work together, if they cannot.
    pub fn size_problem(memory: ByteSize, max_object: Option<ByteSize>) -> Option<SizeProblem> {
        if memory.bytes() < Self::MIN_MEMORY {
            return Some(SizeProblem::TooLittleMemory);
        }
        let max_object = max_object?;
        (max_object.bytes() > memory.bytes() / 2)
            .then_some(SizeProblem::ObjectOverHalf { max_object, memory })
    }
}

/// A cache's sizes that cannot work together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeProblem {
    /// Less memory than [`CacheConfig::MIN_MEMORY`].
    TooLittleMemory,
    /// An object must fit in half of the memory.
    ObjectOverHalf {
        max_object: ByteSize,
        memory: ByteSize,
    },
}

impl SizeProblem {
    /// Whether the memory setting is the one at fault (else the largest object).
    pub fn is_memory(&self) -> bool {
        matches!(self, SizeProblem::TooLittleMemory)
    }
}

impl std::fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeProblem::TooLittleMemory => write!(f, "must be at least 1MiB"),
            SizeProblem::ObjectOverHalf { max_object, memory } => write!(
                f,
                "{max_object} is more than half of the cache's memory ({memory}); \
                 raise the memory or lower the largest object"
            ),
        }
    }
}

/// The rate-limiting stage of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// The limit of anonymous clients, e.g. `10/s,burst=20`.
    pub anon: crate::ratelimit::Rate,
    /// What identifies an anonymous client (a key template).
    #[serde(default = "default_rate_key")]
    pub key: String,
    /// The limit of identified clients (those for which `user_key` is not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<crate::ratelimit::Rate>,
    /// What identifies a client as a user, e.g. `$http_authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    /// Clients tracked at most; beyond, new clients pass untracked.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_rate_key() -> String {
    "$remote_addr".to_string()
}

fn default_max_keys() -> usize {
    1_000_000
}

fn default_path() -> String {
    "/".to_string()
}

/// The action of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Balance over one pool.
    Pool(String),
    /// Chapter 3's experiment split: each client sticks to one side, in proportion.
    Split(SplitConfig),
    /// Chapter 6's sharding proxy: each key goes to one shard on a consistent ring.
    Shard(ShardConfig),
    /// Answer with a redirect to the same URL over HTTPS.
    RedirectHttps(RedirectConfig),
}

/// Sides of an experiment split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// What identifies a client (a key template).
    #[serde(default = "default_sticky")]
    pub sticky: String,
    pub sides: Vec<SplitSide>,
}

fn default_sticky() -> String {
    "$remote_addr".to_string()
}

/// One side of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSide {
    pub name: String,
    pub pool: String,
    pub weight: u32,
}

/// Shards of a sharded service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// The shard key (a key template), e.g. `$request_uri`.
    pub key: String,
    pub shards: Vec<ShardEntry>,
}

/// One shard: a pool (replicas of the shard) and its identity on the hash ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub pool: String,
    /// The name hashed onto the ring; for a shard of one server, its `host:port` places
    /// keys exactly where nginx's `hash ... consistent` would.
    pub id: String,
}

/// Where an HTTPS redirect points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// The HTTPS port to redirect to (omitted from the URL when 443).
    pub https_port: u16,
    /// 301, 302, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
}

fn default_redirect_status() -> u16 {
    308
}

/// Mirroring to a shadow backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeConfig {
    pub url: String,
    /// Mirrored requests in flight at most; more are dropped (and counted).
    #[serde(default = "default_tee_queue")]
    pub queue: usize,
    /// A mirrored request taking longer is abandoned.
    #[serde(default = "default_tee_timeout")]
    pub timeout: HumanDuration,
    /// Request bodies larger than this are not mirrored.
    #[serde(default = "default_tee_max_body")]
    pub max_body: ByteSize,
}

fn default_tee_queue() -> usize {
    256
}
fn default_tee_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_tee_max_body() -> ByteSize {
    ByteSize(1 << 20)
}

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Each backend in turn, in proportion to weight (nginx's smooth weighted round-robin).
    #[default]
    RoundRobin,
    /// The backend with the fewest requests in flight per weight.
    LeastConn,
    /// The better of two random backends by in-flight requests and latency.
    P2c,
    /// A consistent hash of `hash_key` (nginx `hash $key consistent`).
    Hash,
}

/// A group of equivalent backends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// A file listing the backends, one `http://host:port[,weight=N]` a line, followed as
    /// it changes (it replaces `backends`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends_file: Option<PathBuf>,
    #[serde(default)]
    pub policy: Policy,
    /// The key template of the `hash` policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<String>,
    #[serde(default)]
    pub ready: ReadyProbe,
    #[serde(default)]
    pub eject: Eject,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Further backends tried when an idempotent request fails before any response byte.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_retries() -> u32 {
    2
}

/// One backend: `http://host:port` and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendConfig {
    pub url: String,
    pub weight: u32,
}

impl<'de> Deserialize<'de> for BackendConfig {
    /// Accepts `http://host:port` or `{ url: http://host:port, weight: 2 }`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            url: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BackendConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL or a mapping with url and weight")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BackendConfig, E> {
                Ok(BackendConfig {
                    url: v.to_string(),
                    weight: 1,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BackendConfig, A::Error> {
                let full = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(BackendConfig {
                    url: full.url,
                    weight: full.weight,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Active readiness probing (chapter 5): a backend gets traffic only while ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadyProbe {
    /// Path probed with GET; a 2xx answer is ready. Empty disables probing.
    pub path: String,
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    /// Consecutive successes that make a backend ready again.
    pub rise: u32,
    /// Consecutive failures that make it unready.
    pub fall: u32,
}

impl Default for ReadyProbe {
    fn default() -> Self {
        ReadyProbe {
            path: "/ready".into(),
            interval: HumanDuration(std::time::Duration::from_secs(5)),
            timeout: HumanDuration(std::time::Duration::from_secs(2)),
            rise: 1,
            fall: 2,
        }
    }
}

/// Passive ejection: a backend failing in live traffic is taken out for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eject {
    /// Consecutive connection failures or timeouts that eject (0 disables).
    pub consecutive_errors: u32,
    /// Consecutive 5xx answers that eject (0 disables).
    pub consecutive_5xx: u32,
    /// First ejection time; doubles with each ejection in a row, up to `max_time`.
    pub base_time: HumanDuration,
    pub max_time: HumanDuration,
}

impl Default for Eject {
    fn default() -> Self {
        Eject {
            consecutive_errors: 3,
            consecutive_5xx: 5,
            base_time: HumanDuration(std::time::Duration::from_secs(10)),
            max_time: HumanDuration(std::time::Duration::from_secs(300)),
        }
    }
}

/// Upstream timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: HumanDuration,
    /// One try, until the response head arrives.
    pub per_try: HumanDuration,
    /// All tries of one request, until the response head arrives.
    pub total: HumanDuration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: HumanDuration(std::time::Duration::from_secs(2)),
            per_try: HumanDuration(std::time::Duration::from_secs(30)),
            total: HumanDuration(std::time::Duration::from_secs(60)),
        }
    }
}

/// What clients may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections served at once per listener.
    pub max_connections: usize,
    /// Largest request head (431 above).
    pub max_header_bytes: ByteSize,
    /// Largest request body (413 above).
    pub max_body_bytes: ByteSize,
    /// Time to send a request head, and the keep-alive idle time.
    pub header_timeout: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_header_bytes: ByteSize(64 << 10),
            max_body_bytes: ByteSize(100 << 20),
            header_timeout: HumanDuration(std::time::Duration::from_secs(30)),
        }
    }
}

/// A config value that is wrong: the dotted path of the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The `host:port` of an `http://host:port` backend URL.
pub fn backend_authority(url: &str) -> Result<http::uri::Authority, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("'{url}' must start with http://"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("'{url}' has no host"))?
        .clone();
    if authority.port_u16().is_none() {
        return Err(format!("'{url}' needs a port (http://host:port)"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("'{url}' must not have a path"));
    }
    Ok(authority)
}

impl ProxyConfig {
    /// Checks references, templates, URLs and numbers; the error names the field.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.listeners.is_empty() {
            return Err(invalid("listeners", "at least one listener is needed"));
        }
        for (name, pool) in &self.pools {
            pool.validate(&format!("pools.{name}"))?;
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            let at = format!("listeners[{i}]");
            if listener.routes.is_empty() {
                return Err(invalid(
                    format!("{at}.routes"),
                    "at least one route is needed",
                ));
            }
            for (j, route) in listener.routes.iter().enumerate() {
                self.validate_route(route, &format!("{at}.routes[{j}]"))?;
            }
        }
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        Ok(())
    }

    fn pool_exists(&self, name: &str, field: String) -> Result<(), Invalid> {
        if self.pools.contains_key(name) {
            Ok(())
        } else {
            let known: Vec<&str> = self.pools.keys().map(String::as_str).collect();
            Err(invalid(
                field,
                format!("no pool named '{name}' (pools: {})", known.join(", ")),
            ))
        }
    }

    fn validate_route(&self, route: &RouteConfig, at: &str) -> Result<(), Invalid> {
        if !route.path.starts_with('/') {
            return Err(invalid(format!("{at}.path"), "must start with /"));
        }
        match &route.to {
            Target::Pool(pool) => self.pool_exists(pool, format!("{at}.to.pool"))?,
            Target::Split(split) => {
                parse_template(&split.sticky, &format!("{at}.to.split.sticky"))?;
                if split.sides.len() < 2 {
                    return Err(invalid(
                        format!("{at}.to.split.sides"),
                        "a split needs at least two sides",
                    ));
                }
                if split.sides.iter().all(|s| s.weight == 0) {
                    return Err(invalid(format!("{at}.to.split.sides"), "every weight is 0"));
                }
                for (k, side) in split.sides.iter().enumerate() {
                    self.pool_exists(&side.pool, format!("{at}.to.split.sides[{k}].pool"))?;
                }
            }
            Target::Shard(shard) => {
                parse_template(&shard.key, &format!("{at}.to.shard.key"))?;
                if shard.shards.is_empty() {
                    return Err(invalid(
                        format!("{at}.to.shard.shards"),
                        "at least one shard is needed",
                    ));
                }
                let mut ids = std::collections::HashSet::new();
                for (k, entry) in shard.shards.iter().enumerate() {
                    self.pool_exists(&entry.pool, format!("{at}.to.shard.shards[{k}].pool"))?;
                    if !ids.insert(entry.id.as_str()) {
                        return Err(invalid(
                            format!("{at}.to.shard.shards[{k}].id"),
                            format!("duplicate shard id '{}'", entry.id),
                        ));
                    }
                }
            }
            Target::RedirectHttps(redirect) => {
                if ![301, 302, 307, 308].contains(&redirect.status) {
                    return Err(invalid(
                        format!("{at}.to.redirect_https.status"),
                        "must be 301, 302, 307 or 308",
                    ));
                }
            }
        }
        if let Some(cache) = &route.cache {
            parse_template(&cache.key, &format!("{at}.cache.key"))?;
            if let Some(problem) = CacheConfig::size_problem(cache.memory, cache.max_object) {
                let field = if problem.is_memory() {
                    "memory"
                } else {
                    "max_object"
                };
                return Err(invalid(format!("{at}.cache.{field}"), problem.to_string()));
            }
        }
        if let Some(limit) = &route.rate_limit {
            parse_template(&limit.key, &format!("{at}.rate_limit.key"))?;
            if limit.max_keys == 0 {
                return Err(invalid(
                    format!("{at}.rate_limit.max_keys"),
                    "must be at least 1",
                ));
            }
            match (&limit.user, &limit.user_key) {
                (Some(_), None) => {
                    return Err(invalid(
                        format!("{at}.rate_limit.user_key"),
                        "a user limit needs a user_key",
                    ))
                }
                (_, Some(key)) => {
                    parse_template(key, &format!("{at}.rate_limit.user_key"))?;
                }
                _ => {}
            }
        }
        if let Some(tee) = &route.tee {
            backend_authority(&tee.url).map_err(|m| invalid(format!("{at}.tee.url"), m))?;
            if tee.queue == 0 {
                return Err(invalid(format!("{at}.tee.queue"), "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl PoolConfig {
    fn validate(&self, at: &str) -> Result<(), Invalid> {
        if self.backends.is_empty() && self.backends_file.is_none() {
            return Err(invalid(
                format!("{at}.backends"),
                "a pool needs at least one backend (or a backends_file)",
            ));
        }

        for (i, backend) in self.backends.iter().enumerate() {
            backend_authority(&backend.url)
                .map_err(|m| invalid(format!("{at}.backends[{i}].url"), m))?;
            if backend.weight == 0 {
                return Err(invalid(
                    format!("{at}.backends[{i}].weight"),
                    "must be at least 1",
                ));
            }
        }
        match (&self.policy, &self.hash_key) {
            (Policy::Hash, None) => {
                return Err(invalid(
                    format!("{at}.hash_key"),
                    "the hash policy needs a hash_key",
                ))
            }
            (_, Some(key)) => {
                parse_template(key, &format!("{at}.hash_key"))?;
            }
            _ => {}
        }
        if self.ready.rise == 0 || self.ready.fall == 0 {
            return Err(invalid(
                format!("{at}.ready"),
                "rise and fall must be at least 1",
            ));
        }
        if !self.ready.path.is_empty() && !self.ready.path.starts_with('/') {
            return Err(invalid(format!("{at}.ready.path"), "must start with /"));
        }
        if self.ready.interval.get().is_zero() {
            return Err(invalid(
                format!("{at}.ready.interval"),
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

fn parse_template(text: &str, field: &str) -> Result<Template, Invalid> {
    text.parse()
        .map_err(|e: crate::template::TemplateError| invalid(field, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ProxyConfig, podkit_core::ConfigError> {
        podkit_core::config::parse_yaml(std::path::Path::new("proxy.yaml"), yaml)
    }

    const GOOD: &str = "listeners:\n  - listen: 127.0.0.1:8080\n    routes:\n      - to: { pool: web }\npools:\n  web:\n    backends: [ http://127.0.0.1:9000, { url: 'http://127.0.0.1:9001', weight: 3 } ]\n";

    #[test]
    fn parses_short_and_full_backends() {
        let config = parse(GOOD).unwrap();
        config.validate().unwrap();
        let web = &config.pools["web"];
        assert_eq!(web.backends[0].weight, 1);
        assert_eq!(web.backends[1].weight, 3);
        assert_eq!(web.policy, Policy::RoundRobin);
        assert_eq!(web.ready.path, "/ready");
        assert_eq!(config.listeners[0].routes[0].path, "/");
    }

    #[test]
    fn round_trips_through_yaml() {
        let config = parse(GOOD).unwrap();
        let text = serde_yaml_ng::to_string(&config).unwrap();
        assert_eq!(parse(&text).unwrap(), config);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = parse(
            &GOOD
                .replace("policy", "polcy")
                .replace("    backends", "    polcy: x\n    backends"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("pools.web.polcy"), "{err}");
    }

    #[test]
    fn bad_references_and_values_name_the_field() {
        let mut config = parse(GOOD).unwrap();
        config.listeners[0].routes[0].to = Target::Pool("nope".into());
        assert_eq!(
            config.validate().unwrap_err().field,
            "listeners[0].routes[0].to.pool"
        );
        let mut config = parse(GOOD).unwrap();
        config.pools.get_mut("web").unwrap().backends[0].url = "ftp://x:1".into();
        assert_eq!(
            config.validate().unwrap_err().field,
            "pools.web.backends[0].url"
        );
        let mut config = parse(GOOD).unwrap();
        config.pools.get_mut("web").unwrap().policy = Policy::Hash;
        assert_eq!(config.validate().unwrap_err().field, "pools.web.hash_key");
        let mut config = parse(GOOD).unwrap();
        config.pools.get_mut("web").unwrap().hash_key = Some("$nope".into());
        assert_eq!(config.validate().unwrap_err().field, "pools.web.hash_key");
    }

    #[test]
    fn backend_urls() {
        assert_eq!(
            backend_authority("http://10.0.0.1:8080").unwrap().as_str(),
            "10.0.0.1:8080"
        );
        assert!(backend_authority("http://10.0.0.1").is_err());
        assert!(backend_authority("https://10.0.0.1:1").is_err());
        assert!(backend_authority("http://10.0.0.1:1/x").is_err());
    }
}
