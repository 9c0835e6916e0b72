//! `kinesis-cat leases`: the lease table of a consumer application, as a table.
//!
//! ```text
//!  Scan (consistent) ─▶ leases (odd items skipped with a warning) ─▶ sorted by shard ─▶ table
//!  [--stream S] ListShards ─▶ open/closed per shard, for the "state" column
//! ```

use std::collections::HashMap;
use std::io::Write;

use aws_config::BehaviorVersion;
use clap::Args;
use kinesis_consumer::{Lease, LeaseStore, LeaseTable};

use crate::Error;

/// Arguments of `kinesis-cat leases`.
#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// Application name (the lease table's name).
    #[arg(long)]
    pub app: String,
    /// The stream, to show which leased shards are still open. Default: not shown.
    #[arg(long)]
    pub stream: Option<String>,
}

/// Formats leases as an aligned text table. `open` maps shard ids to whether the shard is
/// open, when the stream was given.
pub fn format_table(leases: &[Lease], open: Option<&HashMap<String, bool>>) -> String {
    let mut rows = vec![[
        "shard".to_owned(),
        "owner".to_owned(),
        "counter".to_owned(),
        "checkpoint".to_owned(),
        "parents".to_owned(),
        "state".to_owned(),
    ]];
    let mut sorted: Vec<&Lease> = leases.iter().collect();
    sorted.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    for l in sorted {
        let state = if l.checkpoint.is_shard_end() {
            "done".to_owned()
        } else {
            match open.map(|m| m.get(&l.lease_key)) {
                None => "-".to_owned(),
                Some(None) => "gone from stream".to_owned(),
                Some(Some(true)) => "open".to_owned(),
                Some(Some(false)) => "closed, in progress".to_owned(),
            }
        };
        rows.push([
            l.lease_key.clone(),
            l.owner.clone().unwrap_or_else(|| "-".to_owned()),
            l.counter.to_string(),
            l.checkpoint.to_string(),
            if l.parent_shard_ids.is_empty() {
                "-".to_owned()
            } else {
                l.parent_shard_ids.join(",")
            },
            state,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Prints the lease table.
///
/// # Cancellation
/// Safe to drop: it only reads.
///
/// # Errors
/// DynamoDB or Kinesis errors.
pub async fn run(args: LeasesArgs) -> Result<(), Error> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let table = LeaseTable::new(aws_sdk_dynamodb::Client::new(&config), &args.app);
    let leases = table.list_leases().await?;
    let open = match &args.stream {
        Some(stream) => {
            let kinesis = aws_sdk_kinesis::Client::new(&config);
            let shards = super::shards::list_all(&kinesis, stream).await?;
            Some(
                shards
                    .iter()
                    .map(|s| (s.shard_id().to_owned(), !super::shards::is_closed(s)))
                    .collect::<HashMap<_, _>>(),
            )
        }
        None => None,
    };
    std::io::stdout()
        .write_all(format_table(&leases, open.as_ref()).as_bytes())
        .map_err(Error::Output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_consumer::Checkpoint;

    #[test]
    fn table_lists_every_column_sorted() {
        let mut a = Lease::new("shardId-000000000001", Checkpoint::at("495", 2).unwrap())
            .with_parents(vec!["shardId-000000000000".into()]);
        a.owner = Some("w1".into());
        a.counter = 7;
        let b = Lease::new("shardId-000000000000", Checkpoint::ShardEnd);
        let open: HashMap<String, bool> = [("shardId-000000000001".to_owned(), true)].into();
        let text = format_table(&[a, b], Some(&open));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("shard"));
        assert!(lines[1].starts_with("shardId-000000000000") && lines[1].ends_with("done"));
        assert!(lines[2].contains("w1") && lines[2].contains(" 7 ") && lines[2].contains("495/2"));
        assert!(lines[2].contains("shardId-000000000000") && lines[2].ends_with("open"));
    }
}
