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

/// Compiles `rule` (found at JSON pointer `ptr`), inlining `$ref`s from `evaluators`.
pub(crate) fn compile(
    rule: &Value,
    ptr: &str,
    evaluators: &Map<String, Value>,
) -> Result<Node, CompileError> {
    compile_at(rule, ptr, evaluators, 0)
}

fn err(ptr: &str, message: impl Into<String>) -> CompileError {
    CompileError {
        pointer: ptr.to_owned(),
        message: message.into(),
    }
}

fn compile_at(
    rule: &Value,
    ptr: &str,
    evaluators: &Map<String, Value>,
    depth: usize,
) -> Result<Node, CompileError> {
    match rule {
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                nodes.push(compile_at(item, &format!("{ptr}/{i}"), evaluators, depth)?);
            }
            if nodes.iter().all(|n| matches!(n, Node::Lit(_))) {
                Ok(Node::Lit(rule.clone()))
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
                    ));
                }
            };
            let arg_ptr = format!("{ptr}/{}", crate::source::escape_segment(name));
            if name == "$ref" {
                let Some(target) = args.as_str() else {
                    return Err(err(&arg_ptr, "$ref must name an evaluator (a string)"));
                };
                if depth >= MAX_REF_DEPTH {
                    return Err(err(
                        &arg_ptr,
                        format!("$ref chain too deep (cycle?) at {target:?}"),
                    ));
                }
                let Some(shared) = evaluators.get(target) else {
                    return Err(err(
                        &arg_ptr,
                        format!("no evaluator named {target:?} in $evaluators"),
                    ));
                };
                let shared_ptr = format!("/$evaluators/{}", crate::source::escape_segment(target));
                return compile_at(shared, &shared_ptr, evaluators, depth + 1);
            }
            if name == "var" {
                return compile_var(args, &arg_ptr, evaluators, depth);
            }
            let Some(op) = Op::from_name(name) else {
                return Err(err(ptr, format!("unknown operator {name:?}")));
            };
            let nodes = match args {
                Value::Array(items) => {
                    let mut nodes = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        nodes.push(compile_at(
                            item,
                            &format!("{arg_ptr}/{i}"),
                            evaluators,
                            depth,
                        )?);
                    }
                    nodes
                }
                other => vec![compile_at(other, &arg_ptr, evaluators, depth)?],
            };
            check_arity(op, nodes.len(), &arg_ptr)?;
            Ok(Node::Op(op, nodes))
        }
        _ => Ok(Node::Lit(rule.clone())),
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
            format!("wrong number of arguments ({n}) for {op:?}"),
        ))
    }
}

