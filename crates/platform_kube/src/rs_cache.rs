//! The controller's ReplicaSets, from one watch, by owner: what a reconcile
//! observes instead of listing them from the API server.
//!
//! A label-selected list is answered by reading every ReplicaSet of the
//! namespace, so one list per reconcile made a start-up with N Rollouts cost
//! O(N²) on the API server (bench/k8s-scale.sh). The cache keeps each
//! ReplicaSet stripped to what the driver reads (no pod template, no managed
//! fields, only Serin's and Argo's annotations), indexed by owner uid.
//!
//! Staleness: the watch may lag behind this controller's own writes. Every
//! write to a ReplicaSet (create, scale, restart surge, delete) is recorded
//! with the resourceVersion it returned, and until the watch has delivered
//! that version (or the deletion) the owner's ReplicaSets are listed from
//! the API server as before ([`ReplicaSetCache::owned`] answers `None`). So
//! a reconcile never decides on a view older than its own last write; what
//! others write (the ReplicaSet controller's status) is seen when the watch
//! delivers it, as a watch-triggered reconcile always did.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::runtime::watcher::Event;

use crate::ANN_REVISION;
use crate::adapters::ANN_RESTART_SURGE;

/// Owner uid → ReplicaSet name → ReplicaSet (stripped).
type ByOwner = HashMap<String, BTreeMap<String, Arc<ReplicaSet>>>;

/// A write of this controller the watch has not delivered yet.
#[derive(Clone, Debug, PartialEq)]
enum Awaited {
    /// The ReplicaSet at this resourceVersion (or later).
    Version(String),
    /// The ReplicaSet gone.
    Gone,
}

#[derive(Default)]
struct Inner {
    /// `None` until the first listing is complete.
    by_owner: Option<ByOwner>,
    /// (namespace, name) → owner uids it is indexed under.
    owners_of: HashMap<(String, String), Vec<String>>,
    /// A relist in progress (`Init` … `InitDone`).
    relist: Option<Vec<ReplicaSet>>,
    /// Owner uid → ReplicaSet name → the write awaited.
    awaited: HashMap<String, HashMap<String, Awaited>>,
}

/// See the module documentation.
#[derive(Default)]
pub struct ReplicaSetCache {
    inner: Mutex<Inner>,
}

/// Whether the watch's `have` is at least the written `want`. Equal always
/// counts; otherwise both are compared as the integers the API server
/// issues (etcd revisions). Kubernetes calls resourceVersions opaque: one
/// that is not a number only counts once seen exactly.
fn reached(have: Option<&str>, want: &str) -> bool {
    let Some(have) = have else { return false };
    // No version to wait for (the write returned none): any event of it.
    if have == want || want.is_empty() {
        return true;
    }
    match (have.parse::<u64>(), want.parse::<u64>()) {
        (Ok(h), Ok(w)) => h >= w,
        _ => false,
    }
}

