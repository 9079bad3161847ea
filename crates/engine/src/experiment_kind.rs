//! Argo's standalone `Experiment` kind as a pure state machine
//! (experiments/experiment.go's `reconcile`, `reconcileTemplate`,
//! `reconcileAnalysisRun` and `calculateStatus`):
//!
//! ```text
//! reconcile(spec, status, observed, now) -> ExperimentReconciled { status, actions, next_wake }
//! ```
//!
//! Each template runs `replicas` pods under an identity of its own. The
//! experiment is Pending until every template's pods are available
//! (`availableAt`), then Running with its analyses started. A template
//! whose pods make no progress for `progressDeadlineSeconds` fails it. It
//! ends Successful once `duration` has passed (and every
//! `requiredForCompletion` analysis succeeded), or — without a duration —
//! once the required analyses succeeded; with neither it runs until
//! terminated. A Failed, Error or Inconclusive analysis ends it with that
//! phase. `terminate` ends it (Successful, unless an analysis already
//! failed). Once it ends, running analyses are stopped and, after
//! `scaleDownDelaySeconds`, its pods are scaled to 0.
//!
//! The analyses' verdict and the phase rules are the ones experiment steps
//! use ([`crate::experiment`]): one home for each rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::experiment::{
    AnalysisView, assess_analyses, deadline_message, experiment_phase, with_template_hashes,
    workload_hash,
};
use crate::{
    AnalysisPhase, ArgValue, ArgValueResolved, Event, ExperimentAnalysis, Millis, ObservedRevision,
    RevisionHash,
};

/// An `Experiment` as the engine runs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    /// The experiment's name (after `generateName`).
    pub name: String,
    /// The pods it runs.
    pub templates: Vec<TemplateSpec>,
    /// How long it runs once all its pods are available; `None`: until its
    /// required analyses succeed (or, with none, until terminated).
    pub duration: Option<Millis>,
    /// How long a template's pods may make no progress (Argo's default 600 s).
    pub progress_deadline: Millis,
    /// How long its pods stay after it ends (Argo's default 30 s).
    pub scale_down_delay: Millis,
    /// The analyses it runs once its pods are available.
    pub analyses: Vec<ExperimentAnalysis>,
    /// `spec.terminate`: end it now.
    pub terminate: bool,
}

/// One template: `replicas` pods of a pod template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// Template name (unique in the experiment).
    pub name: String,
    /// Pods wanted while the experiment runs (Argo's default 1).
    pub replicas: u32,
    /// The hash of its pod template.
    pub template_hash: RevisionHash,
}

/// Argo's `TemplateStatusCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateStatusCode {
    /// Pods are being created or are not all available yet.
    Progressing,
    /// Every pod is available.
    Running,
    /// Done: the duration passed or the experiment is terminating.
    Successful,
    /// Its pods made no progress within the progress deadline.
    Failed,
    /// Its pods could not be created.
    Error,
}

impl TemplateStatusCode {
    /// True once the template cannot change any more.
    pub fn is_completed(self) -> bool {
        matches!(self, Self::Successful | Self::Failed | Self::Error)
    }

    /// Argo's `templateStatusOrder`, best to worst.
    fn rank(self) -> u8 {
        match self {
            Self::Successful => 0,
            Self::Running => 1,
            Self::Progressing => 2,
            Self::Error => 3,
            Self::Failed => 4,
        }
    }
}

/// One template's pods and state (Argo's `TemplateStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    /// Template name.
    pub name: String,
    /// The pods' identity ([`workload`]).
    pub pod_template_hash: RevisionHash,
    /// Pods the platform runs for it.
    pub replicas: u32,
    /// Pods of its current template (all of them: a template never changes).
    pub updated_replicas: u32,
    /// Ready pods.
    pub ready_replicas: u32,
    /// Available pods.
    pub available_replicas: u32,
    /// Its state.
    pub status: TemplateStatusCode,
    /// Why it failed.
    #[serde(default)]
    pub message: String,
    /// When its pod counts or status last changed (its progress deadline
    /// counts from here).
    pub last_transition_at: Millis,
}

