//! The in-process management handle (`FlagServer::manager`) that `serin up`'s
//! FlagRollouts write through: same validation, commit, audit log and
//! change event as the HTTP API, with the caller named as the actor.

use std::sync::Arc;

use serde_json::json;
use serin_flags::{EvaluationContext, FlagSet};
use serin_flags_server::store::{AuditQuery, Change};
use serin_flags_server::{FlagServer, FlagSource, KeyRing, RedbStore, ServerOptions, Store};

#[tokio::test]
async fn set_percentage_commits_audits_and_refuses_unsuitable_flags() {
    let dir = std::env::temp_dir().join(format!("serin-flags-inproc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(RedbStore::open(dir.join("flags.redb")).unwrap());
    store
        .commit(
            "production",
            vec![
                Change {
                    key: "checkout".into(),
                    before: None,
                    after: Some(json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"})),
                    action: "create".into(),
                },
                Change {
                    key: "color".into(),
                    before: None,
                    after: Some(json!({"state": "ENABLED", "variants": {"r": "r", "g": "g", "b": "b"}, "defaultVariant": "r"})),
                    action: "create".into(),
                },
            ],
            "setup",
            0,
        )
        .await
        .unwrap();
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::Store(store.clone()),
        keys: KeyRing::empty(),
        environment: "production".into(),
    })
    .await
    .unwrap();
    let m = server.manager();
    let mut changes = server.subscribe();
    m.set_percentage("production", "checkout", 25, "flagrollout/checkout")
        .await
        .unwrap();
    assert_eq!(changes.recv().await.unwrap().environment, "production");
    // Same percentage again: no new commit, no audit entry.
    m.set_percentage("production", "checkout", 25, "flagrollout/checkout")
        .await
        .unwrap();
    let audit = store
        .audit(
            "production",
            AuditQuery {
                flag: Some("checkout".into()),
                before_id: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0].actor, "flagrollout/checkout");
    assert_eq!(audit[0].action, "percentage:25");
    // The stored targeting splits 25/75 between on and off.
    let def = audit[0].after.clone().unwrap();
    let set = FlagSet::from_json_str(&json!({"flags": {"checkout": def}}).to_string()).unwrap();
    let on = (0..400)
        .filter(|i| {
            let ctx = EvaluationContext::with_targeting_key(format!("user-{i}"));
            set.evaluate("checkout", &ctx, 0).value == Some(&json!(true))
        })
        .count();
    assert!((60..=140).contains(&on), "about 25 % of 400 users: {on}");

    let e = m
        .set_percentage("production", "nope", 5, "x")
        .await
        .unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (404, "NOT_FOUND"));
    let e = m
        .set_percentage("production", "color", 5, "x")
        .await
        .unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (422, "UNSUITABLE_FLAG"));
    let e = m
        .set_percentage("bad env!", "checkout", 5, "x")
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 400);
    let _ = std::fs::remove_dir_all(&dir);
}
