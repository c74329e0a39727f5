//! The component's metrics registry and its text encodings.
//!
//! `/metrics` serves the classic Prometheus text format (0.0.4), which `promtool check
//! metrics` and every Prometheus accept; a scraper that asks for OpenMetrics in its
//! `Accept` header gets OpenMetrics. Every component also exports the standard
//! `process_*` metrics and `podkit_build_info`.

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};

/// Content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A shared registry that components add metrics to at any time.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Metrics {
            registry: Arc::new(RwLock::new(Registry::default())),
        }
    }

    /// A registry with the `process_*` collector and `podkit_build_info{version,component}`.
    pub fn for_component(component: &str) -> Self {
        let metrics = Self::new();
        metrics.register_collector(ProcessCollector);
        metrics.register(
            "podkit_build",
            "podkit version and the component running",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("component", component.to_string()),
            ]),
        );
        metrics
    }

    /// Registers a metric; a counter's name gets `_total` appended.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.with_registry(|r| r.register(name, help, metric));
    }

    /// Registers a collector called on every scrape.
    pub fn register_collector(&self, collector: impl Collector) {
        self.with_registry(|r| r.register_collector(Box::new(collector)));
    }

    /// Runs `f` with the registry, e.g. to create a sub-registry with a prefix.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut guard = self
            .registry
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Encodes all metrics in the classic Prometheus text format.
    pub fn encode_text(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }

    /// Encodes all metrics in the OpenMetrics text format.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Chooses the encoding a scraper asked for in its `Accept` header.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The standard `process_*` metrics of this process, read from `/proc/self` per scrape.
#[derive(Debug, Clone, Copy)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        let Ok(stat) = me.stat() else {
            return Ok(());
        };
        let ticks = procfs::ticks_per_second() as f64;
        let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, f64); 3] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                (stat.rss * procfs::page_size()) as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                stat.vsize as f64,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                stat.num_threads as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        if let Ok(fds) = me.fd_count() {
            let gauge = ConstGauge::new(fds as f64);
            gauge.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Ok(boot) = procfs::boot_time_secs() {
            let gauge = ConstGauge::new(boot as f64 + stat.starttime as f64 / ticks);
            gauge.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn classic_text_has_help_and_type_for_counters() {
        let metrics = Metrics::for_component("test");
        let counter: Counter = Counter::default();
        metrics.register("podkit_test_requests", "Requests served", counter.clone());
        counter.inc();
        let text = metrics.encode_text();
        assert!(
            text.contains("# HELP podkit_test_requests_total Requests served"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE podkit_test_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("podkit_test_requests_total 1"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("podkit_build_info{"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(metrics.encode_openmetrics().ends_with("# EOF\n"));
    }
}
