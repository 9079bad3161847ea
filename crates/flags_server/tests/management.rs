//! The management API, audit log, kill switch, SSE change stream, keys and restart
//! durability — one suite run against both stores: embedded redb and the PostgreSQL on
//! 127.0.0.1:5432 (user postgres, database test; each test uses its own table prefix).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use serin_flags_server::store::{Change, StoreError};
use serin_flags_server::{FlagSource, KeyRing, PgStore, RedbStore, Store};

const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}_{}_",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        name
    )
}

/// A store kind the suite runs against; `open` may be called again after a restart and must
/// see the same data.
#[derive(Clone)]
enum Kind {
    Redb(std::path::PathBuf),
    Pg(String),
}

impl Kind {
    fn redb(name: &str) -> Kind {
        let dir = std::env::temp_dir().join(format!("serin-mgmt-{}", unique(name)));
        let _ = std::fs::remove_dir_all(&dir);
        Kind::Redb(dir.join("flags.redb"))
    }
    fn pg(name: &str) -> Kind {
        Kind::Pg(unique(name))
    }
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Kind::Redb(p) => Arc::new(RedbStore::open(p).expect("open redb")),
            Kind::Pg(prefix) => Arc::new(
                PgStore::connect(PG_URL, prefix)
                    .await
                    .expect("connect postgres"),
            ),
        }
    }
    async fn cleanup(&self) {
        match self {
            Kind::Redb(p) => {
                if let Some(d) = p.parent() {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
            Kind::Pg(prefix) => {
                let s = PgStore::connect(PG_URL, prefix).await.expect("connect");
                s.drop_tables().await.expect("drop tables");
            }
        }
    }
}

const FLAG: &str = r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                       "metadata": {"tags": "payments,experimental"}}"#;
const P: &str = "/api/v1/environments/production/flags";

fn ctx(user: &str) -> String {
    json!({"context": {"targetingKey": user}}).to_string()
}

