//! The producer against a real Kinesis API (the embedded emulator by default, or any
//! endpoint in AWS_ENDPOINT_URL_KINESIS): delivery, exactly-once read-back with the
//! reported positions, throttling, resharding, ordering, bad input, the memory budget, and
//! how failures are told (a missing stream, an unreachable endpoint).

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kinesis_agg::HashKey;
use kinesis_emulators::LocalStack;
use kinesis_producer::{Delivered, FailureReason, Producer, ProducerRecord, PutError, PutHandle};

use common::{
    all_delivered, assert_concise, assert_read_back_exactly, by_position, list_shards, next_report,
    read_all, read_user_records_by, stalled_client, RangeRule,
};

async fn stack(enforce_limits: bool) -> LocalStack {
    LocalStack::builder()
        .with_enforce_limits(enforce_limits)
        .start_async()
        .await
        .expect("local stack")
}

fn record(stream: &str, i: usize, size: usize) -> ProducerRecord {
    let mut data = format!("record-{i}-").into_bytes();
    data.resize(size.max(data.len()), b'.');
    ProducerRecord::new(stream, format!("key-{}", i % 997), data)
}

/// Puts `n` records and awaits every outcome, asserting each is delivered.
async fn put_all(
    producer: &Producer,
    records: Vec<ProducerRecord>,
) -> Vec<(ProducerRecord, Delivered)> {
    let mut handles: Vec<(ProducerRecord, PutHandle)> = Vec::with_capacity(records.len());
    for r in records {
        let h = producer.put(r.clone()).await.expect("accepted");
        handles.push((r, h));
    }
    let (records, handles): (Vec<_>, Vec<_>) = handles.into_iter().unzip();
    let outcomes = join_all(handles).await;
    records
        .into_iter()
        .zip(outcomes)
        .map(|(r, o)| (r, o.unwrap_or_else(|f| panic!("not delivered: {f}"))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_aggregated_and_not_are_each_read_back_once() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    for aggregation in [true, false] {
        let stream = stack.create_stream("kpl-bulk", 8).await.unwrap();
        let producer = Producer::builder(client.clone())
            .with_aggregation(aggregation)
            .with_rate_limit_percent(10_000)
            .build()
            .unwrap();
        let records: Vec<_> = (0..100_000).map(|i| record(&stream, i, 40)).collect();
        let delivered = put_all(&producer, records).await;
        let stats = producer.stats();
        producer.shutdown().await;
        assert_eq!(stats.user_records_delivered, 100_000);
        assert_eq!(stats.user_records_failed, 0);
        let shards: HashSet<_> = delivered.iter().map(|(_, d)| d.shard_id.clone()).collect();
        assert_eq!(shards.len(), 8, "spread over all shards");
        if aggregation {
            assert!(delivered.iter().any(|(_, d)| d.sub_sequence_number > 0));
            assert!(
                stats.kinesis_records_sent < 100_000 / 20,
                "aggregation packs: {stats:?}"
            );
        } else {
            assert!(delivered
                .iter()
                .all(|(_, d)| d.sub_sequence_number == 0 && !d.aggregated));
            assert_eq!(stats.kinesis_records_sent, 100_000 + stats.retries);
        }
        assert_read_back_exactly(&client, &stream, &delivered).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_shard_delivers_everything_through_retries() {
    let stack = stack(true).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-throttle", 1).await.unwrap();
    // 20x the shard's limits: the producer's own limiter lets bursts through, the
    // emulator throttles, the retries deliver.
    let producer = Producer::builder(client.clone())
        .with_aggregation(false)
        .with_rate_limit_percent(2_000)
        .with_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .build()
        .unwrap();
    let records: Vec<_> = (0..4_000).map(|i| record(&stream, i, 100)).collect();
    let delivered = put_all(&producer, records).await;
    let stats = producer.stats();
    producer.shutdown().await;
    assert_eq!(stats.user_records_delivered, 4_000);
    if stack.write_limits_enforced() == Some(true) {
        assert!(stats.throttles > 0, "expected throttling: {stats:?}");
        assert!(stats.retries > 0, "{stats:?}");
        assert!(delivered.iter().any(|(_, d)| d.attempts > 1));
    }
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_while_producing_lose_nothing() {
    split_and_merge_on(stack(false).await, 30_000, 500).await;
}

/// The same on kinesis-local (the fidelity tier: AWS-exact lineage, ChildShards and
/// ListShards paging), with few records: it takes about 650 records/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_while_producing_lose_nothing_on_the_fidelity_tier() {
    let stack = LocalStack::builder()
        .with_backend(kinesis_emulators::Backend::Fidelity)
        .start_async()
        .await
        .expect("fidelity stack");
    split_and_merge_on(stack, 1_500, 100).await;
}

/// Produces `n` records while splitting one shard and merging two others.
async fn split_and_merge_on(stack: LocalStack, n: usize, pause_every: usize) {
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-reshard", 4).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_rate_limit_percent(10_000)
        .with_max_buffered_time(Duration::from_millis(20))
        .build()
        .unwrap();

    let shards = list_shards(&client, &stream).await;
    let mut ids: Vec<_> = shards.iter().map(|s| s.shard_id().to_owned()).collect();
    ids.sort();
    // A third of the records before the split, a third after it and the rest after the
    // merge, each phase paced so that records are in flight while the shards change:
    // however fast the endpoint, records are predicted with a stale map and land in
    // shards the producer does not know yet.
    let (split_done, split_rx) = tokio::sync::oneshot::channel::<()>();
    let (merge_done, merge_rx) = tokio::sync::oneshot::channel::<()>();
    let producing = {
        let producer = producer.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            let mut handles = Vec::new();
            let mut gates = vec![merge_rx, split_rx];
            for i in 0..n {
                if i > 0 && i % n.div_ceil(3) == 0 {
                    gates.pop().unwrap().await.unwrap();
                }
                let r = record(&stream, i, 60);
                handles.push((r.clone(), producer.put(r).await.unwrap()));
                if i % pause_every == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            handles
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Split shard 0 at its midpoint.
    let s0 = shards.iter().find(|s| s.shard_id() == ids[0]).unwrap();
    let r = s0.hash_key_range().unwrap();
    let (a, b) = (
        HashKey::parse_decimal(r.starting_hash_key()).unwrap().0,
        HashKey::parse_decimal(r.ending_hash_key()).unwrap().0,
    );
    client
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&ids[0])
        .new_starting_hash_key((a + (b - a) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&client, &stream).await;
    split_done.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Merge shards 2 and 3 (adjacent: equal ranges from CreateStream).
    client
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(&ids[2])
        .adjacent_shard_to_merge(&ids[3])
        .send()
        .await
        .expect("MergeShards");
    wait_active(&client, &stream).await;
    merge_done.send(()).unwrap();

    let handles = producing.await.unwrap();
    let (records, handles): (Vec<_>, Vec<_>) = handles.into_iter().unzip();
    let outcomes = join_all(handles).await;
    let stats = producer.stats();
    producer.shutdown().await;
    let delivered: Vec<_> = records
        .into_iter()
        .zip(outcomes)
        .map(|(r, o)| (r, o.unwrap_or_else(|f| panic!("not delivered: {f}"))))
        .collect();
    assert!(stats.shard_map_loads >= 2, "shard map followed: {stats:?}");

    // Every record ends in the shard that owns its hash key.
    let all = list_shards(&client, &stream).await;
    assert_eq!(all.len(), 7, "4 + 2 children - 0, + 1 merged");
    let ranges: HashMap<String, kinesis_agg::HashKeyRange> = all
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                s.shard_id().to_owned(),
                kinesis_agg::HashKeyRange::parse(r.starting_hash_key(), r.ending_hash_key())
                    .unwrap(),
            )
        })
        .collect();
    for (r, d) in &delivered {
        let h = HashKey::from_partition_key(&r.partition_key);
        assert!(
            ranges[&*d.shard_id].contains(h),
            "{} in {}",
            r.partition_key,
            d.shard_id
        );
    }
    let used: HashSet<_> = delivered
        .iter()
        .map(|(_, d)| d.shard_id.to_string())
        .collect();
    assert!(used.len() > 4, "children received records: {used:?}");
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

/// Issue 11, fault 1: after a split, aggregates packed by the old shard map land in a
/// child that owns only some of their records. A reader that follows the Java KCL
/// discards such an aggregate whole; the producer must re-send every record of it, not
/// only those outside the child, or that reader loses the others. Our own reader must
/// still see each record once (the aggregate is sent under the key that tells it to
/// drop such an aggregate whole too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_split_every_delivered_record_is_visible_once_to_a_java_kcl_reader() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-java-rule", 1).await.unwrap();
    // Defaults: 100 ms linger, the shard map reloaded every 60 s or when a record lands
    // in a shard it does not predict.
    let producer = Producer::builder(client.clone()).build().unwrap();
    let parent = list_shards(&client, &stream).await[0].shard_id().to_owned();
    let n = 6_000;
    let put_range = |from: usize, to: usize| {
        let producer = producer.clone();
        let stream = stream.clone();
        async move {
            let mut handles = Vec::new();
            for i in from..to {
                // A key per record: every aggregate holds keys of both future children.
                let r = ProducerRecord::new(&stream, format!("line-{i}"), format!("{i:06}"));
                handles.push((r.clone(), producer.put(r).await.unwrap()));
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            handles
        }
    };
    let mut handles = put_range(0, n / 2).await;
    // The split lands while the first half is still lingering or in flight, and the
    // second half is packed by the one-shard map the producer still holds.
    integration_tests::kinesis::split_in_half(&client, &stream, &parent).await;
    handles.extend(put_range(n / 2, n).await);
    let (records, handles): (Vec<_>, Vec<_>) = handles.into_iter().unzip();
    let outcomes = join_all(handles).await;
    let stats = producer.stats();
    producer.shutdown().await;
    let delivered: Vec<(ProducerRecord, Delivered)> = records
        .into_iter()
        .zip(outcomes)
        .map(|(r, o)| (r, o.unwrap_or_else(|f| panic!("not delivered: {f}"))))
        .collect();
    assert!(
        stats.wrong_shard_resends > 0,
        "the case under test happened: an aggregate landed in a child not owning all of it: {stats:?}"
    );
    let children: HashSet<_> = delivered.iter().map(|(_, d)| d.shard_id.clone()).collect();
    assert!(
        children.len() >= 2,
        "records went to the children: {children:?}"
    );

    // The Java KCL's rule: every delivered record is there, at its reported position, once.
    let java = read_user_records_by(&client, &stream, RangeRule::JavaKcl).await;
    let seen = by_position(&java);
    let mut missing = Vec::new();
    for (r, d) in &delivered {
        let key = (
            d.shard_id.to_string(),
            d.sequence_number.to_string(),
            d.sub_sequence_number,
        );
        match seen.get(&key) {
            Some(got) => assert_eq!((&got.partition_key, &got.data), (&r.partition_key, &r.data)),
            None => missing.push(r.partition_key.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} delivered records invisible to a Java KCL reader, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(java.len(), n, "nothing else, nothing twice");
    // Our reader (kinesis-agg's default filter): the same, with no duplicate.
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

async fn wait_active(client: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..600 {
        let d = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        let status = d.stream_description_summary().unwrap().stream_status();
        if status == &aws_sdk_kinesis::types::StreamStatus::Active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {stream} did not become ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_mode_keeps_per_key_order_under_throttling() {
    let stack = stack(true).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-ordered", 2).await.unwrap();
    // A noisy neighbour keeps every shard over its byte limit (each burst alone is over
    // 1 MiB/s), so the producer is throttled however fast or slow this machine answers.
    let shard_starts: Vec<String> = list_shards(&client, &stream)
        .await
        .iter()
        .map(|s| s.hash_key_range().unwrap().starting_hash_key().to_owned())
        .collect();
    // How many of the neighbour's records were throttled: the producer starts once the
    // neighbour is being throttled itself, so a slow start of its task (a loaded machine)
    // cannot leave the producer's run unthrottled.
    let noise_throttled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let noise = {
        let client = client.clone();
        let stream = stream.clone();
        let noise_throttled = noise_throttled.clone();
        tokio::spawn(async move {
            loop {
                for start in &shard_starts {
                    let entries = (0..3)
                        .map(|i| {
                            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                                .partition_key(format!("noise-{i}"))
                                .explicit_hash_key(start)
                                .data(aws_sdk_kinesis::primitives::Blob::new(vec![0u8; 400_000]))
                                .build()
                                .unwrap()
                        })
                        .collect();
                    if let Ok(out) = client
                        .put_records()
                        .stream_name(&stream)
                        .set_records(Some(entries))
                        .send()
                        .await
                    {
                        let failed = out.failed_record_count().unwrap_or(0);
                        noise_throttled
                            .fetch_add(failed as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut throttles = 0;
    for aggregation in [false, true] {
        if stack.write_limits_enforced() == Some(true) {
            let since = noise_throttled.load(std::sync::atomic::Ordering::Relaxed);
            let waited = std::time::Instant::now();
            while noise_throttled.load(std::sync::atomic::Ordering::Relaxed) == since {
                assert!(
                    waited.elapsed() < Duration::from_secs(60),
                    "the neighbour is never throttled"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let producer = Producer::builder(client.clone())
            .with_per_key_ordering(true)
            .with_aggregation(aggregation)
            .with_rate_limit_percent(3_000)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
            .build()
            .unwrap();
        let records: Vec<_> = (0..200)
            .map(|i| {
                let key = format!("k{}", i % 20);
                ProducerRecord::new(
                    &stream,
                    key,
                    format!("{aggregation}:{i:06}:{}", "x".repeat(5_000)),
                )
            })
            .collect();
        let delivered = put_all(&producer, records).await;
        throttles += producer.stats().throttles;
        producer.shutdown().await;
        assert_eq!(delivered.len(), 200);
    }
    noise.abort();
    if stack.write_limits_enforced() == Some(true) {
        assert!(throttles > 0, "the test must run under throttling");
    }
    // Read back: per key, the put order (the counter in the data) must be increasing.
    let read = read_all(&client, &stream).await;
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    let mut ours = 0;
    for r in read
        .iter()
        .filter(|r| !r.partition_key.starts_with("noise-"))
    {
        ours += 1;
        let text = String::from_utf8(r.data.to_vec()).unwrap();
        let mut parts = text.split(':');
        let mode = parts.next().unwrap().to_owned();
        let i: u64 = parts.next().unwrap().parse().unwrap();
        let key = (mode, r.partition_key.clone());
        if let Some(prev) = last.insert(key.clone(), i) {
            assert!(prev < i, "key {key:?}: {i} after {prev}");
        }
    }
    assert_eq!(ours, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_the_producer_keeps_working() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-bad", 1).await.unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let cases = vec![
        ProducerRecord::new(&stream, "", "x"),
        ProducerRecord::new(&stream, "k".repeat(257), "x"),
        ProducerRecord::new(&stream, "k", vec![0u8; 1024 * 1024]),
        ProducerRecord::new(&stream, "k", "x").with_explicit_hash_key("-1"),
        ProducerRecord::new(&stream, "k", "x")
            .with_explicit_hash_key("340282366920938463463374607431768211456"),
        ProducerRecord::new(&stream, "k", "x").with_explicit_hash_key("12a"),
    ];
    for bad in cases {
        let err = producer
            .put(bad.clone())
            .await
            .expect_err("must be refused");
        assert!(matches!(err, PutError::InvalidRecord { .. }), "{err}");
        assert!(!err.is_retryable());
        assert!(!err.to_string().is_empty());
        assert_eq!(err.into_record(), bad, "handed back intact");
        let err = producer.try_put(bad.clone()).expect_err("must be refused");
        assert!(matches!(err, PutError::InvalidRecord { .. }));
    }
    // A stream name Kinesis would refuse is refused here, naming the stream.
    for name in ["", "has space", "ünïcode", &"s".repeat(129)] {
        let bad = ProducerRecord::new(name, "k", "x");
        let err = producer
            .put(bad.clone())
            .await
            .expect_err("bad stream name");
        assert!(
            matches!(&err, PutError::InvalidStreamName { stream, .. } if stream == name),
            "{err}"
        );
        assert!(err.to_string().contains("invalid stream name"), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(err.into_record(), bad, "handed back intact");
        let err = producer.try_put(bad.clone()).expect_err("bad stream name");
        assert!(matches!(err, PutError::InvalidStreamName { .. }));
    }
    // Unicode keys up to 256 characters and an explicit hash key are fine.
    let good = vec![
        // (Kinesis counts characters; some emulators count bytes: stay below both.)
        ProducerRecord::new(&stream, "ü€𝄞".repeat(20), "unicode"),
        ProducerRecord::new(&stream, "k", "ehk").with_explicit_hash_key("0"),
        ProducerRecord::new(&stream, "k", Bytes::new()),
    ];
    let delivered = put_all(&producer, good).await;
    assert_eq!(delivered.len(), 3);
    // A stream that does not exist fails with a reason, it does not hang.
    let missing = format!("{stream}-missing");
    let h = producer
        .put(ProducerRecord::new(&missing, "k", "x"))
        .await
        .unwrap();
    let failed = h.await.expect_err("no such stream");
    assert!(
        matches!(failed.reason, FailureReason::Rejected { .. }),
        "{failed}"
    );
    assert_eq!(failed.record.unwrap().data, Bytes::from("x"));
    producer.shutdown().await;
    let after = producer
        .put(ProducerRecord::new(&stream, "k", "late"))
        .await;
    assert!(matches!(after, Err(PutError::ShutDown { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_server_refuses_does_not_sink_its_batch() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-isolate", 1).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_aggregation(false)
        .with_max_buffered_time(Duration::from_millis(200))
        .build()
        .unwrap();
    // 200 characters but 400 bytes: valid for Kinesis (which counts characters), refused
    // by servers that count bytes. Either way, the records beside it must be delivered.
    let doubtful = ProducerRecord::new(&stream, "ü".repeat(200), "doubtful");
    let mut handles = Vec::new();
    for i in 0..100 {
        if i == 50 {
            handles.push((true, producer.put(doubtful.clone()).await.unwrap()));
        }
        let r = ProducerRecord::new(&stream, format!("k{i}"), format!("{i}"));
        handles.push((false, producer.put(r).await.unwrap()));
    }
    for (is_doubtful, h) in handles {
        match h.await {
            Ok(_) => {}
            Err(f) if is_doubtful => {
                assert!(
                    matches!(&f.reason, FailureReason::Rejected { code, .. } if code == "ValidationException"),
                    "{f}"
                );
            }
            Err(f) => panic!("a valid record failed: {f}"),
        }
    }
    producer.shutdown().await;
}

/// Issue 11, fault 2: a valid key of 256 three-byte characters (768 bytes) that the
/// embedded emulator refuses (it counts bytes) used to sink the aggregate it was first
/// in, since aggregates were sent under their first record's key. Now aggregates go out
/// under a fixed key: packed with others it is delivered with them; alone, it is sent
/// under its own key and only it can fail, with a clear reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_multibyte_key_sinks_no_neighbour_and_fails_alone_with_a_reason() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-long-key", 1).await.unwrap();
    let long_key = "€".repeat(256);
    assert_eq!(long_key.len(), 768);
    let producer = Producer::builder(client.clone())
        .with_max_buffered_time(Duration::from_millis(200))
        .build()
        .unwrap();
    // First in the aggregate, then 20 valid neighbours.
    let mut records = vec![ProducerRecord::new(&stream, long_key.clone(), "long")];
    records.extend((0..20).map(|i| ProducerRecord::new(&stream, format!("n{i}"), format!("{i}"))));
    let mut handles = Vec::new();
    for r in &records {
        handles.push(
            producer
                .put(r.clone())
                .await
                .expect("accepted: 256 characters"),
        );
    }
    let outcomes = join_all(handles).await;
    let delivered: Vec<_> = records
        .into_iter()
        .zip(outcomes)
        .map(|(r, o)| (r, o.unwrap_or_else(|f| panic!("not delivered: {f}"))))
        .collect();
    assert!(delivered.iter().all(|(_, d)| d.aggregated), "one aggregate");
    assert_read_back_exactly(&client, &stream, &delivered).await;

    // Alone it is a plain record under its own key: the server decides, for it only.
    let alone = producer
        .put(ProducerRecord::new(&stream, long_key.clone(), "alone"))
        .await
        .unwrap();
    producer.flush().await;
    match alone.await {
        Ok(d) => assert!(!d.aggregated),
        Err(f) => {
            assert!(
                matches!(&f.reason, FailureReason::Rejected { code, .. } if code == "ValidationException"),
                "{f}"
            );
            assert_eq!(
                f.record.as_ref().unwrap().partition_key,
                long_key,
                "handed back"
            );
        }
    }
    // One character more is refused by put itself, with the record handed back.
    match producer
        .put(ProducerRecord::new(&stream, "€".repeat(257), "x"))
        .await
    {
        Err(PutError::InvalidRecord { record, .. }) => assert_eq!(record.data, "x"),
        other => panic!("{other:?}"),
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_sends_at_once_and_returns_when_everything_before_it_is_settled() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-flush", 2).await.unwrap();
    let producer = Producer::builder(client)
        .with_max_buffered_time(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..1_000 {
        handles.push(producer.put(record(&stream, i, 50)).await.unwrap());
    }
    // Without the flush these would linger for an hour.
    tokio::time::timeout(Duration::from_secs(60), producer.flush())
        .await
        .expect("flush returns");
    assert_eq!(producer.stats().user_records_delivered, 1_000);
    for h in handles {
        use futures::FutureExt;
        // Unconstrained: tokio's co-operative budget would otherwise report Pending after
        // a hundred or so ready polls in one go.
        let outcome = tokio::task::unconstrained(h)
            .now_or_never()
            .expect("settled before flush returned");
        assert!(outcome.is_ok());
    }
    producer.shutdown().await;
}

/// A short run (put, then flush at once) on a fresh producer: the flush waits, within the
/// linger, for the stream's first shard map, so the records go out aggregated instead of
/// one Kinesis record each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_before_the_first_shard_map_waits_for_it_and_aggregates() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-first-map", 2).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_max_buffered_time(Duration::from_secs(30))
        .build()
        .unwrap();
    let records: Vec<_> = (0..200).map(|i| record(&stream, i, 50)).collect();
    let batch = producer.put_all(records.clone()).await.unwrap();
    producer.flush().await;
    let delivered = all_delivered(records, batch.await);
    assert!(
        delivered.iter().all(|(_, d)| d.aggregated),
        "every record in an aggregate"
    );
    let stats = producer.stats();
    assert!(
        stats.kinesis_records_sent <= 2,
        "one aggregate per shard, not one record each: {stats:?}"
    );
    producer.shutdown().await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

/// A Kinesis client (no timeouts of its own) for an endpoint that accepts connections and
/// never answers; the endpoint lives as long as the returned task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_makes_put_wait_and_try_put_hand_back() {
    let (client, _server) = stalled_client().await;
    let budget = 64 * 1024;
    // The client has no timeout: the producer's own request timeout must free the records.
    let producer = Producer::builder(client)
        .with_request_timeout(Duration::from_millis(500))
        .with_max_outstanding_bytes(budget)
        .with_record_ttl(Duration::from_secs(2))
        .with_max_buffered_time(Duration::from_millis(10))
        .build()
        .unwrap();
    let size = 1000;
    let per_record = size + 1 + kinesis_producer::RECORD_OVERHEAD_BYTES;
    let fits = budget / per_record;
    let mut handles = Vec::new();
    for i in 0..fits {
        let r = ProducerRecord::new("stalled", format!("{}", i % 10), vec![b'a'; size]);
        handles.push(producer.try_put(r).expect("within budget"));
    }
    let over = ProducerRecord::new("stalled", "x", vec![b'b'; size]);
    let err = producer.try_put(over.clone()).expect_err("budget is spent");
    assert!(err.is_retryable());
    assert_eq!(err.into_record(), over);
    // put waits while the budget is spent...
    let waiting = producer.put(over.clone());
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "put must wait for budget"
    );
    assert_eq!(producer.stats().outstanding_records, fits as u64);
    // ...and goes through once the stalled records expire and free their budget.
    let late = waiting.await.expect("accepted after budget frees up");
    for h in handles {
        let failed = h.await.expect_err("endpoint never answers");
        assert!(
            matches!(failed.reason, FailureReason::Expired { .. }),
            "{failed}"
        );
        assert!(!failed.attempts.is_empty());
        assert!(failed.record.is_some());
    }
    assert!(late.await.is_err());
    // A record larger than the whole budget is refused, not waited for forever.
    let huge = ProducerRecord::new("stalled", "x", vec![0u8; budget]);
    assert!(matches!(
        producer.put(huge).await,
        Err(PutError::LargerThanBudget { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_producer_fails_unsent_records_instead_of_losing_them() {
    let (client, _server) = stalled_client().await;
    let producer = Producer::builder(client)
        .with_max_buffered_time(Duration::from_secs(60))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..100)
        .map(|i| {
            producer
                .try_put(ProducerRecord::new("s", format!("{i}"), "x"))
                .unwrap()
        })
        .collect();
    drop(producer);
    for h in handles {
        let failed = h.await.expect_err("never sent");
        assert_eq!(failed.reason, FailureReason::ShutDown);
        assert!(failed.record.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_and_several_streams_round_trip() {
    let stack = stack(false).await;
    let client = stack.kinesis_client();
    let a = stack.create_stream("kpl-multi-a", 2).await.unwrap();
    let b = stack.create_stream("kpl-multi-b", 3).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_compression(Some(6))
        .build()
        .unwrap();
    let records: Vec<_> = (0..2_000)
        .map(|i| {
            let s = if i % 2 == 0 { &a } else { &b };
            ProducerRecord::new(
                s,
                format!("k{}", i % 50),
                format!("{i} {}", "compressible ".repeat(20)),
            )
        })
        .collect();
    let delivered = put_all(&producer, records).await;
    let stats = producer.stats();
    producer.shutdown().await;
    assert!(
        stats.bytes_sent * 3 < stats.payload_bytes_delivered,
        "compressed: {stats:?}"
    );
    for stream in [&a, &b] {
        let mine: Vec<_> = delivered
            .iter()
            .filter(|(r, _)| &r.stream == stream)
            .cloned()
            .collect();
        assert_eq!(mine.len(), 1_000);
        assert!(mine.iter().all(|(_, d)| &*d.stream == stream.as_str()));
        assert_read_back_exactly(&client, stream, &mine).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_fails_every_record_at_once_with_a_short_stream_level_reason() {
    let stack = stack(false).await;
    let producer = Producer::builder(stack.kinesis_client())
        .with_record_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut failures = producer.failures();
    let missing = LocalStack::unique_name("kpl-missing");
    let mut handles = Vec::new();
    for i in 0..1_000 {
        handles.push(producer.put(record(&missing, i, 50)).await.unwrap());
    }
    // Well before the 60 s TTL: the stream's rejection fails what is queued at once.
    let outcomes = tokio::time::timeout(Duration::from_secs(20), join_all(handles))
        .await
        .expect("every record failed long before its TTL");
    for outcome in outcomes {
        let failed = outcome.expect_err("no such stream");
        let FailureReason::Rejected { code, message } = &failed.reason else {
            panic!("not a rejection: {failed}");
        };
        assert_eq!(code, "ResourceNotFoundException", "{failed}");
        assert!(failed.reason.is_stream_level());
        assert!(!failed.reason.is_retryable());
        assert_concise(&failed, message);
        assert!(failed.record.is_some());
    }
    let stats = producer.stats();
    assert_eq!(stats.user_records_failed, 1_000);
    assert!(
        stats.put_records_calls < 100,
        "records were not each sent to be refused: {stats:?}"
    );
    let report = next_report(&mut failures, Duration::from_secs(10), |r| {
        r.code == "ResourceNotFoundException"
    })
    .await;
    assert!(!report.retryable && !report.throttled, "{report:?}");
    assert_eq!(&*report.stream, missing.as_str());
    assert!(["PutRecords", "ListShards"].contains(&report.operation));
    assert!(report.message.len() < 300, "{report:?}");
    producer.shutdown().await;
    // The reports end with the producer's background task.
    use tokio::sync::broadcast::error::RecvError;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(failures.recv().await, Err(RecvError::Closed)) {}
    })
    .await
    .expect("the report channel closes after shutdown");
    assert!(matches!(
        producer.failures().recv().await,
        Err(RecvError::Closed)
    ));
}

/// A Kinesis client with static credentials for `endpoint`, without the SDK's own
/// retries: the producer retries by itself, and the SDK's retries (three attempts with
/// backoff in its standard mode) would only delay each failure's report.
fn client_without_sdk_retries(endpoint: &str) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_reported_at_once_and_named_by_each_failure() {
    // A loopback port nothing listens on: connections are refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_without_sdk_retries(&format!("http://127.0.0.1:{port}"));
    let producer = Producer::builder(client)
        .with_record_ttl(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut failures = producer.failures();
    let handles: Vec<_> = (0..100)
        .map(|i| producer.try_put(record("unreachable", i, 20)).unwrap())
        .collect();
    let report = next_report(&mut failures, Duration::from_secs(30), |r| {
        r.operation == "PutRecords"
    })
    .await;
    // Records here can only fail by expiry: none has, so the report came before the TTL.
    assert_eq!(producer.stats().user_records_failed, 0, "{report:?}");
    assert_eq!(report.code, "DispatchFailure", "{report:?}");
    assert!(report.retryable && !report.throttled, "{report:?}");
    assert!(report.records > 0, "{report:?}");
    assert!(
        report.message.to_lowercase().contains("connection refused"),
        "{report:?}"
    );
    let outcomes = tokio::time::timeout(Duration::from_secs(60), join_all(handles))
        .await
        .expect("every record settles at its TTL");
    for outcome in outcomes {
        let failed = outcome.expect_err("nothing listens");
        assert!(
            matches!(failed.reason, FailureReason::Expired { .. }),
            "{failed}"
        );
        let last = failed.last_attempt().expect("sent at least once");
        assert_eq!(last.code, "DispatchFailure", "{failed}");
        assert_concise(&failed, &last.message);
        let text = failed.to_string();
        assert!(
            text.to_lowercase().contains("connection refused"),
            "the display names the last error: {text}"
        );
    }
    producer.shutdown().await;
}
