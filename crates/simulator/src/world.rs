//! The simulated platform behind the driver's seams: fake pods, a fake
//! traffic router, an in-memory status store and scripted analysis runs for
//! any number of rollouts, on a clock the test moves. Every future it
//! returns is ready at once, so [`run_ready`] drives the real
//! `serin_driver::Driver` without a runtime and without sleeping.
//!
//! Faults to inject: a rollout whose scale fails (an image with no
//! `images:` entry), a router that serves another route (drift).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use serin_driver::{
    AdapterError, AnalysisRuns, Overrides, Platform, PodView, StatusStore, TrafficRouter, Workload,
    count_replicas, replica_slots,
};
use serin_engine::{
    AnalysisKind, AnalysisPhase, ArgValueResolved, Event, Millis, ObservedRevision, RevisionHash,
    RolloutStatus, Route,
};

/// Polls a future that must be ready at once (the simulated adapters never
/// wait). Panics if it is not: that is a bug in the simulation.
pub fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a simulated adapter future was not ready"),
    }
}

/// What the driver asked of the world, in order (for ordering assertions).
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `TrafficRouter::set_route`.
    SetRoute {
        /// Rollout.
        rollout: String,
        /// The route.
        route: Route,
    },
    /// `Platform::scale` (also logged when it fails).
    Scale {
        /// Rollout.
        rollout: String,
        /// Revision.
        revision: RevisionHash,
        /// Replicas.
        replicas: u32,
    },
    /// `Platform::scale_experiment`.
    ScaleExperiment {
        /// Rollout.
        rollout: String,
        /// The experiment workload.
        workload: RevisionHash,
        /// The revision whose template it runs.
        template_of: RevisionHash,
        /// Pods.
        replicas: u32,
    },
    /// `AnalysisRuns::start`.
    StartAnalysis {
        /// Rollout.
        rollout: String,
        /// Run name.
        name: String,
    },
    /// `AnalysisRuns::stop`.
    StopAnalysis {
        /// Rollout.
        rollout: String,
        /// Run name.
        name: String,
    },
    /// `StatusStore::set_driver_error` with a message.
    DriverError {
        /// Rollout.
        rollout: String,
        /// Message.
        message: String,
    },
}

#[derive(Clone, Debug)]
struct SimPod {
    name: String,
    created: Millis,
    ready_at: Option<Millis>,
    replaces: Option<String>,
}

/// The simulated pods as the driver's replica counting sees them.
fn pod_views(pods: &[SimPod], now: Millis) -> Vec<PodView<&str>> {
    pods.iter()
        .map(|p| {
            let ready = p.ready_at.is_some_and(|t| t <= now);
            PodView {
                id: p.name.as_str(),
                replaces: p.replaces.as_deref(),
                ready,
                available: ready,
                terminating: false,
                created: p.created,
            }
        })
        .collect()
}

#[derive(Clone, Debug, Default)]
struct SimRevision {
    desired: u32,
    pods: Vec<SimPod>,
}

#[derive(Clone, Debug)]
struct SimRun {
    revision: RevisionHash,
    ends: Millis,
    stopped: bool,
}

#[derive(Debug, Default)]
struct RolloutWorld {
    revisions: BTreeMap<RevisionHash, SimRevision>,
    /// Experiment pods by workload.
    experiments: BTreeMap<RevisionHash, SimRevision>,
    /// What the router serves.
    route_in_force: Route,
    /// What the driver last set.
    route_set: Route,
    status: RolloutStatus,
    desired_route: Route,
    numbers: BTreeMap<RevisionHash, u64>,
    workloads: BTreeMap<RevisionHash, Workload>,
    runs: BTreeMap<String, SimRun>,
    events: Vec<(Millis, Event)>,
    driver_error: Option<(String, Option<Millis>)>,
    overrides: Overrides,
}

#[derive(Debug, Default)]
struct Inner {
    now: Millis,
    next_pod: u64,
    rollouts: BTreeMap<String, RolloutWorld>,
    calls: Vec<Call>,
    failing_scale: BTreeSet<String>,
    analysis_outcome: BTreeMap<RevisionHash, AnalysisPhase>,
}

