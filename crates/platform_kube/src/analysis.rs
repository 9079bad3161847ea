//! Analysis on a cluster: the engine's runs become AnalysisRun objects
//! (`kubectl get analysisruns`), measured in the controller by Serin's
//! analysis runner (`serin-analysis`: prometheus, web and job providers,
//! Argo's semantics) with the templates read from the cluster; the run's
//! phase and message are written to the object as they change, and the
//! controller watches those objects, so a finished run wakes its Rollout.
//!
//! Limit: a run lives in the controller that started it. A restarted (or
//! newly elected) controller finds the object still Running and marks it
//! Error, so the engine aborts rather than passing an unmeasured step.

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

async fn templates(
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

fn inputs(
    args: &[(String, e::ArgValueResolved)],
    status: &e::RolloutStatus,
    rollout: &RolloutObject,
) -> an::RunInputs {
    an::RunInputs {
        args: serin_plan::run_arguments(args),
        sources: an::ArgSources {
            stable_hash: status.stable_hash.as_ref().map(|h| h.0.clone()),
            latest_hash: status.current_hash.as_ref().map(|h| h.0.clone()),
            rollout: serde_json::to_value(rollout).unwrap_or_default(),
        },
        ..Default::default()
    }
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
    let built = match templates(client, &ns, template_names).await {
        Ok(ts) => an::AnalysisRun::new(name, &ts, &inputs(args, status, rollout))
            .map(|run| (run, ts))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let metrics: Vec<Value> = match &built {
        Ok((_, ts)) => ts
            .iter()
            .flat_map(|t| {
                serde_json::to_value(&t.spec)
                    .ok()
                    .and_then(|s| s.get("metrics").cloned())
                    .and_then(|m| m.as_array().cloned())
                    .unwrap_or_default()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let (phase, message) = match &built {
        Ok(_) => ("Running", String::new()),
        Err(m) => ("Error", m.clone()),
    };
    let obj = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {LABEL_ROLLOUT: rollout.name()},
                     "ownerReferences": [rollout.controller_owner_ref(&())]},
        "spec": {"metrics": metrics},
        "status": {"phase": phase, "message": message},
    });
    let obj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| Error::Invalid(e.to_string()))?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        // Already there: a retried step; the run (if any) is measuring.
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
        Err(err) => return Err(Error::kube(format!("creating AnalysisRun {name}"))(err)),
    }
    let Ok((run, _)) = built else {
        return Ok(());
    };
    let (mut rx, stop, _task) = an::runner::spawn(run, runs.providers.clone());
    if let Ok(mut s) = runs.stops.lock() {
        s.insert(format!("{ns}/{name}"), stop);
    }
    let name = name.to_string();
    let runs = Arc::clone(runs);
    tokio::spawn(async move {
        let mut last = (String::new(), String::new());
        loop {
            let ended = rx.changed().await.is_err();
            let st = rx.borrow_and_update().clone();
            let phase = serde_json::to_value(st.phase)
                .ok()
                .and_then(|p| p.as_str().map(str::to_string))
                .unwrap_or_default();
            if (phase.clone(), st.message.clone()) != last {
                let patch = json!({"status": {"phase": phase, "message": st.message}});
                if let Err(err) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(run = %name, "writing the AnalysisRun's phase: {err}");
                }
                last = (phase, st.message.clone());
            }
            if ended {
                break;
            }
        }
        if let Ok(mut s) = runs.stops.lock() {
            s.remove(&format!("{ns}/{name}"));
        }
    });
    Ok(())
}
