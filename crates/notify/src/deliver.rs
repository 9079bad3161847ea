//! The [`Notifier`]: rendering, the bounded queue and background delivery.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serin_engine::{Event, PauseReason};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::config::{NotificationsConfig, ServiceConfig, Subscription, Template};
use crate::template::{default_template, render, unknown_variables, utc};
use crate::trigger::{Trigger, trigger_for};

/// What happened, for templates and the webhook body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NotificationEvent {
    /// Rollout name.
    pub rollout: String,
    /// The trigger (`None` only in `Default`; [`Notifier::notify`] skips it).
    pub trigger: Option<Trigger>,
    /// Revision involved, if any.
    pub revision: Option<String>,
    /// Step index, for step-completed.
    pub step: Option<u32>,
    /// Abort message or pause reason.
    pub message: Option<String>,
    /// Analysis run name.
    pub analysis_run: Option<String>,
    /// When, milliseconds since the epoch.
    pub at_ms: u64,
}

impl NotificationEvent {
    /// The notification for an engine event, if it fires a trigger.
    pub fn from_engine(rollout: &str, event: &Event, at_ms: u64) -> Option<Self> {
        let trigger = trigger_for(event)?;
        let mut n = NotificationEvent {
            rollout: rollout.to_string(),
            trigger: Some(trigger),
            at_ms,
            ..Default::default()
        };
        match event {
            Event::RolloutUpdated { revision } | Event::Completed { revision } => {
                n.revision = Some(revision.0.clone());
            }
            Event::StepCompleted { step } => n.step = Some(*step),
            Event::Paused { reason } => n.message = Some(pause_reason(*reason).into()),
            Event::Aborted { message } => n.message = Some(message.clone()),
            Event::AnalysisRunFailed { name } | Event::AnalysisRunError { name } => {
                n.analysis_run = Some(name.clone());
            }
            Event::ProgressDeadlineExceeded
            | Event::Restarted { .. }
            | Event::ExperimentStarted { .. }
            | Event::ExperimentCompleted { .. } => {}
        }
        Some(n)
    }

    /// An emergency rollback to `revision` completed.
    pub fn emergency_rollback(rollout: &str, revision: &str, at_ms: u64) -> Self {
        NotificationEvent {
            rollout: rollout.to_string(),
            trigger: Some(Trigger::EmergencyRollback),
            revision: Some(revision.to_string()),
            at_ms,
            ..Default::default()
        }
    }

    fn vars(&self, trigger: Trigger) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::new();
        v.insert("rollout", self.rollout.clone());
        v.insert("trigger", trigger.name().to_string());
        v.insert("time", utc(self.at_ms));
        v.insert("revision", self.revision.clone().unwrap_or_default());
        v.insert("message", self.message.clone().unwrap_or_default());
        v.insert("step", self.step.map(|s| s.to_string()).unwrap_or_default());
        v.insert(
            "analysis_run",
            self.analysis_run.clone().unwrap_or_default(),
        );
        v
    }
}

fn pause_reason(r: PauseReason) -> &'static str {
    match r {
        PauseReason::CanaryPauseStep => "CanaryPauseStep",
        PauseReason::BlueGreenPause => "BlueGreenPause",
        PauseReason::InconclusiveAnalysisRun => "InconclusiveAnalysisRun",
        PauseReason::PausedByUser => "PausedByUser",
    }
}

/// A configuration the notifier cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A service URL is not an `http://` or `https://` URL.
    #[error("notifications.services.{service}.url: {reason}")]
    Url {
        /// Service name.
        service: String,
        /// Why.
        reason: String,
    },
    /// A template names a variable that does not exist.
    #[error("notifications.templates.{trigger}: unknown variable {{{{{variable}}}}}")]
    Variable {
        /// Trigger.
        trigger: Trigger,
        /// The unknown name.
        variable: String,
    },
    /// A subscription names a service that is not configured.
    #[error("notifications.subscriptions: unknown service {0:?}")]
    UnknownService(String),
    /// A header name or value is not valid HTTP.
    #[error("notifications.services.{service}.headers: invalid header {header:?}")]
    Header {
        /// Service name.
        service: String,
        /// Header name.
        header: String,
    },
    /// `retry.maxAttempts`, `queueCapacity` or `maxInFlight` is zero.
    #[error("notifications: {0} must be at least 1")]
    Zero(&'static str),
    /// The extra CA file (`notifications.ca`) cannot be used.
    #[error("notifications.ca: {0}")]
    Tls(#[from] serin_tls::TlsError),
    /// No tokio runtime to run delivery on.
    #[error("notifications: Notifier::new must be called inside a tokio runtime")]
    NoRuntime,
}

/// Why a notification was not delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The queue was full; never attempted.
    Dropped,
    /// Every attempt failed (connection error, timeout, 5xx or 429).
    GaveUp,
    /// The receiver refused it (4xx other than 429); not retried.
    Rejected,
}

