//! flagd's evaluation semantics where Serin used to differ (issue #14, items 1–8), and the
//! evaluation and load budgets (hardening items 6, 7, 16). Each case says what flagd does.

use serde_json::{Value, json};
use serin_flags::{
    ErrorCode, EvaluationContext, FlagSet, FlagsError, Format, MAX_EVAL_COST, Reason, Strictness,
};

const NOW: i64 = 1_700_000_000;

fn lenient(doc: &Value) -> FlagSet {
    FlagSet::from_str_with(&doc.to_string(), Format::Json, Strictness::Lenient)
        .expect("lenient load")
}

fn flag(targeting: Value) -> Value {
    json!({"flags": {"f": {
        "state": "ENABLED",
        "variants": {"on": "ON", "off": "OFF"},
        "defaultVariant": "off",
        "targeting": targeting
    }}})
}

fn eval(targeting: Value, ctx: &EvaluationContext) -> (Option<Value>, Option<String>, Reason) {
    let set = lenient(&flag(targeting));
    let e = set.evaluate("f", ctx, NOW);
    (e.value.cloned(), e.variant.map(str::to_owned), e.reason)
}

#[test]
fn no_targeting_key_needed_and_fractional_without_one_is_default() {
    let ctx = EvaluationContext::new().with("country", "DE");
    // Item 1: static flags and ordinary targeting need no key.
    assert_eq!(
        eval(json!({}), &ctx),
        (Some(json!("OFF")), Some("off".into()), Reason::Static)
    );
    assert_eq!(
        eval(
            json!({"if": [{"==": [{"var": "country"}, "DE"]}, "on", null]}),
            &ctx
        ),
        (Some(json!("ON")), Some("on".into()), Reason::TargetingMatch)
    );
    // fractional with nothing to hash: null -> default variant, DEFAULT.
    let split = json!({"fractional": [["on", 50], ["off", 50]]});
    assert_eq!(
        eval(split.clone(), &ctx),
        (Some(json!("OFF")), Some("off".into()), Reason::Default)
    );
    // A key present but a null bucketing expression: flagKey + targetingKey, like no
    // expression at all.
    let with_key = EvaluationContext::with_targeting_key("user-7");
    let by_null = eval(
        json!({"fractional": [{"var": "missing"}, ["on", 50], ["off", 50]]}),
        &with_key,
    );
    let by_key = eval(split, &with_key);
    assert_eq!(by_null, by_key);
    assert_ne!(by_key.2, Reason::Default);
}

#[test]
fn default_reason_whenever_the_default_variant_is_used_by_targeting() {
    let ctx = EvaluationContext::with_targeting_key("u");
    let default = (Some(json!("OFF")), Some("off".into()), Reason::Default);
    // Targeting returned null.
    assert_eq!(eval(json!({"if": [false, "on", null]}), &ctx), default);
    // All-zero weights.
    assert_eq!(
        eval(json!({"fractional": [["on", 0], ["off", 0]]}), &ctx),
        default
    );
    // An operator returned null (starts_with on a number).
    assert_eq!(eval(json!({"starts_with": [1, "x"]}), &ctx), default);
}

