//! Serin's deployment history.
//!
//! - [`DeploymentRecord`]: one deployment of one rollout, from start to outcome.
//! - [`History`]: the records in an embedded store (redb, its own file); every
//!   write is committed durably before it returns and survives a restart.
//! - [`Tracker`]: a pure, deterministic state machine that turns engine events
//!   (plus undo and "healthy again" signals and proxy counters) into records.
//! - [`report()`]: the seed's "Battle-Tested Metrics" table computed from records.
//! - [`Metrics`]: `deployment_status_total`, `deployment_rollback_total`,
//!   `deployment_duration_seconds`, `rollout_info`, `rollout_phase`,
//!   `analysis_run_*` in Prometheus text format.
//!
//! The control plane wires them together: feed every observation to the
//! [`Tracker`], [`History::put`] each record it returns, and hand the same
//! record to [`Metrics::observe_record`].

mod metrics;
mod record;
mod report;
mod store;
mod tracker;

pub use metrics::Metrics;
pub use record::{DeploymentRecord, Outcome, ProxyCounters};
pub use report::{Figure, Report, SinceError, parse_since, report};
pub use store::{History, HistoryError};
pub use tracker::{Input, Observation, Tracker};
