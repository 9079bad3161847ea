//! A deterministic simulator for the rollout engine: a fake clock, a fake
//! platform whose pods become ready after a delay (or never), and fake
//! analysis runs with scripted outcomes. Every reconcile is checked against
//! the engine's invariants; a violation is returned, never ignored.
//!
//! Used by the engine's property tests, the benchmarks and
//! `serin plan --simulate`.
//!
//! [`world::SimWorld`] implements the driver's seams (platform, traffic
//! router, status store, analysis runs) for many rollouts at once, so
//! `serin_driver::Driver` itself runs in deterministic, no-sleep tests.

pub mod world;

use std::collections::BTreeMap;

use serin_engine::replicas::{bounds, weighted};
use serin_engine::{
    Action, AnalysisKind, AnalysisPhase, CanaryScale, Command, Event, Millis, Observed,
    ObservedRevision, PauseReason, Phase, Reconciled, RevisionHash, RolloutSpec, RolloutStatus,
    Route, ServiceRole, Step, Strategy, apply_command, reconcile, undo_target,
};

/// One fake pod.
#[derive(Clone, Debug, PartialEq)]
struct Pod {
    /// Unique id (for restart links).
    id: u64,
    /// Creation time.
    created: Millis,
    /// When it becomes (or became) ready; `None`: never.
    ready_at: Option<Millis>,
    /// A restart replacement: the pod it replaces, while that pod exists.
    replaces: Option<u64>,
}

impl Pod {
    fn ready(&self, now: Millis) -> bool {
        self.ready_at.is_some_and(|t| t <= now)
    }
}

/// A replacement whose old pod still runs is not a replica of its own: the
/// two are one slot for scaling.
fn is_surge(pods: &[Pod], p: &Pod) -> bool {
    p.replaces.is_some_and(|o| pods.iter().any(|q| q.id == o))
}

/// One fake revision (a ReplicaSet).
#[derive(Clone, Debug, PartialEq)]
struct FakeRevision {
    hash: RevisionHash,
    number: u64,
    pods: Vec<Pod>,
}

/// How the fake world behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct World {
    /// Time from pod creation to readiness.
    pub ready_delay: Millis,
    /// Revisions whose pods never become ready.
    pub broken: Vec<RevisionHash>,
    /// How long an analysis run takes.
    pub analysis_duration: Millis,
    /// Scripted outcomes per revision (default Successful).
    pub analysis_outcome: BTreeMap<RevisionHash, AnalysisPhase>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            ready_delay: 5_000,
            broken: Vec::new(),
            analysis_duration: 60_000,
            analysis_outcome: BTreeMap::new(),
        }
    }
}

/// A run of the engine against the fake world.
#[derive(Clone, Debug)]
pub struct Sim {
    /// The rollout spec (changes on updates, pause/resume, undo).
    pub spec: RolloutSpec,
    /// The engine's status.
    pub status: RolloutStatus,
    /// Fake clock.
    pub now: Millis,
    /// World behaviour.
    pub world: World,
    revisions: Vec<FakeRevision>,
    route: Route,
    runs: BTreeMap<String, (Millis, RevisionHash, AnalysisPhase)>,
    /// Experiment pods by workload: desired count and when they are ready.
    experiments: BTreeMap<RevisionHash, (u32, Millis)>,
    /// Every event the engine emitted, with its time.
    pub events: Vec<(Millis, Event)>,
    /// Number of reconciles so far.
    pub reconciles: u64,
    next_pod: u64,
}

/// An invariant the engine broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: Millis,
    /// What.
    pub what: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at t={} ms: {}", self.at, self.what)
    }
}

/// The fake pods as the driver's replica counting sees them (one place
/// says that a pod and its restart replacement are one replica).
fn pod_views(pods: &[Pod], now: Millis) -> Vec<serin_driver::PodView<u64>> {
    pods.iter()
        .map(|p| serin_driver::PodView {
            id: p.id,
            replaces: p.replaces,
            ready: p.ready(now),
            available: p.ready(now),
            terminating: false,
            created: p.created,
        })
        .collect()
}

/// Replicas of a revision: pods, with an old pod and its replacement as one.
fn slots(pods: &[Pod]) -> u32 {
    serin_driver::replica_slots(&pod_views(pods, 0)).len() as u32
}

