//! One backend of a pool and its live state: readiness (from probes), passive ejection,
//! requests in flight and a latency average.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::eject::{EjectState, Outcome};
use crate::config::Eject;

/// Metric handles of one backend, created once so that requests do no label lookups.
#[derive(Debug, Clone, Default)]
pub struct BackendMetrics {
    /// Responses by status class: 1xx..5xx at indexes 0..4.
    pub responses: [Counter; 5],
    /// Tries that got no response (connect error, reset, timeout).
    pub failures: Counter,
    pub in_flight: Gauge,
    pub ready: Gauge,
    pub ejected: Gauge,
    pub ejections: Counter,
}

/// A backend: where it is and how it is doing.
#[derive(Debug)]
pub struct Backend {
    pub url: String,
    pub authority: Authority,
    pub weight: u32,
    ready: AtomicBool,
    eject: Mutex<EjectState>,
    /// Lock-free copy of "ejected until" as nanoseconds after `epoch` (0: not ejected).
    ejected_until: AtomicU64,
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Exponentially weighted average time to response head, microseconds, as f64 bits.
    ewma_micros: AtomicU64,
    pub metrics: BackendMetrics,
    /// Idle keep-alive connections to this backend.
    pub connections: super::conn::IdleConnections,
}

/// Weight of the newest sample in the latency average.
const EWMA_ALPHA: f64 = 0.3;
/// Latency assumed before the first sample.
const DEFAULT_LATENCY_MICROS: f64 = 1000.0;

impl Backend {
    /// A backend that starts ready when `initially_ready`.
    pub fn new(
        url: String,
        authority: Authority,
        weight: u32,
        initially_ready: bool,
        metrics: BackendMetrics,
    ) -> Backend {
        metrics.ready.set(i64::from(initially_ready));
        Backend {
            url,
            authority,
            weight,
            ready: AtomicBool::new(initially_ready),
            eject: Mutex::new(EjectState::default()),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            ewma_micros: AtomicU64::new(DEFAULT_LATENCY_MICROS.to_bits()),
            metrics,
            connections: super::conn::IdleConnections::default(),
        }
    }

    /// Whether the readiness probe last found it ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Sets readiness; returns whether it changed.
    pub fn set_ready(&self, ready: bool) -> bool {
        let before = self.ready.swap(ready, Ordering::Relaxed);
        self.metrics.ready.set(i64::from(ready));
        before != ready
    }

    /// Whether passive ejection has it out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let ejected =
            until != 0 && now.saturating_duration_since(self.epoch).as_nanos() < u128::from(until);
        self.metrics.ejected.set(i64::from(ejected));
        ejected
    }

    /// Ready and not ejected.
    pub fn is_available(&self, now: Instant) -> bool {
        self.is_ready() && !self.is_ejected(now)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Average time to response head, in microseconds.
    pub fn latency_micros(&self) -> f64 {
        f64::from_bits(self.ewma_micros.load(Ordering::Relaxed))
    }

    /// Counts a request in flight until the guard drops.
    pub fn start(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.inc();
        InFlight(self.clone())
    }

    /// Records how a try ended; returns the ejection time if it ejected the backend.
    pub fn record(
        &self,
        outcome: Outcome,
        latency: Option<Duration>,
        policy: &Eject,
    ) -> Option<Duration> {
        if let Some(latency) = latency {
            let sample = latency.as_secs_f64() * 1e6;
            let old = self.latency_micros();
            let new = old + EWMA_ALPHA * (sample - old);
            self.ewma_micros.store(new.to_bits(), Ordering::Relaxed);
        }
        let now = Instant::now();
        let mut state = self.eject.lock().unwrap_or_else(|p| p.into_inner());
        let ejected = state.record(outcome, now, policy);
        if let Some(time) = ejected {
            let until = (now + time)
                .saturating_duration_since(self.epoch)
                .as_nanos();
            self.ejected_until
                .store(u64::try_from(until).unwrap_or(u64::MAX), Ordering::Relaxed);
            self.metrics.ejections.inc();
            self.metrics.ejected.set(1);
        }
        ejected
    }
}

/// A request in flight on a backend.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<Backend>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.in_flight.dec();
    }
}
