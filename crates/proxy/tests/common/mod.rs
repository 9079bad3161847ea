//! Real backends and clients over loopback for the proxy tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serin_proxy::{ProxyConfig, RevisionEndpoints, ServiceConfig, WeightedRevision};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

pub type TestBody = BoxBody<Bytes, hyper::Error>;

/// A body fed from a channel, to prove the proxy streams.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A backend process stand-in: a real HTTP server on a loopback port.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: &'static str,
    /// Requests received.
    pub hits: Arc<AtomicUsize>,
    /// Requests being handled right now.
    pub inflight: Arc<AtomicUsize>,
    /// `/stream` waits on this between its two chunks.
    pub gate: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

async fn respond(
    name: &'static str,
    gate: Arc<Notify>,
    mut req: Request<Incoming>,
) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full(name))
        }
        "/headers" => {
            let mut map = serde_json::Map::new();
            for (k, v) in req.headers() {
                map.insert(
                    k.as_str().to_string(),
                    serde_json::Value::String(v.to_str().unwrap_or("?").to_string()),
                );
            }
            map.insert(
                ":version".into(),
                serde_json::Value::String(format!("{:?}", req.version())),
            );
            Response::new(full(serde_json::Value::Object(map).to_string()))
        }
        "/echo" => Response::new(req.into_body().boxed()),
        "/collect" => match req.into_body().collect().await {
            Ok(b) => Response::new(full(b.to_bytes().len().to_string())),
            Err(_) => {
                let mut r = Response::new(full("bad body"));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
        },
        "/status" => {
            let code = query.parse().unwrap_or(500);
            let mut r = Response::new(full(name));
            *r.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            r
        }
        "/stream" => {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first;")).await;
                gate.notified().await;
                let _ = tx.send(Bytes::from_static(b"second")).await;
            });
            Response::new(ChannelBody(rx).boxed())
        }
        "/upgrade" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("upgrade", http::HeaderValue::from_static("echo"));
            r.headers_mut()
                .insert("connection", http::HeaderValue::from_static("upgrade"));
            r
        }
        _ => {
            let mut r = Response::new(full(name));
            r.headers_mut()
                .insert("x-backend", http::HeaderValue::from_static(name));
            r
        }
    }
}

/// Start a backend answering `name`; `h2` makes it HTTP/2-only (h2c).
pub async fn backend(name: &'static str, h2: bool) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let inflight = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let (h, i, g) = (hits.clone(), inflight.clone(), gate.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (h, i, g) = (h.clone(), i.clone(), g.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (h, i, g) = (h.clone(), i.clone(), g.clone());
                    async move {
                        h.fetch_add(1, SeqCst);
                        i.fetch_add(1, SeqCst);
                        let r = respond(name, g, req).await;
                        i.fetch_sub(1, SeqCst);
                        Ok::<_, Infallible>(r)
                    }
                });
                let io = TokioIo::new(stream);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .with_upgrades()
                        .await;
                }
            });
        }
    });
    Backend {
        addr,
        name,
        hits,
        inflight,
        gate,
        task,
    }
}

/// A port nothing listens on (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A finished response.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub version: http::Version,
}

pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Got {
        status,
        headers,
        version,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Got {
    send(client, "GET", url, headers, "").await
}

/// A Service with the given revisions (hash, endpoints) and weights.
pub fn service(
    name: &str,
    revisions: &[(&str, Vec<SocketAddr>)],
    weights: &[(&str, u32)],
) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        app: format!("{name}-app"),
        listen: "127.0.0.1:0".parse().expect("addr"),
        revisions: revisions
            .iter()
            .map(|(h, e)| RevisionEndpoints {
                hash: (*h).into(),
                endpoints: e.clone(),
            })
            .collect(),
        weights: weights
            .iter()
            .map(|(h, w)| WeightedRevision {
                hash: (*h).into(),
                weight: *w,
            })
            .collect(),
        header_routes: vec![],
        mirror_routes: vec![],
        request_timeout_ms: None,
        upstream_protocol: Default::default(),
    }
}

pub fn config(services: Vec<ServiceConfig>) -> ProxyConfig {
    ProxyConfig {
        services,
        drain_grace_ms: None,
        client_header_timeout_ms: None,
    }
}

/// Poll `cond` every 10 ms until true or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
