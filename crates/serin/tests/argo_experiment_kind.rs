//! Argo's standalone `Experiment` kind under `serin up`, with real
//! processes and real HTTP: Argo's own example (experiment-with-analysis.yaml
//! and its analysis-templates.yaml, unchanged) runs both templates' pods,
//! each answering for its own image; a passing required analysis ends an
//! experiment Successful and a failing one Failed, each with its pods gone;
//! `serin abort experiment` is Argo's terminate; a running experiment
//! resumes after its control plane is killed (same pods, the lost run
//! started again) and a changed spec starts it over; the API answers 404 in
//! JSON for an unknown name.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples"
);

/// An Experiment of two demo-app templates (`blue`, `yellow`) and one
/// required job analysis running `check`.
fn experiment(name: &str, check: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Experiment
metadata:
  name: {name}
spec:
  duration: 6s
  scaleDownDelaySeconds: 2
  templates:
  - name: baseline
    selector:
      matchLabels:
        app: {name}-baseline
    template:
      metadata:
        labels:
          app: {name}-baseline
      spec:
        containers:
        - name: app
          image: argoproj/rollouts-demo:blue
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
  - name: canary
    replicas: 2
    selector:
      matchLabels:
        app: {name}-canary
    template:
      metadata:
        labels:
          app: {name}-canary
      spec:
        containers:
        - name: app
          image: argoproj/rollouts-demo:yellow
          readinessProbe:
            httpGet:
              path: /
              port: 8080
            periodSeconds: 1
  analyses:
  - name: check
    templateName: {name}-check
    requiredForCompletion: true
    args:
    - name: canary-hash
      value: "{{{{templates.canary.podTemplateHash}}}}"
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: {name}-check
spec:
  args:
  - name: canary-hash
  metrics:
  - name: check
    count: 1
    provider:
      job:
        spec:
          template:
            spec:
              containers:
              - name: check
                image: sh
                command: [sh, -c]
                args: ["{check}"]
              restartPolicy: Never
"#
    )
}

fn get(d: &Path, name: &str) -> Option<serde_json::Value> {
    serde_json::from_slice(&serin_at(d, &["get", "experiment", name, "-o", "json"]).stdout).ok()
}

fn phase(v: &serde_json::Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or("")
}

/// Every template's ready pods, once each template has all its pods ready.
fn ready_pods(v: &serde_json::Value, templates: usize) -> Option<Vec<(String, Vec<SocketAddr>)>> {
    let ts = v["status"]["templateStatuses"].as_array()?;
    let out: Vec<(String, Vec<SocketAddr>)> = ts
        .iter()
        .filter_map(|t| {
            let pods = t["pods"].as_array()?;
            let want = t["replicas"].as_u64()? as usize;
            let ready: Vec<SocketAddr> = pods
                .iter()
                .filter(|p| p["ready"] == true)
                .filter_map(|p| p["addr"].as_str()?.parse().ok())
                .collect();
            (want > 0 && ready.len() == want)
                .then(|| (t["name"].as_str().unwrap_or("").to_string(), ready))
        })
        .collect();
    (out.len() == templates).then_some(out)
}