#[test]
fn one_bad_flag_does_not_take_down_the_file() {
    let doc = json!({
        "$evaluators": {"ok": {"==": [1, 1]}},
        "flags": {
            "good": {"state": "ENABLED", "variants": {"a": true, "b": false}, "defaultVariant": "a"},
            "dangling-ref": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                "targeting": {"if": [{"$ref": "missing"}, "a", "b"]}},
            "unknown-op": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                "targeting": {"frobnicate": [1]}},
            "starts-arity": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                "targeting": {"starts_with": [{"var": "email"}]}},
            "ends-arity": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                "targeting": {"ends_with": ["a", "b", "c"]}},
            "semver-arity": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                "targeting": {"sem_ver": ["1.0.0", "="]}}
        }
    });
    let src = serde_json::to_string_pretty(&doc).expect("json");
    // Strict loading (what `serin flags lint`-style callers ask for) still refuses.
    assert!(FlagSet::from_json_str(&src).is_err());
    let set = FlagSet::from_str_with(&src, Format::Json, Strictness::Lenient).expect("loads");
    let ctx = EvaluationContext::new().with("email", "a@b");
    assert!(set.bool_value("good", &ctx, NOW, false).value);
    for key in ["dangling-ref", "unknown-op"] {
        let d = set.int_value(key, &ctx, NOW, 9);
        assert_eq!(
            (d.value, d.reason, d.error_code),
            (9, Reason::Error, Some(ErrorCode::ParseError)),
            "{key}"
        );
    }
    for key in ["starts-arity", "ends-arity", "semver-arity"] {
        let d = set.int_value(key, &ctx, NOW, 9);
        assert_eq!(
            (d.value, d.variant, d.reason, d.error_code),
            (2, Some("b"), Reason::Default, None),
            "{key}"
        );
    }
    // Every bad flag is a located warning: line:column and the pointer of the culprit.
    let mut warned: Vec<&str> = set.warnings().iter().map(|w| w.flag.as_str()).collect();
    warned.sort_unstable();
    assert_eq!(
        warned,
        [
            "dangling-ref",
            "ends-arity",
            "semver-arity",
            "starts-arity",
            "unknown-op"
        ]
    );
    for w in set.warnings() {
        let m = &w.message;
        let (line, rest) = m.split_once(':').expect("line");
        let (col, _) = rest.split_once(':').expect("column");
        assert!(line.parse::<usize>().is_ok_and(|l| l > 1), "{m}");
        assert!(col.parse::<usize>().is_ok(), "{m}");
        assert!(m.contains(&format!("/flags/{}/targeting", w.flag)), "{m}");
    }
}

#[test]
fn sem_ver_numbers_upper_case_v_and_invalid_input() {
    let ctx = EvaluationContext::with_targeting_key("u")
        .with("v", 1.2)
        .with("w", 2);
    let on = (Some(json!("ON")), Some("on".into()), Reason::TargetingMatch);
    let default = (Some(json!("OFF")), Some("off".into()), Reason::Default);
    let rule = |a: Value, op: &str, b: Value| json!({"if": [{"sem_ver": [a, op, b]}, "on", "off"]});
    // A JSON number compares as its text: 1.2 is "1.2" = v1.2.0; 2 is "2" = v2.0.0.
    assert_eq!(
        eval(rule(json!({"var": "v"}), "=", json!("1.2.0")), &ctx),
        on
    );
    assert_eq!(eval(rule(json!({"var": "w"}), ">", json!(1)), &ctx), on);
    assert_eq!(eval(rule(json!("V1.2.3"), "=", json!("v1.2.3")), &ctx), on);
    // Invalid version or unknown operator: null, so `if` takes neither branch's truth and
    // the rule returns "off"... unless the operator is the whole rule: then DEFAULT.
    for bad in [
        json!({"sem_ver": ["1.0.0", "===", "1.0.0"]}),
        json!({"sem_ver": ["not.a.version", "=", "1.0.0"]}),
        json!({"sem_ver": [["1.0.0"], "=", "1.0.0"]}),
    ] {
        assert_eq!(eval(bad.clone(), &ctx), default, "{bad}");
    }
}

#[test]
fn ends_with_and_starts_with_on_non_strings_are_null() {
    let ctx = EvaluationContext::new().with("n", 5);
    let default = (Some(json!("OFF")), Some("off".into()), Reason::Default);
    assert_eq!(
        eval(json!({"ends_with": [{"var": "n"}, "5"]}), &ctx),
        default
    );
    assert_eq!(
        eval(json!({"starts_with": [{"var": "n"}, "5"]}), &ctx),
        default
    );
    assert_eq!(eval(json!({"ends_with": ["abc", 1]}), &ctx), default);
}

