//! The manager's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Handles on the manager's metrics.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    /// Items by state: pending, running, done, failed.
    pub items: Family<StateLabel, Gauge>,
    /// Attempts by outcome: done, failed.
    pub attempts: Family<OutcomeLabel, Counter>,
    /// Time an attempt took.
    pub processing: Histogram,
    /// Mean time between new items, in seconds.
    pub interarrival: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Workers allowed at once.
    pub parallelism: Gauge,
    /// Failed calls to the source.
    pub source_errors: Counter,
}

impl QueueMetrics {
    /// Registers the metrics.
    pub fn register(metrics: &podkit_core::metrics::Metrics) -> QueueMetrics {
        let m = QueueMetrics {
            items: Family::default(),
            attempts: Family::default(),
            processing: Histogram::new(exponential_buckets(0.005, 2.0, 20)),
            interarrival: Gauge::default(),
            parallelism: Gauge::default(),
            source_errors: Counter::default(),
        };
        metrics.register("podkit_queue_items", "Items by state", m.items.clone());
        metrics.register(
            "podkit_queue_attempts",
            "Worker attempts by outcome",
            m.attempts.clone(),
        );
        metrics.register(
            "podkit_queue_processing_seconds",
            "Time a worker attempt took",
            m.processing.clone(),
        );
        metrics.register(
            "podkit_queue_interarrival_seconds",
            "Mean time between new items from the source",
            m.interarrival.clone(),
        );
        metrics.register(
            "podkit_queue_parallelism",
            "Workers allowed to run at once",
            m.parallelism.clone(),
        );
        metrics.register(
            "podkit_queue_source_errors",
            "Failed or malformed answers from the source",
            m.source_errors.clone(),
        );
        m
    }
}
