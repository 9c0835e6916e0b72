//! The `RecordStream` API end to end: every record once, in shard order, through a split;
//! batches checkpointed once dropped; a slow reader slows the shards instead of losing
//! anything; the stream ends after the worker's run.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use kinesis_consumer::{
    Checkpoint, InitialPosition, Scheduler, StaticStreamTracker, StreamCheckpointing, StreamConfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_stream_reads_every_record_once_in_order_and_ends_with_the_run() {
    let stack = stack().await;
    let stream = stack.create_stream("rec-stream", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("rec-stream-app");
    let kinesis = stack.kinesis_client();
    let sent = records(600, 30, 1, "s");
    put_records(&kinesis, &stream, &sent, 1).await;
    let (worker, mut batches) = reader(&stack, Scheduler::stream_builder(&app, &stream))
        .with_stream_buffer(1)
        .build_stream()
        .unwrap();
    let run = spawn_run(&worker);
    let mut got: Vec<(String, String, u64, bytes::Bytes)> = Vec::new();
    let mut last_per_shard: HashMap<String, Checkpoint> = HashMap::new();
    let mut sent = sent;
    let mut split = false;
    while got.len() < sent.len() || !split {
        if got.len() == sent.len() {
            // Split a shard and put more: the parent's end is checkpointed by the stream,
            // and its children follow.
            split_first_shard(&kinesis, &stream).await;
            let more = records(200, 30, 1, "t");
            put_records(&kinesis, &stream, &more, 1).await;
            sent.extend(more);
            split = true;
        }
        let batch = next_batch(&mut batches).await;
        // A slow reader: the shards wait for it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for r in &batch.records {
            got.push((
                batch.shard_id.clone(),
                r.sequence_number.clone(),
                r.sub_sequence_number,
                r.data.clone(),
            ));
        }
        if let Some(checkpoint) = checkpoint_after(&batch) {
            last_per_shard.insert(batch.shard_id.clone(), checkpoint);
        }
    }
    // Stop while reading on: the stream ends once the run has.
    stop_reading_on(&worker, &mut batches, run).await;

    assert_eq!(got.len(), sent.len(), "every record once");
    let mut data: Vec<&bytes::Bytes> = got.iter().map(|g| &g.3).collect();
    data.sort();
    data.dedup();
    assert_eq!(data.len(), sent.len());
    // Per shard, in sequence order.
    let mut per_shard: HashMap<&str, Vec<kinesis_consumer::SequenceNumber>> = HashMap::new();
    for (shard, seq, ..) in &got {
        per_shard
            .entry(shard)
            .or_default()
            .push(kinesis_consumer::SequenceNumber::parse(seq).unwrap());
    }
    for (shard, seqs) in per_shard {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{shard} out of order");
    }
    // Dropped batches were checkpointed (the default), up to each open shard's last
    // record; the split parent is at its end.
    let table = leases(&stack, &app).await;
    for (shard, last) in last_per_shard {
        let checkpoint = &table[&shard].checkpoint;
        assert!(
            *checkpoint == last || checkpoint.is_shard_end(),
            "{shard}: {checkpoint:?}"
        );
    }
    assert!(table.values().any(|l| l.checkpoint.is_shard_end()));
    assert!(
        table.values().any(|l| !l.parent_shard_ids.is_empty()),
        "children leased"
    );
}

