//! Serin's data plane: a traffic-splitting reverse proxy.
//!
//! Each Service of a [`ProxyConfig`] gets a listener. A request is routed by
//! the Service's header routes (first match wins), else by its weights
//! (a 100-slot smooth weighted round-robin schedule, exact and deterministic),
//! else spread round-robin over every endpoint; within a revision endpoints
//! are taken round-robin. Requests and responses stream; HTTP/1.1 (keep-alive,
//! pipelining, upgrades such as WebSocket) and HTTP/2 cleartext are served on
//! the same port. A connection's bodiless HTTP/1.1 requests are served by a
//! lean loop of the proxy's own (`server`); the first request it does not
//! take (a body, an upgrade, the HTTP/2 preface, …) hands the connection to
//! hyper's server. Upstream connections are pooled (a bodiless request to an
//! HTTP/1.1 upstream takes a lean path that drives the connection on the
//! request's own task; the rest goes through hyper's client). A bodiless
//! idempotent request whose connect fails is retried on the revision's next
//! endpoint.
//!
//! The control plane pushes whole configs through the admin API
//! (`PUT /v1/config`), which only answers requests that carry the proxy's
//! [`AdminToken`] (`GET /healthz` and `GET /metrics` excepted); a valid config is swapped in atomically (every Service
//! at once) and takes effect for the next request; in-flight requests finish
//! on what they started with, bounded by the drain grace. Every request is
//! counted per (service, app, revision) and by who caused its answer
//! ([`Cause`]: client, proxy or upstream — only upstream-caused errors count
//! against a revision), exposed on `/metrics` (Prometheus text:
//! `http_requests_total{service,app,rollouts_pod_template_hash,status,source,cause}`,
//! `http_request_duration_seconds_bucket{...,le}`) and `/v1/stats` (JSON).
//!
//! ```no_run
//! # async fn demo() -> Result<(), serin_proxy::ProxyError> {
//! let proxy = serin_proxy::Proxy::start(
//!     "127.0.0.1:0".parse().unwrap(),
//!     serin_proxy::ProxyConfig::default(),
//! ).await?;
//! // Admin requests carry `Authorization: Bearer {proxy.admin_token().expose()}`.
//! println!("admin API on {}", proxy.admin_addr());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
pub mod config;
mod forward;
mod lean;
mod route;
mod server;
mod stats;
mod token;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use config::{
    HeaderMatch, HeaderRoute, MirrorMatch, MirrorRoute, ProxyConfig, RevisionEndpoints,
    ServiceConfig, UpstreamProtocol, ValueMatch, WeightedRevision,
};
pub use stats::{
    BUCKETS, Bucket, Cause, Causes, Latency, Mirrored, ProxyErrors, RevisionSnapshot,
    StatsSnapshot, StatusClasses,
};

pub use token::{AdminToken, TokenError};

use route::{EndpointRegistry, Service};
use stats::{StatsCollector, StatsRegistry};

/// Default drain grace.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);

/// A config rejected by validation; `field` is the JSON path
/// (e.g. `services[0].weights`), empty when the whole document is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ConfigError {
    /// JSON path of the offending field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Errors of the proxy library.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The config is invalid; the previous config stays in force.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// A Service's listen address could not be bound; the previous config
    /// stays in force.
    #[error("{field}: cannot listen on {addr}: {source}")]
    Bind {
        /// JSON path, e.g. `services[1].listen`.
        field: String,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The admin API address is not a loopback address and the proxy was
    /// not told to allow that ([`ProxyOptions::allow_non_loopback`]).
    #[error(
        "the admin API address {addr} is not a loopback address (allow it explicitly to listen beyond this machine)"
    )]
    AdminNotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// No admin token could be made.
    #[error("admin token: {0}")]
    Token(#[from] TokenError),
    /// The admin API address could not be bound.
    #[error("cannot listen for the admin API on {addr}: {source}")]
    AdminBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ProxyError {
    /// JSON path of the offending config field, if any.
    pub fn field(&self) -> &str {
        match self {
            Self::Config(e) => &e.field,
            Self::Bind { field, .. } => field,
            Self::AdminBind { .. } | Self::AdminNotLoopback { .. } | Self::Token(_) => "",
        }
    }
}

/// The routing table swapped atomically on every config change; listeners
/// index it by their slot.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) slots: Vec<Option<Arc<Service>>>,
}

