//! Serin's flag server: serves [`serin_flags`] over OpenFeature's OFREP v0.3, with a
//! management API, an audit log, a kill switch, a Server-Sent-Events change stream, API keys
//! scoped to environments, and durable storage (embedded redb or PostgreSQL).
//!
//! ```no_run
//! # async fn demo() -> Result<(), serin_flags_server::ServerError> {
//! use serin_flags_server::{FlagServer, FlagSource, KeyRing, ServerOptions};
//! let server = FlagServer::start(ServerOptions {
//!     source: FlagSource::File("flags.yaml".into()),
//!     keys: KeyRing::empty(),
//!     environment: "default".into(),
//! })
//! .await?;
//! let running = server.bind("127.0.0.1:8016".parse().unwrap()).await?;
//! println!("listening on {}", running.addr());
//! # Ok(()) }
//! ```
//!
//! `serin up` mounts [`FlagServer::router`] into its own API instead of binding.

mod error;
mod file;
mod grpc;
pub mod keys;
pub mod limits;
mod manage;
mod ofrep;
mod ofrep_fast_path;
mod sdk;
mod state;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::{ApiError, ServerError};
pub use keys::{KeyInfo, KeyKind, KeyRing, hash_key};
pub use manage::{OPENAPI_YAML, has_tag};
pub use ofrep::EVENTS_PATH;
pub use sdk::SDK_FLAGS_PATH;
pub use state::ChangeEvent;
pub use store::{PgStore, RedbStore, Store};

use state::{Backend, Shared};

/// Every route the server answers, as (method, path template). The router is built from
/// the same constants, and a test checks each is in `openapi.yaml` and that no other method
/// is answered on these paths.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", P_EVAL_ONE),
    ("POST", P_EVAL_BULK),
    ("GET", EVENTS_PATH),
    ("GET", SDK_FLAGS_PATH),
    ("GET", P_OPENAPI),
    ("GET", P_FLAGS),
    ("GET", P_FLAG),
    ("PUT", P_FLAG),
    ("PATCH", P_FLAG),
    ("DELETE", P_FLAG),
    ("POST", P_TOGGLE),
    ("POST", P_KILL),
    ("GET", P_AUDIT),
];

const P_EVAL_ONE: &str = "/ofrep/v1/evaluate/flags/{key}";
const P_EVAL_BULK: &str = "/ofrep/v1/evaluate/flags";
const P_OPENAPI: &str = "/api/v1/openapi.yaml";
const P_FLAGS: &str = "/api/v1/environments/{env}/flags";
const P_FLAG: &str = "/api/v1/environments/{env}/flags/{key}";
const P_TOGGLE: &str = "/api/v1/environments/{env}/flags/{key}/toggle";
const P_KILL: &str = "/api/v1/environments/{env}/kill-switch";
const P_AUDIT: &str = "/api/v1/environments/{env}/audit";

/// How often the flag file is checked for changes.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Serializes `body` as a JSON response (500 with a JSON error if that fails).
pub(crate) fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes_response(status, bytes),
        Err(e) => serialization_failed(&e),
    }
}

/// The 500 answer when a body does not serialize.
pub(crate) fn serialization_failed(e: &serde_json::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"errorDetails\":{:?}}}", e.to_string()),
    )
        .into_response()
}

/// A response with an already serialized JSON body.
pub(crate) fn json_bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Where the flags come from.
pub enum FlagSource {
    /// A flagd file (JSON, or YAML by extension), polled for changes; read-only for the
    /// management API (writes answer 409 `READ_ONLY`).
    File(PathBuf),
    /// Several files or directories (their `*.json`/`*.yaml`/`*.yml` in name order), merged
    /// with flagd's precedence: a flag defined in more than one comes from the last. Polled
    /// and read-only like [`FlagSource::File`].
    Files(Vec<PathBuf>),
    /// A durable store, written through the management API.
    Store(Arc<dyn Store>),
}

