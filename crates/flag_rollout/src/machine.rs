//! The pure decision logic of a guarded flag rollout: spec + status + now →
//! the next thing to do. No clock, no I/O, no tokio: the driver
//! ([`crate::drive`]) carries actions out and reports their results back
//! through the `Status` methods, and the control plane persists the status
//! between calls, so a restarted driver resumes where it was.
//!
//! Per step `i` (percentage `p`):
//! 1. [`Action::SetPercentage`]`(p)`, confirmed by [`Status::percentage_set`];
//! 2. with an analysis, [`Action::RunAnalysis`] for the step, reported by
//!    [`Status::analysis_ended`] (a run that was in flight when the driver
//!    stopped is asked for again: the step's analysis is re-run);
//! 3. [`Action::WaitUntil`] the step has lasted `interval` (not after the
//!    last step);
//! 4. the next step.
//!
//! An analysis that ends Failed, Error or Inconclusive puts the rollout in
//! `RollingBack`, whose only action is `SetPercentage(0)`; once 0 % is
//! confirmed the phase is `RolledBack`. [`Status::abort`] does the same and
//! ends `Aborted`. A percentage the flag server refuses (no such flag, not a
//! two-variant flag, a read-only flag file) ends the rollout in `Error`.

use serde::{Deserialize, Serialize};
use serin_analysis::Phase as AnalysisPhase;

/// What to roll out: the resolved spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Flag key.
    pub flag: String,
    /// Percentages, strictly increasing, each 1..=100.
    pub steps: Vec<u8>,
    /// Minimum time at each step but the last, in milliseconds.
    pub interval_ms: u64,
    /// Whether each step is judged by an analysis run.
    pub analysis: bool,
}

impl Spec {
    /// Steps non-empty, strictly increasing, each 1..=100.
    pub fn steps_valid(&self) -> bool {
        !self.steps.is_empty()
            && self.steps.windows(2).all(|w| w[0] < w[1])
            && self.steps.iter().all(|s| (1..=100).contains(s))
    }

    /// The analysis run name for step `i` (`{flag}-{percentage}`).
    pub fn run_name(&self, i: usize) -> String {
        format!("{}-{}", self.flag, self.steps.get(i).copied().unwrap_or(0))
    }
}

/// Where a rollout is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Raising the percentage step by step.
    #[default]
    Progressing,
    /// An analysis did not pass: setting the flag back to 0 %.
    RollingBack,
    /// Back at 0 % after an analysis did not pass (final).
    RolledBack,
    /// Aborted by a user: setting the flag back to 0 %.
    Aborting,
    /// Back at 0 % after an abort (final).
    Aborted,
    /// Every step passed; the flag is at the last percentage (final).
    Completed,
    /// The rollout cannot run: unknown or unsuitable flag, bad steps, an
    /// analysis that cannot be built. Nothing was changed by the failing
    /// action (final).
    Error,
}

impl Phase {
    /// True for the phases nothing happens in any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::RolledBack | Phase::Aborted | Phase::Completed | Phase::Error
        )
    }
}

/// How a step's analysis ended (or that it is running).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepAnalysis {
    /// Run name.
    pub run: String,
    /// Running, or how it ended.
    pub phase: AnalysisPhase,
    /// The run's message (why it ended as it did).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One step's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// The step's percentage.
    pub percentage: u8,
    /// When the percentage was set (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_ms: Option<u64>,
    /// The step's analysis, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StepAnalysis>,
    /// When the step passed (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_ms: Option<u64>,
}

/// A rollout's status: everything needed to resume it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Phase.
    pub phase: Phase,
    /// Index of the step in progress (`steps.len()` once completed).
    pub current_step: usize,
    /// The percentage this rollout last set (`None` before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u8>,
    /// One record per step of the spec.
    pub steps: Vec<StepStatus>,
    /// When the rollout started (ms since the epoch).
    pub started_ms: u64,
    /// When the status last changed (ms since the epoch).
    pub updated_ms: u64,
    /// What happened last, for people (why it rolled back, what is wrong).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the flag to this percentage, then call [`Status::percentage_set`]
    /// (or [`Status::set_refused`] when the server refuses).
    SetPercentage(u8),
    /// Run (or keep running) the analysis of step `step`, then call
    /// [`Status::analysis_ended`]; call [`Status::analysis_started`] first.
    RunAnalysis {
        /// Step index.
        step: usize,
        /// Run name.
        name: String,
    },
    /// Nothing to do before this time (ms since the epoch); call
    /// [`next`] again then.
    WaitUntil(u64),
    /// The rollout is over ([`Status::phase`] is final).
    Done,
}

