//! Canary `experiment` steps, reconcile by reconcile (no clock, no sleep):
//! the pods they ask for, when analyses start, how the experiment ends
//! (Argo's experiments/experiment.go `calculateStatus`), and that its pods
//! go when the step ends, the rollout aborts or is promoted past it.

use serin_engine::*;

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

fn experiment(duration: Option<u64>, required: bool) -> ExperimentStep {
    ExperimentStep {
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
            analysis: AnalysisSpec {
                templates: vec!["judge".into()],
                args: vec![
                    AnalysisArg {
                        name: "baseline-hash".into(),
                        value: ArgValue::Literal("{{templates.baseline.podTemplateHash}}".into()),
                    },
                    AnalysisArg {
                        name: "canary-hash".into(),
                        value: ArgValue::Literal("{{templates.canary.podTemplateHash}}".into()),
                    },
                ],
            },
            required_for_completion: required,
        }],
    }
}

fn spec(steps: Vec<Step>) -> RolloutSpec {
    RolloutSpec {
        name: "app".into(),
        replicas: 2,
        template_hash: h("v2"),
        paused: false,
        progress_deadline: 600 * S,
        progress_deadline_abort: false,
        rollback_window: None,
        pdb_min_available: None,
        strategy: Strategy::Canary(CanarySpec {
            steps,
            max_surge: IntOrPercent::Int(1),
            max_unavailable: IntOrPercent::Int(0),
            traffic_routing: true,
            analysis: None,
            scale_down_delay: 0,
            abort_scale_down_delay: 0,
            dynamic_stable_scale: false,
        }),
        restart_at: None,
    }
}

fn rev(hash: &str, n: u32) -> ObservedRevision {
    ObservedRevision {
        hash: h(hash),
        number: 0,
        replicas: n,
        ready: n,
        available: n,
        oldest_pod_created: None,
    }
}

/// A tiny world: pods are available as soon as they are asked for unless
/// `hold` (experiment pods only), routes apply at once, runs keep the phase
/// the test gives them.
struct World {
    obs: Observed,
    status: RolloutStatus,
    now: u64,
    hold: bool,
}

impl World {
    /// v1 stable at 2 replicas; the spec rolls out v2.
    fn new() -> Self {
        Self {
            obs: Observed {
                revisions: vec![rev("v1", 2)],
                ..Observed::default()
            },
            status: RolloutStatus {
                phase: Phase::Healthy,
                current_hash: Some(h("v1")),
                stable_hash: Some(h("v1")),
                current_step_index: Some(0),
                ..RolloutStatus::default()
            },
            now: 1_000 * S,
            hold: false,
        }
    }

    fn step(&mut self, spec: &RolloutSpec) -> Reconciled {
        let out = reconcile(spec, &self.status, &self.obs, self.now);
        // Same inputs, same outputs.
        assert_eq!(out, reconcile(spec, &self.status, &self.obs, self.now));
        self.status = out.status.clone();
        for a in &out.actions {
            match a {
                Action::Scale { revision, replicas } => {
                    self.obs.revisions.retain(|r| &r.hash != revision);
                    if *replicas > 0 {
                        self.obs.revisions.push(rev(&revision.0, *replicas));
                    }
                }
                Action::ScaleExperiment {
                    workload, replicas, ..
                } => {
                    self.obs.experiments.retain(|r| &r.hash != workload);
                    if *replicas > 0 {
                        let mut r = rev(&workload.0, *replicas);
                        if self.hold {
                            (r.ready, r.available) = (0, 0);
                        }
                        self.obs.experiments.push(r);
                    }
                }
                Action::SetRoute(r) => self.obs.route = r.clone(),
                Action::StartAnalysis { name, .. } => {
                    self.obs
                        .analysis
                        .insert(name.clone(), AnalysisPhase::Running);
                }
                _ => {}
            }
        }
        out
    }

    /// Reconciles until nothing more happens at this time.
    fn settle(&mut self, spec: &RolloutSpec) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..20 {
            let out = self.step(spec);
            let quiet = out.actions.iter().all(|a| matches!(a, Action::Emit(_)));
            all.extend(out.actions);
            if quiet {
                return all;
            }
        }
        panic!("still acting at t={}: {:?}", self.now, self.status);
    }

    fn experiment_run(&self) -> String {
        self.status
            .analysis_runs
            .iter()
            .find(|r| matches!(r.kind, AnalysisKind::Experiment { .. }))
            .map(|r| r.name.clone())
            .expect("an experiment analysis run")
    }
}

fn scale_experiments(actions: &[Action]) -> Vec<(RevisionHash, RevisionHash, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ScaleExperiment {
                workload,
                revision,
                replicas,
            } => Some((workload.clone(), revision.clone(), *replicas)),
            _ => None,
        })
        .collect()
}

