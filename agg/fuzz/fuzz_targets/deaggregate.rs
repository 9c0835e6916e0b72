//! Fuzz target: any bytes, with and without a valid magic/MD5 frame, through the
//! deaggregator under both corruption policies and a shard filter. It must never panic,
//! and what it returns must be consistent.
#![no_main]

use bytes::Bytes;
use kinesis_agg::{
    CorruptPolicy, Deaggregator, HashKey, HashKeyRange, RecordFormat, DIGEST_LEN, MAGIC,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // As given, and framed with the magic and a correct digest so that the fuzzer's bytes
    // reach the protobuf parser rather than stopping at the MD5 check.
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(input);
    let digest = md5_of(input);
    framed.extend_from_slice(&digest);
    let range = HashKeyRange::new(HashKey(0), HashKey(u128::MAX / 3)).unwrap();
    for data in [Bytes::copy_from_slice(input), Bytes::from(framed)] {
        for policy in [CorruptPolicy::PassThrough, CorruptPolicy::Reject] {
            for filter in [None, Some(range)] {
                let mut d = Deaggregator::new().with_corrupt_policy(policy);
                if let Some(r) = filter {
                    d = d.with_shard_range(r);
                }
                if let Ok(out) = d.deaggregate("pk", data.clone()) {
                    assert_eq!(out.records.len() + out.dropped_outside_range, out.total);
                    if !matches!(out.format, RecordFormat::Aggregated) {
                        assert_eq!(out.records[0].data, data);
                    }
                }
            }
        }
    }
});

fn md5_of(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    use md5::Digest;
    md5::Md5::digest(bytes).into()
}
