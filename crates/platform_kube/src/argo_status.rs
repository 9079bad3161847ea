//! The Rollout's `/status` in Argo Rollouts' shape, derived from the
//! engine's status and the observed ReplicaSets, so `kubectl get rollouts`,
//! `kubectl argo rollouts get` and dashboards read it as they read Argo's.
//! It validates against Argo's own CRD schema (no field Argo lacks).
//! Condition times are carried over from the previous status while a
//! condition does not change, so an unchanged rollout writes nothing.

use serde_json::{Value, json};
use serin_engine as e;

use crate::adapters::Stored;
use crate::object::RolloutObject;
use crate::router::split;

fn phase(p: e::Phase) -> &'static str {
    match p {
        e::Phase::Pending | e::Phase::Progressing => "Progressing",
        e::Phase::Paused => "Paused",
        e::Phase::Healthy => "Healthy",
        e::Phase::Degraded => "Degraded",
    }
}

fn pause_reason(r: e::PauseReason) -> &'static str {
    match r {
        e::PauseReason::CanaryPauseStep => "CanaryPauseStep",
        e::PauseReason::BlueGreenPause => "BlueGreenPause",
        e::PauseReason::InconclusiveAnalysisRun => "InconclusiveAnalysisRun",
        e::PauseReason::PausedByUser => "PausedByUser",
    }
}

/// One condition, keeping the previous times when nothing about it changed.
fn condition(
    prev: &[Value],
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = prev.iter().find(|c| c["type"] == kind);
    let same = |k: &str, v: &str| old.is_some_and(|c| c[k] == v);
    let transition = match old {
        Some(c) if same("status", status) => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match old {
        Some(c) if same("status", status) && same("reason", reason) && same("message", message) => {
            c["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": transition, "lastUpdateTime": update})
}

/// Argo's `/status` for `obj`. `spec` is `None` when the Rollout cannot run,
/// with `invalid` saying why (Argo's `InvalidSpec` condition).
pub fn argo_status(
    obj: &RolloutObject,
    spec: Option<&e::RolloutSpec>,
    stored: &Stored,
    observed: &[e::ObservedRevision],
    invalid: Option<&str>,
    now_ms: u64,
) -> Value {
    let now = crate::rfc3339(now_ms);
    let prev: Vec<Value> = obj
        .status
        .as_ref()
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0).to_string();
    let selector = obj
        .spec
        .pointer("/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let (Some(spec), None) = (spec, invalid) else {
        let message = format!("InvalidSpec: {}", invalid.unwrap_or("cannot run"));
        return json!({
            "phase": "Degraded",
            "message": message,
            "observedGeneration": generation,
            "selector": selector,
            "conditions": [condition(&prev, "InvalidSpec", true, "InvalidSpec",
                                     invalid.unwrap_or(""), &now)],
        });
    };
    let st = &stored.status;
    let current = &spec.template_hash;
    let sum = |f: fn(&e::ObservedRevision) -> u32| observed.iter().map(f).sum::<u32>();
    let updated = observed
        .iter()
        .find(|r| &r.hash == current)
        .map_or(0, |r| r.replicas);
    let mut message = st.message.clone();
    if let Some(err) = &stored.error {
        message = format!("ReconcileError: {}", err.message);
    }
    let mut s = json!({
        "phase": phase(st.phase),
        "message": message,
        "observedGeneration": generation,
        "currentPodHash": current.0,
        "replicas": sum(|r| r.replicas),
        "updatedReplicas": updated,
        "readyReplicas": sum(|r| r.ready),
        "availableReplicas": sum(|r| r.available),
        "HPAReplicas": sum(|r| r.replicas),
        "selector": selector,
    });
    if let Some(h) = &st.stable_hash {
        s["stableRS"] = json!(h.0);
    }
    if !st.pause_conditions.is_empty() {
        s["pauseConditions"] = st
            .pause_conditions
            .iter()
            .map(
                |p| json!({"reason": pause_reason(p.reason), "startTime": crate::rfc3339(p.since)}),
            )
            .collect();
        s["controllerPause"] = json!(
            st.pause_conditions
                .iter()
                .any(|p| p.reason != e::PauseReason::PausedByUser)
        );
    }
    if st.abort {
        s["abort"] = json!(true);
        if let Some(at) = st.aborted_at {
            s["abortedAt"] = json!(crate::rfc3339(at));
        }
    }
    if st.promote_full {
        s["promoteFull"] = json!(true);
    }
    if let Some(at) = st.restarted_at {
        s["restartedAt"] = json!(crate::rfc3339(at));
    }
    match &spec.strategy {
        e::Strategy::Canary(c) => {
            let mut canary = json!({});
            if !c.steps.is_empty()
                && let Some(i) = st.current_step_index
            {
                s["currentStepIndex"] = json!(i);
            }
            if c.traffic_routing {
                let (sw, cw) = split(&stored.route).unwrap_or((100, 0));
                let hash = |role| {
                    stored
                        .route
                        .services
                        .get(&role)
                        .map_or(String::new(), |h: &e::RevisionHash| h.0.clone())
                };
                let svc = |p: &str| {
                    obj.spec_str(&["strategy", "canary", p])
                        .unwrap_or("")
                        .to_string()
                };
                canary["weights"] = json!({
                    "canary": {"podTemplateHash": hash(e::ServiceRole::Canary),
                               "serviceName": svc("canaryService"), "weight": cw},
                    "stable": {"podTemplateHash": hash(e::ServiceRole::Stable),
                               "serviceName": svc("stableService"), "weight": sw},
                });
            }
            s["canary"] = canary;
        }
        e::Strategy::BlueGreen(_) => {
            let mut bg = json!({});
            if let Some(h) = stored.route.services.get(&e::ServiceRole::Active) {
                bg["activeSelector"] = json!(h.0);
            }
            if let Some(h) = stored.route.services.get(&e::ServiceRole::Preview) {
                bg["previewSelector"] = json!(h.0);
            }
            s["blueGreen"] = bg;
        }
    }
    let healthy = st.phase == e::Phase::Healthy;
    let progressing_reason = match st.phase {
        e::Phase::Healthy => "NewReplicaSetAvailable",
        e::Phase::Degraded if st.abort => "RolloutAborted",
        e::Phase::Degraded => "ProgressDeadlineExceeded",
        e::Phase::Paused => "RolloutPaused",
        _ => "ReplicaSetUpdated",
    };
    let desired = spec.replicas;
    let available = sum(|r| r.available);
    let paused = !st.pause_conditions.is_empty();
    let mut conditions = vec![
        condition(
            &prev,
            "Progressing",
            st.phase != e::Phase::Degraded,
            progressing_reason,
            &st.message,
            &now,
        ),
        condition(
            &prev,
            "Available",
            available >= desired,
            "AvailableReason",
            &format!("{available} of {desired} replicas available"),
            &now,
        ),
        condition(
            &prev,
            "Healthy",
            healthy,
            if healthy {
                "RolloutHealthy"
            } else {
                "RolloutHealthyFalse"
            },
            if healthy {
                "Rollout is healthy"
            } else {
                "Rollout is not healthy"
            },
            &now,
        ),
    ];
    if paused {
        conditions.push(condition(
            &prev,
            "Paused",
            true,
            "RolloutPaused",
            "Rollout is paused",
            &now,
        ));
    }
    if let Some(err) = &stored.error {
        conditions.push(condition(
            &prev,
            "ReconcileError",
            true,
            "ReconcileError",
            &err.message,
            &now,
        ));
    }
    s["conditions"] = json!(conditions);
    s
}
