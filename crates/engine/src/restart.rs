//! `spec.restartAt` (Argo's restart), done by surge: every pod created
//! before `restartAt` is replaced, revision by revision in Argo's order
//! (stable, then the current revision, then the others oldest first),
//! without going through steps or traffic changes. Unlike Argo, which evicts
//! first, the platform starts each replacement first and retires the old pod
//! only once the replacement is available, so a restart never lowers
//! availability — not even with one replica.

use crate::{Action, Cx, Event, IntOrPercent, Millis, ObservedRevision, RolloutSpec, Strategy};

/// Replacements in flight at once: the canary's `maxSurge` (Argo uses
/// `maxUnavailable`, but Serin adds pods instead of removing them),
/// blue-green's `maxUnavailable`; at least one, at most the revision's size.
pub(crate) fn max_in_flight(spec: &RolloutSpec, revision_replicas: u32) -> u32 {
    let n = match &spec.strategy {
        Strategy::Canary(c) => c.max_surge.resolve(spec.replicas, true),
        Strategy::BlueGreen(b) => b
            .max_unavailable
            .unwrap_or(IntOrPercent::Int(1))
            .resolve(spec.replicas, false),
    };
    n.max(1).min(revision_replicas.max(1))
}

/// True when the restart asked for by `spec.restartAt` is due and not yet
/// done (or cancelled).
pub(crate) fn due(spec: &RolloutSpec, restarted_at: Option<Millis>, now: Millis) -> Option<Millis> {
    let at = spec.restart_at?;
    (now >= at && restarted_at.is_none_or(|r| r < at)).then_some(at)
}

/// Revisions that still run pods created before `at`, in Argo's order.
fn old_revisions<'a>(cx: &'a Cx<'_>, at: Millis) -> Vec<&'a ObservedRevision> {
    let stable = cx.status.stable_hash.as_ref();
    let new = cx.new_hash();
    let mut old: Vec<&ObservedRevision> = cx
        .obs
        .revisions
        .iter()
        .filter(|r| r.replicas > 0 && r.oldest_pod_created.is_some_and(|t| t < at))
        .collect();
    old.sort_by_key(|r| {
        let rank = if Some(&r.hash) == stable {
            0
        } else if &r.hash == new {
            1
        } else {
            2
        };
        (rank, r.number, r.hash.clone())
    });
    old
}

/// Runs after the strategy: asks for replacements while every revision is
/// fully available and the strategy is not moving replicas in this
/// reconcile, so an unhealthy or changing rollout is never made worse.
pub(crate) fn run(cx: &mut Cx<'_>) {
    let Some(at) = due(cx.spec, cx.status.restarted_at, cx.now) else {
        // Done, not asked for, or moved into the future (scheduled again).
        cx.status.restarting = None;
        return;
    };
    let Some(rev) = old_revisions(cx, at).first().map(|r| (*r).clone()) else {
        cx.status.restarted_at = Some(at);
        // Only a restart that replaced something is announced; a restartAt
        // older than every pod (e.g. an exported manifest) is just noted.
        if cx.status.restarting.take().is_some() {
            cx.emit(Event::Restarted { at });
        }
        return;
    };
    let moving = cx.actions.iter().any(|a| matches!(a, Action::Scale { .. }));
    let available = cx
        .obs
        .revisions
        .iter()
        .all(|r| r.replicas == 0 || r.available >= r.replicas);
    if moving || !available {
        return;
    }
    cx.status.restarting = Some(at);
    cx.actions.push(Action::RestartPods {
        revision: rev.hash.clone(),
        created_before: at,
        max_in_flight: max_in_flight(cx.spec, rev.replicas),
    });
}

/// A new revision mid-restart cancels the restart (its pods are replaced by
/// the rollout anyway), as in Argo.
pub(crate) fn cancel_for_new_revision(cx: &mut Cx<'_>) {
    if let Some(at) = due(cx.spec, cx.status.restarted_at, cx.now) {
        cx.status.restarted_at = Some(at);
        cx.status.restarting = None;
    }
}