/// What to serve.
pub struct ServerOptions {
    /// Flags from a file or a store.
    pub source: FlagSource,
    /// API keys; empty = open evaluation (loopback only) and no management API.
    pub keys: KeyRing,
    /// The environment served to unauthenticated callers (open mode) and the one a flag file
    /// is served as.
    pub environment: String,
}

/// A flag server: its state and background tasks (file watcher, store listener).
pub struct FlagServer {
    shared: Arc<Shared>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    notes: Vec<String>,
}

impl FlagServer {
    /// Loads the flags (a bad file fails here, located) and starts the background tasks.
    pub async fn start(options: ServerOptions) -> Result<Self, ServerError> {
        if !keys::valid_environment(&options.environment) {
            return Err(ServerError::Config(format!(
                "environment {:?} must be 1-64 of [A-Za-z0-9_.-]",
                options.environment
            )));
        }
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let mut notes = Vec::new();
        let mut tasks = Vec::new();
        let backend = match &options.source {
            FlagSource::File(_) | FlagSource::Files(_) => Backend::File,
            FlagSource::Store(s) => Backend::Store(Arc::clone(s)),
        };
        if options.keys.is_empty() {
            notes.push(
                "no API keys configured: OFREP evaluation is open without auth, on loopback only"
                    .to_owned(),
            );
        }
        if !options.keys.has_admin() {
            notes.push("management API disabled: no admin token configured".to_owned());
        }
        let shared = Arc::new(Shared::new(
            options.keys,
            backend,
            options.environment.clone(),
            shutdown_rx,
        ));
        match options.source {
            FlagSource::File(path) => {
                let (watcher, note) = watch_files(&[path], &options.environment, &shared)?;
                notes.extend(note);
                tasks.push(tokio::spawn(watcher.run(Arc::clone(&shared))));
            }
            FlagSource::Files(paths) => {
                let (watcher, note) = watch_files(&paths, &options.environment, &shared)?;
                notes.extend(note);
                tasks.push(tokio::spawn(watcher.run(Arc::clone(&shared))));
            }
            FlagSource::Store(store) => {
                shared.reload_all(store.as_ref()).await?;
                if let Some(mut rx) = store.external_changes() {
                    let shared = Arc::clone(&shared);
                    let store = Arc::clone(&store);
                    tasks.push(tokio::spawn(async move {
                        loop {
                            let env = match rx.recv().await {
                                Ok(env) => env,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                    store::ALL_ENVIRONMENTS.to_owned()
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                            };
                            let r = if env == store::ALL_ENVIRONMENTS {
                                shared.reload_all(store.as_ref()).await
                            } else {
                                shared.reload(store.as_ref(), &env).await
                            };
                            if let Err(e) = r {
                                tracing::warn!(environment = %env, error = %e, "reload after change notification failed");
                            }
                        }
                    }));
                }
            }
        }
        Ok(Self {
            shared,
            shutdown,
            tasks,
            notes,
        })
    }

    /// What an operator should know (open mode, disabled management API, file mode), to be
    /// printed at startup.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Whether any key is configured.
    pub fn has_keys(&self) -> bool {
        !self.shared.keys.is_empty()
    }

