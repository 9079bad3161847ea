//! Per-(service, revision) request metrics: lock-free atomics on the hot
//! path, rendered as Prometheus text (`/metrics`, through a
//! `prometheus-client` collector) and as a JSON snapshot (`/v1/stats`).
//!
//! Why a custom collector instead of `Family<Labels, Counter>`: a family
//! looks labels up in a locked map on every request and clones the label set
//! to do so; here each route holds an `Arc<RevisionStats>` and counting is a
//! few relaxed atomic adds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde::Serialize;

/// Upper bounds of the latency histogram in seconds (Prometheus' defaults
/// plus 1 ms and 2.5 ms, since loopback services answer in microseconds).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BUCKET_NANOS: [u64; 13] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Who caused an answer: only `Upstream` answers count against a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The client: a request the proxy could not read (a malformed or
    /// unfinished body). The revision never saw a whole request.
    Client,
    /// The proxy or the control plane's routing: a Service with no
    /// revision, an endpoint cut off after it left the set.
    Proxy,
    /// The revision: its status code, or no ready endpoint, a connect
    /// failure, timeout or broken connection on its side.
    Upstream,
}

impl Cause {
    /// The `cause` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Proxy => "proxy",
            Self::Upstream => "upstream",
        }
    }
}

/// Why the proxy itself answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyFailure {
    /// The chosen revision has no ready endpoint (503, upstream: its pods
    /// are not ready, and clients routed to it get errors).
    NoEndpoint,
    /// The Service has no revision at all (503, proxy: routing).
    NoRevision,
    /// Every endpoint tried refused or timed out connecting (502, upstream).
    Connect,
    /// No response headers within the request timeout (504, upstream).
    Timeout,
    /// The upstream connection failed after the request was sent (502,
    /// upstream).
    Upstream,
    /// The endpoint left the set and its drain grace expired before it
    /// answered (504, proxy).
    Drained,
    /// The client's body could not be read: malformed chunked encoding, a
    /// body shorter than its length, the connection lost (400, client).
    BadRequestBody,
    /// The request timeout passed while the proxy was still waiting for the
    /// client's body (408, client).
    ClientTimeout,
}

impl ProxyFailure {
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::NoEndpoint | Self::NoRevision => 503,
            Self::Connect | Self::Upstream => 502,
            Self::Timeout | Self::Drained => 504,
            Self::BadRequestBody => 400,
            Self::ClientTimeout => 408,
        }
    }
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NoEndpoint => "no_endpoint",
            Self::NoRevision => "no_revision",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Upstream => "upstream",
            Self::Drained => "drained",
            Self::BadRequestBody => "bad_request_body",
            Self::ClientTimeout => "client_timeout",
        }
    }
    pub(crate) fn cause(self) -> Cause {
        match self {
            Self::NoRevision | Self::Drained => Cause::Proxy,
            Self::NoEndpoint | Self::Connect | Self::Timeout | Self::Upstream => Cause::Upstream,
            Self::BadRequestBody | Self::ClientTimeout => Cause::Client,
        }
    }
    const ALL: [ProxyFailure; 8] = [
        Self::NoEndpoint,
        Self::NoRevision,
        Self::Connect,
        Self::Timeout,
        Self::Upstream,
        Self::Drained,
        Self::BadRequestBody,
        Self::ClientTimeout,
    ];
    fn index(self) -> usize {
        self as usize
    }
}

/// What became of a mirrored copy of a request (Argo's `setMirrorRoute`).
/// Copies never count as requests: these are their only trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MirrorOutcome {
    /// The revision answered (any status; the answer was discarded).
    Answered,
    /// No endpoint, a connect failure, a timeout or a broken connection.
    Failed,
    /// Not sent: too many copies already in flight.
    Dropped,
    /// Not sent: the request had a body (only bodiless requests are copied).
    SkippedBody,
}

impl MirrorOutcome {
    const ALL: [MirrorOutcome; 4] = [
        Self::Answered,
        Self::Failed,
        Self::Dropped,
        Self::SkippedBody,
    ];
    fn label(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
            Self::SkippedBody => "skipped_body",
        }
    }
}

/// Cumulative counters of one (service, app, revision).
#[derive(Debug)]
pub(crate) struct RevisionStats {
    service: String,
    app: String,
    hash: String,
    /// Upstream responses by status code (index = code, 0..=999).
    upstream: Box<[AtomicU64]>,
    /// Proxy-generated answers by [`ProxyFailure`].
    proxy: [AtomicU64; ProxyFailure::ALL.len()],
    /// Connect attempts that failed, retried ones included.
    connect_failures: AtomicU64,
    /// Non-cumulative bucket counts; the last one is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    /// Mirrored copies sent to this revision, by [`MirrorOutcome`].
    mirrored: [AtomicU64; MirrorOutcome::ALL.len()],
}

