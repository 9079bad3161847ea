//! setMirrorRoute from Argo's Istio mirror example to the proxy's config:
//! the VirtualService's listener copies matching requests to the canary
//! revision, and the config is one the proxy accepts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serin_controlplane::routing::{
    MirrorMatch, RolloutEndpoints, RolloutRouting, ValueMatch, proxy_config,
};
use serin_engine as e;
use serin_spec::ManifestSet;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples/istio/istio-mirror.yaml"
);

fn config(stable: &str, canary: &str) -> serin_controlplane::routing::ProxyConfig {
    let set = ManifestSet::load_paths(&[Path::new(EXAMPLE).to_path_buf()]);
    let (_, r) = set.rollouts().next().expect("the rollout");
    let spec = serin_plan::to_engine(&set, r).expect("plan accepts the mirror step");
    let e::Strategy::Canary(c) = &spec.strategy else {
        panic!("a canary");
    };
    let e::Step::SetMirrorRoute(mirror) = c.steps[1].clone() else {
        panic!("step 2 mirrors: {:?}", c.steps[1]);
    };
    let (s, k) = (e::RevisionHash::new(stable), e::RevisionHash::new(canary));
    let route = e::Route {
        services: [
            (e::ServiceRole::Stable, s.clone()),
            (e::ServiceRole::Canary, k),
        ]
        .into(),
        weights: vec![e::WeightedDestination {
            revision: s,
            weight: 100,
        }],
        header_routes: vec![],
        mirror_routes: vec![mirror],
    };
    let endpoints = RolloutEndpoints {
        ready: [
            (
                "aaa".to_string(),
                vec![SocketAddr::from(([127, 0, 0, 1], 1))],
            ),
            (
                "bbb".to_string(),
                vec![SocketAddr::from(([127, 0, 0, 1], 2))],
            ),
        ]
        .into(),
        ..RolloutEndpoints::default()
    };
    proxy_config(
        &set,
        &[RolloutRouting {
            rollout: r,
            route: &route,
            endpoints: &endpoints,
        }],
        &BTreeMap::new(),
    )
}

#[test]
fn the_virtual_service_listener_copies_post_color_to_the_canary() {
    let cfg = config("aaa", "bbb");
    cfg.validate().expect("the proxy accepts the config");
    let vs = cfg
        .services
        .iter()
        .find(|s| s.name == "istio-host-split-vsvc")
        .expect("the VirtualService's listener");
    assert_eq!(vs.mirror_routes.len(), 1);
    let m = &vs.mirror_routes[0];
    assert_eq!((m.hash.as_str(), m.percentage), ("bbb", 50));
    assert_eq!(
        m.matches,
        vec![MirrorMatch {
            method: Some(ValueMatch {
                exact: Some("POST".into()),
                ..ValueMatch::default()
            }),
            path: Some(ValueMatch {
                prefix: Some("/color".into()),
                ..ValueMatch::default()
            }),
            headers: vec![],
        }]
    );
    // Plain Services never mirror.
    for s in cfg.services.iter().filter(|s| s.name != vs.name) {
        assert!(s.mirror_routes.is_empty(), "{}", s.name);
    }
}

#[test]
fn no_copies_when_the_canary_is_the_stable() {
    let cfg = config("aaa", "aaa");
    cfg.validate().expect("valid");
    assert!(cfg.services.iter().all(|s| s.mirror_routes.is_empty()));
}
