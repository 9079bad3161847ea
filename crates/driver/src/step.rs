//! One rollout's step — observe → `engine::reconcile` → persist → act — and
//! the per-rollout error and backoff around it, so one broken rollout never
//! blocks another.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serin_engine as e;
use serin_engine::{Millis, RevisionHash};

use crate::backoff::Backoff;
use crate::seams::{
    AdapterError, Adapters, AnalysisRuns, Platform, StatusStore, TrafficRouter, Workload,
};

/// A rollout as the adapter resolved it: the engine spec (user overrides
/// such as pause and undo already applied) and the workload for its hash.
#[derive(Clone, Debug)]
pub struct Target {
    /// The engine spec.
    pub spec: e::RolloutSpec,
    /// The workload of `spec.template_hash`.
    pub workload: Workload,
}

/// What went wrong in a step, and where.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Observing the platform, the router or the analysis runs failed.
    #[error("observing: {0}")]
    Observe(#[source] AdapterError),
    /// Persisting the status failed (nothing was carried out).
    #[error("saving the status: {0}")]
    Persist(#[source] AdapterError),
    /// Carrying out an action failed; later actions were not tried.
    #[error("{action}: {source}")]
    Act {
        /// The action, described.
        action: String,
        /// Why.
        #[source]
        source: AdapterError,
    },
    /// A revision to scale has no recorded workload.
    #[error("no workload recorded for revision {0}")]
    NoWorkload(RevisionHash),
}

/// What one successful step did.
#[derive(Clone, Debug)]
pub struct Stepped {
    /// The engine's output.
    pub reconciled: e::Reconciled,
    /// The router served something else than the stored route; it was put back.
    pub route_corrected: bool,
    /// The `now` the engine was given.
    pub now: Millis,
}

/// What [`Driver::drive`] reports for one rollout.
#[derive(Debug)]
pub enum Outcome {
    /// The step ran.
    Stepped {
        /// What it did.
        step: Box<Stepped>,
        /// When to run it again at the latest (`None`: on a change only).
        wake_at: Option<Millis>,
    },
    /// The step failed; it is retried at `retry_at`.
    Failed {
        /// Why.
        error: StepError,
        /// When to retry.
        retry_at: Millis,
    },
    /// Still backing off from an earlier failure.
    BackingOff {
        /// When to retry.
        retry_at: Millis,
    },
}

impl Outcome {
    /// When this rollout wants to run again (`None`: on a change only).
    pub fn wake_at(&self) -> Option<Millis> {
        match self {
            Outcome::Stepped { wake_at, .. } => *wake_at,
            Outcome::Failed { retry_at, .. } | Outcome::BackingOff { retry_at } => Some(*retry_at),
        }
    }
}

/// Drives rollouts; keeps each one's backoff.
#[derive(Debug, Default)]
pub struct Driver {
    backoff: Mutex<BTreeMap<String, Backoff>>,
    /// Rollouts whose route this driver has seen in force: a route missing
    /// later is drift; missing before is a router that has not been told yet.
    routed: Mutex<std::collections::BTreeSet<String>>,
}

fn act_err(action: impl Into<String>) -> impl FnOnce(AdapterError) -> StepError {
    let action = action.into();
    move |source| StepError::Act { action, source }
}

impl Driver {
    /// A driver with no rollout in backoff.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backoff of a rollout (default: none).
    pub fn backoff(&self, rollout: &str) -> Backoff {
        self.backoff
            .lock()
            .ok()
            .and_then(|b| b.get(rollout).cloned())
            .unwrap_or_default()
    }

    /// Forgets a rollout's backoff (a user command or a manifest change
    /// deserves an immediate try); the error stays shown until a step
    /// succeeds.
    pub fn reset(&self, rollout: &str) {
        if let Ok(mut b) = self.backoff.lock()
            && let Some(b) = b.get_mut(rollout)
        {
            b.failures = 0;
            b.retry_at = 0;
        }
    }

    /// Forgets every rollout's backoff.
    pub fn reset_all(&self) {
        if let Ok(mut all) = self.backoff.lock() {
            for b in all.values_mut() {
                b.failures = 0;
                b.retry_at = 0;
            }
        }
    }

    /// Runs one step for `target` unless it is backing off; a failure is
    /// shown on the rollout once (not on every retry) and retried with
    /// backoff.
    pub async fn drive<P, R, S, A>(
        &self,
        ad: &Adapters<'_, P, R, S, A>,
        target: &Target,
        clock: &(dyn Fn() -> Millis + Sync),
    ) -> Outcome
    where
        P: Platform,
        R: TrafficRouter,
        S: StatusStore,
        A: AnalysisRuns,
    {
        let name = target.spec.name.as_str();
        let before = self.backoff(name);
        if before.waiting(clock()) {
            return Outcome::BackingOff {
                retry_at: before.retry_at,
            };
        }
        match self.step(ad, target, clock).await {
            Ok(step) => {
                if before.last_error.is_some() {
                    if let Ok(mut all) = self.backoff.lock() {
                        all.remove(name);
                    }
                    tracing::info!(rollout = %name, "recovered");
                    if let Err(err) = ad.store.set_driver_error(name, None, None).await {
                        tracing::warn!(rollout = %name, "clearing the error: {err}");
                    }
                }
                let wake_at = step.reconciled.next_wake;
                Outcome::Stepped {
                    step: Box::new(step),
                    wake_at,
                }
            }
            Err(error) => {
                let now = clock();
                let message = serin_error_chain::error_chain(&error);
                let (retry_at, new_message) = match self.backoff.lock() {
                    Ok(mut all) => {
                        let b = all.entry(name.to_string()).or_default();
                        let retry_at = b.fail(now);
                        let new = b.last_error.as_deref() != Some(message.as_str());
                        b.last_error = Some(message.clone());
                        (retry_at, new)
                    }
                    Err(_) => (now.saturating_add(1_000), true),
                };
                if new_message {
                    tracing::warn!(rollout = %name, "step failed, retrying with backoff: {message}");
                } else {
                    tracing::debug!(rollout = %name, "step failed again: {message}");
                }
                // Shown on the rollout with the time of the next try; the
                // store decides what is an event (only a new message is).
                if let Err(err) = ad
                    .store
                    .set_driver_error(name, Some(&message), Some(retry_at))
                    .await
                {
                    tracing::warn!(rollout = %name, "recording the error: {err}");
                }
                Outcome::Failed { error, retry_at }
            }
        }
    }

    /// One step, without backoff: observe → reconcile → persist → act.
    /// Actions run in the engine's order (routes first, so an abort moves
    /// traffic before any scale-down); the first failure stops the step.
    /// `clock` is read once, after observing: the engine's `now` is never
    /// older than what it was shown.
    pub async fn step<P, R, S, A>(
        &self,
        ad: &Adapters<'_, P, R, S, A>,
        target: &Target,
        clock: &(dyn Fn() -> Millis + Sync),
    ) -> Result<Stepped, StepError>
    where
        P: Platform,
        R: TrafficRouter,
        S: StatusStore,
        A: AnalysisRuns,
    {
        let spec = &target.spec;
        let name = spec.name.as_str();
        let numbers = ad
            .store
            .ensure_revision(name, &spec.template_hash, &target.workload)
            .await
            .map_err(StepError::Persist)?;
        let mut revisions = ad
            .platform
            .observe(name)
            .await
            .map_err(StepError::Observe)?;
        for r in &mut revisions {
            if r.number == 0 {
                r.number = numbers.get(&r.hash).copied().unwrap_or(0);
            }
        }
        let desired = ad
            .store
            .desired_route(name)
            .await
            .map_err(StepError::Observe)?;
        let mut route_corrected = false;
        let route = match ad
            .router
            .route_in_force(name, &desired)
            .await
            .map_err(StepError::Observe)?
        {
            Some(r) => {
                if let Ok(mut routed) = self.routed.lock() {
                    routed.insert(name.to_string());
                }
                r
            }
            None => {
                let seen = self.routed.lock().map(|r| r.contains(name)).unwrap_or(true);
                if seen {
                    tracing::warn!(rollout = %name, "the traffic router serves another route than the one set; putting it back");
                } else {
                    tracing::info!(rollout = %name, "the traffic router does not serve this rollout's route yet; setting it");
                }
                ad.router
                    .set_route(name, &desired)
                    .await
                    .map_err(act_err("restoring the route"))?;
                route_corrected = true;
                desired
            }
        };
        let analysis = ad.analysis.phases(name).await.map_err(StepError::Observe)?;
        let experiments = ad
            .platform
            .observe_experiments(name)
            .await
            .map_err(StepError::Observe)?;
        let observed = e::Observed {
            revisions,
            analysis,
            route,
            experiments,
        };
        let status = ad.store.status(name).await.map_err(StepError::Observe)?;
        let now = clock();
        let out = e::reconcile(spec, &status, &observed, now);
        let new_route = out.actions.iter().find_map(|a| match a {
            e::Action::SetRoute(r) => Some(r),
            _ => None,
        });
        if out.status != status || new_route.is_some() {
            ad.store
                .save(name, &out.status, new_route)
                .await
                .map_err(StepError::Persist)?;
        }
        for action in &out.actions {
            self.act(ad, target, action, now).await?;
        }
        Ok(Stepped {
            reconciled: out,
            route_corrected,
            now,
        })
    }

    /// The workload of a revision: the target's own, else the recorded one.
    async fn workload_of<P, R, S, A>(
        &self,
        ad: &Adapters<'_, P, R, S, A>,
        target: &Target,
        revision: &RevisionHash,
    ) -> Result<Workload, StepError>
    where
        S: StatusStore,
    {
        if *revision == target.spec.template_hash {
            return Ok(target.workload.clone());
        }
        ad.store
            .workload(&target.spec.name, revision)
            .await
            .map_err(StepError::Observe)?
            .ok_or_else(|| StepError::NoWorkload(revision.clone()))
    }

    async fn act<P, R, S, A>(
        &self,
        ad: &Adapters<'_, P, R, S, A>,
        target: &Target,
        action: &e::Action,
        now: Millis,
    ) -> Result<(), StepError>
    where
        P: Platform,
        R: TrafficRouter,
        S: StatusStore,
        A: AnalysisRuns,
    {
        let name = target.spec.name.as_str();
        match action {
            e::Action::SetRoute(route) => ad
                .router
                .set_route(name, route)
                .await
                .map_err(act_err("setting the route")),
            e::Action::ScaleExperiment {
                workload,
                revision,
                replicas,
            } => {
                let template = self.workload_of(ad, target, revision).await?;
                ad.platform
                    .scale_experiment(name, workload, &template, *replicas)
                    .await
                    .map_err(act_err(format!(
                        "scaling experiment workload {workload} (of revision {revision}) to {replicas}"
                    )))
            }
            e::Action::Scale { revision, replicas } => {
                let workload = self.workload_of(ad, target, revision).await?;
                ad.platform
                    .scale(name, revision, &workload, *replicas)
                    .await
                    .map_err(act_err(format!(
                        "scaling revision {revision} to {replicas}"
                    )))
            }
            e::Action::RestartPods {
                revision,
                created_before,
                max_in_flight,
            } => ad
                .platform
                .restart_pods(name, revision, *created_before, *max_in_flight)
                .await
                .map_err(act_err(format!("restarting pods of revision {revision}"))),
            e::Action::StartAnalysis {
                name: run,
                kind,
                templates,
                args,
            } => ad
                .analysis
                .start(name, run, *kind, templates, args)
                .await
                .map_err(act_err(format!("starting analysis run {run}"))),
            e::Action::StopAnalysis { name: run } => ad
                .analysis
                .stop(name, run)
                .await
                .map_err(act_err(format!("stopping analysis run {run}"))),
            e::Action::Emit(ev) => ad
                .store
                .record_event(name, now, ev)
                .await
                .map_err(act_err("recording an event")),
        }
    }
}
