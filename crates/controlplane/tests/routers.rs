//! Every Argo traffic router maps onto Serin's one proxy: the object the
//! router edits in Kubernetes becomes a listener of that name, carrying the
//! engine's weights and header routes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serin_controlplane::routing::{RolloutEndpoints, RolloutRouting, proxy_config};
use serin_engine as e;
use serin_spec::ManifestSet;

fn rollout_yaml(traffic_routing: &str) -> String {
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
      canaryService: web-canary
      stableService: web-stable
      trafficRouting:
{traffic_routing}
      steps:
        - setWeight: 20
        - pause: {{}}
---
apiVersion: v1
kind: Service
metadata:
  name: web-root
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"#
    )
}

/// A weighted listener: name, (revision, weight) pairs, header route count.
type Listener = (String, Vec<(String, u32)>, usize);

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

/// The listeners (name, weights, header routes) for a canary at 20 % with a
/// header route set by a step.
fn listeners(traffic_routing: &str) -> Vec<Listener> {
    let mut set = ManifestSet::new();
    set.add_source("web.yaml", &rollout_yaml(traffic_routing));
    let lint_errors: Vec<String> = serin_spec::lint(&set)
        .into_iter()
        .filter(|d| d.severity == serin_spec::Severity::Error && d.code != "missing-service")
        .map(|d| d.to_string())
        .collect();
    assert!(lint_errors.is_empty(), "{lint_errors:?}");
    let (_, r) = set.rollouts().next().expect("the rollout");
    serin_plan::to_engine(&set, r).expect("plan accepts the router");
    let (a, b) = (e::RevisionHash::new("aaa"), e::RevisionHash::new("bbb"));
    let route = e::Route {
        services: [
            (e::ServiceRole::Stable, a.clone()),
            (e::ServiceRole::Canary, b.clone()),
        ]
        .into(),
        weights: vec![
            e::WeightedDestination {
                revision: a,
                weight: 80,
            },
            e::WeightedDestination {
                revision: b,
                weight: 20,
            },
        ],
        header_routes: vec![e::HeaderRoute {
            name: "tester".into(),
            matches: vec![e::HeaderMatch {
                name: "x-tester".into(),
                value: e::StringMatch::Exact("yes".into()),
            }],
        }],
        mirror_routes: vec![],
    };
    let endpoints = RolloutEndpoints {
        ready: [
            ("aaa".to_string(), vec![addr(1)]),
            ("bbb".to_string(), vec![addr(2)]),
        ]
        .into(),
        ..RolloutEndpoints::default()
    };
    let cfg = proxy_config(
        &set,
        &[RolloutRouting {
            rollout: r,
            route: &route,
            endpoints: &endpoints,
        }],
        &BTreeMap::new(),
    );
    cfg.services
        .iter()
        .filter(|s| !s.weights.is_empty())
        .map(|s| {
            (
                s.name.clone(),
                s.weights
                    .iter()
                    .map(|w| (w.hash.clone(), w.weight))
                    .collect(),
                s.header_routes.len(),
            )
        })
        .collect()
}

fn split() -> Vec<(String, u32)> {
    vec![("aaa".into(), 80), ("bbb".into(), 20)]
}

#[test]
fn each_router_object_is_a_weighted_listener_with_header_routes() {
    let cases: &[(&str, &[&str])] = &[
        (
            "        nginx:\n          stableIngress: web-ingress\n",
            &["web-ingress"],
        ),
        (
            "        alb:\n          ingress: web-alb\n          rootService: web-root\n          servicePort: 80\n",
            &["web-alb"],
        ),
        (
            "        smi:\n          rootService: web-root\n          trafficSplitName: web-split\n",
            &["web-root"],
        ),
        ("        smi: {}\n", &["web"]),
        (
            "        ambassador:\n          mappings: [web-a, web-b]\n",
            &["web-a", "web-b"],
        ),
        (
            "        appMesh:\n          virtualService:\n            name: web-mesh\n",
            &["web-mesh"],
        ),
        (
            "        traefik:\n          weightedTraefikServiceName: web-traefik\n",
            &["web-traefik"],
        ),
        (
            "        apisix:\n          route:\n            name: web-apisix\n",
            &["web-apisix"],
        ),
        (
            "        plugins:\n          argoproj-labs/gatewayAPI:\n            httpRoute: web-httproute\n            namespace: default\n",
            &["web-httproute"],
        ),
    ];
    for (tr, names) in cases {
        let got = listeners(tr);
        let want: Vec<Listener> = names.iter().map(|n| (n.to_string(), split(), 1)).collect();
        assert_eq!(got, want, "for\n{tr}");
    }
}

