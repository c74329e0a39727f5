//! `podkit adapter metrics --json URL --mapping FILE`: the monitoring adapter's generic
//! mode. Any JSON stats endpoint — an HTTP(S) URL, or a TCP port that writes a JSON
//! document and closes (twemproxy's stats port) — is read on each scrape and served as
//! Prometheus metrics named by a small mapping file ([`mapping`]).

pub mod mapping;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use podkit_core::component::{ComponentError, Context};
use podkit_core::http::{response, serve_component};
use tokio::io::AsyncReadExt;

use crate::exposition::{Exposition, Kind};
use crate::http_fetch::HttpClient;
use mapping::Mapping;

/// Largest stats document read.
const MAX_DOCUMENT: usize = 16 << 20;

/// Where the JSON document comes from.
#[derive(Debug, Clone)]
pub enum StatsSource {
    Http(Uri),
    /// `tcp://host:port`: connect, read until the server closes.
    Tcp(String),
}

impl StatsSource {
    /// Parses `http(s)://...` or `tcp://host:port`.
    pub fn parse(text: &str) -> Result<StatsSource, String> {
        if let Some(addr) = text.strip_prefix("tcp://") {
            if addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err("tcp:// needs host:port".into());
            }
            return Ok(StatsSource::Tcp(addr.trim_end_matches('/').to_string()));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return text
                .parse()
                .map(StatsSource::Http)
                .map_err(|e| format!("{e}"));
        }
        Err("use an http(s):// or tcp:// URL".into())
    }
}

/// Everything a scrape needs.
pub struct JsonScraper {
    pub source: StatsSource,
    pub mapping: Mapping,
    pub client: HttpClient,
    pub timeout: Duration,
}

impl JsonScraper {
    async fn fetch(&self) -> Result<serde_json::Value, String> {
        let body: Bytes = match &self.source {
            StatsSource::Http(uri) => {
                let fetched = self
                    .client
                    .request(
                        Method::GET,
                        uri,
                        &[("accept", "application/json".into())],
                        Bytes::new(),
                    )
                    .await?;
                if !fetched.status.is_success() {
                    return Err(format!("{uri} answered {}", fetched.status));
                }
                fetched.body
            }
            StatsSource::Tcp(addr) => {
                let read = async {
                    let stream = tokio::net::TcpStream::connect(addr.as_str())
                        .await
                        .map_err(|e| format!("connecting to {addr}: {e}"))?;
                    let mut body = Vec::new();
                    stream
                        .take(MAX_DOCUMENT as u64)
                        .read_to_end(&mut body)
                        .await
                        .map_err(|e| format!("reading {addr}: {e}"))?;
                    Ok::<_, String>(Bytes::from(body))
                };
                tokio::time::timeout(self.timeout, read)
                    .await
                    .map_err(|_| format!("{addr}: no document within {:?}", self.timeout))??
            }
        };
        serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
    }

    /// One scrape rendered as Prometheus text.
    pub async fn scrape(&self) -> String {
        let started = Instant::now();
        let mut out = Exposition::default();
        let up = match self.fetch().await {
            Ok(doc) => {
                self.mapping.render(&doc, &mut out);
                1.0
            }
            Err(e) => {
                tracing::warn!(error = %e, "scrape failed");
                0.0
            }
        };
        out.one(
            "podkit_json_up",
            Kind::Gauge,
            "1 when the stats document was read and parsed",
            up,
        );
        out.one(
            "podkit_json_scrape_duration_seconds",
            Kind::Gauge,
            "How long reading the stats document took",
            started.elapsed().as_secs_f64(),
        );
        out.finish()
    }
}

/// Serves `/metrics` on `listen` until shutdown.
pub async fn run(
    listen: SocketAddr,
    scraper: JsonScraper,
    ctx: Context,
) -> Result<(), ComponentError> {
    let scraper = Arc::new(scraper);
    let handler = move |req: http::Request<hyper::body::Incoming>, _conn| {
        let scraper = scraper.clone();
        async move {
            if req.uri().path() != "/metrics" {
                return response(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    "<html><body><a href=\"/metrics\">Metrics</a></body></html>\n",
                );
            }
            response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                scraper.scrape().await,
            )
        }
    };
    serve_component("--listen", listen, "JSON stats as metrics", &ctx, handler).await
}
