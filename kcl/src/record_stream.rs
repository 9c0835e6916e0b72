//! [`RecordStream`]: the records of every shard this worker holds, as a stream of
//! [`ShardBatch`]es, for applications that would rather read than implement
//! [`RecordProcessor`].
//!
//! ```text
//!  Scheduler::stream_builder(app, stream).build_stream() ──────────────┐
//!  Scheduler::multi_stream_stream_builder(app, tracker).build_stream() ─┴─▶ (Scheduler, RecordStream)
//!
//!  per held shard: Forwarder (a RecordProcessor)
//!    process_records ─▶ ShardBatch ─bounded channel (stream_buffer)─▶ RecordStream::next()
//!                       waits until the caller drops the batch      (caller handles it, drops it)
//!                       ─▶ StreamCheckpointing::Auto: checkpoint when the cadence is due
//!    shard_ended ─▶ SHARD_END (every batch of the shard was dropped first)
//!    shutdown_requested ─▶ Auto: checkpoint the last batch dropped
//!  run ends ─▶ the stream ends once the batches already sent are taken
//!  stream dropped ─▶ batches not taken (and those read afterwards) reach nobody: the
//!                    shard is checkpointed no further (not even a shard end), so the
//!                    next reader gets them again
//! ```
//!
//! Each shard's batches come one at a time: the next batch of a shard is only read once
//! the caller has dropped the one before, so a caller that handles batches concurrently
//! still sees each shard in order, and a slow caller slows the shards down (the records
//! sources stop reading ahead: back-pressure, nothing dropped). Batches of different shards
//! interleave.
//!
//! # Stopping
//! A graceful shutdown lets every shard finish its batch first, so it waits for the
//! batches handed out (or waiting in the stream) to be dropped: read on while it runs
//! (await it from another task, as below), or drop the stream. A reader that stops reading
//! and awaits it holds it up for the shutdown timeout
//! ([`with_shutdown_timeout`](crate::SchedulerBuilder::with_shutdown_timeout), default
//! 60 s); the shards still waiting are then aborted, unchecked. Dropping the stream while
//! the worker runs on loses nothing: what it did not hand out is not checkpointed.
//!
//! # Usage
//! ```no_run
//! use kinesis_consumer::Scheduler;
//! # fn time_to_stop() -> bool { true }
//!
//! # async fn demo(sdk: aws_config::SdkConfig) -> Result<(), kinesis_consumer::Error> {
//! let (scheduler, mut records) = Scheduler::stream_builder("my-app", "my-stream")
//!     .with_sdk_config(&sdk)
//!     .build_stream()?;
//! let worker = scheduler.clone();
//! tokio::spawn(async move { worker.run().await });
//! while let Some(batch) = records.next().await {
//!     for record in &batch.records {
//!         println!("{} {:?}", batch.shard_id, record.data);
//!     }
//!     // Dropping the batch lets its shard go on (and checkpoints it, by default).
//!     if time_to_stop() {
//!         break;
//!     }
//! }
//! // Stop: the shutdown in its own task, reading on until the stream ends.
//! let stop = tokio::spawn(async move { scheduler.graceful_shutdown().await });
//! while let Some(batch) = records.next().await {
//!     drop(batch); // or handle it
//! }
//! let _ = stop.await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use crate::checkpoint_every::CheckpointEvery;
use crate::checkpointer::Checkpointer;
use crate::processor::{
    InitializationInput, KinesisClientRecord, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    ShardEndedInput, ShutdownRequestedInput,
};

/// Who checkpoints the batches of a [`RecordStream`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StreamCheckpointing {
    /// The library, once a batch is dropped, when this cadence is due (and at shutdown).
    Auto(CheckpointEvery),
    /// The caller, through each batch's [`checkpointer`](ShardBatch::checkpointer); the
    /// library only checkpoints shard ends.
    Manual,
}

impl Default for StreamCheckpointing {
    /// [`StreamCheckpointing::Auto`] after every batch.
    fn default() -> Self {
        StreamCheckpointing::Auto(CheckpointEvery::batch())
    }
}

/// One batch of one shard's records, in the shard's order.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShardBatch {
    /// The shard the records come from (its Kinesis shard id, also in a multi-stream
    /// application: [`stream`](Self::stream) says whose shard it is).
    pub shard_id: String,
    /// The stream the shard belongs to, in a multi-stream application
    /// ([`Scheduler::multi_stream_stream_builder`](crate::Scheduler::multi_stream_stream_builder));
    /// `None` for a single-stream worker (whose stream is the one it was built with).
    pub stream: Option<crate::StreamIdentifier>,
    /// The user records.
    pub records: Vec<KinesisClientRecord>,
    /// How far behind the tip of the shard the batch was, if known.
    pub millis_behind_latest: Option<i64>,
    /// Records left out for lying outside the shard's range (see
    /// [`ProcessRecordsInput::dropped_outside_shard_range`]).
    pub dropped_outside_shard_range: usize,
    /// Checkpoints this shard; [`Checkpointer::checkpoint`] covers this batch while it is
    /// held (a clone kept after the batch is dropped covers the shard's later batches as
    /// they come). Needed only with [`StreamCheckpointing::Manual`].
    pub checkpointer: Checkpointer,
    /// Tells the shard's forwarder that the batch was dropped, and whether the reader
    /// had taken it (a batch dropped with the stream, never taken, must not count as read).
    done: Option<oneshot::Sender<bool>>,
    /// Set when [`RecordStream`] hands the batch to the reader.
    taken: bool,
}

impl Drop for ShardBatch {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(self.taken);
        }
    }
}

