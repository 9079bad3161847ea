//! `spec.restartAt` in the simulator: surge restarts that never lower
//! availability, Argo's revision order, scheduled restarts, cancellation by a
//! new revision, and restarts held back while a rollout is unhealthy. The
//! simulator itself checks on every reconcile that a restart never lowers
//! the available replicas and never surges past its bound.

use serin_engine::*;
use serin_simulator::{Sim, World};

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

fn canary(steps: Vec<Step>, traffic_routing: bool, surge: IntOrPercent) -> Strategy {
    Strategy::Canary(CanarySpec {
        steps,
        max_surge: surge,
        max_unavailable: IntOrPercent::Int(0),
        traffic_routing,
        analysis: None,
        scale_down_delay: 30 * S,
        abort_scale_down_delay: 30 * S,
        dynamic_stable_scale: false,
    })
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

fn deployed(spec: RolloutSpec) -> Sim {
    let mut sim = Sim::new(spec, World::default());
    assert!(sim.run_until(S, 120 * S, Sim::healthy).unwrap());
    // Let the pods age so "created before now" is meaningful.
    sim.run_until(S, 10 * S, |_| false).unwrap();
    sim
}

fn available(sim: &Sim) -> u32 {
    sim.observe()
        .revisions
        .iter()
        .map(|r| r.available.min(r.replicas))
        .sum()
}

fn restarted_events(sim: &Sim) -> Vec<Millis> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Restarted { at } => Some(*at),
            _ => None,
        })
        .collect()
}

/// Ticks until the restart at `at` is recorded, checking availability never
/// drops below `floor` on the way; returns the ticks taken.
fn run_restart(sim: &mut Sim, at: Millis, floor: u32) -> u32 {
    let mut ticks = 0;
    let mut saw_progressing = false;
    while sim.status.restarted_at != Some(at) {
        sim.tick(S).unwrap();
        ticks += 1;
        assert!(
            available(sim) >= floor,
            "availability dropped: {:?}",
            sim.observe()
        );
        saw_progressing |= sim.status.phase == Phase::Progressing
            && sim.status.message.starts_with("RestartInProgress");
        assert!(ticks < 2000, "restart never finished: {:?}", sim.status);
    }
    assert!(
        saw_progressing,
        "a restart in progress is reported as Progressing"
    );
    ticks
}

#[test]
fn one_replica_restart_surges_and_never_drops_to_zero() {
    let mut sim = deployed(spec(1, canary(vec![], false, IntOrPercent::Percent(25))));
    let before = sim.pod_creation_times(&h("v1"));
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    sim.tick(S).unwrap();
    // The replacement runs beside the old pod until it is available.
    assert_eq!(sim.pods_total(), 2);
    assert_eq!(sim.replicas_of(&h("v1")), 1);
    run_restart(&mut sim, at, 1);
    let after = sim.pod_creation_times(&h("v1"));
    assert_eq!(after.len(), 1);
    assert!(after.iter().all(|t| *t >= at), "{before:?} → {after:?}");
    assert_eq!(restarted_events(&sim), vec![at]);
    assert!(sim.status.restarting.is_none());
    sim.tick(S).unwrap();
    assert_eq!(sim.status.phase, Phase::Healthy);
}

#[test]
fn many_replicas_restart_max_surge_at_a_time() {
    // 8 replicas, maxSurge 25 % = 2 replacements in flight at most (the
    // simulator checks the bound on every reconcile).
    let mut sim = deployed(spec(8, canary(vec![], false, IntOrPercent::Percent(25))));
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.pods_total(), 10);
    let ticks = run_restart(&mut sim, at, 8);
    // Four waves of two, each waiting for the replacement's readiness (5 s).
    assert!(ticks >= 4 * 5, "{ticks} ticks: too many at once");
    assert!(sim.pod_creation_times(&h("v1")).iter().all(|t| *t >= at));
    assert_eq!(sim.pods_total(), 8);
}

#[test]
fn zero_surge_still_restarts_one_at_a_time_without_losing_capacity() {
    let mut sim = deployed(spec(3, canary(vec![], false, IntOrPercent::Int(0))));
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.pods_total(), 4);
    run_restart(&mut sim, at, 3);
}

#[test]
fn scheduled_restart_waits_for_its_time() {
    let mut sim = deployed(spec(2, canary(vec![], false, IntOrPercent::Int(1))));
    let at = sim.now + 60 * S;
    sim.command(&Command::Restart { at }).unwrap();
    sim.run_until(S, 59 * S, |_| false).unwrap();
    assert_eq!(sim.pods_total(), 2, "restarted before its time");
    assert!(sim.status.restarted_at.is_none());
    assert_eq!(sim.status.phase, Phase::Healthy);
    run_restart(&mut sim, at, 2);
    assert!(sim.pod_creation_times(&h("v1")).iter().all(|t| *t >= at));
}

