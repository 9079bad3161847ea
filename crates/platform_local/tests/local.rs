//! Integration tests: real python3 HTTP servers as "images", real probes over
//! loopback, real signals. Every wait polls with a deadline; every test kills
//! its process groups on drop, also when it fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serin_platform_local::{
    ImageCommand, ImageMap, LocalPlatform, Options, PodState, RevisionState,
};
use serin_spec::PodTemplateSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RO: &str = "web";
const REV: &str = "abc12";
const DEADLINE: Duration = Duration::from_secs(30);

struct Harness {
    dir: PathBuf,
    platforms: Vec<LocalPlatform>,
}

impl Harness {
    async fn new(name: &str) -> Harness {
        let mut h = Harness::fresh(name);
        h.start().await;
        h
    }

    /// A new empty directory with the app; no platform started yet.
    fn fresh(name: &str) -> Harness {
        let dir = std::env::temp_dir().join(format!("serin-pl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ctl")).expect("temp dir");
        std::fs::write(dir.join("app.py"), include_str!("app.py")).expect("write app");
        Harness {
            dir,
            platforms: Vec::new(),
        }
    }

    fn images(&self) -> ImageMap {
        let mut m = ImageMap::new();
        // The seed's images (`myregistry/...`) run the same test app.
        m.insert(
            "myregistry",
            ImageCommand {
                command: vec![
                    "python3".into(),
                    self.dir.join("app.py").display().to_string(),
                ],
                env: [("APP_DIR".to_string(), self.ctl().display().to_string())].into(),
                ..ImageCommand::default()
            },
        );
        m.insert(
            "test/app",
            ImageCommand {
                command: vec![
                    "python3".into(),
                    self.dir.join("app.py").display().to_string(),
                ],
                args: vec![],
                env: [
                    ("APP_TAG".to_string(), "{tag}".to_string()),
                    ("APP_DIR".to_string(), self.ctl().display().to_string()),
                ]
                .into(),
                workdir: None,
            },
        );
        m
    }

    async fn start(&mut self) -> LocalPlatform {
        let opts = Options {
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
            watch_interval: Duration::from_millis(100),
            log_max_bytes: 64 * 1024,
            log_files: 2,
            ..Options::default()
        };
        let p = LocalPlatform::start_with(self.dir.join("state"), self.images(), opts)
            .await
            .expect("platform starts");
        self.platforms.push(p.clone());
        p
    }

    fn p(&self) -> &LocalPlatform {
        self.platforms.last().expect("a platform")
    }

