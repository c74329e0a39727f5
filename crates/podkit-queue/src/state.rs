//! What the manager remembers about items, as events and their fold. Pure: the store
//! ([`crate::store`]) keeps the fold durably; this module says what events mean.
//!
//! Every event sets an item's whole remembered state, so applying a sequence of events
//! again, in the same order, gives the same result.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One durable fact about an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Attempt `attempt` succeeded after `secs`.
    Done {
        item: String,
        attempt: u32,
        secs: f64,
    },
    /// Attempt `attempt` failed (`reason`) after `secs`; `attempt` failures so far.
    Failed {
        item: String,
        attempt: u32,
        reason: String,
        secs: f64,
    },
    /// The item is to be tried again from its first attempt (`podkit queue retry`).
    Retry { item: String },
}

impl Event {
    /// The item the event is about.
    pub fn item(&self) -> &str {
        match self {
            Event::Done { item, .. } | Event::Failed { item, .. } | Event::Retry { item } => item,
        }
    }
}

/// What is remembered of one item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Remembered {
    /// Whether an attempt succeeded.
    #[serde(default)]
    pub done: bool,
    /// Failed attempts since the last retry.
    #[serde(default)]
    pub failures: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How long the successful attempt took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secs: Option<f64>,
}

/// Where an item stands, given the attempts allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Never tried, or to be tried again.
    Pending,
    Done,
    /// Out of attempts: parked until `podkit queue retry`.
    Failed,
}

impl Remembered {
    /// Applies one event about this item.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Done { secs, .. } => {
                self.done = true;
                self.secs = Some(*secs);
            }
            Event::Failed {
                attempt, reason, ..
            } => {
                self.done = false;
                self.failures = *attempt;
                self.last_error = Some(reason.clone());
            }
            Event::Retry { .. } => *self = Remembered::default(),
        }
    }

    /// Where the item stands when `max_attempts` attempts are allowed.
    pub fn standing(&self, max_attempts: u32) -> Standing {
        if self.done {
            Standing::Done
        } else if self.failures >= max_attempts.max(1) {
            Standing::Failed
        } else {
            Standing::Pending
        }
    }
}

/// The fold of every event: item name → what is remembered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub items: HashMap<String, Remembered>,
}

impl State {
    /// Applies one event.
    pub fn apply(&mut self, event: &Event) {
        self.items
            .entry(event.item().to_string())
            .or_default()
            .apply(event);
    }

    /// Counts of items by standing.
    pub fn counts(&self, max_attempts: u32) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for r in self.items.values() {
            match r.standing(max_attempts) {
                Standing::Pending => counts.0 += 1,
                Standing::Done => counts.1 += 1,
                Standing::Failed => counts.2 += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A failed attempt of `item` (also used by the store's tests).
    pub(crate) fn failed(item: &str, attempt: u32) -> Event {
        Event::Failed {
            item: item.into(),
            attempt,
            reason: "exit status 1".into(),
            secs: 0.1,
        }
    }

    #[test]
    fn events_fold_into_standings() {
        let mut state = State::default();
        for event in [
            failed("a", 1),
            Event::Done {
                item: "a".into(),
                attempt: 2,
                secs: 1.5,
            },
            failed("b", 1),
            failed("b", 2),
            failed("b", 3),
        ] {
            state.apply(&event);
        }
        assert_eq!(state.items["a"].standing(3), Standing::Done);
        assert_eq!(state.items["b"].standing(3), Standing::Failed);
        assert_eq!(state.items["b"].standing(5), Standing::Pending);
        assert_eq!(state.counts(3), (0, 1, 1));
        state.apply(&Event::Retry { item: "b".into() });
        assert_eq!(state.items["b"].standing(3), Standing::Pending);
    }

    #[test]
    fn applying_again_changes_nothing() {
        let events = [
            failed("a", 1),
            failed("b", 1),
            Event::Retry { item: "a".into() },
            Event::Done {
                item: "b".into(),
                attempt: 2,
                secs: 2.0,
            },
            failed("c", 1),
            failed("c", 2),
        ];
        let mut once = State::default();
        events.iter().for_each(|e| once.apply(e));
        let mut twice = once.clone();
        events.iter().for_each(|e| twice.apply(e));
        assert_eq!(once, twice);
        assert_eq!(once.counts(2), (1, 1, 1));
    }

    #[test]
    fn events_are_json_lines() {
        let line = serde_json::to_string(&failed("x y", 2)).unwrap();
        assert_eq!(
            line,
            r#"{"event":"failed","item":"x y","attempt":2,"reason":"exit status 1","secs":0.1}"#
        );
        assert_eq!(
            serde_json::from_str::<Event>(&line).unwrap(),
            failed("x y", 2)
        );
    }
}
