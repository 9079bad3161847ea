//! Argo step forms beyond one action per step: steps that combine actions
//! (APISIX's `setCanaryScale` + `setHeaderRoute`), and `setMirrorRoute`.

use serin_engine::*;
use serin_simulator::{Sim, World};

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

fn spec(replicas: u32, steps: Vec<Step>) -> RolloutSpec {
    RolloutSpec {
        name: "app".into(),
        replicas,
        template_hash: h("v1"),
        paused: false,
        progress_deadline: 600 * S,
        progress_deadline_abort: false,
        rollback_window: None,
        pdb_min_available: None,
        strategy: Strategy::Canary(CanarySpec {
            steps,
            max_surge: IntOrPercent::Percent(25),
            max_unavailable: IntOrPercent::Int(0),
            traffic_routing: true,
            analysis: None,
            scale_down_delay: 30 * S,
            abort_scale_down_delay: 30 * S,
            dynamic_stable_scale: false,
        }),
        restart_at: None,
    }
}

fn deployed(spec: RolloutSpec, world: World) -> Sim {
    let mut sim = Sim::new(spec, world);
    assert!(sim.run_until(S, 120 * S, Sim::healthy).unwrap());
    sim
}

fn trace_debug() -> HeaderRoute {
    HeaderRoute {
        name: "set-header".into(),
        matches: vec![HeaderMatch {
            name: "trace".into(),
            value: StringMatch::Exact("debug".into()),
        }],
    }
}

fn mirror(percentage: u32) -> MirrorRoute {
    MirrorRoute {
        name: "mirror-route".into(),
        percentage,
        matches: vec![MirrorMatch {
            method: Some(StringMatch::Exact("GET".into())),
            path: Some(StringMatch::Prefix("/color".into())),
            headers: vec![],
        }],
    }
}

/// The APISIX example's first step: one canary pod and a header route, both
/// in force at the pause that follows (the header route used to be lost).
#[test]
fn a_combined_step_applies_every_action() {
    let steps = vec![
        Step::Combined(vec![
            Step::SetCanaryScale(CanaryScale::Replicas(1)),
            Step::SetHeaderRoute(trace_debug()),
        ]),
        Step::Pause(None),
        Step::SetWeight(20),
        Step::Pause(None),
    ];
    let mut sim = deployed(spec(5, steps), World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(sim.status.current_step_index, Some(1));
    assert_eq!(sim.replicas_of(&h("v2")), 1);
    assert_eq!(sim.route().header_routes, vec![trace_debug()]);
    assert_eq!(
        sim.route().weights,
        vec![WeightedDestination {
            revision: h("v1"),
            weight: 100
        }]
    );
    sim.command(&Command::Promote).unwrap();
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.current_step_index == Some(3)
            && s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(sim.route().header_routes, vec![trace_debug()]);
    assert!(sim.route().weights.iter().any(|w| w.weight == 20));
    sim.command(&Command::PromoteFull).unwrap();
    assert!(sim.run_until(S, 100 * S, Sim::healthy).unwrap());
    assert!(sim.route().header_routes.is_empty());
}

/// A timed pause combined with setCanaryScale: the step ends only once the
/// scaled canary is available, even when the pause ran out before.
#[test]
fn a_combined_step_waits_for_its_slowest_action() {
    let steps = vec![
        Step::Combined(vec![
            Step::SetCanaryScale(CanaryScale::Replicas(2)),
            Step::Pause(Some(10 * S)),
        ]),
        Step::Pause(None),
    ];
    let world = World {
        ready_delay: 40 * S,
        ..World::default()
    };
    let mut sim = deployed(spec(4, steps), world);
    sim.update(h("v2"));
    let start = sim.now;
    // Past the pause, the canary is still starting: still step 0.
    assert!(
        !sim.run_until(S, 20 * S, |s| s.status.current_step_index != Some(0))
            .unwrap()
    );
    assert!(sim.now >= start + 20 * S);
    assert_eq!(sim.replicas_of(&h("v2")), 2);
    assert!(
        sim.run_until(S, 60 * S, |s| s.status.current_step_index == Some(1))
            .unwrap()
    );
    let v2 = sim.observe().revision(&h("v2")).cloned().unwrap();
    assert_eq!((v2.replicas, v2.available), (2, 2));
    // The timed pause's condition went with the step: only the next
    // (indefinite) pause holds the rollout, and the timer did not restart.
    assert!(
        sim.run_until(S, 10 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(sim.status.current_step_index, Some(1));
}

/// setMirrorRoute is in the route while the canary runs, and goes on
/// abort and on promotion like header routes.
#[test]
fn mirror_routes_follow_the_steps_and_go_on_abort_and_promotion() {
    let steps = vec![
        Step::SetWeight(10),
        Step::SetMirrorRoute(mirror(50)),
        Step::Pause(None),
        Step::SetMirrorRoute(MirrorRoute {
            matches: vec![],
            ..mirror(50)
        }),
        Step::Pause(None),
    ];
    let mut sim = deployed(spec(4, steps), World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(sim.status.current_step_index, Some(2));
    assert_eq!(sim.route().mirror_routes, vec![mirror(50)]);
    assert_eq!(sim.status.mirror_routes, vec![mirror(50)]);

    // A step without matches removes the route.
    sim.command(&Command::Promote).unwrap();
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.current_step_index == Some(4))
            .unwrap()
    );
    assert!(sim.route().mirror_routes.is_empty());

    // Abort and retry: gone at once, back with the step.
    sim.command(&Command::Abort).unwrap();
    sim.run_until(S, 5 * S, |_| false).unwrap();
    assert!(sim.route().mirror_routes.is_empty());
    assert!(sim.status.mirror_routes.is_empty());
    sim.command(&Command::Retry).unwrap();
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.current_step_index == Some(2)
            && s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(sim.route().mirror_routes, vec![mirror(50)]);

    sim.command(&Command::PromoteFull).unwrap();
    assert!(sim.run_until(S, 100 * S, Sim::healthy).unwrap());
    assert!(sim.route().mirror_routes.is_empty());
    assert!(sim.status.mirror_routes.is_empty());
}

/// A status and a route stored before mirror routes existed still load.
#[test]
fn statuses_stored_before_mirror_routes_still_load() {
    let mut status = serde_json::to_value(RolloutStatus::default()).unwrap();
    status.as_object_mut().unwrap().remove("mirror_routes");
    let back: RolloutStatus = serde_json::from_value(status).unwrap();
    assert!(back.mirror_routes.is_empty());
    let mut route = serde_json::to_value(Route::default()).unwrap();
    route.as_object_mut().unwrap().remove("mirror_routes");
    let back: Route = serde_json::from_value(route).unwrap();
    assert_eq!(back, Route::default());
}
