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
    let warnings = text
        .lines()
        .filter(|l| l.contains("broken") && l.contains("WARN"))
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
