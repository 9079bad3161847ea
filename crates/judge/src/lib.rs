//! # serin-judge — the statistical canary judge
//!
//! Compares a canary revision with its baseline (the stable revision or a
//! fresh baseline) on one metric and answers, at every check, **Pass**,
//! **Fail** or **Continue**. Both judges are *always valid*: the probability
//! that an A/A comparison (canary no worse than the threshold) ever ends in
//! `Fail` is at most `alpha`, however often the judge is consulted — so a
//! control plane can check at every analysis interval without inflating false
//! aborts.
//!
//! Two metric kinds, matching what Serin's proxy measures per revision:
//!
//! * [`ErrorRateJudge`] — request and error counters. Tests
//!   `H0: canary_rate ≤ (1 + δ) · baseline_rate` with an exact
//!   mixture sequential probability ratio test on the errors' split between the
//!   arms (Lindon, Sanden & Shirikian, *Rapid Regression Detection in Software
//!   Deployments through Sequential Testing*, KDD 2022; Robbins 1970 mixtures;
//!   Ville's inequality). A practical gate `ε_abs` on the absolute difference
//!   keeps a 0.001 % → 0.002 % "doubling" from aborting a rollout.
//! * [`LatencyJudge`] — latency histograms (Prometheus cumulative buckets) or
//!   raw samples. A rank-based test on the Mann–Whitney probabilistic index
//!   `A = P(canary > baseline) + ½·P(tie)`, `H0: A ≤ ½ + η`, with mid-ranks
//!   for ties, made sequential with the normal-mixture SPRT (Johari, Koomen,
//!   Pekelis & Walsh, *Always Valid Inference*, Operations Research 2022) —
//!   asymptotically anytime-valid (Waudby-Smith, Arbour, Sinha, Kennedy &
//!   Ramdas, *Time-uniform central limit theory and asymptotic confidence
//!   sequences*, Annals of Statistics 2024).
//!
//! The library is pure: inputs are counts and samples; there is no clock, no
//! I/O and no randomness. Judges are `serde`-serializable so a control plane
//! can persist their state between checks. `docs/judge.md` explains the
//! statistics, the defaults and the comparison with Kayenta.

mod error_rate;
mod latency;

pub use error_rate::{ErrorRateJudge, ErrorRateParams};
pub use latency::{LatencyJudge, LatencyParams, SERIN_BUCKETS};

use serde::{Deserialize, Serialize};

/// What the judge concluded at one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    /// The canary is not worse than the threshold: either there is
    /// always-valid evidence of that, or the sample cap was reached without
    /// evidence of a regression (see [`Verdict::message`]).
    Pass,
    /// Always-valid evidence that the canary is worse than the threshold.
    Fail,
    /// Not enough data yet to decide either way.
    Continue,
}

/// The result of one check, with the numbers behind it.
///
/// Once a judge has returned `Pass` or `Fail` it keeps returning that
/// decision (a sequential test stops at its first crossing); the numbers keep
/// being updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Pass, Fail or Continue.
    pub decision: Decision,
    /// The test statistic: the e-value against "not worse than the threshold"
    /// for the error-rate judge; the standardised distance of the estimate
    /// from the threshold, `(Â − ½ − η) / se`, for the latency judge.
    pub statistic: f64,
    /// The point estimate: the canary/baseline error-rate ratio, or the
    /// probabilistic index `Â` for latency.
    pub estimate: f64,
    /// Always-valid lower confidence bound for the estimated quantity
    /// (level `1 − alpha`).
    pub lower_bound: f64,
    /// Always-valid upper confidence bound (level `1 − pass_alpha`).
    pub upper_bound: f64,
    /// The threshold the bounds are compared with (`1 + δ`, or `½ + η`).
    pub threshold: f64,
    /// Observations (requests or latency samples) in the baseline so far.
    pub baseline_n: u64,
    /// Observations in the canary so far.
    pub canary_n: u64,
    /// One human sentence saying why.
    pub message: String,
}

/// Why the judge refused an input or a parameter set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// A parameter is out of its range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParam {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A cumulative counter decreased (a process restart or a reset); the
    /// judge cannot tell what happened in between, so it refuses rather than
    /// guess. Start a new judge.
    #[error(
        "{what} went backwards: {previous} then {now}; start a new judge after a counter reset"
    )]
    CounterWentBackwards {
        /// Which counter.
        what: &'static str,
        /// Value at the previous check.
        previous: u64,
        /// Value now.
        now: u64,
    },
    /// More errors than requests.
    #[error("{arm}: {errors} errors out of {requests} requests")]
    MoreErrorsThanRequests {
        /// "baseline" or "canary".
        arm: &'static str,
        /// Errors reported.
        errors: u64,
        /// Requests reported.
        requests: u64,
    },
    /// A histogram does not have one count per bucket bound plus `+Inf`, or
    /// its buckets are not cumulative.
    #[error("bad histogram for {arm}: {reason}")]
    BadHistogram {
        /// "baseline" or "canary".
        arm: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A latency sample is negative, NaN or infinite.
    #[error("bad latency sample for {arm}: {value}")]
    BadSample {
        /// "baseline" or "canary".
        arm: &'static str,
        /// The value.
        value: f64,
    },
    /// Histogram and raw-sample observations were mixed in one judge.
    #[error("this judge was built for {expected}; it cannot take {got}")]
    WrongInputKind {
        /// What the judge takes.
        expected: &'static str,
        /// What it was given.
        got: &'static str,
    },
}

pub(crate) fn check_prob(name: &'static str, v: f64) -> Result<(), JudgeError> {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(JudgeError::InvalidParam {
            name,
            reason: format!("must be strictly between 0 and 1, got {v}"),
        })
    }
}

pub(crate) fn check_non_negative(name: &'static str, v: f64) -> Result<(), JudgeError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(JudgeError::InvalidParam {
            name,
            reason: format!("must be a finite number ≥ 0, got {v}"),
        })
    }
}

/// `ln Σ exp(x_i)` without overflow; `-inf` for an empty input.
pub(crate) fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}
