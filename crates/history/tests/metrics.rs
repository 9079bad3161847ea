//! The shipped Grafana dashboard works against `Metrics::encode()`.

mod common;

use common::ten_deployments;
use serin_engine::Phase;
use serin_history::Metrics;

const DASHBOARD: &str = include_str!("../../../docs/grafana/deployment-dashboard.json");

/// The seed article's queries, verbatim.
const SEED_QUERIES: [&str; 3] = [
    r#"sum(rate(deployment_status_total{status="success"}[1h])) / sum(rate(deployment_status_total[1h]))"#,
    "sum(rate(deployment_rollback_total[1h])) by (service)",
    "histogram_quantile(0.95, sum(rate(deployment_duration_seconds_bucket[5m])) by (le))",
];

fn exprs() -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is valid JSON");
    let mut out = Vec::new();
    for panel in v["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    out
}

/// Metric names in a PromQL expression: identifiers followed by a selector
/// or a range (`name{` / `name[`).
fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'{' || b[i] == b'[') && (start == 0 || b[start - 1] != b'"')
            {
                names.push(expr[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn dashboard_keeps_the_seed_queries() {
    assert_eq!(exprs(), SEED_QUERIES);
    let v: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    assert_eq!(v["title"], "Deployment Health");
    assert!(v["schemaVersion"].as_u64().is_some());
}

#[test]
fn every_dashboard_metric_is_exported() {
    let m = Metrics::new();
    for r in ten_deployments().all() {
        m.observe_record(&r);
    }
    m.set_rollout("api", "canary", "r10", Phase::Healthy);
    m.observe_analysis_run("api", "Failed");
    let text = m.encode();
    let mut names: Vec<String> = exprs().iter().flat_map(|e| metric_names(e)).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "deployment_duration_seconds_bucket",
            "deployment_rollback_total",
            "deployment_status_total"
        ]
    );
    for name in &names {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "{name} missing from:\n{text}"
        );
    }
    // The success-rate panel selects status="success".
    assert!(
        text.contains(r#"deployment_status_total{service="api",status="success"} 8"#),
        "{text}"
    );
    assert!(
        text.contains(r#"deployment_status_total{service="api",status="failure"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"deployment_status_total{service="api",status="rollback"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"deployment_rollback_total{service="api"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"deployment_duration_seconds_count{service="api"} 10"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rollout_info{rollout="api",strategy="canary",revision="r10"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rollout_phase{rollout="api",phase="Healthy"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"rollout_phase{rollout="api",phase="Degraded"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"analysis_run_total{rollout="api",phase="Failed"} 1"#),
        "{text}"
    );
    assert!(!m.encode_body().contains("# EOF"));
}

#[test]
fn feeding_a_record_again_does_not_count_it_twice_and_info_follows_the_revision() {
    let m = Metrics::new();
    let records = ten_deployments().all();
    for r in records.iter().chain(records.iter()) {
        m.observe_record(r);
    }
    let text = m.encode();
    assert!(
        text.contains(r#"deployment_status_total{service="api",status="success"} 8"#),
        "{text}"
    );
    m.set_rollout("api", "canary", "r1", Phase::Progressing);
    m.set_rollout("api", "canary", "r2", Phase::Healthy);
    let text = m.encode();
    assert!(!text.contains(r#"revision="r1""#), "{text}");
    assert!(text.contains(r#"revision="r2""#), "{text}");
    m.remove_rollout("api");
    assert!(!m.encode().contains("rollout_phase{"));
}
