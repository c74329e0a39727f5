//! One health check at a time, its result reused for `--cache-for`, so that probes from
//! many places cannot overload the database.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::target::{redact, Connection, Target};

/// What a probe is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `Ok` or the error text, credentials removed.
    pub result: Result<(), String>,
    /// Whether this answer was computed for an earlier probe.
    pub cached: bool,
    /// How long the check that produced it took.
    pub took: Duration,
}

/// Runs checks against one target and remembers the last result.
pub struct Checker {
    target: Target,
    query: String,
    timeout: Duration,
    cache_for: Duration,
    secrets: Vec<String>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    connection: Option<Connection>,
    last: Option<(Instant, Result<(), String>, Duration)>,
}

impl Checker {
    /// A checker that runs `query` on `target`, each check bounded by `timeout`.
    pub fn new(target: Target, query: String, timeout: Duration, cache_for: Duration) -> Self {
        let secrets = target.password().into_iter().collect();
        Checker {
            target,
            query,
            timeout,
            cache_for,
            secrets,
            state: Mutex::new(State::default()),
        }
    }

    /// The result of a check no older than `--cache-for`. Concurrent callers wait for
    /// the one check in flight rather than starting their own. The check runs in its own
    /// task: a probe that hangs up cannot cut it short and leave the connection mid-reply.
    pub async fn verdict(self: &std::sync::Arc<Self>) -> Verdict {
        let checker = self.clone();
        match tokio::spawn(async move { checker.verdict_in_task().await }).await {
            Ok(verdict) => verdict,
            Err(e) => Verdict {
                result: Err(format!("the check failed: {e}")),
                cached: false,
                took: Duration::ZERO,
            },
        }
    }

    async fn verdict_in_task(&self) -> Verdict {
        let mut state = self.state.lock().await;
        if let Some((at, result, took)) = &state.last {
            if at.elapsed() < self.cache_for {
                return Verdict {
                    result: result.clone(),
                    cached: true,
                    took: *took,
                };
            }
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.check(&mut state)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        if result.is_err() {
            state.connection = None;
        }
        let result = result.map_err(|e| redact(&e, &self.secrets));
        let took = started.elapsed();
        state.last = Some((Instant::now(), result.clone(), took));
        Verdict {
            result,
            cached: false,
            took,
        }
    }

    async fn check(&self, state: &mut State) -> Result<(), String> {
        if state.connection.is_none() {
            state.connection = Some(Connection::open(&self.target, self.timeout).await?);
        }
        match state.connection.as_mut() {
            Some(connection) => connection.run(&self.query).await,
            None => Err("not connected".into()),
        }
    }
}
