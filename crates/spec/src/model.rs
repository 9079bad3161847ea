//! Typed manifest model.
//!
//! The Rollout, AnalysisTemplate and AnalysisRun types follow Argo Rollouts
//! `argoproj.io/v1alpha1` field for field (camelCase on the wire), so Argo
//! manifests load unchanged. Defaults are Argo's own (`utils/defaults` in
//! argo-rollouts; Kubernetes defaults for pod fields). Fields Serin does not
//! act on are kept as opaque JSON so nothing a user wrote is lost.
//!
//! Kubernetes kinds Serin reads alongside (Service, Istio VirtualService,
//! PodDisruptionBudget, Deployment) are modelled only as far as Serin uses them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::values::{DurationString, IntOrPercent, PauseDuration, PortRef, Quantity};

fn is_false(b: &bool) -> bool {
    !*b
}
fn default_true() -> bool {
    true
}
fn default_replicas() -> i32 {
    1
}
fn default_revision_history_limit() -> i32 {
    10
}
fn default_progress_deadline_seconds() -> i32 {
    600
}
fn default_30() -> i32 {
    30
}
fn default_termination_grace() -> i64 {
    30
}
fn default_period_seconds() -> i32 {
    10
}
fn default_one() -> i32 {
    1
}
fn default_failure_threshold() -> i32 {
    3
}
fn default_max_surge() -> IntOrPercent {
    IntOrPercent::Percent(25)
}
fn default_max_unavailable() -> IntOrPercent {
    IntOrPercent::Percent(25)
}

// ---------------------------------------------------------------------------
// Common Kubernetes pieces
// ---------------------------------------------------------------------------

/// Kubernetes `ObjectMeta`, the parts a manifest author writes. Server-set
/// fields are accepted and kept opaque.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name; required for every kind Serin manages (checked by lint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Prefix for a server-generated name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// Namespace; `None` means the default namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-set: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Value>,
    /// Server-set: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<Value>,
    /// Server-set: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Value>,
    /// Server-set: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Value>,
    /// Server-set: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<Value>,
    /// Kept opaque (deprecated upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<Value>,
}

/// Kubernetes `LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Equality requirements.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based selector requirement (`In`, `NotIn`, `Exists`, `DoesNotExist`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// Label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether this selector selects an object carrying `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let eq = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        let exprs = self.match_expressions.iter().all(|e| {
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| e.values.contains(g)),
                "NotIn" => got.is_none_or(|g| !e.values.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        });
        eq && exprs
    }

    /// True when the selector has no requirement at all (selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// Labels and annotations for a pod template (or extra metadata Argo adds to
/// canary / stable / preview / active pods).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateMetadata {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Rarely set on templates; kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Rarely set on templates; kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Kept opaque (some generators emit `creationTimestamp: null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<Value>,
}

/// Kubernetes `PodTemplateSpec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    /// Pod labels and annotations.
    #[serde(default)]
    pub metadata: PodTemplateMetadata,
    /// Pod spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// Kubernetes `PodSpec`: containers are typed; the rest is kept opaque.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Application containers (at least one; checked by lint).
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Init containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// Grace period before SIGKILL (Kubernetes default 30).
    #[serde(default = "default_termination_grace")]
    pub termination_grace_period_seconds: i64,
    /// Pod restart policy (`Always`, `OnFailure`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// Service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_network: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_aliases: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemption_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_gates: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_containers: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_hostname_as_fqdn: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_claims: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_gates: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_users: Option<Value>,
    /// Kept opaque (pod-level resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Value>,
}

impl Default for PodSpec {
    fn default() -> Self {
        // Deserializing an empty object applies every serde default.
        serde_json::from_value(Value::Object(Default::default()))
            .expect("PodSpec from {} cannot fail")
    }
}

/// A container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name (required; checked by lint).
    #[serde(default)]
    pub name: String,
    /// Image reference (required; checked by lint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Value>,
    /// Exposed ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Startup probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Lifecycle hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_devices: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin_once: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_policy: Option<Value>,
    /// Kept opaque (sidecar containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<Value>,
}

/// One environment variable. `valueFrom` is kept opaque.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Reference (secretKeyRef, configMapKeyRef, fieldRef, ...), kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Value>,
}

/// A container port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    /// Port number in the container.
    pub container_port: i32,
    /// IANA service name for the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Host port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    /// Host IP.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// A probe, with Kubernetes defaults for every timing field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// HTTP GET check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Command check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// gRPC health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    /// Seconds after start before the first probe (default 0).
    #[serde(default)]
    pub initial_delay_seconds: i32,
    /// Seconds between probes (default 10).
    #[serde(default = "default_period_seconds")]
    pub period_seconds: i32,
    /// Probe timeout in seconds (default 1).
    #[serde(default = "default_one")]
    pub timeout_seconds: i32,
    /// Consecutive successes to count as success (default 1).
    #[serde(default = "default_one")]
    pub success_threshold: i32,
    /// Consecutive failures to count as failure (default 3).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: i32,
    /// Probe-level grace period override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// HTTP GET probe action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpGetAction {
    /// Path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port number or container port name.
    pub port: PortRef,
    /// Host header / address override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// One HTTP header (name/value), as in probes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// TCP probe action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpSocketAction {
    /// Port number or container port name.
    pub port: PortRef,
    /// Host override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Exec action (probe or hook).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecAction {
    /// Command line; not run in a shell.
    #[serde(default)]
    pub command: Vec<String>,
}

