//! The driver's four seams for one Rollout on a cluster, for one reconcile:
//! built from a fresh read of the Rollout, they keep its latest version
//! (every write returns it) so each write is conditional on the one before.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::events::Recorder;
use kube::{Client, Resource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serin_driver::{AdapterError, AnalysisRuns, Platform, StatusStore, TrafficRouter, Workload};
use serin_engine as e;

use crate::object::RolloutObject;
use crate::router::{
    DrRef, Routing, VsRef, dr_subsets, experiment_service, experiment_weights, httproute_rules,
    service_apply, vs_http,
};
use crate::rs_cache::ReplicaSetCache;
use crate::{
    ANN_COMMAND, ANN_REVISION, ANN_STATUS, Error, FIELD_MANAGER, LABEL_HASH, LABEL_ROLLOUT,
    is_not_found,
};

/// What Serin keeps on the Rollout (annotation [`ANN_STATUS`]): the engine
/// status and the route decided with it, written together, and the revision
/// numbers by hash.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    /// The engine's status.
    #[serde(default)]
    pub status: e::RolloutStatus,
    /// The route last decided.
    #[serde(default)]
    pub route: e::Route,
    /// Revision numbers (1, 2, …) by pod-template hash.
    #[serde(default)]
    pub revisions: BTreeMap<String, u64>,
    /// The user's pause, undo and restart beside the manifest.
    #[serde(default, skip_serializing_if = "is_default")]
    pub overrides: serin_driver::Overrides,
    /// The driver's error, when it cannot act, and its next try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DriverError>,
    /// The Rollout's template runs as an older ReplicaSet's revision (an
    /// undo copied that ReplicaSet's template back into the Rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_alias: Option<TemplateAlias>,
}

/// A Rollout template that is an existing ReplicaSet's once the API
/// server's defaults are applied, so it runs as that ReplicaSet's revision
/// rather than as a new one with the same pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateAlias {
    /// The hash of the Rollout's `spec.template` as written.
    pub template: String,
    /// The hash (`rollouts-pod-template-hash`) of the ReplicaSet it matches.
    pub revision: String,
}

impl Stored {
    /// The revision the Rollout's template hash `hash` runs as.
    pub fn revision_for(&self, hash: &e::RevisionHash) -> e::RevisionHash {
        match &self.template_alias {
            Some(a) if a.template == hash.0 => e::RevisionHash::new(a.revision.clone()),
            _ => hash.clone(),
        }
    }
}

fn is_default(o: &serin_driver::Overrides) -> bool {
    *o == serin_driver::Overrides::default()
}

/// Server-side applies `spec.<field>` of a routing object (a VirtualService's
/// `http`, an HTTPRoute's `rules`) as Serin's field manager: only that list
/// becomes Serin's, every other field keeps its owner.
async fn apply_route_list(
    api: &Api<DynamicObject>,
    at: &VsRef,
    api_version: &str,
    kind: &str,
    field: &str,
    list: Vec<Value>,
) -> Result<(), Error> {
    let body = json!({"apiVersion": api_version, "kind": kind,
                      "metadata": {"name": at.name, "namespace": at.namespace},
                      "spec": {field: list}});
    api.patch(
        &at.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!(
        "setting spec.{field} of {kind} {}/{}",
        at.namespace, at.name
    )))?;
    Ok(())
}

/// Annotation on a ReplicaSet: the pods a restart added above the
/// revision's size (surge-first restart), removed when scaled back.
pub const ANN_RESTART_SURGE: &str = "serin.dev/restart-surge";
/// Annotation on a ReplicaSet: `<restart time> <n>`, the scale-backs in a
/// row of that restart after which a pod marked for retirement was still
/// there (kube removed another pod, a replacement: its PodDeletionCost
/// feature is off). At [`RESTART_MISSES_LIMIT`] the restart stops.
pub const ANN_RESTART_MISSES: &str = "serin.dev/restart-misses";
/// Scale-backs in a row that may miss their marked pods before the restart
/// of a ReplicaSet stops (one could be a replacement turning unready just
/// before the scale-back; three in a row is kube ignoring the cost).
pub const RESTART_MISSES_LIMIT: u32 = 3;
/// kube's ReplicaSet controller removes pods with the lowest cost first.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The cost that marks a pod the restart retires (the lowest there is).
const RETIRE_COST: &str = "-2147483648";

/// Why the driver cannot act on a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverError {
    /// The error and its causes.
    pub message: String,
    /// The next try (ms since the epoch).
    pub retry_at: Option<u64>,
}

pub(crate) fn istio_vs() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

pub(crate) fn istio_dr() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "DestinationRule"),
        "destinationrules",
    )
}

pub(crate) fn http_route() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

pub(crate) fn template() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisTemplate"),
        "analysistemplates",
    )
}

pub(crate) fn cluster_template() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ClusterAnalysisTemplate"),
        "clusteranalysistemplates",
    )
}

pub(crate) fn analysis_run() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisRun"),
        "analysisruns",
    )
}

/// The seams for one Rollout, one reconcile.
pub struct RolloutAdapters<'a> {
    client: Client,
    recorder: &'a Recorder,
    obj: Mutex<RolloutObject>,
    routing: Routing,
    observed: Mutex<Vec<e::ObservedRevision>>,
    /// The owned ReplicaSets as last listed (for the history clean-up).
    listed: Mutex<Vec<ReplicaSet>>,
    runs: std::sync::Arc<crate::analysis::Runs>,
    /// The controller's watch of ReplicaSets (none: list them each time).
    rs_cache: Option<std::sync::Arc<ReplicaSetCache>>,
    /// What a workloadRef's Deployment lends the Rollout (template,
    /// selector): filled into every version of the object held here.
    workload: Option<crate::workload_ref::Borrowed>,
}

impl<'a> RolloutAdapters<'a> {
    /// Adapters for `obj` (read fresh from the API server).
    pub fn new(
        client: Client,
        recorder: &'a Recorder,
        runs: std::sync::Arc<crate::analysis::Runs>,
        obj: RolloutObject,
    ) -> Self {
        Self {
            client,
            recorder,
            runs,
            routing: Routing::of(&obj),
            obj: Mutex::new(obj),
            observed: Mutex::new(Vec::new()),
            listed: Mutex::new(Vec::new()),
            rs_cache: None,
            workload: None,
        }
    }

    /// The Rollout takes its template and selector from a Deployment
    /// (`spec.workloadRef`); `None`: it has its own.
    #[must_use]
    pub(crate) fn with_workload(mut self, w: Option<crate::workload_ref::Borrowed>) -> Self {
        if let (Some(b), Ok(mut o)) = (&w, self.obj.lock()) {
            b.fill(&mut o.spec);
        }
        self.workload = w;
        self
    }

    /// Holds `new` (the Rollout as a write returned it) from now on.
    fn hold(&self, mut new: RolloutObject) {
        if let Some(b) = &self.workload {
            b.fill(&mut new.spec);
        }
        if let Ok(mut o) = self.obj.lock() {
            *o = new;
        }
    }

    /// Observes the Rollout's ReplicaSets from `cache` (the controller's
    /// watch) rather than a list per reconcile; this controller's writes
    /// to them are recorded there, so a reconcile never reads a view older
    /// than its own last write.
    #[must_use]
    pub fn with_replica_set_cache(mut self, cache: std::sync::Arc<ReplicaSetCache>) -> Self {
        self.rs_cache = Some(cache);
        self
    }

    fn uid(&self) -> String {
        self.object().metadata.uid.unwrap_or_default()
    }

    /// Records a write of this controller to ReplicaSet `name` (its new
    /// resourceVersion), for the cache to wait for.
    fn wrote_rs(&self, name: &str, resource_version: Option<String>) {
        if let Some(c) = &self.rs_cache {
            c.wrote(&self.uid(), name, resource_version);
        }
    }

    /// The Rollout as last read or written.
    pub fn object(&self) -> RolloutObject {
        self.obj.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// The revisions the last `observe` saw.
    pub fn observed(&self) -> Vec<e::ObservedRevision> {
        self.observed.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn ns(&self) -> String {
        self.object().namespace().to_string()
    }

    fn rollouts(&self) -> Api<RolloutObject> {
        Api::namespaced(self.client.clone(), &self.ns())
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), &self.ns())
    }