/// State shared by listeners, the admin API and the handle.
pub(crate) struct Shared {
    pub(crate) table: ArcSwap<Table>,
    pub(crate) http2: forward::UpClient,
    /// Permits for mirrored copies in flight (see [`forward::MAX_MIRRORS_IN_FLIGHT`]).
    pub(crate) mirrors: Arc<tokio::sync::Semaphore>,
    stats: Arc<StatsRegistry>,
    registry: prometheus_client::registry::Registry,
    control: tokio::sync::Mutex<Control>,
    effective: std::sync::Mutex<ProxyConfig>,
    /// The admin API's secret.
    pub(crate) token: AdminToken,
    /// Whether Service listen addresses beyond loopback are accepted.
    allow_non_loopback: bool,
}

/// How a proxy starts: its admin API and what it allows.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Address of the admin API (port 0 picks one).
    pub admin: SocketAddr,
    /// The secret admin requests must carry (see [`AdminToken`]).
    pub admin_token: AdminToken,
    /// Accept an admin address and Service listen addresses that are not
    /// loopback. Off by default: anyone who can reach a listener can send
    /// traffic through it, and the admin token travels in clear text.
    pub allow_non_loopback: bool,
}

struct ListenerHandle {
    slot: usize,
    requested: SocketAddr,
    actual: SocketAddr,
    stop: watch::Sender<bool>,
    /// The accept loops, one per worker; empty only between binding and
    /// starting them.
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Control {
    listeners: HashMap<String, ListenerHandle>,
    next_slot: usize,
    endpoints: EndpointRegistry,
}

/// A running proxy: its admin API and one listener per Service.
pub struct Proxy {
    shared: Arc<Shared>,
    admin_addr: SocketAddr,
    admin_stop: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

/// Run a proxy until `shutdown` resolves, then drain and return.
pub async fn run(
    options: ProxyOptions,
    initial: ProxyConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let proxy = Proxy::start_with(options, initial).await?;
    shutdown.await;
    proxy.shutdown().await;
    Ok(())
}

impl Proxy {
    /// Bind the admin API on `admin` (port 0 picks one) with a fresh random
    /// [`AdminToken`] (see [`Proxy::admin_token`]), loopback addresses only,
    /// and every Service of `initial`, and start serving. Must run inside a
    /// tokio runtime.
    pub async fn start(admin: SocketAddr, initial: ProxyConfig) -> Result<Self, ProxyError> {
        let options = ProxyOptions {
            admin,
            admin_token: AdminToken::random()?,
            allow_non_loopback: false,
        };
        Self::start_with(options, initial).await
    }

    /// [`Proxy::start`] with explicit options.
    pub async fn start_with(
        options: ProxyOptions,
        initial: ProxyConfig,
    ) -> Result<Self, ProxyError> {
        let admin = options.admin;
        if !options.allow_non_loopback && !admin.ip().is_loopback() {
            return Err(ProxyError::AdminNotLoopback { addr: admin });
        }
        initial.validate()?;
        let stats = Arc::new(StatsRegistry::default());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(StatsCollector(stats.clone())));
        let http2 = forward::h2_client();
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(Table::default()),
            http2,
            mirrors: Arc::new(tokio::sync::Semaphore::new(forward::MAX_MIRRORS_IN_FLIGHT)),
            stats,
            registry,
            control: tokio::sync::Mutex::new(Control::default()),
            effective: std::sync::Mutex::new(ProxyConfig::default()),
            token: options.admin_token,
            allow_non_loopback: options.allow_non_loopback,
        });
        let admin_listener =
            TcpListener::bind(admin)
                .await
                .map_err(|source| ProxyError::AdminBind {
                    addr: admin,
                    source,
                })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| ProxyError::AdminBind {
                addr: admin,
                source,
            })?;
        apply(&shared, initial).await?;
        let (admin_stop, stop_rx) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(shared.clone(), admin_listener, stop_rx));
        // Listeners run on the proxy's worker threads; stop them too when the
        // caller's runtime goes away without a shutdown.
        let guard = StopListenersOnDrop(shared.clone());
        tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        tracing::info!(%admin_addr, "serin proxy admin API listening");
        Ok(Self {
            shared,
            admin_addr,
            admin_stop,
            admin_task,
        })
    }

    /// Validate and swap in a whole new config; returns the config in
    /// force with actual listen addresses. On error nothing changes.
    pub async fn apply(&self, config: ProxyConfig) -> Result<ProxyConfig, ProxyError> {
        apply(&self.shared, config).await
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The secret the admin API asks for.
    pub fn admin_token(&self) -> &AdminToken {
        &self.shared.token
    }

    /// The actual listen address of a Service in the config in force.
    pub fn listen_addr(&self, service: &str) -> Option<SocketAddr> {
        self.config()
            .services
            .iter()
            .find(|s| s.name == service)
            .map(|s| s.listen)
    }

    /// The config in force, with actual listen addresses.
    pub fn config(&self) -> ProxyConfig {
        effective(&self.shared)
    }

    /// Cumulative per-revision counters (what `GET /v1/stats` returns).
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// The Prometheus text exposition (what `GET /metrics` returns).
    pub fn metrics_text(&self) -> String {
        metrics_text(&self.shared)
    }

    /// Stop accepting, let in-flight requests finish (bounded by the drain
    /// grace), then return.
    pub async fn shutdown(self) {
        let _ = self.admin_stop.send(true);
        let listeners: Vec<ListenerHandle> = {
            let mut control = self.shared.control.lock().await;
            control.listeners.drain().map(|(_, h)| h).collect()
        };
        for h in &listeners {
            let _ = h.stop.send(true);
        }
        for h in listeners {
            for task in h.tasks {
                let _ = task.await;
            }
        }
        let _ = self.admin_task.await;
    }
}

