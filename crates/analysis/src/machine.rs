//! The pure AnalysisRun state machine: no clock, no I/O. Time is `now_ms`,
//! milliseconds on any monotonic scale the caller chooses.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serin_spec::{
    AnalysisRunArgument, AnalysisTemplate, DryRun, IntOrString, MeasurementRetention, Metric,
    PrometheusMetric, WebMetric,
};

use crate::args::{ArgError, ArgSources, ResolvedArgs, resolve_args, substitute, substitute_json};
use crate::condition::{Condition, ConditionError};

/// Argo's `DefaultConsecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i64 = 4;
/// Argo's `DefaultErrorRetryInterval`: retry after an error when no interval is set.
pub const DEFAULT_ERROR_RETRY_INTERVAL_MS: u64 = 10_000;
/// Argo's `DefaultMeasurementHistoryLimit`.
pub const DEFAULT_MEASUREMENT_RETENTION: usize = 10;
/// Job timeout when the Job sets no `activeDeadlineSeconds` (Serin choice).
pub const DEFAULT_JOB_TIMEOUT_MS: u64 = 600_000;
/// Prometheus query timeout when `timeout` is unset (Serin choice).
pub const DEFAULT_PROMETHEUS_TIMEOUT_MS: u64 = 30_000;
/// Web provider timeout when `timeoutSeconds` is unset (Argo's default).
pub const DEFAULT_WEB_TIMEOUT_MS: u64 = 10_000;

/// Phase of a measurement, a metric, or a run (Argo's `AnalysisPhase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not started.
    Pending,
    /// Measuring.
    Running,
    /// Passed.
    Successful,
    /// Failed.
    Failed,
    /// Errored.
    Error,
    /// Neither passed nor failed.
    Inconclusive,
}

impl Phase {
    /// True for the final phases.
    pub fn completed(self) -> bool {
        matches!(
            self,
            Phase::Successful | Phase::Failed | Phase::Error | Phase::Inconclusive
        )
    }
    /// Argo's `IsWorse` order: Successful < Inconclusive < Error < Failed.
    fn rank(self) -> u8 {
        match self {
            Phase::Pending => 0,
            Phase::Running => 1,
            Phase::Successful => 2,
            Phase::Inconclusive => 3,
            Phase::Error => 4,
            Phase::Failed => 5,
        }
    }
}

/// Why an AnalysisRun could not be built from its templates. Each names the
/// metric and field so lint can locate it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuildError {
    /// An argument problem.
    #[error(transparent)]
    Arg(#[from] ArgError),
    /// An argument problem inside one metric.
    #[error("metric `{metric}`: {source}")]
    MetricArg {
        /// Metric name.
        metric: String,
        /// The problem.
        source: ArgError,
    },
    /// A condition does not compile.
    #[error("metric `{metric}` {field}: {source}")]
    Condition {
        /// Metric name.
        metric: String,
        /// `successCondition` or `failureCondition`.
        field: &'static str,
        /// The problem.
        source: ConditionError,
    },
    /// A field has a bad value.
    #[error("metric `{metric}` {field}: {message}")]
    Field {
        /// Metric name.
        metric: String,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Two templates define the same metric.
    #[error("metric `{0}` is defined more than once across the run's templates")]
    DuplicateMetric(String),
    /// No provider, several, or one Serin cannot run.
    #[error("metric `{metric}`: {message}")]
    Provider {
        /// Metric name.
        metric: String,
        /// What is wrong.
        message: String,
    },
    /// The run has no metrics.
    #[error("the analysis has no metrics")]
    NoMetrics,
}

/// A job provider reduced to a local command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobCommand {
    /// The metric the job measures.
    #[serde(default)]
    pub metric: String,
    /// `command[0]`, or `args[0]` when there is no command; empty when the
    /// container sets neither (a cluster runs the image's entrypoint; the
    /// local provider refuses it).
    pub program: String,
    /// The rest of `command` followed by `args`.
    pub args: Vec<String>,
    /// Environment from `env[].value`.
    pub env: Vec<(String, String)>,
    /// `activeDeadlineSeconds`, or [`DEFAULT_JOB_TIMEOUT_MS`].
    pub timeout_ms: u64,
    /// The provider's `job` as written, arguments substituted (`metadata`
    /// and `spec`): what a cluster creates as a batch/v1 Job.
    #[serde(default)]
    pub job: serde_json::Value,
}