    /// What Serin stored on the Rollout.
    pub fn stored(&self) -> Result<Stored, Error> {
        let obj = self.object();
        match obj.annotation(ANN_STATUS) {
            None => Ok(Stored::default()),
            Some(text) => serde_json::from_str(text).map_err(|err| {
                Error::Invalid(format!(
                    "annotation {ANN_STATUS} of rollout {} is not Serin's status ({err}); remove it to start over",
                    obj.name()
                ))
            }),
        }
    }

    /// Writes `stored` (and `extra` merged into the patch, e.g. `spec.paused`),
    /// conditional on the version last read: a Rollout changed meanwhile makes
    /// the write fail and the step retry on the new version. With
    /// `command_result`, the command annotation is removed in the same write
    /// and its outcome left in `serin.dev/command-result` (for the CLI).
    pub async fn write_stored(
        &self,
        stored: &Stored,
        command_result: Option<String>,
        spec_patch: Option<Value>,
    ) -> Result<(), Error> {
        let obj = self.object();
        let text = serde_json::to_string(stored).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut annotations = serde_json::Map::new();
        annotations.insert(ANN_STATUS.into(), json!(text));
        if let Some(result) = command_result {
            annotations.insert(ANN_COMMAND.into(), Value::Null);
            annotations.insert(crate::ANN_COMMAND_RESULT.into(), json!(result));
        }
        let mut patch = json!({"metadata": {
            "resourceVersion": obj.metadata.resource_version,
            "annotations": annotations}});
        if let Some(s) = spec_patch {
            patch["spec"] = s;
        }
        let new = self
            .rollouts()
            .patch(obj.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "writing the status of rollout {}",
                obj.name()
            )))?;
        self.hold(new);
        Ok(())
    }

    /// Replaces the Argo-shaped `/status` with `status` unless it is already
    /// that (server-side apply: Serin owns the fields it writes).
    pub async fn write_argo_status(&self, status: Value) -> Result<(), Error> {
        let obj = self.object();
        if obj.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let body = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                          "metadata": {"name": obj.name()}, "status": status});
        let new = self
            .rollouts()
            .patch_status(
                obj.name(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(Error::kube(format!(
                "writing /status of rollout {}",
                obj.name()
            )))?;
        self.hold(new);
        Ok(())
    }

    /// Publishes a Kubernetes Event on the Rollout.
    pub async fn event(&self, warning: bool, reason: &str, note: String) {
        let obj = self.object();
        crate::publish_event(self.recorder, &obj.object_ref(&()), warning, reason, note).await;
    }

    fn owned_by_rollout(&self, rs: &ReplicaSet) -> bool {
        let uid = self.object().metadata.uid;
        rs.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| Some(&r.uid) == uid.as_ref()))
    }

    /// The owned ReplicaSets of the Rollout's revisions (not its
    /// experiments'): from the cache when it is up to date with this
    /// controller's writes, else listed (see [`ReplicaSetCache`]).
    async fn owned_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let mut all = self.owned_all().await?;
        all.retain(|rs| !is_experiment(rs));
        if let Ok(mut l) = self.listed.lock() {
            l.clone_from(&all);
        }
        Ok(all)
    }

    /// The owned ReplicaSets of the Rollout's experiment steps.
    async fn owned_experiment_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let mut all = self.owned_all().await?;
        all.retain(is_experiment);
        Ok(all)
    }

    /// Every owned ReplicaSet, revisions' and experiments'.
    async fn owned_all(&self) -> Result<Vec<ReplicaSet>, Error> {
        let cached = self
            .rs_cache
            .as_ref()
            .and_then(|c| c.owned(&self.uid()))
            .filter(|_| self.object().metadata.uid.is_some());
        let Some(owned) = cached else {
            if self.rs_cache.is_some() {
                tracing::debug!(rollout = %self.object().name(),
                    "ReplicaSets listed: the watch is not up to date with this controller's writes");
            }
            return self.list_owned_replica_sets().await;
        };
        Ok(owned)
    }

    /// The owned ReplicaSets, whole, listed from the API server.
    async fn list_owned_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let obj = self.object();
        let selector = obj
            .spec
            .pointer("/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let list = self
            .replica_sets()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube(format!(
                "listing ReplicaSets of rollout {}",
                obj.name()
            )))?;
        let owned: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|rs| self.owned_by_rollout(rs))
            .collect();
        Ok(owned)
    }

    /// Points `target` at the revision its template runs as: its own hash,
    /// or an owned ReplicaSet's whose template it equals once the API
    /// server has defaulted it. `kubectl argo rollouts undo` and `serin undo
    /// --context` copy an older ReplicaSet's (defaulted) template back into
    /// the Rollout, whose hash then differs from the ReplicaSet's; Argo's
    /// controller matches it the same way (`FindNewReplicaSet`,
    /// `PodTemplateEqualIgnoreHash`), here with the API server's own
    /// defaulting (a dry-run create). Asked only for a template hash not
    /// seen before; the match is remembered in [`Stored::template_alias`].
    pub async fn resolve_revision(&self, target: &mut serin_driver::Target) -> Result<(), Error> {
        let hash = target.spec.template_hash.clone();
        let mut stored = self.stored()?;
        let obj = self.object();
        if obj.annotation(ANN_STATUS).is_none()
            && let Some(argo) = obj.status.as_ref().filter(|s| s.get("stableRS").is_some())
        {
            let owned = self.list_owned_replica_sets().await?;
            if seed_from_argo(&mut stored.status, argo, &owned) {
                tracing::info!(rollout = %obj.name(), stable = ?stored.status.stable_hash,
                    current = ?stored.status.current_hash, step = ?stored.status.current_step_index,
                    "taking over from Argo's status");
                self.write_stored(&stored, None, None).await?;
            }
        }
        let resolved = stored.revision_for(&hash);
        if resolved != hash || stored.revisions.contains_key(&hash.0) {
            target.spec.template_hash = resolved;
            return Ok(());
        }
        // Listed: the match needs the pod templates the cache leaves out.
        let owned = self.list_owned_replica_sets().await?;
        if owned.is_empty() || owned.iter().any(|rs| hash_of(rs) == Some(hash.0.as_str())) {
            return Ok(());
        }
        let candidate = self.new_replica_set(&hash, &target.workload, 0, 0, false)?;
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let defaulted = match self.replica_sets().create(&dry_run, &candidate).await {
            Ok(rs) => rs,
            // A ReplicaSet of that name without the hash label: no match.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
            Err(err) => {
                return Err(Error::kube(format!(
                    "defaulting the template of rollout {} (dry run)",
                    self.object().name()
                ))(err));
            }
        };
        let want = template_without_hash(&defaulted);
        let Some(old) = owned
            .iter()
            .filter(|rs| template_without_hash(rs) == want)
            .max_by_key(|rs| revision_of(rs))
            .and_then(hash_of)
        else {
            return Ok(());
        };
        tracing::info!(rollout = %self.object().name(), template = %hash, revision = %old,
            "the template is an existing ReplicaSet's (undo): running that revision");
        stored.template_alias = Some(TemplateAlias {
            template: hash.0.clone(),
            revision: old.to_string(),
        });
        self.write_stored(&stored, None, None).await?;
        target.spec.template_hash = e::RevisionHash::new(old);
        Ok(())
    }

    /// Deletes the finished AnalysisRuns of revisions whose ReplicaSet
    /// is gone (Argo deletes a removed revision's runs with it); runs are
    /// matched by the revision label Serin puts on them.
    async fn delete_runs_of(&self, hashes: &[String]) -> Result<(), Error> {
        let obj = self.object();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns(), &analysis_run());
        let selector = format!(
            "{LABEL_ROLLOUT}={},{LABEL_HASH} in ({})",
            obj.name(),
            hashes.join(",")
        );
        let runs = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube("listing the AnalysisRuns of deleted revisions"))?;
        for r in runs.items {
            let Some(name) = r.metadata.name.clone() else {
                continue;
            };
            let phase = r
                .data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map_or(e::AnalysisPhase::Pending, phase_of);
            if !phase.is_completed() {
                continue;
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(run = %name, "AnalysisRun of a deleted revision deleted"),
                Err(err) if is_not_found(&err) => {}
                Err(err) => {
                    return Err(Error::kube(format!("deleting AnalysisRun {name}"))(err));
                }
            }
        }
        Ok(())
    }

    /// Argo's `revisionHistoryLimit`: of the owned ReplicaSets other than
    /// `keep` (the current and stable revisions), all but the newest `limit`
    /// are deleted — oldest first, and only those scaled to zero with no
    /// replicas left. Works on the step's own listing; each delete is
    /// conditional on the ReplicaSet's uid and resourceVersion as listed,
    /// so one the step has scaled since is left alone (409). Returns the
    /// names deleted.
    pub async fn prune_history(&self, keep: &[&str], limit: usize) -> Result<Vec<String>, Error> {
        let listed = self.listed.lock().map(|l| l.clone()).unwrap_or_default();
        let mut old: Vec<&ReplicaSet> = listed
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .filter(|rs| !keep.iter().any(|k| hash_of(rs) == Some(*k)))
            .collect();
        if old.len() <= limit {
            return Ok(Vec::new());
        }
        old.sort_by_key(|rs| {
            (
                rs.metadata.creation_timestamp.clone(),
                revision_of(rs),
                rs.metadata.name.clone(),
            )
        });
        let excess = old.len() - limit;
        let api = self.replica_sets();
        let mut deleted = Vec::new();
        let mut gone: Vec<String> = Vec::new();
        for rs in &old[..excess] {
            let spec_replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let st = rs.status.as_ref();
            let running = st.map_or(0, |s| s.replicas);
            let observed = st.and_then(|s| s.observed_generation).unwrap_or(0);
            if spec_replicas != 0 || running != 0 || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let Some(name) = rs.metadata.name.clone() else {
                continue;
            };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: rs.metadata.resource_version.clone(),
                }),
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {
                    if let Some(c) = &self.rs_cache {
                        c.deleted(&self.uid(), &name);
                    }
                    deleted.push(name);
                    gone.extend(hash_of(rs).map(str::to_string));
                }
                // Gone already, or changed since listed: not ours to delete now.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(err) => {
                    return Err(Error::kube(format!(
                        "deleting old ReplicaSet {name} (revisionHistoryLimit)"
                    ))(err));
                }
            }
        }
        if !gone.is_empty() {
            self.delete_runs_of(&gone).await?;
        }
        Ok(deleted)
    }

    /// Argo's `spec.analysis.successfulRunHistoryLimit` /
    /// `unsuccessfulRunHistoryLimit`: of the Rollout's finished
    /// AnalysisRuns other than `current` (those the engine's status still
    /// refers to), the newest `keep_successful` Successful ones and the
    /// newest `keep_unsuccessful` Failed, Error or Inconclusive ones are
    /// kept, the rest deleted (each delete conditional on the run's uid).
    /// Runs still measuring are never counted nor deleted. Returns the
    /// names deleted.
    pub async fn prune_runs(
        &self,
        current: &[&str],
        keep_successful: usize,
        keep_unsuccessful: usize,
    ) -> Result<Vec<String>, Error> {
        let obj = self.object();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns(), &analysis_run());
        let mut runs = api
            .list(&ListParams::default().labels(&format!("{LABEL_ROLLOUT}={}", obj.name())))
            .await
            .map_err(Error::kube("listing the rollout's AnalysisRuns"))?
            .items;
        // Newest first (Argo sorts by creation time). creationTimestamp has
        // whole seconds, and three quick deploys created runs in one second,
        // where a tie broken by name deleted a newer run than the oldest:
        // Serin's runs carry their creation in milliseconds too.
        let created_ms = |r: &DynamicObject| -> u64 {
            r.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::ANN_RUN_CREATED_MS))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        runs.sort_by(|a, b| {
            (
                &b.metadata.creation_timestamp,
                created_ms(b),
                &b.metadata.name,
            )
                .cmp(&(
                    &a.metadata.creation_timestamp,
                    created_ms(a),
                    &a.metadata.name,
                ))
        });
        let (mut successful, mut unsuccessful) = (0, 0);
        let mut deleted = Vec::new();
        for r in runs {
            let Some(name) = r.metadata.name.clone() else {
                continue;
            };
            if current.contains(&name.as_str()) || r.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let phase = r
                .data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map_or(e::AnalysisPhase::Pending, phase_of);
            let (kept, limit) = match phase {
                e::AnalysisPhase::Successful => (&mut successful, keep_successful),
                e::AnalysisPhase::Failed
                | e::AnalysisPhase::Error
                | e::AnalysisPhase::Inconclusive => (&mut unsuccessful, keep_unsuccessful),
                e::AnalysisPhase::Pending | e::AnalysisPhase::Running => continue,
            };
            if *kept < limit {
                *kept += 1;
                continue;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: r.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(err) => {
                    return Err(Error::kube(format!(
                        "deleting AnalysisRun {name} (run history limit)"
                    ))(err));
                }
            }
        }
        Ok(deleted)
    }

    /// The ReplicaSet's pods not being deleted (owned by it: controller
    /// owner reference).
    async fn live_pods(&self, rs: &ReplicaSet) -> Result<Vec<Pod>, Error> {
        let selector = rs
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns());
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube(format!(
                "listing the pods of ReplicaSet {name}"
            )))?;
        Ok(list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.metadata.owner_references.as_ref().is_some_and(|o| {
                    o.iter().any(|r| {
                        r.controller == Some(true) && Some(&r.uid) == rs.metadata.uid.as_ref()
                    })
                })
            })
            .collect())
    }

    /// The ReplicaSet's live pods created before `before` (ms), with their
    /// creation times: those already marked for retirement first (a
    /// retirement the ReplicaSet controller has not carried out yet, or
    /// carried out on another pod), then the oldest.
    async fn pods_to_restart(
        &self,
        rs: &ReplicaSet,
        before: e::Millis,
    ) -> Result<Vec<(e::Millis, Pod)>, Error> {
        let mut out: Vec<(e::Millis, Pod)> = self
            .live_pods(rs)
            .await?
            .into_iter()
            .filter_map(|p| {
                let t = p.metadata.creation_timestamp.as_ref()?.0.as_millisecond();
                // Creation times are whole seconds: a pod is counted as
                // created at the end of its second, so a replacement made
                // in the restart's own second is never taken for an old
                // pod (and, as in Argo, neither is a pod of that second).
                let t = u64::try_from(t).ok()? + 999;
                (t < before).then_some((t, p))
            })
            .collect();
        out.sort_by_key(|(t, p)| (!is_marked(p), *t, p.metadata.name.clone()));
        Ok(out)
    }

    /// PodDisruptionBudgets that would forbid retiring `pods` now: each
    /// matching budget must allow that many disruptions (its
    /// `status.disruptionsAllowed`, kept by kube's disruption controller).
    async fn blocking_budgets(&self, pods: &[Pod]) -> Result<Vec<String>, Error> {
        let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &self.ns());
        let budgets = api
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("listing PodDisruptionBudgets"))?;
        let mut blocking = Vec::new();
        for pdb in budgets.items {
            let selector =
                serde_json::to_value(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .unwrap_or(Value::Null);
            if selector.is_null() {
                continue;
            }
            let hit = pods
                .iter()
                .filter(|p| {
                    selector_matches(&selector, &p.metadata.labels.clone().unwrap_or_default())
                })
                .count();
            let allowed = pdb
                .status
                .as_ref()
                .map_or(0, |s| s.disruptions_allowed.unwrap_or(0));
            if hit > 0 && usize::try_from(allowed).unwrap_or(0) < hit {
                blocking.push(format!(
                    "{} (allows {allowed}, {hit} to retire)",
                    pdb.metadata.name.unwrap_or_default()
                ));
            }
        }
        Ok(blocking)
    }

    /// One step of `spec.restartAt` for a revision, surge first, on the
    /// ReplicaSet itself: (1) scale it up by up to `max_in_flight` and note
    /// the surge on it ([`ANN_RESTART_SURGE`]); (2) once every pod of it is
    /// available, mark as many of the oldest pods created before the
    /// restart with the lowest `controller.kubernetes.io/pod-deletion-cost`
    /// and scale it back, so the ReplicaSet controller removes exactly
    /// those. Step (2) waits while a PodDisruptionBudget matching them
    /// allows fewer disruptions. Each ReplicaSet write is conditional on
    /// the version read.
    async fn restart_step(
        &self,
        revision: &e::RevisionHash,
        created_before: e::Millis,
        max_in_flight: u32,
    ) -> Result<(), Error> {
        let name = self.rs_name(revision);
        let api = self.replica_sets();
        let Some(rs) = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading ReplicaSet {name}")))?
        else {
            return Ok(());
        };
        let surge = surge_of(&rs);
        let spec_replicas = int(rs.spec.as_ref().and_then(|s| s.replicas));
        let size = spec_replicas.saturating_sub(surge);
        let old = self.pods_to_restart(&rs, created_before).await?;
        // Conditional on the fields it changes (JSON Patch `test`), not on
        // the resourceVersion, which the ReplicaSet controller's status
        // writes move all the time.
        let key = format!(
            "/metadata/annotations/{}",
            ANN_RESTART_SURGE.replace('/', "~1")
        );
        let write = |ops: Value| -> Result<Patch<Value>, Error> {
            serde_json::from_value(ops)
                .map(Patch::Json)
                .map_err(|e| Error::Invalid(format!("restart patch: {e}")))
        };
        let st = rs.status.as_ref();
        let settled = st.and_then(|s| s.observed_generation) >= rs.metadata.generation
            && st.map_or(0, |s| s.replicas) == i32::try_from(spec_replicas).unwrap_or(i32::MAX);
        if surge == 0 {
            // Wait for the ReplicaSet controller to finish the last
            // scale-back before judging which old pods are left.
            if old.is_empty() || !settled {
                return Ok(());
            }
            // A marked pod alive after a settled scale-back: kube removed
            // another pod (a replacement) instead. Without the guard the
            // restart would surge and scale back forever.
            let misses_before = misses_of(&rs, created_before);
            let missed = old.iter().any(|(_, p)| is_marked(p));
            let misses = if missed { misses_before + 1 } else { 0 };
            let misses_key = format!(
                "/metadata/annotations/{}",
                ANN_RESTART_MISSES.replace('/', "~1")
            );
            let stalled = |misses: u32| {
                format!(
                    "restart of ReplicaSet {name} stopped: {misses} scale-backs in a row removed another pod than the old one marked with {DELETION_COST} (kube's PodDeletionCost feature is off?); old pods are left running; enable the feature and restart again, or delete the old pods by hand"
                )
            };
            if misses_before >= RESTART_MISSES_LIMIT {
                return Err(Error::Invalid(stalled(misses_before)));
            }
            let mut ops = vec![json!({"op": "test", "path": "/spec/replicas", "value": size})];
            if rs.metadata.annotations.is_none() {
                ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
            }
            let noted = rs
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANN_RESTART_MISSES));
            if misses > 0 {
                ops.push(json!({"op": "add", "path": misses_key,
                                "value": format!("{created_before} {misses}")}));
            } else if noted {
                ops.push(json!({"op": "remove", "path": misses_key}));
            }
            if misses >= RESTART_MISSES_LIMIT {
                tracing::warn!(replica_set = %name, misses, "restart: deletion cost ignored, stopping");
                api.patch(&name, &PatchParams::default(), &write(json!(ops))?)
                    .await
                    .map_err(Error::kube(format!(
                        "noting the stopped restart on ReplicaSet {name}"
                    )))?;
                self.event(true, "RestartStalled", stalled(misses)).await;
                return Err(Error::Invalid(stalled(misses)));
            }
            let k = max_in_flight
                .max(1)
                .min(u32::try_from(old.len()).unwrap_or(u32::MAX));
            tracing::info!(replica_set = %name, surge = k, misses, "restart: adding replacement pods");
            ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": size + k}));
            ops.push(json!({"op": "add", "path": key, "value": k.to_string()}));
            let new = api
                .patch(&name, &PatchParams::default(), &write(json!(ops))?)
                .await
                .map_err(Error::kube(format!(
                    "surging ReplicaSet {name} for the restart"
                )))?;
            self.wrote_rs(&name, new.metadata.resource_version);
            return Ok(());
        }
        if !settled || int(st.and_then(|s| s.available_replicas)) < spec_replicas {
            return Ok(());
        }
        // Already-marked pods come first, so a retry after a failed
        // scale-back marks no more pods than were added.
        let retire: Vec<Pod> = old
            .into_iter()
            .take(surge as usize)
            .map(|(_, p)| p)
            .collect();
        if !retire.is_empty() {
            let blocking = self.blocking_budgets(&retire).await?;
            if !blocking.is_empty() {
                self.event(
                    false,
                    "RestartWaitingForDisruptionBudget",
                    format!(
                        "restart: old pods of {name} are kept until PodDisruptionBudget {} allows their retirement",
                        blocking.join(", ")
                    ),
                )
                .await;
                return Ok(());
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.ns());
        for p in &retire {
            let pod = p.metadata.name.clone().unwrap_or_default();
            pods.patch(
                &pod,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {DELETION_COST: RETIRE_COST}}})),
            )
            .await
            .map_err(Error::kube(format!("marking pod {pod} for retirement")))?;
        }
        tracing::info!(replica_set = %name, retired = retire.len(),
            "restart: replacements available, retiring old pods");
        let ops = json!([
            {"op": "test", "path": "/spec/replicas", "value": spec_replicas},
            {"op": "test", "path": key, "value": surge.to_string()},
            {"op": "replace", "path": "/spec/replicas", "value": size},
            {"op": "remove", "path": key},
        ]);
        let new = api
            .patch(&name, &PatchParams::default(), &write(ops)?)
            .await
            .map_err(Error::kube(format!(
                "scaling ReplicaSet {name} back after the restart's surge"
            )))?;
        self.wrote_rs(&name, new.metadata.resource_version);
        Ok(())
    }

    fn rs_name(&self, revision: &e::RevisionHash) -> String {
        format!("{}-{}", self.object().name(), revision.0)
    }

    fn new_replica_set(
        &self,
        revision: &e::RevisionHash,
        workload: &Workload,
        replicas: u32,
        number: u64,
        experiment: bool,
    ) -> Result<ReplicaSet, Error> {
        let obj = self.object();
        let mut template = workload.template.clone();
        template["metadata"]["labels"][LABEL_HASH] = json!(revision.0);
        if experiment {
            template["metadata"]["labels"][LABEL_EXPERIMENT] = json!("true");
        }
        let mut selector = obj.spec.get("selector").cloned().unwrap_or(json!({}));
        selector["matchLabels"][LABEL_HASH] = json!(revision.0);
        let labels = template["metadata"]["labels"].clone();
        let owner = obj
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Invalid(format!("rollout {} has no uid yet", obj.name())))?;
        // An experiment's pods are no revision: no revision number.
        let annotations = if experiment {
            json!({})
        } else {
            json!({ANN_REVISION: number.to_string()})
        };
        let rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": self.rs_name(revision), "namespace": obj.namespace(),
                         "labels": labels,
                         "annotations": annotations,
                         "ownerReferences": [owner]},
            "spec": {"replicas": replicas, "minReadySeconds": workload.min_ready_seconds,
                     "selector": selector, "template": template},
        });
        serde_json::from_value(rs)
            .map_err(|err| Error::Invalid(format!("spec.template is not a pod template: {err}")))
    }
}

