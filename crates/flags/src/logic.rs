//! A compact JsonLogic evaluator over a pre-compiled rule tree, with flagd's custom operators
//! (`fractional`, `sem_ver`, `starts_with`, `ends_with`) and `$ref` to shared `$evaluators`.
//!
//! Why not a crate: datalogic-rs 5 (the best-kept Rust JsonLogic crate) was considered. It
//! compiles rules and takes custom operators, but it evaluates against its own arena data
//! model, so every evaluation would first copy the caller's context and the injected `$flagd`
//! properties into that model, and its custom operators only see pre-evaluated arguments
//! without the flag key. Here targeting is compiled once when a flag set is loaded (operators
//! resolved to an enum, `$ref`s inlined, literal sub-trees folded), `var` reads straight from
//! the [`EvaluationContext`] and the injected `$flagd.flagKey` / `$flagd.timestamp` without
//! building a data document, and compile errors carry a JSON pointer into the flag file.
//! Semantics follow the JsonLogic reference (JavaScript) for the core operators, and flagd's
//! Go evaluator (`core/pkg/evaluator`) for the custom ones, including its error behaviour.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::context::EvaluationContext;
use crate::{fractional, semver};

/// How deep `$ref`s may nest before the chain is taken for a cycle.
const MAX_REF_DEPTH: usize = 32;

/// A targeting rule compiled once at load time.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A constant (including constant arrays folded at compile time).
    Lit(Value),
    /// An array with at least one non-constant element.
    Arr(Vec<Node>),
    /// `{"var": "a.b"}` with a constant path (split on dots), and an optional default.
    Var(Vec<String>, Option<Box<Node>>),
    /// `{"var": <rule>}`: the path is computed.
    DynVar(Box<Node>, Option<Box<Node>>),
    /// Any other operator with its (uncompiled-order) arguments.
    Op(Op, Vec<Node>),
}

/// The operators this evaluator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    If,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Not,
    NotNot,
    Or,
    And,
    Gt,
    Ge,
    Lt,
    Le,
    Max,
    Min,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Map,
    Filter,
    Reduce,
    All,
    None,
    Some,
    Merge,
    In,
    Cat,
    Substr,
    Missing,
    MissingSome,
    Fractional,
    SemVer,
    StartsWith,
    EndsWith,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "if" | "?:" => Op::If,
            "==" => Op::Eq,
            "===" => Op::StrictEq,
            "!=" => Op::Ne,
            "!==" => Op::StrictNe,
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "or" => Op::Or,
            "and" => Op::And,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "max" => Op::Max,
            "min" => Op::Min,
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "map" => Op::Map,
            "filter" => Op::Filter,
            "reduce" => Op::Reduce,
            "all" => Op::All,
            "none" => Op::None,
            "some" => Op::Some,
            "merge" => Op::Merge,
            "in" => Op::In,
            "cat" => Op::Cat,
            "substr" => Op::Substr,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "fractional" => Op::Fractional,
            "sem_ver" => Op::SemVer,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            _ => return None,
        })
    }
}

/// A targeting rule that does not compile, with the JSON pointer of the culprit.
#[derive(Debug, Clone)]
pub(crate) struct CompileError {
    pub pointer: String,
    pub message: String,
}

/// How many rule nodes one flag's targeting may expand to, `$ref`s inlined. Hand-written
/// rules have tens to a few thousand; the cap stops a small file whose evaluators reference
/// each other several times per level from expanding exponentially at load.
pub const MAX_FLAG_NODES: usize = 100_000;

/// How many rule nodes a whole flag set may expand to.
pub const MAX_SET_NODES: usize = 2_000_000;

/// Compiles targeting rules, inlining `$ref`s, counting nodes against the load budget.
pub(crate) struct Compiler<'e> {
    evaluators: &'e Map<String, Value>,
    /// Lenient (flagd) mode: an operator with the wrong number of arguments compiles to
    /// `null` (what flagd's operator returns at evaluation) and is reported in `warnings`.
    lenient: bool,
    /// Problems tolerated in lenient mode.
    pub warnings: Vec<CompileError>,
    /// Nodes compiled for the current flag.
    flag_nodes: usize,
    /// Nodes compiled for the whole set so far.
    pub set_nodes: usize,
}

