//! FlagRollouts (`flagrollouts.serin.dev`) on a cluster: the controller
//! drives each with `serin_flag_rollout::drive` — the same step machine as
//! `serin up` — writing percentages through a flag server's management API
//! (`HttpWriter`, so its audit log records each change), each step's
//! analysis kept as an AnalysisRun object owned by the FlagRollout, and the
//! status in the FlagRollout's `/status`.
//!
//! - The flag server is the controller's (`--flag-server URL`, admin token
//!   from `$SERIN_ADMIN_TOKEN`): one credential held by the controller, so
//!   it needs no read access to Secrets across namespaces.
//! - `/status` holds what `serin get flagrollout` shows (phase, currentStep,
//!   percentage, message, stepResults, …), Kubernetes conditions, and under
//!   `serin` the machine's own status and the spec it is for: a restarted
//!   (or newly elected) controller resumes from it at the step it was on
//!   (re-running that step's analysis, as `serin up` does); a changed spec
//!   starts over.
//! - Deleting a FlagRollout stops it where it is (the flag keeps its
//!   percentage; its AnalysisRuns go with it by owner reference).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::events::Recorder;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use serin_analysis as an;
use serin_flag_rollout::{self as fr, Event, Status};

use crate::{ANN_COMMAND, ANN_COMMAND_RESULT, Error, is_not_found, now_ms};

/// The command annotation of a FlagRollout, trimmed.
fn command_of(obj: &DynamicObject) -> Option<String> {
    obj.annotations()
        .get(ANN_COMMAND)
        .map(|c| c.trim().to_string())
}

/// Label on a FlagRollout's AnalysisRuns naming it.
pub const LABEL_FLAG_ROLLOUT: &str = "serin.dev/flagrollout";

/// How often every FlagRollout is looked at besides watch events (a task
/// that ended, a template created after its FlagRollout).
const TICK: Duration = Duration::from_secs(2);

/// The flag server FlagRollouts write to.
#[derive(Clone)]
pub struct FlagServer {
    /// Base URL (`http://flags.flags.svc:8016`, or `https://…`).
    pub url: String,
    /// CA files trusted for an `https://` URL besides the system roots.
    pub ca: Vec<std::path::PathBuf>,
    /// Admin token of the management API.
    pub admin_token: String,
    /// Environment of FlagRollouts that name none (`production`).
    pub environment: String,
}

impl std::fmt::Debug for FlagServer {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagServer")
            .field("url", &self.url)
            .field("environment", &self.environment)
            .finish_non_exhaustive()
    }
}

/// `flagrollouts.serin.dev/v1alpha1`.
pub fn flag_rollout_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serin.dev", "v1alpha1", "FlagRollout"),
        "flagrollouts",
    )
}

/// The CustomResourceDefinition of FlagRollouts: v1alpha1, a structural
/// schema for the spec (the analysis as a Rollout's, kept as given), the
/// status subresource (written by the controller only) and kubectl columns.
pub fn flag_rollout_crd() -> Value {
    let string = json!({"type": "string"});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "flagrollouts.serin.dev"},
        "spec": {
            "group": "serin.dev",
            "scope": "Namespaced",
            "names": {"plural": "flagrollouts", "singular": "flagrollout",
                      "kind": "FlagRollout", "listKind": "FlagRolloutList",
                      "shortNames": ["fr"]},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Flag", "type": "string", "jsonPath": ".status.flag"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Percent", "type": "integer", "jsonPath": ".status.percentage"},
                    {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep"},
                    {"name": "Message", "type": "string", "jsonPath": ".status.message",
                     "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": string, "kind": string,
                        "metadata": {"type": "object"},
                        "spec": {
                            "type": "object",
                            "properties": {
                                "flag": {"type": "string",
                                         "description": "Flag key (default: metadata.name)."},
                                "environment": {"type": "string",
                                    "description": "Flag server environment (default: the controller's --flag-environment)."},
                                "steps": {"type": "array", "minItems": 1,
                                          "items": {"type": "integer", "minimum": 1, "maximum": 100},
                                          "description": "Percentages, strictly increasing (default 5,10,25,50,100)."},
                                "interval": {"type": "string",
                                    "description": "Time at each step, a Go duration (default 5m)."},
                                "analysis": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": true,
                                    "description": "Templates and args judging each step, as a Rollout's."},
                            },
                        },
                        "status": {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": true},
                    },
                }},
            }],
        },
    })
}

