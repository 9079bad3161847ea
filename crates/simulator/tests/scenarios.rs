//! End-to-end engine scenarios in the simulator: the seed's three strategies,
//! aborts, analysis outcomes, undo, rollback windows, progress deadlines.

use serin_engine::*;
use serin_simulator::{Sim, World};

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

fn canary(steps: Vec<Step>, traffic_routing: bool) -> CanarySpec {
    CanarySpec {
        steps,
        max_surge: IntOrPercent::Percent(25),
        max_unavailable: IntOrPercent::Int(0),
        traffic_routing,
        analysis: None,
        scale_down_delay: 30 * S,
        abort_scale_down_delay: 30 * S,
        dynamic_stable_scale: false,
    }
}

fn spec(replicas: u32, strategy: Strategy) -> RolloutSpec {
    RolloutSpec {
        name: "app".into(),
        replicas,
        template_hash: h("v1"),
        paused: false,
        progress_deadline: 600 * S,
        progress_deadline_abort: false,
        rollback_window: None,
        pdb_min_available: None,
        strategy,
        restart_at: None,
    }
}

fn analysis() -> AnalysisSpec {
    AnalysisSpec {
        templates: vec!["success-rate".into()],
        args: vec![AnalysisArg {
            name: "canary-hash".into(),
            value: ArgValue::LatestHash,
        }],
    }
}

/// Deploys v1 and waits for Healthy.
fn deployed(spec: RolloutSpec, world: World) -> Sim {
    let mut sim = Sim::new(spec, world);
    assert!(
        sim.run_until(S, 120 * S, Sim::healthy).unwrap(),
        "v1 never became healthy: {:?}",
        sim.status
    );
    sim
}

/// The seed's canary-rollout.yaml: 20 replicas, 5/10/20/50/100 with pauses,
/// Istio traffic routing.
fn seed_canary() -> RolloutSpec {
    let p = |s| Step::Pause(Some(s * S));
    spec(
        20,
        Strategy::Canary(canary(
            vec![
                Step::SetWeight(5),
                p(300),
                Step::SetWeight(10),
                p(300),
                Step::SetWeight(20),
                p(600),
                Step::SetWeight(50),
                p(600),
                Step::SetWeight(100),
            ],
            true,
        )),
    )
}

#[test]
fn first_revision_goes_straight_to_stable() {
    let sim = deployed(seed_canary(), World::default());
    assert_eq!(sim.replicas_of(&h("v1")), 20);
    assert_eq!(
        sim.route().weights,
        vec![WeightedDestination {
            revision: h("v1"),
            weight: 100
        }]
    );
    assert_eq!(sim.status.stable_hash, Some(h("v1")));
}

#[test]
fn seed_canary_walks_every_weight_then_promotes() {
    let mut sim = deployed(seed_canary(), World::default());
    sim.update(h("v2"));
    let mut weights_seen = Vec::new();
    let done = sim
        .run_until(S, 4000 * S, |s| {
            if let Some(w) = s.route().weights.iter().find(|w| w.revision == h("v2"))
                && weights_seen.last() != Some(&w.weight)
            {
                weights_seen.push(w.weight);
            }
            s.healthy()
        })
        .unwrap();
    assert!(done, "never completed: {:?}", sim.status);
    assert_eq!(weights_seen, vec![5, 10, 20, 50, 100]);
    // Pauses of 300+300+600+600 s are the floor on duration.
    assert!(sim.now >= 1800 * S, "finished too early at {}", sim.now);
    assert_eq!(
        sim.route().weights,
        vec![WeightedDestination {
            revision: h("v2"),
            weight: 100
        }]
    );
    // Old stable waits scaleDownDelaySeconds, then goes.
    assert!(
        sim.run_until(S, 60 * S, |s| s.replicas_of(&h("v1")) == 0)
            .unwrap()
    );
    let completed = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Completed { .. }))
        .count();
    assert_eq!(
        completed, 1,
        "v2 completes once (the first revision is stable from the start)"
    );
}

