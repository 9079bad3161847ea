//! The control plane for one machine: manifests, user operations and the
//! reconcile pass. Each rollout's step (observe → `serin_engine::reconcile` →
//! persist → act) is `serin_driver`'s; this module resolves manifests into
//! driver targets and hands the driver the local adapters
//! ([`crate::local_adapters`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serin_engine as e;
use serin_platform_local::LocalPlatform;
use serin_spec::ManifestSet;

use crate::proxy_client::ProxyClient;
use crate::proxy_counters_provider::{BuiltinProvider, StatsHistory};
use crate::routing::{self, ProxyConfig, RolloutEndpoints, RolloutRouting};
use crate::store::Store;
use serin_analysis as an;
use serin_clock::now_ms;

/// A user operation on a rollout.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// `serin promote`.
    Promote,
    /// `serin promote --full`.
    PromoteFull,
    /// `serin pause`.
    Pause,
    /// `serin resume`.
    Resume,
    /// `serin abort`.
    Abort,
    /// `serin retry`.
    Retry,
    /// `serin undo [--to-revision N]`.
    Undo {
        /// Revision number; `None` = the previous one.
        to_revision: Option<u64>,
    },
    /// `serin restart [--in D]`: `spec.restartAt = at`.
    Restart {
        /// Milliseconds since the epoch (now, or later for a scheduled restart).
        at: u64,
    },
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// No such rollout in the manifests.
    #[error("no rollout named {0}")]
    NotFound(String),
    /// The engine refused it.
    #[error(transparent)]
    Refused(#[from] e::CommandError),
    /// The manifest cannot be run.
    #[error(transparent)]
    Convert(#[from] serin_plan::ConvertError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An adapter (the store, the platform) failed.
    #[error(transparent)]
    Adapter(#[from] serin_driver::AdapterError),
}

/// An analysis run in progress.
struct RunHandle {
    rollout: String,
    status: tokio::sync::watch::Receiver<an::RunStatus>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// What a `StartAnalysis` asked for, kept so a restarted control plane can
/// start the run again.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunSpec {
    pub templates: Vec<String>,
    pub args: Vec<(String, e::ArgValueResolved)>,
}

fn engine_phase(p: an::Phase) -> e::AnalysisPhase {
    match p {
        an::Phase::Pending => e::AnalysisPhase::Pending,
        an::Phase::Running => e::AnalysisPhase::Running,
        an::Phase::Successful => e::AnalysisPhase::Successful,
        an::Phase::Failed => e::AnalysisPhase::Failed,
        an::Phase::Error => e::AnalysisPhase::Error,
        an::Phase::Inconclusive => e::AnalysisPhase::Inconclusive,
    }
}

/// `rolling`, `canary` or `blueGreen`.
pub fn strategy_name(spec: &e::RolloutSpec) -> &'static str {
    match &spec.strategy {
        e::Strategy::Canary(c) if c.steps.is_empty() => "rolling",
        e::Strategy::Canary(_) => "canary",
        e::Strategy::BlueGreen(_) => "blueGreen",
    }
}

/// The control plane for one machine.
pub struct ControlPlane {
    set: Mutex<Arc<ManifestSet>>,
    store: Store,
    platform: LocalPlatform,
    proxy: ProxyClient,
    ports: BTreeMap<String, u16>,
    driver: serin_driver::Driver,
    /// One writer of a rollout's status at a time: the loop's step (read
    /// overrides, observe, reconcile, save) or a user's operation (read,
    /// apply the command, save). Without it a step that read the status
    /// before a `promote` saved it would write the old status back over it,
    /// and the promote would be lost.
    status_writer: tokio::sync::Mutex<()>,
    flags_router: std::sync::OnceLock<axum::Router>,
    last_proxy: tokio::sync::Mutex<Option<ProxyConfig>>,
    in_force: Mutex<ProxyConfig>,
    runs: Mutex<BTreeMap<String, RunHandle>>,
    recorder: Option<crate::recorder::Recorder>,
    events: tokio::sync::broadcast::Sender<serde_json::Value>,
    watched: Mutex<Vec<std::path::PathBuf>>,
    wake: Arc<tokio::sync::Notify>,
    providers: an::Providers,
    history: Arc<StatsHistory>,
}

impl ControlPlane {
    /// Wires the parts together.
    pub fn new(
        set: ManifestSet,
        store: Store,
        platform: LocalPlatform,
        proxy: ProxyClient,
        ports: BTreeMap<String, u16>,
    ) -> Self {
        let history = Arc::new(StatsHistory::default());
        Self {
            set: Mutex::new(Arc::new(set)),
            store,
            platform,
            proxy,
            ports,
            driver: serin_driver::Driver::new(),
            status_writer: tokio::sync::Mutex::new(()),
            flags_router: std::sync::OnceLock::new(),
            last_proxy: tokio::sync::Mutex::new(None),
            in_force: Mutex::new(ProxyConfig::default()),
            runs: Mutex::new(BTreeMap::new()),
            recorder: None,
            events: tokio::sync::broadcast::channel(1024).0,
            watched: Mutex::new(Vec::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
            providers: {
                let mut p = an::Providers::new();
                p.builtin = Some(Arc::new(BuiltinProvider {
                    history: Arc::clone(&history),
                    judges: Arc::default(),
                }));
                p
            },
            history,
        }
    }

    /// Live events (`GET /v1/events`): every engine event, as JSON.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<serde_json::Value> {
        self.events.subscribe()
    }

    /// Sends `event` to `/v1/events` subscribers (best effort: no subscriber
    /// is fine; the store is the record). Used by FlagRollouts.
    pub fn publish(&self, event: serde_json::Value) {
        let _ = self.events.send(event);
    }

    /// The analysis providers runs use (builtin over the proxy's counters,
    /// prometheus, web, job), for runs started outside the engine.
    pub fn providers(&self) -> an::Providers {
        self.providers.clone()
    }

    /// Uses these prometheus and web providers (e.g. trusting an extra CA,
    /// [`an::Providers::with_ca`]), and the judge over Prometheus with
    /// them; the builtin and job providers stay.
    pub fn with_analysis_providers(mut self, providers: an::Providers) -> Self {
        self.providers.prometheus = providers.prometheus;
        self.providers.web = providers.web;
        self.providers.judge = providers.judge;
        self
    }

    /// Records deployments, metrics and notifications from now on.
    pub fn with_recorder(mut self, recorder: crate::recorder::Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// The recorder (history, metrics, notifications), when configured.
    pub fn recorder(&self) -> Option<&crate::recorder::Recorder> {
        self.recorder.as_ref()
    }

    fn counters(&self, r: &serin_spec::Rollout) -> serin_history::ProxyCounters {
        let app = r
            .spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.labels.get("app").cloned())
            .unwrap_or_else(|| r.metadata.name.clone().unwrap_or_default());
        let (requests, failed) = self.history.app_totals(&app);
        serin_history::ProxyCounters { requests, failed }
    }

    /// The manifest paths `serin up` watches (where `apply` writes).
    pub fn set_watched(&self, paths: Vec<std::path::PathBuf>) {
        if let Ok(mut w) = self.watched.lock() {
            *w = paths;
        }
    }

    /// The watched manifest paths.
    pub fn watched(&self) -> Vec<std::path::PathBuf> {
        self.watched.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Notified when something the loop should react to at once happened
    /// (an analysis run changed phase).
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    /// The proxy's counters, sampled for the builtin analysis provider.
    pub fn history(&self) -> &Arc<StatsHistory> {
        &self.history
    }

    /// The flag server `serin up` serves, for in-process calls (the
    /// emergency playbook's kill switch). Set once.
    pub fn set_flags_router(&self, router: axum::Router) {
        let _ = self.flags_router.set(router);
    }

    /// The flag server's router, when `serin up` serves flags.
    pub fn flags_router(&self) -> Option<axum::Router> {
        self.flags_router.get().cloned()
    }

    /// The proxy client.
    pub fn proxy(&self) -> &ProxyClient {
        &self.proxy
    }

    /// Starts an analysis run for `rollout`. A run that cannot be built
    /// (missing template or arg, bad condition) is recorded as Error with the
    /// reason, which aborts the rollout — never a silent pass.
    pub(crate) fn start_run(
        &self,
        set: &ManifestSet,
        r: &serin_spec::Rollout,
        name: &str,
        spec: &RunSpec,
    ) -> anyhow::Result<()> {
        let rollout = r.metadata.name.clone().unwrap_or_default();
        let status = self.store.status(&rollout)?;
        let inputs = an::RunInputs {
            args: serin_plan::run_arguments(&spec.args),
            sources: an::ArgSources {
                stable_hash: status.stable_hash.map(|h| h.0),
                latest_hash: status.current_hash.map(|h| h.0),
                rollout: serde_json::to_value(r).unwrap_or_default(),
            },
            ..Default::default()
        };
        self.start_run_for(set, &rollout, name, &spec.templates, inputs)
    }

    /// Starts analysis run `name` owned by `owner` (a rollout's name, or
    /// an Experiment's store key): its phases are kept under `owner`.
    pub(crate) fn start_run_for(
        &self,
        set: &ManifestSet,
        owner: &str,
        name: &str,
        spec_templates: &[String],
        inputs: an::RunInputs,
    ) -> anyhow::Result<()> {
        let rollout = owner.to_string();
        let mut templates = Vec::new();
        let mut missing = Vec::new();
        for t in spec_templates {
            let (cluster, bare) = match t.strip_prefix("cluster:") {
                Some(b) => (true, b),
                None => (false, t.as_str()),
            };
            let found = set.documents.iter().find_map(|d| match &d.resource {
                serin_spec::Resource::AnalysisTemplate(at)
                    if at.metadata.name.as_deref() == Some(bare)
                        && (d.kind == "ClusterAnalysisTemplate") == cluster =>
                {
                    Some((**at).clone())
                }
                _ => None,
            });
            match found {
                Some(at) => templates.push(at),
                None => missing.push(t.clone()),
            }
        }
        let built = if missing.is_empty() {
            an::AnalysisRun::new(name, &templates, &inputs).map_err(|e| e.to_string())
        } else {
            Err(format!(
                "analysis template(s) not found: {}",
                missing.join(", ")
            ))
        };
        match built {
            Ok(run) => {
                // The run's clock starts at spawn; its measurement times are
                // relative to it. The wall-clock origin lets readers (the
                // dashboard's charts) place them in time.
                if let Err(e) = self
                    .store
                    .put_json(&format!("runorigin/{owner}/{name}"), &now_ms())
                {
                    tracing::debug!(run = %name, "recording the run's origin: {e}");
                }
                let (rx, stop, _task) = an::runner::spawn(run, self.providers.clone());
                // A measurement that changes the run's phase must reach the
                // engine now, not at the next tick.
                let mut watch = rx.clone();
                let wake = Arc::clone(&self.wake);
                tokio::spawn(async move {
                    let mut phase = watch.borrow().phase;
                    while watch.changed().await.is_ok() {
                        let now = watch.borrow().phase;
                        if now != phase {
                            phase = now;
                            wake.notify_one();
                        }
                    }
                });
                if let Ok(mut runs) = self.runs.lock() {
                    runs.insert(
                        name.to_string(),
                        RunHandle {
                            rollout,
                            status: rx,
                            stop,
                        },
                    );
                }
            }
            Err(message) => {
                tracing::warn!(rollout = %rollout, run = %name, "analysis run cannot start: {message}");
                let failed = serde_json::json!({"name": name, "phase": "Error", "message": message, "metricResults": []});
                self.store
                    .put_json(&format!("run/{rollout}/{name}"), &failed)?;
                let mut phases: BTreeMap<String, e::AnalysisPhase> = self
                    .store
                    .get_json(&format!("analysis/{rollout}"))?
                    .unwrap_or_default();
                phases.insert(name.to_string(), e::AnalysisPhase::Error);
                self.store
                    .put_json(&format!("analysis/{rollout}"), &phases)?;
            }
        }
        Ok(())
    }

    /// Phases of this rollout's runs, and their statuses persisted for
    /// `serin get`; runs a restarted control plane lost are started again.
    pub(crate) fn sync_runs(
        &self,
        set: &ManifestSet,
        r: &serin_spec::Rollout,
    ) -> anyhow::Result<BTreeMap<String, e::AnalysisPhase>> {
        let rollout = r.metadata.name.clone().unwrap_or_default();
        let phases: BTreeMap<String, e::AnalysisPhase> = self
            .store
            .get_json(&format!("analysis/{rollout}"))?
            .unwrap_or_default();
        let status = self.store.status(&rollout)?;
        for rec in status
            .analysis_runs
            .iter()
            .filter(|rec| !rec.phase.is_completed())
        {
            if !self.run_known(&rec.name)
                && !phases.contains_key(&rec.name)
                && let Some(spec) = self
                    .store
                    .get_json::<RunSpec>(&format!("runspec/{rollout}/{}", rec.name))?
            {
                tracing::info!(rollout = %rollout, run = %rec.name, "restarting an analysis run the previous control plane left");
                self.start_run(set, r, &rec.name, &spec)?;
            }
        }
        self.run_phases(&rollout, phases)
    }

    /// Whether run `name` is running in this process.
    pub(crate) fn run_known(&self, name: &str) -> bool {
        self.runs
            .lock()
            .map(|m| m.contains_key(name))
            .unwrap_or(true)
    }

    /// The phases of `owner`'s runs (`phases`: those stored), with the
    /// statuses of the runs in this process persisted for `serin get`.
    pub(crate) fn run_phases(
        &self,
        owner: &str,
        mut phases: BTreeMap<String, e::AnalysisPhase>,
    ) -> anyhow::Result<BTreeMap<String, e::AnalysisPhase>> {
        let rollout = owner.to_string();
        let snapshot: Vec<(String, an::RunStatus)> = self
            .runs
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, h)| h.rollout == rollout)
                    .map(|(n, h)| (n.clone(), h.status.borrow().clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (name, st) in snapshot {
            phases.insert(name.clone(), engine_phase(st.phase));
            // Written only when it changed: every store write is a durable
            // commit, and this runs on every reconcile.
            let key = format!("run/{rollout}/{name}");
            if self.store.get_json::<an::RunStatus>(&key)?.as_ref() != Some(&st) {
                self.store.put_json(&key, &st)?;
            }
            if st.phase.completed() {
                if let Ok(mut m) = self.runs.lock() {
                    m.remove(&name);
                }
                let mut done: BTreeMap<String, e::AnalysisPhase> = self
                    .store
                    .get_json(&format!("analysis/{rollout}"))?
                    .unwrap_or_default();
                done.insert(name, engine_phase(st.phase));
                self.store.put_json(&format!("analysis/{rollout}"), &done)?;
            }
        }
        Ok(phases)
    }

    /// The manifests in force.
    pub fn manifests(&self) -> Arc<ManifestSet> {
        self.set
            .lock()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Replaces the manifests (a validated apply or a file change).
    pub fn set_manifests(&self, set: ManifestSet) {
        match self.set.lock() {
            Ok(mut s) => *s = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
        // Edited manifests may fix what a rollout failed on.
        self.driver.reset_all();
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The platform.
    pub fn platform(&self) -> &LocalPlatform {
        &self.platform
    }

    /// The proxy configuration in force (with real listen ports).
    pub fn proxy_config(&self) -> ProxyConfig {
        self.in_force.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The driver target a rollout's manifest asks for (the engine spec and
    /// the pod template for its hash), before the user's overrides.
    fn manifest_target(
        &self,
        set: &ManifestSet,
        r: &serin_spec::Rollout,
    ) -> Result<serin_driver::Target, OperationError> {
        Ok(serin_driver::Target {
            spec: serin_plan::to_engine(set, r)?,
            workload: serin_driver::Workload {
                template: serde_json::to_value(&r.spec.template).unwrap_or_default(),
                min_ready_seconds: u32::try_from(r.spec.min_ready_seconds).unwrap_or(0),
            },
        })
    }

    /// Ready endpoints of a rollout's revisions, for routing.
    pub(crate) fn endpoints(&self, rollout: &str) -> RolloutEndpoints {
        let mut ep = crate::local_adapters::endpoints_of(&self.platform.observe(rollout));
        ep.experiments = crate::local_adapters::endpoints_of(
            &self
                .platform
                .observe(&crate::local_adapters::experiment_group(rollout)),
        )
        .ready;
        ep
    }

    /// Fixed listener ports (serin.yaml `services:`).
    pub(crate) fn ports(&self) -> &BTreeMap<String, u16> {
        &self.ports
    }

    /// Stops an analysis run (it keeps its history).
    pub(crate) fn stop_run(&self, run: &str) {
        if let Ok(runs) = self.runs.lock()
            && let Some(h) = runs.get(run)
        {
            let _ = h.stop.send(true);
        }
    }

    /// The driver's error on a rollout, if its last step failed.
    pub fn driver_error(&self, rollout: &str) -> Option<crate::local_adapters::DriverError> {
        self.store
            .get_json(&format!("driver-error/{rollout}"))
            .ok()
            .flatten()
    }

    /// Shows (or clears) why the driver cannot act on a rollout. A new
    /// message is published once on `/v1/events`; retries of the same error
    /// only move `retryAt`.
    pub(crate) fn set_driver_error(
        &self,
        rollout: &str,
        error: Option<&str>,
        retry_at: Option<u64>,
    ) -> Result<(), crate::store::StoreError> {
        let key = format!("driver-error/{rollout}");
        let old = self.driver_error(rollout);
        match error {
            None => {
                if old.is_some() {
                    self.store.delete(&key)?;
                    self.publish(serde_json::json!({"rollout": rollout, "at": now_ms(), "driverError": null}));
                }
            }
            Some(message) => {
                let same = old.as_ref().is_some_and(|o| o.message == message);
                let since = old.filter(|_| same).map_or_else(now_ms, |o| o.since);
                self.store.put_json(
                    &key,
                    &crate::local_adapters::DriverError {
                        message: message.to_string(),
                        since,
                        retry_at,
                    },
                )?;
                if !same {
                    self.publish(serde_json::json!({"rollout": rollout, "at": since, "driverError": message}));
                }
            }
        }
        Ok(())
    }

    /// One pass over every rollout through the driver, then one proxy
    /// update if endpoints changed. A rollout whose step fails shows the
    /// error and backs off; the others go on. Returns when the next pass is
    /// due if nothing changes before (`None`: only on a change).
    pub async fn reconcile_all(&self) -> anyhow::Result<Option<u64>> {
        let set = self.manifests();
        let served = match self.proxy.current().await {
            Ok(c) => Some(c),
            Err(err) => {
                tracing::warn!("reading the proxy's configuration: {err:#}");
                None
            }
        };
        let local = crate::local_adapters::Local::new(self, &set, served);
        let adapters = serin_driver::Adapters {
            platform: &local,
            router: &local,
            store: &local,
            analysis: &local,
        };
        let mut wake: Option<u64> = None;
        for (_, r) in set.rollouts() {
            let name = r.metadata.name.clone().unwrap_or_default();
            if let Some(rec) = &self.recorder {
                rec.subscribe(&name, &r.metadata.annotations);
            }
            // Held from reading the overrides to saving the step's status.
            let writer = self.status_writer.lock().await;
            let target = match self.manifest_target(&set, r) {
                Ok(manifest) => serin_driver::resolve(&local, manifest)
                    .await
                    .map_err(OperationError::from),
                Err(err) => Err(err),
            };
            let target = match target {
                Ok(t) => t,
                Err(err) => {
                    tracing::warn!(rollout = %name, "cannot run: {err}");
                    continue;
                }
            };
            let outcome = self.driver.drive(&adapters, &target, &now_ms).await;
            drop(writer);
            let mut due = outcome.wake_at();
            if let serin_driver::Outcome::Stepped { step, .. } = &outcome {
                let (out, now) = (&step.reconciled, step.now);
                // A route, a scale or an analysis change is observed by the
                // next step at once; a replacement in progress is reported by
                // the platform's own change notifications.
                if out.actions.iter().any(|a| {
                    matches!(
                        a,
                        e::Action::SetRoute(_)
                            | e::Action::Scale { .. }
                            | e::Action::ScaleExperiment { .. }
                            | e::Action::StartAnalysis { .. }
                            | e::Action::StopAnalysis { .. }
                    )
                }) {
                    due = Some(now);
                }
                if let Some(rec) = &self.recorder {
                    let strategy = strategy_name(&target.spec);
                    let counters = self.counters(r);
                    for action in &out.actions {
                        if let e::Action::Emit(ev) = action {
                            rec.event(now, &name, strategy, counters, ev);
                        }
                    }
                    rec.state(now, &name, strategy, counters, &out.status);
                }
            }
            wake = wake.into_iter().chain(due).min();
        }
        // Argo Experiments: their pods are a group of their own, never routed.
        let due = crate::experiments::reconcile_all(self, &set).await;
        wake = wake.into_iter().chain(due).min();
        // Endpoints come and go with readiness even when no route changes.
        local.push(false).await?;
        Ok(wake)
    }

    /// The proxy configuration for the stored routes and ready endpoints.
    pub(crate) fn desired_config(&self, set: &ManifestSet) -> anyhow::Result<ProxyConfig> {
        let mut inputs = Vec::new();
        for (_, r) in set.rollouts() {
            let name = r.metadata.name.clone().unwrap_or_default();
            inputs.push((r.clone(), self.store.route(&name)?, self.endpoints(&name)));
        }
        let rr: Vec<RolloutRouting<'_>> = inputs
            .iter()
            .map(|(r, route, ep)| RolloutRouting {
                rollout: r,
                route,
                endpoints: ep,
            })
            .collect();
        Ok(routing::proxy_config(set, &rr, &self.ports))
    }

    /// Pushes the proxy configuration if it changed since the last push (or
    /// always, with `force`: the proxy was found serving something else).
    /// Returns the configuration then in force, when pushed.
    /// `served` is what the proxy answered last: when it is not what was
    /// pushed (someone sent a Service's traffic elsewhere), it is put back.
    pub(crate) async fn push_routing(
        &self,
        set: &ManifestSet,
        force: bool,
        served: Option<&ProxyConfig>,
    ) -> anyhow::Result<Option<ProxyConfig>> {
        let desired = self.desired_config(set)?;
        let mut last = self.last_proxy.lock().await;
        let unchanged = last.as_ref() == Some(&desired);
        let drifted = !force
            && unchanged
            && served.is_some_and(|served| {
                let (want, got) = (
                    crate::local_adapters::endpoint_view(&desired),
                    crate::local_adapters::endpoint_view(served),
                );
                want.iter().any(|(name, w)| got.get(name) != Some(w))
            });
        if drifted {
            tracing::warn!(
                "the proxy serves other endpoints than the control plane set; putting them back"
            );
        }
        if force || drifted || !unchanged {
            let in_force = self.proxy.apply(&desired).await?;
            if let Ok(mut f) = self.in_force.lock() {
                *f = in_force.clone();
            }
            *last = Some(desired);
            return Ok(Some(in_force));
        }
        Ok(None)
    }

    /// The `restartAt` in force for a rollout (manifest or `serin restart`),
    /// in milliseconds since the epoch.
    pub fn restart_at(&self, rollout: &str) -> Option<u64> {
        let set = self.manifests();
        let r = set
            .rollouts()
            .map(|(_, r)| r)
            .find(|r| r.metadata.name.as_deref() == Some(rollout))?;
        let mut spec = serin_plan::to_engine(&set, r).ok()?;
        self.store
            .overrides(rollout)
            .unwrap_or_default()
            .apply(&mut spec);
        spec.restart_at
    }

    /// Carries out a user operation through the driver
    /// ([`serin_driver::operate`]) and the local adapters.
    pub async fn operate(&self, rollout: &str, op: &Operation) -> Result<(), OperationError> {
        let set = self.manifests();
        let r = set
            .rollouts()
            .map(|(_, r)| r)
            .find(|r| r.metadata.name.as_deref() == Some(rollout))
            .ok_or_else(|| OperationError::NotFound(rollout.into()))?;
        let manifest = self.manifest_target(&set, r)?;
        let user_op = match op {
            Operation::Promote => serin_driver::UserOperation::Command(e::Command::Promote),
            Operation::PromoteFull => serin_driver::UserOperation::Command(e::Command::PromoteFull),
            Operation::Pause => serin_driver::UserOperation::Command(e::Command::Pause),
            Operation::Resume => serin_driver::UserOperation::Command(e::Command::Resume),
            Operation::Abort => serin_driver::UserOperation::Command(e::Command::Abort),
            Operation::Retry => serin_driver::UserOperation::Command(e::Command::Retry),
            Operation::Undo { to_revision } => serin_driver::UserOperation::Undo {
                to_revision: *to_revision,
            },
            Operation::Restart { at } => serin_driver::UserOperation::Restart { at: *at },
        };
        let local = crate::local_adapters::Local::new(self, &set, None);
        let writer = self.status_writer.lock().await;
        let now = now_ms();
        let undone = serin_driver::operate(&local, &local, &manifest, &user_op, now)
            .await
            .map_err(|err| match err {
                serin_driver::OperateError::Refused(e) => OperationError::Refused(e),
                serin_driver::OperateError::Adapter(e) => OperationError::Adapter(e),
            })?;
        drop(writer);
        if let (Some(revision), Some(rec)) = (undone, &self.recorder) {
            rec.undo(
                now,
                rollout,
                strategy_name(&manifest.spec),
                self.counters(r),
                &revision.0,
            );
        }
        // A person acted: try at once, not at the end of a backoff.
        self.driver.reset(rollout);
        Ok(())
    }
}