/// gRPC health-check action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpcAction {
    /// Port number.
    pub port: i32,
    /// Service name for the gRPC health protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// Sleep action (preStop hook).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SleepAction {
    /// Seconds to sleep.
    pub seconds: i64,
}

/// Container resource requirements. Quantities are kept as written; see
/// [`Quantity`] for parsing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    /// Requests (`cpu`, `memory`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    /// Limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
}

/// Container lifecycle hooks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    /// Run before the container is sent SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<LifecycleHandler>,
    /// Run right after the container starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<LifecycleHandler>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<Value>,
}

/// A lifecycle hook: exactly one of exec, httpGet, tcpSocket or sleep.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleHandler {
    /// Run a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// Send an HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// Deprecated TCP hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Sleep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepAction>,
}

// ---------------------------------------------------------------------------
// Rollout
// ---------------------------------------------------------------------------

/// An Argo Rollouts `Rollout` (also accepted as `serin.dev/v1alpha1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// `argoproj.io/v1alpha1` or `serin.dev/v1alpha1`.
    pub api_version: String,
    /// `Rollout`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: RolloutSpec,
    /// Status as written (normally absent from manifests); kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Set when this Rollout was converted from an `apps/v1` Deployment with a
    /// RollingUpdate strategy: Serin runs it as a canary without steps, i.e. a
    /// rolling update. Never read from or written to manifests.
    #[serde(skip)]
    pub from_deployment: bool,
}

/// `RolloutSpec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Desired pods (default 1).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Pod selector; must match the template's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Pod template (absent when `workloadRef` is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    /// Reference to a Deployment providing the template (parsed; unsupported by Serin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<ObjectRef>,
    /// Seconds a new pod must be ready to count as available (default 0).
    #[serde(default)]
    pub min_ready_seconds: i32,
    /// Window in which a rollback is fast-tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<RollbackWindowSpec>,
    /// Strategy: exactly one of blueGreen or canary (checked by lint).
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Old ReplicaSets to keep (default 10).
    #[serde(default = "default_revision_history_limit")]
    pub revision_history_limit: i32,
    /// Pause the rollout.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Seconds without progress before the rollout is degraded (default 600).
    #[serde(default = "default_progress_deadline_seconds")]
    pub progress_deadline_seconds: i32,
    /// Abort when the progress deadline is exceeded.
    #[serde(default, skip_serializing_if = "is_false")]
    pub progress_deadline_abort: bool,
    /// Restart all pods at this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    /// Retention of analysis runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisRunStrategy>,
}

/// Reference to another object (`workloadRef`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `never`, `onsuccess` or `progressively`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<String>,
}

/// `rollbackWindow`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackWindowSpec {
    /// Number of revisions within which a rollback skips steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<i32>,
}

/// `spec.analysis`: history limits for analysis runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStrategy {
    /// Successful runs to keep (Argo default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_run_history_limit: Option<i32>,
    /// Unsuccessful runs to keep (Argo default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsuccessful_run_history_limit: Option<i32>,
}

/// `spec.strategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    /// Blue-green strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// Canary strategy (a canary with no steps is a rolling update).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
}

/// `spec.strategy.blueGreen`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Service switched to the new version on promotion (required).
    #[serde(default)]
    pub active_service: String,
    /// Service pointing at the new version before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// Replicas of the preview stack before promotion (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replica_count: Option<i32>,
    /// Promote automatically (default true).
    #[serde(default = "default_true")]
    pub auto_promotion_enabled: bool,
    /// Delay before auto-promotion, in seconds (default 0).
    #[serde(default)]
    pub auto_promotion_seconds: i32,
    /// Max unavailable pods during a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
    /// Delay before scaling down the old stack (default 30).
    #[serde(default = "default_30")]
    pub scale_down_delay_seconds: i32,
    /// Old stacks allowed to run at once before scale-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Analysis before the active service is switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    /// Analysis after the active service is switched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    /// Anti-affinity injection (kept opaque; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<Value>,
    /// Extra metadata for preview pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_metadata: Option<PodTemplateMetadata>,
    /// Extra metadata for active pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_metadata: Option<PodTemplateMetadata>,
    /// Delay before scaling down the preview after an abort (default 30; 0 = never).
    #[serde(default = "default_30")]
    pub abort_scale_down_delay_seconds: i32,
}

