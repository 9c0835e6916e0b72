//! Start-up and exit paths of `Scheduler::run` against the local stack: a missing stream is
//! reported before anything is created, and `graceful_shutdown` never outlives `run`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use kinesis_consumer::{
    Error, InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor, Scheduler,
    ShardEndedInput, ShutdownRequestedInput,
};

/// Bound on steps that must be quick; a hang fails the test instead of hanging it.
const QUICK: Duration = Duration::from_secs(20);

/// Whether `table` exists in the stack's DynamoDB, by `DescribeTable` and `ListTables`.
async fn table_exists(client: &aws_sdk_dynamodb::Client, table: &str) -> bool {
    let described = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => panic!("DescribeTable: {e:?}"),
    };
    let mut listed = false;
    let mut start: Option<String> = None;
    loop {
        let out = client
            .list_tables()
            .set_exclusive_start_table_name(start.take())
            .send()
            .await
            .expect("ListTables");
        listed |= out.table_names().iter().any(|t| t == table);
        match out.last_evaluated_table_name() {
            Some(last) => start = Some(last.to_owned()),
            None => break,
        }
    }
    assert_eq!(described, listed, "DescribeTable and ListTables disagree");
    described
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_reported_and_no_lease_table_is_created() {
    let stack = stack().await;
    let stream = kinesis_emulators::unique_name("kcl-no-such-stream");
    let app = kinesis_emulators::unique_name("kcl-no-such-stream-app");
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w1", &rec, Duration::from_secs(10));
    let result = tokio::time::timeout(QUICK, worker.run())
        .await
        .expect("run returns at once, without retrying");
    match result {
        Err(Error::StreamNotFound { stream: named }) => assert_eq!(named, stream),
        other => panic!("expected StreamNotFound, got {other:?}"),
    }
    let message = Error::StreamNotFound {
        stream: stream.clone(),
    }
    .to_string();
    assert!(message.contains(&stream), "{message}");
    assert!(
        !table_exists(&stack.dynamodb_client(), &app).await,
        "no lease table left behind"
    );
    tokio::time::timeout(QUICK, worker.graceful_shutdown())
        .await
        .expect("graceful_shutdown returns at once after run failed");
    // The failed worker stays failed: it cannot be started again.
    assert!(matches!(worker.run().await, Err(Error::AlreadyStarted)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_requested_before_start_up_creates_nothing() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-early-stop", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-early-stop-app");
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w1", &rec, Duration::from_secs(10));
    worker.request_shutdown();
    tokio::time::timeout(QUICK, worker.run())
        .await
        .expect("run returns at once")
        .expect("Ok after a shutdown during start-up");
    assert!(!table_exists(&stack.dynamodb_client(), &app).await);
    tokio::time::timeout(QUICK, worker.graceful_shutdown())
        .await
        .expect("graceful_shutdown returns at once");
}

/// Signals when it was initialised and when it was asked to shut down; then never returns
/// from `shutdown_requested`.
#[derive(Debug)]
struct HangsAtShutdown {
    initialized: Arc<AtomicBool>,
    shutting_down: Arc<AtomicBool>,
}

#[async_trait]
impl RecordProcessor for HangsAtShutdown {
    async fn initialize(&mut self, _: InitializationInput) {
        self.initialized.store(true, Ordering::SeqCst);
    }
    async fn process_records(&mut self, _: ProcessRecordsInput) {}
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, _: ShardEndedInput) {}
    async fn shutdown_requested(&mut self, _: ShutdownRequestedInput) {
        self.shutting_down.store(true, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_run_releases_a_waiting_graceful_shutdown() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-dropped-run", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-dropped-run-app");
    let initialized = Arc::new(AtomicBool::new(false));
    let shutting_down = Arc::new(AtomicBool::new(false));
    let factory = {
        let (initialized, shutting_down) = (initialized.clone(), shutting_down.clone());
        move |_: &str| {
            Box::new(HangsAtShutdown {
                initialized: initialized.clone(),
                shutting_down: shutting_down.clone(),
            }) as Box<dyn RecordProcessor>
        }
    };
    let worker = Scheduler::builder(&app, &stream, factory)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("dropped")
        // Far longer than this test may take: only dropping `run` can end the shutdown.
        .with_shutdown_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    wait_until("a started consumer", || initialized.load(Ordering::SeqCst)).await;

    let waiter = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.graceful_shutdown().await })
    };
    wait_until("the processor to be asked to shut down", || {
        shutting_down.load(Ordering::SeqCst)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the shutdown waits for the processor"
    );

    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    tokio::time::timeout(QUICK, waiter)
        .await
        .expect("the waiter is released once run is dropped")
        .unwrap();
    // Later callers return at once too.
    tokio::time::timeout(QUICK, worker.graceful_shutdown())
        .await
        .expect("graceful_shutdown returns at once");
}
