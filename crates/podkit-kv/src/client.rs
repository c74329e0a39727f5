//! A client connection: requests are read and sent to their servers at once (pipelined),
//! and replies are written back in the order the requests came.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::pool::Pool;

/// What goes back to the client for one request.
pub enum Answer {
    /// These bytes.
    Reply(Bytes),
    /// These bytes, then close the connection.
    Close(Bytes),
    /// Nothing (memcache `noreply`).
    Silent,
}

/// An answer on its way.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// An answer known now.
pub fn ready(answer: Answer) -> AnswerFuture {
    Box::pin(async move { answer })
}

/// The protocol side of a client connection.
pub trait Session: Send + 'static {
    /// Takes the requests complete in `buf` and returns their answers, in order. A
    /// malformed request yields a closing answer.
    fn requests(&mut self, buf: &mut BytesMut, pool: &Arc<Pool>) -> Vec<AnswerFuture>;
}

/// Serves one client until it closes, sends QUIT or garbage, or shutdown starts (then the
/// requests already read are answered and the connection closed).
pub async fn serve<S, IO>(
    io: IO,
    pool: Arc<Pool>,
    mut session: S,
    shutdown: podkit_core::shutdown::Shutdown,
) where
    S: Session,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<AnswerFuture>(4096);
    let writing = tokio::spawn(write_answers(rx, writer));
    // Small to start: an idle client costs little; a busy one grows its buffer.
    let mut buf = BytesMut::with_capacity(READ_START);
    'reading: loop {
        let read = tokio::select! {
            read = reader.read_buf(&mut buf) => read,
            _ = shutdown.triggered() => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        for answer in session.requests(&mut buf, &pool) {
            if tx.send(answer).await.is_err() {
                break 'reading;
            }
        }
        if buf.capacity() - buf.len() < READ_START / 4 {
            buf.reserve(buf.capacity().clamp(READ_START, READ_MAX));
        }
    }
    drop(tx);
    let _ = writing.await;
}

/// A client's first read buffer.
const READ_START: usize = 2 << 10;
/// The most a client's read buffer grows by at once.
const READ_MAX: usize = 64 << 10;

/// Bytes of answers gathered before they are written even if more are ready.
const WRITE_BATCH: usize = 64 << 10;

/// Writes the answers in order. Answers that are already there when the previous one is
/// written go out in the same write, so a pipeline's replies leave in one system call
/// (as nutcracker's writev does) rather than one each.
async fn write_answers<W: AsyncWrite + Unpin>(
    mut answers: mpsc::Receiver<AnswerFuture>,
    mut writer: W,
) {
    let mut out = BytesMut::new();
    loop {
        let next = if out.is_empty() {
            answers.recv().await
        } else {
            match answers.try_recv() {
                Ok(next) => Some(next),
                Err(mpsc::error::TryRecvError::Empty) => {
                    if writer.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            }
        };
        let Some(mut answer) = next else { break };
        let answer = match poll_once(&mut answer).await {
            Poll::Ready(answer) => answer,
            Poll::Pending => {
                // Not there yet: what is ready goes out while it is awaited.
                if !out.is_empty() {
                    if writer.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                answer.await
            }
        };
        match answer {
            Answer::Reply(bytes) => {
                out.extend_from_slice(&bytes);
                if out.len() >= WRITE_BATCH {
                    if writer.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            }
            Answer::Close(bytes) => {
                out.extend_from_slice(&bytes);
                let _ = writer.write_all(&out).await;
                let _ = writer.shutdown().await;
                return;
            }
            Answer::Silent => {}
        }
    }
    if !out.is_empty() {
        let _ = writer.write_all(&out).await;
    }
    let _ = writer.shutdown().await;
}

/// Polls `future` once.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}
