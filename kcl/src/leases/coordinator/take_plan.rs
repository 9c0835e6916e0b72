//! [`plan_take`]: the lease taker's decision, without I/O: which expired or unowned
//! leases to take, or which leases to steal and from whom; by lease count (the Java KCL
//! 2.x's rule, the default) or by measured throughput ([`Balancing`]).
//!
//! ```text
//!  view: every lease (shuffled by the caller) + expired? ─┐
//!  me: worker id + the leases it holds ───────────────────┼─▶ plan_take ─▶ TakePlan
//!  LeaseConfig: max_leases_per_worker, max steals ────────┘
//!
//!  available = not held by me, and unowned or expired
//!  owners    = the other leases by owner (mine counted as held)
//!  workers   = owners, plus me if I own nothing counted
//!  overdue   = available leases free for a whole round: taken first, whatever the balance
//!  Balancing::LeaseCount:
//!  target = ceil(leases / workers), at most max_leases_per_worker
//!  held ≥ target ─▶ nothing
//!  available     ─▶ take the first (target − held) of them
//!  none          ─▶ steal from the most loaded other worker (ties: smallest id) what it
//!                   holds over target, at most what I need; one lease when it is at
//!                   target and I need more than one (3/3/1 → 3/2/2); at most
//!                   max_leases_to_steal_at_one_time; never a lease pending a graceful
//!                   handoff (checkpointOwner set: it moves once the handoff is over;
//!                   waiting_on_handoffs: the taker looks again within a second)
//!  Balancing::Throughput { tolerance, min } (throughput_plan):
//!  weight(lease) = max(throughputKBps, min); unmeasured: the mean measured weight
//!  share = Σ weights / workers; load(w) = Σ weights of w's leases; slack = tolerance × share
//!  available ─▶ take them heaviest first while load(me) < share
//!  none      ─▶ while load(me) < share: from the workers v with gap = load(v) − load(me)
//!               > slack, steal the lease l with the largest narrowing
//!               = gap − |gap − 2·weight(l)|, if narrowing > min(slack, weight(l))
//!               (ties: most loaded v, smallest id, view order)
//! ```
//!
//! # Balancing by throughput
//! Shards are not equal: one may carry most of a stream's traffic. Each lease's holder
//! measures the bytes its processor is handed (an exponential moving average, alpha 0.5,
//! over windows of the renewal interval: the Java KCL 3.x's `throughputKBps`) and writes it
//! on the lease with the writes it already makes: every renewal without worker heartbeats,
//! every checkpoint, and (with heartbeats, where nothing is renewed) a renewal only when
//! the figure drifted by more than `min_lease_kbps` and by half. So an idle worker makes
//! exactly the calls it made before, and a 3.x table keeps the attribute's name and type
//! (N, KB/s) for the Java KCL.
//!
//! A worker's load is the sum of its leases' weights; a lease weighs its throughput, but at
//! least `min_lease_kbps` (an idle shard still costs calls), and a lease nobody measured
//! yet (new leases, Java KCL 2.x tables) weighs the mean of the measured ones, so that a
//! table without any measurement is balanced by count, exactly as `LeaseCount` does (with
//! equal weights, "take while under the share" takes `ceil(leases / workers)`).
//!
//! Free leases are taken heaviest first while the taker is under its fair share (the
//! greedy "largest first" rule, which keeps one worker from collecting every hot lease).
//! A worker under its share steals from workers more than the tolerance (`slack`, a
//! fraction of the share) above it; it picks the lease whose move narrows the gap between
//! them the most. Moving weight `w` from `v` to `me` turns the gap `g = load(v) − load(me)`
//! into `|g − 2w|`: a light lease moves while it does not overshoot (`w ≤ g / 2` narrows by
//! `2w`), a heavy one only if it narrows the gap by more than the slack, so a hot lease
//! that would leave its owner far below the thief never moves, and neither does anything
//! between workers less than the slack apart. With equal weights this is the count rule:
//! 3/3/1 becomes 3/2/2 and 3/3/2 stays.
//!
//! *No flapping.* With weights standing still, every steal moves `0 < w < g` and so
//! lowers `Σ load²` over the workers by `2w(g − w) > 0`; takes of free leases end once
//! none is free; there are finitely many assignments. So repeated planning on a stable
//! state makes finitely many moves and then none (the property test in `throughput_plan`
//! checks it on random fleets: settled means no more moves, and nobody could still
//! steal). Loads that change by less than the tolerance move nothing. Concurrent thieves
//! planning on the same scan may overshoot a victim; the next rounds correct it, as with
//! counts.
//!
//! Unlike the Java KCL 3.x, which has one leader assign leases by its workers' CPU
//! utilisation, every worker here plans for itself (as the 2.x taker does) on the lease
//! table's throughput figures: nothing else to deploy, no leader to lose.

