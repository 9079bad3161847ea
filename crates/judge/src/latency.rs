//! Latency judge: a rank test (Mann–Whitney probabilistic index) made
//! sequential with a normal-mixture SPRT.
//!
//! # Effect size
//!
//! `A = P(C > B) + ½·P(C = B)` for a canary latency `C` and a baseline
//! latency `B` drawn independently — the Mann–Whitney `U / (n_c·n_b)`, also
//! called the probabilistic index or Vargha–Delaney A. `A = ½` when the arms
//! are alike; `A = 0.6` means a canary request is slower than a baseline
//! request 60 % of the time (ties count half). It is rank-based, so it is
//! invariant to any monotone transform of latency (seconds or log-seconds,
//! heavy tails, outliers), and it is defined the same way for raw samples and
//! for histogram buckets, where ties are the rule: two requests in the same
//! bucket are a tie (mid-ranks), never guessed apart.
//!
//! `H0: A ≤ ½ + η` (the canary is at most `η` worse) against `H1: A > ½ + η`;
//! `η` is the explicit minimum effect (default 0.05). For a pure location
//! shift `s` of a normal latency with spread `σ`, `A = Φ(s / (σ√2))`, so
//! `η = 0.05` is a shift of `0.18·σ`; for a lognormal whose p95 rises by a
//! quarter (200 → 250 ms, the benchmark's case) `A ≈ 0.65`.
//!
//! # Sequential test
//!
//! `Â` is a two-sample U-statistic; its Hoeffding projection is a sum of
//! independent placements, so `Â` is asymptotically normal with variance `V`
//! estimated by DeLong's placement variance (DeLong, DeLong & Clarke-Pearson,
//! Biometrics 1988), floored at the tie-corrected permutation variance
//! `((N+1) − Σ(t³−t)/(N(N−1))) / (12·n_c·n_b)` (the classic mid-rank
//! correction) so that small or heavily tied samples are not over-confident.
//! On that normal scale the judge runs the mixture SPRT of Johari, Koomen,
//! Pekelis & Walsh (*Always Valid Inference*, Operations Research 2022; the
//! normal mixture of Robbins 1970) with mixing scale `τ`:
//!
//! ```text
//! Λ = sqrt(V / (V + τ²)) · exp( τ²·(Â − a0)² / (2·V·(V + τ²)) )
//! ```
//!
//! and declares `Fail` when `Â > a0` and `Λ ≥ 1/α` — equivalently when the
//! always-valid lower bound `Â − h_α` exceeds `a0 = ½ + η`, with
//! `h_α² = 2V(V+τ²)/τ² · ln( sqrt((V+τ²)/V) / α )`. (One-sided use of the
//! symmetric mixture is conservative: on `Â > a0` it is dominated by the
//! half-normal mixture, a supermartingale under `A ≤ a0`.) The symmetric
//! event `Â + h_β < a0` gives an early `Pass` at level `β = pass_alpha`.
//!
//! # Stratified by check interval
//!
//! Samples are compared only with samples **of the same check interval**
//! (one `observe_*` call): each interval `i` gives its own `Â_i` and
//! variance `V_i`, and the judge combines them with van Elteren's weights
//! `w_i = n_b,i·n_c,i / (n_b,i + n_c,i + 1)` (van Elteren, *On the
//! combination of independent two-sample tests of Wilcoxon*, Bull. ISI 1960):
//! `Â = Σ w_i·Â_i / Σ w_i`, `V = Σ w_i²·V_i / (Σ w_i)²`. An interval where one
//! arm has no samples carries no comparison and is dropped.
//!
//! Why: the canary's share of traffic changes with the rollout's steps, and
//! the machine's latency changes over time (load, GC, noisy neighbours). Pooled
//! since the start, the canary's samples come mostly from late, high-weight
//! intervals and the baseline's from every interval, so a canary identical
//! to its baseline *within every interval* looks slower whenever the machine
//! got slower as the canary's weight rose — Simpson's paradox, and the cause
//! of A/A canaries aborted on real traffic under load. Within an interval both
//! arms see the same machine, so `Â_i` has mean ½ for alike arms whatever the
//! split, and the weighted sum of independent per-interval statistics keeps
//! the sequential argument below.
//!
//! # Intervals that disagree more than their samples allow
//!
//! `V_i` treats an interval's requests as independent draws. On a loaded
//! machine they are not: a stall of a few hundred ms slows every request in
//! flight, and which arm's requests it hits is luck, so `Â_i` of an A/A
//! canary scattered from 0.13 to 0.85 at ~25 canary requests per interval
//! where `V_i` allows about ±0.07 (`serin chaos`, debug build, load ≈ 20).
//! Summed as if independent, a few unlucky intervals in a row failed good
//! canaries. The judge therefore adds the between-interval variance that
//! the intervals themselves show, as a random-effects meta-analysis does
//! (DerSimonian & Laird, *Meta-analysis in clinical trials*, Controlled
//! Clinical Trials 1986): `V = Σ w_i²·(V_i + τ_b²) / (Σ w_i)²`, with `τ_b²`
//! estimated from Cochran's `Q` over the intervals so far (zero while they
//! agree as well as their sample sizes predict, which is the case for
//! independent samples, so a quiet machine loses almost nothing). A real
//! regression moves every interval the same way and keeps `τ_b²` small.
//!
//! The guarantee is *asymptotic* anytime validity (Waudby-Smith, Arbour,
//! Sinha, Kennedy & Ramdas, *Time-uniform central limit theory and
//! asymptotic confidence sequences*, Annals of Statistics 2024): exact for
//! Gaussian increments, approached as samples grow. `min_samples_per_arm`
//! keeps the judge from deciding on a handful of samples; the benchmark
//! measures the realised false-abort rate under checks at every interval.
//!
//! `τ` (default 0.2) tunes where the test is sharpest: large enough that a
//! gross regression (a 70× slowdown on most requests, the Kayenta counter-
//! example) fails within a few dozen samples, at a cost of about 10 % more
//! samples for small effects than a τ fitted to them.
//!
//! Why written here rather than taken from a crate: statrs 0.19's exact
//! Mann–Whitney p-values are wrong when the first sample is the smaller one,
//! no crate offers a sequential (always-valid) rank test, and the statistic
//! is a few dozen lines over a sorted table of counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Decision, JudgeError, Verdict, check_non_negative, check_prob};

