//! Weighted experiment steps under `serin up`, with real processes and real
//! HTTP. Argo's own examples (Istio host split, ALB, SMI; only the image tag
//! is edited, which starts the update) give the experiment template its
//! `weight` of the rollout's traffic through the router object's listener,
//! taken from the stable's share; on promote the weight leaves and the pods
//! go without a failed request. Then an A/B step: Serin's statistical judge
//! (the `builtin` provider's `judge-error-rate`) compares the experiment's
//! canary template with its baseline template, each with its own share of
//! the traffic: a canary template that fails half its requests is failed
//! and the rollout aborts; a good one passes and the rollout goes on.

mod support;
use support::*;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/compat/argo-rollouts-examples/traffic-routing-experiment-step"
);

/// (example file, rollout, its router object's listener, canary %, experiment %)
const FILES: &[(&str, &str, &str, u32, u32)] = &[
    (
        "istio-host-split-experiment-step.yaml",
        "istio-host-split",
        "istio-host-split-vsvc",
        10,
        20,
    ),
    (
        "rollout-alb-experiment-step.yaml",
        "alb-rollout",
        "alb-rollout-ingress",
        10,
        20,
    ),
    (
        "rollout-smi-experiment-step.yaml",
        "rollout-smi-experiment",
        "rollout-smi-experiment-trafficsplit",
        5,
        5,
    ),
];

fn write_examples(d: &Path, tag: &str) {
    for (file, ..) in FILES {
        let text = std::fs::read_to_string(Path::new(EXAMPLES).join(file))
            .expect("compat example")
            .replace("rollouts-demo:blue", &format!("rollouts-demo:{tag}"));
        std::fs::write(d.join("manifests").join(file), text).expect("manifest");
    }
}

fn get(d: &Path, name: &str) -> Option<serde_json::Value> {
    rollout_json(d, name)
}

fn healthy(v: &serde_json::Value) -> bool {
    v["status"]["phase"] == "Healthy" && v["desiredHash"] == v["status"]["stable_hash"]
}

/// The demo app's JSON answer to one real request.
fn ask(addr: SocketAddr) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    serde_json::from_str(buf.split("\r\n\r\n").nth(1)?.trim()).ok()
}

fn pid(addr: SocketAddr) -> Option<u64> {
    ask(addr)?["pid"].as_u64()
}