impl RevisionStats {
    fn new(service: &str, app: &str, hash: &str) -> Self {
        Self {
            service: service.to_string(),
            app: app.to_string(),
            hash: hash.to_string(),
            upstream: (0..1000).map(|_| AtomicU64::new(0)).collect(),
            proxy: Default::default(),
            connect_failures: AtomicU64::new(0),
            buckets: Default::default(),
            sum_nanos: AtomicU64::new(0),
            mirrored: Default::default(),
        }
    }

    /// Count a mirrored copy: kept apart from every request counter.
    pub(crate) fn record_mirror(&self, outcome: MirrorOutcome) {
        self.mirrored[outcome as usize].fetch_add(1, Relaxed);
    }

    fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKET_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Count an upstream response.
    pub(crate) fn record_upstream(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.upstream.get(usize::from(status)) {
            c.fetch_add(1, Relaxed);
        }
        self.observe(elapsed);
    }

    /// Count an answer the proxy generated itself. Only upstream-caused
    /// ones enter the latency histogram: a flood of malformed requests
    /// answered at once must not make a slow revision look fast.
    pub(crate) fn record_proxy(&self, failure: ProxyFailure, elapsed: Duration) {
        self.proxy[failure.index()].fetch_add(1, Relaxed);
        if failure.cause() == Cause::Upstream {
            self.observe(elapsed);
        }
    }

    /// Count a failed connect attempt (also when another endpoint then
    /// answered).
    pub(crate) fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> RevisionSnapshot {
        let mut by_status = BTreeMap::new();
        let mut classes = StatusClasses::default();
        let mut requests = 0;
        let mut add = |code: u16, n: u64, classes: &mut StatusClasses| {
            requests += n;
            match code / 100 {
                1 => classes.c1xx += n,
                2 => classes.c2xx += n,
                3 => classes.c3xx += n,
                4 => classes.c4xx += n,
                _ => classes.c5xx += n,
            }
        };
        let mut upstream_5xx = 0;
        let mut causes = Causes::default();
        for (code, c) in self.upstream.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                causes.upstream += n;
                let code = u16::try_from(code).unwrap_or(999);
                add(code, n, &mut classes);
                if code / 100 == 5 {
                    upstream_5xx += n;
                }
                by_status.insert(code.to_string(), n);
            }
        }
        let mut proxy = ProxyErrors::default();
        let mut upstream_errors = upstream_5xx;
        for f in ProxyFailure::ALL {
            let n = self.proxy[f.index()].load(Relaxed);
            add(f.status(), n, &mut classes);
            match f.cause() {
                Cause::Client => causes.client += n,
                Cause::Proxy => causes.proxy += n,
                Cause::Upstream => {
                    causes.upstream += n;
                    upstream_errors += n;
                }
            }
            match f {
                ProxyFailure::NoEndpoint => proxy.no_endpoint = n,
                ProxyFailure::NoRevision => proxy.no_revision = n,
                ProxyFailure::Connect => proxy.connect = n,
                ProxyFailure::Timeout => proxy.timeout = n,
                ProxyFailure::Upstream => proxy.upstream = n,
                ProxyFailure::Drained => proxy.drained = n,
                ProxyFailure::BadRequestBody => proxy.bad_request_body = n,
                ProxyFailure::ClientTimeout => proxy.client_timeout = n,
            }
        }
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            buckets.push(Bucket {
                le: BUCKETS.get(i).copied(),
                count: cumulative,
            });
        }
        RevisionSnapshot {
            service: self.service.clone(),
            app: self.app.clone(),
            revision: self.hash.clone(),
            requests,
            status_classes: classes,
            by_status,
            upstream_5xx,
            proxy_errors: proxy,
            causes,
            upstream_errors,
            connect_failures: self.connect_failures.load(Relaxed),
            mirrored: Mirrored {
                answered: self.mirrored[MirrorOutcome::Answered as usize].load(Relaxed),
                failed: self.mirrored[MirrorOutcome::Failed as usize].load(Relaxed),
                dropped: self.mirrored[MirrorOutcome::Dropped as usize].load(Relaxed),
                skipped_body: self.mirrored[MirrorOutcome::SkippedBody as usize].load(Relaxed),
            },
            latency: Latency {
                sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
                count: cumulative,
                buckets,
            },
        }
    }
}

/// `GET /v1/stats`: cumulative counters since the proxy started, one entry
/// per (service, app, revision) ever configured. Difference two snapshots
/// to get a window.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// Sorted by service, app, revision.
    pub revisions: Vec<RevisionSnapshot>,
}

