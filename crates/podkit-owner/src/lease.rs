//! A renewable lease (the chapter's "renewable lock"): renewed every TTL/2 in the
//! background; when a renewal fails or the TTL passes unrenewed, the lease is lost and
//! every watcher of [`Lease::lost`] hears it at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{Store, StoreError};

/// A held lease and its renewal task.
pub struct Lease {
    pub id: i64,
    pub ttl: Duration,
    renewed_at: Arc<Mutex<Instant>>,
    lost: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Grants a lease of `ttl` and starts renewing it.
    pub async fn grant(store: &Store, ttl: Duration) -> Result<Lease, StoreError> {
        let granted_at = Instant::now();
        let id = store.grant(ttl).await?;
        let renewed_at = Arc::new(Mutex::new(granted_at));
        let (lost_tx, lost) = watch::channel(false);
        let task = tokio::spawn(renew(store.clone(), id, ttl, renewed_at.clone(), lost_tx));
        Ok(Lease {
            id,
            ttl,
            renewed_at,
            lost,
            task,
        })
    }

    /// Becomes `true` when the lease is lost.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Returns when the lease is lost (never, if the renewal task is gone without a loss).
    pub async fn until_lost(&self) {
        let mut lost = self.lost.clone();
        if lost.wait_for(|l| *l).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Held, with the chapter's safety margin: renewed less than 0.75 × TTL ago and not
    /// known lost. Check it right before acting as the owner.
    pub fn is_valid(&self) -> bool {
        let renewed = *self.renewed_at.lock().unwrap_or_else(|p| p.into_inner());
        !*self.lost.borrow() && renewed.elapsed() < self.ttl.mul_f64(0.75)
    }

    /// Stops renewing without revoking: the lease then expires at its TTL, as a holder's
    /// does when its process stalls. For fault tests.
    pub fn stop_renewing(&self) {
        self.task.abort();
    }

    /// Stops renewing and revokes the lease (its keys go with it). Returns whether the
    /// lease was still alive.
    pub async fn revoke(self, store: &Store) -> Result<bool, StoreError> {
        self.task.abort();
        store.revoke(self.id).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn renew(
    store: Store,
    id: i64,
    ttl: Duration,
    renewed_at: Arc<Mutex<Instant>>,
    lost: watch::Sender<bool>,
) {
    let every = ttl / 2;
    let mut wait = every;
    loop {
        let since = *renewed_at.lock().unwrap_or_else(|p| p.into_inner());
        // Sleep until the next renewal, but never past the expiry.
        let expires = since + ttl;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::time::sleep_until(expires.into()) => {}
        }
        if Instant::now() >= expires {
            tracing::warn!(
                lease = format!("{id:x}"),
                "lease not renewed within its TTL: lost"
            );
            let _ = lost.send(true);
            return;
        }
        let asked_at = Instant::now();
        wait = every;
        match store.keep_alive(id).await {
            Ok(_) => *renewed_at.lock().unwrap_or_else(|p| p.into_inner()) = asked_at,
            Err(StoreError::LeaseExpired(_)) => {
                tracing::warn!(lease = format!("{id:x}"), "lease expired: lost");
                let _ = lost.send(true);
                return;
            }
            // A store that does not answer: try again soon, until the TTL runs out.
            Err(e) => {
                tracing::warn!(lease = format!("{id:x}"), error = %e, "renewal failed");
                wait = every.min(Duration::from_millis(300));
            }
        }
    }
}
