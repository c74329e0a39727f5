//! twemproxy's stats: the JSON document nutcracker writes to every connection on its stats
//! port (`-s`, default 22222), with the same keys, so tools that read it keep working.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use podkit_core::shutdown::Shutdown;

use crate::pool::Pool;

/// Counters of a pool's clients.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub client_eof: AtomicU64,
    pub client_err: AtomicU64,
    pub client_connections: AtomicU64,
    pub forward_error: AtomicU64,
    pub fragments: AtomicU64,
}

/// What the document is built from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub pools: Vec<(Arc<Pool>, Arc<PoolStats>)>,
    pub started: Instant,
    pub total_connections: Arc<AtomicU64>,
}

/// The stats document now.
pub fn document(sources: &Sources) -> Value {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut top = Map::new();
    top.insert("service".into(), json!("nutcracker"));
    top.insert("source".into(), json!(hostname()));
    top.insert(
        "version".into(),
        json!(concat!("0.5.0-podkit-", env!("CARGO_PKG_VERSION"))),
    );
    top.insert("uptime".into(), json!(sources.started.elapsed().as_secs()));
    top.insert("timestamp".into(), json!(now));
    top.insert(
        "total_connections".into(),
        json!(load(&sources.total_connections)),
    );
    let current: u64 = sources
        .pools
        .iter()
        .map(|(_, s)| load(&s.client_connections))
        .sum();
    top.insert("curr_connections".into(), json!(current));
    for (pool, stats) in &sources.pools {
        let mut p = Map::new();
        p.insert("client_eof".into(), json!(load(&stats.client_eof)));
        p.insert("client_err".into(), json!(load(&stats.client_err)));
        p.insert(
            "client_connections".into(),
            json!(load(&stats.client_connections)),
        );
        let ejects: u64 = pool.servers.iter().map(|s| s.metrics.ejections.get()).sum();
        p.insert("server_ejects".into(), json!(ejects));
        p.insert("forward_error".into(), json!(load(&stats.forward_error)));
        p.insert("fragments".into(), json!(load(&stats.fragments)));
        for server in &pool.servers {
            let s = &server.stats;
            p.insert(
                server.name.clone(),
                json!({
                    "server_eof": load(&s.server_eof),
                    "server_err": load(&s.server_err),
                    "server_timedout": load(&s.server_timedout),
                    "server_connections": server.metrics.connections.get(),
                    "server_ejected_at": load(&s.server_ejected_at),
                    "requests": load(&s.requests),
                    "request_bytes": load(&s.request_bytes),
                    "responses": load(&s.responses),
                    "response_bytes": load(&s.response_bytes),
                    "in_queue": load(&s.in_queue),
                    "in_queue_bytes": 0,
                    "out_queue": 0,
                    "out_queue_bytes": 0,
                }),
            );
        }
        top.insert(pool.config.name.clone(), Value::Object(p));
    }
    Value::Object(top)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Writes the document to every connection on `listener` until shutdown.
pub async fn serve(listener: TcpListener, sources: Sources, shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.triggered() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let text = document(&sources).to_string() + "\n";
        tokio::spawn(async move {
            let _ = stream.write_all(text.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
