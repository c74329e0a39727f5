//! `podkit adapter health`: chapter 4's rich health monitor. The database container stays
//! as it is; this adapter beside it runs a query representative of the workload and
//! answers the HTTP health check the platform expects: `200 OK`, or `503` with the error.
//!
//! It takes the book's adapter flags (`--user`, `--password`, `--database`, `--query`,
//! `--address`) and checks MySQL/MariaDB (the default, on localhost as in the book),
//! PostgreSQL or Redis. Results are cached for `--cache-for` and only one check runs at a
//! time, so probes cannot overload the database; credentials never reach logs or answers.

pub mod check;
pub mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::{Method, StatusCode};
use podkit_core::component::{ComponentError, Context};
use podkit_core::http::{response, serve_component, text};
use podkit_core::{ConfigError, HumanDuration};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use check::Checker;
use target::{Credentials, Target};

/// The flags of `podkit adapter health`.
#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// MySQL or MariaDB to check: `mysql://[user[:password]@]host[:port][/db]`. The default
    /// when no database is named is MySQL on localhost, as the book's adapter.
    #[arg(long, env = "PODKIT_MYSQL", value_name = "URL", conflicts_with_all = ["postgres", "redis"], hide_env_values = true)]
    pub mysql: Option<String>,
    /// PostgreSQL to check: `postgres://[user[:password]@]host[:port][/db]` or
    /// `host=... user=...`.
    #[arg(
        long,
        env = "PODKIT_POSTGRES",
        value_name = "URL",
        conflicts_with = "redis",
        hide_env_values = true
    )]
    pub postgres: Option<String>,
    /// Redis to check: `redis://[user:password@]host[:port][/db]`.
    #[arg(long, env = "PODKIT_REDIS", value_name = "URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// User name, in place of the URL's.
    #[arg(long, env = "PODKIT_DB_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// Password, in place of the URL's (prefer the env var or --password-file: flags are
    /// visible to every user of the machine).
    #[arg(
        long,
        alias = "passwd",
        env = "PODKIT_DB_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// A file holding the password (a trailing newline is ignored).
    #[arg(
        long,
        env = "PODKIT_DB_PASSWORD_FILE",
        value_name = "FILE",
        conflicts_with = "password"
    )]
    pub password_file: Option<PathBuf>,
    /// Database, in place of the URL's (for Redis, the database number).
    #[arg(long, env = "PODKIT_DB_DATABASE", value_name = "NAME")]
    pub database: Option<String>,
    /// The query to run (`SELECT 1` by default); for Redis a command such as `PING` or
    /// `EXISTS some-key`.
    #[arg(long, env = "PODKIT_QUERY", value_name = "QUERY")]
    pub query: Option<String>,
    /// Where to answer health checks, on `/` and `/healthz` (the book's `--address`).
    #[arg(long, alias = "address", env = "PODKIT_LISTEN", default_value = "localhost:8080", value_name = "ADDR", value_parser = podkit_core::cli::listen_addr)]
    pub listen: SocketAddr,
    /// Longest a check (connecting included) may take before it counts as failed.
    #[arg(
        long,
        env = "PODKIT_TIMEOUT",
        default_value = "5s",
        value_name = "DURATION"
    )]
    pub timeout: HumanDuration,
    /// How long a result answers later probes before the query runs again.
    #[arg(
        long,
        env = "PODKIT_CACHE_FOR",
        default_value = "1s",
        value_name = "DURATION"
    )]
    pub cache_for: HumanDuration,
}

impl HealthArgs {
    /// The target with its credentials, or the flag that is wrong.
    pub fn target(&self) -> Result<Target, ConfigError> {
        let password = match &self.password_file {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| {
                        ConfigError::flag("--password-file", format!("{}: {e}", file.display()))
                    })?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => self.password.clone(),
        };
        let credentials = Credentials {
            user: self.user.clone(),
            password,
            database: self.database.clone(),
        };
        let (flag, parsed) = match (&self.postgres, &self.redis, &self.mysql) {
            (Some(url), _, _) => ("--postgres", Target::postgres(url, &credentials)),
            (_, Some(url), _) => ("--redis", Target::redis(url, &credentials)),
            (_, _, Some(url)) => ("--mysql", Target::mysql(url, &credentials)),
            _ => ("--mysql", Target::mysql("localhost:3306", &credentials)),
        };
        let secrets: Vec<String> = credentials.password.into_iter().collect();
        parsed.map_err(|e| ConfigError::flag(flag, target::redact(&e, &secrets)))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// The adapter's own metrics, on the admin endpoint.
#[derive(Clone, Default)]
struct HealthMetrics {
    checks: Family<ResultLabels, Counter>,
    cached: Counter,
    healthy: Gauge,
    check_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl HealthMetrics {
    fn register(ctx: &Context) -> Self {
        let m = HealthMetrics::default();
        ctx.metrics.register(
            "podkit_health_checks",
            "Queries run against the database, by result (ok or failed)",
            m.checks.clone(),
        );
        ctx.metrics.register(
            "podkit_health_cached_answers",
            "Probes answered from the last result without a query",
            m.cached.clone(),
        );
        ctx.metrics.register(
            "podkit_health_healthy",
            "1 when the last check passed, else 0",
            m.healthy.clone(),
        );
        ctx.metrics.register(
            "podkit_health_check_duration_seconds",
            "How long the last check took",
            m.check_seconds.clone(),
        );
        m
    }
}

/// Answers health checks until shutdown.
pub async fn run(args: HealthArgs, target: Target, ctx: Context) -> Result<(), ComponentError> {
    let query = args
        .query
        .clone()
        .unwrap_or_else(|| target.default_query().to_string());
    tracing::info!(database = %target.describe(), "checking the database on each health probe");
    let checker = Arc::new(Checker::new(
        target,
        query,
        args.timeout.get(),
        args.cache_for.get(),
    ));
    let metrics = HealthMetrics::register(&ctx);
    // Starts unknown: log the first result whatever it is.
    let last_healthy = Arc::new(std::sync::Mutex::new(None::<bool>));
    let handler = move |req: http::Request<hyper::body::Incoming>, _conn| {
        let checker = checker.clone();
        let metrics = metrics.clone();
        let last_healthy = last_healthy.clone();
        async move {
            if !matches!(req.uri().path(), "/" | "/healthz") {
                return text(StatusCode::NOT_FOUND, "not found: try / or /healthz\n");
            }
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
            }
            let verdict = checker.verdict().await;
            let healthy = verdict.result.is_ok();
            if verdict.cached {
                metrics.cached.inc();
            } else {
                let result = if healthy { "ok" } else { "failed" };
                metrics
                    .checks
                    .get_or_create(&ResultLabels {
                        result: result.into(),
                    })
                    .inc();
                metrics.check_seconds.set(verdict.took.as_secs_f64());
                metrics.healthy.set(i64::from(healthy));
                let changed = last_healthy
                    .lock()
                    .map(|mut last| last.replace(healthy) != Some(healthy))
                    .unwrap_or(false);
                match (&verdict.result, changed) {
                    (Err(error), true) => tracing::warn!(%error, "the database is unhealthy"),
                    (Ok(()), true) => tracing::info!("the database is healthy"),
                    _ => {}
                }
            }
            match verdict.result {
                Ok(()) => response(StatusCode::OK, "text/plain; charset=utf-8", "OK"),
                Err(error) => response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    error,
                ),
            }
        }
    };
    serve_component("--listen", args.listen, "health checks", &ctx, handler).await
}
