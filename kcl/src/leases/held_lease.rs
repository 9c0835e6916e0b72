//! [`HeldLease`]: one tenure of a lease by this worker, and the only way to write it: its
//! renewals, checkpoints and release go through it, conditional on the lease as this worker
//! last wrote it.
//!
//! ```text
//!  LeaseCoordinator ─take─▶ HeldLease { store, lease (as last written), last_renewed, lost }
//!    renewer ── renew(failover) ────────┐
//!    Checkpointer ── checkpoint, ───────┼─▶ Lease::<write>() ─▶ LeaseStore::update_lease
//!      prepare_checkpoint               │     applied ─▶ LeaseUpdate::apply_to(own copy)
//!    graceful shutdown ── release ──────┘     refused ─▶ read: a handoff step? adopt it, write
//!                                               again once; else lost (token cancelled)
//!                                               ─▶ Error::LeaseLost
//!    handoff (dispatcher) ── end_handoff, reconcile_with(stored) (see leases::handoff)
//!  lost is watched by the ShardConsumer (lease_lost) and the coordinator (forgets the lease)
//!  ShardConsumer ── throughput().record(bytes) ─▶ ThroughputMeter ─▶ sampled by each owner
//!    write (renewal, checkpoint, prepared checkpoint, refresh) ─▶ throughputKBps
//! ```
//!
//! Every write the owner makes carries the lease's measured throughput (the Java KCL 3.x
//! writes it with its renewals), so measuring costs no call of its own; with worker
//! heartbeats, where nothing is renewed, [`refresh_throughput`](HeldLease::refresh_throughput)
//! writes it only when it drifted.

use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handoff::{reconcile, release, standing, Reconcile, Release, Standing};
use super::lease_store::LeaseStore;
use super::lease_update::{Change, LeaseUpdate};
use super::throughput::{Throughput, ThroughputMeter};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::leases::Lease;
use crate::metric_names as m;

/// A lease this worker holds, shared by the coordinator (renewals, release), the
/// dispatcher, the shard consumer and its checkpointer.
#[derive(Debug)]
pub(crate) struct HeldLease {
    /// Where every write of this lease goes.
    store: Arc<dyn LeaseStore>,
    /// The lease as last written by this worker; its counter is the condition of the next
    /// write. The async mutex serialises the writes of this lease.
    lease: Mutex<Lease>,
    /// When a conditional write last succeeded: proof of ownership at that time.
    last_renewed: SyncMutex<Instant>,
    /// Cancelled when the lease is lost or released; the shard consumer watches it and the
    /// coordinator forgets the lease.
    pub(crate) lost: CancellationToken,
    /// The shard's throughput as this tenure measures it (from the lease's stored figure),
    /// written with every owner write.
    throughput: ThroughputMeter,
    /// This worker's id: which side of a graceful handoff it is on (see `leases::handoff`).
    worker_id: Arc<str>,
    /// The graceful handoff of the lease this tenure saw pending last (either side), and
    /// when it first saw it: what the handoff's timeouts count from. A tenure can see two:
    /// the one that handed the lease to it, then one handing it on.
    handoff_seen: SyncMutex<Option<SeenHandoff>>,
}

/// A graceful handoff as a tenure first saw it pending.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SeenHandoff {
    /// When it was first seen.
    at: Instant,
    /// Its sides: the next owner (`leaseOwner`) and the previous one (`checkpointOwner`),
    /// which tell one handoff from the next.
    sides: (Option<String>, String),
}

impl SeenHandoff {
    /// The handoff pending on `lease`, first seen at `at`; `None` if none is pending.
    fn of(lease: &Lease, at: Instant) -> Option<Self> {
        let from = lease.checkpoint_owner.clone()?;
        Some(Self {
            at,
            sides: (lease.owner.clone(), from),
        })
    }
}