/// Something worth telling people (SSE, notifications, CLI progress).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    /// The flag was set to a step's percentage.
    PercentageSet {
        /// Step index.
        step: usize,
        /// Percentage.
        percentage: u8,
    },
    /// A step's analysis ended.
    AnalysisEnded {
        /// Step index.
        step: usize,
        /// The step's percentage.
        percentage: u8,
        /// How it ended.
        phase: AnalysisPhase,
        /// Why.
        message: String,
    },
    /// A step passed.
    StepCompleted {
        /// Step index.
        step: usize,
        /// The step's percentage.
        percentage: u8,
    },
    /// Every step passed.
    Completed {
        /// The final percentage.
        percentage: u8,
    },
    /// An analysis did not pass and the flag is back at 0 %.
    RolledBack {
        /// The percentage whose analysis did not pass.
        at: u8,
        /// Analysis phase and message.
        reason: String,
    },
    /// A user aborted and the flag is back at 0 %.
    Aborted {
        /// The percentage it was at.
        at: u8,
    },
    /// The rollout cannot run (phase Error).
    Failed {
        /// Why.
        message: String,
    },
}

impl Event {
    /// Whether this event is a warning (the rollout went back or cannot
    /// run), a short CamelCase reason and a sentence about flag `flag`: what
    /// a Kubernetes Event or a log line says.
    pub fn summary(&self, flag: &str) -> (bool, &'static str, String) {
        match self {
            Event::PercentageSet { step, percentage } => (
                false,
                "PercentageSet",
                format!("step {}: flag {flag} set to {percentage} %", step + 1),
            ),
            Event::AnalysisEnded {
                step,
                percentage,
                phase,
                message,
            } => (
                *phase != AnalysisPhase::Successful,
                "AnalysisEnded",
                format!(
                    "step {} ({percentage} %): analysis {phase:?}{}",
                    step + 1,
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(": {message}")
                    }
                ),
            ),
            Event::StepCompleted { step, percentage } => (
                false,
                "StepCompleted",
                format!("step {} ({percentage} %) passed", step + 1),
            ),
            Event::Completed { percentage } => (
                false,
                "Completed",
                format!("completed: flag {flag} is at {percentage} %"),
            ),
            Event::RolledBack { at, reason } => (
                true,
                "RolledBack",
                format!(
                    "flag {flag} set back to 0 %: the analysis at {at} % did not pass ({reason})"
                ),
            ),
            Event::Aborted { at } => (
                true,
                "Aborted",
                format!("flag {flag} aborted at {at} %; set back to 0 %"),
            ),
            Event::Failed { message } => (
                true,
                "Failed",
                format!("flag {flag} cannot be rolled out: {message}"),
            ),
        }
    }
}

impl Status {
    /// A fresh rollout of `spec`, started at `now`. Invalid steps give an
    /// `Error` status straight away.
    pub fn new(spec: &Spec, now: u64) -> Self {
        let mut s = Status {
            phase: Phase::Progressing,
            current_step: 0,
            percentage: None,
            steps: spec
                .steps
                .iter()
                .map(|&p| StepStatus {
                    percentage: p,
                    set_ms: None,
                    analysis: None,
                    passed_ms: None,
                })
                .collect(),
            started_ms: now,
            updated_ms: now,
            message: String::new(),
        };
        if !spec.steps_valid() {
            s.phase = Phase::Error;
            s.message = format!(
                "steps must be increasing percentages between 1 and 100, got {:?}",
                spec.steps
            );
        }
        s
    }

    /// The percentage set last, or 0 when none was.
    pub fn current_percentage(&self) -> u8 {
        self.percentage.unwrap_or(0)
    }

    /// The server accepted `pct`.
    pub fn percentage_set(&mut self, pct: u8, now: u64) -> Vec<Event> {
        self.percentage = Some(pct);
        self.updated_ms = now;
        let mut events = Vec::new();
        if self.phase == Phase::Progressing
            && let Some(st) = self.steps.get_mut(self.current_step)
            && st.percentage == pct
            && st.set_ms.is_none()
        {
            st.set_ms = Some(now);
            self.message = format!("at {pct} %");
            events.push(Event::PercentageSet {
                step: self.current_step,
                percentage: pct,
            });
        }
        events
    }

