//! The driver itself (`serin_driver::Driver`) over the simulated platform:
//! the order it acts in, analysis across steps, a restart of the driver,
//! per-rollout failure with backoff, route drift, sleeping until the
//! engine's next wake, and user operations (pause, undo, restart) kept as
//! overrides beside the manifest. Deterministic: the clock moves only to the next
//! thing that can happen (a pod becoming ready, a run ending, a wake or a
//! retry the driver asked for) — nothing sleeps.

use std::collections::BTreeMap;

use serin_driver::{
    Adapters, Driver, OperateError, Outcome, Target, UserOperation, Workload, operate, resolve,
};
use serin_engine::*;
use serin_simulator::world::{Call, SimWorld, run_ready};

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

fn canary(steps: Vec<Step>) -> Strategy {
    Strategy::Canary(CanarySpec {
        steps,
        max_surge: IntOrPercent::Percent(25),
        max_unavailable: IntOrPercent::Int(0),
        traffic_routing: true,
        analysis: None,
        scale_down_delay: 30 * S,
        abort_scale_down_delay: 30 * S,
        dynamic_stable_scale: false,
    })
}

fn image(name: &str, tag: &str) -> serde_json::Value {
    serde_json::json!({"containers": [{"name": "app", "image": format!("{name}:{tag}")}]})
}

fn target(name: &str, replicas: u32, strategy: Strategy) -> Target {
    Target {
        spec: RolloutSpec {
            name: name.into(),
            replicas,
            template_hash: h("v1"),
            paused: false,
            progress_deadline: 600 * S,
            progress_deadline_abort: false,
            rollback_window: None,
            pdb_min_available: None,
            strategy,
            restart_at: None,
        },
        workload: Workload {
            template: image(name, "v1"),
            min_ready_seconds: 0,
        },
    }
}

fn analysis() -> AnalysisSpec {
    AnalysisSpec {
        templates: vec!["success-rate".into()],
        args: Vec::new(),
    }
}

struct Harness {
    world: SimWorld,
    driver: Driver,
    targets: BTreeMap<String, Target>,
    passes: u64,
}

impl Harness {
    fn new(targets: Vec<Target>) -> Self {
        Self {
            world: SimWorld::default(),
            driver: Driver::new(),
            targets: targets
                .into_iter()
                .map(|t| (t.spec.name.clone(), t))
                .collect(),
            passes: 0,
        }
    }

    /// One pass over every rollout, as `serin up`'s loop does: each
    /// manifest target resolved with the user's overrides, then driven.
    fn pass(&mut self) -> BTreeMap<String, Outcome> {
        self.passes += 1;
        let world = &self.world;
        let clock = move || world.now();
        let ad = Adapters {
            platform: &self.world,
            router: &self.world,
            store: &self.world,
            analysis: &self.world,
        };
        self.targets
            .iter()
            .map(|(n, t)| {
                let t = run_ready(resolve(&self.world, t.clone())).expect("overrides readable");
                (n.clone(), run_ready(self.driver.drive(&ad, &t, &clock)))
            })
            .collect()
    }

