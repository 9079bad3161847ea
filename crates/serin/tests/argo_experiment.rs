//! Argo `experiment` canary steps under `serin up`, with real processes and
//! real HTTP: the step runs a baseline pod (the stable's template) and a
//! canary pod (the new template) beside the rollout's own, which its
//! Service never routes to; the experiment's analysis (a job that checks
//! it got the canary pods' hash) passes and the rollout goes on with the
//! experiment pods gone — or, required for completion, outlasts the
//! experiment's duration, fails and aborts the rollout.

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A basic canary (no traffic router): setWeight 50, the experiment, a
/// manual pause. `check` is the job's shell test; `required`: the
/// experiment waits for it past its duration.
fn rollout(name: &str, port: u16, check: &str, required: bool, tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: app
        image: argoproj/rollouts-demo:{tag}
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet:
            path: /
            port: 8080
          periodSeconds: 1
  strategy:
    canary:
      steps:
      - setWeight: 50
      - experiment:
          duration: 8s
          templates:
          - name: baseline
            specRef: stable
          - name: canary
            specRef: canary
          analyses:
          - name: check
            templateName: {name}-check
            requiredForCompletion: {required}
            args:
            - name: canary-hash
              value: "{{{{templates.canary.podTemplateHash}}}}"
      - pause: {{}}
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
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {name}
  ports:
  - port: {port}
    targetPort: 8080
"#
    )
}

fn write(d: &Path, tag: &str) {
    // Passes when it was given the canary pods' hash (the engine fills in
    // `{{templates.canary.podTemplateHash}}`).
    let pass = rollout(
        "exp-pass",
        80,
        "test -n '{{args.canary-hash}}' && echo '{{args.canary-hash}}' | grep -qv templates",
        false,
        tag,
    );
    // Takes longer than the experiment's 8 s (so the test sees its pods
    // first); required, so the experiment waits for it and fails with it.
    let fail = rollout(
        "exp-fail",
        80,
        "sleep 12; echo judged worse; exit 1",
        true,
        tag,
    );
    std::fs::write(d.join("manifests/pass.yaml"), pass).expect("manifest");
    std::fs::write(d.join("manifests/fail.yaml"), fail).expect("manifest");
}

fn setup() -> Dir {
    demo_dir("argo-experiment", "")
}

fn get(d: &Path, name: &str) -> Option<serde_json::Value> {
    rollout_json(d, name)
}

fn healthy(v: &serde_json::Value) -> bool {
    v["status"]["phase"] == "Healthy" && v["desiredHash"] == v["status"]["stable_hash"]
}

/// The experiment's templates once every pod of both is ready:
/// (template, its hash, its pods' addresses).
fn running_experiment(d: &Path, name: &str) -> Vec<(String, String, Vec<SocketAddr>)> {
    poll(
        &format!("{name}'s experiment pods ready"),
        Duration::from_secs(120),
        || {
            let v = get(d, name)?;
            let x = v["experiments"].as_array()?.first()?.clone();
            let templates: Vec<(String, String, Vec<SocketAddr>)> = x["templates"]
                .as_array()?
                .iter()
                .filter_map(|t| {
                    let pods = t["pods"].as_array()?;
                    let ready: Vec<SocketAddr> = pods
                        .iter()
                        .filter(|p| p["ready"] == true)
                        .filter_map(|p| p["addr"].as_str()?.parse().ok())
                        .collect();
                    (!pods.is_empty() && ready.len() == pods.len()).then(|| {
                        (
                            t["template"].as_str().unwrap_or("").to_string(),
                            t["hash"].as_str().unwrap_or("").to_string(),
                            ready,
                        )
                    })
                })
                .collect();
            (templates.len() == 2).then_some(templates)
        },
    )
}

