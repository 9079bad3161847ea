//! `FlagRollout` manifests under `serin up`: guarded feature-flag rollouts
//! run inside the control plane, writing percentages in-process through the
//! flag server's management layer (so its audit log names
//! `flagrollout/NAME`), with the step logic of `serin_flag_rollout` shared
//! with `serin flags rollout`.
//!
//! Semantics:
//! - Applying a FlagRollout starts it. Its status lives in the control
//!   plane's store under `flagrollout/NAME` with the spec it ran for.
//! - Re-applying the same spec changes nothing (a completed or rolled-back
//!   rollout stays so); a changed spec starts over from the first step.
//! - A restarted control plane resumes each unfinished rollout at the step
//!   it was on (re-running that step's analysis; the time already spent at
//!   the step counts).
//! - An analysis that ends Failed, Error or Inconclusive sets the flag to
//!   0 %, then the phase is RolledBack with the reason; an event goes to
//!   `/v1/events` and a notification (`on-rollout-aborted`) to the
//!   configured subscriptions.
//! - A flag that does not exist or is not a two-variant flag, flags served
//!   from a read-only file, or no `flags:` in serin.yaml: phase Error with
//!   the reason; nothing is changed.
//! - `POST /v1/flagrollouts/NAME/abort` sets the flag back to 0 % (Aborted);
//!   `…/retry` starts it over. Removing the manifest stops the rollout where
//!   it is (the flag keeps its percentage); adding it back with the same spec
//!   resumes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serin_analysis as an;
use serin_flag_rollout::{self as fr, Event, SetPercentage, Spec, Status, WriteError};
use serin_spec::{FlagRollout, ManifestSet};

use crate::reconciler::ControlPlane;
use serin_clock::now_ms;

/// Store key prefix of the records.
const RECORD: &str = "flagrollout/";
/// Store key prefix of requested operations.
const OP: &str = "flagrollout-op/";
/// How often manifests and requested operations are looked at.
const TICK: Duration = Duration::from_millis(250);

/// What the store keeps per FlagRollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The manifest spec (as JSON) this status is for; another spec starts
    /// over.
    pub fingerprint: String,
    /// The flag server environment.
    pub environment: String,
    /// The resolved spec.
    pub spec: Spec,
    /// Where it is.
    pub status: Status,
}

/// A user operation on a FlagRollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Set the flag back to 0 % and stop (Aborted).
    Abort,
    /// Start over from the first step.
    Retry,
}

/// A requested operation, applied by the loop when it is newer than the
/// rollout's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpRecord {
    op: Op,
    at_ms: u64,
}

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// No FlagRollout of that name in the manifests.
    #[error("no FlagRollout named {0}")]
    NotFound(String),
    /// Abort of a rollout that is over.
    #[error("FlagRollout {name} is {phase:?}: nothing to abort")]
    Over {
        /// Name.
        name: String,
        /// Its final phase.
        phase: fr::Phase,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn find<'s>(set: &'s ManifestSet, name: &str) -> Option<&'s FlagRollout> {
    set.flag_rollouts()
        .map(|(_, f)| f)
        .find(|f| f.metadata.name.as_deref() == Some(name))
}

/// Requests `op` on FlagRollout `name`; the loop carries it out within a
/// tick (durably: a request survives a restart).
pub fn request(cp: &ControlPlane, name: &str, op: Op) -> Result<(), OpError> {
    if find(&cp.manifests(), name).is_none() {
        return Err(OpError::NotFound(name.into()));
    }
    if op == Op::Abort
        && let Some(r) = cp.store().get_json::<Record>(&format!("{RECORD}{name}"))?
        && r.status.phase.is_final()
    {
        return Err(OpError::Over {
            name: name.into(),
            phase: r.status.phase,
        });
    }
    // Strictly after the current start, so a retry's fresh start (at least
    // this instant + 1) is newer than the request that caused it.
    cp.store().put_json(
        &format!("{OP}{name}"),
        &OpRecord {
            op,
            at_ms: now_ms(),
        },
    )?;
    Ok(())
}

/// What identifies a FlagRollout's run: its spec and the environment it
/// resolves to (metadata changes do not start it over).
fn fingerprint(spec: &serin_spec::FlagRolloutSpec, environment: &str) -> String {
    json!({"spec": spec, "environment": environment}).to_string()
}

/// The resolved form of a FlagRollout manifest.
struct Resolved {
    fingerprint: String,
    environment: String,
    spec: Spec,
    analysis: Result<Option<fr::Analysis>, String>,
}

