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

/// The API's OpenAPI description, served at `/v1/openapi.yaml`.
pub const OPENAPI: &str = include_str!("../api/openapi.yaml");

/// Every route the router serves (method, path), checked against
/// [`OPENAPI`] by a test.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/v1/openapi.yaml"),
    ("get", "/v1/rollouts"),
    ("get", "/v1/rollouts/{name}"),
    ("post", "/v1/rollouts/{name}/{op}"),
    ("post", "/v1/rollouts/{name}/restart"),
    ("get", "/v1/rollouts/{name}/logs"),
    ("post", "/v1/rollouts/{name}/emergency-notify"),
    ("post", "/v1/rollouts/{name}/emergency-rollback"),
    ("post", "/v1/rollouts/{name}/set-image"),
    ("get", "/v1/services"),
    ("post", "/v1/apply"),
    ("get", "/v1/history"),
    ("get", "/v1/report"),
    ("get", "/v1/events"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{name}"),
    ("get", "/metrics"),
    // FlagRollouts (served by crate::flag_rollouts::routes).
    ("get", "/v1/flagrollouts"),
    ("get", "/v1/flagrollouts/{name}"),
    ("post", "/v1/flagrollouts/{name}/{op}"),
    // Experiments (served by crate::experiments::routes).
    ("get", "/v1/experiments"),
    ("get", "/v1/experiments/{name}"),
    ("post", "/v1/experiments/{name}/terminate"),
    // Views for the dashboard and scripts (crate::api_views::routes).
    ("get", "/v1/whoami"),
    ("get", "/v1/rollouts/{name}/spec"),
    ("get", "/v1/analysistemplates"),
    // Flags under Serin tokens (crate::flags_api::router, mounted by `up`).
    ("get", "/v1/flags"),
    ("put", "/v1/flags/{key}/percentage"),
    ("post", "/v1/flags/kill-switch"),
    ("get", "/v1/flags/audit"),
];

/// Largest request body the API reads (axum's default, stated here so
/// that `serin apply` can refuse a larger file before sending it).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// Builds the router.
pub fn router(cp: Arc<ControlPlane>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{name}", get(one))
        .route("/v1/rollouts/{name}/{op}", post(operate))
        .route("/v1/rollouts/{name}/restart", post(restart))
        .route("/v1/services", get(services))
        .route("/v1/apply", post(apply))
        .route("/v1/history", get(history))
        .route("/v1/report", get(report))
        .route("/metrics", get(metrics))
        .route("/v1/rollouts/{name}/logs", get(logs))
        .route(
            "/v1/rollouts/{name}/emergency-notify",
            post(emergency_notify),
        )
        .route(
            "/v1/rollouts/{name}/emergency-rollback",
            post(emergency_rollback),
        )
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{name}", axum::routing::delete(revoke_token))
        .route("/v1/events", get(events))
        .route("/v1/rollouts/{name}/set-image", post(set_image))
        .route(
            "/v1/openapi.yaml",
            get(|| async { ([("content-type", "application/yaml")], OPENAPI) }),
        )
        .merge(crate::flag_rollouts::routes())
        .merge(crate::experiments::routes())
        .merge(crate::api_views::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&cp),
            crate::auth::require,
        ))
        // The web dashboard: static pages only, no data and no token; the
        // page signs in and calls the routes above like any client.
        .merge(serin_dashboard::router())
        .with_state(cp)
}

