//! Error-rate judge: an exact mixture SPRT on how errors split between arms.
//!
//! # Model
//!
//! Requests of arm `a` fail independently with probability `p_a`; errors are
//! rare, so in a check interval with `n_b` baseline and `n_c` canary requests
//! the error counts are (to first order in `p`) Poisson with means
//! `n_b·p_b` and `n_c·p_c`. Conditional on the interval's `k = k_b + k_c`
//! errors, the canary's share is then exactly binomial:
//!
//! ```text
//! k_c | k ~ Binomial(k, θ(r)),   θ(r) = n_c·r / (n_c·r + n_b),   r = p_c / p_b
//! ```
//!
//! whatever the unknown baseline rate — the nuisance parameter is gone, and
//! the traffic split may change between intervals (canary weight steps).
//! This is the construction of Lindon, Sanden & Shirikian, *Rapid Regression
//! Detection in Software Deployments through Sequential Testing* (KDD 2022),
//! and of Lindon & Malek, *Anytime-valid inference for multinomial count
//! data* (NeurIPS 2022).
//!
//! # Test
//!
//! `H0: r ≤ r0 = 1 + δ` (the canary is at most `δ` relatively worse) against
//! `H1: r > r0`. For each alternative `r1 > r0` the likelihood ratio
//! `Π θ(r1)^k_c (1−θ(r1))^k_b / θ(r0)^k_c (1−θ(r0))^k_b` over intervals is a
//! non-negative supermartingale under every `r ≤ r0` (each factor has
//! expectation `θ·θ1/θ0 + (1−θ)(1−θ1)/(1−θ0) ≤ 1` for `θ ≤ θ0 < θ1`). A
//! fixed-weight mixture of them is too (Robbins 1970), so by Ville's
//! inequality `P(sup_t E_t ≥ 1/α) ≤ α`: checking after every interval, forever,
//! keeps the false-abort rate below `α`. The mixture is uniform over a
//! log-spaced grid of ratios `r0·2^(j/4)`, `j = 1..=28` (up to `128·r0`),
//! which costs `ln 28 ≈ 3.3` nats against knowing the true ratio but needs no
//! tuning.
//!
//! The mirror test (`H0': r ≥ r0` against a grid below `r0`) gives an early
//! `Pass` at level `pass_alpha`. Inverting both tests over a grid of nulls
//! gives an always-valid confidence interval for `r`.
//!
//! `Fail` also needs the point estimates to clear the absolute margin:
//! `p̂_c > (1 + δ)·p̂_b + ε_abs`. This only removes rejections, so it cannot
//! raise the false-abort rate; it stops a "doubling" of a negligible error
//! rate from aborting a rollout.
//!
//! # Interval by interval
//!
//! Everything compares an interval's canary requests with the *same
//! interval's* baseline requests, never totals since the start: the canary's
//! share moves with the rollout's steps and the error rate moves with the
//! machine's load, so pooled totals compare different periods (Simpson's
//! paradox). The likelihood above is conditional per interval by
//! construction. An interval where one arm got no requests carries no
//! comparison and is dropped (holding its requests back for the next
//! interval would pool two periods: a quiet baseline-only interval followed
//! by a loaded one makes an alike canary look twice as bad). The gate's
//! baseline rate is standardised to the canary's traffic:
//! `p̂_b = Σ_i n_c,i·(k_b,i / n_b,i) / Σ_i n_c,i`, the baseline's rate in each
//! interval weighted by the canary's requests there — pooled, a canary whose
//! share rose as the machine calmed down had its regression hidden.
//!
//! Why not Kayenta's rule: Kayenta's Mann–Whitney classifier declares "no
//! difference" when the confidence interval overlaps `±tolerance·estimate`,
//! so the larger the regression, the wider the tolerated band (spinnaker
//! issue 6278: a 70× regression passes). Here the margin is fixed by the user
//! before seeing data and the test asks whether the data exceed it.

use serde::{Deserialize, Serialize};

