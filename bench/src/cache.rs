//! `cache`: podkit cache against Varnish (Debian's 7.1) in front of the same origin, on the
//! same pinned core: a small cached object, a 1 MiB cached object, and the miss path
//! (every request a new URL) against going to the origin directly. Throughput comes from
//! wrk (closed loop: each connection sends its next request when answered). wrk reads
//! 8 KiB per system call, which fills its own core before either server's on 1 MiB
//! bodies, so that case is also run with `podkit-bench httprate --rate max`, a closed
//! loop that reads 64 KiB at a time; each closed-loop run records how busy the server's
//! and the load generator's cores were. Latency is also compared at fixed request rates
//! (`podkit-bench httprate`), since a closed loop measures each server's latency at a
//! different load.

use std::time::Duration;

use podkit_testkit::free_port;
use podkit_testkit::servers::{Nginx, Varnish};

use crate::harness::{
    alternating_rounds, congestion_control, median, output, pin, pinned, start_podkit,
    tree_rss_kib, CpuTimes, Measurement, Report, TcpCounters, CLIENT_CORES, SERVER_CORES,
};
use crate::httprate::get_each;
use crate::loadgen::Summary;
use crate::wrk;

/// Fixed-rate cases: (case, path, requests per second, connections), at about half and
/// about four fifths of what the slower of the two reaches on this machine in the
/// closed-loop runs.
const FIXED_RATE_CASES: [(&str, &str, u32, u32); 4] = [
    (
        "hit at a fixed 20,000 req/s: 20-byte object, c=50",
        "/small",
        20_000,
        50,
    ),
    (
        "hit at a fixed 35,000 req/s: 20-byte object, c=50",
        "/small",
        35_000,
        50,
    ),
    (
        "hit at a fixed 1,500 req/s: 1 MiB object, c=10",
        "/big",
        1_500,
        10,
    ),
    (
        "hit at a fixed 2,500 req/s: 1 MiB object, c=10",
        "/big",
        2_500,
        10,
    ),
];

/// Rounds of the closed-loop cases.
const ROUNDS: usize = 7;
/// Rounds of the fixed-rate cases, whose p99 moves most from run to run on a small
/// machine (both servers').
const FIXED_RATE_ROUNDS: usize = 15;

