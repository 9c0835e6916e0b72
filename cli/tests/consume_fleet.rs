//! Fleets of `kinesis-cat consume` processes on one lease table, as an operator runs them:
//!
//! - a multi-stream application read from `--streams-file` by two workers, while a stream is
//!   added to the file and another removed from it: every record of the streams consumed is
//!   printed (duplicates only where a lease moved and its checkpoint did not cover them),
//!   records of the removed stream put after its removal are not, the added stream starts at
//!   the position its line gives, and the removed stream's leases are deleted after
//!   `--former-streams-delete-after`; a file with a bad line, or none, leaves the list as
//!   it was (with a warning), and stops the start with status 2;
//! - `--balancing throughput` with three workers on six shards, one carrying most of the
//!   traffic: the worker holding the hot shard ends holding it alone (by count it would
//!   hold two, as each of the others), and nothing is lost.
//!
//! ```text
//!  this test ──spawns──▶ N × `kinesis-cat consume --output json` (CARGO_BIN_EXE_kinesis-cat)
//!     │                    stdout JSON lines ─▶ a reader thread per process ─▶ lines
//!     │                    stderr lines ─────▶ a reader thread per process ─▶ logs
//!     ├─ puts records (PutRecords; explicit hash keys for the hot shard)
//!     ├─ watches the lease table every 20 ms ─▶ moves (lease, from, checkpoint then)
//!     └─ waits for conditions (never for a time), then SIGTERM, then checks every line
//! ```

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::fleet::{put, stop_all, wait_for, Line, Worker, DEADLINE};
use common::Env;
use integration_tests::traffic::Traffic;
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::{Checkpoint, SequenceNumber};

/// The stream and shard of a lease: its own for a multi-stream lease, `single` otherwise.
fn place(lease: &kinesis_consumer::Lease, single: &str) -> (String, String) {
    match &lease.stream {
        Some(id) => (id.stream_name().to_owned(), lease.shard_id().to_owned()),
        None => (single.to_owned(), lease.lease_key.clone()),
    }
}

/// A lease that left a live owner (stolen, or released and taken).
#[derive(Debug, Clone)]
struct Move {
    /// Its stream and shard.
    place: (String, String),
    /// Its checkpoint at the last look that still showed the owner it left: at or before
    /// the one the next owner started from.
    checkpoint: Checkpoint,
}