    /// Passes until `done`; between passes the clock jumps to the earliest
    /// of the rollouts' wakes and the world's next change, or stays when a
    /// pass acted (the next step must see what it did). False if nothing
    /// can happen any more or `limit` ms passed.
    fn run_until(&mut self, limit: Millis, done: impl Fn(&Self) -> bool) -> bool {
        let end = self.world.now() + limit;
        let mut same_time = 0;
        let mut looked_again = false;
        loop {
            let outcomes = self.pass();
            if done(self) {
                return true;
            }
            let now = self.world.now();
            let acted = outcomes.values().any(|o| match o {
                Outcome::Stepped { step, .. } => step
                    .reconciled
                    .actions
                    .iter()
                    .any(|a| !matches!(a, Action::Emit(_) | Action::RestartPods { .. })),
                _ => false,
            });
            // A restart in progress asks for replacements on every step
            // (the platform paces them), so it is not "acting"; but the
            // platform may have retired replaced pods in that call, which
            // only the next step sees — look once more at the same time.
            let restarting = outcomes.values().any(|o| match o {
                Outcome::Stepped { step, .. } => step
                    .reconciled
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::RestartPods { .. })),
                _ => false,
            });
            let later = outcomes
                .values()
                .filter_map(Outcome::wake_at)
                .chain(self.world.next_change())
                .filter(|t| *t > now)
                .min();
            let next = if acted {
                same_time += 1;
                assert!(same_time < 50, "the driver keeps acting at t={now}");
                Some(now)
            } else if restarting && !looked_again {
                looked_again = true;
                Some(now)
            } else {
                same_time = 0;
                looked_again = false;
                later
            };
            match next {
                Some(t) if t <= end => self.world.set_now(t),
                _ => return false,
            }
        }
    }

    /// A manifest edit: a new template (its image names the revision).
    fn update(&mut self, rollout: &str, hash: &str) {
        if let Some(t) = self.targets.get_mut(rollout) {
            t.spec.template_hash = h(hash);
            t.workload.template = image(rollout, hash);
        }
    }

    /// A user operation through the driver, as `serin up`'s API runs it.
    fn operate(
        &mut self,
        rollout: &str,
        op: &UserOperation,
    ) -> Result<Option<RevisionHash>, OperateError> {
        let t = self.targets.get(rollout).expect("known rollout").clone();
        let out = run_ready(operate(&self.world, &self.world, &t, op, self.world.now()));
        self.driver.reset(rollout);
        out
    }

    /// The target the next pass runs for `rollout`.
    fn resolved(&self, rollout: &str) -> Target {
        let t = self.targets.get(rollout).expect("known rollout").clone();
        run_ready(resolve(&self.world, t)).expect("overrides readable")
    }

    fn command(&mut self, rollout: &str, cmd: &Command) {
        let t = self.targets.get_mut(rollout).expect("known rollout");
        let mut status = self.world.status(rollout);
        apply_command(&mut t.spec, &mut status, cmd, self.world.now()).expect("command accepted");
        self.world.put_status(rollout, status);
        self.driver.reset(rollout);
    }

    fn healthy_on(&self, rollout: &str, hash: &str) -> bool {
        let s = self.world.status(rollout);
        s.phase == Phase::Healthy && s.stable_hash == Some(h(hash))
    }

    fn weight_in_force(&self, rollout: &str, hash: &str) -> u32 {
        self.world
            .route_in_force(rollout)
            .weights
            .iter()
            .find(|w| w.revision == h(hash))
            .map_or(0, |w| w.weight)
    }

    fn at_pause(&self, rollout: &str) -> bool {
        self.world
            .status(rollout)
            .pause_conditions
            .iter()
            .any(|p| p.reason == PauseReason::CanaryPauseStep)
    }
}

