//! `Producer::sink`: a `futures::Sink` of records batched into `put_all`, with every
//! record's outcome on the outcomes stream, against a real Kinesis API (the embedded
//! emulator): records streamed in come out as outcomes in order and are read back at their
//! positions; flush means every record sent so far has its outcome; a bad record is
//! refused with the record; a batch refused by a shut-down producer hands its records back;
//! a dropped sink still puts what it held; unread outcomes hold the sink back.

mod common;

use std::pin::Pin;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use kinesis_producer::{
    Outcome, Producer, ProducerRecord, PutAllError, PutError, SinkError, DEFAULT_SINK_BATCH_BYTES,
    DEFAULT_SINK_BATCH_RECORDS, DEFAULT_SINK_OUTCOME_CAPACITY,
};

use common::{
    all_delivered, assert_read_back_exactly, numbered_record, read_all, stack, stalled_client,
};

/// Record `i` of this file's numbered runs.
fn record(stream: &str, i: usize) -> ProducerRecord {
    numbered_record(stream, "sunk", i)
}

/// The outcomes already waiting on the stream, without waiting for more.
fn ready_now(outcomes: &mut kinesis_producer::SinkOutcomes) -> Vec<Outcome> {
    let mut got = Vec::new();
    while let Some(Some(o)) = outcomes.next().now_or_never() {
        got.push(o);
    }
    got
}

