//! The metrics of a sidecar that keeps something in sync with a source (config-sync,
//! git-sync): when it last succeeded, how many new versions it installed, failures by
//! stage, and the version in place as an info metric.

use std::time::{SystemTime, UNIX_EPOCH};

use podkit_core::component::Context;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Labels: `stage`, or the version's label name and value.
type Labels = Vec<(String, String)>;

/// The metrics, registered under one prefix.
#[derive(Clone)]
pub struct SyncMetrics {
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    installed: Counter,
    failures: Family<Labels, Counter>,
    version: Family<Labels, Gauge>,
    version_label: &'static str,
}

/// What the metrics are called.
pub struct Names {
    /// e.g. `podkit_git_sync`.
    pub prefix: &'static str,
    /// The counter of new versions, after the prefix (`updates`, `published`).
    pub installed: &'static str,
    pub installed_help: &'static str,
    /// The info metric, after the prefix (`version_info`, `commit_info`), and its label.
    pub info: &'static str,
    pub info_label: &'static str,
    pub info_help: &'static str,
    /// The stages failures are counted by, for the help text.
    pub stages: &'static str,
}

impl SyncMetrics {
    /// Registers the metrics on the component's registry.
    pub fn register(ctx: &Context, names: Names) -> SyncMetrics {
        let m = SyncMetrics {
            last_success: Gauge::default(),
            installed: Counter::default(),
            failures: Family::default(),
            version: Family::default(),
            version_label: names.info_label,
        };
        let r = &ctx.metrics;
        let p = names.prefix;
        r.register(
            &format!("{p}_last_success_timestamp_seconds"),
            "When the source was last found in place or put in place (Unix time)",
            m.last_success.clone(),
        );
        r.register(
            &format!("{p}_{}", names.installed),
            names.installed_help,
            m.installed.clone(),
        );
        r.register(
            &format!("{p}_failures"),
            &format!("Failures by stage: {}", names.stages),
            m.failures.clone(),
        );
        r.register(
            &format!("{p}_{}", names.info),
            names.info_help,
            m.version.clone(),
        );
        m
    }

    /// A new version was put in place.
    pub fn installed(&self) {
        self.installed.inc();
    }

    /// A failure at `stage`.
    pub fn failed(&self, stage: &str) {
        self.failures
            .get_or_create(&vec![("stage".into(), stage.into())])
            .inc();
    }

    /// `version` is in place and current: success now.
    pub fn current(&self, version: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_success.set(now);
        let labels = vec![(self.version_label.to_string(), version.to_string())];
        if self.version.get(&labels).is_none() {
            self.version.clear();
            self.version.get_or_create(&labels).set(1);
        }
    }
}