/// The extra pods a restart added to a ReplicaSet ([`ANN_RESTART_SURGE`]).
pub(crate) fn surge_of(rs: &ReplicaSet) -> u32 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_RESTART_SURGE))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The scale-backs in a row that missed their marked pods in the restart
/// of `created_before` ([`ANN_RESTART_MISSES`]; another restart's count
/// is 0).
fn misses_of(rs: &ReplicaSet, created_before: e::Millis) -> u32 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_RESTART_MISSES))
        .and_then(|v| v.split_once(' '))
        .filter(|(at, _)| at.parse() == Ok(created_before))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// Whether a pod carries the restart's retirement mark.
fn is_marked(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .is_some_and(|c| c == RETIRE_COST)
}

/// Whether `labels` match a label selector (`matchLabels` and
/// `matchExpressions`); an empty selector matches everything, as in
/// policy/v1.
fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| {
            m.iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        });
    let by_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|x| {
                let key = x["key"].as_str().unwrap_or_default();
                let values: Vec<&str> = x["values"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let have = labels.get(key).map(String::as_str);
                match x["operator"].as_str().unwrap_or_default() {
                    "In" => have.is_some_and(|h| values.contains(&h)),
                    "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
        });
    by_labels && by_expressions
}

/// Label on an experiment step's ReplicaSets (and their pods): they run a
/// revision's template for the experiment only and are never a revision.
pub const LABEL_EXPERIMENT: &str = "serin.dev/experiment";

