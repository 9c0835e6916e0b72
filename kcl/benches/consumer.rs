//! Throughput of one worker against the embedded emulators, beside a raw `GetRecords` loop
//! with the same SDK client in the same run; plus DynamoDB calls per lease per minute in
//! steady state. Figures go to BENCHMARKS.md.
//!
//! ```text
//!  for size in {100 B, 1 KiB} × {plain, aggregated (KPL format, 20 per record)}:
//!    new 4-shard stream ─ PutRecords N user records
//!    raw:    one task per shard, GetShardIterator(TRIM_HORIZON) + GetRecords loop + deaggregate
//!    worker: Scheduler (lease table, take, consume, checkpoint every batch) until N processed,
//!            once polling, once with enhanced fan-out (its own application, and a stream
//!            consumer registered before the worker starts, as on every start but the first)
//! ```
//!
//! Run: `cargo bench -p kinesis-consumer --bench consumer` (release build)
//! (honours `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB` like the tests).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use bytes::Bytes;
use kinesis_agg::{Aggregator, Deaggregator, UserRecord};
use kinesis_consumer::{
    FanOutConfig, InitializationInput, LeaseLostInput, PollingConfig, ProcessRecordsInput,
    RecordProcessor, Retrieval, Scheduler, ShardEndedInput, ShutdownRequestedInput,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const SHARDS: i32 = 4;

#[derive(Debug)]
struct Counter(Arc<AtomicU64>);

#[async_trait]
impl RecordProcessor for Counter {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        self.0
            .fetch_add(input.records.len() as u64, Ordering::Relaxed);
        let _ = input.checkpointer.checkpoint().await;
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
}

async fn put(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    n: usize,
    size: usize,
    per_agg: usize,
) {
    let payload = vec![b'x'; size];
    let mut entries = Vec::new();
    let mut i = 0;
    while i < n {
        let pk = format!("key-{}", i % 1000);
        if per_agg > 1 {
            let mut agg = Aggregator::builder().build().unwrap();
            for _ in 0..per_agg.min(n - i) {
                agg.try_add(UserRecord::new(pk.clone(), payload.clone()).unwrap())
                    .unwrap();
                i += 1;
            }
            let k = agg.finish().unwrap();
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(k.partition_key)
                    .data(Blob::new(k.data.to_vec()))
                    .build()
                    .unwrap(),
            );
        } else {
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(pk)
                    .data(Blob::new(payload.clone()))
                    .build()
                    .unwrap(),
            );
            i += 1;
        }
        // The embedded emulator caps request bodies at 2 MB (base64 inflates data by 4/3).
        if entries.len() == 500 || (per_agg > 1 && entries.len() * per_agg * size > 1_000_000) {
            send(client, stream, std::mem::take(&mut entries)).await;
        }
    }
    if !entries.is_empty() {
        send(client, stream, entries).await;
    }
}

async fn send(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) {
    let out = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(out.failed_record_count(), Some(0));
}

