//! The manager's durable state: a fjall keyspace (`db/` under `--state`, an LSM tree with
//! a write-ahead journal) with one row per item, what [`Remembered`] holds. A batch of
//! outcomes is committed and its journal synced (`fdatasync`) before the outcomes are
//! acknowledged in logs or metrics.
//!
//! One process at a time opens the database: the manager while it runs, holding
//! `manager.lock` exclusively; else `podkit queue status` or `retry` for the moment they
//! need it, holding it shared (and `reader.lock`, so that they take turns). A starting
//! manager waits for them, but not for another manager. A `retry` aimed at a running
//! manager is handed over as a request file under `requests/`; the manager records it at
//! its next poll, then removes the file.
//!
//! A `journal.jsonl` of events left by an earlier podkit is imported when the database is
//! first opened, then renamed `journal.jsonl.imported`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use fjall::{Keyspace, PartitionHandle, PersistMode};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::state::{Event, Remembered, Standing, State};

/// The database's directory under the state directory.
pub const DB_DIR: &str = "db";
/// The partition of item name → [`Remembered`] as JSON.
const ITEMS: &str = "items";
/// Held exclusively by the manager, shared by a `status` or `retry` reading the state.
const MANAGER_LOCK: &str = "manager.lock";
/// Held exclusively by a `status` or `retry` while it has the database open.
const READER_LOCK: &str = "reader.lock";
/// Retry requests for a running manager.
const REQUESTS: &str = "requests";
/// The events file of earlier versions, imported once.
const LEGACY_JOURNAL: &str = "journal.jsonl";
/// How long a starting manager waits for `status` or `retry` to let go of the state.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another manager is running on this state directory")]
    Busy,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{path}: {source}")]
    Database { path: PathBuf, source: fjall::Error },
}

/// A hold on a state directory that allows opening its database: a [`ManagerLock`] or a
/// [`ReaderLock`].
pub trait Hold {}

