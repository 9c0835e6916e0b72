//! Multi-stream applications on the embedded emulators: one scheduler consumes two
//! streams, a third is added while it runs (at its own initial position), one is removed
//! (its consumers stop, its leases are deleted after the grace period), and nothing of the
//! streams that stay is lost; the same with enhanced fan-out, each stream read through its
//! own stream consumer.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use common::{
    assert_shard_order, counters, put_records, records, spawn_run, stack, wait_until, Recorder,
    Sent,
};
use integration_tests::kinesis::{stream_arn, stream_consumers, stream_summary};
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::metric_names as m;
use kinesis_consumer::{
    Error, FormerStreamsLeasesDeletionStrategy, InitialPosition, InitializationInput,
    LeaseLostInput, ProcessRecordsInput, RecordProcessor, Scheduler, ShardEndedInput,
    ShutdownRequestedInput, StaticStreamTracker, StreamConfig, StreamTracker,
};

/// Held by each test that reads records, so that what one counts (`GetRecords` calls,
/// subscriptions) is its own.
fn readers() -> &'static tokio::sync::Mutex<()> {
    static READERS: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    READERS.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// A tracker whose list the test changes while the worker runs.
#[derive(Debug, Clone, Default)]
struct Tracker(Arc<Mutex<Vec<StreamConfig>>>);

impl Tracker {
    fn set(&self, streams: Vec<StreamConfig>) {
        *self.0.lock().unwrap() = streams;
    }
}

#[async_trait]
impl StreamTracker for Tracker {
    async fn stream_configs(
        &self,
    ) -> Result<Vec<StreamConfig>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// What the processors saw: (stream name, payload) per record, and the streams whose
/// processors were asked to shut down.
#[derive(Debug, Clone, Default)]
struct Seen {
    records: Arc<Mutex<Vec<(String, Bytes)>>>,
    shutdowns: Arc<Mutex<Vec<String>>>,
}

impl Seen {
    fn of(&self, stream: &str) -> HashSet<Bytes> {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|(s, _)| s == stream)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// Records each record under the stream its initialization input names.
#[derive(Debug)]
struct Recording {
    seen: Seen,
    stream: String,
}

#[async_trait]
impl RecordProcessor for Recording {
    async fn initialize(&mut self, input: InitializationInput) {
        let stream = input.stream.expect("multi-stream leases name their stream");
        assert!(!input.shard_id.contains(':'), "a bare shard id");
        self.stream = stream.stream_name().to_owned();
    }
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        {
            let mut records = self.seen.records.lock().unwrap();
            for r in &input.records {
                records.push((self.stream.clone(), r.data.clone()));
            }
        }
        input.checkpointer.checkpoint().await.ok();
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        input.checkpointer.checkpoint().await.ok();
    }
    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        self.seen
            .shutdowns
            .lock()
            .unwrap()
            .push(self.stream.clone());
        input.checkpointer.checkpoint().await.ok();
    }
}

fn sent(tag: &str, n: usize) -> Vec<Sent> {
    (0..n)
        .map(|i| Sent {
            partition_key: format!("k{i}"),
            data: Bytes::from(format!("{tag}-{i}")),
        })
        .collect()
}

fn payloads(records: &[Sent]) -> HashSet<Bytes> {
    records.iter().map(|s| s.data.clone()).collect()
}