/// `spec.strategy.canary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Service selecting only canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    /// Service selecting only stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// Steps; none means a plain rolling update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Traffic routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<RolloutTrafficRouting>,
    /// Max pods above desired (Argo default 25%, rounded up).
    #[serde(default = "default_max_surge")]
    pub max_surge: IntOrPercent,
    /// Max unavailable pods (Argo default 25%, rounded down).
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrPercent,
    /// Background analysis running alongside the steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysisBackground>,
    /// Anti-affinity injection (kept opaque; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anti_affinity: Option<Value>,
    /// Extra metadata for canary pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_metadata: Option<PodTemplateMetadata>,
    /// Extra metadata for stable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_metadata: Option<PodTemplateMetadata>,
    /// Delay before scaling down the old ReplicaSet with traffic routing (Argo default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// Old ReplicaSets allowed to run at once before scale-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i32>,
    /// Delay before scaling down the canary after an abort (default 30; 0 = never).
    #[serde(default = "default_30")]
    pub abort_scale_down_delay_seconds: i32,
    /// Scale the stable down as canary traffic grows.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dynamic_stable_scale: bool,
    /// Ping-pong Services, instead of canaryService / stableService (with a
    /// traffic router).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_pong: Option<PingPongSpec>,
    /// Minimum pods per ReplicaSet with traffic routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pods_per_replica_set: Option<i32>,
}

/// `canary.pingPong`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingPongSpec {
    /// Ping service name.
    #[serde(default)]
    pub ping_service: String,
    /// Pong service name.
    #[serde(default)]
    pub pong_service: String,
}

/// One canary step: exactly one field is set (checked by lint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percentage of traffic (or replicas, without routing) for the canary: 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    /// Pause, for a duration or until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    /// Run an analysis and wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// Scale the canary independently of traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    /// Route requests matching headers to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    /// Run extra pods (baseline / canary) with analyses; pass or abort on
    /// the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<RolloutExperimentStep>,
    /// Copy a share of matching requests to the canary (answers discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
    /// Traffic-router plugin step (kept opaque; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Value>,
}

/// A canary `experiment` step (Argo's `RolloutExperimentStep`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentStep {
    /// How long the experiment runs once its pods are available (seconds or
    /// a duration string); none: until its required analyses end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PauseDuration>,
    /// The pods it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<RolloutExperimentTemplate>,
    /// The analyses it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<RolloutExperimentAnalysis>,
    /// Metrics run in dry-run mode (parsed; unsupported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Extra labels/annotations for the runs (parsed; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<PodTemplateMetadata>,
}

impl RolloutExperimentStep {
    /// Each analysis as a one-template [`RolloutAnalysis`] (for the checks
    /// every analysis gets).
    pub fn analyses(&self) -> Vec<RolloutAnalysis> {
        self.analyses
            .iter()
            .map(|a| RolloutAnalysis {
                templates: vec![RolloutAnalysisTemplate {
                    template_name: a.template_name.clone(),
                    cluster_scope: a.cluster_scope,
                }],
                args: a.args.clone(),
                ..RolloutAnalysis::default()
            })
            .collect()
    }
}

/// One template of an experiment step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentTemplate {
    /// Template name (unique in the step).
    #[serde(default)]
    pub name: String,
    /// `stable` or `canary`: whose pod template it runs.
    #[serde(default)]
    pub spec_ref: String,
    /// Pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Share of traffic for these pods (traffic routing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Selector of the experiment's ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Extra labels and annotations for its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<PodTemplateMetadata>,
    /// A Service for these pods (parsed; see `weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Value>,
}

/// One analysis of an experiment step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExperimentAnalysis {
    /// Analysis name (unique in the step).
    #[serde(default)]
    pub name: String,
    /// The AnalysisTemplate.
    #[serde(default)]
    pub template_name: String,
    /// Look up a ClusterAnalysisTemplate instead.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster_scope: bool,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// The experiment does not complete before this analysis does.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required_for_completion: bool,
}

/// Argo's standalone `Experiment` (`argoproj.io/v1alpha1`): pods of one or
/// more pod templates side by side, with analyses, for a duration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Experiment {
    /// `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// `Experiment`.
    pub kind: String,
    /// Metadata (`name` or `generateName`).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: ExperimentSpec,
    /// Server-written status (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

impl Experiment {
    /// The name Serin runs it under: `metadata.name`, or for a
    /// `generateName` a suffix derived from the spec (stable across
    /// restarts, unlike the API server's random one).
    pub fn run_name(&self) -> Option<String> {
        if let Some(n) = &self.metadata.name {
            return Some(n.clone());
        }
        let prefix = self.metadata.generate_name.as_ref()?;
        let text = serde_json::to_string(&self.spec).unwrap_or_default();
        // FNV-1a: stable across builds and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|i| {
                let n = usize::try_from((h >> (i * 8)) & 0xff).unwrap_or(0);
                char::from(ALPHABET[n % ALPHABET.len()])
            })
            .collect();
        Some(format!("{prefix}{suffix}"))
    }
}