async fn crud_percentage_toggle_audit(kind: Kind) {
    let r = start_store(kind.open().await).await;
    let a = r.addr();
    // Create (201), replace (200), unchanged (200), invalid (400 located by pointer).
    let res = call(
        a,
        "PUT",
        &format!("{P}/new-payment-processor"),
        Some(ADMIN_PROD),
        Some(FLAG),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.json()["flag"]["defaultVariant"], "off");
    let on = FLAG.replace("\"defaultVariant\": \"off\"", "\"defaultVariant\": \"on\"");
    let res = call(
        a,
        "PUT",
        &format!("{P}/new-payment-processor"),
        Some(ADMIN_PROD),
        Some(&on),
    )
    .await;
    assert_eq!(res.status, 200);
    let res = call(
        a,
        "PUT",
        &format!("{P}/x"),
        Some(ADMIN_PROD),
        Some(r#"{"state": "MAYBE", "variants": {"a": 1}}"#),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["errorCode"], "INVALID_FLAG");
    assert!(
        res.json()["errorDetails"]
            .as_str()
            .is_some_and(|d| d.starts_with("/state:")),
        "{}",
        res.text
    );
    let res = call(
        a,
        "PUT",
        &format!("{P}/x"),
        Some(ADMIN_PROD),
        Some("{not json"),
    )
    .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.json()["errorCode"], "INVALID_REQUEST");

    // Evaluation sees the write immediately (acknowledged = committed = served).
    let res = post(
        a,
        "/ofrep/v1/evaluate/flags/new-payment-processor",
        Some(SERVER_PROD),
        &ctx("u1"),
    )
    .await;
    assert_eq!(res.json()["value"], true);

    // The seed's rollout call.
    let res = call(
        a,
        "PATCH",
        &format!("{P}/new-payment-processor"),
        Some(ADMIN_PROD),
        Some(r#"{"percentage": 25}"#),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(
        res.json()["flag"]["targeting"],
        json!({"fractional": [["on", 25], ["off", 75]]})
    );
    let mut on_users = 0;
    for i in 0..400 {
        let res = post(
            a,
            "/ofrep/v1/evaluate/flags/new-payment-processor",
            Some(SERVER_PROD),
            &ctx(&format!("user-{i}")),
        )
        .await;
        let j = res.json();
        assert_eq!(j["reason"], "SPLIT");
        if j["value"] == true {
            on_users += 1;
        }
    }
    assert!(
        (60..=140).contains(&on_users),
        "about 25% of 400 users on, got {on_users}"
    );
    for bad in [
        r#"{"percentage": 101}"#,
        r#"{"percentage": -1}"#,
        r#"{"percent": 5}"#,
        "{}",
    ] {
        let res = call(
            a,
            "PATCH",
            &format!("{P}/new-payment-processor"),
            Some(ADMIN_PROD),
            Some(bad),
        )
        .await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
    }
    let three = r#"{"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"}, "defaultVariant": "a"}"#;
    assert_eq!(
        call(
            a,
            "PUT",
            &format!("{P}/three"),
            Some(ADMIN_PROD),
            Some(three)
        )
        .await
        .status,
        201
    );
    let res = call(
        a,
        "PATCH",
        &format!("{P}/three"),
        Some(ADMIN_PROD),
        Some(r#"{"percentage": 10}"#),
    )
    .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.json()["errorCode"], "UNSUITABLE_FLAG");
    let res = call(
        a,
        "PATCH",
        &format!("{P}/missing"),
        Some(ADMIN_PROD),
        Some(r#"{"percentage": 10}"#),
    )
    .await;
    assert_eq!(res.status, 404);

    // Toggle twice.
    let res = call(
        a,
        "POST",
        &format!("{P}/new-payment-processor/toggle"),
        Some(ADMIN_PROD),
        None,
    )
    .await;
    assert_eq!(res.json()["flag"]["state"], "DISABLED");
    let res = post(
        a,
        "/ofrep/v1/evaluate/flags/new-payment-processor",
        Some(SERVER_PROD),
        &ctx("u1"),
    )
    .await;
    assert_eq!(res.json()["reason"], "DISABLED");
    let res = call(
        a,
        "POST",
        &format!("{P}/new-payment-processor/toggle"),
        Some(ADMIN_PROD),
        None,
    )
    .await;
    assert_eq!(res.json()["flag"]["state"], "ENABLED");

    // List and get.
    let res = call(a, "GET", P, Some(ADMIN_PROD), None).await;
    let keys: Vec<String> = res.json()["flags"]
        .as_object()
        .expect("flags")
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["new-payment-processor", "three"]);
    let res = call(a, "GET", &format!("{P}/three"), Some(ADMIN_PROD), None).await;
    assert_eq!(res.json()["flag"]["variants"]["c"], "c");

    // Delete.
    let res = call(a, "DELETE", &format!("{P}/three"), Some(ADMIN_PROD), None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["deleted"]["defaultVariant"], "a");
    assert_eq!(
        call(a, "DELETE", &format!("{P}/three"), Some(ADMIN_PROD), None)
            .await
            .status,
        404
    );
    let res = post(
        a,
        "/ofrep/v1/evaluate/flags/three",
        Some(SERVER_PROD),
        &ctx("u1"),
    )
    .await;
    assert_eq!(res.status, 404);

    // Audit: who, when, before, after — newest first.
    let t0 = serin_clock::format_rfc3339_millis(0);
    let res = call(
        a,
        "GET",
        "/api/v1/environments/production/audit",
        Some(ADMIN_PROD),
        None,
    )
    .await;
    let entries = res.json()["entries"].as_array().expect("entries").clone();
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "delete",
            "toggle",
            "toggle",
            "create",
            "percentage:25",
            "update",
            "create"
        ]
    );
    let pct = &entries[4];
    assert_eq!(pct["actor"], "alice");
    assert_eq!(pct["flag"], "new-payment-processor");
    assert_eq!(pct["before"]["defaultVariant"], "on");
    assert!(pct["before"].get("targeting").is_none());
    assert_eq!(
        pct["after"]["targeting"]["fractional"][0],
        json!(["on", 25])
    );
    assert!(
        pct["at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == t0.len())
    );
    assert_eq!(entries[0]["after"], Value::Null);
    assert_eq!(entries[6]["before"], Value::Null);
    // Paging and filtering.
    let id = entries[1]["id"].as_u64().expect("id");
    let res = call(
        a,
        "GET",
        &format!(
            "/api/v1/environments/production/audit?before={id}&limit=2&flag=new-payment-processor"
        ),
        Some(ADMIN_PROD),
        None,
    )
    .await;
    let paged_json = res.json();
    let paged: Vec<&str> = paged_json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(paged, ["toggle", "percentage:25"]);
    r.stop().await;
    kind.cleanup().await;
}

async fn kill_switch(kind: Kind) {
    let r = start_store(kind.open().await).await;
    let a = r.addr();
    let flags = [
        (
            "exp-a",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"experimental": true}}),
        ),
        (
            "exp-b",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"tags": "beta experimental"}}),
        ),
        (
            "exp-off",
            json!({"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"experimental": true}}),
        ),
        (
            "stable",
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"tags": "core"}}),
        ),
    ];
    for (k, d) in &flags {
        let res = call(
            a,
            "PUT",
            &format!("{P}/{k}"),
            Some(ADMIN_PROD),
            Some(&d.to_string()),
        )
        .await;
        assert_eq!(res.status, 201);
    }
    let mut sse = SseClient::connect(a, CLIENT_PROD).await;
    let res = call(
        a,
        "POST",
        "/api/v1/environments/production/kill-switch",
        Some(ADMIN_PROD),
        Some(r#"{"tag": "experimental"}"#),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let j = res.json();
    assert_eq!(j["disabled"], json!(["exp-a", "exp-b"]));
    assert_eq!(j["tagged"], json!(["exp-a", "exp-b", "exp-off"]));
    // One transaction: one version bump, one change event.
    let ev = sse
        .next_data(Duration::from_secs(10))
        .await
        .expect("change event");
    assert_eq!(ev["type"], "refetchEvaluation");
    assert_eq!(ev["etag"], j["version"].to_string());
    let res = post(a, "/ofrep/v1/evaluate/flags", Some(CLIENT_PROD), &ctx("u1")).await;
    let reasons: Vec<(String, String)> = res.json()["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap_or("").to_owned(),
                f["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("exp-a".into(), "DISABLED".into()),
            ("exp-b".into(), "DISABLED".into()),
            ("exp-off".into(), "DISABLED".into()),
            ("stable".into(), "STATIC".into())
        ]
    );
    let res = call(
        a,
        "GET",
        "/api/v1/environments/production/audit?limit=2",
        Some(ADMIN_PROD),
        None,
    )
    .await;
    let e = res.json()["entries"].clone();
    assert_eq!(e[0]["action"], "kill-switch:experimental");
    assert_eq!(e[1]["action"], "kill-switch:experimental");
    // Again: nothing left to disable.
    let res = call(
        a,
        "POST",
        "/api/v1/environments/production/kill-switch",
        Some(ADMIN_PROD),
        Some(r#"{"tag": "experimental"}"#),
    )
    .await;
    assert_eq!(res.json()["disabled"], json!([]));
    let res = call(
        a,
        "POST",
        "/api/v1/environments/production/kill-switch",
        Some(ADMIN_PROD),
        Some(r#"{"label": "x"}"#),
    )
    .await;
    assert_eq!(res.status, 400);
    r.stop().await;
    kind.cleanup().await;
}

/// Stop the server, drop the store, open it again: every acknowledged change is there.
async fn restart_durability(kind: Kind) {
    let r = start_store(kind.open().await).await;
    let a = r.addr();
    assert_eq!(
        call(
            a,
            "PUT",
            &format!("{P}/durable"),
            Some(ADMIN_PROD),
            Some(FLAG)
        )
        .await
        .status,
        201
    );
    assert_eq!(
        call(
            a,
            "PATCH",
            &format!("{P}/durable"),
            Some(ADMIN_PROD),
            Some(r#"{"percentage": 40}"#)
        )
        .await
        .status,
        200
    );
    let staging = "/api/v1/environments/staging/flags/only-staging";
    assert_eq!(
        call(a, "PUT", staging, Some(ADMIN_STAGING), Some(FLAG))
            .await
            .status,
        201
    );
    r.stop().await;

    let r = start_store(kind.open().await).await;
    let a = r.addr();
    let res = call(a, "GET", &format!("{P}/durable"), Some(ADMIN_PROD), None).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.json()["flag"]["targeting"],
        json!({"fractional": [["on", 40], ["off", 60]]})
    );
    let res = post(
        a,
        "/ofrep/v1/evaluate/flags/durable",
        Some(SERVER_PROD),
        &ctx("u9"),
    )
    .await;
    assert_eq!(res.json()["reason"], "SPLIT");
    let res = post(
        a,
        "/ofrep/v1/evaluate/flags/only-staging",
        Some(SERVER_STAGING),
        &ctx("u9"),
    )
    .await;
    assert_eq!(res.status, 200);
    let res = call(
        a,
        "GET",
        "/api/v1/environments/production/audit",
        Some(ADMIN_PROD),
        None,
    )
    .await;
    assert_eq!(res.json()["entries"].as_array().map(Vec::len), Some(2));
    r.stop().await;
    kind.cleanup().await;
}

/// A change reaches an SSE client long before a generous deadline (the bench measures it).
async fn sse_change_event(kind: Kind) {
    let r = start_store(kind.open().await).await;
    let a = r.addr();
    let mut sse = SseClient::connect(a, SERVER_PROD).await;
    let mut staging = SseClient::connect(a, SERVER_STAGING).await;
    let sent = Instant::now();
    let res = call(a, "PUT", &format!("{P}/live"), Some(ADMIN_PROD), Some(FLAG)).await;
    let version = res.json()["version"].clone();
    let ev = sse
        .next_data(Duration::from_secs(5))
        .await
        .expect("event within 5 s");
    eprintln!("SSE change event after {:?}", sent.elapsed());
    assert_eq!(ev["type"], "refetchEvaluation");
    assert_eq!(ev["etag"], version.to_string());
    assert!(ev["lastModified"].is_i64());
    // Other environments are not told.
    assert!(
        staging
            .next_data(Duration::from_millis(300))
            .await
            .is_none()
    );
    r.stop().await;
    kind.cleanup().await;
}

/// Concurrent read-modify-write never loses an update: a stale `before` is refused.
async fn stale_commit_conflicts(kind: Kind) {
    let store = kind.open().await;
    let def = json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"});
    let change = |before: Option<Value>, after: Option<Value>| Change {
        key: "k".into(),
        before,
        after,
        action: "test".into(),
    };
    let v1 = store
        .commit("production", vec![change(None, Some(def.clone()))], "t", 1)
        .await
        .expect("commit");
    let err = store
        .commit("production", vec![change(None, Some(def.clone()))], "t", 2)
        .await
        .expect_err("stale");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let loaded = store.load("production").await.expect("load");
    assert_eq!(loaded.version, v1);
    assert_eq!(loaded.flags.get("k"), Some(&def));
    assert_eq!(store.environments().await.expect("envs"), ["production"]);
    drop(store);
    kind.cleanup().await;
}

async fn keys_and_scopes(kind: Kind) {
    let r = start_store(kind.open().await).await;
    let a = r.addr();
    let one = "/ofrep/v1/evaluate/flags/f";
    let bulk = "/ofrep/v1/evaluate/flags";
    assert_eq!(
        call(a, "PUT", &format!("{P}/f"), Some(ADMIN_PROD), Some(FLAG))
            .await
            .status,
        201
    );
    let body = ctx("u");
    // Missing / unknown key: 401 JSON.
    for (path, key) in [
        (one, None),
        (one, Some("nope")),
        (bulk, None),
        (bulk, Some("nope")),
    ] {
        let res = post(a, path, key, &body).await;
        assert_eq!(res.status, 401, "{path} {key:?}");
        assert_eq!(res.json()["errorCode"], "UNAUTHORIZED");
    }
    // X-API-Key works as well as Bearer.
    let res = send(a, "POST", one, &[("x-api-key", SERVER_PROD)], Some(&body)).await;
    assert_eq!(res.status, 200);
    // Client keys: bulk only.
    assert_eq!(post(a, one, Some(CLIENT_PROD), &body).await.status, 403);
    assert_eq!(post(a, bulk, Some(CLIENT_PROD), &body).await.status, 200);
    // Admin tokens do not evaluate; SDK keys do not manage.
    let res = post(a, one, Some(ADMIN_PROD), &body).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["errorCode"], "FORBIDDEN");
    for k in [SERVER_PROD, CLIENT_PROD] {
        let res = call(a, "GET", P, Some(k), None).await;
        assert_eq!(res.status, 403, "{k}");
    }
    assert_eq!(call(a, "GET", P, None, None).await.status, 401);
    // Environment scope: staging's key sees staging's (empty) flags, and staging's admin
    // cannot touch production.
    assert_eq!(post(a, one, Some(SERVER_STAGING), &body).await.status, 404);
    let res = call(a, "PUT", &format!("{P}/g"), Some(ADMIN_STAGING), Some(FLAG)).await;
    assert_eq!(res.status, 403);
    assert!(
        res.json()["errorDetails"]
            .as_str()
            .is_some_and(|d| d.contains("staging"))
    );
    let res = call(
        a,
        "GET",
        "/api/v1/environments/bad%20env/flags",
        Some(ADMIN_PROD),
        None,
    )
    .await;
    assert_eq!(res.status, 400);
    // SSE needs a key as well.
    assert_eq!(
        call(a, "GET", "/ofrep/v1/events", None, None).await.status,
        401
    );
    r.stop().await;

    // Keys but no admin token: management disabled (403), evaluation needs keys.
    let mut ring = KeyRing::empty();
    ring.insert(
        SERVER_PROD,
        serin_flags_server::KeyInfo {
            name: "s".into(),
            kind: serin_flags_server::KeyKind::Server,
            environment: "production".into(),
        },
    );
    let r = start(FlagSource::Store(kind.open().await), ring).await;
    let res = call(r.addr(), "GET", P, Some(SERVER_PROD), None).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json()["errorCode"], "MANAGEMENT_DISABLED");
    assert_eq!(
        post(r.addr(), one, Some(SERVER_PROD), &body).await.status,
        200
    );
    r.stop().await;
    kind.cleanup().await;
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod redb {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Kind::redb(stringify!($name))).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(super::Kind::pg(stringify!($name))).await } )*
        }
    };
}

