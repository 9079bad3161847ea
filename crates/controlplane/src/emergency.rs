//! The seed's emergency playbook, on the server (`POST
//! /v1/rollouts/{name}/emergency-rollback`), so the CLI, the dashboard and
//! scripts get the same behaviour: abort (a rollout in progress) or undo
//! (already promoted), wait until all traffic is on the stable revision,
//! kill-switch the experimental flags, notify. Progress streams back as
//! NDJSON, one line per step; running it twice is harmless.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::reconciler::{ControlPlane, Operation, OperationError};
use serin_clock::now_ms;

/// What the caller asks for (all optional).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct EmergencyRequest {
    /// Flags carrying this tag are disabled (default `experimental`).
    pub flag_tag: Option<String>,
    /// Flag environment (default `production`).
    pub environment: Option<String>,
    /// Admin key of the flag server; without one the kill switch is skipped
    /// and says so.
    pub flags_token: Option<String>,
    /// Give up waiting for stable traffic after this long (default 60 s).
    pub timeout_ms: Option<u64>,
}

/// Sends one progress line; a caller that went away does not stop the
/// playbook (an emergency finishes).
struct Progress {
    t0: Instant,
    tx: tokio::sync::mpsc::UnboundedSender<Value>,
}

impl Progress {
    fn step(&self, what: &str, since: Instant) {
        let _ = self.tx.send(json!({
            "at": self.t0.elapsed().as_secs_f64(),
            "step": what,
            "ms": u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
        }));
    }

    fn note(&self, what: &str) {
        let _ = self
            .tx
            .send(json!({"at": self.t0.elapsed().as_secs_f64(), "note": what}));
    }
}

/// True when every route of `v` (a `describe` answer) sends production
/// traffic to the stable revision.
fn traffic_on_stable(v: &Value) -> bool {
    let stable = v["status"]["stable_hash"].as_str().unwrap_or("");
    let weights_ok = v["route"]["weights"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|w| w["revision"] == stable);
    let services_ok = v["route"]["services"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(role, h)| role == "Canary" || role == "Preview" || h == stable);
    weights_ok && services_ok
}

/// Checks that `name` exists, then runs the playbook in its own task;
/// returns the receiver of its progress lines (the last has `"done": true`).
pub fn start(
    cp: &Arc<ControlPlane>,
    name: &str,
    req: EmergencyRequest,
) -> Result<tokio::sync::mpsc::UnboundedReceiver<Value>, OperationError> {
    let first = crate::api::describe(cp, name)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let cp = Arc::clone(cp);
    let name = name.to_string();
    tokio::spawn(async move {
        let p = Progress {
            t0: Instant::now(),
            tx,
        };
        let result = run(&cp, &name, &req, first, &p).await;
        let _ = p.tx.send(match result {
            Ok(()) => json!({"done": true, "ok": true, "seconds": p.t0.elapsed().as_secs_f64()}),
            Err(e) => json!({"done": true, "ok": false, "error": format!("{e:#}"), "seconds": p.t0.elapsed().as_secs_f64()}),
        });
    });
    Ok(rx)
}

async fn run(
    cp: &Arc<ControlPlane>,
    name: &str,
    req: &EmergencyRequest,
    first: Value,
    p: &Progress,
) -> anyhow::Result<()> {
    let s = &first["status"];
    let in_progress = s["stable_hash"] != s["current_hash"];
    let started = Instant::now();
    if in_progress && s["abort"] == json!(true) {
        p.step("already aborted", started);
    } else if in_progress {
        cp.operate(name, &Operation::Abort).await?;
        cp.wake().notify_one();
        p.step("aborted the rollout in progress", started);
    } else {
        cp.operate(name, &Operation::Undo { to_revision: None })
            .await?;
        cp.wake().notify_one();
        p.step("undo to the previous revision", started);
    }
    // Wait until every route points at the stable revision (abort), or the
    // previous revision is Healthy again (undo): the driver moves traffic
    // first, so this is quick; polled with a deadline.
    let started = Instant::now();
    let deadline = started + Duration::from_millis(req.timeout_ms.unwrap_or(60_000));
    loop {
        let v = crate::api::describe(cp, name)?;
        let s = &v["status"];
        let done = if in_progress {
            traffic_on_stable(&v)
        } else {
            s["phase"] == "Healthy" && s["stable_hash"] == s["current_hash"]
        };
        if done {
            let stable = s["stable_hash"].as_str().unwrap_or("");
            p.step(&format!("100 % of traffic on {stable}"), started);
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "traffic not back on stable within {} ms",
                req.timeout_ms.unwrap_or(60_000)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let tag = req.flag_tag.as_deref().unwrap_or("experimental");
    let env = req.environment.as_deref().unwrap_or("production");
    match (&req.flags_token, cp.flags_router()) {
        (Some(token), Some(router)) => match kill_switch(router, env, tag, token).await {
            Ok(200..=299) => p.step(&format!("flags tagged {tag} disabled"), started),
            Ok(code) => p.note(&format!("kill switch answered {code} (skipped)")),
            Err(e) => p.note(&format!("kill switch failed: {e:#} (skipped)")),
        },
        (None, _) => p.note("no flag admin token: kill switch skipped"),
        (Some(_), None) => p.note("serin up serves no flags: kill switch skipped"),
    }
    let started = Instant::now();
    let revision = cp
        .store()
        .status(name)?
        .stable_hash
        .map(|h| h.0)
        .unwrap_or_default();
    match cp.recorder() {
        Some(rec) => {
            rec.emergency(now_ms(), name, &revision);
            p.step("notified", started);
        }
        None => p.step("recorded (no notifications configured)", started),
    }
    Ok(())
}

/// The flag server's own kill switch, called in-process (same checks, same
/// audit trail as `POST /api/v1/environments/{env}/kill-switch`).
async fn kill_switch(
    router: axum::Router,
    env: &str,
    tag: &str,
    token: &str,
) -> anyhow::Result<u16> {
    use tower::ServiceExt;
    let req = axum::http::Request::post(format!("/api/v1/environments/{env}/kill-switch"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(json!({"tag": tag}).to_string()))?;
    let res = router.oneshot(req).await?;
    Ok(res.status().as_u16())
}
