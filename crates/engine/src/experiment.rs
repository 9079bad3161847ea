//! Canary `experiment` steps: Argo's Experiment owned by a Rollout, run by
//! the engine itself (experiments/experiment.go's `calculateStatus` and
//! rollout/experiment.go's `reconcileExperiments`).
//!
//! The step asks for each template's pods (`ScaleExperiment`: the stable's
//! or the canary's pod template under an identity of its own, so no
//! rollout Service selects them), waits until all are available
//! (`availableAt`), then starts the analyses. It is Successful when its
//! duration has passed (and every `requiredForCompletion` analysis
//! succeeded), or — without a duration — when the required analyses
//! succeeded; a Failed or Error analysis, or pods that never become
//! available within the progress deadline, fail it and abort the rollout.
//! Once it ends, or the rollout leaves the step (promote, abort, a new
//! revision), its pods are scaled away and its running analyses stopped.

use crate::{
    Action, AnalysisKind, AnalysisPhase, AnalysisSpec, ArgValue, Cx, Event, ExperimentRecord,
    ExperimentStep, ExperimentWorkload, Millis, RevisionHash, SpecRef, Step, Strategy,
    WeightedDestination,
};

/// The experiment's name for step `idx` of the current revision and attempt.
pub(crate) fn name(cx: &Cx<'_>, idx: u32) -> String {
    format!(
        "{}-{}-{}-{idx}",
        cx.spec.name, cx.spec.template_hash, cx.status.attempt
    )
}

/// The pods' own identity: a hash of the experiment, the template and the
/// revision it copies (Argo's experiment ReplicaSets get their own hash too).
pub(crate) fn workload_hash(
    experiment: &str,
    template: &str,
    revision: &RevisionHash,
) -> RevisionHash {
    crate::pod_template_hash(&serde_json::json!([experiment, template, revision.0]))
}

/// Whether the experiment of step `idx` has succeeded; starts and drives it.
/// A failure aborts the rollout (the caller sees `status.abort`).
pub(crate) fn step_done(
    cx: &mut Cx<'_>,
    x: &ExperimentStep,
    idx: u32,
    new: &RevisionHash,
    stable: &RevisionHash,
) -> bool {
    let name = name(cx, idx);
    let at = match cx.status.experiments.iter().position(|r| r.name == name) {
        Some(i) => i,
        None => {
            let workloads = x
                .templates
                .iter()
                .map(|t| {
                    let revision = match t.spec_ref {
                        SpecRef::Stable => stable.clone(),
                        SpecRef::Canary => new.clone(),
                    };
                    ExperimentWorkload {
                        template: t.name.clone(),
                        hash: workload_hash(&name, &t.name, &revision),
                        revision,
                        replicas: t.replicas,
                    }
                })
                .collect();
            cx.status.experiments.push(ExperimentRecord {
                name: name.clone(),
                step: idx,
                started_at: cx.now,
                available_at: None,
                phase: AnalysisPhase::Pending,
                message: String::new(),
                workloads,
            });
            cx.emit(Event::ExperimentStarted { name: name.clone() });
            cx.status.experiments.len() - 1
        }
    };
    let mut rec = cx.status.experiments[at].clone();
    if rec.phase.is_completed() {
        return rec.phase == AnalysisPhase::Successful;
    }
    for w in &rec.workloads {
        cx.scale_experiment(w, w.replicas);
    }
    let all_available = rec.workloads.iter().all(|w| {
        cx.obs
            .experiments
            .iter()
            .find(|o| o.hash == w.hash)
            .is_some_and(|o| o.replicas == w.replicas && o.available >= w.replicas)
    });
    if rec.available_at.is_none() && all_available {
        rec.available_at = Some(cx.now);
    }
    if rec.available_at.is_some() {
        for (i, a) in x.analyses.iter().enumerate() {
            let kind = AnalysisKind::Experiment {
                step: idx,
                analysis: u32::try_from(i).unwrap_or(u32::MAX),
            };
            let spec = with_template_hashes(&a.analysis, &rec.workloads);
            cx.ensure_run(kind, &spec);
        }
    }
    let (phase, message) = assess(cx, x, &rec);
    rec.phase = phase;
    rec.message = message;
    cx.status.experiments[at] = rec.clone();
    if phase.is_completed() {
        cx.emit(Event::ExperimentCompleted {
            name: name.clone(),
            phase,
        });
    }
    match phase {
        AnalysisPhase::Successful => true,
        AnalysisPhase::Failed | AnalysisPhase::Error => {
            cx.abort(format!(
                "RolloutAborted: experiment {name} ended {phase:?}: {}",
                rec.message
            ));
            false
        }
        _ => false,
    }
}

