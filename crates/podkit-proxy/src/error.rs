//! Why a request could not be proxied, and the status each reason answers with.

use http::StatusCode;

use podkit_core::http::{text, Body};

/// A proxying failure; its source decides the status code.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No backend of the pool is ready.
    #[error("no ready backend in pool {pool}")]
    NoBackend { pool: String },
    /// The backend refused or dropped the connection before answering.
    #[error("backend {backend}: {message}")]
    Upstream { backend: String, message: String },
    /// The backend did not answer in time.
    #[error("backend {backend} did not answer within the timeout")]
    Timeout { backend: String },
    /// The request body is larger than the limit.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// No route matches the request.
    #[error("no route for this host and path")]
    NoRoute,
    /// `only-if-cached` asked for a response the cache does not hold.
    #[error("not in the cache")]
    NotCached,
}

impl ProxyError {
    /// The status code answered to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoBackend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NotCached => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response answered to the client.
    pub fn into_response(self) -> http::Response<Body> {
        text(self.status(), format!("podkit: {self}\n"))
    }
}
