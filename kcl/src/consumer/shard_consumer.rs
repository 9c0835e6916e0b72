//! [`ShardConsumer`]: one per held lease, feeding one [`RecordProcessor`] from a
//! [`RecordsSource`] it does not otherwise know.
//!
//! ```text
//!  lease: checkpoint ─▶ StartingPosition ─▶ source.start ─▶ Receiver<Batch>
//!  initialize(checkpoint, pending)
//!  each batch ─▶ millis_behind_latest gauge
//!             ─▶ user_records: deaggregate + range filter, drop ≤ start checkpoint
//!                (sub-sequence aware); the batch end goes to the Checkpointer
//!             ─▶ process_records(records, checkpointer)
//!  end-of-shard batch ─▶ child leases ─▶ shard_ended ─▶ SHARD_END ─▶ wake shard sync
//!                        (asked again, 500 ms doubling to 30 s, until it checkpoints)
//!  failure reported (checkpointer.retry_from / retry_batch) ─▶ RetryLedger: pause, then
//!                        the source restarts at the failed record (bisecting a failed batch)
//!  lease lost ──────▶ lease_lost          channel closed without end ─▶ lease_lost
//!  graceful stop ───▶ shutdown_requested
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::types::ChildShard;
use backon::{ExponentialBuilder, RetryableWithContext};
use kinesis_agg::{Deaggregator, HashKeyRange, OutsideRangePolicy};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::batcher::{Batcher, Batching, Delivery};
use super::failure_retry::{FailedDelivery, Failure, FailureRetry, Resume, RetryLedger};
use super::user_records::{user_records, Skip, UserRecords};
use super::{inflate_all, PayloadDecompression, RecordsSource, StartingPosition};
use crate::checkpoint::{Checkpoint, SequenceNumber};
use crate::checkpointer::Checkpointer;
use crate::leases::HeldLease;
use crate::leases::ShardMeter;
use crate::leases::ShardSync;
use crate::metric_names as m;
use crate::processor::{
    InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor, ShardEndedInput,
    ShutdownRequestedInput,
};

/// Why a shard consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The shard is finished and `SHARD_END` is checkpointed.
    ShardEnded,
    /// The lease was lost.
    LeaseLost,
    /// Graceful shutdown.
    Shutdown,
}

/// Everything a shard consumer needs; built by the scheduler.
pub(crate) struct ShardConsumer {
    /// Where the records come from (polling, or any other retrieval); started once, at
    /// the lease's checkpoint.
    pub(crate) source: Arc<dyn RecordsSource>,
    /// The lease, for this tenure: what to read, and where checkpoints are written.
    pub(crate) held: Arc<HeldLease>,
    /// The user's processor.
    pub(crate) processor: Box<dyn RecordProcessor>,
    /// The timestamp for an `AT_TIMESTAMP` start: the source's starting position when the
    /// lease holds that sentinel.
    pub(crate) at_timestamp: Option<SystemTime>,
    /// Graceful shutdown of this consumer.
    pub(crate) shutdown: CancellationToken,
    /// Woken after a `SHARD_END` checkpoint.
    pub(crate) shard_ended: Arc<Notify>,
    /// Creates the child leases the source reports at the shard end.
    pub(crate) shard_sync: ShardSync,
    /// What happens to records of aggregates outside the shard's hash key range.
    pub(crate) outside_range: OutsideRangePolicy,
    /// Whether gzip and zlib payloads are inflated.
    pub(crate) decompression: PayloadDecompression,
    /// Lambda-style batching of `process_records` calls, or one call per source batch.
    pub(crate) batching: Option<Batching>,
    /// What happens after the processor reports a failed record or batch.
    pub(crate) failure_retry: FailureRetry,
    /// Counts what is read for the worker's heartbeat to report (none: not counted).
    pub(crate) meter: Option<ShardMeter>,
}

/// The source a consumer reads from now, and what it leaves out of it.
struct Reading {
    /// The Kinesis shard id read (without the stream of a multi-stream lease key), to
    /// start reading it again.
    shard_id: String,
    /// The source's batches.
    rx: tokio::sync::mpsc::Receiver<super::Batch>,
    /// Records handed over before (at or before the start, or before a retried record).
    skip: Skip,
    /// Stops the source when the reading is replaced or the consumer ends.
    _stop: tokio_util::sync::DropGuard,
}

