//! [`Tracker`]: turns what the control plane observes into deployment records.
//!
//! Pure and deterministic: no clock (time is in every [`Observation`]), no
//! I/O, `BTreeMap` state. The control plane stores every record it returns
//! with [`crate::History::put`].
//!
//! Rules:
//! - `RolloutUpdated{rev}` to a revision that is neither the stable one nor a
//!   rollback target starts a deployment (from the stable revision). A
//!   deployment still in progress is superseded: it ends as `Aborted` with
//!   reason `superseded by revision …`.
//! - `Completed{rev}` (or [`Input::Healthy`]) finishes the deployment to `rev`
//!   as `Succeeded`.
//! - `Aborted{message}` finishes the deployment in progress as `Aborted`.
//! - [`Input::Undo`], or `RolloutUpdated` back to the stable revision during a
//!   deployment, or back to the previous revision after one succeeded, starts
//!   a rollback; when that revision is stable again (`Completed` or
//!   `Healthy`) the deployment becomes `RolledBack` with its time to rollback.
//! - A failed deployment's time to recovery runs from the abort (or undo) to
//!   the rollout being Healthy again on any revision.

use std::collections::BTreeMap;

use serin_engine::Event;

use crate::record::{DeploymentRecord, Outcome, ProxyCounters};

/// What happened, besides the time and rollout.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// An event the engine emitted.
    Event(&'a Event),
    /// The user asked to undo to this revision (`serin undo`, emergency
    /// rollback).
    Undo {
        /// The revision going back into service.
        to_revision: &'a str,
    },
    /// The rollout is Healthy with this stable revision. Idempotent: send it
    /// whenever the phase is Healthy (it finishes first revisions and undo to
    /// stable, which emit no `Completed`).
    Healthy {
        /// The stable revision.
        stable_revision: &'a str,
    },
}

/// One observation of one rollout.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// Rollout name.
    pub rollout: &'a str,
    /// Strategy name, recorded on deployments started by this observation.
    pub strategy: &'a str,
    /// The proxy's cumulative counters for the rollout's service now.
    pub counters: ProxyCounters,
    /// What happened.
    pub input: Input<'a>,
}

#[derive(Clone, Debug)]
struct Running {
    record: DeploymentRecord,
    /// Counters at the start; `None` after [`Tracker::resume`] until the
    /// first observation (the proxy's counters may have restarted).
    base: Option<ProxyCounters>,
}

impl Running {
    fn counts_at(&self, now: ProxyCounters) -> ProxyCounters {
        let during = self
            .base
            .map_or_else(ProxyCounters::default, |b| now.since(b));
        ProxyCounters {
            requests: self.record.requests.saturating_add(during.requests),
            failed: self.record.failed_requests.saturating_add(during.failed),
        }
    }
}

#[derive(Clone, Debug)]
struct PendingRollback {
    /// The deployment being undone; `Some(base)` in `running` form when it
    /// was still in progress.
    target: Running,
    in_progress: bool,
    to_revision: String,
    started_at: u64,
}

#[derive(Clone, Debug, Default)]
struct RolloutState {
    stable: Option<String>,
    current: Option<Running>,
    last_succeeded: Option<DeploymentRecord>,
    rollback: Option<PendingRollback>,
    /// Failed deployments and when they failed, waiting for Healthy.
    awaiting_recovery: Vec<(DeploymentRecord, u64)>,
}

/// Builds deployment records from observations. See the module docs.
#[derive(Clone, Debug)]
pub struct Tracker {
    next_id: u64,
    rollouts: BTreeMap<String, RolloutState>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// An empty tracker; ids start at 1.
    pub fn new() -> Self {
        Self {
            next_id: 1,
            rollouts: BTreeMap::new(),
        }
    }

    /// Rebuilds the tracker from stored records (oldest first, as
    /// [`crate::History::list`] returns them) after a restart: in-progress
    /// deployments continue, ids continue after the highest one. Requests
    /// served while the control plane was down are not counted.
    pub fn resume(records: &[DeploymentRecord]) -> Self {
        let mut t = Self::new();
        for r in records {
            t.next_id = t.next_id.max(r.id.saturating_add(1));
            let st = t.rollouts.entry(r.rollout.clone()).or_default();
            match r.outcome {
                Outcome::InProgress => {
                    st.current = Some(Running {
                        record: r.clone(),
                        base: None,
                    });
                }
                Outcome::Succeeded => {
                    st.stable = Some(r.to_revision.clone());
                    st.last_succeeded = Some(r.clone());
                    st.awaiting_recovery.clear();
                }
                Outcome::Aborted => {
                    if r.time_to_recovery_ms.is_none() {
                        let at = r.ended_at_ms.unwrap_or(r.started_at_ms);
                        st.awaiting_recovery.push((r.clone(), at));
                    }
                }
                Outcome::RolledBack => {
                    if let Some(from) = &r.from_revision {
                        st.stable = Some(from.clone());
                    }
                    st.last_succeeded = None;
                }
            }
        }
        t
    }