/// A wrk script that asks for a new URL on every request.
const UNIQUE_URLS: &str = "counter = 0\nrequest = function()\n  counter = counter + 1\n  return wrk.format(nil, \"/miss/\" .. counter .. \"-\" .. math.random(1000000000))\nend\n";

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let duration = Duration::from_secs(if quick { 2 } else { 4 });
    let rounds = if quick { 1 } else { ROUNDS };
    let mut report = Report::new("cache", "a caching tier: podkit cache vs Varnish", quick);
    report.setup.push(format!(
        "Load: wrk -t1 --latency, {}s per run, {rounds} rounds; the \"64 KiB reads\" case: \
         podkit-bench httprate --rate max (bench/src/httprate.rs, closed loop, one thread)",
        duration.as_secs()
    ));
    report.setup.push(
        "Rounds: the targets interleaved in each, the order reversed every other round; \
         every figure is the median of its rounds (the last section gives each p99's range)"
            .into(),
    );
    report.setup.push(format!(
        "TCP: congestion control {} (the machine's net.ipv4.tcp_congestion_control); the \
         machine's segments retransmitted and received out of order are counted around \
         every run",
        congestion_control()
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
        &format!("{MEMORY_MIB}m"),
    )
    .map_err(|e| e.to_string())?;
    pin(varnish.process().pid().unwrap_or(0), SERVER_CORES)?;

    let podkit_port = free_port();
    let listen = format!("127.0.0.1:{podkit_port}");
    let upstream = format!("http://{}", origin.addr);
    let mut podkit = start_podkit(
        &[
            "cache",
            "--listen",
            &listen,
            "--upstream",
            &upstream,
            "--memory",
            &format!("{MEMORY_MIB}MiB"),
            "--threads",
            "1",
            "--log-level",
            "warn",
        ],
        SERVER_CORES,
    )?;

    let podkit_pid = podkit.process().pid().unwrap_or(0);
    let varnish_pid = varnish.process().pid().unwrap_or(0);
    // Before any load: what each process holds with an empty cache.
    let at_start = [tree_rss_kib(podkit_pid)?, tree_rss_kib(varnish_pid)?];

    let podkit_url = format!("http://{listen}");
    let varnish_url = format!("http://{}", varnish.addr);
    let origin_url = format!("http://{}", origin.addr);
    let script_arg = format!("-s{}", script.display());
    let unique_urls = Load::Wrk(vec![script_arg.as_str()]);
    let cases: [(&str, &str, u32, &Load, bool); 4] = [
        (
            "hit: 20-byte object, c=50",
            "/small",
            50,
            &Load::Wrk(vec![]),
            false,
        ),
        (
            "hit: 1 MiB object, c=10",
            "/big",
            10,
            &Load::Wrk(vec![]),
            false,
        ),
        (
            "hit: 1 MiB object, c=10, 64 KiB reads",
            "/big",
            10,
            &Load::ClosedLoop,
            false,
        ),
        (
            "miss: a new URL every request, c=20",
            "/",
            20,
            &unique_urls,
            true,
        ),
    ];
    // Every run, by case and target.
    let mut spread: Vec<Vec<Measurement>> = Vec::new();
    let mut core_use = String::from(
        "| case | target | server core busy % | load generator core busy % | TCP segments retransmitted | TCP segments out of order |\n|---|---|---:|---:|---:|---:|\n",
    );
    for (case, path, connections, load, with_origin) in cases {
        let mut targets = vec![
            ("podkit", podkit_url.as_str(), podkit_port),
            ("varnish", varnish_url.as_str(), varnish.addr.port()),
        ];
        if with_origin {
            targets.push(("origin direct", origin_url.as_str(), origin.addr.port()));
        }
        // Fill the caches, then measure.
        for target in &targets {
            load.run(target, case, path, connections, Duration::from_secs(1))?;
        }
        let runs = alternating_rounds(&targets, rounds, |target| {
            let (before, tcp_before) = (CpuTimes::now()?, TcpCounters::now()?);
            let (measurement, errors) = load.run(target, case, path, connections, duration)?;
            let (after, tcp) = (CpuTimes::now()?, TcpCounters::now()?.since(&tcp_before));
            if errors > 0 {
                report
                    .notes
                    .push(format!("{}, {case}: {errors} errors", target.0));
            }
            let busy = |core| after.busy_percent(&before, core).unwrap_or(0.0);
            Ok((measurement, busy(SERVER_CORES), busy(CLIENT_CORES), tcp))
        })?;
        for ((target, _, _), runs) in targets.iter().zip(&runs) {
            let server = median(runs.iter().map(|r| r.1).collect()).unwrap_or(0.0);
            let client = median(runs.iter().map(|r| r.2).collect()).unwrap_or(0.0);
            let tcp: Vec<TcpCounters> = runs.iter().map(|r| r.3).collect();
            let (retransmitted, out_of_order) = tcp_medians(&tcp);
            core_use.push_str(&format!(
                "| {case} | {target} | {server:.0} | {client:.0} | {retransmitted:.0} | {out_of_order:.0} |\n"
            ));
        }
        spread.extend(
            runs.into_iter()
                .map(|runs| runs.into_iter().map(|r| r.0).collect()),
        );
    }
    let seconds = duration.as_secs().max(2) + 1;
    let fixed_rounds = if quick { 1 } else { FIXED_RATE_ROUNDS };
    report.setup.push(format!(
        "Fixed rate: podkit-bench httprate (bench/src/httprate.rs, open loop, one thread), \
         {seconds}s per run, {fixed_rounds} rounds; a request's latency counts from when it \
         was due if its connection was still busy"
    ));
    let mut fixed_tcp = String::from(
        "| case | target | TCP segments retransmitted, median | most | TCP segments out of order, median |\n|---|---|---:|---:|---:|\n",
    );
    for (case, path, rate, connections) in FIXED_RATE_CASES {
        let targets = [("podkit", podkit_port), ("varnish", varnish.addr.port())];
        let runs = alternating_rounds(&targets, fixed_rounds, |(target, port)| {
            let before = TcpCounters::now()?;
            let summary = httprate(*port, path, &rate.to_string(), seconds, connections)?;
            Ok((
                summary.measurement(target, case),
                TcpCounters::now()?.since(&before),
            ))
        })?;
        for ((target, _), runs) in targets.iter().zip(&runs) {
            let tcp: Vec<TcpCounters> = runs.iter().map(|r| r.1).collect();
            let (retransmitted, out_of_order) = tcp_medians(&tcp);
            let most = tcp.iter().map(|t| t.retransmitted).max().unwrap_or(0);
            fixed_tcp.push_str(&format!(
                "| {case} | {target} | {retransmitted:.0} | {most} | {out_of_order:.0} |\n"
            ));
        }
        spread.extend(
            runs.into_iter()
                .map(|runs| runs.into_iter().map(|r| r.0).collect()),
        );
    }
    report.measurements.extend(
        spread
            .iter()
            .filter_map(|runs| Measurement::median_of(runs)),
    );
    report
        .sections
        .push(("p99 over the rounds".into(), p99_spread(&spread)));
    report.sections.push((
        "Core use and loopback TCP in the closed-loop runs (median over the rounds)".into(),
        core_use,
    ));
    report
        .sections
        .push(("Loopback TCP in the fixed-rate runs".into(), fixed_tcp));
    // Memory under churn: a working set of 1 MiB objects three times the bound, twice.
    let objects = if quick { 64 } else { 3 * MEMORY_MIB };
    let mut memory = format!(
        "| target | RSS at start MiB | RSS after MiB | growth beyond the {MEMORY_MIB} MiB bound MiB | responses failed or cut short |\n|---|---:|---:|---:|---:|\n",
    );
    let targets = [
        ("podkit", podkit_port, podkit_pid, at_start[0]),
        ("varnish", varnish.addr.port(), varnish_pid, at_start[1]),
    ];
    for (target, port, pid, start) in targets {
        let mut failed = 0;
        for _ in 0..2 {
            failed += get_each(port, (0..objects).map(|i| format!("/big?churn={i}")))?;
        }
        let after = tree_rss_kib(pid)?;
        let beyond = (after as i64 - start as i64) / 1024 - MEMORY_MIB as i64;
        memory.push_str(&format!(
            "| {target} | {} | {} | {beyond} | {failed} |\n",
            start / 1024,
            after / 1024
        ));
    }
    report.sections.push((
        format!("Memory under churn: {objects} distinct 1 MiB objects requested twice over, one at a time, after the runs above"),
        memory,
    ));
    report.ratios.push(("podkit".into(), "varnish".into()));
    report
        .ratios
        .push(("podkit".into(), "origin direct".into()));
    Ok(report)
}

