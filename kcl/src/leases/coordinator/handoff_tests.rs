//! Graceful handoffs through the coordinator, on memory stores and a paused clock: a
//! lease moved from a live worker is handed over (its previous owner may still checkpoint,
//! the next owner waits and starts from that checkpoint), forced after the patience, and
//! a pending handoff written by a Java KCL 3.x leader is honoured; either side leaving (or
//! the next owner declared gone, or losing the lease) meanwhile keeps the previous
//! owner's last checkpoint.

use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use super::test_support::fresh_table;
use super::*;
use crate::checkpoint::Checkpoint;
use crate::leases::fleet::MemoryFleetStore;
use crate::leases::{Lease, MemoryLeaseStore};

const FAILOVER: Duration = Duration::from_secs(10);

fn worker(store: &Arc<MemoryLeaseStore>, id: &str) -> LeaseCoordinator {
    LeaseCoordinator::new(
        store.clone() as Arc<dyn LeaseStore>,
        id,
        LeaseConfig::new(FAILOVER),
    )
}

async fn stored(store: &MemoryLeaseStore, key: &str) -> Lease {
    store.get_lease(key).await.unwrap().unwrap()
}

/// w0 holds all of `shards` leases; w1 arrives and steals one by a handoff: its key.
async fn w1_starts_a_handoff(
    store: &Arc<MemoryLeaseStore>,
    w0: &LeaseCoordinator,
    w1: &LeaseCoordinator,
) -> String {
    w0.take_leases().await.unwrap();
    let o = w1.take_leases().await.unwrap();
    assert_eq!(o.stolen.len(), 1, "{o:?}");
    let key = o.stolen[0].clone();
    let l = stored(store, &key).await;
    assert_eq!(l.owner.as_deref(), Some("w1"));
    assert_eq!(l.checkpoint_owner.as_deref(), Some("w0"));
    key
}

#[tokio::test(start_paused = true)]
async fn a_stolen_lease_is_handed_over_with_the_previous_owners_last_checkpoint() {
    let store = fresh_table(2).await;
    let (w0, w1) = (worker(&store, "w0"), worker(&store, "w1"));
    w0.take_leases().await.unwrap();
    let before = store.list_leases().await.unwrap();
    let key = w1_starts_a_handoff(&store, &w0, &w1).await;
    let counter = before.iter().find(|l| l.lease_key == key).unwrap().counter;
    assert_eq!(
        stored(&store, &key).await.counter,
        counter,
        "the start leaves the counter"
    );
    // The next owner holds it but may not start: the previous one is still at it.
    assert_eq!(w1.held_lease_keys(), vec![key.clone()]);
    assert!(!w1.check_incoming_handoff(&key).await);
    // The previous owner's renewal is refused (a handoff is pending): it reads the lease,
    // learns of the handoff, and renews it as it is now.
    let held = w0.held_lease(&key).unwrap();
    w0.renew_leases().await;
    assert!(!held.is_lost());
    assert_eq!(held.standing_now(), Some(Standing::Outgoing));
    assert!(!w0.held_lease_keys().contains(&key), "counted as w1's now");
    // Its processor's last checkpoint is accepted.
    let last = Checkpoint::at(
        "49590338271490256608559692538361571095921575989136588898",
        0,
    )
    .unwrap();
    held.checkpoint(&last, &[]).await.unwrap();
    let l = stored(&store, &key).await;
    assert_eq!(l.checkpoint, last);
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), Some("w0"))
    );
    // Its consumer stopped: it hands the lease over and forgets it.
    w0.end_outgoing_handoff(&key, false).await;
    assert!(held.is_lost());
    assert!(w0.held_lease(&key).is_none());
    let l = stored(&store, &key).await;
    assert_eq!(l.checkpoint_owner, None);
    assert_eq!(l.owner.as_deref(), Some("w1"));
    // The next owner starts, from that checkpoint.
    assert!(w1.check_incoming_handoff(&key).await);
    let mine = w1.held_lease(&key).unwrap().lease().await;
    assert_eq!(mine.checkpoint, last);
    assert_eq!(mine.counter, l.counter);
    // And writes as its owner from then on.
    w1.renew_leases().await;
    assert!(!w1.held_lease(&key).unwrap().is_lost());
}

