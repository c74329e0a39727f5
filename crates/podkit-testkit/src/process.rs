//! A server process owned by a handle: its own process group, its output in a log file,
//! killed with its whole group when the handle drops.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Where Debian puts binaries that are not always on a test runner's PATH.
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Finds `binary` on PATH, in the sbin directories, or in PostgreSQL's versioned
/// directory; the error names the Debian `package` that provides it.
pub fn find_binary(binary: &'static str, package: &'static str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(EXTRA_DIRS.iter().map(PathBuf::from));
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter()
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .ok_or(Error::Missing { binary, package })
}

/// How to start (and restart) a server.
#[derive(Debug, Clone)]
pub struct Spec {
    /// A name for messages, e.g. `redis-server :6379`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub dir: Option<PathBuf>,
    /// Run as this user id and group id (PostgreSQL refuses to run as root).
    pub user: Option<(u32, u32)>,
    /// The signal that asks the server to stop quickly.
    pub stop_signal: Signal,
    /// Where the server's stdout and stderr go.
    pub log: PathBuf,
}

impl Spec {
    /// A spec for `program` writing its output to `log`.
    pub fn new(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Spec {
        Spec {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            user: None,
            stop_signal: Signal::SIGTERM,
            log: log.into(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Spec {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running server; dropping it stops the server and every process of its group.
#[derive(Debug)]
pub struct ServerProcess {
    spec: Spec,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts the process described by `spec` in a new process group.
    pub fn spawn(spec: Spec) -> Result<ServerProcess> {
        let mut process = ServerProcess { spec, child: None };
        process.start()?;
        Ok(process)
    }

    fn start(&mut self) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(Error::io(format!("{}: open log", self.spec.name)))?;
        let log2 = log
            .try_clone()
            .map_err(Error::io(format!("{}: open log", self.spec.name)))?;
        let mut command = Command::new(&self.spec.program);
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        if let Some(dir) = &self.spec.dir {
            command.current_dir(dir);
        }
        if let Some((uid, gid)) = self.spec.user {
            command.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child
        // when the thread that started it dies, so a crashed test leaves no server behind.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(Error::io(format!(
            "{}: spawn {}",
            self.spec.name,
            self.spec.program.display()
        )))?;
        self.child = Some(child);
        Ok(())
    }

    /// The server's process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The spec it was started from.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Waits until `ready` returns true, checking that the process is still alive.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(Error::Exited {
                        server: self.spec.name.clone(),
                        status: status.to_string(),
                        log_tail: self.log_tail(),
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    server: self.spec.name.clone(),
                    seconds: timeout.as_secs(),
                    log_tail: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last lines of the server's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.spec.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sends `signal` to the server's whole process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = killpg(Pid::from_raw(pid as i32), signal);
        }
    }

    /// Stops the server: its stop signal, up to 10 s, then SIGKILL to the whole group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = Pid::from_raw(child.id() as i32);
        let _ = killpg(group, self.spec.stop_signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (workers of a master that died) goes too.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
        wait_group_gone(group, Duration::from_secs(5));
    }

    /// Kills the server at once with SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = Pid::from_raw(child.id() as i32);
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            wait_group_gone(group, Duration::from_secs(5));
        }
    }

    /// Sends `signal` to the server's main process only.
    pub fn signal_main(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// Sends `signal` to the server alone (not its group) and waits up to `timeout` for it
    /// to exit; returns its exit status, or `None` if it is still running.
    pub fn signal_and_wait(
        &mut self,
        signal: Signal,
        timeout: Duration,
    ) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let group = Pid::from_raw(child.id() as i32);
                self.child = None;
                let _ = killpg(group, Signal::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Starts the server again from the same spec (same ports, same data).
    pub fn restart_process(&mut self) -> Result<()> {
        self.stop();
        self.start()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether any process still belongs to process group `group`.
pub fn group_alive(group: i32) -> bool {
    // Signal 0 checks existence; ESRCH means no member is left.
    killpg(Pid::from_raw(group), None).is_ok() && group_has_members(group)
}

fn group_has_members(group: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
    })
}

fn wait_group_gone(group: Pid, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while group_alive(group.as_raw()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Creates `dir` (and parents).
pub(crate) fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))
}

/// Writes `text` to `path`.
pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(Error::io(format!("write {}", path.display())))
}
