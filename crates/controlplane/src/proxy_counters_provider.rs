//! The `builtin` analysis provider: judges revisions from Serin's own proxy
//! counters, with no Prometheus.
//!
//! ```yaml
//! provider:
//!   builtin:
//!     metric: error-rate        # error-rate | success-rate | latency | requests
//!     revision: "{{args.canary-hash}}"
//!     service: demo-canary-vs   # optional: only this listener
//!     window: 30s               # default 1m
//!     quantile: 0.95            # latency only (result in milliseconds)
//!     minRequests: 10           # fewer requests in the window: empty result
//! ```
//!
//! The statistical judge (`serin-judge`, see docs/judge.md) compares the
//! canary with a baseline revision since the run's first measurement —
//! each measurement interval's requests with the same interval's, as the
//! canary's share and the machine's load change — with always-valid
//! sequential tests, and decides the measurement itself:
//!
//! ```yaml
//! provider:
//!   builtin:
//!     metric: judge-error-rate  # or judge-latency
//!     revision: "{{args.canary-hash}}"
//!     baseline: "{{args.stable-hash}}"
//! ```
//!
//! Fail → the measurement is Failed; Pass or "not enough evidence yet" →
//! Successful, with the verdict's numbers in the message.
//!
//! `result` is a one-element list like a Prometheus vector (`result[0]`), or
//! empty when the window has fewer than `minRequests` requests, so
//! `len(result) > 0 && result[0] <= 0.01` reads as in Argo and a bare
//! `result[0] <= 0.01` errors instead of passing silently.
//!
//! Requests and errors are those the revision caused (`causes.upstream`,
//! `upstreamErrors` of `/v1/stats`): answers the proxy gave because the
//! client's request was unreadable or no endpoint was ready do not count.
//!
//! The control plane samples the proxy's cumulative `/v1/stats` every
//! [`SAMPLE_EVERY`]; a window is the difference between the newest sample
//! and the newest one at least `window` older (or the oldest kept).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serin_analysis::{Outcome, Provider, ProviderSpec};
use serin_proxy::{RevisionSnapshot, StatsSnapshot};

/// How often the proxy's counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How much history is kept.
const KEEP_MS: u64 = 15 * 60 * 1000;

/// Samples of the proxy's counters, newest last.
#[derive(Default)]
pub struct StatsHistory {
    samples: Mutex<VecDeque<(u64, StatsSnapshot)>>,
}

impl StatsHistory {
    /// Adds a sample taken at `at_ms`.
    pub fn push(&self, at_ms: u64, s: StatsSnapshot) {
        if let Ok(mut q) = self.samples.lock() {
            q.push_back((at_ms, s));
            while q
                .front()
                .is_some_and(|(t, _)| at_ms.saturating_sub(*t) > KEEP_MS)
            {
                q.pop_front();
            }
        }
    }

    /// Requests and failed (5xx) requests of every revision of `app`, in
    /// the newest sample (cumulative).
    pub fn app_totals(&self, app: &str) -> (u64, u64) {
        let Ok(q) = self.samples.lock() else {
            return (0, 0);
        };
        let Some((_, s)) = q.back() else {
            return (0, 0);
        };
        s.revisions
            .iter()
            .filter(|r| r.app == app)
            .fold((0, 0), |(n, f), r| {
                (n + r.requests, f + r.status_classes.c5xx)
            })
    }

    /// The time of the newest sample.
    fn newest_at(&self) -> Option<u64> {
        self.samples.lock().ok()?.back().map(|(t, _)| *t)
    }

    /// Counters of `revision` since `start_ms` (newest − the newest sample
    /// at or before `start_ms`).
    fn since(&self, revision: &str, service: Option<&str>, start_ms: u64) -> Option<Totals> {
        let q = self.samples.lock().ok()?;
        let (_, newest) = q.back()?;
        let (_, base) = q
            .iter()
            .rev()
            .find(|(t, _)| *t <= start_ms)
            .or_else(|| q.front())?;
        Some(Totals::of(newest, revision, service).minus(&Totals::of(base, revision, service)))
    }