    fn ctl(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    fn touch(&self, name: &str) {
        std::fs::write(self.ctl().join(name), b"").expect("touch");
    }

    fn rm(&self, name: &str) {
        let _ = std::fs::remove_file(self.ctl().join(name));
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.ctl().join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `hits` lines for a path: (port, time, code).
    fn hits(&self, path: &str) -> Vec<(u16, f64, u16)> {
        self.lines("hits")
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&path)).then(|| {
                    (
                        f[0].parse().unwrap_or(0),
                        f[1].parse().unwrap_or(0.0),
                        f[3].parse().unwrap_or(0),
                    )
                })
            })
            .collect()
    }

    fn template(&self, container: serde_json::Value, extra: serde_json::Value) -> PodTemplateSpec {
        let mut c = container;
        let env = c["env"].as_array().cloned().unwrap_or_default();
        let mut env = env;
        env.push(serde_json::json!({"name": "APP_DIR", "value": self.ctl().display().to_string()}));
        c["env"] = serde_json::Value::Array(env);
        if c.get("image").is_none() {
            c["image"] = "test/app:v7".into();
        }
        if c.get("name").is_none() {
            c["name"] = "app".into();
        }
        let mut spec = serde_json::json!({"containers": [c]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(serde_json::json!({"spec": spec})).expect("valid template")
    }

    /// Polls `observe` until `f` returns Some, or fails after the deadline.
    async fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&[RevisionState]) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        let mut changes = self.p().changes();
        loop {
            let obs = self.p().observe(RO);
            if let Some(x) = f(&obs) {
                return x;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last observed: {obs:#?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
        }
    }

    async fn wait_ready(&self, n: usize) -> Vec<PodState> {
        self.wait_for(&format!("{n} ready pods"), |o| {
            let pods = pods(o);
            (pods.len() == n && pods.iter().all(|p| p.ready)).then_some(pods)
        })
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for p in &self.platforms {
            p.kill_all_now();
        }
        // Processes a dropped platform left for re-adoption, from its state file.
        if let Ok(text) = std::fs::read_to_string(self.dir.join("state/state.json")) {
            let pids: Vec<u32> = text
                .split("\"pid\":")
                .skip(1)
                .filter_map(|s| {
                    s.trim_start()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
            serin_platform_local::kill_groups_now(&pids);
        }
        for pid in self.lines("child") {
            if let Ok(pid) = pid.parse::<u32>() {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls a condition outside the platform with a deadline.
async fn poll_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pods(o: &[RevisionState]) -> Vec<PodState> {
    o.iter().flat_map(|r| r.pods.clone()).collect()
}

fn live(o: &[RevisionState]) -> Vec<PodState> {
    pods(o).into_iter().filter(|p| !p.terminating).collect()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|zombie| !zombie)
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or(text)
}

fn ready_http(extra: serde_json::Value) -> serde_json::Value {
    let mut p =
        serde_json::json!({"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1});
    if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    p
}

#[tokio::test]
async fn gives_port_env_workdir_and_logs() {
    let h = Harness::new("env").await;
    let t = h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "FOO", "value": "bar"}, {"name": "PORT", "value": "8080"},
                    {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http",
                "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}, "periodSeconds": 1}
        }),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 2).await.expect("scale");
    let ready = h.wait_ready(2).await;
    assert_ne!(
        ready[0].addr.port(),
        ready[1].addr.port(),
        "each replica has its own port"
    );
    for pod in &ready {
        assert!(pod.name.starts_with("web-abc12-") && pod.name.len() == "web-abc12-".len() + 5);
        let info: serde_json::Value =
            serde_json::from_str(&http_get(pod.addr, "/info").await).expect("json from the app");
        assert_eq!(info["env"]["PORT"], pod.addr.port().to_string());
        assert_eq!(info["env"]["SERIN_PORT_8080"], pod.addr.port().to_string());
        assert_eq!(info["env"]["FOO"], "bar");
        assert_eq!(info["env"]["APP_TAG"], "v7");
        assert_eq!(info["env"]["POD_NAME"], pod.name.as_str());
        assert!(info["env"].get("SECRET").is_none(), "valueFrom is skipped");
        assert_eq!(
            info["env"]["SERIN_POD_DIR"], info["cwd"],
            "own working directory"
        );
        assert!(info["cwd"].as_str().is_some_and(|c| c.contains(&pod.name)));
        assert_eq!(pod.pids, vec![info["pid"].as_u64().expect("pid") as u32]);
        assert_eq!(pod.status, "Running");
        let log = h.p().log_path(RO, &pod.name).expect("log path");
        let text = std::fs::read_to_string(&log).expect("log file");
        assert!(
            text.contains(&format!("listening on {}", pod.addr.port())),
            "stdout captured: {text:?}"
        );
    }
    // Named probe port mapped, custom header sent.
    assert!(h.lines("hits").iter().any(|l| l.contains("/ready 200 yes")));
}

#[tokio::test]
async fn readiness_initial_delay_period_and_success_threshold() {
    let h = Harness::new("rdelay").await;
    let t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}],
            "readinessProbe": ready_http(serde_json::json!({"initialDelaySeconds": 2, "successThreshold": 3}))}),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h.wait_ready(1).await.remove(0);
    let hits = h.hits("/ready");
    assert!(
        hits.len() >= 3,
        "successThreshold 3 needs 3 successes before ready, saw {}",
        hits.len()
    );
    let first = hits[0].1;
    assert!(
        first - secs(pod.started_at) >= 1.9,
        "initialDelaySeconds 2: first probe {first} vs start {:?}",
        pod.started_at
    );
    for w in hits.windows(2) {
        assert!(
            w[1].1 - w[0].1 >= 0.9,
            "periodSeconds 1 between probes: {hits:?}"
        );
    }
}

#[tokio::test]
async fn readiness_failure_threshold_and_timeout() {
    let h = Harness::new("rfail").await;
    let t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}],
            "readinessProbe": ready_http(serde_json::json!({"failureThreshold": 2, "timeoutSeconds": 1}))}),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    h.wait_ready(1).await;
    h.touch("unready");
    let flipped_at = now_secs();
    h.wait_for("unready", |o| {
        pods(o).first().is_some_and(|p| !p.ready).then_some(())
    })
    .await;
    let failed = h
        .hits("/ready")
        .iter()
        .filter(|x| x.1 >= flipped_at && x.2 == 503)
        .count();
    assert!(
        failed >= 2,
        "failureThreshold 2: went unready after {failed} failures"
    );
    assert!(
        pods(&h.p().observe(RO))[0].restarts == 0,
        "readiness never restarts"
    );
    h.rm("unready");
    h.wait_ready(1).await;
    // A server that answers after 4s fails a 1s timeout.
    h.touch("hang");
    h.wait_for("unready by timeout", |o| {
        pods(o).first().is_some_and(|p| !p.ready).then_some(())
    })
    .await;
    h.rm("hang");
    h.wait_ready(1).await;
}

#[tokio::test]
async fn tcp_readiness_and_exec_liveness_restart_with_count() {
    let h = Harness::new("live").await;
    h.touch("alive");
    // No declared ports: the probe's 8080 maps to the container's PORT.
    let t = h.template(
        serde_json::json!({
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            "livenessProbe": {"exec": {"command": ["sh", "-c", "test -f \"$APP_DIR/alive\""]},
                              "periodSeconds": 1, "failureThreshold": 2}
        }),
        serde_json::json!({"terminationGracePeriodSeconds": 2}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let before = h.wait_ready(1).await.remove(0);
    h.rm("alive");
    let after = h
        .wait_for("restart after liveness failure", |o| {
            pods(o).into_iter().find(|p| p.restarts >= 1 && p.ready)
        })
        .await;
    assert_eq!(after.name, before.name, "same pod, restarted container");
    assert_ne!(after.pids, before.pids);
    assert!(!alive(before.pids[0]), "old process is gone");
    assert_eq!(after.last_reason.as_deref(), Some("Error"));
    assert!(
        after
            .last_message
            .as_deref()
            .is_some_and(|m| m.contains("liveness probe failed 2 times"))
    );
    // The app got SIGTERM (graceful liveness kill) before it was replaced.
    assert!(
        h.lines("sigterm")
            .iter()
            .any(|l| l.starts_with(&before.pids[0].to_string()))
    );
    h.touch("alive");
}

#[tokio::test]
async fn startup_probe_gates_liveness() {
    let h = Harness::new("startup").await;
    let runs = h.ctl().join("startup-runs");
    let t = h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8080}],
            "startupProbe": {"exec": {"command": ["sh", "-c",
                format!("echo x >> {}; test -f \"$APP_DIR/started\"", runs.display())]},
                "periodSeconds": 1, "failureThreshold": 60},
            "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
        }),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    h.wait_for("3 startup probe runs", |_| {
        (h.lines("startup-runs").len() >= 3).then_some(())
    })
    .await;
    let pod = pods(&h.p().observe(RO)).remove(0);
    assert!(!pod.ready && pod.restarts == 0, "{pod:?}");
    assert!(
        h.hits("/live").is_empty(),
        "liveness must not run before startup succeeds"
    );
    h.touch("alive");
    h.touch("started");
    h.wait_ready(1).await;
    h.wait_for("a liveness probe", |_| {
        (!h.hits("/live").is_empty()).then_some(())
    })
    .await;
    assert_eq!(pods(&h.p().observe(RO))[0].restarts, 0);
}

