//! flagd's gRPC services over Serin's flags, so OpenFeature's flagd providers work unchanged:
//!
//! - `flagd.evaluation.v1.Service` (providers in RPC mode): `ResolveBoolean` / `String` /
//!   `Int` / `Float` / `Object` / `All`, and `EventStream` (`provider_ready`, then a
//!   `configuration_change` naming the changed flags after every change, `keep_alive` every
//!   [`KEEP_ALIVE`]).
//! - `flagd.sync.v1.FlagSyncService` (providers in in-process mode): `SyncFlags` (the whole
//!   flag configuration now and after every change), `FetchAllFlags`, and the deprecated
//!   `GetMetadata`.
//!
//! Both read through a [`Backend`] (the flag server implements it): which environment a
//! caller may read (its API key in `authorization: Bearer …` / `x-api-key` metadata, and the
//! selector), that environment's compiled flags and definitions, and change notices.
//!
//! The message and service code in `generated/` was produced once from the vendored
//! `proto/` files (flagd-schemas, Apache-2.0; see `proto/NOTICE`) with `protox` and
//! `tonic-prost-build` — checked in so that building needs neither `protoc` nor a build
//! script (regenerate with the same tools if the protos change).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use serin_flags::{ErrorCode, Evaluation, EvaluationContext, FlagSet, Reason};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt as _;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    pub mod evaluation {
        include!("generated/flagd.evaluation.v1.rs");
    }
    pub mod evaluation_v2 {
        include!("generated/flagd.evaluation.v2.rs");
    }
    pub mod sync {
        include!("generated/flagd.sync.v1.rs");
    }
}

/// `flagd.evaluation.v1` messages, client and server.
pub use generated::evaluation;
/// `flagd.evaluation.v2` messages, client and server (what current flagd providers call).
pub use generated::evaluation_v2;
/// `flagd.sync.v1` messages, client and server.
pub use generated::sync;

use evaluation::service_server::{Service as EvalService, ServiceServer};
use sync::flag_sync_service_server::{FlagSyncService, FlagSyncServiceServer};

/// gRPC path prefix of the evaluation service.
pub const EVALUATION_PATH: &str = "/flagd.evaluation.v1.Service/{*rest}";
/// gRPC path prefix of the evaluation service, v2.
pub const EVALUATION_V2_PATH: &str = "/flagd.evaluation.v2.Service/{*rest}";
/// gRPC path prefix of the sync service.
pub const SYNC_PATH: &str = "/flagd.sync.v1.FlagSyncService/{*rest}";
/// How often an idle `EventStream` gets a `keep_alive` message (flagd sends them too).
pub const KEEP_ALIVE: Duration = Duration::from_secs(20);
/// The metadata key flagd providers send their selector in.
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// A parsed flagd selector (the `flagd-selector` metadata, or the deprecated `selector`
/// request field of sync). flagd's syntax: one `key=value`, or a bare string that names a
/// source (its older form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// No selector: everything the caller may read.
    All,
    /// `source=<name>` or `file:<path>`: the flags that come from that source.
    Source(String),
    /// `flagSetId=<id>`: the flags whose metadata `flagSetId` is this.
    FlagSetId(String),
    /// `environment=<name>` (Serin's own key): one environment.
    Environment(String),
    /// A bare string (flagd's older form): a source, or else (Serin) an environment; the
    /// backend decides which, and refuses it when it names neither.
    Bare(String),
}

/// The gRPC status for a selector nobody can serve: `INVALID_ARGUMENT`, its message
/// starting with `INVALID_SELECTOR:` so callers can tell it from a bad flag key.
pub fn invalid_selector(message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("INVALID_SELECTOR: {message}"))
}

/// `file:` prefixes are dropped: flagd names file sources by their `--uri`, which may carry it.
fn source_name(s: &str) -> String {
    s.strip_prefix("file:").unwrap_or(s).to_owned()
}

