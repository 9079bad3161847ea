//! `serin flags`: the flag server (OFREP, management API, SSE) and key hashing.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serin_flags_server::{FlagServer, FlagSource, KeyRing, PgStore, RedbStore, ServerOptions};

/// Arguments of `serin flags`.
#[derive(clap::Args, Debug)]
pub struct FlagsArgs {
    #[command(subcommand)]
    command: FlagsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum FlagsCommand {
    /// Serve flags over OFREP v0.3 (plus the management API and the SSE change stream).
    ///
    /// Example: `serin flags serve --file flags.yaml --listen 127.0.0.1:8016`
    Serve(ServeArgs),
    /// Print the SHA-256 of a key read from stdin, for the `sha256:` field of a keys file.
    ///
    /// Example: `printf %s "$KEY" | serin flags hash-key`
    HashKey,
    /// Raise a flag's percentage step by step, judging each step with an
    /// analysis; on failure set it back to 0 % (the seed's guarded rollout).
    ///
    /// Example: `serin flags rollout new-payment-processor --steps 5,10,25,50,100 --interval 5m --analysis error-rate.yaml`
    Rollout(RolloutArgs),
}

#[derive(clap::Args, Debug)]
struct RolloutArgs {
    /// Flag key.
    flag: String,
    /// Percentages, increasing.
    #[arg(long, value_delimiter = ',', default_value = "5,10,25,50,100")]
    steps: Vec<u8>,
    /// Time at each step (Go duration).
    #[arg(long, default_value = "5m")]
    interval: String,
    /// AnalysisTemplate file(s) judging each step (all templates in them).
    #[arg(long)]
    analysis: Vec<std::path::PathBuf>,
    /// Analysis argument `name=value` (repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Flag server URL.
    #[arg(long, default_value = "http://127.0.0.1:8016")]
    server: String,
    /// Environment.
    #[arg(long, default_value = "production")]
    environment: String,
    /// Admin token (or set SERIN_ADMIN_TOKEN).
    #[arg(long, env = "SERIN_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Serve this flagd file (JSON, or YAML by extension), re-read when it changes; the
    /// management API is then read-only (writes answer 409). Repeatable, and a directory
    /// serves its *.json/*.yaml/*.yml files in name order: as in flagd, a flag defined in
    /// several sources comes from the last.
    /// flagd's `--uri`/`-f` spelling works too, and a `file:` prefix is dropped.
    #[arg(long, short = 'f', visible_alias = "uri", conflicts_with_all = ["store", "postgres"])]
    file: Vec<PathBuf>,
    /// Address to listen on: OFREP, the management API, the SSE stream and flagd's gRPC
    /// evaluation and sync services, all on one port. Without --keys only loopback
    /// addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:8016")]
    listen: SocketAddr,
    /// Move the --listen port (OFREP and everything else) to this one, as flagd's
    /// --ofrep-port.
    #[arg(long, short = 'r')]
    ofrep_port: Option<u16>,
    /// Also serve flagd's gRPC evaluation service alone on this port (of the --listen
    /// address), as flagd's --port (flagd's default is 8013).
    #[arg(long, short = 'p')]
    port: Option<u16>,
    /// Also serve flagd's gRPC sync service alone on this port (of the --listen address), as
    /// flagd's --sync-port (flagd's default is 8015).
    #[arg(long, short = 'g')]
    sync_port: Option<u16>,
    /// TLS certificate chain (PEM) for every port, as flagd's --server-cert-path; needs
    /// --server-key-path.
    #[arg(long, short = 'c', requires = "server_key_path")]
    server_cert_path: Option<PathBuf>,
    /// TLS private key (PEM), as flagd's --server-key-path; needs --server-cert-path.
    #[arg(long, short = 'k', requires = "server_cert_path")]
    server_key_path: Option<PathBuf>,
    /// Connections served at once; more are answered 503 and closed.
    #[arg(long, default_value_t = serin_flags_server::limits::ConnLimits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (also how long an
    /// idle keep-alive connection stays open).
    #[arg(long, default_value_t = serin_flags_server::limits::ConnLimits::default().header_read_timeout_secs)]
    header_read_timeout: u64,
    /// Keys file (YAML: name, kind server|client|admin, environment, sha256). Without it,
    /// evaluation is open (loopback only) and the management API is disabled.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Embedded store (redb file) when neither --file nor --postgres is given.
    #[arg(long, default_value = ".serin/flags.redb")]
    store: PathBuf,
    /// Keep flags in PostgreSQL instead (several servers may share it), e.g.
    /// `host=127.0.0.1 user=postgres dbname=test`.
    #[arg(long, env = "SERIN_FLAGS_POSTGRES")]
    postgres: Option<String>,
    /// Prefix of the PostgreSQL table names.
    #[arg(long, default_value = "serin_")]
    pg_table_prefix: String,
    /// Environment served to callers without a key, and the one a --file is served as.
    #[arg(long, default_value = "default")]
    environment: String,
}

/// Runs `serin flags …`.
pub fn run(args: &FlagsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        FlagsCommand::HashKey => {
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .context("cannot read the key from stdin")?;
            let key = key.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!key.is_empty(), "no key on stdin");
            println!("{}", serin_flags_server::hash_key(key));
            Ok(ExitCode::SUCCESS)
        }
        FlagsCommand::Serve(serve) => run_serve(serve),
        FlagsCommand::Rollout(r) => run_rollout(r),
    }
}

