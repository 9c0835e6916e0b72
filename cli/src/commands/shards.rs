//! Shard listing and hash-key arithmetic shared by the stream subcommands.
//!
//! ```text
//!  ListShards(StreamName) --NextToken?--> ListShards(NextToken) --> ... --> Vec<Shard>
//!  HashKeyRange "start".."end" --parse u128--> midpoint --> SplitShard NewStartingHashKey
//! ```

use aws_sdk_kinesis::types::Shard;

use crate::retry::RetryPolicy;
use crate::Error;

/// Lists every shard of `stream`, following `NextToken` until the last page.
///
/// `MaxResults` is not sent (some emulators break paging when it is); real Kinesis then
/// pages at its default size and this follows the tokens. Only the first request names the
/// stream: Kinesis rejects `StreamName` together with `NextToken`.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Errors
/// [`Error::Kinesis`] when a `ListShards` call fails.
pub async fn list_all(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<Vec<Shard>, Error> {
    list_all_with(client, stream, &RetryPolicy::NONE).await
}

/// [`list_all`], each page retried by `retry`.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Errors
/// [`Error::Kinesis`] when a `ListShards` call fails for good, [`Error::GaveUp`] when
/// retries run out.
pub async fn list_all_with(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    retry: &RetryPolicy,
) -> Result<Vec<Shard>, Error> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = retry
            .run("ListShards", stream, || {
                let request = match &token {
                    Some(t) => client.list_shards().next_token(t),
                    None => client.list_shards().stream_name(stream),
                };
                request.send()
            })
            .await?;
        shards.extend(page.shards().iter().cloned());
        match page.next_token() {
            Some(next) if !next.is_empty() && !page.shards().is_empty() => {
                token = Some(next.to_owned());
            }
            _ => return Ok(shards),
        }
    }
}

/// Parses a decimal 128-bit hash key.
///
/// # Errors
/// [`Error::InvalidHashKey`] for anything but a decimal number in `0..=2^128-1`.
pub fn parse_hash_key(value: &str) -> Result<u128, Error> {
    let trimmed = value.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidHashKey {
            value: value.to_owned(),
            reason: "expected a decimal number".into(),
        });
    }
    trimmed.parse::<u128>().map_err(|_| Error::InvalidHashKey {
        value: value.to_owned(),
        reason: "larger than 2^128 - 1".into(),
    })
}

/// The starting hash key of the upper child when splitting `start..=end` in half: the
/// lower child keeps `start..=mid-1`, the upper gets `mid..=end`. `None` when the range
/// holds a single key and cannot be split.
pub fn split_point(start: u128, end: u128) -> Option<u128> {
    if start >= end {
        return None;
    }
    Some(start + (end - start) / 2 + 1)
}

/// Returns the inclusive hash key range of `shard`.
///
/// # Errors
/// [`Error::InvalidHashKey`] when the server sent no range or an unparsable one.
pub fn hash_range(shard: &Shard) -> Result<(u128, u128), Error> {
    let range = shard
        .hash_key_range()
        .ok_or_else(|| Error::InvalidHashKey {
            value: String::new(),
            reason: format!("shard {} has no hash key range", shard.shard_id()),
        })?;
    Ok((
        parse_hash_key(range.starting_hash_key())?,
        parse_hash_key(range.ending_hash_key())?,
    ))
}

/// The shard `id` of `stream` among `shards`, if it is open (only open shards can be
/// split or merged: some emulators accept a closed one and leave overlapping open shards).
///
/// # Errors
/// [`Error::ShardNotFound`] or [`Error::ShardClosed`].
pub fn find_open<'a>(shards: &'a [Shard], stream: &str, id: &str) -> Result<&'a Shard, Error> {
    let shard = shards
        .iter()
        .find(|s| s.shard_id() == id)
        .ok_or_else(|| Error::ShardNotFound {
            stream: stream.to_owned(),
            shard: id.to_owned(),
        })?;
    if is_closed(shard) {
        return Err(Error::ShardClosed {
            stream: stream.to_owned(),
            shard: id.to_owned(),
        });
    }
    Ok(shard)
}

/// Whether `shard` is closed (its sequence number range has an end).
pub fn is_closed(shard: &Shard) -> bool {
    shard
        .sequence_number_range()
        .and_then(|r| r.ending_sequence_number())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_halves_ranges() {
        assert_eq!(split_point(0, u128::MAX), Some(1_u128 << 127));
        assert_eq!(split_point(0, 1), Some(1));
        assert_eq!(split_point(10, 13), Some(12));
        assert_eq!(split_point(5, 5), None);
        assert_eq!(split_point(6, 5), None);
        assert_eq!(split_point(u128::MAX - 1, u128::MAX), Some(u128::MAX));
    }

    #[test]
    fn hash_keys_parse_strictly() {
        assert_eq!(parse_hash_key("0").ok(), Some(0));
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455").ok(),
            Some(u128::MAX)
        );
        for bad in [
            "",
            "-1",
            "1e3",
            "0x10",
            "340282366920938463463374607431768211456",
            "١",
        ] {
            assert!(parse_hash_key(bad).is_err(), "{bad:?}");
        }
    }

    fn shard(end_seq: Option<&str>) -> Shard {
        use aws_sdk_kinesis::types::{HashKeyRange, SequenceNumberRange};
        let range = HashKeyRange::builder()
            .starting_hash_key("0")
            .ending_hash_key("99")
            .build()
            .expect("range");
        let seq = SequenceNumberRange::builder()
            .starting_sequence_number("1")
            .set_ending_sequence_number(end_seq.map(str::to_owned))
            .build()
            .expect("seq");
        Shard::builder()
            .shard_id("shardId-000000000000")
            .hash_key_range(range)
            .sequence_number_range(seq)
            .build()
            .expect("shard")
    }

    #[test]
    fn only_open_shards_are_found_for_resharding() {
        let shards = [shard(Some("2"))];
        assert!(matches!(
            find_open(&shards, "s", "shardId-000000000000"),
            Err(Error::ShardClosed { .. })
        ));
        assert!(matches!(
            find_open(&shards, "s", "shardId-000000000009"),
            Err(Error::ShardNotFound { .. })
        ));
        let open = [shard(None)];
        assert!(find_open(&open, "s", "shardId-000000000000").is_ok());
    }

    #[test]
    fn ranges_and_closed_state_come_from_the_shard() {
        let open = shard(None);
        assert_eq!(hash_range(&open).ok(), Some((0, 99)));
        assert!(!is_closed(&open));
        assert!(is_closed(&shard(Some("2"))));
    }
}
