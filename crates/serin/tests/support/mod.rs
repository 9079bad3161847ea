//! What the `serin` end-to-end tests share: a test folder that is always
//! cleaned up with `serin down`, a `serin up` killed like a crash when
//! dropped, polling with a deadline, and real HTTP load through the proxy.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub const SERIN: &str = env!("CARGO_BIN_EXE_serin");

/// A test folder whose control plane (state in `state/`) is stopped with
/// `serin down` and which is removed when dropped.
pub struct Dir(pub PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = down(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `serin down` for the control plane whose state is in `d/state`.
pub fn down(d: &Path) -> std::io::Result<Output> {
    Command::new(SERIN)
        .args(["down", "--state-dir"])
        .arg(d.join("state"))
        .output()
}

/// `serin up`, killed (SIGKILL, like a crash) when dropped.
pub struct Up(pub Child);
impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Calls `f` every 100 ms until it returns `Some`, failing the test after `limit`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One real HTTP/1.1 request; Ok(status) or Err on any connection problem.
pub fn http_get(addr: SocketAddr) -> Result<u16, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response {head:?}"))
}

/// Two threads sending requests back to back until finished.
pub struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts [`Load`] against `addr`; a 5xx or a connection error is a failure
/// (the first three are printed).
pub fn load(addr: SocketAddr) -> Load {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..2)
        .map(|_| {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match http_get(addr) {
                        Ok(c) if c < 500 => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("failed request: {other:?}");
                            }
                            0
                        }
                    };
                }
            })
        })
        .collect();
    Load {
        ok,
        failed,
        stop,
        threads,
    }
}

impl Load {
    /// (ok, failed) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Stops the threads; (ok, failed) in all.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A fresh test folder `serin-{name}-{pid}` under the system's temporary
/// folder, with an empty `manifests/` and a `serin.yaml` that keeps state in
/// `state/` and maps the `argoproj/rollouts-demo` image to `serin demo-app`
/// (its tag is the demo's version); `extra` is appended to `serin.yaml`.
pub fn demo_dir(name: &str, extra: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("serin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).expect("test dir");
    std::fs::write(
        dir.join("serin.yaml"),
        format!(
            "stateDir: {}\nimages:\n  argoproj/rollouts-demo:\n    command: [\"{SERIN}\", \"demo-app\"]\n    args: [\"--demo-version\", \"{{tag}}\"]\n{extra}",
            dir.join("state").display()
        ),
    )
    .expect("serin.yaml");
    Dir(dir)
}

/// `serin up -c d/serin.yaml d/manifests`, its log in `d/{log}`.
pub fn serin_up(d: &Path, log: &str) -> Up {
    Up(Command::new(SERIN)
        .arg("up")
        .arg("-c")
        .arg(d.join("serin.yaml"))
        .arg(d.join("manifests"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join(log)).expect("log file"))
        .spawn()
        .expect("serin up starts"))
}

/// A `serin` command against the control plane whose state is in `d/state`.
pub fn serin_at(d: &Path, args: &[&str]) -> Output {
    Command::new(SERIN)
        .args(args)
        .arg("--state-dir")
        .arg(d.join("state"))
        .output()
        .expect("serin runs")
}

/// `serin get NAME -o json`, when it answers with JSON.
pub fn rollout_json(d: &Path, name: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&serin_at(d, &["get", name, "-o", "json"]).stdout).ok()
}

/// The python of a venv with the real OpenFeature Python clients (the SDK, its OFREP provider
/// and the flagd provider, from PyPI, installed once by `scripts/openfeature-venv` into a
/// cache folder outside the repository), or `None` after a loud message when PyPI cannot be
/// reached; any other failure to install fails the test.
pub fn openfeature_python() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/openfeature-venv");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/openfeature-venv");
    match out.status.code() {
        Some(0) => Some(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )),
        Some(3) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED: PyPI is unreachable, so the real OpenFeature Python \
                 clients cannot be installed; these compatibility tests did NOT run !!!!!!!!\n"
            );
            None
        }
        other => panic!("scripts/openfeature-venv failed ({other:?})"),
    }
}

/// The listen address of the proxy's Service (or router object) `name`,
/// read from the control plane's `GET /v1/services` once it has a port.
pub fn service_listener(d: &Path, name: &str) -> SocketAddr {
    let ep: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("state/endpoints.json")).expect("endpoints.json"),
    )
    .expect("endpoints json");
    let api: SocketAddr = ep["api"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("api address");
    poll(
        &format!("the {name} listener"),
        Duration::from_secs(30),
        || {
            let mut s = TcpStream::connect(api).ok()?;
            let token = std::fs::read_to_string(d.join("state/admin.token")).ok()?;
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
                .find(|s| s["name"] == name)?["listen"]
                .as_str()?
                .parse()
                .ok()?;
            (addr.port() != 0).then_some(addr)
        },
    )
}

/// The demo app's `version` from one real `GET /` through `addr`.
pub fn demo_version(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let v: serde_json::Value = serde_json::from_str(buf.split("\r\n\r\n").nth(1)?.trim()).ok()?;
    v["version"].as_str().map(str::to_string)
}
