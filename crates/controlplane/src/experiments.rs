//! Argo `Experiment` manifests under `serin up`: the pure machine
//! ([`serin_engine::experiment_kind`]) carried out on one machine. Each
//! template's pods are local processes in a platform group of the
//! experiment's own (no Service or weight ever routes to them); analyses
//! run in the control plane's analysis runner; the status is durable in
//! the store and resumed after a restart (lost runs are started again).
//!
//! - An Experiment in the watched folder starts when first seen. A changed
//!   spec (other than `terminate`) starts it over; the old pods go.
//! - `serin abort experiment NAME` (`POST /v1/experiments/NAME/terminate`)
//!   is Argo's `terminate`, kept in the store until the spec changes.
//! - Removing the manifest removes its pods and stops its analyses (as
//!   deleting an Experiment deletes its ReplicaSets); its last status stays
//!   readable until the name is used again.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serin_analysis as an;
use serin_engine as e;
use serin_engine::experiment_kind::{self as xk, ExperimentAction, ExperimentStatus};
use serin_spec::{ManifestSet, PodTemplateSpec};

use crate::reconciler::{ControlPlane, RunSpec};
use serin_clock::now_ms;

/// Store key prefix of the records.
const RECORD: &str = "experiment/";
/// Store key prefix of terminate requests.
const TERMINATE: &str = "experiment-terminate/";

/// The owner under which an experiment's analysis runs are kept (never a
/// rollout's name: `:` is not allowed in one).
fn owner(name: &str) -> String {
    format!("experiment:{name}")
}

/// The platform group of an experiment's pods (`_` is not allowed in a
/// Kubernetes name, so no rollout's group is ever the same).
pub(crate) fn group(name: &str) -> String {
    format!("experiment_{name}")
}

/// What the store keeps per Experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The experiment's name.
    pub name: String,
    /// The manifest spec (without `terminate`) this status is for.
    pub fingerprint: String,
    /// The engine's status.
    pub status: ExperimentStatus,
    /// Pod templates of every workload started (to remove them later).
    #[serde(default)]
    pub workloads: BTreeMap<String, Value>,
}

