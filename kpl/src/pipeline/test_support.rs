//! Records, budgets and shard maps for the pipeline's unit tests.

use std::sync::{Arc, LazyLock};

use kinesis_agg::{HashKey, HashKeyRange, UserRecord};
use tokio::sync::{oneshot, Semaphore};

use super::message::Item;
use crate::outcome::Outcome;
use crate::shard_map::ShardMap;

/// The budget semaphores (records, bytes): one pair, as in a producer, since the
/// pipeline merges the permits of settled records.
static BUDGET: LazyLock<(Arc<Semaphore>, Arc<Semaphore>)> = LazyLock::new(|| {
    let s = || Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    (s(), s())
});

/// A record of `size` data bytes under key `pk` for stream "s", put now.
pub(crate) fn item(pk: &str, size: usize) -> (Item, oneshot::Receiver<Outcome>) {
    item_for("s", pk, size)
}

/// A record of `size` data bytes under key `pk` for `stream`, put now.
pub(crate) fn item_for(stream: &str, pk: &str, size: usize) -> (Item, oneshot::Receiver<Outcome>) {
    let record = UserRecord::new(pk, vec![b'x'; size]).unwrap();
    let hash_key = record.hash_key();
    let budget = (
        BUDGET.0.clone().try_acquire_owned().unwrap(),
        BUDGET.1.clone().try_acquire_owned().unwrap(),
    );
    Item::new(Arc::from(stream), record, hash_key, budget)
}

/// Like [`item`], holding one permit of `budget.0` and `size` permits of `budget.1`.
pub(crate) fn item_with_budget(
    pk: &str,
    size: usize,
    budget: &(Arc<Semaphore>, Arc<Semaphore>),
) -> (Item, oneshot::Receiver<Outcome>) {
    let (mut item, rx) = item(pk, size);
    item.budget = Some((
        budget.0.clone().try_acquire_owned().unwrap(),
        budget
            .1
            .clone()
            .try_acquire_many_owned(size as u32)
            .unwrap(),
    ));
    (item, rx)
}

/// Two open shards, "shard-lo" and "shard-hi", splitting the hash key space in halves.
pub(crate) fn two_shards() -> ShardMap {
    let half = u128::MAX / 2;
    ShardMap::from_shards(vec![
        (
            "shard-lo".to_string(),
            HashKeyRange::new(HashKey(0), HashKey(half)).unwrap(),
            true,
        ),
        (
            "shard-hi".to_string(),
            HashKeyRange::new(HashKey(half + 1), HashKey::MAX).unwrap(),
            true,
        ),
    ])
}

/// One open shard, "shard-lo", owning every hash key: a stale map after a split.
pub(crate) fn one_shard() -> ShardMap {
    ShardMap::from_shards(vec![("shard-lo".to_string(), HashKeyRange::ALL, true)])
}

/// A partition key of each shard of [`two_shards`]: (shard-lo's, shard-hi's).
pub(crate) fn keys_of_both_halves() -> (String, String) {
    let map = two_shards();
    let of = |shard: &str| {
        (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| map.predict(HashKey::from_partition_key(k)).map(|s| &**s) == Some(shard))
            .expect("a key in each half")
    };
    (of("shard-lo"), of("shard-hi"))
}
