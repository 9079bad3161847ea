//! User operations, as pure functions on spec and status (what
//! `kubectl argo rollouts promote|abort|…` patch onto the object).

use crate::{
    AnalysisPhase, Millis, Observed, PauseReason, RevisionHash, RolloutSpec, RolloutStatus,
    Strategy,
};

/// An operation a user (or CI, or the emergency playbook) asks for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Leave the current pause (canary: go to the next step; blue-green:
    /// approve the switch; accept an Inconclusive analysis).
    Promote,
    /// Skip all remaining steps and analysis.
    PromoteFull,
    /// `spec.paused = true`.
    Pause,
    /// `spec.paused = false`.
    Resume,
    /// Send all traffic back to stable and scale the new revision down.
    Abort,
    /// Start an aborted rollout again from the first step.
    Retry,
    /// `spec.restartAt = at`: replace every pod created before `at` (now, or
    /// later for a scheduled restart), without going through the steps.
    Restart {
        /// Milliseconds since the epoch.
        at: Millis,
    },
}

/// Why an operation was refused. Nothing is changed when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Nothing is being rolled out.
    #[error("rollout is not progressing: the stable revision is the desired one")]
    NothingInProgress,
    /// The rollout is aborted: `retry` it (or undo) first.
    #[error("rollout is aborted: use retry to start it again, or undo")]
    Aborted,
    /// Retry needs an aborted rollout.
    #[error("rollout is not aborted: nothing to retry")]
    NotAborted,
    /// The revision asked for does not exist.
    #[error("no revision {0} to undo to")]
    NoSuchRevision(u64),
    /// There is no older revision.
    #[error("no previous revision to undo to")]
    NoPreviousRevision,
}

/// Applies an operation. `spec` may change only through `paused`; undo is a
/// spec change done by the caller with [`undo_target`].
pub fn apply_command(
    spec: &mut RolloutSpec,
    status: &mut RolloutStatus,
    cmd: &Command,
    now: Millis,
) -> Result<(), CommandError> {
    let in_progress = status.stable_hash.as_ref() != Some(&spec.template_hash);
    match cmd {
        Command::Pause => spec.paused = true,
        Command::Resume => spec.paused = false,
        // Allowed in any state, mid-update too (as Argo): a restart never
        // lowers availability and does not touch steps or traffic.
        Command::Restart { at } => spec.restart_at = Some(*at),
        Command::Promote | Command::PromoteFull if !in_progress => {
            return Err(CommandError::NothingInProgress);
        }
        Command::Promote | Command::PromoteFull if status.abort => {
            return Err(CommandError::Aborted);
        }
        Command::Promote => {
            acknowledge_inconclusive(status);
            let was_step_pause = status
                .pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::CanaryPauseStep);
            status
                .pause_conditions
                .retain(|p| p.reason == PauseReason::PausedByUser);
            match &spec.strategy {
                Strategy::Canary(c) => {
                    // Argo: promote leaves a pause step, or skips the current
                    // step when not paused.
                    let n = u32::try_from(c.steps.len()).unwrap_or(u32::MAX);
                    let idx = status.current_step_index.unwrap_or(0);
                    let at_analysis = c
                        .steps
                        .get(idx as usize)
                        .is_some_and(crate::Step::has_analysis);
                    if (was_step_pause || !at_analysis) && idx < n {
                        status.current_step_index = Some(idx + 1);
                    }
                }
                Strategy::BlueGreen(_) => status.promotion_approved = true,
            }
            spec.paused = false;
        }
        Command::PromoteFull => {
            status.promote_full = true;
            status
                .pause_conditions
                .retain(|p| p.reason == PauseReason::PausedByUser);
            spec.paused = false;
        }
        Command::Abort if !in_progress => return Err(CommandError::NothingInProgress),
        Command::Abort => {
            if !status.abort {
                status.abort = true;
                status.aborted_at = Some(now);
                status.message = "RolloutAborted: aborted by user".into();
                status
                    .pause_conditions
                    .retain(|p| p.reason == PauseReason::PausedByUser);
            }
        }
        Command::Retry if !status.abort => return Err(CommandError::NotAborted),
        Command::Retry => {
            status.abort = false;
            status.aborted_at = None;
            status.message.clear();
            status.current_step_index = Some(0);
            status
                .pause_conditions
                .retain(|p| p.reason == PauseReason::PausedByUser);
            status.analysis_runs.clear();
            status.attempt += 1;
            status.canary_scale = None;
            status.header_routes.clear();
            status.mirror_routes.clear();
            status.promotion_approved = false;
            status.promote_full = false;
            status.deadline_exceeded = false;
            status.last_progress = Some(now);
        }
    }
    Ok(())
}

fn acknowledge_inconclusive(status: &mut RolloutStatus) {
    for r in &mut status.analysis_runs {
        if r.phase == AnalysisPhase::Inconclusive {
            r.acknowledged = true;
        }
    }
}

/// Which revision `undo [--to-revision N]` goes back to: revision `N`, or
/// the newest revision older than the current one. The caller then puts that
/// revision's pod template back into the spec — a rollout like any other,
/// fast-tracked when it is the stable one or inside `rollbackWindow`.
pub fn undo_target(
    observed: &Observed,
    current: &RevisionHash,
    to_revision: Option<u64>,
) -> Result<RevisionHash, CommandError> {
    if let Some(n) = to_revision {
        return observed
            .revisions
            .iter()
            .find(|r| r.number == n)
            .map(|r| r.hash.clone())
            .ok_or(CommandError::NoSuchRevision(n));
    }
    let cur = observed.revision(current).map_or(u64::MAX, |r| r.number);
    observed
        .revisions
        .iter()
        .filter(|r| r.number < cur && &r.hash != current)
        .max_by_key(|r| r.number)
        .map(|r| r.hash.clone())
        .ok_or(CommandError::NoPreviousRevision)
}
