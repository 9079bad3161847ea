//! `serin up` end to end with real processes and real HTTP: GitOps deploys,
//! a control-plane restart while the proxy keeps serving, re-adoption of
//! running replicas, and bad manifests that change nothing.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn manifest(tag: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          env:
            - name: DEMO_DRAIN_MS
              value: "300"
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
"#
    )
}

fn setup(name: &str) -> Dir {
    demo_dir(&format!("up-{name}"), "")
}

fn up(dir: &Path) -> Up {
    serin_up(dir, &format!("up-{}.log", rand_suffix()))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn get(dir: &Path) -> Option<serde_json::Value> {
    rollout_json(dir, "web")
}

fn healthy_stable(v: &serde_json::Value) -> Option<String> {
    let s = &v["status"];
    (s["phase"] == "Healthy")
        .then(|| s["stable_hash"].as_str().map(str::to_string))
        .flatten()
}

fn listener(dir: &Path) -> SocketAddr {
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/endpoints.json")).unwrap())
            .unwrap();
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    poll("the web listener", Duration::from_secs(20), || {
        let mut s = TcpStream::connect(api).ok()?;
        let token = std::fs::read_to_string(dir.join("state/admin.token")).ok()?;
        write!(
            s,
            "GET /v1/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let body = buf.split("\r\n\r\n").nth(1)?;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        let svc = v["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "web")?
            .clone();
        let addr: SocketAddr = svc["listen"].as_str()?.parse().ok()?;
        (addr.port() != 0).then_some(addr)
    })
}

fn pod_names(v: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["pods"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn gitops_deploy_restart_and_bad_manifest_lose_no_request() {
    let dir = setup("gitops");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    let first = up(d);
    let v1 = poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let addr = listener(d);
    let lg = load(addr);

    // 1. The control plane stops; the proxy and replicas keep serving.
    let pods_before = pod_names(&poll("pods", Duration::from_secs(10), || get(d)));
    assert_eq!(pods_before.len(), 3);
    drop(first);
    std::thread::sleep(Duration::from_millis(1500)); // traffic flows with no control plane
    let second = up(d);
    let after = poll("control plane back", Duration::from_secs(30), || {
        get(d).filter(|v| healthy_stable(v).is_some())
    });
    assert_eq!(
        pod_names(&after),
        pods_before,
        "replicas were re-adopted, not restarted"
    );

    // 2. An edit is a deploy.
    std::fs::write(d.join("manifests/web.yaml"), manifest("yellow")).unwrap();
    let v2 = poll(
        "web Healthy on a new revision",
        Duration::from_secs(90),
        || {
            get(d)
                .as_ref()
                .and_then(healthy_stable)
                .filter(|h| *h != v1)
        },
    );

    // 3. A broken manifest changes nothing.
    std::fs::write(
        d.join("manifests/web.yaml"),
        manifest("green").replace("replicas: 3", "replicas: three"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500)); // the watcher checks every second
    let still = get(d).expect("get");
    assert_eq!(healthy_stable(&still).as_deref(), Some(v2.as_str()));

    let (ok, failed) = lg.finish();
    eprintln!(
        "through restart, deploy and bad manifest: {ok} requests served, {failed} failed; revisions {v1} -> {v2}"
    );
    assert!(ok > 100, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    drop(second);
    let log: String = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("up-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        log.contains("web.yaml:") && log.contains("keeping the previous ones"),
        "the error names the file: {log}"
    );
}

#[test]
fn serin_up_refuses_bad_manifests_with_their_location() {
    let dir = setup("bad");
    let d = &dir.0;
    std::fs::write(
        d.join("manifests/web.yaml"),
        manifest("blue").replace("replicas: 3", "replicas: three"),
    )
    .unwrap();
    let out = Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(d.join("serin.yaml"))
        .arg(d.join("manifests"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("web.yaml:6:"), "{err}");
    assert!(err.contains("spec.replicas"), "{err}");
}

#[test]
fn apply_validates_then_deploys_and_logs_show_the_pods() {
    let dir = setup("apply");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    let _up = up(d);
    let v1 = poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });

    // A broken file is refused with its location, and nothing changes.
    let bad = d.join("web.yaml");
    std::fs::write(
        &bad,
        manifest("yellow").replace("replicas: 3", "replicas: three"),
    )
    .unwrap();
    let out = Command::new(SERIN)
        .args(["apply", "-f"])
        .arg(&bad)
        .args(["--state-dir"])
        .arg(d.join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.yaml:6:") && err.contains("spec.replicas"),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(d.join("manifests/web.yaml"))
            .unwrap()
            .contains(":blue")
    );

    // A good one is a deploy.
    std::fs::write(&bad, manifest("yellow")).unwrap();
    let out = Command::new(SERIN)
        .args(["apply", "-f"])
        .arg(&bad)
        .args(["--state-dir"])
        .arg(d.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll(
        "the applied revision Healthy",
        Duration::from_secs(90),
        || {
            get(d)
                .as_ref()
                .and_then(healthy_stable)
                .filter(|h| *h != v1)
        },
    );

    let out = Command::new(SERIN)
        .args(["logs", "web", "--tail", "5", "--state-dir"])
        .arg(d.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The deploy is Healthy for scripts, recorded in history and metrics.
    let st = Command::new(SERIN)
        .args(["status", "web", "--state-dir"])
        .arg(d.join("state"))
        .output()
        .unwrap();
    assert_eq!(
        st.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    let rep = poll(
        "the deployment in the report",
        Duration::from_secs(10),
        || {
            let out = Command::new(SERIN)
                .args(["report", "-o", "json", "--state-dir"])
                .arg(d.join("state"))
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["deployments"].as_u64()? >= 2).then_some(v)
        },
    );
    // blue (first revision) and yellow both succeeded.
    assert_eq!(
        rep["success_rate_pct"]["value"].as_f64(),
        Some(100.0),
        "{rep}"
    );
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    let mut s = TcpStream::connect(api).unwrap();
    let token = std::fs::read_to_string(d.join("state/admin.token")).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut metrics = String::new();
    s.read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("deployment_status_total{") && metrics.contains("status=\"success\""),
        "{metrics}"
    );
    assert!(metrics.contains("rollout_phase{"), "{metrics}");

    // Every pod (old ones may still be terminating) with its own output.
    assert!(text.matches("==> web-").count() >= 3, "{text}");
    assert!(text.contains("serin-demo-app listening"), "{text}");
}

#[test]
fn flags_are_served_on_the_control_plane_api() {
    let dir = setup("flags");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    std::fs::write(
        d.join("flags.yaml"),
        "flags:\n  new-payment-processor:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: off\n    targeting:\n      if:\n        - in: [{var: country}, [DE, FR]]\n        - 'on'\n        - 'off'\n",
    )
    .unwrap();
    let mut cfg = std::fs::read_to_string(d.join("serin.yaml")).unwrap();
    cfg.push_str(&format!(
        "flags:\n  file: {}\n",
        d.join("flags.yaml").display()
    ));
    std::fs::write(d.join("serin.yaml"), cfg).unwrap();
    let _up = up(d);
    let ep: serde_json::Value = poll("endpoints", Duration::from_secs(30), || {
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).ok()?).ok()
    });
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    let eval = |country: &str| -> serde_json::Value {
        let body = format!(r#"{{"context": {{"targetingKey": "u1", "country": "{country}"}}}}"#);
        let mut s = TcpStream::connect(api).unwrap();
        write!(
            s,
            "POST /ofrep/v1/evaluate/flags/new-payment-processor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        serde_json::from_str(buf.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap_or_default()
    };
    let de = poll("OFREP on the API address", Duration::from_secs(30), || {
        Some(eval("DE")).filter(|v| !v["value"].is_null())
    });
    assert_eq!(de["value"], serde_json::json!(true), "{de}");
    assert_eq!(de["reason"], "TARGETING_MATCH", "{de}");
    assert_eq!(eval("US")["value"], serde_json::json!(false));
}

fn canary_manifest(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: shop
spec:
  replicas: 2
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      trafficRouting:
        istio:
          virtualService:
            name: shop-vs
      steps:
        - setWeight: 50
        - pause: {{}}
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          env:
            - name: DEMO_DRAIN_MS
              value: "200"
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: shop-stable
spec:
  selector:
    app: shop
  ports:
    - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: shop-canary
spec:
  selector:
    app: shop
  ports:
    - port: 80
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: shop-vs
spec:
  hosts: [shop.local]
  http:
    - route:
        - destination:
            host: shop-stable
          weight: 100
        - destination:
            host: shop-canary
          weight: 0
"#
    )
}

fn hash_key(key: &str) -> String {
    let mut child = Command::new(SERIN)
        .args(["flags", "hash-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

fn request(
    api: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        serde_json::from_str(buf.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap_or_default(),
    )
}

#[test]
fn emergency_rollback_aborts_moves_traffic_kills_flags_and_is_idempotent() {
    let dir = setup("emergency");
    let d = &dir.0;
    std::fs::write(d.join("manifests/shop.yaml"), canary_manifest("blue")).unwrap();
    std::fs::write(
        d.join("keys.yaml"),
        format!(
            "keys:\n  - name: ops\n    kind: admin\n    environment: production\n    sha256: {}\n  - name: checkout\n    kind: server\n    environment: production\n    sha256: {}\n",
            hash_key("adm-1"),
            hash_key("srv-1")
        ),
    )
    .unwrap();
    let mut cfg = std::fs::read_to_string(d.join("serin.yaml")).unwrap();
    cfg.push_str(&format!(
        "flags:\n  keys: {}\n",
        d.join("keys.yaml").display()
    ));
    std::fs::write(d.join("serin.yaml"), cfg).unwrap();
    let _up = up(d);
    let get_shop = || -> Option<serde_json::Value> {
        let out = Command::new(SERIN)
            .args(["get", "shop", "-o", "json", "--state-dir"])
            .arg(d.join("state"))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let v1 = poll("shop Healthy", Duration::from_secs(60), || {
        get_shop().as_ref().and_then(healthy_stable)
    });
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    let (code, body) = request(
        api,
        "PUT",
        "/api/v1/environments/production/flags/new-checkout",
        "adm-1",
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"experimental": true}}"#,
    );
    assert!(code == 200 || code == 201, "{code} {body}");

    std::fs::write(d.join("manifests/shop.yaml"), canary_manifest("yellow")).unwrap();
    poll(
        "the canary at 50 %, paused",
        Duration::from_secs(60),
        || {
            let v = get_shop()?;
            (v["status"]["phase"] == "Paused" && v["route"]["weights"].as_array()?.len() == 2)
                .then_some(())
        },
    );

    let run = || {
        Command::new(SERIN)
            .args([
                "emergency-rollback",
                "shop",
                "--flags-token",
                "adm-1",
                "--state-dir",
            ])
            .arg(d.join("state"))
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("aborted the rollout in progress"), "{text}");
    assert!(
        text.contains(&format!("100 % of traffic on {v1}")),
        "{text}"
    );
    assert!(
        text.contains("flags tagged experimental disabled"),
        "{text}"
    );
    let v = get_shop().unwrap();
    assert_eq!(
        v["route"]["weights"],
        serde_json::json!([{"revision": v1, "weight": 100}])
    );
    let (_, flag) = request(
        api,
        "POST",
        "/ofrep/v1/evaluate/flags/new-checkout",
        "srv-1",
        r#"{"context": {"targetingKey": "u1"}}"#,
    );
    assert_eq!(flag["reason"], "DISABLED", "{flag}");

    // Running the playbook again is harmless.
    let again = run();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("already aborted"), "{text}");
}

#[test]
fn the_api_needs_a_token_and_the_right_role() {
    let dir = setup("auth");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    let _up = up(d);
    poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    let admin = std::fs::read_to_string(d.join("state/admin.token")).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("state/admin.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the local admin token is private");

    let (code, body) = request(api, "GET", "/v1/rollouts", "", "");
    assert_eq!(code, 401, "{body}");
    assert!(body["error"].is_string());
    let (code, _) = request(api, "GET", "/v1/rollouts", "srn_not-a-token", "");
    assert_eq!(code, 401);

    let out = Command::new(SERIN)
        .args(["token", "dashboards", "--role", "viewer", "--state-dir"])
        .arg(d.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let viewer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(viewer.starts_with("srn_"));
    let (code, _) = request(api, "GET", "/v1/rollouts/web", &viewer, "");
    assert_eq!(code, 200);
    let (code, body) = request(api, "POST", "/v1/rollouts/web/abort", &viewer, "{}");
    assert_eq!(code, 403, "{body}");
    let (code, _) = request(
        api,
        "POST",
        "/v1/tokens",
        &viewer,
        r#"{"name": "x", "role": "admin"}"#,
    );
    assert_eq!(code, 403);
    let (code, list) = request(api, "GET", "/v1/tokens", admin.trim(), "");
    assert_eq!(code, 200);
    assert!(
        list.to_string().contains("dashboards") && !list.to_string().contains(&viewer),
        "names, never values: {list}"
    );

    // No token value ever reaches the logs.
    let logs: String = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("up-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!logs.contains(&viewer) && !logs.contains(admin.trim()));
}

#[test]
fn the_event_stream_tells_a_deploy_as_it_happens() {
    let dir = setup("events");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    let _up = up(d);
    poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    let token = std::fs::read_to_string(d.join("state/admin.token")).unwrap();
    let mut s = TcpStream::connect(api).unwrap();
    write!(
        s,
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        token.trim()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut r, &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            if tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    std::fs::write(d.join("manifests/web.yaml"), manifest("yellow")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = String::new();
    while !(seen.contains("RolloutUpdated") && seen.contains("Completed")) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "events so far: {seen}");
        if let Ok(l) = rx.recv_timeout(left)
            && l.starts_with("data:")
        {
            seen.push_str(&l);
        }
    }
    assert!(seen.contains("\"rollout\":\"web\""), "{seen}");
}

/// The example scripts use the default state dir, `.serin` in their working
/// folder: point serin.yaml there, and stop that control plane on drop.
fn state_in_dot_serin(d: &Path) -> DownOnDrop {
    let cfg = std::fs::read_to_string(d.join("serin.yaml"))
        .unwrap()
        .replace(
            &d.join("state").display().to_string(),
            &d.join(".serin").display().to_string(),
        );
    std::fs::write(d.join("serin.yaml"), cfg).unwrap();
    DownOnDrop(d.join(".serin"))
}

struct DownOnDrop(PathBuf);
impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = Command::new(SERIN)
            .args(["down", "--state-dir"])
            .arg(&self.0)
            .output();
    }
}

/// PATH with the serin under test first, for the example scripts.
fn path_with_serin() -> String {
    let bin_dir = Path::new(SERIN).parent().unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_seeds_canary_script_rewritten_deploys_end_to_end() {
    let dir = setup("script");
    let d = &dir.0;
    let _down = state_in_dot_serin(d);
    let timed = |tag: &str| {
        canary_manifest(tag).replace(
            "        - pause: {}",
            "        - pause:\n            duration: 2s",
        )
    };
    std::fs::write(d.join("manifests/shop.yaml"), timed("blue")).unwrap();
    let _up = up(d);
    let path = path_with_serin();
    let status = || {
        Command::new(SERIN)
            .args(["status", "shop"])
            .current_dir(d)
            .output()
            .unwrap()
            .status
            .code()
    };
    poll("shop Healthy", Duration::from_secs(60), || {
        (status() == Some(0)).then_some(())
    });
    std::fs::write(d.join("shop-v2.yaml"), timed("yellow")).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/deploy-canary.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(d.join("shop-v2.yaml"))
        .arg("shop")
        .current_dir(d)
        .env("PATH", &path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("applied:") && text.contains("shop: Healthy"),
        "{text}"
    );
    // Like kubectl apply, the objects were updated where they are defined:
    // the watched file now holds the new version, so a restart runs it too.
    assert!(
        std::fs::read_to_string(d.join("manifests/shop.yaml"))
            .unwrap()
            .contains(":yellow")
    );
    assert!(!d.join("manifests/shop-v2.yaml").exists());
}

#[test]
fn deploy_notifications_reach_a_slack_style_receiver() {
    // A real HTTP receiver on loopback that records every POST body.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers and the body (Content-Length).
            loop {
                let n = conn.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                        let _ = tx.send(body.to_string());
                        break;
                    }
                }
            }
        }
    });
    let dir = setup("notify");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    let mut cfg = std::fs::read_to_string(d.join("serin.yaml")).unwrap();
    cfg.push_str(&format!(
        "notifications:\n  services:\n    slack: {{type: slack, url: \"http://{hook}/hook\", channel: \"#deploys\"}}\n  subscriptions:\n    - {{trigger: on-rollout-completed, service: slack}}\n"
    ));
    std::fs::write(d.join("serin.yaml"), cfg).unwrap();
    let _up = up(d);
    let v1 = poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    // The new version also subscribes itself, as Argo's annotation does.
    let annotated = manifest("yellow").replacen(
        "  name: web\n",
        "  name: web\n  annotations:\n    notifications.argoproj.io/subscribe.on-rollout-updated.slack: \"#web-team\"\n",
        1,
    );
    std::fs::write(d.join("manifests/web.yaml"), annotated).unwrap();
    poll("the new revision", Duration::from_secs(90), || {
        get(d)
            .as_ref()
            .and_then(healthy_stable)
            .filter(|h| *h != v1)
    });
    let mut bodies: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bodies.len() < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let body = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("two notifications; got {bodies:?}"));
        bodies.push(serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")));
    }
    let updated = bodies
        .iter()
        .find(|b| b["channel"] == "#web-team")
        .unwrap_or_else(|| panic!("one to the annotation's channel: {bodies:?}"));
    assert!(updated.to_string().contains("web"), "{updated}");
    let v = bodies
        .iter()
        .find(|b| b["channel"] == "#deploys")
        .unwrap_or_else(|| panic!("one to serin.yaml's channel: {bodies:?}"))
        .clone();
    let body = v.to_string();
    assert_eq!(v["channel"], "#deploys", "{v}");
    assert!(
        v["attachments"][0]["color"].is_string(),
        "the seed's attachment format: {v}"
    );
    assert!(body.contains("web"), "names the rollout: {body}");
}

