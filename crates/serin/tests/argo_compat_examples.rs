//! Argo's own router examples (shared/compat: APISIX, App Mesh, Istio
//! mirroring) run unchanged under `serin up`, with real processes and real
//! HTTP: the router object is a proxy listener with the step's weight, the
//! APISIX step that combines setCanaryScale and setHeaderRoute applies both,
//! and setMirrorRoute copies requests to the canary without them counting.
//! The only edit is the image tag, which starts the update.

mod support;
use support::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const COMPAT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples"
);

/// (example file, its name in the watched folder)
const FILES: &[(&str, &str)] = &[
    ("apisix/rollout.yaml", "apisix-rollout.yaml"),
    ("apisix/services.yaml", "apisix-services.yaml"),
    ("apisix/route.yaml", "apisix-route.yaml"),
    ("appmesh/canary-rollout.yaml", "appmesh-rollout.yaml"),
    ("appmesh/canary-service.yaml", "appmesh-service.yaml"),
    ("istio/istio-mirror.yaml", "istio-mirror.yaml"),
];

fn setup() -> Dir {
    demo_dir("argo-compat", "")
}

/// Copies the examples, every `argoproj/rollouts-demo` image at `tag`.
fn write_examples(d: &Path, tag: Option<&str>) {
    for (src, dst) in FILES {
        let mut text =
            std::fs::read_to_string(Path::new(COMPAT).join(src)).expect("compat example");
        if let Some(tag) = tag {
            for from in ["rollouts-demo:blue", "rollouts-demo:green"] {
                text = text.replace(from, &format!("rollouts-demo:{tag}"));
            }
        }
        std::fs::write(d.join("manifests").join(dst), text).expect("manifest");
    }
}

fn get(d: &Path, name: &str) -> Option<serde_json::Value> {
    rollout_json(d, name)
}

fn healthy(v: &serde_json::Value) -> bool {
    v["status"]["phase"] == "Healthy" && v["desiredHash"] == v["status"]["stable_hash"]
}

fn paused_at(d: &Path, name: &str, step: u64) {
    poll(
        &format!("{name} paused at step {step}"),
        Duration::from_secs(120),
        || {
            get(d, name).filter(|v| {
                v["awaitingPromotion"] == "pause step" && v["status"]["current_step_index"] == step
            })
        },
    );
}

fn endpoints(d: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(d.join("state/endpoints.json")).expect("endpoints.json"),
    )
    .expect("endpoints json")
}

/// One authorized GET; the body as JSON.
fn admin_get(addr: SocketAddr, token_file: &Path, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).ok()?;
    let token = std::fs::read_to_string(token_file).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    serde_json::from_str(buf.split("\r\n\r\n").nth(1)?).ok()
}

