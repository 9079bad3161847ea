//! The engine's vocabulary: the normalized spec it is given, the status it
//! owns, what the platform observed, and the actions it asks for.
//!
//! Everything here is plain data (serde for storage and the API) with
//! deterministic ordering (`BTreeMap`, `Vec`), so that the same inputs always
//! produce byte-identical outputs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The engine never reads a clock: every
/// call gets `now` from its caller (a real clock, or the simulator's).
pub type Millis = u64;

/// A revision's identity: the hash of its pod template, like Kubernetes'
/// `pod-template-hash` label (see [`crate::pod_template_hash`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RevisionHash(pub String);

impl RevisionHash {
    /// Wraps a hash string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl std::fmt::Display for RevisionHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An integer or a percentage of the replica count (`maxSurge: 25%`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntOrPercent {
    /// An absolute number of replicas.
    Int(u32),
    /// A percentage (0–100 or more for surge) of the desired replicas.
    Percent(u32),
}

impl IntOrPercent {
    /// Resolves against `total`, rounding up (surge) or down (unavailable) as
    /// Kubernetes and Argo Rollouts do.
    pub fn resolve(self, total: u32, round_up: bool) -> u32 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p);
                let v = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(v).unwrap_or(u32::MAX)
            }
        }
    }
}

/// The rollout as the engine needs it: already validated and normalized from
/// an Argo `Rollout`, a `Deployment` or Serin's own manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    /// Rollout name; used to name analysis runs.
    pub name: String,
    /// Desired replica count.
    pub replicas: u32,
    /// Hash of the desired pod template. A change starts a new rollout.
    pub template_hash: RevisionHash,
    /// `spec.paused`: the user paused the rollout.
    pub paused: bool,
    /// `spec.progressDeadlineSeconds` in milliseconds.
    pub progress_deadline: Millis,
    /// `spec.progressDeadlineAbort`: abort (not only mark Degraded) on deadline.
    pub progress_deadline_abort: bool,
    /// `spec.rollbackWindow.revisions`: going back to one of the last N
    /// revisions skips steps and analysis.
    pub rollback_window: Option<u32>,
    /// Extra floor on available replicas from a matching PodDisruptionBudget.
    pub pdb_min_available: Option<IntOrPercent>,
    /// The strategy.
    pub strategy: Strategy,
    /// `spec.restartAt`: every pod created before this time is replaced
    /// (surge first: the replacement must be available before the old pod
    /// goes). A time in the future is a scheduled restart.
    #[serde(default)]
    pub restart_at: Option<Millis>,
}

/// How a new revision replaces the stable one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// Canary with steps; with no steps it is a rolling update (this is also
    /// how a `Deployment` with `RollingUpdate` is run).
    Canary(CanarySpec),
    /// Blue-green with active and preview services.
    BlueGreen(BlueGreenSpec),
}

/// `strategy.canary`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// Steps; empty means a plain rolling update.
    pub steps: Vec<Step>,
    /// `maxSurge` (default 25 %).
    pub max_surge: IntOrPercent,
    /// `maxUnavailable` (default 0 for canary, 25 % for Deployments).
    pub max_unavailable: IntOrPercent,
    /// True when a traffic router (Istio VirtualService, Serin's proxy weights)
    /// splits traffic; false means traffic follows the replica ratio.
    pub traffic_routing: bool,
    /// Background analysis and the step it starts at.
    pub analysis: Option<BackgroundAnalysis>,
    /// `scaleDownDelaySeconds` for the old stable after promotion (traffic
    /// routing only; default 30 s).
    pub scale_down_delay: Millis,
    /// `abortScaleDownDelaySeconds` for the canary after an abort (traffic
    /// routing only; default 30 s).
    pub abort_scale_down_delay: Millis,
    /// `dynamicStableScale`: scale the stable down as traffic leaves it.
    pub dynamic_stable_scale: bool,
}

