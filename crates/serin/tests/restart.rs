//! `serin restart` end to end: real `serin up`, real demo-app replicas, real
//! HTTP through Serin's proxy under continuous load. Every pod is replaced
//! (new names), `restartedAt` is recorded, and not one request fails — with
//! one replica too, where Argo's evict-first restart has downtime. Always
//! cleaned up with `serin down`; waits poll with a deadline.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

fn manifest(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
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
      # A new pod is ready two seconds after it starts at the earliest, so a
      # restart is visibly in progress while its replacement warms up.
      containers:
        - name: app
          image: argoproj/rollouts-demo:blue
          ports:
            - containerPort: 8080
          env:
            - name: DEMO_DRAIN_MS
              value: "300"
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            initialDelaySeconds: 2
            periodSeconds: 1
            failureThreshold: 1
"#
    )
}

fn serin(d: &Path, args: &[&str]) -> std::process::Output {
    serin_at(d, args)
}

fn get(d: &Path) -> Option<serde_json::Value> {
    rollout_json(d, "web")
}

/// Live pods: (name, ready).
fn pods(v: &serde_json::Value) -> Vec<(String, bool)> {
    let mut p: Vec<(String, bool)> = v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["pods"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["status"] != "Terminating")
        .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["ready"] == true)))
        .collect();
    p.sort();
    p
}

fn healthy_with(v: &serde_json::Value, n: usize) -> bool {
    let p = pods(v);
    v["status"]["phase"] == "Healthy" && p.len() == n && p.iter().all(|(_, r)| *r)
}

/// One real HTTP/1.1 request through the proxy.
/// The proxy's listen address for the `web` service, from the API.
fn listener(d: &Path) -> SocketAddr {
    poll("the web listener", Duration::from_secs(20), || {
        let ep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).ok()?)
                .ok()?;
        let api: SocketAddr = ep["api"]
            .as_str()?
            .trim_start_matches("http://")
            .parse()
            .ok()?;
        let token = std::fs::read_to_string(d.join("state/admin.token")).ok()?;
        let mut s = TcpStream::connect(api).ok()?;
        write!(
            s,
            "GET /v1/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let v: serde_json::Value = serde_json::from_str(buf.split("\r\n\r\n").nth(1)?).ok()?;
        let svc = v["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "web")?
            .clone();
        let addr: SocketAddr = svc["listen"].as_str()?.parse().ok()?;
        (addr.port() != 0).then_some(addr)
    })
}