#[test]
fn canary_replicas_round_up_with_traffic_routing() {
    let mut sim = deployed(seed_canary(), World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert!(sim.route().weights.contains(&WeightedDestination {
        revision: h("v2"),
        weight: 5
    }));
    // 5 % of 20 = 1 pod; stable stays at 20 with traffic routing.
    assert_eq!(sim.replicas_of(&h("v2")), 1);
    assert_eq!(sim.replicas_of(&h("v1")), 20);
}

#[test]
fn weight_waits_for_canary_pods_to_be_ready() {
    let mut sim = deployed(
        seed_canary(),
        World {
            ready_delay: 20 * S,
            ..World::default()
        },
    );
    sim.update(h("v2"));
    sim.tick(S).unwrap();
    assert_eq!(sim.replicas_of(&h("v2")), 1);
    assert!(
        sim.route().weights.iter().all(|w| w.revision == h("v1")),
        "traffic before pods are ready"
    );
    assert!(
        sim.run_until(S, 30 * S, |s| s
            .route()
            .weights
            .iter()
            .any(|w| w.revision == h("v2")))
            .unwrap()
    );
}

#[test]
fn abort_sends_all_traffic_to_stable_in_one_reconcile() {
    let mut sim = deployed(seed_canary(), World::default());
    sim.update(h("v2"));
    sim.run_until(S, 1000 * S, |s| {
        s.route()
            .weights
            .iter()
            .any(|w| w.revision == h("v2") && w.weight == 20)
    })
    .unwrap();
    sim.command(&Command::Abort).unwrap();
    sim.tick(1).unwrap();
    assert_eq!(
        sim.route().weights,
        vec![WeightedDestination {
            revision: h("v1"),
            weight: 100
        }]
    );
    assert_eq!(sim.status.phase, Phase::Degraded);
    // Canary pods linger for abortScaleDownDelaySeconds (30 s), then go.
    assert!(sim.replicas_of(&h("v2")) > 0);
    assert!(
        sim.run_until(S, 40 * S, |s| s.replicas_of(&h("v2")) == 0)
            .unwrap()
    );
    // Retry starts again from step 0.
    sim.command(&Command::Retry).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.status.current_step_index, Some(0));
    assert!(
        sim.run_until(S, 100 * S, |s| s
            .route()
            .weights
            .iter()
            .any(|w| w.revision == h("v2") && w.weight == 5))
            .unwrap()
    );
}

#[test]
fn failed_step_analysis_aborts_and_named_args_resolve() {
    let mut s = seed_canary();
    if let Strategy::Canary(c) = &mut s.strategy {
        c.steps.insert(1, Step::Analysis(analysis()));
    }
    let mut world = World::default();
    world
        .analysis_outcome
        .insert(h("v2"), AnalysisPhase::Failed);
    let mut sim = deployed(s, world);
    sim.update(h("v2"));
    let mut started = None;
    let ok = sim
        .run_until(S, 500 * S, |s| {
            if started.is_none() {
                started = s.status.analysis_runs.first().cloned();
            }
            s.status.abort
        })
        .unwrap();
    assert!(ok);
    assert_eq!(started.map(|r| r.kind), Some(AnalysisKind::Step(1)));
    assert!(
        sim.events
            .iter()
            .any(|(_, e)| matches!(e, Event::AnalysisRunFailed { .. }))
    );
    assert_eq!(
        sim.route().weights,
        vec![WeightedDestination {
            revision: h("v1"),
            weight: 100
        }]
    );
}

#[test]
fn inconclusive_analysis_pauses_until_promote() {
    let mut s = seed_canary();
    if let Strategy::Canary(c) = &mut s.strategy {
        c.steps.insert(1, Step::Analysis(analysis()));
    }
    let mut world = World::default();
    world
        .analysis_outcome
        .insert(h("v2"), AnalysisPhase::Inconclusive);
    let mut sim = deployed(s, world);
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 500 * S, |s| s.status.phase == Phase::Paused
            && s.status.message == "InconclusiveAnalysisRun")
            .unwrap()
    );
    sim.tick(100 * S).unwrap();
    assert_eq!(
        sim.status.current_step_index,
        Some(1),
        "must not move on its own"
    );
    sim.command(&Command::Promote).unwrap();
    assert!(
        sim.run_until(S, 10 * S, |s| s.status.current_step_index == Some(2))
            .unwrap()
    );
}

#[test]
fn background_analysis_starts_at_starting_step_and_aborts_on_error() {
    let mut s = seed_canary();
    if let Strategy::Canary(c) = &mut s.strategy {
        c.analysis = Some(BackgroundAnalysis {
            analysis: analysis(),
            starting_step: 2,
        });
    }
    let mut world = World::default();
    world.analysis_outcome.insert(h("v2"), AnalysisPhase::Error);
    world.analysis_duration = 400 * S;
    let mut sim = deployed(s, world);
    sim.update(h("v2"));
    sim.run_until(S, 299 * S, |_| false).unwrap();
    assert!(sim.status.analysis_runs.is_empty(), "started before step 2");
    assert!(
        sim.run_until(S, 20 * S, |s| !s.status.analysis_runs.is_empty())
            .unwrap()
    );
    assert_eq!(sim.status.current_step_index, Some(2));
    assert!(sim.run_until(S, 500 * S, |s| s.status.abort).unwrap());
    assert!(
        sim.events
            .iter()
            .any(|(_, e)| matches!(e, Event::AnalysisRunError { .. }))
    );
}

