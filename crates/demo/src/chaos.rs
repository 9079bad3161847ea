//! `serin chaos`: the fault catalogue, run on real traffic.
//!
//! One control plane, one proxy and, per fault, a canary Rollout of a good
//! stable version (`blue`) through its own Istio VirtualService listener, all
//! side by side. Each listener gets constant load (a fixed request rate, one
//! request in [`CHECKOUT_EVERY`] to `/api/checkout`). The canary carries the
//! fault (selected by the demo service's `env`, see `serin-demo-app`) and is
//! judged by the analysis a user would write ([`analysis_template`]): the
//! builtin error rate and p95 latency with fixed thresholds, and the
//! sequential judges against the stable revision. Good-vs-good (A/A) canaries
//! run alongside with the same analysis. Nobody intervenes: an abort is the
//! analysis's own doing.
//!
//! Per canary it measures what a user would ask: was it caught, how long
//! from the first bad response a client saw to the abort, how many requests
//! reached the bad revision (the proxy's counters), how many errors clients
//! saw, and how long from the abort to the last response from the bad
//! revision (the rollback as clients see it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serin_clock::now_ms;
use serin_controlplane::reconciler::ControlPlane;
use serin_controlplane::up::{self, ServerConfig};
use serin_engine as e;

use crate::{listener, write};

/// One request in this many goes to `/api/checkout` (4 % of traffic): the
/// path the partial-outage fault breaks.
pub const CHECKOUT_EVERY: u64 = 25;
/// The path the partial-outage fault breaks.
pub const CHECKOUT_PATH: &str = "/api/checkout";

/// One bad release.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    /// Short name, also the canary's version tag.
    pub name: &'static str,
    /// What the release does wrong.
    pub what: &'static str,
    /// The demo service's environment that selects the fault.
    pub env: &'static [(&'static str, &'static str)],
    /// `resources.limits.memory` of the container, if any.
    pub memory_limit: Option<&'static str>,
}

/// The name A/A canaries carry in rows.
pub const AA: &str = "a/a";

/// The catalogue: every common bad release.
pub fn catalogue() -> Vec<Fault> {
    vec![
        Fault {
            name: "crash-loop",
            what: "exits 5 s after start, restarted with backoff",
            env: &[("DEMO_CRASH_AFTER_MS", "5000")],
            memory_limit: None,
        },
        Fault {
            name: "errors-10pct",
            what: "HTTP 500 on 10 % of requests",
            env: &[("DEMO_ERROR_RATE", "0.1")],
            memory_limit: None,
        },
        Fault {
            name: "errors-2pct",
            what: "HTTP 500 on one request in fifty",
            env: &[("DEMO_ERROR_RATE", "0.02")],
            memory_limit: None,
        },
        Fault {
            name: "latency-400ms",
            what: "+400 ms on every request",
            env: &[("DEMO_LATENCY_MS", "400")],
            memory_limit: None,
        },
        Fault {
            name: "latency-p50-50ms",
            what: "+50 ms on the slower half of requests (p95 +50 ms)",
            env: &[("DEMO_LATENCY_MS", "50"), ("DEMO_LATENCY_PERCENTILE", "50")],
            memory_limit: None,
        },
        Fault {
            name: "memory-oom",
            what: "leaks 8 MiB/s under a 64 MiB limit: OOM-killed",
            env: &[("DEMO_LEAK_MB_PER_SEC", "8")],
            memory_limit: Some("64Mi"),
        },
        Fault {
            name: "readiness-flap",
            what: "readiness flips every 5 s",
            env: &[("DEMO_READY_FLAP_MS", "5000")],
            memory_limit: None,
        },
        Fault {
            name: "slow-start",
            what: "ready at once, +500 ms falling to 0 over 30 s",
            env: &[
                ("DEMO_SLOW_START_MS", "30000"),
                ("DEMO_SLOW_START_LATENCY_MS", "500"),
            ],
            memory_limit: None,
        },
        Fault {
            name: "partial-path",
            what: "HTTP 500 on /api/checkout only (4 % of traffic)",
            env: &[("DEMO_FAULT_PATH", CHECKOUT_PATH)],
            memory_limit: None,
        },
    ]
}

/// How the catalogue runs.
pub struct ChaosOptions {
    /// The `serin` executable (provides `proxy` and `demo-app`).
    pub serin_exe: PathBuf,
    /// Working folder (state, manifests, logs).
    pub work_dir: PathBuf,
    /// Faults to run (a subset of [`catalogue`]).
    pub faults: Vec<Fault>,
    /// A/A canaries per round.
    pub aa: usize,
    /// Canaries of each fault per round (at least 1): the detection rate
    /// needs many runs per fault, and one round runs them side by side.
    pub copies: usize,
    /// Rounds: every fault and A/A canary runs once per round.
    pub rounds: usize,
    /// Requests per second through each canary's listener.
    pub rate: u32,
    /// The canary steps.
    pub steps: Steps,
    /// Progress lines go here.
    pub progress: Box<dyn Fn(&str) + Send + Sync>,
    /// Called with each round's rows as soon as the round ends, so a long
    /// run that is interrupted keeps the rounds it finished.
    pub on_round: OnRound,
}

