//! Weighted experiment templates (Argo's `additionalDestinations`),
//! reconcile by reconcile with no clock: a template's weight reaches the
//! route only while the experiment runs and its pods are available, comes
//! out of the stable's share, and leaves the route in the very reconcile
//! that scales its pods away — before the scale-down in the action list —
//! when the step ends, the rollout aborts, is promoted past the step,
//! promoted fully, or a new revision starts.

use serin_engine::*;

const S: u64 = 1000;

fn h(s: &str) -> RevisionHash {
    RevisionHash::new(s)
}

/// Baseline (stable's template) and canary (new template), each with a
/// weight, an analysis comparing them.
fn experiment(duration: Option<u64>, baseline_w: u32, canary_w: u32) -> ExperimentStep {
    ExperimentStep {
        duration,
        templates: vec![
            ExperimentTemplate {
                name: "baseline".into(),
                spec_ref: SpecRef::Stable,
                replicas: 1,
                weight: Some(baseline_w),
            },
            ExperimentTemplate {
                name: "canary".into(),
                spec_ref: SpecRef::Canary,
                replicas: 1,
                weight: Some(canary_w),
            },
        ],
        analyses: vec![ExperimentAnalysis {
            name: "judge".into(),
            analysis: AnalysisSpec {
                templates: vec!["judge".into()],
                args: vec![],
            },
            required_for_completion: false,
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

/// Pods are available when asked for, unless `hold` (experiment pods
/// only); routes apply at once; runs keep the phase the test gives them.
struct World {
    obs: Observed,
    status: RolloutStatus,
    now: u64,
    hold: bool,
}

impl World {
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
                    // A scale-down while the route in force still sends the
                    // workload traffic would drop requests.
                    if *replicas == 0 {
                        assert!(
                            !self
                                .obs
                                .route
                                .weights
                                .iter()
                                .any(|d| &d.revision == workload),
                            "{workload} scaled away while routed: {:?}",
                            self.obs.route
                        );
                    }
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

    fn workload(&self, template: &str) -> RevisionHash {
        self.status
            .experiments
            .iter()
            .flat_map(|x| &x.workloads)
            .find(|w| w.template == template)
            .map(|w| w.hash.clone())
            .expect("the template's workload")
    }

    /// The route in force as (destination, weight), experiment workloads
    /// by template name.
    fn split(&self) -> Vec<(String, u32)> {
        let names: Vec<(RevisionHash, String)> = self
            .status
            .experiments
            .iter()
            .flat_map(|x| &x.workloads)
            .map(|w| (w.hash.clone(), w.template.clone()))
            .collect();
        let mut out: Vec<(String, u32)> = self
            .obs
            .route
            .weights
            .iter()
            .map(|d| {
                let name = names
                    .iter()
                    .find(|(hash, _)| *hash == d.revision)
                    .map_or(d.revision.0.clone(), |(_, t)| t.clone());
                (name, d.weight)
            })
            .collect();
        out.sort();
        out
    }
}

fn split(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = pairs.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    v.sort();
    v
}

/// In `actions`, a route without the experiment's workloads comes before
/// every scale-down of them, and each of them is scaled down.
fn route_first_then_scale_down(actions: &[Action], workloads: &[RevisionHash]) {
    let route_at = actions
        .iter()
        .position(|a| {
            matches!(a, Action::SetRoute(r)
                if !r.weights.iter().any(|d| workloads.contains(&d.revision)))
        })
        .unwrap_or_else(|| panic!("no route without the experiment: {actions:?}"));
    for w in workloads {
        let down = actions
            .iter()
            .position(|a| {
                matches!(a, Action::ScaleExperiment { workload, replicas: 0, .. } if workload == w)
            })
            .unwrap_or_else(|| panic!("{w} not scaled down: {actions:?}"));
        assert!(route_at < down, "scale-down before the route: {actions:?}");
    }
}

fn steps(x: ExperimentStep) -> Vec<Step> {
    vec![Step::SetWeight(10), Step::Experiment(x), Step::Pause(None)]
}

#[test]
fn weights_reach_the_route_only_while_the_pods_are_available_and_come_from_the_stable() {
    let spec = spec(steps(experiment(Some(60 * S), 20, 30)));
    let mut w = World::new();
    w.hold = true;
    w.settle(&spec);
    assert_eq!(w.status.current_step_index, Some(1), "{:?}", w.status);
    // Pods asked for but not available: the rollout's own split only.
    assert_eq!(w.split(), split(&[("v1", 90), ("v2", 10)]));
    // Available: 20 % baseline and 30 % canary template, from the stable.
    for o in &mut w.obs.experiments {
        (o.ready, o.available) = (o.replicas, o.replicas);
    }
    w.now += S;
    w.settle(&spec);
    assert_eq!(
        w.split(),
        split(&[("v1", 40), ("v2", 10), ("baseline", 20), ("canary", 30)])
    );
    // The canary template's pod goes unready: its share goes back to the
    // stable at once, the baseline keeps its own.
    let canary = w.workload("canary");
    for o in &mut w.obs.experiments {
        if o.hash == canary {
            (o.ready, o.available) = (0, 0);
        }
    }
    w.now += S;
    w.settle(&spec);
    assert_eq!(
        w.split(),
        split(&[("v1", 70), ("v2", 10), ("baseline", 20)])
    );
}

#[test]
fn weights_leave_the_route_before_the_pods_go_when_the_experiment_ends() {
    let spec = spec(steps(experiment(Some(60 * S), 20, 20)));
    let mut w = World::new();
    w.settle(&spec);
    assert_eq!(
        w.split(),
        split(&[("v1", 50), ("v2", 10), ("baseline", 20), ("canary", 20)])
    );
    let workloads = vec![w.workload("baseline"), w.workload("canary")];
    let at = w.status.experiments[0].available_at.expect("available");
    w.now = at + 60 * S;
    let out = w.step(&spec);
    assert_eq!(w.status.current_step_index, Some(2), "{:?}", w.status);
    route_first_then_scale_down(&out.actions, &workloads);
    assert_eq!(w.split(), split(&[("v1", 90), ("v2", 10)]));
}

#[test]
fn weights_leave_the_route_before_the_pods_go_on_abort() {
    let spec = spec(steps(experiment(Some(600 * S), 20, 20)));
    let mut w = World::new();
    w.settle(&spec);
    let workloads = vec![w.workload("baseline"), w.workload("canary")];
    let run = w
        .status
        .analysis_runs
        .iter()
        .find(|r| matches!(r.kind, AnalysisKind::Experiment { .. }))
        .map(|r| r.name.clone())
        .expect("the judge runs");
    w.obs.analysis.insert(run, AnalysisPhase::Failed);
    w.now += 5 * S;
    let out = w.step(&spec);
    assert!(w.status.abort, "{:?}", w.status);
    route_first_then_scale_down(&out.actions, &workloads);
    assert_eq!(w.split(), split(&[("v1", 100)]));
}

#[test]
fn weights_leave_the_route_before_the_pods_go_on_promote_and_promote_full() {
    for command in [Command::Promote, Command::PromoteFull] {
        // No duration: only a promote ends it (Argo's "indefinitely").
        let mut spec = spec(steps(experiment(None, 20, 20)));
        let mut w = World::new();
        w.settle(&spec);
        assert_eq!(w.split().len(), 4, "{:?}", w.obs.route);
        let workloads = vec![w.workload("baseline"), w.workload("canary")];
        apply_command(&mut spec, &mut w.status, &command, w.now).expect("promote");
        let out = w.step(&spec);
        route_first_then_scale_down(&out.actions, &workloads);
        assert!(
            !w.obs
                .route
                .weights
                .iter()
                .any(|d| workloads.contains(&d.revision)),
            "{command:?}: {:?}",
            w.obs.route
        );
    }
}

#[test]
fn weights_leave_the_route_before_the_pods_go_on_a_new_revision() {
    let spec2 = spec(steps(experiment(None, 20, 20)));
    let mut w = World::new();
    w.settle(&spec2);
    let workloads = vec![w.workload("baseline"), w.workload("canary")];
    let mut spec3 = spec2.clone();
    spec3.template_hash = h("v3");
    let out = w.step(&spec3);
    route_first_then_scale_down(&out.actions, &workloads);
}

#[test]
fn weights_never_push_the_route_past_100() {
    // Lint refuses 90 + 20 + 20; the engine still keeps the route whole.
    let spec = spec(vec![
        Step::SetWeight(90),
        Step::Experiment(experiment(None, 20, 20)),
    ]);
    let mut w = World::new();
    w.settle(&spec);
    let total: u32 = w.obs.route.weights.iter().map(|d| d.weight).sum();
    assert_eq!(total, 100, "{:?}", w.obs.route);
    assert_eq!(w.split(), split(&[("v2", 90), ("baseline", 10)]));
}

#[test]
fn without_traffic_routing_weights_route_nothing() {
    let mut spec = spec(steps(experiment(None, 20, 20)));
    if let Strategy::Canary(c) = &mut spec.strategy {
        c.traffic_routing = false;
    }
    let mut w = World::new();
    w.settle(&spec);
    assert_eq!(w.status.current_step_index, Some(1));
    assert!(w.obs.route.weights.is_empty(), "{:?}", w.obs.route);
}

#[test]
fn a_template_stored_before_weights_existed_loads_without_one() {
    let old = r#"{"name":"canary","spec_ref":"Canary","replicas":2}"#;
    let t: ExperimentTemplate = serde_json::from_str(old).expect("an older template loads");
    assert_eq!(t.weight, None);
    assert_eq!(t.replicas, 2);
}
