//! A real Prometheus (Debian's `/usr/bin/prometheus`) scraping an exporter this
//! test serves; the seed's own AnalysisTemplates (queries, conditions,
//! intervals and counts unchanged, only `address` overridden) must pass a
//! good canary and fail a bad one.
//!
//! Time in the pure core is simulated (each `next_wake` is taken at once), so
//! the seed's 30 s / 60 s intervals cost nothing; every measurement is a real
//! HTTP query to the real Prometheus.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serin_analysis::{AnalysisRun, Outcome, Phase, ProviderSpec, Providers, RunInputs};
use serin_spec::{AnalysisRunArgument, AnalysisTemplate, ManifestSet};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// (service, hash), bucket counts per LE, sum, count.
type Histogram = ((String, String), [u64; 6], f64, u64);

#[derive(Default)]
struct Counters {
    /// (service, hash, status) → count
    requests: Vec<((String, String, u16), u64)>,
    /// (service, hash) → bucket counts for LE, plus sum and count
    buckets: Vec<Histogram>,
    /// hash → (conversions, sessions, satisfaction)
    business: Vec<(String, u64, u64, f64)>,
}

const LE: [&str; 6] = ["0.05", "0.1", "0.5", "1", "2.5", "+Inf"];
const LE_F: [f64; 6] = [0.05, 0.1, 0.5, 1.0, 2.5, f64::INFINITY];

impl Counters {
    fn request(&mut self, service: &str, hash: &str, status: u16, seconds: f64) {
        let key = (service.to_string(), hash.to_string(), status);
        match self.requests.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => self.requests.push((key, 1)),
        }
        let key = (service.to_string(), hash.to_string());
        let idx = match self.buckets.iter().position(|(k, ..)| *k == key) {
            Some(i) => i,
            None => {
                self.buckets.push((key, [0; 6], 0.0, 0));
                self.buckets.len() - 1
            }
        };
        let b = &mut self.buckets[idx];
        for (i, le) in LE_F.iter().enumerate() {
            if seconds <= *le {
                b.1[i] += 1;
            }
        }
        b.2 += seconds;
        b.3 += 1;
    }
    fn session(&mut self, hash: &str, converted: bool, satisfaction: f64) {
        let idx = match self.business.iter().position(|(h, ..)| h == hash) {
            Some(i) => i,
            None => {
                self.business.push((hash.to_string(), 0, 0, satisfaction));
                self.business.len() - 1
            }
        };
        let b = &mut self.business[idx];
        b.2 += 1;
        if converted {
            b.1 += 1;
        }
        b.3 = satisfaction;
    }
    fn render(&self) -> String {
        let mut s = String::from("# TYPE http_requests_total counter\n");
        for ((svc, hash, status), n) in &self.requests {
            s += &format!(
                "http_requests_total{{service=\"{svc}\",app=\"frontend-app\",rollouts_pod_template_hash=\"{hash}\",status=\"{status}\"}} {n}\n"
            );
        }
        s += "# TYPE http_request_duration_seconds histogram\n";
        for ((svc, hash), b, sum, count) in &self.buckets {
            let labels = format!(
                "service=\"{svc}\",app=\"frontend-app\",rollouts_pod_template_hash=\"{hash}\""
            );
            for (i, le) in LE.iter().enumerate() {
                s += &format!(
                    "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}\n",
                    b[i]
                );
            }
            s += &format!("http_request_duration_seconds_sum{{{labels}}} {sum}\n");
            s += &format!("http_request_duration_seconds_count{{{labels}}} {count}\n");
        }
        s += "# TYPE user_conversions_total counter\n# TYPE user_sessions_total counter\n# TYPE user_satisfaction_score gauge\n";
        for (hash, conv, sess, sat) in &self.business {
            let labels = format!("app=\"frontend-app\",rollouts_pod_template_hash=\"{hash}\"");
            s += &format!("user_conversions_total{{{labels}}} {conv}\n");
            s += &format!("user_sessions_total{{{labels}}} {sess}\n");
            s += &format!("user_satisfaction_score{{{labels}}} {sat}\n");
        }
        s
    }
}

/// Simulated traffic: the good canary is all 2xx and fast, the bad one has
/// 30 % 5xx and 2 s responses.
fn tick(c: &mut Counters, i: u64) {
    // A good canary still has a rare 5xx (1 in 400, after the first 390
    // requests so even the earliest window stays well under 1 %): with none
    // at all the seed's error-rate query returns an empty vector — an Error.
    if i % 40 == 39 {
        c.request("good-svc", "good123", 503, 0.02);
    }
    for _ in 0..10 {
        c.request("good-svc", "good123", 200, 0.02);
        c.session("good123", i % 10 < 2, 8.5);
    }
    for k in 0..10 {
        c.request("bad-svc", "bad456", if k < 3 { 500 } else { 200 }, 2.0);
        c.session("bad456", false, 4.0);
    }
}

struct PromProcess {
    child: Child,
    _dir: TempDir,
}

impl Drop for PromProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn seed_templates() -> Vec<AnalysisTemplate> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seed/manifests");
    let set = ManifestSet::load_paths(&[
        dir.join("success-rate-analysis.yaml"),
        dir.join("canary-analysis.yaml"),
    ]);
    let t: Vec<AnalysisTemplate> = set.analysis_templates().map(|(_, t)| t.clone()).collect();
    assert_eq!(
        t.len(),
        2,
        "seed templates not found under {}",
        dir.display()
    );
    t
}