/// Whether a ReplicaSet is an experiment step's ([`LABEL_EXPERIMENT`]).
pub(crate) fn is_experiment(rs: &ReplicaSet) -> bool {
    rs.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_EXPERIMENT))
}

/// A ReplicaSet's revision hash (its `rollouts-pod-template-hash` label).
pub(crate) fn hash_of(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_HASH))
        .map(String::as_str)
}

/// A ReplicaSet's pod template without the revision hash label, as JSON.
pub(crate) fn template_without_hash(rs: &ReplicaSet) -> Value {
    let mut t = serde_json::to_value(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
        .unwrap_or(Value::Null);
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(LABEL_HASH);
    }
    t
}

/// Seeds a status Serin has not written yet from the one Argo's
/// controller left (`argo`, the Rollout's `/status`), so that switching
/// controllers keeps the stable revision (the next image is a canary, not a
/// first deploy with no steps, even while a stable pod is unready), the
/// step a canary in flight is at and its weight, and blue-green's active
/// revision. Only hashes of the Rollout's own ReplicaSets are taken;
/// returns whether anything was.
pub(crate) fn seed_from_argo(
    status: &mut e::RolloutStatus,
    argo: &Value,
    owned: &[ReplicaSet],
) -> bool {
    let known = |ptr: &str| {
        argo.pointer(ptr)
            .and_then(Value::as_str)
            .filter(|h| owned.iter().any(|rs| hash_of(rs) == Some(*h)))
            .map(e::RevisionHash::new)
    };
    let Some(stable) = known("/stableRS") else {
        return false;
    };
    status.stable_hash = Some(stable);
    status.current_hash = known("/currentPodHash");
    status.active_hash = known("/blueGreen/activeSelector");
    if status.current_hash.is_some() {
        status.current_step_index = argo
            .pointer("/currentStepIndex")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok());
        status.canary_weight = argo
            .pointer("/canary/weights/canary/weight")
            .and_then(Value::as_u64)
            .and_then(|w| u32::try_from(w).ok())
            .unwrap_or(0);
    }
    true
}

