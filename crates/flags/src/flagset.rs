//! A loaded, validated and compiled set of flags, and evaluation against it.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::context::{Details, ErrorCode, Evaluation, EvaluationContext, Reason};
use crate::error::{FlagsError, RolloutError};
use crate::logic::{self, Budget, CompileFailure, Compiler, Data, Env, Node, Op};
use crate::source::{self, Format, Located, escape_segment};

/// How strictly targeting is checked when loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// Targeting that does not compile (unknown operator, dangling `$ref`, …) fails the load
    /// with a located error. What `serin` uses for files users write.
    #[default]
    Strict,
    /// Like flagd: such a flag loads, is reported in [`FlagSet::warnings`], and evaluates to
    /// reason ERROR / `PARSE_ERROR`. Structural errors still fail the load.
    Lenient,
}

/// Whether a flag is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Served.
    Enabled,
    /// Not served: evaluation answers reason DISABLED and the code default.
    Disabled,
}

#[derive(Debug, Clone)]
enum Targeting {
    None,
    Rule { node: Node, split: bool },
    Broken(String),
}

/// One flag of a [`FlagSet`].
#[derive(Debug, Clone)]
pub struct Flag {
    state: State,
    variants: Map<String, Value>,
    default_variant: Option<String>,
    targeting_json: Option<Value>,
    /// `targeting_json` with its `$ref`s inlined (what sync sends); `None` when there are
    /// none to inline or they did not resolve.
    targeting_inlined: Option<Value>,
    targeting: Targeting,
    metadata: Map<String, Value>,
}

impl Flag {
    /// Enabled or disabled.
    pub fn state(&self) -> State {
        self.state
    }
    /// The variants, by key.
    pub fn variants(&self) -> &Map<String, Value> {
        &self.variants
    }
    /// The default variant; `None` means "use the code default".
    pub fn default_variant(&self) -> Option<&str> {
        self.default_variant.as_deref()
    }
    /// The targeting rule as written (or as rewritten by
    /// [`FlagSet::set_rollout_percentage`]).
    pub fn targeting(&self) -> Option<&Value> {
        self.targeting_json.as_ref()
    }
    /// The targeting rule with every `$ref` replaced by its evaluator, as flagd stores it and
    /// sends it to providers in in-process mode (which never see `$evaluators`). As written
    /// when it has no `$ref`, or when one does not resolve (the flag answers `PARSE_ERROR`).
    pub fn targeting_inlined(&self) -> Option<&Value> {
        self.targeting_inlined
            .as_ref()
            .or(self.targeting_json.as_ref())
    }
    /// Metadata (the flag's own over the set's).
    pub fn metadata(&self) -> &Map<String, Value> {
        &self.metadata
    }
}

/// Whether a rule mentions `$ref` anywhere (most do not: no copy is made for them).
fn contains_ref(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(contains_ref),
        Value::Object(m) => m.contains_key("$ref") || m.values().any(contains_ref),
        _ => false,
    }
}

/// A located problem that did not stop a [`Strictness::Lenient`] load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The flag concerned.
    pub flag: String,
    /// The error, with its location.
    pub message: String,
}

/// A set of flags in flagd's definition format, compiled for evaluation.
///
/// Evaluation is pure: no clock (the time for `$flagd.timestamp` is a parameter), no
/// randomness, no I/O. A `FlagSet` is immutable while evaluating and can be shared across
/// threads.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    flags: HashMap<String, Flag>,
    evaluators: Map<String, Value>,
    warnings: Vec<Warning>,
}

struct Loader<'a> {
    doc: &'a Located,
}

impl Loader<'_> {
    fn invalid(&self, pointer: &str, message: impl Into<String>) -> FlagsError {
        FlagsError::Invalid {
            pointer: pointer.to_owned(),
            location: self.doc.locate(pointer),
            message: message.into(),
        }
    }
}

fn variant_kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
    }
}

fn check_metadata(l: &Loader<'_>, v: &Value, ptr: &str) -> Result<Map<String, Value>, FlagsError> {
    let Value::Object(m) = v else {
        return Err(l.invalid(ptr, "metadata must be an object"));
    };
    for (k, val) in m {
        if !matches!(val, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(l.invalid(
                &format!("{ptr}/{}", escape_segment(k)),
                "metadata values must be strings, numbers or booleans",
            ));
        }
    }
    Ok(m.clone())
}

