//! `serin up` with `apiTls`: the CLI keeps working over https through
//! endpoints.json, a plain-HTTP client gets nothing, a wrong CA is refused,
//! and a bad certificate or key starts nothing. Real processes, real TLS on
//! loopback, a throwaway CA made by the test.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serin_tls::testing::TestPki;

fn rollout(tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: shop
spec:
  replicas: 1
  strategy:
    canary:
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
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: shop
spec:
  selector:
    app: shop
  ports:
    - port: 80
"#
    )
}

/// A folder with manifests/, tls/ (a CA and a certificate for localhost and
/// 127.0.0.1) and a serin.yaml whose apiTls paths are relative to it.
fn setup(name: &str, api_tls: &str) -> (Dir, TestPki) {
    let dir = demo_dir(&format!("tls-{name}"), api_tls);
    let pki = TestPki::new(&dir.0.join("tls"), "api", &["localhost", "127.0.0.1"]);
    (dir, pki)
}

fn up(d: &Path) -> Up {
    serin_up(d, "up.log")
}

/// `serin ARGS… --state-dir D/state`, with extra environment.
fn serin(d: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(SERIN);
    c.args(args).arg("--state-dir").arg(d.join("state"));
    c.env_remove("SERIN_CA").env_remove("SERIN_API");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("serin runs")
}

fn get(d: &Path) -> Option<serde_json::Value> {
    let out = serin(d, &["get", "shop", "-o", "json"], &[]);
    serde_json::from_slice(&out.stdout).ok()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Replica processes still working under this test's folder.
fn leftover_replicas(d: &Path) -> Vec<String> {
    let d = std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf());
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("demo-app") && cwd.starts_with(&d)).then_some(cmd)
        })
        .collect()
}

#[test]
fn the_cli_works_over_https_and_plain_http_or_a_wrong_ca_gets_nothing() {
    let (dir, pki) = setup(
        "up",
        "apiTls:\n  cert: tls/api-cert.pem\n  key: tls/api-key.pem\n  ca: tls/api-ca.pem\n",
    );
    let d = &dir.0;
    let other = TestPki::new(&d.join("tls"), "other", &["localhost", "127.0.0.1"]);
    std::fs::write(d.join("manifests/shop.yaml"), rollout("blue")).unwrap();
    let _up = up(d);

    // Every CLI command below finds the API, its scheme and CA in endpoints.json.
    let blue = poll("shop Healthy over https", Duration::from_secs(60), || {
        let v = get(d)?;
        (v["status"]["phase"] == "Healthy")
            .then(|| v["status"]["stable_hash"].as_str().map(str::to_string))
            .flatten()
    });
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    let api: SocketAddr = ep["api"].as_str().unwrap().parse().unwrap();
    // Relative paths in serin.yaml resolved against its folder.
    assert_eq!(
        ep["apiTls"]["ca"].as_str().map(PathBuf::from),
        Some(pki.ca.clone()),
        "{ep}"
    );
    assert_eq!(ep["apiTls"]["serverName"], "127.0.0.1", "{ep}");

    // A deploy pauses at the canary's manual gate; promote goes on over TLS.
    std::fs::write(d.join("manifests/shop.yaml"), rollout("green")).unwrap();
    poll("the canary paused", Duration::from_secs(60), || {
        let v = get(d)?;
        (v["status"]["phase"] == "Paused").then_some(())
    });
    let out = serin(d, &["promote", "shop"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let green = poll(
        "green stable after promote",
        Duration::from_secs(60),
        || {
            let v = get(d)?;
            let h = v["status"]["stable_hash"].as_str()?.to_string();
            (v["status"]["phase"] == "Healthy" && h != blue).then_some(h)
        },
    );
    assert_ne!(green, blue);
    let out = serin(d, &["status", "shop"], &[]);
    assert!(out.status.success(), "{}", text(&out));

    // Plain HTTP to the TLS port: no HTTP answer, from a raw socket or the CLI.
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /v1/rollouts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plain HTTP was answered: {buf:?}"
    );
    let out = serin(d, &["get", "shop", "--api", &format!("http://{api}")], &[]);
    assert!(!out.status.success(), "{}", text(&out));

    // --api with the wrong CA (or none: system roots only) is refused …
    let url = format!("https://localhost:{}", api.port());
    let out = serin(
        d,
        &["get", "shop", "--api", &url],
        &[("SERIN_CA", &other.ca)],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("UnknownIssuer"), "{}", text(&out));
    let out = serin(d, &["get", "shop", "--api", &url], &[]);
    assert!(text(&out).contains("UnknownIssuer"), "{}", text(&out));
    // … and with the right one (--ca or SERIN_CA) it works.
    let ca = pki.ca.to_string_lossy().to_string();
    let out = serin(
        d,
        &["get", "shop", "-o", "json", "--api", &url, "--ca", &ca],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["stable_hash"].as_str(), Some(green.as_str()));
    let out = serin(d, &["get", "shop", "--api", &url], &[("SERIN_CA", &pki.ca)]);
    assert!(out.status.success(), "{}", text(&out));

    // serin down leaves no replica behind.
    drop(_up);
    let out = down(d).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let left = poll("no replicas left", Duration::from_secs(15), || {
        let l = leftover_replicas(d);
        l.is_empty().then_some(l)
    });
    assert!(left.is_empty());
}

#[test]
fn a_self_signed_certificate_without_a_ca_setting_is_trusted_by_local_commands() {
    // No `ca:`: endpoints.json points the CLI at the certificate itself.
    let (dir, _pki) = setup("selfsigned", "");
    let d = &dir.0;
    let cert = rcgen_self_signed(d);
    std::fs::write(
        d.join("serin.yaml"),
        std::fs::read_to_string(d.join("serin.yaml")).unwrap()
            + "apiTls: {cert: tls/self.pem, key: tls/self-key.pem}\n",
    )
    .unwrap();
    std::fs::write(d.join("manifests/shop.yaml"), rollout("blue")).unwrap();
    let _up = up(d);
    poll("shop Healthy over https", Duration::from_secs(60), || {
        let v = get(d)?;
        (v["status"]["phase"] == "Healthy").then_some(())
    });
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).unwrap())
            .unwrap();
    assert_eq!(ep["apiTls"]["ca"].as_str().map(PathBuf::from), Some(cert));
    // Only localhost is in the certificate: that is the name to verify.
    assert_eq!(ep["apiTls"]["serverName"], "localhost", "{ep}");
}