/// What [`ChaosOptions::on_round`] is.
pub type OnRound = Box<dyn Fn(&[ChaosRow]) + Send + Sync>;

/// The canary's steps: `setWeight: first_weight`, pause, `setWeight: 50`,
/// pause, `setWeight: 100`.
#[derive(Clone, Debug)]
pub struct Steps {
    /// Canary weight of the first step, in percent.
    pub first_weight: u32,
    /// Length of the first step's pause (most faults are caught in it).
    pub first_pause: Duration,
    /// Length of the second (50 %) step's pause.
    pub second_pause: Duration,
}

impl Default for Steps {
    fn default() -> Self {
        Self {
            first_weight: 25,
            first_pause: Duration::from_secs(30),
            second_pause: Duration::from_secs(10),
        }
    }
}

/// The analysis a user would write, shared by every canary: a fixed error
/// budget on the canary alone, and the sequential judges comparing its error
/// rate and latency with the stable revision (docs/judge.md). No fixed
/// latency threshold: on a busy machine a good canary's p95 crosses any
/// threshold a fault would (both arms slow down together), so latency is
/// judged relative to the stable, which shares the machine — from the
/// run's sixth second on (`initialDelay`), past the canary's cold start.
pub fn analysis_template() -> String {
    r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: chaos-analysis
spec:
  args:
    - name: canary-hash
    - name: stable-hash
  metrics:
    - name: error-rate
      interval: 1s
      failureCondition: len(result) > 0 && result[0] > 0.05
      failureLimit: 0
      provider:
        builtin:
          metric: error-rate
          revision: "{{args.canary-hash}}"
          window: 2s
          minRequests: 10
    - name: judge-error-rate
      interval: 1s
      provider:
        builtin:
          metric: judge-error-rate
          revision: "{{args.canary-hash}}"
          baseline: "{{args.stable-hash}}"
    - name: judge-latency
      interval: 1s
      # A new process is slower for its first seconds (page faults, first
      # connections): in a debug build enough for the judge to fail a good
      # canary in 1 of 4 A/A runs. Judging from 5 s on leaves that out and
      # still catches a slow start (+500 ms falling over 30 s).
      initialDelay: 5s
      provider:
        builtin:
          metric: judge-latency
          revision: "{{args.canary-hash}}"
          baseline: "{{args.stable-hash}}"
"#
    .to_string()
}

/// What the canary of one rollout runs.
#[derive(Clone, Debug)]
struct Arm {
    /// Version tag (`blue` for the stable, the fault name, `green` for A/A).
    tag: String,
    env: Vec<(String, String)>,
    memory_limit: Option<String>,
}

impl Arm {
    fn stable() -> Self {
        Self {
            tag: "blue".into(),
            env: Vec::new(),
            memory_limit: None,
        }
    }
}

/// A canary Rollout with its Services and VirtualService; `round` makes
/// each round's canary a new revision.
fn rollout(name: &str, arm: &Arm, round: usize, o: &Steps) -> String {
    let mut env = format!(
        "            - name: DEMO_DRAIN_MS\n              value: \"300\"\n            - name: DEMO_ROUND\n              value: \"{round}\"\n"
    );
    for (k, v) in &arm.env {
        env.push_str(&format!(
            "            - name: {k}\n              value: \"{v}\"\n"
        ));
    }
    let resources = arm.memory_limit.as_deref().map_or(String::new(), |m| {
        format!("          resources:\n            limits:\n              memory: {m}\n")
    });
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {name}
spec:
  replicas: 1
  # A canary that never becomes available (a crash loop at start) aborts
  # instead of waiting forever.
  progressDeadlineSeconds: 30
  progressDeadlineAbort: true
  strategy:
    canary:
      canaryService: {name}-canary
      stableService: {name}-stable
      abortScaleDownDelaySeconds: 1
      scaleDownDelaySeconds: 1
      trafficRouting:
        istio:
          virtualService:
            name: {name}-vs
            routes:
              - primary
      analysis:
        templates:
          - templateName: chaos-analysis
        args:
          - name: canary-hash
            valueFrom:
              podTemplateHashValue: Latest
          - name: stable-hash
            valueFrom:
              podTemplateHashValue: Stable
      steps:
        - setWeight: {w}
        - pause:
            duration: {p1}s
        - setWeight: 50
        - pause:
            duration: {p2}s
        - setWeight: 100
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: app
          image: argoproj/rollouts-demo:{tag}
          ports:
            - containerPort: 8080
          env:
{env}{resources}          readinessProbe:
            httpGet:
              path: /ready
              port: 8080
            periodSeconds: 1
            timeoutSeconds: 2
            failureThreshold: 3
---
apiVersion: v1
kind: Service
metadata:
  name: {name}-stable
spec:
  selector:
    app: {name}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: {name}-canary
spec:
  selector:
    app: {name}
  ports:
    - port: 80
      targetPort: 8080
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: {name}-vs
spec:
  hosts:
    - {name}.local
  http:
    - name: primary
      route:
        - destination:
            host: {name}-stable
          weight: 100
        - destination:
            host: {name}-canary
          weight: 0
"#,
        w = o.first_weight,
        p1 = o.first_pause.as_secs().max(1),
        p2 = o.second_pause.as_secs().max(1),
        tag = arm.tag,
    )
}