/// v1 deployed and healthy, v2 paused at `setWeight: 50` then `pause: {}`.
fn paused_at_half() -> Harness {
    let mut hx = Harness::new(vec![target(
        "app",
        4,
        canary(vec![Step::SetWeight(50), Step::Pause(None)]),
    )]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    assert!(
        hx.run_until(600 * S, |h| h.at_pause("app")
            && h.weight_in_force("app", "v2") == 50),
        "never paused at 50 %: {:?}",
        hx.world.status("app")
    );
    hx
}

#[test]
fn abort_moves_traffic_before_any_scale_and_scales_the_canary_away_at_its_delay() {
    let mut hx = paused_at_half();
    let before = hx.world.calls().len();
    hx.command("app", &Command::Abort);
    let aborted_at = hx.world.now();
    let next = hx.pass();
    let calls = hx.world.calls()[before..].to_vec();
    assert!(
        matches!(calls.first(), Some(Call::SetRoute { route, .. })
            if route.weights.iter().all(|w| w.revision != h("v2") || w.weight == 0)),
        "the first thing after an abort must be traffic back to stable: {calls:?}"
    );
    assert_eq!(hx.weight_in_force("app", "v2"), 0);
    assert_eq!(
        next["app"].wake_at(),
        Some(aborted_at + 30 * S),
        "the engine asks to be woken when abortScaleDownDelay ends"
    );
    assert!(hx.run_until(120 * S, |x| x.world.replicas("app", &h("v2")) == 0));
    assert_eq!(
        hx.world.now(),
        aborted_at + 30 * S,
        "scaled away exactly at the delay, not at a tick"
    );
    let calls = hx.world.calls()[before..].to_vec();
    let route_away = calls
        .iter()
        .position(|c| matches!(c, Call::SetRoute { .. }))
        .expect("a route change");
    let scale_down = calls
        .iter()
        .position(
            |c| matches!(c, Call::Scale { revision, replicas: 0, .. } if *revision == h("v2")),
        )
        .expect("the canary scaled away");
    assert!(route_away < scale_down, "{calls:?}");
    assert_eq!(hx.world.status("app").phase, Phase::Degraded);
}

#[test]
fn analysis_runs_start_with_their_step_and_gate_the_next_one() {
    let steps = vec![
        Step::SetWeight(20),
        Step::Analysis(analysis()),
        Step::SetWeight(60),
        Step::Analysis(analysis()),
    ];
    let mut hx = Harness::new(vec![target("app", 5, canary(steps))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    let before = hx.world.calls().len();
    assert!(hx.run_until(1_200 * S, |h| h.healthy_on("app", "v2")));
    let calls = hx.world.calls()[before..].to_vec();
    let pos = |f: &dyn Fn(&Call) -> bool| calls.iter().position(f).expect("call made");
    let weight = |w: u32| {
        move |c: &Call| {
            matches!(c, Call::SetRoute { route, .. }
                if route.weights.iter().any(|x| x.revision == h("v2") && x.weight == w))
        }
    };
    let started = |step: &'static str| move |c: &Call| matches!(c, Call::StartAnalysis { name, .. } if name.ends_with(step));
    let w20 = pos(&weight(20));
    let run1 = pos(&started("step-1"));
    let w60 = pos(&weight(60));
    let run3 = pos(&started("step-3"));
    assert!(w20 < run1 && run1 < w60 && w60 < run3, "{calls:?}");
    // Each run lasts 60 s: the weight moves only after the first one ended.
    let completed: Vec<Millis> = hx
        .world
        .events("app")
        .iter()
        .filter(|(_, e)| matches!(e, Event::StepCompleted { step: 1 }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(completed.len(), 1);
    let runs = calls
        .iter()
        .filter(|c| matches!(c, Call::StartAnalysis { .. }))
        .count();
    assert_eq!(
        runs, 2,
        "one run per analysis step, never restarted: {calls:?}"
    );
}

#[test]
fn a_failed_analysis_aborts_and_no_later_step_runs() {
    let steps = vec![
        Step::SetWeight(20),
        Step::Analysis(analysis()),
        Step::SetWeight(60),
        Step::Analysis(analysis()),
    ];
    let mut hx = Harness::new(vec![target("app", 5, canary(steps))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.world.analysis_outcome(&h("v2"), AnalysisPhase::Failed);
    hx.update("app", "v2");
    assert!(hx.run_until(600 * S, |h| h.world.status("app").abort));
    assert_eq!(
        hx.weight_in_force("app", "v2"),
        0,
        "traffic left the canary"
    );
    assert!(
        !hx.world
            .calls()
            .iter()
            .any(|c| matches!(c, Call::StartAnalysis { name, .. } if name.ends_with("step-3"))),
        "no later analysis"
    );
    assert!(
        hx.world
            .events("app")
            .iter()
            .any(|(_, e)| matches!(e, Event::AnalysisRunFailed { .. }))
    );
}

#[test]
fn a_restarted_driver_resumes_at_the_same_step_without_touching_traffic() {
    let mut hx = paused_at_half();
    let status = hx.world.status("app");
    let route = hx.world.route_in_force("app");
    // A new driver (the control plane was SIGKILLed and started again)
    // over the same world and store.
    hx.driver = Driver::new();
    let before = hx.world.calls().len();
    hx.pass();
    assert_eq!(
        hx.world.calls().len(),
        before,
        "{:?}",
        &hx.world.calls()[before..]
    );
    assert_eq!(
        hx.world.status("app").current_step_index,
        status.current_step_index
    );
    assert_eq!(hx.world.route_in_force("app"), route);
    hx.command("app", &Command::Promote);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v2")));
}

#[test]
fn a_failing_rollout_backs_off_shows_one_error_and_leaves_others_progressing() {
    let mut hx = Harness::new(vec![
        target(
            "good",
            3,
            canary(vec![Step::SetWeight(50), Step::Pause(Some(10 * S))]),
        ),
        target("bad", 3, canary(Vec::new())),
    ]);
    hx.world.fail_scale("bad", true);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("good", "v1")));
    hx.update("good", "v2");
    assert!(hx.run_until(600 * S, |h| h.healthy_on("good", "v2")));
    // Ten more minutes of a broken rollout: retries back off (1, 2, 4 … s,
    // at most 5 min apart), not a hot loop.
    let start = hx.world.now();
    hx.run_until(600 * S, |h| h.world.now() >= start + 600 * S);
    let calls = hx.world.calls();
    let attempts = calls
        .iter()
        .filter(|c| matches!(c, Call::Scale { rollout, .. } if rollout == "bad"))
        .count();
    assert!((5..=15).contains(&attempts), "{attempts} attempts");
    let errors: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::DriverError { rollout, .. } if rollout == "bad"))
        .collect();
    assert_eq!(errors.len(), 1, "one event, not one per retry: {errors:?}");
    let (message, retry_at) = hx.world.driver_error("bad").expect("the error is shown");
    assert!(message.contains("images"), "{message}");
    assert!(retry_at.is_some_and(|t| t > hx.world.now()));
    // Fixed: the next retry succeeds and clears the error.
    hx.world.fail_scale("bad", false);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("bad", "v1")));
    assert_eq!(hx.world.driver_error("bad"), None);
}

#[test]
fn route_drift_in_the_router_is_detected_and_corrected() {
    let mut hx = paused_at_half();
    let route = hx.world.route_in_force("app");
    hx.world.drift(
        "app",
        Route {
            weights: vec![WeightedDestination {
                revision: h("v2"),
                weight: 100,
            }],
            ..Route::default()
        },
    );
    let out = hx.pass();
    let Outcome::Stepped { step, .. } = &out["app"] else {
        panic!("step failed: {out:?}");
    };
    assert!(step.route_corrected);
    assert_eq!(hx.world.route_in_force("app"), route);
    assert_eq!(hx.world.status("app").current_step_index, Some(1));
}

#[test]
fn timed_pauses_end_at_the_engines_wake_not_at_a_tick() {
    let steps = vec![
        Step::SetWeight(25),
        Step::Pause(Some(60 * S)),
        Step::SetWeight(75),
        Step::Pause(Some(60 * S)),
    ];
    let mut hx = Harness::new(vec![target("app", 4, canary(steps))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    hx.passes = 0;
    assert!(hx.run_until(1_200 * S, |h| h.healthy_on("app", "v2")));
    // Two minutes of pauses at a 1 s tick would be 120+ passes.
    assert!(hx.passes < 60, "{} passes", hx.passes);
    let events = hx.world.events("app");
    let paused = events
        .iter()
        .find(|(_, e)| matches!(e, Event::Paused { .. }))
        .map(|(t, _)| *t)
        .expect("paused");
    let done = events
        .iter()
        .find(|(_, e)| matches!(e, Event::StepCompleted { step: 1 }))
        .map(|(t, _)| *t)
        .expect("pause step completed");
    assert_eq!(done, paused + 60 * S);
}

#[test]
fn an_abort_without_delay_routes_away_before_scaling_down_in_the_same_step() {
    let mut t = target(
        "app",
        4,
        canary(vec![Step::SetWeight(50), Step::Pause(None)]),
    );
    if let Strategy::Canary(c) = &mut t.spec.strategy {
        c.abort_scale_down_delay = 0;
    }
    let mut hx = Harness::new(vec![t]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    assert!(hx.run_until(600 * S, |h| h.at_pause("app")
        && h.weight_in_force("app", "v2") == 50));
    let before = hx.world.calls().len();
    hx.command("app", &Command::Abort);
    hx.pass();
    let calls = hx.world.calls()[before..].to_vec();
    assert!(
        matches!(
            calls.as_slice(),
            [Call::SetRoute { .. }, Call::Scale { revision, replicas: 0, .. }, ..] if *revision == h("v2")
        ),
        "one step: traffic away first, then the scale-down: {calls:?}"
    );
}

#[test]
fn the_old_stable_is_scaled_away_when_its_scale_down_delay_ends() {
    let mut hx = Harness::new(vec![target("app", 2, canary(vec![Step::SetWeight(50)]))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v2")));
    let promoted = hx
        .world
        .events("app")
        .iter()
        .find(|(_, e)| matches!(e, Event::Completed { .. }))
        .map(|(t, _)| *t)
        .expect("completed");
    assert_eq!(hx.world.replicas("app", &h("v1")), 2, "kept for the delay");
    assert!(hx.run_until(600 * S, |x| x.world.replicas("app", &h("v1")) == 0));
    assert_eq!(hx.world.now(), promoted + 30 * S);
}

#[test]
fn a_scheduled_restart_starts_at_restart_at() {
    let mut hx = Harness::new(vec![target("app", 2, canary(Vec::new()))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    let at = hx.world.now() + 100 * S;
    if let Some(t) = hx.targets.get_mut("app") {
        t.spec.restart_at = Some(at);
    }
    assert!(hx.run_until(600 * S, |x| x.world.status("app").restarting.is_some()));
    assert_eq!(
        hx.world.now(),
        at,
        "woken for the restart, not before, not at a tick"
    );
    assert!(hx.run_until(600 * S, |x| x.world.status("app").restarted_at == Some(at)));
}

#[test]
fn a_user_pause_holds_a_timed_step_until_resume_as_an_override() {
    let mut hx = Harness::new(vec![target(
        "app",
        2,
        canary(vec![Step::SetWeight(50), Step::Pause(Some(10 * S))]),
    )]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    assert!(hx.run_until(600 * S, |h| h.weight_in_force("app", "v2") == 50));
    hx.operate("app", &UserOperation::Command(Command::Pause))
        .expect("pause accepted");
    assert!(
        hx.resolved("app").spec.paused,
        "the override pauses the spec"
    );
    assert!(
        !hx.targets["app"].spec.paused,
        "the manifest is not changed"
    );
    // Far past the 10 s pause: still at 50 %, still on the first step.
    let step = hx.world.status("app").current_step_index;
    let start = hx.world.now();
    hx.run_until(60 * S, |h| h.world.now() >= start + 60 * S);
    assert_eq!(hx.world.status("app").current_step_index, step);
    assert_eq!(hx.weight_in_force("app", "v2"), 50);
    hx.operate("app", &UserOperation::Command(Command::Resume))
        .expect("resume accepted");
    assert!(!hx.resolved("app").spec.paused);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v2")));
}

#[test]
fn undo_runs_the_older_revision_until_the_manifest_changes() {
    let mut hx = Harness::new(vec![target("app", 2, canary(Vec::new()))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v2")));

    // A revision that does not exist is refused and changes nothing.
    let err = hx
        .operate(
            "app",
            &UserOperation::Undo {
                to_revision: Some(9),
            },
        )
        .expect_err("no revision 9");
    assert!(
        matches!(err, OperateError::Refused(CommandError::NoSuchRevision(9))),
        "{err}"
    );
    assert_eq!(hx.resolved("app").spec.template_hash, h("v2"));

    let chosen = hx
        .operate("app", &UserOperation::Undo { to_revision: None })
        .expect("undo accepted");
    assert_eq!(chosen, Some(h("v1")));
    let t = hx.resolved("app");
    assert_eq!(t.spec.template_hash, h("v1"));
    assert_eq!(
        t.workload.template,
        image("app", "v1"),
        "v1's recorded template"
    );
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));

    // The manifest moves on: the undo no longer applies.
    hx.update("app", "v3");
    assert_eq!(hx.resolved("app").spec.template_hash, h("v3"));
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v3")));
}

#[test]
fn a_user_restart_applies_until_the_manifests_restart_at_changes() {
    let mut hx = Harness::new(vec![target("app", 2, canary(Vec::new()))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    let at = hx.world.now() + 50 * S;
    hx.operate("app", &UserOperation::Restart { at })
        .expect("restart accepted");
    assert_eq!(hx.resolved("app").spec.restart_at, Some(at));
    assert!(hx.run_until(600 * S, |x| x.world.status("app").restarting == Some(at)));
    assert_eq!(
        hx.world.now(),
        at,
        "woken for the user's restart, not before"
    );
    assert!(hx.run_until(600 * S, |x| x.world.status("app").restarted_at == Some(at)));
    // The manifest's own restartAt is edited: it takes over again.
    let later = hx.world.now() + 100 * S;
    if let Some(t) = hx.targets.get_mut("app") {
        t.spec.restart_at = Some(later);
    }
    assert_eq!(hx.resolved("app").spec.restart_at, Some(later));
    assert!(hx.run_until(600 * S, |x| x.world.status("app").restarting == Some(later)));
    let ok = hx.run_until(600 * S, |x| {
        x.world.status("app").restarted_at == Some(later)
    });
    assert!(
        ok,
        "now {} later {later}: {:?} calls {:?}",
        hx.world.now(),
        hx.world.status("app"),
        hx.world.calls().iter().rev().take(6).collect::<Vec<_>>()
    );
}

fn experiment_step(duration: Option<Millis>) -> Step {
    Step::Experiment(ExperimentStep {
        duration,
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
                replicas: 2,
                weight: None,
            },
        ],
        analyses: vec![ExperimentAnalysis {
            name: "compare".into(),
            analysis: analysis(),
            required_for_completion: true,
        }],
    })
}

#[test]
fn an_experiment_step_runs_its_pods_through_the_platform_and_removes_them_when_it_passes() {
    let steps = vec![
        Step::SetWeight(20),
        experiment_step(Some(120 * S)),
        Step::SetWeight(60),
    ];
    let mut hx = Harness::new(vec![target("app", 5, canary(steps))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.update("app", "v2");
    let before = hx.world.calls().len();
    // While the experiment runs: baseline from v1's template, canary from v2's.
    assert!(hx.run_until(
        600 * S,
        |x| x.world.experiment_pods("app").values().sum::<u32>() == 3
    ));
    let status = hx.world.status("app");
    assert_eq!(status.current_step_index, Some(1));
    let calls = hx.world.calls()[before..].to_vec();
    let mut up: Vec<(RevisionHash, u32)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::ScaleExperiment {
                template_of,
                replicas,
                ..
            } if *replicas > 0 => Some((template_of.clone(), *replicas)),
            _ => None,
        })
        .collect();
    up.sort();
    assert_eq!(up, vec![(h("v1"), 1), (h("v2"), 2)], "{calls:?}");
    // The route never names an experiment workload.
    let workloads: Vec<RevisionHash> = status.experiments[0]
        .workloads
        .iter()
        .map(|w| w.hash.clone())
        .collect();
    assert!(calls.iter().all(|c| {
        match c {
            Call::SetRoute { route, .. } => route
                .weights
                .iter()
                .all(|w| !workloads.contains(&w.revision)),
            _ => true,
        }
    }));
    assert!(hx.run_until(1_200 * S, |h| h.healthy_on("app", "v2")));
    assert!(hx.world.experiment_pods("app").is_empty());
    let events = hx.world.events("app");
    assert!(events.iter().any(|(_, e)| matches!(
        e,
        Event::ExperimentCompleted {
            phase: AnalysisPhase::Successful,
            ..
        }
    )));
}

#[test]
fn a_failing_experiment_analysis_aborts_through_the_driver() {
    let steps = vec![
        Step::SetWeight(20),
        experiment_step(None),
        Step::SetWeight(60),
    ];
    let mut hx = Harness::new(vec![target("app", 5, canary(steps))]);
    assert!(hx.run_until(600 * S, |h| h.healthy_on("app", "v1")));
    hx.world.analysis_outcome(&h("v2"), AnalysisPhase::Failed);
    hx.update("app", "v2");
    assert!(hx.run_until(600 * S, |x| x.world.status("app").abort));
    let status = hx.world.status("app");
    assert_eq!(status.current_step_index, Some(1));
    assert_eq!(status.phase, Phase::Degraded);
    assert!(hx.world.experiment_pods("app").is_empty());
    assert_eq!(hx.weight_in_force("app", "v2"), 0);
}