/// The `spec` of an [`Experiment`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The pods it runs.
    #[serde(default)]
    pub templates: Vec<ExperimentTemplateSpec>,
    /// How long it runs once its pods are available (seconds or a duration
    /// string); none: until its required analyses end, or terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PauseDuration>,
    /// Seconds a template's pods may make no progress (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// The analyses it runs once its pods are available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<RolloutExperimentAnalysis>,
    /// End the experiment now.
    #[serde(default, skip_serializing_if = "is_false")]
    pub terminate: bool,
    /// Seconds its pods stay after it ends (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i32>,
    /// Metrics of its analyses run in dry-run mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements its analyses keep per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Extra labels/annotations for its runs (parsed; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<PodTemplateMetadata>,
}

/// One template of an [`Experiment`] (Argo's `TemplateSpec`): a full pod
/// template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentTemplateSpec {
    /// Template name (unique in the experiment).
    #[serde(default)]
    pub name: String,
    /// Pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Seconds a pod must be ready before it counts as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    /// Selector of its ReplicaSet (must match the template's labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    /// A Service for these pods (parsed; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Value>,
}

/// A pause step. No duration means "until promoted".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutPause {
    /// Seconds (int) or a Go duration string (`"300s"`, `"1h30m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PauseDuration>,
}

/// `setCanaryScale`: one of weight, replicas or matchTrafficWeight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    /// Percent of `spec.replicas` for the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Absolute canary replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Go back to scaling with the traffic weight.
    #[serde(default, skip_serializing_if = "is_false")]
    pub match_traffic_weight: bool,
}

/// `setHeaderRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetHeaderRoute {
    /// Managed route name (must be in `trafficRouting.managedRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Header matches; none removes the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<HeaderRoutingMatch>,
}

/// `setMirrorRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SetMirrorRoute {
    /// Managed route name (must be in `trafficRouting.managedRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions, any of which selects a request; none removes the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<RouteMatch>,
    /// Percent of matching requests copied (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<i32>,
}

/// One mirror condition (Argo's `RouteMatch`): every part set must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteMatch {
    /// The request method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatch>,
    /// Request headers by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}

/// One header match of a header route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    /// Request header name.
    pub header_name: String,
    /// How to match its value.
    pub header_value: StringMatch,
}

/// String match: exactly one of exact, prefix or regex.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StringMatch {
    /// Exact match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Prefix match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Regular-expression match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// `RolloutAnalysis`: an analysis run made from one or more templates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    /// Templates merged into one run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<RolloutAnalysisTemplate>,
    /// Arguments passed to the templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// Metrics run in dry-run mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Measurement retention per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Extra labels/annotations for the runs (parsed; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<PodTemplateMetadata>,
}

/// Background analysis: a [`RolloutAnalysis`] plus the step it starts at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisBackground {
    /// Templates merged into one run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<RolloutAnalysisTemplate>,
    /// Arguments passed to the templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisRunArgument>,
    /// Metrics run in dry-run mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Measurement retention per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Extra labels/annotations for the runs (parsed; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<PodTemplateMetadata>,
    /// Step index at which the background analysis starts (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i32>,
}

impl RolloutAnalysisBackground {
    /// The analysis part, without `startingStep`.
    pub fn analysis(&self) -> RolloutAnalysis {
        RolloutAnalysis {
            templates: self.templates.clone(),
            args: self.args.clone(),
            dry_run: self.dry_run.clone(),
            measurement_retention: self.measurement_retention.clone(),
            analysis_run_metadata: self.analysis_run_metadata.clone(),
        }
    }
}

/// Reference to an (cluster) analysis template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisTemplate {
    /// Template name.
    #[serde(default)]
    pub template_name: String,
    /// Look up a ClusterAnalysisTemplate instead.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cluster_scope: bool,
}

/// An argument passed from a Rollout to an analysis run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunArgument {
    /// Argument name.
    pub name: String,
    /// Literal value (one of value / valueFrom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value taken from the rollout (one of value / valueFrom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ArgumentValueFrom>,
}

/// Where a run argument's value comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgumentValueFrom {
    /// Pod template hash of the stable or latest ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
    /// A field of the Rollout, e.g. `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// Which ReplicaSet's pod-template hash to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodTemplateHashValue {
    /// The stable ReplicaSet.
    Stable,
    /// The latest (canary / preview) ReplicaSet.
    Latest,
}

/// A field path reference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// Path of the field.
    pub field_path: String,
}

/// Metric to run in dry-run mode (its failure does not fail the run).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Metric name or regex.
    pub metric_name: String,
}

/// How many measurements to keep for a metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// Metric name or regex.
    pub metric_name: String,
    /// Measurements to keep.
    pub limit: i32,
}

