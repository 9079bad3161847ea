//! Rust SDK for Serin's flag server: evaluates flags **in-process** against a cached flagd
//! flag set, kept current by the server's Server-Sent-Events change stream.
//!
//! - [`Client::builder`] fetches the definitions (`GET /sdk/v1/flags`, server key), opens
//!   the change stream (`GET /ofrep/v1/events`), and refetches (conditionally, by ETag)
//!   whenever an event announces a new version. A lost stream is reopened with exponential
//!   backoff and jitter.
//! - The last good set is kept in memory (and, with [`ClientBuilder::cache_file`], on disk,
//!   so a restarted process can start while the server is down). While the server is
//!   unreachable, answers come from it and [`Client::status`] says [`Status::Stale`].
//! - With no set at all (server never reached, no cache), every evaluation returns the code
//!   default with reason `ERROR` and error code [`ErrorCode::ProviderNotReady`], as
//!   OpenFeature prescribes for a provider that is not ready.
//! - Plain `http://` only (no TLS): run it next to the server or behind a local proxy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), serin_flags_sdk::BuildError> {
//! use serin_flags_sdk::{Client, EvaluationContext};
//! let flags = Client::builder("http://127.0.0.1:8016")
//!     .sdk_key("srv-prod-…")
//!     .environment("production")
//!     .cache_file("/var/cache/myapp/flags.json")
//!     .build()
//!     .await?;
//! let ctx = EvaluationContext::with_targeting_key("user-42")
//!     .with("user_id", "user-42")
//!     .with("country", "DE")
//!     .with("plan", "pro");
//! if flags.is_enabled("new-payment-processor", &ctx) { /* v2 */ }
//! let pct = flags.int_value("rollout-percentage", &ctx, 0);
//! # let _ = pct; Ok(()) }
//! ```

mod http;
mod sync;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use serin_flags::{FlagSet, Format, Strictness};

pub use serin_flags::{EvaluationContext, Reason, TARGETING_KEY};

use crate::http::{Fetched, Http};

/// Why the client could not be built. Only configuration problems and a server that
/// rejects the key fail the build; an unreachable server does not (the client starts
/// Stale or NotReady and keeps trying).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base URL is not `http://host[:port][/prefix]`.
    #[error("invalid base URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server refused the key (401 / 403): retrying cannot help.
    #[error("the flag server rejected the SDK key ({status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        detail: String,
    },
    /// The key belongs to another environment than the one configured.
    #[error("the SDK key belongs to environment {actual:?}, not {expected:?}")]
    EnvironmentMismatch {
        /// Configured with [`ClientBuilder::environment`].
        expected: String,
        /// What the server says.
        actual: String,
    },
}

/// Why a synchronisation with the server failed (logged; the last good set stays).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Connection refused, reset, timed out.
    #[error("flag server unreachable: {0}")]
    Unreachable(String),
    /// 401 / 403.
    #[error("flag server rejected the key ({status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        detail: String,
    },
    /// Any other unexpected status.
    #[error("flag server answered {status}: {detail}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        detail: String,
    },
    /// The answer was not what the protocol promises.
    #[error("flag server protocol error: {0}")]
    Protocol(String),
    /// A request could not be built.
    #[error("HTTP: {0}")]
    Http(String),
    /// See [`BuildError::EnvironmentMismatch`].
    #[error("the SDK key belongs to environment {actual:?}, not {expected:?}")]
    EnvironmentMismatch {
        /// Configured.
        expected: String,
        /// Reported by the server.
        actual: String,
    },
}

/// The client's state, after OpenFeature's provider states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Definitions fetched and the change stream is open: answers are current.
    Ready,
    /// The server is unreachable; answers come from the last known set (from memory or the
    /// cache file).
    Stale,
    /// No set at all: every evaluation returns the code default with
    /// [`ErrorCode::ProviderNotReady`].
    NotReady,
}

/// OpenFeature's error codes, including the SDK-level `PROVIDER_NOT_READY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No flag set yet (server never reached, no cache file).
    ProviderNotReady,
    /// No flag with that key.
    FlagNotFound,
    /// The flag's configuration is broken.
    ParseError,
    /// The flag's value is not of the requested type.
    TypeMismatch,
    /// A targeting key was needed but not given.
    TargetingKeyMissing,
    /// The context is malformed.
    InvalidContext,
    /// Anything else.
    General,
}