use std::collections::{HashMap, HashSet};

use super::balancing::Balancing;
use super::lease_config::LeaseConfig;
use super::throughput_plan::{plan_by_throughput, Fleet, ThroughputRule};
use crate::leases::Lease;

/// One lease as the taker sees it in one round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeenLease<'a> {
    /// The lease as scanned.
    pub(crate) lease: &'a Lease,
    /// Whether its counter has not moved for the failover time on this worker's clock.
    pub(crate) expired: bool,
}

/// The worker planning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Me<'a> {
    /// Its id: the `leaseOwner` it writes.
    pub(crate) id: &'a str,
    /// The keys of the leases it holds (and renews) now.
    pub(crate) held: &'a HashSet<String>,
    /// The other workers a fleet shows alive (empty without a fleet): counted as workers
    /// even while they hold nothing, so a newcomer's share is known at once.
    pub(crate) alive: &'a HashSet<String>,
    /// Free leases nobody took for a whole taker round: taken beyond the target (up to the
    /// per-worker limit), so that no lease stays unowned because another worker cannot
    /// take its share.
    pub(crate) overdue: &'a HashSet<String>,
}

/// What one taker round should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TakePlan<'a> {
    /// The number of leases this worker aims for (balancing by throughput: the number it
    /// holds once the plan is carried out).
    pub(crate) target: usize,
    /// The number of workers counted (this one included).
    pub(crate) workers: usize,
    /// Unowned or expired leases to take.
    pub(crate) take: Vec<&'a Lease>,
    /// The worker to steal from, when stealing.
    pub(crate) victim: Option<&'a str>,
    /// Leases to steal: of `victim` first, then of the next most loaded workers.
    pub(crate) steal: Vec<&'a Lease>,
    /// Still short of the target after this plan only because the leases it would steal
    /// are pending a graceful handoff: the taker looks again soon, once they have moved,
    /// rather than a whole taker interval later.
    pub(crate) waiting_on_handoffs: bool,
}

