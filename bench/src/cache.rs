//! `cache`: podkit cache against Varnish (Debian's 7.1) in front of the same origin, on the
//! same pinned core: a small cached object, a 1 MiB cached object, and the miss path
//! (every request a new URL) against going to the origin directly.

use crate::harness::start_podkit;
use std::time::Duration;

use podkit_testkit::free_port;
use podkit_testkit::servers::{Nginx, Varnish};

use crate::harness::{pin, Report, CLIENT_CORES, SERVER_CORES};
use crate::wrk;

/// A wrk script that asks for a new URL on every request.
const UNIQUE_URLS: &str = "counter = 0\nrequest = function()\n  counter = counter + 1\n  return wrk.format(nil, \"/miss/\" .. counter .. \"-\" .. math.random(1000000000))\nend\n";

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let duration = Duration::from_secs(if quick { 2 } else { 4 });
    let rounds = if quick { 1 } else { 5 };
    let mut report = Report::new("cache", "a caching tier: podkit cache vs Varnish", quick);
    report.setup.push(format!(
        "Load: wrk -t1 --latency, {}s per run, {rounds} rounds interleaved across targets, the median round reported",
        duration.as_secs()
    ));
    report.setup.push(
        "Origin: nginx (1 worker) with `Cache-Control: max-age=3600`, pinned with the load generator; \
         podkit cache --threads 1 --memory 256MiB and varnishd -s malloc,256m with its default \
         thread pools (all its threads on the same core as podkit's one thread)"
            .into(),
    );

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("big"), vec![b'x'; 1 << 20]).map_err(|e| e.to_string())?;
    let script = dir.path().join("unique.lua");
    std::fs::write(&script, UNIQUE_URLS).map_err(|e| e.to_string())?;
    let mut origin = Nginx::start(&format!(
        "server {{ listen 127.0.0.1:{{port}}; root {}; \
         add_header Cache-Control \"max-age=3600\" always; \
         location = /small {{ return 200 \"hello, cached world\\n\"; }} \
         location /miss/ {{ return 200 \"a fresh page\\n\"; }} }}",
        dir.path().display()
    ))
    .map_err(|e| e.to_string())?;
    pin(origin.process().pid().unwrap_or(0), CLIENT_CORES)?;

    let mut varnish = Varnish::start(
        &format!(
            "vcl 4.1;\nbackend default {{ .host = \"127.0.0.1\"; .port = \"{}\"; }}\n",
            origin.addr.port()
        ),
        "256m",
    )
    .map_err(|e| e.to_string())?;
    pin(varnish.process().pid().unwrap_or(0), SERVER_CORES)?;

    let listen = format!("127.0.0.1:{}", free_port());
    let upstream = format!("http://{}", origin.addr);
    let _podkit = start_podkit(
        &[
            "cache",
            "--listen",
            &listen,
            "--upstream",
            &upstream,
            "--memory",
            "256MiB",
            "--threads",
            "1",
            "--log-level",
            "warn",
        ],
        SERVER_CORES,
    )?;

    let podkit_url = format!("http://{listen}");
    let varnish_url = format!("http://{}", varnish.addr);
    let origin_url = format!("http://{}", origin.addr);
    let script_arg = format!("-s{}", script.display());
    let cases: [(&str, &str, u32, Vec<&str>, bool); 3] = [
        ("hit: 20-byte object, c=50", "/small", 50, vec![], false),
        ("hit: 1 MiB object, c=10", "/big", 10, vec![], false),
        (
            "miss: a new URL every request, c=20",
            "/",
            20,
            vec![script_arg.as_str()],
            true,
        ),
    ];
    for (case, path, connections, extra, with_origin) in cases {
        let mut targets = vec![
            ("podkit", format!("{podkit_url}{path}")),
            ("varnish", format!("{varnish_url}{path}")),
        ];
        if with_origin {
            targets.push(("origin direct", format!("{origin_url}{path}")));
        }
        // Fill the caches, then measure.
        for (_, url) in &targets {
            wrk::run_with(url, connections, Duration::from_secs(1), &[], &extra)?;
        }
        for (target, result) in
            wrk::interleaved_with(&targets, rounds, connections, duration, &[], &extra)?
        {
            if result.errors > 0 {
                report
                    .notes
                    .push(format!("{target}, {case}: {} errors", result.errors));
            }
            report.measurements.push(result.measurement(&target, case));
        }
    }
    report.ratios.push(("podkit".into(), "varnish".into()));
    report
        .ratios
        .push(("podkit".into(), "origin direct".into()));
    Ok(report)
}