/// Counters of one canary's traffic (one round).
#[derive(Default)]
struct Counters {
    /// The canary's version tag, as the demo service's body names it.
    canary_version: String,
    sent: AtomicU64,
    /// 5xx and connection errors / timeouts.
    errors: AtomicU64,
    /// Errors plus responses marked `x-demo-fault` (injected latency).
    bad: AtomicU64,
    first_bad_ms: AtomicU64,
    last_bad_ms: AtomicU64,
    canary_responses: AtomicU64,
    last_canary_ms: AtomicU64,
    /// Errors by kind: `timeout`, `transport`, or the status code.
    error_kinds: Mutex<BTreeMap<String, u64>>,
    first_error_ms: AtomicU64,
    last_error_ms: AtomicU64,
}

impl Counters {
    fn new(canary_version: &str) -> Self {
        Self {
            canary_version: canary_version.to_owned(),
            ..Self::default()
        }
    }

    fn error(&self, kind: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let ms = now_ms();
        let _ = self
            .first_error_ms
            .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        self.last_error_ms.fetch_max(ms, Ordering::Relaxed);
        if let Ok(mut m) = self.error_kinds.lock() {
            *m.entry(kind).or_insert(0) += 1;
        }
    }

    fn mark_bad(&self, ms: u64) {
        self.bad.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .first_bad_ms
            .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
        self.last_bad_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Open-loop load at a fixed rate on one listener; counters swapped per round.
struct RateLoad {
    current: Mutex<Arc<Counters>>,
    stop: AtomicBool,
}

impl RateLoad {
    fn counters(&self) -> Arc<Counters> {
        self.current
            .lock()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    fn reset(&self, canary_version: &str) -> Arc<Counters> {
        let fresh = Arc::new(Counters::new(canary_version));
        match self.current.lock() {
            Ok(mut c) => *c = Arc::clone(&fresh),
            Err(e) => *e.into_inner() = Arc::clone(&fresh),
        }
        fresh
    }
}

/// Longest wait, after an abort, for the canary's last responses.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// Requests never wait longer than this; a timeout counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Cap on requests in flight per listener, so a stuck upstream cannot make
/// the generator grow without bound (skipped ticks are not sent).
const MAX_IN_FLIGHT: u64 = 256;

fn start_rate_load(rt: &tokio::runtime::Handle, addr: SocketAddr, rate: u32) -> Arc<RateLoad> {
    let load = Arc::new(RateLoad {
        current: Mutex::new(Arc::new(Counters::default())),
        stop: AtomicBool::new(false),
    });
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let in_flight = Arc::new(AtomicU64::new(0));
    let l = Arc::clone(&load);
    let handle = rt.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n: u64 = 0;
        while !l.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                continue;
            }
            n += 1;
            let path = if n.is_multiple_of(CHECKOUT_EVERY) {
                CHECKOUT_PATH
            } else {
                "/"
            };
            let Ok(req) = hyper::Request::get(format!("http://{addr}{path}")).body(Empty::new())
            else {
                return;
            };
            let counters = l.counters();
            let client = client.clone();
            let in_flight = Arc::clone(&in_flight);
            in_flight.fetch_add(1, Ordering::Relaxed);
            handle.spawn(async move {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                one_request(&client, req, &counters).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    load
}

async fn one_request(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    req: hyper::Request<Empty<Bytes>>,
    c: &Counters,
) {
    let res = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let res = client.request(req).await.map_err(|_| ())?;
        let status = res.status();
        let marked = res.headers().contains_key(serin_demo_app::FAULT_HEADER);
        let body = res.into_body().collect().await.map_err(|_| ())?.to_bytes();
        Ok::<_, ()>((status, marked, body))
    })
    .await
    .map_err(|_| "timeout")
    .and_then(|r| r.map_err(|()| "transport"));
    let ms = now_ms();
    match res {
        Ok((status, marked, body)) => {
            let version = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(str::to_owned));
            if version.as_deref() == Some(c.canary_version.as_str()) {
                c.canary_responses.fetch_add(1, Ordering::Relaxed);
                c.last_canary_ms.fetch_max(ms, Ordering::Relaxed);
            }
            if status.is_server_error() {
                c.error(status.as_u16().to_string());
            }
            if status.is_server_error() || marked {
                c.mark_bad(ms);
            }
        }
        Err(kind) => {
            c.error(kind.to_owned());
            c.mark_bad(ms);
        }
    }
}

/// One canary of one round.
#[derive(Clone, Debug, Serialize)]
pub struct ChaosRow {
    /// Round number (0-based).
    pub round: usize,
    /// Fault name, or [`AA`].
    pub fault: String,
    /// The Rollout.
    pub rollout: String,
    /// `aborted`, `promoted` or `timeout`.
    pub outcome: String,
    /// Metrics of the analysis that failed.
    pub failed_metrics: Vec<String>,
    /// First bad response a client saw → abort (ms); negative when the
    /// abort came first, `None` without abort or bad response.
    pub first_bad_to_abort_ms: Option<i64>,
    /// Canary write → abort (ms).
    pub deploy_to_abort_ms: Option<u64>,
    /// Canary write → the end (abort or promotion seen), ms.
    pub deploy_to_end_ms: u64,
    /// Requests the proxy routed to the canary revision.
    pub canary_requests: u64,
    /// 5xx and connection errors clients saw during this canary.
    pub client_errors: u64,
    /// The same by kind: `timeout`, `transport` or the status code.
    pub client_error_kinds: BTreeMap<String, u64>,
    /// When clients saw the first and the last error, in ms after the
    /// canary's manifest was written.
    pub client_errors_between_ms: Option<(u64, u64)>,
    /// Bad responses clients saw (errors + injected-latency responses).
    pub bad_responses: u64,
    /// Requests sent during this canary.
    pub requests: u64,
    /// Abort → last response a client got from the canary revision (ms).
    pub rollback_ms: Option<u64>,
    /// Highest canary weight seen.
    pub max_weight: u32,
    /// Status message at the end.
    pub message: String,
}

impl ChaosRow {
    /// A fault is caught when aborted; an A/A canary is right when promoted.
    pub fn correct(&self) -> bool {
        if self.fault == AA {
            self.outcome == "promoted"
        } else {
            self.outcome == "aborted"
        }
    }

