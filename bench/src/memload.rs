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

use crate::loadgen::{flag_pairs, number, on_one_thread, Summary};

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
        for (flag, value) in flag_pairs(args)? {
            match flag {
                "--port" => load.port = number(flag, value)?,
                "--clients" => load.clients = number::<usize>(flag, value)?.max(1),
                "--requests" => load.requests = number(flag, value)?,
                "--pipeline" => load.pipeline = number::<usize>(flag, value)?.max(1),
                "--keyspace" => load.keyspace = number::<usize>(flag, value)?.max(1),
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

/// Runs the load on one thread and summarizes it.
pub fn run(load: &Load) -> Result<Summary, String> {
    on_one_thread(drive(load))
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
    Ok(Summary::of(latencies, started.elapsed()))
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
}
