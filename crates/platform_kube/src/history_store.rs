//! Deployment history on a cluster: the records `serin-history`'s tracker
//! makes (one per deployment: revisions, outcome, durations, time to
//! recovery) kept in a ConfigMap per namespace, `serin-deployment-history`
//! (key `records.json`, the newest [`MAX_RECORDS`]), so a restarted
//! controller or a newly elected leader carries on counting where the last
//! one stopped, and `serin report --context …` reads them as `serin up`'s
//! report reads its store.
//!
//! One writer task per controller: the Observer hands it every record the
//! tracker returns; it keeps the namespace's list, upserts by id and
//! applies the ConfigMap (server-side apply as field manager `serin`, the
//! one owner of `data`), draining what queued meanwhile into one write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use serin_history::DeploymentRecord;
use tokio::sync::mpsc;

use crate::{Error, FIELD_MANAGER};

/// The ConfigMap holding a namespace's deployment records.
pub const HISTORY_CONFIGMAP: &str = "serin-deployment-history";
/// Its key: the records as a JSON array, oldest first.
const KEY: &str = "records.json";
/// Records kept per namespace (about 300 bytes each: far below a
/// ConfigMap's 1 MiB); the oldest go first.
pub const MAX_RECORDS: usize = 1000;

/// The namespace of a record (`namespace/name` is how the controller
/// names Rollouts).
fn namespace_of(r: &DeploymentRecord) -> &str {
    r.rollout.split_once('/').map_or("default", |(ns, _)| ns)
}

/// `r` into `list`: replaces the record with its id, else appends; keeps
/// the list in id order and at most [`MAX_RECORDS`] long.
pub(crate) fn upsert(list: &mut Vec<DeploymentRecord>, r: DeploymentRecord) {
    match list.binary_search_by_key(&r.id, |x| x.id) {
        Ok(i) => list[i] = r,
        Err(i) => list.insert(i, r),
    }
    if list.len() > MAX_RECORDS {
        let extra = list.len() - MAX_RECORDS;
        list.drain(..extra);
    }
}

/// The records of `ns` (none when it has no history yet).
pub async fn records(client: &Client, ns: &str) -> Result<Vec<DeploymentRecord>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(HISTORY_CONFIGMAP)
        .await
        .map_err(Error::kube(format!(
            "reading ConfigMap {ns}/{HISTORY_CONFIGMAP}"
        )))?;
    parse(cm.as_ref(), ns)
}

fn parse(cm: Option<&ConfigMap>, ns: &str) -> Result<Vec<DeploymentRecord>, Error> {
    let Some(text) = cm.and_then(|c| c.data.as_ref()).and_then(|d| d.get(KEY)) else {
        return Ok(Vec::new());
    };
    serde_json::from_str(text).map_err(|err| {
        Error::Invalid(format!(
            "ConfigMap {ns}/{HISTORY_CONFIGMAP}: {KEY} is not a list of deployment records ({err}); delete it to start the history over"
        ))
    })
}

/// Every record the controller's scope holds: one namespace's, or every
/// namespace's (oldest first by id within each).
pub(crate) async fn load(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Vec<DeploymentRecord>, Error> {
    if let Some(ns) = namespace {
        return records(client, ns).await;
    }
    let api: Api<ConfigMap> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().fields(&format!("metadata.name={HISTORY_CONFIGMAP}")))
        .await
        .map_err(Error::kube(format!(
            "listing ConfigMaps {HISTORY_CONFIGMAP}"
        )))?;
    let mut out = Vec::new();
    for cm in &list.items {
        let ns = cm.metadata.namespace.as_deref().unwrap_or("default");
        match parse(Some(cm), ns) {
            Ok(rs) => out.extend(rs),
            // One namespace's broken history must not stop the controller.
            Err(err) => tracing::warn!("{err}"),
        }
    }
    out.sort_by_key(|r| r.id);
    Ok(out)
}