suite!(
    crud_percentage_toggle_audit,
    kill_switch,
    restart_durability,
    sse_change_event,
    stale_commit_conflicts,
    keys_and_scopes
);

/// Two servers sharing one PostgreSQL: a change through one reaches the other's evaluation
/// and SSE clients (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_servers_share_state_and_events() {
    let kind = Kind::pg("shared");
    let one = start_store(kind.open().await).await;
    let two = start_store(kind.open().await).await;
    let mut sse = SseClient::connect(two.addr(), SERVER_PROD).await;
    let sent = Instant::now();
    let res = call(
        one.addr(),
        "PUT",
        &format!("{P}/shared"),
        Some(ADMIN_PROD),
        Some(FLAG),
    )
    .await;
    assert_eq!(res.status, 201);
    let ev = sse
        .next_data(Duration::from_secs(5))
        .await
        .expect("event on the other server");
    eprintln!("cross-server SSE change event after {:?}", sent.elapsed());
    assert_eq!(ev["etag"], res.json()["version"].to_string());
    let res = post(
        two.addr(),
        "/ofrep/v1/evaluate/flags/shared",
        Some(SERVER_PROD),
        &ctx("u"),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["value"], false);
    // Concurrent rollouts through both servers: both land, in some order, none lost.
    let path = format!("{P}/shared");
    let (r1, r2) = tokio::join!(
        call(
            one.addr(),
            "PATCH",
            &path,
            Some(ADMIN_PROD),
            Some(r#"{"percentage": 10}"#)
        ),
        call(
            two.addr(),
            "PATCH",
            &path,
            Some(ADMIN_PROD),
            Some(r#"{"defaultVariant": "on"}"#)
        ),
    );
    assert_eq!(
        (r1.status, r2.status),
        (200, 200),
        "{} {}",
        r1.text,
        r2.text
    );
    // Server one learns of a commit made through server two by notification: read it once
    // both changes have arrived (the version counts both commits).
    let want = r1.json()["version"]
        .as_u64()
        .max(r2.json()["version"].as_u64());
    let f = eventually(
        Duration::from_secs(10),
        "both changes on server one",
        || async {
            let res = call(
                one.addr(),
                "GET",
                &format!("{P}/shared"),
                Some(ADMIN_PROD),
                None,
            )
            .await;
            let j = res.json();
            (j["version"].as_str().and_then(|v| v.parse::<u64>().ok()) >= want)
                .then(|| j["flag"].clone())
        },
    )
    .await;
    assert_eq!(f["defaultVariant"], "on");
    assert_eq!(f["targeting"]["fractional"][0], json!(["on", 10]));
    one.stop().await;
    two.stop().await;
    kind.cleanup().await;
}