#[test]
fn restart_during_a_paused_canary_goes_stable_first_and_keeps_the_step() {
    let steps = vec![Step::SetWeight(20), Step::Pause(None), Step::SetWeight(100)];
    let mut sim = deployed(spec(5, canary(steps, true, IntOrPercent::Int(1))));
    sim.update(h("v2"));
    assert!(
        sim.run_until(S, 120 * S, |s| s.status.phase == Phase::Paused)
            .unwrap()
    );
    sim.run_until(S, 5 * S, |_| false).unwrap();
    let step = sim.status.current_step_index;
    let route = sim.route().clone();
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    // Stable (v1) first: the canary's pod is untouched until v1 is done.
    let mut v1_done_at = None;
    while sim.status.restarted_at != Some(at) {
        sim.tick(S).unwrap();
        let v1_old = sim.pod_creation_times(&h("v1")).iter().any(|t| *t < at);
        let v2_old = sim.pod_creation_times(&h("v2")).iter().any(|t| *t < at);
        if !v1_old && v1_done_at.is_none() {
            v1_done_at = Some(sim.now);
        }
        if v1_old {
            assert!(v2_old, "canary restarted before stable");
        }
        assert!(sim.now < at + 600 * S, "restart never finished");
    }
    assert!(v1_done_at.is_some());
    assert!(sim.pod_creation_times(&h("v2")).iter().all(|t| *t >= at));
    // No step moved, no traffic moved, still paused.
    assert_eq!(sim.status.current_step_index, step);
    assert_eq!(sim.route(), &route);
    assert_eq!(sim.status.phase, Phase::Paused);
    assert_eq!(sim.replicas_of(&h("v1")), 5);
    assert_eq!(sim.replicas_of(&h("v2")), 1);
}

#[test]
fn new_revision_mid_restart_cancels_it() {
    let mut sim = deployed(spec(6, canary(vec![], false, IntOrPercent::Int(1))));
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.status.restarting, Some(at));
    sim.update(h("v2"));
    sim.tick(S).unwrap();
    assert_eq!(sim.status.restarted_at, Some(at));
    assert!(sim.status.restarting.is_none());
    assert!(restarted_events(&sim).is_empty());
    assert!(sim.run_until(S, 600 * S, Sim::healthy).unwrap());
    assert_eq!(sim.replicas_of(&h("v1")), 0);
    assert!(restarted_events(&sim).is_empty());
}

#[test]
fn restart_waits_while_a_revision_is_not_fully_available() {
    let mut sim = deployed(spec(4, canary(vec![], false, IntOrPercent::Int(1))));
    // A rolling update whose new pods never become ready stalls.
    sim.world.broken.push(h("v2"));
    sim.update(h("v2"));
    sim.run_until(S, 30 * S, |_| false).unwrap();
    let total = sim.pods_total();
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    sim.run_until(S, 60 * S, |_| false).unwrap();
    assert_eq!(sim.pods_total(), total, "restarted an unhealthy rollout");
    assert!(sim.status.restarting.is_none());
    assert_ne!(sim.status.restarted_at, Some(at));
}

#[test]
fn replacement_that_never_becomes_ready_keeps_the_old_pod_and_hits_the_deadline() {
    let mut s = spec(2, canary(vec![], false, IntOrPercent::Int(1)));
    s.progress_deadline = 60 * S;
    let mut sim = deployed(s);
    // From now on v1's new pods never become ready (say a Secret it reads at
    // startup went bad): the old pods must keep serving.
    sim.world.broken.push(h("v1"));
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    assert!(
        sim.run_until(S, 120 * S, |s| s.status.phase == Phase::Degraded)
            .unwrap()
    );
    assert!(sim.status.message.starts_with("ProgressDeadlineExceeded"));
    assert_eq!(available(&sim), 2);
    assert_eq!(
        sim.pods_total(),
        3,
        "one replacement in flight, the old pods kept"
    );
}

#[test]
fn restart_at_older_than_every_pod_is_noted_silently() {
    let mut sim = deployed(spec(2, canary(vec![], false, IntOrPercent::Int(1))));
    sim.command(&Command::Restart { at: 1 }).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.status.restarted_at, Some(1));
    assert!(restarted_events(&sim).is_empty());
    assert_eq!(sim.status.phase, Phase::Healthy);
}

#[test]
fn blue_green_restarts_max_unavailable_at_a_time() {
    let mut sim = deployed(spec(
        4,
        Strategy::BlueGreen(BlueGreenSpec {
            preview_replica_count: None,
            auto_promotion_enabled: true,
            auto_promotion_after: None,
            scale_down_delay: 30 * S,
            abort_scale_down_delay: 30 * S,
            pre_promotion_analysis: None,
            post_promotion_analysis: None,
            has_preview_service: true,
            max_unavailable: Some(IntOrPercent::Int(2)),
        }),
    ));
    let at = sim.now;
    sim.command(&Command::Restart { at }).unwrap();
    sim.tick(S).unwrap();
    assert_eq!(sim.pods_total(), 6);
    run_restart(&mut sim, at, 4);
    assert!(sim.pod_creation_times(&h("v1")).iter().all(|t| *t >= at));
    assert_eq!(
        sim.route().services.get(&ServiceRole::Active),
        Some(&h("v1"))
    );
}