#[tokio::test(start_paused = true)]
async fn a_previous_owner_that_never_hands_over_is_forced_after_the_patience() {
    let store = fresh_table(2).await;
    let (w0, w1) = (worker(&store, "w0"), worker(&store, "w1"));
    let key = w1_starts_a_handoff(&store, &w0, &w1).await;
    let patience = w1.config().handoff_patience();
    // w0 keeps renewing (it is alive) but never ends the handoff.
    let step = w0.config().renew_interval;
    let mut waited = Duration::ZERO;
    while waited + step < patience {
        tokio::time::advance(step).await;
        waited += step;
        w0.renew_leases().await;
        assert!(
            !w1.check_incoming_handoff(&key).await,
            "forced early at {waited:?}"
        );
    }
    tokio::time::advance(patience - waited).await;
    assert!(w1.check_incoming_handoff(&key).await);
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), None)
    );
    // The previous owner's next write is refused: the lease is gone from it.
    w0.renew_leases().await;
    assert!(w0.held_lease(&key).is_none());
}

/// With a fleet: w0 takes every lease, then w1 (knowing w0) steals one by a handoff (w0
/// not told yet): its key.
async fn with_a_fleet_w1_starts_a_handoff(w0: &LeaseCoordinator, w1: &LeaseCoordinator) -> String {
    w0.beat().await;
    w0.take_leases().await.unwrap();
    w1.beat().await;
    w0.beat().await;
    let o = w1.take_leases().await.unwrap();
    assert_eq!(o.stolen.len(), 1, "{o:?}");
    o.stolen[0].clone()
}

#[tokio::test(start_paused = true)]
async fn with_a_fleet_the_owner_hears_at_its_next_beat_and_its_release_ends_the_handoff() {
    let store = fresh_table(2).await;
    let fleet = Arc::new(MemoryFleetStore::new());
    let w0 = worker(&store, "w0").with_fleet(fleet.clone());
    let w1 = worker(&store, "w1").with_fleet(fleet.clone());
    let key = with_a_fleet_w1_starts_a_handoff(&w0, &w1).await;
    let held = w0.held_lease(&key).unwrap();
    assert_eq!(held.standing_now(), Some(Standing::Held));
    // The notice arrives with the next beat: w0 reads the lease and learns.
    w0.beat().await;
    assert_eq!(held.standing_now(), Some(Standing::Outgoing));
    assert!(!w1.check_incoming_handoff(&key).await);
    // w0 shuts down gracefully before its consumer stopped: the consumer stops first
    // (the dispatcher's stop), its last checkpoint is accepted, then the release.
    w0.begin_leaving().await;
    let last = Checkpoint::at("77", 0).unwrap();
    held.checkpoint(&last, &[]).await.unwrap();
    w0.release_all().await;
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), None),
        "a release of a lease being handed over ends the handoff"
    );
    assert!(w1.check_incoming_handoff(&key).await);
    assert_eq!(w1.held_lease(&key).unwrap().lease().await.checkpoint, last);
}

/// With a fleet: w0 holds both leases, w1 starts a handoff of one (w0 hears of it), and
/// w2 joins, knowing both (it takes nothing: everyone is at target). The pending key.
async fn three_workers_one_handoff_pending(
    store: &Arc<MemoryLeaseStore>,
    ws: &[LeaseCoordinator; 3],
) -> String {
    let [w0, w1, w2] = ws;
    let key = with_a_fleet_w1_starts_a_handoff(w0, w1).await;
    w0.beat().await;
    assert_eq!(
        w0.held_lease(&key).unwrap().standing_now(),
        Some(Standing::Outgoing)
    );
    w2.beat().await;
    let o = w2.take_leases().await.unwrap();
    assert!(o.taken.is_empty() && o.stolen.is_empty(), "{o:?}");
    let l = stored(store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), Some("w0"))
    );
    key
}

fn fleet_of_three(store: &Arc<MemoryLeaseStore>) -> [LeaseCoordinator; 3] {
    let fleet = Arc::new(MemoryFleetStore::new());
    ["w0", "w1", "w2"].map(|id| worker(store, id).with_fleet(fleet.clone()))
}

