//! The producer when Kinesis misbehaves, through the fault-injecting proxy
//! (`integration_tests::fault_proxy`): `PutRecords` calls throttled, failing with server
//! errors, or answered and then cut off (the records are in the stream but the producer
//! cannot know), and a Kinesis outage of a few seconds. Every record gets exactly one
//! outcome; every one reported delivered is in the stream at its reported position; the
//! only duplicates are from answers lost after the server accepted the call, and are
//! counted.
//!
//! Size: 30,000 records, a fault in about 1 call of 3 and a 3 s outage by default (CI);
//! `KPL_FAULTS_FULL=1` for 50,000 records with 20 % of the calls failing with each of the
//! four kinds (80 % in all: throttled, server error, reset, answer dropped after
//! forwarding) and a 10 s outage.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};

use common::{assert_all_rejected, assert_at_reported_positions, put_numbered, read_all};

/// A bound to fail on instead of hanging; never a measured assertion.
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_gets_one_outcome_and_is_delivered_through_faults_and_an_outage() {
    let stack = LocalStack::builder().start_async().await.expect("stack");
    let stream = stack.create_stream("kpl-faults", 4).await.unwrap();
    let proxy = FaultProxy::start(stack.kinesis_endpoint()).await.unwrap();
    let through_proxy = proxy.route_kinesis(&stack.kinesis_client());
    let full = std::env::var("KPL_FAULTS_FULL").is_ok_and(|v| v == "1");
    // Each rule counts the calls the rules before it let through: 1 in 5, then 1 in 4 of
    // the rest, ... is 20 % of all calls each.
    let (n, outage, spacing) = if full {
        (50_000, Duration::from_secs(10), [5, 4, 3, 2])
    } else {
        (30_000, Duration::from_secs(3), [5, 7, 11, 13])
    };
    proxy.set_rules(vec![
        Rule::new(
            "PutRecords",
            Fault::error(400, "ProvisionedThroughputExceededException"),
        )
        .one_in(spacing[0]),
        Rule::new("PutRecords", Fault::error(500, "InternalFailure")).one_in(spacing[1]),
        Rule::new("PutRecords", Fault::ResetAfterForward).one_in(spacing[2]),
        Rule::new("PutRecords", Fault::Reset).one_in(spacing[3]),
    ]);
    // Without aggregation every PutRecords call carries at most 500 records: many calls.
    let producer = Producer::builder(through_proxy)
        .with_aggregation(false)
        .with_rate_limit_percent(10_000)
        .with_max_buffered_time(Duration::from_millis(20))
        .with_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .with_record_ttl(Duration::from_secs(if full { 300 } else { 60 }))
        .build()
        .unwrap();

    let records: Vec<ProducerRecord> = (0..n)
        .map(|i| ProducerRecord::new(&stream, format!("key-{}", i % 211), format!("r{i}")))
        .collect();
    let mut handles = Vec::with_capacity(n);
    for (i, r) in records.iter().enumerate() {
        if i == n / 2 {
            // Half way: Kinesis unreachable (calls hang, then are cut off).
            proxy.set_rules(vec![Rule::new("PutRecords", Fault::Blackhole)]);
            let p = &proxy;
            tokio::time::sleep(outage).await;
            p.set_rules(vec![
                Rule::new(
                    "PutRecords",
                    Fault::error(400, "ProvisionedThroughputExceededException"),
                )
                .one_in(5),
                Rule::new("PutRecords", Fault::ResetAfterForward).one_in(11),
            ]);
        }
        handles.push(producer.put(r.clone()).await.expect("accepted"));
    }
    // Every handle resolves: no outcome is lost, none hangs.
    let outcomes = tokio::time::timeout(DEADLINE * if full { 5 } else { 1 }, join_all(handles))
        .await
        .expect("every outcome within the deadline");
    producer.flush().await;
    proxy.clear();
    let injected = proxy.injected_total();
    assert!(injected > 0, "faults were injected");

    let mut delivered = Vec::new();
    for (r, o) in records.iter().zip(outcomes) {
        match o {
            Ok(d) => delivered.push((r.clone(), d)),
            Err(f) => panic!("within its TTL, yet not delivered: {f}"),
        }
    }
    // Each delivered record is at its reported position.
    let read = read_all(&stack.kinesis_client(), &stream).await;
    assert_at_reported_positions(&read, &delivered);
    // Nothing else but copies from answers lost after the server took the call.
    let mut copies: HashMap<&[u8], usize> = HashMap::new();
    for r in &read {
        *copies.entry(r.data.as_ref()).or_default() += 1;
    }
    assert_eq!(copies.len(), n, "every record, and nothing else");
    let duplicates = read.len() - n;
    let stats = producer.stats();
    eprintln!(
        "{n} records, outage {outage:?}; proxy: {}; {} user records read, {duplicates} \
         duplicates; {stats:?}",
        proxy.report(),
        read.len()
    );
    assert!(stats.retries > 0, "the faults were retried");
    assert_eq!(stats.user_records_delivered, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_mid_run_fails_records_promptly_and_later_records_go_through() {
    let stack = LocalStack::builder().start_async().await.expect("stack");
    let stream = stack.create_stream("kpl-denied", 2).await.unwrap();
    let proxy = FaultProxy::start(stack.kinesis_endpoint()).await.unwrap();
    let through_proxy = proxy.route_kinesis(&stack.kinesis_client());
    // A TTL far beyond the test's deadline: a record that fails must fail because the
    // refusal is final, not because it ran out of time.
    let producer = Producer::builder(through_proxy)
        .with_record_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    let before = put_numbered(&producer, &stream, 0..200, DEADLINE).await;
    assert!(before.iter().all(Result::is_ok), "delivered before");

    // The producer's role loses `kinesis:PutRecords` (a policy changed under it).
    proxy.set_rules(vec![Rule::new(
        "PutRecords",
        Fault::error(400, "AccessDeniedException"),
    )]);
    let denied = put_numbered(&producer, &stream, 200..400, DEADLINE).await;
    assert_all_rejected(denied, "AccessDeniedException");
    let refused = proxy.injected_total();
    println!("access denied: 200 records failed after {refused} refused PutRecords calls");
    assert!(refused >= 1);

    // Access granted again: records put afterwards are delivered.
    proxy.clear();
    let after = put_numbered(&producer, &stream, 400..600, DEADLINE).await;
    assert!(after.iter().all(Result::is_ok), "delivered after");
    let stats = producer.stats();
    assert_eq!(
        (stats.user_records_delivered, stats.user_records_failed),
        (400, 200),
        "{stats:?}"
    );
    producer.shutdown().await;
    let read = read_all(&stack.kinesis_client(), &stream).await;
    assert_eq!(
        read.len(),
        400,
        "exactly the delivered records are in the stream"
    );
}
