//! `podkit queue status` and `podkit queue retry`: reading and amending a manager's state
//! directory from another process, while the manager runs or after it stopped.
//!
//! The manager writes a [`Snapshot`] (`status.json`) at most once a second; when no
//! manager runs, the state database has the durable counts. A retry is recorded in the
//! database directly, or handed to the running manager as a request file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::Event;
use crate::store::{self, ReaderLock, RetryRequest, Store};

/// The file name of the manager's snapshot.
pub const SNAPSHOT: &str = "status.json";

/// What a running manager reports about its queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub pid: u32,
    pub updated: String,
    pub pending: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub parallelism: usize,
    /// Attempts finished per second over the last minute.
    pub rate_per_second: f64,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub eta_seconds: Option<f64>,
}

impl Snapshot {
    /// Writes `status.json` under `dir` (replaced whole, never half-written).
    pub fn write(&self, dir: &Path) {
        let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
        let written = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, dir.join(SNAPSHOT)));
        if let Err(err) = written {
            tracing::warn!(error = %err, "writing status.json failed");
        }
    }

    /// The lines `podkit queue status` prints.
    pub fn render(&self) -> String {
        let secs = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.3}s"));
        let total = self.total();
        let finished = self.done + self.failed;
        let percent = if total == 0 {
            100.0
        } else {
            finished as f64 * 100.0 / total as f64
        };
        format!(
            "manager pid {} (updated {})\n\
             items: {total} listed, {} pending, {} running, {} done, {} failed ({percent:.1}% finished)\n\
             parallelism: {}\n\
             rate: {:.2} items/s over the last minute; processing p50 {} p90 {} p99 {}\n\
             eta: {}\n",
            self.pid,
            self.updated,
            self.pending,
            self.running,
            self.done,
            self.failed,
            self.parallelism,
            self.rate_per_second,
            secs(self.p50_seconds),
            secs(self.p90_seconds),
            secs(self.p99_seconds),
            self.eta_seconds
                .map_or("-".to_string(), |s| humantime::format_duration(std::time::Duration::from_secs(s.ceil() as u64)).to_string()),
        )
    }
}

/// The flags of `podkit queue status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// The manager's state directory.
    #[arg(long, env = "PODKIT_STATE", value_name = "DIR")]
    pub state: PathBuf,
    /// Attempts the manager allows (to tell failed items from retrying ones when no
    /// manager runs).
    #[arg(
        long,
        env = "PODKIT_MAX_ATTEMPTS",
        default_value_t = 3,
        value_name = "N"
    )]
    pub max_attempts: u32,
    /// Print the snapshot as JSON.
    #[arg(long, env = "PODKIT_JSON")]
    pub json: bool,
    /// Follow the running manager until it stops: a live progress bar on a terminal, a
    /// plain line per interval otherwise.
    #[arg(long, env = "PODKIT_WATCH")]
    pub watch: bool,
    /// How often `--watch` refreshes.
    #[arg(
        long,
        env = "PODKIT_INTERVAL",
        default_value = "1s",
        value_name = "DURATION"
    )]
    pub interval: podkit_core::HumanDuration,
}

/// The flags of `podkit queue retry`.
#[derive(clap::Args, Debug, Clone)]
pub struct RetryArgs {
    /// The manager's state directory.
    #[arg(long, env = "PODKIT_STATE", value_name = "DIR")]
    pub state: PathBuf,
    /// Attempts the manager allows: items with this many failures are the failed ones.
    #[arg(
        long,
        env = "PODKIT_MAX_ATTEMPTS",
        default_value_t = 3,
        value_name = "N"
    )]
    pub max_attempts: u32,
    /// Items to try again; none means every failed item.
    pub items: Vec<String>,
}

/// The snapshot of the manager running on `state`, if one runs.
fn running_snapshot(state: &Path) -> Option<Snapshot> {
    std::fs::read(state.join(SNAPSHOT))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok())
        .filter(|snapshot| Path::new(&format!("/proc/{}", snapshot.pid)).exists())
        .filter(|_| store::manager_running(state))
}

/// Who has a state directory, as `status` and `retry` find it.
enum Holder {
    /// A manager runs on it and reports this.
    Manager(Snapshot),
    /// No manager runs: it is ours until dropped.
    Nobody(ReaderLock),
}

