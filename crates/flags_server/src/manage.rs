//! The management API (`/api/v1/…`, documented in `openapi.yaml`): flags per environment,
//! rollout percentage, toggle, kill switch by tag, audit log. Admin tokens only, scoped to
//! their environment. Every write commits to the store before it answers, then reloads the
//! environment, which emits the SSE change event.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use serin_flags::{FlagSet, FlagsError, Format, RolloutError, Strictness};

use crate::keys::{KeyKind, valid_environment};
use crate::state::{Backend, Shared, now_unix_ms};
use crate::store::{AuditQuery, Change, EnvironmentFlags, Store, StoreError};
use crate::{ApiError, json_response};

/// The management API's OpenAPI document.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

pub(crate) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/yaml")],
        OPENAPI_YAML,
    )
        .into_response()
}

/// Checks the admin token for `env`; returns the actor name for the audit log.
fn admin(shared: &Shared, headers: &HeaderMap, env: &str) -> Result<String, ApiError> {
    if !valid_environment(env) {
        return Err(ApiError::bad_request(format!(
            "environment {env:?} must be 1-64 of [A-Za-z0-9_.-]"
        )));
    }
    if !shared.keys.has_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "MANAGEMENT_DISABLED",
            "the management API is disabled: no admin token is configured (--keys)",
        ));
    }
    let key = shared.authenticate(headers)?.ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "missing API key")
    })?;
    if key.kind != KeyKind::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "a {} key cannot use the management API; use an admin token",
                key.kind.as_str()
            ),
        ));
    }
    if key.environment != env {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!(
                "this admin token is scoped to environment {:?}",
                key.environment
            ),
        ));
    }
    Ok(key.name.clone())
}

fn store(shared: &Shared) -> Result<&Arc<dyn Store>, ApiError> {
    match &shared.backend {
        Backend::Store(s) => Ok(s),
        Backend::File => Err(ApiError::new(
            StatusCode::CONFLICT,
            "READ_ONLY",
            "flags are served from a file (--file): edit the file instead; it is reloaded on change",
        )),
    }
}

/// Validates one flag definition strictly, as `serin` loads files.
fn validate(key: &str, def: &Value) -> Result<FlagSet, ApiError> {
    if !def.is_object() {
        return Err(invalid_flag(key, "a flag definition must be a JSON object"));
    }
    let doc = json!({ "flags": { key: def } }).to_string();
    FlagSet::from_str_with(&doc, Format::Json, Strictness::Strict).map_err(|e| {
        let msg = match e {
            FlagsError::Invalid {
                pointer, message, ..
            } => {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                let rel = pointer
                    .strip_prefix(&format!("/flags/{escaped}"))
                    .unwrap_or(&pointer);
                let rel = if rel.is_empty() { "/" } else { rel };
                format!("{rel}: {message}")
            }
            other => other.to_string(),
        };
        invalid_flag(key, &msg)
    })
}

fn invalid_flag(key: &str, msg: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "INVALID_FLAG", msg).with_key(key)
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "flag keys must be 1-256 characters without control characters",
        ));
    }
    Ok(())
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Read-modify-write with optimistic concurrency: `plan` computes changes from the stored
/// state; a concurrent change (on this or another server) makes the commit fail with a
/// conflict, and the plan is recomputed on fresh state.
async fn mutate(
    shared: &Shared,
    env: &str,
    actor: &str,
    plan: impl Fn(&EnvironmentFlags) -> Result<Vec<Change>, ApiError>,
) -> Result<(Vec<Change>, u64), ApiError> {
    let store = store(shared)?;
    let mut last = None;
    for _ in 0..8 {
        let current = store.load(env).await?;
        let changes = plan(&current)?;
        if changes.is_empty() {
            return Ok((changes, current.version));
        }
        match store
            .commit(env, changes.clone(), actor, now_unix_ms())
            .await
        {
            Ok(version) => {
                if let Err(e) = shared.reload(store.as_ref(), env).await {
                    // Committed and durable; the listener or the next write will catch up.
                    tracing::warn!(environment = env, error = %e, "reload after commit failed");
                }
                return Ok((changes, version));
            }
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map(ApiError::from).unwrap_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "too many concurrent changes",
        )
    }))
}

fn flag_body(env: &str, key: &str, version: u64, def: &Value) -> Value {
    json!({ "environment": env, "key": key, "version": version, "flag": def })
}

