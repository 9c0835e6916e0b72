//! `kinesis-cat consume --batch-size / --batch-window`, run as a user would: the built
//! binary against the embedded stack, with `-vv`, whose debug log says each batch written
//! (`batch written shard=… records=N`: what the worker writes, flushes and checkpoints as
//! one). Records put in one call before a worker starts come in its first read, which the
//! runs without the flags confirm; records put after lines were printed come in a later
//! read.
//!
//! ```text
//!  put 10 ─▶ consume                       ─▶ batches [10] (one read)
//!         ─▶ consume --batch-size 4        ─▶ [4, 4, 2]
//!  put 3 ─▶ consume --batch-size 2 --batch-window 5m ─▶ 2 lines (the 3rd waits) ─▶ put 1 ─▶ [2, 2]
//!  put 3 ─▶ consume --batch-size 2                   ─▶ 3 lines                ─▶ put 1 ─▶ [2, 1, 1]
//!  put 3 ─▶ consume --batch-size 2 --batch-window 5m ─▶ 2 lines ─▶ SIGTERM (the 3rd unwritten)
//!        ─▶ consume (same app)                        ─▶ the 3rd
//! ```
//!
//! Every wait is bounded ([`LIMIT`]): a worker that does not print or stop in time is
//! killed and the test fails ("hang"); nothing measures time.

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kinesis_emulators::{LocalStack, ServiceKind};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-cat");

/// A bound to fail on instead of hanging; never a measured assertion.
const LIMIT: Duration = Duration::from_secs(120);

/// Puts `data` to `stream` in one `PutRecords` call.
async fn put(stack: &LocalStack, stream: &str, data: &[String]) {
    let entries: Vec<PutRecordsRequestEntry> = data
        .iter()
        .map(|d| {
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .data(Blob::new(d.as_bytes()))
                .build()
                .expect("entry")
        })
        .collect();
    let out = stack
        .kinesis_client()
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(out.failed_record_count(), Some(0));
}

fn tagged(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{tag}-{i}")).collect()
}

/// A running `kinesis-cat -vv consume`, its JSON lines read by the test.
struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl Worker {
    /// `kinesis-cat -vv consume --stream S --app A extra…` aimed at the stack, isolated
    /// from the machine's AWS configuration unless the stack is external.
    fn start(stack: &LocalStack, stream: &str, app: &str, extra: &[&str]) -> Worker {
        let mut cmd = Command::new(BIN);
        cmd.args(["-vv", "consume", "--stream", stream, "--app", app])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
            .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint());
        if stack.kinesis_kind() != ServiceKind::External {
            for k in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"] {
                cmd.env_remove(k);
            }
            cmd.env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/creds")
                .env("AWS_CONFIG_FILE", "/nonexistent/config")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_REGION", "us-east-1");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run kinesis-cat");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Worker {
            child,
            lines,
            stderr,
        }
    }

    /// The `data` of the next `n` records printed.
    async fn read(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let line = tokio::time::timeout(LIMIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("hang: {} of {n} records printed: {out:?}", out.len()))
                .expect("read stdout")
                .unwrap_or_else(|| panic!("stdout ended after {out:?}"));
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            out.push(v["data"].as_str().expect("text data").to_owned());
        }
        out
    }

    /// SIGTERM (a graceful stop), then what else was printed and the size of every batch
    /// written, from the `-vv` log. Checks the exit status is 0.
    async fn stop(mut self) -> (Vec<String>, Vec<usize>) {
        let pid = self.child.id().expect("running").to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(killed.success(), "kill -TERM");
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("hang: still running after SIGTERM")
            .expect("wait");
        let mut rest = Vec::new();
        while let Some(line) = self.lines.next_line().await.expect("read stdout") {
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            rest.push(v["data"].as_str().expect("text data").to_owned());
        }
        let stderr = self.stderr.await.expect("stderr");
        assert_eq!(status.code(), Some(0), "a graceful stop; stderr:\n{stderr}");
        (rest, batches(&stderr))
    }
}

/// The `records=N` of every `batch written` log line, in order.
fn batches(stderr: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter(|l| l.contains("batch written"))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("records="))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no records=N in {l:?}"))
        })
        .collect()
}

async fn stack() -> LocalStack {
    LocalStack::builder().start_async().await.expect("stack")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_cuts_each_read_into_batches_of_at_most_n() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-batch-size", 1).await.unwrap();
    let records = tagged("r", 0..10);
    put(&stack, &stream, &records).await;

    let mut plain = Worker::start(&stack, &stream, &LocalStack::unique_name("plain"), &[]);
    assert_eq!(plain.read(10).await, records);
    let (rest, sizes) = plain.stop().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(sizes, [10], "without the flags: one batch per read");

    let mut cut = Worker::start(
        &stack,
        &stream,
        &LocalStack::unique_name("cut"),
        &["--batch-size", "4"],
    );
    assert_eq!(cut.read(10).await, records, "in order, nothing lost");
    let (rest, sizes) = cut.stop().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        sizes,
        [4, 4, 2],
        "the read of 10 cut into batches of at most 4"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_window_joins_reads_until_the_batch_is_full() {
    let stack = stack().await;
    let windowed = stack.create_stream("cat-batch-window", 1).await.unwrap();
    let plain = stack.create_stream("cat-batch-plain", 1).await.unwrap();
    for (stream, window) in [(&windowed, true), (&plain, false)] {
        put(&stack, stream, &tagged("w", 0..3)).await;
        let mut flags = vec!["--batch-size", "2"];
        if window {
            flags.extend(["--batch-window", "5m"]);
        }
        let app = LocalStack::unique_name("window");
        let mut worker = Worker::start(&stack, stream, &app, &flags);
        // Printed after the read that returned w-0..w-2 (one PutRecords before the start).
        assert_eq!(worker.read(2).await, tagged("w", 0..2));
        if !window {
            assert_eq!(worker.read(1).await, ["w-2"], "no window: no waiting");
        }
        // Put after that read, so read after it.
        put(&stack, stream, &tagged("w", 3..4)).await;
        if window {
            assert_eq!(worker.read(2).await, tagged("w", 2..4));
        } else {
            assert_eq!(worker.read(1).await, ["w-3"]);
        }
        let (rest, sizes) = worker.stop().await;
        assert!(rest.is_empty(), "{rest:?}");
        if window {
            assert_eq!(
                sizes,
                [2, 2],
                "w-2 waited for w-3, read later, to fill its batch"
            );
        } else {
            assert_eq!(sizes, [2, 1, 1]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_waiting_in_a_window_at_a_stop_come_in_the_next_run() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-batch-stop", 1).await.unwrap();
    put(&stack, &stream, &tagged("s", 0..3)).await;
    let app = LocalStack::unique_name("stop");
    let flags = ["--batch-size", "2", "--batch-window", "5m"];
    let mut first = Worker::start(&stack, &stream, &app, &flags);
    // s-2 came in the same read and waits for a second record or the window.
    assert_eq!(first.read(2).await, tagged("s", 0..2));
    let (rest, sizes) = first.stop().await;
    assert!(
        rest.is_empty(),
        "a waiting record is not written at a stop: {rest:?}"
    );
    assert_eq!(sizes, [2]);

    // Nor was it checkpointed: the next run of the application starts with it.
    let mut next = Worker::start(&stack, &stream, &app, &[]);
    assert_eq!(next.read(1).await, ["s-2"]);
    let (rest, sizes) = next.stop().await;
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(sizes, [1]);
}
