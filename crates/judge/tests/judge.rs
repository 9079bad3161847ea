//! Behaviour of the judges on hand-computed cases, the Kayenta counter-example
//! (spinnaker issue 6278) and properties: identical arms never fail, more canary
//! errors never turn a Fail into a Pass.

use proptest::prelude::*;
use serin_judge::{
    Decision, ErrorRateJudge, ErrorRateParams, JudgeError, LatencyJudge, LatencyParams,
    SERIN_BUCKETS,
};

fn error_judge() -> ErrorRateJudge {
    ErrorRateJudge::new(ErrorRateParams::default()).expect("default params are valid")
}

fn latency_samples_judge() -> LatencyJudge {
    LatencyJudge::for_samples(LatencyParams::default()).expect("default params are valid")
}

/// Spinnaker issue 6278, verbatim data: control all 1.0, experiment seven
/// 100.0 and three 1.0. Kayenta's Mann–Whitney classifier (tolerance 0.25,
/// confidence 0.98) reports estimate 99 with a CI of [6.8e-5, 99] and passes
/// it because the CI overlaps ±0.25·estimate = ±24.75 — the band widens with
/// the regression. Our judge never passes it, and fails it as soon as the
/// same shape has 20 samples per arm.
#[test]
fn kayenta_6278_seventy_fold_regression_is_never_passed_and_fails() {
    let control = [1.0; 10];
    let experiment = [
        100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 1.0, 1.0, 1.0,
    ];
    // Kayenta's rule, reproduced from the numbers: "pass" when the
    // lower CI end lies within ±tolerance·estimate.
    let (estimate, ci_low) = (98.99992904170193_f64, 6.825022991538781e-5_f64);
    let band = 0.25 * estimate;
    assert!(ci_low.abs() <= band, "Kayenta passes the 70x regression");
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!((mean(&experiment) / mean(&control) - 70.3).abs() < 1e-9);

    let mut j = latency_samples_judge();
    // Values are seconds here; the scale does not matter to a rank test.
    let v = j
        .observe_samples(&control, &experiment)
        .expect("valid samples");
    assert_ne!(v.decision, Decision::Pass, "{}", v.message);
    assert!((v.estimate - 0.85).abs() < 1e-12, "Â = (70 + 30/2)/100");
    let v = j
        .observe_samples(&control, &experiment)
        .expect("valid samples");
    assert_eq!(v.decision, Decision::Fail, "{}", v.message);
    assert!(v.lower_bound > v.threshold);
}

/// The error-rate version of a 70× regression on small samples: 0.1 % of
/// 1 000 baseline requests vs 7 % of 100 canary requests.
#[test]
fn seventy_fold_error_rate_on_small_samples_fails() {
    let mut j = error_judge();
    let v = j.observe(1000, 1, 100, 7).expect("valid counts");
    assert_eq!(v.decision, Decision::Fail, "{}", v.message);
    assert!(v.lower_bound > 1.25, "{v:?}");
    assert!(v.statistic >= 100.0);
}

/// Hand computation: one interval with equal traffic and all k = 6 errors in
/// the canary. θ(r) = r/(r+1), so the likelihood ratio of r against
/// r0 = 1.25 is (θ(r)/θ(r0))^6, and the e-value is the 1/28-weighted sum over
/// the grid ratios 2^(j/4) in (1.25, 1.25·128].
#[test]
fn e_value_matches_hand_computation() {
    let mut j = error_judge();
    let v = j.observe(1000, 0, 1000, 6).expect("valid counts");
    let theta = |r: f64| r / (r + 1.0);
    let r0 = 1.25_f64;
    let mut sum = 0.0;
    for k in 0..=72 {
        let r = ((k as f64 - 32.0) / 4.0).exp2();
        if r > r0 && r <= r0 * 128.0 {
            sum += (theta(r) / theta(r0)).powi(6);
        }
    }
    let expected = sum / 28.0;
    assert!(
        (v.statistic - expected).abs() < 1e-9 * expected,
        "{} vs {expected}",
        v.statistic
    );
    // (1/θ(1.25))^6 = (2.25/1.25)^6 ≈ 34 at most: not yet a Fail at α = 0.01.
    assert_eq!(v.decision, Decision::Continue, "{}", v.message);
}

