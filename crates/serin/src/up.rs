//! `serin up` and `serin down`.

use std::path::PathBuf;
use std::process::ExitCode;

use serin_controlplane::up::{self, ServerConfig};

/// Arguments of `serin up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Manifest files or folders to run (watched: an edit is a deploy).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Server configuration (images, ports, state dir).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

/// Arguments of `serin down`.
#[derive(clap::Args, Debug)]
pub struct DownArgs {
    /// State directory of the `serin up` to stop.
    #[arg(long, default_value = ".serin")]
    state_dir: PathBuf,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Reads serin.yaml (YAML or JSON).
pub fn read_config(path: Option<&PathBuf>) -> anyhow::Result<ServerConfig> {
    let Some(path) = path else {
        return Ok(ServerConfig::default());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut config: ServerConfig =
        serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // Certificate, key and CA paths are relative to the config file.
    let base = std::path::absolute(path)?
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    config.resolve_tls_paths(&base);
    Ok(config)
}

/// Runs `serin up` until Ctrl-C / SIGTERM; replicas and the proxy keep
/// running so that the next `serin up` re-adopts them without downtime.
pub fn run(args: &UpArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SERIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let config = read_config(args.config.as_ref())?;
    let exe = std::env::current_exe()?;
    runtime()?.block_on(async {
        let running = match up::start(config, args.paths.clone(), exe).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::FAILURE);
            }
        };
        println!("serin up: API {}  proxy admin http://{}", running.endpoints.api_url(), running.endpoints.proxy_admin);
        // Wait until the first proxy configuration is in force to print ports.
        for _ in 0..100 {
            if !running.cp.proxy_config().services.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for s in running.cp.proxy_config().services {
            println!("  service {:<32} http://{}", s.name, s.listen);
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        println!("serin up: stopping the control plane; replicas and the proxy keep serving (serin down stops them)");
        running.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `serin down`: stops replicas and the proxy of a state directory.
pub fn down(args: &DownArgs) -> anyhow::Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SERIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    runtime()?.block_on(async {
        // A running `serin up` would put back every replica stopped below:
        // stop it first (it leaves replicas and the proxy to us).
        if let Ok(ep) = up::read_endpoints(&args.state_dir)
            && let Some(pid) = ep.up_pid.filter(|p| is_serin_up(*p))
        {
            let spinner = crate::progress::Spinner::start(format!("stopping serin up (pid {pid})"));
            signal_all(&[pid], "-TERM");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while is_serin_up(pid) {
                if std::time::Instant::now() >= deadline {
                    drop(spinner);
                    eprintln!("error: serin up (pid {pid}) did not stop within 30 s after SIGTERM; nothing else was stopped");
                    return Ok(ExitCode::FAILURE);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let images = match up::read_config(&args.state_dir) {
            Ok(c) if !c.images.is_null() => c.images,
            _ => serde_json::json!({}),
        };
        let images: serin_platform_local::ImageMap = serde_json::from_value(images)?;
        let platform = serin_platform_local::LocalPlatform::start_with(
            args.state_dir.join("platform"),
            images,
            up::platform_options(&args.state_dir)?,
        )
        .await?;
        let replicas: usize = platform
            .rollouts()
            .iter()
            .flat_map(|r| platform.observe(r))
            .map(|rev| rev.pods.len())
            .sum();
        let spinner = crate::progress::Spinner::start(format!(
            "stopping {replicas} replica(s) (each gets its termination grace period)"
        ));
        platform.shutdown(true).await;
        // Safety net: any process still working in one of this state dir's
        // pod folders (e.g. a replica that was mid-termination when a control
        // plane was killed) is stopped too — `down` means nothing is left.
        // Replicas work in the pods dir beside the state dir (older versions:
        // inside it).
        let dirs: Vec<std::path::PathBuf> = [
            serin_platform_local::pods_dir_beside(&args.state_dir),
            args.state_dir.join("platform").join("pods"),
        ]
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
        let stray_pids = |dirs: &[std::path::PathBuf]| -> Vec<u32> {
            let mut pids: Vec<u32> = dirs.iter().flat_map(|d| stray_pids(d)).collect();
            pids.sort_unstable();
            pids.dedup();
            pids
        };
        let pods = dirs;
        let stray = stray_pids(&pods);
        if !stray.is_empty() {
            eprintln!(
                "stopping {} replica process(es) the platform no longer tracked",
                stray.len()
            );
            spinner.set("stopping replica processes the platform no longer tracked");
            signal_all(&stray, "-TERM");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline && !stray_pids(&pods).is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            signal_all(&stray_pids(&pods), "-KILL");
        }
        if let Ok(ep) = up::read_endpoints(&args.state_dir)
            && let Some(pid) = ep.proxy_pid
        {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        drop(spinner);
        println!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Whether `pid` is a live `serin up` (its command line has the `up`
/// argument), not a stale pid reused by another process. A zombie counts as
/// gone.
fn is_serin_up(pid: u32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    !zombie
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).skip(1).any(|a| a == b"up"))
}

/// Processes whose working directory is under `dir`.
fn stray_pids(dir: &std::path::Path) -> Vec<u32> {
    if dir.as_os_str().is_empty() {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(dir))
        })
        .collect()
}

fn signal_all(pids: &[u32], signal: &str) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
