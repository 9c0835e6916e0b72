//! The Kinesis records of one `PutRecords` call, and what builds them: the aggregator and
//! a small pool of emptied batches.
//!
//! ```text
//!  ShardQueue head ─▶ Batcher::aggregate ─▶ Entry { predicted, items (sub-sequence order),
//!  ShardQueue head ─▶ Entry::single ──────▶         explicit hash key, data }
//!                                                 │ in runs from one queue
//!                                                 ▼
//!                              Vec<Entry> (from the pool) ─▶ call ─▶ back to the pool
//! ```

use std::sync::Arc;

use bytes::Bytes;
use kinesis_agg::{Aggregator, HashKey, KinesisRecord, WHOLE_RESEND_PARTITION_KEY};
use smallvec::SmallVec;

use super::message::Item;
use super::shard_queue::{ShardKey, ShardQueue};
use crate::config::Config;

/// Emptied batches kept for reuse (see [`Batcher`]).
const BATCH_POOL: usize = 4;

/// One Kinesis record of a batch, with the user records it carries.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The queue its user records came from (and go back to on failure).
    pub(crate) predicted: ShardKey,
    /// The user records, in sub-sequence order (inline when there is one).
    pub(crate) items: SmallVec<[Item; 1]>,
    /// Explicit hash key it is sent with: a lone user record's own, or an aggregate's
    /// first user record's hash key.
    pub(crate) explicit_hash_key: Option<HashKey>,
    /// The bytes sent.
    pub(crate) data: Bytes,
}

impl Entry {
    /// One user record sent as it is, under its own keys.
    pub(crate) fn single(item: Item, predicted: ShardKey) -> Entry {
        Entry {
            predicted,
            data: item.record.data().clone(),
            explicit_hash_key: item.record.explicit_hash_key(),
            items: smallvec::smallvec![item],
        }
    }

    /// The partition key it is sent with: a lone user record's own; for an aggregate of
    /// several, [`WHOLE_RESEND_PARTITION_KEY`] (routed by the explicit hash key), so that
    /// no user key can make Kinesis refuse the records packed with it (a 256-character
    /// key is up to 1,024 bytes, and some servers count bytes), and readers know that an
    /// aggregate landing in the wrong shard is re-sent whole.
    pub(crate) fn partition_key(&self) -> &str {
        if self.items.len() > 1 {
            WHOLE_RESEND_PARTITION_KEY
        } else {
            self.items[0].record.partition_key()
        }
    }

    /// Its size as Kinesis counts it: data plus partition key.
    pub(crate) fn size(&self) -> usize {
        self.data.len() + self.partition_key().len()
    }

    /// Replaces the data with its zlib form at `level`, when that is smaller.
    pub(crate) fn compress(&mut self, level: u32) {
        if let Some(packed) = kinesis_agg::compression::compress(&self.data, level) {
            self.data = packed;
        }
    }
}

/// What every batch is built with: one aggregator, reused, and emptied batches of
/// finished calls, reused for the next ones (a full batch of unaggregated records is a
/// ~190 KB allocation, and allocating and freeing one per call makes glibc consolidate
/// its free lists each time).
#[derive(Debug)]
pub(crate) struct Batcher {
    /// Reused for every aggregate.
    aggregator: Aggregator,
    /// Emptied batches, at most [`BATCH_POOL`].
    pool: Vec<Vec<Entry>>,
}

impl Batcher {
    /// An aggregator with the configured aggregate limits, and an empty pool.
    pub(crate) fn new(config: &Config) -> Self {
        let aggregator = Aggregator::builder()
            .with_max_size(config.aggregation_max_size)
            .with_max_count(config.aggregation_max_count)
            .build()
            .expect("validated by the builder");
        Batcher {
            aggregator,
            pool: Vec::new(),
        }
    }