/// Why a rule did not compile: an ordinary error (the flag is broken), or the set-wide
/// node budget ran out (the whole load must stop).
#[derive(Debug, Clone)]
pub(crate) enum CompileFailure {
    /// This rule is broken.
    Rule(CompileError),
    /// This rule expands beyond [`MAX_FLAG_NODES`].
    FlagBudget(CompileError),
    /// The set as a whole expands beyond [`MAX_SET_NODES`].
    SetBudget(CompileError),
}

impl CompileFailure {
    pub(crate) fn into_error(self) -> CompileError {
        match self {
            CompileFailure::Rule(e)
            | CompileFailure::FlagBudget(e)
            | CompileFailure::SetBudget(e) => e,
        }
    }
}

impl From<CompileError> for CompileFailure {
    fn from(e: CompileError) -> Self {
        CompileFailure::Rule(e)
    }
}

/// `rule` with every `$ref` replaced by the evaluator it names, as flagd stores (and its
/// sync service sends) targeting: providers in in-process mode never see `$evaluators`.
/// `None` when a `$ref` is dangling, not a string, or nests deeper than the compiler allows.
/// Only called on rules that compiled, so the result is within [`MAX_FLAG_NODES`].
pub(crate) fn inline_refs(rule: &Value, evaluators: &Map<String, Value>) -> Option<Value> {
    fn walk(v: &Value, evaluators: &Map<String, Value>, depth: usize) -> Option<Value> {
        match v {
            Value::Array(items) => items
                .iter()
                .map(|i| walk(i, evaluators, depth))
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            Value::Object(m) if m.len() == 1 && m.contains_key("$ref") => {
                if depth >= MAX_REF_DEPTH {
                    return None;
                }
                let target = m.get("$ref")?.as_str()?;
                walk(evaluators.get(target)?, evaluators, depth + 1)
            }
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| walk(v, evaluators, depth).map(|v| (k.clone(), v)))
                .collect::<Option<Map<_, _>>>()
                .map(Value::Object),
            other => Some(other.clone()),
        }
    }
    walk(rule, evaluators, 0)
}

/// Compiles `rule` (found at JSON pointer `ptr`) strictly, inlining `$ref`s from `evaluators`.
pub(crate) fn compile(
    rule: &Value,
    ptr: &str,
    evaluators: &Map<String, Value>,
) -> Result<Node, CompileError> {
    Compiler::new(evaluators, false)
        .compile_flag(rule, ptr)
        .map_err(CompileFailure::into_error)
}

fn err(ptr: &str, message: impl Into<String>) -> CompileError {
    CompileError {
        pointer: ptr.to_owned(),
        message: message.into(),
    }
}

impl<'e> Compiler<'e> {
    pub(crate) fn new(evaluators: &'e Map<String, Value>, lenient: bool) -> Self {
        Self {
            evaluators,
            lenient,
            warnings: Vec::new(),
            flag_nodes: 0,
            set_nodes: 0,
        }
    }

