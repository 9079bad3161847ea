//! Delivery against a real HTTP receiver on a loopback port.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serin_engine::{Event, RevisionHash};
use serin_notify::{
    FailureKind, NotificationEvent, NotificationsConfig, Notifier, RetryConfig, ServiceConfig,
    Subscription, Trigger, subscriptions_from_annotations,
};

#[derive(Default)]
struct Receiver {
    /// Statuses to answer with, in order; then 200.
    script: Mutex<VecDeque<u16>>,
    /// Never answer (a hung receiver).
    hang: bool,
    got: Mutex<Vec<(HeaderMap, serde_json::Value)>>,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.hang {
        std::future::pending::<()>().await;
    }
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    r.got.lock().unwrap().push((headers, json));
    let code = r.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

async fn receiver(r: Receiver) -> (String, Arc<Receiver>) {
    let r = Arc::new(r);
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&r));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

fn fast_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig {
        max_attempts,
        base_delay_ms: 5,
        max_delay_ms: 20,
        attempt_timeout_ms: 5_000,
    }
}

fn config(name: &str, svc: ServiceConfig, triggers: &[Trigger]) -> NotificationsConfig {
    NotificationsConfig {
        services: BTreeMap::from([(name.to_string(), svc)]),
        subscriptions: triggers
            .iter()
            .map(|t| Subscription {
                trigger: *t,
                service: name.into(),
                recipients: vec![],
            })
            .collect(),
        retry: fast_retry(5),
        queue_capacity: 16,
        max_in_flight: 4,
        ..Default::default()
    }
}

/// Polls `f` until it returns `Some`, for at most 10 s of test time.
async fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within the deadline"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn aborted(rollout: &str) -> NotificationEvent {
    NotificationEvent::from_engine(
        rollout,
        &Event::Aborted {
            message: "analysis run api-1 failed".into(),
        },
        1_709_210_096_000,
    )
    .unwrap()
}

#[tokio::test]
async fn slack_payload_is_the_seeds_attachment() {
    let (url, r) = receiver(Receiver::default()).await;
    let n = Notifier::new(config(
        "slack",
        ServiceConfig::Slack {
            url,
            channel: Some("#deploys".into()),
            username: Some("serin".into()),
        },
        &[Trigger::Aborted, Trigger::Completed],
    ))
    .unwrap();
    assert_eq!(n.notify(aborted("api")).enqueued, 1);
    // Not subscribed: nothing sent.
    let paused = NotificationEvent::from_engine(
        "api",
        &Event::Paused {
            reason: serin_engine::PauseReason::CanaryPauseStep,
        },
        0,
    )
    .unwrap();
    assert_eq!(n.notify(paused).enqueued, 0);
    let (headers, body) = eventually(|| r.got.lock().unwrap().first().cloned()).await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["channel"], "#deploys");
    assert_eq!(body["username"], "serin");
    let a = &body["attachments"][0];
    assert_eq!(a["color"], "danger");
    assert_eq!(
        a["text"],
        "🚨 Deployment ABORTED for api: analysis run api-1 failed"
    );
    assert_eq!(a["fields"][0]["title"], "Service");
    assert_eq!(a["fields"][0]["value"], "api");
    assert_eq!(a["fields"][0]["short"], true);
    assert_eq!(a["fields"][1]["title"], "Revision");

    let done = NotificationEvent::from_engine(
        "api",
        &Event::Completed {
            revision: RevisionHash::new("7d8f9c6b4d"),
        },
        0,
    )
    .unwrap();
    n.notify(done);
    let body = eventually(|| r.got.lock().unwrap().get(1).map(|g| g.1.clone())).await;
    assert_eq!(body["attachments"][0]["color"], "good");
    assert_eq!(body["attachments"][0]["fields"][1]["value"], "7d8f9c6b4d");
    eventually(|| (n.stats().get("slack")?.delivered == 2).then_some(())).await;
    assert!(
        n.encode_metrics()
            .contains(r#"notification_deliveries_total{service="slack",trigger="on-rollout-aborted",outcome="delivered"} 1"#),
        "{}",
        n.encode_metrics()
    );
}

#[tokio::test]
async fn emergency_rollback_has_service_and_time_fields() {
    let (url, r) = receiver(Receiver::default()).await;
    let n = Notifier::new(config(
        "slack",
        ServiceConfig::Slack {
            url,
            channel: None,
            username: None,
        },
        &[Trigger::EmergencyRollback],
    ))
    .unwrap();
    n.notify(NotificationEvent::emergency_rollback(
        "api",
        "abc",
        1_709_210_096_000,
    ));
    let body = eventually(|| r.got.lock().unwrap().first().map(|g| g.1.clone())).await;
    assert_eq!(body["text"], "🚨 EMERGENCY ROLLBACK completed for api");
    assert_eq!(body["attachments"][0]["color"], "danger");
    assert_eq!(body["attachments"][0]["fields"][1]["title"], "Time");
    assert_eq!(
        body["attachments"][0]["fields"][1]["value"],
        "2024-02-29 12:34:56 UTC"
    );
    assert!(body.get("channel").is_none());
}