/// Watches the lease table every 20 ms until `stop`, and returns the moves it saw.
fn watch_leases(
    table: LeaseTable,
    single: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Move>> {
    tokio::spawn(async move {
        let mut last: HashMap<String, (Option<String>, Checkpoint)> = HashMap::new();
        let mut moves = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(leases) = table.list_leases().await {
                for l in leases {
                    if let Some((Some(from), cp)) = last.get(&l.lease_key) {
                        if l.owner.as_ref() != Some(from) {
                            moves.push(Move {
                                place: place(&l, &single),
                                checkpoint: cp.clone(),
                            });
                        }
                    }
                    last.insert(l.lease_key.clone(), (l.owner, l.checkpoint));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        moves
    })
}

/// The library's delivery rule, checked on every line: a record printed more than once
/// is on a shard whose lease moved (a steal, or a release and take) while the lease's
/// checkpoint did not cover it (the next owner starts after the checkpoint). The move may
/// be from another owner than the copies' printers: an owner that held the lease only
/// between two looks of the watcher is never seen, and the checkpoint before it is at or
/// before the one it left. Returns the number of duplicate lines.
fn check_duplicates(lines: &[Line], moves: &[Move]) -> usize {
    let mut copies: HashMap<&str, Vec<&Line>> = HashMap::new();
    for l in lines {
        copies.entry(l.data.as_str()).or_default().push(l);
    }
    let explained = |l: &Line| {
        let seq = SequenceNumber::parse(&l.sequence_number).expect("a sequence number");
        moves.iter().any(|m| {
            m.place.0 == l.stream
                && m.place.1 == l.shard
                && !m.checkpoint.covers(&seq, l.sub_sequence_number)
        })
    };
    let mut by_worker: HashMap<&str, usize> = HashMap::new();
    for l in lines {
        *by_worker.entry(l.worker.as_str()).or_default() += 1;
    }
    eprintln!("lines printed by each worker: {by_worker:?}");
    let mut duplicates = 0;
    for (data, copies) in &copies {
        if copies.len() > 1 {
            duplicates += copies.len() - 1;
            assert!(
                copies.iter().any(|l| explained(l)),
                "{data} printed {} times with no lease move to explain it: {copies:?}; \
                 moves: {moves:?}",
                copies.len()
            );
        }
    }
    duplicates
}

/// The owners of the table's leases, by stream and shard (`None`: unowned).
async fn owners(table: &LeaseTable, single: &str) -> HashMap<(String, String), Option<String>> {
    table
        .list_leases()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| (place(&l, single), l.owner))
        .collect()
}

/// Waits until `leases` leases are owned, by every one of `workers`, and the owners have
/// held still for two failover times (so that the start, where workers race for new
/// leases, is over before records are put).
async fn wait_settled(
    table: &LeaseTable,
    single: &str,
    leases: usize,
    workers: usize,
    failover: Duration,
) {
    let start = Instant::now();
    let mut last = HashMap::new();
    let mut since = Instant::now();
    loop {
        let now = owners(table, single).await;
        if now != last {
            last = now;
            since = Instant::now();
        }
        let held: HashSet<&String> = last.values().flatten().collect();
        if last.values().filter(|o| o.is_some()).count() == leases
            && held.len() == workers
            && since.elapsed() >= 2 * failover
        {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for every lease owned, by every worker, and still: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The payloads printed, of one stream.
fn printed_of(lines: &Arc<Mutex<Vec<Line>>>, stream: &str) -> HashSet<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.data.clone())
        .collect()
}

/// Writes `text` to `path` atomically (another file renamed over it), as the help says.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write the new list");
    std::fs::rename(&tmp, path).expect("rename it over the list");
}

/// A directory of its own for `app`'s files.
fn work_dir(app: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(app);
    std::fs::create_dir_all(&dir).expect("a work directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_added_and_one_removed_while_two_worker_processes_run_from_a_streams_file() {
    let stack = common::stack().await;
    let kinesis = stack.kinesis_client();
    let a = stack.create_stream("fleet-a", 2).await.unwrap();
    let b = stack.create_stream("fleet-b", 1).await.unwrap();
    let c = stack.create_stream("fleet-c", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("fleet-ms-app");
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    let env = Env::stack(&stack);
    let failover = Duration::from_millis(1_000);

    // c's records before the position its line will give are never read; some emulators
    // keep arrival times in whole seconds: a clear gap on both sides of it.
    let c0 = put(&kinesis, &c, "c0", 10).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let c_from = SystemTime::now();
    let c_from_text = {
        let d = c_from.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        format!("{}.{:03}", d.as_secs(), d.subsec_millis())
    };

    let dir = work_dir(&app);
    let file = dir.join("streams");
    replace_file(
        &file,
        &format!("# the first list\n{a}\n\n{b}   # one shard\n"),
    );
    let file_arg = file.display().to_string();
    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = watch_leases(
        LeaseTable::new(stack.dynamodb_client(), &app),
        String::new(),
        stop_watching.clone(),
    );
    let args = [
        "--app",
        &app,
        "--streams-file",
        &file_arg,
        "--stream-tracker-interval",
        "200ms",
        "--former-streams-delete-after",
        "2s",
        "--shard-sync-interval",
        "500ms",
        "--failover-ms",
        "1000",
    ];
    let workers: Vec<Worker> = (0..2)
        .map(|n| Worker::spawn(&env, &format!("w{n}"), &args, &lines, &bad))
        .collect();
    wait_settled(&table, "", 3, 2, failover).await;
    for w in &workers {
        assert!(
            w.said(&format!("starting on the streams {file_arg} lists")),
            "{:?}",
            w.stderr.lock().unwrap()
        );
    }

    // A bad line, then no file at all: the workers say so and keep the list they had
    // (a is still consumed although the bad file leaves it out).
    replace_file(&file, &format!("{b}\nnot a stream!\n"));
    let bad_line = format!("{file_arg}:2:");
    wait_for("both workers to warn of the bad line", || async {
        workers
            .iter()
            .all(|w| w.said(&bad_line) && w.said("stream list stays as it was"))
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    let unreadable = format!("cannot read streams file {file_arg}");
    wait_for("both workers to warn of the missing file", || async {
        workers.iter().all(|w| w.said(&unreadable))
    })
    .await;
    let a1 = put(&kinesis, &a, "a1", 40).await;
    let b1 = put(&kinesis, &b, "b1", 20).await;
    wait_for("a1 and b1 printed", || async {
        printed_of(&lines, &a).is_superset(&a1.iter().cloned().collect())
            && printed_of(&lines, &b).is_superset(&b1.iter().cloned().collect())
    })
    .await;

    // The file changes: c added at its own position, a removed.
    wait_for("a second past c's start position", || async {
        c_from.elapsed().unwrap_or_default() >= Duration::from_millis(1_100)
    })
    .await;
    let c1 = put(&kinesis, &c, "c1", 20).await;
    replace_file(
        &file,
        &format!("{b}\n{c}  at-timestamp:{c_from_text}   # added while running\n"),
    );
    let said = format!("added: {c}; removed: {a}");
    wait_for("both workers to read the new list", || async {
        workers.iter().all(|w| w.said(&said))
    })
    .await;
    wait_for("c1 printed", || async {
        printed_of(&lines, &c).is_superset(&c1.iter().cloned().collect())
    })
    .await;
    // a's leases are released when its consumers have stopped, and deleted once a worker
    // has seen a untracked for the grace period.
    wait_for("a's leases deleted", || async {
        let leases = table.list_leases().await.expect("a scan");
        !leases.iter().any(|l| place(l, "").0 == a)
    })
    .await;

    // Records put now: a's are not consumed any more, b's and c's are.
    let a2 = put(&kinesis, &a, "a2", 20).await;
    let b2 = put(&kinesis, &b, "b2", 20).await;
    let c2 = put(&kinesis, &c, "c2", 20).await;
    wait_for("b2 and c2 printed", || async {
        printed_of(&lines, &b).is_superset(&b2.iter().cloned().collect())
            && printed_of(&lines, &c).is_superset(&c2.iter().cloned().collect())
    })
    .await;
    let leases = owners(&table, "").await;
    let streams_left: HashSet<&String> = leases.keys().map(|(s, _)| s).collect();
    assert_eq!(
        streams_left,
        HashSet::from([&b, &c]),
        "no worker consumes a any more (its leases would be back): {leases:?}"
    );

    stop_all(workers).await;
    stop_watching.store(true, Ordering::Relaxed);
    let moves = watcher.await.unwrap();
    assert!(bad.lock().unwrap().is_empty(), "not JSON lines: {bad:?}");
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    let all = |sets: &[&Vec<String>]| -> HashSet<String> {
        sets.iter().flat_map(|s| s.iter().cloned()).collect()
    };
    let printed = |stream: &str| -> HashSet<String> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.data.clone())
            .collect()
    };
    // Every line names its stream; each stream's records, exactly the expected ones.
    for l in &lines {
        let tag = &l.data[..1];
        let want = [("a", &a), ("b", &b), ("c", &c)]
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, s)| *s);
        assert_eq!(Some(&l.stream), want, "{l:?}");
    }
    assert_eq!(
        printed(&a),
        all(&[&a1]),
        "a: a1 only, nothing put after its removal"
    );
    assert!(
        printed(&a).is_disjoint(&all(&[&a2])),
        "a2 put after a's removal"
    );
    assert_eq!(printed(&b), all(&[&b1, &b2]));
    assert_eq!(
        printed(&c),
        all(&[&c1, &c2]),
        "c from its position: none of c0 ({c0:?})"
    );
    let duplicates = check_duplicates(&lines, &moves);
    eprintln!(
        "{} lines, {duplicates} duplicates, {} lease moves between owners",
        lines.len(),
        moves.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_balancing_leaves_a_hot_shard_alone_on_its_worker_process() {
    let stack = common::stack().await;
    let kinesis = stack.kinesis_client();
    let stream = stack.create_stream("fleet-hot", 6).await.unwrap();
    let app = kinesis_emulators::unique_name("fleet-hot-app");
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    let env = Env::stack(&stack);
    let failover = Duration::from_millis(1_000);
    let shards = integration_tests::kinesis::list_shards(&kinesis, &stream).await;
    assert_eq!(shards.len(), 6);
    let hot = shards[0].shard_id().to_owned();

    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = watch_leases(
        LeaseTable::new(stack.dynamodb_client(), &app),
        stream.clone(),
        stop_watching.clone(),
    );
    let args = [
        "--stream",
        &stream,
        "--app",
        &app,
        "--balancing",
        "throughput",
        "--failover-ms",
        "1000",
    ];
    let workers: Vec<Worker> = (0..3)
        .map(|n| Worker::spawn(&env, &format!("w{n}"), &args, &lines, &bad))
        .collect();
    // Nothing measured yet: by count, two each.
    wait_settled(&table, &stream, 6, 3, failover).await;

    // The producer: most records to the hot shard, every 100 ms until stopped (about
    // 117 KB/s against 10 KB/s each, 70 % of the traffic on one shard of six).
    let traffic = Traffic::hot_shard(&kinesis, &stream, &shards, &hot);

    // The hot shard's holder ends with it alone, the other five shards on the two others
    // (by count, 2/2/2 would hold: a worker with one lease of six would steal one).
    let start = Instant::now();
    let settled = loop {
        let now = owners(&table, &stream).await;
        let mut held: HashMap<String, Vec<String>> = HashMap::new();
        for ((_, shard), owner) in &now {
            if let Some(o) = owner {
                held.entry(o.clone()).or_default().push(shard.clone());
            }
        }
        if let Some(Some(holder)) = now.get(&(stream.clone(), hot.clone())) {
            let alone = held[holder] == [hot.clone()];
            let others_fuller = held.len() == 3
                && held
                    .iter()
                    .filter(|(w, _)| *w != holder)
                    .all(|(_, shards)| shards.len() >= 2);
            if alone && others_fuller {
                break held;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for the hot shard {hot} alone on its worker: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("leases held: {settled:?}");
    // What the balance weighed: the figures measured on the leases, the hot one far above.
    let leases = table.list_leases().await.unwrap();
    let kbps = |key: &str| {
        leases
            .iter()
            .find(|l| l.lease_key == key)
            .and_then(|l| l.throughput)
            .map_or(0.0, |t| t.kbps())
    };
    for shard in shards.iter().map(|s| s.shard_id()).filter(|s| *s != hot) {
        assert!(
            kbps(&hot) > 4.0 * kbps(shard),
            "{hot}: {} KB/s against {shard}: {}",
            kbps(&hot),
            kbps(shard)
        );
    }

    let want: HashSet<String> = traffic.stop().await.into_iter().collect();
    wait_for("every record printed", || async {
        let seen: HashSet<String> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.data.clone())
            .collect();
        want.is_subset(&seen)
    })
    .await;
    stop_all(workers).await;
    stop_watching.store(true, Ordering::Relaxed);
    let moves = watcher.await.unwrap();
    assert!(bad.lock().unwrap().is_empty(), "not JSON lines: {bad:?}");
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    let seen: HashSet<&String> = lines.iter().map(|l| &l.data).collect();
    assert_eq!(seen, want.iter().collect(), "every record, nothing else");
    for l in &lines {
        assert_eq!(l.stream, stream, "{l:?}");
        assert!(
            l.data.starts_with(&l.shard),
            "on the shard it was put to: {l:?}"
        );
    }
    let duplicates = check_duplicates(&lines, &moves);
    eprintln!(
        "{} records, {} lines, {duplicates} duplicates, {} lease moves",
        want.len(),
        lines.len(),
        moves.len()
    );
}

#[test]
fn a_bad_streams_file_stops_the_start_with_status_2_naming_the_file_and_line() {
    // Nothing is called: the file is read before the AWS configuration is loaded.
    let env = Env::isolated();
    let dir = work_dir(&kinesis_emulators::unique_name("fleet-bad-file"));
    let file = dir.join("streams");
    let path = file.display().to_string();
    let run = |args: &[&str]| {
        let mut argv = vec!["consume", "--app", "bad-file-app"];
        argv.extend_from_slice(args);
        common::run(&env, &argv)
    };
    let f = run(&["--streams-file", &path]);
    assert_eq!(f.code(), Some(2), "{f:?}");
    assert!(
        f.stderr
            .contains(&format!("cannot read streams file {path}")),
        "{}",
        f.stderr
    );
    for (text, line, what) in [
        ("orders\n# fine\nbad!name\n", 3, "bad!name"),
        ("orders sometime\n", 1, "sometime"),
        ("orders\norders latest\n", 2, "listed twice"),
    ] {
        std::fs::write(&file, text).unwrap();
        let f = run(&["--streams-file", &path]);
        assert_eq!(f.code(), Some(2), "{text:?}: {f:?}");
        assert!(
            f.stderr.contains(&format!("{path}:{line}:")) && f.stderr.contains(what),
            "{text:?}: {}",
            f.stderr
        );
    }
    std::fs::write(&file, "# nothing yet\n").unwrap();
    let f = run(&["--streams-file", &path]);
    assert_eq!(f.code(), Some(2), "{f:?}");
    assert!(f.stderr.contains("lists no stream"), "{}", f.stderr);
    // Not both ways of naming streams.
    let f = run(&["--streams-file", &path, "--stream", "orders"]);
    assert_eq!(f.code(), Some(2), "{f:?}");
    assert!(f.stderr.contains("--stream"), "{}", f.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}