/// `canary.trafficRouting`. Istio is typed; the other routers are kept as
/// written and [`RolloutTrafficRouting::router_objects`] reads the names of
/// the objects they edit, which Serin's proxy serves as listeners.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTrafficRouting {
    /// Istio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    /// NGINX ingress (`stableIngress(es)`, `additionalIngressAnnotations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<Value>,
    /// AWS ALB (`ingress(es)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alb: Option<Value>,
    /// SMI TrafficSplit (`rootService`, `trafficSplitName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smi: Option<Value>,
    /// Ambassador (`mappings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<Value>,
    /// AWS App Mesh (`virtualService.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_mesh: Option<Value>,
    /// Traefik (`weightedTraefikServiceName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<Value>,
    /// Apache APISIX (`route.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apisix: Option<Value>,
    /// Traffic-router plugins, by name (only `argoproj-labs/gatewayAPI` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Value>,
    /// Routes Argo manages (header / mirror routes), in precedence order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_routes: Vec<ManagedRoute>,
    /// Maximum traffic weight (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_traffic_weight: Option<i32>,
}

/// The Gateway API traffic-router plugin's name under `trafficRouting.plugins`.
pub const GATEWAY_API_PLUGIN: &str = "argoproj-labs/gatewayAPI";

/// One routing object a traffic router edits in Kubernetes (a VirtualService,
/// an Ingress, a TrafficSplit, an HTTPRoute, ...). Locally each becomes a
/// listener of Serin's proxy that applies the rollout's weights and header
/// routes, so every router behaves the same on one machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterObject {
    /// Router field: `istio`, `nginx`, `alb`, `smi`, `ambassador`,
    /// `appMesh`, `traefik`, `apisix` or `plugins`.
    pub router: &'static str,
    /// Name of the object, which names the listener.
    pub name: String,
    /// Path of the field naming it, relative to `trafficRouting` (empty when
    /// the name is Argo's default, e.g. SMI's TrafficSplit named after the
    /// Rollout).
    pub path: String,
    /// Header routes the object itself declares (nginx's
    /// `canary-by-header` annotations): (header, exact value or `None` for
    /// Argo's `always`).
    pub canary_headers: Vec<(String, Option<String>)>,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn strs_at(v: &Value, key: &str) -> Vec<(usize, String)> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    x.as_str()
                        .or_else(|| x.get("name").and_then(Value::as_str))
                        .filter(|s| !s.is_empty())
                        .map(|s| (i, s.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl RolloutTrafficRouting {
    /// Configured routers Serin cannot map onto its proxy: plugins other
    /// than the Gateway API one, by their path under `trafficRouting`.
    pub fn unsupported_providers(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(Value::Object(plugins)) = &self.plugins {
            for name in plugins.keys() {
                if name != GATEWAY_API_PLUGIN {
                    v.push(crate::yaml::join_key("plugins", name));
                }
            }
        } else if self.plugins.is_some() {
            v.push("plugins".to_string());
        }
        v
    }

    /// Every routing object the configured routers edit, in field order;
    /// `rollout` is the Rollout's name (SMI's default TrafficSplit name).
    /// A router whose required name is missing contributes nothing (lint
    /// reports it).
    pub fn router_objects(&self, rollout: &str) -> Vec<RouterObject> {
        let mut out = Vec::new();
        let mut push = |router: &'static str, name: &str, path: String| {
            out.push(RouterObject {
                router,
                name: name.to_string(),
                path,
                canary_headers: Vec::new(),
            });
        };
        if let Some(i) = &self.istio {
            for (suffix, vs) in i.all_virtual_services() {
                if !vs.name.is_empty() {
                    // `name` may be `name.namespace`.
                    let n = vs.name.split('.').next().unwrap_or("");
                    push("istio", n, format!("istio.{suffix}.name"));
                }
            }
        }
        if let Some(n) = &self.nginx {
            if let Some(s) = str_at(n, "stableIngress") {
                push("nginx", s, "nginx.stableIngress".into());
            }
            for (i, s) in strs_at(n, "stableIngresses") {
                push("nginx", &s, format!("nginx.stableIngresses[{i}]"));
            }
            for (i, s) in strs_at(n, "additionalStableIngresses") {
                push("nginx", &s, format!("nginx.additionalStableIngresses[{i}]"));
            }
        }
        if let Some(a) = &self.alb {
            if let Some(s) = str_at(a, "ingress") {
                push("alb", s, "alb.ingress".into());
            }
            for (i, s) in strs_at(a, "ingresses") {
                push("alb", &s, format!("alb.ingresses[{i}]"));
            }
        }
        if let Some(smi) = &self.smi {
            // Clients call the root Service; the TrafficSplit (named after
            // the Rollout unless set) splits what reaches it.
            match (str_at(smi, "rootService"), str_at(smi, "trafficSplitName")) {
                (Some(root), _) => push("smi", root, "smi.rootService".into()),
                (None, Some(ts)) => push("smi", ts, "smi.trafficSplitName".into()),
                (None, None) => push("smi", rollout, String::new()),
            }
        }
        if let Some(a) = &self.ambassador {
            for (i, s) in strs_at(a, "mappings") {
                push("ambassador", &s, format!("ambassador.mappings[{i}]"));
            }
        }
        if let Some(a) = &self.app_mesh
            && let Some(s) = a.get("virtualService").and_then(|v| str_at(v, "name"))
        {
            push("appMesh", s, "appMesh.virtualService.name".into());
        }
        if let Some(t) = &self.traefik
            && let Some(s) = str_at(t, "weightedTraefikServiceName")
        {
            push("traefik", s, "traefik.weightedTraefikServiceName".into());
        }
        if let Some(a) = &self.apisix
            && let Some(s) = a.get("route").and_then(|r| str_at(r, "name"))
        {
            push("apisix", s, "apisix.route.name".into());
        }
        if let Some(g) = self
            .plugins
            .as_ref()
            .and_then(|p| p.get(GATEWAY_API_PLUGIN))
        {
            let base = crate::yaml::join_key("plugins", GATEWAY_API_PLUGIN);
            if let Some(s) = str_at(g, "httpRoute") {
                push("plugins", s, format!("{base}.httpRoute"));
            }
            for (i, s) in strs_at(g, "httpRoutes") {
                push("plugins", &s, format!("{base}.httpRoutes[{i}].name"));
            }
        }
        // nginx's canary-by-header annotations route matching requests to the
        // canary on every nginx ingress.
        if let Some(ann) = self
            .nginx
            .as_ref()
            .and_then(|n| n.get("additionalIngressAnnotations"))
        {
            let header = ann.get("canary-by-header").and_then(Value::as_str);
            let value = ann.get("canary-by-header-value").and_then(Value::as_str);
            if let Some(h) = header.filter(|h| !h.is_empty()) {
                for o in out.iter_mut().filter(|o| o.router == "nginx") {
                    o.canary_headers
                        .push((h.to_string(), value.map(str::to_string)));
                }
            }
        }
        out
    }
}

/// A managed route name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManagedRoute {
    /// Route name.
    pub name: String,
}

