//! [`user_records`]: a batch's Kinesis records taken apart into the user records a
//! processor gets, without I/O.
//!
//! ```text
//!  Kinesis records ─▶ odd sequence number? ─▶ skipped (logged, counted)
//!                  ─▶ Deaggregator: KPL aggregate → sub-records (undecodable or no
//!                       sub-records: skipped, logged, counted;
//!                       corrupt: passed through whole), outside the shard's hash key
//!                       range → dropped and counted in dropped_outside_range, or kept,
//!                       marked and counted in kept_outside_range (the deaggregator's policy)
//!                  ─▶ last = (sequence number, its last sub-sequence)   dropped ones too
//!                  ─▶ skip.skips(seq, sub)? ─▶ dropped (at or before the start checkpoint,
//!                       or before the record a retry reads again from)
//!                  ─▶ KinesisClientRecord, in order
//! ```

use std::time::SystemTime;

use aws_sdk_kinesis::types::Record;
use bytes::Bytes;
use kinesis_agg::{Deaggregator, RecordFormat};

use crate::checkpoint::{Checkpoint, SequenceNumber};
use crate::processor::KinesisClientRecord;

/// What one batch holds for the processor.
#[derive(Debug, Default)]
pub(crate) struct UserRecords {
    /// The user records after the start, in the shard's order: what `process_records` gets.
    pub(crate) records: Vec<KinesisClientRecord>,
    /// The last position read (a record's sequence number and its last sub-sequence),
    /// dropped sub-records included: where a checkpoint at the batch's end points.
    pub(crate) last: Option<(SequenceNumber, u64)>,
    /// Sub-records left out for being outside the shard's hash key range.
    pub(crate) dropped_outside_range: usize,
    /// Sub-records kept (and marked) although outside the shard's hash key range.
    pub(crate) kept_outside_range: usize,
    /// Kinesis records skipped: a sequence number that is not a number, data the
    /// deaggregator refused (never under its default pass-through policy), or a valid
    /// aggregate of no user records.
    pub(crate) skipped: usize,
    /// Records with the aggregation magic that are not valid aggregates, handed over whole
    /// as one plain record each.
    pub(crate) corrupt_aggregates: usize,
}

/// The records a shard consumer leaves out because they were handed over before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    /// Those at or before a checkpoint (sub-sequence aware): where a tenure starts, or
    /// just after a record given up.
    Covered(Checkpoint),
    /// Those before a sequence number: where a retry reads again from a record's first
    /// sub-record.
    Before(SequenceNumber),
}

impl Skip {
    /// Whether the user record at (`seq`, `sub`) is left out.
    pub(crate) fn skips(&self, seq: &SequenceNumber, sub: u64) -> bool {
        match self {
            Skip::Covered(checkpoint) => checkpoint.covers(seq, sub),
            Skip::Before(first) => seq < first,
        }
    }
}

