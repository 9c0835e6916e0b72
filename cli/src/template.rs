//! `--format`: a kcat-style template for each record printed by `consume` and `tail`.
//!
//! ```text
//!  "%p %o %k %s\n" ─parse─▶ [Field(Shard), " ", Field(Sequence), " ", Field(Key), " ",
//!                            Field(Payload), "\n"] ─write(record)─▶ bytes on stdout
//! ```
//!
//! | token | what | when unknown |
//! |---|---|---|
//! | `%s` | payload, bytes as they are | |
//! | `%S` | payload size in bytes | |
//! | `%k` | partition key | |
//! | `%K` | partition key length in bytes | |
//! | `%h` | explicit hash key (decimal; records of aggregates that carry one) | empty |
//! | `%T` | approximate arrival time, milliseconds since the Unix epoch | empty |
//! | `%l` | lag: milliseconds behind the latest record (`MillisBehindLatest`) | empty |
//! | `%t` | stream name | |
//! | `%p` | shard id | |
//! | `%o` | sequence number | |
//! | `%u` | sub-sequence number (position in a KPL aggregate, 0 for a plain record) | |
//! | `%%` | `%` | |
//!
//! Escapes: `\n` newline, `\t` tab, `\r` carriage return, `\0` NUL, `\\` backslash. Nothing
//! is added: a template without `\n` prints the records on one line. Anything else after
//! `%` or `\` is refused with the position and what is accepted (exit status 2).

use std::io::Write;

/// One field a template can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// `%s`
    Payload,
    /// `%S`
    PayloadSize,
    /// `%k`
    Key,
    /// `%K`
    KeySize,
    /// `%h`
    ExplicitHashKey,
    /// `%T`
    ArrivalMillis,
    /// `%l`
    Lag,
    /// `%t`
    Stream,
    /// `%p`
    Shard,
    /// `%o`
    Sequence,
    /// `%u`
    SubSequence,
}

/// A part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Bytes printed as they are (escapes resolved).
    Literal(Vec<u8>),
    /// A record's field.
    Field(Field),
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Literals and fields, in order.
    pieces: Vec<Piece>,
}

/// What a template prints a record from.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Shard id.
    pub shard_id: &'a str,
    /// Sequence number.
    pub sequence_number: &'a str,
    /// Sub-sequence number.
    pub sub_sequence_number: u64,
    /// Partition key.
    pub partition_key: &'a str,
    /// Explicit hash key, when known.
    pub explicit_hash_key: Option<u128>,
    /// Approximate arrival time in milliseconds since the Unix epoch, when known.
    pub arrival_millis: Option<i64>,
    /// Milliseconds behind the latest record, when known.
    pub millis_behind_latest: Option<i64>,
    /// The payload.
    pub data: &'a [u8],
}

/// What `%` accepts, for error messages.
const FIELDS: &str = "%s payload, %S payload size, %k key, %K key size, %h explicit hash key, \
                      %T arrival (epoch ms), %l lag (ms), %t stream, %p shard, %o sequence \
                      number, %u sub-sequence number, %% a percent sign";

/// What `\` accepts, for error messages.
const ESCAPES: &str = "\\n newline, \\t tab, \\r carriage return, \\0 NUL, \\\\ backslash";