impl Sim {
    /// A simulation of `spec` starting at t = 0 with nothing deployed.
    pub fn new(spec: RolloutSpec, world: World) -> Self {
        Self {
            spec,
            status: RolloutStatus::default(),
            now: 0,
            world,
            revisions: Vec::new(),
            route: Route::default(),
            runs: BTreeMap::new(),
            experiments: BTreeMap::new(),
            events: Vec::new(),
            reconciles: 0,
            next_pod: 0,
        }
    }

    /// What the platform reports now.
    pub fn observe(&self) -> Observed {
        Observed {
            revisions: self
                .revisions
                .iter()
                .map(|r| {
                    // Per slot, as the local platform reports it.
                    let c = serin_driver::count_replicas(&pod_views(&r.pods, self.now));
                    ObservedRevision {
                        hash: r.hash.clone(),
                        number: r.number,
                        replicas: c.replicas,
                        ready: c.ready,
                        available: c.available,
                        oldest_pod_created: c.oldest_pod_created,
                    }
                })
                .collect(),
            analysis: self
                .runs
                .iter()
                .map(|(n, (_, _, p))| (n.clone(), *p))
                .collect(),
            route: self.route.clone(),
            experiments: self
                .experiments
                .iter()
                .map(|(hash, (n, ready_at))| {
                    let ready = if self.now >= *ready_at { *n } else { 0 };
                    ObservedRevision {
                        hash: hash.clone(),
                        number: 0,
                        replicas: *n,
                        ready,
                        available: ready,
                        oldest_pod_created: None,
                    }
                })
                .collect(),
        }
    }

    /// Experiment pods asked for, by workload (desired count).
    pub fn experiment_pods(&self) -> BTreeMap<RevisionHash, u32> {
        self.experiments
            .iter()
            .map(|(h, (n, _))| (h.clone(), *n))
            .collect()
    }

    /// Advances the clock, updates the fake world, reconciles once, applies
    /// the actions and checks the invariants.
    pub fn tick(&mut self, dt: Millis) -> Result<(), Violation> {
        self.now += dt;
        let now = self.now;
        for (end, hash, phase) in self.runs.values_mut() {
            if !phase.is_completed() && now >= *end {
                *phase = self
                    .world
                    .analysis_outcome
                    .get(hash)
                    .copied()
                    .unwrap_or(AnalysisPhase::Successful);
            } else if *phase == AnalysisPhase::Pending {
                *phase = AnalysisPhase::Running;
            }
        }
        let observed = self.observe();
        let out = reconcile(&self.spec, &self.status, &observed, now);
        let again = reconcile(&self.spec, &self.status, &observed, now);
        if out != again {
            return Err(self.violation("reconcile is not deterministic".into()));
        }
        self.check_steps(&self.status.clone(), &out)?;
        let prev = std::mem::replace(&mut self.status, out.status.clone());
        self.apply(&out.actions);
        self.reconciles += 1;
        self.check_after(&observed, &prev, &out)
    }

