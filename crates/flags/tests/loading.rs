//! Loading: located errors for bad documents, lenient mode like flagd, files from disk.

use serin_flags::{
    ErrorCode, EvaluationContext, FlagSet, FlagsError, Format, Location, Reason, Strictness,
};

fn invalid(src: &str, format: Format) -> (String, Option<Location>, String) {
    match FlagSet::from_str_with(src, format, Strictness::Strict) {
        Err(FlagsError::Invalid {
            pointer,
            location,
            message,
        }) => (pointer, location, message),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn json_errors_carry_pointer_and_line_column() {
    let src = "{\n  \"flags\": {\n    \"a\": {\n      \"state\": \"ON\",\n      \"variants\": {\"x\": 1}\n    }\n  }\n}";
    let (pointer, location, message) = invalid(src, Format::Json);
    assert_eq!(pointer, "/flags/a/state");
    assert_eq!(
        location,
        Some(Location {
            line: 4,
            column: 16
        })
    );
    assert!(message.contains("ENABLED"), "{message}");
}

#[test]
fn yaml_errors_carry_pointer_and_line_column() {
    let src = "flags:\n  a:\n    state: ENABLED\n    variants:\n      x: 1\n      y: \"s\"\n";
    let (pointer, location, message) = invalid(src, Format::Yaml);
    assert_eq!(pointer, "/flags/a/variants/y");
    assert_eq!(location.map(|l| l.line), Some(6));
    assert!(message.contains("mixed"), "{message}");
}

#[test]
fn structural_errors_are_reported() {
    let cases = [
        (
            r#"{"flags": {"a": {"variants": {"x": 1}}}}"#,
            "/flags/a",
            "state",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {}}}}"#,
            "/flags/a/variants",
            "non-empty",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "y"}}}"#,
            "/flags/a/defaultVariant",
            "not one of",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {"x": [1]}}}}"#,
            "/flags/a/variants/x",
            "boolean, string",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "metadata": {"m": [1]}}}}"#,
            "/flags/a/metadata/m",
            "metadata",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"nope": [1]}}}}"#,
            "/flags/a/targeting",
            "unknown operator",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"if": [{"$ref": "ghost"}, "x", null]}}}}"#,
            "/flags/a/targeting/if/0/$ref",
            "ghost",
        ),
        (
            r#"{"flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"sem_ver": ["1.0.0", "="]}}}}"#,
            "/flags/a/targeting/sem_ver",
            "arguments",
        ),
        (r#"{"nope": {}}"#, "", "flags"),
    ];
    for (src, want_ptr, want_msg) in cases {
        let (pointer, location, message) = invalid(src, Format::Json);
        assert_eq!(pointer, want_ptr, "{src}");
        assert!(location.is_some(), "{src}");
        assert!(message.contains(want_msg), "{src}: {message}");
    }
}

#[test]
fn syntax_errors_are_located() {
    match FlagSet::from_json_str("{\n  \"flags\": {,}\n}") {
        Err(FlagsError::Syntax {
            location: Some(l), ..
        }) => assert_eq!(l.line, 2),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match FlagSet::from_yaml_str("flags:\n  a: [1,\n") {
        Err(FlagsError::Syntax { location, .. }) => assert!(location.is_some()),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn self_referencing_evaluators_are_rejected_not_looped() {
    let src = r#"{"$evaluators": {"loop": {"!": {"$ref": "loop"}}},
        "flags": {"a": {"state": "ENABLED", "variants": {"x": 1}, "targeting": {"$ref": "loop"}}}}"#;
    let (_, _, message) = invalid(src, Format::Json);
    assert!(message.contains("too deep"), "{message}");
}

#[test]
fn lenient_mode_loads_broken_targeting_like_flagd() {
    // flagd-testbed "error-targeting-flag": flagd loads it and answers with the code default.
    let src = r#"{"flags": {
        "error-targeting-flag": {"state": "ENABLED", "variants": {"one": 1, "two": 2},
            "defaultVariant": "two", "targeting": {"invalid": ["this is not valid targeting"]}},
        "fine": {"state": "ENABLED", "variants": {"one": 1}, "defaultVariant": "one"}}}"#;
    assert!(FlagSet::from_json_str(src).is_err());
    let flags =
        FlagSet::from_str_with(src, Format::Json, Strictness::Lenient).expect("lenient load");
    assert_eq!(flags.warnings().len(), 1);
    assert!(
        flags.warnings()[0].message.contains("1:"),
        "{:?}",
        flags.warnings()
    );
    let d = flags.int_value("error-targeting-flag", &EvaluationContext::new(), 0, 3);
    assert_eq!(
        (d.value, d.reason, d.error_code),
        (3, Reason::Error, Some(ErrorCode::ParseError))
    );
    assert_eq!(
        flags
            .int_value("fine", &EvaluationContext::new(), 0, 3)
            .value,
        1
    );
}

#[test]
fn from_path_reads_json_and_yaml_and_names_the_file_in_errors() {
    let dir = std::env::temp_dir().join(format!("serin-flags-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let yaml = dir.join("flags.yaml");
    std::fs::write(
        &yaml,
        "flags:\n  a: {state: ENABLED, variants: {on: true}, defaultVariant: on}\n",
    )
    .expect("write");
    let flags = FlagSet::from_path(&yaml).expect("yaml file loads");
    assert!(flags.is_enabled("a", &EvaluationContext::new(), 0));
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        "{\"flags\": {\"a\": {\"state\": 1, \"variants\": {\"x\": 1}}}}",
    )
    .expect("write");
    let err = FlagSet::from_path(&bad)
        .expect_err("bad file fails")
        .to_string();
    assert!(
        err.contains("bad.json:1:") && err.contains("/flags/a/state"),
        "{err}"
    );
    let missing = FlagSet::from_path(dir.join("absent.json")).expect_err("missing file fails");
    assert!(matches!(missing, FlagsError::Io { .. }));
    std::fs::remove_dir_all(&dir).ok();
}