/// One canary step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Send this percentage of traffic to the canary.
    SetWeight(u32),
    /// Pause; `None` waits for `promote`.
    Pause(Option<Millis>),
    /// Run an analysis and wait for its outcome.
    Analysis(AnalysisSpec),
    /// Decouple canary scale from weight.
    SetCanaryScale(CanaryScale),
    /// Route requests matching headers to the canary (`None` matches removes it).
    SetHeaderRoute(HeaderRoute),
    /// Copy a share of matching requests to the canary and discard its
    /// answers (no matches removes the route).
    SetMirrorRoute(MirrorRoute),
    /// Run extra pods of the stable's and/or the canary's template beside
    /// the rollout's own, with analyses; the step passes when the
    /// experiment is Successful and aborts the rollout when it fails (Argo's
    /// `experiment` step, run by the engine instead of an Experiment object).
    Experiment(ExperimentStep),
    /// Several actions in one Argo step, e.g. `setCanaryScale` with
    /// `setHeaderRoute` (Argo allows one of setWeight, pause, analysis,
    /// experiment with any of setCanaryScale, setHeaderRoute, setMirrorRoute).
    /// Every action takes effect when the step starts; the step completes
    /// once each of them is complete. Never nested.
    Combined(Vec<Step>),
}

impl Step {
    /// The actions of this step: the parts of a [`Step::Combined`], else
    /// the step itself.
    pub fn actions(&self) -> &[Step] {
        match self {
            Step::Combined(parts) => parts,
            one => std::slice::from_ref(one),
        }
    }

    /// The weight this step sets, if it has a `setWeight`.
    pub fn set_weight(&self) -> Option<u32> {
        self.actions().iter().find_map(|a| match a {
            Step::SetWeight(w) => Some(*w),
            _ => None,
        })
    }

    /// The pause this step has (`Some(None)`: until promote).
    pub fn pause(&self) -> Option<Option<Millis>> {
        self.actions().iter().find_map(|a| match a {
            Step::Pause(d) => Some(*d),
            _ => None,
        })
    }

    /// Whether this step runs an analysis.
    pub fn has_analysis(&self) -> bool {
        self.actions()
            .iter()
            .any(|a| matches!(a, Step::Analysis(_)))
    }

    /// The experiment this step runs, if it has one.
    pub fn experiment(&self) -> Option<&ExperimentStep> {
        self.actions().iter().find_map(|a| match a {
            Step::Experiment(x) => Some(x),
            _ => None,
        })
    }
}

/// A canary `experiment` step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentStep {
    /// How long the experiment runs once all its pods are available;
    /// `None`: until its `required_for_completion` analyses end (or, with
    /// none, until the step is promoted past — Argo's "indefinitely").
    pub duration: Option<Millis>,
    /// The pods it runs.
    pub templates: Vec<ExperimentTemplate>,
    /// The analyses it runs once its pods are available.
    pub analyses: Vec<ExperimentAnalysis>,
}

/// One experiment template: `replicas` pods of the stable's or the canary's
/// pod template, under an identity of their own (the rollout's Services do
/// not select them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentTemplate {
    /// Template name (unique in the step).
    pub name: String,
    /// Whose pod template it runs.
    pub spec_ref: SpecRef,
    /// Pods (Argo's default: 1).
    pub replicas: u32,
    /// Percent of the rollout's traffic these pods get while the experiment
    /// runs and they are available (traffic routing only), taken from the
    /// stable's share as in Argo (absent in specs stored before it existed).
    #[serde(default)]
    pub weight: Option<u32>,
}

/// `specRef` of an experiment template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SpecRef {
    /// The stable revision's pod template (a baseline).
    Stable,
    /// The revision being rolled out.
    Canary,
}

/// One analysis of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentAnalysis {
    /// Analysis name (unique in the step).
    pub name: String,
    /// Template and args. Literal args may name the experiment's pods:
    /// `{{templates.<name>.podTemplateHash}}`.
    pub analysis: AnalysisSpec,
    /// The experiment does not complete before this analysis does.
    pub required_for_completion: bool,
}