/// Why a request about an Experiment was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentOpError {
    /// No Experiment of that name in the manifests.
    #[error("no Experiment named {0}")]
    NotFound(String),
    /// Terminate of an experiment that has ended.
    #[error("Experiment {name} is {phase:?}: nothing to terminate")]
    Over {
        /// Name.
        name: String,
        /// Its final phase.
        phase: e::AnalysisPhase,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn fingerprint(x: &serin_spec::Experiment) -> String {
    let mut spec = x.spec.clone();
    spec.terminate = false;
    serde_json::to_string(&spec).unwrap_or_default()
}

fn record(cp: &ControlPlane, name: &str) -> anyhow::Result<Option<Record>> {
    Ok(cp.store().get_json(&format!("{RECORD}{name}"))?)
}

/// One pass over every Experiment (and the pods of removed ones). Returns
/// when the next pass is due if nothing changes before.
pub(crate) async fn reconcile_all(cp: &ControlPlane, set: &ManifestSet) -> Option<u64> {
    let mut wake: Option<u64> = None;
    let mut seen = Vec::new();
    for (doc, x) in set.experiments() {
        let Some(name) = x.run_name() else { continue };
        seen.push(name.clone());
        match reconcile_one(cp, set, doc, x, &name).await {
            Ok(due) => {
                wake = wake.into_iter().chain(due).min();
            }
            Err(err) => tracing::warn!(experiment = %name, "cannot run: {err:#}"),
        }
    }
    if let Err(err) = remove_gone(cp, &seen).await {
        tracing::warn!("removing the pods of removed Experiments: {err:#}");
    }
    wake
}

async fn reconcile_one(
    cp: &ControlPlane,
    set: &ManifestSet,
    doc: &serin_spec::Document,
    x: &serin_spec::Experiment,
    name: &str,
) -> anyhow::Result<Option<u64>> {
    let mut spec = serin_plan::experiment::to_engine(x)
        .map_err(|err| anyhow::anyhow!(err.located(set, doc)))?;
    let key = format!("{RECORD}{name}");
    let fp = fingerprint(x);
    let mut rec = match record(cp, name)? {
        Some(r) if r.fingerprint == fp => r,
        old => {
            // New, or a changed spec: start over. The old pods are removed
            // by the machine (a workload the spec does not have); the old
            // analyses stop now.
            if let Some(old) = &old {
                for r in &old.status.analysis_runs {
                    cp.stop_run(&r.analysis_run);
                }
                tracing::info!(experiment = %name, "spec changed: starting over");
            }
            cp.store().delete(&format!("{TERMINATE}{name}"))?;
            // The new runs have the old ones' names (`{experiment}-{analysis}`,
            // as Argo's): the old outcomes must not count for them.
            cp.store().delete(&format!("analysis/{}", owner(name)))?;
            Record {
                name: name.to_string(),
                fingerprint: fp,
                status: ExperimentStatus::default(),
                workloads: old.map(|o| o.workloads).unwrap_or_default(),
            }
        }
    };
    if cp
        .store()
        .get_json::<bool>(&format!("{TERMINATE}{name}"))?
        .unwrap_or(false)
    {
        spec.terminate = true;
    }
    let own = owner(name);
    let g = group(name);
    // Runs a previous control plane left are started again.
    let stored: BTreeMap<String, e::AnalysisPhase> = cp
        .store()
        .get_json(&format!("analysis/{own}"))?
        .unwrap_or_default();
    for r in rec
        .status
        .analysis_runs
        .iter()
        .filter(|r| !r.phase.is_completed())
    {
        if !cp.run_known(&r.analysis_run)
            && !stored.contains_key(&r.analysis_run)
            && let Some(rs) = cp
                .store()
                .get_json::<RunSpec>(&format!("runspec/{own}/{}", r.analysis_run))?
        {
            tracing::info!(experiment = %name, run = %r.analysis_run, "restarting an analysis run the previous control plane left");
            cp.start_run_for(
                set,
                &own,
                &r.analysis_run,
                &rs.templates,
                inputs(doc, x, &rs),
            )?;
        }
    }
    let observed = xk::ExperimentObserved {
        pods: crate::local_adapters::observe(cp.platform(), &g),
        analysis: cp.run_phases(&own, stored)?,
    };
    let now = now_ms();
    let out = xk::reconcile(&spec, &rec.status, &observed, now);
    let mut acted = false;
    for a in &out.actions {
        match a {
            ExperimentAction::Scale {
                template,
                workload,
                replicas,
            } => {
                acted = true;
                let t = x.spec.templates.iter().find(|t| &t.name == template);
                let pod = match t.and_then(|t| t.template.as_ref()) {
                    Some(p) if !template.is_empty() => {
                        let v = serde_json::to_value(p)?;
                        rec.workloads.insert(workload.0.clone(), v);
                        p.clone()
                    }
                    _ => match rec.workloads.get(&workload.0) {
                        Some(v) => serde_json::from_value::<PodTemplateSpec>(v.clone())?,
                        None => continue,
                    },
                };
                // One value per platform group: the largest of the
                // templates' (a pod never counts as available too early).
                let min_ready = x
                    .spec
                    .templates
                    .iter()
                    .filter_map(|t| t.min_ready_seconds)
                    .filter_map(|n| u32::try_from(n).ok())
                    .max()
                    .unwrap_or(0);
                cp.platform().set_min_ready_seconds(&g, min_ready);
                cp.platform()
                    .scale(&g, &workload.0, &pod, *replicas)
                    .await
                    .map_err(|err| {
                        anyhow::anyhow!("scaling template {template} to {replicas}: {err}")
                    })?;
            }
            ExperimentAction::StartAnalysis {
                name: run,
                templates,
                args,
                ..
            } => {
                acted = true;
                let rs = RunSpec {
                    templates: templates.clone(),
                    args: args.clone(),
                };
                cp.store().put_json(&format!("runspec/{own}/{run}"), &rs)?;
                cp.start_run_for(set, &own, run, templates, inputs(doc, x, &rs))?;
            }
            ExperimentAction::StopAnalysis { name: run } => {
                acted = true;
                cp.stop_run(run);
            }
            ExperimentAction::Emit(ev) => {
                cp.publish(json!({"experiment": name, "at": now, "event": ev}));
            }
        }
    }
    if out.status != rec.status || acted {
        rec.status = out.status.clone();
        cp.store().put_json(&key, &rec)?;
    }
    Ok(if acted { Some(now) } else { out.next_wake })
}

/// The run's inputs: args, the Experiment object for `fieldRef`, and the
/// experiment's dryRun and measurementRetention.
fn inputs(doc: &serin_spec::Document, x: &serin_spec::Experiment, rs: &RunSpec) -> an::RunInputs {
    an::RunInputs {
        args: serin_plan::run_arguments(&rs.args),
        sources: an::ArgSources {
            stable_hash: None,
            latest_hash: None,
            rollout: doc.value.clone(),
        },
        dry_run: x.spec.dry_run.clone(),
        measurement_retention: x.spec.measurement_retention.clone(),
        // Experiments run only under `serin up`: job metrics run locally.
        jobs_on_cluster: false,
    }
}

/// Pods and runs of experiments no longer in the manifests go.
async fn remove_gone(cp: &ControlPlane, present: &[String]) -> anyhow::Result<()> {
    let records: Vec<Record> = cp.store().scan_json(RECORD)?;
    for rec in records.iter().filter(|r| !present.contains(&r.name)) {
        let g = group(&rec.name);
        for w in crate::local_adapters::observe(cp.platform(), &g) {
            if w.replicas == 0 {
                continue;
            }
            if let Some(v) = rec.workloads.get(&w.hash.0) {
                let pod: PodTemplateSpec = serde_json::from_value(v.clone())?;
                cp.platform().scale(&g, &w.hash.0, &pod, 0).await?;
            }
        }
        for r in &rec.status.analysis_runs {
            if !r.phase.is_completed() {
                cp.stop_run(&r.analysis_run);
            }
        }
    }
    Ok(())
}

/// Requests Argo's `terminate` for Experiment `name`; the loop carries it
/// out at once (durably: the request survives a restart).
pub fn terminate(cp: &ControlPlane, name: &str) -> Result<(), ExperimentOpError> {
    let set = cp.manifests();
    if !set
        .experiments()
        .any(|(_, x)| x.run_name().as_deref() == Some(name))
    {
        return Err(ExperimentOpError::NotFound(name.into()));
    }
    if let Some(r) = cp.store().get_json::<Record>(&format!("{RECORD}{name}"))?
        && let Some(phase) = r.status.phase.filter(|p| p.is_completed())
    {
        return Err(ExperimentOpError::Over {
            name: name.into(),
            phase,
        });
    }
    cp.store().put_json(&format!("{TERMINATE}{name}"), &true)?;
    cp.wake().notify_one();
    Ok(())
}

fn rfc3339(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |ms| {
        Value::String(serin_clock::format_rfc3339_seconds(ms))
    })
}