impl Selector {
    /// Parses flagd's selector syntax. Unknown keys are refused (`INVALID_SELECTOR`) rather
    /// than ignored: a typo must not hand out every flag.
    pub fn parse(s: &str) -> Result<Selector, Status> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Selector::All);
        }
        if let Some(path) = s.strip_prefix("file:") {
            return Ok(Selector::Source(path.to_owned()));
        }
        let Some((key, value)) = s.split_once('=') else {
            return Ok(Selector::Bare(s.to_owned()));
        };
        let value = value.trim();
        match key.trim() {
            "source" if !value.is_empty() => Ok(Selector::Source(source_name(value))),
            "flagSetId" => Ok(Selector::FlagSetId(value.to_owned())),
            "environment" if !value.is_empty() => Ok(Selector::Environment(value.to_owned())),
            "source" | "environment" => Err(invalid_selector(format!(
                "selector {s:?} has an empty value"
            ))),
            other => Err(invalid_selector(format!(
                "unknown selector key {other:?} in {s:?}: use source=<file>, flagSetId=<id> \
                 or environment=<name> (one key=value)"
            ))),
        }
    }
}

/// Which flags of which environment a caller reads: what [`Backend::scope`] decides from its
/// key and selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The environment.
    pub environment: String,
    /// Only these flags of it.
    pub filter: Filter,
}

/// A narrowing of an environment's flags by a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Every flag.
    All,
    /// The flags whose winning definition comes from one of these sources (indices the
    /// backend understands).
    Sources(Vec<usize>),
    /// The flags whose metadata (flag-set metadata merged under the flag's) has this
    /// `flagSetId`; the empty string selects the flags without one, as in flagd.
    FlagSetId(String),
}

/// Whether `flag` of `flags` is in a flag-set filter (source filters are the backend's).
pub fn in_flag_set(flags: &FlagSet, key: &str, id: &str) -> bool {
    flags
        .flag(key)
        .is_some_and(|f| match f.metadata().get("flagSetId") {
            Some(Value::String(s)) => s == id,
            None => id.is_empty(),
            Some(_) => false,
        })
}

/// What the gRPC services read. Implemented by the flag server over its snapshots.
pub trait Backend: Send + Sync + 'static {
    /// What the caller may read, from its metadata (API key) and selector (empty: the key's
    /// environment, or the default one, whole). Refusals are gRPC statuses
    /// (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `INVALID_ARGUMENT` `INVALID_SELECTOR`).
    fn scope(&self, metadata: &MetadataMap, selector: &Selector) -> Result<Scope, Status>;
    /// Runs `f` on the environment's compiled flags and a test of whether a key is in the
    /// scope's filter.
    fn with_flags<R>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&FlagSet, &dyn Fn(&str) -> bool) -> R,
    ) -> R;
    /// The environment's version and the definitions (flagd format, `$ref`s inlined) in the
    /// scope, by key.
    fn definitions(&self, scope: &Scope) -> (String, BTreeMap<String, Value>);
    /// A change notice.
    type Change: Clone + Send + 'static;
    /// Change notices, as flags change.
    fn changes(&self) -> broadcast::Receiver<Self::Change>;
    /// The environment a change notice is about.
    fn environment_of(change: &Self::Change) -> &str;
    /// Turns true when the server stops (streams end).
    fn stopping(&self) -> tokio::sync::watch::Receiver<bool>;
}

/// Both services over one backend, ready to mount on an axum router with
/// [`EVALUATION_PATH`] and [`SYNC_PATH`] (or to serve as [`tonic::service::Routes`]).
pub fn routes<B: Backend>(backend: Arc<B>) -> tonic::service::Routes {
    tonic::service::Routes::new(ServiceServer::from_arc(Arc::new(EvaluationV1 {
        backend: Arc::clone(&backend),
    })))
    .add_service(evaluation_v2::service_server::ServiceServer::from_arc(
        Arc::new(EvaluationV2 {
            backend: Arc::clone(&backend),
        }),
    ))
    .add_service(FlagSyncServiceServer::from_arc(Arc::new(SyncV1 {
        backend,
    })))
}

