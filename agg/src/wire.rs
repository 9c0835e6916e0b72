//! A single-purpose protobuf reader for [`proto::AggregatedRecord`](crate::proto::AggregatedRecord),
//! used by the deaggregator instead of decoding into the prost structs.
//!
//! It accepts exactly what prost accepts for this schema: fields in any order and repeated
//! or not, the last value of a singular field winning; unknown fields skipped by wire type
//! (groups included, with prost's recursion limit of 100); strings checked to be UTF-8
//! (the tables, and the key and value of every tag); varints of at most 10 bytes with no
//! bit past the 64th; every length checked against what is left of its enclosing message.
//! It never panics: all reads are bounds-checked.
//!
//! Where prost would build a `String` per table entry and a `Vec<Record>`, this reader
//! hands out borrowed `&str` table entries and walks the records in place.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use crate::key::PartitionKey;

/// Prost's limit on nested messages and groups.
const RECURSION_LIMIT: u32 = 100;

/// Wire types (the low three bits of a field key).
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Why the protobuf message does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError(&'static str);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

type Result<T> = std::result::Result<T, WireError>;

/// A cursor over one message's bytes.
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn has_remaining(&self) -> bool {
        self.pos < self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    fn varint(&mut self) -> Result<u64> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            Some(_) => self.varint_slow(),
            None => Err(WireError("invalid varint: buffer ends")),
        }
    }

    #[cold]
    fn varint_slow(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos + i) else {
                return Err(WireError("invalid varint: buffer ends"));
            };
            value |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                // The tenth byte may only carry the 64th bit.
                if i == 9 && b >= 0x02 {
                    return Err(WireError("invalid varint: overflows 64 bits"));
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(WireError("invalid varint: longer than 10 bytes"))
    }

    /// A field key: field number (at least 1) and wire type.
    #[inline]
    fn key(&mut self) -> Result<(u32, u8)> {
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(WireError("invalid key value"));
        }
        let wire_type = (key & 7) as u8;
        if wire_type > FIXED32 {
            return Err(WireError("invalid wire type"));
        }
        let field = (key as u32) >> 3;
        if field == 0 {
            return Err(WireError("invalid field number 0"));
        }
        Ok((field, wire_type))
    }

    fn advance(&mut self, len: u64) -> Result<()> {
        if len > self.remaining() as u64 {
            return Err(WireError("buffer underflow"));
        }
        self.pos += len as usize;
        Ok(())
    }

    /// The range (within `buf`) of a length-delimited value.
    #[inline]
    fn delimited(&mut self) -> Result<(usize, usize)> {
        let len = self.varint()?;
        let start = self.pos;
        self.advance(len)?;
        Ok((start, self.pos))
    }

    fn str(&mut self) -> Result<&'a str> {
        let (start, end) = self.delimited()?;
        std::str::from_utf8(&self.buf[start..end])
            .map_err(|_| WireError("invalid string value: data is not UTF-8 encoded"))
    }

    /// Skips an unknown field, as prost's `skip_field` does (`depth` is what is left of
    /// the recursion limit).
    fn skip(&mut self, wire_type: u8, field: u32, depth: u32) -> Result<()> {
        if depth == 0 {
            return Err(WireError("recursion limit reached"));
        }
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.advance(8),
            LEN => self.delimited().map(drop),
            START_GROUP => loop {
                let (inner, inner_type) = self.key()?;
                if inner_type == END_GROUP {
                    if inner != field {
                        return Err(WireError("unexpected end group tag"));
                    }
                    return Ok(());
                }
                self.skip(inner_type, inner, depth - 1)?;
            },
            END_GROUP => Err(WireError("unexpected end group tag")),
            _ => self.advance(4), // FIXED32; key() admits no other wire type
        }
    }
}

fn expect(wire_type: u8, expected: u8) -> Result<()> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(WireError("invalid wire type for a known field"))
    }
}

/// The tables of an `AggregatedRecord` and how many records it holds; the records
/// themselves are only delimited, not yet checked (see [`records`]).
#[derive(Debug)]
pub(crate) struct Tables<'a> {
    /// `partition_key_table`, in order, sharing the body's buffer.
    pub(crate) partition_keys: KeyTable,
    /// `explicit_hash_key_table`, in order.
    pub(crate) explicit_hash_keys: Vec<&'a str>,
    /// Number of `records` entries.
    pub(crate) records: usize,
}

/// Reads the top level of an `AggregatedRecord`.
pub(crate) fn tables(body: &Bytes) -> Result<Tables<'_>> {
    let mut r = Reader::new(body);
    let mut t = Tables {
        partition_keys: KeyTable::default(),
        explicit_hash_keys: Vec::new(),
        records: 0,
    };
    // Partition keys as ranges of `body`, checked as UTF-8 below.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    while r.has_remaining() {
        let (field, wire_type) = r.key()?;
        match field {
            1 => {
                expect(wire_type, LEN)?;
                keys.push(r.delimited()?);
            }
            2 => {
                expect(wire_type, LEN)?;
                t.explicit_hash_keys.push(r.str()?);
            }
            3 => {
                expect(wire_type, LEN)?;
                r.delimited()?;
                t.records += 1;
            }
            _ => r.skip(wire_type, field, RECURSION_LIMIT)?,
        }
    }
    t.partition_keys = KeyTable::new(body, &keys)?;
    Ok(t)
}