/// The API's error answer: `status` with `{"error": message}`. Every route
/// module answers errors through this one helper.
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
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
                "images": crate::api_views::images(&rv.template),
                "stable": status.stable_hash.as_ref().is_some_and(|h| h.0 == rv.hash),
                "desired": p.map_or(0, |p| p.desired),
                "pods": p.map(|p| p.pods.iter().map(|pod| json!({
                    "name": pod.name, "addr": pod.addr.to_string(), "ready": pod.ready,
                    "status": pod.status, "restarts": pod.restarts,
                    "ageSeconds": pod.started_at.elapsed().map_or(0, |d| d.as_secs()),
                    "replaces": pod.replaces,
                })).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    // Each experiment with its pods (a group of their own on the platform).
    let exp_pods = cp
        .platform()
        .observe(&crate::local_adapters::experiment_group(name));
    let experiments: Vec<serde_json::Value> = status
        .experiments
        .iter()
        .map(|x| {
            let workloads: Vec<serde_json::Value> = x
                .workloads
                .iter()
                .map(|w| {
                    let p = exp_pods.iter().find(|p| p.hash == w.hash.0);
                    json!({
                        "template": w.template,
                        "hash": w.hash,
                        "revision": w.revision,
                        "replicas": w.replicas,
                        "pods": p.map(|p| p.pods.iter().filter(|pod| !pod.terminating).map(|pod| json!({
                            "name": pod.name, "addr": pod.addr.to_string(), "ready": pod.ready,
                            "status": pod.status,
                        })).collect::<Vec<_>>()).unwrap_or_default(),
                    })
                })
                .collect();
            json!({
                "name": x.name,
                "step": x.step,
                "phase": x.phase,
                "message": x.message,
                "availableAt": x.available_at,
                "templates": workloads,
            })
        })
        .collect();
    let awaiting_promotion = awaiting_promotion(&engine, &status);
    // An undo in force (made over this manifest) is what the rollout wants.
    let desired = match cp.store().overrides(name).unwrap_or_default().undo {
        Some(u) if u.over_manifest == engine.template_hash => u.revision.0,
        _ => engine.template_hash.0.clone(),
    };
    Ok(json!({
        "name": name,
        "strategy": strategy,
        "awaitingPromotion": awaiting_promotion,
        // The revision the manifests (or an undo over them) ask for: until
        // the status reports it stable, a Healthy phase is the previous
        // revision's (an apply or an edit is reconciled asynchronously).
        "desiredHash": desired,
        "replicas": engine.replicas,
        "steps": steps,
        "status": status,
        "route": route,
        "revisions": revs,
        "analysisRuns": runs,
        "experiments": experiments,
        "events": events.iter().rev().take(20).collect::<Vec<_>>(),
        "restartAt": cp.restart_at(name),
        // Why the driver cannot act on this rollout (and when it tries
        // again), e.g. an image with no `images:` entry.
        "driverError": cp.driver_error(name),
    }))
}

/// Why the rollout waits for a person's `promote`, if it does: an
/// indefinite canary pause step, a blue-green rollout without automatic
/// promotion, or an Inconclusive analysis to accept. (`PausedByUser` waits for
/// `resume`, not for a promotion, so it is not a gate.)
pub(crate) fn awaiting_promotion(
    spec: &serin_engine::RolloutSpec,
    status: &serin_engine::RolloutStatus,
) -> Option<&'static str> {
    use serin_engine::{PauseReason, Step, Strategy};
    if status.abort {
        return None;
    }
    status
        .pause_conditions
        .iter()
        .find_map(|p| match (p.reason, &spec.strategy) {
            (PauseReason::CanaryPauseStep, Strategy::Canary(c)) => {
                let i = status.current_step_index.unwrap_or(0) as usize;
                matches!(c.steps.get(i), Some(Step::Pause(None))).then_some("pause step")
            }
            (PauseReason::BlueGreenPause, Strategy::BlueGreen(b)) if !b.auto_promotion_enabled => {
                Some("blue-green promotion")
            }
            (PauseReason::InconclusiveAnalysisRun, _) => Some("inconclusive analysis"),
            _ => None,
        })
}

