//! # podkit-core: the component contract
//!
//! Chapter 2 of *Designing Distributed Systems* asks that every reusable container be
//! parameterized, expose an API surface, and be documented. This crate is that contract,
//! shared by every podkit component (see DESIGN.md, "The component contract"):
//!
//! - [`units`]: durations and byte sizes that always carry their unit;
//! - [`cli`]: clap parsing whose errors are one line naming the flag, env var or file;
//! - [`config`]: typed config errors and a YAML loader that names the bad field;
//! - [`logging`]: JSON lines on stdout, or text;
//! - [`metrics`]: the registry, Prometheus text encoding, `process_*` metrics;
//! - [`readiness`]: readiness latches behind `/readyz`;
//! - [`admin`]: the admin endpoint (`/healthz`, `/readyz`, `/metrics`, extra routes);
//! - [`http`]: an HTTP server with limits and a graceful drain;
//! - [`splice`]: sending large immutable bodies by page reference instead of copying;
//! - [`shutdown`]: SIGTERM/SIGINT as a cancellation token;
//! - [`ports`]: free loopback ports outside the ephemeral range;
//! - [`component`]: [`component::run`], which ties the above together.
//!
//! A component adopts it in a few lines:
//!
//! ```no_run
//! use podkit_core::component::{run, ComponentError, Context, ContractArgs};
//!
//! #[derive(clap::Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     contract: ContractArgs,
//! }
//!
//! async fn serve(ctx: Context) -> Result<(), ComponentError> {
//!     // Bind listeners, take readiness latches, then:
//!     ctx.started();
//!     ctx.shutdown.triggered().await;
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     let args: Args = podkit_core::cli::parse();
//!     run("example", &args.contract, serve)
//! }
//! ```

pub mod admin;
pub mod cli;
pub mod component;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod ports;
pub mod readiness;
pub mod shutdown;
pub mod splice;
pub mod units;

pub use component::{ComponentError, Context, ContractArgs};
pub use config::ConfigError;
pub use units::{ByteSize, HumanDuration};