#[test]
fn unknown_variant_or_non_key_result_is_general() {
    let set = lenient(&flag(json!({"if": [true, "nope", "off"]})));
    let e = set.evaluate("f", &EvaluationContext::new(), NOW);
    assert_eq!(
        (e.value, e.variant, e.reason, e.error_code),
        (None, None, Reason::Error, Some(ErrorCode::General))
    );
    let set = lenient(&flag(json!({"merge": [["on"], ["off"]]})));
    let e = set.evaluate("f", &EvaluationContext::new(), NOW);
    assert_eq!(e.error_code, Some(ErrorCode::General));
}

#[test]
fn disabled_flag_resolves_with_reason_disabled_and_no_value() {
    let set = lenient(&json!({
        "metadata": {"flagSetId": "s"},
        "flags": {"d": {"state": "DISABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "on", "metadata": {"owner": "team-a"}}}
    }));
    let e = set.evaluate("d", &EvaluationContext::new(), NOW);
    assert_eq!(
        (e.value, e.variant, e.reason, e.error_code),
        (None, None, Reason::Disabled, None)
    );
    let meta = e.flag_metadata.expect("metadata");
    assert_eq!(meta.get("owner"), Some(&json!("team-a")));
    assert_eq!(meta.get("flagSetId"), Some(&json!("s")));
    // Typed accessors give the code default, reason DISABLED, no error.
    let d = set.bool_value("d", &EvaluationContext::new(), NOW, false);
    assert_eq!(
        (d.value, d.reason, d.error_code),
        (false, Reason::Disabled, None)
    );
}

#[test]
fn injected_flagd_properties_and_metadata_merging() {
    let doc = json!({
        "metadata": {"flagSetId": "set", "version": "1", "team": "payments"},
        "flags": {
            "by-key": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no",
                "metadata": {"version": "2"},
                "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "by-key"]}, "yes", "no"]}},
            "by-time": {"state": "ENABLED", "variants": {"past": "p", "future": "f"}, "defaultVariant": "future",
                "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 1_600_000_000]}, "past", "future"]}}
        }
    });
    let set = lenient(&doc);
    // The caller cannot spoof $flagd.
    let ctx = EvaluationContext::new().with("$flagd", json!({"flagKey": "other", "timestamp": 0}));
    let e = set.evaluate("by-key", &ctx, NOW);
    assert_eq!((e.variant, e.reason), (Some("yes"), Reason::TargetingMatch));
    let meta = e.flag_metadata.expect("metadata");
    // The flag's own metadata wins over the set's; the rest is inherited.
    assert_eq!(meta.get("version"), Some(&json!("2")));
    assert_eq!(meta.get("team"), Some(&json!("payments")));
    assert_eq!(meta.get("flagSetId"), Some(&json!("set")));
    assert_eq!(set.evaluate("by-time", &ctx, NOW).variant, Some("past"));
    assert_eq!(
        set.evaluate("by-time", &ctx, 1_500_000_000).variant,
        Some("future")
    );
}

#[test]
fn fractional_shorthand_and_nested_expressions() {
    let ctx = EvaluationContext::with_targeting_key("user-1").with("tier", "gold");
    // Shorthand entries weigh 1; a single entry always wins.
    assert_eq!(
        eval(json!({"fractional": [["on"]]}), &ctx),
        (Some(json!("ON")), Some("on".into()), Reason::Split)
    );
    // Computed bucketing value and computed weights.
    let (_, variant, reason) = eval(
        json!({"fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "tier"}]},
            ["on", {"+": [25, 25]}],
            ["off", 50]
        ]}),
        &ctx,
    );
    assert!(variant.is_some());
    assert_eq!(reason, Reason::Split);
    // Nested inside `if`: TARGETING_MATCH, not SPLIT.
    let (_, _, reason) = eval(
        json!({"if": [true, {"fractional": [["on", 1], ["off", 1]]}, null]}),
        &ctx,
    );
    assert_eq!(reason, Reason::TargetingMatch);
}

#[test]
fn zero_values_of_every_type_are_values() {
    let set = lenient(&json!({"flags": {
        "b": {"state": "ENABLED", "variants": {"z": false}, "defaultVariant": "z"},
        "s": {"state": "ENABLED", "variants": {"z": ""}, "defaultVariant": "z"},
        "i": {"state": "ENABLED", "variants": {"z": 0}, "defaultVariant": "z"},
        "f": {"state": "ENABLED", "variants": {"z": 0.0}, "defaultVariant": "z"},
        "o": {"state": "ENABLED", "variants": {"z": {}}, "defaultVariant": "z"}
    }}));
    let ctx = EvaluationContext::new();
    assert!(!set.bool_value("b", &ctx, NOW, true).value);
    assert_eq!(set.string_value("s", &ctx, NOW, "x").value, "");
    assert_eq!(set.int_value("i", &ctx, NOW, 7).value, 0);
    assert_eq!(set.float_value("f", &ctx, NOW, 7.0).value, 0.0);
    assert!(
        set.object_value("o", &ctx, NOW, &serde_json::Map::new())
            .value
            .is_empty()
    );
    for k in ["b", "s", "i", "f", "o"] {
        let e = set.evaluate(k, &ctx, NOW);
        assert_eq!((e.variant, e.reason), (Some("z"), Reason::Static), "{k}");
        assert!(e.value.is_some(), "{k}");
    }
}

// ---- hardening: budgets and overflow ----

#[test]
fn reduce_over_a_huge_context_array_stops_at_the_budget() {
    let big: Vec<Value> = (0..200_000).map(Value::from).collect();
    let ctx = EvaluationContext::new().with("xs", Value::Array(big));
    let set = lenient(&flag(json!({"if": [
        {">": [{"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, 0]},
        "on", "off"
    ]})));
    let e = set.evaluate("f", &ctx, NOW);
    assert_eq!(
        (e.reason, e.error_code),
        (Reason::Error, Some(ErrorCode::General))
    );
    let message = e.error_message.expect("message");
    assert!(message.contains(&MAX_EVAL_COST.to_string()), "{message}");
    // A small array is fine.
    let ctx = EvaluationContext::new().with("xs", json!([1, 2, 3]));
    assert_eq!(set.evaluate("f", &ctx, NOW).variant, Some("on"));
}

#[test]
fn doubling_cat_stops_before_it_allocates_exponentially() {
    // reduce over 64 elements, each step doubling the string: 2^64 bytes unbounded.
    let xs: Vec<Value> = (0..64).map(Value::from).collect();
    let ctx = EvaluationContext::new().with("xs", Value::Array(xs));
    let set = lenient(&flag(json!({"reduce": [
        {"var": "xs"},
        {"cat": [{"var": "accumulator"}, {"var": "accumulator"}]},
        "ab"
    ]})));
    let e = set.evaluate("f", &ctx, NOW);
    assert_eq!(
        (e.reason, e.error_code),
        (Reason::Error, Some(ErrorCode::General))
    );
}

#[test]
fn substr_with_huge_lengths_and_starts_clamps_instead_of_wrapping() {
    let ctx = EvaluationContext::new();
    let cases = [
        (json!(["hello", 1, 9.0e18]), "ello"),
        (json!(["hello", 1, 1.0e300]), "ello"),
        (json!(["hello", -9.0e18, 2]), "he"),
        (json!(["hello", 2, -9.0e18]), ""),
        (json!(["hello", 9.0e18, 1]), ""),
        (json!(["hello", -2]), "lo"),
    ];
    for (args, want) in cases {
        let set = lenient(&json!({"flags": {"f": {
            "state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no",
            "targeting": {"if": [{"===": [{"substr": args}, want]}, "yes", "no"]}
        }}}));
        let e = set.evaluate("f", &ctx, NOW);
        assert_eq!(e.variant, Some("yes"), "substr {args} should be {want:?}");
    }
}

#[test]
fn exponential_ref_expansion_is_refused_at_load_with_a_location() {
    // Each evaluator references the next one four times: 4^12 copies of the last.
    let mut evaluators = serde_json::Map::new();
    for i in 0..12 {
        let next = json!({"$ref": format!("e{}", i + 1)});
        evaluators.insert(
            format!("e{i}"),
            json!({"or": [next.clone(), next.clone(), next.clone(), next]}),
        );
    }
    evaluators.insert("e12".into(), json!({"==": [{"var": "x"}, 1]}));
    let doc = json!({
        "$evaluators": evaluators,
        "flags": {
            "bomb": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
                "targeting": {"if": [{"$ref": "e0"}, "a", "b"]}},
            "fine": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}
        }
    });
    let src = serde_json::to_string_pretty(&doc).expect("json");
    assert!(src.len() < 4096);
    match FlagSet::from_json_str(&src) {
        Err(FlagsError::Invalid {
            pointer,
            location,
            message,
        }) => {
            assert_eq!(pointer, "/flags/bomb/targeting/if/0/$ref");
            assert!(location.is_some());
            assert!(message.contains("nodes"), "{message}");
        }
        other => panic!("expected a located error, got {other:?}"),
    }
    // Lenient: the bomb is a broken flag (PARSE_ERROR), the rest is served.
    let set = FlagSet::from_str_with(&src, Format::Json, Strictness::Lenient).expect("loads");
    let ctx = EvaluationContext::new();
    assert_eq!(
        set.evaluate("bomb", &ctx, NOW).error_code,
        Some(ErrorCode::ParseError)
    );
    assert_eq!(set.int_value("fine", &ctx, NOW, 0).value, 1);
}

#[test]
fn many_flags_each_under_the_flag_budget_hit_the_set_budget() {
    // 8^5 = 32,768 nodes per flag: under the per-flag cap, but 100 flags exceed the set's.
    let mut evaluators = serde_json::Map::new();
    for i in 0..5 {
        let next = json!({"$ref": format!("e{}", i + 1)});
        evaluators.insert(format!("e{i}"), json!({"or": vec![next; 8]}));
    }
    evaluators.insert("e5".into(), json!(true));
    let mut flags = serde_json::Map::new();
    for i in 0..100 {
        flags.insert(
            format!("f{i}"),
            json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a",
                "targeting": {"if": [{"$ref": "e0"}, "a", null]}}),
        );
    }
    let src = json!({"$evaluators": evaluators, "flags": flags}).to_string();
    let err =
        FlagSet::from_str_with(&src, Format::Json, Strictness::Lenient).expect_err("set budget");
    assert!(err.to_string().contains("flag set"), "{err}");
}

/// What the sync service sends in-process providers, which never see `$evaluators`: every
/// `$ref` replaced by its evaluator (chains too), as flagd stores targeting.
#[test]
fn targeting_inlined_replaces_every_ref() {
    let set = FlagSet::from_str_with(
        r#"{
          "$evaluators": {
            "is_de": {"==": [{"var": "country"}, "DE"]},
            "de_pro": {"and": [{"$ref": "is_de"}, {"==": [{"var": "plan"}, "pro"]}]}
          },
          "flags": {
            "chained": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                        "targeting": {"if": [{"$ref": "de_pro"}, "b", null]}},
            "plain": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                      "targeting": {"if": [true, "b", null]}},
            "dangling": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                         "targeting": {"$ref": "nowhere"}}
          }
        }"#,
        Format::Json,
        Strictness::Lenient,
    )
    .expect("loads");
    let inlined = |k: &str| set.flag(k).and_then(|f| f.targeting_inlined()).cloned();
    assert_eq!(
        inlined("chained"),
        Some(json!({"if": [{"and": [{"==": [{"var": "country"}, "DE"]},
                                    {"==": [{"var": "plan"}, "pro"]}]}, "b", null]}))
    );
    // As written where there is nothing to inline, or it does not resolve.
    assert_eq!(inlined("plain"), Some(json!({"if": [true, "b", null]})));
    assert_eq!(inlined("dangling"), Some(json!({"$ref": "nowhere"})));
    // `targeting()` stays as written (what the management API shows for stored flags).
    assert_eq!(
        set.flag("chained").and_then(|f| f.targeting()).cloned(),
        Some(json!({"if": [{"$ref": "de_pro"}, "b", null]}))
    );
}