/// Literal args may name the experiment's pods, as in Argo:
/// `{{templates.<name>.podTemplateHash}}`.
pub(crate) fn with_template_hashes(
    a: &AnalysisSpec,
    workloads: &[ExperimentWorkload],
) -> AnalysisSpec {
    let mut a = a.clone();
    for arg in &mut a.args {
        if let ArgValue::Literal(v) = &mut arg.value {
            for w in workloads {
                let key = format!("{{{{templates.{}.podTemplateHash}}}}", w.template);
                if v.contains(&key) {
                    *v = v.replace(&key, &w.hash.0);
                }
            }
        }
    }
    a
}

/// How bad an analysis phase is, for the worst of several (Argo's
/// `IsWorse` order); an accepted Inconclusive counts as a success.
fn rank(p: AnalysisPhase, acknowledged: bool) -> u8 {
    match p {
        AnalysisPhase::Successful => 0,
        AnalysisPhase::Inconclusive if acknowledged => 0,
        AnalysisPhase::Pending | AnalysisPhase::Running => 1,
        AnalysisPhase::Inconclusive => 2,
        AnalysisPhase::Error => 3,
        AnalysisPhase::Failed => 4,
    }
}

/// One analysis of an experiment as its verdict sees it.
pub(crate) struct AnalysisView<'a> {
    /// The analysis's name in the experiment.
    pub name: &'a str,
    /// Its run's name ("" before it started).
    pub run: &'a str,
    /// The run's phase (Pending before it started).
    pub phase: AnalysisPhase,
    /// An Inconclusive end a user accepted.
    pub acknowledged: bool,
    /// `requiredForCompletion`.
    pub required: bool,
}

/// The analyses' verdict (Argo's `assessAnalysisRuns`): the worst phase
/// (Running while any runs; Successful once every required one succeeded
/// and none is worse than running), with the message of the worst.
pub(crate) struct AnalysesVerdict {
    /// The analyses' phase.
    pub phase: AnalysisPhase,
    /// Why, when it is a failure.
    pub message: String,
    /// Any analysis is `requiredForCompletion`.
    pub has_required: bool,
}

/// Argo's `assessAnalysisRuns`, for steps and the Experiment kind alike.
pub(crate) fn assess_analyses<'a>(
    analyses: impl IntoIterator<Item = AnalysisView<'a>>,
) -> AnalysesVerdict {
    let mut worst = (0u8, AnalysisPhase::Successful, String::new());
    let mut has_required = false;
    let mut required_ok = true;
    for a in analyses {
        let rk = rank(a.phase, a.acknowledged);
        if rk > worst.0 {
            worst = (
                rk,
                a.phase,
                format!("analysis {} (run {}) ended {:?}", a.name, a.run, a.phase),
            );
        }
        if a.required {
            has_required = true;
            required_ok &= rk == 0;
        }
    }
    let phase = match worst.0 {
        0 => AnalysisPhase::Successful,
        1 if has_required && required_ok => AnalysisPhase::Successful,
        1 => AnalysisPhase::Running,
        _ => worst.1,
    };
    let failed = phase.is_completed() && phase != AnalysisPhase::Successful;
    AnalysesVerdict {
        phase,
        message: if failed { worst.2 } else { String::new() },
        has_required,
    }
}

impl AnalysesVerdict {
    /// Every required analysis succeeded (and there is one).
    pub fn required_succeeded(&self) -> bool {
        self.has_required && self.phase == AnalysisPhase::Successful
    }
}

