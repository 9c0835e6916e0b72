//! [`FanOut`]: the enhanced fan-out retrieval, which reads a shard through `SubscribeToShard`
//! pushes to a registered stream consumer, set by [`FanOutConfig`].
//!
//! ```text
//!  start-up: registration ─ DescribeStreamConsumer ─missing─▶ RegisterStreamConsumer
//!            (wait until ACTIVE; reused across restarts; never deregistered) ─▶ consumer ARN
//!
//!  subscriber task (one per shard consumer)
//!  SubscribeToShard(consumer ARN, shard, Continuation::position()) ─▶ event stream
//!    each event ─▶ Continuation::accept: drop replays, note the last record sent
//!               ─▶ bounded channel (event_buffer batches) ─▶ shard consumer
//!                  (full: no more events are read; flow control slows the server)
//!    renew_after passed, or the server ended it ─▶ subscribe again after the last record sent
//!    error, or no event for idle_timeout ─▶ again after 250 ms doubling to 10 s, + jitter
//!    ResourceNotFound and the shard is gone ─▶ empty batch with `end`
//!  shard end (no continuation; or children and no records) ─▶ last batch with `end`
//! ```
//!
//! Kinesis pushes each registered consumer up to 2 MiB/s per shard, apart from every other
//! reader, with about 70 ms from put to push; a subscription lasts at most 5 minutes; one
//! call per second is allowed per consumer and shard, and a call within 5 seconds of a
//! successful one fails with `ResourceInUseException` (AWS: *SubscribeToShard*, Kinesis
//! Data Streams API reference), which the backoff waits out. The parts: the
//! pure ledger of what was sent ([`Continuation`](continuation::Continuation)), the
//! per-shard `subscriber` task, and the consumer `registration`.

mod continuation;
mod registration;
mod subscriber;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Batch, RecordsSource, StartingPosition};
pub(crate) use registration::{describe_or_register, ConsumerState};
use subscriber::Subscriber;

/// Settings of enhanced fan-out retrieval.
///
/// # Usage
/// ```
/// use kinesis_consumer::FanOutConfig;
///
/// let config = FanOutConfig::default().with_consumer_name("billing");
/// assert_eq!(config.consumer_name.as_deref(), Some("billing"));
/// assert_eq!(config.event_buffer, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FanOutConfig {
    /// The name of the stream consumer registered for this application (each registered
    /// consumer gets its own 2 MiB/s per shard). `None`: the application name. Registered
    /// at start-up when missing, reused when present, never deregistered by the library.
    pub consumer_name: Option<String>,
    /// Events held per shard ahead of the processor. While they are all waiting, no more
    /// events are read and the server is slowed by flow control, so a slow processor
    /// never loses its subscription; this bounds the memory a shard's backlog takes
    /// (an event carries what the shard received since the one before).
    pub event_buffer: usize,
    /// How long a subscription is used before it is renewed (Kinesis ends one after
    /// 5 minutes). Renewed after the last record handed on: nothing skipped or repeated.
    pub renew_after: Duration,
    /// How long a subscription may stay silent, while there is room in the buffer, before
    /// it is given up and made again from the last record handed on: a guard against a
    /// connection that died without closing. Time spent waiting for the processor does
    /// not count.
    pub idle_timeout: Duration,
}

impl Default for FanOutConfig {
    /// The application name as consumer name, 4 buffered events, renewal after 4 min 50 s
    /// (before the 5-minute end of a subscription), a 60 s idle timeout.
    fn default() -> Self {
        Self {
            consumer_name: None,
            event_buffer: 4,
            renew_after: Duration::from_secs(290),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl FanOutConfig {
    /// Names the stream consumer. Default: the application name.
    pub fn with_consumer_name(mut self, name: impl Into<String>) -> Self {
        self.consumer_name = Some(name.into());
        self
    }

    /// Sets [`event_buffer`](Self::event_buffer). Default: 4.
    pub fn with_event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events;
        self
    }

    /// Sets [`renew_after`](Self::renew_after). Default: 290 s.
    pub fn with_renew_after(mut self, after: Duration) -> Self {
        self.renew_after = after;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout). Default: 60 s.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// The fan-out retrieval of every shard consumer of one worker: each
/// [`start`](RecordsSource::start) spawns a subscriber task for the shard.
#[derive(Debug, Clone)]
pub(crate) struct FanOut {
    /// Kinesis client of the subscriptions (and of the shard-gone check).
    kinesis: aws_sdk_kinesis::Client,
    /// The stream, for the shard-gone check.
    stream: String,
    /// The registered stream consumer subscriptions are made for.
    consumer_arn: String,
    /// Buffer, renewal and idle settings of every subscriber.
    config: FanOutConfig,
}

impl FanOut {
    /// Fan-out retrieval of `stream`'s shards for the ACTIVE consumer `consumer_arn`.
    pub(crate) fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream: impl Into<String>,
        consumer_arn: impl Into<String>,
        config: FanOutConfig,
    ) -> Self {
        Self {
            kinesis,
            stream: stream.into(),
            consumer_arn: consumer_arn.into(),
            config,
        }
    }
}

impl RecordsSource for FanOut {
    /// Spawns a subscriber (in the caller's tracing span) that buffers up to
    /// `event_buffer` batches (at least one).
    fn start(
        &self,
        shard_id: &str,
        from: StartingPosition,
        stop: CancellationToken,
    ) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(self.config.event_buffer.max(1));
        let subscriber = Subscriber {
            kinesis: self.kinesis.clone(),
            stream: self.stream.clone(),
            consumer_arn: self.consumer_arn.clone(),
            shard_id: shard_id.to_owned(),
            start: from,
            config: self.config.clone(),
        };
        tokio::spawn(
            subscriber
                .run(tx, stop)
                .instrument(tracing::Span::current()),
        );
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_out_defaults_are_pinned() {
        let c = FanOutConfig::default();
        assert_eq!(c.consumer_name, None);
        assert_eq!(c.event_buffer, 4);
        assert_eq!(c.renew_after, Duration::from_secs(290));
        assert!(
            c.renew_after < Duration::from_secs(300),
            "before Kinesis ends it"
        );
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        let c = c
            .with_consumer_name("n")
            .with_event_buffer(1)
            .with_renew_after(Duration::from_secs(5))
            .with_idle_timeout(Duration::from_secs(6));
        assert_eq!((c.consumer_name.as_deref(), c.event_buffer), (Some("n"), 1));
        assert_eq!(
            (c.renew_after, c.idle_timeout),
            (Duration::from_secs(5), Duration::from_secs(6))
        );
    }
}
