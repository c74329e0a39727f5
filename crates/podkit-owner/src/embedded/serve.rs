//! The `podkit store serve` command: open the database, serve the gRPC API, revoke
//! leases as they expire, and drain on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::proto::{PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer};
use podkit_core::component::{self, ComponentError, Context};
use podkit_core::config::ConfigError;

use super::core::Core;
use super::disk::Disk;
use super::grpc::{Services, StoreMetrics};

/// How often expired leases are looked for.
const EXPIRY_CHECK: Duration = Duration::from_millis(100);

/// The flags of `podkit store serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Directory of the database (created if missing).
    #[arg(
        long,
        alias = "data-dir",
        env = "PODKIT_STORE_DATA",
        value_name = "DIR"
    )]
    pub data: PathBuf,
    /// Address for etcd's v3 gRPC API (what clients give as their endpoint).
    #[arg(
        long,
        env = "PODKIT_STORE_LISTEN",
        default_value = "127.0.0.1:2379",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// How many revisions of events are kept for watches that start in the past.
    #[arg(
        long,
        env = "PODKIT_STORE_HISTORY",
        default_value_t = 10_000,
        value_name = "REVISIONS"
    )]
    pub history: usize,
}

/// Runs the store until shutdown.
pub async fn run(args: ServeArgs, ctx: Context) -> Result<(), ComponentError> {
    if args.history == 0 {
        return Err(ConfigError::flag("--history", "must be at least 1").into());
    }
    let (disk, loaded) = Disk::open(&args.data, args.history as i64)
        .map_err(|e| ComponentError::from(ConfigError::flag("--data", e)))?;
    let revision = loaded.revision;
    let (keys, leases) = (loaded.keys.len(), loaded.leases.len());
    let core = Arc::new(Mutex::new(Core::new(
        disk,
        loaded,
        args.history,
        Instant::now(),
    )));
    let listener = component::bind("--listen", args.listen).await?;
    let listen = listener.local_addr().unwrap_or(args.listen);
    let metrics = StoreMetrics::register(&ctx.metrics);
    let services = Services::new(core, metrics, ctx.shutdown.token());
    tokio::spawn(services.clone().expire_leases(EXPIRY_CHECK));
    tracing::info!(%listen, data = %args.data.display(), revision, keys, leases, "serving etcd's v3 API");
    ctx.started();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = ctx.shutdown.clone();
    tonic::transport::Server::builder()
        .add_service(PbKvServer::new(services.clone()))
        .add_service(PbLeaseServer::new(services.clone()))
        .add_service(PbWatchServer::new(services.clone()))
        .add_service(PbMaintenanceServer::new(services))
        .serve_with_incoming_shutdown(incoming, async move { shutdown.triggered().await })
        .await
        .map_err(ComponentError::runtime)
}