/// Argo's `calculateStatus`: the experiment's phase from its templates'
/// phase (Pending, Running, or — once the duration passed or it is
/// terminating — Successful; Failed/Error past the progress deadline) and
/// its analyses' verdict.
pub(crate) fn experiment_phase(
    templates: (AnalysisPhase, String),
    analyses: AnalysesVerdict,
) -> (AnalysisPhase, String) {
    let (tphase, tmessage) = templates;
    if tphase.is_completed() {
        // Templates done (the duration passed): the analyses decide when
        // they have ended or some are required; a failed template wins.
        if tphase == AnalysisPhase::Successful
            && (analyses.phase.is_completed() || analyses.has_required)
        {
            return (analyses.phase, analyses.message);
        }
        return (tphase, tmessage);
    }
    if analyses.phase.is_completed() && analyses.phase != AnalysisPhase::Successful {
        return (analyses.phase, analyses.message);
    }
    if analyses.required_succeeded() {
        return (analyses.phase, analyses.message);
    }
    (tphase, tmessage)
}

/// Argo's message for a template whose pods made no progress in time.
pub(crate) fn deadline_message(template: &str, deadline: Millis) -> String {
    format!(
        "Template '{template}' exceeded its progressDeadlineSeconds ({})",
        deadline / 1000
    )
}

/// Argo's `calculateStatus` for an experiment step that has not ended.
fn assess(cx: &Cx<'_>, x: &ExperimentStep, rec: &ExperimentRecord) -> (AnalysisPhase, String) {
    let Some(available_at) = rec.available_at else {
        // Argo fails a template that makes no progress for the experiment's
        // progressDeadlineSeconds (the rollout's).
        if cx.now.saturating_sub(rec.started_at) > cx.spec.progress_deadline {
            let slow = rec
                .workloads
                .iter()
                .find(|w| {
                    !cx.obs
                        .experiments
                        .iter()
                        .any(|o| o.hash == w.hash && o.available >= w.replicas)
                })
                .map_or("?", |w| w.template.as_str());
            return (
                AnalysisPhase::Failed,
                deadline_message(slow, cx.spec.progress_deadline),
            );
        }
        return (AnalysisPhase::Pending, String::new());
    };
    let analyses = assess_analyses(x.analyses.iter().enumerate().map(|(i, a)| {
        let kind = AnalysisKind::Experiment {
            step: rec.step,
            analysis: u32::try_from(i).unwrap_or(u32::MAX),
        };
        let run = cx.status.analysis_runs.iter().find(|r| r.kind == kind);
        let (phase, acknowledged, run) = run.map_or((AnalysisPhase::Pending, false, ""), |r| {
            (r.phase, r.acknowledged, r.name.as_str())
        });
        AnalysisView {
            name: &a.name,
            run,
            phase,
            acknowledged,
            required: a.required_for_completion,
        }
    }));
    let duration_passed = x
        .duration
        .is_some_and(|d| cx.now >= available_at.saturating_add(d));
    let templates = if duration_passed {
        AnalysisPhase::Successful
    } else {
        AnalysisPhase::Running
    };
    experiment_phase((templates, String::new()), analyses)
}

/// The experiment that should be running now: the current step's, while the
/// rollout is on it and neither aborted nor fully promoted (Argo cancels the
/// others in `reconcileExperiments`).
fn live(cx: &Cx<'_>) -> Option<String> {
    let Strategy::Canary(c) = &cx.spec.strategy else {
        return None;
    };
    if cx.status.abort
        || cx.status.promote_full
        || cx.status.stable_hash.as_ref() == Some(&cx.spec.template_hash)
    {
        return None;
    }
    let idx = cx.status.current_step_index?;
    c.steps.get(idx as usize).and_then(Step::experiment)?;
    let name = name(cx, idx);
    cx.status
        .experiments
        .iter()
        .find(|r| r.name == name && !r.phase.is_completed())
        .map(|r| r.name.clone())
}