#[test]
fn clear_error_regression_fails_and_stays_failed() {
    let mut j = error_judge();
    let mut decided = None;
    for step in 1..=100u64 {
        let n = 500 * step;
        // 1 % vs 5 %: deterministic counts.
        let v = j.observe(n, n / 100, n, n / 20).expect("valid counts");
        if v.decision != Decision::Continue {
            decided = Some((step, v.decision));
            break;
        }
    }
    let (step, d) = decided.expect("decides");
    assert_eq!(d, Decision::Fail);
    assert!(step <= 10, "took {step} intervals");
    let v = j.observe(60_000, 600, 60_000, 600).expect("valid counts");
    assert_eq!(v.decision, Decision::Fail, "latched");
}

#[test]
fn no_errors_at_all_passes_at_the_cap_only() {
    let mut j = error_judge();
    let v = j.observe(49_999, 0, 49_999, 0).expect("valid counts");
    assert_eq!(v.decision, Decision::Continue);
    let v = j.observe(50_000, 0, 50_000, 0).expect("valid counts");
    assert_eq!(v.decision, Decision::Pass);
    assert!(v.message.contains("no evidence"), "{}", v.message);
}

#[test]
fn clearly_better_canary_passes_early() {
    let mut j = error_judge();
    let v = j.observe(10_000, 500, 10_000, 100).expect("valid counts");
    assert_eq!(v.decision, Decision::Pass, "{}", v.message);
    assert!(v.upper_bound < 1.25);
}

#[test]
fn absolute_margin_holds_back_a_negligible_doubling() {
    let params = ErrorRateParams {
        absolute_margin: 0.01,
        ..ErrorRateParams::default()
    };
    let mut j = ErrorRateJudge::new(params).expect("valid params");
    // 0.2 % vs 1 %: a significant 5× ratio, but the excess 0.75 pp is under 1 pp.
    let v = j.observe(40_000, 80, 40_000, 400).expect("valid counts");
    assert_eq!(v.decision, Decision::Continue, "{}", v.message);
    assert!(v.statistic >= 100.0);
}

#[test]
fn bad_counts_are_refused_and_lose_nothing() {
    let mut j = error_judge();
    j.observe(100, 1, 100, 2).expect("valid counts");
    let before = j.clone();
    assert!(matches!(
        j.observe(50, 1, 100, 2),
        Err(JudgeError::CounterWentBackwards { .. })
    ));
    assert!(matches!(
        j.observe(200, 1, 200, 201),
        Err(JudgeError::MoreErrorsThanRequests { .. })
    ));
    assert_eq!(j, before);
    let bad = ErrorRateParams {
        alpha: 1.5,
        ..ErrorRateParams::default()
    };
    assert!(ErrorRateJudge::new(bad).is_err());
}

/// An interval where one arm got no requests is dropped, not held back to
/// be pooled with the next one.
#[test]
fn traffic_in_one_arm_only_is_dropped() {
    let mut a = error_judge();
    a.observe(0, 0, 1000, 10).expect("valid");
    let v1 = a.observe(1000, 10, 2000, 20).expect("valid");
    let mut b = error_judge();
    let v2 = b.observe(1000, 10, 1000, 10).expect("valid");
    assert_eq!(v1.statistic, v2.statistic);
    assert_eq!((v1.baseline_n, v1.canary_n), (1000, 1000));
}

/// A quiet interval with baseline traffic only (the canary got none at its
/// low weight), then a loaded one where both arms fail 5 % of requests.
/// Held back and pooled, the baseline looked like 2.5 % against the
/// canary's 5 % and the alike canary failed.
#[test]
fn a_baseline_only_quiet_interval_does_not_make_an_alike_canary_fail() {
    let mut j = error_judge();
    j.observe(5000, 0, 0, 0).expect("valid");
    let v = j.observe(10_000, 250, 5000, 250).expect("valid");
    assert_ne!(v.decision, Decision::Fail, "{}", v.message);
    assert!((v.estimate - 1.0).abs() < 0.01, "{}", v.message);
}

