//! The FlagRollout kind: loads typed, and every mistake is located
//! (file:line:column and field path).

use serin_spec::{ManifestSet, Resource, Severity, lint};

fn set(src: &str) -> ManifestSet {
    let mut set = ManifestSet::new();
    set.add_source("flags.yaml", src);
    set
}

/// (code, line, column, path) of every error and warning.
fn findings(src: &str) -> Vec<(String, u32, u32, String)> {
    lint(&set(src))
        .into_iter()
        .filter(|d| d.severity != Severity::Info)
        .map(|d| (d.code, d.line, d.column, d.path))
        .collect()
}

fn has(src: &str, code: &str, line: u32, col: u32, path: &str) {
    let f = findings(src);
    assert!(
        f.contains(&(code.to_string(), line, col, path.to_string())),
        "expected {code} at {line}:{col} {path}, got {f:#?}"
    );
}

const TEMPLATE: &str = "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-rate
spec:
  args:
    - name: service-name
  metrics:
    - name: error-rate
      successCondition: result <= 0.01
      provider:
        web:
          url: http://127.0.0.1:9/{{args.service-name}}
          jsonPath: \"{$.errorRate}\"
";

const GOOD: &str = "apiVersion: serin.dev/v1alpha1
kind: FlagRollout
metadata:
  name: new-payment-processor
spec:
  flag: new-payment-processor
  steps: [5, 10, 25, 50, 100]
  interval: 5m
  analysis:
    templates:
      - templateName: error-rate
    args:
      - name: service-name
        value: payment
";

#[test]
fn a_valid_flag_rollout_loads_typed_and_lints_clean() {
    let src = format!("{GOOD}{TEMPLATE}");
    assert_eq!(findings(&src), vec![]);
    let s = set(&src);
    let (_, f) = s.flag_rollouts().next().expect("one FlagRollout");
    assert_eq!(f.flag(), "new-payment-processor");
    assert_eq!(f.spec.steps, vec![5, 10, 25, 50, 100]);
    assert_eq!(
        f.spec.interval.parse().unwrap(),
        std::time::Duration::from_secs(300)
    );
    let a = f.spec.analysis.as_ref().unwrap();
    assert_eq!(a.templates[0].template_name, "error-rate");
    assert_eq!(a.args[0].value.as_deref(), Some("payment"));
}

#[test]
fn defaults_are_the_cli_defaults_and_the_flag_is_the_name() {
    let src = "apiVersion: serin.dev/v1alpha1\nkind: FlagRollout\nmetadata: {name: dark-mode}\nspec: {}\n";
    assert_eq!(findings(src), vec![]);
    let s = set(src);
    let (_, f) = s.flag_rollouts().next().unwrap();
    assert_eq!(f.flag(), "dark-mode");
    assert_eq!(f.spec.steps, vec![5, 10, 25, 50, 100]);
    assert_eq!(f.spec.interval.0, "5m");
    assert!(f.spec.analysis.is_none());
}

#[test]
fn steps_out_of_range_or_not_increasing_are_located() {
    let src = "apiVersion: serin.dev/v1alpha1
kind: FlagRollout
metadata:
  name: x
spec:
  steps:
    - 10
    - 0
    - 50
    - 50
    - 150
";
    has(src, "percentage-range", 8, 7, "spec.steps[1]");
    has(src, "steps-not-increasing", 10, 7, "spec.steps[3]");
    has(src, "percentage-range", 11, 7, "spec.steps[4]");
    assert_eq!(findings(src).len(), 3, "{:#?}", findings(src));
}

#[test]
fn empty_steps_bad_interval_and_wrong_types_are_located() {
    let src = "apiVersion: serin.dev/v1alpha1
kind: FlagRollout
metadata:
  name: x
spec:
  steps: []
  interval: 5 minutes
";
    has(src, "missing-field", 6, 10, "spec.steps");
    has(src, "invalid-duration", 7, 13, "spec.interval");
    let typed = "apiVersion: serin.dev/v1alpha1
kind: FlagRollout
metadata:
  name: x
spec:
  steps: [5, ten]
";
    has(typed, "wrong-type", 6, 14, "spec.steps[1]");
}

#[test]
fn a_missing_template_or_arg_is_an_error_like_for_rollouts() {
    let missing = GOOD.replace("templateName: error-rate", "templateName: latency");
    let src = format!("{missing}{TEMPLATE}");
    has(
        &src,
        "missing-template",
        11,
        23,
        "spec.analysis.templates[0].templateName",
    );
    let no_arg = GOOD.replace(
        "    args:\n      - name: service-name\n        value: payment\n",
        "",
    );
    let src = format!("{no_arg}{TEMPLATE}");
    has(
        &src,
        "missing-arg",
        11,
        23,
        "spec.analysis.templates[0].templateName",
    );
}

#[test]
fn two_flag_rollouts_of_one_flag_conflict() {
    let src = "apiVersion: serin.dev/v1alpha1
kind: FlagRollout
metadata: {name: a}
spec: {flag: checkout}
---
apiVersion: serin.dev/v1alpha1
kind: FlagRollout
metadata: {name: b}
spec:
  flag: checkout
";
    has(src, "flag-rollout-conflict", 10, 9, "spec.flag");
    let other_env = src.replace(
        "  flag: checkout\n",
        "  flag: checkout\n  environment: staging\n",
    );
    assert_eq!(findings(&other_env), vec![]);
}

#[test]
fn only_the_serin_api_group_is_accepted() {
    let src =
        "apiVersion: argoproj.io/v1alpha1\nkind: FlagRollout\nmetadata: {name: x}\nspec: {}\n";
    has(src, "unsupported-api-version", 1, 13, "apiVersion");
    let s = set(src);
    assert!(!matches!(s.documents[0].resource, Resource::FlagRollout(_)));
}

#[test]
fn unknown_fields_warn_at_their_key() {
    let src = "apiVersion: serin.dev/v1alpha1\nkind: FlagRollout\nmetadata: {name: x}\nspec:\n  step: [5]\n";
    has(src, "unknown-field", 5, 3, "spec.step");
}
