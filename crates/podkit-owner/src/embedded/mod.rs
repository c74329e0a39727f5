//! `podkit store serve`: the embedded default store. One machine's durable key-value
//! store that speaks the part of etcd's v3 gRPC API that ownership needs (KV Range, Put,
//! DeleteRange and Txn; Lease Grant, Revoke, KeepAlive, TimeToLive and Leases; Watch), so
//! the same clients — podkit's own and `etcdctl` — talk to it or to an etcd cluster.
//! It is not replicated: it is as available as the machine it runs on.
//!
//! - [`state`]: keys, revisions, leases and the semantics of each request (pure);
//! - [`disk`]: the redb database every change is committed to before it is answered;
//! - [`core`]: state, disk and event history behind one lock;
//! - [`watch`]: watch streams;
//! - [`grpc`]: the gRPC services;
//! - [`serve`]: the command.

pub mod core;
pub mod disk;
pub mod grpc;
pub mod serve;
pub mod state;
pub mod watch;