/// Upper bounds (`le`, seconds) of the latency buckets of Serin's proxy
/// (`crates/proxy/src/stats.rs`, `BUCKETS`); a final `+Inf` bucket follows.
pub const SERIN_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Raw samples are keyed at microsecond resolution: values within the same
/// microsecond are ties.
const SAMPLE_KEYS_PER_SECOND: f64 = 1e6;

/// Parameters of the latency judge. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LatencyParams {
    /// Probability of a false `Fail` over all checks together (asymptotic).
    /// Default 0.01.
    pub alpha: f64,
    /// Probability of an early `Pass` for a canary worse than the threshold.
    /// Default 0.01.
    pub pass_alpha: f64,
    /// η: the canary fails only if `A > ½ + η`. In `[0, ½)`. Default 0.05.
    pub min_effect: f64,
    /// τ: scale of the normal mixture over effects (on the `A` scale).
    /// Default 0.2.
    pub mixture_scale: f64,
    /// No decision before both arms have this many samples. Default 20.
    pub min_samples_per_arm: u64,
    /// `Pass` ("no evidence of a regression") once both arms have this many
    /// samples. Default 20 000.
    pub max_samples_per_arm: u64,
}

impl Default for LatencyParams {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            pass_alpha: 0.01,
            min_effect: 0.05,
            mixture_scale: 0.2,
            min_samples_per_arm: 20,
            max_samples_per_arm: 20_000,
        }
    }
}

