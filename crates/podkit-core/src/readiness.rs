//! Readiness as latches: the component is ready once every latch it took is released
//! and it is not draining. `/readyz` reports which latches are still held.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Shared readiness state of one component.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pending: Mutex<BTreeMap<u64, String>>,
    next_id: AtomicU64,
    draining: AtomicBool,
}

/// Holds the component not-ready until released (or dropped).
#[derive(Debug)]
#[must_use = "dropping a latch releases it at once"]
pub struct Latch {
    inner: Arc<Inner>,
    id: u64,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Waiting on the named latches.
    Waiting(Vec<String>),
    Draining,
}

impl Readiness {
    /// Readiness with no latches: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a latch named after what it waits for ("first sample", "backends probed").
    pub fn latch(&self, reason: impl Into<String>) -> Latch {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.pending).insert(id, reason.into());
        Latch {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Marks the component as draining: never ready again.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// The current status.
    pub fn status(&self) -> Status {
        if self.inner.draining.load(Ordering::SeqCst) {
            return Status::Draining;
        }
        let pending = lock(&self.inner.pending);
        if pending.is_empty() {
            Status::Ready
        } else {
            Status::Waiting(pending.values().cloned().collect())
        }
    }

    /// Whether the component is ready.
    pub fn is_ready(&self) -> bool {
        self.status() == Status::Ready
    }
}

impl Latch {
    /// Releases the latch.
    pub fn release(self) {}
}

impl Drop for Latch {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latches_gate_readiness() {
        let r = Readiness::new();
        assert!(r.is_ready());
        let a = r.latch("data loaded");
        let b = r.latch("backends probed");
        assert_eq!(
            r.status(),
            Status::Waiting(vec!["data loaded".into(), "backends probed".into()])
        );
        a.release();
        assert!(!r.is_ready());
        drop(b);
        assert!(r.is_ready());
        r.set_draining();
        assert_eq!(r.status(), Status::Draining);
    }
}
