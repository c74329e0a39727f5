//! Locks, as etcd's own mutex recipe builds them: each contender creates its own key under
//! the lock's prefix, attached to its lease; the key with the lowest create revision holds
//! the lock; every other contender watches the deletion of the key just before its own, so
//! waiters are served in order and no herd wakes when the lock is released.
//!
//! After every wait the holder re-reads its own key (same create revision) rather than
//! trusting the wake-up: etcd 3.4 can hand a lock to a lease that has already expired.
//! Unlock deletes only the key this holder created (compared on create revision), so the
//! chapter's Process-1 / Process-2 bug — unlocking someone else's lock after a TTL passed —
//! cannot happen.

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

    /// Releases the lock if it is still ours, and the lease. Returns whether our key was
    /// still there to delete.
    pub async fn unlock(self, store: &Store) -> Result<bool, StoreError> {
        let deleted = store.delete_if_created(&self.key, self.token).await?;
        self.lease.revoke(store).await?;
        Ok(deleted)
    }
}

fn prefix(name: &str) -> String {
    format!("{}/", name.trim_end_matches('/'))
}

/// Creates our key under the lock's prefix.
async fn enter(
    store: &Store,
    name: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<(Lease, Entry), LockError> {
    let lease = Lease::grant(store, ttl).await?;
    let key = format!("{}{:x}", prefix(name), lease.id);
    let entry = store.create(&key, value, lease.id).await?;
    Ok((lease, entry))
}

/// Blocks until the lock `name` is ours; `value` (e.g. our identity) is stored with it.
pub async fn lock(
    store: &Store,
    name: &str,
    value: &[u8],
    ttl: Duration,
) -> Result<Held, LockError> {
    let (lease, ours) = enter(store, name, value, ttl).await?;
    loop {
        let (entries, revision) = store.prefix(&prefix(name)).await?;
        let Some(position) = entries.iter().position(|e| e.key == ours.key) else {
            let _ = lease.revoke(store).await;
            return Err(LockError::Lost(name.to_string()));
        };
        if position == 0 {
            // Re-verify: our own key, still the one we created.
            match store.get(&ours.key).await? {
                Some(e) if e.create_revision == ours.create_revision => {
                    return Ok(Held {
                        name: name.to_string(),
                        key: ours.key,
                        token: ours.create_revision,
                        lease,
                    })
                }
                _ => {
                    let _ = lease.revoke(store).await;
                    return Err(LockError::Lost(name.to_string()));
                }
            }
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
    let (lease, ours) = enter(store, name, value, ttl).await?;
    let (entries, _) = store.prefix(&prefix(name)).await?;
    if entries.first().map(|e| &e.key) == Some(&ours.key) {
        return Ok(Some(Held {
            name: name.to_string(),
            key: ours.key,
            token: ours.create_revision,
            lease,
        }));
    }
    lease.revoke(store).await?;
    Ok(None)
}

/// The current holder of `name`: its key entry (value, token), if any.
pub async fn holder(store: &Store, name: &str) -> Result<Option<Entry>, StoreError> {
    Ok(store.prefix(&prefix(name)).await?.0.into_iter().next())
}