fn resolve(cp: &ControlPlane, set: &ManifestSet, f: &FlagRollout, default_env: &str) -> Resolved {
    let environment = f
        .spec
        .environment
        .clone()
        .unwrap_or_else(|| default_env.to_string());
    let fingerprint = fingerprint(&f.spec, &environment);
    let interval_ms = f.spec.interval.parse().map_or(u64::MAX, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    });
    let spec = Spec {
        flag: f.flag().to_string(),
        // Lint rejects anything outside 1..=100; 0 keeps a bad value
        // visible as invalid steps rather than wrapping.
        steps: f
            .spec
            .steps
            .iter()
            .map(|&s| u8::try_from(s).unwrap_or(0))
            .collect(),
        interval_ms,
        analysis: f.spec.analysis.is_some(),
    };
    let analysis = match &f.spec.analysis {
        None => Ok(None),
        Some(a) => {
            let mut templates = Vec::new();
            let mut missing = Vec::new();
            for t in &a.templates {
                let kind = if t.cluster_scope {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                };
                let found = set.analysis_templates().find(|(d, at)| {
                    d.kind == kind && at.metadata.name.as_deref() == Some(&t.template_name)
                });
                match found {
                    Some((_, at)) => templates.push(at.clone()),
                    None => missing.push(t.template_name.clone()),
                }
            }
            if missing.is_empty() {
                Ok(Some(fr::Analysis {
                    templates,
                    inputs: an::RunInputs {
                        args: a.args.clone(),
                        sources: an::ArgSources {
                            rollout: serde_json::to_value(f).unwrap_or_default(),
                            ..Default::default()
                        },
                        dry_run: a.dry_run.clone(),
                        measurement_retention: a.measurement_retention.clone(),
                        jobs_on_cluster: false,
                    },
                    providers: cp.providers(),
                    sink: None,
                }))
            } else {
                Err(format!(
                    "analysis template(s) not found: {}",
                    missing.join(", ")
                ))
            }
        }
    };
    Resolved {
        fingerprint,
        environment,
        spec,
        analysis,
    }
}

/// Writes percentages through the in-process flag server.
struct InProcess {
    flags: Option<serin_flags_server::Manager>,
    environment: String,
    actor: String,
}

impl SetPercentage for InProcess {
    async fn set_percentage(&self, flag: &str, pct: u8) -> Result<(), WriteError> {
        let Some(m) = &self.flags else {
            return Err(WriteError::Refused(
                "serin.yaml has no `flags:` section, so serin up serves no flags to roll out"
                    .into(),
            ));
        };
        match m
            .set_percentage(&self.environment, flag, pct, &self.actor)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status.is_server_error() || e.code == "CONFLICT" => {
                Err(WriteError::Unavailable(e.details))
            }
            Err(e) => Err(WriteError::Refused(e.details)),
        }
    }
}

/// A rollout being driven.
struct Task {
    started_ms: u64,
    abort: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// The tasks; aborted when dropped (the loop itself was stopped).
#[derive(Default)]
struct Tasks(BTreeMap<String, Task>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.handle.abort();
        }
    }
}

impl Tasks {
    /// Stops a task and waits until it can no longer write.
    async fn stop(&mut self, name: &str) {
        if let Some(t) = self.0.remove(name) {
            t.handle.abort();
            let _ = t.handle.await;
        }
    }
}

/// What the loop needs besides the control plane.
struct Loop {
    cp: Arc<ControlPlane>,
    flags: Option<serin_flags_server::Manager>,
    default_env: String,
}

/// Runs every FlagRollout of the manifests in force until the returned
/// future is dropped (which stops them where they are; a restarted control
/// plane resumes them). `flags` is the in-process flag server, when
/// serin.yaml configures one; `default_env` is the environment it serves.
pub async fn run(
    cp: Arc<ControlPlane>,
    flags: Option<serin_flags_server::Manager>,
    default_env: String,
) {
    let l = Loop {
        cp,
        flags,
        default_env,
    };
    let mut tasks = Tasks::default();
    loop {
        if let Err(e) = l.pass(&mut tasks).await {
            tracing::warn!("flag rollouts: {e:#}");
        }
        tokio::time::sleep(TICK).await;
    }
}

