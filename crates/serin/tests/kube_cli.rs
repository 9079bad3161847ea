//! `serin get|status|promote|abort|retry … --kubeconfig/--context -n` against
//! the test API server (scripts/k8s-test-server, via SERIN_TEST_KUBECONFIG)
//! with `serin controller` running as its own process: the same output as
//! against `serin up`, commands carried out by the controller. The test plays
//! the kubelet (that server has none), as platform_kube's e2e tests do.

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use serin_platform_kube::RolloutObject;
use tokio::time::Instant;

const SERIN: &str = env!("CARGO_BIN_EXE_serin");

fn kubeconfig() -> Option<String> {
    match std::env::var("SERIN_TEST_KUBECONFIG") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "SERIN_TEST_KUBECONFIG is not set under CI=true (scripts/test starts the server)"
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: SERIN_TEST_KUBECONFIG is not set; run `export SERIN_TEST_KUBECONFIG=$(scripts/k8s-test-server)` first"
            );
            None
        }
    }
}

async fn client(path: &str) -> Client {
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Kills the child on drop (a failing test must not leave a controller behind).
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `serin ARGS --kubeconfig KC -n NS` (blocking, off the runtime).
async fn serin(kc: &str, ns: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(SERIN);
    cmd.args(args).args(["--kubeconfig", kc, "-n", ns]);
    tokio::task::spawn_blocking(move || cmd.output().expect("running serin"))
        .await
        .expect("join")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `serin get` until its output contains `want`.
async fn get_until(kc: &str, ns: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = serin(kc, ns, &["get", "web"]).await;
        let t = text(&out);
        if out.status.success() && t.contains(want) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "`serin get web` never showed {want:?}; last:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn template(image: &str) -> serde_json::Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "web", "image": image}]}})
}

/// A new namespace `PREFIX-PID`.
async fn namespace(client: &Client, prefix: &str) -> String {
    let ns = format!("{prefix}-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    ns
}

/// The kubelet stand-in: every ReplicaSet's replicas ready at once.
fn kubelet(client: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = rs_api.list(&ListParams::default()).await {
                for rs in list.items {
                    let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let st = rs.status.clone().unwrap_or_default();
                    if st.ready_replicas.unwrap_or(0) != want || st.replicas != want {
                        let name = rs.metadata.name.clone().unwrap_or_default();
                        let _ = rs_api
                            .patch_status(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"status": {"replicas": want,
                                    "readyReplicas": want, "availableReplicas": want,
                                    "observedGeneration": rs.metadata.generation}})),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_gets_promotes_and_aborts_a_rollout_on_a_cluster() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    let ns = namespace(&client, "cli").await;
    let kubelet = kubelet(&client, &ns);
    // A free loopback port for the controller's /metrics.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let _ctl = Child(
        Command::new(SERIN)
            .args([
                "controller",
                "--kubeconfig",
                &kc,
                "-n",
                &ns,
                "--resync-seconds",
                "5",
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .spawn()
            .expect("serin controller"),
    );
    let rollouts: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("example/web:1"),
                 "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}},
    }))
    .unwrap();
    rollouts
        .create(&PostParams::default(), &r)
        .await
        .expect("rollout");

    // `serin status` exits 0 once Healthy, as locally.
    let out = serin(&kc, &ns, &["status", "web", "--watch", "--timeout", "30s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("web: Healthy"), "{}", text(&out));

    // A refused command says why and fails.
    let out = serin(&kc, &ns, &["promote", "web"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("error: rollout is not progressing"),
        "{}",
        text(&out)
    );

    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template("example/web:2")}})),
        )
        .await
        .expect("new image");
    let shown = get_until(&kc, &ns, "Step:      1/2").await;
    assert!(shown.contains("Name:      web"), "{shown}");
    assert!(shown.contains("Strategy:  canary"), "{shown}");
    assert!(shown.contains("Status:    Paused"), "{shown}");
    assert!(
        shown.contains("1/1 ready"),
        "the canary's ReplicaSet: {shown}"
    );

    let out = serin(&kc, &ns, &["promote", "web"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "promote: web ok\n");
    let out = serin(&kc, &ns, &["status", "web", "--watch", "--timeout", "30s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Abort a third revision: Degraded, and `retry` takes it up again.
    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template("example/web:3")}})),
        )
        .await
        .expect("new image");
    get_until(&kc, &ns, "Step:      1/2").await;
    let out = serin(&kc, &ns, &["abort", "web"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "abort: web ok\n",
        "{}",
        text(&out)
    );
    get_until(&kc, &ns, "Status:    Degraded").await;
    let out = serin(&kc, &ns, &["retry", "web"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "retry: web ok\n",
        "{}",
        text(&out)
    );
    get_until(&kc, &ns, "Status:    Paused").await;

    // Undo mid-canary: revision 2's template goes back into the Rollout
    // and runs on its own ReplicaSet, stable again (as locally).
    let out = serin(&kc, &ns, &["undo", "web"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "undo: web ok\n",
        "{}",
        text(&out)
    );
    let r = rollouts.get("web").await.expect("rollout");
    assert_eq!(
        r.spec.pointer("/template/spec/containers/0/image"),
        Some(&json!("example/web:2"))
    );
    let shown = get_until(&kc, &ns, "Status:    Healthy").await;
    assert!(!shown.contains("Step:      1/2"), "{shown}");
    let out = serin(&kc, &ns, &["undo", "web", "--to-revision", "9"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("error: no revision 9 to undo to"),
        "{}",
        text(&out)
    );
    // The controller's /metrics: the rollout as serin up exports it.
    let want = format!(r#"rollout_phase{{rollout="{ns}/web",phase="Healthy"}} 1"#);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut text = String::new();
        if let Ok(mut sock) = tokio::net::TcpStream::connect(metrics).await {
            let _ = sock
                .write_all(b"GET /metrics HTTP/1.1\r\nhost: m\r\nconnection: close\r\n\r\n")
                .await;
            let _ = sock.read_to_string(&mut text).await;
        }
        if text.contains(&want) {
            break;
        }
        assert!(Instant::now() < deadline, "no {want} in /metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `serin report` from the history the controller keeps on the cluster
    // (the first revision and the promoted canary at least).
    let out = serin(&kc, &ns, &["report", "--since", "1d"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Deployment Success Rate"),
        "{}",
        text(&out)
    );
    let out = serin(&kc, &ns, &["report", "-o", "json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert!(
        report["deployments"].as_u64().is_some_and(|n| n >= 2),
        "{report}"
    );
    let out = serin(&kc, &ns, &["report", "--since", "soon"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("since"), "{}", text(&out));
    kubelet.abort();
}

/// The test's stand-in for the ReplicaSet controller and kubelets at pod
/// level (the test server has neither): it creates the pods a ReplicaSet
/// lacks (ready at once), deletes surplus pods in kube's order for ready
/// pods (lowest `controller.kubernetes.io/pod-deletion-cost`, then the
/// newest) and writes the ReplicaSet's status from its pods.
fn pod_controller(client: Client, ns: &str) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::core::v1::Pod;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let owned_by = |p: &Pod, uid: &str| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == uid)
    };
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (Ok(sets), Ok(all)) = (
                rs_api.list(&ListParams::default()).await,
                pods.list(&ListParams::default()).await,
            ) else {
                continue;
            };
            for rs in sets.items {
                let uid = rs.metadata.uid.clone().unwrap_or_default();
                let name = rs.metadata.name.clone().unwrap_or_default();
                let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as usize;
                let mut mine: Vec<&Pod> = all.items.iter().filter(|p| owned_by(p, &uid)).collect();
                if mine.len() < want {
                    let template =
                        serde_json::to_value(rs.spec.as_ref().and_then(|s| s.template.clone()))
                            .unwrap();
                    for _ in mine.len()..want {
                        n += 1;
                        let pod: Pod = serde_json::from_value(json!({
                            "metadata": {"name": format!("{name}-p{n}"),
                                "labels": template["metadata"]["labels"],
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": name, "uid": uid, "controller": true}]},
                            "spec": template["spec"]}))
                        .unwrap();
                        if pods.create(&PostParams::default(), &pod).await.is_ok() {
                            let _ = pods
                                .patch_status(
                                    &format!("{name}-p{n}"),
                                    &PatchParams::default(),
                                    &Patch::Merge(json!({"status": {"phase": "Running",
                                        "conditions": [{"type": "Ready", "status": "True"}]}})),
                                )
                                .await;
                        }
                    }
                } else if mine.len() > want {
                    let cost = |p: &Pod| -> i64 {
                        p.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0)
                    };
                    mine.sort_by(|a, b| {
                        cost(a).cmp(&cost(b)).then(
                            b.metadata
                                .creation_timestamp
                                .cmp(&a.metadata.creation_timestamp)
                                .then(b.metadata.name.cmp(&a.metadata.name)),
                        )
                    });
                    for p in &mine[..mine.len() - want] {
                        let _ = pods
                            .delete(
                                p.metadata.name.as_deref().unwrap_or_default(),
                                &Default::default(),
                            )
                            .await;
                    }
                }
                let live = pods
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.iter().filter(|p| owned_by(p, &uid)).count())
                    .unwrap_or(0) as i32;
                let generation = rs.metadata.generation.unwrap_or(0);
                let st = rs.status.clone().unwrap_or_default();
                if st.replicas != live
                    || st.ready_replicas != Some(live)
                    || st.observed_generation != Some(generation)
                {
                    let _ = rs_api
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"replicas": live,
                                "readyReplicas": live, "availableReplicas": live,
                                "fullyLabeledReplicas": live,
                                "observedGeneration": generation}})),
                        )
                        .await;
                }
            }
        }
    })
}

