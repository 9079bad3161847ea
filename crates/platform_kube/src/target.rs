//! A Rollout object → the driver's target: the spec through the same
//! manifest model and translation as one machine (`serin-spec`,
//! `serin-plan`), so a Rollout means the same thing everywhere; plus what
//! Serin cannot run on a cluster yet, refused with the field path.

use serde_json::{Value, json};
use serin_driver::{Target, Workload};
use serin_engine as e;
use serin_spec::ManifestSet;

use crate::object::RolloutObject;

/// Why a Rollout cannot run; shown as its status message (`InvalidSpec`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// The driver's target for `obj`.
pub fn target_of(obj: &RolloutObject) -> Result<Target, TargetError> {
    let name = obj.name();
    // Only what a manifest author writes: server-set metadata and Serin's
    // own annotations are not part of the spec.
    let doc = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": obj.namespace(),
                      "labels": obj.metadata.labels.clone().unwrap_or_default()},
        "spec": obj.spec,
    });
    let mut set = ManifestSet::new();
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    set.add_source(&format!("rollout {}/{name}", obj.namespace()), &text);
    let errors: Vec<String> = set
        .diagnostics
        .iter()
        .filter(|d| d.severity == serin_spec::Severity::Error)
        .map(|d| {
            if d.path.is_empty() {
                d.message.clone()
            } else {
                format!("{}: {}", d.path, d.message)
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(TargetError(errors.join("; ")));
    }
    let (_, r) = set
        .rollouts()
        .next()
        .ok_or_else(|| TargetError("not a Rollout Serin can read".into()))?;
    let mut spec = serin_plan::to_engine(&set, r).map_err(|err| {
        // "rollout x: serin up will not run this: …" reads wrong on a cluster.
        TargetError(
            err.to_string()
                .replace("serin up will not run this", "not supported"),
        )
    })?;
    unsupported_on_kubernetes(&obj.spec)?;
    // The pod template exactly as stored (the model keeps only the fields it
    // types): it is what the ReplicaSet runs, so it is what the hash names.
    let template = obj.spec.get("template").cloned().unwrap_or(Value::Null);
    spec.template_hash = e::pod_template_hash(&template);
    let min_ready_seconds = obj
        .spec
        .get("minReadySeconds")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    Ok(Target {
        spec,
        workload: Workload {
            template,
            min_ready_seconds,
        },
    })
}

/// Features the local platform runs but this controller does not carry out
/// yet: refused with their path rather than half-done.
fn unsupported_on_kubernetes(spec: &Value) -> Result<(), TargetError> {
    let refuse = |path: &str, why: &str| {
        Err(TargetError(format!(
            "{path}: not supported by serin controller yet ({why})"
        )))
    };
    if spec.get("workloadRef").is_some() {
        // The controller fills the template in first (workload_ref.rs).
        return refuse(
            "spec.workloadRef",
            "its Deployment's template was not read; write spec.template",
        );
    }
    if let Some(tr) = spec.pointer("/strategy/canary/trafficRouting") {
        if let Some(obj) = tr.as_object() {
            for key in obj.keys() {
                let gateway_api_only = key == "plugins"
                    && obj[key]
                        .as_object()
                        .is_some_and(|p| p.keys().all(|k| k == "argoproj-labs/gatewayAPI"));
                if !matches!(key.as_str(), "istio" | "managedRoutes" | "maxTrafficWeight")
                    && !gateway_api_only
                {
                    return refuse(
                        &format!("spec.strategy.canary.trafficRouting.{key}"),
                        "Istio VirtualServices and Gateway API HTTPRoutes are the traffic routers on Kubernetes",
                    );
                }
            }
        }
        let c = spec.pointer("/strategy/canary");
        let named = |k: &str| c.and_then(|c| c.get(k)).and_then(Value::as_str).is_some();
        // A DestinationRule splits by subset: no Services needed (as Argo).
        let subsets = tr.pointer("/istio/destinationRule").is_some();
        if !subsets && (!named("stableService") || !named("canaryService")) {
            return refuse(
                "spec.strategy.canary.trafficRouting",
                "traffic routing needs canaryService and stableService (or an Istio destinationRule)",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_experiment(template: Value) -> RolloutObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "example/web:1"}]}
                },
                "strategy": {"canary": {
                    "canaryService": "web-canary", "stableService": "web-stable",
                    "trafficRouting": {"istio": {"virtualService": {"name": "web"}}},
                    "steps": [
                        {"setWeight": 20},
                        {"experiment": {"duration": "1m", "templates": [template]}}
                    ]}}
            }
        }))
        .expect("a rollout object")
    }

    /// Experiment steps run on a cluster, weighted ones too (through a
    /// Service per template), with DestinationRule subsets as well.
    #[test]
    fn weighted_experiment_steps_run_on_a_cluster() {
        let plain = with_experiment(json!({"name": "canary", "specRef": "canary"}));
        assert!(target_of(&plain).is_ok());
        let mut weighted =
            with_experiment(json!({"name": "canary", "specRef": "canary", "weight": 10}));
        assert!(target_of(&weighted).is_ok());
        weighted.spec["strategy"]["canary"]["trafficRouting"]["istio"]["destinationRule"] = json!(
            {"name": "web", "canarySubsetName": "canary", "stableSubsetName": "stable"});
        assert!(target_of(&weighted).is_ok());
    }
}
