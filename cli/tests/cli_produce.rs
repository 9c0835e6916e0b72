//! `kinesis-cat produce` end to end: the built binary reads stdin and writes through the
//! producer library to a [`LocalStack`] (or whatever `AWS_ENDPOINT_URL_KINESIS` points
//! at); the stream is read back with GetRecords and kinesis-agg.
//!
//! ```text
//!  lines ─stdin─▶ kinesis-cat produce ─PutRecords─▶ stream ─GetRecords+deaggregate─▶ check
//!                      └─ stderr summary, exit code
//! ```

use std::io::Write;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use kinesis_emulators::{LocalStack, ServiceKind};

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-cat");

fn produce(stack: &LocalStack, args: &[&str], input: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("produce")
        .args(args)
        .env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stack.kinesis_kind() != ServiceKind::External {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE");
    }
    let mut child = cmd.spawn().expect("run kinesis-cat");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Every user record in the stream, per shard in stream order: (partition key, data).
async fn read_back(stack: &LocalStack, stream: &str) -> Vec<(String, Bytes)> {
    integration_tests::kinesis::read_user_records(&stack.kinesis_client(), stream)
        .await
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_are_delivered_once_each_with_a_summary() {
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce", 4).await.unwrap();
    let input: String = (0..5_000).map(|i| format!("line {i}\n")).collect();
    let out = produce(
        &stack,
        &["--stream", &stream, "--max-buffered-ms", "20"],
        &input,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("5000 delivered, 0 failed"), "{stderr}");
    let mut got: Vec<String> = read_back(&stack, &stream)
        .await
        .into_iter()
        .map(|(_, d)| String::from_utf8(d.to_vec()).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..5_000).map(|i| format!("line {i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_keys_and_binary_data_and_bad_lines_fail_the_run() {
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce-json", 2).await.unwrap();
    let input = [
        r#"{"partition_key":"alpha","data":"héllo"}"#,
        r#"{"partition_key":"beta","data_b64":"AAEC/w=="}"#,
        r#"{"partition_key":"gamma","explicit_hash_key":"0","data":"low"}"#,
        r#"{"partition_key":"","data":"empty key"}"#,
        r#"not json"#,
        r#"{"partition_key":"delta","data":"last"}"#,
    ]
    .join("\n");
    let out = produce(&stack, &["--stream", &stream, "--input", "json"], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "bad lines must fail the run: {stderr}"
    );
    assert!(stderr.contains("line 4"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(
        stderr.contains("4 delivered, 2 failed (2 bad lines)"),
        "{stderr}"
    );
    let mut got = read_back(&stack, &stream).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            ("alpha".to_string(), Bytes::from("héllo")),
            ("beta".to_string(), Bytes::from_static(&[0, 1, 2, 255])),
            ("delta".to_string(), Bytes::from("last")),
            ("gamma".to_string(), Bytes::from("low")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_unaggregated_lines_keep_their_order() {
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce-ordered", 2).await.unwrap();
    let input: String = (0..500).map(|i| format!("{i:05}\n")).collect();
    let out = produce(
        &stack,
        &[
            "--stream",
            &stream,
            "--ordered",
            "--no-aggregate",
            "--partition-key",
            "one-key",
            "--compress",
        ],
        &input,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = read_back(&stack, &stream)
        .await
        .into_iter()
        .map(|(k, d)| {
            assert_eq!(k, "one-key");
            String::from_utf8(d.to_vec()).unwrap()
        })
        .collect();
    let want: Vec<String> = (0..500).map(|i| format!("{i:05}")).collect();
    assert_eq!(got, want);
}
