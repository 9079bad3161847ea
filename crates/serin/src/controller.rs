//! `serin controller`: run the rollout engine against a Kubernetes cluster
//! (crates/platform_kube); this module only parses arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Arguments of `serin controller`.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Reconcile every Rollout at least this often, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub resync_seconds: u64,
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async {
        let client =
            serin_platform_kube::connect(args.kubeconfig.as_deref(), args.context.as_deref())
                .await?;
        let opts = serin_platform_kube::ControllerOptions {
            namespace: args.namespace.clone(),
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            instance: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "serin-controller".into()),
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = serin_platform_kube::run_controller(client, opts) => r?,
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