/// Negative `fractional` weights count as 0, as flagd's current `fractional.go` does ("negative
/// weights can be the result of rollout calculations, so we log and clamp to 0 rather than
/// returning an error") and flagd-testbed's `fractional-negative-weight-flag` requires of
/// every provider; what a client gets back, in each case.
#[test]
fn negative_fractional_weights_count_as_zero() {
    let ctx = EvaluationContext::with_targeting_key("any-user");
    let on = (Some(json!("ON")), Some("on".into()), Reason::Split);
    let default = (Some(json!("OFF")), Some("off".into()), Reason::Default);
    // The testbed's flag: ["one", -50] is ["one", 0], so the other takes everyone.
    assert_eq!(
        eval(json!({"fractional": [["off", -50], ["on", 50]]}), &ctx),
        on
    );
    // However negative: clamped, never refused (flagd only refuses weights above 2^31-1).
    assert_eq!(
        eval(
            json!({"fractional": [["off", -1_000_000_000_000_i64], ["on", 1]]}),
            &ctx
        ),
        on
    );
    // Computed weights (the rollout case): 40 - 60 = -20 is 0.
    assert_eq!(
        eval(
            json!({"fractional": [["off", {"-": [40, 60]}], ["on", 60]]}),
            &ctx
        ),
        on
    );
    // Nested under `if`, the same choice with flagd's reason for nested targeting.
    assert_eq!(
        eval(
            json!({"if": [true, {"fractional": [["off", -50], ["on", 50]]}, null]}),
            &ctx
        ),
        (Some(json!("ON")), Some("on".into()), Reason::TargetingMatch)
    );
    // Every weight negative: a total of 0 has no bucket, so null -> default variant, DEFAULT
    // (testbed `fractional-zero-weights-flag`).
    assert_eq!(
        eval(json!({"fractional": [["on", -1], ["off", -3]]}), &ctx),
        default
    );
    // A negative non-integer is still not a whole number: flagd refuses the weights, null.
    assert_eq!(
        eval(json!({"fractional": [["off", -1.5], ["on", 50]]}), &ctx),
        default
    );
    // Through the typed accessor a client uses: the value, no error.
    let set = lenient(&flag(json!({"fractional": [["off", -50], ["on", 50]]})));
    let d = set.string_value("f", &ctx, NOW, "code-default");
    assert_eq!(
        (d.value, d.variant, d.reason, d.error_code),
        ("ON", Some("on"), Reason::Split, None)
    );
}

/// flagd-testbed's `fractional-as-condition-flag`: `fractional` may pick booleans (and
/// numbers, and null), and what it picks can be a condition rather than a variant.
#[test]
fn fractional_can_pick_a_condition() {
    let ctx = EvaluationContext::with_targeting_key("some-targeting-key");
    assert_eq!(
        eval(
            json!({"if": [{"fractional": [[true, 1], [false, 0]]}, "on", "off"]}),
            &ctx
        ),
        (Some(json!("ON")), Some("on".into()), Reason::TargetingMatch)
    );
    assert_eq!(
        eval(
            json!({"if": [{"fractional": [[true, 0], [false, 1]]}, "on", "off"]}),
            &ctx
        ),
        (
            Some(json!("OFF")),
            Some("off".into()),
            Reason::TargetingMatch
        )
    );
    // A null pick at the top is "no variant": the default, DEFAULT.
    assert_eq!(
        eval(json!({"fractional": [[null, 1]]}), &ctx),
        (Some(json!("OFF")), Some("off".into()), Reason::Default)
    );
}
