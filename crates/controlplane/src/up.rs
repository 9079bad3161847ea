//! `serin up`: start (or re-adopt) the proxy process, the local platform and
//! the store; serve the API; reconcile continuously; reload manifests when
//! their files change (GitOps on one machine).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serin_spec::{ManifestSet, Severity};

use crate::proxy_client::ProxyClient;

/// The longest the reconcile loop sleeps without a reason: a resync, as
/// kube-rs controllers do, which also notices a proxy serving another route.
const RESYNC: Duration = Duration::from_secs(5);

/// The shortest pause between two passes when the last one acted.
const ACTED_FLOOR: Duration = Duration::from_millis(10);
use crate::reconciler::ControlPlane;
use crate::store::Store;

/// `serin.yaml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// Where state lives (default `.serin`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// The control plane API address (default 127.0.0.1:0).
    #[serde(default)]
    pub api: Option<SocketAddr>,
    /// Fixed listener ports by Service / VirtualService / Rollout name.
    #[serde(default)]
    pub services: BTreeMap<String, u16>,
    /// Image → command mapping for the local platform.
    #[serde(default)]
    pub images: serde_json::Value,
    /// Notification services, subscriptions and templates (Slack, webhook).
    #[serde(default)]
    pub notifications: Option<serin_notify::NotificationsConfig>,
    /// The feature-flag server, served on the control plane's API address
    /// (OFREP, management API, SSE) with its own keys.
    #[serde(default)]
    pub flags: Option<FlagsConfig>,
    /// Serve the API (and the flag server on its address) over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_tls: Option<ApiTlsConfig>,
    /// Outbound settings of the prometheus and web analysis providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisConfig>,
    /// Run only images that have an `images:` entry, by their mapped
    /// entrypoint: a container `command:` or an unmapped image is refused
    /// (apply answers 422). Default: on when `api` is not a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped_images_only: Option<bool>,
    /// Connection cap and header/idle timeout of the API (and the flag
    /// server on its address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_limits: Option<serin_flags_server::limits::ConnLimits>,
}

impl ServerConfig {
    /// Makes the TLS file paths (`apiTls.*`, `analysis.ca`,
    /// `notifications.ca`) that are relative absolute against `base`, the
    /// config file's directory, so that they mean the same wherever `serin up`
    /// runs from.
    pub fn resolve_tls_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = &mut self.api_tls {
            fix(&mut t.cert);
            fix(&mut t.key);
            if let Some(ca) = &mut t.ca {
                fix(ca);
            }
        }
        if let Some(ca) = self.analysis.as_mut().and_then(|a| a.ca.as_mut()) {
            fix(ca);
        }
        if let Some(ca) = self.notifications.as_mut().and_then(|n| n.ca.as_mut()) {
            fix(ca);
        }
    }
}

/// `apiTls:` in serin.yaml: serve the control-plane API over https.
///
/// ```yaml
/// apiTls:
///   cert: tls/serin.pem       # PEM certificate chain, leaf first
///   key: tls/serin-key.pem    # PEM private key (PKCS#8, PKCS#1 or SEC1)
///   ca: tls/ca.pem            # optional: the CA local CLI commands trust
///   serverName: localhost     # optional: the name they verify
/// ```
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiTlsConfig {
    /// Certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Private key of the leaf certificate (PEM).
    pub key: PathBuf,
    /// The CA that CLI commands on this machine trust for the API (recorded
    /// in `endpoints.json`). Default: the certificate file itself, which is
    /// enough for a self-signed certificate; the system roots are trusted
    /// too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The name CLI commands verify the certificate against. Default: the
    /// API's IP address if the certificate names it, else `localhost` if it
    /// names that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// `analysis:` in serin.yaml.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisConfig {
    /// A PEM file of extra CA certificates the prometheus and web providers
    /// trust for `https://`, besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// `flags:` in serin.yaml.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagsConfig {
    /// Serve this flagd file (read-only for the management API) …
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// … or keep flags in this redb store (default `<stateDir>/flags.redb`).
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// Keys file (server, client and admin keys, hashed).
    #[serde(default)]
    pub keys: Option<PathBuf>,
    /// Environment served to unauthenticated callers and from a file.
    #[serde(default = "default_environment")]
    pub environment: String,
}

