//! The store the ownership primitives stand on, with exactly what chapter 9 needs: keys
//! with create and modification revisions, create-if-absent, delete-if-still-ours, TTL
//! leases with keep-alive, and watching a key's deletion from a revision. It speaks etcd's
//! v3 API, so it talks to an etcd cluster or to any server that speaks that API.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

/// Longest a single request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the request.
    #[error("store {endpoints}: {message}")]
    Unavailable { endpoints: String, message: String },
    /// A lease is gone (expired or revoked).
    #[error("lease {0:x} has expired")]
    LeaseExpired(i64),
    /// A `--store` value that is not a list of endpoints.
    #[error("'{0}' is not etcd://host:port[,host:port...]")]
    BadUrl(String),
}

/// A key as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key: it orders waiters and is the fencing token.
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Entry {
    fn from_kv(kv: &etcd_client::KeyValue) -> Entry {
        Entry {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }
}

/// A connection to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Client,
    endpoints: String,
}

/// The endpoints of `etcd://host:port[,host:port...]` (or a bare list).
pub fn parse_endpoints(url: &str) -> Result<Vec<String>, StoreError> {
    let list = url
        .strip_prefix("etcd://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let endpoints: Vec<String> = list
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.starts_with("http://") || h.starts_with("https://") {
                h.to_string()
            } else {
                format!("http://{h}")
            }
        })
        .collect();
    let valid = endpoints.iter().all(|e| {
        e.rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    });
    if endpoints.is_empty() || !valid {
        return Err(StoreError::BadUrl(url.to_string()));
    }
    Ok(endpoints)
}

impl Store {
    /// Connects to `url` (`etcd://host:port[,host:port...]`).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let endpoints = parse_endpoints(url)?;
        let joined = endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Unavailable {
                endpoints: joined.clone(),
                message: e.to_string(),
            })?;
        Ok(Store {
            client,
            endpoints: joined,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            endpoints: self.endpoints.clone(),
            message: e.to_string(),
        }
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, op).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.error(format!("no answer within {REQUEST_TIMEOUT:?}"))),
        }
    }

    /// Runs `op` on a clone of the client, again (up to three times) when it could not
    /// even connect to the member it was sent to: a member that is down must not fail a
    /// request the others can serve. A request that was sent is never repeated.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            match self.bounded(op(self.client.clone())).await {
                Err(StoreError::Unavailable { message, .. })
                    if attempt < 3 && message.contains("tcp connect error") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// A new lease of `ttl` (whole seconds, at least one).
    pub async fn grant(&self, ttl: Duration) -> Result<i64, StoreError> {
        let seconds = ttl.as_secs().max(1) as i64;
        let granted = self
            .call(|mut c| async move { c.lease_grant(seconds, None).await })
            .await?;
        Ok(granted.id())
    }

    /// Renews `lease` once; the error says when it is already gone.
    pub async fn keep_alive(&self, lease: i64) -> Result<Duration, StoreError> {
        let (mut keeper, mut stream) = self
            .call(|mut c| async move { c.lease_keep_alive(lease).await })
            .await?;
        self.bounded(keeper.keep_alive()).await?;
        let answer = self.bounded(stream.message()).await?;
        match answer {
            Some(r) if r.ttl() > 0 => Ok(Duration::from_secs(r.ttl() as u64)),
            _ => Err(StoreError::LeaseExpired(lease)),
        }
    }

    /// Ends `lease`, deleting its keys in the same step. Returns whether it was still
    /// there (a lease already gone is as good as revoked).
    pub async fn revoke(&self, lease: i64) -> Result<bool, StoreError> {
        match self
            .call(|mut c| async move { c.lease_revoke(lease).await })
            .await
        {
            Ok(_) => Ok(true),
            Err(StoreError::Unavailable { message, .. }) if message.contains("not found") => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates `key` attached to `lease` unless it exists; returns the key as stored
    /// (ours, or the one that was there).
    pub async fn create(&self, key: &str, value: &[u8], lease: i64) -> Result<Entry, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |h| h.revision());
            return Ok(Entry {
                key: key.to_string(),
                value: value.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                lease,
            });
        }
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                if let Some(kv) = get.kvs().first() {
                    return Ok(Entry::from_kv(kv));
                }
            }
        }
        Err(self.error(format!("{key} vanished while being created")))
    }

    /// Like [`Store::create`], and in the same transaction reads the oldest key under
    /// `prefix`: one round trip tells a contender whether it holds the lock.
    pub async fn create_and_first(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
        prefix: &str,
    ) -> Result<(Entry, Option<Entry>), StoreError> {
        let first = || {
            TxnOp::get(
                prefix,
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Ascend)
                        .with_limit(1),
                ),
            )
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease))),
                first(),
            ])
            .or_else([TxnOp::get(key, None), first()]);
        let response = self
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let gets: Vec<Option<Entry>> = response
            .op_responses()
            .into_iter()
            .filter_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get.kvs().first().map(Entry::from_kv)),
                _ => None,
            })
            .collect();
        let (ours, first) = if response.succeeded() {
            let ours = Entry {
                key: key.to_string(),
                value: value.to_vec(),
                create_revision: revision,
                mod_revision: revision,
                lease,
            };
            (Some(ours), gets.into_iter().next().flatten())
        } else {
            let mut gets = gets.into_iter();
            (gets.next().flatten(), gets.next().flatten())
        };
        let ours = ours.ok_or_else(|| self.error(format!("{key} vanished while being created")))?;
        Ok((ours, first))
    }

    /// The key, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let got = self
            .call(|mut c| async move { c.get(key, None).await })
            .await?;
        Ok(got.kvs().first().map(Entry::from_kv))
    }

    /// The keys under `prefix`, oldest creation first, and the store's revision.
    pub async fn prefix(&self, prefix: &str) -> Result<(Vec<Entry>, i64), StoreError> {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        let got = self
            .call(|mut c| {
                let options = options.clone();
                async move { c.get(prefix, Some(options)).await }
            })
            .await?;
        let revision = got.header().map_or(0, |h| h.revision());
        Ok((got.kvs().iter().map(Entry::from_kv).collect(), revision))
    }

    /// Returns once `key` is deleted (or already was) after `revision`, by watching:
    /// no polling.
    pub async fn wait_deleted(&self, key: &str, revision: i64) -> Result<(), StoreError> {
        let mut stream = self
            .call(|mut c| async move {
                c.watch(
                    key,
                    Some(WatchOptions::new().with_start_revision(revision + 1)),
                )
                .await
            })
            .await?;
        // Deleted between our read and the watch's start: the watch replays it. A key
        // that no longer exists at all also ends the wait.
        if self.get(key).await?.is_none() {
            return Ok(());
        }
        loop {
            let message = stream.message().await.map_err(|e| self.error(e))?;
            let Some(response) = message else {
                return Err(self.error("the watch ended"));
            };
            if response.canceled() {
                return Err(self.error(format!("watch cancelled: {}", response.cancel_reason())));
            }
            if response
                .events()
                .iter()
                .any(|e| e.event_type() == EventType::Delete)
            {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists() {
        assert_eq!(
            parse_endpoints("etcd://10.0.0.1:2379,10.0.0.2:2379").unwrap(),
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(
            parse_endpoints("127.0.0.1:2379").unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert!(parse_endpoints("etcd://").is_err());
        assert!(parse_endpoints("etcd://host").is_err());
    }
}
