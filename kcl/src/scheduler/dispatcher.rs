//! The [`Dispatcher`]: matches the leases this worker holds with running shard consumers.
//!
//! ```text
//!  every dispatch_interval, tick():
//!    consumer tasks that ended ──ShardEnded──▶ finished (not restarted while held)
//!                              ──panicked───▶ blocked for parent_poll_interval, then restarted
//!    LeaseCoordinator::held_leases:
//!      its stream no longer active (left the tracker's list) ─▶ retire: the consumer is
//!        asked to stop (shutdown_requested); once it has, the lease is released
//!      handed to another worker (Outgoing, see leases::handoff): the consumer is asked to
//!        stop; once it ended (or after graceful_handoff_timeout, aborted) the handoff ends
//!      handed to this worker (Incoming): not started until the previous owner handed it
//!        over (LeaseCoordinator::check_incoming_handoff reads it every 250 ms at most);
//!        given up meanwhile (retired, or at stop), it is left to the previous owner unwritten
//!      each not running, finished, lost or blocked:
//!      parents all at SHARD_END? (LeaseStore::get_lease, keys of the lease's stream)
//!        ──no / unreadable──▶ blocked until now + parent_poll_interval
//!        ──yes──▶ spawn ShardConsumer reading from its stream's records source (polling
//!                 or fan-out; stops on its own token, or at once on hard_stop)
//!  stop(timeout): every consumer's token ─▶ wait until the deadline ─▶ abort the rest
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::active_streams::{ActiveStreams, StreamRuntime};
use super::Inner;
use crate::consumer::{Batching, Exit, FailureRetry, PayloadDecompression, ShardConsumer};
use crate::error::Error;
use crate::leases::handoff::{outgoing, Outgoing, Standing};
use crate::leases::LeaseStore;
use crate::leases::LoadMeter;
use crate::leases::{HeldLease, Lease, LeaseCoordinator};
use crate::processor::RecordProcessorFactory;
use kinesis_agg::OutsideRangePolicy;

/// How often a lease handed to this worker is read while its previous owner finishes
/// (one `GetItem` each time): 250 ms (or the renewal interval, if shorter). A handoff
/// usually ends within a second (the previous owner learns of it at its next checkpoint
/// or beat), so it costs a few reads per moved lease, and the new owner starts a quarter
/// of a second after it at most (a second, before: 1.25 s from a joiner's spawn to its
/// first record in the failover bench).
const HANDOFF_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A running consumer, as the dispatcher tracks it.
#[derive(Debug)]
struct Running {
    /// The tenure it runs under: a finished consumer's lease is kept apart while this
    /// tenure lasts.
    held: Arc<HeldLease>,
    /// Its graceful stop.
    shutdown: CancellationToken,
    /// Its task, to see it end and to abort it.
    task: tokio::task::JoinHandle<Exit>,
}

