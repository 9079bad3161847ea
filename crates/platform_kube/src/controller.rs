//! The controller loop: kube-rs' `Controller` watches Rollouts and the
//! ReplicaSets they own (kept, stripped, in a [`ReplicaSetCache`] that
//! reconciles observe instead of listing them), and calls [`reconcile`] per Rollout (one at a time
//! per object); each reconcile runs one driver step and asks to run again
//! when the engine's `next_wake` comes, or at the resync interval at the
//! latest. State lives only on the cluster: a restarted controller carries
//! on from the Rollout's annotation at the step it was at.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use serde_json::json;
use serin_driver::{Adapters, Driver, Outcome};
use serin_engine as e;
use serin_error_chain::error_chain;

use crate::adapters::RolloutAdapters;
use crate::argo_status::argo_status;
use crate::object::RolloutObject;
use crate::rs_cache::ReplicaSetCache;
use crate::target::target_of;
use crate::workload_ref;
use crate::{ANN_COMMAND, Error, now_ms};

/// The default of [`ControllerOptions::resync`] (and `--resync-seconds`).
pub const DEFAULT_RESYNC_SECS: u64 = 300;

/// How `serin controller` runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Only this namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Every Rollout is reconciled at least this often, even when nothing
    /// changes (a missed watch event, or a route changed behind Serin's back,
    /// costs at most this long). Each reconcile reads the Rollout (its
    /// ReplicaSets come from the controller's watch), so this sets the
    /// controller's load at rest: at
    /// 30 s, 1,000 Rollouts kept it busy enough that new images waited
    /// minutes (bench/k8s-scale.sh). Argo's controller resyncs every 15 min.
    pub resync: Duration,
    /// Reported as the Events' reporting instance (the pod name in a cluster).
    pub instance: String,
    /// Act only while holding this Lease (several replicas: one acts).
    pub leader_election: Option<crate::LeaderElection>,
    /// Metrics and notifications of every step (serve its metrics with
    /// [`crate::serve_metrics`]).
    pub observer: Arc<crate::Observer>,
    /// The flag server FlagRollouts write to (`None`: their status says
    /// they cannot run).
    pub flag_server: Option<crate::FlagServer>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            resync: Duration::from_secs(DEFAULT_RESYNC_SECS),
            instance: "serin-controller".into(),
            leader_election: None,
            observer: Arc::default(),
            flag_server: None,
        }
    }
}

struct Ctx {
    client: Client,
    recorder: Recorder,
    /// One driver (and so one backoff table) per namespace: the driver keys
    /// rollouts by name.
    drivers: Mutex<HashMap<String, Arc<Driver>>>,
    resync: Duration,
    runs: Arc<crate::analysis::Runs>,
    observer: Arc<crate::Observer>,
    /// The owned ReplicaSets, from the controller's watch of them.
    replica_sets: Arc<ReplicaSetCache>,
    /// Which Rollouts each Deployment lends its template to (workloadRef),
    /// so a change of the Deployment wakes them.
    workloads: Arc<workload_ref::Referrers>,
}

impl Ctx {
    fn driver(&self, ns: &str) -> Arc<Driver> {
        match self.drivers.lock() {
            Ok(mut d) => d.entry(ns.to_string()).or_default().clone(),
            Err(_) => Arc::new(Driver::new()),
        }
    }
}

/// Runs the controller until the process ends (or the future is dropped).
/// With leader election, it acts only while holding the Lease: it waits to
/// take it, and stops acting at once when a renewal fails, then waits again.
pub async fn run_controller(client: Client, opts: ControllerOptions) -> Result<(), Error> {
    let Some(le) = opts.leader_election.clone() else {
        return controller_loop(client, opts).await;
    };
    loop {
        while !le
            .try_acquire_or_renew(&client)
            .await
            .unwrap_or_else(|err| {
                tracing::warn!("leader election: {err}");
                false
            })
        {
            tokio::time::sleep(le.renew_every).await;
        }
        tracing::info!(identity = %le.identity, lease = %le.name, "leading");
        let mut task = tokio::spawn(controller_loop(client.clone(), opts.clone()));
        loop {
            tokio::select! {
                res = &mut task => {
                    return res.map_err(|e| Error::Invalid(format!("controller task: {e}")))?;
                }
                _ = tokio::time::sleep(le.renew_every) => {}
            }
            match le.try_acquire_or_renew(&client).await {
                Ok(true) => {}
                other => {
                    tracing::warn!(identity = %le.identity, "lost the Lease ({other:?}); stopping until it is ours again");
                    task.abort();
                    break;
                }
            }
        }
    }
}