    /// Bad responses the canary's weight × the exposure (first bad response
    /// → last response from the canary) implies at the load's rate.
    pub fn exposure_bound(&self, rate: u32) -> Option<u64> {
        let exposure = self.first_bad_to_abort_ms?.max(0) as u64 + self.rollback_ms.unwrap_or(0);
        Some(
            (f64::from(self.max_weight) / 100.0 * f64::from(rate) * exposure as f64 / 1000.0).ceil()
                as u64,
        )
    }
}

struct Slot {
    name: String,
    fault: Option<Fault>,
    load: Arc<RateLoad>,
}

fn canary_arm(slot: &Slot) -> Arm {
    match &slot.fault {
        Some(f) => Arm {
            tag: f.name.to_owned(),
            env: f
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            memory_limit: f.memory_limit.map(str::to_owned),
        },
        None => Arm {
            tag: "green".into(),
            env: Vec::new(),
            memory_limit: None,
        },
    }
}

async fn wait_healthy(cp: &ControlPlane, name: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let s = cp.store().status(name)?;
        if s.phase == e::Phase::Healthy
            && s.stable_hash.is_some()
            && s.current_hash == s.stable_hash
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{name}: not Healthy after {limit:?}: {:?} {}",
                s.phase,
                s.message
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one canary of one round to its end and measures it.
async fn one_canary(
    cp: Arc<ControlPlane>,
    manifests: PathBuf,
    slot: &Slot,
    round: usize,
    o: &Steps,
) -> anyhow::Result<ChaosRow> {
    let before = cp.store().status(&slot.name)?;
    let stable = before.stable_hash.clone();
    // Runs of earlier rounds stay in the store; only new failures count.
    let runs_before = failed_metrics_by_run(&cp, &slot.name);
    let arm = canary_arm(slot);
    let counters = slot.load.reset(&arm.tag);
    let started = now_ms();
    let t0 = Instant::now();
    write(
        &manifests,
        &format!("{}.yaml", slot.name),
        &rollout(&slot.name, &arm, round + 1, o),
    )?;
    let limit = o.first_pause + o.second_pause + Duration::from_secs(90);
    let mut max_weight = 0;
    let mut canary_hash: Option<e::RevisionHash> = None;
    let (outcome, status) = loop {
        let s = cp.store().status(&slot.name)?;
        if s.current_hash != stable && s.current_hash.is_some() {
            canary_hash.clone_from(&s.current_hash);
        }
        max_weight = max_weight.max(s.canary_weight);
        if s.abort && s.phase == e::Phase::Degraded {
            break ("aborted", s);
        }
        if canary_hash.is_some() && s.phase == e::Phase::Healthy && s.stable_hash == canary_hash {
            break ("promoted", s);
        }
        if t0.elapsed() > limit {
            break ("timeout", s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ended_ms = now_ms();
    // Requests in flight at the abort may still finish on the canary: wait
    // until no new canary response has come for a second. Only after an
    // abort, and never past DRAIN_LIMIT: a promoted canary, or one still
    // running at the time limit, answers every second for ever (the wait
    // used to be unbounded for a timed-out canary, and a round hung).
    if outcome == "aborted" {
        let drain_deadline = Instant::now() + DRAIN_LIMIT;
        let mut last = counters.last_canary_ms.load(Ordering::Relaxed);
        while Instant::now() < drain_deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = counters.last_canary_ms.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
    }
    let aborted_at = status.aborted_at.filter(|_| outcome == "aborted");
    let first_bad = counters.first_bad_ms.load(Ordering::Relaxed);
    let last_canary = counters.last_canary_ms.load(Ordering::Relaxed);
    let canary_requests = match &canary_hash {
        Some(h) => cp
            .proxy()
            .stats()
            .await
            .map(|s| {
                s.revisions
                    .iter()
                    .filter(|r| r.revision == h.0)
                    .map(|r| r.requests)
                    .sum()
            })
            .unwrap_or(0),
        None => 0,
    };
    let runs_after = failed_metrics_by_run(&cp, &slot.name);
    let failed_metrics = runs_after
        .into_iter()
        .filter(|(run, _)| !runs_before.contains_key(run))
        .flat_map(|(_, m)| m)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(ChaosRow {
        round,
        fault: slot
            .fault
            .as_ref()
            .map_or(AA.to_owned(), |f| f.name.to_owned()),
        rollout: slot.name.clone(),
        outcome: outcome.into(),
        failed_metrics,
        first_bad_to_abort_ms: aborted_at
            .filter(|_| first_bad > 0)
            .map(|a| a as i64 - first_bad as i64),
        deploy_to_abort_ms: aborted_at.map(|a| a.saturating_sub(started)),
        deploy_to_end_ms: ended_ms.saturating_sub(started),
        canary_requests,
        client_errors: counters.errors.load(Ordering::Relaxed),
        client_errors_between_ms: match (
            counters.first_error_ms.load(Ordering::Relaxed),
            counters.last_error_ms.load(Ordering::Relaxed),
        ) {
            (0, _) => None,
            (a, b) => Some((a.saturating_sub(started), b.saturating_sub(started))),
        },
        client_error_kinds: counters
            .error_kinds
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        bad_responses: counters.bad.load(Ordering::Relaxed),
        requests: counters.sent.load(Ordering::Relaxed),
        rollback_ms: aborted_at.map(|a| last_canary.saturating_sub(a)),
        max_weight,
        message: status.message,
    })
}

fn failed_metrics_by_run(cp: &ControlPlane, rollout: &str) -> BTreeMap<String, Vec<String>> {
    let runs: Vec<serde_json::Value> = cp
        .store()
        .scan_json(&format!("run/{rollout}/"))
        .unwrap_or_default();
    runs.iter()
        .filter_map(|r| {
            let name = r.get("name")?.as_str()?.to_owned();
            let failed = r
                .get("metricResults")?
                .as_array()?
                .iter()
                .filter(|m| m.get("phase").and_then(|p| p.as_str()) == Some("Failed"))
                .filter_map(|m| m.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                .collect();
            Some((name, failed))
        })
        .collect()
}

/// The rollouts of one round: `copies` canaries of each fault, then `aa`
/// good-vs-good ones. With one copy a fault's rollout is `chaos-{fault}`,
/// the name tests and docs use; with more, `chaos-{fault}-{k}`.
fn canary_names(faults: &[Fault], copies: usize, aa: usize) -> Vec<(String, Option<Fault>)> {
    let mut names = Vec::new();
    for f in faults {
        for k in 1..=copies {
            let name = if copies == 1 {
                format!("chaos-{}", f.name)
            } else {
                format!("chaos-{}-{k}", f.name)
            };
            names.push((name, Some(f.clone())));
        }
    }
    names.extend((0..aa).map(|i| (format!("chaos-aa-{}", i + 1), None)));
    names
}

/// Runs the catalogue; returns one row per canary per round.
pub async fn run(o: ChaosOptions) -> anyhow::Result<Vec<ChaosRow>> {
    let say = &o.progress;
    let manifests = o.work_dir.join("manifests");
    let state = o.work_dir.join("state");
    std::fs::create_dir_all(&manifests)?;
    write(&manifests, "analysis.yaml", &analysis_template())?;
    let copies = o.copies.max(1);
    let names = canary_names(&o.faults, copies, o.aa);
    for (name, _) in &names {
        write(
            &manifests,
            &format!("{name}.yaml"),
            &rollout(name, &Arm::stable(), 0, &o.steps),
        )?;
    }
    let exe = o.serin_exe.display().to_string();
    let config = ServerConfig {
        state_dir: Some(state),
        images: serde_json::json!({
            "argoproj/rollouts-demo": {"command": [exe, "demo-app"], "args": ["--demo-version", "{tag}"]}
        }),
        ..ServerConfig::default()
    };

    for f in &o.faults {
        say(&format!("fault {:<17} {}", f.name, f.what));
    }
    say(&format!(
        "starting the control plane, the proxy and {} stable replicas (blue)…",
        names.len()
    ));
    let running = up::start(config, vec![manifests.clone()], o.serin_exe.clone()).await?;
    let cp = Arc::clone(&running.cp);
    // The clients get their own runtime: the control plane shares this
    // process, and a busy reconcile must not delay requests (a client that
    // stalls would count the stall against the proxy).
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("chaos-load")
        .enable_all()
        .build()?;
    let work = async {
        for (name, _) in &names {
            wait_healthy(&cp, name, Duration::from_secs(90)).await?;
        }
        let mut slots = Vec::new();
        for (name, fault) in names {
            let addr = listener(&cp, &format!("{name}-vs"))
                .ok_or_else(|| anyhow::anyhow!("no listener for {name}-vs"))?;
            let load = start_rate_load(load_rt.handle(), addr, o.rate);
            slots.push(Slot { name, fault, load });
        }
        say(&format!(
            "all healthy; {} requests/s on each of {} listeners",
            o.rate,
            slots.len()
        ));
        // Let the stable revision's counters and the load settle.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut rows = Vec::new();
        for round in 0..o.rounds {
            say(&format!(
                "round {}/{}: {} canaries at once ({} faults × {}, {} A/A)",
                round + 1,
                o.rounds,
                slots.len(),
                o.faults.len(),
                copies,
                o.aa
            ));
            let mut set = tokio::task::JoinSet::new();
            let shared = Arc::new(slots);
            for i in 0..shared.len() {
                let (cp, manifests, shared, steps) = (
                    Arc::clone(&cp),
                    manifests.clone(),
                    Arc::clone(&shared),
                    o.steps.clone(),
                );
                set.spawn(async move {
                    let slot = &shared[i];
                    one_canary(cp, manifests, slot, round, &steps).await
                });
            }
            let mut round_rows = Vec::new();
            while let Some(r) = set.join_next().await {
                round_rows.push(r??);
            }
            slots = Arc::try_unwrap(shared)
                .map_err(|_| anyhow::anyhow!("a canary task outlived its round"))?;
            round_rows.sort_by(|a, b| a.rollout.cmp(&b.rollout));
            for r in &round_rows {
                say(&format!(
                    "  {:<18} {:<8} {}",
                    r.fault,
                    r.outcome,
                    if r.failed_metrics.is_empty() {
                        String::new()
                    } else {
                        format!("failed: {}", r.failed_metrics.join(", "))
                    }
                ));
            }
            (o.on_round)(&round_rows);
            // Back to the stable template where the canary was aborted, so
            // every round starts from a Healthy rollout.
            if round + 1 < o.rounds {
                for r in round_rows.iter().filter(|r| r.outcome != "promoted") {
                    write(
                        &manifests,
                        &format!("{}.yaml", r.rollout),
                        &rollout(&r.rollout, &Arm::stable(), 0, &o.steps),
                    )?;
                }
                for r in &round_rows {
                    wait_healthy(&cp, &r.rollout, Duration::from_secs(60)).await?;
                }
            }
            rows.extend(round_rows);
        }
        for s in &slots {
            s.load.stop.store(true, Ordering::Relaxed);
        }
        anyhow::Ok(rows)
    };
    // Rounds already finished were handed to `on_round`, so an interrupted
    // run keeps them.
    let result = crate::until_interrupted(work, &**say).await;
    running.stop_all().await;
    // Dropping a runtime inside another one would panic.
    load_rt.shutdown_background();
    result
}

/// 95 % Wilson score interval for `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    const Z: f64 = 1.959_963_984_540_054;
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + Z * Z / n;
    let centre = (p + Z * Z / (2.0 * n)) / denom;
    let half = Z * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt() / denom;
    // At 0 or n the bound is exactly 0 or 1; rounding would leave 1e-18.
    let lo = if k == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let hi = if k == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (lo, hi)
}

/// P(X ≤ k) for X ~ Binomial(n, p), summed in log space so large `n`
/// does not underflow.
fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_pmf = n as f64 * lq;
    let mut sum = log_pmf.exp();
    for i in 0..k.min(n) {
        log_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln() + lp - lq;
        sum += log_pmf.exp();
    }
    sum.min(1.0)
}

/// 95 % Clopper–Pearson (exact) interval for `k` successes in `n` trials,
/// by bisection on the binomial tails. Written here because the one formula
/// does not justify a statistics crate in the demo.
pub fn clopper_pearson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let half_alpha = 0.025;
    // Solve f(p) = target for f decreasing in p.
    let solve = |f: &dyn Fn(f64) -> f64, target: f64| {
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if f(mid) > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
    };
    let lower = if k == 0 {
        0.0
    } else {
        // P(X ≥ k; p) = α/2, i.e. P(X ≤ k−1; p) = 1 − α/2.
        solve(&|p| binomial_cdf(k - 1, n, p), 1.0 - half_alpha)
    };
    let upper = if k == n {
        1.0
    } else {
        solve(&|p| binomial_cdf(k, n, p), half_alpha)
    };
    (lower, upper)
}

/// The `q` quantile (nearest rank) of `v`.
fn quantile(v: &mut [i64], q: f64) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Per fault over all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Fault name, or [`AA`].
    pub fault: String,
    /// Canaries run.
    pub runs: u64,
    /// Aborted canaries (detections for a fault, false aborts for A/A).
    pub aborted: u64,
    /// 95 % Wilson interval of the abort rate.
    pub wilson: (f64, f64),
    /// 95 % Clopper–Pearson interval of the abort rate.
    pub clopper_pearson: (f64, f64),
    /// Median first bad response → abort (ms).
    pub median_detect_ms: Option<i64>,
    /// p90 first bad response → abort (ms).
    pub p90_detect_ms: Option<i64>,
    /// Median client-visible errors per canary.
    pub median_client_errors: Option<i64>,
    /// Median rollback (abort → last canary response, ms).
    pub median_rollback_ms: Option<i64>,
    /// Which metrics failed, with how many canaries each.
    pub caught_by: BTreeMap<String, u64>,
}

/// Summaries in catalogue order, A/A last.
pub fn summarize(rows: &[ChaosRow]) -> Vec<Summary> {
    let mut order: Vec<String> = Vec::new();
    for r in rows {
        if !order.contains(&r.fault) {
            order.push(r.fault.clone());
        }
    }
    order.sort_by_key(|f| f == AA);
    order
        .into_iter()
        .map(|fault| {
            let mine: Vec<&ChaosRow> = rows.iter().filter(|r| r.fault == fault).collect();
            let runs = mine.len() as u64;
            let aborted = mine.iter().filter(|r| r.outcome == "aborted").count() as u64;
            let mut detect: Vec<i64> = mine
                .iter()
                .filter_map(|r| r.first_bad_to_abort_ms)
                .collect();
            let mut errors: Vec<i64> = mine.iter().map(|r| r.client_errors as i64).collect();
            let mut rollback: Vec<i64> = mine
                .iter()
                .filter_map(|r| r.rollback_ms.map(|v| v as i64))
                .collect();
            let mut caught_by = BTreeMap::new();
            for m in mine.iter().flat_map(|r| &r.failed_metrics) {
                *caught_by.entry(m.clone()).or_insert(0) += 1;
            }
            Summary {
                fault,
                runs,
                aborted,
                wilson: wilson(aborted, runs),
                clopper_pearson: clopper_pearson(aborted, runs),
                median_detect_ms: quantile(&mut detect, 0.5),
                p90_detect_ms: quantile(&mut detect, 0.9),
                median_client_errors: quantile(&mut errors, 0.5),
                median_rollback_ms: quantile(&mut rollback, 0.5),
                caught_by,
            }
        })
        .collect()
}

fn opt_ms(v: Option<i64>) -> String {
    v.map_or("-".into(), |v| format!("{v} ms"))
}

/// One line per canary.
pub fn table(rows: &[ChaosRow], rate: u32) -> String {
    let mut out = format!(
        "{:<5} {:<17} {:<8} {:>14} {:>10} {:>8} {:>11} {:>9}  {}\n",
        "round",
        "fault",
        "outcome",
        "bad → abort",
        "to canary",
        "errors",
        "w·rate·t",
        "rollback",
        "caught by"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<5} {:<17} {:<8} {:>14} {:>10} {:>8} {:>11} {:>9}  {}\n",
            r.round + 1,
            r.fault,
            r.outcome,
            opt_ms(r.first_bad_to_abort_ms),
            r.canary_requests,
            r.client_errors,
            r.exposure_bound(rate).map_or("-".into(), |b| b.to_string()),
            opt_ms(r.rollback_ms.map(|v| v as i64)),
            r.failed_metrics.join(", "),
        ));
    }
    out
}