use crate::{Decision, JudgeError, Verdict, check_non_negative, check_prob, log_sum_exp};

/// Grid of rate ratios `2^((j − 32)/4)`, `j = 0..=72`: from 1/256 to 1024.
const GRID_LEN: usize = 73;
const GRID_OFFSET: i32 = 32;
/// Alternatives in each mixture: ratios up to `2^(WINDOW/4) = 128×` away.
const WINDOW: i32 = 28;

fn grid_ratio(j: usize) -> f64 {
    // j < GRID_LEN = 73, so the cast is exact.
    ((j as i32 - GRID_OFFSET) as f64 / 4.0).exp2()
}

/// Parameters of the error-rate judge. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorRateParams {
    /// Probability of a false `Fail` when the canary is no worse than the
    /// threshold, over all checks together. Default 0.01.
    pub alpha: f64,
    /// Probability of an early `Pass` when the canary *is* worse than the
    /// threshold. Default 0.01.
    pub pass_alpha: f64,
    /// δ: the canary may be up to `δ` relatively worse (`r ≤ 1 + δ`) without
    /// failing. Default 0.25.
    pub relative_margin: f64,
    /// ε_abs: `Fail` also needs `p̂_c > (1 + δ)·p̂_b + ε_abs`. Default 0.001
    /// (0.1 percentage point).
    pub absolute_margin: f64,
    /// `Pass` ("no evidence of a regression") once both arms have at least
    /// this many requests. Default 50 000.
    pub max_requests_per_arm: u64,
}

impl Default for ErrorRateParams {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            pass_alpha: 0.01,
            relative_margin: 0.25,
            absolute_margin: 0.001,
            max_requests_per_arm: 50_000,
        }
    }
}

