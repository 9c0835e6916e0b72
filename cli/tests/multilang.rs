//! `kinesis-cat multilang` against real MultiLang record processors on the embedded stack:
//! - amazon-kclpy 3.2.0 (its sdist's pure-Python modules on `PYTHONPATH`; `pip install`
//!   would fetch Java jars): a processor written against its v3 API gets every record once,
//!   its checkpoints hold across a restart of the host, SIGTERM reaches it as
//!   `shutdownRequested`, and a killed child is replaced from its checkpoint; the library's
//!   own sample application runs unmodified;
//! - aws-kcl 2.3.2 (npm, no install scripts): its basic sample's processor, with enhanced
//!   fan-out, gets every record once;
//! - a child speaking the protocol by hand that answers wrongly, hangs and exits: each
//!   failure ends only its shard's processing, which resumes with a new child;
//! - `callProcessRecordsEvenForEmptyRecordList`: empty batches reach the child;
//! - a bad properties file: status 2, naming the key and line.
//!
//! The peers are installed on first use under `<target>/multilang-peers/` (pinned, by
//! `integration_tests::peers`, which the benchmark shares); when a package
//! registry cannot be reached, the tests that need it say so and pass without running.
//! The processors are in `tests/multilang/`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use integration_tests::peers::{available, kclpy, node_kcl, target_dir, KCLPY, NPM_KCL};
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::Checkpoint;
use kinesis_emulators::LocalStack;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A bound to fail on instead of hanging; never a measured assertion.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The stack, the host process, the processors' event files
// ---------------------------------------------------------------------------------------

/// A scratch folder for one test (properties, processors, event files), removed when the
/// test passes and kept for a look when it fails.
struct Scratch(
    /// The folder.
    PathBuf,
);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = target_dir()
            .join("multilang-tests")
            .join(kinesis_emulators::unique_name(name));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Copies a processor of `tests/multilang/` into `dir`.
fn processor_file(dir: &Path, name: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/multilang")
        .join(name);
    std::fs::copy(&src, dir.join(name)).unwrap();
}

/// Puts `n` records `tag-0 ..` and returns their sequence numbers by data.
async fn put(stack: &LocalStack, stream: &str, tag: &str, n: usize) -> HashMap<String, String> {
    let client = stack.kinesis_client();
    let entries: Vec<PutRecordsRequestEntry> = (0..n)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{i}"))
                .data(Blob::new(format!("{tag}-{i}")))
                .build()
                .unwrap()
        })
        .collect();
    let out = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    out.records()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("{tag}-{i}"),
                r.sequence_number().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A running `kinesis-cat multilang`, its standard error collected.
struct HostProcess {
    /// The process.
    child: Child,
    /// Everything it wrote to standard error so far.
    stderr: Arc<Mutex<String>>,
}