/// Starts, tracks and stops the shard consumers of one worker.
pub(super) struct Dispatcher {
    /// Which leases this worker holds.
    coordinator: Arc<LeaseCoordinator>,
    /// Reads parent leases, to hold children back until their parents are done.
    store: Arc<dyn LeaseStore>,
    /// This worker, for logs.
    worker_id: String,
    /// The streams consumed now: each lease's records source, shard sync (to create child
    /// leases at a shard end) and `AT_TIMESTAMP` start.
    streams: Arc<ActiveStreams>,
    /// Makes each consumer's processor.
    factory: Arc<dyn RecordProcessorFactory>,
    /// What consumers do with records of aggregates outside their shard's range.
    outside_range: OutsideRangePolicy,
    /// Whether consumers inflate gzip and zlib payloads.
    decompression: PayloadDecompression,
    /// Lambda-style batching of every consumer's `process_records` calls, if any.
    batching: Option<Batching>,
    /// What consumers do after their processor reports a failure.
    failure_retry: FailureRetry,
    /// Counts what every consumer reads, for the heartbeat to report.
    load: Arc<LoadMeter>,
    /// How long a lease waits before its parents (or a failed consumer) are looked at again.
    parent_poll_interval: Duration,
    /// Consumers running now, by lease key.
    running: HashMap<String, Running>,
    /// Leases waiting for their parents (or after a panic), with when to look again.
    blocked: HashMap<String, Instant>,
    /// Leases whose shard this worker finished during their current tenure.
    finished: HashMap<String, Arc<HeldLease>>,
    /// Woken by a consumer after its `SHARD_END` checkpoint: a shard sync then looks for
    /// the children.
    shard_ended: Arc<Notify>,
    /// Cancelled when `run` ends abruptly (its future dropped): every consumer stops at once.
    hard_stop: CancellationToken,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("worker_id", &self.worker_id)
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .field("blocked", &self.blocked.keys().collect::<Vec<_>>())
            .field("finished", &self.finished.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for the worker `inner` whose consumers read from the sources of its
    /// active streams, running nothing yet; `hard_stop` stops every consumer at once.
    pub(super) fn new(inner: &Inner, hard_stop: CancellationToken) -> Self {
        Self {
            coordinator: inner.coordinator.clone(),
            store: inner.store.clone(),
            worker_id: inner.worker_id.clone(),
            streams: inner.streams.clone(),
            factory: inner.factory.clone(),
            outside_range: inner.config.outside_range,
            decompression: inner.config.decompression,
            batching: inner.config.batching,
            failure_retry: inner.config.failure_retry,
            load: inner.load.clone(),
            parent_poll_interval: inner.config.parent_poll_interval,
            running: HashMap::new(),
            blocked: HashMap::new(),
            finished: HashMap::new(),
            shard_ended: Arc::new(Notify::new()),
            hard_stop,
        }
    }

    /// Woken after every `SHARD_END` checkpoint.
    pub(super) fn shard_ended(&self) -> Arc<Notify> {
        self.shard_ended.clone()
    }

    /// Ticks every `interval` until `shutdown` is cancelled.
    ///
    /// # Cancellation
    /// Safe to drop: consumers already started keep running until [`stop`](Self::stop)
    /// or `hard_stop`.
    pub(super) async fn run(&mut self, shutdown: &CancellationToken, interval: Duration) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            self.tick().await;
        }
    }

    /// Starts consumers for held leases whose parents are done; forgets finished ones.
    ///
    /// # Cancellation
    /// Safe to drop: a consumer is either started and tracked, or not started.
    pub(super) async fn tick(&mut self) {
        self.collect_ended().await;
        let held = self.coordinator.held_leases();
        self.finished
            .retain(|k, h| held.iter().any(|(hk, hh)| hk == k && Arc::ptr_eq(hh, h)));
        self.blocked
            .retain(|k, _| held.iter().any(|(hk, _)| hk == k));
        let now = Instant::now();
        for (key, h) in held {
            if h.is_lost() {
                continue;
            }
            let standing = h.standing_now();
            if standing == Some(Standing::Outgoing) {
                self.hand_over(&key, &h).await;
                continue;
            }
            // Told by the key alone: no wait behind a write of the lease in flight.
            if !self.streams.is_active_key(&key) {
                self.retire(&key).await;
                continue;
            }
            if self.running.contains_key(&key) || self.finished.contains_key(&key) {
                continue;
            }
            if self.blocked.get(&key).is_some_and(|until| *until > now) {
                continue;
            }
            // Handed to this worker: started only once the previous owner handed it over
            // (or it was forced), from the checkpoint stored then; looked at every
            // HANDOFF_POLL_INTERVAL meanwhile.
            if matches!(standing, Some(Standing::Incoming { .. }))
                && !self.coordinator.check_incoming_handoff(&key).await
            {
                // At least every renewal interval: once handed over, the lease is renewed
                // by this worker before its counter looks still to others.
                let poll = HANDOFF_POLL_INTERVAL.min(self.coordinator.config().renew_interval);
                self.blocked.insert(key.clone(), now + poll);
                continue;
            }
            let lease = h.lease().await;
            let Some(stream) = self.streams.for_lease(&lease) else {
                self.retire(&key).await;
                continue;
            };
            match self.parents_done(&lease).await {
                Ok(true) => {
                    self.blocked.remove(&key);
                }
                Ok(false) => {
                    self.blocked
                        .insert(key.clone(), now + self.parent_poll_interval);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "could not read parent leases");
                    self.blocked
                        .insert(key.clone(), now + self.parent_poll_interval);
                    continue;
                }
            }
            self.start(key, h, &stream);
        }
    }

    /// Stops working on a held lease whose stream is no longer consumed: its consumer is
    /// asked to stop as at a shutdown (it finishes its batch, its processor gets
    /// `shutdown_requested`); once it has ended, the lease is released (unowned, no
    /// worker takes it while its stream is not tracked).
    async fn retire(&mut self, key: &str) {
        if let Some(r) = self.running.get(key) {
            if !r.shutdown.is_cancelled() {
                tracing::info!(worker = %self.worker_id, lease = %key, "its stream is no longer consumed: stopping the shard consumer");
                r.shutdown.cancel();
            }
            return;
        }
        self.finished.remove(key);
        self.blocked.remove(key);
        match self.coordinator.release_lease(key).await {
            Ok(true) => {
                tracing::info!(worker = %self.worker_id, lease = %key, "released the lease of a stream no longer consumed")
            }
            // It moved on, or is being handed to this worker (left to its previous owner,
            // see leases::handoff).
            Ok(false) => {
                tracing::debug!(worker = %self.worker_id, lease = %key, "gave up the lease of a stream no longer consumed without a write")
            }
            Err(e) => {
                tracing::warn!(lease = %key, error = %e, "release failed; the lease expires instead")
            }
        }
    }

    /// The previous owner's side of a graceful handoff of `key` (see `leases::handoff`):
    /// its consumer is asked to stop (the processor gets `shutdown_requested` and may
    /// checkpoint); once it ended, or when the graceful handoff timeout passed (it is
    /// aborted then), the handoff is ended and the lease forgotten.
    async fn hand_over(&mut self, key: &str, held: &HeldLease) {
        let running = self.running.get(key);
        let decision = outgoing(
            running.is_some(),
            running.is_some_and(|r| r.shutdown.is_cancelled()),
            held.handoff_waited(),
            self.coordinator.config().graceful_handoff_timeout,
        );
        match decision {
            Outgoing::Wait => {}
            Outgoing::StopConsumer => {
                if let Some(r) = running {
                    tracing::info!(worker = %self.worker_id, lease = %key, "lease handed to another worker: stopping the shard consumer");
                    r.shutdown.cancel();
                }
            }
            Outgoing::Complete { abort } => {
                if let Some(r) = self.running.remove(key) {
                    tracing::warn!(worker = %self.worker_id, lease = %key, "shard consumer did not stop within the graceful handoff timeout; aborting it");
                    r.task.abort();
                    // Its last write, if any, lands before the handoff ends.
                    let _ = r.task.await;
                }
                self.finished.remove(key);
                self.blocked.remove(key);
                self.coordinator.end_outgoing_handoff(key, abort).await;
            }
        }
    }

    /// Takes in the consumers that ended since the last tick.
    async fn collect_ended(&mut self) {
        let ended: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            let Some(r) = self.running.remove(&key) else {
                continue;
            };
            match r.task.await {
                // Finished shards stay finished while held (until shard sync deletes them).
                Ok(Exit::ShardEnded) => {
                    self.finished.insert(key, r.held);
                }
                Ok(_) => {}
                // A processor panicked: start it again (from the last checkpoint) after a
                // pause, as long as the lease is held.
                Err(e) => {
                    tracing::error!(lease = %key, error = %e, "shard consumer failed; restarting it");
                    self.blocked
                        .insert(key, Instant::now() + self.parent_poll_interval);
                }
            }
        }
    }

    /// Spawns the consumer of one held lease of `stream`.
    fn start(&mut self, key: String, held: Arc<HeldLease>, stream: &StreamRuntime) {
        let shutdown = self.hard_stop.child_token();
        let consumer = ShardConsumer {
            source: stream.source.clone(),
            held: held.clone(),
            processor: self.factory.create_processor(&key),
            at_timestamp: stream.at_timestamp,
            shutdown: shutdown.clone(),
            shard_ended: self.shard_ended.clone(),
            shard_sync: stream.shard_sync.clone(),
            outside_range: self.outside_range,
            decompression: self.decompression,
            batching: self.batching,
            failure_retry: self.failure_retry,
            meter: Some(self.load.shard(&key)),
        };
        tracing::info!(worker = %self.worker_id, lease = %key, stream = %stream.name, "starting shard consumer");
        let hard = self.hard_stop.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                exit = consumer.run() => exit,
                _ = hard.cancelled() => Exit::Shutdown,
            }
        });
        self.running.insert(
            key,
            Running {
                held,
                shutdown,
                task,
            },
        );
    }

    /// Whether every parent lease of `lease` has reached `SHARD_END` (a parent with no
    /// lease counts as done: it was finished and cleaned up, or never leased). Parents are
    /// shard ids of the lease's own stream.
    async fn parents_done(&self, lease: &Lease) -> Result<bool, Error> {
        for p in &lease.parent_shard_ids {
            if let Some(lease) = self.store.get_lease(&lease.sibling_lease_key(p)).await? {
                if !lease.checkpoint.is_shard_end() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Asks every consumer to stop (it finishes its batch and calls `shutdown_requested`)
    /// and waits for them until `timeout` has passed; those still running then are aborted.
    ///
    /// # Cancellation
    /// Safe to drop: consumers not waited for yet stop on `hard_stop`.
    pub(super) async fn stop(mut self, timeout: Duration) {
        for r in self.running.values() {
            r.shutdown.cancel();
        }
        let deadline = Instant::now() + timeout;
        for (key, mut r) in self.running.drain() {
            match tokio::time::timeout_at(deadline, &mut r.task).await {
                Ok(Ok(exit)) => tracing::debug!(lease = %key, ?exit, "consumer stopped"),
                Ok(Err(e)) => tracing::error!(lease = %key, error = %e, "consumer task failed"),
                Err(_) => {
                    tracing::error!(lease = %key, "processor did not finish in time; aborting it");
                    r.task.abort();
                }
            }
        }
    }
}
