//! The evaluation context and the evaluation result, as OpenFeature defines them.

use serde_json::{Map, Value};

/// Key of the targeting key inside the context, as in OpenFeature and flagd.
pub const TARGETING_KEY: &str = "targetingKey";

/// What the application knows about the subject of an evaluation: a `targetingKey` (the user
/// id the seed's LaunchDarkly code passes as `Key`) and any attributes (`user_id`, `country`,
/// `plan`, …), read by targeting rules through `{"var": "country"}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationContext {
    attributes: Map<String, Value>,
}

impl EvaluationContext {
    /// An empty context (no targeting key).
    pub fn new() -> Self {
        Self::default()
    }

    /// A context whose targeting key is `key`.
    pub fn with_targeting_key(key: impl Into<String>) -> Self {
        Self::new().with(TARGETING_KEY, Value::String(key.into()))
    }

    /// A context from a JSON object (as OFREP sends it); `targetingKey` is taken from it.
    pub fn from_map(attributes: Map<String, Value>) -> Self {
        Self { attributes }
    }

    /// Adds or replaces an attribute.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set(key, value);
        self
    }

    /// Adds or replaces an attribute in place.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.attributes.insert(key.into(), value.into());
    }

    /// The targeting key, when it is present and a string.
    pub fn targeting_key(&self) -> Option<&str> {
        self.attributes.get(TARGETING_KEY).and_then(Value::as_str)
    }

    /// All attributes, the targeting key included.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }
}

/// Why a value was resolved (OpenFeature's resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting picked a variant.
    TargetingMatch,
    /// Targeting is a `fractional` split at top level and it picked a variant.
    Split,
    /// The flag is disabled; the caller's code default applies.
    Disabled,
    /// Targeting returned `null` (or there is none and no default variant): the default variant,
    /// or the code default when the flag has none.
    Default,
    /// Something went wrong; see the error code. The code default applies.
    Error,
}

impl Reason {
    /// The OpenFeature spelling (`STATIC`, `TARGETING_MATCH`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No flag with that key.
    FlagNotFound,
    /// The flag's configuration is broken: targeting that does not compile, or that returns a
    /// variant the flag does not have (flagd's code for both).
    ParseError,
    /// The resolved value is not of the type the caller asked for.
    TypeMismatch,
    /// A targeting key was needed but not given. flagd itself answers DEFAULT in that case
    /// (fractional without a targeting key), and so does this evaluator; the code exists for
    /// the OFREP layer.
    TargetingKeyMissing,
    /// The context is malformed (for the OFREP layer: the evaluator accepts any context).
    InvalidContext,
    /// Anything else.
    General,
}

impl ErrorCode {
    /// The OpenFeature spelling (`FLAG_NOT_FOUND`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// The result of [`crate::FlagSet::evaluate`], borrowing from the flag set (no allocation on
/// the success path).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<'a> {
    /// The resolved value; `None` means "use the code default" (disabled flag, no default
    /// variant, or error).
    pub value: Option<&'a Value>,
    /// The variant's key, when a variant was resolved.
    pub variant: Option<&'a str>,
    /// Why.
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Error`].
    pub error_code: Option<ErrorCode>,
    /// A human-readable detail for errors.
    pub error_message: Option<String>,
    /// The flag's metadata merged over the flag set's (`flagSetId`, `version`, …); `None` when
    /// the flag does not exist.
    pub flag_metadata: Option<&'a Map<String, Value>>,
}

/// A typed resolution (from [`crate::FlagSet::bool_value`] and friends): the value is always
/// set, to the code default when the flag gives none or the wrong type.
#[derive(Debug, Clone, PartialEq)]
pub struct Details<'a, T> {
    /// The value to use.
    pub value: T,
    /// The variant's key, when the value came from a variant.
    pub variant: Option<&'a str>,
    /// Why.
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Error`].
    pub error_code: Option<ErrorCode>,
    /// A human-readable detail for errors.
    pub error_message: Option<String>,
}
