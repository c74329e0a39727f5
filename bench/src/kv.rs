//! `kv`: Redis load through a sharding proxy against the same servers direct.
//!
//! The targets: `direct` (redis-benchmark to one redis-server, the ceiling) and
//! `nutcracker` (twemproxy in front of three redis-servers). The podkit ambassador joins
//! this benchmark when it lands.

use podkit_testkit::free_port;
use podkit_testkit::servers::{Nutcracker, Redis};

use crate::harness::{output, pin, pinned, Measurement, Report, CLIENT_CORES, SERVER_CORES};

/// Runs the benchmark.
pub fn run(quick: bool) -> Result<Report, String> {
    let requests = if quick { 20_000 } else { 400_000 };
    let clients = 50;
    let mut report = Report::new("kv", "Redis through a proxy vs direct", quick);
    report.setup.push(format!(
        "Load: redis-benchmark -c {clients} -n {requests} -t get,set, without pipelining and with -P 16"
    ));
    report
        .setup
        .push("nutcracker 0.5 (Debian) in front of 3 redis-servers, fnv1a_64 + ketama".into());

    let mut shards = Vec::new();
    for _ in 0..3 {
        let mut redis = Redis::start().map_err(|e| e.to_string())?;
        pin(redis.process().pid().unwrap_or(0), SERVER_CORES)?;
        shards.push(redis);
    }
    let listen = free_port();
    let servers: String = shards
        .iter()
        .map(|r| format!("   - {}:1\n", r.addr))
        .collect();
    let config = format!(
        "bench:\n  listen: 127.0.0.1:{listen}\n  hash: fnv1a_64\n  distribution: ketama\n  \
         redis: true\n  timeout: 5000\n  servers:\n{servers}"
    );
    let mut nutcracker = Nutcracker::start(&config).map_err(|e| e.to_string())?;
    pin(nutcracker.process().pid().unwrap_or(0), SERVER_CORES)?;

    let targets = [("direct", shards[0].addr.port()), ("nutcracker", listen)];
    for pipeline in [1, 16] {
        for (target, port) in targets {
            for m in redis_benchmark(target, port, clients, requests, pipeline)? {
                report.measurements.push(m);
            }
        }
    }
    report.ratios.push(("nutcracker".into(), "direct".into()));
    report.notes.push(
        "direct sends every key to one redis-server; the proxies spread keys over three, \
         all on the same core."
            .into(),
    );
    Ok(report)
}

fn redis_benchmark(
    target: &str,
    port: u16,
    clients: u32,
    requests: u32,
    pipeline: u32,
) -> Result<Vec<Measurement>, String> {
    let csv = output(
        pinned(CLIENT_CORES, "redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-c", &clients.to_string(), "-n", &requests.to_string()])
            .args(["-P", &pipeline.to_string(), "-t", "get,set", "--csv"]),
    )?;
    parse_csv(&csv)
        .into_iter()
        .map(|(test, rps, p50, p99)| {
            Ok(Measurement {
                target: target.to_string(),
                case: format!("{test} -P {pipeline}"),
                requests_per_second: rps,
                p50_ms: p50,
                p99_ms: p99,
            })
        })
        .collect()
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
