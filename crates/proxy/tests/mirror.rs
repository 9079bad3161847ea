//! Mirror routes (Argo's `setMirrorRoute`) over real loopback HTTP: a share
//! of the matching requests is copied to the canary (bodies up to 64 KiB
//! included), the client always gets the primary's answer, and copies never
//! count as requests.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::*;
use serin_proxy::{MirrorMatch, MirrorRoute, Proxy, ValueMatch};

const LIMIT: Duration = Duration::from_secs(10);

async fn start(cfg: serin_proxy::ProxyConfig) -> Proxy {
    Proxy::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("proxy starts")
}

fn prefix(p: &str) -> ValueMatch {
    ValueMatch {
        prefix: Some(p.into()),
        ..ValueMatch::default()
    }
}

fn get_color(percentage: u32) -> MirrorRoute {
    MirrorRoute {
        matches: vec![MirrorMatch {
            method: Some(ValueMatch {
                exact: Some("GET".into()),
                ..ValueMatch::default()
            }),
            path: Some(prefix("/color")),
            headers: vec![],
        }],
        percentage,
        hash: "c1".into(),
    }
}

/// Polls `f` until it holds, failing after `LIMIT`.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + LIMIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_requests_are_copied_to_the_canary_and_answers_discarded() {
    let stable = backend("stable", false).await;
    let canary = backend("canary", false).await;
    let mut svc = service(
        "web",
        &[("s1", vec![stable.addr]), ("c1", vec![canary.addr])],
        &[("s1", 100), ("c1", 0)],
    );
    svc.mirror_routes = vec![get_color(50)];
    let proxy = start(config(vec![svc])).await;
    let c = client();
    let base = format!("http://{}", proxy.listen_addr("web").expect("listens"));

    // 40 matching GETs: every client answer is the stable's; 20 copies.
    for _ in 0..40 {
        assert_eq!(get(&c, &format!("{base}/color"), &[]).await.body, "stable");
    }
    // Another path: not copied.
    for _ in 0..10 {
        assert_eq!(get(&c, &format!("{base}/other"), &[]).await.body, "stable");
    }
    eventually("20 mirrored copies answered", || {
        canary.hits.load(SeqCst) >= 20
    })
    .await;
    eventually("the canary's mirror counter", || {
        proxy
            .stats()
            .revisions
            .iter()
            .any(|r| r.revision == "c1" && r.mirrored.answered == 20)
    })
    .await;
    assert_eq!(canary.hits.load(SeqCst), 20, "exactly 50 % of 40");
    assert_eq!(stable.hits.load(SeqCst), 50);

    let stats = proxy.stats();
    let c1 = stats
        .revisions
        .iter()
        .find(|r| r.revision == "c1")
        .expect("canary counters");
    assert_eq!(c1.requests, 0, "copies never count as requests");
    assert_eq!(c1.latency.count, 0);
    let s1 = stats
        .revisions
        .iter()
        .find(|r| r.revision == "s1")
        .expect("stable counters");
    assert_eq!(s1.requests, 50);
    assert_eq!(s1.mirrored.answered, 0);
    proxy.shutdown().await;
}