/// A provider with arguments substituted, ready for I/O.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ProviderSpec {
    /// Prometheus HTTP API.
    Prometheus(PrometheusMetric),
    /// HTTP request + JSONPath.
    Web(WebMetric),
    /// A local command (Argo's Kubernetes Job).
    Job(JobCommand),
    /// Serin's proxy statistics (provider slot; implemented elsewhere).
    Builtin(serde_json::Value),
    /// The sequential judge over Prometheus (`plugin: serin.dev/judge`).
    Judge(crate::providers::judge::JudgeTask),
}

impl ProviderSpec {
    /// How long one measurement may take.
    pub fn timeout(&self) -> Duration {
        let ms = match self {
            ProviderSpec::Prometheus(p) => p
                .timeout
                .filter(|t| *t > 0)
                .map(|t| t as u64 * 1000)
                .unwrap_or(DEFAULT_PROMETHEUS_TIMEOUT_MS),
            ProviderSpec::Web(w) => w
                .timeout_seconds
                .filter(|t| *t > 0)
                .map(|t| t as u64 * 1000)
                .unwrap_or(DEFAULT_WEB_TIMEOUT_MS),
            ProviderSpec::Job(j) => j.timeout_ms,
            ProviderSpec::Builtin(_) => DEFAULT_WEB_TIMEOUT_MS,
            ProviderSpec::Judge(j) => j.spec.timeout_s.saturating_mul(1000),
        };
        Duration::from_millis(ms)
    }
    /// Provider name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderSpec::Prometheus(_) => "prometheus",
            ProviderSpec::Web(_) => "web",
            ProviderSpec::Job(_) => "job",
            ProviderSpec::Builtin(_) => "builtin",
            ProviderSpec::Judge(_) => crate::providers::judge::PLUGIN,
        }
    }
}

/// One measurement to take now.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricTask {
    /// Metric name.
    pub metric: String,
    /// Provider, arguments substituted.
    pub provider: ProviderSpec,
}

/// What a provider produced.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A value for the conditions (`result`).
    Value(serde_json::Value),
    /// A phase decided by the provider itself (job: exit code), with its value.
    Decided {
        /// Successful or Failed.
        phase: Phase,
        /// Shown value.
        value: Option<serde_json::Value>,
        /// Message (e.g. the job's last output lines).
        message: String,
    },
    /// The provider could not measure (down, timeout, garbage).
    Error(String),
}

/// One recorded measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// Phase.
    pub phase: Phase,
    /// Value the conditions saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Why (errors, condition failures, job output).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Start, ms.
    pub started_at: u64,
    /// End, ms (None while in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Its number among its metric's measurements (1 = the first); the
    /// n-th provider call of the metric made it, so an adapter can tie
    /// what it created to it (a cluster's Job: Argo's `job-name`). In
    /// memory only: not part of Argo's status.
    #[serde(skip)]
    pub seq: u64,
}

/// Status of one metric (Argo's `MetricResult`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// Metric name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// Message of the assessment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Latest measurements, oldest first (trimmed to the retention limit).
    pub measurements: Vec<Measurement>,
    /// Completed, non-error measurements.
    pub count: i64,
    /// Successful measurements.
    pub successful: i64,
    /// Failed measurements.
    pub failed: i64,
    /// Inconclusive measurements.
    pub inconclusive: i64,
    /// Error measurements.
    pub error: i64,
    /// Errors in a row.
    pub consecutive_error: i64,
    /// Successes in a row.
    pub consecutive_success: i64,
    /// Dry-run metric: does not decide the run.
    #[serde(default)]
    pub dry_run: bool,
    /// Measurements started so far (the last one's `seq`); in memory only.
    #[serde(skip)]
    pub started: u64,
}

