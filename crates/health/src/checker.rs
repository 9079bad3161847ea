//! [`HealthChecker`]: runs dependency checks with timeouts, caching and
//! single-flight, and turns the results (plus warm-up and shutdown state) into
//! liveness and readiness answers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::check::{Check, CheckError};
use crate::report::{DependencyReport, HealthStatus, Status, go_duration, millis, timestamp};

/// Default per-check timeout. The seed's readiness probe gives up after 3 s
/// (`timeoutSeconds: 3`), so a check must answer well before that.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on a whole readiness evaluation, as the seed's 5 s context.
pub const DEFAULT_OVERALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a check result is reused before the dependency is asked again.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

/// One dependency: a named [`Check`] plus how readiness treats it.
pub struct Dependency {
    name: String,
    check: Arc<dyn Check>,
    required: bool,
    timeout: Option<Duration>,
    cache_ttl: Option<Duration>,
}

impl Dependency {
    /// A required dependency named `name` (the key in `dependencies`).
    pub fn new(name: impl Into<String>, check: impl Check) -> Self {
        Self {
            name: name.into(),
            check: Arc::new(check),
            required: true,
            timeout: None,
            cache_ttl: None,
        }
    }

    /// Makes the dependency optional: when it fails readiness stays 200 but
    /// reports `degraded: true`.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Overrides the checker's default timeout for this dependency.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Overrides the checker's default cache period for this dependency
    /// (`Duration::ZERO` runs the check on every probe, still single-flight).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }
}

/// Builder for [`HealthChecker`]; see [`HealthChecker::builder`].
pub struct HealthCheckerBuilder {
    version: String,
    check_timeout: Duration,
    overall_timeout: Duration,
    cache_ttl: Duration,
    dependencies: Vec<Dependency>,
}

impl HealthCheckerBuilder {
    /// The `version` reported by both probes.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Default per-check timeout (default [`DEFAULT_CHECK_TIMEOUT`]).
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// Upper bound on one readiness evaluation (default
    /// [`DEFAULT_OVERALL_TIMEOUT`]); checks still running then are reported as
    /// timed out. Per-check timeouts are clamped to it.
    pub fn overall_timeout(mut self, timeout: Duration) -> Self {
        self.overall_timeout = timeout;
        self
    }

    /// Default cache period for check results (default [`DEFAULT_CACHE_TTL`]).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Adds a dependency checked by readiness.
    pub fn dependency(mut self, dependency: Dependency) -> Self {
        self.dependencies.push(dependency);
        self
    }

    /// Builds the checker; uptime counts from here.
    pub fn build(self) -> HealthChecker {
        let overall = self.overall_timeout;
        let slots = self
            .dependencies
            .into_iter()
            .map(|d| {
                Arc::new(Slot {
                    timeout: d.timeout.unwrap_or(self.check_timeout).min(overall),
                    ttl: d.cache_ttl.unwrap_or(self.cache_ttl),
                    name: d.name,
                    required: d.required,
                    check: d.check,
                    last: Mutex::new(None),
                    flight: tokio::sync::Mutex::new(()),
                    runs: AtomicU64::new(0),
                })
            })
            .collect();
        HealthChecker {
            inner: Arc::new(Inner {
                version: self.version,
                started: Instant::now(),
                overall_timeout: overall,
                slots,
                warmups: Mutex::new(BTreeMap::new()),
                next_warmup: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                last_ready: Mutex::new(None),
            }),
        }
    }
}

/// Liveness and readiness for one service. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct HealthChecker {
    inner: Arc<Inner>,
}

struct Inner {
    version: String,
    started: Instant,
    overall_timeout: Duration,
    slots: Vec<Arc<Slot>>,
    warmups: Mutex<BTreeMap<u64, String>>,
    next_warmup: AtomicU64,
    shutting_down: AtomicBool,
    /// Last readiness answer, to log transitions once rather than every probe.
    last_ready: Mutex<Option<bool>>,
}

/// A probe answer: HTTP status plus JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResponse {
    /// `true` → HTTP 200, `false` → HTTP 503.
    pub ok: bool,
    /// The JSON body.
    pub body: HealthStatus,
}

