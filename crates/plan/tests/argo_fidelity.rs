//! `serin plan` against Argo Rollouts behaviour on small manifests written
//! for these tests.

use serin_spec::ManifestSet;

fn load(yaml: &str) -> ManifestSet {
    let mut set = ManifestSet::new();
    set.add_source("rollout.yaml", yaml);
    set
}

fn basic_canary(replicas: u32, weight: u32) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: basic
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: basic
  template:
    metadata:
      labels:
        app: basic
    spec:
      containers:
        - name: app
          image: example/app:1
  strategy:
    canary:
      steps:
        - setWeight: {weight}
        - pause: {{}}
"#
    )
}

fn explain(yaml: &str) -> String {
    let set = load(yaml);
    let (_, r) = set.rollouts().next().expect("one rollout");
    let spec = serin_plan::to_engine(&set, r).expect("converts");
    serin_plan::explain(&set, &spec).0
}

#[test]
fn basic_canary_plan_states_argos_split_and_never_an_empty_stable() {
    let text = explain(&basic_canary(1, 50));
    assert!(
        text.contains(
            "step 1: canary at 1 pod and stable at 1 pod (about 50 % of traffic for setWeight 50)"
        ),
        "{text}"
    );
    let text = explain(&basic_canary(3, 20));
    assert!(
        text.contains(
            "step 1: canary at 1 pod and stable at 3 pods (about 25 % of traffic for setWeight 20)"
        ),
        "{text}"
    );
    assert!(!text.contains("stable at 0 pods"), "{text}");
}

#[test]
fn blue_green_steps_are_numbered_without_gaps() {
    let yaml = r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: bg
spec:
  replicas: 2
  selector:
    matchLabels: {app: bg}
  template:
    metadata:
      labels: {app: bg}
    spec:
      containers:
        - name: app
          image: example/app:1
  strategy:
    blueGreen:
      activeService: bg-active
      autoPromotionEnabled: false
"#;
    let text = explain(yaml);
    let numbers: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().split_once(". ").map(|(n, _)| n))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(numbers, vec!["1", "2", "3"], "{text}");
}

const JOB_TEMPLATE: &str = r#"---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: smoke
spec:
  metrics:
    - name: smoke
      provider:
        job:
          spec:
            template:
              spec:
                restartPolicy: Never
                containers:
                  - name: smoke
                    image: curlimages/curl
"#;

#[test]
fn a_job_analysis_step_claims_no_zero_second_minimum() {
    let yaml = basic_canary(4, 25).replace(
        "        - pause: {}\n",
        "        - analysis:\n            templates:\n              - templateName: smoke\n",
    ) + JOB_TEMPLATE;
    let text = explain(&yaml);
    assert!(
        text.contains("step 2: analysis smoke (duration depends"),
        "{text}"
    );
    assert!(!text.contains("at least 0s"), "{text}");
}

#[test]
fn templated_intervals_count_with_the_rollouts_args() {
    let yaml = basic_canary(4, 25).replace(
        "        - pause: {}\n",
        "        - analysis:\n            templates:\n              - templateName: rate\n            args:\n              - name: every\n                value: 2m\n",
    ) + r#"---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: rate
spec:
  args:
    - name: every
      value: 30s
    - name: times
      value: "4"
  metrics:
    - name: rate
      interval: "{{args.every}}"
      count: "{{ args.times }}"
      provider:
        web:
          url: http://127.0.0.1:1/
"#;
    let text = explain(&yaml);
    // 4 measurements 2 minutes apart (the rollout's value beats the default).
    assert!(text.contains("analysis rate (at least 6m)"), "{text}");
}

#[test]
fn promoted_pauses_are_reported_done_in_the_simulation() {
    let set = load(&basic_canary(4, 50));
    let (_, r) = set.rollouts().next().expect("one rollout");
    let spec = serin_plan::to_engine(&set, r).expect("converts");
    let sim = serin_plan::simulate::simulate(&spec, 1_000, 1_000).expect("no invariant broken");
    assert!(
        sim.timeline.contains("step 2 done (promoted)"),
        "{}",
        sim.timeline
    );
}

#[test]
fn plan_refusals_carry_file_line_and_column() {
    let yaml = basic_canary(2, 50).replace(
        "      steps:\n",
        "      pingPong:\n        pingService: ping\n        pongService: pong\n      steps:\n",
    );
    let set = load(&yaml);
    let (doc, r) = set.rollouts().next().expect("one rollout");
    let err = serin_plan::to_engine(&set, r).expect_err("pingPong is refused");
    let text = err.located(&set, doc);
    assert!(
        text.starts_with("rollout.yaml:21:9: error: rollout basic: serin up will not run this"),
        "{text}"
    );
}