fn with_address(mut t: AnalysisTemplate, address: &str) -> AnalysisTemplate {
    for m in &mut t.spec.metrics {
        if let Some(p) = m.provider.prometheus.as_mut() {
            p.address = Some(address.to_string());
        }
    }
    t
}

/// Drive the pure core with simulated time and real measurements.
async fn decide(mut run: AnalysisRun, providers: &Providers) -> AnalysisRun {
    let mut t = 0;
    for _ in 0..200 {
        for task in run.next_due(t) {
            let outcome = providers.measure(&task.provider).await;
            run.record(&task.metric, outcome, t + 50);
        }
        if run.is_complete() {
            break;
        }
        t = run.next_wake().expect("a wake time while running");
    }
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_templates_decide_good_and_bad_canary_against_real_prometheus() {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's `prometheus` package (apt-get install -y prometheus); this test needs a real Prometheus"
    );
    // The exporter.
    let counters = Arc::new(Mutex::new(Counters::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let exporter = listener.local_addr().expect("addr");
    let c2 = Arc::clone(&counters);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let c = Arc::clone(&c2);
            async move { c.lock().map(|c| c.render()).unwrap_or_default() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c3 = Arc::clone(&counters);
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            if let Ok(mut c) = c3.lock() {
                tick(&mut c, i);
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // Prometheus.
    let dir = std::env::temp_dir().join(format!("serin-analysis-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: serin\n    static_configs:\n      - targets: ['{exporter}']\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _prom = PromProcess { child, _dir: dir };
    let address = format!("http://127.0.0.1:{port}");

    // Wait (polling, with a deadline) until rate() has data for both canaries.
    let providers = Providers::new();
    let probe = ProviderSpec::Prometheus(serin_spec::PrometheusMetric {
        address: Some(address.clone()),
        query: "count(rate(http_requests_total{status=~\"5..\"}[5m]) > 0)".into(),
        timeout: Some(2),
        ..Default::default()
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = providers.measure(&probe).await;
        // Both canaries' 5xx series have a rate.
        if matches!(&last, Outcome::Value(v) if v[0].as_f64() == Some(2.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never had rate() data; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let templates: Vec<AnalysisTemplate> = seed_templates()
        .into_iter()
        .map(|t| with_address(t, &address))
        .collect();
    let by_name = |n: &str| {
        templates
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(n))
            .cloned()
            .expect("template")
    };
    let inputs = |name: &str, value: &str| RunInputs {
        args: vec![AnalysisRunArgument {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }],
        ..Default::default()
    };

    // success-rate.yaml
    let good = AnalysisRun::new(
        "good",
        &[by_name("success-rate")],
        &inputs("service-name", "good-svc"),
    )
    .expect("build");
    let good = decide(good, &providers).await;
    assert_eq!(good.phase(), Phase::Successful, "{:#?}", good.status());
    let rate = &good.status().metric_results[0];
    assert_eq!(
        (rate.name.as_str(), rate.count, rate.successful),
        ("success-rate", 5, 5)
    );

    let bad = AnalysisRun::new(
        "bad",
        &[by_name("success-rate")],
        &inputs("service-name", "bad-svc"),
    )
    .expect("build");
    let bad = decide(bad, &providers).await;
    assert_eq!(bad.phase(), Phase::Failed, "{:#?}", bad.status());
    // avg-response-time (failureLimit 0) fails on its first 2 s p95; that
    // terminates the run (Argo), so success-rate stops after its first
    // measurement, which itself failed (≈0.7 < 0.95).
    let [rate, latency] = &bad.status().metric_results[..] else {
        panic!("two metrics")
    };
    assert_eq!(
        (latency.name.as_str(), latency.phase, latency.failed),
        ("avg-response-time", Phase::Failed, 1)
    );
    assert_eq!(rate.measurements[0].phase, Phase::Failed, "{rate:#?}");
    let v = rate.measurements[0]
        .value
        .as_ref()
        .and_then(|v| v[0].as_f64())
        .unwrap_or(f64::NAN);
    assert!((0.6..0.8).contains(&v), "success rate {v}");

    // canary-analysis.yaml
    let good = AnalysisRun::new(
        "good-c",
        &[by_name("canary-analysis")],
        &inputs("canary-hash", "good123"),
    )
    .expect("build");
    let good = decide(good, &providers).await;
    assert_eq!(good.phase(), Phase::Successful, "{:#?}", good.status());
    let bad = AnalysisRun::new(
        "bad-c",
        &[by_name("canary-analysis")],
        &inputs("canary-hash", "bad456"),
    )
    .expect("build");
    let bad = decide(bad, &providers).await;
    assert_eq!(bad.phase(), Phase::Failed, "{:#?}", bad.status());

    // A hash with no traffic: empty vectors are Error measurements, never a pass.
    let none = AnalysisRun::new(
        "none",
        &[by_name("canary-analysis")],
        &inputs("canary-hash", "nope"),
    )
    .expect("build");
    let none = decide(none, &providers).await;
    assert_eq!(none.phase(), Phase::Error, "{:#?}", none.status());
}
