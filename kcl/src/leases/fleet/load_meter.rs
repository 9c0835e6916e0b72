//! [`LoadMeter`] and [`WorkerLoad`]: what a worker's shard consumers read, summed up at
//! each heartbeat and published with it, so operators (`kinesis-cat leases`) see every
//! worker's throughput and lag without another call.
//!
//! ```text
//!  ShardConsumer, each batch ─▶ ShardMeter::record(records, bytes, millis_behind_latest)
//!                                  │ (dropped with the consumer: its lag is forgotten)
//!                                  ▼
//!  LoadMeter (one per worker): records, bytes since the last report; lag per shard
//!                                  │ Heartbeat, each beat
//!                                  ▼
//!  WorkerLoad { records/s, bytes/s, max millis behind latest } ─▶ fleet item l:<worker>
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A worker's load as it last reported it with its heartbeat: the rates over the time
/// since its report before (a heartbeat interval, 2 s by default).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct WorkerLoad {
    /// User records (after deaggregation) handed to the worker's processors per second.
    pub records_per_second: f64,
    /// Bytes of user record data handed over per second.
    pub bytes_per_second: f64,
    /// The largest `millis_behind_latest` among the worker's shards, from each shard's
    /// last read (none: no shard read yet, or the endpoint does not say).
    pub max_millis_behind_latest: Option<i64>,
}

impl WorkerLoad {
    /// A load of these figures.
    pub fn new(
        records_per_second: f64,
        bytes_per_second: f64,
        max_millis_behind_latest: Option<i64>,
    ) -> Self {
        Self {
            records_per_second,
            bytes_per_second,
            max_millis_behind_latest,
        }
    }
}

/// What one worker's shard consumers read since the last report; see the module docs.
/// Shared by the worker's consumers (through [`ShardMeter`]s) and its heartbeat.
#[derive(Debug)]
pub struct LoadMeter {
    /// The counts since the last report, and each running shard's lag.
    state: Mutex<MeterState>,
}

/// The meter's counts.
#[derive(Debug)]
struct MeterState {
    /// User records handed over since `since`.
    records: u64,
    /// Bytes of their data.
    bytes: u64,
    /// When the counts started (the last report).
    since: Instant,
    /// Each running shard consumer's last `millis_behind_latest`.
    lag: HashMap<String, i64>,
}

impl Default for LoadMeter {
    fn default() -> Self {
        Self {
            state: Mutex::new(MeterState {
                records: 0,
                bytes: 0,
                since: Instant::now(),
                lag: HashMap::new(),
            }),
        }
    }
}

impl LoadMeter {
    /// A meter with nothing counted.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MeterState> {
        // A panic elsewhere while holding it left counts only: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The meter of `shard`'s consumer: its lag is forgotten when it is dropped.
    pub fn shard(self: &Arc<Self>, shard: &str) -> ShardMeter {
        ShardMeter {
            meter: self.clone(),
            shard: shard.to_owned(),
        }
    }

    /// The rates since the last report (or the meter's creation), and the largest lag of
    /// the shards running now; the counts start again.
    pub fn report(&self) -> WorkerLoad {
        self.report_at(Instant::now())
    }

    fn report_at(&self, now: Instant) -> WorkerLoad {
        let mut s = self.state();
        let secs = now.saturating_duration_since(s.since).as_secs_f64();
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let load = WorkerLoad {
            records_per_second: rate(s.records),
            bytes_per_second: rate(s.bytes),
            max_millis_behind_latest: s.lag.values().copied().max(),
        };
        (s.records, s.bytes, s.since) = (0, 0, now);
        load
    }
}

/// One shard consumer's handle on its worker's [`LoadMeter`].
#[derive(Debug)]
pub struct ShardMeter {
    /// The worker's meter.
    meter: Arc<LoadMeter>,
    /// The shard (lease key) this consumer reads.
    shard: String,
}

impl ShardMeter {
    /// Counts a batch of `records` user records of `bytes` data bytes, read
    /// `millis_behind_latest` behind the tip of the shard (if the endpoint said).
    pub fn record(&self, records: usize, bytes: usize, millis_behind_latest: Option<i64>) {
        let mut s = self.meter.state();
        s.records += records as u64;
        s.bytes += bytes as u64;
        if let Some(ms) = millis_behind_latest {
            s.lag.insert(self.shard.clone(), ms);
        }
    }
}

impl Drop for ShardMeter {
    fn drop(&mut self) {
        self.meter.state().lag.remove(&self.shard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_report_gives_the_rates_since_the_last_and_the_largest_lag_of_running_shards() {
        let meter = Arc::new(LoadMeter::new());
        let start = meter.state().since;
        let (a, b) = (meter.shard("a"), meter.shard("b"));
        a.record(100, 10_000, Some(500));
        b.record(300, 30_000, Some(2_000));
        b.record(0, 0, None); // an empty read without a lag keeps the last one
        let load = meter.report_at(start + Duration::from_secs(2));
        assert_eq!(load, WorkerLoad::new(200.0, 20_000.0, Some(2_000)));

        drop(b); // its consumer ended: its lag no longer counts
        a.record(10, 100, Some(0));
        let load = meter.report_at(start + Duration::from_secs(3));
        assert_eq!(load, WorkerLoad::new(10.0, 100.0, Some(0)));

        drop(a);
        let idle = meter.report_at(start + Duration::from_secs(4));
        assert_eq!(idle, WorkerLoad::new(0.0, 0.0, None));
        // Two reports at the same instant: no division by zero.
        assert_eq!(
            meter
                .report_at(start + Duration::from_secs(4))
                .records_per_second,
            0.0
        );
    }
}
