//! The web dashboard in a real headless Chromium (driven over WebDriver by
//! chromedriver) against a real `serin up` with real replicas and real
//! traffic: sign-in and roles, promoting a paused canary from the page, a bad
//! canary's analysis chart, a flag percentage set on the page and served by
//! OFREP, and 1,000 rollouts rendered and filtered.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`, which
//! `scripts/test` installs when missing. Screenshots (light and dark) are
//! written under `target/tmp/dashboard/`.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

// ---- the browser -------------------------------------------------------------

/// chromedriver (killed when dropped) and one Chromium session.
struct Browser {
    client: Client,
    driver: Child,
    _profile: TempDir,
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A killed chromedriver leaves its Chromium running (a test that
        // panicked never closed the session): end the processes that use
        // this session's own profile folder, by pid.
        // The whole argument, NUL-terminated as in /proc/PID/cmdline.
        let marker = format!("--user-data-dir={}\0", self._profile.0.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        path.split(':')
            .map(|d| Path::new(d).join(n))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    async fn start(name: &str) -> Browser {
        let driver = which(&["chromedriver"]).expect(
            "chromedriver not found: install the Debian packages chromium and chromium-driver \
             (scripts/test does)",
        );
        let chrome = which(&["chromium", "chromium-browser", "google-chrome"])
            .expect("chromium not found: install the Debian package chromium (scripts/test does)");
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "serin-dash-chromedriver-{name}-{}.log",
            std::process::id()
        ));
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = TempDir(
            std::env::temp_dir().join(format!("serin-dash-profile-{name}-{}", std::process::id())),
        );
        let _ = std::fs::remove_dir_all(&profile.0);
        std::fs::create_dir_all(&profile.0).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        poll("chromedriver", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` every 100 ms until it returns something truthy.
    async fn until(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self
                    .js("return document.body.innerText")
                    .await
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(3000)
                    .collect::<String>();
                panic!("timed out after {limit:?} waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `css`; found again if the page re-rendered it
    /// between finding and clicking (the rollout page refreshes every 3 s).
    async fn click(&self, css: &str) {
        for attempt in 0.. {
            let el = self
                .client
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element {css}: {e}"));
            match el.click().await {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.to_string().contains("stale element") => continue,
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    }

    /// Types `text` into the element `css` (cleared first); found again if
    /// the page re-rendered it meanwhile, as [`Self::click`] does (CI run
    /// 2 of stop 24 failed with a stale `#kill-tag`).
    async fn type_into(&self, css: &str, text: &str) {
        for attempt in 0.. {
            let el = self
                .client
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no element {css}: {e}"));
            el.clear().await.ok();
            match el.send_keys(text).await {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.to_string().contains("stale element") => continue,
                Err(e) => panic!("type into {css}: {e}"),
            }
        }
    }

    /// Opens the dashboard and signs in with `token` through the form.
    async fn sign_in(&self, api: SocketAddr, token: &str) {
        self.client
            .goto(&format!("http://{api}/"))
            .await
            .expect("the dashboard loads");
        self.until(
            "the sign-in form",
            Duration::from_secs(20),
            "return !document.querySelector('#signin').hidden",
        )
        .await;
        self.type_into("#token", token).await;
        self.click("#signin-form button[type=submit]").await;
        self.until(
            "signed in",
            Duration::from_secs(20),
            "return document.querySelector('#who-role') && document.querySelector('#who-role').textContent",
        )
        .await;
    }

    async fn sign_out(&self) {
        self.click("#signout").await;
        self.until(
            "signed out",
            Duration::from_secs(10),
            "return !document.querySelector('#signin').hidden",
        )
        .await;
    }

    /// Goes to `#/…` inside the app.
    async fn open(&self, hash: &str) {
        self.js(&format!("location.hash = {}; return true", json!(hash)))
            .await;
    }

    /// Clicks the confirmation dialog's Confirm after checking what it says.
    async fn confirm(&self, expect: &str) {
        let text = self
            .until(
                "the confirmation dialog",
                Duration::from_secs(10),
                "const d = document.querySelector('#confirm'); return d.open && d.textContent",
            )
            .await;
        assert!(
            text.as_str().unwrap_or("").contains(expect),
            "the confirmation says what will happen: {text}"
        );
        self.click("#confirm-ok").await;
    }

    /// Writes a PNG screenshot to target/tmp/dashboard/NAME.png, in the
    /// light theme and then in the dark one (NAME-dark.png).
    async fn screenshots(&self, name: &str) {
        self.screenshots_at(name, None).await;
    }

    /// [`Browser::screenshots`] scrolled to the element `css` first.
    async fn screenshots_at(&self, name: &str, css: Option<&str>) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
        std::fs::create_dir_all(&dir).unwrap();
        for theme in ["light", "dark"] {
            self.js(&format!(
                "document.documentElement.dataset.theme = '{theme}'; return true"
            ))
            .await;
            // Two animation frames: the new colours are painted.
            self.client
                .execute_async(
                    "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
                    vec![],
                )
                .await
                .ok();
            // The whole page (up to 2,400 px) in one picture, from the top or
            // from the element `css`.
            let height = self
                .js("return document.documentElement.scrollHeight")
                .await
                .as_u64()
                .unwrap_or(1000)
                .clamp(700, 2400);
            self.client
                .set_window_size(1400, u32::try_from(height).unwrap_or(2400) + 140)
                .await
                .ok();
            if let Some(css) = css {
                self.js(&format!(
                    "document.querySelector({}).scrollIntoView(); return true",
                    json!(css)
                ))
                .await;
            }
            let png = self.client.screenshot().await.expect("a screenshot");
            self.client.set_window_size(1400, 1000).await.ok();
            assert!(png.starts_with(b"\x89PNG"), "a PNG");
            let file = if theme == "light" {
                dir.join(format!("{name}.png"))
            } else {
                dir.join(format!("{name}-dark.png"))
            };
            std::fs::write(&file, png).unwrap();
            eprintln!("screenshot: {}", file.display());
        }
        self.js("delete document.documentElement.dataset.theme; return true")
            .await;
    }

    /// Ends the session (Chromium exits); chromedriver goes on drop.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

// ---- serin up ----------------------------------------------------------------

fn setup(name: &str, extra_config: &str) -> Dir {
    demo_dir(&format!("dash-{name}"), extra_config)
}

fn up(dir: &Path) -> Up {
    serin_up(dir, "up.log")
}

fn api_addr(dir: &Path) -> SocketAddr {
    poll("endpoints.json", Duration::from_secs(60), || {
        let ep: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("state/endpoints.json")).ok()?)
                .ok()?;
        ep["api"].as_str()?.parse().ok()
    })
}