/// A notification that was not delivered (record it as an event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryFailure {
    /// Service name.
    pub service: String,
    /// Trigger.
    pub trigger: Trigger,
    /// Rollout.
    pub rollout: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why.
    pub kind: FailureKind,
    /// The last error.
    pub error: String,
}

/// Per-service counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    /// Delivered (2xx).
    pub delivered: u64,
    /// Given up or rejected.
    pub failed: u64,
    /// Retries (attempts after the first).
    pub retried: u64,
    /// Dropped because the queue was full.
    pub dropped: u64,
}

/// What [`Notifier::notify`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyResult {
    /// Deliveries queued.
    pub enqueued: usize,
    /// Deliveries dropped (queue full).
    pub dropped: usize,
}

struct Delivery {
    service: String,
    trigger: Trigger,
    rollout: String,
    uri: Uri,
    headers: Vec<(String, String)>,
    body: Bytes,
}

type Labels = Vec<(String, String)>;

/// http:// and https:// (system roots plus `notifications.ca`), pooled.
type HttpClient = Client<serin_tls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Shared {
    config: NotificationsConfig,
    uris: BTreeMap<String, Uri>,
    per_rollout: RwLock<BTreeMap<String, Vec<Subscription>>>,
    /// Per rollout, its `notifications.argoproj.io/` annotations as last
    /// read by [`Notifier::subscribe_from_annotations`].
    annotated: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    stats: Mutex<BTreeMap<String, ServiceStats>>,
    deliveries: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    registry: Registry,
    failures: broadcast::Sender<DeliveryFailure>,
}

