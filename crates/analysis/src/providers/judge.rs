//! The sequential canary judge (`serin-judge`, docs/judge.md) over
//! Prometheus data: Argo's metric-plugin slot `provider.plugin`, under the
//! name [`PLUGIN`], so a template using it is accepted by Argo's CRD
//! (`plugin` keeps unknown fields) and runs the same under `serin up` and
//! `serin controller`.
//!
//! ```yaml
//! provider:
//!   plugin:
//!     serin.dev/judge:
//!       address: http://prometheus.monitoring:9090
//!       judge: error-rate              # or latency
//!       canary:
//!         requests: http_requests_total{rollouts_pod_template_hash="{{args.canary-hash}}"}
//!         errors: http_requests_total{rollouts_pod_template_hash="{{args.canary-hash}}",code=~"5.."}
//!       baseline:
//!         requests: http_requests_total{rollouts_pod_template_hash="{{args.stable-hash}}"}
//!         errors: http_requests_total{rollouts_pod_template_hash="{{args.stable-hash}}",code=~"5.."}
//!       # latency: `buckets: http_request_duration_seconds_bucket{…}` per arm
//!       params: {alpha: 0.01, relativeMargin: 0.25}   # optional, the judge's parameters
//!       timeout: 30                    # optional, seconds per measurement
//!       headers: [{key: Authorization, value: Bearer …}]   # optional
//! ```
//!
//! Each query is a **series selector** (a metric name and/or `{label
//! matchers}`), not an expression: the provider reads every matching
//! series' raw samples since the previous measurement (`selector[Δ]`, one
//! evaluation time for all of a measurement's queries, so both arms cover the
//! same period) and sums the series' increments itself.
//!
//! Why raw samples and not `increase(…[Δ])` or `sum(…)` values:
//! - a counter that drops between two samples is a restart of that pod: the
//!   increment is the new value (Prometheus' own reset rule), seen per
//!   series and per scrape — a restart between two measurements whose pod
//!   then outgrew its old total is still seen, which comparing the values at
//!   measurement times (or a `sum` over pods) cannot tell from growth;
//! - the increments are whole counts: `increase()` extrapolates to the
//!   window's edges (fractional errors, which the error-rate judge's exact
//!   binomial test does not take) and loses what happened between the last
//!   sample before the window and the first one inside it;
//! - a series that appears after the run's first measurement (a new pod, or
//!   the first 5xx of a `code="500"` series) counts from zero, where
//!   `increase()` drops its first sample.
//!
//! The first measurement only records where every series stands (the
//! comparison starts there, as the builtin judge's does); every later one
//! feeds the judge that interval's increments for both arms, so it compares
//! each interval's canary with the same interval's baseline. The judge's
//! state lives as long as the run (a fresh [`JudgeProvider`] per run, see
//! [`super::Providers::for_run`]), keyed by metric name. Fail → the
//! measurement is Failed; Pass or "not enough evidence yet" → Successful,
//! with the verdict's numbers in the message and the value the builtin judge
//! gives (estimate, bounds, threshold), so the dashboard draws it alike.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serin_judge::{ErrorRateJudge, ErrorRateParams, LatencyJudge, LatencyParams, Verdict};

use super::http::{HttpClient, encode, snippet};
use super::{BoxFuture, Provider};
use crate::machine::{Outcome, Phase, ProviderSpec};

/// The plugin name under `provider.plugin`.
pub const PLUGIN: &str = serin_spec::SERIN_JUDGE_PLUGIN;

/// Samples read back at every measurement besides the time since the
/// previous one: a scrape that started before the previous measurement
/// but was stored after it is still counted (once: per series, only
/// samples newer than the last one seen count).
const LATE_SAMPLE_MARGIN_MS: u64 = 60_000;
/// How far back the first measurement looks for where each series stands
/// (Prometheus' own lookback).
const FIRST_LOOKBACK_MS: u64 = 5 * 60_000;
/// Default per-measurement timeout (as Argo's prometheus provider).
const DEFAULT_TIMEOUT_S: u64 = 30;