/// Serializable status of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Run name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// Why it ended as it did.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the first measurement was scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Terminated by request.
    #[serde(default)]
    pub terminated: bool,
    /// One per metric, in template order.
    pub metric_results: Vec<MetricResult>,
}

#[derive(Debug)]
struct MetricSpec {
    name: String,
    interval_ms: Option<u64>,
    initial_delay_ms: Option<u64>,
    /// `None`: until terminated.
    effective_count: Option<i64>,
    success: Option<Condition>,
    failure: Option<Condition>,
    failure_limit: i64,
    inconclusive_limit: i64,
    consecutive_error_limit: i64,
    consecutive_success_limit: i64,
    failure_limit_set: bool,
    consecutive_success_limit_set: bool,
    retention: usize,
    provider: ProviderSpec,
}

/// Everything that goes into a run besides templates.
#[derive(Debug, Clone, Default)]
pub struct RunInputs {
    /// Arguments from the rollout step / strategy.
    pub args: Vec<AnalysisRunArgument>,
    /// Values `valueFrom` reads.
    pub sources: ArgSources,
    /// Dry-run metric names (regex, `*` = all) from the rollout.
    pub dry_run: Vec<DryRun>,
    /// Measurement retention from the rollout.
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Job metrics run as Kubernetes Jobs (a container may rely on its
    /// image's entrypoint), not as local commands (which need one).
    pub jobs_on_cluster: bool,
}

/// An AnalysisRun: merged templates with resolved args, plus its status.
#[derive(Debug)]
pub struct AnalysisRun {
    metrics: Vec<MetricSpec>,
    status: RunStatus,
}

fn int_field(
    metric: &Metric,
    v: &Option<IntOrString>,
    field: &'static str,
    args: &ResolvedArgs,
) -> Result<Option<i64>, BuildError> {
    match v {
        None => Ok(None),
        Some(IntOrString::Int(i)) => Ok(Some(*i)),
        Some(IntOrString::String(s)) => {
            let s = substitute(s, args, field).map_err(|source| BuildError::MetricArg {
                metric: metric.name.clone(),
                source,
            })?;
            s.trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| BuildError::Field {
                    metric: metric.name.clone(),
                    field,
                    message: format!("`{s}` is not an integer"),
                })
        }
    }
}

fn duration_field(
    metric: &Metric,
    v: &Option<serin_spec::DurationString>,
    field: &'static str,
    args: &ResolvedArgs,
) -> Result<Option<u64>, BuildError> {
    let Some(d) = v else { return Ok(None) };
    let s = substitute(&d.0, args, field).map_err(|source| BuildError::MetricArg {
        metric: metric.name.clone(),
        source,
    })?;
    serin_spec::parse_go_duration(&s)
        .map(|d| Some(d.as_millis() as u64))
        .map_err(|e| BuildError::Field {
            metric: metric.name.clone(),
            field,
            message: e.to_string(),
        })
}

fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" || pattern == name {
        return true;
    }
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(name))
}

