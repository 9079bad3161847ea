//! The configuration the control plane pushes (`PUT /v1/config`) and its
//! validation. Field names are camelCase on the wire.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// The whole data-plane configuration: every Service the proxy serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// One listener per Service.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// How long in-flight requests to an endpoint that left the set (or on a
    /// listener that was removed, or at shutdown) may take before they are
    /// cut off. Default 30 000 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_grace_ms: Option<u64>,
    /// How long a client may take to send a request head, counted from the
    /// end of the previous response (so it also closes a kept-alive
    /// connection left idle that long). Default 30 000 ms, as hyper's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_header_timeout_ms: Option<u64>,
}

/// One Service: a listener and how its requests are split over revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Service name; the metrics label `service`. Unique in a config.
    pub name: String,
    /// Application name; the metrics label `app`.
    pub app: String,
    /// Where to listen, e.g. `127.0.0.1:18080`; port 0 picks a free port,
    /// reported back by `GET /v1/config` and kept across later configs that
    /// still say port 0 for this Service.
    pub listen: SocketAddr,
    /// Ready endpoints of each revision this Service selects.
    #[serde(default)]
    pub revisions: Vec<RevisionEndpoints>,
    /// Traffic split in percent; empty spreads requests over every endpoint
    /// of every revision (round robin, so in proportion to replicas).
    #[serde(default)]
    pub weights: Vec<WeightedRevision>,
    /// Checked first, in order; the first route whose matches all hold wins.
    #[serde(default)]
    pub header_routes: Vec<HeaderRoute>,
    /// Copies of matching requests to a revision whose answers are
    /// discarded (Argo's `setMirrorRoute`). Only requests without a body
    /// are copied; copies never count as requests of any revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirror_routes: Vec<MirrorRoute>,
    /// Time allowed until the upstream's response headers (default 30 000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Protocol spoken to the endpoints: `http1` (default) or `http2` (h2c,
    /// prior knowledge). Clients may use either protocol regardless.
    #[serde(default, skip_serializing_if = "UpstreamProtocol::is_default")]
    pub upstream_protocol: UpstreamProtocol,
}

/// Protocol the proxy speaks to a Service's endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive (pooled connections).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c), multiplexed.
    Http2,
}

impl UpstreamProtocol {
    fn is_default(&self) -> bool {
        *self == Self::Http1
    }
}

/// The ready endpoints of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionEndpoints {
    /// Revision (pod template) hash; the label `rollouts_pod_template_hash`.
    pub hash: String,
    /// Ready endpoints; may be empty (requests routed here then get a 503).
    #[serde(default)]
    pub endpoints: Vec<SocketAddr>,
}

/// A revision's share of traffic in percent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedRevision {
    /// Revision hash; must be one of the Service's `revisions`.
    pub hash: String,
    /// Percent; the weights of a Service sum to 100.
    pub weight: u32,
}

/// Requests whose headers all match go to revision `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoute {
    /// All must match (AND); at least one.
    pub matches: Vec<HeaderMatch>,
    /// Revision hash; must be one of the Service's `revisions`.
    pub hash: String,
}

/// A share of the requests that match any of `matches` is copied to
/// revision `hash`; the copy's answer is discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorRoute {
    /// Any one must hold (OR); at least one. An empty match holds for every request.
    pub matches: Vec<MirrorMatch>,
    /// Percent of matching requests copied, 1..=100 (spread evenly: 50
    /// copies every second matching request).
    pub percentage: u32,
    /// Revision hash; must be one of the Service's `revisions`.
    pub hash: String,
}

/// One mirror condition: everything set must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorMatch {
    /// The request method (`exact` compares case-sensitively, as HTTP does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ValueMatch>,
    /// The request path, without the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<ValueMatch>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A value condition; exactly one of `exact`, `prefix`, `regex` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueMatch {
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole value matches this regular expression (anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// One header condition; exactly one of `exact`, `prefix`, `regex` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole value matches this regular expression (Rust `regex` syntax,
    /// anchored at both ends like Istio's RE2 matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

fn err(field: String, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        message: message.into(),
    }
}