/// Which judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JudgeKind {
    /// Requests and errors: [`ErrorRateJudge`].
    #[serde(rename = "error-rate")]
    ErrorRate,
    /// A latency histogram's `_bucket` series: [`LatencyJudge`].
    #[serde(rename = "latency")]
    Latency,
}

/// One arm's series selectors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmQueries {
    /// Request counters (error-rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// Error counters, a subset of the requests (error-rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// Cumulative histogram buckets with an `le` label (latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<String>,
}

/// The `serin.dev/judge` plugin block, checked by [`parse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeSpec {
    /// Prometheus' URL.
    pub address: String,
    /// Which judge.
    pub judge: JudgeKind,
    /// The canary's selectors.
    pub canary: ArmQueries,
    /// The baseline's selectors.
    pub baseline: ArmQueries,
    /// The judge's parameters as written (camelCase keys of
    /// [`ErrorRateParams`] or [`LatencyParams`]); empty = the defaults.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Seconds one measurement may take.
    pub timeout_s: u64,
}

/// A judge metric of a run: its name (the judge's state is per metric) and
/// its block, arguments substituted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeTask {
    /// The metric's name.
    pub metric: String,
    /// The plugin block.
    pub spec: JudgeSpec,
}

/// What is wrong with a judge block: where (a path below the block, e.g.
/// `canary.errors`; empty = the block itself) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    /// Path below the `serin.dev/judge` block.
    pub path: String,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{PLUGIN}: {}", self.message)
        } else {
            write!(f, "{PLUGIN}.{}: {}", self.path, self.message)
        }
    }
}

