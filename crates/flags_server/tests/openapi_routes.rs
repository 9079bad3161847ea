//! Every route the server answers is documented in the OpenAPI file it serves, and the
//! router answers exactly the listed methods on those paths.

mod common;

use common::*;
use serin_flags_server::{FlagSource, OPENAPI_YAML, ROUTES, RedbStore};

fn documented(method: &str, path: &str) -> bool {
    // The YAML is hand-written with two-space indentation: "  <path>:" then "    <method>:".
    let mut in_path = false;
    for line in OPENAPI_YAML.lines() {
        if let Some(p) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            in_path = p.trim_end() == format!("{path}:");
        } else if in_path && line.trim_end() == format!("    {}:", method.to_lowercase()) {
            return true;
        }
    }
    false
}

#[test]
fn every_route_is_in_openapi() {
    for (m, p) in ROUTES {
        assert!(
            documented(m, p),
            "{m} {p} is served but not in openapi.yaml"
        );
    }
    assert!(!documented("GET", "/nowhere"));
}

#[tokio::test]
async fn router_answers_exactly_the_listed_methods() {
    let dir = std::env::temp_dir().join(format!("serin-routes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = RedbStore::open(dir.join("f.redb")).expect("store");
    let r = start(FlagSource::Store(std::sync::Arc::new(store)), keyring()).await;
    let a = r.addr();
    let res = call(a, "GET", "/api/v1/openapi.yaml", None, None).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text, OPENAPI_YAML);
    let mut paths: Vec<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    paths.dedup();
    for path in paths {
        let concrete = path.replace("{key}", "k").replace("{env}", "production");
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if m == "GET" && path == serin_flags_server::EVENTS_PATH {
                continue; // an endless stream; checked by the SSE tests
            }
            let listed = ROUTES.iter().any(|(lm, lp)| *lm == m && *lp == path);
            let res = call(a, m, &concrete, Some(ADMIN_PROD), Some("{}")).await;
            if listed {
                assert_ne!(res.status, 405, "{m} {path} is listed but not routed");
                if !concrete.ends_with(".yaml") {
                    assert!(res.json().is_object(), "{m} {path}");
                }
            } else {
                assert_eq!(res.status, 405, "{m} {path} is routed but not listed");
            }
        }
    }
    r.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
