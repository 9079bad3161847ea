//! Prometheus metrics with the seed's names (its Grafana dashboard queries
//! them) plus Argo-like rollout and analysis metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serin_engine::Phase;

use crate::record::{DeploymentRecord, Outcome};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Deployment durations: 10 s to 2 h.
fn duration_histogram() -> Histogram {
    Histogram::new([
        10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    ])
}

const PHASES: [Phase; 5] = [
    Phase::Pending,
    Phase::Progressing,
    Phase::Paused,
    Phase::Healthy,
    Phase::Degraded,
];

/// The metrics. Share it (`Arc<Metrics>`); every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    status: Family<Labels, Counter>,
    rollbacks: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    info: Family<Labels, Gauge>,
    phase: Family<Labels, Gauge>,
    analysis: Family<Labels, Counter>,
    /// What was already counted per record id, so that feeding the same
    /// record again (the tracker returns it when its recovery time is set)
    /// does not count it twice.
    seen: Mutex<BTreeMap<u64, Outcome>>,
    /// The `rollout_info` label set in effect per rollout.
    info_labels: Mutex<BTreeMap<String, Labels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let status = Family::<Labels, Counter>::default();
        let rollbacks = Family::<Labels, Counter>::default();
        let duration: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let info = Family::<Labels, Gauge>::default();
        let phase = Family::<Labels, Gauge>::default();
        let analysis = Family::<Labels, Counter>::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "deployment_status",
            "Finished deployments by service and status (success, failure, rollback)",
            status.clone(),
        );
        registry.register(
            "deployment_rollback",
            "Deployments rolled back, by service",
            rollbacks.clone(),
        );
        registry.register(
            "deployment_duration_seconds",
            "Deployment duration from start to outcome",
            duration.clone(),
        );
        registry.register(
            "rollout_info",
            "Information about a rollout (value 1)",
            info.clone(),
        );
        registry.register(
            "rollout_phase",
            "Rollout phase (1 for the current phase, 0 otherwise)",
            phase.clone(),
        );
        registry.register(
            "analysis_run",
            "Finished analysis runs by rollout and phase",
            analysis.clone(),
        );
        Self {
            registry,
            status,
            rollbacks,
            duration,
            info,
            phase,
            analysis,
            seen: Mutex::new(BTreeMap::new()),
            info_labels: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts a finished deployment (feed every record the tracker returns;
    /// in-progress and already-counted records are ignored). A deployment
    /// that succeeded and was later rolled back counts once as `success` and
    /// once as `rollback`.
    pub fn observe_record(&self, record: &DeploymentRecord) {
        if !record.outcome.is_finished() {
            return;
        }
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(&record.id) == Some(&record.outcome) {
                return;
            }
            let first = seen.insert(record.id, record.outcome).is_none();
            if first && let Some(ms) = record.duration_ms() {
                self.duration
                    .get_or_create(&labels(&[("service", &record.rollout)]))
                    .observe(ms as f64 / 1000.0);
            }
        }
        let service = record.rollout.as_str();
        self.status
            .get_or_create(&labels(&[
                ("service", service),
                ("status", record.outcome.status_label()),
            ]))
            .inc();
        if record.outcome == Outcome::RolledBack {
            self.rollbacks
                .get_or_create(&labels(&[("service", service)]))
                .inc();
        }
    }

    /// Sets `rollout_info` (one series per rollout: its strategy and current
    /// revision) and `rollout_phase` (1 for `phase`, 0 for the others).
    pub fn set_rollout(&self, rollout: &str, strategy: &str, revision: &str, phase: Phase) {
        let new = labels(&[
            ("rollout", rollout),
            ("strategy", strategy),
            ("revision", revision),
        ]);
        {
            let mut map = self.info_labels.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = map.insert(rollout.to_string(), new.clone())
                && old != new
            {
                self.info.remove(&old);
            }
        }
        self.info.get_or_create(&new).set(1);
        for p in PHASES {
            let name = format!("{p:?}");
            self.phase
                .get_or_create(&labels(&[("rollout", rollout), ("phase", &name)]))
                .set(i64::from(p == phase));
        }
    }

    /// Counts a finished analysis run (`phase`: Successful, Failed, Error,
    /// Inconclusive) as `analysis_run_total{rollout,phase}`.
    pub fn observe_analysis_run(&self, rollout: &str, phase: &str) {
        self.analysis
            .get_or_create(&labels(&[("rollout", rollout), ("phase", phase)]))
            .inc();
    }

    /// Forgets a deleted rollout's `rollout_info` and `rollout_phase` series.
    pub fn remove_rollout(&self, rollout: &str) {
        let old = {
            let mut map = self.info_labels.lock().unwrap_or_else(|p| p.into_inner());
            map.remove(rollout)
        };
        if let Some(old) = old {
            self.info.remove(&old);
        }
        for p in PHASES {
            let name = format!("{p:?}");
            self.phase
                .remove(&labels(&[("rollout", rollout), ("phase", &name)]));
        }
    }

    /// The metrics in Prometheus text format, ending with OpenMetrics'
    /// `# EOF` line.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; log rather than panic if it did.
            tracing::error!(error = %e, "encoding deployment metrics");
        }
        out
    }

    /// [`Metrics::encode`] without the `# EOF` line, to concatenate with the
    /// control plane's other metrics before one final `# EOF`.
    pub fn encode_body(&self) -> String {
        let mut s = self.encode();
        if s.ends_with("# EOF\n") {
            s.truncate(s.len() - "# EOF\n".len());
        }
        s
    }
}