/// Takes Kinesis records apart into user records with `deagg` (which knows the shard's
/// hash key range), dropping those `skip` leaves out and those outside the range.
pub(crate) fn user_records(deagg: &Deaggregator, skip: &Skip, records: Vec<Record>) -> UserRecords {
    let mut out = UserRecords {
        records: Vec::with_capacity(records.len()),
        ..UserRecords::default()
    };
    for r in records {
        let Some(seq) = SequenceNumber::parse(r.sequence_number()) else {
            tracing::warn!(
                sequence_number = r.sequence_number(),
                "skipping record with an odd sequence number"
            );
            out.skipped += 1;
            continue;
        };
        let arrival = r
            .approximate_arrival_timestamp()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let pk = r.partition_key().unwrap_or_default().to_owned();
        let data = Bytes::from(r.data.into_inner());
        let d = match deagg.deaggregate(&pk, data) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "skipping undecodable record");
                out.skipped += 1;
                continue;
            }
        };
        if let RecordFormat::Corrupt(reason) = &d.format {
            tracing::warn!(sequence_number = %seq, ?reason, "corrupt aggregate passed through as one record");
            out.corrupt_aggregates += 1;
        }
        if d.total == 0 {
            // A valid aggregate of no user records (no KPL writes one): nothing to hand
            // over, but never silently.
            tracing::warn!(sequence_number = %seq, "skipping an aggregate of no user records");
            out.skipped += 1;
        }
        out.dropped_outside_range += d.dropped_outside_range;
        out.kept_outside_range += d.kept_outside_range;
        let aggregated = d.format == RecordFormat::Aggregated;
        out.last = Some((seq.clone(), d.total.saturating_sub(1) as u64));
        for sub in d.records {
            if skip.skips(&seq, sub.sub_sequence_number) {
                continue;
            }
            out.records.push(KinesisClientRecord {
                sequence_number: seq.as_str().to_owned(),
                sub_sequence_number: sub.sub_sequence_number,
                partition_key: sub.partition_key,
                explicit_hash_key: sub.explicit_hash_key,
                approximate_arrival_timestamp: arrival,
                data: sub.data,
                aggregated,
                outside_shard_range: sub.outside_shard_range,
                payload_encoding: crate::PayloadEncoding::Plain,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kinesis_agg::{Aggregator, HashKeyRange, UserRecord};

    use super::*;

    fn record(seq: &str, pk: &str, data: Bytes) -> Record {
        Record::builder()
            .sequence_number(seq)
            .partition_key(pk)
            .data(aws_sdk_kinesis::primitives::Blob::new(data.to_vec()))
            .build()
            .unwrap()
    }

    /// A KPL aggregate of `n` user records `k0`/`v0` ….
    fn aggregate(n: usize) -> kinesis_agg::KinesisRecord {
        let mut agg = Aggregator::builder().build().unwrap();
        for i in 0..n {
            agg.try_add(UserRecord::new(format!("k{i}"), format!("v{i}")).unwrap())
                .unwrap();
        }
        agg.finish().unwrap()
    }

    fn positions(out: &UserRecords) -> Vec<(String, u64)> {
        out.records
            .iter()
            .map(|r| (r.sequence_number.clone(), r.sub_sequence_number))
            .collect()
    }

    fn all() -> Deaggregator {
        Deaggregator::new().with_shard_range(HashKeyRange::ALL)
    }

    #[test]
    fn resume_skips_records_at_or_before_the_checkpoint_by_sub_sequence() {
        let a = aggregate(4);
        let records = vec![
            record("100", "p", Bytes::from_static(b"old")),
            record("200", &a.partition_key, a.data.clone()),
            record("300", "p", Bytes::from_static(b"new")),
        ];
        let start = Checkpoint::at("200", 1).unwrap();
        let deagg = all();
        let UserRecords {
            records: out, last, ..
        } = user_records(&deagg, &Skip::Covered(start), records);
        let got: Vec<(String, u64)> = out
            .iter()
            .map(|r| (r.sequence_number.clone(), r.sub_sequence_number))
            .collect();
        assert_eq!(
            got,
            vec![("200".into(), 2), ("200".into(), 3), ("300".into(), 0)]
        );
        assert!(out[0].aggregated && !out[2].aggregated);
        assert_eq!(last, Some((SequenceNumber::parse("300").unwrap(), 0)));
    }

    #[test]
    fn sub_records_outside_the_shard_range_are_dropped() {
        let mut agg = Aggregator::builder().build().unwrap();
        agg.try_add(
            UserRecord::new("a", "in")
                .unwrap()
                .with_explicit_hash_key(kinesis_agg::HashKey(5)),
        )
        .unwrap();
        agg.try_add(
            UserRecord::new("b", "out")
                .unwrap()
                .with_explicit_hash_key(kinesis_agg::HashKey(500)),
        )
        .unwrap();
        let a = agg.finish().unwrap();
        let range = HashKeyRange::parse("0", "100").unwrap();
        let deagg = Deaggregator::new().with_shard_range(range);
        let UserRecords {
            records: out, last, ..
        } = user_records(
            &deagg,
            &Skip::Covered(Checkpoint::TrimHorizon),
            vec![record("7", &a.partition_key, a.data)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, Bytes::from_static(b"in"));
        // The batch end covers the dropped sub-record too.
        assert_eq!(last, Some((SequenceNumber::parse("7").unwrap(), 1)));
    }

    #[test]
    fn sub_records_dropped_outside_the_range_are_counted() {
        let mut agg = Aggregator::builder().build().unwrap();
        for (i, key) in [5u128, 500, 600].into_iter().enumerate() {
            agg.try_add(
                UserRecord::new(format!("k{i}"), "x")
                    .unwrap()
                    .with_explicit_hash_key(kinesis_agg::HashKey(key)),
            )
            .unwrap();
        }
        let a = agg.finish().unwrap();
        let deagg = Deaggregator::new().with_shard_range(HashKeyRange::parse("0", "100").unwrap());
        let out = user_records(
            &deagg,
            &Skip::Covered(Checkpoint::TrimHorizon),
            vec![
                record("7", &a.partition_key, a.data.clone()),
                record("8", &a.partition_key, a.data),
            ],
        );
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.dropped_outside_range, 4);
    }

    #[test]
    fn a_plain_record_at_the_checkpoint_is_dropped_and_the_next_kept() {
        let records = vec![
            record("200", "p", Bytes::from_static(b"done")),
            record("201", "p", Bytes::from_static(b"due")),
        ];
        let out = user_records(
            &all(),
            &Skip::Covered(Checkpoint::at("200", 0).unwrap()),
            records,
        );
        assert_eq!(positions(&out), vec![("201".into(), 0)]);
        assert_eq!(out.last, Some((SequenceNumber::parse("201").unwrap(), 0)));
    }

    #[test]
    fn an_aggregate_checkpointed_at_its_last_sub_record_is_dropped_whole() {
        let a = aggregate(4);
        let out = user_records(
            &all(),
            &Skip::Covered(Checkpoint::at("200", 3).unwrap()),
            vec![record("200", &a.partition_key, a.data)],
        );
        assert!(out.records.is_empty());
        // Still read: a checkpoint at the batch end stays where it was.
        assert_eq!(out.last, Some((SequenceNumber::parse("200").unwrap(), 3)));
    }

    #[test]
    fn a_retry_from_a_first_sub_record_keeps_the_whole_aggregate_and_what_follows() {
        let a = aggregate(3);
        let records = vec![
            record("100", "p", Bytes::from_static(b"done")),
            record("200", &a.partition_key, a.data),
            record("300", "p", Bytes::from_static(b"due")),
        ];
        let skip = Skip::Before(SequenceNumber::parse("200").unwrap());
        let out = user_records(&all(), &skip, records);
        assert_eq!(
            positions(&out),
            vec![
                ("200".into(), 0),
                ("200".into(), 1),
                ("200".into(), 2),
                ("300".into(), 0)
            ]
        );
    }

    #[test]
    fn sequence_numbers_compare_as_numbers_not_text() {
        // "99" sorts after "100" as text; as a number it is before the checkpoint.
        let records = vec![
            record("99", "p", Bytes::from_static(b"old")),
            record("0101", "p", Bytes::from_static(b"new")),
        ];
        let out = user_records(
            &all(),
            &Skip::Covered(Checkpoint::at("100", 0).unwrap()),
            records,
        );
        assert_eq!(positions(&out), vec![("0101".into(), 0)]);
    }

    #[test]
    fn sentinel_starts_drop_nothing() {
        let a = aggregate(2);
        for start in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp,
        ] {
            let out = user_records(
                &all(),
                &Skip::Covered(start.clone()),
                vec![
                    record("1", "p", Bytes::from_static(b"a")),
                    record("2", &a.partition_key, a.data.clone()),
                ],
            );
            assert_eq!(
                positions(&out),
                vec![("1".into(), 0), ("2".into(), 0), ("2".into(), 1)],
                "{start}"
            );
        }
    }

    #[test]
    fn a_record_with_an_odd_sequence_number_is_skipped_and_not_the_batch_end() {
        let records = vec![
            record("5", "p", Bytes::from_static(b"a")),
            record("x5", "p", Bytes::from_static(b"b")),
        ];
        let out = user_records(&all(), &Skip::Covered(Checkpoint::TrimHorizon), records);
        assert_eq!(positions(&out), vec![("5".into(), 0)]);
        assert_eq!(out.last, Some((SequenceNumber::parse("5").unwrap(), 0)));
        assert_eq!((out.skipped, out.corrupt_aggregates), (1, 0));
    }

    /// An aggregate's protobuf body: the key tables and the records as given.
    fn body(keys: &[&str], hash_keys: &[&str], records: &[(u64, Option<u64>, &[u8])]) -> Vec<u8> {
        use kinesis_agg::proto::{AggregatedRecord, Record as Sub};
        use prost::Message as _;
        AggregatedRecord {
            partition_key_table: keys.iter().map(|k| (*k).to_owned()).collect(),
            explicit_hash_key_table: hash_keys.iter().map(|k| (*k).to_owned()).collect(),
            records: records
                .iter()
                .map(|(pk, ehk, data)| Sub {
                    partition_key_index: *pk,
                    explicit_hash_key_index: *ehk,
                    data: Bytes::copy_from_slice(data),
                    tags: Vec::new(),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// The magic, `body` and the MD5 of `body`.
    fn framed(body: &[u8]) -> Vec<u8> {
        use md5::Digest as _;
        let mut out = kinesis_agg::MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&md5::Md5::digest(body));
        out
    }

    /// What the consumer makes of one Kinesis record.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// Handed over as sent, one plain record, not counted.
        Plain,
        /// Handed over as sent, one plain record, counted as a corrupt aggregate.
        CorruptWhole,
        /// This many user records handed over.
        Users(usize),
        /// Nothing handed over; counted as skipped.
        Skipped,
    }

    #[test]
    fn every_kind_of_bad_aggregate_has_one_documented_outcome() {
        let two = body(&["a", "b"], &[], &[(0, None, b"x"), (1, None, b"y")]);
        let good = framed(&two);
        let mut bad_md5 = good.clone();
        *bad_md5.last_mut().unwrap() ^= 1;
        let mut bad_magic = good.clone();
        bad_magic[3] = 0xC1;
        // Field 1 (a key) declaring 2^62 bytes, then 1 byte.
        let huge = [
            0x0A, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, b'k',
        ];
        let ehk = |text: &str| framed(&body(&["a"], &[text], &[(0, Some(0), b"x")]));
        let max = u128::MAX.to_string();
        let over = "340282366920938463463374607431768211456"; // 2^128
        use Outcome::*;
        let rows: Vec<(&str, Vec<u8>, Outcome)> = vec![
            ("valid aggregate", good.clone(), Users(2)),
            ("bad magic", bad_magic, Plain),
            (
                "magic and no room for a digest",
                kinesis_agg::MAGIC.to_vec(),
                Plain,
            ),
            ("bad MD5", bad_md5, CorruptWhole),
            (
                "truncated protobuf",
                framed(&two[..two.len() - 2]),
                CorruptWhole,
            ),
            ("huge declared length", framed(&huge), CorruptWhole),
            (
                "partition key index out of range",
                framed(&body(&["a"], &[], &[(1, None, b"x")])),
                CorruptWhole,
            ),
            (
                "explicit hash key index out of range",
                framed(&body(&["a"], &["5"], &[(0, Some(1), b"x")])),
                CorruptWhole,
            ),
            ("explicit hash key not decimal", ehk("12a"), CorruptWhole),
            ("explicit hash key negative", ehk("-1"), CorruptWhole),
            ("explicit hash key 2^128", ehk(over), CorruptWhole),
            ("explicit hash key empty", ehk(""), CorruptWhole),
            ("explicit hash key 2^128-1", ehk(&max), Users(1)),
            ("zero records", framed(&body(&["a"], &[], &[])), Skipped),
        ];
        for (name, data, want) in rows {
            let out = user_records(
                &all(),
                &Skip::Covered(Checkpoint::TrimHorizon),
                vec![record("9", "p", Bytes::from(data.clone()))],
            );
            let got = match (out.records.len(), out.skipped, out.corrupt_aggregates) {
                (0, 1, 0) => Skipped,
                (1, 0, 1) if out.records[0].data == data && !out.records[0].aggregated => {
                    CorruptWhole
                }
                (1, 0, 0) if out.records[0].data == data && !out.records[0].aggregated => Plain,
                (n, 0, 0) if out.records.iter().all(|r| r.aggregated) => Users(n),
                other => panic!("{name}: unexpected {other:?}"),
            };
            assert_eq!(got, want, "{name}");
            // The batch end covers the record whatever became of it.
            assert_eq!(
                out.last,
                Some((
                    SequenceNumber::parse("9").unwrap(),
                    match want {
                        Users(n) => n as u64 - 1,
                        _ => 0,
                    }
                )),
                "{name}"
            );
        }
    }

    #[test]
    fn a_corrupt_aggregate_is_handed_over_whole_and_counted() {
        // The magic, then bytes that are no aggregate.
        let mut data = vec![0xF3, 0x89, 0x9A, 0xC2];
        data.extend_from_slice(&[0xFF; 40]);
        let records = vec![record("7", "p", Bytes::from(data.clone()))];
        let out = user_records(&all(), &Skip::Covered(Checkpoint::TrimHorizon), records);
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.records[0].data, Bytes::from(data));
        assert_eq!((out.skipped, out.corrupt_aggregates), (0, 1));
    }
}
