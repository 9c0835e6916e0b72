//! The producer's and consumer's metrics exported to Prometheus: both crates send to the
//! `metrics` facade, so installing `metrics-exporter-prometheus` as the recorder is all it
//! takes. This program puts and consumes a few records and prints what a scrape returns.
//!
//! ```text
//!  Producer ─┐ metrics facade (counters, gauges,   ┌─▶ handle.render()  (printed here)
//!  Scheduler ┴▶ histograms; names in metric_names) ─▶ PrometheusRecorder
//!                                                   └─▶ with_http_listener(addr): /metrics
//! ```
//!
//! The names: `kinesis_producer::metric_names` (prefix `kinesis_producer_`) and
//! `kinesis_consumer::metric_names` (prefix `kinesis_consumer_`). Install the recorder
//! before building the producer and the scheduler: they resolve their handles when built.
//!
//! Run: `cargo run -p kinesis-examples --bin prometheus_metrics` (embedded stack). In a
//! service, serve the metrics instead:
//! `PrometheusBuilder::new().with_http_listener(([0, 0, 0, 0], 9000)).install()?`.

use std::time::Duration;

use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};
use metrics_exporter_prometheus::PrometheusBuilder;

const RECORDS: usize = 1_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("metered", 2).await?;

    let producer = Producer::builder(stack.kinesis_client()).build()?;
    for i in 0..RECORDS {
        drop(
            producer
                .put(ProducerRecord::new(&stream, format!("k{}", i % 50), "x"))
                .await?,
        );
    }
    producer.shutdown().await;

    let (scheduler, mut batches) = Scheduler::stream_builder("metrics-example", &stream)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_initial_position(InitialPosition::TrimHorizon)
        .build_stream()?;
    let run = tokio::spawn({
        let scheduler = scheduler.clone();
        async move { scheduler.run().await }
    });
    let mut read = 0;
    while read < RECORDS {
        match tokio::time::timeout(Duration::from_secs(60), batches.next()).await {
            Ok(Some(batch)) => read += batch.records.len(),
            _ => break,
        }
    }
    scheduler.graceful_shutdown().await;
    while batches.next().await.is_some() {}
    run.await??;

    // What Prometheus would scrape: every series of this library, with its labels.
    let scrape = prometheus.render();
    for line in scrape.lines() {
        if line.starts_with("kinesis_producer_") || line.starts_with("kinesis_consumer_") {
            println!("{line}");
        }
    }
    if read < RECORDS {
        return Err(format!("only {read} of {RECORDS} records read within a minute").into());
    }
    Ok(())
}
