//! The CLI's fuzz bodies: what `fuzz/fuzz_targets/produce_json_line.rs` and
//! `fuzz/fuzz_targets/multilang_line.rs` run on every input, and what the corpus test
//! (`cli/tests/fuzz_bodies.rs`) runs on the checked-in seeds. Not part of the API: names
//! and behaviour may change at any time.
//!
//! ```text
//!  bytes ─▶ produce --input json line parser ─▶ Err(what is wrong) | Ok(record)
//!                                                 └▶ the producer's checks: typed errors
//!  bytes ─▶ (lossy UTF-8, as the host reads) ─▶ parse_child_line ─▶ Message | Other
//! ```

use clap::Parser;
use kinesis_agg::{check_partition_key, HashKey};
use serde_json::Value;

use crate::commands::multilang::messages::{parse_child_line, ChildLine, ChildMessage};
use crate::commands::produce::{parse_line, InputFormat, ProduceArgs};

/// `produce`'s arguments, for building them the way the command line does.
#[derive(Debug, Parser)]
struct Produce {
    #[command(flatten)]
    args: ProduceArgs,
}

/// Parses `line` as a `produce --input json` line, then runs the producer's checks of the
/// record (partition key, explicit hash key) on what it gives.
///
/// # Panics
/// When parsing or checking panics, or when a line is accepted that is not a JSON object
/// with a string `partition_key` and exactly one of `data` / `data_b64`: what a fuzzer looks
/// for. Returns normally for every input otherwise.
pub fn produce_json_line(line: &[u8]) {
    let args = match Produce::try_parse_from(["produce", "--stream", "s", "--input", "json"]) {
        Ok(p) => p.args,
        Err(e) => panic!("produce's own arguments do not parse: {e}"),
    };
    assert_eq!(args.input, InputFormat::Json);
    let Ok(record) = parse_line(&args, line) else {
        return;
    };
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => panic!("accepted a line that is not JSON: {e}"),
    };
    assert_eq!(
        value.get("partition_key").and_then(Value::as_str),
        Some(record.partition_key.as_str())
    );
    match (value.get("data"), value.get("data_b64")) {
        (Some(Value::String(text)), None) => assert_eq!(record.data, text.as_bytes()),
        (None, Some(Value::String(_))) => {}
        other => panic!("accepted data fields {other:?}"),
    }
    // What `Producer::put` checks next: typed errors, never a panic.
    let _ = check_partition_key(&record.partition_key);
    if let Some(key) = record.explicit_hash_key.as_deref() {
        if let Ok(hash) = HashKey::parse_decimal(key) {
            assert_eq!(HashKey::parse_decimal(&hash.to_string()), Ok(hash));
        }
    }
}

/// Reads `line` as the MultiLang host reads a line of a child's standard output.
///
/// # Panics
/// When parsing panics, or when a line that is not a JSON object is taken for a message:
/// what a fuzzer looks for. Returns normally for every input otherwise.
pub fn multilang_line(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let parsed = parse_child_line(&text);
    let ChildLine::Message(message) = parsed else {
        return;
    };
    let value: Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(e) => panic!("a message that is not JSON: {e}"),
    };
    let action = value.get("action").and_then(Value::as_str);
    match message {
        ChildMessage::Checkpoint { .. } | ChildMessage::BadCheckpoint { .. } => {
            assert_eq!(action, Some("checkpoint"));
        }
        ChildMessage::Status { .. } => assert_eq!(action, Some("status")),
    }
}
