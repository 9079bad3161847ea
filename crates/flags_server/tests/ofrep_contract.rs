//! The OFREP v0.3 contract (shared/compat/ofrep/openapi.yaml) over real HTTP on loopback:
//! every documented status code and body shape, ETag / If-None-Match, and file reloading.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use serin_flags_server::{FlagServer, FlagSource, KeyRing, ServerOptions};

const FLAGS: &str = r#"{
  "flags": {
    "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                    "metadata": {"team": "payments", "experimental": true}},
    "geo": {"state": "ENABLED", "variants": {"eu": "euro", "world": "dollar"}, "defaultVariant": "world",
            "targeting": {"if": [{"in": [{"var": "country"}, ["DE", "FR"]]}, "eu", null]}},
    "split": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
              "targeting": {"fractional": [["on", 100], ["off", 0]]}},
    "killed": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "no-default": {"state": "ENABLED", "variants": {"a": 1, "b": 2}},
    "broken": {"state": "ENABLED", "variants": {"a": 1.5, "b": 2.5}, "defaultVariant": "a",
               "targeting": {"var": "wanted"}},
    "obj": {"state": "ENABLED", "variants": {"red": {"color": "red"}, "blue": {"color": "blue"}},
            "defaultVariant": "blue"}
  }
}"#;

const BULK_CTX: &str =
    r#"{"context": {"targetingKey": "user-42", "country": "DE", "wanted": "zzz"}}"#;
const CTX: &str = r#"{"context": {"targetingKey": "user-42", "country": "DE"}}"#;

fn write(path: &std::path::Path, text: &str) {
    // Write then rename, as editors and config management do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("serin-ofrep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

async fn open_server(name: &str) -> (Running, std::path::PathBuf) {
    let dir = temp_dir(name);
    let path = dir.join("flags.json");
    write(&path, FLAGS);
    (
        start(FlagSource::File(path.clone()), KeyRing::empty()).await,
        path,
    )
}

use serin_flags_server::Running;

async fn eval(r: &Running, key: &str, body: &str) -> Resp {
    post(
        r.addr(),
        &format!("/ofrep/v1/evaluate/flags/{key}"),
        None,
        body,
    )
    .await
}

#[tokio::test]
async fn single_flag_success_shapes() {
    let (r, _) = open_server("single").await;
    let res = eval(&r, "static-bool", CTX).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(
        res.json(),
        json!({"key": "static-bool", "reason": "STATIC", "variant": "on", "value": true,
               "metadata": {"team": "payments", "experimental": true}})
    );
    let res = eval(&r, "geo", CTX).await;
    assert_eq!(
        res.json(),
        json!({"key": "geo", "reason": "TARGETING_MATCH", "variant": "eu", "value": "euro", "metadata": {}})
    );
    let res = eval(&r, "split", CTX).await;
    assert_eq!(
        res.json(),
        json!({"key": "split", "reason": "SPLIT", "variant": "on", "value": true, "metadata": {}})
    );
    // Targeting returned null: the default variant, reason DEFAULT as flagd sends it.
    let res = eval(
        &r,
        "geo",
        r#"{"context": {"targetingKey": "u", "country": "US"}}"#,
    )
    .await;
    assert_eq!(
        res.json(),
        json!({"key": "geo", "reason": "DEFAULT", "variant": "world", "value": "dollar", "metadata": {}})
    );
    // Disabled: codeDefaultFlag (no value, no variant), HTTP 200, as flagd since #1966.
    let res = eval(&r, "killed", CTX).await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.json(),
        json!({"key": "killed", "reason": "DISABLED", "metadata": {}})
    );
    // No default variant and no targeting: code default.
    let res = eval(&r, "no-default", CTX).await;
    assert_eq!(
        res.json(),
        json!({"key": "no-default", "reason": "DEFAULT", "metadata": {}})
    );
    // Object and float values.
    let res = eval(
        &r,
        "broken",
        r#"{"context": {"targetingKey": "u", "wanted": "b"}}"#,
    )
    .await;
    assert_eq!(
        res.json(),
        json!({"key": "broken", "reason": "TARGETING_MATCH", "variant": "b", "value": 2.5, "metadata": {}})
    );
    let res = eval(&r, "obj", CTX).await;
    assert_eq!(
        res.json(),
        json!({"key": "obj", "reason": "STATIC", "variant": "blue", "value": {"color": "blue"}, "metadata": {}})
    );
    let res = eval(
        &r,
        "broken",
        r#"{"context": {"targetingKey": "u", "wanted": "a"}}"#,
    )
    .await;
    assert_eq!(res.json()["value"], json!(1.5));
    r.stop().await;
}

