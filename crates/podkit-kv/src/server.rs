//! `podkit ambassador shard`: twemproxy's command line, and serving every pool of a
//! `nutcracker.yaml` under the component contract.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;

use podkit_core::component::{ComponentError, Context};
use podkit_core::shutdown::Shutdown;

use crate::client;
use crate::config::{Listen, PoolConfig};
use crate::memcached::MemcacheSession;
use crate::metrics::KvMetrics;
use crate::pool::Pool;
use crate::redis::RedisSession;
use crate::stats::{self, PoolStats, Sources};

/// nutcracker's flags, so that its command lines keep working.
#[derive(clap::Args, Debug, Clone)]
pub struct ShardArgs {
    /// The configuration file (twemproxy's `nutcracker.yaml`, unchanged).
    #[arg(
        short = 'c',
        long = "conf-file",
        env = "PODKIT_CONF_FILE",
        value_name = "FILE"
    )]
    pub conf_file: PathBuf,
    /// Check the configuration file and exit.
    #[arg(short = 't', long = "test-conf", env = "PODKIT_TEST_CONF")]
    pub test_conf: bool,
    /// Port of the JSON stats (nutcracker's `-s`).
    #[arg(
        short = 's',
        long = "stats-port",
        env = "PODKIT_STATS_PORT",
        default_value_t = 22222,
        value_name = "PORT"
    )]
    pub stats_port: u16,
    /// Address of the JSON stats (nutcracker's `-a`).
    #[arg(
        short = 'a',
        long = "stats-addr",
        env = "PODKIT_STATS_ADDR",
        default_value = "0.0.0.0",
        value_name = "ADDR"
    )]
    pub stats_addr: String,
    /// Stats aggregation interval in milliseconds (nutcracker's `-i`); podkit's stats are
    /// always current, so it is accepted and not needed.
    #[arg(
        short = 'i',
        long = "stats-interval",
        env = "PODKIT_STATS_INTERVAL",
        default_value_t = 30000,
        value_name = "MSEC"
    )]
    pub stats_interval: u64,
    /// Write the process id here (nutcracker's `-p`).
    #[arg(
        short = 'p',
        long = "pid-file",
        env = "PODKIT_PID_FILE",
        value_name = "FILE"
    )]
    pub pid_file: Option<PathBuf>,
    /// nutcracker's `-d`: podkit stays in the foreground, as a container's process should.
    #[arg(short = 'd', long = "daemonize", env = "PODKIT_DAEMONIZE")]
    pub daemonize: bool,
    /// nutcracker's log level (`-v`, 0 to 11), mapped onto podkit's when `--log-level`
    /// is not given: up to 3 error, 4 warn, 5 and 6 info, 7 debug, 8 and more trace.
    #[arg(
        short = 'v',
        long = "verbose",
        env = "PODKIT_VERBOSE",
        value_name = "N"
    )]
    pub verbose: Option<u8>,
    /// nutcracker's log file (`-o`); podkit logs to stdout.
    #[arg(
        short = 'o',
        long = "output",
        env = "PODKIT_OUTPUT",
        value_name = "FILE"
    )]
    pub output: Option<PathBuf>,
    /// nutcracker's buffer size (`-m`); podkit sizes its buffers itself.
    #[arg(
        short = 'm',
        long = "mbuf-size",
        env = "PODKIT_MBUF_SIZE",
        value_name = "N"
    )]
    pub mbuf_size: Option<usize>,
}

/// The podkit log filter for nutcracker's `-v N` (syslog-like levels, 5 its default);
/// debug and trace apply to the ambassador's own events only.
pub fn log_level(verbose: u8) -> &'static str {
    match verbose {
        0..=3 => "error",
        4 => "warn",
        5 | 6 => "info",
        7 => "info,podkit_kv=debug",
        _ => "info,podkit_kv=trace",
    }
}

