//! Readiness and liveness against real dependencies on loopback: the machine's
//! PostgreSQL and Redis, Redis servers these tests start and stop, HTTP
//! servers and TCP listeners — no mocks.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use common::*;
use serde_json::Value;
use serin_health::{
    CheckError, Dependency, HealthChecker, HttpCheck, PostgresCheck, RedisCheck, Status, TcpCheck,
    check_fn,
};

const WAIT: Duration = Duration::from_secs(20);

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// An HTTP dependency whose status code the test sets.
async fn toggle_server() -> (String, Arc<AtomicU16>) {
    let code = Arc::new(AtomicU16::new(200));
    let c = code.clone();
    let app = axum::Router::new().route(
        "/health",
        get(move || {
            let c = c.clone();
            async move {
                axum::http::StatusCode::from_u16(c.load(Ordering::SeqCst))
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }),
    );
    let (base, _task) = serve(app).await;
    (format!("{base}/health"), code)
}

#[tokio::test]
async fn probes_over_http_carry_the_seed_fields_and_real_dependency_results() {
    let (pg, conn) = tokio_postgres::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        tokio_postgres::NoTls,
    )
    .await
    .expect("machine PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(conn);
    let redis_client = redis::Client::open("redis://127.0.0.1:6379/").expect("redis url");
    let redis_conn = redis::aio::ConnectionManager::new(redis_client)
        .await
        .expect("machine Redis on 127.0.0.1:6379");
    let (dep_url, dep_code) = toggle_server().await;

    let checker = HealthChecker::builder()
        .version("1.2.3")
        .cache_ttl(Duration::ZERO)
        .dependency(Dependency::new(
            "database",
            PostgresCheck::from_client(Arc::new(pg)),
        ))
        .dependency(Dependency::new("redis", RedisCheck::new(redis_conn)))
        .dependency(Dependency::new(
            "postgres-port",
            TcpCheck::new("127.0.0.1:5432"),
        ))
        .dependency(Dependency::new(
            "payments",
            HttpCheck::new(&dep_url).expect("url"),
        ))
        .build();
    let (base, _server) = serve(serin_health::router(checker)).await;

    let (code, body) = http_get(&format!("{base}/health"))
        .await
        .expect("GET /health");
    assert_eq!(code, 200);
    let live = json(&body);
    assert_eq!(live["status"], "ok");
    assert_eq!(live["version"], "1.2.3");
    assert!(
        live["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{live}"
    );
    assert!(
        live["uptime"].as_str().is_some_and(|u| u.ends_with('s')),
        "{live}"
    );
    assert!(
        live.get("dependencies").is_none(),
        "liveness checks nothing: {live}"
    );

    let (code, body) = http_get(&format!("{base}/ready"))
        .await
        .expect("GET /ready");
    let ready = json(&body);
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    for name in ["database", "redis", "postgres-port", "payments"] {
        assert_eq!(ready["dependencies"][name], true, "{name}: {ready}");
        assert!(
            ready["checks"][name]["latency_ms"].as_f64().is_some(),
            "{ready}"
        );
        assert!(ready["checks"][name]["error"].is_null(), "{ready}");
    }
    assert_eq!(ready["degraded"], false);

    // The HTTP dependency answers 500: a required dependency down → 503.
    dep_code.store(500, Ordering::SeqCst);
    let (code, body) = http_get(&format!("{base}/ready"))
        .await
        .expect("GET /ready");
    let ready = json(&body);
    assert_eq!(code, 503, "{ready}");
    assert_eq!(ready["status"], "not_ready");
    assert_eq!(ready["dependencies"]["payments"], false);
    assert_eq!(ready["dependencies"]["database"], true);
    let err = ready["checks"]["payments"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(err.contains("500"), "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("payments")
    );

    dep_code.store(204, Ordering::SeqCst);
    let (code, _) = http_get(&format!("{base}/ready"))
        .await
        .expect("GET /ready");
    assert_eq!(code, 200);
}

#[tokio::test]
async fn optional_dependency_degrades_without_failing() {
    let (dep_url, dep_code) = toggle_server().await;
    dep_code.store(503, Ordering::SeqCst);
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .dependency(Dependency::new("recs", HttpCheck::new(&dep_url).expect("url")).optional())
        .dependency(Dependency::new("db", TcpCheck::new("127.0.0.1:5432")))
        .build();
    let r = checker.readiness().await;
    assert!(r.ok);
    assert_eq!(r.body.status, Status::Ready);
    assert_eq!(r.body.degraded, Some(true));
    let recs = &r.body.checks.as_ref().expect("checks")["recs"];
    assert!(!recs.healthy && !recs.required);

    dep_code.store(200, Ordering::SeqCst);
    let r = checker.readiness().await;
    assert!(r.ok);
    assert_eq!(r.body.degraded, Some(false));
}

#[tokio::test]
async fn tcp_dependency_flips_when_its_port_stops_and_returns() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .dependency(Dependency::new("svc", TcpCheck::new(addr.to_string())))
        .build();
    assert!(checker.readiness().await.ok);
    drop(l);
    let r = checker.readiness().await;
    assert!(!r.ok, "{:?}", r.body);
    let err = r.body.checks.as_ref().expect("checks")["svc"].error.clone();
    assert!(err.is_some_and(|e| e.contains("connect")));
    let _l = eventually(WAIT, "rebind port", || async {
        tokio::net::TcpListener::bind(addr).await.ok()
    })
    .await;
    assert!(checker.readiness().await.ok);
}

#[tokio::test]
async fn postgres_flips_to_503_when_unreachable_and_back_when_it_returns() {
    let port = free_port();
    let fwd = Forwarder::start(port, postgres_addr()).await;
    let (client, conn) = postgres_config(port)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL through the forwarder");
    tokio::spawn(conn);
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .check_timeout(Duration::from_secs(3))
        .dependency(Dependency::new(
            "database",
            PostgresCheck::connect_each_time(postgres_config(port)),
        ))
        .dependency(Dependency::new(
            "app-client",
            PostgresCheck::from_client(Arc::new(client)),
        ))
        .build();
    let r = checker.readiness().await;
    assert!(r.ok, "{:?}", r.body);

    fwd.stop().await; // PostgreSQL "goes away" for this service
    let r = eventually(WAIT, "readiness 503 with PostgreSQL gone", || async {
        let r = checker.readiness().await;
        (!r.ok).then_some(r)
    })
    .await;
    let deps = r.body.dependencies.clone().expect("dependencies");
    assert!(!deps["database"], "{:?}", r.body);
    assert!(!deps["app-client"], "{:?}", r.body);
    assert!(
        r.body.checks.as_ref().expect("checks")["database"]
            .error
            .is_some()
    );

    let _fwd = Forwarder::start(port, postgres_addr()).await;
    let r = eventually(WAIT, "per-check connection recovers", || async {
        let r = checker.readiness().await;
        let deps = r.body.dependencies.clone().unwrap_or_default();
        deps.get("database").copied().unwrap_or(false).then_some(r)
    })
    .await;
    // The app's own client died with the connection: readiness tells the truth.
    assert!(!r.body.dependencies.expect("deps")["app-client"]);
}

#[tokio::test]
async fn redis_flips_to_503_when_stopped_and_back_when_restarted() {
    let port = free_port();
    let server = RedisServer::start(port).await;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_max_delay(Duration::from_millis(200));
    let conn = redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .expect("connect to test redis");
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .dependency(Dependency::new("redis", RedisCheck::new(conn)))
        .build();
    assert!(checker.readiness().await.ok);

    server.stop();
    let r = eventually(WAIT, "readiness 503 with redis stopped", || async {
        let r = checker.readiness().await;
        (!r.ok).then_some(r)
    })
    .await;
    assert_eq!(r.body.status, Status::NotReady);
    assert!(
        r.body.checks.as_ref().expect("checks")["redis"]
            .error
            .is_some()
    );

    let _server = RedisServer::start(port).await;
    eventually(WAIT, "readiness 200 with redis back", || async {
        checker.readiness().await.ok.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hanging_dependency_times_out_and_readiness_still_answers() {
    let (addr, _hang) = hanging_listener().await;
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .dependency(
            Dependency::new(
                "hangs",
                HttpCheck::new(&format!("http://{addr}/health")).expect("url"),
            )
            .timeout(Duration::from_millis(300)),
        )
        .dependency(Dependency::new("fine", TcpCheck::new("127.0.0.1:5432")))
        .build();
    // Generous outer bound: only proves the probe returns instead of hanging.
    let r = tokio::time::timeout(Duration::from_secs(10), checker.readiness())
        .await
        .expect("readiness must not hang on a hanging dependency");
    assert!(!r.ok);
    let checks = r.body.checks.expect("checks");
    let hang = &checks["hangs"];
    assert!(!hang.healthy);
    assert_eq!(hang.error.as_deref(), Some("timed out after 300ms"));
    assert!(hang.latency_ms >= 300.0, "{hang:?}");
    assert!(checks["fine"].healthy, "other checks are unaffected");
}

#[tokio::test]
async fn the_overall_timeout_bounds_readiness() {
    let checker = HealthChecker::builder()
        .overall_timeout(Duration::from_millis(200))
        .dependency(
            Dependency::new("forever", check_fn(std::future::pending))
                .timeout(Duration::from_secs(60)),
        )
        .build();
    let r = tokio::time::timeout(Duration::from_secs(10), checker.readiness())
        .await
        .expect("overall timeout must cut the check off");
    assert!(!r.ok);
    let c = &r.body.checks.expect("checks")["forever"];
    assert_eq!(c.error.as_deref(), Some("timed out after 200ms"));
}

fn counting_check(runs: Arc<AtomicUsize>) -> impl serin_health::Check {
    check_fn(move || {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
}

#[tokio::test]
async fn results_are_cached_for_the_configured_period() {
    let runs = Arc::new(AtomicUsize::new(0));
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::from_secs(600))
        .dependency(Dependency::new("counted", counting_check(runs.clone())))
        .build();
    let first = checker.readiness().await;
    assert!(!first.body.checks.expect("checks")["counted"].cached);
    for _ in 0..10 {
        let r = checker.readiness().await;
        assert!(r.body.checks.expect("checks")["counted"].cached);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "cached for 10 minutes");
    assert_eq!(checker.check_runs("counted"), Some(1));

    // Short period: a new run once it expires.
    let runs = Arc::new(AtomicUsize::new(0));
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::from_millis(50))
        .dependency(Dependency::new("counted", counting_check(runs.clone())))
        .build();
    checker.readiness().await;
    checker.readiness().await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    eventually(WAIT, "cache expiry re-runs the check", || async {
        checker.readiness().await;
        (runs.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;

    // Zero: every probe runs it.
    let runs = Arc::new(AtomicUsize::new(0));
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .dependency(Dependency::new("counted", counting_check(runs.clone())))
        .build();
    for _ in 0..5 {
        checker.readiness().await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_check_never_runs_twice_concurrently() {
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let (r2, m2, rel2) = (running.clone(), max_running.clone(), release.clone());
    let check = check_fn(move || {
        let (running, max_running, release) = (r2.clone(), m2.clone(), rel2.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max_running.fetch_max(now, Ordering::SeqCst);
            release.notified().await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO) // no cache: only single-flight can prevent overlap
        .check_timeout(Duration::from_secs(30))
        .overall_timeout(Duration::from_secs(30))
        .dependency(Dependency::new("slow", check))
        .build();
    let probes: Vec<_> = (0..20)
        .map(|_| {
            let c = checker.clone();
            tokio::spawn(async move { c.readiness().await })
        })
        .collect();
    eventually(WAIT, "first run started", || async {
        (running.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    // Release runs one at a time until every probe has answered.
    let mut answers = Vec::new();
    for p in probes {
        while !p.is_finished() {
            release.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        answers.push(p.await.expect("probe task"));
    }
    assert!(answers.iter().all(|r| r.ok));
    assert_eq!(
        max_running.load(Ordering::SeqCst),
        1,
        "never two runs at once"
    );
    let runs = checker.check_runs("slow").expect("known");
    let shared = answers
        .iter()
        .filter(|r| r.body.checks.as_ref().is_some_and(|c| c["slow"].cached))
        .count();
    assert_eq!(
        shared as u64,
        20 - runs,
        "every probe either ran it or shared a run"
    );
    assert!(
        runs < 20,
        "probes waiting on a run share its result (runs = {runs})"
    );
}

#[tokio::test]
async fn warmup_gates_readiness_until_done() {
    let checker = HealthChecker::builder()
        .dependency(Dependency::new("db", TcpCheck::new("127.0.0.1:5432")))
        .build();
    let cache = checker.warmup("load cache");
    let index = checker.warmup("build index");
    let r = checker.readiness().await;
    assert!(!r.ok);
    assert_eq!(
        r.body.reason.as_deref(),
        Some("warming up: load cache, build index")
    );
    assert!(checker.liveness().ok, "liveness is independent of warm-up");
    cache.done();
    assert!(!checker.readiness().await.ok);
    drop(index); // a failed warm-up must not let traffic in
    assert!(!checker.readiness().await.ok);
    assert_eq!(checker.pending_warmups(), vec!["build index".to_owned()]);

    let checker = HealthChecker::builder().build();
    let w = checker.warmup("w");
    assert!(!checker.readiness().await.ok);
    w.done();
    assert!(checker.readiness().await.ok);
}

#[tokio::test]
async fn a_panicking_custom_check_fails_readiness_instead_of_the_server() {
    let flag = Arc::new(AtomicBool::new(true));
    let f = flag.clone();
    let checker = HealthChecker::builder()
        .cache_ttl(Duration::ZERO)
        .dependency(Dependency::new(
            "custom",
            check_fn(move || {
                let f = f.clone();
                async move {
                    if f.load(Ordering::SeqCst) {
                        panic!("bug in a custom check");
                    }
                    Err(CheckError::msg("cold"))
                }
            }),
        ))
        .build();
    let r = checker.readiness().await;
    assert!(!r.ok);
    assert_eq!(
        r.body.checks.expect("checks")["custom"].error.as_deref(),
        Some("check panicked")
    );
    flag.store(false, Ordering::SeqCst);
    let r = checker.readiness().await;
    assert_eq!(
        r.body.checks.expect("checks")["custom"].error.as_deref(),
        Some("cold")
    );
}

#[test]
fn http_check_rejects_urls_it_cannot_serve() {
    assert!(HttpCheck::new("https://example.com/").is_err());
    assert!(HttpCheck::new("not a url").is_err());
    assert!(HttpCheck::new("http://127.0.0.1:1/x").is_ok());
}
