//! In-process flag evaluation: a static flag, a targeting flag and a fractional flag, and the
//! worst case the evaluation budget allows (`budget-exhausted`: a `reduce` over a
//! 200,000-element context array, stopped at `MAX_EVAL_COST`).
//! flagd's Go evaluator takes 1.4 / 7-8 / 10.6 µs for the same three kinds (its own
//! benchmarks); the target here is ≤ 1 µs each.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serin_flags::{EvaluationContext, FlagSet};

const FLAGS: &str = r##"{"flags": {
  "static-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
  "targeting-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
    "targeting": {"if": [{"and": [
        {"in": [{"var": "country"}, ["US", "CA", "DE"]]},
        {"==": [{"var": "plan"}, "enterprise"]},
        {"ends_with": [{"var": "email"}, "@example.com"]}]}, "on", null]}},
  "fractional-flag": {"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f", "green": "#0f0", "yellow": "#ff0"},
    "defaultVariant": "red",
    "targeting": {"fractional": [["red", 25], ["blue", 25], ["green", 25], ["yellow", 25]]}},
  "hostile-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
    "targeting": {"if": [{">": [{"reduce": [{"var": "xs"},
        {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, 0]}, "on", "off"]}}
}}"##;

fn bench(c: &mut Criterion) {
    let flags = match FlagSet::from_json_str(FLAGS) {
        Ok(f) => f,
        Err(e) => panic!("benchmark flags must load: {e}"),
    };
    let ctx = EvaluationContext::with_targeting_key("user-4242")
        .with("user_id", "user-4242")
        .with("country", "DE")
        .with("plan", "enterprise")
        .with("email", "ann@example.com");
    let now = 1_700_000_000;
    assert!(
        flags.is_enabled("targeting-flag", &ctx, now),
        "targeting flag must match"
    );
    let mut g = c.benchmark_group("flags");
    g.bench_function("static", |b| {
        b.iter(|| {
            flags
                .evaluate(black_box("static-flag"), black_box(&ctx), now)
                .value
                .is_some()
        })
    });
    g.bench_function("targeting", |b| {
        b.iter(|| {
            flags
                .evaluate(black_box("targeting-flag"), black_box(&ctx), now)
                .value
                .is_some()
        })
    });
    g.bench_function("fractional", |b| {
        b.iter(|| {
            flags
                .evaluate(black_box("fractional-flag"), black_box(&ctx), now)
                .value
                .is_some()
        })
    });
    let hostile = ctx.clone().with(
        "xs",
        serde_json::Value::Array((0..200_000).map(serde_json::Value::from).collect()),
    );
    assert_eq!(
        flags.evaluate("hostile-flag", &hostile, now).error_code,
        Some(serin_flags::ErrorCode::General),
        "the hostile rule must hit the budget"
    );
    g.bench_function("budget-exhausted", |b| {
        b.iter(|| {
            flags
                .evaluate(black_box("hostile-flag"), black_box(&hostile), now)
                .error_code
                .is_some()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
