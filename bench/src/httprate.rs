//! `podkit-bench httprate`: an open-loop HTTP/1.1 load generator, to compare latency at
//! the same request rate (wrk, closed-loop, compares latency at whatever rate each server
//! reaches, so a faster server queues more requests and shows a longer tail).
//!
//! Requests are due at a fixed rate, spread evenly over keep-alive connections. A request
//! that is due while its connection still waits for the previous answer is sent when the
//! connection frees, and its latency is counted from when it was due, not from when it
//! left: a stall shows in the figures instead of slowing the load (what wrk2 calls
//! correcting for coordinated omission). One thread drives every connection.
//!
//! `--timeline FILE` also writes every request as a line `due-ms connection latency-ms`
//! (due time from the start of the run), to see when a tail happened.
//!
//! `--rate max` is a closed loop instead: each connection sends its next request as soon
//! as it has read the last answer, and latency counts from the send. Unlike wrk, which
//! reads 8 KiB per system call and fills its own core before a server does on large
//! bodies, it reads 64 KiB at a time, so that a 1 MiB response measures the server.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::loadgen::{flag_pairs, number, on_one_thread, Summary};

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct Rate {
    pub port: u16,
    pub path: String,
    /// Requests per second, all connections together; `None` for a closed loop.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub connections: usize,
    /// Where to write every request's due time, connection and latency, when asked.
    pub timeline: Option<std::path::PathBuf>,
}