/// What a delivery needs besides the consumer.
struct Ctx<'a> {
    /// The shard's checkpointer.
    checkpointer: &'a Checkpointer,
    /// The `shard` metric label.
    shard_label: &'a str,
    /// When the source batch that made the delivery ready arrived (none: a window
    /// closed), for the hand-off metric.
    received: Option<Instant>,
}

/// Says that records outside the shard's range were seen: at `warn` the first time, then
/// at most every [`OUTSIDE_RANGE_WARN_EVERY`] with the totals (a stream written by an
/// aggregator that packs any keys has such records in every batch).
#[derive(Debug, Default)]
struct OutsideRangeLog {
    /// Dropped so far by this consumer.
    dropped: u64,
    /// Delivered (marked) so far by this consumer.
    delivered: u64,
    /// When the last warning was logged.
    last_warn: Option<tokio::time::Instant>,
}

/// How often a shard consumer repeats its warning about records outside the shard's range.
const OUTSIDE_RANGE_WARN_EVERY: Duration = Duration::from_secs(60);

impl OutsideRangeLog {
    /// Counts one batch's records outside the range, and warns if it is time.
    fn note(&mut self, dropped: usize, delivered: usize) {
        if dropped == 0 && delivered == 0 {
            return;
        }
        self.dropped += dropped as u64;
        self.delivered += delivered as u64;
        let now = tokio::time::Instant::now();
        if self
            .last_warn
            .is_some_and(|at| now.duration_since(at) < OUTSIDE_RANGE_WARN_EVERY)
        {
            return;
        }
        self.last_warn = Some(now);
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                delivered = self.delivered,
                "records of aggregates whose hash key lies outside this shard were dropped (the \
                 Java KCL's rule; right for KPL aggregates, which the KPL re-sends to their own \
                 shard); if a producer packs any keys into one aggregate (aws-kinesis-agg for \
                 Python or Node, some Go producers), they are lost: use \
                 OutsideRangePolicy::Keep (kinesis-cat consume --outside-range keep)"
            );
        } else {
            tracing::warn!(
                delivered = self.delivered,
                "records of aggregates whose hash key lies outside this shard were delivered, \
                 marked outside_shard_range (OutsideRangePolicy::Keep)"
            );
        }
    }
}

impl ShardConsumer {
    /// Runs until the shard ends, the lease is lost, or shutdown.
    ///
    /// # Cancellation
    /// Dropping the future stops the consumer abruptly (its source's task too): the processor
    /// gets no last call, and records after the last checkpoint are delivered again to the
    /// next tenure; a checkpoint already sent may still land.
    pub(crate) async fn run(self) -> Exit {
        let lease = self.held.lease().await;
        let span = tracing::info_span!("shard_consumer", shard = %lease.lease_key);
        self.run_inner(lease).instrument(span).await
    }

