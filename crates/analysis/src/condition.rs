//! Success / failure conditions: CEL (the `cel` crate) plus Argo's helpers.
//!
//! Argo Rollouts evaluates conditions with expr-lang; Serin uses CEL, whose
//! syntax covers the common Argo conditions unchanged (`result[0] >= 0.95`,
//! `len(result) > 0 && result[0] <= 0.01`, `isNaN(result[0])`,
//! `default(result[0], 0) < 5`, `asInt(result) == 1`). Helpers added to CEL:
//!
//! | helper | meaning |
//! |---|---|
//! | `len(x)` | `size(x)` for lists, maps and strings |
//! | `isNaN(x)` | `x` is a double NaN |
//! | `isInf(x)` | `x` is ±∞ |
//! | `default(x, d)` | `x`, or `d` when `x` is null or cannot be evaluated because an index or key is missing (`result[0]` on an empty result) — a macro, so `x` is not evaluated when its index is absent |
//! | `asInt(x)` / `asFloat(x)` | parse a string (or convert a number) |
//! | `list.all(v, p)` / `list.exists(v, p)` / `list.any(v, p)` | CEL macros; `any` is an alias of `exists`. Argo's expr-lang `all(result, {# > 1})` closure syntax is not CEL and is rejected by [`check_condition`] with a hint |
//!
//! `result` is the provider's value: a list of doubles for a Prometheus
//! vector, a double for a scalar, any JSON for the web provider.
//!
//! **Never a silent pass.** When a numeric `result` holds NaN (Prometheus's
//! `0/0` when there is no traffic) and the expression does not mention
//! `isNaN`, the evaluation is an error: `result[0] >= 0.95` would be false and
//! a failure-only condition `result[0] > 0.01` would be *passing*. Argo lets
//! NaN through; Serin makes the author decide with `isNaN`.

use std::sync::{Arc, LazyLock};

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, SelectExpr, operators};
use cel::parser::Macro;
use cel::{Context, Env, ExecutionError, Program, Value};

/// Why a condition is invalid or could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// The expression does not parse.
    #[error("condition `{expr}` does not parse: {message}")]
    Parse {
        /// The expression.
        expr: String,
        /// 1-based line within the expression.
        line: u32,
        /// 1-based column within the expression.
        column: u32,
        /// Parser message.
        message: String,
    },
    /// The expression refers to something that does not exist.
    #[error("condition `{expr}`: {message}")]
    Invalid {
        /// The expression.
        expr: String,
        /// What is wrong.
        message: String,
    },
    /// Evaluation failed (type error, missing index, NaN not handled, …).
    #[error("condition `{expr}` failed: {message}")]
    Eval {
        /// The expression.
        expr: String,
        /// What went wrong.
        message: String,
    },
    /// The expression evaluated to something other than a boolean.
    #[error("condition `{expr}` evaluated to {got}, not a boolean")]
    NotBool {
        /// The expression.
        expr: String,
        /// What it produced.
        got: String,
    },
    /// The expression is longer, or nests deeper, than a condition may (it
    /// is not echoed: it may be megabytes).
    #[error("condition is {what}; the limit is {max} (conditions are short CEL expressions)")]
    TooLarge {
        /// How large it is (`12000 bytes long`, `nested 80 levels deep`).
        what: String,
        /// The limit, with its unit.
        max: String,
    },
}

/// Longest condition, in bytes. Argo's conditions are a line or two; the
/// cap keeps a hostile manifest from costing memory and time on every apply.
pub const MAX_CONDITION_BYTES: usize = 8 * 1024;

/// Deepest nesting of `(`, `[` and `{` in a condition. The CEL parser
/// recurses deeply per level: 16 levels overflowed a 2 MiB thread stack
/// (a tokio worker's) in a debug build.
pub const MAX_CONDITION_DEPTH: usize = 12;

