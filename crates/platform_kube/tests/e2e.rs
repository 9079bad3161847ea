//! `serin controller` end to end against the real test API server
//! (`scripts/k8s-test-server`: upstream apiserver machinery on etcd with
//! Argo Rollouts', Istio's and Gateway API's real CRDs). That server runs no
//! controllers and no kubelet, so these tests play the ReplicaSet
//! controller/kubelet themselves ([`kubelet`]): it turns a ReplicaSet's
//! replicas into ready/available status, and can hold a revision unready.
//!
//! The server comes from `SERIN_TEST_KUBECONFIG` (scripts/test sets it).
//! Without it the tests skip loudly, or fail when `CI=true`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::{Value, json};
use serin_platform_kube::{
    ANN_COMMAND, ControllerOptions, LABEL_HASH, LeaderElection, ReplicaSetCache, RolloutAdapters,
    RolloutObject, run_controller, target_of,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the test server, or `None` (skip) when there is none.
async fn client() -> Option<Client> {
    let Some(path) = std::env::var_os("SERIN_TEST_KUBECONFIG") else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "SERIN_TEST_KUBECONFIG is not set under CI=true: scripts/test starts the test API server (scripts/k8s-test-server)"
            );
        }
        eprintln!(
            "SKIPPED: SERIN_TEST_KUBECONFIG is not set; run `export SERIN_TEST_KUBECONFIG=$(scripts/k8s-test-server)` first"
        );
        return None;
    };
    let kc = Kubeconfig::read_from(&path).expect("reading SERIN_TEST_KUBECONFIG");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Some(Client::try_from(config).expect("client"))
}

fn vs_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

/// Polls `check` until it returns `Ok`, failing with its last `Err` (the
/// state seen) after the deadline.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) if Instant::now() > deadline => {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; last seen: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The test's stand-in for the ReplicaSet controller and kubelets: every
/// ReplicaSet's replicas become ready and available at once, except
/// revisions listed in `unready` (pods that never pass readiness); `*` in
/// it holds every revision but those listed as `!hash`.
fn kubelet(client: Client, ns: &str, unready: Arc<Mutex<HashSet<String>>>) -> JoinHandle<()> {
    let api: Api<ReplicaSet> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for rs in list.items {
                    let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    let hash = rs
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_HASH))
                        .cloned()
                        .unwrap_or_default();
                    let held = {
                        let u = unready.lock().unwrap();
                        u.contains(&hash) || (u.contains("*") && !u.contains(&format!("!{hash}")))
                    };
                    let ready = if held { 0 } else { want };
                    let st = rs.status.clone().unwrap_or_default();
                    let generation = rs.metadata.generation.unwrap_or(0);
                    if st.replicas != want
                        || st.ready_replicas.unwrap_or(0) != ready
                        || st.available_replicas.unwrap_or(0) != ready
                        || st.observed_generation != Some(generation)
                    {
                        let name = rs.metadata.name.clone().unwrap_or_default();
                        let _ = api
                            .patch_status(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(json!({"status": {"replicas": want,
                                    "readyReplicas": ready, "availableReplicas": ready,
                                    "fullyLabeledReplicas": want,
                                    "observedGeneration": generation}})),
                            )
                            .await;
                    }
                }
            }
            // The stand-in's own cadence (a real ReplicaSet controller
            // reacts to watch events); the tests poll with deadlines.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn controller(client: &Client, ns: &str) -> JoinHandle<()> {
    controller_with(client, ns, Duration::from_secs(5), Default::default())
}

/// A controller for `ns` with this resync interval and observer (metrics,
/// notifications, history).
fn controller_with(
    client: &Client,
    ns: &str,
    resync: Duration,
    observer: Arc<serin_platform_kube::Observer>,
) -> JoinHandle<()> {
    let client = client.clone();
    let opts = ControllerOptions {
        namespace: Some(ns.to_string()),
        resync,
        instance: format!("test-{ns}"),
        leader_election: None,
        observer,
        flag_server: None,
    };
    tokio::spawn(async move {
        if let Err(err) = run_controller(client, opts).await {
            panic!("controller: {err}");
        }
    })
}

async fn namespace(client: &Client, name: &str) -> String {
    let ns = format!("{name}-{}", std::process::id());
    let api: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("creating namespace");
    ns
}

async fn service(client: &Client, ns: &str, name: &str) {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &svc)
        .await
        .expect("creating service");
}

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "web", "image": image,
                                    "ports": [{"containerPort": 8080}]}]}})
}

async fn create_rollout(client: &Client, ns: &str, name: &str, strategy: Value) {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("example/web:1"), "strategy": strategy},
    }))
    .unwrap();
    api.create(&PostParams::default(), &r)
        .await
        .expect("creating rollout");
}

async fn set_image(client: &Client, ns: &str, name: &str, image: &str) {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": template(image)}})),
    )
    .await
    .expect("updating the image");
}

async fn command(client: &Client, ns: &str, name: &str, cmd: &str) {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {ANN_COMMAND: cmd}}})),
    )
    .await
    .expect("writing the command annotation");
}

async fn status(client: &Client, ns: &str, name: &str) -> Result<Value, String> {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let r = api.get(name).await.map_err(|e| e.to_string())?;
    Ok(r.status.unwrap_or(Value::Null))
}

async fn selector(client: &Client, ns: &str, svc: &str) -> Result<Option<String>, String> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let s = api.get(svc).await.map_err(|e| e.to_string())?;
    Ok(s.spec
        .and_then(|s| s.selector)
        .and_then(|s| s.get(LABEL_HASH).cloned()))
}

/// (stable, canary) weights of the VirtualService's `primary` route.
async fn weights(client: &Client, ns: &str) -> Result<(i64, i64), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vs_resource());
    let vs = api.get("web").await.map_err(|e| e.to_string())?;
    let http = vs
        .data
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let primary = http
        .iter()
        .find(|h| h["name"] == "primary")
        .ok_or("no primary route")?;
    let w = |host: &str| {
        primary["route"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["destination"]["host"] == host)
            .and_then(|d| d["weight"].as_i64())
            .unwrap_or(-1)
    };
    Ok((w("web-stable"), w("web-canary")))
}

async fn replicas(client: &Client, ns: &str, rs: &str) -> Result<i32, String> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let r = api.get(rs).await.map_err(|e| e.to_string())?;
    Ok(r.spec.and_then(|s| s.replicas).unwrap_or(0))
}

async fn istio_setup(client: &Client, ns: &str) {
    service(client, ns, "web-stable").await;
    service(client, ns, "web-canary").await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vs_resource());
    let mut vs = DynamicObject::new("web", &vs_resource()).within(ns);
    vs.data = json!({"spec": {"hosts": ["web"], "gateways": ["mesh"], "http": [
        {"name": "primary", "timeout": "5s", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0}]}]}});
    api.create(&PostParams::default(), &vs)
        .await
        .expect("creating the VirtualService");
}

fn canary_strategy() -> Value {
    json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}},
                           "managedRoutes": [{"name": "beta"}]},
        "steps": [{"setWeight": 20},
                  {"setHeaderRoute": {"name": "beta", "match": [
                      {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
                  {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}})
}

/// Names of the VirtualService's HTTP routes, in order.
async fn route_names(client: &Client, ns: &str) -> Result<Vec<String>, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vs_resource());
    let vs = api.get("web").await.map_err(|e| e.to_string())?;
    Ok(vs
        .data
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|h| h["name"].as_str().map(str::to_string))
        .collect())
}

/// The status field `key` as a string (numbers printed).
fn field(s: &Value, ptr: &str) -> String {
    match s.pointer(ptr) {
        Some(Value::String(x)) => x.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

async fn healthy(client: &Client, ns: &str, name: &str) -> String {
    eventually("the first revision to become Healthy", || async {
        let s = status(client, ns, name).await?;
        if field(&s, "/phase") == "Healthy" && !field(&s, "/stableRS").is_empty() {
            Ok(field(&s, "/stableRS"))
        } else {
            Err(s.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_istio_follows_the_steps_and_resumes_after_a_controller_restart() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "canary").await;
    istio_setup(&client, &ns).await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(&client, &ns, "web", canary_strategy()).await;
    let stable = healthy(&client, &ns, "web").await;
    assert_eq!(
        selector(&client, &ns, "web-stable")
            .await
            .unwrap()
            .as_deref(),
        Some(stable.as_str())
    );

    set_image(&client, &ns, "web", "example/web:2").await;
    let canary = eventually(
        "20% to the canary and the header route, paused at step 2",
        || async {
            let s = status(&client, &ns, "web").await?;
            let w = weights(&client, &ns).await?;
            let names = route_names(&client, &ns).await?;
            if w == (80, 20)
                && names == ["beta", "primary"]
                && field(&s, "/currentStepIndex") == "2"
                && field(&s, "/phase") == "Paused"
            {
                Ok(field(&s, "/currentPodHash"))
            } else {
                Err(format!("weights {w:?}, routes {names:?}, status {s}"))
            }
        },
    )
    .await;
    assert_ne!(canary, stable);
    let vsapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &vs_resource());
    let beta = vsapi.get("web").await.unwrap().data["spec"]["http"][0].clone();
    assert_eq!(
        beta["match"][0]["headers"]["x-beta"]["exact"], "1",
        "{beta}"
    );
    assert_eq!(
        beta["route"][0]["destination"]["host"], "web-canary",
        "{beta}"
    );
    // Argo's status shape, as stored by the API server under Argo's CRD.
    let s = status(&client, &ns, "web").await.unwrap();
    assert_eq!(s["canary"]["weights"]["canary"]["weight"], 20, "{s}");
    assert_eq!(
        s["canary"]["weights"]["canary"]["podTemplateHash"],
        canary.as_str()
    );
    assert_eq!(s["stableRS"], stable.as_str());
    assert_eq!(s["pauseConditions"][0]["reason"], "CanaryPauseStep");
    assert!(s["observedGeneration"].is_string(), "{s}");
    assert_eq!(
        selector(&client, &ns, "web-canary")
            .await
            .unwrap()
            .as_deref(),
        Some(canary.as_str())
    );
    assert_eq!(
        selector(&client, &ns, "web-stable")
            .await
            .unwrap()
            .as_deref(),
        Some(stable.as_str())
    );
    // Other fields of the VirtualService and its route are untouched.
    let vs = vsapi.get("web").await.unwrap();
    assert_eq!(vs.data["spec"]["gateways"], json!(["mesh"]));
    assert_eq!(vs.data["spec"]["http"][1]["timeout"], "5s");

    // Kill the controller mid-canary; meanwhile someone resets the weights.
    ctl.abort();
    let _ = ctl.await;
    let mut reset = vs.clone();
    reset.metadata.managed_fields = None;
    reset.data["spec"]["http"][1]["route"][0]["weight"] = json!(100);
    reset.data["spec"]["http"][1]["route"][1]["weight"] = json!(0);
    vsapi
        .replace("web", &PostParams::default(), &reset)
        .await
        .expect("resetting weights");
    let ctl = controller(&client, &ns);
    eventually(
        "the restarted controller to put 80/20 back, still at step 2",
        || async {
            let s = status(&client, &ns, "web").await?;
            let w = weights(&client, &ns).await?;
            if w == (80, 20)
                && field(&s, "/currentStepIndex") == "2"
                && field(&s, "/phase") == "Paused"
            {
                Ok(())
            } else {
                Err(format!("weights {w:?}, status {s}"))
            }
        },
    )
    .await;

    command(&client, &ns, "web", "promote").await;
    eventually("50% at step 4", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        if w == (50, 50) && field(&s, "/currentStepIndex") == "4" {
            Ok(())
        } else {
            Err(format!("weights {w:?}, status {s}"))
        }
    })
    .await;
    command(&client, &ns, "web", "promote").await;
    eventually(
        "the canary to become stable, the old ReplicaSet scaled to 0",
        || async {
            let s = status(&client, &ns, "web").await?;
            let w = weights(&client, &ns).await?;
            let old = replicas(&client, &ns, &format!("web-{stable}")).await?;
            if field(&s, "/phase") == "Healthy"
                && field(&s, "/stableRS") == canary
                && w == (100, 0)
                && old == 0
            {
                Ok(())
            } else {
                Err(format!("weights {w:?}, old replicas {old}, status {s}"))
            }
        },
    )
    .await;
    assert_eq!(
        selector(&client, &ns, "web-stable")
            .await
            .unwrap()
            .as_deref(),
        Some(canary.as_str())
    );
    assert_eq!(
        route_names(&client, &ns).await.unwrap(),
        ["primary"],
        "the header route goes once the canary is stable"
    );
    ctl.abort();
}

fn dr_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "DestinationRule"),
        "destinationrules",
    )
}

/// The `rollouts-pod-template-hash` label of each of the DestinationRule's
/// (stable, canary) subsets.
async fn subset_hashes(client: &Client, ns: &str) -> Result<(String, String), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &dr_resource());
    let dr = api.get("web").await.map_err(|e| e.to_string())?;
    let label = |name: &str| {
        dr.data["spec"]["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .and_then(|s| s["labels"][LABEL_HASH].as_str())
            .unwrap_or("")
            .to_string()
    };
    Ok((label("stable"), label("canary")))
}