    /// An empty batch: a pooled one, or a new one of `capacity`.
    pub(crate) fn empty_batch(&mut self, capacity: usize) -> Vec<Entry> {
        self.pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(capacity))
    }

    /// Keeps an emptied batch for reuse, unless the pool is full.
    pub(crate) fn recycle(&mut self, batch: Vec<Entry>) {
        debug_assert!(batch.is_empty());
        if self.pool.len() < BATCH_POOL {
            self.pool.push(batch);
        }
    }

    /// Packs user records from the head of `q` (keyed `key`) into one Kinesis record: as
    /// many as the aggregate limits take, at least one.
    pub(crate) fn aggregate(&mut self, q: &mut ShardQueue, key: ShardKey) -> Entry {
        let mut items: SmallVec<[Item; 1]> = SmallVec::new();
        // Room for about as many records as the aggregate will take, so that growing the
        // list does not move hundreds of records several times over.
        let estimate = estimated_count(q.records.len(), q.queued_bytes, self.aggregator.max_size());
        items.reserve(estimate);
        // The records were queued long ago: their keys and data are fetched in one pass,
        // their cache misses overlapping, before the aggregator hashes and copies them.
        super::warm::warm(q.records.iter().take(estimate + 1));
        while let Some(item) = q.pop_front() {
            if self.aggregator.try_add_ref(&item.record) {
                items.push(item);
            } else {
                q.push_front(item);
                break;
            }
        }
        let record: KinesisRecord = self
            .aggregator
            .finish()
            .expect("at least one record was added");
        // An aggregate of several is routed by its first record's hash key (and sent under
        // WHOLE_RESEND_PARTITION_KEY, see `Entry::partition_key`); one alone goes out as it is.
        let explicit_hash_key = if items.len() > 1 {
            Some(items[0].hash_key)
        } else {
            record.explicit_hash_key
        };
        Entry {
            predicted: key,
            items,
            explicit_hash_key,
            data: record.data,
        }
    }
}

/// How many of `queued` records (of `queued_bytes` in all) an aggregate of at most
/// `max_size` bytes will take, about: all of them if they fit, else their share of
/// `max_size` at their mean size (with a little slack for the encoding, which makes the
/// estimate a little low rather than high).
pub(crate) fn estimated_count(queued: usize, queued_bytes: usize, max_size: usize) -> usize {
    if queued_bytes <= max_size {
        queued
    } else {
        (queued * max_size / queued_bytes + 1).min(queued)
    }
}

/// Adds `key` to `keys` unless it is the last one there: a call's entries come in runs
/// from one queue (see `StreamState::collect`), so each queue is listed once per call, and
/// its backoff advances one step per failed call, not one per failed Kinesis record.
pub(crate) fn push_once(keys: &mut Vec<ShardKey>, key: &ShardKey) {
    if !keys.last().is_some_and(|k| same_queue(k, key)) {
        keys.push(key.clone());
    }
}

/// Whether two queue keys name the same queue (pointer first: they are mostly clones).
pub(crate) fn same_queue(a: &ShardKey, b: &ShardKey) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// The length of each run of consecutive entries from one queue, with its key.
pub(crate) fn runs(entries: &[Entry]) -> impl Iterator<Item = (&ShardKey, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let key = &entries.get(i)?.predicted;
        let run = entries[i..]
            .iter()
            .take_while(|e| same_queue(&e.predicted, key))
            .count();
        i += run;
        Some((key, run))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_every_record_when_they_fit_else_their_share_of_the_limit() {
        assert_eq!(estimated_count(10, 1_000, 51_200), 10);
        assert_eq!(estimated_count(0, 0, 51_200), 0);
        // 1,000 records of 110 bytes: about 465 fit 51,200 bytes.
        assert_eq!(estimated_count(1_000, 110_000, 51_200), 466);
        // One huge record: still one.
        assert_eq!(estimated_count(1, 2_000_000, 51_200), 1);
    }

    #[test]
    fn a_failed_call_lists_each_queue_once_per_run() {
        let a: ShardKey = Some(Arc::from("a"));
        let a2: ShardKey = Some(Arc::from("a")); // same name, another allocation
        let b: ShardKey = Some(Arc::from("b"));
        let mut keys = Vec::new();
        for k in [&a, &a2, &b, &b, &None, &None, &a] {
            push_once(&mut keys, k);
        }
        assert_eq!(keys, vec![a.clone(), b, None, a]);
    }
}
