//! The MultiLang protocol's messages: one JSON object per line, told apart by `action`.
//!
//! ```text
//!  host ──stdin──▶ child   initialize { shardId, sequenceNumber, subSequenceNumber }
//!                          processRecords { records: [record { data (base64), partitionKey,
//!                            sequenceNumber, subSequenceNumber, approximateArrivalTimestamp }],
//!                            millisBehindLatest }
//!                          leaseLost | shardEnded | shutdownRequested
//!                          checkpoint { sequenceNumber, subSequenceNumber, error }   (answer)
//!  child ──stdout──▶ host  checkpoint { sequenceNumber (null: all delivered), subSequenceNumber }
//!                          status { responseFor }                       (ends each action)
//!                          anything else: not a message, skipped
//! ```
//!
//! Field names and shapes are the Java MultiLangDaemon's (its `messages` package, written
//! by Jackson: absent values are `null`, not left out, because amazon-kclpy reads them with
//! `json_dict["..."]`). What a child sends is read leniently, as Jackson does: unknown
//! fields are ignored, and a sequence number may come as a string or a number.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use kinesis_consumer::{Checkpoint, KinesisClientRecord};
use serde::Serialize;
use serde_json::Value;

/// A message from the host to a child.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action")]
pub enum HostMessage {
    /// First message: the shard and where processing resumes.
    #[serde(rename = "initialize", rename_all = "camelCase")]
    Initialize {
        /// The shard.
        shard_id: String,
        /// The checkpoint processing resumes after: a sequence number or a sentinel
        /// (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`).
        sequence_number: Option<String>,
        /// Its sub-sequence number.
        sub_sequence_number: Option<u64>,
    },
    /// A batch of records.
    #[serde(rename = "processRecords", rename_all = "camelCase")]
    ProcessRecords {
        /// The records, in shard order.
        records: Vec<RecordMessage>,
        /// How far behind the tip of the shard the batch was, if known.
        millis_behind_latest: Option<i64>,
    },
    /// The lease was lost: no more records, checkpoints fail.
    #[serde(rename = "leaseLost")]
    LeaseLost,
    /// Every record of the shard was delivered; the child should checkpoint.
    #[serde(rename = "shardEnded")]
    ShardEnded,
    /// The host is shutting down; a last chance to checkpoint.
    #[serde(rename = "shutdownRequested")]
    ShutdownRequested,
    /// The answer to a child's checkpoint request.
    #[serde(rename = "checkpoint", rename_all = "camelCase")]
    Checkpoint {
        /// The sequence number asked for (null: the last delivered record).
        sequence_number: Option<String>,
        /// The sub-sequence number asked for.
        sub_sequence_number: Option<u64>,
        /// The simple name of the Java exception the checkpoint would have thrown, or null.
        error: Option<String>,
    },
}

impl HostMessage {
    /// The `action` name, which the child's `status` must name in `responseFor`.
    pub fn action(&self) -> &'static str {
        match self {
            HostMessage::Initialize { .. } => "initialize",
            HostMessage::ProcessRecords { .. } => "processRecords",
            HostMessage::LeaseLost => "leaseLost",
            HostMessage::ShardEnded => "shardEnded",
            HostMessage::ShutdownRequested => "shutdownRequested",
            HostMessage::Checkpoint { .. } => "checkpoint",
        }
    }

    /// `initialize` for a shard resuming after `checkpoint`.
    pub fn initialize(shard_id: &str, checkpoint: &Checkpoint) -> Self {
        HostMessage::Initialize {
            shard_id: shard_id.to_owned(),
            sequence_number: Some(checkpoint.as_attribute().to_owned()),
            sub_sequence_number: Some(checkpoint.sub_sequence_number()),
        }
    }

    /// `processRecords` for a batch.
    pub fn process_records(
        records: &[KinesisClientRecord],
        millis_behind_latest: Option<i64>,
    ) -> Self {
        HostMessage::ProcessRecords {
            records: records.iter().map(RecordMessage::from).collect(),
            millis_behind_latest,
        }
    }

    /// The message as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every map key is a string.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// One record of `processRecords` (the Java `JsonFriendlyRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordMessage {
    /// Always `record`: amazon-kclpy decodes every nested object by its `action`.
    pub action: &'static str,
    /// The payload, base64 (standard alphabet, padded).
    pub data: String,
    /// The partition key.
    pub partition_key: String,
    /// The Kinesis sequence number.
    pub sequence_number: String,
    /// The position within a KPL aggregate (0 for a plain record).
    pub sub_sequence_number: u64,
    /// When Kinesis accepted the record, in milliseconds since 1970.
    pub approximate_arrival_timestamp: Option<i64>,
}

impl From<&KinesisClientRecord> for RecordMessage {
    fn from(r: &KinesisClientRecord) -> Self {
        RecordMessage {
            action: "record",
            data: base64::engine::general_purpose::STANDARD.encode(&r.data),
            partition_key: r.partition_key.as_str().to_owned(),
            sequence_number: r.sequence_number.clone(),
            sub_sequence_number: r.sub_sequence_number,
            approximate_arrival_timestamp: r.approximate_arrival_timestamp.map(epoch_millis),
        }
    }
}

/// Milliseconds since 1970 (negative before it).
fn epoch_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// A message from a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildMessage {
    /// A checkpoint request.
    Checkpoint {
        /// Where: null (or absent) means everything delivered so far.
        sequence_number: Option<String>,
        /// The sub-sequence number, if given.
        sub_sequence_number: Option<u64>,
    },
    /// A checkpoint request whose fields cannot be read (a sub-sequence number that is not
    /// a whole number, ...): answered with an error instead of being dropped, so the child
    /// does not wait for an answer that never comes.
    BadCheckpoint {
        /// What is wrong with it.
        reason: String,
    },
    /// The child finished the action named by `response_for`.
    Status {
        /// The action answered (absent or null is a protocol error).
        response_for: Option<String>,
    },
}