/// Subset-level splitting (no Services: the DestinationRule's subsets
/// select the revisions) and a mirror route, as Argo's Istio reconciler
/// does: the subsets' hash labels follow the revisions, weights go on the
/// subset destinations, the mirror route keeps the split and copies to the
/// canary subset, and everything managed goes once the canary is stable.
/// Creates the DestinationRule `web` and the VirtualService `web` of `ns`
/// with these specs (Istio subset-level routing, no Services).
async fn subsets_setup(client: &Client, ns: &str, dr_spec: Value, vs_spec: Value) {
    for (res, spec) in [(dr_resource(), dr_spec), (vs_resource(), vs_spec)] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &res);
        let mut obj = DynamicObject::new("web", &res).within(ns);
        obj.data = json!({ "spec": spec });
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", res.kind));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_istio_subsets_labels_the_destination_rule_and_mirrors_to_the_canary() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "subsets").await;
    subsets_setup(
        &client,
        &ns,
        json!({"host": "web", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "subsets": [{"name": "stable", "labels": {"app": "web"}},
                        {"name": "canary", "labels": {"app": "web"}},
                        {"name": "legacy", "labels": {"version": "0"}}]}),
        json!({"hosts": ["web"], "http": [
            {"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable", "port": {"number": 80}}, "weight": 100},
                {"destination": {"host": "web", "subset": "canary", "port": {"number": 80}}, "weight": 0}]}]}),
    )
    .await;
    let drapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &dr_resource());
    let vsapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &vs_resource());
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
            "scaleDownDelaySeconds": 0,
            "trafficRouting": {
                "istio": {"virtualService": {"name": "web", "routes": ["primary"]},
                          "destinationRule": {"name": "web", "canarySubsetName": "canary",
                                              "stableSubsetName": "stable"}},
                "managedRoutes": [{"name": "shadow"}]},
            "steps": [{"setWeight": 20},
                      {"setMirrorRoute": {"name": "shadow", "percentage": 40, "match": [
                          {"method": {"exact": "GET"}, "path": {"prefix": "/api"}}]}},
                      {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    let stable = healthy(&client, &ns, "web").await;
    eventually("the stable subset to select the first revision", || async {
        let (s, _) = subset_hashes(&client, &ns).await?;
        if s == stable {
            Ok(())
        } else {
            Err(format!("stable subset label {s:?}"))
        }
    })
    .await;

    set_image(&client, &ns, "web", "example/web:2").await;
    let split = |http: &Value, name: &str| -> Vec<(String, i64)> {
        http.as_array()
            .into_iter()
            .flatten()
            .find(|h| h["name"] == name)
            .and_then(|h| h["route"].as_array())
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["destination"]["subset"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    d["weight"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let want = |s: i64, c: i64| vec![("stable".to_string(), s), ("canary".to_string(), c)];
    let canary = eventually(
        "20% to the canary subset, the mirror route first, paused at step 2",
        || async {
            let s = status(&client, &ns, "web").await?;
            let http =
                vsapi.get("web").await.map_err(|e| e.to_string())?.data["spec"]["http"].clone();
            let labels = subset_hashes(&client, &ns).await?;
            let names = route_names(&client, &ns).await?;
            if split(&http, "primary") == want(80, 20)
                && names == ["shadow", "primary"]
                && field(&s, "/phase") == "Paused"
                && field(&s, "/currentStepIndex") == "2"
                && labels == (stable.clone(), field(&s, "/currentPodHash"))
            {
                Ok((field(&s, "/currentPodHash"), http))
            } else {
                Err(format!(
                    "routes {names:?}, subsets {labels:?}, http {http}, status {s}"
                ))
            }
        },
    )
    .await;
    let (canary, http) = canary;
    assert_ne!(canary, stable);
    let shadow = &http[0];
    assert_eq!(
        shadow["match"],
        json!([{"method": {"exact": "GET"}, "uri": {"prefix": "/api"}}]),
        "{shadow}"
    );
    assert_eq!(split(&http, "shadow"), want(80, 20), "{shadow}");
    assert_eq!(
        shadow["mirror"],
        json!({"host": "web", "subset": "canary", "port": {"number": 80}})
    );
    assert_eq!(shadow["mirrorPercentage"]["value"], 40, "{shadow}");
    // The rest of the DestinationRule is as its owner wrote it.
    let d = drapi.get("web").await.expect("the DestinationRule");
    assert_eq!(
        d.data["spec"]["trafficPolicy"]["tls"]["mode"],
        "ISTIO_MUTUAL"
    );
    assert_eq!(
        d.data["spec"]["subsets"][2],
        json!({"name": "legacy", "labels": {"version": "0"}})
    );
    assert_eq!(d.data["spec"]["subsets"][0]["labels"]["app"], "web");

    command(&client, &ns, "web", "promote").await;
    eventually(
        "50% at step 4, the mirror route following the weights",
        || async {
            let s = status(&client, &ns, "web").await?;
            let http =
                vsapi.get("web").await.map_err(|e| e.to_string())?.data["spec"]["http"].clone();
            if split(&http, "primary") == want(50, 50)
                && split(&http, "shadow") == want(50, 50)
                && field(&s, "/currentStepIndex") == "4"
            {
                Ok(())
            } else {
                Err(format!("http {http}, status {s}"))
            }
        },
    )
    .await;
    command(&client, &ns, "web", "promote").await;
    eventually(
        "the canary stable: both subsets on it, 100/0, the mirror route gone",
        || async {
            let s = status(&client, &ns, "web").await?;
            let http =
                vsapi.get("web").await.map_err(|e| e.to_string())?.data["spec"]["http"].clone();
            let labels = subset_hashes(&client, &ns).await?;
            let names = route_names(&client, &ns).await?;
            if field(&s, "/phase") == "Healthy"
                && field(&s, "/stableRS") == canary
                && split(&http, "primary") == want(100, 0)
                && names == ["primary"]
                && labels == (canary.clone(), canary.clone())
            {
                Ok(())
            } else {
                Err(format!(
                    "routes {names:?}, subsets {labels:?}, http {http}, status {s}"
                ))
            }
        },
    )
    .await;
    ctl.abort();
}

/// Argo's migration path from a Deployment: a Rollout with a `workloadRef`
/// (no template, no selector of its own) runs the Deployment's pod
/// template, takes a new revision when the Deployment's template changes
/// (woken by the Deployment's watch: this controller's resync is 5
/// minutes, past the test's deadline), scales the Deployment down as its
/// own pods become available (`scaleDown: progressively`), reports
/// `workloadObservedGeneration`, and refuses CLI template edits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_ref_runs_the_deployments_template_and_scales_it_down() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "workload").await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let d = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": template("example/web:1")}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("creating the Deployment");
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller_with(&client, &ns, Duration::from_secs(300), Default::default());
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 3,
                 "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "name": "web", "scaleDown": "progressively"},
                 "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &r)
        .await
        .expect("creating the rollout");
    let image_of = |rs: &ReplicaSet| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .map(|p| p.containers[0].image.clone().unwrap_or_default())
            .unwrap_or_default()
    };
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let deployment_replicas = || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(d.spec.and_then(|s| s.replicas).unwrap_or(-1))
    };
    let stable = healthy(&client, &ns, "web").await;
    eventually(
        "the Deployment scaled to 0 once the Rollout is Healthy",
        || async {
            let n = deployment_replicas().await?;
            if n == 0 {
                Ok(())
            } else {
                Err(format!("Deployment replicas {n}"))
            }
        },
    )
    .await;
    let rs = rss
        .get(&format!("web-{stable}"))
        .await
        .expect("the stable ReplicaSet");
    assert_eq!(image_of(&rs), "example/web:1");
    assert_eq!(
        rs.spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone())
            .unwrap_or_default()["app"],
        "web",
        "the selector is the Deployment's"
    );
    // Scaling the Deployment moved its generation; the status follows.
    let generation =
        |d: &k8s_openapi::api::apps::v1::Deployment| d.metadata.generation.unwrap_or(0).to_string();
    let g = generation(&deployments.get("web").await.expect("the Deployment"));
    eventually(
        "workloadObservedGeneration to be the Deployment's",
        || async {
            let s = status(&client, &ns, "web").await?;
            if field(&s, "/workloadObservedGeneration") == g {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;

    // The Deployment's template changes: a new revision, paused at 50 %.
    let patched = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": template("example/web:2")}})),
        )
        .await
        .expect("updating the Deployment");
    let g = generation(&patched);
    let canary = eventually(
        "a canary of the Deployment's new template, paused",
        || async {
            let s = status(&client, &ns, "web").await?;
            let hash = field(&s, "/currentPodHash");
            if hash != stable
                && field(&s, "/phase") == "Paused"
                && field(&s, "/workloadObservedGeneration") == g
            {
                Ok(hash)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    let rs = rss
        .get(&format!("web-{canary}"))
        .await
        .expect("the canary ReplicaSet");
    assert_eq!(image_of(&rs), "example/web:2");

    let err = serin_platform_kube::set_image(&client, &ns, "web", "*", "example/web:3")
        .await
        .expect_err("set image on a workloadRef Rollout");
    assert!(
        err.to_string()
            .contains("Deployment web (spec.workloadRef)"),
        "{err}"
    );
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_puts_the_weights_back_on_stable_before_scaling_the_canary_down() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "abort").await;
    istio_setup(&client, &ns).await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(&client, &ns, "web", canary_strategy()).await;
    let stable = healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let canary = eventually("20% to the canary", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        if w == (80, 20) && field(&s, "/phase") == "Paused" {
            Ok(field(&s, "/currentPodHash"))
        } else {
            Err(format!("{w:?} {s}"))
        }
    })
    .await;
    let canary_rs = format!("web-{canary}");
    // etcd's revision orders every write on the server: watch both kinds
    // from here and compare where the two changes landed.
    let vsapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &vs_resource());
    let rsapi: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let from = rsapi
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    command(&client, &ns, "web", "abort").await;
    eventually("the abort to complete", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        let n = replicas(&client, &ns, &canary_rs).await?;
        if field(&s, "/phase") == "Degraded"
            && field(&s, "/abort") == "true"
            && w == (100, 0)
            && n == 0
        {
            Ok(())
        } else {
            Err(format!("weights {w:?}, canary replicas {n}, status {s}"))
        }
    })
    .await;
    let wp = WatchParams::default().timeout(2);
    let mut vs_stream = vsapi.watch(&wp, &from).await.unwrap().boxed();
    let mut weights_back_at = None;
    while let Ok(Some(ev)) = vs_stream.try_next().await {
        if let WatchEvent::Modified(o) = ev {
            let primary = o.data["spec"]["http"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|h| h["name"] == "primary")
                .cloned()
                .unwrap_or_default();
            let c = primary["route"][1]["weight"].as_i64();
            if c == Some(0) && weights_back_at.is_none() {
                weights_back_at = o
                    .metadata
                    .resource_version
                    .and_then(|v| v.parse::<u64>().ok());
            }
        }
    }
    let mut rs_stream = rsapi.watch(&wp, &from).await.unwrap().boxed();
    let mut scaled_at = None;
    while let Ok(Some(ev)) = rs_stream.try_next().await {
        if let WatchEvent::Modified(o) = ev
            && o.metadata.name.as_deref() == Some(canary_rs.as_str())
            && o.spec.as_ref().and_then(|s| s.replicas) == Some(0)
            && scaled_at.is_none()
        {
            scaled_at = o
                .metadata
                .resource_version
                .and_then(|v| v.parse::<u64>().ok());
        }
    }
    let (w, s) = (
        weights_back_at.expect("weights-back event"),
        scaled_at.expect("scale-down event"),
    );
    assert!(
        w < s,
        "weights went back at revision {w}, the canary was scaled down at {s}"
    );
    assert_eq!(
        selector(&client, &ns, "web-stable")
            .await
            .unwrap()
            .as_deref(),
        Some(stable.as_str())
    );
    let st = status(&client, &ns, "web").await.unwrap();
    assert_eq!(st["canary"]["weights"]["canary"]["weight"], 0, "{st}");
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_serves_the_preview_then_switches_the_active_service_on_promote() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "bluegreen").await;
    service(&client, &ns, "web-active").await;
    service(&client, &ns, "web-preview").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"blueGreen": {
        "activeService": "web-active", "previewService": "web-preview",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 0}}),
    )
    .await;
    let blue = healthy(&client, &ns, "web").await;
    assert_eq!(
        selector(&client, &ns, "web-active")
            .await
            .unwrap()
            .as_deref(),
        Some(blue.as_str())
    );
    set_image(&client, &ns, "web", "example/web:2").await;
    let green = eventually("the preview to serve the new revision, paused", || async {
        let s = status(&client, &ns, "web").await?;
        let p = selector(&client, &ns, "web-preview").await?;
        let a = selector(&client, &ns, "web-active").await?;
        let green = field(&s, "/currentPodHash");
        if field(&s, "/phase") == "Paused"
            && p.as_deref() == Some(green.as_str())
            && a.as_deref() == Some(blue.as_str())
        {
            Ok(green)
        } else {
            Err(format!("preview {p:?}, active {a:?}, status {s}"))
        }
    })
    .await;
    let s = status(&client, &ns, "web").await.unwrap();
    assert_eq!(s["blueGreen"]["previewSelector"], green.as_str(), "{s}");
    assert_eq!(s["blueGreen"]["activeSelector"], blue.as_str(), "{s}");
    assert_eq!(s["pauseConditions"][0]["reason"], "BlueGreenPause", "{s}");
    command(&client, &ns, "web", "promote").await;
    eventually(
        "the active Service to switch to the new revision",
        || async {
            let s = status(&client, &ns, "web").await?;
            let a = selector(&client, &ns, "web-active").await?;
            let old = replicas(&client, &ns, &format!("web-{blue}")).await?;
            if field(&s, "/phase") == "Healthy"
                && a.as_deref() == Some(green.as_str())
                && field(&s, "/blueGreen/activeSelector") == green
                && old == 0
            {
                Ok(())
            } else {
                Err(format!("active {a:?}, old replicas {old}, status {s}"))
            }
        },
    )
    .await;
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_cannot_run_says_why_in_its_status() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "invalid").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    // A traffic router this controller does not drive.
    create_rollout(
        &client,
        &ns,
        "nginx",
        json!({"canary": {
        "stableService": "s", "canaryService": "c",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 20}]}}),
    )
    .await;
    // A Service that does not exist.
    create_rollout(
        &client,
        &ns,
        "nosvc",
        json!({"blueGreen": {"activeService": "missing"}}),
    )
    .await;
    eventually("InvalidSpec with the field path", || async {
        let s = status(&client, &ns, "nginx").await?;
        let m = field(&s, "/message");
        if field(&s, "/phase") == "Degraded"
            && m.contains("InvalidSpec")
            && m.contains("spec.strategy.canary.trafficRouting.nginx")
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    eventually("the missing Service named in the status", || async {
        let s = status(&client, &ns, "nosvc").await?;
        let m = field(&s, "/message");
        if m.contains("Service missing") && m.contains("not found") {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    ctl.abort();
}

fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// (stable, canary) backendRef weights of the HTTPRoute `web`.
async fn gateway_weights(client: &Client, ns: &str) -> Result<(i64, i64), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &httproute_resource());
    let hr = api.get("web").await.map_err(|e| e.to_string())?;
    let refs = hr.data["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let w = |n: &str| {
        refs.iter()
            .find(|b| b["name"] == n)
            .and_then(|b| b["weight"].as_i64())
            .unwrap_or(-1)
    };
    Ok((w("web-stable"), w("web-canary")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_with_a_gateway_api_httproute_sets_backend_weights_and_header_rules() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "gateway").await;
    service(&client, &ns, "web-stable").await;
    service(&client, &ns, "web-canary").await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &httproute_resource());
    let mut hr = DynamicObject::new("web", &httproute_resource()).within(&ns);
    hr.data = json!({"spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["web.example"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [
            {"name": "web-stable", "port": 80, "weight": 100},
            {"name": "web-canary", "port": 80, "weight": 0}]}]}});
    api.create(&PostParams::default(), &hr)
        .await
        .expect("creating the HTTPRoute");
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "trafficRouting": {"plugins": {"argoproj-labs/gatewayAPI": {"httpRoute": "web"}},
                           "managedRoutes": [{"name": "beta"}, {"name": "shadow"}]},
        "steps": [{"setWeight": 30},
                  {"setHeaderRoute": {"name": "beta", "match": [
                      {"headerName": "x-beta", "headerValue": {"exact": "1"}}]}},
                  {"setMirrorRoute": {"name": "shadow", "percentage": 40, "match": [
                      {"method": {"exact": "GET"}, "path": {"prefix": "/api"}}]}},
                  {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    eventually("30% on the canary backend and the header rule", || async {
        let s = status(&client, &ns, "web").await?;
        let w = gateway_weights(&client, &ns).await?;
        let hr = api.get("web").await.map_err(|e| e.to_string())?;
        let beta = hr.data["spec"]["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["name"] == "beta"))
            .cloned()
            .unwrap_or_default();
        // The mirror rule, as the API server's own validation took it.
        let shadow = hr.data["spec"]["rules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["name"] == "shadow"))
            .cloned()
            .unwrap_or_default();
        let mirror = shadow["filters"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["type"] == "RequestMirror"))
            .cloned()
            .unwrap_or_default();
        if w == (70, 30)
            && field(&s, "/phase") == "Paused"
            && shadow["matches"]
                == json!([{"method": "GET", "path": {"type": "RegularExpression", "value": "/api.*"}}])
            && shadow["backendRefs"][0]["weight"] == 70
            && shadow["backendRefs"][1]["weight"] == 30
            && mirror["requestMirror"]["percent"] == 40
            && mirror["requestMirror"]["backendRef"]["name"] == "web-canary"
            && beta["matches"][0]["headers"]
                == json!([{"name": "x-beta", "type": "Exact", "value": "1"}])
            && beta["matches"][0]["path"] == json!({"type": "PathPrefix", "value": "/"})
            && beta["backendRefs"].as_array().map(Vec::len) == Some(1)
            && beta["backendRefs"][0]["name"] == "web-canary"
        {
            Ok(())
        } else {
            Err(format!("{w:?} {} {s}", hr.data["spec"]["rules"]))
        }
    })
    .await;
    let hr = api.get("web").await.unwrap();
    assert_eq!(
        hr.data["spec"]["hostnames"],
        json!(["web.example"]),
        "other fields untouched"
    );
    command(&client, &ns, "web", "promote").await;
    eventually("all traffic on the promoted revision", || async {
        let s = status(&client, &ns, "web").await?;
        let w = gateway_weights(&client, &ns).await?;
        let rules = api.get("web").await.map_err(|e| e.to_string())?.data["spec"]["rules"].clone();
        if w == (100, 0)
            && field(&s, "/phase") == "Healthy"
            && field(&s, "/stableRS") == field(&s, "/currentPodHash")
            && rules.as_array().map(Vec::len) == Some(1)
        {
            Ok(())
        } else {
            Err(format!("{w:?} {rules} {s}"))
        }
    })
    .await;
    ctl.abort();
}

/// A controller replica that acts only while holding the namespace's Lease.
fn replica(client: &Client, ns: &str, identity: &str) -> JoinHandle<()> {
    let client = client.clone();
    let mut le = LeaderElection::new(ns, identity);
    le.lease_duration = Duration::from_secs(2);
    le.renew_every = Duration::from_millis(300);
    let opts = ControllerOptions {
        namespace: Some(ns.to_string()),
        resync: Duration::from_secs(5),
        instance: identity.to_string(),
        leader_election: Some(le),
        observer: Default::default(),
        flag_server: None,
    };
    tokio::spawn(async move {
        if let Err(err) = run_controller(client, opts).await {
            panic!("controller: {err}");
        }
    })
}

async fn holder(client: &Client, ns: &str) -> Result<String, String> {
    let api: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), ns);
    let l = api
        .get("serin-controller")
        .await
        .map_err(|e| e.to_string())?;
    l.spec
        .and_then(|s| s.holder_identity)
        .ok_or_else(|| "no holder".to_string())
}

