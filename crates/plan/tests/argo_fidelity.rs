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
