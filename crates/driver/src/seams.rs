//! The seams between the driver and a platform: what an adapter implements.
//!
//! Every method is `async` (returns a `Send` future) because real adapters
//! talk to processes, proxies and API servers; the simulator's futures are
//! ready at once. Errors are the adapter's own, boxed: the driver only shows
//! them on the rollout and retries with backoff.

use std::collections::BTreeMap;
use std::future::Future;

use crate::overrides::Overrides;
use serin_engine::{
    AnalysisKind, AnalysisPhase, ArgValueResolved, Event, Millis, ObservedRevision, RevisionHash,
    RolloutStatus, Route,
};

/// An adapter's failure, with its cause chain.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AdapterError(pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl AdapterError {
    /// An error from a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// What a platform needs to run a revision: its pod template (as the
/// manifest wrote it) and `minReadySeconds`.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// The pod template (`spec.template`) as JSON.
    pub template: serde_json::Value,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: u32,
}

/// Where revisions run: local processes, ReplicaSets, simulated pods.
///
/// Kubernetes: ReplicaSets labelled with the pod-template hash; `observe`
/// reads their status, `scale` creates or patches one, `restart_pods`
/// evicts (surge-first) pods older than `created_before`.
pub trait Platform: Send + Sync {
    /// Every revision of `rollout` that still exists, counted per replica
    /// (see [`crate::count_replicas`]). `number` may be left 0: the driver
    /// fills it from the status store.
    fn observe(
        &self,
        rollout: &str,
    ) -> impl Future<Output = Result<Vec<ObservedRevision>, AdapterError>> + Send;

    /// Runs `replicas` of `revision`, creating it from `workload` if needed.
    fn scale(
        &self,
        rollout: &str,
        revision: &RevisionHash,
        workload: &Workload,
        replicas: u32,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Replaces pods of `revision` created before `created_before`, surge
    /// first, at most `max_in_flight` replacements not yet available.
    fn restart_pods(
        &self,
        rollout: &str,
        revision: &RevisionHash,
        created_before: Millis,
        max_in_flight: u32,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// The pods of `rollout`'s experiments, one entry per workload (its
    /// `hash` is the experiment workload's), counted per replica. A
    /// platform that cannot run experiments has none.
    fn observe_experiments(
        &self,
        _rollout: &str,
    ) -> impl Future<Output = Result<Vec<ObservedRevision>, AdapterError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Runs `replicas` pods of `template` (the pod template of the revision
    /// an experiment copies) as the experiment workload `workload`: pods the
    /// rollout's Services and weights never select. A platform that cannot
    /// run experiments refuses.
    fn scale_experiment(
        &self,
        _rollout: &str,
        workload: &RevisionHash,
        _template: &Workload,
        _replicas: u32,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send {
        let message =
            format!("experiment workload {workload}: this platform does not run experiment steps");
        async move { Err(AdapterError::msg(message)) }
    }
}

/// Who splits traffic: Serin's proxy, an Istio VirtualService, a Gateway API
/// HTTPRoute, the simulator.
pub trait TrafficRouter: Send + Sync {
    /// Makes `route` the rollout's routing (whole state: weights, header
    /// routes, which revision each Service selects).
    fn set_route(
        &self,
        rollout: &str,
        route: &Route,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// The route actually in force for `rollout`, read back from the router
    /// — not what was last asked for. `None`: what the router serves is not
    /// a route this driver set (someone changed it, or it was lost); the
    /// driver then puts the stored route back.
    fn route_in_force(
        &self,
        rollout: &str,
        desired: &Route,
    ) -> impl Future<Output = Result<Option<Route>, AdapterError>> + Send;
}

/// Where the engine's status, the desired route, revisions, events and the
/// user's overrides live: redb on one machine, the Rollout's status
/// subresource (and spec, for overrides) on Kubernetes.
pub trait StatusStore: Send + Sync {
    /// The engine status last persisted (default when none).
    fn status(
        &self,
        rollout: &str,
    ) -> impl Future<Output = Result<RolloutStatus, AdapterError>> + Send;

    /// The route last decided for `rollout` (default when none).
    fn desired_route(
        &self,
        rollout: &str,
    ) -> impl Future<Output = Result<Route, AdapterError>> + Send;

    /// Persists a new status, and the route with it when one was decided,
    /// in one write (a restarted driver must never see one without the other).
    fn save(
        &self,
        rollout: &str,
        status: &RolloutStatus,
        route: Option<&Route>,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Records `revision` with its workload if new; returns every known
    /// revision's number (1, 2, …) by hash.
    fn ensure_revision(
        &self,
        rollout: &str,
        revision: &RevisionHash,
        workload: &Workload,
    ) -> impl Future<Output = Result<BTreeMap<RevisionHash, u64>, AdapterError>> + Send;

    /// Every known revision's number (1, 2, …) by hash.
    fn revision_numbers(
        &self,
        rollout: &str,
    ) -> impl Future<Output = Result<BTreeMap<RevisionHash, u64>, AdapterError>> + Send;

    /// The workload recorded for a revision (to scale an older one back up).
    fn workload(
        &self,
        rollout: &str,
        revision: &RevisionHash,
    ) -> impl Future<Output = Result<Option<Workload>, AdapterError>> + Send;

    /// Records an engine event (history, `/v1/events`, notifications).
    fn record_event(
        &self,
        rollout: &str,
        at: Millis,
        event: &Event,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// The user's overrides of the manifest (default when none).
    /// Kubernetes: the Rollout's own `spec.paused`, `spec.restartAt` and
    /// template (an undo writes an older template into the object).
    fn overrides(
        &self,
        rollout: &str,
    ) -> impl Future<Output = Result<Overrides, AdapterError>> + Send;

    /// Replaces the user's overrides.
    fn set_overrides(
        &self,
        rollout: &str,
        overrides: &Overrides,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Shows (or clears, with `None`) the driver's own error on the rollout:
    /// the reason it cannot act and when it tries again.
    fn set_driver_error(
        &self,
        rollout: &str,
        error: Option<&str>,
        retry_at: Option<Millis>,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;
}

/// Analysis runs: Serin's runner in-process, AnalysisRun objects on
/// Kubernetes, scripted outcomes in the simulator.
pub trait AnalysisRuns: Send + Sync {
    /// Phases of this rollout's runs by name (running and finished).
    fn phases(
        &self,
        rollout: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, AnalysisPhase>, AdapterError>> + Send;

    /// Starts a run. A run that cannot be built must report phase Error
    /// (never a silent pass), not fail the step.
    fn start(
        &self,
        rollout: &str,
        name: &str,
        kind: AnalysisKind,
        templates: &[String],
        args: &[(String, ArgValueResolved)],
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Stops a run.
    fn stop(
        &self,
        rollout: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;
}

/// The four adapters one step works with.
pub struct Adapters<'a, P, R, S, A> {
    /// Where revisions run.
    pub platform: &'a P,
    /// Who splits traffic.
    pub router: &'a R,
    /// Where status lives.
    pub store: &'a S,
    /// Analysis runs.
    pub analysis: &'a A,
}