impl Template {
    /// Parses a template (see the module documentation for the tokens).
    ///
    /// # Errors
    /// An unknown `%` token or `\` escape, or one cut off at the end, with its position
    /// (in characters, from 1) and what is accepted.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal: Vec<u8> = Vec::new();
        let mut chars = text.chars().enumerate();
        while let Some((i, c)) = chars.next() {
            match c {
                '%' => {
                    let field = match chars.next().map(|(_, c)| c) {
                        Some('s') => Field::Payload,
                        Some('S') => Field::PayloadSize,
                        Some('k') => Field::Key,
                        Some('K') => Field::KeySize,
                        Some('h') => Field::ExplicitHashKey,
                        Some('T') => Field::ArrivalMillis,
                        Some('l') => Field::Lag,
                        Some('t') => Field::Stream,
                        Some('p') => Field::Shard,
                        Some('o') => Field::Sequence,
                        Some('u') => Field::SubSequence,
                        Some('%') => {
                            literal.push(b'%');
                            continue;
                        }
                        Some(other) => {
                            return Err(format!(
                                "unknown token %{other} at character {}; accepted: {FIELDS}",
                                i + 1
                            ))
                        }
                        None => {
                            return Err(format!(
                                "a lone % at the end (write %% for a percent sign); accepted: \
                                 {FIELDS}"
                            ))
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                }
                '\\' => {
                    let byte = match chars.next().map(|(_, c)| c) {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('r') => b'\r',
                        Some('0') => 0,
                        Some('\\') => b'\\',
                        Some(other) => {
                            return Err(format!(
                                "unknown escape \\{other} at character {}; accepted: {ESCAPES}",
                                i + 1
                            ))
                        }
                        None => {
                            return Err(format!(
                                "a lone \\ at the end (write \\\\ for a backslash); accepted: \
                                 {ESCAPES}"
                            ))
                        }
                    };
                    literal.push(byte);
                }
                c => {
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if pieces.is_empty() {
            return Err(format!(
                "an empty format prints nothing; e.g. '%k %s\\n'. Accepted: {FIELDS}"
            ));
        }
        Ok(Template { pieces })
    }

    /// The bytes the template makes of `record`.
    pub fn render(&self, record: &RecordView<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(record.data.len() + 64);
        for piece in &self.pieces {
            // Writing to a Vec cannot fail.
            let _ = match piece {
                Piece::Literal(bytes) => out.write_all(bytes),
                Piece::Field(field) => match field {
                    Field::Payload => out.write_all(record.data),
                    Field::PayloadSize => write!(out, "{}", record.data.len()),
                    Field::Key => out.write_all(record.partition_key.as_bytes()),
                    Field::KeySize => write!(out, "{}", record.partition_key.len()),
                    Field::ExplicitHashKey => match record.explicit_hash_key {
                        Some(h) => write!(out, "{h}"),
                        None => Ok(()),
                    },
                    Field::ArrivalMillis => match record.arrival_millis {
                        Some(ms) => write!(out, "{ms}"),
                        None => Ok(()),
                    },
                    Field::Lag => match record.millis_behind_latest {
                        Some(ms) => write!(out, "{ms}"),
                        None => Ok(()),
                    },
                    Field::Stream => out.write_all(record.stream.as_bytes()),
                    Field::Shard => out.write_all(record.shard_id.as_bytes()),
                    Field::Sequence => out.write_all(record.sequence_number.as_bytes()),
                    Field::SubSequence => write!(out, "{}", record.sub_sequence_number),
                },
            };
        }
        out
    }
}

/// Parses `--format` for clap.
///
/// # Errors
/// As [`Template::parse`].
pub fn parse_format(value: &str) -> Result<Template, String> {
    Template::parse(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(data: &[u8]) -> RecordView<'_> {
        RecordView {
            stream: "s",
            shard_id: "shardId-000000000001",
            sequence_number: "4960",
            sub_sequence_number: 3,
            partition_key: "kéy",
            explicit_hash_key: None,
            arrival_millis: None,
            millis_behind_latest: None,
            data,
        }
    }

    #[test]
    fn every_token_and_escape() {
        let t = Template::parse("%t|%p|%o|%u|%k|%K|%S|%s|%h|%T|%l|%%\\t\\r\\0\\\\\\n").unwrap();
        assert_eq!(
            t.render(&view(b"d\xff")),
            b"s|shardId-000000000001|4960|3|k\xc3\xa9y|4|2|d\xff||||%\t\r\0\\\n".to_vec()
        );
        let mut known = view(b"x");
        known.explicit_hash_key = Some(u128::MAX);
        known.arrival_millis = Some(1_704_164_645_123);
        known.millis_behind_latest = Some(0);
        assert_eq!(
            Template::parse("%h %T %l").unwrap().render(&known),
            format!("{} 1704164645123 0", u128::MAX).into_bytes()
        );
        assert_eq!(
            Template::parse("plain é").unwrap().render(&known),
            "plain é".as_bytes()
        );
    }

    #[test]
    fn mistakes_say_where_and_what_is_accepted() {
        let e = Template::parse("%k %x").unwrap_err();
        assert!(
            e.contains("%x") && e.contains("character 4") && e.contains("%s payload"),
            "{e}"
        );
        assert!(Template::parse("%").unwrap_err().contains("%%"));
        let e = Template::parse("a\\q").unwrap_err();
        assert!(e.contains("\\q") && e.contains("\\n newline"), "{e}");
        assert!(Template::parse("\\").unwrap_err().contains("lone"));
        assert!(Template::parse("").unwrap_err().contains("empty"));
    }
}
