//! Master election on top of the lock: the leader is the holder of the election's lock,
//! with its identity stored in its key so others can verify who is master, and the key's
//! create revision as its fencing token.

use std::time::Duration;

use crate::lock::{self, Held, LockError};
use crate::store::{Store, StoreError};

/// Who leads an election now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub id: String,
    pub token: i64,
}

/// Campaigns until this `id` leads `name`; the returned ownership is kept by its lease
/// until resigned or lost.
pub async fn campaign(
    store: &Store,
    name: &str,
    id: &str,
    ttl: Duration,
) -> Result<Held, LockError> {
    lock::lock(store, name, id.as_bytes(), ttl).await
}

/// The current leader of `name`, if any.
pub async fn leader(store: &Store, name: &str) -> Result<Option<Leader>, StoreError> {
    Ok(lock::holder(store, name).await?.map(|e| Leader {
        id: String::from_utf8_lossy(&e.value).into_owned(),
        token: e.create_revision,
    }))
}

/// Gives up leadership; the next campaigner takes over at once.
pub async fn resign(store: &Store, held: Held) -> Result<(), StoreError> {
    held.unlock(store).await.map(drop)
}