fn pods_left(v: &serde_json::Value) -> usize {
    v["status"]["templateStatuses"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["pods"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

fn api(d: &Path) -> Option<SocketAddr> {
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("state/endpoints.json")).ok()?)
            .ok()?;
    ep["api"].as_str()?.parse().ok()
}

/// One authenticated GET; (status, JSON body).
fn api_get(d: &Path, path: &str) -> Option<(u16, serde_json::Value)> {
    let token = std::fs::read_to_string(d.join("state/admin.token")).ok()?;
    let mut s = TcpStream::connect(api(d)?).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let json = serde_json::from_str(buf.split("\r\n\r\n").nth(1)?.trim()).ok()?;
    Some((code, json))
}

#[test]
fn experiments_run_their_templates_pods_and_end_on_their_analyses() {
    let dir = demo_dir("argo-experiment-kind", "");
    let d = &dir.0;
    for f in ["analysis-templates.yaml", "experiment-with-analysis.yaml"] {
        std::fs::copy(Path::new(EXAMPLES).join(f), d.join("manifests").join(f))
            .expect("copy Argo's example unchanged");
    }
    // Passes when given the canary pods' hash; takes 8 s so the test sees
    // the pods first.
    std::fs::write(
        d.join("manifests/pass.yaml"),
        experiment(
            "exp-pass",
            "sleep 3; test -n '{{args.canary-hash}}' && echo '{{args.canary-hash}}' | grep -qv templates",
        ),
    )
    .expect("manifest");
    std::fs::write(
        d.join("manifests/fail.yaml"),
        experiment("exp-fail", "sleep 3; echo canary judged worse; exit 1"),
    )
    .expect("manifest");
    let up = serin_up(d, "up.log");

    // Every experiment runs every template's pods, each answering for its
    // own image over real HTTP.
    for (name, want) in [
        (
            "experiment-with-analysis",
            [("purple", "purple"), ("orange", "orange")],
        ),
        ("exp-pass", [("baseline", "blue"), ("canary", "yellow")]),
        ("exp-fail", [("baseline", "blue"), ("canary", "yellow")]),
    ] {
        let pods = poll(
            &format!("{name}'s pods ready"),
            Duration::from_secs(120),
            || get(d, name).and_then(|v| ready_pods(&v, 2)),
        );
        for (template, addrs) in &pods {
            let expected = want
                .iter()
                .find(|(t, _)| t == template)
                .map(|(_, v)| *v)
                .expect("known template");
            for a in addrs {
                assert_eq!(
                    demo_version(*a).as_deref(),
                    Some(expected),
                    "{name} {template} pod {a}"
                );
            }
        }
    }

    // A passing required analysis: Successful after the 6 s, pods gone.
    let v = poll("exp-pass Successful", Duration::from_secs(120), || {
        get(d, "exp-pass").filter(|v| phase(v) == "Successful")
    });
    assert_eq!(v["status"]["analysisRuns"][0]["phase"], "Successful", "{v}");
    assert!(v["status"]["availableAt"].is_string(), "{v}");
    assert_eq!(
        v["status"]["conditions"][0]["reason"], "ExperimentCompleted",
        "{v}"
    );
    poll("exp-pass's pods gone", Duration::from_secs(60), || {
        get(d, "exp-pass").filter(|v| pods_left(v) == 0)
    });

    // A failing required analysis: Failed with the analysis's reason, pods gone.
    let v = poll("exp-fail Failed", Duration::from_secs(120), || {
        get(d, "exp-fail").filter(|v| phase(v) == "Failed")
    });
    let message = v["status"]["message"].as_str().unwrap_or("");
    assert!(message.contains("check"), "{message}");
    poll("exp-fail's pods gone", Duration::from_secs(60), || {
        get(d, "exp-fail").filter(|v| pods_left(v) == 0)
    });

    // Argo's example has no duration and nothing required: it runs until an
    // analysis fails (its random-fail job) or it is terminated.
    let out = serin_at(d, &["abort", "experiment", "experiment-with-analysis"]);
    let v = poll(
        "experiment-with-analysis ended",
        Duration::from_secs(60),
        || {
            get(d, "experiment-with-analysis")
                .filter(|v| matches!(phase(v), "Successful" | "Failed" | "Error"))
        },
    );
    if out.status.success() {
        assert_eq!(phase(&v), "Successful", "terminated: {v}");
        assert_eq!(v["spec"]["terminate"], true, "{v}");
    } else {
        // random-fail failed first; terminate was refused with a reason.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nothing to terminate"), "{err}");
    }
    // Argo's default scaleDownDelaySeconds: 30 s.
    poll(
        "experiment-with-analysis's pods gone",
        Duration::from_secs(90),
        || get(d, "experiment-with-analysis").filter(|v| pods_left(v) == 0),
    );

    // The API: the list, and a JSON 404 for an unknown name.
    let (code, list) = api_get(d, "/v1/experiments").expect("API answers");
    assert_eq!(code, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(3), "{list}");
    let (code, body) = api_get(d, "/v1/experiments/nope").expect("API answers");
    assert_eq!(code, 404);
    assert_eq!(body["error"], "no Experiment named nope");

    // The CLI: a table of every experiment, one experiment in words, and a
    // non-zero exit for an unknown name.
    let out = serin_at(d, &["get", "experiments"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in ["exp-pass", "exp-fail", "experiment-with-analysis"] {
        assert!(table.contains(line), "{table}");
    }
    let out = serin_at(d, &["get", "experiment", "exp-fail"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Failed") && text.contains("baseline") && text.contains("check"),
        "{text}"
    );
    let out = serin_at(d, &["get", "experiment", "nope"]);
    assert!(!out.status.success(), "{out:?}");

    // The status is durable: a restarted control plane reads it back
    // (ended experiments stay ended, with no pods).
    drop(up);
    let _up = serin_up(d, "up2.log");
    poll("the API again", Duration::from_secs(60), || {
        api_get(d, "/v1/experiments/exp-pass").filter(|(c, _)| *c == 200)
    });
    let v = get(d, "exp-pass").expect("exp-pass after restart");
    assert_eq!(phase(&v), "Successful", "{v}");
    assert_eq!(pods_left(&v), 0, "{v}");
    let v = get(d, "exp-fail").expect("exp-fail after restart");
    assert_eq!(phase(&v), "Failed", "{v}");
}

/// The names of every pod of every template.
fn pod_names(v: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = v["status"]["templateStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["pods"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn an_experiment_resumes_after_a_restart_starts_over_on_a_new_spec_and_ends_on_terminate() {
    let dir = demo_dir("argo-experiment-resume", "");
    let d = &dir.0;
    // The required analysis outlasts the 6 s: the experiment is Running
    // with its analysis going when the control plane dies.
    std::fs::write(
        d.join("manifests/resume.yaml"),
        experiment("exp-resume", "sleep 8; exit 0"),
    )
    .expect("manifest");
    let up = serin_up(d, "up.log");
    let v = poll(
        "exp-resume Running with its analysis",
        Duration::from_secs(120),
        || {
            get(d, "exp-resume").filter(|v| {
                phase(v) == "Running"
                    && v["status"]["analysisRuns"][0]["phase"] == "Running"
                    && ready_pods(v, 2).is_some()
            })
        },
    );
    let pods = pod_names(&v);
    assert_eq!(pods.len(), 3, "{v}");
    drop(up); // killed like a crash
    let _up = serin_up(d, "up2.log");
    // The same pods (re-adopted, not started again), and the run started
    // again from its stored spec.
    let v = poll("exp-resume back", Duration::from_secs(60), || {
        get(d, "exp-resume").filter(|v| ready_pods(v, 2).is_some())
    });
    assert_eq!(pod_names(&v), pods, "{v}");
    assert_eq!(phase(&v), "Running", "{v}");
    let v = poll("exp-resume Successful", Duration::from_secs(120), || {
        get(d, "exp-resume").filter(|v| phase(v) == "Successful")
    });
    assert_eq!(
        v["status"]["message"], "Required AnalysisRuns completed",
        "{v}"
    );
    poll("exp-resume's pods gone", Duration::from_secs(60), || {
        get(d, "exp-resume").filter(|v| pods_left(v) == 0)
    });

    // A changed Experiment spec starts it over: new pods, a new run of the
    // analysis (whose template now fails), not the old outcome. (A changed
    // AnalysisTemplate alone changes nothing for an ended experiment.)
    std::fs::write(
        d.join("manifests/resume.yaml"),
        experiment("exp-resume", "sleep 2; exit 1").replace("duration: 6s", "duration: 7s"),
    )
    .expect("manifest");
    poll("exp-resume started over", Duration::from_secs(120), || {
        get(d, "exp-resume").filter(|v| ready_pods(v, 2).is_some())
    });
    let v = poll("exp-resume Failed", Duration::from_secs(120), || {
        get(d, "exp-resume").filter(|v| phase(v) == "Failed")
    });
    assert_eq!(v["status"]["analysisRuns"][0]["phase"], "Failed", "{v}");
    poll(
        "exp-resume's new pods gone",
        Duration::from_secs(60),
        || get(d, "exp-resume").filter(|v| pods_left(v) == 0),
    );

    // No duration, nothing required: it runs until `serin abort
    // experiment` (Argo's terminate) ends it Successful, and its pods go.
    std::fs::write(
        d.join("manifests/term.yaml"),
        experiment("exp-term", "exit 0")
            .replace("  duration: 6s\n", "")
            .replace(
                "requiredForCompletion: true",
                "requiredForCompletion: false",
            ),
    )
    .expect("manifest");
    poll(
        "exp-term Running, its analysis done",
        Duration::from_secs(120),
        || {
            get(d, "exp-term").filter(|v| {
                phase(v) == "Running"
                    && v["status"]["analysisRuns"][0]["phase"] == "Successful"
                    && ready_pods(v, 2).is_some()
            })
        },
    );
    let out = serin_at(d, &["abort", "experiment", "exp-term"]);
    assert!(out.status.success(), "{out:?}");
    let v = poll("exp-term terminated", Duration::from_secs(60), || {
        get(d, "exp-term").filter(|v| phase(v) == "Successful")
    });
    assert_eq!(v["status"]["message"], "Experiment terminated", "{v}");
    assert_eq!(v["spec"]["terminate"], true, "{v}");
    poll("exp-term's pods gone", Duration::from_secs(60), || {
        get(d, "exp-term").filter(|v| pods_left(v) == 0)
    });
    let out = serin_at(d, &["abort", "experiment", "exp-term"]);
    assert!(
        !out.status.success(),
        "an ended experiment: nothing to terminate"
    );
}
