//! `podkit ambassador broker`: chapter 3's service broker. The application always connects
//! to `localhost:PORT`; the ambassador finds the real service for the environment it runs
//! in (a mapping file keyed by `--environment`, DNS SRV or A records, or an environment
//! variable) and forwards TCP to it, whatever the protocol (MySQL in the book's figure).
//!
//! The answer is resolved again when its TTL (or `--resolve-every`) passes, when the
//! mapping file changes, and when no address accepts a connection; connections already
//! open stay where they are. The admin endpoint's `/endpoint` reports the choice.

pub mod dns;
pub mod mapping;
pub mod resolve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use podkit_core::component::{bind, ComponentError, Context};
use podkit_core::http::response;
use podkit_core::{ConfigError, HumanDuration};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use mapping::Endpoint;
use resolve::{Lookup, Resolved};

/// The flags of `podkit ambassador broker`.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Where the application connects (e.g. `127.0.0.1:3306`).
    #[arg(long, env = "PODKIT_LISTEN", value_name = "ADDR", value_parser = podkit_core::cli::listen_addr)]
    pub listen: SocketAddr,
    /// The mapping file: environment -> service -> endpoint (`host:port`, a list of them,
    /// `srv:NAME` or `env:VAR`). Re-read when it changes.
    #[arg(long, env = "PODKIT_MAP", value_name = "FILE", required_unless_present = "target", requires_all = ["environment", "service"])]
    pub map: Option<PathBuf>,
    /// The environment this pod runs in (a key of the mapping file).
    #[arg(long, env = "PODKIT_ENVIRONMENT", value_name = "NAME")]
    pub environment: Option<String>,
    /// The service to reach (a key under the environment).
    #[arg(long, env = "PODKIT_SERVICE", value_name = "NAME")]
    pub service: Option<String>,
    /// The endpoint itself, without a mapping file: `host:port[,host:port]`, `srv:NAME`
    /// or `env:VAR`.
    #[arg(
        long,
        env = "PODKIT_TARGET",
        value_name = "ENDPOINT",
        conflicts_with = "map"
    )]
    pub target: Option<String>,
    /// DNS server for SRV lookups (default: the first nameserver of /etc/resolv.conf).
    #[arg(long, env = "PODKIT_DNS_SERVER", value_name = "ADDR")]
    pub dns_server: Option<SocketAddr>,
    /// How often to resolve again when the answer carries no TTL of its own.
    #[arg(
        long,
        env = "PODKIT_RESOLVE_EVERY",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub resolve_every: HumanDuration,
    /// Most connections forwarded at once; more wait to be accepted.
    #[arg(
        long,
        env = "PODKIT_MAX_CONNECTIONS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub max_connections: usize,
    /// Longest a connection attempt to one address may take.
    #[arg(
        long,
        env = "PODKIT_CONNECT_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub connect_timeout: HumanDuration,
}

/// Where the endpoint is defined.
#[derive(Debug, Clone)]
pub enum Definition {
    /// `--target`.
    Fixed(Endpoint),
    /// `--map` with the environment and service to look up.
    Map {
        file: PathBuf,
        environment: String,
        service: String,
    },
}

impl Definition {
    fn load(&self) -> Result<Endpoint, ConfigError> {
        match self {
            Definition::Fixed(endpoint) => Ok(endpoint.clone()),
            Definition::Map {
                file,
                environment,
                service,
            } => mapping::load(file, environment, service),
        }
    }

    fn modified(&self) -> Option<SystemTime> {
        match self {
            Definition::Fixed(_) => None,
            Definition::Map { file, .. } => std::fs::metadata(file).and_then(|m| m.modified()).ok(),
        }
    }
}

impl BrokerArgs {
    /// The endpoint's definition, checked now (a bad file or value exits 2).
    pub fn definition(&self) -> Result<(Definition, Endpoint), ConfigError> {
        let definition = match (&self.target, &self.map) {
            (Some(target), _) => Definition::Fixed(
                Endpoint::parse(target)
                    .map_err(|e| ConfigError::flag("--target", format!("'{target}': {e}")))?,
            ),
            (None, Some(file)) => Definition::Map {
                file: file.clone(),
                environment: self.environment.clone().unwrap_or_default(),
                service: self.service.clone().unwrap_or_default(),
            },
            (None, None) => return Err(ConfigError::flag("--map", "give --map or --target")),
        };
        let endpoint = definition.load()?;
        Ok((definition, endpoint))
    }
}