/// `trafficRouting.istio`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioTrafficRouting {
    /// One VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<IstioVirtualServiceRef>,
    /// Several VirtualServices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_services: Vec<IstioVirtualServiceRef>,
    /// Subset-level splitting via a DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<IstioDestinationRule>,
}

impl IstioTrafficRouting {
    /// Every VirtualService reference, single and list form, with its wire path suffix.
    pub fn all_virtual_services(&self) -> Vec<(String, &IstioVirtualServiceRef)> {
        let mut v = Vec::new();
        if let Some(vs) = &self.virtual_service {
            v.push(("virtualService".to_string(), vs));
        }
        for (i, vs) in self.virtual_services.iter().enumerate() {
            v.push((format!("virtualServices[{i}]"), vs));
        }
        v
    }
}

/// Reference from a Rollout to an Istio VirtualService and the routes to edit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioVirtualServiceRef {
    /// VirtualService name (may be `name.namespace`).
    #[serde(default)]
    pub name: String,
    /// HTTP route names; if omitted the VirtualService must have exactly one HTTP route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// TLS routes (kept opaque; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_routes: Option<Value>,
    /// TCP routes (kept opaque; unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_routes: Option<Value>,
}

/// `istio.destinationRule`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioDestinationRule {
    /// DestinationRule name.
    #[serde(default)]
    pub name: String,
    /// Canary subset name.
    #[serde(default)]
    pub canary_subset_name: String,
    /// Stable subset name.
    #[serde(default)]
    pub stable_subset_name: String,
}

// ---------------------------------------------------------------------------
// Analysis
// ---------------------------------------------------------------------------

/// `AnalysisTemplate` or `ClusterAnalysisTemplate` (same shape).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplate {
    /// `argoproj.io/v1alpha1` or `serin.dev/v1alpha1`.
    pub api_version: String,
    /// `AnalysisTemplate` or `ClusterAnalysisTemplate`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: AnalysisTemplateSpec,
}

/// `AnalysisTemplateSpec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// Metrics measured by a run.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Template arguments; one without value must be supplied by the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Dry-run metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// Measurement retention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
}

/// A template argument.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    /// Name, used as `{{args.NAME}}`.
    pub name: String,
    /// Default value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value from a secret or field (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Value>,
}

/// One metric of an analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Metric name.
    pub name: String,
    /// Time between measurements (Go duration); omitted = one measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationString>,
    /// Delay before the first measurement (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<DurationString>,
    /// Number of measurements (int, or a string that may be an `{{args.x}}` template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<IntOrString>,
    /// Expression deciding success (`result` is the measurement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// Expression deciding failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Consecutive errors tolerated (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Consecutive successes that end the metric early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_success_limit: Option<IntOrString>,
    /// Metric-level dry run (Serin extension; Argo sets this on the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Metric-level measurement retention (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement_retention: Option<Value>,
    /// Where the measurement comes from.
    #[serde(default)]
    pub provider: MetricProvider,
}

/// An int, or a string (which may be a template such as `{{args.count}}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// Integer.
    Int(i64),
    /// String.
    String(String),
}