/// What `/status.serin` keeps to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    /// The spec, environment and server this status is for.
    fingerprint: String,
    environment: String,
    spec: fr::Spec,
    state: Status,
}

/// The FlagRollout `obj` parsed as Serin's model.
fn model(obj: &DynamicObject) -> Result<serin_spec::FlagRollout, String> {
    let v = json!({
        "apiVersion": "serin.dev/v1alpha1", "kind": "FlagRollout",
        "metadata": {"name": obj.metadata.name},
        "spec": obj.data.get("spec").cloned().unwrap_or(json!({})),
    });
    serde_json::from_value(v).map_err(|e| format!("invalid spec: {e}"))
}

fn fingerprint(spec: &serin_spec::FlagRolloutSpec, environment: &str, server: &str) -> String {
    json!({"spec": spec, "environment": environment, "server": server}).to_string()
}

fn resolve_spec(f: &serin_spec::FlagRollout) -> fr::Spec {
    fr::Spec {
        flag: f.flag().to_string(),
        // 0 keeps a value the schema let through visible as invalid steps.
        steps: f
            .spec
            .steps
            .iter()
            .map(|&s| u8::try_from(s).unwrap_or(0))
            .collect(),
        interval_ms: f.spec.interval.parse().map_or(u64::MAX, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        }),
        analysis: f.spec.analysis.is_some(),
    }
}

/// A Kubernetes object name for run `name` (flag keys may hold characters
/// names may not).
fn object_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    out.truncate(253);
    out.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// The `/status` written for `saved`: the view `serin get` prints, the
/// conditions, and the state to resume from.
fn status_value(saved: &Saved, generation: Option<i64>) -> Value {
    let st = &saved.state;
    let mut o = fr::view(st, saved.spec.steps.len());
    o.insert("flag".into(), json!(saved.spec.flag));
    o.insert("environment".into(), json!(saved.environment));
    o.insert("totalSteps".into(), json!(saved.spec.steps.len()));
    o.insert("observedGeneration".into(), json!(generation));
    let (degraded, reason) = match st.phase {
        fr::Phase::RolledBack | fr::Phase::RollingBack => (true, "AnalysisFailed"),
        fr::Phase::Aborted | fr::Phase::Aborting => (true, "Aborted"),
        fr::Phase::Error => (true, "Invalid"),
        fr::Phase::Completed => (false, "Completed"),
        fr::Phase::Progressing => (false, "Progressing"),
    };
    let at = crate::rfc3339(st.updated_ms);
    o.insert(
        "conditions".into(),
        json!([
            {"type": "Degraded", "status": if degraded {"True"} else {"False"},
             "reason": reason, "message": st.message, "lastTransitionTime": at},
            {"type": "Completed", "status": if st.phase == fr::Phase::Completed {"True"} else {"False"},
             "reason": reason, "message": st.message, "lastTransitionTime": at},
        ]),
    );
    o.insert("serin".into(), json!(saved));
    Value::Object(o)
}

