//! Prometheus HTTP API provider: `/api/v1/query` (or `/api/v1/query_range`).
//!
//! `result` is a list of doubles for a vector (one per series, in the order
//! Prometheus returns them), a double for a scalar, and a list of lists of
//! doubles for a matrix — as Argo's provider does.

use serde::Deserialize;
use serin_spec::PrometheusMetric;

use super::http::{HttpClient, encode, snippet};
use super::{BoxFuture, Provider, float_json};
use crate::machine::{Outcome, ProviderSpec};

/// Queries a Prometheus server.
pub struct PrometheusProvider {
    client: HttpClient,
}

impl PrometheusProvider {
    pub(crate) fn new(client: HttpClient) -> Self {
        PrometheusProvider { client }
    }
}

impl Provider for PrometheusProvider {
    fn measure<'a>(&'a self, spec: &'a ProviderSpec) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let ProviderSpec::Prometheus(p) = spec else {
                return Outcome::Error("prometheus provider given another provider's spec".into());
            };
            match self.query(p).await {
                Ok(v) => Outcome::Value(v),
                Err(e) => Outcome::Error(e),
            }
        })
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

impl PrometheusProvider {
    async fn query(&self, p: &PrometheusMetric) -> Result<serde_json::Value, String> {
        let address = p.address.as_deref().unwrap_or("").trim_end_matches('/');
        let url = match &p.range_query {
            None => format!("{address}/api/v1/query?query={}", encode(&p.query)),
            Some(r) => {
                let now = serin_clock::now_ms() as f64 / 1000.0;
                let start = time_expr(r.start.as_deref().unwrap_or("now() - 5m"), now)?;
                let end = time_expr(r.end.as_deref().unwrap_or("now()"), now)?;
                let step = r.step.as_deref().unwrap_or("1m");
                format!(
                    "{address}/api/v1/query_range?query={}&start={start}&end={end}&step={}",
                    encode(&p.query),
                    encode(step)
                )
            }
        };
        let headers: Vec<(String, String)> = p
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        let resp = self.client.request("GET", &url, &headers, None).await?;
        let parsed: ApiResponse = serde_json::from_slice(&resp.body).map_err(|e| {
            format!(
                "prometheus returned HTTP {} with a body that is not its API JSON ({e}): {}",
                resp.status,
                snippet(&resp.body, 200)
            )
        })?;
        if parsed.status != "success" {
            return Err(format!(
                "prometheus query failed (HTTP {}): {}: {}",
                resp.status,
                parsed.error_type.unwrap_or_default(),
                parsed.error.unwrap_or_default()
            ));
        }
        let data = parsed.data.ok_or("prometheus response has no data")?;
        parse_result(&data.result_type, &data.result)
    }
}

fn sample_value(pair: &serde_json::Value) -> Result<f64, String> {
    let s = pair
        .get(1)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("malformed sample {pair}"))?;
    parse_float(s)
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("sample value {s:?}: {e}")),
    }
}

/// Turn the API's `data.result` into Serin's `result` value.
pub fn parse_result(
    result_type: &str,
    result: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    match result_type {
        "vector" => {
            let series = result.as_array().ok_or("vector result is not a list")?;
            let vals = series
                .iter()
                .map(|s| {
                    sample_value(s.get("value").unwrap_or(&serde_json::Value::Null)).map(float_json)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(serde_json::Value::Array(vals))
        }
        "scalar" => Ok(float_json(sample_value(result)?)),
        "matrix" => {
            let series = result.as_array().ok_or("matrix result is not a list")?;
            let vals = series
                .iter()
                .map(|s| {
                    s.get("values")
                        .and_then(|v| v.as_array())
                        .ok_or_else(|| "matrix series without values".to_string())?
                        .iter()
                        .map(|p| sample_value(p).map(float_json))
                        .collect::<Result<Vec<_>, _>>()
                        .map(serde_json::Value::Array)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(serde_json::Value::Array(vals))
        }
        "string" => Ok(result.get(1).cloned().unwrap_or(serde_json::Value::Null)),
        other => Err(format!("unknown prometheus resultType {other:?}")),
    }
}

/// Range bounds: `now()`, `now() - 5m`, `now() + 1h`, or a literal
/// (unix seconds / RFC 3339), passed through.
fn time_expr(e: &str, now: f64) -> Result<String, String> {
    let t = e.trim();
    let Some(rest) = t.strip_prefix("now()") else {
        return Ok(encode(t));
    };
    let rest = rest.trim();
    if rest.is_empty() {
        return Ok(format!("{now:.3}"));
    }
    let (sign, dur) = if let Some(d) = rest.strip_prefix('-') {
        (-1.0, d.trim())
    } else if let Some(d) = rest.strip_prefix('+') {
        (1.0, d.trim())
    } else {
        return Err(format!(
            "rangeQuery time {e:?}: expected now(), now() - DURATION or now() + DURATION"
        ));
    };
    let d = serin_spec::parse_go_duration(dur)
        .map_err(|err| format!("rangeQuery time {e:?}: {err}"))?;
    Ok(format!("{:.3}", now + sign * d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_vector_scalar_matrix() {
        let v =
            json!([{"metric": {}, "value": [1.0, "0.97"]}, {"metric": {}, "value": [1.0, "NaN"]}]);
        assert_eq!(parse_result("vector", &v), Ok(json!([0.97, "NaN"])));
        assert_eq!(parse_result("vector", &json!([])), Ok(json!([])));
        assert_eq!(parse_result("scalar", &json!([1.0, "2.5"])), Ok(json!(2.5)));
        let m = json!([{"metric": {}, "values": [[1.0, "1"], [2.0, "+Inf"]]}]);
        assert_eq!(parse_result("matrix", &m), Ok(json!([[1.0, "+Inf"]])));
        assert!(parse_result("vector", &json!([{"value": [1.0, "abc"]}])).is_err());
        assert!(parse_result("bogus", &json!([])).is_err());
    }

    #[test]
    fn range_bounds() {
        assert_eq!(time_expr("now()", 100.0), Ok("100.000".into()));
        assert_eq!(time_expr("now() - 1m", 100.0), Ok("40.000".into()));
        assert!(time_expr("now() * 2", 100.0).is_err());
    }
}
