//! Liveness and readiness probes for Rust services, as Serin's rollouts need
//! them: probes that tell the truth.
//!
//! - **Liveness** (`/health`) answers 200 `{status:"ok", timestamp, version, uptime}`
//!   and never touches dependencies.
//! - **Readiness** (`/ready`) runs every [`Dependency`] check concurrently, each
//!   with its own timeout and all within an overall bound (5 s by default, as the
//!   seed's `health.go`), and answers 200 `{status:"ready", …}` or 503
//!   `{status:"not_ready", …}`. The body keeps the seed's `HealthStatus` field
//!   names (`status`, `timestamp`, `version`, `dependencies`, `uptime`) and adds
//!   per-dependency `checks` (latency, error, cache state), `degraded` and `reason`.
//! - Optional dependencies degrade readiness without failing it.
//! - Results are cached per dependency for a configurable period, and a check
//!   never runs twice concurrently: probes arriving meanwhile share its result.
//! - [`HealthChecker::warmup`] keeps readiness 503 until warm-up work is done.
//! - [`Shutdown`] flips readiness to 503 on SIGTERM (or [`Shutdown::trigger`]),
//!   keeps serving for a drain period, then lets the server stop.
//!
//! Built-in checks: [`TcpCheck`], [`HttpCheck`] (feature `http-check`, default),
//! [`PostgresCheck`] (feature `postgres`), [`RedisCheck`] (feature `redis`);
//! anything else implements [`Check`] or uses [`check_fn`].
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use serin_health::{Dependency, HealthChecker, Shutdown, TcpCheck, HttpCheck};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let checker = HealthChecker::builder()
//!     .version(env!("CARGO_PKG_VERSION"))
//!     .cache_ttl(Duration::from_secs(1))
//!     .dependency(Dependency::new("database", TcpCheck::new("127.0.0.1:5432")))
//!     .dependency(
//!         Dependency::new("recommendations", HttpCheck::new("http://127.0.0.1:9000/health")?)
//!             .optional()
//!             .timeout(Duration::from_millis(500)),
//!     )
//!     .build();
//!
//! let warmup = checker.warmup("load caches");
//! let shutdown = Shutdown::new(&checker, Duration::from_secs(15));
//! shutdown.listen_for_signals()?;
//!
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "hello" }))
//!     .merge(serin_health::router(checker.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // ... load caches, then:
//! warmup.done();
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(shutdown.drained())
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Without axum, [`HealthChecker::liveness`] and [`HealthChecker::readiness`]
//! return a [`ProbeResponse`] whose [`ProbeResponse::into_http_response`] is a
//! plain `http::Response<String>` for any hyper or tower service.

mod check;
mod checker;
mod checks;
#[cfg(feature = "axum")]
mod handlers;
mod report;
mod shutdown;

pub use check::{Check, CheckError, CheckFuture, FnCheck, check_fn};
pub use checker::{
    DEFAULT_CACHE_TTL, DEFAULT_CHECK_TIMEOUT, DEFAULT_OVERALL_TIMEOUT, Dependency, HealthChecker,
    HealthCheckerBuilder, ProbeResponse, WarmupGuard,
};
#[cfg(feature = "postgres")]
pub use checks::PostgresCheck;
#[cfg(feature = "redis")]
pub use checks::RedisCheck;
pub use checks::TcpCheck;
#[cfg(feature = "http-check")]
pub use checks::{HttpCheck, HttpCheckError};
#[cfg(feature = "axum")]
pub use handlers::{liveness_handler, readiness_handler, router, router_at};
pub use report::{DependencyReport, HealthStatus, Status, go_duration};
pub use shutdown::{Phase, Shutdown};
