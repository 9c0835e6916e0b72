//! [`user_records`]: a batch's Kinesis records taken apart into the user records a
//! processor gets, without I/O.
//!
//! ```text
//!  Kinesis records ─▶ odd sequence number? ─▶ skipped (logged, counted)
//!                  ─▶ Deaggregator: KPL aggregate → sub-records (undecodable: skipped;
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
    /// Kinesis records skipped: a sequence number that is not a number, or data the
    /// deaggregator refused (never under its default pass-through policy).
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