/// Pids recorded in the platform's state file.
fn recorded_pids(d: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(d.join("state/platform/state.json")).unwrap_or_default();
    text.split("\"pid\":")
        .skip(1)
        .filter_map(|s| {
            s.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// Runs `serin restart ARGS`, then waits until `restartedAt` is the
/// `restartAt` it set, checking on the way that live pods never exceed
/// `n + 1` and never drop below `n` ready. Returns the new pods and whether
/// the restart was seen in progress (JSON, and `serin get`'s text).
fn restart_and_wait(d: &Path, n: usize, extra: &[&str]) -> (Vec<String>, bool, bool) {
    let before: Vec<String> = pods(&get(d).expect("get"))
        .into_iter()
        .map(|p| p.0)
        .collect();
    let mut args = vec!["restart", "web"];
    args.extend_from_slice(extra);
    let out = serin(d, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("restart: web at "),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = get(d)
        .and_then(|v| v["restartAt"].as_u64())
        .expect("restartAt set");
    let mut seen_in_progress = false;
    let mut seen_text = false;
    let v = poll("the restart to finish", Duration::from_secs(120), || {
        let v = get(d)?;
        let p = pods(&v);
        assert!(p.len() <= n + 1, "more than one surge pod: {p:?}");
        let ready = p.iter().filter(|x| x.1).count();
        assert!(ready >= n, "readiness dropped to {ready} of {n}: {p:?}");
        if v["status"]["restarting"].as_u64() == Some(at) {
            seen_in_progress = true;
            // The text view says so too (unless it finished in between).
            let text = String::from_utf8_lossy(&serin(d, &["get", "web"]).stdout).to_string();
            seen_text |= text.contains("Restart:   in progress");
        }
        (v["status"]["restarted_at"].as_u64() == Some(at) && healthy_with(&v, n)).then_some(v)
    });
    let after: Vec<String> = pods(&v).into_iter().map(|p| p.0).collect();
    assert_eq!(after.len(), n);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "every pod replaced: {before:?} -> {after:?}"
    );
    (after, seen_in_progress, seen_text)
}

#[test]
fn restart_replaces_every_pod_with_no_failed_request_even_with_one_replica() {
    let dir = demo_dir("restart", "");
    let d = &dir.0;
    std::fs::write(d.join("manifests/web.yaml"), manifest(1)).expect("manifest");
    let up = serin_up(d, "up.log");
    poll("web Healthy", Duration::from_secs(60), || {
        get(d).filter(|v| healthy_with(v, 1))
    });
    let addr = listener(d);
    let lg = load(addr);
    poll("traffic flowing", Duration::from_secs(20), || {
        (lg.counts().0 > 20).then_some(())
    });

    // 1. One replica: Argo would evict the only pod; Serin surges.
    let (ok0, failed0) = lg.counts();
    assert_eq!(failed0, 0, "requests failed before any restart");
    let (_, seen1, _) = restart_and_wait(d, 1, &[]);
    let (ok1, failed1) = lg.counts();
    eprintln!(
        "1 replica: {} requests served during the restart, {failed1} failed",
        ok1 - ok0
    );
    assert_eq!(failed1, 0, "requests failed during a 1-replica restart");
    assert!(seen1, "the restart was never seen in progress");

    // 2. Three replicas, scheduled two seconds ahead.
    std::fs::write(d.join("manifests/web.yaml"), manifest(3)).expect("manifest");
    poll("3 replicas", Duration::from_secs(60), || {
        get(d).filter(|v| healthy_with(v, 3))
    });
    let scheduled_before: Vec<String> = pods(&get(d).expect("get"))
        .into_iter()
        .map(|p| p.0)
        .collect();
    let out = serin(d, &["restart", "web", "--in", "3s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&serin(d, &["get", "web"]).stdout).to_string();
    assert!(text.contains("Restart:   scheduled at"), "{text}");
    let v = get(d).expect("get");
    assert_eq!(
        pods(&v).into_iter().map(|p| p.0).collect::<Vec<_>>(),
        scheduled_before,
        "nothing replaced before the scheduled time"
    );
    let at = v["restartAt"].as_u64().expect("restartAt");
    let (ok2, _) = lg.counts();
    let v = poll(
        "the scheduled restart to finish",
        Duration::from_secs(120),
        || {
            get(d)
                .filter(|v| v["status"]["restarted_at"].as_u64() == Some(at) && healthy_with(v, 3))
        },
    );
    let after: Vec<String> = pods(&v).into_iter().map(|p| p.0).collect();
    assert!(
        after.iter().all(|p| !scheduled_before.contains(p)),
        "{after:?}"
    );
    let (ok3, failed3) = lg.counts();
    eprintln!(
        "3 replicas (scheduled): {} requests served during the restart, {failed3} failed in total",
        ok3 - ok2
    );

    // 3. Three replicas, now, watched: readiness never below 3.
    let (_, seen3, text3) = restart_and_wait(d, 3, &[]);
    assert!(
        seen3 && text3,
        "three one-by-one replacements take seconds: seen in progress"
    );

    // Bad input: a clear error, nothing changed.
    let out = serin(d, &["restart", "web", "--in", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in:"));
    let out = serin(d, &["restart", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rollout named nope"));

    let (ok, failed) = lg.finish();
    eprintln!("all three restarts: {ok} requests served, {failed} failed");
    assert!(ok > 100, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    let v = get(d).expect("get");
    let events = v["events"].to_string();
    assert!(events.contains("Restarted"), "{events}");
    let text = String::from_utf8_lossy(&serin(d, &["get", "web"]).stdout).to_string();
    assert!(text.contains("Restarted: "), "{text}");

    // serin down leaves no replica running.
    let pids = recorded_pids(d);
    assert!(!pids.is_empty());
    drop(up);
    let out = serin(d, &["down"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll("replicas gone", Duration::from_secs(30), || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
}
