//! Fencing (figure 9-2): a worker that receives requests from a would-be owner checks
//! `(owner, token)` against the store before acting, and never accepts a token lower than
//! one it has already accepted, so a stale owner — paused past its TTL, then resumed —
//! has every request rejected.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::election;
use crate::store::{Store, StoreError};

/// Validates requesters of one election.
pub struct Fence {
    store: Store,
    name: String,
    highest: AtomicI64,
}

impl Fence {
    /// A fence for the election (or lock) `name`.
    pub fn new(store: Store, name: &str) -> Fence {
        Fence {
            store,
            name: name.to_string(),
            highest: AtomicI64::new(0),
        }
    }

    /// Whether `owner` with `token` is the current owner; a stale token is refused
    /// without asking the store.
    pub async fn admit(&self, owner: &str, token: i64) -> Result<bool, StoreError> {
        if token < self.highest.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let current = election::leader(&self.store, &self.name).await?;
        let valid = current.is_some_and(|l| l.id == owner && l.token == token);
        if valid {
            self.highest.fetch_max(token, Ordering::SeqCst);
        }
        Ok(valid)
    }
}
