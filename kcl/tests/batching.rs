//! Lambda-style batching end to end: calls of at most `max_records`, cut across what one
//! `GetRecords` returned, and a few records delivered when the window closes rather than
//! waiting for a full call; checkpoints of a call cover exactly its records.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use kinesis_consumer::{
    Batching, InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor, Scheduler,
    ShardEndedInput,
};

/// Each call's records' data, in order.
type Calls = Arc<Mutex<Vec<Vec<String>>>>;

#[derive(Debug)]
struct Calling(Calls);

#[async_trait]
impl RecordProcessor for Calling {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let data = input
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        self.0.lock().unwrap().push(data);
        input.checkpointer.checkpoint().await.unwrap();
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        input.checkpointer.checkpoint().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_hold_at_most_max_records_and_a_trickle_waits_only_the_window() {
    let stack = stack().await;
    let stream = stack.create_stream("batching", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("batching-app");
    let kinesis = stack.kinesis_client();
    let burst = records(95, 5, 1, "b");
    put_records(&kinesis, &stream, &burst, 1).await;
    let calls: Calls = Arc::default();
    let processors = calls.clone();
    let worker = Scheduler::builder(&app, &stream, move |_: &str| {
        Box::new(Calling(processors.clone())) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("w")
    .with_retrieval(polling())
    .with_batching(Batching {
        max_records: 10,
        max_wait: Duration::from_millis(300),
    })
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    let total = |calls: &Calls| calls.lock().unwrap().iter().map(Vec::len).sum::<usize>();
    wait_until("the burst", || total(&calls) >= 95).await;
    // A trickle of 3: delivered once the window closes, not held for 7 more.
    let trickle = records(3, 1, 1, "t");
    put_records(&kinesis, &stream, &trickle, 1).await;
    wait_until("the trickle", || total(&calls) >= 98).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let calls = calls.lock().unwrap().clone();
    assert!(
        calls.iter().all(|c| !c.is_empty() && c.len() <= 10),
        "{calls:?}"
    );
    let full = calls.iter().filter(|c| c.len() == 10).count();
    assert!(full >= 9, "the burst comes in full calls: {calls:?}");
    let got: Vec<String> = calls.concat();
    let want: Vec<String> = burst
        .iter()
        .chain(&trickle)
        .map(|s| String::from_utf8_lossy(&s.data).into_owned())
        .collect();
    assert_eq!(got, want, "every record once, in order");
    assert_eq!(calls.last().unwrap().len(), 3);
    // Each call checkpointed: the lease is at the last record.
    let lease = leases(&stack, &app).await.into_values().next().unwrap();
    assert!(matches!(
        lease.checkpoint,
        kinesis_consumer::Checkpoint::Sequence { .. }
    ));
}
