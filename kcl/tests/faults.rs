//! The consumer when Kinesis or DynamoDB misbehave, through the fault-injecting proxy
//! (`integration_tests::fault_proxy`): a DynamoDB outage shorter than the fence time
//! (about half the failover time) moves no lease; a longer one loses the leases cleanly and processing resumes when it
//! ends; throttling, server errors, expired iterators and lost answers cost retries, never
//! records, and never the shard's order.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use kinesis_consumer::Scheduler;

const FAILOVER: Duration = Duration::from_secs(3);

/// A worker whose DynamoDB and Kinesis calls go through the given proxies (or straight to
/// the stack), reading at most 50 records per `GetRecords` (so that calls are many).
fn worker_through(
    stack: &kinesis_emulators::LocalStack,
    app: &str,
    stream: &str,
    id: &str,
    rec: &Recorder,
    kinesis: Option<&FaultProxy>,
    dynamodb: Option<&FaultProxy>,
) -> Scheduler {
    let kinesis_client = match kinesis {
        Some(p) => p.route_kinesis(&stack.kinesis_client()),
        None => stack.kinesis_client(),
    };
    let dynamodb_client = match dynamodb {
        Some(p) => p.route_dynamodb(&stack.dynamodb_client()),
        None => stack.dynamodb_client(),
    };
    let mut polling = kinesis_consumer::PollingConfig::default();
    polling.max_records = 50;
    polling.idle_time_between_reads = Duration::from_millis(50);
    scheduler_builder(stack, app, stream, id, rec, FAILOVER)
        .with_clients(kinesis_client, dynamodb_client)
        .with_polling(polling)
        .build()
        .expect("scheduler")
}

/// Every record's data → how many times it was processed.
fn counts(rec: &Recorder) -> HashMap<Bytes, usize> {
    let mut counts = HashMap::new();
    for s in rec.seen() {
        *counts.entry(s.data).or_default() += 1;
    }
    counts
}