    /// A receiver of flag-configuration changes (what the SSE stream sends).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ChangeEvent> {
        self.shared.events.subscribe()
    }

    /// An in-process handle on the management layer (for `serin up`'s
    /// FlagRollouts): writes go through the same validation, store commit,
    /// audit log and SSE change event as the HTTP management API.
    pub fn manager(&self) -> Manager {
        Manager {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The HTTP API (OFREP, SSE, management) and flagd's gRPC services, for mounting into a
    /// larger server.
    pub fn router(&self) -> Router {
        use axum::routing::{delete, patch, put};
        let grpc = serin_flags_grpc::routes(Arc::new(grpc::GrpcBackend(Arc::clone(&self.shared))));
        Router::new()
            .route(P_EVAL_ONE, post(ofrep::evaluate_one))
            .route(P_EVAL_BULK, post(ofrep::evaluate_bulk))
            .route(EVENTS_PATH, get(ofrep::events))
            .route(SDK_FLAGS_PATH, get(sdk::flags))
            .route(P_OPENAPI, get(manage::openapi))
            .route(P_FLAGS, get(manage::list_flags))
            .route(
                P_FLAG,
                get(manage::get_flag)
                    .merge(put(manage::put_flag))
                    .merge(patch(manage::patch_flag))
                    .merge(delete(manage::delete_flag)),
            )
            .route(P_TOGGLE, post(manage::toggle_flag))
            .route(P_KILL, post(manage::kill_switch))
            .route(P_AUDIT, get(manage::audit))
            // flagd's gRPC evaluation and sync services (HTTP/2).
            .route_service(serin_flags_grpc::EVALUATION_PATH, grpc.clone())
            .route_service(serin_flags_grpc::EVALUATION_V2_PATH, grpc.clone())
            .route_service(serin_flags_grpc::SYNC_PATH, grpc)
            .fallback(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
            })
            .method_not_allowed_fallback(|| async {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    "method not allowed on this route",
                )
            })
            .with_state(Arc::clone(&self.shared))
    }

    /// Binds `addr` and serves until [`Running::stop`]. Refuses a non-loopback address when
    /// no keys are configured. Serves [`FlagServer::router`], except that OFREP single-flag
    /// evaluation is answered before the router, with the same answers, for speed.
    pub async fn bind(self, addr: SocketAddr) -> Result<Running, ServerError> {
        self.bind_with(addr, limits::ConnLimits::default()).await
    }

    /// [`FlagServer::bind`] with these connection limits.
    pub async fn bind_with(
        self,
        addr: SocketAddr,
        limits: limits::ConnLimits,
    ) -> Result<Running, ServerError> {
        self.bind_listeners(Listen::single(addr), limits).await
    }

    /// The gRPC routes of one surface alone (a port of its own, as flagd's `--port` and
    /// `--sync-port`).
    fn grpc_router(&self, paths: &[&str]) -> Router {
        let grpc = serin_flags_grpc::routes(Arc::new(grpc::GrpcBackend(Arc::clone(&self.shared))));
        let mut r = Router::new();
        for p in paths {
            r = r.route_service(p, grpc.clone());
        }
        r.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
    }

    /// Binds every listener of `listen` (all or none: a port in use fails the whole start)
    /// and serves until [`Running::stop`]. The main address serves everything; the optional
    /// evaluation and sync addresses serve only their gRPC service. With TLS, every listener
    /// speaks TLS, offering HTTP/2 (gRPC) and HTTP/1.1 over ALPN.
    pub async fn bind_listeners(
        self,
        listen: Listen,
        limits: limits::ConnLimits,
    ) -> Result<Running, ServerError> {
        for addr in [Some(listen.main), listen.evaluation, listen.sync]
            .into_iter()
            .flatten()
        {
            check_listen(addr, self.has_keys())?;
        }
        let tls = match &listen.tls {
            None => None,
            Some(t) => Some(tls_config(t)?),
        };
        let main = tokio::net::TcpListener::bind(listen.main).await?;
        let evaluation = match listen.evaluation {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
            None => None,
        };
        let sync = match listen.sync {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
            None => None,
        };
        let addr = main.local_addr()?;
        let evaluation_addr = evaluation.as_ref().map(|l| l.local_addr()).transpose()?;
        let sync_addr = sync.as_ref().map(|l| l.local_addr()).transpose()?;
        let mut serves = Vec::new();
        let service = ofrep_fast_path::OfrepFirst::new(Arc::clone(&self.shared), self.router());
        serves.push(spawn_serve(
            main,
            service,
            tls.clone(),
            limits,
            self.shutdown.subscribe(),
        )?);
        if let Some(l) = evaluation {
            let router = self.grpc_router(&[
                serin_flags_grpc::EVALUATION_PATH,
                serin_flags_grpc::EVALUATION_V2_PATH,
            ]);
            serves.push(spawn_serve(
                l,
                router,
                tls.clone(),
                limits,
                self.shutdown.subscribe(),
            )?);
        }
        if let Some(l) = sync {
            let router = self.grpc_router(&[serin_flags_grpc::SYNC_PATH]);
            serves.push(spawn_serve(
                l,
                router,
                tls.clone(),
                limits,
                self.shutdown.subscribe(),
            )?);
        }
        Ok(Running {
            addr,
            evaluation_addr,
            sync_addr,
            tls: tls.is_some(),
            server: self,
            serves,
        })
    }
}

