//! [`Retrieval`]: which records source every shard consumer of a worker reads from.
//!
//! ```text
//!  SchedulerBuilder::with_retrieval(Retrieval) ──start-up──▶ Polling            (GetRecords)
//!                                                       └──▶ FanOut + consumer  (SubscribeToShard)
//! ```

use super::{FanOutConfig, PollingConfig};

/// How a worker reads its shards; chosen with
/// [`SchedulerBuilder::with_retrieval`](crate::SchedulerBuilder::with_retrieval).
///
/// Polling shares each shard's 2 MiB/s and 5 `GetRecords`/s with every other polling
/// reader; enhanced fan-out gives each registered consumer its own 2 MiB/s per shard and
/// pushes records about 70 ms after they were put, for an hourly price per consumer-shard
/// and per GB (AWS: *Kinesis Data Streams quotas and limits*, *enhanced fan-out*). The
/// Java KCL 2.x and 3.x default to fan-out; this library defaults to polling, which works
/// on every endpoint and costs nothing extra.
///
/// # Usage
/// ```
/// use kinesis_consumer::{FanOutConfig, Retrieval};
///
/// assert!(matches!(Retrieval::default(), Retrieval::Polling(_)));
/// let fan_out = Retrieval::FanOut(FanOutConfig::default().with_consumer_name("billing"));
/// # let _ = fan_out;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retrieval {
    /// `GetShardIterator` + `GetRecords`, paced per shard.
    Polling(PollingConfig),
    /// `SubscribeToShard` pushes to a registered stream consumer (enhanced fan-out),
    /// registered at start-up when missing.
    FanOut(FanOutConfig),
}

impl Default for Retrieval {
    /// [`Retrieval::Polling`] with [`PollingConfig::default`].
    fn default() -> Self {
        Retrieval::Polling(PollingConfig::default())
    }
}
