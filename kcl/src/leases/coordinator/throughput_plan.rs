//! [`plan_by_throughput`]: the taker's decision under [`Balancing::Throughput`], without
//! I/O. The design and its no-flap argument are in `take_plan`'s module docs.
//!
//! [`Balancing::Throughput`]: super::Balancing::Throughput

use std::collections::HashMap;

use super::lease_config::LeaseConfig;
use super::take_plan::{Me, SeenLease, TakePlan};
use crate::leases::Lease;

/// The numbers of [`Balancing::Throughput`](super::Balancing::Throughput), as fractions
/// and KB/s.
#[derive(Debug, Clone, Copy)]
pub(super) struct ThroughputRule {
    /// Hysteresis as a fraction of the fair share.
    pub(super) tolerance: f64,
    /// The least a lease weighs.
    pub(super) min_lease_kbps: f64,
}

/// The round as `plan_take` sorted it out.
#[derive(Debug)]
pub(super) struct Fleet<'a, 'b> {
    /// Every lease, in the caller's (shuffled) order.
    pub(super) view: &'b [SeenLease<'a>],
    /// The worker planning.
    pub(super) me: &'b Me<'b>,
    /// The workers counted, this one included.
    pub(super) workers: usize,
    /// Free leases overdue: taken whatever the balance (within the per-worker limit).
    pub(super) overdue: Vec<&'a Lease>,
    /// The other free (unowned or expired) leases.
    pub(super) available: Vec<&'a Lease>,
    /// Leases held, by owner (this worker's under its own id).
    pub(super) per_owner: HashMap<&'a str, Vec<&'a Lease>>,
}

