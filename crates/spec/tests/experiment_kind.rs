//! Argo's standalone `Experiment` kind: Argo's own example lints clean
//! beside its analysis templates, and every rule is reported at its
//! file:line:column with the field path.

use serin_spec::{Diagnostic, Experiment, ManifestSet, Resource, Severity, lint};

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples"
);

fn lint_text(yaml: &str) -> Vec<Diagnostic> {
    let mut set = ManifestSet::new();
    set.add_source("m.yaml", yaml);
    lint(&set)
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    lint_text(yaml)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

const TEMPLATE: &str = r#"---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: judge
spec:
  args:
  - name: canary-hash
  metrics:
  - name: judge
    provider:
      job:
        spec:
          template:
            spec:
              containers:
              - name: j
                image: sh
                command: [sh, -c, "true"]
"#;

fn experiment(spec: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata:\n  name: ab\nspec:\n{spec}{TEMPLATE}"
    )
}

const GOOD_TEMPLATES: &str = r#"  templates:
  - name: baseline
    selector:
      matchLabels: {app: a}
    template:
      metadata:
        labels: {app: a}
      spec:
        containers:
        - name: app
          image: argoproj/rollouts-demo:blue
  - name: canary
    replicas: 2
    selector:
      matchLabels: {app: b}
    template:
      metadata:
        labels: {app: b}
      spec:
        containers:
        - name: app
          image: argoproj/rollouts-demo:yellow
"#;

#[test]
fn argos_example_lints_clean_beside_its_analysis_templates() {
    let set = ManifestSet::load_paths(&[
        format!("{EXAMPLES}/analysis-templates.yaml"),
        format!("{EXAMPLES}/experiment-with-analysis.yaml"),
    ]);
    let ds = lint(&set);
    assert!(ds.iter().all(|d| d.severity != Severity::Error), "{ds:#?}");
    // No duration, nothing required: as in Argo, it runs until an analysis
    // fails or it is terminated — said as a warning at `spec`.
    let w: Vec<_> = ds
        .iter()
        .filter(|d| d.code == "runs-indefinitely")
        .collect();
    assert_eq!(w.len(), 1, "{ds:#?}");
    assert_eq!((w[0].path.as_str(), w[0].line), ("spec", 12), "{}", w[0]);
    assert!(
        set.experiments().count() == 1,
        "the Experiment is typed and runnable"
    );
}

#[test]
fn a_valid_experiment_has_no_finding() {
    let yaml = experiment(&format!(
        "  duration: 5m\n{GOOD_TEMPLATES}  analyses:\n  - name: compare\n    templateName: judge\n    requiredForCompletion: true\n    args:\n    - name: canary-hash\n      value: \"{{{{templates.canary.podTemplateHash}}}}\"\n"
    ));
    let ds = lint_text(&yaml);
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn each_rule_is_reported_at_its_field() {
    let cases: &[(&str, &str, &str, u32, u32)] = &[
        ("  duration: 5m\n", "missing-field", "spec.templates", 6, 3),
        (
            "  duration: soon\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n",
            "invalid-duration",
            "spec.duration",
            6,
            13,
        ),
        (
            "  templates:\n  - name: a\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n  duration: 1m\n",
            "missing-field",
            "spec.templates[0].selector",
            7,
            5,
        ),
        (
            "  duration: 1m\n  templates:\n  - name: a\n    selector:\n      matchLabels: {app: x}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n",
            "selector-mismatch",
            "spec.templates[0].selector",
            10,
            7,
        ),
        (
            "  duration: 1m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n",
            "missing-field",
            "spec.templates[0].template",
            8,
            5,
        ),
        (
            "  duration: 1m\n  scaleDownDelaySeconds: -1\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n",
            "invalid-value",
            "spec.scaleDownDelaySeconds",
            7,
            26,
        ),
        (
            "  duration: 1m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n",
            "duplicate-name",
            "spec.templates[1].name",
            11,
            11,
        ),
        (
            "  duration: 1m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n  analyses:\n  - name: x\n    templateName: nope\n",
            "missing-template",
            "spec.analyses[0].templateName",
            13,
            19,
        ),
        (
            "  duration: 1m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n  analyses:\n  - name: x\n    templateName: judge\n    args:\n    - name: canary-hash\n      value: \"{{templates.b.podTemplateHash}}\"\n",
            "invalid-value",
            "spec.analyses[0].args[0].value",
            16,
            14,
        ),
        (
            "  duration: 1m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n  analyses:\n  - name: x\n    templateName: judge\n    args:\n    - name: canary-hash\n      valueFrom:\n        podTemplateHashValue: Latest\n",
            "invalid-value",
            "spec.analyses[0].args[0].valueFrom.podTemplateHashValue",
            17,
            31,
        ),
    ];
    let mut wrong = Vec::new();
    for (spec, code, path, line, column) in cases {
        let e = errors(&experiment(spec));
        let hit = e.iter().find(|d| d.code == *code && d.path == *path);
        let Some(d) = hit else {
            panic!("no {code} at {path} for\n{spec}\nfound: {e:#?}");
        };
        assert_eq!(d.file, "m.yaml");
        if (d.line, d.column) != (*line, *column) {
            wrong.push(format!("{d} (want {line}:{column})"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn pods_of_experiment_templates_get_the_rollout_pod_checks() {
    let e = errors(&experiment(
        "  duration: 1m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template:\n      metadata: {labels: {app: a}}\n      spec:\n        containers:\n        - {name: c, image: i}\n        - {name: c, image: i}\n",
    ));
    assert!(
        e.iter().any(|d| d
            .path
            .starts_with("spec.templates[0].template.spec.containers")),
        "{e:#?}"
    );
}

#[test]
fn generate_name_is_respected() {
    let yaml = "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata:\n  generateName: ab-\nspec:\n  duration: 5m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n";
    assert!(errors(yaml).is_empty(), "{:#?}", errors(yaml));
    let mut set = ManifestSet::new();
    set.add_source("m.yaml", yaml);
    let Resource::Experiment(x) = &set.documents[0].resource else {
        panic!("typed as an Experiment");
    };
    let x: &Experiment = x;
    let name = x.run_name().expect("a name");
    assert!(name.starts_with("ab-") && name.len() == 8, "{name}");
    assert_eq!(x.run_name(), Some(name), "stable across calls and restarts");
    // Neither name nor generateName: located error.
    let e = errors(
        "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata: {}\nspec:\n  duration: 5m\n",
    );
    assert!(e.iter().any(|d| d.path == "metadata.name"), "{e:#?}");
}