/// Serves every pool until shutdown.
pub async fn run(
    args: ShardArgs,
    configs: Vec<PoolConfig>,
    ctx: Context,
) -> Result<(), ComponentError> {
    if args.daemonize || args.output.is_some() || args.mbuf_size.is_some() {
        tracing::info!(
            "-d, -o and -m are accepted for nutcracker command lines and have no effect"
        );
    }
    let metrics = KvMetrics::register(&ctx.metrics);
    let stats_addr: SocketAddr = format!("{}:{}", args.stats_addr, args.stats_port)
        .parse()
        .map_err(|e| {
            podkit_core::ConfigError::flag("--stats-addr", format!("'{}': {e}", args.stats_addr))
        })?;
    let mut listeners = Vec::new();
    let mut sources = Sources {
        pools: Vec::new(),
        started: Instant::now(),
        total_connections: Arc::new(AtomicU64::new(0)),
    };
    for config in configs {
        let listener = match &config.listen {
            Listen::Tcp(addr) => {
                let addr: SocketAddr = tokio::net::lookup_host(addr)
                    .await
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        podkit_core::ConfigError::command_line(format!(
                            "{}.listen: cannot resolve '{addr}'",
                            config.name
                        ))
                    })?;
                Listener::Tcp(
                    podkit_core::component::bind(&format!("{}.listen", config.name), addr).await?,
                )
            }
            Listen::Unix(path) => {
                let _ = std::fs::remove_file(path);
                Listener::Unix(UnixListener::bind(path).map_err(|e| {
                    ComponentError::runtime(format!(
                        "{}.listen {}: {e}",
                        config.name,
                        path.display()
                    ))
                })?)
            }
        };
        let name = config.name.clone();
        let pool = Arc::new(Pool::start(config, |server| metrics.server(&name, server)));
        let pool_stats = Arc::new(PoolStats::default());
        sources.pools.push((pool.clone(), pool_stats.clone()));
        listeners.push((listener, pool, pool_stats));
    }
    let stats_listener = podkit_core::component::bind("--stats-port", stats_addr).await?;
    if let Some(pid_file) = &args.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id())).map_err(|e| {
            ComponentError::runtime(format!("--pid-file {}: {e}", pid_file.display()))
        })?;
    }
    tokio::spawn(stats::serve(
        stats_listener,
        sources.clone(),
        ctx.shutdown.clone(),
    ));
    ctx.started();
    let mut tasks = JoinSet::new();
    for (listener, pool, pool_stats) in listeners {
        tracing::info!(pool = %pool.config.name, listen = ?pool.config.listen, servers = pool.servers.len(), redis = pool.config.redis, "serving");
        let clients = metrics.clients(&pool.config.name);
        tasks.spawn(accept(
            listener,
            pool,
            pool_stats,
            clients,
            sources.total_connections.clone(),
            ctx.shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    if let Some(pid_file) = &args.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    Ok(())
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

async fn accept(
    listener: Listener,
    pool: Arc<Pool>,
    stats: Arc<PoolStats>,
    clients: prometheus_client::metrics::gauge::Gauge,
    total: Arc<AtomicU64>,
    shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted: std::io::Result<Box<dyn Io>> = tokio::select! {
            accepted = accept_one(&listener) => accepted,
            _ = shutdown.triggered() => break,
        };
        let Ok(io) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        total.fetch_add(1, Ordering::Relaxed);
        stats.client_connections.fetch_add(1, Ordering::Relaxed);
        clients.inc();
        let (pool, stats, clients, shutdown) = (
            pool.clone(),
            stats.clone(),
            clients.clone(),
            shutdown.clone(),
        );
        connections.spawn(async move {
            if pool.config.redis {
                client::serve(io, pool, RedisSession::default(), shutdown).await;
            } else {
                client::serve(io, pool, MemcacheSession::default(), shutdown).await;
            }
            stats.client_connections.fetch_sub(1, Ordering::Relaxed);
            stats.client_eof.fetch_add(1, Ordering::Relaxed);
            clients.dec();
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// A client stream of either kind.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn accept_one(listener: &Listener) -> std::io::Result<Box<dyn Io>> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
        Listener::Unix(l) => {
            let (stream, _) = l.accept().await?;
            Ok(Box::new(stream))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nutcracker_verbosity_maps_onto_log_levels() {
        let levels: Vec<&str> = [0, 3, 4, 5, 6, 7, 11]
            .into_iter()
            .map(super::log_level)
            .collect();
        assert_eq!(
            levels,
            [
                "error",
                "error",
                "warn",
                "info",
                "info",
                "info,podkit_kv=debug",
                "info,podkit_kv=trace"
            ]
        );
    }
}
