//! Running one attempt of one item: the worker interface of chapter 10. The item's data
//! goes into a file made for the attempt (`item-PID-N.json` in the work directory, mode
//! 0600) named by `WORK_ITEM_FILE`; the worker command runs under `/bin/sh -c` in its own
//! process group; exit status 0 is success; past the timeout the whole group is
//! terminated. Its stdout and stderr go to `item-PID-N.out` beside the item file while it
//! runs, and are appended to the item's log when it ends (a silent success leaves no
//! log). Both files are removed afterwards.

use std::io::{Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    // Named by the manager's process id and a counter: an item's name may be longer than
    // a file name can be, and managers given the same --work-dir must not meet.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("item-{}-{seq}", std::process::id());
    let begun = std::time::SystemTime::now();
    let item_file = spec.work_dir.join(format!("{name}.json"));
    let output_file = spec.work_dir.join(format!("{name}.out"));
    let mut data_bytes = serde_json::to_vec(data).map_err(std::io::Error::other)?;
    data_bytes.push(b'\n');
    // Not synced: the file lives only as long as the attempt, and a crash reruns it.
    create_fresh(&item_file, false)?.write_all(&data_bytes)?;
    let result = match create_fresh(&output_file, true) {
        Ok(output) => {
            let result = run_command(spec, item, &item_file, &output).await;
            let _ = std::fs::remove_file(&output_file);
            keep_log(spec, item, attempt, begun, output, &result);
            result
        }
        Err(err) => Err(err),
    };
    let _ = std::fs::remove_file(&item_file);
    result
}

/// Creates a file of this attempt in the work directory (mode 0600): one left by an
/// earlier manager with the same name is replaced, and a work directory removed under a
/// running manager is made again.
fn create_fresh(path: &Path, readable: bool) -> std::io::Result<std::fs::File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(readable)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    match open() {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            open()
        }
        opened => opened,
    }
}

/// Appends what the attempt wrote, with a header and how it ended, to the item's log. A
/// silent success leaves no log.
fn keep_log(
    spec: &WorkerSpec,
    item: &str,
    attempt: u32,
    begun: std::time::SystemTime,
    mut output: std::fs::File,
    result: &std::io::Result<Outcome>,
) {
    let wrote = output.metadata().map_or(0, |m| m.len());
    let footer = match result {
        Ok(Outcome::Done) if wrote == 0 => return,
        Ok(outcome) => format!("--- {}\n", describe(outcome)),
        Err(err) => format!("--- could not run the worker: {err}\n"),
    };
    let path = log_path(&spec.state_dir, item);
    let header = format!(
        "--- {} attempt {attempt} of {item:?}: {SHELL} -c {:?}\n",
        humantime::format_rfc3339_seconds(begun),
        spec.command
    );
    let appended = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            log.write_all(header.as_bytes())?;
            output.seek(std::io::SeekFrom::Start(0))?;
            std::io::copy(&mut output, &mut log)?;
            log.write_all(footer.as_bytes())
        });
    if let Err(err) = appended {
        tracing::warn!(path = %path.display(), error = %err, "cannot write the item's log");
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
    output: &std::fs::File,
) -> std::io::Result<Outcome> {
    // Both stdout and stderr go to one file: the lines keep their order, and nothing in
    // the manager has to copy them while the worker runs.
    let mut child = tokio::process::Command::new(SHELL)
        .arg("-c")
        .arg(&spec.command)
        .env("WORK_ITEM_FILE", item_file)
        .env("WORK_ITEM_NAME", item)
        .stdin(dev_null()?)
        .stdout(output.try_clone()?)
        .stderr(output.try_clone()?)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let reaper = spec.reaper.as_ref().zip(group);
    if let Some((reaper, group)) = reaper {
        reaper.watch(group.as_raw());
    }
    let outcome = wait(spec, &mut child, group).await;
    // `wait` has stopped the whole group.
    if let Some((reaper, group)) = reaper {
        reaper.forget(group.as_raw());
    }
    outcome
}

/// A worker's stdin: `/dev/null`, opened once and duplicated for each worker.
fn dev_null() -> std::io::Result<std::fs::File> {
    static DEV_NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let file = match DEV_NULL.get() {
        Some(file) => file,
        None => {
            let opened = std::fs::File::open("/dev/null")?;
            DEV_NULL.get_or_init(|| opened)
        }
    };
    file.try_clone()
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
