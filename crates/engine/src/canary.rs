//! Canary (and rolling update, which is a canary without steps).

use crate::replicas::{Slot, basic_canary_split, bounds, rolling_step, weighted};
use crate::{
    AnalysisKind, CanaryScale, CanarySpec, Cx, Event, PauseReason, RevisionHash, Route,
    ServiceRole, Step, WeightedDestination,
};

pub(crate) fn run(cx: &mut Cx<'_>, c: &CanarySpec) {
    let new = cx.new_hash().clone();
    let stable = cx.stable_hash();
    let n = u32::try_from(c.steps.len()).unwrap_or(u32::MAX);
    if new == stable {
        cx.status.current_step_index = Some(n);
        cx.stop_runs();
        steady(cx, c, &stable);
        return;
    }
    if cx.status.abort || cx.judge_runs() {
        aborted(cx, c, &new, &stable);
        return;
    }
    let mut idx = cx.status.current_step_index.unwrap_or(0).min(n);
    if cx.status.promote_full {
        idx = n;
    }
    loop {
        cx.status.current_step_index = Some(idx);
        if let Some(bg) = &c.analysis
            && !cx.status.promote_full
            && idx >= bg.starting_step
            && idx < n
        {
            cx.ensure_run(AnalysisKind::Background, &bg.analysis);
        }
        if idx >= n || cx.step_blocked() || cx.has_pause(PauseReason::InconclusiveAnalysisRun) {
            break;
        }
        if !step_done(cx, c, idx, &new, &stable) {
            break;
        }
        cx.remove_pause(PauseReason::CanaryPauseStep);
        cx.emit(Event::StepCompleted { step: idx });
        idx += 1;
    }
    cx.status.current_step_index = Some(idx);
    if cx.status.abort {
        // A failed experiment aborted the rollout in this reconcile.
        aborted(cx, c, &new, &stable);
        return;
    }
    if idx >= n {
        promote(cx, c, &new, &stable);
    } else {
        progress(cx, c, current_set_weight(c, idx), &new, &stable);
    }
}

/// Argo's `GetCurrentSetWeight`: the last `setWeight` at or before the
/// current step, 0 if none.
fn current_set_weight(c: &CanarySpec, idx: u32) -> u32 {
    c.steps
        .iter()
        .take(idx as usize + 1)
        .rev()
        .find_map(Step::set_weight)
        .unwrap_or(0)
}

/// Whether the step at `idx` is complete; starts what it needs.
fn step_done(
    cx: &mut Cx<'_>,
    c: &CanarySpec,
    idx: u32,
    new: &RevisionHash,
    stable: &RevisionHash,
) -> bool {
    action_done(cx, c, &c.steps[idx as usize], idx, new, stable)
}

/// Whether one action of step `idx` is complete; starts what it needs.
fn action_done(
    cx: &mut Cx<'_>,
    c: &CanarySpec,
    step: &Step,
    idx: u32,
    new: &RevisionHash,
    stable: &RevisionHash,
) -> bool {
    match step {
        // Every action is evaluated (no short cut), so all of them take
        // effect when the step starts; the step waits for the slowest.
        Step::Combined(parts) => parts.iter().fold(true, |done, a| {
            action_done(cx, c, a, idx, new, stable) & done
        }),
        Step::SetWeight(w) => {
            at_desired_counts(cx, c, *w, new, stable)
                && (!c.traffic_routing || observed_weight(cx, new) == *w)
        }
        Step::Pause(duration) => {
            let since = cx
                .status
                .pause_conditions
                .iter()
                .find(|p| p.reason == PauseReason::CanaryPauseStep)
                .map(|p| p.since);
            match (since, duration) {
                (None, Some(0)) => true,
                (None, _) => {
                    cx.add_pause(PauseReason::CanaryPauseStep);
                    false
                }
                // The pause condition goes when the whole step completes
                // (a combined step may still wait for its other actions).
                (Some(since), Some(d)) => cx.now >= since.saturating_add(*d),
                (Some(_), _) => false,
            }
        }
        Step::Analysis(a) => {
            let (phase, acknowledged) = cx.ensure_run(AnalysisKind::Step(idx), a);
            phase == crate::AnalysisPhase::Successful
                || (phase == crate::AnalysisPhase::Inconclusive && acknowledged)
        }
        Step::SetCanaryScale(s) => {
            cx.status.canary_scale = match s {
                CanaryScale::MatchTrafficWeight => None,
                other => Some(other.clone()),
            };
            // Argo (rollout/canary.go, completedCurrentCanaryStep): the step
            // completes only once the canary runs its new desired count, all
            // available, and the stable its own, so a following timed pause
            // starts with the pods in place.
            at_desired_counts(cx, c, current_set_weight(c, idx), new, stable)
        }
        Step::Experiment(x) => crate::experiment::step_done(cx, x, idx, new, stable),
        Step::SetHeaderRoute(r) => {
            cx.status.header_routes.retain(|h| h.name != r.name);
            if !r.matches.is_empty() {
                cx.status.header_routes.push(r.clone());
                cx.status.header_routes.sort();
            }
            true
        }
        Step::SetMirrorRoute(r) => {
            cx.status.mirror_routes.retain(|m| m.name != r.name);
            if !r.matches.is_empty() && r.percentage > 0 {
                cx.status.mirror_routes.push(r.clone());
                cx.status.mirror_routes.sort();
            }
            true
        }
    }
}

