//! Per-shard token buckets, so that one hot shard is held back without holding back the
//! rest.
//!
//! ```text
//!  Kinesis record ──take(1 record, n bytes)──▶ both buckets have it? ──yes──▶ send
//!                                                        └──no──▶ wait the time returned
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled continuously at `rate` per second, holding at most `rate`
/// (one second's worth).
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Tokens added per second, and also the bucket's capacity.
    rate: f64,
    /// Tokens available at `last`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    /// How long until `n` tokens are available (zero if they are now). `n` larger than
    /// the capacity is treated as the capacity, so that a large record is never stuck.
    pub(crate) fn wait_for(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let n = n.min(self.rate);
        if self.tokens >= n {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((n - self.tokens) / self.rate)
        }
    }

    /// Takes `n` tokens (capped at the capacity), which may leave the bucket in debt.
    pub(crate) fn take(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n.min(self.rate);
    }
}

/// The two limits of one shard: records per second and bytes per second.
#[derive(Debug, Clone)]
pub(crate) struct ShardLimiter {
    /// Kinesis records per second.
    records: TokenBucket,
    /// Bytes (data plus partition key) per second.
    bytes: TokenBucket,
}

impl ShardLimiter {
    pub(crate) fn new(records_per_sec: f64, bytes_per_sec: f64, now: Instant) -> Self {
        ShardLimiter {
            records: TokenBucket::new(records_per_sec, now),
            bytes: TokenBucket::new(bytes_per_sec, now),
        }
    }

    /// How long until one record of `size` bytes may be sent.
    pub(crate) fn wait_for(&mut self, size: usize, now: Instant) -> Duration {
        self.records
            .wait_for(1.0, now)
            .max(self.bytes.wait_for(size as f64, now))
    }

    /// Records that one record of `size` bytes was sent.
    pub(crate) fn take(&mut self, size: usize, now: Instant) {
        self.records.take(1.0, now);
        self.bytes.take(size as f64, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_at_their_rate_and_cap_at_one_second() {
        let start = Instant::now();
        let mut b = ShardLimiter::new(1000.0, 1_048_576.0, start);
        for _ in 0..1000 {
            assert_eq!(b.wait_for(10, start), Duration::ZERO);
            b.take(10, start);
        }
        // The 1001st record in the same instant waits 1 ms for one record token.
        let w = b.wait_for(10, start);
        assert!((w.as_secs_f64() - 0.001).abs() < 1e-9, "{w:?}");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.wait_for(10, Instant::now()), Duration::ZERO);
        // A long idle time does not bank more than one second's worth.
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        for _ in 0..1000 {
            b.take(1, now);
        }
        assert!(b.wait_for(1, now) > Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_limit_holds_back_large_records() {
        let now = Instant::now();
        let mut b = ShardLimiter::new(1000.0, 1_048_576.0, now);
        b.take(1_048_576, now);
        let w = b.wait_for(524_288, now);
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
        // A record larger than a second's worth waits for a full bucket, not forever.
        let w = b.wait_for(10 << 20, now);
        assert!((w.as_secs_f64() - 1.0).abs() < 1e-6, "{w:?}");
    }
}