/// Metric provider: exactly one field is set (checked by lint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// Prometheus query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// HTTP request + JSONPath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// A Kubernetes Job whose success is the measurement (spec kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Value>,
    /// Serin's built-in metrics from its own proxy (kept opaque for now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<Value>,
    /// Kayenta (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kayenta: Option<Value>,
    /// Wavefront (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wavefront: Option<Value>,
    /// New Relic (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_relic: Option<Value>,
    /// Datadog (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<Value>,
    /// CloudWatch (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch: Option<Value>,
    /// Graphite (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphite: Option<Value>,
    /// InfluxDB (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<Value>,
    /// SkyWalking (unsupported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sky_walking: Option<Value>,
    /// Metric plugins, by name: Serin runs only its own judge over
    /// Prometheus, [`SERIN_JUDGE_PLUGIN`] (checked by `serin-analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Value>,
}

/// The metric plugin name of Serin's sequential judge over Prometheus
/// (`provider.plugin.serin.dev/judge`, see docs/judge.md).
pub const SERIN_JUDGE_PLUGIN: &str = "serin.dev/judge";

impl MetricProvider {
    /// Names of every provider that is set.
    pub fn set_providers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (name, set) in [
            ("prometheus", self.prometheus.is_some()),
            ("web", self.web.is_some()),
            ("job", self.job.is_some()),
            ("builtin", self.builtin.is_some()),
            ("kayenta", self.kayenta.is_some()),
            ("wavefront", self.wavefront.is_some()),
            ("newRelic", self.new_relic.is_some()),
            ("datadog", self.datadog.is_some()),
            ("cloudWatch", self.cloud_watch.is_some()),
            ("graphite", self.graphite.is_some()),
            ("influxdb", self.influxdb.is_some()),
            ("skyWalking", self.sky_walking.is_some()),
            ("plugin", self.plugin.is_some()),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// Prometheus provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// PromQL query (may contain `{{args.x}}`).
    #[serde(default)]
    pub query: String,
    /// Query timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebMetricHeader>,
    /// Range query instead of instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<PrometheusRangeQueryArgs>,
    /// SigV4 / OAuth2 authentication (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Value>,
}

/// Range query arguments (PromQL expressions / durations, as strings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrometheusRangeQueryArgs {
    /// Range start, e.g. `now() - 5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Range end, e.g. `now()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Step, e.g. `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Web provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// URL (may contain `{{args.x}}`).
    #[serde(default)]
    pub url: String,
    /// `GET` (default), `POST` or `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<WebMetricHeader>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// JSON body (alternative to body; kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_body: Option<Value>,
    /// Request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// JSONPath selecting the result, e.g. `{$.data.ok}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Skip TLS verification.
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
    /// OAuth2 authentication (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Value>,
}

/// A header for the web / prometheus providers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebMetricHeader {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
}

/// `AnalysisRun`: spec and status mostly kept opaque.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRun {
    /// API version.
    pub api_version: String,
    /// `AnalysisRun`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec, kept opaque.
    #[serde(default)]
    pub spec: Value,
    /// Status, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

// ---------------------------------------------------------------------------
// Kubernetes kinds Serin reads
// ---------------------------------------------------------------------------

/// `v1 Service`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `v1`.
    pub api_version: String,
    /// `Service`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// Service spec: selector and ports typed, the rest opaque.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Pod selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Kept opaque.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<Value>,
    /// Kept opaque.
    #[serde(
        default,
        rename = "clusterIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_ips: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<Value>,
    /// Kept opaque.
    #[serde(
        default,
        rename = "externalIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_ips: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<Value>,
    /// Kept opaque.
    #[serde(
        default,
        rename = "loadBalancerIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub load_balancer_ip: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_source_ranges: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_node_port: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_families: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_load_balancer_node_ports: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<Value>,
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Service port.
    pub port: i32,
    /// Pod port: number or container port name (default: same as `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<PortRef>,
    /// `TCP` (default), `UDP`, `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Node port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// Istio `VirtualService` (networking.istio.io), the parts Serin edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    /// `networking.istio.io/v1alpha3`, `v1beta1` or `v1`.
    pub api_version: String,
    /// `VirtualService`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: VirtualServiceSpec,
}

/// VirtualService spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    /// Hosts this VirtualService applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Gateways (kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// HTTP routes, evaluated in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// TLS routes (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Value>,
    /// TCP routes (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_to: Option<Value>,
}

/// One HTTP route of a VirtualService.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Route name; Argo's `routes:` refer to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Match conditions (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<Value>,
}

/// A match condition; only headers are typed, the rest kept opaque.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Match name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_headers: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateways: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<Value>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<Value>,
}

/// A weighted destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpRouteDestination {
    /// Destination.
    pub destination: Destination,
    /// Weight (percent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
}

/// Destination: a Service host, optional subset and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Destination {
    /// Service host (short name or FQDN).
    pub host: String,
    /// DestinationRule subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Port selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// Port selector.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PortSelector {
    /// Port number.
    pub number: u32,
}