impl LatencyParams {
    fn validate(&self) -> Result<(), JudgeError> {
        check_prob("alpha", self.alpha)?;
        check_prob("passAlpha", self.pass_alpha)?;
        check_non_negative("minEffect", self.min_effect)?;
        if self.min_effect >= 0.5 {
            return Err(JudgeError::InvalidParam {
                name: "minEffect",
                reason: format!("must be below 0.5, got {}", self.min_effect),
            });
        }
        if !(self.mixture_scale.is_finite() && self.mixture_scale > 0.0) {
            return Err(JudgeError::InvalidParam {
                name: "mixtureScale",
                reason: format!("must be a finite number > 0, got {}", self.mixture_scale),
            });
        }
        if self.max_samples_per_arm < self.min_samples_per_arm.max(2) {
            return Err(JudgeError::InvalidParam {
                name: "maxSamplesPerArm",
                reason: "must be at least minSamplesPerArm and at least 2".into(),
            });
        }
        Ok(())
    }
}

/// What the judge's table is keyed by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Input {
    /// Bucket index into these upper bounds (seconds; index `len` is `+Inf`).
    Histogram { bounds: Vec<f64> },
    /// Microseconds.
    Samples,
}

/// Sequential rank-based judge of canary latency against the baseline's.
///
/// Build it for histograms ([`LatencyJudge::for_histogram`], fed cumulative
/// bucket counts) or for raw samples ([`LatencyJudge::for_samples`], fed new
/// samples incrementally). Serialize it to persist the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyJudge {
    params: LatencyParams,
    input: Input,
    /// key → [baseline count, canary count], ascending latency; totals
    /// since the start (the quantiles in messages, and the previous
    /// cumulative histogram to take an interval's increment from).
    table: BTreeMap<u64, [u64; 2]>,
    /// The per-interval comparison the decisions rest on.
    #[serde(default)]
    strata: Strata,
    decided: Option<Decision>,
}

/// Running sums of the per-interval (stratified) comparison; see the module
/// docs. Per-interval tables are folded in and not kept, so the state stays
/// small however long the analysis runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Strata {
    /// `Σ w_i·Â_i`.
    weighted_index: f64,
    /// `Σ w_i`.
    weight: f64,
    /// `Σ w_i²·V_i`.
    weighted_variance: f64,
    /// Baseline samples in the intervals compared (both arms had samples).
    baseline_n: u64,
    /// Canary samples in the intervals compared.
    canary_n: u64,
    /// Intervals compared.
    intervals: u64,
    /// `Σ w_i²`, for the between-interval variance's share of `V`.
    #[serde(default)]
    weight_squares: f64,
    /// DerSimonian–Laird running sums over the intervals with `V_i > 0`:
    /// `Σ 1/V_i`, `Σ 1/V_i²`, `Σ Â_i/V_i`, `Σ Â_i²/V_i` and their count.
    #[serde(default)]
    dl: [f64; 4],
    #[serde(default)]
    dl_intervals: u64,
}

impl Strata {
    /// Fold in one interval's ascending `[baseline, canary]` counts; an
    /// interval where one arm has no samples is dropped.
    fn add(&mut self, bins: impl Iterator<Item = [u64; 2]> + Clone) {
        let (n_b, n_c) = bins
            .clone()
            .fold((0u64, 0u64), |(b, c), [x, y]| (b + x, c + y));
        if n_b == 0 || n_c == 0 {
            return;
        }
        let (a, v) = probabilistic_index(bins, n_b, n_c);
        let w = n_b as f64 * n_c as f64 / (n_b as f64 + n_c as f64 + 1.0);
        self.weighted_index += w * a;
        self.weight += w;
        self.weighted_variance += w * w * v;
        self.weight_squares += w * w;
        if v > 0.0 {
            self.dl[0] += 1.0 / v;
            self.dl[1] += 1.0 / (v * v);
            self.dl[2] += a / v;
            self.dl[3] += a * a / v;
            self.dl_intervals += 1;
        }
        self.baseline_n += n_b;
        self.canary_n += n_c;
        self.intervals += 1;
    }