fn default_environment() -> String {
    "production".into()
}

/// Where a running control plane can be reached (written to the state dir
/// so that CLI commands find it).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// Control plane API.
    pub api: SocketAddr,
    /// Proxy admin API.
    pub proxy_admin: SocketAddr,
    /// Proxy process id.
    pub proxy_pid: Option<u32>,
    /// Process id of the `serin up` serving this state dir, so that
    /// `serin down` can stop it first (else it would recreate the replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_pid: Option<u32>,
    /// Set when the API is served over TLS (`https://`): how clients on this
    /// machine verify it. Absent means plain `http://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_tls: Option<ApiTlsEndpoint>,
}

impl Endpoints {
    /// `https://ADDR` or `http://ADDR`.
    pub fn api_url(&self) -> String {
        let scheme = if self.api_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.api)
    }
}

/// How a local client verifies a TLS control plane.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiTlsEndpoint {
    /// PEM file of the CA (or self-signed certificate) to trust, absolute.
    pub ca: PathBuf,
    /// The name to verify the server's certificate against.
    pub server_name: String,
}

/// The API's TLS, checked before anything starts.
struct ApiTls {
    config: Arc<serin_tls::ServerConfig>,
    cert: PathBuf,
    ca: PathBuf,
    server_name: Option<String>,
}

impl ApiTls {
    fn load(t: &ApiTlsConfig) -> anyhow::Result<Self> {
        let config = serin_tls::server_config(&t.cert, &t.key)
            .map_err(|e| anyhow::anyhow!("apiTls: {e}"))?;
        let cert = std::path::absolute(&t.cert)?;
        let ca = match &t.ca {
            Some(ca) => {
                // Read now: a CA file the CLI cannot use is a config error.
                serin_tls::load_certs(ca).map_err(|e| anyhow::anyhow!("apiTls.ca: {e}"))?;
                std::path::absolute(ca)?
            }
            None => cert.clone(),
        };
        if let Some(name) = &t.server_name
            && !serin_tls::cert_valid_for(&t.cert, name)?
        {
            anyhow::bail!(
                "apiTls.serverName: the certificate {} is not valid for {name:?}",
                t.cert.display()
            );
        }
        Ok(ApiTls {
            config,
            cert,
            ca,
            server_name: t.server_name.clone(),
        })
    }

    /// The name local clients verify: the configured one, else the API's IP
    /// or `localhost`, whichever the certificate names.
    fn endpoint(&self, api: SocketAddr) -> ApiTlsEndpoint {
        let ip = if api.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            api.ip()
        };
        let valid = |n: &str| serin_tls::cert_valid_for(&self.cert, n).unwrap_or(false);
        let server_name = match &self.server_name {
            Some(n) => n.clone(),
            None if valid(&ip.to_string()) => ip.to_string(),
            None if valid("localhost") => "localhost".into(),
            None => {
                tracing::warn!(
                    cert = %self.cert.display(),
                    "the API certificate names neither {ip} nor localhost: local CLI commands will fail to verify it; set apiTls.serverName"
                );
                ip.to_string()
            }
        };
        ApiTlsEndpoint {
            ca: self.ca.clone(),
            server_name,
        }
    }
}

/// [`serin_tls::TlsListener`] as an axum listener.
struct TlsApiListener(serin_tls::TlsListener);

impl axum::serve::Listener for TlsApiListener {
    type Io = serin_tls::ServerTlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}

/// The configuration the last `serin up` on this state dir ran with.
pub fn read_config(state_dir: &Path) -> anyhow::Result<ServerConfig> {
    let p = state_dir.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// Reads the endpoints file of a state dir.
pub fn read_endpoints(state_dir: &Path) -> anyhow::Result<Endpoints> {
    let p = state_dir.join("endpoints.json");
    let text = std::fs::read_to_string(&p).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (is `serin up` running with this --state-dir?)",
            p.display()
        )
    })?;
    Ok(serde_json::from_str(&text)?)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // config.json holds webhook URLs and headers: this user's only.
    std::io::Write::write_all(&mut crate::secure::private_file(&tmp)?, bytes)?;
    std::fs::rename(tmp, path)
}

