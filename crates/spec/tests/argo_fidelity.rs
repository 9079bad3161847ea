//! Lint agrees with Argo Rollouts and with what `serin up` runs: argument
//! templates in any metric field, refusals as located errors, Job pods
//! checked like Rollout pods, and no rules Argo does not have.

use serin_spec::{Diagnostic, ManifestSet, Severity, lint};

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

fn template(args: &str, metric_fields: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: rate
spec:
  args:
{args}
  metrics:
    - name: rate
{metric_fields}
      provider:
        prometheus:
          address: http://127.0.0.1:9090
          query: sum(rate(http_requests_total{{job="{{{{args.service}}}}"}}[1m]))
"#
    )
}

#[test]
fn argument_templates_in_durations_use_the_defaults_or_are_accepted() {
    let args =
        "    - name: service\n    - name: analysis-interval\n      value: 30s\n    - name: delay\n";
    // A default that parses, and an argument known only per run.
    let ok = template(
        args,
        "      interval: \"{{args.analysis-interval}}\"\n      initialDelay: \"{{args.delay}}\"\n      count: \"{{args.delay}}\"",
    );
    assert_eq!(errors(&ok), vec![], "args are substituted before parsing");
    // A default that does not parse is reported at the field.
    let bad_args = "    - name: service\n    - name: analysis-interval\n      value: soon\n";
    let bad = template(bad_args, "      interval: \"{{args.analysis-interval}}\"");
    let e = errors(&bad);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].code, "invalid-duration");
    assert_eq!(e[0].path, "spec.metrics[0].interval");
    assert_eq!((e[0].line, e[0].column), (13, 17));
    assert!(e[0].message.contains("default"), "{}", e[0].message);
    // Counts and limits likewise.
    let count_args = "    - name: service\n    - name: n\n      value: many\n";
    let e = errors(&template(
        count_args,
        "      count: \"{{args.n}}\"\n      interval: 1m",
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "spec.metrics[0].count");
    let neg_args = "    - name: service\n    - name: n\n      value: \"-3\"\n";
    let e = errors(&template(neg_args, "      failureLimit: \"{{args.n}}\""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].message.contains("must be >= 0"), "{}", e[0].message);
}

#[test]
fn an_undeclared_argument_is_reported_at_the_field_that_uses_it() {
    let e = errors(&template("    - name: other", ""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].code, "undeclared-arg");
    assert_eq!(e[0].path, "spec.metrics[0].provider.prometheus.query");
    assert_eq!(e[0].line, 14, "the query line, not the provider");
}

fn canary(extra_strategy: &str, step: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: example/web:1
  strategy:
    canary:
{extra_strategy}
      steps:
{step}
        - pause: {{}}
"#
    )
}

#[test]
fn what_serin_up_refuses_is_a_located_error_saying_so() {
    let cases = [
        (
            canary(
                "      pingPong:\n        pingService: ping\n        pongService: pong\n",
                "        - setWeight: 10",
            ),
            "spec.strategy.canary.pingPong",
        ),
        (
            canary(
                "      trafficRouting:\n        plugins:\n          example.com/custom: {}\n",
                "        - setWeight: 10",
            ),
            "spec.strategy.canary.trafficRouting.plugins[\"example.com/custom\"]",
        ),
    ];
    for (yaml, path) in cases {
        let e: Vec<Diagnostic> = errors(&yaml)
            .into_iter()
            .filter(|d| d.code == "not-supported")
            .collect();
        assert_eq!(e.len(), 1, "{path}: {e:?}");
        assert_eq!(e[0].path, path);
        assert!(
            e[0].message.starts_with("serin up will not run this:"),
            "{}",
            e[0].message
        );
        assert!(e[0].line > 1 && e[0].column > 1, "{}", e[0]);
    }
}

