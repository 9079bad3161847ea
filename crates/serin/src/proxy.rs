//! `serin proxy`: run the data plane as its own long-lived process, so
//! traffic keeps flowing while the control plane restarts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `serin proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Address of the admin API (`PUT /v1/config`, `/metrics`, `/v1/stats`);
    /// port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub admin: SocketAddr,
    /// Initial config (the JSON `PUT /v1/config` takes); none starts empty.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The admin API's bearer token: read from FILE (which only its owner
    /// may read), or written there (0600) when FILE does not exist. Without
    /// it a random token is made and printed as `admin-token TOKEN`.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Accept an admin address and Service listen addresses beyond
    /// loopback (refused by default).
    #[arg(long)]
    pub allow_non_loopback: bool,
}

/// Run until SIGTERM or Ctrl-C, then drain in-flight requests and exit 0.
pub fn run(args: &ProxyArgs) -> anyhow::Result<ExitCode> {
    let initial = match &args.config {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            serin_proxy::ProxyConfig::from_json(&bytes)
                .with_context(|| format!("{}: invalid proxy config", path.display()))?
        }
        None => serin_proxy::ProxyConfig::default(),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let (admin_token, print_token) = match &args.admin_token_file {
        Some(path) => (serin_proxy::AdminToken::from_file_or_create(path)?, false),
        None => (serin_proxy::AdminToken::random()?, true),
    };
    let options = serin_proxy::ProxyOptions {
        admin: args.admin,
        admin_token,
        allow_non_loopback: args.allow_non_loopback,
    };
    runtime.block_on(async {
        let proxy = serin_proxy::Proxy::start_with(options, initial).await?;
        println!("admin {}", proxy.admin_addr());
        if print_token {
            println!("admin-token {}", proxy.admin_token().expose());
        }
        for s in proxy.config().services {
            println!("service {} {}", s.name, s.listen);
        }
        wait_for_signal().await?;
        eprintln!("serin proxy: stopping; draining in-flight requests");
        proxy.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            _ = term.recv() => {}
            r = tokio::signal::ctrl_c() => r.context("cannot watch Ctrl-C")?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}