/// Loads and lints manifests; `Err` carries the rendered error list.
pub fn load_checked(paths: &[PathBuf]) -> Result<ManifestSet, String> {
    let set = ManifestSet::load_paths(paths);
    let diags = serin_spec::lint(&set);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors.join("\n"))
    }
}

/// Fingerprint of the manifest files (path, size, mtime), to notice edits.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64, Option<std::time::SystemTime>)>) {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut entries: Vec<PathBuf> =
                    rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for e in entries {
                    walk(&e, out);
                }
            }
        } else if let Ok(m) = std::fs::metadata(p) {
            out.push((p.to_path_buf(), m.len(), m.modified().ok()));
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out);
    }
    out
}

/// A free loopback port (bind to :0 and release).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `serin proxy` as its own process group, so it outlives this
/// control plane, or adopts the one recorded in the state dir. The proxy's
/// admin token lives in `STATE_DIR/proxy-admin.token` (0600), made here
/// before the proxy starts and read by both.
async fn ensure_proxy(
    state_dir: &Path,
    serin_exe: &Path,
) -> anyhow::Result<(ProxyClient, Option<u32>)> {
    let token_file = state_dir.join("proxy-admin.token");
    if let Ok(ep) = read_endpoints(state_dir) {
        let token = serin_proxy::AdminToken::from_file(&token_file).ok();
        let probe = ProxyClient::new(
            ep.proxy_admin,
            token.clone().unwrap_or(serin_proxy::AdminToken::random()?),
        );
        if probe.healthy().await {
            if token.is_some() && probe.authorized().await {
                tracing::info!(admin = %ep.proxy_admin, "re-adopted the running proxy");
                return Ok((probe, ep.proxy_pid));
            }
            anyhow::bail!(
                "a proxy answers on {} but does not accept the admin token in {} (started by an older serin?); stop it with `serin down` first",
                ep.proxy_admin,
                token_file.display()
            );
        }
    }
    let token = serin_proxy::AdminToken::from_file_or_create(&token_file)?;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = crate::secure::private_file(&state_dir.join("proxy.log"))?;
    let mut cmd = std::process::Command::new(serin_exe);
    cmd.arg("proxy")
        .arg("--admin")
        .arg(admin.to_string())
        .arg("--admin-token-file")
        .arg(&token_file)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn()?;
    let pid = child.id();
    let client = ProxyClient::new(admin, token);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.healthy().await {
        if Instant::now() > deadline {
            anyhow::bail!(
                "serin proxy did not answer on {admin} within 10 s (see {})",
                state_dir.join("proxy.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((client, Some(pid)))
}

/// The platform options of a state dir: replicas work in
/// [`serin_platform_local::pods_dir_beside`] it, not inside it.
pub fn platform_options(state_dir: &Path) -> std::io::Result<serin_platform_local::Options> {
    let pods_dir = serin_platform_local::pods_dir_beside(state_dir);
    crate::secure::private_dir(&pods_dir)?;
    Ok(serin_platform_local::Options {
        pods_dir: Some(pods_dir),
        ..serin_platform_local::Options::default()
    })
}

/// A running control plane.
pub struct Running {
    /// The control plane.
    pub cp: Arc<ControlPlane>,
    /// Where it can be reached.
    pub endpoints: Endpoints,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Kept alive for its background tasks (file watcher, store listener).
    _flags: Option<serin_flags_server::FlagServer>,
}

impl Running {
    /// Stops the API and the loop; replicas and the proxy keep running for
    /// the next `serin up` to re-adopt.
    pub async fn stop(self) {
        self.stop_inner(false).await;
    }

    /// Stops everything this control plane runs: the loop, the replicas and
    /// the proxy process.
    pub async fn stop_all(self) {
        let pid = self.endpoints.proxy_pid;
        self.stop_inner(true).await;
        if let Some(pid) = pid {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }

    async fn stop_inner(self, terminate_replicas: bool) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.cp.platform().shutdown(terminate_replicas).await;
    }
}

/// Starts everything. `serin_exe` is the binary that provides `serin proxy`.
pub async fn start(
    config: ServerConfig,
    paths: Vec<PathBuf>,
    serin_exe: PathBuf,
) -> anyhow::Result<Running> {
    let state_dir = config
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(".serin"));
    // TLS files and the notification settings are checked before anything
    // starts: a bad certificate, key or CA starts nothing.
    let api_tls = match &config.api_tls {
        Some(t) => {
            Some(ApiTls::load(t).map_err(|e| anyhow::anyhow!("{e:#}; nothing was started"))?)
        }
        None => None,
    };
    let analysis_providers = match config.analysis.as_ref().and_then(|a| a.ca.as_ref()) {
        Some(ca) => Some(
            serin_analysis::Providers::with_ca(ca)
                .map_err(|e| anyhow::anyhow!("analysis.ca: {e}; nothing was started"))?,
        ),
        None => None,
    };
    let notifier = match &config.notifications {
        Some(n) => Some(
            serin_notify::Notifier::new(n.clone())
                .map_err(|e| anyhow::anyhow!("{e}; nothing was started"))?,
        ),
        None => None,
    };
    let api_addr = config
        .api
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    crate::secure::check_flags_exposure(&config, api_addr)
        .map_err(|e| anyhow::anyhow!("{e:#}; nothing was started"))?;
    crate::secure::private_dir(&state_dir)?;
    let set = load_checked(&paths)
        .map_err(|e| anyhow::anyhow!("manifests have errors; nothing was started:\n{e}"))?;
    // `serin down` (and the next `serin up`) must be able to re-adopt the
    // replicas, which needs the same image mapping.
    write_atomic(
        &state_dir.join("config.json"),
        &serde_json::to_vec_pretty(&config)?,
    )?;
    let (proxy, proxy_pid) = ensure_proxy(&state_dir, &serin_exe).await?;
    let images: serin_platform_local::ImageMap =
        serde_json::from_value(if config.images.is_null() {
            serde_json::json!({})
        } else {
            config.images.clone()
        })?;
    let images =
        images.with_mapped_images_only(crate::secure::mapped_images_only(&config, api_addr));
    let (refused, warnings): (Vec<_>, Vec<_>) = crate::secure::policy_diagnostics(&set, &images)
        .into_iter()
        .partition(|d| d.severity == serin_spec::Severity::Error);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    if !refused.is_empty() {
        let list: Vec<String> = refused.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "manifests have errors; nothing was started:\n{}",
            list.join("\n")
        );
    }
    let platform = serin_platform_local::LocalPlatform::start_with(
        state_dir.join("platform"),
        images,
        platform_options(&state_dir)?,
    )
    .await?;
    let store = Store::open(&state_dir.join("serin.redb"))?;
    let cp = Arc::new(ControlPlane::new(
        set,
        store,
        platform,
        proxy.clone(),
        config.services.clone(),
    ));
    let mut cp =
        Arc::try_unwrap(cp).map_err(|_| anyhow::anyhow!("control plane shared too early"))?;
    if let Some(p) = analysis_providers {
        cp = cp.with_analysis_providers(p);
    }
    let cp = Arc::new(cp.with_recorder(crate::recorder::Recorder::open(
        &state_dir.join("history.redb"),
        notifier,
    )?));
    cp.set_watched(paths.clone());
    // A first admin token for the local CLI, readable only by this user. More
    // tokens (viewer, deployer) come from `serin token NAME --role …`.
    let token_file = state_dir.join("admin.token");
    if cp.tokens().is_empty() || !token_file.exists() {
        let token = cp.create_token("local-admin", crate::auth::Role::Admin)?;
        let tmp = token_file.with_extension("tmp");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(token.as_bytes())?;
        }
        std::fs::rename(tmp, &token_file)?;
    }
    let listener = tokio::net::TcpListener::bind(api_addr).await?;
    let api = listener.local_addr()?;
    let endpoints = Endpoints {
        api,
        proxy_admin: proxy.admin(),
        proxy_pid,
        up_pid: Some(std::process::id()),
        api_tls: api_tls.as_ref().map(|t| t.endpoint(api)),
    };
    write_atomic(
        &state_dir.join("endpoints.json"),
        &serde_json::to_vec_pretty(&endpoints)?,
    )?;
    let mut tasks = Vec::new();
    let mut router = crate::api::router(Arc::clone(&cp));
    let mut flag_server = None;
    if let Some(f) = &config.flags {
        let source = match &f.file {
            Some(file) => serin_flags_server::FlagSource::File(file.clone()),
            None => {
                let path = f
                    .store
                    .clone()
                    .unwrap_or_else(|| state_dir.join("flags.redb"));
                serin_flags_server::FlagSource::Store(Arc::new(
                    serin_flags_server::RedbStore::open(path)?,
                ))
            }
        };
        let keys = match &f.keys {
            Some(p) => serin_flags_server::KeyRing::from_path(p)?,
            None => serin_flags_server::KeyRing::empty(),
        };
        let server = serin_flags_server::FlagServer::start(serin_flags_server::ServerOptions {
            source,
            keys,
            environment: f.environment.clone(),
        })
        .await?;
        for note in server.notes() {
            tracing::info!("flags: {note}");
        }
        router = router.merge(server.router());
        cp.set_flags_router(server.router());
        flag_server = Some(server);
    }
    router = router.merge(crate::flags_api::router(
        Arc::clone(&cp),
        flag_server
            .as_ref()
            .map(serin_flags_server::FlagServer::manager),
    ));
    // Everything in the state dir (stores, logs, files of older versions) is
    // this user's only.
    crate::secure::lock_down(&state_dir)?;
    let limits = config.api_limits.unwrap_or_default();
    let router = crate::guard::layer(router);
    match api_tls {
        Some(tls) => {
            let listener = TlsApiListener(serin_tls::TlsListener::new(listener, tls.config)?);
            tasks.push(tokio::spawn(serin_flags_server::limits::serve_router(
                listener, router, limits,
            )));
        }
        None => tasks.push(tokio::spawn(serin_flags_server::limits::serve_router(
            listener, router, limits,
        ))),
    }
    // FlagRollouts: guarded flag rollouts, written in-process to the flag server.
    tasks.push(tokio::spawn(crate::flag_rollouts::run(
        Arc::clone(&cp),
        flag_server
            .as_ref()
            .map(serin_flags_server::FlagServer::manager),
        config
            .flags
            .as_ref()
            .map_or_else(default_environment, |f| f.environment.clone()),
    )));
    // Sample the proxy's counters for the builtin analysis provider.
    let sample_cp = Arc::clone(&cp);
    tasks.push(tokio::spawn(async move {
        loop {
            match sample_cp.proxy().stats().await {
                Ok(s) => sample_cp.history().push(serin_clock::now_ms(), s),
                Err(e) => tracing::debug!("proxy stats: {e:#}"),
            }
            tokio::time::sleep(crate::proxy_counters_provider::SAMPLE_EVERY).await;
        }
    }));
    // Manifest files: checked every second; a valid change wakes the loop.
    let files_cp = Arc::clone(&cp);
    let watched = paths.clone();
    tasks.push(tokio::spawn(async move {
        let mut files = fingerprint(&watched);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = fingerprint(&watched);
            if now != files {
                files = now;
                match load_checked(&watched) {
                    Ok(set) => {
                        tracing::info!("manifests changed: applying");
                        files_cp.set_manifests(set);
                        files_cp.wake().notify_one();
                    }
                    Err(errors) => tracing::error!(
                        "manifests changed but have errors; keeping the previous ones:\n{errors}"
                    ),
                }
            }
        }
    }));
    // The reconcile loop: no fixed tick. It runs when the platform reports a
    // change, when something wakes it (an analysis phase, an API operation,
    // a manifest change), or when the engine or a backoff asks for a time;
    // at the latest after RESYNC, which also catches proxy drift.
    let loop_cp = Arc::clone(&cp);
    tasks.push(tokio::spawn(async move {
        let mut changes = loop_cp.platform().changes();
        let wake = loop_cp.wake();
        loop {
            let next = match loop_cp.reconcile_all().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!("reconcile: {e:#}");
                    Some(serin_clock::now_ms().saturating_add(1_000))
                }
            };
            let now = serin_clock::now_ms();
            let wait = next.map_or(RESYNC, |at| {
                Duration::from_millis(at.saturating_sub(now)).min(RESYNC)
            });
            // Acted just now: the next step should see the result, but a
            // step that keeps acting must never spin a core.
            let wait = wait.max(ACTED_FLOOR);
            tokio::select! {
                _ = changes.changed() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }));
    Ok(Running {
        cp,
        endpoints,
        tasks,
        _flags: flag_server,
    })
}