/// Argo's `AtDesiredReplicaCountsForCanary`: the canary runs its desired
/// count with every replica available; the stable runs its own (unless
/// `dynamicStableScale` lets it follow the traffic); without traffic routing
/// no older revision still has available pods, since they would take traffic.
fn at_desired_counts(
    cx: &Cx<'_>,
    c: &CanarySpec,
    weight: u32,
    new: &RevisionHash,
    stable: &RevisionHash,
) -> bool {
    let (ct, st) = targets(cx, c, weight, false);
    if !cx.settled_at(new, ct) {
        return false;
    }
    if c.traffic_routing {
        c.dynamic_stable_scale || cx.current(stable) == st
    } else {
        cx.settled_at(stable, st)
            && cx
                .obs
                .revisions
                .iter()
                .filter(|r| &r.hash != new && &r.hash != stable)
                .all(|r| r.available == 0)
    }
}

/// Desired (canary, stable) replicas for a weight.
fn targets(cx: &Cx<'_>, c: &CanarySpec, weight: u32, full: bool) -> (u32, u32) {
    let replicas = cx.spec.replicas;
    if full {
        return (replicas, if c.traffic_routing { replicas } else { 0 });
    }
    if c.traffic_routing {
        let canary = match &cx.status.canary_scale {
            Some(CanaryScale::Replicas(r)) => *r,
            Some(CanaryScale::Weight(p)) => weighted(replicas, *p),
            _ => weighted(replicas, weight),
        };
        let stable = if c.dynamic_stable_scale {
            replicas - weighted(replicas, observed_weight(cx, cx.new_hash()))
        } else {
            replicas
        };
        (canary, stable)
    } else {
        // Pods are the only lever: Argo's approximation, which may use the
        // surge allowance and never leaves either side empty between 1 and
        // 99 % when two pods fit.
        let surge = bounds(
            replicas,
            c.max_surge,
            c.max_unavailable,
            cx.spec.pdb_min_available,
        )
        .max_total
            - replicas;
        basic_canary_split(replicas, weight, surge)
    }
}

fn observed_weight(cx: &Cx<'_>, h: &RevisionHash) -> u32 {
    cx.obs
        .route
        .weights
        .iter()
        .find(|d| &d.revision == h)
        .map_or(0, |d| d.weight)
}

/// Routing for a traffic-routed canary: weights always sum to 100. A
/// running experiment's weighted templates take their share from the
/// stable's (Argo: stable = 100 − canary − Σ experiment weights).
fn tr_route(cx: &Cx<'_>, stable: &RevisionHash, canary: &RevisionHash, w: u32) -> Route {
    let w = if stable == canary { 0 } else { w.min(100) };
    let extra = if stable == canary {
        Vec::new()
    } else {
        crate::experiment::weights(cx, 100 - w)
    };
    let stable_w = 100 - w - extra.iter().map(|d| d.weight).sum::<u32>();
    let mut weights = Vec::new();
    if stable_w > 0 || (w == 0 && extra.is_empty()) {
        weights.push(dest(stable, stable_w));
    }
    if w > 0 {
        weights.push(dest(canary, w));
    }
    weights.extend(extra);
    Route {
        services: [
            (ServiceRole::Stable, stable.clone()),
            (ServiceRole::Canary, canary.clone()),
        ]
        .into(),
        weights,
        header_routes: if stable == canary {
            Vec::new()
        } else {
            cx.status.header_routes.clone()
        },
        mirror_routes: if stable == canary {
            Vec::new()
        } else {
            cx.status.mirror_routes.clone()
        },
    }
}

fn basic_route(stable: &RevisionHash, canary: &RevisionHash) -> Route {
    Route {
        services: [
            (ServiceRole::Stable, stable.clone()),
            (ServiceRole::Canary, canary.clone()),
        ]
        .into(),
        weights: Vec::new(),
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
    }
}

fn dest(h: &RevisionHash, weight: u32) -> WeightedDestination {
    WeightedDestination {
        revision: h.clone(),
        weight,
    }
}