    /// The shared evaluators `$ref`s name.
    pub(crate) fn evaluators(&self) -> &'e Map<String, Value> {
        self.evaluators
    }

    /// Compiles one flag's targeting with a fresh per-flag budget.
    pub(crate) fn compile_flag(&mut self, rule: &Value, ptr: &str) -> Result<Node, CompileFailure> {
        self.flag_nodes = 0;
        self.warnings.clear();
        self.compile_at(rule, ptr, 0)
    }

    fn charge(&mut self, ptr: &str) -> Result<(), CompileFailure> {
        self.flag_nodes += 1;
        self.set_nodes += 1;
        if self.set_nodes > MAX_SET_NODES {
            return Err(CompileFailure::SetBudget(err(
                ptr,
                format!(
                    "the flag set's targeting expands to more than {MAX_SET_NODES} nodes \
                     ($ref inlined); refusing to load it"
                ),
            )));
        }
        if self.flag_nodes > MAX_FLAG_NODES {
            return Err(CompileFailure::FlagBudget(err(
                ptr,
                format!(
                    "targeting expands to more than {MAX_FLAG_NODES} nodes ($ref inlined): \
                     evaluators referencing each other repeatedly grow exponentially"
                ),
            )));
        }
        Ok(())
    }

    fn compile_at(
        &mut self,
        rule: &Value,
        ptr: &str,
        depth: usize,
    ) -> Result<Node, CompileFailure> {
        self.charge(ptr)?;
        match rule {
            Value::Array(items) => {
                let mut nodes = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    nodes.push(self.compile_at(item, &format!("{ptr}/{i}"), depth)?);
                }
                if nodes.iter().all(|n| matches!(n, Node::Lit(_))) {
                    Ok(Node::Lit(Value::Array(
                        nodes
                            .into_iter()
                            .map(|n| match n {
                                Node::Lit(v) => v,
                                _ => Value::Null,
                            })
                            .collect(),
                    )))
                } else {
                    Ok(Node::Arr(nodes))
                }
            }
            Value::Object(map) if map.is_empty() => Ok(Node::Lit(rule.clone())),
            Value::Object(map) => {
                let mut entries = map.iter();
                let (name, args) = match (entries.next(), entries.next()) {
                    (Some(entry), None) => entry,
                    _ => {
                        return Err(err(
                            ptr,
                            format!(
                                "a rule object must have exactly one operator key, found {}",
                                map.len()
                            ),
                        )
                        .into());
                    }
                };
                let arg_ptr = format!("{ptr}/{}", crate::source::escape_segment(name));
                if name == "$ref" {
                    let Some(target) = args.as_str() else {
                        return Err(err(&arg_ptr, "$ref must name an evaluator (a string)").into());
                    };
                    if depth >= MAX_REF_DEPTH {
                        return Err(err(
                            &arg_ptr,
                            format!("$ref chain too deep (cycle?) at {target:?}"),
                        )
                        .into());
                    }
                    let Some(shared) = self.evaluators.get(target) else {
                        return Err(err(
                            &arg_ptr,
                            format!("no evaluator named {target:?} in $evaluators"),
                        )
                        .into());
                    };
                    let shared_ptr =
                        format!("/$evaluators/{}", crate::source::escape_segment(target));
                    // Errors inside a shared evaluator point into it; budget errors point at
                    // the $ref that crossed the line, which is where the user can act.
                    return self
                        .compile_at(shared, &shared_ptr, depth + 1)
                        .map_err(|e| match e {
                            CompileFailure::FlagBudget(e) => {
                                CompileFailure::FlagBudget(err(&arg_ptr, e.message))
                            }
                            CompileFailure::SetBudget(e) => {
                                CompileFailure::SetBudget(err(&arg_ptr, e.message))
                            }
                            other => other,
                        });
                }
                if name == "var" {
                    return self.compile_var(args, &arg_ptr, depth);
                }
                let Some(op) = Op::from_name(name) else {
                    return Err(err(ptr, format!("unknown operator {name:?}")).into());
                };
                let nodes = match args {
                    Value::Array(items) => {
                        let mut nodes = Vec::with_capacity(items.len());
                        for (i, item) in items.iter().enumerate() {
                            nodes.push(self.compile_at(item, &format!("{arg_ptr}/{i}"), depth)?);
                        }
                        nodes
                    }
                    other => vec![self.compile_at(other, &arg_ptr, depth)?],
                };
                if let Err(e) = check_arity(op, nodes.len(), &arg_ptr) {
                    if !self.lenient {
                        return Err(e.into());
                    }
                    // flagd loads the rule; the operator then rejects its arguments and
                    // yields null at every evaluation.
                    self.warnings.push(e);
                    return Ok(Node::Lit(Value::Null));
                }
                Ok(Node::Op(op, nodes))
            }
            _ => Ok(Node::Lit(rule.clone())),
        }
    }

    fn compile_var(
        &mut self,
        args: &Value,
        ptr: &str,
        depth: usize,
    ) -> Result<Node, CompileFailure> {
        let (path, default) = match args {
            Value::Array(items) => (items.first().unwrap_or(&Value::Null), items.get(1)),
            other => (other, None),
        };
        let default = match default {
            Some(d) => Some(Box::new(self.compile_at(d, &format!("{ptr}/1"), depth)?)),
            None => None,
        };
        match path {
            Value::String(s) => Ok(Node::Var(split_path(s), default)),
            Value::Number(n) => Ok(Node::Var(split_path(&n.to_string()), default)),
            Value::Null => Ok(Node::Var(Vec::new(), default)),
            other => {
                let node = self.compile_at(other, &format!("{ptr}/0"), depth)?;
                Ok(Node::DynVar(Box::new(node), default))
            }
        }
    }
}

