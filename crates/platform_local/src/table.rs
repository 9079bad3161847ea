//! `kubectl get pods`-style rendering of observed state.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::RevisionState;

/// kubectl's AGE: `45s`, `3m12s`, `5h3m`, `4d2h`, `12d`.
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    match s {
        0..120 => format!("{s}s"),
        120..600 => format!("{m}m{}s", s % 60),
        600..10_800 => format!("{m}m"),
        10_800..28_800 => format!("{h}h{}m", m % 60),
        28_800..172_800 => format!("{h}h"),
        172_800..691_200 => format!("{days}d{}h", h % 24),
        _ => format!("{days}d"),
    }
}

/// One line per pod: NAME, REVISION, READY, STATUS, RESTARTS, AGE, ADDRESS.
pub fn pods_table(revisions: &[RevisionState], now: SystemTime) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "REVISION".into(),
        "READY".into(),
        "STATUS".into(),
        "RESTARTS".into(),
        "AGE".into(),
        "ADDRESS".into(),
    ]];
    for rev in revisions {
        for p in &rev.pods {
            rows.push([
                p.name.clone(),
                rev.hash.clone(),
                format!("{}/{}", p.ready_containers, p.containers),
                p.status.clone(),
                p.restarts.to_string(),
                format_age(now.duration_since(p.started_at).unwrap_or_default()),
                p.addr.to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}   ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PodState;

    #[test]
    fn ages_like_kubectl() {
        let cases = [
            (5, "5s"),
            (130, "2m10s"),
            (900, "15m"),
            (11_000, "3h3m"),
            (90_000, "25h"),
            (200_000, "2d7h"),
            (900_000, "10d"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_age(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn renders_rows() {
        let now = SystemTime::now();
        let pod = PodState {
            name: "web-abc-xyz12".into(),
            addr: "127.0.0.1:4000".parse().expect("addr"),
            ready: true,
            available: true,
            terminating: false,
            terminating_since: None,
            status: "Running".into(),
            restarts: 2,
            last_reason: None,
            last_message: None,
            started_at: now - Duration::from_secs(65),
            pids: vec![1],
            ready_containers: 1,
            containers: 1,
            replaces: None,
        };
        let rev = RevisionState {
            hash: "abc".into(),
            desired: 1,
            pods: vec![pod],
        };
        let t = pods_table(&[rev], now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("NAME"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "web-abc-xyz12",
                "abc",
                "1/1",
                "Running",
                "2",
                "65s",
                "127.0.0.1:4000"
            ]
        );
    }
}
