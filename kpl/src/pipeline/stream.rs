//! One stream's state: its shard map, its per-shard queues, the records held outside them,
//! and the batching decision (`collect`), a method of the state alone: it needs no
//! pipeline, no SDK client and no clock but the `now` it is given.
//!
//! ```text
//!  Item ─▶ push_predicted ─▶ shards[predicted shard] (ShardQueue)
//!                                 │ collect(config, urgent epoch, batcher, now):
//!                                 │  1. anything past its linger or flushed, or a full
//!                                 │     call's worth? no ─▶ None
//!                                 │  2. fill: per queue, while due, not backing off, rate
//!                                 │     limiter has tokens (ordered: one per shard)
//!                                 ▼
//!                          Vec<Entry> ─▶ PutRecords
//!  landed in a shard not owning the whole aggregate ─▶ parked ─▶ next map ─▶ queues again
//!  landed in a shard the map does not know ─────────▶ unverified ─▶ judged on the next map
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kinesis_agg::HashKey;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::batch::{Batcher, Entry};
use super::message::Item;
use super::put_records::PUT_RECORDS;
use super::shard_queue::{ShardKey, ShardQueue};
use crate::config::Config;
use crate::failure::CallError;
use crate::shard_map::ShardMap;

/// Hash maps of the hot path: foldhash, not SipHash (keys are ours, not an attacker's).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Per-stream state.
#[derive(Debug)]
pub(crate) struct StreamState {
    /// The stream's name, shared with outcomes.
    pub(crate) name: Arc<str>,
    /// The last shard map loaded, if any.
    pub(crate) map: Option<Arc<ShardMap>>,
    /// The last load's error, while there is no map.
    pub(crate) map_error: Option<CallError>,
    /// A load is under way.
    pub(crate) refreshing: bool,
    /// When to load the map again.
    pub(crate) next_refresh: Instant,
    /// The queues, by predicted shard.
    pub(crate) shards: FastMap<ShardKey, ShardQueue>,
    /// Records to re-route once a fresh map is in (they landed in the wrong shard).
    pub(crate) parked: Vec<Item>,
    /// Aggregates delivered into a shard the map does not know yet: judged on the next map.
    pub(crate) unverified: Vec<Unverified>,
    /// `PutRecords` calls failed (throttling aside) since the last one that delivered.
    pub(crate) put_failures: Streak,
    /// `ListShards` calls failed since the last one that loaded a map.
    pub(crate) list_failures: Streak,
}

/// An aggregate Kinesis accepted into a shard whose hash key range the shard map does not
/// know yet: its user records are delivered together once the range shows that the shard
/// owns every one of them, and re-sent together otherwise.
#[derive(Debug)]
pub(crate) struct Unverified {
    /// The shard it landed in.
    pub(crate) shard_id: Arc<str>,
    /// Its sequence number.
    pub(crate) sequence_number: Arc<str>,
    /// Its user records, in sub-sequence order.
    pub(crate) items: SmallVec<[Item; 1]>,
}

impl Unverified {
    /// When the oldest of its records reaches its TTL.
    pub(crate) fn deadline(&self, ttl: Duration) -> Instant {
        let oldest = self.items.iter().map(|i| i.put_at).min();
        oldest.map_or_else(Instant::now, |t| t + ttl)
    }
}

/// Failed calls of one operation to one stream since it last succeeded, for the logs.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Streak {
    /// Calls failed; 0 while the operation succeeds.
    pub(crate) calls: u64,
    /// User records in them.
    pub(crate) records: u64,
}

impl Streak {
    /// A call of `operation` to `stream` failed with `err`, carrying `records` user
    /// records: the first failure after a success is logged as a warning, later ones only
    /// counted.
    pub(crate) fn failed(
        &mut self,
        stream: &str,
        operation: &'static str,
        err: &CallError,
        records: usize,
    ) {
        if self.calls == 0 {
            tracing::warn!(
                stream = %stream,
                operation,
                code = %err.code,
                message = %err.message,
                retryable = !err.fatal,
                "Kinesis call failed (further failures of this operation on this stream are \
                 counted, not logged, until a call succeeds)"
            );
        }
        self.calls += 1;
        self.records += records as u64;
    }