/// What one line of a child's standard output is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildLine {
    /// A protocol message.
    Message(ChildMessage),
    /// Anything else (a library's or the application's own output): skipped.
    Other,
}

/// Reads one line of a child's standard output (surrounding white space ignored).
pub fn parse_child_line(line: &str) -> ChildLine {
    let line = line.trim();
    if !line.starts_with('{') {
        return ChildLine::Other;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return ChildLine::Other;
    };
    match obj.get("action").and_then(Value::as_str) {
        Some("checkpoint") => {
            let seq = match obj.get("sequenceNumber") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(format!("sequenceNumber {other} is not a sequence number")),
            };
            let sub = match obj.get("subSequenceNumber") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("subSequenceNumber {n} is not a whole number ≥ 0")),
                Some(Value::String(s)) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("subSequenceNumber {s:?} is not a whole number ≥ 0")),
                Some(other) => Err(format!("subSequenceNumber {other} is not a whole number")),
            };
            ChildLine::Message(match (seq, sub) {
                (Ok(sequence_number), Ok(sub_sequence_number)) => ChildMessage::Checkpoint {
                    sequence_number,
                    sub_sequence_number,
                },
                (Err(reason), _) | (_, Err(reason)) => ChildMessage::BadCheckpoint { reason },
            })
        }
        Some("status") => ChildLine::Message(ChildMessage::Status {
            response_for: obj
                .get("responseFor")
                .and_then(Value::as_str)
                .map(str::to_owned),
        }),
        _ => ChildLine::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn value(m: &HostMessage) -> Value {
        let line = m.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert!(!line[..line.len() - 1].contains(&b'\n'), "one line");
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn host_messages_have_the_daemons_shape() {
        let init = HostMessage::initialize("shardId-000000000001", &Checkpoint::TrimHorizon);
        assert_eq!(
            value(&init),
            json!({"action": "initialize", "shardId": "shardId-000000000001",
                   "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})
        );
        assert_eq!(init.action(), "initialize");
        let at = Checkpoint::at("4955", 3).unwrap();
        assert_eq!(
            value(&HostMessage::initialize("s", &at))["sequenceNumber"],
            "4955"
        );
        assert_eq!(
            value(&HostMessage::initialize("s", &at))["subSequenceNumber"],
            3
        );

        let mut r = KinesisClientRecord::new("4960", 2, "pk", &b"hello"[..]);
        r.approximate_arrival_timestamp =
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        let batch = HostMessage::process_records(&[r], None);
        assert_eq!(
            value(&batch),
            json!({"action": "processRecords", "millisBehindLatest": null, "records": [
                {"action": "record", "data": "aGVsbG8=", "partitionKey": "pk",
                 "sequenceNumber": "4960", "subSequenceNumber": 2,
                 "approximateArrivalTimestamp": 1_700_000_000_123_i64}]})
        );
        assert_eq!(
            value(&HostMessage::process_records(&[], Some(42))),
            json!({"action": "processRecords", "records": [], "millisBehindLatest": 42})
        );
        for (m, a) in [
            (HostMessage::LeaseLost, "leaseLost"),
            (HostMessage::ShardEnded, "shardEnded"),
            (HostMessage::ShutdownRequested, "shutdownRequested"),
        ] {
            assert_eq!(value(&m), json!({ "action": a }));
            assert_eq!(m.action(), a);
        }
        let answer = HostMessage::Checkpoint {
            sequence_number: None,
            sub_sequence_number: None,
            error: Some("ShutdownException".into()),
        };
        assert_eq!(
            value(&answer),
            json!({"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null,
                   "error": "ShutdownException"})
        );
    }

    #[test]
    fn child_lines_are_read_leniently() {
        use ChildLine::{Message, Other};
        assert_eq!(
            parse_child_line(r#"{"action": "status", "responseFor": "initialize"}"#),
            Message(ChildMessage::Status {
                response_for: Some("initialize".into())
            })
        );
        assert_eq!(
            parse_child_line(r#"  {"action":"status"}  "#),
            Message(ChildMessage::Status { response_for: None })
        );
        // amazon-kclpy: every field, nulls included.
        assert_eq!(
            parse_child_line(
                r#"{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}"#
            ),
            Message(ChildMessage::Checkpoint {
                sequence_number: None,
                sub_sequence_number: None
            })
        );
        // aws-kcl (Node): no subSequenceNumber; a number where a string is expected.
        assert_eq!(
            parse_child_line(r#"{"action":"checkpoint","sequenceNumber":"495"}"#),
            Message(ChildMessage::Checkpoint {
                sequence_number: Some("495".into()),
                sub_sequence_number: None
            })
        );
        assert_eq!(
            parse_child_line(
                r#"{"action":"checkpoint","sequenceNumber":495,"subSequenceNumber":"2","x":1}"#
            ),
            Message(ChildMessage::Checkpoint {
                sequence_number: Some("495".into()),
                sub_sequence_number: Some(2)
            })
        );
        assert!(matches!(
            parse_child_line(
                r#"{"action":"checkpoint","sequenceNumber":"1","subSequenceNumber":-1}"#
            ),
            Message(ChildMessage::BadCheckpoint { .. })
        ));
        for other in [
            "",
            "Encountered shutdown exception, skipping checkpoint",
            "{not json",
            "[1, 2]",
            r#"{"no": "action"}"#,
            r#"{"action": "initialize", "shardId": "s"}"#,
        ] {
            assert_eq!(parse_child_line(other), Other, "{other}");
        }
    }
}