/// Experiment template weights: accepted with any router that maps onto
/// the proxy (a warning where Argo itself would refuse the router), an
/// error without one, and an error when they and the canary's setWeight
/// leave the stable a negative share.
#[test]
fn experiment_weights_need_a_router_and_room_beside_the_canary() {
    let step = |w: u32| {
        format!(
            "        - setWeight: 10\n        - experiment:\n            duration: 5m\n            templates:\n              - {{name: baseline, specRef: stable, weight: {w}}}\n              - {{name: canary, specRef: canary, weight: {w}}}"
        )
    };
    let smi = "      canaryService: web-canary\n      stableService: web\n      trafficRouting:\n        smi: {}\n";
    let nginx = "      canaryService: web-canary\n      stableService: web\n      trafficRouting:\n        nginx:\n          stableIngress: web\n";
    let of = |yaml: &str, code: &str| -> Vec<Diagnostic> {
        lint_text(yaml)
            .into_iter()
            .filter(|d| d.code == code)
            .collect()
    };
    // 10 + 2 × 45 = 100: fine with SMI, no refusal, no warning.
    let ok = canary(smi, &step(45));
    assert_eq!(of(&ok, "not-supported"), vec![]);
    assert_eq!(of(&ok, "weight-range"), vec![]);
    assert_eq!(of(&ok, "not-portable"), vec![]);
    // 10 + 2 × 46 = 102: one error, at the weight that crosses 100.
    let e = of(&canary(smi, &step(46)), "weight-range");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].path,
        "spec.strategy.canary.steps[1].experiment.templates[1].weight"
    );
    assert_eq!(e[0].severity, Severity::Error);
    assert!(e[0].message.contains("add up to 102 %"), "{}", e[0].message);
    // nginx: Serin routes it, Argo would not (a warning, not an error).
    let w = of(&canary(nginx, &step(20)), "not-portable");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(
        of(&canary(nginx, &step(20)), "not-supported"),
        vec![],
        "routed through the proxy"
    );
    // No router: an error at each weight.
    let e: Vec<Diagnostic> = errors(&canary("", &step(20)))
        .into_iter()
        .filter(|d| d.message.contains("requires trafficRouting"))
        .collect();
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        e[0].path,
        "spec.strategy.canary.steps[1].experiment.templates[0].weight"
    );
}

#[test]
fn ping_pong_with_istio_needs_no_canary_or_stable_service() {
    let yaml = canary(
        "      pingPong:\n        pingService: ping\n        pongService: pong\n      trafficRouting:\n        istio:\n          virtualService:\n            name: vs\n",
        "        - setWeight: 10",
    ) + r#"---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: vs
spec:
  http:
    - route:
        - destination: {host: ping}
          weight: 100
        - destination: {host: pong}
          weight: 0
---
apiVersion: v1
kind: Service
metadata: {name: ping}
spec: {selector: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: pong}
spec: {selector: {app: web}}
"#;
    let codes: Vec<String> = errors(&yaml).into_iter().map(|d| d.code).collect();
    // No missing canaryService / stableService, and the route's ping/pong
    // destinations are accepted.
    assert_eq!(codes, Vec::<String>::new());
    // Without the Services, they are named at their fields.
    let alone = yaml.split("---\napiVersion: v1").next().unwrap_or("");
    let e = errors(alone);
    let paths: Vec<&str> = e.iter().map(|d| d.path.as_str()).collect();
    assert!(
        paths.contains(&"spec.strategy.canary.pingPong.pingService")
            && paths.contains(&"spec.strategy.canary.pingPong.pongService"),
        "{e:?}"
    );
}

#[test]
fn a_virtual_service_with_only_tls_routes_has_no_http_route_to_check() {
    let yaml = canary(
        "      canaryService: web-canary\n      stableService: web-stable\n      trafficRouting:\n        istio:\n          virtualService:\n            name: vs\n            tlsRoutes:\n              - port: 443\n                sniHosts: [web.example.com]\n",
        "        - setWeight: 10",
    ) + r#"---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: vs
spec:
  tls:
    - match:
        - port: 443
          sniHosts: [web.example.com]
      route:
        - destination: {host: web-stable}
          weight: 100
        - destination: {host: web-canary}
          weight: 0
---
apiVersion: v1
kind: Service
metadata: {name: web-stable}
spec: {selector: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: web-canary}
spec: {selector: {app: web}}
"#;
    let e = errors(&yaml);
    assert!(
        e.iter().all(|d| d.code != "missing-route"),
        "no HTTP route is required: {e:?}"
    );
}

const JOB_POD: &str = r#"
          job:
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers:
                    - name: check
                      image: curlimages/curl
                      resources:
                        limits: {memory: 12Q}
                    - name: check
                      image: curlimages/curl
"#;

