//! The split: the lowest open shard is split at the middle of its hash key range, and its
//! children are looked up (by their parent id, which every emulator sets on a split).
//!
//! ```text
//!  ListShards ─▶ lowest open shard P ─▶ SplitShard(P, middle) ─▶ wait ACTIVE
//!             ─▶ ListShards ─▶ children: ParentShardId == P
//! ```

use std::time::Duration;

/// How long the stream may take to be ACTIVE again (real AWS: about 30 s).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(180);

/// A split: the parent shard and its two children.
pub(crate) type Split = (String, Vec<String>);

/// Splits the lowest open shard of `stream` in two; returns it and its children.
///
/// # Cancellation
/// Dropping the future after `SplitShard` was sent lets the split go ahead.
///
/// # Errors
/// A message naming the call that failed.
pub(crate) async fn split_a_shard(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Split, String> {
    let shards = list(kinesis, stream).await?;
    let open = shards
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .min_by(|a, b| a.shard_id().cmp(b.shard_id()))
        .ok_or("no open shard to split")?;
    let range = open
        .hash_key_range()
        .ok_or("the shard has no hash key range")?;
    let start: u128 = range
        .starting_hash_key()
        .parse()
        .map_err(|_| "unreadable starting hash key")?;
    let end: u128 = range
        .ending_hash_key()
        .parse()
        .map_err(|_| "unreadable ending hash key")?;
    if end <= start {
        return Err(format!("{} is too narrow to split", open.shard_id()));
    }
    let parent = open.shard_id().to_owned();
    kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&parent)
        .new_starting_hash_key((start + (end - start) / 2 + 1).to_string())
        .send()
        .await
        .map_err(|e| {
            format!(
                "SplitShard {parent}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            )
        })?;
    kinesis_emulators::wait_for_stream_active(kinesis, stream, ACTIVE_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let children: Vec<String> = list(kinesis, stream)
        .await?
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent.as_str()))
        .map(|s| s.shard_id().to_owned())
        .collect();
    if children.len() != 2 {
        return Err(format!(
            "{parent} was split but {} children list it as their parent",
            children.len()
        ));
    }
    Ok((parent, children))
}

/// Every shard of the stream (no paging: the demo's streams are small, and one emulator's
/// paging is broken).
async fn list(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Shard>, String> {
    let out = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| {
            format!(
                "ListShards {stream}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            )
        })?;
    Ok(out.shards().to_vec())
}
