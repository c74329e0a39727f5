//! Watch streams: each gRPC Watch stream holds any number of watchers, each a key range
//! with filters and the next revision it has to see. A watcher that starts in the past
//! first gets the history from its start revision, then every revision as it is
//! published; a start older than the history kept is cancelled with the compact
//! revision, as etcd does.

use std::collections::BTreeMap;

use etcd_client::proto::{
    PbEvent, PbResponseHeader, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse,
};
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::core::{lock, Backlog, Published, SharedCore};
use super::state::{in_bounds, key_bounds, Bounds, EVENT_DELETE, EVENT_PUT};

/// etcd's WatchCreateRequest filters.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

/// Responses on their way to the client.
pub type Outbox = mpsc::Sender<Result<PbWatchResponse, Status>>;

/// Makes a response header at a revision.
pub type Header = std::sync::Arc<dyn Fn(i64) -> PbResponseHeader + Send + Sync>;

/// One watcher of a stream.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub bounds: Bounds,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    /// The first revision not yet sent to it.
    pub next: i64,
}

impl Watcher {
    /// The events of one revision that this watcher wants, shaped as it asked.
    pub fn select(&self, events: &[PbEvent]) -> Vec<PbEvent> {
        events
            .iter()
            .filter(|e| match e.r#type {
                EVENT_PUT => !self.no_put,
                EVENT_DELETE => !self.no_delete,
                _ => false,
            })
            .filter(|e| {
                e.kv.as_ref()
                    .is_some_and(|kv| in_bounds(&kv.key, &self.bounds))
            })
            .map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}

/// Serves one Watch stream until the client ends it or goes away.
pub async fn session(
    core: SharedCore,
    mut requests: tonic::Streaming<PbWatchRequest>,
    out: Outbox,
    header: Header,
) {
    let mut published = lock(&core).subscribe();
    let mut stream = Stream {
        core,
        out,
        header,
        watchers: BTreeMap::new(),
        next_id: 0,
    };
    loop {
        let alive = tokio::select! {
            request = requests.message() => match request {
                Ok(Some(request)) => stream.request(request).await,
                _ => false,
            },
            revision = published.recv() => match revision {
                Ok(revision) => stream.deliver(&revision).await,
                Err(broadcast::error::RecvError::Lagged(_)) => stream.catch_up().await,
                Err(broadcast::error::RecvError::Closed) => false,
            },
        };
        if !alive {
            return;
        }
    }
}

struct Stream {
    core: SharedCore,
    out: Outbox,
    header: Header,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
}

impl Stream {
    /// Sends a response; false once the client is gone.
    async fn send(&self, response: PbWatchResponse) -> bool {
        self.out.send(Ok(response)).await.is_ok()
    }

    fn response(&self, revision: i64, watch_id: i64) -> PbWatchResponse {
        PbWatchResponse {
            header: Some((self.header)(revision)),
            watch_id,
            ..PbWatchResponse::default()
        }
    }

    async fn request(&mut self, request: PbWatchRequest) -> bool {
        match request.request_union {
            Some(PbWatchRequestUnion::CreateRequest(create)) => {
                let filters = &create.filters;
                let watcher = Watcher {
                    bounds: key_bounds(&create.key, &create.range_end),
                    no_put: filters.contains(&FILTER_NOPUT),
                    no_delete: filters.contains(&FILTER_NODELETE),
                    prev_kv: create.prev_kv,
                    next: 0,
                };
                self.create(create.watch_id, create.start_revision, watcher)
                    .await
            }
            Some(PbWatchRequestUnion::CancelRequest(cancel)) => {
                self.watchers.remove(&cancel.watch_id);
                let revision = lock(&self.core).state().revision();
                let mut response = self.response(revision, cancel.watch_id);
                response.canceled = true;
                self.send(response).await
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                let revision = lock(&self.core).state().revision();
                self.send(self.response(revision, -1)).await
            }
            None => true,
        }
    }

    async fn create(&mut self, asked_id: i64, start: i64, mut watcher: Watcher) -> bool {
        let id = if asked_id != 0 {
            asked_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let (current, backlog) = {
            let core = lock(&self.core);
            let current = core.state().revision();
            let backlog = (start > 0 && start <= current).then(|| core.backlog(start));
            (current, backlog)
        };
        let mut created = self.response(current, id);
        created.created = true;
        if self.watchers.contains_key(&id) {
            created.canceled = true;
            created.cancel_reason = "etcdserver: duplicate watch ID".into();
            return self.send(created).await;
        }
        if !self.send(created).await {
            return false;
        }
        watcher.next = if start > current { start } else { current + 1 };
        match backlog {
            Some(Backlog::Compacted(oldest)) => {
                let mut cancelled = self.response(current, id);
                cancelled.canceled = true;
                cancelled.compact_revision = oldest;
                return self.send(cancelled).await;
            }
            Some(Backlog::Events(revisions)) => {
                let events: Vec<PbEvent> = revisions
                    .iter()
                    .flat_map(|(_, events)| watcher.select(events))
                    .collect();
                if !events.is_empty() {
                    let mut response = self.response(current, id);
                    response.events = events;
                    if !self.send(response).await {
                        return false;
                    }
                }
            }
            None => {}
        }
        self.watchers.insert(id, watcher);
        true
    }

    /// Sends one published revision to every watcher that has not seen it.
    async fn deliver(&mut self, (revision, events): &Published) -> bool {
        let mut responses = Vec::new();
        for (id, watcher) in self.watchers.iter_mut() {
            if *revision < watcher.next {
                continue;
            }
            watcher.next = revision + 1;
            let selected = watcher.select(events);
            if !selected.is_empty() {
                responses.push((*id, selected));
            }
        }
        for (id, events) in responses {
            let mut response = self.response(*revision, id);
            response.events = events;
            if !self.send(response).await {
                return false;
            }
        }
        true
    }

    /// After falling behind the broadcast, reads what was missed from the history.
    async fn catch_up(&mut self) -> bool {
        let missed: Vec<Published> = {
            let core = lock(&self.core);
            let from = self
                .watchers
                .values()
                .map(|w| w.next)
                .min()
                .unwrap_or(i64::MAX);
            match core.backlog(from) {
                Backlog::Events(events) => events,
                Backlog::Compacted(_) => Vec::new(),
            }
        };
        for revision in &missed {
            if !self.deliver(revision).await {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_client::proto::PbKeyValue;

    fn event(kind: i32, key: &str) -> PbEvent {
        PbEvent {
            r#type: kind,
            kv: Some(PbKeyValue {
                key: key.into(),
                ..PbKeyValue::default()
            }),
            prev_kv: Some(PbKeyValue::default()),
        }
    }

    #[test]
    fn a_watcher_selects_its_range_and_kinds() {
        let watcher = Watcher {
            bounds: key_bounds(b"a/", b"a0"),
            no_put: true,
            no_delete: false,
            prev_kv: false,
            next: 1,
        };
        let events = [
            event(EVENT_PUT, "a/1"),
            event(EVENT_DELETE, "a/2"),
            event(EVENT_DELETE, "b"),
        ];
        let selected = watcher.select(&events);
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].kv.as_ref().unwrap().key, b"a/2");
        assert!(selected[0].prev_kv.is_none());
        let one_key = Watcher {
            bounds: key_bounds(b"b", b""),
            no_put: false,
            no_delete: false,
            prev_kv: true,
            next: 1,
        };
        let selected = one_key.select(&events);
        assert_eq!(selected.len(), 1);
        assert!(selected[0].prev_kv.is_some());
    }
}
