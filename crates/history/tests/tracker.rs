//! Tracker sequences: each engine/user sequence gives the records it should.

mod common;

use common::{Script, counters, secs, ten_deployments};
use serin_engine::Event;
use serin_history::{Outcome, Tracker};

#[test]
fn canary_that_completes_is_succeeded_with_its_requests() {
    let mut s = Script::new("web");
    s.updated(0, counters(0, 0), "a");
    s.healthy(1, counters(10, 0), "a");
    let started = s.updated(10, counters(100, 1), "b");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].outcome, Outcome::InProgress);
    assert_eq!(started[0].from_revision.as_deref(), Some("a"));
    s.event(20, counters(150, 1), Event::StepCompleted { step: 0 });
    let done = s.completed(70, counters(400, 4), "b");
    assert_eq!(done.len(), 1);
    let r = &done[0];
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!((r.requests, r.failed_requests), (300, 3));
    assert_eq!(r.duration_ms(), Some(secs(60)));
    assert_eq!(r.strategy, "canary");
    // Healthy again changes nothing.
    assert!(s.healthy(80, counters(500, 4), "b").is_empty());
}

#[test]
fn abort_records_reason_and_recovery_waits_for_healthy() {
    let mut s = Script::new("web");
    s.updated(0, counters(0, 0), "a");
    s.healthy(1, counters(0, 0), "a");
    s.updated(10, counters(0, 0), "b");
    let out = s.aborted(40, counters(20, 5), "analysis failed");
    assert_eq!(out[0].outcome, Outcome::Aborted);
    assert_eq!(out[0].abort_reason.as_deref(), Some("analysis failed"));
    assert_eq!(out[0].time_to_recovery_ms, None);
    // Going back to the stable revision starts no deployment.
    assert!(s.updated(100, counters(30, 5), "a").is_empty());
    let rec = s.healthy(130, counters(40, 5), "a");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].time_to_recovery_ms, Some(secs(90)));
    assert_eq!(rec[0].outcome, Outcome::Aborted);
    assert_eq!(s.records.len(), 2);
}

#[test]
fn undo_after_success_is_rolled_back_with_time_to_rollback() {
    let mut s = Script::new("web");
    s.updated(0, counters(0, 0), "a");
    s.healthy(1, counters(0, 0), "a");
    s.updated(10, counters(0, 0), "b");
    let ok = s.completed(20, counters(50, 0), "b");
    let id = ok[0].id;
    // The engine's RolloutUpdated back to the previous revision is a rollback
    // even without an explicit Undo.
    assert!(s.updated(100, counters(60, 0), "a").is_empty());
    let rb = s.completed(112, counters(70, 0), "a");
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0].id, id);
    assert_eq!(rb[0].outcome, Outcome::RolledBack);
    assert_eq!(rb[0].time_to_rollback_ms, Some(secs(12)));
    // Requests are those of the deployment, not of the rollback.
    assert_eq!(rb[0].requests, 50);
    assert_eq!(s.records.len(), 2);
}

#[test]
fn undo_during_a_canary_rolls_it_back_when_stable_is_healthy() {
    let mut s = Script::new("web");
    s.updated(0, counters(0, 0), "a");
    s.healthy(1, counters(0, 0), "a");
    s.updated(10, counters(100, 0), "b");
    assert!(s.undo(30, counters(200, 9), "a").is_empty());
    assert!(s.updated(30, counters(200, 9), "a").is_empty());
    let rb = s.healthy(33, counters(210, 10), "a");
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0].outcome, Outcome::RolledBack);
    assert_eq!(rb[0].time_to_rollback_ms, Some(secs(3)));
    assert_eq!((rb[0].requests, rb[0].failed_requests), (110, 10));
    assert_eq!(rb[0].ended_at_ms, Some(secs(33)));
}

#[test]
fn a_newer_revision_supersedes_the_one_in_progress() {
    let mut s = Script::new("web");
    s.updated(0, counters(0, 0), "a");
    s.healthy(1, counters(0, 0), "a");
    s.updated(10, counters(0, 0), "b");
    let out = s.updated(20, counters(0, 0), "c");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].outcome, Outcome::Aborted);
    assert_eq!(
        out[0].abort_reason.as_deref(),
        Some("superseded by revision c")
    );
    assert_eq!(out[1].to_revision, "c");
    assert_eq!(out[1].from_revision.as_deref(), Some("a"));
    let done = s.completed(50, counters(0, 0), "c");
    // c succeeded, and b recovered when c became stable.
    assert_eq!(done.len(), 2);
    assert_eq!(done[1].time_to_recovery_ms, Some(secs(30)));
}

#[test]
fn same_script_gives_same_records() {
    assert_eq!(ten_deployments().all(), ten_deployments().all());
}

#[test]
fn resume_continues_a_deployment_and_its_ids() {
    let mut s = Script::new("web");
    s.updated(0, counters(0, 0), "a");
    s.healthy(1, counters(0, 0), "a");
    s.updated(10, counters(100, 0), "b");
    s.event(20, counters(150, 1), Event::StepCompleted { step: 0 });
    // Restart: the proxy's counters restart from zero too.
    let mut resumed = Script::new("web");
    resumed.tracker = Tracker::resume(&s.all());
    resumed.records = s.records.clone();
    // The first observation after restart is the baseline.
    resumed.event(30, counters(5, 0), Event::StepCompleted { step: 1 });
    let done = resumed.completed(40, counters(25, 2), "b");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, 2);
    assert_eq!(done[0].outcome, Outcome::Succeeded);
    // Only requests seen after the restart are counted (20, 2 failed).
    assert_eq!((done[0].requests, done[0].failed_requests), (20, 2));
    let next = resumed.updated(50, counters(25, 2), "c");
    assert_eq!(next[0].id, 3);
    assert_eq!(next[0].from_revision.as_deref(), Some("b"));
}
