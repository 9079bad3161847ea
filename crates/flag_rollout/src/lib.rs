//! Guarded feature-flag rollouts — the seed's bash Job, built in.
//!
//! The seed turned `new-payment-processor` on for 5 → 10 → 25 → 50 → 100 %
//! of users, checking the error rate between steps and setting 0 % when it
//! rose. This crate does the same against Serin's flag server: for each step
//! it sets the percentage (so the server's audit log records every change),
//! runs an AnalysisRun (Argo semantics, any provider: builtin, prometheus,
//! web, job) over the step, and on a Failed, Error or Inconclusive run sets
//! the percentage back to 0 and reports why. Without an analysis it simply
//! waits `interval` between steps.
//!
//! - [`machine`]: the pure decision logic (spec + status + now → action),
//!   tested with a fake clock.
//! - [`SetPercentage`]: how a percentage is written — [`HttpWriter`] through
//!   the management API (`serin flags rollout`), or in-process by the
//!   control plane (`FlagRollout` manifests under `serin up`).
//! - [`drive`]: the async loop both use: carries the machine's actions out,
//!   reports every status change so it can be persisted, honours an abort.
//! - [`GuardedRollout::run`]: the CLI's one-shot rollout over HTTP.
//! - [`view`]: the status as `serin get flagrollout` shows it (locally and
//!   on a cluster).

pub mod machine;
mod notification;
mod view;
mod writer;

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serin_analysis::{AnalysisRun, Phase as AnalysisPhase, Providers, RunInputs, RunStatus};
use serin_clock::now_ms;
use serin_spec::{AnalysisRunArgument, AnalysisTemplate};

pub use machine::{Action, Event, Phase, Spec, Status, StepAnalysis, StepStatus};
pub use notification::notification;
pub use view::view;
pub use writer::{HttpWriter, SetPercentage, WriteError};

/// What to roll out and how (`serin flags rollout`).
#[derive(Clone, Debug)]
pub struct GuardedRollout {
    /// Flag server base URL (`http://127.0.0.1:8016`, or `https://…`
    /// trusted by the system roots).
    pub server: String,
    /// Environment (`production`).
    pub environment: String,
    /// Admin token for the management API.
    pub admin_token: String,
    /// Flag key.
    pub flag: String,
    /// Percentages, increasing (`[5, 10, 25, 50, 100]`).
    pub steps: Vec<u8>,
    /// Time at each step (the analysis runs within it; the step lasts at
    /// least this long).
    pub interval: Duration,
    /// Analysis per step: templates and args.
    pub analysis: Option<(Vec<AnalysisTemplate>, Vec<AnalysisRunArgument>)>,
}

/// How it ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every step passed; the flag is at the last percentage.
    Completed,
    /// A step's analysis did not pass; the flag is back at 0 %.
    RolledBack {
        /// The percentage whose analysis failed.
        at: u8,
        /// The analysis phase and message.
        reason: String,
    },
}

/// Progress, for the CLI.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// The percentage was set.
    Set(u8),
    /// The step's analysis ended.
    Analysed {
        /// Percentage.
        at: u8,
        /// Phase.
        phase: AnalysisPhase,
        /// Message.
        message: String,
    },
}

/// Why a rollout could not be carried out (distinct from a failed analysis,
/// which is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Steps empty, not increasing or above 100.
    #[error("steps must be increasing percentages between 1 and 100, got {0:?}")]
    BadSteps(Vec<u8>),
    /// The analysis cannot be built (missing arg, bad condition, …).
    #[error("analysis: {0}")]
    Analysis(String),
    /// The flag server could not be reached or kept failing.
    #[error("flag server: {0}")]
    Server(String),
    /// The flag server refused a percentage for good (no such flag, not a
    /// two-variant flag, read-only); nothing was changed by that request.
    #[error("{0}")]
    Refused(String),
}

/// The analysis judging each step.
#[derive(Clone)]
pub struct Analysis {
    /// Templates merged into each step's run.
    pub templates: Vec<AnalysisTemplate>,
    /// Args and `valueFrom` sources.
    pub inputs: RunInputs,
    /// Providers the runs measure with.
    pub providers: Providers,
    /// Where each run is also recorded (a cluster's AnalysisRun objects);
    /// `None`: the status alone says how the run went.
    pub sink: Option<Arc<dyn RunSink>>,
}

