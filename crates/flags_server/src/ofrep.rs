//! OFREP v0.3: single-flag and bulk evaluation, and the SSE change stream advertised in the
//! bulk response's `eventStreams`.
//!
//! Choices where the spec leaves room (documented in the README):
//! - `context` is optional and `targetingKey` in it too, as in flagd (many clients send no
//!   key; `fractional` without one resolves to the default variant). A `context` that is not
//!   an object, or a body that is not JSON, is 400 `INVALID_CONTEXT`.
//! - Reasons are flagd's: `DEFAULT` when targeting fell back to the default variant, and a
//!   disabled flag is a success (HTTP 200) with reason `DISABLED` and no value or variant
//!   (flagd since open-feature/flagd#1966). `metadata` is always sent, `{}` when empty.
//! - The bulk ETag covers the flag-configuration version, the environment, the selector and
//!   the context, so a client that changes its context never gets a wrong 304.
//! - flagd's `Flagd-Selector` request header narrows evaluation as the gRPC services'
//!   `flagd-selector` metadata does (same syntax and meaning, see `grpc.rs`): a flag outside
//!   the selection is `FLAG_NOT_FOUND`; a selector that cannot be served is 400 with flagd's
//!   error code for it, `GENERAL`, and details starting `invalid selector:`.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serin_flags::{ErrorCode, Evaluation, EvaluationContext, Reason};
use serin_flags_grpc::{Filter, SELECTOR_HEADER, Selector};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::keys::KeyKind;
use crate::state::{ChangeEvent, Shared};
use crate::{ApiError, json_response};

/// Path of the SSE change stream.
pub const EVENTS_PATH: &str = "/ofrep/v1/events";

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success {
        key: &'a str,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        variant: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a Value>,
        metadata: &'a Map<String, Value>,
    },
    Failure {
        key: &'a str,
        #[serde(rename = "errorCode")]
        error_code: &'static str,
        #[serde(rename = "errorDetails", skip_serializing_if = "Option::is_none")]
        error_details: Option<&'a str>,
        metadata: &'a Map<String, Value>,
    },
}

fn reason(r: Reason) -> &'static str {
    match r {
        Reason::Static => "STATIC",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Disabled => "DISABLED",
        Reason::Default => "DEFAULT",
        Reason::Error => "ERROR",
    }
}

/// The metadata of a flag that does not exist.
static NO_METADATA: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn item<'a>(key: &'a str, e: &'a Evaluation<'a>) -> Item<'a> {
    let metadata = e.flag_metadata.unwrap_or(&NO_METADATA);
    match e.error_code {
        None => Item::Success {
            key,
            reason: reason(e.reason),
            variant: e.value.and(e.variant),
            value: e.value,
            metadata,
        },
        Some(code) => Item::Failure {
            key,
            error_code: match code {
                ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
                ErrorCode::ParseError => "PARSE_ERROR",
                ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
                ErrorCode::InvalidContext => "INVALID_CONTEXT",
                ErrorCode::TypeMismatch | ErrorCode::General => "GENERAL",
            },
            error_details: e.error_message.as_deref(),
            metadata,
        },
    }
}

fn invalid_context(details: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "INVALID_CONTEXT", details)
}

/// Parses `{"context": {"targetingKey": "…", …}}`; `context` and `targetingKey` are optional.
fn parse_context(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let not_json =
        |e: serde_json::Error| invalid_context(format!("request body is not valid JSON: {e}"));
    let not_object = || invalid_context("request body must be an object with a \"context\" object");
    // Why not `Value`: a body is an object with one member, and parsing it as a `Value` built
    // an outer map only to take `context` out of it again. `Root` parses the same JSON with
    // the same errors, keeping `context` and parsing (then dropping) any other member.
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let context = if first == Some(&b'{') {
        // Validating UTF-8 once lets serde_json skip it for every string; on invalid UTF-8
        // the slice parser reports where, as before.
        let root = match std::str::from_utf8(body) {
            Ok(text) => serde_json::from_str::<Root>(text),
            Err(_) => serde_json::from_slice::<Root>(body),
        };
        root.map_err(not_json)?.context
    } else {
        // Not an object: parsed as before, so invalid JSON is still reported as such.
        serde_json::from_slice::<Value>(body).map_err(not_json)?;
        return Err(not_object());
    };
    match context {
        Some(Value::Object(m)) => Ok(m),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(_) => Err(invalid_context("\"context\" must be an object")),
    }
}

