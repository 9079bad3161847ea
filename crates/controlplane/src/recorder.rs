//! Deployment history, metrics and notifications: what the control plane
//! records about every event the engine emits.

use std::sync::Mutex;

use serin_engine as e;
use serin_history::{History, Input, Metrics, Observation, ProxyCounters, Tracker};
use serin_notify::{NotificationEvent, Notifier};

/// History store + tracker + metrics + notifier.
pub struct Recorder {
    history: History,
    tracker: Mutex<Tracker>,
    metrics: Metrics,
    notifier: Option<Notifier>,
}

impl Recorder {
    /// Opens the history file and resumes deployments in progress.
    pub fn open(path: &std::path::Path, notifier: Option<Notifier>) -> anyhow::Result<Self> {
        let history = History::open(path)?;
        let records = history.list(0)?;
        let metrics = Metrics::new();
        for r in &records {
            metrics.observe_record(r);
        }
        Ok(Self {
            tracker: Mutex::new(Tracker::resume(&records)),
            history,
            metrics,
            notifier,
        })
    }

    /// The history store.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Prometheus text for the control plane's `/metrics`.
    pub fn metrics_text(&self) -> String {
        let mut out = self.metrics.encode_body();
        if let Some(n) = &self.notifier {
            out.push_str(&n.encode_metrics().replace("# EOF\n", ""));
        }
        out.push_str("# EOF\n");
        out
    }

    fn observe(
        &self,
        at_ms: u64,
        rollout: &str,
        strategy: &str,
        counters: ProxyCounters,
        input: Input<'_>,
    ) {
        let records = match self.tracker.lock() {
            Ok(mut t) => t.observe(Observation {
                at_ms,
                rollout,
                strategy,
                counters,
                input,
            }),
            Err(_) => return,
        };
        for r in records {
            if let Err(err) = self.history.put(&r) {
                tracing::error!(rollout, "cannot record the deployment: {err}");
            }
            self.metrics.observe_record(&r);
        }
    }

    /// An engine event: history, metrics, notification.
    pub fn event(
        &self,
        at_ms: u64,
        rollout: &str,
        strategy: &str,
        counters: ProxyCounters,
        event: &e::Event,
    ) {
        self.observe(at_ms, rollout, strategy, counters, Input::Event(event));
        if let e::Event::AnalysisRunFailed { .. } = event {
            self.metrics.observe_analysis_run(rollout, "Failed");
        }
        if let e::Event::AnalysisRunError { .. } = event {
            self.metrics.observe_analysis_run(rollout, "Error");
        }
        if let (Some(n), Some(ev)) = (
            &self.notifier,
            NotificationEvent::from_engine(rollout, event, at_ms),
        ) {
            let r = n.notify(ev);
            if r.dropped > 0 {
                tracing::warn!(rollout, "notification queue full: {} dropped", r.dropped);
            }
        }
    }

    /// The rollout's current state (every reconcile).
    pub fn state(
        &self,
        at_ms: u64,
        rollout: &str,
        strategy: &str,
        counters: ProxyCounters,
        status: &e::RolloutStatus,
    ) {
        let revision = status
            .current_hash
            .as_ref()
            .map(|h| h.0.as_str())
            .unwrap_or("");
        self.metrics
            .set_rollout(rollout, strategy, revision, status.phase);
        if status.phase == e::Phase::Healthy
            && let Some(stable) = &status.stable_hash
        {
            self.observe(
                at_ms,
                rollout,
                strategy,
                counters,
                Input::Healthy {
                    stable_revision: &stable.0,
                },
            );
        }
    }

    /// A user undo (`serin undo`, emergency rollback).
    pub fn undo(
        &self,
        at_ms: u64,
        rollout: &str,
        strategy: &str,
        counters: ProxyCounters,
        to: &str,
    ) {
        self.observe(
            at_ms,
            rollout,
            strategy,
            counters,
            Input::Undo { to_revision: to },
        );
    }
}

impl Recorder {
    /// Records and announces an emergency rollback (`on-emergency-rollback`).
    pub fn emergency(&self, at_ms: u64, rollout: &str, revision: &str) {
        if let Some(n) = &self.notifier {
            let _ = n.notify(NotificationEvent::emergency_rollback(
                rollout, revision, at_ms,
            ));
        }
    }

    /// Subscribes `rollout` as its Argo `notifications.argoproj.io/subscribe.*`
    /// annotations say (besides serin.yaml's subscriptions); an annotation
    /// that cannot be used is logged once per change of them.
    pub fn subscribe(
        &self,
        rollout: &str,
        annotations: &std::collections::BTreeMap<String, String>,
    ) {
        if let Some(n) = &self.notifier {
            for w in n
                .subscribe_from_annotations(rollout, annotations)
                .unwrap_or_default()
            {
                tracing::warn!(rollout, "notification subscription skipped: {w}");
            }
        }
    }

    /// Sends a notification that is not an engine event (a FlagRollout's
    /// rollback, completion, …) through the configured subscriptions.
    pub fn notify(&self, event: NotificationEvent) {
        if let Some(n) = &self.notifier {
            let r = n.notify(event);
            if r.dropped > 0 {
                tracing::warn!("notification queue full: {} dropped", r.dropped);
            }
        }
    }
}