    /// `(Â, V)`; `(½, 0)` before any interval was compared. `V` includes
    /// the between-interval variance `τ_b²` (see the module docs).
    fn index(&self) -> (f64, f64) {
        if self.weight <= 0.0 {
            return (0.5, 0.0);
        }
        let within = self.weighted_variance + self.between() * self.weight_squares;
        (
            self.weighted_index / self.weight,
            (within / (self.weight * self.weight)).max(0.0),
        )
    }

    /// DerSimonian–Laird's moment estimate of the variance of the
    /// intervals' true indices around their mean:
    /// `τ_b² = max(0, (Q − (k − 1)) / (S1 − S2/S1))` with Cochran's
    /// `Q = Σ (Â_i − Ā)²/V_i`, `Ā` the inverse-variance mean, `S1 = Σ 1/V_i`,
    /// `S2 = Σ 1/V_i²`. Zero with fewer than two intervals.
    fn between(&self) -> f64 {
        let [s1, s2, t1, t2] = self.dl;
        if self.dl_intervals < 2 || s1 <= 0.0 {
            return 0.0;
        }
        let q = (t2 - t1 * t1 / s1).max(0.0);
        let denominator = s1 - s2 / s1;
        if denominator <= 0.0 {
            return 0.0;
        }
        ((q - (self.dl_intervals - 1) as f64) / denominator).max(0.0)
    }
}