/// One analysis's run (Argo's `ExperimentAnalysisRunStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// The analysis's name in the experiment.
    pub name: String,
    /// Its run's name (`{experiment}-{analysis}`, as Argo names it).
    pub analysis_run: String,
    /// The run's phase.
    pub phase: AnalysisPhase,
    /// Why, when it did not succeed, or "Run Terminated".
    #[serde(default)]
    pub message: String,
}

/// Argo's `ExperimentCondition` (only `Progressing`, as Argo sets it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Progressing`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    /// `ReplicaSetUpdated`, `NewReplicaSetAvailable` or `ExperimentCompleted`.
    pub reason: String,
    /// Human-readable.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_at: Millis,
    /// When the condition was last written.
    pub last_update_at: Millis,
}

/// The experiment's state, persisted by the adapter between reconciles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// Pending, Running, Successful, Failed, Error or Inconclusive (`None`
    /// before the first reconcile).
    pub phase: Option<AnalysisPhase>,
    /// Why it ended so, or what it waits for.
    #[serde(default)]
    pub message: String,
    /// First reconcile.
    pub started_at: Option<Millis>,
    /// When every template's pods were first available.
    pub available_at: Option<Millis>,
    /// When it ended.
    pub finished_at: Option<Millis>,
    /// When its pods go (set once it starts terminating).
    pub scale_down_at: Option<Millis>,
    /// Per template.
    #[serde(default)]
    pub template_statuses: Vec<TemplateStatus>,
    /// Per analysis.
    #[serde(default)]
    pub analysis_runs: Vec<AnalysisRunStatus>,
    /// Argo's conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// What the platform reports back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentObserved {
    /// Pods per workload ([`workload`]; `number` unused).
    pub pods: Vec<ObservedRevision>,
    /// Phases of analysis runs by run name.
    pub analysis: BTreeMap<String, AnalysisPhase>,
}

/// What the engine asks the adapter to do (idempotent, as [`crate::Action`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExperimentAction {
    /// Run this many pods of a template under the identity `workload`
    /// (0 removes them; `template` is empty for pods of a template the
    /// spec no longer has).
    Scale {
        /// Template name.
        template: String,
        /// The pods' identity.
        workload: RevisionHash,
        /// Desired pods.
        replicas: u32,
    },
    /// Start an analysis run.
    StartAnalysis {
        /// Run name.
        name: String,
        /// The analysis's name in the experiment.
        analysis: String,
        /// Templates (`cluster:` prefixed for ClusterAnalysisTemplates).
        templates: Vec<String>,
        /// Resolved args (`FieldRef` values are left for the adapter).
        args: Vec<(String, ArgValueResolved)>,
    },
    /// Stop (terminate) a running analysis run.
    StopAnalysis {
        /// Run name.
        name: String,
    },
    /// Tell the world.
    Emit(Event),
}

/// The result of one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentReconciled {
    /// The new status.
    pub status: ExperimentStatus,
    /// Actions, in order.
    pub actions: Vec<ExperimentAction>,
    /// Reconcile again at this time at the latest, if nothing changes.
    pub next_wake: Option<Millis>,
}

/// The identity of a template's pods: a hash of the experiment, the
/// template and its pod template (Argo's ReplicaSet per template).
pub fn workload(spec: &ExperimentSpec, t: &TemplateSpec) -> RevisionHash {
    workload_hash(&spec.name, &t.name, &t.template_hash)
}

/// Argo's `IsTerminating`: told to, ended, a template or an analysis
/// failed, or every required analysis succeeded.
fn is_terminating(spec: &ExperimentSpec, st: &ExperimentStatus) -> bool {
    spec.terminate
        || st.phase.is_some_and(AnalysisPhase::is_completed)
        || st.template_statuses.iter().any(|t| {
            matches!(
                t.status,
                TemplateStatusCode::Failed | TemplateStatusCode::Error
            )
        })
        || st.analysis_runs.iter().any(|r| {
            matches!(
                r.phase,
                AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
            )
        })
        || verdict(spec, st).required_succeeded()
}