/// A multi-stream worker read as a record stream: every record of both streams once, each
/// batch naming its stream and the Kinesis shard id (not the lease key), checkpointed
/// under the stream's own lease keys once dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_stream_record_stream_names_each_batchs_stream() {
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    let TwoStreams { a, b, app } = TwoStreams::create(&stack, "rec-ms", 2).await;
    let (sent_a, sent_b) = put_to_both(&kinesis, (&a, &b), (120, 80), ("a", "b")).await;
    let tracker = StaticStreamTracker::new(from_oldest(&[&a, &b])).unwrap();
    let (worker, mut batches) = reader(
        &stack,
        Scheduler::multi_stream_stream_builder(&app, tracker),
    )
    .build_stream()
    .unwrap();
    let run = spawn_run(&worker);
    // (stream name, shard id) -> payloads, and the last record of each.
    let mut got: HashMap<(String, String), Vec<bytes::Bytes>> = HashMap::new();
    let mut last: HashMap<(String, String), Checkpoint> = HashMap::new();
    let total = sent_a.len() + sent_b.len();
    while got.values().map(Vec::len).sum::<usize>() < total {
        let batch = next_batch(&mut batches).await;
        let stream = batch
            .stream
            .as_ref()
            .expect("a multi-stream batch names its stream");
        assert!(
            batch.shard_id.starts_with("shardId-"),
            "the Kinesis shard id, not the lease key: {}",
            batch.shard_id
        );
        let key = (stream.stream_name().to_owned(), batch.shard_id.clone());
        if let Some(checkpoint) = checkpoint_after(&batch) {
            last.insert(key.clone(), checkpoint);
        }
        got.entry(key)
            .or_default()
            .extend(batch.records.iter().map(|r| r.data.clone()));
    }
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    for (stream, sent) in [(&a, &sent_a), (&b, &sent_b)] {
        let seen = got
            .iter()
            .filter(|((s, _), _)| s == stream)
            .flat_map(|(_, data)| data);
        assert_every_record_once(stream, seen, sent);
    }
    // Checkpointed under each stream's own lease key (account:stream:epoch:shard).
    let table = leases(&stack, &app).await;
    for ((stream, shard), checkpoint) in last {
        let lease = lease_of(&table, &stream, &shard);
        assert_eq!(lease.checkpoint, checkpoint, "{stream}/{shard}");
    }
}

/// Shuts `worker` down in its own task while reading on (as a reader must: the shutdown
/// waits for the batches handed out): nothing new was put, so no batch with records comes;
/// the stream ends with the run, which ends well.
async fn stop_reading_on(
    worker: &Scheduler,
    batches: &mut kinesis_consumer::RecordStream,
    run: tokio::task::JoinHandle<Result<(), kinesis_consumer::Error>>,
) {
    let stopper = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.graceful_shutdown().await })
    };
    while let Some(batch) = tokio::time::timeout(DEADLINE, batches.next())
        .await
        .expect("the stream ends in time")
    {
        assert!(batch.records.is_empty(), "nothing new was put: {batch:?}");
    }
    stopper.await.unwrap();
    run.await.unwrap().unwrap();
}

/// `seen` (the payloads read of `stream`) holds each of `sent` once, and nothing else.
fn assert_every_record_once<'a>(
    stream: &str,
    seen: impl IntoIterator<Item = &'a bytes::Bytes>,
    sent: &[Sent],
) {
    let mut seen: Vec<&bytes::Bytes> = seen.into_iter().collect();
    seen.sort();
    let mut want: Vec<&bytes::Bytes> = sent.iter().map(|s| &s.data).collect();
    want.sort();
    assert_eq!(
        seen, want,
        "{stream}: every record once, under its own stream"
    );
}

/// `streams` as a multi-stream test lists them: each read from its oldest record.
fn from_oldest(streams: &[&str]) -> Vec<StreamConfig> {
    streams
        .iter()
        .map(|stream| {
            StreamConfig::new(stream)
                .unwrap()
                .with_initial_position(InitialPosition::TrimHorizon)
        })
        .collect()
}

/// The two streams of a multi-stream test and the application reading them.
struct TwoStreams {
    /// The first stream, `<name>-a`, with the shards the test asks for.
    a: String,
    /// The second stream, `<name>-b`, with one shard.
    b: String,
    /// A fresh application name, `<name>-app`, so the test has a lease table of its own.
    app: String,
}

impl TwoStreams {
    /// Creates `<name>-a` with `a_shards` shards and `<name>-b` with one, and names the
    /// application.
    async fn create(stack: &kinesis_emulators::LocalStack, name: &str, a_shards: i32) -> Self {
        Self {
            a: stack
                .create_stream(&format!("{name}-a"), a_shards)
                .await
                .unwrap(),
            b: stack.create_stream(&format!("{name}-b"), 1).await.unwrap(),
            app: kinesis_emulators::unique_name(&format!("{name}-app")),
        }
    }
}