/// A ReplicaSet's revision number (Argo's annotation; 0 when missing).
pub(crate) fn revision_of(rs: &ReplicaSet) -> u64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_REVISION))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn int(v: Option<i32>) -> u32 {
    v.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

impl Platform for RolloutAdapters<'_> {
    async fn observe(&self, _rollout: &str) -> Result<Vec<e::ObservedRevision>, AdapterError> {
        let mut out = Vec::new();
        // Only while a restartAt (the manifest's, or `serin restart`'s) is
        // set and not yet carried out.
        let stored = self.stored()?;
        let manifest = self
            .object()
            .spec
            .get("restartAt")
            .and_then(Value::as_str)
            .map(|at| serin_clock::parse_rfc3339(at).unwrap_or(u64::MAX));
        let asked = [manifest, stored.overrides.restart.as_ref().map(|r| r.at)];
        let restart_wanted = asked
            .into_iter()
            .flatten()
            .any(|at| stored.status.restarted_at.is_none_or(|done| done < at));
        for rs in self.owned_replica_sets().await? {
            let Some(hash) = rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_HASH))
                .cloned()
            else {
                continue;
            };
            // A restart's surge pods are extra: the revision's size is
            // what the engine asked for.
            let desired =
                int(rs.spec.as_ref().and_then(|s| s.replicas)).saturating_sub(surge_of(&rs));
            let st = rs.status.as_ref();
            // A status the ReplicaSet controller wrote for an older spec
            // may count pods being scaled away: never more than desired.
            let ready = int(st.and_then(|s| s.ready_replicas)).min(desired);
            let available = int(st.and_then(|s| s.available_replicas)).min(desired);
            let number = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_REVISION))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            // Pods are listed only while a restartAt is set (the one
            // thing that needs them), so a cluster of Rollouts at rest
            // costs one ReplicaSet list per reconcile, not a pod list too.
            let oldest_pod_created = if restart_wanted {
                self.pods_to_restart(&rs, u64::MAX)
                    .await?
                    .iter()
                    .map(|(t, _)| *t)
                    .min()
            } else {
                None
            };
            out.push(e::ObservedRevision {
                hash: e::RevisionHash::new(hash),
                number,
                replicas: desired,
                ready,
                available,
                oldest_pod_created,
            });
        }
        out.sort_by(|a, b| a.hash.cmp(&b.hash));
        if let Ok(mut o) = self.observed.lock() {
            *o = out.clone();
        }
        Ok(out)
    }

    async fn scale(
        &self,
        _rollout: &str,
        revision: &e::RevisionHash,
        workload: &Workload,
        replicas: u32,
    ) -> Result<(), AdapterError> {
        let name = self.rs_name(revision);
        let api = self.replica_sets();
        let existing = self.replica_set(&name).await?;
        match existing {
            None => {
                if replicas == 0 {
                    return Ok(());
                }
                let number = self
                    .stored()?
                    .revisions
                    .get(&revision.0)
                    .copied()
                    .unwrap_or(0);
                let rs = self.new_replica_set(revision, workload, replicas, number, false)?;
                self.create_replica_set(&name, &rs).await?;
            }
            Some(rs) => {
                if !self.owned_by_rollout(&rs) {
                    return Err(Error::Invalid(format!(
                        "ReplicaSet {name} exists but does not belong to this rollout"
                    ))
                    .into());
                }
                let surge = surge_of(&rs);
                let spec_replicas = int(rs.spec.as_ref().and_then(|s| s.replicas));
                if surge > 0 && spec_replicas.saturating_sub(surge) != replicas {
                    // The engine resizes the revision mid-restart: its size
                    // wins and the restart's surge is dropped with it.
                    let new = api
                        .patch(
                            &name,
                            &PatchParams::default(),
                            // Unconditional, as the /scale write below.
                            &Patch::Merge(json!({
                                "metadata": {"annotations": {ANN_RESTART_SURGE: null}},
                                "spec": {"replicas": replicas}})),
                        )
                        .await
                        .map_err(Error::kube(format!("scaling ReplicaSet {name}")))?;
                    self.wrote_rs(&name, new.metadata.resource_version);
                } else if surge == 0 && spec_replicas != replicas {
                    self.scale_replica_set(&name, replicas).await?;
                }
            }
        }
        Ok(())
    }

    async fn restart_pods(
        &self,
        _rollout: &str,
        revision: &e::RevisionHash,
        created_before: e::Millis,
        max_in_flight: u32,
    ) -> Result<(), AdapterError> {
        Ok(self
            .restart_step(revision, created_before, max_in_flight)
            .await?)
    }

    /// An experiment step's pods: its ReplicaSets ([`LABEL_EXPERIMENT`]),
    /// one per template, named after the workload's own hash.
    async fn observe_experiments(
        &self,
        _rollout: &str,
    ) -> Result<Vec<e::ObservedRevision>, AdapterError> {
        let mut out: Vec<e::ObservedRevision> = self
            .owned_experiment_sets()
            .await?
            .iter()
            .filter_map(|rs| {
                let hash = hash_of(rs)?;
                let desired = int(rs.spec.as_ref().and_then(|s| s.replicas));
                let st = rs.status.as_ref();
                Some(e::ObservedRevision {
                    hash: e::RevisionHash::new(hash),
                    number: 0,
                    replicas: desired,
                    ready: int(st.and_then(|s| s.ready_replicas)).min(desired),
                    available: int(st.and_then(|s| s.available_replicas)).min(desired),
                    oldest_pod_created: None,
                })
            })
            .collect();
        out.sort_by(|a, b| a.hash.cmp(&b.hash));
        Ok(out)
    }

    /// Creates or scales the experiment workload's ReplicaSet; at 0 it is
    /// deleted (as Argo's experiment controller leaves nothing running,
    /// and a spent experiment is no revision for the history limit).
    async fn scale_experiment(
        &self,
        _rollout: &str,
        workload: &e::RevisionHash,
        template: &Workload,
        replicas: u32,
    ) -> Result<(), AdapterError> {
        let name = self.rs_name(workload);
        let existing = self.replica_set(&name).await?;
        if replicas == 0 {
            self.delete_experiment_service(workload).await?;
        }
        match existing {
            None if replicas == 0 => {}
            None => {
                let rs = self.new_replica_set(workload, template, replicas, 0, true)?;
                self.create_replica_set(&name, &rs).await?;
            }
            Some(rs) if !self.owned_by_rollout(&rs) || !is_experiment(&rs) => {
                return Err(Error::Invalid(format!(
                    "ReplicaSet {name} exists but is not an experiment of this rollout"
                ))
                .into());
            }
            Some(rs) if replicas == 0 => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: rs.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                self.replica_sets()
                    .delete(&name, &dp)
                    .await
                    .map_err(Error::kube(format!("deleting ReplicaSet {name}")))?;
                if let Some(c) = &self.rs_cache {
                    c.deleted(&self.uid(), &name);
                }
            }
            Some(rs) => {
                if int(rs.spec.as_ref().and_then(|s| s.replicas)) != replicas {
                    self.scale_replica_set(&name, replicas).await?;
                }
            }
        }
        Ok(())
    }
}

