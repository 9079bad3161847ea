//! Web provider: an HTTP request whose JSON response is narrowed by `jsonPath`.

use serde_json_path::JsonPath;

use super::http::{HttpClient, snippet};
use super::{BoxFuture, Provider};
use crate::machine::{Outcome, ProviderSpec};

/// Calls an HTTP endpoint.
pub struct WebProvider {
    client: HttpClient,
}

impl WebProvider {
    pub(crate) fn new(client: HttpClient) -> Self {
        WebProvider { client }
    }
}

/// Parse Argo's `jsonPath` (`{$.data.ok}`; braces optional).
pub fn parse_json_path(p: &str) -> Result<JsonPath, String> {
    let t = p.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t)
        .trim();
    JsonPath::parse(t).map_err(|e| format!("jsonPath {p:?}: {e}"))
}

impl Provider for WebProvider {
    fn measure<'a>(&'a self, spec: &'a ProviderSpec) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let ProviderSpec::Web(w) = spec else {
                return Outcome::Error("web provider given another provider's spec".into());
            };
            let method = w.method.clone().unwrap_or_else(|| "GET".into());
            let mut headers: Vec<(String, String)> = w
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            let body = match (&w.body, &w.json_body) {
                (Some(b), _) => Some(b.clone()),
                (None, Some(j)) => {
                    if !headers
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    {
                        headers.push(("Content-Type".into(), "application/json".into()));
                    }
                    Some(j.to_string())
                }
                (None, None) => None,
            };
            let resp = match self.client.request(&method, &w.url, &headers, body).await {
                Ok(r) => r,
                Err(e) => return Outcome::Error(e),
            };
            if !(200..300).contains(&resp.status) {
                return Outcome::Error(format!(
                    "{} returned HTTP {}: {}",
                    w.url,
                    resp.status,
                    snippet(&resp.body, 200)
                ));
            }
            let json: serde_json::Value = match serde_json::from_slice(&resp.body) {
                Ok(j) => j,
                Err(e) => {
                    return Outcome::Error(format!(
                        "{} did not return JSON ({e}): {}",
                        w.url,
                        snippet(&resp.body, 200)
                    ));
                }
            };
            let Some(path) = &w.json_path else {
                return Outcome::Value(json);
            };
            let path = match parse_json_path(path) {
                Ok(p) => p,
                Err(e) => return Outcome::Error(e),
            };
            let found: Vec<serde_json::Value> =
                path.query(&json).all().into_iter().cloned().collect();
            match found.len() {
                0 => Outcome::Error(format!(
                    "jsonPath matched nothing in {}",
                    snippet(&resp.body, 200)
                )),
                1 => Outcome::Value(found.into_iter().next().unwrap_or_default()),
                _ => Outcome::Value(serde_json::Value::Array(found)),
            }
        })
    }
}
