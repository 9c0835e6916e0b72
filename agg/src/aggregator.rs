//! The aggregator: packs user records into one Kinesis record, knowing the exact size.
//!
//! ```text
//!  UserRecord ──try_add──▶ ┌ partition key table  (deduplicated, field 1) ┐
//!             (Err(record) │ explicit hash table  (deduplicated, field 2) │──finish──▶ KinesisRecord
//!              when full)  └ records             (encoded as added, 3)   ┘   magic + protobuf + MD5
//!                                                                          (one record: raw data)
//! ```
//!
//! Each accepted record is encoded at once: its keys into the (deduplicated) key tables,
//! its `Record` message straight into the output buffer, after a gap that
//! [`Aggregator::finish`] fills from its end with the magic and the tables, so each payload
//! is copied once. The size of what `finish` will produce is kept exactly, so a record that
//! would take the aggregate over its limit is handed back instead of being accepted. The
//! first record is held unencoded until a second one arrives, because an aggregate of one is
//! sent as its raw data (as the KPL does) and so never pays for encoding or MD5.

use std::collections::HashMap;
use std::hash::BuildHasher;

use bytes::{Buf, Bytes, BytesMut};
use foldhash::fast::RandomState;
use hashbrown::hash_table;
use hashbrown::HashTable;
use md5::{Digest, Md5};
use prost::encoding::{encode_varint, encoded_len_varint};

use crate::error::Error;
use crate::hash::HashKey;
use crate::record::{UserRecord, MAX_RECORD_SIZE};
use crate::{DIGEST_LEN, MAGIC};

/// The KPL's default `AggregationMaxSize`: 51,200 bytes of encoded data.
pub const DEFAULT_MAX_SIZE: usize = 51_200;
/// The KPL's default `AggregationMaxCount`: 4,294,967,295 user records.
pub const DEFAULT_MAX_COUNT: u64 = 4_294_967_295;
/// The smallest `max_size` accepted (the KPL's lower bound).
pub const MIN_MAX_SIZE: usize = 64;

/// Protobuf key bytes (field number << 3 | wire type) of the fields written.
const KEY_PARTITION_KEY_TABLE: u8 = (1 << 3) | 2;
const KEY_EXPLICIT_HASH_KEY_TABLE: u8 = (2 << 3) | 2;
const KEY_RECORDS: u8 = (3 << 3) | 2;
const KEY_PARTITION_KEY_INDEX: u8 = 1 << 3;
const KEY_EXPLICIT_HASH_KEY_INDEX: u8 = 2 << 3;
const KEY_DATA: u8 = (3 << 3) | 2;

/// Bytes of a length-delimited field holding `len` bytes: key, length varint, payload.
fn delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Bytes of a varint field: key and varint.
fn varint_field_len(value: u64) -> usize {
    1 + encoded_len_varint(value)
}

/// Writes `value` as a varint at `buf[at..]`, returning the position after it.
#[inline]
fn put_varint(buf: &mut [u8], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        buf[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    buf[at] = value as u8;
    at + 1
}

/// One Kinesis record ready for `PutRecords`: an aggregate, or a single user record's raw data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// Partition key to send: the first user record's, so the aggregate routes like it.
    pub partition_key: String,
    /// Explicit hash key to send: the first user record's, if it had one.
    pub explicit_hash_key: Option<HashKey>,
    /// The record's data: magic + protobuf + MD5, or the raw data of a lone user record.
    pub data: Bytes,
    /// How many user records it carries, in sub-sequence order.
    pub user_records: usize,
}

impl KinesisRecord {
    /// Whether `data` is an aggregate (more than one user record) rather than raw data.
    pub fn is_aggregated(&self) -> bool {
        self.user_records > 1
    }

    /// Data plus partition key, in bytes: what counts against Kinesis' limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// The hash key Kinesis will route this record by.
    pub fn hash_key(&self) -> HashKey {
        self.explicit_hash_key
            .unwrap_or_else(|| HashKey::from_partition_key(&self.partition_key))
    }
}