/// `reportingInstance` of every Event in `ns`.
async fn reporters(client: &Client, ns: &str) -> HashSet<String> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_the_other_takes_over_when_it_dies() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "leader").await;
    istio_setup(&client, &ns).await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let a = replica(&client, &ns, "replica-a");
    let b = replica(&client, &ns, "replica-b");
    let leader = eventually("a leader", || async { holder(&client, &ns).await }).await;
    create_rollout(&client, &ns, "web", canary_strategy()).await;
    healthy(&client, &ns, "web").await;
    // Only the leader acted.
    assert_eq!(
        reporters(&client, &ns).await,
        HashSet::from([leader.clone()])
    );
    let (dead, survivor, other) = if leader == "replica-a" {
        (a, "replica-b", b)
    } else {
        (b, "replica-a", a)
    };
    dead.abort();
    let _ = dead.await;
    eventually("the other replica to take the Lease", || async {
        let h = holder(&client, &ns).await?;
        if h == survivor { Ok(()) } else { Err(h) }
    })
    .await;
    set_image(&client, &ns, "web", "example/web:2").await;
    eventually("the new leader to run the canary", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        if w == (80, 20) && field(&s, "/phase") == "Paused" {
            Ok(())
        } else {
            Err(format!("{w:?} {s}"))
        }
    })
    .await;
    assert!(reporters(&client, &ns).await.contains(survivor));
    other.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_replaces_the_revision_and_waits_for_unready_pods() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "rolling").await;
    let unready: Arc<Mutex<HashSet<String>>> = Arc::default();
    let _kubelet = kubelet(client.clone(), &ns, unready.clone());
    let ctl = controller(&client, &ns);
    // A canary without steps is a rolling update.
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"maxSurge": 1, "maxUnavailable": 0}}),
    )
    .await;
    let old = healthy(&client, &ns, "web").await;
    // The next revision's pods never pass readiness: the rollout must not
    // scale the old revision below what stays available.
    // Every new revision is held unready from its first moment.
    unready
        .lock()
        .unwrap()
        .extend(["*".to_string(), format!("!{old}")]);
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    set_image(&client, &ns, "web", "example/web:2").await;
    let new = eventually("the new revision", || async {
        let s = status(&client, &ns, "web").await?;
        let h = field(&s, "/currentPodHash");
        if !h.is_empty() && h != old {
            Ok(h)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    eventually("a surge pod of the new revision", || async {
        let n = replicas(&client, &ns, &format!("web-{new}")).await?;
        if n >= 1 {
            Ok(())
        } else {
            Err(format!("new replicas {n}"))
        }
    })
    .await;
    // Unready pods are never counted: the old revision keeps all 2.
    let s = status(&client, &ns, "web").await.unwrap();
    assert_eq!(
        replicas(&client, &ns, &format!("web-{old}")).await.unwrap(),
        2,
        "{s}"
    );
    assert_ne!(field(&s, "/phase"), "Healthy", "{s}");
    assert_eq!(field(&s, "/currentPodHash"), new, "{s}");
    // Once they are ready, the rolling update completes.
    unready.lock().unwrap().clear();
    eventually("the rolling update to complete", || async {
        let s = status(&client, &ns, "web").await?;
        let o = replicas(&client, &ns, &format!("web-{old}")).await?;
        if field(&s, "/phase") == "Healthy" && field(&s, "/stableRS") == new && o == 0 {
            Ok(())
        } else {
            Err(format!("old replicas {o}, status {s}"))
        }
    })
    .await;
    let r = api.get("web").await.unwrap();
    assert_eq!(r.status.unwrap()["updatedReplicas"], 2);
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_manifests_are_accepted_by_the_api_server() {
    let Some(client) = client().await else { return };
    let objs = serin_platform_kube::install_manifests(
        "serin-system",
        "ghcr.io/example/serin:1",
        Some("http://flags.flags.svc:8016"),
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut checked = Vec::new();
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        match kind {
            // Served by the test server: a server-side dry run validates them.
            "Namespace" | "ServiceAccount" | "Deployment" | "Service" => {
                let (group, version) = match o["apiVersion"].as_str().unwrap().split_once('/') {
                    Some((g, v)) => (g, v),
                    None => ("", "v1"),
                };
                let plural = format!("{}s", kind.to_lowercase());
                let ar = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(group, version, kind),
                    &plural,
                );
                let obj: DynamicObject = serde_json::from_value(o.clone()).unwrap();
                let api: Api<DynamicObject> = if kind == "Namespace" {
                    Api::all_with(client.clone(), &ar)
                } else {
                    // The namespace exists only in the dry run: check in `default`.
                    Api::namespaced_with(client.clone(), "default", &ar)
                };
                let mut obj = obj;
                if kind != "Namespace" {
                    obj.metadata.namespace = Some("default".into());
                }
                api.create(&dry, &obj)
                    .await
                    .unwrap_or_else(|e| panic!("{kind} refused: {e}"));
            }
            // Serin's own CRD: a server-side apply dry run (other tests
            // install it for real, so a create could meet it).
            "CustomResourceDefinition" => {
                let ar = ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(
                        "apiextensions.k8s.io",
                        "v1",
                        "CustomResourceDefinition",
                    ),
                    "customresourcedefinitions",
                );
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                let pp = PatchParams::apply("serin-test").dry_run().force();
                api.patch("flagrollouts.serin.dev", &pp, &Patch::Apply(o))
                    .await
                    .unwrap_or_else(|e| panic!("{kind} refused: {e}"));
            }
            // RBAC is not served by the test server: typed parse only.
            "ClusterRole" => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRole>(o.clone())
                    .unwrap();
            }
            "ClusterRoleBinding" => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(o.clone())
                    .unwrap();
            }
            "Role" => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(o.clone()).unwrap();
            }
            "RoleBinding" => {
                serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(o.clone())
                    .unwrap();
            }
            other => panic!("unexpected kind {other}"),
        }
        checked.push(kind.to_string());
    }
    assert_eq!(
        checked,
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service"
        ]
    );
}