/// What each lease weighs: its throughput, at least the rule's minimum; a lease without a
/// measurement (new, or of a Java KCL 2.x table) weighs the mean of those measured, or the
/// minimum when none is: then every lease weighs the same, and the balance is by count.
pub(super) fn weigher<'a>(view: &[SeenLease<'a>], rule: &ThroughputRule) -> impl Fn(&Lease) -> f64 {
    let floor = rule.min_lease_kbps.max(f64::MIN_POSITIVE);
    let known: Vec<f64> = view
        .iter()
        .filter_map(|s| s.lease.throughput)
        .map(|t| t.kbps().max(floor))
        .collect();
    let unknown = if known.is_empty() {
        floor
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    move |lease: &Lease| lease.throughput.map_or(unknown, |t| t.kbps().max(floor))
}

/// How much moving a lease of weight `w` narrows a gap of `gap` between its owner and the
/// thief (to `|gap − 2w|`), when that is enough to make the move: more than `slack` or
/// `w`, whichever is less (a light lease moves while it does not overshoot; a heavy one
/// only when it narrows the gap by more than the slack).
pub(super) fn narrowing(gap: f64, w: f64, slack: f64, eps: f64) -> Option<f64> {
    let narrowed = gap - (gap - 2.0 * w).abs();
    (narrowed > slack.min(w) + eps).then_some(narrowed)
}

/// One taker round balancing throughput: see `take_plan`'s module docs.
pub(super) fn plan_by_throughput<'a>(
    fleet: Fleet<'a, '_>,
    rule: &ThroughputRule,
    config: &LeaseConfig,
) -> TakePlan<'a> {
    let Fleet {
        view,
        me,
        workers,
        overdue,
        mut available,
        mut per_owner,
    } = fleet;
    let weight = weigher(view, rule);
    let total: f64 = view.iter().map(|s| weight(s.lease)).sum();
    let share = total / workers as f64;
    let slack = share * rule.tolerance;
    // Sums of floating weights: a difference this small is no difference.
    let eps = total * 1e-9;
    let mut held = me.held.len() + overdue.len();
    let mut mine: f64 = view
        .iter()
        .filter(|s| me.held.contains(&s.lease.lease_key))
        .map(|s| weight(s.lease))
        .sum::<f64>()
        + overdue.iter().map(|l| weight(l)).sum::<f64>();
    let mut plan = TakePlan {
        target: 0,
        workers,
        take: overdue,
        victim: None,
        steal: Vec::new(),
        waiting_on_handoffs: false,
    };
    // Free leases, heaviest first, while under the share.
    available.sort_by(|a, b| weight(b).total_cmp(&weight(a)));
    for lease in available.iter().copied() {
        if mine + eps >= share || held >= config.max_leases_per_worker {
            break;
        }
        plan.take.push(lease);
        mine += weight(lease);
        held += 1;
    }
    if !available.is_empty() || !plan.take.is_empty() {
        plan.target = held;
        return plan;
    }
    // Steal while under the share: from a worker more than the slack above this one, the
    // lease whose move narrows the gap between them the most, if by more than the slack
    // or the lease's own weight, whichever is less.
    per_owner.remove(me.id);
    let mut loads: HashMap<&str, f64> = per_owner
        .iter()
        .map(|(owner, leases)| (*owner, leases.iter().map(|l| weight(l)).sum()))
        .collect();
    while plan.steal.len() < config.max_leases_to_steal_at_one_time
        && held < config.max_leases_per_worker
        && mine + eps < share
    {
        let mut best: Option<(f64, f64, &'a str, usize)> = None;
        let mut pending = false;
        for (owner, leases) in &per_owner {
            let load = loads[owner];
            let gap = load - mine;
            if gap <= slack + eps {
                continue;
            }
            for (i, lease) in leases.iter().enumerate() {
                // A lease pending a graceful handoff moves only once it is over.
                if lease.checkpoint_owner.is_some() {
                    pending = true;
                    continue;
                }
                let Some(narrowed) = narrowing(gap, weight(lease), slack, eps) else {
                    continue;
                };
                // The most narrowing; then the most loaded victim, the smallest id, and
                // the view's order.
                let better = match best {
                    None => true,
                    Some((n, l, o, _)) => {
                        (narrowed, load, std::cmp::Reverse(*owner)) > (n, l, std::cmp::Reverse(o))
                    }
                };
                if better {
                    best = Some((narrowed, load, owner, i));
                }
            }
        }
        let Some((_, _, victim, i)) = best else {
            // Under the share, with leases of a worker above it pending a handoff: they
            // may be stealable once it is over.
            plan.waiting_on_handoffs = pending;
            break;
        };
        let lease = per_owner
            .get_mut(victim)
            .map(|leases| leases.remove(i))
            .expect("a candidate's owner");
        let w = weight(lease);
        *loads.get_mut(victim).expect("a candidate's owner") -= w;
        mine += w;
        held += 1;
        plan.victim.get_or_insert(victim);
        plan.steal.push(lease);
    }
    plan.target = held;
    plan
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::balancing::Balancing;
    use super::super::take_plan::tests::{fresh, plan, settle, table, FLEETS};
    use super::*;
    use crate::leases::Throughput;

    fn by_throughput() -> LeaseConfig {
        LeaseConfig {
            balancing: Balancing::throughput(),
            max_leases_to_steal_at_one_time: usize::MAX,
            ..LeaseConfig::default()
        }
    }

    #[test]
    fn a_thief_under_its_share_only_because_of_pending_handoffs_waits_on_them() {
        // Unmeasured leases weigh alike: the count rule's case.
        let leases = super::super::take_plan::tests::two_joined_one_mid_handoff();
        let view = fresh(&leases);
        let p = plan(&view, "w2", &by_throughput());
        // Two of w0's (2.67 each is the share), then w1's are pending.
        assert_eq!(p.steal.len(), 2, "{p:?}");
        assert!(p.waiting_on_handoffs);
        let mut after = leases.clone();
        for l in &mut after {
            l.checkpoint_owner = None;
        }
        let view = fresh(&after);
        let p = plan(&view, "w2", &by_throughput());
        assert!(!p.waiting_on_handoffs, "{p:?}");
    }

    fn set_kbps(lease: &mut Lease, kbps: f64) {
        lease.throughput = Throughput::from_kbps(kbps);
    }

    /// Leases per worker, sorted by worker id.
    fn counts(leases: &[Lease], workers: usize) -> Vec<usize> {
        (0..workers)
            .map(|i| {
                let id = format!("worker-{i}");
                leases.iter().filter(|l| l.is_owned_by(&id)).count()
            })
            .collect()
    }

    /// Throughput per worker, as the plan weighs it.
    fn loads(leases: &[Lease], workers: usize, rule: &ThroughputRule) -> Vec<f64> {
        let view = fresh(leases);
        let weight = weigher(&view, rule);
        (0..workers)
            .map(|i| {
                let id = format!("worker-{i}");
                leases
                    .iter()
                    .filter(|l| l.is_owned_by(&id))
                    .map(&weight)
                    .sum()
            })
            .collect()
    }

    const RULE: ThroughputRule = ThroughputRule {
        tolerance: 0.1,
        min_lease_kbps: 1.0,
    };

    #[test]
    fn the_holder_of_a_hot_shard_ends_with_fewer_leases_and_stays_so() {
        // 6 shards and 3 workers, balanced by count first (nothing measured yet).
        let mut leases = table(&[None; 6]);
        settle(&mut leases, 3, &by_throughput());
        assert_eq!(counts(&leases, 3), vec![2, 2, 2], "unmeasured: by count");
        // Then one shard turns out to carry 80 % of the traffic.
        let hot = leases[0].lease_key.clone();
        let hot_owner = leases[0].owner.clone().unwrap();
        set_kbps(&mut leases[0], 800.0);
        for l in &mut leases[1..] {
            set_kbps(l, 40.0);
        }
        // Balanced by count, nothing moves.
        assert_eq!(settle(&mut leases, 3, &LeaseConfig::default()), 1);
        assert!(settle(&mut leases, 3, &by_throughput()) > 1, "leases moved");
        let holder = leases
            .iter()
            .find(|l| l.lease_key == hot)
            .and_then(|l| l.owner.clone())
            .unwrap();
        assert_eq!(holder, hot_owner, "the hot lease itself never moves");
        let held = leases.iter().filter(|l| l.is_owned_by(&holder)).count();
        assert_eq!(held, 1, "the hot shard's holder holds it alone");
        let mut c = counts(&leases, 3);
        c.sort();
        assert_eq!(c, vec![1, 2, 3]);
        // Settled: more rounds move nothing, and neither does a change of load within
        // the tolerance.
        assert_eq!(settle(&mut leases, 3, &by_throughput()), 1);
        set_kbps(&mut leases[0], 850.0);
        for l in leases.iter_mut().skip(1).step_by(2) {
            set_kbps(l, 44.0);
        }
        assert_eq!(settle(&mut leases, 3, &by_throughput()), 1, "no flapping");
    }

    #[test]
    fn only_leases_that_narrow_the_gap_enough_move() {
        let eps = 1e-9;
        // Light leases move while they do not overshoot: 2w > w.
        assert_eq!(narrowing(100.0, 1.0, 5.0, eps), Some(2.0));
        // A heavy one only if it narrows the gap by more than the slack.
        assert_eq!(narrowing(100.0, 48.0, 5.0, eps), Some(96.0));
        assert_eq!(narrowing(100.0, 98.0, 5.0, eps), None, "narrows by 4");
        assert_eq!(narrowing(100.0, 150.0, 5.0, eps), None, "widens it");
        assert_eq!(narrowing(1.0, 1.0, 0.2, eps), None, "3/3/2: swaps the gap");
    }

    #[test]
    fn a_steal_that_would_not_narrow_the_gap_by_the_tolerance_is_not_made() {
        // w1: 100 + 10, me: 95 + 5; share 105, slack 10.5: the gap (10) is within it.
        let mut leases = table(&[Some("w1"), Some("w1"), Some("me"), Some("me")]);
        for (l, kbps) in leases.iter_mut().zip([100.0, 10.0, 95.0, 5.0]) {
            set_kbps(l, kbps);
        }
        let p = plan(&fresh(&leases), "me", &by_throughput());
        assert!(p.steal.is_empty() && p.take.is_empty(), "{p:?}");
        // me: 60 + 5; w1: 100 + 45 + 10. Share 110, slack 11, I am 65 under 99.
        // Gap 90: the 45 narrows it to 0 (by 90), the 10 to 70 (by 20), the 100 to 110
        // (widens it): the 45 moves.
        let mut leases = table(&[Some("w1"), Some("w1"), Some("w1"), Some("me"), Some("me")]);
        for (l, kbps) in leases.iter_mut().zip([100.0, 45.0, 10.0, 60.0, 5.0]) {
            set_kbps(l, kbps);
        }
        let p = plan(&fresh(&leases), "me", &by_throughput());
        assert_eq!(p.victim, Some("w1"));
        let stolen: Vec<f64> = p
            .steal
            .iter()
            .map(|l| l.throughput.unwrap().kbps())
            .collect();
        assert_eq!(stolen, vec![45.0]);
        assert_eq!(p.target, 3);
    }

    #[test]
    fn free_leases_are_taken_heaviest_first_while_under_the_share() {
        // A dead worker's leases, measured: 500, 20, 20, 20; w1 holds 30 + 30.
        // Share (620 / 2 = 310): I take the 500 and stop.
        let mut leases = table(&[None, None, None, None, Some("w1"), Some("w1")]);
        for (l, kbps) in leases.iter_mut().zip([20.0, 500.0, 20.0, 20.0, 30.0, 30.0]) {
            set_kbps(l, kbps);
        }
        let p = plan(&fresh(&leases), "me", &by_throughput());
        let taken: Vec<f64> = p
            .take
            .iter()
            .map(|l| l.throughput.unwrap().kbps())
            .collect();
        assert_eq!(taken, vec![500.0]);
        // Once I hold it, w1 (60) takes the three small ones.
        leases[1].owner = Some("me".into());
        let p = plan(&fresh(&leases), "w1", &by_throughput());
        assert_eq!((p.workers, p.take.len(), p.target), (2, 3, 5));
    }

    #[test]
    fn unmeasured_leases_weigh_the_mean_and_idle_ones_the_minimum() {
        let mut leases = table(&[None; 4]);
        set_kbps(&mut leases[0], 30.0);
        set_kbps(&mut leases[1], 0.0);
        let view = fresh(&leases);
        let weight = weigher(&view, &RULE);
        assert_eq!(weight(&leases[0]), 30.0);
        assert_eq!(weight(&leases[1]), 1.0, "idle: the minimum");
        assert_eq!(weight(&leases[2]), 15.5, "unmeasured: the mean of 30 and 1");
        let none = table(&[None; 2]);
        let view = fresh(&none);
        assert_eq!(
            weigher(&view, &RULE)(&none[0]),
            1.0,
            "nothing measured: by count"
        );
    }

    #[test]
    fn unmeasured_fleets_of_every_size_settle_as_by_count() {
        let config = by_throughput();
        for (workers, shards) in FLEETS {
            let mut leases = table(&vec![None; shards]);
            settle(&mut leases, workers, &config);
            assert!(
                leases.iter().all(|l| l.owner.is_some()),
                "{workers}x{shards}"
            );
            let c = counts(&leases, workers);
            let (min, max) = (*c.iter().min().unwrap(), *c.iter().max().unwrap());
            assert!(max <= shards.div_ceil(workers), "{workers}x{shards}: {c:?}");
            assert!(max - min <= 1, "{workers}x{shards}: {c:?}");
            assert_eq!(settle(&mut leases, workers, &config), 1);
        }
    }

    #[test]
    fn the_lease_limit_holds_when_balancing_throughput() {
        let leases = table(&[None; 10]);
        let config = LeaseConfig {
            max_leases_per_worker: 3,
            ..by_throughput()
        };
        let p = plan(&fresh(&leases), "solo", &config);
        assert_eq!((p.take.len(), p.target), (3, 3));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the weights and the first owners, repeated planning on a stable state
        /// settles (every worker in turn, plans carried out at once) and then moves nothing,
        /// every lease owned, and no worker under its share left with a lease it could
        /// still steal by the rule.
        #[test]
        fn repeated_planning_on_a_stable_state_settles_and_stops(
            workers in 1usize..7,
            kbps in prop::collection::vec(prop::option::weighted(0.9, 0.0f64..1000.0), 1..30),
            owners in prop::collection::vec(0usize..8, 30),
        ) {
            let config = by_throughput();
            let mut leases = table(&vec![None; kbps.len()]);
            for (i, (l, k)) in leases.iter_mut().zip(&kbps).enumerate() {
                l.throughput = k.and_then(Throughput::from_kbps);
                // Some start owned (by workers that may be beyond the fleet: gone ones
                // whose leases are not expired count as workers, as in the Java rule).
                if owners[i] < workers {
                    l.owner = Some(format!("worker-{}", owners[i]));
                }
            }
            settle(&mut leases, workers, &config);
            prop_assert!(leases.iter().all(|l| l.owner.is_some()));
            prop_assert_eq!(settle(&mut leases, workers, &config), 1);
            let load = loads(&leases, workers, &RULE);
            let share = load.iter().sum::<f64>() / workers as f64;
            let slack = share * RULE.tolerance;
            let view = fresh(&leases);
            let weight = weigher(&view, &RULE);
            let eps = share * 1e-6;
            for (i, mine) in load.iter().enumerate() {
                if *mine + eps >= share {
                    continue;
                }
                for l in &leases {
                    let owner: usize = l.owner.as_deref().unwrap()["worker-".len()..].parse().unwrap();
                    let gap = load[owner] - mine;
                    prop_assert!(
                        owner == i || gap <= slack + eps
                            || narrowing(gap, weight(l), slack, eps).is_none(),
                        "worker-{} could still steal {}: {:?}", i, l.lease_key, load
                    );
                }
            }
        }
    }
}