/// A future as [`RunSink::starting`] returns it.
pub type SinkFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Providers>, String>> + Send + 'a>>;

/// Keeps each step's run somewhere besides the rollout's status — on a
/// cluster, as an AnalysisRun object people see with kubectl. [`drive`]
/// still runs the analysis and decides; the sink only records.
pub trait RunSink: Send + Sync {
    /// Run `name` is about to start (again, after a restart): create its
    /// record. `Ok(Some(p))` measures the run with providers `p` (job
    /// metrics as Jobs owned by the record); `Err` ends the step's analysis
    /// in Error with that reason.
    fn starting<'a>(&'a self, name: &'a str) -> SinkFuture<'a>;
    /// The run started; `status` follows it until it ends (then its sender
    /// is gone).
    fn follow(&self, name: &str, status: tokio::sync::watch::Receiver<RunStatus>);
}

impl Analysis {
    /// Builds a run (fails on a missing arg, a bad condition, …).
    pub fn build(&self, name: &str) -> Result<AnalysisRun, String> {
        AnalysisRun::new(name, &self.templates, &self.inputs).map_err(|e| e.to_string())
    }
}

/// How [`drive`] treats a flag server that cannot be reached.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// Attempts per percentage before [`drive`] gives up with
    /// [`RolloutError::Server`]; `None` retries for ever (the control plane,
    /// which must never leave a rollback half done).
    pub max_write_attempts: Option<u32>,
    /// Pause between attempts.
    pub retry_backoff: Duration,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self {
            max_write_attempts: Some(5),
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// Resolves once `abort` is true; never when its sender is gone.
async fn aborted(abort: &mut tokio::sync::watch::Receiver<bool>) {
    if abort.wait_for(|a| *a).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Carries a rollout out from `status` (fresh or resumed) until its phase is
/// final. `observe` sees the status after every change, with the events of
/// that change — persist it there. Setting `abort` to true aborts (back to
/// 0 %). Returns `Err` only when the flag server stayed unreachable for
/// `options.max_write_attempts`; the status then says where it stopped.
pub async fn drive<W: SetPercentage>(
    spec: &Spec,
    status: &mut Status,
    writer: &W,
    analysis: Option<&Analysis>,
    abort: &mut tokio::sync::watch::Receiver<bool>,
    options: &DriveOptions,
    observe: &mut (dyn FnMut(&Status, &[Event]) + Send),
) -> Result<(), RolloutError> {
    // A bad template fails before any user sees the flag.
    if status.phase == Phase::Progressing
        && status.percentage.is_none()
        && let Some(a) = analysis
        && let Err(e) = a.build(&spec.run_name(0))
    {
        let ev = status.error(format!("analysis cannot run: {e}"), now_ms());
        observe(status, &ev);
    }
    if spec.analysis && analysis.is_none() {
        let ev = status.error("no analysis given for this rollout".into(), now_ms());
        observe(status, &ev);
    }
    loop {
        if *abort.borrow() && status.abort(now_ms()) {
            observe(status, &[]);
        }
        let before = status.clone();
        let (action, events) = machine::next(spec, status, now_ms());
        if !events.is_empty() || *status != before {
            observe(status, &events);
        }
        match action {
            Action::Done => return Ok(()),
            Action::SetPercentage(pct) => {
                let mut attempts = 0u32;
                loop {
                    match writer.set_percentage(&spec.flag, pct).await {
                        Ok(()) => {
                            let ev = status.percentage_set(pct, now_ms());
                            observe(status, &ev);
                            break;
                        }
                        Err(WriteError::Refused(why)) => {
                            let ev = status.set_refused(pct, &why, now_ms());
                            observe(status, &ev);
                            break;
                        }
                        Err(WriteError::Unavailable(why)) => {
                            attempts += 1;
                            tracing::warn!(flag = %spec.flag, pct, attempts, "cannot set the percentage: {why}");
                            if options.max_write_attempts.is_some_and(|m| attempts >= m) {
                                return Err(RolloutError::Server(format!(
                                    "cannot set {pct} %: {why}"
                                )));
                            }
                            status.message = format!("cannot set {pct} % yet ({why}); retrying");
                            status.updated_ms = now_ms();
                            observe(status, &[]);
                            tokio::time::sleep(options.retry_backoff).await;
                        }
                    }
                }
            }
            Action::RunAnalysis { step, name } => {
                let Some(a) = analysis else {
                    continue;
                };
                let run = match a.build(&name) {
                    Ok(run) => run,
                    Err(e) => {
                        let ev = status.analysis_ended(step, AnalysisPhase::Error, &e, now_ms());
                        observe(status, &ev);
                        continue;
                    }
                };
                status.analysis_started(step, &name, now_ms());
                observe(status, &[]);
                let mut providers = a.providers.clone();
                if let Some(sink) = &a.sink {
                    match sink.starting(&name).await {
                        Ok(Some(p)) => providers = p,
                        Ok(None) => {}
                        Err(e) => {
                            let ev =
                                status.analysis_ended(step, AnalysisPhase::Error, &e, now_ms());
                            observe(status, &ev);
                            continue;
                        }
                    }
                }
                // `stop` lives until the run ends: dropping it stops the run
                // (as does dropping this future).
                let (run_status, stop, task) = serin_analysis::runner::spawn(run, providers);
                if let Some(sink) = &a.sink {
                    sink.follow(&name, run_status);
                }
                tokio::select! {
                    end = task => {
                        let (phase, message) = match end {
                            Ok(rs) => (rs.phase, rs.message),
                            Err(e) => (AnalysisPhase::Error, format!("analysis task failed: {e}")),
                        };
                        let ev = status.analysis_ended(step, phase, &message, now_ms());
                        observe(status, &ev);
                    }
                    () = aborted(abort) => {
                        let _ = stop.send(true);
                    }
                }
            }
            Action::WaitUntil(t) => {
                let wait = Duration::from_millis(t.saturating_sub(now_ms()));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = aborted(abort) => {}
                }
            }
        }
    }
}

impl GuardedRollout {
    /// Runs the rollout to completion or rollback.
    pub async fn run(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Outcome, RolloutError> {
        let spec = Spec {
            flag: self.flag.clone(),
            steps: self.steps.clone(),
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            analysis: self.analysis.is_some(),
        };
        if !spec.steps_valid() {
            return Err(RolloutError::BadSteps(self.steps.clone()));
        }
        let analysis = self.analysis.as_ref().map(|(templates, args)| Analysis {
            templates: templates.clone(),
            inputs: RunInputs {
                args: args.clone(),
                ..Default::default()
            },
            providers: Providers::new(),
            sink: None,
        });
        if let Some(a) = &analysis {
            a.build("check").map_err(RolloutError::Analysis)?;
        }
        let writer = HttpWriter {
            server: self.server.clone(),
            environment: self.environment.clone(),
            admin_token: self.admin_token.clone(),
            tls: serin_tls::ClientOptions::default(),
        };
        let mut status = Status::new(&spec, now_ms());
        // Never aborted: the sender stays alive and false.
        let (_keep, mut abort) = tokio::sync::watch::channel(false);
        let mut observe = |_: &Status, events: &[Event]| {
            for e in events {
                match e {
                    Event::PercentageSet { percentage, .. } => progress(Progress::Set(*percentage)),
                    Event::AnalysisEnded {
                        percentage,
                        phase,
                        message,
                        ..
                    } => progress(Progress::Analysed {
                        at: *percentage,
                        phase: *phase,
                        message: message.clone(),
                    }),
                    _ => {}
                }
            }
        };
        drive(
            &spec,
            &mut status,
            &writer,
            analysis.as_ref(),
            &mut abort,
            &DriveOptions::default(),
            &mut observe,
        )
        .await?;
        match status.phase {
            Phase::Completed => Ok(Outcome::Completed),
            Phase::RolledBack | Phase::Aborted => {
                let st = status.steps.get(status.current_step);
                Ok(Outcome::RolledBack {
                    at: st.map_or(0, |s| s.percentage),
                    reason: st
                        .and_then(|s| s.analysis.as_ref())
                        .map(|a| format!("{:?}: {}", a.phase, a.message))
                        .unwrap_or_else(|| status.message.clone()),
                })
            }
            _ => Err(RolloutError::Refused(status.message)),
        }
    }
}
