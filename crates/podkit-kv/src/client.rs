//! A client connection: requests are read and sent to their servers at once (pipelined),
//! and replies are written back in the order the requests came.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
///
/// One task reads requests and writes answers: an answer wakes the task that will write
/// it, with no hand-off to a second task per request. Answers that are ready together
/// leave in one write, so a pipeline's replies cost one system call (as nutcracker's
/// writev does) rather than one each.
pub async fn serve<S, IO>(
    io: IO,
    pool: Arc<Pool>,
    mut session: S,
    shutdown: podkit_core::shutdown::Shutdown,
) where
    S: Session,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    // Small to start: an idle client costs little; a busy one grows its buffer.
    let mut buf = BytesMut::with_capacity(READ_START);
    let mut answers: VecDeque<AnswerFuture> = VecDeque::new();
    let mut out = BytesMut::new();
    let mut reading = true;
    while reading || !answers.is_empty() {
        tokio::select! {
            biased;
            first = front(&mut answers), if !answers.is_empty() => {
                answers.pop_front();
                let mut closing = gather(&mut out, first);
                // The answers ready behind it go in the same write.
                while !closing && out.len() < WRITE_BATCH {
                    let Some(next) = answers.front_mut() else { break };
                    let Poll::Ready(answer) = poll_once(next).await else { break };
                    answers.pop_front();
                    closing = gather(&mut out, answer);
                }
                if !out.is_empty() {
                    if writer.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
                if closing {
                    break;
                }
            }
            read = reader.read_buf(&mut buf), if reading && answers.len() < MAX_WAITING => {
                match read {
                    Ok(0) | Err(_) => reading = false,
                    Ok(_) => {
                        answers.extend(session.requests(&mut buf, &pool));
                        if buf.capacity() - buf.len() < READ_START / 4 {
                            buf.reserve(buf.capacity().clamp(READ_START, READ_MAX));
                        }
                    }
                }
            }
            _ = shutdown.triggered(), if reading => reading = false,
        }
    }
    let _ = writer.shutdown().await;
}

/// A client's first read buffer.
const READ_START: usize = 2 << 10;
/// The most a client's read buffer grows by at once.
const READ_MAX: usize = 64 << 10;
/// Requests read but not yet answered before reading pauses.
const MAX_WAITING: usize = 4096;
/// Bytes of answers gathered before they are written even if more are ready.
const WRITE_BATCH: usize = 64 << 10;

/// The first answer, once it is there.
async fn front(answers: &mut VecDeque<AnswerFuture>) -> Answer {
    std::future::poll_fn(|cx| match answers.front_mut() {
        Some(answer) => answer.as_mut().poll(cx),
        None => Poll::Pending,
    })
    .await
}

/// Adds `answer` to what is to be written; whether the connection closes after it.
fn gather(out: &mut BytesMut, answer: Answer) -> bool {
    match answer {
        Answer::Reply(bytes) => {
            out.extend_from_slice(&bytes);
            false
        }
        Answer::Close(bytes) => {
            out.extend_from_slice(&bytes);
            true
        }
        Answer::Silent => false,
    }
}

/// Polls `future` once.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
}
