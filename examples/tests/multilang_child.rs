//! The `multilang_child` example against a scripted host: every action is answered with
//! the right `status`, records are printed, and batches, shard ends and shutdowns are
//! checkpointed (with a throttled checkpoint tried again).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

#[test]
fn the_example_child_speaks_the_protocol() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multilang_child"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("multilang_child");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    let mut next = || {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let status = |action: &str| json!({"action": "status", "responseFor": action});
    let asks_checkpoint =
        json!({"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null});
    let answer = |error: Option<&str>| json!({"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null, "error": error});

    send(
        json!({"action": "initialize", "shardId": "shardId-000000000007",
                "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}),
    );
    assert_eq!(next(), status("initialize"));
    send(
        json!({"action": "processRecords", "millisBehindLatest": 0, "records": [
        {"action": "record", "data": "aGVsbG8=", "partitionKey": "k1", "sequenceNumber": "101",
         "subSequenceNumber": 0, "approximateArrivalTimestamp": 1_700_000_000_000_i64},
        {"action": "record", "data": "d29ybGQ=", "partitionKey": "k2", "sequenceNumber": "102",
         "subSequenceNumber": 0, "approximateArrivalTimestamp": 1_700_000_000_001_i64}]}),
    );
    assert_eq!(next(), asks_checkpoint);
    send(answer(Some("ThrottlingException")));
    assert_eq!(
        next(),
        asks_checkpoint,
        "a throttled checkpoint is tried again"
    );
    send(answer(None));
    assert_eq!(next(), status("processRecords"));
    send(json!({"action": "processRecords", "millisBehindLatest": 0, "records": []}));
    assert_eq!(next(), status("processRecords"), "nothing to checkpoint");
    send(json!({"action": "shardEnded"}));
    assert_eq!(next(), asks_checkpoint);
    send(answer(None));
    assert_eq!(next(), status("shardEnded"));
    send(json!({"action": "leaseLost"}));
    assert_eq!(next(), status("leaseLost"));
    send(json!({"action": "shutdownRequested"}));
    assert_eq!(next(), asks_checkpoint);
    send(answer(Some("ShutdownException")));
    assert_eq!(next(), status("shutdownRequested"));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exits at the end of its input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shardId-000000000007 101/0 key=k1 hello"),
        "{err}"
    );
    assert!(
        err.contains("shardId-000000000007 102/0 key=k2 world"),
        "{err}"
    );
}