/// Bounded rolling move: `first` towards `first_target`, `second` towards
/// `second_target`, every other revision towards zero.
fn roll(cx: &mut Cx<'_>, c: &CanarySpec, order: [(&RevisionHash, u32); 2]) {
    let b = bounds(
        cx.spec.replicas,
        c.max_surge,
        c.max_unavailable,
        cx.spec.pdb_min_available,
    );
    let mut hashes: Vec<RevisionHash> = order.iter().map(|(h, _)| (*h).clone()).collect();
    let mut slots: Vec<Slot> = order
        .iter()
        .map(|(h, t)| Slot {
            current: cx.current(h),
            available: cx.available(h),
            target: *t,
        })
        .collect();
    if hashes[0] == hashes[1] {
        hashes.pop();
        slots.pop();
    }
    for r in &cx.obs.revisions {
        if !hashes.contains(&r.hash) {
            hashes.push(r.hash.clone());
            slots.push(Slot {
                current: r.replicas,
                available: r.available.min(r.replicas),
                target: 0,
            });
        }
    }
    let desired = rolling_step(&slots, b);
    for (h, d) in hashes.iter().zip(desired) {
        cx.scale(h, d);
    }
}

fn steady(cx: &mut Cx<'_>, c: &CanarySpec, stable: &RevisionHash) {
    cx.status.canary_weight = 0;
    cx.status.header_routes.clear();
    cx.status.mirror_routes.clear();
    if c.traffic_routing {
        cx.scale(stable, cx.spec.replicas);
        cx.scale_down_others(&[stable]);
        let r = tr_route(cx, stable, stable, 0);
        cx.set_route(r);
    } else {
        roll(
            cx,
            c,
            [(stable, cx.spec.replicas), (stable, cx.spec.replicas)],
        );
        cx.set_route(basic_route(stable, stable));
    }
}

fn aborted(cx: &mut Cx<'_>, c: &CanarySpec, new: &RevisionHash, stable: &RevisionHash) {
    cx.stop_runs();
    cx.status.canary_weight = 0;
    cx.status.header_routes.clear();
    cx.status.mirror_routes.clear();
    if c.traffic_routing {
        // Traffic leaves the canary at once; its pods linger for
        // abortScaleDownDelaySeconds so a quick retry is cheap.
        let r = tr_route(cx, stable, new, 0);
        cx.set_route(r);
        cx.scale_after_abort(new, stable, c.abort_scale_down_delay);
    } else {
        roll(cx, c, [(stable, cx.spec.replicas), (new, 0)]);
        cx.set_route(basic_route(stable, new));
    }
}

fn progress(cx: &mut Cx<'_>, c: &CanarySpec, w: u32, new: &RevisionHash, stable: &RevisionHash) {
    let (ct, st) = targets(cx, c, w, false);
    if c.traffic_routing {
        cx.scale(new, ct);
        cx.scale(stable, st);
        cx.scale_down_others(&[new, stable]);
        // Weight goes up only once the canary can carry it; it goes down at once.
        let now_w = observed_weight(cx, new);
        let avail = cx.available(new);
        let applied = if w <= now_w || (avail >= ct && (w == 0 || avail > 0)) {
            w
        } else {
            now_w
        };
        cx.status.canary_weight = applied;
        let r = tr_route(cx, stable, new, applied);
        cx.set_route(r);
    } else {
        roll(cx, c, [(new, ct), (stable, st)]);
        cx.status.canary_weight = w;
        cx.set_route(basic_route(stable, new));
    }
}

fn promote(cx: &mut Cx<'_>, c: &CanarySpec, new: &RevisionHash, stable: &RevisionHash) {
    let replicas = cx.spec.replicas;
    if c.traffic_routing {
        cx.scale(new, replicas);
        cx.scale(stable, replicas);
        cx.scale_down_others(&[new, stable]);
        if cx.settled_at(new, replicas) {
            complete(cx, new, stable, c.scale_down_delay);
            let r = tr_route(cx, new, new, 0);
            cx.set_route(r);
        } else {
            let w = observed_weight(cx, new);
            cx.status.canary_weight = w;
            let r = tr_route(cx, stable, new, w);
            cx.set_route(r);
        }
    } else {
        roll(cx, c, [(new, replicas), (stable, 0)]);
        let others_gone = cx
            .obs
            .revisions
            .iter()
            .all(|r| &r.hash == new || r.replicas == 0);
        if cx.settled_at(new, replicas) && others_gone {
            complete(cx, new, stable, 0);
            cx.set_route(basic_route(new, new));
        } else {
            cx.set_route(basic_route(stable, new));
        }
    }
}

/// The new revision becomes stable.
fn complete(cx: &mut Cx<'_>, new: &RevisionHash, old: &RevisionHash, delay: u64) {
    cx.stop_runs();
    cx.status.stable_hash = Some(new.clone());
    cx.status.canary_weight = 0;
    cx.status.header_routes.clear();
    cx.status.mirror_routes.clear();
    cx.status.promote_full = false;
    if delay > 0 {
        cx.status
            .scale_down_at
            .insert(old.clone(), cx.now.saturating_add(delay));
    }
    cx.emit(Event::Completed {
        revision: new.clone(),
    });
}
