//! `kinesis-cat leases`: the lease table of a consumer application, as a table.
//!
//! ```text
//!  Scan (consistent) ─▶ leases (odd items skipped with a warning) ─▶ sorted by key ─▶ table,
//!    with each lease's throughputKBps (as its holder last wrote it: KB of 1,024 bytes per
//!    second, the Java KCL 3.x's unit; "-" where none was written); a multi-stream
//!    application's table has a "stream" column naming each lease's stream; while any
//!    graceful handoff is pending (the Java KCL 3.x `checkpointOwner`: `leaseOwner` is
//!    already the next owner, the previous one is still finishing), a last "handoff"
//!    column says "from <previous owner>" on those leases
//!  [--stream S] ListShards ─▶ open/closed per shard, for the "state" column
//!               (multi-stream table) DescribeStreamSummary ─▶ its creation time: the leases
//!               of a former stream of that name (deleted, created again) are not its own
//!               GetShardIterator(after checkpoint) + GetRecords(limit 1) ─▶ MillisBehindLatest,
//!               for the "lag" column (as far as the server reports it)
//!  GetItem of the fleet table (<app>-Workers), if any ─▶ workers: leases held, the sum of
//!    their throughputKBps (what throughput balancing weighs), records/s, KB/s (of 1,000
//!    bytes) and lag (the largest millis behind latest of their shards) as each reported
//!    with its last heartbeat, last heartbeat; without a fleet (workers renewing leases),
//!    the lease owners with their leases and throughput; while any handoff is pending, a
//!    "handing off" column counts the leases each worker is still finishing for their
//!    next owner (a previous owner owning nothing else is listed too: it still works)
//! ```

use std::collections::HashMap;
use std::io::Write;

use aws_sdk_kinesis::types::ShardIteratorType;
use clap::Args;
use kinesis_consumer::leases::{
    FleetStore, FleetTable, FleetView, LeaseStore, LeaseTable, WorkerLoad,
};
use kinesis_consumer::{Checkpoint, Lease};

use crate::{args, Error};

/// Arguments of `kinesis-cat leases`.
#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// Application name (the lease table's name).
    #[arg(short, long, value_parser = args::application_name)]
    pub app: String,
    /// The stream, to show which leased shards are still open and how far behind their
    /// checkpoints are. Default: not shown.
    #[arg(short, long, value_parser = args::stream_name)]
    pub stream: Option<String>,
    /// Shows the tables again every SECS seconds until Ctrl-C: in place on a terminal,
    /// one after the other otherwise.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch: Option<u64>,
}

/// What the stream says about a leased shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardView {
    /// Whether the shard is still open.
    pub open: bool,
    /// `MillisBehindLatest` just after the checkpoint, when the server told.
    pub lag_ms: Option<i64>,
}

/// What `--stream` says about the shards of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamView {
    /// The stream's name.
    pub stream: String,
    /// When the stream of that name was created (seconds since the Unix epoch, as in a
    /// multi-stream identifier), so that the leases of a former stream of the same name
    /// (deleted and created again) are not taken for its own; `None` when not known.
    pub creation_epoch: Option<u64>,
    /// Each shard (by shard id) of the stream.
    pub shards: HashMap<String, ShardView>,
}

/// Whether `lease` is of the stream `view` shows: a single-stream lease always is; a
/// multi-stream one when its identifier names that stream, created at the time the view
/// says when it says one.
pub fn of_view(view: &StreamView, lease: &Lease) -> bool {
    lease.stream.as_ref().is_none_or(|id| {
        id.stream_name() == view.stream
            && view
                .creation_epoch
                .is_none_or(|epoch| id.creation_epoch() == epoch)
    })
}

/// The lease whose checkpoint the lag of `shard` of the viewed stream is measured from.
pub fn lease_for_lag<'a>(leases: &'a [Lease], view: &StreamView, shard: &str) -> Option<&'a Lease> {
    leases
        .iter()
        .find(|l| l.shard_id() == shard && of_view(view, l))
}

