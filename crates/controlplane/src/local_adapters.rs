//! The one-machine adapters behind the driver's seams: local processes
//! ([`serin_platform_local`]) as the platform, Serin's proxy as the traffic
//! router, redb as the status store, the in-process analysis runner.
//!
//! One value per reconcile pass, borrowing the control plane and the
//! manifests of that pass (routing and analysis templates come from them).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serin_driver::{
    AdapterError, AnalysisRuns, Overrides, Platform, PodView, StatusStore, TrafficRouter, Workload,
    count_replicas,
};
use serin_engine as e;
use serin_spec::{ManifestSet, PodTemplateSpec};

use crate::reconciler::{ControlPlane, RunSpec};
use crate::routing::{self, ProxyConfig, RolloutEndpoints, RolloutRouting};

fn adapter_err(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> AdapterError {
    AdapterError(e.into())
}

/// The local world for one pass.
pub(crate) struct Local<'a> {
    pub cp: &'a ControlPlane,
    pub set: &'a ManifestSet,
    /// The configuration the proxy serves, read once per pass and after
    /// every push (drift detection compares against it).
    pub served: Mutex<Option<ProxyConfig>>,
}

impl<'a> Local<'a> {
    /// Adapters for one pass; `served` is what the proxy answered to
    /// `GET /v1/config` at the start of it.
    pub fn new(cp: &'a ControlPlane, set: &'a ManifestSet, served: Option<ProxyConfig>) -> Self {
        Self {
            cp,
            set,
            served: Mutex::new(served),
        }
    }

    fn rollout(&self, name: &str) -> Result<&'a serin_spec::Rollout, AdapterError> {
        self.set
            .rollouts()
            .map(|(_, r)| r)
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| AdapterError::msg(format!("no rollout named {name}")))
    }

    fn min_ready_seconds(&self, rollout: &str) -> u32 {
        self.rollout(rollout)
            .map_or(0, |r| u32::try_from(r.spec.min_ready_seconds).unwrap_or(0))
    }

    /// The names of the proxy listeners that carry `rollout`'s traffic.
    fn listener_names(&self, rollout: &str, route: &e::Route) -> Result<Vec<String>, AdapterError> {
        let r = self.rollout(rollout)?;
        let endpoints = self.cp.endpoints(rollout);
        let rr = [RolloutRouting {
            rollout: r,
            route,
            endpoints: &endpoints,
        }];
        Ok(routing::proxy_config(self.set, &rr, self.cp.ports())
            .services
            .into_iter()
            .map(|s| s.name)
            .collect())
    }

    /// Pushes the whole routing table (every rollout's stored route, every
    /// ready endpoint) and remembers what the proxy then serves.
    /// Also puts the table back when the proxy serves other endpoints than
    /// the ones set (someone sent a Service's traffic elsewhere).
    pub async fn push(&self, force: bool) -> anyhow::Result<()> {
        let served = self.served.lock().ok().and_then(|s| s.clone());
        if let Some(served) = self
            .cp
            .push_routing(self.set, force, served.as_ref())
            .await?
            && let Ok(mut s) = self.served.lock()
        {
            *s = Some(served);
        }
        Ok(())
    }
}

/// The parts of a listener that carry routing decisions: weights, header
/// routes, and which of the revisions `route` names the listener sends to.
/// Not endpoints, which follow readiness, nor revisions that come and go on
/// the platform (a plain Service spreads over all of them), nor the port
/// the proxy picked.
fn routing_view(
    c: &ProxyConfig,
    route: &e::Route,
) -> BTreeMap<String, (String, Vec<String>, String)> {
    let named: Vec<&str> = route
        .services
        .values()
        .map(|h| h.0.as_str())
        .chain(route.weights.iter().map(|w| w.revision.0.as_str()))
        .collect();
    c.services
        .iter()
        .map(|s| {
            let mut hashes: Vec<String> = s
                .revisions
                .iter()
                .filter(|r| named.contains(&r.hash.as_str()))
                .map(|r| r.hash.clone())
                .collect();
            hashes.sort();
            let decisions =
                serde_json::to_string(&(&s.weights, &s.header_routes)).unwrap_or_default();
            (s.name.clone(), (s.app.clone(), hashes, decisions))
        })
        .collect()
}

/// Every listener's endpoints per revision, sorted (what a hijack changes).
pub(crate) fn endpoint_view(
    c: &ProxyConfig,
) -> BTreeMap<String, Vec<(String, Vec<std::net::SocketAddr>)>> {
    c.services
        .iter()
        .map(|s| {
            let mut revs: Vec<(String, Vec<std::net::SocketAddr>)> = s
                .revisions
                .iter()
                .map(|r| {
                    let mut e = r.endpoints.clone();
                    e.sort();
                    (r.hash.clone(), e)
                })
                .collect();
            revs.sort();
            (s.name.clone(), revs)
        })
        .collect()
}

