//! The job metric provider on a cluster, as Argo's (`metricproviders/job`):
//! each measurement is a batch/v1 Job created from the metric's
//! `provider.job` (its `metadata.labels`/`annotations` and `spec`), owned
//! by the AnalysisRun (controller ownerReference), labelled
//! `analysisrun.argoproj.io/uid` and annotated with the run's and the
//! metric's names. The Job's conditions decide: `Complete` → Successful,
//! `Failed` → Failed. A measurement cut short (the run terminated or ended,
//! the provider's timeout) deletes its Job, as Argo's `Terminate`; of the
//! finished Jobs the newest [`KEEP_JOBS`] per metric are kept, as Argo's
//! garbage collection.
//!
//! Each measurement's `metadata` carries `job-name` once its Job exists,
//! as Argo's.
//!
//! Difference from Argo: the Job is named `<run uid>-<metric>-<n>` (dashes,
//! a DNS label, at most 63 characters) where Argo writes
//! `<run uid>.<metric>.<n>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::wait::await_condition;
use serde_json::{Value, json};
use serin_analysis as an;
use serin_analysis::providers::BoxFuture;

/// Label with the owning AnalysisRun's uid (Argo's).
pub const LABEL_RUN_UID: &str = "analysisrun.argoproj.io/uid";
/// Annotation with the owning AnalysisRun's name (Argo's).
pub const ANN_RUN_NAME: &str = "analysisrun.argoproj.io/name";
/// Annotation with the metric's name (Argo's).
pub const ANN_METRIC: &str = "analysisrun.argoproj.io/metric-name";
/// Finished Jobs kept per metric (Argo's default measurement history).
pub const KEEP_JOBS: usize = 10;

/// Runs one AnalysisRun's job measurements as Jobs in its namespace.
pub(crate) struct KubeJobs {
    api: Api<Job>,
    run_name: String,
    run_uid: String,
    /// Per metric, one entry per measurement in the order they were taken
    /// (the n-th is the metric's measurement `seq` n: the machine takes
    /// one at a time per metric): the Job's name once created.
    created: Mutex<HashMap<String, Vec<Option<String>>>>,
    /// Told when a Job is created, so the run's status is written again
    /// with its name.
    pub(crate) job_created: tokio::sync::Notify,
}

impl KubeJobs {
    pub(crate) fn new(client: kube::Client, ns: &str, run_name: &str, run_uid: &str) -> Self {
        Self {
            api: Api::namespaced(client, ns),
            run_name: run_name.to_string(),
            run_uid: run_uid.to_string(),
            created: Mutex::new(HashMap::new()),
            job_created: tokio::sync::Notify::new(),
        }
    }

    /// The next Job's name for `metric`: Argo's `<uid>.<metric>.<n>` made a
    /// DNS label (lowercase, dashes, at most 63 characters).
    fn next_name(&self, metric: &str) -> String {
        let n = match self.created.lock() {
            Ok(mut t) => {
                let c = t.entry(metric.to_string()).or_default();
                c.push(None);
                c.len()
            }
            Err(_) => 1,
        };
        let suffix = format!("-{n}");
        let metric: String = metric
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let mut name = format!("{}-{metric}", self.run_uid);
        name.truncate(63 - suffix.len());
        let name = name.trim_end_matches('-');
        format!("{name}{suffix}")
    }

