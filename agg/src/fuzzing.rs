//! The deaggregation fuzz body: what `fuzz/fuzz_targets/deaggregate.rs` runs on every input
//! and what the workspace's corpus test (`integration-tests/tests/fuzz_bodies.rs`) runs on
//! the checked-in seeds. Not part of the API: its name and behaviour may change at any time.
//!
//! ```text
//!  input ─┬─ as given ────────────────────┐
//!         └─ MAGIC + input + MD5(input) ──┴─▶ Deaggregator × {PassThrough, Reject}
//!                                                         × {no filter, a third of the ring,
//!                                                            Keep outside}
//!                                            ─▶ never panics; the outcome is consistent
//! ```

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::{
    CorruptPolicy, Deaggregated, Deaggregator, Error, HashKey, HashKeyRange, OutsideRangePolicy,
    RecordFormat, DIGEST_LEN, MAGIC,
};

/// Runs `input`, as given and framed as an aggregate with a correct digest (so that the
/// bytes reach the protobuf reader rather than stop at the MD5 check), through the
/// deaggregator under every corruption policy and shard filter.
///
/// # Panics
/// When the deaggregator panics, or its outcome is inconsistent: that is what a fuzzer
/// looks for. Returns normally for every input otherwise.
pub fn deaggregate(input: &[u8]) {
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(input);
    let digest: [u8; DIGEST_LEN] = Md5::digest(input).into();
    framed.extend_from_slice(&digest);
    let third = HashKeyRange::new(HashKey(0), HashKey(u128::MAX / 3))
        .unwrap_or_else(|_| unreachable!("0 <= u128::MAX / 3"));
    for data in [Bytes::copy_from_slice(input), Bytes::from(framed)] {
        let pass = Deaggregator::new();
        let lenient = pass.deaggregate("pk", data.clone());
        let strict = Deaggregator::new()
            .with_corrupt_policy(CorruptPolicy::Reject)
            .deaggregate("pk", data.clone());
        let lenient = lenient.unwrap_or_else(|e| panic!("PassThrough never fails, got {e}"));
        check(&data, &lenient);
        // Reject fails exactly where PassThrough marks the record corrupt, with that reason.
        match (&lenient.format, &strict) {
            (RecordFormat::Corrupt(reason), Err(Error::Corrupt(r))) => assert_eq!(reason, r),
            (RecordFormat::Corrupt(_), Ok(_)) => panic!("Reject accepted a corrupt record"),
            (_, Err(e)) => panic!("Reject refused a record PassThrough read as valid: {e}"),
            (_, Ok(strict)) => assert_eq!(strict, &lenient),
        }
        for policy in [OutsideRangePolicy::Drop, OutsideRangePolicy::Keep] {
            for whole in [false, true] {
                let key = if whole {
                    crate::WHOLE_RESEND_PARTITION_KEY
                } else {
                    "pk"
                };
                let filtered = Deaggregator::new()
                    .with_shard_range(third)
                    .with_outside_range_policy(policy)
                    .deaggregate(key, data.clone())
                    .unwrap_or_else(|e| panic!("PassThrough never fails, got {e}"));
                check(&data, &filtered);
                assert_eq!(filtered.total, lenient.total);
                assert_eq!(filtered.format, lenient.format);
                if policy == OutsideRangePolicy::Keep {
                    assert_eq!(filtered.records.len(), lenient.records.len());
                    let marked = filtered.records.iter().filter(|r| r.outside_shard_range);
                    assert_eq!(marked.count(), filtered.kept_outside_range);
                }
            }
        }
    }
}

/// What holds for every outcome: each user record accounted for, sub-sequence numbers
/// rising within the aggregate, a plain or corrupt record handed over whole.
fn check(input: &Bytes, out: &Deaggregated) {
    assert_eq!(out.records.len() + out.dropped_outside_range, out.total);
    assert!(out.kept_outside_range <= out.records.len());
    let mut last = None;
    for r in &out.records {
        assert!(r.sub_sequence_number < out.total as u64);
        assert!(last.is_none_or(|l| l < r.sub_sequence_number));
        last = Some(r.sub_sequence_number);
    }
    match &out.format {
        RecordFormat::Aggregated => {}
        _ if out.compressed => assert_eq!(out.records.len(), 1),
        _ => {
            assert_eq!(out.records.len(), 1);
            assert_eq!(&out.records[0].data, input);
            assert_eq!(out.records[0].sub_sequence_number, 0);
        }
    }
}