#[tokio::test]
async fn crashing_command_goes_to_crash_loop_backoff() {
    let h = Harness::new("crash").await;
    let t = h.template(
        serde_json::json!({"image": "not/mapped:1", "command": ["sh", "-c", "echo dying; exit 3"]}),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h
        .wait_for("CrashLoopBackOff", |o| {
            pods(o)
                .into_iter()
                .find(|p| p.status == "CrashLoopBackOff" && p.restarts >= 2)
        })
        .await;
    assert!(!pod.ready);
    assert_eq!(pod.last_reason.as_deref(), Some("Error"));
    assert!(
        pod.last_message
            .as_deref()
            .is_some_and(|m| m.contains("exit status: 3")),
        "{pod:?}"
    );
    let log = std::fs::read_to_string(h.p().log_path(RO, &pod.name).expect("log")).expect("log");
    assert!(log.matches("dying").count() >= 2);
    // An unmapped image without a command is refused up front.
    let bad = h.template(
        serde_json::json!({"image": "not/mapped:1"}),
        serde_json::json!({}),
    );
    assert!(h.p().scale(RO, "other", &bad, 1).await.is_err());
}

#[tokio::test]
async fn termination_order_and_group_kill() {
    let h = Harness::new("term").await;
    let prestop = h.ctl().join("prestop");
    let t = h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "IGNORE_TERM", "value": "1"}, {"name": "SPAWN_CHILD", "value": "1"},
                    {"name": "HEARTBEAT", "value": "1"}],
            "readinessProbe": ready_http(serde_json::json!({})),
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c",
                format!("date +%s.%N > {}", prestop.display())]}}}
        }),
        serde_json::json!({"terminationGracePeriodSeconds": 2}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h.wait_ready(1).await.remove(0);
    let child: u32 = h
        .wait_for("child pid", |_| h.lines("child").first()?.parse().ok())
        .await;
    assert!(alive(child));
    h.p().scale(RO, REV, &t, 0).await.expect("scale down");
    // Out of endpoints as soon as scale returns, before any hook or signal.
    let t0 = pods(&h.p().observe(RO)).remove(0);
    assert!(
        t0.terminating && !t0.ready && t0.status == "Terminating",
        "{t0:?}"
    );
    let since = secs(t0.terminating_since.expect("terminating since"));
    h.wait_for("pod removed", |o| pods(o).is_empty().then_some(()))
        .await;
    let pre: f64 = std::fs::read_to_string(&prestop)
        .expect("preStop ran")
        .trim()
        .parse()
        .expect("ts");
    let term: f64 = h.lines("sigterm")[0]
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .expect("sigterm");
    assert!(since <= pre, "not-ready ({since}) before preStop ({pre})");
    assert!(pre <= term, "preStop ({pre}) before SIGTERM ({term})");
    let last_beat: f64 = h
        .lines(&format!("beat-{}", pod.pids[0]))
        .last()
        .and_then(|x| x.parse().ok())
        .expect("heartbeats");
    assert!(
        last_beat >= since + 1.5,
        "ignored SIGTERM, so it ran until the 2s grace ended: {last_beat} vs {since}"
    );
    assert!(!alive(pod.pids[0]), "SIGKILL reached the main process");
    h.wait_for("child killed", |_| (!alive(child)).then_some(()))
        .await;
}