/// `setMirrorRoute`: a share of the requests that match is copied to the
/// canary; the copies' answers are discarded and never count as requests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MirrorRoute {
    /// Route name (unique per rollout).
    pub name: String,
    /// Percent of matching requests copied (Argo's default: 100).
    pub percentage: u32,
    /// Any one must hold (OR); an empty list removes the route.
    pub matches: Vec<MirrorMatch>,
}

/// One mirror condition: every part that is set must hold (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MirrorMatch {
    /// The request method.
    pub method: Option<StringMatch>,
    /// The request path (without the query).
    pub path: Option<StringMatch>,
    /// Request headers.
    pub headers: Vec<HeaderMatch>,
}

/// `setCanaryScale`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CanaryScale {
    /// An absolute replica count.
    Replicas(u32),
    /// A percentage of `spec.replicas`.
    Weight(u32),
    /// Back to following the traffic weight.
    MatchTrafficWeight,
}

/// `setHeaderRoute`: requests whose headers match go to the canary.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeaderRoute {
    /// Route name (unique per rollout).
    pub name: String,
    /// All must match; an empty list removes the route.
    pub matches: Vec<HeaderMatch>,
}

/// One header condition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// How the value is compared.
    pub value: StringMatch,
}

/// How a header value is compared.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Matches a regular expression.
    Regex(String),
}

/// Which templates an analysis runs, with which args. Templates are resolved
/// by the analysis adapter; the engine only names them and tracks outcomes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSpec {
    /// Template names (`clusterScope` ones prefixed with `cluster:`).
    pub templates: Vec<String>,
    /// Arguments.
    pub args: Vec<AnalysisArg>,
}

/// One analysis argument.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisArg {
    /// Argument name.
    pub name: String,
    /// Where its value comes from.
    pub value: ArgValue,
}

/// An argument's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ArgValue {
    /// A literal.
    Literal(String),
    /// `valueFrom.podTemplateHashValue: Stable`.
    StableHash,
    /// `valueFrom.podTemplateHashValue: Latest`.
    LatestHash,
    /// `valueFrom.fieldRef.fieldPath`, resolved by the adapter.
    FieldRef(String),
}

/// Canary background analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackgroundAnalysis {
    /// What to run.
    pub analysis: AnalysisSpec,
    /// Step index at which it starts (`startingStep`, default 0).
    pub starting_step: u32,
}

/// `strategy.blueGreen`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlueGreenSpec {
    /// `previewReplicaCount` (default: all replicas).
    pub preview_replica_count: Option<u32>,
    /// `autoPromotionEnabled` (default true).
    pub auto_promotion_enabled: bool,
    /// `autoPromotionSeconds` in milliseconds.
    pub auto_promotion_after: Option<Millis>,
    /// `scaleDownDelaySeconds` (default 30 s).
    pub scale_down_delay: Millis,
    /// `abortScaleDownDelaySeconds` (default 30 s).
    pub abort_scale_down_delay: Millis,
    /// `prePromotionAnalysis`.
    pub pre_promotion_analysis: Option<AnalysisSpec>,
    /// `postPromotionAnalysis`.
    pub post_promotion_analysis: Option<AnalysisSpec>,
    /// True when a preview service is configured.
    pub has_preview_service: bool,
    /// `blueGreen.maxUnavailable`: in Argo, pods restarted at once. Serin
    /// restarts by surge, so this bounds the extra pods (at least one).
    #[serde(default)]
    pub max_unavailable: Option<IntOrPercent>,
}

/// Argo's rollout phases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not yet reconciled.
    #[default]
    Pending,
    /// Moving towards the desired state.
    Progressing,
    /// Waiting at a pause (see the pause reason).
    Paused,
    /// Desired state reached: all replicas on the stable revision.
    Healthy,
    /// Aborted, or the progress deadline passed.
    Degraded,
}

/// Why a rollout is paused (Argo's pause reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PauseReason {
    /// A canary `pause` step.
    CanaryPauseStep,
    /// Blue-green waiting for promotion.
    BlueGreenPause,
    /// An analysis run ended Inconclusive.
    InconclusiveAnalysisRun,
    /// `spec.paused` set by a user.
    PausedByUser,
}

