//! The run, start to end: services, stream, fleet, balance, production with the split and
//! the kill, the drain, the graceful stop, the clean-up and the summary.
//!
//! ```text
//!  connect ─▶ CreateStream ─▶ spawn workers ─▶ wait: leases balanced ─▶ produce ──────────┐
//!     (Ctrl-C at any point: workers killed, resources deleted, exit 130)  │ Split ─▶ split │
//!                                                                        │ Kill ──▶ SIGKILL
//!  summary ◀─ delete stream + tables ◀─ stop workers ◀─ wait: all processed ◀─────────────┘
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_consumer::leases::{FleetTable, LeaseStore, LeaseTable};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cli::DemoArgs;
use crate::fleet::{lock, Fleet};
use crate::ledger::Ledger;
use crate::produce::{produce, producer, Milestone, Plan};
use crate::progress::{short, Progress};
use crate::reshard::{split_a_shard, Split};
use crate::services::{connect, ConnectError, Services};
use crate::summary::{text, JsonSummary};
use crate::workload::now_us;

/// How often the lease table is read for the display.
const LEASE_SCAN_EVERY: Duration = Duration::from_millis(500);
/// How long the stream may take to become ACTIVE (real AWS: tens of seconds).
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(180);

/// What the demo created, to delete at the end.
#[derive(Debug)]
struct Created {
    /// The stream.
    stream: String,
    /// The application (= lease table) name.
    app: String,
    /// Whether `CreateStream` succeeded (else there is nothing to delete).
    stream_created: AtomicBool,
}

