//! Connections to one server of a pool: `server_connections` connections, each carrying
//! the requests of every client in order (pipelined), a reply matched to each request,
//! requests failed together when the connection fails or the oldest one passes `timeout`
//! (as nutcracker closes the connection), and the failures counted for ejection.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::{memcache, resp};

/// What a server answers to a request, for finding where the reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// One RESP frame.
    Redis,
    /// `VALUE` blocks and `END`.
    MemcacheGet,
    /// One line.
    MemcacheLine,
    /// Nothing (memcache `noreply`).
    None,
}

/// Why a request to a server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    #[error("Connection refused")]
    Refused,
    #[error("Connection timed out")]
    TimedOut,
    #[error("Connection reset by peer")]
    Reset,
    #[error("Protocol error from server")]
    Protocol,
    /// Every server of the pool is ejected.
    #[error("Connection refused")]
    NoServer,
}

/// Per-server metric handles.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    pub requests: Counter,
    pub request_bytes: Counter,
    pub responses: Counter,
    pub response_bytes: Counter,
    pub errors: Counter,
    pub timeouts: Counter,
    pub ejections: Counter,
    pub in_flight: Gauge,
    pub connections: Gauge,
    pub latency: Histogram,
}

/// Counters in nutcracker's stats, per server.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub server_eof: AtomicU64,
    pub server_err: AtomicU64,
    pub server_timedout: AtomicU64,
    pub server_ejected_at: AtomicU64,
    pub requests: AtomicU64,
    pub request_bytes: AtomicU64,
    pub responses: AtomicU64,
    pub response_bytes: AtomicU64,
    pub in_queue: AtomicU64,
}

/// Health for ejection (`auto_eject_hosts`).
#[derive(Debug, Default)]
struct Health {
    failures: u32,
    ejected_until: Option<Instant>,
}

/// Settings a server takes from its pool.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeout: Option<Duration>,
    pub connections: u32,
    pub auto_eject: bool,
    pub failure_limit: u32,
    pub retry_timeout: Duration,
    /// Commands sent first on every new connection (AUTH, SELECT), each expecting +OK.
    pub init: Vec<Bytes>,
}

/// A reply on its way.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<Result<Bytes, ServerError>>);

impl Pending {
    /// Waits for the reply.
    pub async fn wait(self) -> Result<Bytes, ServerError> {
        self.0.await.unwrap_or(Err(ServerError::Reset))
    }
}

struct Job {
    request: Bytes,
    reply: Reply,
    answer: oneshot::Sender<Result<Bytes, ServerError>>,
    sent: Instant,
}

/// One server.
pub struct Server {
    pub name: String,
    pub address: String,
    pub weight: u32,
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
    health: Mutex<Health>,
    settings: Settings,
    pub metrics: ServerMetrics,
    pub stats: Arc<ServerStats>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish()
    }
}

impl Server {
    /// Starts the server's connection tasks (they connect on first use, or now when
    /// `preconnect`).
    pub fn start(
        name: String,
        address: String,
        weight: u32,
        settings: Settings,
        metrics: ServerMetrics,
        preconnect: bool,
    ) -> Arc<Server> {
        let stats = Arc::new(ServerStats::default());
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..settings.connections.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            receivers.push(rx);
        }
        let server = Arc::new(Server {
            name,
            address,
            weight,
            senders,
            next: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
            settings,
            metrics,
            stats,
        });
        for rx in receivers {
            tokio::spawn(connection(Arc::downgrade(&server), rx, preconnect));
        }
        server
    }

    /// Queues `request` on one of the server's connections at once; the returned
    /// [`Pending`] gives the reply (empty for `Reply::None`).
    pub fn send(&self, request: Bytes, reply: Reply) -> Pending {
        let (answer, answered) = oneshot::channel();
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        self.metrics.requests.inc();
        self.metrics.request_bytes.inc_by(request.len() as u64);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .request_bytes
            .fetch_add(request.len() as u64, Ordering::Relaxed);
        self.metrics.in_flight.inc();
        let job = Job {
            request,
            reply,
            answer,
            sent: Instant::now(),
        };
        if let Err(mpsc::error::SendError(job)) = self.senders[index].send(job) {
            finish(self, job, Err(ServerError::Reset));
        }
        Pending(answered)
    }

    /// Whether ejection keeps it out of its pool at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.ejected_until.is_some_and(|until| now < until)
    }

    fn record(&self, ok: bool) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            health.failures = 0;
            return;
        }
        self.metrics.errors.inc();
        if !self.settings.auto_eject {
            return;
        }
        health.failures += 1;
        if health.failures >= self.settings.failure_limit.max(1) {
            health.failures = 0;
            health.ejected_until = Some(Instant::now() + self.settings.retry_timeout);
            self.metrics.ejections.inc();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            self.stats.server_ejected_at.store(now, Ordering::Relaxed);
            tracing::warn!(server = %self.name, seconds = self.settings.retry_timeout.as_secs_f64(), "server ejected");
        }
    }
}

