//! Evaluation cases for every operator, reason and error code.

use serde_json::{Map, Value, json};
use serin_flags::{ErrorCode, EvaluationContext, FlagSet, Reason};

const NOW: i64 = 1_700_000_000;

/// One string flag whose targeting is `rule`, variants "yes"/"no", default "no".
fn rule_flag(rule: Value) -> FlagSet {
    let doc = json!({"flags": {"f": {
        "state": "ENABLED",
        "variants": {"yes": "yes", "no": "no", "true": "T", "false": "F", "1": "one"},
        "defaultVariant": "no",
        "targeting": rule,
    }}});
    FlagSet::from_json_str(&doc.to_string()).expect("test flag loads")
}

/// Evaluates `rule` (wrapped so its result picks variant "yes"/"no") against `ctx`.
fn check(rule: Value, ctx: Value) -> bool {
    let flags = rule_flag(json!({"if": [rule, "yes", "no"]}));
    let ctx = EvaluationContext::from_map(ctx.as_object().cloned().unwrap_or_default());
    let e = flags.evaluate("f", &ctx, NOW);
    assert_eq!(e.error_code, None, "{:?}", e.error_message);
    e.variant == Some("yes")
}

/// Evaluates `rule` and compares its raw result through `==` with `expected`.
fn yields(rule: Value, ctx: Value, expected: Value) -> bool {
    check(json!({"===": [rule, expected]}), ctx)
}

#[test]
fn var_reads_context_nested_paths_defaults_and_injected_properties() {
    assert!(check(
        json!({"==": [{"var": "user.name"}, "ann"]}),
        json!({"user": {"name": "ann"}})
    ));
    assert!(check(
        json!({"==": [{"var": "list.1"}, "b"]}),
        json!({"list": ["a", "b"]})
    ));
    assert!(check(
        json!({"==": [{"var": ["nope", "dflt"]}, "dflt"]}),
        json!({})
    ));
    assert!(check(
        json!({"==": [{"var": "$flagd.flagKey"}, "f"]}),
        json!({})
    ));
    assert!(check(
        json!({"==": [{"var": "$flagd.timestamp"}, NOW]}),
        json!({})
    ));
    assert!(check(
        json!({"==": [{"var": "targetingKey"}, "u1"]}),
        json!({"targetingKey": "u1"})
    ));
    assert!(check(
        json!({"==": [{"var": {"cat": ["a", ".b"]}}, 3]}),
        json!({"a": {"b": 3}})
    ));
    // The caller cannot override injected properties.
    assert!(check(
        json!({"==": [{"var": "$flagd.flagKey"}, "f"]}),
        json!({"$flagd": {"flagKey": "spoof"}})
    ));
}

#[test]
fn equality_and_comparison_follow_jsonlogic() {
    assert!(check(json!({"==": [1, "1"]}), json!({})));
    assert!(!check(json!({"===": [1, "1"]}), json!({})));
    assert!(check(json!({"!=": [1, 2]}), json!({})));
    assert!(check(json!({"!==": [1, "1"]}), json!({})));
    assert!(check(json!({"==": [true, 1]}), json!({})));
    assert!(!check(json!({"==": [null, 0]}), json!({})));
    assert!(check(json!({">": [3, 2]}), json!({})));
    assert!(check(json!({">=": [2, 2]}), json!({})));
    assert!(check(json!({"<": [1, 2, 3]}), json!({})));
    assert!(!check(json!({"<": [1, 3, 3]}), json!({})));
    assert!(check(json!({"<=": [1, 3, 3]}), json!({})));
    assert!(check(json!({"<": ["a", "b"]}), json!({})));
    assert!(check(
        json!({">": [{"var": "age"}, 17]}),
        json!({"age": "18"})
    ));
}

#[test]
fn logic_operators() {
    assert!(check(json!({"!": [false]}), json!({})));
    assert!(check(json!({"!!": [[0]]}), json!({})));
    assert!(!check(json!({"!!": [[]]}), json!({})));
    assert!(check(json!({"or": [false, 0, "x"]}), json!({})));
    assert!(!check(json!({"and": [true, 0, "x"]}), json!({})));
    assert!(yields(json!({"or": [0, "", "z"]}), json!({}), json!("z")));
    assert!(yields(json!({"and": [1, "", "z"]}), json!({}), json!("")));
    assert!(yields(
        json!({"if": [false, "a", false, "b", "c"]}),
        json!({}),
        json!("c")
    ));
    assert!(yields(
        json!({"?:": [true, "a", "b"]}),
        json!({}),
        json!("a")
    ));
}

