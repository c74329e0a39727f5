//! Active readiness probing (chapter 5): each backend's readiness path is requested every
//! interval; `fall` failures in a row make it unready, `rise` successes ready again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};

use podkit_core::readiness::Latch;
use podkit_core::shutdown::Shutdown;

use super::pool::Pool;
use crate::config::ReadyProbe;

/// Starts probing every backend of `pool`; `first_round` is released once every backend
/// has been probed once.
pub fn spawn(pool: Arc<Pool>, probe: ReadyProbe, shutdown: Shutdown, first_round: Latch) {
    if probe.path.is_empty() {
        first_round.release();
        return;
    }
    let pending = Arc::new(AtomicUsize::new(pool.backends.len()));
    let latch = Arc::new(std::sync::Mutex::new(Some(first_round)));
    for index in 0..pool.backends.len() {
        let (pool, probe, shutdown) = (pool.clone(), probe.clone(), shutdown.clone());
        let (pending, latch) = (pending.clone(), latch.clone());
        tokio::spawn(async move {
            let backend = pool.backends[index].clone();
            let mut ticker = tokio::time::interval(probe.interval.get());
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut successes, mut failures) = (0u32, 0u32);
            let mut first = true;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.triggered() => return,
                }
                let ok = probe_once(&pool, &backend.authority, &probe).await;
                if ok {
                    successes += 1;
                    failures = 0;
                } else {
                    failures += 1;
                    successes = 0;
                }
                let becomes = if ok && (successes >= probe.rise || first) {
                    Some(true)
                } else if !ok && (failures >= probe.fall || first) {
                    Some(false)
                } else {
                    None
                };
                if let Some(ready) = becomes {
                    if backend.set_ready(ready) {
                        tracing::info!(pool = %pool.name, backend = %backend.authority, ready, "readiness changed");
                    }
                }
                if first {
                    first = false;
                    if pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                        if let Some(latch) = latch.lock().unwrap_or_else(|p| p.into_inner()).take()
                        {
                            latch.release();
                        }
                    }
                }
            }
        });
    }
}

async fn probe_once(pool: &Pool, authority: &http::uri::Authority, probe: &ReadyProbe) -> bool {
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(probe.path.as_str())
        .build()
    else {
        return false;
    };
    let mut request = Request::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("podkit-probe"),
    );
    let attempt = async {
        let response = pool.client().request(request).await.ok()?;
        let ok = response.status().is_success();
        // Read the body so that the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(probe.timeout.get(), attempt).await,
        Ok(Some(true))
    )
}