fn bad(path: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Whether `q` is a PromQL series selector: `name`, `name{…}` or `{…}`.
/// (Matchers are not parsed here: Prometheus reports a bad one, and at lint
/// time they may still hold `{{args.…}}`.)
fn is_selector(q: &str) -> bool {
    let q = q.trim();
    let name_len = q
        .char_indices()
        .find(|(i, c)| {
            !(c.is_ascii_alphabetic() || *c == '_' || *c == ':' || (*i > 0 && c.is_ascii_digit()))
        })
        .map_or(q.len(), |(i, _)| i);
    let rest = q[name_len..].trim_start();
    if rest.is_empty() {
        return name_len > 0;
    }
    rest.starts_with('{') && rest.ends_with('}')
}

/// Checks a `serin.dev/judge` block and reads it. Every problem is reported
/// with its path, so lint can point at the field.
pub fn parse(v: &serde_json::Value) -> Result<JudgeSpec, SpecError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("", "must be a mapping (address, judge, canary, baseline)"))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "address" | "judge" | "canary" | "baseline" | "params" | "timeout" | "headers"
        ) {
            return Err(bad(
                k,
                "unknown field (address, judge, canary, baseline, params, timeout, headers)",
            ));
        }
    }
    let address = match obj.get("address") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(_) => {
            return Err(bad(
                "address",
                "must be Prometheus' URL, e.g. http://prometheus:9090",
            ));
        }
        None => return Err(bad("", "`address` (Prometheus' URL) is missing")),
    };
    let judge = match obj.get("judge").and_then(|j| j.as_str()) {
        Some("error-rate") => JudgeKind::ErrorRate,
        Some("latency") => JudgeKind::Latency,
        Some(other) => {
            return Err(bad(
                "judge",
                format!("unknown judge {other:?}: `error-rate` or `latency`"),
            ));
        }
        None if obj.contains_key("judge") => {
            return Err(bad("judge", "must be `error-rate` or `latency`"));
        }
        None => return Err(bad("", "`judge` (error-rate or latency) is missing")),
    };
    let arm = |name: &str| -> Result<ArmQueries, SpecError> {
        let a = obj
            .get(name)
            .ok_or_else(|| bad("", format!("`{name}` (its series selectors) is missing")))?;
        let a = a.as_object().ok_or_else(|| {
            bad(
                name,
                match judge {
                    JudgeKind::ErrorRate => "must be a mapping with `requests` and `errors`",
                    JudgeKind::Latency => "must be a mapping with `buckets`",
                },
            )
        })?;
        let (wanted, unwanted): (&[&str], &[&str]) = match judge {
            JudgeKind::ErrorRate => (&["requests", "errors"], &["buckets"]),
            JudgeKind::Latency => (&["buckets"], &["requests", "errors"]),
        };
        let mut out = ArmQueries::default();
        for k in a.keys() {
            let path = format!("{name}.{k}");
            if unwanted.contains(&k.as_str()) {
                return Err(bad(
                    &path,
                    format!(
                        "the {} judge takes {}",
                        if judge == JudgeKind::ErrorRate {
                            "error-rate"
                        } else {
                            "latency"
                        },
                        wanted.join(" and ")
                    ),
                ));
            }
            if !wanted.contains(&k.as_str()) {
                return Err(bad(&path, format!("unknown field ({})", wanted.join(", "))));
            }
        }
        for k in wanted {
            let path = format!("{name}.{k}");
            let q = match a.get(*k) {
                Some(serde_json::Value::String(q)) if !q.trim().is_empty() => q.trim().to_string(),
                Some(_) => return Err(bad(&path, "must be a PromQL series selector")),
                None => return Err(bad(name, format!("`{k}` is missing"))),
            };
            if !is_selector(&q) {
                return Err(bad(
                    &path,
                    format!(
                        "`{q}` is not a series selector: give the counters themselves, e.g. \
                         `http_requests_total{{pod_template_hash=\"{{{{args.canary-hash}}}}\"}}` — \
                         the judge reads each series' samples and sums their increments itself \
                         (no rate(), increase() or sum())"
                    ),
                ));
            }
            match *k {
                "requests" => out.requests = Some(q),
                "errors" => out.errors = Some(q),
                _ => out.buckets = Some(q),
            }
        }
        Ok(out)
    };
    let canary = arm("canary")?;
    let baseline = arm("baseline")?;
    let params = match obj.get("params") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad("params", "must be a mapping of the judge's parameters")),
    };
    check_params(judge, &params)?;
    let timeout_s = match obj.get("timeout") {
        None => DEFAULT_TIMEOUT_S,
        Some(t) => t
            .as_u64()
            .filter(|t| *t > 0)
            .ok_or_else(|| bad("timeout", "must be a whole number of seconds > 0"))?,
    };
    let mut headers = Vec::new();
    if let Some(h) = obj.get("headers") {
        let list = h
            .as_array()
            .ok_or_else(|| bad("headers", "must be a list of {key, value}"))?;
        for (i, e) in list.iter().enumerate() {
            let (Some(k), Some(v)) = (
                e.get("key").and_then(|k| k.as_str()),
                e.get("value").and_then(|v| v.as_str()),
            ) else {
                return Err(bad(&format!("headers[{i}]"), "needs `key` and `value`"));
            };
            headers.push((k.to_string(), v.to_string()));
        }
    }
    Ok(JudgeSpec {
        address,
        judge,
        canary,
        baseline,
        params,
        headers,
        timeout_s,
    })
}