/// Every rollout described in full; with a query, one filtered page of
/// summaries ([`crate::rollout_list`]).
async fn list(
    State(cp): State<Arc<ControlPlane>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if let Some(raw) = query.filter(|q| !q.is_empty()) {
        return match crate::rollout_list::parse(&raw) {
            Ok(q) => crate::rollout_list::summary(&cp, &q),
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        };
    }
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
    match cp.operate(&name, &op).await {
        Ok(()) => Json(json!({"ok": true, "rollout": name, "operation": op})).into_response(),
        Err(OperationError::NotFound(n)) => {
            error(StatusCode::NOT_FOUND, format!("no rollout named {n}"))
        }
        Err(OperationError::Refused(e)) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

/// `POST /v1/rollouts/{name}/restart` body: when (both absent: now).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestartBody {
    /// A Go duration from now (`30s`, `5m`, `1h`), as `kubectl argo rollouts restart --in`.
    #[serde(rename = "in")]
    after: Option<String>,
    /// An RFC 3339 time.
    at: Option<String>,
}

/// Sets `restartAt` (now, in a while, or at a time): every pod created
/// before it is replaced, surge first, without going through the steps.
async fn restart(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    body: Option<Json<RestartBody>>,
) -> Response {
    let body = body.map(|b| b.0).unwrap_or_default();
    let now = serin_clock::now_ms();
    let at = match (&body.after, &body.at) {
        (Some(_), Some(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give either \"in\" or \"at\", not both",
            );
        }
        (Some(d), None) => match serin_spec::values::parse_go_duration(d) {
            Ok(d) => now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("in: {e}")),
        },
        (None, Some(t)) => match serin_clock::parse_rfc3339(t) {
            Ok(t) => t,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("at: {e}")),
        },
        (None, None) => now,
    };
    match cp.operate(&name, &Operation::Restart { at }).await {
        Ok(()) => {
            cp.wake().notify_one();
            Json(json!({
                "ok": true,
                "rollout": name,
                "restartAt": serin_clock::format_rfc3339_seconds(at),
                "restartAtMs": at,
            }))
            .into_response()
        }
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

#[derive(serde::Deserialize)]
struct ApplyBody {
    /// File name (its base name is used) and YAML/JSON text.
    name: String,
    content: String,
}

/// `serin apply -f FILE`: validates the file together with the manifests in
/// force; with any error nothing is written (422 with the located
/// diagnostics); otherwise it is written into the watched folder (replacing a
/// file of the same name) and takes effect at once — a deploy, exactly as if
/// it had been edited there.
async fn apply(State(cp): State<Arc<ControlPlane>>, Json(body): Json<ApplyBody>) -> Response {
    apply_text(&cp, &body)
}

fn apply_text(cp: &ControlPlane, body: &ApplyBody) -> Response {
    let watched = cp.watched();
    let Some(dir) = watched.iter().find(|p| p.is_dir()).cloned().or_else(|| {
        watched
            .first()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
    }) else {
        return error(
            StatusCode::CONFLICT,
            "serin up watches no folder to apply into",
        );
    };
    if let Some(why) = crate::guard::bad_file_name(&body.name) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    let Some(base) = std::path::Path::new(&body.name).file_name() else {
        return error(StatusCode::BAD_REQUEST, "name must be a file name");
    };
    let current = serin_spec::ManifestSet::load_paths(&watched);
    // Like `kubectl apply`, objects are updated where they are defined: if the
    // file's objects already live in a watched file, that file is replaced;
    // otherwise the file is added under its own name.
    let mut incoming = serin_spec::ManifestSet::new();
    incoming.add_source(&body.name, &body.content);
    let defined_in = incoming.documents.iter().find_map(|doc| {
        let name = doc.name.as_ref()?;
        current
            .documents
            .iter()
            .find(|d| d.kind == doc.kind && d.name.as_ref() == Some(name))
            .and_then(|d| current.files.get(d.file))
            .map(|f| std::path::PathBuf::from(&f.path))
    });
    let target = defined_in.unwrap_or_else(|| dir.join(base));
    let mut set = serin_spec::ManifestSet::new();
    let target_str = target.display().to_string();
    for f in &current.files {
        if std::path::Path::new(&f.path) != target {
            set.add_source(&f.path, &f.text);
        }
    }
    set.add_source(&target_str, &body.content);
    let mut diags = serin_spec::lint(&set);
    diags.extend(serin_analysis::lint_templates(&set));
    diags.extend(crate::secure::policy_diagnostics(
        &set,
        cp.platform().images(),
    ));
    let errors: Vec<&serin_spec::Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == serin_spec::Severity::Error)
        .collect();
    if !errors.is_empty() {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": format!("{} error(s); nothing was applied", errors.len()), "diagnostics": errors}))).into_response();
    }
    let tmp = target.with_file_name(format!(".{}.serin-apply", base.to_string_lossy()));
    if let Err(e) =
        std::fs::write(&tmp, &body.content).and_then(|()| std::fs::rename(&tmp, &target))
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write {target_str}: {e}"),
        );
    }
    let warnings: Vec<&serin_spec::Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == serin_spec::Severity::Warning)
        .collect();
    let body = json!({"applied": target_str, "warnings": warnings});
    cp.set_manifests(set);
    cp.wake().notify_one();
    Json(body).into_response()
}

#[derive(serde::Deserialize)]
struct LogQuery {
    pod: Option<String>,
    tail: Option<usize>,
}

