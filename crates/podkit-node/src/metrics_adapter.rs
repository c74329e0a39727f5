//! `podkit adapter metrics`: chapter 4's monitoring adapter, in its two modes — Redis's
//! statistics under redis_exporter's names ([`crate::redis_metrics`]), or any JSON stats
//! endpoint through a mapping file ([`crate::json_metrics`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use podkit_core::component::{ComponentError, Context};
use podkit_core::{ConfigError, HumanDuration};

use crate::http_fetch::HttpClient;
use crate::json_metrics::mapping::Mapping;
use crate::json_metrics::{JsonScraper, StatsSource};
use crate::redis_client::RedisUrl;

/// The flags of `podkit adapter metrics`.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// The Redis to watch: `redis://[:password@]host[:port][/db]` or `host:port`
    /// (redis_exporter's `--redis.addr` is accepted too). The default, as redis_exporter's,
    /// is `redis://localhost:6379`.
    #[arg(
        long,
        alias = "redis.addr",
        env = "PODKIT_REDIS",
        value_name = "URL",
        hide_env_values = true,
        conflicts_with = "json"
    )]
    pub redis: Option<String>,
    /// A JSON stats endpoint to map instead: `http(s)://...`, or `tcp://host:port` for a
    /// port that writes a document and closes (twemproxy's stats). Needs --mapping.
    #[arg(long, env = "PODKIT_JSON", value_name = "URL", requires = "mapping")]
    pub json: Option<String>,
    /// The mapping from the JSON document to metrics (YAML; see the README).
    #[arg(long, env = "PODKIT_MAPPING", value_name = "FILE", requires = "json")]
    pub mapping: Option<PathBuf>,
    /// Where to serve `/metrics` (redis_exporter's `--web.listen-address` is accepted too).
    #[arg(
        long,
        alias = "web.listen-address",
        env = "PODKIT_LISTEN",
        default_value = "0.0.0.0:9121",
        value_name = "ADDR",
        value_parser = podkit_core::cli::listen_addr
    )]
    pub listen: SocketAddr,
    /// Longest a scrape may take.
    #[arg(
        long,
        env = "PODKIT_SCRAPE_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub scrape_timeout: HumanDuration,
}

/// What is scraped.
pub enum Target {
    Redis(RedisUrl),
    Json(JsonScraper),
}

impl MetricsArgs {
    /// The target, checked (a bad URL or mapping file exits 2).
    pub fn target(&self) -> Result<Target, ConfigError> {
        if let (Some(json), Some(file)) = (&self.json, &self.mapping) {
            let source = StatsSource::parse(json)
                .map_err(|e| ConfigError::flag("--json", format!("'{json}': {e}")))?;
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::flag("--mapping", format!("{}: {e}", file.display())))?;
            let mapping =
                Mapping::parse(&text).map_err(|e| ConfigError::file(file, "metrics", e))?;
            let timeout = self.scrape_timeout.get();
            let client = HttpClient::new(None, timeout, 16 << 20)
                .map_err(|e| ConfigError::flag("--json", e))?;
            return Ok(Target::Json(JsonScraper {
                source,
                mapping,
                client,
                timeout,
            }));
        }
        let text = self.redis.as_deref().unwrap_or("redis://localhost:6379");
        RedisUrl::parse(text)
            .map(Target::Redis)
            .map_err(|e| ConfigError::flag("--redis", format!("'{text}': {e}")))
    }
}

/// Serves `/metrics` for the target until shutdown.
pub async fn run(args: MetricsArgs, target: Target, ctx: Context) -> Result<(), ComponentError> {
    match target {
        Target::Redis(url) => {
            crate::redis_metrics::run(args.listen, args.scrape_timeout.get(), url, ctx).await
        }
        Target::Json(scraper) => crate::json_metrics::run(args.listen, scraper, ctx).await,
    }
}