/// The partition key table: keys checked as UTF-8, handed out as views of the body.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    /// The table's run of the body (from its first key to its last) when it is UTF-8 as a
    /// whole, the usual case; empty otherwise.
    run: ByteString,
    /// Each key, in table order.
    keys: Vec<TableKey>,
}

/// Where one key of a [`KeyTable`] is.
#[derive(Debug)]
enum TableKey {
    /// The range of the run it occupies, on character boundaries.
    InRun(usize, usize),
    /// Outside the run (or the run is not UTF-8 as a whole): checked on its own.
    Alone(PartitionKey),
}

impl KeyTable {
    /// The ranges `keys` of `body` as a table, or an error if one is not UTF-8.
    ///
    /// The table is normally one contiguous run of short fields: when that whole run is
    /// valid UTF-8, a key that starts and ends on character boundaries of it is valid too,
    /// so one check of the run replaces hundreds of small ones. Any key that does not fit
    /// that case is checked on its own.
    fn new(body: &Bytes, keys: &[(usize, usize)]) -> Result<Self> {
        let invalid = || WireError("invalid string value: data is not UTF-8 encoded");
        let (Some(&(first, _)), Some(&(_, last))) = (keys.first(), keys.last()) else {
            return Ok(KeyTable::default());
        };
        let run = (first <= last)
            .then(|| PartitionKey::run(body.slice(first..last)))
            .flatten()
            .unwrap_or_default();
        let keys = keys
            .iter()
            .map(|&(start, end)| {
                let in_run = (|| {
                    let (a, b) = (start.checked_sub(first)?, end.checked_sub(first)?);
                    run.get(a..b).map(|_| TableKey::InRun(a, b))
                })();
                match in_run {
                    Some(key) => Ok(key),
                    None => PartitionKey::from_utf8(body.slice(start..end))
                        .map(TableKey::Alone)
                        .ok_or_else(invalid),
                }
            })
            .collect::<Result<_>>()?;
        Ok(KeyTable { run, keys })
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Key `index` (below [`KeyTable::len`]) as a string slice.
    pub(crate) fn str(&self, index: usize) -> &str {
        match &self.keys[index] {
            TableKey::InRun(a, b) => &self.run[*a..*b],
            TableKey::Alone(key) => key,
        }
    }

    /// Key `index` (below [`KeyTable::len`]), sharing the body's buffer.
    pub(crate) fn key(&self, index: usize) -> PartitionKey {
        match &self.keys[index] {
            TableKey::InRun(a, b) => PartitionKey::view(&self.run, &self.run[*a..*b]),
            TableKey::Alone(key) => key.clone(),
        }
    }
}

/// One decoded `Record`: its indexes and where its data lies in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordFields {
    pub(crate) partition_key_index: u64,
    pub(crate) explicit_hash_key_index: Option<u64>,
    /// `data`, as a range of the body passed to [`records`].
    pub(crate) data: (usize, usize),
}

/// The records of an `AggregatedRecord` whose top level [`tables`] accepted, in order.
pub(crate) fn records(body: &[u8]) -> Records<'_> {
    Records {
        r: Reader::new(body),
    }
}

/// Iterator of [`records`]: each item is one record, or why it does not parse.
#[derive(Debug)]
pub(crate) struct Records<'a> {
    r: Reader<'a>,
}

impl Iterator for Records<'_> {
    type Item = Result<RecordFields>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = &mut self.r;
        while r.has_remaining() {
            let step = (|| {
                let (field, wire_type) = r.key()?;
                match field {
                    1 | 2 => r.delimited().map(|_| None),
                    3 => {
                        let (start, end) = r.delimited()?;
                        record(r.buf, start, end).map(Some)
                    }
                    _ => r.skip(wire_type, field, RECURSION_LIMIT).map(|_| None),
                }
            })();
            match step {
                Ok(None) => continue,
                Ok(Some(fields)) => return Some(Ok(fields)),
                Err(e) => {
                    r.pos = r.buf.len();
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Decodes the `Record` message at `body[start..end]`.
#[inline]
fn record(body: &[u8], start: usize, end: usize) -> Result<RecordFields> {
    let mut r = Reader::new(&body[..end]);
    r.pos = start;
    let mut out = RecordFields {
        partition_key_index: 0,
        explicit_hash_key_index: None,
        data: (start, start),
    };
    while r.has_remaining() {
        let (field, wire_type) = r.key()?;
        match field {
            1 => {
                expect(wire_type, VARINT)?;
                out.partition_key_index = r.varint()?;
            }
            2 => {
                expect(wire_type, VARINT)?;
                out.explicit_hash_key_index = Some(r.varint()?);
            }
            3 => {
                expect(wire_type, LEN)?;
                out.data = r.delimited()?;
            }
            4 => {
                expect(wire_type, LEN)?;
                let (s, e) = r.delimited()?;
                tag(&body[s..e], RECURSION_LIMIT - 2)?;
            }
            _ => r.skip(wire_type, field, RECURSION_LIMIT - 1)?,
        }
    }
    Ok(out)
}

/// Checks a `Tag` message: its strings are UTF-8, its unknown fields well formed.
fn tag(bytes: &[u8], depth: u32) -> Result<()> {
    let mut r = Reader::new(bytes);
    while r.has_remaining() {
        let (field, wire_type) = r.key()?;
        match field {
            1 | 2 => {
                expect(wire_type, LEN)?;
                r.str()?;
            }
            _ => r.skip(wire_type, field, depth)?,
        }
    }
    Ok(())
}