/// One active pause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseCondition {
    /// Why.
    pub reason: PauseReason,
    /// Since when.
    pub since: Millis,
}

/// Outcome of an analysis run (Argo's AnalysisPhase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnalysisPhase {
    /// Created, not measuring yet.
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// A metric failed.
    Failed,
    /// Measurements errored past the limit.
    Error,
    /// Neither passed nor failed.
    Inconclusive,
}

impl AnalysisPhase {
    /// True once the run can no longer change.
    pub fn is_completed(self) -> bool {
        !matches!(self, AnalysisPhase::Pending | AnalysisPhase::Running)
    }
}

/// What an analysis run gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AnalysisKind {
    /// A canary `analysis` step (index).
    Step(u32),
    /// Canary background analysis.
    Background,
    /// Blue-green pre-promotion.
    PrePromotion,
    /// Blue-green post-promotion.
    PostPromotion,
    /// An analysis of the experiment of canary step `step` (its index in
    /// the step's `analyses`).
    Experiment {
        /// The step.
        step: u32,
        /// The analysis.
        analysis: u32,
    },
}

/// An analysis run the engine started, and what it last knew of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRunRecord {
    /// Unique, deterministic run name.
    pub name: String,
    /// What it gates.
    pub kind: AnalysisKind,
    /// The revision it judges.
    pub revision: RevisionHash,
    /// Last known phase.
    pub phase: AnalysisPhase,
    /// An Inconclusive outcome a user accepted with `promote`.
    pub acknowledged: bool,
}

/// The experiment of a canary step, as the engine runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// Unique, deterministic name (rollout, revision, attempt, step).
    pub name: String,
    /// The step it belongs to.
    pub step: u32,
    /// When it was started.
    pub started_at: Millis,
    /// When all its pods were first available (Argo's `availableAt`); its
    /// duration counts from here and its analyses start here.
    pub available_at: Option<Millis>,
    /// Argo's experiment phase: Pending, Running, Successful, Failed, Error.
    pub phase: AnalysisPhase,
    /// Why it ended, when it did not succeed.
    pub message: String,
    /// Its pods.
    pub workloads: Vec<ExperimentWorkload>,
}

/// The pods of one experiment template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentWorkload {
    /// The template's name.
    pub template: String,
    /// The pods' own identity (their pod-template hash): never a revision
    /// of the rollout, so no rollout Service selects them (only a
    /// template `weight` routes to them).
    pub hash: RevisionHash,
    /// The revision whose pod template they run.
    pub revision: RevisionHash,
    /// Pods wanted while the experiment runs.
    pub replicas: u32,
}

/// The engine's own state, persisted by the adapter between reconciles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// Argo phase.
    pub phase: Phase,
    /// Human-readable reason for the phase.
    pub message: String,
    /// The revision being rolled out (the spec's hash when last reconciled).
    pub current_hash: Option<RevisionHash>,
    /// The revision that serves production.
    pub stable_hash: Option<RevisionHash>,
    /// Canary: index of the step being executed (== steps.len() when done).
    pub current_step_index: Option<u32>,
    /// Active pauses.
    pub pause_conditions: Vec<PauseCondition>,
    /// Set by `abort`; cleared by `retry` or a new revision.
    pub abort: bool,
    /// When the abort happened.
    pub aborted_at: Option<Millis>,
    /// Set by `promote --full`: skip remaining steps and analysis.
    pub promote_full: bool,
    /// Blue-green: a user approved promotion of `current_hash`.
    pub promotion_approved: bool,
    /// Blue-green: which revision the active service selects.
    pub active_hash: Option<RevisionHash>,
    /// Canary: the weight the engine last asked the router for.
    pub canary_weight: u32,
    /// Canary: the `setCanaryScale` in effect.
    pub canary_scale: Option<CanaryScale>,
    /// Header routes in effect.
    pub header_routes: Vec<HeaderRoute>,
    /// Mirror routes in effect (absent in statuses stored before they existed).
    #[serde(default)]
    pub mirror_routes: Vec<MirrorRoute>,
    /// Analysis runs started for the current revision.
    pub analysis_runs: Vec<AnalysisRunRecord>,
    /// Revisions waiting to be scaled down, with the time they may go.
    pub scale_down_at: BTreeMap<RevisionHash, Millis>,
    /// Last time the rollout made progress (for the progress deadline).
    pub last_progress: Option<Millis>,
    /// A fingerprint of observed progress, to notice when it changes.
    pub progress_marker: Option<u64>,
    /// The progress deadline passed without progress.
    pub deadline_exceeded: bool,
    /// Bumped by `retry` so re-run analyses get fresh names.
    pub attempt: u32,
    /// Argo's `status.restartedAt`: the last `spec.restartAt` carried out
    /// (or cancelled by a new revision, which replaces the pods anyway).
    #[serde(default)]
    pub restarted_at: Option<Millis>,
    /// A restart in progress: pods created before this time are being
    /// replaced. `None` when no pod has been replaced for a restart yet.
    #[serde(default)]
    pub restarting: Option<Millis>,
    /// Experiments of canary steps still running or with pods to remove
    /// (absent in statuses stored before they existed).
    #[serde(default)]
    pub experiments: Vec<ExperimentRecord>,
}