/// A request body's top-level object: its `context` member (the last one, as a `Value` map
/// keeps), other members parsed as `Value`s (so they are validated as before) and dropped.
struct Root {
    context: Option<Value>,
}

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RootVisitor)
    }
}

struct RootVisitor;

impl<'de> Visitor<'de> for RootVisitor {
    type Value = Root;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root, A::Error> {
        let mut context = None;
        while let Some(is_context) = map.next_key_seed(IsContext)? {
            let value: Value = map.next_value()?;
            if is_context {
                context = Some(value);
            }
        }
        Ok(Root { context })
    }
}

/// A member name, compared with `context` without allocating it.
struct IsContext;

impl<'de> DeserializeSeed<'de> for IsContext {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for IsContext {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "context")
    }
}

/// The environment a caller may evaluate in, checking the key's kind.
fn evaluation_env<'s>(
    shared: &'s Shared,
    headers: &HeaderMap,
    bulk: bool,
) -> Result<&'s str, ApiError> {
    match shared.authenticate(headers)? {
        None => Ok(&shared.default_environment),
        Some(k) => match k.kind {
            KeyKind::Server => Ok(&k.environment),
            KeyKind::Client if bulk => Ok(&k.environment),
            KeyKind::Client => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "client keys may only use bulk evaluation (POST /ofrep/v1/evaluate/flags)",
            )),
            KeyKind::Admin => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "admin tokens are for the management API; evaluate with a server or client key",
            )),
        },
    }
}

/// A selector refusal (a gRPC status from the shared selector code) as an OFREP answer:
/// flagd answers an unusable selector with 400 and error code `GENERAL`.
fn selector_refused(status: &Status) -> ApiError {
    let message = status.message();
    match status.code() {
        Code::PermissionDenied => ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message),
        Code::Unauthenticated => ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "GENERAL",
            format!(
                "invalid selector: {}",
                message
                    .strip_prefix("INVALID_SELECTOR: ")
                    .unwrap_or(message)
            ),
        ),
    }
}

/// The request's `Flagd-Selector` header, if it sent one (an empty one selects everything,
/// as in flagd).
fn selector_text(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get(SELECTOR_HEADER) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "GENERAL",
                "invalid selector: the Flagd-Selector header is not ASCII text",
            )
        }),
    }
}

/// The environment and flags an OFREP request reads: `env` (what its key allows) whole, or
/// what its `Flagd-Selector` header selects within what the key allows. Without a header
/// nothing is allocated (the single-flag route is the hot one).
fn selection<'s>(
    shared: &Shared,
    headers: &HeaderMap,
    env: &'s str,
) -> Result<(Cow<'s, str>, Filter), ApiError> {
    let Some(text) = selector_text(headers)? else {
        return Ok((Cow::Borrowed(env), Filter::All));
    };
    let selector = Selector::parse(text).map_err(|s| selector_refused(&s))?;
    let keyed = !shared.keys.is_empty();
    // As on gRPC: with keys, a key reads its own environment only; without (loopback only),
    // any well-formed one.
    let environment = |wanted: Option<&str>| -> Result<String, Status> {
        match wanted {
            None => Ok(env.to_owned()),
            Some(w) if w == env => Ok(w.to_owned()),
            Some(w) if keyed => Err(Status::permission_denied(format!(
                "this key reads environment {env:?}, not {w:?}"
            ))),
            Some(w) if crate::keys::valid_environment(w) => Ok(w.to_owned()),
            Some(w) => Err(serin_flags_grpc::invalid_selector(format!(
                "environment {w:?} must be 1-64 of [A-Za-z0-9_.-]"
            ))),
        }
    };
    let scope = crate::grpc::scope_for(shared, &selector, &environment)
        .map_err(|s| selector_refused(&s))?;
    Ok((Cow::Owned(scope.environment), scope.filter))
}

