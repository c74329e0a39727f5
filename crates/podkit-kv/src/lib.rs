//! # podkit-kv: the sharding ambassador for Redis and memcache
//!
//! Chapters 3 and 6 of *Designing Distributed Systems* shard Redis and memcache with
//! twemproxy (nutcracker), configured by a `nutcracker.yaml`, both as a per-pod ambassador
//! on localhost and as a shared shard-router service. `podkit ambassador shard -c
//! nutcracker.yaml` is podkit's own: the same file, the same command-line flags, keys
//! placed exactly where nutcracker 0.5 places them (`podkit_hash::twemproxy`), and the same
//! JSON stats.
//!
//! - [`config`]: `nutcracker.yaml` as it is;
//! - [`resp`], [`memcache`]: the protocols as pure codecs;
//! - [`invariants`]: what the codecs keep on any input (property tests, fuzz targets);
//! - [`redis_cmd`]: which Redis commands go where;
//! - [`pool`], [`backend`]: placement, server connections, ejection;
//! - [`client`], [`redis`], [`memcached`]: client connections;
//! - [`stats`], [`metrics`]: nutcracker's JSON stats and Prometheus metrics;
//! - [`server`]: the command line and serving.

pub mod backend;
pub mod client;
pub mod config;
pub mod invariants;
pub mod memcache;
pub mod memcached;
pub mod metrics;
pub mod pool;
pub mod redis;
pub mod redis_cmd;
pub mod resp;
pub mod server;
pub mod stats;

pub use server::{run, ShardArgs};
