//! `serin demo` end to end: real processes, real HTTP, the real binary.

use std::process::Command;

#[test]
fn serin_demo_deploys_three_times_without_failures_and_analysis_aborts_the_bad_canary() {
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
        // … requests failed duration - - outcome
        let (requests, failed) = (&cols[n - 6], &cols[n - 5]);
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
    // Nobody aborts it by hand: the builtin error-rate analysis does.
    assert!(
        bad.contains("Degraded (RolloutAborted: analysis run"),
        "{bad}"
    );
    // Nothing left running: no demo-app process whose working directory is
    // under a demo folder (other tests run their own replicas meanwhile).
    let leftover: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains("demo-app") && cwd.to_string_lossy().contains("serin-demo-"))
                .then_some(cmd)
        })
        .collect();
    assert!(
        leftover.is_empty(),
        "demo replicas left running: {leftover:?}"
    );
}