/// The last lines of each pod's log (or one pod's).
async fn logs(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Response {
    let tail = q.tail.unwrap_or(50);
    let pods: Vec<String> = cp
        .platform()
        .observe(&name)
        .into_iter()
        .flat_map(|r| r.pods.into_iter().map(|p| p.name))
        .filter(|p| q.pod.as_ref().is_none_or(|want| want == p))
        .collect();
    if pods.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no pods of {name}{}",
                q.pod.map(|p| format!(" named {p}")).unwrap_or_default()
            ),
        );
    }
    let mut out = Vec::new();
    for pod in pods {
        let text = cp
            .platform()
            .log_path(&name, &pod)
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(tail);
        out.push(json!({"pod": pod, "lines": lines[start..]}));
    }
    Json(out).into_response()
}

#[derive(serde::Deserialize)]
struct SinceQuery {
    since: Option<String>,
}

fn since_ms(q: &SinceQuery) -> Result<u64, String> {
    let now = serin_clock::now_ms();
    match q.since.as_deref() {
        None => Ok(0),
        Some(s) => serin_history::parse_since(s)
            .map(|d| now.saturating_sub(d))
            .map_err(|e| format!("since: {}", e.0)),
    }
}

/// Every recorded deployment (newest last).
async fn history(
    State(cp): State<Arc<ControlPlane>>,
    axum::extract::Query(q): axum::extract::Query<SinceQuery>,
) -> Response {
    let since = match since_ms(&q) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let Some(rec) = cp.recorder() else {
        return error(
            StatusCode::NOT_FOUND,
            "history is not recorded by this control plane",
        );
    };
    match rec.history().list(since) {
        Ok(list) => Json(list).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The seed's "Battle-Tested Metrics" table computed from history.
async fn report(
    State(cp): State<Arc<ControlPlane>>,
    axum::extract::Query(q): axum::extract::Query<SinceQuery>,
) -> Response {
    let since = match since_ms(&q) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let Some(rec) = cp.recorder() else {
        return error(
            StatusCode::NOT_FOUND,
            "history is not recorded by this control plane",
        );
    };
    match rec.history().list(0) {
        Ok(list) => {
            let r = serin_history::report(&list, since, serin_clock::now_ms());
            Json(json!({"report": r, "text": r.to_text()})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Prometheus metrics of the control plane (deployments, rollouts,
/// analysis runs, notifications).
async fn metrics(State(cp): State<Arc<ControlPlane>>) -> Response {
    let body = cp
        .recorder()
        .map(|r| r.metrics_text())
        .unwrap_or_else(|| "# EOF\n".into());
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Announces an emergency rollback of `name` (notifications), after the CLI
/// has aborted or undone it.
async fn emergency_notify(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
) -> Response {
    if !cp
        .manifests()
        .rollouts()
        .any(|(_, r)| r.metadata.name.as_deref() == Some(name.as_str()))
    {
        return error(StatusCode::NOT_FOUND, format!("no rollout named {name}"));
    }
    let status = match cp.store().status(&name) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let revision = status.stable_hash.map(|h| h.0).unwrap_or_default();
    if let Some(rec) = cp.recorder() {
        rec.emergency(serin_clock::now_ms(), &name, &revision);
    }
    Json(json!({"notified": cp.recorder().is_some(), "stable": revision})).into_response()
}

/// Runs the emergency playbook ([`crate::emergency`]) and streams its
/// progress as NDJSON.
async fn emergency_rollback(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: crate::emergency::EmergencyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        crate::emergency::EmergencyRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    };
    let rx = match crate::emergency::start(&cp, &name, req) {
        Ok(rx) => rx,
        Err(e @ OperationError::NotFound(_)) => return error(StatusCode::NOT_FOUND, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    (
        [("content-type", "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenBody {
    name: String,
    role: crate::auth::Role,
    /// A Go duration (`720h`): the token stops working after it.
    #[serde(default)]
    expires_in: Option<String>,
}

/// Creates a token (admin only); the value is in this answer and nowhere else.
/// Names are unique: revoke a token before reusing its name.
async fn create_token(State(cp): State<Arc<ControlPlane>>, Json(b): Json<TokenBody>) -> Response {
    if let Some(why) = crate::auth::bad_name(&b.name) {
        return error(StatusCode::BAD_REQUEST, why);
    }
    if cp.tokens().iter().any(|t| t.name == b.name) {
        return error(
            StatusCode::CONFLICT,
            format!("a token named {:?} exists; revoke it first", b.name),
        );
    }
    let now = serin_clock::now_ms();
    let expires_ms = match b
        .expires_in
        .as_deref()
        .map(serin_spec::values::parse_go_duration)
    {
        None => None,
        Some(Ok(d)) if !d.is_zero() => {
            Some(now.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        }
        Some(Ok(_)) => return error(StatusCode::BAD_REQUEST, "expiresIn must be positive"),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("expiresIn: {e}")),
    };
    match cp.create_token_until(&b.name, b.role, expires_ms) {
        Ok(token) => (
            StatusCode::CREATED,
            Json(json!({"name": b.name, "role": b.role, "token": token, "expiresMs": expires_ms})),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Revokes the token named `name` (admin only): it stops working at once.
async fn revoke_token(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
    match cp.revoke_tokens(&name) {
        Ok(0) => error(StatusCode::NOT_FOUND, format!("no token named {name:?}")),
        Ok(n) => Json(json!({"revoked": name, "count": n})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Token names and roles (never values).
async fn list_tokens(State(cp): State<Arc<ControlPlane>>) -> Response {
    Json(cp.tokens()).into_response()
}

/// Server-Sent Events: one `data:` line of JSON per engine event
/// (`{"rollout", "at", "event": {"StepCompleted": {"step": 0}}}`) — rollout
/// updated, step completed, paused, aborted, completed, analysis failed/error.
async fn events(State(cp): State<Arc<ControlPlane>>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = cp.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(v) => Event::default().data(v.to_string()),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(json!({"lagged": n}).to_string()),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_saphyr::from_str(OPENAPI).expect("valid YAML");
        for (method, path) in ROUTES {
            assert!(
                doc["paths"][*path][*method].is_object(),
                "{method} {path} missing from openapi.yaml"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            ROUTES.len(),
            "openapi.yaml documents a route the router does not serve"
        );
    }
}

/// `s` as a YAML double-quoted scalar (JSON's escaping is valid YAML):
/// a backslash or a control character in an image cannot change the file's
/// meaning.
fn yaml_double_quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[derive(serde::Deserialize)]
struct SetImageBody {
    container: String,
    image: String,
}

/// `serin set image NAME CONTAINER=IMAGE`: edits the image in the manifest
/// file that defines the rollout (at the value's exact location, the rest of
/// the file untouched), then applies it like `serin apply` — validated first,
/// a new revision like any pod template change.
async fn set_image(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    Json(b): Json<SetImageBody>,
) -> Response {
    if b.image.is_empty() || b.image.contains(['\n', '"']) {
        return error(
            StatusCode::BAD_REQUEST,
            "image must be a non-empty single-line string without quotes",
        );
    }
    let set = serin_spec::ManifestSet::load_paths(&cp.watched());
    let found = set.documents.iter().find_map(|d| {
        let (rollout, prefix) = match &d.resource {
            serin_spec::Resource::Rollout(r) => (r.as_ref(), "spec.template.spec.containers"),
            serin_spec::Resource::Deployment {
                rollout: Some(r), ..
            } => (r.as_ref(), "spec.template.spec.containers"),
            _ => return None,
        };
        (rollout.metadata.name.as_deref() == Some(name.as_str())).then_some((d, rollout, prefix))
    });
    let Some((doc, rollout, prefix)) = found else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no rollout named {name} in the watched files"),
        );
    };
    let containers = rollout
        .spec
        .template
        .as_ref()
        .map(|t| t.spec.containers.as_slice())
        .unwrap_or_default();
    let Some(i) = containers.iter().position(|c| c.name == b.container) else {
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "rollout {name} has no container {:?} (containers: {})",
                b.container,
                names.join(", ")
            ),
        );
    };
    let Some(file) = set.files.get(doc.file) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "source file not loaded");
    };
    let path = format!("{prefix}[{i}].image");
    let Some(loc) = doc.locs.get(&path).map(|n| n.value) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{path} is not set in {}; set it in the file", file.path),
        );
    };
    let (start, end) = (loc.offset, loc.offset + loc.len);
    if end > file.text.len()
        || !file.text.is_char_boundary(start)
        || !file.text.is_char_boundary(end)
    {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "image location out of range",
        );
    }
    let text = format!(
        "{}{}{}",
        &file.text[..start],
        yaml_double_quoted(&b.image),
        &file.text[end..]
    );
    apply_text(
        &cp,
        &ApplyBody {
            name: file.path.clone(),
            content: text,
        },
    )
}
