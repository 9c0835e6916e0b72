//! A CloudWatch Logs subscription consumer: CloudWatch Logs delivers each batch of log
//! events to Kinesis as gzip-compressed JSON (`{"messageType": "DATA_MESSAGE", "logGroup":
//! …, "logEvents": [{"id", "timestamp", "message"}, …]}`). The consumer inflates the
//! payloads (`PayloadDecompression::GzipAndZlib`) and reads them as a `RecordStream`.
//!
//! ```text
//!  (here: this program puts gzip JSON as CloudWatch Logs would) ─▶ Kinesis
//!  Scheduler::stream_builder … with_payload_decompression ─▶ RecordStream ─▶ log events
//! ```
//!
//! Run: `cargo run -p kinesis-examples --bin cloudwatch_logs` (starts the embedded stack;
//! with `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB` set, uses those).

use std::io::Write;

use aws_sdk_kinesis::primitives::Blob;
use flate2::write::GzEncoder;
use kinesis_consumer::{PayloadDecompression, PayloadEncoding, Scheduler};
use kinesis_emulators::LocalStack;

/// Log events put, in batches of `PER_BATCH`.
const EVENTS: usize = 12;
/// Log events per CloudWatch Logs delivery.
const PER_BATCH: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("logs", 2).await?;
    let kinesis = stack.kinesis_client();

    // What a CloudWatch Logs subscription filter writes: gzip JSON, one batch per record.
    for batch in 0..EVENTS / PER_BATCH {
        let events: Vec<serde_json::Value> = (0..PER_BATCH)
            .map(|i| {
                let n = batch * PER_BATCH + i;
                serde_json::json!({"id": n.to_string(), "timestamp": 1_704_164_645_000u64 + n as u64,
                                   "message": format!("request {n} served")})
            })
            .collect();
        let message = serde_json::json!({"messageType": "DATA_MESSAGE", "logGroup": "/app/web",
                                         "logStream": "i-0abc", "logEvents": events});
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(message.to_string().as_bytes())?;
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("i-0abc-{batch}"))
            .data(Blob::new(gz.finish()?))
            .send()
            .await?;
    }

    let (scheduler, mut records) = Scheduler::stream_builder("cloudwatch-logs-example", &stream)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_payload_decompression(PayloadDecompression::GzipAndZlib)
        .build_stream()?;
    let worker = scheduler.clone();
    let run = tokio::spawn(async move { worker.run().await });

    let mut seen = 0;
    while seen < EVENTS {
        let Some(batch) = records.next().await else {
            break;
        };
        for record in &batch.records {
            if record.payload_encoding != PayloadEncoding::Gzip {
                eprintln!(
                    "not a CloudWatch Logs payload ({:?}); skipped",
                    record.payload_encoding
                );
                continue;
            }
            let message: serde_json::Value = serde_json::from_slice(&record.data)?;
            for event in message["logEvents"].as_array().into_iter().flatten() {
                println!(
                    "{} {} {}",
                    message["logGroup"], event["timestamp"], event["message"]
                );
                seen += 1;
            }
        }
        // Dropping the batch checkpoints it.
    }

    scheduler.graceful_shutdown().await;
    while records.next().await.is_some() {}
    run.await??;
    println!("{seen} log events read");
    Ok(())
}
