//! The lease coordinator: proves this worker alive (fleet heartbeats, or renewals of the
//! leases it holds) and takes (or steals) leases until the work is balanced across workers.
//!
//! With a fleet (`with_fleet`, the scheduler's default) the renewer below is replaced by
//! heartbeats (`heartbeat`, designed in `leases::fleet`): a lease whose owner is alive is
//! never expired, one whose owner left or was declared gone is free at once, and the
//! counter rule below applies only to owners the fleet does not know.
//!
//! ```text
//!              every renew_interval                      every taker_interval
//!  held leases ───────renewer──────▶ LeaseStore ◀───────────taker──────── list_leases (scan)
//!   (counter,     renew (counter, owner)      │   ObservedCounters: expired = counter unchanged
//!    lost token)  refused → lease lost        │     for failover_time on this worker's clock
//!        ▲                                    │   plan_take(view, me, config) ─▶ TakePlan (pure)
//!        └──────────── taken / stolen ────────┘   execute: take (counter) each free lease,
//!   refused renewal: read; a handoff step?           start_handoff each stolen one
//!     adopt it (handoff::reconcile) : lost          (scan: held leases reconciled too)
//! ```
//!
//! # Moving a lease between live workers: graceful handoff
//! A lease is taken at once only from a worker that is gone (or expired by the counter
//! rule). One moved from a live worker for balance is handed over as the Java KCL 3.x does
//! (`leases::handoff` has the decisions, `LeaseConfig::graceful_handoff_timeout` the time):
//!
//! ```text
//!  taker of N: plan_take ─▶ steal l from O ─▶ Lease::start_handoff: leaseOwner = N,
//!    checkpointOwner = O (if leaseOwner = O and no checkpointOwner; counter unchanged)
//!    ─▶ N holds l (Incoming): no consumer yet; O hears of it:
//!         fleet notice at its next beat │ its next renewal is refused │ its next scan
//!         ─▶ reads l ─▶ reconcile: Adopt ─▶ O holds l as Outgoing (N's in every count)
//!  O's dispatcher: consumer asked to stop (shutdown_requested; its checkpoint is accepted:
//!    guarded by leaseOwner = N, checkpointOwner = O) ─▶ ended (or aborted after the
//!    timeout) ─▶ Lease::end_handoff: REMOVE checkpointOwner, counter + 1 ─▶ O forgets l
//!  N's dispatcher, every 250 ms: reads l ─▶ handoff::incoming ─▶ Wait | Start (from the
//!    checkpoint now stored) | Force after handoff_patience or when O is gone: end_handoff
//! ```
//!
//! A lease pending a handoff (`checkpointOwner` set, as a Java KCL 3.x leader also leaves
//! them) is never stolen; one handed to this worker that it does not hold is held without
//! a write and waited for, never taken at once; one whose next owner is gone is taken
//! only once its previous owner is gone too, or its counter stood still for the
//! `handoff_patience` (the previous owner may still be finishing: `handoff::pending_free`);
//! a take removes `checkpointOwner`. A graceful shutdown
//! ([`release_all`](LeaseCoordinator::release_all)) ends the handoffs from this worker
//! (after its consumers stopped and checkpointed), leaves those to this worker to their
//! previous owners unwritten, and releases the rest (`handoff::release`). A lease handed to
//! this worker and given up while it stays alive (its stream retired) is released by its
//! first taker round after the previous owner ended the handoff.
//!
//! The parts, each in its own file: [`LeaseConfig`] (timings and limits), [`Balancing`]
//! (lease count or throughput), `ObservedCounters` (expiry on the local clock), `plan_take`
//! (the taker's decision; `throughput_plan` when balancing throughput).
//!
//! Expiry is judged only from counters this worker observed and its own monotonic clock
//! ([`tokio::time::Instant`]), never from wall clocks, so skewed hosts cannot steal early.
//!
//! # Usage
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kinesis_consumer::leases::{LeaseConfig, LeaseCoordinator, LeaseTable};
//!
//! # async fn demo(client: aws_sdk_dynamodb::Client) {
//! let store = Arc::new(LeaseTable::new(client, "my-app"));
//! let coordinator = LeaseCoordinator::new(store, "worker-1", LeaseConfig::new(Duration::from_secs(10)));
//! let outcome = coordinator.take_leases().await.expect("scan");
//! println!("took {:?}", outcome.taken);
//! coordinator.renew_leases().await;
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod balancing;
#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod handoff_tests;
mod heartbeat;
mod lease_config;
mod observed_counters;
mod take_plan;
#[cfg(test)]
mod test_support;
mod throughput_plan;

use crate::error::Error;
use crate::leases::fleet::{FleetStore, LoadMeter};
use crate::leases::handoff::{incoming, pending_free, standing, Incoming, Standing};
use crate::leases::{HeldLease, LeaseStore, Throughput};
use crate::metric_names as m;
pub use balancing::Balancing;
use heartbeat::{BeatOutcome, Heartbeat};
pub use lease_config::LeaseConfig;
use observed_counters::ObservedCounters;
use take_plan::{plan_take, Me, SeenLease};

/// Taker rounds per `take_leases` call at most, when takes are refused.
const TAKE_ROUNDS: usize = 3;

/// The pause before the next taker round of a worker short of its share only because the
/// leases it would steal are pending a graceful handoff: a handoff takes about a second
/// (the owner hears of it at a beat or renewal, stops its processor, ends it), so the
/// balance is reached in seconds instead of a taker interval (20 s at the default failover
/// time) later. The extra scans last only while such handoffs are pending.
const HANDOFF_RETAKE_INTERVAL: Duration = Duration::from_secs(1);