/// A loopback HTTP server answering every request with `{"ok": N}`, N the
/// value of the returned cell: the analysis' web provider reads it.
async fn ok_server() -> (String, Arc<std::sync::atomic::AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ok = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let cell = ok.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = cell.load(std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = format!("{{\"ok\": {n}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analysis_aborts_the_canary_and_a_passing_one_lets_it_go_on() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "analysis").await;
    istio_setup(&client, &ns).await;
    let (url, ok) = ok_server().await;
    let tr = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisTemplate"),
        "analysistemplates",
    );
    let tapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &tr);
    let mut t = DynamicObject::new("ok-check", &tr).within(&ns);
    t.data = json!({"spec": {"metrics": [{"name": "ok", "count": 1,
        "successCondition": "result == 1",
        "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}}]}});
    tapi.create(&PostParams::default(), &t)
        .await
        .expect("creating the AnalysisTemplate");
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
        "steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "ok-check"}]}},
                  {"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let runs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisRun"),
            "analysisruns",
        ),
    );
    eventually("the failed analysis to abort the canary", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        let phases: Vec<String> = runs
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|r| field(&r.data, "/status/phase"))
            .collect();
        if field(&s, "/phase") == "Degraded" && w == (100, 0) && phases == ["Failed"] {
            Ok(())
        } else {
            Err(format!("runs {phases:?}, weights {w:?}, status {s}"))
        }
    })
    .await;
    ok.store(1, std::sync::atomic::Ordering::SeqCst);
    command(&client, &ns, "web", "retry").await;
    eventually("a passing analysis to let the canary reach 50%", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        if w == (50, 50) && field(&s, "/phase") == "Paused" && field(&s, "/currentStepIndex") == "3"
        {
            Ok(())
        } else {
            Err(format!("weights {w:?}, status {s}"))
        }
    })
    .await;
    let phases: Vec<String> = runs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| field(&r.data, "/status/phase"))
        .collect();
    assert!(phases.contains(&"Successful".to_string()), "{phases:?}");
    // Argo's metricResults, values as strings (the CRD's type for them).
    let runs = run_statuses(&client, &ns).await.unwrap();
    let values: Vec<(String, String)> = runs
        .iter()
        .map(|(_, _, st)| {
            (
                field(st, "/metricResults/0/measurements/0/phase"),
                field(st, "/metricResults/0/measurements/0/value"),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("Failed".to_string(), "0".to_string()),
            ("Successful".to_string(), "1".to_string())
        ],
        "{runs:?}"
    );
    ctl.abort();
}

/// Deploys `image` and waits until its revision is the stable one; returns
/// its hash.
async fn deploy(client: &Client, ns: &str, image: &str, before: &str) -> String {
    set_image(client, ns, "web", image).await;
    eventually(&format!("{image} to become stable"), || async {
        let s = status(client, ns, "web").await?;
        let stable = field(&s, "/stableRS");
        if field(&s, "/phase") == "Healthy" && !stable.is_empty() && stable != before {
            Ok(stable)
        } else {
            Err(s.to_string())
        }
    })
    .await
}

/// The hashes of the ReplicaSets in `ns`, sorted.
async fn replica_set_hashes(client: &Client, ns: &str) -> Result<Vec<String>, String> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<String> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .iter()
        .filter_map(|rs| rs.metadata.labels.as_ref()?.get(LABEL_HASH).cloned())
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_replica_sets_beyond_the_revision_history_limit_are_deleted() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "history").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "revisionHistoryLimit": 1,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": template("example/web:1"),
                 "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &r).await.unwrap();
    let h1 = healthy(&client, &ns, "web").await;
    let h2 = deploy(&client, &ns, "example/web:2", &h1).await;
    // One old revision is within the limit: kept.
    eventually("revision 1 scaled to zero", || async {
        let n = replicas(&client, &ns, &format!("web-{h1}")).await?;
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} replicas"))
        }
    })
    .await;
    let mut want = vec![h1.clone(), h2.clone()];
    want.sort();
    assert_eq!(replica_set_hashes(&client, &ns).await.unwrap(), want);
    let h3 = deploy(&client, &ns, "example/web:3", &h2).await;
    // Two old revisions scaled to zero, limit 1: the oldest goes.
    let mut want = vec![h2.clone(), h3.clone()];
    want.sort();
    eventually("revision 1's ReplicaSet to be deleted", || async {
        let have = replica_set_hashes(&client, &ns).await?;
        if have == want {
            Ok(())
        } else {
            Err(format!("{have:?}"))
        }
    })
    .await;
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_runs_the_older_revision_again_on_its_own_replica_set() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "undo").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"maxSurge": 1, "maxUnavailable": 0}}),
    )
    .await;
    let h1 = healthy(&client, &ns, "web").await;
    let h2 = deploy(&client, &ns, "example/web:2", &h1).await;
    // The ReplicaSet's template is the API server's defaulted one: as
    // written back into the Rollout it hashes differently, and must still
    // be found as revision 1 (no third ReplicaSet).
    let rs: ReplicaSet = Api::namespaced(client.clone(), &ns)
        .get(&format!("web-{h1}"))
        .await
        .unwrap();
    let c = &rs.spec.unwrap().template.unwrap().spec.unwrap().containers[0];
    assert!(
        c.termination_message_path.is_some(),
        "the test server defaults pod templates: {c:?}"
    );
    let n = serin_platform_kube::undo(&client, &ns, "web", None)
        .await
        .expect("undo");
    assert_eq!(n, 1);
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r = api.get("web").await.unwrap();
    assert_eq!(
        r.spec.pointer("/template/spec/containers/0/image"),
        Some(&json!("example/web:1"))
    );
    eventually("revision 1 to be stable again", || async {
        let s = status(&client, &ns, "web").await?;
        let n1 = replicas(&client, &ns, &format!("web-{h1}")).await?;
        let n2 = replicas(&client, &ns, &format!("web-{h2}")).await?;
        if field(&s, "/phase") == "Healthy" && field(&s, "/stableRS") == h1 && n1 == 2 && n2 == 0 {
            Ok(())
        } else {
            Err(format!("replicas {n1}/{n2}, status {s}"))
        }
    })
    .await;
    let mut want = vec![h1.clone(), h2.clone()];
    want.sort();
    assert_eq!(replica_set_hashes(&client, &ns).await.unwrap(), want);
    // Nothing older than revision 1: a second undo says so.
    let err = serin_platform_kube::undo(&client, &ns, "web", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no previous revision"), "{err}");
    // --to-revision 2 goes forward again, on revision 2's ReplicaSet.
    assert_eq!(
        serin_platform_kube::undo(&client, &ns, "web", Some(2))
            .await
            .unwrap(),
        2
    );
    eventually("revision 2 to be stable again", || async {
        let s = status(&client, &ns, "web").await?;
        if field(&s, "/phase") == "Healthy" && field(&s, "/stableRS") == h2 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    assert_eq!(replica_set_hashes(&client, &ns).await.unwrap(), want);
    ctl.abort();
}

/// A namespace where Argo's controller ran the Istio canary `web` until
/// now ([`argo_leftovers`] with Argo's hash `argo`), and the kubelet
/// stand-in for it (keep the handle).
async fn after_argo(client: &Client, prefix: &str, argo: &str) -> (String, JoinHandle<()>) {
    let ns = namespace(client, prefix).await;
    istio_setup(client, &ns).await;
    let kubelet = kubelet(client.clone(), &ns, Arc::default());
    create_rollout(client, &ns, "web", canary_strategy()).await;
    argo_leftovers(client, &ns, argo).await;
    (ns, kubelet)
}

/// What Argo Rollouts' controller leaves behind for a Healthy canary: its
/// ReplicaSet (named and labelled with its own pod-template hash, owned by
/// the Rollout, Argo's revision annotations), the Services' selectors on
/// that hash and an Argo status. Built here by hand from Argo's
/// `newReplicaSet`/`SetNewReplicaSetAnnotations` and its status shape (no
/// Argo controller runs in the tests).
async fn argo_leftovers(client: &Client, ns: &str, hash: &str) {
    let rollouts: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let r = rollouts.get("web").await.expect("reading the rollout");
    let uid = r.metadata.uid.clone().expect("uid");
    let mut tpl = template("example/web:1");
    tpl["metadata"]["labels"][LABEL_HASH] = json!(hash);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": format!("web-{hash}"),
            "labels": {"app": "web", LABEL_HASH: hash},
            "annotations": {"rollout.argoproj.io/revision": "1",
                            "rollout.argoproj.io/desired-replicas": "2"},
            "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "name": "web", "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"replicas": 2,
                 "selector": {"matchLabels": {"app": "web", LABEL_HASH: hash}},
                 "template": tpl},
    }))
    .unwrap();
    Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("creating Argo's ReplicaSet");
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    for svc in ["web-stable", "web-canary"] {
        services
            .patch(
                svc,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {"argo-rollouts.argoproj.io/managed-by-rollouts": "web"}},
                    "spec": {"selector": {LABEL_HASH: hash}}})),
            )
            .await
            .expect("pointing the Services at Argo's revision");
    }
    rollouts
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Healthy", "stableRS": hash, "currentPodHash": hash,
                "currentStepIndex": 5, "observedGeneration": "1",
                "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                "availableReplicas": 2, "selector": format!("app=web,{LABEL_HASH}={hash}"),
                "canary": {"weights": {
                    "canary": {"podTemplateHash": hash, "serviceName": "web-canary", "weight": 0},
                    "stable": {"podTemplateHash": hash, "serviceName": "web-stable", "weight": 100}}}}})),
        )
        .await
        .expect("writing Argo's status");
}

