//! Analysis on a cluster: the engine's runs become AnalysisRun objects
//! (`kubectl get analysisruns`), measured in the controller by Serin's
//! analysis runner (`serin-analysis`: prometheus, web and job providers,
//! Argo's semantics; job metrics as batch/v1 Jobs, see `job.rs`) with the
//! templates read from the cluster; the run's status is written to the
//! object in Argo's shape (phase, message, metricResults, runSummary) as it
//! changes, and the controller watches those objects, so a finished run
//! wakes its Rollout.
//!
//! A run is measured by the controller that started it. A restarted (or
//! newly elected) controller that finds one still Running measures it
//! again from its start ([`resume`], from the request kept on the object
//! in [`ANN_RUN_REQUEST`]): the step waits longer, and is neither aborted
//! nor passed unmeasured. A run without that annotation (created before
//! it existed) is marked Error instead, so the engine aborts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use serin_analysis as an;
use serin_engine as e;

use crate::adapters::{analysis_run, cluster_template, template};
use crate::object::RolloutObject;
use crate::{Error, LABEL_ROLLOUT};

/// Annotation on an AnalysisRun keeping what it was started with
/// ([`RunRequest`]), so another controller can measure it again.
pub const ANN_RUN_REQUEST: &str = "serin.dev/run-request";

/// What a run was started with: its templates (`cluster:NAME` for a
/// ClusterAnalysisTemplate), its arguments as the engine resolved them and
/// the revisions `{{rollout…}}`-style sources named then.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct RunRequest {
    templates: Vec<String>,
    args: Vec<(String, e::ArgValueResolved)>,
    stable: Option<String>,
    latest: Option<String>,
}

/// The runs this controller is measuring, by `namespace/name`.
#[derive(Default)]
pub struct Runs {
    providers: an::Providers,
    stops: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
}

impl Runs {
    /// Whether this controller measures `ns/name`.
    pub(crate) fn running_here(&self, ns: &str, name: &str) -> bool {
        self.stops
            .lock()
            .is_ok_and(|s| s.contains_key(&format!("{ns}/{name}")))
    }

    /// Stops measuring (the object is marked terminated by the caller).
    pub(crate) fn stop(&self, ns: &str, name: &str) {
        if let Ok(s) = self.stops.lock()
            && let Some(tx) = s.get(&format!("{ns}/{name}"))
        {
            let _ = tx.send(true);
        }
    }
}

fn strip(obj: &DynamicObject, kind: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind,
           "metadata": {"name": obj.metadata.name, "namespace": obj.metadata.namespace},
           "spec": obj.data.get("spec").cloned().unwrap_or(json!({}))})
}

/// The templates `names` (`cluster:NAME` for a ClusterAnalysisTemplate)
/// read from the cluster.
pub(crate) async fn templates(
    client: &Client,
    ns: &str,
    names: &[String],
) -> Result<Vec<serin_spec::AnalysisTemplate>, String> {
    let mut out = Vec::new();
    for t in names {
        let (obj, kind) = match t.strip_prefix("cluster:") {
            Some(bare) => {
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_template());
                (api.get_opt(bare).await, "ClusterAnalysisTemplate")
            }
            None => {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &template());
                (api.get_opt(t).await, "AnalysisTemplate")
            }
        };
        let obj = obj
            .map_err(|e| format!("reading {kind} {t}: {e}"))?
            .ok_or_else(|| format!("{kind} {t} not found"))?;
        let parsed =
            serde_json::from_value(strip(&obj, kind)).map_err(|e| format!("{kind} {t}: {e}"))?;
        out.push(parsed);
    }
    Ok(out)
}

fn inputs(req: &RunRequest, rollout: &RolloutObject) -> an::RunInputs {
    an::RunInputs {
        args: serin_plan::run_arguments(&req.args),
        sources: an::ArgSources {
            stable_hash: req.stable.clone(),
            latest_hash: req.latest.clone(),
            rollout: serde_json::to_value(rollout).unwrap_or_default(),
        },
        jobs_on_cluster: true,
        ..Default::default()
    }
}

/// The metrics of `templates`, as an AnalysisRun's `spec.metrics`.
pub(crate) fn metrics_of(templates: &[serin_spec::AnalysisTemplate]) -> Vec<Value> {
    templates
        .iter()
        .flat_map(|t| {
            serde_json::to_value(&t.spec)
                .ok()
                .and_then(|s| s.get("metrics").cloned())
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default()
        })
        .collect()
}