/// Resolves once the server is stopping (or gone).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The caller's selector: the `flagd-selector` metadata, else the request field (sync's
/// deprecated `selector`), parsed.
fn selector_of(metadata: &MetadataMap, from_body: &str) -> Result<Selector, Status> {
    match metadata.get(SELECTOR_HEADER) {
        Some(v) => Selector::parse(
            v.to_str()
                .map_err(|_| invalid_selector("the flagd-selector metadata is not ASCII text"))?,
        ),
        None => Selector::parse(from_body),
    }
}

/// The caller's scope from its metadata and the request's selector field.
fn scope_of<B: Backend>(
    backend: &B,
    metadata: &MetadataMap,
    from_body: &str,
) -> Result<Scope, Status> {
    backend.scope(metadata, &selector_of(metadata, from_body)?)
}

// ---- protobuf Struct <-> JSON ----

/// A protobuf `Value` as JSON.
pub fn to_json(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        // Whole numbers become JSON integers so `1` in a context compares as `1`, not `1.0`.
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(to_json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
    }
}

/// A protobuf `Struct` as a JSON object.
pub fn struct_to_json(s: &prost_types::Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), to_json(v)))
        .collect()
}

/// JSON as a protobuf `Value`.
pub fn from_json(v: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(from_json).collect(),
        }),
        Value::Object(m) => Kind::StructValue(struct_from_json(m)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a protobuf `Struct`.
pub fn struct_from_json(m: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: m.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
    }
}

fn context_of(s: Option<&prost_types::Struct>) -> EvaluationContext {
    EvaluationContext::from_map(s.map(struct_to_json).unwrap_or_default())
}

// ---- evaluation ----

struct EvaluationV1<B> {
    backend: Arc<B>,
}

/// flagd's gRPC status for an evaluation error (`flag_evaluator.go` `errFormat`).
fn status_of(e: &Evaluation<'_>) -> Status {
    let code = e.error_code.unwrap_or(ErrorCode::General);
    let message = format!(
        "{}: {}",
        code.as_str(),
        e.error_message.as_deref().unwrap_or("")
    );
    match code {
        ErrorCode::FlagNotFound => Status::not_found(message),
        ErrorCode::TypeMismatch => Status::invalid_argument(message),
        ErrorCode::ParseError => Status::data_loss(message),
        ErrorCode::InvalidContext | ErrorCode::TargetingKeyMissing => {
            Status::invalid_argument(message)
        }
        ErrorCode::General => Status::unknown(message),
    }
}

fn type_mismatch(key: &str, want: &str) -> Status {
    Status::invalid_argument(format!("TYPE_MISMATCH: flag {key:?} is not {want}"))
}

/// What a typed resolve answers: value and variant (none for a disabled flag or one without
/// a default variant), reason, metadata.
struct Resolved<T> {
    value: Option<T>,
    reason: String,
    variant: Option<String>,
    metadata: Option<prost_types::Struct>,
}

impl<T: Default> Resolved<T> {
    /// v1 has no "absent": the zero value and an empty variant, which providers read as
    /// "use the caller's default" together with reason DEFAULT or DISABLED.
    fn v1(self) -> (T, String) {
        (
            self.value.unwrap_or_default(),
            self.variant.unwrap_or_default(),
        )
    }
}

fn resolve<B: Backend, T>(
    backend: &B,
    metadata: &MetadataMap,
    key: &str,
    context: Option<&prost_types::Struct>,
    want: &str,
    extract: impl FnOnce(&Value) -> Option<T>,
) -> Result<Resolved<T>, Status> {
    let scope = scope_of(backend, metadata, "")?;
    let ctx = context_of(context);
    backend.with_flags(&scope, |flags, selected| {
        if !selected(key) {
            // flagd: a flag outside the selection is not found.
            return Err(Status::not_found(format!(
                "FLAG_NOT_FOUND: flag {key:?} is not in the selected flags"
            )));
        }
        let e = flags.evaluate(key, &ctx, serin_clock::now_secs());
        if e.error_code.is_some() {
            return Err(status_of(&e));
        }
        let value = match e.value {
            None => None,
            Some(v) => Some(extract(v).ok_or_else(|| type_mismatch(key, want))?),
        };
        Ok(Resolved {
            value,
            reason: e.reason.as_str().to_owned(),
            variant: e.variant.map(str::to_owned),
            metadata: e.flag_metadata.map(struct_from_json),
        })
    })
}

fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        let f = v.as_f64()?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

type EventStream = Pin<
    Box<dyn tokio_stream::Stream<Item = Result<evaluation::EventStreamResponse, Status>> + Send>,
>;
type SyncStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<sync::SyncFlagsResponse, Status>> + Send>>;

/// The flags that differ between two definition maps, as flagd's change notification:
/// `{"flags": {"<key>": {"type": "write" | "update" | "delete"}}}`.
pub fn changed_flags(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Map<String, Value> {
    let mut flags = Map::new();
    for (k, v) in after {
        let kind = match before.get(k) {
            None => "write",
            Some(old) if old != v => "update",
            Some(_) => continue,
        };
        flags.insert(k.clone(), serde_json::json!({ "type": kind }));
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        flags.insert(k.clone(), serde_json::json!({ "type": "delete" }));
    }
    flags
}

#[tonic::async_trait]
impl<B: Backend> EvalService for EvaluationV1<B> {
    async fn resolve_all(
        &self,
        request: Request<evaluation::ResolveAllRequest>,
    ) -> Result<Response<evaluation::ResolveAllResponse>, Status> {
        use evaluation::any_flag::Value as V;
        let scope = scope_of(&*self.backend, request.metadata(), "")?;
        let ctx = context_of(request.get_ref().context.as_ref());
        let now = serin_clock::now_secs();
        let flags = self.backend.with_flags(&scope, |flags, selected| {
            let mut out = std::collections::HashMap::new();
            for key in flags.keys().filter(|k| selected(k)) {
                let e = flags.evaluate(key, &ctx, now);
                // flagd leaves out flags that fail to evaluate.
                if e.error_code.is_some() {
                    continue;
                }
                let value = e.value.and_then(|v| match v {
                    Value::Bool(b) => Some(V::BoolValue(*b)),
                    Value::String(s) => Some(V::StringValue(s.clone())),
                    Value::Number(n) => n.as_f64().map(V::DoubleValue),
                    Value::Object(m) => Some(V::ObjectValue(struct_from_json(m))),
                    _ => None,
                });
                // flagd v1 sends a disabled flag as its reason alone.
                let disabled = e.reason == Reason::Disabled;
                out.insert(
                    key.to_owned(),
                    evaluation::AnyFlag {
                        reason: e.reason.as_str().to_owned(),
                        variant: e.variant.unwrap_or_default().to_owned(),
                        value,
                        metadata: if disabled {
                            None
                        } else {
                            e.flag_metadata.map(struct_from_json)
                        },
                    },
                );
            }
            out
        });
        let mut metadata = Map::new();
        metadata.insert("environment".into(), Value::String(scope.environment));
        Ok(Response::new(evaluation::ResolveAllResponse {
            flags,
            metadata: Some(struct_from_json(&metadata)),
        }))
    }

    async fn resolve_boolean(
        &self,
        request: Request<evaluation::ResolveBooleanRequest>,
    ) -> Result<Response<evaluation::ResolveBooleanResponse>, Status> {
        let r = request.get_ref();
        let d = resolve(
            &*self.backend,
            request.metadata(),
            &r.flag_key,
            r.context.as_ref(),
            "a boolean",
            Value::as_bool,
        )?;
        let (reason, metadata) = (d.reason.clone(), d.metadata.clone());
        let (value, variant) = d.v1();
        Ok(Response::new(evaluation::ResolveBooleanResponse {
            value,
            reason,
            variant,
            metadata,
        }))
    }

    async fn resolve_string(
        &self,
        request: Request<evaluation::ResolveStringRequest>,
    ) -> Result<Response<evaluation::ResolveStringResponse>, Status> {
        let r = request.get_ref();
        let d = resolve(
            &*self.backend,
            request.metadata(),
            &r.flag_key,
            r.context.as_ref(),
            "a string",
            |v| v.as_str().map(str::to_owned),
        )?;
        let (reason, metadata) = (d.reason.clone(), d.metadata.clone());
        let (value, variant) = d.v1();
        Ok(Response::new(evaluation::ResolveStringResponse {
            value,
            reason,
            variant,
            metadata,
        }))
    }

    async fn resolve_float(
        &self,
        request: Request<evaluation::ResolveFloatRequest>,
    ) -> Result<Response<evaluation::ResolveFloatResponse>, Status> {
        let r = request.get_ref();
        let d = resolve(
            &*self.backend,
            request.metadata(),
            &r.flag_key,
            r.context.as_ref(),
            "a number",
            Value::as_f64,
        )?;
        let (reason, metadata) = (d.reason.clone(), d.metadata.clone());
        let (value, variant) = d.v1();
        Ok(Response::new(evaluation::ResolveFloatResponse {
            value,
            reason,
            variant,
            metadata,
        }))
    }

    async fn resolve_int(
        &self,
        request: Request<evaluation::ResolveIntRequest>,
    ) -> Result<Response<evaluation::ResolveIntResponse>, Status> {
        let r = request.get_ref();
        let d = resolve(
            &*self.backend,
            request.metadata(),
            &r.flag_key,
            r.context.as_ref(),
            "an integer",
            as_int,
        )?;
        let (reason, metadata) = (d.reason.clone(), d.metadata.clone());
        let (value, variant) = d.v1();
        Ok(Response::new(evaluation::ResolveIntResponse {
            value,
            reason,
            variant,
            metadata,
        }))
    }

    async fn resolve_object(
        &self,
        request: Request<evaluation::ResolveObjectRequest>,
    ) -> Result<Response<evaluation::ResolveObjectResponse>, Status> {
        let r = request.get_ref();
        let d = resolve(
            &*self.backend,
            request.metadata(),
            &r.flag_key,
            r.context.as_ref(),
            "an object",
            |v| v.as_object().map(|m| Some(struct_from_json(m))),
        )?;
        let (reason, metadata) = (d.reason.clone(), d.metadata.clone());
        let (value, variant) = d.v1();
        Ok(Response::new(evaluation::ResolveObjectResponse {
            // No value at all for disabled flags (providers then use their default).
            value,
            reason,
            variant,
            metadata,
        }))
    }

    type EventStreamStream = EventStream;

    async fn event_stream(
        &self,
        request: Request<evaluation::EventStreamRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let rx = events(&self.backend, request.metadata())?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|(kind, data)| {
                Ok(evaluation::EventStreamResponse {
                    r#type: kind.to_owned(),
                    data,
                })
            }),
        )))
    }
}

