//! Serin's rollout engine: a pure state machine.
//!
//! ```text
//! reconcile(spec, status, observed, now) -> Reconciled { status, actions, next_wake }
//! ```
//!
//! The engine never performs I/O, never reads a clock and never draws random
//! numbers: the same inputs always give the same outputs. A platform adapter
//! (local processes, Kubernetes, the simulator) observes the world, calls
//! [`reconcile`], persists the returned status and carries out the actions;
//! then it calls again when something changes or a timer fires. User
//! operations (promote, abort, retry, …) are pure too: [`apply_command`].
//!
//! Argo's standalone `Experiment` kind is a second pure machine,
//! [`experiment_kind::reconcile`], sharing the experiment steps' rules.
//!
//! Semantics follow Argo Rollouts v1alpha1; deliberate differences are listed
//! in `docs/engine.md`.

mod bluegreen;
mod canary;
mod commands;
mod experiment;
pub mod experiment_kind;
mod hash;
pub mod replicas;
mod restart;
mod types;
mod wake;

pub use commands::{Command, CommandError, apply_command, undo_target};
pub use hash::pod_template_hash;
pub use types::*;

/// Runs one reconcile: from what the platform observed and the status the
/// engine returned last time, decide the new status and the actions to take.
pub fn reconcile(
    spec: &RolloutSpec,
    status: &RolloutStatus,
    observed: &Observed,
    now: Millis,
) -> Reconciled {
    let mut cx = Cx {
        spec,
        obs: observed,
        now,
        status: status.clone(),
        actions: Vec::new(),
    };
    cx.prepare();
    match &spec.strategy {
        Strategy::Canary(c) => canary::run(&mut cx, c),
        Strategy::BlueGreen(b) => bluegreen::run(&mut cx, b),
    }
    experiment::cleanup(&mut cx);
    restart::run(&mut cx);
    cx.finish()
}

/// Per-call working state shared by the strategies.
pub(crate) struct Cx<'a> {
    pub spec: &'a RolloutSpec,
    pub obs: &'a Observed,
    pub now: Millis,
    pub status: RolloutStatus,
    pub actions: Vec<Action>,
}