/// The listener's config as the control plane pushed it to the proxy.
fn listener(d: &Path, name: &str) -> serde_json::Value {
    let api: SocketAddr = endpoints(d)["api"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("api address");
    poll(
        &format!("the {name} listener"),
        Duration::from_secs(20),
        || {
            let v = admin_get(api, &d.join("state/admin.token"), "/v1/services")?;
            let svc = v["services"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == name)?
                .clone();
            let addr: SocketAddr = svc["listen"].as_str()?.parse().ok()?;
            (addr.port() != 0).then_some(svc)
        },
    )
}

fn addr_of(svc: &serde_json::Value) -> SocketAddr {
    svc["listen"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("listen address")
}

/// The demo app's version from one real request.
fn version(addr: SocketAddr, method: &str, path: &str, header: &str) -> Option<String> {
    send(addr, method, path, header, "")
}

/// The demo app's version from one real request with `body`.
fn send(addr: SocketAddr, method: &str, path: &str, header: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: web\r\n{header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let body = buf.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v["version"].as_str().map(str::to_string)
}

/// Waits until `n` requests in a row through `addr` answer `want`: replicas
/// without a readiness probe may count as ready a moment before they listen.
fn warm(addr: SocketAddr, header: &str, want: &str, n: usize) {
    poll(
        &format!("{n} answers {want} from {addr}"),
        Duration::from_secs(20),
        || {
            (0..n)
                .all(|_| version(addr, "GET", "/", header).as_deref() == Some(want))
                .then_some(())
        },
    );
}

fn tally(addr: SocketAddr, header: &str, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let v = version(addr, "GET", "/", header).unwrap_or_else(|| "failed".into());
        *out.entry(v).or_default() += 1;
    }
    out
}

fn serin(d: &Path, args: &[&str]) -> std::process::Output {
    serin_at(d, args)
}

#[test]
fn argo_router_examples_run_unchanged_under_serin_up() {
    let dir = setup();
    let d = &dir.0;
    write_examples(d, None);
    let _up = serin_up(d, "up.log");
    for name in ["rollout-apisix-canary", "my-rollout", "istio-host-split"] {
        poll(&format!("{name} Healthy"), Duration::from_secs(120), || {
            get(d, name).filter(healthy)
        });
    }

    write_examples(d, Some("yellow"));
    paused_at(d, "rollout-apisix-canary", 1);
    paused_at(d, "my-rollout", 1);
    paused_at(d, "istio-host-split", 2);

    // APISIX, step 1 (setCanaryScale 1 + setHeaderRoute): no weight yet,
    // `trace: debug` goes to the one canary pod.
    let apisix = listener(d, "rollouts-apisix-route");
    let a = addr_of(&apisix);
    warm(a, "trace: debug\r\n", "yellow", 1);
    assert_eq!(
        tally(a, "", 20),
        BTreeMap::from([("blue".to_string(), 20)]),
        "weight 0 before the first setWeight"
    );
    assert_eq!(
        tally(a, "trace: debug\r\n", 10),
        BTreeMap::from([("yellow".to_string(), 10)]),
        "the header route of the combined step: {apisix}"
    );
    let v = get(d, "rollout-apisix-canary").expect("status");
    assert_eq!(
        v["status"]["canary_scale"],
        serde_json::json!({"Replicas": 1})
    );

    // Promote to setWeight 20: a split, and the header route still holds.
    let out = serin(d, &["promote", "rollout-apisix-canary"]);
    assert!(out.status.success(), "{out:?}");
    paused_at(d, "rollout-apisix-canary", 3);
    let plain = tally(a, "", 50);
    let canary = plain.get("yellow").copied().unwrap_or(0);
    assert!(
        (5..=20).contains(&canary) && plain.get("blue").copied().unwrap_or(0) >= 30,
        "20 % through the APISIX route listener: {plain:?}"
    );
    assert_eq!(
        tally(a, "trace: debug\r\n", 10),
        BTreeMap::from([("yellow".to_string(), 10)])
    );

    // App Mesh at setWeight 25: the VirtualService's listener splits.
    let mesh = addr_of(&listener(d, "my-svc"));
    warm(addr_of(&listener(d, "my-svc-canary")), "", "yellow", 2);
    let plain = tally(mesh, "", 40);
    let canary = plain.get("yellow").copied().unwrap_or(0);
    assert!(
        (4..=18).contains(&canary) && plain.get("blue").copied().unwrap_or(0) >= 22,
        "25 % through the App Mesh virtual service listener: {plain:?}"
    );

    // Istio mirroring: 50 % of `POST /color` copied to the canary, whose
    // answers are discarded; clients see only the stable (weight 0).
    let vs = listener(d, "istio-host-split-vsvc");
    assert_eq!(vs["mirrorRoutes"].as_array().map(Vec::len), Some(1), "{vs}");
    let m = addr_of(&vs);
    // Both canary pods (setCanaryScale weight 50 of 4) answer before any copy.
    warm(
        addr_of(&listener(d, "istio-host-split-canary")),
        "",
        "yellow",
        4,
    );
    for _ in 0..20 {
        assert_eq!(
            send(m, "POST", "/color", "", r#"{"color":"green"}"#).as_deref(),
            Some("green"),
            "clients get the stable's answers"
        );
    }
    for _ in 0..10 {
        assert_eq!(version(m, "GET", "/color", "").as_deref(), Some("green"));
    }
    let canary_hash = get(d, "istio-host-split").expect("status")["desiredHash"]
        .as_str()
        .expect("desired hash")
        .to_string();
    let ep = endpoints(d);
    let admin: SocketAddr = ep["proxy_admin"]
        .as_str()
        .or_else(|| ep["proxyAdmin"].as_str())
        .and_then(|a| a.parse().ok())
        .expect("proxy admin address");
    let stats = poll(
        "10 mirrored copies answered",
        Duration::from_secs(20),
        || {
            let s = admin_get(admin, &d.join("state/proxy-admin.token"), "/v1/stats")?;
            let rev = s["revisions"]
                .as_array()?
                .iter()
                .find(|r| r["service"] == "istio-host-split-vsvc" && r["revision"] == canary_hash)?
                .clone();
            (rev["mirrored"]["answered"] == 10).then_some(rev)
        },
    );
    assert_eq!(stats["requests"], 0, "copies are not requests: {stats}");

    // Abort: the mirror route goes at once.
    let out = serin(d, &["abort", "istio-host-split"]);
    assert!(out.status.success(), "{out:?}");
    poll("mirror route removed", Duration::from_secs(20), || {
        let vs = listener(d, "istio-host-split-vsvc");
        vs["mirrorRoutes"]
            .as_array()
            .is_none_or(Vec::is_empty)
            .then_some(())
    });
}