/// Counters of one (service, app, revision).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSnapshot {
    /// Service name.
    pub service: String,
    /// App label.
    pub app: String,
    /// Revision hash; empty for requests to a Service with no revision at all.
    pub revision: String,
    /// All requests answered, by the upstream or by the proxy.
    pub requests: u64,
    /// Requests by status class, proxy-generated answers included.
    pub status_classes: StatusClasses,
    /// Upstream responses by exact status code.
    pub by_status: BTreeMap<String, u64>,
    /// 5xx answered by the upstream itself.
    pub upstream_5xx: u64,
    /// Answers the proxy generated: why.
    pub proxy_errors: ProxyErrors,
    /// Every answer (`requests`) by who caused it.
    #[serde(default)]
    pub causes: Causes,
    /// The errors the revision is responsible for, the ones analysis counts
    /// against it: upstream 5xx, plus the proxy's 503 when it had no ready
    /// endpoint and 502/504 for connect failures (after retries), timeouts
    /// and broken upstream connections. Client- and proxy-caused answers
    /// are not in it.
    #[serde(default)]
    pub upstream_errors: u64,
    /// Failed connect attempts to the revision's endpoints, including those
    /// retried on another endpoint that then answered.
    #[serde(default)]
    pub connect_failures: u64,
    /// Mirrored copies of other requests sent to this revision; not in
    /// `requests` or any other counter.
    #[serde(default)]
    pub mirrored: Mirrored,
    /// Latency until response headers of the answers the revision caused
    /// (`causes.upstream` of them).
    pub latency: Latency,
}

/// Mirrored copies by what became of them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mirrored {
    /// The revision answered (the answer was discarded).
    pub answered: u64,
    /// No endpoint, connect failure, timeout or broken connection.
    pub failed: u64,
    /// Not sent: too many copies were in flight.
    pub dropped: u64,
    /// Not sent: the request had a body.
    pub skipped_body: u64,
}

/// Answers by who caused them.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Causes {
    /// The client's request could not be read (4xx by the proxy).
    pub client: u64,
    /// No revision at all, or an endpoint cut off after its drain grace.
    pub proxy: u64,
    /// Answered by the revision, or failed on its side (no ready endpoint,
    /// connect, timeout, broken connection).
    pub upstream: u64,
}

/// Counts by status class.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct StatusClasses {
    /// 1xx (e.g. 101 Switching Protocols).
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    /// 2xx.
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    /// 3xx.
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    /// 4xx.
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    /// 5xx, upstream and proxy-generated.
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

/// Proxy-generated answers by reason.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyErrors {
    /// 503 (cause upstream): the chosen revision had no ready endpoint.
    pub no_endpoint: u64,
    /// 503 (cause proxy): the Service has no revision at all.
    #[serde(default)]
    pub no_revision: u64,
    /// 502 (cause upstream): no endpoint accepted a connection.
    pub connect: u64,
    /// 504 (cause upstream): no response headers within the request timeout.
    pub timeout: u64,
    /// 502 (cause upstream): the upstream connection broke after the
    /// request was sent.
    pub upstream: u64,
    /// 504 (cause proxy): the endpoint left the set and its drain grace
    /// expired before it answered.
    #[serde(default)]
    pub drained: u64,
    /// 400 (cause client): the client's body could not be read (malformed
    /// chunked encoding, shorter than its length, connection lost).
    #[serde(default)]
    pub bad_request_body: u64,
    /// 408 (cause client): the request timeout passed while waiting for the
    /// client's body.
    #[serde(default)]
    pub client_timeout: u64,
}

/// A latency histogram in Prometheus' shape.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Sum of all observations in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
    /// Cumulative counts; `le: null` is +Inf.
    pub buckets: Vec<Bucket>,
}

/// One cumulative bucket.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Bucket {
    /// Upper bound in seconds; `None` (JSON null) is +Inf.
    pub le: Option<f64>,
    /// Observations `<= le`.
    pub count: u64,
}

/// Every `RevisionStats` ever created, so counters survive config swaps.
#[derive(Debug, Default)]
pub(crate) struct StatsRegistry {
    by_key: Mutex<BTreeMap<(String, String, String), Arc<RevisionStats>>>,
}

impl StatsRegistry {
    /// The counters of (service, app, hash), created on first use. Called
    /// when a config is compiled, never per request.
    pub(crate) fn get(&self, service: &str, app: &str, hash: &str) -> Arc<RevisionStats> {
        let mut map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((service.to_string(), app.to_string(), hash.to_string()))
            .or_insert_with(|| Arc::new(RevisionStats::new(service, app, hash)))
            .clone()
    }

