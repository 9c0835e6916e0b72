//! Opt-in payload decompression end to end: a CloudWatch-Logs-style gzip JSON payload is
//! inflated, a damaged one is handed over as sent and marked, plain ones pass untouched;
//! with the default, every payload comes as it was sent.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use common::*;
use flate2::write::GzEncoder;
use flate2::Compression;
use kinesis_consumer::{
    InitializationInput, LeaseLostInput, PayloadDecompression, PayloadEncoding,
    ProcessRecordsInput, RecordProcessor, Scheduler, ShardEndedInput,
};

/// (partition key, payload, encoding) of every record processed.
type Got = Arc<Mutex<Vec<(String, Vec<u8>, PayloadEncoding)>>>;

#[derive(Debug)]
struct Collect(Got);

#[async_trait]
impl RecordProcessor for Collect {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        {
            let mut got = self.0.lock().unwrap();
            for r in &input.records {
                got.push((
                    r.partition_key.to_string(),
                    r.data.to_vec(),
                    r.payload_encoding,
                ));
            }
        }
        input.checkpointer.checkpoint().await.unwrap();
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        input.checkpointer.checkpoint().await.unwrap();
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const LOGS: &[u8] = br#"{"messageType":"DATA_MESSAGE","logGroup":"/app","logEvents":[{"id":"1","timestamp":1704164645000,"message":"hello"}]}"#;

/// Puts the three payloads and reads them with `decompression`, sorted by key.
async fn read(decompression: PayloadDecompression) -> Vec<(String, Vec<u8>, PayloadEncoding)> {
    let stack = stack().await;
    let stream = stack.create_stream("payloads", 1).await.unwrap();
    let kinesis = stack.kinesis_client();
    let mut damaged = gzip(b"a damaged gzip payload, long enough to cut");
    let n = damaged.len();
    damaged[n / 2..].fill(0xAA);
    for (key, data) in [
        ("1-logs", gzip(LOGS)),
        ("2-damaged", damaged),
        ("3-plain", b"plain text".to_vec()),
    ] {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .unwrap();
    }
    let got: Got = Arc::default();
    let processors = got.clone();
    let app = kinesis_emulators::unique_name("payloads-app");
    let worker = Scheduler::builder(&app, &stream, move |_: &str| {
        Box::new(Collect(processors.clone())) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("w")
    .with_retrieval(polling())
    .with_payload_decompression(decompression)
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    wait_until("three records", || got.lock().unwrap().len() >= 3).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let mut got = got.lock().unwrap().clone();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_payloads_are_inflated_when_asked_and_damaged_ones_handed_over_marked() {
    let got = read(PayloadDecompression::GzipAndZlib).await;
    assert_eq!(got.len(), 3, "nothing dropped");
    assert_eq!(got[0].1, LOGS);
    assert_eq!(got[0].2, PayloadEncoding::Gzip);
    assert_eq!(got[1].2, PayloadEncoding::NotInflated);
    assert!(got[1].1.starts_with(&[0x1f, 0x8b]), "as sent");
    assert_eq!(
        got[2],
        (
            "3-plain".into(),
            b"plain text".to_vec(),
            PayloadEncoding::Plain
        )
    );

    // The default hands every payload over as sent.
    let got = read(PayloadDecompression::Off).await;
    assert_eq!(got[0].1, gzip(LOGS));
    assert!(got.iter().all(|(_, _, e)| *e == PayloadEncoding::Plain));
}
