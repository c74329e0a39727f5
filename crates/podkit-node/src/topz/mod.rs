//! `podkit sidecar topz`: a `/topz` readout of every process in the PID namespace
//! (chapter 2, "Modular Application Containers" and "Hands On: Deploying the topz
//! Container"). Replaces `brendanburns/topz`, and accepts its `--addr` flag.
//!
//! - [`sample`]: reading `/proc` and computing CPU % between two readings;
//! - [`tree`]: the `--pid-filter` subtree;
//! - [`render`]: JSON, `top`-like text and a sortable HTML page.

pub mod render;
pub mod sample;
pub mod tree;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use podkit_core::component::{bind, ComponentError, Context};
use podkit_core::http::{query_pairs, response, serve, text, Body, ServeOptions};
use podkit_core::HumanDuration;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use render::{Format, Snapshot, SortKey, SystemSummary};
use sample::{Clock, Reading};

/// Longest `?interval=` a request may ask for.
const MAX_REQUEST_INTERVAL: Duration = Duration::from_secs(60);

/// Flags of `podkit sidecar topz`.
#[derive(clap::Args, Debug, Clone)]
pub struct TopzArgs {
    /// Address to serve /topz on (`--addr` as the original topz spelled it).
    #[arg(
        long,
        visible_alias = "addr",
        env = "PODKIT_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// How often the process table is read; CPU % is measured over this interval.
    #[arg(
        long,
        env = "PODKIT_INTERVAL",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub interval: HumanDuration,

    /// Show only this process and its descendants.
    #[arg(long, env = "PODKIT_PID_FILTER", value_name = "PID")]
    pub pid_filter: Option<i32>,

    /// Show only the processes of this `podkit up` pod (and their descendants), as a
    /// sidecar in the pod's PID namespace would; `podkit up` sets it to the sidecar's pod.
    #[arg(long, env = "PODKIT_POD", value_name = "NAME")]
    pub pod: Option<String>,

    /// Connections served at once.
    #[arg(
        long,
        env = "PODKIT_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_name = "N"
    )]
    pub max_connections: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    format: String,
    code: String,
}

#[derive(Clone, Debug)]
struct TopzMetrics {
    processes: Gauge,
    samples: Counter,
    sample_seconds: Histogram,
    requests: Family<RequestLabels, Counter>,
}

impl TopzMetrics {
    fn register(ctx: &Context) -> Self {
        let m = TopzMetrics {
            processes: Gauge::default(),
            samples: Counter::default(),
            sample_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            requests: Family::default(),
        };
        ctx.metrics.register(
            "podkit_topz_processes",
            "Processes in the latest reading (after --pid-filter)",
            m.processes.clone(),
        );
        ctx.metrics.register(
            "podkit_topz_samples",
            "Readings of the process table taken",
            m.samples.clone(),
        );
        ctx.metrics.register(
            "podkit_topz_sample_duration_seconds",
            "Time to read the whole process table",
            m.sample_seconds.clone(),
        );
        ctx.metrics.register(
            "podkit_topz_requests",
            "Requests for /topz by format and status code",
            m.requests.clone(),
        );
        m
    }
}

/// Shared state between the sampler and the HTTP handler.
struct Topz {
    clock: Clock,
    pid_filter: Option<i32>,
    pod: Option<String>,
    latest: RwLock<Option<Arc<Snapshot>>>,
    users: Mutex<HashMap<u32, String>>,
    metrics: TopzMetrics,
}

/// Runs the component until shutdown.
pub async fn run(args: TopzArgs, ctx: Context) -> Result<(), ComponentError> {
    if args.interval.get() < Duration::from_millis(10) {
        return Err(podkit_core::ConfigError::flag("--interval", "must be at least 10ms").into());
    }
    let clock = sample::clock().map_err(|e| ComponentError::runtime(format!("/proc: {e}")))?;
    let listener = bind("--listen", args.listen).await?;
    let topz = Arc::new(Topz {
        clock,
        pid_filter: args.pid_filter,
        pod: args.pod.clone(),
        latest: RwLock::new(None),
        users: Mutex::new(HashMap::new()),
        metrics: TopzMetrics::register(&ctx),
    });
    tracing::info!(listen = %args.listen, interval = %args.interval, "serving /topz");

    let first_sample = ctx.readiness.latch("first sample of the process table");
    ctx.started();
    let sampler = tokio::spawn(sample_forever(
        topz.clone(),
        args.interval.get(),
        first_sample,
    ));
    let handler = {
        let topz = topz.clone();
        move |req: Request<Incoming>, _conn: podkit_core::http::ConnInfo| {
            let topz = topz.clone();
            async move { topz.handle(req).await }
        }
    };
    let options = ServeOptions {
        max_connections: args.max_connections,
        ..ServeOptions::default()
    };
    serve(listener, handler, ctx.shutdown.clone(), options).await;
    sampler.abort();
    Ok(())
}

async fn sample_forever(topz: Arc<Topz>, interval: Duration, first: podkit_core::readiness::Latch) {
    let mut first = Some(first);
    let mut previous = topz.read().await;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(current) = topz.read().await else {
            continue;
        };
        if let Some(prev) = &previous {
            let snapshot = topz.snapshot(prev, &current);
            topz.metrics.processes.set(snapshot.processes.len() as i64);
            *topz.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(snapshot));
            if let Some(latch) = first.take() {
                latch.release();
            }
        }
        previous = Some(current);
    }
}

