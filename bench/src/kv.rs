//! `kv`: podkit's sharding ambassador against nutcracker (twemproxy), both in front of the
//! same three redis-servers and three memcached, with one of the servers direct as the
//! ceiling; and each proxy's memory with many idle client connections.
//!
//! Both proxies read the same `nutcracker.yaml` (a Redis pool and a memcache pool) and
//! run on one core: podkit with `--threads 1`, nutcracker single-threaded by design.
//! Besides throughput, each proxy's CPU time over each case is read from /proc, giving
//! requests per CPU-second: throughput per core, whatever else shares the core.

use crate::harness::start_podkit;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use podkit_testkit::free_port;
use podkit_testkit::servers::{Memcached, Nutcracker, Redis};

use crate::harness::{
    median, output, pin, pinned, rss_kib, Measurement, Report, CLIENT_CORES, SERVER_CORES,
};
use crate::loadgen::Summary;

/// The listening ports of one proxy's two pools.
#[derive(Debug, Clone, Copy)]
struct Ports {
    redis: u16,
    memcache: u16,
}

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let requests = if quick { 20_000 } else { 400_000 };
    let rounds = if quick { 1 } else { 5 };
    let idle_clients = if quick { 100 } else { 1_000 };
    let clients = 50;
    let mut report = Report::new(
        "kv",
        "Redis and memcache through a sharding proxy: podkit vs nutcracker",
        quick,
    );
    report.setup.push(format!(
        "{rounds} rounds, the targets interleaved in each; every figure is the median of its rounds"
    ));
    report.setup.push(format!(
        "Redis load: redis-benchmark -c {clients} -n {requests} -r 10000 -t set,get, without pipelining and with -P 16"
    ));
    report.setup.push(format!(
        "memcache load: podkit-bench memload (bench/src/memload.rs, one thread like \
         redis-benchmark) -c {clients} -n {requests}, set then get, 3-byte values, \
         10,000 keys, without pipelining and with -P 16"
    ));
    report.setup.push(
        "Both proxies read the same nutcracker.yaml: a Redis pool over 3 redis-servers and \
         a memcache pool over 3 memcached, fnv1a_64 + ketama; nutcracker 0.5 (Debian), \
         podkit ambassador shard --threads 1"
            .into(),
    );

    let mut redis = Vec::new();
    let mut memcached = Vec::new();
    for _ in 0..3 {
        let mut server = Redis::start().map_err(|e| e.to_string())?;
        pin(server.process().pid().unwrap_or(0), SERVER_CORES)?;
        redis.push(server);
        let mut server = Memcached::start().map_err(|e| e.to_string())?;
        pin(server.process().pid().unwrap_or(0), SERVER_CORES)?;
        memcached.push(server);
    }
    let config = |ports: Ports| {
        let lines = |addrs: Vec<String>| -> String {
            addrs.iter().map(|a| format!("   - {a}:1\n")).collect()
        };
        format!(
            "redis_pool:\n  listen: 127.0.0.1:{}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             redis: true\n  timeout: 5000\n  servers:\n{}\
             memcache_pool:\n  listen: 127.0.0.1:{}\n  hash: fnv1a_64\n  distribution: ketama\n  \
             timeout: 5000\n  servers:\n{}",
            ports.redis,
            lines(redis.iter().map(|r| r.addr.to_string()).collect()),
            ports.memcache,
            lines(memcached.iter().map(|m| m.addr.to_string()).collect()),
        )
    };
    let nutcracker_ports = Ports {
        redis: free_port(),
        memcache: free_port(),
    };
    let mut nutcracker = Nutcracker::start(&config(nutcracker_ports)).map_err(|e| e.to_string())?;
    let nutcracker_pid = nutcracker.process().pid().unwrap_or(0);
    pin(nutcracker_pid, SERVER_CORES)?;

    let podkit_ports = Ports {
        redis: free_port(),
        memcache: free_port(),
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("nutcracker.yaml");
    std::fs::write(&file, config(podkit_ports)).map_err(|e| e.to_string())?;
    let mut podkit = start_podkit(
        &[
            "ambassador",
            "shard",
            "-c",
            &file.to_string_lossy(),
            "--threads",
            "1",
            "--log-level",
            "warn",
        ],
        SERVER_CORES,
    )?;
    let podkit_pid = podkit.process().pid().unwrap_or(0);

    let direct = Ports {
        redis: redis[0].addr.port(),
        memcache: memcached[0].addr.port(),
    };
    // The process whose CPU time is read for each target (none for direct).
    let targets = [
        ("direct", direct, None),
        ("nutcracker", nutcracker_ports, Some(nutcracker_pid)),
        ("podkit", podkit_ports, Some(podkit_pid)),
    ];
    // Rounds interleave the targets, so that slow drifts of the machine fall on all
    // alike; each figure is the median of its rounds.
    let mut runs = Runs::default();
    for pipeline in [1, 16] {
        for _ in 0..rounds {
            for redis in [true, false] {
                for (target, ports, pid) in targets {
                    for op in ["set", "get"] {
                        let cpu = CpuClock::start(pid)?;
                        let measured = if redis {
                            redis_benchmark(target, ports.redis, clients, requests, pipeline, op)?
                        } else {
                            memload(target, ports.memcache, clients, requests, pipeline, op)?
                        };
                        runs.add(measured, requests, cpu.seconds()?);
                    }
                }
            }
        }
    }
    let (measurements, per_core) = runs.medians();
    report.measurements = measurements;
    report.sections.push((
        "Per core: requests per CPU-second of the proxy".into(),
        per_core.markdown("podkit", "nutcracker"),
    ));
    report.ratios.push(("podkit".into(), "nutcracker".into()));
    report.ratios.push(("podkit".into(), "direct".into()));
    report.ratios.push(("nutcracker".into(), "direct".into()));

    let nutcracker_rss = idle_rss(nutcracker_pid, nutcracker_ports.redis, idle_clients)?;
    let podkit_rss = idle_rss(podkit_pid, podkit_ports.redis, idle_clients)?;
    report.notes.push(format!(
        "Resident memory with {idle_clients} idle client connections (each sent one PING), \
         after the load above: podkit {:.1} MiB (before: {:.1} MiB), nutcracker {:.1} MiB \
         (before: {:.1} MiB).",
        mib(podkit_rss.1),
        mib(podkit_rss.0),
        mib(nutcracker_rss.1),
        mib(nutcracker_rss.0),
    ));
    report.notes.push(
        "Per core: the load generator on its own core bounds throughput near what direct \
         reaches, so the CPU each proxy spends per request is the fairer comparison of the \
         proxies; it is read from /proc/PID/stat (utime + stime) before and after each case."
            .into(),
    );
    report.notes.push(
        "direct sends every key to one server; the proxies spread keys over three, all on \
         the same core as the proxy."
            .into(),
    );
    report.notes.push(
        "Without pipelining, a perf profile of podkit (perf record -g on its process) put \
         about 80% of its samples in the kernel: system calls and switches between the \
         proxy and the servers sharing its core. podkit's lead grows with pipelining, \
         where a pipeline's replies leave in one write."
            .into(),
    );
    Ok(report)
}

