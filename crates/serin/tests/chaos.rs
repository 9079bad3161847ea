//! `serin chaos` end to end: every fault of the catalogue runs as a canary
//! of a good version under constant load through the real proxy, with real
//! replicas as child processes, and must be aborted by the analysis; the
//! good-vs-good (A/A) canaries that run beside them must be promoted.
//!
//! The catalogue runs in small groups, one test each (nextest runs them side
//! by side, each with its own control plane and proxy): eleven canaries
//! behind one debug-build proxy on a busy 2-core machine saw client timeouts
//! on every listener (see bench/README.md), which would blur what each fault
//! does. The subtle faults get the traffic their detection needs.

mod support;

use std::process::Command;

use serde_json::Value;

/// Runs `serin chaos --only FAULTS --aa 1 --rate RATE --first-pause
/// PAUSE`, checks its rows (also those appended to `--rows` as the round
/// ended) and that it left no replica running. Rates are modest: the
/// catalogue runs in a debug build beside the rest of the suite.
fn chaos(faults: &[&str], rate: u32, first_pause: &str) {
    // Unique per test: nextest runs them side by side.
    let rows_file = std::env::temp_dir().join(format!(
        "serin-chaos-rows-{}-{}.jsonl",
        std::process::id(),
        faults.join("-")
    ));
    let _ = std::fs::remove_file(&rows_file);
    let child = Command::new(support::SERIN)
        .args([
            "chaos",
            "--only",
            &faults.join(","),
            "--aa",
            "1",
            "--rate",
            &rate.to_string(),
            "--first-pause",
            first_pause,
            "--second-pause",
            "5s",
            "-o",
            "json",
        ])
        .arg("--rows")
        .arg(&rows_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs serin chaos");
    // `serin chaos` works in a folder named after its pid.
    let folder = format!("serin-chaos-{}", child.id());
    let out = child.wait_with_output().expect("serin chaos ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    let show = serde_json::to_string_pretty(&doc["rows"]).unwrap_or_default();
    check(&doc, faults, &show);
    let appended = std::fs::read_to_string(&rows_file).expect("rows appended per round");
    let appended: Vec<Value> = appended
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON row per line"))
        .collect();
    assert_eq!(
        Some(&appended),
        doc["rows"].as_array(),
        "rows appended per round differ from the final document"
    );
    let _ = std::fs::remove_file(&rows_file);
    assert!(
        out.status.success(),
        "exit status {:?}\n{show}\nstderr:\n{stderr}",
        out.status
    );
    no_replicas_left(&folder);
}

fn check(doc: &Value, faults: &[&str], show: &str) {
    let rows = doc["rows"].as_array().expect("rows");
    for fault in faults {
        let r = rows
            .iter()
            .find(|r| r["fault"] == *fault)
            .unwrap_or_else(|| panic!("no row for {fault}\n{show}"));
        assert_eq!(r["outcome"], "aborted", "{fault} not caught\n{show}");
        // Nobody aborted it by hand: a metric of the analysis failed, or a
        // canary that never became available hit the progress deadline.
        let failed = r["failed_metrics"].as_array().expect("failed_metrics");
        let message = r["message"].as_str().unwrap_or_default();
        let deadline = message.contains("progress deadline");
        assert!(
            !failed.is_empty() || deadline,
            "{fault}: aborted without a failed metric: {message}\n{show}"
        );
        if deadline {
            continue;
        }
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
        // How many 5xx clients saw against what the canary's share of the
        // load during the exposure implies is a figure, not a verdict: it
        // depends on how the machine schedules the load, the proxy and the
        // replicas, so bench/chaos.sh reports it and no test fails on it.
    }
    let aa: Vec<&Value> = rows.iter().filter(|r| r["fault"] == "a/a").collect();
    assert_eq!(aa.len(), 1, "{show}");
    for r in aa {
        assert_eq!(r["outcome"], "promoted", "A/A canary aborted\n{show}");
        assert!(r["canary_requests"].as_u64().unwrap_or(0) > 0, "{show}");
    }
    // The summary counts what the rows say.
    let summary = doc["summary"].as_array().expect("summary");
    let aa = summary
        .iter()
        .find(|s| s["fault"] == "a/a")
        .expect("A/A summary");
    assert_eq!(
        (aa["runs"].as_u64(), aa["aborted"].as_u64()),
        (Some(1), Some(0)),
        "{show}"
    );
    for fault in faults {
        let s = summary
            .iter()
            .find(|s| s["fault"] == *fault)
            .expect("fault summary");
        assert_eq!(
            (s["runs"].as_u64(), s["aborted"].as_u64()),
            (Some(1), Some(1))
        );
    }
}

/// No replica left running whose working directory is under `folder`, and
/// no proxy started with its state there (other tests run their own
/// replicas meanwhile).
fn no_replicas_left(folder: &str) {
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
            let replica = cmd.contains("demo-app") && cwd.to_string_lossy().contains(folder);
            let proxy = cmd.contains(" proxy ") && cmd.contains(folder);
            (replica || proxy).then_some(format!("{cmd} in {}", cwd.display()))
        })
        .collect();
    assert!(leftover.is_empty(), "replicas left running: {leftover:?}");
}

