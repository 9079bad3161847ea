//! `serin-spec`: Serin's manifest model, located loading and the `serin lint` checks.
//!
//! - [`model`]: typed Argo Rollouts v1alpha1 (+ the Kubernetes kinds Serin reads).
//! - [`values`]: int-or-percent, Go durations, quantities.
//! - [`yaml`]: YAML → JSON with a location for every field path.
//! - [`load`]: files and directories → [`ManifestSet`].
//! - [`lint()`]: every check, as located [`Diagnostic`]s.

pub mod diag;
pub mod lint;
pub mod load;
pub mod model;
pub mod values;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use lint::lint;
pub use load::{Document, ManifestSet, Resource, SourceFile};
pub use model::*;
pub use values::{
    DurationError, QuantityError, parse_go_duration, parse_quantity_bytes, parse_quantity_millis,
};
