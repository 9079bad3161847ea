//! `GET /sdk/v1/flags`: definitions for local evaluation, server keys only, ETag / 304.

mod common;

use std::sync::Arc;

use common::*;
use serin_flags_server::{FlagSource, RedbStore, SDK_FLAGS_PATH};

const FLAG: &str = r#"{"state": "ENABLED", "variants": {"on": true, "off": false},
  "defaultVariant": "off",
  "targeting": {"if": [{"in": [{"var": "country"}, ["DE"]]}, "on", null]}}"#;

#[tokio::test]
async fn server_keys_read_definitions_with_etag() {
    let dir = std::env::temp_dir().join(format!("serin-sdk-flags-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = RedbStore::open(dir.join("f.redb")).expect("store");
    let r = start(FlagSource::Store(Arc::new(store)), keyring()).await;
    let a = r.addr();
    let res = call(
        a,
        "PUT",
        "/api/v1/environments/production/flags/new-payment-processor",
        Some(ADMIN_PROD),
        Some(FLAG),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.text);

    let res = call(a, "GET", SDK_FLAGS_PATH, Some(SERVER_PROD), None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let body = res.json();
    assert_eq!(
        body["flags"]["new-payment-processor"]["defaultVariant"],
        "off"
    );
    assert_eq!(res.header("x-serin-environment"), Some("production"));
    let tag = res.header("etag").expect("etag").to_owned();
    // The document loads as a flag set.
    serin_flags::FlagSet::from_json_str(&res.text).expect("a flagd document");

    // Unchanged → 304; changed → 200 with a new tag.
    let res = send(
        a,
        "GET",
        SDK_FLAGS_PATH,
        &[
            ("authorization", &format!("Bearer {SERVER_PROD}")),
            ("if-none-match", &tag),
        ],
        None,
    )
    .await;
    assert_eq!(res.status, 304);
    let res = call(
        a,
        "PATCH",
        "/api/v1/environments/production/flags/new-payment-processor",
        Some(ADMIN_PROD),
        Some(r#"{"percentage": 25}"#),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let res = send(
        a,
        "GET",
        SDK_FLAGS_PATH,
        &[
            ("authorization", &format!("Bearer {SERVER_PROD}")),
            ("if-none-match", &tag),
        ],
        None,
    )
    .await;
    assert_eq!(res.status, 200);
    assert_ne!(res.header("etag"), Some(tag.as_str()));
    assert!(res.json()["flags"]["new-payment-processor"]["targeting"]["fractional"].is_array());

    // Scoped to the key's environment; other kinds and no key are refused.
    let res = call(a, "GET", SDK_FLAGS_PATH, Some(SERVER_STAGING), None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["flags"], serde_json::json!({}));
    for (key, status) in [
        (Some(CLIENT_PROD), 403),
        (Some(ADMIN_PROD), 403),
        (None, 401),
    ] {
        let res = call(a, "GET", SDK_FLAGS_PATH, key, None).await;
        assert_eq!(res.status, status, "{key:?}");
        assert!(res.json()["errorCode"].is_string());
    }
    r.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
