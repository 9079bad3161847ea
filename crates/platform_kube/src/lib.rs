//! Serin on Kubernetes: the driver's seams carried out on a cluster, and the
//! controller loop that runs the same engine there.
//!
//! ```text
//!  watch Rollouts (+ owned ReplicaSets), resync ──► controller::reconcile(rollout)
//!     │ fresh GET, spec → engine spec (serin-plan), user command annotation
//!     ▼
//!  serin_driver::Driver::drive(RolloutAdapters)      (the same step as one machine)
//!     ├─ Platform       ReplicaSet per revision (rollouts-pod-template-hash), /scale
//!     ├─ TrafficRouter  Service selectors + Istio VirtualService weights/header
//!     │                 routes, server-side apply as field manager "serin"
//!     ├─ StatusStore    the Rollout: engine status + route + revision numbers in the
//!     │                 `serin.dev/status` annotation (one write), Events
//!     └─ AnalysisRuns   AnalysisRun objects, measured by serin-analysis' runner
//!     ▼
//!  Argo-shaped `/status` (phase, message, currentStepIndex, weights, stableRS, …)
//! ```
//!
//! FlagRollouts (`flagrollouts.serin.dev`) run beside them with
//! `serin_flag_rollout`'s step machine (see `flag_rollouts.rs`).
//!
//! The engine decides and the driver drives; this crate only carries out.

mod adapters;
mod analysis;
mod argo_status;
mod cli;
mod controller;
mod flag_rollouts;
mod history_store;
mod install;
mod job;
mod leader;
mod object;
mod record;
mod router;
mod rs_cache;
mod target;
mod workload_ref;

pub use adapters::{RolloutAdapters, Stored, TemplateAlias};
pub use argo_status::argo_status;
pub use cli::{command, describe, describe_all, flag_rollout_command, restart, set_image, undo};
pub use controller::{ControllerOptions, DEFAULT_RESYNC_SECS, run_controller};
pub use flag_rollouts::{
    FlagServer, LABEL_FLAG_ROLLOUT, describe_flag_rollout, describe_flag_rollouts,
    flag_rollout_crd, flag_rollout_resource,
};
pub use history_store::{HISTORY_CONFIGMAP, MAX_RECORDS, records as deployment_records, report};
pub use install::{FLAGS_TOKEN_SECRET, install_manifests};
pub use leader::LeaderElection;
pub use object::RolloutObject;
pub use record::{Observer, serve_metrics};
pub use rs_cache::{ReplicaSetCache, strip as strip_replica_set};
pub use target::{TargetError, target_of};

/// The label that ties a ReplicaSet, its pods and the Services selecting them
/// to one revision (Argo Rollouts' name for it, so its tooling keeps working).
pub const LABEL_HASH: &str = "rollouts-pod-template-hash";
/// Argo's revision-number annotation on ReplicaSets.
pub const ANN_REVISION: &str = "rollout.argoproj.io/revision";
/// Serin's own engine status, desired route and revision numbers, as JSON on
/// the Rollout (Argo's status schema prunes fields it does not know).
pub const ANN_STATUS: &str = "serin.dev/status";
/// A user command for the controller: `promote`, `promote-full`, `abort`,
/// `retry`, `pause`, `resume`, `restart` (now) or `restart TIME` (RFC 3339,
/// scheduled). Removed once carried out (or refused).
pub const ANN_COMMAND: &str = "serin.dev/command";
/// The outcome of the last `serin.dev/command`, written as the command is
/// removed: `<command>: ok` or `<command>: rejected: <why>`.
pub const ANN_COMMAND_RESULT: &str = "serin.dev/command-result";
/// Label on AnalysisRuns naming their Rollout.
pub const LABEL_ROLLOUT: &str = "serin.dev/rollout";
/// Annotation on an AnalysisRun Serin created: its creation time in
/// milliseconds (creationTimestamp has whole seconds).
pub const ANN_RUN_CREATED_MS: &str = "serin.dev/created-ms";
/// Server-side apply field manager for everything Serin writes.
pub const FIELD_MANAGER: &str = "serin";

/// A failure talking to the cluster, or an object Serin cannot use.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: kube::Error,
    },
    /// An object is not what Serin needs (missing Service, bad annotation, …).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Kube { what, source }
    }
}

impl From<Error> for serin_driver::AdapterError {
    fn from(e: Error) -> Self {
        serin_driver::AdapterError(Box::new(e))
    }
}

pub(crate) use serin_clock::{format_rfc3339_seconds as rfc3339, now_ms};

/// Publishes a Kubernetes Event (Warning or Normal) about `object`; a
/// failure is logged, never the caller's.
pub(crate) async fn publish_event(
    recorder: &kube::runtime::events::Recorder,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) {
    use kube::runtime::events::{Event, EventType};
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&ev, object).await {
        tracing::warn!(object = ?object.name, "publishing event {reason}: {err}");
    }
}

/// Whether `err` is the API server's 404.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// A client as kubectl would make one: `kubeconfig` (else `$KUBECONFIG`,
/// `~/.kube/config`, or the in-cluster service account) and `context`
/// (else the current context).
pub async fn connect(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> Result<kube::Client, Error> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                Error::Invalid(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| Error::Invalid(format!("kubeconfig {}: {e}", path.display())))?
        }
        (None, Some(_)) => Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| Error::Invalid(format!("kubeconfig: {e}")))?,
        (None, None) => Config::infer()
            .await
            .map_err(|e| Error::Invalid(format!("no kubeconfig and not in a cluster: {e}")))?,
    };
    kube::Client::try_from(config)
        .map_err(|e| Error::Invalid(format!("building the Kubernetes client: {e}")))
}