/// Waits for the canary at 20 % beside Argo's ReplicaSet `argo` as the
/// stable one (weights, both Services' selectors, `stableRS`); its hash.
async fn canary_beside_argo(client: &Client, ns: &str, argo: &str) -> String {
    let canary = eventually("the canary at 20 % beside Argo's stable", || async {
        let s = status(client, ns, "web").await?;
        let canary = field(&s, "/currentPodHash");
        let w = weights(client, ns).await?;
        let stable_sel = selector(client, ns, "web-stable").await?;
        let canary_sel = selector(client, ns, "web-canary").await?;
        if w == (80, 20)
            && canary != argo
            && stable_sel.as_deref() == Some(argo)
            && canary_sel.as_deref() == Some(canary.as_str())
        {
            Ok(canary)
        } else {
            Err(format!(
                "weights {w:?}, selectors {stable_sel:?}/{canary_sel:?}, status {s}"
            ))
        }
    })
    .await;
    let s = status(client, ns, "web").await.unwrap();
    assert_eq!(field(&s, "/stableRS"), argo, "{s}");
    canary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_from_argos_controller_adopts_its_replica_set_without_a_rollout() {
    // A team stops Argo's controller and starts Serin's: the Rollout's
    // pods must keep running on Argo's ReplicaSet (Argo's hash is not
    // Serin's), not be rolled out again, and the next image must canary
    // from that ReplicaSet as the stable revision.
    let Some(client) = client().await else { return };
    let argo = "7d5b9c6f48";
    let (ns, _kubelet) = after_argo(&client, "adopt", argo).await;
    let ctl = controller(&client, &ns);
    let rollouts: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    eventually("Serin's status, Healthy on Argo's ReplicaSet", || async {
        let r = rollouts.get("web").await.map_err(|e| e.to_string())?;
        let s = r.status.clone().unwrap_or(Value::Null);
        // Serin's own (engine) status: the Argo-shaped one was Argo's.
        let serin = r
            .annotation(serin_platform_kube::ANN_STATUS)
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .unwrap_or(Value::Null);
        if field(&serin, "/status/phase") == "Healthy"
            && field(&serin, "/status/stable_hash") == argo
            && field(&s, "/phase") == "Healthy"
            && field(&s, "/stableRS") == argo
        {
            Ok(())
        } else {
            Err(format!("Serin's status {serin}; /status {s}"))
        }
    })
    .await;
    // Healthy before any new ReplicaSet: nothing was rolled out again.
    assert_eq!(
        replica_set_hashes(&client, &ns).await.unwrap(),
        vec![argo.to_string()]
    );
    assert_eq!(
        replicas(&client, &ns, &format!("web-{argo}"))
            .await
            .unwrap(),
        2
    );
    for svc in ["web-stable", "web-canary"] {
        assert_eq!(
            selector(&client, &ns, svc).await.unwrap().as_deref(),
            Some(argo)
        );
    }
    assert_eq!(weights(&client, &ns).await.unwrap(), (100, 0));
    // The next image canaries from Argo's ReplicaSet as the stable one.
    set_image(&client, &ns, "web", "example/web:2").await;
    let canary = canary_beside_argo(&client, &ns, argo).await;
    command(&client, &ns, "web", "promote-full").await;
    eventually("the new revision stable and Argo's scaled down", || async {
        let s = status(&client, &ns, "web").await?;
        let old = replicas(&client, &ns, &format!("web-{argo}")).await?;
        if field(&s, "/phase") == "Healthy" && field(&s, "/stableRS") == canary && old == 0 {
            Ok(())
        } else {
            Err(format!("Argo's ReplicaSet at {old}; {s}"))
        }
    })
    .await;
    let mut want = vec![argo.to_string(), canary.clone()];
    want.sort();
    assert_eq!(replica_set_hashes(&client, &ns).await.unwrap(), want);
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_changed_while_controllers_switch_is_a_canary_from_argos_stable() {
    // Argo's controller is stopped, a new image is pushed, then Serin's
    // starts: Serin has no status of its own yet, and without Argo's
    // status it would take web:2 for a first deploy — all pods at once,
    // no steps. It must canary from Argo's stable ReplicaSet instead.
    let Some(client) = client().await else { return };
    let argo = "5f8d6c7b9a";
    let (ns, _kubelet) = after_argo(&client, "adopt-new", argo).await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let ctl = controller(&client, &ns);
    let canary = canary_beside_argo(&client, &ns, argo).await;
    assert_eq!(
        replicas(&client, &ns, &format!("web-{argo}"))
            .await
            .unwrap(),
        2
    );
    let mut want = vec![argo.to_string(), canary];
    want.sort();
    assert_eq!(replica_set_hashes(&client, &ns).await.unwrap(), want);
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_canary_is_left_alone_until_something_changes() {
    // Every status write is a watch event that reconciles the Rollout
    // again: a step that rewrote an unchanged rollout's status (a paused
    // one's `last_progress`) kept it reconciling for ever, and a burst of
    // such rollouts held the controller's reconcile slots (bench/k8s-scale.sh).
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "quiet").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    // Paused at step 1 with the canary's replica ready: nothing left to do.
    eventually("the canary to pause at step 1", || async {
        let s = status(&client, &ns, "web").await?;
        if field(&s, "/phase") == "Paused"
            && field(&s, "/currentStepIndex") == "1"
            && field(&s, "/updatedReplicas") == "1"
        {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    let rv = |r: RolloutObject| r.metadata.resource_version.unwrap_or_default();
    let before = rv(api.get("web").await.unwrap());
    // Longer than a few reconciles at the controller's pace (the loop
    // wrote every ~200 ms); shorter than the test controller's resync (5 s),
    // which would not write either.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let now = rv(api.get("web").await.unwrap());
        assert_eq!(
            now,
            before,
            "the paused Rollout was written again: {}",
            status(&client, &ns, "web").await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctl.abort();
}

/// A Slack incoming-webhook stand-in on loopback: the JSON bodies POSTed to
/// `/hook`.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    g.lock().unwrap().push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// `GET /metrics` from `addr`, as text.
async fn scrape(addr: std::net::SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    sock.write_all(b"GET /metrics HTTP/1.1\r\nhost: metrics\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    sock.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(out);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_exports_rollout_metrics_and_sends_slack_notifications() {
    use serin_notify::{NotificationsConfig, ServiceConfig, Subscription, Trigger};
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "observe").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let (url, got) = webhook_receiver().await;
    let mut config = NotificationsConfig::default();
    config.services.insert(
        "slack".into(),
        ServiceConfig::Slack {
            url,
            channel: Some("#deploys".into()),
            username: Some("serin".into()),
        },
    );
    for trigger in [Trigger::Paused, Trigger::Completed] {
        config.subscriptions.push(Subscription {
            trigger,
            service: "slack".into(),
            recipients: Vec::new(),
        });
    }
    let observer = Arc::new(serin_platform_kube::Observer::new(Some(config)).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serin_platform_kube::serve_metrics(
        listener,
        observer.clone(),
    ));
    let opts = ControllerOptions {
        namespace: Some(ns.clone()),
        resync: Duration::from_secs(5),
        instance: format!("test-{ns}"),
        leader_election: None,
        observer,
        flag_server: None,
    };
    let c = client.clone();
    let ctl = tokio::spawn(async move { run_controller(c, opts).await });
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    let v1 = healthy(&client, &ns, "web").await;
    let key = format!("{ns}/web");
    // The Rollout's own subscription, as Argo's annotation writes it, beside
    // the configured ones (and one to a service nobody configured: skipped).
    let rollouts: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    rollouts
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "notifications.argoproj.io/subscribe.on-rollout-step-completed.slack": "#web-team",
                "notifications.argoproj.io/subscribe.on-rollout-step-completed.teams": "x",
            }}})),
        )
        .await
        .expect("annotating the rollout");
    set_image(&client, &ns, "web", "example/web:2").await;
    let step = eventually(
        "the step-completed message to the annotation's channel",
        || async {
            let got = got.lock().unwrap().clone();
            got.into_iter()
                .find(|b| b["channel"] == "#web-team")
                .ok_or_else(|| "no message to #web-team yet".to_string())
        },
    )
    .await;
    assert!(
        step["attachments"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&key)),
        "{step}"
    );
    // Paused at the pause step: the Slack message, and the phase gauge.
    let paused = eventually("the Slack message for the pause", || async {
        let got = got.lock().unwrap().clone();
        got.into_iter()
            .find(|b| {
                b["attachments"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("paused"))
            })
            .ok_or_else(|| "no message yet".to_string())
    })
    .await;
    assert_eq!(paused["channel"], "#deploys", "{paused}");
    assert_eq!(paused["username"], "serin", "{paused}");
    assert!(
        paused["attachments"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("⏸️ {key} paused"))),
        "{paused}"
    );
    let m = scrape(addr).await.unwrap();
    assert!(
        m.contains(&format!(
            r#"rollout_phase{{rollout="{key}",phase="Paused"}} 1"#
        )),
        "{m}"
    );
    command(&client, &ns, "web", "promote").await;
    let v2 = eventually("the canary to complete", || async {
        let s = status(&client, &ns, "web").await?;
        let stable = field(&s, "/stableRS");
        if field(&s, "/phase") == "Healthy" && stable != v1 {
            Ok(stable)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    let done = eventually("the Slack message for the completion", || async {
        let got = got.lock().unwrap().clone();
        got.into_iter()
            .find(|b| b["attachments"][0]["color"] == "good" && b["channel"] == "#deploys")
            .ok_or_else(|| "no message for the completion yet".to_string())
    })
    .await;
    assert_eq!(done["attachments"][0]["fields"][1]["value"], v2, "{done}");
    // Two finished deployments (the first revision and the canary, as
    // `serin up` counts them), the phase and the current revision.
    let m = eventually("the deployment counted", || async {
        let m = scrape(addr).await?;
        if m.contains(&format!(
            r#"deployment_status_total{{service="{key}",status="success"}} 2"#
        )) {
            Ok(m)
        } else {
            Err(m)
        }
    })
    .await;
    assert!(
        m.contains(&format!(
            r#"rollout_phase{{rollout="{key}",phase="Healthy"}} 1"#
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            r#"rollout_info{{rollout="{key}",strategy="canary",revision="{v2}"}} 1"#
        )),
        "{m}"
    );
    assert!(m.contains("# EOF"), "{m}");
    ctl.abort();
}

/// A controller keeping its deployment history on the cluster, with
/// `/metrics` on a fresh port.
async fn history_controller(client: &Client, ns: &str) -> (JoinHandle<()>, std::net::SocketAddr) {
    let observer = Arc::new(
        serin_platform_kube::Observer::new(None)
            .unwrap()
            .with_cluster_history(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serin_platform_kube::serve_metrics(
        listener,
        observer.clone(),
    ));
    (
        controller_with(client, ns, Duration::from_secs(5), observer),
        addr,
    )
}

/// Deployment records live in the namespace's `serin-deployment-history`
/// ConfigMap: a restarted controller resumes them (its `/metrics` counts
/// the earlier deployments before any new one, ids carry on), and `serin
/// report --context` computes the seed's table from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_history_survives_a_controller_restart() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "history").await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let (ctl, _) = history_controller(&client, &ns).await;
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [{"setWeight": 50}]}}),
    )
    .await;
    let v1 = healthy(&client, &ns, "web").await;
    let v2 = deploy(&client, &ns, "example/web:2", &v1).await;
    let key = format!("{ns}/web");
    let ids = || async {
        let list = serin_platform_kube::deployment_records(&client, &ns)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            list.iter()
                .map(|r| (r.id, r.to_revision.clone(), r.outcome.status_label()))
                .collect::<Vec<_>>(),
        )
    };
    eventually("two succeeded deployments in the ConfigMap", || async {
        let got = ids().await?;
        if got == [(1, v1.clone(), "success"), (2, v2.clone(), "success")] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;

    ctl.abort();
    let _ = ctl.await;
    let (ctl, addr) = history_controller(&client, &ns).await;
    eventually("the new controller's /metrics to count both", || async {
        let m = scrape(addr).await?;
        if m.contains(&format!(
            r#"deployment_status_total{{service="{key}",status="success"}} 2"#
        )) {
            Ok(())
        } else {
            Err(m)
        }
    })
    .await;
    let v3 = deploy(&client, &ns, "example/web:3", &v2).await;
    eventually("the third deployment with the next id", || async {
        let got = ids().await?;
        if got.last() == Some(&(3, v3.clone(), "success")) && got.len() == 3 {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let r = serin_platform_kube::report(&client, &ns, Some("30d"))
        .await
        .expect("the report");
    assert_eq!(r["report"]["deployments"], 3, "{r}");
    assert!(r["text"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    let err = serin_platform_kube::report(&client, &ns, Some("soon"))
        .await
        .expect_err("a bad since");
    assert!(err.to_string().starts_with("since: "), "{err}");
    ctl.abort();
}

fn runs_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisRun"),
            "analysisruns",
        ),
    )
}

async fn analysis_template(client: &Client, ns: &str, name: &str, spec: Value) {
    let tr = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AnalysisTemplate"),
        "analysistemplates",
    );
    let tapi: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &tr);
    let mut t = DynamicObject::new(name, &tr).within(ns);
    t.data = json!({ "spec": spec });
    tapi.create(&PostParams::default(), &t)
        .await
        .expect("creating the AnalysisTemplate");
}

/// The test's stand-in for the Job controller (the test server runs none):
/// every Job without a verdict gets the one in `verdict` — `"pass"`
/// (Complete), `"fail"` (Failed, BackoffLimitExceeded) or `"hold"` (left
/// running) — in the status shape kube's Job controller writes.
fn job_controller(client: Client, ns: &str, verdict: Arc<Mutex<&'static str>>) -> JoinHandle<()> {
    let api: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for job in list.items {
                    let decided = job
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| !c.is_empty());
                    let v = *verdict.lock().unwrap();
                    if decided || v == "hold" {
                        continue;
                    }
                    let now = "2026-01-01T00:00:00Z";
                    let cond = |t: &str, reason: &str| {
                        json!({"type": t, "status": "True", "reason": reason,
                               "message": format!("{reason} (test Job controller)"),
                               "lastProbeTime": now, "lastTransitionTime": now})
                    };
                    let status = if v == "pass" {
                        json!({"startTime": now, "completionTime": now, "succeeded": 1,
                               "conditions": [cond("SuccessCriteriaMet", "CompletionsReached"),
                                              cond("Complete", "CompletionsReached")]})
                    } else {
                        json!({"startTime": now, "failed": 1,
                               "conditions": [cond("FailureTarget", "BackoffLimitExceeded"),
                                              cond("Failed", "BackoffLimitExceeded")]})
                    };
                    let name = job.metadata.name.clone().unwrap_or_default();
                    let _ = api
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({ "status": status })),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

async fn jobs(client: &Client, ns: &str) -> Result<Vec<k8s_openapi::api::batch::v1::Job>, String> {
    let api: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items)
}

