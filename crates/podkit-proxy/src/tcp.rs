//! A TCP load balancer (layer 4): each connection goes whole to one backend, round-robin
//! or least-connections, for what must not be terminated here — TLS passing through to a
//! tier of TLS terminators, as a Kubernetes Service does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use podkit_core::component::{ComponentError, Context};
use podkit_core::shutdown::Shutdown;

use crate::config::{backend_authority, BackendConfig, Policy};

/// One backend address and the connections open to it.
#[derive(Debug)]
struct Target {
    addr: String,
    open: AtomicUsize,
}

/// The current backends.
#[derive(Debug, Default)]
struct Targets {
    list: RwLock<Vec<Arc<Target>>>,
    next: AtomicUsize,
}

impl Targets {
    fn set(&self, backends: &[BackendConfig]) {
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let kept: Vec<Arc<Target>> = backends
            .iter()
            .filter_map(|b| backend_authority(&b.url).ok())
            .map(|authority| {
                list.iter()
                    .find(|t| t.addr == authority.as_str())
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Target {
                            addr: authority.to_string(),
                            open: AtomicUsize::new(0),
                        })
                    })
            })
            .collect();
        *list = kept;
    }

    /// Backends in the order to try them.
    fn order(&self, policy: Policy) -> Vec<Arc<Target>> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner()).clone();
        if list.is_empty() {
            return list;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        let mut order: Vec<Arc<Target>> = (0..list.len())
            .map(|k| list[(start + k) % list.len()].clone())
            .collect();
        if policy == Policy::LeastConn {
            order.sort_by_key(|t| t.open.load(Ordering::Relaxed));
        }
        order
    }
}

/// Settings of the TCP balancer.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    pub listen: SocketAddr,
    pub backends: Vec<BackendConfig>,
    pub backends_file: Option<std::path::PathBuf>,
    pub policy: Policy,
    pub connect_timeout: Duration,
}

/// Runs the TCP balancer until shutdown; open connections are given the drain time.
pub async fn run(settings: TcpSettings, ctx: Context) -> Result<(), ComponentError> {
    let listener = podkit_core::component::bind("--listen", settings.listen).await?;
    let targets = Arc::new(Targets::default());
    targets.set(&settings.backends);
    if let Some(file) = settings.backends_file.clone() {
        spawn_file_watch(targets.clone(), file, ctx.shutdown.clone());
    }
    tracing::info!(listen = %settings.listen, "listening (tcp)");
    ctx.started();
    serve(listener, targets, settings, ctx.shutdown.clone()).await;
    Ok(())
}

async fn serve(
    listener: TcpListener,
    targets: Arc<Targets>,
    settings: TcpSettings,
    shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.triggered() => break,
        };
        let Ok((client, peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (targets, settings) = (targets.clone(), settings.clone());
        connections.spawn(async move {
            if let Err(err) = relay(client, &targets, &settings).await {
                tracing::debug!(%peer, error = %err, "tcp connection ended");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn relay(
    mut client: TcpStream,
    targets: &Targets,
    settings: &TcpSettings,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    for target in targets.order(settings.policy) {
        let Ok(Ok(mut upstream)) =
            tokio::time::timeout(settings.connect_timeout, TcpStream::connect(&target.addr)).await
        else {
            continue;
        };
        let _ = upstream.set_nodelay(true);
        target.open.fetch_add(1, Ordering::Relaxed);
        let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        target.open.fetch_sub(1, Ordering::Relaxed);
        return result.map(|_| ());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "no backend accepted the connection",
    ))
}

fn spawn_file_watch(targets: Arc<Targets>, file: std::path::PathBuf, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut seen = None;
        let mut ticker = tokio::time::interval(crate::upstream::discovery::CHECK_EVERY);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.triggered() => return,
            }
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let stamp = (meta.modified().ok(), meta.len());
            if Some(stamp) == seen {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(&file) {
                let (backends, _) = crate::upstream::discovery::parse(&text);
                tracing::info!(backends = backends.len(), "backends loaded");
                targets.set(&backends);
                seen = Some(stamp);
            }
        }
    });
}