/// The manager's hold on a state directory, released when dropped (or when the process
/// dies, however it dies).
#[derive(Debug)]
pub struct ManagerLock(#[allow(dead_code)] Flock<File>);

impl Hold for ManagerLock {}

/// A `status` or `retry` holding a state directory no manager runs on.
#[derive(Debug)]
pub struct ReaderLock {
    _manager: Flock<File>,
    _turn: Flock<File>,
}

impl Hold for ReaderLock {}

fn try_lock(dir: &Path, name: &str, arg: FlockArg) -> io::Result<Option<Flock<File>>> {
    std::fs::create_dir_all(dir)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

impl ManagerLock {
    /// Takes the state directory for a manager: [`StoreError::Busy`] at once if another
    /// manager has it, after waiting if a `status` or `retry` has it.
    pub fn take(dir: &Path) -> Result<ManagerLock, StoreError> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            if let Some(lock) = try_lock(dir, MANAGER_LOCK, FlockArg::LockExclusiveNonblock)? {
                return Ok(ManagerLock(lock));
            }
            // Only readers share the lock: if it cannot be shared, a manager holds it.
            if try_lock(dir, MANAGER_LOCK, FlockArg::LockSharedNonblock)?.is_none() {
                return Err(StoreError::Busy);
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Io(io::Error::other(
                    "podkit queue status or retry keeps holding the state directory",
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl ReaderLock {
    /// Takes the state directory for reading or amending it, after any other reader is
    /// done; `None` if a manager runs on it.
    pub fn take(dir: &Path) -> io::Result<Option<ReaderLock>> {
        let turn = try_lock(dir, READER_LOCK, FlockArg::LockExclusive)?
            .ok_or_else(|| io::Error::other("reader.lock: not taken"))?;
        Ok(
            try_lock(dir, MANAGER_LOCK, FlockArg::LockSharedNonblock)?.map(|manager| ReaderLock {
                _manager: manager,
                _turn: turn,
            }),
        )
    }
}

/// Whether a manager holds the state directory `dir` now.
pub fn manager_running(dir: &Path) -> bool {
    dir.join(MANAGER_LOCK).exists()
        && matches!(
            try_lock(dir, MANAGER_LOCK, FlockArg::LockSharedNonblock),
            Ok(None)
        )
}

/// The open database. Clones share it; records are made one batch at a time.
#[derive(Clone)]
pub struct Store {
    keyspace: Keyspace,
    items: PartitionHandle,
    /// Held while a batch reads and rewrites its items' rows.
    writing: Arc<Mutex<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating) the database under `dir`, which the caller holds, and reads every
    /// item.
    pub fn open(dir: &Path, _held: &impl Hold) -> Result<(Store, State), StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_DIR);
        let error = |source| StoreError::Database {
            path: path.clone(),
            source,
        };
        let keyspace = fjall::Config::new(&path).open().map_err(error)?;
        let items = keyspace
            .open_partition(ITEMS, Default::default())
            .map_err(error)?;
        let store = Store {
            keyspace,
            items,
            writing: Arc::new(Mutex::new(())),
            path: path.clone(),
        };
        store.import_legacy_journal(dir)?;
        let state = store.load()?;
        Ok((store, state))
    }

    /// Like [`Store::open`], keeping `held` with the database: see [`HeldStore`].
    pub fn open_held<H: Hold + Send + 'static>(
        dir: &Path,
        held: H,
    ) -> Result<(HeldStore<H>, State), StoreError> {
        let (store, state) = Store::open(dir, &held)?;
        let open = Some((store, held));
        Ok((HeldStore { open }, state))
    }

    fn error(&self, source: fjall::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    fn load(&self) -> Result<State, StoreError> {
        let mut state = State::default();
        for row in self.items.iter() {
            let (name, value) = row.map_err(|e| self.error(e))?;
            let name = String::from_utf8_lossy(&name).into_owned();
            match serde_json::from_slice::<Remembered>(&value) {
                Ok(remembered) => {
                    state.items.insert(name, remembered);
                }
                Err(err) => {
                    tracing::warn!(item = %name, error = %err, "state: skipping an unreadable row")
                }
            }
        }
        Ok(state)
    }

    /// Records `events` in one batch, synced to disk before it returns: only then may
    /// they be acknowledged.
    pub fn record(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        // Later events about an item in the same batch build on earlier ones.
        let mut updated: std::collections::HashMap<&str, Remembered> =
            std::collections::HashMap::new();
        for event in events {
            let remembered = match updated.entry(event.item()) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let stored = self.items.get(event.item()).map_err(|e| self.error(e))?;
                    entry.insert(
                        stored
                            .and_then(|value| serde_json::from_slice(&value).ok())
                            .unwrap_or_default(),
                    )
                }
            };
            remembered.apply(event);
        }
        let mut batch = self
            .keyspace
            .batch()
            .durability(Some(PersistMode::SyncData));
        for (item, remembered) in updated {
            let value = serde_json::to_vec(&remembered).map_err(io::Error::other)?;
            batch.insert(&self.items, item, value);
        }
        batch.commit().map_err(|e| self.error(e))
    }

    /// Records the retry requests waiting under `dir/requests` and applies them to
    /// `state`, then removes them; returns the items revived.
    pub fn take_requests(
        &self,
        dir: &Path,
        state: &mut State,
        max_attempts: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut revived = Vec::new();
        for path in pending_requests(dir)? {
            let request = std::fs::read(&path)
                .map_err(StoreError::from)
                .and_then(|bytes| {
                    serde_json::from_slice::<RetryRequest>(&bytes)
                        .map_err(|e| io::Error::other(e).into())
                });
            let request = match request {
                Ok(request) => request,
                Err(err) => {
                    tracing::warn!(request = %path.display(), error = %err, "dropping a retry request that cannot be read");
                    std::fs::remove_file(&path)?;
                    continue;
                }
            };
            let names = request
                .items
                .unwrap_or_else(|| failed_items(state, max_attempts));
            let events: Vec<Event> = names
                .iter()
                .map(|item| Event::Retry { item: item.clone() })
                .collect();
            self.record(&events)?;
            events.iter().for_each(|event| state.apply(event));
            std::fs::remove_file(&path)?;
            revived.extend(names);
        }
        Ok(revived)
    }

    /// Folds `journal.jsonl` of an earlier podkit into the database, once.
    fn import_legacy_journal(&self, dir: &Path) -> Result<(), StoreError> {
        let journal = dir.join(LEGACY_JOURNAL);
        let file = match File::open(&journal) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let mut events = Vec::new();
        for line in BufReader::new(file).split(b'\n') {
            // A line torn by a crash, or not an event, is skipped.
            if let Ok(event) = serde_json::from_slice::<Event>(&line?) {
                events.push(event);
            }
        }
        self.record(&events)?;
        std::fs::rename(&journal, dir.join(format!("{LEGACY_JOURNAL}.imported")))?;
        tracing::info!(
            events = events.len(),
            "imported the journal of an earlier version"
        );
        Ok(())
    }
}

/// Names of the items that are out of attempts, sorted.
pub fn failed_items(state: &State, max_attempts: u32) -> Vec<String> {
    let mut failed: Vec<String> = state
        .items
        .iter()
        .filter(|(_, r)| r.standing(max_attempts) == Standing::Failed)
        .map(|(name, _)| name.clone())
        .collect();
    failed.sort();
    failed
}

/// A `podkit queue retry` handed to a running manager: the items to try again, or every
/// failed item when `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryRequest {
    pub items: Option<Vec<String>>,
}

