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
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Serve this flagd file (JSON, or YAML by extension), re-read when it changes; the
    /// management API is then read-only (writes answer 409).
    #[arg(long, conflicts_with_all = ["store", "postgres"])]
    file: Option<PathBuf>,
    /// Address to listen on. Without --keys only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:8016")]
    listen: SocketAddr,
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
    // Fail before opening anything when the address is unsafe.
    serin_flags_server::check_listen(args.listen, !keys.is_empty())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let source = match (&args.file, &args.postgres) {
            (Some(f), _) => FlagSource::File(f.clone()),
            (None, Some(url)) => FlagSource::Store(Arc::new(
                PgStore::connect(url, &args.pg_table_prefix)
                    .await
                    .context("cannot use the PostgreSQL store")?,
            )),
            (None, None) => FlagSource::Store(Arc::new(
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
        let running = server.bind(args.listen).await?;
        println!("listening on http://{}", running.addr());
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
