//! Power of two choices: of two backends picked at random, the one with the lower cost,
//! where cost is (requests in flight + 1) × average latency ÷ weight.

use std::sync::Arc;

use crate::upstream::backend::Backend;

fn cost(backend: &Backend) -> f64 {
    (backend.in_flight() as f64 + 1.0) * backend.latency_micros() / f64::from(backend.weight.max(1))
}

/// The better of two random usable backends, then the other, then the rest by cost.
pub fn order(backends: &[Arc<Backend>], usable: &[bool]) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..backends.len()).filter(|&i| usable[i]).collect();
    if candidates.len() >= 2 {
        let a = fastrand::usize(..candidates.len());
        let mut b = fastrand::usize(..candidates.len() - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (candidates[a], candidates[b]);
        let (first, second) = if cost(&backends[b]) < cost(&backends[a]) {
            (b, a)
        } else {
            (a, b)
        };
        candidates.retain(|&i| i != first && i != second);
        candidates.sort_by(|&x, &y| cost(&backends[x]).total_cmp(&cost(&backends[y])));
        candidates.insert(0, second);
        candidates.insert(0, first);
    }
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn never_picks_the_loaded_one_of_two() {
        let b = backends(&[1, 1]);
        let _busy: Vec<_> = (0..10).map(|_| b[0].start()).collect();
        for _ in 0..50 {
            assert_eq!(order(&b, &[true, true]), vec![1, 0]);
        }
    }

    #[test]
    fn spreads_when_equal() {
        let b = backends(&[1, 1, 1, 1]);
        let mut seen = [0; 4];
        for _ in 0..400 {
            seen[order(&b, &[true; 4])[0]] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
