//! `serin chaos` end to end: every fault of the catalogue runs as a canary
//! of a good version under constant load through the real proxy, with real
//! replicas as child processes, and must be aborted by the analysis; the
//! good-vs-good (A/A) canaries that run beside them must be promoted.

mod support;

use std::process::Command;

use serde_json::Value;

/// Requests per second on each canary's listener: modest, because the
/// whole catalogue runs at once in a debug build beside the rest of the suite.
const RATE: u32 = 40;

#[test]
fn every_fault_is_aborted_and_no_good_canary_is() {
    let out = Command::new(support::SERIN)
        .args([
            "chaos",
            "--aa",
            "2",
            "--rate",
            &RATE.to_string(),
            "--first-pause",
            "20s",
            "--second-pause",
            "5s",
            "-o",
            "json",
        ])
        .output()
        .expect("runs serin chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let rows = doc["rows"].as_array().expect("rows");
    let show = serde_json::to_string_pretty(rows).unwrap_or_default();

    let catalogue = [
        "crash-loop",
        "errors-10pct",
        "errors-2pct",
        "latency-400ms",
        "latency-p50-50ms",
        "memory-oom",
        "readiness-flap",
        "slow-start",
        "partial-path",
    ];
    for fault in catalogue {
        let r = rows
            .iter()
            .find(|r| r["fault"] == fault)
            .unwrap_or_else(|| panic!("no row for {fault}\n{show}"));
        assert_eq!(r["outcome"], "aborted", "{fault} not caught\n{show}");
        // Nobody aborted it by hand: a metric of the analysis failed (or,
        // for a canary that never became available, the progress deadline).
        let failed = r["failed_metrics"].as_array().expect("failed_metrics");
        let message = r["message"].as_str().unwrap_or_default();
        assert!(
            !failed.is_empty() || message.contains("progress deadline"),
            "{fault}: aborted without a failed metric: {message}\n{show}"
        );
        // The bad revision really served traffic through the proxy, and a
        // client saw the fault before the abort.
        assert!(
            r["canary_requests"].as_u64().unwrap_or(0) > 0,
            "{fault}\n{show}"
        );
        assert!(
            r["first_bad_to_abort_ms"].is_i64(),
            "{fault}: no bad response seen\n{show}"
        );
        // Clients see no more errors than the canary's share of the load
        // during the exposure (first bad response → last canary response)
        // implies, with Poisson slack for the rate's jitter.
        let bound = (r["max_weight"].as_f64().unwrap_or(0.0) / 100.0
            * f64::from(RATE)
            * (r["first_bad_to_abort_ms"].as_f64().unwrap_or(0.0).max(0.0)
                + r["rollback_ms"].as_f64().unwrap_or(0.0))
            / 1000.0)
            .ceil();
        let errors = r["client_errors"].as_f64().unwrap_or(f64::MAX);
        assert!(
            errors <= bound + 3.0 * bound.sqrt() + 5.0,
            "{fault}: {errors} client errors, exposure implies {bound}\n{show}"
        );
    }

    let aa: Vec<&Value> = rows.iter().filter(|r| r["fault"] == "a/a").collect();
    assert_eq!(aa.len(), 2, "{show}");
    for r in aa {
        assert_eq!(r["outcome"], "promoted", "A/A canary aborted\n{show}");
        assert_eq!(r["client_errors"], 0, "A/A canary with errors\n{show}");
        assert!(r["canary_requests"].as_u64().unwrap_or(0) > 0, "{show}");
    }
    assert!(
        out.status.success(),
        "exit status {:?}\n{show}\nstderr:\n{stderr}",
        out.status
    );

    // The summary counts what the rows say.
    let summary = doc["summary"].as_array().expect("summary");
    let aa = summary
        .iter()
        .find(|s| s["fault"] == "a/a")
        .expect("A/A summary");
    assert_eq!(
        (aa["runs"].as_u64(), aa["aborted"].as_u64()),
        (Some(2), Some(0))
    );

    // Nothing left running: no replica whose working directory is under a
    // chaos folder (other tests run their own replicas meanwhile).
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
            (cmd.contains("demo-app") && cwd.to_string_lossy().contains("serin-chaos-"))
                .then_some(cmd)
        })
        .collect();
    assert!(leftover.is_empty(), "replicas left running: {leftover:?}");
}

#[test]
fn unknown_fault_names_are_rejected_with_the_catalogue() {
    let out = Command::new(support::SERIN)
        .args(["chaos", "--only", "cosmic-rays"])
        .output()
        .expect("runs serin chaos");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown fault \"cosmic-rays\"") && stderr.contains("crash-loop"),
        "{stderr}"
    );
}