    fn violation(&self, what: String) -> Violation {
        Violation { at: self.now, what }
    }

    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            match a {
                Action::Scale { revision, replicas } => self.scale(revision, *replicas),
                Action::SetRoute(r) => self.route = r.clone(),
                Action::StartAnalysis { name, .. } => {
                    let end = self.now + self.world.analysis_duration;
                    let rev = self.spec.template_hash.clone();
                    self.runs
                        .entry(name.clone())
                        .or_insert((end, rev, AnalysisPhase::Pending));
                }
                Action::StopAnalysis { name } => {
                    if let Some(run) = self.runs.get_mut(name)
                        && !run.2.is_completed()
                    {
                        run.2 = AnalysisPhase::Successful; // terminated, as Argo marks it
                    }
                }
                Action::RestartPods {
                    revision,
                    created_before,
                    max_in_flight,
                } => self.restart_pods(revision, *created_before, *max_in_flight),
                Action::ScaleExperiment {
                    workload, replicas, ..
                } => {
                    if *replicas == 0 {
                        self.experiments.remove(workload);
                    } else {
                        let ready_at = self.now + self.world.ready_delay;
                        let e = self
                            .experiments
                            .entry(workload.clone())
                            .or_insert((0, ready_at));
                        if *replicas > e.0 {
                            e.1 = ready_at;
                        }
                        e.0 = *replicas;
                    }
                }
                Action::Emit(e) => self.events.push((self.now, e.clone())),
            }
        }
    }

    fn new_pod(&mut self, hash: &RevisionHash, replaces: Option<u64>) -> Pod {
        let broken = self.world.broken.contains(hash);
        self.next_pod += 1;
        Pod {
            id: self.next_pod,
            created: self.now,
            ready_at: (!broken).then_some(self.now + self.world.ready_delay),
            replaces,
        }
    }

    fn scale(&mut self, hash: &RevisionHash, replicas: u32) {
        let now = self.now;
        let idx = match self.revisions.iter().position(|r| &r.hash == hash) {
            Some(i) => i,
            None => {
                let number = self.revisions.iter().map(|r| r.number).max().unwrap_or(0) + 1;
                self.revisions.push(FakeRevision {
                    hash: hash.clone(),
                    number,
                    pods: Vec::new(),
                });
                self.revisions.len() - 1
            }
        };
        let want = replicas as usize;
        let have = slots(&self.revisions[idx].pods) as usize;
        for _ in have..want {
            let p = self.new_pod(hash, None);
            self.revisions[idx].pods.push(p);
        }
        if have > want {
            // One victim per slot (an old pod goes with its replacement).
            // Unready slots go first, then the newest, like a ReplicaSet.
            let pods = &self.revisions[idx].pods;
            let views = pod_views(pods, now);
            let mut victims: Vec<(u8, u64, u64)> = serin_driver::replica_slots(&views)
                .into_iter()
                .map(|s| {
                    let ready = views[s.pod].ready || s.replacement.is_some_and(|j| views[j].ready);
                    let p = &pods[s.pod];
                    (u8::from(ready), u64::MAX - p.created, p.id)
                })
                .collect();
            victims.sort();
            let gone: Vec<u64> = victims[..have - want].iter().map(|v| v.2).collect();
            self.revisions[idx].pods.retain(|p| {
                !gone.contains(&p.id) && !p.replaces.is_some_and(|o| gone.contains(&o))
            });
        }
    }

    /// The fake platform's restart: retire old pods whose replacement is
    /// available, then start replacements up to `max_in_flight`.
    fn restart_pods(&mut self, hash: &RevisionHash, before: Millis, max_in_flight: u32) {
        let now = self.now;
        let Some(idx) = self.revisions.iter().position(|r| &r.hash == hash) else {
            return;
        };
        let pods = &mut self.revisions[idx].pods;
        let retire: Vec<u64> = pods
            .iter()
            .filter(|p| is_surge(pods, p) && p.ready(now))
            .filter_map(|p| p.replaces)
            .collect();
        pods.retain(|p| !retire.contains(&p.id));
        for p in pods.iter_mut() {
            if p.replaces.is_some_and(|o| retire.contains(&o)) {
                p.replaces = None;
            }
        }
        let in_flight = pods.iter().filter(|p| is_surge(pods, p)).count() as u32;
        let todo: Vec<u64> = pods
            .iter()
            .filter(|p| {
                p.created < before
                    && !is_surge(pods, p)
                    && !pods.iter().any(|q| q.replaces == Some(p.id))
            })
            .map(|p| p.id)
            .take(max_in_flight.saturating_sub(in_flight) as usize)
            .collect();
        for old in todo {
            let p = self.new_pod(hash, Some(old));
            self.revisions[idx].pods.push(p);
        }
    }

    /// Makes every pod of a revision fail readiness (e.g. a crash).
    pub fn fail_pods(&mut self, hash: &RevisionHash) {
        if let Some(r) = self.revisions.iter_mut().find(|r| &r.hash == hash) {
            for p in &mut r.pods {
                p.ready_at = None;
            }
        }
        if !self.world.broken.contains(hash) {
            self.world.broken.push(hash.clone());
        }
    }

    /// Rolls out a new pod template.
    pub fn update(&mut self, hash: RevisionHash) {
        self.spec.template_hash = hash;
    }

    /// A user operation; an `Err` leaves everything unchanged.
    pub fn command(&mut self, cmd: &Command) -> Result<(), serin_engine::CommandError> {
        let (mut spec, mut status) = (self.spec.clone(), self.status.clone());
        apply_command(&mut spec, &mut status, cmd, self.now)?;
        self.spec = spec;
        self.status = status;
        Ok(())
    }

    /// `undo [--to-revision N]`.
    pub fn undo(&mut self, to: Option<u64>) -> Result<(), serin_engine::CommandError> {
        let target = undo_target(&self.observe(), &self.spec.template_hash, to)?;
        self.spec.template_hash = target;
        Ok(())
    }

    /// Ticks every `dt` until `done` holds or `limit` ms pass.
    pub fn run_until(
        &mut self,
        dt: Millis,
        limit: Millis,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<bool, Violation> {
        let end = self.now + limit;
        while self.now < end {
            self.tick(dt)?;
            if done(self) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Replicas the platform runs for a revision (an old pod and its
    /// restart replacement count once).
    pub fn replicas_of(&self, hash: &RevisionHash) -> u32 {
        self.revisions
            .iter()
            .find(|r| &r.hash == hash)
            .map_or(0, |r| slots(&r.pods))
    }

    /// Creation times of a revision's pods, oldest first.
    pub fn pod_creation_times(&self, hash: &RevisionHash) -> Vec<Millis> {
        let mut t: Vec<Millis> = self
            .revisions
            .iter()
            .find(|r| &r.hash == hash)
            .map(|r| r.pods.iter().map(|p| p.created).collect())
            .unwrap_or_default();
        t.sort_unstable();
        t
    }

    /// Pods that exist (restart replacements included), all revisions.
    pub fn pods_total(&self) -> u32 {
        self.revisions.iter().map(|r| r.pods.len() as u32).sum()
    }

    /// The routing in effect.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// True when the rollout is Healthy on the spec's revision.
    pub fn healthy(&self) -> bool {
        self.status.phase == Phase::Healthy
            && self.status.stable_hash.as_ref() == Some(&self.spec.template_hash)
    }

    /// Restarts: asked for only when due and while every revision is fully
    /// available; surge pods stay within `max(1, maxSurge)` per revision
    /// (blue-green: `maxUnavailable`, default 1); and a restart never lowers
    /// the available replicas below what they were.
    fn check_restart(&self, observed: &Observed, out: &Reconciled) -> Result<(), Violation> {
        let limit = match &self.spec.strategy {
            Strategy::Canary(c) => c.max_surge.resolve(self.spec.replicas, true),
            Strategy::BlueGreen(b) => b
                .max_unavailable
                .map_or(1, |m| m.resolve(self.spec.replicas, false)),
        }
        .max(1);
        for r in &self.revisions {
            let surge = r.pods.iter().filter(|p| is_surge(&r.pods, p)).count() as u32;
            if surge > limit {
                return Err(self.violation(format!(
                    "{} has {surge} restart replacements in flight, limit {limit}",
                    r.hash
                )));
            }
        }
        if !out
            .actions
            .iter()
            .any(|a| matches!(a, Action::RestartPods { .. }))
        {
            return Ok(());
        }
        if self.spec.restart_at.is_none_or(|t| self.now < t) {
            return Err(self.violation("restart before restartAt".into()));
        }
        if let Some(r) = observed
            .revisions
            .iter()
            .find(|r| r.replicas > 0 && r.available < r.replicas)
        {
            return Err(self.violation(format!(
                "restart while {} has {} of {} available",
                r.hash, r.available, r.replicas
            )));
        }
        let before: u32 = observed
            .revisions
            .iter()
            .map(|r| r.available.min(r.replicas))
            .sum();
        let after: u32 = self
            .revisions
            .iter()
            .map(|r| {
                let ready = r.pods.iter().filter(|p| p.ready(self.now)).count() as u32;
                ready.min(slots(&r.pods))
            })
            .sum();
        if after < before {
            return Err(self.violation(format!(
                "restart lowered available replicas from {before} to {after}"
            )));
        }
        Ok(())
    }

    /// Step index moves only over steps that are really complete.
    fn check_steps(&self, before: &RolloutStatus, out: &Reconciled) -> Result<(), Violation> {
        let Strategy::Canary(c) = &self.spec.strategy else {
            return Ok(());
        };
        let same_rev = before.current_hash.as_ref() == Some(&self.spec.template_hash);
        if !same_rev || out.status.promote_full || before.promote_full {
            return Ok(());
        }
        if out.status.stable_hash.as_ref() == Some(&self.spec.template_hash) {
            return Ok(());
        }
        let (from, to) = (
            before.current_step_index.unwrap_or(0),
            out.status.current_step_index.unwrap_or(0),
        );
        for k in from..to {
            let step = c.steps.get(k as usize);
            let analysis_ok = || {
                out.status.analysis_runs.iter().any(|r| {
                    r.kind == AnalysisKind::Step(k)
                        && (r.phase == AnalysisPhase::Successful
                            || (r.phase == AnalysisPhase::Inconclusive && r.acknowledged))
                })
            };
            if step.is_some_and(Step::has_analysis) && !analysis_ok() {
                return Err(self.violation(format!(
                    "step {k} (analysis) passed without a successful run"
                )));
            }
            match step.and_then(Step::pause) {
                Some(None) => {
                    return Err(self.violation(format!(
                        "step {k} (indefinite pause) skipped without promote"
                    )));
                }
                Some(Some(d)) if d > 0 => {
                    let ok = before.pause_conditions.iter().any(|p| {
                        p.reason == PauseReason::CanaryPauseStep && p.since + d <= self.now
                    });
                    if !ok || k != from {
                        return Err(self.violation(format!("step {k} (pause {d} ms) left early")));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_after(
        &self,
        observed: &Observed,
        prev: &RolloutStatus,
        out: &Reconciled,
    ) -> Result<(), Violation> {
        let replicas = self.spec.replicas;
        // Experiment pods run only while the rollout is on an experiment
        // step (gone in the reconcile that leaves it, aborts or promotes).
        if !self.experiments.is_empty() {
            let at_experiment = match &self.spec.strategy {
                Strategy::Canary(c) => out
                    .status
                    .current_step_index
                    .and_then(|i| c.steps.get(i as usize))
                    .and_then(Step::experiment)
                    .is_some(),
                Strategy::BlueGreen(_) => false,
            };
            if out.status.abort || out.status.promote_full || !at_experiment {
                return Err(self.violation(format!(
                    "experiment pods {:?} outlive their step",
                    self.experiments
                )));
            }
        }
        // Replicas (slots); restart surge pods are bounded separately.
        let total: u32 = self.revisions.iter().map(|r| slots(&r.pods)).sum();
        let total_before: u32 = observed.revisions.iter().map(|r| r.replicas).sum();
        self.check_restart(observed, out)?;
        // Weights always sum to 100.
        if !self.route.weights.is_empty() {
            let sum: u32 = self.route.weights.iter().map(|w| w.weight).sum();
            if sum != 100 {
                return Err(
                    self.violation(format!("weights sum to {sum}: {:?}", self.route.weights))
                );
            }
        }
        let stable = out.status.stable_hash.clone();
        match &self.spec.strategy {
            Strategy::Canary(c) if !c.traffic_routing => {
                let b = bounds(
                    replicas,
                    c.max_surge,
                    c.max_unavailable,
                    self.spec.pdb_min_available,
                );
                if total > b.max_total.max(total_before) {
                    return Err(self.violation(format!(
                        "{total} replicas exceed the ceiling {}",
                        b.max_total
                    )));
                }
                let avail_before: u32 = observed.revisions.iter().map(|r| r.available).sum();
                let kept: u32 = observed
                    .revisions
                    .iter()
                    .map(|r| r.available.min(self.replicas_of(&r.hash)))
                    .sum();
                if kept < b.min_available.min(avail_before) {
                    return Err(self.violation(format!(
                        "scale-down left {kept} available replicas, floor {} (had {avail_before})",
                        b.min_available
                    )));
                }
                // Argo's split (approximateWeightedCanaryStableReplicaCounts)
                // never takes the stable's last pod between 1 and 99 % when
                // two pods fit.
                let new = &self.spec.template_hash;
                let idx = out.status.current_step_index.unwrap_or(0) as usize;
                let weight = c
                    .steps
                    .iter()
                    .take(idx + 1)
                    .rev()
                    .find_map(Step::set_weight)
                    .unwrap_or(0);
                if let Some(st) = &stable
                    && st != new
                    && !out.status.abort
                    && !out.status.promote_full
                    && idx < c.steps.len()
                    && (1..100).contains(&weight)
                    && (replicas >= 2 || b.max_total > replicas)
                    && observed.revision(st).is_some_and(|r| r.replicas > 0)
                    && self.replicas_of(st) == 0
                {
                    return Err(self.violation(format!(
                        "stable {st} scaled to 0 pods at {weight} % (step {idx})"
                    )));
                }
            }
            Strategy::Canary(c) => {
                // Stable, canary and one revision in its scale-down delay; an
                // explicit setCanaryScale count may exceed `replicas`.
                let canary_cap = c
                    .steps
                    .iter()
                    .flat_map(Step::actions)
                    .filter_map(|a| match a {
                        Step::SetCanaryScale(CanaryScale::Replicas(n)) => Some(*n),
                        _ => None,
                    })
                    .fold(replicas.max(1), u32::max);
                let ceiling = 2 * replicas.max(1) + canary_cap;
                if total > ceiling && total > total_before {
                    return Err(self.violation(format!(
                        "{total} replicas exceed {ceiling} (3x{replicas}, or 2x{replicas} + a setCanaryScale of {canary_cap})"
                    )));
                }
                // Traffic to an experiment template's pods only while they
                // run and are ready: the weight leaves the route no later
                // than the reconcile that scales them away.
                let workloads: Vec<&RevisionHash> = out
                    .status
                    .experiments
                    .iter()
                    .flat_map(|x| x.workloads.iter().map(|w| &w.hash))
                    .collect();
                for w in &self.route.weights {
                    if w.weight == 0 || !workloads.contains(&&w.revision) {
                        continue;
                    }
                    let ready = self
                        .experiments
                        .get(&w.revision)
                        .is_some_and(|(n, ready_at)| *n > 0 && *ready_at <= self.now);
                    if !ready {
                        return Err(self.violation(format!(
                            "experiment pods {} get {} % of traffic but are not running and ready",
                            w.revision, w.weight
                        )));
                    }
                }
                // Every weighted destination keeps capacity for its share.
                if out.status.canary_scale.is_none() && !c.dynamic_stable_scale {
                    for w in self
                        .route
                        .weights
                        .iter()
                        .filter(|w| !workloads.contains(&&w.revision))
                    {
                        let need = weighted(replicas, w.weight);
                        if w.weight > 0 && self.replicas_of(&w.revision) < need {
                            return Err(self.violation(format!(
                                "{} gets {} % of traffic with {} of {need} replicas",
                                w.revision,
                                w.weight,
                                self.replicas_of(&w.revision)
                            )));
                        }
                    }
                }
                // The canary's weight only takes values the spec allows.
                let new = &self.spec.template_hash;
                if let Some(w) = self.route.weights.iter().find(|w| &w.revision == new) {
                    let idx = out.status.current_step_index.unwrap_or(0) as usize;
                    let allowed = w.weight == 100
                        || c.steps
                            .iter()
                            .take(idx + 1)
                            .any(|s| s.set_weight() == Some(w.weight));
                    if !allowed && stable.as_ref() != Some(new) {
                        return Err(self.violation(format!(
                            "canary weight {} not allowed by the steps",
                            w.weight
                        )));
                    }
                }
                // Abort: all traffic on stable at once.
                if out.status.abort
                    && let Some(s) = &stable
                    && !self.route.weights.iter().all(|w| &w.revision == s)
                {
                    return Err(
                        self.violation(format!("aborted but traffic is {:?}", self.route.weights))
                    );
                }
                // Header and mirror routes send nothing to the canary once
                // it is aborted, nor once nothing but the stable runs.
                let settled = stable.as_ref() == Some(&self.spec.template_hash);
                if (out.status.abort || settled)
                    && (!self.route.header_routes.is_empty()
                        || !self.route.mirror_routes.is_empty())
                {
                    return Err(self.violation(format!(
                        "{} but header routes {:?} and mirror routes {:?} remain",
                        if out.status.abort {
                            "aborted"
                        } else {
                            "promoted"
                        },
                        self.route.header_routes,
                        self.route.mirror_routes
                    )));
                }
            }
            Strategy::BlueGreen(_) => {
                if total > 4 * replicas.max(1) && total > total_before {
                    return Err(self.violation(format!("{total} replicas exceed 4x{replicas}")));
                }
                if let Some(active) = self.route.services.get(&ServiceRole::Active) {
                    let obs = observed.revision(active);
                    let was_ready = obs.is_some_and(|r| r.available >= replicas);
                    let switched =
                        prev.active_hash.is_some() && prev.active_hash.as_ref() != Some(active);
                    if switched && !was_ready && replicas > 0 && !out.status.abort {
                        return Err(self.violation(format!(
                            "active switched to {active} before it was available"
                        )));
                    }
                    if self.replicas_of(active) < replicas
                        && observed
                            .revision(active)
                            .is_some_and(|r| r.replicas >= replicas)
                    {
                        return Err(self.violation(format!(
                            "active revision {active} scaled below {replicas}"
                        )));
                    }
                    if out.status.abort && Some(active) != stable.as_ref() {
                        return Err(self.violation("aborted but active is not stable".into()));
                    }
                }
            }
        }
        Ok(())
    }
}