/// Builds an [`Aggregator`]; see each setter for its default.
#[derive(Debug, Clone)]
pub struct AggregatorBuilder {
    /// Upper bound on an aggregate's encoded data, in bytes.
    max_size: usize,
    /// Upper bound on user records per aggregate.
    max_count: u64,
}

impl Default for AggregatorBuilder {
    fn default() -> Self {
        AggregatorBuilder {
            max_size: DEFAULT_MAX_SIZE,
            max_count: DEFAULT_MAX_COUNT,
        }
    }
}

impl AggregatorBuilder {
    /// The largest aggregate to produce, counting magic, protobuf and MD5 trailer.
    ///
    /// Default [`DEFAULT_MAX_SIZE`] (51,200 B, the KPL's `AggregationMaxSize`); allowed
    /// [`MIN_MAX_SIZE`] ..= [`MAX_RECORD_SIZE`]. A single user record larger than this is
    /// still accepted into an empty aggregator and sent raw, as the KPL does.
    pub fn with_max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The most user records in one aggregate.
    ///
    /// Default [`DEFAULT_MAX_COUNT`] (4,294,967,295, the KPL's `AggregationMaxCount`);
    /// allowed 1 ..= 4,294,967,295.
    pub fn with_max_count(mut self, records: u64) -> Self {
        self.max_count = records;
        self
    }

    /// The aggregator.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming a setting outside its range.
    pub fn build(self) -> Result<Aggregator, Error> {
        if !(MIN_MAX_SIZE..=MAX_RECORD_SIZE).contains(&self.max_size) {
            return Err(Error::InvalidConfig {
                setting: "max_size",
                value: self.max_size as u64,
                reason: "must be within 64 ..= 1048576 bytes",
            });
        }
        if !(1..=DEFAULT_MAX_COUNT).contains(&self.max_count) {
            return Err(Error::InvalidConfig {
                setting: "max_count",
                value: self.max_count,
                reason: "must be within 1 ..= 4294967295 records",
            });
        }
        Ok(Aggregator {
            max_size: self.max_size,
            max_count: self.max_count,
            count: 0,
            first_pending: false,
            route_partition_key: String::new(),
            route_explicit_hash_key: None,
            first_data: Bytes::new(),
            hasher: RandomState::default(),
            partition_keys: HashTable::new(),
            key_count: 0,
            explicit_hash_keys: HashMap::default(),
            partition_key_table: Vec::new(),
            explicit_hash_key_table: Vec::new(),
            records_start: 0,
            gap: MIN_GAP,
            body_len: 0,
            out: BytesMut::new(),
        })
    }
}

