//! Weighted experiment templates reach the proxy: the router object's
//! listener (Argo's own example manifests) gets the experiment pods as
//! destinations of their own, counted under their own hash, while the
//! rollout's Services still never select them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serin_controlplane::routing::{RolloutEndpoints, RolloutRouting, proxy_config};
use serin_engine as e;
use serin_spec::ManifestSet;

fn example(file: &str) -> ManifestSet {
    ManifestSet::load_paths(&[format!(
        "{}/../../../shared/compat/argo-rollouts-examples/traffic-routing-experiment-step/{file}",
        env!("CARGO_MANIFEST_DIR")
    )])
}

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

fn dest(h: &str, weight: u32) -> e::WeightedDestination {
    e::WeightedDestination {
        revision: e::RevisionHash::new(h),
        weight,
    }
}

/// stable 70 %, canary 10 %, the experiment template's pods 20 %.
fn route() -> e::Route {
    e::Route {
        services: [
            (e::ServiceRole::Stable, e::RevisionHash::new("v1")),
            (e::ServiceRole::Canary, e::RevisionHash::new("v2")),
        ]
        .into(),
        weights: vec![dest("v1", 70), dest("v2", 10), dest("x1", 20)],
        header_routes: vec![],
        mirror_routes: vec![],
    }
}

fn endpoints() -> RolloutEndpoints {
    RolloutEndpoints {
        ready: [
            ("v1".to_string(), vec![addr(1)]),
            ("v2".to_string(), vec![addr(2)]),
        ]
        .into(),
        experiments: [("x1".to_string(), vec![addr(3), addr(4)])].into(),
    }
}

#[test]
fn every_example_router_listener_sends_the_experiment_its_share() {
    for (file, listener) in [
        (
            "istio-host-split-experiment-step.yaml",
            "istio-host-split-vsvc",
        ),
        ("rollout-alb-experiment-step.yaml", "alb-rollout-ingress"),
        (
            "rollout-smi-experiment-step.yaml",
            "rollout-smi-experiment-trafficsplit",
        ),
    ] {
        let set = example(file);
        let r = set.rollouts().next().map(|(_, r)| r).expect("a rollout");
        let (route, ep) = (route(), endpoints());
        let cfg = proxy_config(
            &set,
            &[RolloutRouting {
                rollout: r,
                route: &route,
                endpoints: &ep,
            }],
            &BTreeMap::new(),
        );
        cfg.validate().expect("a config the proxy accepts");
        let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
        let l = cfg
            .services
            .iter()
            .find(|s| s.name == listener)
            .unwrap_or_else(|| panic!("{file}: no listener {listener} in {names:?}"));
        let weights: Vec<(&str, u32)> = l
            .weights
            .iter()
            .map(|w| (w.hash.as_str(), w.weight))
            .collect();
        assert_eq!(weights, vec![("v1", 70), ("v2", 10), ("x1", 20)], "{file}");
        let x = l
            .revisions
            .iter()
            .find(|r| r.hash == "x1")
            .unwrap_or_else(|| panic!("{file}: no experiment destination"));
        assert_eq!(x.endpoints, vec![addr(3), addr(4)], "{file}");
        // No other listener (the stable and canary Services) sends to them.
        for s in cfg.services.iter().filter(|s| s.name != listener) {
            assert!(
                s.revisions
                    .iter()
                    .all(|r| r.hash != "x1" && !r.endpoints.contains(&addr(3))),
                "{file}: {} reaches experiment pods: {s:?}",
                s.name
            );
        }
    }
}

#[test]
fn experiment_pods_that_went_away_get_an_empty_destination_not_a_bad_config() {
    let set = example("istio-host-split-experiment-step.yaml");
    let r = set.rollouts().next().map(|(_, r)| r).expect("a rollout");
    let route = route();
    let ep = RolloutEndpoints {
        experiments: BTreeMap::new(),
        ..endpoints()
    };
    let cfg = proxy_config(
        &set,
        &[RolloutRouting {
            rollout: r,
            route: &route,
            endpoints: &ep,
        }],
        &BTreeMap::new(),
    );
    cfg.validate().expect("still a config the proxy accepts");
    let l = cfg
        .services
        .iter()
        .find(|s| s.name == "istio-host-split-vsvc")
        .expect("the VirtualService's listener");
    let x = l.revisions.iter().find(|r| r.hash == "x1").expect("x1");
    assert!(x.endpoints.is_empty());
}