impl ProbeResponse {
    /// 200 or 503.
    pub fn status_code(&self) -> http::StatusCode {
        if self.ok {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// An `http::Response` with a JSON body, usable from any tower/hyper
    /// service; probes must never be cached by intermediaries.
    pub fn into_http_response(self) -> http::Response<String> {
        let status = self.status_code();
        // Serialising a struct of strings, numbers and maps cannot fail; keep
        // a valid body anyway rather than panic.
        let body = serde_json::to_string(&self.body)
            .unwrap_or_else(|e| format!(r#"{{"status":"not_ready","reason":"{e}"}}"#));
        let mut resp = http::Response::new(body);
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        resp
    }
}

/// Keeps readiness at 503 until [`done`](WarmupGuard::done) is called.
/// Dropping it without `done` leaves the service not ready — a warm-up that
/// failed must not let traffic in.
#[must_use = "readiness stays 503 until `done()` is called"]
pub struct WarmupGuard {
    inner: Arc<Inner>,
    id: u64,
    name: String,
}

impl WarmupGuard {
    /// Reports this warm-up step finished.
    pub fn done(self) {
        lock(&self.inner.warmups).remove(&self.id);
        tracing::info!(warmup = %self.name, "warm-up step done");
    }
}

impl Drop for WarmupGuard {
    fn drop(&mut self) {
        if lock(&self.inner.warmups).contains_key(&self.id) {
            tracing::warn!(warmup = %self.name, "warm-up guard dropped before done(); readiness stays 503");
        }
    }
}

impl HealthChecker {
    /// Starts building a checker.
    pub fn builder() -> HealthCheckerBuilder {
        HealthCheckerBuilder {
            version: "unknown".to_owned(),
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            overall_timeout: DEFAULT_OVERALL_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            dependencies: Vec::new(),
        }
    }

    /// Registers a warm-up step; readiness is 503 until every registered step
    /// reports [`WarmupGuard::done`]. Register before serving.
    pub fn warmup(&self, name: impl Into<String>) -> WarmupGuard {
        let name = name.into();
        let id = self.inner.next_warmup.fetch_add(1, Ordering::Relaxed);
        lock(&self.inner.warmups).insert(id, name.clone());
        WarmupGuard {
            inner: self.inner.clone(),
            id,
            name,
        }
    }

    /// Names of warm-up steps not yet done.
    pub fn pending_warmups(&self) -> Vec<String> {
        lock(&self.inner.warmups).values().cloned().collect()
    }

    /// Flips readiness to 503 for good (used by [`Shutdown`](crate::Shutdown)).
    pub fn begin_shutdown(&self) {
        if !self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            tracing::info!("shutdown started: readiness now 503");
        }
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// How many times the named dependency's check has actually run (not
    /// counting cache hits); `None` for an unknown name.
    pub fn check_runs(&self, name: &str) -> Option<u64> {
        self.inner
            .slots
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.runs.load(Ordering::SeqCst))
    }

    /// Liveness: 200 `{status:"ok", timestamp, version, uptime}`. Never runs
    /// dependency checks — a dead database must not get the pod restarted.
    pub fn liveness(&self) -> ProbeResponse {
        ProbeResponse {
            ok: true,
            body: self.body(Status::Ok),
        }
    }

    /// Readiness: runs every dependency check concurrently (through the cache
    /// and single-flight), each bounded by its timeout and all by the overall
    /// timeout. 503 while warming up, after shutdown began, or when a required
    /// dependency fails.
    pub async fn readiness(&self) -> ProbeResponse {
        if self.is_shutting_down() {
            // Answer at once: the point is to get out of load balancing fast.
            let checks = self.last_known();
            return self.readiness_body(false, Some("shutting down".to_owned()), checks);
        }
        let checks = self.run_checks().await;
        let pending = self.pending_warmups();
        let failed: Vec<&str> = checks
            .iter()
            .filter(|(_, r)| r.required && !r.healthy)
            .map(|(n, _)| n.as_str())
            .collect();
        let reason = if self.is_shutting_down() {
            Some("shutting down".to_owned())
        } else if !pending.is_empty() {
            Some(format!("warming up: {}", pending.join(", ")))
        } else if !failed.is_empty() {
            Some(format!(
                "required dependency failing: {}",
                failed.join(", ")
            ))
        } else {
            None
        };
        self.readiness_body(reason.is_none(), reason, checks)
    }

    fn readiness_body(
        &self,
        ok: bool,
        reason: Option<String>,
        checks: BTreeMap<String, DependencyReport>,
    ) -> ProbeResponse {
        {
            let mut last = lock(&self.inner.last_ready);
            if *last != Some(ok) {
                match &reason {
                    Some(r) => tracing::warn!(reason = %r, "readiness: not ready"),
                    None => tracing::info!("readiness: ready"),
                }
                *last = Some(ok);
            }
        }
        let mut body = self.body(if ok { Status::Ready } else { Status::NotReady });
        body.dependencies = Some(checks.iter().map(|(n, r)| (n.clone(), r.healthy)).collect());
        body.degraded = Some(checks.values().any(|r| !r.required && !r.healthy));
        body.checks = Some(checks);
        body.reason = reason;
        ProbeResponse { ok, body }
    }

    fn body(&self, status: Status) -> HealthStatus {
        let uptime = self.inner.started.elapsed();
        HealthStatus {
            status,
            timestamp: timestamp(SystemTime::now()),
            version: self.inner.version.clone(),
            dependencies: None,
            uptime: go_duration(uptime),
            uptime_seconds: uptime.as_secs_f64(),
            checks: None,
            degraded: None,
            reason: None,
        }
    }

    async fn run_checks(&self) -> BTreeMap<String, DependencyReport> {
        let deadline = tokio::time::Instant::now() + self.inner.overall_timeout;
        // Spawned, not joined in place: if the probe's connection goes away the
        // checks still finish (bounded by their timeouts) and fill the cache,
        // and one slow check never delays starting the others.
        let handles: Vec<_> = self
            .inner
            .slots
            .iter()
            .map(|slot| (slot.clone(), tokio::spawn(slot.clone().evaluate())))
            .collect();
        let mut out = BTreeMap::new();
        for (slot, handle) in handles {
            let report = match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(report)) => report,
                Ok(Err(_join)) => slot.failure(CheckError::Panicked, Duration::ZERO),
                Err(_) => slot.failure(
                    CheckError::Timeout(self.inner.overall_timeout),
                    self.inner.overall_timeout,
                ),
            };
            out.insert(slot.name.clone(), report);
        }
        out
    }

    fn last_known(&self) -> BTreeMap<String, DependencyReport> {
        let now = Instant::now();
        self.inner
            .slots
            .iter()
            .filter_map(|s| s.last().map(|o| (s.name.clone(), s.report(&o, true, now))))
            .collect()
    }
}

struct Slot {
    name: String,
    required: bool,
    timeout: Duration,
    ttl: Duration,
    check: Arc<dyn Check>,
    last: Mutex<Option<Outcome>>,
    /// Held while the check runs: a check never runs twice concurrently.
    flight: tokio::sync::Mutex<()>,
    runs: AtomicU64,
}

#[derive(Clone)]
struct Outcome {
    error: Option<String>,
    latency: Duration,
    finished: Instant,
}

impl Slot {
    fn last(&self) -> Option<Outcome> {
        lock(&self.last).clone()
    }

