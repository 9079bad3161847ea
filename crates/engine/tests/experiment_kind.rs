//! Argo's standalone `Experiment` kind, reconcile by reconcile (no clock,
//! no sleep): Pending until every template's pods are available, Running
//! with its analyses, and each way it ends (duration, required analyses,
//! a failed analysis, the progress deadline, terminate), with its pods
//! removed after the scale-down delay.

use std::collections::BTreeMap;

use serin_engine::experiment_kind::*;
use serin_engine::*;

const S: u64 = 1000;

fn analysis(name: &str, required: bool) -> ExperimentAnalysis {
    ExperimentAnalysis {
        name: name.into(),
        analysis: AnalysisSpec {
            templates: vec![format!("{name}-template")],
            args: vec![AnalysisArg {
                name: "canary-hash".into(),
                value: ArgValue::Literal("{{templates.canary.podTemplateHash}}".into()),
            }],
        },
        required_for_completion: required,
    }
}

fn spec(duration: Option<u64>, analyses: Vec<ExperimentAnalysis>) -> ExperimentSpec {
    ExperimentSpec {
        name: "exp".into(),
        templates: vec![
            TemplateSpec {
                name: "baseline".into(),
                replicas: 1,
                template_hash: RevisionHash::new("t1"),
            },
            TemplateSpec {
                name: "canary".into(),
                replicas: 2,
                template_hash: RevisionHash::new("t2"),
            },
        ],
        duration,
        progress_deadline: 60 * S,
        scale_down_delay: 30 * S,
        analyses,
        terminate: false,
    }
}

/// A platform and an analysis runner played by the test: pods become
/// available when `pods_ready`, runs report what the test sets.
struct World {
    spec: ExperimentSpec,
    status: ExperimentStatus,
    pods: BTreeMap<RevisionHash, u32>,
    pods_ready: bool,
    runs: BTreeMap<String, AnalysisPhase>,
    started: Vec<(String, Vec<(String, ArgValueResolved)>)>,
    stopped: Vec<String>,
    last: Option<ExperimentReconciled>,
}

impl World {
    fn new(spec: ExperimentSpec) -> Self {
        World {
            spec,
            status: ExperimentStatus::default(),
            pods: BTreeMap::new(),
            pods_ready: true,
            runs: BTreeMap::new(),
            started: Vec::new(),
            stopped: Vec::new(),
            last: None,
        }
    }

    fn observed(&self) -> ExperimentObserved {
        ExperimentObserved {
            pods: self
                .pods
                .iter()
                .map(|(h, n)| ObservedRevision {
                    hash: h.clone(),
                    number: 0,
                    replicas: *n,
                    ready: if self.pods_ready { *n } else { 0 },
                    available: if self.pods_ready { *n } else { 0 },
                    oldest_pod_created: None,
                })
                .collect(),
            analysis: self.runs.clone(),
        }
    }

    /// One reconcile at `now`, its actions carried out.
    fn at(&mut self, now: u64) -> &ExperimentReconciled {
        let out = experiment_kind::reconcile(&self.spec, &self.status, &self.observed(), now);
        for a in &out.actions {
            match a {
                ExperimentAction::Scale {
                    workload, replicas, ..
                } => {
                    self.pods.insert(workload.clone(), *replicas);
                }
                ExperimentAction::StartAnalysis { name, args, .. } => {
                    self.runs.insert(name.clone(), AnalysisPhase::Running);
                    self.started.push((name.clone(), args.clone()));
                }
                ExperimentAction::StopAnalysis { name } => self.stopped.push(name.clone()),
                ExperimentAction::Emit(_) => {}
            }
        }
        self.status = out.status.clone();
        self.last = Some(out);
        self.last.as_ref().expect("just set")
    }

    fn phase(&self) -> AnalysisPhase {
        self.status.phase.expect("reconciled once")
    }

    fn running_pods(&self) -> u32 {
        self.pods.values().sum()
    }
}