impl Rate {
    /// Reads `--port --path --rate N|max --seconds --connections --timeline`.
    pub fn from_args(args: &[String]) -> Result<Rate, String> {
        let mut rate = Rate {
            port: 0,
            path: "/".into(),
            rate: Some(1000.0),
            duration: Duration::from_secs(5),
            connections: 50,
            timeline: None,
        };
        for (flag, value) in flag_pairs(args)? {
            let positive = || match number::<f64>(flag, value)? {
                n if n > 0.0 => Ok(n),
                _ => Err(format!("{flag}: must be more than 0")),
            };
            match flag {
                "--port" => rate.port = number(flag, value)?,
                "--path" => rate.path = value.to_string(),
                "--rate" if value == "max" => rate.rate = None,
                "--rate" => rate.rate = Some(positive()?),
                "--seconds" => rate.duration = Duration::from_secs_f64(positive()?),
                "--connections" => rate.connections = number::<usize>(flag, value)?.max(1),
                "--timeline" => rate.timeline = Some(value.into()),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if rate.port == 0 {
            return Err("--port is required".into());
        }
        Ok(rate)
    }
}

/// Runs the load on one thread and summarizes it.
pub fn run(rate: &Rate) -> Result<Summary, String> {
    on_one_thread(drive(rate))
}

async fn drive(rate: &Rate) -> Result<Summary, String> {
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    match rate.rate {
        Some(per_second) => {
            let total = (per_second * rate.duration.as_secs_f64()).round() as usize;
            let connections = rate.connections.clamp(1, total.max(1));
            // Connection i sends requests i, i + C, i + 2C, ...: each is due every C / rate.
            let interval = Duration::from_secs_f64(connections as f64 / per_second);
            for i in 0..connections {
                let count = total / connections + usize::from(i < total % connections);
                let first = start + Duration::from_secs_f64(i as f64 / per_second);
                let rate = rate.clone();
                tasks.push(tokio::spawn(async move {
                    one_connection(&rate, first, interval, count).await
                }));
            }
        }
        None => {
            let end = start + rate.duration;
            for _ in 0..rate.connections {
                let rate = rate.clone();
                tasks.push(tokio::spawn(async move {
                    closed_loop_connection(&rate, start, end).await
                }));
            }
        }
    }
    let elapsed_since = |due: Instant| due.saturating_duration_since(start);
    let mut latencies = Vec::new();
    let mut timeline = String::new();
    for (connection, task) in tasks.into_iter().enumerate() {
        for (due, latency) in task.await.map_err(|e| e.to_string())?? {
            if rate.timeline.is_some() {
                timeline.push_str(&format!(
                    "{:.3} {connection} {:.3}\n",
                    elapsed_since(due).as_secs_f64() * 1000.0,
                    latency.as_secs_f64() * 1000.0
                ));
            }
            latencies.push(latency);
        }
    }
    let summary = Summary::of(latencies, start.elapsed());
    if let Some(path) = &rate.timeline {
        std::fs::write(path, timeline).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(summary)
}

/// A connection to the target and the request it sends over and over.
async fn connect(rate: &Rate) -> Result<(TcpStream, String), String> {
    Ok((open(rate.port).await?, get_request(&rate.path, rate.port)))
}

/// A connection to 127.0.0.1:`port`, without Nagle's delay.
async fn open(port: u16) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// `GET path` to 127.0.0.1:`port`, as sent on a keep-alive connection.
fn get_request(path: &str, port: u16) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
}

/// GETs each of `paths` in turn on a keep-alive connection to 127.0.0.1:`port`, reading
/// every answer to its end; returns how many failed (not a 200, or cut short by the
/// server closing the connection). After a failure the next request goes on a new
/// connection.
pub fn get_each(port: u16, paths: impl Iterator<Item = String>) -> Result<u64, String> {
    on_one_thread(async move {
        let mut stream = open(port).await?;
        let mut buf = Vec::with_capacity(64 << 10);
        let mut sink = vec![0u8; 64 << 10];
        let mut failed = 0;
        for path in paths {
            let answered = match stream.write_all(get_request(&path, port).as_bytes()).await {
                Ok(()) => read_response(&mut stream, &mut buf, &mut sink)
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if !answered {
                failed += 1;
                stream = open(port).await?;
            }
        }
        Ok(failed)
    })
}

/// Sends a request as soon as the last is answered, from `start` until `end`; returns
/// when each was sent and how long its answer took.
async fn closed_loop_connection(
    rate: &Rate,
    start: Instant,
    end: Instant,
) -> Result<Vec<(Instant, Duration)>, String> {
    let (mut stream, request) = connect(rate).await?;
    let mut latencies = Vec::new();
    let mut buf = Vec::with_capacity(64 << 10);
    let mut sink = vec![0u8; 64 << 10];
    tokio::time::sleep_until(start.into()).await;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(latencies);
        }
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_response(&mut stream, &mut buf, &mut sink).await?;
        latencies.push((sent, sent.elapsed()));
    }
}

async fn one_connection(
    rate: &Rate,
    first: Instant,
    interval: Duration,
    count: usize,
) -> Result<Vec<(Instant, Duration)>, String> {
    let (mut stream, request) = connect(rate).await?;
    let mut latencies = Vec::with_capacity(count);
    let mut buf = Vec::with_capacity(64 << 10);
    let mut sink = vec![0u8; 64 << 10];
    let mut free_since = Instant::now();
    for n in 0..count {
        let due = first + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        // Late because the server had not answered the last request yet: counted from
        // when it was due. Late because the timer woke after it (its tick is a
        // millisecond): counted from when it left, the generator's delay is not the
        // server's.
        let counted_from = if free_since > due {
            due
        } else {
            Instant::now()
        };
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_response(&mut stream, &mut buf, &mut sink).await?;
        free_since = Instant::now();
        latencies.push((due, free_since - counted_from));
    }
    Ok(latencies)
}

/// Reads one response (status 200, its body sized by `Content-Length`) and discards it.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    sink: &mut [u8],
) -> Result<(), String> {
    buf.clear();
    let (head_len, body_len) = loop {
        if let Some(lengths) = head_lengths(buf)? {
            break lengths;
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("the server closed the connection".into());
        }
    };
    let mut left = (head_len + body_len).saturating_sub(buf.len());
    while left > 0 {
        let room = left.min(sink.len());
        let n = stream
            .read(&mut sink[..room])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection mid-body".into());
        }
        left -= n;
    }
    Ok(())
}

/// When `buf` holds a whole response head: its length and the body's (`Content-Length`).
/// A status other than 200, or a body of unknown length, fails the run.
pub fn head_lengths(buf: &[u8]) -> Result<Option<(usize, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}"));
    }
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| "a response without Content-Length".to_string())?;
    Ok(Some((end + 4, length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_give_their_lengths() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\nx: y\r\n\r\nbody";
        assert_eq!(head_lengths(head), Ok(Some((head.len() - 4, 20))));
        assert_eq!(head_lengths(b"HTTP/1.1 200 OK\r\ncontent-le"), Ok(None));
        assert!(head_lengths(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n").is_err());
        assert!(head_lengths(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }
}
