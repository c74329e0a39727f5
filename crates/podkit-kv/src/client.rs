//! A client connection: requests are read and sent to their servers at once (pipelined),
//! and replies are written back in the order the requests came.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
    let (mut reader, mut writer) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<AnswerFuture>(4096);
    let writing = tokio::spawn(async move {
        while let Some(answer) = rx.recv().await {
            match answer.await {
                Answer::Reply(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Answer::Close(bytes) => {
                    let _ = writer.write_all(&bytes).await;
                    let _ = writer.shutdown().await;
                    return;
                }
                Answer::Silent => {}
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut buf = BytesMut::with_capacity(16 << 10);
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
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
    }
    drop(tx);
    let _ = writing.await;
}
