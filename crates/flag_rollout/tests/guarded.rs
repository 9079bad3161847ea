//! Guarded rollouts against the real flag server and a real HTTP metric
//! endpoint (the analysis uses the `web` provider over loopback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serin_flag_rollout::{GuardedRollout, Outcome, Progress};
use serin_flags_server::{
    FlagServer, FlagSource, KeyInfo, KeyKind, KeyRing, RedbStore, ServerOptions,
};

const ADMIN: &str = "adm-prod-rollout-1";
const SDK: &str = "srv-prod-checkout-1";

async fn flag_server(dir: &std::path::Path) -> serin_flags_server::Running {
    let mut keys = KeyRing::empty();
    keys.insert(
        ADMIN,
        KeyInfo {
            name: "rollout-bot".into(),
            kind: KeyKind::Admin,
            environment: "production".into(),
        },
    );
    keys.insert(
        SDK,
        KeyInfo {
            name: "checkout".into(),
            kind: KeyKind::Server,
            environment: "production".into(),
        },
    );
    let store = RedbStore::open(dir.join("flags.redb")).expect("store");
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::Store(Arc::new(store)),
        keys,
        environment: "production".into(),
    })
    .await
    .expect("server");
    server
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind")
}

async fn http(method: &str, url: String, body: &str) -> (u16, serde_json::Value) {
    http_as(ADMIN, method, url, body).await
}

async fn http_as(key: &str, method: &str, url: String, body: &str) -> (u16, serde_json::Value) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let b = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
    )
}

/// The error rate the "service" reports, in millionths (set by the test).
async fn metric_endpoint(rate: Arc<AtomicU64>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/error-rate",
        axum::routing::get(move || {
            let rate = rate.clone();
            async move {
                axum::Json(
                    serde_json::json!({"errorRate": rate.load(Ordering::SeqCst) as f64 / 1e6}),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

fn template(metrics: SocketAddr) -> serin_spec::AnalysisTemplate {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: flag-error-rate\nspec:\n  metrics:\n    - name: error-rate\n      interval: 50ms\n      count: 3\n      successCondition: result <= 0.01\n      provider:\n        web:\n          url: http://{metrics}/error-rate\n          jsonPath: \"{{$.errorRate}}\"\n"
    );
    let mut set = serin_spec::ManifestSet::new();
    set.add_source("template.yaml", &yaml);
    assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    let (_, t) = set.analysis_templates().next().expect("the template loads");
    t.clone()
}

async fn setup(
    name: &str,
) -> (
    std::path::PathBuf,
    serin_flags_server::Running,
    Arc<AtomicU64>,
    SocketAddr,
) {
    let dir =
        std::env::temp_dir().join(format!("serin-flag-rollout-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server = flag_server(&dir).await;
    let url = format!(
        "http://{}/api/v1/environments/production/flags/new-payment-processor",
        server.addr()
    );
    let (code, body) = http(
        "PUT",
        url,
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}"#,
    )
    .await;
    assert!(code == 200 || code == 201, "{code} {body}");
    let rate = Arc::new(AtomicU64::new(1_000)); // 0.1 %
    let metrics = metric_endpoint(rate.clone()).await;
    (dir, server, rate, metrics)
}

fn rollout(server: SocketAddr, metrics: SocketAddr) -> GuardedRollout {
    GuardedRollout {
        server: format!("http://{server}"),
        environment: "production".into(),
        admin_token: ADMIN.into(),
        flag: "new-payment-processor".into(),
        steps: vec![5, 10, 25, 50, 100],
        interval: Duration::from_millis(200),
        analysis: Some((vec![template(metrics)], vec![])),
    }
}

/// Share of 400 users for whom the flag is on, through OFREP.
async fn share_on(server: SocketAddr) -> usize {
    let mut on = 0;
    for i in 0..400 {
        let (code, v) = http_as(
            SDK,
            "POST",
            format!("http://{server}/ofrep/v1/evaluate/flags/new-payment-processor"),
            &format!(r#"{{"context": {{"targetingKey": "user-{i}"}}}}"#),
        )
        .await;
        assert_eq!(code, 200, "{v}");
        if v["value"] == serde_json::json!(true) {
            on += 1;
        }
    }
    on
}

#[tokio::test]
async fn a_healthy_flag_goes_to_100_percent_step_by_step() {
    let (dir, server, _rate, metrics) = setup("good").await;
    let mut seen = Vec::new();
    let out = rollout(server.addr(), metrics)
        .run(&mut |p| seen.push(p))
        .await
        .unwrap();
    assert_eq!(out, Outcome::Completed);
    let set: Vec<u8> = seen
        .iter()
        .filter_map(|p| {
            if let Progress::Set(n) = p {
                Some(*n)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(set, vec![5, 10, 25, 50, 100]);
    assert_eq!(share_on(server.addr()).await, 400);
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_rising_error_rate_sets_the_flag_back_to_zero_and_the_audit_log_says_so() {
    let (dir, server, rate, metrics) = setup("bad").await;
    let r = rollout(server.addr(), metrics);
    let mut seen = Vec::new();
    let out = r
        .run(&mut |p| {
            // Errors start once a quarter of users have the new code path.
            if p == Progress::Set(25) {
                rate.store(200_000, Ordering::SeqCst); // 20 %
            }
            seen.push(p);
        })
        .await
        .unwrap();
    match &out {
        Outcome::RolledBack { at, reason } => {
            assert_eq!(*at, 25);
            assert!(reason.starts_with("Failed"), "{reason}");
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert!(
        !seen.contains(&Progress::Set(50)),
        "never went past the failing step: {seen:?}"
    );
    assert_eq!(
        share_on(server.addr()).await,
        0,
        "everyone is back on the old path"
    );
    let (_, audit) = http(
        "GET",
        format!(
            "http://{}/api/v1/environments/production/audit",
            server.addr()
        ),
        "",
    )
    .await;
    let text = audit.to_string();
    assert!(text.contains("rollout-bot"), "who made the changes: {text}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_unknown_or_three_variant_flag_is_refused_and_nothing_changes() {
    let (dir, server, _rate, metrics) = setup("refused").await;
    let url = format!(
        "http://{}/api/v1/environments/production/flags/color",
        server.addr()
    );
    let (code, body) = http(
        "PUT",
        url.clone(),
        r#"{"state": "ENABLED", "variants": {"red": "r", "green": "g", "blue": "b"}, "defaultVariant": "red"}"#,
    )
    .await;
    assert!(code == 200 || code == 201, "{code} {body}");
    for (flag, why) in [
        ("no-such-flag", "not found"),
        ("color", "exactly two variants"),
    ] {
        let mut r = rollout(server.addr(), metrics);
        r.flag = flag.into();
        let mut seen = Vec::new();
        let err = r.run(&mut |p| seen.push(p)).await.unwrap_err();
        assert!(
            matches!(&err, serin_flag_rollout::RolloutError::Refused(m) if m.contains(why)),
            "{flag}: {err}"
        );
        assert!(seen.is_empty(), "{flag}: nothing was set: {seen:?}");
    }
    let (_, after) = http("GET", url, "").await;
    assert!(after["flag"].get("targeting").is_none(), "{after}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
