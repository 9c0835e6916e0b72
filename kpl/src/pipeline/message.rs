//! What travels into the pipeline task and back to it: the handle's commands, the user
//! records they carry, and the answers of the calls the task spawns.
//!
//! ```text
//!  Producer ── Command::Put(Item) / PutAll(Vec<Item>) / Flush / Shutdown ──▶ pipeline task
//!                                                          │ spawns
//!  PutRecords task ── Event::CallDone { entries, CallResult } ──▶ pipeline task
//!  ListShards task ── Event::ShardMap { Result<ShardMap, _> } ──▶ pipeline task
//! ```

use std::sync::Arc;

use aws_sdk_kinesis::types::PutRecordsResultEntry;
use kinesis_agg::{HashKey, UserRecord};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::batch::Entry;
use crate::failure::CallError;
use crate::outcome::{Attempt, Outcome, PutHandle};
use crate::put_all::BatchSlot;
use crate::record::{Accepted, ProducerRecord};
use crate::shard_map::ShardMap;

/// What the `Producer` handle asks of the pipeline.
// `Put` is nearly every message: boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Command {
    /// A new user record.
    Put(Item),
    /// The records of one `put_all`, in input order: one message for the whole batch.
    PutAll(Vec<Item>),
    /// Send everything now; answer when everything accepted so far is settled.
    Flush(oneshot::Sender<()>),
    /// Flush, then stop.
    Shutdown,
}

impl Command {
    /// The records inside a `Put` or `PutAll` that could not be queued, in order.
    pub(crate) fn into_records(self) -> Vec<ProducerRecord> {
        let back = |item: Item| ProducerRecord::from_user_record(&*item.stream, item.record);
        match self {
            Command::Put(item) => vec![back(item)],
            Command::PutAll(items) => items.into_iter().map(back).collect(),
            Command::Flush(_) | Command::Shutdown => Vec::new(),
        }
    }
}

/// The budget a record holds while it is unsettled: one permit of the records budget
/// and its size's worth of the bytes budget.
pub(crate) type Budget = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// A user record inside the pipeline, until it is settled.
#[derive(Debug)]
pub(crate) struct Item {
    /// Stream name (the producer's shared copy: the user's `String` is dropped by `put`,
    /// on the caller's thread, rather than here).
    pub(crate) stream: Arc<str>,
    /// The validated record.
    pub(crate) record: UserRecord,
    /// Its hash key, computed once by `put` (off the pipeline task).
    pub(crate) hash_key: HashKey,
    /// Where the outcome goes; settled exactly once.
    pub(crate) tx: OutcomeTx,
    /// When it was accepted: linger and TTL count from here.
    pub(crate) put_at: Instant,
    /// Failed attempts so far.
    pub(crate) attempts: Vec<Attempt>,
    /// `PutRecords` calls that carried it.
    pub(crate) calls: u32,
    /// Arrival order across the producer, to keep order when queues are rebuilt.
    pub(crate) seq: u64,
    /// Flush epoch it arrived in.
    pub(crate) epoch: u64,
    /// Its share of the memory budget (records, bytes): released at the end of the
    /// pipeline round that settles it, or when it is dropped. `None` for a record of a
    /// `put_all` batch: the batch holds the budget of all its records (see
    /// [`BatchHandle`](crate::BatchHandle)).
    pub(crate) budget: Option<Budget>,
}

impl Item {
    /// A checked record with its budget, accepted now, and the handle its outcome goes to.
    pub(crate) fn accept(
        accepted: Accepted,
        budget: Budget,
        stream: Arc<str>,
    ) -> (Item, PutHandle) {
        let (item, rx) = Item::new(stream.clone(), accepted.record, accepted.hash_key, budget);
        (item, PutHandle::new(rx, stream))
    }

    /// A record of `stream` accepted now, and the receiving end of its outcome.
    pub(crate) fn new(
        stream: Arc<str>,
        record: UserRecord,
        hash_key: HashKey,
        budget: Budget,
    ) -> (Item, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let tx = OutcomeTx::One(tx);
        let item = Item::with_tx(stream, record, hash_key, Some(budget), tx, Instant::now());
        (item, rx)
    }

    /// A checked record of a `put_all` batch (whose budget the batch holds), accepted at
    /// `put_at` (the batch's time, read once); its outcome goes to `slot`.
    pub(crate) fn in_batch(
        accepted: Accepted,
        stream: Arc<str>,
        slot: BatchSlot,
        put_at: Instant,
    ) -> Item {
        let tx = OutcomeTx::Batch(slot);
        Item::with_tx(stream, accepted.record, accepted.hash_key, None, tx, put_at)
    }

    fn with_tx(
        stream: Arc<str>,
        record: UserRecord,
        hash_key: HashKey,
        budget: Option<Budget>,
        tx: OutcomeTx,
        put_at: Instant,
    ) -> Item {
        Item {
            stream,
            record,
            hash_key,
            tx,
            put_at,
            attempts: Vec::new(),
            calls: 0,
            seq: 0,
            epoch: 0,
            budget,
        }
    }

    /// Its size as Kinesis counts it: data plus partition key.
    pub(crate) fn size(&self) -> usize {
        self.record.size()
    }
}

/// Where a record's outcome goes. Dropped unsettled (the pipeline torn down), either kind
/// leaves its handle a [`FailureReason::ShutDown`](crate::FailureReason::ShutDown) failure.
#[derive(Debug)]
pub(crate) enum OutcomeTx {
    /// A record of `put`/`try_put`: its own channel, to its [`PutHandle`].
    One(oneshot::Sender<Outcome>),
    /// A record of `put_all`: its place in the batch's shared outcomes.
    Batch(BatchSlot),
}

impl OutcomeTx {
    /// Settles the record (a handle that was dropped just misses it).
    pub(crate) fn send(self, outcome: Outcome) {
        match self {
            OutcomeTx::One(tx) => {
                let _ = tx.send(outcome);
            }
            OutcomeTx::Batch(slot) => slot.send(outcome),
        }
    }
}

/// What a `PutRecords` call returned.
#[derive(Debug)]
pub(crate) enum CallResult {
    /// Per-record results, in request order.
    Ok(Vec<PutRecordsResultEntry>),
    /// The whole call failed.
    Failed(CallError),
}

/// Messages from the tasks the pipeline spawns.
#[derive(Debug)]
pub(crate) enum Event {
    /// A `PutRecords` call ended: its entries come back with its result.
    CallDone {
        /// The stream it was made to.
        stream: Arc<str>,
        /// The Kinesis records it carried, in request order.
        entries: Vec<Entry>,
        /// Its answer, or why there is none.
        result: CallResult,
    },
    /// A shard map load (`ListShards`) ended.
    ShardMap {
        /// The stream it was made for.
        stream: Arc<str>,
        /// The map, or why there is none.
        result: Result<ShardMap, CallError>,
    },
}
