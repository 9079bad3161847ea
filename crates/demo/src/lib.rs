//! `serin demo`: Serin's main job, end to end on one machine.
//!
//! Starts the control plane, the proxy and the bundled demo service (the
//! `serin` binary itself, as `serin demo-app`), puts constant load through
//! the proxy, and performs four deployments by editing manifest files:
//! a rolling update, a blue-green switch, a canary of a good version to
//! 100 %, and a canary of a bad version that is aborted and rolled back.
//! Ends with a table of requests, failures and durations.

pub mod chaos;
pub mod manifests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serin_controlplane::up::{self, ServerConfig};
use serin_engine as e;

/// Counters of one load generator.
#[derive(Default)]
pub struct Load {
    /// Responses received (any status).
    pub total: AtomicU64,
    /// Connection errors, timeouts and 5xx.
    pub failed: AtomicU64,
    /// Responses whose body names a `bad-` version.
    pub bad_version: AtomicU64,
    /// When the first `bad-` response arrived (ms since the Unix epoch; 0: none).
    pub first_bad_ms: AtomicU64,
    /// When the last `bad-` response arrived (ms since the Unix epoch).
    pub last_bad_ms: AtomicU64,
    stop: AtomicBool,
}

/// Constant closed-loop load: `concurrency` keep-alive clients sending
/// `GET /` to `addr` until stopped.
pub fn start_load(addr: SocketAddr, concurrency: usize) -> Arc<Load> {
    let load = Arc::new(Load::default());
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for _ in 0..concurrency {
        let load = Arc::clone(&load);
        let client = client.clone();
        tokio::spawn(async move {
            while !load.stop.load(Ordering::Relaxed) {
                let req = match hyper::Request::get(format!("http://{addr}/")).body(Empty::new()) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let res = tokio::time::timeout(Duration::from_secs(5), client.request(req)).await;
                load.total.fetch_add(1, Ordering::Relaxed);
                match res {
                    Ok(Ok(res)) => {
                        let ok = !res.status().is_server_error();
                        let body = res
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if !ok {
                            load.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        if body.windows(4).any(|w| w == b"bad-") {
                            load.bad_version.fetch_add(1, Ordering::Relaxed);
                            let ms = serin_clock::now_ms();
                            let _ = load.first_bad_ms.compare_exchange(
                                0,
                                ms,
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                            );
                            load.last_bad_ms.fetch_max(ms, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        load.failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    load
}

impl Load {
    /// Stops the clients.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    fn snapshot(&self) -> (u64, u64) {
        (
            self.total.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One row of the results table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was deployed.
    pub deployment: String,
    /// Requests served during it.
    pub requests: u64,
    /// Failed requests during it.
    pub failed: u64,
    /// How long it took.
    pub duration: Duration,
    /// Bad canary only: abort → last response from the bad revision.
    pub abort_to_last_bad: Option<Duration>,
    /// Bad canary only: first response from the bad revision → abort.
    pub first_bad_to_abort: Option<Duration>,
    /// Final phase.
    pub outcome: String,
}

/// Options.
pub struct DemoOptions {
    /// The `serin` executable (provides `proxy` and `demo-app`).
    pub serin_exe: PathBuf,
    /// Working folder (state, manifests, logs).
    pub work_dir: PathBuf,
    /// Load generator concurrency per service.
    pub concurrency: usize,
    /// Progress lines go here.
    pub progress: Box<dyn Fn(&str) + Send + Sync>,
    /// `serin demo --dashboard`: print the dashboard's URL (and where the
    /// sign-in token is) at the start, and after the deployments print the
    /// table and keep everything running until Ctrl-C.
    pub dashboard: bool,
}

async fn wait_for(
    cp: &serin_controlplane::reconciler::ControlPlane,
    name: &str,
    limit: Duration,
    mut ok: impl FnMut(&e::RolloutStatus) -> bool,
) -> anyhow::Result<e::RolloutStatus> {
    let deadline = Instant::now() + limit;
    loop {
        let s = cp.store().status(name)?;
        if ok(&s) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{name}: timed out after {limit:?} in phase {:?}: {}",
                s.phase,
                s.message
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn healthy_on(s: &e::RolloutStatus, hash: Option<&e::RevisionHash>) -> bool {
    s.phase == e::Phase::Healthy
        && s.stable_hash.is_some()
        && (hash.is_none() || s.stable_hash.as_ref() == hash)
}

pub(crate) fn listener(
    cp: &serin_controlplane::reconciler::ControlPlane,
    name: &str,
) -> Option<SocketAddr> {
    cp.proxy_config()
        .services
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.listen)
        .filter(|a| a.port() != 0)
}

pub(crate) fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, dir.join(file))?;
    Ok(())
}

/// Runs the demo; returns the table rows.
pub async fn run(opts: DemoOptions) -> anyhow::Result<Vec<Row>> {
    let say = &opts.progress;
    let manifests = opts.work_dir.join("manifests");
    let state = state_dir_of(&opts.work_dir);
    std::fs::create_dir_all(&manifests)?;
    write(&manifests, "rolling.yaml", &manifests::rolling("blue"))?;
    write(&manifests, "bluegreen.yaml", &manifests::blue_green("blue"))?;
    write(&manifests, "canary.yaml", &manifests::canary("blue"))?;
    let exe = opts.serin_exe.display().to_string();
    let config = ServerConfig {
        state_dir: Some(state),
        images: serde_json::json!({
            "argoproj/rollouts-demo": {"command": [exe, "demo-app"], "args": ["--demo-version", "{tag}"]}
        }),
        ..ServerConfig::default()
    };
    say("starting the control plane, the proxy and 11 demo replicas (blue)…");
    let running = up::start(config, vec![manifests.clone()], opts.serin_exe.clone()).await?;
    let cp = Arc::clone(&running.cp);
    if opts.dashboard {
        say(&format!(
            "dashboard: {}{} — sign in with the admin token in {} (`serin token NAME --role viewer --state-dir {}` makes a read-only one)",
            running.endpoints.api_url(),
            serin_dashboard_path(),
            state_dir_of(&opts.work_dir).join("admin.token").display(),
            state_dir_of(&opts.work_dir).display(),
        ));
    }
    let work = async {
        for name in ["demo-rolling", "demo-bluegreen", "demo-canary"] {
            wait_for(&cp, name, Duration::from_secs(60), |s| healthy_on(s, None)).await?;
        }
        let addr = |name: &str| {
            listener(&cp, name).ok_or_else(|| anyhow::anyhow!("no listener for {name}"))
        };
        let loads = [
            (
                "demo-rolling",
                start_load(addr("demo-rolling")?, opts.concurrency),
            ),
            (
                "demo-bluegreen-active",
                start_load(addr("demo-bluegreen-active")?, opts.concurrency),
            ),
            (
                "demo-canary-vs",
                start_load(addr("demo-canary-vs")?, opts.concurrency),
            ),
        ];
        say(&format!(
            "all healthy; constant load ({} clients each) on {}",
            opts.concurrency,
            loads
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut rows = Vec::new();
        let steps: [(&str, &str, &str, usize, &str); 3] = [
            (
                "rolling update blue → yellow",
                "rolling.yaml",
                "demo-rolling",
                0,
                "yellow",
            ),
            (
                "blue-green switch blue → green",
                "bluegreen.yaml",
                "demo-bluegreen",
                1,
                "green",
            ),
            (
                "canary blue → yellow to 100 %",
                "canary.yaml",
                "demo-canary",
                2,
                "yellow",
            ),
        ];
        for (label, file, name, li, tag) in steps {
            say(&format!("{label}: editing {file}…"));
            let before = cp.store().status(name)?.stable_hash;
            let (t0, f0) = loads[li].1.snapshot();
            let start = Instant::now();
            let text = match file {
                "rolling.yaml" => manifests::rolling(tag),
                "bluegreen.yaml" => manifests::blue_green(tag),
                _ => manifests::canary(tag),
            };
            write(&manifests, file, &text)?;
            let s = wait_for(&cp, name, Duration::from_secs(120), |s| {
                healthy_on(s, None) && s.stable_hash != before
            })
            .await?;
            // Let the old revision drain and go before counting the end.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (t1, f1) = loads[li].1.snapshot();
            rows.push(Row {
                deployment: label.into(),
                requests: t1 - t0,
                failed: f1 - f0,
                duration: start.elapsed(),
                abort_to_last_bad: None,
                first_bad_to_abort: None,
                outcome: format!("{:?}", s.phase),
            });
            say(&format!(
                "  done in {:.1} s: {} requests, {} failed",
                start.elapsed().as_secs_f64(),
                t1 - t0,
                f1 - f0
            ));
        }
        // The bad canary: 50 % errors. Nobody intervenes: the background
        // analysis (builtin error-rate from the proxy's own counters) aborts it.
        say(
            "canary yellow → bad-red (50 % errors): the builtin error-rate analysis should abort it…",
        );
        let load = &loads[2].1;
        let (t0, f0) = load.snapshot();
        let start = Instant::now();
        write(&manifests, "canary.yaml", &manifests::canary("bad-red"))?;
        let s = wait_for(&cp, "demo-canary", Duration::from_secs(60), |s| {
            s.phase == e::Phase::Degraded
        })
        .await?;
        let abort_at = s.aborted_at.unwrap_or(0);
        say(&format!("  aborted by analysis: {}", s.message));
        // Requests in flight at the abort may still finish on the bad
        // revision; wait until no new bad response has come for a second.
        let mut last = load.last_bad_ms.load(Ordering::Relaxed);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = load.last_bad_ms.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let first = load.first_bad_ms.load(Ordering::Relaxed);
        if first > 0 {
            say(&format!(
                "  first bad response → abort: {} ms; abort → last bad response: {} ms",
                abort_at.saturating_sub(first),
                last.saturating_sub(abort_at)
            ));
        }
        let (t1, f1) = load.snapshot();
        rows.push(Row {
            deployment: "canary yellow → bad-red, aborted".into(),
            requests: t1 - t0,
            failed: f1 - f0,
            duration: start.elapsed(),
            abort_to_last_bad: Some(Duration::from_millis(last.saturating_sub(abort_at))),
            first_bad_to_abort: (first > 0)
                .then(|| Duration::from_millis(abort_at.saturating_sub(first))),
            outcome: format!("{:?} ({})", s.phase, s.message),
        });
        for (_, l) in &loads {
            l.stop();
        }
        if opts.dashboard {
            say(&format!("\n{}", table(&rows)));
            say(&format!(
                "the dashboard stays at {}{} with all rollouts running; Ctrl-C stops the demo",
                running.endpoints.api_url(),
                serin_dashboard_path()
            ));
            tokio::signal::ctrl_c().await?;
            say("Ctrl-C: stopping the replicas and the proxy…");
        }
        anyhow::Ok(rows)
    };
    // With the dashboard, Ctrl-C is how the demo ends (inside `work`);
    // without it, Ctrl-C or SIGTERM cuts the demo short.
    let result = if opts.dashboard {
        work.await
    } else {
        until_interrupted(work, &**say).await
    };
    // Leave nothing running: replicas and the proxy go with the demo.
    running.stop_all().await;
    result
}

/// Runs `work` until it ends or the process gets Ctrl-C or SIGTERM,
/// whichever comes first. Without this a Ctrl-C killed `serin demo` and
/// `serin chaos` on the spot and left the proxy and every replica running,
/// re-parented to init (seen: 180 processes after interrupting a long
/// `bench/chaos.sh`); the callers stop them after this returns.
pub(crate) async fn until_interrupted<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
    say: &(dyn Fn(&str) + Send + Sync),
) -> anyhow::Result<T> {
    let interrupted = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => "Ctrl-C",
                        _ = term.recv() => "SIGTERM",
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    "Ctrl-C"
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    };
    tokio::select! {
        r = work => r,
        why = interrupted => {
            say(&format!("{why}: stopping the replicas and the proxy…"));
            Err(anyhow::anyhow!("interrupted by {why} before the end"))
        }
    }
}

/// Where the dashboard is served on the API address.
fn serin_dashboard_path() -> &'static str {
    "/ui/"
}

/// The demo's state folder under its working folder.
fn state_dir_of(work_dir: &Path) -> PathBuf {
    work_dir.join("state")
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()))
}

/// Formats the results table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "deployment                              requests   failed   duration   first bad → abort   abort → last bad   outcome\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{:<38} {:>9} {:>8} {:>9.1}s   {:>17}   {:>16}   {}\n",
            r.deployment,
            r.requests,
            r.failed,
            r.duration.as_secs_f64(),
            ms(r.first_bad_to_abort),
            ms(r.abort_to_last_bad),
            r.outcome
        ));
    }
    out
}
