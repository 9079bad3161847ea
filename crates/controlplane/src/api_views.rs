//! Read-only views the web dashboard needs beyond `GET /v1/rollouts`, served
//! as ordinary public API routes (same tokens, same roles) so that a script
//! can read whatever the page shows:
//!
//! - `GET /v1/whoami`: the calling token's name and role.
//! - `GET /v1/rollouts/{name}/spec`: the steps (engine form), the analysis
//!   templates the rollout uses (their conditions, limits and providers),
//!   the container images of every revision and when each analysis run
//!   started on the wall clock (its measurement times count from there).
//! - `GET /v1/analysistemplates`: every (Cluster)AnalysisTemplate in force.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::api::error;
use crate::reconciler::ControlPlane;

/// The routes of this module (authenticated by the API's middleware).
pub fn routes() -> axum::Router<Arc<ControlPlane>> {
    axum::Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/rollouts/{name}/spec", get(spec))
        .route("/v1/analysistemplates", get(templates))
}

/// The bearer token's name and role (the middleware has checked it already).
async fn whoami(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    let rec = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .and_then(|t| cp.token(t));
    match rec {
        Some(r) => {
            Json(json!({"name": r.name, "role": r.role, "expiresMs": r.expires_ms})).into_response()
        }
        None => error(StatusCode::UNAUTHORIZED, "unknown token"),
    }
}

/// Images of a pod template (`spec.containers[*].image`), in order.
pub fn images(template: &serde_json::Value) -> Vec<String> {
    let containers = template
        .pointer("/spec/containers")
        .or_else(|| template.get("containers"))
        .and_then(|c| c.as_array());
    containers
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("image").and_then(|i| i.as_str()).map(str::to_string))
        .collect()
}

/// Template names an engine strategy refers to (background and step analyses).
fn template_names(strategy: &serin_engine::Strategy) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |spec: &serin_engine::AnalysisSpec| {
        for t in &spec.templates {
            if !names.contains(t) {
                names.push(t.clone());
            }
        }
    };
    match strategy {
        serin_engine::Strategy::Canary(c) => {
            if let Some(bg) = &c.analysis {
                add(&bg.analysis);
            }
            for s in &c.steps {
                if let serin_engine::Step::Analysis(a) = s {
                    add(a);
                }
            }
        }
        serin_engine::Strategy::BlueGreen(b) => {
            for a in [&b.pre_promotion_analysis, &b.post_promotion_analysis]
                .into_iter()
                .flatten()
            {
                add(a);
            }
        }
    }
    names
}

fn template_json(kind: &str, t: &serin_spec::AnalysisTemplate) -> serde_json::Value {
    json!({
        "name": t.metadata.name,
        "kind": kind,
        "metrics": t.spec.metrics,
        "args": t.spec.args,
    })
}

/// Steps, analysis templates and revision images of one rollout.
async fn spec(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
    let set = cp.manifests();
    let Some(rollout) = set
        .rollouts()
        .map(|(_, r)| r)
        .find(|r| r.metadata.name.as_deref() == Some(name.as_str()))
    else {
        return error(StatusCode::NOT_FOUND, format!("no rollout named {name}"));
    };
    let engine = match serin_plan::to_engine(&set, rollout) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let wanted = template_names(&engine.strategy);
    let templates: Vec<serde_json::Value> = set
        .analysis_templates()
        .filter(|(d, t)| {
            let bare = t.metadata.name.clone().unwrap_or_default();
            let key = if d.kind == "ClusterAnalysisTemplate" {
                format!("cluster:{bare}")
            } else {
                bare
            };
            wanted.contains(&key)
        })
        .map(|(d, t)| template_json(&d.kind, t))
        .collect();
    let revisions = match cp.store().revisions(&name) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let images: serde_json::Map<String, serde_json::Value> = revisions
        .iter()
        .map(|r| (r.hash.clone(), json!(images(&r.template))))
        .collect();
    // Each run's measurement times count from its start; this is that start
    // on the wall clock (ms since the epoch), by run name.
    let status = match cp.store().status(&name) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let origins: serde_json::Map<String, serde_json::Value> = status
        .analysis_runs
        .iter()
        .filter_map(|r| {
            let at: u64 = cp
                .store()
                .get_json(&format!("runorigin/{name}/{}", r.name))
                .ok()
                .flatten()?;
            Some((r.name.clone(), json!(at)))
        })
        .collect();
    Json(json!({
        "name": name,
        "runOrigins": origins,
        "strategy": engine.strategy,
        "replicas": engine.replicas,
        "templates": templates,
        "revisionImages": images,
    }))
    .into_response()
}

/// Every AnalysisTemplate and ClusterAnalysisTemplate in force.
async fn templates(State(cp): State<Arc<ControlPlane>>) -> Response {
    let set = cp.manifests();
    let list: Vec<serde_json::Value> = set
        .analysis_templates()
        .map(|(d, t)| template_json(&d.kind, t))
        .collect();
    Json(list).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_come_from_the_pod_template() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]}});
        assert_eq!(images(&t), vec!["x:1".to_string(), "y:2".to_string()]);
        assert!(images(&json!({})).is_empty());
    }
}
