//! The HTTP app: routes, injected failures and latency, admin controls,
//! leak simulation, probes and graceful shutdown from serin-health.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use serin_health::{CheckError, Dependency, HealthChecker, Shutdown, check_fn};

use crate::config::{Config, validate_error_rate};

/// Name of the readiness dependency that `POST /admin/ready` controls.
const READY_SWITCH: &str = "ready-switch";

struct AppState {
    version: String,
    color: String,
    pid: u32,
    latency: Duration,
    /// `f64` bits, so the error rate can change live without a lock.
    error_rate: AtomicU64,
    rng: Mutex<StdRng>,
    ready: Arc<AtomicBool>,
    leaked_mb: Arc<AtomicU64>,
    /// Share of requests that get `latency` (1.0: all).
    latency_share: f64,
    started: tokio::time::Instant,
    slow_start: Duration,
    slow_start_latency: Duration,
    fault_path: Option<String>,
    fault_header: Option<(String, Option<String>)>,
}

impl AppState {
    fn error_rate(&self) -> f64 {
        f64::from_bits(self.error_rate.load(Ordering::SeqCst))
    }

    /// One draw per request, in arrival order: with a fixed seed the sequence
    /// of failures is reproducible.
    fn should_fail(&self) -> bool {
        let rate = self.error_rate();
        let draw: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        draw < rate
    }

    /// Whether this request is one of the slowed share.
    fn slowed(&self) -> bool {
        if self.latency.is_zero() {
            return false;
        }
        if self.latency_share >= 1.0 {
            return true;
        }
        let draw: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        draw < self.latency_share
    }

    /// Slow-start latency now: falls linearly from `slow_start_latency` to 0.
    fn cold_latency(&self) -> Duration {
        let age = self.started.elapsed();
        if age >= self.slow_start {
            return Duration::ZERO;
        }
        let left = 1.0 - age.as_secs_f64() / self.slow_start.as_secs_f64();
        self.slow_start_latency.mul_f64(left)
    }

    /// Whether the request matches the partial-outage fault (path or header).
    fn partial_fault(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let by_path = self.fault_path.as_deref().is_some_and(|p| uri.path() == p);
        let by_header = self.fault_header.as_ref().is_some_and(|(name, value)| {
            headers.get_all(name.as_str()).iter().any(|v| {
                value
                    .as_deref()
                    .is_none_or(|want| v.to_str().is_ok_and(|got| got.trim() == want))
            })
        });
        by_path || by_header
    }

    fn identity(&self) -> serde_json::Value {
        json!({ "version": self.version, "color": self.color, "pid": self.pid })
    }
}

type Shared = Arc<AppState>;

