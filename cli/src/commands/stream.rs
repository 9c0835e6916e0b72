//! `kinesis-cat stream ...`: create, describe, list, split, merge and delete streams.
//!
//! ```text
//!  StreamAction --> Kinesis client (standard config chain)
//!     create   CreateStream (shards, or --on-demand) -> wait ACTIVE
//!     update-mode UpdateStreamMode (ON_DEMAND | PROVISIONED, by ARN) -> wait ACTIVE
//!     update-shard-count UpdateShardCount (UNIFORM_SCALING) -> wait ACTIVE -> open shards
//!     describe DescribeStreamSummary (status, mode, ...) + ListShards (paged) -> table
//!     list     ListStreams (paged)
//!     split    ListShards (range) -> SplitShard(midpoint or --at) -> wait ACTIVE -> children
//!     merge    MergeShards -> wait ACTIVE -> child
//!     delete   DeleteStream
//!     consumers list | register | deregister ─▶ consumers (enhanced fan-out stream consumers)
//! ```

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::consumers::{self, ConsumersAction};
use super::shards;
use crate::{args, help, Error};

/// Arguments of `kinesis-cat stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Seconds to wait for the stream to become ACTIVE after create, split, merge and
    /// update-shard-count, for a stream consumer to become ACTIVE after `consumers
    /// register`, and for it to be gone after `consumers deregister --wait`: 1 to 86400 (a
    /// day).
    #[arg(long, global = true, default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wait_secs: u64,
    /// What to do.
    #[command(subcommand)]
    pub action: StreamAction,
}

/// The `stream` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum StreamAction {
    /// Create a stream (provisioned, or on-demand with --on-demand) and wait until it is
    /// ACTIVE.
    #[command(after_help = help::STREAM_CREATE)]
    Create {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// Number of shards of a provisioned stream (1 to 10000). Default: 1.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000),
              conflicts_with = "on_demand")]
        shards: Option<i32>,
        /// Create an on-demand stream: Kinesis sizes it (4 shards to start, on AWS) and
        /// bills per GB instead of per shard hour. Default: provisioned.
        #[arg(long)]
        on_demand: bool,
    },
    /// Show a stream's status, capacity mode and every shard with its hash range and
    /// lineage.
    #[command(after_help = help::STREAM_DESCRIBE)]
    Describe {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
    },
    /// List stream names, one per line.
    #[command(after_help = help::STREAM_LIST)]
    List,
    /// Split an open shard in two and wait until the stream is ACTIVE again.
    #[command(after_help = help::STREAM_SPLIT)]
    Split {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// Shard to split.
        #[arg(long, value_parser = args::non_empty)]
        shard: String,
        /// Starting hash key of the upper child (decimal). Default: the midpoint of the
        /// shard's range.
        #[arg(long)]
        at: Option<String>,
    },
    /// Merge two adjacent open shards and wait until the stream is ACTIVE again.
    #[command(after_help = help::STREAM_MERGE)]
    Merge {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// First shard to merge.
        #[arg(long, value_parser = args::non_empty)]
        shard: String,
        /// The shard adjacent to it.
        #[arg(long, value_parser = args::non_empty)]
        adjacent: String,
    },
    /// Change a provisioned stream's number of open shards (UpdateShardCount, uniform
    /// scaling: Kinesis splits or merges so that the shards cover equal hash ranges) and
    /// wait until it is ACTIVE again.
    ///
    /// Kinesis allows at most double or half the open shards per call, and a limited
    /// number of calls per 24 hours; an on-demand stream sizes itself and refuses it.
    #[command(name = "update-shard-count", after_help = help::STREAM_UPDATE_SHARD_COUNT)]
    UpdateShardCount {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// The number of open shards wanted (1 to 10000).
        #[arg(long, value_name = "SHARDS",
              value_parser = clap::value_parser!(i32).range(1..=10_000))]
        target: i32,
    },
    /// Switch a stream between on-demand and provisioned capacity (UpdateStreamMode) and
    /// wait until it is ACTIVE again.
    ///
    /// Kinesis allows two switches per 24 hours; a stream switched to provisioned keeps
    /// its shards.
    #[command(name = "update-mode", after_help = help::STREAM_UPDATE_MODE)]
    UpdateMode {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// The capacity mode wanted.
        #[arg(long, value_enum)]
        mode: Mode,
    },
    /// Delete a stream (does not wait for it to disappear).
    #[command(after_help = help::STREAM_DELETE)]
    Delete {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// Also delete registered enhanced fan-out consumers (otherwise a stream with
        /// consumers is refused). Default: off.
        #[arg(long)]
        force: bool,
    },
    /// List, register and deregister the enhanced fan-out stream consumers of a stream
    /// (what `consume --efo` reads through; each costs money while registered).
    #[command(after_help = help::CONSUMERS)]
    Consumers {
        /// What to do.
        #[command(subcommand)]
        action: ConsumersAction,
    },
}