/// The medians of segments retransmitted and received out of order over `runs`.
fn tcp_medians(runs: &[TcpCounters]) -> (f64, f64) {
    let of = |get: fn(&TcpCounters) -> u64| {
        median(runs.iter().map(|t| get(t) as f64).collect()).unwrap_or(0.0)
    };
    (of(|t| t.retransmitted), of(|t| t.out_of_order))
}

/// The bound given to both caches, `--memory` and `-s malloc`.
const MEMORY_MIB: u64 = 256;

/// A table of each case's and target's lowest, median and highest p99 over its rounds.
fn p99_spread(runs: &[Vec<Measurement>]) -> String {
    let mut table = String::from(
        "| case | target | lowest p99 ms | median p99 ms | highest p99 ms |\n|---|---|---:|---:|---:|\n",
    );
    for runs in runs {
        let mut p99: Vec<f64> = runs.iter().map(|m| m.p99_ms).collect();
        p99.sort_by(f64::total_cmp);
        if let (Some(first), Some(lowest), Some(highest)) = (runs.first(), p99.first(), p99.last())
        {
            let middle = p99[p99.len() / 2];
            table.push_str(&format!(
                "| {} | {} | {lowest:.3} | {middle:.3} | {highest:.3} |\n",
                first.case, first.target
            ));
        }
    }
    table
}

/// How a closed-loop case is loaded.
enum Load<'a> {
    /// wrk, with these extra arguments.
    Wrk(Vec<&'a str>),
    /// `podkit-bench httprate --rate max`: a closed loop that reads 64 KiB per system
    /// call, where wrk reads 8 KiB and fills its own core first on large bodies.
    ClosedLoop,
}

/// A target of the closed-loop cases: its name, its `http://` base URL and its port.
type Target<'a> = (&'a str, &'a str, u16);

impl Load<'_> {
    /// Runs the load on `path` of `target`; returns the case's figures and how many
    /// requests failed.
    fn run(
        &self,
        target: &Target,
        case: &str,
        path: &str,
        connections: u32,
        duration: Duration,
    ) -> Result<(Measurement, u64), String> {
        let (name, base, port) = *target;
        match self {
            Load::Wrk(extra) => {
                let url = format!("{base}{path}");
                let result = wrk::run_with(&url, connections, duration, &[], extra)?;
                Ok((result.measurement(name, case), result.errors))
            }
            Load::ClosedLoop => {
                let summary = httprate(port, path, "max", duration.as_secs(), connections)?;
                Ok((summary.measurement(name, case), 0))
            }
        }
    }
}

/// One run of `podkit-bench httprate` at `rate` (requests per second, or `max`) against
/// `path` on 127.0.0.1:`port`, pinned to the load generator's core.
fn httprate(
    port: u16,
    path: &str,
    rate: &str,
    seconds: u64,
    connections: u32,
) -> Result<Summary, String> {
    let port = port.to_string();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let line = output(
        pinned(CLIENT_CORES, &exe.to_string_lossy())
            .arg("httprate")
            .args(["--port", &port, "--path", path])
            .args(["--rate", rate])
            .args(["--seconds", &seconds.to_string()])
            .args(["--connections", &connections.to_string()]),
    )?;
    Summary::parse(line.trim()).ok_or_else(|| format!("httprate printed {line:?}"))
}