/// Scales away the pods of every experiment that is not running any more,
/// stops its running analyses, and forgets it once its pods are gone.
pub(crate) fn cleanup(cx: &mut Cx<'_>) {
    let live = live(cx);
    let prefix = format!(
        "{}-{}-{}-",
        cx.spec.name, cx.spec.template_hash, cx.status.attempt
    );
    let records = cx.status.experiments.clone();
    let mut keep = Vec::new();
    for rec in records {
        if live.as_deref() == Some(rec.name.as_str()) {
            keep.push(rec);
            continue;
        }
        let steps_runs: Vec<String> = cx
            .status
            .analysis_runs
            .iter()
            .filter(|r| {
                matches!(r.kind, AnalysisKind::Experiment { step, .. } if step == rec.step)
                    && rec.name.starts_with(&prefix)
                    && !cx
                        .obs
                        .analysis
                        .get(&r.name)
                        .copied()
                        .unwrap_or(r.phase)
                        .is_completed()
            })
            .map(|r| r.name.clone())
            .collect();
        for run in steps_runs {
            cx.status.analysis_runs.retain(|r| r.name != run);
            cx.actions.push(Action::StopAnalysis { name: run });
        }
        let mut gone = true;
        for w in &rec.workloads {
            cx.scale_experiment(w, 0);
            gone &= cx
                .obs
                .experiments
                .iter()
                .find(|o| o.hash == w.hash)
                .is_none_or(|o| o.replicas == 0 && o.ready == 0);
        }
        // The current revision's records stay (they tell `serin get` how
        // its experiments ended); others go once their pods are gone.
        if !gone || rec.name.starts_with(&prefix) {
            keep.push(rec);
        }
    }
    cx.status.experiments = keep;
}

/// Whether the rollout is at an experiment step: like an analysis, it is
/// not lack of progress (Argo's `isIndefiniteStep`).
pub(crate) fn at_experiment_step(cx: &Cx<'_>) -> bool {
    live(cx).is_some()
}

/// When the current experiment's duration ends or its pods run out of time
/// to become available.
pub(crate) fn wake(status: &crate::RolloutStatus, spec: &crate::RolloutSpec) -> Vec<Millis> {
    let Strategy::Canary(c) = &spec.strategy else {
        return Vec::new();
    };
    let Some(x) = status
        .current_step_index
        .and_then(|i| c.steps.get(i as usize))
        .and_then(Step::experiment)
    else {
        return Vec::new();
    };
    let Some(idx) = status.current_step_index else {
        return Vec::new();
    };
    let name = format!(
        "{}-{}-{}-{idx}",
        spec.name, spec.template_hash, status.attempt
    );
    status
        .experiments
        .iter()
        .filter(|r| r.name == name && !r.phase.is_completed())
        .filter_map(|r| match (r.available_at, x.duration) {
            (Some(at), Some(d)) => Some(at.saturating_add(d)),
            (Some(_), None) => None,
            (None, _) => Some(
                r.started_at
                    .saturating_add(spec.progress_deadline)
                    .saturating_add(1),
            ),
        })
        .collect()
}

/// Traffic for the running experiment's weighted templates (Argo's
/// `calculateWeightDestinationsFromExperiment`): only while the rollout is
/// on its step and it is Running — every pod was available (`availableAt`)
/// and it has not ended — and only to templates whose pods are available
/// now. At most `room` percent in all: the stable's share is what is left
/// after the canary's, and lint refuses weights over it.
pub(crate) fn weights(cx: &Cx<'_>, room: u32) -> Vec<WeightedDestination> {
    let Some(live) = live(cx) else {
        return Vec::new();
    };
    let Strategy::Canary(c) = &cx.spec.strategy else {
        return Vec::new();
    };
    let Some(x) = cx
        .status
        .current_step_index
        .and_then(|i| c.steps.get(i as usize))
        .and_then(Step::experiment)
    else {
        return Vec::new();
    };
    let Some(rec) = cx.status.experiments.iter().find(|r| r.name == live) else {
        return Vec::new();
    };
    if rec.available_at.is_none() {
        return Vec::new();
    }
    let mut left = room;
    let mut out = Vec::new();
    for w in &rec.workloads {
        let Some(weight) = x
            .templates
            .iter()
            .find(|t| t.name == w.template)
            .and_then(|t| t.weight)
            .filter(|p| *p > 0)
        else {
            continue;
        };
        let available = cx
            .obs
            .experiments
            .iter()
            .any(|o| o.hash == w.hash && o.available.min(o.replicas) > 0);
        let weight = weight.min(left);
        if available && weight > 0 {
            left -= weight;
            out.push(WeightedDestination {
                revision: w.hash.clone(),
                weight,
            });
        }
    }
    out
}