    /// A call of `operation` to `stream` succeeded: if calls had failed, say so once.
    pub(crate) fn ended(&mut self, stream: &str, operation: &'static str) {
        if self.calls > 0 {
            tracing::info!(
                stream = %stream,
                operation,
                failed_calls = self.calls,
                records_in_failed_calls = self.records,
                "Kinesis calls succeed again"
            );
            *self = Streak::default();
        }
    }
}

/// Records and aggregates of a stream whose TTL ran out (see [`StreamState::take_expired`]).
#[derive(Debug, Default)]
pub(crate) struct Expired {
    /// Queued or parked records: they fail.
    pub(crate) items: Vec<Item>,
    /// Aggregates in a shard whose range could not be checked: they are delivered.
    pub(crate) unverified: Vec<Unverified>,
}

impl StreamState {
    /// A stream with no map yet (one is loaded at once) and no records.
    pub(crate) fn new(name: Arc<str>, now: Instant) -> Self {
        StreamState {
            name,
            map: None,
            map_error: None,
            refreshing: false,
            next_refresh: now,
            shards: FastMap::default(),
            parked: Vec::new(),
            unverified: Vec::new(),
            put_failures: Streak::default(),
            list_failures: Streak::default(),
        }
    }

    /// The failure streak of `operation` (`PutRecords` or `ListShards`).
    pub(crate) fn streak(&mut self, operation: &'static str) -> &mut Streak {
        match operation {
            PUT_RECORDS => &mut self.put_failures,
            _ => &mut self.list_failures,
        }
    }

    /// Which queue a record of this hash key goes to.
    fn predict(&self, hash_key: HashKey) -> ShardKey {
        self.map.as_ref().and_then(|m| m.predict(hash_key).cloned())
    }

    /// The stream's first shard map is not in yet and its first load has not failed:
    /// records put before the producer knows the shards wait for it (within their
    /// linger, even when flushed), so that they can be aggregated.
    pub(crate) fn awaiting_first_map(&self) -> bool {
        self.map.is_none() && self.map_error.is_none()
    }

    /// Whether the records of queue `key` wait for the first shard map (see
    /// [`Self::awaiting_first_map`]): with aggregation on, those of the map-less queue.
    fn waits_for_first_map(&self, config: &Config, key: &ShardKey) -> bool {
        config.aggregation && key.is_none() && self.awaiting_first_map()
    }

    /// Queues `item` at the back of the queue of the shard the map predicts for it.
    pub(crate) fn push_predicted(&mut self, item: Item, config: &Config, now: Instant) {
        let key = self.predict(item.hash_key);
        self.shards
            .entry(key)
            .or_insert_with(|| ShardQueue::new(config, now))
            .push_back(item);
    }

    /// Every record waiting in a queue or parked for a re-route, queue by queue.
    pub(crate) fn drain_queued(&mut self) -> Vec<Item> {
        let mut all = Vec::new();
        for q in self.shards.values_mut() {
            q.drain_into(&mut all);
        }
        all.append(&mut self.parked);
        all
    }

    /// Installs a freshly loaded map. When its open shards differ from the last map's, or
    /// records are parked for a re-route, the queues are rebuilt by the new prediction in
    /// arrival order: re-routed records go back in line where they were put, not behind
    /// newer records of their key. Returns whether the open shards changed.
    pub(crate) fn install_map(
        &mut self,
        map: Arc<ShardMap>,
        config: &Config,
        now: Instant,
    ) -> bool {
        let changed = self
            .map
            .as_ref()
            .is_none_or(|old| !old.same_open_shards(&map));
        self.map = Some(map);
        if changed || !self.parked.is_empty() {
            let mut all = self.drain_queued();
            all.sort_by_key(|i| i.seq);
            for item in all {
                self.push_predicted(item, config, now);
            }
            self.shards
                .retain(|_, q| !q.records.is_empty() || q.in_flight > 0 || q.backoff.is_some());
        }
        changed
    }