fn admin_token(dir: &Path) -> String {
    poll("admin.token", Duration::from_secs(30), || {
        std::fs::read_to_string(dir.join("state/admin.token"))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    })
}

fn token(dir: &Path, name: &str, role: &str) -> String {
    let out = Command::new(SERIN)
        .args(["token", name, "--role", role, "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// One HTTP/1.1 request with a bearer token; (status, JSON body).
fn request(api: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("null");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn rollout(api: SocketAddr, token: &str, name: &str) -> Value {
    let (code, v) = request(api, "GET", &format!("/v1/rollouts/{name}"), token, "");
    assert_eq!(code, 200, "{v}");
    v
}

fn listener(api: SocketAddr, token: &str, service: &str) -> SocketAddr {
    poll("the service listener", Duration::from_secs(30), || {
        let (_, v) = request(api, "GET", "/v1/services", token, "");
        let addr: SocketAddr = v["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == service)?["listen"]
            .as_str()?
            .parse()
            .ok()?;
        (addr.port() != 0).then_some(addr)
    })
}

fn canary(name: &str, tag: &str, steps: &str, analysis: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {name}
spec:
  replicas: 2
  strategy:
    canary:
      canaryService: {name}-canary
      stableService: {name}-stable
      abortScaleDownDelaySeconds: 1
      scaleDownDelaySeconds: 1
      trafficRouting:
        istio:
          virtualService:
            name: {name}-vs
{analysis}      steps:
{steps}  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 2
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
  name: {name}-stable
spec:
  selector:
    app: {name}
  ports:
    - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: {name}-canary
spec:
  selector:
    app: {name}
  ports:
    - port: 80
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: {name}-vs
spec:
  hosts: [{name}.local]
  http:
    - route:
        - destination:
            host: {name}-stable
          weight: 100
        - destination:
            host: {name}-canary
          weight: 0
"#
    )
}

const PAUSE_STEPS: &str =
    "        - setWeight: 50\n        - pause: {}\n        - setWeight: 100\n";

fn write(dir: &Path, file: &str, text: &str) {
    let tmp = dir.join("manifests").join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, dir.join("manifests").join(file)).unwrap();
}

fn healthy_stable(v: &Value) -> Option<String> {
    (v["status"]["phase"] == "Healthy" && v["status"]["stable_hash"] == v["desiredHash"])
        .then(|| v["status"]["stable_hash"].as_str().map(str::to_string))
        .flatten()
}

// ---- the tests -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_everything_but_cannot_act_and_a_deployer_promotes_a_paused_canary() {
    let dir = setup("roles", "");
    let d = &dir.0;
    write(d, "shop.yaml", &canary("shop", "blue", PAUSE_STEPS, ""));
    let _up = up(d);
    let api = api_addr(d);
    let admin = admin_token(d);
    let blue = poll("shop Healthy on blue", Duration::from_secs(90), || {
        healthy_stable(&rollout(api, &admin, "shop"))
    });
    write(d, "shop.yaml", &canary("shop", "green", PAUSE_STEPS, ""));
    poll(
        "shop paused at its manual gate",
        Duration::from_secs(90),
        || {
            let v = rollout(api, &admin, "shop");
            (v["awaitingPromotion"] == "pause step").then_some(())
        },
    );
    let viewer = token(d, "vera", "viewer");
    let deployer = token(d, "dora", "deployer");

    let b = Browser::start("roles").await;
    // The viewer signs in: name and role shown, the token nowhere in the page.
    b.sign_in(api, &viewer).await;
    let who = b
        .js("return document.querySelector('#who').textContent")
        .await;
    assert!(
        who.as_str().unwrap_or("").contains("vera")
            && who.as_str().unwrap_or("").contains("viewer"),
        "{who}"
    );
    let html = b
        .js("return document.documentElement.outerHTML + location.href")
        .await;
    assert!(
        !html.as_str().unwrap_or("").contains(&viewer),
        "the token is in no URL and no HTML"
    );
    assert!(
        !b.js("return document.cookie")
            .await
            .as_str()
            .unwrap_or("x")
            .contains("srn_"),
        "and in no cookie"
    );
    // The overview lists the rollout, waiting at its gate, under "needs attention".
    b.until(
        "shop in the overview",
        Duration::from_secs(20),
        "const r = document.querySelector('tr[data-rollout=shop]'); return r && r.textContent.includes('waiting: pause step') && r.dataset.phase",
    )
    .await;
    b.click("#f-attn").await;
    let count = b
        .until(
            "the attention filter",
            Duration::from_secs(10),
            "const c = document.querySelector('#count').textContent; return c.startsWith('1 of') && c",
        )
        .await;
    assert_eq!(count, "1 of 1 rollouts");
    b.screenshots("overview-viewer").await;
    // The rollout page: steps with the pause current, revisions with images,
    // and every action disabled for a viewer.
    b.click("tr[data-rollout=shop] a").await;
    b.until(
        "the rollout page",
        Duration::from_secs(20),
        "const c = document.querySelector('.steps li.current'); return c && c.textContent.includes('pause (until promoted)')",
    )
    .await;
    let page = b
        .js("return document.querySelector('#view').innerText")
        .await;
    let page = page.as_str().unwrap_or("");
    assert!(
        page.contains("argoproj/rollouts-demo:green")
            && page.contains("argoproj/rollouts-demo:blue"),
        "both revisions' images: {page}"
    );
    let enabled = b
        .js("return Array.from(document.querySelectorAll('button[data-op], button[data-undo]')).filter(b => !b.disabled).map(b => b.textContent)")
        .await;
    assert_eq!(enabled, json!([]), "a viewer has no enabled action");
    let disabled = b
        .js("return document.querySelectorAll('button[data-op][disabled]').length")
        .await;
    assert_eq!(
        disabled,
        json!(9),
        "all nine operations (with the emergency rollback) are shown, disabled"
    );
    // And the API refuses the viewer anyway, whatever the page does.
    let refused = b
        .client
        .execute_async(
            "const done = arguments[0]; fetch('/v1/rollouts/shop/promote', {method: 'POST', headers: {Authorization: 'Bearer ' + sessionStorage.getItem('serin.token'), 'Content-Type': 'application/json'}, body: '{}'}).then(r => done(r.status), e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused, json!(403));
    b.screenshots("rollout-paused-viewer").await;
    assert_eq!(
        rollout(api, &admin, "shop")["awaitingPromotion"],
        "pause step",
        "nothing moved"
    );

    // The deployer promotes from the page; the rollout moves on to the new revision.
    b.sign_out().await;
    b.sign_in(api, &deployer).await;
    b.open("#/r/shop").await;
    b.until(
        "enabled actions",
        Duration::from_secs(20),
        "const p = document.querySelector('button[data-op=promote]'); return p && !p.disabled",
    )
    .await;
    b.click("button[data-op=promote]").await;
    b.confirm("next step").await;
    let green = poll(
        "shop Healthy on green after the promotion",
        Duration::from_secs(90),
        || healthy_stable(&rollout(api, &admin, "shop")),
    );
    assert_ne!(green, blue);
    // The page follows without a reload (SSE and refresh).
    b.until(
        "the page shows Healthy",
        Duration::from_secs(20),
        "const h = document.querySelector('h1 .badge'); return h && h.textContent === 'Healthy'",
    )
    .await;
    let events = b
        .js("return document.querySelector('#view').innerText")
        .await;
    assert!(
        events.as_str().unwrap_or("").contains("RolloutCompleted")
            || events.as_str().unwrap_or("").contains("StepCompleted"),
        "events listed: {events}"
    );
    b.screenshots("rollout-promoted-deployer").await;
    // History: the seed's before/after table from the recorded deployments.
    b.open("#/history").await;
    let report = b
        .until(
            "the report",
            Duration::from_secs(20),
            "const r = document.querySelector('#report'); return r && r.textContent",
        )
        .await;
    let (code, api_report) = request(api, "GET", "/v1/report?since=30d", &deployer, "");
    assert_eq!(code, 200, "{api_report}");
    assert_eq!(
        report, api_report["text"],
        "the page shows the API's report"
    );
    b.screenshots("history").await;
    assert_eq!(
        b.js("return document.querySelector('#nav-tokens').hidden")
            .await,
        true,
        "only an admin sees Tokens"
    );

    // The admin manages tokens from the page: names and roles, never values;
    // a new token's value is shown once.
    b.sign_out().await;
    b.sign_in(api, &admin).await;
    b.open("#/tokens").await;
    b.until(
        "the token list",
        Duration::from_secs(20),
        "const t = document.querySelector('#view').innerText; return t.includes('vera') && t.includes('dora')",
    )
    .await;
    b.type_into("#nt-name", "ci-bot").await;
    b.click("#newtoken button[type=submit]").await;
    let shown = b
        .until(
            "the new token",
            Duration::from_secs(20),
            "const o = document.querySelector('#nt-out').textContent; return o.includes('srn_') && o",
        )
        .await;
    let new_token = shown
        .as_str()
        .unwrap_or("")
        .split_whitespace()
        .find(|w| w.starts_with("srn_"))
        .unwrap_or("")
        .to_string();
    let (code, me) = request(api, "GET", "/v1/whoami", &new_token, "");
    assert_eq!(code, 200, "{me}");
    assert_eq!(
        (me["name"].as_str(), me["role"].as_str()),
        (Some("ci-bot"), Some("viewer"))
    );
    b.close().await;
}

/// Whether the rollout has a pause condition with `reason`.
fn paused_for(v: &Value, reason: &str) -> bool {
    v["status"]["pause_conditions"]
        .as_array()
        .is_some_and(|p| p.iter().any(|c| c["reason"] == reason))
}

/// Names of the pods of revision `hash`.
fn pod_names(v: &Value, hash: &str) -> Vec<String> {
    let mut names: Vec<String> = v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["hash"] == hash)
        .flat_map(|r| r["pods"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn ready_pods(v: &Value, hash: &str) -> usize {
    v["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["hash"] == hash)
        .flat_map(|r| r["pods"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["ready"] == true)
        .count()
}

impl Browser {
    /// Presses and releases one key in whatever has the focus.
    async fn press(&self, key: fantoccini::key::Key) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let k: char = key.into();
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
        self.client
            .perform_actions(keys)
            .await
            .expect("a key press");
    }

    /// Clicks the action `op` on the rollout page and confirms it.
    async fn act(&self, op: &str, expect: &str) {
        self.until(
            &format!("the {op} button enabled"),
            Duration::from_secs(20),
            &format!("const b = document.querySelector('button[data-op=\"{op}\"]'); return b && !b.disabled"),
        )
        .await;
        self.click(&format!("button[data-op=\"{op}\"]")).await;
        self.confirm(expect).await;
    }

    /// The newest toast, once one contains `part`.
    async fn toast(&self, part: &str) -> String {
        let v = self
            .until(
                &format!("a message saying {part:?}"),
                Duration::from_secs(20),
                &format!(
                    "const t = Array.from(document.querySelectorAll('#toast div')).map(d => d.textContent).filter(t => t.includes({})); return t.length && t[t.length - 1]",
                    json!(part)
                ),
            )
            .await;
        v.as_str().unwrap_or("").to_string()
    }

    /// Form controls without an accessible name, and text whose contrast
    /// with its background is under WCAG AA (4.5:1; 3:1 for large text),
    /// in the theme in force. Disabled controls are exempt (WCAG 1.4.3).
    async fn accessibility_problems(&self) -> Value {
        self.js(A11Y_JS).await
    }
}

/// See [`Browser::accessibility_problems`].
const A11Y_JS: &str = r#"
const named = (e) => (e.labels && Array.from(e.labels).some((l) => l.textContent.trim())) ||
  (e.getAttribute('aria-label') || '').trim() || (e.tagName === 'BUTTON' && e.textContent.trim());
const visible = (e) => !e.closest('[hidden]') && e.getClientRects().length > 0;
const unlabelled = Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter((e) => visible(e) && e.type !== 'hidden' && !named(e)).map((e) => e.outerHTML.slice(0, 120));
const rgb = (c) => { const m = c.match(/[\d.]+/g).map(Number); return { r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1 }; };
const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
const over = (top, under) => ({ r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a), b: top.b * top.a + under.b * (1 - top.a), a: 1 });
const background = (e) => {
  const layers = [];
  for (let n = e; n; n = n.parentElement) { const c = rgb(getComputedStyle(n).backgroundColor); if (c.a > 0) { layers.push(c); if (c.a === 1) break; } }
  let bg = { r: 255, g: 255, b: 255, a: 1 };
  for (const l of layers.reverse()) bg = over(l, bg);
  return bg;
};
const lowContrast = [];
for (const e of document.querySelectorAll('body *')) {
  if (!visible(e) || e.closest('svg') || e.closest(':disabled') || e.matches('.skip:not(:focus)')) continue;
  const text = Array.from(e.childNodes).filter((n) => n.nodeType === 3).map((n) => n.textContent).join('').trim();
  if (!text) continue;
  const cs = getComputedStyle(e);
  const bg = background(e);
  const fg = over(rgb(cs.color), bg);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
  const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  if (ratio < need) lowContrast.push(text.slice(0, 40) + ' (' + e.tagName.toLowerCase() + '.' + e.className + '): ' + ratio.toFixed(2));
}
return { unlabelled, lowContrast: Array.from(new Set(lowContrast)).slice(0, 20) };
"#;

/// Checks labels and contrast on the current page in the light and the
/// dark theme.
async fn assert_accessible(b: &Browser, page: &str) {
    for theme in ["light", "dark"] {
        b.js(&format!(
            "document.documentElement.dataset.theme = '{theme}'; return true"
        ))
        .await;
        let p = b.accessibility_problems().await;
        assert_eq!(
            p,
            json!({"unlabelled": [], "lowContrast": []}),
            "{page} in the {theme} theme"
        );
    }
    b.js("delete document.documentElement.dataset.theme; return true")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rollout_action_on_the_page_takes_effect_and_a_refusal_is_shown() {
    use fantoccini::key::Key;
    let dir = setup("actions", "");
    let d = &dir.0;
    write(d, "shop.yaml", &canary("shop", "blue", PAUSE_STEPS, ""));
    let _up = up(d);
    let api = api_addr(d);
    let admin = admin_token(d);
    let blue = poll("shop Healthy on blue", Duration::from_secs(90), || {
        healthy_stable(&rollout(api, &admin, "shop"))
    });
    write(d, "shop.yaml", &canary("shop", "green", PAUSE_STEPS, ""));
    let at_gate = |why: &str| {
        poll(why, Duration::from_secs(90), || {
            let v = rollout(api, &admin, "shop");
            (v["awaitingPromotion"] == "pause step").then_some(v)
        })
    };
    let green = at_gate("shop paused at its manual gate")["desiredHash"]
        .as_str()
        .unwrap()
        .to_string();
    let deployer = token(d, "dina", "deployer");
    let b = Browser::start("actions").await;
    b.sign_in(api, &deployer).await;
    b.open("#/r/shop").await;
    b.until(
        "the rollout page",
        Duration::from_secs(20),
        "const c = document.querySelector('.steps li.current'); return c && c.textContent.includes('pause (until promoted)')",
    )
    .await;

    // Keyboard only: the skip link is the first stop, shows itself, and
    // moves the focus to the content without leaving the page.
    // A fresh load (the token stays in the tab) starts Tab at the top.
    b.client.refresh().await.expect("a reload");
    b.until(
        "the rollout page after the reload",
        Duration::from_secs(20),
        "return !!document.querySelector('.steps li.current')",
    )
    .await;
    b.press(Key::Tab).await;
    let skip = b
        .js("const e = document.activeElement; const r = e.getBoundingClientRect(); return {cls: e.className, text: e.textContent, onScreen: r.left >= 0 && r.top >= 0 && r.width > 0}")
        .await;
    assert_eq!(
        skip,
        json!({"cls": "skip", "text": "Skip to content", "onScreen": true}),
        "the first Tab stop"
    );
    b.press(Key::Enter).await;
    let after = b
        .until(
            "the focus in the content",
            Duration::from_secs(5),
            "return document.activeElement.id === 'main' && location.hash",
        )
        .await;
    assert_eq!(after, "#/r/shop", "the skip link stays on the rollout page");
    assert!(
        b.js("return !!document.querySelector('.steps li.current')")
            .await
            == true,
        "the rollout page is still shown"
    );
    assert_accessible(&b, "the rollout page").await;

    // Pause, by keyboard: Enter opens the confirmation with the focus on
    // Cancel; Escape closes it and nothing happens; Enter, Tab, Enter confirms.
    b.js("document.querySelector('button[data-op=pause]').focus(); return true")
        .await;
    b.press(Key::Enter).await;
    b.until(
        "the confirmation, Cancel focused",
        Duration::from_secs(10),
        "return document.querySelector('#confirm').open && document.activeElement.id === 'confirm-cancel'",
    )
    .await;
    b.press(Key::Escape).await;
    b.until(
        "the confirmation closed",
        Duration::from_secs(10),
        "return !document.querySelector('#confirm').open",
    )
    .await;
    assert!(
        !paused_for(&rollout(api, &admin, "shop"), "PausedByUser"),
        "Escape cancels"
    );
    b.js("document.querySelector('button[data-op=pause]').focus(); return true")
        .await;
    b.press(Key::Enter).await;
    b.until(
        "the confirmation",
        Duration::from_secs(10),
        "return document.querySelector('#confirm').open && document.activeElement.id === 'confirm-cancel'",
    )
    .await;
    b.press(Key::Tab).await;
    b.until(
        "Tab to move the focus to Confirm",
        Duration::from_secs(10),
        "return document.querySelector('#confirm').open && document.activeElement.id === 'confirm-ok'",
    )
    .await;
    b.press(Key::Enter).await;
    poll("shop paused by the user", Duration::from_secs(30), || {
        paused_for(&rollout(api, &admin, "shop"), "PausedByUser").then_some(())
    });
    b.toast("Pause: requested").await;

    // Resume: the user's pause goes; the manual gate stays.
    b.act("resume", "Continues a rollout paused by Pause").await;
    poll("the user's pause lifted", Duration::from_secs(30), || {
        let v = rollout(api, &admin, "shop");
        (!paused_for(&v, "PausedByUser") && v["awaitingPromotion"] == "pause step").then_some(())
    });

    // Abort: all traffic back on blue.
    b.act("abort", "Sends all traffic back to the stable revision")
        .await;
    poll("shop aborted", Duration::from_secs(30), || {
        let v = rollout(api, &admin, "shop");
        (v["status"]["abort"] == true
            && v["status"]["phase"] == "Degraded"
            && v["status"]["canary_weight"] == 0)
            .then_some(())
    });
    b.until(
        "the page shows Degraded",
        Duration::from_secs(20),
        "const h = document.querySelector('h1 .badge'); return h && h.textContent === 'Degraded'",
    )
    .await;

    // Promote an aborted rollout: the API says 409 and the page says why.
    b.act("promote", "next step").await;
    let refused = b.toast("Promote refused").await;
    assert!(
        refused.contains("rollout is aborted: use retry"),
        "the 409's reason is shown: {refused}"
    );
    let (code, _) = request(api, "POST", "/v1/rollouts/shop/promote", &deployer, "{}");
    assert_eq!(code, 409, "the page showed the API's refusal");
    assert_eq!(rollout(api, &admin, "shop")["status"]["abort"], true);
    b.screenshots("rollout-promote-refused").await;

    // Retry: from the first step again, up to the gate.
    b.act("retry", "Starts an aborted rollout again").await;
    let v = at_gate("shop back at its gate after Retry");
    assert_eq!(v["status"]["abort"], false);
    assert_eq!(v["status"]["current_hash"], green.as_str());

    // Promote full: green takes everything and becomes stable.
    b.act("promote-full", "Skips all remaining steps").await;
    poll("shop Healthy on green", Duration::from_secs(90), || {
        healthy_stable(&rollout(api, &admin, "shop")).filter(|h| *h == green)
    });

    // Restart: every pod of green replaced, green still stable.
    let before = poll("two ready green pods", Duration::from_secs(60), || {
        let v = rollout(api, &admin, "shop");
        (ready_pods(&v, &green) == 2 && pod_names(&v, &green).len() == 2)
            .then(|| pod_names(&v, &green))
    });
    b.act("restart", "Replaces every pod").await;
    poll("every green pod replaced", Duration::from_secs(120), || {
        let v = rollout(api, &admin, "shop");
        let now = pod_names(&v, &green);
        (ready_pods(&v, &green) == 2
            && now.len() == 2
            && now.iter().all(|p| !before.contains(p))
            && v["status"]["restarted_at"].is_u64())
        .then_some(())
    });
    assert_eq!(
        healthy_stable(&rollout(api, &admin, "shop")).as_deref(),
        Some(green.as_str())
    );

    // Undo after the restart: blue is rolled out again (a canary through the
    // steps, since blue is no longer stable), and once promoted serves.
    // Blue's pods are long gone by now (scaleDownDelaySeconds: 1): undo
    // reaches a revision that only the record keeps, as Argo's does.
    poll("blue's pods gone", Duration::from_secs(60), || {
        pod_names(&rollout(api, &admin, "shop"), &blue)
            .is_empty()
            .then_some(())
    });
    b.act("undo", "Rolls back to the previous revision").await;
    let v = at_gate("the undo's canary of blue at the gate");
    assert_eq!(
        v["status"]["current_hash"],
        blue.as_str(),
        "undo rolls blue out: {v}"
    );
    b.act("promote", "next step").await;
    poll(
        "shop Healthy on blue again",
        Duration::from_secs(90),
        || {
            let v = rollout(api, &admin, "shop");
            (v["status"]["phase"] == "Healthy"
                && v["status"]["stable_hash"] == blue.as_str()
                && ready_pods(&v, &blue) == 2)
                .then_some(())
        },
    );
    b.until(
        "the page shows blue stable",
        Duration::from_secs(20),
        &format!(
            "const r = Array.from(document.querySelectorAll('tr[data-revision]')).find(r => r.textContent.includes('stable')); return r && r.textContent.includes('{}')",
            &blue[..blue.len().min(10)]
        ),
    )
    .await;
    b.screenshots("rollout-after-undo").await;
    b.close().await;
}

const BAD_ANALYSIS: &str = r#"      analysis:
        templates:
          - templateName: error-rate
        args:
          - name: canary-hash
            valueFrom:
              podTemplateHashValue: Latest
          - name: stable-hash
            valueFrom:
              podTemplateHashValue: Stable
"#;

const ERROR_RATE_TEMPLATE: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-rate
spec:
  args:
    - name: canary-hash
    - name: stable-hash
  metrics:
    - name: error-rate
      interval: 1s
      failureCondition: len(result) > 0 && result[0] > 0.05
      failureLimit: 1
      provider:
        builtin:
          metric: error-rate
          revision: "{{args.canary-hash}}"
          window: 2s
          minRequests: 5
    # The sequential judge beside it, charted with its bounds; a high
    # failureLimit leaves the abort to error-rate (the test checks its points).
    - name: judge-error-rate
      interval: 1s
      failureLimit: 100
      provider:
        builtin:
          metric: judge-error-rate
          revision: "{{args.canary-hash}}"
          baseline: "{{args.stable-hash}}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_canarys_analysis_chart_shows_the_failing_points_and_the_abort() {
    let dir = setup("bad", "");
    let d = &dir.0;
    let steps =
        "        - setWeight: 50\n        - pause: {duration: 30s}\n        - setWeight: 100\n";
    std::fs::write(d.join("manifests/template.yaml"), ERROR_RATE_TEMPLATE).unwrap();
    write(d, "web.yaml", &canary("web", "blue", steps, BAD_ANALYSIS));
    let _up = up(d);
    let api = api_addr(d);
    let admin = admin_token(d);
    poll("web Healthy on blue", Duration::from_secs(90), || {
        healthy_stable(&rollout(api, &admin, "web"))
    });
    let load = load(listener(api, &admin, "web-vs"));
    // A version that fails half its requests: the builtin error-rate analysis aborts it.
    write(
        d,
        "web.yaml",
        &canary("web", "bad-red", steps, BAD_ANALYSIS),
    );
    let aborted = poll("the analysis aborts web", Duration::from_secs(90), || {
        let v = rollout(api, &admin, "web");
        (v["status"]["abort"] == true && v["status"]["phase"] == "Degraded").then_some(v)
    });
    let (ok, failed) = load.finish();
    assert!(
        ok > 0,
        "the load reached the service ({ok} ok, {failed} failed)"
    );
    let failed_values: Vec<f64> = aborted["analysisRuns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["metricResults"].as_array().cloned().unwrap_or_default())
        .flat_map(|m| m["measurements"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["phase"] == "Failed")
        .filter_map(|m| m["value"][0].as_f64().or_else(|| m["value"].as_f64()))
        .collect();
    assert!(!failed_values.is_empty(), "failed measurements: {aborted}");

    let viewer = token(d, "vic", "viewer");
    let b = Browser::start("bad").await;
    b.sign_in(api, &viewer).await;
    b.open("#/r/web").await;
    // Every failed measurement is a red point at its measured value, above the
    // failure threshold drawn from the template's condition, and the abort is marked.
    let points = b
        .until(
            "failed points in the chart",
            Duration::from_secs(20),
            "const p = Array.from(document.querySelectorAll('.chart[data-metric=\"error-rate\"] circle.pt.Failed')).map(c => Number(c.dataset.value)); return p.length && p",
        )
        .await;
    let points: Vec<f64> = points
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    for v in &failed_values {
        assert!(
            points.iter().any(|p| (p - v).abs() < 1e-9),
            "measured {v} is charted: {points:?}"
        );
    }
    assert!(
        points.iter().all(|p| *p > 0.05),
        "failing points are above 5 %"
    );
    let chart = b
        .js("const c = document.querySelector('.chart[data-metric=\"error-rate\"]'); return {abort: !!c.querySelector('line.abort'), thr: !!c.querySelector('line.thr'), text: c.innerText}")
        .await;
    assert_eq!(chart["abort"], true, "the abort is marked: {chart}");
    assert_eq!(
        chart["thr"], true,
        "the failure threshold is drawn: {chart}"
    );
    let text = chart["text"].as_str().unwrap_or("");
    assert!(
        text.contains("result[0] > 0.05")
            && text.contains("failureLimit 1")
            && text.contains("builtin"),
        "condition, limit and provider shown: {text}"
    );
    let phase = b
        .js("return document.querySelector('h1 .badge').textContent")
        .await;
    assert_eq!(phase, "Degraded");
    // The judge's measurements: each point with its confidence bounds (the
    // values the API holds) and the threshold it is compared with.
    let judged: Vec<Value> = rollout(api, &admin, "web")["analysisRuns"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["metricResults"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["name"] == "judge-error-rate")
        .flat_map(|m| m["measurements"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["value"]["estimate"].is_number())
        .map(|m| m["value"].clone())
        .collect();
    assert!(
        !judged.is_empty(),
        "judge measurements with values: {aborted}"
    );
    b.until(
        "every judge value in the chart",
        Duration::from_secs(20),
        &format!("return document.querySelectorAll('.chart[data-metric=\"judge-error-rate\"] circle.pt').length === {}", judged.len()),
    )
    .await;
    let drawn = b
        .js("const c = document.querySelector('.chart[data-metric=\"judge-error-rate\"]'); return {points: Array.from(c.querySelectorAll('circle.pt')).map(p => Number(p.dataset.value)), bounds: Array.from(c.querySelectorAll('line.bound')).map(l => [l.dataset.lower === '' ? null : Number(l.dataset.lower), l.dataset.upper === '' ? null : Number(l.dataset.upper)]), threshold: !!c.querySelector('line.thr.judge'), text: c.innerText}")
        .await;
    let points = drawn["points"].as_array().cloned().unwrap_or_default();
    let bounds = drawn["bounds"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        points.len(),
        judged.len(),
        "every judge value charted: {drawn}"
    );
    for (i, m) in judged.iter().enumerate() {
        assert_eq!(points[i].as_f64(), m["estimate"].as_f64(), "{drawn}");
        // Numbers compared as f64 (a bound of 0 comes back from the page as
        // an integer); a missing (non-finite) bound is null on both sides.
        let (lo, hi) = (bounds[i][0].as_f64(), bounds[i][1].as_f64());
        assert_eq!(
            (lo, hi),
            (m["lowerBound"].as_f64(), m["upperBound"].as_f64()),
            "{drawn}"
        );
    }
    assert_eq!(
        drawn["threshold"], true,
        "the judge's threshold is drawn: {drawn}"
    );
    let text = drawn["text"].as_str().unwrap_or("");
    assert!(
        text.contains("threshold") && text.contains("lowerBound") && text.contains("canary"),
        "the threshold and the evidence are shown: {text}"
    );
    b.screenshots("analysis-aborted").await;
    b.screenshots_at(
        "analysis-judge",
        Some(".chart[data-metric=\"judge-error-rate\"]"),
    )
    .await;
    b.close().await;
}

const ADMIN_KEY: &str = "dash-flags-admin-key";
const SDK_KEY: &str = "dash-flags-server-key";

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

/// How many of `n` users OFREP serves `true` for `key`.
fn users_on(api: SocketAddr, key: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            let (code, v) = request(
                api,
                "POST",
                &format!("/ofrep/v1/evaluate/flags/{key}"),
                SDK_KEY,
                &format!(r#"{{"context": {{"targetingKey": "user-{i}"}}}}"#),
            );
            assert_eq!(code, 200, "{v}");
            v["value"] == Value::Bool(true)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_percentage_set_on_the_page_is_what_ofrep_serves() {
    let dir = setup("flags", "");
    let d = &dir.0;
    // A flag store with one admin key (to create the flag as a user would);
    // the page itself uses only the Serin token.
    let keys = d.join("keys.yaml");
    std::fs::write(
        &keys,
        format!(
            "keys:\n  - name: ops\n    kind: admin\n    environment: production\n    sha256: {}\n  - name: app\n    kind: server\n    environment: production\n    sha256: {}\n",
            hash_key(ADMIN_KEY),
            hash_key(SDK_KEY)
        ),
    )
    .unwrap();
    let mut cfg = std::fs::read_to_string(d.join("serin.yaml")).unwrap();
    cfg.push_str(&format!("flags:\n  keys: {}\n", keys.display()));
    std::fs::write(d.join("serin.yaml"), cfg).unwrap();
    let _up = up(d);
    let api = api_addr(d);
    let def = r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "metadata": {"tags": "checkout"}}"#;
    let (code, body) = poll("the flag API", Duration::from_secs(60), || {
        let (c, b) = request(
            api,
            "PUT",
            "/api/v1/environments/production/flags/new-checkout",
            ADMIN_KEY,
            def,
        );
        (c != 0).then_some((c, b))
    });
    assert!(code == 200 || code == 201, "{code} {body}");
    assert_eq!(users_on(api, "new-checkout", 50), 0);
    let viewer = token(d, "val", "viewer");
    let deployer = token(d, "dan", "deployer");

    let b = Browser::start("flags").await;
    // A viewer sees the flag but cannot set it.
    b.sign_in(api, &viewer).await;
    b.open("#/flags").await;
    b.until(
        "the flag row",
        Duration::from_secs(20),
        "return document.querySelector('tr[data-flag=\"new-checkout\"]')",
    )
    .await;
    let disabled = b
        .js("return document.querySelector('button[data-flag-set=\"new-checkout\"]').disabled && document.querySelector('#kill button').disabled")
        .await;
    assert_eq!(disabled, true, "a viewer cannot set flags");
    b.sign_out().await;

    // The deployer sets 100 %: every user gets the flag from OFREP.
    b.sign_in(api, &deployer).await;
    b.open("#/flags").await;
    let set = |pct: u8| {
        let b = &b;
        async move {
            b.type_into("input[data-flag-pct=\"new-checkout\"]", &pct.to_string())
                .await;
            b.click("button[data-flag-set=\"new-checkout\"]").await;
            b.confirm(&format!("{pct} % of targeting keys")).await;
            b.until(
                "the new percentage on the page",
                Duration::from_secs(20),
                &format!(
                    "const s = document.querySelector('tr[data-flag=\"new-checkout\"] [data-pct]'); return s && s.textContent === '{pct}%'"
                ),
            )
            .await;
        }
    };
    set(100).await;
    assert_eq!(users_on(api, "new-checkout", 50), 50, "100 % on the page");
    // 30 %: OFREP serves the split the page wrote (the flag server's own
    // definition says 30/70) to about 30 % of users.
    set(30).await;
    let (code, flag) = request(
        api,
        "GET",
        "/api/v1/environments/production/flags/new-checkout",
        ADMIN_KEY,
        "",
    );
    assert_eq!(code, 200, "{flag}");
    assert_eq!(
        flag.pointer("/flag/targeting/fractional"),
        Some(&json!([["on", 30], ["off", 70]])),
        "{flag}"
    );
    let on = users_on(api, "new-checkout", 400);
    assert!((80..=160).contains(&on), "about 30 % of 400 users: {on}");
    // The audit log on the page names the deployer's token.
    let audit = b
        .until(
            "the audit entry",
            Duration::from_secs(20),
            "const a = document.querySelector('#audit').innerText; return a.includes('serin:dan') && a.includes('percentage:30') && a",
        )
        .await;
    assert!(audit.as_str().unwrap_or("").contains("new-checkout"));
    assert_accessible(&b, "the flags page").await;
    b.screenshots("flags").await;

    // A percentage the API refuses: its 400 is shown, nothing changes.
    b.type_into("input[data-flag-pct=\"new-checkout\"]", "150")
        .await;
    b.click("button[data-flag-set=\"new-checkout\"]").await;
    b.confirm("150 % of targeting keys").await;
    let refused = b.toast("refused").await;
    assert!(
        refused.contains("percentage must be 0..100"),
        "the API's reason is shown: {refused}"
    );
    let (code, _) = request(
        api,
        "PUT",
        "/v1/flags/new-checkout/percentage",
        &deployer,
        r#"{"percentage": 150}"#,
    );
    assert_eq!(code, 400, "the page showed the API's 400");
    let (_, flag) = request(
        api,
        "GET",
        "/api/v1/environments/production/flags/new-checkout",
        ADMIN_KEY,
        "",
    );
    assert_eq!(
        flag.pointer("/flag/targeting/fractional"),
        Some(&json!([["on", 30], ["off", 70]])),
        "still 30 %: {flag}"
    );

    // The kill switch asks first: Cancel changes nothing, Confirm disables
    // every flag tagged "checkout" and OFREP serves the default to everyone.
    b.type_into("#kill-tag", "checkout").await;
    b.click("#kill button").await;
    let text = b
        .until(
            "the kill switch's confirmation",
            Duration::from_secs(10),
            "const d = document.querySelector('#confirm'); return d.open && d.textContent",
        )
        .await;
    assert!(
        text.as_str()
            .unwrap_or("")
            .contains("Every flag tagged \"checkout\" is DISABLED"),
        "{text}"
    );
    b.click("#confirm-cancel").await;
    let on = users_on(api, "new-checkout", 400);
    assert!((80..=160).contains(&on), "Cancel killed nothing: {on}");
    b.type_into("#kill-tag", "checkout").await;
    b.click("#kill button").await;
    b.confirm("Every flag tagged \"checkout\" is DISABLED")
        .await;
    let done = b.toast("disabled:").await;
    assert!(done.contains("new-checkout"), "{done}");
    assert_eq!(
        users_on(api, "new-checkout", 100),
        0,
        "killed: the default (off) for all"
    );
    b.until(
        "the flag shown DISABLED",
        Duration::from_secs(20),
        "const r = document.querySelector('tr[data-flag=\"new-checkout\"]'); return r && r.textContent.includes('DISABLED')",
    )
    .await;
    b.screenshots("flags-killed").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rollouts_render_and_filter() {
    let dir = setup("many", "");
    let d = &dir.0;
    let docs: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i:04}\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: app-{i:04}}}\n  template:\n    metadata:\n      labels: {{app: app-{i:04}}}\n    spec:\n      containers:\n        - name: app\n          image: argoproj/rollouts-demo:blue\n"
            )
        })
        .collect();
    write(d, "many.yaml", &docs.join("---\n"));
    let _up = up(d);
    let api = api_addr(d);
    let admin = admin_token(d);
    // All 1000 are listed at once; they turn Healthy one reconcile at a time.
    poll("1000 rollouts listed", Duration::from_secs(120), || {
        let (code, v) = request(api, "GET", "/v1/rollouts", &admin, "");
        (code == 200 && v.as_array()?.len() == 1000).then_some(())
    });
    // The summary view, filtered and paged by the server; bad parameters are
    // a JSON 400.
    let (code, page) = request(
        api,
        "GET",
        "/v1/rollouts?view=summary&name=APP-099",
        &admin,
        "",
    );
    assert_eq!(code, 200, "{page}");
    assert_eq!(
        (page["total"].as_u64(), page["all"].as_u64()),
        (Some(10), Some(1000)),
        "{page}"
    );
    assert_eq!(page["items"][0]["name"], "app-0990");
    assert_eq!(page["items"][0]["strategy"], "rolling", "{page}");
    let (_, page) = request(
        api,
        "GET",
        "/v1/rollouts?view=summary&offset=990&limit=20",
        &admin,
        "",
    );
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names.len(), 10, "the last page: {page}");
    assert_eq!(names[0], "app-0990");
    for bad in [
        "view=summary&limit=0",
        "view=summary&phase=Running",
        "name=app",
        "view=summary&bogus=1",
    ] {
        let (code, body) = request(api, "GET", &format!("/v1/rollouts?{bad}"), &admin, "");
        assert_eq!(code, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: a JSON error: {body}");
    }

    let viewer = token(d, "many", "viewer");
    let b = Browser::start("many").await;
    b.sign_in(api, &viewer).await;
    let count = b
        .until(
            "the first page",
            Duration::from_secs(60),
            "const c = document.querySelector('#count'); return c && c.textContent.startsWith('1000 of') && c.textContent",
        )
        .await;
    assert_eq!(count, "1000 of 1000 rollouts");
    let first = b
        .js("return {rows: Array.from(document.querySelectorAll('#rollouts tbody tr')).map(r => r.dataset.rollout), info: document.querySelector('#pg-info').textContent}")
        .await;
    let expect: Vec<String> = (0..100).map(|i| format!("app-{i:04}")).collect();
    assert_eq!(
        first["rows"],
        json!(expect),
        "one page of 100, in manifest order"
    );
    assert_eq!(first["info"], "1–100 of 1000");
    // Figures for bench/README.md (printed, never asserted on).
    let fig = b
        .js("const n = performance.getEntriesByType('navigation')[0]; const r = performance.getEntriesByType('resource').filter(e => /\\/ui\\//.test(e.name)); return {firstRenderMs: Number(document.documentElement.dataset.firstRenderMs), domContentLoadedMs: Math.round(n.domContentLoadedEventEnd), pageBytes: n.decodedBodySize + r.reduce((s, e) => s + e.decodedBodySize, 0)}")
        .await;
    eprintln!("dashboard with 1000 rollouts: {fig}");
    assert!(
        fig["pageBytes"].as_f64().unwrap_or(0.0) > 0.0,
        "page weight measured: {fig}"
    );
    // The next page, by its button.
    b.click("#pg-next").await;
    b.until(
        "the second page",
        Duration::from_secs(20),
        "const r = document.querySelector('#rollouts tbody tr'); return r && r.dataset.rollout === 'app-0100' && document.querySelector('#pg-info').textContent === '101–200 of 1000'",
    )
    .await;
    assert_accessible(&b, "the overview").await;
    // A name filter asks the server and starts again at the first page.
    b.type_into("#f-name", "app-099").await;
    let count = b
        .until(
            "the name filter",
            Duration::from_secs(10),
            "const c = document.querySelector('#count').textContent; return c.startsWith('10 of') && c",
        )
        .await;
    assert_eq!(count, "10 of 1000 rollouts", "app-0990 … app-0999");
    let shown = b
        .js("return {rows: Array.from(document.querySelectorAll('#rollouts tbody tr')).map(r => r.dataset.rollout), pager: document.querySelector('.pager').hidden}")
        .await;
    let expect: Vec<String> = (990..1000).map(|i| format!("app-{i:04}")).collect();
    assert_eq!(shown, json!({"rows": expect, "pager": true}));
    // Clear the name filter, then filter by phase: the page holds only
    // Healthy rows, as many as the API counts (up to a page).
    b.js("const s = document.querySelector('#f-name'); s.value = ''; s.dispatchEvent(new Event('input')); return true").await;
    b.until(
        "the name filter cleared",
        Duration::from_secs(10),
        "return document.querySelector('#count').textContent.startsWith('1000 of')",
    )
    .await;
    b.js("const s = document.querySelector('#f-phase'); s.value = 'Healthy'; s.dispatchEvent(new Event('change')); return true").await;
    let check = b
        .until(
            "the phase filter",
            Duration::from_secs(10),
            "const c = document.querySelector('#count').textContent; const rows = Array.from(document.querySelectorAll('#rollouts tbody tr[data-rollout]')); return !c.startsWith('1000 of 1000') || rows.every(r => r.dataset.phase === 'Healthy') ? {count: c, rows: rows.length, allHealthy: rows.every(r => r.querySelector('.phase').textContent === 'Healthy')} : null",
        )
        .await;
    assert_eq!(check["allHealthy"], true, "{check}");
    let healthy: usize = check["count"]
        .as_str()
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert_eq!(
        check["rows"].as_u64(),
        Some(healthy.min(100) as u64),
        "{check}"
    );
    let (_, api_healthy) = request(
        api,
        "GET",
        "/v1/rollouts?view=summary&phase=Healthy&limit=1",
        &admin,
        "",
    );
    assert!(
        api_healthy["total"].as_u64().unwrap_or(0) >= healthy as u64,
        "the page's count is the server's (rollouts only turn Healthy here): {check} {api_healthy}"
    );
    b.js("const s = document.querySelector('#f-phase'); s.value = ''; s.dispatchEvent(new Event('change')); return true").await;
    b.screenshots("overview-1000").await;
    b.close().await;
}

#[test]
fn serin_demo_dashboard_prints_the_url_serves_it_and_runs_until_ctrl_c() {
    use std::io::BufRead;
    let mut demo = Demo(
        Command::new(SERIN)
            .args(["demo", "--dashboard", "--concurrency", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serin demo starts"),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next_line = |what: &str, limit: Duration, f: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line {what} within {limit:?}; output:\n{}",
                    seen.join("\n")
                ),
            }
        }
    };
    let line = next_line("with the dashboard URL", Duration::from_secs(120), &|l| {
        l.contains("dashboard: http://")
    });
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    assert!(url.ends_with("/ui/"), "{line}");
    assert!(
        !line.contains("srn_"),
        "the token itself is not printed: {line}"
    );
    let token_file = line
        .split_whitespace()
        .find(|w| w.ends_with("admin.token"))
        .expect("where the token is");
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim()
        .to_string();
    let api: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/ui/")
        .parse()
        .unwrap();
    let page = {
        let mut s = TcpStream::connect(api).unwrap();
        write!(
            s,
            "GET /ui/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf
    };
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>Serin</title>"));
    let (code, me) = request(api, "GET", "/v1/whoami", &token, "");
    assert_eq!((code, me["role"].as_str()), (200, Some("admin")), "{me}");
    // After the four deployments it keeps serving until Ctrl-C.
    next_line(
        "saying it waits for Ctrl-C",
        Duration::from_secs(300),
        &|l| l.contains("Ctrl-C stops the demo"),
    );
    assert!(
        seen.iter().any(|l| l.contains("aborted")),
        "the table: {}",
        seen.join("\n")
    );
    let (code, list) = request(api, "GET", "/v1/rollouts", &token, "");
    assert_eq!(code, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    let status = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = poll(
        "serin demo to exit after Ctrl-C",
        Duration::from_secs(60),
        || demo.0.try_wait().ok().flatten(),
    );
    assert!(code.success(), "{code:?}; output:\n{}", seen.join("\n"));
}

/// `serin demo`, interrupted like Ctrl-C when dropped (it then stops its
/// replicas and proxy), killed if it has not exited 30 s later.
struct Demo(Child);
impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
