//! When the engine next needs to run although nothing is observed to change
//! (quinn-proto's `poll_timeout` idea): the end of a timed pause, a
//! scale-down delay, blue-green auto-promotion, the progress deadline and a
//! scheduled `restartAt`. Analysis runs and the platform report their own
//! changes, so they are not timers here.

use crate::{Millis, PauseReason, RolloutSpec, RolloutStatus, Step, Strategy};

/// The earliest time after `now` at which a reconcile with the same
/// observations could decide something new; `None` when only a change in the
/// world (or a user command) can.
pub(crate) fn next_wake(
    spec: &RolloutSpec,
    status: &RolloutStatus,
    now: Millis,
    deadline_running: bool,
) -> Option<Millis> {
    let mut at: Vec<Millis> = Vec::new();
    let pause_since = |reason: PauseReason| {
        status
            .pause_conditions
            .iter()
            .find(|p| p.reason == reason)
            .map(|p| p.since)
    };
    match &spec.strategy {
        Strategy::Canary(c) => {
            let step = status
                .current_step_index
                .and_then(|i| c.steps.get(i as usize));
            if let (Some(Some(d)), Some(since)) = (
                step.and_then(Step::pause),
                pause_since(PauseReason::CanaryPauseStep),
            ) {
                at.push(since.saturating_add(d));
            }
            if let Some(aborted) = status.aborted_at.filter(|_| status.abort) {
                at.push(aborted.saturating_add(c.abort_scale_down_delay));
            }
            at.extend(crate::experiment::wake(status, spec));
        }
        Strategy::BlueGreen(b) => {
            if let (Some(after), Some(since)) = (
                b.auto_promotion_after,
                pause_since(PauseReason::BlueGreenPause),
            ) {
                at.push(since.saturating_add(after));
            }
            if let Some(aborted) = status.aborted_at.filter(|_| status.abort) {
                at.push(aborted.saturating_add(b.abort_scale_down_delay));
            }
        }
    }
    at.extend(status.scale_down_at.values().copied());
    if deadline_running && let Some(since) = status.last_progress {
        // The check is `now - since > deadline`: one millisecond past it.
        at.push(
            since
                .saturating_add(spec.progress_deadline)
                .saturating_add(1),
        );
    }
    if let Some(restart) = spec.restart_at
        && status.restarted_at.is_none_or(|r| r < restart)
    {
        at.push(restart);
    }
    at.into_iter().filter(|t| *t > now).min()
}