impl Loop {
    async fn pass(&self, tasks: &mut Tasks) -> anyhow::Result<()> {
        let set = self.cp.manifests();
        let mut seen = BTreeSet::new();
        for (doc, f) in set.flag_rollouts() {
            let Some(name) = f.metadata.name.clone() else {
                continue;
            };
            if !doc.repaired.is_empty() {
                continue;
            }
            seen.insert(name.clone());
            let key = format!("{RECORD}{name}");
            let resolved = resolve(&self.cp, &set, f, &self.default_env);
            let record: Option<Record> = self.cp.store().get_json(&key)?;
            let op: Option<OpRecord> = self.cp.store().get_json(&format!("{OP}{name}"))?;
            let mut record = match record {
                Some(r) if r.fingerprint == resolved.fingerprint => r,
                previous => {
                    // New, or a changed spec: start over.
                    tasks.stop(&name).await;
                    let r = self.fresh(&resolved, op.map_or(0, |o| o.at_ms));
                    if previous.is_some() {
                        tracing::info!(flag_rollout = %name, "spec changed: starting over");
                    }
                    self.cp.store().put_json(&key, &r)?;
                    self.publish(&name, &r, &json!({"type": "Started"}));
                    r
                }
            };
            if let Some(op) = op
                && op.at_ms >= record.status.started_ms
            {
                match op.op {
                    Op::Retry => {
                        tasks.stop(&name).await;
                        record = self.fresh(&resolved, op.at_ms);
                        self.cp.store().put_json(&key, &record)?;
                        self.publish(&name, &record, &json!({"type": "Started"}));
                    }
                    Op::Abort => {
                        if let Some(t) = tasks.0.get(&name) {
                            let _ = t.abort.send(true);
                        } else if record.status.abort(now_ms()) {
                            self.cp.store().put_json(&key, &record)?;
                        }
                    }
                }
            }
            if tasks
                .0
                .get(&name)
                .is_some_and(|t| t.handle.is_finished() || t.started_ms != record.status.started_ms)
            {
                tasks.stop(&name).await;
            }
            if !tasks.0.contains_key(&name) && !record.status.phase.is_final() {
                self.spawn(tasks, &name, record, resolved);
            }
        }
        // Removed from the manifests: stop where it is.
        let gone: Vec<String> = tasks
            .0
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            tasks.stop(&name).await;
            let key = format!("{RECORD}{name}");
            if let Some(mut r) = self.cp.store().get_json::<Record>(&key)? {
                r.status.message = format!(
                    "removed from the manifests: stopped at {} %",
                    r.status.current_percentage()
                );
                r.status.updated_ms = now_ms();
                self.cp.store().put_json(&key, &r)?;
            }
            tracing::info!(flag_rollout = %name, "removed from the manifests: stopped");
        }
        Ok(())
    }

    /// A new record for `resolved`, started strictly after `after_ms` (the
    /// request that caused it, if any).
    fn fresh(&self, resolved: &Resolved, after_ms: u64) -> Record {
        let mut status = Status::new(&resolved.spec, now_ms().max(after_ms + 1));
        if let Err(e) = &resolved.analysis {
            status.error(e.clone(), status.started_ms);
        }
        Record {
            fingerprint: resolved.fingerprint.clone(),
            environment: resolved.environment.clone(),
            spec: resolved.spec.clone(),
            status,
        }
    }

    fn publish(&self, name: &str, r: &Record, event: &Value) {
        self.cp.publish(json!({
            "flagRollout": name,
            "flag": r.spec.flag,
            "at": now_ms(),
            "phase": r.status.phase,
            "percentage": r.status.percentage,
            "event": event,
        }));
    }

    fn spawn(&self, tasks: &mut Tasks, name: &str, record: Record, resolved: Resolved) {
        let (abort_tx, mut abort_rx) =
            tokio::sync::watch::channel(record.status.phase == fr::Phase::Aborting);
        let started_ms = record.status.started_ms;
        let cp = Arc::clone(&self.cp);
        let writer = InProcess {
            flags: self.flags.clone(),
            environment: record.environment.clone(),
            actor: format!("flagrollout/{name}"),
        };
        let name = name.to_string();
        let task_name = name.clone();
        let analysis = resolved.analysis.ok().flatten();
        let handle = tokio::spawn(async move {
            let name = task_name;
            let key = format!("{RECORD}{name}");
            let mut status = record.status.clone();
            if status.percentage.is_some() {
                tracing::info!(flag_rollout = %name, step = status.current_step + 1, "resuming");
            }
            let mut observe = |st: &Status, events: &[Event]| {
                let r = Record {
                    status: st.clone(),
                    ..record.clone()
                };
                if let Err(e) = cp.store().put_json(&key, &r) {
                    tracing::error!(flag_rollout = %name, "cannot store the status: {e}");
                }
                for ev in events {
                    tell(&cp, &name, &r, ev);
                }
            };
            let options = fr::DriveOptions {
                max_write_attempts: None,
                retry_backoff: Duration::from_secs(1),
            };
            if let Err(e) = fr::drive(
                &record.spec,
                &mut status,
                &writer,
                analysis.as_ref(),
                &mut abort_rx,
                &options,
                &mut observe,
            )
            .await
            {
                tracing::error!(flag_rollout = %name, "stopped: {e}");
            }
        });
        tasks.0.insert(
            name,
            Task {
                started_ms,
                abort: abort_tx,
                handle,
            },
        );
    }
}

