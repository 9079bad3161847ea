//! Real OpenFeature clients (the Python SDK with its OFREP provider, from PyPI) against a
//! running `serin flags serve`: every flagd semantic that clients see.
//!
//! The clients are installed by `scripts/openfeature-venv` into a venv in a cache folder
//! outside the repository. When PyPI is unreachable the tests say so loudly and skip; any
//! other failure to install fails them.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use support::{SERIN, openfeature_python};

/// `serin flags serve`, killed when dropped.
struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(file: &Path) -> (Serve, SocketAddr) {
    let (guard, lines) = serve_with(
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
        ],
        1,
    );
    let addr = lines[0]
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {:?}", lines[0]))
        .parse()
        .expect("address");
    (guard, addr)
}

/// `serin flags serve <args>` and its first `lines` stdout lines (the bound addresses,
/// printed once every port listens).
fn serve_with(args: &[&std::ffi::OsStr], lines: usize) -> (Serve, Vec<String>) {
    let mut child = Command::new(SERIN)
        .args(["flags", "serve"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serin flags serve");
    let stdout = child.stdout.take().expect("stdout");
    let guard = Serve(child);
    let mut out = Vec::new();
    let mut reader = BufReader::new(stdout);
    for _ in 0..lines {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a listening line");
        assert!(!line.is_empty(), "serin flags serve ended early: {out:?}");
        out.push(line.trim().to_owned());
    }
    (guard, out)
}

/// The `host:port` after `scheme://` at the end of a listening line.
fn addr_in(line: &str) -> String {
    line.rsplit("://")
        .next()
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

fn run_client(python: &Path, provider: &str, target: &str, cases: &Value) -> Vec<Value> {
    run_client_with(python, provider, target, &[], cases)
}

/// [`run_client`] with client options (`--selector=…`, `--ca=…`, `--key=…`).
fn run_client_with(
    python: &Path,
    provider: &str,
    target: &str,
    options: &[String],
    cases: &Value,
) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openfeature/client.py");
    let mut child = Command::new(python)
        .arg(&script)
        .args([provider, target])
        .args(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the python client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cases.to_string().as_bytes())
        .expect("write cases");
    let out = child.wait_with_output().expect("client output");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(results.len(), cases.as_array().map_or(0, Vec::len));
    results
}

/// The flags every client test uses: one per semantic of issue #14.
pub const FLAGS: &str = r#"{
  "metadata": {"flagSetId": "compat", "version": "7"},
  "$evaluators": {"is_de": {"==": [{"var": "country"}, "DE"]}},
  "flags": {
    "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
                    "metadata": {"version": "8", "owner": "payments"}},
    "geo": {"state": "ENABLED", "variants": {"eu": "euro", "world": "dollar"}, "defaultVariant": "world",
            "targeting": {"if": [{"$ref": "is_de"}, "eu", null]}},
    "split": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
              "targeting": {"fractional": [["on", 100], ["off", 0]]}},
    "semver": {"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
               "targeting": {"if": [{"sem_ver": [{"var": "app"}, ">=", "1.2.0"]}, "new", "old"]}},
    "semver-bad": {"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
                   "targeting": {"sem_ver": [{"var": "app"}, "===", "1.2.0"]}},
    "ends": {"state": "ENABLED", "variants": {"yes": 1, "no": 2}, "defaultVariant": "no",
             "targeting": {"ends_with": [{"var": "n"}, "5"]}},
    "missing-variant": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                        "targeting": {"if": [true, "zzz", "a"]}},
    "dangling-ref": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
                     "targeting": {"$ref": "nowhere"}},
    "arity": {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b",
              "targeting": {"starts_with": [{"var": "email"}]}},
    "killed": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "zero-bool": {"state": "ENABLED", "variants": {"z": false}, "defaultVariant": "z"},
    "zero-string": {"state": "ENABLED", "variants": {"z": ""}, "defaultVariant": "z"},
    "zero-int": {"state": "ENABLED", "variants": {"z": 0}, "defaultVariant": "z"},
    "zero-float": {"state": "ENABLED", "variants": {"z": 0.0}, "defaultVariant": "z"},
    "zero-object": {"state": "ENABLED", "variants": {"z": {}}, "defaultVariant": "z"},
    "by-key": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no",
               "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "by-key"]}, "yes", "no"]}}
  }
}"#;