/// The table's leases, by stream name.
async fn leases_by_stream(table: &LeaseTable) -> HashMap<String, Vec<kinesis_consumer::Lease>> {
    let mut by = HashMap::new();
    for lease in table.list_leases().await.unwrap() {
        let stream = lease.stream.clone().expect("only multi-stream leases");
        by.entry(stream.stream_name().to_owned())
            .or_insert_with(Vec::new)
            .push(lease);
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_added_and_removed_while_running() {
    let _alone = readers().lock().await;
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    let a = stack.create_stream("ms-a", 2).await.unwrap();
    let b = stack.create_stream("ms-b", 1).await.unwrap();
    let c = stack.create_stream("ms-c", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("ms-app");
    let (a1, b1) = (sent("a1", 40), sent("b1", 20));
    put_records(&kinesis, &a, &a1, 1).await;
    put_records(&kinesis, &b, &b1, 1).await;
    // Records of c before its initial position (AT_TIMESTAMP) are never read; some
    // emulators keep arrival times in whole seconds: a clear gap on both sides.
    put_records(&kinesis, &c, &sent("c0", 10), 1).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let c_from = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let tracker = Tracker::default();
    tracker.set(vec![
        StreamConfig::new(&a).unwrap(),
        StreamConfig::new(&b).unwrap(),
    ]);
    let seen = Seen::default();
    let factory = {
        let seen = seen.clone();
        move |_: &str| {
            Box::new(Recording {
                seen: seen.clone(),
                stream: String::new(),
            }) as Box<dyn RecordProcessor>
        }
    };
    let grace = Duration::from_secs(2);
    let worker = Scheduler::multi_stream_builder(&app, tracker.clone(), factory)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("w")
        .with_failover_time(Duration::from_secs(2))
        .with_retrieval(common::polling())
        .with_shard_sync_interval(Duration::from_millis(500))
        .with_stream_tracker_interval(Duration::from_millis(200))
        .with_former_streams_deletion(FormerStreamsLeasesDeletionStrategy::DeleteAfter(grace))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    wait_until("the records of a and b", || {
        seen.of(&a) == payloads(&a1) && seen.of(&b) == payloads(&b1)
    })
    .await;

    // The leases are in the Java KCL's multi-stream format.
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    let by_stream = leases_by_stream(&table).await;
    assert_eq!(by_stream[&a].len(), 2);
    for lease in &by_stream[&a] {
        let id = lease.stream.as_ref().unwrap();
        assert_eq!(lease.lease_key, format!("{id}:{}", lease.shard_id()));
        assert!(
            lease.shard_id().starts_with("shardId-"),
            "{}",
            lease.lease_key
        );
    }

    // c is added while running, starting at its own position.
    let c1 = sent("c1", 30);
    put_records(&kinesis, &c, &c1, 1).await;
    tracker.set(vec![
        StreamConfig::new(&a).unwrap(),
        StreamConfig::new(&b).unwrap(),
        StreamConfig::new(&c)
            .unwrap()
            .with_initial_position(InitialPosition::AtTimestamp(c_from)),
    ]);
    wait_until("the records of c", || seen.of(&c) == payloads(&c1)).await;

    // b is removed: its consumer stops, its leases go after the grace period.
    let b_removed = std::time::Instant::now();
    tracker.set(vec![
        StreamConfig::new(&a).unwrap(),
        StreamConfig::new(&c)
            .unwrap()
            .with_initial_position(InitialPosition::AtTimestamp(c_from)),
    ]);
    wait_until("b's processor asked to shut down", || {
        seen.shutdowns.lock().unwrap().contains(&b)
    })
    .await;
    let b_seen = seen.of(&b).len();
    let (a2, b2, c2) = (sent("a2", 40), sent("b2", 20), sent("c2", 20));
    put_records(&kinesis, &b, &b2, 1).await;
    put_records(&kinesis, &a, &a2, 1).await;
    put_records(&kinesis, &c, &c2, 1).await;
    let mut b_gone = None;
    let start = std::time::Instant::now();
    while b_gone.is_none() {
        assert!(
            start.elapsed() < common::DEADLINE,
            "b's leases never deleted"
        );
        if !leases_by_stream(&table).await.contains_key(&b) {
            b_gone = Some(b_removed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker saw b untracked no earlier than the list changed.
    assert!(
        b_gone.unwrap() >= grace,
        "deleted after {:?}, before the grace period",
        b_gone.unwrap()
    );
    let want_a: HashSet<Bytes> = payloads(&a1).union(&payloads(&a2)).cloned().collect();
    let want_c: HashSet<Bytes> = payloads(&c1).union(&payloads(&c2)).cloned().collect();
    wait_until("every record of a and c", || {
        seen.of(&a) == want_a && seen.of(&c) == want_c
    })
    .await;
    assert_eq!(seen.of(&b).len(), b_seen, "nothing of b after its removal");
    let by_stream = leases_by_stream(&table).await;
    assert_eq!(
        by_stream.keys().cloned().collect::<HashSet<_>>(),
        HashSet::from([a.clone(), c.clone()])
    );

    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
}

/// The stream a multi-stream lease key (`account:stream:epoch:shardId`) names.
fn stream_of(lease_key: &str) -> &str {
    lease_key
        .split(':')
        .nth(1)
        .expect("a multi-stream lease key")
}

/// What `rec`'s processors saw of `stream`.
fn seen_of(rec: &Recorder, stream: &str) -> Vec<Bytes> {
    rec.seen()
        .into_iter()
        .filter(|s| stream_of(&s.shard) == stream)
        .map(|s| s.data)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_is_read_with_enhanced_fan_out_also_one_added_while_running() {
    let counters = counters();
    let _alone = readers().lock().await;
    let get_records = || counters.get(m::KINESIS_CALLS, Some(("operation", "GetRecords")));
    let polled_before = get_records();
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    // c alone has a third shard: a subscription to it is c's.
    let a = stack.create_stream("efo-ms-a", 1).await.unwrap();
    let b = stack.create_stream("efo-ms-b", 2).await.unwrap();
    let c = stack.create_stream("efo-ms-c", 3).await.unwrap();
    let app = kinesis_emulators::unique_name("efo-ms-app");
    // Several keys per stream (so every shard gets records), some in KPL aggregates.
    let (a1, b1) = (records(60, 6, 3, "a1-"), records(80, 8, 1, "b1-"));
    put_records(&kinesis, &a, &a1, 3).await;
    put_records(&kinesis, &b, &b1, 1).await;

    let tracker = Tracker::default();
    tracker.set(vec![
        StreamConfig::new(&a).unwrap(),
        StreamConfig::new(&b).unwrap(),
    ]);
    let rec = Recorder::default();
    let worker = Scheduler::multi_stream_builder(&app, tracker.clone(), rec.factory("w"))
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("w")
        .with_failover_time(Duration::from_secs(2))
        .with_retrieval(common::fan_out())
        .with_shard_sync_interval(Duration::from_millis(500))
        .with_stream_tracker_interval(Duration::from_millis(200))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    let wanted = |batches: &[&[Sent]]| -> HashSet<Bytes> {
        batches.iter().flat_map(|b| payloads(b)).collect()
    };
    wait_until("the records of a and b", || {
        seen_of(&rec, &a).into_iter().collect::<HashSet<_>>() == wanted(&[&a1])
            && seen_of(&rec, &b).into_iter().collect::<HashSet<_>>() == wanted(&[&b1])
    })
    .await;
    // Each stream has its own consumer, named after the application.
    for stream in [&a, &b] {
        let consumers = stream_consumers(&kinesis, stream).await;
        assert_eq!(
            consumers.get(&app).map(String::as_str),
            Some("ACTIVE"),
            "{stream}: {consumers:?}"
        );
    }
    assert!(
        stream_consumers(&kinesis, &c).await.is_empty(),
        "nothing registered on a stream not listed"
    );

    // c is added while running: its consumer is registered (it takes a while to become
    // ACTIVE, which the worker waits out while a and b go on), then its shards are read.
    let c1 = records(90, 9, 1, "c1-");
    put_records(&kinesis, &c, &c1, 1).await;
    tracker.set(vec![
        StreamConfig::new(&a).unwrap(),
        StreamConfig::new(&b).unwrap(),
        StreamConfig::new(&c).unwrap(),
    ]);
    let a2 = records(40, 6, 1, "a2-");
    put_records(&kinesis, &a, &a2, 1).await;
    wait_until("the records of c", || {
        seen_of(&rec, &c).into_iter().collect::<HashSet<_>>() == wanted(&[&c1])
    })
    .await;
    let consumers = stream_consumers(&kinesis, &c).await;
    assert_eq!(
        consumers.get(&app).map(String::as_str),
        Some("ACTIVE"),
        "{consumers:?}"
    );
    let (b2, c2) = (records(50, 8, 2, "b2-"), records(60, 9, 3, "c2-"));
    put_records(&kinesis, &b, &b2, 2).await;
    put_records(&kinesis, &c, &c2, 3).await;
    let want_a = wanted(&[&a1, &a2]);
    let want_b = wanted(&[&b1, &b2]);
    let want_c = wanted(&[&c1, &c2]);
    wait_until("every record of a, b and c", || {
        seen_of(&rec, &a).into_iter().collect::<HashSet<_>>() == want_a
            && seen_of(&rec, &b).into_iter().collect::<HashSet<_>>() == want_b
            && seen_of(&rec, &c).into_iter().collect::<HashSet<_>>() == want_c
    })
    .await;

    // Exactly once, in order within each shard of each stream.
    for (stream, want) in [(&a, &want_a), (&b, &want_b), (&c, &want_c)] {
        assert_eq!(
            seen_of(&rec, stream).len(),
            want.len(),
            "{stream}: a record delivered twice"
        );
    }
    let seen = rec.seen();
    assert_shard_order(&seen);
    let shards_read: HashSet<&str> = seen.iter().map(|s| s.shard.as_str()).collect();
    assert_eq!(shards_read.len(), 1 + 2 + 3, "every shard of every stream");
    // Read through subscriptions only: c's third shard was subscribed to, and no shard of
    // any stream was polled.
    assert!(
        counters.get(
            m::FANOUT_SUBSCRIPTIONS,
            Some(("shard", "shardId-000000000002"))
        ) >= 1,
        "c, added while running, read with fan-out"
    );
    assert_eq!(get_records() - polled_before, 0, "no GetRecords call");

    // b is removed: its consumers stop, and its stream consumer stays registered.
    tracker.set(vec![
        StreamConfig::new(&a).unwrap(),
        StreamConfig::new(&c).unwrap(),
    ]);
    wait_until("b's processors asked to shut down", || {
        rec.events("shutdown_requested")
            .iter()
            .filter(|(_, lease)| stream_of(lease) == b)
            .count()
            == 2
    })
    .await;
    let consumers = stream_consumers(&kinesis, &b).await;
    assert_eq!(
        consumers.get(&app).map(String::as_str),
        Some("ACTIVE"),
        "never deregistered: {consumers:?}"
    );

    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    for stream in [&a, &b, &c] {
        assert!(
            stream_consumers(&kinesis, stream).await.contains_key(&app),
            "{stream}: still registered after the worker stopped"
        );
    }
}

#[tokio::test]
async fn a_missing_stream_at_start_up_is_an_error_and_nothing_is_consumed() {
    let stack = stack().await;
    let real = stack.create_stream("ms-real", 1).await.unwrap();
    let tracker = StaticStreamTracker::new(vec![
        StreamConfig::new(&real).unwrap(),
        StreamConfig::new("ms-no-such-stream").unwrap(),
    ])
    .unwrap();
    let app = kinesis_emulators::unique_name("ms-missing");
    let worker = Scheduler::multi_stream_builder(
        app.clone(),
        tracker,
        |_: &str| -> Box<dyn RecordProcessor> { unreachable!("no lease is taken") },
    )
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .build()
    .unwrap();
    let e = worker.run().await.unwrap_err();
    assert!(
        matches!(e, Error::StreamNotFound { ref stream } if stream == "ms-no-such-stream"),
        "{e}"
    );
    // Found before anything was created: no lease table.
    let tables = stack.dynamodb_client().list_tables().send().await.unwrap();
    assert!(!tables.table_names().contains(&app), "{tables:?}");
}

/// A stream listed by its ARN is addressed by ARN (`StreamARN` in DescribeStreamSummary,
/// ListShards, GetShardIterator and GetRecords), as a stream of another account must be.
/// On the fidelity peers (npm kinesis-local), which accept `StreamARN` on those calls; the
/// embedded ferrokinesis does not. One account here: this shows the ARN path reads every
/// record once; that an ARN is what is sent is pinned by `StreamAddress`'s unit test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_a_stream_listed_by_arn_is_read_by_arn() {
    // It polls: its GetRecords calls would count in the fan-out test's.
    let _alone = readers().lock().await;
    let stack = kinesis_emulators::LocalStack::builder()
        .with_backend(kinesis_emulators::Backend::Fidelity)
        .start_async()
        .await
        .expect("fidelity stack starts (needs node and npm)");
    let kinesis = stack.kinesis_client();
    let stream = stack.create_stream("ms-by-arn", 2).await.unwrap();
    let arn = stream_arn(&kinesis, &stream).await;
    let sent = records(40, 8, 1, "arn-");
    put_records(&kinesis, &stream, &sent, 1).await;
    let tracker = StaticStreamTracker::new(vec![StreamConfig::new(&arn).unwrap()]).unwrap();
    let app = kinesis_emulators::unique_name("ms-arn-app");
    let rec = Recorder::default();
    let worker = polling_worker(&stack, &app, tracker, &rec)
        .with_shard_sync_interval(Duration::from_millis(500))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    every_record_read(
        "every record of the stream listed by ARN",
        &rec,
        &stream,
        &sent,
    )
    .await;
    assert_eq!(seen_of(&rec, &stream).len(), sent.len(), "each record once");
    assert_shard_order(&rec.seen());
    // Its leases name the account of the ARN.
    let account = arn.split(':').nth(4).expect("an ARN");
    let by_stream = leases_by_stream(&LeaseTable::new(stack.dynamodb_client(), &app)).await;
    assert_eq!(by_stream[&stream].len(), 2);
    for lease in &by_stream[&stream] {
        assert_eq!(lease.stream.as_ref().unwrap().account_id(), account);
    }
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
}

/// The creation epoch (seconds) of `stream`, from `DescribeStreamSummary`.
async fn creation_epoch(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> i64 {
    stream_summary(kinesis, stream)
        .await
        .stream_creation_timestamp
        .secs()
}

/// A stream listed by name that is deleted while it is read with fan-out and created again
/// under the same name is a new stream (a new creation epoch, so a new identifier): its
/// shards are read from its own leases, not taken for the ended shards of the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_and_created_again_under_its_name_is_read_again() {
    let _alone = readers().lock().await;
    deleted_and_created_again(common::fan_out(), "efo-ms-re", true).await;
}

/// The same read by polling, the stream created again as soon as the second has turned
/// (a reader by polling need not see the deletion as a shard end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_and_created_again_under_its_name_is_read_again_by_polling() {
    let _alone = readers().lock().await;
    deleted_and_created_again(common::polling(), "ms-re", false).await;
}

/// Waits until the processors of `rec` saw every record of `sent` in `stream`.
async fn every_record_read(what: &str, rec: &Recorder, stream: &str, sent: &[Sent]) {
    wait_until(what, || {
        seen_of(rec, stream).into_iter().collect::<HashSet<_>>() == payloads(sent)
    })
    .await;
}

/// A multi-stream worker "w" of `app` reading by polling, with a 2 s failover time.
fn polling_worker(
    stack: &kinesis_emulators::LocalStack,
    app: &str,
    tracker: impl StreamTracker,
    rec: &Recorder,
) -> kinesis_consumer::SchedulerBuilder {
    Scheduler::multi_stream_builder(app, tracker, rec.factory("w"))
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("w")
        .with_failover_time(Duration::from_secs(2))
        .with_retrieval(common::polling())
}

/// A stream deleted while it is read by polling ends its shards for the worker at once
/// (`shard_ended`), as the docs say of both retrievals: the reader, whose `GetRecords`
/// answers `ResourceNotFoundException`, asks for a new iterator and finds the shard gone.
/// The tracker and shard syncs are an hour apart, so no look-up of the stream can stand
/// in for the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_while_read_by_polling_ends_its_shards() {
    let _alone = readers().lock().await;
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    let s = stack.create_stream("ms-del-poll", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("ms-del-poll-app");
    let r1 = records(20, 4, 1, "d-");
    put_records(&kinesis, &s, &r1, 1).await;
    let tracker = Tracker::default();
    tracker.set(vec![StreamConfig::new(&s).unwrap()]);
    let rec = Recorder::default();
    let hour = Duration::from_secs(3600);
    let worker = polling_worker(&stack, &app, tracker, &rec)
        .with_shard_sync_interval(hour)
        .with_stream_tracker_interval(hour)
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    every_record_read("the records of the stream", &rec, &s, &r1).await;
    stack.delete_stream(&s).await.unwrap();
    wait_until("the deleted stream's shard ended", || {
        !rec.events("shard_ended").is_empty()
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
}

/// A stream listed by name is read with `retrieval`, deleted (with `see_end`, until its
/// shard ended for the worker), created again under its name in a later second, and
/// written to: the worker reads the records of both, the new one's under its own
/// identifier, and the old identifier's leases go as a former stream's.
async fn deleted_and_created_again(
    retrieval: kinesis_consumer::Retrieval,
    name: &str,
    see_end: bool,
) {
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    let s = stack.create_stream(name, 1).await.unwrap();
    let old_epoch = creation_epoch(&kinesis, &s).await;
    let app = kinesis_emulators::unique_name(&format!("{name}-app"));
    let r1 = records(20, 4, 1, "r1-");
    put_records(&kinesis, &s, &r1, 1).await;
    let tracker = Tracker::default();
    tracker.set(vec![StreamConfig::new(&s)
        .unwrap()
        .with_initial_position(InitialPosition::TrimHorizon)]);
    let rec = Recorder::default();
    let worker = Scheduler::multi_stream_builder(&app, tracker.clone(), rec.factory("w"))
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("w")
        .with_failover_time(Duration::from_secs(2))
        .with_retrieval(retrieval)
        .with_shard_sync_interval(Duration::from_millis(500))
        .with_stream_tracker_interval(Duration::from_millis(200))
        .with_former_streams_deletion(FormerStreamsLeasesDeletionStrategy::DeleteAfter(
            Duration::from_secs(1),
        ))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    let seen_set = |rec: &Recorder| seen_of(rec, &s).into_iter().collect::<HashSet<_>>();
    wait_until("the records of the first stream", || {
        seen_set(&rec) == payloads(&r1)
    })
    .await;

    // Deleted: its shard ends for the worker (nothing more can come of it).
    stack.delete_stream(&s).await.unwrap();
    if see_end {
        wait_until("the deleted stream's shard ended", || {
            !rec.events("shard_ended").is_empty()
        })
        .await;
    }
    // Created again under the same name with a later creation epoch, so a new identifier
    // (a stream created again within the same second cannot be told apart: a documented
    // limit). Some emulators date a stream's creation back (ferrokinesis: by 2 s), so wait
    // until 3 s past the old epoch.
    while SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        <= old_epoch + 3
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kinesis
        .create_stream()
        .stream_name(&s)
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");
    let new_epoch = creation_epoch(&kinesis, &s).await;
    assert_ne!(
        new_epoch, old_epoch,
        "the stream created again has a later epoch"
    );
    let r2 = records(20, 4, 1, "r2-");
    put_records(&kinesis, &s, &r2, 1).await;
    let want: HashSet<Bytes> = payloads(&r1).union(&payloads(&r2)).cloned().collect();
    wait_until("the records of the stream created again", || {
        seen_set(&rec) == want
    })
    .await;
    // The new stream's records were read under its own identifier.
    let new_id = format!(":{s}:{new_epoch}:");
    let read_as_new: HashSet<Bytes> = rec
        .seen()
        .into_iter()
        .filter(|seen| seen.shard.contains(&new_id))
        .map(|seen| seen.data)
        .collect();
    assert_eq!(read_as_new, payloads(&r2), "under {new_id}");
    // Only the new stream's leases stay: the old identifier's go as a former stream's.
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    let start = std::time::Instant::now();
    loop {
        let epochs: HashSet<String> = table
            .list_leases()
            .await
            .unwrap()
            .iter()
            .map(|l| l.lease_key.split(':').nth(2).unwrap().to_owned())
            .collect();
        if epochs == HashSet::from([new_epoch.to_string()]) {
            break;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "the old leases never deleted: {epochs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
}
