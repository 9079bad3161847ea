//! `serin-analysis`: Serin's analysis engine — Argo Rollouts AnalysisRuns.
//!
//! - [`run`]: the **pure core**. [`AnalysisRun`] is built from merged
//!   templates and resolved args ([`AnalysisRun::new`]), and driven with
//!   [`next_due`](AnalysisRun::next_due), [`record`](AnalysisRun::record),
//!   [`terminate`](AnalysisRun::terminate); no clock, no I/O.
//! - [`condition`]: CEL conditions with Argo's helpers; [`check_condition`]
//!   for lint.
//! - [`args`]: [`resolve_args`] and `{{args.NAME}}` substitution.
//! - [`providers`]: prometheus, web, job (and a builtin slot) — the I/O.
//! - [`runner`]: sleeps until measurements are due, runs providers with
//!   their timeouts, records, publishes status, stops on request.
//!
//! # Semantics (Argo Rollouts `analysis` controller)
//!
//! - Measurement outcome (`EvaluateResult`): no conditions → Successful; only
//!   `successCondition` → Failed when false; only `failureCondition` →
//!   Successful when false; both false → Inconclusive; an evaluation error →
//!   Error.
//! - Counters: Successful/Failed/Inconclusive add to `count`; Error adds to
//!   `error` and `consecutiveError` (reset by any other outcome).
//! - Metric assessment, in order: `failed > failureLimit` (default 0, −1 =
//!   unlimited) → Failed; `inconclusive > inconclusiveLimit` (default 0) →
//!   Inconclusive; `consecutiveError > consecutiveErrorLimit` (default 4) →
//!   Error; `consecutiveSuccessLimit` reached → Successful; `count` reached →
//!   Successful (Inconclusive/Failed when a `consecutiveSuccessLimit` was not
//!   reached, as Argo 1.8); otherwise Running, or Successful when the run is
//!   terminating.
//! - `count` unset: one measurement without `interval`; with an `interval`
//!   the metric runs until the run is terminated (background analysis).
//!   `count > 1` without `interval` is rejected, as Argo's validation does.
//! - After an Error the next try comes after `interval`, or 10 s without one.
//! - `initialDelay` counts from the run's start (first `next_due`).
//! - A non-dry-run metric ending Failed/Error/Inconclusive terminates the run:
//!   no new measurements; the run's phase is the worst metric phase
//!   (Successful < Inconclusive < Error < Failed). `terminate` →
//!   Successful unless something already failed. Dry-run metrics (`dryRun`
//!   regex or `*`, from the template or the rollout) never decide the run.
//! - Measurements kept per metric: 10, or `measurementRetention`.
//!
//! # Deliberate differences from Argo
//!
//! 1. Conditions are CEL, not expr-lang (see [`condition`]); expr-lang-only
//!    syntax (`and`, `{# …}` closures) is a lint error with the CEL spelling.
//! 2. A NaN in `result` is an Error measurement unless the condition uses
//!    `isNaN` — Argo lets NaN make a failure-only condition pass.
//! 3. Bad conditions, durations, limits, unknown `{{args.x}}` and missing args
//!    fail at [`AnalysisRun::new`] (before the rollout step), not mid-run.
//! 4. An in-flight measurement cut short by termination is recorded as
//!    Successful "metric terminated" but not counted.
//! 5. The job provider runs `containers[0].command + args` as a local
//!    process (no image); `activeDeadlineSeconds` is its timeout (default
//!    10 min) and a timeout is an Error, not Failed.
//! 6. A provider timeout is always an Error measurement (prometheus default
//!    30 s, web `timeoutSeconds` default 10 s).
//! 7. Template `valueFrom.secretKeyRef` args are not supported (no secrets
//!    store locally). prometheus/web reach `https://` trusting the system's
//!    roots plus an optional extra CA ([`Providers::with_ca`]); Argo's
//!    `insecure: true` (skip verification) is not supported.
//! 8. Times are milliseconds on the caller's scale, not RFC 3339 timestamps.

pub mod args;
pub mod condition;
pub mod lint;
pub mod machine;
pub mod providers;
pub mod runner;

pub use args::{ArgError, ArgSources, ResolvedArgs, resolve_args, substitute};
pub use condition::{Condition, ConditionError, check_condition};
pub use lint::lint_templates;
pub use machine::{
    AnalysisRun, BuildError, JobCommand, Measurement, MetricResult, MetricTask, Outcome, Phase,
    ProviderSpec, RunInputs, RunStatus,
};
pub use providers::{Provider, Providers};
pub use runner::{Clock, TokioClock};
