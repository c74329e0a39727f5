//! # podkit
//!
//! The patterns of *Designing Distributed Systems* as one binary: each subcommand is a
//! reusable component (a sidecar, an ambassador, an adapter...) that keeps the contract of
//! `podkit-core`. This crate only parses arguments and dispatches; the components live in
//! the library crates named after the book's parts.

mod cli;

/// mimalloc: podkit allocates per request, and glibc's allocator showed in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use cli::{
    AdapterCommand, AmbassadorCommand, Cli, QueueCommand, SidecarCommand, SourceCommand,
    StoreCommand, WorkerCommand,
};
use podkit_core::{component, ConfigError, ContractArgs};
use podkit_proxy::{ProxyConfig, Source};

fn main() -> ExitCode {
    let cli: Cli = podkit_core::cli::parse();
    match cli {
        Cli::Sidecar(SidecarCommand::Topz(c)) => component::run("topz", &c.contract, |ctx| {
            podkit_node::topz::run(c.topz, ctx)
        }),
        Cli::Sidecar(SidecarCommand::ConfigSync(c)) => {
            let plan = match c.sync.plan() {
                Ok(plan) => plan,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("config-sync", &c.contract, |ctx| {
                podkit_node::config_sync::run(c.sync, plan, ctx)
            })
        }
        Cli::Sidecar(SidecarCommand::GitSync(c)) => {
            let plan = match c.sync.plan() {
                Ok(plan) => plan,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("git-sync", &c.contract, |ctx| {
                podkit_node::git_sync::run(c.sync, plan, ctx)
            })
        }
        Cli::Sidecar(SidecarCommand::Tls(c)) => {
            let listens = vec!["--listen", "--redirect-http"];
            proxy(
                "tls",
                c.preset.config(),
                c.preset.print_config,
                listens,
                &c.contract,
            )
        }
        Cli::Ambassador(AmbassadorCommand::Split(c)) => proxy(
            "split",
            c.preset.config(),
            c.preset.print_config,
            vec!["--listen"],
            &c.contract,
        ),
        Cli::Adapter(AdapterCommand::Metrics(c)) => {
            let target = match c.metrics.target() {
                Ok(target) => target,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("metrics", &c.contract, |ctx| {
                podkit_node::metrics_adapter::run(c.metrics, target, ctx)
            })
        }
        Cli::Ambassador(AmbassadorCommand::Broker(c)) => {
            let (definition, endpoint) = match c.broker.definition() {
                Ok(found) => found,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("broker", &c.contract, |ctx| {
                podkit_node::broker::run(c.broker, definition, endpoint, ctx)
            })
        }
        Cli::Lock(c) => {
            let mut contract = c.contract.clone();
            // Many `podkit lock` may run on one machine: a free admin port unless named.
            if contract.admin == podkit_core::component::DEFAULT_ADMIN {
                contract.admin.set_port(0);
            }
            // A short-lived command: one thread starts faster than a pool, and does all
            // it needs.
            if contract.threads == 0 {
                contract.threads = 1;
            }
            let exit = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
            let status = component::run("lock", &contract, |ctx| {
                podkit_owner::commands::run_lock(c.lock, exit.clone(), ctx)
            });
            command_status(status, &exit)
        }
        Cli::Store(StoreCommand::Serve(c)) => component::run("store", &c.contract, |ctx| {
            podkit_owner::embedded::serve::run(c.serve, ctx)
        }),
        Cli::Elect(c) => {
            let exit = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
            let status = component::run("elect", &c.contract, |ctx| {
                podkit_owner::commands::run_elect(c.elect, exit.clone(), ctx)
            });
            command_status(status, &exit)
        }
        Cli::Adapter(AdapterCommand::Logs(c)) => {
            let sources = match c.logs.sources() {
                Ok(sources) => sources,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            // Stdout carries the normalized records: the adapter's own logs go to stderr.
            component::run_logging_to(
                "logs",
                &c.contract,
                podkit_core::logging::LogOutput::Stderr,
                |ctx| podkit_node::logs::run(c.logs, sources, ctx),
            )
        }
        Cli::Adapter(AdapterCommand::Health(c)) => {
            let target = match c.health.target() {
                Ok(target) => target,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("health", &c.contract, |ctx| {
                podkit_node::health::run(c.health, target, ctx)
            })
        }
        Cli::Ambassador(AmbassadorCommand::Shard(c)) => {
            let pools = match podkit_kv::config::load(&c.shard.conf_file) {
                Ok(pools) => pools,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            if c.shard.test_conf {
                println!(
                    "nutcracker: configuration file '{}' syntax is ok",
                    c.shard.conf_file.display()
                );
                return ExitCode::SUCCESS;
            }
            let mut contract = c.contract.clone();
            if contract.log_level.is_none() {
                contract.log_level = c
                    .shard
                    .verbose
                    .map(|v| podkit_kv::server::log_level(v).to_string());
            }
            component::run("shard", &contract, |ctx| {
                podkit_kv::run(c.shard, pools, ctx)
            })
        }
        Cli::Lb(c) if c.preset.protocol == podkit_proxy::presets::Protocol::Tcp => {
            let settings = match c.preset.tcp_settings() {
                Ok(settings) => settings,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("lb", &c.contract, |ctx| {
                podkit_proxy::tcp::run(settings, ctx)
            })
        }
        Cli::Lb(c) => proxy(
            "lb",
            c.preset.config(),
            c.preset.print_config,
            vec!["--listen"],
            &c.contract,
        ),
        Cli::Cache(c) => proxy(
            "cache",
            c.preset.config(),
            c.preset.print_config,
            vec!["--listen"],
            &c.contract,
        ),
        Cli::Shard(c) => proxy(
            "shard",
            c.preset.config(),
            c.preset.print_config,
            vec!["--listen"],
            &c.contract,
        ),
        Cli::Up(mut c) => {
            let loaded = match podkit_up::load(&c.up.file) {
                Ok(loaded) => loaded,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            if c.up.check {
                println!("{}: ok", c.up.file.display());
                return ExitCode::SUCCESS;
            }
            // One thread: the kernel ties each child's PR_SET_PDEATHSIG to the thread that
            // started it, so the runner starts every process from its main thread.
            c.contract.threads = 1;
            component::run("up", &c.contract, |ctx| podkit_up::run(c.up, loaded, ctx))
        }
        Cli::Queue(QueueCommand::Run(c)) => {
            let cli::QueueRun { run, contract, .. } = *c;
            component::run("queue", &contract, |ctx| {
                podkit_queue::manager::run(run, ctx)
            })
        }
        Cli::Queue(QueueCommand::Status(c)) if c.status.watch => {
            report(podkit_queue::status::watch(&c.status))
        }
        Cli::Queue(QueueCommand::Status(c)) => report(podkit_queue::status::status(&c.status)),
        Cli::Queue(QueueCommand::Retry(c)) => report(podkit_queue::status::retry(&c.retry)),
        Cli::Queue(QueueCommand::Reaper) => {
            podkit_queue::reaper::run_reaper();
            ExitCode::SUCCESS
        }
        Cli::Source(SourceCommand::Dir(c)) => {
            let items = match c.dir.items() {
                Ok(items) => items,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("source", &c.contract, |ctx| {
                podkit_queue::sources::serve_items(items, c.dir.listen, ctx)
            })
        }
        Cli::Source(SourceCommand::File(c)) => {
            let items = match c.file.items() {
                Ok(items) => items,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("source", &c.contract, |ctx| {
                podkit_queue::sources::serve_items(items, c.file.listen, ctx)
            })
        }
        Cli::Source(SourceCommand::Filter(c)) => {
            let filter = match c.filter.filter() {
                Ok(filter) => filter,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("source", &c.contract, |ctx| {
                podkit_queue::wrap::serve(filter, c.filter.listen, ctx)
            })
        }
        Cli::Source(SourceCommand::Merge(c)) => {
            let merge = match c.merge.merge() {
                Ok(merge) => merge,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            component::run("source", &c.contract, |ctx| {
                podkit_queue::wrap::serve(merge, c.merge.listen, ctx)
            })
        }
        Cli::Worker(WorkerCommand::Multi(c)) => podkit_queue::multi::run(&c.multi),
        Cli::Proxy(c) => {
            let config = match c.proxy.load() {
                Ok(config) => config,
                Err(err) => podkit_core::cli::exit_config_error(&err),
            };
            if c.proxy.check {
                println!("{}: ok", c.proxy.config.display());
                return ExitCode::SUCCESS;
            }
            let source = Source::File(c.proxy.config.clone());
            component::run("proxy", &c.contract, |ctx| {
                podkit_proxy::run(config, source, ctx)
            })
        }
    }
}

/// Prints what a one-shot command produced, or its error (exit 1).
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("podkit: error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a proxy preset, or prints its configuration as `podkit proxy -c` YAML.
fn proxy(
    name: &'static str,
    config: Result<ProxyConfig, ConfigError>,
    print_config: bool,
    listen_flags: Vec<&'static str>,
    contract: &ContractArgs,
) -> ExitCode {
    let config = match config {
        Ok(config) => config,
        Err(err) => podkit_core::cli::exit_config_error(&err),
    };
    if print_config {
        return match serde_yaml_ng::to_string(&config) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("podkit: error: printing the config: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let source = Source::Flags { listen_flags };
    component::run(name, contract, |ctx| podkit_proxy::run(config, source, ctx))
}

/// A wrapped command's exit status when the component ended cleanly, else the
/// component's own.
fn command_status(status: ExitCode, exit: &std::sync::atomic::AtomicI32) -> ExitCode {
    if status != ExitCode::SUCCESS {
        return status;
    }
    let code = exit.load(std::sync::atomic::Ordering::SeqCst);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