/// Packs user records into aggregated Kinesis records of a bounded, exactly known size.
///
/// # Usage
/// ```
/// use kinesis_agg::{Aggregator, UserRecord};
///
/// let mut agg = Aggregator::builder().with_max_size(1024).build()?;
/// let mut out = Vec::new();
/// for i in 0..100 {
///     let record = UserRecord::new(format!("key-{}", i % 7), vec![b'x'; 40])?;
///     if let Err(record) = agg.try_add(record) {
///         out.extend(agg.finish()); // full: ship it, then start the next aggregate
///         agg.try_add(record).expect("an empty aggregator accepts any user record");
///     }
/// }
/// out.extend(agg.finish());
/// assert!(out.iter().all(|r| r.data.len() <= 1024));
/// assert_eq!(out.iter().map(|r| r.user_records).sum::<usize>(), 100);
/// # Ok::<(), kinesis_agg::Error>(())
/// ```
#[derive(Debug)]
pub struct Aggregator {
    /// Encoded size limit, from the builder.
    max_size: usize,
    /// User record limit, from the builder.
    max_count: u64,
    /// User records accepted since the last `finish`.
    count: usize,
    /// True while the only record is held unencoded (an aggregate of one goes out raw).
    first_pending: bool,
    /// The first record's partition key: the aggregate is routed by it.
    route_partition_key: String,
    /// The first record's explicit hash key, routed by when present.
    route_explicit_hash_key: Option<HashKey>,
    /// The first record's data, sent as is when it stays alone.
    first_data: Bytes,
    /// Seeds the key hashes (a fast hasher, randomly seeded per aggregator).
    hasher: RandomState,
    /// The partition keys in the table, to deduplicate them; each key is hashed once.
    partition_keys: HashTable<KeyEntry>,
    /// Number of entries of `partition_keys`, readable while a probe of it is held.
    key_count: usize,
    /// Explicit hash key -> index in the table, to deduplicate them.
    explicit_hash_keys: HashMap<HashKey, u64, RandomState>,
    /// Encoded field-1 entries, in index order.
    partition_key_table: Vec<u8>,
    /// Encoded field-2 entries, in index order.
    explicit_hash_key_table: Vec<u8>,
    /// Where the records (field 3) start in `out`: they are encoded there as they are
    /// accepted, after a gap that `finish` fills from its end with the magic and the key
    /// tables (whose size is only known then), so each payload is copied once.
    records_start: usize,
    /// The gap left before the records of the next aggregate: the last tables' size and a
    /// quarter more (the records are moved only if the tables outgrow it).
    gap: usize,
    /// Exact protobuf size of everything accepted, the pending first record included.
    body_len: usize,
    /// Output arena: each aggregate is written here and split off, so the allocation is
    /// reused once the aggregates handed out before have been dropped.
    out: BytesMut,
}

/// The smallest gap left for the magic and the tables.
const MIN_GAP: usize = 64;

/// A partition key of the table: where its bytes are in `partition_key_table`, its index.
#[derive(Debug, Clone, Copy)]
struct KeyEntry {
    start: u32,
    len: u32,
    /// Its index in the table (below the record count, which is at most `u32::MAX`).
    index: u32,
}

/// The fields of an accepted record's `Record` message, its data aside.
struct RecordFields {
    partition_key_index: u32,
    explicit_hash_key_index: Option<u32>,
    record_len: u32,
}

impl Aggregator {
    /// A builder with the KPL's defaults.
    pub fn builder() -> AggregatorBuilder {
        AggregatorBuilder::default()
    }

    /// User records accepted since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no user record is waiting.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The configured size limit.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Exact length of the data [`finish`](Self::finish) would return now: 0 when empty,
    /// the raw data's length for a single record, else magic + protobuf + MD5.
    pub fn encoded_size(&self) -> usize {
        match self.count {
            0 => 0,
            1 => self.first_data.len(),
            _ => aggregate_size(self.body_len),
        }
    }

    /// Exact [`KinesisRecord::size`] (data plus partition key) that
    /// [`finish`](Self::finish) would return now; 0 when empty.
    pub fn record_size(&self) -> usize {
        match self.count {
            0 => 0,
            _ => self.encoded_size() + self.route_partition_key.len(),
        }
    }

    /// Accepts `record` if the aggregate stays within its limits, else hands it back.
    ///
    /// An empty aggregator accepts any user record. A full one returns `Err(record)`
    /// untouched: [`finish`](Self::finish) the aggregate and add the record again.
    pub fn try_add(&mut self, record: UserRecord) -> Result<(), UserRecord> {
        if self.count == 0 {
            self.add_first(record);
            Ok(())
        } else if self.try_add_ref(&record) {
            Ok(())
        } else {
            Err(record)
        }
    }

    /// Like [`try_add`](Self::try_add), for a record the caller keeps (to send it again or
    /// hand it back later): its partition key is copied into the aggregate's key table
    /// and its data shared, so the record is not cloned. Returns whether it was accepted.
    #[inline]
    pub fn try_add_ref(&mut self, record: &UserRecord) -> bool {
        if self.count == 0 {
            self.add_first(record.clone());
            return true;
        }
        match self.accept(record) {
            Some(fields) => {
                self.push_record(fields, record.data());
                self.count += 1;
                true
            }
            None => false,
        }
    }

