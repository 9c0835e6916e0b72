//! Bringing records' partition keys and data into the cache before a loop works through
//! them one by one.
//!
//! ```text
//!  records queued long ago (cold: the caller's thread wrote them, a backlog evicted them)
//!    warm(items): one tight pass, a load of each key's and data's first and last byte
//!                 ─▶ the loads are independent: their cache misses overlap
//!    then the real loop (aggregate: hash key, copy data; deliver: free them) hits the cache
//! ```
//!
//! Measured with `perf` on the batched bench (BENCHMARKS.md): the aggregator's first look
//! at each key and each data (the key's hash, the data's copy into the aggregate) and the
//! freeing of both once delivered were mostly waiting on memory, one miss after another,
//! because each iteration of those loops does enough work to keep the processor from
//! running ahead to the next record's loads. The crate forbids `unsafe`, so this is a
//! plain read rather than a prefetch instruction.

use super::message::Item;

/// Reads the first and last byte of the partition key and the data of each of `items`
/// (the lines an aggregate or a `free` touches first), and nothing else.
pub(crate) fn warm<'a>(items: impl Iterator<Item = &'a Item>) {
    let mut acc = 0u8;
    for item in items {
        let key = item.record.partition_key().as_bytes();
        let data = item.record.data();
        acc ^= first_and_last(key) ^ first_and_last(data);
    }
    std::hint::black_box(acc);
}

/// The first and last byte of `bytes`, xored (0 when empty).
fn first_and_last(bytes: &[u8]) -> u8 {
    match (bytes.first(), bytes.last()) {
        (Some(a), Some(b)) => a ^ b,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_reads_both_ends() {
        assert_eq!(first_and_last(b""), 0);
        assert_eq!(first_and_last(b"a"), 0);
        assert_eq!(first_and_last(&[1, 9, 2]), 3);
    }
}