/// Small bodies are copied too (read whole once, sent twice); a body over
/// 64 KiB is not, and a request a header route takes is not mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bodies_are_copied_large_ones_and_header_routed_requests_are_not() {
    let stable = backend("stable", false).await;
    let canary = backend("canary", false).await;
    let mut svc = service(
        "web",
        &[("s1", vec![stable.addr]), ("c1", vec![canary.addr])],
        &[("s1", 100), ("c1", 0)],
    );
    svc.mirror_routes = vec![MirrorRoute {
        matches: vec![MirrorMatch::default()],
        percentage: 100,
        hash: "c1".into(),
    }];
    svc.header_routes = vec![serin_proxy::HeaderRoute {
        matches: vec![serin_proxy::HeaderMatch {
            name: "canary".into(),
            exact: Some("true".into()),
            prefix: None,
            regex: None,
        }],
        hash: "c1".into(),
    }];
    let proxy = start(config(vec![svc])).await;
    let c = client();
    let base = format!("http://{}", proxy.listen_addr("web").expect("listens"));
    for _ in 0..5 {
        let g = send(&c, "POST", &format!("{base}/collect"), &[], "hello").await;
        assert_eq!((g.status, g.body.as_str()), (200, "5"));
    }
    let large = "x".repeat(70 * 1024);
    for _ in 0..2 {
        let g = send(&c, "POST", &format!("{base}/collect"), &[], &large).await;
        assert_eq!(g.body, (70 * 1024).to_string());
    }
    for _ in 0..5 {
        let g = get(&c, &format!("{base}/"), &[("canary", "true")]).await;
        assert_eq!(g.body, "canary");
    }
    assert_eq!(get(&c, &format!("{base}/"), &[]).await.body, "stable");
    eventually("six copies answered", || {
        proxy
            .stats()
            .revisions
            .iter()
            .any(|r| r.revision == "c1" && r.mirrored.answered == 6)
    })
    .await;
    assert_eq!(canary.hits.load(SeqCst), 11, "6 copies + 5 header-routed");
    assert_eq!(stable.hits.load(SeqCst), 8);
    let stats = proxy.stats();
    let c1 = stats
        .revisions
        .iter()
        .find(|r| r.revision == "c1")
        .expect("canary counters");
    assert_eq!(c1.mirrored.skipped_body, 2);
    assert_eq!(c1.mirrored.failed + c1.mirrored.dropped, 0);
    assert_eq!(c1.requests, 5, "only the header-routed requests");
    proxy.shutdown().await;
}

/// A canary whose answers never end: copies in flight are bounded (256),
/// the rest dropped and counted, and clients never wait for copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_in_flight_are_bounded_and_clients_never_wait_for_them() {
    let stable = backend("stable", false).await;
    let canary = backend("canary", false).await;
    let mut svc = service(
        "web",
        &[("s1", vec![stable.addr]), ("c1", vec![canary.addr])],
        &[("s1", 100), ("c1", 0)],
    );
    svc.mirror_routes = vec![MirrorRoute {
        matches: vec![MirrorMatch {
            path: Some(prefix("/stream")),
            ..MirrorMatch::default()
        }],
        percentage: 100,
        hash: "c1".into(),
    }];
    // `/stream` sends one chunk and then waits on the backend's gate: the
    // canary's copies stay in flight (a copy reads its answer to the end,
    // within the request timeout) while clients take the stable's headers
    // and go.
    svc.request_timeout_ms = Some(120_000);
    let proxy = start(config(vec![svc])).await;
    let addr = proxy.listen_addr("web").expect("listens");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..40 {
                let req = http::Request::get(format!("http://{addr}/stream"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("request");
                let resp = c.request(req).await.expect("stable answers");
                assert_eq!(resp.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    // All 320 clients answered while every started copy is still waiting
    // for the canary's answer to end.
    eventually("256 copies started and 64 dropped", || {
        let s = proxy.stats();
        s.revisions.iter().any(|r| {
            r.revision == "c1"
                && r.mirrored.dropped == 320 - 256
                && r.mirrored.answered == 0
                && r.mirrored.failed == 0
        }) && canary.hits.load(SeqCst) == 256
    })
    .await;
    // Let the canary finish: the copies end as answered and free their slots.
    eventually("the copies answered", || {
        canary.gate.notify_waiters();
        proxy
            .stats()
            .revisions
            .iter()
            .any(|r| r.revision == "c1" && r.mirrored.answered == 256)
    })
    .await;
    let c1 = proxy.stats();
    let c1 = c1
        .revisions
        .iter()
        .find(|r| r.revision == "c1")
        .expect("c1");
    assert_eq!(c1.requests, 0);
    stable.gate.notify_waiters();
    proxy.shutdown().await;
}