impl Cx<'_> {
    pub fn new_hash(&self) -> &RevisionHash {
        &self.spec.template_hash
    }

    /// The stable revision (set by `prepare`, so always present afterwards).
    pub fn stable_hash(&self) -> RevisionHash {
        self.status
            .stable_hash
            .clone()
            .unwrap_or_else(|| self.spec.template_hash.clone())
    }

    pub fn emit(&mut self, e: Event) {
        self.actions.push(Action::Emit(e));
    }

    fn observed_replicas(&self, h: &RevisionHash) -> (u32, u32) {
        self.obs
            .revision(h)
            .map_or((0, 0), |r| (r.replicas, r.available.min(r.replicas)))
    }

    /// Available replicas of a revision (never more than it is told to run).
    pub fn available(&self, h: &RevisionHash) -> u32 {
        self.observed_replicas(h).1
    }

    /// Replicas the platform was last told to run for a revision.
    pub fn current(&self, h: &RevisionHash) -> u32 {
        self.observed_replicas(h).0
    }

    /// True when a revision runs exactly `n` replicas and all are available.
    pub fn settled_at(&self, h: &RevisionHash, n: u32) -> bool {
        let (cur, avail) = self.observed_replicas(h);
        cur == n && avail >= n
    }

    /// Asks for `replicas` of a revision. The last call for a revision in a
    /// reconcile wins: an earlier decision in the same pass (e.g. preview
    /// size before promotion was decided) must not reach the platform.
    pub fn scale(&mut self, h: &RevisionHash, replicas: u32) {
        self.actions
            .retain(|a| !matches!(a, Action::Scale { revision, .. } if revision == h));
        let exists = self.obs.revision(h).is_some();
        if self.current(h) != replicas || (!exists && replicas > 0) {
            self.actions.push(Action::Scale {
                revision: h.clone(),
                replicas,
            });
        }
    }

    /// Asks for `replicas` pods of an experiment template (the last call
    /// for a workload in a reconcile wins, as for [`Cx::scale`]).
    pub fn scale_experiment(&mut self, w: &ExperimentWorkload, replicas: u32) {
        self.actions.retain(
            |a| !matches!(a, Action::ScaleExperiment { workload, .. } if *workload == w.hash),
        );
        let seen = self.obs.experiments.iter().find(|o| o.hash == w.hash);
        let current = seen.map_or(0, |o| o.replicas);
        if current != replicas || (seen.is_none() && replicas > 0) {
            self.actions.push(Action::ScaleExperiment {
                workload: w.hash.clone(),
                revision: w.revision.clone(),
                replicas,
            });
        }
    }

    pub fn set_route(&mut self, route: Route) {
        if self.obs.route != route {
            self.actions.push(Action::SetRoute(route));
        }
    }

    pub fn has_pause(&self, reason: PauseReason) -> bool {
        self.status
            .pause_conditions
            .iter()
            .any(|p| p.reason == reason)
    }

    pub fn add_pause(&mut self, reason: PauseReason) {
        if !self.has_pause(reason) {
            self.status.pause_conditions.push(PauseCondition {
                reason,
                since: self.now,
            });
            self.emit(Event::Paused { reason });
        }
    }

    pub fn remove_pause(&mut self, reason: PauseReason) {
        self.status.pause_conditions.retain(|p| p.reason != reason);
    }

    /// Paused by anything but the user (the user's pause only stops steps
    /// from advancing, as `spec.paused` does in Argo).
    pub fn step_blocked(&self) -> bool {
        self.spec.paused
    }

    pub fn abort(&mut self, message: String) {
        if !self.status.abort {
            self.status.abort = true;
            self.status.aborted_at = Some(self.now);
            self.status.message = message.clone();
            self.status
                .pause_conditions
                .retain(|p| p.reason == PauseReason::PausedByUser);
            self.emit(Event::Aborted { message });
        }
    }

    /// Name of an analysis run: deterministic, unique per revision, attempt
    /// and gate.
    fn run_name(&self, kind: AnalysisKind) -> String {
        let k = match kind {
            AnalysisKind::Step(i) => format!("step-{i}"),
            AnalysisKind::Background => "background".into(),
            AnalysisKind::PrePromotion => "pre".into(),
            AnalysisKind::PostPromotion => "post".into(),
            AnalysisKind::Experiment { step, analysis } => format!("exp-{step}-{analysis}"),
        };
        format!(
            "{}-{}-{}-{}",
            self.spec.name, self.spec.template_hash, self.status.attempt, k
        )
    }

    /// The run for `kind` and the current revision, starting it if needed.
    /// Returns its phase and whether a user acknowledged an Inconclusive end.
    pub fn ensure_run(&mut self, kind: AnalysisKind, spec: &AnalysisSpec) -> (AnalysisPhase, bool) {
        if let Some(r) = self.status.analysis_runs.iter().find(|r| r.kind == kind) {
            return (r.phase, r.acknowledged);
        }
        let name = self.run_name(kind);
        let stable = self.stable_hash().0;
        let latest = self.new_hash().0.clone();
        let args = spec
            .args
            .iter()
            .map(|a| {
                let v = match &a.value {
                    ArgValue::Literal(s) => ArgValueResolved::Value(s.clone()),
                    ArgValue::StableHash => ArgValueResolved::Value(stable.clone()),
                    ArgValue::LatestHash => ArgValueResolved::Value(latest.clone()),
                    ArgValue::FieldRef(f) => ArgValueResolved::FieldRef(f.clone()),
                };
                (a.name.clone(), v)
            })
            .collect();
        self.actions.push(Action::StartAnalysis {
            name: name.clone(),
            kind,
            templates: spec.templates.clone(),
            args,
        });
        self.status.analysis_runs.push(AnalysisRunRecord {
            name,
            kind,
            revision: self.new_hash().clone(),
            phase: AnalysisPhase::Pending,
            acknowledged: false,
        });
        (AnalysisPhase::Pending, false)
    }

    /// Copies observed run phases into the status; a Failed or Error run
    /// aborts the rollout, an Inconclusive one pauses it. Returns true if the
    /// rollout was aborted.
    pub fn judge_runs(&mut self) -> bool {
        let mut failed = None;
        let mut inconclusive = false;
        for r in &mut self.status.analysis_runs {
            if let Some(p) = self.obs.analysis.get(&r.name) {
                r.phase = *p;
            }
            match r.phase {
                AnalysisPhase::Failed | AnalysisPhase::Error if failed.is_none() => {
                    failed = Some((r.name.clone(), r.phase));
                }
                AnalysisPhase::Inconclusive if !r.acknowledged => inconclusive = true,
                _ => {}
            }
        }
        if let Some((name, phase)) = failed {
            self.stop_runs();
            let ev = if phase == AnalysisPhase::Failed {
                Event::AnalysisRunFailed { name: name.clone() }
            } else {
                Event::AnalysisRunError { name: name.clone() }
            };
            self.emit(ev);
            self.abort(format!(
                "RolloutAborted: analysis run {name} ended {phase:?}"
            ));
            return true;
        }
        if inconclusive {
            self.add_pause(PauseReason::InconclusiveAnalysisRun);
        }
        false
    }

    /// Stops every run that is still going and forgets it (the analysis
    /// adapter keeps its history).
    pub fn stop_runs(&mut self) {
        let obs = self.obs;
        let running: Vec<String> = self
            .status
            .analysis_runs
            .iter()
            .filter(|r| {
                !obs.analysis
                    .get(&r.name)
                    .copied()
                    .unwrap_or(r.phase)
                    .is_completed()
            })
            .map(|r| r.name.clone())
            .collect();
        for name in running {
            self.status.analysis_runs.retain(|r| r.name != name);
            self.actions.push(Action::StopAnalysis { name });
        }
    }

    /// After an abort: stable back at full scale, the aborted revision kept
    /// for `delay` after the abort (a quick retry is cheap), then scaled away.
    pub fn scale_after_abort(&mut self, new: &RevisionHash, stable: &RevisionHash, delay: Millis) {
        self.scale(stable, self.spec.replicas);
        let at = self
            .status
            .aborted_at
            .unwrap_or(self.now)
            .saturating_add(delay);
        if self.now >= at {
            self.scale(new, 0);
        }
        self.scale_down_others(&[new, stable]);
    }

    /// Revisions other than `keep` go to zero, except one that waits for its
    /// scale-down delay (only the newest such waits; older ones go now, which
    /// bounds the replica ceiling).
    pub fn scale_down_others(&mut self, keep: &[&RevisionHash]) {
        let others: Vec<RevisionHash> = self
            .obs
            .revisions
            .iter()
            .filter(|r| !keep.contains(&&r.hash))
            .map(|r| r.hash.clone())
            .collect();
        let newest_waiting = self
            .status
            .scale_down_at
            .iter()
            .filter(|(h, at)| **at > self.now && !keep.contains(h))
            .max_by_key(|(_, at)| **at)
            .map(|(h, _)| h.clone());
        for h in others {
            if Some(&h) == newest_waiting.as_ref() {
                continue;
            }
            self.scale(&h, 0);
            if self.current(&h) == 0 {
                self.status.scale_down_at.remove(&h);
            }
        }
        // Forget deadlines of revisions that no longer exist.
        let obs = self.obs;
        self.status
            .scale_down_at
            .retain(|h, _| obs.revision(h).is_some_and(|r| r.replicas > 0) || keep.contains(&h));
    }

    /// Resets per-revision state when the spec names a new revision, and
    /// applies the user's pause.
    fn prepare(&mut self) {
        let new = self.spec.template_hash.clone();
        if self.status.current_hash.as_ref() != Some(&new) {
            self.stop_runs();
            let first = self.status.stable_hash.is_none();
            let st = &mut self.status;
            st.current_hash = Some(new.clone());
            st.current_step_index = Some(0);
            st.pause_conditions
                .retain(|p| p.reason == PauseReason::PausedByUser);
            st.abort = false;
            st.aborted_at = None;
            st.promote_full = false;
            st.promotion_approved = false;
            st.analysis_runs.clear();
            st.canary_scale = None;
            st.header_routes.clear();
            st.mirror_routes.clear();
            st.deadline_exceeded = false;
            st.last_progress = Some(self.now);
            st.message.clear();
            if !first {
                restart::cancel_for_new_revision(self);
            }
            let st = &mut self.status;
            if first {
                // Argo: the very first revision becomes stable at once.
                st.stable_hash = Some(new.clone());
            } else if self.in_rollback_window(&new) {
                self.status.promote_full = true;
            }
            self.status.scale_down_at.remove(&new);
            self.emit(Event::RolloutUpdated { revision: new });
        }
        if self.spec.paused {
            self.add_pause(PauseReason::PausedByUser);
        } else {
            self.remove_pause(PauseReason::PausedByUser);
        }
    }

    /// `rollbackWindow`: going back to one of the last N revisions older
    /// than the stable one skips steps and analysis.
    fn in_rollback_window(&self, new: &RevisionHash) -> bool {
        let Some(window) = self.spec.rollback_window else {
            return false;
        };
        let Some(stable) = self
            .status
            .stable_hash
            .as_ref()
            .and_then(|h| self.obs.revision(h))
        else {
            return false;
        };
        let mut older: Vec<&ObservedRevision> = self
            .obs
            .revisions
            .iter()
            .filter(|r| r.number < stable.number)
            .collect();
        older.sort_by_key(|r| std::cmp::Reverse(r.number));
        older.iter().take(window as usize).any(|r| &r.hash == new)
    }

    /// Progress deadline and the final phase.
    fn finish(mut self) -> Reconciled {
        let indefinite = self.at_indefinite_step();
        let new = self.spec.template_hash.clone();
        let stable = self.stable_hash();
        let marker = self.progress_marker();
        if self.status.progress_marker != Some(marker) {
            self.status.progress_marker = Some(marker);
            self.status.last_progress = Some(self.now);
        }
        let settled = new == stable
            && self.settled_at(&stable, self.spec.replicas)
            && self.obs.revisions.iter().all(|r| {
                r.hash == stable
                    || r.replicas == 0
                    || self
                        .status
                        .scale_down_at
                        .get(&r.hash)
                        .is_some_and(|at| *at > self.now)
            });
        let restarting = self.status.restarting;
        let paused = !self.status.pause_conditions.is_empty();
        // A restart counts as work in progress: a replacement that never
        // becomes available hits the progress deadline like any other pod.
        // Paused time and an experiment, analysis or pause step (Argo's
        // isIndefiniteStep; experiment pods have a deadline of their own)
        // are not lack of progress; the
        // step index and the pause are in the progress marker, so the timer
        // restarts when either starts or ends.
        if (!settled || restarting.is_some())
            && !paused
            && !indefinite
            && !self.status.abort
            && !self.status.deadline_exceeded
        {
            let since = self.status.last_progress.unwrap_or(self.now);
            if self.now.saturating_sub(since) > self.spec.progress_deadline {
                self.status.deadline_exceeded = true;
                self.emit(Event::ProgressDeadlineExceeded);
                if self.spec.progress_deadline_abort && new != stable {
                    self.abort("RolloutAborted: progress deadline exceeded".into());
                }
            }
        }
        let st = &mut self.status;
        if st.abort {
            st.phase = Phase::Degraded;
            if st.message.is_empty() {
                st.message = "RolloutAborted".into();
            }
        } else if st.deadline_exceeded && (!settled || restarting.is_some()) {
            st.phase = Phase::Degraded;
            st.message = format!(
                "ProgressDeadlineExceeded: no progress for {} s",
                self.spec.progress_deadline / 1000
            );
        } else if let Some(p) = st.pause_conditions.first() {
            st.phase = Phase::Paused;
            st.message = format!("{:?}", p.reason);
        } else if let (true, Some(at)) = (settled, restarting) {
            st.phase = Phase::Progressing;
            st.message = format!("RestartInProgress: replacing pods created before {at} ms");
        } else if settled {
            st.phase = Phase::Healthy;
            st.message.clear();
            st.deadline_exceeded = false;
        } else {
            st.phase = Phase::Progressing;
            st.message = "more replicas need to be updated or become available".into();
        }
        // Routing first: a route only ever points at revisions observed
        // available, and a scale-down must never precede the route moving
        // away from the revision it shrinks.
        let mut actions = self.actions;
        actions.sort_by_key(|a| !matches!(a, Action::SetRoute(_)));
        let deadline_running = (!settled || restarting.is_some())
            && !paused
            && !self.status.abort
            && !self.status.deadline_exceeded;
        let deadline_running = deadline_running && !indefinite;
        let next_wake = wake::next_wake(self.spec, &self.status, self.now, deadline_running);
        Reconciled {
            status: self.status,
            actions,
            next_wake,
        }
    }

    /// What counts as progress: replicas becoming available, steps advancing,
    /// services switching, a pause starting or ending. Time spent paused is
    /// not lack of progress (the deadline is not checked while paused), and
    /// the timer starts again when the pause ends, as in Argo. The pause
    /// is in the marker rather than `last_progress` being set on every
    /// paused reconcile: a reconcile that observes nothing new must return
    /// the status unchanged, or a platform that reconciles on every status
    /// write (a Kubernetes watch) never stops reconciling a paused rollout.
    /// Whether the rollout waits at a step that may take any time: an
    /// experiment, an analysis or a pause (Argo's `isIndefiniteStep`); the
    /// progress deadline does not run there.
    fn at_indefinite_step(&self) -> bool {
        if experiment::at_experiment_step(self) {
            return true;
        }
        let Strategy::Canary(c) = &self.spec.strategy else {
            return false;
        };
        if self.status.abort
            || self.status.promote_full
            || self.status.stable_hash.as_ref() == Some(&self.spec.template_hash)
        {
            return false;
        }
        self.status
            .current_step_index
            .and_then(|i| c.steps.get(i as usize))
            .is_some_and(|step| step.has_analysis() || step.pause().is_some())
    }

    fn progress_marker(&self) -> u64 {
        // Hashed, not formatted: this runs on every reconcile.
        use std::hash::{Hash, Hasher};
        let mut h = hash::Fnv64::default();
        self.status.pause_conditions.is_empty().hash(&mut h);
        self.status.current_step_index.hash(&mut h);
        self.status.active_hash.hash(&mut h);
        self.status.stable_hash.hash(&mut h);
        for r in &self.obs.revisions {
            (&r.hash, r.replicas, r.available, r.oldest_pod_created).hash(&mut h);
        }
        h.finish()
    }
}
