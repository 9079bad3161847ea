//! Issue #16 (hardening) end to end: each finding of the hostile-user review
//! reproduced against a real `serin up` / `serin flags serve` over loopback,
//! the way an attacker on the machine reaches them. Every wait polls with a
//! deadline; nothing here depends on how fast the machine is.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MANIFEST: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: app
          image: argoproj/rollouts-demo:blue
          ports:
            - containerPort: 8080
          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
"#;

/// A test folder with the demo manifest and a serin.yaml carrying `extra`.
fn setup(name: &str, extra: &str) -> Dir {
    let dir = demo_dir(&format!("harden-{name}"), extra);
    std::fs::write(dir.0.join("manifests/web.yaml"), MANIFEST).expect("manifest");
    dir
}

/// `serin up` with a secret in its own environment (which replicas must not
/// inherit).
fn up(dir: &Path) -> Up {
    Up(Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(dir.join("serin.yaml"))
        .arg(dir.join("manifests"))
        .env("SERIN_HARDEN_SECRET", "hunter2")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("up.log")).unwrap())
        .spawn()
        .expect("serin up starts"))
}

fn api(dir: &Path) -> SocketAddr {
    poll("endpoints.json", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(dir.join("state/endpoints.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["api"].as_str()?.parse().ok()
    })
}

fn admin(dir: &Path) -> String {
    poll("admin.token", Duration::from_secs(20), || {
        let t = std::fs::read_to_string(dir.join("state/admin.token")).ok()?;
        (!t.trim().is_empty()).then(|| t.trim().to_string())
    })
}

/// A response: status, lower-cased head, body.
struct Res {
    status: u16,
    head: String,
    body: String,
}

impl Res {
    fn json(&self) -> serde_json::Value {
        assert!(
            self.head.contains("content-type: application/json"),
            "a JSON error body, got head {:?} body {:?}",
            self.head,
            self.body
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection; `auth` is the whole
/// Authorization header value.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Res {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    // The body goes from another thread while this one reads: the server may
    // answer (413) before reading all of a large body.
    let mut w = s.try_clone().expect("clone");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Res {
        status,
        head: head.to_ascii_lowercase(),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn apply_body(name: &str, content: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"name": name, "content": content})).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Processes whose working directory is under `dir`.
fn pids_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir))
        })
        .collect()
}

/// Items 3 and 4: the state dir is private, so are its secrets, stores and
/// logs; replicas neither inherit `serin up`'s environment nor work inside
/// the state dir.
#[test]
fn state_is_private_and_replicas_run_clean_outside_it() {
    let d = setup(
        "private",
        "notifications:\n  services:\n    hook:\n      type: webhook\n      url: http://127.0.0.1:9/secret-path\n      headers: {Authorization: Bearer webhook-secret}\n",
    );
    let _up = up(&d.0);
    let addr = api(&d.0);
    let token = admin(&d.0);
    // Wait for the replica to be ready (its log and working dir exist).
    poll("a ready replica", Duration::from_secs(30), || {
        let r = request(
            addr,
            "GET",
            "/v1/rollouts/web",
            Some(&bearer(&token)),
            "application/json",
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        v["revisions"]
            .as_array()?
            .iter()
            .flat_map(|r| r["pods"].as_array().cloned().unwrap_or_default())
            .any(|p| p["ready"] == true)
            .then_some(())
    });
    let state = d.0.join("state");
    assert_eq!(mode(&state), 0o700, "state dir");
    for f in [
        "config.json",
        "admin.token",
        "serin.redb",
        "history.redb",
        "proxy.log",
        "endpoints.json",
    ] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    let config = std::fs::read_to_string(state.join("config.json")).unwrap();
    assert!(
        config.contains("webhook-secret"),
        "the file checked is the one with secrets"
    );
    // Every file below the state dir (replica logs, the platform's state).
    let mut stack = vec![state.clone()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(files > 6, "replica logs are among the files checked");
    // The replica: working dir beside the state dir, clean environment.
    let pods = d.0.join("state-pods");
    let pids = poll("the replica process", Duration::from_secs(20), || {
        let p = pids_in(&pods);
        (!p.is_empty()).then_some(p)
    });
    assert!(
        pids_in(&state).is_empty(),
        "no process works inside the state dir"
    );
    for pid in pids {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).to_string())
            .collect();
        assert!(
            !vars.iter().any(|v| v.contains("hunter2")),
            "serin up's environment leaked into a replica: {vars:?}"
        );
        assert!(
            vars.contains(&format!("PATH={}", serin_platform_local::DEFAULT_PATH)),
            "{vars:?}"
        );
        assert!(vars.iter().any(|v| v.starts_with("PORT=")), "{vars:?}");
        assert!(vars.iter().any(|v| v.starts_with("HOME=")), "{vars:?}");
    }
}