fn check_arity(op: Op, n: usize, ptr: &str) -> Result<(), CompileError> {
    let ok = match op {
        Op::SemVer => n == 3,
        Op::StartsWith | Op::EndsWith => n == 2,
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some => n == 2,
        Op::Reduce => n == 2 || n == 3,
        Op::Fractional => n >= 1,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(err(
            ptr,
            format!("wrong number of arguments ({n}) for {}", op_name(op)),
        ))
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::SemVer => "sem_ver",
        Op::StartsWith => "starts_with",
        Op::EndsWith => "ends_with",
        Op::Map => "map",
        Op::Filter => "filter",
        Op::All => "all",
        Op::None => "none",
        Op::Some => "some",
        Op::Reduce => "reduce",
        Op::Fractional => "fractional",
        _ => "operator",
    }
}

fn split_path(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').map(str::to_owned).collect()
    }
}

/// What `var` reads from: the evaluation context at the top, or an array element inside
/// `map`/`filter`/`all`/`some`/`none`/`reduce`.
#[derive(Clone, Copy)]
pub(crate) enum Data<'a> {
    Root(&'a Env<'a>),
    Val(&'a Value),
}

/// The inputs of one evaluation: the caller's context plus flagd's injected properties.
pub(crate) struct Env<'a> {
    pub ctx: &'a EvaluationContext,
    pub flag_key: &'a str,
    pub now: i64,
}

impl Env<'_> {
    fn flagd_object(&self) -> Value {
        let mut m = Map::new();
        m.insert("flagKey".into(), Value::String(self.flag_key.to_owned()));
        m.insert("timestamp".into(), Value::from(self.now));
        Value::Object(m)
    }
    fn whole(&self) -> Value {
        let mut m = self.ctx.attributes().clone();
        m.insert("$flagd".into(), self.flagd_object());
        Value::Object(m)
    }
}

fn descend<'v>(mut cur: &'v Value, segs: &[impl AsRef<str>]) -> Option<&'v Value> {
    for s in segs {
        let s = s.as_ref();
        cur = match cur {
            Value::Object(m) => m.get(s)?,
            Value::Array(a) => a.get(s.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn lookup<'a>(data: Data<'a>, segs: &[impl AsRef<str>]) -> Option<Cow<'a, Value>> {
    match data {
        Data::Val(v) => descend(v, segs).map(Cow::Borrowed),
        Data::Root(env) => {
            let Some(first) = segs.first() else {
                return Some(Cow::Owned(env.whole()));
            };
            if first.as_ref() == "$flagd" {
                // Injected properties take precedence over anything the caller sent as $flagd.
                return match segs.get(1).map(AsRef::as_ref) {
                    None => Some(Cow::Owned(env.flagd_object())),
                    Some("flagKey") if segs.len() == 2 => {
                        Some(Cow::Owned(Value::String(env.flag_key.to_owned())))
                    }
                    Some("timestamp") if segs.len() == 2 => Some(Cow::Owned(Value::from(env.now))),
                    _ => None,
                };
            }
            let top = env.ctx.attributes().get(first.as_ref())?;
            descend(top, &segs[1..]).map(Cow::Borrowed)
        }
    }
}

/// JsonLogic truthiness (JavaScript's, except that empty arrays are falsy).
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// JavaScript `Number(v)`; NaN when there is no number.
fn to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0.0
            } else {
                t.parse::<f64>().unwrap_or(f64::NAN)
            }
        }
        Value::Array(a) => match a.as_slice() {
            [] => 0.0,
            [one] => to_number(one),
            _ => f64::NAN,
        },
        Value::Object(_) => f64::NAN,
    }
}

