//! `GET /v1/rollouts?view=summary&name=&phase=&attention=&offset=&limit=`:
//! one page of rollouts, filtered on the server, each summarised in a few
//! fields (what the dashboard's overview shows).
//!
//! Why not the full list: `GET /v1/rollouts` describes every rollout (engine
//! spec, revisions with pods, events, analysis runs with every measurement),
//! which with 1,000 rollouts took seconds to build and megabytes to send. A
//! summary reads only the rollouts on the page asked for — unless it filters
//! by phase or "needs attention", which reads every rollout's status and
//! engine spec (never its revisions, route or pods).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::reconciler::ControlPlane;

/// Rollouts per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;

/// Phases `phase=` accepts: the engine's, and `Error` for a rollout whose
/// manifest the engine cannot run.
pub const PHASES: &[&str] = &[
    "Pending",
    "Progressing",
    "Paused",
    "Healthy",
    "Degraded",
    "Error",
];

/// A parsed query.
#[derive(Debug, PartialEq)]
pub struct Query {
    /// Case-insensitive substring of the name.
    pub name: Option<String>,
    /// Exact phase (one of [`PHASES`]).
    pub phase: Option<String>,
    /// Only rollouts that need a person (or only those that do not).
    pub attention: Option<bool>,
    /// Rollouts to skip (after filtering).
    pub offset: usize,
    /// Rollouts to return.
    pub limit: usize,
}

/// Parses the query string of a summary request; the error is the message
/// of a 400. Every parameter is checked: a typo is an error, not a filter
/// silently ignored.
pub fn parse(raw: &str) -> Result<Query, String> {
    let mut q = Query {
        name: None,
        phase: None,
        attention: None,
        offset: 0,
        limit: DEFAULT_LIMIT,
    };
    let mut seen = HashSet::new();
    let mut view = None;
    for (k, v) in form_urlencoded(raw) {
        if !seen.insert(k.clone()) {
            return Err(format!("parameter {k:?} given twice"));
        }
        match k.as_str() {
            "view" => view = Some(v),
            "name" => q.name = (!v.is_empty()).then(|| v.to_lowercase()),
            "phase" if v.is_empty() => {}
            "phase" => match PHASES.iter().find(|p| p.eq_ignore_ascii_case(&v)) {
                Some(p) => q.phase = Some((*p).to_string()),
                None => {
                    return Err(format!("phase: {v:?} is not one of {}", PHASES.join(", ")));
                }
            },
            "attention" => {
                q.attention = match v.as_str() {
                    "" => None,
                    "true" | "1" => Some(true),
                    "false" | "0" => Some(false),
                    _ => return Err(format!("attention: {v:?} is not true or false")),
                }
            }
            "offset" => {
                q.offset = v
                    .parse()
                    .map_err(|_| format!("offset: {v:?} is not a whole number ≥ 0"))?
            }
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| {
                        format!("limit: {v:?} is not a whole number from 1 to {MAX_LIMIT}")
                    })?
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (view, name, phase, attention, offset, limit)"
                ));
            }
        }
    }
    match view.as_deref() {
        Some("summary") => Ok(q),
        Some(v) => Err(format!("view: {v:?} is not a view (summary)")),
        None => Err("filters and paging need view=summary (without it the list is every rollout, described in full)".into()),
    }
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded (`+` is a
/// space). Invalid UTF-8 after decoding is replaced, never a panic.
fn form_urlencoded(raw: &str) -> Vec<(String, String)> {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match (
                b[i],
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (b'+', ..) => out.push(b' '),
                (b'%', Some(hi), Some(lo)) => {
                    out.push(hi * 16 + lo);
                    i += 2;
                }
                (c, ..) => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// One rollout before paging: what the filters need.
struct Row {
    name: String,
    engine: Result<serin_engine::RolloutSpec, String>,
    status: serin_engine::RolloutStatus,
    phase: &'static str,
    awaiting: Option<&'static str>,
    inconclusive: bool,
}

impl Row {
    fn attention(&self) -> bool {
        self.phase == "Degraded"
            || self.phase == "Error"
            || self.awaiting.is_some()
            || self.inconclusive
    }
}

fn phase_name(p: serin_engine::Phase) -> &'static str {
    match p {
        serin_engine::Phase::Pending => "Pending",
        serin_engine::Phase::Progressing => "Progressing",
        serin_engine::Phase::Paused => "Paused",
        serin_engine::Phase::Healthy => "Healthy",
        serin_engine::Phase::Degraded => "Degraded",
    }
}

/// The answer to a summary request: `{total, all, offset, limit, items}`
/// (`total`: rollouts that match the filters; `all`: every rollout).
pub fn summary(cp: &Arc<ControlPlane>, q: &Query) -> Response {
    let set = cp.manifests();
    let all = set.rollouts().count();
    let named: Vec<(String, &serin_spec::Rollout)> = set
        .rollouts()
        .map(|(_, r)| (r.metadata.name.clone().unwrap_or_default(), r))
        .filter(|(name, _)| {
            q.name
                .as_ref()
                .is_none_or(|n| name.to_lowercase().contains(n.as_str()))
        })
        .collect();
    // Without a phase or attention filter only the page's rollouts are read.
    let by_status = q.phase.is_some() || q.attention.is_some();
    let candidates: Vec<&(String, &serin_spec::Rollout)> = if by_status {
        named.iter().collect()
    } else {
        named.iter().skip(q.offset).take(q.limit).collect()
    };
    let mut rows = Vec::new();
    for (name, r) in candidates {
        let row = match row(cp, &set, name, r) {
            Ok(row) => row,
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": e.to_string()})),
                )
                    .into_response();
            }
        };
        if q.phase.as_deref().is_some_and(|p| p != row.phase)
            || q.attention.is_some_and(|a| a != row.attention())
        {
            continue;
        }
        rows.push(row);
    }
    let (total, page): (usize, Vec<&Row>) = if by_status {
        (
            rows.len(),
            rows.iter().skip(q.offset).take(q.limit).collect(),
        )
    } else {
        (named.len(), rows.iter().collect())
    };
    let items: Vec<serde_json::Value> = page.into_iter().map(|row| item(cp, row)).collect();
    Json(json!({
        "total": total,
        "all": all,
        "offset": q.offset,
        "limit": q.limit,
        "items": items,
    }))
    .into_response()
}