#[test]
fn set_image_edits_the_manifest_in_place_and_rolls_out() {
    let dir = setup("setimage");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).unwrap();
    let _up = up(d);
    let v1 = poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let set = |arg: &str| {
        Command::new(SERIN)
            .args(["set", "image", "web", arg, "--state-dir"])
            .arg(d.join("state"))
            .output()
            .unwrap()
    };
    let bad = set("sidecar=x:1");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no container \"sidecar\" (containers: app)")
    );
    let ok = set("app=argoproj/rollouts-demo:green");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = std::fs::read_to_string(d.join("manifests/web.yaml")).unwrap();
    assert_eq!(
        text,
        manifest("blue").replace(
            "image: argoproj/rollouts-demo:blue",
            "image: \"argoproj/rollouts-demo:green\""
        ),
        "only the image changed"
    );
    poll("the new image Healthy", Duration::from_secs(90), || {
        get(d)
            .as_ref()
            .and_then(healthy_stable)
            .filter(|h| *h != v1)
    });
}

/// Runs a command on a real pseudo-terminal (python3's `pty`), answering
/// each prompt that contains `Promote now?` with the next of `answers`; after
/// a "n" it runs `after_no` (a shell command), e.g. someone else promoting.
/// Returns (exit code, everything the terminal showed).
fn on_a_terminal(cmd: &[&str], answers: &[&str], after_no: &str, limit: Duration) -> (i32, String) {
    const DRIVER: &str = r#"
import os, pty, select, subprocess, sys, time
argv = sys.argv[1:]
split = argv.index("--")
answers, cmd = argv[:split], argv[split + 1:]
limit = float(answers.pop(0))
after_no = answers.pop(0)
pid, fd = pty.fork()
if pid == 0:
    os.execv(cmd[0], cmd)
out, asked, deadline = b"", 0, time.time() + limit
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if fd in r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
        if out.count(b"Promote now?") > asked and asked < len(answers):
            os.write(fd, answers[asked].encode() + b"\n")
            if answers[asked] == "n":
                subprocess.run(after_no, shell=True, check=True, capture_output=True)
            asked += 1
else:
    os.kill(pid, 9)
_, st = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 99)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(limit.as_secs().to_string())
        .arg(after_no)
        .args(answers)
        .arg("--")
        .args(cmd)
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace('\r', ""),
    )
}

