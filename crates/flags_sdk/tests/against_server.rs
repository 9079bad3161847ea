//! The SDK against the real flag server, in-process, over loopback HTTP (no mocks): same
//! answers as OFREP, changes over SSE, outage → Stale → recovery, cache file, never
//! reachable → code defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use serin_flags_sdk::{BuildError, Client, ErrorCode, EvaluationContext, Reason, Status};
use serin_flags_server::{
    FlagServer, FlagSource, KeyInfo, KeyKind, KeyRing, RedbStore, Running, ServerOptions,
};

const SERVER_KEY: &str = "srv-prod-5e1f0a";
const ADMIN_KEY: &str = "adm-prod-9c2d44";
const CLIENT_KEY: &str = "cli-prod-3b7a11";
const STAGING_KEY: &str = "srv-staging-71aa02";
const DEADLINE: Duration = Duration::from_secs(15);

fn keyring() -> KeyRing {
    let mut k = KeyRing::empty();
    for (v, name, kind, env) in [
        (SERVER_KEY, "checkout", KeyKind::Server, "production"),
        (ADMIN_KEY, "alice", KeyKind::Admin, "production"),
        (CLIENT_KEY, "web", KeyKind::Client, "production"),
        (STAGING_KEY, "checkout-staging", KeyKind::Server, "staging"),
    ] {
        k.insert(
            v,
            KeyInfo {
                name: name.into(),
                kind,
                environment: env.into(),
            },
        );
    }
    k
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("serin-sdk-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

async fn start(dir: &Path, addr: SocketAddr) -> Running {
    let store = RedbStore::open(dir.join("flags.redb")).expect("store");
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::Store(Arc::new(store)),
        keys: keyring(),
        environment: "production".into(),
    })
    .await
    .expect("server starts");
    server.bind(addr).await.expect("bind")
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .expect("request");
    let res = client.request(req).await.expect("request sent");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The seed's flags: the payment processor (country rule, then a 50/50 split), an integer
/// rollout percentage, and one flag of each other type.
async fn seed(addr: SocketAddr) {
    let flags = [
        (
            "new-payment-processor",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                   "targeting": {"if": [{"==": [{"var": "plan"}, "enterprise"]}, "on",
                                 {"in": [{"var": "country"}, ["DE", "FR"]]},
                                 {"fractional": [{"cat": [{"var": "user_id"}, "npp"]}, ["on", 50], ["off", 50]]},
                                 null]}}),
        ),
        (
            "payment-rollout-percentage",
            json!({"state": "ENABLED", "variants": {"none": 0, "some": 10, "quarter": 25}, "defaultVariant": "some",
                   "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "quarter", null]}}),
        ),
        (
            "checkout-theme",
            json!({"state": "ENABLED", "variants": {"light": "light", "dark": "dark"}, "defaultVariant": "light",
                   "targeting": {"fractional": [["light", 70], ["dark", 30]]}}),
        ),
        (
            "fee-rate",
            json!({"state": "ENABLED", "variants": {"std": 0.029}, "defaultVariant": "std"}),
        ),
        (
            "limits",
            json!({"state": "DISABLED", "variants": {"a": {"max": 5}}, "defaultVariant": "a"}),
        ),
    ];
    for (key, def) in flags {
        let (s, body) = call(
            addr,
            "PUT",
            &format!("/api/v1/environments/production/flags/{key}"),
            ADMIN_KEY,
            Some(&def.to_string()),
        )
        .await;
        assert_eq!(s, 201, "{key}: {body}");
    }
}

fn user(i: usize) -> EvaluationContext {
    let id = format!("user-{i}");
    EvaluationContext::with_targeting_key(id.clone())
        .with("user_id", id)
        .with("country", ["DE", "US", "BR", "FR", "JP"][i % 5])
        .with("plan", ["free", "pro", "enterprise"][i % 3])
}

fn ofrep_reason(r: Reason) -> &'static str {
    r.as_str()
}

