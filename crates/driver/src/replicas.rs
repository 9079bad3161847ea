//! Counting pods as replicas, in one place for every adapter that runs pods
//! itself (the local platform, the simulators): a pod and its restart
//! replacement are one replica (ready if either is), or a surge would look
//! like spare capacity the engine could scale away — and a scale-down would
//! remove half a replica. Kubernetes needs none of this: a ReplicaSet counts
//! its own pods and restarts evict rather than surge.

/// One pod, as any platform sees it. `Id` is whatever names a pod there
/// (a process name, a simulator's number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView<Id> {
    /// Unique name.
    pub id: Id,
    /// The pod this one replaces (a `restartAt` surge), while both exist.
    pub replaces: Option<Id>,
    /// Passing readiness.
    pub ready: bool,
    /// Ready for at least `minReadySeconds`.
    pub available: bool,
    /// Being terminated (no longer counted).
    pub terminating: bool,
    /// Creation time, milliseconds since the epoch.
    pub created: u64,
}

/// One replica: a live pod, and its restart replacement while one runs
/// (indices into the slice given to [`replica_slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSlot {
    /// The pod holding the slot.
    pub pod: usize,
    /// Its replacement, started but not yet taken over.
    pub replacement: Option<usize>,
}

/// The live (non-terminating) replicas among `pods`. A replacement whose old
/// pod is gone or terminating is a replica of its own.
pub fn replica_slots<Id: PartialEq>(pods: &[PodView<Id>]) -> Vec<ReplicaSlot> {
    let live = |id: &Id| pods.iter().any(|q| !q.terminating && q.id == *id);
    let is_replacement = |p: &PodView<Id>| p.replaces.as_ref().is_some_and(live);
    pods.iter()
        .enumerate()
        .filter(|(_, p)| !p.terminating && !is_replacement(p))
        .map(|(i, p)| ReplicaSlot {
            pod: i,
            replacement: pods
                .iter()
                .position(|q| !q.terminating && q.replaces.as_ref() == Some(&p.id)),
        })
        .collect()
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
pub fn count_replicas<Id: PartialEq>(pods: &[PodView<Id>]) -> ReplicaCount {
    let slots = replica_slots(pods);
    let count = |ok: fn(&PodView<Id>) -> bool| {
        slots
            .iter()
            .filter(|s| ok(&pods[s.pod]) || s.replacement.is_some_and(|j| ok(&pods[j])))
            .count() as u32
    };
    ReplicaCount {
        replicas: slots.len() as u32,
        ready: count(|p| p.ready),
        available: count(|p| p.available),
        oldest_pod_created: pods
            .iter()
            .filter(|p| !p.terminating)
            .map(|p| p.created)
            .min(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod<'a>(id: &'a str, replaces: Option<&'a str>, ready: bool) -> PodView<&'a str> {
        PodView {
            id,
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
        assert_eq!(
            replica_slots(&pods),
            vec![
                ReplicaSlot {
                    pod: 0,
                    replacement: Some(1)
                },
                ReplicaSlot {
                    pod: 2,
                    replacement: None
                }
            ]
        );
    }

    #[test]
    fn a_replacement_whose_old_pod_is_gone_is_a_replica_and_terminating_pods_are_not() {
        let mut old = pod("a", None, true);
        old.terminating = true;
        let pods = [old, pod("a2", Some("a"), false)];
        let c = count_replicas(&pods);
        assert_eq!((c.replicas, c.ready), (1, 0));
        assert_eq!(
            replica_slots(&pods),
            vec![ReplicaSlot {
                pod: 1,
                replacement: None
            }]
        );
    }

    #[test]
    fn a_terminating_replacement_frees_its_old_pod() {
        let mut new = pod("a2", Some("a"), true);
        new.terminating = true;
        let pods = [pod("a", None, false), new];
        let c = count_replicas(&pods);
        assert_eq!((c.replicas, c.ready), (1, 0));
    }
}