/// Logs an event, sends it to `/v1/events` and notifies.
fn tell(cp: &ControlPlane, name: &str, r: &Record, ev: &Event) {
    tracing::info!(flag_rollout = %name, flag = %r.spec.flag, event = ?ev, "flag rollout");
    cp.publish(json!({
        "flagRollout": name,
        "flag": r.spec.flag,
        "at": now_ms(),
        "phase": r.status.phase,
        "percentage": r.status.percentage,
        "event": ev,
    }));
    let Some(rec) = cp.recorder() else {
        return;
    };
    if let Some(event) = fr::notification(name, &r.spec, ev, now_ms()) {
        rec.notify(event);
    }
}

/// A FlagRollout as `serin get flagrollout` and the API show it.
pub fn describe(cp: &ControlPlane, name: &str) -> Result<Option<Value>, OpError> {
    let set = cp.manifests();
    let Some(f) = find(&set, name) else {
        return Ok(None);
    };
    let record: Option<Record> = cp.store().get_json(&format!("{RECORD}{name}"))?;
    let steps: Vec<i64> = f.spec.steps.clone();
    let total = steps.len();
    let mut out = json!({
        "name": name,
        "flag": f.flag(),
        "environment": record.as_ref().map(|r| r.environment.clone()).or_else(|| f.spec.environment.clone()),
        "steps": steps,
        "interval": f.spec.interval.0,
        "analysis": f.spec.analysis,
        "totalSteps": total,
    });
    let Some(o) = out.as_object_mut() else {
        return Ok(None);
    };
    match record {
        None => {
            o.insert("phase".into(), json!("Pending"));
            o.insert("currentStep".into(), json!(0));
            o.insert("percentage".into(), Value::Null);
            o.insert("message".into(), json!("not started yet"));
            o.insert("stepResults".into(), json!([]));
        }
        Some(r) => {
            o.extend(fr::view(&r.status, total));
            let st = &r.status;
            if r.fingerprint != fingerprint(&f.spec, &r.environment) {
                o.insert(
                    "message".into(),
                    json!(format!("spec changed: starting over ({})", st.message)),
                );
            }
        }
    }
    Ok(Some(out))
}

/// Every FlagRollout in the manifests, described.
pub fn list(cp: &ControlPlane) -> Result<Vec<Value>, OpError> {
    let set = cp.manifests();
    let mut out = Vec::new();
    for (_, f) in set.flag_rollouts() {
        if let Some(name) = &f.metadata.name
            && let Some(v) = describe(cp, name)?
        {
            out.push(v);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------

/// `GET /v1/flagrollouts`, `GET /v1/flagrollouts/{name}`,
/// `POST /v1/flagrollouts/{name}/{abort|retry}` (auth is the API's: viewer
/// reads, deployer operates; listed in `api::ROUTES` and the OpenAPI file).
pub fn routes() -> axum::Router<Arc<ControlPlane>> {
    use crate::api::error;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    async fn all(State(cp): State<Arc<ControlPlane>>) -> Response {
        match list(&cp) {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    async fn one(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
        match describe(&cp, &name) {
            Ok(Some(v)) => axum::Json(v).into_response(),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                format!("no FlagRollout named {name}"),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    async fn operate(
        State(cp): State<Arc<ControlPlane>>,
        Path((name, op)): Path<(String, String)>,
    ) -> Response {
        let op = match op.as_str() {
            "abort" => Op::Abort,
            "retry" => Op::Retry,
            other => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("unknown operation {other:?} (abort, retry)"),
                );
            }
        };
        match request(&cp, &name, op) {
            Ok(()) => axum::Json(json!({"ok": true, "flagRollout": name, "operation": op}))
                .into_response(),
            Err(e @ OpError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
            Err(e @ OpError::Over { .. }) => error(StatusCode::CONFLICT, e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    axum::Router::new()
        .route("/v1/flagrollouts", get(all))
        .route("/v1/flagrollouts/{name}", get(one))
        .route("/v1/flagrollouts/{name}/{op}", post(operate))
}
