//! `serin-demo-app`: a small HTTP service whose behaviour per version mirrors
//! the `argoproj/rollouts-demo` image tags, so Serin's demos can show healthy,
//! failing, slow, crashing and leaking revisions as local processes.
//!
//! Listens on 127.0.0.1:`$PORT` (else `--port`, else 8080).
//!
//! | Endpoint | Behaviour |
//! |----------|-----------|
//! | `GET /` (any unrouted path) | `{version, color, pid}` after `DEMO_LATENCY_MS`; HTTP 500 at `DEMO_ERROR_RATE` (seed with `DEMO_SEED`) |
//! | `GET /health`, `GET /ready` | serin-health liveness / readiness |
//! | `POST /admin/ready` `{"ready": bool}` | fail readiness on command, and back |
//! | `POST /admin/error-rate` `{"error_rate": 0..1}` | change the error rate live |
//! | `GET /admin/state` | current settings and leaked MiB |
//!
//!
//! Faults for `serin chaos` (each also a flag; a manifest's `env` selects them):
//!
//! | Variable | Fault |
//! |----------|-------|
//! | `DEMO_CRASH_AFTER_MS` | exit 1 this long after start: a crash loop under a platform that restarts it |
//! | `DEMO_ERROR_RATE` | HTTP 500 at this rate |
//! | `DEMO_LATENCY_MS` (+ `DEMO_LATENCY_PERCENTILE`) | extra latency on every request, or only above the percentile |
//! | `DEMO_LEAK_MB_PER_SEC` (+ `DEMO_LEAK_MAX_MB`) | resident memory growth; with `resources.limits.memory` an OOM kill |
//! | `DEMO_READY_FLAP_MS` | readiness alternates every this many ms |
//! | `DEMO_SLOW_START_MS` (+ `DEMO_SLOW_START_LATENCY_MS`) | ready at once but slow while cold: latency falls linearly to 0 |
//! | `DEMO_FAULT_PATH`, `DEMO_FAULT_HEADER` | HTTP 500 only for this path or header (`name: value`): a partial outage |
//!
//! A response with an injected fault carries `x-demo-fault: error|latency|slow-start|partial`.
//!
//! Presets by tag (`DEMO_VERSION`, image references accepted): `blue`,
//! `yellow`, `red`, … healthy; `bad-<color>` 50 % errors; `slow-<color>`
//! +200 ms. Explicit `DEMO_ERROR_RATE` / `DEMO_LATENCY_MS` override presets.
//! SIGTERM: readiness 503 at once, serve for `DEMO_DRAIN_MS`, then exit 0.

mod app;
mod config;

pub use app::FAULT_HEADER;

use std::process::ExitCode;

use clap::Parser;

/// Runs the demo service with these command-line arguments (the first is the
/// program name), exactly as the `serin-demo-app` binary does. `serin
/// demo-app` calls this so the demo needs no second binary.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // A host process (e.g. `serin`) may have installed a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let cli = match config::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let config = match config::Config::from_cli(cli, std::env::var("PORT").ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("serin-demo-app: {e}");
            return ExitCode::from(2);
        }
    };
    if config.crash_on_start {
        tracing::error!(version = %config.version, "crashing on start as configured (DEMO_CRASH_ON_START)");
        return ExitCode::from(1);
    }
    // One thread is plenty for a demo process, and `serin demo` runs several.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serin-demo-app: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serin-demo-app: {e:#}");
            ExitCode::from(1)
        }
    }
}