/// Every round's figures (and the proxy's requests per CPU-second, when read), by case
/// and target, in the order first measured.
#[derive(Debug, Default)]
struct Runs(Vec<(Vec<Measurement>, Vec<f64>)>);

impl Runs {
    /// Records one run, with the proxy's CPU seconds over it when they were read.
    fn add(&mut self, measured: Measurement, requests: u32, cpu_seconds: Option<f64>) {
        let same = |m: &Measurement| m.case == measured.case && m.target == measured.target;
        let at = match self.0.iter().position(|(runs, _)| same(&runs[0])) {
            Some(at) => at,
            None => {
                self.0.push((Vec::new(), Vec::new()));
                self.0.len() - 1
            }
        };
        let (measurements, per_core) = &mut self.0[at];
        if let Some(seconds) = cpu_seconds.filter(|s| *s > 0.0) {
            per_core.push(f64::from(requests) / seconds);
        }
        measurements.push(measured);
    }

    /// The median of each figure over the rounds: the measurements, and requests per
    /// CPU-second.
    fn medians(self) -> (Vec<Measurement>, PerCore) {
        let mut measurements = Vec::new();
        let mut per_core = PerCore::default();
        for (runs, cpu) in self.0 {
            let Some(figures) = Measurement::median_of(&runs) else {
                continue;
            };
            if let Some(value) = median(cpu) {
                per_core
                    .0
                    .push((figures.case.clone(), figures.target.clone(), value));
            }
            measurements.push(figures);
        }
        (measurements, per_core)
    }
}

/// Requests per CPU-second of each proxy, by case and target.
#[derive(Debug, Default)]
struct PerCore(Vec<(String, String, f64)>);

