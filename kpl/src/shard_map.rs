//! A stream's shards and their hash key ranges, from `ListShards`.
//!
//! ```text
//!  ListShards (paged) ──▶ all shards by id (open and closed: to judge where a record landed)
//!                     └─▶ open shards sorted by start key ──binary search──▶ predicted shard
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::Client;
use kinesis_agg::{HashKey, HashKeyRange};

use crate::failure::{classify, CallError, UNUSABLE_SHARD_LIST};

/// The operation's name in failure reports and logs.
pub(crate) const LIST_SHARDS: &str = "ListShards";

/// The shards of one stream, as last listed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ShardMap {
    /// Open shards (no ending sequence number), sorted by their first hash key: what new
    /// records are routed to.
    open: Vec<(HashKeyRange, Arc<str>)>,
    /// Every listed shard's range, closed ones included, to check that an aggregate's
    /// user records all belong to the shard it landed in.
    ranges: HashMap<Arc<str>, HashKeyRange>,
}

impl ShardMap {
    /// A map from `(shard id, range, open)` triples.
    pub(crate) fn from_shards(
        shards: impl IntoIterator<Item = (String, HashKeyRange, bool)>,
    ) -> Self {
        let mut map = ShardMap::default();
        for (id, range, open) in shards {
            let id: Arc<str> = id.into();
            if open {
                map.open.push((range, id.clone()));
            }
            map.ranges.insert(id, range);
        }
        map.open.sort_by_key(|(r, _)| r.start());
        map
    }

    /// Lists the stream's shards, following `NextToken` pages.
    ///
    /// # Errors
    /// The failed call, classified like a failed `PutRecords` (the SDK's full detail is
    /// logged at `debug` level only), or `UnusableShardList` for an answer with no shards
    /// or a bad hash key range.
    pub(crate) async fn load(client: &Client, stream: &str) -> Result<ShardMap, CallError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // With a NextToken, the stream name must not be sent again.
            let request = match &next_token {
                Some(token) => client.list_shards().next_token(token),
                None => client.list_shards().stream_name(stream),
            };
            let page = request.send().await.map_err(|e| {
                tracing::debug!(stream, error = %DisplayErrorContext(&e), "ListShards failed");
                classify(&e)
            })?;
            for shard in page.shards() {
                let Some(range) = shard.hash_key_range() else {
                    continue;
                };
                let range = HashKeyRange::parse(range.starting_hash_key(), range.ending_hash_key())
                    .map_err(|e| {
                        CallError::retryable(
                            UNUSABLE_SHARD_LIST,
                            format!("shard {}: {e}", shard.shard_id()),
                        )
                    })?;
                let open = shard
                    .sequence_number_range()
                    .is_none_or(|s| s.ending_sequence_number().is_none());
                shards.push((shard.shard_id().to_owned(), range, open));
            }
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        if shards.is_empty() {
            return Err(CallError::retryable(
                UNUSABLE_SHARD_LIST,
                "no shards listed",
            ));
        }
        Ok(ShardMap::from_shards(shards))
    }

    /// The open shard whose range holds `key`, if the map covers it.
    pub(crate) fn predict(&self, key: HashKey) -> Option<&Arc<str>> {
        let i = self.open.partition_point(|(r, _)| r.start() <= key);
        let (range, id) = self.open.get(i.checked_sub(1)?)?;
        range.contains(key).then_some(id)
    }

    /// The range of a listed shard, open or closed.
    pub(crate) fn range_of(&self, shard_id: &str) -> Option<HashKeyRange> {
        self.ranges.get(shard_id).copied()
    }

    /// The map's shared id for `shard_id`, to hand out without allocating.
    pub(crate) fn shard_arc(&self, shard_id: &str) -> Option<Arc<str>> {
        self.ranges.get_key_value(shard_id).map(|(k, _)| k.clone())
    }

    /// Whether `shard_id` is one of the open shards.
    pub(crate) fn is_open(&self, shard_id: &str) -> bool {
        self.open.iter().any(|(_, id)| &**id == shard_id)
    }

    /// Whether the open shards are the same as in `other` (same ids and ranges).
    pub(crate) fn same_open_shards(&self, other: &ShardMap) -> bool {
        self.open == other.open
    }

    /// Number of open shards.
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u128, b: u128) -> HashKeyRange {
        HashKeyRange::new(HashKey(a), HashKey(b)).unwrap()
    }

    #[test]
    fn predicts_by_range_and_ignores_closed_shards() {
        let map = ShardMap::from_shards(vec![
            ("parent".to_string(), r(0, u128::MAX), false),
            ("hi".to_string(), r(1 << 127, u128::MAX), true),
            ("lo".to_string(), r(0, (1 << 127) - 1), true),
        ]);
        assert_eq!(map.predict(HashKey(0)).map(|s| &**s), Some("lo"));
        assert_eq!(
            map.predict(HashKey((1 << 127) - 1)).map(|s| &**s),
            Some("lo")
        );
        assert_eq!(map.predict(HashKey(1 << 127)).map(|s| &**s), Some("hi"));
        assert_eq!(map.predict(HashKey::MAX).map(|s| &**s), Some("hi"));
        assert_eq!(map.range_of("parent"), Some(r(0, u128::MAX)));
        assert_eq!(map.open_count(), 2);
    }

    #[test]
    fn gaps_predict_nothing() {
        let map = ShardMap::from_shards(vec![("a".to_string(), r(10, 20), true)]);
        assert!(map.predict(HashKey(9)).is_none());
        assert!(map.predict(HashKey(21)).is_none());
        assert!(map.predict(HashKey(15)).is_some());
    }
}