/// When the taker's next round comes after a round ending in `outcome`.
fn next_round_after(outcome: &TakeOutcome, taker_interval: Duration) -> Duration {
    if outcome.waiting_on_handoffs {
        HANDOFF_RETAKE_INTERVAL.min(taker_interval)
    } else {
        taker_interval
    }
}

/// Renewals in flight at once, so that a worker with hundreds of leases renews them within
/// the interval without opening hundreds of connections.
const RENEW_CONCURRENCY: usize = 32;

/// What one taker round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakeOutcome {
    /// Expired or unassigned leases taken.
    pub taken: Vec<String>,
    /// Leases stolen from a more loaded worker.
    pub stolen: Vec<String>,
    /// The number of leases this worker aimed for.
    pub target: usize,
    /// The number of workers it counted (itself included).
    pub workers: usize,
    /// Still short of its share only because the leases it would steal are pending a
    /// graceful handoff (workers that joined together moving leases at once): the taker's
    /// next round comes after a second rather than a taker interval.
    pub waiting_on_handoffs: bool,
}

/// Renews held leases and takes new ones. One per worker; share it in an `Arc`.
#[derive(Debug)]
pub struct LeaseCoordinator {
    /// Where leases live.
    store: Arc<dyn LeaseStore>,
    /// This worker's id: the `leaseOwner` it writes.
    worker_id: String,
    /// Timings and limits.
    config: LeaseConfig,
    /// Leases held, by key: what the renewer renews and the taker counts as this
    /// worker's; a tenure reported lost is dropped at the next look.
    held: SyncMutex<HashMap<String, Arc<HeldLease>>>,
    /// Counters observed by the taker; the async mutex keeps rounds from overlapping.
    observed: Mutex<ObservedCounters>,
    /// With a fleet: heartbeats prove this worker alive instead of lease renewals, and
    /// show which others are (see `leases::fleet`). None: the Java KCL's renewals.
    heartbeat: Option<Heartbeat>,
    /// Leases handed to this worker that it gave up while their handoff was pending (its
    /// stream retired; see `leases::handoff`): nothing was written then, so that the
    /// previous owner finishes; once it has ended the handoff the lease names this worker,
    /// which is alive and does not work on it, so each taker round releases it then.
    given_up: SyncMutex<HashSet<String>>,
}

