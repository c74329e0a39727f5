//! `podkit adapter metrics`: chapter 4's monitoring adapter — Redis's own statistics
//! (`INFO ALL`, `SLOWLOG LEN`, a few `CONFIG` values) served as Prometheus metrics named as
//! redis_exporter names them, so that its dashboards and alerts keep working.
//!
//! Each scrape of `/metrics` on `--listen` opens a connection, collects, and renders; when
//! Redis cannot be reached the answer is still 200, with `redis_up 0` and the error in
//! `redis_exporter_last_scrape_error`, as redis_exporter does.

pub mod info;
pub mod render;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use podkit_core::component::{ComponentError, Context};
use podkit_core::http::{response, serve_component};
use podkit_kv::resp::Frame;

use crate::exposition::Exposition;
use crate::redis_client::{Connection, RedisUrl};
use render::Scrape;

/// Collects one scrape's replies.
async fn collect(url: &RedisUrl, timeout: Duration) -> Result<Scrape, String> {
    let mut redis = Connection::open(url, timeout).await?;
    let info = match redis.command(&["INFO", "ALL"]).await? {
        Frame::Bulk(text) => info::Info::parse(&String::from_utf8_lossy(&text)),
        other => return Err(format!("INFO answered {other:?}")),
    };
    let slowlog_length = match redis.command(&["SLOWLOG", "LEN"]).await {
        Ok(Frame::Integer(n)) => Some(n as f64),
        _ => None,
    };
    // CONFIG may be renamed away; the metrics it gives are then left out.
    let config = |frame: Result<Frame, String>| match frame {
        Ok(Frame::Array(items)) => match items.get(1) {
            Some(Frame::Bulk(v)) => String::from_utf8_lossy(v).parse::<f64>().ok(),
            _ => None,
        },
        _ => None,
    };
    let databases = config(redis.command(&["CONFIG", "GET", "databases"]).await).map(|n| n as u32);
    let config_maxclients = config(redis.command(&["CONFIG", "GET", "maxclients"]).await);
    let config_maxmemory = config(redis.command(&["CONFIG", "GET", "maxmemory"]).await);
    Ok(Scrape {
        info,
        slowlog_length,
        databases,
        config_maxclients,
        config_maxmemory,
    })
}

/// Serves `/metrics` until shutdown.
pub async fn run(
    listen: SocketAddr,
    scrape_timeout: Duration,
    url: RedisUrl,
    ctx: Context,
) -> Result<(), ComponentError> {
    tracing::info!(redis = %url.address(), "scraping Redis on each request for /metrics");
    let url = Arc::new(url);
    let scrapes = Arc::new(AtomicU64::new(0));
    let timeout = scrape_timeout;
    let handler = move |req: http::Request<hyper::body::Incoming>, _conn| {
        let url = url.clone();
        let scrapes = scrapes.clone();
        async move {
            match req.uri().path() {
                "/metrics" => {
                    let started = Instant::now();
                    let scraped = collect(&url, timeout).await;
                    let count = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
                    let mut out = Exposition::default();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    let error = match &scraped {
                        Ok(scrape) => {
                            render::render_scrape(scrape, now, &mut out);
                            None
                        }
                        Err(err) => {
                            tracing::warn!(redis = %url.address(), error = %err, "scrape failed");
                            Some(err.as_str())
                        }
                    };
                    render::render_exporter(
                        error,
                        started.elapsed().as_secs_f64(),
                        count,
                        &mut out,
                    );
                    response(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        out.finish(),
                    )
                }
                _ => response(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    "<html><body><a href=\"/metrics\">Metrics</a></body></html>\n",
                ),
            }
        }
    };
    serve_component("--listen", listen, "Redis metrics", &ctx, handler).await
}