/// One connection: writes queued requests in order, reads replies in order.
async fn connection(
    server: std::sync::Weak<Server>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    preconnect: bool,
) {
    let mut stream: Option<TcpStream> = None;
    let mut buf = BytesMut::with_capacity(16 << 10);
    let mut inflight: VecDeque<Job> = VecDeque::new();
    if preconnect {
        if let Some(s) = server.upgrade() {
            stream = open(&s).await.ok();
        }
    }
    loop {
        let Some(s) = server.upgrade() else { return };
        let deadline = match (s.settings.timeout, inflight.front()) {
            (Some(timeout), Some(oldest)) => Some(oldest.sent + timeout),
            _ => None,
        };
        drop(s);
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { return };
                let Some(s) = server.upgrade() else { return };
                if stream.is_none() {
                    match open(&s).await {
                        Ok(opened) => stream = Some(opened),
                        Err(err) => {
                            s.record(false);
                            finish(&s, job, Err(err));
                            continue;
                        }
                    }
                }
                let mut queued = vec![job];
                while let Ok(more) = jobs.try_recv() {
                    queued.push(more);
                    if queued.len() >= 256 {
                        break;
                    }
                }
                // One request is written as it is; several are joined into one write.
                let batch = match queued.as_slice() {
                    [one] => one.request.clone(),
                    many => {
                        let mut joined =
                            BytesMut::with_capacity(many.iter().map(|j| j.request.len()).sum());
                        for job in many {
                            joined.extend_from_slice(&job.request);
                        }
                        joined.freeze()
                    }
                };
                let written = match stream.as_mut() {
                    Some(conn) => conn.write_all(&batch).await,
                    None => Err(std::io::ErrorKind::NotConnected.into()),
                };
                if written.is_err() {
                    s.stats.server_err.fetch_add(1, Ordering::Relaxed);
                    s.record(false);
                    stream = None;
                    for job in inflight.drain(..).chain(queued) {
                        finish(&s, job, Err(ServerError::Reset));
                    }
                    continue;
                }
                for job in queued {
                    if job.reply == Reply::None {
                        finish(&s, job, Ok(Bytes::new()));
                    } else {
                        inflight.push_back(job);
                    }
                }
                s.stats.in_queue.store(inflight.len() as u64, Ordering::Relaxed);
            }
            read = read_more(stream.as_mut(), &mut buf), if stream.is_some() && !inflight.is_empty() => {
                let Some(s) = server.upgrade() else { return };
                match read {
                    Ok(0) | Err(_) => {
                        if matches!(read, Ok(0)) {
                            s.stats.server_eof.fetch_add(1, Ordering::Relaxed);
                        } else {
                            s.stats.server_err.fetch_add(1, Ordering::Relaxed);
                        }
                        s.record(false);
                        stream = None;
                        buf.clear();
                        for job in inflight.drain(..) {
                            finish(&s, job, Err(ServerError::Reset));
                        }
                    }
                    Ok(_) => {
                        while let Some(front) = inflight.front() {
                            match reply_len(&buf, front.reply) {
                                Ok(Some(len)) => {
                                    let reply = buf.split_to(len).freeze();
                                    let job = inflight.pop_front().expect("front exists");
                                    s.record(true);
                                    s.metrics.latency.observe(job.sent.elapsed().as_secs_f64());
                                    finish(&s, job, Ok(reply));
                                }
                                Ok(None) => break,
                                Err(()) => {
                                    s.record(false);
                                    stream = None;
                                    buf.clear();
                                    for job in inflight.drain(..) {
                                        finish(&s, job, Err(ServerError::Protocol));
                                    }
                                    break;
                                }
                            }
                        }
                        s.stats.in_queue.store(inflight.len() as u64, Ordering::Relaxed);
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => {
                let Some(s) = server.upgrade() else { return };
                // Like nutcracker: the whole connection goes, with every request on it.
                s.stats.server_timedout.fetch_add(1, Ordering::Relaxed);
                s.metrics.timeouts.inc();
                s.record(false);
                stream = None;
                buf.clear();
                for job in inflight.drain(..) {
                    finish(&s, job, Err(ServerError::TimedOut));
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn read_more(stream: Option<&mut TcpStream>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match stream {
        Some(stream) => {
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 << 10);
            }
            stream.read_buf(buf).await
        }
        None => std::future::pending().await,
    }
}

fn reply_len(buf: &[u8], reply: Reply) -> Result<Option<usize>, ()> {
    match reply {
        Reply::Redis => match resp::check(buf) {
            Ok(len) => Ok(Some(len)),
            Err(resp::Error::Incomplete) => Ok(None),
            Err(resp::Error::Invalid(_)) => Err(()),
        },
        Reply::MemcacheGet => memcache::reply_len(buf, true).map_err(|_| ()),
        Reply::MemcacheLine => memcache::reply_len(buf, false).map_err(|_| ()),
        Reply::None => Ok(Some(0)),
    }
}

fn finish(server: &Server, job: Job, result: Result<Bytes, ServerError>) {
    server.metrics.in_flight.dec();
    if let Ok(reply) = &result {
        server.metrics.responses.inc();
        server.metrics.response_bytes.inc_by(reply.len() as u64);
        server.stats.responses.fetch_add(1, Ordering::Relaxed);
        server
            .stats
            .response_bytes
            .fetch_add(reply.len() as u64, Ordering::Relaxed);
    }
    let _ = job.answer.send(result);
}

/// Connects (within the timeout, or 5 s) and sends the connection's first commands.
async fn open(server: &Server) -> Result<TcpStream, ServerError> {
    let limit = server.settings.timeout.unwrap_or(Duration::from_secs(5));
    let connect = async {
        let mut stream = TcpStream::connect(&server.address)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ServerError::Refused,
                _ => ServerError::Reset,
            })?;
        let _ = stream.set_nodelay(true);
        for command in &server.settings.init {
            stream
                .write_all(command)
                .await
                .map_err(|_| ServerError::Reset)?;
            let mut reply = BytesMut::new();
            loop {
                if stream
                    .read_buf(&mut reply)
                    .await
                    .map_err(|_| ServerError::Reset)?
                    == 0
                {
                    return Err(ServerError::Reset);
                }
                match resp::check(&reply) {
                    Ok(_) if reply.starts_with(b"+") => break,
                    Ok(_) => return Err(ServerError::Protocol),
                    Err(resp::Error::Incomplete) => continue,
                    Err(_) => return Err(ServerError::Protocol),
                }
            }
        }
        Ok(stream)
    };
    let result = tokio::time::timeout(limit, connect)
        .await
        .unwrap_or(Err(ServerError::TimedOut));
    server.metrics.connections.set(i64::from(result.is_ok()));
    result
}
