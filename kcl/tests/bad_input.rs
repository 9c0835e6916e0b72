//! The consumer on bad input, row by row: each kind of bad record, lease item or
//! environment has one outcome, asserted exactly: a typed error, a counted skip, or a
//! record handed over as it was sent; never a panic, never a silent loss, never a busy loop.
//!
//! ```text
//!  records put raw ──▶ Kinesis ──▶ worker ──▶ processor: what was handed over
//!                                        └──▶ metrics: corrupt aggregates, skipped records
//!  items put raw ──▶ lease table ──▶ worker: valid leases worked, odd items counted, left alone
//!  no stream / access denied (fault proxy) ──▶ run() ──▶ the typed error
//! ```
//! The deaggregation of every kind of corrupt aggregate, without I/O, is the table in
//! `kcl/src/consumer/user_records.rs`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use bytes::Bytes;
use common::*;
use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use kinesis_agg::{Aggregator, UserRecord, MAGIC};
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::metric_names as m;
use kinesis_consumer::Error;
use kinesis_emulators::LocalStack;

const FAILOVER: Duration = Duration::from_secs(3);

/// An aggregate of `n` user records keyed `key`, data `{key}-{i}`.
fn aggregate(key: &str, n: usize) -> Vec<u8> {
    let mut agg = Aggregator::builder().build().expect("aggregator");
    for i in 0..n {
        let r = UserRecord::new(key, format!("{key}-{i}")).expect("valid");
        agg.try_add(r).expect("fits");
    }
    agg.finish().expect("records").data.to_vec()
}