    /// The server refused a percentage for good (no such flag, not a
    /// two-variant flag, read-only): the rollout ends in `Error`.
    pub fn set_refused(&mut self, pct: u8, why: &str, now: u64) -> Vec<Event> {
        let message = match self.phase {
            Phase::RollingBack | Phase::Aborting => {
                format!("cannot set the flag back to 0 %: {why}")
            }
            _ => format!("cannot set the flag to {pct} %: {why}"),
        };
        self.error(message, now)
    }

    /// The rollout cannot run (`message` says why): phase `Error`.
    pub fn error(&mut self, message: String, now: u64) -> Vec<Event> {
        if self.phase.is_final() {
            return vec![];
        }
        self.phase = Phase::Error;
        self.message = message.clone();
        self.updated_ms = now;
        vec![Event::Failed { message }]
    }

    /// The analysis of `step` started (or restarted) as `run`.
    pub fn analysis_started(&mut self, step: usize, run: &str, now: u64) {
        if let Some(st) = self.steps.get_mut(step) {
            st.analysis = Some(StepAnalysis {
                run: run.to_string(),
                phase: AnalysisPhase::Running,
                message: String::new(),
            });
            self.updated_ms = now;
        }
    }

    /// The analysis of `step` ended. Anything but Successful starts the
    /// rollback to 0 %.
    pub fn analysis_ended(
        &mut self,
        step: usize,
        phase: AnalysisPhase,
        message: &str,
        now: u64,
    ) -> Vec<Event> {
        if self.phase != Phase::Progressing || step != self.current_step {
            return vec![];
        }
        let Some(st) = self.steps.get_mut(step) else {
            return vec![];
        };
        // A run that did not end (stopped) is not a verdict.
        if !phase.completed() {
            return vec![];
        }
        let run = st
            .analysis
            .as_ref()
            .map(|a| a.run.clone())
            .unwrap_or_default();
        st.analysis = Some(StepAnalysis {
            run,
            phase,
            message: message.to_string(),
        });
        let pct = st.percentage;
        self.updated_ms = now;
        let events = vec![Event::AnalysisEnded {
            step,
            percentage: pct,
            phase,
            message: message.to_string(),
        }];
        if phase != AnalysisPhase::Successful {
            // `RolledBack` is told once 0 % is confirmed (in `next`).
            self.phase = Phase::RollingBack;
            self.message =
                format!("analysis {phase:?} at {pct} %: {message}; setting the flag back to 0 %");
        }
        events
    }

    /// A user abort: set back to 0 % (phase `Aborting`, then `Aborted`).
    /// Returns false when the rollout is already over.
    pub fn abort(&mut self, now: u64) -> bool {
        if self.phase.is_final() || self.phase == Phase::Aborting {
            return false;
        }
        self.phase = Phase::Aborting;
        self.message = format!(
            "aborted at {} %; setting the flag back to 0 %",
            self.current_percentage()
        );
        self.updated_ms = now;
        true
    }

    /// The reason of the failed step, for `RolledBack`.
    fn failed_reason(&self) -> String {
        self.steps
            .get(self.current_step)
            .and_then(|s| s.analysis.as_ref())
            .map(|a| format!("{:?}: {}", a.phase, a.message))
            .unwrap_or_default()
    }
}

