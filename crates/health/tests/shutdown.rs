//! Graceful shutdown: readiness flips at once, a real server under continuous
//! load keeps serving through the drain, then stops.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::get;
use common::*;
use serin_health::{HealthChecker, Phase, Shutdown};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn drained_resolves_exactly_one_drain_period_after_trigger() {
    let checker = HealthChecker::builder().build();
    let shutdown = Shutdown::new(&checker, Duration::from_secs(15));
    // Paused clock: time only moves when everything is idle, so this proves
    // `drained` does not resolve on its own before a trigger.
    let early = tokio::time::timeout(Duration::from_secs(3600), shutdown.drained()).await;
    assert!(early.is_err(), "drained before any trigger");
    assert!(checker.readiness().await.ok);

    let t0 = Instant::now();
    assert!(shutdown.trigger());
    assert!(!shutdown.trigger(), "second trigger is a no-op");
    assert!(matches!(shutdown.phase(), Phase::Draining { .. }));
    let r = checker.readiness().await;
    assert!(!r.ok);
    assert_eq!(r.body.reason.as_deref(), Some("shutting down"));
    assert!(checker.liveness().ok, "still alive while draining");

    shutdown.drained().await;
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    assert_eq!(shutdown.phase(), Phase::Stopped);
}

#[tokio::test(start_paused = true)]
async fn stop_now_cuts_the_drain_short() {
    let checker = HealthChecker::builder().build();
    let shutdown = Shutdown::new(&checker, Duration::from_secs(15));
    shutdown.trigger();
    let waiter = tokio::spawn(shutdown.drained());
    let t0 = Instant::now();
    shutdown.stop_now();
    waiter.await.expect("drained task");
    assert!(t0.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_no_request_during_the_drain() {
    let drain = Duration::from_millis(1500);
    let checker = HealthChecker::builder().version("drain-test").build();
    let shutdown = Shutdown::new(&checker, drain);
    let app = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "slow"
            }),
        )
        .merge(serin_health::router(checker.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let drained = shutdown.drained();
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(drained)
            .await;
        (result.map_err(|e| e.to_string()), Instant::now())
    });
    let (code, _) = http_get(&format!("{base}/ready")).await.expect("ready");
    assert_eq!(code, 200);

    // Continuous load from 4 clients with keep-alive pools, like a proxy.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), format!("{base}/"));
            tokio::spawn(async move {
                let client = http_client();
                let mut log = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let ok = matches!(get_with(&client, &url).await, Ok((200, _)));
                    log.push((started, ok));
                }
                log
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await; // load before the trigger

    let triggered = Instant::now();
    assert!(shutdown.trigger());
    let (code, body) = http_get(&format!("{base}/ready")).await.expect("ready");
    assert_eq!(code, 503, "readiness flips at once: {body}");
    assert!(body.contains("shutting down"), "{body}");

    // A slow request started late in the drain is in flight when it ends.
    tokio::time::sleep_until(triggered + drain - Duration::from_millis(300)).await;
    let slow = tokio::spawn({
        let url = format!("{base}/slow");
        async move { http_get(&url).await }
    });
    // By now a load balancer has long stopped routing here; the clients stop.
    tokio::time::sleep_until(triggered + drain - Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    let mut during_drain = 0;
    let mut failed = Vec::new();
    for c in clients {
        for (started, ok) in c.await.expect("client task") {
            total += 1;
            if started >= triggered {
                during_drain += 1;
            }
            if !ok {
                failed.push(started.saturating_duration_since(triggered));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed: {failed:?}",
        failed.len()
    );
    assert!(
        during_drain > 0,
        "new requests were served during the drain"
    );

    let slow = slow.await.expect("slow task");
    assert_eq!(
        slow,
        Ok((200, "slow".to_owned())),
        "in-flight request completes"
    );

    let (result, stopped) = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("server stops after the drain")
        .expect("server task");
    assert_eq!(result, Ok(()));
    assert!(
        stopped >= triggered + drain,
        "stopped {:?} after trigger",
        stopped - triggered
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed after stop"
    );
    eprintln!("drain test: {total} requests, {during_drain} during the drain, 0 failed");
}
