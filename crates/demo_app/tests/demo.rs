//! Runs the real `serin-demo-app` binary on a free loopback port and checks
//! each behaviour over real HTTP.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_serin-demo-app");

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn send(c: &HttpClient, method: &str, url: &str, body: &str) -> Result<(u16, Value), String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .map_err(|e| format!("non-JSON body ({e}): {}", String::from_utf8_lossy(&bytes)))?;
    Ok((status, json))
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The binary as a child process, killed on drop.
struct Demo {
    child: Child,
    base: String,
    http: HttpClient,
}

fn command(envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "PORT",
        "DEMO_VERSION",
        "DEMO_ERROR_RATE",
        "DEMO_LATENCY_MS",
        "DEMO_CRASH_ON_START",
        "DEMO_LEAK_MB_PER_SEC",
        "DEMO_LEAK_MAX_MB",
        "DEMO_READY_FAIL",
        "DEMO_SEED",
        "DEMO_DRAIN_MS",
        "DEMO_WARMUP_MS",
        "DEMO_LATENCY_PERCENTILE",
        "DEMO_CRASH_AFTER_MS",
        "DEMO_READY_FLAP_MS",
        "DEMO_SLOW_START_MS",
        "DEMO_SLOW_START_LATENCY_MS",
        "DEMO_FAULT_PATH",
        "DEMO_FAULT_HEADER",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

impl Demo {
    /// Starts the app and waits until `/health` answers.
    async fn start(envs: &[(&str, &str)]) -> Self {
        let port = free_port().to_string();
        let mut all = vec![("PORT", port.as_str())];
        all.extend_from_slice(envs);
        let child = command(&all).spawn().expect("spawn serin-demo-app");
        let demo = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: client(),
        };
        eventually("demo app answers /health", || async {
            matches!(demo.get("/health").await, Ok((200, _))).then_some(())
        })
        .await;
        demo
    }

    async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        send(&self.http, "GET", &format!("{}{path}", self.base), "").await
    }

    async fn post(&self, path: &str, body: &str) -> Result<(u16, Value), String> {
        send(&self.http, "POST", &format!("{}{path}", self.base), body).await
    }

    /// Status codes of `n` sequential `GET /`.
    async fn codes(&self, n: usize) -> Vec<u16> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.get("/").await.expect("GET /").0);
        }
        out
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "demo app did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn serves_identity_json_on_every_path_and_probes_from_serin_health() {
    let demo = Demo::start(&[("DEMO_VERSION", "argoproj/rollouts-demo:yellow")]).await;
    for path in ["/", "/color", "/some/other/path"] {
        let (code, body) = demo.get(path).await.expect("GET");
        assert_eq!(code, 200, "{path}");
        assert_eq!(body["version"], "yellow");
        assert_eq!(body["color"], "yellow");
        assert_eq!(body["pid"], demo.child.id());
    }
    let (code, live) = demo.get("/health").await.expect("health");
    assert_eq!(
        (code, &live["status"], &live["version"]),
        (200, &"ok".into(), &"yellow".into())
    );
    let (code, ready) = demo.get("/ready").await.expect("ready");
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["dependencies"]["ready-switch"], true);
}

#[tokio::test]
async fn bad_red_fails_about_half_the_requests_reproducibly_per_seed() {
    let env = [
        ("DEMO_VERSION", "argoproj/rollouts-demo:bad-red"),
        ("DEMO_SEED", "42"),
    ];
    let a = Demo::start(&env).await;
    let first = a.codes(200).await;
    drop(a);
    let b = Demo::start(&env).await;
    let again = b.codes(200).await;
    drop(b);
    assert_eq!(first, again, "same seed, same sequence");
    let errors = first.iter().filter(|&&c| c == 500).count();
    assert!(first.iter().all(|&c| c == 200 || c == 500));
    assert!(
        (60..=140).contains(&errors),
        "about 50% errors, got {errors}/200"
    );

    let c = Demo::start(&[("DEMO_VERSION", "bad-red"), ("DEMO_SEED", "43")]).await;
    assert_ne!(c.codes(200).await, first, "another seed, another sequence");
    let (code, body) = c.get("/").await.expect("GET");
    assert!(code == 200 || code == 500);
    assert_eq!(body["color"], "red");
}