/// Runs the demo; the exit status: 0 verified, 1 failed or something lost or reordered,
/// 2 bad arguments or not confirmed, 130 interrupted.
pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("demo: {e}");
        return ExitCode::from(2);
    }
    let started = Instant::now();
    let t0_us = now_us();
    let services = match connect(&args).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: {e}");
            return match e {
                ConnectError::NotConfirmed(_) => ExitCode::from(2),
                ConnectError::Failed(_) => ExitCode::FAILURE,
            };
        }
    };
    println!("services: {}", services.description);
    let created = Created {
        stream: kinesis_emulators::unique_name("demo"),
        app: kinesis_emulators::unique_name("demo-app"),
        stream_created: AtomicBool::new(false),
    };
    let outcome = tokio::select! {
        r = scenario(&args, &services, &created, started, t0_us) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    if !created.stream_created.load(Ordering::SeqCst) {
        // Nothing was created.
    } else if args.keep {
        println!(
            "kept: stream {}, lease tables {} and its -Workers table",
            created.stream, created.app
        );
    } else {
        clean_up(&services, &created).await;
    }
    match outcome {
        None => {
            eprintln!("demo: interrupted; the workers were killed");
            ExitCode::from(130)
        }
        Some(Err(e)) => {
            eprintln!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
        Some(Ok(true)) => ExitCode::SUCCESS,
        Some(Ok(false)) => ExitCode::FAILURE,
    }
}

/// Everything between creating the stream and the summary; `Ok(verified)`.
async fn scenario(
    args: &DemoArgs,
    services: &Services,
    created: &Created,
    started: Instant,
    t0_us: u64,
) -> Result<bool, String> {
    let kinesis = &services.kinesis;
    kinesis
        .create_stream()
        .stream_name(&created.stream)
        .shard_count(args.shards)
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateStream {}: {}",
                created.stream,
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            )
        })?;
    created.stream_created.store(true, Ordering::SeqCst);
    kinesis_emulators::wait_for_stream_active(kinesis, &created.stream, ACTIVE_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "stream {} ({} shards), application {} ({} workers, {}, failover {} ms)",
        created.stream,
        args.shards,
        created.app,
        args.workers,
        if args.efo {
            "enhanced fan-out"
        } else {
            "polling"
        },
        args.failover_ms
    );

    let names: Vec<String> = (1..=args.workers).map(|i| format!("worker-{i}")).collect();
    let ledger = Arc::new(Mutex::new(Ledger::new(t0_us, &names)));
    let (notices, notices_rx) = mpsc::unbounded_channel();
    let progress = Progress::start(
        ledger.clone(),
        notices_rx,
        args.records,
        args.plain,
        Duration::from_secs(args.progress_secs),
        started,
    );
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut worker_args = vec![
        "--app".to_owned(),
        created.app.clone(),
        "--stream".to_owned(),
        created.stream.clone(),
        "--failover-ms".to_owned(),
        args.failover_ms.to_string(),
        "--checkpoint-ms".to_owned(),
        args.checkpoint_ms.to_string(),
    ];
    if args.efo {
        worker_args.push("--efo".into());
    }
    worker_args.extend(services.worker_flags.iter().cloned());
    let mut fleet = Fleet::spawn(&exe, &names, &worker_args, &ledger, &notices)?;
    let scanner = tokio::spawn(scan_leases(
        LeaseTable::new(services.dynamodb.clone(), &created.app),
        ledger.clone(),
        notices.clone(),
    ));

    // Let the fleet share the shards before the first record (at most 3 failover times + 20 s):
    // leases spread in the table and no shard processed by two workers.
    let balance_by = Instant::now() + args.failover() * 3 + Duration::from_secs(20);
    while !lock(&ledger).balanced() {
        if Instant::now() > balance_by {
            let _ = notices.send("the leases are not balanced yet; producing anyway".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = notices.send("leases balanced: producing".into());

    let producer = producer(kinesis.clone(), services.real_account)?;
    let mut milestones = Vec::new();
    if !args.no_split {
        milestones.push((
            (args.records as f64 * args.split_at) as u64,
            Milestone::Split,
        ));
    }
    if !args.no_kill {
        milestones.push(((args.records as f64 * args.kill_at) as u64, Milestone::Kill));
    }
    let plan = Plan {
        records: args.records,
        rate: args.rate,
        keys: args.keys,
        seed: args.seed,
        milestones,
    };
    let (milestone_tx, mut milestone_rx) = mpsc::unbounded_channel();
    let production = produce(
        &producer,
        &created.stream,
        &plan,
        &ledger,
        &milestone_tx,
        &notices,
    );
    tokio::pin!(production);
    let mut produced = false;
    let mut split: Option<JoinHandle<Result<Split, String>>> = None;
    while !produced {
        tokio::select! {
            r = &mut production => { r?; produced = true; }
            Some(m) = milestone_rx.recv() => match m {
                Milestone::Split => {
                    let (k, stream) = (kinesis.clone(), created.stream.clone());
                    let _ = notices.send("splitting a shard".into());
                    split = Some(tokio::spawn(async move { split_a_shard(&k, &stream).await }));
                }
                Milestone::Kill => kill_one(&mut fleet, &ledger, &notices).await?,
            },
            r = async {
                match split.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            } => {
                split = None;
                split_done(r, &ledger, &notices)?;
            }
        }
    }
    producer.shutdown().await;
    if let Some(h) = split {
        split_done(h.await, &ledger, &notices)?;
    }
    let _ = notices.send(format!(
        "all {} records put; waiting for the fleet to process them",
        args.records
    ));

    // Drain: everything delivered processed, the kill recovered; or no progress for a while.
    let mut last = (0, Instant::now());
    loop {
        let (done, count) = {
            let l = lock(&ledger);
            (
                l.processed_count() == l.produced_count() && l.kill_recovered(),
                l.distinct_processed(),
            )
        };
        if done {
            break;
        }
        if count != last.0 {
            last = (count, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(args.stall_secs) {
            let _ = notices.send(format!(
                "no progress for {} s: giving up waiting",
                args.stall_secs
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = notices.send("stopping the workers (graceful: leases released)".into());
    for p in fleet.stop().await {
        let _ = notices.send(p);
    }
    scanner.abort();
    progress.finish().await;

    let report = lock(&ledger).report();
    let mut problems = report.problems();
    if lock(&ledger).workers.iter().any(|w| w.failed.is_some()) {
        problems.push("a worker failed".into());
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    print!("{}", text(&report, &problems, elapsed_s));
    if args.json_summary {
        let json = JsonSummary {
            ok: problems.is_empty(),
            problems: &problems,
            elapsed_s,
            kill_to_resumed_s: report.kill_to_resumed_s(),
            efo: args.efo,
            report: &report,
        };
        println!(
            "{}",
            serde_json::to_string(&json).map_err(|e| format!("the JSON summary: {e}"))?
        );
    }
    Ok(problems.is_empty())
}

/// Books the split's outcome.
fn split_done(
    r: Result<Result<Split, String>, tokio::task::JoinError>,
    ledger: &Arc<Mutex<Ledger>>,
    notices: &mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let (parent, children) = r.map_err(|e| format!("the split task: {e}"))??;
    let _ = notices.send(format!(
        "split {parent} into {} (they start once {parent} is finished)",
        children.join(" and ")
    ));
    lock(ledger).split(&parent, &children);
    Ok(())
}

/// Kills the worker processing the most shards, and books it.
async fn kill_one(
    fleet: &mut Fleet,
    ledger: &Arc<Mutex<Ledger>>,
    notices: &mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let (victim, name) = {
        let l = lock(ledger);
        let v = l.busiest_worker();
        (v, l.workers[v].name.clone())
    };
    let at = now_us();
    fleet.kill(victim).await?;
    let shards = lock(ledger).killed(victim, at);
    let _ = notices.send(format!(
        "KILLED {name} with SIGKILL (no shutdown, no lease release, no last checkpoint); it was processing [{}]",
        shards.iter().map(|s| short(s)).collect::<Vec<_>>().join(" ")
    ));
    Ok(())
}

/// Reads the lease table for the display until aborted.
async fn scan_leases(
    table: LeaseTable,
    ledger: Arc<Mutex<Ledger>>,
    notices: mpsc::UnboundedSender<String>,
) {
    loop {
        // The first worker creates the table: errors until then are expected.
        if let Ok(leases) = table.list_leases().await {
            for n in lock(&ledger).set_leases(&leases) {
                let _ = notices.send(n);
            }
        }
        tokio::time::sleep(LEASE_SCAN_EVERY).await;
    }
}

/// Deletes the stream (with its fan-out consumer) and both lease tables; failures are said.
async fn clean_up(services: &Services, created: &Created) {
    let mut failed = Vec::new();
    if let Err(e) = services
        .kinesis
        .delete_stream()
        .stream_name(&created.stream)
        .enforce_consumer_deletion(true)
        .send()
        .await
    {
        failed.push(format!(
            "stream {}: {}",
            created.stream,
            aws_sdk_kinesis::error::DisplayErrorContext(e)
        ));
    }
    let workers_table = FleetTable::for_lease_table(services.dynamodb.clone(), &created.app)
        .table_name()
        .to_owned();
    for table in [created.app.clone(), workers_table] {
        match services
            .dynamodb
            .delete_table()
            .table_name(&table)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => failed.push(format!(
                "table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            )),
        }
    }
    if failed.is_empty() {
        println!("deleted stream {} and the lease tables", created.stream);
    } else {
        eprintln!(
            "demo: could not delete (remove by hand): {}",
            failed.join("; ")
        );
    }
}