fn run_rollout(args: &RolloutArgs) -> anyhow::Result<ExitCode> {
    let interval = serin_spec::parse_go_duration(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    let analysis = if args.analysis.is_empty() {
        None
    } else {
        let set = serin_spec::ManifestSet::load_paths(&args.analysis);
        let errors: Vec<String> = serin_spec::lint(&set)
            .into_iter()
            .chain(serin_analysis::lint_templates(&set))
            .filter(|d| d.severity == serin_spec::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        anyhow::ensure!(
            errors.is_empty(),
            "analysis templates have errors:\n{}",
            errors.join("\n")
        );
        let templates: Vec<_> = set.analysis_templates().map(|(_, t)| t.clone()).collect();
        anyhow::ensure!(
            !templates.is_empty(),
            "no AnalysisTemplate in {:?}",
            args.analysis
        );
        let run_args = args
            .args
            .iter()
            .map(|a| {
                let (name, value) = a
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--arg {a:?}: expected name=value"))?;
                Ok(serin_spec::AnalysisRunArgument {
                    name: name.into(),
                    value: Some(value.into()),
                    value_from: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some((templates, run_args))
    };
    let rollout = serin_flag_rollout::GuardedRollout {
        server: args.server.clone(),
        environment: args.environment.clone(),
        admin_token: args.token.clone(),
        flag: args.flag.clone(),
        steps: args.steps.clone(),
        interval,
        analysis,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let out = rt.block_on(rollout.run(&mut |p| match p {
        serin_flag_rollout::Progress::Set(n) => println!(
            "[{:>6.1}s] {} → {n} %",
            started.elapsed().as_secs_f64(),
            args.flag
        ),
        serin_flag_rollout::Progress::Analysed { at, phase, message } => {
            println!(
                "[{:>6.1}s]   analysis at {at} %: {phase:?} {message}",
                started.elapsed().as_secs_f64()
            )
        }
    }))?;
    match out {
        serin_flag_rollout::Outcome::Completed => {
            println!(
                "{} is at {} %",
                args.flag,
                args.steps.last().copied().unwrap_or(100)
            );
            Ok(ExitCode::SUCCESS)
        }
        serin_flag_rollout::Outcome::RolledBack { at, reason } => {
            eprintln!(
                "{}: analysis failed at {at} % ({reason}); set back to 0 %",
                args.flag
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,serin_flags_server=info")
            }),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let keys = match &args.keys {
        Some(p) => KeyRing::from_path(p)?,
        None => KeyRing::empty(),
    };
    let at = |port: u16| SocketAddr::new(args.listen.ip(), port);
    let listen = serin_flags_server::Listen {
        main: args.ofrep_port.map_or(args.listen, at),
        evaluation: args.port.map(at),
        sync: args.sync_port.map(at),
        tls: match (&args.server_cert_path, &args.server_key_path) {
            (Some(cert), Some(key)) => Some(serin_flags_server::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
    };
    // Fail before opening anything when the address is unsafe.
    serin_flags_server::check_listen(listen.main, !keys.is_empty())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        // flagd's `--uri file:flags.json` spelling.
        let files: Vec<PathBuf> = args
            .file
            .iter()
            .map(|f| match f.to_str().and_then(|s| s.strip_prefix("file:")) {
                Some(rest) => PathBuf::from(rest),
                None => f.clone(),
            })
            .collect();
        let source = match (files.as_slice(), &args.postgres) {
            ([one], _) => FlagSource::File(one.clone()),
            ([_, _, ..], _) => FlagSource::Files(files.clone()),
            ([], Some(url)) => FlagSource::Store(Arc::new(
                PgStore::connect(url, &args.pg_table_prefix)
                    .await
                    .context("cannot use the PostgreSQL store")?,
            )),
            ([], None) => FlagSource::Store(Arc::new(
                RedbStore::open(&args.store)
                    .with_context(|| format!("cannot open the store {}", args.store.display()))?,
            )),
        };
        let key_count = keys.len();
        let server = FlagServer::start(ServerOptions {
            source,
            keys,
            environment: args.environment.clone(),
        })
        .await?;
        for note in server.notes() {
            eprintln!("serin flags: {note}");
        }
        if key_count > 0 {
            eprintln!("serin flags: {key_count} API key(s) loaded");
        }
        let limits = serin_flags_server::limits::ConnLimits {
            max_connections: args.max_connections,
            header_read_timeout_secs: args.header_read_timeout,
        };
        let running = server.bind_listeners(listen, limits).await?;
        // The first line is what scripts and tests wait for; the others follow it.
        let scheme = running.scheme();
        println!("listening on {scheme}://{}", running.addr());
        if let Some(a) = running.evaluation_addr() {
            println!("flagd evaluation (gRPC) on {scheme}://{a}");
        }
        if let Some(a) = running.sync_addr() {
            println!("flagd sync (gRPC) on {scheme}://{a}");
        }
        wait_for_signal().await?;
        eprintln!("serin flags: stopping");
        running.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot handle Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot handle Ctrl-C")?;
    Ok(())
}