impl Shared {
    fn count(&self, service: &str, f: impl FnOnce(&mut ServiceStats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(stats.entry(service.to_string()).or_default());
    }

    fn outcome(&self, d: &Delivery, outcome: &str) {
        self.deliveries
            .get_or_create(&vec![
                ("service".into(), d.service.clone()),
                ("trigger".into(), d.trigger.name().into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    fn fail(&self, d: &Delivery, attempts: u32, kind: FailureKind, error: String) {
        tracing::warn!(service = %d.service, trigger = %d.trigger, rollout = %d.rollout,
            attempts, ?kind, %error, "notification not delivered");
        let outcome = if kind == FailureKind::Dropped {
            "dropped"
        } else {
            "failed"
        };
        self.outcome(d, outcome);
        self.count(&d.service, |s| {
            if kind == FailureKind::Dropped {
                s.dropped += 1;
            } else {
                s.failed += 1;
            }
        });
        // No receiver is fine: failures are also counted and logged.
        let _ = self.failures.send(DeliveryFailure {
            service: d.service.clone(),
            trigger: d.trigger,
            rollout: d.rollout.clone(),
            attempts,
            kind,
            error,
        });
    }
}

/// Sends notifications in the background. Cheap to share (`Arc` inside);
/// dropping the last clone stops the delivery task once the queue drains.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Delivery>,
    shared: Arc<Shared>,
}

impl Notifier {
    /// Validates the configuration and starts the delivery task (call it
    /// inside a tokio runtime).
    pub fn new(config: NotificationsConfig) -> Result<Notifier, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        if config.retry.max_attempts == 0 {
            return Err(ConfigError::Zero("retry.maxAttempts"));
        }
        if config.queue_capacity == 0 {
            return Err(ConfigError::Zero("queueCapacity"));
        }
        if config.max_in_flight == 0 {
            return Err(ConfigError::Zero("maxInFlight"));
        }
        let mut uris = BTreeMap::new();
        for (name, svc) in &config.services {
            let uri: Uri = svc
                .url()
                .parse()
                .map_err(|e: hyper::http::uri::InvalidUri| ConfigError::Url {
                    service: name.clone(),
                    reason: e.to_string(),
                })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ConfigError::Url {
                    service: name.clone(),
                    reason: "must be an https:// or http:// URL with a host".into(),
                });
            }
            if let ServiceConfig::Webhook { headers, .. } = svc {
                for (k, v) in headers {
                    if hyper::header::HeaderName::try_from(k.as_str()).is_err()
                        || hyper::header::HeaderValue::try_from(v.as_str()).is_err()
                    {
                        return Err(ConfigError::Header {
                            service: name.clone(),
                            header: k.clone(),
                        });
                    }
                }
            }
            uris.insert(name.clone(), uri);
        }
        for sub in &config.subscriptions {
            if !config.services.contains_key(&sub.service) {
                return Err(ConfigError::UnknownService(sub.service.clone()));
            }
        }
        for (trigger, t) in &config.templates {
            let mut texts = vec![t.message.as_str()];
            for f in t.fields.iter().flatten() {
                texts.push(&f.value);
                texts.push(&f.title);
            }
            if let Some(variable) = texts.iter().flat_map(|s| unknown_variables(s)).next() {
                return Err(ConfigError::Variable {
                    trigger: *trigger,
                    variable,
                });
            }
        }
        let mut registry = Registry::default();
        let deliveries = Family::<Labels, Counter>::default();
        let retries = Family::<Labels, Counter>::default();
        registry.register(
            "notification_deliveries",
            "Notifications by service, trigger and outcome (delivered, failed, dropped)",
            deliveries.clone(),
        );
        registry.register(
            "notification_retries",
            "Notification delivery retries by service",
            retries.clone(),
        );
        // One client for every delivery, so connections (and TLS sessions)
        // to a receiver are reused; a bad CA file fails here, not mid-rollout.
        let client: HttpClient =
            serin_tls::client(&serin_tls::ClientOptions::with_cas(config.ca.iter()))?;
        let (failures, _) = broadcast::channel(64);
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let shared = Arc::new(Shared {
            config,
            uris,
            per_rollout: RwLock::new(BTreeMap::new()),
            annotated: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            deliveries,
            retries,
            registry,
            failures,
        });
        runtime.spawn(run(rx, client, Arc::clone(&shared)));
        Ok(Notifier { tx, shared })
    }

    /// Sets a rollout's own subscriptions (from its annotations, see
    /// [`crate::subscriptions_from_annotations`]), replacing earlier ones.
    /// Subscriptions to unconfigured services are skipped with a warning.
    pub fn set_rollout_subscriptions(&self, rollout: &str, subs: Vec<Subscription>) {
        let subs: Vec<Subscription> = subs
            .into_iter()
            .filter(|s| {
                let known = self.shared.config.services.contains_key(&s.service);
                if !known {
                    tracing::warn!(rollout, service = %s.service, "subscription to an unconfigured notification service");
                }
                known
            })
            .collect();
        let mut map = self
            .shared
            .per_rollout
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            map.remove(rollout);
        } else {
            map.insert(rollout.to_string(), subs);
        }
    }