/// Simpson's paradox hiding a 3× regression: in loaded intervals the
/// baseline fails 5 % and the canary (5 % of traffic) 15 %; in quiet ones
/// 0.1 % against 0.3 % at half the traffic. Pooled, the canary's requests
/// come mostly from quiet intervals and its rate (1.6 %) looked half the
/// baseline's (3.3 %): the absolute gate held the Fail back forever. At the
/// canary's traffic mix the baseline's rate is 0.55 %, and it fails.
#[test]
fn a_regression_hidden_by_pooling_over_a_moving_split_fails() {
    let mut j = error_judge();
    let (mut n_b, mut k_b, mut n_c, mut k_c) = (0, 0, 0, 0);
    let mut failed = None;
    for round in 1..=10 {
        for (db, ekb, dc, ekc) in [(1900, 95, 100, 15), (1000, 1, 1000, 3)] {
            (n_b, k_b, n_c, k_c) = (n_b + db, k_b + ekb, n_c + dc, k_c + ekc);
            let v = j.observe(n_b, k_b, n_c, k_c).expect("valid");
            if v.decision == Decision::Fail && failed.is_none() {
                failed = Some((round, v.estimate));
            }
        }
    }
    let (round, estimate) = failed.expect("fails");
    assert!(round <= 5, "round {round}");
    assert!(estimate > 2.0, "{estimate}");
}

#[test]
fn judges_round_trip_through_json() {
    let mut j = error_judge();
    j.observe(1000, 10, 1000, 15).expect("valid");
    let json = serde_json::to_string(&j).expect("serializes");
    // serde_json's default float parsing may change the last bit of a
    // log-likelihood; the judgement must not notice.
    let mut back: ErrorRateJudge = serde_json::from_str(&json).expect("deserializes");
    let (a, b) = (
        j.observe(2000, 20, 2000, 35).expect("valid"),
        back.observe(2000, 20, 2000, 35).expect("valid"),
    );
    assert_eq!(a.decision, b.decision);
    assert!((a.statistic - b.statistic).abs() <= 1e-12 * a.statistic.abs());
    assert_eq!(
        (a.lower_bound, a.upper_bound),
        (b.lower_bound, b.upper_bound)
    );

    let mut l = LatencyJudge::for_histogram(LatencyParams::default(), &SERIN_BUCKETS)
        .expect("valid bounds");
    let cum = [0, 0, 0, 0, 1, 5, 50, 95, 100, 100, 100, 100, 100, 100];
    l.observe_histogram(&cum, &cum).expect("valid");
    let json = serde_json::to_string(&l).expect("serializes");
    let back: LatencyJudge = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, l);
}

/// Cumulative histograms in Serin's buckets. Baseline: most requests in
/// 50–100 ms; canary: most in 100–250 ms. Every canary request in the slow
/// bucket is slower than every baseline request in the fast one.
#[test]
fn histogram_regression_fails_and_identical_histograms_do_not() {
    let per_bucket_b = [0, 0, 0, 0, 0, 10, 80, 10, 0, 0, 0, 0, 0, 0];
    let per_bucket_c = [0, 0, 0, 0, 0, 5, 35, 60, 0, 0, 0, 0, 0, 0];
    let cum = |per: &[u64; 14], times: u64| -> Vec<u64> {
        per.iter()
            .scan(0, |s, &x| {
                *s += x * times;
                Some(*s)
            })
            .collect()
    };
    let mut j = LatencyJudge::for_histogram(LatencyParams::default(), &SERIN_BUCKETS)
        .expect("valid bounds");
    let mut same = j.clone();
    let mut failed_at = None;
    for t in 1..=20 {
        let v = j
            .observe_histogram(&cum(&per_bucket_b, t), &cum(&per_bucket_c, t))
            .expect("valid");
        let s = same
            .observe_histogram(&cum(&per_bucket_b, t), &cum(&per_bucket_b, t))
            .expect("valid");
        assert_ne!(s.decision, Decision::Fail, "{}", s.message);
        if v.decision == Decision::Fail && failed_at.is_none() {
            failed_at = Some(t);
        }
    }
    assert!(failed_at.is_some_and(|t| t <= 3), "{failed_at:?}");
    // Ties are counted half: Â = P(C>B) + ½P(C=B) by hand.
    // P(C>B) = .35·.10 + .60·.90 = .575; P(C=B) = .05·.10+.35·.80+.60·.10 = .345.
    let v = j
        .observe_histogram(&cum(&per_bucket_b, 20), &cum(&per_bucket_c, 20))
        .expect("valid");
    assert!(
        (v.estimate - (0.575 + 0.345 / 2.0)).abs() < 1e-12,
        "{}",
        v.estimate
    );
    assert!(v.message.contains("p95"), "{}", v.message);
}