#[tokio::test]
async fn single_flag_errors() {
    let (r, _) = open_server("errors").await;
    let res = eval(&r, "nope", CTX).await;
    assert_eq!(res.status, 404);
    assert_eq!(
        res.json(),
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND", "errorDetails": "flag \"nope\" not found", "metadata": {}})
    );
    // Targeting returned a variant the flag does not have: GENERAL, as flagd.
    let res = eval(
        &r,
        "broken",
        r#"{"context": {"targetingKey": "u", "wanted": "zzz"}}"#,
    )
    .await;
    assert_eq!(res.status, 400);
    let j = res.json();
    assert_eq!(j["key"], "broken");
    assert_eq!(j["errorCode"], "GENERAL");
    assert!(
        j["errorDetails"]
            .as_str()
            .is_some_and(|d| d.contains("zzz")),
        "{j}"
    );
    for (body, detail) in [
        ("", "not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "must be an object"),
        (r#"{"context": 3}"#, "\"context\" must be an object"),
        (r#"{"context": [1]}"#, "\"context\" must be an object"),
    ] {
        let res = eval(&r, "static-bool", body).await;
        assert_eq!(res.status, 400, "{body}");
        let j = res.json();
        assert_eq!(j["key"], "static-bool", "{body}");
        assert_eq!(j["errorCode"], "INVALID_CONTEXT", "{body}");
        assert!(
            j["errorDetails"]
                .as_str()
                .is_some_and(|d| d.contains(detail)),
            "{body}: {j}"
        );
    }
    // No targetingKey, no context, no body members at all: evaluated like flagd does.
    for body in [
        "{}",
        r#"{"context": {}}"#,
        r#"{"context": null}"#,
        r#"{"context": {"targetingKey": 7}}"#,
    ] {
        let res = eval(&r, "static-bool", body).await;
        assert_eq!(res.status, 200, "{body}");
        assert_eq!(res.json()["value"], json!(true), "{body}");
        assert_eq!(res.json()["reason"], "STATIC", "{body}");
    }
    // fractional with nothing to hash: the default variant, DEFAULT.
    let res = eval(&r, "split", r#"{"context": {"country": "DE"}}"#).await;
    assert_eq!(
        res.json(),
        json!({"key": "split", "reason": "DEFAULT", "variant": "off", "value": false, "metadata": {}})
    );
    // Wrong method and unknown routes: JSON errors too.
    let res = call(
        r.addr(),
        "GET",
        "/ofrep/v1/evaluate/flags/static-bool",
        None,
        None,
    )
    .await;
    assert_eq!(res.status, 405);
    assert_eq!(res.json()["errorCode"], "METHOD_NOT_ALLOWED");
    let res = call(r.addr(), "POST", "/ofrep/v2/whatever", None, Some("{}")).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["errorCode"], "NOT_FOUND");
    r.stop().await;
}

#[tokio::test]
async fn bulk_shapes_etag_and_304() {
    let (r, path) = open_server("bulk").await;
    let a = r.addr();
    let res = post(a, "/ofrep/v1/evaluate/flags", None, BULK_CTX).await;
    assert_eq!(res.status, 200);
    let etag = res.header("etag").expect("ETag header").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong, quoted: {etag}"
    );
    let j = res.json();
    let flags = j["flags"].as_array().expect("flags array");
    let keys: Vec<&str> = flags.iter().filter_map(|f| f["key"].as_str()).collect();
    assert_eq!(
        keys,
        [
            "broken",
            "geo",
            "killed",
            "no-default",
            "obj",
            "split",
            "static-bool"
        ]
    );
    assert_eq!(
        flags[1],
        json!({"key": "geo", "reason": "TARGETING_MATCH", "variant": "eu", "value": "euro", "metadata": {}})
    );
    assert_eq!(
        flags[2],
        json!({"key": "killed", "reason": "DISABLED", "metadata": {}})
    );
    // A per-flag failure is an evaluationFailure item inside a 200.
    assert_eq!(flags[0]["errorCode"], "GENERAL");
    assert_eq!(flags[0]["key"], "broken");
    assert_eq!(
        j["eventStreams"],
        json!([{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/events"}, "inactivityDelaySec": 120}])
    );
    assert_eq!(j["metadata"]["environment"], "production");
    assert!(j["metadata"]["version"].is_string());

    // If-None-Match with the ETag: 304, no body, same ETag. Lists and weak tags match too.
    let res = send(
        a,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("if-none-match", &etag)],
        Some(BULK_CTX),
    )
    .await;
    assert_eq!(res.status, 304);
    assert_eq!(res.text, "");
    assert_eq!(res.header("etag"), Some(etag.as_str()));
    let list = format!("\"other\", W/{etag}");
    let res = send(
        a,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("if-none-match", &list)],
        Some(BULK_CTX),
    )
    .await;
    assert_eq!(res.status, 304);
    // flagConfigEtag / flagConfigLastModified query metadata is accepted.
    let res = send(
        a,
        "POST",
        "/ofrep/v1/evaluate/flags?flagConfigEtag=abc&flagConfigLastModified=1771622898",
        &[("if-none-match", &etag)],
        Some(BULK_CTX),
    )
    .await;
    assert_eq!(res.status, 304);
    // Another context: its own ETag, so never a stale 304.
    let other = r#"{"context": {"targetingKey": "user-43", "country": "US"}}"#;
    let res = send(
        a,
        "POST",
        "/ofrep/v1/evaluate/flags",
        &[("if-none-match", &etag)],
        Some(other),
    )
    .await;
    assert_eq!(res.status, 200);
    assert_ne!(res.header("etag"), Some(etag.as_str()));

    // Changing the file changes the ETag.
    write(&path, &FLAGS.replace("\"euro\"", "\"eur\""));
    let res = eventually(Duration::from_secs(10), "reload", || async {
        let res = send(
            a,
            "POST",
            "/ofrep/v1/evaluate/flags",
            &[("if-none-match", &etag)],
            Some(BULK_CTX),
        )
        .await;
        (res.status == 200).then_some(res)
    })
    .await;
    assert_ne!(res.header("etag"), Some(etag.as_str()));
    assert_eq!(res.json()["flags"][1]["value"], "eur");

    // Bulk request errors: bulkEvaluationFailure (no key).
    let res = post(a, "/ofrep/v1/evaluate/flags", None, r#"{"context": []}"#).await;
    assert_eq!(res.status, 400);
    let j = res.json();
    assert_eq!(j["errorCode"], "INVALID_CONTEXT");
    assert!(j.get("key").is_none(), "{j}");
    assert!(j["errorDetails"].is_string());
    r.stop().await;
}

#[tokio::test]
async fn bad_file_keeps_old_flags_and_a_fixed_file_loads() {
    let (r, path) = open_server("reload").await;
    let before = eval(&r, "geo", CTX).await.json();
    let mut events = r.server().subscribe();
    // Unknown state: a located load error; the old flags stay.
    write(&path, &FLAGS.replace("\"DISABLED\"", "\"OFF\""));
    // A valid change written afterwards is picked up, proving the bad one was read and skipped.
    write(&path, &FLAGS.replace("\"dollar\"", "\"usd\""));
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("reload event in time")
        .expect("event");
    assert_eq!(ev.environment, "production");
    let res = eval(
        &r,
        "geo",
        r#"{"context": {"targetingKey": "u", "country": "US"}}"#,
    )
    .await;
    assert_eq!(res.json()["value"], "usd");
    assert_eq!(eval(&r, "geo", CTX).await.json(), before);

    // Now only a bad file: evaluation keeps serving the last good flags.
    write(&path, "{\"flags\": {\"geo\": {\"state\": \"ENABLED\"");
    // Give the poller several periods to see it (the assertion is that nothing changes).
    let seen = tokio::time::timeout(Duration::from_millis(1500), events.recv()).await;
    assert!(seen.is_err(), "a bad file must not replace the flags");
    let res = eval(
        &r,
        "geo",
        r#"{"context": {"targetingKey": "u", "country": "US"}}"#,
    )
    .await;
    assert_eq!(res.json()["value"], "usd");
    r.stop().await;
}

#[tokio::test]
async fn yaml_file_and_located_startup_error() {
    let dir = temp_dir("yaml");
    let path = dir.join("flags.yaml");
    std::fs::write(
        &path,
        "flags:\n  new-payment-processor:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: on\n",
    )
    .expect("write");
    let r = start(FlagSource::File(path.clone()), KeyRing::empty()).await;
    let res = eval(&r, "new-payment-processor", CTX).await;
    assert_eq!(res.json()["value"], Value::Bool(true));
    r.stop().await;

    std::fs::write(
        &path,
        "flags:\n  x:\n    state: MAYBE\n    variants: {on: true}\n",
    )
    .expect("write");
    let err = FlagServer::start(ServerOptions {
        source: FlagSource::File(path),
        keys: KeyRing::empty(),
        environment: "production".into(),
    })
    .await
    .err()
    .expect("bad file fails at start");
    let msg = err.to_string();
    assert!(msg.contains("flags.yaml:3:"), "located: {msg}");
    assert!(msg.contains("/flags/x/state"), "pointer: {msg}");
}

#[tokio::test]
async fn open_mode_refuses_non_loopback_and_says_so() {
    let dir = temp_dir("bind");
    let path = dir.join("flags.json");
    write(&path, FLAGS);
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::File(path),
        keys: KeyRing::empty(),
        environment: "production".into(),
    })
    .await
    .expect("start");
    assert!(
        server
            .notes()
            .iter()
            .any(|n| n.contains("open without auth, on loopback only"))
    );
    assert!(
        server
            .notes()
            .iter()
            .any(|n| n.contains("management API disabled"))
    );
    let err = server
        .bind("0.0.0.0:0".parse().expect("addr"))
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("refusing to listen on 0.0.0.0"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_flag_is_served_as_flagd_does_and_warned_about_at_load() {
    let dir = temp_dir("bad-flag");
    let path = dir.join("flags.json");
    write(
        &path,
        r#"{"flags": {
  "good": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
  "dangling": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
               "targeting": {"$ref": "nowhere"}},
  "arity": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"starts_with": [{"var": "email"}]}, "on", null]}}
}}"#,
    );
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::File(path.clone()),
        keys: KeyRing::empty(),
        environment: "production".into(),
    })
    .await
    .expect("a bad flag does not stop the file from loading");
    let warnings: Vec<&String> = server
        .notes()
        .iter()
        .filter(|n| n.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{:?}", server.notes());
    let shown = path.display().to_string();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("{shown}:4:"))
                && w.contains("/flags/dangling/targeting/$ref")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("{shown}:6:")) && w.contains("starts_with")),
        "{warnings:?}"
    );
    let r = server
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    assert_eq!(eval(&r, "good", "{}").await.json()["value"], json!(true));
    let res = eval(&r, "dangling", "{}").await;
    assert_eq!(
        (res.status, res.json()["errorCode"].clone()),
        (400, json!("PARSE_ERROR"))
    );
    let res = eval(&r, "arity", r#"{"context": {"email": "a@b"}}"#).await;
    assert_eq!(
        res.json(),
        json!({"key": "arity", "reason": "DEFAULT", "variant": "off", "value": false, "metadata": {}})
    );
    r.stop().await;
}

