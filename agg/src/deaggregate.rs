//! The deaggregator: one Kinesis record in, its user records out.
//!
//! ```text
//!  Kinesis record ──magic?──no──────────────────────────────▶ 1 plain record, sub-sequence 0
//!                     │yes
//!                     ├─MD5 ok? protobuf ok? indexes ok?──no──▶ CorruptPolicy: pass through | error
//!                     │yes
//!                     └─▶ user records 0..n ──shard range filter──▶ kept (+ count dropped)
//! ```
//!
//! A record without the magic passes through unchanged, as the KCL does. Payloads are
//! slices of the input `Bytes`: nothing is copied.

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::compression;
use crate::error::{excerpt, CorruptReason, Error};
use crate::hash::{HashKey, HashKeyRange};
use crate::key::PartitionKey;
use crate::wire;
use crate::{DIGEST_LEN, MAGIC};

/// One user record taken out of a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord {
    /// Position in its aggregate (0 for a plain record): with the Kinesis sequence number,
    /// it identifies the user record and is what the KCL checkpoints.
    pub sub_sequence_number: u64,
    /// The user record's partition key (for a user record of an aggregate, a view of the
    /// aggregate's key table: no copy).
    pub partition_key: PartitionKey,
    /// The user record's explicit hash key, when it had one inside an aggregate (a plain
    /// record's explicit hash key is not returned by Kinesis).
    pub explicit_hash_key: Option<HashKey>,
    /// The payload, sharing the input buffer.
    pub data: Bytes,
    /// Whether its hash key lies outside the shard range given to the [`Deaggregator`]:
    /// only ever true under [`OutsideRangePolicy::Keep`] (under the default policy such
    /// records are dropped and counted instead).
    pub outside_shard_range: bool,
}

/// What kind of Kinesis record came in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordFormat {
    /// No aggregation magic: passed through as one user record.
    Plain,
    /// A valid KPL aggregate.
    Aggregated,
    /// The magic, but not a valid aggregate; passed through as one user record under
    /// [`CorruptPolicy::PassThrough`].
    Corrupt(CorruptReason),
}

/// The user records of one Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deaggregated {
    /// The user records kept, in sub-sequence order.
    pub records: Vec<SubRecord>,
    /// What the input was.
    pub format: RecordFormat,
    /// User records dropped because their hash key lies outside the shard's range (they
    /// were routed by another record's key: the KPL re-sends them to their own shard,
    /// while other aggregators never do), or because they share an aggregate sent under
    /// [`WHOLE_RESEND_PARTITION_KEY`] with such a record (its producer re-sent all of
    /// them). Zero under [`OutsideRangePolicy::Keep`].
    pub dropped_outside_range: usize,
    /// User records kept although their hash key lies outside the shard's range (marked
    /// [`SubRecord::outside_shard_range`]); only under [`OutsideRangePolicy::Keep`].
    pub kept_outside_range: usize,
    /// User records in the input, kept or dropped.
    pub total: usize,
    /// Whether the record was compressed by this crate's [`compression`]
    /// and has been inflated.
    pub compressed: bool,
}

/// The partition key under which this project's producer (`kinesis-producer`) sends an
/// aggregate of more than one user record, routed by the explicit hash key of its first
/// user record.
///
/// A Kinesis partition key of an aggregate only labels it (the explicit hash key routes
/// it, and each user record carries its own key inside), so no user key, however long,
/// can make Kinesis refuse the aggregate. The KPL uses `"a"` for the same purpose; this
/// key also says that the producer re-sends every user record of an aggregate that
/// landed in a shard not owning all of them (after a reshard), where the KPL re-sends only
/// the records outside that shard. Readers that follow the Java KCL discard such an
/// aggregate whole and see the re-sent copies; [`Deaggregator`] under
/// [`OutsideRangePolicy::Drop`] does the same for aggregates under this key, and keeps the
/// in-range records of any other aggregate.
pub const WHOLE_RESEND_PARTITION_KEY: &str = "agg:whole-resend";

/// What to do with a record that has the magic but is not a valid aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Hand it on as one plain record (as the KCL does), with the reason in
    /// [`Deaggregated::format`] so the caller can count or log it. The default: the
    /// record may be a user payload that merely starts with the magic.
    #[default]
    PassThrough,
    /// Fail with [`Error::Corrupt`].
    Reject,
}

/// What to do with a user record of an aggregate whose hash key lies outside the range of
/// the shard the aggregate was read from (set with [`Deaggregator::with_shard_range`]).
///
/// Such a record was packed with records of other keys and routed by the aggregate's key.
/// The KPL, when an aggregate lands in a shard that does not own all of its records
/// (after a reshard), re-sends those records to their own shards, and the Java KCL drops
/// them where they landed; aggregators that pack any keys together (the Python and Node
/// `aws-kinesis-agg` libraries, several Go producers) never re-send them, and dropping
/// them loses them.
///
/// An aggregate sent under [`WHOLE_RESEND_PARTITION_KEY`] (this project's producer) is
/// re-sent whole by its producer when it lands in such a shard, so under
/// [`OutsideRangePolicy::Drop`] all of its user records are dropped as soon as one lies
/// outside the range, as the Java KCL does with every aggregate: the copies that count
/// are the re-sent ones, and none is read twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OutsideRangePolicy {
    /// Drop them and count them in [`Deaggregated::dropped_outside_range`]; for an
    /// aggregate sent under [`WHOLE_RESEND_PARTITION_KEY`], drop (and count) every user
    /// record of it. The default.
    #[default]
    Drop,
    /// Keep them, marked [`SubRecord::outside_shard_range`] and counted in
    /// [`Deaggregated::kept_outside_range`].
    Keep,
}

