//! `serin controller install`'s objects are all built-in Kubernetes types
//! (Serin's FlagRollout CRD is an apiextensions.k8s.io/v1 object): each is
//! checked with `kubernetes-validate` (PyPI; Kubernetes'
//! own OpenAPI schemas, strict: unknown fields are errors) for the release
//! the test API server is built from. The tool is installed once by
//! `scripts/kubernetes-validate-venv` into a venv under ~/.cache/serin; the
//! test skips loudly only when PyPI is unreachable (exit 3), and fails
//! under `CI=true` even then.

use std::path::Path;
use std::process::Command;

use serin_platform_kube::install_manifests;

/// The Kubernetes release whose schemas the objects are checked against
/// (the test API server's, ../shared/k8s-apiserver).
const KUBERNETES: &str = "1.36.0";

fn validator() -> Option<String> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kubernetes-validate-venv");
    let out = Command::new(&script)
        .output()
        .expect("running scripts/kubernetes-validate-venv");
    match out.status.code() {
        Some(0) => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Some(3) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED: kubernetes-validate could not be installed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        _ => panic!(
            "scripts/kubernetes-validate-venv failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn validate(exe: &str, dir: &Path, objects: &[serde_json::Value]) -> std::process::Output {
    let mut files = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        let f = dir.join(format!("{i:02}.json"));
        std::fs::write(&f, serde_json::to_vec_pretty(obj).unwrap()).unwrap();
        files.push(f);
    }
    Command::new(exe)
        .args(["--strict", "-k", KUBERNETES])
        .args(&files)
        .output()
        .expect("running kubernetes-validate")
}

#[test]
fn install_manifests_validate_against_the_kubernetes_schemas() {
    let Some(exe) = validator() else { return };
    let dir = std::env::temp_dir().join(format!("serin-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let objects = install_manifests(
        "serin-system",
        "ghcr.io/example/serin:1",
        Some("http://flags.flags.svc:8016"),
    );
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"Deployment") && kinds.contains(&"ClusterRole"),
        "{kinds:?}"
    );
    let out = validate(&exe, &dir.join("ok"), &{
        std::fs::create_dir_all(dir.join("ok")).unwrap();
        objects.clone()
    });
    assert!(
        out.status.success(),
        "kubernetes-validate refused the install manifests:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: the same Deployment with an unknown field and a
    // mistyped one is refused.
    let mut bad = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
        .clone();
    bad["spec"]["replicas"] = serde_json::json!("two");
    bad["spec"]["template"]["spec"]["containers"][0]["bogus"] = serde_json::json!(1);
    std::fs::create_dir_all(dir.join("bad")).unwrap();
    let out = validate(&exe, &dir.join("bad"), &[bad]);
    assert!(!out.status.success(), "a broken Deployment passed");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("spec.replicas"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