/// (case, expected value, variant, reason, error code); `Value::Null` = absent.
fn cases() -> Vec<(Value, Value, Value, &'static str, Value)> {
    let n = Value::Null;
    vec![
        // No context at all, so no targetingKey: static flags resolve.
        (
            json!({"flag": "static-bool", "type": "boolean", "default": false}),
            json!(true),
            json!("on"),
            "STATIC",
            n.clone(),
        ),
        (
            json!({"flag": "nope", "type": "boolean", "default": true}),
            json!(true),
            n.clone(),
            "ERROR",
            json!("FLAG_NOT_FOUND"),
        ),
        (
            json!({"flag": "static-bool", "type": "string", "default": "x"}),
            json!("x"),
            n.clone(),
            "ERROR",
            json!("TYPE_MISMATCH"),
        ),
        (
            json!({"flag": "geo", "type": "string", "default": "x", "context": {"country": "DE"}}),
            json!("euro"),
            json!("eu"),
            "TARGETING_MATCH",
            n.clone(),
        ),
        (
            json!({"flag": "geo", "type": "string", "default": "x", "context": {"country": "US"}}),
            json!("dollar"),
            json!("world"),
            "DEFAULT",
            n.clone(),
        ),
        (
            json!({"flag": "split", "type": "boolean", "default": true, "context": {"country": "US"}}),
            json!(false),
            json!("off"),
            "DEFAULT",
            n.clone(),
        ),
        (
            json!({"flag": "split", "type": "boolean", "default": false, "targetingKey": "user-1"}),
            json!(true),
            json!("on"),
            "SPLIT",
            n.clone(),
        ),
        (
            json!({"flag": "semver", "type": "string", "default": "x", "context": {"app": 1.3}}),
            json!("new"),
            json!("new"),
            "TARGETING_MATCH",
            n.clone(),
        ),
        (
            json!({"flag": "semver", "type": "string", "default": "x", "context": {"app": "V1.1.9"}}),
            json!("old"),
            json!("old"),
            "TARGETING_MATCH",
            n.clone(),
        ),
        (
            json!({"flag": "semver-bad", "type": "string", "default": "x", "context": {"app": "1.2.0"}}),
            json!("old"),
            json!("old"),
            "DEFAULT",
            n.clone(),
        ),
        (
            json!({"flag": "ends", "type": "integer", "default": 9, "context": {"n": 5}}),
            json!(2),
            json!("no"),
            "DEFAULT",
            n.clone(),
        ),
        (
            json!({"flag": "missing-variant", "type": "integer", "default": 9}),
            json!(9),
            n.clone(),
            "ERROR",
            json!("GENERAL"),
        ),
        (
            json!({"flag": "dangling-ref", "type": "integer", "default": 9}),
            json!(9),
            n.clone(),
            "ERROR",
            json!("PARSE_ERROR"),
        ),
        (
            json!({"flag": "arity", "type": "integer", "default": 9, "context": {"email": "a@b"}}),
            json!(2),
            json!("b"),
            "DEFAULT",
            n.clone(),
        ),
        (
            json!({"flag": "zero-bool", "type": "boolean", "default": true}),
            json!(false),
            json!("z"),
            "STATIC",
            n.clone(),
        ),
        (
            json!({"flag": "zero-string", "type": "string", "default": "x"}),
            json!(""),
            json!("z"),
            "STATIC",
            n.clone(),
        ),
        (
            json!({"flag": "zero-int", "type": "integer", "default": 9}),
            json!(0),
            json!("z"),
            "STATIC",
            n.clone(),
        ),
        (
            json!({"flag": "zero-float", "type": "float", "default": 9.5}),
            json!(0.0),
            json!("z"),
            "STATIC",
            n.clone(),
        ),
        (
            json!({"flag": "zero-object", "type": "object", "default": {"a": 1}}),
            json!({}),
            json!("z"),
            "STATIC",
            n.clone(),
        ),
        (
            json!({"flag": "by-key", "type": "boolean", "default": false, "context": {"$flagd": {"flagKey": "spoof"}}}),
            json!(true),
            json!("yes"),
            "TARGETING_MATCH",
            n,
        ),
    ]
}

