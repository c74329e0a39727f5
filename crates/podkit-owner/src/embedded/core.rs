//! The store's core: the state, its disk and the recent history of events behind one
//! lock, so that a change is applied, committed and published to watchers in revision
//! order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use etcd_client::proto::PbEvent;
use tokio::sync::broadcast;

use super::disk::{Disk, DiskError, Loaded};
use super::state::{Change, RequestError, State};

/// One revision's events, as published to watchers.
pub type Published = (i64, Arc<Vec<PbEvent>>);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request itself was refused.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The change could not be made durable; nothing was changed.
    #[error("not written: {0}")]
    Disk(#[from] DiskError),
}

/// What a watcher that starts at a past revision gets.
pub enum Backlog {
    /// The events from its start revision on, by revision.
    Events(Vec<Published>),
    /// Its start revision is older than the history kept: the oldest revision that is.
    Compacted(i64),
}

/// State, disk and history.
pub struct Core {
    state: State,
    disk: Disk,
    history: VecDeque<Published>,
    history_size: usize,
    events: broadcast::Sender<Published>,
    /// Reported in every response header.
    pub cluster_id: u64,
}

/// The core, shared by the services.
pub type SharedCore = Arc<Mutex<Core>>;

/// Locks the core; a panic elsewhere does not make the store unusable.
pub fn lock(core: &SharedCore) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// The core from what the disk held; leases get a full TTL from `now`.
    pub fn new(disk: Disk, loaded: Loaded, history_size: usize, now: Instant) -> Core {
        let state = State::restore(loaded.keys, loaded.leases, loaded.revision, now);
        let history = loaded
            .history
            .into_iter()
            .map(|(revision, events)| (revision, Arc::new(events)))
            .collect();
        let (events, _) = broadcast::channel(1024);
        Core {
            state,
            disk,
            history,
            history_size,
            events,
            cluster_id: loaded.cluster_id,
        }
    }

    /// The state, to read.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The database file's size in bytes.
    pub fn disk_size(&self) -> u64 {
        self.disk.size()
    }

    /// Applies a write to the state, commits it to disk, then publishes its events; when
    /// the commit fails the state is put back and the error returned.
    pub fn write<T>(
        &mut self,
        write: impl FnOnce(&mut State) -> Result<(T, Change), RequestError>,
    ) -> Result<(T, Change), CoreError> {
        let (answer, change) = write(&mut self.state)?;
        if change.is_empty() {
            return Ok((answer, change));
        }
        if let Err(e) = self.disk.commit(&change) {
            self.state.undo(&change);
            return Err(e.into());
        }
        if !change.events.is_empty() {
            let published = (change.revision, Arc::new(change.events.clone()));
            self.history.push_back(published.clone());
            while self.history.len() > self.history_size {
                self.history.pop_front();
            }
            // No receiver is not an error: nobody watches.
            let _ = self.events.send(published);
        }
        Ok((answer, change))
    }

    /// Renews a lease (in memory only, as etcd's keep-alives are): its TTL, or `None`.
    pub fn keep_alive(&mut self, id: i64, now: Instant) -> Option<i64> {
        self.state.keep_alive(id, now)
    }

    /// A receiver of every revision published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.events.subscribe()
    }

    /// The events of revisions from `start` on, or how far history has been dropped.
    pub fn backlog(&self, start: i64) -> Backlog {
        let oldest = self
            .history
            .front()
            .map_or(self.state.revision() + 1, |(r, _)| *r);
        if start < oldest && start <= self.state.revision() {
            return Backlog::Compacted(oldest);
        }
        Backlog::Events(
            self.history
                .iter()
                .filter(|(r, _)| *r >= start)
                .cloned()
                .collect(),
        )
    }

    /// Revokes every lease whose TTL has passed at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> Result<usize, CoreError> {
        let expired = self.state.expired(now);
        for id in &expired {
            self.write(|state| state.revoke(*id).map(|change| ((), change)))?;
        }
        Ok(expired.len())
    }
}