/// Decides one taker round from what this worker sees. Pure: choices among equals follow
/// the order of `view`, so a caller that shuffles it spreads takes at random.
pub(crate) fn plan_take<'a>(
    view: &[SeenLease<'a>],
    me: &Me<'_>,
    config: &LeaseConfig,
) -> TakePlan<'a> {
    let is_available = |seen: &SeenLease<'_>| -> bool {
        if me.held.contains(&seen.lease.lease_key) {
            return false;
        }
        match &seen.lease.owner {
            None => true,
            // Ours in the table but not held (an earlier life of this worker id) is not
            // renewed by anyone: it expires like any other.
            Some(_) => seen.expired,
        }
    };
    let mut available: Vec<&'a Lease> = Vec::new();
    let mut per_owner: HashMap<&'a str, Vec<&'a Lease>> = HashMap::new();
    for seen in view {
        let lease = seen.lease;
        if is_available(seen) {
            available.push(lease);
        } else if let Some(owner) = &lease.owner {
            if me.held.contains(&lease.lease_key) || owner != me.id {
                per_owner.entry(owner.as_str()).or_default().push(lease);
            }
        }
    }
    let mine = me.held.len();
    let mut fleet: HashSet<&str> = per_owner.keys().copied().collect();
    fleet.extend(me.alive.iter().map(String::as_str));
    fleet.insert(me.id);
    let workers = fleet.len();
    // Overdue free leases first, whatever the balance.
    let limit = config.max_leases_per_worker.saturating_sub(mine);
    let overdue: Vec<&'a Lease> = available
        .iter()
        .filter(|l| me.overdue.contains(&l.lease_key))
        .take(limit)
        .copied()
        .collect();
    available.retain(|l| !me.overdue.contains(&l.lease_key));
    if let Balancing::Throughput {
        tolerance_percent,
        min_lease_kbps,
    } = config.balancing
    {
        let fleet = Fleet {
            view,
            me,
            workers,
            overdue,
            available,
            per_owner,
        };
        let rule = ThroughputRule {
            tolerance: f64::from(tolerance_percent) / 100.0,
            min_lease_kbps: f64::from(min_lease_kbps),
        };
        return plan_by_throughput(fleet, &rule, config);
    }
    let target = view
        .len()
        .div_ceil(workers)
        .min(config.max_leases_per_worker);
    let mut plan = TakePlan {
        target,
        workers,
        take: overdue,
        victim: None,
        steal: Vec::new(),
        waiting_on_handoffs: false,
    };
    let mine = mine + plan.take.len();
    if mine >= target {
        return plan;
    }
    let need = target - mine;
    if !available.is_empty() {
        available.truncate(need);
        plan.take.extend(available);
    } else if plan.take.is_empty() {
        // Steal from the most loaded worker, one lease at a time, while it is over the
        // target (or at it, when more than one is needed: e.g. 3/3/1 becomes 3/2/2), up to
        // the limit per round.
        let mut others: Vec<(&'a str, Vec<&'a Lease>)> = per_owner
            .into_iter()
            .filter(|(owner, _)| *owner != me.id)
            .collect();
        let mut need = need;
        while need > 0 && plan.steal.len() < config.max_leases_to_steal_at_one_time {
            let Some((victim, leases)) = others
                .iter_mut()
                .max_by_key(|(owner, v)| (v.len(), std::cmp::Reverse(*owner)))
            else {
                break;
            };
            let over = leases.len() > target;
            let at_target_and_needed = leases.len() == target && need > 1 && target > 0;
            if !(over || at_target_and_needed) {
                break;
            }
            // A lease pending a graceful handoff moves only once it is over.
            let Some(i) = leases.iter().position(|l| l.checkpoint_owner.is_none()) else {
                plan.waiting_on_handoffs = true;
                break;
            };
            if plan.victim.is_none() {
                plan.victim = Some(victim);
            }
            plan.steal.push(leases.remove(i));
            need -= 1;
        }
    }
    plan
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    /// (workers, shards) of the fleets balance is checked for, by the pure plan here and
    /// by the coordinator against a lease store.
    pub(in crate::leases::coordinator) const FLEETS: [(usize, usize); 10] = [
        (1, 1),
        (1, 500),
        (2, 1),
        (2, 8),
        (3, 8),
        (4, 37),
        (7, 3),
        (10, 100),
        (50, 500),
        (50, 51),
    ];

    /// `n` leases, owned as `owners` says (`None`: unowned), keys in order.
    pub(in crate::leases::coordinator) fn table(owners: &[Option<&str>]) -> Vec<Lease> {
        owners
            .iter()
            .enumerate()
            .map(|(i, owner)| {
                let mut l = Lease::new(format!("shardId-{i:012}"), Checkpoint::TrimHorizon);
                l.owner = owner.map(str::to_owned);
                l
            })
            .collect()
    }

    pub(in crate::leases::coordinator) fn fresh(leases: &[Lease]) -> Vec<SeenLease<'_>> {
        leases
            .iter()
            .map(|lease| SeenLease {
                lease,
                expired: false,
            })
            .collect()
    }

    /// The keys `worker` holds: those it owns.
    pub(in crate::leases::coordinator) fn held_by(
        leases: &[Lease],
        worker: &str,
    ) -> HashSet<String> {
        leases
            .iter()
            .filter(|l| l.is_owned_by(worker))
            .map(|l| l.lease_key.clone())
            .collect()
    }

    pub(in crate::leases::coordinator) fn plan<'a>(
        view: &[SeenLease<'a>],
        me: &str,
        config: &LeaseConfig,
    ) -> TakePlan<'a> {
        let leases: Vec<Lease> = view.iter().map(|s| s.lease.clone()).collect();
        let held = held_by(&leases, me);
        plan_take(
            view,
            &Me {
                id: me,
                held: &held,
                alive: &HashSet::new(),
                overdue: &HashSet::new(),
            },
            config,
        )
    }

    pub(in crate::leases::coordinator) fn keys(leases: &[&Lease]) -> Vec<String> {
        leases.iter().map(|l| l.lease_key.clone()).collect()
    }

    /// Every worker plans in turn on the table as it is, and its plan is carried out at
    /// once (as when takes never race); until a round moves nothing.
    pub(in crate::leases::coordinator) fn settle(
        leases: &mut [Lease],
        workers: usize,
        config: &LeaseConfig,
    ) -> usize {
        let ids: Vec<String> = (0..workers).map(|i| format!("worker-{i}")).collect();
        for round in 1.. {
            let mut moves = 0;
            for id in &ids {
                let moved: Vec<String> = {
                    let view = fresh(leases);
                    let p = plan(&view, id, config);
                    keys(&p.take).into_iter().chain(keys(&p.steal)).collect()
                };
                moves += moved.len();
                for l in leases.iter_mut().filter(|l| moved.contains(&l.lease_key)) {
                    l.owner = Some(id.clone());
                }
            }
            if moves == 0 {
                return round;
            }
            assert!(round < 2 * leases.len() + 10, "never settles");
        }
        unreachable!()
    }

    #[test]
    fn fleets_of_every_size_settle_balanced() {
        let config = LeaseConfig::default();
        for (workers, shards) in FLEETS {
            let mut leases = table(&vec![None; shards]);
            settle(&mut leases, workers, &config);
            let mut counts: HashMap<String, usize> = HashMap::new();
            for l in &leases {
                let owner = l.owner.clone().expect("every lease owned");
                *counts.entry(owner).or_default() += 1;
            }
            let mut counts: Vec<usize> = (0..workers)
                .map(|i| counts.get(&format!("worker-{i}")).copied().unwrap_or(0))
                .collect();
            counts.sort();
            let target = shards.div_ceil(workers);
            let (min, max) = (counts[0], counts[workers - 1]);
            assert!(max <= target, "{workers}x{shards}: over target: {counts:?}");
            assert!(max - min <= 1, "{workers}x{shards}: unbalanced: {counts:?}");
            if shards.is_multiple_of(workers) {
                assert_eq!(min, max, "{workers}x{shards}: {counts:?}");
            }
            // Settled means settled: nobody plans anything more.
            assert_eq!(settle(&mut leases, workers, &config), 1);
        }
    }

    /// The table of three workers started together when the second planned before the
    /// third had joined: w0 took all 8, w1 started the handoff of 4 of them (leaseOwner
    /// w1, checkpointOwner w0), and w2, planning now, finds w0's 4 and w1's pending 4.
    pub(in crate::leases::coordinator) fn two_joined_one_mid_handoff() -> Vec<Lease> {
        let mut leases = table(&[Some("w0"); 8]);
        for l in leases.iter_mut().skip(4) {
            l.owner = Some("w1".to_owned());
            l.checkpoint_owner = Some("w0".to_owned());
        }
        leases
    }

    #[test]
    fn a_thief_short_only_because_of_pending_handoffs_waits_on_them() {
        let leases = two_joined_one_mid_handoff();
        let config = LeaseConfig {
            max_leases_to_steal_at_one_time: usize::MAX,
            ..LeaseConfig::default()
        };
        let view = fresh(&leases);
        let p = plan(&view, "w2", &config);
        assert_eq!(p.target, 3);
        // One of w0's (over target); w1's are pending, so it is still short.
        assert_eq!(keys(&p.steal).len(), 1, "{p:?}");
        assert_eq!(p.victim, Some("w0"));
        assert!(p.waiting_on_handoffs);

        // The handoffs over: one of w0's and one of w1's (3/3/2), nothing waited on.
        let mut after = leases.clone();
        for l in &mut after {
            l.checkpoint_owner = None;
        }
        let view = fresh(&after);
        let p = plan(&view, "w2", &config);
        assert_eq!(keys(&p.steal).len(), 2, "{p:?}");
        assert!(!p.waiting_on_handoffs);

        // Short because of the steal limit, not of a handoff: the usual interval.
        let view = fresh(&leases);
        let p = plan(&view, "w2", &LeaseConfig::default());
        assert_eq!(keys(&p.steal).len(), 1, "{p:?}");
        assert!(!p.waiting_on_handoffs);
    }

    #[test]
    fn a_fresh_fleet_of_three_on_eight_shards_spreads_three_three_two() {
        let mut leases = table(&[None; 8]);
        settle(&mut leases, 3, &LeaseConfig::default());
        let mut counts: Vec<usize> = (0..3)
            .map(|i| {
                let id = format!("worker-{i}");
                leases.iter().filter(|l| l.is_owned_by(&id)).count()
            })
            .collect();
        counts.sort();
        assert_eq!(counts, vec![2, 3, 3]);
    }

    #[test]
    fn unowned_and_expired_leases_are_taken_up_to_the_target_in_view_order() {
        let leases = table(&[
            Some("dead"),
            None,
            Some("dead"),
            Some("w2"),
            Some("w2"),
            Some("me"),
        ]);
        let mut view = fresh(&leases);
        for seen in view.iter_mut().filter(|s| s.lease.is_owned_by("dead")) {
            seen.expired = true;
        }
        // Workers: w2 and me ("dead" owns nothing alive): target 3, I hold 1, need 2.
        let p = plan(&view, "me", &LeaseConfig::default());
        assert_eq!((p.workers, p.target), (2, 3));
        assert_eq!(
            keys(&p.take),
            vec!["shardId-000000000000", "shardId-000000000001"]
        );
        assert!(p.steal.is_empty() && p.victim.is_none());
        // Not expired yet: "dead" counts as a worker, and nothing is available but the
        // unowned lease.
        let p = plan(&fresh(&leases), "me", &LeaseConfig::default());
        assert_eq!((p.workers, p.target), (3, 2));
        assert_eq!(keys(&p.take), vec!["shardId-000000000001"]);
    }

    #[test]
    fn a_lease_of_mine_i_do_not_hold_expires_like_any_other() {
        let leases = table(&[Some("me"), Some("w2")]);
        let none = HashSet::new();
        let me = Me {
            id: "me",
            held: &none,
            alive: &none,
            overdue: &none,
        };
        let p = plan_take(&fresh(&leases), &me, &LeaseConfig::default());
        // Not counted for anyone, not available: only w2 and me are workers.
        assert_eq!((p.workers, p.target), (2, 1));
        assert!(p.take.is_empty());
        let mut view = fresh(&leases);
        view[0].expired = true;
        let p = plan_take(&view, &me, &LeaseConfig::default());
        assert_eq!(keys(&p.take), vec!["shardId-000000000000"]);
    }

    #[test]
    fn steals_from_the_most_loaded_worker_within_the_limit() {
        // w1 6, w2 2, me 0: target 3, need 3, w1 is 3 over.
        let owners: Vec<Option<&str>> = [vec![Some("w1"); 6], vec![Some("w2"); 2]].concat();
        let leases = table(&owners);
        let view = fresh(&leases);
        let mut config = LeaseConfig::default();
        let p = plan(&view, "me", &config);
        assert_eq!((p.workers, p.target), (3, 3));
        assert_eq!(p.victim, Some("w1"));
        assert_eq!(p.steal.len(), 1, "one at a time by default");
        assert!(p.steal.iter().all(|l| l.is_owned_by("w1")));
        config.max_leases_to_steal_at_one_time = 5;
        assert_eq!(
            plan(&view, "me", &config).steal.len(),
            3,
            "what w1 has over"
        );
        config.max_leases_to_steal_at_one_time = 0;
        let p = plan(&view, "me", &config);
        assert!(p.steal.is_empty() && p.victim.is_none(), "never steals");
    }

    #[test]
    fn a_worker_at_target_gives_one_lease_only_to_one_short_by_two() {
        let config = LeaseConfig {
            max_leases_to_steal_at_one_time: 5,
            ..LeaseConfig::default()
        };
        // 3/3/1 of 7: target 3, I need 2, the others are at target: one moves (3/2/2).
        let owners: Vec<Option<&str>> =
            [vec![Some("w1"); 3], vec![Some("w2"); 3], vec![Some("me")]].concat();
        let leases = table(&owners);
        let p = plan(&fresh(&leases), "me", &config);
        assert_eq!(p.target, 3);
        assert_eq!(p.steal.len(), 1);
        // 3/3/2 of 8: one short, nobody over target: nothing moves.
        let owners: Vec<Option<&str>> = [
            vec![Some("w1"); 3],
            vec![Some("w2"); 3],
            vec![Some("me"); 2],
        ]
        .concat();
        let leases = table(&owners);
        let p = plan(&fresh(&leases), "me", &config);
        assert!(p.steal.is_empty() && p.take.is_empty(), "{p:?}");
    }

    #[test]
    fn ties_between_victims_go_to_the_smallest_id() {
        let owners: Vec<Option<&str>> = [vec![Some("wb"); 4], vec![Some("wa"); 4]].concat();
        let leases = table(&owners);
        let p = plan(&fresh(&leases), "me", &LeaseConfig::default());
        assert_eq!(p.victim, Some("wa"));
    }

    #[test]
    fn max_leases_per_worker_caps_the_target() {
        let leases = table(&[None; 10]);
        let config = LeaseConfig {
            max_leases_per_worker: 3,
            ..LeaseConfig::default()
        };
        let p = plan(&fresh(&leases), "solo", &config);
        assert_eq!((p.workers, p.target, p.take.len()), (1, 3, 3));
        let mut leases = leases;
        settle(&mut leases, 1, &config);
        assert_eq!(leases.iter().filter(|l| l.owner.is_none()).count(), 7);
    }

    #[test]
    fn a_newcomer_counted_by_the_fleet_steals_its_share_in_one_round() {
        // 8 leases on 3/3/2; a fourth worker the fleet shows alive joins.
        let leases = table(&[
            Some("w1"),
            Some("w1"),
            Some("w1"),
            Some("w2"),
            Some("w2"),
            Some("w2"),
            Some("w3"),
            Some("w3"),
        ]);
        let none = HashSet::new();
        let alive: HashSet<String> = ["w1", "w2", "w3"].map(String::from).into();
        let unlimited = LeaseConfig {
            max_leases_to_steal_at_one_time: usize::MAX,
            ..LeaseConfig::default()
        };
        let me = Me {
            id: "me",
            held: &none,
            alive: &alive,
            overdue: &none,
        };
        let p = plan_take(&fresh(&leases), &me, &unlimited);
        assert_eq!((p.workers, p.target), (4, 2));
        let mut from: Vec<&str> = p.steal.iter().filter_map(|l| l.owner.as_deref()).collect();
        from.sort();
        assert_eq!(from, ["w1", "w2"], "one from each worker over the target");
        // Without the fleet's count it would aim at 3 workers' share, one lease a round.
        let blind = Me { alive: &none, ..me };
        let p = plan_take(&fresh(&leases), &blind, &LeaseConfig::default());
        assert_eq!((p.workers, p.steal.len()), (4, 1));
    }
}