/// Rollouts and FlagRollouts side by side (both stop when the Lease is lost).
async fn controller_loop(client: Client, opts: ControllerOptions) -> Result<(), Error> {
    let reporter = Reporter {
        controller: "serin-controller".into(),
        instance: Some(opts.instance.clone()),
    };
    let flags = crate::flag_rollouts::run(
        client.clone(),
        opts.namespace.clone(),
        opts.flag_server.clone(),
        Recorder::new(client.clone(), reporter),
        opts.observer.clone(),
    );
    tokio::select! {
        r = rollout_loop(client, opts) => r,
        () = flags => Ok(()),
    }
}

async fn rollout_loop(client: Client, opts: ControllerOptions) -> Result<(), Error> {
    let ar = crate::adapters::analysis_run();
    let (rollouts, replica_sets, runs, deployments): (
        Api<RolloutObject>,
        Api<ReplicaSet>,
        Api<kube::api::DynamicObject>,
        Api<PartialObjectMeta<Deployment>>,
    ) = match &opts.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced_with(client.clone(), ns, &ar),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all_with(client.clone(), &ar),
            Api::all(client.clone()),
        ),
    };
    // Fail fast, with the cause, when the Rollout CRD is missing or the
    // credentials cannot list Rollouts.
    rollouts
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(Error::kube(
            "listing Rollouts (are Argo Rollouts' CRDs installed?)",
        ))?;
    let reporter = Reporter {
        controller: "serin-controller".into(),
        instance: Some(opts.instance.clone()),
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        drivers: Mutex::new(HashMap::new()),
        resync: opts.resync,
        runs: Arc::default(),
        observer: opts.observer.clone(),
        replica_sets: Arc::default(),
        workloads: Arc::default(),
    });
    opts.observer
        .resume_history(&ctx.client, opts.namespace.as_deref())
        .await;
    tracing::info!(namespace = ?opts.namespace, "serin controller running");
    // The controller's cache holds each Rollout's name, namespace, uid and
    // resourceVersion only: reconcile reads the Rollout fresh anyway, and
    // full objects (spec, Argo status, Serin's status annotation, managed
    // fields) made the cache the bulk of the controller's memory
    // (bench/k8s-scale.sh).
    let (reader, writer) = reflector::store();
    let rollout_metas: Api<RolloutMeta> = match &opts.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let trigger = watcher(rollout_metas, watcher::Config::default())
        .default_backoff()
        .modify(|m| {
            m.metadata.managed_fields = None;
            m.metadata.annotations = None;
            m.metadata.labels = None;
        })
        .reflect(writer)
        .applied_objects();
    let cache = ctx.replica_sets.clone();
    let referrers = ctx.workloads.clone();
    let rs_events = watcher(replica_sets, watcher::Config::default())
        .default_backoff()
        .modify(crate::rs_cache::strip)
        .map_ok(move |ev| {
            cache.apply(&ev);
            ev
        })
        .touched_objects();
    Controller::for_stream(trigger, reader)
        // Bounded: at start-up every Rollout is due at once, and unbounded
        // reconciles would hold that many requests (and connections) open.
        .with_config(ControllerConfig::default().concurrency(RECONCILE_CONCURRENCY))
        // The ReplicaSets' watch wakes their Rollout and keeps the cache
        // each reconcile observes (instead of listing them every time).
        .owns_stream(rs_events)
        // A run's phase change wakes its Rollout.
        .owns_with(runs, ar, watcher::Config::default())
        // A workloadRef's Deployment changing (its template: a new
        // revision) wakes the Rollouts that refer to it. Metadata only:
        // the generation moves with the spec, and reconcile reads it fresh.
        .watches_stream(
            watcher(deployments, watcher::Config::default())
                .default_backoff()
                .touched_objects(),
            move |d| {
                referrers
                    .of(&d)
                    .into_iter()
                    .map(|(ns, name)| ObjectRef::<RolloutMeta>::new(&name).within(&ns))
            },
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(err) = res {
                tracing::debug!("reconcile: {}", error_chain(&err));
            }
        })
        .await;
    Ok(())
}