fn job_command(
    metric: &str,
    job: &serde_json::Value,
    on_cluster: bool,
) -> Result<JobCommand, BuildError> {
    let err = |message: String| BuildError::Provider {
        metric: metric.to_string(),
        message,
    };
    let spec = job.get("spec").unwrap_or(job);
    let container = crate::args::field_path(spec, "template.spec.containers[0]")
        .ok_or_else(|| err("job provider: spec.template.spec.containers[0] is missing".into()))?;
    let strings = |key: &str| -> Vec<String> {
        container
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut words = strings("command");
    words.extend(strings("args"));
    let program = if words.is_empty() {
        if !on_cluster {
            return Err(err(
                "job provider: the container has no `command`/`args` (Serin runs them as a local command; images are not pulled)".into(),
            ));
        }
        String::new()
    } else {
        words.remove(0)
    };
    let env = container
        .get("env")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e.get("name")?.as_str()?.to_string(),
                        e.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let timeout_ms = spec
        .get("activeDeadlineSeconds")
        .and_then(|v| v.as_u64())
        .map(|s| s * 1000)
        .unwrap_or(DEFAULT_JOB_TIMEOUT_MS);
    Ok(JobCommand {
        metric: metric.to_string(),
        program,
        args: words,
        env,
        timeout_ms,
        job: job.clone(),
    })
}

fn provider_spec(
    metric: &Metric,
    args: &ResolvedArgs,
    jobs_on_cluster: bool,
) -> Result<ProviderSpec, BuildError> {
    let set = metric.provider.set_providers();
    let perr = |message: String| BuildError::Provider {
        metric: metric.name.clone(),
        message,
    };
    if set.len() != 1 {
        return Err(perr(format!(
            "exactly one provider must be set, found {}",
            if set.is_empty() {
                "none".to_string()
            } else {
                set.join(", ")
            }
        )));
    }
    let raw = serde_json::to_value(&metric.provider).map_err(|e| perr(e.to_string()))?;
    let substituted =
        substitute_json(&raw, args, "provider").map_err(|source| BuildError::MetricArg {
            metric: metric.name.clone(),
            source,
        })?;
    let p: serin_spec::MetricProvider =
        serde_json::from_value(substituted).map_err(|e| perr(e.to_string()))?;
    if let Some(prom) = p.prometheus {
        if prom.address.as_deref().unwrap_or("").is_empty() {
            return Err(perr("prometheus.address is required".into()));
        }
        if prom.authentication.is_some() {
            return Err(perr(
                "prometheus.authentication (sigv4/oauth2) is not supported".into(),
            ));
        }
        return Ok(ProviderSpec::Prometheus(prom));
    }
    if let Some(web) = p.web {
        if web.url.is_empty() {
            return Err(perr("web.url is required".into()));
        }
        if let Some(jp) = &web.json_path {
            crate::providers::web::parse_json_path(jp).map_err(perr)?;
        }
        return Ok(ProviderSpec::Web(web));
    }
    if let Some(job) = p.job {
        return Ok(ProviderSpec::Job(job_command(
            &metric.name,
            &job,
            jobs_on_cluster,
        )?));
    }
    if let Some(b) = p.builtin {
        return Ok(ProviderSpec::Builtin(b));
    }
    if let Some(plugin) = p.plugin {
        use crate::providers::judge;
        let names: Vec<&String> = plugin
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        return match (names.as_slice(), plugin.get(judge::PLUGIN)) {
            ([_], Some(block)) => judge::parse(block)
                .map(|spec| {
                    ProviderSpec::Judge(judge::JudgeTask {
                        metric: metric.name.clone(),
                        spec,
                    })
                })
                .map_err(|e| perr(e.to_string())),
            _ => Err(perr(format!(
                "metric plugin {} is not supported by Serin (its own `{}` is)",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                judge::PLUGIN
            ))),
        };
    }
    Err(perr(format!(
        "provider `{}` is not supported by Serin",
        set.join(", ")
    )))
}

impl AnalysisRun {
    /// Build a run from merged templates (AnalysisTemplate and
    /// ClusterAnalysisTemplate alike) and the rollout's inputs. Every
    /// argument, condition, duration and limit is checked here, so a bad
    /// template fails before the rollout starts.
    pub fn new(
        name: &str,
        templates: &[AnalysisTemplate],
        inputs: &RunInputs,
    ) -> Result<Self, BuildError> {
        let template_args: Vec<_> = templates
            .iter()
            .flat_map(|t| t.spec.args.iter().cloned())
            .collect();
        let args = resolve_args(&template_args, &inputs.args, &inputs.sources)?;
        let dry_runs: Vec<&DryRun> = templates
            .iter()
            .flat_map(|t| t.spec.dry_run.iter())
            .chain(inputs.dry_run.iter())
            .collect();
        let retentions: Vec<&MeasurementRetention> = templates
            .iter()
            .flat_map(|t| t.spec.measurement_retention.iter())
            .chain(inputs.measurement_retention.iter())
            .collect();
        let mut metrics: Vec<MetricSpec> = Vec::new();
        let mut results = Vec::new();
        for m in templates.iter().flat_map(|t| t.spec.metrics.iter()) {
            if metrics.iter().any(|x| x.name == m.name) {
                return Err(BuildError::DuplicateMetric(m.name.clone()));
            }
            let interval_ms = duration_field(m, &m.interval, "interval", &args)?;
            let initial_delay_ms = duration_field(m, &m.initial_delay, "initialDelay", &args)?;
            let count = int_field(m, &m.count, "count", &args)?;
            let ferr = |field: &'static str, message: String| BuildError::Field {
                metric: m.name.clone(),
                field,
                message,
            };
            if let Some(c) = count {
                if c < 0 {
                    return Err(ferr("count", "must be >= 0".into()));
                }
                // Argo's ValidateMetric: count > 1 needs an interval.
                if c > 1 && interval_ms.is_none() {
                    return Err(ferr("interval", "must be set when count > 1".into()));
                }
            }
            // Argo's EffectiveCount: unset/0 → 1 without interval, unbounded with one.
            let effective_count = match count {
                Some(c) if c > 0 => Some(c),
                _ if interval_ms.is_none() => Some(1),
                _ => None,
            };
            let failure_limit = int_field(m, &m.failure_limit, "failureLimit", &args)?;
            let inconclusive_limit =
                int_field(m, &m.inconclusive_limit, "inconclusiveLimit", &args)?;
            let consecutive_error_limit = int_field(
                m,
                &m.consecutive_error_limit,
                "consecutiveErrorLimit",
                &args,
            )?;
            let consecutive_success_limit = int_field(
                m,
                &m.consecutive_success_limit,
                "consecutiveSuccessLimit",
                &args,
            )?;
            for (field, v) in [
                ("failureLimit", failure_limit),
                ("inconclusiveLimit", inconclusive_limit),
                ("consecutiveErrorLimit", consecutive_error_limit),
                ("consecutiveSuccessLimit", consecutive_success_limit),
            ] {
                if v.is_some_and(|v| v < -1) {
                    return Err(ferr(field, "must be >= -1 (-1 = unlimited)".into()));
                }
            }
            let compile = |field: &'static str,
                           e: &Option<String>|
             -> Result<Option<Condition>, BuildError> {
                match e {
                    None => Ok(None),
                    Some(s) if s.trim().is_empty() => Ok(None),
                    Some(s) => {
                        let s = substitute(s, &args, field).map_err(|source| {
                            BuildError::MetricArg {
                                metric: m.name.clone(),
                                source,
                            }
                        })?;
                        Condition::compile(&s)
                            .map(Some)
                            .map_err(|source| BuildError::Condition {
                                metric: m.name.clone(),
                                field,
                                source,
                            })
                    }
                }
            };
            let success = compile("successCondition", &m.success_condition)?;
            let failure = compile("failureCondition", &m.failure_condition)?;
            let provider = provider_spec(m, &args, inputs.jobs_on_cluster)?;
            let dry_run = m.dry_run.unwrap_or(false)
                || dry_runs
                    .iter()
                    .any(|d| name_matches(&d.metric_name, &m.name));
            let retention = retentions
                .iter()
                .rev()
                .find(|r| name_matches(&r.metric_name, &m.name))
                .map(|r| r.limit.max(1) as usize)
                .or_else(|| {
                    m.measurement_retention
                        .as_ref()
                        .and_then(|v| v.get("limit").and_then(|l| l.as_u64()))
                        .map(|l| l.max(1) as usize)
                })
                .unwrap_or(DEFAULT_MEASUREMENT_RETENTION);
            metrics.push(MetricSpec {
                name: m.name.clone(),
                interval_ms,
                initial_delay_ms,
                effective_count,
                success,
                failure,
                failure_limit: failure_limit.unwrap_or(0),
                inconclusive_limit: inconclusive_limit.unwrap_or(0),
                consecutive_error_limit: consecutive_error_limit
                    .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT),
                consecutive_success_limit: consecutive_success_limit.unwrap_or(0),
                failure_limit_set: failure_limit.is_some(),
                consecutive_success_limit_set: consecutive_success_limit.is_some(),
                retention,
                provider,
            });
            results.push(MetricResult {
                name: m.name.clone(),
                phase: Phase::Pending,
                message: String::new(),
                measurements: Vec::new(),
                count: 0,
                successful: 0,
                failed: 0,
                inconclusive: 0,
                error: 0,
                consecutive_error: 0,
                consecutive_success: 0,
                dry_run,
                started: 0,
            });
        }
        if metrics.is_empty() {
            return Err(BuildError::NoMetrics);
        }
        Ok(AnalysisRun {
            metrics,
            status: RunStatus {
                name: name.to_string(),
                phase: Phase::Pending,
                message: String::new(),
                started_at: None,
                terminated: false,
                metric_results: results,
            },
        })
    }

    /// The run's phase.
    pub fn phase(&self) -> Phase {
        self.status.phase
    }

    /// Why the run is in its phase (empty while nothing notable happened).
    pub fn message(&self) -> &str {
        &self.status.message
    }

    /// The serializable status.
    pub fn status(&self) -> &RunStatus {
        &self.status
    }

    /// True once the run can no longer change.
    pub fn is_complete(&self) -> bool {
        self.status.phase.completed()
    }

    fn terminating(&self) -> bool {
        self.status.terminated
            || self.status.metric_results.iter().any(|r| {
                !r.dry_run && matches!(r.phase, Phase::Failed | Phase::Error | Phase::Inconclusive)
            })
    }

    /// Measurements due at `now_ms`. Each returned task is marked in flight
    /// (a Running measurement) until [`record`](Self::record) finishes it.
    pub fn next_due(&mut self, now_ms: u64) -> Vec<MetricTask> {
        if self.is_complete() {
            return Vec::new();
        }
        let started = *self.status.started_at.get_or_insert(now_ms);
        if self.status.phase == Phase::Pending {
            self.status.phase = Phase::Running;
        }
        let mut tasks = Vec::new();
        if self.terminating() {
            return tasks;
        }
        for (spec, res) in self
            .metrics
            .iter()
            .zip(self.status.metric_results.iter_mut())
        {
            if due_at(spec, res, started).is_some_and(|t| t <= now_ms) {
                res.started += 1;
                res.measurements.push(Measurement {
                    phase: Phase::Running,
                    value: None,
                    message: String::new(),
                    started_at: now_ms,
                    finished_at: None,
                    seq: res.started,
                });
                res.phase = Phase::Running;
                tasks.push(MetricTask {
                    metric: spec.name.clone(),
                    provider: spec.provider.clone(),
                });
            }
        }
        tasks
    }

    /// The earliest time a measurement becomes due, for the runner to sleep
    /// until; `None` when nothing is scheduled (complete, or waiting only on
    /// in-flight measurements).
    pub fn next_wake(&self) -> Option<u64> {
        if self.is_complete() || self.terminating() {
            return None;
        }
        let started = self.status.started_at?;
        self.metrics
            .iter()
            .zip(self.status.metric_results.iter())
            .filter_map(|(s, r)| due_at(s, r, started))
            .min()
    }

    /// Record what a provider produced for `metric`'s in-flight measurement
    /// and re-assess the run. A result for a metric with nothing in flight
    /// (e.g. arriving after termination) is ignored.
    pub fn record(&mut self, metric: &str, outcome: Outcome, now_ms: u64) {
        let Some(i) = self.metrics.iter().position(|m| m.name == metric) else {
            tracing::warn!(metric, "result for an unknown metric ignored");
            return;
        };
        let spec = &self.metrics[i];
        let res = &mut self.status.metric_results[i];
        let Some(last) = res
            .measurements
            .last_mut()
            .filter(|m| m.finished_at.is_none())
        else {
            tracing::debug!(metric, "result with no measurement in flight ignored");
            return;
        };
        let (phase, value, message) = match outcome {
            Outcome::Error(msg) => (Phase::Error, None, msg),
            Outcome::Decided {
                phase,
                value,
                message,
            } => (phase, value, message),
            Outcome::Value(v) => {
                let (p, msg) = evaluate(spec, &v);
                (p, Some(v), msg)
            }
        };
        last.phase = phase;
        last.value = value;
        last.message = message;
        last.finished_at = Some(now_ms);
        match phase {
            Phase::Successful => {
                res.successful += 1;
                res.count += 1;
                res.consecutive_error = 0;
                res.consecutive_success += 1;
            }
            Phase::Failed => {
                res.failed += 1;
                res.count += 1;
                res.consecutive_error = 0;
                res.consecutive_success = 0;
            }
            Phase::Inconclusive => {
                res.inconclusive += 1;
                res.count += 1;
                res.consecutive_error = 0;
                res.consecutive_success = 0;
            }
            Phase::Error => {
                res.error += 1;
                res.consecutive_error += 1;
                res.consecutive_success = 0;
            }
            Phase::Pending | Phase::Running => {}
        }
        let keep = spec.retention;
        if res.measurements.len() > keep {
            let drop = res.measurements.len() - keep;
            res.measurements.drain(..drop);
        }
        self.assess(now_ms);
    }

    /// Stop the run (Argo's `spec.terminate`): no new measurements; in-flight
    /// ones end as Successful "metric terminated"; metrics that have not
    /// failed are assessed Successful. The run's phase is then the worst
    /// metric phase — Successful unless something had already failed.
    pub fn terminate(&mut self, now_ms: u64) {
        if self.is_complete() {
            return;
        }
        self.status.started_at.get_or_insert(now_ms);
        self.status.terminated = true;
        self.assess(now_ms);
    }

    fn assess(&mut self, now_ms: u64) {
        let mut terminating = self.terminating();
        // Re-assess until stable: a metric failing makes the run terminate,
        // which changes how the other metrics are assessed.
        for _ in 0..3 {
            for (spec, res) in self
                .metrics
                .iter()
                .zip(self.status.metric_results.iter_mut())
            {
                if terminating
                    && let Some(last) = res
                        .measurements
                        .last_mut()
                        .filter(|m| m.finished_at.is_none())
                {
                    last.phase = Phase::Successful;
                    last.message = "metric terminated".into();
                    last.finished_at = Some(now_ms);
                }
                let (phase, message) = assess_metric(spec, res, terminating);
                if phase != res.phase {
                    tracing::info!(metric = %spec.name, from = ?res.phase, to = ?phase, "metric transitioned");
                    res.phase = phase;
                    res.message = message;
                }
            }
            let now_terminating = self.terminating();
            if now_terminating == terminating {
                break;
            }
            terminating = now_terminating;
        }
        let mut worst: Option<(Phase, String)> = None;
        let mut all_done = true;
        for r in &self.status.metric_results {
            if !r.phase.completed() {
                all_done = false;
                continue;
            }
            if r.dry_run {
                continue;
            }
            if worst
                .as_ref()
                .is_none_or(|(w, _)| r.phase.rank() > w.rank())
            {
                worst = Some((
                    r.phase,
                    format!(
                        "metric \"{}\" assessed {:?}: {}",
                        r.name, r.phase, r.message
                    ),
                ));
            }
        }
        if all_done {
            let (phase, message) =
                worst.unwrap_or((Phase::Successful, "all metrics are dry-run".into()));
            self.status.phase = phase;
            self.status.message = if phase == Phase::Successful && !self.status.terminated {
                String::new()
            } else if self.status.terminated && phase == Phase::Successful {
                "run terminated".into()
            } else {
                message
            };
        } else {
            self.status.phase = Phase::Running;
        }
    }
}

