//! # podkit
//!
//! The patterns of *Designing Distributed Systems* as one binary: each subcommand is a
//! reusable component (a sidecar, an ambassador, an adapter...) that keeps the contract of
//! `podkit-core`. This crate only parses arguments and dispatches; the components live in
//! the library crates named after the book's parts.

mod cli;

use std::process::ExitCode;

use cli::{Cli, SidecarCommand};
use podkit_core::component;

fn main() -> ExitCode {
    let cli: Cli = podkit_core::cli::parse();
    match cli {
        Cli::Sidecar(SidecarCommand::Topz(c)) => component::run("topz", &c.contract, |ctx| {
            podkit_node::topz::run(c.topz, ctx)
        }),
    }
}
