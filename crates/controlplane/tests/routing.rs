//! Routing from the seed's manifests: which listener sends where.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serin_controlplane::routing::{RolloutEndpoints, RolloutRouting, proxy_config};
use serin_engine as e;
use serin_spec::ManifestSet;

fn seed() -> ManifestSet {
    ManifestSet::load_paths(&[concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/seed/manifests"
    )])
}

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

fn rollout<'a>(set: &'a ManifestSet, name: &str) -> &'a serin_spec::Rollout {
    set.rollouts()
        .map(|(_, r)| r)
        .find(|r| r.metadata.name.as_deref() == Some(name))
        .unwrap()
}

#[test]
fn seed_canary_virtual_service_carries_weights_and_the_canary_header() {
    let set = seed();
    let r = rollout(&set, "frontend-app");
    let (a, b) = (e::RevisionHash::new("aaa"), e::RevisionHash::new("bbb"));
    let route = e::Route {
        services: [
            (e::ServiceRole::Stable, a.clone()),
            (e::ServiceRole::Canary, b.clone()),
        ]
        .into(),
        weights: vec![
            e::WeightedDestination {
                revision: a.clone(),
                weight: 95,
            },
            e::WeightedDestination {
                revision: b.clone(),
                weight: 5,
            },
        ],
        header_routes: vec![],
        mirror_routes: vec![],
    };
    let endpoints = RolloutEndpoints {
        ready: [
            ("aaa".to_string(), vec![addr(1), addr(2)]),
            ("bbb".to_string(), vec![addr(3)]),
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
        &BTreeMap::from([("frontend-app-vs".to_string(), 18080)]),
    );
    let vs = cfg
        .services
        .iter()
        .find(|s| s.name == "frontend-app-vs")
        .expect("a listener for the VirtualService");
    assert_eq!(vs.listen, addr(18080));
    assert_eq!(vs.app, "frontend-app");
    assert_eq!(
        vs.weights
            .iter()
            .map(|w| (w.hash.as_str(), w.weight))
            .collect::<Vec<_>>(),
        vec![("aaa", 95), ("bbb", 5)]
    );
    assert_eq!(
        vs.header_routes.len(),
        1,
        "the VirtualService's `canary: true` match"
    );
    assert_eq!(vs.header_routes[0].hash, "bbb");
    assert_eq!(vs.header_routes[0].matches[0].name, "canary");
    assert_eq!(
        vs.header_routes[0].matches[0].exact.as_deref(),
        Some("true")
    );
    let ends: Vec<_> = vs
        .revisions
        .iter()
        .map(|r| (r.hash.as_str(), r.endpoints.len()))
        .collect();
    assert_eq!(ends, vec![("aaa", 2), ("bbb", 1)]);
}

#[test]
fn seed_blue_green_active_and_preview_select_one_revision_each() {
    let set = seed();
    let r = rollout(&set, "payment-service");
    let route = e::Route {
        services: [
            (e::ServiceRole::Active, e::RevisionHash::new("old")),
            (e::ServiceRole::Preview, e::RevisionHash::new("new")),
        ]
        .into(),
        ..Default::default()
    };
    let endpoints = RolloutEndpoints {
        ready: [
            ("old".to_string(), vec![addr(1)]),
            ("new".to_string(), vec![addr(2)]),
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
    let active = cfg
        .services
        .iter()
        .find(|s| s.name == "payment-service-active")
        .unwrap();
    let preview = cfg
        .services
        .iter()
        .find(|s| s.name == "payment-service-preview")
        .unwrap();
    assert_eq!(
        active
            .revisions
            .iter()
            .map(|r| r.hash.as_str())
            .collect::<Vec<_>>(),
        vec!["old"]
    );
    assert_eq!(
        preview
            .revisions
            .iter()
            .map(|r| r.hash.as_str())
            .collect::<Vec<_>>(),
        vec!["new"]
    );
    assert_eq!(
        active.listen.port(),
        0,
        "no port configured: the proxy picks one"
    );
}

#[test]
fn a_rollout_without_services_gets_its_own_listener_over_all_revisions() {
    let set = seed();
    // The seed's Deployment has no Service: a rolling update shares traffic
    // across both revisions by their ready pods.
    let r = rollout(&set, "api-server");
    let route = e::Route::default();
    let endpoints = RolloutEndpoints {
        ready: [
            ("v1".to_string(), vec![addr(1), addr(2)]),
            ("v2".to_string(), vec![addr(3)]),
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
    let s = cfg
        .services
        .iter()
        .find(|s| s.name == "api-server")
        .unwrap();
    assert!(s.weights.is_empty());
    assert_eq!(
        s.revisions.iter().map(|r| r.endpoints.len()).sum::<usize>(),
        3
    );
}