impl ErrorRateParams {
    fn validate(&self) -> Result<(), JudgeError> {
        check_prob("alpha", self.alpha)?;
        check_prob("passAlpha", self.pass_alpha)?;
        check_non_negative("relativeMargin", self.relative_margin)?;
        check_non_negative("absoluteMargin", self.absolute_margin)?;
        if self.relative_margin > 100.0 {
            return Err(JudgeError::InvalidParam {
                name: "relativeMargin",
                reason: format!("at most 100 (a 101× ratio), got {}", self.relative_margin),
            });
        }
        if self.max_requests_per_arm == 0 {
            return Err(JudgeError::InvalidParam {
                name: "maxRequestsPerArm",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Counts {
    baseline_requests: u64,
    baseline_errors: u64,
    canary_requests: u64,
    canary_errors: u64,
}

/// Sequential judge of a canary's error rate against its baseline's.
///
/// Feed it **cumulative** counters (requests and errors per arm since the
/// analysis started, as Prometheus counters give them) at every check; it
/// folds in the increments itself, each one an interval compared on its own.
/// An increment where one arm got no requests is dropped (see the module
/// docs). Serialize the judge to persist the sequential state between checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRateJudge {
    params: ErrorRateParams,
    /// Totals already folded into the likelihoods (or dropped).
    consumed: Counts,
    /// Latest totals observed.
    latest: Counts,
    /// Sums over the intervals compared (both arms had requests).
    #[serde(default)]
    compared: Counts,
    /// `Σ n_c,i·k_b,i / n_b,i` over the intervals compared: the canary's
    /// errors expected at the baseline's rate of each interval.
    #[serde(default)]
    expected_canary_errors: f64,
    /// Log-likelihood (up to a common constant) of each grid ratio.
    log_lik_grid: Vec<f64>,
    /// Log-likelihood of the null ratio `1 + δ`.
    log_lik_null: f64,
    decided: Option<Decision>,
}

impl ErrorRateJudge {
    /// A judge with the given parameters, or why they are invalid.
    pub fn new(params: ErrorRateParams) -> Result<Self, JudgeError> {
        params.validate()?;
        Ok(Self {
            params,
            consumed: Counts::default(),
            latest: Counts::default(),
            compared: Counts::default(),
            expected_canary_errors: 0.0,
            log_lik_grid: vec![0.0; GRID_LEN],
            log_lik_null: 0.0,
            decided: None,
        })
    }

    /// The parameters this judge runs with.
    pub fn params(&self) -> &ErrorRateParams {
        &self.params
    }

    /// Record cumulative totals and judge. Errors on counters that went
    /// backwards or more errors than requests; the state is then unchanged.
    pub fn observe(
        &mut self,
        baseline_requests: u64,
        baseline_errors: u64,
        canary_requests: u64,
        canary_errors: u64,
    ) -> Result<Verdict, JudgeError> {
        let now = Counts {
            baseline_requests,
            baseline_errors,
            canary_requests,
            canary_errors,
        };
        for (arm, errors, requests) in [
            ("baseline", baseline_errors, baseline_requests),
            ("canary", canary_errors, canary_requests),
        ] {
            if errors > requests {
                return Err(JudgeError::MoreErrorsThanRequests {
                    arm,
                    errors,
                    requests,
                });
            }
        }
        let prev = self.latest;
        for (what, p, n) in [
            (
                "baseline requests",
                prev.baseline_requests,
                now.baseline_requests,
            ),
            ("baseline errors", prev.baseline_errors, now.baseline_errors),
            ("canary requests", prev.canary_requests, now.canary_requests),
            ("canary errors", prev.canary_errors, now.canary_errors),
        ] {
            if n < p {
                return Err(JudgeError::CounterWentBackwards {
                    what,
                    previous: p,
                    now: n,
                });
            }
        }
        self.latest = now;
        self.fold_pending();
        Ok(self.verdict())
    }

    /// Fold the increment since the last fold if both arms had traffic;
    /// drop it otherwise.
    fn fold_pending(&mut self) {
        let (c, l) = (self.consumed, self.latest);
        self.consumed = l;
        // Counters were checked monotone, so these cannot underflow.
        let n_b = l.baseline_requests.saturating_sub(c.baseline_requests);
        let n_c = l.canary_requests.saturating_sub(c.canary_requests);
        if n_b == 0 || n_c == 0 {
            return;
        }
        let k_b = l.baseline_errors.saturating_sub(c.baseline_errors);
        let k_c = l.canary_errors.saturating_sub(c.canary_errors);
        self.compared.baseline_requests += n_b;
        self.compared.baseline_errors += k_b;
        self.compared.canary_requests += n_c;
        self.compared.canary_errors += k_c;
        let (n_b, n_c, k_b, k_c) = (n_b as f64, n_c as f64, k_b as f64, k_c as f64);
        self.expected_canary_errors += n_c * k_b / n_b;
        let log_lik = |r: f64| {
            let denom = (n_c * r + n_b).ln();
            let mut l = 0.0;
            if k_c > 0.0 {
                l += k_c * ((n_c * r).ln() - denom);
            }
            if k_b > 0.0 {
                l += k_b * (n_b.ln() - denom);
            }
            l
        };
        for (j, l) in self.log_lik_grid.iter_mut().enumerate() {
            *l += log_lik(grid_ratio(j));
        }
        self.log_lik_null += log_lik(1.0 + self.params.relative_margin);
    }

    /// ln of the mixture e-value against `H0: r ≤ r0` (`upward`) or
    /// `H0: r ≥ r0` (downward), given `ln L(r0)`.
    fn log_e(&self, r0: f64, log_lik_r0: f64, upward: bool) -> f64 {
        let lo = r0.log2();
        let terms = self
            .log_lik_grid
            .iter()
            .enumerate()
            .filter(move |&(j, _)| {
                let d = grid_ratio(j).log2() - lo;
                // Tolerance: a grid point equal to r0 is not an alternative.
                if upward {
                    d > 1e-9 && d <= WINDOW as f64 / 4.0 + 1e-9
                } else {
                    d < -1e-9 && d >= -(WINDOW as f64 / 4.0) - 1e-9
                }
            })
            .map(move |(_, &l)| l - log_lik_r0);
        log_sum_exp(terms) - (WINDOW as f64).ln()
    }

    fn verdict(&mut self) -> Verdict {
        let p = &self.params;
        let l = self.compared;
        let r0 = 1.0 + p.relative_margin;
        let log_fail = self.log_e(r0, self.log_lik_null, true);
        let log_pass = self.log_e(r0, self.log_lik_null, false);
        let fail_level = (1.0 / p.alpha).ln();
        let pass_level = (1.0 / p.pass_alpha).ln();

        // Always-valid bounds: grid nulls rejected contiguously from the
        // outside in (see the module docs).
        let mut lower = 0.0;
        for (j, &lj) in self.log_lik_grid.iter().enumerate() {
            if self.log_e(grid_ratio(j), lj, true) >= fail_level {
                lower = grid_ratio(j);
            } else {
                break;
            }
        }
        let mut upper = grid_ratio(GRID_LEN - 1);
        for (j, &lj) in self.log_lik_grid.iter().enumerate().rev() {
            if self.log_e(grid_ratio(j), lj, false) >= pass_level {
                upper = grid_ratio(j);
            } else {
                break;
            }
        }

        let (n_c, n_b) = (l.canary_requests as f64, l.baseline_requests as f64);
        let p_c = if n_c > 0.0 {
            l.canary_errors as f64 / n_c
        } else {
            0.0
        };
        // The baseline's rate at the canary's traffic mix (module docs); with
        // one interval it is the baseline's plain rate.
        let p_b = if n_c > 0.0 {
            self.expected_canary_errors / n_c
        } else {
            0.0
        };
        // Half an error added to each arm keeps the ratio finite at zero.
        let estimate = if n_b == 0.0 || n_c == 0.0 {
            1.0
        } else {
            (l.canary_errors as f64 + 0.5) / (self.expected_canary_errors + 0.5 * n_c / n_b)
        };
        let gate = p_c - r0 * p_b;
        let rates = format!(
            "canary {:.3}% ({}/{}) vs baseline {:.3}% at the canary's traffic mix \
             ({}/{} in the same intervals)",
            100.0 * p_c,
            l.canary_errors,
            l.canary_requests,
            100.0 * p_b,
            l.baseline_errors,
            l.baseline_requests
        );

        let (decision, message) = if let Some(d) = self.decided {
            (d, format!("already decided {d:?}; {rates}"))
        } else if log_fail >= fail_level && gate > p.absolute_margin {
            (
                Decision::Fail,
                format!(
                    "error-rate regression: {rates}; the ratio is above {lower:.3} \
                     (always-valid, α={}), beyond the allowed {r0:.3}×",
                    p.alpha
                ),
            )
        } else if log_pass >= pass_level {
            (
                Decision::Pass,
                format!(
                    "canary error rate is below {r0:.3}× the baseline's \
                     (ratio under {upper:.3}, always-valid): {rates}"
                ),
            )
        } else if l.baseline_requests >= p.max_requests_per_arm
            && l.canary_requests >= p.max_requests_per_arm
        {
            (
                Decision::Pass,
                format!(
                    "no evidence of an error-rate regression after {} requests per arm: {rates}",
                    p.max_requests_per_arm
                ),
            )
        } else if log_fail >= fail_level {
            (
                Decision::Continue,
                format!(
                    "ratio significantly above {r0:.3}× but the excess {:.4}% is within the \
                     absolute margin {:.4}%: {rates}",
                    100.0 * gate,
                    100.0 * p.absolute_margin
                ),
            )
        } else {
            (
                Decision::Continue,
                format!(
                    "not enough evidence yet (e-value {:.3}): {rates}",
                    log_fail.exp()
                ),
            )
        };
        if decision != Decision::Continue {
            self.decided = Some(decision);
        }
        Verdict {
            decision,
            statistic: log_fail.exp(),
            estimate,
            lower_bound: lower,
            upper_bound: upper,
            threshold: r0,
            baseline_n: l.baseline_requests,
            canary_n: l.canary_requests,
            message,
        }
    }
}
