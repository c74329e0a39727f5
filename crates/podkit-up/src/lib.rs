//! # podkit-up: a topology on one machine
//!
//! Every hands-on of *Designing Distributed Systems* deploys a group of containers — an
//! application with its sidecar, ambassador or adapter in one pod, replicated, behind a
//! Service — with kubectl on a cluster. `podkit up FILE` does the same on one machine with
//! plain processes: pods of processes sharing a directory and volumes, replicas on their
//! own ports, readiness and liveness probes, restarts with back-off, and services (a
//! `podkit lb` each) that follow the ready replicas. It is not an orchestrator of many
//! machines.
//!
//! - [`spec`]: the topology file and its validation;
//! - [`template`]: `{{ port "http" }}` and friends;
//! - [`replica`]: one replica's processes, supervised;
//! - [`runner`]: services, start order, scaling, status, stopping;
//! - [`process`], [`probe`], [`logs`]: the pieces underneath.

pub mod logs;
pub mod probe;
pub mod process;
pub mod replica;
pub mod runner;
pub mod spec;
pub mod template;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use podkit_core::component::{ComponentError, Context};
use podkit_core::http::{query_pairs, response, text};
use podkit_core::{ConfigError, HumanDuration};

use replica::Shared;
use runner::Runner;
use spec::Topology;

/// Flags of `podkit up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// The topology file.
    #[arg(env = "PODKIT_TOPOLOGY", value_name = "FILE")]
    pub file: PathBuf,
    /// Validate the file and exit.
    #[arg(long, env = "PODKIT_CHECK")]
    pub check: bool,
    /// Where replicas get their directories; default a temporary directory removed at exit.
    #[arg(long, env = "PODKIT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Time a process has to exit after SIGTERM before it gets SIGKILL.
    #[arg(
        long,
        env = "PODKIT_GRACE",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub grace: HumanDuration,
}

/// A topology read and validated, with its start order.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub topology: Topology,
    pub order: Vec<usize>,
}

/// Reads and validates a topology file; errors name the file and field.
pub fn load(file: &Path) -> Result<Loaded, ConfigError> {
    let topology: Topology = podkit_core::config::load_yaml(file)?;
    let order = topology
        .validate()
        .map_err(|invalid| ConfigError::file(file, invalid.field, invalid.message))?;
    Ok(Loaded { topology, order })
}

/// Runs the topology until shutdown, then stops everything in reverse order.
pub async fn run(args: UpArgs, loaded: Loaded, ctx: Context) -> Result<(), ComponentError> {
    let base = args
        .file
        .canonicalize()
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let (state_dir, temporary) = match &args.state_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("podkit-up-{}", std::process::id())),
            true,
        ),
    };
    let podkit = std::env::current_exe()
        .map_err(|e| ComponentError::runtime(format!("locating podkit: {e}")))?;
    let logs = logs::Logs::start();
    let shared = Shared {
        base,
        podkit,
        logs: logs.clone(),
        grace: args.grace.get(),
        services: Default::default(),
    };
    let runner = Arc::new(Runner::new(
        loaded.topology,
        loaded.order,
        state_dir.clone(),
        shared,
    ));
    add_admin_routes(&ctx, runner.clone());
    let started = ctx.readiness.latch("every pod started");
    ctx.started();

    // Logs wait for the status table, but not for ever: a start that hangs must show why.
    let held = logs.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(15)).await;
        held.release();
    });
    let starting = runner.clone();
    let start = async move {
        starting.start().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while !starting.all_ready() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::select! {
        result = start => {
            result.map_err(|e| ComponentError::runtime(format!("starting: {e}")))?;
            println!("{}", runner::table(&runner.status()));
            logs.release();
            started.release();
            ctx.shutdown.triggered().await;
        }
        _ = ctx.shutdown.triggered() => {
            logs.release();
        }
    }
    runner.stop().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    Ok(())
}

fn add_admin_routes(ctx: &Context, runner: Arc<Runner>) {
    let status = runner.clone();
    ctx.admin_routes
        .add("/status", move |_req: Request<Incoming>| {
            let status = status.clone();
            async move {
                let body = serde_json::to_string_pretty(&status.status()).unwrap_or_default();
                response(StatusCode::OK, "application/json", body + "\n")
            }
        });
    ctx.admin_routes
        .add("/scale/", move |req: Request<Incoming>| {
            let runner = runner.clone();
            async move {
                if req.method() != Method::POST {
                    return text(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "use POST /scale/<pod>?replicas=N\n",
                    );
                }
                let pod = req.uri().path().trim_start_matches("/scale/").to_string();
                let replicas = query_pairs(req.uri())
                    .into_iter()
                    .find(|(k, _)| k == "replicas")
                    .and_then(|(_, v)| v.parse::<usize>().ok());
                let Some(replicas) = replicas else {
                    return text(StatusCode::BAD_REQUEST, "give ?replicas=N\n");
                };
                match runner.scale(&pod, replicas) {
                    Ok(()) => text(StatusCode::OK, format!("{pod}: scaling to {replicas}\n")),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        text(StatusCode::NOT_FOUND, format!("{err}\n"))
                    }
                    Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
                }
            }
        });
}
