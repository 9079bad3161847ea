//! `serin demo` end to end: real processes, real HTTP, the real binary.

use std::process::Command;

#[test]
fn serin_demo_deploys_three_times_without_failures_and_aborts_the_bad_canary() {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["demo", "--concurrency", "2"])
        .output()
        .expect("runs serin demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "serin demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let row = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no row {prefix:?} in\n{stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    for prefix in ["rolling update", "blue-green switch", "canary blue"] {
        let cols = row(prefix);
        let n = cols.len();
        // ... requests failed duration - outcome
        let (requests, failed) = (&cols[n - 5], &cols[n - 4]);
        assert!(
            requests.parse::<u64>().unwrap() > 0,
            "{prefix}: no traffic\n{stdout}"
        );
        assert_eq!(failed, "0", "{prefix}: failed requests\n{stdout}");
        assert_eq!(cols[n - 1], "Healthy", "{prefix}\n{stdout}");
    }
    let bad = stdout
        .lines()
        .find(|l| l.starts_with("canary yellow → bad-red"))
        .expect("bad canary row");
    assert!(bad.contains("Degraded (RolloutAborted"), "{bad}");
    // Nothing left running.
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let leftover = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| {
            l.contains("demo-app --demo-version") && l.contains(env!("CARGO_BIN_EXE_serin"))
        })
        .count();
    assert_eq!(leftover, 0, "demo replicas left running");
}