#[test]
fn job_pods_in_templates_and_runs_get_the_rollout_pod_checks() {
    for (kind, spec_head) in [
        (
            "AnalysisTemplate",
            "spec:\n  metrics:\n    - name: job\n      provider:",
        ),
        (
            "ClusterAnalysisTemplate",
            "spec:\n  metrics:\n    - name: job\n      provider:",
        ),
        (
            "AnalysisRun",
            "spec:\n  metrics:\n    - name: job\n      provider:",
        ),
    ] {
        let yaml = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: j\n{spec_head}{}",
            JOB_POD.replace("\n          ", "\n        ")
        );
        let mut codes: Vec<(String, String)> = errors(&yaml)
            .into_iter()
            .map(|d| (d.code, d.path))
            .collect();
        codes.sort();
        let base = "spec.metrics[0].provider.job.spec.template.spec.containers";
        assert_eq!(
            codes,
            vec![
                ("duplicate-name".to_string(), format!("{base}[1].name")),
                (
                    "invalid-quantity".to_string(),
                    format!("{base}[0].resources.limits.memory")
                ),
            ],
            "{kind}"
        );
    }
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: example/web:1
"#;

fn ref_rollout(extra: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 3
  workloadRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
{extra}  strategy:
    canary:
      steps:
        - setWeight: 20
        - pause: {{duration: 10s}}
"#
    )
}

#[test]
fn workload_ref_takes_the_deployments_template_in_either_file_order() {
    for (first, second) in [
        (
            DEPLOYMENT.to_string(),
            ref_rollout("    scaleDown: progressively\n"),
        ),
        (
            ref_rollout("    scaleDown: progressively\n"),
            DEPLOYMENT.to_string(),
        ),
    ] {
        let mut set = ManifestSet::new();
        set.add_source("a.yaml", &first);
        set.add_source("b.yaml", &second);
        let e: Vec<Diagnostic> = lint(&set)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert!(e.is_empty(), "{e:?}");
        // The Rollout runs the Deployment's pods; the Deployment is not run
        // a second time on its own.
        let rollouts: Vec<(String, Option<String>)> = set
            .rollouts()
            .map(|(d, r)| {
                (
                    d.kind.clone(),
                    r.spec
                        .template
                        .as_ref()
                        .and_then(|t| t.spec.containers.first())
                        .and_then(|c| c.image.clone()),
                )
            })
            .collect();
        assert_eq!(
            rollouts,
            vec![("Rollout".to_string(), Some("example/web:1".to_string()))]
        );
    }
}

#[test]
fn workload_ref_mistakes_are_located_errors() {
    // No such Deployment: nothing to run.
    let e = errors(&ref_rollout(""));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "spec.workloadRef.name");
    assert!(
        e[0].message.starts_with("serin up will not run this"),
        "{}",
        e[0].message
    );
    // A scaleDown Argo does not know, and a template beside the reference.
    let mut set = ManifestSet::new();
    set.add_source("d.yaml", DEPLOYMENT);
    set.add_source(
        "r.yaml",
        &ref_rollout("    scaleDown: sometimes\n  template:\n    spec: {containers: [{name: x, image: y}]}\n"),
    );
    let mut paths: Vec<String> = lint(&set)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.path)
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "spec.template".to_string(),
            "spec.workloadRef.scaleDown".to_string()
        ]
    );
}

/// setMirrorRoute runs (Serin's proxy copies the requests): lint checks it
/// as Argo does (a router, a managed route name, a percentage) instead of
/// refusing it.
#[test]
fn mirror_routes_are_checked_not_refused() {
    let routed = "      canaryService: web-canary\n      stableService: web-stable\n      trafficRouting:\n        managedRoutes:\n          - name: mirror\n        nginx:\n          stableIngress: web\n";
    let ok = canary(
        routed,
        "        - setMirrorRoute:\n            name: mirror\n            percentage: 10\n            match:\n              - method:\n                  exact: GET\n                path:\n                  prefix: /api",
    );
    let diags = lint_text(&ok);
    assert!(
        !diags.iter().any(|d| d.path.contains("setMirrorRoute")),
        "{diags:?}"
    );

    let bad = canary(
        routed,
        "        - setMirrorRoute:\n            name: other\n            percentage: 120\n            match:\n              - path:\n                  exact: /a\n                  prefix: /b",
    );
    let e = errors(&bad);
    let at: Vec<&str> = e.iter().map(|d| d.path.as_str()).collect();
    assert!(
        at.contains(&"spec.strategy.canary.steps[0].setMirrorRoute.name"),
        "{at:?}"
    );
    assert!(
        at.contains(&"spec.strategy.canary.steps[0].setMirrorRoute.percentage"),
        "{at:?}"
    );
    assert!(
        at.contains(&"spec.strategy.canary.steps[0].setMirrorRoute.match[0].path"),
        "{at:?}"
    );
    assert!(!e.iter().any(|d| d.code == "not-supported"), "{e:?}");

    let unrouted = canary(
        "",
        "        - setMirrorRoute:\n            name: mirror\n            match:\n              - method:\n                  exact: GET",
    );
    let e = errors(&unrouted);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.contains("requires trafficRouting"),
        "{}",
        e[0].message
    );
}

