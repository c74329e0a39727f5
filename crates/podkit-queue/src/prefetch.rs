//! Fetching items' data ahead of their turn: while workers run, the data of the next
//! ready items is already on its way, so a freed worker starts at once instead of
//! waiting for a round trip to the source. As many items are fetched ahead as there are
//! workers.

use std::collections::HashMap;

use serde_json::Value;
use tokio::task::JoinHandle;

use crate::client::{Source, SourceError};

/// An item's data, fetched or being fetched.
pub type Fetch = JoinHandle<Result<Value, SourceError>>;

/// Fetches under way, by item.
#[derive(Default)]
pub struct Prefetch {
    pending: HashMap<String, Fetch>,
}

impl Prefetch {
    /// The fetch of `item`: the one already under way, or a new one.
    pub fn take(&mut self, item: &str, source: &Source) -> Fetch {
        self.pending
            .remove(item)
            .unwrap_or_else(|| spawn_fetch(source, item))
    }

    /// Keeps the first `limit` of `upcoming` fetched or being fetched; fetches of items
    /// no longer among them are dropped.
    pub fn ahead<'a>(
        &mut self,
        upcoming: impl Iterator<Item = &'a String>,
        source: &Source,
        limit: usize,
    ) {
        let upcoming: Vec<&String> = upcoming.take(limit).collect();
        self.pending.retain(|item, fetch| {
            let keep = upcoming.contains(&item);
            if !keep {
                fetch.abort();
            }
            keep
        });
        for item in upcoming {
            if !self.pending.contains_key(item.as_str()) {
                self.pending.insert(item.clone(), spawn_fetch(source, item));
            }
        }
    }
}

fn spawn_fetch(source: &Source, item: &str) -> Fetch {
    let (source, item) = (source.clone(), item.to_string());
    tokio::spawn(async move { source.item(&item).await })
}
