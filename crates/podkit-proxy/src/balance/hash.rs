//! The `hash` policy: nginx's consistent ring over the backends' `host:port`, so that a
//! key keeps its backend and adding one of N backends moves about 1/N of the keys.

use std::sync::Arc;

use podkit_hash::nginx::Ring;

use crate::upstream::backend::Backend;

/// A ring over a pool's backends.
#[derive(Debug)]
pub struct HashRing {
    ring: Ring,
}

impl HashRing {
    /// The ring for `backends`, placed as nginx places `server host:port weight=w`.
    pub fn new(backends: &[Arc<Backend>]) -> HashRing {
        let servers: Vec<(String, u32)> = backends
            .iter()
            .map(|b| (b.authority.to_string(), b.weight))
            .collect();
        HashRing {
            ring: Ring::new(&servers),
        }
    }

    /// Usable backends in ring order from the key's point.
    pub fn order(&self, key: &str, usable: &[bool]) -> Vec<usize> {
        self.ring
            .walk(key.as_bytes())
            .filter(|&i| usable[i])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn same_key_same_backend_and_failover_to_the_next() {
        let b = backends(&[1, 1, 1]);
        let ring = HashRing::new(&b);
        let all = [true; 3];
        let first = ring.order("/user/7", &all);
        assert_eq!(first, ring.order("/user/7", &all));
        let mut usable = all;
        usable[first[0]] = false;
        assert_eq!(ring.order("/user/7", &usable)[0], first[1]);
    }
}
