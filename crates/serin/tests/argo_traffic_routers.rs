//! Manifests written for other Argo traffic routers run unchanged under
//! `serin up`: the router's object (an nginx Ingress, a Gateway API
//! HTTPRoute, an ALB Ingress, an SMI root Service, an Ambassador Mapping, a
//! Traefik weighted service) is a proxy listener that applies the step's
//! weight and the header routes, with real processes and real HTTP.

mod support;
use support::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const POD: &str = r#"  selector:
    matchLabels:
      app: APP
  template:
    metadata:
      labels:
        app: APP
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: argoproj/rollouts-demo:TAG
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            failureThreshold: 1
"#;

fn services(app: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {app}-stable\nspec:\n  selector:\n    app: {app}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {app}-canary\nspec:\n  selector:\n    app: {app}\n"
    )
}

/// nginx: the stable Ingress is the listener; the canary-by-header
/// annotation sends `X-Canary: iwantsit` to the canary.
fn nginx(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: shop
spec:
  replicas: 2
{}  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop-stable
      trafficRouting:
        nginx:
          stableIngress: shop-ingress
          additionalIngressAnnotations:
            canary-by-header: X-Canary
            canary-by-header-value: iwantsit
      steps:
        - setWeight: 50
        - pause: {{}}
{}"#,
        POD.replace("APP", "shop").replace("TAG", tag),
        services("shop")
    )
}

/// Gateway API plugin: the HTTPRoute is the listener; a setHeaderRoute step
/// sends `x-tester: yes` to the canary.
fn gateway(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: cart
spec:
  replicas: 2
{}  strategy:
    canary:
      canaryService: cart-canary
      stableService: cart-stable
      trafficRouting:
        managedRoutes:
          - name: testers
        plugins:
          argoproj-labs/gatewayAPI:
            httpRoute: cart-route
            namespace: default
      steps:
        - setHeaderRoute:
            name: testers
            match:
              - headerName: x-tester
                headerValue:
                  exact: "yes"
        - setWeight: 10
        - pause: {{}}
{}"#,
        POD.replace("APP", "cart").replace("TAG", tag),
        services("cart")
    )
}

fn setup(which: &str) -> Dir {
    demo_dir(&format!("argo-routers-{which}"), "")
}

fn write_manifests(d: &Path, tag: &str) {
    std::fs::write(d.join("manifests/shop.yaml"), nginx(tag)).expect("manifest");
    std::fs::write(d.join("manifests/cart.yaml"), gateway(tag)).expect("manifest");
}

fn get(d: &Path, name: &str) -> Option<serde_json::Value> {
    rollout_json(d, name)
}

fn healthy(v: &serde_json::Value) -> bool {
    v["status"]["phase"] == "Healthy" && v["desiredHash"] == v["status"]["stable_hash"]
}

/// The demo app's version from one real request with `header`.
fn version(addr: SocketAddr, header: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /version HTTP/1.1\r\nHost: web\r\n{header}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let body = buf.split("\r\n\r\n").nth(1)?;
    let v: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    v["version"].as_str().map(str::to_string)
}

fn tally(addr: SocketAddr, header: &str, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        if let Some(v) = version(addr, header) {
            *out.entry(v).or_default() += 1;
        }
    }
    out
}

#[test]
fn nginx_and_gateway_api_rollouts_split_and_route_headers_under_serin_up() {
    let dir = setup("nginx-gateway");
    let d = &dir.0;
    write_manifests(d, "blue");
    let _up = serin_up(d, "up.log");
    for name in ["shop", "cart"] {
        poll(&format!("{name} Healthy"), Duration::from_secs(60), || {
            get(d, name).filter(healthy)
        });
    }
    let shop = service_listener(d, "shop-ingress");
    let cart = service_listener(d, "cart-route");
    let lg_shop = load(shop);
    let lg_cart = load(cart);

    write_manifests(d, "yellow");
    for (name, step) in [("shop", 1), ("cart", 2)] {
        poll(
            &format!("{name} paused at its weight"),
            Duration::from_secs(90),
            || {
                get(d, name).filter(|v| {
                    v["awaitingPromotion"] == "pause step"
                        && v["status"]["current_step_index"] == step
                })
            },
        );
    }

    // nginx at 50 %: both versions; the annotation's header always canary.
    let plain = tally(shop, "", 60);
    assert!(
        plain.get("yellow").copied().unwrap_or(0) >= 15
            && plain.get("blue").copied().unwrap_or(0) >= 15,
        "50 % split through the nginx ingress listener: {plain:?}"
    );
    let hdr = tally(shop, "X-Canary: iwantsit\r\n", 20);
    assert_eq!(hdr, BTreeMap::from([("yellow".to_string(), 20)]));
    let other = tally(shop, "X-Canary: no\r\n", 40);
    assert!(other.get("blue").copied().unwrap_or(0) > 0, "{other:?}");

    // Gateway API at 10 %: mostly stable; the step's header route canary.
    let plain = tally(cart, "", 60);
    let canary = plain.get("yellow").copied().unwrap_or(0);
    assert!(
        canary < 30,
        "10 % through the HTTPRoute listener: {plain:?}"
    );
    assert!(plain.get("blue").copied().unwrap_or(0) > 30, "{plain:?}");
    let hdr = tally(cart, "x-tester: yes\r\n", 20);
    assert_eq!(hdr, BTreeMap::from([("yellow".to_string(), 20)]));

    let (ok_a, failed_a) = lg_shop.finish();
    let (ok_b, failed_b) = lg_cart.finish();
    eprintln!(
        "shop-ingress {ok_a} ok / {failed_a} failed; cart-route {ok_b} ok / {failed_b} failed"
    );
    assert!(ok_a > 20 && ok_b > 20, "too little traffic: {ok_a}, {ok_b}");
    assert_eq!(failed_a + failed_b, 0);
}