/// A simulated world for the driver.
#[derive(Debug)]
pub struct SimWorld {
    inner: Mutex<Inner>,
    /// Time from pod creation to readiness.
    pub ready_delay: Millis,
    /// How long an analysis run takes.
    pub analysis_duration: Millis,
}

impl Default for SimWorld {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ready_delay: 5_000,
            analysis_duration: 60_000,
        }
    }
}

impl SimWorld {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clock.
    pub fn now(&self) -> Millis {
        self.lock().now
    }

    /// Moves the clock (never backwards).
    pub fn set_now(&self, now: Millis) {
        let mut w = self.lock();
        w.now = w.now.max(now);
    }

    /// The earliest time after now at which the world changes by itself (a
    /// pod becomes ready, an analysis run ends): what a real platform
    /// reports as a change notification.
    pub fn next_change(&self) -> Option<Millis> {
        let w = self.lock();
        let now = w.now;
        let pods = w.rollouts.values().flat_map(|r| {
            r.revisions
                .values()
                .chain(r.experiments.values())
                .flat_map(|rv| rv.pods.iter().filter_map(|p| p.ready_at))
        });
        let runs = w
            .rollouts
            .values()
            .flat_map(|r| r.runs.values().filter(|x| !x.stopped).map(|x| x.ends));
        pods.chain(runs).filter(|t| *t > now).min()
    }