impl PerCore {
    fn get(&self, case: &str, target: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|(c, t, _)| c == case && t == target)
            .map(|(_, _, v)| *v)
    }

    /// A table of `target` and `baseline` side by side, with their ratio.
    fn markdown(&self, target: &str, baseline: &str) -> String {
        let mut md = format!(
            "| case | {baseline} | {target} | {target} / {baseline} |\n|---|---:|---:|---:|\n"
        );
        let mut cases: Vec<&str> = Vec::new();
        for (case, _, _) in &self.0 {
            if !cases.contains(&case.as_str()) {
                cases.push(case);
            }
        }
        for case in cases {
            if let (Some(t), Some(b)) = (self.get(case, target), self.get(case, baseline)) {
                md.push_str(&format!("| {case} | {b:.0} | {t:.0} | {:.2}× |\n", t / b));
            }
        }
        md
    }
}

/// A process's CPU time (user and system, all threads) since a start.
struct CpuClock {
    pid: Option<u32>,
    start: f64,
}

impl CpuClock {
    fn start(pid: Option<u32>) -> Result<CpuClock, String> {
        let start = match pid {
            Some(pid) => cpu_seconds(pid)?,
            None => 0.0,
        };
        Ok(CpuClock { pid, start })
    }

    /// CPU seconds used since the start; `None` when no process is watched.
    fn seconds(&self) -> Result<Option<f64>, String> {
        match self.pid {
            Some(pid) => Ok(Some(cpu_seconds(pid)? - self.start)),
            None => Ok(None),
        }
    }
}

/// User plus system CPU seconds of `pid` so far, all threads (`/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|process| process.stat())
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The resident set (KiB) of `pid` before and while `count` client connections, each
/// having sent one PING, sit idle on `port`.
fn idle_rss(pid: u32, port: u16, count: usize) -> Result<(u64, u64), String> {
    let before = rss_kib(pid)?;
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("idle client: {e}"))?;
        stream
            .write_all(b"*1\r\n$4\r\nPING\r\n")
            .map_err(|e| format!("idle client: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("idle client: {e}"))?;
        if line != "+PONG\r\n" {
            return Err(format!("idle client: PING answered {line:?}"));
        }
        idle.push(reader);
    }
    let during = rss_kib(pid)?;
    drop(idle);
    Ok((before, during))
}

fn memload(
    target: &str,
    port: u16,
    clients: u32,
    requests: u32,
    pipeline: u32,
    op: &str,
) -> Result<Measurement, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let line = output(
        pinned(CLIENT_CORES, &exe.to_string_lossy())
            .arg("memload")
            .args(["--port", &port.to_string()])
            .args(["--clients", &clients.to_string()])
            .args(["--requests", &requests.to_string()])
            .args(["--pipeline", &pipeline.to_string()])
            .args(["--op", op]),
    )?;
    let summary = Summary::parse(line.trim()).ok_or_else(|| format!("memload printed {line:?}"))?;
    Ok(summary.measurement(target, &format!("memcache {op} -P {pipeline}")))
}

/// One redis-benchmark test (`set` or `get`), alone so that CPU time is its own.
fn redis_benchmark(
    target: &str,
    port: u16,
    clients: u32,
    requests: u32,
    pipeline: u32,
    test: &str,
) -> Result<Measurement, String> {
    let csv = output(
        pinned(CLIENT_CORES, "redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", &clients.to_string(), "-n", &requests.to_string()])
            .args(["-P", &pipeline.to_string(), "-r", "10000"])
            .args(["-t", test, "--csv"]),
    )?;
    let (_, rps, p50, p99) = parse_csv(&csv)
        .into_iter()
        .next()
        .ok_or_else(|| format!("redis-benchmark -t {test} printed no figures: {csv:?}"))?;
    Ok(Measurement {
        target: target.to_string(),
        case: format!("redis {test} -P {pipeline}"),
        requests_per_second: rps,
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// Parses redis-benchmark's `--csv` output into (test, rps, p50 ms, p99 ms).
fn parse_csv(csv: &str) -> Vec<(String, f64, f64, f64)> {
    csv.lines()
        .skip_while(|l| !l.starts_with("\"test\""))
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
            let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            Some((
                fields.first()?.to_string(),
                number(1)?,
                number(4)?,
                number(6)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_redis_benchmark_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"625000.00\",\"0.936\",\"0.368\",\"0.887\",\"1.575\",\"1.807\",\"2.055\"\n";
        assert_eq!(
            super::parse_csv(csv),
            vec![("SET".to_string(), 625000.0, 0.887, 1.807)]
        );
    }
}
