//! Shared pieces of the consumer integration tests: a local stack, record writers (plain
//! PutRecords and KPL aggregates via kinesis-agg), and a recording processor.
#![allow(dead_code, unreachable_pub, clippy::type_complexity)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use kinesis_agg::{Aggregator, UserRecord};
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::{
    Checkpoint, Error, InitializationInput, Lease, LeaseLostInput, ProcessRecordsInput,
    RecordProcessor, Retrieval, Scheduler, ShardEndedInput, ShutdownRequestedInput,
};
use kinesis_emulators::LocalStack;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Long enough for any step of these tests on a slow machine; only a bound to fail on
/// instead of hanging, never a measured assertion.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub async fn stack() -> LocalStack {
    LocalStack::builder()
        .start_async()
        .await
        .expect("local stack")
}

/// A user record as the test wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sent {
    pub partition_key: String,
    pub data: Bytes,
}

/// Puts user records: every `aggregate_every`-th group of `per_aggregate` records with the
/// same key goes out as one KPL aggregate, the rest as plain records. PutRecords batches of
/// up to 500 entries; failed entries are retried.
pub async fn put_records(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[Sent],
    per_aggregate: usize,
) {
    let mut entries: Vec<PutRecordsRequestEntry> = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let r = &records[i];
        // Aggregate runs of the same key (so every sub-record lies in the routed shard).
        let mut j = i + 1;
        while per_aggregate > 1
            && j < records.len()
            && j - i < per_aggregate
            && records[j].partition_key == r.partition_key
        {
            j += 1;
        }
        if j - i > 1 {
            let mut agg = Aggregator::builder().build().expect("aggregator");
            for s in &records[i..j] {
                agg.try_add(UserRecord::new(s.partition_key.clone(), s.data.clone()).unwrap())
                    .expect("fits");
            }
            let k = agg.finish().expect("records");
            let mut e = PutRecordsRequestEntry::builder()
                .partition_key(k.partition_key.clone())
                .data(Blob::new(k.data.to_vec()));
            if let Some(h) = k.explicit_hash_key {
                e = e.explicit_hash_key(h.to_string());
            }
            entries.push(e.build().unwrap());
        } else {
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(r.partition_key.clone())
                    .data(Blob::new(r.data.to_vec()))
                    .build()
                    .unwrap(),
            );
        }
        i = j;
        if entries.len() == 500 {
            send(client, stream, std::mem::take(&mut entries)).await;
        }
    }
    if !entries.is_empty() {
        send(client, stream, entries).await;
    }
}

/// One user record put by [`put_one_by_one`]: where it landed and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub shard_id: String,
    pub sequence_number: String,
    pub data: String,
}

/// Puts `n` records one `PutRecord` at a time (data `r{i}`, key `k{i}`), so that each
/// one's shard and sequence number are known.
pub async fn put_one_by_one(client: &aws_sdk_kinesis::Client, stream: &str, n: usize) -> Vec<Put> {
    let mut puts = Vec::with_capacity(n);
    for i in 0..n {
        let data = format!("r{i}");
        let out = client
            .put_record()
            .stream_name(stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(data.clone()))
            .send()
            .await
            .expect("PutRecord");
        puts.push(Put {
            shard_id: out.shard_id().to_owned(),
            sequence_number: out.sequence_number().to_owned(),
            data,
        });
    }
    puts
}

/// PutRecords, retrying failed entries in order (per key order is kept because a failed
/// entry and every later entry of the batch with the same key are re-sent together).
pub async fn send(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) {
    integration_tests::traffic::send(client, stream, entries).await;
}

/// The stream's shards (one `ListShards` page: the tests' streams are small).
pub async fn list_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<aws_sdk_kinesis::types::Shard> {
    kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec()
}

/// One user record as a processor saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub worker: String,
    pub shard: String,
    pub sequence_number: String,
    pub sub_sequence_number: u64,
    pub partition_key: String,
    pub data: Bytes,
}

/// A checkpoint a processor wrote, with its outcome.
#[derive(Debug, Clone)]
pub struct CheckpointEvent {
    pub worker: String,
    pub shard: String,
    pub position: Option<(String, u64)>,
    pub ok: bool,
    pub lease_lost: bool,
}

