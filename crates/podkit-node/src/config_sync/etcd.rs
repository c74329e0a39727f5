//! An etcd key as a configuration source: read once, then watched from the next revision,
//! so a change arrives as soon as it is committed, without polling. A broken watch is
//! re-established (the key is read again) after `retry`.

use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Client, ConnectOptions, EventType, WatchOptions};
use podkit_core::shutdown::Shutdown;
use tokio::sync::mpsc;

use super::source::Update;

/// Longest a connection attempt or a read may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Watches `key` until shutdown.
pub async fn watch(
    endpoints: Vec<String>,
    key: String,
    retry: Duration,
    tx: mpsc::Sender<Update>,
    shutdown: Shutdown,
) {
    loop {
        let error = tokio::select! {
            result = watch_once(&endpoints, &key, retry, &tx) => match result {
                Ok(()) => return,
                Err(error) => error,
            },
            _ = shutdown.triggered() => return,
        };
        if tx.send(Update::Failed(error)).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

/// Reads the key and follows it, reporting `Unchanged` every `every` while the watch is
/// healthy; returns `Ok` only when nobody listens any more.
async fn watch_once(
    endpoints: &[String],
    key: &str,
    every: Duration,
    tx: &mpsc::Sender<Update>,
) -> Result<(), String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), REQUEST_TIMEOUT)
        .with_keep_alive_while_idle(true);
    let at = endpoints.join(",");
    let mut client = Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| format!("etcd {at}: {e}"))?;
    let got = tokio::time::timeout(REQUEST_TIMEOUT, client.get(key, None))
        .await
        .map_err(|_| format!("etcd {at}: no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| format!("etcd {at}: {e}"))?;
    let revision = got.header().map_or(0, |h| h.revision());
    let first = match got.kvs().first() {
        Some(kv) => content(kv.value(), kv.mod_revision()),
        None => Update::Failed(format!("etcd key {key} does not exist")),
    };
    if tx.send(first).await.is_err() {
        return Ok(());
    }
    let mut stream = client
        .watch(
            key,
            Some(WatchOptions::new().with_start_revision(revision + 1)),
        )
        .await
        .map_err(|e| format!("etcd {at}: watch: {e}"))?;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        let message = tokio::select! {
            message = stream.message() => message.map_err(|e| format!("etcd {at}: watch: {e}"))?,
            _ = tick.tick() => {
                if tx.send(Update::Unchanged).await.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        let Some(response) = message else {
            return Err(format!("etcd {at}: the watch ended"));
        };
        if response.canceled() {
            return Err(format!(
                "etcd {at}: the watch was cancelled ({})",
                response.cancel_reason()
            ));
        }
        for event in response.events() {
            let update = match (event.event_type(), event.kv()) {
                (EventType::Put, Some(kv)) => content(kv.value(), kv.mod_revision()),
                (EventType::Delete, _) => Update::Failed(format!("etcd key {key} was deleted")),
                (EventType::Put, None) => continue,
            };
            if tx.send(update).await.is_err() {
                return Ok(());
            }
        }
    }
}

fn content(value: &[u8], revision: i64) -> Update {
    Update::Content {
        content: Bytes::copy_from_slice(value),
        version: format!("etcd-revision:{revision}"),
    }
}
