//! Located YAML loading.
//!
//! Each document is parsed with the event parser behind serde-saphyr
//! (granit-parser) into a `serde_json::Value` plus a map from every field path
//! (`spec.strategy.canary.steps[3].setWeight`) to its source location, so any
//! later error — a serde type error, an unknown field, a dangling reference —
//! can be reported at file:line:column.
//!
//! Scalars resolve by the YAML 1.2 core schema with strict booleans: only
//! `true` / `false` are booleans (`yes`, `on`, `True` stay strings), quoted
//! scalars are always strings. Anchors, aliases and `<<` merge keys are
//! supported, under a node budget that defeats alias bombs.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};

/// Max nesting of collections in one document.
pub const MAX_DEPTH: usize = 128;
/// Max nodes in one document, counting alias expansions.
pub const MAX_NODES: usize = 1_000_000;

/// A source position (1-based line and column, in characters) with the byte
/// range of the item it points at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (characters).
    pub column: u32,
    /// Byte offset in the file.
    pub offset: usize,
    /// Length in bytes of the item (first line only for multi-line items).
    pub len: usize,
}

/// Where a field is: its key (for mapping entries) and its value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeLoc {
    /// The key's location, for mapping entries.
    pub key: Option<Loc>,
    /// The value's location.
    pub value: Loc,
}

/// One segment of a field path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    /// Mapping key.
    Key(String),
    /// Sequence index.
    Index(usize),
}

/// Render a path as `a.b[3].c`; keys that are not plain identifiers are
/// written `["a.b/c"]`.
pub fn format_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        push_seg(&mut out, s);
    }
    out
}

/// Append one segment to a rendered path.
pub fn push_seg(out: &mut String, seg: &Seg) {
    match seg {
        Seg::Index(i) => {
            out.push('[');
            out.push_str(&i.to_string());
            out.push(']');
        }
        Seg::Key(k) => {
            let plain = !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
            if plain {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            } else {
                out.push('[');
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(']');
            }
        }
    }
}

/// Join a rendered parent path and a key.
pub fn join_key(parent: &str, key: &str) -> String {
    let mut s = parent.to_string();
    push_seg(&mut s, &Seg::Key(key.to_string()));
    s
}

/// Join a rendered parent path and an index.
pub fn join_index(parent: &str, i: usize) -> String {
    let mut s = parent.to_string();
    push_seg(&mut s, &Seg::Index(i));
    s
}

/// Field path → location, for one document.
#[derive(Clone, Debug, Default)]
pub struct LocMap {
    map: HashMap<String, NodeLoc>,
    /// The document's own location (its first node).
    pub root: Loc,
}

impl LocMap {
    /// Exact lookup.
    pub fn get(&self, path: &str) -> Option<&NodeLoc> {
        self.map.get(path)
    }

    /// Location of the value at `path`, or of the nearest ancestor that exists.
    pub fn value(&self, path: &str) -> Loc {
        self.nearest(path).map(|n| n.value).unwrap_or(self.root)
    }

    /// Location of the key at `path` (falls back to the value / ancestor).
    pub fn key(&self, path: &str) -> Loc {
        self.nearest(path)
            .map(|n| n.key.unwrap_or(n.value))
            .unwrap_or(self.root)
    }

    fn nearest(&self, path: &str) -> Option<&NodeLoc> {
        let mut p = path;
        loop {
            if let Some(n) = self.map.get(p) {
                return Some(n);
            }
            if p.is_empty() {
                return None;
            }
            p = parent_path(p);
        }
    }

    fn insert(&mut self, path: String, loc: NodeLoc) {
        self.map.insert(path, loc);
    }
}

/// The parent of a rendered path (`a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``).
pub fn parent_path(p: &str) -> &str {
    if p.ends_with(']') {
        // Find the matching '[' outside of a quoted key.
        let bytes = p.as_bytes();
        let mut i = bytes.len() - 1;
        let mut in_str = false;
        while i > 0 {
            i -= 1;
            let c = bytes[i];
            if c == b'"' && (i == 0 || bytes[i - 1] != b'\\') {
                in_str = !in_str;
            } else if c == b'[' && !in_str {
                return &p[..i];
            }
        }
        return "";
    }
    match p.rfind(['.', ']']) {
        Some(i) if p.as_bytes()[i] == b']' => &p[..=i],
        Some(i) => &p[..i],
        None => "",
    }
}

/// A problem found while reading YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlProblem {
    /// Stable short code (`yaml-syntax`, `duplicate-key`, `yaml-limit`, ...).
    pub code: &'static str,
    /// Where.
    pub loc: Loc,
    /// Field path, if inside a document.
    pub path: String,
    /// What.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