/// What a flag outside the caller's selection evaluates to: not found, as in flagd.
fn not_selected(key: &str) -> Evaluation<'static> {
    Evaluation {
        value: None,
        variant: None,
        reason: Reason::Error,
        error_code: Some(ErrorCode::FlagNotFound),
        error_message: Some(format!("flag {key:?} not found in the selected flags")),
        flag_metadata: None,
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}` through the axum router (`FlagServer::router`,
/// mounted by `serin up`). `FlagServer::bind` answers this route before the router (see
/// `ofrep_fast_path.rs`); both go through [`evaluate_one_json`].
pub(crate) async fn evaluate_one(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match evaluate_one_json(&shared, &key, &headers, &body) {
        Ok((status, bytes)) => crate::json_bytes_response(status, bytes),
        Err(e) => e.into_response(),
    }
}

/// Why [`evaluate_one_json`] has no evaluation to send; rare, so answered the ordinary way.
pub(crate) enum EvalFailure {
    /// Auth or request error.
    Api(ApiError),
    /// The answer did not serialize.
    Json(serde_json::Error),
}

impl IntoResponse for EvalFailure {
    fn into_response(self) -> Response {
        match self {
            EvalFailure::Api(e) => e.into_response(),
            EvalFailure::Json(e) => crate::serialization_failed(&e),
        }
    }
}

/// Evaluates one flag for an OFREP request: the status and JSON body of the answer.
pub(crate) fn evaluate_one_json(
    shared: &Shared,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Vec<u8>), EvalFailure> {
    let env = evaluation_env(shared, headers, false).map_err(EvalFailure::Api)?;
    let (env, filter) =
        selection(shared, headers, env).map_err(|e| EvalFailure::Api(e.with_key(key)))?;
    let ctx = match parse_context(body) {
        Ok(c) => EvaluationContext::from_map(c),
        Err(e) => return Err(EvalFailure::Api(e.with_key(key))),
    };
    let snap = shared.snapshot(&env);
    let e = if crate::grpc::in_scope(&snap, &filter, key) {
        snap.flags.evaluate(key, &ctx, serin_clock::now_secs())
    } else {
        not_selected(key)
    };
    let status = match e.error_code {
        None => StatusCode::OK,
        Some(ErrorCode::FlagNotFound) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
    };
    serde_json::to_vec(&item(key, &e))
        .map(|bytes| (status, bytes))
        .map_err(EvalFailure::Json)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    metadata: Map<String, Value>,
    event_streams: [Value; 1],
}

fn etag(version: &str, env: &str, selector: &str, context: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    h.update(version.as_bytes());
    h.update([0]);
    h.update(env.as_bytes());
    h.update([0]);
    h.update(selector.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(context).unwrap_or_default());
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

pub(crate) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// `POST /ofrep/v1/evaluate/flags`
pub(crate) async fn evaluate_bulk(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let env = match evaluation_env(&shared, &headers, true) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let (env, filter) = match selection(&shared, &headers, env) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let raw = match parse_context(&body) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let snap = shared.snapshot(&env);
    // `selection` has read the header already; it is text.
    let selector = selector_text(&headers).ok().flatten().unwrap_or_default();
    let tag = etag(&snap.version, &env, selector, &raw);
    let ctx = EvaluationContext::from_map(raw);
    let tag_header = HeaderValue::from_str(&tag).ok();
    if if_none_match(&headers, &tag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Some(t) = tag_header {
            r.headers_mut().insert(header::ETAG, t);
        }
        return r;
    }
    let now = serin_clock::now_secs();
    let mut keys: Vec<&str> = snap
        .flags
        .keys()
        .filter(|k| crate::grpc::in_scope(&snap, &filter, k))
        .collect();
    keys.sort_unstable();
    let evals: Vec<(&str, Evaluation<'_>)> = keys
        .iter()
        .map(|k| (*k, snap.flags.evaluate(k, &ctx, now)))
        .collect();
    let mut metadata = Map::new();
    metadata.insert("environment".into(), Value::String(env.into_owned()));
    metadata.insert("version".into(), Value::String(snap.version.clone()));
    let body = Bulk {
        flags: evals.iter().map(|(k, e)| item(k, e)).collect(),
        metadata,
        event_streams: [serde_json::json!({
            "type": "sse",
            "endpoint": { "requestUri": EVENTS_PATH },
            "inactivityDelaySec": 120
        })],
    };
    let mut r = json_response(StatusCode::OK, &body);
    if let Some(t) = tag_header {
        r.headers_mut().insert(header::ETAG, t);
    }
    r
}

fn sse_event(ev: Option<&ChangeEvent>) -> Event {
    let data = match ev {
        Some(ev) => serde_json::json!({
            "type": "refetchEvaluation",
            "etag": ev.version,
            "lastModified": ev.last_modified,
        }),
        None => serde_json::json!({ "type": "refetchEvaluation" }),
    };
    let e = Event::default().event("message").data(data.to_string());
    match ev {
        Some(ev) => e.id(ev.version.clone()),
        None => e,
    }
}

/// `GET /ofrep/v1/events`: one `refetchEvaluation` message per change of the caller's
/// environment (a `Flagd-Selector` header may name it). Server and client keys.
pub(crate) async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let env = match evaluation_env(&shared, &headers, true)
        .and_then(|env| selection(&shared, &headers, env))
    {
        Ok((e, _)) => e.into_owned(),
        Err(e) => return e.into_response(),
    };
    // Subscribed before the response headers go out: a client that has seen them misses
    // no change.
    let rx = shared.events.subscribe();
    let shutdown = shared.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (rx, shutdown, env),
        |(mut rx, mut shutdown, env)| async move {
            loop {
                if *shutdown.borrow() {
                    return None;
                }
                tokio::select! {
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            return None;
                        }
                    }
                    r = rx.recv() => match r {
                        Ok(ev) if ev.environment == env => {
                            return Some((Ok::<_, Infallible>(sse_event(Some(&ev))), (rx, shutdown, env)));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            return Some((Ok(sse_event(None)), (rx, shutdown, env)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_handles_lists_weak_tags_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&h, "\"b\""));
        assert!(if_none_match(&h, "\"a\""));
        assert!(!if_none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"c\""));
    }

    /// What `parse_context` does, the slow way: parse a `Value`, then take `context` out.
    fn parse_context_via_value(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| invalid_context(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(mut root) = v else {
            return Err(invalid_context(
                "request body must be an object with a \"context\" object",
            ));
        };
        match root.remove("context") {
            Some(Value::Object(m)) => Ok(m),
            None | Some(Value::Null) => Ok(Map::new()),
            Some(_) => Err(invalid_context("\"context\" must be an object")),
        }
    }

    #[test]
    fn parse_context_answers_as_parsing_a_value_did() {
        let bodies: &[&[u8]] = &[
            br#"{"context":{"targetingKey":"u","country":"DE","n":1.5,"tags":["a"],"o":{"x":null}}}"#,
            b" \r\n\t{\"context\": {\"targetingKey\": \"u\"}} \n",
            br#"{"other":[1,{"a":2}],"context":{"targetingKey":"u"},"more":true}"#,
            br#"{"context":{"targetingKey":"a"},"context":{"targetingKey":"b"}}"#,
            br#"{"cont\u0065xt":{"targetingKey":"escaped name"}}"#,
            br#"{"context":{"targetingKey":"\u00e9\ud83d\ude00"}}"#,
            "{\"context\":{\"targetingKey\":\"caf\u{e9}\"}}".as_bytes(),
            b"{\"context\":{\"targetingKey\":\"\xff\"}}",
            b"{\"x\":\"\xff\",\"context\":{\"targetingKey\":\"u\"}}",
            br#"{"x":"\u12","context":{"targetingKey":"u"}}"#,
            br#"{"x":1e999,"context":{"targetingKey":"u"}}"#,
            br#"{"context":{"targetingKey":"u"}} trailing"#,
            br#"{"context":{"targetingKey":"u"},}"#,
            br#"{1:2}"#,
            br#"{"context"}"#,
            b"{",
            b"",
            b"   ",
            b"\x0c{}",
            b"[]",
            b"[1,",
            b"\"context\"",
            b"null",
            b"3",
            b"{}",
            br#"{"context":3}"#,
            br#"{"context":null}"#,
            br#"{"context":{}}"#,
            br#"{"context":{"targetingKey":7}}"#,
        ];
        for body in bodies {
            let shown = String::from_utf8_lossy(body);
            match (parse_context(body), parse_context_via_value(body)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{shown}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.status, b.status, "{shown}");
                    assert_eq!(a.code, b.code, "{shown}");
                    assert_eq!(a.details, b.details, "{shown}");
                }
                (a, b) => panic!("{shown}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn etag_depends_on_version_environment_and_context() {
        let mut c = Map::new();
        c.insert("targetingKey".into(), Value::from("u1"));
        let a = etag("1", "prod", "", &c);
        assert_ne!(a, etag("2", "prod", "", &c));
        assert_ne!(a, etag("1", "staging", "", &c));
        assert_ne!(a, etag("1", "prod", "flagSetId=x", &c));
        c.insert("targetingKey".into(), Value::from("u2"));
        assert_ne!(a, etag("1", "prod", "", &c));
    }
}