/// The analyses' verdict. Once told to terminate, an analysis that never
/// ended (or never started) counts as a terminated run does: Successful —
/// else a required analysis would hold a terminated experiment forever.
fn verdict(spec: &ExperimentSpec, st: &ExperimentStatus) -> crate::experiment::AnalysesVerdict {
    assess_analyses(spec.analyses.iter().map(|a| {
        let run = st.analysis_runs.iter().find(|r| r.name == a.name);
        let phase = run.map_or(AnalysisPhase::Pending, |r| r.phase);
        AnalysisView {
            name: &a.name,
            run: run.map_or("", |r| r.analysis_run.as_str()),
            phase: if spec.terminate && !phase.is_completed() {
                AnalysisPhase::Successful
            } else {
                phase
            },
            acknowledged: false,
            required: a.required_for_completion,
        }
    }))
}

fn duration_passed(spec: &ExperimentSpec, st: &ExperimentStatus, now: Millis) -> bool {
    match (spec.duration, st.available_at) {
        (Some(d), Some(at)) => now >= at.saturating_add(d),
        _ => false,
    }
}

/// Runs one reconcile of an Experiment.
pub fn reconcile(
    spec: &ExperimentSpec,
    status: &ExperimentStatus,
    obs: &ExperimentObserved,
    now: Millis,
) -> ExperimentReconciled {
    let mut st = status.clone();
    let mut actions = Vec::new();
    if st.phase.is_none() {
        st.phase = Some(AnalysisPhase::Pending);
        st.started_at = Some(now);
        actions.push(ExperimentAction::Emit(Event::ExperimentStarted {
            name: spec.name.clone(),
        }));
    }
    let terminating = is_terminating(spec, &st);
    let passed = duration_passed(spec, &st, now);
    if terminating && st.scale_down_at.is_none() {
        st.scale_down_at = Some(now.saturating_add(spec.scale_down_delay));
    }
    templates(spec, &mut st, obs, now, terminating, passed, &mut actions);
    // Pods of templates the spec no longer has go at once.
    for o in &obs.pods {
        let known = spec.templates.iter().any(|t| workload(spec, t) == o.hash);
        if !known && o.replicas > 0 {
            actions.push(ExperimentAction::Scale {
                template: String::new(),
                workload: o.hash.clone(),
                replicas: 0,
            });
        }
    }
    let (tphase, tmessage) = templates_phase(&st);
    let open = st.phase.is_some_and(|p| !p.is_completed());
    if open && tphase == AnalysisPhase::Running && st.available_at.is_none() {
        st.available_at = Some(now);
    }
    analyses(spec, &mut st, obs, terminating, &mut actions);
    if open {
        let v = verdict(spec, &st);
        let required_done = v.required_succeeded();
        let (phase, mut message) = experiment_phase((tphase, tmessage), v);
        if phase == AnalysisPhase::Successful && message.is_empty() {
            message = if spec.terminate {
                "Experiment terminated".into()
            } else if required_done {
                "Required AnalysisRuns completed".into()
            } else {
                "Experiment completed its duration".into()
            };
        }
        st.message = if phase.is_completed() {
            message
        } else {
            String::new()
        };
        st.phase = Some(phase);
        if phase.is_completed() {
            st.finished_at = Some(now);
            if st.scale_down_at.is_none() {
                st.scale_down_at = Some(now.saturating_add(spec.scale_down_delay));
            }
            actions.push(ExperimentAction::Emit(Event::ExperimentCompleted {
                name: spec.name.clone(),
                phase,
            }));
            // Ended in this reconcile: stop what still runs, and (without
            // a scale-down delay) remove its pods, now rather than next time.
            analyses(spec, &mut st, obs, true, &mut actions);
            templates(spec, &mut st, obs, now, true, passed, &mut actions);
        }
    }
    conditions(spec, &mut st, now);
    let next_wake = wake(spec, &st, obs, now);
    ExperimentReconciled {
        status: st,
        actions,
        next_wake,
    }
}