/// A template no Rollout in the files uses may name a provider Serin lacks:
/// a warning (nothing would fail yet); used by a Rollout, an error.
#[test]
fn an_unused_template_with_an_unsupported_provider_is_a_warning() {
    let tmpl = "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: dd\nspec:\n  metrics:\n    - name: errors\n      provider:\n        datadog:\n          query: avg:errors\n";
    let d = lint_text(tmpl);
    let p: Vec<&Diagnostic> = d
        .iter()
        .filter(|d| d.path == "spec.metrics[0].provider.datadog")
        .collect();
    assert_eq!(p.len(), 1, "{d:?}");
    assert_eq!(p[0].severity, Severity::Warning);

    let user = canary(
        "",
        "        - analysis:\n            templates:\n              - templateName: dd",
    );
    let both = format!("{tmpl}---\n{user}");
    let d = lint_text(&both);
    let p: Vec<&Diagnostic> = d
        .iter()
        .filter(|d| d.path == "spec.metrics[0].provider.datadog")
        .collect();
    assert_eq!(p.len(), 1, "{d:?}");
    assert_eq!(p[0].severity, Severity::Error);
    assert_eq!(p[0].code, "not-supported");
}

/// An AnalysisTemplate `cmp` with one argument and a job metric.
const CMP: &str = "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: cmp
spec:
  args:
    - name: canary-hash
  metrics:
    - name: cmp
      provider:
        job:
          spec:
            template:
              spec:
                containers:
                  - name: cmp
                    image: sh
                    command: [sh, -c, 'exit 0']
";

#[test]
fn experiment_steps_are_checked_as_argo_does_and_accepted() {
    let good = canary(
        "",
        "        - experiment:
            duration: 1m
            templates:
              - {name: baseline, specRef: stable}
              - {name: canary, specRef: canary, replicas: 2}
            analyses:
              - name: cmp
                templateName: cmp
                args:
                  - {name: canary-hash, value: '{{templates.canary.podTemplateHash}}'}",
    ) + CMP;
    let all = lint_text(&good);
    assert!(all.iter().all(|d| d.severity != Severity::Error), "{all:?}");
    assert!(all.iter().all(|d| d.code != "runs-indefinitely"), "{all:?}");

    // No duration and no required analysis: Argo runs it until promoted.
    let forever = canary(
        "",
        "        - experiment:
            templates:
              - {name: canary, specRef: canary}",
    );
    let w: Vec<Diagnostic> = lint_text(&forever)
        .into_iter()
        .filter(|d| d.code == "runs-indefinitely")
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(w[0].path, "spec.strategy.canary.steps[0].experiment");

    let bad = canary(
        "",
        "        - experiment:
            duration: 1m
            templates:
              - {name: canary, specRef: latest}
              - {name: canary, specRef: stable, weight: 5}
            analyses:
              - name: cmp
                templateName: cmp
                args:
                  - {name: canary-hash, value: '{{templates.nope.podTemplateHash}}'}
              - name: other
                templateName: missing",
    ) + CMP;
    let mut e: Vec<(String, String)> = errors(&bad)
        .into_iter()
        .map(|d| (d.code.clone(), d.path.clone()))
        .collect();
    e.sort();
    let x = "spec.strategy.canary.steps[0].experiment";
    let mut want: Vec<(String, String)> = [
        ("duplicate-name", format!("{x}.templates[1].name")),
        ("invalid-step", format!("{x}.templates[1].weight")),
        ("invalid-value", format!("{x}.analyses[0].args[0].value")),
        ("invalid-value", format!("{x}.templates[0].specRef")),
        ("missing-template", format!("{x}.analyses[1].templateName")),
    ]
    .into_iter()
    .map(|(c, p)| (c.to_string(), p))
    .collect();
    want.sort();
    assert_eq!(e, want);
    // Every one is located in the file.
    assert!(errors(&bad).iter().all(|d| d.line > 1 && d.column > 1));
}