/// One parsed document.
#[derive(Clone, Debug)]
pub struct YamlDoc {
    /// 0-based index of the document in its file.
    pub index: usize,
    /// Its content.
    pub value: Value,
    /// Its locations.
    pub locs: LocMap,
}

/// Result of parsing one file's text.
#[derive(Clone, Debug, Default)]
pub struct YamlFile {
    /// Documents that parsed (empty documents are skipped).
    pub docs: Vec<YamlDoc>,
    /// Syntax errors and other problems; a document with a syntax error is dropped.
    pub problems: Vec<YamlProblem>,
}

fn loc_of(text: &str, span: &Span) -> Loc {
    let start = span.start;
    let offset = start.byte_offset().unwrap_or(0).min(text.len());
    let end = span
        .end
        .byte_offset()
        .unwrap_or(offset)
        .clamp(offset, text.len());
    let mut len = end - offset;
    if let Some(nl) = text.get(offset..offset + len).and_then(|s| s.find('\n')) {
        len = nl;
    }
    Loc {
        line: start.line().max(1) as u32,
        column: start.col() as u32 + 1,
        offset,
        len,
    }
}

fn scan_error_loc(text: &str, e: &ScanError) -> Loc {
    let m = e.marker();
    let offset = m.byte_offset().unwrap_or(0).min(text.len());
    Loc {
        line: m.line().max(1) as u32,
        column: m.col() as u32 + 1,
        offset,
        len: 0,
    }
}

/// Resolve a plain scalar by the YAML 1.2 core schema (strict booleans).
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Some(v) = parse_int(s) {
        return v;
    }
    if is_float(s)
        && let Ok(f) = s.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    // .inf / .nan have no JSON form: kept as strings.
    Value::String(s.to_string())
}

fn parse_int(s: &str) -> Option<Value> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(h) = body.strip_prefix("0x") {
        if neg || s.starts_with('+') {
            return None;
        }
        (16, h)
    } else if let Some(o) = body.strip_prefix("0o") {
        if neg || s.starts_with('+') {
            return None;
        }
        (8, o)
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u128::from_str_radix(digits, radix).ok();
    match mag {
        Some(m) if neg => {
            if m <= i64::MAX as u128 + 1 {
                Some(Value::Number(Number::from(
                    (m as i128).wrapping_neg() as i64
                )))
            } else {
                Number::from_f64(-(m as f64)).map(Value::Number)
            }
        }
        Some(m) if m <= u64::MAX as u128 => Some(Value::Number(Number::from(m as u64))),
        _ => {
            // Too large for 64 bits: a float, as other YAML loaders do.
            let f: f64 = digits.parse().ok()?;
            Number::from_f64(if neg { -f } else { f }).map(Value::Number)
        }
    }
}

fn is_float(s: &str) -> bool {
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - fs;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return false;
        }
    }
    i == b.len()
}

fn resolve_scalar(
    text: &str,
    style: ScalarStyle,
    core_tag: Option<&str>,
    custom_tag: bool,
) -> Value {
    match core_tag {
        Some("str") => return Value::String(text.to_string()),
        Some("null") => return Value::Null,
        Some("bool") => {
            return match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text.to_string()),
            };
        }
        Some("int") => return parse_int(text).unwrap_or_else(|| Value::String(text.to_string())),
        Some("float") => {
            return text
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.to_string()));
        }
        _ => {}
    }
    if custom_tag || style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    resolve_plain(text)
}

enum Frame {
    Seq {
        items: Vec<Value>,
        path: String,
        anchor: usize,
        size: usize,
    },
    Map {
        map: Map<String, Value>,
        merged: Vec<Map<String, Value>>,
        /// The key waiting for its value: (key text, is merge key, path of its value).
        pending: Option<(String, bool, String)>,
        /// The current key is unusable (complex key): drop its value.
        skip_value: bool,
        path: String,
        anchor: usize,
        size: usize,
    },
}

struct DocBuilder<'t> {
    text: &'t str,
    index: usize,
    stack: Vec<Frame>,
    root: Option<Value>,
    locs: LocMap,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    problems: Vec<YamlProblem>,
    /// A fatal problem: abandon the document.
    failed: bool,
}

impl<'t> DocBuilder<'t> {
    fn new(text: &'t str, index: usize) -> Self {
        DocBuilder {
            text,
            index,
            stack: Vec::new(),
            root: None,
            locs: LocMap::default(),
            anchors: HashMap::new(),
            nodes: 0,
            problems: Vec::new(),
            failed: false,
        }
    }

