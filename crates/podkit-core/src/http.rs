//! Serving HTTP with the contract: a connection cap, header timeouts, HTTP/1.1 and
//! HTTP/2 (prior knowledge), and a graceful drain when shutdown starts.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::shutdown::Shutdown;
use crate::splice::SpliceStream;

/// Errors a response body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type served by podkit's HTTP components.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `bytes` whole.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A response with a status, a content type and a whole body.
pub fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    resp
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body)
}

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Handles one request.
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request<Incoming>, ConnInfo) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        self(req, conn)
    }
}

/// Which HTTP versions a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// HTTP/1.1, or HTTP/2 with prior knowledge (h2c), detected from the first bytes.
    Auto,
    /// HTTP/2 only (negotiated by ALPN).
    Http2,
    /// HTTP/1.1 only.
    Http1,
}

/// Turns an accepted TCP stream into the stream HTTP is spoken on (e.g. a TLS handshake).
pub trait Accept: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Completes the handshake; the error closes this connection only.
    fn accept(
        &self,
        stream: TcpStream,
    ) -> impl Future<Output = std::io::Result<(Self::Io, Protocols)>> + Send;

    /// Whether connections are TLS.
    fn is_tls(&self) -> bool;
}

/// Plain TCP: HTTP/1.1 or h2c.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Accept for PlainTcp {
    type Io = SpliceStream;

    async fn accept(&self, stream: TcpStream) -> std::io::Result<(SpliceStream, Protocols)> {
        Ok((SpliceStream::new(stream), Protocols::Auto))
    }

    fn is_tls(&self) -> bool {
        false
    }
}

/// Limits of one HTTP server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slowloris defence); also how long
    /// an idle keep-alive connection is kept, and the limit for a TLS handshake.
    pub header_read_timeout: Duration,
    /// Largest request head buffered (HTTP/1); larger ones get 431.
    pub max_header_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// A component's whole HTTP serving life: binds `addr` (named `flag` in a bind error), logs
/// what it serves, tells the runner start-up is done ([`crate::Context::started`]), and
/// serves `handler` with default limits until shutdown.
pub async fn serve_component<H: Handler>(
    flag: &str,
    addr: SocketAddr,
    what: &str,
    ctx: &crate::Context,
    handler: H,
) -> Result<(), crate::ComponentError> {
    let listener = crate::component::bind(flag, addr).await?;
    tracing::info!(listen = %listener.local_addr().unwrap_or(addr), "serving {what}");
    ctx.started();
    serve(
        listener,
        handler,
        ctx.shutdown.clone(),
        ServeOptions::default(),
    )
    .await;
    Ok(())
}

/// Serves `handler` on plain TCP; see [`serve_with`].
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    shutdown: Shutdown,
    options: ServeOptions,
) {
    serve_with(listener, PlainTcp, handler, shutdown, options).await
}

/// Serves `handler` on `listener` until `shutdown` triggers, then stops accepting and
/// returns once every open connection has finished its in-flight requests.
pub async fn serve_with<A: Accept, H: Handler>(
    listener: TcpListener,
    acceptor: A,
    handler: H,
    shutdown: Shutdown,
    options: ServeOptions,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(options.max_header_bytes.max(8192) as u32);
    let builder = Arc::new(builder);
    let local = listener.local_addr().ok();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.triggered() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of descriptors or a client that reset before accept: back off a
                    // moment rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.triggered() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn_info = ConnInfo {
            peer,
            local: stream.local_addr().ok().or(local).unwrap_or(peer),
            tls: acceptor.is_tls(),
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let graceful = graceful.clone();
        let handshake_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
            let (io, protocols) = match accepted {
                Ok(Ok(pair)) => pair,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler.handle(req, conn_info).await) }
            });
            let io = TokioIo::new(io);
            let result = match protocols {
                Protocols::Auto => {
                    graceful
                        .watch(
                            builder
                                .serve_connection_with_upgrades(io, service)
                                .into_owned(),
                        )
                        .await
                }
                Protocols::Http2 => {
                    let h2 = (*builder).clone().http2_only();
                    graceful
                        .watch(h2.serve_connection(io, service).into_owned())
                        .await
                }
                Protocols::Http1 => {
                    let h1 = (*builder).clone().http1_only();
                    graceful
                        .watch(h1.serve_connection_with_upgrades(io, service).into_owned())
                        .await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    match Arc::try_unwrap(graceful) {
        Ok(graceful) => graceful.shutdown().await,
        Err(shared) => {
            // Connection tasks still hold a handle: wait until they are all done.
            while Arc::strong_count(&shared) > 1 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The decoded `key=value` pairs of a URI's query string, in order.
pub fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (as space) of a query component; bad escapes stay as is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode() {
        let uri: http::Uri = "/topz?format=json&sort=cpu&q=a%20b+c&flag".parse().unwrap();
        assert_eq!(
            query_pairs(&uri),
            vec![
                ("format".into(), "json".into()),
                ("sort".into(), "cpu".into()),
                ("q".into(), "a b c".into()),
                ("flag".into(), "".into()),
            ]
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }
}
