//! A scripted rollout driven through the tracker, with every returned record
//! kept by id (as the control plane upserts them into `History`).

use std::collections::BTreeMap;

use serin_engine::{Event, RevisionHash};
use serin_history::{DeploymentRecord, Input, Observation, ProxyCounters, Tracker};

pub struct Script {
    pub tracker: Tracker,
    pub records: BTreeMap<u64, DeploymentRecord>,
    pub rollout: String,
}

pub fn secs(s: u64) -> u64 {
    s * 1000
}

pub fn counters(requests: u64, failed: u64) -> ProxyCounters {
    ProxyCounters { requests, failed }
}

impl Script {
    pub fn new(rollout: &str) -> Self {
        Self {
            tracker: Tracker::new(),
            records: BTreeMap::new(),
            rollout: rollout.into(),
        }
    }

    pub fn feed(&mut self, at_s: u64, c: ProxyCounters, input: Input<'_>) -> Vec<DeploymentRecord> {
        let out = self.tracker.observe(Observation {
            at_ms: secs(at_s),
            rollout: &self.rollout,
            strategy: "canary",
            counters: c,
            input,
        });
        for r in &out {
            self.records.insert(r.id, r.clone());
        }
        out
    }

    pub fn event(&mut self, at_s: u64, c: ProxyCounters, e: Event) -> Vec<DeploymentRecord> {
        self.feed(at_s, c, Input::Event(&e))
    }

    pub fn updated(&mut self, at_s: u64, c: ProxyCounters, rev: &str) -> Vec<DeploymentRecord> {
        self.event(
            at_s,
            c,
            Event::RolloutUpdated {
                revision: RevisionHash::new(rev),
            },
        )
    }

    pub fn completed(&mut self, at_s: u64, c: ProxyCounters, rev: &str) -> Vec<DeploymentRecord> {
        self.event(
            at_s,
            c,
            Event::Completed {
                revision: RevisionHash::new(rev),
            },
        )
    }

    pub fn aborted(&mut self, at_s: u64, c: ProxyCounters, msg: &str) -> Vec<DeploymentRecord> {
        self.event(
            at_s,
            c,
            Event::Aborted {
                message: msg.into(),
            },
        )
    }

    pub fn healthy(&mut self, at_s: u64, c: ProxyCounters, rev: &str) -> Vec<DeploymentRecord> {
        self.feed(
            at_s,
            c,
            Input::Healthy {
                stable_revision: rev,
            },
        )
    }

    pub fn undo(&mut self, at_s: u64, c: ProxyCounters, rev: &str) -> Vec<DeploymentRecord> {
        self.feed(at_s, c, Input::Undo { to_revision: rev })
    }

    pub fn all(&self) -> Vec<DeploymentRecord> {
        self.records.values().cloned().collect()
    }
}

/// Ten deployments of `api` with known outcomes:
/// 8 succeeded, 1 aborted (recovered 90 s later), 1 rolled back (in 15 s);
/// requests 15 500 over the 9 that served traffic, 52 of them failed.
pub fn ten_deployments() -> Script {
    let mut s = Script::new("api");
    // d1: the first revision.
    s.updated(0, counters(0, 0), "r1");
    s.healthy(60, counters(1000, 0), "r1");
    // d2
    s.updated(100, counters(1000, 0), "r2");
    s.event(150, counters(2000, 0), Event::StepCompleted { step: 0 });
    s.completed(200, counters(3000, 0), "r2");
    // d3: aborted by analysis, 50 of 500 requests failed; back to r2 and
    // Healthy 90 s after the abort.
    s.updated(300, counters(3000, 0), "r3");
    s.event(
        320,
        counters(3400, 40),
        Event::AnalysisRunFailed {
            name: "r3-1".into(),
        },
    );
    s.aborted(330, counters(3500, 50), "analysis run r3-1 failed");
    s.updated(400, counters(3800, 50), "r2");
    s.healthy(420, counters(4000, 50), "r2");
    // d4
    s.updated(500, counters(4000, 50), "r4");
    s.completed(600, counters(6000, 50), "r4");
    // d5: succeeds with 2 failed requests, then undone to r4 in 15 s.
    s.updated(700, counters(6000, 50), "r5");
    s.completed(800, counters(8000, 52), "r5");
    s.undo(900, counters(9000, 60), "r4");
    s.updated(900, counters(9000, 60), "r4");
    s.completed(915, counters(9300, 60), "r4");
    // d6..d9: clean, 2000 requests each.
    let mut c = 10_000;
    for (i, at) in [(6, 1000), (7, 1200), (8, 1400), (9, 1600)] {
        let rev = format!("r{i}");
        s.updated(at, counters(c, 60), &rev);
        c += 2000;
        s.completed(at + 100, counters(c, 60), &rev);
    }
    // d10: served no traffic.
    s.updated(1800, counters(c, 60), "r10");
    s.completed(1900, counters(c, 60), "r10");
    s
}