fn addrs(pods: &serde_json::Value) -> Vec<SocketAddr> {
    pods.as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["addr"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Once the experiment's pods take traffic: each serving process (asked
/// directly for its pid) → "stable", "canary" or the experiment template's
/// name.
fn who_is_who(d: &Path, name: &str) -> BTreeMap<u64, String> {
    poll(
        &format!("{name}'s experiment in the route"),
        Duration::from_secs(120),
        || {
            let v = get(d, name)?;
            let x = v["experiments"].as_array()?.first()?;
            let templates = x["templates"].as_array()?;
            let weights = v["route"]["weights"].as_array()?;
            let routed = templates.iter().all(|t| {
                weights
                    .iter()
                    .any(|w| w["revision"] == t["hash"] && w["weight"].as_u64() > Some(0))
            });
            if !routed || v["status"]["current_step_index"] != 1 {
                return None;
            }
            let stable = v["status"]["stable_hash"].as_str()?;
            let mut out = BTreeMap::new();
            for r in v["revisions"].as_array()? {
                let role = if r["hash"] == stable {
                    "stable"
                } else {
                    "canary"
                };
                for a in addrs(&r["pods"]) {
                    out.insert(pid(a)?, role.to_string());
                }
            }
            for t in templates {
                for a in addrs(&t["pods"]) {
                    out.insert(pid(a)?, t["template"].as_str()?.to_string());
                }
            }
            Some(out)
        },
    )
}

/// `n` requests through `addr`, counted by who answered.
fn tally(addr: SocketAddr, who: &BTreeMap<u64, String>, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let key = match ask(addr).and_then(|v| v["pid"].as_u64()) {
            Some(p) => who.get(&p).cloned().unwrap_or_else(|| format!("pid {p}")),
            None => "failed".into(),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// `got` is `want` % of `n` within max(5, 30 %) — the proxy's smooth
/// weighted round robin is exact per period, so only the interleaving of
/// its per-core schedules moves it; 0 (no weight) never passes.
fn near(got: usize, want: u32, n: usize) -> bool {
    let expected = n as f64 * f64::from(want) / 100.0;
    let slack = (expected * 0.3).max(5.0);
    (got as f64 - expected).abs() <= slack && (want == 0 || got > 0)
}

#[test]
fn argo_weighted_experiment_examples_take_their_share_of_traffic_under_serin_up() {
    let dir = demo_dir("argo-experiment-weights", "");
    let d = &dir.0;
    write_examples(d, "blue");
    let _up = serin_up(d, "up.log");
    for (_, name, ..) in FILES {
        poll(&format!("{name} Healthy"), Duration::from_secs(120), || {
            get(d, name).filter(healthy)
        });
    }
    let listeners: Vec<SocketAddr> = FILES
        .iter()
        .map(|(_, _, l, ..)| service_listener(d, l))
        .collect();

    write_examples(d, "yellow");
    const N: usize = 200;
    for ((_, name, _, canary, weight), addr) in FILES.iter().zip(&listeners) {
        let who = who_is_who(d, name);
        let got = tally(*addr, &who, N);
        let count = |k: &str| got.get(k).copied().unwrap_or(0);
        let template = who
            .values()
            .find(|r| *r != "stable" && *r != "canary")
            .cloned()
            .expect("an experiment pod");
        eprintln!("{name}: {got:?} of {N}");
        assert_eq!(
            count("stable") + count("canary") + count(&template),
            N,
            "{name}: every answer from a known pod: {got:?}"
        );
        assert!(
            near(count(&template), *weight, N),
            "{name}: the experiment template gets {weight} %: {got:?}"
        );
        assert!(
            near(count("canary"), *canary, N),
            "{name}: the canary keeps its setWeight {canary} %: {got:?}"
        );
        assert!(
            near(count("stable"), 100 - canary - weight, N),
            "{name}: the stable gives up the experiment's share: {got:?}"
        );
    }

    // Promoted past the experiment (it has no duration: Argo runs it until
    // then): its weight leaves the route before its pods go, so steady load
    // through each listener sees no failed request.
    let loads: Vec<Load> = listeners.iter().map(|a| load(*a)).collect();
    for (_, name, ..) in FILES {
        let out = serin_at(d, &["promote", name]);
        assert!(out.status.success(), "{out:?}");
    }
    for (_, name, ..) in FILES {
        poll(
            &format!("{name} Healthy on yellow, experiment pods gone"),
            Duration::from_secs(120),
            || {
                get(d, name).filter(|v| {
                    healthy(v)
                        && v["experiments"].as_array().is_some_and(|xs| {
                            xs.iter().all(|x| {
                                x["templates"].as_array().is_some_and(|ts| {
                                    ts.iter()
                                        .all(|t| t["pods"].as_array().is_some_and(Vec::is_empty))
                                })
                            })
                        })
                })
            },
        );
    }
    for ((_, name, ..), lg) in FILES.iter().zip(loads) {
        let (ok, failed) = lg.finish();
        eprintln!("{name}: {ok} ok / {failed} failed during promote");
        assert!(ok > 20, "{name}: too little traffic: {ok}");
        assert_eq!(
            failed, 0,
            "{name}: requests failed while the experiment ended"
        );
    }
    for ((_, name, ..), addr) in FILES.iter().zip(&listeners) {
        let v: Vec<String> = (0..10)
            .filter_map(|_| ask(*addr)?["version"].as_str().map(str::to_string))
            .collect();
        assert_eq!(v, vec!["yellow".to_string(); 10], "{name}");
    }
}

/// An SMI rollout whose experiment runs the stable's template (baseline)
/// and the new one (canary) at 25 % each, judged by Serin's judge.
fn ab(name: &str, tag: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: {name}
spec:
  replicas: 1
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
              path: /ready
              port: 8080
            periodSeconds: 1
  strategy:
    canary:
      canaryService: {name}-canary
      stableService: {name}-stable
      trafficRouting:
        smi:
          rootService: {name}
      steps:
        - experiment:
            templates:
              - name: baseline
                specRef: stable
                weight: 25
              - name: canary
                specRef: canary
                weight: 25
            analyses:
              - name: judge
                templateName: ab-judge
                requiredForCompletion: true
                args:
                  - name: baseline-hash
                    value: "{{{{templates.baseline.podTemplateHash}}}}"
                  - name: canary-hash
                    value: "{{{{templates.canary.podTemplateHash}}}}"
        - pause: {{}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: {name}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}-stable
spec:
  selector:
    app: {name}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}-canary
spec:
  selector:
    app: {name}
"#
    )
}

/// The judge compares the experiment's two templates by their pods' hash:
/// it fails the measurement on always-valid evidence that the canary
/// template's error rate is worse; after 12 looks without it, the run
/// succeeds.
const JUDGE: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: ab-judge
spec:
  args:
    - name: baseline-hash
    - name: canary-hash
  metrics:
    - name: judge-error-rate
      interval: 1s
      count: 12
      failureLimit: 0
      provider:
        builtin:
          metric: judge-error-rate
          revision: "{{args.canary-hash}}"
          baseline: "{{args.baseline-hash}}"
"#;

#[test]
fn the_judge_as_an_experiment_analysis_fails_a_bad_canary_template_and_passes_a_good_one() {
    let dir = demo_dir("argo-experiment-ab", "");
    let d = &dir.0;
    let write = |good: &str, bad: &str| {
        std::fs::write(d.join("manifests/judge.yaml"), JUDGE).expect("manifest");
        std::fs::write(d.join("manifests/good.yaml"), ab("ab-good", good)).expect("manifest");
        std::fs::write(d.join("manifests/bad.yaml"), ab("ab-bad", bad)).expect("manifest");
    };
    write("blue", "blue");
    let _up = serin_up(d, "up.log");
    for name in ["ab-good", "ab-bad"] {
        poll(&format!("{name} Healthy"), Duration::from_secs(120), || {
            get(d, name).filter(healthy)
        });
    }
    let bad_v1 = get(d, "ab-bad").expect("status")["status"]["stable_hash"]
        .as_str()
        .expect("stable")
        .to_string();
    let good_addr = service_listener(d, "ab-good");
    let bad_addr = service_listener(d, "ab-bad");
    // Clients keep calling; 5xx answers are expected from the bad canary
    // template, so only the counts matter here.
    let lg_good = load(good_addr);
    let lg_bad = load(bad_addr);
    // The canary template of ab-bad fails half of its requests.
    write("yellow", "bad-yellow");

    let v = poll(
        "ab-bad aborted by the judge",
        Duration::from_secs(180),
        || get(d, "ab-bad").filter(|v| v["status"]["abort"] == true),
    );
    assert_eq!(v["status"]["phase"], "Degraded", "{v}");
    assert_eq!(v["status"]["current_step_index"], 0, "{v}");
    let message = v["status"]["message"].as_str().unwrap_or("");
    assert!(message.contains("Failed"), "{message}");
    let run = v["analysisRuns"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["phase"] == "Failed"))
        .cloned()
        .unwrap_or_else(|| panic!("a Failed judge run: {v}"));
    // Failed by the judge's verdict on the two templates, not by an error.
    let run_text = run.to_string();
    assert!(
        run_text.contains("judge-error-rate") && run_text.contains(r#""decision":"fail""#),
        "{run_text}"
    );
    poll(
        "ab-bad back on its stable, experiment pods gone",
        Duration::from_secs(60),
        || {
            get(d, "ab-bad").filter(|v| {
                v["status"]["stable_hash"] == bad_v1.as_str()
                    && v["route"]["weights"]
                        .as_array()
                        .is_some_and(|ws| ws.iter().all(|w| w["revision"] == bad_v1.as_str()))
                    && v["experiments"].as_array().is_some_and(|xs| {
                        xs.iter().all(|x| {
                            x["templates"].as_array().is_some_and(|ts| {
                                ts.iter()
                                    .all(|t| t["pods"].as_array().is_some_and(Vec::is_empty))
                            })
                        })
                    })
            })
        },
    );

    // ab-good: 12 looks, no evidence of a worse canary: the experiment
    // succeeds and the rollout moves to its pause.
    let v = poll("ab-good at its pause", Duration::from_secs(180), || {
        get(d, "ab-good").filter(|v| {
            v["status"]["current_step_index"] == 1 && v["awaitingPromotion"] == "pause step"
        })
    });
    assert_eq!(v["experiments"][0]["phase"], "Successful", "{v}");
    assert_eq!(v["status"]["abort"], false, "{v}");
    // The judge saw traffic on both templates (its verdicts carry the
    // request counts of each arm), so the pass is evidence, not silence.
    let runs = v["analysisRuns"].to_string();
    let judged = |arm: &str| {
        let key = format!("\"{arm}\":");
        runs.match_indices(&key)
            .filter_map(|(i, _)| {
                runs[i + key.len()..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    assert!(
        judged("canary") >= 20 && judged("baseline") >= 20,
        "both templates judged on real traffic: {runs}"
    );
    let (ok_g, _) = lg_good.finish();
    let (ok_b, failed_b) = lg_bad.finish();
    eprintln!("ab-good {ok_g} ok; ab-bad {ok_b} ok / {failed_b} failed");
    assert!(ok_g > 50, "too little traffic: {ok_g}");
}
