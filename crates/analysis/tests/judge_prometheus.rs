//! The sequential judge over a real Prometheus (Debian's
//! `/usr/bin/prometheus`) scraping a loopback exporter whose per-revision
//! counters and histograms this test controls: a canary with clearly more
//! errors (or clearly slower) is Failed; an A/A canary (same distribution,
//! a pod restarting and a pod added on the way) is never failed, and every
//! request after the first measurement reaches the judge exactly once.
//!
//! The exporter moves one measurement interval at a time: the test adds an
//! interval's requests, waits (polling, with a deadline) until Prometheus
//! has scraped that state (a `generation` gauge), then measures. The
//! analysis run's own time is simulated (each `next_wake` is taken at once);
//! the provider reads Prometheus at the wall-clock time of each measurement.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serin_analysis::{AnalysisRun, Outcome, Phase, ProviderSpec, Providers, RunInputs};
use serin_spec::{AnalysisRunArgument, AnalysisTemplate};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const LE: [f64; 6] = [0.05, 0.1, 0.25, 0.5, 1.0, f64::INFINITY];

/// Deterministic xorshift64*: the same data every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The exporter's series (`name{labels}` → value) and a generation gauge.
#[derive(Default)]
struct Exporter {
    series: BTreeMap<String, u64>,
    generation: u64,
}

impl Exporter {
    fn render(&self) -> String {
        let mut s = String::from("# TYPE req_total counter\n# TYPE lat histogram\n");
        for (k, v) in &self.series {
            s += &format!("{k} {v}\n");
        }
        s += &format!("# TYPE generation gauge\ngeneration {}\n", self.generation);
        s
    }

    /// `n` requests of one pod: each an error with probability `p_err`,
    /// with latency `scale · (0.2 + u²)` seconds.
    #[allow(clippy::too_many_arguments)]
    fn requests(
        &mut self,
        rng: &mut Rng,
        scenario: &str,
        hash: &str,
        pod: &str,
        n: u64,
        p_err: f64,
        scale: f64,
    ) {
        let labels = format!("scenario=\"{scenario}\",hash=\"{hash}\",pod=\"{pod}\"");
        for _ in 0..n {
            let code = if rng.next() < p_err { 500 } else { 200 };
            *self
                .series
                .entry(format!("req_total{{{labels},code=\"{code}\"}}"))
                .or_default() += 1;
            let u = rng.next();
            let secs = scale * (0.2 + u * u);
            for le in LE {
                let name = if le.is_infinite() {
                    "+Inf".to_string()
                } else {
                    le.to_string()
                };
                let count = self
                    .series
                    .entry(format!("lat_bucket{{{labels},le=\"{name}\"}}"))
                    .or_default();
                if secs <= le {
                    *count += 1;
                }
            }
        }
    }

    /// A pod restarts: its series are gone until it counts again (from 0).
    fn restart(&mut self, pod: &str) {
        let tag = format!("pod=\"{pod}\"");
        self.series.retain(|k, _| !k.contains(&tag));
    }
}

