//! Three `kinesis-cat consume` workers as separate processes sharing 8 shards: balance,
//! `kill -9` of one mid-stream, takeover with no loss, duplicates only after the dead
//! worker's last checkpoint, and a graceful SIGTERM exit of the survivors.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::fleet::{put, stop_all, wait_for, Line, Worker, DEADLINE};
use common::Env;
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::{Checkpoint, SequenceNumber};
use tokio::process::Command;

/// `kinesis-cat consume --worker-id worker-N --output json` on `stream` for `app` (failover
/// 2 s), its lines to `lines`.
fn spawn_worker(
    stack: &kinesis_emulators::LocalStack,
    stream: &str,
    app: &str,
    n: usize,
    lines: &Arc<Mutex<Vec<Line>>>,
    bad: &Arc<Mutex<Vec<String>>>,
) -> Worker {
    let args = ["--stream", stream, "--app", app, "--failover-ms", "2000"];
    Worker::spawn(
        &Env::stack(stack),
        &format!("worker-{n}"),
        &args,
        lines,
        bad,
    )
}

async fn owners(table: &LeaseTable) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    // Before the first worker created the table there is nothing to show.
    for l in table.list_leases().await.unwrap_or_default() {
        if let Some(o) = l.owner {
            m.entry(o).or_default().push(l.lease_key);
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_balance_and_survive_kill_9() {
    let stack = common::stack().await;
    let stream = stack.create_stream("kcl-procs", 8).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-procs-app");
    let kinesis = stack.kinesis_client();
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    put(&kinesis, &stream, "before", 4_000).await;

    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let mut workers: Vec<Option<Worker>> = (0..3)
        .map(|n| Some(spawn_worker(&stack, &stream, &app, n, &lines, &bad)))
        .collect();
    wait_for("3/3/2", || async {
        let o = owners(&table).await;
        let mut counts: Vec<usize> = o.values().map(Vec::len).collect();
        counts.sort();
        counts == vec![2, 3, 3]
    })
    .await;
    let balanced_after = started.elapsed();
    // Settled: no lease moves for a whole taker interval, so no steal touches the
    // records put from now on.
    let mut last = owners(&table).await;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(4_500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = owners(&table).await;
        if now != last {
            last = now;
            since = Instant::now();
        }
        assert!(started.elapsed() < DEADLINE, "leases never settle");
    }

    let producer = {
        let (kinesis, stream) = (kinesis.clone(), stream.clone());
        tokio::spawn(async move {
            for b in 0..30 {
                put(&kinesis, &stream, &format!("during{b}"), 200).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_for("records flowing", || async {
        lines.lock().unwrap().len() > 5_000
    })
    .await;

    // kill -9 a worker holding three leases.
    let o = owners(&table).await;
    let (victim_id, victim_shards) = o.iter().find(|(_, v)| v.len() == 3).unwrap();
    let victim = victim_id.clone();
    let victim_shards: HashSet<String> = victim_shards.iter().cloned().collect();
    let n: usize = victim.trim_start_matches("worker-").parse().unwrap();
    let killed_at = Instant::now();
    workers[n].take().unwrap().kill_9();
    // Its checkpoints cannot move any more: read them now.
    let dead_checkpoints: HashMap<String, Checkpoint> = table
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| victim_shards.contains(&l.lease_key))
        .map(|l| (l.lease_key, l.checkpoint))
        .collect();
    let seen_before_kill = lines.lock().unwrap().len();
    wait_for(
        "survivors process every shard of the dead worker",
        || async {
            let l = lines.lock().unwrap();
            let resumed: HashSet<&String> = l[seen_before_kill..]
                .iter()
                .filter(|x| x.worker != victim && victim_shards.contains(&x.shard))
                .map(|x| &x.shard)
                .collect();
            resumed.len() == victim_shards.len()
        },
    )
    .await;
    let failover_took = killed_at.elapsed();
    producer.await.unwrap();
    let expected = 4_000 + 30 * 200;
    wait_for("every record", || async {
        let l = lines.lock().unwrap();
        l.iter().map(|x| &x.data).collect::<HashSet<_>>().len() >= expected
    })
    .await;
    // SIGTERM: graceful shutdown, exit 0.
    stop_all(workers.into_iter().flatten().collect()).await;
    assert!(bad.lock().unwrap().is_empty(), "not JSON lines: {bad:?}");
    eprintln!(
        "balanced 3/3/2 after {balanced_after:?}; dead worker's shards processing again after \
         {failover_took:?} (failover 2 s, taker every 4.05 s)"
    );

    {
        let lines = lines.lock().unwrap();
        let mut first: HashMap<&str, &Line> = HashMap::new();
        let mut balancing_duplicates = 0;
        for l in lines.iter() {
            match first.get(l.data.as_str()) {
                None => {
                    first.insert(&l.data, l);
                }
                // Records put before the fleet settled may repeat where a lease was stolen
                // during balancing (as with the Java KCL).
                Some(_) if l.data.starts_with("before") => balancing_duplicates += 1,
                Some(f) => {
                    assert_eq!(
                        f.worker, victim,
                        "only the dead worker's records repeat: {l:?}"
                    );
                    let cp = dead_checkpoints.get(&l.shard).unwrap_or_else(|| {
                        panic!("{l:?} repeated on a shard the dead worker did not hold")
                    });
                    assert!(
                        !cp.covers(
                            &SequenceNumber::parse(&l.sequence_number).unwrap(),
                            l.sub_sequence_number
                        ),
                        "{l:?} was checkpointed at {cp} and delivered again"
                    );
                }
            }
        }
        eprintln!("{balancing_duplicates} duplicates from steals while balancing");
        assert_eq!(first.len(), expected, "nothing lost");
    }

    // `kinesis-cat ARGS` aimed at the stack, run by Tokio.
    let env = Env::stack(&stack);
    let cat = |args: &[&str]| Command::from(env.command(args));
    // `leases` shows the table: every shard, released (no owner) after the graceful exits.
    let out = cat(&["leases", "--app", &app, "--stream", &stream])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let (lease_rows, workers) = text.split_once("\n\n").expect("a workers section");
    let rows: Vec<&str> = lease_rows.lines().skip(1).collect();
    assert_eq!(rows.len(), 8, "{text}");
    // Every worker left the fleet on its way out: only the header remains.
    assert_eq!(workers.lines().count(), 1, "{text}");
    assert!(
        !text.contains("handoff"),
        "no handoff pending, no column: {text}"
    );

    // A graceful handoff a Java KCL 3.x leader started (worker-1 is the next owner, the
    // previous owner still finishing) shows on its lease and its previous owner's row.
    let handed = table.list_leases().await.unwrap().remove(0);
    let Checkpoint::Sequence {
        sequence_number, ..
    } = &handed.checkpoint
    else {
        panic!("checkpointed at a record: {handed:?}")
    };
    integration_tests::kcl3::seed_pending_handoff(
        &stack.dynamodb_client(),
        &app,
        &handed.lease_key,
        sequence_number.as_str(),
        "worker-1",
    )
    .await;
    let from = integration_tests::kcl3::HANDOFF_FROM;
    // One showing: the lease table, then the workers.
    let check_handoff = |lease_rows: &str, workers: &str| {
        let text = format!("{lease_rows}\n\n{workers}");
        let mut lines = lease_rows.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(header.last(), Some(&"handoff"), "{text}");
        for row in lines {
            let cells: Vec<&str> = row.split_whitespace().collect();
            if cells[0] == handed.lease_key {
                assert_eq!(cells[1], "worker-1", "the next owner: {row}");
                assert!(row.ends_with(&format!("from {from}")), "{row}");
            } else {
                assert_eq!(cells.last(), Some(&"-"), "no handoff: {row}");
            }
        }
        let mut workers = workers.lines();
        assert!(workers.next().unwrap().ends_with("handing off"), "{text}");
        let previous = workers
            .find(|w| w.starts_with(from))
            .unwrap_or_else(|| panic!("{from} still finishing: {text}"));
        assert!(previous.ends_with(" 1"), "{previous}");
    };
    let out = cat(&["leases", "--app", &app]).output().await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let (lease_rows, workers) = text.split_once("\n\n").expect("a workers section");
    check_handoff(lease_rows, workers);

    // `leases --watch 1` shows the tables again every second (one after the other, stdout
    // not being a terminal) until SIGTERM, then exits 0.
    let watch = cat(&["leases", "--app", &app, "--watch", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let term = Command::new("kill")
        .args(["-TERM", &watch.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    let out = watch.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let shown = text.lines().filter(|l| l.starts_with("shard ")).count();
    assert!(shown >= 2, "shown {shown} times:\n{text}");
    // Each time with the pending handoff (a blank line after each table).
    let tables: Vec<&str> = text.split("\n\n").filter(|t| !t.is_empty()).collect();
    assert_eq!(tables.len(), 2 * shown, "{text}");
    for showing in tables.chunks_exact(2) {
        check_handoff(showing[0], showing[1]);
    }
    for row in rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1], "-", "released: {row}");
        assert!(cells[4].contains('/'), "checkpointed at a record: {row}");
        assert!(
            cells[3].parse::<f64>().is_ok(),
            "throughput written with the checkpoints: {row}"
        );
    }

    // `tail` reads every shard without leases.
    let out = cat(&[
        "tail",
        "--stream",
        &stream,
        "--from",
        "trim-horizon",
        "--exit-when-idle",
        "2",
    ])
    .output()
    .await
    .unwrap();
    assert!(out.status.success());
    let tailed: HashSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["data"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(tailed.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_continue_a_table_the_java_kcl_3_5_wrote() {
    let stack = common::stack().await;
    let stream = stack.create_stream("kcl3-procs", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl3-procs-app");
    let kinesis = stack.kinesis_client();
    let dynamodb = stack.dynamodb_client();

    // 400 records; each shard's are known in order from PutRecords' answers.
    let entries: Vec<PutRecordsRequestEntry> = (0..400)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("key-{i}"))
                .data(Blob::new(format!("r{i}")))
                .build()
                .unwrap()
        })
        .collect();
    let out = kinesis
        .put_records()
        .stream_name(&stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();
    let mut by_shard: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (i, r) in out.records().iter().enumerate() {
        by_shard
            .entry(r.shard_id().unwrap().to_owned())
            .or_default()
            .push((r.sequence_number().unwrap().to_owned(), format!("r{i}")));
    }
    assert_eq!(by_shard.len(), 4, "every shard got records");

    // The Java KCL 3.5's table: each shard checkpointed at its 10th record.
    LeaseTable::new(dynamodb.clone(), &app)
        .create_table_if_not_exists()
        .await
        .unwrap();
    let mut want: HashSet<String> = HashSet::new();
    let mut seeded = Vec::new();
    for (shard, records) in &by_shard {
        want.extend(records[10..].iter().map(|(_, d)| d.clone()));
        seeded.push((shard.clone(), records[9].0.clone()));
    }
    let others = integration_tests::kcl3::seed_single_table(&dynamodb, &app, &seeded).await;

    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let bad: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers: Vec<Worker> = (0..2)
        .map(|n| spawn_worker(&stack, &stream, &app, n, &lines, &bad))
        .collect();
    wait_for("the records after the checkpoints", || async {
        let l = lines.lock().unwrap();
        l.iter().map(|x| &x.data).collect::<HashSet<_>>().len() >= want.len()
    })
    .await;
    stop_all(workers).await;
    assert!(bad.lock().unwrap().is_empty(), "not JSON lines: {bad:?}");
    let got: HashSet<String> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.data.clone())
        .collect();
    assert_eq!(got, want, "exactly the records after the 3.x checkpoints");
    integration_tests::kcl3::assert_left_alone(
        &dynamodb,
        &app,
        &others,
        by_shard.keys().map(String::as_str),
    )
    .await;
}