#[test]
fn status_watch_on_a_terminal_asks_at_each_manual_gate() {
    let dir = setup("gate");
    let d = &dir.0;
    let two_gates = |tag: &str| {
        canary_manifest(tag).replace(
            "        - pause: {}",
            "        - pause: {}\n        - setWeight: 75\n        - pause: {}",
        )
    };
    std::fs::write(d.join("manifests/shop.yaml"), two_gates("blue")).unwrap();
    let mut up_proc = up(d);
    let state = d.join("state").display().to_string();
    let shop = |args: &[&str]| {
        Command::new(SERIN)
            .args(args)
            .args(["--state-dir", &state])
            .output()
            .unwrap()
    };
    let json = || {
        serde_json::from_slice::<serde_json::Value>(&shop(&["get", "shop", "-o", "json"]).stdout)
            .ok()
    };
    poll("shop Healthy", Duration::from_secs(60), || {
        json().and_then(|v| healthy_stable(&v))
    });
    // -o yaml carries what -o json does.
    let yaml = shop(&["get", "rollout", "shop", "-o", "yaml"]);
    let from_yaml: serde_json::Value =
        serde_saphyr::from_str(&String::from_utf8_lossy(&yaml.stdout))
            .expect("serin get -o yaml is YAML");
    assert_eq!(from_yaml["name"], "shop");
    assert_eq!(from_yaml["status"]["phase"], "Healthy");
    std::fs::write(d.join("manifests/shop.yaml"), two_gates("yellow")).unwrap();
    // The folder is watched: wait until the control plane has read the edit.
    poll("the edit to be seen", Duration::from_secs(30), || {
        let v = json()?;
        (v["desiredHash"] != v["status"]["stable_hash"]).then_some(())
    });
    // Without a terminal nothing is asked; --until-gate reports the gate (exit 4).
    let at_gate = shop(&[
        "status",
        "shop",
        "--watch",
        "--until-gate",
        "--timeout",
        "2m",
    ]);
    assert_eq!(
        at_gate.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&at_gate.stdout)
    );
    let v = json().unwrap();
    assert_eq!(v["awaitingPromotion"], "pause step", "{v}");
    assert_eq!(v["status"]["current_step_index"], 1, "{v}");
    // On a terminal: "n" at the first gate keeps watching (someone else then
    // promotes); "y" at the second gate promotes, and the watch ends Healthy.
    let (code, screen) = on_a_terminal(
        &[
            SERIN,
            "status",
            "shop",
            "--watch",
            "--timeout",
            "2m",
            "--state-dir",
            &state,
        ],
        &["n", "y"],
        &format!("'{SERIN}' promote shop --state-dir '{state}'"),
        Duration::from_secs(150),
    );
    assert_eq!(code, 0, "{screen}");
    assert_eq!(
        screen
            .matches("waiting at a manual gate (pause step). Promote now? [y/N]")
            .count(),
        2,
        "{screen}"
    );
    assert!(screen.contains("not promoted; still watching"), "{screen}");
    assert!(screen.contains("shop: promoted"), "{screen}");
    assert!(screen.contains("shop: Healthy"), "{screen}");
    let v = json().unwrap();
    assert_eq!(v["status"]["stable_hash"], v["desiredHash"], "{v}");
    // On a terminal, `serin down` shows what it waits for while replicas drain.
    let (code, screen) = on_a_terminal(
        &[SERIN, "down", "--state-dir", &state],
        &[],
        "true",
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("replica(s) (each gets its termination grace period)"),
        "{screen}"
    );
    assert!(screen.trim_end().ends_with("stopped"), "{screen}");
    // `serin down` stopped the running `serin up` first, or it would have
    // recreated the replicas.
    poll("serin up to exit", Duration::from_secs(10), || {
        up_proc.0.try_wait().ok().flatten().map(|_| ())
    });
}