/// Runs the service until SIGTERM/SIGINT plus the drain period.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicBool::new(!config.ready_fail));
    let switch = ready.clone();
    let checker = HealthChecker::builder()
        .version(config.version.clone())
        .dependency(
            Dependency::new(
                READY_SWITCH,
                check_fn(move || {
                    let on = switch.load(Ordering::SeqCst);
                    async move {
                        if on {
                            Ok(())
                        } else {
                            Err(CheckError::msg(
                                "readiness failed on command (POST /admin/ready)",
                            ))
                        }
                    }
                }),
            )
            // A flip must show on the very next probe.
            .cache_ttl(Duration::ZERO),
        )
        .build();
    if !config.warmup.is_zero() {
        let guard = checker.warmup("demo warm-up");
        let warmup = config.warmup;
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            guard.done();
        });
    }
    if let Some(after) = config.crash_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            tracing::error!(
                after_ms = after.as_millis() as u64,
                "crashing as configured (DEMO_CRASH_AFTER_MS)"
            );
            std::process::exit(1);
        });
    }
    if let Some(period) = config.ready_flap {
        let flip = ready.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let was = flip.fetch_xor(true, Ordering::SeqCst);
                tracing::info!(ready = !was, "readiness flapped (DEMO_READY_FLAP_MS)");
            }
        });
    }
    let shutdown = Shutdown::new(&checker, config.drain);
    shutdown
        .listen_for_signals()
        .context("installing signal handlers")?;

    let rng = match config.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => rand::make_rng::<StdRng>(),
    };
    let state = Arc::new(AppState {
        version: config.version.clone(),
        color: config.color.clone(),
        pid: std::process::id(),
        latency: config.latency,
        error_rate: AtomicU64::new(config.error_rate.to_bits()),
        rng: Mutex::new(rng),
        ready,
        leaked_mb: Arc::new(AtomicU64::new(0)),
        latency_share: config.latency_share,
        started: tokio::time::Instant::now(),
        slow_start: config.slow_start,
        slow_start_latency: config.slow_start_latency,
        fault_path: config.fault_path.clone(),
        fault_header: config.fault_header.clone(),
    });
    if config.leak_mb_per_sec > 0.0 {
        tokio::spawn(leak(
            config.leak_mb_per_sec,
            config.leak_max_mb,
            state.leaked_mb.clone(),
        ));
    }

    let app = Router::new()
        .route("/admin/ready", post(set_ready))
        .route("/admin/error-rate", post(set_error_rate))
        .route("/admin/state", get(admin_state))
        .fallback(serve_any)
        .with_state(state)
        .merge(serin_health::router(checker));

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", config.port))?;
    let addr = listener.local_addr().context("local address")?;
    tracing::info!(
        %addr, version = %config.version, color = %config.color,
        error_rate = config.error_rate, latency_ms = config.latency.as_millis() as u64,
        "serin-demo-app listening"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.drained())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Response header naming the fault injected into this response (`error`,
/// `latency`, `slow-start`, `partial`), so load generators can tell a bad
/// response from a merely unlucky one.
pub const FAULT_HEADER: &str = "x-demo-fault";

/// `GET /` and every unrouted path: identity JSON, after the configured
/// latency, or a 500 at the configured rate or on the partial-fault match.
async fn serve_any(State(s): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let mut faults: Vec<&str> = Vec::new();
    let mut delay = Duration::ZERO;
    if s.slowed() {
        delay += s.latency;
        faults.push("latency");
    }
    let cold = s.cold_latency();
    if !cold.is_zero() {
        delay += cold;
        faults.push("slow-start");
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut body = s.identity();
    let mut status = StatusCode::OK;
    if s.partial_fault(&uri, &headers) {
        body["error"] = json!("injected failure on this path or header");
        status = StatusCode::INTERNAL_SERVER_ERROR;
        faults.push("partial");
    } else if s.should_fail() {
        body["error"] = json!("injected failure");
        status = StatusCode::INTERNAL_SERVER_ERROR;
        faults.push("error");
    }
    let mut res = (status, axum::Json(body)).into_response();
    if !faults.is_empty()
        && let Ok(v) = HeaderValue::from_str(&faults.join(","))
    {
        res.headers_mut().insert(FAULT_HEADER, v);
    }
    res
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadyBody {
    ready: bool,
}

/// `POST /admin/ready {"ready": false}` makes readiness fail (and `true` back).
async fn set_ready(State(s): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<ReadyBody>(&body) {
        Ok(b) => {
            s.ready.store(b.ready, Ordering::SeqCst);
            tracing::info!(ready = b.ready, "readiness switched on command");
            axum::Json(json!({ "ready": b.ready })).into_response()
        }
        Err(e) => bad_request(format!("expected {{\"ready\": bool}}: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorRateBody {
    error_rate: f64,
}

/// `POST /admin/error-rate {"error_rate": 0.3}` changes the error rate live.
async fn set_error_rate(State(s): State<Shared>, body: Bytes) -> Response {
    let rate = match serde_json::from_slice::<ErrorRateBody>(&body) {
        Ok(b) => b.error_rate,
        Err(e) => return bad_request(format!("expected {{\"error_rate\": number}}: {e}")),
    };
    match validate_error_rate(rate) {
        Ok(rate) => {
            s.error_rate.store(rate.to_bits(), Ordering::SeqCst);
            tracing::info!(error_rate = rate, "error rate changed");
            axum::Json(json!({ "error_rate": rate })).into_response()
        }
        Err(e) => bad_request(e),
    }
}

/// `GET /admin/state`: current live settings.
async fn admin_state(State(s): State<Shared>) -> Response {
    let mut body = s.identity();
    body["error_rate"] = json!(s.error_rate());
    body["latency_ms"] = json!(s.latency.as_millis() as u64);
    body["latency_share"] = json!(s.latency_share);
    body["ready"] = json!(s.ready.load(Ordering::SeqCst));
    body["leaked_mb"] = json!(s.leaked_mb.load(Ordering::SeqCst));
    axum::Json(body).into_response()
}

/// Leaks `mb_per_sec` MiB per second in 100 ms steps, writing every page so
/// the memory is resident (RSS grows, as a real leak's would), up to `max_mb`.
async fn leak(mb_per_sec: f64, max_mb: u64, leaked_mb: Arc<AtomicU64>) {
    const MIB: f64 = 1024.0 * 1024.0;
    let step_bytes = (mb_per_sec * MIB / 10.0) as usize;
    let max_bytes = max_mb.saturating_mul(1024 * 1024);
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    let mut total: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while total < max_bytes {
        tick.tick().await;
        hoard.push(vec![0xA5; step_bytes]);
        total += step_bytes as u64;
        leaked_mb.store(total / (1024 * 1024), Ordering::SeqCst);
    }
    tracing::warn!(max_mb, "leak cap reached; holding the memory");
    // Keep the hoard alive for the life of the process.
    std::future::pending::<()>().await;
    drop(hoard);
}