/// JavaScript's `String(n)` for the numbers flag files hold.
pub(crate) fn num_string(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    }
}

/// JavaScript `String(v)`.
pub(crate) fn js_string(v: &Value) -> Cow<'_, str> {
    match v {
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => Cow::Owned(num_string(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(a) => Cow::Owned(
            a.iter()
                .map(|x| {
                    if x.is_null() {
                        Cow::Borrowed("")
                    } else {
                        js_string(x)
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Object(_) => Cow::Borrowed("[object Object]"),
    }
}

fn num(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// JavaScript `==`.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Bool(_), _) | (_, Value::Bool(_)) => {
            let (x, y) = (to_number(a), to_number(b));
            match (a, b) {
                (Value::Bool(_), Value::Bool(_)) => x == y,
                (Value::Bool(_), other) => loose_eq(&num(x), other),
                (other, _) => loose_eq(other, &num(y)),
            }
        }
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            to_number(a) == to_number(b)
        }
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => false,
        (Value::Array(_) | Value::Object(_), prim) => {
            loose_eq(&Value::String(js_string(a).into_owned()), prim)
        }
        (prim, _) => loose_eq(prim, &Value::String(js_string(b).into_owned())),
    }
}

/// JavaScript `===` (arrays and objects are never identical across evaluations).
fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
        (Value::String(x), Value::String(y)) => x == y,
        _ => false,
    }
}

/// JavaScript relational comparison: strings compare as strings, anything else as numbers.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Value::String(x), Value::String(y)) = (a, b) {
        return Some(x.cmp(y));
    }
    to_number(a).partial_cmp(&to_number(b))
}

/// The most work one evaluation may do, in cost units: one per rule node evaluated, plus
/// one per array element and per 16 bytes of string that an operator builds or copies.
/// Ordinary targeting costs tens of units; the cap keeps a hostile rule or context (a
/// `reduce` over a huge array, a `cat` that doubles) to about a millisecond of CPU and a few
/// megabytes.
pub const MAX_EVAL_COST: u64 = 100_000;

/// The cost counter of one evaluation.
#[derive(Default)]
pub(crate) struct Budget {
    used: std::cell::Cell<u64>,
}

impl Budget {
    /// Adds `units`; false once the budget is spent (the caller then stops and yields null).
    pub(crate) fn charge(&self, units: u64) -> bool {
        let used = self.used.get().saturating_add(units);
        self.used.set(used);
        used <= MAX_EVAL_COST
    }
    /// Whether the evaluation went over [`MAX_EVAL_COST`].
    pub(crate) fn exceeded(&self) -> bool {
        self.used.get() > MAX_EVAL_COST
    }
    fn charge_value(&self, v: &Value) -> bool {
        self.charge(value_cost(v))
    }
}

/// The cost of copying a whole value, nested containers included.
fn deep_cost(v: &Value) -> u64 {
    match v {
        Value::Array(a) => a
            .iter()
            .fold(value_cost(v), |acc, x| acc.saturating_add(deep_cost(x))),
        Value::Object(m) => m
            .values()
            .fold(value_cost(v), |acc, x| acc.saturating_add(deep_cost(x))),
        other => value_cost(other),
    }
}