#[tokio::test]
async fn memory_limit_is_oomkilled_and_restarted() {
    let h = Harness::new("oom").await;
    let t = h.template(
        serde_json::json!({"env": [{"name": "MEM_HOG", "value": "1"}],
            "resources": {"limits": {"memory": "96Mi"}}}),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h
        .wait_for("OOMKilled and restarted", |o| {
            pods(o)
                .into_iter()
                .find(|p| p.last_reason.as_deref() == Some("OOMKilled") && p.restarts >= 1)
        })
        .await;
    assert!(
        pod.last_message
            .as_deref()
            .is_some_and(|m| m.contains("exceeded the limit of 100663296"))
    );
    poll_until("the process started again", || h.lines("starts").len() >= 2).await;
}

#[tokio::test]
async fn scale_down_picks_unready_first_then_newest() {
    let h = Harness::new("pick").await;
    let t = h.template(
        serde_json::json!({"readinessProbe": {"exec": {"command": ["sh", "-c", "test ! -f \"$APP_DIR/unready-$PORT\""]},
            "periodSeconds": 1, "failureThreshold": 1}}),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    h.p().scale(RO, REV, &t, 3).await.expect("scale");
    let mut ready = h.wait_ready(3).await;
    ready.sort_by_key(|p| p.started_at);
    let oldest = ready[0].clone();
    h.touch(&format!("unready-{}", oldest.addr.port()));
    h.wait_for("oldest unready", |o| {
        pods(o)
            .into_iter()
            .find(|p| p.name == oldest.name && !p.ready)
    })
    .await;
    h.p().scale(RO, REV, &t, 2).await.expect("scale to 2");
    let gone: Vec<String> = pods(&h.p().observe(RO))
        .into_iter()
        .filter(|p| p.terminating)
        .map(|p| p.name)
        .collect();
    assert_eq!(
        gone,
        vec![oldest.name.clone()],
        "the unready pod goes first"
    );
    h.rm(&format!("unready-{}", oldest.addr.port()));
    h.wait_for("2 live", |o| (pods(o).len() == 2).then_some(()))
        .await;
    h.p().scale(RO, REV, &t, 1).await.expect("scale to 1");
    let gone: Vec<String> = pods(&h.p().observe(RO))
        .into_iter()
        .filter(|p| p.terminating)
        .map(|p| p.name)
        .collect();
    assert_eq!(gone, vec![ready[2].name.clone()], "then the newest");
    assert_eq!(live(&h.p().observe(RO))[0].name, ready[1].name);
    // Idempotent: the same call changes nothing.
    h.p().scale(RO, REV, &t, 1).await.expect("again");
    assert_eq!(live(&h.p().observe(RO)).len(), 1);
}

#[tokio::test]
async fn readopts_running_replicas_after_restart() {
    let mut h = Harness::new("adopt").await;
    let t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}], "readinessProbe": ready_http(serde_json::json!({}))}),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    h.p().set_min_ready_seconds(RO, 1);
    h.p().scale(RO, REV, &t, 2).await.expect("scale");
    h.wait_ready(2).await;
    let before = h
        .wait_for("2 available", |o| {
            let p = pods(o);
            p.iter().all(|p| p.available).then_some(p)
        })
        .await;
    h.p().shutdown(false).await;
    for p in &before {
        assert!(alive(p.pids[0]), "shutdown(false) leaves replicas running");
    }
    h.platforms.clear();
    let hits_before = h.hits("/ready").len();
    let p2 = h.start().await;
    let now = pods(&p2.observe(RO));
    assert_eq!(now.len(), 2);
    for (a, b) in before.iter().zip(&now) {
        assert_eq!(
            (&a.name, &a.pids, a.addr, a.restarts),
            (&b.name, &b.pids, b.addr, 0)
        );
        assert!(
            b.ready && b.available,
            "still ready and available right after adoption: {b:?}"
        );
    }
    h.wait_for("probing resumed", |_| {
        (h.hits("/ready").len() >= hits_before + 4).then_some(())
    })
    .await;
    let again = h.wait_ready(2).await;
    assert_eq!(
        again.iter().map(|p| p.pids.clone()).collect::<Vec<_>>(),
        before.iter().map(|p| p.pids.clone()).collect::<Vec<_>>()
    );
    assert_eq!(http_get(again[0].addr, "/").await, "ok");

    // A replica that died while no platform ran is reported, then replaced.
    p2.shutdown(false).await;
    h.platforms.clear();
    serin_platform_local::kill_groups_now(&before[0].pids);
    poll_until("killed", || !alive(before[0].pids[0])).await;
    let p3 = h.start().await;
    let lost = pods(&p3.observe(RO))
        .into_iter()
        .find(|p| p.name == before[0].name)
        .expect("reported");
    assert_eq!(
        (lost.status.as_str(), lost.last_reason.as_deref()),
        ("Error", Some("ProcessGone"))
    );
    p3.scale(RO, REV, &t, 2).await.expect("scale");
    let replaced = h.wait_ready(2).await;
    assert!(replaced.iter().all(|p| p.name != before[0].name));
    assert!(
        replaced
            .iter()
            .any(|p| p.name == before[1].name && p.pids == before[1].pids)
    );
    p3.shutdown(true).await;
    assert!(pods(&p3.observe(RO)).is_empty());
    assert!(!alive(before[1].pids[0]), "shutdown(true) terminates");
    h.platforms.clear();
    let p4 = h.start().await;
    assert!(
        pods(&p4.observe(RO)).is_empty(),
        "a clean shutdown leaves nothing to adopt"
    );
}

#[tokio::test]
async fn sidecar_gets_its_own_port_and_logs_rotate_by_size() {
    let h = Harness::new("sidecar").await;
    let mut t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}], "readinessProbe": ready_http(serde_json::json!({}))}),
        serde_json::json!({}),
    );
    // A chatty sidecar: 200 KB of output, then its port every 200 ms. Repeated
    // because copy-truncate rotation may drop a line written mid-rotation.
    let sidecar: serin_spec::Container = serde_json::from_value(serde_json::json!({
        "name": "chatty", "image": "busybox",
        "command": ["sh", "-c", "yes serin-log-line | head -c 200000; while true; do echo \"port=$PORT\"; sleep 0.2; done"]
    }))
    .expect("container");
    t.spec.containers.push(sidecar);
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h.wait_ready(1).await.remove(0);
    assert_eq!(pod.pids.len(), 2, "one process per container");
    let log = h.p().container_log_path(RO, &pod.name, "chatty");
    let rotated = PathBuf::from(format!("{}.1", log.display()));
    poll_until("rotation", || rotated.exists()).await;
    // A port line may sit in the live file or, if rotation came after it, in `.1`.
    let all = || {
        [&rotated, &log]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<String>()
    };
    poll_until("tail written", || all().contains("port=")).await;
    let port: u16 = all()
        .split("port=")
        .nth(1)
        .and_then(|x| x.trim().parse().ok())
        .expect("port line");
    assert_ne!(port, pod.addr.port(), "the sidecar has its own PORT");
    let total: u64 = [
        &log,
        &rotated,
        &PathBuf::from(format!("{}.2", log.display())),
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| m.len())
    .sum();
    assert!(std::fs::metadata(&log).expect("log").len() < 200_000 && total > 64 * 1024);
    assert_eq!(
        h.p().log_path(RO, &pod.name),
        Some(h.p().container_log_path(RO, &pod.name, "app"))
    );
}

