//! twemproxy (nutcracker 0.5) key placement: the same key lands on the same server as
//! under nutcracker for the same `nutcracker.yaml`, with weights, names, hash tags and
//! ejections.
//!
//! - [`hashes`]: the twelve hash functions;
//! - [`distribution`]: ketama, modula, random, hash tags, server names.

pub mod distribution;
pub mod hashes;

pub use distribution::{hash_tagged, name_order, server_name, Distribution, Member, Table};
pub use hashes::{Hash, HASH_NAMES};
