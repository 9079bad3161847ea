//! Statistical benchmark of `serin-judge`: not speed, but how often the judge
//! is right when consulted at every interval.
//!
//! Simulates, with a fixed-seed RNG (the judge itself has none), `RUNS` canary
//! analyses per scenario, calling the judge after every 100 requests per arm
//! until it decides (each judge stops at its own cap):
//!
//! * error rate A/A: 1 % vs 1 % — a `Fail` is a false abort;
//! * error rate A/B: 1 % vs 2 % — a `Fail` is a detection;
//! * latency A/A: lognormal, median 100 ms, p95 ≈ 200 ms, both arms;
//! * latency A/B: canary latencies × 1.25 (p95 ≈ 250 ms, +50 ms; median
//!   +25 ms) — a tail-heavy slowdown, harder than a pure +50 ms shift.
//!
//! Latency goes through Serin's proxy buckets (`SERIN_BUCKETS`), as in
//! production. Prints rates with 95 % Wilson intervals and the median and p90
//! requests per arm at the decision. Run: `cargo bench -p serin-bench --bench judge`.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serin_judge::{
    Decision, ErrorRateJudge, ErrorRateParams, LatencyJudge, LatencyParams, SERIN_BUCKETS,
};

const RUNS: usize = 1000;
const STEP: u64 = 100;
const SEED: u64 = 0x5E41_2026;

struct Outcome {
    decision: Decision,
    per_arm: u64,
}

fn error_rate_run(rng: &mut Xoshiro256PlusPlus, p_base: f64, p_canary: f64) -> Outcome {
    let Ok(mut judge) = ErrorRateJudge::new(ErrorRateParams::default()) else {
        unreachable!("default parameters are valid")
    };
    let (mut n, mut k_b, mut k_c) = (0u64, 0u64, 0u64);
    loop {
        for _ in 0..STEP {
            k_b += u64::from(rng.random::<f64>() < p_base);
            k_c += u64::from(rng.random::<f64>() < p_canary);
        }
        n += STEP;
        let v = match judge.observe(n, k_b, n, k_c) {
            Ok(v) => v,
            Err(e) => panic!("simulated counts are valid: {e}"),
        };
        if v.decision != Decision::Continue {
            return Outcome {
                decision: v.decision,
                per_arm: n,
            };
        }
    }
}

/// Standard normal by Box–Muller (keeps the bench free of rand_distr).
fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Lognormal latency in seconds: median 100 ms, σ = 0.42 → p95 ≈ 199.5 ms.
fn latency(rng: &mut Xoshiro256PlusPlus, scale: f64) -> f64 {
    scale * 0.1 * (0.42 * normal(rng)).exp()
}

fn bucket(secs: f64) -> usize {
    SERIN_BUCKETS
        .iter()
        .position(|&le| secs <= le)
        .unwrap_or(SERIN_BUCKETS.len())
}

fn cumulative(per: &[u64]) -> Vec<u64> {
    per.iter()
        .scan(0, |s, &x| {
            *s += x;
            Some(*s)
        })
        .collect()
}

fn latency_run(rng: &mut Xoshiro256PlusPlus, canary_scale: f64) -> Outcome {
    let Ok(mut judge) = LatencyJudge::for_histogram(LatencyParams::default(), &SERIN_BUCKETS)
    else {
        unreachable!("default parameters and Serin's buckets are valid")
    };
    let mut b = [0u64; SERIN_BUCKETS.len() + 1];
    let mut c = [0u64; SERIN_BUCKETS.len() + 1];
    let mut n = 0;
    loop {
        for _ in 0..STEP {
            b[bucket(latency(rng, 1.0))] += 1;
            c[bucket(latency(rng, canary_scale))] += 1;
        }
        n += STEP;
        let v = match judge.observe_histogram(&cumulative(&b), &cumulative(&c)) {
            Ok(v) => v,
            Err(e) => panic!("simulated histograms are valid: {e}"),
        };
        if v.decision != Decision::Continue {
            return Outcome {
                decision: v.decision,
                per_arm: n,
            };
        }
    }
}

/// 95 % Wilson score interval for `k` successes out of `n`.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    let (k, n) = (k as f64, n as f64);
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(name: &str, what: &str, target: &str, outcomes: &[Outcome]) {
    let fails = outcomes
        .iter()
        .filter(|o| o.decision == Decision::Fail)
        .count();
    let early_pass = outcomes
        .iter()
        .filter(|o| o.decision == Decision::Pass)
        .count();
    let (lo, hi) = wilson(fails, outcomes.len());
    let mut n: Vec<u64> = outcomes.iter().map(|o| o.per_arm).collect();
    n.sort_unstable();
    println!(
        "{name:<34} {what} {:>6.2} % [{:>5.2}, {:>5.2}] ({fails}/{}; pass {early_pass}) target {target}; \
         requests/arm to decide: median {}, p90 {}",
        100.0 * fails as f64 / outcomes.len() as f64,
        100.0 * lo,
        100.0 * hi,
        outcomes.len(),
        percentile(&n, 0.5),
        percentile(&n, 0.9),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; this binary has no options.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
    println!(
        "serin-judge statistical benchmark: {RUNS} runs per scenario, judged every {STEP} \
         requests per arm, seed {SEED:#x}, default parameters"
    );
    let e = ErrorRateParams::default();
    let l = LatencyParams::default();
    println!(
        "error rate: α={} δ={} ε_abs={} cap={}/arm; latency: α={} η={} τ={} cap={}/arm",
        e.alpha,
        e.relative_margin,
        e.absolute_margin,
        e.max_requests_per_arm,
        l.alpha,
        l.min_effect,
        l.mixture_scale,
        l.max_samples_per_arm
    );
    let runs = |f: &mut dyn FnMut(&mut Xoshiro256PlusPlus) -> Outcome,
                rng: &mut Xoshiro256PlusPlus| {
        (0..RUNS).map(|_| f(rng)).collect::<Vec<_>>()
    };
    let aa = runs(&mut |r| error_rate_run(r, 0.01, 0.01), &mut rng);
    report("error rate A/A 1% vs 1%", "false abort", "≤ 1 %", &aa);
    let ab = runs(&mut |r| error_rate_run(r, 0.01, 0.02), &mut rng);
    report("error rate A/B 1% vs 2%", "detection  ", "≥ 99 %", &ab);
    let laa = runs(&mut |r| latency_run(r, 1.0), &mut rng);
    report("latency A/A p95 200 ms", "false abort", "≤ 1 %", &laa);
    let lab = runs(&mut |r| latency_run(r, 1.25), &mut rng);
    report("latency A/B p95 200→250 ms", "detection  ", "≥ 99 %", &lab);
}
