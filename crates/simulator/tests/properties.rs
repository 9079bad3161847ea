//! Property tests: thousands of random rollouts with random readiness
//! failures, analysis outcomes and user operations at random times. Every
//! reconcile is checked by the simulator (floor, ceiling, weights, abort
//! routing, step skipping, determinism); these tests add whole-run checks.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serin_engine::{
    self as e, AnalysisArg, AnalysisPhase, AnalysisSpec, ArgValue, BackgroundAnalysis,
    BlueGreenSpec, CanarySpec, Command, Event, IntOrPercent, RevisionHash, RolloutSpec,
    RolloutStatus, ServiceRole, Step,
};
use serin_simulator::{Sim, World};

const S: u64 = 1000;

#[derive(Clone, Debug)]
enum Op {
    Tick,
    Update,
    FailNewPods,
    Outcome(AnalysisPhase),
    Cmd(Command),
    Undo,
    /// `restart` this many seconds from now (0: now).
    Restart(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Tick),
        2 => Just(Op::Update),
        1 => Just(Op::FailNewPods),
        1 => prop_oneof![
            Just(AnalysisPhase::Successful),
            Just(AnalysisPhase::Failed),
            Just(AnalysisPhase::Error),
            Just(AnalysisPhase::Inconclusive)
        ]
        .prop_map(Op::Outcome),
        3 => prop_oneof![
            Just(Command::Promote),
            Just(Command::PromoteFull),
            Just(Command::Abort),
            Just(Command::Retry),
            Just(Command::Pause),
            Just(Command::Resume)
        ]
        .prop_map(Op::Cmd),
        1 => Just(Op::Undo),
        1 => prop_oneof![Just(0u64), 1u64..60].prop_map(Op::Restart),
    ]
}

/// setWeight, pause or analysis: Argo allows one of them per step.
fn exclusive_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop_oneof![Just(5u32), Just(10), Just(20), Just(25), Just(50), Just(80), Just(100)].prop_map(Step::SetWeight),
        2 => prop_oneof![Just(None), (0u64..120).prop_map(|s| Some(s * S))].prop_map(Step::Pause),
        1 => Just(Step::Analysis(AnalysisSpec { templates: vec!["t".into()], args: vec![] })),
        1 => experiment_step(),
    ]
}

/// A template's traffic weight: none, small, or one that with a large
/// setWeight passes 100 (lint refuses that; the engine must still keep the
/// route at 100 %).
fn weight() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(5u32)),
        1 => Just(Some(20)),
        1 => Just(Some(60)),
    ]
}

/// An experiment: a baseline and/or canary, with or without a duration and
/// a required analysis (without either it only ends by promote or abort),
/// with or without traffic weights.
fn experiment_step() -> impl Strategy<Value = Step> {
    (
        proptest::option::of((0u64..120).prop_map(|s| s * S)),
        0u32..3,
        1u32..3,
        0usize..3,
        any::<bool>(),
        weight(),
        weight(),
    )
        .prop_map(|(duration, baseline, canary, analyses, required, cw, bw)| {
            let mut templates = vec![e::ExperimentTemplate {
                name: "canary".into(),
                spec_ref: e::SpecRef::Canary,
                replicas: canary,
                weight: cw,
            }];
            if baseline > 0 {
                templates.push(e::ExperimentTemplate {
                    name: "baseline".into(),
                    spec_ref: e::SpecRef::Stable,
                    replicas: baseline,
                    weight: bw,
                });
            }
            Step::Experiment(e::ExperimentStep {
                duration,
                templates,
                analyses: (0..analyses)
                    .map(|i| e::ExperimentAnalysis {
                        name: format!("a{i}"),
                        analysis: analysis(),
                        required_for_completion: required && i == 0,
                    })
                    .collect(),
            })
        })
}