/// `GET /api/v1/environments/{env}/flags`
pub(crate) async fn list_flags(
    State(shared): State<Arc<Shared>>,
    Path(env): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&shared, &headers, &env)?;
    let snap = shared.snapshot(&env);
    Ok(
        Json(json!({ "environment": env, "version": snap.version, "flags": snap.defs }))
            .into_response(),
    )
}

/// `GET /api/v1/environments/{env}/flags/{key}`
pub(crate) async fn get_flag(
    State(shared): State<Arc<Shared>>,
    Path((env, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&shared, &headers, &env)?;
    let snap = shared.snapshot(&env);
    let def = snap.defs.get(&key).ok_or_else(|| {
        ApiError::not_found(format!("flag {key:?} not found in {env:?}")).with_key(&key)
    })?;
    Ok(
        Json(json!({ "environment": env, "key": key, "version": snap.version, "flag": def }))
            .into_response(),
    )
}

/// `PUT /api/v1/environments/{env}/flags/{key}`: create (201) or replace (200).
pub(crate) async fn put_flag(
    State(shared): State<Arc<Shared>>,
    Path((env, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = admin(&shared, &headers, &env)?;
    check_key(&key)?;
    store(&shared)?;
    let def: Value = parse_body(&body)?;
    validate(&key, &def)?;
    let (changes, version) = mutate(&shared, &env, &actor, |cur| {
        let before = cur.flags.get(&key).cloned();
        if before.as_ref() == Some(&def) {
            return Ok(vec![]);
        }
        let action = if before.is_some() { "update" } else { "create" };
        Ok(vec![Change {
            key: key.clone(),
            before,
            after: Some(def.clone()),
            action: action.into(),
        }])
    })
    .await?;
    let created = changes.first().is_some_and(|c| c.before.is_none());
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &flag_body(&env, &key, version, &def)))
}

/// `DELETE /api/v1/environments/{env}/flags/{key}`
pub(crate) async fn delete_flag(
    State(shared): State<Arc<Shared>>,
    Path((env, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = admin(&shared, &headers, &env)?;
    let (changes, version) = mutate(&shared, &env, &actor, |cur| {
        let before = cur.flags.get(&key).cloned().ok_or_else(|| {
            ApiError::not_found(format!("flag {key:?} not found in {env:?}")).with_key(&key)
        })?;
        Ok(vec![Change {
            key: key.clone(),
            before: Some(before),
            after: None,
            action: "delete".into(),
        }])
    })
    .await?;
    let before = changes.first().and_then(|c| c.before.clone());
    Ok(
        Json(json!({ "environment": env, "key": key, "version": version, "deleted": before }))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Patch {
    percentage: Option<u8>,
    state: Option<String>,
    default_variant: Option<String>,
}

/// Applies a PATCH to a stored definition.
fn apply_patch(key: &str, def: &Value, patch: &Patch) -> Result<Value, ApiError> {
    let mut def = def.clone();
    let obj = def
        .as_object_mut()
        .ok_or_else(|| invalid_flag(key, "stored definition is not an object"))?;
    if let Some(state) = &patch.state {
        if state != "ENABLED" && state != "DISABLED" {
            return Err(ApiError::bad_request(
                "state must be \"ENABLED\" or \"DISABLED\"",
            ));
        }
        obj.insert("state".into(), json!(state));
    }
    if let Some(d) = &patch.default_variant {
        obj.insert("defaultVariant".into(), json!(d));
    }
    if let Some(pct) = patch.percentage {
        let mut set = validate(key, &def)?;
        set.set_rollout_percentage(key, pct).map_err(|e| match e {
            RolloutError::OutOfRange(_) => ApiError::bad_request(e.to_string()),
            other => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNSUITABLE_FLAG",
                other.to_string(),
            )
            .with_key(key),
        })?;
        let targeting = set
            .flag(key)
            .and_then(|f| f.targeting())
            .cloned()
            .ok_or_else(|| invalid_flag(key, "rollout produced no targeting"))?;
        if let Some(obj) = def.as_object_mut() {
            obj.insert("targeting".into(), targeting);
        }
    }
    validate(key, &def)?;
    Ok(def)
}

/// `PATCH /api/v1/environments/{env}/flags/{key}`: `{"percentage": 25}` (the seed's rollout
/// call, via `serin_flags::FlagSet::set_rollout_percentage`), `{"state": "DISABLED"}`,
/// `{"defaultVariant": "off"}`, or several at once.
pub(crate) async fn patch_flag(
    State(shared): State<Arc<Shared>>,
    Path((env, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = admin(&shared, &headers, &env)?;
    store(&shared)?;
    let patch: Patch = parse_body(&body)?;
    if patch.percentage.is_none() && patch.state.is_none() && patch.default_variant.is_none() {
        return Err(ApiError::bad_request(
            "nothing to change: give percentage, state and/or defaultVariant",
        ));
    }
    let action = match (patch.percentage, &patch.state) {
        (Some(p), _) => format!("percentage:{p}"),
        (None, Some(s)) => format!("state:{s}"),
        _ => "update".into(),
    };
    let (changes, version) = mutate(&shared, &env, &actor, |cur| {
        let before = cur.flags.get(&key).ok_or_else(|| {
            ApiError::not_found(format!("flag {key:?} not found in {env:?}")).with_key(&key)
        })?;
        let after = apply_patch(&key, before, &patch)?;
        if &after == before {
            return Ok(vec![]);
        }
        Ok(vec![Change {
            key: key.clone(),
            before: Some(before.clone()),
            after: Some(after),
            action: action.clone(),
        }])
    })
    .await?;
    let def = match changes.first().and_then(|c| c.after.clone()) {
        Some(d) => d,
        None => shared
            .snapshot(&env)
            .defs
            .get(&key)
            .cloned()
            .unwrap_or(Value::Null),
    };
    Ok(Json(flag_body(&env, &key, version, &def)).into_response())
}

/// Sets a flag's rollout percentage in-process as `actor` (the audit log's
/// "who"), with the same validation and commit path as
/// `PATCH {"percentage": N}`. Returns the environment's version after it.
pub(crate) async fn set_percentage(
    shared: &Shared,
    env: &str,
    key: &str,
    pct: u8,
    actor: &str,
) -> Result<u64, ApiError> {
    if !valid_environment(env) {
        return Err(ApiError::bad_request(format!(
            "environment {env:?} must be 1-64 of [A-Za-z0-9_.-]"
        )));
    }
    store(shared)?;
    let patch = Patch {
        percentage: Some(pct),
        state: None,
        default_variant: None,
    };
    let action = format!("percentage:{pct}");
    let (_, version) = mutate(shared, env, actor, |cur| {
        let before = cur.flags.get(key).ok_or_else(|| {
            ApiError::not_found(format!("flag {key:?} not found in {env:?}")).with_key(key)
        })?;
        let after = apply_patch(key, before, &patch)?;
        if &after == before {
            return Ok(vec![]);
        }
        Ok(vec![Change {
            key: key.to_owned(),
            before: Some(before.clone()),
            after: Some(after),
            action: action.clone(),
        }])
    })
    .await?;
    Ok(version)
}

/// `POST /api/v1/environments/{env}/flags/{key}/toggle`: ENABLED ⇄ DISABLED.
pub(crate) async fn toggle_flag(
    State(shared): State<Arc<Shared>>,
    Path((env, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let actor = admin(&shared, &headers, &env)?;
    let (changes, version) = mutate(&shared, &env, &actor, |cur| {
        let before = cur.flags.get(&key).ok_or_else(|| {
            ApiError::not_found(format!("flag {key:?} not found in {env:?}")).with_key(&key)
        })?;
        let enabled = before.get("state").and_then(Value::as_str) != Some("DISABLED");
        let mut after = before.clone();
        if let Some(o) = after.as_object_mut() {
            o.insert(
                "state".into(),
                json!(if enabled { "DISABLED" } else { "ENABLED" }),
            );
        }
        Ok(vec![Change {
            key: key.clone(),
            before: Some(before.clone()),
            after: Some(after),
            action: "toggle".into(),
        }])
    })
    .await?;
    let def = changes
        .first()
        .and_then(|c| c.after.clone())
        .unwrap_or(Value::Null);
    Ok(Json(flag_body(&env, &key, version, &def)).into_response())
}

/// Whether a flag definition carries `tag`: `metadata.<tag> == true`, or `metadata.tags` is a
/// string listing it (comma- or space-separated). flagd metadata values must be scalars, so a
/// JSON array of tags is not possible.
pub fn has_tag(def: &Value, tag: &str) -> bool {
    let Some(meta) = def.get("metadata").and_then(Value::as_object) else {
        return false;
    };
    if meta.get(tag) == Some(&Value::Bool(true)) {
        return true;
    }
    meta.get("tags")
        .and_then(Value::as_str)
        .is_some_and(|t| t.split([',', ' ']).any(|x| x.trim() == tag))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillSwitch {
    tag: String,
}

/// `POST /api/v1/environments/{env}/kill-switch` `{"tag": "experimental"}`: disables every
/// flag carrying the tag, in one transaction (all or nothing).
pub(crate) async fn kill_switch(
    State(shared): State<Arc<Shared>>,
    Path(env): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = admin(&shared, &headers, &env)?;
    store(&shared)?;
    let req: KillSwitch = parse_body(&body)?;
    Ok(Json(kill_by_tag(&shared, &env, &req.tag, &actor).await?).into_response())
}

/// Disables every flag of `env` carrying `tag` in one transaction, as
/// `actor`; the answer of `POST …/kill-switch` (version, disabled, tagged).
pub(crate) async fn kill_by_tag(
    shared: &Shared,
    env: &str,
    tag: &str,
    actor: &str,
) -> Result<Value, ApiError> {
    if !valid_environment(env) {
        return Err(ApiError::bad_request(format!(
            "environment {env:?} must be 1-64 of [A-Za-z0-9_.-]"
        )));
    }
    store(shared)?;
    if tag.trim().is_empty() {
        return Err(ApiError::bad_request("tag must not be empty"));
    }
    let action = format!("kill-switch:{tag}");
    let (changes, version) = mutate(shared, env, actor, |cur| {
        Ok(cur
            .flags
            .iter()
            .filter(|(_, d)| has_tag(d, tag))
            .filter(|(_, d)| d.get("state").and_then(Value::as_str) != Some("DISABLED"))
            .map(|(k, d)| {
                let mut after = d.clone();
                if let Some(o) = after.as_object_mut() {
                    o.insert("state".into(), json!("DISABLED"));
                }
                Change {
                    key: k.clone(),
                    before: Some(d.clone()),
                    after: Some(after),
                    action: action.clone(),
                }
            })
            .collect())
    })
    .await?;
    let snap = shared.snapshot(env);
    let tagged: Vec<&String> = snap
        .defs
        .iter()
        .filter(|(_, d)| has_tag(d, tag))
        .map(|(k, _)| k)
        .collect();
    let disabled: Vec<&String> = changes.iter().map(|c| &c.key).collect();
    Ok(json!({
        "environment": env,
        "tag": tag,
        "version": version,
        "disabled": disabled,
        "tagged": tagged,
    }))
}

#[derive(Deserialize)]
pub(crate) struct AuditParams {
    flag: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

/// `GET /api/v1/environments/{env}/audit?flag=&before=&limit=`: newest first.
pub(crate) async fn audit(
    State(shared): State<Arc<Shared>>,
    Path(env): Path<String>,
    headers: HeaderMap,
    Query(params): Query<AuditParams>,
) -> Result<Response, ApiError> {
    admin(&shared, &headers, &env)?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let entries = audit_entries(
        &shared,
        &env,
        AuditQuery {
            flag: params.flag,
            before_id: params.before,
            limit,
        },
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "environment": env, "entries": entries }),
    ))
}

/// Audit entries of `env`, newest first, each with an RFC 3339 `at`.
pub(crate) async fn audit_entries(
    shared: &Shared,
    env: &str,
    query: AuditQuery,
) -> Result<Vec<Value>, ApiError> {
    let store = store(shared)?;
    let entries = store.audit(env, query).await?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let at = serin_clock::format_rfc3339_millis(u64::try_from(e.at_unix_ms).unwrap_or(0));
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("at".into(), json!(at));
            }
            v
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_by_boolean_or_list() {
        assert!(has_tag(
            &json!({"metadata": {"experimental": true}}),
            "experimental"
        ));
        assert!(has_tag(
            &json!({"metadata": {"tags": "beta, experimental"}}),
            "experimental"
        ));
        assert!(!has_tag(
            &json!({"metadata": {"tags": "experimentalish"}}),
            "experimental"
        ));
        assert!(!has_tag(
            &json!({"metadata": {"experimental": false}}),
            "experimental"
        ));
        assert!(!has_tag(&json!({"state": "ENABLED"}), "experimental"));
    }
}