/// Every pod of the namespace: name and creation time (seconds).
async fn pods(client: &Client, ns: &str) -> Vec<(String, i64)> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<(String, i64)> = api
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            Some((
                p.metadata.name?,
                p.metadata.creation_timestamp?.0.as_second(),
            ))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_restarts_and_sets_images_on_a_cluster() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    let ns = format!("cli-ops-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    let pod_ctl = pod_controller(client.clone(), &ns);
    let _ctl = Child(
        Command::new(SERIN)
            .args(["controller", "--kubeconfig", &kc, "-n", &ns])
            .args(["--resync-seconds", "5"])
            .spawn()
            .expect("serin controller"),
    );
    let rollouts: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"initContainers": [{"name": "init", "image": "example/init:1"}],
                              "containers": [{"name": "web", "image": "example/web:1"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}},
    }))
    .unwrap();
    rollouts
        .create(&PostParams::default(), &r)
        .await
        .expect("rollout");
    let out = serin(&kc, &ns, &["status", "web", "--watch", "--timeout", "30s"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    let old = loop {
        let p = pods(&client, &ns).await;
        if p.len() == 2 {
            break p;
        }
        assert!(Instant::now() < deadline, "never two pods: {p:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Bad input: a clear error, nothing written.
    let version = |r: RolloutObject| r.metadata.resource_version;
    let before = version(rollouts.get("web").await.expect("rollout"));
    for (args, want) in [
        (&["restart", "web", "--in", "soon"][..], "error: in:"),
        (&["restart", "web", "--at", "tomorrow"][..], "error: at:"),
        (&["restart", "nope"][..], "error: no rollout \"nope\""),
        (
            &["set", "image", "web", "nope=example/x:1"][..],
            "error: rollout web has no container \"nope\" (containers: init, web)",
        ),
        (
            &["set", "image", "nope", "web=example/x:1"][..],
            "error: no rollout \"nope\"",
        ),
    ] {
        let out = serin(&kc, &ns, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(want), "{args:?}: {}", text(&out));
    }
    assert_eq!(
        version(rollouts.get("web").await.expect("rollout")),
        before,
        "a refused command changed the rollout"
    );

    // `restart --in`: scheduled, shown as such, and carried out at that time.
    let out = serin(&kc, &ns, &["restart", "web", "--in", "3s"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let at = stdout
        .strip_prefix("restart: web at ")
        .and_then(|s| s.strip_suffix(" (each pod replaced once its replacement is available)\n"))
        .unwrap_or_else(|| panic!("not as locally: {stdout:?}"))
        .to_string();
    let shown = get_until(&kc, &ns, "Restart:   scheduled at ").await;
    assert!(
        shown.contains(&format!("Restart:   scheduled at {at}")),
        "{shown}"
    );
    assert_eq!(
        pods(&client, &ns).await,
        old,
        "nothing replaced before {at}"
    );
    let shown = get_until(&kc, &ns, &format!("Restarted: {at}")).await;
    assert!(shown.contains("Status:    Healthy"), "{shown}");
    let now = pods(&client, &ns).await;
    let at_secs = (serin_clock::parse_rfc3339(&at).expect("an RFC 3339 time") / 1000) as i64;
    assert_eq!(now.len(), 2, "{now:?}");
    for (name, created) in &now {
        assert!(
            !old.iter().any(|(o, _)| o == name) && *created >= at_secs,
            "pod {name} (created {created}) is not a replacement made from {at}: {now:?} (old {old:?})"
        );
    }

    // `set image`: the container's image in the Rollout's template (as
    // `kubectl argo rollouts set image`), a new revision like any change.
    let out = serin(&kc, &ns, &["set", "image", "web", "web=example/web:2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("web: web → example/web:2 (rollout web in namespace {ns})\n")
    );
    let r = rollouts.get("web").await.expect("rollout");
    assert_eq!(
        r.spec.pointer("/template/spec/containers/0/image"),
        Some(&json!("example/web:2"))
    );
    assert_eq!(
        r.spec.pointer("/template/spec/initContainers/0/image"),
        Some(&json!("example/init:1")),
        "only the named container changes"
    );
    get_until(&kc, &ns, "Step:      1/2").await;
    let pod_hash = |r: &RolloutObject| {
        r.status
            .as_ref()
            .and_then(|s| s.get("currentPodHash"))
            .and_then(|h| h.as_str())
            .unwrap_or("")
            .to_string()
    };
    let before = pod_hash(&rollouts.get("web").await.expect("rollout"));
    // Init containers too, as Argo's plugin.
    let out = serin(&kc, &ns, &["set", "image", "web", "init=example/init:2"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let r = rollouts.get("web").await.expect("rollout");
    assert_eq!(
        r.spec.pointer("/template/spec/initContainers/0/image"),
        Some(&json!("example/init:2"))
    );
    // Promote once the controller runs the new revision: a command that
    // arrives before it has seen the template change is carried out on the
    // revision before (the next one then starts over at step 1, as in
    // Argo, where a new revision resets promoteFull). CI once sent it
    // within that window and the rollout stayed paused.
    // `serin get` shows revision 3 as soon as the template changes (it
    // numbers the spec), so wait for the controller's own status instead:
    // its current pod hash is the new revision's once it has acted on it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = rollouts.get("web").await.expect("rollout");
        let now = pod_hash(&r);
        if !now.is_empty() && now != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the controller never took revision 3: {:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    get_until(&kc, &ns, "revision:3").await;
    let out = serin(&kc, &ns, &["promote", "web", "--full"]).await;
    assert!(out.status.success(), "{}", text(&out));
    get_until(&kc, &ns, "Status:    Healthy").await;
    // The stable ReplicaSet is the one with both new images. `serin get`
    // reads Serin's own status, written a moment before the Argo-shaped
    // `/status` of the same reconcile: wait for the latter too.
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = rollouts.get("web").await.expect("rollout");
        let phase = r.status.as_ref().and_then(|s| s.get("phase")).cloned();
        if phase == Some(json!("Healthy")) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "/status never Healthy: {:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stable = r
        .status
        .as_ref()
        .and_then(|s| s.get("stableRS"))
        .and_then(|s| s.as_str())
        .expect("status.stableRS")
        .to_string();
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), &ns)
        .get(&format!("web-{stable}"))
        .await
        .expect("the stable ReplicaSet");
    let pod_spec = rs
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.spec)
        .expect("a pod template");
    let all: Vec<String> = Api::<ReplicaSet>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .map(|rs| {
                    format!(
                        "{:?} {:?} {:?}",
                        rs.metadata.name,
                        rs.metadata.annotations,
                        rs.spec.as_ref().and_then(|s| s.replicas)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        pod_spec.init_containers.unwrap_or_default()[0]
            .image
            .as_deref(),
        Some("example/init:2"),
        "rollout {:?}\nannotations {:?}\nreplica sets {all:#?}",
        r.status,
        r.metadata.annotations
    );
    assert_eq!(
        pod_spec.containers[0].image.as_deref(),
        Some("example/web:2")
    );
    pod_ctl.abort();
}

/// A loopback metric endpoint answering `{"ok": 1}`; its URL.
async fn ok_endpoint() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = "{\"ok\": 1}";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    url
}

/// `serin controller` for `ns` as its own process, its log appended to `log`.
fn controller_process(kc: &str, ns: &str, log: &std::path::Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("controller log");
    Child(
        Command::new(SERIN)
            .args([
                "controller",
                "--kubeconfig",
                kc,
                "-n",
                ns,
                "--resync-seconds",
                "5",
            ])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("serin controller"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_controller_was_killed_is_measured_again_by_the_next_one() {
    // A controller killed (or a leader lost) while a step's analysis is
    // measuring: the next controller measures that AnalysisRun again from
    // its start, and the canary goes on — it is not aborted.
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    let ns = namespace(&client, "cli-resume").await;
    let kubelet = kubelet(&client, &ns);
    let ar = |kind: &str, plural: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
            plural,
        )
    };
    let templates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ar("AnalysisTemplate", "analysistemplates"),
    );
    let mut t = DynamicObject::new("ok-check", &ar("AnalysisTemplate", "analysistemplates"));
    t.data = json!({"spec": {"metrics": [{"name": "ok", "count": 6, "interval": "1s",
        "successCondition": "result == 1",
        "provider": {"web": {"url": ok_endpoint().await, "jsonPath": "{$.ok}"}}}]}});
    templates
        .create(&PostParams::default(), &t)
        .await
        .expect("template");
    let log = std::env::temp_dir().join(format!("serin-resume-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let first = controller_process(&kc, &ns, &log);
    let rollouts: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("example/web:1"),
                 "strategy": {"canary": {"steps": [{"setWeight": 50},
                     {"analysis": {"templates": [{"templateName": "ok-check"}]}},
                     {"pause": {}}]}}},
    }))
    .unwrap();
    rollouts
        .create(&PostParams::default(), &r)
        .await
        .expect("rollout");
    get_until(&kc, &ns, "Healthy").await;
    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template("example/web:2")}})),
        )
        .await
        .expect("new image");
    let runs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ar("AnalysisRun", "analysisruns"));
    let measured = |r: &DynamicObject| {
        r.data
            .pointer("/status/metricResults/0/measurements")
            .and_then(|m| m.as_array())
            .map_or(0, Vec::len)
    };
    // Measuring: two of its six measurements taken. Kill the controller.
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = loop {
        let list = runs.list(&ListParams::default()).await.expect("runs");
        if let Some(r) = list.items.iter().find(|r| {
            r.data.pointer("/status/phase").and_then(|p| p.as_str()) == Some("Running")
                && measured(r) >= 2
        }) {
            break r.metadata.name.clone().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no run measuring: {:?}",
            list.items
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(first);
    let _second = controller_process(&kc, &ns, &log);
    // The run passes after six measurements taken by the second controller
    // (measured again from its start), and the canary goes on to its pause.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = runs.get(&name).await.expect("the run");
        let r = rollouts.get("web").await.expect("rollout");
        let st = r.status.clone().unwrap_or_default();
        let phase = run
            .data
            .pointer("/status/phase")
            .and_then(|p| p.as_str())
            .unwrap_or("");
        assert_ne!(phase, "Error", "the run was given up: {:?}", run.data);
        assert_ne!(st["phase"], "Degraded", "the canary was aborted: {st}");
        if phase == "Successful" && st["phase"] == "Paused" && st["currentStepIndex"] == 2 {
            assert_eq!(measured(&run), 6, "{:?}", run.data);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run {phase}, rollout {st}; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("measuring again"), "{text}");
    kubelet.abort();
}