/// One revision as the platform sees it (a ReplicaSet, or a group of local
/// processes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedRevision {
    /// Its hash.
    pub hash: RevisionHash,
    /// Monotonic revision number (1, 2, …), for undo and rollback windows.
    pub number: u64,
    /// Replicas the platform was last told to run.
    pub replicas: u32,
    /// Replicas passing readiness.
    pub ready: u32,
    /// Replicas ready for at least `minReadySeconds`.
    pub available: u32,
    /// Creation time of the oldest pod that is not terminating (`None`: no
    /// such pod). A restart is done when no revision has one older than
    /// `restartAt`.
    #[serde(default)]
    pub oldest_pod_created: Option<Millis>,
}

/// Routing currently in effect, as the traffic adapter reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Which revision each role's Service selects (`None`: all revisions).
    pub services: BTreeMap<ServiceRole, RevisionHash>,
    /// Weighted destinations; sums to 100 when non-empty. Besides the
    /// stable and the canary, a destination may be an experiment
    /// template's pods ([`ExperimentWorkload::hash`]) while a weighted
    /// experiment step runs (Argo's `additionalDestinations`).
    pub weights: Vec<WeightedDestination>,
    /// Header routes to the canary.
    pub header_routes: Vec<HeaderRoute>,
    /// Mirror routes: copies of matching requests to the canary.
    #[serde(default)]
    pub mirror_routes: Vec<MirrorRoute>,
}

/// The role a Service plays in a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ServiceRole {
    /// Blue-green active service.
    Active,
    /// Blue-green preview service.
    Preview,
    /// Canary stable service.
    Stable,
    /// Canary canary service.
    Canary,
}

/// One weighted destination.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WeightedDestination {
    /// The revision (or an experiment template's pods, by their hash).
    pub revision: RevisionHash,
    /// Percent of traffic.
    pub weight: u32,
}

/// Everything the platform reports back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// All revisions that still exist.
    pub revisions: Vec<ObservedRevision>,
    /// Phases of analysis runs by name.
    pub analysis: BTreeMap<String, AnalysisPhase>,
    /// Routing in effect.
    pub route: Route,
    /// Pods of experiments, by their [`ExperimentWorkload::hash`] (`number`
    /// unused).
    #[serde(default)]
    pub experiments: Vec<ObservedRevision>,
}

impl Observed {
    /// The observed revision with this hash.
    pub fn revision(&self, hash: &RevisionHash) -> Option<&ObservedRevision> {
        self.revisions.iter().find(|r| &r.hash == hash)
    }
}

