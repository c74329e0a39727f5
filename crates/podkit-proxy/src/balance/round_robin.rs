//! Smooth weighted round-robin, as nginx does it: every pick adds each candidate's weight
//! to its running total, takes the largest, and subtracts the sum of weights from it.
//! With equal weights this is plain rotation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::upstream::backend::Backend;

/// Round-robin state of one pool.
#[derive(Debug)]
pub struct RoundRobin {
    /// Running totals per backend (weighted case).
    current: Mutex<Vec<i64>>,
    /// Rotation counter (equal weights).
    next: AtomicUsize,
    equal_weights: bool,
}

impl RoundRobin {
    /// State for `backends`.
    pub fn new(backends: &[Arc<Backend>]) -> RoundRobin {
        let equal_weights = backends.windows(2).all(|w| w[0].weight == w[1].weight);
        RoundRobin {
            current: Mutex::new(vec![0; backends.len()]),
            next: AtomicUsize::new(0),
            equal_weights,
        }
    }

    /// A rotating starting offset (also used to break ties in other policies).
    pub fn tick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The pick, then the other usable backends in index order after it.
    pub fn order(&self, backends: &[Arc<Backend>], usable: &[bool]) -> Vec<usize> {
        let n = backends.len();
        let first = if self.equal_weights {
            let usable_count = usable.iter().filter(|&&u| u).count();
            let k = self.tick() % usable_count;
            usable
                .iter()
                .enumerate()
                .filter(|(_, &u)| u)
                .nth(k)
                .map(|(i, _)| i)
                .unwrap_or(0)
        } else {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            let mut total = 0i64;
            let mut best: Option<usize> = None;
            for i in (0..n).filter(|&i| usable[i]) {
                let weight = i64::from(backends[i].weight);
                current[i] += weight;
                total += weight;
                if best.is_none_or(|b| current[i] > current[b]) {
                    best = Some(i);
                }
            }
            let best = best.unwrap_or(0);
            current[best] -= total;
            best
        };
        let mut order = Vec::with_capacity(n);
        order.push(first);
        order.extend((1..n).map(|k| (first + k) % n).filter(|&i| usable[i]));
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn equal_weights_rotate() {
        let b = backends(&[1, 1, 1]);
        let rr = RoundRobin::new(&b);
        let all = [true; 3];
        let firsts: Vec<usize> = (0..6).map(|_| rr.order(&b, &all)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(rr.order(&b, &all), vec![0, 1, 2]);
    }

    #[test]
    fn weights_interleave_smoothly_like_nginx() {
        // nginx's example: weights 5, 1, 1 give a a b a c a a (smooth, not a a a a a b c).
        let b = backends(&[5, 1, 1]);
        let rr = RoundRobin::new(&b);
        let all = [true; 3];
        let firsts: Vec<usize> = (0..7).map(|_| rr.order(&b, &all)[0]).collect();
        assert_eq!(firsts, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skips_unusable() {
        let b = backends(&[1, 1, 1]);
        let rr = RoundRobin::new(&b);
        let usable = [true, false, true];
        for _ in 0..10 {
            let order = rr.order(&b, &usable);
            assert!(!order.contains(&1));
            assert_eq!(order.len(), 2);
        }
    }
}