#[test]
fn arithmetic_operators() {
    assert!(yields(json!({"+": [1, "2", 3]}), json!({}), json!(6)));
    assert!(yields(json!({"-": [5, 2]}), json!({}), json!(3)));
    assert!(yields(json!({"-": [5]}), json!({}), json!(-5)));
    assert!(yields(json!({"*": [2, 2.5]}), json!({}), json!(5)));
    assert!(yields(json!({"/": [9, 3]}), json!({}), json!(3)));
    assert!(yields(json!({"%": [7, 4]}), json!({}), json!(3)));
    assert!(yields(json!({"max": [1, 9, 3]}), json!({}), json!(9)));
    assert!(yields(json!({"min": [4, 2, 3]}), json!({}), json!(2)));
}

#[test]
fn array_operators() {
    let ctx = json!({"xs": [1, 2, 3]});
    assert!(check(
        json!({"==": [{"cat": {"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}}, "2,4,6"]}),
        ctx.clone()
    ));
    assert!(check(
        json!({"==": [{"cat": {"filter": [{"var": "xs"}, {">": [{"var": ""}, 1]}]}}, "2,3"]}),
        ctx.clone()
    ));
    assert!(yields(
        json!({"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 10]}),
        ctx.clone(),
        json!(16)
    ));
    assert!(check(
        json!({"all": [{"var": "xs"}, {">": [{"var": ""}, 0]}]}),
        ctx.clone()
    ));
    assert!(!check(json!({"all": [[], true]}), json!({})));
    assert!(check(
        json!({"some": [{"var": "xs"}, {"==": [{"var": ""}, 2]}]}),
        ctx.clone()
    ));
    assert!(check(
        json!({"none": [{"var": "xs"}, {">": [{"var": ""}, 5]}]}),
        ctx.clone()
    ));
    assert!(check(
        json!({"==": [{"cat": {"merge": [[1], 2, [3, 4]]}}, "1,2,3,4"]}),
        json!({})
    ));
    assert!(check(
        json!({"in": [{"var": "country"}, ["DE", "FR"]]}),
        json!({"country": "FR"})
    ));
    assert!(check(
        json!({"in": ["@acme", {"var": "email"}]}),
        json!({"email": "a@acme.io"})
    ));
}

#[test]
fn string_operators() {
    assert!(yields(
        json!({"cat": ["v", 1, ".", 2.5, true]}),
        json!({}),
        json!("v1.2.5true")
    ));
    assert!(yields(
        json!({"substr": ["jsonlogic", 4]}),
        json!({}),
        json!("logic")
    ));
    assert!(yields(
        json!({"substr": ["jsonlogic", -5]}),
        json!({}),
        json!("logic")
    ));
    assert!(yields(
        json!({"substr": ["jsonlogic", 1, 3]}),
        json!({}),
        json!("son")
    ));
    assert!(yields(
        json!({"substr": ["jsonlogic", 4, -2]}),
        json!({}),
        json!("log")
    ));
}

#[test]
fn missing_operators() {
    assert!(check(
        json!({"==": [{"cat": {"missing": ["a", "b", "c"]}}, "b"]}),
        json!({"a": 1, "c": 2})
    ));
    assert!(check(
        json!({"!": {"missing_some": [1, ["a", "b"]]}}),
        json!({"b": 1})
    ));
    assert!(!check(
        json!({"!": {"missing_some": [2, ["a", "b"]]}}),
        json!({"b": 1})
    ));
}

#[test]
fn flagd_string_comparison_operators() {
    // flagd-testbed custom-ops.json "starts-ends-flag".
    let rule = json!({"if": [{"starts_with": [{"var": "id"}, "abc"]}, "prefix",
        {"if": [{"ends_with": [{"var": "id"}, "xyz"]}, "postfix",
            {"if": [{"ends_with": [{"var": "id"}, 3]}, "fail", "none"]}]}]});
    let doc = json!({"flags": {"starts-ends-flag": {"state": "ENABLED",
        "variants": {"prefix": "prefix", "postfix": "postfix", "none": "none"},
        "defaultVariant": "none", "targeting": rule}}});
    let flags = FlagSet::from_json_str(&doc.to_string()).expect("loads");
    for (id, want) in [
        ("abcdef", "prefix"),
        ("uvwxyz", "postfix"),
        ("abcxyz", "prefix"),
        ("lmnopq", "none"),
        ("3", "none"),
    ] {
        let ctx = EvaluationContext::new().with("id", id);
        let d = flags.string_value("starts-ends-flag", &ctx, NOW, "fallback");
        assert_eq!(d.value, want, "id {id}");
    }
}

#[test]
fn flagd_sem_ver_operator() {
    // flagd-testbed custom-ops.json version flags and their gherkin examples.
    let rule = json!({"if": [{"sem_ver": [{"var": "version"}, "=", "2.0.0"]}, "equal",
        {"if": [{"sem_ver": [{"var": "version"}, ">", "2.0.0"]}, "greater",
            {"if": [{"sem_ver": [{"var": "version"}, "<", "2.0.0"]}, "lesser",
                {"if": [{"sem_ver": [{"var": "version"}, "=", "2.0.0.0"]}, "fail", "none"]}]}]}]});
    let mm = json!({"if": [{"sem_ver": [{"var": "version"}, "~", "3.0.0"]}, "minor",
        {"if": [{"sem_ver": [{"var": "version"}, "^", "3.0.0"]}, "major", "none"]}]});
    let doc = json!({"flags": {
        "v": {"state": "ENABLED", "defaultVariant": "none", "targeting": rule,
              "variants": {"equal": "equal", "greater": "greater", "lesser": "lesser", "none": "none"}},
        "mm": {"state": "ENABLED", "defaultVariant": "none", "targeting": mm,
              "variants": {"minor": "minor", "major": "major", "none": "none"}}}});
    let flags = FlagSet::from_json_str(&doc.to_string()).expect("loads");
    let cases = [
        ("v", "2.0.0", "equal"),
        ("v", "v2.1.0", "greater"),
        ("v", "1.9.0", "lesser"),
        ("v", "2.0.0-alpha", "lesser"),
        ("v", "2.0.0.0", "none"),
        ("mm", "3.0.1", "minor"),
        ("mm", "3.1.0", "major"),
        ("mm", "4.0.0", "none"),
    ];
    for (flag, version, want) in cases {
        let ctx = EvaluationContext::new().with("version", version);
        assert_eq!(
            flags.string_value(flag, &ctx, NOW, "fallback").value,
            want,
            "{flag} {version}"
        );
    }
    assert!(check(
        json!({"sem_ver": ["1.2.3", "!=", "1.2.4"]}),
        json!({})
    ));
    assert!(check(
        json!({"sem_ver": ["1.2.3", "<=", "1.2.3"]}),
        json!({})
    ));
    assert!(check(
        json!({"sem_ver": ["1.2.3", ">=", "1.2.3"]}),
        json!({})
    ));
}

#[test]
fn time_based_targeting_uses_the_given_time() {
    // flagd-testbed "timestamp-flag" style: compare a context time with $flagd.timestamp.
    let flags = rule_flag(
        json!({"if": [{">": [{"var": "$flagd.timestamp"}, 1_600_000_000]}, "yes", "no"]}),
    );
    let ctx = EvaluationContext::new();
    assert_eq!(
        flags.evaluate("f", &ctx, 1_700_000_000).variant,
        Some("yes")
    );
    assert_eq!(flags.evaluate("f", &ctx, 1_500_000_000).variant, Some("no"));
}

fn edge_flags() -> FlagSet {
    // flagd-testbed flags/edge-case-flags.json, evaluator-refs.json and evaluation.feature flags.
    FlagSet::from_json_str(r#"{
      "metadata": {"flagSetId": "edge", "version": "3"},
      "$evaluators": {"is_ballmer": {"==": ["ballmer@macrosoft.com", {"var": ["email"]}]}},
      "flags": {
        "static": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "two",
                   "metadata": {"owner": "payments"}},
        "empty-targeting": {"state": "ENABLED", "variants": {"one": 1}, "defaultVariant": "one", "targeting": {}},
        "targeting-null-variant-flag": {"state": "ENABLED", "variants": {"one": 1, "two": 2},
            "defaultVariant": "two", "targeting": {"if": [true, null, "one"]}},
        "missing-variant-targeting-flag": {"state": "ENABLED", "variants": {"one": 1, "two": 2},
            "defaultVariant": "two", "targeting": {"if": [true, "three", "one"]}},
        "non-string-variant-targeting-flag": {"state": "ENABLED", "variants": {"false": 1, "true": 2},
            "defaultVariant": "false", "targeting": {"if": [true, true, false]}},
        "array-result": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"merge": [[1]]}},
        "disabled": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
        "null-default": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": null},
        "no-default-targeted": {"state": "ENABLED", "variants": {"ceo": "CEO"},
            "targeting": {"if": [{"$ref": "is_ballmer"}, "ceo", null]}},
        "ref": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye", "none": "none"},
            "defaultVariant": "none", "targeting": {"if": [{"$ref": "is_ballmer"}, "hi", "bye"]}},
        "half": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2}, "defaultVariant": "a"},
        "obj": {"state": "ENABLED", "variants": {"a": {"color": "red"}}, "defaultVariant": "a"},
        "split": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
            "targeting": {"fractional": [["a", 50], ["b", 50]]}}
      }}"#).expect("edge flags load")
}