/// Asserts that `rec` processed `n` different records, each exactly once.
fn assert_each_processed_once(rec: &Recorder, n: usize) {
    let counts = counts(rec);
    assert_eq!(counts.len(), n, "nothing lost");
    assert!(counts.values().all(|n| *n == 1), "nothing processed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_outage_shorter_than_the_fence_time_moves_no_lease() {
    let stack = stack().await;
    let stream = stack.create_stream("faults-short", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("faults-short-app");
    let kinesis = stack.kinesis_client();
    let proxy = FaultProxy::start(stack.dynamodb_endpoint()).await.unwrap();
    let rec = Recorder::default();
    let a = worker_through(&stack, &app, &stream, "a", &rec, None, Some(&proxy));
    let b = worker_through(&stack, &app, &stream, "b", &rec, None, Some(&proxy));
    let (run_a, run_b) = (spawn_run(&a), spawn_run(&b));
    let held = |s: &Scheduler| s.coordinator().held_lease_keys();
    wait_until("2 leases each", || {
        held(&a).len() == 2 && held(&b).len() == 2
    })
    .await;
    put_records(&kinesis, &stream, &records(400, 40, 1, "before-"), 1).await;
    wait_until("the first records", || distinct(&rec) >= 400).await;
    let before = (held(&a), held(&b));
    // Leases moved while the two balanced (b stole from a) are not the outage's doing.
    let lost_before = rec.events("lease_lost").len();

    // A third of the failover time without any DynamoDB answer, records flowing: less
    // than the time after which a worker gives its leases up (failover − 2.1 heartbeats,
    // 1.4 s here), so that no other worker may take them.
    proxy.set_rules(vec![Rule::new("DynamoDB_20120810.", Fault::Blackhole)]);
    put_records(&kinesis, &stream, &records(400, 40, 1, "during-"), 1).await;
    tokio::time::sleep(FAILOVER / 3).await;
    proxy.clear();
    // Two more failover times: anything that was going to move has moved.
    tokio::time::sleep(FAILOVER * 2).await;
    assert_eq!((held(&a), held(&b)), before, "no lease moved");
    assert_eq!(
        rec.events("lease_lost").len(),
        lost_before,
        "{:?}",
        rec.events("lease_lost")
    );
    assert!(proxy.injected_total() > 0, "the outage was real");

    put_records(&kinesis, &stream, &records(400, 40, 1, "after-"), 1).await;
    wait_until("every record", || distinct(&rec) >= 1_200).await;
    a.graceful_shutdown().await;
    b.graceful_shutdown().await;
    run_a.await.unwrap().unwrap();
    run_b.await.unwrap().unwrap();
    assert_each_processed_once(&rec, 1_200);
}

/// A worker on 2 shards loses DynamoDB to `fault` for longer than the fence time while
/// records flow: its processors get `lease_lost`, then `while_lost` runs (with the proxy and
/// the run's handle), then DynamoDB comes back: the worker takes its leases again and every
/// record is processed, the first delivery of each in shard order.
async fn leases_lost_to_then_resumed<F, Fut>(name: &str, fault: Fault, while_lost: F)
where
    F: FnOnce(FaultProxy, tokio::task::JoinHandle<Result<(), kinesis_consumer::Error>>) -> Fut,
    Fut: std::future::Future<
        Output = (
            FaultProxy,
            tokio::task::JoinHandle<Result<(), kinesis_consumer::Error>>,
        ),
    >,
{
    let stack = stack().await;
    let stream = stack.create_stream(name, 2).await.unwrap();
    let app = kinesis_emulators::unique_name(&format!("{name}-app"));
    let kinesis = stack.kinesis_client();
    let proxy = FaultProxy::start(stack.dynamodb_endpoint()).await.unwrap();
    let rec = Recorder::default();
    let w = worker_through(&stack, &app, &stream, "w", &rec, None, Some(&proxy));
    let run = spawn_run(&w);
    wait_until("both leases", || {
        w.coordinator().held_lease_keys().len() == 2
    })
    .await;
    put_records(&kinesis, &stream, &records(300, 30, 1, "before-"), 1).await;
    wait_until("the first records", || distinct(&rec) >= 300).await;

    proxy.set_rules(vec![Rule::new("DynamoDB_20120810.", fault)]);
    put_records(&kinesis, &stream, &records(300, 30, 1, "during-"), 1).await;
    wait_until("the leases given up", || {
        w.coordinator().held_lease_keys().is_empty()
    })
    .await;
    assert_eq!(rec.events("lease_lost").len(), 2, "each processor told");
    let (proxy, run) = while_lost(proxy, run).await;
    proxy.clear();

    put_records(&kinesis, &stream, &records(300, 30, 1, "after-"), 1).await;
    wait_until("every record", || distinct(&rec) >= 900).await;
    w.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_eq!(counts(&rec).len(), 900, "nothing lost");
    // Records after the last checkpoint come again after the loss; the first delivery of
    // each is still in the shard's order.
    let mut first = std::collections::HashSet::new();
    let firsts: Vec<Seen> = rec
        .seen()
        .into_iter()
        .filter(|s| first.insert(s.data.clone()))
        .collect();
    assert_shard_order(&firsts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_outage_longer_than_the_fence_time_loses_leases_cleanly_then_resumes() {
    leases_lost_to_then_resumed("faults-long", Fault::Blackhole, |proxy, run| async {
        (proxy, run)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_throttling_errors_and_expired_iterators_cost_retries_not_records() {
    let stack = stack().await;
    let stream = stack.create_stream("faults-kinesis", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("faults-kinesis-app");
    let kinesis = stack.kinesis_client();
    let proxy = FaultProxy::start(stack.kinesis_endpoint()).await.unwrap();
    proxy.set_rules(vec![
        Rule::new(
            "GetRecords",
            Fault::error(400, "ProvisionedThroughputExceededException"),
        )
        .one_in(3),
        Rule::new("GetShardIterator", Fault::error(500, "InternalFailure")).one_in(2),
        Rule::new("ListShards", Fault::error(400, "LimitExceededException")).one_in(2),
    ]);
    let rec = Recorder::default();
    let w = worker_through(&stack, &app, &stream, "w", &rec, Some(&proxy), None);
    let run = spawn_run(&w);
    put_records(&kinesis, &stream, &records(2_000, 50, 1, "k-"), 1).await;
    wait_until("half the records", || distinct(&rec) >= 1_000).await;
    // Expired iterators too, now and then, and answers lost after the server answered.
    proxy.set_rules(vec![
        Rule::new("GetRecords", Fault::error(400, "ExpiredIteratorException")).one_in(4),
        Rule::new("GetRecords", Fault::ResetAfterForward).one_in(5),
    ]);
    put_records(&kinesis, &stream, &records(2_000, 50, 1, "l-"), 1).await;
    wait_until("every record", || distinct(&rec) >= 4_000).await;
    proxy.clear();
    w.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_each_processed_once(&rec, 4_000);
    assert_shard_order(&rec.seen());
    let injected = proxy.injected();
    assert!(
        injected.get("GetRecords").copied().unwrap_or(0) > 0,
        "{injected:?} of {:?}",
        proxy.calls_by_operation()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_throttling_and_server_errors_cost_retries_not_records() {
    let stack = stack().await;
    let stream = stack.create_stream("faults-ddb", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("faults-ddb-app");
    let kinesis = stack.kinesis_client();
    let proxy = FaultProxy::start(stack.dynamodb_endpoint()).await.unwrap();
    // One scan in three gets a server error; one call in four of the others is throttled
    // (heartbeats included: a failed beat is tried again at once).
    proxy.set_rules(vec![
        Rule::new("Scan", Fault::error(500, "InternalServerError")).one_in(3),
        Rule::new(
            "DynamoDB_20120810.",
            Fault::error(400, "ProvisionedThroughputExceededException"),
        )
        .one_in(4),
    ]);
    let rec = Recorder::default();
    let w = worker_through(&stack, &app, &stream, "w", &rec, None, Some(&proxy));
    let run = spawn_run(&w);
    put_records(&kinesis, &stream, &records(1_000, 50, 1, "d-"), 1).await;
    wait_until("every record", || distinct(&rec) >= 1_000).await;
    proxy.clear();
    w.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_eq!(counts(&rec).len(), 1_000, "nothing lost");
    assert_shard_order(&rec.seen());
    assert!(proxy.injected_total() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_refused_and_reset_subscriptions_back_off_and_lose_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("kinesis_consumer=debug")
        .with_test_writer()
        .try_init();
    // Subscriptions end every 2 s, so that many are made while records flow. One shard:
    // the rules below count calls across shards, so with two shards the calls of one can
    // take every pass-through turn while the other, backing off, only meets faults
    // (seen as a shard never read in 120 s).
    let stack = kinesis_emulators::LocalStack::builder()
        .with_subscribe_session(Duration::from_secs(2))
        .start_async()
        .await
        .expect("local stack");
    let stream = stack.create_stream("faults-efo", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("faults-efo-app");
    let kinesis = stack.kinesis_client();
    let proxy = FaultProxy::start(stack.kinesis_endpoint()).await.unwrap();
    // Every second subscription throttled, every second of the others a server error,
    // every second of the rest cut off before it reaches Kinesis: all three within the
    // first five calls.
    proxy.set_rules(vec![
        Rule::new(
            "SubscribeToShard",
            Fault::error(400, "LimitExceededException"),
        )
        .one_in(2),
        Rule::new("SubscribeToShard", Fault::error(500, "InternalFailure")).one_in(2),
        Rule::new("SubscribeToShard", Fault::Reset).one_in(2),
    ]);
    let through_proxy = proxy.route_kinesis(&stack.kinesis_client());
    let rec = Recorder::default();
    let w = scheduler_builder(&stack, &app, &stream, "w", &rec, FAILOVER)
        .with_clients(through_proxy, stack.dynamodb_client())
        .with_retrieval(fan_out())
        .build()
        .expect("scheduler");
    let run = spawn_run(&w);
    put_records(&kinesis, &stream, &records(1_000, 50, 1, "e-"), 1).await;
    let kinds = ["LimitExceededException", "InternalFailure", "Reset"];
    // Progress every 100 looks, shown if the wait times out.
    let (started, mut polls) = (std::time::Instant::now(), 0u32);
    wait_until("the first records, and every kind of fault", || {
        let by_kind = proxy.injected_by_kind();
        polls += 1;
        if polls.is_multiple_of(100) {
            eprintln!(
                "after {:.1?}: {} distinct; proxy: {}",
                started.elapsed(),
                distinct(&rec),
                proxy.report()
            );
        }
        distinct(&rec) >= 1_000 && kinds.iter().all(|k| by_kind.contains_key(*k))
    })
    .await;

    // Every subscription refused for 5 s, records put meanwhile: the worker backs off
    // (250 ms doubling, each attempt at most 3 calls with the SDK's retries) instead of
    // calling in a loop, and reads them once subscriptions work again.
    let subscribes = |p: &FaultProxy| {
        p.calls_by_operation()
            .get("SubscribeToShard")
            .copied()
            .unwrap_or(0)
    };
    let before = subscribes(&proxy);
    proxy.set_rules(vec![Rule::new(
        "SubscribeToShard",
        Fault::error(400, "LimitExceededException"),
    )]);
    put_records(&kinesis, &stream, &records(1_000, 50, 1, "f-"), 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let refused = subscribes(&proxy) - before;
    proxy.clear();
    wait_until("every record", || distinct(&rec) >= 2_000).await;
    eprintln!(
        "proxy: {}; {refused} SubscribeToShard calls in 5 s of refusals (1 shard)",
        proxy.report()
    );
    w.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_each_processed_once(&rec, 2_000);
    assert_shard_order(&rec.seen());
    let by_kind = proxy.injected_by_kind();
    for kind in ["LimitExceededException", "InternalFailure", "Reset"] {
        assert!(
            by_kind.get(kind).copied().unwrap_or(0) > 0,
            "{kind} fired: {by_kind:?}"
        );
    }
    // A loop without backoff makes thousands of calls in 5 s; the backoff at most 6
    // attempts (one under way, then after at least 250, 500, 1000 and 2000 ms), 3 calls
    // each with the SDK's retries.
    assert!(
        refused <= 6 * 3,
        "{refused} SubscribeToShard calls in 5 s of refusals: no backoff"
    );
}

/// A processor that takes `delay` over every batch, then records it (checkpointing as the
/// recording processor does).
struct Slow {
    inner: Box<dyn kinesis_consumer::RecordProcessor>,
    delay: Duration,
}

#[async_trait::async_trait]
impl kinesis_consumer::RecordProcessor for Slow {
    async fn initialize(&mut self, input: kinesis_consumer::InitializationInput) {
        self.inner.initialize(input).await;
    }
    async fn process_records(&mut self, input: kinesis_consumer::ProcessRecordsInput) {
        tokio::time::sleep(self.delay).await;
        self.inner.process_records(input).await;
    }
    async fn lease_lost(&mut self, input: kinesis_consumer::LeaseLostInput) {
        self.inner.lease_lost(input).await;
    }
    async fn shard_ended(&mut self, input: kinesis_consumer::ShardEndedInput) {
        self.inner.shard_ended(input).await;
    }
    async fn shutdown_requested(&mut self, input: kinesis_consumer::ShutdownRequestedInput) {
        self.inner.shutdown_requested(input).await;
    }
}

/// A processor taking 200 ms per batch, reading with `retrieval` through a proxy: every
/// record once and in order, the reads paced by the processor (the calls are counted).
async fn slow_processor_reads_everything_once(retrieval: kinesis_consumer::Retrieval, what: &str) {
    let stack = kinesis_emulators::LocalStack::builder()
        .with_subscribe_session(Duration::from_secs(2))
        .start_async()
        .await
        .expect("local stack");
    let stream = stack.create_stream("faults-slow", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("faults-slow-app");
    let kinesis = stack.kinesis_client();
    let proxy = FaultProxy::start(stack.kinesis_endpoint()).await.unwrap();
    let through_proxy = proxy.route_kinesis(&stack.kinesis_client());
    let rec = Recorder::default();
    let factory = rec.factory("w");
    let w = Scheduler::builder(&app, &stream, move |shard: &str| {
        Box::new(Slow {
            inner: factory(shard),
            delay: Duration::from_millis(200),
        }) as Box<dyn kinesis_consumer::RecordProcessor>
    })
    .with_clients(through_proxy, stack.dynamodb_client())
    .with_worker_id("w")
    .with_failover_time(FAILOVER)
    .with_retrieval(retrieval)
    .build()
    .expect("scheduler");
    let run = spawn_run(&w);
    put_records(&kinesis, &stream, &records(2_000, 50, 1, "s-"), 1).await;
    wait_until("every record", || distinct(&rec) >= 2_000).await;
    w.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_each_processed_once(&rec, 2_000);
    assert_shard_order(&rec.seen());
    eprintln!(
        "{what}: slow processor, {} batches; calls {:?}",
        rec.checkpoints.lock().unwrap().len(),
        proxy.calls_by_operation()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_processor_with_polling_reads_everything_once_in_order() {
    let mut polling = kinesis_consumer::PollingConfig::default();
    polling.max_records = 50;
    polling.idle_time_between_reads = Duration::from_millis(50);
    slow_processor_reads_everything_once(kinesis_consumer::Retrieval::Polling(polling), "polling")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_processor_with_fan_out_reads_everything_once_in_order() {
    slow_processor_reads_everything_once(fan_out(), "fan-out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_the_lease_table_mid_run_loses_leases_cleanly_without_a_busy_loop() {
    // The worker's role loses its DynamoDB permissions (a policy changed under it): every
    // call is refused with a non-retryable error.
    let denied = Fault::error(400, "AccessDeniedException");
    leases_lost_to_then_resumed("faults-denied", denied, |proxy, run| async move {
        // Two more failover times refused: the worker keeps trying at its usual cadence
        // (the heartbeat, the taker's scan), not in a loop. A loop would make thousands of
        // calls here; the cadence makes a few per second.
        let calls_before = proxy.calls();
        tokio::time::sleep(FAILOVER * 2).await;
        let refused = proxy.calls() - calls_before;
        let window = FAILOVER.as_secs_f64() * 2.0;
        println!(
            "access denied: {refused} DynamoDB calls refused in {window} s: {:?}",
            proxy.calls_by_operation()
        );
        assert!(
            (refused as f64) < 20.0 * window,
            "{refused} DynamoDB calls in {window} s of refusals: {:?}",
            proxy.calls_by_operation()
        );
        assert!(!run.is_finished(), "the worker waits for access to return");
        (proxy, run)
    })
    .await;
}