/// A stream's capacity mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Kinesis sizes the stream and bills per GB.
    OnDemand,
    /// The shards are yours to size, billed per shard hour.
    Provisioned,
}

/// Runs a `stream` subcommand against the endpoint of the standard AWS configuration chain.
///
/// # Cancellation
/// Dropping the future stops waiting; an operation already sent to Kinesis goes ahead.
///
/// # Errors
/// [`Error::Kinesis`] for failed calls, [`Error::ShardNotFound`] / [`Error::InvalidHashKey`]
/// for bad arguments, [`Error::Emulators`] when the stream does not become ACTIVE in time;
/// for `consumers`, those of [`consumers::run`].
pub async fn run(args: StreamArgs, aws: &crate::aws::AwsOptions) -> Result<(), Error> {
    let client = crate::aws::kinesis_client(aws).await?;
    let wait = Duration::from_secs(args.wait_secs);
    // Nothing here can be finished gracefully: the first signal stops waiting (an
    // operation already sent goes ahead in Kinesis) and says so.
    let stop = crate::signals::install("no longer waiting")?;
    tokio::select! {
        r = action(&client, args.action, wait) => r,
        _ = stop.cancelled() => Err(Error::Interrupted {
            what: "stopped waiting; an operation already sent to Kinesis goes ahead",
        }),
    }
}

async fn action(
    client: &aws_sdk_kinesis::Client,
    action: StreamAction,
    wait: Duration,
) -> Result<(), Error> {
    let client = client.clone();
    let mut out = std::io::stdout().lock();
    match action {
        StreamAction::Create {
            stream,
            shards,
            on_demand,
        } => {
            let mode = if on_demand {
                Capacity::OnDemand
            } else {
                Capacity::Provisioned(shards.unwrap_or(1))
            };
            create(&client, &stream, mode, wait, &mut out).await
        }
        StreamAction::Describe { stream } => describe(&client, &stream, &mut out).await,
        StreamAction::List => list(&client, &mut out).await,
        StreamAction::Split { stream, shard, at } => {
            split(&client, &stream, &shard, at.as_deref(), wait, &mut out).await
        }
        StreamAction::Merge {
            stream,
            shard,
            adjacent,
        } => merge(&client, &stream, &shard, &adjacent, wait, &mut out).await,
        StreamAction::UpdateShardCount { stream, target } => {
            update_shard_count(&client, &stream, target, wait, &mut out).await
        }
        StreamAction::UpdateMode { stream, mode } => {
            update_mode(&client, &stream, mode, wait, &mut out).await
        }
        StreamAction::Delete {
            stream: name,
            force,
        } => {
            client
                .delete_stream()
                .stream_name(&name)
                .enforce_consumer_deletion(force)
                .send()
                .await
                .map_err(|e| Error::kinesis("DeleteStream", &name, e))?;
            writeln!(out, "deleting stream {name}").map_err(Error::Output)
        }
        StreamAction::Consumers { action } => consumers::run(&client, action, wait, &mut out).await,
    }
}

/// How a new stream's capacity is managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capacity {
    /// Provisioned, with this many shards.
    Provisioned(i32),
    /// On-demand: Kinesis decides the shards.
    OnDemand,
}