    async fn run_inner(mut self, lease: crate::Lease) -> Exit {
        // The lease key names the shard in checkpoints, logs and metrics (with its stream in
        // a multi-stream application); the bare shard id is what Kinesis knows.
        let shard_id = lease.lease_key.clone();
        let kinesis_shard_id = lease.shard_id().to_owned();
        let start = lease.checkpoint.clone();
        if start.is_shard_end() {
            // Finished by an earlier owner; nothing to deliver.
            self.shard_ended.notify_one();
            return Exit::ShardEnded;
        }
        let checkpointer = Checkpointer::new(
            self.held.clone(),
            shard_id.clone(),
            start.clone(),
            self.shard_ended.clone(),
        );
        self.processor
            .initialize(InitializationInput {
                shard_id: kinesis_shard_id.clone(),
                stream: lease.stream.clone(),
                checkpoint: start.clone(),
                pending_checkpoint: lease.pending_checkpoint.clone(),
                pending_checkpoint_state: lease.pending_checkpoint_state.clone(),
            })
            .await;

        let mut reading = self.read_from(
            &kinesis_shard_id,
            StartingPosition::from_checkpoint(&start, self.at_timestamp),
            Skip::Covered(start.clone()),
        );
        let deagg = Deaggregator::new()
            .with_shard_range(lease.hash_key_range.unwrap_or(HashKeyRange::ALL))
            .with_outside_range_policy(self.outside_range);
        let shard_label = shard_id.clone();
        let mut outside_log = OutsideRangeLog::default();
        let mut batcher = Batcher::new(self.batching);
        let mut ledger = RetryLedger::new(self.failure_retry);
        loop {
            let deadline = batcher.deadline();
            let batch = tokio::select! {
                biased;
                _ = self.held.lost.cancelled() => {
                    self.processor.lease_lost(LeaseLostInput::default()).await;
                    return Exit::LeaseLost;
                }
                _ = self.shutdown.cancelled() => {
                    self.processor
                        .shutdown_requested(ShutdownRequestedInput { checkpointer: checkpointer.clone() })
                        .await;
                    return Exit::Shutdown;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    // A batching window closed: deliver what waited.
                    let ctx = Ctx { checkpointer: &checkpointer, shard_label: &shard_label, received: None };
                    if let Some(failed) = self.deliver_ready(&mut batcher, &mut ledger, &ctx, false).await {
                        if let Some(exit) = self.retry(failed, &mut ledger, &mut reading, &mut batcher, &ctx).await {
                            return exit;
                        }
                    }
                    continue;
                }
                b = reading.rx.recv() => b,
            };
            let Some(batch) = batch else {
                // A source only stops on its own at a shard end, which it reports first.
                tracing::error!("record source stopped unexpectedly");
                self.processor.lease_lost(LeaseLostInput::default()).await;
                return Exit::LeaseLost;
            };
            if let Some(ms) = batch.millis_behind_latest {
                ::metrics::gauge!(m::MILLIS_BEHIND_LATEST, "shard" => shard_label.clone())
                    .set(ms as f64);
            }
            let UserRecords {
                mut records,
                last,
                dropped_outside_range,
                kept_outside_range,
                skipped,
                corrupt_aggregates,
            } = user_records(&deagg, &reading.skip, batch.records);
            for (n, name) in [
                (skipped, m::RECORDS_SKIPPED),
                (corrupt_aggregates, m::CORRUPT_AGGREGATES),
            ] {
                if n > 0 {
                    ::metrics::counter!(name, "shard" => shard_label.clone()).increment(n as u64);
                }
            }
            for (n, action) in [
                (dropped_outside_range, "dropped"),
                (kept_outside_range, "delivered"),
            ] {
                if n > 0 {
                    ::metrics::counter!(m::RECORDS_OUTSIDE_SHARD_RANGE, "shard" => shard_label.clone(), "action" => action)
                        .increment(n as u64);
                }
            }
            outside_log.note(dropped_outside_range, kept_outside_range);
            if self.decompression == PayloadDecompression::GzipAndZlib {
                let (inflated, not_inflated) = inflate_all(&mut records);
                if inflated > 0 {
                    ::metrics::counter!(m::RECORDS_INFLATED, "shard" => shard_label.clone())
                        .increment(inflated as u64);
                }
                if not_inflated > 0 {
                    ::metrics::counter!(m::RECORDS_NOT_INFLATED, "shard" => shard_label.clone())
                        .increment(not_inflated as u64);
                    tracing::debug!(
                        records = not_inflated,
                        "payloads with a gzip or zlib header did not inflate; handed over as sent"
                    );
                }
            }
            let bytes = records.iter().map(|r| r.data.len()).sum();
            self.held.throughput().record(bytes);
            if let Some(meter) = &self.meter {
                meter.record(records.len(), bytes, batch.millis_behind_latest);
            }
            batcher.push(
                records,
                last,
                dropped_outside_range,
                batch.millis_behind_latest,
                Instant::now(),
            );
            let ctx = Ctx {
                checkpointer: &checkpointer,
                shard_label: &shard_label,
                received: Some(batch.received),
            };
            let at_end = batch.end.is_some();
            let Some(failed) = self
                .deliver_ready(&mut batcher, &mut ledger, &ctx, at_end)
                .await
            else {
                if let Some(children) = batch.end {
                    return self.finish_shard(&checkpointer, children).await;
                }
                continue;
            };
            // The shard end is read again with the retried records.
            if let Some(exit) = self
                .retry(failed, &mut ledger, &mut reading, &mut batcher, &ctx)
                .await
            {
                return exit;
            }
        }
    }