impl LatencyJudge {
    /// A judge fed Prometheus-style cumulative histograms with these bucket
    /// upper bounds (seconds, strictly increasing, finite; `+Inf` implied).
    /// Use [`SERIN_BUCKETS`] for Serin's proxy.
    pub fn for_histogram(params: LatencyParams, bounds: &[f64]) -> Result<Self, JudgeError> {
        params.validate()?;
        if bounds.is_empty()
            || bounds.iter().any(|b| !b.is_finite())
            || bounds.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(JudgeError::InvalidParam {
                name: "bounds",
                reason: "bucket bounds must be finite and strictly increasing".into(),
            });
        }
        Ok(Self {
            params,
            input: Input::Histogram {
                bounds: bounds.to_vec(),
            },
            table: BTreeMap::new(),
            strata: Strata::default(),
            decided: None,
        })
    }

    /// A judge fed raw latency samples in seconds (microsecond resolution).
    pub fn for_samples(params: LatencyParams) -> Result<Self, JudgeError> {
        params.validate()?;
        Ok(Self {
            params,
            input: Input::Samples,
            table: BTreeMap::new(),
            strata: Strata::default(),
            decided: None,
        })
    }

    /// The parameters this judge runs with.
    pub fn params(&self) -> &LatencyParams {
        &self.params
    }

    /// Record **cumulative** histograms (one count per bound, then `+Inf`;
    /// each `le` count includes the smaller buckets, and each count is a total
    /// since the analysis started) and judge. The increment since the
    /// previous call is one check interval: its samples are compared with
    /// each other only (see the module docs). On error the state is unchanged.
    pub fn observe_histogram(
        &mut self,
        baseline_cumulative: &[u64],
        canary_cumulative: &[u64],
    ) -> Result<Verdict, JudgeError> {
        let Input::Histogram { bounds } = &self.input else {
            return Err(JudgeError::WrongInputKind {
                expected: "raw samples",
                got: "histograms",
            });
        };
        let want = bounds.len() + 1;
        let per_bucket = |arm: &'static str, cum: &[u64]| -> Result<Vec<u64>, JudgeError> {
            if cum.len() != want {
                return Err(JudgeError::BadHistogram {
                    arm,
                    reason: format!("{} counts for {want} buckets (bounds + +Inf)", cum.len()),
                });
            }
            let mut prev = 0;
            let mut out = Vec::with_capacity(want);
            for &c in cum {
                let Some(d) = c.checked_sub(prev) else {
                    return Err(JudgeError::BadHistogram {
                        arm,
                        reason: format!("cumulative bucket count decreases: {prev} then {c}"),
                    });
                };
                out.push(d);
                prev = c;
            }
            Ok(out)
        };
        let b = per_bucket("baseline", baseline_cumulative)?;
        let c = per_bucket("canary", canary_cumulative)?;
        let mut table = BTreeMap::new();
        let mut interval = Vec::with_capacity(want);
        for (i, (&bi, &ci)) in b.iter().zip(&c).enumerate() {
            let old = self.table.get(&(i as u64)).copied().unwrap_or([0, 0]);
            for (what, p, n) in [
                ("baseline bucket count", old[0], bi),
                ("canary bucket count", old[1], ci),
            ] {
                if n < p {
                    return Err(JudgeError::CounterWentBackwards {
                        what,
                        previous: p,
                        now: n,
                    });
                }
            }
            if bi > 0 || ci > 0 {
                table.insert(i as u64, [bi, ci]);
            }
            // Checked above: neither count went backwards.
            interval.push([bi - old[0], ci - old[1]]);
        }
        self.table = table;
        self.strata.add(interval.iter().copied());
        Ok(self.verdict())
    }

    /// Add new raw samples (seconds) for each arm and judge. One call is one
    /// check interval: its samples are compared with each other only (see
    /// the module docs), and a call with one arm empty adds nothing to the
    /// comparison. A negative, NaN or infinite sample is refused and nothing
    /// is added.
    pub fn observe_samples(
        &mut self,
        baseline_new: &[f64],
        canary_new: &[f64],
    ) -> Result<Verdict, JudgeError> {
        if !matches!(self.input, Input::Samples) {
            return Err(JudgeError::WrongInputKind {
                expected: "histograms",
                got: "raw samples",
            });
        }
        for (arm, xs) in [("baseline", baseline_new), ("canary", canary_new)] {
            // Up to ~ 5.8e5 years: beyond that the key would saturate.
            if let Some(&value) = xs
                .iter()
                .find(|v| !(v.is_finite() && **v >= 0.0 && **v < 1.8e13))
            {
                return Err(JudgeError::BadSample { arm, value });
            }
        }
        let mut interval: BTreeMap<u64, [u64; 2]> = BTreeMap::new();
        for (arm, xs) in [(0, baseline_new), (1, canary_new)] {
            for v in xs {
                // Finite, non-negative and bounded: the cast cannot saturate.
                let key = (v * SAMPLE_KEYS_PER_SECOND).round() as u64;
                interval.entry(key).or_insert([0, 0])[arm] += 1;
                self.table.entry(key).or_insert([0, 0])[arm] += 1;
            }
        }
        self.strata.add(interval.values().copied());
        Ok(self.verdict())
    }

    /// Estimated `q`-quantile in seconds of one arm (0 = baseline).
    fn quantile(&self, arm: usize, n: u64, q: f64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        let target = q * n as f64;
        let mut below = 0u64;
        for (&key, counts) in &self.table {
            let k = counts[arm];
            if k == 0 {
                continue;
            }
            if (below + k) as f64 >= target {
                return match &self.input {
                    Input::Samples => key as f64 / SAMPLE_KEYS_PER_SECOND,
                    // Linear interpolation inside the bucket, as Prometheus'
                    // histogram_quantile does; the +Inf bucket reports the
                    // last finite bound.
                    Input::Histogram { bounds } => {
                        let i = key as usize;
                        let Some(&hi) = bounds.get(i) else {
                            return bounds.last().copied().unwrap_or(0.0);
                        };
                        let lo = if i == 0 {
                            0.0
                        } else {
                            bounds.get(i - 1).copied().unwrap_or(0.0)
                        };
                        lo + (hi - lo) * ((target - below as f64) / k as f64)
                    }
                };
            }
            below += k;
        }
        0.0
    }

    fn verdict(&mut self) -> Verdict {
        let p = &self.params;
        // Totals since the start, for the quantiles only.
        let (mut total_b, mut total_c) = (0u64, 0u64);
        for c in self.table.values() {
            total_b += c[0];
            total_c += c[1];
        }
        // Decisions rest on the intervals compared (both arms had samples).
        let (n_b, n_c) = (self.strata.baseline_n, self.strata.canary_n);
        let a0 = 0.5 + p.min_effect;
        let (a_hat, var) = self.strata.index();
        let tau2 = p.mixture_scale * p.mixture_scale;
        let half_width = |level: f64| {
            if var <= 0.0 {
                // Everything tied (or no data): no information.
                return f64::INFINITY;
            }
            let r = ((var + tau2) / var).sqrt() / level;
            (2.0 * var * (var + tau2) / tau2 * r.ln()).sqrt()
        };
        let lower = a_hat - half_width(p.alpha);
        let upper = a_hat + half_width(p.pass_alpha);
        let statistic = if var > 0.0 {
            (a_hat - a0) / var.sqrt()
        } else {
            0.0
        };
        let describe = format!(
            "P(canary slower) = {a_hat:.3} within {} intervals (threshold {a0:.3}); \
             p50 {:.1} ms vs {:.1} ms, p95 {:.1} ms vs {:.1} ms (canary vs baseline; \
             n = {n_c} vs {n_b})",
            self.strata.intervals,
            1e3 * self.quantile(1, total_c, 0.5),
            1e3 * self.quantile(0, total_b, 0.5),
            1e3 * self.quantile(1, total_c, 0.95),
            1e3 * self.quantile(0, total_b, 0.95),
        );
        let enough = n_b >= p.min_samples_per_arm && n_c >= p.min_samples_per_arm;
        let (decision, message) = if let Some(d) = self.decided {
            (d, format!("already decided {d:?}; {describe}"))
        } else if enough && lower > a0 {
            (
                Decision::Fail,
                format!(
                    "latency regression: {describe}; always-valid lower bound {lower:.3} > {a0:.3}"
                ),
            )
        } else if enough && upper < a0 {
            (
                Decision::Pass,
                format!("canary latency within the threshold: {describe}; upper bound {upper:.3}"),
            )
        } else if n_b >= p.max_samples_per_arm && n_c >= p.max_samples_per_arm {
            (
                Decision::Pass,
                format!(
                    "no evidence of a latency regression after {} samples per arm: {describe}",
                    p.max_samples_per_arm
                ),
            )
        } else if !enough {
            (
                Decision::Continue,
                format!(
                    "waiting for {} samples per arm: {describe}",
                    p.min_samples_per_arm
                ),
            )
        } else {
            (
                Decision::Continue,
                format!("not enough evidence yet: {describe}"),
            )
        };
        if decision != Decision::Continue {
            self.decided = Some(decision);
        }
        Verdict {
            decision,
            statistic,
            estimate: a_hat,
            lower_bound: lower.clamp(0.0, 1.0),
            upper_bound: upper.clamp(0.0, 1.0),
            threshold: a0,
            baseline_n: n_b,
            canary_n: n_c,
            message,
        }
    }
}