/// Everything the processors of one test saw, in processing order.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub checkpoints: Arc<Mutex<Vec<CheckpointEvent>>>,
    pub lifecycle: Arc<Mutex<Vec<(String, String, &'static str)>>>,
}

impl Recorder {
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn events(&self, what: &str) -> Vec<(String, String)> {
        self.lifecycle
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.2 == what)
            .map(|e| (e.0.clone(), e.1.clone()))
            .collect()
    }

    /// Notes the user records `worker`'s processor of `shard` was handed, in order.
    pub fn saw(
        &self,
        worker: &str,
        shard: &str,
        records: &[kinesis_consumer::KinesisClientRecord],
    ) {
        let mut seen = self.seen.lock().unwrap();
        for r in records {
            seen.push(Seen {
                worker: worker.to_owned(),
                shard: shard.to_owned(),
                sequence_number: r.sequence_number.clone(),
                sub_sequence_number: r.sub_sequence_number,
                partition_key: r.partition_key.to_string(),
                data: r.data.clone(),
            });
        }
    }

    /// A factory of recording processors for `worker`.
    pub fn factory(
        &self,
        worker: &str,
    ) -> impl Fn(&str) -> Box<dyn RecordProcessor> + Send + Sync + 'static {
        let rec = self.clone();
        let worker = worker.to_owned();
        move |shard: &str| {
            Box::new(RecordingProcessor {
                worker: worker.clone(),
                shard: shard.to_owned(),
                rec: rec.clone(),
            }) as Box<dyn RecordProcessor>
        }
    }
}

/// Records every user record, checkpoints after every batch, at shard end and at shutdown.
#[derive(Debug)]
pub struct RecordingProcessor {
    worker: String,
    shard: String,
    rec: Recorder,
}

impl RecordingProcessor {
    fn event(&self, what: &'static str) {
        self.rec
            .lifecycle
            .lock()
            .unwrap()
            .push((self.worker.clone(), self.shard.clone(), what));
    }

    async fn checkpoint(
        &self,
        cp: &kinesis_consumer::Checkpointer,
        position: Option<(String, u64)>,
    ) {
        let res = cp.checkpoint().await;
        self.rec.checkpoints.lock().unwrap().push(CheckpointEvent {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
            position,
            ok: res.is_ok(),
            lease_lost: matches!(res, Err(Error::LeaseLost { .. })),
        });
    }
}

