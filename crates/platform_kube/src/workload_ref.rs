//! `spec.workloadRef`: a Rollout that runs a Deployment's pod template
//! (Argo's migration path from Deployments). The controller reads the
//! Deployment each reconcile and fills the Rollout's `template` (and its
//! `selector` when it has none) from it, so everything downstream sees an
//! ordinary Rollout; `scaleDown` then hands the Deployment's pods over to
//! the Rollout as Argo does: `never` (the default) leaves the Deployment
//! alone, `onsuccess` scales it to 0 once the Rollout is Healthy,
//! `progressively` scales it down as the Rollout's current revision
//! becomes available.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use crate::Error;
use crate::object::RolloutObject;
use crate::target::TargetError;

/// How the referenced Deployment is scaled down (`workloadRef.scaleDown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScaleDown {
    Never,
    OnSuccess,
    Progressively,
}

/// A Rollout's `workloadRef`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkloadRef {
    /// The Deployment's name (in the Rollout's namespace).
    pub name: String,
    pub scale_down: ScaleDown,
}

impl WorkloadRef {
    /// The Rollout's `workloadRef` (`None`: it has its own template), or
    /// why it cannot run, with the field path.
    pub fn of(obj: &RolloutObject) -> Result<Option<Self>, TargetError> {
        let Some(w) = obj.spec.get("workloadRef") else {
            return Ok(None);
        };
        let err = |path: &str, why: String| Err(TargetError(format!("{path}: {why}")));
        if obj.spec.get("template").is_some() {
            return err(
                "spec.template",
                "a Rollout with `workloadRef` must not also have a `template`".into(),
            );
        }
        let kind = w.get("kind").and_then(Value::as_str).unwrap_or("");
        let api_version = w
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("apps/v1");
        if kind != "Deployment" || api_version != "apps/v1" {
            return err(
                "spec.workloadRef.kind",
                format!(
                    "{api_version} {kind:?}: Serin takes pod templates from apps/v1 Deployments"
                ),
            );
        }
        let Some(name) = w
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            return err("spec.workloadRef.name", "names no Deployment".into());
        };
        // Argo's CRD documents never/onsuccess/progressively; its Go
        // constants are capitalised, so either spelling is taken.
        let scale_down = match w
            .get("scaleDown")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("" | "never") => ScaleDown::Never,
            Some("onsuccess") => ScaleDown::OnSuccess,
            Some("progressively") => ScaleDown::Progressively,
            Some(other) => {
                return err(
                    "spec.workloadRef.scaleDown",
                    format!("{other:?} must be never, onsuccess or progressively"),
                );
            }
        };
        Ok(Some(Self {
            name: name.to_string(),
            scale_down,
        }))
    }
}

/// A CLI verb that edits the Rollout's own template (`set image`, `undo`)
/// on a Rollout whose template is its Deployment's: an error that says
/// where to edit instead (Argo's `kubectl argo rollouts` would write a
/// template the Rollout must not have).
pub(crate) fn template_edit(obj: &RolloutObject, verb: &str) -> Result<(), Error> {
    match WorkloadRef::of(obj) {
        Ok(Some(w)) => Err(Error::Invalid(format!(
            "rollout {} takes its pod template from Deployment {} (spec.workloadRef): {verb} the Deployment instead (kubectl … deployment/{})",
            obj.name(),
            w.name,
            w.name
        ))),
        _ => Ok(()),
    }
}

/// What a Rollout takes from its Deployment: the pod template and selector.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Borrowed {
    pub template: Value,
    pub selector: Value,
    /// The Deployment's `metadata.generation` (Argo's
    /// `status.workloadObservedGeneration`).
    pub generation: Option<i64>,
}

impl Borrowed {
    /// From the Deployment as read.
    pub fn of(d: &Deployment) -> Result<Self, TargetError> {
        let spec = d.spec.as_ref();
        let mut template = serde_json::to_value(spec.map(|s| &s.template)).unwrap_or(Value::Null);
        // The API server adds `creationTimestamp: null` to a Deployment's
        // template; it is not part of what the pods run.
        if let Some(m) = template.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("creationTimestamp");
        }
        if template.get("spec").is_none() {
            return Err(TargetError(format!(
                "spec.workloadRef.name: Deployment {} has no pod template",
                d.metadata.name.as_deref().unwrap_or("")
            )));
        }
        Ok(Self {
            template,
            selector: serde_json::to_value(spec.map(|s| &s.selector)).unwrap_or(Value::Null),
            generation: d.metadata.generation,
        })
    }

    /// Fills `spec` (a Rollout's) with the template, and the selector when
    /// the Rollout has none of its own.
    pub fn fill(&self, spec: &mut Value) {
        let Some(o) = spec.as_object_mut() else {
            return;
        };
        o.insert("template".into(), self.template.clone());
        if !o.contains_key("selector") {
            o.insert("selector".into(), self.selector.clone());
        }
    }
}

/// The Deployment `w` names in `ns`, or `None` when there is none.
pub(crate) async fn read(
    client: &Client,
    ns: &str,
    w: &WorkloadRef,
) -> Result<Option<Deployment>, Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get_opt(&w.name)
        .await
        .map_err(Error::kube(format!("reading Deployment {ns}/{}", w.name)))
}

