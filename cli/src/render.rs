//! How `consume` and `tail` print a user record: a JSON line, the raw payload, or a
//! `--format` template.
//!
//! ```text
//!  KinesisClientRecord + stream, shard, MillisBehindLatest ─▶ Printer ─┬─ Json: one object per line
//!                                                                      ├─ Raw: payload + \n
//!                                                                      └─ Template: --format
//! ```
//!
//! A JSON line is also an input line of `produce --input json` as it is (see
//! `commands::produce`): `partition_key`, `data` / `data_b64` and `explicit_hash_key` make
//! the record again; the rest says where it was read and is ignored there.

use base64::Engine;
use clap::ValueEnum;
use kinesis_consumer::{KinesisClientRecord, PayloadEncoding};

use crate::template::{RecordView, Template};

/// `--output`: how records are printed when no `--format` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One JSON object per line.
    Json,
    /// The data bytes followed by a newline.
    Raw,
}

/// How records are printed: `--output`, or the `--format` template that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Printer {
    /// One JSON object per line (see [`render`]).
    Json,
    /// The payload followed by a newline.
    Raw,
    /// A `--format` template.
    Template(Template),
}

impl Printer {
    /// The printer of `--output` and `--format` (the template wins; clap refuses both).
    pub fn new(output: Output, format: Option<&Template>) -> Printer {
        match (format, output) {
            (Some(t), _) => Printer::Template(t.clone()),
            (None, Output::Json) => Printer::Json,
            (None, Output::Raw) => Printer::Raw,
        }
    }
}

/// The bytes printed for a user record read from `shard_id` of `stream`, in a batch whose
/// `MillisBehindLatest` was `millis_behind_latest`.
///
/// JSON lines carry `stream`, `shard_id`, `sequence_number`, `sub_sequence_number`,
/// `partition_key`, `data_b64`, `data` (when the payload is UTF-8), and when known:
/// `explicit_hash_key` (decimal; records of KPL aggregates that carry one: Kinesis does not
/// return the key a plain record was put with), `approximate_arrival_timestamp` (RFC 3339,
/// UTC, milliseconds), `millis_behind_latest`, `outside_shard_range` and
/// `payload_encoding`.
pub fn render(
    stream: &str,
    shard_id: &str,
    r: &KinesisClientRecord,
    millis_behind_latest: Option<i64>,
    printer: &Printer,
) -> Vec<u8> {
    match printer {
        Printer::Raw => {
            let mut v = Vec::with_capacity(r.data.len() + 1);
            v.extend_from_slice(&r.data);
            v.push(b'\n');
            v
        }
        Printer::Template(t) => t.render(&RecordView {
            stream,
            shard_id,
            sequence_number: &r.sequence_number,
            sub_sequence_number: r.sub_sequence_number,
            partition_key: r.partition_key.as_str(),
            explicit_hash_key: r.explicit_hash_key.map(|h| h.0),
            arrival_millis: r.approximate_arrival_timestamp.and_then(epoch_millis),
            millis_behind_latest,
            data: &r.data,
        }),
        Printer::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("stream".into(), stream.into());
            obj.insert("shard_id".into(), shard_id.into());
            obj.insert("sequence_number".into(), r.sequence_number.clone().into());
            obj.insert("sub_sequence_number".into(), r.sub_sequence_number.into());
            obj.insert("partition_key".into(), r.partition_key.as_str().into());
            if let Some(h) = r.explicit_hash_key {
                obj.insert("explicit_hash_key".into(), h.to_string().into());
            }
            obj.insert(
                "data_b64".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&r.data)
                    .into(),
            );
            if let Ok(text) = std::str::from_utf8(&r.data) {
                obj.insert("data".into(), text.into());
            }
            if let Some(arrival) = r.approximate_arrival_timestamp.and_then(rfc3339_millis) {
                obj.insert("approximate_arrival_timestamp".into(), arrival.into());
            }
            if let Some(ms) = millis_behind_latest {
                obj.insert("millis_behind_latest".into(), ms.into());
            }
            if r.outside_shard_range {
                obj.insert("outside_shard_range".into(), true.into());
            }
            let encoding = match r.payload_encoding {
                PayloadEncoding::Gzip => Some("gzip"),
                PayloadEncoding::Zlib => Some("zlib"),
                PayloadEncoding::NotInflated => Some("not_inflated"),
                _ => None,
            };
            if let Some(encoding) = encoding {
                obj.insert("payload_encoding".into(), encoding.into());
            }
            let mut line = serde_json::Value::Object(obj).to_string().into_bytes();
            line.push(b'\n');
            line
        }
    }
}

