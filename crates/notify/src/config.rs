//! Notification configuration: serin.yaml's `notifications:` section and
//! Argo's `notifications.argoproj.io/subscribe.<trigger>.<service>` annotations.
//!
//! ```yaml
//! notifications:
//!   services:
//!     slack: { type: slack, url: "https://hooks.slack.com/services/T0/B0/XXXX", channel: "#deploys", username: serin }
//!     ops: { type: webhook, url: "http://ops.internal/hooks/serin", headers: { X-Token: abc } }
//!   ca: /etc/serin/internal-ca.pem   # optional: trusted for https:// besides the system roots
//!   subscriptions:
//!     - { trigger: on-rollout-aborted, service: slack, recipients: ["#oncall"] }
//!   templates:
//!     on-rollout-completed: { message: "✅ {{rollout}} now runs {{revision}}", color: good }
//!   retry: { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 10000, attemptTimeoutMs: 10000 }
//!   queueCapacity: 256
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::trigger::Trigger;

/// The `notifications:` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Services by name (the name annotations and subscriptions refer to).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Subscriptions for every rollout (annotations add per-rollout ones).
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    /// Templates by trigger; a trigger without one uses the default (the
    /// seed's Slack attachment).
    #[serde(default)]
    pub templates: BTreeMap<Trigger, Template>,
    /// Delivery retries.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Deliveries waiting at most; beyond it `notify` drops (and counts).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Deliveries in flight at most.
    #[serde(default = "default_concurrency")]
    pub max_in_flight: usize,
    /// A PEM file of extra CA certificates trusted for `https://` services,
    /// besides the system's roots (an internal CA, a test receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

impl Default for NotificationsConfig {
    /// No services or subscriptions; default retry, queue and concurrency
    /// (the same values serde fills in).
    fn default() -> Self {
        Self {
            services: BTreeMap::new(),
            subscriptions: Vec::new(),
            templates: BTreeMap::new(),
            retry: RetryConfig::default(),
            queue_capacity: default_queue(),
            max_in_flight: default_concurrency(),
            ca: None,
        }
    }
}

fn default_queue() -> usize {
    256
}

fn default_concurrency() -> usize {
    8
}

/// A destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServiceConfig {
    /// A Slack incoming webhook (attachments with color and fields).
    Slack {
        /// Webhook URL, `https://` (e.g. `https://hooks.slack.com/services/…`)
        /// or `http://`.
        url: String,
        /// Default channel (a subscription's recipient overrides it).
        #[serde(default)]
        channel: Option<String>,
        /// Bot name shown in Slack.
        #[serde(default)]
        username: Option<String>,
    },
    /// A generic JSON webhook: POSTs the event as JSON.
    Webhook {
        /// URL, `https://` or `http://`.
        url: String,
        /// Extra request headers (e.g. an auth token).
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

impl ServiceConfig {
    /// The URL.
    pub fn url(&self) -> &str {
        match self {
            ServiceConfig::Slack { url, .. } | ServiceConfig::Webhook { url, .. } => url,
        }
    }
}

/// Send `trigger` to `service` (for Slack, to each recipient channel; none
/// means the service's default channel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    /// The trigger.
    pub trigger: Trigger,
    /// A service name from `services`.
    pub service: String,
    /// Recipients (Slack channels); empty = the service's default.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// A message template. Variables: `{{rollout}}`, `{{revision}}`,
/// `{{message}}`, `{{step}}`, `{{analysis_run}}`, `{{trigger}}`, `{{time}}`
/// (Argo's `{{.rollout.metadata.name}}` is accepted for `{{rollout}}`).
/// Substitution only: nothing is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// The text (Slack attachment text; `text` in the webhook body).
    pub message: String,
    /// Slack attachment color: `good`, `warning`, `danger` or `#rrggbb`.
    #[serde(default)]
    pub color: Option<String>,
    /// Slack attachment fields; `None` = Service and Revision.
    #[serde(default)]
    pub fields: Option<Vec<FieldTemplate>>,
}

/// One Slack attachment field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldTemplate {
    /// Title.
    pub title: String,
    /// Value (templated).
    pub value: String,
    /// Shown side by side.
    #[serde(default = "yes")]
    pub short: bool,
}

fn yes() -> bool {
    true
}

/// Retries with exponential backoff: attempt `n` (from 1) waits
/// `min(base × 2^(n−1), max)` before the next one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, including the first (≥ 1).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First backoff, milliseconds.
    #[serde(default = "default_base")]
    pub base_delay_ms: u64,
    /// Backoff cap, milliseconds.
    #[serde(default = "default_max")]
    pub max_delay_ms: u64,
    /// One attempt's timeout, milliseconds.
    #[serde(default = "default_timeout")]
    pub attempt_timeout_ms: u64,
}

fn default_attempts() -> u32 {
    5
}
fn default_base() -> u64 {
    200
}
fn default_max() -> u64 {
    10_000
}
fn default_timeout() -> u64 {
    10_000
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            base_delay_ms: default_base(),
            max_delay_ms: default_max(),
            attempt_timeout_ms: default_timeout(),
        }
    }
}

impl RetryConfig {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(32);
        self.base_delay_ms
            .saturating_mul(1u64 << shift)
            .min(self.max_delay_ms)
    }
}

/// The annotation prefix Argo Rollouts uses.
pub const ANNOTATION_PREFIX: &str = "notifications.argoproj.io/subscribe.";

/// An annotation that could not be used (reported, never fatal: a manifest
/// may name Argo triggers Serin does not have, like `on-scaling-replica-set`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {reason}")]
pub struct AnnotationWarning {
    /// The annotation key.
    pub key: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Reads `notifications.argoproj.io/subscribe.<trigger>.<service>: <recipients>`
/// annotations (recipients separated by `;` or `,`, as Argo allows). Other
/// annotations are ignored.
pub fn subscriptions_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> (Vec<Subscription>, Vec<AnnotationWarning>) {
    let mut subs = Vec::new();
    let mut warnings = Vec::new();
    for (key, value) in annotations {
        let Some(rest) = key.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let warn = |reason: String| AnnotationWarning {
            key: key.clone(),
            reason,
        };
        // Trigger names contain dashes, not dots; the service may not.
        let Some((trigger, service)) = rest.split_once('.') else {
            warnings.push(warn("expected subscribe.<trigger>.<service>".into()));
            continue;
        };
        if service.is_empty() {
            warnings.push(warn("missing service".into()));
            continue;
        }
        let Some(trigger) = Trigger::from_name(trigger) else {
            warnings.push(warn(format!("unknown trigger {trigger:?}")));
            continue;
        };
        let recipients = value
            .split([';', ','])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        subs.push(Subscription {
            trigger,
            service: service.to_string(),
            recipients,
        });
    }
    (subs, warnings)
}
