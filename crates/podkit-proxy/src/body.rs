//! Body wrappers: a request body with a size limit, and a response body that counts its
//! bytes and holds the backend's in-flight slot until it ends.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

use podkit_core::http::BoxError;

use crate::upstream::backend::InFlight;
use crate::upstream::conn::Reuse;

/// The body stops with an error once more than `limit` bytes have passed, and raises a
/// flag so that the proxy can answer 413.
pub struct Limited<B> {
    inner: B,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
    bytes: Counter,
}

impl<B> Limited<B> {
    /// Wraps `inner`; `exceeded` is set if it goes over `limit`; `bytes` counts data.
    pub fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>, bytes: Counter) -> Self {
        Limited {
            inner,
            remaining: limit,
            exceeded,
            bytes,
        }
    }
}

/// The error a [`Limited`] body ends with.
#[derive(Debug, thiserror::Error)]
#[error("request body over the size limit")]
pub struct TooLarge;

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.exceeded.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    self.remaining -= len;
                    self.bytes.inc_by(len);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts bytes sent, holds the backend's in-flight slot until it
/// ends, and hands the connection back for reuse once it was read to the end.
pub struct Tracked<B> {
    inner: B,
    bytes: Counter,
    in_flight: Option<InFlight>,
    reuse: Option<Reuse>,
}

impl<B: HttpBody> Tracked<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, bytes: Counter, in_flight: InFlight, reuse: Option<Reuse>) -> Self {
        let mut tracked = Tracked {
            inner,
            bytes,
            in_flight: Some(in_flight),
            reuse,
        };
        if tracked.inner.is_end_stream() {
            tracked.complete();
        }
        tracked
    }

    fn complete(&mut self) {
        self.in_flight.take();
        if let Some(reuse) = self.reuse.take() {
            reuse.give_back();
        }
    }
}

impl<B> HttpBody for Tracked<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.inc_by(data.len() as u64);
                }
                if self.inner.is_end_stream() {
                    self.complete();
                }
            }
            Poll::Ready(None) => self.complete(),
            Poll::Ready(Some(Err(_))) => {
                // A broken response: the connection is not reused.
                self.reuse.take();
                self.in_flight.take();
            }
            Poll::Pending => {}
        }
        polled.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