    /// Adds `record`'s keys to the tables and accounts for its size if it fits in this
    /// non-empty aggregate; the caller then pushes its data with [`Self::push_record`].
    ///
    /// The partition key table is probed once: the probe's vacant slot is kept while the
    /// size is checked, and filled only if the record is accepted.
    #[inline(always)]
    fn accept(&mut self, record: &UserRecord) -> Option<RecordFields> {
        if self.count as u64 >= self.max_count {
            return None;
        }
        if self.first_pending {
            // The held record alone (an empty aggregator takes any) may already be too
            // big to aggregate: then nothing joins it and it goes out raw.
            if !fits(self.body_len, self.max_size, &self.route_partition_key) {
                return None;
            }
            self.encode_pending_first();
        }
        self.place(
            record.partition_key(),
            record.explicit_hash_key(),
            record.data().len(),
        )
    }

    /// Adds a record's keys to the tables and accounts for its size if it fits.
    #[inline(always)]
    fn place(
        &mut self,
        partition_key: &str,
        explicit_hash_key: Option<HashKey>,
        data_len: usize,
    ) -> Option<RecordFields> {
        let key = partition_key.as_bytes();
        let hash = self.hasher.hash_one(key);
        let (hasher, table) = (&self.hasher, &self.partition_key_table);
        let slot = self.partition_keys.entry(
            hash,
            |e| &table[e.start as usize..(e.start + e.len) as usize] == key,
            |e| hasher.hash_one(&table[e.start as usize..(e.start + e.len) as usize]),
        );
        let mut added = 0;
        let partition_key_index = match &slot {
            hash_table::Entry::Occupied(e) => e.get().index,
            hash_table::Entry::Vacant(_) => {
                added += delimited_len(key.len());
                // Below the record count, at most u32::MAX.
                self.key_count as u32
            }
        };
        let mut record_len =
            varint_field_len(u64::from(partition_key_index)) + delimited_len(data_len);
        let mut new_explicit_hash_key = None;
        let explicit_hash_key_index = match explicit_hash_key {
            None => None,
            Some(h) => {
                let index = match self.explicit_hash_keys.get(&h) {
                    Some(&i) => i,
                    None => {
                        let text = h.to_string();
                        added += delimited_len(text.len());
                        let index = self.explicit_hash_keys.len() as u64;
                        new_explicit_hash_key = Some((h, text, index));
                        index
                    }
                };
                record_len += varint_field_len(index);
                Some(index as u32)
            }
        };
        added += delimited_len(record_len);
        if !fits(
            self.body_len + added,
            self.max_size,
            &self.route_partition_key,
        ) {
            return None;
        }
        if let hash_table::Entry::Vacant(slot) = slot {
            // Within MAX_RECORD_SIZE (checked above), so it fits in a u32.
            let start =
                push_table_entry(&mut self.partition_key_table, KEY_PARTITION_KEY_TABLE, key);
            slot.insert(KeyEntry {
                start: start as u32,
                len: key.len() as u32,
                index: partition_key_index,
            });
            self.key_count += 1;
        }
        if let Some((h, text, index)) = new_explicit_hash_key {
            push_table_entry(
                &mut self.explicit_hash_key_table,
                KEY_EXPLICIT_HASH_KEY_TABLE,
                text.as_bytes(),
            );
            self.explicit_hash_keys.insert(h, index);
        }
        self.body_len += added;
        Some(RecordFields {
            partition_key_index,
            explicit_hash_key_index,
            record_len: record_len as u32,
        })
    }

