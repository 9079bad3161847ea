//! Criterion: one reconcile of a 20-step canary, mid-rollout (the engine's
//! hot path: every observed change calls it).

use criterion::{Criterion, criterion_group, criterion_main};
use serin_engine::*;
use std::hint::black_box;

/// A 20-replica, 20-step traffic-routed canary (10 weights, 10 pauses).
pub fn twenty_step_canary() -> RolloutSpec {
    let mut steps = Vec::new();
    for w in [5, 10, 15, 20, 30, 40, 50, 60, 80, 100] {
        steps.push(Step::SetWeight(w));
        steps.push(Step::Pause(Some(60_000)));
    }
    RolloutSpec {
        name: "bench".into(),
        replicas: 20,
        template_hash: RevisionHash::new("v2"),
        paused: false,
        progress_deadline: 600_000,
        progress_deadline_abort: false,
        rollback_window: None,
        pdb_min_available: None,
        strategy: Strategy::Canary(CanarySpec {
            steps,
            max_surge: IntOrPercent::Percent(25),
            max_unavailable: IntOrPercent::Percent(25),
            traffic_routing: true,
            analysis: None,
            scale_down_delay: 30_000,
            abort_scale_down_delay: 30_000,
            dynamic_stable_scale: false,
        }),
        restart_at: None,
    }
}

fn bench(c: &mut Criterion) {
    let spec = twenty_step_canary();
    // Mid-rollout: at step 9 (setWeight 50), both revisions up.
    let status = RolloutStatus {
        phase: Phase::Progressing,
        current_hash: Some(RevisionHash::new("v2")),
        stable_hash: Some(RevisionHash::new("v1")),
        current_step_index: Some(12),
        canary_weight: 50,
        last_progress: Some(0),
        ..RolloutStatus::default()
    };
    let rev = |h: &str, n, r| ObservedRevision {
        hash: RevisionHash::new(h),
        number: n,
        replicas: r,
        ready: r,
        available: r,
        oldest_pod_created: Some(0),
    };
    let observed = Observed {
        revisions: vec![rev("v1", 1, 20), rev("v2", 2, 10)],
        analysis: Default::default(),
        experiments: Vec::new(),
        route: Route {
            services: [
                (ServiceRole::Stable, RevisionHash::new("v1")),
                (ServiceRole::Canary, RevisionHash::new("v2")),
            ]
            .into(),
            weights: vec![
                WeightedDestination {
                    revision: RevisionHash::new("v1"),
                    weight: 50,
                },
                WeightedDestination {
                    revision: RevisionHash::new("v2"),
                    weight: 50,
                },
            ],
            header_routes: vec![],
            mirror_routes: vec![],
        },
    };
    c.bench_function("reconcile 20-step canary", |b| {
        b.iter(|| {
            reconcile(
                black_box(&spec),
                black_box(&status),
                black_box(&observed),
                black_box(1_000),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