fn key(rs: &ReplicaSet) -> (String, String) {
    (
        rs.metadata.namespace.clone().unwrap_or_default(),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

fn owner_uids(rs: &ReplicaSet) -> Vec<String> {
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.clone())
        .collect()
}

/// Drops what the driver never reads from a cached ReplicaSet: the pod
/// template (the one reader, the undo match in `resolve_revision`, lists
/// from the API server), managed fields, and annotations other than the
/// revision number and a restart's surge.
pub fn strip(rs: &mut ReplicaSet) {
    rs.metadata.managed_fields = None;
    if let Some(a) = rs.metadata.annotations.as_mut() {
        a.retain(|k, _| k == ANN_REVISION || k == ANN_RESTART_SURGE);
    }
    if let Some(spec) = rs.spec.as_mut() {
        spec.template = None;
    }
}

impl Inner {
    fn remove(&mut self, k: &(String, String)) {
        let Some(uids) = self.owners_of.remove(k) else {
            return;
        };
        if let Some(by) = self.by_owner.as_mut() {
            for uid in uids {
                if let Some(m) = by.get_mut(&uid) {
                    m.remove(&k.1);
                    if m.is_empty() {
                        by.remove(&uid);
                    }
                }
            }
        }
    }

    fn insert(&mut self, rs: ReplicaSet) {
        let k = key(&rs);
        self.remove(&k);
        let uids = owner_uids(&rs);
        let rs = Arc::new(rs);
        if let Some(by) = self.by_owner.as_mut() {
            for uid in &uids {
                by.entry(uid.clone())
                    .or_default()
                    .insert(k.1.clone(), rs.clone());
            }
        }
        self.owners_of.insert(k, uids);
    }

    /// Clears the writes `rs` (now seen, `present` or deleted) satisfies.
    fn seen(&mut self, rs: &ReplicaSet, present: bool) {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let rv = rs.metadata.resource_version.as_deref();
        for uid in owner_uids(rs) {
            let Some(w) = self.awaited.get_mut(&uid) else {
                continue;
            };
            let done = match w.get(&name) {
                Some(Awaited::Version(want)) => !present || reached(rv, want),
                Some(Awaited::Gone) => !present,
                None => false,
            };
            if done {
                w.remove(&name);
                if w.is_empty() {
                    self.awaited.remove(&uid);
                }
            }
        }
    }
}

impl ReplicaSetCache {
    /// Applies one watch event (already [`strip`]ped).
    pub fn apply(&self, ev: &Event<ReplicaSet>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match ev {
            Event::Apply(rs) => {
                inner.seen(rs, true);
                inner.insert(rs.clone());
            }
            Event::Delete(rs) => {
                inner.seen(rs, false);
                inner.remove(&key(rs));
            }
            Event::Init => inner.relist = Some(Vec::new()),
            Event::InitApply(rs) => {
                if let Some(l) = inner.relist.as_mut() {
                    l.push(rs.clone());
                }
            }
            Event::InitDone => {
                let listed = inner.relist.take().unwrap_or_default();
                let old: Vec<(String, String)> = inner.owners_of.keys().cloned().collect();
                inner.by_owner = Some(HashMap::new());
                inner.owners_of.clear();
                for rs in &listed {
                    inner.seen(rs, true);
                }
                // Awaited deletions of ReplicaSets the listing no longer has.
                let listed_keys: std::collections::HashSet<_> = listed.iter().map(key).collect();
                for k in old.iter().filter(|k| !listed_keys.contains(*k)) {
                    for w in inner.awaited.values_mut() {
                        if w.get(&k.1) == Some(&Awaited::Gone) {
                            w.remove(&k.1);
                        }
                    }
                }
                inner.awaited.retain(|_, w| !w.is_empty());
                for rs in listed {
                    inner.insert(rs);
                }
            }
        }
    }

    /// The ReplicaSets `owner_uid` owns, as the watch has them — `None`
    /// before the first listing is complete, or while a write of this
    /// controller to one of them has not come back through the watch (the
    /// caller lists from the API server then).
    pub fn owned(&self, owner_uid: &str) -> Option<Vec<ReplicaSet>> {
        let inner = self.inner.lock().ok()?;
        if inner.awaited.contains_key(owner_uid) {
            return None;
        }
        let by = inner.by_owner.as_ref()?;
        Some(
            by.get(owner_uid)
                .map(|m| m.values().map(|rs| (**rs).clone()).collect())
                .unwrap_or_default(),
        )
    }

    /// Records a write of this controller: `rs` as the API server returned
    /// it (create, patch, scale).
    pub fn wrote(&self, owner_uid: &str, name: &str, resource_version: Option<String>) {
        let awaited = match resource_version {
            Some(v) => Awaited::Version(v),
            // No version to wait for: wait for the next event of it.
            None => Awaited::Version(String::new()),
        };
        self.await_write(owner_uid, name, awaited);
    }

    /// Records a deletion by this controller.
    pub fn deleted(&self, owner_uid: &str, name: &str) {
        self.await_write(owner_uid, name, Awaited::Gone);
    }

    fn await_write(&self, owner_uid: &str, name: &str, awaited: Awaited) {
        if let Ok(mut inner) = self.inner.lock() {
            // The watch may have delivered the write before its answer
            // came back: nothing to wait for then.
            let have = inner
                .by_owner
                .as_ref()
                .and_then(|by| by.get(owner_uid))
                .and_then(|m| m.get(name));
            let delivered = match (&awaited, have) {
                (Awaited::Version(want), Some(rs)) => {
                    reached(rs.metadata.resource_version.as_deref(), want)
                }
                (Awaited::Gone, None) => inner.by_owner.is_some(),
                _ => false,
            };
            if delivered {
                return;
            }
            inner
                .awaited
                .entry(owner_uid.to_string())
                .or_default()
                .insert(name.to_string(), awaited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, owner: &str, rv: &str, replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                    "name": "r", "uid": owner, "controller": true}],
                "annotations": {"rollout.argoproj.io/revision": "1", "other": "x"},
                "managedFields": [{"manager": "m"}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}}}
        }))
        .unwrap()
    }

    fn listed(c: &ReplicaSetCache, items: Vec<ReplicaSet>) {
        c.apply(&Event::Init);
        for i in items {
            c.apply(&Event::InitApply(i));
        }
        c.apply(&Event::InitDone);
    }

    fn replicas(v: &[ReplicaSet]) -> Vec<i32> {
        v.iter()
            .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1))
            .collect()
    }

    #[test]
    fn nothing_before_the_first_listing_then_by_owner() {
        let c = ReplicaSetCache::default();
        assert!(c.owned("u1").is_none());
        listed(&c, vec![rs("a", "u1", "5", 1), rs("b", "u2", "6", 2)]);
        assert_eq!(replicas(&c.owned("u1").unwrap()), vec![1]);
        assert_eq!(replicas(&c.owned("u2").unwrap()), vec![2]);
        assert_eq!(c.owned("u3").unwrap().len(), 0);
        c.apply(&Event::Delete(rs("a", "u1", "7", 1)));
        assert_eq!(c.owned("u1").unwrap().len(), 0);
    }

    #[test]
    fn an_own_write_is_awaited_until_the_watch_delivers_it() {
        let c = ReplicaSetCache::default();
        listed(&c, vec![rs("a", "u1", "5", 1)]);
        // Scaled to 3; the API server answered version 9.
        c.wrote("u1", "a", Some("9".into()));
        assert!(c.owned("u1").is_none(), "stale view of an own write");
        c.apply(&Event::Apply(rs("a", "u1", "8", 1)));
        assert!(c.owned("u1").is_none(), "an older event is not the write");
        c.apply(&Event::Apply(rs("a", "u1", "9", 3)));
        assert_eq!(replicas(&c.owned("u1").unwrap()), vec![3]);
        // A created ReplicaSet not in the cache yet.
        c.wrote("u1", "b", Some("12".into()));
        assert!(c.owned("u1").is_none());
        // A later version (the ReplicaSet controller's status) also counts.
        c.apply(&Event::Apply(rs("b", "u1", "13", 1)));
        assert_eq!(c.owned("u1").unwrap().len(), 2);
        // A deletion is awaited until the watch says it is gone.
        c.deleted("u1", "a");
        assert!(c.owned("u1").is_none());
        c.apply(&Event::Apply(rs("a", "u1", "14", 0)));
        assert!(c.owned("u1").is_none());
        c.apply(&Event::Delete(rs("a", "u1", "15", 0)));
        assert_eq!(c.owned("u1").unwrap().len(), 1);
        // A write the watch delivered before its answer came back.
        c.apply(&Event::Apply(rs("b", "u1", "16", 2)));
        c.wrote("u1", "b", Some("16".into()));
        assert_eq!(replicas(&c.owned("u1").unwrap()), vec![2]);
        // Others are not held up by u1's writes.
        c.wrote("u1", "b", Some("20".into()));
        assert!(c.owned("u2").is_some());
    }

    #[test]
    fn a_relist_replaces_everything_and_settles_what_it_shows() {
        let c = ReplicaSetCache::default();
        listed(&c, vec![rs("a", "u1", "5", 1), rs("b", "u1", "6", 1)]);
        c.wrote("u1", "a", Some("9".into()));
        c.deleted("u1", "b");
        listed(&c, vec![rs("a", "u1", "10", 2)]);
        assert_eq!(replicas(&c.owned("u1").unwrap()), vec![2]);
        // A relist older than the write keeps it awaited.
        c.wrote("u1", "a", Some("30".into()));
        listed(&c, vec![rs("a", "u1", "25", 2)]);
        assert!(c.owned("u1").is_none());
    }

    #[test]
    fn strip_keeps_what_the_driver_reads() {
        let mut r = rs("a", "u1", "5", 1);
        strip(&mut r);
        assert!(r.metadata.managed_fields.is_none());
        assert!(r.spec.as_ref().unwrap().template.is_none());
        assert!(r.spec.as_ref().unwrap().selector.match_labels.is_some());
        let a = r.metadata.annotations.unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a["rollout.argoproj.io/revision"], "1");
    }
}