/// Whether `poll_ready` says ready now.
fn ready(sink: &mut kinesis_producer::RecordSink) -> Option<Result<(), SinkError>> {
    futures::future::poll_fn(|cx| {
        futures::Sink::<ProducerRecord>::poll_ready(Pin::new(&mut *sink), cx)
    })
    .now_or_never()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_records_comes_out_as_outcomes_in_order_and_is_read_back() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-sink", 3).await.unwrap();
    let producer = Producer::builder(client.clone())
        .with_rate_limit_percent(10_000)
        .build()
        .unwrap();
    let (mut sink, outcomes) = producer
        .sink_builder()
        .with_batch_records(100)
        .build()
        .unwrap();
    let records: Vec<_> = (0..1_050).map(|i| record(&stream, i)).collect();
    let reader = tokio::spawn(outcomes.collect::<Vec<Outcome>>());
    let mut input = futures::stream::iter(records.clone()).map(Ok);
    sink.send_all(&mut input).await.expect("every record taken");
    sink.close().await.expect("closed");
    // The stream ends once the sink is closed and every outcome is out.
    let outcomes = reader.await.unwrap();
    let delivered = all_delivered(records, outcomes);
    assert!(delivered.iter().any(|(_, d)| d.aggregated), "aggregated");
    let stats = producer.stats();
    assert_eq!(
        (stats.user_records_put, stats.user_records_delivered),
        (1_050, 1_050)
    );
    producer.shutdown().await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
    // A closed sink takes nothing more.
    assert!(matches!(
        sink.send(record(&stream, 0)).await,
        Err(SinkError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_resolves_when_every_record_sent_so_far_has_its_outcome() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-sink-flush", 2).await.unwrap();
    // Records would linger a minute: only the flush sends them.
    let producer = Producer::builder(client.clone())
        .with_max_buffered_time(Duration::from_secs(60))
        .build()
        .unwrap();
    let (mut sink, mut outcomes) = producer
        .sink_builder()
        .with_batch_records(100)
        .build()
        .unwrap();
    // 250 records: two full batches handed to put_all, 50 still buffered in the sink.
    let first: Vec<_> = (0..250).map(|i| record(&stream, i)).collect();
    for r in &first {
        sink.feed(r.clone()).await.unwrap();
    }
    assert!(ready_now(&mut outcomes).is_empty(), "lingering, unsettled");
    sink.flush().await.expect("flushed");
    // Every outcome is there now, without waiting.
    let got = ready_now(&mut outcomes);
    let mut delivered = all_delivered(first, got);
    // A second round after the first flush.
    let second: Vec<_> = (250..260).map(|i| record(&stream, i)).collect();
    for r in &second {
        sink.feed(r.clone()).await.unwrap();
    }
    sink.flush().await.unwrap();
    delivered.extend(all_delivered(second, ready_now(&mut outcomes)));
    // Flushing with nothing new resolves at once.
    assert!(sink.flush().now_or_never().is_some());
    producer.shutdown().await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_is_refused_with_the_record_and_the_sink_goes_on() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-sink-bad", 1).await.unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let (mut sink, mut outcomes) = producer.sink();
    let mut bad = record(&stream, 1);
    bad.partition_key = String::new();
    match sink.send(bad.clone()).await {
        Err(SinkError::Record(e @ PutError::InvalidRecord { .. })) => {
            assert_eq!(e.into_record(), bad)
        }
        other => panic!("{other:?}"),
    }
    let mut named = record(&stream, 2);
    named.stream = "no spaces".into();
    assert!(matches!(
        sink.send(named).await,
        Err(SinkError::Record(PutError::InvalidStreamName { .. }))
    ));
    // Nothing of those was accepted; the next record goes through.
    let good = record(&stream, 3);
    sink.send(good.clone()).await.unwrap();
    let got = ready_now(&mut outcomes);
    let delivered = all_delivered(vec![good], got);
    assert_eq!(producer.stats().user_records_put, 1);
    producer.shutdown().await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_shut_down_producer_refuses_hands_its_records_back() {
    let (client, _server) = stalled_client().await;
    let producer = Producer::builder(client).build().unwrap();
    let (mut sink, outcomes) = producer
        .sink_builder()
        .with_batch_records(10)
        .build()
        .unwrap();
    let buffered: Vec<_> = (0..5).map(|i| record("s", i)).collect();
    for r in &buffered {
        sink.feed(r.clone()).await.unwrap();
    }
    producer.shutdown().await;
    match sink.flush().await {
        Err(SinkError::Batch(PutAllError::ShutDown { records })) => assert_eq!(records, buffered),
        other => panic!("{other:?}"),
    }
    // A record sent now is refused at once, itself handed back.
    match sink.send(record("s", 9)).await {
        Err(SinkError::Record(e @ PutError::ShutDown { .. })) => {
            assert_eq!(e.into_record(), record("s", 9))
        }
        other => panic!("{other:?}"),
    }
    // Nothing was accepted: no outcome, and the stream ends with the sink.
    drop(sink);
    assert!(outcomes.collect::<Vec<_>>().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_dropped_unclosed_still_puts_what_it_held() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-sink-drop", 1).await.unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let (mut sink, outcomes) = producer
        .sink_builder()
        .with_batch_records(100)
        .build()
        .unwrap();
    let records: Vec<_> = (0..130).map(|i| record(&stream, i)).collect();
    for r in &records {
        sink.feed(r.clone()).await.unwrap();
    }
    // 100 in a batch handed to put_all, 30 still buffered: neither is lost.
    drop(sink);
    let got: Vec<Outcome> = tokio::time::timeout(Duration::from_secs(30), outcomes.collect())
        .await
        .expect("every outcome");
    let delivered = all_delivered(records, got);
    producer.shutdown().await;
    assert_read_back_exactly(&client, &stream, &delivered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_outcomes_hold_the_sink_back_until_read_or_dropped() {
    let stack = stack().await;
    let client = stack.kinesis_client();
    let stream = stack.create_stream("kpl-sink-capacity", 1).await.unwrap();
    let producer = Producer::builder(client.clone()).build().unwrap();
    let (mut sink, mut outcomes) = producer
        .sink_builder()
        .with_batch_records(4)
        .with_outcome_capacity(6)
        .build()
        .unwrap();
    for i in 0..8 {
        sink.feed(record(&stream, i)).await.unwrap();
    }
    // Flushing completes although nobody reads: the outcomes wait on the stream.
    sink.flush().await.unwrap();
    assert!(ready(&mut sink).is_none(), "8 unread outcomes, capacity 6");
    let mut read = Vec::new();
    for _ in 0..3 {
        read.push(outcomes.next().await.unwrap());
    }
    assert!(matches!(ready(&mut sink), Some(Ok(()))), "5 unread now");
    // Dropping the stream says the outcomes are not wanted: the sink goes on.
    sink.feed(record(&stream, 8)).await.unwrap();
    sink.flush().await.unwrap();
    drop(outcomes);
    assert!(matches!(ready(&mut sink), Some(Ok(()))));
    sink.send(record(&stream, 9)).await.unwrap();
    assert!(read.iter().all(Result::is_ok));
    producer.shutdown().await;
    assert_eq!(read_all(&client, &stream).await.len(), 10);
}

#[tokio::test]
async fn sink_settings_have_documented_defaults_and_ranges() {
    let (client, _server) = stalled_client().await;
    let producer = Producer::builder(client.clone()).build().unwrap();
    assert_eq!(DEFAULT_SINK_BATCH_RECORDS, 500);
    assert_eq!(DEFAULT_SINK_BATCH_BYTES, 5 * 1024 * 1024);
    assert_eq!(DEFAULT_SINK_OUTCOME_CAPACITY, 10_000);
    assert!(producer.sink_builder().build().is_ok());
    for (builder, setting) in [
        (
            producer.sink_builder().with_batch_records(0),
            "batch_records",
        ),
        (
            producer.sink_builder().with_batch_records(1_000_001),
            "batch_records",
        ),
        (producer.sink_builder().with_batch_bytes(0), "batch_bytes"),
        (
            producer
                .sink_builder()
                .with_batch_bytes(32 * 1024 * 1024 + 1),
            "batch_bytes",
        ),
        (
            producer.sink_builder().with_outcome_capacity(0),
            "outcome_capacity",
        ),
    ] {
        let err = builder.build().expect_err(setting);
        assert!(err.to_string().contains(setting), "{err}");
    }
    // A small record budget makes a small default batch.
    let small = Producer::builder(client)
        .with_max_outstanding_records(10)
        .build()
        .unwrap();
    assert!(small.sink_builder().build().is_ok());
    assert!(small.sink_builder().with_batch_records(11).build().is_err());
}