#[tokio::test]
async fn error_rate_changes_live_and_rejects_bad_input_with_json() {
    let demo = Demo::start(&[("DEMO_VERSION", "blue"), ("DEMO_SEED", "1")]).await;
    assert!(demo.codes(20).await.iter().all(|&c| c == 200));
    let (code, body) = demo
        .post("/admin/error-rate", r#"{"error_rate": 1.0}"#)
        .await
        .expect("post");
    assert_eq!((code, &body["error_rate"]), (200, &Value::from(1.0)));
    assert!(demo.codes(20).await.iter().all(|&c| c == 500));
    for bad in [
        r#"{"error_rate": 1.5}"#,
        r#"{"error_rate": "x"}"#,
        "not json",
        "{}",
    ] {
        let (code, body) = demo.post("/admin/error-rate", bad).await.expect("post");
        assert_eq!(code, 400, "{bad}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (_, state) = demo.get("/admin/state").await.expect("state");
    assert_eq!(state["error_rate"], 1.0, "rejected input changes nothing");
    demo.post("/admin/error-rate", r#"{"error_rate": 0}"#)
        .await
        .expect("post");
    assert!(demo.codes(20).await.iter().all(|&c| c == 200));
}

#[tokio::test]
async fn slow_yellow_adds_latency() {
    let demo = Demo::start(&[("DEMO_VERSION", "slow-yellow")]).await;
    for _ in 0..3 {
        let t = Instant::now();
        let (code, body) = demo.get("/").await.expect("GET");
        assert_eq!((code, &body["color"]), (200, &Value::from("yellow")));
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
    }
    // Probes are not slowed down.
    let (code, _) = demo.get("/ready").await.expect("ready");
    assert_eq!(code, 200);
}

#[tokio::test]
async fn readiness_fails_on_command_and_comes_back() {
    let demo = Demo::start(&[("DEMO_READY_FAIL", "true")]).await;
    let (code, body) = demo.get("/ready").await.expect("ready");
    assert_eq!(code, 503, "DEMO_READY_FAIL starts not ready: {body}");
    let (code, _) = demo
        .post("/admin/ready", r#"{"ready": true}"#)
        .await
        .expect("post");
    assert_eq!(code, 200);
    assert_eq!(demo.get("/ready").await.expect("ready").0, 200);
    demo.post("/admin/ready", r#"{"ready": false}"#)
        .await
        .expect("post");
    let (code, body) = demo.get("/ready").await.expect("ready");
    assert_eq!(code, 503);
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["dependencies"]["ready-switch"], false);
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("ready-switch"),
        "{body}"
    );
    assert_eq!(
        demo.get("/health").await.expect("health").0,
        200,
        "liveness unaffected"
    );
    assert_eq!(
        demo.get("/").await.expect("GET /").0,
        200,
        "traffic still served"
    );
    assert_eq!(
        demo.post("/admin/ready", r#"{"ready": "no"}"#)
            .await
            .expect("post")
            .0,
        400
    );
}

#[tokio::test]
async fn warmup_keeps_readiness_503_until_done() {
    let demo = Demo::start(&[("DEMO_WARMUP_MS", "1000")]).await;
    let (code, body) = demo.get("/ready").await.expect("ready");
    assert_eq!(code, 503, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("warming up")
    );
    eventually("ready after warm-up", || async {
        matches!(demo.get("/ready").await, Ok((200, _))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn crash_on_start_exits_non_zero_and_bad_config_is_rejected() {
    let mut crash = command(&[("DEMO_CRASH_ON_START", "true")])
        .spawn()
        .expect("spawn");
    let status = crash.wait().expect("wait");
    assert_eq!(status.code(), Some(1));

    for env in [[("DEMO_ERROR_RATE", "2")], [("PORT", "not-a-port")]] {
        let out = command(&env).stderr(Stdio::piped()).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[tokio::test]
async fn port_flag_is_used_when_port_env_is_absent() {
    let port = free_port();
    let mut child = command(&[])
        .args(["--port", &port.to_string(), "--demo-version", "green"])
        .spawn()
        .expect("spawn");
    let http = client();
    let url = format!("http://127.0.0.1:{port}/");
    let body = eventually("app on --port", || async {
        send(&http, "GET", &url, "").await.ok()
    })
    .await;
    assert_eq!(body.1["color"], "green");
    let _ = child.kill();
    let _ = child.wait();
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn leak_grows_resident_memory() {
    let demo = Demo::start(&[("DEMO_LEAK_MB_PER_SEC", "40"), ("DEMO_LEAK_MAX_MB", "100")]).await;
    let pid = demo.child.id();
    let start = rss_kib(pid).expect("VmRSS");
    let grown = eventually("RSS grows by 60 MiB", || async {
        rss_kib(pid).filter(|&now| now >= start + 60 * 1024)
    })
    .await;
    let (_, state) = demo.get("/admin/state").await.expect("state");
    assert!(state["leaked_mb"].as_u64().unwrap_or(0) >= 60, "{state}");
    assert!(grown > start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flips_readiness_drains_without_errors_then_exits() {
    let drain = Duration::from_millis(1500);
    let mut demo = Demo::start(&[("DEMO_DRAIN_MS", "1500"), ("DEMO_SEED", "1")]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..3)
        .map(|_| {
            let (stop, url) = (stop.clone(), format!("{}/", demo.base));
            tokio::spawn(async move {
                let http = client();
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    match send(&http, "GET", &url, "").await {
                        Ok((200, _)) => ok += 1,
                        other => failed.push(format!("{other:?}")),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await; // load before the signal

    let status = Command::new("kill")
        .args(["-TERM", &demo.child.id().to_string()])
        .status()
        .expect("kill(1)");
    assert!(status.success());
    let signalled = Instant::now();
    let (_, body) = eventually("readiness 503 after SIGTERM", || async {
        demo.get("/ready").await.ok().filter(|(c, _)| *c == 503)
    })
    .await;
    assert!(
        signalled.elapsed() < drain,
        "flipped during the drain, not at its end"
    );
    assert_eq!(body["reason"], "shutting down");

    // Traffic keeps flowing through most of the drain; then clients go away.
    tokio::time::sleep_until((signalled + drain - Duration::from_millis(300)).into()).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in loaders {
        let (o, f) = l.await.expect("loader");
        ok += o;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "failed during drain: {failed:?}");
    assert!(ok > 0);

    let exit = demo.wait_exit();
    let exited = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(
        exited >= drain,
        "exited {exited:?} after SIGTERM, before the drain ended"
    );
    eprintln!("SIGTERM drain: {ok} requests ok, 0 failed, exited after {exited:?}");
}

/// `GET path` with extra headers: (status, the `x-demo-fault` marker).
async fn get_marked(demo: &Demo, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut req = hyper::Request::get(format!("{}{path}", demo.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    let resp = demo.http.request(req).await.expect("response");
    let mark = resp
        .headers()
        .get(serin_demo_app::FAULT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (status, mark)
}

#[tokio::test]
async fn crash_after_exits_with_status_one_once_the_time_is_up() {
    let mut demo = Demo::start(&[("DEMO_CRASH_AFTER_MS", "300")]).await;
    let status = demo.wait_exit();
    assert_eq!(status.code(), Some(1), "{status:?}");
}

#[tokio::test]
async fn latency_above_a_percentile_slows_only_that_share_and_marks_it() {
    let demo = Demo::start(&[
        ("DEMO_LATENCY_MS", "30"),
        ("DEMO_LATENCY_PERCENTILE", "50"),
        ("DEMO_SEED", "7"),
    ])
    .await;
    let mut slowed = 0;
    for _ in 0..60 {
        let started = Instant::now();
        let (code, mark) = get_marked(&demo, "/", &[]).await;
        assert_eq!(code, 200);
        if mark.as_deref() == Some("latency") {
            slowed += 1;
            assert!(started.elapsed() >= Duration::from_millis(30));
        } else {
            assert_eq!(mark, None);
        }
    }
    assert!(
        (10..=50).contains(&slowed),
        "about half slowed, got {slowed}/60"
    );
}

#[tokio::test]
async fn readiness_flaps_between_ready_and_not_ready() {
    let demo = Demo::start(&[("DEMO_READY_FLAP_MS", "150")]).await;
    for want in [503, 200, 503] {
        eventually(&format!("/ready answers {want}"), || async {
            matches!(demo.get("/ready").await, Ok((c, _)) if c == want).then_some(())
        })
        .await;
    }
    // Liveness is not affected: the process is fine, only readiness flaps.
    assert_eq!(demo.get("/health").await.expect("health").0, 200);
}

#[tokio::test]
async fn slow_start_is_slow_while_cold_then_normal() {
    let demo = Demo::start(&[
        ("DEMO_SLOW_START_MS", "1500"),
        ("DEMO_SLOW_START_LATENCY_MS", "200"),
    ])
    .await;
    let (code, mark) = get_marked(&demo, "/", &[]).await;
    assert_eq!((code, mark.as_deref()), (200, Some("slow-start")));
    eventually("the app is warm", || async {
        (get_marked(&demo, "/", &[]).await == (200, None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn partial_fault_hits_only_the_given_path_or_header() {
    let demo = Demo::start(&[
        ("DEMO_FAULT_PATH", "/api/checkout"),
        ("DEMO_FAULT_HEADER", "x-tier: premium"),
    ])
    .await;
    for _ in 0..20 {
        assert_eq!(get_marked(&demo, "/", &[]).await, (200, None));
        assert_eq!(get_marked(&demo, "/api/cart", &[]).await, (200, None));
        assert_eq!(
            get_marked(&demo, "/", &[("x-tier", "basic")]).await,
            (200, None)
        );
        assert_eq!(
            get_marked(&demo, "/api/checkout", &[]).await,
            (500, Some("partial".to_owned()))
        );
        assert_eq!(
            get_marked(&demo, "/", &[("x-tier", "premium")]).await,
            (500, Some("partial".to_owned()))
        );
    }
}