async fn create(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    capacity: Capacity,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails};
    let request = client.create_stream().stream_name(name);
    let request = match capacity {
        Capacity::Provisioned(shards) => request.shard_count(shards),
        Capacity::OnDemand => request.stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .map_err(|e| Error::Internal(format!("StreamModeDetails: {e}")))?,
        ),
    };
    request
        .send()
        .await
        .map_err(|e| Error::kinesis("CreateStream", name, e))?;
    kinesis_emulators::wait_for_stream_active(client, name, wait).await?;
    let summary = summary(client, name).await?;
    let mode = summary
        .stream_mode_details()
        .map_or("PROVISIONED", |m| m.stream_mode().as_str());
    let open = summary.open_shard_count();
    writeln!(
        out,
        "created stream {name}: {mode}, {open} open shard{}, ACTIVE",
        if open == 1 { "" } else { "s" }
    )
    .map_err(Error::Output)
}

/// DescribeStreamSummary of `name`.
///
/// # Cancellation
/// Safe to drop: it only reads.
///
/// # Errors
/// [`Error::Kinesis`] for a failed call (a missing stream exits with status 3),
/// [`Error::Internal`] for an answer without a summary.
pub(crate) async fn summary(
    client: &aws_sdk_kinesis::Client,
    name: &str,
) -> Result<aws_sdk_kinesis::types::StreamDescriptionSummary, Error> {
    client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .map_err(|e| Error::kinesis("DescribeStreamSummary", name, e))?
        .stream_description_summary
        .ok_or_else(|| Error::Internal(format!("DescribeStreamSummary of {name} said nothing")))
}

async fn update_mode(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    mode: Mode,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails};
    let arn = summary(client, name).await?.stream_arn().to_owned();
    let details = StreamModeDetails::builder()
        .stream_mode(match mode {
            Mode::OnDemand => StreamMode::OnDemand,
            Mode::Provisioned => StreamMode::Provisioned,
        })
        .build()
        .map_err(|e| Error::Internal(format!("StreamModeDetails: {e}")))?;
    client
        .update_stream_mode()
        .stream_arn(arn)
        .stream_mode_details(details)
        .send()
        .await
        .map_err(|e| Error::kinesis("UpdateStreamMode", name, e))?;
    kinesis_emulators::wait_for_stream_active(client, name, wait).await?;
    let now = summary(client, name).await?;
    let mode = now
        .stream_mode_details()
        .map_or("PROVISIONED", |m| m.stream_mode().as_str());
    writeln!(out, "stream {name}: {mode}, ACTIVE").map_err(Error::Output)
}

async fn update_shard_count(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    target: i32,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    use aws_sdk_kinesis::types::ScalingType;
    let before = summary(client, name).await?.open_shard_count();
    client
        .update_shard_count()
        .stream_name(name)
        .target_shard_count(target)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .map_err(|e| Error::kinesis("UpdateShardCount", name, e))?;
    kinesis_emulators::wait_for_stream_active(client, name, wait).await?;
    let after = summary(client, name).await?.open_shard_count();
    writeln!(
        out,
        "stream {name}: {before} -> {after} open shards (asked for {target}): ACTIVE"
    )
    .map_err(Error::Output)
}