/// `t` in milliseconds since the Unix epoch.
fn epoch_millis(t: std::time::SystemTime) -> Option<i64> {
    let millis = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(millis).ok()
}

/// `t` as RFC 3339 in UTC with milliseconds, e.g. `2024-01-02T03:04:05.123Z`.
fn rfc3339_millis(t: std::time::SystemTime) -> Option<String> {
    use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
    DateTime::from_millis(epoch_millis(t)?)
        .fmt(DateTimeFormat::DateTime)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn json_lines_carry_every_field() {
        let mut r = KinesisClientRecord::new("49", 2, "pk", &b"hi"[..]);
        let line = render("s", "shardId-1", &r, None, &Printer::Json);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["stream"], "s");
        assert_eq!(v["shard_id"], "shardId-1");
        assert_eq!(v["sequence_number"], "49");
        assert_eq!(v["sub_sequence_number"], 2);
        assert_eq!(v["partition_key"], "pk");
        assert_eq!(v["data_b64"], "aGk=");
        assert_eq!(v["data"], "hi");
        for unknown in [
            "approximate_arrival_timestamp",
            "millis_behind_latest",
            "explicit_hash_key",
        ] {
            assert!(v.get(unknown).is_none(), "{unknown} only when known");
        }
        let bin = KinesisClientRecord::new("49", 0, "pk", vec![0xff, 0]);
        let v: serde_json::Value =
            serde_json::from_slice(&render("s", "x", &bin, None, &Printer::Json)).unwrap();
        assert!(v.get("data").is_none(), "binary data has no text field");
        assert_eq!(render("s", "x", &r, None, &Printer::Raw), b"hi\n");
        // Metadata, when known.
        r.approximate_arrival_timestamp =
            Some(std::time::UNIX_EPOCH + Duration::from_millis(1_704_164_645_123));
        r.explicit_hash_key = Some(kinesis_agg::HashKey(u128::MAX));
        let v: serde_json::Value =
            serde_json::from_slice(&render("s", "x", &r, Some(250), &Printer::Json)).unwrap();
        assert_eq!(
            v["approximate_arrival_timestamp"],
            "2024-01-02T03:04:05.123Z"
        );
        assert_eq!(v["millis_behind_latest"], 250);
        assert_eq!(
            v["explicit_hash_key"], "340282366920938463463374607431768211455",
            "decimal, as Kinesis writes hash keys (a string: JSON numbers lose digits)"
        );
    }

    #[test]
    fn templates_see_the_same_record() {
        let mut r = KinesisClientRecord::new("49", 2, "pk", &b"hi"[..]);
        r.approximate_arrival_timestamp =
            Some(std::time::UNIX_EPOCH + Duration::from_millis(1_704_164_645_123));
        r.explicit_hash_key = Some(kinesis_agg::HashKey(7));
        let t = Template::parse("%t %p %o %u %k %h %T %l %S %s\\n").unwrap();
        let printer = Printer::new(Output::Raw, Some(&t));
        assert_eq!(
            render("s", "shardId-1", &r, Some(3), &printer),
            b"s shardId-1 49 2 pk 7 1704164645123 3 2 hi\n"
        );
        assert_eq!(Printer::new(Output::Json, None), Printer::Json);
    }
}
