//! The producer side: records of the [`Workload`] put at the offered rate through
//! `kinesis_producer::Producer` (aggregation and per-key ordering on), every outcome booked,
//! and the split and the kill announced when their share of the records was put.
//!
//! ```text
//!  Workload ─▶ pace (--rate) ─▶ Producer::put ─▶ PutHandle ─▶ outcome task ─▶ Ledger::produced
//!     at --split-at ─▶ Milestone::Split     at --kill-at ─▶ Milestone::Kill   (to the demo)
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_producer::{Producer, ProducerRecord, PutHandle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::fleet::lock;
use crate::ledger::Ledger;
use crate::workload::{now_us, Workload};

/// Producer failures shown one by one before the rest are only counted.
const FAILURES_SHOWN: u64 = 5;

/// A point of the run the demo acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Milestone {
    /// Time to split a shard.
    Split,
    /// Time to kill a worker.
    Kill,
}

/// What to produce.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Records in all.
    pub(crate) records: u64,
    /// Records per second offered; 0 = unpaced.
    pub(crate) rate: u32,
    /// Distinct keys.
    pub(crate) keys: u32,
    /// Workload seed.
    pub(crate) seed: u64,
    /// Milestones and the record count at which each is announced.
    pub(crate) milestones: Vec<(u64, Milestone)>,
}

/// Builds the producer the demo uses: the library's defaults (aggregation on, 100 ms
/// buffering), per-key ordering on, and no throttling of our own on emulators.
///
/// # Errors
/// The producer's configuration error, as text.
pub(crate) fn producer(
    kinesis: aws_sdk_kinesis::Client,
    real_aws: bool,
) -> Result<Producer, String> {
    let mut b = Producer::builder(kinesis)
        .with_aggregation(true)
        .with_per_key_ordering(true);
    if !real_aws {
        // The emulator enforces no shard limits; keep the KPL's 150 % on real AWS.
        b = b.with_rate_limit_percent(10_000);
    }
    b.build().map_err(|e| e.to_string())
}

/// Puts the plan's records into `stream`, announcing milestones on `milestones`; every
/// outcome is booked in `ledger` by the time this returns.
///
/// # Cancellation
/// Dropping the future stops putting; records already put resolve in the producer.
///
/// # Errors
/// A message when the producer refuses a record (it does not for the demo's records).
pub(crate) async fn produce(
    producer: &Producer,
    stream: &str,
    plan: &Plan,
    ledger: &Arc<Mutex<Ledger>>,
    milestones: &mpsc::UnboundedSender<Milestone>,
    notices: &mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let mut workload = Workload::new(plan.keys, plan.seed);
    let (handles_tx, mut handles_rx) = mpsc::unbounded_channel::<(String, u64, PutHandle)>();
    let outcomes = {
        let (ledger, notices) = (ledger.clone(), notices.clone());
        tokio::spawn(async move {
            let mut failed = 0u64;
            while let Some((key, seq, handle)) = handles_rx.recv().await {
                match handle.await {
                    Ok(_) => lock(&ledger).produced(&key, seq),
                    Err(f) => {
                        lock(&ledger).producer_failed();
                        failed += 1;
                        if failed <= FAILURES_SHOWN {
                            let _ =
                                notices.send(format!("producer: {key} #{seq} not delivered: {f}"));
                        }
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let mut pending = plan.milestones.clone();
    pending.sort_by_key(|(at, _)| *at);
    for i in 0..plan.records {
        while let Some((at, m)) = pending.first().copied() {
            if at > i {
                break;
            }
            pending.remove(0);
            let _ = milestones.send(m);
        }
        if plan.rate > 0 {
            let due = started + Duration::from_secs_f64(i as f64 / f64::from(plan.rate));
            if due > Instant::now() + Duration::from_millis(2) {
                tokio::time::sleep_until(due).await;
            }
        }
        let r = workload.next_record();
        lock(ledger).record_put(now_us());
        let handle = producer
            .put(ProducerRecord::new(stream, r.key.clone(), r.data))
            .await
            .map_err(|e| format!("the producer refused record {i}: {e}"))?;
        let _ = handles_tx.send((r.key, r.seq, handle));
    }
    drop(handles_tx);
    producer.flush().await;
    let _ = outcomes.await;
    Ok(())
}
