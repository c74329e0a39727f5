//! The manager's side of the source API: lists items and fetches one item's data over
//! HTTP, validating what comes back ([`crate::api`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::api::{self, ApiError};

/// Why a call to the source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {error}")]
    Malformed { url: String, error: ApiError },
}

impl SourceError {
    /// Whether the source said the item does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SourceError::Status { status: 404, .. })
    }

    /// Whether fetching an item failed for a reason of the item's own (not found, or a
    /// malformed answer) rather than the source's being down: such a fetch counts as a
    /// failed attempt, so that the item is parked in the end instead of fetched forever.
    pub fn is_the_items_fault(&self) -> bool {
        self.is_not_found() || matches!(self, SourceError::Malformed { .. })
    }
}

/// A work-queue source at a base URL (`http://127.0.0.1:8000`).
#[derive(Clone, Debug)]
pub struct Source {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl Source {
    /// A source at `base` (trailing `/` and a trailing `/api/v1/items` are dropped).
    pub fn new(base: &str, timeout: Duration) -> Source {
        let base = base.trim_end_matches('/');
        let base = base.strip_suffix(api::ITEMS_PATH).unwrap_or(base);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Source {
            base: base.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &str) -> Result<(String, Bytes), SourceError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |message: String| SourceError::Unreachable {
            url: url.clone(),
            message,
        };
        let uri: http::Uri = url.parse().map_err(|e| unreachable(format!("{e}")))?;
        let call = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| unreachable(format!("{e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(format!("{e}")))?
                .to_bytes();
            if !status.is_success() {
                return Err(SourceError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                });
            }
            Ok(body)
        };
        let body = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        Ok((url, body))
    }

    /// `GET /api/v1/items`.
    pub async fn list(&self) -> Result<Vec<String>, SourceError> {
        let (url, body) = self.get(api::ITEMS_PATH).await?;
        api::parse_item_list(&body).map_err(|error| SourceError::Malformed { url, error })
    }

    /// `GET /api/v1/items/<name>`: the item's data.
    pub async fn item(&self, name: &str) -> Result<Value, SourceError> {
        let path = format!("{}/{}", api::ITEMS_PATH, api::escape_name(name));
        let (url, body) = self.get(&path).await?;
        api::parse_item(&body).map_err(|error| SourceError::Malformed { url, error })
    }
}