/// What the worker must make of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Handed over as sent, one record, not counted as corrupt.
    Plain,
    /// Handed over as sent, one record, counted as a corrupt aggregate.
    CorruptWhole,
    /// This many user records.
    Users(usize),
    /// Nothing handed over, counted as skipped.
    Skipped,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_handed_over_whole_or_counted_never_lost() {
    let counters = counters();
    let stack = stack().await;
    let stream = stack.create_stream("bad-records", 1).await.unwrap();
    let valid = aggregate("valid", 3);
    let mut bad_md5 = valid.clone();
    *bad_md5.last_mut().unwrap() ^= 0xFF;
    let mut bad_magic = valid.clone();
    bad_magic[3] = 0xC1;
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() - 20);
    let mut tail = MAGIC.to_vec();
    tail.extend_from_slice(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
    tail.extend_from_slice(&[0u8; 16]);
    let zero = {
        // The magic, an aggregate holding only a key, and its MD5.
        use md5::Digest as _;
        let body = [0x0A, 0x01, b'k'];
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&md5::Md5::digest(body));
        out
    };
    let rows: Vec<(&str, Vec<u8>, Want)> = vec![
        ("valid", valid, Want::Users(3)),
        ("bad-magic", bad_magic, Want::Plain),
        ("magic-only", MAGIC.to_vec(), Want::Plain),
        ("bad-md5", bad_md5, Want::CorruptWhole),
        ("truncated", truncated, Want::CorruptWhole),
        ("huge-length-bad-md5", tail, Want::CorruptWhole),
        ("zero-records", zero, Want::Skipped),
        ("end", b"end".to_vec(), Want::Plain),
    ];
    let kinesis = stack.kinesis_client();
    for (name, data, _) in &rows {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(*name)
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord");
    }
    let corrupt_before = counters.get(m::CORRUPT_AGGREGATES, None);
    let skipped_before = counters.get(m::RECORDS_SKIPPED, None);

    let rec = Recorder::default();
    let worker = scheduler(
        &stack,
        &LocalStack::unique_name("bad-records"),
        &stream,
        "w",
        &rec,
        FAILOVER,
    );
    let run = spawn_run(&worker);
    wait_until("the last record", || {
        rec.seen()
            .iter()
            .any(|s| s.data == Bytes::from_static(b"end"))
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let seen = rec.seen();
    let mut want_corrupt = 0;
    let mut want_skipped = 0;
    for (name, data, want) in &rows {
        let got: Vec<_> = seen.iter().filter(|s| s.partition_key == *name).collect();
        match want {
            Want::Plain | Want::CorruptWhole => {
                assert_eq!(got.len(), 1, "{name}: one record");
                assert_eq!(got[0].data, Bytes::from(data.clone()), "{name}: as sent");
                assert_eq!(got[0].sub_sequence_number, 0, "{name}");
            }
            Want::Users(n) => {
                let subs: Vec<u64> = got.iter().map(|s| s.sub_sequence_number).collect();
                assert_eq!(subs, (0..*n as u64).collect::<Vec<_>>(), "{name}");
            }
            Want::Skipped => assert!(got.is_empty(), "{name}: nothing handed over"),
        }
        want_corrupt += u64::from(*want == Want::CorruptWhole);
        want_skipped += u64::from(*want == Want::Skipped);
    }
    assert_eq!(seen.len(), 3 + 6, "nothing else was handed over");
    assert_eq!(
        counters.get(m::CORRUPT_AGGREGATES, None) - corrupt_before,
        want_corrupt
    );
    assert_eq!(
        counters.get(m::RECORDS_SKIPPED, None) - skipped_before,
        want_skipped
    );
}

/// A raw item of string attributes.
fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_lease_items_are_skipped_counted_and_left_alone_while_valid_leases_work() {
    let counters = counters();
    let stack = stack().await;
    let stream = stack.create_stream("bad-leases", 2).await.unwrap();
    let app = LocalStack::unique_name("bad-leases");
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    table.create_table_if_not_exists().await.expect("table");
    let shards = integration_tests::kinesis::list_shards(&stack.kinesis_client(), &stream).await;
    let broken_shard = shards[1].shard_id().to_owned();
    // Row: (what, item). None of them is a lease the worker can read.
    let odd: Vec<(&str, HashMap<String, AttributeValue>)> = vec![
        ("only a key", item(&[("leaseKey", s("odd-1"))])),
        (
            "counter of the wrong type",
            item(&[
                ("leaseKey", s("odd-2")),
                ("leaseCounter", s("7")),
                ("checkpoint", s("TRIM_HORIZON")),
            ]),
        ),
        (
            "negative counter",
            item(&[
                ("leaseKey", s("odd-3")),
                ("leaseCounter", n("-1")),
                ("checkpoint", s("LATEST")),
            ]),
        ),
        (
            "checkpoint that is no position",
            item(&[
                ("leaseKey", s("odd-4")),
                ("leaseCounter", n("1")),
                ("checkpoint", s("HALFWAY")),
            ]),
        ),
        (
            "foreign schema",
            item(&[
                ("leaseKey", s("odd-5")),
                ("id", n("42")),
                (
                    "payload",
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0xFF])),
                ),
            ]),
        ),
        (
            "reversed hash key range",
            item(&[
                ("leaseKey", s("odd-6")),
                ("leaseCounter", n("1")),
                ("checkpoint", s("TRIM_HORIZON")),
                ("startingHashKey", s("9")),
                ("endingHashKey", s("1")),
            ]),
        ),
        (
            "a real shard's lease with the counter as text",
            item(&[
                ("leaseKey", s(&broken_shard)),
                ("leaseCounter", s("x")),
                ("checkpoint", s("TRIM_HORIZON")),
            ]),
        ),
    ];
    // Not a lease at all (the Java KCL 3.5's single-table items): left alone, not counted.
    let metrics_item = item(&[
        ("leaseKey", s("worker-java")),
        ("entityType", s("WORKER_METRIC_STATS")),
        ("lut", n("1")),
    ]);
    let dynamodb = stack.dynamodb_client();
    for (_, it) in odd
        .iter()
        .map(|(w, i)| (w, i))
        .chain([(&"metrics", &metrics_item)])
    {
        dynamodb
            .put_item()
            .table_name(&app)
            .set_item(Some(it.clone()))
            .send()
            .await
            .expect("PutItem");
    }
    // Records in every shard; those of the broken shard's lease cannot be read until the
    // item is repaired, those of the other shard must all come.
    let records = records(200, 20, 1, "r");
    put_records(&stack.kinesis_client(), &stream, &records, 1).await;
    let skipped_before = counters.get(m::INVALID_LEASES_SKIPPED, None);

    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w", &rec, FAILOVER);
    let run = spawn_run(&worker);
    let good_shard = shards[0].shard_id().to_owned();
    let in_good = {
        let (lo, hi) = integration_tests::kinesis::hash_range(&shards[0]);
        records
            .iter()
            .filter(|r| {
                (lo..=hi).contains(&kinesis_agg::HashKey::from_partition_key(&r.partition_key).0)
            })
            .count()
    };
    assert!(
        in_good > 0 && in_good < records.len(),
        "both shards get records"
    );
    wait_until("every record of the good shard", || {
        rec.seen().iter().filter(|s| s.shard == good_shard).count() >= in_good
    })
    .await;
    // Scans keep counting the odd items (7 per scan) while the worker goes on.
    wait_until("two scans' worth of skipped items", || {
        counters.get(m::INVALID_LEASES_SKIPPED, None) - skipped_before >= 2 * odd.len() as u64
    })
    .await;
    assert!(!run.is_finished(), "the worker keeps running");
    worker.graceful_shutdown().await;
    run.await.unwrap().expect("a clean stop");

    assert!(
        rec.seen().iter().all(|s| s.shard == good_shard),
        "nothing from the broken lease"
    );
    // Every odd item and the metrics item are as they were put: never rewritten.
    for (what, it) in odd
        .iter()
        .map(|(w, i)| (*w, i))
        .chain([("metrics", &metrics_item)])
    {
        let key = it["leaseKey"].clone();
        let now = dynamodb
            .get_item()
            .table_name(&app)
            .key("leaseKey", key)
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
            .unwrap_or_default();
        assert_eq!(&now, it, "{what}: left as it was");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_typed_error_and_creates_nothing() {
    let stack = stack().await;
    let stream = LocalStack::unique_name("no-such-stream");
    let app = LocalStack::unique_name("no-stream-app");
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w", &rec, FAILOVER);
    let out = tokio::time::timeout(DEADLINE, worker.run())
        .await
        .expect("run returns");
    assert!(
        matches!(out, Err(Error::StreamNotFound { stream: ref s }) if *s == stream),
        "{out:?}"
    );
    let tables = stack
        .dynamodb_client()
        .list_tables()
        .send()
        .await
        .expect("ListTables");
    assert!(
        !tables.table_names().contains(&app),
        "no lease table created"
    );
}

/// A stream deleted while the worker runs: the next shard sync finds it gone (or a reader
/// sees its shard end, which wakes one), the worker shuts down gracefully (processors
/// told, leases released) and `run` returns `StreamNotFound`, instead of retrying its
/// reads for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_mid_run_stops_the_worker_with_a_typed_error() {
    let stack = stack().await;
    let stream = stack.create_stream("deleted-mid-run", 2).await.unwrap();
    let app = LocalStack::unique_name("deleted-app");
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w", &rec, FAILOVER);
    let run = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run().await }
    });
    put_records(&stack.kinesis_client(), &stream, &records(20, 4, 1, "d"), 1).await;
    wait_until("records processed", || rec.count() >= 20).await;
    stack.delete_stream(&stream).await.unwrap();
    let out = tokio::time::timeout(DEADLINE, run)
        .await
        .expect("run returns once the stream is gone")
        .expect("run did not panic");
    assert!(
        matches!(out, Err(Error::StreamNotFound { stream: ref s }) if *s == stream),
        "{out:?}"
    );
    // A graceful stop: the processor of each shard was told (the deletion ended its shard,
    // or the shutdown came first), the leases released.
    let told: std::collections::HashSet<String> = rec
        .events("shutdown_requested")
        .into_iter()
        .chain(rec.events("shard_ended"))
        .map(|(_, shard)| shard)
        .collect();
    assert_eq!(told.len(), 2, "both shards' processors told: {told:?}");
    let owners: Vec<_> = leases(&stack, &app)
        .await
        .into_values()
        .filter_map(|l| l.owner)
        .collect();
    assert!(owners.is_empty(), "leases released: {owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_the_lease_table_is_a_typed_error_without_a_busy_loop() {
    let stack = stack().await;
    let stream = stack.create_stream("denied", 1).await.unwrap();
    let proxy = FaultProxy::start(stack.dynamodb_endpoint())
        .await
        .expect("proxy");
    proxy.set_rules(vec![Rule::new(
        "DynamoDB_20120810.",
        Fault::error(400, "AccessDeniedException"),
    )]);
    let dynamodb = proxy.route_dynamodb(&stack.dynamodb_client());
    let rec = Recorder::default();
    let worker = scheduler_builder(
        &stack,
        &LocalStack::unique_name("denied"),
        &stream,
        "w",
        &rec,
        FAILOVER,
    )
    .with_clients(stack.kinesis_client(), dynamodb)
    .build()
    .expect("scheduler");
    let out = tokio::time::timeout(DEADLINE, worker.run())
        .await
        .expect("run returns");
    match out {
        Err(Error::DynamoDb {
            retryable: false,
            throttled: false,
            ref message,
            ..
        }) => {
            assert!(message.contains("AccessDeniedException"), "{message}")
        }
        other => panic!("want a non-retryable DynamoDb error, got {other:?}"),
    }
    // Refused once, not retried: the SDK's own attempts at most.
    let calls = proxy.calls();
    assert!((1..=3).contains(&calls), "{calls} DynamoDB calls");
    assert!(rec.seen().is_empty());
}
