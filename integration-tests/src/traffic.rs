//! Steady traffic for the balancing and handoff suites: a background task that puts
//! records to each shard of a stream every [`TICK`] until stopped, and keeps what it sent.
//!
//! ```text
//!  Traffic::start(kinesis, stream, shards, per_tick, record)
//!    every TICK, for each shard: per_tick(shard) records, record(shard, n) = (key, data)
//!      ─▶ one PutRecords (explicit hash key = the shard's starting hash key: each record
//!         lands on its shard whatever its key), failed entries retried
//!  Traffic::stop ─▶ the data of every record sent, in order
//! ```
//!
//! [`Traffic::hot_shard`] is the traffic of the throughput-balancing suites: one shard
//! carrying most of the records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard};
use aws_sdk_kinesis::Client;

/// How often the records of a tick are put: 100 ms.
pub const TICK: Duration = Duration::from_millis(100);

/// How many times a `PutRecords` with failed entries is tried before the task panics.
const ATTEMPTS: usize = 50;

/// Bytes of each record's data in [`Traffic::hot_shard`]: 500.
pub const HOT_SHARD_RECORD_BYTES: usize = 500;

/// Records per [`TICK`] that [`Traffic::hot_shard`] puts to the hot shard: 24, about
/// 117 KB/s of [`HOT_SHARD_RECORD_BYTES`] records.
pub const HOT_PER_TICK: usize = 24;

/// Records per [`TICK`] that [`Traffic::hot_shard`] puts to each other shard: 2, about
/// 10 KB/s.
pub const COLD_PER_TICK: usize = 2;

/// A running producer task (see the module's docs).
#[derive(Debug)]
pub struct Traffic {
    /// Tells the task to stop after its current tick.
    stop: Arc<AtomicBool>,
    /// The data of each record sent, in order (pushed before its `PutRecords`).
    sent: Arc<Mutex<Vec<String>>>,
    /// The task, awaited by [`stop`](Traffic::stop) so that a failed put fails the test.
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// Starts putting, every [`TICK`], `per_tick(shard id)` records to each of `shards` of
    /// `stream`; the `n`-th record (counted over all shards, from 0) of shard `s` is
    /// `record(s, n)` = (partition key, data). Must be called within a Tokio runtime.
    pub fn start(
        kinesis: &Client,
        stream: &str,
        shards: &[Shard],
        per_tick: impl Fn(&str) -> usize + Send + 'static,
        record: impl Fn(&str, usize) -> (String, String) + Send + 'static,
    ) -> Traffic {
        let starts: Vec<(String, String)> = shards
            .iter()
            .map(|s| {
                let start = s
                    .hash_key_range()
                    .map_or_else(|| "0".to_owned(), |r| r.starting_hash_key().to_owned());
                (s.shard_id().to_owned(), start)
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<Vec<String>>> = Arc::default();
        let task = {
            let (kinesis, stream, sent, stop) = (
                kinesis.clone(),
                stream.to_owned(),
                sent.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let mut entries = Vec::new();
                    for (shard, start) in &starts {
                        for _ in 0..per_tick(shard) {
                            let (key, data) = record(shard, n);
                            n += 1;
                            sent.lock().unwrap().push(data.clone());
                            entries.push(
                                PutRecordsRequestEntry::builder()
                                    .partition_key(key)
                                    .explicit_hash_key(start)
                                    .data(Blob::new(data.into_bytes()))
                                    .build()
                                    .expect("a record"),
                            );
                        }
                    }
                    send(&kinesis, &stream, entries).await;
                    tokio::time::sleep(TICK).await;
                }
            })
        };
        Traffic { stop, sent, task }
    }

    /// Starts the traffic of a throughput-balancing test: every [`TICK`], [`HOT_PER_TICK`]
    /// records to the shard `hot` and [`COLD_PER_TICK`] to each other one of `shards`; each
    /// record's key is `<shard id>-<n>` and its data that key padded with spaces to
    /// [`HOT_SHARD_RECORD_BYTES`], so every record is told apart. Must be called within a
    /// Tokio runtime.
    pub fn hot_shard(kinesis: &Client, stream: &str, shards: &[Shard], hot: &str) -> Traffic {
        let hot = hot.to_owned();
        Traffic::start(
            kinesis,
            stream,
            shards,
            move |shard| {
                if shard == hot {
                    HOT_PER_TICK
                } else {
                    COLD_PER_TICK
                }
            },
            |shard, n| {
                let id = format!("{shard}-{n}");
                let data = format!("{id:<HOT_SHARD_RECORD_BYTES$}");
                (id, data)
            },
        )
    }

    /// Stops after the current tick; the data of every record sent, in order.
    ///
    /// # Cancellation
    /// Dropping the future leaves the task stopping on its own; what it sent is lost.
    ///
    /// # Panics
    /// When a put failed (the task panicked).
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the traffic task");
        std::mem::take(&mut *self.sent.lock().unwrap())
    }
}

/// `PutRecords` of `entries` (at most 500), retrying failed entries from the first failure
/// on (so each key's order is kept); panics after ATTEMPTS refusals.
pub async fn send(kinesis: &Client, stream: &str, mut entries: Vec<PutRecordsRequestEntry>) {
    for _ in 0..ATTEMPTS {
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries.clone()))
            .send()
            .await
            .expect("PutRecords");
        if out.failed_record_count().unwrap_or(0) == 0 {
            return;
        }
        let first = out
            .records()
            .iter()
            .position(|r| r.error_code().is_some())
            .unwrap_or(0);
        entries = entries.split_off(first);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("PutRecords kept failing");
}