/// The AnalysisRuns' statuses, oldest first.
async fn run_statuses(client: &Client, ns: &str) -> Result<Vec<(String, String, Value)>, String> {
    let mut items = runs_api(client, ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    items.sort_by_key(|r| r.metadata.creation_timestamp.clone());
    Ok(items
        .into_iter()
        .map(|r| {
            (
                r.metadata.name.clone().unwrap_or_default(),
                r.metadata.uid.clone().unwrap_or_default(),
                r.data.get("status").cloned().unwrap_or(Value::Null),
            )
        })
        .collect())
}

/// An unweighted experiment step on a cluster: a ReplicaSet per template
/// (labelled `serin.dev/experiment`, running the stable's and the canary's
/// pod templates under their own hashes, so no Service of the rollout
/// selects them), its analysis as an AnalysisRun object, and both
/// ReplicaSets gone once the step's duration is over; the rollout then
/// goes on to its next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_step_runs_its_templates_and_analysis_then_cleans_up() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "experiment").await;
    let (url, ok) = ok_server().await;
    ok.store(1, std::sync::atomic::Ordering::SeqCst);
    analysis_template(
        &client,
        &ns,
        "ok-check",
        json!({"metrics": [{"name": "ok", "count": 1, "successCondition": "result == 1",
            "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}}]}),
    )
    .await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [
            {"setWeight": 20},
            {"experiment": {"duration": "10s",
                "templates": [{"name": "baseline", "specRef": "stable"},
                              {"name": "canary", "specRef": "canary"}],
                "analyses": [{"name": "check", "templateName": "ok-check"}]}},
            {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let experiment_sets = || async {
        let list = rss
            .list(&ListParams::default().labels("serin.dev/experiment"))
            .await
            .map_err(|e| e.to_string())?;
        let mut out: Vec<(String, i32)> = list
            .items
            .iter()
            .map(|rs| {
                let spec = rs.spec.as_ref();
                let image = spec
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|p| p.containers[0].image.clone())
                    .unwrap_or_default();
                (image, spec.and_then(|s| s.replicas).unwrap_or(-1))
            })
            .collect();
        out.sort();
        Ok::<_, String>(out)
    };
    eventually(
        "both templates running during the experiment step",
        || async {
            let got = experiment_sets().await?;
            let s = status(&client, &ns, "web").await?;
            if got
                == [
                    ("example/web:1".to_string(), 1),
                    ("example/web:2".to_string(), 1),
                ]
                && field(&s, "/currentStepIndex") == "1"
            {
                Ok(())
            } else {
                Err(format!("experiment ReplicaSets {got:?}, status {s}"))
            }
        },
    )
    .await;
    // The experiment's pods are no revision: the rollout's replica count
    // is its revisions' ReplicaSets' alone.
    eventually("status.replicas to count the revisions only", || async {
        let revisions: i32 = rss
            .list(&ListParams::default().labels("!serin.dev/experiment"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .sum();
        let s = status(&client, &ns, "web").await?;
        if field(&s, "/replicas") == revisions.to_string() && experiment_sets().await?.len() == 2 {
            Ok(())
        } else {
            Err(format!("revisions' replicas {revisions}, status {s}"))
        }
    })
    .await;
    eventually(
        "the experiment over: its ReplicaSets gone, paused at step 2",
        || async {
            let got = experiment_sets().await?;
            let s = status(&client, &ns, "web").await?;
            if got.is_empty()
                && field(&s, "/currentStepIndex") == "2"
                && field(&s, "/phase") == "Paused"
            {
                Ok(())
            } else {
                Err(format!("experiment ReplicaSets {got:?}, status {s}"))
            }
        },
    )
    .await;
    let runs = run_statuses(&client, &ns).await.unwrap();
    assert!(
        runs.iter()
            .any(|(_, _, st)| field(st, "/phase") == "Successful"),
        "the experiment's analysis ran as an AnalysisRun: {runs:?}"
    );
    ctl.abort();
}

/// Every destination of the VirtualService's `primary` route: (Service,
/// weight), in order.
async fn destinations(client: &Client, ns: &str) -> Result<Vec<(String, i64)>, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &vs_resource());
    let vs = api.get("web").await.map_err(|e| e.to_string())?;
    let http = vs
        .data
        .pointer("/spec/http")
        .cloned()
        .unwrap_or(Value::Null);
    let primary = http
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["name"] == "primary")
        .ok_or("no primary route")?;
    Ok(primary["route"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                field(d, "/destination/host"),
                d["weight"].as_i64().unwrap_or(-1),
            )
        })
        .collect())
}

/// Waits for a weighted experiment step to be over: the route's
/// destinations (`hosts`, in order) at 80/20 again, every experiment
/// Service and ReplicaSet gone, the Rollout paused at its next step (2).
async fn experiment_over(client: &Client, ns: &str, hosts: &[&str; 2]) {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let experiments = ListParams::default().labels("serin.dev/experiment");
    let want = [(hosts[0].to_string(), 80), (hosts[1].to_string(), 20)];
    eventually(
        "the experiment's destinations, Services and ReplicaSets gone",
        || async {
            let d = destinations(client, ns).await?;
            let s = status(client, ns, "web").await?;
            let left: Vec<String> = services
                .list(&experiments)
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter_map(|s| s.metadata.name.clone())
                .collect();
            let sets = rss
                .list(&experiments)
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if d == want
                && left.is_empty()
                && sets == 0
                && field(&s, "/phase") == "Paused"
                && field(&s, "/currentStepIndex") == "2"
            {
                Ok(())
            } else {
                Err(format!(
                    "destinations {d:?}, Services {left:?}, {sets} ReplicaSets, status {s}"
                ))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_experiment_step_routes_to_a_service_per_template_then_removes_them() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "wexp").await;
    istio_setup(&client, &ns).await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
            "stableService": "web-stable", "canaryService": "web-canary",
            "scaleDownDelaySeconds": 0,
            "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
            "steps": [
                {"setWeight": 20},
                {"experiment": {"duration": "5s", "templates": [
                    {"name": "baseline", "specRef": "stable", "weight": 10},
                    {"name": "candidate", "specRef": "canary", "weight": 5}]}},
                {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    // During the step: a destination per template, its weight out of the
    // stable's, through a Service selecting that template's pods by hash.
    let during = eventually("the experiment's destinations in the route", || async {
        let d = destinations(&client, &ns).await?;
        let exps: Vec<(String, i32, String)> = rss
            .list(&ListParams::default().labels("serin.dev/experiment"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|rs| {
                let image = rs
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|p| p.containers[0].image.clone())
                    .unwrap_or_default();
                let hash = rs
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_HASH))
                    .cloned()
                    .unwrap_or_default();
                (
                    image,
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
                    hash,
                )
            })
            .collect();
        let weight_of = |svc: &str| d.iter().find(|(h, _)| h == svc).map(|(_, w)| *w);
        let baseline = exps
            .iter()
            .find(|(i, ..)| i == "example/web:1")
            .map(|e| format!("web-{}", e.2));
        let candidate = exps
            .iter()
            .find(|(i, ..)| i == "example/web:2")
            .map(|e| format!("web-{}", e.2));
        match (baseline, candidate) {
            (Some(b), Some(c))
                if d.len() == 4
                    && weight_of("web-stable") == Some(65)
                    && weight_of("web-canary") == Some(20)
                    && weight_of(&b) == Some(10)
                    && weight_of(&c) == Some(5) =>
            {
                Ok((b, c, exps))
            }
            _ => Err(format!(
                "destinations {d:?}, experiment ReplicaSets {exps:?}"
            )),
        }
    })
    .await;
    let (baseline, candidate, exps) = during;
    for (svc, image) in [(&baseline, "example/web:1"), (&candidate, "example/web:2")] {
        let s = services.get(svc).await.expect("the template's Service");
        let sel = s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let hash = &exps.iter().find(|e| e.0 == image).unwrap().2;
        assert_eq!(sel.get(LABEL_HASH), Some(hash), "{svc}: {sel:?}");
        assert_eq!(
            sel.get("app").map(String::as_str),
            Some("web"),
            "{svc}: {sel:?}"
        );
        let ports = s
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        assert_eq!(ports.len(), 1, "the canary Service's ports: {ports:?}");
        assert_eq!(ports[0].port, 80);
    }
    // Over: the route is the stable's and the canary's again, the Services
    // and ReplicaSets gone, paused at the next step.
    experiment_over(&client, &ns, &["web-stable", "web-canary"]).await;
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_subsets_a_weighted_template_gets_a_service_with_its_container_ports() {
    // DestinationRule subsets, no Services of the Rollout: the template's
    // Service takes its pods' container ports (8080), and the route names
    // it by host beside the two subsets.
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "wexp-dr").await;
    subsets_setup(
        &client,
        &ns,
        json!({"host": "web", "subsets": [
            {"name": "stable", "labels": {"app": "web"}},
            {"name": "canary", "labels": {"app": "web"}}]}),
        json!({"hosts": ["web"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]}),
    )
    .await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
            "scaleDownDelaySeconds": 0,
            "trafficRouting": {"istio": {
                "virtualService": {"name": "web", "routes": ["primary"]},
                "destinationRule": {"name": "web", "canarySubsetName": "canary",
                                    "stableSubsetName": "stable"}}},
            "steps": [
                {"setWeight": 20},
                {"experiment": {"duration": "5s", "templates": [
                    {"name": "candidate", "specRef": "canary", "weight": 10}]}},
                {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc = eventually("the template's destination beside the subsets", || async {
        let d = destinations(&client, &ns).await?;
        let exp: Vec<&(String, i64)> = d.iter().filter(|(h, _)| h.starts_with("web-")).collect();
        if d.len() == 3 && d[0].1 == 70 && d[1].1 == 20 && exp.len() == 1 && exp[0].1 == 10 {
            Ok(exp[0].0.clone())
        } else {
            Err(format!("destinations {d:?}"))
        }
    })
    .await;
    let s = services.get(&svc).await.expect("the template's Service");
    let ports = s.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0].port, 8080);
    experiment_over(&client, &ns, &["web", "web"]).await;
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_metrics_run_as_kubernetes_jobs_owned_by_the_analysis_run() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "jobs").await;
    istio_setup(&client, &ns).await;
    analysis_template(
        &client,
        &ns,
        "job-check",
        json!({"metrics": [{"name": "smoke", "provider": {"job": {
            "metadata": {"labels": {"team": "qa"}, "annotations": {"note": "from the template"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "smoke", "image": "example/smoke:1",
                                "args": ["--target", "web-canary"]}]}}}}}}]}),
    )
    .await;
    let verdict = Arc::new(Mutex::new("hold"));
    let _jobs = job_controller(client.clone(), &ns, verdict.clone());
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
        "steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "job-check"}]}},
                  {"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;

    // 1. The Job, as Argo creates it, while the measurement runs.
    let (run, uid, job) = eventually("the analysis Job to be created", || async {
        let runs = run_statuses(&client, &ns).await?;
        let js = jobs(&client, &ns).await?;
        match (runs.as_slice(), js.as_slice()) {
            // Argo's measurement metadata names the Job.
            ([(name, uid, st)], [job])
                if field(st, "/metricResults/0/measurements/0/phase") == "Running"
                    && field(st, "/metricResults/0/measurements/0/metadata/job-name")
                        == job.metadata.name.clone().unwrap_or_default() =>
            {
                Ok((name.clone(), uid.clone(), job.clone()))
            }
            _ => Err(format!(
                "runs {runs:?}, jobs {:?}",
                js.iter().map(|j| &j.metadata.name).collect::<Vec<_>>()
            )),
        }
    })
    .await;
    let labels = job.metadata.labels.clone().unwrap_or_default();
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(labels.get("analysisrun.argoproj.io/uid"), Some(&uid));
    assert_eq!(labels.get("team").map(String::as_str), Some("qa"));
    assert_eq!(annotations.get("analysisrun.argoproj.io/name"), Some(&run));
    assert_eq!(
        annotations
            .get("analysisrun.argoproj.io/metric-name")
            .map(String::as_str),
        Some("smoke")
    );
    assert_eq!(
        annotations.get("note").map(String::as_str),
        Some("from the template")
    );
    let owner = &job.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("AnalysisRun", run.as_str(), uid.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let spec = job.spec.clone().unwrap_or_default();
    assert_eq!(spec.backoff_limit, Some(0));
    let container = &spec.template.spec.clone().unwrap_or_default().containers[0];
    assert_eq!(container.image.as_deref(), Some("example/smoke:1"));
    assert_eq!(
        container.args.clone().unwrap_or_default(),
        ["--target", "web-canary"]
    );

    // 2. Aborting terminates the run, and its running Job is deleted.
    command(&client, &ns, "web", "abort").await;
    eventually("the running Job to be deleted on abort", || async {
        let js = jobs(&client, &ns).await?;
        let runs = run_statuses(&client, &ns).await?;
        let s = status(&client, &ns, "web").await?;
        if js.is_empty() && field(&s, "/phase") == "Degraded" {
            Ok(())
        } else {
            Err(format!(
                "jobs {:?}, runs {runs:?}, status {s}",
                js.iter().map(|j| &j.metadata.name).collect::<Vec<_>>()
            ))
        }
    })
    .await;

    // 3. A failed Job fails the run, with Argo's metricResults.
    *verdict.lock().unwrap() = "fail";
    command(&client, &ns, "web", "retry").await;
    let failed = eventually("a failed Job to fail the run and abort", || async {
        let runs = run_statuses(&client, &ns).await?;
        let s = status(&client, &ns, "web").await?;
        match runs.as_slice() {
            [_, (_, _, st)]
                if field(st, "/phase") == "Failed" && field(&s, "/phase") == "Degraded" =>
            {
                Ok(st.clone())
            }
            _ => Err(format!("runs {runs:?}, status {s}")),
        }
    })
    .await;
    let m = &failed["metricResults"][0];
    assert_eq!(m["name"], "smoke", "{failed}");
    assert_eq!(m["phase"], "Failed", "{failed}");
    assert_eq!(
        (m["count"].as_i64(), m["failed"].as_i64()),
        (Some(1), Some(1)),
        "{failed}"
    );
    assert_eq!(m["successful"].as_i64(), Some(0), "{failed}");
    let x = &m["measurements"][0];
    assert_eq!(x["phase"], "Failed", "{failed}");
    assert!(
        field(x, "/message").contains("BackoffLimitExceeded"),
        "{failed}"
    );
    assert!(
        !field(x, "/startedAt").is_empty() && !field(x, "/finishedAt").is_empty(),
        "{failed}"
    );
    assert_eq!(failed["runSummary"]["failed"].as_i64(), Some(1), "{failed}");
    assert!(!field(&failed, "/startedAt").is_empty(), "{failed}");
    // The finished Job stays (Argo keeps the latest ones), named in the
    // measurement's metadata.
    let left = jobs(&client, &ns).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        field(x, "/metadata/job-name"),
        left[0].metadata.name.clone().unwrap_or_default(),
        "{failed}"
    );

    // 4. A completed Job passes the step.
    *verdict.lock().unwrap() = "pass";
    command(&client, &ns, "web", "retry").await;
    let passed = eventually("a completed Job to let the canary reach 50%", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        let runs = run_statuses(&client, &ns).await?;
        match runs.as_slice() {
            [_, _, (_, _, st)]
                if w == (50, 50)
                    && field(&s, "/phase") == "Paused"
                    && field(st, "/phase") == "Successful" =>
            {
                Ok(st.clone())
            }
            _ => Err(format!("weights {w:?}, runs {runs:?}, status {s}")),
        }
    })
    .await;
    let m = &passed["metricResults"][0];
    assert_eq!(
        (m["count"].as_i64(), m["successful"].as_i64()),
        (Some(1), Some(1)),
        "{passed}"
    );
    assert_eq!(m["measurements"][0]["phase"], "Successful", "{passed}");
    assert_eq!(
        passed["runSummary"]["successful"].as_i64(),
        Some(1),
        "{passed}"
    );
    assert!(!field(&passed, "/completedAt").is_empty(), "{passed}");
    ctl.abort();
}

