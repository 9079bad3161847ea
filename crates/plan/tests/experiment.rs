//! Argo's `Experiment` kind from manifest to engine spec (Argo's defaults,
//! generateName, the analyses the steps share) and in words.

use serin_engine::experiment_kind::ExperimentSpec;
use serin_spec::ManifestSet;

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples"
);

fn convert(
    yaml: &str,
) -> (
    ManifestSet,
    Result<ExperimentSpec, serin_plan::experiment::ExperimentError>,
) {
    let mut set = ManifestSet::new();
    set.add_source("m.yaml", yaml);
    let x = set
        .experiments()
        .next()
        .map(|(_, x)| x.clone())
        .expect("an Experiment");
    let spec = serin_plan::experiment::to_engine(&x);
    (set, spec)
}

#[test]
fn argos_example_converts_with_argos_defaults() {
    let set = ManifestSet::load_paths(&[
        format!("{EXAMPLES}/analysis-templates.yaml"),
        format!("{EXAMPLES}/experiment-with-analysis.yaml"),
    ]);
    let (_, x) = set.experiments().next().expect("the example");
    let spec = serin_plan::experiment::to_engine(x).expect("runs unchanged");
    assert_eq!(spec.name, "experiment-with-analysis");
    assert_eq!(spec.duration, None);
    assert_eq!(spec.progress_deadline, 600_000, "Argo's default");
    assert_eq!(spec.scale_down_delay, 30_000, "Argo's default");
    assert!(!spec.terminate);
    let t: Vec<(&str, u32)> = spec
        .templates
        .iter()
        .map(|t| (t.name.as_str(), t.replicas))
        .collect();
    assert_eq!(t, [("purple", 1), ("orange", 1)], "replicas default 1");
    assert_ne!(
        spec.templates[0].template_hash, spec.templates[1].template_hash,
        "each template is its own pod template"
    );
    let a: Vec<(&str, &str, bool)> = spec
        .analyses
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                a.analysis.templates[0].as_str(),
                a.required_for_completion,
            )
        })
        .collect();
    assert_eq!(
        a,
        [
            ("random-fail", "random-fail", false),
            ("pass", "pass", false)
        ]
    );
    let text = serin_plan::experiment::explain(&set, &spec);
    assert!(
        text.contains("runs until an analysis fails or it is terminated"),
        "{text}"
    );
    assert!(text.contains("pods go after 30s"), "{text}");
}

#[test]
fn fields_and_generate_name_reach_the_engine() {
    let (_, spec) = convert(
        "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata:\n  generateName: ab-\nspec:\n  duration: 2m\n  progressDeadlineSeconds: 90\n  scaleDownDelaySeconds: 0\n  terminate: true\n  templates:\n  - name: a\n    replicas: 3\n    selector: {matchLabels: {app: a}}\n    template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: i}]}}\n  analyses:\n  - name: x\n    templateName: t\n    clusterScope: true\n    requiredForCompletion: true\n",
    );
    let spec = spec.expect("converts");
    assert!(
        spec.name.starts_with("ab-") && spec.name.len() == 8,
        "{}",
        spec.name
    );
    assert_eq!(spec.duration, Some(120_000));
    assert_eq!(spec.progress_deadline, 90_000);
    assert_eq!(spec.scale_down_delay, 0);
    assert!(spec.terminate);
    assert_eq!(spec.templates[0].replicas, 3);
    assert_eq!(spec.analyses[0].analysis.templates, ["cluster:t"]);
    assert!(spec.analyses[0].required_for_completion);
}

#[test]
fn a_template_without_its_pod_template_is_refused_at_its_path() {
    let (set, spec) = convert(
        "apiVersion: argoproj.io/v1alpha1\nkind: Experiment\nmetadata:\n  name: ab\nspec:\n  duration: 2m\n  templates:\n  - name: a\n    selector: {matchLabels: {app: a}}\n",
    );
    let err = spec.expect_err("no pod template");
    assert_eq!(err.path, "spec.templates[0].template");
    let doc = &set.documents[0];
    let located = err.located(&set, doc);
    assert!(located.starts_with("m.yaml:8:"), "{located}");
}
