//! A flag rollout's events as notifications (`serin up` and `serin
//! controller` alike): the rollout triggers of Argo's catalogue, with the
//! FlagRollout's name where a Rollout's would be.

use serin_analysis::Phase as AnalysisPhase;
use serin_notify::{NotificationEvent, Trigger};

use crate::{Event, Spec};

/// The notification for `ev` of FlagRollout `name` (rolling out `spec`),
/// if it fires a trigger: a rollback, an abort or a rollout that cannot
/// run fire `on-rollout-aborted`, the end `on-rollout-completed`, each
/// passed step `on-rollout-step-completed`, a failed or errored step
/// analysis `on-analysis-run-failed` / `-error`; a percentage set fires
/// none.
pub fn notification(name: &str, spec: &Spec, ev: &Event, at_ms: u64) -> Option<NotificationEvent> {
    let flag = &spec.flag;
    let n = |trigger: Trigger| NotificationEvent {
        rollout: name.to_string(),
        trigger: Some(trigger),
        at_ms,
        ..Default::default()
    };
    Some(match ev {
        Event::RolledBack { at, reason } => NotificationEvent {
            message: Some(format!(
                "flag {flag} set back to 0 %: the analysis at {at} % did not pass ({reason})"
            )),
            ..n(Trigger::Aborted)
        },
        Event::Aborted { at } => NotificationEvent {
            message: Some(format!("flag {flag} aborted at {at} %; set back to 0 %")),
            ..n(Trigger::Aborted)
        },
        Event::Failed { message } => NotificationEvent {
            message: Some(format!("flag {flag} cannot be rolled out: {message}")),
            ..n(Trigger::Aborted)
        },
        Event::Completed { percentage } => NotificationEvent {
            revision: Some(format!("{flag} at {percentage} %")),
            ..n(Trigger::Completed)
        },
        Event::StepCompleted { step, .. } => NotificationEvent {
            step: u32::try_from(*step).ok(),
            ..n(Trigger::StepCompleted)
        },
        Event::AnalysisEnded { phase, step, .. } => {
            let trigger = match phase {
                AnalysisPhase::Failed => Trigger::AnalysisRunFailed,
                AnalysisPhase::Error => Trigger::AnalysisRunError,
                _ => return None,
            };
            NotificationEvent {
                analysis_run: Some(spec.run_name(*step)),
                ..n(trigger)
            }
        }
        Event::PercentageSet { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_notifies_aborted_with_why_and_a_percentage_set_nothing() {
        let spec = Spec {
            flag: "new-checkout".into(),
            steps: vec![10, 50],
            interval_ms: 1,
            analysis: true,
        };
        let ev = Event::RolledBack {
            at: 10,
            reason: "Failed: error rate".into(),
        };
        let n = notification("checkout", &spec, &ev, 7).expect("a notification");
        assert_eq!(n.trigger, Some(Trigger::Aborted));
        assert_eq!(n.rollout, "checkout");
        assert_eq!(n.at_ms, 7);
        assert!(n.message.unwrap().contains("set back to 0 %"));
        let set = Event::PercentageSet {
            step: 0,
            percentage: 10,
        };
        assert_eq!(notification("checkout", &spec, &set, 7), None);
    }
}