/// Where a [`FlagServer`] listens (see [`FlagServer::bind_listeners`]).
#[derive(Debug, Clone)]
pub struct Listen {
    /// Everything: OFREP, the SSE stream, the management API and both gRPC services.
    pub main: SocketAddr,
    /// `flagd.evaluation.v1` / `v2` alone, as flagd's `--port`.
    pub evaluation: Option<SocketAddr>,
    /// `flagd.sync.v1` alone, as flagd's `--sync-port`.
    pub sync: Option<SocketAddr>,
    /// TLS for every listener, as flagd's `--server-cert-path` / `--server-key-path`.
    pub tls: Option<TlsFiles>,
}

impl Listen {
    /// One plaintext address serving everything.
    pub fn single(main: SocketAddr) -> Self {
        Listen {
            main,
            evaluation: None,
            sync: None,
            tls: None,
        }
    }
}

/// A PEM certificate chain (leaf first) and its PEM private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// The rustls configuration: as the control plane's, plus `h2` over ALPN, which gRPC clients
/// require on TLS.
fn tls_config(files: &TlsFiles) -> Result<Arc<serin_tls::ServerConfig>, ServerError> {
    let base = serin_tls::server_config(&files.cert, &files.key)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let mut config = (*base).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`serin_tls::TlsListener`] as an axum listener.
struct TlsAccept(serin_tls::TlsListener);

impl axum::serve::Listener for TlsAccept {
    type Io = serin_tls::ServerTlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}

/// Serves `handler` on `listener` (through TLS when configured) until `stop`.
fn spawn_serve<H: limits::Handler>(
    listener: tokio::net::TcpListener,
    handler: H,
    tls: Option<Arc<serin_tls::ServerConfig>>,
    limits: limits::ConnLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok(match tls {
        None => tokio::spawn(limits::serve(listener, handler, limits, stopped)),
        Some(config) => {
            let listener = TlsAccept(serin_tls::TlsListener::new(listener, config)?);
            tokio::spawn(limits::serve(listener, handler, limits, stopped))
        }
    })
}

/// In-process management of a [`FlagServer`]'s flags (see
/// [`FlagServer::manager`]). Cheap to clone; needs no API key: the caller is
/// trusted and names itself as the audit log's actor.
#[derive(Clone)]
pub struct Manager {
    shared: Arc<Shared>,
}

impl Manager {
    /// Sets `key`'s rollout percentage in `environment` (a `fractional`
    /// split between its two variants), recording `actor` in the audit log.
    /// Errors are the management API's: 404 `NOT_FOUND`, 422
    /// `UNSUITABLE_FLAG` (not two variants), 409 `READ_ONLY` (flags from a
    /// file), 409 `CONFLICT` / 503 (retry). Setting the current percentage
    /// changes nothing and records nothing.
    pub async fn set_percentage(
        &self,
        environment: &str,
        key: &str,
        pct: u8,
        actor: &str,
    ) -> Result<u64, ApiError> {
        manage::set_percentage(&self.shared, environment, key, pct, actor).await
    }