#[tokio::test]
async fn seed_deployment_runs_unchanged() {
    let h = Harness::new("seed").await;
    let mut set = serin_spec::ManifestSet::new();
    set.add_source(
        "seed-deployment.yaml",
        include_str!("fixtures/seed-deployment.yaml"),
    );
    let (_, rollout) = set
        .rollouts()
        .next()
        .expect("the seed Deployment becomes a rollout");
    let t = rollout.spec.template.clone().expect("pod template");
    assert_eq!(
        t.spec.containers[0].image.as_deref(),
        Some("myregistry/api-server:v1.2.3")
    );
    h.p()
        .scale("api-server", "seed1", &t, 1)
        .await
        .expect("scale");
    let deadline = Instant::now() + DEADLINE;
    let pod = loop {
        let ready: Vec<PodState> = pods(&h.p().observe("api-server"))
            .into_iter()
            .filter(|p| p.ready)
            .collect();
        if let Some(p) = ready.into_iter().next() {
            break p;
        }
        assert!(Instant::now() < deadline, "seed pod never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // containerPort 8080 mapped to the replica's own port for the probe.
    assert!(
        h.hits("/ready")
            .iter()
            .any(|x| x.0 == pod.addr.port() && x.2 == 200)
    );
    assert!(
        secs(SystemTime::now()) - secs(pod.started_at) >= 5.0,
        "initialDelaySeconds 5 honoured"
    );
    assert_eq!(http_get(pod.addr, "/").await, "ok");
}

/// Live pods created before `t`.
fn older_than(o: &[RevisionState], t: SystemTime) -> usize {
    live(o).iter().filter(|p| p.started_at < t).count()
}

#[tokio::test]
async fn restart_pods_surges_then_retires_and_never_lowers_readiness() {
    let h = Harness::new("restart").await;
    // New pods take at least a second to become ready, so a replacement is
    // visibly in flight beside its old pod.
    let t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}],
            "readinessProbe": ready_http(serde_json::json!({"initialDelaySeconds": 1}))}),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    h.p().set_min_ready_seconds(RO, 1);
    h.p().scale(RO, REV, &t, 2).await.expect("scale");
    let old = h.wait_ready(2).await;
    let at = SystemTime::now();
    h.p().restart_pods(RO, REV, at, 1).await.expect("restart");
    // Called again, and scaled to the same size: nothing more starts and
    // the surge pod is not taken for an extra replica.
    h.p().restart_pods(RO, REV, at, 1).await.expect("again");
    h.p().scale(RO, REV, &t, 2).await.expect("same size");
    let o = h.p().observe(RO);
    assert_eq!(
        live(&o).len(),
        3,
        "one replacement beside two old pods: {o:#?}"
    );
    let oldest = old.iter().min_by_key(|p| p.started_at).expect("pods");
    let surge = live(&o)
        .into_iter()
        .find(|p| p.replaces.is_some())
        .expect("a replacement");
    assert_eq!(surge.replaces.as_deref(), Some(oldest.name.as_str()));
    assert_eq!(o[0].desired, 2);
    // Ready but not yet available (minReadySeconds 1): the old pod stays.
    h.wait_for("replacement ready", |o| {
        live(o)
            .into_iter()
            .find(|p| p.name == surge.name && p.ready)
    })
    .await;
    h.p().restart_pods(RO, REV, at, 1).await.expect("restart");
    assert!(
        live(&h.p().observe(RO))
            .iter()
            .any(|p| p.name == oldest.name),
        "old pod retired before its replacement was available"
    );
    // Keep reconciling like the control plane does until no old pod is left;
    // at every look at least two pods are ready and at most one is extra.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let o = h.p().observe(RO);
        let ready = live(&o).iter().filter(|p| p.ready).count();
        assert!(ready >= 2, "readiness dropped to {ready}: {o:#?}");
        assert!(live(&o).len() <= 3, "more than one in flight: {o:#?}");
        if older_than(&o, at) == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "restart never finished: {o:#?}");
        h.p().restart_pods(RO, REV, at, 1).await.expect("restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = h.wait_ready(2).await;
    assert!(
        now.iter()
            .all(|p| p.started_at >= at && p.replaces.is_none())
    );
    assert!(now.iter().all(|p| old.iter().all(|o| o.name != p.name)));
    for p in &old {
        poll_until("old pod gone", || !alive(p.pids[0])).await;
    }
    let sigterms = h.lines("sigterm");
    assert_eq!(
        sigterms.len(),
        2,
        "each old pod terminated normally: {sigterms:?}"
    );
    assert_eq!(http_get(now[0].addr, "/").await, "ok");
}

#[tokio::test]
async fn scale_takes_a_pod_with_its_replacement_and_links_survive_readoption() {
    let mut h = Harness::new("restart-scale").await;
    let t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}],
            "readinessProbe": ready_http(serde_json::json!({"initialDelaySeconds": 1}))}),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    h.p().scale(RO, REV, &t, 3).await.expect("scale");
    let old = h.wait_ready(3).await;
    let at = SystemTime::now();
    h.p().restart_pods(RO, REV, at, 2).await.expect("restart");
    assert_eq!(live(&h.p().observe(RO)).len(), 5);
    // Scaling to 2 removes one replica: the newest old pod, with its
    // replacement if it has one; the two oldest keep theirs.
    h.p().scale(RO, REV, &t, 2).await.expect("scale to 2");
    let o = h.p().observe(RO);
    let mut by_age = old.clone();
    by_age.sort_by_key(|p| p.started_at);
    let kept: Vec<String> = live(&o)
        .iter()
        .filter(|p| p.replaces.is_none())
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(kept, vec![by_age[0].name.clone(), by_age[1].name.clone()]);
    assert_eq!(live(&o).len(), 4, "{o:#?}");
    // The links survive a control-plane restart (re-adoption) once the
    // replacements' processes run (one not started yet would be lost and
    // simply replaced again).
    h.wait_for("replacements running", |o| {
        live(o)
            .iter()
            .filter(|p| p.replaces.is_some() && !p.pids.is_empty())
            .count()
            .eq(&2)
            .then_some(())
    })
    .await;
    h.p().shutdown(false).await;
    h.platforms.clear();
    let p2 = h.start().await;
    let o = p2.observe(RO);
    assert_eq!(
        live(&o).iter().filter(|p| p.replaces.is_some()).count(),
        2,
        "{o:#?}"
    );
    p2.scale(RO, REV, &t, 2)
        .await
        .expect("same size after adoption");
    assert_eq!(live(&p2.observe(RO)).len(), 4);
    let deadline = Instant::now() + DEADLINE;
    while older_than(&p2.observe(RO), at) > 0 {
        assert!(Instant::now() < deadline, "restart never finished");
        p2.restart_pods(RO, REV, at, 2).await.expect("restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now = h.wait_ready(2).await;
    assert!(now.iter().all(|p| p.started_at >= at));
}

/// `scheme: HTTPS` on the pod's own HTTPS server (python's ssl with a
/// certificate from a CA nobody trusts, for a name the probe never dials):
/// like the kubelet, no verification; 2xx/3xx is ready, 500 is not.
#[tokio::test]
async fn https_readiness_probe_skips_verification_and_needs_2xx_or_3xx() {
    let h = Harness::new("https-probe").await;
    let pki = serin_tls::testing::TestPki::new(&h.dir, "pod", &["pod.internal.example"]);
    let t = h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8443}],
            "env": [{"name": "TLS_CERT", "value": pki.cert.display().to_string()},
                    {"name": "TLS_KEY", "value": pki.key.display().to_string()}],
            // /live answers 500 until the `alive` file exists.
            "readinessProbe": {"httpGet": {"scheme": "HTTPS", "path": "/live", "port": 8443},
                               "periodSeconds": 1}
        }),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    h.p()
        .scale(RO, REV, &t, 1)
        .await
        .expect("HTTPS probes are accepted");
    // The 500s were served over TLS (the handshake passed; the status failed it).
    h.wait_for("two HTTPS probes answered 500", |_| {
        (h.hits("/live").iter().filter(|x| x.2 == 500).count() >= 2).then_some(())
    })
    .await;
    let p = pods(&h.p().observe(RO)).remove(0);
    assert!(!p.ready && p.status == "Running", "500 is not ready: {p:?}");
    h.touch("alive");
    let p = h.wait_ready(1).await.remove(0);
    assert!(h.hits("/live").iter().any(|x| x.2 == 200));
    // Plain HTTP to the same port gets no HTTP answer: it really is TLS.
    let mut s = tokio::net::TcpStream::connect(p.addr)
        .await
        .expect("connect");
    s.write_all(b"GET /live HTTP/1.0\r\n\r\n")
        .await
        .expect("send");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1"), "{buf:?}");
}

