//! 10,000 complete rollouts of a 20-step canary in one process, through the
//! simulator (fake clock, fake pods, every invariant checked on every
//! reconcile). Prints reconciles per second and peak memory.
//!
//! Run: `cargo bench -p serin-bench --bench simulate`
//! (`SERIN_BENCH_ROLLOUTS` overrides the count).

use serin_engine::*;
use serin_simulator::{Sim, World};
use std::time::Instant;

#[path = "engine.rs"]
#[allow(dead_code)]
mod engine_bench;

fn main() {
    let n: u64 = std::env::var("SERIN_BENCH_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let spec = engine_bench::twenty_step_canary();
    let started = Instant::now();
    let mut reconciles = 0u64;
    let mut engine_only = std::time::Duration::ZERO;
    for i in 0..n {
        let mut first = spec.clone();
        first.template_hash = RevisionHash::new(format!("base{i}"));
        let mut sim = Sim::new(
            first,
            World {
                ready_delay: 5_000,
                ..World::default()
            },
        );
        let ok = sim
            .run_until(1_000, 600_000, Sim::healthy)
            .expect("invariants hold");
        assert!(ok);
        sim.update(RevisionHash::new(format!("next{i}")));
        let ok = sim
            .run_until(1_000, 3_600_000, Sim::healthy)
            .expect("invariants hold");
        assert!(ok, "rollout {i} did not complete");
        reconciles += sim.reconciles;
        if i == 0 {
            // Time the engine alone on this rollout's last state for the ratio.
            let t = Instant::now();
            for _ in 0..10_000 {
                std::hint::black_box(reconcile(&sim.spec, &sim.status, &sim.observe(), sim.now));
            }
            engine_only = t.elapsed() / 10_000;
        }
    }
    let wall = started.elapsed();
    let per_sec = reconciles as f64 / wall.as_secs_f64();
    let peak = serin_bench::peak_rss_bytes()
        .map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    println!("rollouts:            {n} (20-step canary, 20 replicas, each to Healthy)");
    println!("reconciles:          {reconciles}");
    println!("wall time:           {:.2} s", wall.as_secs_f64());
    println!(
        "reconciles/s (sim):  {per_sec:.0}  (each: 2 reconciles for the determinism check, world update, invariant checks)"
    );
    println!(
        "engine alone:        {:.2} us per reconcile (steady state)",
        engine_only.as_secs_f64() * 1e6
    );
    println!(
        "ratio sim/engine:    {:.1}x (cost of the simulated platform and checks per reconcile)",
        (wall.as_secs_f64() / reconciles as f64) / engine_only.as_secs_f64().max(1e-12)
    );
    println!("peak RSS:            {peak}");
}