impl ProxyConfig {
    /// Parse a config from JSON; errors name the JSON path when serde knows it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: ProxyConfig = serde_json::from_slice(bytes)
            .map_err(|e| err(String::new(), format!("invalid config JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Check everything that can be checked without binding sockets: unique
    /// names and listen addresses, known revision hashes, weights summing to
    /// 100, well-formed header matches (regexes compile).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.drain_grace_ms == Some(0) {
            return Err(err("drainGraceMs".into(), "must be at least 1 ms"));
        }
        if self.client_header_timeout_ms == Some(0) {
            return Err(err("clientHeaderTimeoutMs".into(), "must be at least 1 ms"));
        }
        let mut names = HashSet::new();
        let mut listens = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            if s.name.is_empty() {
                return Err(err(format!("{at}.name"), "must not be empty"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    format!("{at}.name"),
                    format!("duplicate service name {:?}", s.name),
                ));
            }
            if s.listen.port() != 0 && !listens.insert(s.listen) {
                return Err(err(
                    format!("{at}.listen"),
                    format!("{} is already used by another service", s.listen),
                ));
            }
            if s.request_timeout_ms == Some(0) {
                return Err(err(
                    format!("{at}.requestTimeoutMs"),
                    "must be at least 1 ms",
                ));
            }
            s.validate_routing(&at)?;
        }
        Ok(())
    }
}

impl ServiceConfig {
    fn validate_routing(&self, at: &str) -> Result<(), ConfigError> {
        let mut hashes = HashSet::new();
        for (j, r) in self.revisions.iter().enumerate() {
            if r.hash.is_empty() {
                return Err(err(
                    format!("{at}.revisions[{j}].hash"),
                    "must not be empty",
                ));
            }
            if !hashes.insert(r.hash.as_str()) {
                return Err(err(
                    format!("{at}.revisions[{j}].hash"),
                    format!("duplicate revision {:?}", r.hash),
                ));
            }
        }
        let known = |h: &str| hashes.contains(h);
        let mut sum: u64 = 0;
        let mut weighted = HashSet::new();
        for (j, w) in self.weights.iter().enumerate() {
            if !known(&w.hash) {
                return Err(err(
                    format!("{at}.weights[{j}].hash"),
                    format!("unknown revision {:?} (not in revisions)", w.hash),
                ));
            }
            if !weighted.insert(w.hash.as_str()) {
                return Err(err(
                    format!("{at}.weights[{j}].hash"),
                    format!("revision {:?} weighted twice", w.hash),
                ));
            }
            sum += u64::from(w.weight);
        }
        if !self.weights.is_empty() && sum != 100 {
            return Err(err(
                format!("{at}.weights"),
                format!("weights sum to {sum}, must sum to 100"),
            ));
        }
        for (j, route) in self.header_routes.iter().enumerate() {
            let rat = format!("{at}.headerRoutes[{j}]");
            if !known(&route.hash) {
                return Err(err(
                    format!("{rat}.hash"),
                    format!("unknown revision {:?} (not in revisions)", route.hash),
                ));
            }
            if route.matches.is_empty() {
                return Err(err(format!("{rat}.matches"), "needs at least one match"));
            }
            for (k, m) in route.matches.iter().enumerate() {
                m.compile(&format!("{rat}.matches[{k}]"))?;
            }
        }
        for (j, route) in self.mirror_routes.iter().enumerate() {
            route.compile(&format!("{at}.mirrorRoutes[{j}]"), &known)?;
        }
        Ok(())
    }
}