/// Reconciles in flight at most (each is a few requests; the API server,
/// not this controller, is the limit).
const RECONCILE_CONCURRENCY: u16 = 32;

/// What the controller's cache keeps of a Rollout.
type RolloutMeta = PartialObjectMeta<RolloutObject>;

fn error_policy(_obj: Arc<RolloutMeta>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!("reconcile failed: {}", error_chain(err));
    Action::requeue(Duration::from_secs(2))
}

/// The commands `serin.dev/command` takes.
const COMMANDS: &str =
    "promote, promote-full, abort, retry, pause, resume, restart [RFC 3339 time]";

/// A command's text as the engine's command; `restart TIME` (what `serin
/// restart --in/--at` writes) schedules the restart at that time.
fn parse_command(s: &str, now: u64) -> Result<e::Command, String> {
    Ok(match s.trim() {
        "promote" => e::Command::Promote,
        "promote-full" | "promote --full" => e::Command::PromoteFull,
        "abort" => e::Command::Abort,
        "retry" => e::Command::Retry,
        "pause" => e::Command::Pause,
        "resume" => e::Command::Resume,
        "restart" => e::Command::Restart { at: now },
        other => match other.strip_prefix("restart ") {
            Some(time) => e::Command::Restart {
                at: serin_clock::parse_rfc3339(time).map_err(|err| format!("restart: {err}"))?,
            },
            None => return Err(format!("unknown command {other:?} ({COMMANDS})")),
        },
    })
}

/// One reconcile, timed (`RUST_LOG=serin_platform_kube=debug` shows each).
async fn reconcile(obj: Arc<RolloutMeta>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let res = reconcile_inner(obj, ctx).await;
    tracing::debug!(rollout = %name, took_ms = started.elapsed().as_millis() as u64,
        action = ?res.as_ref().ok(), "reconciled");
    res
}

