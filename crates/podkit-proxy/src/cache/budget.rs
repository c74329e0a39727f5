//! The bytes of responses being stored as they arrive. They are not in the store yet, so
//! `--memory` does not bound them; this budget does, so that a burst of misses for large
//! objects cannot take memory without limit. A fill that finds the budget spent still
//! reaches its client, but is not stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes that fills in progress may hold at once.
#[derive(Debug)]
pub struct FillBudget {
    limit: u64,
    used: AtomicU64,
}

impl FillBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<FillBudget> {
        Arc::new(FillBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Reserves `bytes`, or `None` when that would pass the limit.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut reservation = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        reservation.cover(bytes).then_some(reservation)
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes held against a [`FillBudget`] until dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<FillBudget>,
    bytes: u64,
}

impl Reservation {
    /// Grows the reservation to at least `total` bytes; false when the budget cannot.
    pub fn cover(&mut self, total: u64) -> bool {
        let more = total.saturating_sub(self.bytes);
        if more == 0 {
            return true;
        }
        if !self.budget.take(more) {
            return false;
        }
        self.bytes += more;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_limit_and_return_on_drop() {
        let budget = FillBudget::new(100);
        let mut a = budget.reserve(60).unwrap();
        assert!(budget.reserve(50).is_none());
        assert!(a.cover(60) && a.cover(30), "already covered");
        assert!(!a.cover(101));
        assert!(a.cover(100));
        assert_eq!(budget.used(), 100);
        assert!(budget.reserve(1).is_none());
        drop(a);
        assert_eq!(budget.used(), 0);
        let b = budget.reserve(100).unwrap();
        assert_eq!(budget.used(), 100);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