/// The task that writes records: send each record the tracker returns.
/// Starts from `loaded` (what [`load`] returned), so a write never drops
/// what an earlier controller wrote.
pub(crate) fn spawn_writer(
    client: Client,
    loaded: &[DeploymentRecord],
) -> mpsc::UnboundedSender<DeploymentRecord> {
    let (tx, mut rx) = mpsc::unbounded_channel::<DeploymentRecord>();
    let mut lists: BTreeMap<String, Vec<DeploymentRecord>> = BTreeMap::new();
    for r in loaded {
        upsert(
            lists.entry(namespace_of(r).to_string()).or_default(),
            r.clone(),
        );
    }
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut touched = std::collections::BTreeSet::new();
            let mut next = Some(first);
            while let Some(r) = next {
                let ns = namespace_of(&r).to_string();
                upsert(lists.entry(ns.clone()).or_default(), r);
                touched.insert(ns);
                next = rx.try_recv().ok();
            }
            for ns in touched {
                let Some(list) = lists.get(&ns) else { continue };
                if let Err(err) = write(&client, &ns, list).await {
                    // The next record writes the whole list again.
                    tracing::warn!(
                        "deployment history: {}",
                        serin_error_chain::error_chain(&err)
                    );
                }
            }
        }
    });
    tx
}

async fn write(client: &Client, ns: &str, list: &[DeploymentRecord]) -> Result<(), Error> {
    let text = serde_json::to_string(list).map_err(|e| Error::Invalid(e.to_string()))?;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": HISTORY_CONFIGMAP, "namespace": ns,
                     "labels": {"app.kubernetes.io/managed-by": "serin-controller"}},
        "data": {KEY: text}});
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.patch(
        HISTORY_CONFIGMAP,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::kube(format!(
        "writing ConfigMap {ns}/{HISTORY_CONFIGMAP}"
    )))?;
    Ok(())
}

/// `serin report` on a cluster: the seed's metrics table over `ns`'s
/// deployments since `since` (e.g. `30d`; none: all), as `serin up`'s
/// `/v1/report` answers it (`{"report": …, "text": …}`).
pub async fn report(client: &Client, ns: &str, since: Option<&str>) -> Result<Value, Error> {
    let now = crate::now_ms();
    let since_ms = match since {
        None => 0,
        Some(s) => {
            let back = serin_history::parse_since(s)
                .map_err(|e| Error::Invalid(format!("since: {}", e.0)))?;
            now.saturating_sub(back)
        }
    };
    let list = records(client, ns).await?;
    let r = serin_history::report(&list, since_ms, now);
    Ok(json!({"report": r, "text": r.to_text()}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serin_history::Outcome;

    fn record(id: u64, outcome: Outcome) -> DeploymentRecord {
        DeploymentRecord {
            id,
            rollout: "prod/web".into(),
            strategy: "canary".into(),
            from_revision: None,
            to_revision: format!("r{id}"),
            started_at_ms: id * 1000,
            ended_at_ms: None,
            outcome,
            abort_reason: None,
            requests: 0,
            failed_requests: 0,
            time_to_rollback_ms: None,
            time_to_recovery_ms: None,
        }
    }

    #[test]
    fn records_are_upserted_by_id_in_order_and_the_oldest_go_first() {
        let mut list = Vec::new();
        upsert(&mut list, record(2, Outcome::InProgress));
        upsert(&mut list, record(1, Outcome::Succeeded));
        upsert(&mut list, record(2, Outcome::Aborted));
        assert_eq!(
            list.iter().map(|r| (r.id, r.outcome)).collect::<Vec<_>>(),
            [(1, Outcome::Succeeded), (2, Outcome::Aborted)]
        );
        for id in 3..=(MAX_RECORDS as u64 + 5) {
            upsert(&mut list, record(id, Outcome::Succeeded));
        }
        assert_eq!(list.len(), MAX_RECORDS);
        assert_eq!(list[0].id, 6);
        assert_eq!(namespace_of(&list[0]), "prod");
    }

    #[test]
    fn a_history_that_is_not_records_is_a_clear_error() {
        let cm = ConfigMap {
            data: Some([(KEY.to_string(), "{\"no\": 1}".to_string())].into()),
            ..Default::default()
        };
        let err = parse(Some(&cm), "prod").unwrap_err();
        assert!(
            err.to_string().contains("prod/serin-deployment-history"),
            "{err}"
        );
        assert!(parse(None, "prod").unwrap().is_empty());
    }
}