/// One line per fault over all rounds, with 95 % intervals.
pub fn summary_table(s: &[Summary]) -> String {
    let pct = |(a, b): (f64, f64)| format!("[{:.1}, {:.1}] %", a * 100.0, b * 100.0);
    let mut out = format!(
        "{:<17} {:>9} {:>20} {:>20} {:>12} {:>10} {:>8}  {}\n",
        "fault",
        "aborted",
        "Wilson 95 %",
        "Clopper-Pearson 95 %",
        "median b→a",
        "p90 b→a",
        "errors",
        "caught by"
    );
    for x in s {
        out.push_str(&format!(
            "{:<17} {:>9} {:>20} {:>20} {:>12} {:>10} {:>8}  {}\n",
            x.fault,
            format!("{}/{}", x.aborted, x.runs),
            pct(x.wilson),
            pct(x.clopper_pearson),
            opt_ms(x.median_detect_ms),
            opt_ms(x.p90_detect_ms),
            x.median_client_errors.map_or("-".into(), |v| v.to_string()),
            x.caught_by
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_match_known_values() {
        // 0 of 300: Clopper–Pearson upper 1 − 0.025^(1/300) = 1.22 %.
        let (lo, hi) = clopper_pearson(0, 300);
        assert_eq!(lo, 0.0);
        assert!(
            (hi - (1.0 - 0.025_f64.powf(1.0 / 300.0))).abs() < 1e-9,
            "{hi}"
        );
        // 300 of 300 mirrors it.
        let (lo, hi) = clopper_pearson(300, 300);
        assert!((lo - 0.025_f64.powf(1.0 / 300.0)).abs() < 1e-9, "{lo}");
        assert_eq!(hi, 1.0);
        // 5 of 10: the textbook [0.1871, 0.8129].
        let (lo, hi) = clopper_pearson(5, 10);
        assert!(
            (lo - 0.1871).abs() < 1e-4 && (hi - 0.8129).abs() < 1e-4,
            "{lo} {hi}"
        );
        // Wilson 0 of 100: upper 3.70 %.
        let (lo, hi) = wilson(0, 100);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.0370).abs() < 1e-4, "{hi}");
    }

    #[test]
    fn manifests_carry_the_fault_env_and_limit() {
        let f = catalogue()
            .into_iter()
            .find(|f| f.name == "memory-oom")
            .expect("in the catalogue");
        let arm = Arm {
            tag: f.name.into(),
            env: f
                .env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            memory_limit: f.memory_limit.map(Into::into),
        };
        let text = rollout("chaos-memory-oom", &arm, 3, &Steps::default());
        assert!(text.contains("image: argoproj/rollouts-demo:memory-oom"));
        assert!(text.contains("- name: DEMO_LEAK_MB_PER_SEC\n              value: \"8\""));
        assert!(text.contains("memory: 64Mi"));
        assert!(text.contains("value: \"3\""));
    }

    #[test]
    fn copies_give_each_fault_distinct_rollouts_and_one_copy_keeps_the_plain_name() {
        let faults: Vec<Fault> = catalogue().into_iter().take(2).collect();
        let one: Vec<String> = canary_names(&faults, 1, 1)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            one,
            ["chaos-crash-loop", "chaos-errors-10pct", "chaos-aa-1"]
        );
        let three = canary_names(&faults, 3, 2);
        assert_eq!(three.len(), 2 * 3 + 2);
        let mut distinct: Vec<&str> = three.iter().map(|(n, _)| n.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            three.len(),
            "rollout names collide: {three:?}"
        );
        let crash: Vec<&str> = three
            .iter()
            .filter(|(_, f)| f.as_ref().is_some_and(|f| f.name == "crash-loop"))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            crash,
            [
                "chaos-crash-loop-1",
                "chaos-crash-loop-2",
                "chaos-crash-loop-3"
            ]
        );
    }
}
