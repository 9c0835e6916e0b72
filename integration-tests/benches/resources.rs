//! Resource bounds: the peak RSS (`VmHWM`) of the producer and of the consumer in a child
//! process of their own, while the services are in the bench process (so their memory is
//! not counted).
//!
//! ```text
//!  bench process: LocalStack (ferrokinesis + dynoxide) + FaultProxy in front of Kinesis
//!    ├─ child "producer-stalled": Producer (64 MiB budget) ─▶ proxy: PutRecords black-holed
//!    │     (ListShards answered: records are aggregated, collected and sent, and hang)
//!    │     a caller keeps putting 100 B records until `put` has waited 2 s for budget
//!    ├─ child "consumer-polling": Scheduler, polling, processor sleeping 100 ms per batch
//!    └─ child "consumer-fan-out": the same with enhanced fan-out
//!         both on a 4-shard stream filled beforehand; peak RSS after 20 s of processing
//! ```
//!
//! Run: `cargo bench -p integration-tests --bench resources`. `RESOURCE_BENCH_RECORDS`
//! (default 100,000) sets the consumer's backlog of 1 KiB records.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use integration_tests::fault_proxy::{Fault, FaultProxy, Rule};
use kinesis_consumer::{
    InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor, Retrieval,
    Scheduler, ShardEndedInput, ShutdownRequestedInput,
};
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};

/// Which child to run.
const CHILD_VAR: &str = "RESOURCE_BENCH_CHILD";
/// The producer's byte budget.
const BUDGET: usize = 64 << 20;
/// How long the consumer children process before they report.
const CONSUME_FOR: Duration = Duration::from_secs(20);

/// Peak resident set size of this process, in bytes (`VmHWM` of /proc/self/status).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    match std::env::var(CHILD_VAR).as_deref() {
        Ok("producer-stalled") => runtime.block_on(producer_stalled()),
        Ok(mode) => runtime.block_on(consumer(mode)),
        Err(_) => runtime.block_on(parent()),
    }
}

async fn parent() {
    let stack = LocalStack::builder()
        .start_async()
        .await
        .expect("local stack");
    let proxy = FaultProxy::start(stack.kinesis_endpoint())
        .await
        .expect("proxy");
    let records: usize = std::env::var("RESOURCE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut rows = Vec::new();

    // (a) The producer against a black-holed PutRecords.
    let stalled = stack.create_stream("res-stalled", 4).await.expect("stream");
    proxy.set_rules(vec![Rule::new("PutRecords", Fault::Blackhole)]);
    rows.push(child(
        "producer-stalled",
        &stalled,
        &proxy.endpoint(),
        &stack,
    ));
    proxy.clear();

    // (b) The consumer with a slow processor and a backlog.
    let stream = stack.create_stream("res-consume", 4).await.expect("stream");
    let kinesis = stack.kinesis_client();
    let payload = vec![b'x'; 1024];
    let mut put = 0;
    while put < records {
        let n = (records - put).min(500);
        let entries = (put..put + n)
            .map(|i| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{i}"))
                    .data(aws_sdk_kinesis::primitives::Blob::new(payload.clone()))
                    .build()
                    .expect("entry")
            })
            .collect();
        let out = kinesis
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
        put += n;
    }
    for mode in ["consumer-polling", "consumer-fan-out"] {
        rows.push(child(mode, &stream, stack.kinesis_endpoint(), &stack));
    }
    println!();
    println!("| child | peak RSS | at start | what it did |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// Runs one child and returns its table row.
fn child(mode: &str, stream: &str, kinesis_endpoint: &str, stack: &LocalStack) -> String {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().expect("this executable"))
        .env(CHILD_VAR, mode)
        .env("RESOURCE_BENCH_STREAM", stream)
        .env("AWS_ENDPOINT_URL_KINESIS", kinesis_endpoint)
        .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stderr(Stdio::inherit())
        .output()
        .expect("the child");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "{mode}: {} ({:.1} s): {}",
        out.status,
        started.elapsed().as_secs_f64(),
        text.trim()
    );
    text.lines().find(|l| l.starts_with('|')).map_or_else(
        || format!("| {mode} | failed: {} | | |", out.status),
        str::to_owned,
    )
}

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_from_env().await
}

/// Child (a): fill a 64 MiB budget while every `PutRecords` hangs.
async fn producer_stalled() {
    let stream = std::env::var("RESOURCE_BENCH_STREAM").expect("stream");
    let start = peak_rss();
    let producer = Producer::builder(aws_sdk_kinesis::Client::new(&sdk_config().await))
        .with_max_outstanding_bytes(BUDGET)
        .with_record_ttl(Duration::from_secs(3600))
        .with_request_timeout(Duration::from_secs(3600))
        .build()
        .expect("producer");
    let mut handles = Vec::new();
    let mut accepted = 0u64;
    loop {
        let r = ProducerRecord::new(&stream, format!("key-{accepted}"), vec![b'p'; 100]);
        match tokio::time::timeout(Duration::from_secs(2), producer.put(r)).await {
            Ok(h) => {
                handles.push(h.expect("accepted"));
                accepted += 1;
            }
            Err(_) => break,
        }
    }
    let peak = peak_rss();
    println!(
        "| producer, PutRecords black-holed, 64 MiB budget | {:.1} MiB (budget + {:.1} MiB) | \
         {:.1} MiB | {accepted} records of 100 B accepted until `put` waited 2 s |",
        mib(peak),
        mib(peak) - mib(BUDGET as u64),
        mib(start)
    );
    std::process::exit(0);
}

/// A processor that sleeps 100 ms per batch and checkpoints.
#[derive(Debug)]
struct SlowProcessor;

#[async_trait]
impl RecordProcessor for SlowProcessor {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// Child (b): a consumer with a slow processor on a backlog, for [`CONSUME_FOR`].
async fn consumer(mode: &str) {
    let stream = std::env::var("RESOURCE_BENCH_STREAM").expect("stream");
    let start = peak_rss();
    let retrieval = if mode == "consumer-fan-out" {
        Retrieval::FanOut(kinesis_consumer::FanOutConfig::default())
    } else {
        Retrieval::Polling(kinesis_consumer::PollingConfig::default())
    };
    let app = kinesis_emulators::unique_name("res-app");
    let scheduler = Scheduler::builder(&app, &stream, |_: &str| {
        Box::new(SlowProcessor) as Box<dyn RecordProcessor>
    })
    .with_sdk_config(&sdk_config().await)
    .with_retrieval(retrieval)
    .build()
    .expect("scheduler");
    let run = {
        let s = scheduler.clone();
        tokio::spawn(async move { s.run().await })
    };
    tokio::time::sleep(CONSUME_FOR).await;
    let peak = peak_rss();
    println!(
        "| consumer, {}, processor sleeping 100 ms per batch, 4 shards of 1 KiB records | \
         {:.1} MiB | {:.1} MiB | {} s of processing a backlog (library defaults) |",
        if mode == "consumer-fan-out" {
            "enhanced fan-out"
        } else {
            "polling"
        },
        mib(peak),
        mib(start),
        CONSUME_FOR.as_secs()
    );
    scheduler.graceful_shutdown().await;
    let _ = run.await;
    std::process::exit(0);
}