/// Decides the next action, advancing the status through every step that
/// needs no I/O (a step whose time is up and whose analysis passed). The
/// returned events describe what this call changed.
pub fn next(spec: &Spec, status: &mut Status, now: u64) -> (Action, Vec<Event>) {
    let mut events = Vec::new();
    loop {
        match status.phase {
            Phase::Completed | Phase::RolledBack | Phase::Aborted | Phase::Error => {
                return (Action::Done, events);
            }
            Phase::RollingBack | Phase::Aborting => {
                if status.percentage.is_some_and(|p| p != 0) {
                    return (Action::SetPercentage(0), events);
                }
                // At 0 % (or never raised): over. The highest percentage
                // reached is the last step that was set.
                let at = status
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.set_ms.is_some())
                    .map_or(0, |s| s.percentage);
                status.updated_ms = now;
                if status.phase == Phase::RollingBack {
                    let reason = status.failed_reason();
                    status.phase = Phase::RolledBack;
                    status.message = format!(
                        "analysis did not pass at {at} % ({reason}); the flag is back at 0 %"
                    );
                    events.push(Event::RolledBack { at, reason });
                } else {
                    status.phase = Phase::Aborted;
                    status.message = format!("aborted at {at} %; the flag is back at 0 %");
                    events.push(Event::Aborted { at });
                }
                return (Action::Done, events);
            }
            Phase::Progressing => {}
        }
        let i = status.current_step;
        let Some(st) = status.steps.get(i) else {
            // No step left (or a status from another spec): done at the last.
            let pct = status.current_percentage();
            status.phase = Phase::Completed;
            status.message = format!("completed: the flag is at {pct} %");
            status.updated_ms = now;
            events.push(Event::Completed { percentage: pct });
            return (Action::Done, events);
        };
        let Some(set_ms) = st.set_ms else {
            return (Action::SetPercentage(st.percentage), events);
        };
        if spec.analysis && !st.analysis.as_ref().is_some_and(|a| a.phase.completed()) {
            return (
                Action::RunAnalysis {
                    step: i,
                    name: spec.run_name(i),
                },
                events,
            );
        }
        let last = i + 1 >= status.steps.len();
        let until = set_ms.saturating_add(spec.interval_ms);
        if !last && now < until {
            return (Action::WaitUntil(until), events);
        }
        let pct = st.percentage;
        if let Some(st) = status.steps.get_mut(i) {
            st.passed_ms = Some(now);
        }
        status.current_step += 1;
        status.updated_ms = now;
        events.push(Event::StepCompleted {
            step: i,
            percentage: pct,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(analysis: bool) -> Spec {
        Spec {
            flag: "f".into(),
            steps: vec![10, 50, 100],
            interval_ms: 1_000,
            analysis,
        }
    }

    /// Drives the machine with a fake clock: every set succeeds, analyses
    /// end with `verdict(step)` 300 ms after they start.
    fn run(
        spec: &Spec,
        status: &mut Status,
        mut now: u64,
        verdict: impl Fn(usize) -> AnalysisPhase,
    ) -> (Vec<Event>, Vec<u8>, u64) {
        let mut events = Vec::new();
        let mut sets = Vec::new();
        for _ in 0..100 {
            let (action, ev) = next(spec, status, now);
            events.extend(ev);
            match action {
                Action::SetPercentage(p) => {
                    sets.push(p);
                    events.extend(status.percentage_set(p, now));
                }
                Action::RunAnalysis { step, name } => {
                    status.analysis_started(step, &name, now);
                    now += 300;
                    events.extend(status.analysis_ended(step, verdict(step), "m", now));
                }
                Action::WaitUntil(t) => {
                    assert!(t > now, "waits only forward");
                    now = t;
                }
                Action::Done => return (events, sets, now),
            }
        }
        panic!("did not finish: {status:?}");
    }

    #[test]
    fn every_step_is_set_judged_and_held_for_the_interval() {
        let s = spec(true);
        let mut st = Status::new(&s, 0);
        let (events, sets, end) = run(&s, &mut st, 0, |_| AnalysisPhase::Successful);
        assert_eq!(sets, vec![10, 50, 100]);
        assert_eq!(st.phase, Phase::Completed);
        assert_eq!(st.percentage, Some(100));
        assert_eq!(st.current_step, 3);
        // Two full intervals, then the last step's analysis.
        assert_eq!(end, 2_300);
        assert_eq!(st.steps[1].set_ms, Some(1_000));
        assert_eq!(events.last(), Some(&Event::Completed { percentage: 100 }));
        assert!(st.steps.iter().all(|s| s.analysis.as_ref().unwrap().phase
            == AnalysisPhase::Successful
            && s.passed_ms.is_some()));
    }

    #[test]
    fn without_analysis_only_the_interval_separates_steps() {
        let s = spec(false);
        let mut st = Status::new(&s, 5);
        let (_, sets, end) = run(&s, &mut st, 5, |_| unreachable!());
        assert_eq!(sets, vec![10, 50, 100]);
        assert_eq!(end, 2_005);
        assert_eq!(st.phase, Phase::Completed);
    }

    #[test]
    fn a_failed_analysis_sets_zero_and_ends_rolled_back_with_the_reason() {
        for bad in [
            AnalysisPhase::Failed,
            AnalysisPhase::Error,
            AnalysisPhase::Inconclusive,
        ] {
            let s = spec(true);
            let mut st = Status::new(&s, 0);
            let (events, sets, _) = run(&s, &mut st, 0, |i| {
                if i == 1 {
                    bad
                } else {
                    AnalysisPhase::Successful
                }
            });
            assert_eq!(sets, vec![10, 50, 0], "{bad:?}");
            assert_eq!(st.phase, Phase::RolledBack);
            assert_eq!(st.percentage, Some(0));
            assert_eq!(st.current_step, 1, "stays on the failed step");
            assert!(st.message.contains("at 50 %"), "{}", st.message);
            assert_eq!(
                events.last(),
                Some(&Event::RolledBack {
                    at: 50,
                    reason: format!("{bad:?}: m")
                })
            );
        }
    }

    #[test]
    fn a_resumed_rollout_reruns_the_step_analysis_and_keeps_its_time() {
        let s = spec(true);
        let mut st = Status::new(&s, 0);
        // Step 0 passed; step 1 set at 1000, its analysis in flight when the
        // driver stopped.
        next(&s, &mut st, 0);
        st.percentage_set(10, 0);
        st.analysis_started(0, "f-10", 0);
        st.analysis_ended(0, AnalysisPhase::Successful, "", 300);
        assert_eq!(next(&s, &mut st, 1_000).0, Action::SetPercentage(50));
        st.percentage_set(50, 1_000);
        assert!(matches!(
            next(&s, &mut st, 1_000).0,
            Action::RunAnalysis { step: 1, .. }
        ));
        st.analysis_started(1, "f-50", 1_000);
        // Persisted and read back by a new control plane.
        let mut back: Status = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(back, st);
        assert_eq!(
            next(&s, &mut back, 1_500).0,
            Action::RunAnalysis {
                step: 1,
                name: "f-50".into()
            },
            "the interrupted analysis runs again; the percentage is not set again"
        );
        back.analysis_ended(1, AnalysisPhase::Successful, "", 1_700);
        assert_eq!(next(&s, &mut back, 1_700).0, Action::WaitUntil(2_000));
    }

    #[test]
    fn final_phases_do_nothing_and_stay() {
        let s = spec(true);
        for phase in [
            Phase::Completed,
            Phase::RolledBack,
            Phase::Aborted,
            Phase::Error,
        ] {
            let mut st = Status::new(&s, 0);
            st.phase = phase;
            let before = st.clone();
            assert_eq!(next(&s, &mut st, 99), (Action::Done, vec![]));
            assert!(!st.abort(99));
            assert_eq!(st, before);
        }
    }

    #[test]
    fn abort_sets_zero_then_aborted_and_a_stopped_run_is_no_verdict() {
        let s = spec(true);
        let mut st = Status::new(&s, 0);
        next(&s, &mut st, 0);
        st.percentage_set(10, 0);
        st.analysis_started(0, "f-10", 0);
        assert!(
            st.analysis_ended(0, AnalysisPhase::Running, "", 10)
                .is_empty()
        );
        assert!(st.abort(10));
        assert_eq!(next(&s, &mut st, 10).0, Action::SetPercentage(0));
        st.percentage_set(0, 11);
        let (a, ev) = next(&s, &mut st, 11);
        assert_eq!(a, Action::Done);
        assert_eq!(ev, vec![Event::Aborted { at: 10 }]);
        assert_eq!(st.phase, Phase::Aborted);
        // An analysis ending after the abort changes nothing.
        let before = st.clone();
        st.analysis_ended(0, AnalysisPhase::Failed, "late", 12);
        assert_eq!(st, before);
    }

    #[test]
    fn a_refused_percentage_is_an_error_with_the_reason() {
        let s = spec(false);
        let mut st = Status::new(&s, 0);
        assert_eq!(next(&s, &mut st, 0).0, Action::SetPercentage(10));
        let ev = st.set_refused(10, "flag \"f\" not found", 1);
        assert_eq!(st.phase, Phase::Error);
        assert_eq!(st.percentage, None, "nothing was changed");
        assert!(st.message.contains("not found"), "{}", st.message);
        assert!(matches!(&ev[..], [Event::Failed { .. }]));
    }

    #[test]
    fn bad_steps_are_an_error_before_anything_happens() {
        for steps in [
            vec![],
            vec![10, 10],
            vec![50, 10],
            vec![0, 10],
            vec![10, 101],
        ] {
            let s = Spec {
                steps,
                ..spec(false)
            };
            let mut st = Status::new(&s, 0);
            assert_eq!(st.phase, Phase::Error, "{:?}", s.steps);
            assert_eq!(next(&s, &mut st, 0).0, Action::Done);
        }
    }
}