#[tokio::test(start_paused = true)]
async fn the_next_owner_shutting_down_mid_handoff_leaves_it_to_the_previous_owner() {
    let store = fresh_table(2).await;
    let ws = fleet_of_three(&store);
    let key = three_workers_one_handoff_pending(&store, &ws).await;
    let [w0, w1, w2] = &ws;
    let outgoing = w0.held_lease(&key).unwrap();
    // w1 shuts down gracefully while w0 still finishes: nothing written for that lease.
    let before = stored(&store, &key).await;
    w1.begin_leaving().await;
    w1.release_all().await;
    assert!(w1.held_lease_keys().is_empty());
    assert_eq!(stored(&store, &key).await, before, "left as it was");
    // The others hear w1 left; neither takes the lease under w0 (still finishing).
    w0.beat().await;
    w2.beat().await;
    assert!(w2.is_gone("w1"));
    for w in [w2, w0] {
        let o = w.take_leases().await.unwrap();
        assert!(!o.taken.contains(&key) && !o.stolen.contains(&key), "{o:?}");
    }
    assert_eq!(stored(&store, &key).await, before);
    // w0's processor checkpoints (accepted), its consumer ends, it hands the lease over.
    let last = Checkpoint::at("4242", 0).unwrap();
    outgoing.checkpoint(&last, &[]).await.unwrap();
    w0.end_outgoing_handoff(&key, false).await;
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), None)
    );
    // Now a gone owner's lease like any other: taken, from w0's last checkpoint.
    let o = w2.take_leases().await.unwrap();
    assert_eq!(o.taken, vec![key.clone()], "{o:?}");
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w2"), None)
    );
    assert_eq!(l.checkpoint, last);
    assert_eq!(
        w2.held_lease(&key).unwrap().standing_now(),
        Some(Standing::Held)
    );
}

#[tokio::test(start_paused = true)]
async fn a_next_owner_declared_gone_mid_handoff_is_waited_for_until_the_previous_owner_ends_it() {
    let store = fresh_table(2).await;
    let ws = fleet_of_three(&store);
    let key = three_workers_one_handoff_pending(&store, &ws).await;
    let [w0, _silent, w2] = &ws;
    let outgoing = w0.held_lease(&key).unwrap();
    // w1 falls silent; w0 and w2 beat on and declare it gone.
    for _ in 0..8 {
        tokio::time::advance(w2.config().heartbeat_interval).await;
        w0.beat().await;
        w2.beat().await;
    }
    let o = w2.take_leases().await.unwrap();
    assert!(w2.is_gone("w1"));
    assert!(
        !o.taken.contains(&key),
        "taken under its previous owner: {o:?}"
    );
    // w0 finishes: its last checkpoint is accepted, the handoff ends, w2 takes the lease.
    let last = Checkpoint::at("99", 0).unwrap();
    outgoing.checkpoint(&last, &[]).await.unwrap();
    w0.end_outgoing_handoff(&key, false).await;
    let o = w2.take_leases().await.unwrap();
    assert!(o.taken.contains(&key), "{o:?}");
    assert_eq!(stored(&store, &key).await.checkpoint, last);
}

