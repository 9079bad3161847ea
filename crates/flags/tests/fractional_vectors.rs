//! flagd's own fractional vectors (published in `tests/vectors/fractional.json`, each case
//! citing its source file) must give the same variant here.

use serde_json::{Value, json};
use serin_flags::{EvaluationContext, FlagSet, Reason};

#[test]
fn every_published_vector_matches_flagd() {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/fractional.json")).expect("vector file is JSON");
    let cases = doc["cases"].as_array().expect("cases array");
    assert!(cases.len() >= 40, "the vector file lost cases");
    let mut failures = Vec::new();
    for c in cases {
        let key = c["flagKey"].as_str().expect("flagKey");
        let set = json!({"flags": {key: {
            "state": "ENABLED",
            "variants": c["variants"],
            "defaultVariant": c["defaultVariant"],
            "targeting": c["targeting"],
        }}});
        let flags = FlagSet::from_json_str(&set.to_string()).expect("vector flag loads");
        let ctx =
            EvaluationContext::from_map(c["context"].as_object().cloned().unwrap_or_default());
        let e = flags.evaluate(key, &ctx, 0);
        let (want_variant, want_reason) = match c["expectedVariant"].as_str() {
            Some(v) => (v, None),
            None => (
                c["defaultVariant"].as_str().expect("default"),
                Some(Reason::Default),
            ),
        };
        let reason_ok = match want_reason {
            Some(r) => e.reason == r,
            None => matches!(e.reason, Reason::TargetingMatch | Reason::Split),
        };
        if e.variant != Some(want_variant) || !reason_ok {
            failures.push(format!(
                "{}: want {want_variant} ({want_reason:?}), got {:?} ({:?}, {:?})",
                c["name"], e.variant, e.reason, e.error_message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