/// What the filters need of one rollout: its status and engine spec.
fn row(
    cp: &ControlPlane,
    set: &serin_spec::ManifestSet,
    name: &str,
    r: &serin_spec::Rollout,
) -> Result<Row, crate::store::StoreError> {
    let status = cp.store().status(name)?;
    let engine = serin_plan::to_engine(set, r).map_err(|e| e.to_string());
    let awaiting = engine
        .as_ref()
        .ok()
        .and_then(|e| crate::api::awaiting_promotion(e, &status));
    Ok(Row {
        phase: if engine.is_err() {
            "Error"
        } else {
            phase_name(status.phase)
        },
        inconclusive: status
            .analysis_runs
            .iter()
            .any(|a| a.phase == serin_engine::AnalysisPhase::Inconclusive),
        name: name.to_string(),
        engine,
        status,
        awaiting,
    })
}

/// One rollout of the page.
fn item(cp: &ControlPlane, row: &Row) -> serde_json::Value {
    let name = &row.name;
    let s = &row.status;
    let engine = match &row.engine {
        Ok(e) => e,
        Err(e) => {
            return json!({"name": name, "phase": "Error", "error": e, "attention": true});
        }
    };
    let (strategy, steps) = match &engine.strategy {
        serin_engine::Strategy::Canary(c) if c.steps.is_empty() => ("rolling", None),
        serin_engine::Strategy::Canary(c) => ("canary", Some(c.steps.len())),
        serin_engine::Strategy::BlueGreen(_) => ("blueGreen", None),
    };
    let revisions = cp.store().revisions(name).unwrap_or_default();
    let images = |hash: Option<&serin_engine::RevisionHash>| {
        hash.and_then(|h| revisions.iter().find(|r| r.hash == h.0))
            .map(|r| crate::api_views::images(&r.template))
    };
    let canary = s
        .current_hash
        .as_ref()
        .filter(|c| s.stable_hash.as_ref() != Some(*c));
    // The weight the proxy actually routes to the canary (the route in force),
    // beside the one the engine asked for.
    let routed = cp.store().route(name).ok().and_then(|r| {
        (!r.weights.is_empty()).then(|| {
            canary
                .and_then(|c| r.weights.iter().find(|w| &w.revision == c))
                .map_or(0, |w| w.weight)
        })
    });
    let age = s.stable_hash.as_ref().and_then(|h| {
        cp.platform()
            .observe(name)
            .into_iter()
            .find(|rs| rs.hash == h.0)?
            .pods
            .iter()
            .filter_map(|p| p.started_at.elapsed().ok())
            .max()
            .map(|d| d.as_secs())
    });
    json!({
        "name": name,
        "strategy": strategy,
        "phase": row.phase,
        "message": s.message,
        "step": s.current_step_index,
        "steps": steps,
        "preview": matches!(engine.strategy, serin_engine::Strategy::BlueGreen(_))
            && s.active_hash.is_some() && s.active_hash != s.current_hash,
        "canaryWeight": canary.map(|_| s.canary_weight),
        "routedWeight": canary.and(routed),
        "stableImages": images(s.stable_hash.as_ref()),
        "canaryImages": images(canary),
        "ageSeconds": age,
        "awaitingPromotion": row.awaiting,
        "analysisInconclusive": row.inconclusive,
        "abort": s.abort,
        "attention": row.attention(),
        "driverError": cp.driver_error(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_query_is_parsed_and_every_bad_parameter_refused() {
        let q = parse("view=summary&name=App-09&phase=degraded&attention=true&offset=100&limit=50")
            .unwrap();
        assert_eq!(
            q,
            Query {
                name: Some("app-09".into()),
                phase: Some("Degraded".into()),
                attention: Some(true),
                offset: 100,
                limit: 50,
            }
        );
        let d = parse("view=summary&name=&phase=").unwrap();
        assert_eq!((d.name, d.phase, d.limit), (None, None, DEFAULT_LIMIT));
        assert_eq!(
            parse("view=summary&name=a%20b+c").unwrap().name.as_deref(),
            Some("a b c")
        );
        for (bad, says) in [
            ("name=x", "need view=summary"),
            ("view=full", "not a view"),
            ("view=summary&phase=Running", "not one of"),
            ("view=summary&attention=maybe", "attention"),
            ("view=summary&offset=-1", "offset"),
            ("view=summary&limit=0", "limit"),
            ("view=summary&limit=1001", "limit"),
            ("view=summary&limit=ten", "limit"),
            ("view=summary&sort=name", "unknown parameter"),
            ("view=summary&view=summary", "twice"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        // Broken percent-escapes are taken literally, never a panic.
        assert_eq!(
            parse("view=summary&name=%zz%").unwrap().name.as_deref(),
            Some("%zz%")
        );
        assert_eq!(
            parse("view=summary&name=%e2%82").unwrap().name.as_deref(),
            Some("\u{fffd}")
        );
    }

    #[test]
    fn the_openapi_document_lists_exactly_these_parameters_and_phases() {
        let doc: serde_json::Value =
            serde_saphyr::from_str(crate::api::OPENAPI).expect("valid YAML");
        let params = doc["paths"]["/v1/rollouts"]["get"]["parameters"]
            .as_array()
            .expect("parameters of GET /v1/rollouts");
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(
            names,
            ["view", "name", "phase", "attention", "offset", "limit"]
        );
        for n in &names[1..] {
            let v = if matches!(*n, "offset" | "limit") {
                "1"
            } else {
                ""
            };
            assert!(
                parse(&format!("view=summary&{n}={v}")).is_ok(),
                "{n} is accepted"
            );
        }
        let phases: Vec<&str> = params[2]["schema"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(phases, PHASES);
        assert_eq!(params[5]["schema"]["maximum"], MAX_LIMIT);
        assert_eq!(params[5]["schema"]["default"], DEFAULT_LIMIT);
    }
}