/// The copying cost of a value (shallow for nested containers, which are charged when
/// they are themselves built).
fn value_cost(v: &Value) -> u64 {
    let n = match v {
        Value::String(s) => s.len() / 16,
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    };
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Node {
    /// Evaluates this rule against `data`.
    pub(crate) fn eval<'a>(&'a self, data: Data<'a>, b: &Budget) -> Cow<'a, Value> {
        if !b.charge(1) {
            return Cow::Owned(Value::Null);
        }
        match self {
            Node::Lit(v) => Cow::Borrowed(v),
            Node::Arr(items) => Cow::Owned(Value::Array(
                items.iter().map(|n| n.eval(data, b).into_owned()).collect(),
            )),
            Node::Var(segs, default) => match lookup(data, segs) {
                Some(v) if !v.is_null() => {
                    // `{"var": ""}` at the top copies the whole context: charge the copy.
                    if matches!(v, Cow::Owned(_)) && !b.charge(deep_cost(&v)) {
                        return Cow::Owned(Value::Null);
                    }
                    v
                }
                _ => default
                    .as_ref()
                    .map_or(Cow::Owned(Value::Null), |d| d.eval(data, b)),
            },
            Node::DynVar(path, default) => {
                let p = path.eval(data, b);
                let segs = match p.as_ref() {
                    Value::Null => Vec::new(),
                    other => split_path(&js_string(other)),
                };
                match lookup(data, &segs) {
                    Some(v) if !v.is_null() => {
                        if !b.charge(deep_cost(&v)) {
                            return Cow::Owned(Value::Null);
                        }
                        Cow::Owned(v.into_owned())
                    }
                    _ => default
                        .as_ref()
                        .map_or(Cow::Owned(Value::Null), |d| d.eval(data, b)),
                }
            }
            Node::Op(op, args) => eval_op(*op, args, data, b),
        }
    }
}

fn arg<'a>(args: &'a [Node], i: usize, data: Data<'a>, b: &Budget) -> Cow<'a, Value> {
    args.get(i)
        .map_or(Cow::Owned(Value::Null), |n| n.eval(data, b))
}

fn bool_val<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

fn eval_op<'a>(op: Op, args: &'a [Node], data: Data<'a>, b: &Budget) -> Cow<'a, Value> {
    match op {
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truthy(&args[i].eval(data, b)) {
                    return args[i + 1].eval(data, b);
                }
                i += 2;
            }
            if i < args.len() {
                args[i].eval(data, b)
            } else {
                Cow::Owned(Value::Null)
            }
        }
        Op::Eq => bool_val(loose_eq(&arg(args, 0, data, b), &arg(args, 1, data, b))),
        Op::Ne => bool_val(!loose_eq(&arg(args, 0, data, b), &arg(args, 1, data, b))),
        Op::StrictEq => bool_val(strict_eq(&arg(args, 0, data, b), &arg(args, 1, data, b))),
        Op::StrictNe => bool_val(!strict_eq(&arg(args, 0, data, b), &arg(args, 1, data, b))),
        Op::Not => bool_val(!truthy(&arg(args, 0, data, b))),
        Op::NotNot => bool_val(truthy(&arg(args, 0, data, b))),
        Op::Or => {
            let mut last = Cow::Owned(Value::Null);
            for a in args {
                last = a.eval(data, b);
                if truthy(&last) {
                    return last;
                }
            }
            last
        }
        Op::And => {
            let mut last = Cow::Owned(Value::Null);
            for a in args {
                last = a.eval(data, b);
                if !truthy(&last) {
                    return last;
                }
            }
            last
        }
        Op::Gt | Op::Ge => {
            let o = compare(&arg(args, 0, data, b), &arg(args, 1, data, b));
            bool_val(match op {
                Op::Gt => o == Some(Ordering::Greater),
                _ => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
            })
        }
        Op::Lt | Op::Le => {
            let accept = |o: Option<Ordering>| match op {
                Op::Lt => o == Some(Ordering::Less),
                _ => matches!(o, Some(Ordering::Less | Ordering::Equal)),
            };
            let x = arg(args, 0, data, b);
            let y = arg(args, 1, data, b);
            if !accept(compare(&x, &y)) {
                return bool_val(false);
            }
            // Three arguments: "between" (x < y < z).
            if args.len() >= 3 {
                let z = arg(args, 2, data, b);
                return bool_val(accept(compare(&y, &z)));
            }
            bool_val(true)
        }
        Op::Max | Op::Min => {
            let mut acc: Option<f64> = None;
            for a in args {
                let f = to_number(&a.eval(data, b));
                if f.is_nan() {
                    return Cow::Owned(Value::Null);
                }
                acc = Some(match acc {
                    None => f,
                    Some(x) if op == Op::Max => x.max(f),
                    Some(x) => x.min(f),
                });
            }
            Cow::Owned(acc.map_or(Value::Null, num))
        }
        Op::Add => Cow::Owned(num(args.iter().map(|a| to_number(&a.eval(data, b))).sum())),
        Op::Mul => Cow::Owned(num(args
            .iter()
            .map(|a| to_number(&a.eval(data, b)))
            .product())),
        Op::Sub => {
            let a = to_number(&arg(args, 0, data, b));
            if args.len() == 1 {
                Cow::Owned(num(-a))
            } else {
                Cow::Owned(num(a - to_number(&arg(args, 1, data, b))))
            }
        }
        Op::Div => Cow::Owned(num(
            to_number(&arg(args, 0, data, b)) / to_number(&arg(args, 1, data, b))
        )),
        Op::Mod => Cow::Owned(num(
            to_number(&arg(args, 0, data, b)) % to_number(&arg(args, 1, data, b))
        )),
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some => {
            let list = arg(args, 0, data, b);
            let items: &[Value] = match list.as_ref() {
                Value::Array(a) => a,
                _ => &[],
            };
            let Some(logic) = args.get(1) else {
                return Cow::Owned(Value::Null);
            };
            match op {
                Op::Map => {
                    let mut out = Vec::with_capacity(items.len());
                    for el in items {
                        let v = logic.eval(Data::Val(el), b);
                        if !b.charge_value(&v) {
                            return Cow::Owned(Value::Null);
                        }
                        out.push(v.into_owned());
                    }
                    Cow::Owned(Value::Array(out))
                }
                Op::Filter => {
                    let mut out = Vec::new();
                    for el in items {
                        if truthy(&logic.eval(Data::Val(el), b)) {
                            if !b.charge_value(el) {
                                return Cow::Owned(Value::Null);
                            }
                            out.push(el.clone());
                        }
                    }
                    Cow::Owned(Value::Array(out))
                }
                Op::All => bool_val(
                    !items.is_empty()
                        && items.iter().all(|el| truthy(&logic.eval(Data::Val(el), b))),
                ),
                Op::Some => bool_val(items.iter().any(|el| truthy(&logic.eval(Data::Val(el), b)))),
                _ => bool_val(!items.iter().any(|el| truthy(&logic.eval(Data::Val(el), b)))),
            }
        }
        Op::Reduce => {
            let list = arg(args, 0, data, b);
            let mut acc = arg(args, 2, data, b).into_owned();
            let (Value::Array(items), Some(logic)) = (list.as_ref(), args.get(1)) else {
                return Cow::Owned(acc);
            };
            for el in items {
                // The element and the accumulator are copied into the scope each step.
                if !(b.charge_value(el) && b.charge_value(&acc)) {
                    return Cow::Owned(Value::Null);
                }
                let mut scope = Map::new();
                scope.insert("current".into(), el.clone());
                scope.insert("accumulator".into(), acc);
                let scope = Value::Object(scope);
                acc = logic.eval(Data::Val(&scope), b).into_owned();
            }
            Cow::Owned(acc)
        }
        Op::Merge => {
            let mut out = Vec::new();
            for a in args {
                let v = a.eval(data, b);
                if !b.charge_value(&v) {
                    return Cow::Owned(Value::Null);
                }
                match v.into_owned() {
                    Value::Array(items) => out.extend(items),
                    other => out.push(other),
                }
            }
            Cow::Owned(Value::Array(out))
        }
        Op::In => {
            let needle = arg(args, 0, data, b);
            let hay = arg(args, 1, data, b);
            if !b.charge_value(&hay) {
                return Cow::Owned(Value::Null);
            }
            bool_val(match hay.as_ref() {
                Value::String(s) => s.contains(js_string(&needle).as_ref()),
                Value::Array(items) => items.iter().any(|x| strict_eq(x, &needle)),
                _ => false,
            })
        }
        Op::Cat => {
            let mut s = String::new();
            for a in args {
                let v = a.eval(data, b);
                let text = js_string(&v);
                // Charged before copying, so a doubling `cat` stops before it allocates.
                if !b.charge(u64::try_from(text.len() / 16).unwrap_or(u64::MAX)) {
                    return Cow::Owned(Value::Null);
                }
                s.push_str(&text);
            }
            Cow::Owned(Value::String(s))
        }
        Op::Substr => {
            let src = arg(args, 0, data, b);
            let text = js_string(&src);
            if !b.charge(u64::try_from(text.len() / 16).unwrap_or(u64::MAX)) {
                return Cow::Owned(Value::Null);
            }
            let chars: Vec<char> = text.chars().collect();
            let len = i64::try_from(chars.len()).unwrap_or(i64::MAX);
            let start = to_number(&arg(args, 1, data, b));
            let start = if start.is_nan() { 0 } else { start as i64 };
            // `as` saturates, and the sums saturate too: a huge or hugely negative start or
            // length clamps to the string's ends instead of wrapping around.
            let start = if start < 0 {
                len.saturating_add(start).max(0)
            } else {
                start.min(len)
            };
            let end = if args.len() >= 3 {
                let l = to_number(&arg(args, 2, data, b));
                let l = if l.is_nan() { 0 } else { l as i64 };
                if l < 0 {
                    len.saturating_add(l).max(start)
                } else {
                    start.saturating_add(l).min(len)
                }
            } else {
                len
            };
            let (s, e) = (
                usize::try_from(start).unwrap_or(0),
                usize::try_from(end.max(start)).unwrap_or(0),
            );
            Cow::Owned(Value::String(chars[s..e].iter().collect()))
        }
        Op::Missing => {
            let evaluated: Vec<Cow<'a, Value>> = args.iter().map(|a| a.eval(data, b)).collect();
            let keys: Vec<&Value> = match evaluated.first().map(AsRef::as_ref) {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => evaluated.iter().map(AsRef::as_ref).collect(),
            };
            Cow::Owned(Value::Array(missing_keys(data, &keys)))
        }
        Op::MissingSome => {
            let need = to_number(&arg(args, 0, data, b));
            let keys_v = arg(args, 1, data, b);
            let keys: Vec<&Value> = match keys_v.as_ref() {
                Value::Array(items) => items.iter().collect(),
                _ => Vec::new(),
            };
            let missing = missing_keys(data, &keys);
            let present = keys.len() - missing.len();
            if present as f64 >= need {
                Cow::Owned(Value::Array(Vec::new()))
            } else {
                Cow::Owned(Value::Array(missing))
            }
        }
        Op::SemVer => {
            let (a, o, t) = (
                arg(args, 0, data, b),
                arg(args, 1, data, b),
                arg(args, 2, data, b),
            );
            // flagd: versions given as JSON numbers compare as their text (`1.2` is "1.2");
            // an invalid version, a non-string operator or an unknown one yields null.
            let version = |v: &Value| match v {
                Value::String(s) => Some(Cow::Owned(s.clone())),
                Value::Number(n) => Some(Cow::Owned(num_string(n.as_f64().unwrap_or(f64::NAN)))),
                _ => None,
            };
            let r = match (version(&a), o.as_ref(), version(&t)) {
                (Some(a), Value::String(o), Some(t)) => semver::matches(&a, o, &t),
                _ => None,
            };
            r.map_or(Cow::Owned(Value::Null), bool_val)
        }
        Op::StartsWith | Op::EndsWith => {
            let (x, y) = (arg(args, 0, data, b), arg(args, 1, data, b));
            match (x.as_ref(), y.as_ref()) {
                (Value::String(s), Value::String(p)) => bool_val(if op == Op::StartsWith {
                    s.starts_with(p.as_str())
                } else {
                    s.ends_with(p.as_str())
                }),
                // flagd: both yield null when either side is not a string.
                _ => Cow::Owned(Value::Null),
            }
        }
        Op::Fractional => {
            let values: Vec<Cow<'a, Value>> = args.iter().map(|a| a.eval(data, b)).collect();
            let (flag_key, targeting_key) = match data {
                Data::Root(env) => (env.flag_key, env.ctx.targeting_key()),
                Data::Val(_) => ("", None),
            };
            Cow::Owned(fractional::evaluate(&values, flag_key, targeting_key))
        }
    }
}

fn missing_keys(data: Data<'_>, keys: &[&Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for k in keys {
        let segs = split_path(&js_string(k));
        let present = match lookup(data, &segs) {
            Some(v) => !(v.is_null() || v.as_str() == Some("")),
            None => false,
        };
        if !present {
            out.push((*k).clone());
        }
    }
    out
}
