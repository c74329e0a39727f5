//! Running one attempt of one item: the worker interface of chapter 10. The item's data
//! goes into a file made for the attempt (mode 0600) named by `WORK_ITEM_FILE`; the
//! worker command runs under `sh -c` in its own process group with its output appended
//! to the item's log; exit status 0 is success; past the timeout the whole group is
//! terminated. The file is removed afterwards.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::api::escape_name;

/// How workers are run.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The command line, run by `sh -c`.
    pub command: String,
    /// The state directory: item files under `work/`, logs under `logs/`.
    pub state_dir: PathBuf,
    /// Longest an attempt may run.
    pub timeout: Duration,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Failed, with the reason.
    Failed(String),
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
    serde_json::to_writer(&mut file, data).map_err(std::io::Error::other)?;
    file.write_all(b"\n")?;
    file.sync_data()
}

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
    let work_dir = spec.state_dir.join("work");
    let logs_dir = spec.state_dir.join("logs");
    std::fs::create_dir_all(&work_dir)?;
    std::fs::create_dir_all(&logs_dir)?;
    let item_file = work_dir.join(format!("{}.{attempt}.json", escape_name(item)));
    let _ = std::fs::remove_file(&item_file);
    write_item_file(&item_file, data)?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(&spec.state_dir, item))?;
    writeln!(
        log,
        "--- {} attempt {attempt} of {item:?}: sh -c {:?}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        spec.command
    )?;
    let result = run_command(spec, item, &item_file, &log).await;
    let _ = std::fs::remove_file(&item_file);
    if let Ok(outcome) = &result {
        let _ = writeln!(log, "--- {}", describe(outcome));
    }
    result
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
    log: &std::fs::File,
) -> std::io::Result<Outcome> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&spec.command)
        .env("WORK_ITEM_FILE", item_file)
        .env("WORK_ITEM_NAME", item)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let group = child.id().map(|id| Pid::from_raw(id as i32));
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
                if tokio::time::timeout(Duration::from_secs(5), child.wait())
                    .await
                    .is_err()
                {
                    let _ = killpg(group, Signal::SIGKILL);
                    let _ = child.wait().await;
                }
            }
            Ok(Outcome::Failed(format!(
                "timed out after {}",
                humantime::format_duration(spec.timeout)
            )))
        }
    }
}