fn blue_green_manifest(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: pay
spec:
  replicas: 2
  strategy:
    blueGreen:
      activeService: pay-active
      previewService: pay-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 2
  selector:
    matchLabels:
      app: pay
  template:
    metadata:
      labels:
        app: pay
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: pay-active
spec:
  selector:
    app: pay
  ports:
    - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: pay-preview
spec:
  selector:
    app: pay
  ports:
    - port: 80
"#
    )
}

#[test]
fn the_seeds_blue_green_script_rewritten_smoke_tests_the_preview_then_promotes() {
    let dir = setup("bgscript");
    let d = &dir.0;
    let _down = state_in_dot_serin(d);
    let preview_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = std::fs::read_to_string(d.join("serin.yaml")).unwrap();
    cfg.push_str(&format!("services:\n  pay-preview: {preview_port}\n"));
    std::fs::write(d.join("serin.yaml"), cfg).unwrap();
    std::fs::write(d.join("manifests/pay.yaml"), blue_green_manifest("blue")).unwrap();
    let _up = up(d);
    let serin = |args: &[&str]| {
        Command::new(SERIN)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    let json = || {
        serde_json::from_slice::<serde_json::Value>(&serin(&["get", "pay", "-o", "json"]).stdout)
            .ok()
    };
    let blue = poll("pay Healthy", Duration::from_secs(60), || {
        json().and_then(|v| healthy_stable(&v))
    });
    std::fs::write(d.join("pay-v2.yaml"), blue_green_manifest("yellow")).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/deploy-blue-green.sh"
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(d.join("pay-v2.yaml"))
        .arg("pay")
        .arg(format!("http://127.0.0.1:{preview_port}"))
        .current_dir(d)
        .env("PATH", path_with_serin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pay: waiting for promotion"), "{text}");
    assert!(text.contains("pay: Healthy"), "{text}");
    let v = json().unwrap();
    let yellow = healthy_stable(&v).expect("Healthy after the script");
    assert_ne!(yellow, blue, "{v}");
    assert_eq!(v["status"]["active_hash"], yellow, "{v}");
    // Applying the same manifest again: nothing to promote, exit 0 at once.
    std::fs::write(d.join("pay-v2.yaml"), blue_green_manifest("yellow")).unwrap();
    let again = Command::new("bash")
        .arg(script)
        .arg(d.join("pay-v2.yaml"))
        .arg("pay")
        .arg(format!("http://127.0.0.1:{preview_port}"))
        .current_dir(d)
        .env("PATH", path_with_serin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("pay: nothing to promote"), "{text}");
}
