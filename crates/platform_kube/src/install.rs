//! What `serin controller install` prints for `kubectl apply`: a namespace,
//! a service account with least-privilege RBAC (exactly the verbs the
//! adapters use), a two-replica Deployment with leader election, and a
//! Service for its `/metrics` (port 8090, as Argo's), and Serin's own
//! FlagRollout CRD. Argo Rollouts' CRDs are not included: they come from
//! Argo's release (or are already there when switching from Argo's
//! controller).

use serde_json::{Value, json};

/// The Secret (in the controller's namespace) whose key `token` holds the
/// flag server's admin token, read into `$SERIN_ADMIN_TOKEN`.
pub const FLAGS_TOKEN_SECRET: &str = "serin-flags-admin";

/// The objects to apply, in order (namespace first, Serin's FlagRollout
/// CRD second). With `flag_server`, FlagRollouts write to it, with the
/// admin token of the Secret [`FLAGS_TOKEN_SECRET`].
pub fn install_manifests(namespace: &str, image: &str, flag_server: Option<&str>) -> Vec<Value> {
    let name = "serin-controller";
    let labels = json!({"app.kubernetes.io/name": name});
    let mut args = vec![
        json!("controller"),
        json!("--leader-elect"),
        json!("--lease-namespace"),
        json!(namespace),
        json!("--metrics-addr"),
        json!("0.0.0.0:8090"),
    ];
    if let Some(url) = flag_server {
        args.extend([json!("--flag-server"), json!(url)]);
    }
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        crate::flag_rollout_crd(),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": name, "namespace": namespace}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["argoproj.io"], "resources": ["rollouts"],
             "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["argoproj.io"], "resources": ["rollouts/status"],
             "verbs": ["patch"]},
            // watch: the controller wakes a Rollout when its run finishes.
            // get: a FlagRollout's re-run step checks the run it replaces
            // is its own.
            {"apiGroups": ["argoproj.io"], "resources": ["analysisruns"],
             "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            // The templates an analysis step names.
            {"apiGroups": ["argoproj.io"],
             "resources": ["analysistemplates", "clusteranalysistemplates"],
             "verbs": ["get"]},
            // delete: old revisions beyond revisionHistoryLimit.
            // patch: a restart's surge on the ReplicaSet.
            {"apiGroups": ["apps"], "resources": ["replicasets"],
             "verbs": ["get", "list", "watch", "create", "delete", "patch"]},
            // restartAt: the pods to replace, marked for the ReplicaSet
            // controller (pod-deletion-cost); budgets it must not break.
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
             "verbs": ["list"]},
            // The job metric provider's Jobs.
            {"apiGroups": ["batch"], "resources": ["jobs"],
             "verbs": ["get", "list", "watch", "create", "delete"]},
            {"apiGroups": ["apps"], "resources": ["replicasets/scale"],
             "verbs": ["patch"]},
            // workloadRef: the Deployment lending its template (watched),
            // scaled down as `scaleDown` says.
            {"apiGroups": ["apps"], "resources": ["deployments"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"],
             "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "patch"]},
            {"apiGroups": ["networking.istio.io"],
             "resources": ["virtualservices", "destinationrules"],
             "verbs": ["get", "patch"]},
            {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"],
             "verbs": ["get", "patch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"],
             "verbs": ["create", "patch"]},
            // Deployment history: one ConfigMap per namespace, by name
            // only (a list by metadata.name field selector resumes them
            // all); create cannot be limited by name.
            {"apiGroups": [""], "resources": ["configmaps"],
             "resourceNames": [crate::HISTORY_CONFIGMAP],
             "verbs": ["get", "list", "patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            // Serin's FlagRollouts: watched, their status written.
            {"apiGroups": ["serin.dev"], "resources": ["flagrollouts"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["serin.dev"], "resources": ["flagrollouts/status"],
             "verbs": ["patch"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": namespace},
               "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                          "verbs": ["get", "create", "update"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": namespace},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                    "containers": [{
                        "name": "controller",
                        "image": image,
                        "args": args,
                        "ports": [{"name": "metrics", "containerPort": 8090}],
                        // The token from a Secret, never in the arguments
                        // (`ps`, the pod spec); optional so Rollouts run
                        // without one.
                        "env": [{"name": "POD_NAME", "valueFrom":
                                 {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "SERIN_ADMIN_TOKEN", "valueFrom":
                                 {"secretKeyRef": {"name": FLAGS_TOKEN_SECRET, "key": "token",
                                                   "optional": true}}}],
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"memory": "512Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false,
                                            "readOnlyRootFilesystem": true,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        }}),
        // Argo's controller serves its metrics on 8090 too.
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("{name}-metrics"), "namespace": namespace, "labels": labels},
        "spec": {"selector": labels,
                 "ports": [{"name": "metrics", "port": 8090, "targetPort": "metrics"}]}}),
    ]
}
