//! `podkit queue run`: chapter 10's shared work-queue manager. Every `--poll` it lists the
//! source's items, sets aside those already done or out of attempts (a set lookup per
//! item, not the book's scan of every job per item), and runs workers for the rest, up to
//! the parallelism. Each outcome is committed to the state database ([`crate::store`])
//! and synced before it is logged or counted (outcomes that finish together share one
//! commit, done on a blocking thread while the loop starts the next workers); failed attempts are retried with exponential
//! back-off, then parked as failed. After a crash, items that were running, or finished
//! but not yet synced, run again: processing is at least once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podkit_core::component::{ComponentError, Context};
use podkit_core::{ConfigError, HumanDuration};
use tokio::task::JoinSet;

use crate::autoscale::{self, Bounds, Mean};
use crate::client::{Source, SourceError};
use crate::metrics::{OutcomeLabel, QueueMetrics, StateLabel};
use crate::prefetch::Prefetch;
use crate::state::{Event, Standing, State};
use crate::status::Snapshot;
use crate::store::{ManagerLock, Store, StoreError};
use crate::worker::{Executor, Outcome, WorkerSpec};

/// `--parallelism N` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    Fixed(usize),
    Auto,
}

impl FromStr for Parallelism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Parallelism::Auto),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Parallelism::Fixed(n)),
                _ => Err(format!(
                    "expected a number of workers (1 or more) or 'auto', got '{s}'"
                )),
            },
        }
    }
}

/// The flags of `podkit queue run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The work-queue source (`http://127.0.0.1:8000`): its `/api/v1/items` is listed.
    #[arg(long, env = "PODKIT_SOURCE", value_name = "URL")]
    pub source: String,
    /// The worker command, run by `/bin/sh -c` once per item with `WORK_ITEM_FILE` set.
    #[arg(long, env = "PODKIT_WORKER", value_name = "COMMAND")]
    pub worker: String,
    /// Directory of the durable state (a fjall database), item files and per-item logs.
    #[arg(long, env = "PODKIT_STATE", value_name = "DIR")]
    pub state: PathBuf,
    /// Workers at once: a number, or `auto` to follow the arrival rate (see --min, --max).
    #[arg(
        long,
        env = "PODKIT_PARALLELISM",
        default_value = "1",
        value_name = "N|auto"
    )]
    pub parallelism: Parallelism,
    /// Fewest workers under `--parallelism auto`.
    #[arg(long, env = "PODKIT_MIN", default_value_t = 1, value_name = "N")]
    pub min: usize,
    /// Most workers under `--parallelism auto`.
    #[arg(long, env = "PODKIT_MAX", default_value_t = 16, value_name = "N")]
    pub max: usize,
    /// Attempts per item before it is parked as failed (`podkit queue retry` revives it).
    #[arg(
        long,
        env = "PODKIT_MAX_ATTEMPTS",
        default_value_t = 3,
        value_name = "N"
    )]
    pub max_attempts: u32,
    /// Longest a worker may run; then its process group is terminated.
    #[arg(
        long,
        env = "PODKIT_TIMEOUT",
        default_value = "10m",
        value_name = "DURATION"
    )]
    pub timeout: HumanDuration,
    /// How often the source is listed.
    #[arg(
        long,
        env = "PODKIT_POLL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub poll: HumanDuration,
    /// Wait before the first retry of a failed item; doubled for each further one (at
    /// most 5m).
    #[arg(
        long,
        env = "PODKIT_RETRY_BACKOFF",
        default_value = "1s",
        value_name = "DURATION"
    )]
    pub retry_backoff: HumanDuration,
    /// Where the item files of attempts, and their output while they run, are made
    /// (default: a directory of this manager under /dev/shm when there is one, else work/
    /// under --state).
    #[arg(long, env = "PODKIT_WORK_DIR", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Run as a batch job: exit once every listed item is done (0) or failed (1).
    #[arg(long, env = "PODKIT_EXIT_WHEN_DONE")]
    pub exit_when_done: bool,
}