/// A self-signed certificate for localhost only, and its key.
fn rcgen_self_signed(d: &Path) -> PathBuf {
    let (cert, key) = serin_tls::testing::self_signed(&["localhost"]);
    std::fs::write(d.join("tls/self.pem"), cert).unwrap();
    std::fs::write(d.join("tls/self-key.pem"), key).unwrap();
    d.join("tls/self.pem")
}

#[test]
fn a_bad_key_or_certificate_starts_nothing() {
    let (dir, pki) = setup(
        "bad",
        "apiTls:\n  cert: tls/api-cert.pem\n  key: tls/broken-key.pem\n",
    );
    let d = &dir.0;
    std::fs::write(
        d.join("tls/broken-key.pem"),
        "-----BEGIN PRIVATE KEY-----\n!!! not base64 !!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::write(d.join("manifests/shop.yaml"), rollout("blue")).unwrap();
    let mut up = up(d);
    let status = poll("serin up to exit", Duration::from_secs(30), || {
        up.0.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let log = std::fs::read_to_string(d.join("up.log")).unwrap();
    let key = d.join("tls/broken-key.pem");
    assert!(
        log.contains(&format!("apiTls: {}: not a valid PEM file", key.display())),
        "{log}"
    );
    assert!(log.contains("nothing was started"), "{log}");
    assert!(!d.join("state").exists(), "state was created");

    // The certificate given as the key: the message says so.
    std::fs::write(
        d.join("serin.yaml"),
        std::fs::read_to_string(d.join("serin.yaml"))
            .unwrap()
            .replace("tls/broken-key.pem", "tls/api-cert.pem"),
    )
    .unwrap();
    let mut up2 = self::up(d);
    let status = poll("serin up to exit", Duration::from_secs(30), || {
        up2.0.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let log = std::fs::read_to_string(d.join("up.log")).unwrap();
    assert!(
        log.contains(&format!("{}: no private key found", pki.cert.display()))
            && log.contains("are cert and key swapped?"),
        "{log}"
    );
    assert!(!d.join("state").exists(), "state was created");
}
