//! In-memory flag snapshots per environment (what evaluation reads), reloading from the
//! store or the flag file, and the change broadcast behind the SSE stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value, json};
use serin_flags::{Flag, FlagSet, Format, State, Strictness};
use tokio::sync::broadcast;

use crate::keys::{KeyInfo, KeyRing};
use crate::store::{EnvironmentFlags, Store, StoreError};

/// One environment's flags, compiled, with the version evaluation answers are tagged with.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Flag-configuration version: the store's commit counter, or a hash of the flag file.
    /// Sent as the SSE event's `etag` and folded into bulk ETags.
    pub version: String,
    /// When this version was installed here (Unix seconds).
    pub last_modified: i64,
    /// The compiled flags.
    pub flags: FlagSet,
    /// The definitions (flagd format), by key.
    pub defs: BTreeMap<String, Value>,
    /// File mode: the files read, in precedence order, each with the names a flagd selector
    /// may use for it (see [`SourceFile`]); empty for a store.
    pub sources: Vec<SourceFile>,
    /// File mode: the index in `sources` of the file each flag's winning definition came from.
    pub origins: HashMap<String, usize>,
}

/// One flag file behind the `--file` sources, and the names that select it.
#[derive(Debug, Clone, Default)]
pub struct SourceFile {
    /// The `--file` argument as given, the file's own path (when the argument was a
    /// directory) and the canonical forms of both: a selector matching any of them selects
    /// this file's flags (so a directory source selects all its files).
    pub names: Vec<String>,
}

/// A flag configuration changed: tells SSE clients to re-fetch.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// The environment.
    pub environment: String,
    /// Its new version.
    pub version: String,
    /// When (Unix seconds).
    pub last_modified: i64,
}

/// Where flags come from.
pub(crate) enum Backend {
    /// A flagd file (read-only for the management API).
    File,
    /// A durable store (writable through the management API).
    Store(Arc<dyn Store>),
}

pub(crate) struct Shared {
    envs: RwLock<HashMap<String, Arc<Snapshot>>>,
    empty: Arc<Snapshot>,
    pub(crate) events: broadcast::Sender<ChangeEvent>,
    pub(crate) keys: KeyRing,
    pub(crate) backend: Backend,
    pub(crate) default_environment: String,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The clock as the flag stores keep it (signed milliseconds).
pub(crate) fn now_unix_ms() -> i64 {
    i64::try_from(serin_clock::now_ms()).unwrap_or(i64::MAX)
}

/// The flagd definition of a compiled flag (for listing flags of a file, and for the sync
/// service): targeting with its `$ref`s inlined, as flagd stores it, since a definition
/// travels without the file's `$evaluators`.
pub(crate) fn flag_to_def(flag: &Flag) -> Value {
    let mut m = Map::new();
    let state = match flag.state() {
        State::Enabled => "ENABLED",
        State::Disabled => "DISABLED",
    };
    m.insert("state".into(), json!(state));
    m.insert("variants".into(), Value::Object(flag.variants().clone()));
    if let Some(d) = flag.default_variant() {
        m.insert("defaultVariant".into(), json!(d));
    }
    if let Some(t) = flag.targeting_inlined() {
        m.insert("targeting".into(), t.clone());
    }
    if !flag.metadata().is_empty() {
        m.insert("metadata".into(), Value::Object(flag.metadata().clone()));
    }
    Value::Object(m)
}

/// Compiles stored definitions. Each was validated strictly when written; should one still
/// fail (e.g. after an upgrade), it is left out with a warning instead of taking the others
/// down.
pub(crate) fn compile(environment: &str, defs: &BTreeMap<String, Value>) -> FlagSet {
    let doc = json!({ "flags": defs }).to_string();
    match FlagSet::from_str_with(&doc, Format::Json, Strictness::Lenient) {
        Ok(set) => set,
        Err(e) => {
            tracing::warn!(environment, error = %e, "stored flags do not load as a set; dropping the broken ones");
            let good: BTreeMap<&String, &Value> = defs
                .iter()
                .filter(|(k, v)| {
                    let one = json!({ "flags": { k.as_str(): v } }).to_string();
                    let ok = FlagSet::from_str_with(&one, Format::Json, Strictness::Lenient);
                    if let Err(e) = &ok {
                        tracing::warn!(environment, flag = %k, error = %e, "stored flag dropped");
                    }
                    ok.is_ok()
                })
                .collect();
            FlagSet::from_str_with(
                &json!({ "flags": good }).to_string(),
                Format::Json,
                Strictness::Lenient,
            )
            .unwrap_or_default()
        }
    }
}

impl Shared {
    pub(crate) fn new(
        keys: KeyRing,
        backend: Backend,
        default_environment: String,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            envs: RwLock::new(HashMap::new()),
            empty: Arc::new(Snapshot {
                version: "0".into(),
                ..Default::default()
            }),
            events,
            keys,
            backend,
            default_environment,
            shutdown,
        }
    }

    /// The current flags of an environment (empty if it has none).
    pub(crate) fn snapshot(&self, environment: &str) -> Arc<Snapshot> {
        let map = match self.envs.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.get(environment)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.empty))
    }

    /// Installs a new snapshot; tells SSE clients when the version changed.
    pub(crate) fn install(&self, environment: &str, snapshot: Snapshot) {
        let event = ChangeEvent {
            environment: environment.to_owned(),
            version: snapshot.version.clone(),
            last_modified: snapshot.last_modified,
        };
        let changed = {
            let mut map = match self.envs.write() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            let changed = map
                .get(environment)
                .is_none_or(|old| old.version != snapshot.version);
            if changed {
                map.insert(environment.to_owned(), Arc::new(snapshot));
            }
            changed
        };
        if changed {
            tracing::info!(environment, version = %event.version, "flags updated");
            // No receivers is fine.
            let _ = self.events.send(event);
        }
    }

    /// Reloads one environment from the store.
    pub(crate) async fn reload(
        &self,
        store: &dyn Store,
        environment: &str,
    ) -> Result<(), StoreError> {
        let EnvironmentFlags { version, flags } = store.load(environment).await?;
        let compiled = compile(environment, &flags);
        self.install(
            environment,
            Snapshot {
                version: version.to_string(),
                last_modified: now_unix_ms() / 1000,
                flags: compiled,
                defs: flags,
                ..Default::default()
            },
        );
        Ok(())
    }

    /// Reloads every environment the store knows.
    pub(crate) async fn reload_all(&self, store: &dyn Store) -> Result<(), StoreError> {
        for env in store.environments().await? {
            self.reload(store, &env).await?;
        }
        Ok(())
    }

    /// The key presented in `Authorization: Bearer …` or `X-API-Key`, if any.
    pub(crate) fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
        if let Some(v) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let v = v.trim();
            if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
                return Some(v[7..].trim());
            }
        }
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    }

    /// Looks the presented key up. `Ok(None)`: no keys are configured (open mode).
    pub(crate) fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Option<&KeyInfo>, crate::ApiError> {
        use axum::http::StatusCode;
        if self.keys.is_empty() {
            return Ok(None);
        }
        let Some(key) = Self::presented_key(headers) else {
            return Err(crate::ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            ));
        };
        match self.keys.lookup(key) {
            Some(info) => Ok(Some(info)),
            None => Err(crate::ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "unknown API key",
            )),
        }
    }
}