/// Revisions of `rollout` on the local platform, counted per replica
/// (numbers left 0 for the caller to fill).
pub(crate) fn observe(
    platform: &serin_platform_local::LocalPlatform,
    rollout: &str,
) -> Vec<e::ObservedRevision> {
    platform
        .observe(rollout)
        .into_iter()
        .map(|rs| {
            let pods: Vec<PodView<&str>> = rs
                .pods
                .iter()
                .map(|p| PodView {
                    id: p.name.as_str(),
                    replaces: p.replaces.as_deref(),
                    ready: p.ready,
                    available: p.available,
                    terminating: p.terminating,
                    created: serin_clock::unix_ms(p.started_at),
                })
                .collect();
            let c = count_replicas(&pods);
            e::ObservedRevision {
                hash: e::RevisionHash::new(rs.hash.clone()),
                number: 0,
                replicas: rs.desired,
                ready: c.ready,
                available: c.available,
                oldest_pod_created: c.oldest_pod_created,
            }
        })
        .collect()
}

/// Where the local platform keeps a rollout's experiment pods: a group of
/// their own, so the rollout's revisions (and so its Services and weights)
/// never include them.
pub(crate) fn experiment_group(rollout: &str) -> String {
    format!("{rollout}.experiment")
}

impl Platform for Local<'_> {
    async fn observe(&self, rollout: &str) -> Result<Vec<e::ObservedRevision>, AdapterError> {
        Ok(observe(self.cp.platform(), rollout))
    }

    async fn observe_experiments(
        &self,
        rollout: &str,
    ) -> Result<Vec<e::ObservedRevision>, AdapterError> {
        Ok(observe(self.cp.platform(), &experiment_group(rollout)))
    }

    async fn scale_experiment(
        &self,
        rollout: &str,
        workload: &e::RevisionHash,
        template: &Workload,
        replicas: u32,
    ) -> Result<(), AdapterError> {
        self.scale(&experiment_group(rollout), workload, template, replicas)
            .await
    }

    async fn scale(
        &self,
        rollout: &str,
        revision: &e::RevisionHash,
        workload: &Workload,
        replicas: u32,
    ) -> Result<(), AdapterError> {
        let template: PodTemplateSpec =
            serde_json::from_value(workload.template.clone()).map_err(adapter_err)?;
        let platform = self.cp.platform();
        platform.set_min_ready_seconds(rollout, workload.min_ready_seconds);
        platform
            .scale(rollout, &revision.0, &template, replicas)
            .await
            .map_err(adapter_err)
    }

    async fn restart_pods(
        &self,
        rollout: &str,
        revision: &e::RevisionHash,
        created_before: e::Millis,
        max_in_flight: u32,
    ) -> Result<(), AdapterError> {
        let before = serin_clock::system_time(created_before);
        self.cp
            .platform()
            .restart_pods(rollout, &revision.0, before, max_in_flight)
            .await
            .map_err(adapter_err)
    }
}

impl TrafficRouter for Local<'_> {
    async fn set_route(&self, rollout: &str, route: &e::Route) -> Result<(), AdapterError> {
        let store = self.cp.store();
        if store.route(rollout).map_err(adapter_err)? != *route {
            store.put_route(rollout, route).map_err(adapter_err)?;
        }
        self.push(true).await.map_err(adapter_err)
    }

    async fn route_in_force(
        &self,
        rollout: &str,
        desired: &e::Route,
    ) -> Result<Option<e::Route>, AdapterError> {
        let names = self.listener_names(rollout, desired)?;
        // What a push of every stored route would serve (a Service selecting
        // several rollouts' pods belongs to the first, as in the push).
        let want = routing_view(
            &self.cp.desired_config(self.set).map_err(adapter_err)?,
            desired,
        );
        let served = self
            .served
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|c| routing_view(c, desired)))
            .unwrap_or_default();
        // The proxy's table is per listener, not per rollout: the route in
        // force is `desired` exactly when every listener of this rollout
        // carries its decisions; anything else is not a route Serin set.
        let holds = names
            .iter()
            .all(|name| want.contains_key(name) && served.get(name) == want.get(name));
        Ok(holds.then(|| desired.clone()))
    }
}