#[test]
fn smi_root_service_listener_carries_the_split_instead_of_spreading() {
    // Without the router, `web-root` spreads over every pod; with SMI it is
    // the root Service whose traffic the TrafficSplit divides — one listener.
    let got = listeners("        smi:\n          rootService: web-root\n");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "web-root");
}

#[test]
fn nginx_canary_by_header_annotation_becomes_a_header_route() {
    let got = listeners(
        "        nginx:\n          stableIngress: web-ingress\n          additionalIngressAnnotations:\n            canary-by-header: X-Canary\n            canary-by-header-value: iwantsit\n",
    );
    // The annotation's route plus the step's route.
    assert_eq!(got, vec![("web-ingress".into(), split(), 2)]);
}

#[test]
fn a_router_without_its_object_name_is_a_located_lint_error() {
    let mut set = ManifestSet::new();
    set.add_source(
        "web.yaml",
        &rollout_yaml("        nginx:\n          additionalIngressAnnotations: {}\n"),
    );
    let errors: Vec<serin_spec::Diagnostic> = serin_spec::lint(&set)
        .into_iter()
        .filter(|d| d.severity == serin_spec::Severity::Error && d.code != "missing-service")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, "missing-field");
    assert_eq!(errors[0].path, "spec.strategy.canary.trafficRouting.nginx");
    // Located at the router's value (its first field).
    assert_eq!(errors[0].line, 22);
}

#[test]
fn ping_pong_services_serve_stable_and_canary_behind_the_router() {
    let yaml = rollout_yaml("        alb:\n          ingress: web-alb\n          rootService: web-root\n          servicePort: 80\n")
        .replace(
            "      canaryService: web-canary\n      stableService: web-stable\n",
            "      pingPong:\n        pingService: web-ping\n        pongService: web-pong\n",
        )
        + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web-ping\nspec:\n  selector: {app: web}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web-pong\nspec:\n  selector: {app: web}\n";
    let mut set = ManifestSet::new();
    set.add_source("web.yaml", &yaml);
    let errors: Vec<String> = serin_spec::lint(&set)
        .into_iter()
        .filter(|d| d.severity == serin_spec::Severity::Error)
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (_, r) = set.rollouts().next().expect("the rollout");
    serin_plan::to_engine(&set, r).expect("plan accepts pingPong behind a router");
    let (a, b) = (e::RevisionHash::new("aaa"), e::RevisionHash::new("bbb"));
    let route = e::Route {
        services: [
            (e::ServiceRole::Stable, a.clone()),
            (e::ServiceRole::Canary, b.clone()),
        ]
        .into(),
        weights: vec![
            e::WeightedDestination {
                revision: a,
                weight: 90,
            },
            e::WeightedDestination {
                revision: b,
                weight: 10,
            },
        ],
        header_routes: vec![],
        mirror_routes: vec![],
    };
    let endpoints = RolloutEndpoints {
        ready: [
            ("aaa".to_string(), vec![addr(1)]),
            ("bbb".to_string(), vec![addr(2)]),
        ]
        .into(),
        ..RolloutEndpoints::default()
    };
    let cfg = proxy_config(
        &set,
        &[RolloutRouting {
            rollout: r,
            route: &route,
            endpoints: &endpoints,
        }],
        &BTreeMap::new(),
    );
    let revs = |name: &str| -> Vec<String> {
        cfg.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.revisions.iter().map(|r| r.hash.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(revs("web-ping"), vec!["aaa"]);
    assert_eq!(revs("web-pong"), vec!["bbb"]);
    let alb = cfg
        .services
        .iter()
        .find(|s| s.name == "web-alb")
        .expect("the ALB ingress listener");
    assert_eq!(alb.weights.len(), 2);
}
