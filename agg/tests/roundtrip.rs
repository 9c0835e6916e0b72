//! Property tests: any list of user records survives aggregation and deaggregation exactly,
//! and no input, however mangled, makes the deaggregator panic.

use bytes::Bytes;
use kinesis_agg::{
    deaggregate, Aggregator, CorruptPolicy, Deaggregator, HashKey, HashKeyRange, RecordFormat,
    UserRecord, MAGIC, MAX_RECORD_SIZE,
};
use md5::{Digest, Md5};
use proptest::prelude::*;

fn partition_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,12}",
        // Unicode, including multi-byte and astral characters, up to the 256-char limit.
        "\\PC{1,256}",
        Just("€".repeat(256)),
        Just("k".to_string()),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => Just(Vec::new()),
        1 => proptest::collection::vec(any::<u8>(), 1000..5000),
    ]
}

fn user_record() -> impl Strategy<Value = UserRecord> {
    (partition_key(), proptest::option::of(any::<u128>()), data()).prop_map(|(pk, ehk, data)| {
        let r = UserRecord::new(pk, data).expect("generated records are valid");
        match ehk {
            Some(h) => r.with_explicit_hash_key(HashKey(h)),
            None => r,
        }
    })
}

/// Aggregates everything, returning the Kinesis records with the user records each holds.
fn aggregate_all(
    records: &[UserRecord],
    max_size: usize,
) -> Vec<(kinesis_agg::KinesisRecord, Vec<UserRecord>)> {
    let mut agg = Aggregator::builder()
        .with_max_size(max_size)
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut current = Vec::new();
    for r in records {
        if let Err(back) = agg.try_add(r.clone()) {
            out.push((agg.finish().unwrap(), std::mem::take(&mut current)));
            agg.try_add(back).unwrap();
        }
        current.push(r.clone());
        assert!(agg.len() == 1 || agg.encoded_size() <= max_size);
    }
    if let Some(k) = agg.finish() {
        out.push((k, current));
    }
    out
}

fn check_round_trip(records: Vec<UserRecord>, max_size: usize) -> Result<(), TestCaseError> {
    let mut seen = 0;
    for (kinesis_record, inside) in aggregate_all(&records, max_size) {
        prop_assert_eq!(kinesis_record.user_records, inside.len());
        prop_assert_eq!(
            kinesis_record.partition_key.as_str(),
            inside[0].partition_key()
        );
        prop_assert_eq!(
            kinesis_record.explicit_hash_key,
            inside[0].explicit_hash_key()
        );
        prop_assert!(kinesis_record.size() <= MAX_RECORD_SIZE);
        let out = deaggregate(&kinesis_record.partition_key, kinesis_record.data.clone()).unwrap();
        prop_assert_eq!(out.records.len(), inside.len());
        if inside.len() == 1 {
            prop_assert_eq!(out.format, RecordFormat::Plain);
            prop_assert_eq!(&out.records[0].data, inside[0].data());
        } else {
            prop_assert_eq!(&out.format, &RecordFormat::Aggregated);
            for (i, (got, want)) in out.records.iter().zip(&inside).enumerate() {
                prop_assert_eq!(got.sub_sequence_number, i as u64);
                prop_assert_eq!(got.partition_key.as_str(), want.partition_key());
                prop_assert_eq!(got.explicit_hash_key, want.explicit_hash_key());
                prop_assert_eq!(&got.data, want.data());
            }
        }
        seen += inside.len();
    }
    prop_assert_eq!(seen, records.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_records_round_trip(records in proptest::collection::vec(user_record(), 1..60),
                              max_size in prop_oneof![Just(64usize), 64usize..4096, Just(51_200usize)]) {
        check_round_trip(records, max_size)?;
    }

    #[test]
    fn shard_filter_keeps_exactly_the_records_in_range(
        records in proptest::collection::vec(user_record(), 2..40),
        a in any::<u128>(), b in any::<u128>())
    {
        let range = HashKeyRange::new(HashKey(a.min(b)), HashKey(a.max(b))).unwrap();
        let mut agg = Aggregator::builder().with_max_size(MAX_RECORD_SIZE).build().unwrap();
        for r in &records {
            agg.try_add(r.clone()).unwrap();
        }
        let k = agg.finish().unwrap();
        let out = Deaggregator::new().with_shard_range(range).deaggregate(&k.partition_key, k.data).unwrap();
        let expected: Vec<u64> = records.iter().enumerate()
            .filter(|(_, r)| range.contains(r.hash_key()))
            .map(|(i, _)| i as u64).collect();
        let kept: Vec<u64> = out.records.iter().map(|r| r.sub_sequence_number).collect();
        prop_assert_eq!(kept, expected.clone());
        prop_assert_eq!(out.dropped_outside_range, records.len() - expected.len());
    }

    /// Fuzz-style: mangled aggregates (flipped bytes, truncation, random bodies with a
    /// valid digest) never panic, and are either valid or reported.
    #[test]
    fn mangled_input_never_panics(
        records in proptest::collection::vec(user_record(), 2..10),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut agg = Aggregator::builder().with_max_size(MAX_RECORD_SIZE).build().unwrap();
        for r in &records { agg.try_add(r.clone()).unwrap(); }
        let good = agg.finish().unwrap().data.to_vec();

        let mut flipped = good.clone();
        for (i, x) in &flips { let i = i.index(flipped.len()); flipped[i] ^= x; }
        let truncated = good[..cut.index(good.len())].to_vec();
        // A random protobuf body with a correct digest reaches the protobuf parser.
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&body);
        let d: [u8; 16] = Md5::digest(&body).into();
        framed.extend_from_slice(&d);

        for input in [flipped, truncated, framed] {
            let input = Bytes::from(input);
            for policy in [CorruptPolicy::PassThrough, CorruptPolicy::Reject] {
                let d = Deaggregator::new()
                    .with_corrupt_policy(policy)
                    .with_shard_range(HashKeyRange::new(HashKey(0), HashKey(u128::MAX / 2)).unwrap());
                match d.deaggregate("pk", input.clone()) {
                    Ok(out) => {
                        prop_assert_eq!(out.records.len() + out.dropped_outside_range, out.total);
                        if !matches!(out.format, RecordFormat::Aggregated) {
                            prop_assert_eq!(&out.records[0].data, &input);
                        }
                    }
                    Err(e) => prop_assert_eq!(policy, CorruptPolicy::Reject, "{}", e),
                }
            }
        }
    }
}

#[test]
fn one_mebibyte_records_round_trip() {
    let big = UserRecord::new("big", vec![0xAB; MAX_RECORD_SIZE - 3]).unwrap();
    let small = UserRecord::new("small", vec![1u8; 10]).unwrap();
    check_round_trip(
        vec![big.clone(), small.clone(), big, small],
        MAX_RECORD_SIZE,
    )
    .unwrap();
}

#[test]
fn many_keys_many_records_round_trip() {
    let records: Vec<_> = (0..20_000)
        .map(|i| UserRecord::new(format!("key-{}", i % 1000), vec![(i % 251) as u8; 100]).unwrap())
        .collect();
    check_round_trip(records, 51_200).unwrap();
}