/// The event stream both evaluation versions send: `provider_ready` first, then a
/// `configuration_change` naming the flags that changed, and a `keep_alive` when idle.
fn events<B: Backend>(
    backend: &Arc<B>,
    metadata: &MetadataMap,
) -> Result<mpsc::Receiver<(&'static str, Option<prost_types::Struct>)>, Status> {
    let scope = scope_of(&**backend, metadata, "")?;
    // Subscribed before `provider_ready` is sent: no change after it is missed.
    let mut changes = backend.changes();
    let mut stopping = backend.stopping();
    let backend = Arc::clone(backend);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let (_, mut defs) = backend.definitions(&scope);
        if tx.send(("provider_ready", None)).await.is_err() {
            return;
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        loop {
            let message = tokio::select! {
                () = stopped(&mut stopping) => return,
                _ = keep_alive.tick() => ("keep_alive", None),
                changed = changes.recv() => match changed {
                    Ok(e) if B::environment_of(&e) != scope.environment => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Only the selected flags: a change elsewhere sends nothing.
                        let (_, now) = backend.definitions(&scope);
                        let flags = changed_flags(&defs, &now);
                        defs = now;
                        if flags.is_empty() {
                            continue;
                        }
                        let mut data = Map::new();
                        data.insert("flags".into(), Value::Object(flags));
                        ("configuration_change", Some(struct_from_json(&data)))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

// ---- evaluation v2 ----

struct EvaluationV2<B> {
    backend: Arc<B>,
}

type EventStreamV2 = Pin<
    Box<dyn tokio_stream::Stream<Item = Result<evaluation_v2::EventStreamResponse, Status>> + Send>,
>;

/// v2's typed resolves: like v1, but "no value" is absent rather than a zero value.
macro_rules! resolve_v2 {
    ($self:ident, $request:ident, $resp:ident, $want:expr, $extract:expr) => {{
        let r = $request.get_ref();
        let d = resolve(
            &*$self.backend,
            $request.metadata(),
            &r.flag_key,
            r.context.as_ref(),
            $want,
            $extract,
        )?;
        Ok(Response::new(evaluation_v2::$resp {
            value: d.value,
            reason: d.reason,
            variant: d.variant,
            metadata: d.metadata,
        }))
    }};
}

#[tonic::async_trait]
impl<B: Backend> evaluation_v2::service_server::Service for EvaluationV2<B> {
    async fn resolve_boolean(
        &self,
        request: Request<evaluation_v2::ResolveBooleanRequest>,
    ) -> Result<Response<evaluation_v2::ResolveBooleanResponse>, Status> {
        resolve_v2!(
            self,
            request,
            ResolveBooleanResponse,
            "a boolean",
            Value::as_bool
        )
    }

    async fn resolve_string(
        &self,
        request: Request<evaluation_v2::ResolveStringRequest>,
    ) -> Result<Response<evaluation_v2::ResolveStringResponse>, Status> {
        resolve_v2!(
            self,
            request,
            ResolveStringResponse,
            "a string",
            |v: &Value| v.as_str().map(str::to_owned)
        )
    }

    async fn resolve_float(
        &self,
        request: Request<evaluation_v2::ResolveFloatRequest>,
    ) -> Result<Response<evaluation_v2::ResolveFloatResponse>, Status> {
        resolve_v2!(
            self,
            request,
            ResolveFloatResponse,
            "a number",
            Value::as_f64
        )
    }

    async fn resolve_int(
        &self,
        request: Request<evaluation_v2::ResolveIntRequest>,
    ) -> Result<Response<evaluation_v2::ResolveIntResponse>, Status> {
        resolve_v2!(self, request, ResolveIntResponse, "an integer", as_int)
    }

    async fn resolve_object(
        &self,
        request: Request<evaluation_v2::ResolveObjectRequest>,
    ) -> Result<Response<evaluation_v2::ResolveObjectResponse>, Status> {
        resolve_v2!(
            self,
            request,
            ResolveObjectResponse,
            "an object",
            |v: &Value| v.as_object().map(struct_from_json)
        )
    }

    type EventStreamStream = EventStreamV2;

    async fn event_stream(
        &self,
        request: Request<evaluation_v2::EventStreamRequest>,
    ) -> Result<Response<EventStreamV2>, Status> {
        let rx = events(&self.backend, request.metadata())?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|(kind, data)| {
                Ok(evaluation_v2::EventStreamResponse {
                    r#type: kind.to_owned(),
                    data,
                })
            }),
        )))
    }
}

// ---- sync ----

struct SyncV1<B> {
    backend: Arc<B>,
}

/// The flagd document of an environment's definitions.
fn configuration(defs: &BTreeMap<String, Value>) -> String {
    serde_json::json!({ "flags": defs }).to_string()
}

#[tonic::async_trait]
impl<B: Backend> FlagSyncService for SyncV1<B> {
    type SyncFlagsStream = SyncStream;

    async fn sync_flags(
        &self,
        request: Request<sync::SyncFlagsRequest>,
    ) -> Result<Response<SyncStream>, Status> {
        #[allow(deprecated)]
        let scope = scope_of(
            &*self.backend,
            request.metadata(),
            &request.get_ref().selector,
        )?;
        let mut changes = self.backend.changes();
        let mut stopping = self.backend.stopping();
        let backend = Arc::clone(&self.backend);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let (_, mut defs) = backend.definitions(&scope);
            let first = sync::SyncFlagsResponse {
                flag_configuration: configuration(&defs),
                sync_context: None,
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    () = stopped(&mut stopping) => return,
                    changed = changes.recv() => match changed {
                        Ok(e) if B::environment_of(&e) != scope.environment => continue,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Sent when the selected flags changed, not on every version.
                            let (_, now) = backend.definitions(&scope);
                            if now == defs {
                                continue;
                            }
                            defs = now;
                            let msg = sync::SyncFlagsResponse {
                                flag_configuration: configuration(&defs),
                                sync_context: None,
                            };
                            if tx.send(Ok(msg)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<sync::FetchAllFlagsRequest>,
    ) -> Result<Response<sync::FetchAllFlagsResponse>, Status> {
        #[allow(deprecated)]
        let scope = scope_of(
            &*self.backend,
            request.metadata(),
            &request.get_ref().selector,
        )?;
        let (_, defs) = self.backend.definitions(&scope);
        Ok(Response::new(sync::FetchAllFlagsResponse {
            flag_configuration: configuration(&defs),
        }))
    }

    #[allow(deprecated)]
    async fn get_metadata(
        &self,
        request: Request<sync::GetMetadataRequest>,
    ) -> Result<Response<sync::GetMetadataResponse>, Status> {
        let scope = scope_of(&*self.backend, request.metadata(), "")?;
        let mut m = Map::new();
        m.insert("environment".into(), Value::String(scope.environment));
        Ok(Response::new(sync::GetMetadataResponse {
            metadata: Some(struct_from_json(&m)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_flags_names_writes_updates_and_deletes_only() {
        let before: BTreeMap<String, Value> = [
            ("same".to_owned(), json!({"state": "ENABLED"})),
            ("edited".to_owned(), json!({"state": "ENABLED"})),
            ("gone".to_owned(), json!({"state": "ENABLED"})),
        ]
        .into();
        let after: BTreeMap<String, Value> = [
            ("same".to_owned(), json!({"state": "ENABLED"})),
            ("edited".to_owned(), json!({"state": "DISABLED"})),
            ("new".to_owned(), json!({"state": "ENABLED"})),
        ]
        .into();
        assert_eq!(
            Value::Object(changed_flags(&before, &after)),
            json!({"edited": {"type": "update"}, "new": {"type": "write"}, "gone": {"type": "delete"}})
        );
    }

    #[test]
    fn selectors_parse_as_flagd_writes_them() {
        let ok = |s: &str| Selector::parse(s).expect(s);
        assert_eq!(ok(""), Selector::All);
        assert_eq!(ok("source=a.json"), Selector::Source("a.json".into()));
        assert_eq!(ok("source=file:a.json"), Selector::Source("a.json".into()));
        assert_eq!(ok("file:dir/a.json"), Selector::Source("dir/a.json".into()));
        assert_eq!(ok("a.json"), Selector::Bare("a.json".into()));
        assert_eq!(ok("flagSetId=p-42"), Selector::FlagSetId("p-42".into()));
        assert_eq!(ok("flagSetId="), Selector::FlagSetId(String::new()));
        assert_eq!(ok("environment=prod"), Selector::Environment("prod".into()));
        for bad in ["sauce=a.json", "source=", "=x"] {
            let e = Selector::parse(bad).expect_err(bad);
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(
                e.message().starts_with("INVALID_SELECTOR: "),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn struct_round_trips_and_whole_numbers_stay_integers() {
        let v = json!({"n": 3, "f": 1.5, "s": "x", "b": true, "z": null, "a": [1, {"k": "v"}]});
        let Value::Object(m) = &v else {
            unreachable!("an object literal")
        };
        assert_eq!(Value::Object(struct_to_json(&struct_from_json(m))), v);
    }
}
