//! A canary without traffic routing over a real `serin up`: the weight is
//! approximated with pods as Argo does (`approximateWeightedCanaryStableReplicaCounts`),
//! so under load the stable revision never runs out of ready pods before
//! the canary reaches 100 %, and no request fails.

mod support;
use support::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn manifest(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 2
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
  strategy:
    canary:
      steps:
        - setWeight: 10
        - pause: {{}}
        - setWeight: 50
        - pause: {{}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
"#
    )
}

fn setup() -> Dir {
    demo_dir("argo-basic", "")
}

fn up(dir: &Path) -> Up {
    serin_up(dir, "up.log")
}

fn serin(dir: &Path, args: &[&str]) -> std::process::Output {
    serin_at(dir, args)
}

fn get(dir: &Path) -> Option<serde_json::Value> {
    rollout_json(dir, "web")
}

fn healthy_stable(v: &serde_json::Value) -> Option<String> {
    let s = &v["status"];
    (s["phase"] == "Healthy" && v["desiredHash"] == s["stable_hash"])
        .then(|| s["stable_hash"].as_str().map(str::to_string))
        .flatten()
}

/// (desired replicas, ready pods) per revision hash.
fn pods(v: &serde_json::Value) -> BTreeMap<String, (u64, usize)> {
    v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let ready = r["pods"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["ready"] == true).count());
            Some((
                r["hash"].as_str()?.to_string(),
                (r["desired"].as_u64().unwrap_or(0), ready),
            ))
        })
        .collect()
}

/// The `web` listener's address, from the control plane's API.
fn listener(dir: &Path) -> SocketAddr {
    let ep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("state/endpoints.json")).expect("endpoints.json"),
    )
    .expect("endpoints json");
    let api: SocketAddr = ep["api"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("api address");
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

/// The demo app's version from one real request.
fn version(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /version HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let body = buf.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Waits until the rollout pauses at step `step` (0-based) for a promote.
fn paused_at(dir: &Path, step: u64) -> serde_json::Value {
    poll(
        &format!("the pause at step {}", step + 1),
        Duration::from_secs(90),
        || {
            get(dir).filter(|v| {
                v["awaitingPromotion"] == "pause step" && v["status"]["current_step_index"] == step
            })
        },
    )
}

#[test]
fn basic_canary_keeps_stable_pods_until_100_percent_under_load() {
    let dir = setup();
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest("blue")).expect("manifest");
    let _up = up(d);
    let v1 = poll("web Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let addr = listener(d);
    let lg = load(addr);

    // A watcher samples the control plane's view throughout: while v1 is
    // the stable revision and a step remains, it keeps a ready pod.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let samples = Arc::new(Mutex::new(0u64));
    let watcher = {
        let (stop, seen, samples, d, v1) = (
            stop.clone(),
            seen.clone(),
            samples.clone(),
            d.to_path_buf(),
            v1.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Before 100 %: v1 still stable and a step still to go (after
                // the last step the canary takes all the pods, as in Argo).
                if let Some(v) = get(&d)
                    && v["status"]["stable_hash"] == v1.as_str()
                    && v["status"]["current_step_index"]
                        .as_u64()
                        .is_some_and(|i| Some(i) < v["steps"].as_u64())
                {
                    let p = pods(&v);
                    let (desired, ready) = p.get(&v1).copied().unwrap_or((0, 0));
                    if (desired == 0 || ready == 0)
                        && let Ok(mut s) = seen.lock()
                    {
                        s.push(format!(
                            "stable {v1} at {desired} desired / {ready} ready: {p:?} step {}",
                            v["status"]["current_step_index"]
                        ));
                    }
                    if let Ok(mut n) = samples.lock() {
                        *n += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    std::fs::write(d.join("manifests/web.yaml"), manifest("yellow")).expect("manifest");
    // setWeight 10 with 2 replicas and maxSurge 25 % (one pod): Argo runs
    // 1 canary + 2 stable (33 %), never 1 + 1 or 1 + 0.
    let v = paused_at(d, 1);
    let v2 = v["desiredHash"].as_str().expect("desired hash").to_string();
    assert_ne!(v1, v2);
    let p = pods(&v);
    assert_eq!(p.get(&v2).map(|x| x.0), Some(1), "{p:?}");
    assert_eq!(p.get(&v1).map(|x| x.0), Some(2), "{p:?}");
    // Both revisions serve through the plain Service, in the pod ratio.
    let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..90 {
        if let Some(ver) = version(addr) {
            *by_version.entry(ver).or_default() += 1;
        }
    }
    let canary = by_version.get("yellow").copied().unwrap_or(0);
    let stable = by_version.get("blue").copied().unwrap_or(0);
    assert!(canary > 0 && stable > canary, "{by_version:?}");

    let out = serin(d, &["promote", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // setWeight 50: 1 + 1.
    let p = pods(&paused_at(d, 3));
    assert_eq!(p.get(&v2).map(|x| x.0), Some(1), "{p:?}");
    assert_eq!(p.get(&v1).map(|x| x.0), Some(1), "{p:?}");

    let out = serin(d, &["promote", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = poll("v2 stable", Duration::from_secs(90), || {
        get(d)
            .as_ref()
            .and_then(healthy_stable)
            .filter(|h| *h == v2)
    });
    assert_eq!(done, v2);
    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let (ok, failed) = lg.finish();
    let n = samples.lock().map(|n| *n).unwrap_or(0);
    eprintln!("{ok} requests served, {failed} failed; {n} samples of the stable's pods");
    assert!(n > 10, "the watcher saw too little: {n}");
    let violations = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(ok > 100, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
}