    fn fatal(&mut self, code: &'static str, loc: Loc, path: String, message: String, hint: &str) {
        self.problems.push(YamlProblem {
            code,
            loc,
            path,
            message,
            hint: hint.to_string(),
        });
        self.failed = true;
    }

    /// Path of the node about to start, and whether it is a mapping key.
    fn next_path(&self) -> (String, bool) {
        match self.stack.last() {
            None => (String::new(), false),
            Some(Frame::Seq { items, path, .. }) => (join_index(path, items.len()), false),
            Some(Frame::Map { pending, path, .. }) => match pending {
                Some((_, _, p)) => (p.clone(), false),
                None => (path.clone(), true),
            },
        }
    }

    fn record(&mut self, loc: Loc) {
        let (path, is_key) = self.next_path();
        if is_key || self.stack.is_empty() && self.root.is_some() {
            return;
        }
        if self.stack.is_empty() {
            self.locs.root = loc;
        }
        let key = match self.stack.last() {
            Some(Frame::Map { .. }) => self.locs.get(&path).and_then(|n| n.key),
            _ => None,
        };
        self.locs.insert(path, NodeLoc { key, value: loc });
    }

    fn count(&mut self, n: usize, loc: Loc) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            let path = self.next_path().0;
            self.fatal(
                "yaml-limit",
                loc,
                path,
                format!("document expands to more than {MAX_NODES} nodes (alias bomb?)"),
                "reduce the use of anchors and aliases",
            );
            return false;
        }
        true
    }

    /// Deliver a finished node to its parent.
    fn emit(&mut self, value: Value, size: usize, anchor: usize, loc: Loc) {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        let text = self.text;
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, size: s, .. }) => {
                items.push(value);
                *s += size;
            }
            Some(Frame::Map {
                map,
                merged,
                pending,
                skip_value,
                path,
                size: s,
                ..
            }) => {
                *s += size;
                match pending.take() {
                    None => {
                        // This node is a key.
                        let key = match value {
                            Value::String(k) => Some(k),
                            Value::Null => Some(String::new()),
                            Value::Bool(b) => Some(b.to_string()),
                            Value::Number(n) => Some(n.to_string()),
                            _ => None,
                        };
                        match key {
                            Some(k) => {
                                let is_merge = k == "<<";
                                let vpath = join_key(path, &k);
                                let dup = map.contains_key(&k) && !is_merge;
                                *pending = Some((k.clone(), is_merge, vpath.clone()));
                                *skip_value = false;
                                if dup {
                                    self.problems.push(YamlProblem {
                                        code: "duplicate-key",
                                        loc,
                                        path: vpath.clone(),
                                        message: format!("duplicate key `{k}` in mapping"),
                                        hint: "remove one of the entries; the last one wins".into(),
                                    });
                                }
                                self.locs.insert(
                                    vpath,
                                    NodeLoc {
                                        key: Some(loc),
                                        value: loc,
                                    },
                                );
                            }
                            None => {
                                let p = path.clone();
                                *pending = Some((String::new(), false, p.clone()));
                                *skip_value = true;
                                self.problems.push(YamlProblem {
                                    code: "yaml-complex-key",
                                    loc,
                                    path: p,
                                    message: if text.get(loc.offset..).is_some_and(|t| t.starts_with("{{")) {
                                        "`{{...}}` is read by YAML as a nested flow mapping, not as text".into()
                                    } else {
                                        "mapping keys must be scalars".into()
                                    },
                                    hint: if text.get(loc.offset..).is_some_and(|t| t.starts_with("{{")) {
                                        "quote the template, e.g. \"{{args.name}}\"".into()
                                    } else {
                                        "use a plain string key".into()
                                    },
                                });
                            }
                        }
                    }
                    Some((k, is_merge, _)) => {
                        if *skip_value {
                            *skip_value = false;
                        } else if is_merge {
                            match value {
                                Value::Object(m) => merged.push(m),
                                Value::Array(a) if a.iter().all(Value::is_object) => {
                                    for v in a {
                                        if let Value::Object(m) = v {
                                            merged.push(m);
                                        }
                                    }
                                }
                                other => {
                                    map.insert(k, other);
                                }
                            }
                        } else {
                            map.insert(k, value);
                        }
                    }
                }
            }
        }
    }

    fn on_event(&mut self, ev: Event<'_>, span: &Span) {
        if self.failed {
            return;
        }
        let loc = loc_of(self.text, span);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.count(1, loc) {
                    return;
                }
                self.record(loc);
                let (core, custom) = match &tag {
                    Some(t) => (
                        t.core_suffix().map(str::to_string),
                        t.core_suffix().is_none(),
                    ),
                    None => (None, false),
                };
                let v = resolve_scalar(&text, style, core.as_deref(), custom);
                self.emit(v, 1, anchor, loc);
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                let is_seq = matches!(ev, Event::SequenceStart(..));
                if self.stack.len() >= MAX_DEPTH {
                    let path = self.next_path().0;
                    self.fatal(
                        "yaml-limit",
                        loc,
                        path,
                        format!("collections nested deeper than {MAX_DEPTH} levels"),
                        "flatten the document",
                    );
                    return;
                }
                if !self.count(1, loc) {
                    return;
                }
                self.record(loc);
                let (path, _) = self.next_path();
                self.stack.push(if is_seq {
                    Frame::Seq {
                        items: Vec::new(),
                        path,
                        anchor,
                        size: 1,
                    }
                } else {
                    Frame::Map {
                        map: Map::new(),
                        merged: Vec::new(),
                        pending: None,
                        skip_value: false,
                        path,
                        anchor,
                        size: 1,
                    }
                });
                // Remember where the collection starts for its own path.
                let _ = loc;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let (value, size, anchor, path) = match frame {
                    Frame::Seq {
                        items,
                        path,
                        anchor,
                        size,
                    } => (Value::Array(items), size, anchor, path),
                    Frame::Map {
                        mut map,
                        merged,
                        path,
                        anchor,
                        size,
                        ..
                    } => {
                        for m in merged {
                            for (k, v) in m {
                                map.entry(k).or_insert(v);
                            }
                        }
                        (Value::Object(map), size, anchor, path)
                    }
                };
                let start = self.locs.get(&path).map(|n| n.value).unwrap_or(loc);
                self.emit(value, size, anchor, start);
            }
            Event::Alias(id) => {
                self.record(loc);
                match self.anchors.get(&id).cloned() {
                    Some((v, size)) => {
                        if !self.count(size, loc) {
                            return;
                        }
                        self.emit(v, size, 0, loc);
                    }
                    None => {
                        let path = self.next_path().0;
                        self.fatal(
                            "yaml-syntax",
                            loc,
                            path,
                            "alias refers to an unknown anchor".into(),
                            "define the anchor (&name) before using it (*name)",
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// Parse every document of `text`. Never panics; syntax errors are located
/// problems, and parsing resumes at the next `---` after one.
pub fn parse_documents(text: &str) -> YamlFile {
    let mut out = YamlFile::default();
    let mut parser = Parser::new_from_str(text);
    let mut doc_index = 0usize;
    let mut builder: Option<DocBuilder> = None;
    // Bound the number of recoveries so pathological input cannot loop for long.
    let mut recoveries = 0usize;
    loop {
        let next = parser.next_event();
        match next {
            None => break,
            Some(Ok((ev, span))) => match ev {
                Event::StreamEnd => break,
                Event::DocumentStart(..) => {
                    builder = Some(DocBuilder::new(text, doc_index));
                }
                Event::DocumentEnd => {
                    if let Some(b) = builder.take() {
                        finish_doc(b, &mut out);
                    }
                    doc_index += 1;
                }
                ev => {
                    let b = builder.get_or_insert_with(|| DocBuilder::new(text, doc_index));
                    b.on_event(ev, &span);
                    if b.failed {
                        // Abandon the rest of this document.
                        if let Some(b) = builder.take() {
                            out.problems.extend(b.problems);
                        }
                        doc_index += 1;
                        recoveries += 1;
                        if recoveries > 10_000 {
                            break;
                        }
                        match parser.proceed_next_document() {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(e) => {
                                push_scan_error(text, &e, &mut out);
                                break;
                            }
                        }
                    }
                }
            },
            Some(Err(e)) => {
                push_scan_error(text, &e, &mut out);
                if let Some(b) = builder.take() {
                    out.problems.extend(b.problems);
                }
                doc_index += 1;
                recoveries += 1;
                if recoveries > 10_000 {
                    break;
                }
                match parser.proceed_next_document() {
                    Ok(true) => continue,
                    _ => break,
                }
            }
        }
    }
    if let Some(b) = builder.take() {
        finish_doc(b, &mut out);
    }
    out
}

fn push_scan_error(text: &str, e: &ScanError, out: &mut YamlFile) {
    let info = e.info();
    out.problems.push(YamlProblem {
        code: "yaml-syntax",
        loc: scan_error_loc(text, e),
        path: String::new(),
        message: if info.is_empty() {
            "YAML syntax error".into()
        } else {
            format!("YAML syntax error: {info}")
        },
        hint: "check indentation, quoting and `:` / `-` placement around this point".into(),
    });
}

fn finish_doc(b: DocBuilder, out: &mut YamlFile) {
    out.problems.extend(b.problems);
    if b.failed {
        return;
    }
    match b.root {
        None | Some(Value::Null) => {}
        Some(value) => out.docs.push(YamlDoc {
            index: b.index,
            value,
            locs: b.locs,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_schema_strict_booleans() {
        assert_eq!(resolve_plain("true"), json!(true));
        assert_eq!(resolve_plain("yes"), json!("yes"));
        assert_eq!(resolve_plain("on"), json!("on"));
        assert_eq!(resolve_plain("True"), json!("True"));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("12"), json!(12));
        assert_eq!(resolve_plain("-12"), json!(-12));
        assert_eq!(resolve_plain("0x1F"), json!(31));
        assert_eq!(resolve_plain("0o17"), json!(15));
        assert_eq!(resolve_plain("1.5"), json!(1.5));
        assert_eq!(resolve_plain("1e3"), json!(1000.0));
        assert_eq!(resolve_plain("25%"), json!("25%"));
        assert_eq!(resolve_plain("300s"), json!("300s"));
        assert_eq!(resolve_plain(".inf"), json!(".inf"));
        assert_eq!(resolve_plain("1.2.3"), json!("1.2.3"));
    }

    #[test]
    fn paths_and_locations() {
        let src = "a:\n  b:\n    - x: 1\n    - y: \"2\"\n'c.d': ok\n";
        let f = parse_documents(src);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let d = &f.docs[0];
        assert_eq!(
            d.value,
            json!({"a": {"b": [{"x": 1}, {"y": "2"}]}, "c.d": "ok"})
        );
        let l = d.locs.get("a.b[1].y").unwrap();
        assert_eq!((l.value.line, l.value.column), (4, 10));
        assert_eq!(l.key.map(|k| (k.line, k.column)), Some((4, 7)));
        let l = d.locs.get("[\"c.d\"]").unwrap();
        assert_eq!((l.value.line, l.value.column), (5, 8));
        // Nearest ancestor for a path that does not exist.
        assert_eq!(d.locs.value("a.b[0].zzz").line, 3);
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), "a.b");
        assert_eq!(parent_path("a.b[2].c"), "a.b[2]");
        assert_eq!(parent_path("a"), "");
        assert_eq!(parent_path("a[\"x.y]\"]"), "a");
        assert_eq!(parent_path("a[\"x\"].b"), "a[\"x\"]");
    }

    #[test]
    fn multi_document_and_syntax_recovery() {
        let src = "a: 1\n---\nb: [1, 2\n---\nc: 3\n";
        let f = parse_documents(src);
        assert_eq!(f.docs.len(), 2);
        assert_eq!(f.docs[0].value, json!({"a": 1}));
        assert_eq!(f.docs[1].value, json!({"c": 3}));
        assert_eq!(f.docs[1].index, 2);
        assert_eq!(f.problems.len(), 1);
        assert_eq!(f.problems[0].code, "yaml-syntax");
    }

    #[test]
    fn anchors_merge_and_duplicates() {
        let src = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\nd2: *b\ne: 1\ne: 2\n";
        let f = parse_documents(src);
        let d = &f.docs[0];
        assert_eq!(d.value["d"], json!({"x": 1, "y": 3}));
        assert_eq!(d.value["d2"], json!({"x": 1, "y": 2}));
        assert_eq!(d.value["e"], json!(2));
        assert_eq!(f.problems.len(), 1);
        assert_eq!(f.problems[0].code, "duplicate-key");
        assert_eq!(f.problems[0].loc.line, 7);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let f = parse_documents(&src);
        assert!(f.docs.is_empty());
        assert_eq!(f.problems[0].code, "yaml-limit");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = "[".repeat(10_000);
        let f = parse_documents(&src);
        assert!(f.docs.is_empty());
        assert!(!f.problems.is_empty());
    }

    /// Our scalar resolution agrees with serde-saphyr's (strict booleans) on
    /// ordinary manifests.
    #[test]
    fn agrees_with_serde_saphyr() {
        let src = "a: 1\nb: \"1\"\nc: true\nd: 25%\ne: 1.5\nf: null\ng: [x, 2]\nh: {i: 300s}\n";
        let ours = &parse_documents(src).docs[0].value;
        let opts = serde_saphyr::options! { strict_booleans: true };
        let theirs: Value = serde_saphyr::from_str_with_options(src, opts).unwrap();
        assert_eq!(ours, &theirs);
    }
}