#[test]
fn runs_baseline_and_canary_pods_apart_from_the_rollout_then_passes_after_its_duration() {
    let spec = spec(vec![
        Step::SetWeight(50),
        Step::Experiment(experiment(Some(60 * S), false)),
        Step::Pause(None),
    ]);
    let mut w = World::new();
    w.settle(&spec);
    assert_eq!(w.status.current_step_index, Some(1), "{:?}", w.status);
    let rec = &w.status.experiments[0];
    assert_eq!(rec.phase, AnalysisPhase::Running, "{rec:?}");
    // Baseline from the stable's template, canary from the new one, each
    // under an identity of its own.
    let mut asked: Vec<(String, RevisionHash, u32)> = rec
        .workloads
        .iter()
        .map(|x| (x.template.clone(), x.revision.clone(), x.replicas))
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        vec![
            ("baseline".into(), h("v1"), 1),
            ("canary".into(), h("v2"), 2)
        ]
    );
    for x in &rec.workloads {
        assert!(x.hash != h("v1") && x.hash != h("v2"), "{x:?}");
        let o = w.obs.experiments.iter().find(|o| o.hash == x.hash);
        assert_eq!(o.map(|o| o.replicas), Some(x.replicas));
    }
    // No Service and no weight of the rollout names an experiment pod.
    let named: Vec<&RevisionHash> = w
        .obs
        .route
        .services
        .values()
        .chain(w.obs.route.weights.iter().map(|d| &d.revision))
        .collect();
    assert!(
        named.iter().all(|n| **n == h("v1") || **n == h("v2")),
        "{:?}",
        w.obs.route
    );
    // The analysis started once the pods were available.
    let run = w.experiment_run();
    let available_at = rec.available_at.expect("available");
    // Success of a run that is not required does not end it early.
    w.obs
        .analysis
        .insert(run.clone(), AnalysisPhase::Successful);
    w.now += 10 * S;
    let out = w.step(&spec);
    assert_eq!(w.status.current_step_index, Some(1));
    assert_eq!(out.next_wake, Some(available_at + 60 * S));
    // The duration passes: the step completes and the pods go.
    w.now = available_at + 60 * S;
    let actions = w.settle(&spec);
    assert_eq!(w.status.current_step_index, Some(2), "{:?}", w.status);
    let down = scale_experiments(&actions);
    assert_eq!(down.len(), 2, "{actions:?}");
    assert!(down.iter().all(|(_, _, n)| *n == 0), "{down:?}");
    assert!(w.obs.experiments.is_empty());
    assert!(actions.contains(&Action::Emit(Event::ExperimentCompleted {
        name: w.status.experiments[0].name.clone(),
        phase: AnalysisPhase::Successful,
    })));
    assert_eq!(w.status.phase, Phase::Paused);
}

#[test]
fn analyses_start_only_once_every_pod_is_available_and_get_the_pods_hashes() {
    let spec = spec(vec![Step::Experiment(experiment(Some(60 * S), false))]);
    let mut w = World::new();
    w.hold = true;
    let actions = w.settle(&spec);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartAnalysis { .. })),
        "{actions:?}"
    );
    assert_eq!(w.status.experiments[0].phase, AnalysisPhase::Pending);
    for o in &mut w.obs.experiments {
        (o.ready, o.available) = (o.replicas, o.replicas);
    }
    w.now += 5 * S;
    let actions = w.settle(&spec);
    let args = actions
        .iter()
        .find_map(|a| match a {
            Action::StartAnalysis { kind, args, .. } => {
                assert_eq!(
                    *kind,
                    AnalysisKind::Experiment {
                        step: 0,
                        analysis: 0
                    }
                );
                Some(args.clone())
            }
            _ => None,
        })
        .expect("the analysis starts");
    let rec = &w.status.experiments[0];
    assert_eq!(rec.available_at, Some(w.now));
    let hash_of = |t: &str| {
        rec.workloads
            .iter()
            .find(|x| x.template == t)
            .map(|x| ArgValueResolved::Value(x.hash.0.clone()))
    };
    assert_eq!(
        args,
        vec![
            ("baseline-hash".to_string(), hash_of("baseline").expect("b")),
            ("canary-hash".to_string(), hash_of("canary").expect("c")),
        ]
    );
}

