//! What the controller records about every Rollout, as `serin up` does on
//! one machine: the seed's metrics (`serin-history`: `rollout_info`,
//! `rollout_phase`, `deployment_status_total`, `deployment_duration_seconds`,
//! `analysis_run_total`, …) on the controller's `/metrics`, and
//! notifications (`serin-notify`: a Slack incoming webhook or a JSON
//! webhook) for the engine's events, to `--notifications`' subscriptions
//! and each Rollout's own (Argo's `notifications.argoproj.io/subscribe.*`
//! annotations).
//!
//! Rollouts are named `namespace/name` in both. With
//! [`Observer::with_cluster_history`] (what `serin controller` runs) the
//! deployment records live in a ConfigMap per namespace
//! (`history_store.rs`): a restarted controller or a new leader resumes
//! them, counters and deployments in progress included. Without it they
//! are kept in memory only, as any exporter's counters are.

use std::sync::{Arc, Mutex};

use serin_engine as e;
use serin_history::{Input, Metrics, Observation, ProxyCounters, Tracker};
use serin_notify::{NotificationEvent, NotificationsConfig, Notifier};

use crate::Error;

/// Metrics and notifications for the controller's Rollouts.
pub struct Observer {
    tracker: Mutex<Tracker>,
    metrics: Metrics,
    notifier: Option<Notifier>,
    /// Keep deployment records on the cluster.
    cluster_history: bool,
    /// The writer of those records, once loaded.
    history: Mutex<Option<tokio::sync::mpsc::UnboundedSender<serin_history::DeploymentRecord>>>,
}

impl Default for Observer {
    /// Metrics only, no notifications, records in memory.
    fn default() -> Self {
        Self {
            tracker: Mutex::new(Tracker::new()),
            metrics: Metrics::new(),
            notifier: None,
            cluster_history: false,
            history: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("notifications", &self.notifier.is_some())
            .finish()
    }
}

impl Observer {
    /// Metrics, and notifications when `notifications` is given (inside a
    /// tokio runtime: deliveries run in the background).
    pub fn new(notifications: Option<NotificationsConfig>) -> Result<Self, Error> {
        let notifier = notifications
            .map(Notifier::new)
            .transpose()
            .map_err(|err| Error::Invalid(format!("notifications: {err}")))?;
        Ok(Self {
            notifier,
            ..Self::default()
        })
    }

    /// Keeps deployment records in a ConfigMap per namespace
    /// (`serin-deployment-history`), resumed when the controller starts
    /// acting; needs get/create/patch on that ConfigMap.
    #[must_use]
    pub fn with_cluster_history(mut self) -> Self {
        self.cluster_history = true;
        self
    }

    /// Resumes the records of the controller's scope from the cluster and
    /// writes every later one there (with [`Self::with_cluster_history`];
    /// else nothing). Called each time the controller starts acting (a new
    /// leader term reads what the last leader wrote). A failure to read
    /// leaves the records in memory, with a warning: history must not stop
    /// deployments.
    pub(crate) async fn resume_history(&self, client: &kube::Client, namespace: Option<&str>) {
        if !self.cluster_history {
            return;
        }
        let records = match crate::history_store::load(client, namespace).await {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(
                    "deployment history not resumed, kept in memory: {}",
                    serin_error_chain::error_chain(&err)
                );
                return;
            }
        };
        for r in &records {
            self.metrics.observe_record(r);
        }
        if let Ok(mut t) = self.tracker.lock() {
            *t = Tracker::resume(&records);
        }
        let writer = crate::history_store::spawn_writer(client.clone(), &records);
        if let Ok(mut h) = self.history.lock() {
            *h = Some(writer);
        }
        tracing::info!(records = records.len(), "deployment history resumed");
    }

    /// The metrics in Prometheus text format (with the notifier's delivery
    /// counters), ending with `# EOF`.
    pub fn metrics_text(&self) -> String {
        let mut out = self.metrics.encode_body();
        if let Some(n) = &self.notifier {
            out.push_str(&n.encode_metrics().replace("# EOF\n", ""));
        }
        out.push_str("# EOF\n");
        out
    }

    fn observe(&self, at_ms: u64, rollout: &str, strategy: &str, input: Input<'_>) {
        let records = match self.tracker.lock() {
            Ok(mut t) => t.observe(Observation {
                at_ms,
                rollout,
                strategy,
                // No proxy on a cluster: the traffic is the mesh's.
                counters: ProxyCounters::default(),
                input,
            }),
            Err(_) => return,
        };
        let history = self.history.lock().ok().and_then(|h| h.clone());
        for r in records {
            self.metrics.observe_record(&r);
            if let Some(h) = &history {
                let _ = h.send(r);
            }
        }
    }

    /// The Rollout's own subscriptions, from Argo's
    /// `notifications.argoproj.io/subscribe.<trigger>.<service>`
    /// annotations (replacing what the last reconcile found; none: only
    /// `--notifications`' own). Returns why annotations were skipped, once
    /// per change of them (nothing on an unchanged call).
    pub fn subscribe(
        &self,
        rollout: &str,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Vec<String> {
        let Some(n) = &self.notifier else {
            return Vec::new();
        };
        n.subscribe_from_annotations(rollout, annotations)
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Sends a notification to the subscribed services (a FlagRollout's
    /// step; Rollouts' events go through [`Observer::event`]).
    pub fn notify(&self, event: NotificationEvent) {
        if let Some(n) = &self.notifier {
            let r = n.notify(event);
            if r.dropped > 0 {
                tracing::warn!("notification queue full: {} dropped", r.dropped);
            }
        }
    }

    /// An engine event: deployment records, metrics, a notification.
    pub fn event(&self, at_ms: u64, rollout: &str, strategy: &str, event: &e::Event) {
        self.observe(at_ms, rollout, strategy, Input::Event(event));
        match event {
            e::Event::AnalysisRunFailed { .. } => {
                self.metrics.observe_analysis_run(rollout, "Failed");
            }
            e::Event::AnalysisRunError { .. } => {
                self.metrics.observe_analysis_run(rollout, "Error");
            }
            _ => {}
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

    /// The rollout's state after a step: `rollout_info`, `rollout_phase`,
    /// and the end of a deployment that emits no `Completed` (a first
    /// revision, an undo to the stable one).
    pub fn state(&self, at_ms: u64, rollout: &str, strategy: &str, status: &e::RolloutStatus) {
        let revision = status.current_hash.as_ref().map_or("", |h| h.0.as_str());
        self.metrics
            .set_rollout(rollout, strategy, revision, status.phase);
        if status.phase == e::Phase::Healthy
            && let Some(stable) = &status.stable_hash
        {
            self.observe(
                at_ms,
                rollout,
                strategy,
                Input::Healthy {
                    stable_revision: &stable.0,
                },
            );
        }
    }
}

/// `rolling`, `canary` or `blueGreen` (as `serin up` labels them).
pub(crate) fn strategy_name(spec: &e::RolloutSpec) -> &'static str {
    match &spec.strategy {
        e::Strategy::Canary(c) if c.steps.is_empty() => "rolling",
        e::Strategy::Canary(_) => "canary",
        e::Strategy::BlueGreen(_) => "blueGreen",
    }
}

/// Serves `GET /metrics` (Prometheus text) on `listener` until the future
/// is dropped.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    observer: Arc<Observer>,
) -> std::io::Result<()> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let observer = observer.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    observer.metrics_text(),
                )
                    .into_response()
            }
        }),
    );
    axum::serve(listener, app).await
}
