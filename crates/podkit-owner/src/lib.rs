//! # podkit-owner: ownership election
//!
//! Chapter 9 of *Designing Distributed Systems*: locks, renewable leases, master election
//! and fencing, built — as the chapter insists — on a consistent key-value store with
//! compare-and-swap, TTLs and watches (etcd) rather than on consensus of our own.
//!
//! - [`store`]: the operations the chapter needs, over etcd's v3 API;
//! - [`lease`]: a lease renewed every TTL/2 that reports its loss at once;
//! - [`lock`]: fair, watch-based locks whose unlock only ever releases our own key;
//! - [`election`]: campaign, leader, resign; the leader's id stored with its key;
//! - [`fence`]: validating `(owner, token)` so a stale owner is rejected;
//! - [`commands`]: `podkit lock NAME -- CMD` and `podkit elect NAME -- CMD`;
//! - [`embedded`]: `podkit store serve`, a durable single-machine store that speaks the
//!   same etcd v3 API, for when there is no etcd cluster.

pub mod commands;
pub mod election;
pub mod embedded;
pub mod fence;
pub mod lease;
pub mod lock;
pub mod store;
