//! Delivery to a real HTTPS receiver on a loopback port: a Slack-style hook
//! behind rustls with a throwaway CA, trusted through `notifications.ca`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serin_engine::Event;
use serin_notify::{
    FailureKind, NotificationEvent, NotificationsConfig, Notifier, RetryConfig, ServiceConfig,
    Subscription, Trigger,
};
use serin_tls::testing::TestPki;

/// A TLS listener for axum that counts the connections it accepted.
struct Counted {
    inner: serin_tls::TlsListener,
    accepted: Arc<AtomicUsize>,
}

impl axum::serve::Listener for Counted {
    type Io = serin_tls::ServerTlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let c = self.inner.accept().await;
        self.accepted.fetch_add(1, Ordering::SeqCst);
        c
    }
    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.inner.local_addr())
    }
}

type Got = Arc<Mutex<Vec<serde_json::Value>>>;

async fn hook(State(got): State<Got>, body: Bytes) -> &'static str {
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    got.lock().unwrap().push(json);
    "ok"
}

/// An HTTPS Slack-style receiver: its URL, what it got, connections accepted.
async fn https_receiver(pki: &TestPki) -> (String, Got, Arc<AtomicUsize>) {
    let got = Got::default();
    let app = Router::new()
        .route("/services/T0/B0/x", post(hook))
        .with_state(Arc::clone(&got));
    let config = serin_tls::server_config(&pki.cert, &pki.key).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = Counted {
        inner: serin_tls::TlsListener::new(tcp, config).unwrap(),
        accepted: Arc::clone(&accepted),
    };
    let addr = listener.inner.local_addr();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("https://{addr}/services/T0/B0/x"), got, accepted)
}

fn slack(url: String, ca: Option<std::path::PathBuf>, attempts: u32) -> NotificationsConfig {
    NotificationsConfig {
        services: BTreeMap::from([(
            "slack".to_string(),
            ServiceConfig::Slack {
                url,
                channel: Some("#deploys".into()),
                username: None,
            },
        )]),
        subscriptions: vec![Subscription {
            trigger: Trigger::Aborted,
            service: "slack".into(),
            recipients: vec![],
        }],
        retry: RetryConfig {
            max_attempts: attempts,
            base_delay_ms: 5,
            max_delay_ms: 20,
            attempt_timeout_ms: 5_000,
        },
        ca,
        ..Default::default()
    }
}

fn aborted(n: u32) -> NotificationEvent {
    NotificationEvent::from_engine(
        "api",
        &Event::Aborted {
            message: format!("analysis run api-{n} failed"),
        },
        1_709_210_096_000,
    )
    .unwrap()
}

/// Polls `f` until it returns `Some`, for at most 10 s.
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

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("serin-notify-{name}-{}", std::process::id()))
}

#[tokio::test]
async fn slack_over_https_with_the_configured_ca_on_one_connection() {
    let dir = tmp("https");
    let pki = TestPki::new(&dir, "hook", &["127.0.0.1"]);
    let (url, got, accepted) = https_receiver(&pki).await;
    let n = Notifier::new(slack(url, Some(pki.ca.clone()), 3)).unwrap();
    for i in 1..=3u64 {
        assert_eq!(n.notify(aborted(i as u32)).enqueued, 1);
        eventually(|| (n.stats().get("slack")?.delivered == i).then_some(())).await;
    }
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[0]["channel"], "#deploys");
    assert_eq!(
        bodies[2]["attachments"][0]["text"],
        "🚨 Deployment ABORTED for api: analysis run api-3 failed"
    );
    let stats = n.stats()["slack"];
    assert_eq!((stats.failed, stats.retried), (0, 0));
    // One client for all deliveries: the TLS connection is reused.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_ca_is_refused_and_reported() {
    let dir = tmp("unknown-ca");
    let pki = TestPki::new(&dir, "hook", &["127.0.0.1"]);
    let other = TestPki::new(&dir, "other", &["127.0.0.1"]);
    let (url, got, _) = https_receiver(&pki).await;
    // System roots only, and then another CA: neither signed the receiver.
    for ca in [None, Some(other.ca.clone())] {
        let n = Notifier::new(slack(url.clone(), ca, 2)).unwrap();
        let mut failures = n.failures();
        n.notify(aborted(1));
        let f = tokio::time::timeout(Duration::from_secs(10), failures.recv())
            .await
            .expect("a failure within 10 s")
            .unwrap();
        assert_eq!(f.kind, FailureKind::GaveUp);
        assert_eq!(f.attempts, 2);
        assert!(f.error.contains("UnknownIssuer"), "{}", f.error);
    }
    assert!(got.lock().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