#[test]
fn pending_until_every_templates_pods_are_available_then_running_with_analyses() {
    let mut w = World::new(spec(Some(60 * S), vec![analysis("compare", true)]));
    w.pods_ready = false;
    w.at(0);
    assert_eq!(w.phase(), AnalysisPhase::Pending);
    assert_eq!(w.running_pods(), 3, "both templates' pods asked for");
    assert!(
        w.started.is_empty(),
        "no analysis before the pods are available"
    );
    w.at(5 * S);
    assert_eq!(w.phase(), AnalysisPhase::Pending);
    assert_eq!(w.status.available_at, None);
    w.pods_ready = true;
    w.at(10 * S);
    assert_eq!(w.phase(), AnalysisPhase::Running);
    assert_eq!(w.status.available_at, Some(10 * S));
    assert_eq!(w.started.len(), 1, "the analysis starts with availability");
    let (run, args) = &w.started[0];
    assert_eq!(run, "exp-compare", "Argo's run name: experiment-analysis");
    let canary = w.status.template_statuses[1].pod_template_hash.0.clone();
    assert_eq!(
        args[0],
        ("canary-hash".to_string(), ArgValueResolved::Value(canary)),
        "{{{{templates.canary.podTemplateHash}}}} is the canary pods' identity"
    );
    let ts = &w.status.template_statuses;
    assert_eq!(ts[0].status, TemplateStatusCode::Running);
    assert_eq!((ts[1].replicas, ts[1].available_replicas), (2, 2));
    assert_eq!(
        w.last.as_ref().and_then(|o| o.next_wake),
        Some(70 * S),
        "wakes when the duration ends"
    );
}

#[test]
fn pods_that_never_become_available_fail_it_at_the_progress_deadline() {
    let mut w = World::new(spec(Some(60 * S), vec![analysis("compare", true)]));
    w.pods_ready = false;
    w.at(0);
    let wake = w.at(S).next_wake.expect("a deadline to wake for");
    assert_eq!(
        wake,
        61 * S + 1,
        "a template's deadline counts from its last change"
    );
    w.at(60 * S);
    assert_eq!(w.phase(), AnalysisPhase::Pending, "not before the deadline");
    w.at(wake);
    assert_eq!(w.phase(), AnalysisPhase::Failed);
    assert_eq!(
        w.status.message,
        "Template 'baseline' exceeded its progressDeadlineSeconds (60)"
    );
    assert_eq!(
        w.status.template_statuses[0].status,
        TemplateStatusCode::Failed
    );
    assert!(w.started.is_empty(), "never available: no analysis ran");
    // Pods stay for the scale-down delay, then go.
    w.at(wake + 10 * S);
    assert_eq!(w.running_pods(), 3);
    w.at(wake + 30 * S);
    assert_eq!(w.running_pods(), 0, "pods removed when the delay ends");
    assert_eq!(
        w.phase(),
        AnalysisPhase::Failed,
        "an ended experiment stays ended"
    );
}

#[test]
fn with_a_duration_it_succeeds_only_once_the_required_analysis_has() {
    let mut w = World::new(spec(
        Some(60 * S),
        vec![analysis("required", true), analysis("optional", false)],
    ));
    w.at(0);
    w.at(S);
    assert_eq!(w.phase(), AnalysisPhase::Running);
    w.at(61 * S);
    assert_eq!(
        w.phase(),
        AnalysisPhase::Running,
        "the duration passed but the required analysis still runs"
    );
    w.runs
        .insert("exp-required".into(), AnalysisPhase::Successful);
    w.at(62 * S);
    assert_eq!(w.phase(), AnalysisPhase::Successful);
    assert_eq!(
        w.stopped,
        vec!["exp-optional".to_string()],
        "the optional run still going is stopped"
    );
    let optional = &w.status.analysis_runs[1];
    assert_eq!(
        (optional.phase, optional.message.as_str()),
        (AnalysisPhase::Successful, "Run Terminated")
    );
    w.at(92 * S);
    assert_eq!(w.running_pods(), 0);
}

#[test]
fn an_optional_analysis_still_running_at_the_end_of_the_duration_does_not_hold_it() {
    let mut w = World::new(spec(Some(60 * S), vec![analysis("optional", false)]));
    w.at(0);
    w.at(S);
    w.at(60 * S);
    assert_eq!(w.phase(), AnalysisPhase::Running);
    w.at(61 * S);
    assert_eq!(w.phase(), AnalysisPhase::Successful);
    assert_eq!(w.stopped, vec!["exp-optional".to_string()]);
}

#[test]
fn a_failed_analysis_fails_it_required_or_not_and_its_pods_go() {
    for required in [true, false] {
        let mut w = World::new(spec(Some(600 * S), vec![analysis("compare", required)]));
        w.spec.scale_down_delay = 0;
        w.at(0);
        w.at(S);
        w.runs.insert("exp-compare".into(), AnalysisPhase::Failed);
        w.at(2 * S);
        assert_eq!(w.phase(), AnalysisPhase::Failed, "required: {required}");
        assert!(w.status.message.contains("compare"), "{}", w.status.message);
        assert_eq!(
            w.running_pods(),
            0,
            "no scale-down delay: pods go in the reconcile that ends it"
        );
    }
}

#[test]
fn an_errored_analysis_ends_it_in_error() {
    let mut w = World::new(spec(None, vec![analysis("compare", false)]));
    w.at(0);
    w.at(S);
    w.runs.insert("exp-compare".into(), AnalysisPhase::Error);
    w.at(2 * S);
    assert_eq!(w.phase(), AnalysisPhase::Error);
}

