//! `podkit-bench memload`: a memcache text-protocol load generator, the counterpart of
//! redis-benchmark for the `kv` benchmark (Debian ships no memcache load tool that reports
//! latency percentiles). One thread drives every connection, as redis-benchmark does.
//!
//! Each client connection sends `--pipeline` requests, waits for their replies, and
//! repeats; a request's latency is the time from its batch being written to its reply
//! being read. Keys are drawn from a fixed key space; values are 3 bytes, like
//! redis-benchmark's default.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which command the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Get,
}

impl Op {
    fn parse(name: &str) -> Result<Op, String> {
        match name {
            "set" => Ok(Op::Set),
            "get" => Ok(Op::Get),
            other => Err(format!("--op: expected set or get, got '{other}'")),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Summary {
    /// The one-line form printed by `podkit-bench memload` and read back by the `kv`
    /// benchmark.
    pub fn line(&self) -> String {
        format!(
            "rps={:.0} p50_ms={:.3} p99_ms={:.3}",
            self.requests_per_second, self.p50_ms, self.p99_ms
        )
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
        })
    }
}

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct Load {
    pub port: u16,
    pub clients: usize,
    pub requests: usize,
    pub pipeline: usize,
    pub op: Op,
    pub keyspace: usize,
}

impl Load {
    /// Reads `--port --clients --requests --pipeline --op --keyspace`.
    pub fn from_args(args: &[String]) -> Result<Load, String> {
        let mut load = Load {
            port: 0,
            clients: 50,
            requests: 100_000,
            pipeline: 1,
            op: Op::Get,
            keyspace: 10_000,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag}: a value is required"))?;
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{flag}: expected a number, got '{value}'"))
            };
            match flag.as_str() {
                "--port" => load.port = number()? as u16,
                "--clients" => load.clients = number()?.max(1),
                "--requests" => load.requests = number()?,
                "--pipeline" => load.pipeline = number()?.max(1),
                "--keyspace" => load.keyspace = number()?.max(1),
                "--op" => load.op = Op::parse(value)?,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if load.port == 0 {
            return Err("--port is required".into());
        }
        Ok(load)
    }
}

/// Runs the load on a single-threaded runtime and summarizes it.
pub fn run(load: &Load) -> Result<Summary, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(drive(load))
}

async fn drive(load: &Load) -> Result<Summary, String> {
    let per_client = load.requests.div_ceil(load.clients);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..load.clients {
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            one_client(&load, client, per_client).await
        }));
    }
    let mut latencies = Vec::with_capacity(per_client * load.clients);
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    Ok(Summary {
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
    })
}

async fn one_client(load: &Load, client: usize, count: usize) -> Result<Vec<Duration>, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", load.port))
        .await
        .map_err(|e| format!("connect 127.0.0.1:{}: {e}", load.port))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut rng = fastrand::Rng::with_seed(client as u64);
    let mut latencies = Vec::with_capacity(count);
    let mut request = Vec::new();
    let mut replies = Vec::with_capacity(64 << 10);
    let mut done = 0;
    while done < count {
        let batch = load.pipeline.min(count - done);
        request.clear();
        for _ in 0..batch {
            let key = rng.usize(..load.keyspace);
            match load.op {
                Op::Set => request
                    .extend_from_slice(format!("set key:{key:06} 0 0 3\r\nxxx\r\n").as_bytes()),
                Op::Get => request.extend_from_slice(format!("get key:{key:06}\r\n").as_bytes()),
            }
        }
        let sent = Instant::now();
        stream
            .write_all(&request)
            .await
            .map_err(|e| e.to_string())?;
        replies.clear();
        let mut answered = 0;
        let mut at = 0;
        while answered < batch {
            let n = stream
                .read_buf(&mut replies)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            while let Some(len) = reply_len(&replies[at..])? {
                at += len;
                answered += 1;
                latencies.push(sent.elapsed());
            }
        }
        done += batch;
    }
    Ok(latencies)
}

/// The length of the first complete reply in `buf` (podkit's memcache codec finds where
/// it ends); an error reply fails the run.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    if [&b"SERVER_ERROR"[..], b"CLIENT_ERROR", b"ERROR\r"]
        .iter()
        .any(|p| buf.starts_with(p))
    {
        let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
        return Err(format!(
            "error reply: {}",
            String::from_utf8_lossy(line).trim_end()
        ));
    }
    podkit_kv::memcache::reply_len(buf, true).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_boundaries() {
        assert_eq!(reply_len(b"STORED\r\n"), Ok(Some(8)));
        assert_eq!(reply_len(b"END\r\nEND\r\n"), Ok(Some(5)));
        assert_eq!(reply_len(b"VALUE k 0 3\r\nxxx\r\nEND\r\nX"), Ok(Some(23)));
        assert_eq!(reply_len(b"VALUE k 0 3\r\nxx"), Ok(None));
        assert_eq!(reply_len(b"STOR"), Ok(None));
        assert!(reply_len(b"SERVER_ERROR out of memory\r\n").is_err());
    }

    #[test]
    fn summary_line_round_trips() {
        let summary = Summary {
            requests_per_second: 1234.0,
            p50_ms: 0.5,
            p99_ms: 2.25,
        };
        assert_eq!(Summary::parse(&summary.line()), Some(summary));
    }
}
