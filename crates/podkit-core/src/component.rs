//! Running a component under the contract.
//!
//! A component flattens [`ContractArgs`] into its clap arguments and hands its main future
//! to [`run`], which installs logging, starts the admin endpoint, turns SIGTERM/SIGINT into
//! a drain bounded by `--drain-timeout`, and maps errors to exit statuses (2 for bad
//! configuration, 1 for anything else, 0 after a clean drain).

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::admin::{Admin, AdminRoutes};
use crate::config::ConfigError;
use crate::logging::{self, LogFormat, LogOutput};
use crate::metrics::Metrics;
use crate::readiness::{Latch, Readiness};
use crate::shutdown::{self, Shutdown};
use crate::units::HumanDuration;

/// The admin endpoint's address when `--admin` is not given.
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9901,
));

/// The flags every long-running component takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ContractArgs {
    /// Address of the admin endpoint (/healthz, /readyz, /metrics); port 0 picks a free one.
    #[arg(
        long,
        env = "PODKIT_ADMIN",
        default_value = "127.0.0.1:9901",
        value_name = "ADDR"
    )]
    pub admin: SocketAddr,

    /// Log line format.
    #[arg(long, env = "PODKIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `podkit_proxy=debug,warn` [default: RUST_LOG if set, else info].
    #[arg(long, env = "PODKIT_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// On SIGTERM/SIGINT, how long in-flight work may take to finish before the process exits.
    #[arg(
        long,
        env = "PODKIT_DRAIN_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub drain_timeout: HumanDuration,

    /// Worker threads; 0 means one per CPU core.
    #[arg(long, env = "PODKIT_THREADS", default_value_t = 0, value_name = "N")]
    pub threads: usize,
}

/// Why a component stopped other than by a clean shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// A bad value found after argument parsing (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound (exit 1).
    #[error("{flag} {addr}: {source}")]
    Bind {
        flag: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Anything else that ended the component (exit 1).
    #[error("{0}")]
    Runtime(String),
}

impl ComponentError {
    /// A runtime failure with a message.
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        ComponentError::Runtime(message.to_string())
    }
}

/// What a running component is given.
#[derive(Clone, Debug)]
pub struct Context {
    /// The component's name, e.g. `topz`.
    pub name: &'static str,
    /// Where to register metrics.
    pub metrics: Metrics,
    /// Take latches here; `/readyz` is 200 once all are released.
    pub readiness: Readiness,
    /// Triggered on SIGTERM/SIGINT: stop accepting and finish in-flight work.
    pub shutdown: Shutdown,
    /// Extra routes on the admin endpoint.
    pub admin_routes: AdminRoutes,
    /// The bound admin address (useful when `--admin` had port 0).
    pub admin_addr: SocketAddr,
    /// Held until the component calls [`Context::started`].
    starting: Arc<Mutex<Option<Latch>>>,
}

impl Context {
    /// Tells the runner that the component has bound its listeners and taken its own
    /// readiness latches: `/readyz` no longer waits for start-up.
    pub fn started(&self) {
        if let Some(latch) = self
            .starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            latch.release();
        }
    }
}

/// Binds `addr` for the flag `flag`, naming both in the error.
pub async fn bind(flag: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener, ComponentError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ComponentError::Bind {
            flag: flag.to_string(),
            addr,
            source,
        })
}

/// Runs a component to completion and returns the process exit status.
pub fn run<F, Fut>(name: &'static str, contract: &ContractArgs, main: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), ComponentError>> + Send + 'static,
{
    run_logging_to(name, contract, LogOutput::Stdout, main)
}

/// Like [`run`], with the component's own log lines sent to `output`.
pub fn run_logging_to<F, Fut>(
    name: &'static str,
    contract: &ContractArgs,
    output: LogOutput,
    main: F,
) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), ComponentError>> + Send + 'static,
{
    if let Err(err) = logging::init_to(contract.log_format, contract.log_level.as_deref(), output) {
        crate::cli::exit_config_error(&err);
    }
    // One thread runs everything on the current thread: no cross-thread wake-ups.
    let mut builder = if contract.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if contract.threads > 1 {
        builder.worker_threads(contract.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            return fail(
                name,
                &ComponentError::runtime(format!("tokio runtime: {err}")),
            )
        }
    };
    let result = runtime.block_on(supervise(name, contract, main));
    // Connections still open after the drain deadline are abandoned here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(name, &err),
    }
}

fn fail(name: &str, err: &ComponentError) -> ExitCode {
    tracing::error!(component = name, error = %err, "component failed");
    eprintln!("podkit: error: {err}");
    match err {
        ComponentError::Config(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

async fn supervise<F, Fut>(
    name: &'static str,
    contract: &ContractArgs,
    main: F,
) -> Result<(), ComponentError>
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<(), ComponentError>> + Send + 'static,
{
    let metrics = Metrics::for_component(name);
    let readiness = Readiness::new();
    let shutdown = Shutdown::new();
    let admin_routes = AdminRoutes::default();
    let admin_listener = bind("--admin", contract.admin).await?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| ComponentError::runtime(format!("--admin: {e}")))?;
    let admin_stop = Shutdown::new();
    let admin = Admin {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        routes: admin_routes.clone(),
    };
    let admin_task = tokio::spawn(admin.serve(admin_listener, admin_stop.clone()));
    tracing::info!(component = name, admin = %admin_addr, "starting");

    let context = Context {
        name,
        metrics,
        readiness: readiness.clone(),
        shutdown: shutdown.clone(),
        admin_routes,
        admin_addr,
        starting: Arc::new(Mutex::new(Some(readiness.latch("starting")))),
    };
    let mut component = tokio::spawn(main(context));
    let drain_timeout = contract.drain_timeout.get();

    let outcome = tokio::select! {
        joined = &mut component => Some(joined),
        signal = shutdown::signal() => {
            tracing::info!(component = name, signal, drain_timeout = %contract.drain_timeout, "draining");
            readiness.set_draining();
            shutdown.trigger();
            None
        }
    };
    let joined = match outcome {
        Some(joined) => joined,
        None => tokio::select! {
            joined = tokio::time::timeout(drain_timeout, &mut component) => match joined {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(component = name, "drain timeout passed; abandoning in-flight work");
                    component.abort();
                    Ok(Ok(()))
                }
            },
            signal = shutdown::signal() => {
                tracing::warn!(component = name, signal, "second signal: exiting without draining");
                component.abort();
                Ok(Ok(()))
            }
        },
    };
    admin_stop.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
    let result = match joined {
        Ok(result) => result,
        Err(join_error) => Err(ComponentError::runtime(format!(
            "{name} crashed: {join_error}"
        ))),
    };
    if result.is_ok() {
        tracing::info!(component = name, "stopped");
    }
    result
}