/// Refuses an expression over [`MAX_CONDITION_BYTES`] or
/// [`MAX_CONDITION_DEPTH`] before the parser sees it.
fn check_size(expr: &str) -> Result<(), ConditionError> {
    if expr.len() > MAX_CONDITION_BYTES {
        return Err(ConditionError::TooLarge {
            what: format!("{} bytes long", expr.len()),
            max: format!("{MAX_CONDITION_BYTES} bytes"),
        });
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    if deepest > MAX_CONDITION_DEPTH {
        return Err(ConditionError::TooLarge {
            what: format!("nested {deepest} levels deep"),
            max: format!("{MAX_CONDITION_DEPTH} levels"),
        });
    }
    Ok(())
}

/// Functions (beyond operators) a condition may call.
const KNOWN_FUNCTIONS: &[&str] = &[
    // Serin / Argo helpers
    "len",
    "isNaN",
    "isInf",
    "asInt",
    "asFloat",
    "__default_nn",
    "__has_index",
    // CEL standard library
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
    "dyn",
    "contains",
    "startsWith",
    "endsWith",
    "max",
    "min",
    "has",
];

/// The CEL environment with Argo's macros (`default`, `any`).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(build_env()));

fn build_env() -> Env {
    let mut env = Env::stdlib();
    // Errors here would be a programming error (duplicate macro); they cannot
    // come from user input, and `check_condition` reports any resulting gap.
    if let Err(e) = env.add_macro(Macro::global("default", 2, expand_default)) {
        tracing::error!("cel: cannot add `default` macro: {e}");
    }
    if let Err(e) = env.add_macro(Macro::receiver("any", 2, expand_any)) {
        tracing::error!("cel: cannot add `any` macro: {e}");
    }
    env
}

fn lit_bool(b: bool) -> Expr {
    Expr::Literal(LiteralValue::Boolean(b.into()))
}

fn call(name: &str, args: Vec<IdedExpr>) -> Expr {
    Expr::Call(CallExpr {
        func_name: name.to_string(),
        target: None,
        args,
    })
}

/// An expression that is true when evaluating `e` cannot fail for a missing
/// index or field: `x[i]` needs `__has_index(x, i)` (after `x`'s own guard),
/// `x.f` needs `has(x.f)`.
fn guard(helper: &mut cel::parser::MacroExprHelper<'_>, e: &IdedExpr) -> IdedExpr {
    match &e.expr {
        Expr::Call(c) if c.func_name == operators::INDEX && c.args.len() == 2 => {
            let inner = guard(helper, &c.args[0]);
            let has = helper.next_expr(call(
                "__has_index",
                vec![c.args[0].clone(), c.args[1].clone()],
            ));
            helper.next_expr(call(operators::LOGICAL_AND, vec![inner, has]))
        }
        Expr::Select(s) if !s.test => {
            let inner = guard(helper, &s.operand);
            let has = helper.next_expr(Expr::Select(SelectExpr {
                operand: s.operand.clone(),
                field: s.field.clone(),
                test: true,
            }));
            helper.next_expr(call(operators::LOGICAL_AND, vec![inner, has]))
        }
        _ => helper.next_expr(lit_bool(true)),
    }
}

/// `default(x, d)` → `guard(x) ? __default_nn(x, d) : d`.
fn expand_default(
    helper: &mut cel::parser::MacroExprHelper<'_>,
    _target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, cel::ParseError> {
    let (Some(d), Some(x)) = (args.pop(), args.pop()) else {
        return Ok(None);
    };
    let g = guard(helper, &x);
    let nn = helper.next_expr(call("__default_nn", vec![x, d.clone()]));
    Ok(Some(
        helper.next_expr(call(operators::CONDITIONAL, vec![g, nn, d])),
    ))
}

/// `l.any(v, p)` → `l.exists(v, p)` (re-expanded by the parser's own macro).
fn expand_any(
    helper: &mut cel::parser::MacroExprHelper<'_>,
    target: &mut Option<IdedExpr>,
    args: &mut Vec<IdedExpr>,
) -> Result<Option<IdedExpr>, cel::ParseError> {
    if target.is_none() || args.len() != 2 {
        return Ok(None);
    }
    // The same comprehension the standard `exists` macro builds.
    let (Some(p), Some(v), Some(t)) = (args.pop(), args.pop(), target.take()) else {
        return Ok(None);
    };
    let Expr::Ident(var) = &v.expr else {
        return Err(helper.new_error(v.id, "any(): the first argument must be a variable name"));
    };
    let var = var.clone();
    let accu = "@result".to_string();
    let init = helper.next_expr(lit_bool(false));
    let accu_ref = helper.next_expr(Expr::Ident(accu.clone()));
    let not_accu = helper.next_expr(call(operators::LOGICAL_NOT, vec![accu_ref]));
    let cond = helper.next_expr(call(operators::NOT_STRICTLY_FALSE, vec![not_accu]));
    let accu_ref2 = helper.next_expr(Expr::Ident(accu.clone()));
    let step = helper.next_expr(call(operators::LOGICAL_OR, vec![accu_ref2, p]));
    let result = helper.next_expr(Expr::Ident(accu.clone()));
    Ok(Some(helper.next_expr(Expr::Comprehension(Box::new(
        cel::common::ast::ComprehensionExpr {
            iter_range: t,
            iter_var: var,
            iter_var2: None,
            accu_var: accu,
            accu_init: init,
            loop_cond: cond,
            loop_step: step,
            result,
        },
    )))))
}

/// A compiled condition, ready to evaluate against measurement results.
#[derive(Debug)]
pub struct Condition {
    source: String,
    program: Program,
    handles_nan: bool,
}

impl Condition {
    /// Compile and check `expr` (see [`check_condition`]).
    pub fn compile(expr: &str) -> Result<Self, ConditionError> {
        check_size(expr)?;
        if let Some(hint) = expr_lang_hint(expr) {
            return Err(ConditionError::Invalid {
                expr: expr.to_string(),
                message: hint,
            });
        }
        let program = ENV.compile(expr).map_err(|errs| {
            let first = errs.errors.first();
            let (line, column) = first
                .map(|e| (e.pos.0.max(1) as u32, e.pos.1.max(1) as u32))
                .unwrap_or((1, 1));
            ConditionError::Parse {
                expr: expr.to_string(),
                line,
                column,
                message: first
                    .map(|e| e.msg.clone())
                    .unwrap_or_else(|| errs.to_string()),
            }
        })?;
        let refs = program.references();
        for f in refs.functions() {
            let operator = f.starts_with('_')
                || f.starts_with('@')
                || f.starts_with('!')
                || f.starts_with('-');
            if !operator && !KNOWN_FUNCTIONS.contains(&f) {
                return Err(ConditionError::Invalid {
                    expr: expr.to_string(),
                    message: format!(
                        "unknown function `{f}` (known: {})",
                        KNOWN_FUNCTIONS
                            .iter()
                            .filter(|n| !n.starts_with("__"))
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let bound = comprehension_vars(program.expression());
        for v in refs.variables() {
            if v != "result" && !v.starts_with('@') && !bound.iter().any(|b| b == v) {
                return Err(ConditionError::Invalid {
                    expr: expr.to_string(),
                    message: format!("unknown variable `{v}`: only `result` is defined"),
                });
            }
        }
        let handles_nan = refs.has_function("isNaN");
        Ok(Condition {
            source: expr.to_string(),
            program,
            handles_nan,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate with `result` bound to `value`.
    pub fn evaluate(&self, value: &serde_json::Value) -> Result<bool, ConditionError> {
        let err = |message: String| ConditionError::Eval {
            expr: self.source.clone(),
            message,
        };
        if !self.handles_nan && contains_nan(value) {
            return Err(err(
                "result contains NaN (a PromQL 0/0, e.g. no traffic); decide explicitly with isNaN(result[0])"
                    .to_string(),
            ));
        }
        let result = json_to_cel(value);
        let mut ctx = Context::with_env(Arc::clone(&ENV));
        ctx.add_variable_from_value("result", result);
        register_helpers(&mut ctx).map_err(|e| err(e.to_string()))?;
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBool {
                expr: self.source.clone(),
                got: format!("{other:?}"),
            }),
            Err(e) => Err(err(e.to_string())),
        }
    }
}

/// Check a condition the way template loading does: it parses, calls only
/// known functions, and reads only `result`. For lint.
pub fn check_condition(expr: &str) -> Result<(), ConditionError> {
    Condition::compile(expr).map(|_| ())
}

/// expr-lang constructs that are not CEL, with the CEL spelling.
fn expr_lang_hint(expr: &str) -> Option<String> {
    if expr.contains("{#") || expr.contains("# ") && expr.contains('{') {
        return Some(
            "expr-lang closures (`all(result, {# > 1})`) are not CEL; write `result.all(x, x > 1)` or `result.exists(x, x > 1)`"
                .to_string(),
        );
    }
    for word in [" and ", " or "] {
        if expr.contains(word) {
            return Some(format!(
                "`{}` is expr-lang; CEL uses `&&` and `||`",
                word.trim()
            ));
        }
    }
    None
}

fn comprehension_vars(e: &IdedExpr) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(e: &IdedExpr, out: &mut Vec<String>) {
        match &e.expr {
            Expr::Comprehension(c) => {
                out.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    out.push(v2.clone());
                }
                out.push(c.accu_var.clone());
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    walk(x, out);
                }
            }
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    walk(t, out);
                }
                for a in &c.args {
                    walk(a, out);
                }
            }
            Expr::Select(s) => walk(&s.operand, out),
            Expr::List(l) => {
                for x in &l.elements {
                    walk(x, out);
                }
            }
            _ => {}
        }
    }
    walk(e, &mut out);
    out
}

fn contains_nan(v: &serde_json::Value) -> bool {
    // serde_json cannot hold NaN; providers encode it as the string "NaN"
    // inside numeric results (see `crate::provider::prometheus`).
    match v {
        serde_json::Value::String(s) => s == "NaN",
        serde_json::Value::Array(a) => a.iter().any(contains_nan),
        _ => false,
    }
}

/// serde_json → CEL, with the strings `"NaN"`, `"+Inf"`, `"-Inf"` inside
/// numeric results turned back into doubles.
pub(crate) fn json_to_cel(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => match s.as_str() {
            "NaN" => Value::Float(f64::NAN),
            "+Inf" | "Inf" => Value::Float(f64::INFINITY),
            "-Inf" => Value::Float(f64::NEG_INFINITY),
            _ => Value::String(Arc::new(s.clone())),
        },
        J::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        J::Object(o) => {
            let m: std::collections::HashMap<String, Value> =
                o.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
            Value::Map(m.into())
        }
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        _ => None,
    }
}

fn type_name(v: &Value) -> String {
    v.type_of().to_string()
}

fn register_helpers(ctx: &mut Context<'_, '_>) -> Result<(), cel::DeclarationError> {
    ctx.add_function("len", |v: Value| -> Result<Value, ExecutionError> {
        match &v {
            Value::List(l) => Ok(Value::Int(l.len() as i64)),
            Value::Map(m) => Ok(Value::Int(m.map.len() as i64)),
            Value::String(s) => Ok(Value::Int(s.chars().count() as i64)),
            other => Err(ExecutionError::function_error(
                "len",
                format!("len() of a {}", type_name(other)),
            )),
        }
    })?;
    ctx.add_function("isNaN", |v: Value| -> Result<Value, ExecutionError> {
        match as_f64(&v) {
            Some(f) => Ok(Value::Bool(f.is_nan())),
            None => Err(ExecutionError::function_error(
                "isNaN",
                format!("isNaN() of a {}", type_name(&v)),
            )),
        }
    })?;
    ctx.add_function("isInf", |v: Value| -> Result<Value, ExecutionError> {
        match as_f64(&v) {
            Some(f) => Ok(Value::Bool(f.is_infinite())),
            None => Err(ExecutionError::function_error(
                "isInf",
                format!("isInf() of a {}", type_name(&v)),
            )),
        }
    })?;
    ctx.add_function("asInt", |v: Value| -> Result<Value, ExecutionError> {
        match &v {
            Value::Int(_) => Ok(v),
            Value::UInt(u) => i64::try_from(*u)
                .map(Value::Int)
                .map_err(|e| ExecutionError::function_error("asInt", e)),
            Value::Float(f) if f.fract() == 0.0 && f.is_finite() => Ok(Value::Int(*f as i64)),
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|e| ExecutionError::function_error("asInt", format!("{s:?}: {e}"))),
            other => Err(ExecutionError::function_error(
                "asInt",
                format!("asInt() of {other:?}"),
            )),
        }
    })?;
    ctx.add_function("asFloat", |v: Value| -> Result<Value, ExecutionError> {
        match &v {
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|e| ExecutionError::function_error("asFloat", format!("{s:?}: {e}"))),
            other => as_f64(other).map(Value::Float).ok_or_else(|| {
                ExecutionError::function_error("asFloat", format!("asFloat() of {other:?}"))
            }),
        }
    })?;
    ctx.add_function("__default_nn", |v: Value, d: Value| -> Value {
        if matches!(v, Value::Null) { d } else { v }
    })?;
    ctx.add_function("__has_index", |c: Value, i: Value| -> Value {
        let ok = match (&c, &i) {
            (Value::List(l), Value::Int(n)) => *n >= 0 && (*n as u64) < l.len() as u64,
            (Value::List(l), Value::UInt(n)) => *n < l.len() as u64,
            (Value::Map(m), Value::String(k)) => {
                m.map.contains_key(&cel::objects::Key::String(k.clone()))
            }
            (Value::Map(m), Value::Int(k)) => m.map.contains_key(&cel::objects::Key::Int(*k)),
            _ => false,
        };
        Value::Bool(ok)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, v: serde_json::Value) -> Result<bool, ConditionError> {
        Condition::compile(expr)?.evaluate(&v)
    }

    #[test]
    fn argo_conditions_evaluate() {
        assert_eq!(eval("result[0] >= 0.95", json!([0.97])), Ok(true));
        assert_eq!(eval("result[0] >= 0.95", json!([0.5])), Ok(false));
        assert_eq!(eval("result[0] <= 500", json!([120.5])), Ok(true));
        assert_eq!(eval("result[0] <= 500", json!([501])), Ok(false));
        assert_eq!(eval("result >= 1", json!(2.5)), Ok(true));
        assert_eq!(
            eval("len(result) > 0 && result[0] <= 0.01", json!([])),
            Ok(false)
        );
        assert_eq!(
            eval("len(result) > 0 && result[0] <= 0.01", json!([0.001])),
            Ok(true)
        );
        assert_eq!(eval("isNaN(result[0])", json!(["NaN"])), Ok(true));
        assert_eq!(eval("isNaN(result[0])", json!([1.0])), Ok(false));
        assert_eq!(eval("isInf(result[0])", json!(["+Inf"])), Ok(true));
        assert_eq!(eval("asInt(result) == 3", json!("3")), Ok(true));
        assert_eq!(eval("asFloat(result) > 0.5", json!("0.75")), Ok(true));
        assert_eq!(
            eval("result.all(x, x < 0.1)", json!([0.01, 0.02])),
            Ok(true)
        );
        assert_eq!(
            eval("result.all(x, x < 0.1)", json!([0.01, 0.2])),
            Ok(false)
        );
        assert_eq!(
            eval("result.exists(x, x > 0.1)", json!([0.01, 0.2])),
            Ok(true)
        );
        assert_eq!(eval("result.any(x, x > 0.1)", json!([0.01, 0.2])), Ok(true));
        assert_eq!(
            eval("result.any(x, x > 0.5)", json!([0.01, 0.2])),
            Ok(false)
        );
        assert_eq!(eval("result.ok == true", json!({"ok": true})), Ok(true));
    }

    #[test]
    fn default_covers_missing_index_and_null() {
        assert_eq!(eval("default(result[0], 0) < 5", json!([])), Ok(true));
        assert_eq!(eval("default(result[0], 10) < 5", json!([])), Ok(false));
        assert_eq!(eval("default(result[0], 10) < 5", json!([1])), Ok(true));
        assert_eq!(eval("default(result[0], 10) < 5", json!([null])), Ok(false));
        assert_eq!(
            eval("default(result.a.b, 1) == 1", json!({"a": {}})),
            Ok(true)
        );
        assert_eq!(
            eval("default(result.a.b, 1) == 2", json!({"a": {"b": 2}})),
            Ok(true)
        );
    }

    #[test]
    fn errors_are_reported_not_passed() {
        // Empty vector indexed.
        assert!(matches!(
            eval("result[0] >= 0.95", json!([])),
            Err(ConditionError::Eval { .. })
        ));
        // NaN not handled by the expression.
        let e = eval("result[0] > 0.01", json!(["NaN"]));
        assert!(
            matches!(&e, Err(ConditionError::Eval { message, .. }) if message.contains("NaN")),
            "{e:?}"
        );
        // Type error.
        assert!(matches!(
            eval("result[0] > 1", json!(["abc"])),
            Err(ConditionError::Eval { .. })
        ));
        // A throwing helper.
        assert!(matches!(
            eval("asInt(result) > 1", json!("x1")),
            Err(ConditionError::Eval { .. })
        ));
        // Non-boolean.
        assert!(matches!(
            eval("result[0]", json!([1.0])),
            Err(ConditionError::NotBool { .. })
        ));
    }

    #[test]
    fn lint_rejects_bad_expressions() {
        assert!(matches!(
            check_condition("result[0] >="),
            Err(ConditionError::Parse { .. })
        ));
        assert!(matches!(
            check_condition("foo(result) > 1"),
            Err(ConditionError::Invalid { .. })
        ));
        assert!(matches!(
            check_condition("results[0] > 1"),
            Err(ConditionError::Invalid { .. })
        ));
        assert!(matches!(
            check_condition("all(result, {# > 1})"),
            Err(ConditionError::Invalid { .. })
        ));
        assert!(matches!(
            check_condition("result[0] > 1 and result[1] > 1"),
            Err(ConditionError::Invalid { .. })
        ));
        assert_eq!(check_condition("result.all(x, x > 0.9)"), Ok(()));
        assert_eq!(check_condition("default(result[0], 0) >= 0.95"), Ok(()));
        let Err(ConditionError::Parse { line, column, .. }) = check_condition("result[0] >= )")
        else {
            panic!("expected a parse error");
        };
        assert_eq!((line, column), (1, 14));
    }
}
