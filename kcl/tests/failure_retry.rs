//! A processor that reports failures, end to end on the embedded stack: a failed record
//! and what follows it are read again from Kinesis and handed over again, nothing after
//! it is lost or skipped, checkpoints never pass it; a record that keeps failing in a
//! failed batch is found by bisecting and given up after `max_attempts`, visibly.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use kinesis_consumer::{
    metric_names, Checkpoint, FailureRetry, InitializationInput, LeaseLostInput,
    ProcessRecordsInput, RecordProcessor, Scheduler, ShardEndedInput,
};

/// A checkpoint seen after a failure was reported, and the failed record's position.
type AfterFailure = (Checkpoint, (String, u64));

/// What a [`Flaky`] processor did: the records it took (data, in order), the calls it
/// got (their records' data), the checkpoints it saw after each call.
#[derive(Debug, Default, Clone)]
struct Log {
    /// Records processed successfully, in order.
    done: Arc<Mutex<Vec<String>>>,
    /// Every call's records.
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    /// The checkpointer's last checkpoint after each call that reported a failure, with
    /// the failed record's position.
    after_failure: Arc<Mutex<Vec<AfterFailure>>>,
}

/// How a [`Flaky`] processor fails.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Reports the record itself (`retry_from`) on its first `n` sightings.
    RecordTimes(usize),
    /// Reports the whole batch (`retry_batch`) whenever it holds the record, forever.
    BatchAlways,
}

/// Fails on records whose data is in `poison`, as its mode says; processes the others
/// and checkpoints after every call.
struct Flaky {
    poison: Vec<String>,
    mode: Mode,
    /// How often each poison record was seen.
    sightings: HashMap<String, usize>,
    log: Log,
}

#[async_trait]
impl RecordProcessor for Flaky {
    async fn initialize(&mut self, _: InitializationInput) {}

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let data: Vec<String> = input
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        self.log.calls.lock().unwrap().push(data.clone());
        let mut failed = None;
        for (r, d) in input.records.iter().zip(&data) {
            if self.poison.contains(d) {
                let seen = self.sightings.entry(d.clone()).or_default();
                *seen += 1;
                let fails = match self.mode {
                    Mode::RecordTimes(n) => *seen <= n,
                    Mode::BatchAlways => true,
                };
                if fails {
                    failed = Some((r.sequence_number.clone(), r.sub_sequence_number));
                    break;
                }
            }
            if matches!(self.mode, Mode::RecordTimes(_)) {
                self.log.done.lock().unwrap().push(d.clone());
            }
        }
        match (failed, self.mode) {
            (None, Mode::BatchAlways) => self.log.done.lock().unwrap().extend(data),
            (None, _) => {}
            (Some((seq, sub)), Mode::RecordTimes(_)) => {
                input.checkpointer.retry_from(&seq, sub).unwrap();
                input.checkpointer.checkpoint().await.unwrap();
                self.log
                    .after_failure
                    .lock()
                    .unwrap()
                    .push((input.checkpointer.last_checkpoint(), (seq, sub)));
                return;
            }
            (Some(_), Mode::BatchAlways) => {
                input.checkpointer.retry_batch();
                return;
            }
        }
        input.checkpointer.checkpoint().await.unwrap();
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {}

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        input.checkpointer.checkpoint().await.unwrap();
    }
}

/// Consumes `sent` (put with `per_aggregate` records per aggregate) from a 1-shard stream
/// with a [`Flaky`] processor until `until` holds of the log; the log.
async fn consume(
    name: &str,
    sent: &[Sent],
    per_aggregate: usize,
    poison: &[&str],
    mode: Mode,
    retry: FailureRetry,
    until: impl Fn(&Log) -> bool,
) -> Log {
    let stack = stack().await;
    let stream = stack.create_stream(name, 1).await.unwrap();
    let app = kinesis_emulators::unique_name(&format!("{name}-app"));
    put_records(&stack.kinesis_client(), &stream, sent, per_aggregate).await;
    let log = Log::default();
    let (processors, poison) = (
        log.clone(),
        poison.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>(),
    );
    let worker = Scheduler::builder(&app, &stream, move |_: &str| {
        Box::new(Flaky {
            poison: poison.clone(),
            mode,
            sightings: HashMap::new(),
            log: processors.clone(),
        }) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("w")
    .with_retrieval(polling())
    .with_failure_retry(retry)
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    wait_until("the processor's log", || until(&log)).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    log
}

fn data(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .map(|s| String::from_utf8_lossy(&s.data).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_record_comes_again_with_what_follows_and_checkpoints_stop_before_it() {
    // 60 records, in aggregates of 4 (so failures fall on sub-records too).
    let sent = records(60, 3, 4, "r");
    let all = data(&sent);
    // A plain-position record and sub-records in the middle of aggregates.
    let poison = [all[0].as_str(), all[9].as_str(), all[30].as_str()];
    let retry =
        FailureRetry::default().with_delays(Duration::from_millis(20), Duration::from_millis(100));
    let log = consume(
        "retry-record",
        &sent,
        4,
        &poison,
        Mode::RecordTimes(2),
        retry,
        |log| log.done.lock().unwrap().len() >= 60,
    )
    .await;
    let done = log.done.lock().unwrap().clone();
    assert_eq!(done, all, "every record once, in order, none skipped");
    let after = log.after_failure.lock().unwrap().clone();
    assert_eq!(after.len(), 6, "each poison record failed twice: {after:?}");
    for (checkpoint, (seq, sub)) in &after {
        if let Checkpoint::Sequence {
            sequence_number,
            sub_sequence_number,
        } = checkpoint
        {
            let at = (sequence_number.as_str().to_owned(), *sub_sequence_number);
            assert!(
                (at.0.len(), &at.0, at.1) < (seq.len(), seq, *sub),
                "checkpoint {at:?} is not before the failed record {seq}/{sub}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_in_a_failed_batch_is_found_by_bisecting_and_given_up_visibly() {
    let counters = counters();

    // 40 plain records, read in one GetRecords call; record 25 always fails its batch.
    let sent = records(40, 4, 1, "b");
    let all = data(&sent);
    let poison = all[25].clone();
    let retry = FailureRetry::default()
        .with_max_attempts(2)
        .with_delays(Duration::from_millis(10), Duration::from_millis(50));
    let log = consume(
        "retry-bisect",
        &sent,
        1,
        &[poison.as_str()],
        Mode::BatchAlways,
        retry,
        |log| log.done.lock().unwrap().len() >= 39,
    )
    .await;
    let done = log.done.lock().unwrap().clone();
    let want: Vec<String> = all.iter().filter(|d| **d != poison).cloned().collect();
    assert_eq!(done, want, "all but the poison record, once each, in order");
    // The calls holding the poison record shrink until it is alone, twice.
    let sizes: Vec<usize> = log
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.contains(&poison))
        .map(Vec::len)
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[1] <= w[0]) && sizes.ends_with(&[1, 1]),
        "halved down to the record alone, tried twice: {sizes:?}"
    );
    assert_eq!(counters.get(metric_names::RECORDS_GIVEN_UP, None), 1);
    assert!(counters.get(metric_names::DELIVERY_RETRIES, None) >= 2);
}