/// Creates the AnalysisRun object and starts measuring it (or creates it in
/// phase Error, with the reason, when it cannot be built).
pub(crate) async fn start(
    runs: &Arc<Runs>,
    client: &Client,
    rollout: &RolloutObject,
    status: &e::RolloutStatus,
    name: &str,
    template_names: &[String],
    args: &[(String, e::ArgValueResolved)],
) -> Result<(), Error> {
    let ns = rollout.namespace().to_string();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &analysis_run());
    let req = RunRequest {
        templates: template_names.to_vec(),
        args: args.to_vec(),
        stable: status.stable_hash.as_ref().map(|h| h.0.clone()),
        latest: status.current_hash.as_ref().map(|h| h.0.clone()),
    };
    let built = build(client, rollout, name, &req).await;
    let metrics: Vec<Value> = match &built {
        Ok((_, ts)) => metrics_of(ts),
        Err(_) => Vec::new(),
    };
    let (phase, message) = match &built {
        Ok(_) => ("Running", String::new()),
        Err(m) => ("Error", m.clone()),
    };
    // The revision label (Argo's) lets the run go with its ReplicaSet.
    let mut labels = json!({ LABEL_ROLLOUT: rollout.name() });
    if let Some(h) = &status.current_hash {
        labels[crate::LABEL_HASH] = json!(h.0);
    }
    let obj = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": ns,
                     "labels": labels,
                     // creationTimestamp has whole seconds: runs created in
                     // one second are ordered by this (run history limits).
                     "annotations": {crate::ANN_RUN_CREATED_MS: crate::now_ms().to_string(),
                                     ANN_RUN_REQUEST: serde_json::to_string(&req).unwrap_or_default()},
                     "ownerReferences": [rollout.controller_owner_ref(&())]},
        "spec": {"metrics": metrics},
        "status": {"phase": phase, "message": message},
    });
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| Error::Invalid(e.to_string()))?;
    let created = match api.create(&PostParams::default(), &obj).await {
        Ok(o) => o,
        // Already there: a retried step; the run (if any) is measuring.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
        Err(err) => return Err(Error::kube(format!("creating AnalysisRun {name}"))(err)),
    };
    let Ok((run, _)) = built else {
        return Ok(());
    };
    measure(runs, client, &ns, &created, run);
    Ok(())
}

/// The run `name` built from `req` with the templates as the cluster has
/// them now.
async fn build(
    client: &Client,
    rollout: &RolloutObject,
    name: &str,
    req: &RunRequest,
) -> Result<(an::AnalysisRun, Vec<serin_spec::AnalysisTemplate>), String> {
    let ts = templates(client, rollout.namespace(), &req.templates).await?;
    an::AnalysisRun::new(name, &ts, &inputs(req, rollout))
        .map(|run| (run, ts))
        .map_err(|e| e.to_string())
}

/// Measures a run whose controller is gone (restart, new leader) again
/// from its start, on the same AnalysisRun object, from the request kept
/// on it. Returns its phase now: Running, or Error when it can no longer
/// be built (with why); `None` when no request was kept (the caller marks
/// it Error).
pub(crate) async fn resume(
    runs: &Arc<Runs>,
    client: &Client,
    rollout: &RolloutObject,
    obj: &DynamicObject,
) -> Result<Option<e::AnalysisPhase>, Error> {
    let Some(req) = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_RUN_REQUEST))
        .and_then(|t| serde_json::from_str::<RunRequest>(t).ok())
    else {
        return Ok(None);
    };
    let (Some(name), ns) = (obj.metadata.name.clone(), rollout.namespace().to_string()) else {
        return Ok(None);
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &analysis_run());
    let (status, built) = match build(client, rollout, &name, &req).await {
        Ok((run, _)) => (
            json!({"phase": "Running", "metricResults": [],
                   "message": "measured again from its start: the controller measuring it stopped (restart or new leader)"}),
            Some(run),
        ),
        Err(why) => (json!({"phase": "Error", "message": why}), None),
    };
    // Conditional on the version listed: a run that finished meanwhile
    // keeps its phase (the caller reads it again).
    let patch = json!({"metadata": {"resourceVersion": obj.metadata.resource_version},
                       "status": status});
    let written = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("resuming AnalysisRun {name}")))?;
    let Some(run) = built else {
        return Ok(Some(e::AnalysisPhase::Error));
    };
    tracing::info!(run = %name, "measuring again: its controller stopped");
    measure(runs, client, &ns, &written, run);
    Ok(Some(e::AnalysisPhase::Running))
}

/// Spawns the runner for `run` and writes its status to the AnalysisRun
/// `obj` as it changes; registered in `runs` until it ends.
fn measure(runs: &Arc<Runs>, client: &Client, ns: &str, obj: &DynamicObject, run: an::AnalysisRun) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &analysis_run());
    // Job metrics run as batch/v1 Jobs owned by this AnalysisRun.
    let mut providers = runs.providers.clone();
    let jobs = Arc::new(crate::job::KubeJobs::new(
        client.clone(),
        ns,
        &name,
        obj.metadata.uid.as_deref().unwrap_or_default(),
    ));
    providers.job = jobs.clone();
    // The runner's clock counts from its start; status times are wall
    // clock from here.
    let wall_origin = crate::now_ms();
    let (rx, stop, _task) = an::runner::spawn(run, providers);
    if let Ok(mut s) = runs.stops.lock() {
        s.insert(format!("{ns}/{name}"), stop);
    }
    let key = format!("{ns}/{name}");
    let runs = Arc::clone(runs);
    let writing = follow(api, &name, rx, wall_origin, Some(jobs));
    tokio::spawn(async move {
        let _ = writing.await;
        if let Ok(mut s) = runs.stops.lock() {
            s.remove(&key);
        }
    });
}