struct StopListenersOnDrop(Arc<Shared>);

impl Drop for StopListenersOnDrop {
    fn drop(&mut self) {
        if let Ok(control) = self.0.control.try_lock() {
            for h in control.listeners.values() {
                let _ = h.stop.send(true);
            }
        }
    }
}

pub(crate) fn effective(shared: &Shared) -> ProxyConfig {
    shared
        .effective
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

pub(crate) fn metrics_text(shared: &Shared) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &shared.registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}

pub(crate) fn stats_snapshot(shared: &Shared) -> StatsSnapshot {
    shared.stats.snapshot()
}

/// Validate, bind new listeners, compile, swap, then retire what left.
pub(crate) async fn apply(
    shared: &Arc<Shared>,
    mut config: ProxyConfig,
) -> Result<ProxyConfig, ProxyError> {
    config.validate()?;
    if !shared.allow_non_loopback {
        for (i, s) in config.services.iter().enumerate() {
            if !s.listen.ip().is_loopback() {
                return Err(ConfigError {
                    field: format!("services[{i}].listen"),
                    message: format!(
                        "{} is not a loopback address; the proxy was not started to allow listening beyond this machine",
                        s.listen
                    ),
                }
                .into());
            }
        }
    }
    let grace = config
        .drain_grace_ms
        .map_or(DEFAULT_DRAIN_GRACE, Duration::from_millis);
    let header_timeout = config
        .client_header_timeout_ms
        .map_or(server::DEFAULT_HEADER_TIMEOUT, Duration::from_millis);
    let mut control = shared.control.lock().await;

    // 1. Bind what is new (all-or-nothing: on error the bound ones drop).
    let mut fresh: HashMap<String, (Vec<std::net::TcpListener>, SocketAddr, SocketAddr)> =
        HashMap::new();
    for (i, s) in config.services.iter().enumerate() {
        let reuse = control
            .listeners
            .get(&s.name)
            .is_some_and(|h| h.requested == s.listen || h.actual == s.listen);
        if reuse {
            continue;
        }
        let field = format!("services[{i}].listen");
        let bind_err = |source| ProxyError::Bind {
            field: field.clone(),
            addr: s.listen,
            source,
        };
        // One socket per worker (SO_REUSEPORT: the kernel spreads
        // connections over them); the first one fixes the port.
        let first = bind_listener(s.listen).map_err(bind_err)?;
        let actual = first.local_addr().map_err(bind_err)?;
        let mut ls = vec![first];
        for _ in 1..workers().len() {
            ls.push(bind_listener(actual).map_err(bind_err)?);
        }
        fresh.insert(s.name.clone(), (ls, s.listen, actual));
    }

    // 2. Compile every Service.
    let mut compiled = Vec::with_capacity(config.services.len());
    for (i, s) in config.services.iter().enumerate() {
        compiled.push(Service::compile(
            s,
            i,
            &mut control.endpoints,
            &shared.stats,
        )?);
    }

    // 3. Assign slots, build the table, swap it in.
    let mut keep: HashMap<String, ListenerHandle> = HashMap::new();
    let mut start: Vec<(
        usize,
        Vec<std::net::TcpListener>,
        watch::Receiver<bool>,
        String,
    )> = Vec::new();
    let mut placed: Vec<(usize, Arc<Service>)> = Vec::new();
    for (s, svc) in config.services.iter_mut().zip(compiled) {
        let slot;
        if let Some((l, requested, actual)) = fresh.remove(&s.name) {
            slot = control.next_slot;
            control.next_slot += 1;
            let (stop, rx) = watch::channel(false);
            keep.insert(
                s.name.clone(),
                ListenerHandle {
                    slot,
                    requested,
                    actual,
                    stop,
                    tasks: Vec::new(),
                },
            );
            start.push((slot, l, rx, s.name.clone()));
            s.listen = actual;
        } else if let Some(h) = control.listeners.remove(&s.name) {
            slot = h.slot;
            s.listen = h.actual;
            keep.insert(s.name.clone(), h);
        } else {
            continue; // unreachable: every service was either reused or bound
        }
        placed.push((slot, Arc::new(svc)));
    }
    let mut slots = vec![None; control.next_slot];
    for (slot, svc) in placed {
        slots[slot] = Some(svc);
    }
    shared.table.store(Arc::new(Table { slots }));

    // 4. Start the new listeners, stop the ones no longer configured.
    for (slot, ls, rx, name) in start {
        tracing::info!(service = %name, addr = ?ls.first().and_then(|l| l.local_addr().ok()), "listening");
        let tasks = ls
            .into_iter()
            .zip(workers())
            .map(|(l, w)| {
                let ctx = Arc::new(server::Listener {
                    shared: shared.clone(),
                    slot,
                    builder: server_builder(header_timeout),
                    header_timeout,
                    drain: server::Drain::default(),
                });
                w.spawn(serve_listener(ctx, l, rx.clone(), grace))
            })
            .collect();
        if let Some(h) = keep.get_mut(&name) {
            h.tasks = tasks;
        }
    }
    let removed = std::mem::replace(&mut control.listeners, keep);
    for (name, h) in removed {
        tracing::info!(service = %name, addr = %h.actual, "listener removed; draining");
        let _ = h.stop.send(true);
    }

    // 5. Retire endpoints that left every Service; cut them off after grace.
    let in_use: std::collections::HashSet<SocketAddr> = config
        .services
        .iter()
        .flat_map(|s| s.revisions.iter().flat_map(|r| r.endpoints.iter().copied()))
        .collect();
    for (addr, ep) in &control.endpoints.by_addr {
        if !in_use.contains(addr) && ep.live.swap(false, Relaxed) {
            let ep = ep.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let mut control = shared.control.lock().await;
                if !ep.live.load(Relaxed) {
                    ep.cut_now();
                    if control
                        .endpoints
                        .by_addr
                        .get(&ep.addr)
                        .is_some_and(|e| Arc::ptr_eq(e, &ep))
                    {
                        control.endpoints.by_addr.remove(&ep.addr);
                    }
                }
            });
        }
    }

    *shared.effective.lock().unwrap_or_else(|p| p.into_inner()) = config.clone();
    Ok(config)
}

