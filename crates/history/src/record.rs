//! The record of one deployment.

use serde::{Deserialize, Serialize};

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still rolling out.
    InProgress,
    /// The new revision became stable.
    Succeeded,
    /// Aborted (by analysis, the progress deadline, a user, or superseded by a
    /// newer revision before it finished).
    Aborted,
    /// Undone: the rollout went back to the previous revision, during the
    /// deployment or after it had succeeded.
    RolledBack,
}

impl Outcome {
    /// The `status` label of `deployment_status_total` (the seed's dashboard
    /// queries `status="success"`).
    pub fn status_label(self) -> &'static str {
        match self {
            Outcome::InProgress => "in_progress",
            Outcome::Succeeded => "success",
            Outcome::Aborted => "failure",
            Outcome::RolledBack => "rollback",
        }
    }

    /// True once the deployment has an outcome.
    pub fn is_finished(self) -> bool {
        self != Outcome::InProgress
    }
}

/// Cumulative request counters for a rollout's service, as the proxy reports
/// them (monotonic; a proxy restart may reset them to zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounters {
    /// Requests served.
    pub requests: u64,
    /// Requests that failed (5xx or no upstream).
    pub failed: u64,
}

impl ProxyCounters {
    /// Requests between `start` and `self`. A counter that went backwards was
    /// reset (proxy restart): count from zero rather than underflow.
    pub fn since(self, start: ProxyCounters) -> ProxyCounters {
        fn delta(end: u64, start: u64) -> u64 {
            if end >= start { end - start } else { end }
        }
        ProxyCounters {
            requests: delta(self.requests, start.requests),
            failed: delta(self.failed, start.failed),
        }
    }
}

/// One deployment of one rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Unique, increasing id.
    pub id: u64,
    /// Rollout (service) name.
    pub rollout: String,
    /// `canary`, `blueGreen`, `rolling`, … as the control plane names it.
    pub strategy: String,
    /// The stable revision before the deployment (`None` for the first one).
    pub from_revision: Option<String>,
    /// The revision being deployed.
    pub to_revision: String,
    /// Start, milliseconds since the epoch.
    pub started_at_ms: u64,
    /// End (outcome reached), milliseconds since the epoch.
    pub ended_at_ms: Option<u64>,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it was aborted.
    pub abort_reason: Option<String>,
    /// Requests served by the rollout's service during the deployment.
    pub requests: u64,
    /// Of those, failed requests.
    pub failed_requests: u64,
    /// For [`Outcome::RolledBack`]: from the undo to the previous revision
    /// being stable again.
    pub time_to_rollback_ms: Option<u64>,
    /// For failed deployments (aborted or rolled back): from the failure being
    /// acted on (abort, undo) to the rollout being Healthy again.
    pub time_to_recovery_ms: Option<u64>,
}

impl DeploymentRecord {
    /// Wall time from start to end, when ended.
    pub fn duration_ms(&self) -> Option<u64> {
        self.ended_at_ms
            .map(|end| end.saturating_sub(self.started_at_ms))
    }
}