#[test]
fn seed_rolling_update_respects_surge_unavailable_and_pdb() {
    // deployment.yaml: 12 replicas, 25 %/25 %, PDB minAvailable 75 %.
    let mut c = canary(vec![], false);
    c.max_unavailable = IntOrPercent::Percent(25);
    let mut s = spec(12, Strategy::Canary(c));
    s.pdb_min_available = Some(IntOrPercent::Percent(75));
    let mut sim = deployed(s, World::default());
    sim.update(h("v2"));
    let mut max_total = 0;
    let mut min_avail = u32::MAX;
    let done = sim
        .run_until(S, 300 * S, |s| {
            let o = s.observe();
            max_total = max_total.max(o.revisions.iter().map(|r| r.replicas).sum());
            min_avail = min_avail.min(o.revisions.iter().map(|r| r.available).sum());
            s.healthy() && s.replicas_of(&h("v1")) == 0
        })
        .unwrap();
    assert!(done);
    assert_eq!(max_total, 15, "12 + 3 surge");
    assert_eq!(min_avail, 9, "never below 9 of 12");
}

#[test]
fn rolling_update_with_broken_pods_stalls_then_hits_the_deadline() {
    let mut c = canary(vec![], false);
    c.max_unavailable = IntOrPercent::Int(1);
    let mut s = spec(4, Strategy::Canary(c));
    s.progress_deadline = 60 * S;
    s.progress_deadline_abort = true;
    let mut sim = deployed(s, World::default());
    sim.world.broken.push(h("v2"));
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 200 * S, |s| s.status.phase == Phase::Degraded)
            .unwrap()
    );
    assert!(sim.status.abort);
    assert!(
        sim.run_until(S, 60 * S, |s| s.replicas_of(&h("v2")) == 0
            && s.observe()
                .revisions
                .iter()
                .any(|r| r.hash == h("v1") && r.available == 4))
            .unwrap()
    );
}