/// Every key must be one of the judge's parameters, and together they
/// must make a valid judge (alpha within 0..1, …).
fn check_params(
    judge: JudgeKind,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), SpecError> {
    let known = match judge {
        JudgeKind::ErrorRate => serde_json::to_value(ErrorRateParams::default()),
        JudgeKind::Latency => serde_json::to_value(LatencyParams::default()),
    }
    .ok()
    .and_then(|v| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()))
    .unwrap_or_default();
    for (k, v) in params {
        if !known.contains(k) {
            return Err(bad(
                &format!("params.{k}"),
                format!("not a parameter of this judge ({})", known.join(", ")),
            ));
        }
        if !v.is_number() {
            return Err(bad(&format!("params.{k}"), "must be a number"));
        }
    }
    new_judge(judge, params, &[]).map(|_| ()).map_err(|e| {
        // "invalid parameter alpha: …" → at params.alpha when it was given.
        let at = params
            .keys()
            .find(|k| e.contains(&format!(" {k}:")))
            .map_or("params".to_string(), |k| format!("params.{k}"));
        bad(&at, e)
    })
}

enum Judge {
    Errors(ErrorRateJudge),
    Latency(LatencyJudge),
}

fn new_judge(
    kind: JudgeKind,
    params: &serde_json::Map<String, serde_json::Value>,
    bounds: &[f64],
) -> Result<Judge, String> {
    let p = serde_json::Value::Object(params.clone());
    match kind {
        JudgeKind::ErrorRate => {
            let p: ErrorRateParams = serde_json::from_value(p).map_err(|e| e.to_string())?;
            ErrorRateJudge::new(p)
                .map(Judge::Errors)
                .map_err(|e| e.to_string())
        }
        JudgeKind::Latency => {
            let p: LatencyParams = serde_json::from_value(p).map_err(|e| e.to_string())?;
            // Validated with a stand-in bound until the real ones are known.
            let b = if bounds.is_empty() {
                &[1.0][..]
            } else {
                bounds
            };
            LatencyJudge::for_histogram(p, b)
                .map(Judge::Latency)
                .map_err(|e| e.to_string())
        }
    }
}

/// Where one series stood: the newest sample seen (time in seconds, value).
type Seen = HashMap<String, (f64, f64)>;

/// One judge metric's state within a run.
struct State {
    /// Evaluation time (ms) of the previous measurement.
    prev_ms: u64,
    /// Per selector (in [`selectors`] order), per series.
    seen: Vec<Seen>,
    /// Running totals per arm: (requests, errors) or per-bucket counts.
    baseline: Totals,
    canary: Totals,
    /// Created once the histogram's bounds are known (latency).
    judge: Option<Judge>,
    bounds: Vec<f64>,
}

#[derive(Clone, Default)]
struct Totals {
    requests: u64,
    errors: u64,
    /// Cumulative counts per bound of `State::bounds`, then +Inf.
    buckets: Vec<u64>,
}

/// The selectors a measurement queries, in a fixed order: canary then
/// baseline; requests then errors, or buckets.
fn selectors(s: &JudgeSpec) -> Vec<&str> {
    let mut out = Vec::new();
    for arm in [&s.canary, &s.baseline] {
        for q in [&arm.requests, &arm.errors, &arm.buckets]
            .into_iter()
            .flatten()
        {
            out.push(q.as_str());
        }
    }
    out
}

/// One series of a range query: its labels and samples (seconds, value).
struct Series {
    labels: BTreeMap<String, String>,
    samples: Vec<(f64, f64)>,
}

/// The judge provider: Prometheus queries plus the run's judges.
pub struct JudgeProvider {
    client: HttpClient,
    states: Mutex<HashMap<String, State>>,
}

impl JudgeProvider {
    pub(crate) fn new(client: HttpClient) -> Self {
        JudgeProvider {
            client,
            states: Mutex::default(),
        }
    }

    /// The same client with no judge state: one per run.
    pub(crate) fn fresh(&self) -> Self {
        JudgeProvider::new(self.client.clone())
    }