impl RolloutAdapters<'_> {
    /// The routing objects with the experiment Services the stored status
    /// knows of (so an experiment's destinations go when it is over).
    fn routing_now(&self) -> Result<Routing, Error> {
        let mut routing = self.routing.clone();
        routing.experiment_services = self
            .stored()?
            .status
            .experiments
            .iter()
            .flat_map(|x| &x.workloads)
            .map(|w| experiment_service(&routing.rollout, &w.hash))
            .collect();
        Ok(routing)
    }

    /// Creates the Service of a weighted experiment template (Argo's
    /// experiment Service) unless it exists: it selects the template's pods
    /// by their own hash and has the canary Service's ports (without one,
    /// with DestinationRule subsets: the template's container ports, as
    /// Argo's experiment Services), so a route weight can name it as it
    /// names the canary. Owned by the Rollout and labelled
    /// [`LABEL_EXPERIMENT`]; deleted with the template's pods.
    async fn ensure_experiment_service(&self, name: &str, route: &e::Route) -> Result<(), Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns());
        if api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading Service {name}")))?
            .is_some()
        {
            return Ok(());
        }
        let obj = self.object();
        let Some(hash) = route
            .weights
            .iter()
            .map(|w| &w.revision)
            .find(|h| experiment_service(obj.name(), h) == name)
        else {
            return Ok(());
        };
        let ports = match self.routing.canary_service.as_deref() {
            Some(canary) => serde_json::to_value(
                self.service(canary)
                    .await?
                    .spec
                    .and_then(|s| s.ports)
                    .unwrap_or_default(),
            )
            .unwrap_or(json!([])),
            None => self.container_ports(hash).await?,
        };
        let mut selector = obj
            .spec
            .pointer("/selector/matchLabels")
            .cloned()
            .unwrap_or(json!({}));
        selector[LABEL_HASH] = json!(hash.0);
        let owner = obj
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Invalid(format!("rollout {} has no uid yet", obj.name())))?;
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": obj.namespace(),
                         "labels": {LABEL_EXPERIMENT: "true", LABEL_ROLLOUT: obj.name()},
                         "ownerReferences": [owner]},
            "spec": {"selector": selector, "ports": ports},
        }))
        .map_err(|e| Error::Invalid(format!("experiment Service {name}: {e}")))?;
        match api.create(&PostParams::default(), &svc).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(err) => Err(Error::kube(format!("creating Service {name}"))(err)),
        }
    }

    /// The container ports of experiment workload `hash`'s pods as Service
    /// ports (each port to itself, named as the container names it).
    async fn container_ports(&self, hash: &e::RevisionHash) -> Result<Value, Error> {
        let name = self.rs_name(hash);
        let rs = self.replica_set(&name).await?.ok_or_else(|| {
            Error::Invalid(format!("experiment ReplicaSet {name} is not there yet"))
        })?;
        let ports: Vec<Value> = rs
            .spec
            .and_then(|s| s.template)
            .and_then(|t| t.spec)
            .map(|p| p.containers)
            .unwrap_or_default()
            .iter()
            .flat_map(|c| c.ports.clone().unwrap_or_default())
            .enumerate()
            .map(|(i, p)| {
                json!({"name": p.name.unwrap_or_else(|| format!("port-{i}")),
                       "port": p.container_port, "targetPort": p.container_port,
                       "protocol": p.protocol.unwrap_or_else(|| "TCP".into())})
            })
            .collect();
        if ports.is_empty() {
            return Err(Error::Invalid(format!(
                "experiment ReplicaSet {name}: no container port to give its Service"
            )));
        }
        Ok(json!(ports))
    }

    /// Deletes a weighted experiment template's Service, if this Rollout's.
    async fn delete_experiment_service(&self, workload: &e::RevisionHash) -> Result<(), Error> {
        let obj = self.object();
        let name = experiment_service(obj.name(), workload);
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns());
        let Some(svc) = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading Service {name}")))?
        else {
            return Ok(());
        };
        let ours = svc
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(LABEL_EXPERIMENT))
            && svc
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|r| Some(&r.uid) == obj.metadata.uid.as_ref()));
        if !ours {
            return Ok(());
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::kube(format!("deleting Service {name}"))(e)),
        }
    }

    /// ReplicaSet `name` as the server has it now.
    async fn replica_set(&self, name: &str) -> Result<Option<ReplicaSet>, Error> {
        self.replica_sets()
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading ReplicaSet {name}")))
    }

    /// Creates `rs` (named `name`) and records the write for the cache.
    async fn create_replica_set(&self, name: &str, rs: &ReplicaSet) -> Result<(), Error> {
        let new = self
            .replica_sets()
            .create(&PostParams::default(), rs)
            .await
            .map_err(Error::kube(format!("creating ReplicaSet {name}")))?;
        self.wrote_rs(name, new.metadata.resource_version);
        Ok(())
    }

    /// Sets ReplicaSet `name`'s replicas through /scale and records the
    /// write (/scale answers with the ReplicaSet's resourceVersion).
    async fn scale_replica_set(&self, name: &str, replicas: u32) -> Result<(), Error> {
        let scale = self
            .replica_sets()
            .patch_scale(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .map_err(Error::kube(format!("scaling ReplicaSet {name}")))?;
        self.wrote_rs(name, scale.metadata.resource_version);
        Ok(())
    }

    async fn vs_http_now(&self, vs: &VsRef) -> Result<(Api<DynamicObject>, Vec<Value>), Error> {
        self.route_list_now(
            vs,
            &istio_vs(),
            "VirtualService",
            "spec.strategy.canary.trafficRouting.istio",
            "/spec/http",
        )
        .await
    }

    async fn subsets_now(&self, dr: &DrRef) -> Result<(Api<DynamicObject>, Vec<Value>), Error> {
        self.route_list_now(
            &VsRef {
                name: dr.name.clone(),
                namespace: dr.namespace.clone(),
                routes: Vec::new(),
            },
            &istio_dr(),
            "DestinationRule",
            "spec.strategy.canary.trafficRouting.istio.destinationRule",
            "/spec/subsets",
        )
        .await
    }

    async fn rules_now(&self, hr: &VsRef) -> Result<(Api<DynamicObject>, Vec<Value>), Error> {
        self.route_list_now(
            hr,
            &http_route(),
            "HTTPRoute",
            "trafficRouting.plugins.argoproj-labs/gatewayAPI",
            "/spec/rules",
        )
        .await
    }

    /// A routing object's list at `pointer` (a VirtualService's `http`, an
    /// HTTPRoute's `rules`) as the server has it now, with its API; a
    /// missing object is an error naming the field that refers to it.
    async fn route_list_now(
        &self,
        at: &VsRef,
        resource: &ApiResource,
        kind: &str,
        referred_by: &str,
        pointer: &str,
    ) -> Result<(Api<DynamicObject>, Vec<Value>), Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &at.namespace, resource);
        let obj = api.get_opt(&at.name).await.map_err(Error::kube(format!(
            "reading {kind} {}/{}",
            at.namespace, at.name
        )))?;
        let obj = obj.ok_or_else(|| {
            Error::Invalid(format!(
                "{kind} {}/{} ({referred_by}) not found",
                at.namespace, at.name
            ))
        })?;
        let list = obj
            .data
            .pointer(pointer)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok((api, list))
    }

    async fn service(&self, name: &str) -> Result<Service, Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns());
        api.get_opt(name)
            .await
            .map_err(Error::kube(format!("reading Service {name}")))?
            .ok_or_else(|| {
                Error::Invalid(format!("Service {name} (named in spec.strategy) not found"))
            })
    }
}

