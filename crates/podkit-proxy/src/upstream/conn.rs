//! Keep-alive connections to one backend: idle HTTP/1.1 connections are kept and reused,
//! new ones are opened with a connect timeout. A connection goes back to the idle list
//! only after its response body was read to the end.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use podkit_core::http::Body;

/// Idle connections longer than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per backend.
const MAX_IDLE: usize = 512;

/// A connection to a backend, ready to send one request.
pub struct Connection {
    pub sender: SendRequest<Body>,
    /// Whether it was taken from the idle list (and might have been closed meanwhile).
    pub reused: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("reused", &self.reused)
            .finish()
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("resolving {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect: timed out")]
    Timeout,
    #[error("HTTP handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

/// The idle connections of one backend.
#[derive(Default)]
pub struct IdleConnections {
    idle: Mutex<Vec<(SendRequest<Body>, Instant)>>,
}

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.idle.lock().map(|v| v.len()).unwrap_or(0);
        f.debug_struct("IdleConnections").field("idle", &n).finish()
    }
}

impl IdleConnections {
    /// An idle connection that is still open, or a new one.
    pub async fn checkout(
        &self,
        authority: &Authority,
        connect_timeout: Duration,
    ) -> Result<Connection, ConnectError> {
        while let Some(mut sender) = self.pop() {
            if sender.is_closed() {
                continue;
            }
            // Idle connections are ready at once; one that is not is being closed.
            let ready =
                std::future::poll_fn(|cx| std::task::Poll::Ready(sender.poll_ready(cx))).await;
            match ready {
                std::task::Poll::Ready(Ok(())) => {
                    return Ok(Connection {
                        sender,
                        reused: true,
                    })
                }
                _ => continue,
            }
        }
        let sender = connect(authority, connect_timeout).await?;
        Ok(Connection {
            sender,
            reused: false,
        })
    }

    fn pop(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection whose exchange completed.
    pub fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }
}

/// A connection whose response is being read; it goes back to its backend's idle list
/// when the response body has been read to the end.
pub struct Reuse {
    sender: SendRequest<Body>,
    backend: std::sync::Arc<super::backend::Backend>,
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse")
            .field("backend", &self.backend.authority)
            .finish()
    }
}

impl Reuse {
    /// Pairs a connection with its backend.
    pub fn new(
        sender: SendRequest<Body>,
        backend: std::sync::Arc<super::backend::Backend>,
    ) -> Reuse {
        Reuse { sender, backend }
    }

    /// The exchange completed: the connection may carry another request.
    pub fn give_back(self) {
        self.backend.connections.give_back(self.sender);
    }
}

/// Opens a new connection to `authority`.
pub async fn connect(
    authority: &Authority,
    timeout: Duration,
) -> Result<SendRequest<Body>, ConnectError> {
    let attempt = async {
        let mut last = None;
        let addrs = tokio::net::lookup_host(authority.as_str())
            .await
            .map_err(|e| ConnectError::Resolve(authority.to_string(), e))?;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (sender, connection) = http1::Builder::new()
                        .handshake(TokioIo::new(stream))
                        .await?;
                    tokio::spawn(async move {
                        let _ = connection.with_upgrades().await;
                    });
                    return Ok(sender);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ConnectError::Io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
        })))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout)?
}
