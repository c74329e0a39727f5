//! # podkit-queue: the work queue of chapter 10
//!
//! *Designing Distributed Systems*, chapter 10, specifies a generic work queue: a source
//! ambassador that lists items over a small HTTP API, a worker container that processes one
//! item given in a file, and a shared manager that runs workers for items not yet done.
//! podkit keeps the two interfaces exactly and improves the manager: durable state, retries
//! with back-off, timeouts, a batch mode, and the chapter's autoscaling rule.
//!
//! - [`api`]: the source API documents, parsed and validated;
//! - [`sources`]: `podkit source dir` and `podkit source file`; [`glob`]: their patterns;
//! - [`wrap`]: `podkit source filter` and `merge`, sources over sources (chapter 11);
//!   [`expr`]: the filter's predicate language;
//! - [`client`]: the manager's side of the source API;
//! - [`state`], [`store`]: what is remembered, and how it is kept durable;
//! - [`worker`]: one attempt of one item; [`multi`]: `podkit worker multi`;
//! - [`autoscale`]: the chapter's parallelism rule, pure;
//! - [`manager`]: `podkit queue run`; [`status`]: `podkit queue status` and `retry`;
//! - [`metrics`]: the manager's Prometheus metrics.

pub mod api;
pub mod autoscale;
pub mod client;
pub mod expr;
pub mod glob;
pub mod manager;
pub mod metrics;
pub mod multi;
pub mod prefetch;
pub mod reaper;
pub mod sources;
pub mod state;
pub mod status;
pub mod store;
pub mod worker;
pub mod wrap;