    /// Subscribes `rollout` as its annotations say (Argo's
    /// `notifications.argoproj.io/subscribe.<trigger>.<service>`),
    /// replacing earlier ones. Cheap to call on every reconcile: only a
    /// change of those annotations does anything, and returns the ones
    /// skipped and why (`Some`, possibly empty); no change returns `None`,
    /// so a problem is reported once, not on every call.
    pub fn subscribe_from_annotations(
        &self,
        rollout: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Option<Vec<crate::AnnotationWarning>> {
        let ours: BTreeMap<String, String> = annotations
            .iter()
            .filter(|(k, _)| k.starts_with(crate::ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        {
            let mut last = self
                .shared
                .annotated
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.get(rollout) == Some(&ours) {
                return None;
            }
            last.insert(rollout.to_string(), ours.clone());
        }
        let (subs, warnings) = crate::subscriptions_from_annotations(&ours);
        self.set_rollout_subscriptions(rollout, subs);
        Some(warnings)
    }

    /// Queues the notification for every subscription to its trigger and
    /// returns at once; never waits for the network or for queue space.
    pub fn notify(&self, event: NotificationEvent) -> NotifyResult {
        let mut result = NotifyResult::default();
        let Some(trigger) = event.trigger else {
            return result;
        };
        let targets: Vec<(String, Option<String>)> = {
            let per = self
                .shared
                .per_rollout
                .read()
                .unwrap_or_else(|p| p.into_inner());
            let own = per.get(&event.rollout).map(Vec::as_slice).unwrap_or(&[]);
            let mut t = Vec::new();
            for sub in self.shared.config.subscriptions.iter().chain(own) {
                if sub.trigger != trigger {
                    continue;
                }
                if sub.recipients.is_empty() {
                    t.push((sub.service.clone(), None));
                } else {
                    for r in &sub.recipients {
                        t.push((sub.service.clone(), Some(r.clone())));
                    }
                }
            }
            t.sort();
            t.dedup();
            t
        };
        for (service, recipient) in targets {
            let Some(d) = self.delivery(&service, recipient.as_deref(), trigger, &event) else {
                continue;
            };
            match self.tx.try_send(d) {
                Ok(()) => result.enqueued += 1,
                Err(mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d)) => {
                    result.dropped += 1;
                    self.shared.fail(
                        &d,
                        0,
                        FailureKind::Dropped,
                        "notification queue full".into(),
                    );
                }
            }
        }
        result
    }

    fn delivery(
        &self,
        service: &str,
        recipient: Option<&str>,
        trigger: Trigger,
        event: &NotificationEvent,
    ) -> Option<Delivery> {
        let svc = self.shared.config.services.get(service)?;
        let uri = self.shared.uris.get(service)?.clone();
        let template = self
            .shared
            .config
            .templates
            .get(&trigger)
            .cloned()
            .unwrap_or_else(|| default_template(trigger));
        let (body, headers) = payload(svc, recipient, trigger, event, &template);
        Some(Delivery {
            service: service.to_string(),
            trigger,
            rollout: event.rollout.clone(),
            uri,
            headers,
            body: Bytes::from(body),
        })
    }

    /// Receives every delivery failure from now on (drops included). A slow
    /// receiver misses the oldest ones (they stay counted in [`Self::stats`]).
    pub fn failures(&self) -> broadcast::Receiver<DeliveryFailure> {
        self.shared.failures.subscribe()
    }

    /// Counters per service.
    pub fn stats(&self) -> BTreeMap<String, ServiceStats> {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Deliveries waiting in the queue (not yet picked up).
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// `notification_deliveries_total{service,trigger,outcome}` and
    /// `notification_retries_total{service}` in Prometheus text format,
    /// without the `# EOF` line (to concatenate into `/metrics`).
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.shared.registry) {
            tracing::error!(error = %e, "encoding notification metrics");
        }
        if out.ends_with("# EOF\n") {
            out.truncate(out.len() - "# EOF\n".len());
        }
        out
    }
}

/// The request body and headers for one service.
fn payload(
    svc: &ServiceConfig,
    recipient: Option<&str>,
    trigger: Trigger,
    event: &NotificationEvent,
    template: &Template,
) -> (Vec<u8>, Vec<(String, String)>) {
    let vars = event.vars(trigger);
    let text = render(&template.message, &vars);
    let json_header = ("content-type".to_string(), "application/json".to_string());
    match svc {
        ServiceConfig::Slack {
            channel, username, ..
        } => {
            let fields: Vec<serde_json::Value> = template
                .fields
                .clone()
                .unwrap_or_else(|| default_template(trigger).fields.unwrap_or_default())
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "title": render(&f.title, &vars),
                        "value": render(&f.value, &vars),
                        "short": f.short,
                    })
                })
                .collect();
            let color = template
                .color
                .clone()
                .or_else(|| default_template(trigger).color)
                .unwrap_or_else(|| "good".into());
            let mut body = serde_json::json!({
                "attachments": [{
                    "color": color,
                    "text": text,
                    "fallback": text,
                    "fields": fields,
                }]
            });
            if trigger == Trigger::EmergencyRollback {
                // The seed's emergency message carries the text at top level too.
                body["text"] = serde_json::Value::String(text.clone());
            }
            if let Some(ch) = recipient.map(str::to_string).or_else(|| channel.clone()) {
                body["channel"] = serde_json::Value::String(ch);
            }
            if let Some(u) = username {
                body["username"] = serde_json::Value::String(u.clone());
            }
            (body.to_string().into_bytes(), vec![json_header])
        }
        ServiceConfig::Webhook { headers, .. } => {
            let body = serde_json::json!({
                "trigger": trigger.name(),
                "rollout": event.rollout,
                "revision": event.revision,
                "step": event.step,
                "message": event.message,
                "analysisRun": event.analysis_run,
                "atMs": event.at_ms,
                "text": text,
                "recipient": recipient,
            });
            let mut h = vec![json_header];
            h.extend(headers.iter().map(|(k, v)| (k.clone(), v.clone())));
            (body.to_string().into_bytes(), h)
        }
    }
}

