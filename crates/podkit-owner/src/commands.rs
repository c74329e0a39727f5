//! `podkit lock NAME -- CMD` and `podkit elect NAME -- CMD`: run a command while holding a
//! lock, or only while leading an election (the master-election sidecar).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use podkit_core::component::{ComponentError, Context};
use podkit_core::http::response;
use podkit_core::HumanDuration;
use tokio::process::{Child, Command};

use crate::election::{self, Leader};
use crate::lock::{self, Held};
use crate::store::Store;

/// Where the store is (shared by both commands).
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// The store: `etcd://host:port[,host:port...]` (an etcd cluster, or any server that
    /// speaks its v3 API).
    #[arg(
        long,
        env = "PODKIT_STORE",
        default_value = "etcd://127.0.0.1:2379",
        value_name = "URL"
    )]
    pub store: String,
    /// How long ownership outlives its last renewal (renewed every TTL/2).
    #[arg(
        long,
        env = "PODKIT_TTL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub ttl: HumanDuration,
}

/// The flags of `podkit lock`.
#[derive(clap::Args, Debug, Clone)]
pub struct LockArgs {
    /// The lock's name (a key prefix in the store).
    pub name: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// The command to run while holding the lock.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The flags of `podkit elect`.
#[derive(clap::Args, Debug, Clone)]
pub struct ElectArgs {
    /// The election's name (a key prefix in the store).
    pub name: String,
    /// This replica's identity, stored with the leadership (default: hostname-pid).
    #[arg(long, env = "PODKIT_ID", value_name = "ID")]
    pub id: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// After losing leadership, how long the command has between SIGTERM and SIGKILL.
    #[arg(
        long,
        env = "PODKIT_GRACE",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub grace: HumanDuration,
    /// The command to run while leading.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The command's exit status, for the process to exit with.
pub type ExitStatusCell = Arc<AtomicI32>;

fn spawn(command: &[String], token: i64, leader_id: Option<&str>) -> Result<Child, ComponentError> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("PODKIT_FENCING_TOKEN", token.to_string())
        .process_group(0)
        .kill_on_drop(true);
    // If podkit itself is killed, the command goes with it: an owner that nobody
    // supervises must not keep acting as one.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    if let Some(id) = leader_id {
        cmd.env("PODKIT_LEADER_ID", id);
    }
    cmd.spawn()
        .map_err(|e| ComponentError::runtime(format!("starting {}: {e}", command[0])))
}

/// The status as a shell reports it: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// SIGTERM to the command's process group, SIGKILL after `grace`.
async fn terminate(child: &mut Child, grace: Duration) -> i32 {
    if let Some(pid) = child.id() {
        let group = nix::unistd::Pid::from_raw(-(pid as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
            return exit_code(status);
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    }
    child.wait().await.map(exit_code).unwrap_or(137)
}

async fn connect(args: &StoreArgs) -> Result<Store, ComponentError> {
    Store::connect(&args.store)
        .await
        .map_err(ComponentError::runtime)
}

/// Runs the command while holding the lock; the lock is released when it exits. If the
/// lock is lost meanwhile, the command is stopped and the exit status is 1.
pub async fn run_lock(
    args: LockArgs,
    exit: ExitStatusCell,
    ctx: Context,
) -> Result<(), ComponentError> {
    let store = connect(&args.store).await?;
    let value = format!("{}-{}", hostname(), std::process::id());
    ctx.started();
    let held: Held = tokio::select! {
        held = lock::lock(&store, &args.name, value.as_bytes(), args.store.ttl.get()) => {
            held.map_err(ComponentError::runtime)?
        }
        _ = ctx.shutdown.triggered() => return Ok(()),
    };
    tracing::info!(lock = %args.name, token = held.token, "locked");
    let mut child = spawn(&args.command, held.token, None)?;
    let code = tokio::select! {
        status = child.wait() => status.map(exit_code).unwrap_or(1),
        _ = held.lease.until_lost() => {
            tracing::error!(lock = %args.name, "lost the lock: stopping the command");
            terminate(&mut child, Duration::from_secs(10)).await;
            exit.store(1, Ordering::SeqCst);
            return Err(ComponentError::runtime(format!("lost the lock {}", args.name)));
        }
        _ = ctx.shutdown.triggered() => terminate(&mut child, Duration::from_secs(10)).await,
    };
    exit.store(code, Ordering::SeqCst);
    held.unlock(&store).await.map_err(ComponentError::runtime)?;
    tracing::info!(lock = %args.name, code, "unlocked");
    Ok(())
}

/// What `/leader` reports.
#[derive(Default)]
struct View {
    leading: Option<Leader>,
}

/// Campaigns, runs the command while leading, stops it at once when leadership is lost
/// and campaigns again; ends when the command exits by itself (with its status) or on
/// SIGTERM (stopping it and resigning).
pub async fn run_elect(
    args: ElectArgs,
    exit: ExitStatusCell,
    ctx: Context,
) -> Result<(), ComponentError> {
    let store = connect(&args.store).await?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let view = Arc::new(Mutex::new(View::default()));
    add_leader_route(&ctx, &store, &args.name, &id, view.clone());
    ctx.started();
    loop {
        tracing::info!(election = %args.name, %id, "campaigning");
        let held = tokio::select! {
            held = election::campaign(&store, &args.name, &id, args.store.ttl.get()) => match held {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "campaign failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = ctx.shutdown.triggered() => return Ok(()),
        };
        tracing::info!(election = %args.name, %id, token = held.token, "leading");
        view.lock().unwrap_or_else(|p| p.into_inner()).leading = Some(Leader {
            id: id.clone(),
            token: held.token,
        });
        let mut child = spawn(&args.command, held.token, Some(&id))?;
        let outcome = tokio::select! {
            status = child.wait() => Some(status.map(exit_code).unwrap_or(1)),
            _ = held.lease.until_lost() => None,
            _ = ctx.shutdown.triggered() => Some(terminate(&mut child, args.grace.get()).await),
        };
        view.lock().unwrap_or_else(|p| p.into_inner()).leading = None;
        match outcome {
            Some(code) => {
                exit.store(code, Ordering::SeqCst);
                election::resign(&store, held)
                    .await
                    .map_err(ComponentError::runtime)?;
                tracing::info!(election = %args.name, code, "resigned");
                return Ok(());
            }
            None => {
                tracing::error!(election = %args.name, "lost leadership: stopping the command");
                terminate(&mut child, args.grace.get()).await;
                drop(held);
            }
        }
    }
}

fn add_leader_route(ctx: &Context, store: &Store, name: &str, id: &str, view: Arc<Mutex<View>>) {
    let (store, name, id) = (store.clone(), name.to_string(), id.to_string());
    ctx.admin_routes.add("/leader", move |_req| {
        let (store, name, id, view) = (store.clone(), name.clone(), id.clone(), view.clone());
        async move {
            let leading = view.lock().unwrap_or_else(|p| p.into_inner()).leading.clone();
            let current = election::leader(&store, &name).await;
            let body = match current {
                Ok(current) => serde_json::json!({
                    "election": name,
                    "id": id,
                    "leader": current.as_ref().map(|l| serde_json::json!({"id": l.id, "token": l.token})),
                    "is_leader": leading.is_some() && current == leading,
                }),
                Err(e) => {
                    return response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "application/json",
                        format!("{}\n", serde_json::json!({"error": e.to_string()})),
                    )
                }
            };
            response(StatusCode::OK, "application/json", format!("{body}\n"))
        }
    });
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