/// `Â` and its variance from ascending `[baseline, canary]` counts per
/// distinct value. Returns `(0.5, 0.0)` without data in both arms.
///
/// Placement of a canary value: the share of baseline values below it plus
/// half the ties; of a baseline value: the share of canary values above it
/// plus half the ties. `Â` is the mean of either; DeLong's variance is
/// `Var(canary placements)/n_c + Var(baseline placements)/n_b`.
pub(crate) fn probabilistic_index(
    bins: impl Iterator<Item = [u64; 2]> + Clone,
    n_b: u64,
    n_c: u64,
) -> (f64, f64) {
    if n_b == 0 || n_c == 0 {
        return (0.5, 0.0);
    }
    let (nb, nc) = (n_b as f64, n_c as f64);
    let n = nb + nc;
    // First pass: Â and the tie term.
    let mut b_below = 0.0;
    let mut sum = 0.0;
    let mut ties = 0.0;
    for [b, c] in bins.clone() {
        let (b, c) = (b as f64, c as f64);
        sum += c * (b_below + 0.5 * b) / nb;
        let t = b + c;
        ties += t * t * t - t;
        b_below += b;
    }
    let a = sum / nc;
    // Second pass: DeLong placement variances.
    let (mut b_below, mut c_below) = (0.0, 0.0);
    let (mut ss_c, mut ss_b) = (0.0, 0.0);
    for [b, c] in bins {
        let (b, c) = (b as f64, c as f64);
        let pc = (b_below + 0.5 * b) / nb;
        let pb = (nc - c_below - c + 0.5 * c) / nc;
        ss_c += c * (pc - a) * (pc - a);
        ss_b += b * (pb - a) * (pb - a);
        b_below += b;
        c_below += c;
    }
    let delong = if n_b > 1 && n_c > 1 {
        ss_c / (nc - 1.0) / nc + ss_b / (nb - 1.0) / nb
    } else {
        0.0
    };
    let permutation = ((n + 1.0) - ties / (n * (n - 1.0))) / (12.0 * nb * nc);
    (a, delong.max(permutation).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One interval of 30 requests per arm: every baseline request takes
    /// 1 s, `slower` canary requests 2 s and the rest 1 ms, so `Â_i` is
    /// `slower / 30`.
    fn interval(judge: &mut LatencyJudge, slower: usize) -> Verdict {
        let baseline = [1.0; 30];
        let canary: Vec<f64> = (0..30)
            .map(|i| if i < slower { 2.0 } else { 0.001 })
            .collect();
        judge
            .observe_samples(&baseline, &canary)
            .expect("valid samples")
    }

    /// The same mean effect (`Â` = 2/3 over the intervals), once in every
    /// interval alike and once scattered (0.43, 0.9, 0.43, …) far beyond what
    /// 30 requests per arm allow — the scatter a loaded machine's stalls
    /// give an A/A canary. Alike intervals are a regression and fail as
    /// before; scattered ones are not evidence of one, and without the
    /// between-interval variance they failed after as many intervals.
    #[test]
    fn intervals_that_disagree_beyond_their_samples_are_not_evidence() {
        let mut alike = LatencyJudge::for_samples(LatencyParams::default()).expect("judge");
        let failed_at = (1..=30).find(|_| interval(&mut alike, 20).decision == Decision::Fail);
        assert!(
            matches!(failed_at, Some(k) if k <= 12),
            "a consistent regression must fail: {failed_at:?}"
        );
        assert!(alike.strata.between() < 1e-12, "{:?}", alike.strata);

        let mut scattered = LatencyJudge::for_samples(LatencyParams::default()).expect("judge");
        for k in 0..30 {
            let v = interval(&mut scattered, if k % 2 == 0 { 13 } else { 27 });
            assert_ne!(v.decision, Decision::Fail, "interval {k}: {}", v.message);
        }
        let (a, _) = scattered.strata.index();
        assert!((a - 2.0 / 3.0).abs() < 0.01, "{a}");
        assert!(scattered.strata.between() > 0.01, "{:?}", scattered.strata);
    }

    /// Hand-computed: baseline {1,2,3}, canary {2,4}. Pairs (c > b): 4 beats
    /// all three (3), 2 beats 1 (1) and ties 2 (½) → U = 4.5 of 6, Â = 0.75.
    /// Ties: one pair of 2s → Σ(t³−t) = 6; N = 5: permutation variance
    /// ((6) − 6/20)/(12·6) = 5.7/72.
    #[test]
    fn probabilistic_index_matches_hand_computation() {
        let bins = [[1, 0], [1, 1], [1, 0], [0, 1]];
        let (a, v) = probabilistic_index(bins.iter().copied(), 3, 2);
        assert!((a - 0.75).abs() < 1e-12, "{a}");
        // DeLong: canary placements 0.5 and 1.0 (mean 0.75, var 0.125);
        // baseline placements 1.0, 0.75, 0.5 (var 0.0625).
        let delong: f64 = 0.125 / 2.0 + 0.0625 / 3.0;
        let perm = 5.7 / 72.0;
        assert!((v - delong.max(perm)).abs() < 1e-12, "{v}");
    }
}
