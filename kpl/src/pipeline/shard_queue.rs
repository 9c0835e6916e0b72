//! One predicted shard's waiting records and what holds them back: backoff after a
//! failure, the rate limiter, and (ordered mode) its Kinesis records in flight.
//!
//! ```text
//!  push_back (new) ─▶ [ oldest … newest ] ─▶ pop_front ─▶ batch
//!  push_front (retry, kept in order) ─┘         may_send? backoff_until, rate_wait_until,
//!                                                         ordered: in_flight == 0 and a shard
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use backon::ExponentialBackoff;
use tokio::time::Instant;

use super::message::Item;
use crate::config::{Config, SHARD_BYTES_PER_SEC, SHARD_RECORDS_PER_SEC};
use crate::rate_limit::ShardLimiter;

/// Which queue of a stream a record waits in: a predicted shard, or `None` while the
/// shard map is unknown (then records are sent unaggregated, routed by Kinesis itself).
pub(crate) type ShardKey = Option<Arc<str>>;

/// A shard's queue and its sending state.
#[derive(Debug)]
pub(crate) struct ShardQueue {
    /// Waiting user records, oldest first (retries go back to the front).
    pub(crate) records: VecDeque<Item>,
    /// Sum of their sizes, to know when a full aggregate is waiting.
    pub(crate) queued_bytes: usize,
    /// Kinesis records of this shard in calls not yet answered.
    pub(crate) in_flight: usize,
    /// No sends before this instant (set after a failure).
    pub(crate) backoff_until: Option<Instant>,
    /// The backoff sequence since the last success.
    pub(crate) backoff: Option<ExponentialBackoff>,
    /// No sends before this instant (rate limiter).
    pub(crate) rate_wait_until: Option<Instant>,
    /// Records/s and bytes/s buckets.
    pub(crate) limiter: ShardLimiter,
}

impl ShardQueue {
    /// An empty queue whose rate limiter allows `rate_limit_percent` of a shard's limits.
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        let pct = f64::from(config.rate_limit_percent) / 100.0;
        ShardQueue {
            records: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            backoff_until: None,
            backoff: None,
            rate_wait_until: None,
            limiter: ShardLimiter::new(SHARD_RECORDS_PER_SEC * pct, SHARD_BYTES_PER_SEC * pct, now),
        }
    }

    pub(crate) fn push_back(&mut self, item: Item) {
        self.queued_bytes += item.size();
        self.records.push_back(item);
    }

    pub(crate) fn push_front(&mut self, item: Item) {
        self.queued_bytes += item.size();
        self.records.push_front(item);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Item> {
        let item = self.records.pop_front()?;
        self.queued_bytes -= item.size();
        Some(item)
    }

    /// Empties the queue into `out`, oldest first.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Item>) {
        while let Some(item) = self.pop_front() {
            out.push(item);
        }
    }

    /// The earliest instant this queue could send, ignoring linger.
    pub(crate) fn blocked_until(&self) -> Option<Instant> {
        match (self.backoff_until, self.rate_wait_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the queue (keyed `key`) may contribute to a batch now, linger aside.
    pub(crate) fn may_send(&self, key: &ShardKey, ordered: bool, now: Instant) -> bool {
        if self.blocked_until().is_some_and(|t| t > now) {
            return false;
        }
        // Ordered: one Kinesis record per shard in flight, and only with a shard map.
        !(ordered && (self.in_flight > 0 || key.is_none()))
    }
}