#[tokio::test(start_paused = true)]
async fn a_pending_lease_of_a_gone_next_owner_is_taken_once_its_previous_owner_stood_still() {
    let store = fresh_table(2).await;
    let ws = fleet_of_three(&store);
    let key = three_workers_one_handoff_pending(&store, &ws).await;
    let [w0, _silent, w2] = &ws;
    // w1 falls silent and w0, alive, never ends the handoff nor writes the lease: w2 takes
    // it once the counter stood still for the patience, not before.
    let patience = w2.config().handoff_patience();
    let step = w2.config().heartbeat_interval;
    let mut waited = Duration::ZERO;
    while waited + step < patience {
        tokio::time::advance(step).await;
        waited += step;
        w0.beat().await;
        w2.beat().await;
        let o = w2.take_leases().await.unwrap();
        assert!(!o.taken.contains(&key), "taken at {waited:?}: {o:?}");
    }
    tokio::time::advance(2 * step).await;
    w0.beat().await;
    w2.beat().await;
    let o = w2.take_leases().await.unwrap();
    assert!(o.taken.contains(&key), "{o:?}");
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w2"), None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_next_owner_whose_lease_is_taken_while_incoming_drops_it_unwritten() {
    // Without a fleet: w0 dies while handing a lease to w1 (which, waiting, writes
    // nothing); once the counter stood still for the failover time, w2 takes it.
    let store = fresh_table(2).await;
    let (w0, w1, w2) = (
        worker(&store, "w0"),
        worker(&store, "w1"),
        worker(&store, "w2"),
    );
    let key = w1_starts_a_handoff(&store, &w0, &w1).await;
    w2.take_leases().await.unwrap();
    tokio::time::advance(FAILOVER + Duration::from_millis(100)).await;
    w1.renew_leases().await;
    let o = w2.take_leases().await.unwrap();
    assert!(o.taken.contains(&key), "{o:?}");
    let taken = stored(&store, &key).await;
    assert_eq!(
        (taken.owner.as_deref(), taken.checkpoint_owner.as_deref()),
        (Some("w2"), None)
    );
    // w1 learns at its next look and forgets it without a write; w2 keeps it.
    assert!(!w1.check_incoming_handoff(&key).await);
    assert!(w1.held_lease_keys().is_empty());
    w1.release_all().await;
    assert_eq!(stored(&store, &key).await, taken);
    w2.renew_leases().await;
    assert!(!w2.held_lease(&key).unwrap().is_lost());
}

#[tokio::test(start_paused = true)]
async fn a_gone_previous_owner_is_forced_without_waiting() {
    let store = fresh_table(2).await;
    let fleet = Arc::new(MemoryFleetStore::new());
    let w0 = worker(&store, "w0").with_fleet(fleet.clone());
    let w1 = worker(&store, "w1").with_fleet(fleet.clone());
    w0.beat().await;
    w0.take_leases().await.unwrap();
    w1.beat().await;
    let o = w1.take_leases().await.unwrap();
    let key = o.stolen[0].clone();
    assert!(!w1.check_incoming_handoff(&key).await);
    // w0 is silent from now on: once declared gone, w1 forces the handoff.
    for _ in 0..8 {
        tokio::time::advance(w1.config().heartbeat_interval).await;
        w1.beat().await;
    }
    w1.take_leases().await.unwrap();
    assert!(w1.is_gone("w0"));
    assert!(w1.check_incoming_handoff(&key).await);
    assert_eq!(stored(&store, &key).await.checkpoint_owner, None);
}

#[tokio::test(start_paused = true)]
async fn a_pending_handoff_from_a_java_leader_is_honoured() {
    // As a Java KCL 3.x leader writes it: ours, with checkpointOwner the previous owner,
    // which is dead (it never renews).
    let store = fresh_table(0).await;
    let mut seeded = Lease::new("shardId-000000000000", Checkpoint::at("42", 0).unwrap());
    seeded.owner = Some("w1".into());
    seeded.checkpoint_owner = Some("java-worker-0".into());
    seeded.counter = 9;
    store.create_lease_if_not_exists(&seeded).await.unwrap();
    let w1 = worker(&store, "w1");
    let o = w1.take_leases().await.unwrap();
    assert!(o.taken.is_empty() && o.stolen.is_empty(), "{o:?}");
    assert_eq!(w1.held_lease_keys(), vec![seeded.lease_key.clone()]);
    assert_eq!(
        stored(&store, &seeded.lease_key).await,
        seeded,
        "nothing written"
    );
    assert!(!w1.check_incoming_handoff(&seeded.lease_key).await);
    // Holding it, w1 does not renew it (the previous owner would), nor take it.
    w1.renew_leases().await;
    tokio::time::advance(w1.config().handoff_patience() - Duration::from_millis(1)).await;
    w1.take_leases().await.unwrap();
    assert_eq!(
        stored(&store, &seeded.lease_key).await,
        seeded,
        "nothing written"
    );
    assert!(!w1.check_incoming_handoff(&seeded.lease_key).await);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(w1.check_incoming_handoff(&seeded.lease_key).await);
    let l = stored(&store, &seeded.lease_key).await;
    assert_eq!(l.checkpoint_owner, None);
    assert_eq!(l.counter, 10);
    assert_eq!(l.checkpoint, seeded.checkpoint);
}