/// Formats leases as an aligned text table. `view` says what the stream given with
/// `--stream` says about its shards (leases of other streams of a multi-stream table, and
/// of a former stream of the same name, show "-"). When any lease is a multi-stream one, a first column names each lease's stream
/// (`account:stream:creationEpoch`) and the shard column holds the bare shard id. When any
/// lease has a graceful handoff pending (`checkpointOwner` set), a last column "handoff"
/// says `from <previous owner>` on those leases ("-" on the others); the owner column
/// holds the next owner (`leaseOwner`), as stored.
pub fn format_table(leases: &[Lease], view: Option<&StreamView>) -> String {
    let multi = leases.iter().any(|l| l.stream.is_some());
    let handoffs = leases.iter().any(|l| l.checkpoint_owner.is_some());
    let mut rows = vec![vec![
        "stream".to_owned(),
        "shard".to_owned(),
        "owner".to_owned(),
        "counter".to_owned(),
        "KB/s".to_owned(),
        "checkpoint".to_owned(),
        "parents".to_owned(),
        "state".to_owned(),
        "lag".to_owned(),
        "handoff".to_owned(),
    ]];
    let mut sorted: Vec<&Lease> = leases.iter().collect();
    sorted.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    for l in sorted {
        let shards = view.filter(|v| of_view(v, l)).map(|v| &v.shards);
        let state = if l.checkpoint.is_shard_end() {
            "done".to_owned()
        } else {
            match (view, shards.map(|m| m.get(l.shard_id()))) {
                (Some(_), None) => "-".to_owned(),
                (None, _) => "-".to_owned(),
                (_, Some(None)) => "gone from stream".to_owned(),
                (_, Some(Some(v))) if v.open => "open".to_owned(),
                (_, Some(Some(_))) => "closed, in progress".to_owned(),
            }
        };
        let lag = shards
            .and_then(|m| m.get(l.shard_id()))
            .and_then(|v| v.lag_ms)
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        rows.push(vec![
            l.stream
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            l.shard_id().to_owned(),
            l.owner.clone().unwrap_or_else(|| "-".to_owned()),
            l.counter.to_string(),
            throughput(l),
            l.checkpoint.to_string(),
            if l.parent_shard_ids.is_empty() {
                "-".to_owned()
            } else {
                l.parent_shard_ids.join(",")
            },
            state,
            lag,
            handoff(l),
        ]);
    }
    for row in &mut rows {
        if !handoffs {
            // No handoff pending: no handoff column.
            row.pop();
        }
        if !multi {
            // A single-stream table: no stream column.
            row.remove(0);
        }
    }
    aligned(&rows)
}

/// The handoff cell of a lease: "from <previous owner>" while a graceful handoff is
/// pending (`checkpointOwner` set), "-" otherwise.
fn handoff(lease: &Lease) -> String {
    lease
        .checkpoint_owner
        .as_ref()
        .map_or_else(|| "-".to_owned(), |from| format!("from {from}"))
}

/// A lease's `throughputKBps`, or "-" when none was written.
fn throughput(lease: &Lease) -> String {
    lease
        .throughput
        .map_or_else(|| "-".to_owned(), |t| format!("{:.1}", t.kbps()))
}

