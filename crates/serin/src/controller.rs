//! `serin controller`: run the rollout engine (and FlagRollouts) against a
//! Kubernetes cluster (crates/platform_kube); this module only parses
//! arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Arguments of `serin controller`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ControllerArgs {
    /// `install`: print the manifests instead of running.
    #[command(subcommand)]
    pub command: Option<ControllerCommand>,
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
    /// Reconcile every Rollout at least this often, in seconds (changes are
    /// watched; this bounds a missed event or a route changed behind
    /// Serin's back, and costs API calls per Rollout).
    #[arg(long, default_value_t = serin_platform_kube::DEFAULT_RESYNC_SECS, value_name = "SECONDS")]
    pub resync_seconds: u64,
    /// Act only while holding the Lease `serin-controller` (run several
    /// replicas: one acts, another takes over within ~15 s of its death).
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of that Lease (default: --namespace, else `default`).
    #[arg(long, value_name = "NS")]
    pub lease_namespace: Option<String>,
    /// Serve Prometheus metrics (`GET /metrics`: the same rollout metrics as
    /// `serin up`'s) on this address, e.g. `0.0.0.0:8090`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Send notifications (Slack webhook, JSON webhook) as configured in
    /// this YAML file: the same keys as serin.yaml's `notifications:`
    /// section (`services`, `subscriptions`, `templates`, `retry`, `ca`).
    #[arg(long, value_name = "FILE")]
    pub notifications: Option<PathBuf>,
    /// The flag server FlagRollouts (flagrollouts.serin.dev) write
    /// percentages to, through its management API (http:// or https://). Its
    /// admin token comes from $SERIN_ADMIN_TOKEN only — never an argument,
    /// which `ps` and the pod spec would show.
    #[arg(long, value_name = "URL")]
    pub flag_server: Option<String>,
    /// A PEM file of CA certificates trusted for an https:// --flag-server,
    /// besides the system roots (repeatable; e.g. the cluster's CA).
    #[arg(long, value_name = "FILE", requires = "flag_server")]
    pub flag_server_ca: Vec<PathBuf>,
    /// Environment of FlagRollouts whose spec names none.
    #[arg(long, default_value = "production", value_name = "ENV")]
    pub flag_environment: String,
}

/// Reads `--notifications FILE`; a relative `ca` is the file's directory's.
fn notifications(path: &std::path::Path) -> anyhow::Result<serin_notify::NotificationsConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: serin_notify::NotificationsConfig =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(ca) = config.ca.as_mut()
        && ca.is_relative()
    {
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        *ca = base.join(&*ca);
    }
    Ok(config)
}

/// `serin controller` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ControllerCommand {
    /// Print what to `kubectl apply` to run the controller in a cluster:
    /// namespace, Serin's FlagRollout CRD, service account, least-privilege
    /// RBAC, a two-replica Deployment with leader election. Argo Rollouts'
    /// CRDs come from Argo.
    ///
    /// Example: `serin controller install --image ghcr.io/me/serin:1 | kubectl apply -f -`
    Install {
        /// Namespace to run in.
        #[arg(long, default_value = "serin-system")]
        namespace: String,
        /// The container image holding the `serin` binary.
        #[arg(long)]
        image: String,
        /// The flag server FlagRollouts write to (its admin token: key
        /// `token` of the Secret `serin-flags-admin` in --namespace).
        #[arg(long, value_name = "URL")]
        flag_server: Option<String>,
    },
}

/// Runs until Ctrl-C or SIGTERM (or prints the install manifests).
pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    if let Some(ControllerCommand::Install {
        namespace,
        image,
        flag_server,
    }) = &args.command
    {
        let mut out = String::new();
        for obj in serin_platform_kube::install_manifests(namespace, image, flag_server.as_deref())
        {
            let text = serde_saphyr::to_string(&obj).context("printing the manifests")?;
            out.push_str("---\n");
            out.push_str(&text);
        }
        // A closed pipe (`| head`) is the reader's choice, not an error.
        use std::io::Write as _;
        return match std::io::stdout().write_all(out.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(ExitCode::SUCCESS),
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Said at start so nobody waits for an Experiment that will never run.
    tracing::warn!(
        "serin controller runs Rollouts and their experiment steps; Argo's standalone Experiment objects are not reconciled on a cluster: run them under `serin up`"
    );
    let flag_server = match &args.flag_server {
        None => None,
        Some(url) => {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                anyhow::bail!("--flag-server {url:?}: expected an http:// or https:// URL");
            }
            for ca in &args.flag_server_ca {
                // Read now: a bad file is an error at start, not at the
                // first percentage a FlagRollout writes.
                serin_tls::load_certs(ca)
                    .with_context(|| format!("--flag-server-ca {}", ca.display()))?;
            }
            let token = std::env::var("SERIN_ADMIN_TOKEN").map_err(|_| {
                anyhow::anyhow!(
                    "--flag-server needs the flag server's admin token in $SERIN_ADMIN_TOKEN (in a cluster: key `token` of the Secret `{}`)",
                    serin_platform_kube::FLAGS_TOKEN_SECRET
                )
            })?;
            Some(serin_platform_kube::FlagServer {
                url: url.clone(),
                admin_token: token,
                ca: args.flag_server_ca.clone(),
                environment: args.flag_environment.clone(),
            })
        }
    };
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(async {
        let client =
            serin_platform_kube::connect(args.kubeconfig.as_deref(), args.context.as_deref())
                .await?;
        let instance = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("serin-controller-{}", std::process::id()));
        let leader_election = args.leader_elect.then(|| {
            let ns = args
                .lease_namespace
                .clone()
                .or_else(|| args.namespace.clone())
                .unwrap_or_else(|| "default".into());
            serin_platform_kube::LeaderElection::new(ns, instance.clone())
        });
        let config = args
            .notifications
            .as_deref()
            .map(notifications)
            .transpose()?;
        // Deployment records on the cluster (a ConfigMap per namespace), so
        // `serin report --context` and a new leader see them.
        let observer =
            std::sync::Arc::new(serin_platform_kube::Observer::new(config)?.with_cluster_history());
        if let Some(addr) = args.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} for /metrics"))?;
            tracing::info!(%addr, "serving /metrics");
            let observer = observer.clone();
            tokio::spawn(async move {
                if let Err(err) = serin_platform_kube::serve_metrics(listener, observer).await {
                    tracing::error!("/metrics: {err}");
                }
            });
        }
        let opts = serin_platform_kube::ControllerOptions {
            namespace: args.namespace.clone(),
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            instance,
            leader_election,
            observer,
            flag_server,
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