async fn reconcile_inner(obj: Arc<RolloutMeta>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let (Some(ns), Some(name)) = (&obj.metadata.namespace, &obj.metadata.name) else {
        return Ok(Action::await_change());
    };
    let api: Api<RolloutObject> = Api::namespaced(ctx.client.clone(), ns);
    // A fresh read: the watch cache may lag behind this controller's own
    // last write, and every write below is conditional on this version.
    let Some(fresh) = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading rollout {name}")))?
    else {
        return Ok(Action::await_change());
    };
    if fresh.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = fresh.name().to_string();
    // A workloadRef's Deployment lends its template (and selector): from
    // here on the Rollout reads as one with its own.
    let resolved = workload_ref::resolve(&ctx.client, &fresh).await?;
    if let Ok(Some(w)) = workload_ref::WorkloadRef::of(&fresh) {
        ctx.workloads.refer(fresh.namespace(), &w.name, &name);
    }
    let borrowed = resolved.as_ref().ok().and_then(|(_, b)| b.clone());
    let ad = RolloutAdapters::new(
        ctx.client.clone(),
        &ctx.recorder,
        Arc::clone(&ctx.runs),
        fresh.clone(),
    )
    .with_replica_set_cache(ctx.replica_sets.clone())
    .with_workload(borrowed.clone());
    let mut target = match resolved.and_then(|(obj, _)| target_of(&obj)) {
        Ok(t) => t,
        Err(invalid) => {
            let stored = ad.stored().unwrap_or_default();
            let status = argo_status(&fresh, None, &stored, &[], Some(&invalid.0), now_ms());
            let was = fresh
                .status
                .as_ref()
                .and_then(|s| s.get("message"))
                .cloned();
            if was != Some(status["message"].clone()) {
                ad.event(true, "InvalidSpec", invalid.0.clone()).await;
            }
            ad.write_argo_status(status).await?;
            return Ok(Action::requeue(ctx.resync));
        }
    };
    ad.resolve_revision(&mut target).await?;
    let driver = ctx.driver(fresh.namespace());
    let key = format!("{ns}/{name}");
    let skipped = ctx.observer.subscribe(
        &key,
        fresh
            .metadata
            .annotations
            .as_ref()
            .unwrap_or(&Default::default()),
    );
    if !skipped.is_empty() {
        tracing::warn!(rollout = %key, "notification annotations skipped: {}", skipped.join("; "));
    }
    // A `serin restart` is kept beside the manifest (as locally) until the
    // manifest's own restartAt changes: every reconcile carries it out.
    let manifest_restart = target.spec.restart_at;
    let _ = ad.stored()?.overrides.apply(&mut target.spec);
    if let Some(cmd) = fresh.annotation(ANN_COMMAND) {
        apply_command(&ad, &mut target, cmd, &driver, manifest_restart).await?;
    }
    let adapters = Adapters {
        platform: &ad,
        router: &ad,
        store: &ad,
        analysis: &ad,
    };
    let outcome = driver.drive(&adapters, &target, &now_ms).await;
    if let Outcome::Failed { error, .. } = &outcome {
        tracing::warn!(rollout = %name, "step failed: {}", error_chain(error));
    }
    if let Outcome::Stepped { step, .. } = &outcome {
        let strategy = crate::record::strategy_name(&target.spec);
        let (out, at) = (&step.reconciled, step.now);
        for action in &out.actions {
            if let e::Action::Emit(ev) = action {
                ctx.observer.event(at, &key, strategy, ev);
            }
        }
        ctx.observer.state(at, &key, strategy, &out.status);
    }
    // The Argo-shaped status follows what the driver stored (re-read: the
    // step wrote it), whether the step succeeded or not.
    let stored = ad.stored()?;
    if matches!(outcome, Outcome::Stepped { .. }) {
        prune_history(&ad, &fresh, &target, &stored).await;
    }
    let mut status = argo_status(
        &ad.object(),
        Some(&target.spec),
        &stored,
        &ad.observed(),
        None,
        now_ms(),
    );
    if let Some(b) = &borrowed {
        if let Some(g) = b.generation {
            status["workloadObservedGeneration"] = json!(g.to_string());
        }
        hand_over(&ctx.client, &fresh, &target, &ad.observed(), &status).await;
    }
    ad.write_argo_status(status).await?;
    let now = now_ms();
    let wait = outcome
        .wake_at()
        .map_or(ctx.resync, |at| {
            Duration::from_millis(at.saturating_sub(now))
        })
        .clamp(Duration::from_millis(200), ctx.resync);
    Ok(Action::requeue(wait))
}

/// Scales the workloadRef's Deployment down as `scaleDown` says (only ever
/// down), once the step and status are written. A failure is logged and
/// tried again next reconcile: the Rollout's own progress does not wait
/// on it.
async fn hand_over(
    client: &Client,
    obj: &RolloutObject,
    target: &serin_driver::Target,
    observed: &[e::ObservedRevision],
    status: &serde_json::Value,
) {
    let Ok(Some(w)) = workload_ref::WorkloadRef::of(obj) else {
        return;
    };
    let available = observed
        .iter()
        .find(|o| o.hash == target.spec.template_hash)
        .map_or(0, |o| o.available);
    let healthy = status["phase"] == "Healthy";
    let Some(want) =
        workload_ref::deployment_replicas(w.scale_down, healthy, target.spec.replicas, available)
    else {
        return;
    };
    if let Err(err) = workload_ref::scale(client, obj.namespace(), &w.name, want).await {
        tracing::warn!(rollout = %obj.name(), "workloadRef scale-down: {}", error_chain(&err));
    }
}

/// Argo's default `spec.revisionHistoryLimit`.
const DEFAULT_REVISION_HISTORY_LIMIT: u64 = 10;

