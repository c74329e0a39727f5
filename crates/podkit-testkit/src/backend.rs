//! An in-process HTTP backend for proxy tests: it names itself in every response, can be
//! made unready, slow, failing or hanging, streams large bodies, echoes upgraded
//! connections, counts what it served, and can be killed (every connection dropped at
//! once) and started again on the same port.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, Infallible>;

/// What the backend does with requests other than `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer normally.
    Serve,
    /// Answer 500 to everything.
    Fail,
    /// Accept the request and never answer.
    Hang,
}

#[derive(Debug)]
struct State {
    name: String,
    ready: AtomicBool,
    mode: Mutex<Mode>,
    /// 0 means Serve, 1 Fail, 2 Hang (mirrors `mode` for lock-free reads).
    mode_code: AtomicU16,
    requests: AtomicU64,
    connections: AtomicU64,
    delay_ms: AtomicU64,
    paths: Mutex<HashMap<String, u64>>,
    last_headers: Mutex<Vec<(String, String)>>,
    last_target: Mutex<String>,
}

/// A running test backend; dropping it kills it.
#[derive(Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Backend {
    /// Starts a backend named `name` on a free port.
    pub fn start(name: &str) -> Backend {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a backend on `addr` (e.g. the address of a killed one).
    pub fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let state = Arc::new(State {
            name: name.to_string(),
            ready: AtomicBool::new(true),
            mode: Mutex::new(Mode::Serve),
            mode_code: AtomicU16::new(0),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
            paths: Mutex::new(HashMap::new()),
            last_headers: Mutex::new(Vec::new()),
            last_target: Mutex::new(String::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test backend runtime");
        let listener = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.set_reuseaddr(true).expect("reuseaddr");
            socket.bind(addr).expect("bind test backend");
            socket.listen(1024).expect("listen")
        });
        let addr = listener.local_addr().expect("local addr");
        let accept_state = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                let state = accept_state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets what `/ready` answers (200 or 503).
    pub fn set_ready(&self, ready: bool) {
        self.state.ready.store(ready, Ordering::SeqCst);
    }

    /// Sets how other requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        let code = match mode {
            Mode::Serve => 0,
            Mode::Fail => 1,
            Mode::Hang => 2,
        };
        self.state.mode_code.store(code, Ordering::SeqCst);
    }

    /// Delays every answer (other than `/ready`) by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests served, `/ready` probes excluded.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests for `path`, probes included.
    pub fn requests_for(&self, path: &str) -> u64 {
        let paths = self.state.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.get(path).copied().unwrap_or(0)
    }

    /// The headers of the last non-probe request.
    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.state
            .last_headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The request target of the last non-probe request, as it came on the wire.
    pub fn last_target(&self) -> String {
        self.state
            .last_target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kills the backend: the listener and every open connection are dropped at once.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

/// A query parameter's text, percent-decoded.
fn query_text(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| decode(v))
    })
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A body of `len` bytes whose byte i is i mod 251 (see [`origin`]'s `pattern`).
pub fn pattern_body(len: usize) -> Bytes {
    shifted_pattern_body(len, 0)
}

/// A body of `len` bytes whose byte i is (i + shift) mod 251: `pattern=N` gives shift N-1,
/// so that bodies of the same length differ.
pub fn shifted_pattern_body(len: usize, shift: usize) -> Bytes {
    (0..len)
        .map(|i| ((i + shift) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// `/origin/...`: an origin whose caching headers the query sets, for cache tests.
///
/// `cc` (Cache-Control), `etag` (answers 304 to a matching If-None-Match), `lm` (Last-Modified
/// as Unix seconds; answers 304 to If-Modified-Since), `expires` (seconds from now,
/// may be negative), `vary` (a header name; the body echoes its value), `status`, `size`
/// (body bytes: `o`s, or with `pattern=N` byte i is (i + N - 1) mod 251, so that a
/// misplaced block shows), `age`, `loc` (Location), `cloc` (Content-Location), `vary_from` (send `vary` only from this request for
/// the path on, to change Vary under a stored response), `etag304` (the entity tag a 304
/// carries instead of `etag`, to answer about another representation). The body
/// otherwise names the backend and counts the requests for this path: `origin-name 3`.
fn origin(state: &State, req: &Request<Incoming>, count: u64) -> Response<Body> {
    let now = std::time::SystemTime::now();
    let etag = query_text(req, "etag").map(|t| format!("\"{t}\""));
    let modified = query(req, "lm").map(|epoch| std::time::UNIX_EPOCH + Duration::from_secs(epoch));
    let not_modified = match (&etag, req.headers().get(http::header::IF_NONE_MATCH)) {
        (Some(tag), Some(inm)) => inm.to_str().unwrap_or("").contains(tag.as_str()),
        _ => match (modified, req.headers().get(http::header::IF_MODIFIED_SINCE)) {
            (Some(lm), Some(ims)) => ims
                .to_str()
                .ok()
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .is_some_and(|since| {
                    lm.duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                        <= since
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                }),
            _ => false,
        },
    };
    let vary =
        query_text(req, "vary").filter(|_| query(req, "vary_from").is_none_or(|n| count >= n));
    let body = match (query(req, "size"), &vary) {
        (Some(size), _) => match query(req, "pattern") {
            Some(n) if n >= 1 => shifted_pattern_body(size as usize, (n - 1) as usize),
            _ => Bytes::from(vec![b'o'; size as usize]),
        },
        (None, Some(name)) => {
            let value = req
                .headers()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            Bytes::from(format!("{} {count} {value}", state.name))
        }
        (None, None) => Bytes::from(format!("{} {count}", state.name)),
    };
    let status = if not_modified {
        StatusCode::NOT_MODIFIED
    } else {
        query(req, "status")
            .and_then(|c| StatusCode::from_u16(c as u16).ok())
            .unwrap_or(StatusCode::OK)
    };
    let mut resp = whole(
        status,
        &state.name,
        if not_modified { Bytes::new() } else { body },
    );
    let h = resp.headers_mut();
    h.insert(
        http::header::DATE,
        httpdate::fmt_http_date(now).parse().expect("date"),
    );
    let mut set = |name: http::header::HeaderName, value: String| {
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
    };
    if let Some(cc) = query_text(req, "cc") {
        set(http::header::CACHE_CONTROL, cc);
    }
    let etag = match query_text(req, "etag304") {
        Some(other) if not_modified => Some(format!("\"{other}\"")),
        _ => etag,
    };
    if let Some(tag) = etag {
        set(http::header::ETAG, tag);
    }
    if let Some(lm) = modified {
        set(http::header::LAST_MODIFIED, httpdate::fmt_http_date(lm));
    }
    if let Some(offset) = query_text(req, "expires").and_then(|e| e.parse::<i64>().ok()) {
        let at = if offset >= 0 {
            now + Duration::from_secs(offset as u64)
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        };
        set(http::header::EXPIRES, httpdate::fmt_http_date(at));
    }
    if let Some(name) = vary {
        set(http::header::VARY, name);
    }
    if let Some(age) = query(req, "age") {
        set(http::header::AGE, age.to_string());
    }
    if let Some(loc) = query_text(req, "loc") {
        set(http::header::LOCATION, loc);
    }
    if let Some(loc) = query_text(req, "cloc") {
        set(http::header::CONTENT_LOCATION, loc);
    }
    set(
        http::header::HeaderName::from_static("x-origin-count"),
        count.to_string(),
    );
    resp
}

fn whole(status: StatusCode, name: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "x-backend",
        name.parse().expect("backend names are header-safe"),
    );
    resp
}

async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    *state
        .paths
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(path.clone())
        .or_default() += 1;
    if path == "/ready" {
        let status = if state.ready.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return whole(status, &state.name, "ready\n");
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    *state.last_target.lock().unwrap_or_else(|p| p.into_inner()) = req.uri().to_string();
    *state.last_headers.lock().unwrap_or_else(|p| p.into_inner()) = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    match state.mode_code.load(Ordering::SeqCst) {
        1 => return whole(StatusCode::INTERNAL_SERVER_ERROR, &state.name, "failing\n"),
        2 => std::future::pending::<()>().await,
        _ => {}
    }
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(ms) = query(&req, "sleep_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path.starts_with("/origin") {
        let count = state
            .paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&path)
            .copied()
            .unwrap_or(0);
        return origin(&state, &req, count);
    }
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        return whole(status, &state.name, state.name.clone());
    }
    match path.as_str() {
        "/download" => download(&state.name, &req),
        "/echo" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            whole(StatusCode::OK, &state.name, body)
        }
        "/upgrade" => upgrade(&state.name, &mut req),
        _ => whole(StatusCode::OK, &state.name, state.name.clone()),
    }
}