/// Argo's `reconcileTemplate` for every template: scale, count, judge.
fn templates(
    spec: &ExperimentSpec,
    st: &mut ExperimentStatus,
    obs: &ExperimentObserved,
    now: Millis,
    terminating: bool,
    passed: bool,
    actions: &mut Vec<ExperimentAction>,
) {
    let scale_down_due = st.scale_down_at.is_some_and(|at| now >= at);
    for t in &spec.templates {
        let hash = workload(spec, t);
        let seen = obs.pods.iter().find(|o| o.hash == hash);
        let (replicas, ready, available) = seen.map_or((0, 0, 0), |o| {
            (
                o.replicas,
                o.ready.min(o.replicas),
                o.available.min(o.replicas),
            )
        });
        let i = match st.template_statuses.iter().position(|s| s.name == t.name) {
            Some(i) => i,
            None => {
                st.template_statuses.push(TemplateStatus {
                    name: t.name.clone(),
                    pod_template_hash: hash.clone(),
                    replicas: 0,
                    updated_replicas: 0,
                    ready_replicas: 0,
                    available_replicas: 0,
                    status: TemplateStatusCode::Progressing,
                    message: String::new(),
                    last_transition_at: now,
                });
                st.template_statuses.len() - 1
            }
        };
        let ts = &mut st.template_statuses[i];
        let desired = if terminating || ts.status.is_completed() {
            0
        } else {
            t.replicas
        };
        // The last decision for a workload in a reconcile wins.
        actions.retain(
            |a| !matches!(a, ExperimentAction::Scale { workload, .. } if *workload == hash),
        );
        if desired > 0 {
            if seen.is_none_or(|o| o.replicas != desired) {
                actions.push(ExperimentAction::Scale {
                    template: t.name.clone(),
                    workload: hash.clone(),
                    replicas: desired,
                });
            }
        } else if scale_down_due && seen.is_some_and(|o| o.replicas > 0) {
            actions.push(ExperimentAction::Scale {
                template: t.name.clone(),
                workload: hash.clone(),
                replicas: 0,
            });
        }
        // Asking for another count is progress too (Argo sets the
        // transition time when it scales the ReplicaSet), so a template
        // told to stop is not failed for its old pods.
        if seen.map_or(0, |o| o.replicas) != desired {
            ts.last_transition_at = now;
        }
        let counts = (replicas, ready, available);
        if (ts.replicas, ts.ready_replicas, ts.available_replicas) != counts {
            ts.replicas = replicas;
            ts.updated_replicas = replicas;
            ts.ready_replicas = ready;
            ts.available_replicas = available;
            ts.last_transition_at = now;
        }
        if ts.status.is_completed() {
            continue;
        }
        let before = ts.status;
        if desired == available {
            ts.status = if passed || terminating {
                TemplateStatusCode::Successful
            } else {
                TemplateStatusCode::Running
            };
        } else if now > ts.last_transition_at.saturating_add(spec.progress_deadline) {
            ts.status = TemplateStatusCode::Failed;
            ts.message = deadline_message(&t.name, spec.progress_deadline);
        } else if terminating {
            ts.status = TemplateStatusCode::Successful;
        } else {
            ts.status = TemplateStatusCode::Progressing;
        }
        if ts.status != before {
            ts.last_transition_at = now;
        }
    }
}

/// Argo's `assessTemplates`: the worst template as an experiment phase.
fn templates_phase(st: &ExperimentStatus) -> (AnalysisPhase, String) {
    // The first of the worst, as Argo's strict `TemplateIsWorse`.
    let worst = st.template_statuses.iter().fold(
        (TemplateStatusCode::Successful, String::new()),
        |w, t| {
            if t.status.rank() > w.0.rank() {
                (t.status, t.message.clone())
            } else {
                w
            }
        },
    );
    let phase = match worst.0 {
        TemplateStatusCode::Progressing => AnalysisPhase::Pending,
        TemplateStatusCode::Running => AnalysisPhase::Running,
        TemplateStatusCode::Successful => AnalysisPhase::Successful,
        TemplateStatusCode::Failed => AnalysisPhase::Failed,
        TemplateStatusCode::Error => AnalysisPhase::Error,
    };
    (phase, worst.1)
}