/// Puts `counts.0` records tagged `tags.0` to `streams.0` and `counts.1` tagged `tags.1`
/// to `streams.1` (ten keys, see [`records`]); returns what each was sent.
async fn put_to_both(
    kinesis: &aws_sdk_kinesis::Client,
    streams: (&str, &str),
    counts: (usize, usize),
    tags: (&str, &str),
) -> (Vec<Sent>, Vec<Sent>) {
    let sent = (
        records(counts.0, 10, 1, tags.0),
        records(counts.1, 10, 1, tags.1),
    );
    put_records(kinesis, streams.0, &sent.0, 1).await;
    put_records(kinesis, streams.1, &sent.1, 1).await;
    sent
}

/// `builder` as these tests' reader: the stack's clients, worker `w`, polling (a test may
/// set another retrieval after).
fn reader(
    stack: &kinesis_emulators::LocalStack,
    builder: kinesis_consumer::SchedulerBuilder,
) -> kinesis_consumer::SchedulerBuilder {
    builder
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("w")
        .with_retrieval(polling())
}

/// The next batch, which must come within the deadline: the worker runs, so the stream
/// goes on.
async fn next_batch(batches: &mut kinesis_consumer::RecordStream) -> kinesis_consumer::ShardBatch {
    tokio::time::timeout(DEADLINE, batches.next())
        .await
        .expect("a batch in time")
        .expect("the stream goes on while the worker runs")
}

/// The checkpoint at `batch`'s last record (none for a batch without records).
fn checkpoint_after(batch: &kinesis_consumer::ShardBatch) -> Option<Checkpoint> {
    batch
        .records
        .last()
        .map(|r| checkpoint_of(&r.sequence_number, r.sub_sequence_number))
}

/// The multi-stream lease (`account:stream:epoch:shardId`) of `stream`'s `shard` in
/// `table` (any shard of it for "").
fn lease_of<'a>(
    table: &'a HashMap<String, kinesis_consumer::Lease>,
    stream: &str,
    shard: &str,
) -> &'a kinesis_consumer::Lease {
    table
        .iter()
        .find(|(k, _)| k.split(':').nth(1) == Some(stream) && k.ends_with(shard))
        .map(|(_, l)| l)
        .unwrap_or_else(|| panic!("a lease of {stream}/{shard}: {:?}", table.keys()))
}

