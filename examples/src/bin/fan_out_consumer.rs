//! An enhanced fan-out consumer: the worker registers a stream consumer at start-up and each
//! shard's records are pushed to it by `SubscribeToShard` (its own 2 MiB/s per shard, about
//! 70 ms after the put on AWS), instead of being polled with `GetRecords`.
//!
//! ```text
//!  Scheduler::stream_builder … with_retrieval(FanOut) ─▶ RegisterStreamConsumer (if missing)
//!  per shard: SubscribeToShard (renewed every 5 min, resumed at the continuation sequence)
//!    ─▶ RecordStream ─▶ ShardBatch (dropped = checkpointed) ─▶ print the put→read latency
//! ```
//!
//! Run: `cargo run -p kinesis-examples --bin fan_out_consumer` (embedded stack; with
//! `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB` set, uses those). The consumer
//! `fan-out-example` stays registered on the stream: on AWS it is billed per shard-hour
//! until `aws kinesis deregister-stream-consumer` or `kinesis-cat consumers` removes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kinesis_consumer::{FanOutConfig, InitialPosition, Retrieval, Scheduler};
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};

const RECORDS: usize = 200;

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("clicks", 2).await?;

    let (scheduler, mut batches) = Scheduler::stream_builder("fan-out-example", &stream)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_initial_position(InitialPosition::TrimHorizon)
        .with_retrieval(Retrieval::FanOut(
            FanOutConfig::default().with_consumer_name("fan-out-example"),
        ))
        .build_stream()?;
    let run = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run().await }
    });

    // Put records paced over about two seconds, each carrying its put time.
    let producer = Producer::builder(stack.kinesis_client())
        .with_max_buffered_time(Duration::from_millis(10))
        .build()?;
    let put_stream = stream.clone();
    let putter = tokio::spawn(async move {
        // Give the worker time to take its leases and subscribe, so that the latency below
        // is the push's (records put earlier are read too: it starts at TRIM_HORIZON).
        tokio::time::sleep(Duration::from_secs(3)).await;
        for i in 0..RECORDS {
            let record = ProducerRecord::new(
                &put_stream,
                format!("user-{}", i % 13),
                now_micros().to_string(),
            );
            drop(producer.put(record).await?);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        producer.shutdown().await;
        Ok::<_, kinesis_producer::PutError>(())
    });

    let (mut read, mut latencies) = (0, Vec::new());
    while read < RECORDS {
        // Bounded, so that a broken endpoint ends the example instead of hanging it.
        let batch = tokio::time::timeout(Duration::from_secs(60), batches.next()).await;
        let Ok(Some(batch)) = batch else { break };
        for record in &batch.records {
            let put_at: u128 = String::from_utf8_lossy(&record.data).parse().unwrap_or(0);
            latencies.push(now_micros().saturating_sub(put_at) as f64 / 1000.0);
        }
        read += batch.records.len();
    }
    putter.await??;
    scheduler.graceful_shutdown().await;
    while batches.next().await.is_some() {}
    run.await??;
    latencies.sort_by(f64::total_cmp);
    let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or(0.0);
    println!("read {read} of {RECORDS} records by fan-out; put→read p50 {p50:.1} ms");
    if read < RECORDS {
        return Err(format!("only {read} of {RECORDS} records read within a minute").into());
    }
    Ok(())
}