#[tokio::test]
async fn several_sources_merge_with_flagd_precedence_and_reload() {
    let dir = temp_dir("sources");
    let base = dir.join("base.json");
    let overrides = dir.join("overrides.d");
    std::fs::create_dir_all(&overrides).expect("mkdir");
    write(
        &base,
        r#"{"metadata": {"flagSetId": "base"}, "flags": {
  "a": {"state": "ENABLED", "variants": {"x": "base-a"}, "defaultVariant": "x"},
  "b": {"state": "ENABLED", "variants": {"x": "base-b"}, "defaultVariant": "x"}}}"#,
    );
    write(
        &overrides.join("10-b.yaml"),
        "metadata: {flagSetId: team}\nflags:\n  b: {state: ENABLED, variants: {x: team-b}, defaultVariant: x}\n",
    );
    write(
        &overrides.join("20-c.json"),
        r#"{"flags": {"c": {"state": "ENABLED", "variants": {"x": "team-c"}, "defaultVariant": "x"}}}"#,
    );
    std::fs::write(overrides.join("README.txt"), "not a flag file").expect("write");
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::Files(vec![base.clone(), overrides.clone()]),
        keys: KeyRing::empty(),
        environment: "production".into(),
    })
    .await
    .expect("start");
    assert!(
        server
            .notes()
            .iter()
            .any(|n| n.contains("later sources win")),
        "{:?}",
        server.notes()
    );
    let r = server
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let value = |j: Value| j["value"].clone();
    assert_eq!(value(eval(&r, "a", "{}").await.json()), json!("base-a"));
    // The later source wins, whole, with its own flag-set metadata.
    let b = eval(&r, "b", "{}").await.json();
    assert_eq!(b["value"], json!("team-b"));
    assert_eq!(b["metadata"], json!({"flagSetId": "team"}));
    assert_eq!(value(eval(&r, "c", "{}").await.json()), json!("team-c"));
    // Removing the override file brings the base definition back.
    let mut events = r.server().subscribe();
    std::fs::remove_file(overrides.join("10-b.yaml")).expect("rm");
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("reload event in time")
        .expect("event");
    assert_eq!(value(eval(&r, "b", "{}").await.json()), json!("base-b"));
    r.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The flag keys of a bulk answer, in order.