/// Writes `request` under `dir/requests` for the running manager (whole, by rename);
/// returns its path, which the manager removes once it has recorded it.
pub fn hand_over(dir: &Path, request: &RetryRequest) -> io::Result<PathBuf> {
    let requests = dir.join(REQUESTS);
    std::fs::create_dir_all(&requests)?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = format!("retry-{}-{nanos}", std::process::id());
    let partial = requests.join(format!("{name}.partial"));
    let path = requests.join(format!("{name}.json"));
    {
        let mut file = File::create(&partial)?;
        file.write_all(&serde_json::to_vec(request).map_err(io::Error::other)?)?;
        file.sync_all()?;
    }
    std::fs::rename(&partial, &path)?;
    File::open(&requests)?.sync_all()?;
    Ok(path)
}

/// The complete request files under `dir/requests`, oldest first.
fn pending_requests(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir.join(REQUESTS)) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            paths.push(path);
        }
    }
    paths.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    Ok(paths)
}

/// Reads the state under `dir`, which the caller holds (and lets go of once the database
/// is closed); an empty state when nothing was ever recorded there.
pub fn read<H: Hold + Send + 'static>(dir: &Path, held: H) -> Result<State, StoreError> {
    if !dir.join(DB_DIR).exists() && !dir.join(LEGACY_JOURNAL).exists() {
        return Ok(State::default());
    }
    Store::open_held(dir, held).map(|(_, state)| state)
}

/// An open database with the hold it was opened under, for a process about to finish with
/// it. Dropped, the database closes on a thread of its own and the hold is released after
/// it: fjall's close waits for its monitor thread, which wakes every 250 ms, and there is
/// nothing left to wait for, since every record was synced when it was made. A process
/// that exits meanwhile ends as after a crash, which the database recovers from.
pub struct HeldStore<H: Hold + Send + 'static> {
    open: Option<(Store, H)>,
}

impl<H: Hold + Send + 'static> std::ops::Deref for HeldStore<H> {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.open.as_ref().expect("open until dropped").0
    }
}