    /// Encodes an accepted record (see [`Self::accept`]) after the others in the arena.
    #[inline(always)]
    fn push_record(&mut self, fields: RecordFields, data: &[u8]) {
        let mut header = [0u8; 32];
        header[0] = KEY_RECORDS;
        let mut at = put_varint(&mut header, 1, u64::from(fields.record_len));
        header[at] = KEY_PARTITION_KEY_INDEX;
        at = put_varint(&mut header, at + 1, u64::from(fields.partition_key_index));
        if let Some(i) = fields.explicit_hash_key_index {
            header[at] = KEY_EXPLICIT_HASH_KEY_INDEX;
            at = put_varint(&mut header, at + 1, u64::from(i));
        }
        header[at] = KEY_DATA;
        at = put_varint(&mut header, at + 1, data.len() as u64);
        self.out.extend_from_slice(&header[..at]);
        self.out.extend_from_slice(data);
    }

    fn add_first(&mut self, record: UserRecord) {
        let (partition_key, explicit_hash_key, data) = record.into_parts();
        let mut body = delimited_len(partition_key.len());
        let mut record_len = varint_field_len(0) + delimited_len(data.len());
        if let Some(h) = explicit_hash_key {
            body += delimited_len(decimal_len(h));
            record_len += varint_field_len(0);
        }
        body += delimited_len(record_len);
        self.body_len = body;
        self.route_partition_key = partition_key;
        self.route_explicit_hash_key = explicit_hash_key;
        self.first_data = data;
        self.first_pending = true;
        self.count = 1;
    }

    /// Encodes the held first record, now that the aggregate will hold more than one:
    /// sets up the arena (the gap, then the records) and writes the record there.
    fn encode_pending_first(&mut self) {
        self.first_pending = false;
        let body_len = std::mem::take(&mut self.body_len);
        let key = std::mem::take(&mut self.route_partition_key);
        let fields = self
            .place(&key, self.route_explicit_hash_key, self.first_data.len())
            .expect("a lone record fits");
        debug_assert_eq!(self.body_len, body_len);
        self.route_partition_key = key;
        self.out.clear();
        self.out.reserve(self.gap + self.max_size);
        self.out.resize(self.gap, 0);
        self.records_start = self.gap;
        let data = std::mem::take(&mut self.first_data);
        self.push_record(fields, &data);
        self.first_data = data;
    }

    /// Takes what was accepted as one Kinesis record and empties the aggregator (keeping
    /// its buffers' capacity). `None` when empty.
    pub fn finish(&mut self) -> Option<KinesisRecord> {
        let out = match self.count {
            0 => return None,
            1 => KinesisRecord {
                partition_key: std::mem::take(&mut self.route_partition_key),
                explicit_hash_key: self.route_explicit_hash_key,
                data: std::mem::take(&mut self.first_data),
                user_records: 1,
            },
            n => {
                debug_assert!(!self.first_pending);
                let total = aggregate_size(self.body_len);
                let data = self.encode(total);
                KinesisRecord {
                    partition_key: std::mem::take(&mut self.route_partition_key),
                    explicit_hash_key: self.route_explicit_hash_key,
                    data,
                    user_records: n,
                }
            }
        };
        self.clear();
        Some(out)
    }

    /// Writes magic, protobuf and MD5 (`total` bytes) into the arena and splits them off.
    fn encode(&mut self, total: usize) -> Bytes {
        let tables =
            MAGIC.len() + self.partition_key_table.len() + self.explicit_hash_key_table.len();
        let start = match self.records_start.checked_sub(tables) {
            Some(start) => start,
            None => {
                // The tables outgrew the gap: move the records up to make room.
                let extra = tables - self.records_start;
                let end = self.out.len();
                self.out.resize(end + extra, 0);
                self.out.copy_within(self.records_start..end, tables);
                self.records_start = tables;
                0
            }
        };
        let pk_end = start + MAGIC.len() + self.partition_key_table.len();
        self.out[start..start + MAGIC.len()].copy_from_slice(&MAGIC);
        self.out[start + MAGIC.len()..pk_end].copy_from_slice(&self.partition_key_table);
        self.out[pk_end..self.records_start].copy_from_slice(&self.explicit_hash_key_table);
        let digest = Md5::digest(&self.out[start + MAGIC.len()..]);
        self.out.extend_from_slice(&digest);
        self.gap = (tables + tables / 4).clamp(MIN_GAP, self.max_size);
        let mut whole = self.out.split();
        whole.advance(start);
        debug_assert_eq!(whole.len(), total);
        whole.freeze()
    }