/// An RFC 7386 merge patch turning `old` into `new` (keys gone from `new`
/// become null, so a field the status no longer has is removed).
fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, v) in n {
                out.insert(k.clone(), merge_diff(o.get(k).unwrap_or(&Value::Null), v));
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

/// Writes the FlagRollout's status.
async fn write_status(
    api: &Api<DynamicObject>,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), kube::Error> {
    let patch = json!({"status": merge_diff(old, new)});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Keeps each step's run as an AnalysisRun object owned by the FlagRollout.
struct KubeRuns {
    client: Client,
    ns: String,
    flag_rollout: String,
    owner: Value,
    metrics: Vec<Value>,
    providers: an::Providers,
    /// Each started run's job provider, by run name, until it is followed
    /// (it names the run's Jobs in the measurements' metadata).
    jobs: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::job::KubeJobs>>>,
}

impl KubeRuns {
    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &crate::adapters::analysis_run(),
        )
    }

    async fn create(&self, name: &str) -> Result<DynamicObject, String> {
        let obj_name = object_name(name);
        let obj = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": obj_name, "namespace": self.ns,
                         "labels": {LABEL_FLAG_ROLLOUT: self.flag_rollout},
                         "ownerReferences": [self.owner]},
            "spec": {"metrics": self.metrics},
            "status": {"phase": "Running", "message": ""},
        });
        let obj: DynamicObject = serde_json::from_value(obj).map_err(|e| e.to_string())?;
        let api = self.api();
        for _ in 0..3 {
            match api.create(&PostParams::default(), &obj).await {
                Ok(o) => return Ok(o),
                // A run of an earlier attempt at this step (a restarted
                // controller re-runs the step) or an earlier start of this
                // FlagRollout: replaced, if it is this FlagRollout's.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let old = api
                        .get_opt(&obj_name)
                        .await
                        .map_err(|e| format!("reading AnalysisRun {obj_name}: {e}"))?;
                    if let Some(old) = old {
                        if old.labels().get(LABEL_FLAG_ROLLOUT) != Some(&self.flag_rollout) {
                            return Err(format!(
                                "AnalysisRun {obj_name} exists and is not FlagRollout {}'s",
                                self.flag_rollout
                            ));
                        }
                        match api.delete(&obj_name, &DeleteParams::default()).await {
                            Ok(_) => {}
                            Err(e) if is_not_found(&e) => {}
                            Err(e) => return Err(format!("replacing AnalysisRun {obj_name}: {e}")),
                        }
                    }
                }
                Err(e) => return Err(format!("creating AnalysisRun {obj_name}: {e}")),
            }
        }
        Err(format!(
            "AnalysisRun {obj_name} could not be replaced (still being deleted?)"
        ))
    }
}

impl fr::RunSink for KubeRuns {
    fn starting<'a>(&'a self, name: &'a str) -> fr::SinkFuture<'a> {
        Box::pin(async move {
            let created = self.create(name).await?;
            let mut providers = self.providers.clone();
            let jobs = Arc::new(crate::job::KubeJobs::new(
                self.client.clone(),
                &self.ns,
                &object_name(name),
                created.metadata.uid.as_deref().unwrap_or_default(),
            ));
            if let Ok(mut map) = self.jobs.lock() {
                map.insert(name.to_string(), Arc::clone(&jobs));
            }
            providers.job = jobs;
            Ok(Some(providers))
        })
    }

    fn follow(&self, name: &str, status: tokio::sync::watch::Receiver<an::RunStatus>) {
        let jobs = self.jobs.lock().ok().and_then(|mut map| map.remove(name));
        drop(crate::analysis::follow(
            self.api(),
            &object_name(name),
            status,
            now_ms(),
            jobs,
        ));
    }
}

/// A FlagRollout being driven (or driven to its end).
struct Task {
    fingerprint: String,
    handle: tokio::task::JoinHandle<()>,
    /// Set to true: the drive sets the flag back to 0 % (a user's abort).
    abort: tokio::sync::watch::Sender<bool>,
}

impl Task {
    /// A task with nothing to drive (an invalid spec, no flag server, a
    /// final phase).
    fn idle(fingerprint: String) -> Self {
        Self {
            fingerprint,
            handle: tokio::spawn(async {}),
            abort: tokio::sync::watch::channel(false).0,
        }
    }
}

/// Aborted when dropped (the loop stopped: leadership lost, shutdown).
#[derive(Default)]
struct Tasks(BTreeMap<String, Task>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.handle.abort();
        }
    }
}