impl<H: Hold + Send + 'static> Drop for HeldStore<H> {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else { return };
        // Should the thread not start, the database is closed here, as it goes with it.
        let _ = std::thread::Builder::new()
            .name("state-close".into())
            .spawn(move || drop(open));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::failed;

    /// The state as a fresh open finds it, closed again before returning.
    fn reread(dir: &Path, held: &impl Hold) -> State {
        Store::open(dir, held).map(|(_, state)| state).unwrap()
    }

    fn done(item: &str) -> Event {
        Event::Done {
            item: item.into(),
            attempt: 1,
            secs: 0.5,
        }
    }

    #[test]
    fn recorded_events_are_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let held = ManagerLock::take(dir.path()).unwrap();
        let (store, state) = Store::open(dir.path(), &held).unwrap();
        assert!(state.items.is_empty());
        store.record(&[done("a"), failed("b", 1)]).unwrap();
        store
            .record(&[failed("b", 2), failed("b", 3), done("c")])
            .unwrap();
        drop(store);
        let state = reread(dir.path(), &held);
        assert_eq!(state.counts(3), (0, 2, 1));
        assert_eq!(state.items["b"].failures, 3);
        assert_eq!(state.items["a"].secs, Some(0.5));
    }

    #[test]
    fn a_legacy_journal_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            serde_json::to_string(&done("a")).unwrap(),
            serde_json::to_string(&failed("b", 1)).unwrap(),
            r#"{"event":"done","item":"c","att"#.to_string(),
        ];
        std::fs::write(dir.path().join(LEGACY_JOURNAL), lines.join("\n")).unwrap();
        let held = ManagerLock::take(dir.path()).unwrap();
        let state = reread(dir.path(), &held);
        assert_eq!(state.counts(3), (1, 1, 0));
        assert!(!dir.path().join(LEGACY_JOURNAL).exists());
        assert!(dir.path().join("journal.jsonl.imported").exists());
        assert_eq!(reread(dir.path(), &held), state);
    }

    #[test]
    fn retry_requests_are_recorded_then_removed() {
        let dir = tempfile::tempdir().unwrap();
        let held = ManagerLock::take(dir.path()).unwrap();
        let (store, mut state) = Store::open(dir.path(), &held).unwrap();
        let events = [failed("x", 1), failed("x", 2), failed("y", 2), done("z")];
        store.record(&events).unwrap();
        events.iter().for_each(|e| state.apply(e));
        let all_failed = hand_over(dir.path(), &RetryRequest { items: None }).unwrap();
        std::fs::write(dir.path().join("requests/garbage.json"), "not json").unwrap();
        let revived = store.take_requests(dir.path(), &mut state, 2).unwrap();
        assert_eq!(revived, ["x", "y"]);
        assert!(!all_failed.exists());
        assert_eq!(pending_requests(dir.path()).unwrap(), Vec::<PathBuf>::new());
        assert_eq!(state.items["x"].standing(2), Standing::Pending);
        drop(store);
        let after = reread(dir.path(), &held);
        assert_eq!(after.counts(2), (2, 1, 0));
    }

    #[test]
    fn a_manager_waits_for_readers_but_not_for_a_manager() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!manager_running(dir.path()));
        let reader = ReaderLock::take(dir.path()).unwrap().expect("no manager");
        assert!(!manager_running(dir.path()), "a reader is not a manager");
        let path = dir.path().to_path_buf();
        let starting = std::thread::spawn(move || ManagerLock::take(&path));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!starting.is_finished(), "the manager waits for the reader");
        drop(reader);
        let manager = starting
            .join()
            .unwrap()
            .expect("taken once the reader is done");
        assert!(manager_running(dir.path()));
        assert!(ReaderLock::take(dir.path()).unwrap().is_none());
        let started = Instant::now();
        let second = ManagerLock::take(dir.path()).unwrap_err();
        assert!(matches!(second, StoreError::Busy), "{second}");
        assert!(started.elapsed() < LOCK_WAIT, "refused without waiting");
        drop(manager);
        assert!(!manager_running(dir.path()));
    }
}
