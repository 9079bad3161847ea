//! Argo steps that combine actions, and `setMirrorRoute`, from the real
//! Argo examples in shared/compat: converted with every action kept, and
//! explained.

use std::path::Path;

use serin_engine as e;
use serin_spec::{ManifestSet, Severity, lint};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples"
);

fn load(rel: &str) -> ManifestSet {
    ManifestSet::load_paths(&[Path::new(DIR).join(rel)])
}

fn engine_spec(set: &ManifestSet) -> e::RolloutSpec {
    let (_, r) = set.rollouts().next().expect("a rollout");
    serin_plan::to_engine(set, r).expect("converts")
}

fn steps(spec: &e::RolloutSpec) -> &[e::Step] {
    match &spec.strategy {
        e::Strategy::Canary(c) => &c.steps,
        e::Strategy::BlueGreen(_) => panic!("a canary"),
    }
}

/// APISIX's first step sets the canary scale *and* a header route; both
/// reach the engine (the header route used to be dropped).
#[test]
fn the_apisix_example_keeps_both_actions_of_its_first_step() {
    let set = load("apisix");
    let errors: Vec<String> = lint(&set)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let spec = engine_spec(&set);
    assert_eq!(
        steps(&spec)[0],
        e::Step::Combined(vec![
            e::Step::SetCanaryScale(e::CanaryScale::Replicas(1)),
            e::Step::SetHeaderRoute(e::HeaderRoute {
                name: "set-header".into(),
                matches: vec![e::HeaderMatch {
                    name: "trace".into(),
                    value: e::StringMatch::Exact("debug".into()),
                }],
            }),
        ])
    );
    let (text, _) = serin_plan::explain(&set, &spec);
    let first = text
        .lines()
        .find(|l| l.trim_start().starts_with("step 1:"))
        .expect("step 1 explained");
    assert!(
        first.contains("canary scaled to 1 pod") && first.contains("trace: debug"),
        "{first}"
    );
}

/// The Istio mirror example runs: its setMirrorRoute is an engine step,
/// explained with its share, its matches and what happens to the copies.
#[test]
fn the_istio_mirror_example_converts_and_is_explained() {
    let set = load("istio/istio-mirror.yaml");
    let errors: Vec<String> = lint(&set)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "lint no longer refuses it: {errors:?}");
    let spec = engine_spec(&set);
    assert_eq!(
        steps(&spec)[1],
        e::Step::SetMirrorRoute(e::MirrorRoute {
            name: "mirror-route".into(),
            percentage: 50,
            matches: vec![e::MirrorMatch {
                method: Some(e::StringMatch::Exact("POST".into())),
                path: Some(e::StringMatch::Prefix("/color".into())),
                headers: vec![],
            }],
        })
    );
    let (text, _) = serin_plan::explain(&set, &spec);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("step 2:"))
        .expect("step 2 explained");
    assert!(
        line.contains("50 %")
            && line.contains("method POST")
            && line.contains("path /color*")
            && line.contains("discarded"),
        "{line}"
    );
}

/// A mirror step without a percentage copies every matching request, as
/// in Argo; one without matches removes the route.
#[test]
fn mirror_defaults_follow_argo() {
    let yaml = std::fs::read_to_string(Path::new(DIR).join("istio/istio-mirror.yaml"))
        .expect("example")
        .replace("            percentage: 50\n", "");
    let mut set = ManifestSet::new();
    set.add_source("mirror.yaml", &yaml);
    let spec = engine_spec(&set);
    let e::Step::SetMirrorRoute(m) = &steps(&spec)[1] else {
        panic!("a mirror step: {:?}", steps(&spec)[1]);
    };
    assert_eq!(m.percentage, 100);
}