/// Finds who has `state`, waiting a moment for a manager that is starting (no snapshot
/// yet).
fn holder(state: &Path) -> Result<Holder, String> {
    if !state.is_dir() {
        return Err(format!("{}: no such state directory", state.display()));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(snapshot) = running_snapshot(state) {
            return Ok(Holder::Manager(snapshot));
        }
        let lock = ReaderLock::take(state).map_err(|e| format!("{}: {e}", state.display()))?;
        if let Some(lock) = lock {
            return Ok(Holder::Nobody(lock));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{}: a manager holds it but reports no status",
                state.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Snapshot {
    /// Items listed.
    pub fn total(&self) -> usize {
        self.pending + self.running + self.done + self.failed
    }

    /// One plain line: progress, rate and ETA.
    pub fn line(&self) -> String {
        format!(
            "{}/{} finished ({} done, {} failed), {} running, {:.2} items/s, eta {}",
            self.done + self.failed,
            self.total(),
            self.done,
            self.failed,
            self.running,
            self.rate_per_second,
            self.eta_seconds.map_or("-".to_string(), |s| {
                humantime::format_duration(std::time::Duration::from_secs(s.ceil() as u64))
                    .to_string()
            })
        )
    }
}

/// `podkit queue status --watch`: follows the manager until it stops.
pub fn watch(args: &StatusArgs) -> Result<String, String> {
    use std::io::IsTerminal;
    let Some(mut snapshot) = running_snapshot(&args.state) else {
        return status(args);
    };
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(snapshot.total() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    loop {
        match &bar {
            Some(bar) => {
                bar.set_length(snapshot.total() as u64);
                bar.set_position((snapshot.done + snapshot.failed) as u64);
                bar.set_message(format!(
                    "{} failed, {} running, {:.2}/s, eta {}",
                    snapshot.failed,
                    snapshot.running,
                    snapshot.rate_per_second,
                    snapshot
                        .eta_seconds
                        .map_or("-".into(), |s| format!("{s:.0}s"))
                ));
            }
            None => println!("{}", snapshot.line()),
        }
        std::thread::sleep(args.interval.get());
        match running_snapshot(&args.state) {
            Some(next) => snapshot = next,
            None => break,
        }
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    status(args)
}

/// `podkit queue status`: what a running manager reports, else what the state holds.
pub fn status(args: &StatusArgs) -> Result<String, String> {
    let held = match holder(&args.state)? {
        Holder::Manager(snapshot) => {
            return Ok(if args.json {
                serde_json::to_string_pretty(&snapshot).unwrap_or_default() + "\n"
            } else {
                snapshot.render()
            });
        }
        Holder::Nobody(held) => held,
    };
    let state =
        store::read(&args.state, held).map_err(|e| format!("{}: {e}", args.state.display()))?;
    let (retrying, done, failed) = state.counts(args.max_attempts);
    if args.json {
        return Ok(serde_json::json!({
            "manager": null, "done": done, "failed": failed, "retrying": retrying
        })
        .to_string()
            + "\n");
    }
    let mut out = format!(
        "no manager running; the state holds {done} done, {failed} failed, {retrying} waiting to be retried\n"
    );
    for name in store::failed_items(&state, args.max_attempts)
        .iter()
        .take(20)
    {
        let error = state.items[name].last_error.as_deref().unwrap_or("?");
        out.push_str(&format!("  failed: {name} ({error})\n"));
    }
    Ok(out)
}

/// `podkit queue retry`: makes the named (or all failed) items pending again, in the
/// state database, or through the running manager.
pub fn retry(args: &RetryArgs) -> Result<String, String> {
    let in_dir = |e: &dyn std::fmt::Display| format!("{}: {e}", args.state.display());
    let named = (!args.items.is_empty()).then(|| args.items.clone());
    match holder(&args.state)? {
        Holder::Nobody(held) => {
            let (store, state) = Store::open_held(&args.state, held).map_err(|e| in_dir(&e))?;
            let names = named.unwrap_or_else(|| store::failed_items(&state, args.max_attempts));
            let events: Vec<Event> = names
                .iter()
                .map(|item| Event::Retry { item: item.clone() })
                .collect();
            store.record(&events).map_err(|e| in_dir(&e))?;
            Ok(format!(
                "{} item(s) will be tried again at the manager's next poll\n",
                names.len()
            ))
        }
        Holder::Manager(snapshot) => {
            let what = named.as_ref().map_or("every failed item".to_string(), |n| {
                format!("{} item(s)", n.len())
            });
            let request = store::hand_over(&args.state, &RetryRequest { items: named })
                .map_err(|e| in_dir(&e))?;
            // The manager removes the request once it has recorded it, at its next poll.
            let deadline = Instant::now() + Duration::from_secs(15);
            while request.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(if request.exists() {
                format!(
                    "{what}: handed to the running manager (pid {}), which records it at its next poll\n",
                    snapshot.pid
                )
            } else {
                format!(
                    "{what}: recorded by the running manager (pid {}); tried again now\n",
                    snapshot.pid
                )
            })
        }
    }
}
