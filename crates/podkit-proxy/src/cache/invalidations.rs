//! Invalidations (purges, bans, unsafe methods) made while responses were on their way
//! from the origin: a response fetched before a key was invalidated must not be stored
//! after it, or the invalidation would be undone.

use std::collections::VecDeque;

/// What one invalidation removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidated {
    Key(String),
    Prefix(String),
}

impl Invalidated {
    fn covers(&self, key: &str) -> bool {
        match self {
            Invalidated::Key(k) => k == key,
            Invalidated::Prefix(prefix) => key.starts_with(prefix.as_str()),
        }
    }
}

/// The most recent invalidations, each numbered by the generation it started.
#[derive(Debug)]
pub struct InvalidationLog {
    generation: u64,
    recent: VecDeque<(u64, Invalidated)>,
    capacity: usize,
}

impl InvalidationLog {
    /// A log remembering the last `capacity` invalidations.
    pub fn new(capacity: usize) -> InvalidationLog {
        InvalidationLog {
            generation: 0,
            recent: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The current generation: a fetch notes it before asking the origin.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Records an invalidation, starting a new generation.
    pub fn record(&mut self, invalidated: Invalidated) {
        self.generation += 1;
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((self.generation, invalidated));
    }

    /// Whether a response for `key` fetched from generation `since` may be stored: no
    /// invalidation since then covers the key. When the log no longer reaches back that
    /// far, it may not.
    pub fn allows(&self, key: &str, since: u64) -> bool {
        if since >= self.generation {
            return true;
        }
        let reaches_back = self
            .recent
            .front()
            .is_some_and(|(first, _)| *first <= since + 1);
        reaches_back
            && !self
                .recent
                .iter()
                .any(|(generation, invalidated)| *generation > since && invalidated.covers(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_may_store_unless_its_key_was_invalidated_since() {
        let mut log = InvalidationLog::new(3);
        let before = log.generation();
        assert!(log.allows("a.com/x", before));
        log.record(Invalidated::Key("a.com/x".into()));
        log.record(Invalidated::Prefix("b.com/".into()));
        assert!(!log.allows("a.com/x", before));
        assert!(!log.allows("b.com/y", before));
        assert!(log.allows("a.com/y", before));
        // A fetch that began after the invalidation stores.
        assert!(log.allows("a.com/x", log.generation()));
        // Once the log has forgotten how far back a fetch began, it may not store.
        log.record(Invalidated::Key("c".into()));
        log.record(Invalidated::Key("d".into()));
        assert!(!log.allows("a.com/y", before));
        assert!(log.allows("a.com/y", before + 1));
    }
}