struct Prom {
    child: Child,
    dir: PathBuf,
    address: String,
    exporter: Arc<Mutex<Exporter>>,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The exporter on loopback and a Prometheus scraping it every 200 ms.
async fn start(name: &str) -> Prom {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's `prometheus` package; this test needs a real Prometheus"
    );
    let exporter = Arc::new(Mutex::new(Exporter::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let target = listener.local_addr().expect("addr");
    let e2 = Arc::clone(&exporter);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let e = Arc::clone(&e2);
            async move { e.lock().map(|e| e.render()).unwrap_or_default() }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = std::env::temp_dir().join(format!("serin-judge-prom-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    Prom {
        child,
        dir,
        address: format!("http://127.0.0.1:{port}"),
        exporter,
    }
}

impl Prom {
    /// Moves the exporter one interval on (`step` under its lock) and waits
    /// until Prometheus has scraped the result.
    async fn advance(&self, providers: &Providers, step: impl FnOnce(&mut Exporter)) {
        let generation = {
            let mut e = self.exporter.lock().expect("exporter");
            step(&mut e);
            e.generation += 1;
            e.generation
        };
        let probe = ProviderSpec::Prometheus(serin_spec::PrometheusMetric {
            address: Some(self.address.clone()),
            query: "generation".into(),
            timeout: Some(2),
            ..Default::default()
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = providers.measure(&probe).await;
            if matches!(&last, Outcome::Value(v) if v[0].as_f64() == Some(generation as f64)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never scraped generation {generation}; last: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn template(address: &str, scenario: &str, judge: &str) -> AnalysisTemplate {
    let sel = |name: &str, arg: &str, extra: &str| {
        format!("{name}{{scenario=\"{scenario}\",hash=\"{{{{args.{arg}}}}}\"{extra}}}")
    };
    let arm = |arg: &str| match judge {
        "error-rate" => serde_json::json!({
            "requests": sel("req_total", arg, ""),
            "errors": sel("req_total", arg, ",code=\"500\""),
        }),
        _ => serde_json::json!({"buckets": sel("lat_bucket", arg, "")}),
    };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "judge"},
        "spec": {
            "args": [{"name": "canary-hash"}, {"name": "stable-hash"}],
            "metrics": [{"name": "judge", "interval": "30s", "count": 40,
                "provider": {"plugin": {"serin.dev/judge": {
                    "address": address, "judge": judge,
                    "canary": arm("canary-hash"), "baseline": arm("stable-hash")}}}}]}
    }))
    .expect("template")
}

fn inputs() -> RunInputs {
    let arg = |name: &str, value: &str| AnalysisRunArgument {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    };
    RunInputs {
        args: vec![arg("canary-hash", "c0ffee"), arg("stable-hash", "5ab1e")],
        ..Default::default()
    }
}

/// Per interval: requests per pod, error probability and latency scale of
/// the canary and of the baseline.
struct Traffic {
    per_pod: u64,
    canary: (f64, f64),
    baseline: (f64, f64),
}

/// Runs the judge metric to its end, one exporter interval per
/// measurement; the finished run and how many canary requests were made
/// after its first measurement. The canary's pod `c1` restarts at interval
/// 8 and a pod `c3` joins at interval 12.
async fn judge_run(prom: &Prom, scenario: &str, judge: &str, t: Traffic) -> (AnalysisRun, u64) {
    // One run's providers, as the runner takes them.
    let providers = Providers::new().for_run();
    let mut run = AnalysisRun::new(
        scenario,
        &[template(&prom.address, scenario, judge)],
        &inputs(),
    )
    .expect("build");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ scenario.len() as u64);
    let mut interval = 0u64;
    let mut canary_after_first = 0u64;
    let mut now = 0;
    while !run.is_complete() {
        for task in run.next_due(now) {
            let i = interval;
            let mut made = 0;
            prom.advance(&providers, |e| {
                if i == 8 {
                    e.restart("c1");
                }
                let mut pods = vec!["c1", "c2"];
                if i >= 12 {
                    pods.push("c3");
                }
                for pod in pods {
                    e.requests(
                        &mut rng, scenario, "c0ffee", pod, t.per_pod, t.canary.0, t.canary.1,
                    );
                    made += t.per_pod;
                }
                for pod in ["b1", "b2"] {
                    e.requests(
                        &mut rng,
                        scenario,
                        "5ab1e",
                        pod,
                        t.per_pod,
                        t.baseline.0,
                        t.baseline.1,
                    );
                }
            })
            .await;
            if interval > 0 {
                canary_after_first += made;
            }
            interval += 1;
            let outcome = providers.measure(&task.provider).await;
            run.record(&task.metric, outcome, now + 10);
        }
        if run.is_complete() {
            break;
        }
        now = run.next_wake().expect("a wake time while running");
    }
    let m = &run.status().metric_results[0];
    eprintln!(
        "{scenario}: {:?} after {} measurements; last: {}",
        run.phase(),
        m.count,
        m.measurements.last().map_or("", |x| x.message.as_str())
    );
    (run, canary_after_first)
}

fn summary(run: &AnalysisRun) -> String {
    let m = &run.status().metric_results[0];
    m.measurements
        .iter()
        .map(|x| format!("{:?} {}", x.phase, x.message))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_rate_judge_fails_a_worse_canary_and_never_an_alike_one() {
    let prom = start("errors").await;
    let (bad, _) = judge_run(
        &prom,
        "bad-errors",
        "error-rate",
        Traffic {
            per_pod: 200,
            canary: (0.08, 1.0),
            baseline: (0.02, 1.0),
        },
    )
    .await;
    assert_eq!(bad.phase(), Phase::Failed, "{}", summary(&bad));
    let m = &bad.status().metric_results[0];
    let last = m.measurements.last().expect("a measurement");
    assert!(
        last.message.contains("error-rate regression"),
        "{}",
        last.message
    );
    let v = last.value.as_ref().expect("a value");
    assert_eq!(v["decision"], "fail", "{v}");
    assert!(v["lowerBound"].as_f64() > v["threshold"].as_f64(), "{v}");
    assert!(
        m.measurements.len() < 20,
        "a 4× error rate takes a few intervals: {}",
        summary(&bad)
    );

    let (same, canary_requests) = judge_run(
        &prom,
        "aa-errors",
        "error-rate",
        Traffic {
            per_pod: 200,
            canary: (0.02, 1.0),
            baseline: (0.02, 1.0),
        },
    )
    .await;
    assert_eq!(same.phase(), Phase::Successful, "{}", summary(&same));
    let m = &same.status().metric_results[0];
    assert_eq!(m.count, 40, "{}", summary(&same));
    assert!(
        m.measurements.iter().all(|x| x.phase == Phase::Successful),
        "{}",
        summary(&same)
    );
    // Every canary request after the first measurement reached the judge
    // once, through c1's restart and c3's arrival.
    let v = m
        .measurements
        .last()
        .and_then(|x| x.value.clone())
        .expect("a value");
    assert_eq!(v["canary"].as_u64(), Some(canary_requests), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_judge_fails_a_slower_canary_and_never_an_alike_one() {
    let prom = start("latency").await;
    let (bad, _) = judge_run(
        &prom,
        "bad-latency",
        "latency",
        Traffic {
            per_pod: 100,
            canary: (0.0, 0.4),
            baseline: (0.0, 0.2),
        },
    )
    .await;
    assert_eq!(bad.phase(), Phase::Failed, "{}", summary(&bad));
    let m = &bad.status().metric_results[0];
    let v = m
        .measurements
        .last()
        .and_then(|x| x.value.clone())
        .expect("a value");
    assert_eq!(v["decision"], "fail", "{v}");
    assert!(v["lowerBound"].as_f64() > v["threshold"].as_f64(), "{v}");

    let (same, canary_requests) = judge_run(
        &prom,
        "aa-latency",
        "latency",
        Traffic {
            per_pod: 100,
            canary: (0.0, 0.2),
            baseline: (0.0, 0.2),
        },
    )
    .await;
    assert_eq!(same.phase(), Phase::Successful, "{}", summary(&same));
    let m = &same.status().metric_results[0];
    assert_eq!(m.count, 40, "{}", summary(&same));
    let v = m
        .measurements
        .last()
        .and_then(|x| x.value.clone())
        .expect("a value");
    assert_eq!(v["canary"].as_u64(), Some(canary_requests), "{v}");
}
