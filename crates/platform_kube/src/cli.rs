//! What `serin get|status|promote|abort|retry|undo|restart|set image
//! --context CTX` needs from a cluster: a Rollout described in the shape of `serin up`'s
//! API (`GET /v1/rollouts/NAME`, so the CLI prints it the same way), and
//! commands carried out through the `serin.dev/command` annotation, waiting
//! for the controller to take it and saying whether it refused it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use serin_engine as e;

use crate::adapters::{Stored, analysis_run, hash_of, revision_of, template_without_hash};
use crate::object::RolloutObject;
use crate::target::target_of;
use crate::{
    ANN_COMMAND, ANN_COMMAND_RESULT, ANN_REVISION, ANN_STATUS, Error, LABEL_HASH, LABEL_ROLLOUT,
};

fn stored_of(obj: &RolloutObject) -> Result<Stored, Error> {
    match obj.annotation(ANN_STATUS) {
        None => Ok(Stored::default()),
        Some(text) => serde_json::from_str(text).map_err(|err| {
            Error::Invalid(format!(
                "annotation {ANN_STATUS} of rollout {} is not Serin's status ({err})",
                obj.name()
            ))
        }),
    }
}

async fn get_rollout(client: &Client, ns: &str, name: &str) -> Result<RolloutObject, Error> {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .map_err(Error::kube(format!("reading rollout {name}")))?
        .ok_or_else(|| Error::Invalid(format!("no rollout {name:?} in namespace {ns}")))
}

/// Every Rollout of `ns`, each as [`describe`] shows it.
pub async fn describe_all(client: &Client, ns: &str) -> Result<Vec<Value>, Error> {
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::kube(format!("listing rollouts in {ns}")))?;
    let mut out = Vec::new();
    for obj in list.items {
        match describe_object(client, &obj).await {
            Ok(v) => out.push(v),
            Err(err) => out.push(json!({"name": obj.name(), "error": err.to_string()})),
        }
    }
    Ok(out)
}

/// The Rollout `name` in the shape of `serin up`'s `GET /v1/rollouts/NAME`:
/// Serin's engine status and route (from the `serin.dev/status` annotation),
/// its revisions with their ReplicaSets' desired/ready counts (no pod list:
/// pods are the cluster's), its AnalysisRuns and the driver's error.
pub async fn describe(client: &Client, ns: &str, name: &str) -> Result<Value, Error> {
    let obj = get_rollout(client, ns, name).await?;
    describe_object(client, &obj).await
}