impl TrafficRouter for RolloutAdapters<'_> {
    async fn set_route(&self, _rollout: &str, route: &e::Route) -> Result<(), AdapterError> {
        let ns = self.ns();
        let routing = self.routing_now()?;
        // A weighted experiment's Services before any weight goes to them.
        for (svc, _) in experiment_weights(&routing.rollout, route) {
            self.ensure_experiment_service(&svc, route).await?;
        }
        // Services first: the canary Service must select the canary before
        // weight is sent to it.
        let services: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        for (role, name) in &self.routing.services {
            let svc = self.service(name).await?;
            let want = route.services.get(role).map(|h| h.0.as_str());
            let have = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.get(LABEL_HASH))
                .map(String::as_str);
            if want != have {
                services
                    .patch(
                        name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(service_apply(name, &ns, want)),
                    )
                    .await
                    .map_err(Error::kube(format!(
                        "setting the selector of Service {name}"
                    )))?;
            }
        }
        // Subsets before weights, as Services: the canary subset must
        // select the canary's pods before weight is sent to it.
        if let Some(dr) = &self.routing.destination_rule {
            let (api, subsets) = self.subsets_now(dr).await?;
            let new = dr_subsets(&subsets, dr, route)?;
            if new != subsets {
                let at = VsRef {
                    name: dr.name.clone(),
                    namespace: dr.namespace.clone(),
                    routes: Vec::new(),
                };
                apply_route_list(
                    &api,
                    &at,
                    "networking.istio.io/v1",
                    "DestinationRule",
                    "subsets",
                    new,
                )
                .await?;
            }
        }
        for vs in &self.routing.virtual_services {
            let (api, http) = self.vs_http_now(vs).await?;
            let new = vs_http(&http, vs, &routing, route)?;
            if new != http {
                apply_route_list(
                    &api,
                    vs,
                    "networking.istio.io/v1",
                    "VirtualService",
                    "http",
                    new,
                )
                .await?;
            }
        }
        for hr in &self.routing.http_routes {
            let (api, rules) = self.rules_now(hr).await?;
            let new = httproute_rules(&rules, hr, &routing, route)?;
            if new != rules {
                apply_route_list(
                    &api,
                    hr,
                    "gateway.networking.k8s.io/v1",
                    "HTTPRoute",
                    "rules",
                    new,
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn route_in_force(
        &self,
        _rollout: &str,
        desired: &e::Route,
    ) -> Result<Option<e::Route>, AdapterError> {
        for (role, name) in &self.routing.services {
            let svc = self.service(name).await?;
            let have = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.get(LABEL_HASH))
                .map(String::as_str);
            if have != desired.services.get(role).map(|h| h.0.as_str()) {
                return Ok(None);
            }
        }
        if let Some(dr) = &self.routing.destination_rule {
            let (_, subsets) = self.subsets_now(dr).await?;
            if dr_subsets(&subsets, dr, desired)? != subsets {
                return Ok(None);
            }
        }
        let routing = self.routing_now()?;
        for vs in &self.routing.virtual_services {
            let (_, http) = self.vs_http_now(vs).await?;
            if vs_http(&http, vs, &routing, desired)? != http {
                return Ok(None);
            }
        }
        for hr in &self.routing.http_routes {
            let (_, rules) = self.rules_now(hr).await?;
            if httproute_rules(&rules, hr, &routing, desired)? != rules {
                return Ok(None);
            }
        }
        Ok(Some(desired.clone()))
    }
}

impl StatusStore for RolloutAdapters<'_> {
    async fn status(&self, _rollout: &str) -> Result<e::RolloutStatus, AdapterError> {
        Ok(self.stored()?.status)
    }

    async fn desired_route(&self, _rollout: &str) -> Result<e::Route, AdapterError> {
        Ok(self.stored()?.route)
    }

    async fn save(
        &self,
        _rollout: &str,
        status: &e::RolloutStatus,
        route: Option<&e::Route>,
    ) -> Result<(), AdapterError> {
        let mut stored = self.stored()?;
        stored.status = status.clone();
        if let Some(r) = route {
            stored.route = r.clone();
        }
        Ok(self.write_stored(&stored, None, None).await?)
    }

    async fn ensure_revision(
        &self,
        _rollout: &str,
        revision: &e::RevisionHash,
        _workload: &Workload,
    ) -> Result<BTreeMap<e::RevisionHash, u64>, AdapterError> {
        let mut stored = self.stored()?;
        if !stored.revisions.contains_key(&revision.0) {
            // Numbers continue after every ReplicaSet's, so a Rollout Argo
            // ran before keeps counting up.
            let mut max = stored.revisions.values().copied().max().unwrap_or(0);
            let owned = self.owned_replica_sets().await?;
            for rs in &owned {
                max = max.max(revision_of(rs));
            }
            // Revisions whose ReplicaSet is gone (revisionHistoryLimit) are
            // forgotten, so the annotation does not grow with every deploy;
            // numbering goes on from the highest ever given.
            stored
                .revisions
                .retain(|h, _| owned.iter().any(|rs| hash_of(rs) == Some(h.as_str())));
            stored.revisions.insert(revision.0.clone(), max + 1);
            self.write_stored(&stored, None, None).await?;
        }
        Ok(stored
            .revisions
            .iter()
            .map(|(h, n)| (e::RevisionHash::new(h.clone()), *n))
            .collect())
    }

    async fn revision_numbers(
        &self,
        _rollout: &str,
    ) -> Result<BTreeMap<e::RevisionHash, u64>, AdapterError> {
        Ok(self
            .stored()?
            .revisions
            .iter()
            .map(|(h, n)| (e::RevisionHash::new(h.clone()), *n))
            .collect())
    }

    async fn overrides(&self, _rollout: &str) -> Result<serin_driver::Overrides, AdapterError> {
        Ok(self.stored()?.overrides)
    }

    async fn set_overrides(
        &self,
        _rollout: &str,
        overrides: &serin_driver::Overrides,
    ) -> Result<(), AdapterError> {
        let mut stored = self.stored()?;
        stored.overrides = overrides.clone();
        Ok(self.write_stored(&stored, None, None).await?)
    }

    async fn workload(
        &self,
        _rollout: &str,
        revision: &e::RevisionHash,
    ) -> Result<Option<Workload>, AdapterError> {
        let name = self.rs_name(revision);
        let Some(rs) = self
            .replica_sets()
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("reading ReplicaSet {name}")))?
        else {
            return Ok(None);
        };
        let spec = rs.spec.unwrap_or_default();
        let mut template = serde_json::to_value(spec.template).unwrap_or(Value::Null);
        if let Some(l) = template
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            l.remove(LABEL_HASH);
        }
        Ok(Some(Workload {
            template,
            min_ready_seconds: int(spec.min_ready_seconds),
        }))
    }

    async fn record_event(
        &self,
        rollout: &str,
        _at: e::Millis,
        event: &e::Event,
    ) -> Result<(), AdapterError> {
        tracing::info!(rollout = %rollout, event = ?event, "event");
        let (warning, reason, note) = match event {
            e::Event::RolloutUpdated { revision } => (
                false,
                "RolloutUpdated",
                format!("Rollout updated to revision {revision}"),
            ),
            e::Event::StepCompleted { step } => (
                false,
                "RolloutStepCompleted",
                format!("Rollout step {} completed", step + 1),
            ),
            e::Event::Paused { reason } => (
                false,
                "RolloutPaused",
                format!("Rollout is paused ({reason:?})"),
            ),
            e::Event::Aborted { message } => (true, "RolloutAborted", message.clone()),
            e::Event::Completed { revision } => (
                false,
                "RolloutCompleted",
                format!("Rollout completed: revision {revision} is stable"),
            ),
            e::Event::AnalysisRunFailed { name } => (
                true,
                "AnalysisRunFailed",
                format!("Analysis run {name} failed"),
            ),
            e::Event::AnalysisRunError { name } => (
                true,
                "AnalysisRunError",
                format!("Analysis run {name} errored"),
            ),
            e::Event::ProgressDeadlineExceeded => (
                true,
                "ProgressDeadlineExceeded",
                "Rollout made no progress within progressDeadlineSeconds".into(),
            ),
            e::Event::Restarted { at } => (
                false,
                "RolloutRestarted",
                format!("Pods created before {} replaced", crate::rfc3339(*at)),
            ),
            // Experiment steps: Argo's event reasons for its Experiment
            // objects (Serin runs the step without one).
            e::Event::ExperimentStarted { name } => (
                false,
                "ExperimentCreated",
                format!("Created Experiment '{name}'"),
            ),
            e::Event::ExperimentCompleted { name, phase } => (
                *phase != e::AnalysisPhase::Successful,
                "ExperimentCompleted",
                format!("Experiment '{name}' ended {phase:?}"),
            ),
        };
        self.event(warning, reason, note).await;
        Ok(())
    }

    async fn set_driver_error(
        &self,
        _rollout: &str,
        error: Option<&str>,
        retry_at: Option<e::Millis>,
    ) -> Result<(), AdapterError> {
        let mut stored = self.stored()?;
        let new = error.map(|m| DriverError {
            message: m.to_string(),
            retry_at,
        });
        let changed = stored.error.as_ref().map(|e| &e.message) != new.as_ref().map(|e| &e.message);
        if changed && let Some(m) = error {
            self.event(true, "ReconcileError", m.to_string()).await;
        }
        if stored.error != new {
            stored.error = new;
            // Best effort on a fresh read: the error often is a conflict.
            if let Ok(Some(fresh)) = self.rollouts().get_opt(self.object().name()).await {
                self.hold(fresh);
            }
            self.write_stored(&stored, None, None).await?;
        }
        Ok(())
    }
}

