//! Migration both ways between kcl-rs 0.1.4 (LocalStack's Rust port of the Java KCL v3,
//! driven from Python by `peers/kcl_rs_interop.py`) and our consumer, on one application
//! (one lease table), without re-delivering anything past the other side's checkpoints.
//!
//! ```text
//!  2-shard stream   put A ── kcl-rs (APP) ── put B ── ours (APP) ── put C ── kcl-rs (APP)
//!                            sees all of A            sees all of B          sees all of C
//!                            checkpoints every        checkpoints every      checkpoints every
//!                            batch; graceful          batch; graceful        batch; graceful
//!                            exit (leaseOwner         shutdown (leases       exit
//!                            kept set)                released)
//! ```
//!
//! kcl-rs keeps `leaseOwner` set after its shutdown: our worker (failover 1 s) takes its
//! leases once their counters stand still for the failover time (the Java rule for an
//! owner outside our fleet). Our worker releases its leases at a graceful shutdown, so the
//! second kcl-rs run finds them unowned.
//!
//! kcl-rs 0.1.4, as seen here: `Scheduler.shutdown()` ends its processors with
//! `lease_lost`, not `shutdown_requested`, so its last checkpoint is the one written after
//! the last batch (the script checkpoints every batch). On a new (empty) lease table it
//! waits a few seconds at random before syncing shards, and its first shard sync completes
//! only after one shard-sync interval (60 s by default; the script sets 2 s), so the first
//! run takes 15–35 s and the second about 8 s (4 of them its shutdown).
//!
//! kcl-rs is installed once into `<target>/peers/kcl-rs-venv` (pinned); when the package
//! registry cannot be reached the test prints `SKIPPED: ...` and returns
//! ([`integration_tests::peers::available`]); any other install failure fails it.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use integration_tests::peers::{available, kcl_rs, target_dir, KCL_RS};
use kinesis_consumer::Lease;
use kinesis_emulators::LocalStack;
use tokio::process::Command;

/// Records per batch (A, B, C).
const BATCH: usize = 200;

/// A folder under `<target>/kcl-rs-interop/` for the peer's logs and records, removed
/// unless the test fails.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = target_dir().join("kcl-rs-interop").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Every lease of `app`, by key, shown (owner, counter, checkpoint) on stderr.
async fn show_leases(stack: &LocalStack, app: &str, when: &str) -> Vec<Lease> {
    let mut leases: Vec<_> = leases(stack, app).await.into_values().collect();
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    eprintln!("leases {when}:");
    for l in &leases {
        eprintln!(
            "  {} owner {:?} counter {} checkpoint {:?}",
            l.lease_key, l.owner, l.counter, l.checkpoint
        );
    }
    assert_eq!(leases.len(), 2, "one lease per shard");
    leases
}