    /// Counters of `revision` (optionally one service) over the last
    /// `window_ms`: (newest − baseline), and the window actually covered.
    fn window(
        &self,
        revision: &str,
        service: Option<&str>,
        window_ms: u64,
    ) -> Option<(Totals, u64)> {
        let q = self.samples.lock().ok()?;
        let (t_new, newest) = q.back()?;
        let (t_old, oldest) = q
            .iter()
            .rev()
            .find(|(t, _)| t_new.saturating_sub(*t) >= window_ms)
            .or_else(|| q.front())?;
        let sum = |s: &StatsSnapshot| Totals::of(s, revision, service);
        Some((sum(newest).minus(&sum(oldest)), t_new - t_old))
    }
}

/// Summed counters.
#[derive(Clone, Debug, Default, PartialEq)]
struct Totals {
    requests: u64,
    ok: u64,
    errors: u64,
    /// Cumulative buckets (le, count); `None` = +Inf.
    buckets: Vec<(Option<f64>, u64)>,
}

impl Totals {
    fn of(s: &StatsSnapshot, revision: &str, service: Option<&str>) -> Self {
        let mut t = Totals::default();
        let rows = s
            .revisions
            .iter()
            .filter(|r| r.revision == revision && service.is_none_or(|svc| r.service == svc));
        for r in rows {
            t.add(r);
        }
        t
    }

    /// Only what the revision caused counts: requests the proxy answered
    /// because the client's request was unreadable (a malformed chunked body,
    /// say) or because routing had no endpoint are neither requests nor
    /// errors of the revision, so no client can abort a good canary.
    fn add(&mut self, r: &RevisionSnapshot) {
        self.requests += r.causes.upstream;
        self.ok += r.status_classes.c2xx + r.status_classes.c3xx;
        self.errors += r.upstream_errors;
        for b in &r.latency.buckets {
            match self.buckets.iter_mut().find(|(le, _)| *le == b.le) {
                Some(slot) => slot.1 += b.count,
                None => self.buckets.push((b.le, b.count)),
            }
        }
    }

    fn minus(&self, base: &Totals) -> Totals {
        let bucket = |le: Option<f64>| {
            base.buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0, |(_, c)| *c)
        };
        Totals {
            requests: self.requests.saturating_sub(base.requests),
            ok: self.ok.saturating_sub(base.ok),
            errors: self.errors.saturating_sub(base.errors),
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c.saturating_sub(bucket(*le))))
                .collect(),
        }
    }

    /// `histogram_quantile`: linear interpolation inside the bucket, in
    /// seconds; the +Inf bucket answers with the highest finite bound.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self
            .buckets
            .iter()
            .find(|(le, _)| le.is_none())
            .map(|(_, c)| *c)?;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut finite: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .filter_map(|(le, c)| le.map(|l| (l, *c)))
            .collect();
        finite.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut lo_bound, mut lo_count) = (0.0, 0u64);
        for (le, c) in &finite {
            if *c as f64 >= rank {
                let span = (*c - lo_count) as f64;
                let frac = if span > 0.0 {
                    (rank - lo_count as f64) / span
                } else {
                    1.0
                };
                return Some(lo_bound + (le - lo_bound) * frac);
            }
            (lo_bound, lo_count) = (*le, *c);
        }
        finite.last().map(|(le, _)| *le)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Query {
    metric: String,
    revision: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    window: Option<String>,
    #[serde(default)]
    quantile: Option<f64>,
    #[serde(default)]
    min_requests: Option<u64>,
    #[serde(default)]
    baseline: Option<String>,
}

