//! One test per check: each bad manifest yields its code at its exact place.

use serin_spec::{Diagnostic, ManifestSet, Severity, lint};

fn lint_str(src: &str) -> Vec<Diagnostic> {
    let mut set = ManifestSet::new();
    set.add_source("m.yaml", src);
    lint(&set)
}

/// (code, line, column, path) of every error and warning.
fn findings(src: &str) -> Vec<(String, u32, u32, String)> {
    lint_str(src)
        .into_iter()
        .filter(|d| d.severity != Severity::Info)
        .map(|d| (d.code, d.line, d.column, d.path))
        .collect()
}

fn one(src: &str, code: &str, line: u32, col: u32, path: &str) {
    let f = findings(src);
    assert!(
        f.contains(&(code.to_string(), line, col, path.to_string())),
        "expected {code} at {line}:{col} {path}, got {f:#?}"
    );
}

const SVC: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n";

fn canary(strategy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: web:1
  strategy:
{strategy}"
    )
}

#[test]
fn a_valid_canary_is_clean() {
    let src = canary(
        "    canary:\n      steps:\n        - setWeight: 20\n        - pause: {duration: 1h30m}\n        - setWeight: 100\n",
    );
    assert_eq!(findings(&src), vec![]);
}

#[test]
fn set_weight_out_of_range() {
    let src =
        canary("    canary:\n      steps:\n        - setWeight: 20\n        - setWeight: 120\n");
    one(
        &src,
        "weight-range",
        20,
        22,
        "spec.strategy.canary.steps[1].setWeight",
    );
}

#[test]
fn surge_and_unavailable_both_zero() {
    let src = canary("    canary:\n      maxSurge: 0\n      maxUnavailable: \"0%\"\n");
    one(
        &src,
        "surge-unavailable-zero",
        18,
        7,
        "spec.strategy.canary",
    );
}

#[test]
fn no_strategy() {
    let src = canary("    {}\n");
    one(&src, "missing-strategy", 17, 5, "spec.strategy");
}

#[test]
fn selector_must_match_template_labels() {
    let src =
        canary("    canary: {}\n").replace("matchLabels: {app: web}", "matchLabels: {app: api}");
    one(&src, "selector-mismatch", 8, 5, "spec.selector");
}

#[test]
fn container_without_image() {
    let src = canary("    canary: {}\n").replace("          image: web:1\n", "");
    one(
        &src,
        "missing-field",
        14,
        11,
        "spec.template.spec.containers[0].image",
    );
}

#[test]
fn wrong_type_is_located_at_the_value() {
    let src = canary("    canary: {}\n").replace("replicas: 4", "replicas: four");
    let f = lint_str(&src);
    let d = f
        .iter()
        .find(|d| d.code == "wrong-type")
        .expect("wrong-type");
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (6, 13, "spec.replicas")
    );
    assert!(d.message.contains("expected an integer"), "{}", d.message);
}

#[test]
fn yaml_11_booleans_are_strings() {
    let src =
        canary("    blueGreen:\n      activeService: web\n      autoPromotionEnabled: yes\n") + SVC;
    let f = lint_str(&src);
    let d = f
        .iter()
        .find(|d| d.code == "wrong-type")
        .expect("wrong-type");
    assert_eq!((d.line, d.column), (19, 29));
    assert!(d.hint.contains("only `true` and `false`"), "{}", d.hint);
}

#[test]
fn bad_pause_duration() {
    let src = canary("    canary:\n      steps:\n        - pause: {duration: 5 minutes}\n");
    one(
        &src,
        "invalid-duration",
        19,
        29,
        "spec.strategy.canary.steps[0].pause.duration",
    );
}

#[test]
fn step_with_two_exclusive_actions() {
    let src = canary("    canary:\n      steps:\n        - setWeight: 10\n          pause: {}\n");
    one(
        &src,
        "invalid-step",
        19,
        11,
        "spec.strategy.canary.steps[0]",
    );
}

#[test]
fn unknown_field_is_a_warning_at_the_key() {
    let src = canary("    canary:\n      stepz: []\n");
    let f = lint_str(&src);
    let d = f
        .iter()
        .find(|d| d.code == "unknown-field")
        .expect("unknown-field");
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (18, 7, "spec.strategy.canary.stepz")
    );
}

#[test]
fn missing_services_and_same_service() {
    let src =
        canary("    blueGreen:\n      activeService: web\n      previewService: web-preview\n")
            + SVC;
    one(
        &src,
        "missing-service",
        19,
        23,
        "spec.strategy.blueGreen.previewService",
    );
    assert_eq!(findings(&src).len(), 1);
}