impl RunArgs {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.source.starts_with("http://") {
            return Err(ConfigError::flag(
                "--source",
                format!("'{}': expected an http:// URL", self.source),
            ));
        }
        if self.worker.trim().is_empty() {
            return Err(ConfigError::flag("--worker", "the command is empty"));
        }
        if self.min == 0 || self.min > self.max {
            return Err(ConfigError::flag(
                "--min",
                format!(
                    "{} must be at least 1 and at most --max {}",
                    self.min, self.max
                ),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::flag("--max-attempts", "must be at least 1"));
        }
        if self.poll.get().is_zero() {
            return Err(ConfigError::flag("--poll", "must be more than 0s"));
        }
        Ok(())
    }
}

/// What a finished task reports.
struct Finished {
    item: String,
    attempt: u32,
    result: Result<(Outcome, Duration), SourceError>,
}

/// The manager's working memory beside the durable state.
struct Queue {
    state: State,
    /// Items waiting for a worker, in listing order.
    ready: VecDeque<String>,
    /// Items waiting for their retry time.
    delayed: BinaryHeap<Reverse<(Instant, String)>>,
    /// Items in `ready`, `delayed` or running.
    queued: HashSet<String>,
    running: HashMap<String, u32>,
    /// Every name listed since start, to tell new items.
    seen: HashSet<String>,
    /// The last listing, for `--exit-when-done`.
    listed: Option<Vec<String>>,
    parallelism: usize,
    interarrival: Mean,
    last_arrival: Instant,
    processing: Mean,
    recent: VecDeque<(Instant, f64)>,
    started: Instant,
}

const RECENT: usize = 1000;

impl Queue {
    fn standing(&self, item: &str, max_attempts: u32) -> Standing {
        self.state
            .items
            .get(item)
            .map_or(Standing::Pending, |r| r.standing(max_attempts))
    }

    /// Takes a listing: new and revived items join the ready queue.
    fn take_listing(&mut self, names: Vec<String>, max_attempts: u32) -> usize {
        let mut new = 0;
        for name in &names {
            if self.seen.insert(name.clone()) {
                new += 1;
            }
            if !self.queued.contains(name) && self.standing(name, max_attempts) == Standing::Pending
            {
                self.queued.insert(name.clone());
                self.ready.push_back(name.clone());
            }
        }
        self.listed = Some(names);
        new
    }

    fn promote_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.delayed.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, item))) = self.delayed.pop() else {
                break;
            };
            self.ready.push_back(item);
        }
    }

    fn next_retry(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse((at, _))| *at)
    }

    /// Whether every item of the last listing is done or failed, with nothing running.
    fn finished(&self, max_attempts: u32) -> Option<Vec<String>> {
        let listed = self.listed.as_ref()?;
        if !self.running.is_empty() || !self.ready.is_empty() || !self.delayed.is_empty() {
            return None;
        }
        let mut failed = Vec::new();
        for name in listed {
            match self.standing(name, max_attempts) {
                Standing::Done => {}
                Standing::Failed => failed.push(name.clone()),
                Standing::Pending => return None,
            }
        }
        Some(failed)
    }

    fn snapshot(&self, max_attempts: u32) -> Snapshot {
        let now = Instant::now();
        let listed: &[String] = self.listed.as_deref().unwrap_or(&[]);
        let (mut pending, mut done, mut failed) = (0usize, 0usize, 0usize);
        for name in listed {
            match self.standing(name, max_attempts) {
                Standing::Pending => pending += 1,
                Standing::Done => done += 1,
                Standing::Failed => failed += 1,
            }
        }
        let running = self.running.len();
        let minute: Vec<f64> = self
            .recent
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= Duration::from_secs(60))
            .map(|(_, secs)| *secs)
            .collect();
        let window = now
            .duration_since(self.started)
            .min(Duration::from_secs(60));
        let rate = minute.len() as f64 / window.as_secs_f64().max(1.0);
        let mut times: Vec<f64> = self.recent.iter().map(|(_, s)| *s).collect();
        times.sort_by(f64::total_cmp);
        let percentile = |p: f64| {
            (!times.is_empty()).then(|| times[((times.len() - 1) as f64 * p).round() as usize])
        };
        Snapshot {
            pid: std::process::id(),
            updated: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            pending: pending.saturating_sub(running),
            running,
            done,
            failed,
            parallelism: self.parallelism,
            rate_per_second: rate,
            p50_seconds: percentile(0.5),
            p90_seconds: percentile(0.9),
            p99_seconds: percentile(0.99),
            eta_seconds: (rate > 0.0).then(|| pending as f64 / rate),
        }
    }
}

fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    (base * factor).min(Duration::from_secs(300))
}

/// Runs the manager until shutdown (or, with `--exit-when-done`, until the batch ends).
pub async fn run(args: RunArgs, ctx: Context) -> Result<(), ComponentError> {
    args.validate()?;
    let held = ManagerLock::take(&args.state)
        .map_err(|e| ComponentError::runtime(format!("--state {}: {e}", args.state.display())))?;
    let (store, state) = Store::open_held(&args.state, held)
        .map_err(|e| ComponentError::runtime(format!("--state {}: {e}", args.state.display())))?;
    let source = Source::new(&args.source, Duration::from_secs(30));
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        let shm = std::path::Path::new("/dev/shm");
        if shm.is_dir() {
            remove_abandoned_work_dirs(shm);
            shm.join(format!("podkit-queue-{}", std::process::id()))
        } else {
            args.state.join("work")
        }
    });
    // A directory of our own goes when the manager does.
    let _cleanup = RemoveOnDrop(args.work_dir.is_none().then(|| work_dir.clone()));
    std::fs::create_dir_all(&work_dir).map_err(|e| {
        ComponentError::runtime(format!("work directory {}: {e}", work_dir.display()))
    })?;
    let spec = Arc::new(WorkerSpec {
        command: args.worker.clone(),
        state_dir: args.state.clone(),
        work_dir: work_dir.clone(),
        timeout: args.timeout.get(),
        reaper: match crate::reaper::Reaper::start() {
            Ok(reaper) => Some(Arc::new(reaper)),
            Err(e) => {
                tracing::warn!(error = %e, "no reaper: workers will outlive a killed manager");
                None
            }
        },
    });
    let metrics = QueueMetrics::register(&ctx.metrics);
    let bounds = Bounds {
        min: args.min,
        max: args.max,
    };
    let parallelism = match args.parallelism {
        Parallelism::Fixed(n) => n,
        Parallelism::Auto => args.min,
    };
    let now = Instant::now();
    let mut queue = Queue {
        state,
        ready: VecDeque::new(),
        delayed: BinaryHeap::new(),
        queued: HashSet::new(),
        running: HashMap::new(),
        seen: HashSet::new(),
        listed: None,
        parallelism,
        interarrival: Mean::default(),
        last_arrival: now,
        processing: Mean::default(),
        recent: VecDeque::new(),
        started: now,
    };
    metrics.parallelism.set(parallelism as i64);
    tracing::info!(
        source = %source.base(),
        state = %args.state.display(),
        remembered = queue.state.items.len(),
        "work queue started"
    );
    ctx.started();

    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut task_items: HashMap<tokio::task::Id, (String, u32)> = HashMap::new();
    let mut prefetch = Prefetch::default();
    let mut listing: Option<tokio::task::JoinHandle<Result<Vec<String>, SourceError>>> = None;
    // Outcomes waiting for the next sync, and the sync under way.
    let mut unsynced: Vec<Finished> = Vec::new();
    let mut syncing: Option<Sync> = None;
    let mut poll = tokio::time::interval(args.poll.get());
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_snapshot = Instant::now()
        .checked_sub(Duration::from_secs(10))
        .unwrap_or_else(Instant::now);
    let mut stopping = false;
    // Retry requests seen while a sync was under way, taken when it is acknowledged.
    let mut requests_waiting = false;
    loop {
        let retry_at = queue.next_retry();
        tokio::select! {
            _ = poll.tick(), if !stopping => {
                // Retries asked for by `podkit queue retry` while the manager runs. Not
                // while outcomes are being synced: a request then waits for them, so
                // that it sees (and revives) an item whose last attempt just failed, and
                // the state on disk and in memory take the two in the same order.
                if syncing.is_none() {
                    take_retry_requests(&store, &args, &mut queue)?;
                } else {
                    requests_waiting = true;
                }
                // The listing runs beside the loop: workers keep being recorded and
                // replaced, and shutdown noticed, while a slow source answers.
                if listing.is_none() {
                    let source = source.clone();
                    listing = Some(tokio::spawn(async move { source.list().await }));
                }
                if args.parallelism == Parallelism::Auto {
                    let since = Instant::now().duration_since(queue.last_arrival);
                    let interarrival = queue.interarrival.get().map(|m| m.max(since));
                    let decided = autoscale::decide(queue.parallelism, interarrival, queue.processing.get(), bounds);
                    if decided != queue.parallelism {
                        tracing::info!(from = queue.parallelism, to = decided, "parallelism changed");
                        queue.parallelism = decided;
                        metrics.parallelism.set(decided as i64);
                    }
                    if let Some(mean) = interarrival {
                        metrics.interarrival.set(mean.as_secs_f64());
                    }
                }
            }
            listed = async { listing.as_mut().expect("guarded").await }, if listing.is_some() => {
                listing = None;
                match listed {
                    Ok(Ok(names)) => {
                        let new = queue.take_listing(names, args.max_attempts);
                        let now = Instant::now();
                        if new > 0 {
                            let gap = now.duration_since(queue.last_arrival) / new as u32;
                            queue.interarrival.add(gap);
                            queue.last_arrival = now;
                            tracing::info!(new, "new items listed");
                        }
                    }
                    Ok(Err(err)) => {
                        metrics.source_errors.inc();
                        tracing::warn!(error = %err, "listing the source failed; state kept, trying again at the next poll");
                    }
                    Err(err) => tracing::error!(error = %err, "the listing task failed"),
                }
            }
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let mut batch = vec![joined];
                while let Some(more) = tasks.try_join_next_with_id() {
                    batch.push(more);
                }
                let finished: Vec<Finished> = batch
                    .into_iter()
                    .map(|joined| match joined {
                        Ok((id, finished)) => {
                            task_items.remove(&id);
                            finished
                        }
                        Err(err) => {
                            // A task that panicked still settles its item, as a failure.
                            tracing::error!(error = %err, "a worker task failed");
                            let (item, attempt) = task_items.remove(&err.id()).unwrap_or_default();
                            Finished {
                                item,
                                attempt,
                                result: Ok((Outcome::Failed(format!("the manager's task failed: {err}")), Duration::ZERO)),
                            }
                        }
                    })
                    .filter(|f| !f.item.is_empty())
                    .collect();
                // The freed workers start on the next items while the outcomes are synced.
                for f in &finished {
                    queue.running.remove(&f.item);
                }
                if !stopping {
                    launch(&mut queue, &mut tasks, &mut task_items, &source, &spec, &mut prefetch);
                }
                unsynced.extend(finished);
                start_sync(&store, &mut unsynced, &mut syncing);
            }
            synced = async { (&mut syncing.as_mut().expect("guarded").handle).await }, if syncing.is_some() => {
                let Some(batch) = syncing.take() else { continue };
                synced
                    .map_err(|e| ComponentError::runtime(format!("state: {e}")))?
                    .map_err(|e| ComponentError::runtime(format!("state: {e}")))?;
                acknowledge(&mut queue, batch.finished, &batch.events, &args, &metrics);
                if std::mem::take(&mut requests_waiting) {
                    take_retry_requests(&store, &args, &mut queue)?;
                }
                start_sync(&store, &mut unsynced, &mut syncing);
            }
            _ = sleep_until(retry_at), if retry_at.is_some() && !stopping => {}
            _ = ctx.shutdown.triggered(), if !stopping => {
                stopping = true;
                tracing::info!(running = queue.running.len(), "stopping: waiting for running workers");
            }
        }
        if stopping {
            if tasks.is_empty() && syncing.is_none() && unsynced.is_empty() {
                break;
            }
            continue;
        }
        launch(
            &mut queue,
            &mut tasks,
            &mut task_items,
            &source,
            &spec,
            &mut prefetch,
        );
        if queue.running.is_empty() {
            if let Some(reaper) = &spec.reaper {
                reaper.flush();
            }
        }
        // Counting every listed item is O(items): at most once a second.
        if last_snapshot.elapsed() >= Duration::from_secs(1) {
            last_snapshot = Instant::now();
            let snapshot = queue.snapshot(args.max_attempts);
            update_gauges(&snapshot, &metrics);
            snapshot.write(&args.state);
        }
        if args.exit_when_done && syncing.is_none() && unsynced.is_empty() {
            if let Some(failed) = queue.finished(args.max_attempts) {
                queue.snapshot(args.max_attempts).write(&args.state);
                if failed.is_empty() {
                    tracing::info!(
                        items = queue.listed.as_ref().map_or(0, Vec::len),
                        "every item is done"
                    );
                    return Ok(());
                }
                let shown: Vec<&str> = failed.iter().take(10).map(String::as_str).collect();
                return Err(ComponentError::runtime(format!(
                    "{} item(s) failed after {} attempt(s): {}{}",
                    failed.len(),
                    args.max_attempts,
                    shown.join(", "),
                    if failed.len() > shown.len() {
                        ", ..."
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    queue.snapshot(args.max_attempts).write(&args.state);
    if args.exit_when_done {
        // A batch stopped before its end has not succeeded (a Job must not count it done).
        return Err(ComponentError::runtime(
            "stopped before every item was done; run again to finish the batch",
        ));
    }
    Ok(())
}

/// Removes the item-file directories that managers killed before they could clean up left
/// under `shm` (their process is gone).
fn remove_abandoned_work_dirs(shm: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(shm) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("podkit-queue-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes a directory when dropped.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts workers on ready items, up to the parallelism.
fn launch<E: Executor>(
    queue: &mut Queue,
    tasks: &mut JoinSet<Finished>,
    task_items: &mut HashMap<tokio::task::Id, (String, u32)>,
    source: &Source,
    executor: &Arc<E>,
    prefetch: &mut Prefetch,
) {
    queue.promote_due(Instant::now());
    while queue.running.len() < queue.parallelism {
        let Some(item) = queue.ready.pop_front() else {
            break;
        };
        let failures = queue.state.items.get(&item).map_or(0, |r| r.failures);
        let attempt = failures + 1;
        queue.running.insert(item.clone(), attempt);
        let fetch = prefetch.take(&item, source);
        let base = source.base().to_string();
        let executor = executor.clone();
        let name = item.clone();
        let handle = tasks.spawn(async move {
            let fetched = fetch.await.unwrap_or_else(|e| {
                Err(SourceError::Unreachable {
                    url: base,
                    message: e.to_string(),
                })
            });
            let result = match fetched {
                Ok(data) => Ok(executor.run(&item, attempt, &data).await),
                Err(err) if err.is_the_items_fault() => Ok((
                    Outcome::Failed(format!("the source: {err}")),
                    Duration::ZERO,
                )),
                // The source is down: tried again later, not counted as an attempt.
                Err(err) => Err(err),
            };
            Finished {
                item,
                attempt,
                result,
            }
        });
        task_items.insert(handle.id(), (name, attempt));
    }
    // The next items' data is fetched while these run.
    prefetch.ahead(queue.ready.iter(), source, queue.parallelism);
}

/// A sync of outcomes under way on a blocking thread.
struct Sync {
    finished: Vec<Finished>,
    events: Vec<Event>,
    handle: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// The events that record what finished (nothing for a fetch that will be tried again).
fn events_of(finished: &[Finished]) -> Vec<Event> {
    let mut events = Vec::new();
    for f in finished {
        if let Ok((outcome, took)) = &f.result {
            let secs = took.as_secs_f64();
            events.push(match outcome {
                Outcome::Done => Event::Done {
                    item: f.item.clone(),
                    attempt: f.attempt,
                    secs,
                },
                Outcome::Failed(reason) => Event::Failed {
                    item: f.item.clone(),
                    attempt: f.attempt,
                    reason: reason.clone(),
                    secs,
                },
            });
        }
    }
    events
}

/// Records and applies the requests of `podkit queue retry` waiting in the state
/// directory.
fn take_retry_requests(
    store: &Store,
    args: &RunArgs,
    queue: &mut Queue,
) -> Result<(), ComponentError> {
    let revived = store
        .take_requests(&args.state, &mut queue.state, args.max_attempts)
        .map_err(|err| ComponentError::runtime(format!("state: {err}")))?;
    if !revived.is_empty() {
        tracing::info!(items = revived.len(), "items revived by a retry request");
    }
    Ok(())
}

/// Starts syncing every waiting outcome in one transaction (group commit), unless
/// a sync is already under way: outcomes that finish meanwhile go in the next one. The
/// loop goes on starting workers while the disk works.
fn start_sync(store: &Store, unsynced: &mut Vec<Finished>, syncing: &mut Option<Sync>) {
    if syncing.is_some() || unsynced.is_empty() {
        return;
    }
    let finished = std::mem::take(unsynced);
    let events = events_of(&finished);
    let to_write = events.clone();
    let store = store.clone();
    let handle = tokio::task::spawn_blocking(move || store.record(&to_write));
    *syncing = Some(Sync {
        finished,
        events,
        handle,
    });
}

/// Acknowledges outcomes now synced: the state, logs, metrics and retries.
fn acknowledge(
    queue: &mut Queue,
    finished: Vec<Finished>,
    events: &[Event],
    args: &RunArgs,
    metrics: &QueueMetrics,
) {
    for event in events {
        queue.state.apply(event);
    }
    let now = Instant::now();
    for f in finished {
        queue.running.remove(&f.item);
        match f.result {
            Err(err) => {
                metrics.source_errors.inc();
                tracing::warn!(item = %f.item, error = %err, "fetching the item failed; trying again at the next poll");
                queue.delayed.push(Reverse((now + args.poll.get(), f.item)));
            }
            Ok((outcome, took)) => {
                queue.processing.add(took);
                queue.recent.push_back((now, took.as_secs_f64()));
                if queue.recent.len() > RECENT {
                    queue.recent.pop_front();
                }
                metrics.processing.observe(took.as_secs_f64());
                match outcome {
                    Outcome::Done => {
                        metrics
                            .attempts
                            .get_or_create(&OutcomeLabel { outcome: "done" })
                            .inc();
                        queue.queued.remove(&f.item);
                        tracing::info!(item = %f.item, attempt = f.attempt, seconds = took.as_secs_f64(), "item done");
                    }
                    Outcome::Failed(reason) => {
                        metrics
                            .attempts
                            .get_or_create(&OutcomeLabel { outcome: "failed" })
                            .inc();
                        if f.attempt >= args.max_attempts {
                            queue.queued.remove(&f.item);
                            tracing::error!(item = %f.item, attempts = f.attempt, %reason, "item failed: out of attempts (podkit queue retry revives it)");
                        } else {
                            let wait = backoff(args.retry_backoff.get(), f.attempt);
                            tracing::warn!(item = %f.item, attempt = f.attempt, %reason, retry_in = %humantime::format_duration(wait), "attempt failed");
                            queue.delayed.push(Reverse((now + wait, f.item)));
                        }
                    }
                }
            }
        }
    }
}

fn update_gauges(snapshot: &Snapshot, metrics: &QueueMetrics) {
    for (state, value) in [
        ("pending", snapshot.pending),
        ("running", snapshot.running),
        ("done", snapshot.done),
        ("failed", snapshot.failed),
    ] {
        metrics
            .items
            .get_or_create(&StateLabel { state })
            .set(value as i64);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallelism_flag() {
        assert_eq!("auto".parse(), Ok(Parallelism::Auto));
        assert_eq!("4".parse(), Ok(Parallelism::Fixed(4)));
        assert!("0".parse::<Parallelism>().is_err());
        assert!("many".parse::<Parallelism>().is_err());
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = [1, 2, 3, 10, 30]
            .iter()
            .map(|&n| backoff(base, n).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 300, 300]);
    }
}
