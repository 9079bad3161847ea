//! Replica arithmetic shared by the strategies: surge and unavailability
//! bounds, and one step of a bounded rolling change.

use crate::types::IntOrPercent;

/// The envelope a rolling change must stay inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Ceiling on the sum of desired replicas over all revisions
    /// (`replicas + maxSurge`).
    pub max_total: u32,
    /// Floor on available replicas (`replicas - maxUnavailable`, raised to a
    /// PodDisruptionBudget's `minAvailable`).
    pub min_available: u32,
}

/// Computes the bounds as Kubernetes does: surge rounds up, unavailable rounds
/// down, and when both come out zero, one replica may be unavailable (otherwise
/// nothing could ever move). A PDB's `minAvailable` percentage rounds up, and
/// can only raise the floor.
pub fn bounds(
    replicas: u32,
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
    pdb_min_available: Option<IntOrPercent>,
) -> Bounds {
    let surge = max_surge.resolve(replicas, true);
    let mut unavailable = max_unavailable.resolve(replicas, false).min(replicas);
    if surge == 0 && unavailable == 0 {
        unavailable = 1.min(replicas);
    }
    let floor = replicas - unavailable;
    let pdb_floor = pdb_min_available.map_or(0, |p| p.resolve(replicas, true).min(replicas));
    Bounds {
        max_total: replicas.saturating_add(surge),
        min_available: floor.max(pdb_floor),
    }
}

/// One revision in a rolling change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Replicas the platform currently runs (as last told).
    pub current: u32,
    /// Of those, available.
    pub available: u32,
    /// Where this revision should end up.
    pub target: u32,
}

/// One step of a rolling change: scale revisions towards their targets without
/// leaving `bounds`. Slots earlier in the list scale up first (put the new
/// revision first). Scale-downs remove unavailable replicas before available
/// ones, and remove available ones only while the total stays at or above the
/// floor. Returns the new desired replicas per slot.
///
/// Invariants (checked by property tests):
/// - the sum of the result never exceeds `max(bounds.max_total, sum(current))`;
/// - available replicas that survive (`min(result, available)` summed) stay at
///   or above `min(bounds.min_available, available now)`.
pub fn rolling_step(slots: &[Slot], bounds: Bounds) -> Vec<u32> {
    let mut desired: Vec<u32> = slots.iter().map(|s| s.current).collect();
    let mut total: u32 = desired.iter().sum();
    for (i, s) in slots.iter().enumerate() {
        if desired[i] < s.target {
            let room = bounds.max_total.saturating_sub(total);
            let add = (s.target - desired[i]).min(room);
            desired[i] += add;
            total += add;
        }
    }
    let available: u32 = slots.iter().map(|s| s.available.min(s.current)).sum();
    let mut budget = available.saturating_sub(bounds.min_available);
    // Old revisions sit at the end of the list: drain them first.
    for (i, s) in slots.iter().enumerate().rev() {
        if desired[i] <= s.target {
            continue;
        }
        let mut excess = desired[i] - s.target;
        let unavailable = s.current - s.available.min(s.current);
        let free = excess.min(unavailable);
        desired[i] -= free;
        excess -= free;
        let take = excess.min(budget);
        desired[i] -= take;
        budget -= take;
    }
    desired
}

/// `ceil(replicas × percent / 100)`: how many replicas carry `percent` of the
/// capacity. Argo rounds canary replicas up so a small weight still gets a pod.
pub fn weighted(replicas: u32, percent: u32) -> u32 {
    IntOrPercent::Percent(percent.min(100)).resolve(replicas, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_deployment_bounds_keep_nine_of_twelve() {
        // deployment.yaml: 12 replicas, maxSurge 25 %, maxUnavailable 25 %,
        // PDB minAvailable 75 %.
        let b = bounds(
            12,
            IntOrPercent::Percent(25),
            IntOrPercent::Percent(25),
            Some(IntOrPercent::Percent(75)),
        );
        assert_eq!(
            b,
            Bounds {
                max_total: 15,
                min_available: 9
            }
        );
    }

    #[test]
    fn surge_rounds_up_unavailable_rounds_down() {
        let b = bounds(
            10,
            IntOrPercent::Percent(25),
            IntOrPercent::Percent(25),
            None,
        );
        assert_eq!(b.max_total, 13); // 2.5 -> 3
        assert_eq!(b.min_available, 8); // 10 - floor(2.5)
    }

    #[test]
    fn both_zero_allows_one_unavailable() {
        let b = bounds(4, IntOrPercent::Int(0), IntOrPercent::Int(0), None);
        assert_eq!(
            b,
            Bounds {
                max_total: 4,
                min_available: 3
            }
        );
    }

    #[test]
    fn pdb_raises_the_floor() {
        let b = bounds(
            10,
            IntOrPercent::Int(2),
            IntOrPercent::Int(5),
            Some(IntOrPercent::Int(9)),
        );
        assert_eq!(b.min_available, 9);
    }

    #[test]
    fn first_step_of_the_seed_rolling_update() {
        let b = bounds(
            12,
            IntOrPercent::Percent(25),
            IntOrPercent::Percent(25),
            None,
        );
        let slots = [
            Slot {
                current: 0,
                available: 0,
                target: 12,
            },
            Slot {
                current: 12,
                available: 12,
                target: 0,
            },
        ];
        // 3 new by surge, 3 old removed within the unavailability budget.
        assert_eq!(rolling_step(&slots, b), vec![3, 9]);
    }

    #[test]
    fn unready_old_replicas_go_first_and_cost_nothing() {
        let b = bounds(4, IntOrPercent::Int(0), IntOrPercent::Int(0), None);
        let slots = [
            Slot {
                current: 4,
                available: 0,
                target: 4,
            },
            Slot {
                current: 4,
                available: 2,
                target: 0,
            },
        ];
        // 2 unready old replicas go for free; the 2 available ones must stay
        // (floor 3, and only 2 are available anywhere).
        assert_eq!(rolling_step(&slots, b), vec![4, 2]);
    }

    proptest! {
        #[test]
        fn rolling_step_stays_inside_bounds(
            replicas in 0u32..40,
            surge in 0u32..10,
            unavail in 0u32..10,
            slots in proptest::collection::vec((0u32..50, 0u32..50, 0u32..50), 1..5),
        ) {
            let b = bounds(replicas, IntOrPercent::Int(surge), IntOrPercent::Int(unavail), None);
            let slots: Vec<Slot> = slots
                .into_iter()
                .map(|(c, a, t)| Slot { current: c, available: a.min(c), target: t })
                .collect();
            let out = rolling_step(&slots, b);
            let before: u32 = slots.iter().map(|s| s.current).sum();
            let after: u32 = out.iter().sum();
            prop_assert!(after <= b.max_total.max(before));
            let avail_before: u32 = slots.iter().map(|s| s.available).sum();
            let avail_after: u32 = slots.iter().zip(&out).map(|(s, d)| s.available.min(*d)).sum();
            prop_assert!(avail_after >= b.min_available.min(avail_before));
            for (s, d) in slots.iter().zip(&out) {
                // Never overshoots a target in either direction.
                if s.current <= s.target { prop_assert!(*d <= s.target && *d >= s.current); }
                else { prop_assert!(*d >= s.target && *d <= s.current); }
            }
        }
    }
}