/// An HTTPS probe of a plain-HTTP server fails (the handshake does), and the
/// server never sees a request it could answer.
#[tokio::test]
async fn https_probe_of_a_plain_http_server_fails() {
    let h = Harness::new("https-plain").await;
    let t = h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8080}],
            "readinessProbe": ready_http(serde_json::json!({})),
        }),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    let mut t_https = t.clone();
    t_https.spec.containers[0]
        .readiness_probe
        .as_mut()
        .and_then(|p| p.http_get.as_mut())
        .expect("httpGet")
        .scheme = Some("HTTPS".into());
    h.p().scale(RO, REV, &t_https, 1).await.expect("scale");
    h.wait_for("three TLS hellos rejected by the plain server", |_| {
        (h.lines("errors").len() >= 3).then_some(())
    })
    .await;
    let p = pods(&h.p().observe(RO)).remove(0);
    assert!(!p.ready && p.status == "Running", "{p:?}");
    assert!(h.hits("/ready").is_empty(), "no request got through");
    // The same server with scheme HTTP is ready: only the scheme was wrong.
    h.p().scale(RO, "plain", &t, 1).await.expect("scale");
    h.wait_for("the HTTP-probed pod ready", |o| {
        o.iter()
            .find(|r| r.hash == "plain")
            .and_then(|r| r.pods.first())
            .is_some_and(|p| p.ready)
            .then_some(())
    })
    .await;
    let p = pods(&h.p().observe(RO))
        .into_iter()
        .find(|p| p.name.contains(REV))
        .expect("https pod");
    assert!(!p.ready, "{p:?}");
}

/// An HTTPS server in the test that records what each probe sent: SNI is the
/// probe's `host` when it is a name, none for the default 127.0.0.1; a `Host`
/// header changes the HTTP Host only (Kubernetes / Go semantics).
#[tokio::test]
async fn https_probe_sni_and_host_header_like_the_kubelet() {
    use std::sync::{Arc, Mutex};
    let h = Harness::new("https-sni").await;
    let pki = serin_tls::testing::TestPki::new(&h.dir, "srv", &["localhost"]);
    let config = serin_tls::server_config(&pki.cert, &pki.key).expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut listener = serin_tls::TlsListener::new(tcp, config).expect("listener");
    let port = listener.local_addr().port();
    type Seen = Arc<Mutex<Vec<(String, Option<String>, String, String)>>>;
    let seen: Seen = Arc::default();
    tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                let (tls, _) = listener.accept().await;
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let header = |n: hyper::header::HeaderName| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push((
                            req.uri().path().to_string(),
                            sni.clone(),
                            header(hyper::header::HOST),
                            header(hyper::header::USER_AGENT),
                        ));
                        async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Empty::<hyper::body::Bytes>::new(),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        }
    });
    let t = h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8080}],
            "startupProbe": {"httpGet": {"scheme": "HTTPS", "path": "/by-ip", "port": port},
                             "periodSeconds": 1},
            "readinessProbe": {"httpGet": {"scheme": "https", "path": "/by-name", "port": port,
                                            "host": "localhost",
                                            "httpHeaders": [{"name": "Host", "value": "app.example.test"}]},
                               "periodSeconds": 1}
        }),
        serde_json::json!({"terminationGracePeriodSeconds": 1}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    h.wait_ready(1).await;
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let by_ip = seen
        .iter()
        .find(|s| s.0 == "/by-ip")
        .expect("startup probe");
    assert_eq!(by_ip.1, None, "no SNI for an IP: {seen:?}");
    assert_eq!(by_ip.2, format!("127.0.0.1:{port}"));
    assert!(by_ip.3.starts_with("kube-probe/"), "{seen:?}");
    let by_name = seen
        .iter()
        .find(|s| s.0 == "/by-name")
        .expect("readiness probe");
    assert_eq!(
        by_name.1.as_deref(),
        Some("localhost"),
        "SNI is the host: {seen:?}"
    );
    assert_eq!(
        by_name.2, "app.example.test",
        "the Host header is sent as given"
    );
}

