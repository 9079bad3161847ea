//! `serin lint` as a user runs it: the real binary on the seed manifests.

use std::process::Command;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/seed/manifests"
);

fn serin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(args)
        .output()
        .expect("serin runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_output_lists_the_seed_problems_and_exit_code_is_1() {
    let (code, stdout, stderr) = serin(&["lint", SEED, "-o", "json"]);
    assert_eq!(code, 1, "errors found → exit 1; stderr: {stderr}");
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("a JSON array");
    let got: Vec<String> = diags
        .iter()
        .map(|d| {
            let file = d["file"].as_str().unwrap();
            format!(
                "{}:{}:{} {} {} {}",
                file.rsplit('/').next().unwrap(),
                d["line"],
                d["column"],
                d["severity"].as_str().unwrap(),
                d["code"].as_str().unwrap(),
                d["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "blue-green-rollout.yaml:21:7 warning unknown-field spec.strategy.blueGreen.promotionPolicy",
            "canary-rollout.yaml:12:22 error missing-service spec.strategy.canary.canaryService",
            "canary-rollout.yaml:13:22 error missing-service spec.strategy.canary.stableService",
            "canary-rollout.yaml:30:27 error missing-template spec.strategy.canary.analysis.templates[0].templateName",
            "canary-rollout.yaml:31:27 error missing-template spec.strategy.canary.analysis.templates[1].templateName",
            "canary-rollout.yaml:32:27 error missing-template spec.strategy.canary.analysis.templates[2].templateName",
            "canary-rollout.yaml:43:17 error missing-route spec.strategy.canary.trafficRouting.istio.virtualService.routes[0]",
            "deployment-dashboard.yaml:3:7 info unmanaged-kind kind",
            "feature-flag-deployment.yaml:3:7 info unmanaged-kind kind",
            "istio-virtualservice.yaml:17:19 error missing-service spec.http[0].route[0].destination.host",
            "istio-virtualservice.yaml:23:19 error missing-service spec.http[1].route[0].destination.host",
            "istio-virtualservice.yaml:28:19 error missing-service spec.http[1].route[1].destination.host",
        ]
    );
    for d in &diags {
        assert!(!d["message"].as_str().unwrap().is_empty());
        assert!(!d["hint"].as_str().unwrap().is_empty());
    }
}

#[test]
fn text_output_is_compiler_style_with_snippet_and_summary() {
    let (code, stdout, _) = serin(&["lint", SEED]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("canary-rollout.yaml:43:17: error[missing-route]"),
        "{stdout}"
    );
    // The snippet shows the offending line with a caret under `primary`.
    let block = stdout
        .split("canary-rollout.yaml:43:17: error[missing-route]")
        .nth(1)
        .unwrap();
    assert!(block.contains("43 │               - primary"), "{block}");
    assert!(block.contains("───┬───"), "{block}");
    assert!(block.contains("help:"), "{block}");
    assert!(
        stdout.contains("9 error(s), 1 warning(s), 2 info in 8 file(s)"),
        "{stdout}"
    );
}

#[test]
fn files_are_linted_together_and_warnings_alone_exit_0() {
    let bg = format!("{SEED}/blue-green-rollout.yaml");
    let tmpl = format!("{SEED}/success-rate-analysis.yaml");
    // Alone, the blue-green Rollout's template is missing...
    let (code, stdout, _) = serin(&["lint", &bg, "-o", "json"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("missing-template"));
    // ...linted with its template, only the unknown-field warning is left.
    let (code, stdout, _) = serin(&["lint", &bg, &tmpl, "-o", "json"]);
    assert_eq!(code, 0, "{stdout}");
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0]["code"], "unknown-field");
}

#[test]
fn bad_yaml_and_missing_paths_are_errors_not_crashes() {
    let dir = std::env::temp_dir().join(format!("serin-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Service\nmetadata: {name: [x\n").unwrap();
    let (code, stdout, _) = serin(&["lint", bad.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 1);
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(diags[0]["code"], "yaml-syntax");
    assert!(diags[0]["line"].as_u64().unwrap() >= 3);
    let (code, stdout, _) = serin(&["lint", "/nonexistent/manifests", "-o", "json"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("io-error"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_documents_the_command() {
    let (code, stdout, _) = serin(&["lint", "--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("serin lint manifests/ -o json") || stdout.contains("--output"),
        "{stdout}"
    );
}

#[test]
fn a_condition_that_does_not_compile_is_a_located_error() {
    let dir = std::env::temp_dir().join(format!("serin-lint-cel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("t.yaml");
    std::fs::write(
        &file,
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: t\nspec:\n  metrics:\n    - name: bad\n      successCondition: \"result[0] >= 0.95 and result[1] < 2\"\n      provider:\n        web:\n          url: http://x\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["lint", "-o", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &diags[0];
    assert_eq!(d["code"], "bad-condition");
    assert_eq!(d["path"], "spec.metrics[0].successCondition");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(8), Some(25))
    );
    assert!(
        d["message"].as_str().unwrap().contains("CEL uses `&&`"),
        "{d}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shell_completions_cover_every_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "lint",
        "plan",
        "demo",
        "up",
        "get",
        "promote",
        "abort",
        "undo",
        "emergency-rollback",
        "report",
        "flags",
    ] {
        assert!(script.contains(cmd), "no completion for {cmd}");
    }
}

#[test]
fn yaml_output_carries_the_same_data_as_json_for_lint_and_plan() {
    for args in [
        vec!["lint", SEED],
        vec![
            "plan",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/seed/manifests/blue-green-rollout.yaml"
            ),
        ],
    ] {
        let (jcode, json, _) = serin(&[&args[..], &["-o", "json"]].concat());
        let (ycode, yaml, stderr) = serin(&[&args[..], &["-o", "yaml"]].concat());
        assert_eq!(jcode, ycode, "{args:?}: same exit code; {stderr}");
        assert!(yaml.starts_with("---\n"), "{yaml}");
        let from_json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let from_yaml: serde_json::Value =
            serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{args:?}: {e}\n{yaml}"));
        assert!(
            from_json.as_array().is_some_and(|a| !a.is_empty()),
            "{json}"
        );
        assert_eq!(from_yaml, from_json, "{args:?}");
    }
    let (code, _, stderr) = serin(&["lint", SEED, "-o", "xml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("possible values: text, json, yaml"),
        "{stderr}"
    );
}
