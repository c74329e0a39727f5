//! Least connections: fewest requests in flight per unit of weight, ties broken in turn.

use std::sync::Arc;

use super::RoundRobin;
use crate::upstream::backend::Backend;

/// Usable backends ordered by in-flight requests per weight.
pub fn order(backends: &[Arc<Backend>], usable: &[bool], ties: &RoundRobin) -> Vec<usize> {
    let n = backends.len();
    let offset = ties.tick();
    let mut order: Vec<usize> = (0..n)
        .map(|k| (offset + k) % n)
        .filter(|&i| usable[i])
        .collect();
    // Stable sort: equal loads keep the rotated order, so ties take turns.
    order.sort_by(|&a, &b| {
        let load = |i: usize| backends[i].in_flight() as f64 / f64::from(backends[i].weight.max(1));
        load(a).total_cmp(&load(b))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn picks_the_least_loaded() {
        let b = backends(&[1, 1, 1]);
        let _busy = [b[0].start(), b[0].start(), b[2].start()];
        let rr = RoundRobin::new(&b);
        assert_eq!(order(&b, &[true; 3], &rr)[0], 1);
    }

    #[test]
    fn ties_take_turns() {
        let b = backends(&[1, 1]);
        let rr = RoundRobin::new(&b);
        let firsts: Vec<usize> = (0..4).map(|_| order(&b, &[true; 2], &rr)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 0, 1]);
    }
}
