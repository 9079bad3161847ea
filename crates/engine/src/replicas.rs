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

/// Canary and stable replica counts that approximate `weight` % of traffic
/// when there is no traffic router and pods are the only lever (Argo's
/// `approximateWeightedCanaryStableReplicaCounts`, utils/replicaset/canary.go,
/// ported case for case).
///
/// The candidates are the ceiling and the floor of `replicas × weight / 100`
/// over `replicas` pods, and — when `max_surge > 0` — the same counts over
/// `replicas + 1` pods; the one whose share is closest to `weight` wins (the
/// first listed on a tie). A zero count is only a candidate at weight 0 or
/// 100 or for a single replica that cannot surge, so between 1 and 99 % both
/// revisions keep at least one pod whenever two pods fit; a floor exactly as
/// far from the weight as the ceiling is dropped (the larger canary wins).
///
/// Returns `(canary, stable)`; their sum is `replicas` or `replicas + 1`.
pub fn basic_canary_split(replicas: u32, weight: u32, max_surge: u32) -> (u32, u32) {
    if replicas == 0 {
        return (0, 0);
    }
    let weight = weight.min(100);
    let product = u64::from(replicas) * u64::from(weight);
    // Exact in integers; Argo's float ceil/floor of product/100 agree.
    let ceil = u32::try_from(product.div_ceil(100)).unwrap_or(u32::MAX);
    let floor = u32::try_from(product / 100).unwrap_or(u32::MAX);
    let zero_allowed = weight == 0 || weight == 100 || (replicas == 1 && max_surge == 0);
    let mut options: Vec<(u32, u32)> = Vec::with_capacity(4);
    if ceil < replicas || zero_allowed {
        options.push((ceil, replicas));
    }
    if !floor_ceiling_tied(weight, replicas) && (floor != 0 || zero_allowed) {
        options.push((floor, replicas));
    }
    if max_surge > 0 {
        let total = replicas.saturating_add(1);
        options.push((ceil, total));
        if !floor_ceiling_tied(weight, total) && (floor != 0 || zero_allowed) {
            options.push((floor, total));
        }
    }
    let Some(&first) = options.first() else {
        // Unreachable (the surge candidate or `ceil < replicas` always
        // exists); Argo returns the same.
        return (0, replicas);
    };
    let mut best = first;
    let mut best_delta = weight_delta(weight, first.0, first.1);
    for &o in &options[1..] {
        let d = weight_delta(weight, o.0, o.1);
        if d < best_delta {
            best = o;
            best_delta = d;
        }
    }
    (best.0, best.1 - best.0)
}

/// Whether `total × weight / 100` ends in exactly one half, so the floor and
/// the ceiling are equally far from the weight. Computed in `f64` as Argo
/// does, so borderline cases round the same way.
fn floor_ceiling_tied(weight: u32, total: u32) -> bool {
    let x = f64::from(total) * (f64::from(weight) / 100.0);
    x - x.trunc() == 0.5
}

/// How far `canary` of `total` pods is from `weight` %, in `f64` as Argo
/// computes it (ties between candidates then resolve identically).
fn weight_delta(weight: u32, canary: u32, total: u32) -> f64 {
    let actual = f64::from(canary) * 100.0 / f64::from(total);
    (actual - f64::from(weight)).abs()
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

    /// Argo's `TestApproximateWeightedNewStableReplicaCounts`
    /// (utils/replicaset/canary_test.go), row for row:
    /// (replicas, weight, maxSurge, expected canary, expected stable).
    const ARGO_SPLIT_TABLE: &[(u32, u32, u32, u32, u32)] = &[
        (0, 0, 0, 0, 0),
        (0, 50, 0, 0, 0),
        (0, 100, 0, 0, 0),
        (0, 0, 1, 0, 0),
        (0, 50, 1, 0, 0),
        (0, 100, 1, 0, 0),
        (1, 0, 0, 0, 1),
        (1, 1, 0, 0, 1),
        (1, 49, 0, 0, 1),
        (1, 50, 0, 1, 0),
        (1, 99, 0, 1, 0),
        (1, 100, 0, 1, 0),
        (1, 0, 1, 0, 1),
        (1, 1, 1, 1, 1),
        (1, 49, 1, 1, 1),
        (1, 50, 1, 1, 1),
        (1, 99, 1, 1, 1),
        (1, 100, 1, 1, 0),
        (2, 0, 0, 0, 2),
        (2, 1, 0, 1, 1),
        (2, 50, 0, 1, 1),
        (2, 99, 0, 1, 1),
        (2, 100, 0, 2, 0),
        (2, 0, 1, 0, 2),
        (2, 1, 1, 1, 2),
        (2, 50, 1, 1, 1),
        (2, 99, 1, 2, 1),
        (2, 100, 1, 2, 0),
        (3, 10, 0, 1, 2),
        (3, 25, 0, 1, 2),
        (3, 33, 0, 1, 2),
        (3, 34, 0, 1, 2),
        (3, 49, 0, 1, 2),
        (3, 50, 0, 2, 1),
        (3, 10, 1, 1, 3),
        (3, 25, 1, 1, 3),
        (3, 33, 1, 1, 2),
        (3, 34, 1, 1, 2),
        (3, 49, 1, 2, 2),
        (3, 50, 1, 2, 2),
        (10, 0, 1, 0, 10),
        (10, 1, 0, 1, 9),
        (10, 14, 0, 1, 9),
        (10, 15, 0, 2, 8),
        (10, 16, 0, 2, 8),
        (10, 99, 0, 9, 1),
        (10, 100, 1, 10, 0),
        (10, 0, 1, 0, 10),
        (10, 1, 1, 1, 10),
        (10, 18, 1, 2, 9),
        (10, 19, 1, 2, 9),
        (10, 20, 1, 2, 8),
        (10, 23, 1, 2, 8),
        (10, 24, 1, 3, 8),
        (10, 25, 1, 3, 8),
        (10, 99, 1, 10, 1),
        (10, 100, 1, 10, 0),
    ];

    #[test]
    fn basic_canary_split_matches_argos_table() {
        let mut wrong = Vec::new();
        for &(replicas, weight, surge, canary, stable) in ARGO_SPLIT_TABLE {
            let got = basic_canary_split(replicas, weight, surge);
            if got != (canary, stable) {
                wrong.push(format!(
                    "replicas {replicas} weight {weight} surge {surge}: got {got:?}, Argo ({canary}, {stable})"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn issue_examples_keep_stable_running() {
        // replicas 1, setWeight 50, default maxSurge 25 % (rounds up to 1).
        let surge = IntOrPercent::Percent(25).resolve(1, true);
        assert_eq!(basic_canary_split(1, 50, surge), (1, 1));
        // replicas 3, setWeight 20.
        let surge = IntOrPercent::Percent(25).resolve(3, true);
        assert_eq!(basic_canary_split(3, 20, surge), (1, 3));
    }

    proptest! {
        #[test]
        fn basic_canary_split_never_empties_a_side_between_1_and_99(
            replicas in 1u32..200,
            weight in 1u32..100,
            surge in 0u32..5,
        ) {
            let (canary, stable) = basic_canary_split(replicas, weight, surge);
            let total = canary + stable;
            prop_assert!(total == replicas || (surge > 0 && total == replicas + 1));
            // Two pods fit (replicas >= 2 or a surge pod): both sides run.
            if replicas >= 2 || surge > 0 {
                prop_assert!(canary >= 1 && stable >= 1, "{canary}/{stable}");
            }
        }
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