// === impl Topz ===

impl Topz {
    /// Reads the process table off the async threads.
    async fn read(&self) -> Option<Reading> {
        let started = std::time::Instant::now();
        let reading = tokio::task::spawn_blocking(sample::read_processes).await;
        self.metrics.samples.inc();
        self.metrics
            .sample_seconds
            .observe(started.elapsed().as_secs_f64());
        match reading {
            Ok(Ok(reading)) => Some(reading),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "reading /proc failed");
                None
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading /proc panicked");
                None
            }
        }
    }

    fn snapshot(&self, previous: &Reading, current: &Reading) -> Snapshot {
        let now = SystemTime::now();
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let mut user_name = |uid: u32| {
            users
                .entry(uid)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                        .unwrap_or_else(|| uid.to_string())
                })
                .clone()
        };
        let mut processes = sample::rows(previous, current, self.clock, now, &mut user_name);
        if let Some(root) = self.pid_filter {
            processes = tree::subtree(processes, root);
        }
        if let Some(pod) = &self.pod {
            processes = tree::pod(processes, pod);
        }

        render::sort(&mut processes, SortKey::Cpu);
        Snapshot {
            taken_at: humantime::format_rfc3339_seconds(now).to_string(),
            interval_seconds: current
                .at
                .saturating_duration_since(previous.at)
                .as_secs_f64(),
            system: system_summary(),
            processes,
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (format, resp) = self.respond(&req).await;
        let label = match format {
            Some(Format::Json) => "json",
            Some(Format::Text) => "text",
            Some(Format::Html) => "html",
            None => "none",
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                format: label.to_string(),
                code: resp.status().as_u16().to_string(),
            })
            .inc();
        resp
    }

    async fn respond(&self, req: &Request<Incoming>) -> (Option<Format>, Response<Body>) {
        if !matches!(req.uri().path(), "/topz" | "/topz/" | "/") {
            return (None, text(StatusCode::NOT_FOUND, "not found; try /topz\n"));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            resp.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            return (None, resp);
        }
        let query = match Query::parse(req) {
            Ok(q) => q,
            Err(message) => return (None, text(StatusCode::BAD_REQUEST, message + "\n")),
        };
        let snapshot = match query.interval {
            Some(interval) => match self.sample_over(interval).await {
                Some(s) => Arc::new(s),
                None => return (Some(query.format), unavailable()),
            },
            None => match self
                .latest
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                Some(s) => s,
                None => return (Some(query.format), unavailable()),
            },
        };
        let mut snapshot = Arc::unwrap_or_clone(snapshot);
        if let Some(root) = query.pid {
            snapshot.processes = tree::subtree(snapshot.processes, root);
        }
        render::sort(&mut snapshot.processes, query.sort);
        let body = render::render(&snapshot, query.format);
        let mut resp = response(StatusCode::OK, query.format.content_type(), body);
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        (Some(query.format), resp)
    }

    /// A fresh snapshot measured over `interval`, for `?interval=`.
    async fn sample_over(&self, interval: Duration) -> Option<Snapshot> {
        let first = self.read().await?;
        tokio::time::sleep(interval).await;
        let second = self.read().await?;
        Some(self.snapshot(&first, &second))
    }
}

fn unavailable() -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "no reading of the process table yet; retry in a moment\n",
    )
}

/// The request's options: `?format=`, `?sort=`, `?pid=`, `?interval=`.
struct Query {
    format: Format,
    sort: SortKey,
    pid: Option<i32>,
    interval: Option<Duration>,
}

impl Query {
    fn parse(req: &Request<Incoming>) -> Result<Query, String> {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let mut query = Query {
            format: Format::from_accept(accept),
            sort: SortKey::Cpu,
            pid: None,
            interval: None,
        };
        for (key, value) in query_pairs(req.uri()) {
            match key.as_str() {
                "format" => {
                    query.format = Format::from_query(&value)
                        .ok_or_else(|| format!("format: '{value}' is not json, text or html"))?
                }
                "sort" => {
                    query.sort = SortKey::parse(&value).ok_or_else(|| {
                        format!(
                            "sort: '{value}' is not one of pid, ppid, user, command, state, cpu, \
                             rss, vsize, threads, fds, start"
                        )
                    })?
                }
                "pid" => {
                    query.pid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("pid: '{value}' is not a process id"))?,
                    )
                }
                "interval" => {
                    let d: HumanDuration = value.parse().map_err(|e| format!("interval: {e}"))?;
                    if d.get() < Duration::from_millis(10) || d.get() > MAX_REQUEST_INTERVAL {
                        return Err(format!("interval: '{value}' must be between 10ms and 1m"));
                    }
                    query.interval = Some(d.get());
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

fn round2(x: f32) -> f64 {
    (f64::from(x) * 100.0).round() / 100.0
}

fn system_summary() -> SystemSummary {
    use procfs::Current;
    let load = procfs::LoadAverage::current().ok();
    let mem = procfs::Meminfo::current().ok();
    let uptime = procfs::Uptime::current().ok();
    SystemSummary {
        uptime_seconds: uptime.map_or(0.0, |u| u.uptime),
        load_average: load.map_or([0.0; 3], |l| [l.one, l.five, l.fifteen].map(round2)),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_total_bytes: mem.as_ref().map_or(0, |m| m.mem_total),
        memory_available_bytes: mem.and_then(|m| m.mem_available).unwrap_or(0),
    }
}