impl MirrorRoute {
    /// Checks the route and compiles its matchers; `known` says whether a
    /// revision hash is one of the Service's.
    pub(crate) fn compile(
        &self,
        at: &str,
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<CompiledMirrorMatch>, ConfigError> {
        if !known(&self.hash) {
            return Err(err(
                format!("{at}.hash"),
                format!("unknown revision {:?} (not in revisions)", self.hash),
            ));
        }
        if !(1..=100).contains(&self.percentage) {
            return Err(err(format!("{at}.percentage"), "must be 1..=100"));
        }
        if self.matches.is_empty() {
            return Err(err(format!("{at}.matches"), "needs at least one match"));
        }
        self.matches
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let mat = format!("{at}.matches[{k}]");
                Ok(CompiledMirrorMatch {
                    method: m
                        .method
                        .as_ref()
                        .map(|v| v.compile(&format!("{mat}.method")))
                        .transpose()?,
                    path: m
                        .path
                        .as_ref()
                        .map(|v| v.compile(&format!("{mat}.path")))
                        .transpose()?,
                    headers: m
                        .headers
                        .iter()
                        .enumerate()
                        .map(|(h, hm)| hm.compile(&format!("{mat}.headers[{h}]")))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }
}

/// A mirror condition ready for the hot path.
#[derive(Debug)]
pub(crate) struct CompiledMirrorMatch {
    method: Option<MatchKind>,
    path: Option<MatchKind>,
    headers: Vec<CompiledMatch>,
}

impl CompiledMirrorMatch {
    pub(crate) fn matches(&self, method: &http::Method, path: &str, h: &http::HeaderMap) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m.matches(method.as_str().as_bytes()))
            && self
                .path
                .as_ref()
                .is_none_or(|m| m.matches(path.as_bytes()))
            && self.headers.iter().all(|m| m.matches(h))
    }
}

impl ValueMatch {
    fn compile(&self, at: &str) -> Result<MatchKind, ConfigError> {
        match (&self.exact, &self.prefix, &self.regex) {
            (Some(e), None, None) => Ok(MatchKind::Exact(e.as_bytes().to_vec())),
            (None, Some(p), None) => Ok(MatchKind::Prefix(p.as_bytes().to_vec())),
            (None, None, Some(r)) => regex::bytes::Regex::new(&format!("^(?:{r})$"))
                .map(MatchKind::Regex)
                .map_err(|e| err(format!("{at}.regex"), format!("invalid regex: {e}"))),
            _ => Err(err(
                at.to_string(),
                "set exactly one of exact, prefix, regex",
            )),
        }
    }
}

/// A header condition ready for the hot path.
#[derive(Debug)]
pub(crate) struct CompiledMatch {
    pub(crate) name: http::HeaderName,
    pub(crate) kind: MatchKind,
}

#[derive(Debug)]
pub(crate) enum MatchKind {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    Regex(regex::bytes::Regex),
}

impl MatchKind {
    fn matches(&self, v: &[u8]) -> bool {
        match self {
            MatchKind::Exact(e) => v == e.as_slice(),
            MatchKind::Prefix(p) => v.starts_with(p),
            MatchKind::Regex(r) => r.is_match(v),
        }
    }
}

impl CompiledMatch {
    pub(crate) fn matches(&self, headers: &http::HeaderMap) -> bool {
        // Any value of a repeated header may match (like Istio).
        headers
            .get_all(&self.name)
            .iter()
            .any(|v| self.kind.matches(v.as_bytes()))
    }
}

impl HeaderMatch {
    pub(crate) fn compile(&self, at: &str) -> Result<CompiledMatch, ConfigError> {
        let name = http::HeaderName::from_bytes(self.name.as_bytes()).map_err(|_| {
            err(
                format!("{at}.name"),
                format!("{:?} is not a valid header name", self.name),
            )
        })?;
        let kind = match (&self.exact, &self.prefix, &self.regex) {
            (Some(e), None, None) => MatchKind::Exact(e.as_bytes().to_vec()),
            (None, Some(p), None) => MatchKind::Prefix(p.as_bytes().to_vec()),
            (None, None, Some(r)) => {
                let re = regex::bytes::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| err(format!("{at}.regex"), format!("invalid regex: {e}")))?;
                MatchKind::Regex(re)
            }
            _ => {
                return Err(err(
                    at.to_string(),
                    "set exactly one of exact, prefix, regex",
                ));
            }
        };
        Ok(CompiledMatch { name, kind })
    }
}
