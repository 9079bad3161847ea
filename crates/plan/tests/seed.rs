//! `serin plan` logic on the seed's real manifests.

use serin_spec::ManifestSet;

fn seed() -> ManifestSet {
    ManifestSet::load_paths(&[concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/seed/manifests"
    )])
}

fn engine_spec(set: &ManifestSet, name: &str) -> serin_engine::RolloutSpec {
    let (_, r) = set
        .rollouts()
        .find(|(_, r)| r.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{name} not loaded"));
    serin_plan::to_engine(set, r).expect("converts")
}

#[test]
fn seed_canary_is_explained_step_by_step() {
    let set = seed();
    let spec = engine_spec(&set, "frontend-app");
    assert_eq!(spec.replicas, 20);
    let (text, min) = serin_plan::explain(&set, &spec);
    assert!(
        text.contains("step 1: 5 % of traffic to canary (1 pod), stable keeps 20 pods"),
        "{text}"
    );
    assert!(
        text.contains("step 7: 50 % of traffic to canary (10 pods)"),
        "{text}"
    );
    assert_eq!(min, 30 * 60 * 1000, "5 + 5 + 10 + 10 minutes of pauses");
}

#[test]
fn seed_deployment_is_a_rolling_update_with_its_pdb() {
    let set = seed();
    let spec = engine_spec(&set, "api-server");
    assert_eq!(
        spec.pdb_min_available,
        Some(serin_engine::IntOrPercent::Percent(75))
    );
    let (text, _) = serin_plan::explain(&set, &spec);
    assert!(text.contains("at most 15 pods at once"), "{text}");
    assert!(text.contains("at least 9 available"), "{text}");
}

#[test]
fn seed_blue_green_simulates_to_healthy_through_the_manual_gate() {
    let set = seed();
    let spec = engine_spec(&set, "payment-service");
    let (text, min) = serin_plan::explain(&set, &spec);
    assert!(text.contains("waits for `serin promote`"), "{text}");
    // success-rate: 5 measurements 30 s apart = 2 minutes.
    assert_eq!(min, 120_000);
    let sim = serin_plan::simulate::simulate(&spec, 5_000, 120_000).expect("no invariant broken");
    assert!(
        sim.timeline.contains("serin promote (manual gate)"),
        "{}",
        sim.timeline
    );
    assert!(
        sim.duration >= 125_000,
        "pods (5 s) then analysis (2 m) before the switch"
    );
}

#[test]
fn the_template_hash_is_stable_and_changes_with_the_image() {
    let set = seed();
    let a = engine_spec(&set, "frontend-app");
    let b = engine_spec(&seed(), "frontend-app");
    assert_eq!(a.template_hash, b.template_hash);
    let mut changed = set.clone();
    for d in &mut changed.documents {
        if let serin_spec::Resource::Rollout(r) = &mut d.resource
            && let Some(t) = &mut r.spec.template
        {
            for c in &mut t.spec.containers {
                c.image = Some("myregistry/frontend-app:v2".into());
            }
        }
    }
    let c = engine_spec(&changed, "frontend-app");
    assert_ne!(a.template_hash, c.template_hash);
}
