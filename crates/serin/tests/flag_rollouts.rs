//! FlagRollout manifests under a real `serin up`: applied with `serin apply`,
//! judged by a `web` analysis against a metric endpoint the test controls,
//! percentages written in-process to the flag server (audit log, OFREP),
//! status in `serin get flagrollout -o json`, a crash of the control plane
//! in the middle, a rollback that notifies a real webhook receiver and the
//! SSE stream, abort and retry; and real OpenFeature flagd providers
//! connected to `serin up` seeing a rollback as a change event.

mod support;
use support::*;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "adm-flagrollout-1";
const SDK: &str = "srv-flagrollout-1";

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

/// A state dir, manifests dir with the analysis template, and a serin.yaml
/// serving flags with an admin and a server key; `extra` is appended.
fn setup(name: &str, metrics: SocketAddr, extra: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("serin-fr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(
        dir.join("keys.yaml"),
        format!(
            "keys:\n  - name: ops\n    kind: admin\n    environment: production\n    sha256: {}\n  - name: app\n    kind: server\n    environment: production\n    sha256: {}\n",
            hash_key(ADMIN),
            hash_key(SDK)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("serin.yaml"),
        format!(
            "stateDir: {}\nflags:\n  keys: {}\n{extra}",
            dir.join("state").display(),
            dir.join("keys.yaml").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("manifests/template.yaml"),
        format!(
            r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-rate
spec:
  args:
    - name: service
  metrics:
    - name: error-rate
      interval: 100ms
      count: 2
      successCondition: result <= 0.01
      provider:
        web:
          url: http://{metrics}/{{{{args.service}}}}/error-rate
          jsonPath: "{{$.errorRate}}"
"#
        ),
    )
    .unwrap();
    Dir(dir)
}

fn up(dir: &Path) -> Up {
    Up(Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(dir.join("serin.yaml"))
        .arg(dir.join("manifests"))
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("up.log"))
                .unwrap(),
        )
        .spawn()
        .expect("serin up starts"))
}

/// The API address of the `serin up` running now (re-read: it changes
/// across restarts).
fn api(dir: &Path) -> Option<SocketAddr> {
    let ep: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state/endpoints.json")).ok()?)
            .ok()?;
    ep["api"].as_str()?.parse().ok()
}

