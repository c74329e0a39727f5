//! Running wrk on the client core and reading its report.

use std::time::Duration;

use crate::harness::{output, pinned, Measurement, CLIENT_CORES};

/// One wrk run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
}

impl WrkResult {
    /// As a report row.
    pub fn measurement(&self, target: &str, case: &str) -> Measurement {
        Measurement {
            target: target.to_string(),
            case: case.to_string(),
            requests_per_second: self.requests_per_second,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
        }
    }
}

/// `wrk -t1 -c<connections> -d<duration> --latency <url>` on the client core.
pub fn run(
    url: &str,
    connections: u32,
    duration: Duration,
    headers: &[&str],
) -> Result<WrkResult, String> {
    run_with(url, connections, duration, headers, &[])
}

/// Like [`run`] with extra wrk arguments (e.g. `-s script.lua`).
pub fn run_with(
    url: &str,
    connections: u32,
    duration: Duration,
    headers: &[&str],
    extra: &[&str],
) -> Result<WrkResult, String> {
    let mut command = pinned(CLIENT_CORES, "wrk");
    command.args(extra);
    command
        .args(["-t1", "-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .arg("--latency");
    for header in headers {
        command.args(["-H", header]);
    }
    command.arg(url);
    let report = output(&mut command)?;
    parse(&report).ok_or_else(|| format!("could not read wrk's report:\n{report}"))
}

/// Reads `Requests/sec`, the 50% and 99% latencies and the error counts.
pub fn parse(report: &str) -> Option<WrkResult> {
    let mut result = WrkResult {
        requests_per_second: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        errors: 0,
    };
    let mut seen_rps = false;
    for line in report.lines().map(str::trim) {
        if let Some(rps) = line.strip_prefix("Requests/sec:") {
            result.requests_per_second = rps.trim().parse().ok()?;
            seen_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            result.p50_ms = millis(v.trim())?;
        } else if let Some(v) = line.strip_prefix("99%") {
            result.p99_ms = millis(v.trim())?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.errors += v.trim().parse::<u64>().ok()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            result.errors += v
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    seen_rps.then_some(result)
}

/// `626.08us`, `1.20ms`, `2.00s` in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// Measures every target `rounds` times, interleaved (A B C, A B C, ...), so that slow
/// drifts of the machine fall on every target alike; returns each target's median run
/// (by requests per second).
pub fn interleaved(
    targets: &[(&str, String)],
    rounds: usize,
    connections: u32,
    duration: Duration,
    headers: &[&str],
) -> Result<Vec<(String, WrkResult)>, String> {
    let mut runs: Vec<Vec<WrkResult>> = vec![Vec::new(); targets.len()];
    for _ in 0..rounds.max(1) {
        for (i, (_, url)) in targets.iter().enumerate() {
            runs[i].push(run(url, connections, duration, headers)?);
        }
    }
    Ok(targets
        .iter()
        .zip(runs)
        .map(|((name, _), mut results)| {
            results.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
            let median = results[results.len() / 2].clone();
            (name.to_string(), median)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 10s test @ http://127.0.0.1:8080/\n  1 threads and 50 connections\n  Latency Distribution\n     50%  600.00us\n     75%    0.90ms\n     90%    1.00ms\n     99%    1.20ms\n  123456 requests in 10.00s, 16.24MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 2\nRequests/sec:  12345.67\nTransfer/sec:      1.62MB\n";
        let r = parse(report).unwrap();
        assert_eq!(r.requests_per_second, 12345.67);
        assert!((r.p50_ms - 0.6).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
        assert_eq!(r.errors, 6);
    }
}