#[tokio::test(start_paused = true)]
async fn a_lease_pending_a_handoff_between_others_is_never_stolen_nor_taken() {
    let store = fresh_table(0).await;
    for i in 0..3 {
        let mut l = Lease::new(format!("shardId-{i}"), Checkpoint::TrimHorizon);
        l.owner = Some("w1".into());
        if i == 0 {
            l.checkpoint_owner = Some("w0".into());
        }
        store.create_lease_if_not_exists(&l).await.unwrap();
    }
    let w2 = worker(&store, "w2");
    // w2 has nothing and w1 three: it steals, but not the pending one.
    for _ in 0..3 {
        w2.take_leases().await.unwrap();
    }
    let pending = stored(&store, "shardId-0").await;
    assert_eq!(pending.owner.as_deref(), Some("w1"));
    assert_eq!(pending.checkpoint_owner.as_deref(), Some("w0"));
    assert!(!w2.held_lease_keys().contains(&"shardId-0".to_owned()));
    assert!(!w2.held_lease_keys().is_empty(), "it stole another");
}

/// A handoff leaves the counter as it was, so a third worker that watched that counter
/// stand still long before the handoff started must not count that time as the previous
/// owner's silence: once the next owner leaves at once, the previous owner (alive, still
/// finishing) gets the whole patience before the lease is taken under it.
#[tokio::test(start_paused = true)]
async fn a_handoff_on_a_long_still_counter_is_not_taken_under_its_previous_owner() {
    let store = fresh_table(3).await;
    let ws = fleet_of_three(&store);
    let [w0, w1, w2] = &ws;
    // w0 takes all three; w2 joins and is handed one.
    w0.beat().await;
    w0.take_leases().await.unwrap();
    w2.beat().await;
    w0.beat().await;
    let o = w2.take_leases().await.unwrap();
    assert_eq!(o.stolen.len(), 1, "{o:?}");
    w0.beat().await;
    w0.settle_handoffs().await;
    assert!(w2.check_incoming_handoff(&o.stolen[0]).await);
    // A long quiet: w2 sees w0's counters stand still well past the patience.
    let patience = w2.config().handoff_patience();
    let step = w2.config().heartbeat_interval;
    let mut waited = Duration::ZERO;
    while waited < 2 * patience {
        tokio::time::advance(step).await;
        waited += step;
        w0.beat().await;
        w2.beat().await;
        let o = w2.take_leases().await.unwrap();
        assert!(o.taken.is_empty() && o.stolen.is_empty(), "{o:?}");
    }
    // w1 joins and starts a handoff of one of w0's two leases.
    w1.beat().await;
    w0.beat().await;
    w2.beat().await;
    let o = w1.take_leases().await.unwrap();
    assert_eq!(o.stolen.len(), 1, "{o:?}");
    let key = o.stolen[0].clone();
    w0.beat().await;
    assert_eq!(
        w0.held_lease(&key).unwrap().standing_now(),
        Some(Standing::Outgoing)
    );
    // w1 shuts down at once; w0 is still finishing (its consumer stopping).
    w1.begin_leaving().await;
    w1.release_all().await;
    w0.beat().await;
    w2.beat().await;
    assert!(w2.is_gone("w1"));
    let o = w2.take_leases().await.unwrap();
    assert!(
        !o.taken.contains(&key),
        "taken under its previous owner, still finishing: {o:?}"
    );
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), Some("w0"))
    );
}

/// The lease table as a worker sees it whose stream of `hidden` is no longer consumed
/// (the scheduler's scoped store): its scans leave that lease out.
#[derive(Debug)]
struct Hiding {
    /// The lease table.
    table: Arc<MemoryLeaseStore>,
    /// The key left out of scans, once set.
    hidden: SyncMutex<Option<String>>,
}

#[async_trait::async_trait]
impl LeaseStore for Hiding {
    async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
        let hidden = self.hidden.lock().unwrap().clone();
        let mut leases = self.table.list_leases().await?;
        leases.retain(|l| Some(&l.lease_key) != hidden.as_ref());
        Ok(leases)
    }
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
        self.table.get_lease(lease_key).await
    }
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
        self.table.create_lease_if_not_exists(lease).await
    }
    async fn update_lease(&self, update: &crate::leases::LeaseUpdate) -> Result<bool, Error> {
        self.table.update_lease(update).await
    }
    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
        self.table.delete_finished_lease(lease_key).await
    }
    async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.table.delete_lease(lease).await
    }
}

