//! A control-plane crash in the middle of a canary, under load (issue 11's
//! "Done when"): `serin up` is SIGKILLed while a traffic-routed canary
//! holds 50 % at a pause. The proxy and the replicas outlive it and keep
//! serving both revisions at the weights in force; the restarted control
//! plane re-adopts the pods and resumes at the same step with the same
//! route — no step skipped, no pod restarted, no request lost — and the
//! canary then completes. Real processes, real HTTP over loopback; waits
//! poll with a deadline.

mod support;
use support::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

fn manifest(tag: &str) -> String {
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
        - setWeight: 80
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

fn setup(name: &str) -> Dir {
    demo_dir(name, "")
}

fn up(dir: &Path, n: u32) -> Up {
    serin_up(dir, &format!("up-{n}.log"))
}

fn serin(d: &Path, args: &[&str]) -> std::process::Output {
    serin_at(d, args)
}

fn get(d: &Path) -> Option<serde_json::Value> {
    rollout_json(d, "shop")
}

fn healthy_stable(v: &serde_json::Value) -> Option<String> {
    let s = &v["status"];
    (s["phase"] == "Healthy")
        .then(|| s["stable_hash"].as_str().map(str::to_string))
        .flatten()
}

/// Every pod's name, sorted (a restarted pod gets a new one).
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

/// The VirtualService's listener, from the API's `/v1/services`.
fn listener(d: &Path) -> SocketAddr {
    poll("the shop-vs listener", Duration::from_secs(30), || {
        let ep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).ok()?)
                .ok()?;
        let api: SocketAddr = ep["api"].as_str()?.parse().ok()?;
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
        let addr: SocketAddr = v["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "shop-vs")?["listen"]
            .as_str()?
            .parse()
            .ok()?;
        (addr.port() != 0).then_some(addr)
    })
}

/// The demo app's `/version` through the listener.
fn version(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /version HTTP/1.1\r\nHost: shop.local\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let v: serde_json::Value = serde_json::from_str(buf.split("\r\n\r\n").nth(1)?.trim()).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Versions served in `n` requests.
fn versions(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen
            .entry(version(addr).unwrap_or_else(|| "(failed)".into()))
            .or_insert(0) += 1;
    }
    seen
}

/// Paused at step `step` (0-based) of the canary, with two weights in force.
fn paused_at(d: &Path, step: u64) -> serde_json::Value {
    poll(
        &format!("the canary paused at step {}", step + 1),
        Duration::from_secs(90),
        || {
            get(d).filter(|v| {
                v["status"]["phase"] == "Paused"
                    && v["status"]["current_step_index"] == step
                    && v["route"]["weights"]
                        .as_array()
                        .is_some_and(|w| w.len() == 2)
            })
        },
    )
}

