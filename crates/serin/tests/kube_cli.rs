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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_gets_promotes_and_aborts_a_rollout_on_a_cluster() {
    let Some(kc) = kubeconfig() else { return };
    let client = client(&kc).await;
    let ns = format!("cli-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    // The kubelet stand-in: every ReplicaSet's replicas ready at once.
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let kubelet = tokio::spawn(async move {
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
    });
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
    kubelet.abort();
}