/// Items 10, 11, 12 and 18: every error is JSON; bad file names are 400, not
/// 500; emergency-notify knows its rollouts; `serin apply -f` of a file over
/// the body limit says so.
#[test]
fn api_errors_are_json_and_inputs_are_checked() {
    let d = setup("errors", "");
    let _up = up(&d.0);
    let addr = api(&d.0);
    let token = admin(&d.0);
    let auth = bearer(&token);
    let auth = Some(auth.as_str());
    // 415: not JSON.
    let r = request(addr, "POST", "/v1/apply", auth, "text/plain", b"hello");
    assert_eq!(r.status, 415);
    assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()));
    // 400: broken JSON.
    let r = request(
        addr,
        "POST",
        "/v1/apply",
        auth,
        "application/json",
        b"{\"name\":",
    );
    assert_eq!(r.status, 400);
    r.json();
    // 422: JSON of the wrong shape.
    let r = request(
        addr,
        "POST",
        "/v1/apply",
        auth,
        "application/json",
        b"{\"name\": 1}",
    );
    assert_eq!(r.status, 422);
    r.json();
    // 413: over 2 MiB.
    let big = apply_body("big.yaml", &"#".repeat(3 * 1024 * 1024));
    let r = request(addr, "POST", "/v1/apply", auth, "application/json", &big);
    assert_eq!(r.status, 413);
    r.json();
    // 400, not 500: a NUL byte, a 300-character name.
    for name in ["a\0b.yaml".to_string(), format!("{}.yaml", "x".repeat(300))] {
        let r = request(
            addr,
            "POST",
            "/v1/apply",
            auth,
            "application/json",
            &apply_body(&name, MANIFEST),
        );
        assert_eq!(r.status, 400, "{name:?}: {}", r.body);
        assert!(r.json()["error"].as_str().is_some());
    }
    // Nothing was written for them.
    let files: Vec<_> = std::fs::read_dir(d.0.join("manifests"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    // An image with no images: entry is applied, with a located warning that
    // it cannot run here (#16 item 8: lint/apply warn about it).
    let ghost = MANIFEST
        .replace("name: web", "name: ghost")
        .replace("app: web", "app: ghost")
        .replace("argoproj/rollouts-demo:blue", "nowhere/ghost:1");
    let r = request(
        addr,
        "POST",
        "/v1/apply",
        auth,
        "application/json",
        &apply_body("ghost.yaml", &ghost),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let warnings = r.json()["warnings"].clone();
    let w = warnings
        .as_array()
        .and_then(|w| w.iter().find(|d| d["code"] == "unmapped-image"))
        .unwrap_or_else(|| panic!("no unmapped-image warning: {warnings}"));
    assert_eq!(
        (w["line"].as_u64(), w["path"].as_str()),
        (Some(17), Some("spec.template.spec.containers[0].image")),
        "{w}"
    );
    // 404 for an unknown rollout, 200 for a known one.
    let r = request(
        addr,
        "POST",
        "/v1/rollouts/nope/emergency-notify",
        auth,
        "application/json",
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope"))
    );
    let r = request(
        addr,
        "POST",
        "/v1/rollouts/web/emergency-notify",
        auth,
        "application/json",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // serin apply -f of a file over the limit: "too large", not a broken pipe.
    let huge = d.0.join("huge.yaml");
    std::fs::write(
        &huge,
        format!("{MANIFEST}#{}\n", "x".repeat(3 * 1024 * 1024)),
    )
    .unwrap();
    let out = Command::new(SERIN)
        .args(["apply", "-f"])
        .arg(&huge)
        .arg("--state-dir")
        .arg(d.0.join("state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("too large"), "{err}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("cannot reach"),
        "{err}"
    );
    // Under 2 MiB on disk but over it once JSON-escaped: refused the same way.
    let quotes = d.0.join("quotes.yaml");
    std::fs::write(&quotes, format!("{MANIFEST}# {}\n", "\"".repeat(1_500_000))).unwrap();
    let out = Command::new(SERIN)
        .args(["apply", "-f"])
        .arg(&quotes)
        .arg("--state-dir")
        .arg(d.0.join("state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("too large"), "{err}");
}

/// Item 13: tokens can be listed, revoked and made to expire; names are
/// checked; the `bearer` scheme is case-insensitive (RFC 9110).
#[test]
fn tokens_revoke_expire_list_and_any_case_bearer() {
    let d = setup("tokens", "");
    let _up = up(&d.0);
    let addr = api(&d.0);
    let token = admin(&d.0);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = request(
            addr,
            "GET",
            "/v1/rollouts",
            Some(&format!("{scheme} {token}")),
            "application/json",
            b"",
        );
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    let admin_auth = bearer(&token);
    let create = |body: serde_json::Value| {
        request(
            addr,
            "POST",
            "/v1/tokens",
            Some(&admin_auth),
            "application/json",
            &serde_json::to_vec(&body).unwrap(),
        )
    };
    for name in ["a\nb", "a\0b", "", &"x".repeat(65)] {
        let r = create(serde_json::json!({"name": name, "role": "viewer"}));
        assert_eq!(r.status, 400, "{name:?}: {}", r.body);
        r.json();
    }
    // Revoke: works before, 401 after.
    let r = create(serde_json::json!({"name": "ci-bot", "role": "deployer"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let bot = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        create(serde_json::json!({"name": "ci-bot", "role": "viewer"})).status,
        409,
        "names are unique"
    );
    let use_bot = || {
        request(
            addr,
            "GET",
            "/v1/rollouts",
            Some(&bearer(&bot)),
            "application/json",
            b"",
        )
        .status
    };
    assert_eq!(use_bot(), 200);
    let out = Command::new(SERIN)
        .args(["token", "ci-bot", "--revoke", "--state-dir"])
        .arg(d.0.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(use_bot(), 401);
    let r = request(
        addr,
        "DELETE",
        "/v1/tokens/ci-bot",
        Some(&admin_auth),
        "application/json",
        b"",
    );
    assert_eq!(r.status, 404);
    // Expiry: a token that expires in a second stops working.
    let r = create(serde_json::json!({"name": "short", "role": "viewer", "expiresIn": "1s"}));
    assert_eq!(r.status, 201, "{}", r.body);
    let short = r.json()["token"].as_str().unwrap().to_string();
    let r = poll("the short token to expire", Duration::from_secs(30), || {
        let r = request(
            addr,
            "GET",
            "/v1/rollouts",
            Some(&bearer(&short)),
            "application/json",
            b"",
        );
        (r.status != 200).then_some(r)
    });
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{}",
        r.body
    );
    assert_eq!(
        create(serde_json::json!({"name": "bad", "role": "viewer", "expiresIn": "soon"})).status,
        400
    );
    // Listing: names, roles and expiry, never values.
    let out = Command::new(SERIN)
        .args(["token", "--list", "--state-dir"])
        .arg(d.0.join("state"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("local-admin") && text.contains("short"),
        "{text}"
    );
    assert!(!text.contains("ci-bot"), "revoked tokens are gone: {text}");
    assert!(
        !text.contains(&token) && !text.contains(&short),
        "no values: {text}"
    );
}

/// Items 5 and 15: under `mappedImagesOnly` a deployer cannot run a command
/// of its own; `serin set image` writes exactly the image asked for.
#[test]
fn mapped_images_only_and_set_image_escaping() {
    let d = setup("policy", "mappedImagesOnly: true\n");
    let _up = up(&d.0);
    let addr = api(&d.0);
    let token = admin(&d.0);
    let evil = MANIFEST.replace("name: web", "name: evil").replace(
        "          ports:",
        "          command: [sh, -c, \"touch /tmp/serin-pwned\"]\n          ports:",
    );
    let r = request(
        addr,
        "POST",
        "/v1/apply",
        Some(&bearer(&token)),
        "application/json",
        &apply_body("evil.yaml", &evil),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let v = r.json();
    let diag = &v["diagnostics"][0];
    assert_eq!(diag["code"], "command-not-allowed", "{v}");
    assert_eq!(diag["path"], "spec.template.spec.containers[0].command");
    assert!(diag["line"].as_u64().is_some_and(|l| l > 1));
    assert!(!d.0.join("manifests/evil.yaml").exists(), "nothing written");
    // An image with a backslash: the manifest must hold exactly that string.
    let image = r"argoproj/rollouts-demo:a\tb\";
    let out = Command::new(SERIN)
        .args([
            "set",
            "image",
            "web",
            &format!("app={image}"),
            "--state-dir",
        ])
        .arg(d.0.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(d.0.join("manifests/web.yaml")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("still valid YAML");
    assert_eq!(
        doc["spec"]["template"]["spec"]["containers"][0]["image"],
        image
    );
}

/// Item 17: `flags:` without keys on a non-loopback API address is refused
/// before anything starts, as `serin flags serve` refuses it.
#[test]
fn flags_without_keys_refuse_a_non_loopback_api() {
    let d = setup(
        "flagsopen",
        "api: 0.0.0.0:0\nflags:\n  environment: production\n",
    );
    let mut up = Up(Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(d.0.join("serin.yaml"))
        .arg(d.0.join("manifests"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.0.join("up.log")).unwrap())
        .spawn()
        .unwrap());
    // Before the fix it started and served; now it must exit by itself.
    let status = poll(
        "serin up to refuse and exit",
        Duration::from_secs(30),
        || up.0.try_wait().ok().flatten(),
    );
    let err = std::fs::read_to_string(d.0.join("up.log")).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("without API keys") && err.contains("nothing was started"),
        "{err}"
    );
    assert!(!d.0.join("state/endpoints.json").exists());
}

/// Reads until the peer closes (Ok(bytes)) or the read times out (Err).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => Ok(buf),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(buf),
        Err(e) => Err(format!("still open after {limit:?} ({e}); read {buf:?}")),
    }
}

/// Opens an SSE stream (a request that stays in flight) and waits for its
/// response head; retries while the server still counts a connection that
/// was just closed.
fn hold_stream(addr: SocketAddr, path: &str, auth: Option<&str>) -> TcpStream {
    poll("an SSE stream", Duration::from_secs(30), || {
        let mut s = TcpStream::connect(addr).ok()?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
        if let Some(a) = auth {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        String::from_utf8_lossy(&buf[..n])
            .starts_with("HTTP/1.1 200")
            .then_some(s)
    })
}

/// Checks a server's limits: a slow client's headers time out, connections
/// over the cap get a JSON 503, and a slot is free again once a connection
/// closes.
fn check_limits(addr: SocketAddr, cap: usize, stream: &str, auth: Option<&str>, ok_path: &str) {
    // Slowloris: half a request line, then nothing. The server hangs up.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    read_until_closed(&mut slow, Duration::from_secs(30)).expect("slow headers time out");
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.write_all(format!("GET {ok_path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let answer =
        read_until_closed(&mut idle, Duration::from_secs(30)).expect("idle connection closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // Fill every slot with a request in flight; the next connection is refused.
    let held: Vec<TcpStream> = (0..cap).map(|_| hold_stream(addr, stream, auth)).collect();
    let mut over = TcpStream::connect(addr).unwrap();
    let _ = over.write_all(format!("GET {ok_path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let answer = read_until_closed(&mut over, Duration::from_secs(30)).expect("closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    let body: serde_json::Value =
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).expect("JSON 503");
    assert!(body["error"].as_str().is_some());
    drop(held);
    poll("a free connection slot", Duration::from_secs(30), || {
        let r = request(addr, "GET", ok_path, auth, "application/json", b"");
        (r.status == 200).then_some(())
    });
}

/// Item 9 for the control-plane API (`apiLimits:` in serin.yaml).
#[test]
fn api_has_connection_cap_and_header_timeout() {
    let d = setup(
        "limits",
        "apiLimits:\n  maxConnections: 3\n  headerReadTimeoutSecs: 1\n",
    );
    let _up = up(&d.0);
    let addr = api(&d.0);
    let token = admin(&d.0);
    let auth = bearer(&token);
    check_limits(addr, 3, "/v1/events", Some(&auth), "/healthz");
}

/// Item 9 for the standalone flag server (`serin flags serve
/// --max-connections --header-read-timeout`).
#[test]
fn flag_server_has_connection_cap_and_header_timeout() {
    let dir = std::env::temp_dir().join(format!("serin-harden-flagsrv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let flags = dir.join("flags.yaml");
    std::fs::write(
        &flags,
        "flags:\n  f:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: on\n",
    )
    .unwrap();
    let mut child = Command::new(SERIN)
        .args([
            "flags",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "2",
            "--header-read-timeout",
            "1",
            "--file",
        ])
        .arg(&flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child, PathBuf);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let mut out = child.stdout.take().unwrap();
    let guard = Kill(child, dir);
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    check_limits(addr, 2, "/ofrep/v1/events", None, "/api/v1/openapi.yaml");
    drop(guard);
}
