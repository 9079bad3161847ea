//! FlagRollouts on a cluster: `serin controller` (its own process) against
//! the test API server (scripts/k8s-test-server, via SERIN_TEST_KUBECONFIG)
//! with the FlagRollout CRD that `serin controller install` prints applied
//! by kubectl, writing percentages to a real `serin flags serve` on
//! loopback, judged by a `web` analysis against a loopback metric endpoint
//! the test controls. Nothing is played by the test here: a FlagRollout
//! needs no kubelet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio::time::Instant;

const SERIN: &str = env!("CARGO_BIN_EXE_serin");
const ADMIN: &str = "adm-kube-flagrollout-1";
const TIMEOUT: Duration = Duration::from_secs(60);

fn kubeconfig() -> Option<String> {
    match std::env::var("SERIN_TEST_KUBECONFIG") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "SERIN_TEST_KUBECONFIG is not set under CI=true (scripts/test starts the server)"
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: SERIN_TEST_KUBECONFIG is not set; run `export SERIN_TEST_KUBECONFIG=$(scripts/k8s-test-server)` first"
            );
            None
        }
    }
}

async fn client(path: &str) -> Client {
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Kills the child on drop (a failing test must not leave one behind).
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory, removed on drop.
struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("serin-kfr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// Applies the FlagRollout CRD exactly as `serin controller install`
/// prints it, with kubectl (server-side: every test may apply it).
fn install_crd(kc: &str) {
    let out = Command::new(SERIN)
        .args(["controller", "install", "--image", "example/serin:test"])
        .output()
        .expect("serin controller install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let crd = text
        .split("---\n")
        .find(|d| d.contains("kind: CustomResourceDefinition"))
        .expect("the install prints the FlagRollout CRD");
    let mut apply = Command::new("kubectl")
        .args([
            "--kubeconfig",
            kc,
            "apply",
            "--server-side",
            "--field-manager",
            "serin-install",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(crd.as_bytes())
        .unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl apply of the CRD: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("kubectl")
        .args([
            "--kubeconfig",
            kc,
            "wait",
            "--for",
            "condition=established",
            "--timeout=60s",
            "crd/flagrollouts.serin.dev",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn namespace(client: &Client, name: &str) -> String {
    let ns = format!("{name}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    ns
}

/// `serin flags serve` on a loopback port with an admin key; its address.
fn flag_server(d: &Path) -> (Child, SocketAddr) {
    flag_server_with(d, &[])
}

/// [`flag_server`] with more `serin flags serve` arguments (TLS).
fn flag_server_with(d: &Path, extra: &[&str]) -> (Child, SocketAddr) {
    let mut hash = Command::new(SERIN)
        .args(["flags", "hash-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hash.stdin
        .take()
        .unwrap()
        .write_all(ADMIN.as_bytes())
        .unwrap();
    let sha = String::from_utf8(hash.wait_with_output().unwrap().stdout).unwrap();
    std::fs::write(
        d.join("keys.yaml"),
        format!(
            "keys:\n  - name: flagrollout-bot\n    kind: admin\n    environment: production\n    sha256: {}\n",
            sha.trim()
        ),
    )
    .unwrap();
    let mut child = Command::new(SERIN)
        .args(["flags", "serve", "--listen", "127.0.0.1:0", "--keys"])
        .arg(d.join("keys.yaml"))
        .arg("--store")
        .arg(d.join("flags.redb"))
        .args(["--environment", "production"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serin flags serve");
    let stdout = child.stdout.take().unwrap();
    let guard = Child(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .or_else(|| line.trim().strip_prefix("listening on https://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (guard, addr)
}

/// One HTTP/1.1 request as the admin.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json =
        serde_json::from_str(buf.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap_or_default();
    (code, json)
}

fn put_flag(addr: SocketAddr, key: &str) {
    let (code, body) = request(
        addr,
        "PUT",
        &format!("/api/v1/environments/production/flags/{key}"),
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#,
    );
    assert!(code == 200 || code == 201, "{code} {body}");
}

/// The percentages written to `key`, oldest first, with who wrote them.
fn audit_percentages(addr: SocketAddr, key: &str) -> Vec<(String, String)> {
    let (code, v) = request(
        addr,
        "GET",
        &format!("/api/v1/environments/production/audit?flag={key}"),
        "",
    );
    assert_eq!(code, 200, "{v}");
    let mut out: Vec<(String, String)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("percentage:"))
        })
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

/// A metric endpoint answering `{"errorRate": rate/1e6}`.
fn metrics_server(rate: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let body = format!(
                "{{\"errorRate\": {}}}",
                rate.load(Ordering::SeqCst) as f64 / 1e6
            );
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn ar(group: &str, kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(group, "v1alpha1", kind),
        plural,
    )
}

fn flag_rollouts(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ar("serin.dev", "FlagRollout", "flagrollouts"),
    )
}

fn analysis_runs(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ar("argoproj.io", "AnalysisRun", "analysisruns"),
    )
}

async fn create(api: &Api<DynamicObject>, v: Value) {
    let obj: DynamicObject = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("creating an object");
}

/// The error-rate template: three measurements 300 ms apart, at most 1 %.
async fn template(client: &Client, ns: &str, metrics: SocketAddr) {
    let api = Api::namespaced_with(
        client.clone(),
        ns,
        &ar("argoproj.io", "AnalysisTemplate", "analysistemplates"),
    );
    create(
        &api,
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "error-rate"},
            "spec": {"metrics": [{
                "name": "error-rate", "interval": "300ms", "count": 3,
                "successCondition": "result <= 0.01",
                "provider": {"web": {"url": format!("http://{metrics}/error-rate"),
                                     "jsonPath": "{$.errorRate}"}},
            }]},
        }),
    )
    .await;
}

fn flag_rollout(name: &str, flag: &str, template: &str) -> Value {
    json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "FlagRollout",
        "metadata": {"name": name},
        "spec": {"flag": flag, "steps": [10, 50, 100], "interval": "2s",
                 "analysis": {"templates": [{"templateName": template}]}},
    })
}

/// `serin controller` for `ns`, writing to `flags`, its log in `log`.
fn controller(kc: &str, ns: &str, flags: &str, log: &Path) -> Child {
    controller_with(kc, ns, flags, log, &[])
}

/// [`controller`] with more arguments.
fn controller_with(kc: &str, ns: &str, flags: &str, log: &Path, extra: &[&str]) -> Child {
    Child(
        Command::new(SERIN)
            .args([
                "controller",
                "--kubeconfig",
                kc,
                "-n",
                ns,
                "--flag-server",
                flags,
            ])
            .args(extra)
            .env("SERIN_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .expect("serin controller"),
    )
}

/// Polls the FlagRollout's status until `check` accepts it.
async fn status_until(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    log: &Path,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let st = api
            .get(name)
            .await
            .ok()
            .and_then(|o| o.data.get("status").cloned())
            .unwrap_or(Value::Null);
        if check(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {st:#}\ncontroller log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serin_get(kc: &str, ns: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(SERIN);
    cmd.arg("get")
        .args(args)
        .args(["--kubeconfig", kc, "-n", ns]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("serin get"))
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_rollout_reaches_100_percent_and_a_killed_controller_resumes_at_its_step() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    install_crd(&kc);
    let ns = namespace(&client, "kfr-ok").await;
    let d = dir("ok");
    let log = d.0.join("controller.log");
    let (_flags, flags) = flag_server(&d.0);
    put_flag(flags, "new-checkout");
    let rate = Arc::new(AtomicU64::new(1_000)); // 0.1 %
    template(&client, &ns, metrics_server(rate)).await;
    let api = flag_rollouts(&client, &ns);
    create(&api, flag_rollout("checkout", "new-checkout", "error-rate")).await;
    let url = format!("http://{flags}");
    let ctl = controller(&kc, &ns, &url, &log);

    // Step 2 (50 %) is being judged: kill the controller there.
    let before = status_until(&api, "checkout", "step 2's analysis running", &log, |st| {
        st["currentStep"] == 2
            && st["percentage"] == 50
            && st["stepResults"][1]["analysis"]["phase"] == "Running"
    })
    .await;
    drop(ctl);
    assert!(
        before["stepResults"][0]["passedAt"].is_string(),
        "{before:#}"
    );
    let runs = analysis_runs(&client, &ns);
    let run10 = runs.get("new-checkout-10").await.expect("step 1's run");
    assert_eq!(
        run10.data["status"]["phase"], "Successful",
        "{:#}",
        run10.data
    );
    let owner = &run10.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "FlagRollout");
    assert_eq!(owner.name, "checkout");
    let (code, flag) = request(
        flags,
        "GET",
        "/api/v1/environments/production/flags/new-checkout",
        "",
    );
    assert_eq!(code, 200, "{flag}");
    assert!(
        flag.to_string().contains("50"),
        "the flag server holds 50 % while no controller runs: {flag}"
    );

    // A new controller resumes at step 2: step 1 is not run again.
    let _ctl = controller(&kc, &ns, &url, &log);
    let done = status_until(&api, "checkout", "Completed", &log, |st| {
        st["phase"] == "Completed"
    })
    .await;
    assert_eq!(done["percentage"], 100);
    assert_eq!(done["currentStep"], 3);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("resuming") && text.contains("step=2"),
        "the second controller resumed at step 2: {text}"
    );
    assert_eq!(
        done["stepResults"][0]["passedAt"], before["stepResults"][0]["passedAt"],
        "step 1 kept its result"
    );
    assert_eq!(
        runs.get("new-checkout-10").await.unwrap().metadata.uid,
        run10.metadata.uid,
        "step 1's AnalysisRun was not re-created"
    );
    for (i, pct) in [10, 50, 100].iter().enumerate() {
        let r = &done["stepResults"][i];
        assert_eq!(r["percentage"], *pct);
        assert_eq!(r["state"], "Passed", "{r}");
        assert_eq!(r["analysis"]["phase"], "Successful", "{r}");
    }
    let conds = done["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Completed" && c["status"] == "True"),
        "{conds:?}"
    );
    // Every run is on the cluster, owned by the FlagRollout, Successful.
    let list = runs
        .list(&ListParams::default().labels("serin.dev/flagrollout=checkout"))
        .await
        .unwrap();
    let mut names: Vec<String> = list
        .items
        .iter()
        .map(|r| {
            assert_eq!(r.data["status"]["phase"], "Successful", "{:#}", r.data);
            r.metadata.name.clone().unwrap()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["new-checkout-10", "new-checkout-100", "new-checkout-50"]
    );
    // The flag server's audit log: 10, 50, 100 by the controller's key, in
    // order, no 0 % and no step skipped (a re-sent 50 after the kill would
    // be a no-op write of the same value; none is expected as it was saved).
    let audit = audit_percentages(flags, "new-checkout");
    let actions: Vec<&str> = audit.iter().map(|(_, a)| a.as_str()).collect();
    let mut dedup = actions.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        ["percentage:10", "percentage:50", "percentage:100"],
        "{audit:?}"
    );
    assert!(
        audit.iter().all(|(who, _)| who == "flagrollout-bot"),
        "{audit:?}"
    );
    // The CLI prints it from the cluster as it does from serin up.
    let (ok, text) = serin_get(&kc, &ns, &["flagrollout", "checkout"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("Completed"), "{text}");
    assert!(text.contains("new-checkout"), "{text}");
    assert!(text.contains("100 %"), "{text}");
    let (ok, text) = serin_get(&kc, &ns, &["flagrollouts"]).await;
    assert!(
        ok && text.contains("checkout") && text.contains("3/3"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analysis_sets_the_flag_back_to_zero_and_says_why() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    install_crd(&kc);
    let ns = namespace(&client, "kfr-bad").await;
    let d = dir("bad");
    let log = d.0.join("controller.log");
    let (_flags, flags) = flag_server(&d.0);
    put_flag(flags, "new-search");
    let rate = Arc::new(AtomicU64::new(200_000)); // 20 %
    template(&client, &ns, metrics_server(rate)).await;
    let api = flag_rollouts(&client, &ns);
    create(&api, flag_rollout("search", "new-search", "error-rate")).await;
    let _ctl = controller(&kc, &ns, &format!("http://{flags}"), &log);
    let st = status_until(&api, "search", "RolledBack", &log, |st| {
        st["phase"] == "RolledBack"
    })
    .await;
    assert_eq!(st["percentage"], 0, "{st:#}");
    assert_eq!(st["stepResults"][0]["state"], "Failed", "{st:#}");
    assert_eq!(st["stepResults"][1]["state"], "Pending", "{st:#}");
    let degraded = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .cloned()
        .unwrap();
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert_eq!(degraded["reason"], "AnalysisFailed", "{degraded}");
    let msg = st["message"].as_str().unwrap();
    assert!(msg.contains("10") && msg.contains("Failed"), "{msg}");
    let run = analysis_runs(&client, &ns)
        .get("new-search-10")
        .await
        .unwrap();
    assert_eq!(run.data["status"]["phase"], "Failed", "{:#}", run.data);
    let audit = audit_percentages(flags, "new-search");
    let actions: Vec<&str> = audit.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(actions, ["percentage:10", "percentage:0"], "{audit:?}");
    let (ok, text) = serin_get(&kc, &ns, &["flagrollout", "search"]).await;
    assert!(ok && text.contains("RolledBack"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_says_why_in_the_status_and_the_controller_keeps_running() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    install_crd(&kc);
    let ns = namespace(&client, "kfr-input").await;
    let d = dir("input");
    let log = d.0.join("controller.log");
    let (_flags, flags) = flag_server(&d.0);
    template(&client, &ns, metrics_server(Arc::new(AtomicU64::new(0)))).await;
    let api = flag_rollouts(&client, &ns);
    // No such flag on the server.
    create(&api, flag_rollout("ghost", "no-such-flag", "error-rate")).await;
    // No such template.
    create(
        &api,
        flag_rollout("untemplated", "other", "missing-template"),
    )
    .await;
    let mut ctl = controller(&kc, &ns, &format!("http://{flags}"), &log);
    let st = status_until(&api, "ghost", "Error", &log, |st| st["phase"] == "Error").await;
    let msg = st["message"].as_str().unwrap();
    assert!(msg.contains("404") || msg.contains("not found"), "{msg}");
    assert_eq!(st["percentage"], Value::Null, "nothing was set: {st:#}");
    let st = status_until(&api, "untemplated", "Error", &log, |st| {
        st["phase"] == "Error"
    })
    .await;
    let msg = st["message"].as_str().unwrap();
    assert!(
        msg.contains("missing-template") && msg.contains("not found"),
        "{msg}"
    );
    assert!(
        audit_percentages(flags, "no-such-flag").is_empty()
            && audit_percentages(flags, "other").is_empty()
    );
    assert!(
        ctl.0.try_wait().unwrap().is_none(),
        "the controller is still running"
    );

    // A flag server nobody listens on: the status says the controller is
    // retrying, and nothing panics.
    let ns2 = namespace(&client, "kfr-down").await;
    template(&client, &ns2, metrics_server(Arc::new(AtomicU64::new(0)))).await;
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let api2 = flag_rollouts(&client, &ns2);
    create(
        &api2,
        flag_rollout("unreachable", "some-flag", "error-rate"),
    )
    .await;
    let log2 = d.0.join("controller2.log");
    let mut ctl2 = controller(&kc, &ns2, &format!("http://{closed}"), &log2);
    let st = status_until(&api2, "unreachable", "a retry message", &log2, |st| {
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot set 10 % yet"))
    })
    .await;
    assert_eq!(st["phase"], "Progressing", "{st:#}");
    assert!(ctl2.0.try_wait().unwrap().is_none(), "still running");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(!log_text.contains("panicked"), "{log_text}");
}

/// A loopback webhook receiver: every request body it gets, as JSON.
fn webhook_receiver() -> (SocketAddr, Arc<std::sync::Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    // Headers; a closed connection ends the thread.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        sink.lock().unwrap().push(v);
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if reader.get_mut().write_all(ok).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, got)
}

/// `serin abort|retry flagrollout NAME` against the cluster; (exit ok, output).
async fn serin_op(kc: &str, ns: &str, op: &str, name: &str) -> (bool, String) {
    let mut cmd = Command::new(SERIN);
    cmd.args([op, "flagrollout", name, "--kubeconfig", kc, "-n", ns]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("serin op"))
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// How many Kubernetes Events about FlagRollout `name` have each reason
/// (kube's recorder folds repeats of a reason into one Event's `series`).
async fn event_counts(
    client: &Client,
    ns: &str,
    name: &str,
) -> std::collections::BTreeMap<String, i32> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut out = std::collections::BTreeMap::new();
    for e in api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let about = e.regarding.as_ref().is_some_and(|r| {
            r.kind.as_deref() == Some("FlagRollout") && r.name.as_deref() == Some(name)
        });
        if let (true, Some(reason)) = (about, e.reason.clone()) {
            *out.entry(reason).or_default() += e.series.as_ref().map_or(1, |s| s.count);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_retry_from_the_cli_set_the_flag_back_and_start_over() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    install_crd(&kc);
    let ns = namespace(&client, "kfr-ops").await;
    let d = dir("ops");
    let log = d.0.join("controller.log");
    let (_flags, flags) = flag_server(&d.0);
    put_flag(flags, "new-banner");
    let rate = Arc::new(AtomicU64::new(1_000)); // 0.1 %: passing
    template(&client, &ns, metrics_server(rate)).await;
    let api = flag_rollouts(&client, &ns);
    // A long interval: the rollout stays at its first step until aborted.
    let mut fr = flag_rollout("banner", "new-banner", "error-rate");
    fr["spec"]["interval"] = json!("10m");
    create(&api, fr).await;
    // Notifications as `serin up` sends them: a webhook subscribed to
    // on-rollout-aborted.
    let (hook, hooked) = webhook_receiver();
    let notifications = d.0.join("notifications.yaml");
    std::fs::write(
        &notifications,
        format!(
            "services:\n  hook: {{type: webhook, url: \"http://{hook}/hook\"}}\nsubscriptions:\n  - {{trigger: on-rollout-aborted, service: hook}}\n"
        ),
    )
    .unwrap();
    let _ctl = controller_with(
        &kc,
        &ns,
        &format!("http://{flags}"),
        &log,
        &["--notifications", notifications.to_str().unwrap()],
    );
    let first = status_until(&api, "banner", "10 %", &log, |st| {
        st["phase"] == "Progressing" && st["percentage"] == 10
    })
    .await;

    let (ok, text) = serin_op(&kc, &ns, "abort", "banner").await;
    assert!(ok, "{text}");
    assert!(text.contains("abort: banner ok"), "{text}");
    let st = status_until(&api, "banner", "Aborted at 0 %", &log, |st| {
        st["phase"] == "Aborted" && st["percentage"] == 0
    })
    .await;
    assert!(
        st["message"].as_str().unwrap().contains("aborted at 10 %"),
        "{st:#}"
    );
    let obj = api.get("banner").await.unwrap();
    let ann = obj.metadata.annotations.unwrap_or_default();
    assert!(!ann.contains_key("serin.dev/command"), "{ann:?}");
    assert_eq!(
        ann.get("serin.dev/command-result").map(String::as_str),
        Some("abort: ok")
    );
    let audit = audit_percentages(flags, "new-banner");
    let actions: Vec<&str> = audit.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(actions, ["percentage:10", "percentage:0"], "{audit:?}");

    // Nothing left to abort: refused, with the reason, and a non-zero exit.
    let (ok, text) = serin_op(&kc, &ns, "abort", "banner").await;
    assert!(!ok, "{text}");
    assert!(text.contains("Aborted: nothing to abort"), "{text}");
    // An unknown FlagRollout: refused before anything is written.
    let (ok, text) = serin_op(&kc, &ns, "abort", "nope").await;
    assert!(!ok && text.contains("no FlagRollout \"nope\""), "{text}");

    // Retry starts over from the first step.
    let (ok, text) = serin_op(&kc, &ns, "retry", "banner").await;
    assert!(ok, "{text}");
    let again = status_until(&api, "banner", "started over at 10 %", &log, |st| {
        st["phase"] == "Progressing"
            && st["percentage"] == 10
            && st["startedAtMs"] != first["startedAtMs"]
    })
    .await;
    assert_eq!(again["currentStep"], 1, "{again:#}");
    let audit = audit_percentages(flags, "new-banner");
    let actions: Vec<&str> = audit.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["percentage:10", "percentage:0", "percentage:10"],
        "{audit:?}"
    );

    // The abort was notified, with the FlagRollout's name and why.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = hooked.lock().unwrap().clone();
        if let Some(n) = got
            .iter()
            .find(|n| n.to_string().contains("aborted at 10 %"))
        {
            assert!(n.to_string().contains("banner"), "{n}");
            assert!(n.to_string().contains("on-rollout-aborted"), "{n}");
            break;
        }
        assert!(Instant::now() < deadline, "notifications: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each step and each command is a Kubernetes Event on the FlagRollout.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let n = event_counts(&client, &ns, "banner").await;
        let count = |r: &str| n.get(r).copied().unwrap_or(0);
        // 10 % twice (before the abort and after the retry), abort and
        // retry applied, the second abort refused.
        if count("PercentageSet") >= 2
            && count("CommandApplied") >= 2
            && count("Aborted") >= 1
            && count("CommandRejected") >= 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "events: {n:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_server_over_tls_is_written_to_with_the_given_ca() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    install_crd(&kc);
    let ns = namespace(&client, "kfr-tls").await;
    let d = dir("tls");
    let log = d.0.join("controller.log");
    // The flag, made through a plain server on the same store first (this
    // test's HTTP helper speaks no TLS).
    {
        let (_plain, addr) = flag_server(&d.0);
        put_flag(addr, "new-tls");
    }
    // A flag server whose certificate only a private CA vouches for.
    let pki = serin_tls::testing::TestPki::new(&d.0, "flags", &["localhost", "127.0.0.1"]);
    let (_flags, flags) = flag_server_with(
        &d.0,
        &[
            "--server-cert-path",
            pki.cert.to_str().unwrap(),
            "--server-key-path",
            pki.key.to_str().unwrap(),
        ],
    );
    let url = format!("https://{flags}");
    let api = flag_rollouts(&client, &ns);
    let fr = json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "FlagRollout",
        "metadata": {"name": "tls"},
        "spec": {"flag": "new-tls", "steps": [10], "interval": "1s"},
    });
    create(&api, fr).await;
    // Without the CA the certificate is not trusted: the status says why
    // and the controller keeps retrying.
    let untrusted = controller(&kc, &ns, &url, &log);
    let st = status_until(&api, "tls", "a TLS error in the status", &log, |st| {
        st["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot set 10 % yet"))
    })
    .await;
    assert_eq!(st["phase"], "Progressing", "{st:#}");
    let why = st["message"].as_str().unwrap_or_default();
    assert!(why.contains("certificate"), "the TLS error's cause: {why}");
    drop(untrusted);
    // With it, the flag reaches 10 % and the rollout completes.
    let ca = pki.ca.to_str().unwrap();
    let _ctl = controller_with(&kc, &ns, &url, &log, &["--flag-server-ca", ca]);
    let st = status_until(&api, "tls", "Completed over TLS", &log, |st| {
        st["phase"] == "Completed"
    })
    .await;
    assert_eq!(st["percentage"], 10, "{st:#}");
    // A CA file that is not one: refused at start, with its name.
    let out = Command::new(SERIN)
        .args([
            "controller",
            "--kubeconfig",
            &kc,
            "-n",
            &ns,
            "--flag-server",
            &url,
        ])
        .args(["--flag-server-ca", log.to_str().unwrap()])
        .env("SERIN_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flag-server-ca"), "{err}");
}