/// The actions that may accompany one of those: setCanaryScale,
/// setHeaderRoute and setMirrorRoute (an empty match list removes a route).
fn extra_step() -> impl Strategy<Value = Step> {
    let name = prop_oneof![Just("a".to_string()), Just("b".to_string())];
    prop_oneof![
        prop_oneof![
            (0u32..4).prop_map(e::CanaryScale::Replicas),
            prop_oneof![Just(0u32), Just(25), Just(50), Just(100)].prop_map(e::CanaryScale::Weight),
            Just(e::CanaryScale::MatchTrafficWeight),
        ]
        .prop_map(Step::SetCanaryScale),
        (name.clone(), any::<bool>()).prop_map(|(name, on)| Step::SetHeaderRoute(e::HeaderRoute {
            name,
            matches: if on {
                vec![e::HeaderMatch {
                    name: "x".into(),
                    value: e::StringMatch::Exact("1".into()),
                }]
            } else {
                vec![]
            },
        })),
        (name, any::<bool>(), 0u32..=100).prop_map(|(name, on, percentage)| {
            Step::SetMirrorRoute(e::MirrorRoute {
                name,
                percentage,
                matches: if on {
                    vec![e::MirrorMatch::default()]
                } else {
                    vec![]
                },
            })
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => exclusive_step(),
        2 => extra_step(),
        // A combined step, as Argo allows: the extras first, as plan builds it.
        1 => (proptest::collection::vec(extra_step(), 1..3), exclusive_step()).prop_map(
            |(mut extras, main)| {
                extras.push(main);
                Step::Combined(extras)
            }
        ),
    ]
}

fn analysis() -> AnalysisSpec {
    AnalysisSpec {
        templates: vec!["t".into()],
        args: vec![AnalysisArg {
            name: "h".into(),
            value: ArgValue::StableHash,
        }],
    }
}

fn rollout() -> impl Strategy<Value = RolloutSpec> {
    let canary = (
        proptest::collection::vec(step(), 0..7),
        0u32..4,
        0u32..4,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0u32..3),
    )
        .prop_map(|(steps, surge, unavail, tr, bg, start)| {
            e::Strategy::Canary(CanarySpec {
                steps,
                max_surge: IntOrPercent::Int(surge),
                max_unavailable: IntOrPercent::Int(unavail),
                traffic_routing: tr,
                analysis: if bg {
                    start.map(|s| BackgroundAnalysis {
                        analysis: analysis(),
                        starting_step: s,
                    })
                } else {
                    None
                },
                scale_down_delay: 30 * S,
                abort_scale_down_delay: 10 * S,
                dynamic_stable_scale: false,
            })
        });
    let blue_green = (
        proptest::option::of(1u32..4),
        any::<bool>(),
        proptest::option::of(0u64..100),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(preview, auto, after, pre, post)| {
            e::Strategy::BlueGreen(BlueGreenSpec {
                preview_replica_count: preview,
                auto_promotion_enabled: auto,
                auto_promotion_after: after.map(|s| s * S),
                scale_down_delay: 30 * S,
                abort_scale_down_delay: 10 * S,
                pre_promotion_analysis: pre.then(analysis),
                post_promotion_analysis: post.then(analysis),
                has_preview_service: true,
                max_unavailable: None,
            })
        });
    (
        1u32..12,
        prop_oneof![3 => canary, 1 => blue_green],
        proptest::option::of(0u32..12),
        any::<bool>(),
    )
        .prop_map(|(replicas, strategy, pdb, window)| RolloutSpec {
            name: "p".into(),
            replicas,
            template_hash: RevisionHash::new("r0"),
            paused: false,
            progress_deadline: 600 * S,
            progress_deadline_abort: false,
            rollback_window: window.then_some(2),
            pdb_min_available: pdb.map(|p| IntOrPercent::Int(p.min(replicas))),
            strategy,
            restart_at: None,
        })
}

/// Runs one scenario; returns the final status and every event, or the
/// first invariant violation.
fn play(
    spec: &RolloutSpec,
    ops: &[(Op, u64)],
) -> Result<(RolloutStatus, Vec<(u64, Event)>), String> {
    let mut sim = Sim::new(
        spec.clone(),
        World {
            ready_delay: 3 * S,
            analysis_duration: 20 * S,
            ..World::default()
        },
    );
    sim.run_until(S, 60 * S, Sim::healthy)
        .map_err(|v| v.to_string())?;
    let mut next = 1;
    for (op, dt) in ops {
        match op {
            Op::Tick => {}
            Op::Update => {
                sim.update(RevisionHash::new(format!("r{next}")));
                next += 1;
            }
            Op::FailNewPods => {
                let h = sim.spec.template_hash.clone();
                if sim.status.stable_hash.as_ref() != Some(&h) {
                    sim.fail_pods(&h);
                }
            }
            Op::Outcome(p) => {
                let h = sim.spec.template_hash.clone();
                sim.world.analysis_outcome.insert(h, *p);
            }
            Op::Cmd(c) => {
                let before = (sim.spec.clone(), sim.status.clone());
                if sim.command(c).is_err() && (sim.spec.clone(), sim.status.clone()) != before {
                    return Err(format!("refused {c:?} still changed state"));
                }
                let aborted = *c == Command::Abort && sim.status.abort;
                sim.tick(1).map_err(|v| v.to_string())?;
                if aborted {
                    check_on_stable(&sim)?;
                }
            }
            Op::Undo => {
                let _ = sim.undo(None);
            }
            Op::Restart(secs) => {
                let at = sim.now + secs * S;
                sim.command(&Command::Restart { at })
                    .map_err(|e| e.to_string())?;
            }
        }
        for _ in 0..(*dt / S) {
            sim.tick(S).map_err(|v| v.to_string())?;
        }
    }
    // Let it settle: an aborted rollout must end with the new revision gone
    // and everything on stable.
    sim.command(&Command::Resume).map_err(|e| e.to_string())?;
    sim.run_until(S, settle_window(spec), |_| false)
        .map_err(|v| v.to_string())?;
    if sim.status.abort {
        check_on_stable(&sim)?;
        let new = sim.spec.template_hash.clone();
        if sim.replicas_of(&new) != 0 {
            return Err(format!(
                "aborted, yet {new} still runs {} replicas",
                sim.replicas_of(&new)
            ));
        }
    }
    Ok((sim.status.clone(), sim.events.clone()))
}

/// Long enough for any history to end after the last operation: 120 s for
/// pods, delays and an analysis, plus every timed wait the steps can add (a
/// 119 s pause followed by a failing analysis and the abort's scale-down
/// delay outlasted a fixed 120 s).
fn settle_window(spec: &RolloutSpec) -> u64 {
    fn waits(step: &Step) -> u64 {
        match step {
            Step::Pause(Some(d)) => *d,
            Step::Analysis(_) => 20 * S,
            Step::Experiment(x) => x.duration.unwrap_or(0) + 20 * S,
            Step::Combined(parts) => parts.iter().map(waits).sum(),
            _ => 0,
        }
    }
    let steps = match &spec.strategy {
        e::Strategy::Canary(c) => c.steps.iter().map(waits).sum(),
        _ => 0,
    };
    120 * S + steps
}

fn check_on_stable(sim: &Sim) -> Result<(), String> {
    let stable = sim.status.stable_hash.clone().ok_or("no stable")?;
    let r = sim.route();
    let weights_ok = r.weights.iter().all(|w| w.revision == stable);
    let active_ok = r
        .services
        .get(&ServiceRole::Active)
        .is_none_or(|a| *a == stable);
    if weights_ok && active_ok {
        Ok(())
    } else {
        Err(format!("aborted but route is {r:?}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_random_histories(
        spec in rollout(),
        ops in proptest::collection::vec((op(), (0u64..90).prop_map(|s| s * S)), 1..25),
    ) {
        let first = play(&spec, &ops);
        prop_assert!(first.is_ok(), "{}", first.unwrap_err());
        // Same inputs, same outputs: the whole history replays identically.
        let second = play(&spec, &ops);
        prop_assert_eq!(first, second);
    }
}

/// Without failures or operations every rollout completes.
#[test]
fn every_generated_rollout_completes_when_nothing_goes_wrong() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..300 {
        let spec = rollout().new_tree(&mut runner).unwrap().current();
        if let e::Strategy::Canary(c) = &spec.strategy {
            // A PDB that forbids any unavailability with no surge room is a
            // deadlock by construction (Kubernetes would ignore the PDB; Serin
            // honours it and reports ProgressDeadlineExceeded).
            let b = e::replicas::bounds(
                spec.replicas,
                c.max_surge,
                c.max_unavailable,
                spec.pdb_min_available,
            );
            if !c.traffic_routing
                && b.max_total <= spec.replicas
                && b.min_available >= spec.replicas
            {
                continue;
            }
        }
        let mut sim = Sim::new(spec.clone(), World::default());
        assert!(sim.run_until(S, 60 * S, Sim::healthy).unwrap());
        sim.update(RevisionHash::new("next"));
        sim.run_until(S, 3600 * S, Sim::healthy)
            .unwrap_or_else(|v| panic!("{v} for {spec:?}"));
        // Indefinite pauses wait for promote: keep promoting until done.
        let mut rounds = 0;
        while !sim.healthy() && rounds < 20 {
            let _ = sim.command(&Command::Promote);
            sim.run_until(S, 600 * S, Sim::healthy)
                .unwrap_or_else(|v| panic!("{v} for {spec:?}"));
            rounds += 1;
        }
        assert!(sim.healthy(), "stuck: {:?} for {spec:?}", sim.status);
        // A restart of a healthy rollout replaces every pod and ends Healthy.
        let at = sim.now;
        sim.command(&Command::Restart { at }).unwrap();
        let done = sim
            .run_until(S, 3600 * S, |s| s.status.restarted_at == Some(at))
            .unwrap_or_else(|v| panic!("{v} for {spec:?}"));
        assert!(done, "restart stuck: {:?} for {spec:?}", sim.status);
        let hash = sim.spec.template_hash.clone();
        let times = sim.pod_creation_times(&hash);
        assert_eq!(times.len() as u32, spec.replicas);
        assert!(times.iter().all(|t| *t >= at), "old pods left: {times:?}");
        sim.tick(S).unwrap();
        assert!(sim.healthy(), "not healthy after restart: {:?}", sim.status);
    }
}