async fn describe(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    out: &mut impl Write,
) -> Result<(), Error> {
    let s = summary(client, name).await?;
    let all = shards::list_all(client, name).await?;
    let mut text = String::new();
    text.push_str(&format!("stream:      {}\n", s.stream_name()));
    text.push_str(&format!("arn:         {}\n", s.stream_arn()));
    text.push_str(&format!("status:      {}\n", s.stream_status().as_str()));
    // Streams created before capacity modes existed report none: they are provisioned.
    text.push_str(&format!(
        "mode:        {}\n",
        s.stream_mode_details()
            .map_or("PROVISIONED", |m| m.stream_mode().as_str())
    ));
    text.push_str(&format!("retention:   {} h\n", s.retention_period_hours()));
    text.push_str(&format!("open shards: {}\n", s.open_shard_count()));
    text.push_str(&format!(
        "{:<22} {:<6} {:<40} {:<40} {:<22} {}\n",
        "SHARD", "STATE", "STARTING_HASH_KEY", "ENDING_HASH_KEY", "PARENT", "ADJACENT_PARENT"
    ));
    for shard in &all {
        let (start, end) = shard
            .hash_key_range()
            .map(|r| (r.starting_hash_key(), r.ending_hash_key()))
            .unwrap_or(("?", "?"));
        text.push_str(&format!(
            "{:<22} {:<6} {:<40} {:<40} {:<22} {}\n",
            shard.shard_id(),
            if shards::is_closed(shard) {
                "closed"
            } else {
                "open"
            },
            start,
            end,
            shard.parent_shard_id().unwrap_or("-"),
            shard.adjacent_parent_shard_id().unwrap_or("-"),
        ));
    }
    out.write_all(text.as_bytes()).map_err(Error::Output)
}

async fn list(client: &aws_sdk_kinesis::Client, out: &mut impl Write) -> Result<(), Error> {
    let mut token: Option<String> = None;
    let mut after: Option<String> = None;
    loop {
        let mut request = client.list_streams();
        if let Some(t) = &token {
            request = request.next_token(t);
        } else if let Some(last) = &after {
            request = request.exclusive_start_stream_name(last);
        }
        let page = request
            .send()
            .await
            .map_err(|e| Error::kinesis("ListStreams", "-", e))?;
        for name in page.stream_names() {
            writeln!(out, "{name}").map_err(Error::Output)?;
        }
        if !page.has_more_streams() || page.stream_names().is_empty() {
            return Ok(());
        }
        token = page.next_token().map(str::to_owned);
        after = page.stream_names().last().cloned();
    }
}

async fn split(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shard_id: &str,
    at: Option<&str>,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    let before = shards::list_all(client, name).await?;
    let shard = shards::find_open(&before, name, shard_id)?;
    let (start, end) = shards::hash_range(shard)?;
    let new_start = match at {
        Some(value) => {
            let key = shards::parse_hash_key(value)?;
            if key <= start || key > end {
                return Err(Error::InvalidHashKey {
                    value: value.to_owned(),
                    reason: format!("must be in ({start}, {end}] for shard {shard_id}"),
                });
            }
            key
        }
        None => shards::split_point(start, end).ok_or_else(|| Error::InvalidHashKey {
            value: start.to_string(),
            reason: format!("shard {shard_id} covers a single hash key and cannot be split"),
        })?,
    };
    client
        .split_shard()
        .stream_name(name)
        .shard_to_split(shard_id)
        .new_starting_hash_key(new_start.to_string())
        .send()
        .await
        .map_err(|e| Error::kinesis("SplitShard", name, e))?;
    kinesis_emulators::wait_for_stream_active(client, name, wait).await?;
    let after = shards::list_all(client, name).await?;
    let children: Vec<&str> = after
        .iter()
        .filter(|s| s.parent_shard_id() == Some(shard_id) && s.adjacent_parent_shard_id().is_none())
        .map(|s| s.shard_id())
        .collect();
    writeln!(
        out,
        "split {shard_id} at {new_start}: children {}",
        if children.is_empty() {
            "-".to_owned()
        } else {
            children.join(" ")
        }
    )
    .map_err(Error::Output)
}