    async fn range(
        &self,
        s: &JudgeSpec,
        selector: &str,
        window_ms: u64,
        at_ms: u64,
    ) -> Result<Vec<Series>, String> {
        let query = format!("{selector}[{window_ms}ms]");
        let url = format!(
            "{}/api/v1/query?query={}&time={:.3}",
            s.address.trim_end_matches('/'),
            encode(&query),
            at_ms as f64 / 1000.0
        );
        let resp = self.client.request("GET", &url, &s.headers, None).await?;
        let v: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
            format!(
                "prometheus returned HTTP {} with a body that is not its API JSON ({e}): {}",
                resp.status,
                snippet(&resp.body, 200)
            )
        })?;
        if v.get("status").and_then(|s| s.as_str()) != Some("success") {
            return Err(format!(
                "prometheus query `{query}` failed (HTTP {}): {}: {}",
                resp.status,
                v.get("errorType").and_then(|e| e.as_str()).unwrap_or(""),
                v.get("error").and_then(|e| e.as_str()).unwrap_or("")
            ));
        }
        let data = v.get("data").ok_or("prometheus response has no data")?;
        if data.get("resultType").and_then(|t| t.as_str()) != Some("matrix") {
            return Err(format!("prometheus answered `{query}` with no matrix"));
        }
        let list = data
            .get("result")
            .and_then(|r| r.as_array())
            .ok_or("matrix result is not a list")?;
        list.iter()
            .map(|s| -> Result<Series, String> {
                let labels: BTreeMap<String, String> = s
                    .get("metric")
                    .and_then(|m| serde_json::from_value(m.clone()).ok())
                    .unwrap_or_default();
                let samples = s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or("matrix series without values")?
                    .iter()
                    .map(|p| {
                        let t = p.get(0).and_then(|t| t.as_f64());
                        let v = p
                            .get(1)
                            .and_then(|v| v.as_str())
                            .and_then(|v| v.parse::<f64>().ok());
                        match (t, v) {
                            (Some(t), Some(v)) => Ok((t, v)),
                            _ => Err(format!("malformed sample {p}")),
                        }
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok(Series { labels, samples })
            })
            .collect()
    }

    async fn measure_judge(&self, task: &JudgeTask) -> Outcome {
        let s = &task.spec;
        let now = serin_clock::now_ms();
        let prev = match self.states.lock() {
            Ok(m) => m.get(&task.metric).map(|st| st.prev_ms),
            Err(_) => return Outcome::Error("judge state unavailable".into()),
        };
        let window = prev.map_or(FIRST_LOOKBACK_MS, |p| {
            now.saturating_sub(p) + LATE_SAMPLE_MARGIN_MS
        });
        let sels = selectors(s);
        let mut results = Vec::with_capacity(sels.len());
        for q in &sels {
            match self.range(s, q, window, now).await {
                Ok(r) => results.push(r),
                Err(e) => return Outcome::Error(format!("{PLUGIN}: {e}")),
            }
        }
        // Requests and buckets must match something: a selector with a typo
        // would otherwise pass the canary for want of evidence. (No error
        // series is fine: no errors yet.)
        for (q, r) in sels.iter().zip(&results) {
            let is_errors = [&s.canary.errors, &s.baseline.errors]
                .iter()
                .any(|e| e.as_deref() == Some(*q));
            if r.is_empty() && !is_errors {
                return Outcome::Error(format!(
                    "{PLUGIN}: `{q}` matched no series in Prometheus (in the last {:.0}s)",
                    window as f64 / 1000.0
                ));
            }
        }
        let Ok(mut map) = self.states.lock() else {
            return Outcome::Error("judge state unavailable".into());
        };
        let first = !map.contains_key(&task.metric);
        let mut st = match map.remove(&task.metric) {
            Some(st) => st,
            None => State {
                prev_ms: now,
                seen: vec![Seen::new(); sels.len()],
                baseline: Totals::default(),
                canary: Totals::default(),
                judge: None,
                bounds: Vec::new(),
            },
        };
        // Work on copies; the state is kept only if the judge took them, so
        // a failed measurement is retried over the same samples.
        let mut seen = st.seen.clone();
        let mut incs: Vec<Vec<(Option<f64>, f64)>> = Vec::new();
        for (i, series) in results.iter().enumerate() {
            incs.push(increments(series, &mut seen[i], first));
        }
        let outcome = match s.judge {
            JudgeKind::ErrorRate => {
                let sum = |i: usize| incs[i].iter().map(|(_, v)| v).sum::<f64>().round() as u64;
                let (cr, ce, br, be) = (sum(0), sum(1), sum(2), sum(3));
                let (c, b) = (
                    Totals {
                        requests: st.canary.requests + cr,
                        errors: st.canary.errors + ce,
                        ..Default::default()
                    },
                    Totals {
                        requests: st.baseline.requests + br,
                        errors: st.baseline.errors + be,
                        ..Default::default()
                    },
                );
                if st.judge.is_none() {
                    match new_judge(s.judge, &s.params, &[]) {
                        Ok(j) => st.judge = Some(j),
                        Err(e) => {
                            map.insert(task.metric.clone(), st);
                            return Outcome::Error(format!("{PLUGIN}: {e}"));
                        }
                    }
                }
                let r = match &mut st.judge {
                    Some(Judge::Errors(j)) => j
                        .observe(b.requests, b.errors, c.requests, c.errors)
                        .map_err(|e| e.to_string()),
                    _ => Err("judge state of another kind".into()),
                };
                r.map(|v| (v, c, b))
            }
            JudgeKind::Latency => latency(&mut st, s, &incs),
        };
        match outcome {
            Ok((v, c, b)) => {
                st.canary = c;
                st.baseline = b;
                st.seen = seen;
                st.prev_ms = now;
                tracing::debug!(
                    metric = %task.metric, decision = ?v.decision, estimate = v.estimate,
                    lower = v.lower_bound, upper = v.upper_bound, threshold = v.threshold,
                    canary_n = v.canary_n, baseline_n = v.baseline_n,
                    "judge verdict: {}", v.message
                );
                map.insert(task.metric.clone(), st);
                verdict_outcome(v)
            }
            Err(e) => {
                map.insert(task.metric.clone(), st);
                Outcome::Error(format!("{PLUGIN}: {e}"))
            }
        }
    }
}

