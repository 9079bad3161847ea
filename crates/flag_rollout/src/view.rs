//! A rollout's status as people read it — the fields `serin get
//! flagrollout` prints, shared by `serin up`'s API and a cluster
//! FlagRollout's `/status`, so both show the same.

use serde_json::{Map, Value, json};
use serin_analysis::Phase as AnalysisPhase;

use crate::machine::{Phase, Status};

/// `phase`, `currentStep` (1-based; `total` once completed), `percentage`,
/// `message`, `startedAt`/`updatedAt` (RFC 3339 and `…Ms`) and
/// `stepResults` (per step: percentage, state Pending/Running/Passed/
/// Failed/Stopped, setAt, passedAt, analysis) of `status`, for a spec of
/// `total` steps.
pub fn view(status: &Status, total: usize) -> Map<String, Value> {
    let st = status;
    let current = if st.phase == Phase::Completed {
        total
    } else {
        (st.current_step + 1).min(total)
    };
    let results: Vec<Value> = st
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let state = match (&s.analysis, s.set_ms, s.passed_ms) {
                (_, _, Some(_)) => "Passed",
                (Some(a), _, None)
                    if a.phase.completed() && a.phase != AnalysisPhase::Successful =>
                {
                    "Failed"
                }
                (_, Some(_), None) if i == st.current_step && !st.phase.is_final() => "Running",
                (_, Some(_), None) => "Stopped",
                (_, None, None) => "Pending",
            };
            json!({
                "step": i + 1,
                "percentage": s.percentage,
                "state": state,
                "setAt": s.set_ms.map(serin_clock::format_rfc3339_millis),
                "passedAt": s.passed_ms.map(serin_clock::format_rfc3339_millis),
                "analysis": s.analysis,
            })
        })
        .collect();
    let mut o = Map::new();
    o.insert("phase".into(), json!(st.phase));
    o.insert("currentStep".into(), json!(current));
    o.insert("percentage".into(), json!(st.percentage));
    o.insert("message".into(), json!(st.message));
    o.insert(
        "startedAt".into(),
        json!(serin_clock::format_rfc3339_millis(st.started_ms)),
    );
    o.insert(
        "updatedAt".into(),
        json!(serin_clock::format_rfc3339_millis(st.updated_ms)),
    );
    o.insert("startedAtMs".into(), json!(st.started_ms));
    o.insert("updatedAtMs".into(), json!(st.updated_ms));
    o.insert("stepResults".into(), json!(results));
    o
}
