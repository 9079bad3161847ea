//! Serin's notifications.
//!
//! Engine events become Argo Rollouts triggers ([`trigger_for`]); a
//! [`Notifier`] renders each subscribed (trigger, service) into a Slack
//! incoming-webhook payload (the seed's attachment with color and fields) or a
//! generic JSON webhook body and delivers it in the background with retries
//! and exponential backoff. [`Notifier::notify`] never waits: a full queue
//! drops the notification, counts it and reports it on
//! [`Notifier::failures`]. Delivery is over `https://` (rustls via
//! `serin-tls`: the system's roots plus [`NotificationsConfig::ca`]) or plain
//! `http://`, from one pooled client.
//!
//! ```no_run
//! # async fn demo(config: serin_notify::NotificationsConfig, event: serin_engine::Event) {
//! use serin_notify::{NotificationEvent, Notifier};
//! let notifier = Notifier::new(config).expect("valid config"); // inside a tokio runtime
//! let mut failures = notifier.failures();
//! if let Some(n) = NotificationEvent::from_engine("api", &event, 1_700_000_000_000) {
//!     notifier.notify(n); // returns at once
//! }
//! # let _ = failures.try_recv();
//! # }
//! ```

mod config;
mod deliver;
mod template;
mod trigger;

pub use config::{
    ANNOTATION_PREFIX, AnnotationWarning, FieldTemplate, NotificationsConfig, RetryConfig,
    ServiceConfig, Subscription, Template, subscriptions_from_annotations,
};
pub use deliver::{
    ConfigError, DeliveryFailure, FailureKind, NotificationEvent, Notifier, NotifyResult,
    ServiceStats,
};
pub use template::{default_template, render, utc};
pub use trigger::{Trigger, trigger_for};
