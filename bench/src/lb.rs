//! `lb`: a replicated service behind a load balancer — podkit lb, nginx and haproxy, each
//! with one worker on the server core, in front of the same two backends.
//!
//! Every proxy is configured as its experts would: nginx with an upstream `keepalive`
//! pool and HTTP/1.1 toward the backends, haproxy with `http-reuse always`, all three with
//! a single worker thread and no access log.

use crate::harness::start_podkit;
use std::time::Duration;

use podkit_testkit::free_port;
use podkit_testkit::servers::{Haproxy, Nginx};

use crate::harness::{pin, Report, CLIENT_CORES, SERVER_CORES};
use crate::wrk;

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let duration = Duration::from_secs(if quick { 2 } else { 4 });
    let rounds = if quick { 1 } else { 7 };
    let connections = 50;
    let mut report = Report::new("lb", "round-robin load balancing over two backends", quick);
    report.setup.push(format!(
        "Load: wrk -t1 -c{connections} -d{}s --latency, GET / (a 6-byte body), HTTP/1.1 keep-alive; \
         {rounds} rounds interleaved across targets, the median round reported",
        duration.as_secs()
    ));
    report.setup.push(
        "Backends: one nginx (1 worker, `return 200`) listening on two ports, pinned with the load generator"
            .into(),
    );
    report.setup.push(
        "Proxies: 1 worker/thread each (podkit --threads 1, nginx worker_processes 1 with upstream keepalive 64, \
         haproxy nbthread 1 with http-reuse always)"
            .into(),
    );

    let second_port = free_port();
    let mut backend = Nginx::start(&format!(
        "server {{ listen 127.0.0.1:{{port}}; listen 127.0.0.1:{second_port}; \
         location / {{ return 200 \"hello\\n\"; }} }}"
    ))
    .map_err(|e| e.to_string())?;
    pin(backend.process().pid().unwrap_or(0), CLIENT_CORES)?;
    let backends = [backend.addr.port(), second_port];

    let mut nginx = Nginx::start(&format!(
        "upstream backends {{ server 127.0.0.1:{}; server 127.0.0.1:{}; keepalive 64; }}\n\
         server {{ listen 127.0.0.1:{{port}}; location / {{ proxy_pass http://backends; \
         proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}",
        backends[0], backends[1]
    ))
    .map_err(|e| e.to_string())?;
    pin(nginx.process().pid().unwrap_or(0), SERVER_CORES)?;

    let mut haproxy = Haproxy::start_with_threads(
        &format!(
            "frontend main\n  bind 127.0.0.1:{{port}}\n  default_backend app\n\n\
             backend app\n  balance roundrobin\n  http-reuse always\n  \
             server b1 127.0.0.1:{}\n  server b2 127.0.0.1:{}\n",
            backends[0], backends[1]
        ),
        Some(1),
    )
    .map_err(|e| e.to_string())?;
    pin(haproxy.process().pid().unwrap_or(0), SERVER_CORES)?;

    let listen = format!("127.0.0.1:{}", free_port());
    let b1 = format!("http://127.0.0.1:{}", backends[0]);
    let b2 = format!("http://127.0.0.1:{}", backends[1]);
    let _podkit = start_podkit(
        &[
            "lb",
            "--listen",
            &listen,
            "--backend",
            &b1,
            "--backend",
            &b2,
            "--ready-path",
            "",
            "--threads",
            "1",
            "--log-level",
            "warn",
        ],
        SERVER_CORES,
    )?;

    let case = format!("GET / c={connections}");
    let targets = [
        ("direct (ceiling)", format!("http://{}/", backend.addr)),
        ("podkit", format!("http://{listen}/")),
        ("nginx", format!("http://{}/", nginx.addr)),
        ("haproxy", format!("http://{}/", haproxy.addr)),
    ];
    // Warm every target up once, then measure.
    for (_, url) in &targets {
        wrk::run(url, connections, Duration::from_secs(1), &[])?;
    }
    let targets: Vec<(&str, String)> = targets.into_iter().collect();
    for (target, result) in wrk::interleaved(&targets, rounds, connections, duration, &[])? {
        if result.errors > 0 {
            report
                .notes
                .push(format!("{target}: {} errors", result.errors));
        }
        report.measurements.push(result.measurement(&target, &case));
    }
    report.ratios.push(("podkit".into(), "nginx".into()));
    report.ratios.push(("podkit".into(), "haproxy".into()));
    report.notes.push(
        "What limits podkit here (perf, cpu-clock samples of the podkit process under this load): about half \
         of its CPU is the kernel's loopback TCP path, which every proxy pays alike; the rest is spread thin over \
         hyper's HTTP/1 server and client state machines, the hand-off between the client-side and \
         backend-side tasks of each proxied request, header rewriting and allocation. nginx serves both sides \
         of a request in one event loop. Next step: an HTTP/1 upstream codec driven inline by the request \
         task, without the per-request hand-off."
            .into(),
    );
    Ok(report)
}