/// What the engine asks an adapter to do. Actions are idempotent: applying one
/// twice is harmless, so an adapter may retry freely.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Run this many replicas of a revision (creating it from the spec's pod
    /// template if it does not exist yet; 0 scales it away).
    Scale {
        /// Which revision.
        revision: RevisionHash,
        /// Desired replicas.
        replicas: u32,
    },
    /// Make this the routing in effect (whole state, not a delta).
    SetRoute(Route),
    /// Start an analysis run.
    StartAnalysis {
        /// Run name.
        name: String,
        /// What it gates.
        kind: AnalysisKind,
        /// Templates and args, with pod-template-hash args resolved.
        templates: Vec<String>,
        /// Resolved args (`FieldRef` values are left for the adapter).
        args: Vec<(String, ArgValueResolved)>,
    },
    /// Stop (terminate) a running analysis run.
    StopAnalysis {
        /// Run name.
        name: String,
    },
    /// Make sure the pods of this revision created before `created_before`
    /// are being replaced, at most `max_in_flight` at a time, surge first:
    /// start a replacement, and retire the old pod only once its replacement
    /// is available. Whole-state like the others: the adapter counts the
    /// replacements already in flight. An old pod and its replacement are
    /// one replica for `Scale`.
    RestartPods {
        /// Which revision.
        revision: RevisionHash,
        /// Pods created before this time are replaced.
        created_before: Millis,
        /// Replacements not yet available, at most.
        max_in_flight: u32,
    },
    /// Run this many pods of an experiment template: `revision`'s pod
    /// template under the experiment's own identity `workload` (0 removes
    /// them). The rollout's Services never select them; a template with a
    /// `weight` gets that share of the route while the step runs.
    ScaleExperiment {
        /// The pods' identity ([`ExperimentWorkload::hash`]).
        workload: RevisionHash,
        /// Whose pod template they run.
        revision: RevisionHash,
        /// Desired pods.
        replicas: u32,
    },
    /// Tell the world (events, notifications, history).
    Emit(Event),
}

/// An argument value after the engine resolved what it knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ArgValueResolved {
    /// A final value.
    Value(String),
    /// A field path for the adapter to resolve.
    FieldRef(String),
}

/// Events, named after Argo Rollouts' event reasons and notification triggers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new revision started rolling out (`on-rollout-updated`).
    RolloutUpdated {
        /// The new revision.
        revision: RevisionHash,
    },
    /// A canary step finished (`on-rollout-step-completed`).
    StepCompleted {
        /// Its index.
        step: u32,
    },
    /// The rollout paused (`on-rollout-paused`).
    Paused {
        /// Why.
        reason: PauseReason,
    },
    /// The rollout was aborted (`on-rollout-aborted`).
    Aborted {
        /// Why.
        message: String,
    },
    /// The new revision became stable (`on-rollout-completed`).
    Completed {
        /// The now-stable revision.
        revision: RevisionHash,
    },
    /// An analysis run failed (`on-analysis-run-failed`).
    AnalysisRunFailed {
        /// Run name.
        name: String,
    },
    /// An analysis run errored (`on-analysis-run-error`).
    AnalysisRunError {
        /// Run name.
        name: String,
    },
    /// The progress deadline passed.
    ProgressDeadlineExceeded,
    /// An experiment step started its experiment (Argo's `ExperimentCreated`).
    ExperimentStarted {
        /// The experiment.
        name: String,
    },
    /// An experiment ended (Successful, Failed or Error).
    ExperimentCompleted {
        /// The experiment.
        name: String,
        /// How it ended.
        phase: AnalysisPhase,
    },
    /// Every pod created before `restartAt` was replaced (Argo's
    /// `RolloutRestarted`).
    Restarted {
        /// The `restartAt` carried out.
        at: Millis,
    },
}

/// The result of one reconcile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reconciled {
    /// The new status to persist.
    pub status: RolloutStatus,
    /// Actions to carry out, in order.
    pub actions: Vec<Action>,
    /// When to reconcile again if nothing changes before (a timed pause
    /// ends, a scale-down delay or the progress deadline passes, a scheduled
    /// restart is due). `None`: only a change in the world or a user command
    /// can move this rollout. Reconciling earlier is always harmless.
    #[serde(default)]
    pub next_wake: Option<Millis>,
}
