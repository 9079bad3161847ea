//! Acceptance: linting the seed's manifests as one set reports exactly its
//! real problems, at their exact file:line:column.

use serin_spec::{ManifestSet, Severity, lint};

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/seed/manifests"
);

fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

#[test]
fn seed_manifests_report_exactly_their_real_problems() {
    let set = ManifestSet::load_paths(&[SEED]);
    assert_eq!(set.files.len(), 8, "all eight seed files are loaded");
    let got: Vec<(String, u32, u32, Severity, String, String)> = lint(&set)
        .into_iter()
        .map(|d| {
            (
                file_name(&d.file).to_string(),
                d.line,
                d.column,
                d.severity,
                d.code,
                d.path,
            )
        })
        .collect();
    use Severity::*;
    let want: Vec<(&str, u32, u32, Severity, &str, &str)> = vec![
        // `promotionPolicy` is not an Argo Rollouts field.
        (
            "blue-green-rollout.yaml",
            21,
            7,
            Warning,
            "unknown-field",
            "spec.strategy.blueGreen.promotionPolicy",
        ),
        // The canary / stable Services are never defined by the seed.
        (
            "canary-rollout.yaml",
            12,
            22,
            Error,
            "missing-service",
            "spec.strategy.canary.canaryService",
        ),
        (
            "canary-rollout.yaml",
            13,
            22,
            Error,
            "missing-service",
            "spec.strategy.canary.stableService",
        ),
        // The templates it names are not defined (the set has canary-analysis, success-rate).
        (
            "canary-rollout.yaml",
            30,
            27,
            Error,
            "missing-template",
            "spec.strategy.canary.analysis.templates[0].templateName",
        ),
        (
            "canary-rollout.yaml",
            31,
            27,
            Error,
            "missing-template",
            "spec.strategy.canary.analysis.templates[1].templateName",
        ),
        (
            "canary-rollout.yaml",
            32,
            27,
            Error,
            "missing-template",
            "spec.strategy.canary.analysis.templates[2].templateName",
        ),
        // Route `primary` is carried by no (unnamed) VirtualService route.
        (
            "canary-rollout.yaml",
            43,
            17,
            Error,
            "missing-route",
            "spec.strategy.canary.trafficRouting.istio.virtualService.routes[0]",
        ),
        (
            "deployment-dashboard.yaml",
            3,
            7,
            Info,
            "unmanaged-kind",
            "kind",
        ),
        (
            "feature-flag-deployment.yaml",
            3,
            7,
            Info,
            "unmanaged-kind",
            "kind",
        ),
        // The same missing Services, where the VirtualService routes to them.
        (
            "istio-virtualservice.yaml",
            17,
            19,
            Error,
            "missing-service",
            "spec.http[0].route[0].destination.host",
        ),
        (
            "istio-virtualservice.yaml",
            23,
            19,
            Error,
            "missing-service",
            "spec.http[1].route[0].destination.host",
        ),
        (
            "istio-virtualservice.yaml",
            28,
            19,
            Error,
            "missing-service",
            "spec.http[1].route[1].destination.host",
        ),
    ];
    let want: Vec<_> = want
        .into_iter()
        .map(|(f, l, c, s, code, p)| (f.to_string(), l, c, s, code.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn seed_messages_name_what_is_missing_and_what_exists() {
    let set = ManifestSet::load_paths(&[SEED]);
    let diags = lint(&set);
    let msg = |code: &str, line: u32| {
        diags
            .iter()
            .find(|d| d.code == code && d.line == line)
            .map(|d| format!("{} | {}", d.message, d.hint))
            .unwrap_or_default()
    };
    let t = msg("missing-template", 30);
    assert!(
        t.contains("`error-rate`") && t.contains("canary-analysis, success-rate"),
        "{t}"
    );
    let r = msg("missing-route", 43);
    assert!(
        r.contains("`primary`") && r.contains("frontend-app-vs") && r.contains("no name"),
        "{r}"
    );
    let s = msg("missing-service", 12);
    assert!(s.contains("`frontend-app-canary`"), "{s}");
}

#[test]
fn seed_models_are_typed_with_defaults() {
    let set = ManifestSet::load_paths(&[SEED]);
    let rollouts: Vec<_> = set.rollouts().collect();
    // Two Rollouts plus the RollingUpdate Deployment converted to one.
    assert_eq!(rollouts.len(), 3);
    let (_, bg) = rollouts
        .iter()
        .find(|(_, r)| r.metadata.name.as_deref() == Some("payment-service"))
        .expect("payment-service");
    let b = bg.spec.strategy.blue_green.as_ref().expect("blueGreen");
    assert!(!b.auto_promotion_enabled);
    assert_eq!(b.scale_down_delay_seconds, 600);
    assert_eq!(b.abort_scale_down_delay_seconds, 30);
    let c = &bg.spec.template.as_ref().unwrap().spec.containers[0];
    let ready = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        (
            ready.period_seconds,
            ready.success_threshold,
            ready.timeout_seconds,
            ready.failure_threshold
        ),
        (5, 2, 1, 3)
    );
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests["memory"].to_bytes(), Ok(1 << 30));
    assert_eq!(res.limits["cpu"].to_millis(), Ok(1000));

    let (_, api) = rollouts
        .iter()
        .find(|(_, r)| r.metadata.name.as_deref() == Some("api-server"))
        .expect("api-server from the Deployment");
    assert!(api.from_deployment);
    let canary = api.spec.strategy.canary.as_ref().unwrap();
    assert!(canary.steps.is_empty());
    assert_eq!(canary.max_surge.resolve(12, true), 3);
    assert_eq!(canary.max_unavailable.resolve(12, false), 3);
    let pre_stop = api.spec.template.as_ref().unwrap().spec.containers[0]
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap();
    assert_eq!(
        pre_stop.exec.as_ref().unwrap().command,
        ["/bin/sh", "-c", "sleep 15"]
    );

    let (_, fe) = rollouts
        .iter()
        .find(|(_, r)| r.metadata.name.as_deref() == Some("frontend-app"))
        .unwrap();
    let c = fe.spec.strategy.canary.as_ref().unwrap();
    let pauses: Vec<u64> = c
        .steps
        .iter()
        .filter_map(|s| s.pause.as_ref()?.duration.as_ref()?.to_duration().ok())
        .map(|d| d.as_secs())
        .collect();
    assert_eq!(pauses, [300, 300, 600, 600]);
    assert_eq!(c.analysis.as_ref().unwrap().starting_step, Some(2));
    assert_eq!(fe.spec.revision_history_limit, 10);
    assert_eq!(fe.spec.progress_deadline_seconds, 600);
}
