//! Test helpers: a real HTTP/1 client over loopback, servers on ephemeral ports, keys.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use serin_flags_server::{
    FlagServer, FlagSource, KeyInfo, KeyKind, KeyRing, Running, ServerOptions, Store,
};

pub const SERVER_PROD: &str = "srv-prod-3f9a1c";
pub const CLIENT_PROD: &str = "cli-prod-77b2e0";
pub const ADMIN_PROD: &str = "adm-prod-c41d88";
pub const SERVER_STAGING: &str = "srv-staging-0a1b2c";
pub const ADMIN_STAGING: &str = "adm-staging-9e8d7c";

pub fn keyring() -> KeyRing {
    let mut k = KeyRing::empty();
    for (value, name, kind, env) in [
        (
            SERVER_PROD,
            "checkout-backend",
            KeyKind::Server,
            "production",
        ),
        (CLIENT_PROD, "web-frontend", KeyKind::Client, "production"),
        (ADMIN_PROD, "alice", KeyKind::Admin, "production"),
        (
            SERVER_STAGING,
            "checkout-staging",
            KeyKind::Server,
            "staging",
        ),
        (ADMIN_STAGING, "bob", KeyKind::Admin, "staging"),
    ] {
        k.insert(
            value,
            KeyInfo {
                name: name.into(),
                kind,
                environment: env.into(),
            },
        );
    }
    k
}

pub async fn start(source: FlagSource, keys: KeyRing) -> Running {
    let server = FlagServer::start(ServerOptions {
        source,
        keys,
        environment: "production".into(),
    })
    .await
    .expect("server starts");
    server
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind")
}

pub async fn start_store(store: Arc<dyn Store>) -> Running {
    start(FlagSource::Store(store), keyring()).await
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.text, self.status))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let res = open(addr, method, path, headers, body).await;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    Resp {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub async fn open(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> hyper::Response<Incoming> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .expect("request");
    client.request(req).await.expect("request sent")
}

pub fn bearer(key: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {key}"))
}

/// POST JSON with a bearer key.
pub async fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: &str) -> Resp {
    call(addr, "POST", path, key, Some(body)).await
}

pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut h: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    send(addr, method, path, &h, body).await
}

/// Polls `f` until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An SSE client: reads `data:` payloads from an open event stream.
pub struct SseClient {
    body: Incoming,
    buf: String,
}

impl SseClient {
    pub async fn connect(addr: SocketAddr, key: &str) -> SseClient {
        let auth = format!("Bearer {key}");
        let res = open(
            addr,
            "GET",
            "/ofrep/v1/events",
            &[("authorization", &auth), ("accept", "text/event-stream")],
            None,
        )
        .await;
        assert_eq!(res.status().as_u16(), 200, "SSE connect");
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        SseClient {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next event's `data` as JSON, or `None` if none arrives within `deadline`.
    pub async fn next_data(&mut self, deadline: Duration) -> Option<Value> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if !data.is_empty() {
                    return serde_json::from_str(&data.join("\n")).ok();
                }
            }
            let frame = tokio::time::timeout_at(until, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(d) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&d));
            }
        }
    }
}
