//! Probe and hook actions: httpGet (HTTP and HTTPS), tcpSocket, exec, sleep.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serin_spec::{ExecAction, HttpGetAction, LifecycleHandler, PortRef, Probe};
use tokio::net::TcpStream;

/// One declared container port and the loopback port it is mapped to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PortMapping {
    /// `containerPort` from the manifest (None: the container declared none).
    pub container_port: Option<i32>,
    /// Port name, if any.
    pub name: Option<String>,
    /// Loopback port actually used.
    pub host: u16,
}

/// What a probe or hook needs to reach its container.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Every port of the pod (containers share a network namespace in Kubernetes).
    pub pod_ports: Vec<PortMapping>,
    /// This container's `PORT`.
    pub own_port: u16,
    /// The container declares no containerPort (it only has `PORT`).
    pub own_undeclared: bool,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl Target {
    /// Maps a probe's port to the loopback port: a declared containerPort (by
    /// number or name) → its mapped port; an undeclared number → this
    /// container's `PORT` when it declares no ports (the app listens on PORT),
    /// else the number as written.
    pub fn resolve(&self, port: &PortRef) -> Result<u16, String> {
        match port {
            PortRef::Number(n) => {
                if let Some(m) = self.pod_ports.iter().find(|m| m.container_port == Some(*n)) {
                    return Ok(m.host);
                }
                if self.own_undeclared {
                    return Ok(self.own_port);
                }
                u16::try_from(*n).map_err(|_| format!("port {n} out of range"))
            }
            PortRef::Name(name) => self
                .pod_ports
                .iter()
                .find(|m| m.name.as_deref() == Some(name.as_str()))
                .map(|m| m.host)
                .ok_or_else(|| format!("no container port named {name:?}")),
        }
    }
}

/// Result of one probe or hook run.
pub(crate) type Outcome = Result<(), String>;

/// Runs a probe's action once, bounded by its `timeoutSeconds`.
pub(crate) async fn run_probe(p: &Probe, t: &Target) -> Outcome {
    let timeout = Duration::from_secs(p.timeout_seconds.max(1) as u64);
    let fut = async {
        if let Some(h) = &p.http_get {
            http_get(h, t).await
        } else if let Some(tcp) = &p.tcp_socket {
            tcp_connect(t.resolve(&tcp.port)?, tcp.host.as_deref()).await
        } else if let Some(e) = &p.exec {
            exec(e, t, timeout).await
        } else {
            Err("probe has no supported action".to_string())
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

/// Runs a lifecycle hook (the caller bounds it by the grace period).
pub(crate) async fn run_hook(h: &LifecycleHandler, t: &Target) -> Outcome {
    if let Some(e) = &h.exec {
        exec(e, t, Duration::from_secs(u32::MAX as u64)).await
    } else if let Some(g) = &h.http_get {
        http_get(g, t).await
    } else if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        Ok(())
    } else if let Some(tcp) = &h.tcp_socket {
        tcp_connect(t.resolve(&tcp.port)?, tcp.host.as_deref()).await
    } else {
        Ok(())
    }
}

async fn tcp_connect(port: u16, host: Option<&str>) -> Outcome {
    TcpStream::connect((host.unwrap_or("127.0.0.1"), port))
        .await
        .map(drop)
        .map_err(|e| format!("tcp connect to port {port}: {e}"))
}

/// Aborts the connection task when the probe finishes or times out.
struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// True for `scheme: HTTPS` (the kubelet lower-cases the scheme too).
pub(crate) fn is_https(h: &HttpGetAction) -> bool {
    h.scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
}

/// The one probe TLS connector (built on first use; its config is shared).
fn probe_tls() -> Result<&'static serin_tls::ProbeTlsConnector, String> {
    static CONNECTOR: OnceLock<Result<serin_tls::ProbeTlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| serin_tls::ProbeTlsConnector::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| format!("TLS for HTTPS probes: {e}"))
}

/// Kubernetes semantics: a fresh connection per run; 200 ≤ status < 400 is
/// success; redirects are not followed. `scheme: HTTPS` speaks TLS without
/// verifying the certificate, as the kubelet does ([`serin_tls::ProbeTlsConnector`]):
/// SNI is `host` when it is a DNS name (none for the default 127.0.0.1), and
/// an `httpHeaders` `Host` sets only the HTTP Host header.
async fn http_get(h: &HttpGetAction, t: &Target) -> Outcome {
    let port = t.resolve(&h.port)?;
    let host = h
        .host
        .as_deref()
        .filter(|x| !x.is_empty())
        .unwrap_or("127.0.0.1");
    let https = is_https(h);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
    let path = h.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let mut req = hyper::Request::get(path)
        .header(hyper::header::USER_AGENT, "kube-probe/serin")
        .header(hyper::header::ACCEPT, "*/*");
    let has_host = h
        .http_headers
        .iter()
        .any(|x| x.name.eq_ignore_ascii_case("host"));
    if !has_host {
        req = req.header(hyper::header::HOST, format!("{host}:{port}"));
    }
    for x in &h.http_headers {
        req = req.header(x.name.as_str(), x.value.as_str());
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let code = if https {
        let tls = probe_tls()?
            .connect(host, stream)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
        send(TokioIo::new(tls), req, path).await?
    } else {
        send(TokioIo::new(stream), req, path).await?
    };
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {path}: HTTP {code}"))
    }
}

/// One HTTP/1.1 request on a fresh connection; the response's status code.
async fn send<I>(io: I, req: hyper::Request<Empty<Bytes>>, path: &str) -> Result<u16, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    Ok(resp.status().as_u16())
}

/// Runs a command in the container's env and directory, in its own process
/// group so a timeout kills everything it started.
async fn exec(e: &ExecAction, t: &Target, timeout: Duration) -> Outcome {
    let Some((prog, args)) = e.command.split_first() else {
        return Err("exec has an empty command".to_string());
    };
    let mut cmd = tokio::process::Command::new(prog);
    // The container's environment, as the kubelet runs exec probes in it.
    cmd.args(args)
        .env_clear()
        .envs(t.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&t.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|err| format!("exec {prog}: {err}"))?;
    let pgid = child.id();
    let guard = GroupGuard(pgid);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(r) => r.map_err(|err| format!("exec {prog}: {err}"))?,
        Err(_) => return Err(format!("exec {prog}: timed out")),
    };
    drop(guard);
    if status.success() {
        Ok(())
    } else {
        Err(format!("exec {prog}: {status}"))
    }
}

/// SIGKILLs a helper's process group when the probe ends (also on timeout or abort).
struct GroupGuard(Option<u32>);
impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            crate::sys::signal_group(g, rustix::process::Signal::KILL);
        }
    }
}
