//! Providers over real loopback HTTP and real child processes, driven by the
//! async runner: a hanging server, garbage, a job that fails, stop.

use std::time::Duration;

use serde_json::{Value, json};
use serin_analysis::{AnalysisRun, Phase, Providers, RunInputs, runner};
use serin_spec::AnalysisTemplate;

fn run_of(metric: Value) -> AnalysisRun {
    let t: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "t"}, "spec": {"metrics": [metric]}
    }))
    .expect("template");
    AnalysisRun::new("r", &[t], &RunInputs::default()).expect("build")
}

async fn serve(body: &'static str, hang: bool) -> String {
    let app = axum::Router::new().route(
        "/m",
        axum::routing::any(move || async move {
            if hang {
                std::future::pending::<()>().await;
            }
            body
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}/m")
}

async fn finish(run: AnalysisRun) -> serin_analysis::RunStatus {
    let (_rx, _stop, handle) = runner::spawn(run, Providers::new());
    tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("run finished within the deadline")
        .expect("runner task")
}

#[tokio::test]
async fn web_json_path_success_and_post_body() {
    let url = serve(r#"{"data": {"ok": true, "rate": 0.99}}"#, false).await;
    let s = finish(run_of(json!({"name": "m", "successCondition": "result >= 0.95",
        "provider": {"web": {"url": url, "method": "POST", "body": "{}", "jsonPath": "{$.data.rate}",
                              "headers": [{"key": "X-Test", "value": "1"}]}}}))).await;
    assert_eq!(s.phase, Phase::Successful, "{s:#?}");
    assert_eq!(s.metric_results[0].measurements[0].value, Some(json!(0.99)));
}

#[tokio::test]
async fn hanging_provider_is_error_never_success() {
    let url = serve("{}", true).await;
    let s = finish(run_of(json!({"name": "m", "consecutiveErrorLimit": 0,
        "provider": {"web": {"url": url, "timeoutSeconds": 1}}})))
    .await;
    assert_eq!(s.phase, Phase::Error, "{s:#?}");
    assert!(
        s.metric_results[0].measurements[0]
            .message
            .contains("timed out"),
        "{s:#?}"
    );
}

#[tokio::test]
async fn garbage_and_down_providers_are_errors() {
    let url = serve("<html>not json</html>", false).await;
    let s = finish(run_of(
        json!({"name": "m", "consecutiveErrorLimit": 0, "successCondition": "result > 0",
        "provider": {"web": {"url": url}}}),
    ))
    .await;
    assert_eq!(s.phase, Phase::Error, "{s:#?}");
    assert!(
        s.metric_results[0].measurements[0]
            .message
            .contains("not return JSON"),
        "{s:#?}"
    );

    let url = serve("<html>not json</html>", false).await;
    let s = finish(run_of(
        json!({"name": "m", "consecutiveErrorLimit": 0, "successCondition": "result[0] > 0",
        "provider": {"prometheus": {"address": url, "query": "up"}}}),
    ))
    .await;
    assert_eq!(s.phase, Phase::Error, "{s:#?}");

    // Nothing listens on port 1.
    let s = finish(run_of(
        json!({"name": "m", "consecutiveErrorLimit": 0, "successCondition": "result[0] > 0",
        "provider": {"prometheus": {"address": "http://127.0.0.1:1", "query": "up"}}}),
    ))
    .await;
    assert_eq!(s.phase, Phase::Error, "{s:#?}");
}

#[tokio::test]
async fn job_exit_codes_and_output() {
    let job = |script: &str| {
        json!({"spec": {"template": {"spec": {"containers": [
        {"name": "c", "command": ["sh", "-c"], "args": [script]}]}}}})
    };
    let s = finish(run_of(
        json!({"name": "m", "provider": {"job": job("echo fine; exit 0")}}),
    ))
    .await;
    assert_eq!(s.phase, Phase::Successful, "{s:#?}");
    let s = finish(run_of(json!({"name": "m", "provider": {"job": job("for i in $(seq 1 30); do echo line$i; done; exit 3")}}))).await;
    assert_eq!(s.phase, Phase::Failed, "{s:#?}");
    let msg = &s.metric_results[0].measurements[0].message;
    assert!(
        msg.contains("code 3")
            && msg.contains("line30")
            && msg.contains("line11")
            && !msg.contains("line10\n"),
        "{msg}"
    );
}

#[tokio::test]
async fn stop_terminates_background_run_successfully() {
    let url = serve("1", false).await;
    let run = run_of(
        json!({"name": "m", "interval": "100ms", "successCondition": "result == 1",
        "provider": {"web": {"url": url}}}),
    );
    let (mut rx, stop, handle) = runner::spawn(run, Providers::new());
    // Poll with a deadline until a few measurements were taken.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if rx.borrow_and_update().metric_results[0].successful >= 3 {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    })
    .await
    .expect("three measurements within the deadline");
    stop.send_replace(true);
    let s = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("stopped")
        .expect("task");
    assert_eq!(s.phase, Phase::Successful, "{s:#?}");
    assert!(s.terminated);
}