impl Tasks {
    async fn stop(&mut self, key: &str) {
        if let Some(t) = self.0.remove(key) {
            t.handle.abort();
            let _ = t.handle.await;
        }
    }
}

/// Runs every FlagRollout (of `namespace`, else all) until dropped. Without
/// the CRD it says so and looks again now and then; without a flag server
/// each FlagRollout's status says why it cannot run.
pub(crate) async fn run(
    client: Client,
    namespace: Option<String>,
    server: Option<FlagServer>,
    recorder: Recorder,
    observer: Arc<crate::Observer>,
) {
    let ar = flag_rollout_resource();
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    // Rollouts run without FlagRollouts: a missing CRD is not an error.
    let mut warned = false;
    loop {
        match api.list(&kube::api::ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        "FlagRollouts are not reconciled: cannot list flagrollouts.serin.dev ({e}); is the CRD installed (`serin controller install`)? Looking again every minute"
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
    if server.is_none() {
        tracing::warn!(
            "no --flag-server: FlagRollouts will say they cannot run until the controller is given one"
        );
    }
    let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let reader = writer.as_reader();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
    let watching = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Err(e) = ev {
                tracing::debug!("watching FlagRollouts: {e}");
            }
            let _ = wake_tx.try_send(());
        }
    });
    // The watch task ends with this future.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _watching = AbortOnDrop(watching);
    let l = Loop {
        client,
        server,
        providers: an::Providers::new(),
        recorder,
        observer,
    };
    let mut tasks = Tasks::default();
    tracing::info!(namespace = ?namespace, "reconciling FlagRollouts");
    loop {
        tokio::select! {
            _ = wake.recv() => {}
            () = tokio::time::sleep(TICK) => {}
        }
        if reader.wait_until_ready().await.is_err() {
            return;
        }
        l.pass(&reader.state(), &mut tasks).await;
    }
}

struct Loop {
    client: Client,
    server: Option<FlagServer>,
    providers: an::Providers,
    recorder: Recorder,
    observer: Arc<crate::Observer>,
}

