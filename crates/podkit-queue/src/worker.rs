//! Running one attempt of one item: the worker interface of chapter 10. The item's data
//! goes into a file made for the attempt (mode 0600) named by `WORK_ITEM_FILE`; the
//! worker command runs under `/bin/sh -c` in its own process group with its output
//! appended to the item's log (made on the first line, so a silent success leaves none);
//! exit status 0 is success; past the timeout the whole group is terminated. The file is
//! removed afterwards.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::api::escape_name;

/// How workers are run.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The command line, run by `/bin/sh -c`.
    pub command: String,
    /// The state directory: per-item logs under `logs/`.
    pub state_dir: PathBuf,
    /// Where the attempts' item files are made.
    pub work_dir: PathBuf,
    /// Longest an attempt may run.
    pub timeout: Duration,
    /// Told of each worker's process group, to stop them if the manager dies.
    pub reaper: Option<Arc<crate::reaper::Reaper>>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed, with the reason.
    Failed(String),
}

/// Runs attempts of items: where and how a worker runs. The local-process executor
/// ([`WorkerSpec`]) runs the worker command on this machine; an executor that creates a
/// Kubernetes Job per attempt (labelled with its item) fits the same shape.
pub trait Executor: Send + Sync + 'static {
    /// Runs attempt `attempt` of `item` with its `data`; returns the outcome and how long
    /// the attempt took.
    fn run(
        &self,
        item: &str,
        attempt: u32,
        data: &Value,
    ) -> impl std::future::Future<Output = (Outcome, Duration)> + Send;
}

impl Executor for WorkerSpec {
    async fn run(&self, item: &str, attempt: u32, data: &Value) -> (Outcome, Duration) {
        run_attempt(self, item, attempt, data).await
    }
}

/// Where the log of `item` is kept.
pub fn log_path(state_dir: &Path, item: &str) -> PathBuf {
    state_dir
        .join("logs")
        .join(format!("{}.log", escape_name(item)))
}

fn write_item_file(path: &Path, data: &Value) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // One write (serde_json writes token by token); not synced: the file lives only as
    // long as the attempt, and a crash reruns it.
    let mut bytes = serde_json::to_vec(data).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    file.write_all(&bytes)
}

/// The shell that runs worker commands: `/bin/sh`, as `system(3)` uses, with no search
/// of `PATH` at every spawn.
pub const SHELL: &str = "/bin/sh";

/// Runs attempt `attempt` of `item` with `data`; returns its outcome and duration.
pub async fn run_attempt(
    spec: &WorkerSpec,
    item: &str,
    attempt: u32,
    data: &Value,
) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = match attempt_inner(spec, item, attempt, data).await {
        Ok(outcome) => outcome,
        Err(err) => Outcome::Failed(format!("could not run the worker: {err}")),
    };
    (outcome, started.elapsed())
}

async fn attempt_inner(
    spec: &WorkerSpec,
    item: &str,
    attempt: u32,
    data: &Value,
) -> std::io::Result<Outcome> {
    std::fs::create_dir_all(&spec.work_dir)?;
    // Named by a counter: an item's name may be longer than a file name can be.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let item_file = spec.work_dir.join(format!("item-{seq}.json"));
    let _ = std::fs::remove_file(&item_file);
    write_item_file(&item_file, data)?;
    let log = Arc::new(Mutex::new(ItemLog {
        path: log_path(&spec.state_dir, item),
        header: format!(
            "--- {} attempt {attempt} of {item:?}: {SHELL} -c {:?}\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            spec.command
        ),
        file: None,
    }));
    let result = run_command(spec, item, &item_file, &log).await;
    let _ = std::fs::remove_file(&item_file);
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    match &result {
        // A silent success leaves no log; anything else is kept.
        Ok(Outcome::Done) if log.file.is_none() => {}
        Ok(outcome) => log.write(format!("--- {}\n", describe(outcome)).as_bytes()),
        Err(err) => log.write(format!("--- could not run the worker: {err}\n").as_bytes()),
    }
    result
}

/// An item's log, created on its first line.
struct ItemLog {
    path: PathBuf,
    header: String,
    file: Option<std::fs::File>,
}

impl ItemLog {
    fn write(&mut self, bytes: &[u8]) {
        if self.file.is_none() {
            let opened = self
                .path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)
                });
            match opened {
                Ok(mut file) => {
                    let _ = file.write_all(self.header.as_bytes());
                    self.file = Some(file);
                }
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), error = %err, "cannot write the item's log");
                    return;
                }
            }
        }
        if let Some(file) = self.file.as_mut() {
            let _ = file.write_all(bytes);
        }
    }
}

/// Copies a worker's output into its log.
async fn copy_output(mut from: impl tokio::io::AsyncRead + Unpin, log: Arc<Mutex<ItemLog>>) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&buf[..n]);
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done => "done".into(),
        Outcome::Failed(reason) => format!("failed: {reason}"),
    }
}

async fn run_command(
    spec: &WorkerSpec,
    item: &str,
    item_file: &Path,
    log: &Arc<Mutex<ItemLog>>,
) -> std::io::Result<Outcome> {
    // One pipe for both stdout and stderr: the lines keep their order, and an attempt
    // costs one pipe and one copy rather than two.
    let (output, output_writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    let mut child = tokio::process::Command::new(SHELL)
        .arg("-c")
        .arg(&spec.command)
        .env("WORK_ITEM_FILE", item_file)
        .env("WORK_ITEM_NAME", item)
        .stdin(Stdio::null())
        .stdout(Stdio::from(output_writer.try_clone()?))
        .stderr(Stdio::from(output_writer))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let reaper = spec.reaper.as_ref().zip(group);
    if let Some((reaper, group)) = reaper {
        reaper.watch(group.as_raw());
    }
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(output)?;
    let copies = vec![tokio::spawn(copy_output(output, log.clone()))];
    let outcome = wait(spec, &mut child, group).await;
    // `wait` has stopped the whole group.
    if let Some((reaper, group)) = reaper {
        reaper.forget(group.as_raw());
    }
    // The group is gone, so the pipes are closed, unless a descendant left the group with
    // them: its output is not waited for long.
    for mut copy in copies {
        if tokio::time::timeout(Duration::from_secs(2), &mut copy)
            .await
            .is_err()
        {
            copy.abort();
        }
    }
    outcome
}

/// Waits for the worker within the timeout; stops its whole process group after.
async fn wait(
    spec: &WorkerSpec,
    child: &mut tokio::process::Child,
    group: Option<Pid>,
) -> std::io::Result<Outcome> {
    match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(status) => {
            let status = status?;
            // Whatever the worker left running in its group goes with it.
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            Ok(if status.success() {
                Outcome::Done
            } else {
                Outcome::Failed(match status.code() {
                    Some(code) => format!("exit status {code}"),
                    None => format!("ended by {status}"),
                })
            })
        }
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGTERM);
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                // Whatever ignored SIGTERM, or outlived the shell, goes now.
                let _ = killpg(group, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            Ok(Outcome::Failed(format!(
                "timed out after {}",
                humantime::format_duration(spec.timeout)
            )))
        }
    }
}
