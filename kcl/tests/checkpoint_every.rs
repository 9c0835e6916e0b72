//! `CheckpointEvery` with a real checkpointer: the lease's checkpoint moves only at the
//! batches where the cadence was due.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use kinesis_consumer::{
    CheckpointEvery, InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    Scheduler, ShardEndedInput,
};

/// Each batch: its records, its last record's position, whether `after_batch` wrote a
/// checkpoint.
type Batches = Arc<Mutex<Vec<(usize, (String, u64), bool)>>>;

#[derive(Debug)]
struct Every(CheckpointEvery, Batches);

#[async_trait]
impl RecordProcessor for Every {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let Some(last) = input.records.last() else {
            return;
        };
        let last = (last.sequence_number.clone(), last.sub_sequence_number);
        let wrote = self.0.after_batch(&input).await.expect("checkpoint");
        self.1
            .lock()
            .unwrap()
            .push((input.records.len(), last, wrote));
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, _: ShardEndedInput) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_moves_only_when_the_cadence_is_due() {
    let stack = stack().await;
    let stream = stack.create_stream("cp-every", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("cp-every-app");
    let kinesis = stack.kinesis_client();
    let batches: Batches = Arc::default();
    let seen = batches.clone();
    let worker = Scheduler::builder(&app, &stream, move |_: &str| {
        Box::new(Every(CheckpointEvery::records(100), seen.clone())) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("w")
    .with_retrieval(polling())
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    // Ten puts of 30 records, apart: several batches, 300 records.
    for round in 0..10 {
        put_records(
            &kinesis,
            &stream,
            &records(30, 3, 1, &format!("r{round}-")),
            1,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_until("300 records", || {
        batches
            .lock()
            .unwrap()
            .iter()
            .map(|(n, ..)| n)
            .sum::<usize>()
            >= 300
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let batches = batches.lock().unwrap().clone();
    // Written exactly where 100 records had come since the last checkpoint.
    let mut since = 0;
    for (n, _, wrote) in &batches {
        since += n;
        assert_eq!(*wrote, since >= 100, "{batches:?}");
        if *wrote {
            since = 0;
        }
    }
    let written: Vec<&(String, u64)> = batches
        .iter()
        .filter(|(_, _, w)| *w)
        .map(|(_, p, _)| p)
        .collect();
    assert!(
        !written.is_empty(),
        "300 records make at least one checkpoint due"
    );
    // The lease holds the last checkpoint written (this processor writes none at shutdown).
    let lease = &leases(&stack, &app).await.into_values().next().unwrap();
    let (seq, sub) = written.last().unwrap();
    assert_eq!(lease.checkpoint, checkpoint_of(seq, *sub));
}