    /// Disables every flag of `environment` carrying `tag`, in one
    /// transaction, as `actor` — the management API's kill switch. Answers
    /// `{environment, tag, version, disabled, tagged}`.
    pub async fn kill_switch(
        &self,
        environment: &str,
        tag: &str,
        actor: &str,
    ) -> Result<serde_json::Value, ApiError> {
        manage::kill_by_tag(&self.shared, environment, tag, actor).await
    }

    /// The newest `limit` audit entries of `environment` (who, what, when),
    /// newest first. 409 `READ_ONLY` for flags served from a file.
    pub async fn audit(
        &self,
        environment: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        let query = store::AuditQuery {
            flag: None,
            before_id: None,
            limit: limit.clamp(1, 1000),
        };
        manage::audit_entries(&self.shared, environment, query).await
    }

    /// The flag definitions (flagd format) of `environment` in force, by
    /// key, with the configuration's version.
    pub fn flags(
        &self,
        environment: &str,
    ) -> (
        String,
        std::collections::BTreeMap<String, serde_json::Value>,
    ) {
        let snap = self.shared.snapshot(environment);
        (snap.version.clone(), snap.defs.clone())
    }

    /// Whether flags are stored (writable), not served from a file.
    pub fn writable(&self) -> bool {
        matches!(self.shared.backend, Backend::Store(_))
    }

    /// The environment served to callers without a key (and a flag file's).
    pub fn default_environment(&self) -> &str {
        &self.shared.default_environment
    }
}

/// Loads file sources and says what is served, with a line per located warning.
fn watch_files(
    paths: &[PathBuf],
    environment: &str,
    shared: &Shared,
) -> Result<(file::FileWatcher, Vec<String>), ServerError> {
    let (watcher, warnings) = file::FileWatcher::load(paths, environment, shared)?;
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let mut notes = vec![format!(
        "serving {} as environment {environment:?}{}; reloading on change (polled every {} ms); management writes answer 409",
        shown.join(", "),
        if paths.len() > 1 {
            " (later sources win)"
        } else {
            ""
        },
        FILE_POLL_INTERVAL.as_millis()
    )];
    notes.extend(warnings.into_iter().map(|w| format!("warning: {w}")));
    Ok((watcher, notes))
}

/// Refuses to expose unauthenticated evaluation beyond loopback.
pub fn check_listen(addr: SocketAddr, has_keys: bool) -> Result<(), ServerError> {
    if !has_keys && !addr.ip().is_loopback() {
        return Err(ServerError::Config(format!(
            "refusing to listen on {addr} without API keys: without keys evaluation is \
             unauthenticated, so only loopback addresses are allowed (give --keys)"
        )));
    }
    Ok(())
}

/// A bound, serving flag server.
pub struct Running {
    addr: SocketAddr,
    evaluation_addr: Option<SocketAddr>,
    sync_addr: Option<SocketAddr>,
    tls: bool,
    server: FlagServer,
    serves: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The address it listens on (everything is served there).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gRPC evaluation service's own address, if it has one.
    pub fn evaluation_addr(&self) -> Option<SocketAddr> {
        self.evaluation_addr
    }

    /// The gRPC sync service's own address, if it has one.
    pub fn sync_addr(&self) -> Option<SocketAddr> {
        self.sync_addr
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The server (for notes and change subscription).
    pub fn server(&self) -> &FlagServer {
        &self.server
    }

    /// Waits until the server stops (it only stops through [`Running::stop`]).
    pub async fn wait(&mut self) {
        for s in &mut self.serves {
            let _ = s.await;
        }
    }

    /// Stops: ends SSE streams, finishes in-flight requests, stops background tasks and
    /// releases the store.
    pub async fn stop(mut self) {
        let _ = self.server.shutdown.send(true);
        for s in self.serves.drain(..) {
            let _ = s.await;
        }
        for t in self.server.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}
