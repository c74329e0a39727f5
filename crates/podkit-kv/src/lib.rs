//! # podkit-kv: the sharding ambassador for Redis and memcache
//!
//! Chapters 3 and 6 of *Designing Distributed Systems* shard Redis and memcache with
//! twemproxy (nutcracker), configured by a `nutcracker.yaml`, both as a per-pod ambassador
//! on localhost and as a shared shard-router service. This crate is podkit's own, placing
//! keys exactly where nutcracker 0.5 does.
//!
//! - [`config`]: `nutcracker.yaml` as it is.
pub mod config;