impl ErrorCode {
    /// The OpenFeature spelling (`PROVIDER_NOT_READY`, `FLAG_NOT_FOUND`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProviderNotReady => "PROVIDER_NOT_READY",
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl From<serin_flags::ErrorCode> for ErrorCode {
    fn from(c: serin_flags::ErrorCode) -> Self {
        use serin_flags::ErrorCode as E;
        match c {
            E::FlagNotFound => ErrorCode::FlagNotFound,
            E::ParseError => ErrorCode::ParseError,
            E::TypeMismatch => ErrorCode::TypeMismatch,
            E::TargetingKeyMissing => ErrorCode::TargetingKeyMissing,
            E::InvalidContext => ErrorCode::InvalidContext,
            E::General => ErrorCode::General,
        }
    }
}

/// A typed evaluation with OpenFeature's details. `value` is always usable: it is the code
/// default whenever the flag gives no value of the requested type.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationDetails<T> {
    /// The flag's key.
    pub flag_key: String,
    /// The value to use.
    pub value: T,
    /// The variant's key, when the value came from a variant.
    pub variant: Option<String>,
    /// Why (`STATIC`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `DEFAULT`, `ERROR`).
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Error`].
    pub error_code: Option<ErrorCode>,
    /// A human-readable detail for errors.
    pub error_message: Option<String>,
    /// The flag's metadata (empty when the flag does not exist).
    pub flag_metadata: Map<String, Value>,
    /// The flag-configuration version the answer came from (`None` when not ready).
    pub flag_set_version: Option<String>,
}

/// One installed flag set.
struct Snapshot {
    flags: FlagSet,
    version: String,
    environment: Option<String>,
}

/// State shared by the client handles and the background task.
pub(crate) struct Shared {
    http: Http,
    current: RwLock<Option<Arc<Snapshot>>>,
    status: tokio::sync::watch::Sender<Status>,
    environment: Option<String>,
    cache_file: Option<PathBuf>,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Shared {
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn version(&self) -> Option<String> {
        self.snapshot().map(|s| s.version.clone())
    }

    pub(crate) fn set_status(&self, s: Status) {
        self.status.send_if_modified(|cur| {
            let changed = *cur != s;
            if changed {
                tracing::info!(from = ?*cur, to = ?s, "flag client status");
            }
            *cur = s;
            changed
        });
    }

    /// The server is unreachable: Stale with a set, NotReady without.
    pub(crate) fn mark_unreachable(&self) {
        let s = if self.snapshot().is_some() {
            Status::Stale
        } else {
            Status::NotReady
        };
        self.set_status(s);
    }

    fn install(&self, snap: Snapshot) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Some(Arc::new(snap));
    }

    /// Fetches the definitions unless the server says the cached version is current;
    /// installs and caches a new set.
    pub(crate) async fn refresh(&self) -> Result<(), SyncError> {
        let known = self.version();
        let (version, environment, body) = match self.http.fetch(known.as_deref()).await? {
            Fetched::NotModified => return Ok(()),
            Fetched::New {
                version,
                environment,
                body,
            } => (version, environment, body),
        };
        if let (Some(expected), Some(actual)) = (&self.environment, &environment)
            && expected != actual
        {
            return Err(SyncError::EnvironmentMismatch {
                expected: expected.clone(),
                actual: actual.clone(),
            });
        }
        let text = std::str::from_utf8(&body)
            .map_err(|e| SyncError::Protocol(format!("definitions are not UTF-8: {e}")))?;
        // The server validated every flag strictly when it was written.
        let flags = FlagSet::from_str_with(text, Format::Json, Strictness::Lenient)
            .map_err(|e| SyncError::Protocol(format!("definitions do not load: {e}")))?;
        tracing::debug!(%version, "flag definitions installed");
        if let Some(path) = &self.cache_file {
            write_cache(path, &version, environment.as_deref(), text).await;
        }
        self.install(Snapshot {
            flags,
            version,
            environment,
        });
        Ok(())
    }
}

/// Writes the cache atomically (temporary file, then rename); failures are logged only.
async fn write_cache(path: &std::path::Path, version: &str, env: Option<&str>, doc: &str) {
    let doc: Value = match serde_json::from_str(doc) {
        Ok(v) => v,
        Err(_) => return,
    };
    let cache = serde_json::json!({
        "version": version,
        "environment": env,
        "document": doc,
    });
    let tmp = path.with_extension("tmp");
    let r = async {
        tokio::fs::write(&tmp, cache.to_string()).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the flag cache file");
    }
}

/// Reads a cache file; `None` (logged) when missing, unreadable or for another environment.
fn read_cache(path: &std::path::Path, expected_env: Option<&str>) -> Option<Snapshot> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the flag cache file");
            return None;
        }
    };
    let parsed = (|| {
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let version = v
            .get("version")
            .and_then(Value::as_str)
            .ok_or("no version")?
            .to_owned();
        let environment = v
            .get("environment")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let doc = v.get("document").ok_or("no document")?.to_string();
        let flags = FlagSet::from_str_with(&doc, Format::Json, Strictness::Lenient)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(Snapshot {
            flags,
            version,
            environment,
        })
    })();
    match parsed {
        Ok(s) => {
            if let (Some(want), Some(have)) = (expected_env, s.environment.as_deref())
                && want != have
            {
                tracing::warn!(path = %path.display(), cached = have, configured = want, "flag cache file is for another environment; ignored");
                return None;
            }
            Some(s)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "flag cache file is corrupt; ignored");
            None
        }
    }
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    sdk_key: Option<String>,
    environment: Option<String>,
    cache_file: Option<PathBuf>,
    connect_timeout: Duration,
    request_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl ClientBuilder {
    /// The server key (`Authorization: Bearer …`). Without one, the server must run in open
    /// mode (no keys configured).
    pub fn sdk_key(mut self, key: impl Into<String>) -> Self {
        self.sdk_key = Some(key.into());
        self
    }

    /// The environment the key must belong to: a key of another environment fails the
    /// build, and a cache file of another environment is ignored.
    pub fn environment(mut self, env: impl Into<String>) -> Self {
        self.environment = Some(env.into());
        self
    }

    /// Keeps the last good definitions in this file (written atomically on every change),
    /// and starts from it when the server is unreachable at startup.
    pub fn cache_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cache_file = Some(path.into());
        self
    }

    /// TCP connect timeout (default 2 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Timeout of a definitions fetch, and of opening the stream (default 5 s).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Reconnection backoff: starts at `min`, doubles up to `max` (defaults 100 ms, 10 s),
    /// ±25 % jitter.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    /// Loads the cache file if any, fetches the definitions once (an unreachable server is
    /// not an error), and starts the background synchronisation.
    pub async fn build(self) -> Result<Client, BuildError> {
        let base = validate_url(&self.base_url)?;
        let http = Http::new(
            base,
            self.sdk_key,
            self.connect_timeout,
            self.request_timeout,
        );
        let (status, _) = tokio::sync::watch::channel(Status::NotReady);
        let shared = Arc::new(Shared {
            http,
            current: RwLock::new(None),
            status,
            environment: self.environment,
            cache_file: self.cache_file,
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
        });
        if let Some(path) = &shared.cache_file
            && let Some(snap) = read_cache(path, shared.environment.as_deref())
        {
            tracing::info!(path = %path.display(), version = %snap.version, "flag set loaded from the cache file");
            shared.install(snap);
        }
        match shared.refresh().await {
            Ok(()) => shared.set_status(Status::Ready),
            Err(SyncError::Rejected { status, detail }) => {
                return Err(BuildError::Rejected { status, detail });
            }
            Err(SyncError::EnvironmentMismatch { expected, actual }) => {
                return Err(BuildError::EnvironmentMismatch { expected, actual });
            }
            Err(e) => {
                tracing::warn!(error = %e, "flag server unreachable at startup; retrying in the background");
                shared.mark_unreachable();
            }
        }
        let task = tokio::spawn(sync::run(Arc::clone(&shared)));
        Ok(Client {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }
}

fn validate_url(url: &str) -> Result<String, BuildError> {
    let bad = |reason: &str| BuildError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim_end_matches('/');
    let uri: hyper::Uri = trimmed.parse().map_err(|e| bad(&format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("https is not supported; use http:// (plain HTTP only)")),
        _ => return Err(bad("must start with http://")),
    }
    if uri.authority().is_none() {
        return Err(bad("no host"));
    }
    if uri.query().is_some() {
        return Err(bad("must not have a query"));
    }
    Ok(trimmed.to_owned())
}

/// Aborts the background task when the last client handle is dropped.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A feature-flag client: cheap to clone, evaluation is in-process and never waits on the
/// network. Dropping the last clone stops the background synchronisation.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("status", &self.status())
            .field("version", &self.flag_set_version())
            .finish()
    }
}

impl Client {
    /// Starts configuring a client for the server at `base_url` (`http://host:port`).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            sdk_key: None,
            environment: None,
            cache_file: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }

    /// Ready, Stale or NotReady.
    pub fn status(&self) -> Status {
        *self.shared.status.borrow()
    }

    /// A receiver that sees every status change.
    pub fn status_changes(&self) -> tokio::sync::watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// The version of the flag set answers come from (`None` when not ready).
    pub fn flag_set_version(&self) -> Option<String> {
        self.shared.version()
    }

    /// The environment the server reported for the key (or the cache file recorded).
    pub fn environment(&self) -> Option<String> {
        self.shared.snapshot().and_then(|s| s.environment.clone())
    }

    /// The keys of the current flag set, sorted.
    pub fn flag_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .shared
            .snapshot()
            .map(|s| s.flags.keys().map(str::to_owned).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        keys
    }

    fn resolve<T>(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: T,
        expected: &str,
        extract: impl Fn(&Value) -> Option<T>,
    ) -> EvaluationDetails<T> {
        let Some(snap) = self.shared.snapshot() else {
            return EvaluationDetails {
                flag_key: key.to_owned(),
                value: default,
                variant: None,
                reason: Reason::Error,
                error_code: Some(ErrorCode::ProviderNotReady),
                error_message: Some(
                    "no flag set: the flag server has not been reached and there is no cache file"
                        .to_owned(),
                ),
                flag_metadata: Map::new(),
                flag_set_version: None,
            };
        };
        let e = snap.flags.evaluate(key, ctx, serin_clock::now_secs());
        let mut d = EvaluationDetails {
            flag_key: key.to_owned(),
            value: default,
            variant: e.variant.map(str::to_owned),
            reason: e.reason,
            error_code: e.error_code.map(ErrorCode::from),
            error_message: e.error_message,
            flag_metadata: e.flag_metadata.cloned().unwrap_or_default(),
            flag_set_version: Some(snap.version.clone()),
        };
        if let Some(v) = e.value {
            match extract(v) {
                Some(t) => d.value = t,
                None => {
                    d.variant = None;
                    d.reason = Reason::Error;
                    d.error_code = Some(ErrorCode::TypeMismatch);
                    d.error_message = Some(format!(
                        "flag {key:?} resolved to {v}, which is not {expected}"
                    ));
                }
            }
        }
        d
    }

    /// A boolean flag with details.
    pub fn bool_details(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: bool,
    ) -> EvaluationDetails<bool> {
        self.resolve(key, ctx, default, "a boolean", Value::as_bool)
    }

    /// A boolean flag's value; `default` when it gives none.
    pub fn bool_value(&self, key: &str, ctx: &EvaluationContext, default: bool) -> bool {
        self.bool_details(key, ctx, default).value
    }

    /// The seed's `IsEnabled(flagKey, userContext)`: the boolean value, `false` when the
    /// flag is missing, disabled, broken, not boolean or the client is not ready.
    pub fn is_enabled(&self, key: &str, ctx: &EvaluationContext) -> bool {
        self.bool_value(key, ctx, false)
    }

    /// A string flag with details.
    pub fn string_details(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: &str,
    ) -> EvaluationDetails<String> {
        self.resolve(key, ctx, default.to_owned(), "a string", |v| {
            v.as_str().map(str::to_owned)
        })
    }

    /// A string flag's value.
    pub fn string_value(&self, key: &str, ctx: &EvaluationContext, default: &str) -> String {
        self.string_details(key, ctx, default).value
    }

    /// An integer flag with details (whole floats such as `25.0` count; `2.5` is a
    /// TYPE_MISMATCH, as in `serin_flags`).
    pub fn int_details(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: i64,
    ) -> EvaluationDetails<i64> {
        self.resolve(key, ctx, default, "an integer", |v| {
            v.as_i64().or_else(|| {
                let f = v.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
            })
        })
    }

    /// An integer flag's value (the seed's `IntVariation`).
    pub fn int_value(&self, key: &str, ctx: &EvaluationContext, default: i64) -> i64 {
        self.int_details(key, ctx, default).value
    }

    /// A number flag with details (integers convert losslessly).
    pub fn float_details(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: f64,
    ) -> EvaluationDetails<f64> {
        self.resolve(key, ctx, default, "a number", Value::as_f64)
    }

    /// A number flag's value.
    pub fn float_value(&self, key: &str, ctx: &EvaluationContext, default: f64) -> f64 {
        self.float_details(key, ctx, default).value
    }

    /// An object flag with details.
    pub fn object_details(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: Map<String, Value>,
    ) -> EvaluationDetails<Map<String, Value>> {
        self.resolve(key, ctx, default, "an object", |v| v.as_object().cloned())
    }

    /// An object flag's value.
    pub fn object_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        default: Map<String, Value>,
    ) -> Map<String, Value> {
        self.object_details(key, ctx, default).value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_only() {
        assert_eq!(
            validate_url("http://127.0.0.1:8016/").ok().as_deref(),
            Some("http://127.0.0.1:8016")
        );
        for bad in [
            "https://x",
            "ftp://x",
            "127.0.0.1:80",
            "http://",
            "http://x/?q=1",
            "",
        ] {
            assert!(validate_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn corrupt_or_foreign_cache_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("serin-sdk-cache-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("c.json");
        assert!(read_cache(&p, None).is_none());
        std::fs::write(&p, "{not json").expect("write");
        assert!(read_cache(&p, None).is_none());
        std::fs::write(
            &p,
            r#"{"version":"3","environment":"staging","document":{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"a"}}}}"#,
        )
        .expect("write");
        assert!(read_cache(&p, Some("production")).is_none());
        let s = read_cache(&p, Some("staging")).expect("loads");
        assert_eq!(s.version, "3");
        assert!(s.flags.flag("f").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
