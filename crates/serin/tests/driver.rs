//! The driver under a real `serin up`: a rollout the platform cannot run (an
//! image with no `images:` entry) shows its error once and backs off like
//! Kubernetes' ImagePullBackOff, while another rollout deploys; fixing the
//! manifest recovers it at once. Waits poll with a deadline.

mod support;
use support::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: app
          image: {image}
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
"#
    )
}

fn get(d: &Path, name: &str) -> Option<serde_json::Value> {
    let out = Command::new(SERIN)
        .args(["get", name, "-o", "json", "--state-dir"])
        .arg(d.join("state"))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn healthy(v: &serde_json::Value) -> bool {
    v["status"]["phase"] == "Healthy" && v["status"]["stable_hash"] == v["desiredHash"]
}

#[test]
fn an_unmapped_image_backs_off_with_one_error_while_other_rollouts_deploy() {
    let dir = std::env::temp_dir().join(format!("serin-driver-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    let dir = Dir(dir);
    let d = &dir.0;
    std::fs::write(
        d.join("serin.yaml"),
        format!(
            "stateDir: {}\nimages:\n  argoproj/rollouts-demo:\n    command: [\"{SERIN}\", \"demo-app\"]\n    args: [\"--demo-version\", \"{{tag}}\"]\n",
            d.join("state").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("manifests/web.yaml"),
        deployment("web", "argoproj/rollouts-demo:blue"),
    )
    .unwrap();
    std::fs::write(
        d.join("manifests/broken.yaml"),
        deployment("broken", "example.com/not-mapped:1"),
    )
    .unwrap();
    let log = d.join("up.log");
    let _up = Up(Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(d.join("serin.yaml"))
        .arg(d.join("manifests"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("serin up starts"));

    poll(
        "web Healthy next to a broken rollout",
        Duration::from_secs(60),
        || get(d, "web").filter(healthy),
    );
    // The error is on the broken rollout, and retries space out: wait
    // until the driver has failed at least four times (1 + 2 + 4 s apart).
    let err = poll(
        "the broken rollout backing off",
        Duration::from_secs(60),
        || {
            let v = get(d, "broken")?;
            let e = &v["driverError"];
            let gap = e["retryAt"].as_u64()?.checked_sub(e["since"].as_u64()?)?;
            (gap >= 7_000).then(|| e.clone())
        },
    );
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("images"), "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    // serin up said at start, located, that the image has no mapping …
    let lint: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("unmapped-image"))
        .collect();
    assert_eq!(lint.len(), 1, "one located lint warning:\n{text}");
    assert!(lint[0].contains("broken.yaml:"), "{}", lint[0]);
    // … and the driver warned once, not once per retry.
    let warnings = text
        .lines()
        .filter(|l| l.contains("broken") && l.contains("WARN") && !l.contains("unmapped-image"))
        .count();
    assert_eq!(warnings, 1, "one warning, not one per retry:\n{text}");
    let human = Command::new(SERIN)
        .args(["get", "broken", "--state-dir"])
        .arg(d.join("state"))
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("Error:") && human.contains("images"),
        "{human}"
    );

    // Fixed in the manifest: tried again at once (no backoff left to wait
    // out), and the error goes away.
    std::fs::write(
        d.join("manifests/broken.yaml"),
        deployment("broken", "argoproj/rollouts-demo:green"),
    )
    .unwrap();
    let v = poll("the fixed rollout Healthy", Duration::from_secs(60), || {
        get(d, "broken").filter(healthy)
    });
    assert!(v["driverError"].is_null(), "{v}");
}

/// One HTTP/1.1 request with a body and a bearer token to `addr`; (status, body).
fn request(
    addr: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn a_hijacked_proxy_table_is_put_back_by_the_control_plane() {
    let dir = std::env::temp_dir().join(format!("serin-drift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    let dir = Dir(dir);
    let d = &dir.0;
    std::fs::write(
        d.join("serin.yaml"),
        format!(
            "stateDir: {}\nimages:\n  argoproj/rollouts-demo:\n    command: [\"{SERIN}\", \"demo-app\"]\n    args: [\"--demo-version\", \"{{tag}}\"]\n",
            d.join("state").display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("manifests/web.yaml"),
        deployment("web", "argoproj/rollouts-demo:blue"),
    )
    .unwrap();
    let _up = Up(Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(d.join("serin.yaml"))
        .arg(d.join("manifests"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("up.log")).unwrap())
        .spawn()
        .expect("serin up starts"));
    poll("web Healthy", Duration::from_secs(60), || {
        get(d, "web").filter(healthy)
    });
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    let admin: std::net::SocketAddr = ep["proxyAdmin"].as_str().unwrap().parse().unwrap();
    // The proxy's admin API takes the control plane's token; whoever holds
    // it (or a bug in another tool using it) can still change the table.
    let token = std::fs::read_to_string(d.join("state/proxy-admin.token")).unwrap();
    let token = token.trim();
    let (code, body) = request(admin, token, "GET", "/v1/config", "");
    assert_eq!(code, 200, "{body}");
    let real: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The table is changed behind the control plane's back: the Service's
    // traffic goes to someone else's port.
    let thief = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stolen = thief.local_addr().unwrap().to_string();
    let mut hijacked = real.clone();
    for s in hijacked["services"].as_array_mut().unwrap() {
        for r in s["revisions"].as_array_mut().unwrap() {
            r["endpoints"] = serde_json::json!([stolen]);
        }
    }
    let (code, body) = request(admin, token, "PUT", "/v1/config", &hijacked.to_string());
    assert_eq!(code, 200, "the proxy took the hijack: {body}");
    let endpoints = |c: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = c["services"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["revisions"].as_array().cloned().unwrap_or_default())
            .flat_map(|r| r["endpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let want = endpoints(&real);
    assert!(!want.is_empty() && !want.contains(&stolen));
    // The control plane notices on its next pass (at the latest its resync)
    // and puts its own table back.
    poll(
        "the real endpoints back in the proxy",
        Duration::from_secs(30),
        || {
            let (_, body) = request(admin, token, "GET", "/v1/config", "");
            let now: serde_json::Value = serde_json::from_str(&body).ok()?;
            (endpoints(&now) == want).then_some(())
        },
    );
    let log = std::fs::read_to_string(d.join("up.log")).unwrap();
    assert!(log.contains("putting them back"), "{log}");
}
