//! `kinesis-cat produce` end to end: the built binary reads stdin and writes through the
//! producer library to a [`LocalStack`] (or whatever `AWS_ENDPOINT_URL_KINESIS` points
//! at); the stream is read back with GetRecords and kinesis-agg.
//!
//! ```text
//!  lines ─stdin─▶ kinesis-cat produce ─PutRecords─▶ stream ─GetRecords+deaggregate─▶ check
//!                      └─ stderr summary, exit code
//!  lines, then a read error ─▶ commands::produce::produce (in this process) ─▶ same checks
//! ```

use std::io::Write;
use std::pin::Pin;
use std::process::{Child, Command, Output, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use integration_tests::kinesis::{list_shards, read_user_records_by, split_in_half, RangeRule};
use kinesis_cat::commands::produce::ProduceArgs;
use kinesis_emulators::{LocalStack, ServiceKind};
use tokio::io::{AsyncRead, BufReader, ReadBuf};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-cat");

/// Runs `kinesis-cat produce` with `input` on its standard input, to the end.
fn produce(stack: &LocalStack, args: &[&str], input: impl AsRef<[u8]>) -> Output {
    let (child, mut stdin) = spawn_produce(stack, args);
    stdin.write_all(input.as_ref()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Starts `kinesis-cat produce` against `stack`; its standard input is handed back.
fn spawn_produce(stack: &LocalStack, args: &[&str]) -> (Child, std::process::ChildStdin) {
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
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Every user record in the stream, per shard in stream order: (partition key, data).
async fn read_back(stack: &LocalStack, stream: &str) -> Vec<(String, Bytes)> {
    integration_tests::kinesis::read_user_records(&stack.kinesis_client(), stream)
        .await
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect()
}

/// The data of every user record in the stream, sorted.
async fn sorted_data(stack: &LocalStack, stream: &str) -> Vec<Bytes> {
    let mut data: Vec<Bytes> = read_back(stack, stream)
        .await
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    data.sort();
    data
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

/// Issue 11, fault 3: text lines are bytes. A line that is not UTF-8 is sent as it is,
/// the lines after it too, and the run ends with its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_sent_as_it_is() {
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce-bytes", 1).await.unwrap();
    let out = produce(&stack, &["--stream", &stream], b"a\n\xff\nb\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("3 delivered, 0 failed"), "{stderr}");
    let got = sorted_data(&stack, &stream).await;
    assert_eq!(
        got,
        vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"\xff")
        ]
    );
}

/// A line longer than any record is skipped as a bad line (read to its end, not held in
/// memory); the lines around it are delivered; the run fails with its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_longer_than_a_record_is_a_bad_line_and_the_others_are_delivered() {
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce-long", 1).await.unwrap();
    let mut input = b"first\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
    input.extend_from_slice(b"\nlast");
    let out = produce(&stack, &["--stream", &stream], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 2: 3145728 bytes, longer than"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 delivered, 1 failed (1 bad lines)"),
        "{stderr}"
    );
    let got = sorted_data(&stack, &stream).await;
    assert_eq!(got, vec![Bytes::from("first"), Bytes::from("last")]);
}

/// Standard input that fails after some lines: a reader of `data`, then an I/O error.
struct FailsAfter {
    data: std::io::Cursor<Vec<u8>>,
}

impl AsyncRead for FailsAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.data).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                Poll::Ready(Err(std::io::Error::other("the disk went away")))
            }
            other => other,
        }
    }
}

/// Issue 11, fault 3: no input error loses the records accepted before it. Standard
/// input fails after two lines: both are delivered (flushed before the end), and the run
/// fails naming the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_error_flushes_the_lines_read_before_and_fails_the_run() {
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProduceArgs,
    }
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce-eio", 1).await.unwrap();
    // A long linger: the two records are still waiting in the producer when input fails.
    let args = Cli::parse_from(["t", "--stream", &stream, "--max-buffered-ms", "60000"]).args;
    let input = FailsAfter {
        data: std::io::Cursor::new(b"one\ntwo\n".to_vec()),
    };
    // Through a buffer smaller than the input, as standard input is read.
    let input = BufReader::with_capacity(4, input);
    let result = kinesis_cat::commands::produce::produce(
        args,
        stack.kinesis_client(),
        input,
        CancellationToken::new(),
    )
    .await;
    let err = result.expect_err("a failed read fails the run");
    let text = err.to_string();
    assert!(
        text.contains("could not read standard input after line 2: the disk went away"),
        "{text}"
    );
    assert!(
        text.contains("2 of the 2 records read were delivered"),
        "{text}"
    );
    assert_eq!(err.exit_code(), 1);
    let got = sorted_data(&stack, &stream).await;
    assert_eq!(got, vec![Bytes::from("one"), Bytes::from("two")]);
}

/// Issue 11, fault 1, as reported: a 1-shard stream, `produce --rate 1500` of 6,000
/// numbered lines, the shard split 2 s in. A reader that follows the Java KCL's
/// deaggregation rule (an aggregate holding any record outside the shard is discarded
/// whole) must see every line `produce` reported delivered, once; so must ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_split_a_java_kcl_reader_sees_every_line_produce_delivered() {
    let stack = LocalStack::builder().start_async().await.unwrap();
    let stream = stack.create_stream("cat-produce-split", 1).await.unwrap();
    let client = stack.kinesis_client();
    let parent = list_shards(&client, &stream).await[0].shard_id().to_owned();
    let (child, mut stdin) = spawn_produce(&stack, &["--stream", &stream, "--rate", "1500"]);
    let input: String = (0..6_000).map(|i| format!("line {i:05}\n")).collect();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // Not a timing assertion: the split only has to land while lines are flowing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    split_in_half(&client, &stream, &parent).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    feeder.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("6000 delivered, 0 failed"), "{stderr}");
    let want: Vec<String> = (0..6_000).map(|i| format!("line {i:05}")).collect();
    for rule in [RangeRule::JavaKcl, RangeRule::Ours] {
        let mut got: Vec<String> = read_user_records_by(&client, &stream, rule)
            .await
            .into_iter()
            .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
            .collect();
        got.sort();
        let missing = want
            .iter()
            .filter(|w| got.binary_search(w).is_err())
            .count();
        assert_eq!(missing, 0, "{rule:?}: delivered lines not visible");
        assert_eq!(got, want, "{rule:?}: each line once");
    }
}