#[test]
fn basic_canary_replicas_follow_weight() {
    let mut s = spec(
        10,
        Strategy::Canary(canary(vec![Step::SetWeight(30), Step::Pause(None)], false)),
    );
    s.name = "basic".into();
    let mut sim = deployed(s, World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(
        (sim.replicas_of(&h("v2")), sim.replicas_of(&h("v1"))),
        (3, 7)
    );
    sim.command(&Command::Promote).unwrap();
    assert!(
        sim.run_until(S, 200 * S, |s| s.healthy() && s.replicas_of(&h("v1")) == 0)
            .unwrap()
    );
    assert_eq!(sim.replicas_of(&h("v2")), 10);
}

#[test]
fn set_canary_scale_and_header_route() {
    let steps = vec![
        Step::SetCanaryScale(CanaryScale::Replicas(2)),
        Step::SetHeaderRoute(HeaderRoute {
            name: "canary-header".into(),
            matches: vec![HeaderMatch {
                name: "canary".into(),
                value: StringMatch::Exact("true".into()),
            }],
        }),
        Step::SetWeight(0),
        Step::Pause(None),
        Step::SetWeight(50),
        Step::Pause(None),
    ];
    let mut sim = deployed(
        spec(10, Strategy::Canary(canary(steps, true))),
        World::default(),
    );
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(sim.replicas_of(&h("v2")), 2);
    assert_eq!(sim.route().header_routes.len(), 1);
    assert_eq!(
        sim.route().weights,
        vec![WeightedDestination {
            revision: h("v1"),
            weight: 100
        }]
    );
    sim.command(&Command::Promote).unwrap();
    assert!(
        sim.run_until(S, 100 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(
        sim.replicas_of(&h("v2")),
        2,
        "setCanaryScale holds after setWeight"
    );
    sim.command(&Command::PromoteFull).unwrap();
    assert!(sim.run_until(S, 100 * S, Sim::healthy).unwrap());
    assert!(sim.route().header_routes.is_empty());
}

/// The seed's blue-green-rollout.yaml: 10 replicas, manual promotion,
/// pre-promotion analysis, scaleDownDelaySeconds 600.
fn seed_blue_green() -> RolloutSpec {
    spec(
        10,
        Strategy::BlueGreen(BlueGreenSpec {
            preview_replica_count: None,
            auto_promotion_enabled: false,
            auto_promotion_after: None,
            scale_down_delay: 600 * S,
            abort_scale_down_delay: 30 * S,
            pre_promotion_analysis: Some(analysis()),
            post_promotion_analysis: None,
            has_preview_service: true,
            max_unavailable: None,
        }),
    )
}

#[test]
fn seed_blue_green_waits_for_analysis_and_promote_then_switches() {
    let mut sim = deployed(seed_blue_green(), World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 300 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert!(
        sim.now >= 60 * S,
        "pre-promotion analysis (60 s) must finish first"
    );
    assert_eq!(
        sim.route().services.get(&ServiceRole::Active),
        Some(&h("v1"))
    );
    assert_eq!(
        sim.route().services.get(&ServiceRole::Preview),
        Some(&h("v2"))
    );
    sim.tick(3600 * S).unwrap();
    assert_eq!(
        sim.route().services.get(&ServiceRole::Active),
        Some(&h("v1")),
        "no auto-promotion"
    );
    sim.command(&Command::Promote).unwrap();
    assert!(sim.run_until(S, 10 * S, Sim::healthy).unwrap());
    assert_eq!(
        sim.route().services.get(&ServiceRole::Active),
        Some(&h("v2"))
    );
    // Old active stays 600 s for a fast switch back, then goes.
    sim.tick(599 * S).unwrap();
    assert_eq!(sim.replicas_of(&h("v1")), 10);
    assert!(
        sim.run_until(S, 5 * S, |s| s.replicas_of(&h("v1")) == 0)
            .unwrap()
    );
}

#[test]
fn blue_green_failed_pre_promotion_never_switches() {
    let mut world = World::default();
    world
        .analysis_outcome
        .insert(h("v2"), AnalysisPhase::Failed);
    let mut sim = deployed(seed_blue_green(), world);
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 300 * S, |s| s.status.phase == Phase::Degraded)
            .unwrap()
    );
    assert_eq!(
        sim.route().services.get(&ServiceRole::Active),
        Some(&h("v1"))
    );
    assert!(
        sim.run_until(S, 40 * S, |s| s.replicas_of(&h("v2")) == 0)
            .unwrap()
    );
}

#[test]
fn blue_green_auto_promotion_after_seconds_and_post_analysis_rollback() {
    let mut s = seed_blue_green();
    if let Strategy::BlueGreen(b) = &mut s.strategy {
        b.auto_promotion_enabled = true;
        b.auto_promotion_after = Some(120 * S);
        b.pre_promotion_analysis = None;
        b.post_promotion_analysis = Some(analysis());
        b.preview_replica_count = Some(2);
    }
    let mut world = World::default();
    world
        .analysis_outcome
        .insert(h("v2"), AnalysisPhase::Failed);
    let mut sim = deployed(s, world);
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 60 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    assert_eq!(
        sim.replicas_of(&h("v2")),
        2,
        "preview runs previewReplicaCount"
    );
    let paused_at = sim.now;
    assert!(
        sim.run_until(S, 300 * S, |s| s.route().services.get(&ServiceRole::Active)
            == Some(&h("v2")))
            .unwrap()
    );
    assert!(sim.now >= paused_at + 120 * S);
    // Post-promotion analysis fails: active goes back to v1, which is still up.
    assert!(sim.run_until(S, 120 * S, |s| s.status.abort).unwrap());
    assert_eq!(
        sim.route().services.get(&ServiceRole::Active),
        Some(&h("v1"))
    );
    assert_eq!(sim.replicas_of(&h("v1")), 10);
}

#[test]
fn undo_to_stable_is_fast_tracked_and_rollback_window_skips_steps() {
    let mut s = seed_canary();
    s.rollback_window = Some(2);
    let mut sim = deployed(s, World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 30 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    // Undo while v2 is a canary: v1 is stable, so back at once.
    sim.undo(None).unwrap();
    assert!(sim.run_until(S, 5 * S, Sim::healthy).unwrap());
    assert!(
        sim.run_until(S, 5 * S, |s| s.replicas_of(&h("v2")) == 0)
            .unwrap()
    );
    // Roll v2 all the way, then undo to revision 1 (v1): within the window,
    // so no steps and no pauses.
    sim.update(h("v2"));
    sim.tick(S).unwrap();
    sim.command(&Command::PromoteFull).unwrap();
    assert!(sim.run_until(S, 100 * S, Sim::healthy).unwrap());
    sim.undo(Some(1)).unwrap();
    let start = sim.now;
    let ok = sim.run_until(S, 100 * S, Sim::healthy).unwrap();
    assert!(ok, "{:?} {:?}", sim.status, sim.observe());
    assert!(
        sim.now - start < 20 * S,
        "rollback window must skip the 300 s pauses"
    );
    assert_eq!(sim.spec.template_hash, h("v1"));
}

#[test]
fn commands_refuse_what_makes_no_sense_and_change_nothing() {
    let mut sim = deployed(seed_canary(), World::default());
    let before = sim.status.clone();
    assert_eq!(
        sim.command(&Command::Promote),
        Err(CommandError::NothingInProgress)
    );
    assert_eq!(
        sim.command(&Command::Abort),
        Err(CommandError::NothingInProgress)
    );
    assert_eq!(sim.command(&Command::Retry), Err(CommandError::NotAborted));
    assert_eq!(sim.status, before);
    assert_eq!(sim.undo(Some(7)), Err(CommandError::NoSuchRevision(7)));
}

#[test]
fn user_pause_holds_steps_and_resume_continues() {
    let mut sim = deployed(seed_canary(), World::default());
    sim.update(h("v2"));
    sim.command(&Command::Pause).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.status.phase, Phase::Paused);
    sim.run_until(S, 1000 * S, |_| false).unwrap();
    assert_eq!(sim.status.current_step_index, Some(0));
    sim.command(&Command::Resume).unwrap();
    assert!(
        sim.run_until(S, 30 * S, |s| s.status.current_step_index == Some(1))
            .unwrap()
    );
}

/// Available pods of a revision as the platform reports them.
fn available_of(sim: &Sim, hash: &RevisionHash) -> u32 {
    sim.observe()
        .revisions
        .iter()
        .find(|r| &r.hash == hash)
        .map_or(0, |r| r.available)
}

/// Walks a basic canary (no traffic routing) through its steps, promoting
/// past indefinite pauses, and returns the (canary, stable) replicas seen at
/// each pause. Fails if the stable ever runs no pod before the canary
/// reaches 100 %.
fn walk_basic_canary(replicas: u32, weights: &[u32]) -> Vec<(u32, u32)> {
    let mut steps = Vec::new();
    for w in weights {
        steps.push(Step::SetWeight(*w));
        steps.push(Step::Pause(None));
    }
    let n = steps.len();
    let mut sim = deployed(
        spec(replicas, Strategy::Canary(canary(steps, false))),
        World::default(),
    );
    sim.update(h("v2"));
    let mut seen = Vec::new();
    for _ in weights {
        let paused = sim
            .run_until(S, 300 * S, |s| {
                assert!(
                    s.replicas_of(&h("v1")) >= 1 && available_of(s, &h("v1")) >= 1,
                    "stable at 0 pods (or 0 available) before 100 %: step {:?}, v2 {}, v1 {}",
                    s.status.current_step_index,
                    s.replicas_of(&h("v2")),
                    s.replicas_of(&h("v1"))
                );
                s.status.phase == Phase::Paused
            })
            .unwrap();
        assert!(paused, "never paused: {:?}", sim.status);
        seen.push((sim.replicas_of(&h("v2")), sim.replicas_of(&h("v1"))));
        sim.command(&Command::Promote).unwrap();
    }
    assert!(sim.run_until(S, 300 * S, Sim::healthy).unwrap());
    assert_eq!(sim.status.current_step_index, Some(n as u32));
    assert_eq!(sim.replicas_of(&h("v2")), replicas);
    seen
}

#[test]
fn basic_canary_uses_the_surge_pod_and_keeps_stable_running() {
    // The examples (maxSurge 25 % rounds up to one pod): one
    // replica at 50 % runs 1 + 1; three replicas at 20 % run 1 canary + 3
    // stable, as Argo does.
    assert_eq!(walk_basic_canary(1, &[50]), vec![(1, 1)]);
    assert_eq!(walk_basic_canary(3, &[20]), vec![(1, 3)]);
    // A walk through every small weight never leaves stable empty.
    assert_eq!(
        walk_basic_canary(2, &[1, 10, 50, 90, 99]),
        vec![(1, 2), (1, 2), (1, 1), (2, 1), (2, 1)]
    );
    assert_eq!(
        walk_basic_canary(4, &[10, 25, 50, 75]),
        vec![(1, 4), (1, 3), (2, 2), (3, 1)]
    );
}

#[test]
fn set_canary_scale_completes_only_when_the_canary_is_ready() {
    // Pods take 90 s to become ready; the timed pause after setCanaryScale
    // is 30 s. The pause must start only once both canary pods are
    // available, so it cannot run out before any canary pod serves.
    let steps = vec![
        Step::SetCanaryScale(CanaryScale::Replicas(2)),
        Step::Pause(Some(30 * S)),
        Step::SetWeight(50),
        Step::Pause(None),
    ];
    let mut sim = deployed(
        spec(10, Strategy::Canary(canary(steps, true))),
        World {
            ready_delay: 90 * S,
            ..World::default()
        },
    );
    sim.update(h("v2"));
    let start = sim.now;
    sim.tick(S).unwrap();
    assert_eq!(sim.replicas_of(&h("v2")), 2);
    assert_eq!(
        sim.status.current_step_index,
        Some(0),
        "setCanaryScale completed before its pods were ready"
    );
    assert!(
        sim.run_until(S, 300 * S, |s| s.status.current_step_index == Some(1))
            .unwrap()
    );
    assert_eq!(available_of(&sim, &h("v2")), 2);
    assert!(sim.now >= start + 90 * S, "step 1 reached at {}", sim.now);
    // The pause then runs its full 30 s from there.
    let paused_at = sim.now;
    assert!(
        sim.run_until(S, 300 * S, |s| s.status.current_step_index == Some(2))
            .unwrap()
    );
    assert!(sim.now >= paused_at + 30 * S);
}

/// Reconciling `sim`'s rollout again, later, with nothing new observed must
/// return its status unchanged and do nothing: on Kubernetes every status
/// write is a watch event that reconciles again, so a status that changes
/// on every pass (a paused rollout rewrote `last_progress`) reconciles for
/// ever and starves other rollouts (bench/k8s-scale.sh's stalled burst).
fn assert_fixpoint(sim: &Sim) {
    let observed = sim.observe();
    for later in [S, 60 * S, 3600 * S] {
        let out = reconcile(&sim.spec, &sim.status, &observed, sim.now + later);
        assert_eq!(out.status, sim.status, "{later} ms later");
        assert!(
            out.actions.is_empty(),
            "{later} ms later: {:?}",
            out.actions
        );
    }
}

#[test]
fn a_paused_rollout_reconciled_again_keeps_its_status() {
    // A canary at an indefinite pause step.
    let mut sim = deployed(
        spec(
            4,
            Strategy::Canary(canary(vec![Step::SetWeight(50), Step::Pause(None)], false)),
        ),
        World::default(),
    );
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 300 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    sim.run_until(S, 10 * S, |_| false).unwrap();
    assert_eq!(sim.status.phase, Phase::Paused, "{:?}", sim.status);
    assert_fixpoint(&sim);

    // Blue-green waiting for its promotion.
    let mut bg = seed_blue_green();
    if let Strategy::BlueGreen(b) = &mut bg.strategy {
        b.pre_promotion_analysis = None;
    }
    let mut sim = deployed(bg, World::default());
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 300 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    sim.run_until(S, 10 * S, |_| false).unwrap();
    assert_eq!(sim.status.phase, Phase::Paused, "{:?}", sim.status);
    assert_fixpoint(&sim);
}

/// An analysis step that runs longer than `progressDeadlineSeconds` is not
/// lack of progress (Argo's `isIndefiniteStep`: experiment, analysis and
/// pause steps): the rollout waits for the analysis and completes, with no
/// deadline event and no abort.
#[test]
fn an_analysis_step_longer_than_the_progress_deadline_does_not_abort() {
    let mut s = spec(
        4,
        Strategy::Canary(canary(
            vec![Step::SetWeight(25), Step::Analysis(analysis())],
            true,
        )),
    );
    s.progress_deadline = 60 * S;
    s.progress_deadline_abort = true;
    let mut sim = deployed(
        s,
        World {
            analysis_duration: 300 * S,
            ..World::default()
        },
    );
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 900 * S, Sim::healthy).unwrap(),
        "never completed: {:?}",
        sim.status
    );
    assert_eq!(sim.status.stable_hash, Some(h("v2")));
    assert!(
        !sim.events
            .iter()
            .any(|(_, e)| matches!(e, Event::ProgressDeadlineExceeded | Event::Aborted { .. })),
        "{:?}",
        sim.events
    );
}