impl StatusStore for Local<'_> {
    async fn status(&self, rollout: &str) -> Result<e::RolloutStatus, AdapterError> {
        self.cp.store().status(rollout).map_err(adapter_err)
    }

    async fn desired_route(&self, rollout: &str) -> Result<e::Route, AdapterError> {
        self.cp.store().route(rollout).map_err(adapter_err)
    }

    async fn save(
        &self,
        rollout: &str,
        status: &e::RolloutStatus,
        route: Option<&e::Route>,
    ) -> Result<(), AdapterError> {
        self.cp
            .store()
            .put_status_and_route(rollout, status, route)
            .map_err(adapter_err)
    }

    async fn ensure_revision(
        &self,
        rollout: &str,
        revision: &e::RevisionHash,
        workload: &Workload,
    ) -> Result<BTreeMap<e::RevisionHash, u64>, AdapterError> {
        let store = self.cp.store();
        store
            .ensure_revision(rollout, &revision.0, &workload.template)
            .map_err(adapter_err)?;
        Ok(store
            .revisions(rollout)
            .map_err(adapter_err)?
            .into_iter()
            .map(|r| (e::RevisionHash::new(r.hash), r.number))
            .collect())
    }

    async fn revision_numbers(
        &self,
        rollout: &str,
    ) -> Result<BTreeMap<e::RevisionHash, u64>, AdapterError> {
        Ok(self
            .cp
            .store()
            .revisions(rollout)
            .map_err(adapter_err)?
            .into_iter()
            .map(|r| (e::RevisionHash::new(r.hash), r.number))
            .collect())
    }

    async fn workload(
        &self,
        rollout: &str,
        revision: &e::RevisionHash,
    ) -> Result<Option<Workload>, AdapterError> {
        Ok(self
            .cp
            .store()
            .revisions(rollout)
            .map_err(adapter_err)?
            .into_iter()
            .find(|r| r.hash == revision.0)
            .map(|r| Workload {
                template: r.template,
                min_ready_seconds: self.min_ready_seconds(rollout),
            }))
    }

    async fn record_event(
        &self,
        rollout: &str,
        at: e::Millis,
        event: &e::Event,
    ) -> Result<(), AdapterError> {
        tracing::info!(rollout = %rollout, event = ?event, "event");
        self.cp
            .store()
            .push_event(rollout, at, event)
            .map_err(adapter_err)?;
        self.cp
            .publish(serde_json::json!({"rollout": rollout, "at": at, "event": event}));
        Ok(())
    }

    async fn overrides(&self, rollout: &str) -> Result<Overrides, AdapterError> {
        self.cp.store().overrides(rollout).map_err(adapter_err)
    }

    async fn set_overrides(
        &self,
        rollout: &str,
        overrides: &Overrides,
    ) -> Result<(), AdapterError> {
        self.cp
            .store()
            .put_overrides(rollout, overrides)
            .map_err(adapter_err)
    }

    async fn set_driver_error(
        &self,
        rollout: &str,
        error: Option<&str>,
        retry_at: Option<e::Millis>,
    ) -> Result<(), AdapterError> {
        self.cp
            .set_driver_error(rollout, error, retry_at)
            .map_err(adapter_err)
    }
}

impl AnalysisRuns for Local<'_> {
    async fn phases(
        &self,
        rollout: &str,
    ) -> Result<BTreeMap<String, e::AnalysisPhase>, AdapterError> {
        let r = self.rollout(rollout)?;
        self.cp.sync_runs(self.set, r).map_err(adapter_err)
    }

    async fn start(
        &self,
        rollout: &str,
        name: &str,
        _kind: e::AnalysisKind,
        templates: &[String],
        args: &[(String, e::ArgValueResolved)],
    ) -> Result<(), AdapterError> {
        let spec = RunSpec {
            templates: templates.to_vec(),
            args: args.to_vec(),
        };
        self.cp
            .store()
            .put_json(&format!("runspec/{rollout}/{name}"), &spec)
            .map_err(adapter_err)?;
        let r = self.rollout(rollout)?;
        self.cp
            .start_run(self.set, r, name, &spec)
            .map_err(adapter_err)
    }

    async fn stop(&self, _rollout: &str, name: &str) -> Result<(), AdapterError> {
        self.cp.stop_run(name);
        Ok(())
    }
}

/// What `GET /v1/rollouts/{name}` shows when the driver cannot act.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverError {
    /// The error and its causes.
    pub message: String,
    /// Since when (ms since the epoch).
    pub since: u64,
    /// The next try (ms since the epoch).
    pub retry_at: Option<u64>,
}

pub(crate) fn endpoints_of(revisions: &[serin_platform_local::RevisionState]) -> RolloutEndpoints {
    let mut endpoints = RolloutEndpoints::default();
    for rs in revisions {
        endpoints.ready.insert(
            rs.hash.clone(),
            rs.pods
                .iter()
                .filter(|p| !p.terminating && p.ready)
                .map(|p| p.addr)
                .collect(),
        );
    }
    endpoints
}