    /// Starts the source at `from`; its records that `skip` leaves out are dropped.
    fn read_from(&self, shard_id: &str, from: StartingPosition, skip: Skip) -> Reading {
        let stop = CancellationToken::new();
        let rx = self.source.start(shard_id, from, stop.clone());
        Reading {
            shard_id: shard_id.to_owned(),
            rx,
            skip,
            _stop: stop.drop_guard(),
        }
    }

    /// Hands over every delivery the batcher has ready (everything left, at a shard end),
    /// until one is reported failed: that one, with its shape.
    async fn deliver_ready(
        &mut self,
        batcher: &mut Batcher,
        ledger: &mut RetryLedger,
        ctx: &Ctx<'_>,
        at_end: bool,
    ) -> Option<(Failure, FailedDelivery)> {
        loop {
            batcher.set_cap(ledger.cap());
            let d = if at_end {
                batcher.next_at_end()
            } else {
                batcher.ready(Instant::now())
            }?;
            let end = d.end.clone();
            match self.deliver(d, ctx).await {
                Ok(()) => ledger.delivered(end.as_ref()),
                Err(failed) => return Some(failed),
            }
        }
    }

    /// Acts on a failed delivery as the ledger says: counts and logs it, pauses, and reads
    /// again from the failed record with a fresh batcher. `Some` when the consumer must
    /// stop instead (the lease was lost or shutdown requested during the pause).
    async fn retry(
        &mut self,
        (failure, delivery): (Failure, FailedDelivery),
        ledger: &mut RetryLedger,
        reading: &mut Reading,
        batcher: &mut Batcher,
        ctx: &Ctx<'_>,
    ) -> Option<Exit> {
        let Some(retry) = ledger.failed(failure, &delivery) else {
            tracing::warn!("a delivery without records was reported failed; nothing to retry");
            return None;
        };
        let label = ctx.shard_label.to_owned();
        if let Some((seq, sub)) = &retry.gave_up {
            ::metrics::counter!(m::RECORDS_GIVEN_UP, "shard" => label).increment(1);
            tracing::error!(
                sequence_number = %seq,
                sub_sequence_number = sub,
                attempts = retry.attempts,
                "record given up after failing max_attempts times; going on after it"
            );
            ctx.checkpointer.set_batch_end(seq.clone(), *sub);
        } else {
            ::metrics::counter!(m::DELIVERY_RETRIES, "shard" => label).increment(1);
            let (seq, sub) = match &retry.resume {
                Resume::At(p) | Resume::After(p) => p,
            };
            tracing::warn!(
                sequence_number = %seq,
                sub_sequence_number = sub,
                attempts = retry.attempts,
                records_per_call = retry.cap,
                pause = ?retry.pause,
                "the processor reported a failure; reading again from the failed record"
            );
        }
        tokio::select! {
            biased;
            _ = self.held.lost.cancelled() => {
                self.processor.lease_lost(LeaseLostInput::default()).await;
                return Some(Exit::LeaseLost);
            }
            _ = self.shutdown.cancelled() => {
                self.processor
                    .shutdown_requested(ShutdownRequestedInput { checkpointer: ctx.checkpointer.clone() })
                    .await;
                return Some(Exit::Shutdown);
            }
            _ = tokio::time::sleep(retry.pause) => {}
        }
        let (from, skip) = match retry.resume {
            Resume::At((seq, 0)) => (seq.clone(), Skip::Before(seq)),
            Resume::At((seq, sub)) => (
                seq.clone(),
                Skip::Covered(Checkpoint::Sequence {
                    sequence_number: seq,
                    sub_sequence_number: sub - 1,
                }),
            ),
            Resume::After((seq, sub)) => (
                seq.clone(),
                Skip::Covered(Checkpoint::Sequence {
                    sequence_number: seq,
                    sub_sequence_number: sub,
                }),
            ),
        };
        // The old source stops as its guard drops.
        let shard_id = std::mem::take(&mut reading.shard_id);
        *reading = self.read_from(&shard_id, StartingPosition::AtSequence(from), skip);
        *batcher = Batcher::new(self.batching);
        None
    }