#[async_trait]
impl RecordProcessor for RecordingProcessor {
    async fn initialize(&mut self, _: InitializationInput) {
        self.event("initialize");
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let last = input
            .records
            .last()
            .map(|r| (r.sequence_number.clone(), r.sub_sequence_number));
        self.rec.saw(&self.worker, &self.shard, &input.records);
        self.checkpoint(&input.checkpointer, last).await;
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {
        self.event("lease_lost");
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        self.event("shard_ended");
        self.checkpoint(&input.checkpointer, None).await;
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        self.event("shutdown_requested");
        self.checkpoint(&input.checkpointer, None).await;
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lease table of `app` as a map key → lease.
pub async fn leases(stack: &LocalStack, app: &str) -> HashMap<String, kinesis_consumer::Lease> {
    LeaseTable::new(stack.dynamodb_client(), app)
        .list_leases()
        .await
        .expect("scan")
        .into_iter()
        .map(|l| (l.lease_key.clone(), l))
        .collect()
}

/// Polling for tests: 100 ms idle pauses.
pub fn polling() -> Retrieval {
    let mut polling = kinesis_consumer::PollingConfig::default();
    polling.idle_time_between_reads = Duration::from_millis(100);
    Retrieval::Polling(polling)
}

/// Enhanced fan-out with the defaults (the consumer named after the application).
pub fn fan_out() -> Retrieval {
    Retrieval::FanOut(kinesis_consumer::FanOutConfig::default())
}

/// A scheduler for tests: short failover, fast polling.
pub fn scheduler(
    stack: &LocalStack,
    app: &str,
    stream: &str,
    worker: &str,
    rec: &Recorder,
    failover: Duration,
) -> Scheduler {
    scheduler_builder(stack, app, stream, worker, rec, failover)
        .build()
        .expect("scheduler")
}

/// [`scheduler`], before `build`.
pub fn scheduler_builder(
    stack: &LocalStack,
    app: &str,
    stream: &str,
    worker: &str,
    rec: &Recorder,
    failover: Duration,
) -> kinesis_consumer::SchedulerBuilder {
    scheduler_builder_with(stack, app, stream, worker, rec.factory(worker), failover)
}

/// [`scheduler_builder`] with processors made by `factory`.
pub fn scheduler_builder_with(
    stack: &LocalStack,
    app: &str,
    stream: &str,
    worker: &str,
    factory: impl kinesis_consumer::RecordProcessorFactory,
    failover: Duration,
) -> kinesis_consumer::SchedulerBuilder {
    Scheduler::builder(app, stream, factory)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id(worker)
        .with_failover_time(failover)
        .with_retrieval(polling())
        .with_parent_poll_interval(Duration::from_millis(200))
        .with_shard_sync_interval(Duration::from_secs(1))
}

/// How many different user records were seen.
pub fn distinct(rec: &Recorder) -> usize {
    rec.seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.data.clone())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Checks the per-shard order of what was seen: strictly increasing (sequence, sub) per
/// shard and worker tenure.
pub fn assert_shard_order(seen: &[Seen]) {
    let mut last: HashMap<(&str, &str), (kinesis_consumer::SequenceNumber, u64)> = HashMap::new();
    for s in seen {
        let pos = (
            kinesis_consumer::SequenceNumber::parse(&s.sequence_number).unwrap(),
            s.sub_sequence_number,
        );
        if let Some(prev) = last.get(&(s.worker.as_str(), s.shard.as_str())) {
            assert!(
                *prev < pos,
                "out of order on {}: {:?} then {:?}",
                s.shard,
                prev,
                pos
            );
        }
        last.insert((s.worker.as_str(), s.shard.as_str()), pos);
    }
}

/// The checkpoint a user record position makes.
pub fn checkpoint_of(seq: &str, sub: u64) -> Checkpoint {
    Checkpoint::at(seq, sub).unwrap()
}

/// Every conditional lease operation against the stack's DynamoDB.
pub async fn lease_table_scenario(stack: &LocalStack) {
    let table_name = kinesis_emulators::unique_name("leases");
    let table = LeaseTable::new(stack.dynamodb_client(), &table_name);
    table.create_table_if_not_exists().await.unwrap();
    table.create_table_if_not_exists().await.unwrap(); // idempotent

    let lease = Lease::new("shardId-000000000001", Checkpoint::TrimHorizon)
        .with_parents(vec!["shardId-000000000000".into()]);
    assert!(table.create_lease_if_not_exists(&lease).await.unwrap());
    assert!(!table.create_lease_if_not_exists(&lease).await.unwrap());

    let read = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(read, lease);
    assert!(table.take_lease(&read, "w1").await.unwrap());
    // A second take from the same (now stale) read is refused.
    assert!(!table.take_lease(&read, "w2").await.unwrap());
    let held = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(held.owner.as_deref(), Some("w1"));
    assert_eq!(held.counter, 1);
    assert_eq!(held.owner_switches_since_checkpoint, 1);

    assert!(table.renew_lease(&held).await.unwrap());
    assert!(!table.renew_lease(&held).await.unwrap(), "stale counter");
    let held = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(held.counter, 2);

    // Another worker steals; the old owner's checkpoint is refused and changes nothing.
    assert!(table.take_lease(&held, "w2").await.unwrap());
    let cp = checkpoint_of(
        "49590338271490256608559692538361571095921575989136588898",
        3,
    );
    assert!(!table.update_checkpoint(&held, &cp, &[]).await.unwrap());
    let stolen = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(stolen.checkpoint, Checkpoint::TrimHorizon);
    assert_eq!(stolen.owner.as_deref(), Some("w2"));

    // The new owner checkpoints, two-phase and plain.
    let state = Bytes::from_static(b"app-state");
    assert!(table
        .prepare_checkpoint(&stolen, &cp, Some(&state))
        .await
        .unwrap());
    let mut pending = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(pending.pending_checkpoint, Some(cp.clone()));
    assert_eq!(pending.pending_checkpoint_state, Some(state));
    assert!(table.update_checkpoint(&pending, &cp, &[]).await.unwrap());
    pending.counter += 1;
    let done = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(done.checkpoint, cp);
    assert_eq!(done.pending_checkpoint, None);
    assert_eq!(done.pending_checkpoint_state, None);
    assert_eq!(done.owner_switches_since_checkpoint, 0);

    // Not finished: cannot be deleted. Evicting leaves it unowned.
    assert!(!table.delete_finished_lease(&lease.lease_key).await.unwrap());
    assert!(table.evict_lease(&done).await.unwrap());
    let free = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(free.owner, None);
    assert!(table.take_lease(&free, "w3").await.unwrap());
    let mut mine = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert!(table
        .update_checkpoint(
            &mine,
            &Checkpoint::ShardEnd,
            &["shardId-000000000002".into()]
        )
        .await
        .unwrap());
    mine.counter += 1;
    let ended = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(ended.child_shard_ids, vec!["shardId-000000000002"]);
    assert!(table.delete_finished_lease(&lease.lease_key).await.unwrap());
    assert!(table.get_lease(&lease.lease_key).await.unwrap().is_none());
    // Updates never resurrect a deleted lease.
    assert!(!table.renew_lease(&mine).await.unwrap());
    assert!(table.get_lease(&lease.lease_key).await.unwrap().is_none());

    // Items written by other tools: odd ones are skipped by scans, with the rest kept.
    let ddb = stack.dynamodb_client();
    use aws_sdk_dynamodb::types::AttributeValue as A;
    ddb.put_item()
        .table_name(&table_name)
        .item("leaseKey", A::S("no-counter".into()))
        .item("checkpoint", A::S("TRIM_HORIZON".into()))
        .send()
        .await
        .unwrap();
    ddb.put_item()
        .table_name(&table_name)
        .item("leaseKey", A::S("java-written".into()))
        .item("leaseCounter", A::N("12".into()))
        .item("leaseOwner", A::S("java-worker".into()))
        .item("checkpoint", A::S("SHARD_END".into()))
        .item("checkpointSubSequenceNumber", A::N("0".into()))
        .item("pendingCheckpointState", A::N("5".into()))
        .item("parentShardId", A::Ss(vec!["a".into(), "b".into()]))
        .send()
        .await
        .unwrap();
    table
        .create_lease_if_not_exists(&Lease::new("ours", Checkpoint::Latest))
        .await
        .unwrap();
    let mut keys: Vec<String> = table
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.lease_key)
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["java-written", "ours"]);
    let err = table.get_lease("no-counter").await.unwrap_err();
    assert!(matches!(err, Error::InvalidLease { .. }), "{err}");
}

/// Processing index of every record, by key.
fn order_by_key(seen: &[Seen]) -> HashMap<String, Vec<usize>> {
    let mut m: HashMap<String, Vec<usize>> = HashMap::new();
    for s in seen {
        let text = std::str::from_utf8(&s.data).unwrap();
        let n: usize = text.rsplit(':').next().unwrap().parse().unwrap();
        m.entry(s.partition_key.clone()).or_default().push(n);
    }
    m
}

/// Splits one shard and merges two others while a worker consumes; checks that every key's
/// records arrive in put order (so parents finished before children) and nothing is lost.
pub async fn reshard_scenario(
    stack: &LocalStack,
    keys: usize,
    per_phase: usize,
    retrieval: Retrieval,
) {
    let stream = stack.create_stream("kcl-reshard", 3).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-reshard-app");
    let kinesis = stack.kinesis_client();
    let phase = |p: usize| -> Vec<Sent> {
        (0..per_phase)
            .flat_map(|i| {
                (0..keys).map(move |k| Sent {
                    partition_key: format!("key-{k}"),
                    data: Bytes::from(format!("key-{k}:{}", p * per_phase + i)),
                })
            })
            .collect()
    };
    let rec = Recorder::default();
    let worker = scheduler_builder(stack, &app, &stream, "w1", &rec, Duration::from_secs(3))
        .with_retrieval(retrieval)
        .build()
        .expect("scheduler");
    let run = spawn_run(&worker);
    put_records(&kinesis, &stream, &phase(0), 1).await;

    let shards = list_shards(&kinesis, &stream).await;
    assert_eq!(shards.len(), 3);
    integration_tests::kinesis::split_in_half(&kinesis, &stream, shards[0].shard_id()).await;
    put_records(&kinesis, &stream, &phase(1), 1).await;
    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(shards[1].shard_id())
        .adjacent_shard_to_merge(shards[2].shard_id())
        .send()
        .await
        .unwrap();
    kinesis_emulators::wait_for_stream_active(&kinesis, &stream, DEADLINE)
        .await
        .unwrap();
    put_records(&kinesis, &stream, &phase(2), 1).await;

    let total = keys * per_phase * 3;
    wait_until("every record", || rec.count() >= total).await;
    // Children of all three parents ran, so every parent reached SHARD_END first.
    wait_until("three shard ends", || rec.events("shard_ended").len() >= 3).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let seen = rec.seen();
    assert_eq!(seen.len(), total, "nothing lost, nothing twice");
    for (key, order) in order_by_key(&seen) {
        let expected: Vec<usize> = (0..per_phase * 3).collect();
        assert_eq!(
            order, expected,
            "{key}: parent records before child records"
        );
    }
    let table = leases(stack, &app).await;
    let parents = [
        shards[0].shard_id(),
        shards[1].shard_id(),
        shards[2].shard_id(),
    ];
    for p in parents {
        // Finished parents are SHARD_END, or already cleaned up once children progressed.
        if let Some(l) = table.get(p) {
            assert_eq!(l.checkpoint, Checkpoint::ShardEnd, "{p}");
        }
    }
    let merged: Vec<&Lease> = table
        .values()
        .filter(|l| l.parent_shard_ids.len() == 2)
        .collect();
    assert_eq!(
        merged.len(),
        1,
        "the merged child's lease names both parents"
    );
}

/// Two workers share 4 shards; one is killed (aborted: no release) while records flow; the
/// other takes its leases, and nothing is lost; only records after the dead worker's last
/// checkpoint come again.
pub async fn killed_worker_scenario(stack: &LocalStack, retrieval: Retrieval) {
    let stream = stack.create_stream("kcl-kill", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-kill-app");
    let kinesis = stack.kinesis_client();
    let rec = Recorder::default();
    let failover = Duration::from_secs(2);
    let a = scheduler_builder(stack, &app, &stream, "a", &rec, failover)
        .with_retrieval(retrieval.clone())
        .build()
        .expect("scheduler");
    let b = scheduler_builder(stack, &app, &stream, "b", &rec, failover)
        .with_retrieval(retrieval)
        .build()
        .expect("scheduler");
    let run_a = spawn_run(&a);
    wait_until("a holds every lease", || {
        a.coordinator().held_lease_keys().len() == 4
    })
    .await;
    let run_b = spawn_run(&b);
    wait_until("b steals", || !b.coordinator().held_lease_keys().is_empty()).await;
    let a_keys = a.coordinator().held_lease_keys();
    // Records flow while a dies.
    let producer = {
        let kinesis = kinesis.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for batch in 0..20 {
                put_records(
                    &kinesis,
                    &stream,
                    &records(300, 100, 1, &format!("b{batch}-")),
                    1,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_until("a processing", || {
        rec.seen().iter().any(|s| s.worker == "a")
    })
    .await;
    run_a.abort(); // like kill -9: no release, no more renewals
    let killed_at = std::time::Instant::now();
    let _ = run_a.await;
    wait_until("b takes a's leases", || {
        b.coordinator().held_lease_keys().len() == 4
    })
    .await;
    let taken_after = killed_at.elapsed();
    producer.await.unwrap();
    wait_until("every record", || distinct(&rec) >= 6_000).await;
    b.graceful_shutdown().await;
    run_b.await.unwrap().unwrap();
    eprintln!("leases of the killed worker taken after {taken_after:?} (failover {failover:?})");

    // Duplicates only after the dead worker's last successful checkpoint on that shard.
    let last_ok: HashMap<String, (String, u64)> = rec
        .checkpoints
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.worker == "a" && c.ok)
        .filter_map(|c| c.position.clone().map(|p| (c.shard.clone(), p)))
        .collect();
    let seen = rec.seen();
    let mut first_by: HashMap<&Bytes, &Seen> = HashMap::new();
    for s in &seen {
        match first_by.get(&s.data) {
            None => {
                first_by.insert(&s.data, s);
            }
            Some(first) => {
                assert_eq!(first.worker, "a", "only the dead worker's records repeat");
                assert!(a_keys.contains(&s.shard));
                if let Some((seq, sub)) = last_ok.get(&s.shard) {
                    assert!(
                        !checkpoint_of(seq, *sub).covers(
                            &kinesis_consumer::SequenceNumber::parse(&s.sequence_number).unwrap(),
                            s.sub_sequence_number
                        ),
                        "a checkpointed record was delivered again"
                    );
                }
            }
        }
    }
    assert_eq!(first_by.len(), 6_000, "nothing lost");
}

/// `n` records over `keys` keys, `run` records of a key in a row, data `{tag}{i}`.
pub fn records(n: usize, keys: usize, run: usize, tag: &str) -> Vec<Sent> {
    (0..n)
        .map(|i| Sent {
            partition_key: format!("k{}", (i / run) % keys),
            data: Bytes::from(format!("{tag}{i}")),
        })
        .collect()
}

/// Counter totals read through a [`DebuggingRecorder`]'s snapshotter, whose snapshots
/// drain what they read: summed here over every snapshot taken.
pub struct CounterTotals {
    /// Reads (and drains) the recorder.
    snapshotter: Snapshotter,
    /// Every counter's total so far.
    totals: std::sync::Mutex<std::collections::HashMap<metrics_util::CompositeKey, u64>>,
}

impl CounterTotals {
    /// Totals of the counters `recorder` records.
    pub fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            totals: Default::default(),
        }
    }

    /// The total of counter `name` with `label` among its labels (if given), summed over
    /// the other labels.
    pub fn get(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        let mut totals = self.totals.lock().expect("not poisoned");
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            if let DebugValue::Counter(n) = value {
                *totals.entry(key).or_default() += n;
            }
        }
        totals
            .iter()
            .filter(|(k, _)| k.key().name() == name)
            .filter(|(k, _)| {
                label.is_none_or(|(lk, lv)| {
                    k.key().labels().any(|l| l.key() == lk && l.value() == lv)
                })
            })
            .map(|(_, n)| n)
            .sum()
    }
}

/// The counters of this test binary: one global recorder, installed on first use and
/// shared by the binary's tests (each reads names of its own, or a lower bound of what it
/// did itself).
pub fn counters() -> &'static CounterTotals {
    static COUNTERS: std::sync::OnceLock<CounterTotals> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let counters = CounterTotals::new(&recorder);
        recorder.install().expect("the only recorder");
        counters
    })
}