    fn clear(&mut self) {
        self.count = 0;
        self.first_pending = false;
        self.route_partition_key.clear();
        self.route_explicit_hash_key = None;
        self.first_data = Bytes::new();
        self.partition_keys.clear();
        self.key_count = 0;
        self.explicit_hash_keys.clear();
        self.partition_key_table.clear();
        self.explicit_hash_key_table.clear();
        self.out.clear();
        self.records_start = 0;
        self.body_len = 0;
    }
}

/// Size of an aggregate whose protobuf body is `body_len` bytes: magic, body, digest.
fn aggregate_size(body_len: usize) -> usize {
    MAGIC.len() + body_len + DIGEST_LEN
}

/// Whether an aggregate whose protobuf body is `body_len` bytes stays within `max_size`, and
/// within the record size limit once sent with `route_partition_key`.
fn fits(body_len: usize, max_size: usize, route_partition_key: &str) -> bool {
    let total = aggregate_size(body_len);
    total <= max_size && total + route_partition_key.len() <= MAX_RECORD_SIZE
}

/// Appends a length-delimited table entry (`tag`, length, `bytes`) to `table`; returns
/// where `bytes` start in it.
fn push_table_entry(table: &mut Vec<u8>, tag: u8, bytes: &[u8]) -> usize {
    table.push(tag);
    match u8::try_from(bytes.len()) {
        Ok(len) if len < 0x80 => table.push(len),
        _ => encode_varint(bytes.len() as u64, table),
    }
    let start = table.len();
    table.extend_from_slice(bytes);
    start
}

