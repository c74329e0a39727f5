use std::net::SocketAddr;

use super::{is_root, loopback, workdir, START_TIMEOUT};
use crate::error::Result;
use crate::probe::memcached_version;
use crate::process::{find_binary, ServerProcess, Spec};

/// A `memcached` (Debian package `memcached`) with 64 MiB of memory.
#[derive(Debug)]
pub struct Memcached {
    pub addr: SocketAddr,
    process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl Memcached {
    /// Starts a server on a free port.
    pub fn start() -> Result<Memcached> {
        let program = find_binary("memcached", "memcached")?;
        let dir = workdir("memcached")?;
        let addr = loopback();
        let mut spec = Spec::new(
            format!("memcached {addr}"),
            program,
            dir.path().join("memcached.log"),
        )
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ]);
        if is_root() {
            spec = spec.args(["-u", "nobody"]);
        }
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || memcached_version(addr))?;
        Ok(Memcached {
            addr,
            process,
            _dir: dir,
        })
    }

    /// The running process, to stop, kill or signal it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Starts the server again on the same port (empty, as memcached keeps nothing).
    pub fn restart(&mut self) -> Result<()> {
        self.process.restart_process()?;
        let addr = self.addr;
        self.process
            .wait_ready(START_TIMEOUT, || memcached_version(addr))
    }
}