/// What [`pod_controller`] saw: the fewest ready pods in the namespace at
/// any pass since `watching` was set, and the most pods at once.
#[derive(Default)]
struct PodWatch {
    watching: bool,
    min_ready: Option<usize>,
    max_pods: usize,
    /// Plays kube with its PodDeletionCost feature off: surplus pods go
    /// newest first, whatever their deletion cost.
    ignore_deletion_cost: bool,
    /// Pods created so far.
    created: usize,
}

fn pod_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The test's stand-in for the ReplicaSet controller and kubelets at pod
/// level (for restartAt): it creates the pods a ReplicaSet lacks (ready at
/// once), and on a scale-down deletes surplus pods in kube's order for
/// ready pods — lowest `controller.kubernetes.io/pod-deletion-cost` first
/// (unless `ignore_deletion_cost`), then the newest — and writes the
/// ReplicaSet's status from its pods.
fn pod_controller(client: Client, ns: &str, seen: Arc<Mutex<PodWatch>>) -> JoinHandle<()> {
    use k8s_openapi::api::core::v1::Pod;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client, ns);
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            let (Ok(sets), Ok(all)) = (
                rs_api.list(&ListParams::default()).await,
                pods.list(&ListParams::default()).await,
            ) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            for rs in sets.items {
                let uid = rs.metadata.uid.clone().unwrap_or_default();
                let name = rs.metadata.name.clone().unwrap_or_default();
                let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as usize;
                let mut mine: Vec<&Pod> = all
                    .items
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.uid == uid)
                    })
                    .collect();
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
                            seen.lock().unwrap().created += 1;
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
                    let ignore_cost = seen.lock().unwrap().ignore_deletion_cost;
                    let cost = |p: &Pod| if ignore_cost { 0 } else { cost(p) };
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
                let live: Vec<Pod> = pods
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| {
                        p.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.uid == uid)
                    })
                    .collect();
                let ready = live.iter().filter(|p| pod_ready(p)).count() as i32;
                let generation = rs.metadata.generation.unwrap_or(0);
                let st = rs.status.clone().unwrap_or_default();
                if st.replicas != live.len() as i32
                    || st.ready_replicas != Some(ready)
                    || st.available_replicas != Some(ready)
                    || st.observed_generation != Some(generation)
                {
                    let _ = rs_api
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"replicas": live.len(),
                                "readyReplicas": ready, "availableReplicas": ready,
                                "fullyLabeledReplicas": live.len(),
                                "observedGeneration": generation}})),
                        )
                        .await;
                }
            }
            if let Ok(after) = pods.list(&ListParams::default()).await {
                let mut s = seen.lock().unwrap();
                if s.watching {
                    let ready = after.items.iter().filter(|p| pod_ready(p)).count();
                    s.min_ready = Some(s.min_ready.map_or(ready, |m| m.min(ready)));
                    s.max_pods = s.max_pods.max(after.items.len());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

async fn pod_names(client: &Client, ns: &str) -> Result<Vec<String>, String> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

async fn events_with_reason(client: &Client, ns: &str, reason: &str) -> usize {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_every_pod_surge_first_and_waits_for_the_disruption_budget() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "restart").await;
    let seen = Arc::new(Mutex::new(PodWatch::default()));
    let _pods = pod_controller(client.clone(), &ns, seen.clone());
    // The disruption controller's verdict is played by the test: none
    // allowed until it says otherwise.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let budget = |allowed: i32| {
        json!({"status": {"disruptionsAllowed": allowed, "currentHealthy": 2,
                          "desiredHealthy": 2, "expectedPods": 2, "observedGeneration": 1}})
    };
    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(budget(0)))
        .await
        .unwrap();
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    let stable = healthy(&client, &ns, "web").await;
    let old = eventually("the first revision's two pods", || async {
        let names = pod_names(&client, &ns).await?;
        if names.len() == 2 {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    // Pod creation times are whole seconds: restart in a later second.
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
    let newest = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        })
        .max()
        .unwrap();
    eventually("the clock to pass the pods' creation second", || async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        if now > newest {
            Ok(())
        } else {
            Err(format!("{now} <= {newest}"))
        }
    })
    .await;
    seen.lock().unwrap().watching = true;
    command(&client, &ns, "web", "restart").await;

    // Surge first; then the budget (0 disruptions allowed) holds it.
    eventually(
        "the restart to surge and then wait for the budget",
        || async {
            let names = pod_names(&client, &ns).await?;
            let waiting =
                events_with_reason(&client, &ns, "RestartWaitingForDisruptionBudget").await;
            if names.len() == 3 && waiting > 0 {
                Ok(())
            } else {
                let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
                let r = api.get("web").await.map_err(|e| e.to_string())?;
                Err(format!(
                    "pods {names:?}, waiting events {waiting}, rollout annotations {:?}",
                    r.metadata.annotations
                ))
            }
        },
    )
    .await;
    let names = pod_names(&client, &ns).await.unwrap();
    assert!(
        old.iter().all(|o| names.contains(o)),
        "an old pod went while the budget allowed no disruption: {names:?}"
    );

    pdbs.patch_status("web", &PatchParams::default(), &Patch::Merge(budget(1)))
        .await
        .unwrap();
    let s = eventually("every old pod to be replaced", || async {
        let names = pod_names(&client, &ns).await?;
        let s = status(&client, &ns, "web").await?;
        let rs = replicas(&client, &ns, &format!("web-{stable}")).await?;
        if names.len() == 2
            && names.iter().all(|n| !old.contains(n))
            && rs == 2
            && !field(&s, "/restartedAt").is_empty()
        {
            Ok(s)
        } else {
            Err(format!("pods {names:?}, replicas {rs}, status {s}"))
        }
    })
    .await;
    assert_eq!(field(&s, "/phase"), "Healthy", "{s}");
    assert_eq!(field(&s, "/stableRS"), stable, "{s}");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let rs = rs_api.get(&format!("web-{stable}")).await.unwrap();
    assert!(
        !rs.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("serin.dev/restart-surge"),
        "the surge mark is removed once scaled back"
    );
    let w = seen.lock().unwrap();
    assert_eq!(
        w.min_ready,
        Some(2),
        "a restart never lowers the ready pods"
    );
    assert_eq!(
        w.max_pods, 3,
        "one replacement at a time (maxSurge 25% of 2)"
    );
    drop(w);
    ctl.abort();
}

