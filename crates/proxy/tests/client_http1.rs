//! The proxy's client-facing HTTP/1.1 side (`server.rs`) against raw TCP
//! clients: bodiless requests are served by the lean loop, anything else
//! hands the connection to hyper — with the bytes already read — and both
//! must behave as one HTTP/1.1 server on one connection: pipelined answers
//! in order, HEAD, chunked and streamed bodies, Connection: close and
//! HTTP/1.0 keep-alive, the header-read timeout, a request body or a
//! protocol switch after lean requests, heads too large or malformed or in
//! absolute form, a client that leaves mid-response, and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::*;
use serin_proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// A response as a raw client read it.
#[derive(Debug)]
struct Resp {
    status: u16,
    version: u8,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection, read by hand.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            s: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// Read more bytes; 0 at the end of the stream (or a reset).
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(LIMIT, self.s.read(&mut chunk))
            .await
            .expect("the proxy answers within the limit")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn head(&mut self) -> Resp {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = r.parse(&self.buf).expect("a response head") {
                let resp = Resp {
                    status: r.code.expect("status"),
                    version: r.version.expect("version"),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                self.buf.drain(..len);
                return resp;
            }
            assert!(self.fill().await > 0, "connection closed before a head");
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "connection closed in a body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill().await > 0, "connection closed in a chunk line");
        }
    }

    /// The next whole response (`head_request`: the answer to a HEAD).
    async fn response(&mut self, head_request: bool) -> Resp {
        let mut r = self.head().await;
        if head_request || matches!(r.status, 101 | 204 | 304) {
            return r;
        }
        if let Some(n) = r.header("content-length") {
            let n = n.trim().parse().expect("length");
            r.body = self.take(n).await;
        } else if r.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(self.line().await.trim(), 16).expect("size");
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                let data = self.take(size).await;
                r.body.extend_from_slice(&data);
                assert_eq!(self.line().await, "", "chunk CRLF");
            }
        } else {
            while self.fill().await > 0 {}
            r.body = std::mem::take(&mut self.buf);
        }
        r
    }

    /// Whether the proxy closes the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        self.fill().await == 0 && self.buf.is_empty()
    }
}

