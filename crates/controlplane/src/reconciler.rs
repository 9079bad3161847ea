//! The reconcile loop: observe → `serin_engine::reconcile` → persist → act.
//! This is the adapter the engine's contract (docs/engine.md) describes, for
//! local processes and Serin's own proxy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serin_engine as e;
use serin_platform_local::LocalPlatform;
use serin_spec::{ManifestSet, PodTemplateSpec};

use crate::proxy_client::ProxyClient;
use crate::routing::{self, ProxyConfig, RolloutEndpoints, RolloutRouting};
use crate::store::Store;

/// Milliseconds since the Unix epoch, from the real clock (the engine itself
/// never reads one).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A user operation on a rollout.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// `serin promote`.
    Promote,
    /// `serin promote --full`.
    PromoteFull,
    /// `serin pause`.
    Pause,
    /// `serin resume`.
    Resume,
    /// `serin abort`.
    Abort,
    /// `serin retry`.
    Retry,
    /// `serin undo [--to-revision N]`.
    Undo {
        /// Revision number; `None` = the previous one.
        to_revision: Option<u64>,
    },
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// No such rollout in the manifests.
    #[error("no rollout named {0}")]
    NotFound(String),
    /// The engine refused it.
    #[error(transparent)]
    Refused(#[from] e::CommandError),
    /// The manifest cannot be run.
    #[error(transparent)]
    Convert(#[from] serin_plan::ConvertError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A user pause/undo kept beside the manifest (Argo writes these into the
/// object's spec; Serin's manifests are the user's files, so it keeps them
/// in the store and forgets an undo when the manifest itself changes).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Overrides {
    paused: bool,
    /// (template hash to run instead, manifest hash it overrides)
    undo: Option<(String, String)>,
}

/// The control plane for one machine.
pub struct ControlPlane {
    set: Mutex<Arc<ManifestSet>>,
    store: Store,
    platform: LocalPlatform,
    proxy: ProxyClient,
    ports: BTreeMap<String, u16>,
    last_proxy: tokio::sync::Mutex<Option<ProxyConfig>>,
    in_force: Mutex<ProxyConfig>,
}

impl ControlPlane {
    /// Wires the parts together.
    pub fn new(
        set: ManifestSet,
        store: Store,
        platform: LocalPlatform,
        proxy: ProxyClient,
        ports: BTreeMap<String, u16>,
    ) -> Self {
        Self {
            set: Mutex::new(Arc::new(set)),
            store,
            platform,
            proxy,
            ports,
            last_proxy: tokio::sync::Mutex::new(None),
            in_force: Mutex::new(ProxyConfig::default()),
        }
    }

    /// The manifests in force.
    pub fn manifests(&self) -> Arc<ManifestSet> {
        self.set
            .lock()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// Replaces the manifests (a validated apply or a file change).
    pub fn set_manifests(&self, set: ManifestSet) {
        match self.set.lock() {
            Ok(mut s) => *s = Arc::new(set),
            Err(p) => *p.into_inner() = Arc::new(set),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The platform.
    pub fn platform(&self) -> &LocalPlatform {
        &self.platform
    }

    /// The proxy configuration in force (with real listen ports).
    pub fn proxy_config(&self) -> ProxyConfig {
        self.in_force.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn overrides(&self, rollout: &str) -> Overrides {
        self.store
            .get_json(&format!("overrides/{rollout}"))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The engine spec for a rollout, with the user's pause and undo applied.
    /// Returns the spec and the pod template to run for its hash.
    fn engine_spec(
        &self,
        set: &ManifestSet,
        r: &serin_spec::Rollout,
    ) -> Result<(e::RolloutSpec, serde_json::Value), OperationError> {
        let name = r.metadata.name.clone().unwrap_or_default();
        let mut spec = serin_plan::to_engine(set, r)?;
        let mut template = serde_json::to_value(&r.spec.template).unwrap_or_default();
        let o = self.overrides(&name);
        spec.paused = spec.paused || o.paused;
        if let Some((hash, manifest_hash)) = &o.undo
            && *manifest_hash == spec.template_hash.0
            && let Some(rev) = self
                .store
                .revisions(&name)?
                .into_iter()
                .find(|rv| &rv.hash == hash)
        {
            spec.template_hash = e::RevisionHash::new(hash.clone());
            template = rev.template;
        }
        Ok((spec, template))
    }

    fn observed(&self, rollout: &str) -> Result<(e::Observed, RolloutEndpoints), OperationError> {
        let numbers: BTreeMap<String, u64> = self
            .store
            .revisions(rollout)?
            .into_iter()
            .map(|r| (r.hash, r.number))
            .collect();
        let mut observed = e::Observed {
            route: self.store.route(rollout)?,
            ..Default::default()
        };
        let mut endpoints = RolloutEndpoints::default();
        for rs in self.platform.observe(rollout) {
            let live = || rs.pods.iter().filter(|p| !p.terminating);
            observed.revisions.push(e::ObservedRevision {
                hash: e::RevisionHash::new(rs.hash.clone()),
                number: numbers.get(&rs.hash).copied().unwrap_or(0),
                replicas: rs.desired,
                ready: live().filter(|p| p.ready).count() as u32,
                available: live().filter(|p| p.available).count() as u32,
            });
            endpoints.ready.insert(
                rs.hash.clone(),
                live().filter(|p| p.ready).map(|p| p.addr).collect(),
            );
        }
        observed.analysis = self
            .store
            .get_json("analysis")
            .ok()
            .flatten()
            .unwrap_or_default();
        Ok((observed, endpoints))
    }

    /// One pass over every rollout, then one proxy update if routing changed.
    pub async fn reconcile_all(&self) -> anyhow::Result<()> {
        let set = self.manifests();
        let now = now_ms();
        let mut routing_inputs = Vec::new();
        for (_, r) in set.rollouts() {
            let name = r.metadata.name.clone().unwrap_or_default();
            let (spec, template) = match self.engine_spec(&set, r) {
                Ok(x) => x,
                Err(err) => {
                    tracing::warn!(rollout = %name, "cannot run: {err}");
                    continue;
                }
            };
            self.store
                .ensure_revision(&name, &spec.template_hash.0, &template)?;
            let (observed, _) = self.observed(&name)?;
            let status = self.store.status(&name)?;
            let out = e::reconcile(&spec, &status, &observed, now);
            if out.status != status {
                self.store.put_status(&name, &out.status)?;
            }
            for action in &out.actions {
                self.act(&name, r, action, now).await?;
            }
            let (_, endpoints) = self.observed(&name)?;
            routing_inputs.push((r.clone(), self.store.route(&name)?, endpoints));
        }
        let rr: Vec<RolloutRouting<'_>> = routing_inputs
            .iter()
            .map(|(r, route, ep)| RolloutRouting {
                rollout: r,
                route,
                endpoints: ep,
            })
            .collect();
        let desired = routing::proxy_config(&set, &rr, &self.ports);
        let mut last = self.last_proxy.lock().await;
        if last.as_ref() != Some(&desired) {
            let in_force = self.proxy.apply(&desired).await?;
            if let Ok(mut f) = self.in_force.lock() {
                *f = in_force;
            }
            *last = Some(desired);
        }
        Ok(())
    }

    async fn act(
        &self,
        name: &str,
        r: &serin_spec::Rollout,
        action: &e::Action,
        now: u64,
    ) -> anyhow::Result<()> {
        match action {
            e::Action::Scale { revision, replicas } => {
                let template: PodTemplateSpec = match self
                    .store
                    .revisions(name)?
                    .into_iter()
                    .find(|rv| rv.hash == revision.0)
                {
                    Some(rv) => serde_json::from_value(rv.template)?,
                    None => anyhow::bail!("no template recorded for revision {revision} of {name}"),
                };
                let min_ready = u32::try_from(r.spec.min_ready_seconds).unwrap_or(0);
                self.platform.set_min_ready_seconds(name, min_ready);
                self.platform
                    .scale(name, &revision.0, &template, *replicas)
                    .await?;
            }
            e::Action::SetRoute(route) => {
                self.store.put_route(name, route)?;
            }
            e::Action::StartAnalysis { name: run, .. } => {
                // The analysis engine is wired in by the analysis issue; until
                // then a run cannot succeed, and saying Error (which aborts)
                // is the honest answer, never a silent pass.
                tracing::warn!(rollout = %name, run = %run, "analysis runs are not available in this build: marking Error");
                let mut phases: BTreeMap<String, e::AnalysisPhase> = self
                    .store
                    .get_json("analysis")
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                phases.insert(run.clone(), e::AnalysisPhase::Error);
                self.store.put_json("analysis", &phases)?;
            }
            e::Action::StopAnalysis { .. } => {}
            e::Action::Emit(ev) => {
                tracing::info!(rollout = %name, event = ?ev, "event");
                self.store.push_event(name, now, ev)?;
            }
        }
        Ok(())
    }

    /// Carries out a user operation.
    pub fn operate(&self, rollout: &str, op: &Operation) -> Result<(), OperationError> {
        let set = self.manifests();
        let r = set
            .rollouts()
            .map(|(_, r)| r)
            .find(|r| r.metadata.name.as_deref() == Some(rollout))
            .ok_or_else(|| OperationError::NotFound(rollout.into()))?;
        let (mut spec, _) = self.engine_spec(&set, r)?;
        let manifest_hash = serin_plan::to_engine(&set, r)?.template_hash.0;
        let mut status = self.store.status(rollout)?;
        let mut o = self.overrides(rollout);
        let now = now_ms();
        match op {
            Operation::Undo { to_revision } => {
                let (observed, _) = self.observed(rollout)?;
                let target = e::undo_target(&observed, &spec.template_hash, *to_revision)?;
                o.undo = Some((target.0, manifest_hash));
            }
            other => {
                let cmd = match other {
                    Operation::Promote => e::Command::Promote,
                    Operation::PromoteFull => e::Command::PromoteFull,
                    Operation::Pause => e::Command::Pause,
                    Operation::Resume => e::Command::Resume,
                    Operation::Abort => e::Command::Abort,
                    _ => e::Command::Retry,
                };
                e::apply_command(&mut spec, &mut status, &cmd, now)?;
                o.paused = spec.paused;
                self.store.put_status(rollout, &status)?;
            }
        }
        self.store.put_json(&format!("overrides/{rollout}"), &o)?;
        Ok(())
    }
}
