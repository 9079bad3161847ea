//! Serin's rollout driver: the one place that runs the pure engine against a
//! platform. It knows no platform; adapters do.
//!
//! ```text
//!            decides                 drives                    carries out
//!  engine::reconcile  ◄──  Driver::drive(target, now)  ──►  Platform · TrafficRouter
//!  (pure)                   observe → reconcile →           StatusStore · AnalysisRuns
//!                           persist → act, per rollout      (local processes + Serin's
//!                           with its own error + backoff     proxy + redb; the simulator;
//!                                                            Kubernetes next)
//! ```
//!
//! The shape is kube-rs' controller (`reconcile(object, ctx) -> requeue`)
//! around a sans-IO core (quinn-proto's `poll_timeout`): every step returns
//! when the rollout next needs to run, so the caller sleeps until then or
//! until an adapter reports a change — there is no fixed tick.

mod backoff;
pub mod overrides;
mod replicas;
mod seams;
mod step;

pub use backoff::Backoff;
pub use overrides::{OperateError, Overrides, UserOperation, operate, resolve};
pub use replicas::{PodView, ReplicaCount, ReplicaSlot, count_replicas, replica_slots};
pub use seams::{
    AdapterError, Adapters, AnalysisRuns, Platform, StatusStore, TrafficRouter, Workload,
};
pub use step::{Driver, Outcome, StepError, Stepped, Target};