async fn describe_object(client: &Client, obj: &RolloutObject) -> Result<Value, Error> {
    let ns = obj.namespace();
    let name = obj.name();
    let stored = stored_of(obj)?;
    // A workloadRef's template is its Deployment's (as the controller reads it).
    let resolved = match crate::workload_ref::resolve(client, obj).await? {
        Ok((o, _)) => o,
        Err(_) => obj.clone(),
    };
    let target = target_of(&resolved).ok().map(|mut t| {
        t.spec.template_hash = stored.revision_for(&t.spec.template_hash);
        t
    });
    let (strategy, steps) = match target.as_ref().map(|t| &t.spec.strategy) {
        Some(e::Strategy::Canary(c)) if c.steps.is_empty() => ("rolling", 0),
        Some(e::Strategy::Canary(c)) => ("canary", c.steps.len()),
        Some(e::Strategy::BlueGreen(_)) => ("blueGreen", 0),
        None => ("?", 0),
    };
    let rss = owned_replica_sets(client, obj).await?;
    let mut revs: Vec<(u64, Value)> = rss
        .iter()
        .filter_map(|rs| {
            let hash = rs.labels().get(LABEL_HASH)?.clone();
            let number = rs
                .annotations()
                .get(ANN_REVISION)
                .and_then(|n| n.parse().ok())
                .or_else(|| stored.revisions.get(&hash).copied())
                .unwrap_or(0);
            let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let st = rs.status.as_ref();
            let images: Vec<&str> = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .map(|p| {
                    p.containers
                        .iter()
                        .filter_map(|c| c.image.as_deref())
                        .collect()
                })
                .unwrap_or_default();
            Some((
                number,
                json!({
                    "revision": number, "hash": hash, "images": images,
                    "stable": stored.status.stable_hash.as_ref().is_some_and(|h| h.0 == hash),
                    "desired": desired,
                    "ready": st.and_then(|s| s.ready_replicas).unwrap_or(0).min(desired),
                    "pods": [],
                }),
            ))
        })
        .collect();
    revs.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let runs = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &analysis_run())
        .list(&ListParams::default().labels(&format!("{LABEL_ROLLOUT}={name}")))
        .await
        .map(|l| {
            l.items
                .iter()
                .map(|r| {
                    json!({"name": r.name_any(),
                           "phase": r.data.pointer("/status/phase").cloned().unwrap_or(json!("Pending")),
                           "message": r.data.pointer("/status/message").cloned(),
                           "metricResults": []})
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let awaiting = target
        .as_ref()
        .and_then(|t| awaiting_promotion(&t.spec, &stored.status));
    // The restartAt in force (the manifest's, or `serin restart`'s kept
    // beside it), in milliseconds as `serin up` answers it.
    let restart_at = target.as_ref().and_then(|t| {
        let mut spec = t.spec.clone();
        let _ = stored.overrides.apply(&mut spec);
        spec.restart_at
    });
    Ok(json!({
        "name": name,
        "namespace": ns,
        "strategy": strategy,
        "awaitingPromotion": awaiting,
        "desiredHash": target.as_ref().map(|t| t.spec.template_hash.0.clone()),
        "replicas": target.as_ref().map(|t| t.spec.replicas),
        "steps": steps,
        "status": stored.status,
        "route": stored.route,
        "revisions": revs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "analysisRuns": runs,
        "restartAt": restart_at,
        "driverError": stored.error,
        // Argo's view, for those who know it (a Rollout Serin cannot run
        // says why only here: phase Degraded, message InvalidSpec).
        "argoStatus": obj.status,
    }))
}

/// The ReplicaSets the Rollout owns.
async fn owned_replica_sets(
    client: &Client,
    obj: &RolloutObject,
) -> Result<Vec<ReplicaSet>, Error> {
    let uid = obj.metadata.uid.clone();
    Ok(
        Api::<ReplicaSet>::namespaced(client.clone(), obj.namespace())
            .list(&ListParams::default())
            .await
            .map_err(Error::kube(format!(
                "listing ReplicaSets of rollout {}",
                obj.name()
            )))?
            .items
            .into_iter()
            .filter(|rs| {
                rs.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
                    && !crate::adapters::is_experiment(rs)
            })
            .collect(),
    )
}

/// `serin undo NAME [--to-revision N] --context …`: copies an older
/// revision's pod template (its ReplicaSet's, without the hash label) back
/// into the Rollout's `spec.template`, as `kubectl argo rollouts undo`
/// does; the controller then runs that revision again on its own
/// ReplicaSet (see `RolloutAdapters::resolve_revision`). The revision is
/// `to_revision`, else the newest one older than the current (as `serin
/// undo` on one machine). The write is conditional on the Rollout's
/// version as read. Returns the revision number chosen.
pub async fn undo(
    client: &Client,
    ns: &str,
    name: &str,
    to_revision: Option<u64>,
) -> Result<u64, Error> {
    let obj = get_rollout(client, ns, name).await?;
    crate::workload_ref::template_edit(&obj, "undo")?;
    let stored = stored_of(&obj)?;
    let current = target_of(&obj)
        .map(|t| stored.revision_for(&t.spec.template_hash))
        .map_err(|err| Error::Invalid(format!("rollout {name}: {err}")))?;
    let rss = owned_replica_sets(client, &obj).await?;
    let revisions = rss
        .iter()
        .filter_map(|rs| {
            let hash = hash_of(rs)?;
            let number = match revision_of(rs) {
                0 => stored.revisions.get(hash).copied().unwrap_or(0),
                n => n,
            };
            Some(e::ObservedRevision {
                hash: e::RevisionHash::new(hash),
                number,
                replicas: 0,
                ready: 0,
                available: 0,
                oldest_pod_created: None,
            })
        })
        .collect();
    let observed = e::Observed {
        revisions,
        ..e::Observed::default()
    };
    let hash = e::undo_target(&observed, &current, to_revision)
        .map_err(|err| Error::Invalid(err.to_string()))?;
    let number = observed.revision(&hash).map_or(0, |r| r.number);
    let rs = rss
        .iter()
        .find(|rs| hash_of(rs) == Some(hash.0.as_str()))
        .ok_or_else(|| Error::Invalid(format!("revision {number} has no ReplicaSet")))?;
    let mut new = obj.clone();
    new.spec["template"] = template_without_hash(rs);
    // Unset: the server keeps the managed fields as they are.
    new.metadata.managed_fields = None;
    Api::<RolloutObject>::namespaced(client.clone(), ns)
        .replace(name, &PostParams::default(), &new)
        .await
        .map_err(Error::kube(format!(
            "writing revision {number}'s template to rollout {name}"
        )))?;
    Ok(number)
}

/// Why the rollout waits for a person's `promote` (as `serin up` says it).
fn awaiting_promotion(spec: &e::RolloutSpec, status: &e::RolloutStatus) -> Option<&'static str> {
    if status.abort {
        return None;
    }
    status
        .pause_conditions
        .iter()
        .find_map(|p| match (p.reason, &spec.strategy) {
            (e::PauseReason::CanaryPauseStep, e::Strategy::Canary(c)) => {
                let i = status.current_step_index.unwrap_or(0) as usize;
                matches!(c.steps.get(i), Some(e::Step::Pause(None))).then_some("pause step")
            }
            (e::PauseReason::BlueGreenPause, e::Strategy::BlueGreen(b))
                if !b.auto_promotion_enabled =>
            {
                Some("blue-green promotion")
            }
            (e::PauseReason::InconclusiveAnalysisRun, _) => Some("inconclusive analysis"),
            _ => None,
        })
}

/// Asks the controller to carry out `command` (`promote`, `promote-full`,
/// `abort`, `retry`, `pause`, `resume`, `restart`) on the Rollout: writes
/// the `serin.dev/command` annotation, waits (up to `timeout`) until the
/// controller has removed it, and returns its refusal (left in
/// `serin.dev/command-result`) as an error.
pub async fn command(
    client: &Client,
    ns: &str,
    name: &str,
    command: &str,
    timeout: Duration,
) -> Result<(), Error> {
    get_rollout(client, ns, name).await?;
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    command_on(&api, "rollout", ns, name, command, timeout).await
}

/// `serin abort|retry flagrollout NAME --context …`: as [`command`], on the
/// FlagRollout (`abort` sets the flag back to 0 %, `retry` starts it over).
pub async fn flag_rollout_command(
    client: &Client,
    ns: &str,
    name: &str,
    command: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &crate::flag_rollout_resource());
    api.get_opt(name)
        .await
        .map_err(Error::kube(format!("reading FlagRollout {name}")))?
        .ok_or_else(|| Error::Invalid(format!("no FlagRollout {name:?} in namespace {ns}")))?;
    command_on(&api, "FlagRollout", ns, name, command, timeout).await
}

/// Writes the command annotation on `name` and waits for the controller
/// to take it (it removes the annotation and leaves the outcome in
/// `serin.dev/command-result`).
async fn command_on<K>(
    api: &Api<K>,
    kind: &str,
    ns: &str,
    name: &str,
    command: &str,
    timeout: Duration,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {ANN_COMMAND: command}}})),
    )
    .await
    .map_err(Error::kube(format!("writing the command to {kind} {name}")))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = api
            .get(name)
            .await
            .map_err(Error::kube(format!("reading {kind} {name}")))?;
        let annotations = now.annotations();
        if !annotations.contains_key(ANN_COMMAND) {
            let result = annotations
                .get(ANN_COMMAND_RESULT)
                .map_or("", String::as_str);
            return match result.strip_prefix(&format!("{command}: rejected: ")) {
                Some(why) => Err(Error::Invalid(why.to_string())),
                None => Ok(()),
            };
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Invalid(format!(
                "the controller has not taken the command within {} s (is `serin controller` running for namespace {ns}?); it stays on the {kind} as annotation {ANN_COMMAND}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `serin restart NAME [--in D | --at T] --context …`: asks the controller
/// to restart now (`at` `None`, the controller's clock) or at `at` (ms), as
/// the command `restart [RFC 3339 time]`; the controller keeps it beside the
/// manifest, as `serin restart` does locally. Returns the time in force.
pub async fn restart(
    client: &Client,
    ns: &str,
    name: &str,
    at: Option<u64>,
    timeout: Duration,
) -> Result<u64, Error> {
    let text = match at {
        None => "restart".to_string(),
        Some(ms) => format!("restart {}", serin_clock::format_rfc3339_millis(ms)),
    };
    command(client, ns, name, &text, timeout).await?;
    let obj = get_rollout(client, ns, name).await?;
    stored_of(&obj)?
        .overrides
        .restart
        .map(|r| r.at)
        .ok_or_else(|| {
            Error::Invalid(format!(
                "the controller took the restart of {name} but keeps no restart time (another command since?)"
            ))
        })
}

/// The pod template's container lists `set image` looks in, in Argo's order.
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// Conflicting writes `set image` retries (Argo's plugin: 5 attempts).
const SET_IMAGE_ATTEMPTS: usize = 5;

/// `serin set image NAME CONTAINER=IMAGE --context …`, as `kubectl argo
/// rollouts set image`: the image of every container named `container`
/// (`*`: every container) among the Rollout's `spec.template`'s init,
/// regular and ephemeral containers, written back conditional on the
/// version read (a conflict is read and tried again). A container that is
/// not there is an error and nothing is written.
pub async fn set_image(
    client: &Client,
    ns: &str,
    name: &str,
    container: &str,
    image: &str,
) -> Result<(), Error> {
    if image.is_empty() || image.contains(['\n', '"']) {
        return Err(Error::Invalid(
            "image must be a non-empty single-line string without quotes".into(),
        ));
    }
    let api: Api<RolloutObject> = Api::namespaced(client.clone(), ns);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut obj = get_rollout(client, ns, name).await?;
        crate::workload_ref::template_edit(&obj, "set the image of")?;
        let mut names = Vec::new();
        let mut found = false;
        for list in CONTAINER_LISTS {
            let Some(cs) = obj
                .spec
                .pointer_mut(&format!("/template/spec/{list}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in cs {
                let n = c.get("name").and_then(Value::as_str).unwrap_or_default();
                names.push(n.to_string());
                if n == container || container == "*" {
                    c["image"] = json!(image);
                    found = true;
                }
            }
        }
        if !found {
            return Err(Error::Invalid(format!(
                "rollout {name} has no container {container:?} (containers: {})",
                names.join(", ")
            )));
        }
        // Unset: the server keeps the managed fields as they are.
        obj.metadata.managed_fields = None;
        match api.replace(name, &PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < SET_IMAGE_ATTEMPTS => {}
            Err(err) => {
                return Err(Error::kube(format!("writing the image to rollout {name}"))(
                    err,
                ));
            }
        }
    }
}