/// Rows as text, each column as wide as its widest cell, two spaces apart.
fn aligned<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.as_ref().get(c).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Formats the workers: those in the fleet (with how long ago their last heartbeat was
/// written, by its writer's clock, at `now_ms` since the Unix epoch) and those owning
/// leases without being in it (another KCL's workers, or gone ones: heartbeat "-"), with
/// the leases each owns and the load it reported with its last heartbeat ("-" where it
/// reported none: not in the fleet, or an older version), and the sum of the
/// `throughputKBps` of the leases each owns ("-" where none carries one). While any lease
/// has a graceful handoff pending, a last column "handing off" counts the leases each
/// worker is the previous owner (`checkpointOwner`) of, still finishing them (such a lease
/// counts among its next owner's leases); a previous owner that owns nothing is listed too.
pub fn format_workers(leases: &[Lease], fleet: &FleetView, now_ms: u64) -> String {
    let mut owned: HashMap<&str, usize> = HashMap::new();
    let mut kbps: HashMap<&str, (f64, bool)> = HashMap::new();
    let mut handing_off: HashMap<&str, usize> = HashMap::new();
    for l in leases {
        if let Some(from) = &l.checkpoint_owner {
            *handing_off.entry(from.as_str()).or_default() += 1;
        }
        if let Some(owner) = &l.owner {
            *owned.entry(owner.as_str()).or_default() += 1;
            let sum = kbps.entry(owner.as_str()).or_default();
            if let Some(t) = l.throughput {
                *sum = (sum.0 + t.kbps(), true);
            }
        }
    }
    let mut workers: Vec<&str> = fleet.beats.keys().map(String::as_str).collect();
    workers.extend(
        owned
            .keys()
            .chain(handing_off.keys())
            .copied()
            .filter(|w| !fleet.beats.contains_key(*w)),
    );
    workers.sort_unstable();
    workers.dedup();
    let mut rows = vec![vec![
        "worker".to_owned(),
        "leases".to_owned(),
        "leases KB/s".to_owned(),
        "records/s".to_owned(),
        "KB/s".to_owned(),
        "lag".to_owned(),
        "last heartbeat".to_owned(),
        "handing off".to_owned(),
    ]];
    for w in workers {
        let beat = fleet.beats.get(w).map_or_else(
            || "- (not in the fleet)".to_owned(),
            |ms| format!("{:.1} s ago", now_ms.saturating_sub(*ms) as f64 / 1000.0),
        );
        let load = fleet.loads.get(w);
        let figure = |f: fn(&WorkerLoad) -> Option<String>| {
            load.and_then(f).unwrap_or_else(|| "-".to_owned())
        };
        rows.push(vec![
            w.to_owned(),
            owned.get(w).copied().unwrap_or(0).to_string(),
            match kbps.get(w) {
                Some((sum, true)) => format!("{sum:.1}"),
                _ => "-".to_owned(),
            },
            figure(|l| Some(format!("{:.0}", l.records_per_second))),
            figure(|l| Some(format!("{:.1}", l.bytes_per_second / 1000.0))),
            figure(|l| {
                l.max_millis_behind_latest
                    .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            }),
            beat,
            handing_off.get(w).copied().unwrap_or(0).to_string(),
        ]);
    }
    if handing_off.is_empty() {
        // No handoff pending: no handing-off column.
        for row in &mut rows {
            row.pop();
        }
    }
    aligned(&rows)
}

/// Prints the lease table and the workers, once or (with `--watch`) until a signal.
///
/// # Cancellation
/// Safe to drop: it only reads. With `--watch`, the first Ctrl-C / SIGTERM ends the watch
/// with status 0.
///
/// # Errors
/// [`Error::Config`] for an unusable AWS configuration; DynamoDB or Kinesis errors (a
/// missing table or stream exits with status 3).
pub async fn run(args: LeasesArgs, aws: &crate::aws::AwsOptions) -> Result<(), Error> {
    let config = crate::aws::load(aws).await?;
    let Some(every) = args.watch else {
        return show(&args, &config, false).await;
    };
    let stop = crate::signals::install("stopping the watch")?;
    let in_place = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        show(&args, &config, in_place).await?;
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_secs(every)) => {}
        }
    }
}

/// Reads and prints the tables once; `in_place` clears the terminal first.
async fn show(
    args: &LeasesArgs,
    config: &aws_config::SdkConfig,
    in_place: bool,
) -> Result<(), Error> {
    let config = config.clone();
    let table = LeaseTable::new(aws_sdk_dynamodb::Client::new(&config), &args.app);
    let leases = table.list_leases().await?;
    let views = match &args.stream {
        Some(stream) => {
            let kinesis = aws_sdk_kinesis::Client::new(&config);
            let shards = super::shards::list_all(&kinesis, stream).await?;
            let mut view = StreamView {
                stream: stream.clone(),
                creation_epoch: None,
                shards: HashMap::new(),
            };
            if leases.iter().any(|l| l.stream.is_some()) {
                // A multi-stream table may hold a former stream of this name too.
                view.creation_epoch = Some(creation_epoch(&kinesis, stream).await?);
            }
            for s in &shards {
                let id = s.shard_id().to_owned();
                let lag_ms = match lease_for_lag(&leases, &view, &id) {
                    Some(l) => lag(&kinesis, stream, &id, &l.checkpoint).await,
                    None => None,
                };
                let open = !super::shards::is_closed(s);
                view.shards.insert(id, ShardView { open, lag_ms });
            }
            Some(view)
        }
        None => None,
    };
    // Workers with heartbeats (the default) are in the fleet table; older or Java-style
    // applications have none.
    let fleet = FleetTable::for_lease_table(aws_sdk_dynamodb::Client::new(&config), &args.app);
    let fleet = match fleet.read().await {
        Ok(view) => Some(view),
        Err(e) if e.to_string().contains("ResourceNotFoundException") => None,
        Err(e) => return Err(e.into()),
    };
    let mut text = format_table(&leases, views.as_ref());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    text.push('\n');
    text.push_str(&format_workers(&leases, &fleet.unwrap_or_default(), now_ms));
    if in_place {
        // Clear the screen and go home, so the tables are redrawn where they were.
        text.insert_str(0, "\x1b[2J\x1b[H");
    } else if args.watch.is_some() {
        text.push('\n');
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Output)
}