/// Runs kcl-rs as worker `worker` of `app` until it has processed `expected` distinct
/// records and shut down gracefully; returns the data of every record it processed, in the
/// order written (repeats included). Its stderr goes to `<dir>/<worker>.log`.
async fn run_kcl_rs(
    stack: &LocalStack,
    python: &Path,
    dir: &Path,
    stream: &str,
    app: &str,
    worker: &str,
    expected: usize,
) -> Vec<String> {
    let output = dir.join(format!("{worker}.records"));
    let log_path = dir.join(format!("{worker}.log"));
    let log = std::fs::File::create(&log_path).expect("the kcl-rs log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/kcl_rs_interop.py");
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg(script)
        .args([stream, app, worker])
        .arg(&output)
        .arg(expected.to_string())
        .env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        // Kept open while it runs: its end tells the worker the test went away.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("starting kcl-rs");
    // `Child::wait` closes a stdin still held by the child handle: keep it here instead.
    let _stdin = child.stdin.take();
    let status = match tokio::time::timeout(DEADLINE, child.wait()).await {
        Ok(status) => status.expect("waiting for kcl-rs"),
        Err(_) => {
            let _ = child.kill().await;
            panic!(
                "kcl-rs ({worker}) did not finish {expected} records within {DEADLINE:?}; \
                 {} lines written; its log:\n{}",
                read_lines(&output).len(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    };
    assert!(
        status.success(),
        "kcl-rs ({worker}) exited with {status}; its log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    eprintln!("kcl-rs {worker}: done in {:?}", started.elapsed());
    read_lines(&output)
}

/// The lines of `path` (none if it does not exist).
fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Checks that `got` (data of the records one run processed) is exactly `batch`: every
/// record of it, nothing of another batch and no record twice.
fn assert_exactly(who: &str, got: &[String], batch: &[Sent], earlier: &[&[Sent]]) {
    let want: HashSet<String> = batch
        .iter()
        .map(|s| String::from_utf8_lossy(&s.data).into_owned())
        .collect();
    let earlier: HashSet<String> = earlier
        .iter()
        .flat_map(|b| b.iter())
        .map(|s| String::from_utf8_lossy(&s.data).into_owned())
        .collect();
    let redelivered: Vec<&String> = got.iter().filter(|d| earlier.contains(*d)).collect();
    assert!(
        redelivered.is_empty(),
        "{who} got {} records of earlier batches again, e.g. {:?}",
        redelivered.len(),
        &redelivered[..redelivered.len().min(5)]
    );
    let got_set: HashSet<&String> = got.iter().collect();
    let missing: Vec<&String> = want.iter().filter(|d| !got_set.contains(d)).collect();
    assert!(
        missing.is_empty(),
        "{who} missed {} records, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let unknown: Vec<&&String> = got_set.iter().filter(|d| !want.contains(**d)).collect();
    assert!(
        unknown.is_empty(),
        "{who} got records never put: {unknown:?}"
    );
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for d in got {
        *counts.entry(d).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{who} (one worker, nothing lost) processed records more than once: {twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcl_rs_and_our_consumer_take_over_from_each_others_checkpoints() {
    let peer = tokio::task::spawn_blocking(kcl_rs)
        .await
        .expect("the install task");
    let Some(python) = available(&peer, KCL_RS) else {
        return;
    };
    let started = Instant::now();
    let stack = stack().await;
    let stream = stack.create_stream("kclrs-interop", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kclrs-interop-app");
    let scratch = Scratch::new(&app);
    let dir = scratch.0.as_path();
    eprintln!(
        "kcl-rs logs and records under {} (kept if the test fails)",
        dir.display()
    );
    let kinesis = stack.kinesis_client();
    let a = records(BATCH, BATCH, 1, "A-");
    let b = records(BATCH, BATCH, 1, "B-");
    let c = records(BATCH, BATCH, 1, "C-");

    // 1–2. kcl-rs processes and checkpoints A, then shuts down gracefully.
    put_records(&kinesis, &stream, &a, 1).await;
    let first = run_kcl_rs(&stack, &python, dir, &stream, &app, "kcl-rs-1", BATCH).await;
    assert_exactly("kcl-rs (first run)", &first, &a, &[]);
    for lease in show_leases(&stack, &app, "after kcl-rs's first run").await {
        // What step 3 exercises: a lease whose owner (outside our fleet) stopped renewing.
        assert_eq!(
            lease.owner.as_deref(),
            Some("kcl-rs-1"),
            "kcl-rs 0.1.4 keeps leaseOwner set after its shutdown"
        );
    }

    // 3. Our worker continues from kcl-rs's checkpoints: all of B, none of A.
    put_records(&kinesis, &stream, &b, 1).await;
    let ours_started = Instant::now();
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "ours", &rec, Duration::from_secs(1));
    let run = spawn_run(&worker);
    let b_data: HashSet<bytes::Bytes> = b.iter().map(|s| s.data.clone()).collect();
    wait_until("our worker processing all of B", || {
        let seen: HashSet<bytes::Bytes> = rec.seen().into_iter().map(|s| s.data).collect();
        b_data.is_subset(&seen)
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    eprintln!("ours: done in {:?}", ours_started.elapsed());
    let ours: Vec<String> = rec
        .seen()
        .iter()
        .map(|s| String::from_utf8_lossy(&s.data).into_owned())
        .collect();
    assert_exactly("our worker", &ours, &b, &[&a]);
    assert!(
        rec.checkpoints.lock().unwrap().iter().all(|c| c.ok),
        "every checkpoint of our worker succeeded"
    );
    for lease in show_leases(&stack, &app, "after our worker").await {
        assert_eq!(lease.owner, None, "released at our graceful shutdown");
    }

    // 4. kcl-rs continues from our checkpoints: all of C, none of A or B.
    put_records(&kinesis, &stream, &c, 1).await;
    let second = run_kcl_rs(&stack, &python, dir, &stream, &app, "kcl-rs-2", BATCH).await;
    assert_exactly("kcl-rs (second run)", &second, &c, &[&a, &b]);
    show_leases(&stack, &app, "after kcl-rs's second run").await;
    eprintln!("the round trip took {:?}", started.elapsed());
}