    /// Hands one delivery to the processor: its end becomes the checkpointer's batch end,
    /// and the processor is called when it has records or says some were left out (a
    /// batch whose only records were dropped still reaches it, with the count: nothing is
    /// left out unseen). `Err` with its shape when the processor reported it failed.
    async fn deliver(
        &mut self,
        d: Delivery,
        ctx: &Ctx<'_>,
    ) -> Result<(), (Failure, FailedDelivery)> {
        let checkpointer = ctx.checkpointer;
        if let Some((seq, sub)) = d.end.clone() {
            checkpointer.set_batch_end(seq, sub);
        }
        if !d.calls_processor() {
            return Ok(());
        }
        ::metrics::counter!(m::RECORDS_PROCESSED, "shard" => ctx.shard_label.to_owned())
            .increment(d.records.len() as u64);
        if let (None, Some(received)) = (self.batching, ctx.received) {
            ::metrics::histogram!(m::BATCH_WAIT).record(received.elapsed().as_secs_f64());
        }
        if let Some(age) = d
            .records
            .last()
            .and_then(|r| r.approximate_arrival_timestamp)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
        {
            ::metrics::histogram!(m::RECORD_AGE).record(age.as_secs_f64());
        }
        let shape = FailedDelivery {
            first: d.records.first().and_then(|r| {
                SequenceNumber::parse(&r.sequence_number).map(|s| (s, r.sub_sequence_number))
            }),
            len: d.records.len(),
            end: d.end,
        };
        self.processor
            .process_records(ProcessRecordsInput {
                records: d.records,
                millis_behind_latest: d.millis_behind_latest,
                dropped_outside_shard_range: d.dropped_outside_range,
                checkpointer: checkpointer.clone(),
            })
            .await;
        match checkpointer.take_failure() {
            None => Ok(()),
            Some(failure) => Err((failure, shape)),
        }
    }

    /// Hands the shard end to the processor until it checkpoints `SHARD_END`: asked again
    /// after [`shard_end_backoff`]'s delays, a pause cut short when the lease is lost
    /// (`lease_lost`) or shutdown is requested (the consumer stops).
    async fn finish_shard(self, checkpointer: &Checkpointer, children: Vec<ChildShard>) -> Exit {
        if !children.is_empty() {
            if let Err(e) = self.shard_sync.create_child_leases(&children).await {
                tracing::warn!(error = %e, "creating child leases failed; shard sync will");
            }
        }
        checkpointer.set_shard_end(children.iter().map(|c| c.shard_id().to_owned()).collect());
        let ShardConsumer {
            processor,
            held,
            shutdown,
            ..
        } = self;
        let mut first = true;
        let ask = {
            let (held, shutdown, checkpointer) =
                (held.clone(), shutdown.clone(), checkpointer.clone());
            move |mut processor: Box<dyn RecordProcessor>| {
                let again = !std::mem::replace(&mut first, false);
                let (held, shutdown, checkpointer) =
                    (held.clone(), shutdown.clone(), checkpointer.clone());
                async move {
                    // A pause cut short by a shutdown: stop asking.
                    if again && shutdown.is_cancelled() {
                        return (processor, Ok(Exit::Shutdown));
                    }
                    if held.is_lost() {
                        processor.lease_lost(LeaseLostInput::default()).await;
                        return (processor, Ok(Exit::LeaseLost));
                    }
                    processor
                        .shard_ended(ShardEndedInput {
                            checkpointer: checkpointer.clone(),
                        })
                        .await;
                    let exit = if checkpointer.last_checkpoint().is_shard_end() {
                        Ok(Exit::ShardEnded)
                    } else {
                        Err(NotCheckpointed)
                    };
                    (processor, exit)
                }
            }
        };
        let pause = move |delay| {
            let (lost, shutdown) = (held.lost.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = lost.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        };
        let (_, exit) = ask
            .retry(shard_end_backoff())
            .sleep(pause)
            .notify(|_: &NotCheckpointed, _| {
                tracing::error!(
                    "the record processor returned from shard_ended without checkpointing; \
                     the shard's children cannot start until it does; asking again"
                );
            })
            .context(processor)
            .await;
        match exit {
            Ok(Exit::ShardEnded) => {
                tracing::info!("shard ended");
                Exit::ShardEnded
            }
            Ok(other) => other,
            Err(NotCheckpointed) => unreachable!("the processor is asked again without end"),
        }
    }
}

/// A processor returned from `shard_ended` without checkpointing `SHARD_END`.
#[derive(Debug)]
struct NotCheckpointed;

/// Pauses before asking a processor again to checkpoint its shard end: 500 ms doubling
/// up to 30 s, without end.
fn shard_end_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use std::sync::Mutex;

