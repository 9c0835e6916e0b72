//! Positions in a shard: [`SequenceNumber`]s, and the [`Checkpoint`]s the lease table
//! keeps (a record, or one of the KCL's sentinels).
//!
//! ```text
//!  checkpoint attribute (S)        + checkpointSubSequenceNumber (N)   Checkpoint
//!  "TRIM_HORIZON" / "LATEST" / "AT_TIMESTAMP"   (0) ──────────────────▶ TrimHorizon / Latest / AtTimestamp
//!  decimal sequence number           sub-sequence ─────────────────────▶ Sequence { sequence_number, sub }
//!  "SHARD_END"                       (0) ──────────────────────────────▶ ShardEnd
//!  covers(seq, sub): at or before the checkpoint (sub-sequence aware) ─▶ not delivered again
//! ```

use std::cmp::Ordering;
use std::fmt;

/// The sentinel stored in `checkpoint` before any record was processed, reading from the
/// oldest record.
pub const TRIM_HORIZON: &str = "TRIM_HORIZON";
/// The sentinel for "start at the tip of the shard".
pub const LATEST: &str = "LATEST";
/// The sentinel for "start at the configured timestamp".
pub const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
/// The sentinel for "every record of this (closed) shard was processed".
pub const SHARD_END: &str = "SHARD_END";

/// A Kinesis sequence number: a decimal string of up to 128 bits, ordered numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Wraps a sequence number as Kinesis returned it.
    ///
    /// Returns `None` unless `s` is a non-empty string of ASCII digits.
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| Self(s.to_owned()))
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without leading zeros, for numeric comparison.
    fn significant(&self) -> &str {
        let t = self.0.trim_start_matches('0');
        if t.is_empty() {
            "0"
        } else {
            t
        }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position within a shard: a record (sequence number plus sub-sequence number within a
/// KPL aggregate), or one of the KCL's sentinels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Checkpoint {
    /// Nothing processed yet; start at the oldest record.
    TrimHorizon,
    /// Nothing processed yet; start at the tip.
    Latest,
    /// Nothing processed yet; start at the configured timestamp.
    AtTimestamp,
    /// Every record up to and including this user record was processed.
    Sequence {
        /// The Kinesis record.
        sequence_number: SequenceNumber,
        /// The user record within it (0 for a plain record).
        sub_sequence_number: u64,
    },
    /// The shard is closed and every record in it was processed.
    ShardEnd,
}

impl Checkpoint {
    /// A checkpoint at this record.
    ///
    /// Returns `None` when `sequence_number` is not a decimal number.
    pub fn at(sequence_number: &str, sub_sequence_number: u64) -> Option<Self> {
        Some(Checkpoint::Sequence {
            sequence_number: SequenceNumber::parse(sequence_number)?,
            sub_sequence_number,
        })
    }

    /// The `checkpoint` attribute's text.
    pub fn as_attribute(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => TRIM_HORIZON,
            Checkpoint::Latest => LATEST,
            Checkpoint::AtTimestamp => AT_TIMESTAMP,
            Checkpoint::ShardEnd => SHARD_END,
            Checkpoint::Sequence {
                sequence_number, ..
            } => sequence_number.as_str(),
        }
    }

    /// The `checkpointSubSequenceNumber` attribute (0 for sentinels, as the Java KCL writes).
    pub fn sub_sequence_number(&self) -> u64 {
        match self {
            Checkpoint::Sequence {
                sub_sequence_number,
                ..
            } => *sub_sequence_number,
            _ => 0,
        }
    }

    /// Reads the two attributes back.
    ///
    /// Returns `None` for text that is neither a sentinel nor a decimal number.
    pub fn from_attributes(checkpoint: &str, sub_sequence_number: u64) -> Option<Self> {
        Some(match checkpoint {
            TRIM_HORIZON => Checkpoint::TrimHorizon,
            LATEST => Checkpoint::Latest,
            AT_TIMESTAMP => Checkpoint::AtTimestamp,
            SHARD_END => Checkpoint::ShardEnd,
            other => Checkpoint::at(other, sub_sequence_number)?,
        })
    }

    /// Whether this is the end of a closed shard.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }

    /// Whether processing has got past the initial position (a record or the shard end).
    pub fn has_progressed(&self) -> bool {
        matches!(self, Checkpoint::Sequence { .. } | Checkpoint::ShardEnd)
    }

    /// Whether the user record (`sequence_number`, `sub_sequence_number`) is covered by this
    /// checkpoint, that is, it must not be handed to a processor again.
    pub fn covers(&self, sequence_number: &SequenceNumber, sub_sequence_number: u64) -> bool {
        match self {
            Checkpoint::ShardEnd => true,
            Checkpoint::Sequence {
                sequence_number: s,
                sub_sequence_number: sub,
            } => match sequence_number.cmp(s) {
                Ordering::Less => true,
                Ordering::Equal => sub_sequence_number <= *sub,
                Ordering::Greater => false,
            },
            _ => false,
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number,
            } => write!(f, "{sequence_number}/{sub_sequence_number}"),
            other => f.write_str(other.as_attribute()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn sequence_numbers_order_numerically() {
        assert!(seq("9") < seq("10"));
        assert!(seq("0010") == seq("10").max(seq("010")) || seq("0010").cmp(&seq("10")).is_eq());
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("49590338271490256608559692538361571095921575989136588897")
        );
        assert!(SequenceNumber::parse("12a").is_none());
        assert!(SequenceNumber::parse("").is_none());
    }

    #[test]
    fn checkpoints_round_trip_through_attributes() {
        for cp in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp,
            Checkpoint::ShardEnd,
            Checkpoint::at("123456", 7).unwrap(),
        ] {
            let back = Checkpoint::from_attributes(cp.as_attribute(), cp.sub_sequence_number());
            assert_eq!(back, Some(cp));
        }
        assert_eq!(Checkpoint::from_attributes("bogus", 0), None);
    }

    #[test]
    fn covers_is_sub_sequence_aware() {
        let cp = Checkpoint::at("100", 2).unwrap();
        assert!(cp.covers(&seq("99"), 9));
        assert!(cp.covers(&seq("100"), 0));
        assert!(cp.covers(&seq("100"), 2));
        assert!(!cp.covers(&seq("100"), 3));
        assert!(!cp.covers(&seq("101"), 0));
        assert!(!Checkpoint::TrimHorizon.covers(&seq("1"), 0));
        assert!(Checkpoint::ShardEnd.covers(&seq("1"), 0));
    }
}
