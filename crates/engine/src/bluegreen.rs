//! Blue-green: the new revision comes up behind the preview service, is
//! analysed, then the active service switches to it atomically.
//!
//! Lifecycle of a new revision `new` while `stable` serves:
//! 1. scale `new` to `previewReplicaCount` (default all); point preview at it
//!    once available;
//! 2. pre-promotion analysis; then promote automatically, after
//!    `autoPromotionSeconds`, or on `promote` (`autoPromotionEnabled: false`);
//! 3. scale `new` to all replicas, switch active to it;
//! 4. post-promotion analysis (failure switches active back — the old
//!    revision is still up); then `new` becomes stable and the old one is
//!    scaled down after `scaleDownDelaySeconds`.

use crate::{
    AnalysisKind, AnalysisPhase, BlueGreenSpec, Cx, Event, PauseReason, RevisionHash, Route,
    ServiceRole,
};

pub(crate) fn run(cx: &mut Cx<'_>, b: &BlueGreenSpec) {
    let new = cx.new_hash().clone();
    let stable = cx.stable_hash();
    let replicas = cx.spec.replicas;
    if new == stable {
        cx.stop_runs();
        cx.scale(&stable, replicas);
        // Back on the stable revision (undo, or a newer one superseded): the
        // active service moves only once stable can carry the traffic; until
        // then whatever is active keeps serving.
        let serving = cx.status.active_hash.clone().filter(|a| *a != stable);
        match serving {
            Some(active) if !cx.settled_at(&stable, replicas) => {
                cx.scale_down_others(&[&stable, &active]);
                cx.set_route(route(b, &active, &stable));
            }
            _ => {
                cx.status.active_hash = Some(stable.clone());
                cx.scale_down_others(&[&stable]);
                cx.set_route(route(b, &stable, &stable));
            }
        }
        return;
    }
    let active = cx
        .status
        .active_hash
        .clone()
        .unwrap_or_else(|| stable.clone());
    if cx.status.abort || cx.judge_runs() {
        // Back to the stable revision at once; the new one lingers for
        // abortScaleDownDelaySeconds behind the preview service.
        cx.status.active_hash = Some(stable.clone());
        cx.set_route(route(b, &stable, &new));
        cx.scale_after_abort(&new, &stable, b.abort_scale_down_delay);
        return;
    }
    if active != new {
        pre_promotion(cx, b, &new, &stable);
    } else {
        post_promotion(cx, b, &new, &stable);
    }
}

fn route(b: &BlueGreenSpec, active: &RevisionHash, preview: &RevisionHash) -> Route {
    let mut services = std::collections::BTreeMap::new();
    services.insert(ServiceRole::Active, active.clone());
    if b.has_preview_service {
        services.insert(ServiceRole::Preview, preview.clone());
    }
    Route {
        services,
        weights: Vec::new(),
        header_routes: Vec::new(),
        mirror_routes: Vec::new(),
    }
}

fn analysis_passed(phase: AnalysisPhase, acknowledged: bool) -> bool {
    phase == AnalysisPhase::Successful || (phase == AnalysisPhase::Inconclusive && acknowledged)
}

fn pre_promotion(cx: &mut Cx<'_>, b: &BlueGreenSpec, new: &RevisionHash, stable: &RevisionHash) {
    let replicas = cx.spec.replicas;
    let preview_count = b.preview_replica_count.unwrap_or(replicas).min(replicas);
    let promoting = cx.status.promote_full || cx.status.promotion_approved;
    // What the active service serves until `new` is promoted: the stable
    // revision, or one that was switched to but not yet confirmed when `new`
    // arrived (it keeps serving, as in Argo, rather than flipping users back).
    let serving = cx
        .status
        .active_hash
        .clone()
        .unwrap_or_else(|| stable.clone());
    cx.scale(stable, replicas);
    cx.scale(&serving, replicas);
    cx.scale(new, if promoting { replicas } else { preview_count });
    cx.scale_down_others(&[new, stable, &serving]);
    let preview_ready = cx.available(new) >= preview_count && cx.current(new) >= preview_count;
    let preview_target = if preview_ready { new } else { &serving };
    if !preview_ready {
        cx.set_route(route(b, &serving, preview_target));
        return;
    }
    let mut ready_to_promote = true;
    if let Some(a) = &b.pre_promotion_analysis
        && !cx.status.promote_full
    {
        let (phase, ack) = cx.ensure_run(AnalysisKind::PrePromotion, a);
        ready_to_promote = analysis_passed(phase, ack);
    }
    let mut promote = promoting;
    if ready_to_promote && !promote && !cx.step_blocked() {
        if !b.auto_promotion_enabled {
            cx.add_pause(PauseReason::BlueGreenPause);
        } else if let Some(after) = b.auto_promotion_after {
            cx.add_pause(PauseReason::BlueGreenPause);
            let since = cx
                .status
                .pause_conditions
                .iter()
                .find(|p| p.reason == PauseReason::BlueGreenPause)
                .map_or(cx.now, |p| p.since);
            promote = cx.now >= since.saturating_add(after);
        } else {
            promote = true;
        }
    }
    if ready_to_promote && promote && !cx.step_blocked() {
        cx.remove_pause(PauseReason::BlueGreenPause);
        cx.status.promotion_approved = true;
        cx.scale(new, replicas);
        if cx.settled_at(new, replicas) {
            // The switch: one route change moves all traffic at once.
            cx.status.active_hash = Some(new.clone());
            cx.set_route(route(b, new, new));
            return;
        }
    }
    cx.set_route(route(b, &serving, preview_target));
}

fn post_promotion(cx: &mut Cx<'_>, b: &BlueGreenSpec, new: &RevisionHash, stable: &RevisionHash) {
    let replicas = cx.spec.replicas;
    // Keep the old revision up until the new one is confirmed: an abort
    // during post-promotion analysis switches straight back to it.
    cx.scale(new, replicas);
    cx.scale(stable, replicas);
    cx.scale_down_others(&[new, stable]);
    cx.set_route(route(b, new, new));
    let mut passed = true;
    if let Some(a) = &b.post_promotion_analysis
        && !cx.status.promote_full
    {
        let (phase, ack) = cx.ensure_run(AnalysisKind::PostPromotion, a);
        passed = analysis_passed(phase, ack);
    }
    if passed {
        cx.stop_runs();
        cx.status.stable_hash = Some(new.clone());
        cx.status.promote_full = false;
        if b.scale_down_delay > 0 {
            cx.status
                .scale_down_at
                .insert(stable.clone(), cx.now.saturating_add(b.scale_down_delay));
        }
        cx.emit(Event::Completed {
            revision: new.clone(),
        });
    }
}
