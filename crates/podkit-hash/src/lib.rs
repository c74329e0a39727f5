//! # podkit-hash: hash functions and key distributions
//!
//! Chapters 5 and 6 of *Designing Distributed Systems* place requests by key: session
//! tracking sends a client to the same replica every time, and a sharded service sends
//! each key to the shard that holds it, with *consistent* hashing so that resizing moves
//! only about 1/N of the keys. Placement must match the tools podkit replaces, so that a
//! cache tier or a shard set keeps its data when nginx or twemproxy is swapped for podkit.
//!
//! - [`nginx`]: nginx's `hash $key consistent` ring (`ngx_http_upstream_hash_module`);
//! - [`sticky`]: a stable, well-mixed hash of a key into weighted buckets (experiment splits);
//! - [`twemproxy`]: twemproxy's hash functions and distributions (ketama, modula, random).

pub mod nginx;
pub mod sticky;
pub mod twemproxy;