/// hyper's server side, for connections the lean loop hands over
/// (`server`): HTTP/1.1 with upgrades and h2c (prior knowledge).
fn server_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    b.http2().timer(TokioTimer::new());
    b
}

/// The proxy's worker threads, one per core, each running a single-threaded
/// runtime: a connection, its requests and their upstream connections stay on
/// one thread (no work stealing, no locks, no cross-thread wake-ups on the hot
/// path). Started on first use and kept for the life of the process.
fn workers() -> &'static [tokio::runtime::Handle] {
    static WORKERS: std::sync::OnceLock<Vec<tokio::runtime::Handle>> = std::sync::OnceLock::new();
    WORKERS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        (0..n)
            .map(|i| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot start a proxy worker runtime");
                let handle = rt.handle().clone();
                handle.spawn(async {
                    let mut tick = tokio::time::interval(Duration::from_secs(10));
                    loop {
                        tick.tick().await;
                        forward::sweep_idle();
                        lean::sweep_idle();
                    }
                });
                std::thread::Builder::new()
                    .name(format!("serin-proxy-{i}"))
                    .spawn(move || rt.block_on(std::future::pending::<()>()))
                    .expect("cannot start a proxy worker thread");
                handle
            })
            .collect()
    })
}

/// A nonblocking listening socket with SO_REUSEPORT (so every worker can
/// bind the same port) and SO_REUSEADDR.
fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let l = socket.listen(1024)?;
    l.into_std()
}

/// Accept connections of one listener on this worker until told to stop,
/// then drain them (bounded by `grace`).
async fn serve_listener(
    ctx: Arc<server::Listener>,
    listener: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register listener");
            return;
        }
    };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    // X-Forwarded-For's value, formatted once per connection.
                    let client_ip = forward::client_ip_value(remote);
                    conns.spawn(server::serve(ctx.clone(), stream, client_ip));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    ctx.drain.start();
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            remaining = conns.len(),
            "drain grace expired; closing remaining connections"
        );
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}