/// Reads every shard from TRIM_HORIZON with no pacing; returns user records read.
async fn raw_loop(client: &aws_sdk_kinesis::Client, stream: &str, expected: u64) -> u64 {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec();
    let total = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for s in shards {
        let (client, stream, total) = (client.clone(), stream.to_owned(), total.clone());
        tasks.spawn(async move {
            let mut it = client
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(s.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator()
                .map(str::to_owned);
            let deagg = Deaggregator::new();
            while let Some(i) = it.take() {
                let out = client.get_records().shard_iterator(i).send().await.unwrap();
                if out.records().is_empty() {
                    break;
                }
                for r in out.records() {
                    let d = deagg
                        .deaggregate(
                            r.partition_key().unwrap_or_default(),
                            Bytes::copy_from_slice(r.data().as_ref()),
                        )
                        .unwrap();
                    total.fetch_add(d.records.len() as u64, Ordering::Relaxed);
                }
                it = out.next_shard_iterator().map(str::to_owned);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let n = total.load(Ordering::Relaxed);
    assert_eq!(n, expected);
    n
}

/// The `kinesis_consumer_dynamodb_calls_total` counter, summed over operations, since the
/// last snapshot (a snapshot drains the counters it reads).
fn dynamodb_calls(snapshotter: &Snapshotter) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == kinesis_consumer::metric_names::DYNAMODB_CALLS)
        .map(|(.., v)| match v {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

/// Registers the stream consumer `name` on `stream` and waits until it is `ACTIVE`.
async fn register_consumer(kinesis: &aws_sdk_kinesis::Client, stream: &str, name: &str) {
    let arn = integration_tests::kinesis::stream_arn(kinesis, stream).await;
    integration_tests::kinesis::register_consumer(kinesis, &arn, name).await;
    loop {
        let described = kinesis
            .describe_stream_consumer()
            .stream_arn(&arn)
            .consumer_name(name)
            .send()
            .await
            .expect("DescribeStreamConsumer");
        let active = described.consumer_description().is_some_and(|c| {
            c.consumer_status() == &aws_sdk_kinesis::types::ConsumerStatus::Active
        });
        if active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One worker reading `n` records of `stream` from the trim horizon with `retrieval`:
/// (records per second from `run()` to the last record, CPU µs per record of the whole
/// process, the embedded emulators included).
async fn one_worker(
    stack: &kinesis_emulators::LocalStack,
    stream: &str,
    n: u64,
    retrieval: Retrieval,
) -> (f64, Option<f64>) {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = kinesis_emulators::unique_name("bench-app");
    if let Retrieval::FanOut(_) = retrieval {
        // Registered beforehand, as on any start but an application's first: the time
        // measured is the worker's, not the registration's.
        register_consumer(&stack.kinesis_client(), stream, &app).await;
    }
    let worker = Scheduler::builder(&app, stream, move |_: &str| {
        Box::new(Counter(c.clone())) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("bench")
    .with_retrieval(retrieval)
    .build()
    .unwrap();
    let (t, cpu) = (
        Instant::now(),
        integration_tests::bench_host::cpu_of(std::process::id()),
    );
    let w = worker.clone();
    let run = tokio::spawn(async move { w.run().await });
    while count.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = t.elapsed();
    let cpu = integration_tests::bench_host::cpu_of(std::process::id())
        .zip(cpu)
        .map(|(after, before)| (after - before).as_secs_f64() * 1e6 / n as f64);
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    (n as f64 / took.as_secs_f64(), cpu)
}

/// DynamoDB calls per lease per minute of one idle worker holding `leases` leases.
async fn steady_state(
    stack: &kinesis_emulators::LocalStack,
    calls: &Snapshotter,
    leases: i32,
    window: Duration,
) {
    let stream = stack.create_stream("bench-idle", leases).await.unwrap();
    let app = kinesis_emulators::unique_name("bench-idle-app");
    let worker = Scheduler::builder(&app, &stream, |_: &str| {
        Box::new(Counter(Arc::new(AtomicU64::new(0)))) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .build()
    .unwrap();
    let w = worker.clone();
    let run = tokio::spawn(async move { w.run().await });
    while worker.coordinator().held_lease_keys().len() < leases as usize {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let start-up calls pass, then count a window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Each snapshot drains the counters it reads: drop what start-up counted, then read
    // the window's calls alone.
    dynamodb_calls(calls);
    tokio::time::sleep(window).await;
    let n = dynamodb_calls(calls);
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let per_lease_min = n as f64 / leases as f64 / window.as_secs_f64() * 60.0;
    // Java KCL 2.x at the same settings: one renewal per lease every 3,308 ms, one scan per
    // worker every 20,050 ms.
    let java = 60_000.0 / 3_308.0 + 60_000.0 / 20_050.0 / leases as f64;
    println!(
        "steady state, {leases} leases, failover 10 s: {n} DynamoDB calls in {window:?} = \
         {per_lease_min:.1} per lease per minute (Java KCL 2.x formula: {java:.1})"
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let recorder = DebuggingRecorder::new();
    let calls = recorder.snapshotter();
    recorder.install().expect("first recorder");
    let stack = kinesis_emulators::LocalStack::builder()
        .start_async()
        .await
        .expect("local stack");
    let kinesis = stack.kinesis_client();
    let cpu = |us: Option<f64>| us.map_or("n/a".to_owned(), |us| format!("{us:.1}"));
    println!(
        "| payload | format | user records | raw GetRecords loop (records/s) | worker, polling (records/s; CPU µs/record) | worker, fan-out (records/s; CPU µs/record) |"
    );
    println!("|---|---|---|---|---|---|");
    for (size, per_agg, n) in [
        (100usize, 1usize, 100_000usize),
        (100, 20, 100_000),
        (1024, 1, 50_000),
        (1024, 20, 50_000),
    ] {
        let stream = stack.create_stream("bench", SHARDS).await.unwrap();
        put(&kinesis, &stream, n, size, per_agg).await;

        let t = Instant::now();
        raw_loop(&kinesis, &stream, n as u64).await;
        let raw = n as f64 / t.elapsed().as_secs_f64();

        let mut polling = PollingConfig::default();
        polling.idle_time_between_reads = Duration::from_millis(50);
        let (polled, polled_cpu) =
            one_worker(&stack, &stream, n as u64, Retrieval::Polling(polling)).await;
        let (pushed, pushed_cpu) = one_worker(
            &stack,
            &stream,
            n as u64,
            Retrieval::FanOut(FanOutConfig::default()),
        )
        .await;
        let format = if per_agg > 1 {
            "aggregated ×20"
        } else {
            "plain"
        };
        println!(
            "| {size} B | {format} | {n} | {raw:.0} | {polled:.0}; {} | {pushed:.0}; {} |",
            cpu(polled_cpu),
            cpu(pushed_cpu)
        );
    }
    steady_state(&stack, &calls, 8, Duration::from_secs(60)).await;
}