/// Feeds the latency judge this interval's bucket increments (`incs`:
/// canary's, then baseline's); creates it at the first measurement, with
/// the `le` bounds seen then.
fn latency(
    st: &mut State,
    s: &JudgeSpec,
    incs: &[Vec<(Option<f64>, f64)>],
) -> Result<(Verdict, Totals, Totals), String> {
    if st.judge.is_none() {
        // The bounds are the `le`s the first measurement saw, both arms.
        let mut bounds: Vec<f64> = Vec::new();
        for (le, _) in incs.iter().flatten() {
            let Some(le) = le else {
                return Err("a bucket series has no `le` label".into());
            };
            if le.is_finite() && !bounds.contains(le) {
                bounds.push(*le);
            }
        }
        bounds.sort_by(f64::total_cmp);
        st.judge = Some(new_judge(s.judge, &s.params, &bounds)?);
        st.bounds = bounds;
        st.canary.buckets = vec![0; st.bounds.len() + 1];
        st.baseline.buckets = vec![0; st.bounds.len() + 1];
    }
    let mut arms = [st.canary.clone(), st.baseline.clone()];
    for (arm, inc) in arms.iter_mut().zip(incs) {
        let mut add = vec![0f64; st.bounds.len() + 1];
        for (le, v) in inc {
            let Some(le) = le else {
                return Err("a bucket series has no `le` label".into());
            };
            let slot = if le.is_infinite() {
                st.bounds.len()
            } else {
                st.bounds.iter().position(|b| b == le).ok_or_else(|| {
                    format!(
                        "bucket le=\"{le}\" is not among the bounds the run started with ({:?})",
                        st.bounds
                    )
                })?
            };
            add[slot] += v;
        }
        for (t, a) in arm.buckets.iter_mut().zip(add) {
            *t += a.round() as u64;
        }
    }
    let [c, b] = arms;
    let v = match &mut st.judge {
        Some(Judge::Latency(j)) => j
            .observe_histogram(&b.buckets, &c.buckets)
            .map_err(|e| e.to_string())?,
        _ => return Err("judge state of another kind".into()),
    };
    Ok((v, c, b))
}