/// Evaluates one builtin query against the history.
pub fn evaluate(history: &StatsHistory, spec: &serde_json::Value) -> Outcome {
    let q: Query = match serde_json::from_value(spec.clone()) {
        Ok(q) => q,
        Err(e) => return Outcome::Error(format!("builtin provider: {e}")),
    };
    let window_ms = match q.window.as_deref().map(serin_spec::parse_go_duration) {
        None => 60_000,
        Some(Ok(d)) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Some(Err(e)) => return Outcome::Error(format!("builtin provider: window: {e}")),
    };
    let Some((t, covered)) = history.window(&q.revision, q.service.as_deref(), window_ms) else {
        return Outcome::Error("builtin provider: no statistics from the proxy yet".into());
    };
    if covered == 0 {
        return Outcome::Error("builtin provider: not enough samples yet".into());
    }
    let min = q.min_requests.unwrap_or(1);
    tracing::debug!(revision = %q.revision, requests = t.requests, errors = t.errors, covered, "builtin window");
    let value = match q.metric.as_str() {
        "requests" => Some(t.requests as f64),
        _ if t.requests < min => None,
        "error-rate" => Some(t.errors as f64 / t.requests as f64),
        "success-rate" => Some(t.ok as f64 / t.requests as f64),
        "latency" => {
            let quantile = q.quantile.unwrap_or(0.95);
            if !(0.0..=1.0).contains(&quantile) {
                return Outcome::Error(format!(
                    "builtin provider: quantile {quantile} is not within 0..1"
                ));
            }
            t.quantile(quantile).map(|s| s * 1000.0)
        }
        other => {
            return Outcome::Error(format!(
                "builtin provider: unknown metric {other:?} (error-rate, success-rate, latency, requests)"
            ));
        }
    };
    Outcome::Value(serde_json::json!(value.map_or_else(Vec::new, |v| vec![v])))
}

/// A judge and when its comparison started.
enum Judge {
    Errors(serin_judge::ErrorRateJudge),
    Latency(serin_judge::LatencyJudge),
}

/// Judges by query (the query names both revisions, so one judge per
/// canary/baseline pair and metric).
#[derive(Default)]
pub struct Judges {
    by_query: Mutex<std::collections::BTreeMap<String, (u64, Judge)>>,
}

fn cumulative(t: &Totals) -> Vec<u64> {
    let mut out: Vec<u64> = serin_judge::SERIN_BUCKETS
        .iter()
        .map(|b| {
            t.buckets
                .iter()
                .find(|(le, _)| *le == Some(*b))
                .map_or(0, |(_, c)| *c)
        })
        .collect();
    out.push(
        t.buckets
            .iter()
            .find(|(le, _)| le.is_none())
            .map_or(0, |(_, c)| *c),
    );
    out
}

fn judge(history: &StatsHistory, judges: &Judges, spec: &serde_json::Value, q: &Query) -> Outcome {
    let Some(baseline) = q.baseline.as_deref() else {
        return Outcome::Error(format!(
            "builtin provider: {} needs `baseline` (a revision hash)",
            q.metric
        ));
    };
    let Some(now) = history.newest_at() else {
        return Outcome::Error("builtin provider: no statistics from the proxy yet".into());
    };
    let key = spec.to_string();
    let Ok(mut map) = judges.by_query.lock() else {
        return Outcome::Error("builtin provider: judge state unavailable".into());
    };
    if !map.contains_key(&key) {
        let j = if q.metric == "judge-error-rate" {
            serin_judge::ErrorRateJudge::new(serin_judge::ErrorRateParams::default())
                .map(Judge::Errors)
        } else {
            serin_judge::LatencyJudge::for_histogram(
                serin_judge::LatencyParams::default(),
                &serin_judge::SERIN_BUCKETS,
            )
            .map(Judge::Latency)
        };
        match j {
            Ok(j) => {
                map.insert(key.clone(), (now, j));
            }
            Err(e) => return Outcome::Error(format!("builtin provider: judge: {e}")),
        }
    }
    let Some((start, j)) = map.get_mut(&key) else {
        return Outcome::Error("builtin provider: judge state unavailable".into());
    };
    let (Some(c), Some(b)) = (
        history.since(&q.revision, q.service.as_deref(), *start),
        history.since(baseline, q.service.as_deref(), *start),
    ) else {
        return Outcome::Error("builtin provider: no statistics from the proxy yet".into());
    };
    let verdict = match j {
        Judge::Errors(j) => j.observe(b.requests, b.errors, c.requests, c.errors),
        Judge::Latency(j) => j.observe_histogram(&cumulative(&b), &cumulative(&c)),
    };
    match verdict {
        Ok(v) => {
            // The evidence behind every verdict, to tell a false abort from a
            // real one after the fact (`SERIN_LOG=serin_controlplane=debug`).
            tracing::debug!(
                metric = %q.metric, canary = %q.revision, baseline,
                decision = ?v.decision, estimate = v.estimate, statistic = v.statistic,
                lower = v.lower_bound, upper = v.upper_bound, threshold = v.threshold,
                canary_n = v.canary_n, baseline_n = v.baseline_n,
                "judge verdict: {}", v.message
            );
            // The same measurement as the judge over Prometheus gives.
            serin_analysis::providers::judge::verdict_outcome(v)
        }
        Err(e) => Outcome::Error(format!("builtin provider: judge: {e}")),
    }
}