/// Compares the SDK's local answers with the server's OFREP answers for 200 users; returns
/// how many users have the payment processor on.
async fn compare_with_ofrep(client: &Client, addr: SocketAddr) -> usize {
    let mut on = 0;
    for i in 0..200 {
        let ctx = user(i);
        let body = json!({ "context": ctx.attributes() }).to_string();
        for key in [
            "new-payment-processor",
            "payment-rollout-percentage",
            "checkout-theme",
        ] {
            let (s, remote) = call(
                addr,
                "POST",
                &format!("/ofrep/v1/evaluate/flags/{key}"),
                SERVER_KEY,
                Some(&body),
            )
            .await;
            assert_eq!(s, 200, "{key}: {remote}");
            let (value, variant, reason) = match key {
                "new-payment-processor" => {
                    let d = client.bool_details(key, &ctx, false);
                    on += usize::from(d.value);
                    (json!(d.value), d.variant, d.reason)
                }
                "payment-rollout-percentage" => {
                    let d = client.int_details(key, &ctx, -1);
                    (json!(d.value), d.variant, d.reason)
                }
                _ => {
                    let d = client.string_details(key, &ctx, "none");
                    (json!(d.value), d.variant, d.reason)
                }
            };
            assert_eq!(remote["value"], value, "{key} for user {i}: {remote}");
            assert_eq!(
                remote["variant"].as_str(),
                variant.as_deref(),
                "{key} for user {i}"
            );
            assert_eq!(remote["reason"], ofrep_reason(reason), "{key} for user {i}");
        }
    }
    on
}