async fn start(cfg: ProxyConfig) -> (Proxy, SocketAddr) {
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("proxy starts");
    let addr = proxy.listen_addr("a").expect("listens");
    (proxy, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;
    let mut c = Raw::connect(addr).await;
    // Four requests in one write, a HEAD among them.
    c.write(
        b"GET /headers HTTP/1.1\r\nHost: shop\r\nX-N: 1\r\n\r\n\
          GET / HTTP/1.1\r\nHost: shop\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: shop\r\n\r\n\
          GET /headers HTTP/1.1\r\nHost: shop\r\nX-N: 4\r\nX-Forwarded-For: 192.0.2.7\r\n\r\n",
    )
    .await;
    let first = c.response(false).await;
    assert_eq!(first.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(seen["x-n"], "1");
    assert_eq!(seen["host"], "shop");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    let second = c.response(false).await;
    assert_eq!(second.text(), "stable");
    assert_eq!(second.header("x-backend"), Some("stable"));
    let head = c.response(true).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("6"));
    let fourth = c.response(false).await;
    let seen: serde_json::Value = serde_json::from_slice(&fourth.body).expect("json");
    assert_eq!(seen["x-n"], "4");
    assert_eq!(seen["x-forwarded-for"], "192.0.2.7, 127.0.0.1");
    // Hop-by-hop request headers stay behind, `TE: trailers` goes on.
    c.write(
        b"GET /headers HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\nTrailer: x-sum\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let seen: serde_json::Value =
        serde_json::from_slice(&c.response(false).await.body).expect("json");
    for gone in ["connection", "keep-alive", "proxy-connection", "trailer"] {
        assert!(seen.get(gone).is_none(), "{gone} was forwarded: {seen}");
    }
    assert_eq!(seen["te"], "trailers");
    assert_eq!(seen["x-kept"], "yes");
    // Nothing more: the HEAD answer carried no body bytes.
    c.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "stable");
    assert_eq!(b.hits.load(SeqCst), 6);
    let stats = proxy.stats();
    let counted: Vec<(u64, u64)> = stats
        .revisions
        .iter()
        .filter(|r| r.revision == "r")
        .map(|r| (r.requests, r.status_classes.c2xx))
        .collect();
    assert_eq!(counted, [(6, 6)], "every lean request counted once");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_head_times_out_and_an_idle_connection_closes() {
    let b = backend("stable", false).await;
    let mut cfg = config(vec![service("a", &[("r", vec![b.addr])], &[])]);
    cfg.client_header_timeout_ms = Some(300);
    let (proxy, addr) = start(cfg).await;

    // Half a head, then nothing.
    let mut slow = Raw::connect(addr).await;
    slow.write(b"GET / HTTP/1.1\r\nHost: shop\r\n").await;
    let began = Instant::now();
    assert!(slow.closed().await, "a head that never ends is cut off");
    assert!(began.elapsed() >= Duration::from_millis(250));
    assert_eq!(b.hits.load(SeqCst), 0);

    // A kept-alive connection idle past the timeout closes too (as hyper's).
    let mut idle = Raw::connect(addr).await;
    idle.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(idle.response(false).await.text(), "stable");
    assert!(idle.closed().await, "an idle connection is closed");

    // A client sending its head in pieces within the timeout is served.
    let mut pieces = Raw::connect(addr).await;
    for part in [&b"GET / HT"[..], b"TP/1.1\r\nHost: sh", b"op\r\n\r\n"] {
        pieces.write(part).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pieces.response(false).await.text(), "stable");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_request_after_lean_ones_is_handed_to_hyper_on_the_same_connection() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;
    let mut c = Raw::connect(addr).await;
    c.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "stable");
    // A body (pipelined behind a lean request), then lean-looking requests
    // that hyper now serves on this connection.
    c.write(
        b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /headers HTTP/1.1\r\nHost: shop\r\n\r\n",
    )
    .await;
    assert_eq!(c.response(false).await.text(), "stable");
    assert_eq!(c.response(false).await.text(), "hello");
    assert_eq!(c.response(false).await.text(), "abc");
    let seen: serde_json::Value =
        serde_json::from_slice(&c.response(false).await.body).expect("json");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(b.hits.load(SeqCst), 5);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_after_a_lean_request_switches_the_same_connection() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;
    let mut c = Raw::connect(addr).await;
    c.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(c.response(false).await.text(), "stable");
    c.write(b"GET /upgrade HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await;
    let switched = c.response(false).await;
    assert_eq!(switched.status, 101);
    assert_eq!(switched.header("upgrade"), Some("echo"));
    c.write(b"ping over the tunnel").await;
    let echoed = c.take(20).await;
    assert_eq!(echoed, b"ping over the tunnel");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_streamed_bodies_reach_the_client_as_they_come() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;
    let mut c = Raw::connect(addr).await;
    c.write(b"GET /stream HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    let head = c.head().await;
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    // The first chunk arrives while the upstream still holds the second.
    let size = usize::from_str_radix(c.line().await.trim(), 16).expect("size");
    assert_eq!(c.take(size).await, b"first;");
    b.gate.notify_one();
    assert_eq!(c.line().await, "");
    let mut rest = Vec::new();
    loop {
        let size = usize::from_str_radix(c.line().await.trim(), 16).expect("size");
        if size == 0 {
            assert_eq!(c.line().await, "");
            break;
        }
        rest.extend(c.take(size).await);
        assert_eq!(c.line().await, "");
    }
    assert_eq!(rest, b"second");
    // Still usable, and a HEAD's answer has its length but no body.
    c.write(b"HEAD / HTTP/1.1\r\nHost: shop\r\n\r\nGET /status?204 HTTP/1.1\r\nHost: shop\r\n\r\nGET / HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await;
    let head = c.response(true).await;
    assert_eq!(head.header("content-length"), Some("6"));
    let empty = c.response(false).await;
    assert_eq!(empty.status, 204);
    assert_eq!(c.response(false).await.text(), "stable");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_and_http10_keep_alive_are_honoured() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;

    let mut c = Raw::connect(addr).await;
    c.write(b"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.text(), "stable");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed().await, "closed after Connection: close");

    // HTTP/1.0 without keep-alive: answered in 1.0, then closed.
    let mut c = Raw::connect(addr).await;
    c.write(b"GET / HTTP/1.0\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!((r.version, r.text().as_str()), (0, "stable"));
    assert!(c.closed().await, "an HTTP/1.0 connection closes by default");

    // HTTP/1.0 asking for keep-alive keeps the connection, and says so.
    let mut c = Raw::connect(addr).await;
    c.write(b"GET /headers HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.header("connection"), Some("keep-alive"));
    let seen: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert!(seen["host"].is_string(), "a Host is added for the upstream");
    c.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.text(), "stable");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_response_harms_no_later_request() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;
    let mut c = Raw::connect(addr).await;
    c.write(b"GET /stream HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    let _ = c.head().await;
    let size = usize::from_str_radix(c.line().await.trim(), 16).expect("size");
    assert_eq!(c.take(size).await, b"first;");
    drop(c);
    b.gate.notify_one();
    assert!(
        eventually(LIMIT, || b.inflight.load(SeqCst) == 0).await,
        "the upstream finished its answer"
    );
    // Later requests, on new connections, get whole, right answers.
    for _ in 0..3 {
        let mut c = Raw::connect(addr).await;
        c.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").await;
        assert_eq!(c.response(false).await.text(), "stable");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_finishes_busy_ones() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;
    let mut idle = Raw::connect(addr).await;
    idle.write(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    assert_eq!(idle.response(false).await.text(), "stable");
    let mut busy = Raw::connect(addr).await;
    busy.write(b"GET /slow?ms=400 HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await;
    assert!(eventually(LIMIT, || b.inflight.load(SeqCst) == 1).await);
    let shutdown = tokio::spawn(proxy.shutdown());
    assert!(idle.closed().await, "an idle connection closes at once");
    // Its answer comes whole, then the connection closes (when the drain
    // began before the head was written, the head says so too).
    let r = busy.response(false).await;
    assert_eq!(r.text(), "stable");
    assert!(
        busy.closed().await,
        "a busy connection closes after its answer"
    );
    tokio::time::timeout(LIMIT, shutdown)
        .await
        .expect("shutdown ends once the busy connection is done")
        .expect("shutdown task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_the_lean_loop_does_not_take_are_answered_by_hyper() {
    let b = backend("stable", false).await;
    let (proxy, addr) = start(config(vec![service("a", &[("r", vec![b.addr])], &[])])).await;

    // A head over the lean loop's 64 KiB, within hyper's limit: served.
    let mut c = Raw::connect(addr).await;
    let big = "x".repeat(70_000);
    c.write(format!("GET / HTTP/1.1\r\nHost: shop\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await;
    assert_eq!(c.response(false).await.text(), "stable");

    // A header line that does not parse: hyper's 400, nothing forwarded.
    let mut c = Raw::connect(addr).await;
    c.write(b"GET / HTTP/1.1\r\nHost: shop\r\nBad Header: x\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 400);

    // An absolute-form target: forwarded with its path.
    let mut c = Raw::connect(addr).await;
    c.write(b"GET http://shop/headers HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await;
    let seen: serde_json::Value =
        serde_json::from_slice(&c.response(false).await.body).expect("json");
    assert_eq!(seen["host"], "shop");
    assert_eq!(b.hits.load(SeqCst), 2);
    proxy.shutdown().await;
}