/// Argo's `reconcileAnalysisRun` for every analysis: start once the pods
/// are available, follow the run, stop it when the experiment terminates.
fn analyses(
    spec: &ExperimentSpec,
    st: &mut ExperimentStatus,
    obs: &ExperimentObserved,
    terminating: bool,
    actions: &mut Vec<ExperimentAction>,
) {
    if st.available_at.is_none() {
        return;
    }
    let hashes: Vec<crate::ExperimentWorkload> = spec
        .templates
        .iter()
        .map(|t| crate::ExperimentWorkload {
            template: t.name.clone(),
            hash: workload(spec, t),
            revision: t.template_hash.clone(),
            replicas: t.replicas,
        })
        .collect();
    for a in &spec.analyses {
        let run_name = format!("{}-{}", spec.name, a.name);
        match st.analysis_runs.iter_mut().find(|r| r.name == a.name) {
            None if terminating => {}
            None => {
                let resolved = with_template_hashes(&a.analysis, &hashes);
                let args = resolved
                    .args
                    .iter()
                    .map(|arg| {
                        let v = match &arg.value {
                            ArgValue::Literal(s) => ArgValueResolved::Value(s.clone()),
                            ArgValue::FieldRef(f) => ArgValueResolved::FieldRef(f.clone()),
                            // No rollout, so no stable or latest revision:
                            // lint refuses these for an Experiment.
                            ArgValue::StableHash | ArgValue::LatestHash => {
                                ArgValueResolved::Value(String::new())
                            }
                        };
                        (arg.name.clone(), v)
                    })
                    .collect();
                actions.push(ExperimentAction::StartAnalysis {
                    name: run_name.clone(),
                    analysis: a.name.clone(),
                    templates: resolved.templates.clone(),
                    args,
                });
                st.analysis_runs.push(AnalysisRunStatus {
                    name: a.name.clone(),
                    analysis_run: run_name,
                    phase: AnalysisPhase::Pending,
                    message: String::new(),
                });
            }
            Some(r) if r.phase.is_completed() => {}
            Some(r) => {
                let seen = obs.analysis.get(&r.analysis_run).copied();
                if let Some(p) = seen.filter(|p| p.is_completed()) {
                    r.phase = p;
                } else if terminating {
                    // Argo terminates the run; a terminated run ends
                    // Successful ("Run Terminated") unless it had failed.
                    actions.push(ExperimentAction::StopAnalysis {
                        name: r.analysis_run.clone(),
                    });
                    r.phase = AnalysisPhase::Successful;
                    r.message = "Run Terminated".into();
                } else if let Some(p) = seen {
                    r.phase = p;
                }
            }
        }
    }
}

/// Argo's `calculateExperimentConditions`: one `Progressing` condition.
fn conditions(spec: &ExperimentSpec, st: &mut ExperimentStatus, now: Millis) {
    let phase = st.phase.unwrap_or(AnalysisPhase::Pending);
    let name = &spec.name;
    let (status, reason, message) = if phase.is_completed() {
        (
            "False",
            "ExperimentCompleted",
            format!("Experiment \"{name}\" is completed."),
        )
    } else if phase == AnalysisPhase::Running {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("Experiment \"{name}\" is running."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("Experiment \"{name}\" is progressing."),
        )
    };
    match st.conditions.iter_mut().find(|c| c.type_ == "Progressing") {
        Some(c) if c.status == status && c.reason == reason => {}
        Some(c) => {
            if c.status != status {
                c.last_transition_at = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.last_update_at = now;
        }
        None => st.conditions.push(Condition {
            type_: "Progressing".into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_at: now,
            last_update_at: now,
        }),
    }
}

/// Argo's `calculateEnqueueDuration`, plus the scale-down delay's end.
fn wake(
    spec: &ExperimentSpec,
    st: &ExperimentStatus,
    obs: &ExperimentObserved,
    now: Millis,
) -> Option<Millis> {
    let mut at: Vec<Millis> = Vec::new();
    let open = st.phase.is_some_and(|p| !p.is_completed());
    if open && let (Some(d), Some(avail)) = (spec.duration, st.available_at) {
        at.push(avail.saturating_add(d));
    }
    if open {
        for t in &spec.templates {
            let Some(ts) = st.template_statuses.iter().find(|s| s.name == t.name) else {
                continue;
            };
            if !ts.status.is_completed() && ts.available_replicas != t.replicas {
                at.push(
                    ts.last_transition_at
                        .saturating_add(spec.progress_deadline)
                        .saturating_add(1),
                );
            }
        }
    }
    if let Some(down) = st.scale_down_at
        && obs.pods.iter().any(|o| o.replicas > 0)
    {
        at.push(down);
    }
    at.into_iter().filter(|t| *t > now).min()
}