#[test]
fn sigkill_mid_canary_under_load_loses_no_request_and_resumes_at_the_same_step() {
    let dir = setup("crash-canary");
    let d = &dir.0;
    std::fs::write(d.join("manifests/shop.yaml"), manifest("blue")).expect("manifest");
    let first = up(d, 1);
    let v1 = poll("shop Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let addr = listener(d);
    let lg = load(addr);

    std::fs::write(d.join("manifests/shop.yaml"), manifest("yellow")).expect("manifest");
    let before = paused_at(d, 1);
    let mixed = versions(addr, 60);
    assert!(
        mixed.get("blue").is_some_and(|n| *n > 0) && mixed.get("yellow").is_some_and(|n| *n > 0),
        "both revisions serve at 50 %: {mixed:?}"
    );

    // The crash: SIGKILL, no shutdown hook runs.
    drop(first);
    // With no control plane the proxy still splits traffic as it was told.
    let headless = versions(addr, 60);
    assert!(
        headless.get("blue").is_some_and(|n| *n > 0)
            && headless.get("yellow").is_some_and(|n| *n > 0)
            && !headless.contains_key("(failed)"),
        "the proxy serves both revisions without its control plane: {headless:?}"
    );

    let second = up(d, 2);
    // `serin get` answers from the new control plane once it is up and has
    // re-adopted as many pods as there were.
    let pods_before = pod_names(&before);
    let after = poll("the control plane back", Duration::from_secs(30), || {
        get(d).filter(|v| pod_names(v).len() == pods_before.len())
    });
    assert_eq!(after["status"]["current_step_index"], 1, "{after}");
    assert_eq!(after["status"]["phase"], "Paused", "{after}");
    assert_eq!(after["route"], before["route"], "same route in force");
    assert_eq!(
        after["status"]["stable_hash"], before["status"]["stable_hash"],
        "{after}"
    );
    assert_eq!(
        pod_names(&after),
        pods_before,
        "pods re-adopted, not restarted"
    );
    // Give the restarted loop a few passes: it must hold the pause, not
    // advance past it or start over.
    for _ in 0..10 {
        let v = get(d).expect("get");
        assert_eq!(v["status"]["current_step_index"], 1, "{v}");
        assert_eq!(v["route"], before["route"], "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The canary goes on from there: the next step, then 100 %.
    let out = serin(d, &["promote", "shop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    paused_at(d, 3);
    let out = serin(d, &["promote", "shop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2 = poll("shop Healthy on yellow", Duration::from_secs(90), || {
        get(d)
            .as_ref()
            .and_then(healthy_stable)
            .filter(|h| *h != v1)
    });

    let (ok, failed) = lg.finish();
    eprintln!(
        "SIGKILL mid-canary: {ok} requests served, {failed} failed; {v1} -> {v2}; \
         at 50 % before {mixed:?}, headless {headless:?}"
    );
    assert!(ok > 100, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    drop(second);
}

/// `serin undo` after a finished canary (an override the driver resolves,
/// issue 11): the previous revision runs again and serves, without the
/// manifest changing; `serin pause` holds the next deploy until resumed.
#[test]
fn undo_brings_the_previous_revision_back_and_pause_holds_a_deploy() {
    let dir = setup("undo-pause");
    let d = &dir.0;
    std::fs::write(d.join("manifests/shop.yaml"), manifest("blue")).expect("manifest");
    let _up = up(d, 1);
    let v1 = poll("shop Healthy", Duration::from_secs(60), || {
        get(d).as_ref().and_then(healthy_stable)
    });
    let addr = listener(d);
    std::fs::write(d.join("manifests/shop.yaml"), manifest("yellow")).expect("manifest");
    paused_at(d, 1);
    let out = serin(d, &["promote", "shop", "--full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2 = poll("shop Healthy on yellow", Duration::from_secs(90), || {
        get(d)
            .as_ref()
            .and_then(healthy_stable)
            .filter(|h| *h != v1)
    });
    // Clients keep calling through the undo and its promotion: the old
    // revision's pods come back and the newer one's go away without a
    // failed request.
    let lg = load(addr);
    let out = serin(d, &["undo", "shop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Outside a rollback window an undo is a deploy like any other (as in
    // Argo): the previous revision goes through the steps.
    let v = paused_at(d, 1);
    assert_eq!(v["status"]["current_hash"], v1.as_str(), "{v}");
    assert_eq!(v["status"]["stable_hash"], v2.as_str(), "{v}");
    let out = serin(d, &["promote", "shop", "--full"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll(
        "shop Healthy on blue again",
        Duration::from_secs(90),
        || {
            get(d)
                .as_ref()
                .and_then(healthy_stable)
                .filter(|h| *h == v1)
        },
    );
    let (ok, failed) = lg.finish();
    eprintln!("undo under load: {ok} requests served, {failed} failed");
    assert!(ok > 100, "too little traffic: {ok}");
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    let served = versions(addr, 20);
    assert_eq!(served.get("blue"), Some(&20), "{served:?}");
    // The undone revision is what the rollout wants now: `serin status`
    // reports the Healthy undo as done (it used to compare with the
    // manifest's revision and call it Progressing until its timeout).
    let v = get(d).expect("shop");
    assert_eq!(v["desiredHash"], v1.as_str(), "{v}");
    let out = serin(d, &["status", "shop", "--watch", "--timeout", "20s"]);
    assert!(
        out.status.success(),
        "status after undo: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A pause is kept beside the manifest: the next edit stops at its
    // first step until resumed.
    let out = serin(d, &["pause", "shop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(d.join("manifests/shop.yaml"), manifest("green")).expect("manifest");
    let v = poll("the green deploy held", Duration::from_secs(60), || {
        get(d).filter(|v| v["status"]["phase"] == "Paused" && v["desiredHash"] != v2.as_str())
    });
    assert_eq!(v["status"]["stable_hash"], v1.as_str(), "{v}");
    let out = serin(d, &["resume", "shop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    paused_at(d, 1);
}