fn check(results: &[Value], cases: &[(Value, Value, Value, &'static str, Value)]) {
    for (r, (case, value, variant, reason, code)) in results.iter().zip(cases) {
        let got = (
            &r["value"],
            &r["variant"],
            r["reason"].as_str(),
            &r["error_code"],
        );
        assert_eq!(
            got,
            (value, variant, Some(*reason), code),
            "case {case}: {r}"
        );
    }
}

#[test]
fn ofrep_provider_sees_flagd_semantics() {
    let Some(python) = openfeature_python() else {
        return;
    };
    let dir = tempdir("ofrep");
    let file = dir.join("flags.json");
    std::fs::write(&file, FLAGS).expect("write flags");
    let (_serve, addr) = serve(&file);
    let cases = cases();
    let input = Value::Array(cases.iter().map(|c| c.0.clone()).collect());
    let results = run_client(&python, "ofrep", &format!("http://{addr}"), &input);
    check(&results, &cases);
    // Flag-set metadata merged under the flag's own.
    assert_eq!(
        results[0]["metadata"],
        json!({"flagSetId": "compat", "version": "8", "owner": "payments"})
    );
    // A disabled flag: the client's code default. flagd (and Serin) answer 200 with reason
    // DISABLED and no variant; openfeature-provider-ofrep 0.3.0 reads `variant` as
    // required, so against flagd and Serin alike it reports an error with the default.
    let disabled = run_client(
        &python,
        "ofrep",
        &format!("http://{addr}"),
        &json!([{"flag": "killed", "type": "boolean", "default": false}]),
    );
    assert_eq!(disabled[0]["value"], json!(false), "{}", disabled[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("serin-of-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn flagd_provider_in_rpc_mode_sees_the_same_semantics_on_the_same_port() {
    let Some(python) = openfeature_python() else {
        return;
    };
    let dir = tempdir("rpc");
    let file = dir.join("flags.json");
    std::fs::write(&file, FLAGS).expect("write flags");
    let (_serve, addr) = serve(&file);
    let cases = cases();
    let input = Value::Array(cases.iter().map(|c| c.0.clone()).collect());
    // flagd.evaluation.v1.Service over HTTP/2 on the OFREP port.
    let results = run_client(&python, "flagd-rpc", &addr.to_string(), &input);
    check(&results, &cases);
    // A disabled flag: reason DISABLED, no variant, the caller's default.
    let disabled = run_client(
        &python,
        "flagd-rpc",
        &addr.to_string(),
        &json!([{"flag": "killed", "type": "boolean", "default": false}]),
    );
    assert_eq!(
        (
            &disabled[0]["value"],
            &disabled[0]["variant"],
            &disabled[0]["reason"],
            &disabled[0]["error_code"]
        ),
        (
            &json!(false),
            &Value::Null,
            &json!("DISABLED"),
            &Value::Null
        ),
        "{}",
        disabled[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A provider connected to `serin flags serve` gets a change event when the flags change,
/// and evaluates the new flags after it: in RPC mode (EventStream) and in in-process mode
/// (SyncFlags, evaluated by the provider itself).
#[test]
fn connected_providers_get_change_events() {
    let Some(python) = openfeature_python() else {
        return;
    };
    for provider in ["flagd-rpc", "flagd-in-process"] {
        let dir = tempdir(provider);
        let file = dir.join("flags.json");
        let flags = |pct: u32| {
            json!({"flags": {
                "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
                "new-payment-processor": {"state": "ENABLED", "variants": {"on": true, "off": false},
                    "defaultVariant": "off",
                    "targeting": {"fractional": [["on", pct], ["off", 100 - pct]]}}
            }})
            .to_string()
        };
        std::fs::write(&file, flags(100)).expect("write flags");
        let (_serve, addr) = serve(&file);
        let cases = json!([
            {"flag": "new-payment-processor", "type": "boolean", "default": false, "targetingKey": "user-1"},
            {"flag": "static-bool", "type": "boolean", "default": false}
        ]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openfeature/client.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args([provider, &addr.to_string(), "--watch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the python client");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(cases.to_string().as_bytes())
            .expect("write cases");
        drop(stdin);
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut next = || -> Value {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{provider}: client ended early"))
                .expect("line");
            serde_json::from_str(&line).expect("json line")
        };
        let before = next();
        assert_eq!(before[0]["value"], json!(true), "{provider}: {before}");
        assert_eq!(before[1]["value"], json!(true), "{provider}: {before}");
        // The seed's emergency: the rollout goes back to 0 %.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, flags(0)).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        // Events until the one after which the flag is off (the client gives up after 30 s
        // without an event, which ends its output and fails `next`).
        let changed = loop {
            let e = next();
            if e["results"][0]["value"] == json!(false) {
                break e;
            }
        };
        if provider == "flagd-rpc" {
            // The server names exactly the flags that changed.
            assert_eq!(
                changed["changed"],
                json!(["new-payment-processor"]),
                "{provider}"
            );
        } else {
            // In-process, the provider names every flag of the new configuration itself.
            let keys = changed["changed"].as_array().expect("changed keys");
            assert!(
                keys.contains(&json!("new-payment-processor")),
                "{provider}: {changed}"
            );
        }
        assert_eq!(
            changed["results"][1]["value"],
            json!(true),
            "{provider}: {changed}"
        );
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `tests/openfeature/probe.py`: one raw gRPC call with the flagd provider's own stubs.
fn probe(python: &Path, target: &str, call: &str, selector: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openfeature/probe.py");
    let out = Command::new(python)
        .arg(&script)
        .args([target, call])
        .args(selector)
        .stderr(Stdio::inherit())
        .output()
        .expect("run probe.py");
    assert!(out.status.success(), "probe {call} {selector:?} failed");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The flag keys of a sync configuration.
fn keys_of(configuration: &Value) -> Vec<String> {
    let mut keys: Vec<String> = configuration["flags"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

const OTHER_SOURCE: &str = r#"{"metadata": {"flagSetId": "other"}, "flags": {
  "b-only": {"state": "ENABLED", "variants": {"b": "from-b", "z": "zzz"}, "defaultVariant": "b"}
}}"#;

/// The sync service sends targeting with `$ref`s inlined (providers in in-process mode never
/// see `$evaluators`), and flagd's selectors pick sources and flag sets in sync and in
/// evaluation; an unknown selector is refused with `INVALID_SELECTOR`.
#[test]
fn sync_inlines_refs_and_selectors_pick_sources_and_flag_sets() {
    let Some(python) = openfeature_python() else {
        return;
    };
    let dir = tempdir("selectors");
    let a = dir.join("a.json");
    let b = dir.join("b.json");
    std::fs::write(&a, FLAGS).expect("write a");
    std::fs::write(&b, OTHER_SOURCE).expect("write b");
    let (_serve, lines) = serve_with(
        &[
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "-f".as_ref(),
            a.as_os_str(),
            "--file".as_ref(),
            format!("file:{}", b.display()).as_ref(),
        ],
        1,
    );
    let target = addr_in(&lines[0]);
    let a_name = a.display().to_string();
    let b_name = b.display().to_string();

    // The bug: `geo`'s `{"$ref": "is_de"}` went out as written, without `$evaluators`.
    let all = probe(&python, &target, "fetch-all", None);
    assert_eq!(all["code"], "OK", "{all}");
    assert_eq!(
        all["configuration"]["flags"]["geo"]["targeting"],
        json!({"if": [{"==": [{"var": "country"}, "DE"]}, "eu", null]}),
        "{all}"
    );
    // A dangling `$ref` stays as written (the flag answers PARSE_ERROR either way).
    assert_eq!(
        all["configuration"]["flags"]["dangling-ref"]["targeting"],
        json!({"$ref": "nowhere"})
    );
    assert!(keys_of(&all["configuration"]).contains(&"b-only".to_owned()));

    let a_keys: Vec<String> = {
        let v: Value = serde_json::from_str(FLAGS).expect("FLAGS");
        keys_of(&v)
    };
    for selector in [
        format!("source={a_name}"),
        format!("file:{a_name}"),
        a_name.clone(),
    ] {
        let r = probe(&python, &target, "fetch-all", Some(&selector));
        assert_eq!(keys_of(&r["configuration"]), a_keys, "{selector}: {r}");
    }
    for selector in [
        format!("source=file:{b_name}"),
        b_name.clone(),
        "flagSetId=other".to_owned(),
    ] {
        let r = probe(&python, &target, "fetch-all", Some(&selector));
        assert_eq!(keys_of(&r["configuration"]), ["b-only"], "{selector}: {r}");
        let r = probe(&python, &target, "sync-first", Some(&selector));
        assert_eq!(keys_of(&r["configuration"]), ["b-only"], "{selector}: {r}");
        let r = probe(&python, &target, "resolve-all", Some(&selector));
        assert_eq!(r["flags"], json!(["b-only"]), "{selector}: {r}");
    }
    for bad in ["sauce=a.json", "nowhere.json", "source=/no/such/file.json"] {
        for call in ["fetch-all", "resolve-all"] {
            let r = probe(&python, &target, call, Some(bad));
            assert_eq!(r["code"], "INVALID_ARGUMENT", "{bad} {call}: {r}");
            assert!(
                r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("INVALID_SELECTOR: ")),
                "{bad} {call}: {r}"
            );
        }
    }

    // Real providers with a selector: in-process evaluates the inlined `$ref` itself.
    let cases = json!([
        {"flag": "geo", "type": "string", "default": "x", "context": {"country": "DE"}},
        {"flag": "b-only", "type": "string", "default": "x"}
    ]);
    let r = run_client_with(
        &python,
        "flagd-in-process",
        &target,
        &[format!("--selector=source={a_name}")],
        &cases,
    );
    assert_eq!(
        (&r[0]["value"], &r[0]["variant"], &r[0]["reason"]),
        (&json!("euro"), &json!("eu"), &json!("TARGETING_MATCH")),
        "{r:?}"
    );
    assert_eq!(
        (&r[1]["value"], &r[1]["error_code"]),
        (&json!("x"), &json!("FLAG_NOT_FOUND")),
        "{r:?}"
    );
    let r = run_client_with(
        &python,
        "flagd-rpc",
        &target,
        &[format!("--selector=file:{b_name}")],
        &cases,
    );
    assert_eq!(
        (&r[0]["value"], &r[0]["error_code"]),
        (&json!("x"), &json!("FLAG_NOT_FOUND")),
        "{r:?}"
    );
    assert_eq!(
        (&r[1]["value"], &r[1]["reason"]),
        (&json!("from-b"), &json!("STATIC")),
        "{r:?}"
    );
    // The OFREP provider with flagd's `Flagd-Selector` header: the same selection.
    let ofrep = format!("http://{target}");
    for (selector, geo, b_only) in [
        (format!("source={a_name}"), json!("euro"), json!("x")),
        ("flagSetId=other".to_owned(), json!("x"), json!("from-b")),
    ] {
        let r = run_client_with(
            &python,
            "ofrep",
            &ofrep,
            &[format!("--selector={selector}")],
            &cases,
        );
        assert_eq!(
            (&r[0]["value"], &r[1]["value"]),
            (&geo, &b_only),
            "{selector}: {r:?}"
        );
        let missing = if geo == json!("x") { &r[0] } else { &r[1] };
        assert_eq!(
            missing["error_code"],
            json!("FLAG_NOT_FOUND"),
            "{selector}: {r:?}"
        );
    }
    // A selector nobody can serve: flagd's 400 GENERAL, so the client's default and GENERAL.
    let r = run_client_with(
        &python,
        "ofrep",
        &ofrep,
        &["--selector=sauce=a.json".to_owned()],
        &cases,
    );
    for one in &r {
        assert_eq!(
            (&one["value"], &one["error_code"]),
            (&json!("x"), &json!("GENERAL")),
            "{r:?}"
        );
        assert!(
            one["error_message"]
                .as_str()
                .is_some_and(|m| m.contains("invalid selector")),
            "{r:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// flagd's port layout (`--port` evaluation, `--sync-port` sync, `--ofrep-port` OFREP) and
/// its TLS options, with every real provider trusting the server's CA.
#[test]
fn separate_ports_and_tls_serve_every_real_provider() {
    let Some(python) = openfeature_python() else {
        return;
    };
    let dir = tempdir("tls");
    let file = dir.join("flags.json");
    std::fs::write(&file, FLAGS).expect("write flags");
    let pki = serin_tls::testing::TestPki::new(&dir, "flags", &["localhost", "127.0.0.1"]);
    let (_serve, lines) = serve_with(
        &[
            "--file".as_ref(),
            file.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:8016".as_ref(),
            "--ofrep-port".as_ref(),
            "0".as_ref(),
            "--port".as_ref(),
            "0".as_ref(),
            "--sync-port".as_ref(),
            "0".as_ref(),
            "-c".as_ref(),
            pki.cert.as_os_str(),
            "-k".as_ref(),
            pki.key.as_os_str(),
        ],
        3,
    );
    assert!(
        lines[0].starts_with("listening on https://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        !lines[0].ends_with(":8016"),
        "--ofrep-port moves the main port: {lines:?}"
    );
    assert!(
        lines[1].starts_with("flagd evaluation (gRPC) on https://"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("flagd sync (gRPC) on https://"),
        "{lines:?}"
    );
    let port = |line: &str| {
        addr_in(line)
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let (ofrep, eval, sync) = (port(&lines[0]), port(&lines[1]), port(&lines[2]));
    assert!(ofrep != eval && eval != sync && ofrep != sync, "{lines:?}");
    let ca = vec![format!("--ca={}", pki.ca.display())];
    let cases = json!([
        {"flag": "static-bool", "type": "boolean", "default": false},
        {"flag": "geo", "type": "string", "default": "x", "context": {"country": "DE"}}
    ]);
    for (provider, target) in [
        ("ofrep", format!("https://localhost:{ofrep}")),
        ("flagd-rpc", format!("localhost:{eval}")),
        ("flagd-in-process", format!("localhost:{sync}")),
    ] {
        let r = run_client_with(&python, provider, &target, &ca, &cases);
        assert_eq!(
            (&r[0]["value"], &r[1]["value"]),
            (&json!(true), &json!("euro")),
            "{provider}: {r:?}"
        );
    }
    // Plaintext gRPC gets nothing from a TLS port.
    let r = probe(&python, &format!("127.0.0.1:{sync}"), "fetch-all", None);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request with a bearer token; the status and body.
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// The seed's emergency: a guarded rollout (`serin flags rollout`, the FlagRollout's engine)
/// whose analysis fails sets the flag back to 0 %, and providers connected with a server
/// key (RPC mode: EventStream; in-process: SyncFlags) get a change event after which the
/// flag is off.
#[test]
fn a_guarded_rollout_back_to_zero_reaches_connected_providers() {
    use std::io::Read;
    let Some(python) = openfeature_python() else {
        return;
    };
    let dir = tempdir("rollback");
    const ADMIN: &str = "adm-of-rollback-1";
    const SERVER: &str = "srv-of-rollback-1";
    let hash = |k: &str| serin_flags_server::hash_key(k);
    std::fs::write(
        dir.join("keys.yaml"),
        format!(
            "keys:\n  - name: ops\n    kind: admin\n    environment: production\n    sha256: {}\n  - name: app\n    kind: server\n    environment: production\n    sha256: {}\n",
            hash(ADMIN),
            hash(SERVER)
        ),
    )
    .expect("keys");
    // The analysis: an error rate of 20 % from a metric endpoint the test serves.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").expect("bind metrics");
    let metrics_addr = metrics.local_addr().expect("metrics addr");
    std::thread::spawn(move || {
        for mut conn in metrics.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = r#"{"errorRate": 0.2}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    std::fs::write(
        dir.join("template.yaml"),
        format!(
            r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-rate
spec:
  metrics:
    - name: error-rate
      interval: 100ms
      count: 1
      successCondition: result <= 0.01
      provider:
        web:
          url: http://{metrics_addr}/error-rate
          jsonPath: "{{$.errorRate}}"
"#
        ),
    )
    .expect("template");
    let (_serve, lines) = serve_with(
        &[
            "--store".as_ref(),
            dir.join("flags.redb").as_os_str(),
            "--keys".as_ref(),
            dir.join("keys.yaml").as_os_str(),
            "--environment".as_ref(),
            "production".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        1,
    );
    let addr = addr_in(&lines[0]);
    let def = json!({"state": "ENABLED", "variants": {"on": true, "off": false},
        "defaultVariant": "off", "targeting": {"fractional": [["on", 100], ["off", 0]]}});
    let (status, body) = http(
        &addr,
        "PUT",
        "/api/v1/environments/production/flags/new-payment-processor",
        ADMIN,
        &def.to_string(),
    );
    assert!((200..300).contains(&status), "PUT {status}: {body}");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openfeature/client.py");
    let cases = json!([
        {"flag": "new-payment-processor", "type": "boolean", "default": false, "targetingKey": "user-1"}
    ]);
    let mut watchers = Vec::new();
    for provider in ["flagd-rpc", "flagd-in-process"] {
        let mut child = Command::new(&python)
            .arg(&script)
            .args([provider, &addr, "--watch", &format!("--key={SERVER}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the python client");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(cases.to_string().as_bytes())
            .expect("write cases");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first: Value = serde_json::from_str(
            &lines
                .next()
                .unwrap_or_else(|| panic!("{provider}: no first evaluation"))
                .expect("line"),
        )
        .expect("json");
        assert_eq!(
            first[0]["value"],
            json!(true),
            "{provider} at 100 %: {first}"
        );
        watchers.push((provider, child, lines));
    }

    let rollout = Command::new(SERIN)
        .args([
            "flags",
            "rollout",
            "new-payment-processor",
            "--steps",
            "100",
        ])
        .args(["--interval", "1s", "--environment", "production"])
        .arg("--analysis")
        .arg(dir.join("template.yaml"))
        .args(["--server", &format!("http://{addr}"), "--token", ADMIN])
        .output()
        .expect("run serin flags rollout");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&rollout.stdout),
        String::from_utf8_lossy(&rollout.stderr)
    );
    assert!(!rollout.status.success(), "the analysis fails: {said}");
    assert!(
        said.contains("set back to 0 %"),
        "the rollout says so: {said}"
    );

    for (provider, mut child, mut lines) in watchers {
        // Change events until the one after which the flag is off (the client gives up after
        // 30 s without one, which ends its output).
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{provider}: no change event turned the flag off"))
                .expect("line");
            let e: Value = serde_json::from_str(&line).expect("json line");
            if e["results"][0]["value"] == json!(false) {
                assert!(
                    e["changed"]
                        .as_array()
                        .is_some_and(|c| c.contains(&json!("new-payment-processor"))),
                    "{provider}: {e}"
                );
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