#[tokio::test]
async fn webhook_gets_json_body_headers_and_custom_template() {
    let (url, r) = receiver(Receiver::default()).await;
    let mut cfg = config(
        "ops",
        ServiceConfig::Webhook {
            url,
            headers: BTreeMap::from([("X-Token".to_string(), "s3cret".to_string())]),
        },
        &[Trigger::StepCompleted],
    );
    cfg.templates.insert(
        Trigger::StepCompleted,
        serin_notify::Template {
            message: "{{rollout}} step {{step}} \"done\"".into(),
            color: None,
            fields: None,
        },
    );
    let n = Notifier::new(cfg).unwrap();
    let ev = NotificationEvent::from_engine("web", &Event::StepCompleted { step: 2 }, 42).unwrap();
    assert_eq!(n.notify(ev).enqueued, 1);
    let (headers, body) = eventually(|| r.got.lock().unwrap().first().cloned()).await;
    assert_eq!(headers["x-token"], "s3cret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["trigger"], "on-rollout-step-completed");
    assert_eq!(body["rollout"], "web");
    assert_eq!(body["step"], 2);
    assert_eq!(body["atMs"], 42);
    assert_eq!(body["text"], "web step 2 \"done\"");
}

#[tokio::test]
async fn retries_on_500_then_succeeds() {
    let (url, r) = receiver(Receiver {
        script: Mutex::new(VecDeque::from([500, 503])),
        ..Default::default()
    })
    .await;
    let n = Notifier::new(config(
        "ops",
        ServiceConfig::Webhook {
            url,
            headers: BTreeMap::new(),
        },
        &[Trigger::Aborted],
    ))
    .unwrap();
    n.notify(aborted("api"));
    let stats = eventually(|| n.stats().get("ops").copied().filter(|s| s.delivered == 1)).await;
    assert_eq!(stats.retried, 2);
    assert_eq!(stats.failed, 0);
    assert_eq!(r.got.lock().unwrap().len(), 3);
    assert!(
        n.encode_metrics()
            .contains(r#"notification_retries_total{service="ops"} 2"#)
    );
}

#[tokio::test]
async fn gives_up_after_the_limit_and_reports_the_failure() {
    let (url, r) = receiver(Receiver {
        script: Mutex::new(VecDeque::from([500; 10])),
        ..Default::default()
    })
    .await;
    let mut cfg = config(
        "ops",
        ServiceConfig::Webhook {
            url,
            headers: BTreeMap::new(),
        },
        &[Trigger::Aborted],
    );
    cfg.retry = fast_retry(3);
    let n = Notifier::new(cfg).unwrap();
    let mut failures = n.failures();
    n.notify(aborted("api"));
    let f = tokio::time::timeout(Duration::from_secs(10), failures.recv())
        .await
        .expect("a failure within the deadline")
        .unwrap();
    assert_eq!(f.kind, FailureKind::GaveUp);
    assert_eq!(f.attempts, 3);
    assert_eq!(f.trigger, Trigger::Aborted);
    assert!(f.error.contains("500"), "{}", f.error);
    assert_eq!(r.got.lock().unwrap().len(), 3);
    let s = n.stats()["ops"];
    assert_eq!((s.failed, s.retried, s.delivered), (1, 2, 0));
    assert!(n.encode_metrics().contains(
        r#"notification_deliveries_total{service="ops",trigger="on-rollout-aborted",outcome="failed"} 1"#
    ));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (url, r) = receiver(Receiver {
        script: Mutex::new(VecDeque::from([404])),
        ..Default::default()
    })
    .await;
    let n = Notifier::new(config(
        "ops",
        ServiceConfig::Webhook {
            url,
            headers: BTreeMap::new(),
        },
        &[Trigger::Aborted],
    ))
    .unwrap();
    let mut failures = n.failures();
    n.notify(aborted("api"));
    let f = tokio::time::timeout(Duration::from_secs(10), failures.recv())
        .await
        .expect("a failure within the deadline")
        .unwrap();
    assert_eq!((f.kind, f.attempts), (FailureKind::Rejected, 1));
    assert_eq!(r.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_hung_receiver_never_blocks_notify_full_queue_drops() {
    let (url, _r) = receiver(Receiver {
        hang: true,
        ..Default::default()
    })
    .await;
    let mut cfg = config(
        "ops",
        ServiceConfig::Webhook {
            url,
            headers: BTreeMap::new(),
        },
        &[Trigger::Aborted],
    );
    cfg.queue_capacity = 2;
    cfg.max_in_flight = 1;
    cfg.retry.attempt_timeout_ms = 600_000;
    let n = Notifier::new(cfg).unwrap();
    let mut failures = n.failures();
    // notify is a plain fn over try_send: it cannot wait. With one delivery
    // hung in flight, one held by the worker and two queued, the rest drop.
    let mut enqueued = 0;
    let mut dropped = 0;
    for _ in 0..20 {
        let res = n.notify(aborted("api"));
        enqueued += res.enqueued;
        dropped += res.dropped;
    }
    assert_eq!(enqueued + dropped, 20);
    assert!(dropped >= 16, "dropped {dropped}");
    assert!(n.queue_len() <= 2);
    let f = failures.recv().await.unwrap();
    assert_eq!(f.kind, FailureKind::Dropped);
    assert_eq!(n.stats()["ops"].dropped, dropped as u64);
    // Still immediate once the queue is full.
    eventually(|| (n.queue_len() == 2).then_some(())).await;
    assert_eq!(n.notify(aborted("api")).dropped, 1);
}

#[tokio::test]
async fn annotation_subscriptions_route_to_channels() {
    let (url, r) = receiver(Receiver::default()).await;
    let mut cfg = config(
        "slack",
        ServiceConfig::Slack {
            url,
            channel: Some("#default".into()),
            username: None,
        },
        &[],
    );
    cfg.subscriptions.clear();
    let n = Notifier::new(cfg).unwrap();
    let annotations = BTreeMap::from([(
        "notifications.argoproj.io/subscribe.on-rollout-updated.slack".to_string(),
        "argoproj-deployments; oncall".to_string(),
    )]);
    let (subs, warnings) = subscriptions_from_annotations(&annotations);
    assert!(warnings.is_empty());
    n.set_rollout_subscriptions("rollout-canary", subs);
    let ev = NotificationEvent::from_engine(
        "rollout-canary",
        &Event::RolloutUpdated {
            revision: RevisionHash::new("abc"),
        },
        0,
    )
    .unwrap();
    assert_eq!(n.notify(ev.clone()).enqueued, 2);
    // Another rollout has no subscription.
    let mut other = ev;
    other.rollout = "other".into();
    assert_eq!(n.notify(other).enqueued, 0);
    let mut channels = eventually(|| {
        let got = r.got.lock().unwrap();
        (got.len() == 2).then(|| {
            got.iter()
                .map(|g| g.1["channel"].to_string())
                .collect::<Vec<_>>()
        })
    })
    .await;
    channels.sort();
    assert_eq!(channels, ["\"argoproj-deployments\"", "\"oncall\""]);
}

/// Read on every reconcile, a rollout's annotations change its
/// subscriptions only when they change, and a bad one is reported once.
#[tokio::test]
async fn annotation_subscriptions_follow_changes_and_report_problems_once() {
    let (url, _r) = receiver(Receiver::default()).await;
    let mut cfg = config(
        "slack",
        ServiceConfig::Slack {
            url,
            channel: Some("#default".into()),
            username: None,
        },
        &[],
    );
    cfg.subscriptions.clear();
    let n = Notifier::new(cfg).unwrap();
    let updated = || {
        NotificationEvent::from_engine(
            "web",
            &Event::RolloutUpdated {
                revision: RevisionHash::new("abc"),
            },
            0,
        )
        .unwrap()
    };
    let mut annotations = BTreeMap::from([
        (
            "notifications.argoproj.io/subscribe.on-rollout-updated.slack".to_string(),
            "#web".to_string(),
        ),
        (
            "notifications.argoproj.io/subscribe.on-nothing.slack".to_string(),
            "#web".to_string(),
        ),
        ("unrelated/annotation".to_string(), "x".to_string()),
    ]);
    let first = n
        .subscribe_from_annotations("web", &annotations)
        .expect("a change");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].key.ends_with("on-nothing.slack"), "{first:?}");
    assert_eq!(n.notify(updated()).enqueued, 1);
    // Unchanged (an unrelated annotation moving does not count): nothing.
    annotations.insert("unrelated/annotation".into(), "y".into());
    assert_eq!(n.subscribe_from_annotations("web", &annotations), None);
    assert_eq!(n.notify(updated()).enqueued, 1);
    // Removed: the subscription goes.
    annotations.retain(|k, _| !k.contains("on-rollout-updated"));
    assert!(n.subscribe_from_annotations("web", &annotations).is_some());
    assert_eq!(n.notify(updated()).enqueued, 0);
}