/// Each series' increment since the last sample seen (`seen`, updated), by
/// its `le` label (parsed; `None` when absent). A drop is a restart: the
/// new value is the increment. At the first measurement (`first`) nothing
/// counts yet: every series' newest sample is where it stands. A series
/// first seen later counts from zero.
fn increments(series: &[Series], seen: &mut Seen, first: bool) -> Vec<(Option<f64>, f64)> {
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let key = serde_json::to_string(&s.labels).unwrap_or_default();
        let le = s.labels.get("le").and_then(|l| match l.as_str() {
            "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
            other => other.parse::<f64>().ok(),
        });
        let mut last = seen.get(&key).copied();
        if first && last.is_none() {
            if let Some(newest) = s.samples.iter().rev().find(|(_, v)| v.is_finite()) {
                seen.insert(key, *newest);
            }
            out.push((le, 0.0));
            continue;
        }
        let mut inc = 0.0;
        for &(t, v) in &s.samples {
            if !v.is_finite() || v < 0.0 || last.is_some_and(|(lt, _)| t <= lt) {
                continue;
            }
            let before = last.map_or(0.0, |(_, lv)| lv);
            inc += if v >= before { v - before } else { v };
            last = Some((t, v));
        }
        if let Some(l) = last {
            seen.insert(key, l);
        }
        out.push((le, inc));
    }
    out
}

/// A judge's verdict as a measurement: Fail → Failed, anything else →
/// Successful; the value carries the estimate, bounds and threshold (a
/// chart draws the sequential test from them; a non-finite bound is JSON
/// null). Shared with the builtin judge over Serin's proxy counters.
pub fn verdict_outcome(v: Verdict) -> Outcome {
    Outcome::Decided {
        phase: if v.decision == serin_judge::Decision::Fail {
            Phase::Failed
        } else {
            Phase::Successful
        },
        value: Some(serde_json::json!({
            "decision": v.decision, "estimate": v.estimate,
            "lowerBound": v.lower_bound, "upperBound": v.upper_bound,
            "threshold": v.threshold, "statistic": v.statistic,
            "canary": v.canary_n, "baseline": v.baseline_n,
        })),
        message: v.message,
    }
}