#[test]
fn bad_histograms_and_samples_are_refused() {
    let mut j = LatencyJudge::for_histogram(LatencyParams::default(), &SERIN_BUCKETS)
        .expect("valid bounds");
    assert!(matches!(
        j.observe_histogram(&[1, 2, 3], &[1, 2, 3]),
        Err(JudgeError::BadHistogram { .. })
    ));
    let not_cumulative = [5, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4];
    let ok = [0; 14];
    assert!(matches!(
        j.observe_histogram(&not_cumulative, &ok),
        Err(JudgeError::BadHistogram { .. })
    ));
    assert!(matches!(
        j.observe_samples(&[0.1], &[0.1]),
        Err(JudgeError::WrongInputKind { .. })
    ));
    let mut s = latency_samples_judge();
    assert!(matches!(
        s.observe_samples(&[0.1, f64::NAN], &[0.1]),
        Err(JudgeError::BadSample { .. })
    ));
    assert!(matches!(
        s.observe_samples(&[0.1], &[-1.0]),
        Err(JudgeError::BadSample { .. })
    ));
    assert!(LatencyJudge::for_histogram(LatencyParams::default(), &[0.1, 0.05]).is_err());
}

proptest! {
    /// Identical arms carry no evidence of a regression: never Fail.
    #[test]
    fn identical_error_counts_never_fail(
        steps in prop::collection::vec((1u64..5_000, 0u64..200), 1..30)
    ) {
        let mut j = error_judge();
        let (mut n, mut k) = (0u64, 0u64);
        for (dn, dk) in steps {
            n += dn;
            k += dk.min(dn);
            let v = j.observe(n, k, n, k).expect("valid counts");
            prop_assert_ne!(v.decision, Decision::Fail, "{}", v.message);
        }
    }

    /// More canary errors never turn a Fail into a Pass (or a Continue).
    #[test]
    fn more_canary_errors_never_undo_a_fail(
        n_b in 1u64..20_000, n_c in 1u64..20_000,
        pb in 0.0f64..0.2, pc in 0.0f64..0.3, extra in 1u64..500,
    ) {
        let k_b = (n_b as f64 * pb) as u64;
        let k_c = (n_c as f64 * pc) as u64;
        let v = error_judge().observe(n_b, k_b, n_c, k_c).expect("valid counts");
        let more = (k_c + extra).min(n_c);
        let w = error_judge().observe(n_b, k_b, n_c, more).expect("valid counts");
        if v.decision == Decision::Fail {
            prop_assert_eq!(w.decision, Decision::Fail);
        }
        if w.decision == Decision::Pass {
            prop_assert_eq!(v.decision, Decision::Pass);
        }
        prop_assert!(w.statistic >= v.statistic);
    }

    /// Identical samples in both arms never Fail.
    #[test]
    fn identical_latency_samples_never_fail(
        xs in prop::collection::vec(0.0f64..2.0, 1..300), repeats in 1usize..5
    ) {
        let mut j = latency_samples_judge();
        for _ in 0..repeats {
            let v = j.observe_samples(&xs, &xs).expect("valid samples");
            prop_assert_ne!(v.decision, Decision::Fail);
            prop_assert!((v.estimate - 0.5).abs() < 1e-9);
        }
    }

    /// Making canary requests slower never turns a Fail into a Pass.
    #[test]
    fn slower_canary_never_undoes_a_fail(
        b in prop::collection::vec(0.0f64..1.0, 20..200),
        c in prop::collection::vec(0.0f64..1.0, 20..200),
        slow in 0.0f64..0.5,
    ) {
        let v = latency_samples_judge().observe_samples(&b, &c).expect("valid");
        let slower: Vec<f64> = c.iter().map(|x| x + slow).collect();
        let w = latency_samples_judge().observe_samples(&b, &slower).expect("valid");
        prop_assert!(w.estimate >= v.estimate - 1e-12);
        if v.decision == Decision::Fail {
            prop_assert_eq!(w.decision, Decision::Fail);
        }
    }
}

