//! The proxy over real loopback HTTP: routing, weights, draining, admin API,
//! metrics, protocols.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;
use serin_proxy::{HeaderMatch, HeaderRoute, Proxy, UpstreamProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

async fn start(cfg: serin_proxy::ProxyConfig) -> Proxy {
    Proxy::start("127.0.0.1:0".parse().expect("addr"), cfg)
        .await
        .expect("proxy starts")
}

fn url(proxy: &Proxy, service: &str, path: &str) -> String {
    format!(
        "http://{}{path}",
        proxy.listen_addr(service).expect("service listens")
    )
}

/// The admin API's `Authorization` header for `proxy`.
fn auth(proxy: &Proxy) -> (&'static str, String) {
    (
        "authorization",
        format!("Bearer {}", proxy.admin_token().expose()),
    )
}

fn canary_route(name: &str, m: HeaderMatch) -> HeaderRoute {
    HeaderRoute {
        matches: vec![m],
        hash: name.into(),
    }
}

fn exact(name: &str, v: &str) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        exact: Some(v.into()),
        prefix: None,
        regex: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_routes_send_matching_requests_to_the_canary() {
    let stable = backend("stable", false).await;
    let canary = backend("canary", false).await;
    let mut svc = service(
        "web",
        &[("s1", vec![stable.addr]), ("c1", vec![canary.addr])],
        &[("s1", 100), ("c1", 0)],
    );
    svc.header_routes = vec![
        canary_route("c1", exact("canary", "true")),
        canary_route(
            "c1",
            HeaderMatch {
                name: "X-User".into(),
                exact: None,
                prefix: None,
                regex: Some("beta-[0-9]+".into()),
            },
        ),
    ];
    let proxy = start(config(vec![svc])).await;
    let c = client();
    let u = url(&proxy, "web", "/");
    for _ in 0..20 {
        assert_eq!(get(&c, &u, &[]).await.body, "stable");
        assert_eq!(get(&c, &u, &[("canary", "true")]).await.body, "canary");
        assert_eq!(get(&c, &u, &[("canary", "false")]).await.body, "stable");
        assert_eq!(get(&c, &u, &[("x-user", "beta-42")]).await.body, "canary");
        // The regex is anchored: a partial match is not a match.
        assert_eq!(get(&c, &u, &[("x-user", "beta-42x")]).await.body, "stable");
    }
    assert_eq!(canary.hits.load(SeqCst), 40);
    assert_eq!(stable.hits.load(SeqCst), 60);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_every_request_is_counted_per_revision() {
    let stable = backend("stable", false).await;
    let canary = backend("canary", false).await;
    let svc = service(
        "web",
        &[("s1", vec![stable.addr]), ("c1", vec![canary.addr])],
        &[("s1", 90), ("c1", 10)],
    );
    let proxy = start(config(vec![svc])).await;
    let u = url(&proxy, "web", "/");
    // 8 concurrent clients, 2000 requests in all.
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (u, counts) = (u.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..250 {
                let g = get(&c, &u, &[]).await;
                assert_eq!(g.status, 200);
                let i = usize::from(g.body == "canary");
                counts[i].fetch_add(1, SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let canary_share = counts[1].load(SeqCst) as f64 / 2000.0;
    // The schedule is exact per 100 requests; allow ±1.5 points anyway.
    assert!(
        (canary_share - 0.10).abs() < 0.015,
        "canary share {canary_share}"
    );

    let stats = proxy.stats();
    let rev = |h: &str| {
        stats
            .revisions
            .iter()
            .find(|r| r.revision == h)
            .cloned()
            .expect("revision counted")
    };
    assert_eq!(rev("c1").requests, counts[1].load(SeqCst) as u64);
    assert_eq!(rev("s1").requests, counts[0].load(SeqCst) as u64);
    assert_eq!(rev("s1").status_classes.c2xx, rev("s1").requests);
    assert_eq!(rev("c1").latency.count, rev("c1").requests);
    assert_eq!(rev("c1").app, "web-app");

    // The admin API serves the same numbers in Prometheus text.
    let c = client();
    let m = get(&c, &format!("http://{}/metrics", proxy.admin_addr()), &[]).await;
    assert_eq!(m.status, 200);
    let line = format!(
        "http_requests_total{{service=\"web\",app=\"web-app\",rollouts_pod_template_hash=\"c1\",status=\"200\",source=\"upstream\",cause=\"upstream\"}} {}",
        counts[1].load(SeqCst)
    );
    assert!(m.body.contains(&line), "missing {line} in\n{}", m.body);
    let inf = format!(
        "http_request_duration_seconds_bucket{{le=\"+Inf\",service=\"web\",app=\"web-app\",rollouts_pod_template_hash=\"s1\"}} {}",
        counts[0].load(SeqCst)
    );
    assert!(m.body.contains(&inf), "missing {inf} in\n{}", m.body);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_an_endpoint_under_load_loses_no_request() {
    let old = backend("old", false).await;
    let new = backend("new", false).await;
    let svc = service("web", &[("r1", vec![old.addr, new.addr])], &[]);
    let proxy = start(config(vec![svc.clone()])).await;
    let u = url(&proxy, "web", "/slow?ms=30");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (u, stop, failures, done) = (u.clone(), stop.clone(), failures.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(SeqCst) {
                let g = get(&c, &u, &[]).await;
                if g.status != 200 {
                    failures.fetch_add(1, SeqCst);
                }
                done.fetch_add(1, SeqCst);
            }
        }));
    }
    // Wait until requests are in flight on the endpoint that will leave.
    assert!(eventually(LIMIT, || old.inflight.load(SeqCst) > 0).await);
    let mut next = svc.clone();
    next.revisions[0].endpoints = vec![new.addr];
    next.listen = proxy.listen_addr("web").expect("listening");
    proxy.apply(config(vec![next])).await.expect("apply");
    // In-flight requests on `old` finish; after that it gets nothing new.
    assert!(eventually(LIMIT, || old.inflight.load(SeqCst) == 0).await);
    let old_hits = old.hits.load(SeqCst);
    let before = done.load(SeqCst);
    assert!(eventually(LIMIT, || done.load(SeqCst) > before + 100).await);
    stop.store(true, SeqCst);
    for t in tasks {
        t.await.expect("client task");
    }
    assert_eq!(failures.load(SeqCst), 0);
    assert_eq!(
        old.hits.load(SeqCst),
        old_hits,
        "drained endpoint got new requests"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_get_a_clear_400_and_the_old_config_stays() {
    let stable = backend("stable", false).await;
    let proxy = start(config(vec![service(
        "web",
        &[("s1", vec![stable.addr])],
        &[("s1", 100)],
    )]))
    .await;
    let c = client();
    let admin = format!("http://{}/v1/config", proxy.admin_addr());
    let (k, v) = auth(&proxy);
    let a = [(k, v.as_str())];
    let before = get(&c, &admin, &a).await.body;
    let cases = [
        ("{ not json", ""),
        (
            r#"{"services":[{"name":"web","app":"a","listen":"127.0.0.1:0","revisions":[{"hash":"s1","endpoints":[]}],"weights":[{"hash":"s1","weight":"ninety"}],"headerRoutes":[]}]}"#,
            "services[0].weights[0].weight",
        ),
        (
            r#"{"services":[{"name":"web","app":"a","listen":"127.0.0.1:0","revisions":[{"hash":"s1","endpoints":[]},{"hash":"c1","endpoints":[]}],"weights":[{"hash":"s1","weight":90},{"hash":"c1","weight":20}],"headerRoutes":[]}]}"#,
            "services[0].weights",
        ),
        (
            r#"{"services":[{"name":"web","app":"a","listen":"127.0.0.1:0","revisions":[{"hash":"s1","endpoints":[]}],"weights":[],"headerRoutes":[{"matches":[{"name":"canary","exact":"true"}],"hash":"nope"}]}]}"#,
            "services[0].headerRoutes[0].hash",
        ),
        (
            r#"{"services":[{"name":"web","app":"a","listen":"127.0.0.1:0","revisions":[{"hash":"s1","endpoints":[]}],"weights":[],"headerRoutes":[{"matches":[{"name":"canary","regex":"("}],"hash":"s1"}]}]}"#,
            "services[0].headerRoutes[0].matches[0].regex",
        ),
        (
            r#"{"services":[],"clientHeaderTimeoutMs":0}"#,
            "clientHeaderTimeoutMs",
        ),
    ];
    for (body, field) in cases {
        let r = send(
            &c,
            "PUT",
            &admin,
            &[("content-type", "application/json"), a[0]],
            body,
        )
        .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error body");
        assert_eq!(v["field"], field, "{}", r.body);
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(get(&c, &admin, &a).await.body, before);
    assert_eq!(get(&c, &url(&proxy, "web", "/"), &[]).await.body, "stable");

    // A listen port already taken: 409, nothing changes.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut bad = service("other", &[("s1", vec![stable.addr])], &[]);
    bad.listen = taken.local_addr().expect("addr");
    let mut cfg = proxy.config();
    cfg.services.push(bad);
    let r = send(
        &c,
        "PUT",
        &admin,
        &a,
        &serde_json::to_string(&cfg).expect("json"),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("services[1].listen"), "{}", r.body);
    assert_eq!(get(&c, &admin, &a).await.body, before);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_put_switches_services_and_reports_ports() {
    let blue = backend("blue", false).await;
    let green = backend("green", false).await;
    let proxy = start(config(vec![])).await;
    let c = client();
    let admin = format!("http://{}/v1/config", proxy.admin_addr());
    let (k, v) = auth(&proxy);
    let a = [(k, v.as_str())];
    let active = service("active", &[("blue", vec![blue.addr])], &[]);
    let preview = service("preview", &[("green", vec![green.addr])], &[]);
    let r = send(
        &c,
        "PUT",
        &admin,
        &a,
        &serde_json::to_string(&config(vec![active, preview])).expect("json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got: serin_proxy::ProxyConfig =
        serde_json::from_str(&get(&c, &admin, &a).await.body).expect("config");
    assert!(got.services.iter().all(|s| s.listen.port() != 0));
    assert_eq!(get(&c, &url(&proxy, "active", "/"), &[]).await.body, "blue");
    assert_eq!(
        get(&c, &url(&proxy, "preview", "/"), &[]).await.body,
        "green"
    );
    // Promote: both services switch in one swap, on the same ports.
    let mut cfg = got.clone();
    cfg.services[0].revisions[0].hash = "green".into();
    cfg.services[0].revisions[0].endpoints = vec![green.addr];
    let r = send(
        &c,
        "PUT",
        &admin,
        &a,
        &serde_json::to_string(&cfg).expect("json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        get(&c, &url(&proxy, "active", "/"), &[]).await.body,
        "green"
    );
    assert_eq!(proxy.listen_addr("active"), Some(got.services[0].listen));
    // Removing a service closes its listener.
    cfg.services.truncate(1);
    let preview_addr = got.services[1].listen;
    proxy.apply(cfg).await.expect("apply");
    let closed = eventually(LIMIT, || {
        std::net::TcpStream::connect(preview_addr).is_err()
    })
    .await;
    assert!(closed, "preview listener still open");
    let health = get(&c, &format!("http://{}/healthz", proxy.admin_addr()), &[]).await;
    assert_eq!(health.status, 200);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_errors_are_json_and_counted_apart_from_upstream_5xx() {
    let stable = backend("stable", false).await;
    let dead = dead_addr().await;
    let mut svc = service(
        "web",
        &[("s1", vec![dead, stable.addr]), ("c1", vec![])],
        &[("s1", 100), ("c1", 0)],
    );
    svc.header_routes = vec![canary_route("c1", exact("canary", "true"))];
    svc.request_timeout_ms = Some(200);
    let proxy = start(config(vec![svc])).await;
    let c = client();
    let u = url(&proxy, "web", "/");
    // The canary has no endpoint: 503 with a JSON body, at once.
    let r = get(&c, &u, &[("canary", "true")]).await;
    assert_eq!(r.status, 503);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v["error"], "no_endpoint");
    // GETs retry the connect failure on the other endpoint: all succeed.
    for _ in 0..10 {
        assert_eq!(get(&c, &u, &[]).await.body, "stable");
    }
    // A POST with a body is not retried: the dead endpoint's turn is a 502.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            send(&c, "POST", &format!("{u}echo"), &[], "payload")
                .await
                .status,
        );
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 502]);
    // Upstream 5xx and timeouts.
    let mut ok = false;
    for _ in 0..2 {
        ok |= get(&c, &format!("{u}status?503"), &[]).await.status == 503;
    }
    assert!(ok);
    assert_eq!(get(&c, &format!("{u}slow?ms=3000"), &[]).await.status, 504);

    let stats = proxy.stats();
    let s1 = stats
        .revisions
        .iter()
        .find(|r| r.revision == "s1")
        .expect("s1");
    let c1 = stats
        .revisions
        .iter()
        .find(|r| r.revision == "c1")
        .expect("c1");
    assert_eq!(c1.proxy_errors.no_endpoint, 1);
    assert_eq!(s1.proxy_errors.connect, 1);
    assert_eq!(s1.proxy_errors.timeout, 1);
    assert_eq!(s1.upstream_5xx, 2);
    // Who caused what: a revision with no ready endpoint (its pods are not
    // ready: a flapping canary), the connect failure, the timeout and the
    // 503s are the revision's.
    assert_eq!(c1.causes.upstream, 1);
    assert_eq!(c1.causes.proxy, 0);
    assert_eq!(c1.upstream_errors, 1);
    assert_eq!(s1.causes.proxy, 0);
    assert_eq!(s1.causes.client, 0);
    assert_eq!(s1.causes.upstream, s1.requests);
    assert_eq!(s1.upstream_errors, 4);
    // Every other request of s1 (the cursor alternates) tried the dead
    // endpoint first: GETs 0,2,4,6,8, the first POST, a status and the
    // slow request; only the POST's failure reached the client.
    assert_eq!(s1.connect_failures, 8);
    // The revision's answers are timed, the proxy's 503 for it included.
    assert_eq!(c1.latency.count, 1);
    assert_eq!(s1.latency.count, s1.requests);
    let m = proxy.metrics_text();
    assert!(
        m.contains(
            "rollouts_pod_template_hash=\"c1\",status=\"503\",source=\"proxy\",cause=\"upstream\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "rollouts_pod_template_hash=\"s1\",status=\"503\",source=\"upstream\",cause=\"upstream\"} 2"
        ),
        "{m}"
    );
    assert!(
        m.contains("rollouts_pod_template_hash=\"s1\",reason=\"timeout\",cause=\"upstream\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "serin_proxy_upstream_connect_failures_total{service=\"web\",app=\"web-app\",rollouts_pod_template_hash=\"s1\"} 8"
        ),
        "{m}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_both_ways_and_hop_by_hop_headers() {
    let h1 = backend("h1", false).await;
    let h2 = backend("h2", true).await;
    let a = service("a", &[("r", vec![h1.addr])], &[]);
    let mut b = service("b", &[("r", vec![h2.addr])], &[]);
    b.upstream_protocol = UpstreamProtocol::Http2;
    let proxy = start(config(vec![a, b])).await;
    // h2c client -> proxy -> HTTP/1.1 backend; the :authority becomes Host.
    let r = get(&h2_client(), &url(&proxy, "a", "/headers"), &[]).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v[":version"], "HTTP/1.1");
    assert!(
        v["host"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:"))
    );
    // HTTP/1.1 client -> proxy -> h2c backend.
    let r = get(
        &client(),
        &url(&proxy, "b", "/headers"),
        &[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
        ],
    )
    .await;
    assert_eq!(r.version, http::Version::HTTP_11);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v[":version"], "HTTP/2.0");
    assert!(v.get("x-secret").is_none(), "{v}");
    assert!(v.get("keep-alive").is_none(), "{v}");
    assert_eq!(v["x-forwarded-for"], "127.0.0.1");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_and_upgrades_pass_through() {
    let be = backend("be", false).await;
    let proxy = start(config(vec![service("a", &[("r", vec![be.addr])], &[])])).await;
    // The first chunk arrives while the backend still holds the second.
    let resp = client()
        .request(
            http::Request::get(url(&proxy, "a", "/stream"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("req"),
        )
        .await
        .expect("resp");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(LIMIT, body.frame())
        .await
        .expect("first chunk streamed before the body ended")
        .expect("frame")
        .expect("ok");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"first;"[..]));
    be.gate.notify_one();
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(&rest[..], b"second");

    // A large request body is echoed intact.
    let big = "x".repeat(1 << 20);
    let r = send(&client(), "POST", &url(&proxy, "a", "/echo"), &[], &big).await;
    assert_eq!(r.body.len(), big.len());

    // An Upgrade: 101 and then raw bytes both ways.
    let addr = proxy.listen_addr("a").expect("addr");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 1024];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(LIMIT, s.read(&mut buf))
            .await
            .expect("read")
            .expect("io");
        assert!(n > 0, "closed before 101");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    tokio::time::timeout(LIMIT, s.read_exact(&mut echo))
        .await
        .expect("echo")
        .expect("io");
    assert_eq!(&echo, b"ping");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let be = backend("be", false).await;
    let proxy = start(config(vec![service("a", &[("r", vec![be.addr])], &[])])).await;
    let u = url(&proxy, "a", "/slow?ms=300");
    let inflight = tokio::spawn(async move { get(&client(), &u, &[]).await });
    assert!(eventually(LIMIT, || be.inflight.load(SeqCst) == 1).await);
    proxy.shutdown().await;
    let r = inflight.await.expect("task");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "be");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_is_cut_off_after_the_drain_grace() {
    let old = backend("old", false).await;
    let new = backend("new", false).await;
    let mut cfg = config(vec![service("a", &[("r", vec![old.addr])], &[])]);
    cfg.drain_grace_ms = Some(200);
    let proxy = start(cfg.clone()).await;
    let u = url(&proxy, "a", "/slow?ms=20000");
    let stuck = tokio::spawn(async move { get(&client(), &u, &[]).await });
    assert!(eventually(LIMIT, || old.inflight.load(SeqCst) == 1).await);
    let mut next = proxy.config();
    next.services[0].revisions[0].endpoints = vec![new.addr];
    proxy.apply(next).await.expect("apply");
    let r = tokio::time::timeout(LIMIT, stuck)
        .await
        .expect("cut off in time")
        .expect("task");
    assert_eq!(r.status, 504);
    assert!(r.body.contains("drain grace"), "{}", r.body);
    assert_eq!(
        get(&client(), &url(&proxy, "a", "/"), &[]).await.body,
        "new"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_token_and_listeners_stay_on_loopback() {
    let stable = backend("stable", false).await;
    let evil = backend("evil", false).await;
    let proxy = start(config(vec![service(
        "web",
        &[("s1", vec![stable.addr])],
        &[("s1", 100)],
    )]))
    .await;
    let c = client();
    let admin = format!("http://{}/v1/config", proxy.admin_addr());
    let mut hijack = proxy.config();
    hijack.services[0].revisions[0].endpoints = vec![evil.addr];
    let hijack = serde_json::to_string(&hijack).expect("json");
    let wrong = format!("Bearer {}", "0".repeat(64));
    let truncated = format!(
        "Bearer {}",
        &proxy.admin_token().expose()[..proxy.admin_token().expose().len() - 1]
    );
    // No token, a wrong one, a truncated one, another scheme: 401, and
    // traffic keeps going where the control plane sent it.
    for headers in [
        vec![],
        vec![("authorization", wrong.as_str())],
        vec![("authorization", truncated.as_str())],
        vec![("authorization", "Basic c2VyaW46c2VyaW4=")],
    ] {
        let r = send(&c, "PUT", &admin, &headers, &hijack).await;
        assert_eq!(r.status, 401, "{headers:?}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error body");
        assert!(v["error"].as_str().is_some_and(|e| e.contains("Bearer")));
        for path in ["/v1/config", "/v1/stats"] {
            let r = get(
                &c,
                &format!("http://{}{path}", proxy.admin_addr()),
                &headers,
            )
            .await;
            assert_eq!(r.status, 401, "GET {path} {headers:?}");
        }
    }
    for _ in 0..5 {
        assert_eq!(get(&c, &url(&proxy, "web", "/"), &[]).await.body, "stable");
    }
    assert_eq!(evil.hits.load(SeqCst), 0);
    // Probes and Prometheus need no token.
    for path in ["/healthz", "/metrics"] {
        let r = get(&c, &format!("http://{}{path}", proxy.admin_addr()), &[]).await;
        assert_eq!(r.status, 200, "GET {path}");
    }
    // The token works with the scheme in any case (RFC 9110).
    let lower = format!("bearer {}", proxy.admin_token().expose());
    let r = get(&c, &admin, &[("authorization", lower.as_str())]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A listen address beyond loopback is refused unless allowed.
    let (k, v) = auth(&proxy);
    let mut wide = proxy.config();
    wide.services[0].listen = "0.0.0.0:0".parse().expect("addr");
    let r = send(
        &c,
        "PUT",
        &admin,
        &[(k, v.as_str())],
        &serde_json::to_string(&wide).expect("json"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error body");
    assert_eq!(v["field"], "services[0].listen");
    assert_eq!(get(&c, &url(&proxy, "web", "/"), &[]).await.body, "stable");
    proxy.shutdown().await;

    // Nor is an admin address beyond loopback.
    let r = Proxy::start("0.0.0.0:0".parse().expect("addr"), config(vec![])).await;
    assert!(
        matches!(r, Err(serin_proxy::ProxyError::AdminNotLoopback { .. })),
        "{r:?}"
    );
    // Unless the proxy is started to allow it.
    let options = serin_proxy::ProxyOptions {
        admin: "127.0.0.1:0".parse().expect("addr"),
        admin_token: serin_proxy::AdminToken::random().expect("token"),
        allow_non_loopback: true,
    };
    let mut cfg = config(vec![service("web", &[("s1", vec![stable.addr])], &[])]);
    cfg.services[0].listen = "0.0.0.0:0".parse().expect("addr");
    let open = Proxy::start_with(options, cfg).await.expect("allowed");
    let port = open.listen_addr("web").expect("listens").port();
    assert_eq!(
        get(&c, &format!("http://127.0.0.1:{port}/"), &[])
            .await
            .body,
        "stable"
    );
    open.shutdown().await;
}

/// Sends `raw` on a new connection and returns the status line's code of
/// the answer, or `None` when the proxy closed without one.
async fn raw_status(addr: std::net::SocketAddr, raw: &[u8]) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(LIMIT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within {LIMIT:?}");
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_the_clients_fault_and_never_count_against_a_canary() {
    // The attack from issue 16: ~600 requests with a malformed chunked body
    // used to be answered 502 and counted as the canary's 5xx, enough for
    // the builtin error-rate analysis to abort a good rollout.
    let stable = backend("stable", false).await;
    let canary = backend("canary", false).await;
    let mut svc = service(
        "web",
        &[("s1", vec![stable.addr]), ("c1", vec![canary.addr])],
        &[("s1", 90), ("c1", 10)],
    );
    svc.header_routes = vec![canary_route("c1", exact("canary", "true"))];
    let proxy = start(config(vec![svc])).await;
    let addr = proxy.listen_addr("web").expect("listens");
    let c = client();
    let u = url(&proxy, "web", "/");
    let mut answered = 0;
    for i in 0..600 {
        // The upstream would answer only after 50 ms: the body fails first.
        let raw = b"POST /slow?ms=50 HTTP/1.1\r\nhost: web\r\ncanary: true\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n";
        // An answer is a 400; a close without one is counted all the same.
        if let Some(code) = raw_status(addr, raw).await {
            assert_eq!(code, 400, "attack request {i}");
            answered += 1;
        }
        if i % 6 == 0 {
            assert_eq!(get(&c, &u, &[("canary", "true")]).await.body, "canary");
        }
    }
    assert!(
        answered > 0,
        "the proxy never answered the malformed requests"
    );
    // The canary's requests are all the attack's and the good ones.
    let c1 = eventually(LIMIT, || {
        proxy
            .stats()
            .revisions
            .iter()
            .find(|r| r.revision == "c1")
            .is_some_and(|r| r.requests == 700)
    })
    .await;
    let stats = proxy.stats();
    let rev = stats
        .revisions
        .iter()
        .find(|r| r.revision == "c1")
        .expect("c1");
    assert!(c1, "{rev:?}");
    assert_eq!(rev.proxy_errors.bad_request_body, 600, "{rev:?}");
    assert_eq!(rev.causes.client, 600);
    assert_eq!(rev.causes.upstream, 100);
    assert_eq!(rev.upstream_errors, 0);
    assert_eq!(rev.status_classes.c5xx, 0);
    assert_eq!(rev.status_classes.c4xx, 600);
    // The attack's instant answers do not enter the revision's latency.
    assert_eq!(rev.latency.count, 100);
    let m = proxy.metrics_text();
    assert!(
        m.contains(
            "rollouts_pod_template_hash=\"c1\",status=\"400\",source=\"proxy\",cause=\"client\"} 600"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "rollouts_pod_template_hash=\"c1\",reason=\"bad_request_body\",cause=\"client\"} 600"
        ),
        "{m}"
    );

    // A client that stops sending its body: 408 and the client's fault; an
    // upstream that does not answer a whole request is the revision's (504).
    let mut slow = proxy.config();
    slow.services[0].request_timeout_ms = Some(300);
    proxy.apply(slow).await.expect("apply");
    let raw =
        b"POST /collect HTTP/1.1\r\nhost: web\r\ncanary: true\r\ncontent-length: 10\r\n\r\nabc";
    assert_eq!(raw_status(addr, raw).await, Some(408));
    let raw =
        b"POST /slow?ms=3000 HTTP/1.1\r\nhost: web\r\ncanary: true\r\ncontent-length: 3\r\n\r\nabc";
    assert_eq!(raw_status(addr, raw).await, Some(504));
    let stats = proxy.stats();
    let rev = stats
        .revisions
        .iter()
        .find(|r| r.revision == "c1")
        .expect("c1");
    assert_eq!(rev.proxy_errors.client_timeout, 1, "{rev:?}");
    assert_eq!(rev.proxy_errors.timeout, 1, "{rev:?}");
    assert_eq!(rev.causes.client, 601);
    assert_eq!(rev.upstream_errors, 1);
    proxy.shutdown().await;
}
