use std::net::SocketAddr;

use tempfile::TempDir;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::redis_ping;
use crate::process::{find_binary, ServerProcess, Spec};

/// A `redis-server` (Debian package `redis-server`) without persistence.
#[derive(Debug)]
pub struct Redis {
    pub addr: SocketAddr,
    process: ServerProcess,
    /// Whether a password is required (readiness then accepts `-NOAUTH`).
    auth: bool,
    _dir: TempDir,
}

impl Redis {
    /// Starts a server on a free port.
    pub fn start() -> Result<Redis> {
        Self::start_with(&[])
    }

    /// Starts a server with extra arguments (e.g. `["--requirepass", "s3cret"]`).
    pub fn start_with(extra: &[&str]) -> Result<Redis> {
        let program = find_binary("redis-server", "redis-server")?;
        let dir = workdir("redis")?;
        let addr = loopback();
        let port = addr.port().to_string();
        let spec = Spec::new(
            format!("redis-server {addr}"),
            program,
            dir.path().join("redis.log"),
        )
        .args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--daemonize", "no", "--protected-mode", "no"])
        .args([std::ffi::OsStr::new("--dir"), dir.path().as_os_str()])
        .args(extra.iter().copied());
        let mut process = ServerProcess::spawn(spec)?;
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1));
        let auth = password.is_some();
        wait(&mut process, addr, auth)?;
        Ok(Redis {
            addr,
            process,
            auth,
            _dir: dir,
        })
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Starts the server again on the same port after a stop or kill.
    pub fn restart(&mut self) -> Result<()> {
        self.process.restart_process()?;
        wait(&mut self.process, self.addr, self.auth)
    }
}

fn wait(process: &mut ServerProcess, addr: SocketAddr, auth: bool) -> Result<()> {
    process.wait_ready(START_TIMEOUT, || {
        if auth {
            // Without the password PING answers -NOAUTH: the server is up.
            crate::probe::line_exchange(addr, b"PING\r\n").is_ok_and(|l| !l.is_empty())
        } else {
            redis_ping(addr)
        }
    })
}