/// One Experiment in Argo's shape (`metadata`, `spec` as written, `status`
/// as Argo's controller writes it) plus its pods; `None` if unknown.
pub fn describe(cp: &ControlPlane, name: &str) -> anyhow::Result<Option<Value>> {
    let set = cp.manifests();
    let Some((_, x)) = set
        .experiments()
        .find(|(_, x)| x.run_name().as_deref() == Some(name))
    else {
        return Ok(None);
    };
    let rec = record(cp, name)?.unwrap_or_default();
    let st = &rec.status;
    let pods = cp.platform().observe(&group(name));
    let templates: Vec<Value> = st
        .template_statuses
        .iter()
        .map(|t| {
            let p = pods.iter().find(|p| p.hash == t.pod_template_hash.0);
            json!({
                "name": t.name,
                "podTemplateHash": t.pod_template_hash,
                "replicas": t.replicas,
                "updatedReplicas": t.updated_replicas,
                "readyReplicas": t.ready_replicas,
                "availableReplicas": t.available_replicas,
                "status": t.status,
                "message": if t.message.is_empty() { Value::Null } else { t.message.clone().into() },
                "lastTransitionTime": rfc3339(Some(t.last_transition_at)),
                "pods": p.map(|p| p.pods.iter().filter(|pod| !pod.terminating).map(|pod| json!({
                    "name": pod.name, "addr": pod.addr.to_string(), "ready": pod.ready,
                    "status": pod.status,
                })).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    let runs: Vec<Value> = st
        .analysis_runs
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "analysisRun": r.analysis_run,
                "phase": r.phase,
                "message": if r.message.is_empty() { Value::Null } else { r.message.clone().into() },
            })
        })
        .collect();
    let conditions: Vec<Value> = st
        .conditions
        .iter()
        .map(|c| {
            json!({
                "type": c.type_,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": rfc3339(Some(c.last_transition_at)),
                "lastUpdateTime": rfc3339(Some(c.last_update_at)),
            })
        })
        .collect();
    let terminate = cp
        .store()
        .get_json::<bool>(&format!("{TERMINATE}{name}"))?
        .unwrap_or(false)
        || x.spec.terminate;
    let mut spec = serde_json::to_value(&x.spec)?;
    if terminate && let Some(o) = spec.as_object_mut() {
        o.insert("terminate".into(), true.into());
    }
    Ok(Some(json!({
        "apiVersion": x.api_version,
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": x.metadata.namespace},
        "spec": spec,
        "status": {
            "phase": st.phase,
            "message": if st.message.is_empty() { Value::Null } else { st.message.clone().into() },
            "availableAt": rfc3339(st.available_at),
            "templateStatuses": templates,
            "analysisRuns": runs,
            "conditions": conditions,
        },
    })))
}

/// Every Experiment in the manifests.
pub fn list(cp: &ControlPlane) -> anyhow::Result<Vec<Value>> {
    let set = cp.manifests();
    let mut out = Vec::new();
    for name in set.experiments().filter_map(|(_, x)| x.run_name()) {
        if let Some(v) = describe(cp, &name)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// `GET /v1/experiments[/NAME]`, `POST /v1/experiments/NAME/terminate`.
pub fn routes() -> axum::Router<Arc<ControlPlane>> {
    use crate::api::error;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    async fn all(State(cp): State<Arc<ControlPlane>>) -> Response {
        match list(&cp) {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    }
    async fn one(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
        match describe(&cp, &name) {
            Ok(Some(v)) => axum::Json(v).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("no Experiment named {name}")),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    }
    async fn term(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
        match terminate(&cp, &name) {
            Ok(()) => axum::Json(json!({"name": name, "terminate": true})).into_response(),
            Err(e @ ExperimentOpError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
            Err(e @ ExperimentOpError::Over { .. }) => error(StatusCode::CONFLICT, e),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
    axum::Router::new()
        .route("/v1/experiments", get(all))
        .route("/v1/experiments/{name}", get(one))
        .route("/v1/experiments/{name}/terminate", post(term))
}