/// Number of decimal digits of a hash key.
fn decimal_len(h: HashKey) -> usize {
    let mut v = h.0;
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message;

    fn rec(pk: &str, data: &[u8]) -> UserRecord {
        UserRecord::new(pk, data.to_vec()).unwrap()
    }

    #[test]
    fn defaults_are_the_kpls() {
        let b = AggregatorBuilder::default();
        assert_eq!(b.max_size, 51_200);
        assert_eq!(b.max_count, 4_294_967_295);
        assert_eq!(Aggregator::builder().build().unwrap().max_size(), 51_200);
    }

    #[test]
    fn settings_out_of_range_are_typed_errors() {
        for size in [0, 63, MAX_RECORD_SIZE + 1] {
            assert!(matches!(
                Aggregator::builder().with_max_size(size).build(),
                Err(Error::InvalidConfig {
                    setting: "max_size",
                    ..
                })
            ));
        }
        for count in [0, u64::from(u32::MAX) + 1] {
            assert!(matches!(
                Aggregator::builder().with_max_count(count).build(),
                Err(Error::InvalidConfig {
                    setting: "max_count",
                    ..
                })
            ));
        }
    }

    #[test]
    fn adding_by_reference_builds_the_same_aggregates() {
        let records: Vec<UserRecord> = (0..300)
            .map(|i| {
                let r = rec(&format!("k{}", i % 7), &vec![i as u8; i % 50]);
                if i % 5 == 0 {
                    r.with_explicit_hash_key(HashKey(i as u128 * 1_000_003))
                } else {
                    r
                }
            })
            .collect();
        let build = |by_ref: bool| {
            let mut a = Aggregator::builder().with_max_size(1_000).build().unwrap();
            let mut out = Vec::new();
            for r in &records {
                let added = if by_ref {
                    a.try_add_ref(r)
                } else {
                    a.try_add(r.clone()).is_ok()
                };
                if !added {
                    out.push(a.finish().unwrap());
                    assert!(a.try_add_ref(r), "an empty aggregator takes any record");
                }
            }
            out.extend(a.finish());
            out
        };
        let (owned, by_ref) = (build(false), build(true));
        assert!(owned.len() > 5, "several aggregates: {}", owned.len());
        assert_eq!(owned, by_ref);
    }

    #[test]
    fn a_record_too_big_to_aggregate_goes_out_alone() {
        let mut a = Aggregator::builder().with_max_size(100).build().unwrap();
        let big = rec("k", &[1; 200]);
        a.try_add(big.clone()).unwrap();
        assert_eq!(a.try_add(rec("k", b"x")), Err(rec("k", b"x")));
        assert!(!a.try_add_ref(&rec("k", b"x")));
        let out = a.finish().unwrap();
        assert_eq!((out.user_records, out.data), (1, big.data().clone()));
        // The aggregator is as new afterwards.
        a.try_add(rec("a", b"1")).unwrap();
        a.try_add(rec("b", b"2")).unwrap();
        let out = a.finish().unwrap();
        let d = crate::deaggregate(&out.partition_key, out.data).unwrap();
        assert_eq!(d.records.len(), 2);
    }

    #[test]
    fn tables_that_outgrow_or_undershoot_the_gap_encode_alike() {
        // Aggregates whose key tables grow and shrink from one to the next, so that the
        // gap left before the records is too small for some and too big for others.
        let mut a = Aggregator::builder().build().unwrap();
        for (round, keys) in [1usize, 40, 2, 300, 5, 300, 1].into_iter().enumerate() {
            let records: Vec<UserRecord> = (0..300)
                .map(|i| rec(&format!("key-{round}-{}", i % keys), &[round as u8; 10]))
                .collect();
            for r in &records {
                assert!(a.try_add_ref(r));
            }
            let out = a.finish().unwrap();
            let mut reference = Aggregator::builder().build().unwrap();
            for r in &records {
                reference.try_add(r.clone()).unwrap();
            }
            assert_eq!(out, reference.finish().unwrap(), "round {round}");
            let d = crate::deaggregate(&out.partition_key, out.data).unwrap();
            let got: Vec<(&str, &[u8])> = d
                .records
                .iter()
                .map(|r| (r.partition_key.as_str(), &r.data[..]))
                .collect();
            let want: Vec<(&str, &[u8])> = records
                .iter()
                .map(|r| (r.partition_key(), &r.data()[..]))
                .collect();
            assert_eq!(got, want, "round {round}");
        }
    }

    #[test]
    fn a_lone_record_goes_out_raw() {
        let mut a = Aggregator::builder().build().unwrap();
        assert_eq!(a.finish(), None);
        let r = rec("pk", b"hello").with_explicit_hash_key(HashKey(5));
        a.try_add(r).unwrap();
        assert_eq!(a.encoded_size(), 5);
        assert_eq!(a.record_size(), 7);
        let out = a.finish().unwrap();
        assert_eq!(out.data, Bytes::from_static(b"hello"));
        assert_eq!(out.partition_key, "pk");
        assert_eq!(out.explicit_hash_key, Some(HashKey(5)));
        assert!(!out.is_aggregated());
        assert!(a.is_empty());
    }

    #[test]
    fn encoding_equals_prost_and_size_is_exact() {
        let mut a = Aggregator::builder().build().unwrap();
        let input = [
            rec("a", b"1"),
            rec("b", b""),
            rec("a", b"333").with_explicit_hash_key(HashKey(12345)),
            rec("c", &[7u8; 300]).with_explicit_hash_key(HashKey::MAX),
            rec("b", b"5").with_explicit_hash_key(HashKey(12345)),
        ];
        for r in input.iter().cloned() {
            a.try_add(r).unwrap();
        }
        let predicted = a.encoded_size();
        let out = a.finish().unwrap();
        assert_eq!(out.data.len(), predicted);
        assert_eq!(out.user_records, 5);
        assert_eq!(out.partition_key, "a");
        assert_eq!(out.explicit_hash_key, None);

        let expected = proto::AggregatedRecord {
            partition_key_table: vec!["a".into(), "b".into(), "c".into()],
            explicit_hash_key_table: vec!["12345".into(), HashKey::MAX.to_string()],
            records: vec![
                prec(0, None, b"1"),
                prec(1, None, b""),
                prec(0, Some(0), b"333"),
                prec(2, Some(1), &[7u8; 300]),
                prec(1, Some(0), b"5"),
            ],
        }
        .encode_to_vec();
        assert_eq!(&out.data[..4], &MAGIC);
        assert_eq!(&out.data[4..out.data.len() - 16], &expected[..]);
        let digest: [u8; 16] = Md5::digest(&expected).into();
        assert_eq!(&out.data[out.data.len() - 16..], &digest);
    }

    fn prec(pk: u64, ehk: Option<u64>, data: &[u8]) -> proto::Record {
        proto::Record {
            partition_key_index: pk,
            explicit_hash_key_index: ehk,
            data: Bytes::copy_from_slice(data),
            tags: vec![],
        }
    }

    #[test]
    fn never_exceeds_max_size_and_hands_back_what_does_not_fit() {
        for max in [64, 100, 1000, 4096] {
            let mut a = Aggregator::builder().with_max_size(max).build().unwrap();
            let mut delivered = 0;
            let mut seen = 0;
            for i in 0..2000usize {
                let r = rec(&format!("k{}", i % 13), &vec![1u8; i % 97]);
                seen += 1;
                if let Err(back) = a.try_add(r.clone()) {
                    assert_eq!(back, r, "handed back untouched");
                    let out = a.finish().unwrap();
                    assert!(out.user_records == 1 || out.data.len() <= max);
                    delivered += out.user_records;
                    a.try_add(back).unwrap();
                }
                assert!(a.len() <= 1 || a.encoded_size() <= max);
            }
            delivered += a.finish().map_or(0, |o| o.user_records);
            assert_eq!(delivered, seen);
        }
    }

    #[test]
    fn max_count_caps_records() {
        let mut a = Aggregator::builder().with_max_count(3).build().unwrap();
        for _ in 0..3 {
            a.try_add(rec("k", b"x")).unwrap();
        }
        assert!(a.try_add(rec("k", b"x")).is_err());
        assert_eq!(a.finish().unwrap().user_records, 3);
    }

    #[test]
    fn oversize_single_record_is_accepted_alone() {
        let mut a = Aggregator::builder().with_max_size(64).build().unwrap();
        a.try_add(rec("k", &[0u8; 1000])).unwrap();
        assert!(a.try_add(rec("k", b"x")).is_err());
        let out = a.finish().unwrap();
        assert_eq!(out.data.len(), 1000);
        assert_eq!(out.user_records, 1);
    }

    #[test]
    fn aggregate_plus_partition_key_stays_within_a_kinesis_record() {
        let mut a = Aggregator::builder()
            .with_max_size(MAX_RECORD_SIZE)
            .build()
            .unwrap();
        let pk = "p".repeat(256);
        a.try_add(rec(&pk, &vec![0u8; 600_000])).unwrap();
        let second = rec(&pk, &vec![0u8; MAX_RECORD_SIZE - 600_000 - 300]);
        // Fits within max_size on its own terms, but not with the 256-byte partition key.
        assert!(a.try_add(second).is_err());
        a.try_add(rec(&pk, &vec![0u8; 100_000])).unwrap();
        let out = a.finish().unwrap();
        assert!(out.size() <= MAX_RECORD_SIZE);
    }

    #[test]
    fn decimal_len_counts_digits() {
        for v in [0u128, 9, 10, 99, 100, 12345, u128::MAX] {
            assert_eq!(decimal_len(HashKey(v)), v.to_string().len());
        }
    }
}