impl Loop {
    async fn pass(&self, objects: &[Arc<DynamicObject>], tasks: &mut Tasks) {
        let mut seen = std::collections::BTreeSet::new();
        for obj in objects {
            let (Some(ns), Some(name)) = (&obj.metadata.namespace, &obj.metadata.name) else {
                continue;
            };
            if obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = format!("{ns}/{name}");
            seen.insert(key.clone());
            if let Err(e) = self.reconcile(obj, ns, name, &key, tasks).await {
                tracing::warn!(flag_rollout = %key, "{}", serin_error_chain::error_chain(&e));
            }
        }
        // Deleted: stop where it is.
        let gone: Vec<String> = tasks
            .0
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            tasks.stop(&key).await;
            tracing::info!(flag_rollout = %key, "deleted: stopped");
        }
    }

    async fn reconcile(
        &self,
        obj: &DynamicObject,
        ns: &str,
        name: &str,
        key: &str,
        tasks: &mut Tasks,
    ) -> Result<(), Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &flag_rollout_resource());
        let current = obj.data.get("status").cloned().unwrap_or(Value::Null);
        let generation = obj.metadata.generation;
        let server_url = self.server.as_ref().map_or("", |s| s.url.as_str());
        let default_env = self
            .server
            .as_ref()
            .map_or("production", |s| s.environment.as_str());
        let f = match model(obj) {
            Ok(f) => f,
            Err(why) => {
                // Not a spec Serin can read: say so once.
                let fp = format!("invalid:{}", obj.data.get("spec").unwrap_or(&Value::Null));
                if command_of(obj).is_none()
                    && tasks.0.get(key).is_some_and(|t| t.fingerprint == fp)
                {
                    return Ok(());
                }
                tasks.stop(key).await;
                let spec = fr::Spec {
                    flag: name.to_string(),
                    steps: Vec::new(),
                    interval_ms: 0,
                    analysis: false,
                };
                let mut state = Status::new(&spec, now_ms());
                state.error(why, state.started_ms);
                let saved = Saved {
                    fingerprint: fp.clone(),
                    environment: default_env.to_string(),
                    spec,
                    state,
                };
                write_status(&api, name, &current, &status_value(&saved, generation))
                    .await
                    .map_err(Error::kube(format!(
                        "writing the status of FlagRollout {name}"
                    )))?;
                if let Some(cmd) = command_of(obj) {
                    let why = "the spec is invalid; fix it first".to_string();
                    self.command_done(&api, obj, &cmd, Err(why)).await?;
                }
                tasks.0.insert(key.to_string(), Task::idle(fp));
                return Ok(());
            }
        };
        let environment = f
            .spec
            .environment
            .clone()
            .unwrap_or_else(|| default_env.to_string());
        let fp = fingerprint(&f.spec, &environment, server_url);
        let command = command_of(obj);
        let mut saved: Option<Saved> = current
            .get("serin")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .filter(|s: &Saved| s.fingerprint == fp);
        let running = tasks
            .0
            .get(key)
            .filter(|t| t.fingerprint == fp && !t.handle.is_finished());
        // A user's command (`serin abort|retry flagrollout NAME`), as
        // `serin up` carries it out: abort sets the flag back to 0 % (a
        // running drive does it; else the drive started below), retry
        // starts over from the first step.
        let mut start_again = false;
        let mut aborted_here = false;
        if let Some(cmd) = &command {
            let outcome = match (cmd.as_str(), &mut saved) {
                ("retry", _) => {
                    saved = None;
                    start_again = true;
                    Ok(())
                }
                ("abort", Some(s)) if s.state.phase.is_final() => Err(format!(
                    "FlagRollout {name} is {:?}: nothing to abort",
                    s.state.phase
                )),
                ("abort", Some(s)) => {
                    match running {
                        Some(t) => {
                            let _ = t.abort.send(true);
                        }
                        None => {
                            s.state.abort(now_ms());
                            start_again = true;
                            aborted_here = true;
                        }
                    }
                    Ok(())
                }
                ("abort", None) => Err(format!("FlagRollout {name} has not started")),
                (other, _) => Err(format!("unknown command {other:?} (abort, retry)")),
            };
            self.command_done(&api, obj, cmd, outcome).await?;
        }
        // Already driven (or driven to its end) for this spec.
        if !start_again && tasks.0.get(key).is_some_and(|t| t.fingerprint == fp) {
            return Ok(());
        }
        tasks.stop(key).await;
        let analysis = self.analysis(obj, ns, name, &f).await;
        let saved = match saved {
            Some(mut s) => {
                if !s.state.phase.is_final() {
                    if let Err(why) = &analysis {
                        // A template deleted since: say so rather than
                        // judge the step without it.
                        s.state.error(why.clone(), now_ms());
                        write_status(&api, name, &current, &status_value(&s, generation))
                            .await
                            .map_err(Error::kube(format!(
                                "writing the status of FlagRollout {name}"
                            )))?;
                    } else if aborted_here {
                        write_status(&api, name, &current, &status_value(&s, generation))
                            .await
                            .map_err(Error::kube(format!(
                                "writing the status of FlagRollout {name}"
                            )))?;
                    } else if s.state.percentage.is_some() {
                        tracing::info!(flag_rollout = %key, step = s.state.current_step + 1, "resuming");
                    }
                }
                s
            }
            None => {
                // New, or a changed spec: start over.
                let spec = resolve_spec(&f);
                let mut state = Status::new(&spec, now_ms());
                let why = if self.server.is_none() {
                    Some("serin controller runs without --flag-server: it has no flag server to write percentages to".to_string())
                } else {
                    analysis.as_ref().err().cloned()
                };
                if let Some(why) = why {
                    state.error(why, state.started_ms);
                }
                let s = Saved {
                    fingerprint: fp.clone(),
                    environment: environment.clone(),
                    spec,
                    state,
                };
                write_status(&api, name, &current, &status_value(&s, generation))
                    .await
                    .map_err(Error::kube(format!(
                        "writing the status of FlagRollout {name}"
                    )))?;
                tracing::info!(flag_rollout = %key, flag = %s.spec.flag, "started");
                s
            }
        };
        let handle = match (&self.server, saved.state.phase.is_final()) {
            (Some(server), false) => {
                let written = status_value(&saved, generation);
                let (abort, abort_rx) = tokio::sync::watch::channel(false);
                let handle = tokio::spawn(drive_one(
                    Drive {
                        api,
                        key: key.to_string(),
                        name: name.to_string(),
                        generation,
                        written,
                        events: self.events_of(obj),
                        observer: Arc::clone(&self.observer),
                    },
                    saved,
                    fr::HttpWriter {
                        server: server.url.clone(),
                        environment,
                        admin_token: server.admin_token.clone(),
                        tls: serin_tls::ClientOptions::with_cas(&server.ca),
                    },
                    analysis.ok().flatten(),
                    abort_rx,
                ));
                Task {
                    fingerprint: fp,
                    handle,
                    abort,
                }
            }
            _ => Task::idle(fp),
        };
        tasks.0.insert(key.to_string(), handle);
        Ok(())
    }

    /// Where the Kubernetes Events of FlagRollout `obj` go.
    fn events_of(&self, obj: &DynamicObject) -> EventSink {
        EventSink {
            recorder: self.recorder.clone(),
            object: obj.object_ref(&flag_rollout_resource()),
        }
    }

    /// Removes the command annotation, leaving its outcome in
    /// `serin.dev/command-result` (what `serin abort|retry … --context`
    /// waits for) and a Kubernetes Event.
    async fn command_done(
        &self,
        api: &Api<DynamicObject>,
        obj: &DynamicObject,
        cmd: &str,
        outcome: Result<(), String>,
    ) -> Result<(), Error> {
        let name = obj.name_any();
        let (result, event) = match &outcome {
            Ok(()) => (
                format!("{cmd}: ok"),
                (false, "CommandApplied", format!("{cmd} applied")),
            ),
            Err(why) => (
                format!("{cmd}: rejected: {why}"),
                (true, "CommandRejected", format!("{cmd}: {why}")),
            ),
        };
        // Conditional on the command as read (JSON Patch `test`), not on
        // the resourceVersion, which this FlagRollout's own status writes
        // move all the time: a newer command stays for the next pass.
        let path = |key: &str| format!("/metadata/annotations/{}", key.replace('/', "~1"));
        let raw = obj
            .annotations()
            .get(ANN_COMMAND)
            .cloned()
            .unwrap_or_default();
        let patch: Patch<Value> = serde_json::from_value(json!([
            {"op": "test", "path": path(ANN_COMMAND), "value": raw},
            {"op": "remove", "path": path(ANN_COMMAND)},
            {"op": "add", "path": path(ANN_COMMAND_RESULT), "value": result},
        ]))
        .map(Patch::Json)
        .map_err(|e| Error::Invalid(format!("command patch: {e}")))?;
        api.patch(&name, &PatchParams::default(), &patch)
            .await
            .map_err(Error::kube(format!(
                "removing the command of FlagRollout {name}"
            )))?;
        self.events_of(obj).publish(event).await;
        Ok(())
    }

    /// The step analysis of `f`, templates read from the cluster.
    async fn analysis(
        &self,
        obj: &DynamicObject,
        ns: &str,
        name: &str,
        f: &serin_spec::FlagRollout,
    ) -> Result<Option<fr::Analysis>, String> {
        let Some(a) = &f.spec.analysis else {
            return Ok(None);
        };
        let names: Vec<String> = a
            .templates
            .iter()
            .map(|t| {
                if t.cluster_scope {
                    format!("cluster:{}", t.template_name)
                } else {
                    t.template_name.clone()
                }
            })
            .collect();
        let templates = crate::analysis::templates(&self.client, ns, &names).await?;
        let owner = json!({
            "apiVersion": "serin.dev/v1alpha1", "kind": "FlagRollout",
            "name": name, "uid": obj.metadata.uid.clone().unwrap_or_default(),
            "controller": true,
        });
        let sink = KubeRuns {
            client: self.client.clone(),
            ns: ns.to_string(),
            flag_rollout: name.to_string(),
            owner,
            metrics: crate::analysis::metrics_of(&templates),
            providers: self.providers.clone(),
            jobs: std::sync::Mutex::default(),
        };
        Ok(Some(fr::Analysis {
            templates,
            inputs: an::RunInputs {
                args: a.args.clone(),
                sources: an::ArgSources {
                    rollout: serde_json::to_value(f).unwrap_or_default(),
                    ..Default::default()
                },
                dry_run: a.dry_run.clone(),
                measurement_retention: a.measurement_retention.clone(),
                jobs_on_cluster: true,
            },
            providers: self.providers.clone(),
            sink: Some(Arc::new(sink)),
        }))
    }
}