    /// Takes out what reached its TTL by `now`: queued records (from each queue's head),
    /// parked records, and aggregates waiting for a map to be judged.
    pub(crate) fn take_expired(&mut self, now: Instant, ttl: Duration) -> Expired {
        let mut expired = Expired::default();
        for q in self.shards.values_mut() {
            while q.records.front().is_some_and(|i| now >= i.put_at + ttl) {
                expired.items.push(q.pop_front().expect("front exists"));
            }
        }
        let (old, parked) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|i| now >= i.put_at + ttl);
        self.parked = parked;
        expired.items.extend::<Vec<Item>>(old);
        let (old, waiting) = std::mem::take(&mut self.unverified)
            .into_iter()
            .partition(|u| now >= u.deadline(ttl));
        self.unverified = waiting;
        expired.unverified = old;
        expired
    }

    /// Ordered mode: whether the stream sends nothing for now. After a reshard, records of
    /// a shard that is no longer open are still in flight, so its children must wait (a
    /// retry there could land after newer records). And records of an aggregate that
    /// landed in a shard not owning them all wait to be sent again (`parked`), or to be
    /// judged by the next shard map (`unverified`): a newer record of their keys sent
    /// meanwhile would land before them. Both end with the shard map reload they asked
    /// for (or at their TTL).
    pub(crate) fn ordered_must_wait(&self) -> bool {
        !self.parked.is_empty() || !self.unverified.is_empty() || self.retired_in_flight()
    }

    /// Records of a shard that is no longer open are in flight (see
    /// [`Self::ordered_must_wait`]).
    fn retired_in_flight(&self) -> bool {
        self.shards.iter().any(|(key, q)| {
            q.in_flight > 0
                && match (&self.map, key) {
                    (Some(map), Some(id)) => !map.is_open(id),
                    _ => true,
                }
        })
    }

    /// The earliest instant something of this stream needs the pipeline's attention: a
    /// map load, a TTL, or a queue becoming due (its linger over, or at once if flushed,
    /// and not before its backoff and rate limit). A queue that waits on a call (no free
    /// call slot, or ordered mode) or on the shard map is woken by that event instead.
    pub(crate) fn wake_at(
        &self,
        config: &Config,
        urgent_epoch: Option<u64>,
        can_call: bool,
        now: Instant,
    ) -> Option<Instant> {
        let linger = config.max_buffered_time;
        let ttl = config.record_ttl;
        let ordered = config.per_key_ordering;
        let mut wake: Option<Instant> = None;
        let mut consider = |t: Instant| {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        };
        if !self.refreshing {
            consider(self.next_refresh);
        }
        // Records outside the shard queues also settle at their TTL.
        for i in &self.parked {
            consider(i.put_at + ttl);
        }
        for u in &self.unverified {
            consider(u.deadline(ttl));
        }
        let stream_blocked = ordered && self.ordered_must_wait();
        for (key, q) in &self.shards {
            let Some(front) = q.records.front() else {
                continue;
            };
            consider(front.put_at + ttl);
            if !can_call || stream_blocked || (ordered && (q.in_flight > 0 || key.is_none())) {
                continue;
            }
            let flushed = urgent_epoch.is_some_and(|e| front.epoch <= e);
            let ready = if flushed && !self.waits_for_first_map(config, key) {
                now
            } else {
                front.put_at + linger
            };
            let ready = q.blocked_until().map_or(ready, |b| ready.max(b));
            consider(ready);
        }
        wake
    }

    /// Builds the stream's next batch, or `None` if nothing is due: records past their
    /// linger (`config.max_buffered_time`) or of a flushed epoch (up to `urgent_epoch`)
    /// go out at once; otherwise only a full call's worth does. Each Kinesis record taken
    /// counts against its queue's rate limiter and in-flight count.
    pub(crate) fn collect(
        &mut self,
        config: &Config,
        urgent_epoch: Option<u64>,
        batcher: &mut Batcher,
        now: Instant,
    ) -> Option<Vec<Entry>> {
        let linger = config.max_buffered_time;
        let ordered = config.per_key_ordering;
        if ordered && self.ordered_must_wait() {
            return None;
        }
        let map_wait = config.aggregation && self.awaiting_first_map();
        // Due now: past its linger, or flushed, except that records waiting for the
        // stream's first shard map wait for it until their linger is over, flushed or not.
        let is_urgent = |key: &ShardKey, put_at: Instant, epoch: u64| {
            now >= put_at + linger
                || (urgent_epoch.is_some_and(|e| epoch <= e) && !(map_wait && key.is_none()))
        };
        let agg_room = config.aggregation_max_size + 4 * kinesis_agg::MAX_PARTITION_KEY_CHARS;

        // First pass: is anything urgent, or is there enough for a full call?
        let mut urgent_any = false;
        let mut full_bytes = 0usize;
        let mut full_records = 0usize;
        for (key, q) in self.shards.iter() {
            let Some(front) = q.records.front() else {
                continue;
            };
            if !q.may_send(key, ordered, now) {
                continue;
            }
            if is_urgent(key, front.put_at, front.epoch) {
                urgent_any = true;
                break;
            }
            if config.aggregation && key.is_none() {
                // Waiting for the shard map, to aggregate: only its linger sends it raw.
                continue;
            }
            if config.aggregation && key.is_some() {
                full_bytes +=
                    (q.queued_bytes / config.aggregation_max_size) * config.aggregation_max_size;
                full_records += q.queued_bytes / config.aggregation_max_size;
            } else {
                full_bytes += q.queued_bytes;
                full_records += q.records.len();
            }
        }
        if !urgent_any
            && full_records < config.collection_max_count
            && full_bytes + agg_room < config.collection_max_size
        {
            return None;
        }

        // Second pass: fill the batch.
        let mut entries = batcher.empty_batch(config.collection_max_count);
        let mut batch_bytes = 0usize;
        let keys: Vec<ShardKey> = self.shards.keys().cloned().collect();
        for key in keys {
            if entries.len() >= config.collection_max_count {
                break;
            }
            let q = self.shards.get_mut(&key).expect("key listed");
            if q.records.is_empty() || !q.may_send(&key, ordered, now) {
                continue;
            }
            q.rate_wait_until = None;
            let aggregate = config.aggregation && key.is_some();
            loop {
                if entries.len() >= config.collection_max_count {
                    break;
                }
                let Some(front) = q.records.front() else {
                    break;
                };
                // A partial aggregate keeps lingering unless its time is up, and so do
                // records waiting for the shard map when aggregation is on.
                if !is_urgent(&key, front.put_at, front.epoch)
                    && ((aggregate && q.queued_bytes < config.aggregation_max_size)
                        || (config.aggregation && key.is_none()))
                {
                    break;
                }
                let bound = if aggregate {
                    agg_room.max(front.size())
                } else {
                    front.size()
                };
                // The limit bounds what joins a call; a call's first Kinesis record
                // always goes, or a record (or aggregate) larger than the limit would
                // wait in its queue until its TTL.
                if !entries.is_empty() && batch_bytes + bound > config.collection_max_size {
                    break;
                }
                let wait = q.limiter.wait_for(bound.min(agg_room), now);
                if !wait.is_zero() {
                    q.rate_wait_until = Some(now + wait);
                    break;
                }
                let mut entry = if aggregate {
                    batcher.aggregate(q, key.clone())
                } else {
                    Entry::single(q.pop_front().expect("front exists"), key.clone())
                };
                if let Some(level) = config.compression_level {
                    entry.compress(level);
                }
                q.limiter.take(entry.size(), now);
                q.in_flight += 1;
                batch_bytes += entry.size();
                entries.push(entry);
                if ordered {
                    break; // one Kinesis record per shard per call
                }
            }
        }
        if entries.is_empty() {
            batcher.recycle(entries);
            return None;
        }
        Some(entries)
    }
}

