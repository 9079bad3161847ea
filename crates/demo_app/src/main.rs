//! `serin-demo-app`: a small HTTP service whose behaviour per version mirrors
//! the `argoproj/rollouts-demo` image tags, so Serin's demos can show healthy,
//! failing, slow, crashing and leaking revisions as local processes.

mod app;
mod config;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = config::Cli::parse();
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
