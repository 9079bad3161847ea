//! Report figures against a scripted sequence with known outcomes, and
//! history surviving a reopen.

mod common;

use common::{secs, ten_deployments};
use serin_history::{History, Outcome, ProxyCounters, report};

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn ten_deployments_give_the_expected_figures() {
    let s = ten_deployments();
    let records = s.all();
    assert_eq!(records.len(), 10);
    let count = |o| records.iter().filter(|r| r.outcome == o).count();
    assert_eq!(count(Outcome::Succeeded), 8);
    assert_eq!(count(Outcome::Aborted), 1);
    assert_eq!(count(Outcome::RolledBack), 1);

    let r = report(&records, 0, secs(2000));
    assert_eq!((r.deployments, r.in_progress), (10, 0));
    assert!(
        close(r.success_rate_pct.value, 80.0),
        "{:?}",
        r.success_rate_pct
    );
    assert_eq!(r.success_rate_pct.deployments, 10);
    // Recovery: 90 s after the abort, 15 s for the rollback.
    assert!(close(r.mean_time_to_recovery_ms.value, 52_500.0));
    assert_eq!(r.mean_time_to_recovery_ms.deployments, 2);
    assert!(close(r.mean_rollback_time_ms.value, 15_000.0));
    assert_eq!(r.mean_rollback_time_ms.deployments, 1);
    // 9 deployments served traffic; 7 of them without a failed request.
    assert!(close(r.zero_downtime_pct.value, 700.0 / 9.0));
    assert_eq!(r.zero_downtime_pct.deployments, 9);
    assert_eq!((r.requests, r.failed_requests), (15_500, 52));
    assert!(close(r.user_facing_errors_pct.value, 5200.0 / 15_500.0));
    assert_eq!(r.user_facing_errors_pct.deployments, 9);

    let text = r.to_text();
    assert!(text.contains("Deployment Success Rate"), "{text}");
    assert!(text.contains("80%"), "{text}");
    assert!(text.contains("52.5 seconds"), "{text}");
    assert!(text.contains("15.0 seconds"), "{text}");
    assert!(text.contains("77.78%"), "{text}");
    assert!(text.contains("0.34%"), "{text}");

    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["success_rate_pct"]["deployments"], 10);
    assert_eq!(json["mean_rollback_time_ms"]["value"], 15_000.0);
}

#[test]
fn since_limits_the_window_and_empty_figures_are_not_zero() {
    let records = ten_deployments().all();
    let r = report(&records, secs(1000), secs(2000));
    assert_eq!(r.deployments, 5);
    assert!(close(r.success_rate_pct.value, 100.0));
    assert_eq!(r.mean_time_to_recovery_ms.value, None);
    assert_eq!(r.mean_time_to_recovery_ms.deployments, 0);
    assert!(r.to_text().contains("n/a"));
    let empty = report(&[], 0, secs(1));
    assert_eq!(empty.success_rate_pct.value, None);
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("serin-history-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.redb")
}

#[test]
fn history_survives_reopen_and_gives_the_same_report() {
    let path = temp_path("reopen");
    let records = ten_deployments().all();
    {
        let h = History::open(&path).unwrap();
        for r in &records {
            h.put(r).unwrap();
        }
    }
    let h = History::open(&path).unwrap();
    let back = h.list(0).unwrap();
    assert_eq!(back, records);
    assert_eq!(
        report(&back, 0, secs(2000)),
        report(&records, 0, secs(2000))
    );
    // list(since) filters by start time.
    assert_eq!(h.list(secs(1000)).unwrap().len(), 5);
}

#[test]
fn start_and_finish_commit_before_returning() {
    let path = temp_path("start-finish");
    let id = {
        let h = History::open(&path).unwrap();
        let a = h
            .start("api", "blueGreen", Some("r1"), "r2", 1_000)
            .unwrap();
        let b = h
            .start("api", "blueGreen", Some("r2"), "r3", 2_000)
            .unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        h.finish(
            a.id,
            Outcome::Aborted,
            5_000,
            Some("pre-promotion analysis failed"),
            ProxyCounters {
                requests: 10,
                failed: 3,
            },
        )
        .unwrap();
        b.id
    };
    let h = History::open(&path).unwrap();
    let a = h.get(1).unwrap().unwrap();
    assert_eq!(a.outcome, Outcome::Aborted);
    assert_eq!(
        a.abort_reason.as_deref(),
        Some("pre-promotion analysis failed")
    );
    assert_eq!((a.requests, a.failed_requests), (10, 3));
    assert_eq!(h.get(id).unwrap().unwrap().outcome, Outcome::InProgress);
    // Ids continue after a reopen; unknown ids are an error, not a panic.
    assert_eq!(h.start("api", "canary", None, "r4", 3_000).unwrap().id, 3);
    assert!(
        h.finish(99, Outcome::Succeeded, 1, None, ProxyCounters::default())
            .is_err()
    );
}