#[test]
fn every_reason() {
    let flags = edge_flags();
    let ctx = EvaluationContext::with_targeting_key("user-1");
    let e = flags.evaluate("static", &ctx, NOW);
    assert_eq!(
        (e.reason, e.variant, e.value),
        (Reason::Static, Some("two"), Some(&json!(2)))
    );
    let md = e.flag_metadata.expect("metadata");
    assert_eq!(
        (md.get("flagSetId"), md.get("owner")),
        (Some(&json!("edge")), Some(&json!("payments")))
    );
    assert_eq!(
        flags.evaluate("empty-targeting", &ctx, NOW).reason,
        Reason::Static
    );

    let e = flags.evaluate(
        "ref",
        &EvaluationContext::new().with("email", "ballmer@macrosoft.com"),
        NOW,
    );
    assert_eq!((e.reason, e.variant), (Reason::TargetingMatch, Some("hi")));
    assert_eq!(flags.evaluate("ref", &ctx, NOW).variant, Some("bye"));

    let e = flags.evaluate("split", &ctx, NOW);
    assert_eq!(e.reason, Reason::Split);
    assert!(e.variant.is_some());

    let e = flags.evaluate("targeting-null-variant-flag", &ctx, NOW);
    assert_eq!(
        (e.reason, e.variant, e.value),
        (Reason::Default, Some("two"), Some(&json!(2)))
    );

    let d = flags.bool_value("disabled", &ctx, NOW, false);
    assert_eq!(
        (d.value, d.reason, d.error_code, d.variant),
        (false, Reason::Disabled, None, None)
    );

    // Absent/null defaultVariant: the code default, reason DEFAULT.
    for code_default in [true, false] {
        let d = flags.bool_value("null-default", &ctx, NOW, code_default);
        assert_eq!(
            (d.value, d.reason, d.error_code),
            (code_default, Reason::Default, None)
        );
    }
    let d = flags.string_value(
        "no-default-targeted",
        &EvaluationContext::new().with("email", "woz@orange.com"),
        NOW,
        "Inventor",
    );
    assert_eq!((d.value, d.reason), ("Inventor", Reason::Default));
    let d = flags.string_value(
        "no-default-targeted",
        &EvaluationContext::new().with("email", "ballmer@macrosoft.com"),
        NOW,
        "x",
    );
    assert_eq!((d.value, d.reason), ("CEO", Reason::TargetingMatch));

    // Boolean targeting results pick the "true"/"false" variants, as in flagd.
    assert_eq!(
        flags
            .int_value("non-string-variant-targeting-flag", &ctx, NOW, 3)
            .value,
        2
    );
}

