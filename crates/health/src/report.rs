//! The JSON documents the probes return.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Value of the `status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Liveness: the process is running and answering.
    Ok,
    /// Readiness: every required dependency is healthy; send traffic.
    Ready,
    /// Readiness: warming up, shutting down or a required dependency is down.
    NotReady,
}

/// Probe body. The first five fields carry exactly the JSON names of the seed's
/// Go `HealthStatus` (`status`, `timestamp`, `version`, `dependencies`,
/// `uptime`); the rest are additions that the seed lacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// `ok` (liveness), `ready` or `not_ready` (readiness).
    pub status: Status,
    /// When the document was produced, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The service's version string.
    pub version: String,
    /// Readiness only: dependency name → healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<BTreeMap<String, bool>>,
    /// Time since the checker was built, formatted like Go's `Duration.String()`
    /// (e.g. `1h2m3.5s`) as the seed does.
    pub uptime: String,
    /// Same as `uptime`, in seconds, for machines.
    pub uptime_seconds: f64,
    /// Readiness only: per-dependency detail (latency, error, cache state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<BTreeMap<String, DependencyReport>>,
    /// Readiness only: `true` when an optional dependency is failing while
    /// readiness still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
    /// Readiness only: why the service is not ready (absent when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Result of one dependency check as reported by readiness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencyReport {
    /// Whether the dependency answered correctly within its timeout.
    pub healthy: bool,
    /// Required dependencies fail readiness; optional ones only degrade it.
    pub required: bool,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// The failure, when unhealthy.
    pub error: Option<String>,
    /// `true` when this result was reused (from the cache, or from a run
    /// another probe had in flight) rather than run for this request.
    pub cached: bool,
    /// Age of the result in milliseconds when the response was built.
    pub age_ms: f64,
}

/// RFC 3339 timestamp with millisecond precision, in UTC.
pub(crate) fn timestamp(now: SystemTime) -> String {
    serin_clock::format_rfc3339_millis(serin_clock::unix_ms(now))
}

pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Formats a duration the way Go's `time.Duration.String()` does (`1h2m3.5s`,
/// `250ms`, `0s`): the seed's `uptime` field uses that format, and clients
/// written against the seed may parse it. No crate formats Go durations, so it
/// lives here.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", fraction(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", fraction(ns, 1_000_000, 6));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&fraction(
        u128::from(s) * 1_000_000_000 + u128::from(d.subsec_nanos()),
        1_000_000_000,
        9,
    ));
    out.push('s');
    out
}

/// `value / unit` with up to `digits` fractional digits, trailing zeros trimmed.
fn fraction(value: u128, unit: u128, digits: usize) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let frac = format!("{rest:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_matches_go_formatting() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(61_500), "1m1.5s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::new(5, 1), "5.000000001s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn timestamp_is_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
    }
}
