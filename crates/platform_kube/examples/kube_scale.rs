//! Scale bench for `serin controller` (bench/k8s-scale.sh runs it): creates N
//! Rollouts in a test API server, starts the controller as a child process
//! (this same binary, `controller` mode, so its RSS is the controller's
//! alone), plays the kubelet for the ReplicaSets the controller creates, and
//! reports
//!
//! - the controller's RSS (VmRSS after the first full reconcile, at rest,
//!   after the burst, and its peak VmHWM),
//! - time to first full reconcile: controller start → every Rollout Healthy
//!   with its ReplicaSet,
//! - reaction latency at rest: a new image on one Rollout → the controller
//!   has written a status for that generation (`observedGeneration`), for
//!   SAMPLES Rollouts one after another,
//! - the same during a burst of BURST simultaneous new images.
//!
//! Usage: `kube_scale --kubeconfig FILE [--rollouts N] [--samples S] [--burst B]`
//! (`kube_scale controller --kubeconfig FILE -n NS` is the child).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use serin_platform_kube::{ControllerOptions, RolloutObject, connect, run_controller};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: usize) -> Res<usize> {
    match arg(args, name) {
        Some(v) => Ok(v.parse().map_err(|e| format!("{name} {v}: {e}"))?),
        None => Ok(default),
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("controller") {
        return rt.block_on(child(&args));
    }
    rt.block_on(bench(&args))
}

/// The controller under test, alone in its process.
async fn child(args: &[String]) -> Res<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let kc = arg(args, "--kubeconfig").ok_or("--kubeconfig")?;
    let client = connect(Some(std::path::Path::new(&kc)), None).await?;
    let opts = ControllerOptions {
        namespace: arg(args, "-n"),
        resync: Duration::from_secs(num(
            args,
            "--resync",
            serin_platform_kube::DEFAULT_RESYNC_SECS as usize,
        )? as u64),
        instance: "scale-bench".into(),
        leader_election: None,
        // As `serin controller` runs: metrics, and the deployment history
        // kept in the namespace's ConfigMap (one more write per deploy).
        observer: std::sync::Arc::new(
            serin_platform_kube::Observer::new(None)?.with_cluster_history(),
        ),
        flag_server: None,
    };
    run_controller(client, opts).await?;
    Ok(())
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn rollout(i: usize, image: &str) -> Value {
    let app = format!("app{i}");
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": format!("r{i}")},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                 "template": template(&app, image),
                 "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}},
    })
}

fn template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
           "spec": {"containers": [{"name": "app", "image": image}]}})
}

/// The kubelet stand-in: every ReplicaSet's replicas become ready at once
/// (driven by a watch, so it keeps up with thousands).
fn kubelet(client: Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let api: Api<ReplicaSet> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let events = watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects();
        events
            .for_each_concurrent(16, |rs| {
                let api = api.clone();
                async move {
                    let Ok(rs) = rs else { return };
                    let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let st = rs.status.clone().unwrap_or_default();
                    let generation = rs.metadata.generation.unwrap_or(0);
                    if st.replicas == want
                        && st.ready_replicas.unwrap_or(0) == want
                        && st.available_replicas.unwrap_or(0) == want
                        && st.observed_generation == Some(generation)
                    {
                        return;
                    }
                    let _ = api
                        .patch_status(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"replicas": want,
                                "readyReplicas": want, "availableReplicas": want,
                                "fullyLabeledReplicas": want, "observedGeneration": generation}})),
                        )
                        .await;
                }
            })
            .await;
    })
}

/// Rollouts seen Healthy, and the observedGeneration each status reports,
/// from one watch (so the bench itself does not list 10,000 objects a second).
#[derive(Default)]
struct Seen {
    healthy: HashMap<String, bool>,
    observed: HashMap<String, i64>,
    /// Name → (generation awaited, when the change was made, latency once seen).
    waits: HashMap<String, (i64, Instant, Option<Duration>)>,
}

