//! Active readiness probing (chapter 5): every backend's readiness path is requested each
//! interval; `fall` failures in a row make it unready, `rise` successes ready again. The
//! first answer of a new backend counts at once. Backends that join or leave the pool are
//! followed from one round to the next.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use tokio::task::JoinSet;

use podkit_core::readiness::Latch;
use podkit_core::shutdown::Shutdown;

use super::pool::Pool;
use crate::config::ReadyProbe;

/// Consecutive results of one backend.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    successes: u32,
    failures: u32,
}

/// Starts probing `pool`; `first_round` is released once every backend was probed once.
pub fn spawn(pool: Arc<Pool>, probe: ReadyProbe, shutdown: Shutdown, first_round: Latch) {
    if probe.path.is_empty() {
        first_round.release();
        return;
    }
    tokio::spawn(async move {
        let mut first_round = Some(first_round);
        let mut streaks: HashMap<String, Streak> = HashMap::new();
        let mut ticker = tokio::time::interval(probe.interval.get());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.triggered() => return,
            }
            let members = pool.members();
            let mut round = JoinSet::new();
            for (index, backend) in members.backends.iter().enumerate() {
                let (pool, probe, authority) =
                    (pool.clone(), probe.clone(), backend.authority.clone());
                round.spawn(async move { (index, probe_once(&pool, &authority, &probe).await) });
            }
            while let Some(Ok((index, ok))) = round.join_next().await {
                let backend = &members.backends[index];
                let key = backend.authority.to_string();
                let new = !streaks.contains_key(&key);
                let streak = streaks.entry(key).or_default();
                if ok {
                    *streak = Streak {
                        successes: streak.successes + 1,
                        failures: 0,
                    };
                } else {
                    *streak = Streak {
                        successes: 0,
                        failures: streak.failures + 1,
                    };
                }
                let becomes = if ok && (new || streak.successes >= probe.rise) {
                    Some(true)
                } else if !ok && (new || streak.failures >= probe.fall) {
                    Some(false)
                } else {
                    None
                };
                if let Some(ready) = becomes {
                    if backend.set_ready(ready) {
                        tracing::info!(pool = %pool.name, backend = %backend.authority, ready, "readiness changed");
                    }
                }
            }
            streaks.retain(|key, _| members.backends.iter().any(|b| b.authority.as_str() == key));
            if let Some(latch) = first_round.take() {
                latch.release();
            }
        }
    });
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
