//! Serin's feature-flag evaluation: a pure library.
//!
//! Flags are written in [flagd's definition format](https://flagd.dev/reference/flag-definitions/)
//! (schema v0: `flags` with `state`, `variants`, `defaultVariant`, `targeting` in JsonLogic,
//! `metadata`, and shared `$evaluators` referenced with `$ref`), in JSON or YAML. Loading
//! validates the document and compiles every targeting rule once; errors say
//! `line:column` and the JSON pointer of the culprit.
//!
//! Evaluation does no I/O, reads no clock and draws no random numbers: the time used for
//! `$flagd.timestamp` is a parameter. Results carry OpenFeature's value, variant, reason
//! (`STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT`, `ERROR`) and error code.
//!
//! Operators: the JsonLogic core (`var`, `missing`, `missing_some`, `if`/`?:`, `==`, `===`,
//! `!=`, `!==`, `!`, `!!`, `or`, `and`, `<`, `<=`, `>`, `>=`, `max`, `min`, `+`, `-`, `*`, `/`,
//! `%`, `map`, `filter`, `reduce`, `all`, `none`, `some`, `merge`, `in`, `cat`, `substr`) and
//! flagd's `fractional`, `sem_ver`, `starts_with`, `ends_with`. `fractional` buckets exactly as
//! flagd does (murmur3 x86_32, seed 0, `(hash × totalWeight) >> 32`); see [`fractional`].
//!
//! ```
//! use serin_flags::{EvaluationContext, FlagSet, Reason};
//!
//! let flags = FlagSet::from_json_str(r#"{"flags": {"new-payment-processor": {
//!     "state": "ENABLED",
//!     "variants": {"on": true, "off": false},
//!     "defaultVariant": "off",
//!     "targeting": {"if": [{"in": [{"var": "country"}, ["DE", "FR"]]}, "on", null]}
//! }}}"#)?;
//! let ctx = EvaluationContext::with_targeting_key("user-42")
//!     .with("user_id", "user-42")
//!     .with("country", "DE")
//!     .with("plan", "pro");
//! assert!(flags.is_enabled("new-payment-processor", &ctx, 1_700_000_000));
//! let e = flags.evaluate("new-payment-processor", &ctx, 1_700_000_000);
//! assert_eq!(e.reason, Reason::TargetingMatch);
//! # Ok::<(), serin_flags::FlagsError>(())
//! ```

mod context;
mod error;
mod flagset;
pub mod fractional;
mod logic;
mod semver;
mod source;

pub use context::{Details, ErrorCode, Evaluation, EvaluationContext, Reason, TARGETING_KEY};
pub use error::{FlagsError, Location, RolloutError};
pub use flagset::{Flag, FlagSet, State, Strictness, Warning};
pub use logic::{MAX_EVAL_COST, MAX_FLAG_NODES, MAX_SET_NODES};
pub use source::Format;
