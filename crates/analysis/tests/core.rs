//! The pure core: every outcome rule and limit, with time as an input.

use serde_json::{Value, json};
use serin_analysis::{AnalysisRun, ArgError, BuildError, Outcome, Phase, RunInputs};
use serin_spec::AnalysisTemplate;

fn template(metrics: Value) -> AnalysisTemplate {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {"metrics": metrics}
    }))
    .expect("test template")
}

fn metric(extra: Value) -> Value {
    let mut m = json!({"name": "m", "provider": {"web": {"url": "http://127.0.0.1:1/x"}}});
    if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    m
}

fn run_of(extra: Value) -> AnalysisRun {
    AnalysisRun::new(
        "r",
        &[template(json!([metric(extra)]))],
        &RunInputs::default(),
    )
    .expect("build")
}

/// Take one measurement of metric `m` at `t` with `outcome`.
fn measure(run: &mut AnalysisRun, t: u64, outcome: Outcome) {
    let tasks = run.next_due(t);
    assert_eq!(
        tasks.len(),
        1,
        "expected one due task at {t}, got {tasks:?}"
    );
    run.record(&tasks[0].metric, outcome, t + 1);
}

fn v(x: Value) -> Outcome {
    Outcome::Value(x)
}

#[test]
fn no_conditions_is_successful() {
    let mut r = run_of(json!({}));
    measure(&mut r, 0, v(json!(42)));
    assert_eq!(r.phase(), Phase::Successful);
}

#[test]
fn success_condition_false_is_failed() {
    let mut r = run_of(json!({"successCondition": "result[0] >= 0.95"}));
    measure(&mut r, 0, v(json!([0.5])));
    assert_eq!(r.phase(), Phase::Failed);
    assert!(r.message().contains("failureLimit"), "{}", r.message());
    let mut r = run_of(json!({"successCondition": "result[0] >= 0.95"}));
    measure(&mut r, 0, v(json!([0.99])));
    assert_eq!(r.phase(), Phase::Successful);
}

#[test]
fn failure_condition_only() {
    let mut r = run_of(json!({"failureCondition": "result[0] > 0.01"}));
    measure(&mut r, 0, v(json!([0.5])));
    assert_eq!(r.phase(), Phase::Failed);
    let mut r = run_of(json!({"failureCondition": "result[0] > 0.01"}));
    measure(&mut r, 0, v(json!([0.001])));
    assert_eq!(r.phase(), Phase::Successful);
}

#[test]
fn both_false_is_inconclusive_and_limit_applies() {
    let cond = json!({"successCondition": "result > 10", "failureCondition": "result < 0"});
    let mut r = run_of(cond.clone());
    measure(&mut r, 0, v(json!(5)));
    assert_eq!(r.phase(), Phase::Inconclusive);

    let mut c = cond;
    c["inconclusiveLimit"] = json!(1);
    c["interval"] = json!("10s");
    c["count"] = json!(3);
    let mut r = run_of(c);
    measure(&mut r, 0, v(json!(5)));
    assert_eq!(r.phase(), Phase::Running);
    assert!(r.next_due(5_000).is_empty(), "interval not elapsed");
    measure(&mut r, 10_001, v(json!(5)));
    assert_eq!(r.phase(), Phase::Inconclusive);
}

#[test]
fn both_true_failure_wins() {
    let mut r = run_of(json!({"successCondition": "result > 1", "failureCondition": "result > 2"}));
    measure(&mut r, 0, v(json!(5)));
    assert_eq!(r.phase(), Phase::Failed);
}

#[test]
fn evaluation_error_is_error_measurement_never_success() {
    // Empty vector, NaN, a throwing helper: each an Error measurement.
    for (cond, value) in [
        ("result[0] >= 0.95", json!([])),
        ("result[0] > 0.01", json!(["NaN"])),
        ("asInt(result) > 1", json!("garbage")),
    ] {
        let mut r = run_of(json!({"failureCondition": cond, "consecutiveErrorLimit": 0}));
        measure(&mut r, 0, v(value.clone()));
        let m = &r.status().metric_results[0];
        assert_eq!(m.measurements[0].phase, Phase::Error, "{cond} on {value}");
        assert!(!m.measurements[0].message.is_empty());
        assert_eq!(r.phase(), Phase::Error, "{cond} on {value}");
    }
}