#[test]
fn every_error_code() {
    let flags = edge_flags();
    let ctx = EvaluationContext::new();
    let e = flags.evaluate("nope", &ctx, NOW);
    assert_eq!(
        (e.reason, e.error_code),
        (Reason::Error, Some(ErrorCode::FlagNotFound))
    );

    let d = flags.int_value("missing-variant-targeting-flag", &ctx, NOW, 3);
    assert_eq!(
        (d.value, d.reason, d.error_code),
        (3, Reason::Error, Some(ErrorCode::General))
    );
    let e = flags.evaluate("array-result", &ctx, NOW);
    assert_eq!(e.error_code, Some(ErrorCode::General));

    let d = flags.bool_value("static", &ctx, NOW, true);
    assert_eq!(
        (d.value, d.reason, d.error_code),
        (true, Reason::Error, Some(ErrorCode::TypeMismatch))
    );
    let d = flags.string_value("static", &ctx, NOW, "fb");
    assert_eq!(
        (d.value, d.error_code),
        ("fb", Some(ErrorCode::TypeMismatch))
    );
    let d = flags.int_value("half", &ctx, NOW, 7);
    assert_eq!((d.value, d.error_code), (7, Some(ErrorCode::TypeMismatch)));
    assert_eq!(flags.float_value("half", &ctx, NOW, 0.0).value, 1.5);
    assert_eq!(flags.float_value("static", &ctx, NOW, 0.0).value, 2.0);
    let empty = Map::new();
    let d = flags.object_value("obj", &ctx, NOW, &empty);
    assert_eq!(d.value.get("color"), Some(&json!("red")));
    let d = flags.object_value("static", &ctx, NOW, &empty);
    assert_eq!(d.error_code, Some(ErrorCode::TypeMismatch));
}

