//! The command line: the demo's flags, and the hidden `worker` subcommand the demo re-executes
//! itself with for each worker process.
//!
//! ```text
//!  demo [--records N --shards N --workers N --rate R ... --efo --aws --yes --json-summary]
//!    └─ spawns N x: demo worker --app A --stream S --worker-id worker-K [--efo] ...
//! ```

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// A producer and a fleet of consumer workers on a multi-shard stream; midway a shard is split
/// and a worker is killed with SIGKILL; the end is a verified summary.
#[derive(Debug, Parser)]
#[command(name = "demo", version, args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    /// The demo's settings (when no subcommand is given).
    #[command(flatten)]
    pub(crate) demo: DemoArgs,
    /// `worker`: one worker of the fleet (started by the demo itself).
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// One consumer worker; the demo starts these itself and reads their standard output.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// The demo's flags.
#[derive(Debug, Args, Clone)]
pub(crate) struct DemoArgs {
    /// User records to produce.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) records: u64,
    /// Shards of the stream at creation (one of them is split midway).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub(crate) shards: i32,
    /// Worker processes in the fleet (one is killed midway unless --no-kill; at least 2 then).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub(crate) workers: u32,
    /// Distinct partition keys ("user-00042"); popularity follows a Zipf law (a few hot keys).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) keys: u32,
    /// Records per second the producer is offered; 0 = as fast as it takes them.
    #[arg(long, default_value_t = 2_000)]
    pub(crate) rate: u32,
    /// Failover time of the workers, in milliseconds: a dead worker's leases move after
    /// about 1.1 x this.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub(crate) failover_ms: u64,
    /// Each worker checkpoints a shard at the first batch this many milliseconds after its
    /// last checkpoint (records after the last checkpoint are delivered again after a kill).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub(crate) checkpoint_ms: u64,
    /// Split a shard once this fraction of the records was produced.
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    pub(crate) split_at: f64,
    /// Kill (SIGKILL) the worker holding the most leases once this fraction was produced.
    #[arg(long, default_value_t = 0.5, value_parser = fraction)]
    pub(crate) kill_at: f64,
    /// Do not split a shard.
    #[arg(long)]
    pub(crate) no_split: bool,
    /// Do not kill a worker.
    #[arg(long)]
    pub(crate) no_kill: bool,
    /// Read the shards with enhanced fan-out (SubscribeToShard) instead of polling.
    #[arg(long)]
    pub(crate) efo: bool,
    /// Use real AWS (the standard configuration chain) for each service that has no
    /// AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB, instead of the embedded emulators.
    #[arg(long)]
    pub(crate) aws: bool,
    /// Do not ask before creating resources in a real AWS account.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// Leave the stream and the lease tables in place at the end (they are deleted by default).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Print plain progress lines even on a terminal.
    #[arg(long)]
    pub(crate) plain: bool,
    /// Seconds between plain progress lines.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) progress_secs: u64,
    /// End with the summary as one JSON line on standard output (after the readable one).
    #[arg(long)]
    pub(crate) json_summary: bool,
    /// Seed of the workload (keys, sizes, event kinds).
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Give up waiting for the fleet after this many seconds without progress.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) stall_secs: u64,
}

impl DemoArgs {
    /// The failover time.
    pub(crate) fn failover(&self) -> Duration {
        Duration::from_millis(self.failover_ms)
    }

    /// Checks what clap cannot check flag by flag.
    ///
    /// # Errors
    /// A message naming the flags in conflict.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.no_kill && self.workers < 2 {
            return Err("--workers must be at least 2 to kill one (or pass --no-kill)".into());
        }
        Ok(())
    }
}

/// The flags of one worker process.
#[derive(Debug, Args, Clone)]
pub(crate) struct WorkerArgs {
    /// Application name (= lease table name).
    #[arg(long)]
    pub(crate) app: String,
    /// The stream.
    #[arg(long)]
    pub(crate) stream: String,
    /// This worker's id in the lease table.
    #[arg(long)]
    pub(crate) worker_id: String,
    /// Failover time in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub(crate) failover_ms: u64,
    /// Checkpoint cadence in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub(crate) checkpoint_ms: u64,
    /// Enhanced fan-out instead of polling.
    #[arg(long)]
    pub(crate) efo: bool,
    /// Kinesis endpoint; default: the SDK's own resolution (AWS_ENDPOINT_URL_KINESIS, else AWS).
    #[arg(long)]
    pub(crate) kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint; default: the SDK's own resolution.
    #[arg(long)]
    pub(crate) dynamodb_endpoint: Option<String>,
    /// Use the emulators' static test credentials and us-east-1 for Kinesis.
    #[arg(long)]
    pub(crate) kinesis_test_credentials: bool,
    /// Use the emulators' static test credentials and us-east-1 for DynamoDB.
    #[arg(long)]
    pub(crate) dynamodb_test_credentials: bool,
}

/// A fraction strictly between 0 and 1.
fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number between 0 and 1"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not strictly between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let cli = Cli::try_parse_from(["demo"]).expect("defaults");
        assert!(cli.command.is_none());
        assert_eq!(cli.demo.records, 60_000);
        assert_eq!(cli.demo.workers, 3);
        cli.demo.validate().expect("valid");
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        for bad in [
            &["demo", "--split-at", "1.5"][..],
            &["demo", "--records", "0"],
            &["demo", "--failover-ms", "10"],
            &["demo", "--shards", "x"],
        ] {
            let e = Cli::try_parse_from(bad).expect_err("refused");
            assert!(e.to_string().contains(bad[1]), "{e}");
        }
        let one = Cli::try_parse_from(["demo", "--workers", "1"]).expect("parses");
        assert!(one.demo.validate().unwrap_err().contains("--no-kill"));
    }

    #[test]
    fn the_worker_subcommand_parses() {
        let cli = Cli::try_parse_from([
            "demo",
            "worker",
            "--app",
            "a",
            "--stream",
            "s",
            "--worker-id",
            "worker-1",
            "--failover-ms",
            "2000",
            "--checkpoint-ms",
            "500",
            "--efo",
        ])
        .expect("worker");
        let Some(Command::Worker(w)) = cli.command else {
            panic!("not a worker")
        };
        assert!(w.efo);
        assert_eq!(w.worker_id, "worker-1");
    }
}