impl HeldLease {
    /// The tenure starting now of `lease`, just written (taken) by this worker in `store`;
    /// its throughput is measured over windows of at least `throughput_window` (the
    /// renewal interval).
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        lease: Lease,
        throughput_window: Duration,
        worker_id: &str,
    ) -> Arc<Self> {
        let now = Instant::now();
        let handoff_seen = SeenHandoff::of(&lease, now);
        Arc::new(Self {
            store,
            throughput: ThroughputMeter::new(lease.throughput, throughput_window, now),
            lease: Mutex::new(lease),
            last_renewed: SyncMutex::new(now),
            lost: CancellationToken::new(),
            worker_id: worker_id.into(),
            handoff_seen: SyncMutex::new(handoff_seen),
        })
    }

    /// Where this worker stands with the lease, by its copy (`None` while a write of it is
    /// in flight).
    pub(crate) fn standing_now(&self) -> Option<Standing> {
        self.lease_now().map(|l| standing(&l, &self.worker_id))
    }

    /// How long since this tenure first saw a handoff of the lease pending; zero if none.
    pub(crate) fn handoff_waited(&self) -> Duration {
        self.handoff_seen
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map_or(Duration::ZERO, |seen| seen.at.elapsed())
    }

    /// Makes `stored` (a step of a handoff, see [`reconcile`]) the copy the next writes
    /// are guarded by, noting when a handoff was first seen.
    fn adopt_locked(&self, lease: &mut Lease, stored: Lease) {
        if let Some(pending) = SeenHandoff::of(&stored, Instant::now()) {
            let mut seen = self.handoff_seen.lock().expect("not poisoned");
            // Another handoff than the one seen before (the lease came to this worker by
            // one and is now handed on): its timeouts count from now.
            if seen.as_ref().is_none_or(|s| s.sides != pending.sides) {
                ::metrics::counter!(m::LEASE_HANDOFFS_SEEN).increment(1);
                tracing::info!(worker = %self.worker_id, lease = %stored.lease_key, owner = ?stored.owner, checkpoint_owner = ?stored.checkpoint_owner, "graceful lease handoff pending");
                *seen = Some(pending);
            }
        }
        *lease = stored;
    }

    /// Reconciles the copy with `stored` (as read or scanned by the caller): adopts a step
    /// of a handoff, loses the lease if it moved away. Whether the tenure goes on.
    ///
    /// # Cancellation
    /// Safe to drop: it only waits for a write in progress.
    pub(crate) async fn reconcile_with(&self, stored: Option<&Lease>) -> bool {
        let mut lease = self.lease.lock().await;
        if self.is_lost() {
            return false;
        }
        let decision = stored.map_or(Reconcile::Lost, |s| reconcile(&lease, s, &self.worker_id));
        match (decision, stored) {
            (Reconcile::Adopt, Some(stored)) => {
                self.adopt_locked(&mut lease, stored.clone());
                true
            }
            (Reconcile::Keep | Reconcile::Adopt, _) => true,
            (Reconcile::Lost, _) => {
                drop(lease);
                tracing::info!(worker = %self.worker_id, owner = ?stored.and_then(|l| l.owner.clone()), "lease taken by another worker");
                self.lose();
                false
            }
        }
    }

    /// After a refused write of `lease` (the copy, locked): reads the stored lease and
    /// adopts it if a handoff step explains the refusal. Whether it did (the write may be
    /// decided again); a read error counts as no.
    async fn adopt_after_refusal(&self, lease: &mut Lease) -> bool {
        match self.store.get_lease(&lease.lease_key).await {
            Ok(Some(stored)) => match reconcile(lease, &stored, &self.worker_id) {
                Reconcile::Adopt => {
                    self.adopt_locked(lease, stored);
                    true
                }
                Reconcile::Keep | Reconcile::Lost => false,
            },
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(lease = %lease.lease_key, error = %e, "could not read a lease after a refused write");
                false
            }
        }
    }

    /// Ends the pending handoff of the lease (see [`Lease::end_handoff`]): by the previous
    /// owner once its consumer stopped, or by the next owner forcing it. `Ok(true)` if
    /// written; the previous owner's tenure ends either way, the next owner's goes on (it
    /// adopts the lease as written).
    ///
    /// # Cancellation
    /// Safe to drop: the write may still land; the next owner's next read shows it.
    ///
    /// # Errors
    /// The store's error.
    pub(crate) async fn end_handoff(&self) -> Result<bool, Error> {
        let mut lease = self.lease.lock().await;
        let Some(update) = lease.end_handoff() else {
            return Ok(false);
        };
        let outgoing = standing(&lease, &self.worker_id) == Standing::Outgoing;
        let written = self.store.update_lease(&update).await;
        if outgoing {
            drop(lease);
            self.lose();
        } else if let Ok(true) = written {
            update.apply_to(&mut lease);
            self.touch();
        }
        written
    }

    /// The meter the shard consumer counts the bytes it hands over in.
    pub(crate) fn throughput(&self) -> &ThroughputMeter {
        &self.throughput
    }

    /// `update` carrying the throughput measured now, if any.
    fn with_throughput(&self, update: LeaseUpdate) -> LeaseUpdate {
        match self.throughput.sample(Instant::now()) {
            Some(t) => update.with(Change::Throughput(t)),
            None => update,
        }
    }

    /// The lease as last written by this worker.
    ///
    /// # Cancellation
    /// Safe to drop: it only waits for a write in progress.
    pub(crate) async fn lease(&self) -> Lease {
        self.lease.lock().await.clone()
    }

    /// The lease as last written, unless a write of it is in flight (`None`): for checks
    /// that must not wait behind a slow write.
    pub(crate) fn lease_now(&self) -> Option<Lease> {
        self.lease.try_lock().ok().map(|l| l.clone())
    }

    /// Whether the lease was lost or released: no write will be made any more.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Marks the lease lost: its consumer stops, the coordinator forgets it.
    fn lose(&self) {
        self.lost.cancel();
    }

    /// Marks the lease lost from outside: the coordinator learnt that another worker took
    /// it (or that this one must give everything up).
    pub(crate) fn lose_now(&self) {
        self.lose();
    }

    /// Notes a successful write.
    fn touch(&self) {
        *self.last_renewed.lock().expect("not poisoned") = Instant::now();
    }

    /// How long since the last successful write.
    fn since_renewed(&self) -> Duration {
        self.last_renewed.lock().expect("not poisoned").elapsed()
    }

    /// Renews the lease. It is lost (and `false` returned) when the renewal is refused, or
    /// when it fails (or gets no answer within `failover / 3`) and no write succeeded for
    /// `failover` (others may have taken it by now); a failure before then is logged and
    /// the next renewal tries again.
    ///
    /// # Cancellation
    /// Safe to drop: a renewal already sent may still land, and is repeated next round.
    pub(crate) async fn renew(&self, failover: Duration) -> bool {
        let mut lease = self.lease.lock().await;
        if self.is_lost() {
            return false;
        }
        if matches!(standing(&lease, &self.worker_id), Standing::Incoming { .. }) {
            // The next owner of a pending handoff waits: the previous one writes (the Java
            // KCL's next owner does not even hold it yet).
            self.touch();
            return true;
        }
        let mut renewal = self.with_throughput(lease.renew());
        // A DynamoDB that does not answer within a third of the failover time counts as a
        // failed renewal, so that the lease is given up in time rather than waited on.
        let written = Error::dynamodb_within(
            "UpdateItem",
            "lease table",
            failover / 3,
            self.store.update_lease(&renewal),
        )
        .await;
        // Refused because a handoff started (or a step of it happened): renew the lease as
        // it is now, once.
        let written = match written {
            Ok(false) if self.adopt_after_refusal(&mut lease).await => {
                renewal = self.with_throughput(lease.renew());
                Error::dynamodb_within(
                    "UpdateItem",
                    "lease table",
                    failover / 3,
                    self.store.update_lease(&renewal),
                )
                .await
            }
            other => other,
        };
        let lost = match written {
            Ok(true) => {
                renewal.apply_to(&mut lease);
                self.touch();
                false
            }
            Ok(false) => true,
            Err(e) => {
                let late = self.since_renewed() > failover;
                tracing::warn!(lease = %lease.lease_key, error = %e, gives_up = late, "renewal failed");
                late
            }
        };
        if lost {
            self.lose();
        }
        !lost
    }

    /// With worker heartbeats (nothing renewed): renews the lease, writing its throughput,
    /// when the figure measured now differs from the one last written by more than
    /// `drift` and half of the larger of the two (a shard that went idle without a
    /// checkpoint, or grew hot); otherwise writes nothing. Whether it wrote.
    ///
    /// # Cancellation
    /// Safe to drop: a renewal already sent may still land.
    pub(crate) async fn refresh_throughput(&self, failover: Duration, drift: Throughput) -> bool {
        let Some(now) = self.throughput.sample(Instant::now()) else {
            return false;
        };
        let Some(written) = self.lease_now().map(|l| l.throughput) else {
            return false; // a write is in flight: it carries the figure
        };
        let written = written.map_or(0.0, Throughput::kbps);
        let gap = (now.kbps() - written).abs();
        if gap <= drift.kbps() || gap <= now.kbps().max(written) / 2.0 {
            return false;
        }
        self.renew(failover).await
    }

    /// Records `checkpoint` (and, at a shard end, the children), conditional on this
    /// worker still holding the lease.
    ///
    /// # Cancellation
    /// Dropping the future after the write was sent may still record the checkpoint.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if the lease was lost, or the write is refused (the lease is
    /// then lost); the store's error otherwise.
    pub(crate) async fn checkpoint(
        &self,
        checkpoint: &Checkpoint,
        child_shard_ids: &[String],
    ) -> Result<(), Error> {
        let started = std::time::Instant::now();
        self.write(|lease| lease.record_checkpoint(checkpoint, child_shard_ids))
            .await?;
        ::metrics::histogram!(m::CHECKPOINT_LATENCY).record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Records the first phase of a two-phase checkpoint, conditional on this worker still
    /// holding the lease.
    ///
    /// # Cancellation
    /// Dropping the future after the write was sent may still record it.
    ///
    /// # Errors
    /// As [`checkpoint`](Self::checkpoint).
    pub(crate) async fn prepare_checkpoint(
        &self,
        pending: &Checkpoint,
        state: Option<&Bytes>,
    ) -> Result<(), Error> {
        self.write(|lease| lease.prepare_checkpoint(pending, state))
            .await
    }

    /// Gives the lease up (see [`handoff::release`](super::handoff::release)): removes
    /// this worker as its owner, so that another worker can take it at its next taker
    /// round without waiting for expiry; a lease being handed from this worker has its
    /// handoff ended instead (the next owner holds it already: the Java KCL's eviction
    /// does the same), and one being handed to it is left to its previous owner, unwritten.
    /// The tenure ends either way; `Ok(false)` means nothing was written (the lease had
    /// moved on already, or was left to its previous owner).
    ///
    /// # Cancellation
    /// Safe to drop; the lease is then either released or left to expire.
    ///
    /// # Errors
    /// The store's error (the lease then expires).
    pub(crate) async fn release(&self) -> Result<bool, Error> {
        let lease = self.lease.lock().await;
        let update = match release(&standing(&lease, &self.worker_id)) {
            Release::RemoveOwner => Some(lease.release()),
            Release::EndHandoff => Some(lease.end_handoff().unwrap_or_else(|| lease.release())),
            Release::Nothing => {
                tracing::info!(worker = %self.worker_id, lease = %lease.lease_key, from = ?lease.checkpoint_owner, "left a lease handed to this worker to its previous owner, which ends the handoff");
                None
            }
        };
        let released = match update {
            Some(update) => self.store.update_lease(&update).await,
            None => Ok(false),
        };
        drop(lease);
        self.lose();
        released
    }

    /// One owner's write: decided by `decide` on the lease as last written, sent to the
    /// store, applied to the own copy when the store applied it.
    async fn write(&self, decide: impl Fn(&Lease) -> LeaseUpdate) -> Result<(), Error> {
        let mut lease = self.lease.lock().await;
        let lease_key = lease.lease_key.clone();
        if self.is_lost() {
            return Err(Error::LeaseLost { lease_key });
        }
        let mut update = self.with_throughput(decide(&lease));
        // A lease given up while the write waits (its worker fenced itself: DynamoDB did
        // not answer for the failover time) ends the wait: the caller learns at once; the
        // write may still land, as after any dropped call.
        let applied = tokio::select! {
            applied = self.store.update_lease(&update) => applied?,
            _ = self.lost.cancelled() => return Err(Error::LeaseLost { lease_key }),
        };
        // Refused because a handoff of the lease started: the previous owner may still
        // checkpoint (the Java KCL's guard expects both owners as they are now), once.
        let applied = if !applied && self.adopt_after_refusal(&mut lease).await {
            update = self.with_throughput(decide(&lease));
            self.store.update_lease(&update).await?
        } else {
            applied
        };
        if !applied {
            drop(lease);
            self.lose();
            return Err(Error::LeaseLost { lease_key });
        }
        update.apply_to(&mut lease);
        self.touch();
        Ok(())
    }
}