/// `obj` with its Deployment's template filled in (`obj` itself when it has
/// no `workloadRef`), and what it borrowed.
pub(crate) async fn resolve(
    client: &Client,
    obj: &RolloutObject,
) -> Result<Result<(RolloutObject, Option<Borrowed>), TargetError>, Error> {
    let w = match WorkloadRef::of(obj) {
        Ok(Some(w)) => w,
        Ok(None) => return Ok(Ok((obj.clone(), None))),
        Err(e) => return Ok(Err(e)),
    };
    let Some(d) = read(client, obj.namespace(), &w).await? else {
        return Ok(Err(TargetError(format!(
            "spec.workloadRef.name: Deployment {}/{} not found",
            obj.namespace(),
            w.name
        ))));
    };
    let borrowed = match Borrowed::of(&d) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = obj.clone();
    borrowed.fill(&mut out.spec);
    if let Some(o) = out.spec.as_object_mut() {
        o.remove("workloadRef");
    }
    Ok(Ok((out, Some(borrowed))))
}

/// The Deployment's replica count `scale_down` wants now, or `None` to
/// leave it as it is. `wanted` is the Rollout's `spec.replicas`,
/// `available` its current revision's available pods.
pub(crate) fn deployment_replicas(
    scale_down: ScaleDown,
    healthy: bool,
    wanted: u32,
    available: u32,
) -> Option<u32> {
    match scale_down {
        ScaleDown::Never => None,
        ScaleDown::OnSuccess => healthy.then_some(0),
        // As Argo: the Deployment gives up one pod for each pod of the
        // Rollout's current revision that is available.
        ScaleDown::Progressively => Some(if healthy {
            0
        } else {
            wanted.saturating_sub(available)
        }),
    }
}

/// Scales Deployment `name` down to `replicas` (the scale subresource); a
/// Deployment already at or below it is left alone (scaleDown never scales
/// up). Returns whether it wrote.
pub(crate) async fn scale(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: u32,
) -> Result<bool, Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let Some(d) = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading Deployment {ns}/{name}")))?
    else {
        return Ok(false);
    };
    let have = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if i64::from(have) <= i64::from(replicas) {
        return Ok(false);
    }
    api.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .map_err(Error::kube(format!("scaling Deployment {ns}/{name}")))?;
    Ok(true)
}

/// Which Rollouts each Deployment lends its template to, as reconciles
/// found them: a Deployment's change wakes exactly those. An entry stays
/// after a Rollout drops its workloadRef (a spare wake-up, nothing more).
#[derive(Debug, Default)]
pub(crate) struct Referrers(Mutex<HashMap<(String, String), BTreeSet<String>>>);

impl Referrers {
    /// Rollout `rollout` in `ns` takes its template from `deployment`.
    pub fn refer(&self, ns: &str, deployment: &str, rollout: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.entry((ns.to_string(), deployment.to_string()))
                .or_default()
                .insert(rollout.to_string());
        }
    }

    /// (namespace, name) of the Rollouts that refer to `d`.
    pub fn of(&self, d: &PartialObjectMeta<Deployment>) -> Vec<(String, String)> {
        let (Some(ns), Some(name)) = (&d.metadata.namespace, &d.metadata.name) else {
            return Vec::new();
        };
        self.0
            .lock()
            .ok()
            .and_then(|m| {
                m.get(&(ns.clone(), name.clone()))
                    .map(|rs| rs.iter().map(|r| (ns.clone(), r.clone())).collect())
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(workload_ref: Value) -> RolloutObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "prod"},
            "spec": {"replicas": 3, "workloadRef": workload_ref,
                     "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}
        }))
        .expect("a rollout object")
    }

    #[test]
    fn a_workload_ref_is_checked_with_its_field_path() {
        let ok = rollout(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                                "name": "web", "scaleDown": "progressively"}));
        assert_eq!(
            WorkloadRef::of(&ok).unwrap(),
            Some(WorkloadRef {
                name: "web".into(),
                scale_down: ScaleDown::Progressively
            })
        );
        let caps = rollout(json!({"kind": "Deployment", "name": "web", "scaleDown": "OnSuccess"}));
        assert_eq!(
            WorkloadRef::of(&caps).unwrap().map(|w| w.scale_down),
            Some(ScaleDown::OnSuccess)
        );
        let sts = rollout(json!({"kind": "StatefulSet", "name": "web"}));
        let err = WorkloadRef::of(&sts).unwrap_err();
        assert!(err.0.starts_with("spec.workloadRef.kind: "), "{err}");
        let bad = rollout(json!({"kind": "Deployment", "name": "web", "scaleDown": "later"}));
        let err = WorkloadRef::of(&bad).unwrap_err();
        assert!(err.0.starts_with("spec.workloadRef.scaleDown: "), "{err}");
        let nameless = rollout(json!({"kind": "Deployment"}));
        let err = WorkloadRef::of(&nameless).unwrap_err();
        assert!(err.0.starts_with("spec.workloadRef.name: "), "{err}");
        let mut both = ok.clone();
        both.spec["template"] = json!({"spec": {"containers": []}});
        let err = WorkloadRef::of(&both).unwrap_err();
        assert!(err.0.starts_with("spec.template: "), "{err}");
    }

    #[test]
    fn the_deployment_is_scaled_down_as_scale_down_says() {
        use ScaleDown::*;
        assert_eq!(deployment_replicas(Never, true, 3, 3), None);
        assert_eq!(deployment_replicas(OnSuccess, false, 3, 2), None);
        assert_eq!(deployment_replicas(OnSuccess, true, 3, 3), Some(0));
        assert_eq!(deployment_replicas(Progressively, false, 3, 0), Some(3));
        assert_eq!(deployment_replicas(Progressively, false, 3, 2), Some(1));
        assert_eq!(deployment_replicas(Progressively, false, 3, 5), Some(0));
        assert_eq!(deployment_replicas(Progressively, true, 3, 3), Some(0));
    }
}