/// One HTTP/1.1 request; `None` on any connection problem.
fn request(
    api: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(api).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let json =
        serde_json::from_str(buf.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap_or_default();
    Some((code, json))
}

fn serin(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(SERIN)
        .args(args)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap()
}

fn get_fr(dir: &Path, name: &str) -> Option<Value> {
    let out = serin(dir, &["get", "flagrollout", name, "-o", "json"]);
    out.status.success().then_some(())?;
    serde_json::from_slice(&out.stdout).ok()
}

fn apply(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    let out = serin(dir, &["apply", "-f", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn put_flag(dir: &Path, key: &str, def: &str) {
    let (code, body) = poll("the flag API", Duration::from_secs(60), || {
        request(
            api(dir)?,
            "PUT",
            &format!("/api/v1/environments/production/flags/{key}"),
            ADMIN,
            def,
        )
    });
    assert!(code == 200 || code == 201, "{code} {body}");
}

const TWO_VARIANTS: &str =
    r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#;

/// How many of 100 users get the flag's `true` variant, through OFREP.
fn users_on(dir: &Path, key: &str) -> usize {
    let api = api(dir).unwrap();
    (0..100)
        .filter(|i| {
            let (code, v) = request(
                api,
                "POST",
                &format!("/ofrep/v1/evaluate/flags/{key}"),
                SDK,
                &format!(r#"{{"context": {{"targetingKey": "user-{i}"}}}}"#),
            )
            .unwrap();
            assert_eq!(code, 200, "{v}");
            v["value"] == Value::Bool(true)
        })
        .count()
}

/// `(actor, action)` of the flag's audit entries, oldest first.
fn audit(dir: &Path, key: &str) -> Vec<(String, String)> {
    let (code, v) = request(
        api(dir).unwrap(),
        "GET",
        &format!("/api/v1/environments/production/audit?flag={key}"),
        ADMIN,
        "",
    )
    .unwrap();
    assert_eq!(code, 200, "{v}");
    let mut out: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// A metric endpoint: `GET /{service}/error-rate` → `{"errorRate": x}`.
/// `good` always answers 0.1 %; `flaky` answers 0.1 % for its first `ok`
/// requests and 20 % after.
fn metrics_server(flaky_ok: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let flaky_seen = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&flaky_seen);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = std::io::BufReader::new(conn);
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let rate = if first.contains("/flaky/") {
                if seen.fetch_add(1, Ordering::SeqCst) < flaky_ok {
                    0.001
                } else {
                    0.2
                }
            } else {
                0.001
            };
            let body = format!("{{\"errorRate\": {rate}}}");
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, flaky_seen)
}

fn flag_rollout(
    name: &str,
    flag: &str,
    steps: &str,
    interval: &str,
    service: Option<&str>,
) -> String {
    let analysis = service
        .map(|s| {
            format!(
                "  analysis:\n    templates:\n      - templateName: error-rate\n    args:\n      - name: service\n        value: {s}\n"
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: serin.dev/v1alpha1\nkind: FlagRollout\nmetadata:\n  name: {name}\nspec:\n  flag: {flag}\n  steps: {steps}\n  interval: {interval}\n{analysis}"
    )
}

#[test]
fn a_flag_rollout_completes_survives_a_crash_mid_way_and_stays_completed() {
    let (metrics, _) = metrics_server(0);
    let dir = setup("complete", metrics, "");
    let d = &dir.0;
    let _up = up(d);
    put_flag(d, "checkout", TWO_VARIANTS);
    put_flag(
        d,
        "color",
        r#"{"state": "ENABLED", "variants": {"r": "r", "g": "g", "b": "b"}, "defaultVariant": "r"}"#,
    );
    apply(
        d,
        "checkout.yaml",
        &flag_rollout("checkout", "checkout", "[10, 40, 100]", "2s", Some("good")),
    );
    apply(
        d,
        "ghost.yaml",
        &flag_rollout("ghost", "no-such-flag", "[50, 100]", "1s", None),
    );
    apply(
        d,
        "color.yaml",
        &flag_rollout("color", "color", "[50, 100]", "1s", None),
    );

    // Flags that cannot be rolled out: Error, the reason, nothing changed.
    for (name, why) in [("ghost", "not found"), ("color", "two variants")] {
        let v = poll(&format!("{name} in Error"), Duration::from_secs(60), || {
            get_fr(d, name).filter(|v| v["phase"] == "Error")
        });
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
        assert_eq!(v["percentage"], Value::Null, "{v}");
    }
    assert!(
        audit(d, "color").iter().all(|(who, _)| who == "ops"),
        "nothing written to the unsuitable flag"
    );

    let at_40 = poll("checkout at 40 %", Duration::from_secs(60), || {
        get_fr(d, "checkout").filter(|v| v["percentage"] == 40)
    });
    assert_eq!(at_40["phase"], "Progressing", "{at_40}");
    assert_eq!(at_40["currentStep"], 2, "{at_40}");
    assert_eq!(at_40["stepResults"][0]["state"], "Passed", "{at_40}");
    assert_eq!(
        at_40["stepResults"][0]["analysis"]["phase"], "Successful",
        "{at_40}"
    );
    // The control plane dies in the middle of the step; another takes over.
    drop(_up);
    let _up = up(d);
    let done = poll("checkout Completed", Duration::from_secs(90), || {
        get_fr(d, "checkout").filter(|v| v["phase"] == "Completed")
    });
    assert_eq!(done["percentage"], 100, "{done}");
    assert_eq!(done["currentStep"], 3, "{done}");
    assert_eq!(
        done["startedAtMs"], at_40["startedAtMs"],
        "resumed, not started over: {done}"
    );
    for r in done["stepResults"].as_array().unwrap() {
        assert_eq!(r["state"], "Passed", "{done}");
        assert_eq!(r["analysis"]["phase"], "Successful", "{done}");
    }
    let changes: Vec<String> = audit(d, "checkout")
        .into_iter()
        .filter(|(who, _)| who == "flagrollout/checkout")
        .map(|(_, what)| what)
        .collect();
    assert_eq!(
        changes,
        vec!["percentage:10", "percentage:40", "percentage:100"],
        "each step written once, by the FlagRollout"
    );
    assert_eq!(users_on(d, "checkout"), 100);

    // Another restart: a completed rollout stays completed and writes nothing.
    drop(_up);
    let _up = up(d);
    poll("the restarted API", Duration::from_secs(60), || {
        get_fr(d, "ghost")
    });
    std::thread::sleep(Duration::from_secs(1)); // a few ticks of the loop
    let again = get_fr(d, "checkout").unwrap();
    assert_eq!(again["phase"], "Completed", "{again}");
    assert_eq!(again["updatedAtMs"], done["updatedAtMs"], "{again}");
    assert_eq!(audit(d, "checkout").len(), 4, "create + three steps");

    // The text views.
    let out = serin(d, &["get", "flagrollouts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("checkout") && l.contains("Completed") && l.contains("100 %")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ghost") && l.contains("Error")),
        "{text}"
    );
    let out = serin(d, &["get", "flagrollout", "checkout"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("step 3  100 %  Passed   analysis Successful"),
        "{text}"
    );
    let missing = serin(d, &["get", "flagrollout", "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no FlagRollout named nope"),
        "{missing:?}"
    );
}

#[test]
fn a_failing_analysis_sets_the_flag_to_zero_says_why_and_notifies() {
    // The webhook receiver: every POST body.
    let hook_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = hook_listener.local_addr().unwrap();
    let (tx, notes) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for conn in hook_listener.incoming().flatten() {
            let mut r = std::io::BufReader::new(conn);
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
        }
    });
    // Step 1's run takes two measurements; from the third on, 20 % errors.
    let (metrics, _) = metrics_server(2);
    let dir = setup(
        "rollback",
        metrics,
        &format!(
            "notifications:\n  services:\n    hook: {{type: webhook, url: \"http://{hook}/hook\"}}\n  subscriptions:\n    - {{trigger: on-rollout-aborted, service: hook}}\n"
        ),
    );
    let d = &dir.0;
    let _up = up(d);
    put_flag(d, "payments", TWO_VARIANTS);
    put_flag(d, "slow", TWO_VARIANTS);

    // Follow the event stream from before the rollout starts.
    let api_addr = poll("the API", Duration::from_secs(30), || api(d));
    let token = std::fs::read_to_string(d.join("state/admin.token")).unwrap();
    let mut sse = TcpStream::connect(api_addr).unwrap();
    write!(
        sse,
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        token.trim()
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let (etx, events) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(sse);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if etx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });

    apply(
        d,
        "payments.yaml",
        &flag_rollout("payments", "payments", "[10, 50, 100]", "1s", Some("flaky")),
    );
    let v = poll("payments RolledBack", Duration::from_secs(60), || {
        get_fr(d, "payments").filter(|v| v["phase"] == "RolledBack")
    });
    assert_eq!(v["percentage"], 0, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("did not pass at 50 %") && message.contains("Failed"),
        "{message}"
    );
    let steps = v["stepResults"].as_array().unwrap();
    assert_eq!(steps[0]["state"], "Passed", "{v}");
    assert_eq!(steps[1]["state"], "Failed", "{v}");
    assert_eq!(steps[1]["analysis"]["phase"], "Failed", "{v}");
    assert!(
        steps[1]["analysis"]["message"]
            .as_str()
            .unwrap()
            .contains("error-rate"),
        "the failing metric is named: {v}"
    );
    assert_eq!(
        steps[2]["state"], "Pending",
        "never went past the failing step"
    );
    assert_eq!(
        users_on(d, "payments"),
        0,
        "everyone back on the off variant"
    );
    let changes: Vec<(String, String)> = audit(d, "payments");
    assert_eq!(
        changes.last(),
        Some(&(
            "flagrollout/payments".to_string(),
            "percentage:0".to_string()
        ))
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while !seen.contains("RolledBack") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "events so far: {seen}");
        if let Ok(l) = events.recv_timeout(left)
            && l.starts_with("data:")
            && l.contains("\"flagRollout\":\"payments\"")
        {
            seen.push_str(&l);
        }
    }
    assert!(seen.contains("PercentageSet"), "{seen}");

    let note = notes
        .recv_timeout(Duration::from_secs(30))
        .expect("a notification arrived");
    assert!(note.contains("payments"), "{note}");
    assert!(note.contains("set back to 0 %"), "{note}");

    // Over: nothing to abort. Retry starts over, and fails at the first step now.
    let out = serin(d, &["abort", "flagrollout", "payments"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to abort"),
        "{out:?}"
    );
    let out = serin(d, &["retry", "flagrollout", "payments"]);
    assert!(out.status.success(), "{out:?}");
    let retried = poll(
        "the retry rolled back at 10 %",
        Duration::from_secs(60),
        || {
            get_fr(d, "payments").filter(|v| {
                // The first run passed its first step; the retry fails there.
                v["phase"] == "RolledBack" && v["stepResults"][0]["state"] == "Failed"
            })
        },
    );
    assert!(
        retried["startedAtMs"].as_u64() > v["startedAtMs"].as_u64(),
        "{retried}"
    );
    assert_eq!(retried["percentage"], 0);

    // A user abort: from the first step (an hour long) back to 0 %.
    apply(
        d,
        "slow.yaml",
        &flag_rollout("slow", "slow", "[10, 100]", "1h", None),
    );
    poll("slow at 10 %", Duration::from_secs(60), || {
        get_fr(d, "slow").filter(|v| v["percentage"] == 10)
    });
    // A viewer reads FlagRollouts but cannot abort them.
    let out = serin(d, &["token", "watcher", "--role", "viewer"]);
    assert!(out.status.success(), "{out:?}");
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let api_now = api(d).unwrap();
    let (code, body) = request(api_now, "GET", "/v1/flagrollouts", &viewer, "").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(2), "{body}");
    let (code, body) =
        request(api_now, "POST", "/v1/flagrollouts/slow/abort", &viewer, "").unwrap();
    assert_eq!(code, 403, "{body}");
    let out = serin(d, &["abort", "flagrollout", "slow"]);
    assert!(out.status.success(), "{out:?}");
    let aborted = poll("slow Aborted", Duration::from_secs(30), || {
        get_fr(d, "slow").filter(|v| v["phase"] == "Aborted")
    });
    assert_eq!(aborted["percentage"], 0, "{aborted}");
    assert_eq!(users_on(d, "slow"), 0);

    // Re-applying the same spec changes nothing; a changed spec starts over.
    apply(
        d,
        "slow.yaml",
        &flag_rollout("slow", "slow", "[10, 100]", "1h", None),
    );
    std::thread::sleep(Duration::from_secs(1)); // a few ticks of the loop
    let same = get_fr(d, "slow").unwrap();
    assert_eq!(same["phase"], "Aborted", "{same}");
    assert_eq!(same["startedAtMs"], aborted["startedAtMs"], "{same}");
    apply(
        d,
        "slow.yaml",
        &flag_rollout("slow", "slow", "[20, 100]", "1h", None),
    );
    let again = poll("slow started over at 20 %", Duration::from_secs(30), || {
        get_fr(d, "slow").filter(|v| v["percentage"] == 20)
    });
    assert_eq!(again["phase"], "Progressing", "{again}");
    assert!(
        again["startedAtMs"].as_u64() > aborted["startedAtMs"].as_u64(),
        "{again}"
    );
}

/// A metric endpoint for `GET /guard/error-rate`: 0.1 % errors until `failing` is set, 20 %
/// after.
fn switch_metrics(failing: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = std::io::BufReader::new(conn);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let rate = if failing.load(Ordering::SeqCst) {
                0.2
            } else {
                0.001
            };
            let body = format!("{{\"errorRate\": {rate}}}");
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A real OpenFeature client (`tests/openfeature/client.py --watch`) connected to `serin up`'s
/// API: its first evaluation, then one JSON line per configuration-change event.
struct Watcher {
    provider: &'static str,
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Watcher {
    fn start(python: &Path, provider: &'static str, target: &str, cases: &Value) -> Watcher {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openfeature/client.py");
        let mut child = Command::new(python)
            .arg(&script)
            .args([provider, target, "--watch", &format!("--key={SDK}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the python client");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(cases.to_string().as_bytes())
            .unwrap();
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Watcher {
            provider,
            child,
            lines,
        }
    }

    /// The next line. The client ends (failing this) after 30 s without a change event.
    fn next(&mut self) -> Value {
        let line = self
            .lines
            .next()
            .unwrap_or_else(|| panic!("{}: the client ended", self.provider))
            .unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Change events until one after which the flag evaluates to `value`; that event.
    fn until(&mut self, value: bool) -> Value {
        loop {
            let e = self.next();
            if e["results"][0]["value"] == Value::Bool(value) {
                return e;
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seed's emergency as a manifest: a guarded `FlagRollout` (serin.dev/v1alpha1) picked up
/// by `serin up` from its manifests folder takes the flag to 100 %, its analysis fails, it
/// sets the flag back to 0 %, and real OpenFeature flagd providers (PyPI
/// `openfeature-provider-flagd`) connected to `serin up`'s API with a server key, in RPC
/// mode (EventStream) and in-process mode (SyncFlags), get a change event after which the
/// flag is off for them.
#[test]
fn a_flag_rollout_manifest_set_back_to_zero_reaches_connected_flagd_providers() {
    let Some(python) = openfeature_python() else {
        return;
    };
    let failing = Arc::new(AtomicBool::new(false));
    let metrics = switch_metrics(Arc::clone(&failing));
    let dir = setup("providers", metrics, "");
    let d = &dir.0;
    // Measures every 100 ms for up to a minute, failing at the first bad measurement: the
    // step stays under analysis until the test turns the error rate up.
    std::fs::write(
        d.join("manifests/guard.yaml"),
        format!(
            r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: guard
spec:
  metrics:
    - name: error-rate
      interval: 100ms
      count: 600
      failureLimit: 0
      successCondition: result <= 0.01
      provider:
        web:
          url: http://{metrics}/guard/error-rate
          jsonPath: "{{$.errorRate}}"
"#
        ),
    )
    .unwrap();
    let _up = up(d);
    put_flag(d, "new-payment-processor", TWO_VARIANTS);
    let target = api(d).unwrap().to_string();

    let cases = serde_json::json!([{"flag": "new-payment-processor", "type": "boolean",
        "default": true, "targetingKey": "user-1"}]);
    let mut watchers: Vec<Watcher> = ["flagd-rpc", "flagd-in-process"]
        .into_iter()
        .map(|p| Watcher::start(&python, p, &target, &cases))
        .collect();
    for w in &mut watchers {
        let first = w.next();
        assert_eq!(
            first[0]["value"], false,
            "{}: off before: {first}",
            w.provider
        );
    }

    // The manifest, dropped into the folder `serin up` watches.
    std::fs::write(
        d.join("manifests/rollout.yaml"),
        "apiVersion: serin.dev/v1alpha1\nkind: FlagRollout\nmetadata:\n  name: guarded\nspec:\n  flag: new-payment-processor\n  steps: [100]\n  interval: 10m\n  analysis:\n    templates:\n      - templateName: guard\n",
    )
    .unwrap();
    for w in &mut watchers {
        let on = w.until(true);
        assert!(
            on["changed"]
                .as_array()
                .is_some_and(|c| c.contains(&Value::from("new-payment-processor"))),
            "{}: {on}",
            w.provider
        );
    }
    let at_100 = get_fr(d, "guarded").expect("the FlagRollout's status");
    assert_eq!(
        (&at_100["phase"], &at_100["percentage"]),
        (&Value::from("Progressing"), &Value::from(100)),
        "{at_100}"
    );

    // The error rate rises: the analysis fails and the FlagRollout sets 0 %.
    failing.store(true, Ordering::SeqCst);
    let back = poll("guarded RolledBack", Duration::from_secs(60), || {
        get_fr(d, "guarded").filter(|v| v["phase"] == "RolledBack")
    });
    assert_eq!(back["percentage"], 0, "{back}");
    assert!(
        back["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not pass at 100 %")),
        "{back}"
    );
    for w in &mut watchers {
        let off = w.until(false);
        assert!(
            off["changed"]
                .as_array()
                .is_some_and(|c| c.contains(&Value::from("new-payment-processor"))),
            "{}: {off}",
            w.provider
        );
    }
    assert_eq!(
        audit(d, "new-payment-processor").last(),
        Some(&(
            "flagrollout/guarded".to_string(),
            "percentage:0".to_string()
        ))
    );
}