#[cfg(test)]
mod tests {
    //! `collect` and `wake_at` on a bare stream state: no pipeline, no SDK client, a
    //! paused clock.

    use super::*;
    use crate::pipeline::test_support::{item, keys_of_both_halves, one_shard, two_shards};

    fn mapped(config: &Config) -> StreamState {
        let mut s = StreamState::new(Arc::from("s"), Instant::now());
        s.install_map(Arc::new(two_shards()), config, Instant::now());
        // Loaded: the next load is an interval away, not a wake-up of these tests.
        s.next_refresh = Instant::now() + config.shard_map_refresh_interval;
        s
    }

    fn push(s: &mut StreamState, config: &Config, pk: &str, size: usize, epoch: u64) {
        let (mut i, _rx) = item(pk, size);
        i.epoch = epoch;
        s.push_predicted(i, config, Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn collect_waits_for_the_linger_then_sends_one_aggregate_per_shard() {
        let config = Config::default();
        let mut batcher = Batcher::new(&config);
        let mut s = mapped(&config);
        for i in 0..10 {
            push(&mut s, &config, &format!("k{i}"), 10, 0);
        }
        assert!(s
            .collect(&config, None, &mut batcher, Instant::now())
            .is_none());
        assert_eq!(
            s.wake_at(&config, None, true, Instant::now()),
            Some(Instant::now() + config.max_buffered_time)
        );
        tokio::time::advance(config.max_buffered_time).await;
        let batch = s
            .collect(&config, None, &mut batcher, Instant::now())
            .unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.iter().map(|e| e.items.len()).sum::<usize>(), 10);
        assert_eq!(s.shards.values().map(|q| q.in_flight).sum::<usize>(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flushed_epoch_goes_at_once_and_a_later_one_lingers() {
        let config = Config::default();
        let mut batcher = Batcher::new(&config);
        let mut s = mapped(&config);
        let (lo, hi) = keys_of_both_halves();
        push(&mut s, &config, &lo, 10, 0);
        push(&mut s, &config, &hi, 10, 1);
        let batch = s
            .collect(&config, Some(0), &mut batcher, Instant::now())
            .unwrap();
        let keys: Vec<_> = batch.iter().map(|e| e.partition_key().to_owned()).collect();
        assert_eq!(keys, [lo], "the flushed epoch only");
        assert!(s
            .collect(&config, Some(0), &mut batcher, Instant::now())
            .is_none());
        let batch = s
            .collect(&config, Some(1), &mut batcher, Instant::now())
            .unwrap();
        assert_eq!(batch[0].partition_key(), hi);
    }

    #[tokio::test(start_paused = true)]
    async fn collect_respects_the_call_limits_and_reuses_emptied_batches() {
        let config = Config {
            aggregation: false,
            max_buffered_time: Duration::ZERO,
            collection_max_count: 3,
            collection_max_size: 1024,
            ..Config::default()
        };
        let mut batcher = Batcher::new(&config);
        let mut s = mapped(&config);
        for i in 0..5 {
            push(&mut s, &config, &format!("k{i}"), 10, 0);
        }
        let mut first = s
            .collect(&config, None, &mut batcher, Instant::now())
            .unwrap();
        assert_eq!(first.len(), 3, "collection_max_count");
        let ptr = first.as_ptr();
        first.clear();
        batcher.recycle(first);
        let second = s
            .collect(&config, None, &mut batcher, Instant::now())
            .unwrap();
        assert_eq!(second.len(), 2);
        assert_eq!(second.as_ptr(), ptr, "the pooled batch is reused");
        // Bytes: 400-byte records, at most 1,024 bytes a call.
        for i in 0..3 {
            push(&mut s, &config, &format!("b{i}"), 400, 0);
        }
        let batch = s
            .collect(&config, None, &mut batcher, Instant::now())
            .unwrap();
        assert_eq!(batch.len(), 2, "collection_max_size");
        assert!(batch.iter().map(Entry::size).sum::<usize>() <= 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_or_aggregate_larger_than_collection_max_size_goes_in_a_call_of_its_own() {
        // Both settings are within their documented ranges: a record the producer
        // accepted must be sent, not left to expire in its queue.
        for aggregation in [true, false] {
            let config = Config {
                aggregation,
                max_buffered_time: Duration::ZERO,
                collection_max_size: 1024,
                ..Config::default()
            };
            let mut batcher = Batcher::new(&config);
            let mut s = mapped(&config);
            push(&mut s, &config, "big", 2000, 0);
            push(&mut s, &config, "small", 10, 0);
            let first = s
                .collect(&config, None, &mut batcher, Instant::now())
                .unwrap_or_else(|| panic!("aggregation {aggregation}: nothing sent"));
            assert_eq!(first.len(), 1, "aggregation {aggregation}: alone");
            let sent: usize = first.iter().map(|e| e.items.len()).sum();
            let rest = s.collect(&config, None, &mut batcher, Instant::now());
            let rest: usize = rest.iter().flatten().map(|e| e.items.len()).sum();
            assert_eq!(sent + rest, 2, "aggregation {aggregation}: both go");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_with_records_waiting_for_a_resend_sends_nothing_in_ordered_mode() {
        let config = Config {
            per_key_ordering: true,
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut batcher = Batcher::new(&config);
        let mut s = mapped(&config);
        let (lo, hi) = keys_of_both_halves();
        push(&mut s, &config, &lo, 10, 0);
        let (parked, _rx) = item(&hi, 10);
        s.parked.push(parked);
        assert!(s.ordered_must_wait());
        assert!(s
            .collect(&config, None, &mut batcher, Instant::now())
            .is_none());
        // Nothing but the parked record's TTL (and the map refresh) wakes the pipeline.
        let wake = s.wake_at(&config, None, true, Instant::now()).unwrap();
        assert_eq!(wake, Instant::now() + config.record_ttl);
        // Unordered, the same state sends.
        let unordered = Config {
            per_key_ordering: false,
            ..config
        };
        assert!(s
            .collect(&unordered, None, &mut batcher, Instant::now())
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_before_the_first_shard_map_waits_for_it_within_the_linger() {
        let config = Config::default();
        let mut batcher = Batcher::new(&config);
        let mut s = StreamState::new(Arc::from("s"), Instant::now());
        s.refreshing = true; // the first load is under way
        for i in 0..3 {
            push(&mut s, &config, &format!("k{i}"), 10, 0);
        }
        // Flushed, but the map may come any moment: wait for it, until the linger ends.
        let now = Instant::now();
        assert!(s.collect(&config, Some(0), &mut batcher, now).is_none());
        assert_eq!(
            s.wake_at(&config, Some(0), true, now),
            Some(now + config.max_buffered_time)
        );
        // The map comes: the records go to their shards' queues, and out aggregated.
        let mut mapped = StreamState::new(Arc::from("s"), Instant::now());
        std::mem::swap(&mut mapped.shards, &mut s.shards);
        mapped.install_map(Arc::new(one_shard()), &config, now);
        mapped.next_refresh = now + config.shard_map_refresh_interval;
        let batch = mapped.collect(&config, Some(0), &mut batcher, now).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].items.len(), 3, "one aggregate");

        // No map by the end of the linger: they go unaggregated then.
        for i in 0..2 {
            push(&mut s, &config, &format!("k{i}"), 10, 0);
        }
        tokio::time::advance(config.max_buffered_time).await;
        let batch = s
            .collect(&config, Some(0), &mut batcher, Instant::now())
            .unwrap();
        assert_eq!(batch.len(), 2, "one Kinesis record each");

        // A failed first load: flushed records go at once, unaggregated.
        let mut failed = StreamState::new(Arc::from("s"), Instant::now());
        failed.map_error = Some(CallError::retryable("InternalFailure", "boom"));
        push(&mut failed, &config, "k", 10, 0);
        assert_eq!(
            failed.wake_at(&config, Some(0), true, Instant::now()),
            Some(Instant::now())
        );
        assert!(failed
            .collect(&config, Some(0), &mut batcher, Instant::now())
            .is_some());
        // Without aggregation nothing waits for the map.
        let raw = Config {
            aggregation: false,
            ..Config::default()
        };
        let mut plain = StreamState::new(Arc::from("s"), Instant::now());
        push(&mut plain, &raw, "k", 10, 0);
        assert!(plain
            .collect(&raw, Some(0), &mut batcher, Instant::now())
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn take_expired_takes_what_reached_its_ttl_and_nothing_else() {
        let config = Config::default();
        let ttl = config.record_ttl;
        let mut s = mapped(&config);
        push(&mut s, &config, "old", 10, 0);
        tokio::time::advance(Duration::from_secs(1)).await;
        push(&mut s, &config, "new", 10, 0);
        let expired = s.take_expired(Instant::now() + ttl - Duration::from_secs(1), ttl);
        let keys: Vec<_> = expired
            .items
            .iter()
            .map(|i| i.record.partition_key().to_owned())
            .collect();
        assert_eq!(keys, ["old"]);
        assert_eq!(s.drain_queued().len(), 1);
    }
}
