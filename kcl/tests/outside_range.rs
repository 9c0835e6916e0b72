//! Records of an aggregate that lie outside the shard it landed in: what a third-party
//! aggregator (one that packs any keys together and routes by the first) writes. Reproduces
//! the report: a 2-shard stream and one aggregate [a1 (shard 0), b1 (shard 1), a2 (shard 0)]
//! put under a1's key. The default drops b1 visibly (batch field, metric); `Keep` hands it
//! over, marked.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use common::*;
use kinesis_agg::{Aggregator, HashKey, UserRecord};
use kinesis_consumer::{
    InitializationInput, LeaseLostInput, OutsideRangePolicy, ProcessRecordsInput, RecordProcessor,
    Scheduler, ShardEndedInput,
};

/// What one processor saw: (data, outside_shard_range) per record, and the batches'
/// `dropped_outside_shard_range` summed.
#[derive(Debug, Default, Clone)]
struct Seen {
    records: Arc<Mutex<Vec<(String, bool)>>>,
    dropped: Arc<Mutex<usize>>,
}

#[derive(Debug)]
struct Keeper(Seen);

#[async_trait]
impl RecordProcessor for Keeper {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        {
            let mut records = self.0.records.lock().unwrap();
            for r in &input.records {
                records.push((
                    String::from_utf8_lossy(&r.data).into_owned(),
                    r.outside_shard_range,
                ));
            }
            *self.0.dropped.lock().unwrap() += input.dropped_outside_shard_range;
        }
        input.checkpointer.checkpoint().await.unwrap();
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        input.checkpointer.checkpoint().await.unwrap();
    }
}

/// A key whose hash lies in the lower (`low`) or upper half of the key space: shard 0 or
/// shard 1 of a 2-shard stream.
fn key_in_half(prefix: &str, low: bool) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| (HashKey::from_partition_key(k).value() < 1u128 << 127) == low)
        .expect("some key hashes into each half")
}

/// Runs one worker over the mixed aggregate with `policy`: what the processors saw, and
/// how much the outside-range counters (dropped, delivered) grew meanwhile.
async fn consume(policy: OutsideRangePolicy, counters: &CounterTotals) -> (Seen, u64, u64) {
    let stack = stack().await;
    let stream = stack.create_stream("outside-range", 2).await.unwrap();
    let kinesis = stack.kinesis_client();
    let (a1, b1, a2) = (
        key_in_half("a", true),
        key_in_half("b", false),
        key_in_half("c", true),
    );
    let mut agg = Aggregator::builder().build().unwrap();
    for (key, data) in [(&a1, "a1"), (&b1, "b1"), (&a2, "a2")] {
        agg.try_add(UserRecord::new(key.as_str(), data).unwrap())
            .unwrap();
    }
    let record = agg.finish().unwrap();
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key(&record.partition_key)
        .data(Blob::new(record.data.to_vec()))
        .send()
        .await
        .unwrap();
    // And one plain record in each shard, so both shards have something in range.
    for key in [&a1, &b1] {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(key)
            .data(Blob::new(format!("plain {key}")))
            .send()
            .await
            .unwrap();
    }
    let name = kinesis_consumer::metric_names::RECORDS_OUTSIDE_SHARD_RANGE;
    let dropped_before = counters.get(name, Some(("action", "dropped")));
    let delivered_before = counters.get(name, Some(("action", "delivered")));
    let seen = Seen::default();
    let processors = seen.clone();
    let app = kinesis_emulators::unique_name("outside-range-app");
    let worker = Scheduler::builder(&app, &stream, move |_: &str| {
        Box::new(Keeper(processors.clone())) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("w")
    .with_outside_range_policy(policy)
    .with_retrieval(polling())
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    let want = match policy {
        OutsideRangePolicy::Keep => 5,
        _ => 4,
    };
    wait_until("every record", || {
        seen.records.lock().unwrap().len() >= want
    })
    .await;
    // A moment more: nothing else may come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let dropped = counters.get(name, Some(("action", "dropped"))) - dropped_before;
    let delivered = counters.get(name, Some(("action", "delivered"))) - delivered_before;
    (seen, dropped, delivered)
}

/// The records (data, whether marked outside the shard) that came from the aggregate, in
/// the order of `records`: all but the plain ones.
fn from_the_aggregate(records: &[(String, bool)]) -> Vec<&(String, bool)> {
    records
        .iter()
        .filter(|(d, _)| !d.starts_with("plain"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_outside_the_shard_are_dropped_visibly_by_default_and_kept_when_asked() {
    let counters = counters();

    let (seen, dropped, delivered) = consume(OutsideRangePolicy::Drop, counters).await;
    let mut records = seen.records.lock().unwrap().clone();
    records.sort();
    let aggregated = from_the_aggregate(&records);
    assert_eq!(
        aggregated,
        [&("a1".to_owned(), false), &("a2".to_owned(), false)],
        "b1 is not in shard 0's range"
    );
    assert_eq!(
        *seen.dropped.lock().unwrap(),
        1,
        "the batch says one was dropped"
    );
    assert_eq!((dropped, delivered), (1, 0));

    let (seen, dropped, delivered) = consume(OutsideRangePolicy::Keep, counters).await;
    let records = seen.records.lock().unwrap().clone();
    let aggregated = from_the_aggregate(&records);
    assert_eq!(
        aggregated,
        [
            &("a1".to_owned(), false),
            &("b1".to_owned(), true),
            &("a2".to_owned(), false)
        ],
        "handed over in order, b1 marked"
    );
    assert_eq!(*seen.dropped.lock().unwrap(), 0);
    assert_eq!((dropped, delivered), (0, 1));
    assert_eq!(records.len(), 5);
}
