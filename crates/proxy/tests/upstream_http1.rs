//! Bodiless requests to HTTP/1.1 upstreams take the proxy's lean path
//! (its own head encoding and response parsing): every way a response can
//! be framed, what it forwards, connection reuse, and idle connections the
//! upstream closed. The upstream here is a raw socket writing canned bytes,
//! so the framings are exactly the ones named.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serin_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(10);

/// A raw HTTP/1.1 upstream: answers each request head by its path with
/// canned bytes, keeps what it received, counts connections.
struct Raw {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The canned answer to `path`, and whether to close the connection after it.
fn answer(method: &str, path: &str) -> (&'static [u8], bool) {
    match (method, path) {
        ("HEAD", _) => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
        (_, "/length") => (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nx-keep: 1\r\n\r\nhello",
            false,
        ),
        (_, "/chunked") => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 1\r\n\r\n",
            false,
        ),
        (_, "/close") => (b"HTTP/1.0 200 OK\r\nx-kind: close\r\n\r\nuntil close", true),
        (_, "/interim") => (
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        (_, "/empty") => (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        (_, "/flaky") => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nflaky", false),
        (_, "/once") => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce", true),
        (_, "/truncated") => (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true),
        _ => (b"HTTP/1.1 2xx what\r\n\r\n", true),
    }
}

async fn raw_upstream() -> Raw {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (a, h) = (accepted.clone(), heads.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            a.fetch_add(1, SeqCst);
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut served = 0;
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let mut words = head.split(' ');
                    let method = words.next().unwrap_or("").to_string();
                    let path = words.next().unwrap_or("").to_string();
                    h.lock().expect("heads").push(head);
                    served += 1;
                    if path == "/flaky" && served > 1 {
                        // Closes as the next request arrives, unanswered.
                        return;
                    }
                    let (bytes, close) = answer(&method, &path);
                    if s.write_all(bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    Raw {
        addr,
        accepted,
        heads,
        task,
    }
}

async fn start(upstream: SocketAddr) -> (Proxy, String) {
    let cfg = config(vec![service("a", &[("r", vec![upstream])], &[])]);
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("proxy starts");
    let base = format!("http://{}", proxy.listen_addr("a").expect("listens"));
    (proxy, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_passes_through_and_hop_by_hop_headers_stay_behind() {
    let up = raw_upstream().await;
    let (proxy, base) = start(up.addr).await;
    let c = client();

    let r = get(
        &c,
        &format!("{base}/length"),
        &[
            ("x-forwarded-for", "192.0.2.7"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
        ],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert_eq!(
        r.headers.get("x-keep").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    for hop in ["x-hop", "keep-alive"] {
        assert!(r.headers.get(hop).is_none(), "{hop} reached the client");
    }
    let head = up.heads.lock().expect("heads")[0].to_ascii_lowercase();
    assert!(head.starts_with("get /length http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nx-forwarded-for: 192.0.2.7, 127.0.0.1"),
        "{head}"
    );
    assert_eq!(head.matches("x-forwarded-for").count(), 1, "{head}");
    assert!(head.contains("\r\nhost: "), "{head}");
    assert!(!head.contains("x-secret"), "{head}");

    let r = get(&c, &format!("{base}/chunked"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"));
    assert!(r.headers.get("trailer").is_none());

    let r = get(&c, &format!("{base}/interim"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));

    let r = get(&c, &format!("{base}/empty"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));

    let r = send(&c, "HEAD", &format!("{base}/length"), &[], "").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(
        r.headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );

    // A bodiless POST says its length is 0.
    let r = send(&c, "POST", &format!("{base}/length"), &[], "").await;
    assert_eq!(r.status, 200);
    let head = up
        .heads
        .lock()
        .expect("heads")
        .last()
        .cloned()
        .unwrap_or_default();
    assert!(
        head.to_ascii_lowercase().contains("\r\ncontent-length: 0"),
        "{head}"
    );

    // All of the above on one upstream connection per proxy worker thread.
    assert!(
        up.accepted.load(SeqCst) <= 2,
        "{} connections",
        up.accepted.load(SeqCst)
    );

    // Until close (HTTP/1.0, no length): the connection is not reused.
    let r = get(&c, &format!("{base}/close"), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "until close"));

    // A malformed head is the upstream's fault: 502 from the proxy.
    let r = get(&c, &format!("{base}/bad"), &[]).await;
    assert_eq!(r.status, 502);
    assert!(r.headers.contains_key("x-serin-proxy-error"));
    let stats = proxy.stats();
    assert_eq!(stats.revisions[0].proxy_errors.upstream, 1, "{stats:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_the_upstream_closed_cost_no_request() {
    let up = raw_upstream().await;
    let (proxy, base) = start(up.addr).await;
    let c = client();
    // Each answer closes its connection right after it, while the proxy
    // keeps it as idle (no `Connection: close`): the next request finds a
    // dead connection in the pool and must still be answered.
    for i in 0..20 {
        let r = get(&c, &format!("{base}/once"), &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "once"), "request {i}");
    }
    assert_eq!(up.accepted.load(SeqCst), 20);

    // An idle connection that looks open but is closed as the request
    // arrives: an idempotent request is sent again on a new connection,
    // any other gets the proxy's 502 (it may have been acted on).
    //
    // Upstream connections are pooled per proxy worker thread, and the
    // kernel spreads client connections over the workers (SO_REUSEPORT).
    // These requests share one client connection, so they share one
    // worker's pool and the POST certainly meets the connection `/flaky`
    // will close: a pooling client may open a second connection (hyper's
    // returns a connection to its pool asynchronously), which can land on
    // the other worker and find no idle upstream connection at all.
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects to the proxy");
    let before = up.accepted.load(SeqCst);
    for i in 0..2 {
        let (status, body) = exchange(&mut conn, "GET /flaky HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!((status, body.as_str()), (200, "flaky"), "request {i}");
    }
    assert_eq!(up.accepted.load(SeqCst), before + 2);
    let (status, _) = exchange(
        &mut conn,
        "POST /flaky HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 502);
    // Not sent again: the upstream saw no new connection for it.
    assert_eq!(up.accepted.load(SeqCst), before + 2);
    proxy.shutdown().await;
}

/// Writes one request on `conn` and reads its response (which must carry
/// `Content-Length`): status and body.
async fn exchange(conn: &mut tokio::net::TcpStream, request: &str) -> (u16, String) {
    tokio::time::timeout(LIMIT, async {
        conn.write_all(request.as_bytes())
            .await
            .expect("request written");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no status in {head:?}"));
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or_else(|| panic!("no content-length in {head:?}"));
                while buf.len() < end + 4 + length {
                    let n = conn.read(&mut chunk).await.expect("body read");
                    assert!(n > 0, "connection closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (status, body);
            }
            let n = conn.read(&mut chunk).await.expect("head read");
            assert!(n > 0, "connection closed before a response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_the_upstream_fails_the_response() {
    let up = raw_upstream().await;
    let (proxy, base) = start(up.addr).await;
    let resp = tokio::time::timeout(
        LIMIT,
        client().request(
            http::Request::get(format!("{base}/truncated"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request"),
        ),
    )
    .await
    .expect("an answer or an error in time");
    // The proxy may fail the response before or after its head reached the
    // client, but the client must never see a complete one.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 200);
        let body = tokio::time::timeout(LIMIT, http_body_util::BodyExt::collect(resp.into_body()))
            .await
            .expect("body ends in time");
        assert!(body.is_err(), "a truncated body must not look complete");
    }
    proxy.shutdown().await;
}