#[test]
fn failure_limit_counts_failures() {
    let mut r = run_of(
        json!({"successCondition": "result >= 1", "interval": "1s", "count": 5, "failureLimit": 2}),
    );
    let mut t = 0;
    for (i, x) in [0, 0, 1].into_iter().enumerate() {
        measure(&mut r, t, v(json!(x)));
        assert_eq!(r.phase(), Phase::Running, "after measurement {i}");
        t += 1_001;
    }
    measure(&mut r, t, v(json!(0)));
    assert_eq!(r.phase(), Phase::Failed);
    let m = &r.status().metric_results[0];
    assert_eq!((m.count, m.failed, m.successful), (4, 3, 1));
    assert!(
        r.next_due(t + 100_000).is_empty(),
        "a failed run measures no more"
    );
}

#[test]
fn count_reached_is_successful_despite_failures_within_limit() {
    let mut r = run_of(
        json!({"successCondition": "result >= 1", "interval": "1s", "count": 3, "failureLimit": 1}),
    );
    measure(&mut r, 0, v(json!(0)));
    measure(&mut r, 2_000, v(json!(1)));
    measure(&mut r, 4_000, v(json!(1)));
    assert_eq!(r.phase(), Phase::Successful);
}

#[test]
fn consecutive_error_limit_default_4() {
    let mut r = run_of(json!({"successCondition": "result >= 1"}));
    let mut t = 0;
    for i in 0..4 {
        measure(&mut r, t, Outcome::Error("connection refused".into()));
        assert_eq!(r.phase(), Phase::Running, "after error {i}");
        // No interval: Argo retries errors after 10 s.
        assert_eq!(r.next_wake(), Some(t + 1 + 10_000));
        t += 10_001;
    }
    measure(&mut r, t, Outcome::Error("connection refused".into()));
    assert_eq!(r.phase(), Phase::Error);
    assert!(
        r.message().contains("connection refused"),
        "{}",
        r.message()
    );
}

#[test]
fn success_resets_consecutive_errors_and_errors_do_not_count() {
    let mut r = run_of(json!({"interval": "1s", "count": 2, "consecutiveErrorLimit": 1}));
    measure(&mut r, 0, Outcome::Error("x".into()));
    measure(&mut r, 2_000, v(json!(1)));
    measure(&mut r, 4_000, Outcome::Error("x".into()));
    assert_eq!(r.phase(), Phase::Running);
    let m = &r.status().metric_results[0];
    assert_eq!((m.count, m.error, m.consecutive_error), (1, 2, 1));
    measure(&mut r, 6_000, v(json!(1)));
    assert_eq!(r.phase(), Phase::Successful);
}

#[test]
fn consecutive_success_limit() {
    let mut r = run_of(
        json!({"successCondition": "result >= 1", "interval": "1s", "consecutiveSuccessLimit": 2, "failureLimit": -1}),
    );
    measure(&mut r, 0, v(json!(1)));
    measure(&mut r, 2_000, v(json!(0)));
    measure(&mut r, 4_000, v(json!(1)));
    assert_eq!(r.phase(), Phase::Running);
    measure(&mut r, 6_000, v(json!(1)));
    assert_eq!(r.phase(), Phase::Successful);
    // Count reached without the streak, with failureLimit applicable → Inconclusive.
    let mut r = run_of(
        json!({"successCondition": "result >= 1", "interval": "1s", "count": 2, "consecutiveSuccessLimit": 2, "failureLimit": 3}),
    );
    measure(&mut r, 0, v(json!(1)));
    measure(&mut r, 2_000, v(json!(0)));
    assert_eq!(r.phase(), Phase::Inconclusive);
}

#[test]
fn unset_count_with_interval_runs_until_terminated() {
    let mut r = run_of(json!({"successCondition": "result >= 1", "interval": "1s"}));
    let mut t = 0;
    for _ in 0..50 {
        measure(&mut r, t, v(json!(1)));
        t += 1_001;
    }
    assert_eq!(r.phase(), Phase::Running);
    r.terminate(t);
    assert_eq!(r.phase(), Phase::Successful);
    assert_eq!(
        r.status().metric_results[0].measurements.len(),
        10,
        "default retention"
    );
}

#[test]
fn terminate_in_flight_and_before_first_measurement() {
    let mut r = run_of(json!({"interval": "1s", "initialDelay": "30s"}));
    assert!(r.next_due(0).is_empty(), "initial delay");
    assert_eq!(r.next_wake(), Some(30_000));
    r.terminate(5_000);
    assert_eq!(r.phase(), Phase::Successful);

    let mut r = run_of(json!({"interval": "1s"}));
    assert_eq!(r.next_due(0).len(), 1);
    r.terminate(10);
    assert_eq!(r.phase(), Phase::Successful);
    assert_eq!(
        r.status().metric_results[0].measurements[0].message,
        "metric terminated"
    );
    // A late result is ignored.
    r.record("m", Outcome::Value(json!(0)), 20);
    assert_eq!(r.status().metric_results[0].count, 0);
}