fn observer(client: Client, ns: &str, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    let api: Api<RolloutObject> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(r) = ev else { continue };
            let st = r.status.clone().unwrap_or(Value::Null);
            let healthy = st["phase"] == "Healthy" && st["stableRS"].is_string();
            let og = st["observedGeneration"]
                .as_i64()
                .or_else(|| {
                    st["observedGeneration"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                })
                .unwrap_or(0);
            let name = r.name_any();
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            s.healthy.insert(name.clone(), healthy);
            s.observed.insert(name.clone(), og);
            if let Some((want, at, done)) = s.waits.get_mut(&name)
                && done.is_none()
                && og >= *want
            {
                *done = Some(at.elapsed());
            }
        }
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Gives `names` a new image at once, and waits until the controller has
/// reacted to each; returns the sorted latencies.
async fn change(
    client: &Client,
    ns: &str,
    seen: &Arc<Mutex<Seen>>,
    idx: &[usize],
    image: &str,
) -> Res<Vec<Duration>> {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let patches = idx.iter().map(|&i| {
        let api = api.clone();
        let seen = seen.clone();
        async move {
            let name = format!("r{i}");
            let at = Instant::now();
            let body = json!({"spec": {"template": template(&format!("app{i}"), image)}});
            let r = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(body))
                .await?;
            let generation = r.metadata.generation.unwrap_or(0);
            let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
            let already = s.observed.get(&name).copied().unwrap_or(0) >= generation;
            s.waits
                .insert(name, (generation, at, already.then(|| at.elapsed())));
            Ok::<_, kube::Error>(())
        }
    });
    futures::future::try_join_all(patches).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = Instant::now();
    loop {
        {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            let names: Vec<String> = idx.iter().map(|i| format!("r{i}")).collect();
            let done: Vec<Duration> = names
                .iter()
                .filter_map(|n| s.waits.get(n).and_then(|w| w.2))
                .collect();
            if done.len() == names.len() {
                let mut d = done;
                d.sort();
                return Ok(d);
            }
            if last.elapsed() > Duration::from_secs(10) {
                let waiting: Vec<&String> = names
                    .iter()
                    .filter(|n| s.waits.get(*n).is_none_or(|w| w.2.is_none()))
                    .collect();
                println!(
                    "  {} of {} reacted to; waiting: {:?}",
                    done.len(),
                    names.len(),
                    &waiting[..waiting.len().min(8)]
                );
                last = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(
                    format!("only {} of {} reacted to in 600 s", done.len(), names.len()).into(),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn bench(args: &[String]) -> Res<()> {
    let kc = arg(args, "--kubeconfig").ok_or("--kubeconfig FILE is required")?;
    let n = num(args, "--rollouts", 1000)?;
    let samples = num(args, "--samples", 50)?;
    let burst = num(args, "--burst", 100)?.min(n);
    let client = connect(Some(std::path::Path::new(&kc)), None).await?;
    let ns = format!("scale-{}", std::process::id());
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
    )
    .await?;
    println!("namespace {ns}: creating {n} Rollouts");
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let r: RolloutObject = serde_json::from_value(rollout(i, "example/app:1"))?;
                api.create(&PostParams::default(), &r).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    println!("created in {:.1} s", t.elapsed().as_secs_f64());

    let seen = Arc::new(Mutex::new(Seen::default()));
    let _obs = observer(client.clone(), &ns, seen.clone());
    let _kubelet = kubelet(client.clone(), &ns);
    let exe = std::env::current_exe()?;
    let resync = num(
        args,
        "--resync",
        serin_platform_kube::DEFAULT_RESYNC_SECS as usize,
    )?;
    println!("controller resync: {resync} s");
    let mut ctl = tokio::process::Command::new(exe)
        .args([
            "controller",
            "--kubeconfig",
            &kc,
            "-n",
            &ns,
            "--resync",
            &resync.to_string(),
        ])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .kill_on_drop(true)
        .spawn()?;
    let pid = ctl.id().ok_or("controller exited at once")?;
    let started = Instant::now();
    let mut last = Instant::now();
    loop {
        let healthy = {
            let s = seen.lock().unwrap_or_else(|p| p.into_inner());
            s.healthy.values().filter(|h| **h).count()
        };
        if healthy >= n {
            break;
        }
        if let Ok(Some(st)) = ctl.try_wait() {
            return Err(format!("the controller exited: {st}").into());
        }
        if last.elapsed() > Duration::from_secs(10) {
            println!(
                "  {:>5.0} s: {healthy}/{n} Healthy, controller RSS {} MB",
                started.elapsed().as_secs_f64(),
                rss_kb(pid, "VmRSS:") / 1024
            );
            last = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(format!("only {healthy}/{n} Healthy after an hour").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_full = started.elapsed();
    let rss_first = rss_kb(pid, "VmRSS:");
    let rs_count = Api::<ReplicaSet>::namespaced(client.clone(), &ns)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .len();
    println!(
        "first full reconcile: {:.1} s ({n} Healthy, {rs_count} ReplicaSets); RSS {} MB",
        first_full.as_secs_f64(),
        rss_first / 1024
    );

    // At rest: one change at a time, spread over the Rollouts.
    let mut rest = Vec::new();
    for k in 0..samples {
        let i = (k * n / samples.max(1)).min(n - 1);
        rest.extend(change(&client, &ns, &seen, &[i], "example/app:2").await?);
    }
    rest.sort();
    let rss_rest = rss_kb(pid, "VmRSS:");
    println!(
        "at rest ({samples} changes, one at a time): p50 {}  p99 {}  max {}; RSS {} MB",
        ms(pct(&rest, 0.5)),
        ms(pct(&rest, 0.99)),
        ms(rest.last().copied().unwrap_or_default()),
        rss_rest / 1024
    );

    // Burst: BURST Rollouts get a new image at the same moment (others than
    // the at-rest samples, which are paused mid-canary now).
    let idx: Vec<usize> = (0..burst).map(|k| (k * n / burst + 1).min(n - 1)).collect();
    let b = change(&client, &ns, &seen, &idx, "example/app:3").await?;
    let rss_burst = rss_kb(pid, "VmRSS:");
    println!(
        "burst of {burst} simultaneous deploys: p50 {}  p99 {}  max {}; RSS {} MB",
        ms(pct(&b, 0.5)),
        ms(pct(&b, 0.99)),
        ms(b.last().copied().unwrap_or_default()),
        rss_burst / 1024
    );
    println!(
        "controller peak RSS (VmHWM): {} MB",
        rss_kb(pid, "VmHWM:") / 1024
    );
    let _ = ctl.kill().await;
    if std::env::var_os("KEEP").is_none() {
        let _ = nss.delete(&ns, &Default::default()).await;
    }
    Ok(())
}
