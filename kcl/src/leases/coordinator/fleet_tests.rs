//! The coordinator with a fleet, on memory stores and a paused clock: deaths seen within
//! the failover time, newcomers served at once, no churn through an outage shorter than
//! the failover time, steals and wrongful declarations noticed at the next beat.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::checkpoint::Checkpoint;
use crate::leases::fleet::MemoryFleetStore;
use crate::leases::{Lease, MemoryLeaseStore};

const FAILOVER: Duration = Duration::from_secs(10);

struct Fleet {
    leases: Arc<MemoryLeaseStore>,
    fleet: Arc<MemoryFleetStore>,
    workers: Vec<LeaseCoordinator>,
    /// Workers still running (the others were "killed": they do nothing any more).
    running: Vec<bool>,
}

impl Fleet {
    async fn new(n: usize, shards: usize) -> Self {
        let leases = Arc::new(MemoryLeaseStore::default());
        for i in 0..shards {
            let lease = Lease::new(format!("shardId-{i:012}"), Checkpoint::TrimHorizon);
            leases.create_lease_if_not_exists(&lease).await.unwrap();
        }
        let fleet = Arc::new(MemoryFleetStore::new());
        let mut f = Self {
            leases,
            fleet,
            workers: Vec::new(),
            running: Vec::new(),
        };
        for _ in 0..n {
            f.join();
        }
        f
    }

    /// A new worker, not started yet (it beats and takes at the next step).
    fn join(&mut self) -> usize {
        let mut config = LeaseConfig::new(FAILOVER);
        config.max_leases_to_steal_at_one_time = usize::MAX;
        let w = LeaseCoordinator::new(
            self.leases.clone() as Arc<dyn LeaseStore>,
            format!("worker-{}", self.workers.len()),
            config,
        )
        .with_fleet(self.fleet.clone());
        self.workers.push(w);
        self.running.push(true);
        self.workers.len() - 1
    }

    /// One heartbeat interval: every running worker beats, and runs a taker round when
    /// its beat says so or it never took (a fresh worker).
    async fn step(&self) {
        tokio::time::advance(LeaseConfig::new(FAILOVER).heartbeat_interval).await;
        for (w, running) in self.workers.iter().zip(&self.running) {
            if !running {
                continue;
            }
            let fresh = w.heartbeat.as_ref().is_some_and(|h| !h.has_looked());
            if w.beat().await || fresh {
                w.take_leases().await.unwrap();
            }
        }
    }

    fn held(&self, i: usize) -> Vec<String> {
        self.workers[i].held_lease_keys()
    }