/// Takes Kinesis records apart into user records. Cheap to build and to clone.
///
/// # Usage
/// ```
/// use bytes::Bytes;
/// use kinesis_agg::{Aggregator, Deaggregator, HashKeyRange, UserRecord};
///
/// let mut agg = Aggregator::builder().build()?;
/// for i in 0..3 {
///     agg.try_add(UserRecord::new(format!("k{i}"), format!("v{i}"))?).unwrap();
/// }
/// let record = agg.finish().unwrap();
///
/// let out = Deaggregator::new()
///     .with_shard_range(HashKeyRange::ALL)
///     .deaggregate(&record.partition_key, record.data)?;
/// assert_eq!(out.records.len(), 3);
/// assert_eq!(out.records[2].sub_sequence_number, 2);
/// assert_eq!(out.records[2].data, Bytes::from("v2"));
/// # Ok::<(), kinesis_agg::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Deaggregator {
    /// When set, user records whose hash key lies outside it are dropped and counted (or
    /// kept and marked, under `outside_range`).
    shard_range: Option<HashKeyRange>,
    /// What happens to user records outside `shard_range`.
    outside_range: OutsideRangePolicy,
    /// What to do with a corrupt aggregate.
    on_corrupt: CorruptPolicy,
    /// Whether to inflate records marked by [`compression`]; `None`
    /// leaves them as they are, `Some(limit)` inflates up to `limit` bytes.
    inflate_limit: Option<usize>,
}

impl Default for Deaggregator {
    fn default() -> Self {
        Deaggregator {
            shard_range: None,
            outside_range: OutsideRangePolicy::default(),
            on_corrupt: CorruptPolicy::default(),
            inflate_limit: Some(DEFAULT_INFLATE_LIMIT),
        }
    }
}

/// Default upper bound on an inflated compressed record: 10 MiB, Kinesis' largest record.
pub const DEFAULT_INFLATE_LIMIT: usize = 10 * 1024 * 1024;

impl Deaggregator {
    /// A deaggregator with no shard filter, [`CorruptPolicy::PassThrough`], and
    /// decompression on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops (and counts) user records of an aggregate whose hash key lies outside the
    /// range of the shard the record was read from. Default: no filter.
    pub fn with_shard_range(mut self, range: HashKeyRange) -> Self {
        self.shard_range = Some(range);
        self
    }

    /// What happens to user records outside the shard range: dropped and counted, or kept
    /// and marked. Default: [`OutsideRangePolicy::Drop`]. Without a shard range, no record
    /// is outside.
    pub fn with_outside_range_policy(mut self, policy: OutsideRangePolicy) -> Self {
        self.outside_range = policy;
        self
    }

    /// What to do with a record that has the magic but is not a valid aggregate.
    /// Default: [`CorruptPolicy::PassThrough`].
    pub fn with_corrupt_policy(mut self, policy: CorruptPolicy) -> Self {
        self.on_corrupt = policy;
        self
    }

    /// Whether to inflate records compressed by [`compression`]
    /// (the producer's opt-in compression). Default: on, up to [`DEFAULT_INFLATE_LIMIT`]
    /// bytes per record. Off, such records come out as opaque plain records.
    pub fn with_decompression(mut self, on: bool) -> Self {
        self.inflate_limit = on.then_some(DEFAULT_INFLATE_LIMIT);
        self
    }

    /// The user records of the Kinesis record with this partition key and data.
    ///
    /// # Errors
    /// [`Error::Corrupt`] only under [`CorruptPolicy::Reject`].
    pub fn deaggregate(&self, partition_key: &str, data: Bytes) -> Result<Deaggregated, Error> {
        let (inner, compressed) = match self.inflate_limit {
            Some(limit) => match compression::decompress(&data, limit) {
                Ok(Some(inflated)) => (inflated, true),
                Ok(None) => (data, false),
                Err(reason) => return self.corrupt(partition_key, data, reason),
            },
            None => (data, false),
        };
        let mut out = if !is_aggregated(&inner) {
            plain(partition_key, inner, RecordFormat::Plain)
        } else {
            let whole = partition_key == WHOLE_RESEND_PARTITION_KEY;
            match self.parse(&inner, whole) {
                Ok(out) => out,
                // An inflated record that is a corrupt aggregate is handed over inflated,
                // and says so.
                Err(reason) => self.corrupt(partition_key, inner, reason)?,
            }
        };
        out.compressed = compressed;
        Ok(out)
    }

    fn corrupt(
        &self,
        partition_key: &str,
        data: Bytes,
        reason: CorruptReason,
    ) -> Result<Deaggregated, Error> {
        match self.on_corrupt {
            CorruptPolicy::PassThrough => {
                Ok(plain(partition_key, data, RecordFormat::Corrupt(reason)))
            }
            CorruptPolicy::Reject => Err(Error::Corrupt(reason)),
        }
    }