/// The next owner gives a lease up mid-handoff without leaving (a multi-stream worker whose
/// tracker no longer lists the lease's stream: the dispatcher's retire; its scoped store
/// shows it that stream's leases no more). It writes nothing (`handoff::release`), the
/// previous owner ends the handoff, naming it: its next taker round releases the lease,
/// which another worker then takes (else it would stay this live worker's for ever,
/// unprocessed, while the others still consume the stream).
#[tokio::test(start_paused = true)]
async fn a_lease_retired_by_a_live_next_owner_mid_handoff_is_taken_by_another_worker() {
    let store = fresh_table(2).await;
    let fleet = Arc::new(MemoryFleetStore::new());
    let hiding = Arc::new(Hiding {
        table: store.clone(),
        hidden: SyncMutex::new(None),
    });
    let ws = [
        worker(&store, "w0").with_fleet(fleet.clone()),
        LeaseCoordinator::new(
            hiding.clone() as Arc<dyn LeaseStore>,
            "w1",
            LeaseConfig::new(FAILOVER),
        )
        .with_fleet(fleet.clone()),
        worker(&store, "w2").with_fleet(fleet),
    ];
    let key = three_workers_one_handoff_pending(&store, &ws).await;
    let [w0, w1, w2] = &ws;
    // w1 no longer consumes the lease's stream: it gives the lease up, writes nothing.
    *hiding.hidden.lock().unwrap() = Some(key.clone());
    assert!(!w1.release_lease(&key).await.unwrap());
    assert!(w1.held_lease_keys().is_empty());
    // Still pending: w1's taker round leaves it to w0.
    w1.take_leases().await.unwrap();
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), Some("w0"))
    );
    // w0 finishes and hands the lease over, to w1.
    w0.end_outgoing_handoff(&key, false).await;
    let l = stored(&store, &key).await;
    assert_eq!(
        (l.owner.as_deref(), l.checkpoint_owner.as_deref()),
        (Some("w1"), None)
    );
    // w1 stays alive (it beats on) but never holds it again; all take turns.
    let mut waited = Duration::ZERO;
    let step = w2.config().heartbeat_interval;
    while waited < FAILOVER * 6 {
        tokio::time::advance(step).await;
        waited += step;
        for w in [w0, w1, w2] {
            w.beat().await;
        }
        for w in [w1, w0, w2] {
            w.take_leases().await.unwrap();
        }
        assert!(w1.held_lease(&key).is_none());
        if w0.held_lease(&key).is_some() || w2.held_lease(&key).is_some() {
            return;
        }
    }
    panic!(
        "still owned by w1, which does not process it: {:?}",
        stored(&store, &key).await
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_handed_to_a_worker_and_later_handed_on_gets_the_whole_timeout_again() {
    let store = fresh_table(2).await;
    let (w0, w1) = (worker(&store, "w0"), worker(&store, "w1"));
    let key = w1_starts_a_handoff(&store, &w0, &w1).await;
    w0.renew_leases().await;
    w0.end_outgoing_handoff(&key, false).await;
    assert!(w1.check_incoming_handoff(&key).await);
    // w1 processes the shard for longer than the graceful handoff timeout.
    let timeout = w1.config().graceful_handoff_timeout;
    let step = w1.config().renew_interval;
    let mut waited = Duration::ZERO;
    while waited <= timeout + step {
        tokio::time::advance(step).await;
        waited += step;
        w1.renew_leases().await;
    }
    // Then a third worker moves it on.
    let lease = stored(&store, &key).await;
    let update = lease.start_handoff("w2").expect("w1 owns it");
    assert!(store.update_lease(&update).await.unwrap());
    w1.renew_leases().await;
    let held = w1.held_lease(&key).unwrap();
    assert_eq!(held.standing_now(), Some(Standing::Outgoing));
    // Its consumer gets the whole timeout to stop, counted from this handoff, not from
    // the one that brought the lease to w1.
    assert!(
        held.handoff_waited() < step,
        "waited {:?} already",
        held.handoff_waited()
    );
}
