//! The seed's "Battle-Tested Metrics" table, computed from records.

use serde::{Deserialize, Serialize};

use crate::record::{DeploymentRecord, Outcome};

/// One figure and the number of deployments behind it. `value` is `None`
/// when no deployment qualifies (shown as `n/a`, never as 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Percentage (0–100) or milliseconds, see the field of [`Report`].
    pub value: Option<f64>,
    /// Deployments the figure is computed from.
    pub deployments: u64,
}

impl Figure {
    fn ratio(num: u64, den: u64, behind: u64) -> Self {
        Figure {
            value: (den > 0).then(|| num as f64 * 100.0 / den as f64),
            deployments: behind,
        }
    }

    fn mean(values: &[u64]) -> Self {
        let n = values.len() as u64;
        Figure {
            value: (n > 0).then(|| values.iter().map(|&v| v as f64).sum::<f64>() / n as f64),
            deployments: n,
        }
    }
}

/// The report over deployments started in `[since_ms, now_ms]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Window start, milliseconds since the epoch.
    pub since_ms: u64,
    /// Window end.
    pub now_ms: u64,
    /// Deployments started in the window, including those in progress.
    pub deployments: u64,
    /// Of those, still in progress (not in any figure).
    pub in_progress: u64,
    /// Succeeded / finished, percent.
    pub success_rate_pct: Figure,
    /// Mean time from a failure being acted on (abort, undo) to Healthy
    /// again, over failed deployments that recovered; milliseconds.
    pub mean_time_to_recovery_ms: Figure,
    /// Mean time from undo to the previous revision being stable, over
    /// rolled-back deployments; milliseconds.
    pub mean_rollback_time_ms: Figure,
    /// Finished deployments that served traffic with zero failed requests,
    /// percent of finished deployments that served traffic.
    pub zero_downtime_pct: Figure,
    /// Failed requests / requests during finished deployments that served
    /// traffic, percent.
    pub user_facing_errors_pct: Figure,
    /// Requests behind `user_facing_errors_pct`.
    pub requests: u64,
    /// Failed requests behind `user_facing_errors_pct`.
    pub failed_requests: u64,
}

/// Computes the report over `records` started in `[since_ms, now_ms]`.
pub fn report(records: &[DeploymentRecord], since_ms: u64, now_ms: u64) -> Report {
    let window: Vec<&DeploymentRecord> = records
        .iter()
        .filter(|r| r.started_at_ms >= since_ms && r.started_at_ms <= now_ms)
        .collect();
    let finished: Vec<&&DeploymentRecord> =
        window.iter().filter(|r| r.outcome.is_finished()).collect();
    let n_finished = finished.len() as u64;
    let succeeded = finished
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .count() as u64;
    let recoveries: Vec<u64> = finished
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Aborted | Outcome::RolledBack))
        .filter_map(|r| r.time_to_recovery_ms)
        .collect();
    let rollbacks: Vec<u64> = finished
        .iter()
        .filter(|r| r.outcome == Outcome::RolledBack)
        .filter_map(|r| r.time_to_rollback_ms)
        .collect();
    let served: Vec<&&&DeploymentRecord> = finished.iter().filter(|r| r.requests > 0).collect();
    let n_served = served.len() as u64;
    let clean = served.iter().filter(|r| r.failed_requests == 0).count() as u64;
    let requests: u64 = served.iter().map(|r| r.requests).sum();
    let failed: u64 = served.iter().map(|r| r.failed_requests).sum();
    Report {
        since_ms,
        now_ms,
        deployments: window.len() as u64,
        in_progress: window.len() as u64 - n_finished,
        success_rate_pct: Figure::ratio(succeeded, n_finished, n_finished),
        mean_time_to_recovery_ms: Figure::mean(&recoveries),
        mean_rollback_time_ms: Figure::mean(&rollbacks),
        zero_downtime_pct: Figure::ratio(clean, n_served, n_served),
        user_facing_errors_pct: Figure::ratio(failed, requests, n_served),
        requests,
        failed_requests: failed,
    }
}

fn pct(f: &Figure) -> String {
    match f.value {
        Some(v) => {
            // Enough digits to show 99.97 % and 0.01 % as the seed does.
            let s = format!("{v:.2}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s}%")
        }
        None => "n/a".into(),
    }
}

fn duration(f: &Figure) -> String {
    let Some(ms) = f.value else {
        return "n/a".into();
    };
    let s = ms / 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if s < 60.0 {
        format!("{s:.1} seconds")
    } else if s < 3600.0 {
        format!("{:.1} minutes", s / 60.0)
    } else {
        format!("{:.1} hours", s / 3600.0)
    }
}

impl Report {
    /// The table as text, like the seed's.
    pub fn to_text(&self) -> String {
        let rows = [
            (
                "Deployment Success Rate",
                pct(&self.success_rate_pct),
                &self.success_rate_pct,
            ),
            (
                "Mean Time to Recovery",
                duration(&self.mean_time_to_recovery_ms),
                &self.mean_time_to_recovery_ms,
            ),
            (
                "Zero-Downtime Deployments",
                pct(&self.zero_downtime_pct),
                &self.zero_downtime_pct,
            ),
            (
                "Rollback Time",
                duration(&self.mean_rollback_time_ms),
                &self.mean_rollback_time_ms,
            ),
            (
                "User-Facing Errors During Deploy",
                pct(&self.user_facing_errors_pct),
                &self.user_facing_errors_pct,
            ),
        ];
        let mut out = format!(
            "{:<34} | {:>14} | {:>11}\n{}-|-{}-|-{}\n",
            "Metric",
            "Value",
            "Deployments",
            "-".repeat(34),
            "-".repeat(14),
            "-".repeat(11)
        );
        for (name, value, fig) in rows {
            out.push_str(&format!(
                "{name:<34} | {value:>14} | {:>11}\n",
                fig.deployments
            ));
        }
        out.push_str(&format!(
            "\n{} deployments ({} in progress); {} requests, {} failed during deploys.\n",
            self.deployments, self.in_progress, self.requests, self.failed_requests
        ));
        out
    }
}

/// A `--since` window (`30d`, `12h`, `90m`, `45s`, `2w`) could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid --since {0:?}: expected a number and a unit (s, m, h, d, w), e.g. 30d")]
pub struct SinceError(pub String);

/// Parses a `--since` window into milliseconds (`serin report --since 30d`).
pub fn parse_since(s: &str) -> Result<u64, SinceError> {
    let err = || SinceError(s.to_string());
    let s_trim = s.trim();
    let split = s_trim.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (num, unit) = s_trim.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let unit_ms: u64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => return Err(err()),
    };
    n.checked_mul(unit_ms).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_windows() {
        assert_eq!(parse_since("30d"), Ok(30 * 86_400_000));
        assert_eq!(parse_since("90m"), Ok(90 * 60_000));
        assert_eq!(parse_since("2w"), Ok(2 * 604_800_000));
        for bad in ["", "d", "30", "30y", "-1d", "99999999999999999999d"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
