//! Credentials never reach the logs of the libraries: a producer and a consumer worker with
//! static credentials (an access key, a secret key and a session token), every `tracing`
//! event of every crate captured at TRACE (the SDK's and the HTTP stack's included), a
//! round trip of records through the embedded stack; the secret key and the session token
//! appear nowhere in what was logged. (`kinesis-cat`'s own redaction is tested in
//! `cli/tests/cli_errors.rs`.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use kinesis_consumer::Scheduler;
use kinesis_emulators::{LocalStack, ServiceKind};
use kinesis_producer::{Producer, ProducerRecord};

/// A secret key and a session token that nothing else in a log could contain by chance.
const SECRET: &str = "cHaOsSeCrEt0123456789abcdefGHIJKLMNOPQRSTUV";
const TOKEN: &str = "cHaOsToKeN0123456789abcdefGHIJKLMNOPQRSTUVtoken";
const ACCESS_KEY: &str = "AKIACHAOSTESTKEY0001";
/// A bound to fail on instead of hanging; never a measured assertion.
const DEADLINE: Duration = Duration::from_secs(120);

/// Everything logged, shared with the subscriber's writer.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_and_session_token_never_appear_in_trace_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Global: the libraries' tasks run on the runtime's threads.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let stack = LocalStack::builder()
        .start_async()
        .await
        .expect("local stack");
    if stack.kinesis_kind() == ServiceKind::External {
        // Other endpoints need the caller's own credentials, not these.
        eprintln!("skipped: the stack's endpoints are external");
        return;
    }
    let stream = stack.create_stream("creds-logs", 2).await.expect("stream");
    let app = kinesis_emulators::unique_name("creds-logs-app");
    let credentials = Credentials::new(ACCESS_KEY, SECRET, Some(TOKEN.to_owned()), None, "static");
    let kinesis = aws_sdk_kinesis::Client::from_conf(
        stack
            .kinesis_client()
            .config()
            .to_builder()
            .credentials_provider(credentials.clone())
            .build(),
    );
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        stack
            .dynamodb_client()
            .config()
            .to_builder()
            .credentials_provider(credentials)
            .build(),
    );

    let n = 200;
    let producer = Producer::builder(kinesis.clone())
        .build()
        .expect("producer");
    let mut handles = Vec::new();
    for i in 0..n {
        let r = ProducerRecord::new(&stream, format!("key-{}", i % 7), format!("r{i}"));
        handles.push(producer.put(r).await.expect("accepted"));
    }
    for h in handles {
        h.await.expect("delivered");
    }
    producer.shutdown().await;

    let (worker, mut batches) = Scheduler::stream_builder(&app, &stream)
        .with_clients(kinesis, dynamodb)
        .with_worker_id("creds-worker")
        .build_stream()
        .expect("worker");
    let run = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.run().await })
    };
    let mut got = 0;
    while got < n {
        let batch = tokio::time::timeout(DEADLINE, batches.next())
            .await
            .expect("a batch in time")
            .expect("the stream goes on while the worker runs");
        got += batch.records.len();
    }
    let stopper = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.graceful_shutdown().await })
    };
    while tokio::time::timeout(DEADLINE, batches.next())
        .await
        .expect("the stream ends")
        .is_some()
    {}
    stopper.await.expect("shutdown");
    run.await.expect("run task").expect("run");

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("not poisoned")).into_owned();
    // The capture saw the whole stack at TRACE: signing, the HTTP calls, both libraries.
    for expected in ["TRACE", "aws_sigv4", "kinesis_producer", "kinesis_consumer"] {
        assert!(
            logs.contains(expected),
            "{expected} missing from the captured logs ({} bytes)",
            logs.len()
        );
    }
    assert!(
        logs.contains(ACCESS_KEY),
        "the access key id (not a secret) shows that credentials were in use and logged around"
    );
    assert!(!logs.contains(SECRET), "the secret key was logged");
    assert!(!logs.contains(TOKEN), "the session token was logged");
    eprintln!(
        "{} bytes of TRACE logs, {} lines: neither the secret key nor the session token",
        logs.len(),
        logs.lines().count()
    );
}