    /// Feeds one observation; returns the records it created or changed (store
    /// each with [`crate::History::put`]).
    pub fn observe(&mut self, obs: Observation<'_>) -> Vec<DeploymentRecord> {
        let st = self.rollouts.entry(obs.rollout.to_string()).or_default();
        if let Some(cur) = &mut st.current
            && cur.base.is_none()
        {
            cur.base = Some(obs.counters);
        }
        match obs.input {
            Input::Event(Event::RolloutUpdated { revision }) => {
                let (out, next_id) = updated(st, &obs, &revision.0, self.next_id);
                self.next_id = next_id;
                out
            }
            Input::Event(Event::Aborted { message }) => aborted(st, &obs, message),
            Input::Event(Event::Completed { revision }) => healthy(st, &obs, &revision.0),
            Input::Event(_) => Vec::new(),
            Input::Undo { to_revision } => {
                undo(st, &obs, to_revision);
                Vec::new()
            }
            Input::Healthy { stable_revision } => healthy(st, &obs, stable_revision),
        }
    }
}

fn updated(
    st: &mut RolloutState,
    obs: &Observation<'_>,
    rev: &str,
    mut next_id: u64,
) -> (Vec<DeploymentRecord>, u64) {
    if st
        .current
        .as_ref()
        .is_some_and(|c| c.record.to_revision == rev)
        || st.rollback.as_ref().is_some_and(|r| r.to_revision == rev)
    {
        return (Vec::new(), next_id);
    }
    if st.stable.as_deref() == Some(rev) {
        // Back to the stable revision: undoes a deployment in progress; after
        // an abort it is the way back (recovery comes with Healthy).
        if st.current.is_some() {
            undo(st, obs, rev);
        }
        return (Vec::new(), next_id);
    }
    if st.current.is_none()
        && st.rollback.is_none()
        && st.last_succeeded.as_ref().is_some_and(|l| {
            l.from_revision.as_deref() == Some(rev) && st.stable.as_ref() == Some(&l.to_revision)
        })
    {
        undo(st, obs, rev);
        return (Vec::new(), next_id);
    }
    let mut out = Vec::new();
    if let Some(cur) = st.current.take() {
        let rec = finish(
            cur,
            Outcome::Aborted,
            obs,
            Some(format!("superseded by revision {rev}")),
        );
        st.awaiting_recovery.push((rec.clone(), obs.at_ms));
        out.push(rec);
    }
    let record = DeploymentRecord {
        id: next_id,
        rollout: obs.rollout.to_string(),
        strategy: obs.strategy.to_string(),
        from_revision: st.stable.clone(),
        to_revision: rev.to_string(),
        started_at_ms: obs.at_ms,
        ended_at_ms: None,
        outcome: Outcome::InProgress,
        abort_reason: None,
        requests: 0,
        failed_requests: 0,
        time_to_rollback_ms: None,
        time_to_recovery_ms: None,
    };
    next_id = next_id.saturating_add(1);
    out.push(record.clone());
    st.current = Some(Running {
        record,
        base: Some(obs.counters),
    });
    (out, next_id)
}

fn finish(
    run: Running,
    outcome: Outcome,
    obs: &Observation<'_>,
    reason: Option<String>,
) -> DeploymentRecord {
    let counts = run.counts_at(obs.counters);
    let mut rec = run.record;
    rec.outcome = outcome;
    rec.ended_at_ms = Some(obs.at_ms);
    rec.abort_reason = reason;
    rec.requests = counts.requests;
    rec.failed_requests = counts.failed;
    rec
}

fn aborted(st: &mut RolloutState, obs: &Observation<'_>, message: &str) -> Vec<DeploymentRecord> {
    let Some(cur) = st.current.take() else {
        return Vec::new();
    };
    let rec = finish(cur, Outcome::Aborted, obs, Some(message.to_string()));
    st.awaiting_recovery.push((rec.clone(), obs.at_ms));
    vec![rec]
}

fn undo(st: &mut RolloutState, obs: &Observation<'_>, to: &str) {
    if st.rollback.is_some() {
        return;
    }
    if let Some(cur) = st.current.take() {
        st.rollback = Some(PendingRollback {
            target: cur,
            in_progress: true,
            to_revision: to.to_string(),
            started_at: obs.at_ms,
        });
    } else if let Some(last) = st.last_succeeded.take() {
        st.rollback = Some(PendingRollback {
            target: Running {
                record: last,
                base: None,
            },
            in_progress: false,
            to_revision: to.to_string(),
            started_at: obs.at_ms,
        });
    }
}

fn healthy(st: &mut RolloutState, obs: &Observation<'_>, rev: &str) -> Vec<DeploymentRecord> {
    let mut out = Vec::new();
    if let Some(rb) = st.rollback.take() {
        if rb.to_revision == rev {
            let elapsed = obs.at_ms.saturating_sub(rb.started_at);
            let mut rec = if rb.in_progress {
                finish(rb.target, Outcome::RolledBack, obs, None)
            } else {
                let mut r = rb.target.record;
                r.outcome = Outcome::RolledBack;
                r
            };
            rec.time_to_rollback_ms = Some(elapsed);
            rec.time_to_recovery_ms = Some(elapsed);
            out.push(rec);
            st.last_succeeded = None;
        } else {
            st.rollback = Some(rb);
        }
    }
    if st
        .current
        .as_ref()
        .is_some_and(|c| c.record.to_revision == rev)
        && let Some(cur) = st.current.take()
    {
        let rec = finish(cur, Outcome::Succeeded, obs, None);
        st.last_succeeded = Some(rec.clone());
        out.push(rec);
    }
    if st.rollback.is_none() && st.current.is_none() {
        for (mut rec, failed_at) in st.awaiting_recovery.drain(..) {
            rec.time_to_recovery_ms = Some(obs.at_ms.saturating_sub(failed_at));
            out.push(rec);
        }
    }
    st.stable = Some(rev.to_string());
    out
}
