//! Choosing a backend (pure, given the backends' state): each policy returns the order in
//! which to try backends — a first choice, then fallbacks for retries.
//!
//! Only available backends (ready and not ejected) are candidates. When none is
//! available, ready but ejected backends are tried rather than failing outright.

mod hash;
mod least_conn;
mod p2c;
mod round_robin;

use std::sync::Arc;
use std::time::Instant;

use crate::config::Policy;
use crate::upstream::backend::Backend;

pub use hash::HashRing;
pub use round_robin::RoundRobin;

/// A pool's balancing policy with its state.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    LeastConn(RoundRobin),
    P2c,
    Hash(HashRing),
}

impl Balancer {
    /// The balancer for `policy` over `backends`.
    pub fn new(policy: Policy, backends: &[Arc<Backend>]) -> Balancer {
        match policy {
            Policy::RoundRobin => Balancer::RoundRobin(RoundRobin::new(backends)),
            Policy::LeastConn => Balancer::LeastConn(RoundRobin::new(backends)),
            Policy::P2c => Balancer::P2c,
            Policy::Hash => Balancer::Hash(HashRing::new(backends)),
        }
    }

    /// Backend indexes in the order to try them. `key` is the rendered hash key (hash
    /// policy only).
    pub fn order(&self, backends: &[Arc<Backend>], key: Option<&str>) -> Vec<usize> {
        let now = Instant::now();
        let available: Vec<bool> = backends.iter().map(|b| b.is_available(now)).collect();
        let usable = if available.iter().any(|&a| a) {
            available
        } else {
            backends.iter().map(|b| b.is_ready()).collect()
        };
        if !usable.iter().any(|&u| u) {
            return Vec::new();
        }
        match self {
            Balancer::RoundRobin(rr) => rr.order(backends, &usable),
            Balancer::LeastConn(rr) => least_conn::order(backends, &usable, rr),
            Balancer::P2c => p2c::order(backends, &usable),
            Balancer::Hash(ring) => ring.order(key.unwrap_or(""), &usable),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use crate::upstream::backend::{Backend, BackendMetrics};

    pub fn backends(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let url = format!("http://10.0.0.{i}:80");
                let authority = format!("10.0.0.{i}:80").parse().unwrap();
                Arc::new(Backend::new(
                    url,
                    authority,
                    w,
                    true,
                    BackendMetrics::default(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::backends;
    use super::*;

    #[test]
    fn unready_backends_are_never_chosen() {
        let b = backends(&[1, 1, 1]);
        b[1].set_ready(false);
        let balancer = Balancer::new(Policy::RoundRobin, &b);
        for _ in 0..30 {
            assert!(!balancer.order(&b, None).contains(&1));
        }
    }

    #[test]
    fn nothing_ready_means_no_candidates() {
        let b = backends(&[1, 1]);
        b[0].set_ready(false);
        b[1].set_ready(false);
        assert!(Balancer::new(Policy::P2c, &b).order(&b, None).is_empty());
    }

    #[test]
    fn ejected_backends_are_a_last_resort() {
        let b = backends(&[1, 1]);
        let policy = crate::config::Eject::default();
        for _ in 0..3 {
            b[0].record(crate::upstream::eject::Outcome::Failure, None, &policy);
        }
        let balancer = Balancer::new(Policy::RoundRobin, &b);
        assert_eq!(balancer.order(&b, None), vec![1]);
        for _ in 0..3 {
            b[1].record(crate::upstream::eject::Outcome::Failure, None, &policy);
        }
        assert_eq!(balancer.order(&b, None).len(), 2);
    }
}