#[test]
fn analysis_templates_must_exist_and_get_their_args() {
    let tmpl = "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  args: [{name: svc}]
  metrics:
    - name: ok
      provider: {prometheus: {address: http://p:9090, query: 'up{job=\"{{args.svc}}\"}'}}
";
    let src = canary(
        "    canary:\n      steps:\n        - analysis:\n            templates: [{templateName: rate}, {templateName: nope}, {templateName: rate, clusterScope: true}]\n",
    ) + tmpl;
    let f = findings(&src);
    let codes: Vec<&str> = f.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(
        codes,
        ["missing-arg", "missing-template", "missing-template"],
        "{f:#?}"
    );
    assert!(f[2].3.ends_with("templates[2].templateName"));
}

#[test]
fn undeclared_template_arg() {
    let src = "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rate}
spec:
  metrics:
    - name: ok
      interval: 30
      count: 3
      provider: {web: {url: 'http://x/{{args.host}}'}}
";
    let f = findings(src);
    let codes: Vec<&str> = f.iter().map(|x| x.0.as_str()).collect();
    // interval must be a duration string; {{args.host}} is not declared.
    assert_eq!(codes, ["wrong-type", "undeclared-arg"], "{f:#?}");
    let src = src.replace("interval: 30", "interval: 30x");
    let codes: Vec<String> = findings(&src).into_iter().map(|x| x.0).collect();
    assert_eq!(codes, ["invalid-duration", "undeclared-arg"]);
}

#[test]
fn istio_virtual_service_and_routes() {
    let vs = "---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: [web]
  http:
    - name: primary
      route:
        - destination: {host: web-stable}
          weight: 90
        - destination: {host: web-canary}
          weight: 20
";
    let svcs = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web-stable}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web-canary}\n";
    let strat = "    canary:\n      canaryService: web-canary\n      stableService: web-stable\n      trafficRouting:\n        istio:\n          virtualService: {name: vs, routes: [primary, secondary]}\n";
    let src = canary(strat) + vs + svcs;
    let f = findings(&src);
    let codes: Vec<&str> = f.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(codes, ["missing-route", "weight-sum"], "{f:#?}");
    let src = canary(&strat.replace("name: vs,", "name: other,")) + svcs;
    one(
        &src,
        "missing-virtual-service",
        22,
        34,
        "spec.strategy.canary.trafficRouting.istio.virtualService.name",
    );
}

#[test]
fn duplicate_resources() {
    let src = format!("{SVC}{SVC}");
    one(&src, "duplicate-resource", 9, 18, "metadata.name");
}

#[test]
fn syntax_errors_are_located_and_other_documents_still_load() {
    let src = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: [oops\n{SVC}");
    let d = lint_str(&src);
    let syn = d
        .iter()
        .find(|d| d.code == "yaml-syntax")
        .expect("syntax error");
    assert_eq!(syn.severity, Severity::Error);
    assert!(syn.line >= 3, "{syn}");
    let mut set = ManifestSet::new();
    set.add_source("m.yaml", &src);
    assert_eq!(
        set.services().count(),
        1,
        "the document after the error still loads"
    );
}

#[test]
fn json_manifests_load_with_locations() {
    let mut set = ManifestSet::new();
    set.add_source(
        "m.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Service\",\n  \"metadata\": {\"name\": \"Bad_Name\"}\n}\n",
    );
    let d = lint(&set);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].code.as_str(), d[0].line, d[0].column),
        ("invalid-name", 4, 24)
    );
}

#[test]
fn deployments_become_rolling_updates() {
    let src = "apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: api:1}]}
";
    one(
        src,
        "surge-unavailable-zero",
        7,
        29,
        "spec.strategy.rollingUpdate",
    );
    let mut set = ManifestSet::new();
    set.add_source("d.yaml", src);
    let (_, r) = set.rollouts().next().unwrap();
    assert!(r.from_deployment);
    assert!(r.spec.strategy.canary.as_ref().unwrap().steps.is_empty());
}

#[test]
fn unmanaged_kinds_are_info_only() {
    let d = lint_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n");
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].severity, d[0].code.as_str()),
        (Severity::Info, "unmanaged-kind")
    );
}

#[test]
fn pdb_checks() {
    let src = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec:\n  minAvailable: 150%\n  maxUnavailable: 1\n";
    let codes: Vec<String> = findings(src).into_iter().map(|x| x.0).collect();
    assert_eq!(codes, ["invalid-value", "invalid-value"]);
}

#[test]
fn model_round_trips_through_json() {
    let mut set = ManifestSet::new();
    set.add_source(
        "r.yaml",
        &canary("    canary:\n      steps: [{setWeight: 5}, {pause: {duration: 30}}]\n"),
    );
    let (_, r) = set.rollouts().next().unwrap();
    let json = serde_json::to_value(r).unwrap();
    let back: serin_spec::Rollout = serde_json::from_value(json).unwrap();
    assert_eq!(&back, r);
}

#[test]
fn one_wrong_type_does_not_hide_the_other_problems() {
    let src = canary("    canary:\n      steps:\n        - setWeight: 20\n          pause: {}\n")
        .replace("replicas: 4", "replicas: \"4\"")
        .replace(
            "          image: web:1\n",
            "          ports: [{containerPort: http}]\n",
        );
    let f = findings(&src);
    let codes: Vec<&str> = f.iter().map(|x| x.0.as_str()).collect();
    // The ports list that failed to load is not reported again as missing;
    // the image, the step and the replicas are all reported.
    assert_eq!(
        codes,
        ["wrong-type", "missing-field", "wrong-type", "invalid-step"],
        "{f:#?}"
    );
    assert_eq!(
        f[2].3,
        "spec.template.spec.containers[0].ports[0].containerPort"
    );
    let mut set = ManifestSet::new();
    set.add_source("m.yaml", &src);
    assert_eq!(
        set.documents[0].repaired,
        [
            "spec.replicas",
            "spec.template.spec.containers[0].ports[0].containerPort",
            "spec.template.spec.containers[0].ports"
        ]
    );
}