    /// The stored outcome if it may be reused for a request made at `asked`:
    /// still within its TTL, or finished after the request arrived (it ran
    /// while this request waited for the single-flight lock).
    fn reusable(&self, asked: Instant) -> Option<Outcome> {
        self.last()
            .filter(|o| o.finished >= asked || o.finished.elapsed() < self.ttl)
    }

    async fn evaluate(self: Arc<Self>) -> DependencyReport {
        let asked = Instant::now();
        if let Some(o) = self.reusable(asked) {
            return self.report(&o, true, Instant::now());
        }
        let _flight = self.flight.lock().await;
        if let Some(o) = self.reusable(asked) {
            return self.report(&o, true, Instant::now());
        }
        self.runs.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.check.check()).await {
            Ok(r) => r,
            Err(_) => Err(CheckError::Timeout(self.timeout)),
        };
        let finished = Instant::now();
        if let Err(e) = &result {
            tracing::debug!(dependency = %self.name, error = %e, "dependency check failed");
        }
        let outcome = Outcome {
            error: result.err().map(|e| e.to_string()),
            latency: finished - start,
            finished,
        };
        *lock(&self.last) = Some(outcome.clone());
        self.report(&outcome, false, finished)
    }

    fn report(&self, o: &Outcome, cached: bool, now: Instant) -> DependencyReport {
        DependencyReport {
            healthy: o.error.is_none(),
            required: self.required,
            latency_ms: millis(o.latency),
            error: o.error.clone(),
            cached,
            age_ms: millis(now.saturating_duration_since(o.finished)),
        }
    }

    fn failure(&self, error: CheckError, latency: Duration) -> DependencyReport {
        DependencyReport {
            healthy: false,
            required: self.required,
            latency_ms: millis(latency),
            error: Some(error.to_string()),
            cached: false,
            age_ms: 0.0,
        }
    }
}

/// Locks a std mutex, recovering from poisoning: the guarded data is plain
/// state that stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
