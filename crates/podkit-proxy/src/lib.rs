//! # podkit-proxy: one HTTP proxy engine for every HTTP role in the book
//!
//! Chapter 2's HTTPS sidecar, chapter 3's experiment ambassador and tee, chapter 5's
//! replicated load-balanced service (readiness probes, session tracking, SSL termination)
//! and chapter 6's consistent sharding proxy all put an HTTP proxy in front of something;
//! the book configures nginx (and Varnish) differently for each. podkit has one engine
//! whose stages compose — TLS, rate limit, cache, then split / shard / balance, then an
//! upstream pool — with presets (`podkit lb`, `cache`, `sidecar tls`, `ambassador split`,
//! `shard`) and a general YAML form (`podkit proxy -c`).
//!
//! - [`config`]: the YAML form and its validation;
//! - [`admin`]: the cache's purge and ban endpoints on the admin port;
//! - [`presets`]: flags of each preset, turned into a config;
//! - [`server`]: building and serving a config;
//! - [`route`]: the request path (match, choose, forward, respond);
//! - [`upstream`]: pools, backends, readiness probes, passive ejection, retries;
//! - [`balance`]: round-robin, least-conn, p2c and consistent hash;
//! - [`cache`]: the RFC 9111 caching stage (chapter 5's Varnish tier);
//! - [`ratelimit`]: the rate-limiting stage (429 with `X-RateLimit-*`);
//! - [`tcp`]: the layer-4 balancer of `podkit lb --protocol tcp`;
//! - [`tee`]: mirroring to a shadow backend;

//! - [`tls`]: rustls termination with certificate reload;
//! - [`template`], [`headers`], [`body`], [`metrics`], [`error`]: the pieces in between.

pub mod admin;
pub mod balance;
pub mod body;
pub mod cache;
pub mod config;
pub mod error;
pub mod headers;
pub mod metrics;
pub mod presets;
pub mod ratelimit;
pub mod route;
pub mod server;
pub mod tcp;
pub mod tee;
pub mod template;
pub mod tls;
pub mod upstream;

pub use config::ProxyConfig;
pub use server::{run, Source};
