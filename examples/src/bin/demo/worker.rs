//! `demo worker`: one worker of the fleet, in its own process, so the demo can kill it with
//! SIGKILL like a crashed host: no graceful shutdown, no lease released, no last checkpoint.
//!
//! ```text
//!  Scheduler (kinesis-consumer) ── per leased shard ──▶ Reporter (RecordProcessor)
//!     decode each record's event ─▶ write {"ev":"batch",…} to stdout, flush
//!     ─▶ then checkpoint (at most every --checkpoint-ms: CheckpointEvery::interval)
//!  stdin closed (the demo is done or gone) ─▶ graceful_shutdown: leases released
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_consumer::{
    CheckpointEvery, FanOutConfig, InitialPosition, InitializationInput, LeaseLostInput,
    ProcessRecordsInput, RecordProcessor, Retrieval, Scheduler, ShardEndedInput,
    ShutdownRequestedInput,
};
use tokio::io::AsyncReadExt;

use crate::cli::WorkerArgs;
use crate::protocol::WorkerEvent;
use crate::services::worker_clients;
use crate::workload::{now_us, EventView};

/// Writes events to standard output, one flushed line each.
#[derive(Debug, Clone, Default)]
struct Emitter {
    /// Serialises whole lines between shard consumers.
    lock: Arc<Mutex<()>>,
}

impl Emitter {
    /// Writes one event; `false` when standard output is gone (the demo died).
    fn emit(&self, event: &WorkerEvent) -> bool {
        let line = event.to_line();
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    }
}

/// The record processor of one shard: reports, then checkpoints.
#[derive(Debug)]
struct Reporter {
    /// The shard.
    shard: String,
    /// Where reports go.
    out: Emitter,
    /// Checkpoint cadence.
    cadence: CheckpointEvery,
}

#[async_trait]
impl RecordProcessor for Reporter {
    async fn initialize(&mut self, input: InitializationInput) {
        self.shard = input.shard_id;
        self.out.emit(&WorkerEvent::Started {
            shard: self.shard.clone(),
            at_us: now_us(),
            checkpoint: input.checkpoint.to_string(),
        });
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let mut records = Vec::with_capacity(input.records.len());
        let mut bad = Vec::new();
        for r in &input.records {
            match EventView::decode(&r.data) {
                Ok(e) if e.user == &*r.partition_key => {
                    records.push((e.user.to_owned(), e.seq, e.sent_us));
                }
                Ok(e) => bad.push(format!(
                    "{} / {}: event of {} under key {}",
                    r.sequence_number, r.sub_sequence_number, e.user, &*r.partition_key
                )),
                Err(e) => bad.push(format!(
                    "{} / {}: not a demo event: {e}",
                    r.sequence_number, r.sub_sequence_number
                )),
            }
        }
        if input.dropped_outside_shard_range > 0 {
            // Re-sent by the producer to their own shard after the split: shown, not lost.
            self.out.emit(&WorkerEvent::Warning {
                message: format!(
                    "{}: {} records of an aggregate outside the shard's range were left out \
                     (the producer re-sends them to their shard)",
                    self.shard, input.dropped_outside_shard_range
                ),
            });
        }
        let reported = self.out.emit(&WorkerEvent::Batch {
            shard: self.shard.clone(),
            at_us: now_us(),
            records,
            bad,
        });
        // Never checkpoint what the demo was not told about.
        if !reported {
            return;
        }
        if let Err(e) = self.cadence.after_batch(&input).await {
            self.out.emit(&WorkerEvent::Warning {
                message: format!("{}: checkpoint failed: {e}", self.shard),
            });
        }
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {
        self.out.emit(&WorkerEvent::LeaseLost {
            shard: self.shard.clone(),
            at_us: now_us(),
        });
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        // Said before the SHARD_END checkpoint that lets the children start, so the demo can
        // check that every child started after it.
        self.out.emit(&WorkerEvent::ShardEnded {
            shard: self.shard.clone(),
            at_us: now_us(),
        });
        if let Err(e) = input.checkpointer.checkpoint().await {
            self.out.emit(&WorkerEvent::Warning {
                message: format!("{}: SHARD_END checkpoint failed: {e}", self.shard),
            });
        }
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        if let Err(e) = input.checkpointer.checkpoint().await {
            self.out.emit(&WorkerEvent::Warning {
                message: format!("{}: last checkpoint failed: {e}", self.shard),
            });
        }
        // A lease handed to another worker ends here (not in lease_lost): the demo must
        // stop counting this shard as this worker's.
        self.out.emit(&WorkerEvent::Stopped {
            shard: self.shard.clone(),
            at_us: now_us(),
        });
    }
}

/// Runs one worker until its standard input closes; exit status 1 if the scheduler fails.
pub(crate) async fn run(args: WorkerArgs) -> ExitCode {
    let out = Emitter::default();
    out.emit(&WorkerEvent::Ready {
        pid: std::process::id(),
    });
    let (kinesis, dynamodb) = worker_clients(&args).await;
    let cadence = Duration::from_millis(args.checkpoint_ms);
    let factory_out = out.clone();
    let mut builder =
        Scheduler::builder(args.app.clone(), args.stream.clone(), move |shard: &str| {
            Box::new(Reporter {
                shard: shard.to_owned(),
                out: factory_out.clone(),
                cadence: CheckpointEvery::interval(cadence),
            }) as Box<dyn RecordProcessor>
        })
        .with_clients(kinesis, dynamodb)
        .with_worker_id(args.worker_id.clone())
        .with_initial_position(InitialPosition::TrimHorizon)
        .with_failover_time(Duration::from_millis(args.failover_ms))
        .with_shutdown_timeout(Duration::from_secs(10));
    if args.efo {
        builder = builder.with_retrieval(Retrieval::FanOut(FanOutConfig::default()));
    }
    let scheduler = match builder.build() {
        Ok(s) => s,
        Err(e) => {
            out.emit(&WorkerEvent::Failed {
                message: e.to_string(),
            });
            return ExitCode::FAILURE;
        }
    };
    // The demo closes our stdin to stop us (and so does its death).
    let stopper = scheduler.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        stopper.graceful_shutdown().await;
    });
    match scheduler.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.emit(&WorkerEvent::Failed {
                message: e.to_string(),
            });
            ExitCode::FAILURE
        }
    }
}