#[tokio::test]
async fn unknown_http_get_scheme_is_refused_before_anything_runs() {
    let h = Harness::new("scheme").await;
    let t = h.template(
        serde_json::json!({
            "readinessProbe": {"httpGet": {"scheme": "FTP", "path": "/", "port": 8080}}
        }),
        serde_json::json!({}),
    );
    let err = h.p().scale(RO, REV, &t, 1).await.expect_err("refused");
    assert!(err.to_string().contains("\"FTP\""), "{err}");
    assert!(h.p().observe(RO).is_empty());
}

const CRASH_CHILD: &str = "SERIN_PL_CRASH_CHILD";

/// A pod whose app ignores SIGTERM (so only SIGKILL ends it), with a child
/// process in its group, a heartbeat every 100 ms and a preStop hook that
/// appends a line to `ctl/prestop`.
fn stubborn_template(h: &Harness, grace: i64) -> PodTemplateSpec {
    let prestop = h.ctl().join("prestop");
    h.template(
        serde_json::json!({
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "IGNORE_TERM", "value": "1"}, {"name": "SPAWN_CHILD", "value": "1"},
                    {"name": "HEARTBEAT", "value": "1"}],
            "readinessProbe": ready_http(serde_json::json!({})),
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c",
                format!("echo ran >> {}", prestop.display())]}}}
        }),
        serde_json::json!({"terminationGracePeriodSeconds": grace}),
    )
}

/// The control plane that dies: started by the crash tests below as this
/// test binary re-executed. It starts a platform on the parent's directory,
/// runs one stubborn pod, begins its termination, waits until SIGTERM has
/// been sent and recorded, prints `TERMINATING <since> <pid>` and waits to be
/// SIGKILLed: no shutdown, no final save.
#[tokio::test]
#[ignore = "helper process for the crash tests"]
async fn crash_child() {
    let Ok(spec) = std::env::var(CRASH_CHILD) else {
        return;
    };
    let (dir, grace) = spec.rsplit_once(':').expect("DIR:GRACE");
    // Never cleaned up here: the directory and the processes are the parent's.
    let mut h = std::mem::ManuallyDrop::new(Harness {
        dir: PathBuf::from(dir),
        platforms: Vec::new(),
    });
    h.start().await;
    let t = stubborn_template(&h, grace.parse().expect("grace"));
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h.wait_ready(1).await.remove(0);
    h.p().scale(RO, REV, &t, 0).await.expect("scale down");
    let since = pods(&h.p().observe(RO))[0]
        .terminating_since
        .expect("terminating");
    // preStop ran, SIGTERM arrived (and was ignored) and the platform recorded it.
    let state = h.dir.join("state/state.json");
    poll_until("SIGTERM sent and recorded", || {
        !h.lines("sigterm").is_empty()
            && std::fs::read_to_string(&state).is_ok_and(|s| s.contains("\"sigterm_sent\": true"))
    })
    .await;
    println!("TERMINATING {} {}", secs(since), pod.pids[0]);
    std::future::pending::<()>().await;
}