#[test]
fn fractional_without_targeting_key_falls_back_to_default() {
    let flags = edge_flags();
    let e = flags.evaluate("split", &EvaluationContext::new(), NOW);
    assert_eq!(
        (e.reason, e.variant, e.error_code),
        (Reason::Default, Some("a"), None)
    );
}

#[test]
fn the_seed_calls_work() {
    // The seed's LaunchDarkly usage: IsEnabled(flag, {user_id, country, plan}) and an
    // IntVariation for the rollout percentage.
    let flags = FlagSet::from_yaml_str(
        "flags:
  new-payment-processor:
    state: ENABLED
    variants: {on: true, off: false}
    defaultVariant: off
    targeting:
      if:
        - and:
            - in: [{var: country}, [US, CA]]
            - ==: [{var: plan}, enterprise]
        - on
        - null
  payment-rollout-percentage:
    state: ENABLED
    variants: {five: 5, quarter: 25}
    defaultVariant: quarter
",
    )
    .expect("seed flags load");
    let user = |id: &str, country: &str, plan: &str| {
        EvaluationContext::with_targeting_key(id)
            .with("user_id", id)
            .with("country", country)
            .with("plan", plan)
    };
    assert!(flags.is_enabled(
        "new-payment-processor",
        &user("u1", "US", "enterprise"),
        NOW
    ));
    assert!(!flags.is_enabled(
        "new-payment-processor",
        &user("u2", "DE", "enterprise"),
        NOW
    ));
    assert!(!flags.is_enabled("new-payment-processor", &user("u3", "US", "free"), NOW));
    assert!(!flags.is_enabled("missing-flag", &user("u1", "US", "enterprise"), NOW));
    let system = EvaluationContext::with_targeting_key("system");
    assert_eq!(
        flags
            .int_value("payment-rollout-percentage", &system, NOW, 0)
            .value,
        25
    );
}

#[test]
fn yaml_keeps_yaml_1_1_booleans_as_strings() {
    // strict_booleans: `on`/`off` are strings in YAML 1.2, so they are variant *keys* above and
    // here a string variant.
    let flags = FlagSet::from_yaml_str(
        "flags:\n  f:\n    state: ENABLED\n    variants: {a: yes, b: no}\n    defaultVariant: a\n",
    )
    .expect("loads");
    let d = flags.string_value("f", &EvaluationContext::new(), NOW, "x");
    assert_eq!(d.value, "yes");
}
