//! Configuration: serde shape, validation, annotations, trigger mapping.

use std::collections::BTreeMap;

use serin_engine::{Event, RevisionHash};
use serin_notify::{
    ConfigError, NotificationsConfig, Notifier, ServiceConfig, Trigger,
    subscriptions_from_annotations, trigger_for,
};

#[test]
fn engine_events_map_to_argo_trigger_names() {
    let cases = [
        (
            Event::RolloutUpdated {
                revision: RevisionHash::new("a"),
            },
            Some("on-rollout-updated"),
        ),
        (
            Event::StepCompleted { step: 1 },
            Some("on-rollout-step-completed"),
        ),
        (
            Event::Paused {
                reason: serin_engine::PauseReason::PausedByUser,
            },
            Some("on-rollout-paused"),
        ),
        (
            Event::Aborted {
                message: "x".into(),
            },
            Some("on-rollout-aborted"),
        ),
        (
            Event::Completed {
                revision: RevisionHash::new("a"),
            },
            Some("on-rollout-completed"),
        ),
        (
            Event::AnalysisRunFailed { name: "r".into() },
            Some("on-analysis-run-failed"),
        ),
        (
            Event::AnalysisRunError { name: "r".into() },
            Some("on-analysis-run-error"),
        ),
        (Event::ProgressDeadlineExceeded, None),
    ];
    for (event, name) in cases {
        assert_eq!(trigger_for(&event).map(Trigger::name), name, "{event:?}");
    }
    for t in Trigger::ALL {
        assert_eq!(Trigger::from_name(t.name()), Some(t));
    }
}

#[test]
fn config_deserializes_from_serin_yaml_shape() {
    // JSON here; serin.yaml's YAML maps to the same serde model.
    let cfg: NotificationsConfig = serde_json::from_value(serde_json::json!({
        "services": {
            "slack": {"type": "slack", "url": "http://hooks.local/T0/B0", "channel": "#deploys"},
            "ops": {"type": "webhook", "url": "http://ops.local/h", "headers": {"X-Token": "t"}}
        },
        "subscriptions": [{"trigger": "on-rollout-aborted", "service": "slack"}],
        "templates": {"on-rollout-completed": {"message": "{{rollout}} ok", "color": "good"}},
        "retry": {"maxAttempts": 3}
    }))
    .unwrap();
    assert_eq!(cfg.retry.max_attempts, 3);
    assert_eq!(cfg.retry.base_delay_ms, 200);
    assert_eq!(cfg.queue_capacity, 256);
    assert_eq!(cfg.subscriptions[0].trigger, Trigger::Aborted);
    assert!(matches!(cfg.services["ops"], ServiceConfig::Webhook { .. }));
    assert!(
        serde_json::from_value::<NotificationsConfig>(serde_json::json!({
            "templates": {"on-nothing": {"message": "x"}}
        }))
        .is_err()
    );
}

#[test]
fn backoff_doubles_and_is_capped() {
    let r = serin_notify::RetryConfig::default();
    let waits: Vec<u64> = (1..=8).map(|n| r.backoff_ms(n)).collect();
    assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    assert_eq!(r.backoff_ms(u32::MAX), 10_000);
}

#[test]
fn annotations_parse_like_argo_and_unknown_triggers_warn() {
    let a = BTreeMap::from([
        (
            "notifications.argoproj.io/subscribe.on-rollout-completed.slack".to_string(),
            "argoproj-deployments-notifications".to_string(),
        ),
        (
            "notifications.argoproj.io/subscribe.on-scaling-replica-set.slack".to_string(),
            "x".to_string(),
        ),
        (
            "notifications.argoproj.io/subscribe.nodot".to_string(),
            "x".to_string(),
        ),
        (
            "kubernetes.io/ingress.class".to_string(),
            "nginx".to_string(),
        ),
    ]);
    let (subs, warnings) = subscriptions_from_annotations(&a);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].trigger, Trigger::Completed);
    assert_eq!(subs[0].service, "slack");
    assert_eq!(subs[0].recipients, ["argoproj-deployments-notifications"]);
    assert_eq!(warnings.len(), 2);
    assert!(
        warnings
            .iter()
            .any(|w| w.reason.contains("on-scaling-replica-set"))
    );
}

#[tokio::test]
async fn bad_config_is_a_clear_error() {
    let svc = |url: &str| ServiceConfig::Webhook {
        url: url.into(),
        headers: BTreeMap::new(),
    };
    let with = |url: &str| NotificationsConfig {
        services: BTreeMap::from([("ops".to_string(), svc(url))]),
        ..Default::default()
    };
    // https is fine (Slack's webhooks are https only); other schemes are not.
    assert!(Notifier::new(with("https://hooks.slack.com/x")).is_ok());
    assert!(matches!(
        Notifier::new(with("ftp://hooks.example/x")),
        Err(ConfigError::Url { .. })
    ));
    // A CA file that is missing or holds no certificate: named in the error.
    let dir = std::env::temp_dir().join(format!("serin-notify-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for ca in [dir.join("missing.pem"), not_pem.clone()] {
        let mut c = with("https://hooks.slack.com/x");
        c.ca = Some(ca.clone());
        let err = Notifier::new(c).err().expect("a bad CA file is an error");
        assert!(matches!(err, ConfigError::Tls(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("notifications.ca: {}", ca.display())),
            "{msg}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(
        Notifier::new(with("not a url")),
        Err(ConfigError::Url { .. })
    ));
    let mut bad_template = with("http://127.0.0.1:1/h");
    bad_template.templates.insert(
        Trigger::Aborted,
        serin_notify::Template {
            message: "{{rollout}} {{image}}".into(),
            color: None,
            fields: None,
        },
    );
    let err = Notifier::new(bad_template).err().unwrap();
    assert_eq!(
        err.to_string(),
        "notifications.templates.on-rollout-aborted: unknown variable {{image}}"
    );
}

#[test]
fn new_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        Notifier::new(NotificationsConfig::default()),
        Err(ConfigError::NoRuntime)
    ));
}