fn phase_of(s: &str) -> e::AnalysisPhase {
    match s {
        "Running" => e::AnalysisPhase::Running,
        "Successful" => e::AnalysisPhase::Successful,
        "Failed" => e::AnalysisPhase::Failed,
        "Error" => e::AnalysisPhase::Error,
        "Inconclusive" => e::AnalysisPhase::Inconclusive,
        _ => e::AnalysisPhase::Pending,
    }
}

impl AnalysisRuns for RolloutAdapters<'_> {
    async fn phases(
        &self,
        rollout: &str,
    ) -> Result<BTreeMap<String, e::AnalysisPhase>, AdapterError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns(), &analysis_run());
        let list = api
            .list(&ListParams::default().labels(&format!("{LABEL_ROLLOUT}={rollout}")))
            .await
            .map_err(Error::kube("listing AnalysisRuns"))?;
        let ns = self.ns();
        let mut out = BTreeMap::new();
        for r in list.items {
            let Some(name) = r.metadata.name.clone() else {
                continue;
            };
            let mut phase = r
                .data
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .map_or(e::AnalysisPhase::Pending, phase_of);
            // Measured by a controller that is gone (restart, new leader):
            // measured again here from its start, or (no request kept on
            // it) marked Error — never left Running for ever, never passed
            // unmeasured.
            if !phase.is_completed() && !self.runs.running_here(&ns, &name) {
                match crate::analysis::resume(&self.runs, &self.client, &self.object(), &r).await {
                    Ok(Some(now)) => {
                        out.insert(name, now);
                        continue;
                    }
                    Ok(None) => {}
                    // Changed meanwhile (409: finished, or resumed by
                    // another reconcile): its phase stands next time.
                    Err(err) => {
                        tracing::debug!(run = %name, "not resumed: {}", serin_error_chain::error_chain(&err));
                        out.insert(name, phase);
                        continue;
                    }
                }
                // Conditional on the version listed: a run that finished
                // here between the listing and this check has written its
                // final phase meanwhile (409), and that phase stands.
                let patch = json!({"metadata": {"resourceVersion": r.metadata.resource_version},
                    "status": {"phase": "Error",
                    "message": "the controller measuring this run stopped (restart or new leader); retry the rollout to measure again"}});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => phase = e::AnalysisPhase::Error,
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let fresh = api
                            .get(&name)
                            .await
                            .map_err(Error::kube(format!("reading AnalysisRun {name}")))?;
                        phase = fresh
                            .data
                            .pointer("/status/phase")
                            .and_then(Value::as_str)
                            .map_or(e::AnalysisPhase::Pending, phase_of);
                    }
                    Err(err) => {
                        return Err(
                            Error::kube(format!("marking AnalysisRun {name} Error"))(err).into(),
                        );
                    }
                }
            }
            out.insert(name, phase);
        }
        Ok(out)
    }

    async fn start(
        &self,
        _rollout: &str,
        name: &str,
        _kind: e::AnalysisKind,
        templates: &[String],
        args: &[(String, e::ArgValueResolved)],
    ) -> Result<(), AdapterError> {
        let status = self.stored()?.status;
        Ok(crate::analysis::start(
            &self.runs,
            &self.client,
            &self.object(),
            &status,
            name,
            templates,
            args,
        )
        .await?)
    }

    async fn stop(&self, _rollout: &str, name: &str) -> Result<(), AdapterError> {
        self.runs.stop(&self.ns(), name);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.ns(), &analysis_run());
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"terminate": true}})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(Error::kube(format!("stopping AnalysisRun {name}"))(err).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(hash: &str) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": format!("web-{hash}"),
            "labels": {LABEL_HASH: hash}}}))
        .unwrap()
    }

    #[test]
    fn argos_status_seeds_the_stable_revision_and_a_canary_in_flight() {
        let argo = json!({"stableRS": "a1", "currentPodHash": "b2", "currentStepIndex": 2,
            "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}}});
        let mut st = e::RolloutStatus::default();
        assert!(seed_from_argo(&mut st, &argo, &[rs("a1"), rs("b2")]));
        assert_eq!(st.stable_hash, Some(e::RevisionHash::new("a1")));
        assert_eq!(st.current_hash, Some(e::RevisionHash::new("b2")));
        assert_eq!(st.current_step_index, Some(2));
        assert_eq!(st.canary_weight, 20);
        assert_eq!(st.active_hash, None);
    }

    #[test]
    fn hashes_of_replica_sets_the_rollout_does_not_own_are_not_taken() {
        let argo = json!({"stableRS": "a1", "currentPodHash": "gone", "currentStepIndex": 2,
            "blueGreen": {"activeSelector": "a1"}});
        let mut st = e::RolloutStatus::default();
        assert!(seed_from_argo(&mut st, &argo, &[rs("a1")]));
        assert_eq!(st.active_hash, Some(e::RevisionHash::new("a1")));
        assert_eq!(st.current_hash, None);
        assert_eq!(st.current_step_index, None, "no step without its revision");
        let mut untouched = e::RolloutStatus::default();
        assert!(!seed_from_argo(&mut untouched, &argo, &[rs("other")]));
        assert_eq!(untouched, e::RolloutStatus::default());
    }
}