#[test]
fn failing_metric_terminates_others_and_worst_wins() {
    let t = template(json!([
        metric(json!({"name": "a", "successCondition": "result >= 1"})),
        metric(json!({"name": "b", "interval": "1s"})),
    ]));
    let mut r = AnalysisRun::new("r", &[t], &RunInputs::default()).expect("build");
    let tasks = r.next_due(0);
    assert_eq!(tasks.len(), 2);
    r.record("b", v(json!(1)), 5);
    r.record("a", v(json!(0)), 6);
    assert_eq!(r.phase(), Phase::Failed);
    assert!(r.message().contains("\"a\""), "{}", r.message());
    assert!(r.next_due(10_000).is_empty());
}

#[test]
fn dry_run_metric_does_not_decide() {
    let mut t = template(json!([
        metric(json!({"name": "a", "successCondition": "result >= 1"})),
        metric(json!({"name": "b"})),
    ]));
    t.spec.dry_run = vec![serin_spec::DryRun {
        metric_name: "a".into(),
    }];
    let mut r = AnalysisRun::new("r", &[t], &RunInputs::default()).expect("build");
    r.next_due(0);
    r.record("a", v(json!(0)), 1);
    assert_eq!(
        r.phase(),
        Phase::Running,
        "b still pending; a's failure does not terminate"
    );
    r.record("b", v(json!(0)), 2);
    assert_eq!(r.phase(), Phase::Successful);
    assert_eq!(r.status().metric_results[0].phase, Phase::Failed);
}

#[test]
fn measurement_retention() {
    let mut t = template(json!([metric(json!({"interval": "1s", "count": 5}))]));
    t.spec.measurement_retention = vec![serin_spec::MeasurementRetention {
        metric_name: ".*".into(),
        limit: 2,
    }];
    let mut r = AnalysisRun::new("r", &[t], &RunInputs::default()).expect("build");
    for i in 0..5 {
        measure(&mut r, i * 2_000, v(json!(i)));
    }
    let m = &r.status().metric_results[0];
    assert_eq!(m.measurements.len(), 2);
    assert_eq!(m.measurements[1].value, Some(json!(4)));
    assert_eq!(m.count, 5);
}

#[test]
fn build_errors_are_located_by_metric_and_field() {
    let bad = |extra: Value| {
        AnalysisRun::new(
            "r",
            &[template(json!([metric(extra)]))],
            &RunInputs::default(),
        )
    };
    assert!(matches!(
        bad(json!({"successCondition": "result[0] >="})),
        Err(BuildError::Condition {
            field: "successCondition",
            ..
        })
    ));
    assert!(matches!(
        bad(json!({"count": 3})),
        Err(BuildError::Field {
            field: "interval",
            ..
        })
    ));
    assert!(matches!(
        bad(json!({"interval": "5 parsecs"})),
        Err(BuildError::Field {
            field: "interval",
            ..
        })
    ));
    assert!(matches!(
        bad(json!({"count": "{{args.n}}"})),
        Err(BuildError::MetricArg {
            source: ArgError::Undeclared { .. },
            ..
        })
    ));
    assert!(matches!(
        bad(json!({"provider": {"datadog": {"query": "x"}}})),
        Err(BuildError::Provider { .. })
    ));
    // Template arg without value and not passed: MissingArg before anything runs.
    let mut t = template(json!([metric(
        json!({"provider": {"web": {"url": "http://h/{{args.svc}}"}}})
    )]));
    t.spec.args = vec![serin_spec::Argument {
        name: "svc".into(),
        value: None,
        value_from: None,
    }];
    assert_eq!(
        AnalysisRun::new("r", &[t.clone()], &RunInputs::default()).err(),
        Some(BuildError::Arg(ArgError::MissingArg { name: "svc".into() }))
    );
    let inputs = RunInputs {
        args: vec![serin_spec::AnalysisRunArgument {
            name: "svc".into(),
            value: Some("web".into()),
            value_from: None,
        }],
        ..Default::default()
    };
    let mut r = AnalysisRun::new("r", &[t], &inputs).expect("build");
    let task = r.next_due(0).pop().expect("task");
    let serin_analysis::ProviderSpec::Web(w) = task.provider else {
        panic!("web")
    };
    assert_eq!(w.url, "http://h/web");
}

#[test]
fn status_serializes() {
    let mut r = run_of(json!({"successCondition": "result[0] >= 0.95"}));
    measure(&mut r, 0, v(json!([0.97])));
    let s = serde_json::to_value(r.status()).expect("json");
    assert_eq!(s["phase"], "Successful");
    assert_eq!(s["metricResults"][0]["successful"], 1);
    assert_eq!(
        s["metricResults"][0]["measurements"][0]["value"],
        json!([0.97])
    );
}
