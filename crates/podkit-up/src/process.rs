//! Starting and stopping one process of a pod: its own process group (stops reach every
//! process it started), the kernel kills it if the runner dies (PR_SET_PDEATHSIG), and its
//! output goes line by line to the log multiplexer.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::logs::Logs;

/// A running process.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub pid: u32,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub dir: &'a Path,
    /// `pod/replica/container`, prefixed to every line of output.
    pub prefix: String,
}

impl Process {
    /// Starts the process in a new process group.
    pub fn spawn(launch: Launch<'_>, logs: &Logs) -> std::io::Result<Process> {
        let mut command = Command::new(launch.program);
        // The runner's own PODKIT_* settings (its admin address...) are not its children's.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PODKIT_") {
                command.env_remove(key);
            }
        }
        command
            .args(launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(launch.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe. The kernel then kills the process when the
        // runner's thread (its main thread: the runner runs one thread) ends, even by SIGKILL.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn()?;
        let pid = child.id().unwrap_or(0);
        if let Some(out) = child.stdout.take() {
            forward(out, launch.prefix.clone(), logs.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward(err, launch.prefix, logs.clone());
        }
        Ok(Process { child, pid })
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM to the whole group, `grace` to exit, then SIGKILL to the group.
    pub async fn stop(mut self, grace: Duration) -> Option<ExitStatus> {
        let group = Pid::from_raw(self.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = killpg(group, Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        };
        // Anything the process left behind in its group goes too.
        let _ = killpg(group, Signal::SIGKILL);
        status
    }

    /// SIGKILL to the whole group at once (a failed liveness probe).
    pub fn kill(&self) {
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
    }
}

fn forward(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, prefix: String, logs: Logs) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.line(&prefix, line);
        }
    });
}
