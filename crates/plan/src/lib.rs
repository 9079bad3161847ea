//! `serin-plan`: from manifests to the engine, and back to words.
//!
//! - [`convert`]: a loaded `Rollout` (or Deployment) → [`serin_engine::RolloutSpec`].
//! - [`explain`]: what the rollout will do, step by step (`serin plan`).
//! - [`experiment`]: a loaded `Experiment` → [`serin_engine::experiment_kind::ExperimentSpec`],
//!   and what it will do.
//! - [`simulate`]: runs it in the simulator and reports the timeline
//!   (`serin plan --simulate`).

pub mod convert;
pub mod experiment;
pub mod explain;
pub mod simulate;

pub use convert::{ConvertError, run_arguments, to_engine};
pub use explain::{explain, human};
