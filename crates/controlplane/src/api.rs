//! The control plane's local HTTP API (loopback): rollouts, operations and
//! routing. Errors are JSON with a 4xx status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::reconciler::{ControlPlane, Operation, OperationError};

/// Builds the router.
pub fn router(cp: Arc<ControlPlane>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{name}", get(one))
        .route("/v1/rollouts/{name}/{op}", post(operate))
        .route("/v1/services", get(services))
        .with_state(cp)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

/// A rollout as the CLI shows it: engine status, revisions with pods, events.
pub fn describe(cp: &ControlPlane, name: &str) -> Result<serde_json::Value, OperationError> {
    let status = cp.store().status(name)?;
    let revisions = cp.store().revisions(name)?;
    let pods = cp.platform().observe(name);
    let events = cp.store().events(name)?;
    let route = cp.store().route(name)?;
    let runs: Vec<serde_json::Value> = cp.store().scan_json(&format!("run/{name}/"))?;
    let set = cp.manifests();
    let spec = set
        .rollouts()
        .map(|(_, r)| r)
        .find(|r| r.metadata.name.as_deref() == Some(name))
        .ok_or_else(|| OperationError::NotFound(name.into()))?;
    let engine = serin_plan::to_engine(&set, spec)?;
    let strategy = match &engine.strategy {
        serin_engine::Strategy::Canary(c) if c.steps.is_empty() => "rolling".to_string(),
        serin_engine::Strategy::Canary(_) => "canary".to_string(),
        serin_engine::Strategy::BlueGreen(_) => "blueGreen".to_string(),
    };
    let steps = match &engine.strategy {
        serin_engine::Strategy::Canary(c) => c.steps.len(),
        serin_engine::Strategy::BlueGreen(_) => 0,
    };
    let revs: Vec<serde_json::Value> = revisions
        .iter()
        .rev()
        .map(|rv| {
            let p = pods.iter().find(|p| p.hash == rv.hash);
            json!({
                "revision": rv.number,
                "hash": rv.hash,
                "stable": status.stable_hash.as_ref().is_some_and(|h| h.0 == rv.hash),
                "desired": p.map_or(0, |p| p.desired),
                "pods": p.map(|p| p.pods.iter().map(|pod| json!({
                    "name": pod.name, "addr": pod.addr.to_string(), "ready": pod.ready,
                    "status": pod.status, "restarts": pod.restarts,
                    "ageSeconds": pod.started_at.elapsed().map_or(0, |d| d.as_secs()),
                })).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    Ok(json!({
        "name": name,
        "strategy": strategy,
        "replicas": engine.replicas,
        "steps": steps,
        "status": status,
        "route": route,
        "revisions": revs,
        "analysisRuns": runs,
        "events": events.iter().rev().take(20).collect::<Vec<_>>(),
    }))
}

async fn list(State(cp): State<Arc<ControlPlane>>) -> Response {
    let set = cp.manifests();
    let mut out = Vec::new();
    for (_, r) in set.rollouts() {
        let name = r.metadata.name.clone().unwrap_or_default();
        match describe(&cp, &name) {
            Ok(v) => out.push(v),
            Err(e) => out.push(json!({"name": name, "error": e.to_string()})),
        }
    }
    Json(out).into_response()
}

async fn one(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
    match describe(&cp, &name) {
        Ok(v) => Json(v).into_response(),
        Err(OperationError::NotFound(n)) => {
            error(StatusCode::NOT_FOUND, format!("no rollout named {n}"))
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OpBody {
    to_revision: Option<u64>,
}

async fn operate(
    State(cp): State<Arc<ControlPlane>>,
    Path((name, op)): Path<(String, String)>,
    body: Option<Json<OpBody>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let op = match op.as_str() {
        "promote" => Operation::Promote,
        "promote-full" => Operation::PromoteFull,
        "pause" => Operation::Pause,
        "resume" => Operation::Resume,
        "abort" => Operation::Abort,
        "retry" => Operation::Retry,
        "undo" => Operation::Undo {
            to_revision: body.to_revision,
        },
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("unknown operation {other:?}"),
            );
        }
    };
    match cp.operate(&name, &op) {
        Ok(()) => Json(json!({"ok": true, "rollout": name, "operation": op})).into_response(),
        Err(OperationError::NotFound(n)) => {
            error(StatusCode::NOT_FOUND, format!("no rollout named {n}"))
        }
        Err(OperationError::Refused(e)) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

async fn services(State(cp): State<Arc<ControlPlane>>) -> Response {
    Json(cp.proxy_config()).into_response()
}