#[test]
fn an_inconclusive_analysis_ends_it_inconclusive() {
    let mut w = World::new(spec(Some(600 * S), vec![analysis("compare", false)]));
    w.at(0);
    w.at(S);
    w.runs
        .insert("exp-compare".into(), AnalysisPhase::Inconclusive);
    w.at(2 * S);
    assert_eq!(
        w.phase(),
        AnalysisPhase::Inconclusive,
        "as Argo: no pause, it ends"
    );
}

#[test]
fn without_a_duration_it_succeeds_when_the_required_analyses_do() {
    let mut w = World::new(spec(None, vec![analysis("a", true), analysis("b", true)]));
    w.at(0);
    w.at(S);
    w.runs.insert("exp-a".into(), AnalysisPhase::Successful);
    w.at(1000 * S);
    assert_eq!(w.phase(), AnalysisPhase::Running, "b is required too");
    w.runs.insert("exp-b".into(), AnalysisPhase::Successful);
    w.at(1001 * S);
    assert_eq!(w.phase(), AnalysisPhase::Successful);
    assert_eq!(w.status.message, "Required AnalysisRuns completed");
}

#[test]
fn with_neither_duration_nor_required_analyses_it_runs_until_terminated() {
    let mut w = World::new(spec(None, vec![analysis("optional", false)]));
    w.at(0);
    w.at(S);
    w.runs
        .insert("exp-optional".into(), AnalysisPhase::Successful);
    w.at(100_000 * S);
    assert_eq!(
        w.phase(),
        AnalysisPhase::Running,
        "Argo runs it indefinitely"
    );
    assert_eq!(w.running_pods(), 3);
    assert_eq!(
        w.last.as_ref().and_then(|o| o.next_wake),
        None,
        "nothing to wake for"
    );
    w.spec.terminate = true;
    w.at(100_001 * S);
    assert_eq!(w.phase(), AnalysisPhase::Successful);
    assert_eq!(w.status.message, "Experiment terminated");
    assert_eq!(w.running_pods(), 3, "pods stay for the scale-down delay");
    assert_eq!(
        w.last.as_ref().and_then(|o| o.next_wake),
        Some(100_031 * S),
        "wakes when the delay ends"
    );
    w.at(100_031 * S);
    assert_eq!(w.running_pods(), 0);
}

#[test]
fn terminate_stops_running_analyses_and_keeps_a_failure() {
    let mut w = World::new(spec(Some(600 * S), vec![analysis("compare", true)]));
    w.at(0);
    w.at(S);
    w.spec.terminate = true;
    w.at(2 * S);
    assert_eq!(w.phase(), AnalysisPhase::Successful);
    assert_eq!(w.stopped, vec!["exp-compare".to_string()]);
    // Terminated before its pods came up: no analysis ever starts, and the
    // required one that never ran does not hold it (Argo's would stay
    // Running).
    let mut w = World::new(spec(Some(600 * S), vec![analysis("compare", true)]));
    w.pods_ready = false;
    w.at(0);
    w.spec.terminate = true;
    w.at(S);
    assert_eq!(w.phase(), AnalysisPhase::Successful);
    w.pods_ready = true;
    w.at(2 * S);
    assert!(w.started.is_empty());
}

#[test]
fn a_pod_lost_while_running_fails_it_only_after_the_deadline() {
    let mut w = World::new(spec(None, vec![analysis("compare", true)]));
    w.at(0);
    w.at(S);
    assert_eq!(w.phase(), AnalysisPhase::Running);
    w.pods_ready = false;
    w.at(10 * S);
    assert_eq!(
        w.phase(),
        AnalysisPhase::Pending,
        "as Argo: back to Pending, not failed at once"
    );
    assert_eq!(
        w.status.template_statuses[0].status,
        TemplateStatusCode::Progressing
    );
    w.at(71 * S);
    assert_eq!(w.phase(), AnalysisPhase::Failed);
    assert_eq!(w.stopped, vec!["exp-compare".to_string()]);
}

#[test]
fn the_same_inputs_give_the_same_outputs_and_a_quiet_reconcile_changes_nothing() {
    let mut w = World::new(spec(Some(60 * S), vec![analysis("compare", false)]));
    w.at(0);
    w.at(S);
    w.at(2 * S); // the run reported Running
    let obs = w.observed();
    let a = experiment_kind::reconcile(&w.spec, &w.status, &obs, 5 * S);
    let b = experiment_kind::reconcile(&w.spec, &w.status, &obs, 5 * S);
    assert_eq!(a, b);
    assert_eq!(a.status, w.status, "nothing observed changed: same status");
    assert!(a.actions.is_empty(), "{:?}", a.actions);
}

