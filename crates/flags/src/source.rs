//! Reading flag files: JSON (serde_json) or YAML (serde-saphyr, YAML 1.2 booleans only) into a
//! `serde_json::Value`, plus an index from JSON-pointer paths to `line:column`, so that semantic
//! validation errors found later on the value can point back into the file.

use std::collections::HashMap;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

use crate::error::{FlagsError, Location};

/// The format of a flag-definition document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON, as flagd reads it.
    Json,
    /// YAML 1.2 (only `true`/`false` are booleans: `yes`/`no`/`on`/`off` stay strings).
    Yaml,
}

/// A parsed document and where each of its values starts.
pub(crate) struct Located {
    pub value: Value,
    locations: HashMap<String, Location>,
}

impl Located {
    /// Location of the value at `pointer` (a JSON pointer such as `/flags/my-flag/state`),
    /// falling back to its nearest located ancestor.
    pub fn locate(&self, pointer: &str) -> Option<Location> {
        let mut p = pointer;
        loop {
            if let Some(l) = self.locations.get(p) {
                return Some(*l);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub(crate) fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

pub(crate) fn parse(src: &str, format: Format) -> Result<Located, FlagsError> {
    match format {
        Format::Json => parse_json(src),
        Format::Yaml => parse_yaml(src),
    }
}

fn parse_json(src: &str) -> Result<Located, FlagsError> {
    let value: Value = serde_json::from_str(src).map_err(|e| FlagsError::Syntax {
        location: Some(Location {
            line: e.line(),
            column: e.column(),
        }),
        message: e.to_string(),
    })?;
    let mut locations = HashMap::new();
    let mut scanner = JsonScanner {
        bytes: src.as_bytes(),
        pos: 0,
        line: 1,
        col: 1,
    };
    // The text is valid JSON (serde_json accepted it), so the scanner only has to follow it.
    scanner.value(String::new(), &mut locations);
    Ok(Located { value, locations })
}

/// A minimal walker over already-validated JSON text that records where each value starts.
struct JsonScanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

impl JsonScanner<'_> {
    fn bump(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            // Count characters, not UTF-8 continuation bytes.
            self.col += 1;
        }
        Some(b)
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }
    fn string(&mut self) -> String {
        // Assumes the opening quote is next.
        let start = self.pos + 1;
        self.bump();
        while let Some(b) = self.bump() {
            match b {
                b'\\' => {
                    self.bump();
                }
                b'"' => break,
                _ => {}
            }
        }
        let raw = &self.bytes[start..self.pos.saturating_sub(1).max(start)];
        // Decode escapes through serde_json; the slice is a valid JSON string body.
        let quoted = format!("\"{}\"", String::from_utf8_lossy(raw));
        serde_json::from_str(&quoted).unwrap_or_default()
    }
    fn value(&mut self, path: String, out: &mut HashMap<String, Location>) {
        self.ws();
        out.insert(
            path.clone(),
            Location {
                line: self.line,
                column: self.col,
            },
        );
        match self.peek() {
            Some(b'{') => {
                self.bump();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'}') => {
                            self.bump();
                            return;
                        }
                        Some(b',') => {
                            self.bump();
                        }
                        Some(b'"') => {
                            let key = self.string();
                            self.ws();
                            self.bump(); // ':'
                            let child = format!("{path}/{}", escape_segment(&key));
                            self.value(child, out);
                        }
                        _ => return,
                    }
                }
            }
            Some(b'[') => {
                self.bump();
                let mut i = 0usize;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') => {
                            self.bump();
                            return;
                        }
                        Some(b',') => {
                            self.bump();
                        }
                        Some(_) => {
                            self.value(format!("{path}/{i}"), out);
                            i += 1;
                        }
                        None => return,
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            _ => {
                while matches!(self.peek(), Some(b) if !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                {
                    self.bump();
                }
            }
        }
    }
}

/// A YAML node with the location serde-saphyr reports for it.
struct YNode(Spanned<YValue>);

enum YValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<YNode>),
    Map(Vec<(String, YNode)>),
}

impl<'de> Deserialize<'de> for YNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Spanned::<YValue>::deserialize(d).map(YNode)
    }
}

impl<'de> Deserialize<'de> for YValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = YValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<YValue, E> {
                Ok(YValue::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<YValue, E> {
                Ok(YValue::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<YValue, D2::Error> {
                YValue::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<YValue, E> {
                Ok(YValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<YValue, E> {
                Ok(YValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<YValue, E> {
                Ok(YValue::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<YValue, E> {
                Ok(YValue::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<YValue, E> {
                Ok(YValue::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<YValue, E> {
                Ok(YValue::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<YValue, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element::<YNode>()? {
                    items.push(n);
                }
                Ok(YValue::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<YValue, A::Error> {
                let mut items = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, YNode>()? {
                    items.push((k, v));
                }
                Ok(YValue::Map(items))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_yaml(src: &str) -> Result<Located, FlagsError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let node: YNode =
        serde_saphyr::from_str_with_options(src, options).map_err(|e| FlagsError::Syntax {
            location: e.location().map(|l| Location {
                line: usize::try_from(l.line()).unwrap_or(usize::MAX),
                column: usize::try_from(l.column()).unwrap_or(usize::MAX),
            }),
            message: e.to_string(),
        })?;
    let mut locations = HashMap::new();
    let value = convert(node, String::new(), &mut locations)?;
    Ok(Located { value, locations })
}

fn convert(
    node: YNode,
    path: String,
    out: &mut HashMap<String, Location>,
) -> Result<Value, FlagsError> {
    let loc = Location {
        line: usize::try_from(node.0.referenced.line()).unwrap_or(usize::MAX),
        column: usize::try_from(node.0.referenced.column()).unwrap_or(usize::MAX),
    };
    out.insert(path.clone(), loc);
    Ok(match node.0.value {
        YValue::Null => Value::Null,
        YValue::Bool(b) => Value::Bool(b),
        YValue::Int(i) => Value::Number(i.into()),
        YValue::UInt(u) => Value::Number(u.into()),
        YValue::Float(f) => match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => {
                return Err(FlagsError::Invalid {
                    pointer: path,
                    location: Some(loc),
                    message: "NaN and infinity are not valid JSON numbers".into(),
                });
            }
        },
        YValue::Str(s) => Value::String(s),
        YValue::Seq(items) => {
            let mut v = Vec::with_capacity(items.len());
            for (i, n) in items.into_iter().enumerate() {
                v.push(convert(n, format!("{path}/{i}"), out)?);
            }
            Value::Array(v)
        }
        YValue::Map(items) => {
            let mut m = Map::new();
            for (k, n) in items {
                let child = format!("{path}/{}", escape_segment(&k));
                let v = convert(n, child, out)?;
                m.insert(k, v);
            }
            Value::Object(m)
        }
    })
}