impl LeaseCoordinator {
    /// A coordinator for `worker_id` over `store`. It holds nothing until
    /// [`take_leases`](Self::take_leases) runs.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        worker_id: impl Into<String>,
        config: LeaseConfig,
    ) -> Self {
        Self {
            store,
            worker_id: worker_id.into(),
            config,
            held: SyncMutex::new(HashMap::new()),
            observed: Mutex::new(ObservedCounters::default()),
            heartbeat: None,
            given_up: SyncMutex::new(HashSet::new()),
        }
    }

    /// Proves this worker alive by heartbeats in `fleet` instead of renewing every lease,
    /// and takes the leases of workers whose heartbeat stood still at once (see
    /// `leases::fleet` for the design, its cost and its limits). Every worker of an
    /// application must then use a fleet.
    pub fn with_fleet(mut self, fleet: Arc<dyn FleetStore>) -> Self {
        self.heartbeat = Some(Heartbeat::new(fleet, &self.worker_id, &self.config));
        self
    }

    /// Publishes what `meter` counts (this worker's throughput and lag) with every
    /// heartbeat, for operators (`kinesis-cat leases`). Only with a fleet
    /// ([`with_fleet`](Self::with_fleet), called first); nothing otherwise.
    pub fn with_load_meter(mut self, meter: Arc<LoadMeter>) -> Self {
        self.heartbeat = self.heartbeat.map(|h| h.with_load_meter(meter));
        self
    }

    /// Gives every held lease up (its consumers stop) and forgets them.
    fn lose_all(&self) {
        for (_, held) in self.held_leases() {
            held.lose_now();
        }
        drop(self.lock_held());
    }

    /// Marks the start of a graceful shutdown: with a fleet, once this worker has left it
    /// (or been declared gone) it never registers again. Without one, does nothing.
    pub async fn begin_leaving(&self) {
        if let Some(h) = &self.heartbeat {
            h.begin_leaving().await;
        }
    }

    /// Creates the fleet table, if this coordinator has a fleet and it is missing.
    ///
    /// # Cancellation
    /// Safe to drop; a creation already sent goes ahead.
    ///
    /// # Errors
    /// DynamoDB errors.
    pub async fn create_fleet_table_if_not_exists(&self) -> Result<(), Error> {
        match &self.heartbeat {
            Some(h) => h.create_table_if_not_exists().await,
            None => Ok(()),
        }
    }

    /// Beats once (with a fleet) and acts on what it showed: leases taken from this worker
    /// are lost at once; all of them when it was declared gone or could not beat for the
    /// failover time. Returns whether the taker should look now. Without a fleet, does
    /// nothing.
    ///
    /// # Cancellation
    /// Safe to drop: a beat already sent may land.
    pub async fn beat(&self) -> bool {
        self.beat_once().await.0
    }

    /// One beat and what it led to: whether the taker should look, and whether the beat
    /// failed (to be tried again soon).
    async fn beat_once(&self) -> (bool, bool) {
        let Some(heartbeat) = &self.heartbeat else {
            return (false, false);
        };
        match heartbeat.beat().await {
            BeatOutcome::Beat { taken, wake } => {
                for (key, counter) in taken {
                    if let Some(held) = self.held_lease(&key) {
                        // A write in flight is refused if the lease was taken.
                        if held.lease_now().is_some_and(|l| l.counter < counter) {
                            tracing::info!(worker = %self.worker_id, lease = %key, "lease taken by another worker");
                            held.lose_now();
                        } else if held.standing_now() == Some(Standing::Held) {
                            // A graceful handoff leaves the counter: read the lease to tell.
                            self.reconcile_held(&held, &key).await;
                        }
                    }
                }
                (wake, false)
            }
            BeatOutcome::Refused => {
                self.lose_all();
                (true, false)
            }
            BeatOutcome::Failed { fence } => {
                if fence {
                    self.lose_all();
                }
                (fence, true)
            }
        }
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn LeaseStore> {
        &self.store
    }

    /// Keys of the leases held now, sorted; those being handed to another worker (a
    /// graceful handoff, their consumers finishing) are the next owner's already.
    pub fn held_lease_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .held_leases()
            .into_iter()
            .filter(|(_, h)| h.standing_now() != Some(Standing::Outgoing))
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        keys
    }

    /// The held leases, once those lost since the last look are forgotten (counted and
    /// logged as lost).
    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<HeldLease>>> {
        let mut held = self.held.lock().expect("not poisoned");
        let before = held.len();
        held.retain(|key, h| {
            let lost = h.is_lost();
            if lost {
                ::metrics::counter!(m::LEASES_LOST).increment(1);
                tracing::info!(worker = %self.worker_id, lease = %key, "lease lost");
            }
            !lost
        });
        if held.len() != before {
            ::metrics::gauge!(m::LEASES_HELD).set(held.len() as f64);
        }
        held
    }

    /// Reads one held lease and reconciles the holder's copy with it (a handoff step is
    /// adopted, a move away loses it); a read error changes nothing.
    async fn reconcile_held(&self, held: &HeldLease, key: &str) {
        match self.store.get_lease(key).await {
            Ok(stored) => {
                held.reconcile_with(stored.as_ref()).await;
            }
            Err(e) => tracing::warn!(lease = %key, error = %e, "could not read a held lease"),
        }
    }

    pub(crate) fn held_lease(&self, key: &str) -> Option<Arc<HeldLease>> {
        self.lock_held().get(key).cloned()
    }

    pub(crate) fn held_leases(&self) -> Vec<(String, Arc<HeldLease>)> {
        self.lock_held()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One renewer round: renews every held lease (concurrently). A lease whose renewal is
    /// refused, or that could not be renewed for the failover time, is lost.
    ///
    /// # Cancellation
    /// Safe to drop: renewals already sent may still land, and are simply repeated next round.
    pub async fn renew_leases(&self) {
        let held = self.held_leases();
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(RENEW_CONCURRENCY));
        for (_, h) in held {
            let failover = self.config.failover_time;
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                h.renew(failover).await
            });
        }
        while tasks.join_next().await.is_some() {}
        ::metrics::gauge!(m::LEASES_HELD).set(self.lock_held().len() as f64);
    }

    /// One taker round: scans the table, updates what it knows of each lease's counter, and
    /// takes expired leases (or steals from the most loaded workers) up to its target.
    /// With a fleet it first declares silent workers gone; a lease is then free when its
    /// owner departed or fell silent, held by an alive worker whatever its counter, and
    /// judged by its counter (the Java rule) only when its owner is not in the fleet; leases
    /// this worker holds but the table gives to another are lost; and each steal is told
    /// to its victim.
    ///
    /// # Cancellation
    /// Safe to drop between calls; a take already sent may land, in which case the lease is
    /// owned by this worker in the table but not held, and expires to others.
    ///
    /// # Errors
    /// The scan's error; failed takes are logged and skipped.
    pub async fn take_leases(&self) -> Result<TakeOutcome, Error> {
        let mut observed = self.observed.lock().await;
        if let Some(heartbeat) = &self.heartbeat {
            if !heartbeat.has_looked() {
                // Know the fleet before the first plan: its size sets the target.
                self.beat().await;
            }
            if !heartbeat.can_take().await {
                // Cut off from the fleet (or fenced): what it would take, others may hold.
                tracing::debug!(worker = %self.worker_id, "no recent heartbeat: taking nothing");
                return Ok(TakeOutcome::default());
            }
            heartbeat.declare_silent_gone().await;
            self.refresh_throughput().await;
        }
        self.release_given_up().await;
        let mut outcome = TakeOutcome::default();
        // A take refused because another worker moved first is planned again at once
        // (workers woken together race for the same leases), a few times at most.
        for _ in 0..TAKE_ROUNDS {
            let refused = self.take_round(&mut observed, &mut outcome).await?;
            if refused == 0 {
                break;
            }
        }
        ::metrics::gauge!(m::LEASES_HELD).set(self.lock_held().len() as f64);
        Ok(outcome)
    }

    /// With worker heartbeats and throughput balancing (nothing is renewed): writes the
    /// throughput of each held lease whose measurement drifted from the figure on the
    /// lease (see `HeldLease::refresh_throughput`), so that the plans of every worker
    /// weigh what the shards carry now. Nothing is written while loads hold still.
    async fn refresh_throughput(&self) {
        let Balancing::Throughput { min_lease_kbps, .. } = self.config.balancing else {
            return;
        };
        let drift = Throughput::from_kbps(f64::from(min_lease_kbps)).unwrap_or(Throughput::ZERO);
        for (_, held) in self.held_leases() {
            held.refresh_throughput(self.config.failover_time, drift)
                .await;
        }
    }

    /// One scan, plan and its takes, added to `outcome`; how many takes were refused.
    async fn take_round(
        &self,
        observed: &mut ObservedCounters,
        outcome: &mut TakeOutcome,
    ) -> Result<usize, Error> {
        let mut leases = self.store.list_leases().await?;
        let now = Instant::now();
        observed.observe(&leases, now);
        self.lose_leases_given_to_others(&leases).await;
        self.hold_incoming_handoffs(&leases);
        // Among equals the plan follows the scan's order: shuffled, takes spread at random.
        leases.shuffle(&mut rand::rng());
        let failover = self.config.failover_time;
        let patience = self.config.handoff_patience();
        let expired = |lease: &crate::Lease| -> bool {
            let by_counter = || observed.expired(&lease.lease_key, now, failover);
            let owner_gone = match (&self.heartbeat, &lease.owner) {
                // An earlier life of this worker id: nobody else will move it.
                (Some(_), Some(owner)) if *owner == self.worker_id => true,
                (Some(h), Some(owner)) => h.owner_gone(owner).unwrap_or_else(by_counter),
                _ => by_counter(),
            };
            // A pending handoff's previous owner may still be finishing (its last
            // checkpoint is what the next holder starts from): see `leases::handoff`.
            let previous_gone = || match (&self.heartbeat, lease.checkpoint_owner.as_deref()) {
                (_, Some(previous)) if previous == self.worker_id => false,
                (Some(h), Some(previous)) => h.owner_gone(previous).unwrap_or_else(by_counter),
                _ => by_counter(),
            };
            owner_gone
                && pending_free(
                    lease,
                    previous_gone(),
                    observed.expired(&lease.lease_key, now, patience),
                )
        };
        let view: Vec<SeenLease<'_>> = leases
            .iter()
            .map(|lease| SeenLease {
                lease,
                expired: expired(lease),
            })
            .collect();
        // Leases being handed away are the next owner's already.
        let held: HashSet<String> = self.held_lease_keys().into_iter().collect();
        let alive = self
            .heartbeat
            .as_ref()
            .map(|h| h.alive(now))
            .unwrap_or_default();
        let overdue = observed.overdue(&view, now, self.config.taker_interval);
        let me = Me {
            id: &self.worker_id,
            held: &held,
            alive: &alive,
            overdue: &overdue,
        };
        let plan = plan_take(&view, &me, &self.config);
        outcome.target = plan.target;
        outcome.workers = plan.workers;
        outcome.waiting_on_handoffs = plan.waiting_on_handoffs;
        let mut refused = 0;
        let takes = plan.take.iter().map(|l| (*l, false));
        let steals = plan.steal.iter().map(|l| (*l, true));
        for (lease, stolen) in takes.chain(steals) {
            // A lease is moved from a live owner by a graceful handoff (the owner finishes
            // and hands it over; see `leases::handoff`); one pending a handoff already is
            // left to it. Free and expired leases are taken at once.
            let update = if stolen {
                if lease.checkpoint_owner.is_some() {
                    continue;
                }
                match lease.start_handoff(&self.worker_id) {
                    Some(update) => update,
                    None => continue,
                }
            } else {
                lease.take(&self.worker_id)
            };
            match self.store.update_lease(&update).await {
                Ok(true) => {
                    let mut mine = lease.clone();
                    update.apply_to(&mut mine);
                    observed.saw(&mine, Instant::now());
                    let earlier = self.lock_held().insert(
                        mine.lease_key.clone(),
                        HeldLease::new(
                            self.store.clone(),
                            mine,
                            self.config.renew_interval,
                            &self.worker_id,
                        ),
                    );
                    // A lease this worker was handing away, taken back (its next owner is
                    // gone): that tenure is over, its consumer stops.
                    if let Some(earlier) = earlier {
                        earlier.lose_now();
                    }
                    if stolen {
                        ::metrics::counter!(m::LEASES_STOLEN).increment(1);
                        ::metrics::counter!(m::LEASE_HANDOFFS_STARTED).increment(1);
                        tracing::info!(worker = %self.worker_id, lease = %lease.lease_key, from = ?lease.owner, "started a graceful handoff of the lease");
                        if let (Some(h), Some(victim)) = (&self.heartbeat, lease.owner.as_deref()) {
                            // The owner hears of it at its next beat (else at its next
                            // scan, or its next write is refused).
                            h.notify_taken(victim, &lease.lease_key, lease.counter)
                                .await;
                        }
                        outcome.stolen.push(lease.lease_key.clone());
                    } else {
                        ::metrics::counter!(m::LEASES_TAKEN).increment(1);
                        tracing::info!(worker = %self.worker_id, lease = %lease.lease_key, "took lease");
                        outcome.taken.push(lease.lease_key.clone());
                    }
                }
                Ok(false) => {
                    refused += 1;
                    tracing::debug!(lease = %lease.lease_key, "another worker moved first");
                }
                Err(e) => tracing::warn!(lease = %lease.lease_key, error = %e, "take failed"),
            }
        }
        Ok(refused)
    }

    /// Gives up one held lease: removes this worker as owner so another worker can take it
    /// at its next taker round, without waiting for expiry. A lease pending a graceful
    /// handoff is not simply freed (see `leases::handoff`): one being handed from this
    /// worker has its handoff ended, one being handed to it is left to its previous owner
    /// without a write (`Ok(false)`), so that owner's last checkpoint is accepted.
    ///
    /// # Cancellation
    /// Safe to drop; the lease is then either released or left to expire.
    pub async fn release_lease(&self, key: &str) -> Result<bool, Error> {
        let Some(held) = self.held_lease(key) else {
            return Ok(false);
        };
        let incoming = matches!(held.standing_now(), Some(Standing::Incoming { .. }));
        let released = held.release().await;
        // Forget it now, not at the next look.
        drop(self.lock_held());
        if incoming && matches!(released, Ok(false)) {
            self.given_up
                .lock()
                .expect("not poisoned")
                .insert(key.to_owned());
        }
        released
    }

    /// Releases each lease given up mid-handoff (see `given_up`) whose previous owner has
    /// ended the handoff since: it names this worker, which does not work on it. One still
    /// pending waits; one held again, moved on or deleted is forgotten.
    async fn release_given_up(&self) {
        let keys: Vec<String> = self
            .given_up
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect();
        for key in keys {
            if self.held_lease(&key).is_none() {
                let lease = match self.store.get_lease(&key).await {
                    Ok(lease) => lease,
                    Err(e) => {
                        tracing::debug!(lease = %key, error = %e, "could not read a lease given up; looked at again");
                        continue;
                    }
                };
                match lease.as_ref().map(|l| (l, standing(l, &self.worker_id))) {
                    Some((_, Standing::Incoming { .. })) => continue,
                    Some((l, Standing::Held)) => {
                        match self.store.update_lease(&l.release()).await {
                            Ok(released) => {
                                tracing::info!(worker = %self.worker_id, lease = %key, released, "released a lease given up mid-handoff, once handed over")
                            }
                            Err(e) => {
                                tracing::warn!(lease = %key, error = %e, "release failed; looked at again");
                                continue;
                            }
                        }
                    }
                    _ => {}
                }
            }
            self.given_up.lock().expect("not poisoned").remove(&key);
        }
    }

    /// What the dispatcher does with handoffs, for tests of the coordinator alone: every
    /// lease handed away is handed over at once (as if its consumer stopped at once), and
    /// every lease handed to this worker is looked at.
    #[cfg(test)]
    pub(crate) async fn settle_handoffs(&self) {
        for (key, held) in self.held_leases() {
            match held.standing_now() {
                Some(Standing::Outgoing) => self.end_outgoing_handoff(&key, false).await,
                Some(Standing::Incoming { .. }) => {
                    self.check_incoming_handoff(&key).await;
                }
                _ => {}
            }
        }
    }

    /// Loses the held leases that `leases` (a scan) shows owned by another worker, or
    /// written since this worker's last write (a take it was not told of), or no longer
    /// has (a finished shard's lease, deleted by the shard sync; renewals found that out
    /// without a fleet).
    /// Steps of a graceful handoff of a held lease are adopted (see `leases::handoff`).
    async fn lose_leases_given_to_others(&self, leases: &[crate::Lease]) {
        let by_key: HashMap<&str, &crate::Lease> =
            leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
        for (key, held) in self.held_leases() {
            let Some(stored) = by_key.get(key.as_str()) else {
                tracing::debug!(worker = %self.worker_id, lease = %key, "lease deleted");
                held.lose_now();
                continue;
            };
            // A write in flight settles the question itself (refused: lost, or adopted).
            if held.lease_now().is_none() {
                continue;
            }
            held.reconcile_with(Some(stored)).await;
        }
    }

    /// Holds, without writing, the leases a graceful handoff gives to this worker that it
    /// does not hold (a Java KCL 3.x leader's assignment, or one left by an earlier life of
    /// this worker id): the dispatcher waits for the previous owner, or forces the handoff
    /// after the patience (see `leases::handoff`). Without this, the taker would take them
    /// at once (an expired lease of its own), cutting the previous owner short.
    fn hold_incoming_handoffs(&self, leases: &[crate::Lease]) {
        let mut held = self.lock_held();
        for lease in leases {
            let incoming = matches!(standing(lease, &self.worker_id), Standing::Incoming { .. });
            if incoming && !held.contains_key(&lease.lease_key) {
                ::metrics::counter!(m::LEASE_HANDOFFS_SEEN).increment(1);
                tracing::info!(worker = %self.worker_id, lease = %lease.lease_key, from = ?lease.checkpoint_owner, "holding a lease handed to this worker; waiting for its previous owner");
                held.insert(
                    lease.lease_key.clone(),
                    HeldLease::new(
                        self.store.clone(),
                        lease.clone(),
                        self.config.renew_interval,
                        &self.worker_id,
                    ),
                );
            }
        }
    }

    /// With a fleet: whether `worker` is gone (it left, or was declared gone). `false`
    /// without a fleet or when the fleet does not know it.
    pub(crate) fn is_gone(&self, worker: &str) -> bool {
        self.heartbeat
            .as_ref()
            .and_then(|h| h.owner_gone(worker))
            .unwrap_or(false)
    }

    /// One dispatch look at a lease handed to this worker, held and waiting: reads it and
    /// decides ([`incoming`]): whether its consumer may start now. Forces the handoff
    /// (ends it itself) once the previous owner took longer than
    /// [`LeaseConfig::handoff_patience`] or is gone; a lease that moved away is lost.
    ///
    /// # Cancellation
    /// Safe to drop: a forced end already sent may land; the next look reads it.
    pub(crate) async fn check_incoming_handoff(&self, key: &str) -> bool {
        let Some(held) = self.held_lease(key) else {
            return false;
        };
        let Some(Standing::Incoming { from }) = held.standing_now() else {
            return held.standing_now() == Some(Standing::Held);
        };
        let stored = match self.store.get_lease(key).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(lease = %key, error = %e, "could not read a lease handed to this worker");
                return false;
            }
        };
        let decision = incoming(
            stored.as_ref(),
            &self.worker_id,
            held.handoff_waited(),
            self.config.handoff_patience(),
            self.is_gone(&from),
        );
        match decision {
            Incoming::Wait => {
                held.reconcile_with(stored.as_ref()).await;
                false
            }
            Incoming::Start => held.reconcile_with(stored.as_ref()).await,
            Incoming::Lost => {
                held.lose_now();
                false
            }
            Incoming::Force => {
                // Forced from the lease as read now (the previous owner may have written).
                if !held.reconcile_with(stored.as_ref()).await {
                    return false;
                }
                match held.end_handoff().await {
                    Ok(true) => {
                        ::metrics::counter!(m::LEASE_HANDOFFS_ENDED, "by" => "next_owner_forced")
                            .increment(1);
                        tracing::warn!(worker = %self.worker_id, lease = %key, from = %from, "previous owner did not hand the lease over in time; forced the handoff");
                        true
                    }
                    // It moved meanwhile (ended by the previous owner): the next look reads it.
                    Ok(false) => false,
                    Err(e) => {
                        tracing::warn!(lease = %key, error = %e, "forcing a handoff failed");
                        false
                    }
                }
            }
        }
    }

    /// The previous owner's end of a graceful handoff of `key`, once its consumer stopped
    /// (`timed_out`: aborted after the graceful handoff timeout): the lease passes to its
    /// next owner and this worker forgets it.
    ///
    /// # Cancellation
    /// Safe to drop: the write may still land; else the next owner forces it in time.
    pub(crate) async fn end_outgoing_handoff(&self, key: &str, timed_out: bool) {
        let Some(held) = self.held_lease(key) else {
            return;
        };
        match held.end_handoff().await {
            Ok(true) => {
                let by = if timed_out {
                    "previous_owner_timeout"
                } else {
                    "previous_owner"
                };
                ::metrics::counter!(m::LEASE_HANDOFFS_ENDED, "by" => by).increment(1);
                tracing::info!(worker = %self.worker_id, lease = %key, timed_out, "handed the lease over");
            }
            Ok(false) => {
                tracing::info!(worker = %self.worker_id, lease = %key, "handoff already ended by the next owner")
            }
            Err(e) => {
                tracing::warn!(lease = %key, error = %e, "ending a handoff failed; the next owner forces it")
            }
        }
        drop(self.lock_held());
    }

    /// Releases every held lease (see [`release_lease`](Self::release_lease): a lease being
    /// handed from this worker has its handoff ended, one being handed to it is left to
    /// its previous owner), then leaves the fleet, if any, so that the others take them at
    /// once.
    ///
    /// # Cancellation
    /// Safe to drop; leases not yet released expire as usual.
    pub async fn release_all(&self) {
        self.release_held().await;
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.leave().await;
        }
    }

    /// Releases every held lease.
    async fn release_held(&self) {
        // Leases being handed away too: releasing them ends their handoff.
        for (key, _) in self.held_leases() {
            match self.release_lease(&key).await {
                Ok(true) => {
                    tracing::info!(worker = %self.worker_id, lease = %key, "released lease")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "release failed; it will expire")
                }
            }
        }
    }

    /// Renews every held lease every `renew_interval` until `cancel` fires; with a fleet,
    /// beats every `heartbeat_interval` instead, waking `wake` (the taker) when a worker
    /// departed or fell silent.
    ///
    /// # Cancellation
    /// Returns when `cancel` fires; dropping it is equally safe.
    pub async fn run_renewer(&self, cancel: CancellationToken, wake: Arc<tokio::sync::Notify>) {
        if let Some(heartbeat) = &self.heartbeat {
            // A fixed rate: a slow call does not stretch the time between beats.
            let mut ticks = tokio::time::interval(heartbeat.interval());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let fence_at = heartbeat.fence_deadline().await;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ticks.tick() => {
                        // A failed beat (throttled, a server error) is tried again at once,
                        // twice, rather than a whole heartbeat later.
                        let (mut woken, mut failed) = self.beat_once().await;
                        for pause in [Duration::from_millis(100), Duration::from_millis(300)] {
                            if !failed || cancel.is_cancelled() {
                                break;
                            }
                            tokio::time::sleep(pause).await;
                            let (w, f) = self.beat_once().await;
                            woken |= w;
                            failed = f;
                        }
                        if woken {
                            wake.notify_one();
                        }
                    }
                    // No beat landed in time and none is in flight: fence on time.
                    _ = tokio::time::sleep_until(fence_at.unwrap_or_else(Instant::now)), if fence_at.is_some() => {
                        if heartbeat.fence_now_if_due().await {
                            self.lose_all();
                        }
                    }
                }
            }
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.config.renew_interval) => {}
            }
            self.renew_leases().await;
        }
    }

    /// Takes leases at once and then every `taker_interval` until `cancel` fires; `wake`
    /// starts a round early (e.g. when a consumer finished a shard).
    ///
    /// # Cancellation
    /// Returns when `cancel` fires; dropping it is equally safe.
    pub async fn run_taker(&self, cancel: CancellationToken, wake: Arc<tokio::sync::Notify>) {
        loop {
            let pause = match self.take_leases().await {
                Ok(outcome) => next_round_after(&outcome, self.config.taker_interval),
                Err(e) => {
                    tracing::warn!(error = %e, "lease taker round failed");
                    self.config.taker_interval
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
                _ = wake.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_support::fresh_table;
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::leases::MemoryLeaseStore;

    const FAILOVER: Duration = Duration::from_secs(10);

    fn workers(store: &Arc<MemoryLeaseStore>, n: usize) -> Vec<LeaseCoordinator> {
        (0..n)
            .map(|i| {
                LeaseCoordinator::new(
                    store.clone() as Arc<dyn LeaseStore>,
                    format!("worker-{i}"),
                    LeaseConfig::new(FAILOVER),
                )
            })
            .collect()
    }

    /// One taker interval: renewals every renew interval, then a taker round on every worker.
    async fn round(ws: &[LeaseCoordinator]) -> usize {
        let cfg = LeaseConfig::new(FAILOVER);
        let mut elapsed = Duration::ZERO;
        while elapsed + cfg.renew_interval < cfg.taker_interval {
            tokio::time::advance(cfg.renew_interval).await;
            elapsed += cfg.renew_interval;
            for w in ws {
                w.renew_leases().await;
            }
        }
        tokio::time::advance(cfg.taker_interval - elapsed).await;
        let mut moves = 0;
        for w in ws {
            let o = w.take_leases().await.unwrap();
            moves += o.taken.len() + o.stolen.len();
        }
        // The dispatchers' part: victims that heard of a handoff at a renewal hand the
        // lease over (their consumers stop at once here), the next owners start.
        for w in ws {
            w.settle_handoffs().await;
        }
        for w in ws {
            w.settle_handoffs().await;
        }
        moves
    }

    async fn owners(store: &MemoryLeaseStore) -> HashMap<Option<String>, usize> {
        let mut counts = HashMap::new();
        for l in store.list_leases().await.unwrap() {
            *counts.entry(l.owner).or_default() += 1;
        }
        counts
    }

    fn assert_balanced(ws: &[LeaseCoordinator], shards: usize) {
        let counts: Vec<usize> = ws.iter().map(|w| w.held_lease_keys().len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), shards, "{counts:?}");
        let target = shards.div_ceil(ws.len());
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(max <= target, "over target {target}: {counts:?}");
        // Java's rule stops stealing once the most loaded worker is at target and the
        // needy one is one short of it, so the spread can be two when target is not exact.
        assert!(max - min <= 1, "unbalanced: {counts:?}");
        if shards.is_multiple_of(ws.len()) {
            assert!(max == min, "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn the_taker_looks_again_within_a_second_while_waiting_on_handoffs() {
        let interval = LeaseConfig::new(FAILOVER).taker_interval;
        let mut outcome = TakeOutcome::default();
        assert_eq!(next_round_after(&outcome, interval), interval);
        outcome.waiting_on_handoffs = true;
        assert_eq!(next_round_after(&outcome, interval), Duration::from_secs(1));
        // Never later than the taker interval itself.
        let short = Duration::from_millis(200);
        assert_eq!(next_round_after(&outcome, short), short);
    }

    #[tokio::test(start_paused = true)]
    async fn balances_every_fleet_size() {
        for (n_workers, shards) in take_plan::tests::FLEETS {
            let store = fresh_table(shards).await;
            let ws = workers(&store, n_workers);
            let mut rounds = 0;
            loop {
                let moves = round(&ws).await;
                rounds += 1;
                if moves == 0 {
                    break;
                }
                assert!(
                    rounds < 2 * shards + 10,
                    "{n_workers}x{shards} never settles"
                );
            }
            assert_balanced(&ws, shards);
            assert_eq!(owners(&store).await.get(&None), None, "all leases owned");
            // Settled means settled: more rounds move nothing.
            for _ in 0..3 {
                assert_eq!(round(&ws).await, 0, "{n_workers}x{shards} flaps");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_fleet_three_workers_eight_shards_spread() {
        let store = fresh_table(8).await;
        let ws = workers(&store, 3);
        for _ in 0..10 {
            round(&ws).await;
        }
        let mut counts: Vec<usize> = ws.iter().map(|w| w.held_lease_keys().len()).collect();
        counts.sort();
        assert_eq!(counts, vec![2, 3, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn dead_worker_leases_expire_to_survivors_not_before_failover() {
        let store = fresh_table(12).await;
        let ws = workers(&store, 3);
        for _ in 0..20 {
            round(&ws).await;
        }
        assert_balanced(&ws, 12);
        let dead_keys = ws[2].held_lease_keys();
        let survivors = &ws[..2];
        // A scan right after the last renewal: survivors see the final counters now.
        ws[2].renew_leases().await;
        for w in survivors {
            w.renew_leases().await;
            w.take_leases().await.unwrap();
        }
        // Just before the failover time has passed on their clocks: nothing is taken.
        let step = FAILOVER - Duration::from_millis(100);
        tokio::time::advance(step).await;
        for w in survivors {
            w.renew_leases().await;
            let o = w.take_leases().await.unwrap();
            assert!(o.taken.is_empty() && o.stolen.is_empty(), "{o:?}");
        }
        tokio::time::advance(Duration::from_millis(200)).await;
        for w in survivors {
            w.renew_leases().await;
            w.take_leases().await.unwrap();
        }
        let mut survivors_hold: Vec<String> =
            survivors.iter().flat_map(|w| w.held_lease_keys()).collect();
        survivors_hold.sort();
        for k in &dead_keys {
            assert!(survivors_hold.contains(k), "{k} not taken over");
        }
        assert_eq!(survivors_hold.len(), 12);
        // The dead worker's own renewals now fail, and it learns it lost everything.
        ws[2].renew_leases().await;
        assert!(ws[2].held_lease_keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_taken_from_a_silent_owner_is_lost_by_it_and_its_checkpoint_refused() {
        let store = fresh_table(4).await;
        let ws = workers(&store, 2);
        ws[0].take_leases().await.unwrap();
        assert_eq!(ws[0].held_lease_keys().len(), 4);
        // worker-0 stops renewing; worker-1 sees its counters stand still for the failover
        // time and takes everything (no handoff: the owner looks dead). Its first look
        // (owner alive) may start a handoff of one lease at random: the victim is another.
        ws[1].take_leases().await.unwrap();
        let key = store
            .list_leases()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.owner.as_deref() == Some("worker-0") && l.checkpoint_owner.is_none())
            .expect("a lease not handed over")
            .lease_key;
        let victim = ws[0].held_lease(&key).unwrap();
        tokio::time::advance(FAILOVER + Duration::from_millis(100)).await;
        let o = ws[1].take_leases().await.unwrap();
        assert!(o.stolen.is_empty(), "{o:?}");
        assert!(o.taken.contains(&key), "{o:?}");
        let err = victim
            .checkpoint(&Checkpoint::at("5", 0).unwrap(), &[])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LeaseLost { .. }), "{err}");
        assert!(victim.lost.is_cancelled());
        assert!(!ws[0].held_lease_keys().contains(&key));
        let stored = store.get_lease(&key).await.unwrap().unwrap();
        assert_eq!(
            stored.checkpoint,
            Checkpoint::TrimHorizon,
            "not overwritten"
        );
        assert_eq!(stored.owner.as_deref(), Some("worker-1"));
        assert_eq!(stored.checkpoint_owner, None);
    }

    #[tokio::test(start_paused = true)]
    async fn released_leases_move_in_one_round() {
        let store = fresh_table(8).await;
        let ws = workers(&store, 2);
        for _ in 0..10 {
            round(&ws).await;
        }
        assert_balanced(&ws, 8);
        ws[0].release_all().await;
        assert!(ws[0].held_lease_keys().is_empty());
        let o = ws[1].take_leases().await.unwrap();
        // worker-0 owns nothing now, so worker-1 is alone and takes everything released.
        assert_eq!(o.taken.len(), 4, "{o:?}");
        assert_eq!(ws[1].held_lease_keys().len(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn max_leases_per_worker_is_respected() {
        let store = fresh_table(10).await;
        let mut cfg = LeaseConfig::new(FAILOVER);
        cfg.max_leases_per_worker = 3;
        let w = LeaseCoordinator::new(store.clone(), "solo", cfg);
        for _ in 0..3 {
            w.take_leases().await.unwrap();
        }
        assert_eq!(w.held_lease_keys().len(), 3);
        assert_eq!(owners(&store).await[&None], 7);
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_and_checkpoints_carry_the_measured_throughput() {
        let store = fresh_table(1).await;
        let ws = workers(&store, 1);
        ws[0].take_leases().await.unwrap();
        let key = "shardId-000000000000";
        let held = ws[0].held_lease(key).unwrap();
        let window = ws[0].config().renew_interval;
        let stored = || async { store.get_lease(key).await.unwrap().unwrap().throughput };
        // Nothing measured yet: a renewal writes no figure.
        ws[0].renew_leases().await;
        assert_eq!(stored().await, None);
        // 64 KiB over a renewal interval.
        tokio::time::advance(window).await;
        held.throughput().record(64 * 1024);
        let before = store.calls();
        ws[0].renew_leases().await;
        assert_eq!(store.calls() - before, 1, "no call of its own");
        let first = 64.0 / window.as_secs_f64();
        let kbps = stored().await.unwrap().kbps();
        assert!((kbps - first).abs() < 0.001, "{kbps} against {first}");
        // An idle interval halves it, written with a checkpoint this time.
        tokio::time::advance(window).await;
        held.checkpoint(&Checkpoint::at("5", 0).unwrap(), &[])
            .await
            .unwrap();
        let kbps = stored().await.unwrap().kbps();
        assert!((kbps - first / 2.0).abs() < 0.001, "{kbps}");
        // A new holder starts from the figure on the lease, not from zero.
        ws[0].release_all().await;
        let other = &workers(&store, 2)[1];
        other.take_leases().await.unwrap();
        other.renew_leases().await;
        let kbps = stored().await.unwrap().kbps();
        assert!((kbps - first / 2.0).abs() < 0.001, "{kbps}");
    }

    #[tokio::test(start_paused = true)]
    async fn steady_state_cost_per_lease() {
        // Renewals dominate: one call per lease per renew interval, plus one scan per
        // taker interval per worker.
        let store = fresh_table(8).await;
        let ws = workers(&store, 2);
        for _ in 0..10 {
            round(&ws).await;
        }
        let before = store.calls.load(std::sync::atomic::Ordering::Relaxed);
        let minute_rounds = 3; // 3 taker intervals of ~20 s
        for _ in 0..minute_rounds {
            assert_eq!(round(&ws).await, 0);
        }
        let calls = store.calls.load(std::sync::atomic::Ordering::Relaxed) - before;
        // 6 renewals per taker interval per lease (every 3.3 s in 20 s) + 2 scans.
        assert_eq!(calls, minute_rounds * (8 * 6 + 2));
    }

    #[tokio::test(start_paused = true)]
    async fn balancing_throughput_costs_no_call_of_its_own() {
        // As above, balancing throughput, with bytes read on every lease: the figures
        // ride on the renewals.
        let store = fresh_table(8).await;
        let config = LeaseConfig {
            balancing: Balancing::throughput(),
            ..LeaseConfig::new(FAILOVER)
        };
        let ws: Vec<LeaseCoordinator> = (0..2)
            .map(|i| LeaseCoordinator::new(store.clone(), format!("worker-{i}"), config.clone()))
            .collect();
        let feed = |ws: &[LeaseCoordinator]| {
            for w in ws {
                for (_, held) in w.held_leases() {
                    held.throughput().record(100_000);
                }
            }
        };
        for _ in 0..10 {
            feed(&ws);
            round(&ws).await;
        }
        let before = store.calls();
        for _ in 0..3 {
            feed(&ws);
            assert_eq!(round(&ws).await, 0);
        }
        assert_eq!(store.calls() - before, 3 * (8 * 6 + 2));
        let stored = store.list_leases().await.unwrap();
        assert!(stored.iter().all(|l| l.throughput.is_some()), "{stored:?}");
    }
}