/// Runs `crash_child` until its pod is terminating, then SIGKILLs it (the
/// control plane dies mid-termination). Returns (terminating since, pid).
fn crash_mid_termination(h: &Harness, grace: i64) -> (f64, u32) {
    let mut child = Command::new(std::env::current_exe().expect("test exe"))
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(CRASH_CHILD, format!("{}:{grace}", h.dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the control plane");
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines() {
        let line = line.expect("read child stdout");
        if let Some(rest) = line.strip_prefix("TERMINATING ") {
            let mut f = rest.split_whitespace();
            let since: f64 = f.next().and_then(|x| x.parse().ok()).expect("since");
            let pid: u32 = f.next().and_then(|x| x.parse().ok()).expect("pid");
            child.kill().expect("SIGKILL the control plane");
            let _ = child.wait();
            return (since, pid);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the control plane exited before its pod was terminating");
}

fn last_beat(h: &Harness, pid: u32) -> f64 {
    h.lines(&format!("beat-{pid}"))
        .last()
        .and_then(|x| x.parse().ok())
        .expect("heartbeats")
}

/// What a restarted platform must never do to a terminating pod, and that
/// nothing of the pod is left.
async fn assert_finished_cleanly(h: &Harness, pid: u32, pod_name: &str) {
    h.wait_for("terminating pod removed", |o| {
        pods(o).iter().all(|p| p.name != pod_name).then_some(())
    })
    .await;
    assert_eq!(h.lines("prestop").len(), 1, "preStop is not run again");
    assert_eq!(h.lines("sigterm").len(), 1, "SIGTERM is not sent again");
    assert!(!alive(pid));
    let child: u32 = h.lines("child")[0].parse().expect("child pid");
    poll_until("the pod's child process gone", || !alive(child)).await;
    assert!(
        !h.dir.join("state/pods").join(pod_name).exists(),
        "pod directory removed"
    );
    let state = std::fs::read_to_string(h.dir.join("state/state.json")).expect("state file");
    assert!(
        !state.contains(pod_name),
        "gone from the state file: {state}"
    );
}

#[tokio::test]
async fn terminating_pod_survives_a_control_plane_crash_and_is_killed_at_its_deadline() {
    const GRACE: i64 = 3;
    let mut h = Harness::fresh("crash-term");
    let (since, pid) = crash_mid_termination(&h, GRACE);
    assert!(alive(pid), "the replica outlives its control plane");
    let p2 = h.start().await;
    // Adopted as terminating: out of endpoints, not live, same deadline.
    let obs = p2.observe(RO);
    let pod = pods(&obs)
        .into_iter()
        .find(|p| p.pids == [pid])
        .expect("adopted");
    assert!(
        pod.terminating && !pod.ready && !pod.available && pod.status == "Terminating",
        "{pod:?}"
    );
    let kept = secs(pod.terminating_since.expect("since"));
    assert!((kept - since).abs() < 0.001, "since {since} kept as {kept}");
    assert!(live(&obs).is_empty(), "{obs:#?}");
    // Not counted as a replica: asking for one starts a new pod beside it.
    let t = stubborn_template(&h, GRACE);
    p2.scale(RO, REV, &t, 1).await.expect("scale");
    assert_eq!(live(&p2.observe(RO)).len(), 1);
    // It keeps running (SIGTERM ignored) until the grace period ends, then SIGKILL.
    poll_until("SIGKILL at the deadline", || !alive(pid)).await;
    let died_by = now_secs();
    let beat = last_beat(&h, pid);
    assert!(
        beat >= since + GRACE as f64 - 0.5,
        "ran until the grace period ended: last heartbeat {beat}, since {since}"
    );
    assert!(
        died_by < since + GRACE as f64 + 10.0,
        "killed around the deadline ({since} + {GRACE}s), not at {died_by}"
    );
    assert_finished_cleanly(&h, pid, &pod.name).await;
    let fresh = h.wait_ready(1).await;
    assert_ne!(fresh[0].name, pod.name);
}

#[tokio::test]
async fn terminating_pod_whose_deadline_passed_during_the_downtime_is_killed_at_once() {
    const GRACE: i64 = 3;
    let mut h = Harness::fresh("crash-late");
    let (since, pid) = crash_mid_termination(&h, GRACE);
    let state = std::fs::read_to_string(h.dir.join("state/state.json")).expect("state file");
    let prefix = format!("{RO}-{REV}-");
    let pod_name = state
        .split('"')
        .find(|s| s.starts_with(&prefix))
        .expect("pod in the state file")
        .to_string();
    // Nobody runs the countdown while the control plane is down.
    poll_until("the deadline passed", || {
        now_secs() > since + GRACE as f64 + 0.5
    })
    .await;
    assert!(alive(pid), "no control plane, so nobody killed it");
    let started = Instant::now();
    let p2 = h.start().await;
    if let Some(pod) = pods(&p2.observe(RO)).into_iter().find(|p| p.pids == [pid]) {
        assert!(pod.terminating && !pod.ready, "{pod:?}");
    }
    poll_until("SIGKILL at once", || !alive(pid)).await;
    // A fresh countdown would have let it live GRACE more seconds.
    assert!(
        started.elapsed() < Duration::from_secs(GRACE as u64),
        "killed after {:?}, not at once",
        started.elapsed()
    );
    assert_finished_cleanly(&h, pid, &pod_name).await;
    assert!(pods(&p2.observe(RO)).is_empty());
}

/// Hardening (#16, item 4): a replica gets the environment the kubelet would
/// give it — its manifest and image env, `PORT`, the pod variables, a minimal
/// `PATH` and a `HOME` — never the environment of the process running the
/// platform (which may hold tokens and credentials), and works in a directory
/// outside the state dir.
#[tokio::test]
async fn replicas_get_a_clean_environment_and_work_outside_the_state_dir() {
    let mut h = Harness::fresh("cleanenv");
    let pods_dir = h.dir.join("elsewhere-pods");
    let opts = Options {
        pods_dir: Some(pods_dir.clone()),
        ..Options::default()
    };
    // The interpreter itself, not a version manager's shim (a shim script
    // sets variables of its own before it runs python).
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut images = h.images();
    images.insert(
        "test/app",
        ImageCommand {
            command: vec![python, h.dir.join("app.py").display().to_string()],
            env: [
                ("APP_TAG".to_string(), "{tag}".to_string()),
                ("APP_DIR".to_string(), h.ctl().display().to_string()),
            ]
            .into(),
            ..ImageCommand::default()
        },
    );
    let p = LocalPlatform::start_with(h.dir.join("state"), images, opts)
        .await
        .expect("platform starts");
    h.platforms.push(p);
    // The test process has variables of its own (cargo's, nextest's, the
    // shell's); none of them may reach the replica.
    let ours: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    assert!(!ours.is_empty());
    let t = h.template(
        serde_json::json!({"ports": [{"containerPort": 8080}],
            "env": [{"name": "FOO", "value": "bar"}],
            "readinessProbe": ready_http(serde_json::json!({}))}),
        serde_json::json!({}),
    );
    h.p().scale(RO, REV, &t, 1).await.expect("scale");
    let pod = h.wait_ready(1).await.remove(0);
    let info: serde_json::Value =
        serde_json::from_str(&http_get(pod.addr, "/info").await).expect("json from the app");
    let env = info["env"].as_object().expect("env");
    assert_eq!(env["PATH"], serin_platform_local::DEFAULT_PATH);
    assert_eq!(env["FOO"], "bar");
    assert_eq!(env["PORT"], pod.addr.port().to_string());
    assert_eq!(
        env["HOME"], info["cwd"],
        "HOME is the replica's own directory"
    );
    let allowed = |k: &str| {
        matches!(
            k,
            "PATH" | "HOME" | "PORT" | "FOO" | "APP_DIR" | "APP_TAG" | "POD_NAME" | "HOSTNAME"
        ) || k.starts_with("SERIN_")
            // Set by python itself or the C library at start-up, not inherited.
            || k == "LC_CTYPE"
    };
    let leaked: Vec<&String> = env.keys().filter(|k| !allowed(k)).collect();
    assert!(
        leaked.is_empty(),
        "inherited variables reached the replica: {leaked:?}"
    );
    for k in &ours {
        if !allowed(k) {
            assert!(
                !env.contains_key(k),
                "{k} leaked from the platform's environment"
            );
        }
    }
    let cwd = PathBuf::from(info["cwd"].as_str().expect("cwd"));
    assert!(
        cwd.starts_with(&pods_dir),
        "{} under {}",
        cwd.display(),
        pods_dir.display()
    );
    assert!(!cwd.starts_with(h.dir.join("state")));
    // Logs stay in the state dir, readable by this user only.
    let log = h.p().log_path(RO, &pod.name).expect("log path");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&log).expect("log").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "log {} is private", log.display());
}
