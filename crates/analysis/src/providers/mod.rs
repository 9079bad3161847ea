//! Metric providers: the I/O half. Each takes a [`ProviderSpec`] (arguments
//! already substituted) and produces an [`Outcome`]; none of them ever
//! reports success for a provider that is down, slow or returns garbage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::machine::{Outcome, ProviderSpec};

pub(crate) mod http;
pub mod job;
pub mod judge;
pub mod prometheus;
pub mod web;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One kind of metric source.
pub trait Provider: Send + Sync {
    /// Take one measurement. Timeouts are applied by [`Providers::measure`].
    fn measure<'a>(&'a self, spec: &'a ProviderSpec) -> BoxFuture<'a, Outcome>;
}

/// The providers a runner uses, one per kind.
#[derive(Clone)]
pub struct Providers {
    /// Prometheus HTTP API.
    pub prometheus: Arc<dyn Provider>,
    /// HTTP + JSONPath.
    pub web: Arc<dyn Provider>,
    /// Local command.
    pub job: Arc<dyn Provider>,
    /// Serin's proxy statistics: a slot filled by the proxy crate later.
    pub builtin: Option<Arc<dyn Provider>>,
    /// The sequential judge over Prometheus (`plugin: serin.dev/judge`);
    /// its state is per run ([`Providers::for_run`]).
    pub judge: Arc<judge::JudgeProvider>,
}

impl Default for Providers {
    fn default() -> Self {
        Self::new()
    }
}

impl Providers {
    /// The real providers (no builtin yet); `https://` trusts the system's
    /// roots.
    pub fn new() -> Self {
        Self::with_client(http::HttpClient::new())
    }

    /// The real providers, trusting the CAs in `ca` (a PEM file) for
    /// `https://` besides the system's roots (e.g. an internal Prometheus).
    pub fn with_ca(ca: &std::path::Path) -> Result<Self, serin_tls::TlsError> {
        Ok(Self::with_client(http::HttpClient::with_ca(ca)?))
    }

    fn with_client(client: http::HttpClient) -> Self {
        // prometheus and web share one client, hence one connection pool.
        Providers {
            prometheus: Arc::new(prometheus::PrometheusProvider::new(client.clone())),
            judge: Arc::new(judge::JudgeProvider::new(client.clone())),
            web: Arc::new(web::WebProvider::new(client)),
            job: Arc::new(job::JobProvider),
            builtin: None,
        }
    }

    /// These providers with no judge state: the runner takes one per run,
    /// so a judge's evidence lives as long as its run — never shared with
    /// another run of the same revisions (a retried step starts afresh).
    pub fn for_run(&self) -> Self {
        let mut p = self.clone();
        p.judge = Arc::new(self.judge.fresh());
        p
    }

    /// Measure with the provider for `spec`, bounded by its timeout; a
    /// timeout is an Error outcome.
    pub async fn measure(&self, spec: &ProviderSpec) -> Outcome {
        let provider: &Arc<dyn Provider> = match spec {
            ProviderSpec::Prometheus(_) => &self.prometheus,
            ProviderSpec::Web(_) => &self.web,
            ProviderSpec::Job(_) => &self.job,
            ProviderSpec::Judge(_) => {
                let judge: Arc<dyn Provider> = self.judge.clone();
                return bounded(spec, judge.measure(spec)).await;
            }
            ProviderSpec::Builtin(_) => match &self.builtin {
                Some(b) => b,
                None => {
                    return Outcome::Error(
                        "the builtin provider is not available in this process".into(),
                    );
                }
            },
        };
        bounded(spec, provider.measure(spec)).await
    }
}

/// `measurement`, or an Error outcome once `spec`'s timeout passes.
async fn bounded(spec: &ProviderSpec, measurement: BoxFuture<'_, Outcome>) -> Outcome {
    let timeout = spec.timeout();
    match tokio::time::timeout(timeout, measurement).await {
        Ok(o) => o,
        Err(_) => Outcome::Error(format!(
            "{} provider timed out after {:.1}s",
            spec.kind(),
            timeout.as_secs_f64()
        )),
    }
}

/// JSON for a float: numbers when finite; `"NaN"`, `"+Inf"`, `"-Inf"`
/// otherwise (JSON has no NaN; conditions turn them back into doubles).
pub(crate) fn float_json(f: f64) -> serde_json::Value {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| "NaN".into())
    }
}