/// Argo's baseline-vs-canary example: an experiment step with a baseline
/// from the stable's template and a canary from the new one reaches the
/// engine as such, and `serin plan` says what it runs and until when.
#[test]
fn the_baseline_vs_canary_example_converts_to_an_experiment_step_and_is_explained() {
    let set = load("rollout-baseline-vs-canary.yaml");
    let spec = engine_spec(&set);
    let e::Step::Experiment(x) = &steps(&spec)[0] else {
        panic!("an experiment step: {:?}", steps(&spec)[0]);
    };
    assert_eq!(x.duration, None);
    let t: Vec<(&str, e::SpecRef, u32)> = x
        .templates
        .iter()
        .map(|t| (t.name.as_str(), t.spec_ref, t.replicas))
        .collect();
    assert_eq!(
        t,
        vec![
            ("baseline", e::SpecRef::Stable, 1),
            ("canary", e::SpecRef::Canary, 1)
        ]
    );
    let (text, _) = serin_plan::explain(&set, &spec);
    assert!(
        text.contains("step 1: experiment at 0 %: runs baseline (1 pod of the stable's template) and canary (1 pod of the canary's template) beside the rollout, without traffic, until `serin promote`"),
        "{text}"
    );
}

/// A timed experiment with a required analysis counts its duration in the
/// plan's minimum; a template weight needs a router and, with the canary's
/// setWeight, at most 100 %, else an error at its field.
#[test]
fn experiment_durations_count_and_weights_need_a_router_and_room() {
    let yaml = |routing: &str, weight: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: x
spec:
  replicas: 2
  selector:
    matchLabels: {{app: x}}
  template:
    metadata:
      labels: {{app: x}}
    spec:
      containers:
        - name: x
          image: example/x:1
  strategy:
    canary:
{routing}      steps:
        - setWeight: 10
        - experiment:
            duration: 5m
            templates:
              - {{name: canary, specRef: canary, replicas: 2{weight}}}
            analyses:
              - {{name: judge, templateName: judge, requiredForCompletion: true}}
"
        )
    };
    let routing = "      canaryService: x-canary\n      stableService: x\n      trafficRouting:\n        smi: {}\n";
    let mut set = ManifestSet::new();
    set.add_source("x.yaml", &yaml("", ""));
    let (_, r) = set.rollouts().next().expect("a rollout");
    let spec = serin_plan::to_engine(&set, r).expect("converts");
    let (text, min) = serin_plan::explain(&set, &spec);
    assert_eq!(min, 300_000, "{text}");
    assert!(
        text.contains("canary (2 pods of the canary's template)")
            && text
                .contains("for 5m once they are available and until the required analyses succeed")
            && text.contains("judge (template judge, required)"),
        "{text}"
    );
    // Without a router: an error at the weight.
    let mut set = ManifestSet::new();
    set.add_source("x.yaml", &yaml("", ", weight: 5"));
    let (doc, r) = set.rollouts().next().expect("a rollout");
    let err = serin_plan::to_engine(&set, r).expect_err("a weight needs a router");
    let text = err.located(&set, doc);
    assert!(
        text.starts_with("x.yaml:23:70: error: ")
            && text.contains("requires trafficRouting")
            && text.ends_with("(at spec.strategy.canary.steps[1].experiment.templates[0].weight)"),
        "{text}"
    );
    // With one: the weight is the template's share, from the stable's.
    let mut set = ManifestSet::new();
    set.add_source("x.yaml", &yaml(routing, ", weight: 5"));
    let (_, r) = set.rollouts().next().expect("a rollout");
    let spec = serin_plan::to_engine(&set, r).expect("a routed weight converts");
    let (text, _) = serin_plan::explain(&set, &spec);
    assert!(
        text.contains("canary (2 pods of the canary's template, 5 % of the traffic)"),
        "{text}"
    );
    // 10 % canary + 95 % experiment: the stable's share would be negative.
    let mut set = ManifestSet::new();
    set.add_source("x.yaml", &yaml(routing, ", weight: 95"));
    let (doc, r) = set.rollouts().next().expect("a rollout");
    let err = serin_plan::to_engine(&set, r).expect_err("over 100 %");
    let text = err.located(&set, doc);
    assert!(
        text.contains("add up to 105 %, over 100")
            && text.ends_with("(at spec.strategy.canary.steps[1].experiment.templates[0].weight)"),
        "{text}"
    );
}
