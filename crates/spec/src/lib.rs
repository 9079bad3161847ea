//! `serin-spec`: Serin's manifest model and the `serin lint` checks.
//!
//! - [`model`]: typed Argo Rollouts v1alpha1 (+ the Kubernetes kinds Serin reads).
//! - [`values`]: int-or-percent, Go durations, quantities.

pub mod model;
pub mod values;

pub use model::*;
pub use values::{
    DurationError, QuantityError, parse_go_duration, parse_quantity_bytes, parse_quantity_millis,
};