/// Where one FlagRollout's status and Events are written.
struct Drive {
    api: Api<DynamicObject>,
    key: String,
    name: String,
    generation: Option<i64>,
    /// The `/status` as last written.
    written: Value,
    events: EventSink,
    /// Notifications (`--notifications`' services and subscriptions).
    observer: Arc<crate::Observer>,
}

/// Publishes Kubernetes Events on one FlagRollout.
#[derive(Clone)]
struct EventSink {
    recorder: Recorder,
    object: ObjectReference,
}

impl EventSink {
    async fn publish(&self, (warning, reason, note): (bool, &str, String)) {
        crate::publish_event(&self.recorder, &self.object, warning, reason, note).await;
    }
}

/// Drives one FlagRollout to a final phase, writing each status change to
/// its `/status` (in order; a burst of changes may be written as the last
/// of them, and the final status is always written before this ends) and
/// each event as a Kubernetes Event. `abort` set to true sets the flag back
/// to 0 % (a user's abort).
async fn drive_one(
    d: Drive,
    saved: Saved,
    writer: fr::HttpWriter,
    analysis: Option<fr::Analysis>,
    mut abort: tokio::sync::watch::Receiver<bool>,
) {
    let Drive {
        api,
        key,
        name,
        generation,
        written,
        events,
        observer,
    } = d;
    let (tx, mut rx) = tokio::sync::watch::channel(saved.clone());
    let writing = async {
        let mut last = written;
        loop {
            let closed = rx.changed().await.is_err();
            if closed {
                break;
            }
            let next = status_value(&rx.borrow_and_update().clone(), generation);
            if next == last {
                continue;
            }
            match write_status(&api, &name, &last, &next).await {
                Ok(()) => last = next,
                Err(e) if is_not_found(&e) => break,
                Err(e) => {
                    tracing::warn!(flag_rollout = %key, "writing the status: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    rx.mark_changed();
                }
            }
        }
    };
    // Events in order, published beside the drive (observe cannot wait).
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let publishing = async {
        while let Some(ev) = ev_rx.recv().await {
            if let Some(n) = fr::notification(&name, &saved.spec, &ev, now_ms()) {
                observer.notify(n);
            }
            events.publish(ev.summary(&saved.spec.flag)).await;
        }
    };
    let driving = async {
        let mut status = saved.state.clone();
        let mut observe = |st: &Status, evs: &[Event]| {
            tx.send_modify(|s| s.state = st.clone());
            for ev in evs {
                tracing::info!(flag_rollout = %key, flag = %saved.spec.flag, event = ?ev, "flag rollout");
                let _ = ev_tx.send(ev.clone());
            }
        };
        let options = fr::DriveOptions {
            // A rollback must never be left half done: retry for ever (the
            // status says why it is waiting).
            max_write_attempts: None,
            retry_backoff: Duration::from_secs(1),
        };
        if let Err(e) = fr::drive(
            &saved.spec,
            &mut status,
            &writer,
            analysis.as_ref(),
            &mut abort,
            &options,
            &mut observe,
        )
        .await
        {
            tracing::error!(flag_rollout = %key, "stopped: {e}");
        }
        drop(tx);
        drop(ev_tx);
    };
    tokio::join!(driving, writing, publishing);
}

/// The FlagRollout `obj` in the shape of `serin up`'s `GET
/// /v1/flagrollouts/NAME`, from its spec and `/status`.
fn describe_object(obj: &DynamicObject) -> Value {
    let name = obj.name_any();
    let status = obj.data.get("status").cloned().unwrap_or(Value::Null);
    let spec = obj.data.get("spec").cloned().unwrap_or(json!({}));
    let f = model(obj);
    let (flag, steps, interval, analysis) = match &f {
        Ok(f) => (
            json!(f.flag()),
            json!(f.spec.steps),
            json!(f.spec.interval.0),
            json!(f.spec.analysis),
        ),
        Err(_) => (
            spec.get("flag").cloned().unwrap_or(json!(name)),
            spec.get("steps").cloned().unwrap_or(json!([])),
            spec.get("interval").cloned().unwrap_or(Value::Null),
            spec.get("analysis").cloned().unwrap_or(Value::Null),
        ),
    };
    let total = steps.as_array().map_or(0, Vec::len);
    let mut out = json!({
        "name": name, "flag": flag,
        "environment": status.get("environment").cloned()
            .or_else(|| spec.get("environment").cloned()),
        "steps": steps, "interval": interval, "analysis": analysis, "totalSteps": total,
    });
    if let Some(o) = out.as_object_mut() {
        if status.get("phase").is_some() {
            for k in [
                "phase",
                "currentStep",
                "percentage",
                "message",
                "startedAt",
                "updatedAt",
                "startedAtMs",
                "updatedAtMs",
                "stepResults",
                "conditions",
            ] {
                o.insert(k.into(), status.get(k).cloned().unwrap_or(Value::Null));
            }
        } else {
            o.insert("phase".into(), json!("Pending"));
            o.insert("currentStep".into(), json!(0));
            o.insert("percentage".into(), Value::Null);
            o.insert(
                "message".into(),
                json!("not started yet (is serin controller running with the FlagRollout CRD?)"),
            );
            o.insert("stepResults".into(), json!([]));
        }
    }
    out
}

/// The FlagRollout `name` of `ns` as `serin get flagrollout NAME` shows it.
pub async fn describe_flag_rollout(client: &Client, ns: &str, name: &str) -> Result<Value, Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &flag_rollout_resource());
    let obj = api
        .get_opt(name)
        .await
        .map_err(Error::kube(format!("reading FlagRollout {name}")))?
        .ok_or_else(|| Error::Invalid(format!("no FlagRollout named {name} in namespace {ns}")))?;
    Ok(describe_object(&obj))
}

/// Every FlagRollout of `ns`, as [`describe_flag_rollout`] shows each.
pub async fn describe_flag_rollouts(client: &Client, ns: &str) -> Result<Vec<Value>, Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &flag_rollout_resource());
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(Error::kube(format!(
            "listing FlagRollouts in {ns} (is the CRD installed? `serin controller install`)"
        )))?;
    Ok(list.items.iter().map(describe_object).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_diff_removes_what_the_new_status_lacks() {
        let old = json!({"a": 1, "b": {"c": "x", "d": [1]}, "e": "gone"});
        let new = json!({"a": 2, "b": {"d": [2]}});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"a": 2, "b": {"c": null, "d": [2]}, "e": null})
        );
    }

    #[test]
    fn run_names_become_object_names() {
        assert_eq!(
            object_name("new-payment-processor-10"),
            "new-payment-processor-10"
        );
        assert_eq!(object_name("New_Checkout-50"), "new-checkout-50");
        assert_eq!(object_name("_x_"), "x");
    }
}
