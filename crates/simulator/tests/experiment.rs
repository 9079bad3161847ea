//! Experiment steps in the simulator, with its invariants checked on every
//! reconcile (experiment pods never outlive their step): a passing
//! experiment lets the canary finish, a failing analysis aborts it, with
//! and without traffic routing.

use serin_engine::*;
use serin_simulator::{Sim, World};

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

fn spec(traffic_routing: bool) -> RolloutSpec {
    let x = ExperimentStep {
        duration: Some(120 * S),
        templates: vec![
            ExperimentTemplate {
                name: "baseline".into(),
                spec_ref: SpecRef::Stable,
                replicas: 1,
                weight: None,
            },
            ExperimentTemplate {
                name: "canary".into(),
                spec_ref: SpecRef::Canary,
                replicas: 1,
                weight: None,
            },
        ],
        analyses: vec![ExperimentAnalysis {
            name: "compare".into(),
            analysis: AnalysisSpec {
                templates: vec!["judge".into()],
                args: Vec::new(),
            },
            required_for_completion: false,
        }],
    };
    RolloutSpec {
        name: "app".into(),
        replicas: 4,
        template_hash: h("v1"),
        paused: false,
        progress_deadline: 600 * S,
        progress_deadline_abort: false,
        rollback_window: None,
        pdb_min_available: None,
        strategy: Strategy::Canary(CanarySpec {
            steps: vec![
                Step::SetWeight(25),
                Step::Experiment(x),
                Step::SetWeight(50),
                Step::Pause(Some(30 * S)),
            ],
            max_surge: IntOrPercent::Percent(25),
            max_unavailable: IntOrPercent::Int(0),
            traffic_routing,
            analysis: None,
            scale_down_delay: 30 * S,
            abort_scale_down_delay: 30 * S,
            dynamic_stable_scale: false,
        }),
        restart_at: None,
    }
}

fn deployed(traffic_routing: bool, world: World) -> Sim {
    let mut sim = Sim::new(spec(traffic_routing), world);
    assert!(
        sim.run_until(S, 120 * S, Sim::healthy)
            .expect("no violation")
    );
    sim
}

#[test]
fn a_passing_experiment_runs_its_pods_then_the_canary_completes() {
    for routed in [true, false] {
        let mut sim = deployed(routed, World::default());
        sim.update(h("v2"));
        let mut max_pods = 0;
        let mut seen_at_step = None;
        let done = sim
            .run_until(S, 900 * S, |s| {
                let pods: u32 = s.experiment_pods().values().sum();
                if pods > max_pods {
                    max_pods = pods;
                    seen_at_step = s.status.current_step_index;
                }
                s.healthy()
            })
            .expect("no violation");
        assert!(done, "routed={routed}: {:?}", sim.status);
        assert_eq!(max_pods, 2, "baseline + canary, routed={routed}");
        assert_eq!(seen_at_step, Some(1));
        assert!(sim.experiment_pods().is_empty());
        let completed = sim.events.iter().any(|(_, e)| {
            matches!(
                e,
                Event::ExperimentCompleted {
                    phase: AnalysisPhase::Successful,
                    ..
                }
            )
        });
        assert!(completed, "{:?}", sim.events);
    }
}

#[test]
fn a_failing_experiment_analysis_aborts_the_rollout() {
    for routed in [true, false] {
        let mut world = World::default();
        world
            .analysis_outcome
            .insert(h("v2"), AnalysisPhase::Failed);
        let mut sim = deployed(routed, world);
        sim.update(h("v2"));
        let aborted = sim
            .run_until(S, 900 * S, |s| s.status.abort)
            .expect("no violation");
        assert!(aborted, "routed={routed}: {:?}", sim.status);
        assert_eq!(sim.status.current_step_index, Some(1));
        assert!(sim.experiment_pods().is_empty());
        // The stable takes everything back.
        assert!(
            sim.run_until(S, 120 * S, |s| s.replicas_of(&h("v2")) == 0
                && s.replicas_of(&h("v1")) == 4)
                .expect("no violation"),
            "routed={routed}"
        );
        assert_eq!(sim.status.phase, Phase::Degraded);
    }
}
