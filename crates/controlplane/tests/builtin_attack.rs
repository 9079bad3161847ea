//! Issue 16's canary poisoning, end to end through a real proxy: ~600
//! requests with a malformed chunked body sent to a good canary used to be
//! 502s counted as the canary's 5xx, and the builtin `error-rate` analysis
//! aborted the rollout. Now they are the client's fault and the canary's
//! error rate stays 0.

use std::net::SocketAddr;
use std::time::Duration;

use serin_analysis::Outcome;
use serin_controlplane::proxy_client::ProxyClient;
use serin_controlplane::proxy_counters_provider::{StatsHistory, evaluate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(10);

/// A backend answering every request head with `200 ok` on a keep-alive
/// connection (it never reads bodies: the test's good requests have none).
async fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// One request on its own connection; the answer's status code, if any.
async fn status(addr: SocketAddr, raw: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(LIMIT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within {LIMIT:?}");
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
}

fn value(o: &Outcome) -> Option<f64> {
    match o {
        Outcome::Value(v) => v.get(0).and_then(serde_json::Value::as_f64),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_do_not_raise_a_good_canarys_error_rate() {
    let canary = backend().await;
    let config: serin_proxy::ProxyConfig = serde_json::from_value(serde_json::json!({
        "services": [{
            "name": "shop-canary", "app": "shop", "listen": "127.0.0.1:0",
            "revisions": [{"hash": "good", "endpoints": [canary.to_string()]}],
            "weights": [], "headerRoutes": []
        }]
    }))
    .expect("config");
    let proxy = serin_proxy::Proxy::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("proxy");
    let listen = proxy.listen_addr("shop-canary").expect("listens");
    // The control plane's view: its proxy client, with the admin token.
    let client = ProxyClient::new(proxy.admin_addr(), proxy.admin_token().clone());
    let history = StatsHistory::default();
    history.push(0, client.stats().await.expect("stats"));

    for i in 0..600 {
        let attack = b"POST / HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        let got = status(listen, attack).await;
        assert!(
            got.is_none_or(|c| c < 500),
            "attack request {i} answered {got:?}"
        );
        if i % 6 == 0 {
            let good = b"GET / HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n";
            assert_eq!(status(listen, good).await, Some(200));
        }
    }
    history.push(2_000, client.stats().await.expect("stats"));

    let query =
        |metric: &str| serde_json::json!({"metric": metric, "revision": "good", "window": "1s"});
    let error_rate = evaluate(&history, &query("error-rate"));
    assert_eq!(value(&error_rate), Some(0.0), "{error_rate:?}");
    let success_rate = evaluate(&history, &query("success-rate"));
    assert_eq!(value(&success_rate), Some(1.0), "{success_rate:?}");
    // The revision's requests are the 100 good ones; the proxy counted the
    // 600 others as the client's.
    let requests = evaluate(&history, &query("requests"));
    assert_eq!(value(&requests), Some(100.0), "{requests:?}");
    let stats = client.stats().await.expect("stats");
    let good = stats
        .revisions
        .iter()
        .find(|r| r.revision == "good")
        .expect("counted");
    assert_eq!(good.causes.client, 600, "{good:?}");
    assert_eq!(good.upstream_errors, 0);
    proxy.shutdown().await;
}
