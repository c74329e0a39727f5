//! The podkit binary itself, run as a component under test.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::Result;
use crate::ports::free_port;
use crate::probe::http_get;
use crate::process::{ServerProcess, Spec};
use crate::servers::START_TIMEOUT;

/// A running `podkit` component with its admin endpoint on a free port.
#[derive(Debug)]
pub struct Podkit {
    /// The admin endpoint (`/healthz`, `/readyz`, `/metrics`).
    pub admin: SocketAddr,
    process: ServerProcess,
    dir: tempfile::TempDir,
}

impl Podkit {
    /// Runs `binary args... --admin 127.0.0.1:<free>` and waits until `/healthz` answers.
    pub fn start(binary: &Path, args: &[&str]) -> Result<Podkit> {
        Self::start_with_env(binary, args, &[])
    }

    /// Like [`Podkit::start`] with extra environment variables.
    pub fn start_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Podkit> {
        let dir = crate::servers::workdir("podkit")?;
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut spec = Spec::new(
            format!("podkit {}", args.first().copied().unwrap_or("")),
            binary,
            dir.path().join("podkit.log"),
        )
        .args(args.iter().copied())
        .args(["--admin", &admin.to_string()]);
        for (k, v) in env {
            spec = spec.env(k, v);
        }
        let mut process = ServerProcess::spawn(spec)?;
        process.wait_ready(START_TIMEOUT, || {
            http_get(admin, "/healthz").is_ok_and(|r| r.status == 200)
        })?;
        Ok(Podkit {
            admin,
            process,
            dir,
        })
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self) -> Result<()> {
        let admin = self.admin;
        self.process.wait_ready(START_TIMEOUT, || {
            http_get(admin, "/readyz").is_ok_and(|r| r.status == 200)
        })
    }

    /// Everything the component wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podkit.log")).unwrap_or_default()
    }

    /// The running process, to signal, stop or kill it.
    pub fn process(&mut self) -> &mut ServerProcess {
        &mut self.process
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process
            .signal_and_wait(nix::sys::signal::Signal::SIGTERM, timeout)
    }
}