#[test]
fn pods_of_a_template_the_spec_no_longer_has_are_removed() {
    let mut w = World::new(spec(None, vec![]));
    w.at(0);
    let old = w.status.template_statuses[1].pod_template_hash.clone();
    w.spec.templates[1].template_hash = RevisionHash::new("t3");
    w.at(S);
    assert_eq!(w.pods.get(&old), Some(&0));
}

#[test]
fn the_status_round_trips_through_json() {
    let mut w = World::new(spec(Some(60 * S), vec![analysis("compare", true)]));
    w.at(0);
    w.at(S);
    let json = serde_json::to_string(&w.status).expect("serialize");
    let back: ExperimentStatus = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, w.status);
    assert!(json.contains("\"templateStatuses\""), "{json}");
    assert!(json.contains("\"availableAt\""), "{json}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy;

    /// One thing that happens between reconciles.
    #[derive(Clone, Debug)]
    enum Move {
        /// Time passes (ms).
        Wait(u64),
        /// Pods become (un)ready.
        Ready(bool),
        /// A started run reports a phase.
        Run(usize, AnalysisPhase),
        /// `spec.terminate: true`.
        Terminate,
    }

    fn moves() -> impl Strategy<Value = Vec<Move>> {
        let phase = prop_oneof![
            Just(AnalysisPhase::Running),
            Just(AnalysisPhase::Successful),
            Just(AnalysisPhase::Failed),
            Just(AnalysisPhase::Error),
            Just(AnalysisPhase::Inconclusive),
        ];
        prop::collection::vec(
            prop_oneof![
                4 => (0u64..40_000).prop_map(Move::Wait),
                2 => any::<bool>().prop_map(Move::Ready),
                2 => (0usize..2, phase).prop_map(|(i, p)| Move::Run(i, p)),
                1 => Just(Move::Terminate),
            ],
            1..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn the_experiment_machine_keeps_its_invariants(
            duration in prop::option::of(1u64..120),
            required in (any::<bool>(), any::<bool>()),
            moves in moves(),
        ) {
            let mut w = World::new(spec(
                duration.map(|d| d * S),
                vec![analysis("a", required.0), analysis("b", required.1)],
            ));
            let mut now = 0;
            let mut ended: Option<(AnalysisPhase, u64)> = None;
            w.at(now);
            for m in moves {
                match m {
                    Move::Wait(ms) => now += ms,
                    Move::Ready(r) => w.pods_ready = r,
                    Move::Run(i, p) => {
                        if let Some((name, _)) = w.started.get(i).cloned() {
                            w.runs.insert(name, p);
                        }
                    }
                    Move::Terminate => w.spec.terminate = true,
                }
                let before = w.status.clone();
                let obs = w.observed();
                let again = experiment_kind::reconcile(&w.spec, &before, &obs, now);
                let out = w.at(now).clone();
                prop_assert_eq!(&again, &out, "deterministic");
                let phase = w.phase();
                // An ended experiment stays ended.
                if let Some((p, _)) = ended {
                    prop_assert_eq!(phase, p);
                } else if phase.is_completed() {
                    ended = Some((phase, now));
                    prop_assert_eq!(w.status.finished_at, Some(now));
                }
                // Analyses start only once the pods were available, never
                // after the end, each at most once.
                for a in &out.actions {
                    if let ExperimentAction::StartAnalysis { .. } = a {
                        prop_assert!(before.available_at.is_some() || w.status.available_at.is_some());
                        prop_assert!(!before.phase.is_some_and(AnalysisPhase::is_completed));
                    }
                }
                let mut names: Vec<&String> = w.started.iter().map(|(n, _)| n).collect();
                names.sort();
                names.dedup();
                prop_assert_eq!(names.len(), w.started.len());
                if phase == AnalysisPhase::Running {
                    prop_assert!(w.status.available_at.is_some());
                }
                // Never more pods than a template asks for.
                for t in &w.spec.templates {
                    let n = w.pods.get(&workload(&w.spec, t)).copied().unwrap_or(0);
                    prop_assert!(n <= t.replicas);
                }
                // Pods are gone once the scale-down delay has run out.
                if let Some(at) = w.status.scale_down_at
                    && phase.is_completed()
                    && now >= at
                {
                    prop_assert_eq!(w.running_pods(), 0, "pods left after the delay");
                }
                // Nothing still runs after the end.
                if phase.is_completed() {
                    prop_assert!(
                        w.status.analysis_runs.iter().all(|r| r.phase.is_completed()),
                        "{:?}", w.status.analysis_runs
                    );
                }
            }
        }
    }
}