/// The batches of every shard this worker holds; see the module docs. Ends once the
/// worker's `run` has ended and every batch already sent was taken.
pub struct RecordStream {
    /// Batches from every shard's forwarder.
    batches: mpsc::Receiver<ShardBatch>,
    /// Resolves when the worker's `run` has ended.
    ended: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Set once `ended` resolved.
    run_over: bool,
}

impl std::fmt::Debug for RecordStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("run_over", &self.run_over)
            .finish_non_exhaustive()
    }
}

impl RecordStream {
    /// The next batch, or `None` once the worker has stopped and every batch was taken.
    ///
    /// # Cancellation
    /// Safe to drop: no batch is lost (a batch not yet taken stays in the stream).
    pub async fn next(&mut self) -> Option<ShardBatch> {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<ShardBatch>> {
        match self.batches.poll_recv(cx) {
            Poll::Ready(batch) => return Poll::Ready(batch.map(taken)),
            Poll::Pending => {}
        }
        if !self.run_over && self.ended.as_mut().poll(cx).is_ready() {
            self.run_over = true;
        }
        if self.run_over {
            // The run is over: whatever is left was sent before; then the end.
            return Poll::Ready(self.batches.try_recv().ok().map(taken));
        }
        Poll::Pending
    }
}

impl futures_core::Stream for RecordStream {
    type Item = ShardBatch;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ShardBatch>> {
        self.get_mut().poll_batch(cx)
    }
}

/// `batch`, marked as handed to the reader.
fn taken(mut batch: ShardBatch) -> ShardBatch {
    batch.taken = true;
    batch
}

/// The processors' and the stream's ends of one worker's record stream: the factory to
/// give the scheduler, and the stream, which ends when `done` turns true.
pub(crate) fn record_stream(
    capacity: usize,
    checkpointing: StreamCheckpointing,
    mut done: watch::Receiver<bool>,
) -> (
    impl Fn(&str) -> Box<dyn RecordProcessor> + Send + Sync,
    RecordStream,
) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let factory = move |lease_key: &str| {
        Box::new(Forwarder {
            shard_id: lease_key.to_owned(),
            stream: None,
            batches: tx.clone(),
            checkpointing: checkpointing.clone(),
            undelivered: false,
        }) as Box<dyn RecordProcessor>
    };
    let ended = Box::pin(async move {
        let _ = done.wait_for(|d| *d).await;
    });
    (
        factory,
        RecordStream {
            batches: rx,
            ended,
            run_over: false,
        },
    )
}

/// The processor of one shard of a [`RecordStream`].
#[derive(Debug)]
struct Forwarder {
    /// The shard: the lease key the factory was given until `initialize` names the
    /// Kinesis shard id (they differ in a multi-stream application).
    shard_id: String,
    /// The shard's stream, in a multi-stream application (from `initialize`).
    stream: Option<crate::StreamIdentifier>,
    /// Where its batches go.
    batches: mpsc::Sender<ShardBatch>,
    /// Who checkpoints, and when.
    checkpointing: StreamCheckpointing,
    /// Set once a batch reached nobody (the stream was dropped): the shard is
    /// checkpointed no further, since the checkpointer's position is past records the
    /// reader never got.
    undelivered: bool,
}

impl Forwarder {
    /// Notes that a batch reached nobody (warned once per shard).
    fn not_delivered(&mut self) {
        if !self.undelivered {
            tracing::warn!(
                shard = %self.shard_id,
                "record stream dropped while the worker runs: batches not delivered, the shard is not checkpointed any further"
            );
        }
        self.undelivered = true;
    }
}

#[async_trait]
impl RecordProcessor for Forwarder {
    async fn initialize(&mut self, input: InitializationInput) {
        self.shard_id = input.shard_id;
        self.stream = input.stream;
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let n = input.records.len();
        let (done, dropped) = oneshot::channel();
        let batch = ShardBatch {
            shard_id: self.shard_id.clone(),
            stream: self.stream.clone(),
            records: input.records,
            millis_behind_latest: input.millis_behind_latest,
            dropped_outside_shard_range: input.dropped_outside_shard_range,
            checkpointer: input.checkpointer.clone(),
            done: Some(done),
            taken: false,
        };
        if self.undelivered || self.batches.send(batch).await.is_err() {
            // The stream was dropped: nobody reads; nothing is checkpointed, so the records
            // come again to the next reader.
            self.not_delivered();
            return;
        }
        // The shard goes on once the caller is done with this batch (or the stream was
        // dropped with the batch in it, never taken).
        if dropped.await != Ok(true) {
            self.not_delivered();
            return;
        }
        if let StreamCheckpointing::Auto(cadence) = &mut self.checkpointing {
            if cadence.note(n) {
                match input.checkpointer.checkpoint().await {
                    Ok(()) => cadence.checkpointed(),
                    Err(e) => {
                        tracing::warn!(shard = %self.shard_id, error = %e, "checkpoint failed")
                    }
                }
            }
        }
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {}

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        // Every batch of the shard was dropped before this is called; a shard end is
        // checkpointed only if the reader took every one.
        if self.undelivered {
            return;
        }
        if let Err(e) = input.checkpointer.checkpoint().await {
            tracing::warn!(shard = %self.shard_id, error = %e, "shard end checkpoint failed");
        }
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        if let (StreamCheckpointing::Auto(_), false) = (&self.checkpointing, self.undelivered) {
            if let Err(e) = input.checkpointer.checkpoint().await {
                tracing::warn!(shard = %self.shard_id, error = %e, "checkpoint at shutdown failed");
            }
        }
    }
}
