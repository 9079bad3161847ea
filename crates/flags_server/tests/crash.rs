//! Crash durability: a change acknowledged to the client survives SIGKILL of the server
//! process (no graceful shutdown, no flush), for the embedded store and for PostgreSQL.
//!
//! The server runs in a child process: this test binary re-executed with `crash_child`,
//! an ignored test that only runs when the parent asks for it.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::*;
use serde_json::json;
use serin_flags_server::{PgStore, RedbStore, Store};

const PG_URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const ENV_VAR: &str = "SERIN_FLAGS_CRASH_CHILD";

/// Runs a flag server until killed; started by the tests below.
#[tokio::test]
#[ignore = "helper process for the crash tests"]
async fn crash_child() {
    let Ok(spec) = std::env::var(ENV_VAR) else {
        return;
    };
    let store: Arc<dyn Store> = match spec.split_once(':') {
        Some(("redb", path)) => Arc::new(RedbStore::open(path).expect("open redb")),
        Some(("pg", prefix)) => Arc::new(PgStore::connect(PG_URL, prefix).await.expect("pg")),
        _ => panic!("bad {ENV_VAR}: {spec}"),
    };
    let r = start_store(store).await;
    println!("ADDR {}", r.addr());
    std::future::pending::<()>().await;
}

fn spawn(spec: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().expect("test exe"))
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(ENV_VAR, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child server");
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines() {
        let line = line.expect("read child stdout");
        if let Some(a) = line.strip_prefix("ADDR ") {
            return (child, a.parse().expect("addr"));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("child server exited before printing its address");
}

async fn acknowledged_changes_survive_sigkill(spec: &str) {
    let p = "/api/v1/environments/production/flags/checkout";
    let flag = r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "metadata": {"experimental": true}}"#;
    let (mut child, a) = spawn(spec);
    assert_eq!(
        call(a, "PUT", p, Some(ADMIN_PROD), Some(flag)).await.status,
        201
    );
    assert_eq!(
        call(
            a,
            "PATCH",
            p,
            Some(ADMIN_PROD),
            Some(r#"{"percentage": 25}"#)
        )
        .await
        .status,
        200
    );
    let res = call(
        a,
        "POST",
        "/api/v1/environments/production/kill-switch",
        Some(ADMIN_PROD),
        Some(r#"{"tag": "experimental"}"#),
    )
    .await;
    assert_eq!(res.json()["disabled"], json!(["checkout"]));
    // SIGKILL right after the last acknowledgement.
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let (mut child, a) = spawn(spec);
    let res = call(a, "GET", p, Some(ADMIN_PROD), None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let f = res.json()["flag"].clone();
    assert_eq!(f["state"], "DISABLED");
    assert_eq!(
        f["targeting"],
        json!({"fractional": [["on", 25], ["off", 75]]})
    );
    let res = call(
        a,
        "GET",
        "/api/v1/environments/production/audit",
        Some(ADMIN_PROD),
        None,
    )
    .await;
    let actions: Vec<String> = res.json()["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        actions,
        ["kill-switch:experimental", "percentage:25", "create"]
    );
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn redb_survives_sigkill() {
    let dir = std::env::temp_dir().join(format!("serin-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("flags.redb");
    acknowledged_changes_survive_sigkill(&format!("redb:{}", path.display())).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_survives_sigkill() {
    let prefix = format!("t{}_crash_", std::process::id());
    acknowledged_changes_survive_sigkill(&format!("pg:{prefix}")).await;
    let s = PgStore::connect(PG_URL, &prefix).await.expect("connect");
    s.drop_tables().await.expect("drop");
}
