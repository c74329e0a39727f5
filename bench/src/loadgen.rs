//! What podkit-bench's own load generators (`memload`, `httprate`) share: the summary
//! line they print and the benchmarks read back, percentiles of the latencies, the one
//! thread they run on, and reading their `--flag value` pairs.

use std::future::Future;
use std::time::Duration;

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Summary {
    /// The summary of `latencies` (any order) gathered over `elapsed`.
    pub fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Summary {
        latencies.sort_unstable();
        let percentile = |p: f64| {
            let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies
                .get(index)
                .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
        };
        Summary {
            requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
            p999_ms: percentile(0.999),
        }
    }

    /// The one-line form a load generator prints.
    pub fn line(&self) -> String {
        format!(
            "rps={:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3}",
            self.requests_per_second, self.p50_ms, self.p99_ms, self.p999_ms
        )
    }

    /// As a report row.
    pub fn measurement(&self, target: &str, case: &str) -> crate::harness::Measurement {
        crate::harness::Measurement {
            target: target.to_string(),
            case: case.to_string(),
            requests_per_second: self.requests_per_second,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
        }
    }

    /// Reads [`Summary::line`] back.
    pub fn parse(line: &str) -> Option<Summary> {
        let mut fields = line.split_whitespace().map(|f| f.split_once('='));
        let mut value = |name: &str| match fields.next()? {
            Some((n, v)) if n == name => v.parse::<f64>().ok(),
            _ => None,
        };
        Some(Summary {
            requests_per_second: value("rps")?,
            p50_ms: value("p50_ms")?,
            p99_ms: value("p99_ms")?,
            p999_ms: value("p999_ms")?,
        })
    }
}

/// Runs a load on a single-threaded runtime: one thread drives every connection, as
/// redis-benchmark and wrk -t1 do.
pub fn on_one_thread<T>(load: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(load)
}

/// The `--flag value` pairs of `args`, or the flag left without a value.
pub fn flag_pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
    args.chunks(2)
        .map(|pair| match pair {
            [flag, value] => Ok((flag.as_str(), value.as_str())),
            [flag] => Err(format!("{flag}: a value is required")),
            _ => unreachable!("chunks of two"),
        })
        .collect()
}

/// A flag's value as a number.
pub fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .map_err(|_| format!("{flag}: expected a number, got '{value}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_round_trips() {
        let summary = Summary {
            requests_per_second: 2000.0,
            p50_ms: 0.25,
            p99_ms: 1.5,
            p999_ms: 3.125,
        };
        assert_eq!(Summary::parse(&summary.line()), Some(summary));
    }

    #[test]
    fn percentiles_of_latencies() {
        let latencies: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let summary = Summary::of(latencies, Duration::from_secs(2));
        assert_eq!(summary.requests_per_second, 500.0);
        assert_eq!(summary.p50_ms, 501.0);
        assert_eq!(summary.p99_ms, 990.0);
        assert_eq!(summary.p999_ms, 999.0);
    }

    #[test]
    fn flags_come_in_pairs() {
        let args: Vec<String> = ["--port", "1", "--rate"].map(String::from).to_vec();
        assert_eq!(flag_pairs(&args), Err("--rate: a value is required".into()));
        assert_eq!(
            number::<u16>("--port", "x"),
            Err("--port: expected a number, got 'x'".into())
        );
    }
}
