//! Request coalescing: the first miss (or revalidation) of a key goes to the origin;
//! concurrent requests for the same key wait for it and are then served from the store,
//! or go to the origin themselves when what came back was not storable or may not
//! answer them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// How a fill ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillState {
    Pending,
    /// The response was stored.
    Stored,
    /// The response could not be stored; waiters fetch on their own.
    NotStored,
}

/// The fills in progress, by key.
#[derive(Debug, Default)]
pub struct Fills {
    pending: Mutex<HashMap<String, watch::Sender<FillState>>>,
}

/// What a miss does.
#[derive(Debug)]
pub enum Role {
    /// Fetch, then report through the guard.
    Leader(FillGuard),
    /// Wait for the leader.
    Follower(watch::Receiver<FillState>),
}

impl Fills {
    /// Joins the fill of `key` in progress, or starts one.
    pub fn join(self: &Arc<Self>, key: &str) -> Role {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = pending.get(key) {
            return Role::Follower(sender.subscribe());
        }
        let (sender, _) = watch::channel(FillState::Pending);
        pending.insert(key.to_string(), sender);
        Role::Leader(FillGuard {
            fills: self.clone(),
            key: key.to_string(),
            finished: false,
        })
    }

    /// Starts a fill of `key` only if none is in progress.
    pub fn try_lead(self: &Arc<Self>, key: &str) -> Option<FillGuard> {
        match self.join(key) {
            Role::Leader(guard) => Some(guard),
            Role::Follower(_) => None,
        }
    }

    fn finish(&self, key: &str, state: FillState) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = pending.remove(key) {
            let _ = sender.send(state);
        }
    }
}

/// The leader's duty to report how its fill ended (dropping it reports "not stored").
#[derive(Debug)]
pub struct FillGuard {
    fills: Arc<Fills>,
    key: String,
    finished: bool,
}

impl FillGuard {
    /// Reports the end of the fill.
    pub fn finish(mut self, stored: bool) {
        self.finished = true;
        let state = if stored {
            FillState::Stored
        } else {
            FillState::NotStored
        };
        self.fills.finish(&self.key, state);
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.fills.finish(&self.key, FillState::NotStored);
        }
    }
}

/// Waits until the fill is no longer pending.
pub async fn wait(mut receiver: watch::Receiver<FillState>) -> FillState {
    loop {
        let state = *receiver.borrow_and_update();
        if state != FillState::Pending {
            return state;
        }
        if receiver.changed().await.is_err() {
            return FillState::NotStored;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_learn_how_the_fill_ended() {
        let fills = Arc::new(Fills::default());
        let Role::Leader(guard) = fills.join("k") else {
            panic!("first is leader")
        };
        let Role::Follower(rx) = fills.join("k") else {
            panic!("second follows")
        };
        assert!(fills.try_lead("k").is_none());
        guard.finish(true);
        assert_eq!(wait(rx).await, FillState::Stored);
        assert!(matches!(fills.join("k"), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_means_not_stored() {
        let fills = Arc::new(Fills::default());
        let Role::Leader(guard) = fills.join("k") else {
            panic!()
        };
        let Role::Follower(rx) = fills.join("k") else {
            panic!()
        };
        drop(guard);
        assert_eq!(wait(rx).await, FillState::NotStored);
    }
}
