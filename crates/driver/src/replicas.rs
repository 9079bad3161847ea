//! Counting pods as replicas, in one place for every adapter: a pod and its
//! restart replacement are one replica (ready if either is), or a surge
//! would look like spare capacity the engine could scale away.

/// One pod, as any platform sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView<'a> {
    /// Unique name.
    pub name: &'a str,
    /// The pod this one replaces (a `restartAt` surge), while both exist.
    pub replaces: Option<&'a str>,
    /// Passing readiness.
    pub ready: bool,
    /// Ready for at least `minReadySeconds`.
    pub available: bool,
    /// Being terminated (no longer counted).
    pub terminating: bool,
    /// Creation time, milliseconds since the epoch.
    pub created: u64,
}

/// A revision's replicas as the engine counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCount {
    /// Live replicas (a pod and its replacement count once).
    pub replicas: u32,
    /// Replicas with a ready pod.
    pub ready: u32,
    /// Replicas with an available pod.
    pub available: u32,
    /// Creation time of the oldest live pod.
    pub oldest_pod_created: Option<u64>,
}

/// Counts `pods` per replica.
pub fn count_replicas(pods: &[PodView<'_>]) -> ReplicaCount {
    let live: Vec<&PodView<'_>> = pods.iter().filter(|p| !p.terminating).collect();
    let is_replacement = |p: &PodView<'_>| {
        p.replaces
            .is_some_and(|old| live.iter().any(|q| q.name == old))
    };
    let slots: Vec<&&PodView<'_>> = live.iter().filter(|p| !is_replacement(p)).collect();
    let count = |ok: fn(&PodView<'_>) -> bool| {
        slots
            .iter()
            .filter(|p| ok(p) || live.iter().any(|q| q.replaces == Some(p.name) && ok(q)))
            .count() as u32
    };
    ReplicaCount {
        replicas: slots.len() as u32,
        ready: count(|p| p.ready),
        available: count(|p| p.available),
        oldest_pod_created: live.iter().map(|p| p.created).min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod<'a>(name: &'a str, replaces: Option<&'a str>, ready: bool) -> PodView<'a> {
        PodView {
            name,
            replaces,
            ready,
            available: ready,
            terminating: false,
            created: 10,
        }
    }

    #[test]
    fn a_pod_and_its_replacement_are_one_replica() {
        let pods = [
            pod("a", None, false),
            pod("a2", Some("a"), true),
            pod("b", None, true),
        ];
        let c = count_replicas(&pods);
        assert_eq!((c.replicas, c.ready, c.available), (2, 2, 2));
    }

    #[test]
    fn a_replacement_whose_old_pod_is_gone_is_a_replica_and_terminating_pods_are_not() {
        let mut old = pod("a", None, true);
        old.terminating = true;
        let pods = [old, pod("a2", Some("a"), false)];
        let c = count_replicas(&pods);
        assert_eq!((c.replicas, c.ready), (1, 0));
    }
}
