//! Readiness and liveness probes: HTTP GET (2xx or 3xx passes), TCP connect, or a command
//! that exits 0.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spec::Probe;

/// Runs a probe once against a replica whose ports are `ports`.
pub async fn check(probe: &Probe, ports: &BTreeMap<String, u16>) -> bool {
    let timeout = probe.timeout.get();
    let port = |name: &str| {
        name.parse::<u16>()
            .ok()
            .or_else(|| ports.get(name).copied())
    };
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let port = port(&http.port)?;
            return Some(http_get(port, &http.path).await);
        }
        if let Some(tcp) = &probe.tcp_socket {
            let port = port(&tcp.port)?;
            return Some(TcpStream::connect(("127.0.0.1", port)).await.is_ok());
        }
        if let Some(exec) = &probe.exec {
            let (program, args) = exec.command.split_first()?;
            let status = tokio::process::Command::new(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .ok()?;
            return Some(status.success());
        }
        None
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

async fn http_get(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: podkit-up-probe\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).await.is_err() {
        return false;
    }
    // "HTTP/1.1 200"
    let ok = matches!(head.get(9), Some(b'2') | Some(b'3'));
    // Read the rest (up to 64 KiB) as a kubelet does, so that the server sees an orderly
    // close instead of a reset from unread data.
    let mut rest = [0u8; 4096];
    let mut read = 0;
    while read < 64 << 10 {
        match stream.read(&mut rest).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    ok
}

/// Interval and thresholds applied to a sequence of results.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streak {
    successes: u32,
    failures: u32,
}

impl Streak {
    /// Adds a result; returns the new state when a threshold is crossed.
    pub fn record(&mut self, ok: bool, probe: &Probe) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            (self.successes == probe.success_threshold).then_some(true)
        } else {
            self.failures += 1;
            self.successes = 0;
            (self.failures == probe.failure_threshold).then_some(false)
        }
    }
}

/// Probes run every `interval`, never faster than 50 ms.
pub fn interval(probe: &Probe) -> Duration {
    probe.interval.get().max(Duration::from_millis(50))
}