/// The provider the analysis runner calls.
pub struct BuiltinProvider {
    /// Shared with the sampler.
    pub history: Arc<StatsHistory>,
    /// Sequential judges in progress.
    pub judges: Arc<Judges>,
}

impl Provider for BuiltinProvider {
    fn measure<'a>(
        &'a self,
        spec: &'a ProviderSpec,
    ) -> serin_analysis::providers::BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match spec {
                ProviderSpec::Builtin(v) => match serde_json::from_value::<Query>(v.clone()) {
                    Ok(q) if q.metric.starts_with("judge-") => {
                        judge(&self.history, &self.judges, v, &q)
                    }
                    _ => evaluate(&self.history, v),
                },
                other => Outcome::Error(format!(
                    "builtin provider asked to run a {} metric",
                    other.kind()
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serin_proxy::{Bucket, Causes, Latency, ProxyErrors, StatusClasses};

    fn snap(rev: &str, ok: u64, errors: u64, fast: u64, slow: u64) -> StatsSnapshot {
        StatsSnapshot {
            revisions: vec![RevisionSnapshot {
                service: "svc".into(),
                app: "app".into(),
                revision: rev.into(),
                requests: ok + errors,
                status_classes: StatusClasses {
                    c2xx: ok,
                    c5xx: errors,
                    ..Default::default()
                },
                by_status: Default::default(),
                upstream_5xx: errors,
                proxy_errors: ProxyErrors::default(),
                causes: Causes {
                    upstream: ok + errors,
                    ..Default::default()
                },
                upstream_errors: errors,
                connect_failures: 0,
                mirrored: Default::default(),
                latency: Latency {
                    sum_seconds: 0.0,
                    count: fast + slow,
                    buckets: vec![
                        Bucket {
                            le: Some(0.01),
                            count: fast,
                        },
                        Bucket {
                            le: Some(1.0),
                            count: fast + slow,
                        },
                        Bucket {
                            le: None,
                            count: fast + slow,
                        },
                    ],
                },
            }],
        }
    }

    fn value(o: Outcome) -> serde_json::Value {
        match o {
            Outcome::Value(v) => v,
            other => panic!("expected a value, got {other:?}"),
        }
    }

    fn two(canary: (u64, u64), baseline: (u64, u64)) -> StatsSnapshot {
        let mut s = snap("canary", canary.0, canary.1, canary.0 + canary.1, 0);
        s.revisions
            .extend(snap("stable", baseline.0, baseline.1, baseline.0 + baseline.1, 0).revisions);
        s
    }

    fn judge_run(canary_err_per_1000: u64, steps: u64) -> Vec<serin_analysis::Phase> {
        let p = BuiltinProvider {
            history: Arc::new(StatsHistory::default()),
            judges: Arc::default(),
        };
        let spec = ProviderSpec::Builtin(serde_json::json!({
            "metric": "judge-error-rate", "revision": "canary", "baseline": "stable"
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut phases = Vec::new();
        for i in 0..=steps {
            // Cumulative counters: 1,000 requests per arm per step; the
            // baseline fails 10 of them, the canary `canary_err_per_1000`.
            let (n, be, ce) = (1000 * i, 10 * i, canary_err_per_1000 * i);
            p.history.push(i * 1000, two((n - ce, ce), (n - be, be)));
            match rt.block_on(p.measure(&spec)) {
                Outcome::Decided { phase, .. } => phases.push(phase),
                other => panic!("expected a decision, got {other:?}"),
            }
        }
        phases
    }

    #[test]
    fn a_judge_measurement_carries_its_bounds_and_threshold_for_the_chart() {
        let p = BuiltinProvider {
            history: Arc::new(StatsHistory::default()),
            judges: Arc::default(),
        };
        let spec = ProviderSpec::Builtin(serde_json::json!({
            "metric": "judge-error-rate", "revision": "canary", "baseline": "stable"
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        p.history.push(0, two((0, 0), (0, 0)));
        rt.block_on(p.measure(&spec));
        p.history.push(1000, two((4000, 120), (4000, 40)));
        let Outcome::Decided { value: Some(v), .. } = rt.block_on(p.measure(&spec)) else {
            panic!("expected a decision with a value");
        };
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert!(
            f("lowerBound") <= f("estimate") && f("estimate") <= f("upperBound"),
            "{v}"
        );
        assert!(f("threshold") > 1.0, "1 + δ for the error-rate ratio: {v}");
        assert_eq!(
            (v["canary"].as_u64(), v["baseline"].as_u64()),
            (Some(4120), Some(4040))
        );
    }

    #[test]
    fn the_judge_fails_a_worse_canary_and_never_an_equal_one() {
        let bad = judge_run(30, 20); // 3 % vs 1 %
        assert_eq!(bad.last(), Some(&serin_analysis::Phase::Failed), "{bad:?}");
        assert_eq!(
            bad.first(),
            Some(&serin_analysis::Phase::Successful),
            "no data yet is not a failure"
        );
        let same = judge_run(10, 20);
        assert!(
            same.iter().all(|p| *p == serin_analysis::Phase::Successful),
            "{same:?}"
        );
    }

    #[test]
    fn error_rate_is_over_the_window_only() {
        let h = StatsHistory::default();
        h.push(0, snap("c", 0, 0, 0, 0));
        h.push(60_000, snap("c", 1000, 0, 1000, 0)); // a healthy minute
        h.push(90_000, snap("c", 1050, 50, 1100, 0)); // 50 % errors in the last 30 s
        let v = value(evaluate(
            &h,
            &serde_json::json!({"metric": "error-rate", "revision": "c", "window": "30s"}),
        ));
        assert_eq!(v, serde_json::json!([0.5]));
        let all = value(evaluate(
            &h,
            &serde_json::json!({"metric": "error-rate", "revision": "c", "window": "2m"}),
        ));
        assert_eq!(all, serde_json::json!([50.0 / 1100.0]));
    }

    #[test]
    fn latency_quantile_interpolates_like_prometheus() {
        let h = StatsHistory::default();
        h.push(0, snap("c", 0, 0, 0, 0));
        h.push(10_000, snap("c", 100, 0, 50, 50));
        // p95 of 50 fast (≤10 ms) and 50 slow (≤1 s): inside the second bucket.
        let v = value(evaluate(
            &h,
            &serde_json::json!({"metric": "latency", "revision": "c", "window": "10s", "quantile": 0.95}),
        ));
        let ms = v[0].as_f64().unwrap();
        assert!((ms - (10.0 + 990.0 * 0.9)).abs() < 1e-6, "{ms}");
    }

    #[test]
    fn too_few_requests_give_an_empty_result_and_bad_queries_an_error() {
        let h = StatsHistory::default();
        h.push(0, snap("c", 0, 0, 0, 0));
        h.push(10_000, snap("c", 3, 0, 3, 0));
        let v = value(evaluate(
            &h,
            &serde_json::json!({"metric": "success-rate", "revision": "c", "minRequests": 10}),
        ));
        assert_eq!(v, serde_json::json!([]));
        assert!(matches!(
            evaluate(&h, &serde_json::json!({"metric": "p99", "revision": "c"})),
            Outcome::Error(_)
        ));
        assert!(matches!(
            evaluate(&h, &serde_json::json!({"metric": "requests"})),
            Outcome::Error(_)
        ));
        assert!(matches!(
            evaluate(
                &StatsHistory::default(),
                &serde_json::json!({"metric": "requests", "revision": "c"})
            ),
            Outcome::Error(_)
        ));
    }
}
