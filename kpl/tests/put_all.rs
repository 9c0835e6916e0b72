//! `Producer::put_all` against a real Kinesis API (the embedded emulator by default, or any
//! endpoint in AWS_ENDPOINT_URL_KINESIS): batches delivered with each record's outcome in
//! input order and read back at the reported positions, a bad record refusing its whole
//! batch, a batch larger than the budget, waiting for budget, and shutdown with batches in
//! flight.

mod common;

use std::time::Duration;

use kinesis_producer::{
    FailureReason, Producer, ProducerRecord, PutAllError, RECORD_OVERHEAD_BYTES,
};

use common::{
    all_delivered, assert_read_back_exactly, batches_delivered, numbered_record, read_all, stack,
    stalled_client,
};

/// Record `i` of this file's numbered runs.
fn record(stream: &str, i: usize) -> ProducerRecord {
    numbered_record(stream, "batched", i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_delivered_and_each_outcome_is_its_own_records_position() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let a = stack.create_stream("kpl-batch-a", 4).await.unwrap();
    let b = stack.create_stream("kpl-batch-b", 2).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_rate_limit_percent(10_000)
        .build()
        .unwrap();
    // Batches of 500 to stream a, and one batch mixing both streams.
    let mut batches: Vec<Vec<ProducerRecord>> = (0..4)
        .map(|n| (n * 500..(n + 1) * 500).map(|i| record(&a, i)).collect())
        .collect();
    batches.push(
        (2000..2300)
            .map(|i| record(if i % 3 == 0 { &b } else { &a }, i))
            .collect(),
    );
    let mut handles = Vec::new();
    for batch in &batches {
        let h = producer.put_all(batch.clone()).await.expect("accepted");
        assert_eq!(h.len(), batch.len());
        handles.push(h);
    }
    let delivered = batches_delivered(batches, handles).await;
    let stats = producer.stats();
    producer.shutdown().await;
    assert_eq!(
        (stats.user_records_put, stats.user_records_delivered),
        (2300, 2300)
    );
    assert!(delivered.iter().any(|(_, d)| d.aggregated), "aggregated");
    for stream in [&a, &b] {
        let mine: Vec<_> = delivered
            .iter()
            .filter(|(r, d)| r.stream == **stream && *d.stream == **stream)
            .cloned()
            .collect();
        assert!(!mine.is_empty());
        assert_read_back_exactly(&client, stream, &mine).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_refuses_its_whole_batch_naming_its_index() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-batch-bad", 1).await.unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let good: Vec<_> = (0..10).map(|i| record(&stream, i)).collect();

    let mut batch = good.clone();
    batch[7].partition_key = String::new();
    let err = producer
        .put_all(batch.clone())
        .await
        .expect_err("empty key");
    assert!(
        matches!(err, PutAllError::InvalidRecord { index: 7, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("record 7 "), "{err}");
    assert_eq!(err.into_records(), batch, "every record back, in order");

    let mut batch = good.clone();
    batch[3].stream = "no spaces allowed".into();
    let err = producer.put_all(batch.clone()).await.expect_err("bad name");
    assert!(
        matches!(err, PutAllError::InvalidStreamName { index: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.records(), batch);

    let mut batch = good.clone();
    batch[9] = batch[9].clone().with_explicit_hash_key("not a number");
    let err = producer.put_all(batch).await.expect_err("bad hash key");
    assert!(matches!(err, PutAllError::InvalidRecord { index: 9, .. }));

    // Nothing of those batches was accepted; the producer goes on with a good one.
    assert_eq!(producer.stats().user_records_put, 0);
    let outcomes = producer.put_all(good.clone()).await.unwrap().await;
    let delivered = all_delivered(good, outcomes);
    producer.shutdown().await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_budget_is_refused_and_a_batch_waits_for_room() {
    let (client, _server) = stalled_client().await;
    let budget = 64 * 1024;
    let producer = Producer::builder(client)
        .with_request_timeout(Duration::from_millis(500))
        .with_max_outstanding_bytes(budget)
        .with_max_outstanding_records(100)
        .with_record_ttl(Duration::from_secs(2))
        .with_max_buffered_time(Duration::from_millis(10))
        .build()
        .unwrap();
    let rec = |i: usize| ProducerRecord::new("stalled", format!("{}", i % 10), vec![b'a'; 1000]);
    let per_record = 1000 + 1 + RECORD_OVERHEAD_BYTES;

    // Too many bytes for the whole budget: refused at once, every record handed back.
    let fits = budget / per_record;
    let too_big: Vec<_> = (0..fits + 1).map(rec).collect();
    let err = producer.put_all(too_big.clone()).await.expect_err("over");
    match &err {
        PutAllError::LargerThanBudget {
            needed_records,
            needed_bytes,
            byte_budget,
            ..
        } => assert_eq!(
            (*needed_records, *needed_bytes, *byte_budget),
            (fits + 1, (fits + 1) * per_record, budget)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.into_records(), too_big);
    // Too many records for the record budget, however small.
    let tiny: Vec<_> = (0..101)
        .map(|i| ProducerRecord::new("stalled", "k", format!("{i}")))
        .collect();
    assert!(matches!(
        producer.put_all(tiny).await,
        Err(PutAllError::LargerThanBudget {
            needed_records: 101,
            record_budget: 100,
            ..
        })
    ));

    // A batch that fits the budget but not what is left of it waits, whole.
    let first = producer
        .put_all((0..fits).map(rec))
        .await
        .expect("fits the budget");
    let second: Vec<_> = (0..2).map(rec).collect();
    let waiting = producer.put_all(second.clone());
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "put_all must wait for budget"
    );
    assert_eq!(producer.stats().user_records_put, fits as u64);
    // Dropping a waiting put_all accepts nothing.
    let dropped = producer.put_all(second.clone());
    assert!(tokio::time::timeout(Duration::from_millis(50), dropped)
        .await
        .is_err());
    // The stalled records expire, free their budget, and the waiting batch goes in.
    let late = waiting.await.expect("accepted once budget frees up");
    for outcome in first.await {
        let failed = outcome.expect_err("the endpoint never answers");
        assert!(matches!(failed.reason, FailureReason::Expired { .. }));
        assert!(failed.record.is_some() && !failed.attempts.is_empty());
    }
    let late = late.await;
    assert_eq!(late.len(), 2);
    assert!(late.iter().all(Result::is_err));
    assert_eq!(producer.stats().user_records_put, fits as u64 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_batches_in_flight_and_refuses_later_ones() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-batch-shutdown", 2).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_max_buffered_time(Duration::from_secs(60))
        .build()
        .unwrap();
    let batches: Vec<Vec<_>> = (0..3)
        .map(|n| {
            (n * 300..(n + 1) * 300)
                .map(|i| record(&stream, i))
                .collect()
        })
        .collect();
    let mut handles = Vec::new();
    for batch in &batches {
        handles.push(producer.put_all(batch.clone()).await.unwrap());
    }
    // Buffered for a minute, unless shutdown sends them: it does, and waits for them.
    producer.shutdown().await;
    let delivered = batches_delivered(batches, handles).await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
    let later: Vec<_> = (0..3).map(|i| record(&stream, i)).collect();
    match producer.put_all(later.clone()).await {
        Err(PutAllError::ShutDown { records }) => assert_eq!(records, later),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_all(&client, &stream).await.len(), 900, "nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_producer_fails_each_unsent_record_of_a_batch() {
    let (client, _server) = stalled_client().await;
    let producer = Producer::builder(client)
        .with_max_buffered_time(Duration::from_secs(60))
        .build()
        .unwrap();
    let batch: Vec<_> = (0..100)
        .map(|i| ProducerRecord::new("s", format!("{i}"), format!("{i}")))
        .collect();
    let handle = producer.put_all(batch.clone()).await.unwrap();
    let empty = producer.put_all(Vec::new()).await.unwrap();
    assert!(empty.await.is_empty());
    drop(producer);
    let outcomes = handle.await;
    assert_eq!(outcomes.len(), 100);
    for (record, outcome) in batch.into_iter().zip(outcomes) {
        let failed = outcome.expect_err("never sent");
        assert_eq!(failed.reason, FailureReason::ShutDown);
        assert_eq!(failed.record.map(|r| *r), Some(record), "its own record");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_waiting_for_budget_at_shutdown_are_delivered_or_handed_back_and_counted() {
    let stack = stack().await;
    let stream = stack
        .create_stream("kpl-batch-shutdown-race", 2)
        .await
        .unwrap();
    // Rounds of a race: batches wait for a tiny budget while the producer shuts down; a
    // batch that gets its budget as the last records settle must be put through, or
    // refused or failed with its records handed back, never dropped with the pipeline.
    for round in 0..10 {
        let producer = Producer::builder(stack.kinesis_client())
            .with_max_outstanding_records(6)
            .with_max_buffered_time(Duration::from_millis(1))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (p, s) = (producer.clone(), stream.clone());
            tasks.push(tokio::spawn(async move {
                // (delivered, failed, refused): refused or failed ones handed back.
                let mut counts = (0usize, 0usize, 0usize);
                let mut handles = Vec::new();
                for i in 0..100 {
                    let batch: Vec<_> = (0..3)
                        .map(|j| ProducerRecord::new(&s, format!("{t}-{i}-{j}"), "x"))
                        .collect();
                    match p.put_all(batch).await {
                        Ok(h) => handles.push(h),
                        Err(e) => counts.2 += e.records().len(),
                    }
                }
                for h in handles {
                    for outcome in h.await {
                        match outcome {
                            Ok(_) => counts.0 += 1,
                            Err(f) => {
                                assert!(
                                    !f.attempts.is_empty() || f.record.is_some(),
                                    "never sent, so handed back: {f}"
                                );
                                counts.1 += 1;
                            }
                        }
                    }
                }
                counts
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::time::timeout(Duration::from_secs(120), producer.shutdown())
            .await
            .expect("shutdown ends");
        let mut total = (0, 0, 0);
        for t in tasks {
            let (d, f, r) = tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("every batch resolves")
                .unwrap();
            total = (total.0 + d, total.1 + f, total.2 + r);
        }
        assert_eq!(total.0 + total.1 + total.2, 4 * 100 * 3, "round {round}");
        let stats = producer.stats();
        assert_eq!(
            (
                stats.user_records_delivered as usize,
                stats.user_records_failed as usize,
                stats.outstanding_records
            ),
            (total.0, total.1, 0),
            "round {round}: {stats:?}"
        );
    }
}