/// Deletes old ReplicaSets beyond `spec.revisionHistoryLimit` (Argo's
/// default 10), never the current or the stable revision, and old
/// AnalysisRuns beyond `spec.analysis`'s run history limits. A failure is
/// logged and tried again on the next reconcile: it never holds up a step.
async fn prune_history(
    ad: &RolloutAdapters<'_>,
    obj: &RolloutObject,
    target: &serin_driver::Target,
    stored: &crate::Stored,
) {
    let limit = obj
        .spec
        .get("revisionHistoryLimit")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
    let mut keep = vec![target.spec.template_hash.0.as_str()];
    keep.extend(stored.status.stable_hash.as_ref().map(|h| h.0.as_str()));
    keep.extend(stored.status.current_hash.as_ref().map(|h| h.0.as_str()));
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match ad.prune_history(&keep, limit).await {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(rollout = %obj.name(), ?deleted, limit, "old ReplicaSets deleted (revisionHistoryLimit)");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(rollout = %obj.name(), "{}", error_chain(&err)),
    }
    // Argo's run history limits (spec.analysis), 5 each by default.
    let run_limit = |key: &str| {
        obj.spec
            .pointer(&format!("/analysis/{key}"))
            .and_then(serde_json::Value::as_u64)
            .map_or(DEFAULT_RUN_HISTORY_LIMIT, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            })
    };
    let current: Vec<&str> = stored
        .status
        .analysis_runs
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let (ok, bad) = (
        run_limit("successfulRunHistoryLimit"),
        run_limit("unsuccessfulRunHistoryLimit"),
    );
    match ad.prune_runs(&current, ok, bad).await {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(rollout = %obj.name(), ?deleted, successful = ok, unsuccessful = bad,
                "old AnalysisRuns deleted (run history limits)");
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(rollout = %obj.name(), "{}", error_chain(&err)),
    }
}

/// Argo's default `spec.analysis.successfulRunHistoryLimit` and
/// `unsuccessfulRunHistoryLimit`.
const DEFAULT_RUN_HISTORY_LIMIT: usize = 5;

/// Carries out the `serin.dev/command` annotation: the engine's command on
/// the stored status (and `spec.paused` for pause/resume), written in one
/// conditional patch that also removes the annotation. A refused command
/// is removed too, with a Warning Event saying why.
async fn apply_command(
    ad: &RolloutAdapters<'_>,
    target: &mut serin_driver::Target,
    text: &str,
    driver: &Driver,
    manifest_restart: Option<e::Millis>,
) -> Result<(), Error> {
    let now = now_ms();
    let mut stored = ad.stored()?;
    let cmd = match parse_command(text, now) {
        Ok(cmd) => cmd,
        Err(why) => {
            ad.event(true, "CommandRejected", why.clone()).await;
            return ad
                .write_stored(&stored, Some(format!("{text}: rejected: {why}")), None)
                .await;
        }
    };
    let paused_before = target.spec.paused;
    match e::apply_command(&mut target.spec, &mut stored.status, &cmd, now) {
        Ok(()) => {
            if let e::Command::Restart { at } = cmd {
                stored.overrides.restart = Some(serin_driver::overrides::Restart {
                    at,
                    over_manifest: manifest_restart,
                });
            }
            let spec_patch = (target.spec.paused != paused_before)
                .then(|| json!({"paused": target.spec.paused}));
            ad.write_stored(&stored, Some(format!("{text}: ok")), spec_patch)
                .await?;
            ad.event(false, "CommandApplied", format!("{text} applied"))
                .await;
            driver.reset(&target.spec.name);
        }
        Err(err) => {
            ad.event(true, "CommandRejected", format!("{text}: {err}"))
                .await;
            ad.write_stored(&stored, Some(format!("{text}: rejected: {err}")), None)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_takes_an_optional_rfc3339_time() {
        assert_eq!(
            parse_command("restart", 7),
            Ok(e::Command::Restart { at: 7 })
        );
        assert_eq!(
            parse_command("restart 2030-01-01T02:00:00.250Z", 7),
            Ok(e::Command::Restart {
                at: 1_893_463_200_250
            })
        );
        let err = parse_command("restart tomorrow", 7).unwrap_err();
        assert!(
            err.starts_with("restart: \"tomorrow\" is not an RFC 3339 time"),
            "{err}"
        );
        let err = parse_command("reboot", 7).unwrap_err();
        assert!(err.contains("unknown command \"reboot\""), "{err}");
    }
}