    /// Takes an aggregate apart. `whole`: its producer re-sends it whole when it lands in
    /// a shard that does not own every user record of it (see
    /// [`WHOLE_RESEND_PARTITION_KEY`]).
    fn parse(&self, data: &Bytes, whole: bool) -> Result<Deaggregated, CorruptReason> {
        let body_end = data.len() - DIGEST_LEN;
        // The body, sharing `data`: the key table hands out views of it.
        let body = data.slice(MAGIC.len()..body_end);
        let digest: [u8; 16] = Md5::digest(&body).into();
        if digest[..] != data[body_end..] {
            return Err(CorruptReason::DigestMismatch);
        }
        let protobuf = |e: wire::WireError| {
            CorruptReason::Protobuf(format!("failed to decode Protobuf message: {e}"))
        };
        let tables = wire::tables(&body).map_err(protobuf)?;
        // The first error past the protobuf layer; reported only if the whole message
        // parses (a protobuf error anywhere takes precedence, as when decoding with prost).
        let mut invalid: Option<CorruptReason> = None;
        let mut explicit_keys = Vec::with_capacity(tables.explicit_hash_keys.len());
        for (index, text) in tables.explicit_hash_keys.iter().enumerate() {
            match HashKey::parse_decimal(text) {
                Ok(key) => explicit_keys.push(key),
                Err(_) => {
                    invalid = Some(CorruptReason::InvalidExplicitHashKey {
                        index,
                        input: excerpt(text),
                    });
                    break;
                }
            }
        }
        let keys = &tables.partition_keys;
        // Hash keys of the partition key table, computed once per key and only if filtering.
        let mut key_hashes: Vec<Option<HashKey>> = match self.shard_range {
            Some(_) => vec![None; keys.len()],
            None => Vec::new(),
        };
        let total = tables.records;
        let mut records = Vec::with_capacity(total);
        let (mut dropped, mut kept_outside) = (0, 0);
        // Set once a user record of a whole-resend aggregate lies outside the range under
        // `Drop`: every record of it is then dropped (the rest is still checked, to tell a
        // corrupt aggregate).
        let mut drop_all = false;
        for (position, fields) in wire::records(&body).enumerate() {
            let r = fields.map_err(protobuf)?;
            if invalid.is_some() {
                continue; // only checking that the rest parses
            }
            let Some(pk_index) = usize::try_from(r.partition_key_index)
                .ok()
                .filter(|&i| i < keys.len())
            else {
                invalid = Some(CorruptReason::PartitionKeyIndexOutOfRange {
                    record: position,
                    index: r.partition_key_index,
                    table_len: keys.len(),
                });
                continue;
            };
            let explicit_hash_key = match r.explicit_hash_key_index {
                None => None,
                Some(index) => {
                    match usize::try_from(index)
                        .ok()
                        .and_then(|i| explicit_keys.get(i).copied())
                    {
                        Some(key) => Some(key),
                        None => {
                            invalid = Some(CorruptReason::ExplicitHashKeyIndexOutOfRange {
                                record: position,
                                index,
                                table_len: explicit_keys.len(),
                            });
                            continue;
                        }
                    }
                }
            };
            if drop_all {
                continue; // checked (a corrupt aggregate is told as such), not kept
            }
            let mut outside_shard_range = false;
            if let Some(range) = self.shard_range {
                let hash = explicit_hash_key.unwrap_or_else(|| {
                    *key_hashes[pk_index]
                        .get_or_insert_with(|| HashKey::from_partition_key(keys.str(pk_index)))
                });
                if !range.contains(hash) {
                    match self.outside_range {
                        OutsideRangePolicy::Drop if whole => {
                            drop_all = true;
                            continue;
                        }
                        OutsideRangePolicy::Drop => {
                            dropped += 1;
                            continue;
                        }
                        OutsideRangePolicy::Keep => {
                            kept_outside += 1;
                            outside_shard_range = true;
                        }
                    }
                }
            }
            let (start, end) = r.data;
            records.push(SubRecord {
                sub_sequence_number: position as u64,
                partition_key: keys.key(pk_index),
                explicit_hash_key,
                data: data.slice(MAGIC.len() + start..MAGIC.len() + end),
                outside_shard_range,
            });
        }
        if let Some(reason) = invalid {
            return Err(reason);
        }
        if drop_all {
            records.clear();
            dropped = total;
        }
        Ok(Deaggregated {
            records,
            format: RecordFormat::Aggregated,
            dropped_outside_range: dropped,
            kept_outside_range: kept_outside,
            total,
            compressed: false,
        })
    }
}

fn plain(partition_key: &str, data: Bytes, format: RecordFormat) -> Deaggregated {
    Deaggregated {
        records: vec![SubRecord {
            sub_sequence_number: 0,
            partition_key: PartitionKey::from(partition_key),
            explicit_hash_key: None,
            data,
            outside_shard_range: false,
        }],
        format,
        dropped_outside_range: 0,
        kept_outside_range: 0,
        total: 1,
        compressed: false,
    }
}

/// Whether `data` is framed as a KPL aggregate: the magic, then at least one protobuf
/// byte and the 16-byte MD5 (the KCL's test). Says nothing of whether the digest matches.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() > MAGIC.len() + DIGEST_LEN && data[..MAGIC.len()] == MAGIC
}