impl FlagSet {
    /// Loads a flagd flag-definition document in JSON, strictly.
    pub fn from_json_str(src: &str) -> Result<FlagSet, FlagsError> {
        Self::from_str_with(src, Format::Json, Strictness::Strict)
    }

    /// Loads a flagd flag-definition document in YAML, strictly.
    pub fn from_yaml_str(src: &str) -> Result<FlagSet, FlagsError> {
        Self::from_str_with(src, Format::Yaml, Strictness::Strict)
    }

    /// Reads and loads a file, strictly; `.yaml`/`.yml` are YAML, anything else JSON. This is the
    /// only function of the crate that does I/O. Errors are prefixed with the path.
    pub fn from_path(path: impl AsRef<Path>) -> Result<FlagSet, FlagsError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|source| FlagsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Json,
        };
        Self::from_str_with(&src, format, Strictness::Strict).map_err(|e| FlagsError::InFile {
            path: path.to_owned(),
            inner: Box::new(e),
        })
    }

    /// Loads a document in the given format and strictness.
    pub fn from_str_with(
        src: &str,
        format: Format,
        strictness: Strictness,
    ) -> Result<FlagSet, FlagsError> {
        let doc = source::parse(src, format)?;
        let l = Loader { doc: &doc };
        let Value::Object(root) = &doc.value else {
            return Err(l.invalid("", "the document must be an object with a \"flags\" member"));
        };
        let evaluators = match root.get("$evaluators") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(l.invalid("/$evaluators", "$evaluators must be an object")),
        };
        let set_metadata = match root.get("metadata") {
            None => Map::new(),
            Some(v) => check_metadata(&l, v, "/metadata")?,
        };
        let mut entries: Vec<(String, String, &Value)> = Vec::new();
        match root.get("flags") {
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    entries.push((k.clone(), format!("/flags/{}", escape_segment(k)), v));
                }
            }
            // flagd's daemon also accepts an array of flags carrying a "key".
            Some(Value::Array(items)) => {
                for (i, v) in items.iter().enumerate() {
                    let ptr = format!("/flags/{i}");
                    let Some(key) = v.get("key").and_then(Value::as_str) else {
                        return Err(
                            l.invalid(&ptr, "a flag in a flags array needs a string \"key\"")
                        );
                    };
                    entries.push((key.to_owned(), ptr, v));
                }
            }
            Some(_) => return Err(l.invalid("/flags", "flags must be an object (or an array)")),
            None => return Err(l.invalid("", "missing required member \"flags\"")),
        }
        let mut set = FlagSet {
            flags: HashMap::with_capacity(entries.len()),
            evaluators: Map::new(),
            warnings: Vec::new(),
        };
        let mut compiler = Compiler::new(&evaluators, strictness == Strictness::Lenient);
        for (key, ptr, v) in entries {
            if key.is_empty() {
                return Err(l.invalid(&ptr, "flag keys must not be empty"));
            }
            let flag =
                set.load_flag(&l, &mut compiler, &key, &ptr, v, &set_metadata, strictness)?;
            if set.flags.insert(key.clone(), flag).is_some() {
                return Err(l.invalid(&ptr, format!("duplicate flag key {key:?}")));
            }
        }
        drop(compiler);
        set.evaluators = evaluators;
        Ok(set)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_flag(
        &mut self,
        l: &Loader<'_>,
        compiler: &mut Compiler<'_>,
        key: &str,
        ptr: &str,
        v: &Value,
        set_metadata: &Map<String, Value>,
        strictness: Strictness,
    ) -> Result<Flag, FlagsError> {
        let Value::Object(f) = v else {
            return Err(l.invalid(ptr, "a flag must be an object"));
        };
        let state = match f.get("state") {
            Some(Value::String(s)) if s == "ENABLED" => State::Enabled,
            Some(Value::String(s)) if s == "DISABLED" => State::Disabled,
            Some(_) => {
                return Err(l.invalid(
                    &format!("{ptr}/state"),
                    "state must be \"ENABLED\" or \"DISABLED\"",
                ));
            }
            None => return Err(l.invalid(ptr, "missing required member \"state\"")),
        };
        let variants = match f.get("variants") {
            Some(Value::Object(m)) if !m.is_empty() => m.clone(),
            Some(_) => {
                return Err(l.invalid(
                    &format!("{ptr}/variants"),
                    "variants must be a non-empty object",
                ));
            }
            None => return Err(l.invalid(ptr, "missing required member \"variants\"")),
        };
        let mut kind: Option<&'static str> = None;
        for (vk, vv) in &variants {
            let vptr = format!("{ptr}/variants/{}", escape_segment(vk));
            if vk.is_empty() {
                return Err(l.invalid(&vptr, "variant keys must not be empty"));
            }
            let k = variant_kind(vv);
            if matches!(k, "array" | "null") {
                return Err(l.invalid(
                    &vptr,
                    "a variant must be a boolean, string, number or object",
                ));
            }
            match kind {
                None => kind = Some(k),
                Some(first) if first != k => {
                    return Err(l.invalid(
                        &vptr,
                        format!(
                            "all variants of a flag must have one type: {first} and {k} are mixed"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let default_variant = match f.get("defaultVariant") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                if !variants.contains_key(s) {
                    return Err(l.invalid(
                        &format!("{ptr}/defaultVariant"),
                        format!("default variant {s:?} is not one of the flag's variants"),
                    ));
                }
                Some(s.clone())
            }
            Some(_) => {
                return Err(l.invalid(
                    &format!("{ptr}/defaultVariant"),
                    "defaultVariant must be a string or null",
                ));
            }
        };
        let mut metadata = set_metadata.clone();
        if let Some(m) = f.get("metadata") {
            metadata.extend(check_metadata(l, m, &format!("{ptr}/metadata"))?);
        }
        let targeting_json = match f.get("targeting") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) if m.is_empty() => None,
            Some(t @ Value::Object(_)) => Some(t.clone()),
            Some(_) => {
                return Err(l.invalid(&format!("{ptr}/targeting"), "targeting must be an object"));
            }
        };
        let targeting = match &targeting_json {
            None => Targeting::None,
            Some(t) => match compiler.compile_flag(t, &format!("{ptr}/targeting")) {
                Ok(node) => {
                    // Wrong argument counts tolerated by a lenient load: located warnings.
                    for w in compiler.warnings.drain(..) {
                        self.warnings.push(Warning {
                            flag: key.to_owned(),
                            message: format!(
                                "{} (flagd loads this flag; the operator yields null, so the \
                                 flag falls back to its default variant)",
                                l.invalid(&w.pointer, w.message)
                            ),
                        });
                    }
                    let split = matches!(node, Node::Op(Op::Fractional, _));
                    Targeting::Rule { node, split }
                }
                Err(CompileFailure::SetBudget(e)) => return Err(l.invalid(&e.pointer, e.message)),
                Err(e) => {
                    let e = e.into_error();
                    let located = l.invalid(&e.pointer, e.message);
                    if strictness == Strictness::Strict {
                        return Err(located);
                    }
                    let message = located.to_string();
                    self.warnings.push(Warning {
                        flag: key.to_owned(),
                        message: format!(
                            "{message} (flagd loads this flag; it answers ERROR / PARSE_ERROR)"
                        ),
                    });
                    Targeting::Broken(message)
                }
            },
        };
        let targeting_inlined = match (&targeting, &targeting_json) {
            (Targeting::Rule { .. }, Some(t)) if contains_ref(t) => {
                logic::inline_refs(t, compiler.evaluators())
            }
            _ => None,
        };
        Ok(Flag {
            state,
            variants,
            default_variant,
            targeting_json,
            targeting_inlined,
            targeting,
            metadata,
        })
    }

    /// Merges `later` into this set with flagd's precedence for several sources: a flag key
    /// defined in both is taken from `later` whole (its variants, targeting and metadata; each
    /// flag keeps the flag-set metadata of the source it came from, under its own), and the
    /// warnings of both are kept. Each flag's targeting was compiled against its own
    /// source's `$evaluators`, so `$ref`s never cross sources.
    pub fn merge(&mut self, later: FlagSet) {
        for (k, v) in later.evaluators {
            self.evaluators.insert(k, v);
        }
        self.flags.extend(later.flags);
        self.warnings.extend(later.warnings);
    }

    /// Problems tolerated by a [`Strictness::Lenient`] load.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// A flag by key.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        self.flags.get(key)
    }

    /// All flag keys (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// Evaluates flag `key` for `ctx` at time `now_unix_seconds` (the value of
    /// `$flagd.timestamp`). Pure: the same inputs always give the same result.
    pub fn evaluate<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now_unix_seconds: i64,
    ) -> Evaluation<'a> {
        let Some((flag_key, flag)) = self.flags.get_key_value(key) else {
            return Evaluation {
                value: None,
                variant: None,
                reason: Reason::Error,
                error_code: Some(ErrorCode::FlagNotFound),
                error_message: Some(format!("flag {key:?} not found")),
                flag_metadata: None,
            };
        };
        let ok = |variant: Option<&'a String>, reason: Reason| {
            let (variant, value) = match variant {
                Some(v) => (Some(v.as_str()), flag.variants.get(v)),
                None => (None, None),
            };
            Evaluation {
                value,
                variant,
                reason,
                error_code: None,
                error_message: None,
                flag_metadata: Some(&flag.metadata),
            }
        };
        let error = |code: ErrorCode, message: String| Evaluation {
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message),
            flag_metadata: Some(&flag.metadata),
        };
        if flag.state == State::Disabled {
            return ok(None, Reason::Disabled);
        }
        let default = || {
            let reason = if flag.default_variant.is_some() {
                Reason::Static
            } else {
                Reason::Default
            };
            ok(flag.default_variant.as_ref(), reason)
        };
        let (node, split) = match &flag.targeting {
            Targeting::None => return default(),
            Targeting::Broken(m) => return error(ErrorCode::ParseError, m.clone()),
            Targeting::Rule { node, split } => (node, *split),
        };
        let env = Env {
            ctx,
            flag_key,
            now: now_unix_seconds,
        };
        let budget = Budget::default();
        let result = node.eval(Data::Root(&env), &budget);
        if budget.exceeded() {
            return error(
                ErrorCode::General,
                format!(
                    "targeting of flag {key:?} exceeded the evaluation budget ({} cost units: \
                     rule nodes, copied elements and string bytes / 16)",
                    logic::MAX_EVAL_COST
                ),
            );
        }
        // flagd turns the result into a variant key: strings as they are, booleans and numbers
        // by their JSON text; null means "no match, use the default variant".
        let variant_key: std::borrow::Cow<'_, str> = match result.as_ref() {
            Value::Null => return ok(flag.default_variant.as_ref(), Reason::Default),
            Value::String(s) => s.as_str().into(),
            Value::Bool(b) => if *b { "true" } else { "false" }.into(),
            Value::Number(n) => logic::num_string(n.as_f64().unwrap_or(f64::NAN)).into(),
            // flagd turns arrays and objects into text that names no variant: GENERAL.
            other => {
                return error(
                    ErrorCode::General,
                    format!(
                        "targeting returned {}, not a variant key",
                        variant_kind(other)
                    ),
                );
            }
        };
        match flag.variants.get_key_value(variant_key.as_ref()) {
            Some((k, _)) => ok(
                Some(k),
                if split {
                    Reason::Split
                } else {
                    Reason::TargetingMatch
                },
            ),
            // flagd: GENERAL (not PARSE_ERROR) for a variant the flag does not have.
            None => error(
                ErrorCode::General,
                format!(
                    "targeting returned variant {variant_key:?}, which flag {key:?} does not have"
                ),
            ),
        }
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now: i64,
        default: T,
        expected: &str,
        extract: impl Fn(&'a Value) -> Option<T>,
    ) -> Details<'a, T> {
        let e = self.evaluate(key, ctx, now);
        match e.value {
            None => Details {
                value: default,
                variant: e.variant,
                reason: e.reason,
                error_code: e.error_code,
                error_message: e.error_message,
            },
            Some(v) => match extract(v) {
                Some(t) => Details {
                    value: t,
                    variant: e.variant,
                    reason: e.reason,
                    error_code: None,
                    error_message: None,
                },
                None => Details {
                    value: default,
                    variant: None,
                    reason: Reason::Error,
                    error_code: Some(ErrorCode::TypeMismatch),
                    error_message: Some(format!(
                        "flag {key:?} resolved to a {} value, not {expected}",
                        variant_kind(v)
                    )),
                },
            },
        }
    }

    /// Evaluates a boolean flag; `default` when it gives no value, TYPE_MISMATCH when it is not
    /// a boolean.
    pub fn bool_value<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now: i64,
        default: bool,
    ) -> Details<'a, bool> {
        self.typed(key, ctx, now, default, "a boolean", Value::as_bool)
    }

    /// Evaluates a string flag (see [`FlagSet::bool_value`]).
    pub fn string_value<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now: i64,
        default: &'a str,
    ) -> Details<'a, &'a str> {
        self.typed(key, ctx, now, default, "a string", Value::as_str)
    }

    /// Evaluates an integer flag: numbers with a fractional part are a TYPE_MISMATCH (no lossy
    /// coercion).
    pub fn int_value<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now: i64,
        default: i64,
    ) -> Details<'a, i64> {
        self.typed(key, ctx, now, default, "an integer", |v| {
            v.as_i64().or_else(|| {
                let f = v.as_f64()?;
                // Whole floats such as 10.0 (YAML, JSON "10.0") are lossless integers.
                (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
            })
        })
    }

    /// Evaluates a number flag (integers are accepted: the conversion is lossless).
    pub fn float_value<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now: i64,
        default: f64,
    ) -> Details<'a, f64> {
        self.typed(key, ctx, now, default, "a number", Value::as_f64)
    }

    /// Evaluates an object flag.
    pub fn object_value<'a>(
        &'a self,
        key: &str,
        ctx: &EvaluationContext,
        now: i64,
        default: &'a Map<String, Value>,
    ) -> Details<'a, &'a Map<String, Value>> {
        self.typed(key, ctx, now, default, "an object", Value::as_object)
    }

    /// The seed's `IsEnabled(flagKey, userContext)`: the boolean value, `false` when the flag
    /// is missing, disabled, broken or not boolean.
    pub fn is_enabled(&self, key: &str, ctx: &EvaluationContext, now: i64) -> bool {
        self.bool_value(key, ctx, now, false).value
    }

    /// Turns a two-variant flag into a percentage rollout: its targeting becomes
    /// `{"fractional": [["<on>", pct], ["<off>", 100 - pct]]}`, bucketed on
    /// `flagKey + targetingKey`. For a boolean flag "on" is the `true` variant; otherwise it is
    /// the variant that is not the default one.
    ///
    /// Raising `pct` only moves users from off to on: a user's bucket
    /// `(murmur3(flagKey + targetingKey) × 100) >> 32` depends only on the key, not on `pct`,
    /// because the weights always total 100; the user is on exactly when `bucket < pct`, and
    /// "on" is listed first so its range is `0..pct`, which only grows with `pct`.
    pub fn set_rollout_percentage(&mut self, key: &str, pct: u8) -> Result<(), RolloutError> {
        if pct > 100 {
            return Err(RolloutError::OutOfRange(pct));
        }
        let flag = self
            .flags
            .get_mut(key)
            .ok_or_else(|| RolloutError::NotFound(key.to_owned()))?;
        let unsuitable = |message: &str| RolloutError::Unsuitable {
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if flag.variants.len() != 2 {
            return Err(unsuitable(
                "a percentage rollout needs exactly two variants",
            ));
        }
        let keys: Vec<&String> = flag.variants.keys().collect();
        let on = if let Some(k) = keys
            .iter()
            .find(|k| flag.variants.get(k.as_str()) == Some(&Value::Bool(true)))
        {
            (*k).clone()
        } else if let Some(d) = &flag.default_variant {
            keys.iter()
                .find(|k| k.as_str() != d)
                .map(|k| (*k).clone())
                .ok_or_else(|| unsuitable("cannot tell the on variant"))?
        } else {
            return Err(unsuitable(
                "cannot tell the on variant: not boolean and no default variant",
            ));
        };
        let off = keys
            .iter()
            .find(|k| **k != &on)
            .map(|k| (*k).clone())
            .ok_or_else(|| unsuitable("cannot tell the off variant"))?;
        let rule = json!({"fractional": [[on, pct], [off, 100 - pct]]});
        let node = logic::compile(&rule, "/targeting", &self.evaluators).map_err(|e| {
            RolloutError::Unsuitable {
                key: key.to_owned(),
                message: e.message,
            }
        })?;
        flag.targeting = Targeting::Rule { node, split: true };
        flag.targeting_json = Some(rule);
        flag.targeting_inlined = None;
        Ok(())
    }
}
