//! The demo: a producer and a fleet of three consumer workers on a multi-shard stream; midway
//! a shard is split and a worker is killed with SIGKILL; it ends with a verified summary.
//!
//! ```text
//!                        ┌──────────────────────── demo (this process) ────────────────────────┐
//!  embedded Kinesis +    │ Workload: JSON events, Zipf keys "user-00042", log-normal sizes,    │
//!  DynamoDB (LocalStack) │   payload = {user, seq (per key), sent_us, ...}                     │
//!  or AWS_ENDPOINT_URL_* │ kinesis_producer::Producer (aggregation, per-key order) ──put──┐    │
//!  or real AWS (--aws,   │ at 30 %: SplitShard ────────────────────────────────────────┐  │    │
//!  asks first)           │ at 50 %: SIGKILL the busiest worker ───────────┐            │  │    │
//!                        │ Ledger ◀─ stdout lines ◀───────────────────────┼──────┐     │  │    │
//!                        │ Progress (bars / lines) ◀─ LeaseTable scans    │      │     │  │    │
//!                        └────────────────────────────────────────────────┼──────┼─────┼──┼────┘
//!                                                                         ▼      │     ▼  ▼
//!      demo worker --worker-id worker-1..3 (child processes, same binary):  ┌─────┴── stream ──┐
//!        kinesis_consumer::Scheduler ─ lease table (DynamoDB) ─ per shard:   │ 4 shards → 5 open│
//!        Reporter: decode ─▶ print {"ev":"batch",…} ─▶ checkpoint (1 s) ◀──┤ (polling or EFO) │
//!                                                                           └──────────────────┘
//!  end: wait until every delivered record was processed ─▶ stop the workers (graceful)
//!       ─▶ delete stream + tables ─▶ summary: produced, processed, lost (0), duplicates (why),
//!          per-key order violations (0), p50/p99 put→processed, throughput, kill → resumed
//! ```
//!
//! `cargo run --release -p kinesis-examples --bin demo -- --help` lists the flags; exit status
//! 0 when verified, 1 when anything was lost or reordered (or failed), 2 for bad arguments or
//! an unconfirmed real-AWS run, 130 on Ctrl-C (workers killed, resources deleted).

mod cli;
mod fleet;
mod ledger;
mod produce;
mod progress;
mod protocol;
mod reshard;
mod scenario;
mod services;
mod summary;
mod worker;
mod workload;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Worker(w)) => runtime.block_on(worker::run(w)),
        None => runtime.block_on(scenario::run(cli.demo)),
    }
}