    /// The Job of `metric`'s measurement number `seq`, once created (Argo's
    /// `job-name` in the measurement's `metadata`).
    pub(crate) fn job_name(&self, metric: &str, seq: u64) -> Option<String> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.created.lock().ok()?.get(metric)?.get(i)?.clone()
    }

    /// Notes that `name`, the newest of `metric`'s Jobs, exists.
    fn created(&self, metric: &str, name: &str) {
        if let Ok(mut t) = self.created.lock()
            && let Some(last) = t.get_mut(metric).and_then(|c| c.last_mut())
        {
            *last = Some(name.to_string());
        }
        self.job_created.notify_one();
    }

    fn job_object(&self, name: &str, j: &an::JobCommand) -> Result<Job, String> {
        let meta = |key: &str| -> BTreeMap<String, Value> {
            j.job
                .pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        };
        let mut labels = meta("labels");
        labels.insert(LABEL_RUN_UID.into(), json!(self.run_uid));
        let mut annotations = meta("annotations");
        annotations.insert(ANN_RUN_NAME.into(), json!(self.run_name));
        annotations.insert(ANN_METRIC.into(), json!(j.metric));
        let obj = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": labels, "annotations": annotations,
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1",
                    "kind": "AnalysisRun", "name": self.run_name, "uid": self.run_uid,
                    "controller": true, "blockOwnerDeletion": true}]},
            "spec": j.job.get("spec").cloned().unwrap_or(json!({})),
        });
        serde_json::from_value(obj).map_err(|e| format!("provider.job.spec is not a Job spec: {e}"))
    }

    async fn measure_job(&self, j: &an::JobCommand) -> an::Outcome {
        let name = self.next_name(&j.metric);
        let job = match self.job_object(&name, j) {
            Ok(job) => job,
            Err(e) => return an::Outcome::Error(format!("metric `{}`: {e}", j.metric)),
        };
        match self.api.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // A retried create (Argo's check): ours only if we own it.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let ours = self
                    .api
                    .get_opt(&name)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|j| {
                        j.metadata
                            .owner_references
                            .unwrap_or_default()
                            .iter()
                            .any(|o| o.controller == Some(true) && o.uid == self.run_uid)
                    });
                if !ours {
                    return an::Outcome::Error(format!(
                        "job {name} exists and belongs to another AnalysisRun"
                    ));
                }
            }
            Err(e) => return an::Outcome::Error(format!("creating job {name}: {e}")),
        }
        self.created(&j.metric, &name);
        tracing::info!(run = %self.run_name, metric = %j.metric, job = %name, "analysis job created");
        // Deletes the Job if this measurement is dropped before it ends.
        let mut guard = Terminate {
            api: self.api.clone(),
            name: name.clone(),
            armed: true,
        };
        let finished = await_condition(self.api.clone(), &name, |j: Option<&Job>| {
            j.is_none_or(|j| verdict(j).is_some())
        })
        .await;
        guard.armed = false;
        let outcome = match finished {
            Err(e) => an::Outcome::Error(format!("watching job {name}: {e}")),
            Ok(None) => an::Outcome::Error(format!("job {name} was deleted before it finished")),
            Ok(Some(job)) => match verdict(&job) {
                Some((true, _)) => an::Outcome::Decided {
                    phase: an::Phase::Successful,
                    value: None,
                    message: String::new(),
                },
                Some((false, why)) => an::Outcome::Decided {
                    phase: an::Phase::Failed,
                    value: None,
                    message: format!("job {name} failed: {why}"),
                },
                None => an::Outcome::Error(format!("job {name}: no verdict")),
            },
        };
        self.collect_garbage(&j.metric).await;
        outcome
    }

    /// Deletes this run's finished Jobs of `metric` beyond the newest
    /// [`KEEP_JOBS`] (Argo's `GarbageCollect`).
    async fn collect_garbage(&self, metric: &str) {
        let Ok(list) = self
            .api
            .list(&ListParams::default().labels(&format!("{LABEL_RUN_UID}={}", self.run_uid)))
            .await
        else {
            return;
        };
        let mut jobs: Vec<Job> = list
            .items
            .into_iter()
            .filter(|j| {
                j.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_METRIC))
                    .is_some_and(|m| m == metric)
                    && verdict(j).is_some()
            })
            .collect();
        if jobs.len() <= KEEP_JOBS {
            return;
        }
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone());
        let excess = jobs.len() - KEEP_JOBS;
        for j in &jobs[..excess] {
            if let Some(name) = &j.metadata.name {
                delete(&self.api, name).await;
            }
        }
    }
}

/// `Some((true, _))` once the Job has the `Complete` condition,
/// `Some((false, why))` once it has `Failed` (Argo's reading).
fn verdict(job: &Job) -> Option<(bool, String)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let mut out = None;
    for c in conditions.iter().filter(|c| c.status == "True") {
        match c.type_.as_str() {
            "Complete" => out = Some((true, String::new())),
            "Failed" => {
                let why = [c.reason.clone(), c.message.clone()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                out = Some((false, if why.is_empty() { "Failed".into() } else { why }));
            }
            _ => {}
        }
    }
    out
}

async fn delete(api: &Api<Job>, name: &str) {
    // Foreground, as Argo: the Job's pods go before it does.
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => tracing::info!(job = %name, "analysis job deleted"),
        Err(e) if crate::is_not_found(&e) => {}
        Err(e) => tracing::warn!(job = %name, "deleting analysis job: {e}"),
    }
}

/// Deletes the Job of a measurement dropped mid-way (run terminated or
/// ended, timeout), Argo's `Terminate`.
struct Terminate {
    api: Api<Job>,
    name: String,
    armed: bool,
}

impl Drop for Terminate {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (api, name) = (self.api.clone(), std::mem::take(&mut self.name));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { delete(&api, &name).await });
        }
    }
}

impl an::Provider for KubeJobs {
    fn measure<'a>(&'a self, spec: &'a an::machine::ProviderSpec) -> BoxFuture<'a, an::Outcome> {
        Box::pin(async move {
            match spec {
                an::machine::ProviderSpec::Job(j) => self.measure_job(j).await,
                _ => an::Outcome::Error("job provider given another provider's spec".into()),
            }
        })
    }
}