    fn counts(&self) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|i| self.running[*i])
            .map(|i| self.held(i).len())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_leases_are_taken_within_the_failover_time() {
    let mut f = Fleet::new(3, 12).await;
    for _ in 0..3 {
        f.step().await;
    }
    assert_eq!(f.counts(), [4, 4, 4]);
    let dead = f.held(2);
    f.running[2] = false;
    let killed = Instant::now();
    let mut taken_at = None;
    for _ in 0..20 {
        f.step().await;
        let survivors: HashSet<String> = f.held(0).into_iter().chain(f.held(1)).collect();
        if dead.iter().all(|k| survivors.contains(k)) {
            taken_at = Some(killed.elapsed());
            break;
        }
    }
    let taken_at = taken_at.expect("taken over");
    assert!(taken_at <= FAILOVER, "taken {taken_at:?} after the death");
    assert!(
        taken_at >= LeaseConfig::new(FAILOVER).silence_threshold() - Duration::from_secs(3),
        "not before the worker could be silent: {taken_at:?}"
    );
    assert_eq!(f.counts(), [6, 6]);
    assert_eq!(f.fleet.workers(), ["worker-0", "worker-1"], "declared gone");
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_takes_its_share_at_its_first_round_and_the_others_let_go_at_their_next_beat() {
    let mut f = Fleet::new(3, 8).await;
    for _ in 0..3 {
        f.step().await;
    }
    let mut before = f.counts();
    before.sort();
    assert_eq!(before, [2, 3, 3]);
    let new = f.join();
    f.step().await;
    assert_eq!(f.held(new).len(), 2, "its share at its first round");
    // The victims were told: after their next beat nobody holds a lease twice.
    f.step().await;
    let mut all: Vec<String> = (0..4).flat_map(|i| f.held(i)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8);
    assert_eq!(f.counts().iter().sum::<usize>(), 8, "{:?}", f.counts());
    // Settled: more steps move nothing.
    let settled = f.counts();
    for _ in 0..10 {
        f.step().await;
    }
    assert_eq!(f.counts(), settled);
}

#[tokio::test(start_paused = true)]
async fn an_outage_shorter_than_the_failover_time_moves_no_lease() {
    let f = Fleet::new(2, 6).await;
    for _ in 0..3 {
        f.step().await;
    }
    let before: Vec<Vec<String>> = (0..2).map(|i| f.held(i)).collect();
    f.fleet.set_unavailable(true);
    // 3 heartbeats (7.5 s) without a beat landing anywhere.
    for _ in 0..3 {
        f.step().await;
    }
    f.fleet.set_unavailable(false);
    for _ in 0..8 {
        f.step().await;
    }
    let after: Vec<Vec<String>> = (0..2).map(|i| f.held(i)).collect();
    assert_eq!(after, before, "no lease moved");
}

#[tokio::test(start_paused = true)]
async fn a_worker_cut_off_for_the_failover_time_gives_its_leases_up() {
    let f = Fleet::new(1, 3).await;
    f.step().await;
    let held: Vec<Arc<HeldLease>> = f.workers[0]
        .held_leases()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert_eq!(held.len(), 3);
    f.fleet.set_unavailable(true);
    for _ in 0..3 {
        f.step().await;
    }
    assert!(
        held.iter().all(|h| !h.is_lost()),
        "before the failover time"
    );
    f.step().await;
    f.step().await;
    assert!(held.iter().all(|h| h.is_lost()), "fenced after it");
}

#[tokio::test(start_paused = true)]
async fn a_worker_declared_gone_while_alive_loses_everything_and_comes_back() {
    let f = Fleet::new(2, 4).await;
    for _ in 0..3 {
        f.step().await;
    }
    let victim: Vec<Arc<HeldLease>> = f.workers[1]
        .held_leases()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    assert!(!victim.is_empty());
    // Someone removed worker-1's entry (as a survivor does to a silent worker).
    let beat = f
        .fleet
        .beat("probe", &[], 0, &[])
        .await
        .unwrap()
        .unwrap()
        .beats["worker-1"];
    assert!(f.fleet.remove("worker-1", beat).await.unwrap());
    assert!(f.fleet.remove("probe", 0).await.unwrap());
    f.step().await;
    assert!(victim.iter().all(|h| h.is_lost()), "lost at its next beat");
    for _ in 0..4 {
        f.step().await;
    }
    assert_eq!(f.counts().iter().sum::<usize>(), 4);
    assert!(
        f.fleet.workers().contains(&"worker-1".to_owned()),
        "registered again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_lease_deleted_from_the_table_stops_counting_as_held() {
    // One worker at its target: 2 leases of 2. A shard ends and its lease is deleted, a
    // child appears: the deleted one must not keep the child from being taken.
    let f = Fleet::new(1, 2).await;
    f.step().await;
    let w = &f.workers[0];
    let held = w.held_lease("shardId-000000000000").unwrap();
    held.checkpoint(&Checkpoint::ShardEnd, &[]).await.unwrap();
    assert!(f
        .leases
        .delete_finished_lease("shardId-000000000000")
        .await
        .unwrap());
    let child = Lease::new("shardId-000000000002", Checkpoint::TrimHorizon);
    f.leases.create_lease_if_not_exists(&child).await.unwrap();
    w.take_leases().await.unwrap();
    assert!(held.is_lost());
    assert_eq!(
        w.held_lease_keys(),
        ["shardId-000000000001", "shardId-000000000002"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dynamodb_that_never_answers_does_not_keep_a_worker_from_fencing() {
    let f = Fleet::new(1, 2).await;
    f.step().await;
    let held: Vec<Arc<HeldLease>> = f.workers[0]
        .held_leases()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    f.fleet.set_hanging(true);
    // Beats time out after a heartbeat interval each; after the failover time the
    // worker gives its leases up.
    for _ in 0..8 {
        tokio::time::advance(LeaseConfig::new(FAILOVER).heartbeat_interval).await;
        f.workers[0].beat().await;
    }
    assert!(held.iter().all(|h| h.is_lost()), "fenced");
}

#[tokio::test(start_paused = true)]
async fn a_beat_whose_answer_was_lost_is_not_taken_for_a_removal() {
    let f = Fleet::new(1, 2).await;
    f.step().await;
    let held: Vec<Arc<HeldLease>> = f.workers[0]
        .held_leases()
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    // The beat lands but its answer is lost: twice in a row.
    f.fleet.lose_next_answer();
    f.step().await;
    f.fleet.lose_next_answer();
    f.step().await;
    f.step().await;
    assert!(held.iter().all(|h| !h.is_lost()), "still holding");
    assert_eq!(f.fleet.workers(), ["worker-0"]);
}