/// Writes the runner's status to AnalysisRun `name` (through `api`) in
/// Argo's shape each time it changes, until the run ends; `jobs`, the
/// run's job provider, names each job measurement's Job.
pub(crate) fn follow(
    api: Api<DynamicObject>,
    name: &str,
    mut rx: tokio::sync::watch::Receiver<an::RunStatus>,
    wall_origin: u64,
    jobs: Option<Arc<crate::job::KubeJobs>>,
) -> tokio::task::JoinHandle<()> {
    let name = name.to_string();
    tokio::spawn(async move {
        let mut last = Value::Null;
        loop {
            // A status change, or a Job created (its name joins the
            // measurement's metadata).
            let job_created = async {
                match &jobs {
                    Some(j) => j.job_created.notified().await,
                    None => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                changed = rx.changed() => changed.is_err(),
                () = job_created => false,
            };
            let st = rx.borrow_and_update().clone();
            let status = argo_run_status(&st, wall_origin, &|metric, seq| {
                jobs.as_ref().and_then(|j| j.job_name(metric, seq))
            });
            if status != last {
                let patch = json!({ "status": status });
                if let Err(err) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(run = %name, "writing the AnalysisRun's status: {err}");
                }
                last = status;
            }
            if ended {
                break;
            }
        }
    })
}

fn phase_str(p: an::Phase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|p| p.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The runner's status in Argo's AnalysisRun `status` shape (phase,
/// message, startedAt, metricResults with their measurements, runSummary);
/// runner times (ms since `wall_origin`) become RFC 3339 times. A
/// measurement's value is a string there, as in Argo; `job_name(metric,
/// seq)` names a measurement's Job, shown in its `metadata` (`job-name`).
pub(crate) fn argo_run_status(
    st: &an::RunStatus,
    wall_origin: u64,
    job_name: &dyn Fn(&str, u64) -> Option<String>,
) -> Value {
    let at = |ms: u64| crate::rfc3339(wall_origin + ms);
    // Argo's runSummary, and dryRunSummary for dry-run metrics.
    let mut summaries = [[0i64; 5]; 2];
    let results: Vec<Value> = st
        .metric_results
        .iter()
        .map(|m| {
            {
                let summary = &mut summaries[usize::from(m.dry_run)];
                summary[0] += 1;
                match m.phase {
                    an::Phase::Successful => summary[1] += 1,
                    an::Phase::Failed => summary[2] += 1,
                    an::Phase::Inconclusive => summary[3] += 1,
                    an::Phase::Error => summary[4] += 1,
                    _ => {}
                }
            }
            let measurements: Vec<Value> = m
                .measurements
                .iter()
                .map(|x| {
                    let mut o = json!({"phase": phase_str(x.phase), "startedAt": at(x.started_at)});
                    if let Some(f) = x.finished_at {
                        o["finishedAt"] = json!(at(f));
                    }
                    if let Some(v) = &x.value {
                        o["value"] = json!(match v {
                            Value::String(s) => s.clone(),
                            v => v.to_string(),
                        });
                    }
                    if !x.message.is_empty() {
                        o["message"] = json!(x.message);
                    }
                    if let Some(job) = job_name(&m.name, x.seq) {
                        o["metadata"] = json!({ "job-name": job });
                    }
                    o
                })
                .collect();
            let mut o = json!({
                "name": m.name, "phase": phase_str(m.phase), "measurements": measurements,
                "count": m.count, "successful": m.successful, "failed": m.failed,
                "inconclusive": m.inconclusive, "error": m.error,
                "consecutiveError": m.consecutive_error,
                "consecutiveSuccess": m.consecutive_success,
            });
            if !m.message.is_empty() {
                o["message"] = json!(m.message);
            }
            if m.dry_run {
                o["dryRun"] = json!(true);
            }
            o
        })
        .collect();
    let summary = |s: [i64; 5]| {
        json!({"count": s[0], "successful": s[1], "failed": s[2],
               "inconclusive": s[3], "error": s[4]})
    };
    let mut out = json!({
        "phase": phase_str(st.phase), "message": st.message, "metricResults": results,
        "runSummary": summary(summaries[0]),
    });
    if summaries[1][0] > 0 {
        out["dryRunSummary"] = summary(summaries[1]);
    }
    if let Some(t) = st.started_at {
        out["startedAt"] = json!(at(t));
    }
    let last_finish = st
        .metric_results
        .iter()
        .flat_map(|m| m.measurements.iter().filter_map(|x| x.finished_at))
        .max();
    if st.phase.completed()
        && let Some(t) = last_finish
    {
        out["completedAt"] = json!(at(t));
    }
    out
}