#[test]
fn crashes_errors_memory_and_partial_outages_are_aborted_and_a_good_canary_is_not() {
    chaos(
        &["crash-loop", "errors-10pct", "memory-oom", "partial-path"],
        40,
        "20s",
    );
}

/// A canary whose readiness flaps leaves its share of the traffic with no
/// ready endpoint: clients get the proxy's 503s. While the proxy counted
/// `no_endpoint` answers as its own fault (main 227b241) no builtin metric
/// saw them and this canary was promoted; they count against the revision
/// again since 9e45a1f. Kept as its own test so a regression shows by name;
/// see bench/README.md.
#[test]
fn readiness_flapping_is_aborted_and_a_good_canary_is_not() {
    chaos(&["readiness-flap"], 40, "20s");
}

#[test]
fn gross_latency_and_slow_start_are_aborted_and_a_good_canary_is_not() {
    chaos(&["latency-400ms", "slow-start"], 40, "20s");
}

/// +50 ms on half the requests (p95 +50 ms) on its own: the rank judge needs
/// a few hundred canary requests when the machine's own latency noise is
/// tens of ms, and more canaries behind one proxy add to that noise (in
/// bench/chaos.sh with 12 canaries at once it was not caught within 25 s).
/// Its A/A canary was once aborted under the suite's concurrent load: the
/// latency judge pooled samples since the start while the canary's share
/// and the machine's latency both changed; it now compares interval by
/// interval (docs/judge.md). What load can still do is hide the fault: with
/// the stable's own p50 at 0.3–1.5 s (load ≈ 30 on 2 cores) +50 ms moves
/// `A` to ≈ 0.55, the judge's minimum effect, and the canary is promoted —
/// a limit of the effect size, not a false abort (bench/README.md).
#[test]
fn a_50_ms_regression_on_half_the_requests_is_aborted_and_a_good_canary_is_not() {
    chaos(&["latency-p50-50ms"], 60, "30s");
}

/// One request in fifty failing needs ~7 canary errors before either the
/// judge or a 2 s window over 5 % is sure: 25 canary requests/s for 30 s
/// gives ~15 expected (at 10/s for 20 s it was caught about half the time).
#[test]
fn one_error_in_fifty_is_aborted_and_a_good_canary_is_not() {
    chaos(&["errors-2pct"], 100, "30s");
}

/// Ctrl-C in the middle of a run stops the proxy and every replica: they
/// used to be left running, re-parented to init, after the chaos process
/// died of the signal.
#[test]
fn an_interrupted_run_leaves_no_process_behind() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let mut child = Command::new(support::SERIN)
        .args([
            "chaos",
            "--only",
            "none",
            "--aa",
            "1",
            "--rate",
            "10",
            "--first-pause",
            "120s",
            "-o",
            "json",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs serin chaos");
    let folder = format!("serin-chaos-{}", child.id());
    let stderr = child.stderr.take().expect("piped stderr");
    // Progress goes to stderr with -o json. A thread keeps reading it to the
    // end (a closed pipe is a different matter) and reports the first round.
    let (round_tx, round_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("round 1/1") {
                let _ = round_tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    if round_rx.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let seen = reader.join().unwrap_or_default();
        panic!("the run never started a round:\n{seen}");
    }
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serin chaos did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let seen = reader.join().unwrap_or_default();
    assert!(
        !status.success(),
        "an interrupted run must not report success\n{seen}"
    );
    assert!(seen.contains("Ctrl-C: stopping"), "{seen}");
    no_replicas_left(&folder);
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