fn bulk_keys(res: &Resp) -> Vec<String> {
    res.json()["flags"]
        .as_array()
        .unwrap_or_else(|| panic!("no flags in {}", res.text))
        .iter()
        .map(|f| f["key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// flagd's `Flagd-Selector` header on OFREP: the same selectors as the gRPC services'
/// `flagd-selector` metadata, in single and bulk evaluation; a flag outside the selection is
/// not found; an unusable selector is 400 with flagd's `GENERAL`.
#[tokio::test]
async fn flagd_selector_header_narrows_ofrep_evaluation() {
    let dir = temp_dir("selector");
    let base = dir.join("base.json");
    let team = dir.join("team.json");
    write(
        &base,
        r#"{"metadata": {"flagSetId": "base"}, "flags": {
  "a": {"state": "ENABLED", "variants": {"x": "base-a"}, "defaultVariant": "x"},
  "b": {"state": "ENABLED", "variants": {"x": "base-b"}, "defaultVariant": "x"}}}"#,
    );
    write(
        &team,
        r#"{"metadata": {"flagSetId": "team"}, "flags": {
  "c": {"state": "ENABLED", "variants": {"x": "team-c"}, "defaultVariant": "x"}}}"#,
    );
    let server = FlagServer::start(ServerOptions {
        source: FlagSource::Files(vec![base.clone(), team.clone()]),
        keys: KeyRing::empty(),
        environment: "production".into(),
    })
    .await
    .expect("start");
    let r = server
        .bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let with = |selector: &str, path: &str| {
        let path = path.to_owned();
        let selector = selector.to_owned();
        let addr = r.addr();
        async move {
            send(
                addr,
                "POST",
                &path,
                &[("Flagd-Selector", selector.as_str())],
                Some("{}"),
            )
            .await
        }
    };
    const BULK: &str = "/ofrep/v1/evaluate/flags";
    let all = post(r.addr(), BULK, None, "{}").await;
    assert_eq!(bulk_keys(&all), ["a", "b", "c"]);

    let base_name = base.display().to_string();
    let team_name = team.display().to_string();
    for (selector, keys) in [
        (format!("source={base_name}"), vec!["a", "b"]),
        (format!("file:{base_name}"), vec!["a", "b"]),
        (base_name.clone(), vec!["a", "b"]),
        (format!("source=file:{team_name}"), vec!["c"]),
        ("flagSetId=team".to_owned(), vec!["c"]),
        ("flagSetId=base".to_owned(), vec!["a", "b"]),
        ("flagSetId=".to_owned(), vec![]),
        ("environment=production".to_owned(), vec!["a", "b", "c"]),
        (String::new(), vec!["a", "b", "c"]),
    ] {
        let res = with(&selector, BULK).await;
        assert_eq!(res.status, 200, "{selector}: {}", res.text);
        assert_eq!(bulk_keys(&res), keys, "{selector}");
    }

    // Single evaluation: inside the selection as without one; outside it, not found.
    let res = with("flagSetId=team", "/ofrep/v1/evaluate/flags/c").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["value"], json!("team-c"));
    let res = with("flagSetId=team", "/ofrep/v1/evaluate/flags/a").await;
    assert_eq!(res.status, 404, "{}", res.text);
    assert_eq!(res.json()["errorCode"], json!("FLAG_NOT_FOUND"));
    assert_eq!(res.json()["key"], json!("a"));
    let res = with(&format!("source={team_name}"), "/ofrep/v1/evaluate/flags/b").await;
    assert_eq!(res.status, 404, "{}", res.text);

    // Selectors nobody can serve: 400, flagd's GENERAL, never "everything".
    for bad in [
        "sauce=x",
        "nowhere.json",
        "source=/no/such/file.json",
        "source=",
    ] {
        let res = with(bad, "/ofrep/v1/evaluate/flags/a").await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
        let body = res.json();
        assert_eq!(
            (&body["key"], &body["errorCode"]),
            (&json!("a"), &json!("GENERAL")),
            "{bad}: {body}"
        );
        assert!(
            body["errorDetails"]
                .as_str()
                .is_some_and(|d| d.starts_with("invalid selector: ")),
            "{bad}: {body}"
        );
        let res = with(bad, BULK).await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
        assert_eq!(res.json()["errorCode"], json!("GENERAL"), "{bad}");
    }
    let res = with("nowhere.json", BULK).await;
    assert!(
        res.json()["errorDetails"]
            .as_str()
            .is_some_and(|d| d.contains(&base_name) && d.contains(&team_name)),
        "lists the sources: {}",
        res.text
    );

    // A bulk ETag taken without a selector does not answer a request with one.
    let tag = all.header("etag").expect("etag").to_owned();
    let res = send(
        r.addr(),
        "POST",
        BULK,
        &[
            ("Flagd-Selector", "flagSetId=team"),
            ("If-None-Match", &tag),
        ],
        Some("{}"),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(bulk_keys(&res), ["c"]);
    r.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// With API keys a selector stays within what the key reads: a server key may name its own
/// environment, not another (403).
#[tokio::test]
async fn flagd_selector_header_cannot_leave_the_keys_environment() {
    let dir = temp_dir("selector-keys");
    let path = dir.join("flags.json");
    write(&path, FLAGS);
    let r = start(FlagSource::File(path), keyring()).await;
    let auth = format!("Bearer {SERVER_PROD}");
    let call = |selector: &'static str| {
        let auth = auth.clone();
        let addr = r.addr();
        async move {
            send(
                addr,
                "POST",
                "/ofrep/v1/evaluate/flags/static-bool",
                &[("authorization", &auth), ("Flagd-Selector", selector)],
                Some("{}"),
            )
            .await
        }
    };
    let res = call("environment=production").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.json()["value"], json!(true));
    let res = call("environment=staging").await;
    assert_eq!(res.status, 403, "{}", res.text);
    assert_eq!(res.json()["errorCode"], json!("FORBIDDEN"));
    r.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
