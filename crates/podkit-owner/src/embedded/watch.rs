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
use super::state::{bounds_are_empty, in_bounds, key_bounds, Bounds, EVENT_DELETE, EVENT_PUT};

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

/// Serves one Watch stream until the client goes away. A client that closes its side
/// still gets the events of the watchers it made.
pub async fn session(
    core: SharedCore,
    mut requests: tonic::Streaming<PbWatchRequest>,
    out: Outbox,
    header: Header,
) {
    let published = lock(&core).subscribe();
    let mut stream = Stream {
        core,
        out,
        header,
        published,
        watchers: BTreeMap::new(),
        next_id: 0,
    };
    let mut requests_open = true;
    loop {
        let alive = tokio::select! {
            request = requests.message(), if requests_open => match request {
                Ok(Some(request)) => stream.request(request).await,
                // Half-closed: the watchers it made go on; with none, the stream is done.
                Ok(None) => {
                    requests_open = false;
                    !stream.watchers.is_empty()
                }
                Err(_) => false,
            },
            revision = stream.published.recv() => match revision {
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

/// etcd's messages for watches refused at creation.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

struct Stream {
    core: SharedCore,
    out: Outbox,
    header: Header,
    published: broadcast::Receiver<Published>,
    watchers: BTreeMap<i64, Watcher>,
    /// The next id to give a watcher that asks for none; ids are never reused.
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
                // Cancelling a watcher that is not there gets no answer, as in etcd.
                if self.watchers.remove(&cancel.watch_id).is_none() {
                    return true;
                }
                let revision = lock(&self.core).state().revision();
                let mut response = self.response(revision, cancel.watch_id);
                response.canceled = true;
                self.send(response).await
            }
            Some(PbWatchRequestUnion::ProgressRequest(_)) => self.progress().await,
            None => true,
        }
    }

    /// Answers a progress request with the current revision, after every event up to it
    /// has been sent; a stream without watchers gets no answer.
    async fn progress(&mut self) -> bool {
        let current = lock(&self.core).state().revision();
        // Everything up to `current` was published before the lock was released.
        loop {
            match self.published.try_recv() {
                Ok(revision) => {
                    if !self.deliver(&revision).await {
                        return false;
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    if !self.catch_up().await {
                        return false;
                    }
                }
                Err(_) => break,
            }
        }
        if self.watchers.is_empty() {
            return true;
        }
        self.send(self.response(current, -1)).await
    }

    /// A refusal of a watcher at creation, as etcd words it.
    async fn refuse(&self, revision: i64, reason: &str) -> bool {
        let mut response = self.response(revision, -1);
        response.created = true;
        response.canceled = true;
        response.cancel_reason = reason.to_string();
        self.send(response).await
    }

    async fn create(&mut self, asked_id: i64, start: i64, mut watcher: Watcher) -> bool {
        let (current, backlog) = {
            let core = lock(&self.core);
            let current = core.state().revision();
            let backlog = (start > 0 && start <= current).then(|| core.backlog(start));
            (current, backlog)
        };
        if self.watchers.contains_key(&asked_id) {
            return self.refuse(current, DUPLICATE_ID).await;
        }
        if bounds_are_empty(&watcher.bounds) {
            return self.refuse(current, EMPTY_RANGE).await;
        }
        let id = if asked_id != 0 {
            asked_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        let mut created = self.response(current, id);
        created.created = true;
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
                // One response per revision, as etcd sends them.
                for (revision, events) in &revisions {
                    let events = watcher.select(events);
                    if events.is_empty() {
                        continue;
                    }
                    let mut response = self.response(*revision, id);
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
    async fn deliver(&mut self, published: &Published) -> bool {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            if !self.deliver_to(id, published).await {
                return false;
            }
        }
        true
    }

    async fn deliver_to(&mut self, id: i64, (revision, events): &Published) -> bool {
        let Some(watcher) = self.watchers.get_mut(&id) else {
            return true;
        };
        if *revision < watcher.next {
            return true;
        }
        watcher.next = revision + 1;
        let selected = watcher.select(events);
        if selected.is_empty() {
            return true;
        }
        let mut response = self.response(*revision, id);
        response.events = selected;
        self.send(response).await
    }

    /// After falling behind the broadcast, each watcher reads what it missed from the
    /// history; one whose next revision has left the history is cancelled with the
    /// compact revision, so that it knows to start again.
    async fn catch_up(&mut self) -> bool {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let next = self.watchers[&id].next;
            let backlog = lock(&self.core).backlog(next);
            match backlog {
                Backlog::Events(revisions) => {
                    for revision in &revisions {
                        if !self.deliver_to(id, revision).await {
                            return false;
                        }
                    }
                }
                Backlog::Compacted(oldest) => {
                    self.watchers.remove(&id);
                    let revision = lock(&self.core).state().revision();
                    let mut cancelled = self.response(revision, id);
                    cancelled.canceled = true;
                    cancelled.compact_revision = oldest;
                    if !self.send(cancelled).await {
                        return false;
                    }
                }
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