/// Per-bucket counts for `n` requests in the shape `[20 %, 60 %, 20 %]`
/// centred on bucket `centre` of Serin's 14, added to `into`.
fn add_shape(into: &mut [u64; 14], centre: usize, n: u64) {
    into[centre - 1] += n / 5;
    into[centre] += n * 3 / 5;
    into[centre + 1] += n / 5;
}

fn cumulate(per_bucket: &[u64; 14]) -> Vec<u64> {
    per_bucket
        .iter()
        .scan(0, |s, &x| {
            *s += x;
            Some(*s)
        })
        .collect()
}

/// A rollout on a machine that gets slower as it goes: the canary's share
/// steps 10 % → 25 % → 50 % while everybody's latency moves from 10–25 ms
/// to 50–100 ms; within every interval the two arms are alike. Pooled since
/// the start, the canary's requests come mostly from the slow late intervals
/// and looked slower (Â ≈ 0.7, Fail): the A/A abort seen on real traffic
/// under load. Compared interval by interval it must not fail — and the same
/// rollout with a canary one bucket slower in every interval must.
#[test]
fn a_good_canary_whose_share_rises_while_the_machine_slows_is_not_failed() {
    // (canary share of 200 requests, bucket the latency centres on)
    let intervals = [(20, 4), (50, 5), (100, 6)]
        .iter()
        .flat_map(|&step| std::iter::repeat_n(step, 4))
        .collect::<Vec<_>>();
    let run = |canary_slower_by: usize| {
        let mut j = LatencyJudge::for_histogram(LatencyParams::default(), &SERIN_BUCKETS)
            .expect("valid bounds");
        let (mut b, mut c) = ([0u64; 14], [0u64; 14]);
        let mut verdicts = Vec::new();
        for &(canary, centre) in &intervals {
            add_shape(&mut b, centre, 200 - canary);
            add_shape(&mut c, centre + canary_slower_by, canary);
            verdicts.push(
                j.observe_histogram(&cumulate(&b), &cumulate(&c))
                    .expect("valid histograms"),
            );
        }
        verdicts
    };
    for v in run(0) {
        assert_ne!(v.decision, Decision::Fail, "{}", v.message);
        assert!((v.estimate - 0.5).abs() < 1e-9, "{}", v.message);
    }
    let slower = run(1);
    assert!(
        slower.iter().any(|v| v.decision == Decision::Fail),
        "{}",
        slower
            .last()
            .map(|v| v.message.as_str())
            .unwrap_or_default()
    );
}

/// An interval where one arm has no samples carries no comparison: it is
/// dropped, not pooled with later intervals.
#[test]
fn latency_intervals_with_one_arm_only_are_not_compared() {
    let mut j = latency_samples_judge();
    let v = j.observe_samples(&[0.01; 50], &[]).expect("valid");
    assert_eq!((v.baseline_n, v.canary_n), (0, 0), "{}", v.message);
    // Alike within this interval; pooled with the fast baseline-only
    // interval above, the canary would look slower.
    let slow = [0.2, 0.3, 0.4, 0.5].repeat(10);
    let v = j.observe_samples(&slow, &slow).expect("valid");
    assert_eq!((v.baseline_n, v.canary_n), (40, 40));
    assert!((v.estimate - 0.5).abs() < 1e-12, "{}", v.message);
}

proptest! {
    /// Arms alike within each interval — the same latencies in proportion,
    /// whatever the level of the interval and whatever the split — never
    /// Fail.
    #[test]
    fn arms_alike_within_each_interval_never_fail_whatever_the_split(
        intervals in prop::collection::vec(
            (prop::collection::vec(0.0f64..0.1, 1..30), 0.0f64..2.0, 1usize..8, 1usize..8),
            1..25,
        )
    ) {
        let mut j = latency_samples_judge();
        for (xs, level, m_b, m_c) in intervals {
            let shifted: Vec<f64> = xs.iter().map(|x| x + level).collect();
            let v = j
                .observe_samples(&shifted.repeat(m_b), &shifted.repeat(m_c))
                .expect("valid samples");
            prop_assert_ne!(v.decision, Decision::Fail, "{}", v.message);
        }
    }
}