async fn merge(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shard_id: &str,
    adjacent: &str,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    let before = shards::list_all(client, name).await?;
    for id in [shard_id, adjacent] {
        shards::find_open(&before, name, id)?;
    }
    client
        .merge_shards()
        .stream_name(name)
        .shard_to_merge(shard_id)
        .adjacent_shard_to_merge(adjacent)
        .send()
        .await
        .map_err(|e| Error::kinesis("MergeShards", name, e))?;
    kinesis_emulators::wait_for_stream_active(client, name, wait).await?;
    let after = shards::list_all(client, name).await?;
    let child = after
        .iter()
        .find(|s| {
            let parents = (s.parent_shard_id(), s.adjacent_parent_shard_id());
            parents == (Some(shard_id), Some(adjacent))
                || parents == (Some(adjacent), Some(shard_id))
        })
        .map_or("-", |s| s.shard_id());
    writeln!(out, "merged {shard_id} and {adjacent}: child {child}").map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: StreamArgs,
    }

    fn parse(argv: &[&str]) -> Result<StreamArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("stream").chain(argv.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn defaults_are_pinned() {
        let args = parse(&["create", "-s", "s"]).expect("parse");
        assert_eq!(args.wait_secs, 300);
        assert!(matches!(
            args.action,
            StreamAction::Create {
                shards: None,
                on_demand: false,
                ..
            }
        ));
        let args = parse(&["delete", "-s", "s"]).expect("parse");
        assert!(matches!(
            args.action,
            StreamAction::Delete { force: false, .. }
        ));
        let args = parse(&["split", "-s", "s", "--shard", "shardId-000000000000"]).expect("parse");
        assert!(matches!(args.action, StreamAction::Split { at: None, .. }));
        let args = parse(&["consumers", "deregister", "--stream", "s", "c"]).expect("parse");
        assert_eq!(args.wait_secs, 300);
        assert!(matches!(
            args.action,
            StreamAction::Consumers {
                action: ConsumersAction::Deregister { wait: false, .. }
            }
        ));
    }

    #[test]
    fn consumers_need_a_stream_and_a_valid_name() {
        assert!(parse(&["consumers", "list"]).is_err());
        assert!(parse(&["consumers", "register", "--stream", "s"]).is_err());
        assert!(parse(&["consumers", "register", "--stream", "s", "bad name"]).is_err());
        assert!(parse(&["consumers", "register", "--stream", "s", ""]).is_err());
        let args = parse(&[
            "consumers",
            "register",
            "--stream",
            "s",
            "billing",
            "--wait-secs",
            "9",
        ])
        .expect("parse");
        assert_eq!(args.wait_secs, 9);
        assert!(
            parse(&["create", "-s", "s", "--wait-secs", "18446744073709551615"]).is_err(),
            "a wait that would overflow the clock is refused"
        );
        assert!(matches!(
            args.action,
            StreamAction::Consumers {
                action: ConsumersAction::Register { ref stream, ref name }
            } if stream == "s" && name == "billing"
        ));
        let args =
            parse(&["consumers", "deregister", "--stream", "s", "c", "--wait"]).expect("parse");
        assert!(matches!(
            args.action,
            StreamAction::Consumers {
                action: ConsumersAction::Deregister { wait: true, .. }
            }
        ));
    }

    #[test]
    fn capacity_and_resharding_flags() {
        let args = parse(&["create", "--stream", "s", "--on-demand"]).expect("parse");
        assert!(matches!(
            args.action,
            StreamAction::Create {
                shards: None,
                on_demand: true,
                ..
            }
        ));
        let e = parse(&["create", "-s", "s", "--on-demand", "--shards", "2"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        let args = parse(&["update-shard-count", "-s", "s", "--target", "8"]).expect("parse");
        assert!(matches!(
            args.action,
            StreamAction::UpdateShardCount { target: 8, ref stream } if stream == "s"
        ));
        for bad in ["0", "10001", "x"] {
            assert!(parse(&["update-shard-count", "-s", "s", "--target", bad]).is_err());
        }
        assert!(
            parse(&["update-shard-count", "-s", "s"]).is_err(),
            "--target is required"
        );
        assert!(
            parse(&["describe", "s"]).is_err(),
            "the stream is a flag, as everywhere"
        );
    }

    #[test]
    fn merge_needs_both_shards() {
        assert!(parse(&["merge", "-s", "s", "--shard", "a"]).is_err());
        let args = parse(&[
            "merge",
            "-s",
            "s",
            "--shard",
            "a",
            "--adjacent",
            "b",
            "--wait-secs",
            "5",
        ])
        .expect("parse");
        assert_eq!(args.wait_secs, 5);
        assert!(matches!(
            args.action,
            StreamAction::Merge { ref shard, ref adjacent, .. } if shard == "a" && adjacent == "b"
        ));
    }
}
