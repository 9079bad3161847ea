//! Feature flags under the control plane's own tokens and roles, for the web
//! dashboard and for scripts that hold a Serin token rather than a flag
//! server admin key:
//!
//! - `GET /v1/flags` (viewer): every flag of the environment `serin up`
//!   serves, with its definition, state and current rollout percentage.
//! - `PUT /v1/flags/{key}/percentage` `{"percentage": N}` (deployer).
//! - `POST /v1/flags/kill-switch` `{"tag": "…"}` (deployer): disables every
//!   flag carrying the tag.
//! - `GET /v1/flags/audit` (viewer): who changed what, when.
//!
//! Writes go through the flag server's in-process [`Manager`] — the same
//! validation, store commit, audit log and SSE change event as its management
//! API — with the token's name as the audit log's actor.
//!
//! [`Manager`]: serin_flags_server::Manager

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::reconciler::ControlPlane;

/// What the handlers share.
#[derive(Clone)]
struct Flags {
    cp: Arc<ControlPlane>,
    manager: Option<serin_flags_server::Manager>,
}

/// The routes, behind the API's token middleware. `manager` is the
/// in-process flag server when serin.yaml has `flags:`; without it every
/// route answers 404 with the reason.
pub fn router(cp: Arc<ControlPlane>, manager: Option<serin_flags_server::Manager>) -> axum::Router {
    axum::Router::new()
        .route("/v1/flags", get(list))
        .route("/v1/flags/{key}/percentage", put(set_percentage))
        .route("/v1/flags/kill-switch", post(kill_switch))
        .route("/v1/flags/audit", get(audit))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&cp),
            crate::auth::require,
        ))
        .with_state(Flags { cp, manager })
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

fn no_flags() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "serin.yaml has no `flags:` section, so this control plane serves no flags",
    )
}

fn flag_error(e: serin_flags_server::ApiError) -> Response {
    (e.status, Json(json!({"error": e.details, "code": e.code}))).into_response()
}

/// The audit log's actor: the token's name (the middleware checked it).
fn actor(f: &Flags, headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .and_then(|t| f.cp.token(t))
        .map_or_else(|| "serin-token".into(), |r| format!("serin:{}", r.name))
}

/// The percentage of a two-variant `fractional` split (the share of the
/// first variant, as `PATCH {"percentage"}` writes it), if the flag is one.
pub fn percentage(def: &Value) -> Option<u64> {
    let frac = def.pointer("/targeting/fractional")?.as_array()?;
    let weights: Vec<(&str, u64)> = frac
        .iter()
        .filter_map(|b| {
            let b = b.as_array()?;
            Some((b.first()?.as_str()?, b.get(1)?.as_u64()?))
        })
        .collect();
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    let first = weights.first()?;
    (weights.len() == 2 && total > 0).then(|| first.1 * 100 / total)
}

/// Every flag of the served environment, by key.
async fn list(State(f): State<Flags>) -> Response {
    let Some(m) = f.manager.as_ref() else {
        return no_flags();
    };
    let env = m.default_environment().to_string();
    let (version, defs) = m.flags(&env);
    let flags: Vec<Value> = defs
        .iter()
        .map(|(k, d)| {
            json!({
                "key": k,
                "state": d.get("state").cloned().unwrap_or(Value::Null),
                "variants": d.get("variants").cloned().unwrap_or(Value::Null),
                "defaultVariant": d.get("defaultVariant").cloned().unwrap_or(Value::Null),
                "targeting": d.get("targeting").cloned().unwrap_or(Value::Null),
                "metadata": d.get("metadata").cloned().unwrap_or(Value::Null),
                "percentage": percentage(d),
            })
        })
        .collect();
    Json(json!({
        "environment": env,
        "version": version,
        "writable": m.writable(),
        "flags": flags,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PercentageBody {
    percentage: u8,
}

/// Sets a two-variant flag's rollout percentage.
async fn set_percentage(
    State(f): State<Flags>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Result<Json<PercentageBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(m) = f.manager.as_ref() else {
        return no_flags();
    };
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be {\"percentage\": 0..100}",
        );
    };
    if body.percentage > 100 {
        return error(StatusCode::BAD_REQUEST, "percentage must be 0..100");
    }
    let env = m.default_environment().to_string();
    match m
        .set_percentage(&env, &key, body.percentage, &actor(&f, &headers))
        .await
    {
        Ok(version) => Json(json!({"key": key, "percentage": body.percentage, "version": version}))
            .into_response(),
        Err(e) => flag_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    tag: String,
}

/// Disables every flag carrying a tag.
async fn kill_switch(
    State(f): State<Flags>,
    headers: HeaderMap,
    body: Result<Json<KillBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(m) = f.manager.as_ref() else {
        return no_flags();
    };
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "body must be {\"tag\": \"…\"}");
    };
    let env = m.default_environment().to_string();
    match m.kill_switch(&env, &body.tag, &actor(&f, &headers)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => flag_error(e),
    }
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

/// The newest audit entries.
async fn audit(State(f): State<Flags>, Query(q): Query<AuditQuery>) -> Response {
    let Some(m) = f.manager.as_ref() else {
        return no_flags();
    };
    let env = m.default_environment().to_string();
    match m.audit(&env, q.limit.unwrap_or(50)).await {
        Ok(entries) => Json(json!({"environment": env, "entries": entries})).into_response(),
        Err(e) => flag_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentage_of_a_two_way_split() {
        let d = json!({"targeting": {"fractional": [["on", 30], ["off", 70]]}});
        assert_eq!(percentage(&d), Some(30));
        let three = json!({"targeting": {"fractional": [["a", 1], ["b", 1], ["c", 1]]}});
        assert_eq!(percentage(&three), None);
        assert_eq!(percentage(&json!({"state": "ENABLED"})), None);
    }
}
