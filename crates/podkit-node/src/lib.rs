//! # podkit-node: single-node sidecars and adapters
//!
//! Part I of *Designing Distributed Systems* (chapters 2–4): containers that run beside an
//! application on the same machine and augment it without its knowledge.
//!
//! - [`topz`]: `podkit sidecar topz` — chapter 2's `/topz` process readout.
//! - [`config_sync`]: `podkit sidecar config-sync` — chapter 2's dynamic-configuration
//!   sidecar.
//! - [`git_sync`]: `podkit sidecar git-sync` — chapter 2's simple PaaS: a directory kept
//!   on a git ref, swapped atomically.
//! - [`metrics_adapter`]: `podkit adapter metrics` — chapter 4's monitoring adapter:
//!   [`redis_metrics`] (Redis statistics under redis_exporter's names) or
//!   [`json_metrics`] (any JSON stats endpoint through a mapping file).
//! - [`broker`]: `podkit ambassador broker` — chapter 3's service broker: TCP to the
//!   environment's endpoint (mapping file, DNS SRV, env var).
//! - [`logs`]: `podkit adapter logs` — chapter 4's logging adapter (fluentd): files,
//!   stdin and Redis's slow log as normalized JSON lines.
//! - [`health`]: `podkit adapter health` — chapter 4's rich health monitor for MySQL,
//!   PostgreSQL or Redis.
pub mod broker;
pub mod config_sync;
pub mod exposition;
pub mod git_sync;
pub mod health;
pub mod http_fetch;
pub mod json_metrics;
pub mod logs;
pub mod metrics_adapter;
pub mod redis_client;
pub mod redis_metrics;
pub mod sync_metrics;
pub mod topz;