    /// Experiment pods running for `rollout`, by workload.
    pub fn experiment_pods(&self, rollout: &str) -> BTreeMap<RevisionHash, u32> {
        self.lock()
            .rollouts
            .get(rollout)
            .map(|r| {
                r.experiments
                    .iter()
                    .map(|(h, rv)| (h.clone(), rv.pods.len() as u32))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every call the driver made, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Makes every `scale` of `rollout` fail (as an unmapped image does).
    pub fn fail_scale(&self, rollout: &str, fail: bool) {
        let mut w = self.lock();
        if fail {
            w.failing_scale.insert(rollout.to_string());
        } else {
            w.failing_scale.remove(rollout);
        }
    }

    /// Scripts the outcome of analysis runs for a revision (default Successful).
    pub fn analysis_outcome(&self, revision: &RevisionHash, phase: AnalysisPhase) {
        self.lock().analysis_outcome.insert(revision.clone(), phase);
    }

    /// Someone changes the router behind the driver's back.
    pub fn drift(&self, rollout: &str, route: Route) {
        self.lock()
            .rollouts
            .entry(rollout.to_string())
            .or_default()
            .route_in_force = route;
    }

    /// The route the router serves for `rollout`.
    pub fn route_in_force(&self, rollout: &str) -> Route {
        self.lock()
            .rollouts
            .get(rollout)
            .map(|r| r.route_in_force.clone())
            .unwrap_or_default()
    }

    /// The persisted status of `rollout`.
    pub fn status(&self, rollout: &str) -> RolloutStatus {
        self.lock()
            .rollouts
            .get(rollout)
            .map(|r| r.status.clone())
            .unwrap_or_default()
    }

    /// Replaces the persisted status (a user command applied by the API).
    pub fn put_status(&self, rollout: &str, status: RolloutStatus) {
        self.lock()
            .rollouts
            .entry(rollout.to_string())
            .or_default()
            .status = status;
    }

    /// Replicas asked for a revision.
    pub fn replicas(&self, rollout: &str, revision: &RevisionHash) -> u32 {
        self.lock()
            .rollouts
            .get(rollout)
            .and_then(|r| r.revisions.get(revision))
            .map_or(0, |rv| rv.desired)
    }

    /// Events recorded for `rollout`.
    pub fn events(&self, rollout: &str) -> Vec<(Millis, Event)> {
        self.lock()
            .rollouts
            .get(rollout)
            .map(|r| r.events.clone())
            .unwrap_or_default()
    }

    /// The driver error shown on `rollout`, with its retry time.
    pub fn driver_error(&self, rollout: &str) -> Option<(String, Option<Millis>)> {
        self.lock()
            .rollouts
            .get(rollout)
            .and_then(|r| r.driver_error.clone())
    }

    fn run_phase(w: &Inner, run: &SimRun) -> AnalysisPhase {
        if run.stopped {
            AnalysisPhase::Successful // terminated, as Argo marks it
        } else if w.now >= run.ends {
            w.analysis_outcome
                .get(&run.revision)
                .copied()
                .unwrap_or(AnalysisPhase::Successful)
        } else {
            AnalysisPhase::Running
        }
    }
}

impl Platform for SimWorld {
    async fn observe(&self, rollout: &str) -> Result<Vec<ObservedRevision>, AdapterError> {
        let w = self.lock();
        let now = w.now;
        let Some(r) = w.rollouts.get(rollout) else {
            return Ok(Vec::new());
        };
        Ok(r.revisions
            .iter()
            .map(|(hash, rv)| {
                let pods = pod_views(&rv.pods, now);
                let c = count_replicas(&pods);
                ObservedRevision {
                    hash: hash.clone(),
                    number: 0,
                    replicas: rv.desired,
                    ready: c.ready,
                    available: c.available,
                    oldest_pod_created: c.oldest_pod_created,
                }
            })
            .collect())
    }

    async fn scale(
        &self,
        rollout: &str,
        revision: &RevisionHash,
        _workload: &Workload,
        replicas: u32,
    ) -> Result<(), AdapterError> {
        let mut w = self.lock();
        w.calls.push(Call::Scale {
            rollout: rollout.to_string(),
            revision: revision.clone(),
            replicas,
        });
        if w.failing_scale.contains(rollout) {
            return Err(AdapterError::msg(format!(
                "container \"app\": image \"{rollout}:missing\" has no entry in `images:`"
            )));
        }
        let now = w.now;
        let ready_delay = self.ready_delay;
        let mut next = w.next_pod;
        let rv = w
            .rollouts
            .entry(rollout.to_string())
            .or_default()
            .revisions
            .entry(revision.clone())
            .or_default();
        rv.desired = replicas;
        let slots = |pods: &[SimPod]| replica_slots(&pod_views(pods, now));
        while slots(&rv.pods).len() < replicas as usize {
            next += 1;
            rv.pods.push(SimPod {
                name: format!("{rollout}-{revision}-{next}"),
                created: now,
                ready_at: Some(now + ready_delay),
                replaces: None,
            });
        }
        // Newest slot first, with its replacement.
        while let Some(last) = slots(&rv.pods).last().copied()
            && slots(&rv.pods).len() > replicas as usize
        {
            let gone = rv.pods[last.pod].name.clone();
            rv.pods
                .retain(|q| q.name != gone && q.replaces.as_ref() != Some(&gone));
        }
        w.next_pod = next;
        Ok(())
    }

    async fn observe_experiments(
        &self,
        rollout: &str,
    ) -> Result<Vec<ObservedRevision>, AdapterError> {
        let w = self.lock();
        let now = w.now;
        Ok(w.rollouts
            .get(rollout)
            .map(|r| {
                r.experiments
                    .iter()
                    .map(|(hash, rv)| {
                        let c = count_replicas(&pod_views(&rv.pods, now));
                        ObservedRevision {
                            hash: hash.clone(),
                            number: 0,
                            replicas: rv.desired,
                            ready: c.ready,
                            available: c.available,
                            oldest_pod_created: c.oldest_pod_created,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn scale_experiment(
        &self,
        rollout: &str,
        workload: &RevisionHash,
        template: &Workload,
        replicas: u32,
    ) -> Result<(), AdapterError> {
        let mut w = self.lock();
        // The revision whose template runs: the one recorded with this
        // workload (the simulator keeps workloads by revision).
        let template_of = w
            .rollouts
            .get(rollout)
            .and_then(|r| {
                r.workloads
                    .iter()
                    .find(|(_, wl)| *wl == template)
                    .map(|(h, _)| h.clone())
            })
            .unwrap_or_else(|| RevisionHash::new("?"));
        w.calls.push(Call::ScaleExperiment {
            rollout: rollout.to_string(),
            workload: workload.clone(),
            template_of,
            replicas,
        });
        let now = w.now;
        let ready_delay = self.ready_delay;
        let mut next = w.next_pod;
        let r = w.rollouts.entry(rollout.to_string()).or_default();
        if replicas == 0 {
            r.experiments.remove(workload);
        } else {
            let rv = r.experiments.entry(workload.clone()).or_default();
            rv.desired = replicas;
            while rv.pods.len() < replicas as usize {
                next += 1;
                rv.pods.push(SimPod {
                    name: format!("{rollout}-{workload}-{next}"),
                    created: now,
                    ready_at: Some(now + ready_delay),
                    replaces: None,
                });
            }
            rv.pods.truncate(replicas as usize);
        }
        w.next_pod = next;
        Ok(())
    }

    async fn restart_pods(
        &self,
        rollout: &str,
        revision: &RevisionHash,
        created_before: Millis,
        max_in_flight: u32,
    ) -> Result<(), AdapterError> {
        let mut w = self.lock();
        let now = w.now;
        let ready_delay = self.ready_delay;
        let mut next = w.next_pod;
        let Some(rv) = w
            .rollouts
            .get_mut(rollout)
            .and_then(|r| r.revisions.get_mut(revision))
        else {
            return Ok(());
        };
        let ready = |p: &SimPod| p.ready_at.is_some_and(|t| t <= now);
        let retire: Vec<String> = rv
            .pods
            .iter()
            .filter(|p| ready(p))
            .filter_map(|p| p.replaces.clone())
            .collect();
        rv.pods.retain(|p| !retire.contains(&p.name));
        for p in &mut rv.pods {
            if p.replaces.as_ref().is_some_and(|o| retire.contains(o)) {
                p.replaces = None;
            }
        }
        let in_flight = rv.pods.iter().filter(|p| p.replaces.is_some()).count() as u32;
        let todo: Vec<String> = rv
            .pods
            .iter()
            .filter(|p| p.created < created_before && p.replaces.is_none())
            .filter(|p| !rv.pods.iter().any(|q| q.replaces.as_ref() == Some(&p.name)))
            .map(|p| p.name.clone())
            .take(max_in_flight.saturating_sub(in_flight) as usize)
            .collect();
        for old in todo {
            next += 1;
            rv.pods.push(SimPod {
                name: format!("{rollout}-{revision}-{next}"),
                created: now,
                ready_at: Some(now + ready_delay),
                replaces: Some(old),
            });
        }
        w.next_pod = next;
        Ok(())
    }
}

impl TrafficRouter for SimWorld {
    async fn set_route(&self, rollout: &str, route: &Route) -> Result<(), AdapterError> {
        let mut w = self.lock();
        w.calls.push(Call::SetRoute {
            rollout: rollout.to_string(),
            route: route.clone(),
        });
        let r = w.rollouts.entry(rollout.to_string()).or_default();
        r.route_in_force = route.clone();
        r.route_set = route.clone();
        Ok(())
    }

    async fn route_in_force(
        &self,
        rollout: &str,
        _desired: &Route,
    ) -> Result<Option<Route>, AdapterError> {
        let w = self.lock();
        Ok(w.rollouts.get(rollout).map_or(Some(Route::default()), |r| {
            (r.route_in_force == r.route_set).then(|| r.route_in_force.clone())
        }))
    }
}

impl StatusStore for SimWorld {
    async fn status(&self, rollout: &str) -> Result<RolloutStatus, AdapterError> {
        Ok(SimWorld::status(self, rollout))
    }

    async fn desired_route(&self, rollout: &str) -> Result<Route, AdapterError> {
        Ok(self
            .lock()
            .rollouts
            .get(rollout)
            .map(|r| r.desired_route.clone())
            .unwrap_or_default())
    }

    async fn save(
        &self,
        rollout: &str,
        status: &RolloutStatus,
        route: Option<&Route>,
    ) -> Result<(), AdapterError> {
        let mut w = self.lock();
        let r = w.rollouts.entry(rollout.to_string()).or_default();
        r.status = status.clone();
        if let Some(route) = route {
            r.desired_route = route.clone();
        }
        Ok(())
    }

    async fn ensure_revision(
        &self,
        rollout: &str,
        revision: &RevisionHash,
        workload: &Workload,
    ) -> Result<BTreeMap<RevisionHash, u64>, AdapterError> {
        let mut w = self.lock();
        let r = w.rollouts.entry(rollout.to_string()).or_default();
        if !r.numbers.contains_key(revision) {
            let n = r.numbers.values().max().copied().unwrap_or(0) + 1;
            r.numbers.insert(revision.clone(), n);
            r.workloads.insert(revision.clone(), workload.clone());
        }
        Ok(r.numbers.clone())
    }

    async fn revision_numbers(
        &self,
        rollout: &str,
    ) -> Result<BTreeMap<RevisionHash, u64>, AdapterError> {
        Ok(self
            .lock()
            .rollouts
            .get(rollout)
            .map(|r| r.numbers.clone())
            .unwrap_or_default())
    }

    async fn workload(
        &self,
        rollout: &str,
        revision: &RevisionHash,
    ) -> Result<Option<Workload>, AdapterError> {
        Ok(self
            .lock()
            .rollouts
            .get(rollout)
            .and_then(|r| r.workloads.get(revision).cloned()))
    }

    async fn overrides(&self, rollout: &str) -> Result<Overrides, AdapterError> {
        Ok(self
            .lock()
            .rollouts
            .get(rollout)
            .map(|r| r.overrides.clone())
            .unwrap_or_default())
    }

    async fn set_overrides(
        &self,
        rollout: &str,
        overrides: &Overrides,
    ) -> Result<(), AdapterError> {
        self.lock()
            .rollouts
            .entry(rollout.to_string())
            .or_default()
            .overrides = overrides.clone();
        Ok(())
    }

    async fn record_event(
        &self,
        rollout: &str,
        at: Millis,
        event: &Event,
    ) -> Result<(), AdapterError> {
        self.lock()
            .rollouts
            .entry(rollout.to_string())
            .or_default()
            .events
            .push((at, event.clone()));
        Ok(())
    }

    async fn set_driver_error(
        &self,
        rollout: &str,
        error: Option<&str>,
        retry_at: Option<Millis>,
    ) -> Result<(), AdapterError> {
        let mut w = self.lock();
        let r = w.rollouts.entry(rollout.to_string()).or_default();
        let new = error.is_some_and(|m| r.driver_error.as_ref().is_none_or(|(old, _)| old != m));
        r.driver_error = error.map(|m| (m.to_string(), retry_at));
        if new && let Some(message) = error {
            w.calls.push(Call::DriverError {
                rollout: rollout.to_string(),
                message: message.to_string(),
            });
        }
        Ok(())
    }
}

impl AnalysisRuns for SimWorld {
    async fn phases(&self, rollout: &str) -> Result<BTreeMap<String, AnalysisPhase>, AdapterError> {
        let w = self.lock();
        Ok(w.rollouts
            .get(rollout)
            .map(|r| {
                r.runs
                    .iter()
                    .map(|(n, run)| (n.clone(), Self::run_phase(&w, run)))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn start(
        &self,
        rollout: &str,
        name: &str,
        _kind: AnalysisKind,
        _templates: &[String],
        _args: &[(String, ArgValueResolved)],
    ) -> Result<(), AdapterError> {
        let mut w = self.lock();
        w.calls.push(Call::StartAnalysis {
            rollout: rollout.to_string(),
            name: name.to_string(),
        });
        let ends = w.now + self.analysis_duration;
        let r = w.rollouts.entry(rollout.to_string()).or_default();
        let revision = r
            .status
            .current_hash
            .clone()
            .unwrap_or_else(|| RevisionHash::new(""));
        r.runs.entry(name.to_string()).or_insert(SimRun {
            revision,
            ends,
            stopped: false,
        });
        Ok(())
    }

    async fn stop(&self, rollout: &str, name: &str) -> Result<(), AdapterError> {
        let mut w = self.lock();
        w.calls.push(Call::StopAnalysis {
            rollout: rollout.to_string(),
            name: name.to_string(),
        });
        if let Some(run) = w
            .rollouts
            .get_mut(rollout)
            .and_then(|r| r.runs.get_mut(name))
        {
            run.stopped = true;
        }
        Ok(())
    }
}
