//! Mirroring (chapter 3's "tee"): every request is also sent to a shadow backend whose
//! answer is discarded. The shadow can never slow or fail the real request: mirrored
//! requests in flight are capped (more are dropped and counted), a request body is copied
//! only while the copy keeps up, and every mirrored request has its own timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{mpsc, Semaphore};

use podkit_core::http::{Body, BoxError};

use crate::config::TeeConfig;
use crate::metrics::TeeMetrics;
use crate::upstream::pool::{client, Head, UpstreamClient};

/// A route's mirror.
#[derive(Debug)]
pub struct Tee {
    authority: Authority,
    client: UpstreamClient,
    slots: Arc<Semaphore>,
    timeout: Duration,
    max_body: u64,
    metrics: TeeMetrics,
}

impl Tee {
    /// A mirror to `config.url`.
    pub fn new(config: &TeeConfig, metrics: TeeMetrics) -> Option<Tee> {
        let authority = crate::config::backend_authority(&config.url).ok()?;
        Some(Tee {
            authority,
            client: client(config.timeout.get().min(Duration::from_secs(2))),
            slots: Arc::new(Semaphore::new(config.queue)),
            timeout: config.timeout.get(),
            max_body: config.max_body.bytes(),
            metrics,
        })
    }

    /// Starts mirroring a request; returns the body the real request must use instead.
    pub fn mirror(
        &self,
        head: &Head,
        body: Option<Body>,
        content_length: Option<u64>,
    ) -> Option<Body> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.metrics.dropped.inc();
            return body;
        };
        if content_length.is_some_and(|n| n > self.max_body) {
            self.metrics.dropped.inc();
            return body;
        }
        let (main_body, shadow_body) = match body {
            None => (None, None),
            Some(body) => {
                let (tx, rx) = mpsc::channel(32);
                let aborted = Arc::new(AtomicBool::new(false));
                let main = CopyingBody {
                    inner: body,
                    copy: Some(tx),
                    copied: 0,
                    max: self.max_body,
                    aborted: aborted.clone(),
                };
                let shadow = ShadowBody { rx, aborted };
                (Some(main.boxed()), Some(shadow.boxed()))
            }
        };
        let Ok(uri) = http::Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(head.path_and_query.clone())
            .build()
        else {
            self.metrics.failed.inc();
            return main_body;
        };
        let mut request = http::Request::new(shadow_body.unwrap_or_else(|| {
            http_body_util::Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed()
        }));
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = head.headers.clone();
        let (client, timeout, metrics) = (self.client.clone(), self.timeout, self.metrics.clone());
        tokio::spawn(async move {
            let exchange = async {
                let response = client.request(request).await.ok()?;
                response.into_body().collect().await.ok()
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(Some(_)) => metrics.sent.inc(),
                _ => metrics.failed.inc(),
            };
            drop(permit);
        });
        main_body
    }
}

/// The real request's body, copying each chunk to the shadow while the copy keeps up.
struct CopyingBody {
    inner: Body,
    copy: Option<mpsc::Sender<Bytes>>,
    copied: u64,
    max: u64,
    aborted: Arc<AtomicBool>,
}

impl CopyingBody {
    fn abort_copy(&mut self) {
        if self.copy.take().is_some() {
            self.aborted.store(true, Ordering::SeqCst);
        }
    }
}

impl HttpBody for CopyingBody {
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
                    let fits = self.copied + data.len() as u64 <= self.max;
                    let sent = fits
                        && self
                            .copy
                            .as_ref()
                            .is_some_and(|tx| tx.try_send(data.clone()).is_ok());
                    if sent {
                        self.copied += data.len() as u64;
                    } else {
                        self.abort_copy();
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.abort_copy(),
            // The whole body was copied: closing the channel ends the shadow's body.
            Poll::Ready(None) => drop(self.copy.take()),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CopyingBody {
    fn drop(&mut self) {
        // A real request abandoned half-way must not leave a truncated mirrored one.
        if !self.inner.is_end_stream() {
            self.abort_copy();
        }
    }
}

/// The shadow request's body: the copied chunks, or an error if copying was abandoned.
struct ShadowBody {
    rx: mpsc::Receiver<Bytes>,
    aborted: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("mirrored body abandoned")]
struct Abandoned;

impl HttpBody for ShadowBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(None) if self.aborted.load(Ordering::SeqCst) => {
                Poll::Ready(Some(Err(Box::new(Abandoned))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
