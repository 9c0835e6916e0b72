//! What the fleet tests share: `kinesis-cat consume --output json` worker processes with
//! their output read line by line, records put with `PutRecords`, waits on conditions
//! (never on a time), and a graceful stop of every worker.
//!
//! ```text
//!  Worker::spawn ──▶ kinesis-cat consume --worker-id ID --output json ARGS...
//!     stdout JSON lines ─▶ a reader thread ─▶ lines (a line that is not one ─▶ bad)
//!     stderr lines ─────▶ a reader thread ─▶ Worker::said
//!  stop_all: SIGTERM to each ─▶ each exits with status 0 within DEADLINE
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::Env;

/// A bound to fail on instead of hanging, for each wait; never a measured assertion.
pub const DEADLINE: Duration = Duration::from_secs(180);

/// One JSON line a worker printed.
#[derive(Debug, Clone)]
pub struct Line {
    /// The worker id of the process that printed it.
    pub worker: String,
    /// The record's stream.
    pub stream: String,
    /// The record's shard.
    pub shard: String,
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// The user record within it (0 for a plain record).
    pub sub_sequence_number: u64,
    /// The payload, as text.
    pub data: String,
}

/// One worker process and what it wrote.
pub struct Worker {
    /// Its worker id (the lease owner).
    pub id: String,
    /// The process (killed when dropped, so that a failing test leaves nothing behind).
    pub child: Child,
    /// Its standard error, line by line.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// The reader threads of its standard output and error.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    /// Starts `kinesis-cat consume --worker-id ID --output json ARGS...`; its JSON lines go
    /// to `lines` (a line that is not one goes to `bad`: check it is empty at the end).
    pub fn spawn(
        env: &Env,
        id: &str,
        args: &[&str],
        lines: &Arc<Mutex<Vec<Line>>>,
        bad: &Arc<Mutex<Vec<String>>>,
    ) -> Worker {
        let mut argv = vec!["consume", "--worker-id", id, "--output", "json"];
        argv.extend_from_slice(args);
        let mut child = env
            .command(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kinesis-cat consume");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout_reader = {
            let (lines, bad, worker) = (lines.clone(), bad.clone(), id.to_owned());
            std::thread::spawn(move || {
                for text in BufReader::new(out).lines() {
                    let Ok(text) = text else { break };
                    match parse_line(&worker, &text) {
                        Some(l) => lines.lock().unwrap().push(l),
                        None => bad.lock().unwrap().push(text),
                    }
                }
            })
        };
        let stderr_reader = {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(err).lines() {
                    let Ok(text) = text else { break };
                    stderr.lock().unwrap().push(text);
                }
            })
        };
        Worker {
            id: id.to_owned(),
            child,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        }
    }

    /// Whether a line of its standard error so far contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// `kill -9`: ends the process at once and waits for it to be gone.
    pub fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait for the killed worker");
    }
}

/// A JSON line of `consume --output json`, or `None` when `text` is not one.
fn parse_line(worker: &str, text: &str) -> Option<Line> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(Line {
        worker: worker.to_owned(),
        stream: v["stream"].as_str()?.to_owned(),
        shard: v["shard_id"].as_str()?.to_owned(),
        sequence_number: v["sequence_number"].as_str()?.to_owned(),
        sub_sequence_number: v["sub_sequence_number"].as_u64()?,
        data: v["data"].as_str()?.to_owned(),
    })
}

/// Waits until `cond` holds, failing the test past [`DEADLINE`].
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `entries`, checking that every one landed.
pub async fn send(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) {
    for chunk in entries.chunks(500) {
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(chunk.to_vec()))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
    }
}

/// Puts `n` records `TAG-i` to `stream` (keys spread over its shards); returns the payloads.
pub async fn put(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    tag: &str,
    n: usize,
) -> Vec<String> {
    let data: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let entries = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{i}"))
                .data(Blob::new(d.clone()))
                .build()
                .unwrap()
        })
        .collect();
    send(kinesis, stream, entries).await;
    data
}

/// SIGTERM to every worker, then waits for each to exit gracefully (status 0).
pub async fn stop_all(workers: Vec<Worker>) {
    for w in &workers {
        let term = std::process::Command::new("kill")
            .args(["-TERM", &w.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(term.success());
    }
    for mut w in workers {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = w.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} still running after SIGTERM; stderr:\n{}",
                w.id,
                w.stderr.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for r in w.readers.drain(..) {
            r.join().unwrap();
        }
        assert!(
            status.success(),
            "{} exits gracefully ({status}); stderr:\n{}",
            w.id,
            w.stderr.lock().unwrap().join("\n")
        );
    }
}