fn due_at(spec: &MetricSpec, res: &MetricResult, started: u64) -> Option<u64> {
    if res.phase.completed() {
        return None;
    }
    let Some(last) = res.measurements.last() else {
        return Some(started + spec.initial_delay_ms.unwrap_or(0));
    };
    let finished = last.finished_at?; // in flight
    if spec.effective_count.is_some_and(|c| res.count >= c) {
        return None;
    }
    Some(finished + spec.interval_ms.unwrap_or(DEFAULT_ERROR_RETRY_INTERVAL_MS))
}

/// Argo's `EvaluateResult`.
fn evaluate(spec: &MetricSpec, v: &serde_json::Value) -> (Phase, String) {
    let mut s = false;
    let mut f = false;
    if let Some(c) = &spec.success {
        match c.evaluate(v) {
            Ok(b) => s = b,
            Err(e) => return (Phase::Error, e.to_string()),
        }
    }
    if let Some(c) = &spec.failure {
        match c.evaluate(v) {
            Ok(b) => f = b,
            Err(e) => return (Phase::Error, e.to_string()),
        }
    }
    match (&spec.success, &spec.failure) {
        (None, None) => return (Phase::Successful, String::new()),
        (Some(_), None) => f = !s,
        (None, Some(_)) => s = !f,
        _ => {}
    }
    if f {
        let which = spec
            .failure
            .as_ref()
            .or(spec.success.as_ref())
            .map(|c| c.source())
            .unwrap_or("");
        let msg = if spec.failure.is_some() {
            format!("failureCondition `{which}` is true for result {v}")
        } else {
            format!("successCondition `{which}` is false for result {v}")
        };
        return (Phase::Failed, msg);
    }
    if !s {
        return (
            Phase::Inconclusive,
            format!("neither successCondition nor failureCondition is true for result {v}"),
        );
    }
    (Phase::Successful, String::new())
}

