//! The store's core: the state, its disk and the recent history of events behind one
//! lock, so that a change is applied, committed and published to watchers in revision
//! order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use etcd_client::proto::{PbEvent, PbKeyValue, PbRangeRequest, PbRangeResponse};
use tokio::sync::broadcast;

use super::disk::{Disk, DiskError, Loaded};
use super::state::{in_bounds, key_bounds, shape_range, Change, RequestError, State};

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
        let mut history: VecDeque<Published> = loaded
            .history
            .into_iter()
            .map(|(revision, events)| (revision, Arc::new(events)))
            .collect();
        while history.len() > history_size {
            history.pop_front();
        }
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

    /// Serves a Range request at the current revision or at a past one, as long as the
    /// history reaches back to it: the keys of the range are rolled back through the
    /// events after it (each event carries the value before it).
    pub fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, RequestError> {
        let current = self.state.revision();
        if req.revision <= 0 || req.revision >= current || req.key.is_empty() {
            return self.state.range(req);
        }
        let oldest_kept = self.history.front().map_or(current + 1, |(r, _)| *r);
        if req.revision < oldest_kept - 1 {
            return Err(RequestError::Compacted);
        }
        let bounds = key_bounds(&req.key, &req.range_end);
        let mut then: BTreeMap<Vec<u8>, PbKeyValue> = self
            .state
            .keys_in(&bounds)
            .map(|kv| (kv.key.clone(), kv.clone()))
            .collect();
        let later = self
            .history
            .iter()
            .rev()
            .take_while(|(r, _)| *r > req.revision);
        for (_, events) in later {
            for event in events.iter().rev() {
                let Some(kv) = &event.kv else { continue };
                if !in_bounds(&kv.key, &bounds) {
                    continue;
                }
                match &event.prev_kv {
                    Some(before) => then.insert(kv.key.clone(), before.clone()),
                    None => then.remove(&kv.key),
                };
            }
        }
        Ok(shape_range(then.into_values().collect(), req))
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