    use async_trait::async_trait;
    use backon::BackoffBuilder;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;
    use crate::consumer::{Batch, Polling, PollingConfig};
    use crate::initial_position::InitialPosition;
    use crate::leases::{LeaseConfig, LeaseCoordinator, LeaseStore, MemoryLeaseStore};
    use crate::processor::KinesisClientRecord;
    use crate::Lease;

    /// Checkpoints the shard end at its `checkpoint_on`-th `shard_ended` (never if 0).
    struct Stubborn {
        /// `shard_ended` calls so far.
        asks: Arc<AtomicUsize>,
        /// The call that checkpoints.
        checkpoint_on: usize,
        /// Set by `lease_lost`.
        lost: Arc<AtomicBool>,
    }

    #[async_trait]
    impl RecordProcessor for Stubborn {
        async fn initialize(&mut self, _: InitializationInput) {}
        async fn process_records(&mut self, _: ProcessRecordsInput) {}
        async fn lease_lost(&mut self, _: LeaseLostInput) {
            self.lost.store(true, Ordering::SeqCst);
        }
        async fn shard_ended(&mut self, input: ShardEndedInput) {
            let n = self.asks.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.checkpoint_on {
                input.checkpointer.checkpoint().await.unwrap();
            }
        }
    }

    /// Lease "s" at `checkpoint`, created in a memory store and taken by worker "w"; with
    /// a Kinesis client that is never called (no endpoint).
    async fn held_in_memory(
        checkpoint: Checkpoint,
    ) -> (
        Arc<MemoryLeaseStore>,
        Arc<HeldLease>,
        aws_sdk_kinesis::Client,
    ) {
        let store = Arc::new(MemoryLeaseStore::new());
        store
            .create_lease_if_not_exists(&Lease::new("s", checkpoint))
            .await
            .unwrap();
        let coordinator = LeaseCoordinator::new(store.clone(), "w", LeaseConfig::default());
        coordinator.take_leases().await.unwrap();
        let held = coordinator.held_lease("s").unwrap();
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .build(),
        );
        (store, held, kinesis)
    }

    /// A consumer of lease "s" held in a memory store, at its shard end, with a
    /// [`Stubborn`] processor; its asks and lease-lost flag.
    async fn at_shard_end(
        checkpoint_on: usize,
    ) -> (
        ShardConsumer,
        Checkpointer,
        Arc<AtomicUsize>,
        Arc<AtomicBool>,
    ) {
        let (store, held, kinesis) = held_in_memory(Checkpoint::TrimHorizon).await;
        let (asks, lost) = (Arc::default(), Arc::<AtomicBool>::default());
        let shard_ended = Arc::new(Notify::new());
        let checkpointer = Checkpointer::new(
            held.clone(),
            "s".into(),
            Checkpoint::TrimHorizon,
            shard_ended.clone(),
        );
        let consumer = ShardConsumer {
            shard_sync: ShardSync::new(
                kinesis.clone(),
                "stream",
                store,
                InitialPosition::TrimHorizon,
            ),
            source: Arc::new(Polling::new(kinesis, "stream", PollingConfig::default())),
            outside_range: OutsideRangePolicy::Drop,
            decompression: PayloadDecompression::Off,
            batching: None,
            failure_retry: FailureRetry::default(),
            meter: None,
            held,
            processor: Box::new(Stubborn {
                asks: Arc::clone(&asks),
                checkpoint_on,
                lost: Arc::clone(&lost),
            }),
            at_timestamp: None,
            shutdown: CancellationToken::new(),
            shard_ended,
        };
        (consumer, checkpointer, asks, lost)
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_end_is_asked_for_again_until_checkpointed() {
        let (consumer, checkpointer, asks, _) = at_shard_end(3).await;
        let start = Instant::now();
        let exit = consumer.finish_shard(&checkpointer, Vec::new()).await;
        assert_eq!(exit, Exit::ShardEnded);
        assert_eq!(asks.load(Ordering::SeqCst), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(500 + 1_000));
        assert!(checkpointer.last_checkpoint().is_shard_end());
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_cuts_the_pause_short_and_stops_asking() {
        let (consumer, checkpointer, asks, lost) = at_shard_end(0).await;
        let shutdown = consumer.shutdown.clone();
        let finishing =
            tokio::spawn(async move { consumer.finish_shard(&checkpointer, Vec::new()).await });
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Asked at 0, 0.5, 1.5, 3.5 and 7.5 s.
        assert_eq!(asks.load(Ordering::SeqCst), 5);
        let asked = Instant::now();
        shutdown.cancel();
        assert_eq!(finishing.await.unwrap(), Exit::Shutdown);
        assert_eq!(asked.elapsed(), Duration::ZERO);
        assert_eq!(asks.load(Ordering::SeqCst), 5);
        assert!(!lost.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_cuts_the_pause_short_and_tells_the_processor() {
        let (consumer, checkpointer, asks, lost) = at_shard_end(0).await;
        let held = consumer.held.clone();
        let finishing =
            tokio::spawn(async move { consumer.finish_shard(&checkpointer, Vec::new()).await });
        tokio::time::sleep(Duration::from_secs(2)).await;
        held.lost.cancel();
        assert_eq!(finishing.await.unwrap(), Exit::LeaseLost);
        assert!(lost.load(Ordering::SeqCst));
        assert_eq!(asks.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn shard_end_asks_back_off_without_end() {
        let millis: Vec<u64> = shard_end_backoff()
            .build()
            .take(9)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(
            millis,
            vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
    }

    /// A source that hands over batches given in advance, then closes its channel; notes
    /// where it was asked to start.
    #[derive(Debug)]
    struct Scripted {
        /// The batches, taken by the one `start`.
        batches: Mutex<Vec<Batch>>,
        /// The shard and position `start` was given.
        asked: Arc<Mutex<Option<(String, StartingPosition)>>>,
    }

    impl RecordsSource for Scripted {
        fn start(
            &self,
            shard_id: &str,
            from: StartingPosition,
            _stop: CancellationToken,
        ) -> mpsc::Receiver<Batch> {
            *self.asked.lock().unwrap() = Some((shard_id.to_owned(), from));
            let batches = std::mem::take(&mut *self.batches.lock().unwrap());
            let (tx, rx) = mpsc::channel(batches.len().max(1));
            for b in batches {
                tx.try_send(b).unwrap();
            }
            rx
        }
    }

    /// Notes the records it gets and whether its lease was lost; checkpoints the shard end.
    struct Recorder {
        /// (sequence number, sub-sequence) of every record processed.
        got: Arc<Mutex<Vec<(String, u64)>>>,
        /// Set by `lease_lost`.
        lost: Arc<AtomicBool>,
    }

    #[async_trait]
    impl RecordProcessor for Recorder {
        async fn initialize(&mut self, _: InitializationInput) {}
        async fn process_records(&mut self, input: ProcessRecordsInput) {
            let got = input
                .records
                .iter()
                .map(|r: &KinesisClientRecord| (r.sequence_number.clone(), r.sub_sequence_number));
            self.got.lock().unwrap().extend(got);
        }
        async fn lease_lost(&mut self, _: LeaseLostInput) {
            self.lost.store(true, Ordering::SeqCst);
        }
        async fn shard_ended(&mut self, input: ShardEndedInput) {
            input.checkpointer.checkpoint().await.unwrap();
        }
    }

    fn kinesis_record(seq: &str) -> aws_sdk_kinesis::types::Record {
        aws_sdk_kinesis::types::Record::builder()
            .sequence_number(seq)
            .partition_key("p")
            .data(aws_sdk_kinesis::primitives::Blob::new(b"x".to_vec()))
            .build()
            .unwrap()
    }

    /// What a consumer of lease "s" at `checkpoint`, fed `batches`, did: its exit, where
    /// its source was asked to start, the records processed, whether the lease was lost,
    /// and the lease's checkpoint afterwards.
    async fn consume(
        checkpoint: Checkpoint,
        batches: Vec<Batch>,
    ) -> (
        Exit,
        Option<(String, StartingPosition)>,
        Vec<(String, u64)>,
        bool,
        Checkpoint,
    ) {
        let (store, held, kinesis) = held_in_memory(checkpoint).await;
        let asked = Arc::default();
        let (got, lost) = (Arc::default(), Arc::<AtomicBool>::default());
        let consumer = ShardConsumer {
            source: Arc::new(Scripted {
                batches: Mutex::new(batches),
                asked: Arc::clone(&asked),
            }),
            held: held.clone(),
            processor: Box::new(Recorder {
                got: Arc::clone(&got),
                lost: Arc::clone(&lost),
            }),
            at_timestamp: None,
            shutdown: CancellationToken::new(),
            shard_ended: Arc::new(Notify::new()),
            shard_sync: ShardSync::new(kinesis, "stream", store, InitialPosition::TrimHorizon),
            outside_range: OutsideRangePolicy::Drop,
            decompression: PayloadDecompression::Off,
            batching: None,
            failure_retry: FailureRetry::default(),
            meter: None,
        };
        let exit = consumer.run().await;
        let asked = asked.lock().unwrap().take();
        let got = got.lock().unwrap().clone();
        let checkpoint = held.lease().await.checkpoint;
        (exit, asked, got, lost.load(Ordering::SeqCst), checkpoint)
    }

    #[tokio::test]
    async fn the_consumer_reads_only_from_its_source_from_the_checkpoint_to_the_end() {
        let batches = vec![
            Batch {
                records: ["100", "200", "300"].map(kinesis_record).into(),
                millis_behind_latest: Some(5),
                end: None,
                received: Instant::now(),
            },
            Batch {
                records: vec![kinesis_record("400")],
                millis_behind_latest: Some(0),
                end: Some(Vec::new()),
                received: Instant::now(),
            },
        ];
        let (exit, asked, got, lost, checkpoint) =
            consume(Checkpoint::at("200", 0).unwrap(), batches).await;
        assert_eq!(exit, Exit::ShardEnded);
        assert_eq!(
            asked,
            Some((
                "s".into(),
                StartingPosition::AtSequence(SequenceNumber::parse("200").unwrap())
            ))
        );
        assert_eq!(got, vec![("300".into(), 0), ("400".into(), 0)]);
        assert!(!lost);
        assert!(checkpoint.is_shard_end());
    }

    #[tokio::test]
    async fn a_source_that_stops_without_a_shard_end_loses_the_lease() {
        let batches = vec![Batch {
            records: vec![kinesis_record("1")],
            millis_behind_latest: None,
            end: None,
            received: Instant::now(),
        }];
        let (exit, asked, got, lost, checkpoint) = consume(Checkpoint::TrimHorizon, batches).await;
        assert_eq!(exit, Exit::LeaseLost);
        assert_eq!(asked, Some(("s".into(), StartingPosition::TrimHorizon)));
        assert_eq!(got, vec![("1".into(), 0)]);
        assert!(lost);
        assert_eq!(checkpoint, Checkpoint::TrimHorizon);
    }
}