impl HostProcess {
    fn start(stack: &LocalStack, properties: &Path, env: &[(&str, &Path)]) -> HostProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinesis-cat"));
        cmd.arg("multilang")
            .arg("--properties")
            .arg(properties)
            .env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
            .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("kinesis-cat multilang");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        HostProcess { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = StdCommand::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// SIGTERM, then waits for a successful exit; returns the standard error.
    async fn stop(mut self) -> String {
        self.signal("-TERM");
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit after SIGTERM; stderr:\n{}", self.stderr()))
            .unwrap();
        // Let the reader take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = self.stderr();
        assert!(status.success(), "status {status}; stderr:\n{err}");
        err
    }
}

/// The lines the processors appended to an event file.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `data` of every `record` event.
fn records(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "record")
        .map(|e| e["data"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `cond` holds, failing with `what` (and the host's stderr) at the deadline.
async fn wait_for(what: &str, host: &HostProcess, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; host stderr:\n{}",
            host.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each lease's checkpoint, by shard.
async fn checkpoints(stack: &LocalStack, app: &str) -> HashMap<String, Checkpoint> {
    LeaseTable::new(stack.dynamodb_client(), app)
        .list_leases()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.lease_key, l.checkpoint))
        .collect()
}

/// Asserts that `got` holds every key of `want` exactly once and nothing else.
fn exactly_once(got: &[String], want: &HashSet<String>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for g in got {
        *counts.entry(g).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let missing: Vec<_> = want
        .iter()
        .filter(|w| !counts.contains_key(w.as_str()))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(got.len(), want.len(), "unexpected records");
}

/// Properties shared by the tests: fast lease timings, polling at 100 ms.
fn properties(executable: &str, stream: &str, app: &str, extra: &str) -> String {
    format!(
        "# written by the multilang tests\n\
         executableName = {executable}\n\
         streamName = {stream}\n\
         applicationName = {app}\n\
         AwsCredentialsProvider = DefaultCredentialsProvider\n\
         initialPositionInStream = TRIM_HORIZON\n\
         regionName = us-east-1\n\
         failoverTimeMillis = 2000\n\
         parentShardPollIntervalMillis = 200\n\
         shutdownGraceMillis = 20000\n\
         {extra}"
    )
}

/// The polling keys of most tests.
const POLLING: &str = "retrievalMode = POLLING\nidleTimeBetweenReadsInMillis = 100\n";

/// What each test sets up: a stack, a stream on it, an application name and a scratch
/// folder for its files.
struct TestApp {
    /// The embedded stack.
    stack: LocalStack,
    /// The stream read, `ml-<name>`.
    stream: String,
    /// A fresh application name, `ml-<name>-app`: a lease table of the test's own.
    app: String,
    /// The scratch folder, `<name>`.
    dir: Scratch,
}

impl TestApp {
    /// Starts a stack with a stream `ml-<name>` of `shards` shards, and makes the folder.
    async fn new(name: &str, shards: i32) -> TestApp {
        let stack = LocalStack::builder()
            .start_async()
            .await
            .expect("local stack");
        let stream = stack
            .create_stream(&format!("ml-{name}"), shards)
            .await
            .unwrap();
        TestApp {
            stack,
            stream,
            app: kinesis_emulators::unique_name(&format!("ml-{name}-app")),
            dir: Scratch::new(name),
        }
    }

    /// Writes the properties file `file` in the folder: [`properties`] of this stream and
    /// application for `executable`, with the `extra` keys.
    fn write_properties(&self, file: &str, executable: &str, extra: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(
            &path,
            properties(executable, &self.stream, &self.app, extra),
        )
        .unwrap();
        path
    }

    /// Copies the processor `file` of `tests/multilang/` into the folder and writes the
    /// properties file `props` that runs it with `interpreter` (the `extra` keys added);
    /// returns the properties file's path.
    fn processor(&self, interpreter: &str, file: &str, props: &str, extra: &str) -> PathBuf {
        processor_file(&self.dir, file);
        self.write_properties(props, &format!("{interpreter} {file}"), extra)
    }

    /// Sets up `tests/multilang/kclpy_processor.py` in the folder, with properties
    /// `app.properties` (the `extra` keys added) and events in `events.jsonl`.
    fn kclpy_processor(&self, kclpy: PathBuf, extra: &str) -> KclpyProcessor {
        KclpyProcessor {
            props: self.processor("python3", "kclpy_processor.py", "app.properties", extra),
            events: self.dir.join("events.jsonl"),
            kclpy,
        }
    }

    /// Waits until the lease table's checkpoints (by shard) satisfy `reached`, failing with
    /// the host's stderr at the deadline.
    async fn wait_for_checkpoint(
        &self,
        host: &HostProcess,
        reached: impl Fn(&HashMap<String, Checkpoint>) -> bool,
    ) {
        let start = Instant::now();
        while !reached(&checkpoints(&self.stack, &self.app).await) {
            assert!(
                start.elapsed() < DEADLINE,
                "no checkpoint; stderr:\n{}",
                host.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `tests/multilang/kclpy_processor.py`, set up by [`TestApp::kclpy_processor`]: it
/// appends one JSON line per event to its events file.
struct KclpyProcessor {
    /// Its properties file.
    props: PathBuf,
    /// Its events file (`ML_EVENTS`).
    events: PathBuf,
    /// amazon-kclpy's modules (`PYTHONPATH`).
    kclpy: PathBuf,
}

impl KclpyProcessor {
    /// Starts a host of the processor.
    fn start(&self, stack: &LocalStack) -> HostProcess {
        HostProcess::start(
            stack,
            &self.props,
            &[
                ("PYTHONPATH", self.kclpy.as_path()),
                ("ML_EVENTS", self.events.as_path()),
            ],
        )
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kclpy_processor_gets_every_record_once_across_a_restart_and_sigterm() {
    let Some(kclpy) = available(&kclpy(), KCLPY) else {
        return;
    };
    let t = TestApp::new("kclpy", 2).await;
    let processor = t.kclpy_processor(kclpy, POLLING);
    let (stack, stream, app, events_file) = (&t.stack, &t.stream, &t.app, &processor.events);

    let first = put(stack, stream, "a", 120).await;
    let host = processor.start(stack);
    wait_for("the first records", &host, || {
        records(&events(events_file)).len() >= 120
    })
    .await;
    let err = host.stop().await;
    let ev = events(events_file);
    exactly_once(&records(&ev), &first.keys().cloned().collect());
    // SIGTERM reached each child as shutdownRequested, and its checkpoint held.
    let shut: HashSet<&str> = ev
        .iter()
        .filter(|e| e["event"] == "shutdown_requested")
        .map(|e| e["shard"].as_str().unwrap())
        .collect();
    assert_eq!(shut.len(), 2, "shutdownRequested per shard: {ev:?}");
    assert!(
        ev.iter().all(|e| e["event"] != "checkpoint_error"),
        "no checkpoint failed: {ev:?}"
    );
    // The child's stderr passed through, prefixed with its shard; stdout chatter skipped.
    assert!(err.contains("[shardId-000000000000] processed "), "{err}");
    // Records carry the fields of the protocol.
    let r = ev.iter().find(|e| e["event"] == "record").unwrap();
    let data = r["data"].as_str().unwrap();
    assert_eq!(r["sequence_number"].as_str(), Some(first[data].as_str()));
    assert_eq!(r["sub_sequence_number"], 0);
    assert_eq!(r["partition_key"], format!("key-{}", &data[2..]));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let arrival = r["arrival_ms"].as_i64().unwrap();
    assert!(arrival > now_ms - 120_000 && arrival <= now_ms, "{arrival}");
    // Each lease is checkpointed at the last record of its shard.
    let cps = checkpoints(stack, app).await;
    let last_of: HashMap<String, String> = ev
        .iter()
        .filter(|e| e["event"] == "record")
        .map(|e| {
            (
                e["shard"].as_str().unwrap().to_owned(),
                e["sequence_number"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (shard, seq) in &last_of {
        assert_eq!(cps[shard], Checkpoint::at(seq, 0).unwrap(), "{shard}");
    }

    // A second host resumes after the checkpoints: only the new records arrive.
    let second = put(stack, stream, "b", 80).await;
    let host = processor.start(stack);
    wait_for("the records after the restart", &host, || {
        records(&events(events_file)).len() >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.stop().await;
    let ev = events(events_file);
    let all: HashSet<String> = first.keys().chain(second.keys()).cloned().collect();
    exactly_once(&records(&ev), &all);
    // The second children were initialized at the first ones' checkpoints.
    let inits: Vec<&Value> = ev.iter().filter(|e| e["event"] == "initialize").collect();
    assert_eq!(inits.len(), 4, "{inits:?}");
    for init in &inits[2..] {
        let shard = init["shard"].as_str().unwrap();
        assert_eq!(
            init["sequence_number"].as_str(),
            Some(last_of[shard].as_str()),
            "{shard}"
        );
        assert_eq!(init["sub_sequence_number"], 0);
    }
    for init in &inits[..2] {
        assert_eq!(init["sequence_number"], "TRIM_HORIZON");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_is_replaced_from_its_checkpoint() {
    let Some(kclpy) = available(&kclpy(), KCLPY) else {
        return;
    };
    let t = TestApp::new("kill", 1).await;
    let processor = t.kclpy_processor(kclpy, POLLING);
    let (stack, stream, events_file) = (&t.stack, &t.stream, &processor.events);
    let first = put(stack, stream, "a", 50).await;
    let host = processor.start(stack);
    // The last record put is the last of the shard (one shard): wait for its checkpoint.
    let last = first["a-49"].clone();
    let want = Checkpoint::at(&last, 0).unwrap();
    t.wait_for_checkpoint(&host, |cps| cps.get("shardId-000000000000") == Some(&want))
        .await;
    let ev = events(events_file);
    assert_eq!(records(&ev).len(), 50);
    let pid = ev.iter().find(|e| e["event"] == "initialize").unwrap()["pid"]
        .as_i64()
        .unwrap();
    assert!(StdCommand::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());

    let second = put(stack, stream, "b", 50).await;
    wait_for("the new records, in a new child", &host, || {
        records(&events(events_file)).len() >= 100
    })
    .await;
    let err = host.stop().await;
    let ev = events(events_file);
    let all: HashSet<String> = first.keys().chain(second.keys()).cloned().collect();
    exactly_once(&records(&ev), &all);
    let inits: Vec<&Value> = ev.iter().filter(|e| e["event"] == "initialize").collect();
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert_ne!(inits[1]["pid"], pid, "a new child");
    assert_eq!(
        inits[1]["sequence_number"].as_str(),
        Some(last.as_str()),
        "from the checkpoint"
    );
    assert!(err.contains("giving the child process up"), "{err}");
    assert!(err.contains("1 child process(es) failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kclpy_sample_app_runs_unmodified() {
    let Some(kclpy) = available(&kclpy(), KCLPY) else {
        return;
    };
    let t = TestApp::new("sample", 1).await;
    let (stack, stream, dir) = (&t.stack, &t.stream, &t.dir);
    std::fs::copy(
        kclpy.join("samples/sample_kclpy_app.py"),
        dir.join("sample_kclpy_app.py"),
    )
    .unwrap();
    // As the sample's properties: the script itself (its `#!/usr/bin/env python`), found in
    // the properties file's folder; through python3 where there is no `python`.
    let python = StdCommand::new("python")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let exe = if python {
        "sample_kclpy_app.py"
    } else {
        "python3 sample_kclpy_app.py"
    };
    let props = t.write_properties(
        "sample.properties",
        exe,
        &format!("processingLanguage = python/3.8\n{POLLING}"),
    );
    let put = put(stack, stream, "s", 30).await;
    let last = put["s-29"].clone();
    let host = HostProcess::start(stack, &props, &[("PYTHONPATH", kclpy.as_path())]);
    // The sample checkpoints its first batch at once (then every 30 s).
    let want = Checkpoint::at(&last, 0).unwrap();
    t.wait_for_checkpoint(&host, |cps| cps.values().any(|c| *c == want))
        .await;
    let err = host.stop().await;
    assert!(
        err.contains("warning: ") && err.contains("processingLanguage (line"),
        "the no-effect key is named: {err}"
    );
    // The sample logs each record to stderr (without newlines); the host passed it on.
    assert_eq!(err.matches("Record (Partition Key: ").count(), 30, "{err}");
    assert!(
        err.contains("Shutdown has been requested, checkpointing."),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_aws_kcl_sample_gets_every_record_once_with_fan_out() {
    let Some(node_modules) = available(&node_kcl(), NPM_KCL) else {
        return;
    };
    let t = TestApp::new("node", 2).await;
    let (stack, stream) = (&t.stack, &t.stream);
    let props = t.processor(
        "node",
        "node_sample_consumer.js",
        "sample.properties",
        "processingLanguage = nodejs/0.10\nretrievalMode = FANOUT\n",
    );
    let put = put(stack, stream, "n", 60).await;
    let host = HostProcess::start(stack, &props, &[("NODE_PATH", node_modules.as_path())]);
    let seen = |err: &str| -> Vec<String> {
        err.lines()
            .filter_map(|l| l.split(", Record: ").nth(1))
            .map(|rest| rest.split(", SeqenceNumber").next().unwrap().to_owned())
            .collect()
    };
    wait_for("every record", &host, || seen(&host.stderr()).len() >= 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = host.stop().await;
    assert!(err.contains("(enhanced fan-out)"), "{err}");
    exactly_once(&seen(&err), &put.keys().cloned().collect());
    assert!(!err.contains("Error: ShutdownException"), "{err}");
    assert!(err.contains("Checkpoint successful."), "{err}");
    assert_eq!(
        err.matches("ShutdownRequested for ShardId").count(),
        2,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_children_end_only_their_shards_processing() {
    let t = TestApp::new("unruly", 1).await;
    let (stack, stream) = (&t.stack, &t.stream);
    let props = t.processor(
        "python3",
        "unruly_child.py",
        "app.properties",
        &format!("timeoutInSeconds = 1\n{POLLING}"),
    );
    let events_file = t.dir.join("events.jsonl");
    let state = t.dir.join("starts");
    let env = [
        ("ML_EVENTS", events_file.as_path()),
        ("ML_STATE", state.as_path()),
    ];
    let put = put(stack, stream, "u", 20).await;
    let host = HostProcess::start(stack, &props, &env);
    wait_for("the records, by the fourth child", &host, || {
        records(&events(&events_file)).len() >= 20
    })
    .await;
    let err = host.stop().await;
    exactly_once(
        &records(&events(&events_file)),
        &put.keys().cloned().collect(),
    );
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "4");
    for said in [
        "answered processRecords with a status for initialize",
        "sent nothing for 1 s during processRecords (timeoutInSeconds)",
        "exited (or closed its pipes) during processRecords",
        "3 child process(es) failed",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    assert!(!err.contains("panicked at"), "no panic hook message: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_record_lists_reach_the_child_when_asked() {
    let Some(kclpy) = available(&kclpy(), KCLPY) else {
        return;
    };
    let t = TestApp::new("empty", 1).await;
    let processor = t.kclpy_processor(
        kclpy,
        &format!("callProcessRecordsEvenForEmptyRecordList = true\n{POLLING}"),
    );
    let (stack, stream, events_file) = (&t.stack, &t.stream, &processor.events);
    let put = put(stack, stream, "e", 5).await;
    let host = processor.start(stack);
    wait_for("empty processRecords after the records", &host, || {
        host.stderr().matches("processed 0 records").count() >= 3
    })
    .await;
    let err = host.stop().await;
    let ev = events(events_file);
    exactly_once(&records(&ev), &put.keys().cloned().collect());
    assert!(
        ev.iter().all(|e| e["event"] != "checkpoint_error"),
        "checkpoints of empty lists succeed: {ev:?}"
    );
    assert!(err.contains("processed 5 records"), "{err}");
}

#[test]
fn a_bad_properties_file_exits_2_naming_key_and_line() {
    let dir = Scratch::new("bad-props");
    let props = dir.join("bad.properties");
    let run = |text: &str| {
        std::fs::write(&props, text).unwrap();
        let out = StdCommand::new(env!("CARGO_BIN_EXE_kinesis-cat"))
            .arg("multilang")
            .arg("-p")
            .arg(&props)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = "executableName = python3 app.py\napplicationName = app-1\nstreamName = s\n";
    let (code, err) = run(&format!("{base}idleTimeBetweenReads = 5\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.properties:4: unknown property \"idleTimeBetweenReads\""),
        "{err}"
    );
    let (code, err) = run(&format!("{base}maxRecords = 0\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.properties:4: maxRecords = \"0\": out of range"),
        "{err}"
    );
    let (code, err) = run(&base.replace("python3 app.py", "./missing.sh"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.properties:1: executableName = \"./missing.sh\": program"),
        "{err}"
    );
    let (code, err) = run("streamName = s\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("executableName is required"), "{err}");
}