async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn local_answers_match_ofrep_and_changes_arrive_over_sse() {
    let dir = temp_dir("match");
    let server = start(&dir, "127.0.0.1:0".parse().expect("addr")).await;
    let addr = server.addr();
    seed(addr).await;
    let client = Client::builder(format!("http://{addr}"))
        .sdk_key(SERVER_KEY)
        .environment("production")
        .build()
        .await
        .expect("client");
    assert_eq!(client.status(), Status::Ready);
    assert_eq!(client.environment().as_deref(), Some("production"));
    assert_eq!(client.flag_keys().len(), 5);

    let on_before = compare_with_ofrep(&client, addr).await;
    // The seed's calls: IsEnabled with user_id/country/plan, an integer variation.
    let seed_ctx = EvaluationContext::with_targeting_key("u-9")
        .with("user_id", "u-9")
        .with("country", "US")
        .with("plan", "enterprise");
    assert!(client.is_enabled("new-payment-processor", &seed_ctx));
    assert_eq!(
        client.int_value("payment-rollout-percentage", &seed_ctx, 0),
        10
    );
    let f = client.float_details("fee-rate", &seed_ctx, 0.0);
    assert_eq!((f.value, f.reason), (0.029, Reason::Static));
    let mut dflt = serde_json::Map::new();
    dflt.insert("max".into(), json!(1));
    let o = client.object_details("limits", &seed_ctx, dflt.clone());
    assert_eq!((o.value, o.reason), (dflt, Reason::Disabled));
    let m = client.int_details("checkout-theme", &seed_ctx, 7);
    assert_eq!(
        (m.value, m.reason, m.error_code),
        (7, Reason::Error, Some(ErrorCode::TypeMismatch))
    );
    let nf = client.bool_details("nope", &seed_ctx, true);
    assert_eq!(
        (nf.value, nf.error_code),
        (true, Some(ErrorCode::FlagNotFound))
    );

    // The seed's rollout call reaches the SDK over the change stream.
    let before = client.flag_set_version();
    let t0 = Instant::now();
    let (s, body) = call(
        addr,
        "PATCH",
        "/api/v1/environments/production/flags/new-payment-processor",
        ADMIN_KEY,
        Some(r#"{"percentage": 25}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let acked = t0.elapsed();
    until("the change to reach the SDK", || {
        (client.flag_set_version() != before).then_some(())
    })
    .await;
    let arrived = t0.elapsed();
    eprintln!("PATCH acknowledged after {acked:?}; SDK had the new set after {arrived:?}");
    let on_after = compare_with_ofrep(&client, addr).await;
    assert_ne!(on_before, on_after);
    assert!(
        (20..=80).contains(&on_after),
        "25 % of 200 users, got {on_after}"
    );
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn outage_keeps_last_set_then_recovers_and_cache_starts_offline() {
    let dir = temp_dir("outage");
    let cache = dir.join("flags-cache.json");
    let server = start(&dir, "127.0.0.1:0".parse().expect("addr")).await;
    let addr = server.addr();
    seed(addr).await;
    let client = Client::builder(format!("http://{addr}"))
        .sdk_key(SERVER_KEY)
        .cache_file(&cache)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .await
        .expect("client");
    assert_eq!(client.status(), Status::Ready);
    let ctx = user(3); // FR, free: the country rule → split
    let answer = client.bool_details("new-payment-processor", &ctx, false);
    assert!(cache.exists(), "the cache file is written");

    server.stop().await;
    until("Stale after the server stopped", || {
        (client.status() == Status::Stale).then_some(())
    })
    .await;
    let stale = client.bool_details("new-payment-processor", &ctx, !answer.value);
    assert_eq!((stale.value, stale.reason), (answer.value, answer.reason));
    assert_eq!(client.int_value("payment-rollout-percentage", &ctx, -1), 10);

    // A new process while the server is down starts from the cache file.
    let offline = Client::builder(format!("http://{addr}"))
        .sdk_key(SERVER_KEY)
        .environment("production")
        .cache_file(&cache)
        .build()
        .await
        .expect("offline client");
    assert_eq!(offline.status(), Status::Stale);
    assert_eq!(offline.flag_set_version(), client.flag_set_version());
    assert_eq!(
        offline
            .bool_details("new-payment-processor", &ctx, false)
            .value,
        answer.value
    );
    drop(offline);

    // Back on the same address: Ready again, and new changes arrive.
    let server = start(&dir, addr).await;
    until("Ready after the server came back", || {
        (client.status() == Status::Ready).then_some(())
    })
    .await;
    let before = client.flag_set_version();
    let (s, body) = call(
        addr,
        "PATCH",
        "/api/v1/environments/production/flags/payment-rollout-percentage",
        ADMIN_KEY,
        Some(r#"{"defaultVariant": "none"}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    until("the change after recovery", || {
        (client.flag_set_version() != before).then_some(())
    })
    .await;
    assert_eq!(client.int_value("payment-rollout-percentage", &ctx, -1), 0);
    drop(client);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn never_reachable_gives_code_defaults_with_provider_not_ready() {
    // A port nobody listens on.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let client = Client::builder(format!("http://{addr}"))
        .sdk_key(SERVER_KEY)
        .build()
        .await
        .expect("an unreachable server is not a build error");
    assert_eq!(client.status(), Status::NotReady);
    let ctx = user(1);
    let d = client.bool_details("new-payment-processor", &ctx, true);
    assert_eq!(
        (d.value, d.reason, d.error_code),
        (true, Reason::Error, Some(ErrorCode::ProviderNotReady))
    );
    assert_eq!(
        d.error_code.map(ErrorCode::as_str),
        Some("PROVIDER_NOT_READY")
    );
    assert!(!client.is_enabled("new-payment-processor", &ctx));
    assert_eq!(
        client.string_value("checkout-theme", &ctx, "light"),
        "light"
    );
    assert_eq!(client.int_value("payment-rollout-percentage", &ctx, 5), 5);
    assert_eq!(client.float_value("fee-rate", &ctx, 0.5), 0.5);
    assert!(
        client
            .object_value("limits", &ctx, serde_json::Map::new())
            .is_empty()
    );
    assert_eq!(client.flag_set_version(), None);
}

#[tokio::test]
async fn wrong_keys_fail_the_build() {
    let dir = temp_dir("keys");
    let server = start(&dir, "127.0.0.1:0".parse().expect("addr")).await;
    let base = format!("http://{}", server.addr());
    for key in ["nope", CLIENT_KEY, ADMIN_KEY] {
        let r = Client::builder(&base).sdk_key(key).build().await;
        assert!(
            matches!(r, Err(BuildError::Rejected { .. })),
            "{key}: {r:?}"
        );
    }
    let r = Client::builder(&base)
        .sdk_key(STAGING_KEY)
        .environment("production")
        .build()
        .await;
    assert!(
        matches!(r, Err(BuildError::EnvironmentMismatch { .. })),
        "{r:?}"
    );
    let r = Client::builder("https://127.0.0.1:1").build().await;
    assert!(matches!(r, Err(BuildError::InvalidUrl { .. })), "{r:?}");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
