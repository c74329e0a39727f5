use std::net::SocketAddr;

use super::{loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::greeting;
use crate::process::{find_binary, ServerProcess, Spec};

/// `nats-server` (Debian package `nats-server`) with JetStream enabled.
#[derive(Debug)]
pub struct Nats {
    pub addr: SocketAddr,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts a server on a free port with JetStream storage in its directory.
    pub fn start() -> Result<Nats> {
        let program = find_binary("nats-server", "nats-server")?;
        let dir = workdir("nats")?;
        let addr = loopback();
        let spec = Spec::new(
            format!("nats-server {addr}"),
            program,
            dir.path().join("nats.log"),
        )
        .args(["-a", "127.0.0.1", "-p", &addr.port().to_string(), "-js"])
        .args([
            std::ffi::OsStr::new("-sd"),
            dir.path().join("jetstream").as_os_str(),
        ]);
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || {
            greeting(addr, 5).is_ok_and(|g| g == b"INFO ")
        })?;
        Ok(Nats {
            addr,
            process,
            _dir: dir,
        })
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }
}
