//! Percentage rollouts: the seed's `{"percentage": N}` and the monotonicity property.

use proptest::prelude::*;
use serin_flags::{EvaluationContext, FlagSet, Reason, RolloutError};

fn payment_flags() -> FlagSet {
    FlagSet::from_json_str(
        r#"{"flags": {
        "new-payment-processor": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
        "three": {"state": "ENABLED", "variants": {"a": 1, "b": 2, "c": 3}, "defaultVariant": "a"}}}"#,
    )
    .expect("loads")
}

fn enabled_at(flags: &mut FlagSet, pct: u8, user: &str) -> bool {
    flags
        .set_rollout_percentage("new-payment-processor", pct)
        .expect("rollout applies");
    flags.is_enabled(
        "new-payment-processor",
        &EvaluationContext::with_targeting_key(user),
        0,
    )
}

#[test]
fn rollout_shares_are_close_to_the_percentage_and_extremes_are_exact() {
    let mut flags = payment_flags();
    let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    for pct in [0u8, 5, 10, 25, 50, 100] {
        flags
            .set_rollout_percentage("new-payment-processor", pct)
            .expect("rollout applies");
        let on = users
            .iter()
            .filter(|u| {
                flags.is_enabled(
                    "new-payment-processor",
                    &EvaluationContext::with_targeting_key(u.as_str()),
                    0,
                )
            })
            .count();
        let share = on as f64 / users.len() as f64 * 100.0;
        match pct {
            0 => assert_eq!(on, 0),
            100 => assert_eq!(on, users.len()),
            _ => assert!(
                (share - f64::from(pct)).abs() < 1.5,
                "{pct}% gave {share:.2}%"
            ),
        }
    }
    let e = flags.evaluate(
        "new-payment-processor",
        &EvaluationContext::with_targeting_key("u"),
        0,
    );
    assert_eq!(e.reason, Reason::Split);
    let t = flags
        .flag("new-payment-processor")
        .and_then(|f| f.targeting())
        .expect("rewritten");
    assert_eq!(
        t,
        &serde_json::json!({"fractional": [["on", 100], ["off", 0]]})
    );
}

#[test]
fn rollout_rejects_unsuitable_requests() {
    let mut flags = payment_flags();
    assert_eq!(
        flags.set_rollout_percentage("nope", 5),
        Err(RolloutError::NotFound("nope".into()))
    );
    assert_eq!(
        flags.set_rollout_percentage("new-payment-processor", 101),
        Err(RolloutError::OutOfRange(101))
    );
    assert!(matches!(
        flags.set_rollout_percentage("three", 5),
        Err(RolloutError::Unsuitable { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Raising the percentage never turns a user off: whoever is on at `low` is on at `high`.
    #[test]
    fn raising_the_percentage_only_adds_users(
        users in proptest::collection::vec("[a-zA-Z0-9@._-]{1,24}", 1..40),
        a in 0u8..=100,
        b in 0u8..=100,
    ) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut flags = payment_flags();
        for u in &users {
            let before = enabled_at(&mut flags, low, u);
            let after = enabled_at(&mut flags, high, u);
            prop_assert!(!before || after, "user {u} was on at {low}% but off at {high}%");
        }
    }
}