/// When `stream` was created, in seconds since the Unix epoch (the third field of a
/// multi-stream identifier).
///
/// # Errors
/// [`Error::Kinesis`] (a missing stream: not found, status 3).
async fn creation_epoch(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<u64, Error> {
    let created = super::stream::summary(kinesis, stream)
        .await?
        .stream_creation_timestamp()
        .secs();
    Ok(u64::try_from(created).unwrap_or(0))
}

/// `MillisBehindLatest` right after `checkpoint`, from one `GetRecords` (limit 1). `None`
/// for positions it cannot tell (LATEST, AT_TIMESTAMP, SHARD_END) or on any error.
async fn lag(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    checkpoint: &Checkpoint,
) -> Option<i64> {
    let req = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard);
    let req = match checkpoint {
        Checkpoint::Sequence {
            sequence_number, ..
        } => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(sequence_number.as_str()),
        Checkpoint::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        _ => return None,
    };
    let it = req.send().await.ok()?.shard_iterator()?.to_owned();
    let out = kinesis
        .get_records()
        .shard_iterator(it)
        .limit(1)
        .send()
        .await
        .ok()?;
    out.millis_behind_latest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_consumer::Checkpoint;

    /// The cells of a line of an aligned table: what stands between runs of two spaces or
    /// more (a cell itself holds single spaces at most).
    fn cells(line: &str) -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn table_lists_every_column_sorted() {
        let mut a = Lease::new("shardId-000000000001", Checkpoint::at("495", 2).unwrap())
            .with_parents(vec!["shardId-000000000000".into()]);
        a.owner = Some("w1".into());
        a.counter = 7;
        a.throughput = kinesis_consumer::leases::Throughput::from_kbps(12.34);
        let b = Lease::new("shardId-000000000000", Checkpoint::ShardEnd);
        let views = StreamView {
            stream: "s".into(),
            creation_epoch: None,
            shards: [(
                "shardId-000000000001".to_owned(),
                ShardView {
                    open: true,
                    lag_ms: Some(1500),
                },
            )]
            .into(),
        };
        let text = format_table(&[a, b], Some(&views));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("shard"));
        assert!(
            lines[1].starts_with("shardId-000000000000")
                && lines[1].split_whitespace().rev().take(2).eq(["-", "done"])
        );
        assert!(lines[2].contains("w1") && lines[2].contains(" 7 ") && lines[2].contains("495/2"));
        assert!(lines[0].contains("counter  KB/s  checkpoint"), "{text}");
        assert!(lines[2].contains(" 12.3 "), "{text}");
        assert!(
            lines[1].split_whitespace().nth(3) == Some("-"),
            "no throughput written: {text}"
        );
        assert!(
            lines[2].contains("shardId-000000000000")
                && lines[2]
                    .split_whitespace()
                    .rev()
                    .take(3)
                    .eq(["ms", "1500", "open"])
        );
    }

    #[test]
    fn multi_stream_tables_name_each_lease_stream() {
        let orders: kinesis_consumer::StreamIdentifier = "1:orders:5".parse().unwrap();
        let pay: kinesis_consumer::StreamIdentifier = "1:pay:6".parse().unwrap();
        let a = Lease::new_multi_stream(orders, "shardId-000000000000", Checkpoint::TrimHorizon);
        let b = Lease::new_multi_stream(pay, "shardId-000000000000", Checkpoint::TrimHorizon);
        let views = StreamView {
            stream: "orders".into(),
            creation_epoch: None,
            shards: [(
                "shardId-000000000000".to_owned(),
                ShardView {
                    open: true,
                    lag_ms: None,
                },
            )]
            .into(),
        };
        let text = format_table(&[b, a], Some(&views));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("stream") && lines[0].contains("shard"));
        assert_eq!(cells(lines[1])[..2], ["1:orders:5", "shardId-000000000000"]);
        assert!(lines[1].contains("open"), "--stream orders: {}", lines[1]);
        assert_eq!(cells(lines[2])[..2], ["1:pay:6", "shardId-000000000000"]);
        assert!(!lines[2].contains("open") && !lines[2].contains("gone"));
    }

    #[test]
    fn a_stream_created_again_shows_its_own_leases_not_the_former_ones() {
        // The stream "orders" was deleted and created again: the table holds the leases of
        // both (the former creation at epoch 5, the current at 9), with the same shard ids.
        let former: kinesis_consumer::StreamIdentifier = "1:orders:5".parse().unwrap();
        let current: kinesis_consumer::StreamIdentifier = "1:orders:9".parse().unwrap();
        let old = Lease::new_multi_stream(
            former,
            "shardId-000000000000",
            Checkpoint::at("111", 0).unwrap(),
        );
        let new = Lease::new_multi_stream(
            current,
            "shardId-000000000000",
            Checkpoint::at("222", 0).unwrap(),
        );
        let view = StreamView {
            stream: "orders".into(),
            creation_epoch: Some(9),
            shards: [(
                "shardId-000000000000".to_owned(),
                ShardView {
                    open: true,
                    lag_ms: Some(1500),
                },
            )]
            .into(),
        };
        // The lag is measured from the current stream's lease, whatever the scan order.
        for leases in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
            let lease = lease_for_lag(&leases, &view, "shardId-000000000000").unwrap();
            assert_eq!(lease.checkpoint.to_string(), "222/0");
        }
        let text = format_table(&[old.clone(), new.clone()], Some(&view));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("1:orders:5"), "{text}");
        assert!(
            !lines[1].contains("open") && !lines[1].contains("1500"),
            "the former stream's lease is not of the stream shown: {}",
            lines[1]
        );
        assert!(lines[2].starts_with("1:orders:9"), "{text}");
        assert!(
            lines[2].contains("open") && lines[2].contains("1500 ms"),
            "{text}"
        );
        // Without the creation time (not known), every lease of the name is matched.
        let unknown = StreamView {
            creation_epoch: None,
            ..view
        };
        let text = format_table(&[old, new], Some(&unknown));
        assert_eq!(text.matches("open").count(), 2, "{text}");
    }

    #[test]
    fn workers_show_their_leases_and_heartbeat_age_and_owners_outside_the_fleet() {
        let mut a = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon);
        a.owner = Some("w1".into());
        a.throughput = kinesis_consumer::leases::Throughput::from_kbps(40.0);
        let mut a2 = Lease::new("shardId-000000000002", Checkpoint::TrimHorizon);
        a2.owner = Some("w1".into());
        a2.throughput = kinesis_consumer::leases::Throughput::from_kbps(2.5);
        let mut b = Lease::new("shardId-000000000001", Checkpoint::TrimHorizon);
        b.owner = Some("java-worker".into());
        let mut fleet = FleetView::default();
        fleet.beats.insert("w1".into(), 10_000);
        fleet.beats.insert("w2".into(), 11_500);
        fleet
            .loads
            .insert("w1".into(), WorkerLoad::new(1234.4, 56_780.0, Some(2_500)));
        fleet
            .loads
            .insert("w2".into(), WorkerLoad::new(0.0, 0.0, None));
        let text = format_workers(&[a, a2, b], &fleet, 12_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("worker"));
        assert!(lines[1].starts_with("java-worker") && lines[1].contains("not in the fleet"));
        assert_eq!(
            cells(lines[0]),
            [
                "worker",
                "leases",
                "leases KB/s",
                "records/s",
                "KB/s",
                "lag",
                "last heartbeat"
            ]
        );
        assert_eq!(
            cells(lines[1])[..6],
            ["java-worker", "1", "-", "-", "-", "-"]
        );
        assert_eq!(
            cells(lines[2]),
            ["w1", "2", "42.5", "1234", "56.8", "2.5 s", "2.0 s ago"]
        );
        assert_eq!(cells(lines[3])[..6], ["w2", "0", "-", "0", "0.0", "-"]);
        assert!(
            lines[3].starts_with("w2")
                && lines[3].contains(" 0 ")
                && lines[3].contains("0.5 s ago")
        );
    }

    #[test]
    fn a_pending_handoff_shows_on_its_lease_and_its_previous_owner() {
        let mut a = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon);
        a.owner = Some("w2".into());
        a.checkpoint_owner = Some("w1".into());
        let mut b = Lease::new("shardId-000000000001", Checkpoint::TrimHorizon);
        b.owner = Some("w2".into());
        let text = format_table(&[b.clone(), a.clone()], None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("lag  handoff"), "{text}");
        assert!(
            lines[1].starts_with("shardId-000000000000  w2") && lines[1].ends_with("from w1"),
            "{text}"
        );
        assert_eq!(lines[2].split_whitespace().last(), Some("-"), "{text}");
        // w1 owns nothing any more but still finishes the lease: listed, handing off 1.
        let mut fleet = FleetView::default();
        fleet.beats.insert("w2".into(), 1_000);
        let text = format_workers(&[a, b.clone()], &fleet, 1_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(cells(lines[0]).last().unwrap(), "handing off", "{text}");
        assert_eq!(
            cells(lines[1]),
            ["w1", "0", "-", "-", "-", "-", "- (not in the fleet)", "1"]
        );
        assert_eq!(
            cells(lines[2]),
            ["w2", "2", "-", "-", "-", "-", "0.0 s ago", "0"]
        );
        // Without a handoff pending, neither column.
        let text = format_table(std::slice::from_ref(&b), None);
        assert!(!text.contains("handoff"), "{text}");
        let text = format_workers(&[b], &fleet, 1_000);
        assert!(!text.contains("handing off"), "{text}");
    }
}