fn compile_var(
    args: &Value,
    ptr: &str,
    evaluators: &Map<String, Value>,
    depth: usize,
) -> Result<Node, CompileError> {
    let (path, default) = match args {
        Value::Array(items) => (items.first().unwrap_or(&Value::Null), items.get(1)),
        other => (other, None),
    };
    let default = match default {
        Some(d) => Some(Box::new(compile_at(
            d,
            &format!("{ptr}/1"),
            evaluators,
            depth,
        )?)),
        None => None,
    };
    match path {
        Value::String(s) => Ok(Node::Var(split_path(s), default)),
        Value::Number(n) => Ok(Node::Var(split_path(&n.to_string()), default)),
        Value::Null => Ok(Node::Var(Vec::new(), default)),
        other => {
            let node = compile_at(other, &format!("{ptr}/0"), evaluators, depth)?;
            Ok(Node::DynVar(Box::new(node), default))
        }
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

impl Node {
    /// Evaluates this rule against `data`.
    pub(crate) fn eval<'a>(&'a self, data: Data<'a>) -> Cow<'a, Value> {
        match self {
            Node::Lit(v) => Cow::Borrowed(v),
            Node::Arr(items) => Cow::Owned(Value::Array(
                items.iter().map(|n| n.eval(data).into_owned()).collect(),
            )),
            Node::Var(segs, default) => match lookup(data, segs) {
                Some(v) if !v.is_null() => v,
                _ => default
                    .as_ref()
                    .map_or(Cow::Owned(Value::Null), |d| d.eval(data)),
            },
            Node::DynVar(path, default) => {
                let p = path.eval(data);
                let segs = match p.as_ref() {
                    Value::Null => Vec::new(),
                    other => split_path(&js_string(other)),
                };
                match lookup(data, &segs) {
                    Some(v) if !v.is_null() => Cow::Owned(v.into_owned()),
                    _ => default
                        .as_ref()
                        .map_or(Cow::Owned(Value::Null), |d| d.eval(data)),
                }
            }
            Node::Op(op, args) => eval_op(*op, args, data),
        }
    }
}

fn arg<'a>(args: &'a [Node], i: usize, data: Data<'a>) -> Cow<'a, Value> {
    args.get(i)
        .map_or(Cow::Owned(Value::Null), |n| n.eval(data))
}

fn bool_val<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Owned(Value::Bool(b))
}

fn eval_op<'a>(op: Op, args: &'a [Node], data: Data<'a>) -> Cow<'a, Value> {
    match op {
        Op::If => {
            let mut i = 0;
            while i + 1 < args.len() {
                if truthy(&args[i].eval(data)) {
                    return args[i + 1].eval(data);
                }
                i += 2;
            }
            if i < args.len() {
                args[i].eval(data)
            } else {
                Cow::Owned(Value::Null)
            }
        }
        Op::Eq => bool_val(loose_eq(&arg(args, 0, data), &arg(args, 1, data))),
        Op::Ne => bool_val(!loose_eq(&arg(args, 0, data), &arg(args, 1, data))),
        Op::StrictEq => bool_val(strict_eq(&arg(args, 0, data), &arg(args, 1, data))),
        Op::StrictNe => bool_val(!strict_eq(&arg(args, 0, data), &arg(args, 1, data))),
        Op::Not => bool_val(!truthy(&arg(args, 0, data))),
        Op::NotNot => bool_val(truthy(&arg(args, 0, data))),
        Op::Or => {
            let mut last = Cow::Owned(Value::Null);
            for a in args {
                last = a.eval(data);
                if truthy(&last) {
                    return last;
                }
            }
            last
        }
        Op::And => {
            let mut last = Cow::Owned(Value::Null);
            for a in args {
                last = a.eval(data);
                if !truthy(&last) {
                    return last;
                }
            }
            last
        }
        Op::Gt | Op::Ge => {
            let o = compare(&arg(args, 0, data), &arg(args, 1, data));
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
            let a = arg(args, 0, data);
            let b = arg(args, 1, data);
            if !accept(compare(&a, &b)) {
                return bool_val(false);
            }
            // Three arguments: "between" (a < b < c).
            if args.len() >= 3 {
                let c = arg(args, 2, data);
                return bool_val(accept(compare(&b, &c)));
            }
            bool_val(true)
        }
        Op::Max | Op::Min => {
            let mut acc: Option<f64> = None;
            for a in args {
                let f = to_number(&a.eval(data));
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
        Op::Add => Cow::Owned(num(args.iter().map(|a| to_number(&a.eval(data))).sum())),
        Op::Mul => Cow::Owned(num(args.iter().map(|a| to_number(&a.eval(data))).product())),
        Op::Sub => {
            let a = to_number(&arg(args, 0, data));
            if args.len() == 1 {
                Cow::Owned(num(-a))
            } else {
                Cow::Owned(num(a - to_number(&arg(args, 1, data))))
            }
        }
        Op::Div => Cow::Owned(num(
            to_number(&arg(args, 0, data)) / to_number(&arg(args, 1, data))
        )),
        Op::Mod => Cow::Owned(num(
            to_number(&arg(args, 0, data)) % to_number(&arg(args, 1, data))
        )),
        Op::Map | Op::Filter | Op::All | Op::None | Op::Some => {
            let list = arg(args, 0, data);
            let items: &[Value] = match list.as_ref() {
                Value::Array(a) => a,
                _ => &[],
            };
            let Some(logic) = args.get(1) else {
                return Cow::Owned(Value::Null);
            };
            match op {
                Op::Map => Cow::Owned(Value::Array(
                    items
                        .iter()
                        .map(|el| logic.eval(Data::Val(el)).into_owned())
                        .collect(),
                )),
                Op::Filter => Cow::Owned(Value::Array(
                    items
                        .iter()
                        .filter(|el| truthy(&logic.eval(Data::Val(el))))
                        .cloned()
                        .collect(),
                )),
                Op::All => bool_val(
                    !items.is_empty() && items.iter().all(|el| truthy(&logic.eval(Data::Val(el)))),
                ),
                Op::Some => bool_val(items.iter().any(|el| truthy(&logic.eval(Data::Val(el))))),
                _ => bool_val(!items.iter().any(|el| truthy(&logic.eval(Data::Val(el))))),
            }
        }
        Op::Reduce => {
            let list = arg(args, 0, data);
            let mut acc = arg(args, 2, data).into_owned();
            let (Value::Array(items), Some(logic)) = (list.as_ref(), args.get(1)) else {
                return Cow::Owned(acc);
            };
            for el in items {
                let mut scope = Map::new();
                scope.insert("current".into(), el.clone());
                scope.insert("accumulator".into(), acc);
                let scope = Value::Object(scope);
                acc = logic.eval(Data::Val(&scope)).into_owned();
            }
            Cow::Owned(acc)
        }
        Op::Merge => {
            let mut out = Vec::new();
            for a in args {
                match a.eval(data).into_owned() {
                    Value::Array(items) => out.extend(items),
                    other => out.push(other),
                }
            }
            Cow::Owned(Value::Array(out))
        }
        Op::In => {
            let needle = arg(args, 0, data);
            let hay = arg(args, 1, data);
            bool_val(match hay.as_ref() {
                Value::String(s) => s.contains(js_string(&needle).as_ref()),
                Value::Array(items) => items.iter().any(|x| strict_eq(x, &needle)),
                _ => false,
            })
        }
        Op::Cat => {
            let mut s = String::new();
            for a in args {
                s.push_str(&js_string(&a.eval(data)));
            }
            Cow::Owned(Value::String(s))
        }
        Op::Substr => {
            let src = arg(args, 0, data);
            let chars: Vec<char> = js_string(&src).chars().collect();
            let len = i64::try_from(chars.len()).unwrap_or(i64::MAX);
            let start = to_number(&arg(args, 1, data));
            let start = if start.is_nan() { 0 } else { start as i64 };
            let start = if start < 0 {
                (len + start).max(0)
            } else {
                start.min(len)
            };
            let end = if args.len() >= 3 {
                let l = to_number(&arg(args, 2, data));
                let l = if l.is_nan() { 0 } else { l as i64 };
                if l < 0 {
                    (len + l).max(start)
                } else {
                    (start + l).min(len)
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
            let evaluated: Vec<Cow<'a, Value>> = args.iter().map(|a| a.eval(data)).collect();
            let keys: Vec<&Value> = match evaluated.first().map(AsRef::as_ref) {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => evaluated.iter().map(AsRef::as_ref).collect(),
            };
            Cow::Owned(Value::Array(missing_keys(data, &keys)))
        }
        Op::MissingSome => {
            let need = to_number(&arg(args, 0, data));
            let keys_v = arg(args, 1, data);
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
            let (a, o, b) = (arg(args, 0, data), arg(args, 1, data), arg(args, 2, data));
            // flagd returns false for anything that is not a valid comparison.
            let r = match (a.as_ref(), o.as_ref(), b.as_ref()) {
                (Value::String(a), Value::String(o), Value::String(b)) => semver::matches(a, o, b),
                _ => None,
            };
            bool_val(r.unwrap_or(false))
        }
        Op::StartsWith | Op::EndsWith => {
            let (a, b) = (arg(args, 0, data), arg(args, 1, data));
            match (a.as_ref(), b.as_ref()) {
                (Value::String(s), Value::String(p)) => bool_val(if op == Op::StartsWith {
                    s.starts_with(p.as_str())
                } else {
                    s.ends_with(p.as_str())
                }),
                // flagd: starts_with yields null on bad input, ends_with yields false.
                _ if op == Op::StartsWith => Cow::Owned(Value::Null),
                _ => bool_val(false),
            }
        }
        Op::Fractional => {
            let values: Vec<Cow<'a, Value>> = args.iter().map(|a| a.eval(data)).collect();
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