/// Argo's `assessMetricStatus`.
fn assess_metric(spec: &MetricSpec, res: &MetricResult, terminating: bool) -> (Phase, String) {
    if res.phase.completed() {
        return (res.phase, res.message.clone());
    }
    let Some(last) = res.measurements.last() else {
        if terminating {
            return (
                Phase::Successful,
                "run terminated before the first measurement".into(),
            );
        }
        return (Phase::Pending, String::new());
    };
    if last.finished_at.is_none() {
        return (Phase::Running, String::new());
    }
    if spec.failure_limit >= 0 && res.failed > spec.failure_limit {
        return (
            Phase::Failed,
            format!(
                "failed ({}) > failureLimit ({}); last: {}",
                res.failed, spec.failure_limit, last.message
            ),
        );
    }
    if spec.inconclusive_limit >= 0 && res.inconclusive > spec.inconclusive_limit {
        return (
            Phase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({}); last: {}",
                res.inconclusive, spec.inconclusive_limit, last.message
            ),
        );
    }
    if spec.consecutive_error_limit >= 0 && res.consecutive_error > spec.consecutive_error_limit {
        return (
            Phase::Error,
            format!(
                "consecutive errors ({}) > consecutiveErrorLimit ({}); last: {}",
                res.consecutive_error, spec.consecutive_error_limit, last.message
            ),
        );
    }
    let success_applicable =
        spec.consecutive_success_limit_set && spec.consecutive_success_limit > 0;
    if success_applicable && res.consecutive_success >= spec.consecutive_success_limit {
        return (
            Phase::Successful,
            format!(
                "consecutiveSuccessLimit ({}) reached",
                spec.consecutive_success_limit
            ),
        );
    }
    if let Some(c) = spec.effective_count
        && res.count >= c
    {
        let failure_applicable = !spec.failure_limit_set || spec.failure_limit >= 0;
        if success_applicable {
            let msg = format!(
                "count ({c}) reached without {} consecutive successes",
                spec.consecutive_success_limit
            );
            return if failure_applicable {
                (Phase::Inconclusive, msg)
            } else {
                (Phase::Failed, msg)
            };
        }
        return (Phase::Successful, format!("count ({c}) reached"));
    }
    if terminating {
        return (Phase::Successful, "run terminated".into());
    }
    (Phase::Running, String::new())
}