    /// Every counter set, except the no-revision ones of Services that
    /// never had a request without a revision (they would only be noise).
    fn all(&self) -> Vec<Arc<RevisionStats>> {
        let map = self.by_key.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|s| !s.hash.is_empty() || s.proxy.iter().any(|c| c.load(Relaxed) > 0))
            .cloned()
            .collect()
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            revisions: self.all().iter().map(|s| s.snapshot()).collect(),
        }
    }
}

/// Renders the registry on every scrape.
#[derive(Debug)]
pub(crate) struct StatsCollector(pub(crate) Arc<StatsRegistry>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.all();
        {
            let mut family = encoder.encode_descriptor(
                "http_requests",
                "HTTP requests through the Serin proxy, by revision and status; source=\"proxy\" marks answers the proxy generated; cause says who caused the answer (client, proxy, upstream): only cause=\"upstream\" is the revision's doing.",
                None,
                MetricType::Counter,
            )?;
            let mut code_buf = itoa_buf();
            for s in &all {
                for (code, c) in s.upstream.iter().enumerate() {
                    let n = c.load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let code = fmt_code(&mut code_buf, code);
                    let labels = labels(s, code, "upstream", Cause::Upstream);
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
                for f in ProxyFailure::ALL {
                    let n = s.proxy[f.index()].load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let code = fmt_code(&mut code_buf, usize::from(f.status()));
                    let labels = labels(s, code, "proxy", f.cause());
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "serin_proxy_errors",
                "Answers the Serin proxy generated itself, by reason (no_endpoint, no_revision, connect, timeout, upstream, drained, bad_request_body, client_timeout) and cause (client, proxy, upstream).",
                None,
                MetricType::Counter,
            )?;
            for s in &all {
                for f in ProxyFailure::ALL {
                    let n = s.proxy[f.index()].load(Relaxed);
                    let labels = [
                        ("service", s.service.as_str()),
                        ("app", s.app.as_str()),
                        ("rollouts_pod_template_hash", s.hash.as_str()),
                        ("reason", f.reason()),
                        ("cause", f.cause().label()),
                    ];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "serin_proxy_upstream_connect_failures",
                "Failed connect attempts to a revision's endpoints, including those retried on another endpoint that then answered.",
                None,
                MetricType::Counter,
            )?;
            for s in &all {
                let labels = [
                    ("service", s.service.as_str()),
                    ("app", s.app.as_str()),
                    ("rollouts_pod_template_hash", s.hash.as_str()),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(
                        &s.connect_failures.load(Relaxed),
                        None,
                    )?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "serin_proxy_mirrored_requests",
                "Copies of requests mirrored to a revision (setMirrorRoute), by outcome (answered, failed, dropped, skipped_body); never counted in http_requests.",
                None,
                MetricType::Counter,
            )?;
            for s in &all {
                for o in MirrorOutcome::ALL {
                    let n = s.mirrored[o as usize].load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let labels = [
                        ("service", s.service.as_str()),
                        ("app", s.app.as_str()),
                        ("rollouts_pod_template_hash", s.hash.as_str()),
                        ("outcome", o.label()),
                    ];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "http_request_duration_seconds",
                "Time from request received to response headers, by revision; answers the revision caused only.",
                None,
                MetricType::Histogram,
            )?;
            for s in &all {
                let mut buckets = [(0.0, 0u64); BUCKETS.len() + 1];
                let mut count = 0;
                for (i, b) in s.buckets.iter().enumerate() {
                    let n = b.load(Relaxed);
                    count += n;
                    buckets[i] = (BUCKETS.get(i).copied().unwrap_or(f64::MAX), n);
                }
                let labels = [
                    ("service", s.service.as_str()),
                    ("app", s.app.as_str()),
                    ("rollouts_pod_template_hash", s.hash.as_str()),
                ];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(
                        s.sum_nanos.load(Relaxed) as f64 / 1e9,
                        count,
                        &buckets,
                        None,
                    )?;
            }
        }
        Ok(())
    }
}

fn itoa_buf() -> [u8; 3] {
    [b'0'; 3]
}

fn fmt_code(buf: &mut [u8; 3], code: usize) -> &str {
    let code = code.min(999);
    buf[0] = b'0' + (code / 100) as u8;
    buf[1] = b'0' + (code / 10 % 10) as u8;
    buf[2] = b'0' + (code % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}

fn labels<'a>(
    s: &'a RevisionStats,
    code: &'a str,
    source: &'a str,
    cause: Cause,
) -> [(&'a str, &'a str); 6] {
    [
        ("service", s.service.as_str()),
        ("app", s.app.as_str()),
        ("rollouts_pod_template_hash", s.hash.as_str()),
        ("status", code),
        ("source", source),
        ("cause", cause.label()),
    ]
}