/// A minimal Rollout for `router` (the YAML under `trafficRouting:`):
/// setWeight 50, then a manual pause.
fn routed(app: &str, router: &str, tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {app}
spec:
  replicas: 2
{}  strategy:
    canary:
      canaryService: {app}-canary
      stableService: {app}-stable
      trafficRouting:
{router}      steps:
        - setWeight: 50
        - pause: {{}}
{}"#,
        POD.replace("APP", app).replace("TAG", tag),
        services(app)
    )
}

/// (rollout, its router's YAML, the listener its router object becomes)
const ROUTERS: &[(&str, &str, &str)] = &[
    (
        "pay",
        "        alb:\n          ingress: pay-ingress\n          servicePort: 80\n",
        "pay-ingress",
    ),
    (
        "mail",
        "        smi:\n          rootService: mail-root\n          trafficSplitName: mail-split\n",
        "mail-root",
    ),
    (
        "news",
        "        ambassador:\n          mappings:\n            - news-mapping\n",
        "news-mapping",
    ),
    (
        "feed",
        "        traefik:\n          weightedTraefikServiceName: feed-weighted\n",
        "feed-weighted",
    ),
];

fn write_routed(d: &Path, tag: &str) {
    for (app, router, _) in ROUTERS {
        let mut yaml = routed(app, router, tag);
        if *app == "mail" {
            // SMI's root Service: its listener is the split one.
            yaml.push_str(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: mail-root\nspec:\n  selector:\n    app: mail\n",
            );
        }
        std::fs::write(d.join(format!("manifests/{app}.yaml")), yaml).expect("manifest");
    }
}

#[test]
fn alb_smi_ambassador_and_traefik_rollouts_split_under_serin_up() {
    let dir = setup("alb-smi-ambassador-traefik");
    let d = &dir.0;
    write_routed(d, "blue");
    let _up = serin_up(d, "up.log");
    for (app, _, _) in ROUTERS {
        poll(&format!("{app} Healthy"), Duration::from_secs(90), || {
            get(d, app).filter(healthy)
        });
    }
    let listeners: Vec<(&str, SocketAddr)> = ROUTERS
        .iter()
        .map(|(app, _, l)| (*app, service_listener(d, l)))
        .collect();
    for (app, addr) in &listeners {
        assert_eq!(
            tally(*addr, "", 10),
            BTreeMap::from([("blue".to_string(), 10)]),
            "{app} before the update"
        );
    }

    write_routed(d, "yellow");
    for (app, _, _) in ROUTERS {
        poll(
            &format!("{app} paused at 50 %"),
            Duration::from_secs(90),
            || {
                get(d, app).filter(|v| {
                    v["awaitingPromotion"] == "pause step" && v["status"]["current_step_index"] == 1
                })
            },
        );
    }
    for (app, addr) in &listeners {
        let plain = tally(*addr, "", 60);
        assert!(
            plain.get("yellow").copied().unwrap_or(0) >= 15
                && plain.get("blue").copied().unwrap_or(0) >= 15,
            "50 % split through {app}'s router listener: {plain:?}"
        );
    }
    // Promoted: every router's listener serves only the new version.
    for (app, _, _) in ROUTERS {
        let out = serin_at(d, &["promote", app]);
        assert!(out.status.success(), "{out:?}");
    }
    for (app, addr) in &listeners {
        poll(
            &format!("{app} Healthy on yellow"),
            Duration::from_secs(90),
            || get(d, app).filter(healthy),
        );
        poll(
            &format!("{app}'s listener all yellow"),
            Duration::from_secs(30),
            || (tally(*addr, "", 10) == BTreeMap::from([("yellow".to_string(), 10)])).then_some(()),
        );
    }
}