impl Provider for JudgeProvider {
    fn measure<'a>(&'a self, spec: &'a ProviderSpec) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match spec {
                ProviderSpec::Judge(task) => self.measure_judge(task).await,
                other => Outcome::Error(format!(
                    "the judge provider was given a {} metric",
                    other.kind()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block() -> serde_json::Value {
        json!({"address": "http://p:9090", "judge": "error-rate",
            "canary": {"requests": "req{h=\"c\"}", "errors": "req{h=\"c\",code=~\"5..\"}"},
            "baseline": {"requests": "req{h=\"b\"}", "errors": "req{h=\"b\",code=~\"5..\"}"}})
    }

    #[test]
    fn a_good_block_parses_and_each_mistake_is_reported_where_it_is() {
        let s = parse(&block()).expect("valid");
        assert_eq!(s.judge, JudgeKind::ErrorRate);
        assert_eq!(s.timeout_s, DEFAULT_TIMEOUT_S);
        let at = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut b = block();
            f(&mut b);
            parse(&b).map(|_| ()).unwrap_err().path
        };
        assert_eq!(at(&|b| b["judge"] = json!("p99")), "judge");
        assert_eq!(
            at(&|b| b["canary"]["errors"] = json!("sum(rate(req[1m]))")),
            "canary.errors"
        );
        assert_eq!(
            at(&|b| b["baseline"]["buckets"] = json!("x_bucket")),
            "baseline.buckets"
        );
        assert_eq!(
            at(&|b| {
                b["baseline"].as_object_mut().map(|m| m.remove("errors"));
            }),
            "baseline"
        );
        assert_eq!(at(&|b| b["params"] = json!({"alfa": 0.1})), "params.alfa");
        assert_eq!(at(&|b| b["params"] = json!({"alpha": 2.0})), "params.alpha");
        assert_eq!(at(&|b| b["timeout"] = json!(0)), "timeout");
        assert_eq!(at(&|b| b["extra"] = json!(1)), "extra");
        assert_eq!(
            at(&|b| {
                b.as_object_mut().map(|m| m.remove("address"));
            }),
            ""
        );
    }

    #[test]
    fn a_run_takes_the_judge_plugin_and_refuses_any_other() {
        let template = |plugin: serde_json::Value| -> serin_spec::AnalysisTemplate {
            serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "t"},
                "spec": {"metrics": [{"name": "m", "interval": "1s", "count": 3,
                    "provider": {"plugin": plugin}}]}
            }))
            .expect("template")
        };
        let inputs = crate::RunInputs::default();
        let named = |v: serde_json::Value| {
            let mut m = serde_json::Map::new();
            m.insert(PLUGIN.to_string(), v);
            serde_json::Value::Object(m)
        };
        let mut run = crate::AnalysisRun::new("r", &[template(named(block()))], &inputs)
            .expect("a judge metric builds");
        let task = run.next_due(0).pop().expect("due");
        assert!(
            matches!(&task.provider, ProviderSpec::Judge(j) if j.metric == "m"),
            "{task:?}"
        );
        let err = crate::AnalysisRun::new(
            "r",
            &[template(json!({"argoproj-labs/sample": {}}))],
            &inputs,
        )
        .expect_err("another plugin");
        assert!(err.to_string().contains("not supported"), "{err}");
        let mut broken = block();
        broken["judge"] = json!("p99");
        let err = crate::AnalysisRun::new("r", &[template(named(broken))], &inputs)
            .expect_err("a bad block");
        assert!(err.to_string().contains("serin.dev/judge.judge"), "{err}");
    }

    #[test]
    fn selectors_are_told_from_expressions() {
        for ok in [
            "up",
            "a_b:c{x=\"1\"}",
            "{__name__=~\"x.*\"}",
            "m { a = \"{{args.h}}\" }",
        ] {
            assert!(is_selector(ok), "{ok}");
        }
        for no in [
            "rate(x[1m])",
            "sum(x)",
            "x[1m]",
            "x + y",
            "",
            "1x",
            "x{a=\"b\"} > 0",
        ] {
            assert!(!is_selector(no), "{no}");
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn increments_count_a_restart_new_series_and_late_samples_once() {
        let mut seen = Seen::new();
        let a = series(&[("pod", "a")], &[(1.0, 5.0), (2.0, 10.0)]);
        assert_eq!(increments(&[a], &mut seen, true), vec![(None, 0.0)]);
        // Pod a: 10 → 14 → restart → 3 → 20 (outgrew its old total); a new
        // pod b from zero; the sample at t=2 is read again and not counted.
        let a = series(
            &[("pod", "a")],
            &[(2.0, 10.0), (3.0, 14.0), (4.0, 3.0), (5.0, 20.0)],
        );
        let b = series(&[("pod", "b"), ("le", "+Inf")], &[(4.0, 2.0), (5.0, 6.0)]);
        let got = increments(&[a, b], &mut seen, false);
        assert_eq!(
            got,
            vec![(None, 4.0 + 3.0 + 17.0), (Some(f64::INFINITY), 6.0)]
        );
        // Nothing new: nothing counted.
        let a = series(&[("pod", "a")], &[(4.0, 3.0), (5.0, 20.0)]);
        assert_eq!(increments(&[a], &mut seen, false), vec![(None, 0.0)]);
    }
}