/// `policy/v1 PodDisruptionBudget`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudget {
    /// `policy/v1`.
    pub api_version: String,
    /// `PodDisruptionBudget`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PodDisruptionBudgetSpec,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// PDB spec: one of minAvailable / maxUnavailable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Pods that must stay available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrPercent>,
    /// Pods that may be unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
    /// Pods covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_pod_eviction_policy: Option<Value>,
}

/// `apps/v1 Deployment`, the parts Serin converts into a Rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: DeploymentSpec,
    /// Kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

/// Deployment spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Desired pods (default 1).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// Pod selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    /// Strategy (default RollingUpdate 25% / 25%).
    #[serde(default)]
    pub strategy: DeploymentStrategy,
    /// Seconds ready before available.
    #[serde(default)]
    pub min_ready_seconds: i32,
    /// Old ReplicaSets to keep (default 10).
    #[serde(default = "default_revision_history_limit")]
    pub revision_history_limit: i32,
    /// Progress deadline (default 600).
    #[serde(default = "default_progress_deadline_seconds")]
    pub progress_deadline_seconds: i32,
    /// Paused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
}

/// Deployment strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Rolling update parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
}

/// Rolling update parameters (Kubernetes defaults 25% / 25%).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateDeployment {
    /// Max pods above desired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrPercent>,
    /// Max unavailable pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
}

impl Deployment {
    /// Convert into the Rollout Serin runs: a canary strategy with no steps
    /// (a rolling update) carrying the Deployment's maxSurge / maxUnavailable
    /// (Kubernetes defaults 25% each). Marked `from_deployment`.
    pub fn to_rollout(&self) -> Rollout {
        let ru = self
            .spec
            .strategy
            .rolling_update
            .clone()
            .unwrap_or_default();
        let canary = CanaryStrategy {
            canary_service: None,
            stable_service: None,
            steps: Vec::new(),
            traffic_routing: None,
            max_surge: ru.max_surge.unwrap_or(IntOrPercent::Percent(25)),
            max_unavailable: ru.max_unavailable.unwrap_or(IntOrPercent::Percent(25)),
            analysis: None,
            anti_affinity: None,
            canary_metadata: None,
            stable_metadata: None,
            scale_down_delay_seconds: None,
            scale_down_delay_revision_limit: None,
            abort_scale_down_delay_seconds: 30,
            dynamic_stable_scale: false,
            ping_pong: None,
            min_pods_per_replica_set: None,
        };
        Rollout {
            api_version: "serin.dev/v1alpha1".into(),
            kind: "Rollout".into(),
            metadata: self.metadata.clone(),
            spec: RolloutSpec {
                replicas: self.spec.replicas,
                selector: self.spec.selector.clone(),
                template: self.spec.template.clone(),
                workload_ref: None,
                min_ready_seconds: self.spec.min_ready_seconds,
                rollback_window: None,
                strategy: RolloutStrategy {
                    blue_green: None,
                    canary: Some(canary),
                },
                revision_history_limit: self.spec.revision_history_limit,
                paused: self.spec.paused,
                progress_deadline_seconds: self.spec.progress_deadline_seconds,
                progress_deadline_abort: false,
                restart_at: None,
                analysis: None,
            },
            status: None,
            from_deployment: true,
        }
    }
}

// ---------------------------------------------------------------------------
// Serin's own kinds (serin.dev/v1alpha1)
// ---------------------------------------------------------------------------

/// The API version of Serin's own kinds ([`FlagRollout`]).
pub const SERIN_API_VERSION: &str = "serin.dev/v1alpha1";

/// `serin.dev/v1alpha1` `FlagRollout`: a guarded feature-flag rollout, the
/// declarative form of `serin flags rollout`. The control plane raises the
/// flag's percentage step by step, judges each step with the analysis, and
/// sets it back to 0 % when an analysis does not pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagRollout {
    /// `serin.dev/v1alpha1`.
    pub api_version: String,
    /// `FlagRollout`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    pub spec: FlagRolloutSpec,
}

/// The `spec` of a [`FlagRollout`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagRolloutSpec {
    /// The flag key (default: `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// The flag server environment (default: the one `serin.yaml`'s `flags:`
    /// serves, `production` unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Percentages, strictly increasing, each 1..=100 (default
    /// `[5, 10, 25, 50, 100]`, as `serin flags rollout`). Integers wider than
    /// a percentage are accepted here so lint can say what is wrong, located.
    #[serde(default = "default_flag_steps")]
    pub steps: Vec<i64>,
    /// Time at each step, a Go duration (default `5m`). A step's analysis
    /// runs within it; a step lasts at least this long (the last step ends
    /// when its analysis passes).
    #[serde(default = "default_flag_interval")]
    pub interval: DurationString,
    /// The analysis judging each step: templates and args, as a Rollout's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
}

fn default_flag_steps() -> Vec<i64> {
    vec![5, 10, 25, 50, 100]
}

fn default_flag_interval() -> DurationString {
    DurationString("5m".into())
}

impl FlagRollout {
    /// The flag key: `spec.flag`, else `metadata.name`.
    pub fn flag(&self) -> &str {
        self.spec
            .flag
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or("")
    }
}