fn experiment_pods_left(v: &serde_json::Value) -> usize {
    v["experiments"]
        .as_array()
        .map(|xs| {
            xs.iter()
                .flat_map(|x| x["templates"].as_array().cloned().unwrap_or_default())
                .map(|t| t["pods"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn an_experiment_step_runs_baseline_and_canary_and_passes_or_aborts_on_its_analysis() {
    let dir = setup();
    let d = &dir.0;
    write(d, "blue");
    let _up = serin_up(d, "up.log");
    for name in ["exp-pass", "exp-fail"] {
        poll(&format!("{name} Healthy"), Duration::from_secs(120), || {
            get(d, name).filter(healthy)
        });
    }
    let stable_hash = |name: &str| {
        get(d, name).expect("status")["status"]["stable_hash"]
            .as_str()
            .expect("stable")
            .to_string()
    };
    let (pass_v1, fail_v1) = (stable_hash("exp-pass"), stable_hash("exp-fail"));

    write(d, "yellow");
    // Both experiments run: baseline = the stable's template (blue),
    // canary = the new one (yellow), each pod answering for itself.
    for name in ["exp-pass", "exp-fail"] {
        let templates = running_experiment(d, name);
        let v = get(d, name).expect("status");
        let revisions: Vec<&str> = v["revisions"]
            .as_array()
            .expect("revisions")
            .iter()
            .filter_map(|r| r["hash"].as_str())
            .collect();
        for (template, hash, addrs) in &templates {
            assert!(
                !revisions.contains(&hash.as_str()),
                "{template}'s pods have their own identity"
            );
            let want = if template == "baseline" {
                "blue"
            } else {
                "yellow"
            };
            for a in addrs {
                assert_eq!(
                    demo_version(*a).as_deref(),
                    Some(want),
                    "{name} {template} pod {a}"
                );
            }
        }
        // The rollout's Service routes only to the rollout's own pods.
        let route = serde_json::to_string(&v["route"]).expect("route");
        for (_, hash, _) in &templates {
            assert!(!route.contains(hash.as_str()), "{route}");
        }
    }

    // exp-pass: the analysis passes, the 8 s run out, the rollout goes on to
    // the manual pause and the experiment's pods are gone.
    let v = poll("exp-pass at its pause", Duration::from_secs(120), || {
        get(d, "exp-pass").filter(|v| {
            v["status"]["current_step_index"] == 2 && v["awaitingPromotion"] == "pause step"
        })
    });
    assert_eq!(v["experiments"][0]["phase"], "Successful", "{v}");
    poll(
        "exp-pass's experiment pods gone",
        Duration::from_secs(60),
        || get(d, "exp-pass").filter(|v| experiment_pods_left(v) == 0),
    );
    let out = serin_at(d, &["promote", "exp-pass"]);
    assert!(out.status.success(), "{out:?}");
    poll(
        "exp-pass Healthy on yellow",
        Duration::from_secs(120),
        || {
            get(d, "exp-pass")
                .filter(|v| healthy(v) && v["status"]["stable_hash"] != pass_v1.as_str())
        },
    );

    // exp-fail: the analysis fails, the rollout aborts (Degraded, back on
    // its stable) and the experiment's pods are gone.
    let v = poll("exp-fail aborted", Duration::from_secs(120), || {
        get(d, "exp-fail").filter(|v| v["status"]["abort"] == true)
    });
    assert_eq!(v["status"]["phase"], "Degraded", "{v}");
    assert_eq!(v["status"]["current_step_index"], 1, "{v}");
    let message = v["status"]["message"].as_str().unwrap_or("");
    assert!(message.contains("Failed"), "{message}");
    poll(
        "exp-fail's experiment pods gone, the stable back",
        Duration::from_secs(60),
        || {
            get(d, "exp-fail").filter(|v| {
                experiment_pods_left(v) == 0
                    && v["status"]["stable_hash"] == fail_v1.as_str()
                    && v["revisions"].as_array().is_some_and(|rs| {
                        rs.iter()
                            .all(|r| r["hash"] == fail_v1.as_str() || r["desired"] == 0)
                    })
            })
        },
    );
}