#[test]
fn a_failed_analysis_aborts_the_rollout_and_removes_the_experiment_pods_at_once() {
    let spec = spec(vec![
        Step::SetWeight(50),
        Step::Experiment(experiment(Some(600 * S), false)),
        Step::Pause(None),
    ]);
    let mut w = World::new();
    w.settle(&spec);
    let run = w.experiment_run();
    w.obs.analysis.insert(run.clone(), AnalysisPhase::Failed);
    w.now += 30 * S;
    let out = w.step(&spec);
    assert!(w.status.abort, "{:?}", w.status);
    assert_eq!(w.status.phase, Phase::Degraded);
    assert!(w.status.message.contains(&run), "{}", w.status.message);
    // In the same reconcile: all traffic on stable, experiment pods asked to 0.
    assert_eq!(
        w.obs.route.weights,
        vec![WeightedDestination {
            revision: h("v1"),
            weight: 100
        }]
    );
    let down = scale_experiments(&out.actions);
    assert_eq!(down.len(), 2, "{:?}", out.actions);
    assert!(down.iter().all(|(_, _, n)| *n == 0));
    assert!(w.obs.experiments.is_empty());
    assert!(
        out.actions
            .contains(&Action::Emit(Event::AnalysisRunFailed { name: run }))
    );
}

#[test]
fn without_duration_a_required_analysis_ends_it_and_the_others_are_stopped() {
    let mut x = experiment(None, true);
    x.analyses.push(ExperimentAnalysis {
        name: "smoke".into(),
        analysis: AnalysisSpec {
            templates: vec!["smoke".into()],
            args: Vec::new(),
        },
        required_for_completion: false,
    });
    let spec = spec(vec![Step::Experiment(x), Step::Pause(None)]);
    let mut w = World::new();
    w.settle(&spec);
    let runs: Vec<(String, AnalysisKind)> = w
        .status
        .analysis_runs
        .iter()
        .map(|r| (r.name.clone(), r.kind))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (required, other) = (&runs[0].0, &runs[1].0);
    w.obs
        .analysis
        .insert(required.clone(), AnalysisPhase::Successful);
    w.now += 20 * S;
    let actions = w.settle(&spec);
    assert_eq!(w.status.current_step_index, Some(1), "{:?}", w.status);
    assert!(
        actions.contains(&Action::StopAnalysis {
            name: other.clone()
        }),
        "{actions:?}"
    );
    assert!(w.obs.experiments.is_empty());
}

#[test]
fn without_duration_or_required_analysis_it_runs_until_promoted_as_in_argo() {
    let spec = spec(vec![
        Step::Experiment(experiment(None, false)),
        Step::Pause(None),
    ]);
    let mut w = World::new();
    w.settle(&spec);
    let run = w.experiment_run();
    w.obs.analysis.insert(run, AnalysisPhase::Successful);
    w.now += 3_600 * S;
    let out = w.step(&spec);
    assert_eq!(w.status.current_step_index, Some(0));
    assert_eq!(w.status.phase, Phase::Progressing, "{:?}", w.status);
    assert!(
        !w.status.deadline_exceeded,
        "an experiment step is not stuck"
    );
    assert_eq!(out.next_wake, None, "nothing but a person can end it");
    let mut spec2 = spec.clone();
    apply_command(&mut spec2, &mut w.status, &Command::Promote, w.now).expect("promote");
    w.settle(&spec2);
    assert_eq!(w.status.current_step_index, Some(1));
    assert!(w.obs.experiments.is_empty(), "{:?}", w.obs.experiments);
}

#[test]
fn pods_that_never_become_available_fail_it_after_the_progress_deadline() {
    let spec = spec(vec![Step::Experiment(experiment(Some(60 * S), false))]);
    let mut w = World::new();
    w.hold = true;
    let started = w.now;
    let out = w.step(&spec);
    assert_eq!(out.next_wake, Some(started + 600 * S + 1));
    w.settle(&spec);
    w.now = started + 600 * S + 1;
    w.settle(&spec);
    assert!(w.status.abort, "{:?}", w.status);
    assert!(
        w.status
            .message
            .contains("exceeded its progressDeadlineSeconds (600)"),
        "{}",
        w.status.message
    );
    assert!(w.obs.experiments.is_empty());
}

#[test]
fn a_new_revision_mid_experiment_removes_its_pods_and_forgets_it() {
    let spec1 = spec(vec![Step::Experiment(experiment(Some(600 * S), false))]);
    let mut w = World::new();
    w.settle(&spec1);
    assert_eq!(w.obs.experiments.len(), 2);
    let mut spec2 = spec1.clone();
    spec2.template_hash = h("v3");
    w.now += S;
    w.settle(&spec2);
    // v3's own experiment runs; v2's pods are gone and its record forgotten.
    assert!(
        w.status.experiments.iter().all(|r| r.name.contains("-v3-")),
        "{:?}",
        w.status.experiments
    );
    assert_eq!(w.obs.experiments.len(), 2);
    assert!(w.obs.experiments.iter().all(|o| {
        w.status.experiments[0]
            .workloads
            .iter()
            .any(|x| x.hash == o.hash)
    }));
}