/// Runs a worker in a task.
pub fn spawn_run(s: &Scheduler) -> tokio::task::JoinHandle<Result<(), Error>> {
    let s = s.clone();
    tokio::spawn(async move { s.run().await })
}

/// Records put before a timestamp are skipped by a worker starting `AtTimestamp`, those put
/// after it are delivered.
pub async fn at_timestamp_scenario(stack: &LocalStack) {
    let stream = stack.create_stream("kcl-at-ts", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-at-ts-app");
    let kinesis = stack.kinesis_client();
    let sent = |tag: &str| -> Vec<Sent> {
        (0..40)
            .map(|i| Sent {
                partition_key: format!("k{i}"),
                data: Bytes::from(format!("{tag}{i}")),
            })
            .collect()
    };
    put_records(&kinesis, &stream, &sent("before"), 1).await;
    // Some emulators keep arrival times in whole seconds: leave a clear gap on both sides.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let at = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after = sent("after");
    put_records(&kinesis, &stream, &after, 1).await;
    let rec = Recorder::default();
    let worker = scheduler_builder(stack, &app, &stream, "w", &rec, Duration::from_secs(10))
        .with_initial_position(kinesis_consumer::InitialPosition::AtTimestamp(at))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    wait_until("the records after the timestamp", || {
        rec.count() >= after.len()
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let mut got: Vec<Bytes> = rec.seen().into_iter().map(|s| s.data).collect();
    let mut want: Vec<Bytes> = after.into_iter().map(|s| s.data).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exactly the records at or after the timestamp");
    for lease in leases(stack, &app).await.values() {
        assert_ne!(
            lease.checkpoint,
            Checkpoint::AtTimestamp,
            "progressed past the start"
        );
    }
}