/// What the broker currently sends new connections to.
#[derive(Debug, Clone, Default)]
struct Choice {
    endpoint: String,
    addrs: Vec<SocketAddr>,
    resolved_at: Option<f64>,
    error: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddrLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Default)]
struct BrokerMetrics {
    connections: Family<AddrLabels, Counter>,
    connect_failures: Family<AddrLabels, Counter>,
    active: Gauge,
    resolutions: Family<ResultLabels, Counter>,
    bytes_up: Counter,
    bytes_down: Counter,
}

impl BrokerMetrics {
    fn register(ctx: &Context) -> Self {
        let m = BrokerMetrics::default();
        let r = &ctx.metrics;
        r.register(
            "podkit_broker_connections",
            "Connections forwarded, by address",
            m.connections.clone(),
        );
        r.register(
            "podkit_broker_connect_failures",
            "Failed connection attempts, by address",
            m.connect_failures.clone(),
        );
        r.register(
            "podkit_broker_active_connections",
            "Connections open now",
            m.active.clone(),
        );
        r.register(
            "podkit_broker_resolutions",
            "Resolutions of the endpoint, by result",
            m.resolutions.clone(),
        );
        r.register(
            "podkit_broker_sent_bytes",
            "Bytes from the application to the service",
            m.bytes_up.clone(),
        );
        r.register(
            "podkit_broker_received_bytes",
            "Bytes from the service to the application",
            m.bytes_down.clone(),
        );
        m
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Forwards connections until shutdown.
pub async fn run(
    args: BrokerArgs,
    definition: Definition,
    endpoint: Endpoint,
    ctx: Context,
) -> Result<(), ComponentError> {
    let listener = bind("--listen", args.listen).await?;
    let metrics = BrokerMetrics::register(&ctx);
    let lookup = Lookup {
        dns_server: args.dns_server,
        timeout: args.connect_timeout.get(),
    };
    let (choice_tx, choice_rx) = watch::channel(Choice {
        endpoint: endpoint.describe(),
        ..Choice::default()
    });
    let refresh = Arc::new(Notify::new());
    let last_connected = Arc::new(Mutex::new(None::<SocketAddr>));
    add_endpoint_route(&ctx, &args, choice_rx.clone(), last_connected.clone());
    let resolved_once = ctx.readiness.latch("a first resolution of the endpoint");
    tokio::spawn(keep_resolved(
        definition,
        endpoint,
        lookup,
        args.resolve_every.get(),
        choice_tx,
        refresh.clone(),
        metrics.clone(),
        ctx.shutdown.clone(),
        Some(resolved_once),
    ));
    tracing::info!(listen = %args.listen, "forwarding to the environment's endpoint");
    ctx.started();
    let tracker = tokio_util::task::TaskTracker::new();
    let connect_timeout = args.connect_timeout.get();
    let slots = Arc::new(tokio::sync::Semaphore::new(args.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = ctx.shutdown.triggered() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.shutdown.triggered() => break,
        };
        let (client, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let choice = choice_rx.clone();
        let refresh = refresh.clone();
        let metrics = metrics.clone();
        let last_connected = last_connected.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let Some((upstream, addr)) = connect(choice, &refresh, &metrics, connect_timeout).await
            else {
                tracing::warn!(%peer, "no address of the endpoint accepted the connection");
                return;
            };
            *last_connected.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
            metrics.active.inc();
            let copied = forward(client, upstream).await;
            metrics.active.dec();
            if let Ok((up, down)) = copied {
                metrics.bytes_up.inc_by(up);
                metrics.bytes_down.inc_by(down);
            }
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn forward(mut client: TcpStream, mut upstream: TcpStream) -> std::io::Result<(u64, u64)> {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await
}

/// Connects to the first address that accepts; when none does, asks for a new
/// resolution and tries what it gives once.
async fn connect(
    mut choice: watch::Receiver<Choice>,
    refresh: &Notify,
    metrics: &BrokerMetrics,
    timeout: Duration,
) -> Option<(TcpStream, SocketAddr)> {
    for round in 0..2 {
        let addrs = choice.borrow_and_update().addrs.clone();
        for addr in addrs {
            let labels = AddrLabels {
                endpoint: addr.to_string(),
            };
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    metrics.connections.get_or_create(&labels).inc();
                    return Some((stream, addr));
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "connect failed");
                    metrics.connect_failures.get_or_create(&labels).inc();
                }
                Err(_) => {
                    metrics.connect_failures.get_or_create(&labels).inc();
                }
            }
        }
        if round == 0 {
            refresh.notify_one();
            if tokio::time::timeout(timeout, choice.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }
    None
}

/// Resolves the endpoint, then again at its TTL, when the mapping changes, or when asked.
#[allow(clippy::too_many_arguments)]
async fn keep_resolved(
    definition: Definition,
    mut endpoint: Endpoint,
    lookup: Lookup,
    every: Duration,
    choice: watch::Sender<Choice>,
    refresh: Arc<Notify>,
    metrics: BrokerMetrics,
    shutdown: podkit_core::shutdown::Shutdown,
    mut first: Option<podkit_core::readiness::Latch>,
) {
    let mut modified = definition.modified();
    loop {
        let outcome = resolve::resolve(&endpoint, lookup).await;
        let wait = match &outcome {
            Ok(Resolved { ttl: Some(ttl), .. }) => (*ttl).clamp(Duration::from_secs(1), every),
            _ => every,
        };
        // Failures are retried sooner than the TTL.
        let wait = if outcome.is_err() {
            wait.min(Duration::from_secs(2))
        } else {
            wait
        };
        let result = if outcome.is_ok() { "ok" } else { "failed" };
        metrics
            .resolutions
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        choice.send_modify(|c| {
            match outcome {
                Ok(resolved) => {
                    // Shown with its addresses: a new endpoint only once it resolves.
                    c.endpoint = endpoint.describe();
                    if resolved.addrs != c.addrs {
                        tracing::info!(endpoint = %c.endpoint, addrs = ?resolved.addrs, "resolved");
                    }
                    c.addrs = resolved.addrs;
                    c.resolved_at = Some(now_secs());
                    c.error = None;
                    if let Some(latch) = first.take() {
                        latch.release();
                    }
                }
                Err(e) => {
                    // The last good endpoint and addresses stay in use.
                    let e = format!("{}: {e}", endpoint.describe());
                    if c.error.as_ref() != Some(&e) {
                        tracing::warn!(endpoint = %c.endpoint, error = %e, "resolution failed");
                    }
                    c.error = Some(e);
                }
            }
        });
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = refresh.notified() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let now = definition.modified();
                    if now != modified {
                        modified = now;
                        match definition.load() {
                            Ok(new) => {
                                if new != endpoint {
                                    tracing::info!(from = %endpoint.describe(), to = %new.describe(), "the mapping changed");
                                    endpoint = new;
                                    break;
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "the mapping file is invalid; keeping the last good one"),
                        }
                    }
                }
                _ = shutdown.triggered() => return,
            }
        }
    }
}

/// `/endpoint` on the admin endpoint: the current choice as JSON.
fn add_endpoint_route(
    ctx: &Context,
    args: &BrokerArgs,
    choice: watch::Receiver<Choice>,
    last_connected: Arc<Mutex<Option<SocketAddr>>>,
) {
    let environment = args.environment.clone();
    let service = args.service.clone();
    ctx.admin_routes.add("/endpoint", move |_req| {
        let c = choice.borrow().clone();
        let last = *last_connected.lock().unwrap_or_else(|p| p.into_inner());
        let body = serde_json::json!({
            "environment": environment,
            "service": service,
            "endpoint": c.endpoint,
            "addresses": c.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "resolved_at": c.resolved_at,
            "error": c.error,
            "last_connected": last.map(|a| a.to_string()),
        });
        async move { response(StatusCode::OK, "application/json", format!("{body}\n")) }
    });
}