/// Takes deliveries off the queue; each runs in its own task (at most
/// `max_in_flight` at once) so one slow receiver delays no other.
async fn run(mut rx: mpsc::Receiver<Delivery>, client: HttpClient, shared: Arc<Shared>) {
    let limit = Arc::new(Semaphore::new(shared.config.max_in_flight));
    while let Some(d) = rx.recv().await {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        let client = client.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            deliver(&client, &shared, d).await;
            drop(permit);
        });
    }
}

enum Attempt {
    Ok,
    Retry(String),
    Reject(String),
}

async fn attempt(client: &HttpClient, d: &Delivery, timeout: Duration) -> Attempt {
    let mut req = Request::post(d.uri.clone());
    for (k, v) in &d.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = match req.body(Full::new(d.body.clone())) {
        Ok(r) => r,
        Err(e) => return Attempt::Reject(format!("building request: {e}")),
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Attempt::Retry(format!("no response within {} ms", timeout.as_millis())),
        Ok(Err(e)) => Attempt::Retry(format!(
            "request failed: {}",
            serin_error_chain::error_chain(&e)
        )),
        Ok(Ok(resp)) => {
            let status = resp.status();
            // Read the body so the connection can be reused; its content
            // only matters for the error message.
            let body = tokio::time::timeout(timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| {
                    String::from_utf8_lossy(&b.to_bytes())
                        .chars()
                        .take(200)
                        .collect::<String>()
                })
                .unwrap_or_default();
            if status.is_success() {
                Attempt::Ok
            } else if status.is_server_error() || status.as_u16() == 429 {
                Attempt::Retry(format!("HTTP {status}: {body}"))
            } else {
                Attempt::Reject(format!("HTTP {status}: {body}"))
            }
        }
    }
}

async fn deliver(client: &HttpClient, shared: &Shared, d: Delivery) {
    let retry = &shared.config.retry;
    let timeout = Duration::from_millis(retry.attempt_timeout_ms.max(1));
    let mut n = 0;
    loop {
        n += 1;
        match attempt(client, &d, timeout).await {
            Attempt::Ok => {
                tracing::debug!(service = %d.service, trigger = %d.trigger, attempts = n, "notification delivered");
                shared.outcome(&d, "delivered");
                shared.count(&d.service, |s| s.delivered += 1);
                return;
            }
            Attempt::Reject(e) => {
                shared.fail(&d, n, FailureKind::Rejected, e);
                return;
            }
            Attempt::Retry(e) if n >= retry.max_attempts => {
                shared.fail(&d, n, FailureKind::GaveUp, e);
                return;
            }
            Attempt::Retry(e) => {
                let wait = retry.backoff_ms(n);
                tracing::debug!(service = %d.service, attempt = n, wait_ms = wait, error = %e, "notification retry");
                shared.count(&d.service, |s| s.retried += 1);
                shared
                    .retries
                    .get_or_create(&vec![("service".into(), d.service.clone())])
                    .inc();
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
    }
}
