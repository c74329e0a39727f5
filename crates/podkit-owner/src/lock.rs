//! Locks, as etcd's own mutex recipe builds them: each contender creates its own key under
//! the lock's prefix, attached to its lease; the key with the lowest create revision holds
//! the lock; every other contender watches the deletion of the key just before its own, so
//! waiters are served in order and no herd wakes when the lock is released.
//!
//! Creating our key and reading the oldest one happen in one transaction, so an
//! uncontended lock costs one round trip. After every wait the contender reads the keys
//! again and checks that its own is still the one it created, rather than trusting the
//! wake-up: etcd 3.4 can hand a lock to a lease that has already expired.
//! Unlock revokes the holder's own lease, which deletes only the keys attached to it, so
//! the chapter's Process-1 / Process-2 bug — unlocking someone else's lock after a TTL
//! passed — cannot happen.

use std::time::Duration;

use crate::lease::Lease;
use crate::store::{Entry, Store, StoreError};

/// Why a lock was not obtained or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Our lease expired while we waited or held the lock.
    #[error("the lease expired while waiting for {0}")]
    Lost(String),
}

/// A held lock: its key, the lease keeping it, and the fencing token.
pub struct Held {
    pub name: String,
    pub key: String,
    /// The key's create revision: increases with every new holder.
    pub token: i64,
    pub lease: Lease,
}

impl Held {
    /// Still held, with the 0.75 × TTL margin (see [`Lease::is_valid`]).
    pub fn is_locked(&self) -> bool {
        self.lease.is_valid()
    }

    /// Releases the lock by revoking its lease: the store deletes the keys attached to
    /// that lease — our key, never a later holder's — in the same step, so unlocking is
    /// one request. Returns whether the lease was still alive; if it was not, our key had
    /// already gone with it and someone else may hold the lock.
    pub async fn unlock(self, store: &Store) -> Result<bool, StoreError> {
        self.lease.revoke(store).await
    }
}

fn prefix(name: &str) -> String {
    format!("{}/", name.trim_end_matches('/'))
}

/// Creates our key under the lock's prefix and, in the same transaction, reads the
/// oldest key there: whether the lock is ours is known in one round trip.
async fn enter(
    store: &Store,
    name: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<(Lease, Entry, bool), LockError> {
    let lease = Lease::grant(store, ttl).await?;
    let key = format!("{}{:x}", prefix(name), lease.id);
    let (ours, first) = store
        .create_and_first(&key, value, lease.id, &prefix(name))
        .await?;
    let owned =
        first.is_some_and(|f| f.key == ours.key && f.create_revision == ours.create_revision);
    Ok((lease, ours, owned))
}

fn held(name: &str, ours: Entry, lease: Lease) -> Held {
    Held {
        name: name.to_string(),
        key: ours.key,
        token: ours.create_revision,
        lease,
    }
}

/// Blocks until the lock `name` is ours; `value` (e.g. our identity) is stored with it.
pub async fn lock(
    store: &Store,
    name: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<Held, LockError> {
    let (lease, ours, owned) = enter(store, name, value, ttl).await?;
    if owned {
        return Ok(held(name, ours, lease));
    }
    loop {
        // Read after every wait: the holder is whoever is oldest now, and our own key
        // must still be the one we created (an expired lease loses it).
        let (entries, revision) = store.prefix(&prefix(name)).await?;
        let position = entries
            .iter()
            .position(|e| e.key == ours.key && e.create_revision == ours.create_revision);
        let Some(position) = position else {
            let _ = lease.revoke(store).await;
            return Err(LockError::Lost(name.to_string()));
        };
        if position == 0 {
            return Ok(held(name, ours, lease));
        }
        let before = &entries[position - 1];
        tokio::select! {
            waited = store.wait_deleted(&before.key, revision) => waited?,
            _ = lease.until_lost() => {
                let _ = lease.revoke(store).await;
                return Err(LockError::Lost(name.to_string()));
            }
        }
    }
}

/// Takes the lock only if it is free now.
pub async fn try_lock(
    store: &Store,
    name: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<Option<Held>, LockError> {
    let (lease, ours, owned) = enter(store, name, value, ttl).await?;
    if owned {
        return Ok(Some(held(name, ours, lease)));
    }
    lease.revoke(store).await?;
    Ok(None)
}

/// The current holder of `name`: its key entry (value, token), if any.
pub async fn holder(store: &Store, name: &str) -> Result<Option<Entry>, StoreError> {
    Ok(store.prefix(&prefix(name)).await?.0.into_iter().next())
}