/// The stream's first shard, as listed.
async fn first_shard(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> aws_sdk_kinesis::types::Shard {
    list_shards(kinesis, stream).await.swap_remove(0)
}

/// Splits the stream's first shard in the middle of its range and waits until ACTIVE.
async fn split_first_shard(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    let shard = first_shard(kinesis, stream).await;
    integration_tests::kinesis::split_in_half(kinesis, stream, shard.shard_id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_checkpointing_leaves_the_checkpoint_to_the_reader() {
    let stack = stack().await;
    let stream = stack.create_stream("rec-stream-manual", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("rec-stream-manual-app");
    let kinesis = stack.kinesis_client();
    put_records(&kinesis, &stream, &records(50, 5, 1, "m"), 1).await;
    let (worker, mut batches) = reader(&stack, Scheduler::stream_builder(&app, &stream))
        .with_stream_checkpointing(StreamCheckpointing::Manual)
        .build_stream()
        .unwrap();
    let run = spawn_run(&worker);
    let mut n = 0;
    while n < 50 {
        let batch = next_batch(&mut batches).await;
        n += batch.records.len();
    }
    worker.graceful_shutdown().await;
    while batches.next().await.is_some() {}
    run.await.unwrap().unwrap();
    let table = leases(&stack, &app).await;
    assert_eq!(
        table.values().next().unwrap().checkpoint,
        kinesis_consumer::Checkpoint::TrimHorizon,
        "the reader never checkpointed"
    );
    // A builder with a processor refuses build_stream, and a stream builder refuses build.
    let e = Scheduler::stream_builder(&app, &stream)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("build_stream"), "{e}");
}

/// A reader that drops its `RecordStream` while the worker runs on: the batches waiting in
/// it and those read afterwards reach nobody, so nothing past the last batch it dropped
/// may be checkpointed (neither by the cadence nor at shutdown): the next reader gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_record_stream_checkpoints_nothing_it_did_not_deliver() {
    let stack = stack().await;
    let stream = stack.create_stream("rec-stream-dropped", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("rec-stream-dropped-app");
    let kinesis = stack.kinesis_client();
    put_records(&kinesis, &stream, &records(100, 10, 1, "d"), 1).await;
    let mut small = kinesis_consumer::PollingConfig::default();
    small.idle_time_between_reads = Duration::from_millis(100);
    small.max_records = 10;
    let (worker, mut batches) = reader(&stack, Scheduler::stream_builder(&app, &stream))
        .with_retrieval(kinesis_consumer::Retrieval::Polling(small))
        .build_stream()
        .unwrap();
    let run = spawn_run(&worker);
    // The first batch: taken and held while the other shard's first batch arrives in the
    // stream (never taken); then the stream is dropped, and the held batch after it.
    let first = next_batch(&mut batches).await;
    assert!(
        first.records.len() <= 10,
        "a first batch of a few: {first:?}"
    );
    let read_up_to = checkpoint_after(&first).expect("batches carry records");
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(batches);
    let shard = first.shard_id.clone();
    drop(first);
    // The worker reads the other records meanwhile (nobody gets them), then stops.
    tokio::time::sleep(Duration::from_secs(3)).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let table = leases(&stack, &app).await;
    assert_eq!(table.len(), 2);
    for (key, lease) in &table {
        let want = if *key == shard {
            read_up_to.clone()
        } else {
            kinesis_consumer::Checkpoint::TrimHorizon
        };
        assert_eq!(
            lease.checkpoint, want,
            "{key}: checkpointed up to the last batch the reader dropped, not past it"
        );
    }
}

/// A multi-stream record stream through a split of one stream's shard, checkpointed by the
/// reader (`StreamCheckpointing::Manual`): the children's batches name their own shard and
/// stream, the parent's end is checkpointed by the library under its stream's lease key,
/// and each lease keeps the reader's last checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_stream_record_stream_follows_a_split_with_manual_checkpoints() {
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    let TwoStreams { a, b, app } = TwoStreams::create(&stack, "rec-ms-split", 1).await;
    let (mut sent_a, mut sent_b) = put_to_both(&kinesis, (&a, &b), (30, 30), ("a", "b")).await;
    let tracker = StaticStreamTracker::new(from_oldest(&[&a, &b])).unwrap();
    let (worker, mut batches) = reader(
        &stack,
        Scheduler::multi_stream_stream_builder(&app, tracker),
    )
    .with_stream_checkpointing(StreamCheckpointing::Manual)
    .build_stream()
    .unwrap();
    let run = spawn_run(&worker);
    let parent = first_shard(&kinesis, &a).await.shard_id().to_owned();
    let mut got: HashMap<String, Vec<bytes::Bytes>> = HashMap::new();
    let mut last: HashMap<(String, String), Checkpoint> = HashMap::new();
    let mut split = false;
    loop {
        let total: usize = got.values().map(Vec::len).sum();
        if total == sent_a.len() + sent_b.len() {
            if split {
                break;
            }
            split_first_shard(&kinesis, &a).await;
            let (more_a, more_b) = put_to_both(&kinesis, (&a, &b), (20, 10), ("A", "B")).await;
            sent_a.extend(more_a);
            sent_b.extend(more_b);
            split = true;
        }
        let batch = next_batch(&mut batches).await;
        let stream = batch.stream.as_ref().expect("names its stream");
        let name = stream.stream_name().to_owned();
        last.insert(
            (name.clone(), batch.shard_id.clone()),
            checkpoint_after(&batch).expect("batches carry records"),
        );
        batch
            .checkpointer
            .checkpoint()
            .await
            .expect("the reader checkpoints");
        got.entry(name)
            .or_default()
            .extend(batch.records.iter().map(|r| r.data.clone()));
    }
    stop_reading_on(&worker, &mut batches, run).await;

    for (stream, sent) in [(&a, &sent_a), (&b, &sent_b)] {
        assert_every_record_once(stream, &got[stream.as_str()], sent);
    }
    let children: Vec<&String> = last
        .keys()
        .filter(|(s, shard)| s == &a && shard != &parent)
        .map(|(_, shard)| shard)
        .collect();
    assert!(!children.is_empty(), "the children were read: {last:?}");
    let table = leases(&stack, &app).await;
    assert!(
        lease_of(&table, &a, &parent).checkpoint.is_shard_end(),
        "the parent's end, under {a}'s key"
    );
    for ((stream, shard), checkpoint) in &last {
        if stream == &a && shard == &parent {
            continue;
        }
        let lease = lease_of(&table, stream, shard);
        assert_eq!(&lease.checkpoint, checkpoint, "{stream}/{shard}");
        if stream == &a {
            assert_eq!(lease.parent_shard_ids, vec![parent.clone()], "{shard}");
        }
    }
}

/// A tracker whose list the test changes while the worker runs.
#[derive(Debug, Clone)]
struct ChangingTracker(std::sync::Arc<std::sync::Mutex<Vec<StreamConfig>>>);

#[async_trait::async_trait]
impl kinesis_consumer::StreamTracker for ChangingTracker {
    async fn stream_configs(
        &self,
    ) -> Result<Vec<StreamConfig>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// A stream removed from the tracker while the reader holds one of its batches: its shard
/// waits for the batch, checkpoints it once dropped (`Auto`), and only then is its lease
/// released; the other stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_removed_while_its_batch_is_held_checkpoints_it_before_the_release() {
    let stack = stack().await;
    let kinesis = stack.kinesis_client();
    let TwoStreams { a, b, app } = TwoStreams::create(&stack, "rec-ms-rm", 1).await;
    put_records(&kinesis, &b, &records(10, 5, 1, "b"), 1).await;
    let tracker = ChangingTracker(std::sync::Arc::new(std::sync::Mutex::new(from_oldest(&[
        &a, &b,
    ]))));
    let (worker, mut batches) = reader(
        &stack,
        Scheduler::multi_stream_stream_builder(&app, tracker.clone()),
    )
    .with_stream_tracker_interval(Duration::from_millis(200))
    .build_stream()
    .unwrap();
    let run = spawn_run(&worker);
    let held = next_batch(&mut batches).await;
    assert_eq!(held.stream.as_ref().unwrap().stream_name(), b);
    let read_up_to = checkpoint_after(&held).expect("batches carry records");
    // b leaves the tracker's list while its batch is held; a goes on meanwhile.
    *tracker.0.lock().unwrap() = from_oldest(&[&a]);
    let sent_a = records(20, 5, 1, "a");
    put_records(&kinesis, &a, &sent_a, 1).await;
    let mut got_a = 0;
    while got_a < sent_a.len() {
        let batch = next_batch(&mut batches).await;
        assert_eq!(batch.stream.as_ref().unwrap().stream_name(), a, "{batch:?}");
        got_a += batch.records.len();
    }
    let b_lease =
        |table: &HashMap<String, kinesis_consumer::Lease>| lease_of(table, &b, "").clone();
    assert_eq!(
        b_lease(&leases(&stack, &app).await).owner.as_deref(),
        Some("w"),
        "held while its batch is"
    );
    drop(held);
    let released = tokio::time::timeout(DEADLINE, async {
        loop {
            let lease = b_lease(&leases(&stack, &app).await);
            if lease.owner.is_none() {
                return lease;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("b's lease released once its batch was dropped");
    assert_eq!(
        released.checkpoint, read_up_to,
        "the held batch checkpointed"
    );
    stop_reading_on(&worker, &mut batches, run).await;
}