/// The driver's error in `serin.dev/status` (message, next retry).
async fn driver_error(client: &Client, ns: &str) -> Result<(String, u64), String> {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let r = api.get("web").await.map_err(|e| e.to_string())?;
    let stored: Value = r
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("serin.dev/status"))
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or("no serin.dev/status")?;
    match (
        stored.pointer("/error/message").and_then(Value::as_str),
        stored.pointer("/error/retryAt").and_then(Value::as_u64),
    ) {
        (Some(m), Some(at)) => Ok((m.to_string(), at)),
        _ => Err(format!("no driver error: {stored}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_stops_when_kube_ignores_the_pod_deletion_cost() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "restart-nocost").await;
    let seen = Arc::new(Mutex::new(PodWatch {
        ignore_deletion_cost: true,
        ..PodWatch::default()
    }));
    let _pods = pod_controller(client.clone(), &ns, seen.clone());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    let stable = healthy(&client, &ns, "web").await;
    let old = eventually("the first revision's two pods", || async {
        let names = pod_names(&client, &ns).await?;
        if names.len() == 2 {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    // Pod creation times are whole seconds: restart in a later second.
    let started = std::time::SystemTime::now();
    eventually("the clock to pass the pods' creation second", || async {
        match started.elapsed() {
            Ok(d) if d >= Duration::from_millis(1100) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    command(&client, &ns, "web", "restart").await;

    // Each scale-back removes the replacement, never the marked old pod;
    // after three in a row the restart stops and says why.
    eventually("the restart to stop with an Event", || async {
        let stalled = events_with_reason(&client, &ns, "RestartStalled").await;
        if stalled > 0 {
            Ok(())
        } else {
            Err(format!("pods {:?}", pod_names(&client, &ns).await))
        }
    })
    .await;
    let (message, _) = eventually("the driver's error", || driver_error(&client, &ns)).await;
    assert!(
        message.contains("restart of ReplicaSet") && message.contains("PodDeletionCost"),
        "{message}"
    );
    let s = eventually("the rollout's ReconcileError condition", || async {
        let s = status(&client, &ns, "web").await?;
        if s.to_string().contains("PodDeletionCost") {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await;
    assert_eq!(field(&s, "/stableRS"), stable, "{s}");
    // Stopped: two more tries of the step (the driver's backoff) neither
    // surge nor remove anything.
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let generation = |rs: ReplicaSet| rs.metadata.generation;
    let gen_before = generation(rs_api.get(&format!("web-{stable}")).await.unwrap());
    let created_before = seen.lock().unwrap().created;
    assert_eq!(
        created_before, 5,
        "two pods, then one replacement per scale-back (three)"
    );
    let (_, mut last) = driver_error(&client, &ns).await.unwrap();
    let mut tries = 0;
    let deadline = Instant::now() + TIMEOUT;
    while tries < 2 {
        assert!(Instant::now() < deadline, "no further try of the step");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, at) = driver_error(&client, &ns).await.unwrap();
        if at != last {
            tries += 1;
            last = at;
        }
    }
    assert_eq!(
        generation(rs_api.get(&format!("web-{stable}")).await.unwrap()),
        gen_before,
        "the ReplicaSet was scaled again after the restart stopped"
    );
    assert_eq!(seen.lock().unwrap().created, created_before);
    let names = pod_names(&client, &ns).await.unwrap();
    assert_eq!(names, old, "the old pods are left running");
    assert_eq!(events_with_reason(&client, &ns, "RestartStalled").await, 1);
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_runs_go_with_the_replica_set_the_history_limit_deletes() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "runhistory").await;
    let (url, ok) = ok_server().await;
    ok.store(1, std::sync::atomic::Ordering::SeqCst);
    analysis_template(
        &client,
        &ns,
        "ok-check",
        json!({"metrics": [{"name": "ok", "count": 1, "successCondition": "result == 1",
            "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}}]}),
    )
    .await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "revisionHistoryLimit": 0,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": template("example/web:1"),
                 "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0,
                     "steps": [{"analysis": {"templates": [{"templateName": "ok-check"}]}}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &r).await.unwrap();
    let h1 = healthy(&client, &ns, "web").await;
    let h2 = deploy(&client, &ns, "example/web:2", &h1).await;
    let run_hashes = || async {
        let mut out: Vec<String> = runs_api(&client, &ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|r| {
                r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_HASH))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        out.sort();
        Ok::<_, String>(out)
    };
    assert_eq!(run_hashes().await.unwrap(), std::slice::from_ref(&h2));
    let h3 = deploy(&client, &ns, "example/web:3", &h2).await;
    eventually(
        "revision 2's ReplicaSet and AnalysisRun to be deleted",
        || async {
            let sets = replica_set_hashes(&client, &ns).await?;
            let runs = run_hashes().await?;
            if sets == [h3.clone()] && runs == [h3.clone()] {
                Ok(())
            } else {
                Err(format!("replica sets {sets:?}, runs {runs:?}"))
            }
        },
    )
    .await;
    ctl.abort();
}

/// The names of the runs in `ns` in `phase`, oldest first.
async fn runs_in(client: &Client, ns: &str, phase: &str) -> Result<Vec<String>, String> {
    Ok(run_statuses(client, ns)
        .await?
        .into_iter()
        .filter(|(_, _, st)| field(st, "/phase") == phase)
        .map(|(name, _, _)| name)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_analysis_runs_beyond_the_run_history_limits_are_deleted() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "runlimits").await;
    let (url, ok) = ok_server().await;
    ok.store(1, std::sync::atomic::Ordering::SeqCst);
    analysis_template(
        &client,
        &ns,
        "ok-check",
        json!({"metrics": [{"name": "ok", "count": 1, "successCondition": "result == 1",
            "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}}}]}),
    )
    .await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), &ns);
    let r: RolloutObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "analysis": {"successfulRunHistoryLimit": 1, "unsuccessfulRunHistoryLimit": 1},
                 "template": template("example/web:1"),
                 "strategy": {"canary": {"maxSurge": 1, "maxUnavailable": 0,
                     "steps": [{"analysis": {"templates": [{"templateName": "ok-check"}]}}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &r).await.unwrap();
    let h1 = healthy(&client, &ns, "web").await;
    let h2 = deploy(&client, &ns, "example/web:2", &h1).await;
    let first = runs_in(&client, &ns, "Successful").await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    let h3 = deploy(&client, &ns, "example/web:3", &h2).await;
    deploy(&client, &ns, "example/web:4", &h3).await;
    // Of three successful runs, the oldest goes (limit 1; a run the
    // status still refers to is not counted); the newest stays. The
    // ReplicaSets stay (revisionHistoryLimit 10): the run limit did it.
    let left = eventually("the oldest successful run to be deleted", || async {
        let runs = runs_in(&client, &ns, "Successful").await?;
        if !runs.contains(&first[0]) {
            Ok(runs)
        } else {
            Err(format!("{runs:?}"))
        }
    })
    .await;
    assert!(
        !left.is_empty() && left.len() <= 2,
        "the newest successful run (and one the status refers to) stay: {left:?}"
    );
    assert_eq!(replica_set_hashes(&client, &ns).await.unwrap().len(), 4);

    // Three failing runs (an abort, two retries): the oldest goes.
    ok.store(0, std::sync::atomic::Ordering::SeqCst);
    set_image(&client, &ns, "web", "example/web:5").await;
    let mut failed: Vec<String> = Vec::new();
    for attempt in 1..=3 {
        if attempt > 1 {
            command(&client, &ns, "web", "retry").await;
        }
        let name = eventually(&format!("failed run {attempt}"), || async {
            let runs = runs_in(&client, &ns, "Failed").await?;
            let s = status(&client, &ns, "web").await?;
            match runs.iter().find(|r| !failed.contains(r)) {
                Some(new) if field(&s, "/phase") == "Degraded" => Ok(new.clone()),
                _ => Err(format!("failed runs {runs:?}, status {s}")),
            }
        })
        .await;
        failed.push(name);
    }
    let left = eventually("the oldest failed run to be deleted", || async {
        let runs = runs_in(&client, &ns, "Failed").await?;
        if !runs.contains(&failed[0]) {
            Ok(runs)
        } else {
            Err(format!("{runs:?}"))
        }
    })
    .await;
    assert!(
        left.contains(&failed[2]),
        "the newest failed run stays: {left:?}"
    );
    assert!(
        !runs_in(&client, &ns, "Successful")
            .await
            .unwrap()
            .is_empty(),
        "the failures' limit leaves the successful runs alone"
    );
    ctl.abort();
}

/// A loopback HTTP server answering every request with `body` (a
/// Prometheus exporter here).
async fn static_server(body: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// One HTTP/1.0 GET over loopback; the response body.
async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    sock.read_to_end(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text))
}

/// A real Prometheus (Debian's /usr/bin/prometheus) scraping `target`
/// every second; killed and its data removed on drop.
struct Prometheus {
    child: std::process::Child,
    dir: std::path::PathBuf,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn prometheus(target: std::net::SocketAddr) -> Prometheus {
    const BIN: &str = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(BIN).exists(),
        "{BIN} is missing: install Debian's `prometheus` package; this test needs a real Prometheus"
    );
    // One directory per Prometheus (tests may share a process).
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "serin-kube-prom-{}-{}",
        std::process::id(),
        STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: canary\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = std::process::Command::new(BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting prometheus");
    Prometheus {
        child,
        dir,
        addr: format!("127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_failing_on_a_real_prometheus_aborts_the_canary() {
    let Some(client) = client().await else { return };
    let exporter = static_server("# TYPE canary_error_ratio gauge\ncanary_error_ratio 0.5\n").await;
    let prom = prometheus(exporter);
    // Polls (deadline) until Prometheus has scraped the series.
    eventually("Prometheus to have scraped the exporter", || async {
        let body = http_get(&prom.addr, "/api/v1/query?query=canary_error_ratio").await?;
        if body.contains("\"0.5\"") {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
    let ns = namespace(&client, "prom").await;
    istio_setup(&client, &ns).await;
    analysis_template(
        &client,
        &ns,
        "error-ratio",
        json!({"metrics": [{"name": "error-ratio", "count": 1,
            "successCondition": "result[0] < 0.05",
            "provider": {"prometheus": {"address": format!("http://{}", prom.addr),
                                        "query": "canary_error_ratio"}}}]}),
    )
    .await;
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
        "steps": [{"setWeight": 20},
                  {"analysis": {"templates": [{"templateName": "error-ratio"}]}},
                  {"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    let stable = healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let run = eventually("the failed analysis to abort the canary", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        let runs = run_statuses(&client, &ns).await?;
        match runs.as_slice() {
            [(_, _, st)]
                if field(&s, "/phase") == "Degraded"
                    && w == (100, 0)
                    && field(st, "/phase") == "Failed" =>
            {
                Ok(st.clone())
            }
            _ => Err(format!("weights {w:?}, runs {runs:?}, status {s}")),
        }
    })
    .await;
    let x = &run["metricResults"][0]["measurements"][0];
    assert_eq!(x["phase"], "Failed", "{run}");
    assert_eq!(field(x, "/value"), "[0.5]", "{run}");
    assert_eq!(
        selector(&client, &ns, "web-stable")
            .await
            .unwrap()
            .as_deref(),
        Some(stable.as_str())
    );
    ctl.abort();
}

/// The test's stand-in for the pods' own `/metrics` behind one exporter:
/// every scrape, each ReplicaSet's revision served 200 more requests — the
/// `stable` one failing 1 %, any other 20 % — as `http_requests_total`
/// counters labelled with the pod-template hash, as an app's client
/// library would export them.
async fn revision_exporter(client: Client, ns: &str, stable: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ns = ns.to_string();
    let totals: Arc<Mutex<std::collections::BTreeMap<String, (u64, u64)>>> = Arc::default();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (client, ns, stable, totals) =
                (client.clone(), ns.clone(), stable.clone(), Arc::clone(&totals));
            async move {
                let hashes = replica_set_hashes(&client, &ns).await.unwrap_or_default();
                let mut t = totals.lock().unwrap();
                for h in hashes {
                    let per_1000 = if h == stable { 10 } else { 200 };
                    let (ok, err) = t.entry(h).or_default();
                    *err += per_1000 / 5;
                    *ok += 200 - per_1000 / 5;
                }
                let mut body = String::from("# TYPE http_requests_total counter\n");
                for (h, (ok, err)) in t.iter() {
                    body += &format!(
                        "http_requests_total{{rollouts_pod_template_hash=\"{h}\",code=\"200\"}} {ok}\n\
                         http_requests_total{{rollouts_pod_template_hash=\"{h}\",code=\"500\"}} {err}\n"
                    );
                }
                body
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_over_a_real_prometheus_aborts_a_canary_with_more_errors() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "judge").await;
    istio_setup(&client, &ns).await;
    let sel = |arg: &str, extra: &str| {
        format!("http_requests_total{{rollouts_pod_template_hash=\"{{{{args.{arg}}}}}\"{extra}}}")
    };
    // Before anything else, so a CRD that refused `plugin` fails here.
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {
        "stableService": "web-stable", "canaryService": "web-canary",
        "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0,
        "trafficRouting": {"istio": {"virtualService": {"name": "web", "routes": ["primary"]}}},
        "steps": [{"setWeight": 20},
                  {"analysis": {"templates": [{"templateName": "judge"}], "args": [
                      {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                      {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}}]}},
                  {"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    let stable = healthy(&client, &ns, "web").await;
    let exporter = revision_exporter(client.clone(), &ns, stable.clone()).await;
    let prom = prometheus(exporter);
    eventually("Prometheus to have scraped the stable revision", || async {
        let body = http_get(&prom.addr, "/api/v1/query?query=http_requests_total").await?;
        if body.contains(&stable) {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
    analysis_template(
        &client,
        &ns,
        "judge",
        json!({"args": [{"name": "canary-hash"}, {"name": "stable-hash"}],
            "metrics": [{"name": "errors", "interval": "1s", "count": 120,
            "provider": {"plugin": {"serin.dev/judge": {
                "address": format!("http://{}", prom.addr), "judge": "error-rate",
                "canary": {"requests": sel("canary-hash", ""), "errors": sel("canary-hash", ",code=\"500\"")},
                "baseline": {"requests": sel("stable-hash", ""), "errors": sel("stable-hash", ",code=\"500\"")}}}}}]}),
    )
    .await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let run = eventually("the judge to abort the canary", || async {
        let s = status(&client, &ns, "web").await?;
        let w = weights(&client, &ns).await?;
        let runs = run_statuses(&client, &ns).await?;
        match runs.as_slice() {
            [(_, _, st)]
                if field(&s, "/phase") == "Degraded"
                    && w == (100, 0)
                    && field(st, "/phase") == "Failed" =>
            {
                Ok(st.clone())
            }
            _ => Err(format!("weights {w:?}, runs {runs:?}, status {s}")),
        }
    })
    .await;
    let measurements = run["metricResults"][0]["measurements"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = measurements.last().expect("a measurement");
    assert_eq!(last["phase"], "Failed", "{run}");
    assert!(
        field(last, "/message").contains("error-rate regression"),
        "{run}"
    );
    let value: Value = serde_json::from_str(&field(last, "/value")).expect("the verdict as JSON");
    assert_eq!(value["decision"], "fail", "{run}");
    assert!(
        value["lowerBound"].as_f64() > value["threshold"].as_f64(),
        "{run}"
    );
    // No earlier measurement failed: the judge decides once, on evidence
    // (an Error is allowed: the canary's series may not be scraped yet).
    assert!(
        measurements[..measurements.len() - 1]
            .iter()
            .all(|m| m["phase"] != "Failed"),
        "{run}"
    );
    assert_eq!(
        selector(&client, &ns, "web-stable")
            .await
            .unwrap()
            .as_deref(),
        Some(stable.as_str())
    );
    ctl.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_only_the_newest_ten_finished_jobs_of_a_metric() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "jobgc").await;
    analysis_template(
        &client,
        &ns,
        "twelve",
        json!({"metrics": [{"name": "smoke", "count": 12, "interval": "200ms",
            "provider": {"job": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                // No command: on a cluster the image's entrypoint runs.
                "containers": [{"name": "smoke", "image": "example/smoke:1"}]}}}}}}]}),
    )
    .await;
    let _jobs = job_controller(client.clone(), &ns, Arc::new(Mutex::new("pass")));
    let _kubelet = kubelet(client.clone(), &ns, Arc::default());
    let ctl = controller(&client, &ns);
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [
            {"analysis": {"templates": [{"templateName": "twelve"}]}}, {"pause": {}}]}}),
    )
    .await;
    healthy(&client, &ns, "web").await;
    set_image(&client, &ns, "web", "example/web:2").await;
    let run = eventually("twelve passing Jobs to pass the run", || async {
        let runs = run_statuses(&client, &ns).await?;
        match runs.as_slice() {
            [(_, _, st)] if field(st, "/phase") == "Successful" => Ok(st.clone()),
            _ => Err(format!("{runs:?}")),
        }
    })
    .await;
    assert_eq!(
        run["metricResults"][0]["successful"].as_i64(),
        Some(12),
        "{run}"
    );
    // Argo's garbage collection: the newest 10 stay, numbered 3..=12.
    let mut left: Vec<u32> = jobs(&client, &ns)
        .await
        .unwrap()
        .iter()
        .filter_map(|j| j.metadata.name.as_deref()?.rsplit('-').next()?.parse().ok())
        .collect();
    left.sort();
    assert_eq!(left, (3..=12).collect::<Vec<_>>(), "{run}");
    ctl.abort();
}

/// One driver step on `web` as the controller runs it, observing the
/// ReplicaSets through `cache`; returns what the step observed.
async fn step_with_cache(
    client: &Client,
    ns: &str,
    cache: &Arc<ReplicaSetCache>,
    driver: &serin_driver::Driver,
) -> Vec<serin_engine::ObservedRevision> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "lag-test".into(),
            instance: None,
        },
    );
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let fresh = api.get("web").await.expect("reading the rollout");
    let mut target = target_of(&fresh).expect("a valid rollout");
    let ad = RolloutAdapters::new(client.clone(), &recorder, Arc::default(), fresh)
        .with_replica_set_cache(cache.clone());
    ad.resolve_revision(&mut target).await.expect("revision");
    let adapters = serin_driver::Adapters {
        platform: &ad,
        router: &ad,
        store: &ad,
        analysis: &ad,
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    if let Err(err) = driver.step(&adapters, &target, &now).await {
        panic!("step: {err}");
    }
    ad.observed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_right_after_its_own_write_sees_it_though_the_replica_set_watch_lags() {
    // The controller observes ReplicaSets from its watch, not a list per
    // reconcile; the watch may lag behind the controller's own writes, and
    // a reconcile must never decide on a view older than its last write
    // (it would see its new ReplicaSet missing, or at its old size).
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "lag").await;
    create_rollout(
        &client,
        &ns,
        "web",
        json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}),
    )
    .await;
    // A watch that never delivers anything after its first (empty)
    // listing: the most a watch can lag.
    let cache = Arc::new(ReplicaSetCache::default());
    cache.apply(&watcher::Event::Init);
    cache.apply(&watcher::Event::InitDone);
    let driver = serin_driver::Driver::new();
    // First step: nothing runs yet, so it creates the first revision's
    // ReplicaSet at the Rollout's size.
    let first = step_with_cache(&client, &ns, &cache, &driver).await;
    assert!(first.is_empty(), "nothing ran before: {first:?}");
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let created = rs_api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(created.len(), 1, "one ReplicaSet created");
    // Second step, the cache still without it: the step sees the
    // ReplicaSet it created (listed from the API server) and creates no
    // other.
    let second = step_with_cache(&client, &ns, &cache, &driver).await;
    assert_eq!(second.len(), 1, "the step's own ReplicaSet: {second:?}");
    assert_eq!(second[0].replicas, 2, "{second:?}");
    let after = rs_api.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(after.len(), 1, "no second ReplicaSet");
    // Once the watch delivers the write, the cache answers again.
    let uid = created[0].metadata.owner_references.as_ref().unwrap()[0]
        .uid
        .clone();
    assert!(cache.owned(&uid).is_none(), "the write is still awaited");
    for mut rs in after {
        serin_platform_kube::strip_replica_set(&mut rs);
        cache.apply(&watcher::Event::Apply(rs));
    }
    let owned = cache.owned(&uid).expect("caught up with the write");
    assert_eq!(owned.len(), 1);
    let third = step_with_cache(&client, &ns, &cache, &driver).await;
    assert_eq!(third, second, "the cache's view is the listing's");
}