/// The user records of one Kinesis record, with no shard filter; corrupt aggregates are
/// passed through (see [`Deaggregator`] for the choices).
///
/// # Errors
/// None under the default policy; the `Result` is kept so that stricter policies fit.
pub fn deaggregate(partition_key: &str, data: Bytes) -> Result<Deaggregated, Error> {
    Deaggregator::new().deaggregate(partition_key, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aggregator, UserRecord};

    fn aggregate(records: &[(&str, Option<u128>, &[u8])]) -> Bytes {
        let mut a = Aggregator::builder().build().unwrap();
        for (pk, ehk, data) in records {
            let mut r = UserRecord::new(*pk, data.to_vec()).unwrap();
            if let Some(h) = ehk {
                r = r.with_explicit_hash_key(HashKey(*h));
            }
            a.try_add(r).unwrap();
        }
        let out = a.finish().unwrap();
        assert!(out.is_aggregated());
        out.data
    }

    pub(super) fn frame(body: &[u8]) -> Bytes {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(body);
        let d: [u8; 16] = Md5::digest(body).into();
        v.extend_from_slice(&d);
        Bytes::from(v)
    }

    #[test]
    fn plain_records_pass_through() {
        for data in [
            &b""[..],
            b"hello",
            &MAGIC,
            &[0xF3, 0x89, 0x9A, 0xC2, 1, 2, 3],
        ] {
            let out = deaggregate("pk", Bytes::copy_from_slice(data)).unwrap();
            assert_eq!(out.format, RecordFormat::Plain);
            assert_eq!(out.records.len(), 1);
            assert_eq!(out.records[0].data, data);
            assert_eq!(out.records[0].partition_key, "pk");
            assert_eq!(out.records[0].sub_sequence_number, 0);
        }
    }

    #[test]
    fn aggregates_come_apart_in_order_without_copying() {
        let data = aggregate(&[
            ("a", None, b"one"),
            ("b", Some(42), b"two"),
            ("a", None, b""),
        ]);
        let out = deaggregate("a", data.clone()).unwrap();
        assert_eq!(out.format, RecordFormat::Aggregated);
        assert_eq!(out.total, 3);
        let got: Vec<_> = out
            .records
            .iter()
            .map(|r| {
                (
                    r.sub_sequence_number,
                    r.partition_key.as_str(),
                    r.explicit_hash_key,
                    &r.data[..],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "a", None, &b"one"[..]),
                (1, "b", Some(HashKey(42)), &b"two"[..]),
                (2, "a", None, &b""[..]),
            ]
        );
        // Zero copy: the payload points into the input buffer.
        let input = data.as_ptr_range();
        assert!(input.contains(&out.records[0].data.as_ptr()));
    }

    /// A corrupt record and a check of the reason it is rejected for.
    type CorruptCase = (Bytes, fn(&CorruptReason) -> bool);

    #[test]
    fn corruption_is_reported_or_rejected() {
        let good = aggregate(&[("a", None, b"one"), ("b", None, b"two")]);
        let mut bad_digest = good.to_vec();
        let last = bad_digest.len() - 1;
        bad_digest[last] ^= 1;
        let cases: Vec<CorruptCase> = vec![
            (Bytes::from(bad_digest), |r| {
                matches!(r, CorruptReason::DigestMismatch)
            }),
            (frame(&[0xFF, 0xFF, 0xFF]), |r| {
                matches!(r, CorruptReason::Protobuf(_))
            }),
            // records: [{pk index 3, data ""}] with an empty key table
            (frame(&[0x1A, 0x04, 0x08, 0x03, 0x1A, 0x00]), |r| {
                matches!(
                    r,
                    CorruptReason::PartitionKeyIndexOutOfRange {
                        record: 0,
                        index: 3,
                        table_len: 0
                    }
                )
            }),
            // key table ["k"], records: [{pk 0, ehk 0, data ""}], no ehk table
            (
                frame(&[
                    0x0A, 0x01, b'k', 0x1A, 0x06, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x00,
                ]),
                |r| matches!(r, CorruptReason::ExplicitHashKeyIndexOutOfRange { .. }),
            ),
            // ehk table ["x1"]
            (frame(&[0x12, 0x02, b'x', b'1']), |r| {
                matches!(r, CorruptReason::InvalidExplicitHashKey { index: 0, .. })
            }),
        ];
        for (data, is_expected) in cases {
            let out = deaggregate("pk", data.clone()).unwrap();
            match &out.format {
                RecordFormat::Corrupt(reason) => assert!(is_expected(reason), "{reason:?}"),
                other => panic!("expected corrupt, got {other:?}"),
            }
            assert_eq!(out.records.len(), 1);
            assert_eq!(out.records[0].data, data, "passed through unchanged");
            let strict = Deaggregator::new().with_corrupt_policy(CorruptPolicy::Reject);
            match strict.deaggregate("pk", data) {
                Err(Error::Corrupt(reason)) => assert!(is_expected(&reason)),
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn filters_by_shard_range_and_counts_drops() {
        let h = |pk: &str| HashKey::from_partition_key(pk);
        let data = aggregate(&[
            ("a", None, b"1"),
            ("b", None, b"2"),
            ("c", Some(10), b"3"),
            ("a", None, b"4"),
        ]);
        let range = HashKeyRange::new(h("a"), h("a")).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(range)
            .deaggregate("a", data.clone())
            .unwrap();
        assert_eq!(out.total, 4);
        let kept: Vec<_> = out.records.iter().map(|r| r.sub_sequence_number).collect();
        assert_eq!(kept, vec![0, 3]);
        assert_eq!(out.dropped_outside_range, 2);

        let low = HashKeyRange::new(HashKey(0), HashKey(10)).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(low)
            .deaggregate("a", data)
            .unwrap();
        let kept: Vec<_> = out.records.iter().map(|r| r.sub_sequence_number).collect();
        assert_eq!(
            kept,
            vec![2],
            "explicit hash key decides, not the partition key"
        );
    }

    #[test]
    fn records_outside_the_range_can_be_kept_and_marked() {
        let h = |pk: &str| HashKey::from_partition_key(pk);
        let data = aggregate(&[("a", None, b"1"), ("b", None, b"2"), ("a", None, b"3")]);
        let range = HashKeyRange::new(h("a"), h("a")).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(range)
            .with_outside_range_policy(OutsideRangePolicy::Keep)
            .deaggregate("a", data.clone())
            .unwrap();
        let got: Vec<_> = out
            .records
            .iter()
            .map(|r| (r.sub_sequence_number, r.outside_shard_range))
            .collect();
        assert_eq!(got, vec![(0, false), (1, true), (2, false)]);
        assert_eq!((out.kept_outside_range, out.dropped_outside_range), (1, 0));
        // The default drops them; no range, nothing is outside.
        let out = Deaggregator::new()
            .with_shard_range(range)
            .deaggregate("a", data.clone())
            .unwrap();
        assert_eq!(
            (
                out.records.len(),
                out.dropped_outside_range,
                out.kept_outside_range
            ),
            (2, 1, 0)
        );
        let out = Deaggregator::new()
            .with_outside_range_policy(OutsideRangePolicy::Keep)
            .deaggregate("a", data)
            .unwrap();
        assert!(out.records.iter().all(|r| !r.outside_shard_range));
        assert_eq!(out.kept_outside_range, 0);
    }

    #[test]
    fn a_whole_resend_aggregate_is_dropped_whole_when_one_record_lies_outside() {
        let h = |pk: &str| HashKey::from_partition_key(pk);
        let data = aggregate(&[("a", None, b"1"), ("b", None, b"2"), ("a", None, b"3")]);
        let only_a = HashKeyRange::new(h("a"), h("a")).unwrap();
        let drop = Deaggregator::new().with_shard_range(only_a);
        let out = drop
            .deaggregate(WHOLE_RESEND_PARTITION_KEY, data.clone())
            .unwrap();
        assert!(out.records.is_empty(), "{out:?}");
        assert_eq!((out.dropped_outside_range, out.total), (3, 3));
        // Under any other key only the record outside is dropped (the KPL re-sends only it).
        let out = drop.deaggregate("a", data.clone()).unwrap();
        assert_eq!((out.records.len(), out.dropped_outside_range), (2, 1));
        // Every record inside: all kept; no range: all kept.
        let all = Deaggregator::new().with_shard_range(HashKeyRange::ALL);
        let out = all
            .deaggregate(WHOLE_RESEND_PARTITION_KEY, data.clone())
            .unwrap();
        assert_eq!((out.records.len(), out.dropped_outside_range), (3, 0));
        let out = deaggregate(WHOLE_RESEND_PARTITION_KEY, data.clone()).unwrap();
        assert_eq!(out.records.len(), 3);
        // Keep marks the record outside only, as for any aggregate.
        let out = drop
            .clone()
            .with_outside_range_policy(OutsideRangePolicy::Keep)
            .deaggregate(WHOLE_RESEND_PARTITION_KEY, data)
            .unwrap();
        let marked: Vec<_> = out.records.iter().map(|r| r.outside_shard_range).collect();
        assert_eq!(marked, vec![false, true, false]);
        // A corrupt record after the one outside is still told as corrupt.
        let mut bad_index = vec![0x0A, 0x01, b'b', 0x0A, 0x01, b'a'];
        // records: [{pk 0 ("b"), data ""}, {pk 1 ("a"), data ""}, {pk 7, data ""}]
        bad_index.extend_from_slice(&[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00]);
        bad_index.extend_from_slice(&[0x1A, 0x04, 0x08, 0x01, 0x1A, 0x00]);
        bad_index.extend_from_slice(&[0x1A, 0x04, 0x08, 0x07, 0x1A, 0x00]);
        let out = drop
            .deaggregate(WHOLE_RESEND_PARTITION_KEY, frame(&bad_index))
            .unwrap();
        assert!(
            matches!(
                out.format,
                RecordFormat::Corrupt(CorruptReason::PartitionKeyIndexOutOfRange { record: 2, .. })
            ),
            "{:?}",
            out.format
        );
    }

    #[test]
    fn compressed_records_are_inflated_transparently() {
        let data = aggregate(&[("a", None, &[b'x'; 500]), ("b", None, &[b'y'; 500])]);
        let packed = compression::compress(&data, 6).unwrap();
        let out = deaggregate("a", packed.clone()).unwrap();
        assert!(out.compressed);
        assert_eq!(out.format, RecordFormat::Aggregated);
        assert_eq!(out.records[1].data, vec![b'y'; 500]);
        // Off: the compressed bytes come through opaque.
        let raw = Deaggregator::new()
            .with_decompression(false)
            .deaggregate("a", packed.clone())
            .unwrap();
        assert!(!raw.compressed);
        assert_eq!(raw.records[0].data, packed);
        // Damaged: reported, passed through unchanged.
        let mut bad = packed.to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let out = deaggregate("a", Bytes::from(bad.clone())).unwrap();
        assert!(matches!(
            out.format,
            RecordFormat::Corrupt(CorruptReason::Compression(_))
        ));
        assert_eq!(out.records[0].data, bad);
    }

    #[test]
    fn plain_records_are_never_filtered() {
        let range = HashKeyRange::new(HashKey(0), HashKey(0)).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(range)
            .deaggregate("zzz", Bytes::from_static(b"x"))
            .unwrap();
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.dropped_outside_range, 0);
    }
}

/// The hand-written protobuf decoder against prost, on hand-picked and on random inputs.
#[cfg(test)]
mod decoder_tests {
    use super::tests::frame;
    use super::*;
    use crate::proto;
    use proptest::prelude::*;
    use prost::Message;

    /// What deaggregating a body gives: the records, or the kind of error.
    type Outcome = Result<Vec<(u64, String, Option<HashKey>, Bytes)>, CorruptReason>;

    /// The reference: decode with prost, then check the tables and indexes (the
    /// deaggregator's logic before the hand-written decoder).
    fn with_prost(body: &[u8]) -> Outcome {
        let m = proto::AggregatedRecord::decode(body)
            .map_err(|e| CorruptReason::Protobuf(e.to_string()))?;
        let mut keys = Vec::new();
        for (index, text) in m.explicit_hash_key_table.iter().enumerate() {
            keys.push(HashKey::parse_decimal(text).map_err(|_| {
                CorruptReason::InvalidExplicitHashKey {
                    index,
                    input: excerpt(text),
                }
            })?);
        }
        let table = &m.partition_key_table;
        let mut out = Vec::new();
        for (record, r) in m.records.iter().enumerate() {
            let pk = usize::try_from(r.partition_key_index)
                .ok()
                .and_then(|i| table.get(i))
                .ok_or(CorruptReason::PartitionKeyIndexOutOfRange {
                    record,
                    index: r.partition_key_index,
                    table_len: table.len(),
                })?;
            let ehk = match r.explicit_hash_key_index {
                None => None,
                Some(index) => Some(
                    usize::try_from(index)
                        .ok()
                        .and_then(|i| keys.get(i).copied())
                        .ok_or(CorruptReason::ExplicitHashKeyIndexOutOfRange {
                            record,
                            index,
                            table_len: keys.len(),
                        })?,
                ),
            };
            out.push((record as u64, pk.clone(), ehk, r.data.clone()));
        }
        Ok(out)
    }

    /// The hand-written decoder, through the public API.
    fn with_wire(body: &[u8]) -> Outcome {
        // `parse` directly: an empty body is valid protobuf, though too short to frame.
        let out = Deaggregator::new().parse(&frame(body), false)?;
        assert_eq!(out.format, RecordFormat::Aggregated);
        assert_eq!(out.total, out.records.len());
        Ok(out
            .records
            .into_iter()
            .map(|r| {
                (
                    r.sub_sequence_number,
                    String::from(r.partition_key),
                    r.explicit_hash_key,
                    r.data,
                )
            })
            .collect())
    }

    /// Both decoders agree: same records, or the same reason (any protobuf error alike).
    fn agree(body: &[u8]) -> Outcome {
        let (ours, reference) = (with_wire(body), with_prost(body));
        match (&ours, &reference) {
            (Err(CorruptReason::Protobuf(_)), Err(CorruptReason::Protobuf(_))) => {}
            _ => assert_eq!(ours, reference, "body {body:02x?}"),
        }
        ours
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn key(field: u64, wire_type: u64, out: &mut Vec<u8>) {
        varint(field << 3 | wire_type, out);
    }

    fn delimited(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        key(field, 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn record(pk: u64, ehk: Option<u64>, data: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        key(1, 0, &mut r);
        varint(pk, &mut r);
        if let Some(i) = ehk {
            key(2, 0, &mut r);
            varint(i, &mut r);
        }
        delimited(3, data, &mut r);
        r
    }

    #[test]
    fn fields_in_any_order_last_scalar_wins() {
        let mut body = Vec::new();
        // A record before the tables it refers to, fields inside it reversed and repeated.
        let mut r = Vec::new();
        delimited(3, b"old", &mut r);
        delimited(3, b"new", &mut r);
        key(2, 0, &mut r);
        varint(0, &mut r);
        key(1, 0, &mut r);
        varint(5, &mut r);
        key(1, 0, &mut r);
        varint(1, &mut r);
        delimited(3, &r, &mut body);
        delimited(1, b"a", &mut body);
        delimited(2, b"77", &mut body);
        delimited(1, b"b", &mut body);
        delimited(3, &record(0, None, b"x"), &mut body);
        let out = agree(&body).unwrap();
        assert_eq!(
            out,
            vec![
                (0, "b".into(), Some(HashKey(77)), Bytes::from("new")),
                (1, "a".into(), None, Bytes::from("x")),
            ]
        );
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut unknown = Vec::new();
        key(9, 0, &mut unknown);
        varint(u64::MAX, &mut unknown);
        key(10, 1, &mut unknown);
        unknown.extend_from_slice(&[1; 8]);
        key(11, 5, &mut unknown);
        unknown.extend_from_slice(&[2; 4]);
        delimited(12, &[0xFF, 0xFE], &mut unknown); // not UTF-8: unknown, so unchecked
        key(13, 3, &mut unknown); // a group holding a field and a nested group
        key(1, 0, &mut unknown);
        varint(3, &mut unknown);
        key(14, 3, &mut unknown);
        key(14, 4, &mut unknown);
        key(13, 4, &mut unknown);
        key(536_870_911, 0, &mut unknown); // the largest field number
        varint(1, &mut unknown);

        let mut tag = unknown.clone();
        delimited(1, b"tag-key", &mut tag);
        delimited(2, b"tag-value", &mut tag);
        let mut r = record(0, None, b"payload");
        r.extend_from_slice(&unknown);
        delimited(4, &tag, &mut r);
        let mut body = unknown.clone();
        delimited(1, b"k", &mut body);
        body.extend_from_slice(&unknown);
        delimited(3, &r, &mut body);
        delimited(3, &record(0, None, b""), &mut body);
        body.extend_from_slice(&unknown);
        let out = agree(&body).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].3, Bytes::from("payload"));
    }

    #[test]
    fn malformed_input_is_rejected() {
        let good = {
            let mut b = Vec::new();
            delimited(1, b"k", &mut b);
            delimited(3, &record(0, None, b"data"), &mut b);
            b
        };
        assert!(agree(&good).is_ok());
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Every truncation of a valid body: both decoders agree (a cut between fields
        // is valid).
        for cut in 1..good.len() {
            let _ = agree(&good[..cut]);
        }
        cases.push(good[..good.len() - 1].to_vec());
        // Truncated varints: a key, and a length.
        cases.push(vec![0x80]);
        cases.push(vec![0x0A, 0xFF, 0xFF]);
        // An 11-byte varint, and a 10-byte one past 64 bits.
        cases.push([&[0x08][..], &[0xFF; 10], &[0x01]].concat());
        cases.push([&[0x48][..], &[0xFF; 9], &[0x02]].concat());
        // Lengths past the end: of the body, of the enclosing record, of u64.
        cases.push(vec![0x0A, 0x05, b'k']);
        cases.push(vec![0x1A, 0x04, 0x08, 0x00, 0x1A, 0x05, b'x', b'y']);
        cases.push([&[0x0A][..], &[0xFF; 9], &[0x01]].concat());
        // Field number 0; wire types 6 and 7; a key above u32.
        cases.push(vec![0x00, 0x00]);
        cases.push(vec![0x0E]);
        cases.push(vec![0x0F]);
        cases.push(vec![0x80, 0x80, 0x80, 0x80, 0x10]);
        // Known fields with the wrong wire type.
        cases.push(vec![0x08, 0x01]); // table entry as varint
        cases.push(vec![0x1A, 0x02, 0x0A, 0x00]); // pk index as bytes
        cases.push(vec![0x1A, 0x02, 0x18, 0x00]); // data as varint
        cases.push(vec![0x1A, 0x02, 0x20, 0x00]); // tag as varint
                                                  // Groups: an end without a start, a mismatched end, an unterminated one.
        cases.push(vec![0x4C]);
        cases.push(vec![0x4B, 0x54]);
        cases.push(vec![0x4B, 0x08, 0x01]);
        // Invalid UTF-8: in a key, in the ehk table, in a tag.
        cases.push(vec![0x0A, 0x01, 0xFF]);
        cases.push(vec![0x12, 0x02, 0xC3, 0x28]);
        cases.push(vec![0x1A, 0x05, 0x22, 0x03, 0x0A, 0x01, 0xFF]);
        // Groups nested past prost's recursion limit.
        let mut deep = Vec::new();
        for _ in 0..101 {
            key(9, 3, &mut deep);
        }
        for _ in 0..101 {
            key(9, 4, &mut deep);
        }
        cases.push(deep);
        for body in &cases {
            assert!(
                matches!(agree(body), Err(CorruptReason::Protobuf(_))),
                "{body:02x?} should not parse"
            );
        }
        // Just within the limit: 100 nested groups at the top level.
        let mut deep = Vec::new();
        for _ in 0..100 {
            key(9, 3, &mut deep);
        }
        for _ in 0..100 {
            key(9, 4, &mut deep);
        }
        assert!(agree(&deep).unwrap().is_empty());
        // Within a record, one level less: 100 nested groups are too many, 99 fit.
        let mut inner = Vec::new();
        for _ in 0..100 {
            key(9, 3, &mut inner);
        }
        for _ in 0..100 {
            key(9, 4, &mut inner);
        }
        let mut body = Vec::new();
        delimited(3, &inner, &mut body);
        assert!(matches!(agree(&body), Err(CorruptReason::Protobuf(_))));
        inner.drain(..1);
        inner.pop();
        let mut body = Vec::new();
        delimited(1, b"k", &mut body);
        delimited(3, &inner, &mut body);
        assert_eq!(agree(&body).unwrap().len(), 1);
    }

    #[test]
    fn protobuf_errors_come_before_table_and_index_errors() {
        // Index out of range in record 0, then a record that does not parse.
        let mut body = Vec::new();
        delimited(3, &record(7, None, b""), &mut body);
        delimited(3, &[0x08], &mut body);
        assert!(matches!(agree(&body), Err(CorruptReason::Protobuf(_))));
        // A bad ehk entry and an index out of range: the table is reported.
        let mut body = Vec::new();
        delimited(2, b"01", &mut body);
        delimited(3, &record(7, None, b""), &mut body);
        assert!(matches!(
            agree(&body),
            Err(CorruptReason::InvalidExplicitHashKey { index: 0, .. })
        ));
        // Two bad indexes: the first record's is reported.
        let mut body = Vec::new();
        delimited(1, b"k", &mut body);
        delimited(3, &record(0, Some(4), b""), &mut body);
        delimited(3, &record(9, None, b""), &mut body);
        assert!(matches!(
            agree(&body),
            Err(CorruptReason::ExplicitHashKeyIndexOutOfRange {
                record: 0,
                index: 4,
                table_len: 0
            })
        ));
    }

    #[test]
    fn keys_that_straddle_the_fast_utf8_check_are_checked_alone() {
        // A 200-byte key: its length varint has a high bit, so the table run is not UTF-8
        // as a whole; and a key of multi-byte characters.
        let long = "é".repeat(100);
        let mut body = Vec::new();
        delimited(1, long.as_bytes(), &mut body);
        delimited(1, "ключ".as_bytes(), &mut body);
        delimited(3, &record(0, None, b"1"), &mut body);
        delimited(3, &record(1, None, b"2"), &mut body);
        let out = agree(&body).unwrap();
        assert_eq!(out[0].1, long);
        assert_eq!(out[1].1, "ключ");
        // A key cut in the middle of a character, next to one that completes it.
        let mut body = Vec::new();
        delimited(1, &[0xC3], &mut body);
        delimited(1, &[0xA9], &mut body);
        assert!(matches!(agree(&body), Err(CorruptReason::Protobuf(_))));
    }

    /// One field of a generated message.
    #[derive(Debug, Clone)]
    enum Field {
        Varint(u64, u64),
        Fixed32(u64),
        Fixed64(u64),
        Bytes(u64, Vec<u8>),
        Group(u64, Vec<Field>),
    }

    fn encode(fields: &[Field], out: &mut Vec<u8>) {
        for f in fields {
            match f {
                Field::Varint(n, v) => {
                    key(*n, 0, out);
                    varint(*v, out);
                }
                Field::Fixed32(n) => {
                    key(*n, 5, out);
                    out.extend_from_slice(&[3; 4]);
                }
                Field::Fixed64(n) => {
                    key(*n, 1, out);
                    out.extend_from_slice(&[4; 8]);
                }
                Field::Bytes(n, b) => delimited(*n, b, out),
                Field::Group(n, inner) => {
                    key(*n, 3, out);
                    encode(inner, out);
                    key(*n, 4, out);
                }
            }
        }
    }

    /// Field numbers near the schema's (1-4) so that known fields are hit often.
    fn field_number() -> impl Strategy<Value = u64> {
        prop_oneof![8 => 1..5u64, 1 => 5..20u64, 1 => Just(536_870_911u64)]
    }

    fn text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-c0-9]{0,4}".prop_map(String::into_bytes),
            1 => "[0-9]{1,3}".prop_map(String::into_bytes),
            1 => proptest::collection::vec(any::<u8>(), 0..6),
        ]
    }

    /// A random field, nested up to three levels: messages (as bytes) and groups.
    fn generic() -> impl Strategy<Value = Field> {
        let leaf = prop_oneof![
            3 => (field_number(), prop_oneof![0..4u64, any::<u64>()])
                .prop_map(|(n, v)| Field::Varint(n, v)),
            1 => field_number().prop_map(Field::Fixed32),
            1 => field_number().prop_map(Field::Fixed64),
            3 => (field_number(), text()).prop_map(|(n, b)| Field::Bytes(n, b)),
        ];
        leaf.prop_recursive(3, 48, 6, |inner| {
            let list = proptest::collection::vec(inner, 0..6);
            prop_oneof![
                4 => (field_number(), list.clone()).prop_map(|(n, fs)| {
                    let mut b = Vec::new();
                    encode(&fs, &mut b);
                    Field::Bytes(n, b)
                }),
                1 => (field_number(), list).prop_map(|(n, fs)| Field::Group(n, fs)),
            ]
        })
    }

    /// Top-level fields biased towards this schema's shapes: table entries, records
    /// (with tags), and anything else.
    fn fields() -> impl Strategy<Value = Vec<Field>> {
        proptest::collection::vec(
            prop_oneof![
                3 => text().prop_map(|t| Field::Bytes(1, t)),
                1 => "0|[1-9][0-9]{0,3}|x".prop_map(|t| Field::Bytes(2, t.into_bytes())),
                5 => (0..4u64, proptest::option::of(0..3u64), text(), any::<bool>())
                    .prop_map(|(pk, ehk, data, tag)| {
                        let mut r = record(pk, ehk, &data);
                        if tag {
                            delimited(4, &[0x0A, 0x01, b't'], &mut r);
                        }
                        Field::Bytes(3, r)
                    }),
                2 => proptest::collection::vec(generic(), 0..5).prop_map(|fs| {
                    let mut r = Vec::new();
                    encode(&fs, &mut r);
                    Field::Bytes(3, r)
                }),
                2 => generic(),
            ],
            0..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Well-formed-ish messages, possibly damaged: both decoders agree on every one.
        #[test]
        fn agrees_with_prost(
            top in fields(),
            extra in proptest::collection::vec(any::<u8>(), 0..4),
            damage in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut body = Vec::new();
            encode(&top, &mut body);
            if let Some((at, byte)) = damage {
                if !body.is_empty() {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
            }
            if let Some(at) = cut {
                body.truncate(at.index(body.len() + 1));
            }
            let _ = agree(&body);
            body.extend_from_slice(&extra);
            let _ = agree(&body);
        }

        /// Arbitrary bytes: both decoders agree.
        #[test]
        fn agrees_with_prost_on_noise(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = agree(&body);
        }

        /// Random nested fields with random numbers and wire shapes.
        #[test]
        fn agrees_with_prost_on_random_fields(
            top in proptest::collection::vec(
                (field_number(), text(), 0..5u8).prop_map(|(n, t, shape)| match shape {
                    0 => Field::Varint(n, t.len() as u64),
                    1 => Field::Fixed32(n),
                    2 => Field::Fixed64(n),
                    3 => Field::Group(n, vec![Field::Bytes(n, t)]),
                    _ => Field::Bytes(n, t),
                }),
                0..10,
            )
        ) {
            let mut body = Vec::new();
            encode(&top, &mut body);
            let _ = agree(&body);
        }
    }
}
