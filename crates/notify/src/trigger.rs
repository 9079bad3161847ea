//! Argo Rollouts' trigger names and the engine events behind them.

use serde::{Deserialize, Serialize};
use serin_engine::Event;

/// A notification trigger, named as Argo Rollouts names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Trigger {
    /// `on-rollout-updated`: a new revision started rolling out.
    #[serde(rename = "on-rollout-updated")]
    RolloutUpdated,
    /// `on-rollout-step-completed`.
    #[serde(rename = "on-rollout-step-completed")]
    StepCompleted,
    /// `on-rollout-paused`.
    #[serde(rename = "on-rollout-paused")]
    Paused,
    /// `on-rollout-aborted`.
    #[serde(rename = "on-rollout-aborted")]
    Aborted,
    /// `on-rollout-completed`.
    #[serde(rename = "on-rollout-completed")]
    Completed,
    /// `on-analysis-run-failed`.
    #[serde(rename = "on-analysis-run-failed")]
    AnalysisRunFailed,
    /// `on-analysis-run-error`.
    #[serde(rename = "on-analysis-run-error")]
    AnalysisRunError,
    /// `on-emergency-rollback` (Serin's own): an emergency rollback (undo)
    /// completed, as in the seed's playbook.
    #[serde(rename = "on-emergency-rollback")]
    EmergencyRollback,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 8] = [
        Trigger::RolloutUpdated,
        Trigger::StepCompleted,
        Trigger::Paused,
        Trigger::Aborted,
        Trigger::Completed,
        Trigger::AnalysisRunFailed,
        Trigger::AnalysisRunError,
        Trigger::EmergencyRollback,
    ];

    /// The trigger's name (`on-rollout-aborted`, …).
    pub fn name(self) -> &'static str {
        match self {
            Trigger::RolloutUpdated => "on-rollout-updated",
            Trigger::StepCompleted => "on-rollout-step-completed",
            Trigger::Paused => "on-rollout-paused",
            Trigger::Aborted => "on-rollout-aborted",
            Trigger::Completed => "on-rollout-completed",
            Trigger::AnalysisRunFailed => "on-analysis-run-failed",
            Trigger::AnalysisRunError => "on-analysis-run-error",
            Trigger::EmergencyRollback => "on-emergency-rollback",
        }
    }

    /// Parses a trigger name.
    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The trigger an engine event fires, if any. `ProgressDeadlineExceeded`
/// fires none by itself (as in Argo; with `progressDeadlineAbort` the engine
/// also emits `Aborted`).
pub fn trigger_for(event: &Event) -> Option<Trigger> {
    Some(match event {
        Event::RolloutUpdated { .. } => Trigger::RolloutUpdated,
        Event::StepCompleted { .. } => Trigger::StepCompleted,
        Event::Paused { .. } => Trigger::Paused,
        Event::Aborted { .. } => Trigger::Aborted,
        Event::Completed { .. } => Trigger::Completed,
        Event::AnalysisRunFailed { .. } => Trigger::AnalysisRunFailed,
        Event::AnalysisRunError { .. } => Trigger::AnalysisRunError,
        // Argo has no restart trigger; restarts are in the event stream.
        // Experiments: a failed one also emits `Aborted` (and its analysis's
        // failure), which notify.
        Event::ProgressDeadlineExceeded
        | Event::Restarted { .. }
        | Event::ExperimentStarted { .. }
        | Event::ExperimentCompleted { .. } => return None,
    })
}