/// `/download?bytes=N&chunk=C&chunk_ms=M`: N bytes in chunks of C, one every M ms.
fn download(name: &str, req: &Request<Incoming>) -> Response<Body> {
    let total = query(req, "bytes").unwrap_or(1 << 20);
    let chunk = query(req, "chunk").unwrap_or(64 * 1024).max(1);
    let pause = Duration::from_millis(query(req, "chunk_ms").unwrap_or(0));
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            let n = chunk.min(total - sent);
            if tx.send(Bytes::from(vec![b'x'; n as usize])).await.is_err() {
                return;
            }
            sent += n;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    });
    let mut resp = Response::new(ChannelBody(rx).boxed());
    resp.headers_mut()
        .insert("x-backend", name.parse().expect("header-safe name"));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, total.into());
    resp
}

/// Answers `101 Switching Protocols` and echoes every byte on the upgraded connection.
fn upgrade(name: &str, req: &mut Request<Incoming>) -> Response<Body> {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut resp = whole(StatusCode::SWITCHING_PROTOCOLS, name, "");
    resp.headers_mut()
        .insert(http::header::CONNECTION, "upgrade".parse().expect("static"));
    resp.headers_mut()
        .insert(http::header::UPGRADE, "echo".parse().expect("static"));
    resp
}

/// A response body fed by a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}
