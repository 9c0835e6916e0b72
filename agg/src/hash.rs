//! Hash keys: where in the 128-bit key space a record lands.
//!
//! ```text
//!  partition key ──MD5──▶ 16 bytes ──big-endian──▶ HashKey(u128) ──▶ shard whose
//!  ExplicitHashKey "1234…" ──────decimal parse────▶ HashKey(u128)     HashKeyRange holds it
//! ```

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

use crate::error::{excerpt, Error};

/// A position in the Kinesis hash key space, `0 ..= 2^128 - 1`.
///
/// Kinesis sends a record to the shard whose [`HashKeyRange`] holds its hash key: the
/// MD5 of its partition key read as a big-endian unsigned integer, or its explicit hash
/// key when one is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HashKey(pub u128);

impl HashKey {
    /// The lowest hash key, 0.
    pub const MIN: HashKey = HashKey(0);
    /// The highest hash key, 2^128 - 1.
    pub const MAX: HashKey = HashKey(u128::MAX);

    /// The hash key Kinesis computes for a partition key: MD5 of its UTF-8 bytes, read as
    /// a big-endian `u128`.
    pub fn from_partition_key(partition_key: &str) -> HashKey {
        let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
        HashKey(u128::from_be_bytes(digest))
    }

    /// Parses a decimal hash key as Kinesis accepts it for `ExplicitHashKey`
    /// (`0|[1-9][0-9]{0,38}`, at most 2^128 - 1).
    ///
    /// # Errors
    /// [`Error::InvalidHashKey`], naming the input and what is wrong with it.
    pub fn parse_decimal(input: &str) -> Result<HashKey, Error> {
        let invalid = |reason| Error::InvalidHashKey {
            input: excerpt(input),
            reason,
        };
        let bytes = input.as_bytes();
        if bytes.is_empty() {
            return Err(invalid("empty"));
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(invalid(
                "not a decimal number (only digits 0-9 are allowed)",
            ));
        }
        if bytes.len() > 1 && bytes[0] == b'0' {
            return Err(invalid("leading zero"));
        }
        let mut value: u128 = 0;
        for &b in bytes {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u128::from(b - b'0')))
                .ok_or_else(|| invalid("greater than 2^128 - 1"))?;
        }
        Ok(HashKey(value))
    }

    /// The key as a `u128`.
    pub fn value(self) -> u128 {
        self.0
    }
}

impl fmt::Display for HashKey {
    /// Decimal, as Kinesis writes hash keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for HashKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashKey::parse_decimal(s)
    }
}

impl From<u128> for HashKey {
    fn from(v: u128) -> Self {
        HashKey(v)
    }
}

/// An inclusive range of hash keys: the part of the key space a shard owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKeyRange {
    /// First key of the range (inclusive).
    start: HashKey,
    /// Last key of the range (inclusive), so that the whole space fits in one range.
    end: HashKey,
}

impl HashKeyRange {
    /// The whole key space, as owned by a stream's only shard.
    pub const ALL: HashKeyRange = HashKeyRange {
        start: HashKey::MIN,
        end: HashKey::MAX,
    };

    /// A range from `start` to `end`, both inclusive.
    ///
    /// # Errors
    /// [`Error::InvalidHashKeyRange`] when `start > end`.
    pub fn new(start: HashKey, end: HashKey) -> Result<HashKeyRange, Error> {
        if start > end {
            return Err(Error::InvalidHashKeyRange { start, end });
        }
        Ok(HashKeyRange { start, end })
    }

    /// A range from the decimal strings Kinesis returns in a shard's `HashKeyRange`
    /// (`StartingHashKey`, `EndingHashKey`).
    ///
    /// # Errors
    /// [`Error::InvalidHashKey`] for a bound that does not parse, or
    /// [`Error::InvalidHashKeyRange`] when the start lies after the end.
    pub fn parse(starting_hash_key: &str, ending_hash_key: &str) -> Result<HashKeyRange, Error> {
        HashKeyRange::new(
            HashKey::parse_decimal(starting_hash_key)?,
            HashKey::parse_decimal(ending_hash_key)?,
        )
    }

    /// First key of the range.
    pub fn start(&self) -> HashKey {
        self.start
    }

    /// Last key of the range (inclusive).
    pub fn end(&self) -> HashKey {
        self.end
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: HashKey) -> bool {
        self.start <= key && key <= self.end
    }
}

impl fmt::Display for HashKeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_partition_key_is_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(
            HashKey::from_partition_key(""),
            HashKey(0xd41d8cd98f00b204e9800998ecf8427e)
        );
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            HashKey::from_partition_key("a").to_string(),
            u128::from_str_radix("0cc175b9c0f1b6a831c399e269772661", 16)
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn parses_the_extremes() {
        assert_eq!(HashKey::parse_decimal("0").unwrap(), HashKey::MIN);
        assert_eq!(
            HashKey::parse_decimal("340282366920938463463374607431768211455").unwrap(),
            HashKey::MAX
        );
        assert_eq!(
            HashKey::MAX.to_string(),
            "340282366920938463463374607431768211455"
        );
    }

    #[test]
    fn rejects_bad_decimal_naming_the_input() {
        for (input, reason) in [
            ("", "empty"),
            ("-1", "not a decimal number (only digits 0-9 are allowed)"),
            ("+1", "not a decimal number (only digits 0-9 are allowed)"),
            (" 1", "not a decimal number (only digits 0-9 are allowed)"),
            ("1e3", "not a decimal number (only digits 0-9 are allowed)"),
            ("٣", "not a decimal number (only digits 0-9 are allowed)"),
            ("01", "leading zero"),
            (
                "340282366920938463463374607431768211456",
                "greater than 2^128 - 1",
            ),
            (
                "99999999999999999999999999999999999999999",
                "greater than 2^128 - 1",
            ),
        ] {
            match HashKey::parse_decimal(input) {
                Err(Error::InvalidHashKey {
                    input: got,
                    reason: r,
                }) => {
                    assert_eq!(got, input);
                    assert_eq!(r, reason, "for {input:?}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn long_inputs_are_cut_in_errors() {
        let long = "x".repeat(10_000);
        let msg = HashKey::parse_decimal(&long).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn ranges_are_inclusive_and_ordered() {
        let r = HashKeyRange::parse("10", "20").unwrap();
        assert!(r.contains(HashKey(10)) && r.contains(HashKey(20)));
        assert!(!r.contains(HashKey(9)) && !r.contains(HashKey(21)));
        assert!(HashKeyRange::ALL.contains(HashKey::MAX));
        assert_eq!(
            HashKeyRange::parse("20", "10"),
            Err(Error::InvalidHashKeyRange {
                start: HashKey(20),
                end: HashKey(10)
            })
        );
    }
}
