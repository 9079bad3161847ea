//! `serin plan --simulate`: the rollout run in the simulator with pods that
//! become ready after `ready_after`, analyses that pass after their minimum
//! duration, and `promote` given at every manual gate. Prints what changes,
//! when; every engine invariant is checked on the way.

use std::fmt::Write as _;

use serin_engine as e;
use serin_simulator::{Sim, Violation, World};

use crate::explain::human;

/// Outcome of a simulation.
pub struct Simulated {
    /// The timeline, one line per change.
    pub timeline: String,
    /// Simulated time from the update to Healthy, in ms.
    pub duration: u64,
    /// Reconciles it took.
    pub reconciles: u64,
}

/// Simulates rolling `spec` out over a previous revision.
pub fn simulate(
    spec: &e::RolloutSpec,
    ready_after: u64,
    analysis_takes: u64,
) -> Result<Simulated, Violation> {
    const TICK: u64 = 1000;
    let mut first = spec.clone();
    first.template_hash = e::RevisionHash::new("previous");
    let world = World {
        ready_delay: ready_after,
        analysis_duration: analysis_takes,
        ..World::default()
    };
    let mut sim = Sim::new(first, world);
    sim.run_until(TICK, 3_600_000, Sim::healthy)?;
    let start = sim.now;
    sim.update(spec.template_hash.clone());
    let mut out = String::new();
    let mut last = String::new();
    let mut seen_events = sim.events.len();
    let limit = start + 30 * 24 * 3_600_000;
    while !sim.healthy() && sim.now < limit {
        sim.tick(TICK)?;
        let t = human(sim.now - start);
        for (_, ev) in &sim.events[seen_events..] {
            let line = match ev {
                e::Event::RolloutUpdated { revision } => format!("rollout of {revision} starts"),
                e::Event::StepCompleted { step } => format!("step {} done", step + 1),
                e::Event::Paused { reason } => format!("paused ({reason:?})"),
                e::Event::Completed { revision } => format!("{revision} is stable"),
                e::Event::Aborted { message } => format!("aborted: {message}"),
                other => format!("{other:?}"),
            };
            let _ = writeln!(out, "  {t:>8}  {line}");
        }
        seen_events = sim.events.len();
        let o = sim.observe();
        let mut state: Vec<String> = o
            .revisions
            .iter()
            .filter(|r| r.replicas > 0)
            .map(|r| format!("{}: {}/{} ready", r.hash, r.available, r.replicas))
            .collect();
        for w in &o.route.weights {
            state.push(format!("{} {} %", w.revision, w.weight));
        }
        if let Some(a) = o.route.services.get(&e::ServiceRole::Active) {
            state.push(format!("active → {a}"));
        }
        let state = state.join(", ");
        if state != last {
            let _ = writeln!(out, "  {t:>8}  {state}");
            last = state;
        }
        if sim.status.phase == e::Phase::Paused && !sim.spec.paused {
            let gate = sim.status.pause_conditions.iter().any(|p| {
                matches!(
                    p.reason,
                    e::PauseReason::BlueGreenPause | e::PauseReason::CanaryPauseStep
                )
            }) && is_manual_gate(&sim);
            if gate {
                let _ = writeln!(out, "  {t:>8}  serin promote (manual gate)");
                let before = sim.status.current_step_index;
                let _ = sim.command(&e::Command::Promote);
                // A promote ends the pause step itself (the engine emits no
                // StepCompleted for it): say so, as for any other step.
                if let Some(i) = before
                    && sim.status.current_step_index > before
                {
                    let _ = writeln!(out, "  {t:>8}  step {} done (promoted)", i + 1);
                }
            }
        }
    }
    Ok(Simulated {
        timeline: out,
        duration: sim.now - start,
        reconciles: sim.reconciles,
    })
}

/// A pause only `promote` ends: an indefinite pause step, or blue-green
/// without auto-promotion.
fn is_manual_gate(sim: &Sim) -> bool {
    match &sim.spec.strategy {
        e::Strategy::Canary(c) => {
            let idx = sim.status.current_step_index.unwrap_or(0) as usize;
            matches!(c.steps.get(idx), Some(e::Step::Pause(None)))
        }
        e::Strategy::BlueGreen(b) => !b.auto_promotion_enabled,
    }
}
