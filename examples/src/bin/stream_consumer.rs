//! A consumer written against the `Stream` API: `build_stream()` instead of a
//! `RecordProcessor`, each batch handled in its own task, and a graceful stop on Ctrl-C.
//!
//! ```text
//!  Scheduler::stream_builder … with_batching ─▶ (Scheduler, RecordStream)
//!  RecordStream ─▶ one task per batch (a shard's next batch comes once this one is dropped:
//!                  shards run concurrently, each in order) ─▶ dropped ─▶ checkpointed
//!  Ctrl-C ─▶ request_shutdown ─▶ batches in hand finish, leases handed over ─▶ stream ends
//! ```
//!
//! Run: `cargo run -p kinesis-examples --bin stream_consumer` (starts the embedded stack and
//! puts 100 records; with `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB` set, uses
//! those), then Ctrl-C.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kinesis_consumer::{Batching, Scheduler, ShardBatch};
use kinesis_emulators::LocalStack;
use tokio::task::JoinSet;

/// Records put before the consumer starts.
const RECORDS: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("orders", 2).await?;
    let entries = (0..RECORDS)
        .map(|i| {
            let data = Blob::new(format!("order-{i}"));
            PutRecordsRequestEntry::builder()
                .partition_key(format!("customer-{}", i % 7))
                .data(data)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let kinesis = stack.kinesis_client();
    kinesis
        .put_records()
        .stream_name(&stream)
        .set_records(Some(entries))
        .send()
        .await?;

    let (scheduler, mut batches) = Scheduler::stream_builder("stream-consumer-example", &stream)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        // Up to 25 records per batch, or fewer once the oldest has waited 200 ms.
        .with_batching(Batching {
            max_records: 25,
            max_wait: Duration::from_millis(200),
        })
        .build_stream()?;
    let run = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run().await }
    });
    eprintln!(
        "worker {} consuming {stream}; Ctrl-C stops it",
        scheduler.worker_id()
    );

    // Polled before any batch is taken, so Ctrl-C is heard from the first record printed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut handlers = JoinSet::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            heard = &mut ctrl_c, if !stopping => {
                heard?; // the handler could not be installed
                eprintln!("stopping: finishing the batches in hand, handing the leases over");
                scheduler.request_shutdown();
                stopping = true;
            }
            // Ends once the worker has stopped and every batch was taken.
            batch = batches.next() => match batch {
                Some(batch) => { handlers.spawn(handle(batch)); }
                None => break,
            },
        }
        while handlers.try_join_next().is_some() {}
    }
    while handlers.join_next().await.is_some() {}
    run.await??;
    eprintln!("stopped");
    Ok(())
}

/// Handles one batch (your async work goes here): prints it in one write, so that the lines
/// of concurrent batches do not mix.
async fn handle(batch: ShardBatch) {
    let mut text = String::new();
    for record in &batch.records {
        let data = String::from_utf8_lossy(&record.data);
        let _ = writeln!(text, "{} {} {data}", batch.shard_id, record.partition_key);
    }
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    // `batch` is dropped here: its shard goes on, and the batch is checkpointed (so keep
    // it, or stop the worker, when handling it failed).
}
