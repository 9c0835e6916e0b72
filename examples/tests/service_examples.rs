//! The producer service, checkpointing worker, fan-out, Prometheus and file sink examples
//! each run to their end on the embedded stack and account for every record.

mod common;

use common::{numbers, run_to_end};

/// The last line of an example's output.
fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[test]
fn the_producer_service_delivers_every_record_it_put() {
    let text = run_to_end(
        env!("CARGO_BIN_EXE_producer_service"),
        &["--records", "3000"],
    );
    assert_eq!(numbers(last_line(&text)), [3000, 3000, 0], "{text}");
}

#[test]
fn the_checkpointing_workers_process_every_record_with_fewer_checkpoints_than_batches() {
    let text = run_to_end(env!("CARGO_BIN_EXE_checkpointing_worker"), &[]);
    let n = numbers(last_line(&text));
    assert_eq!(n.len(), 4, "{text}");
    assert_eq!(n[0], 5000, "{text}");
    assert_eq!(n[1], n[0], "every delivered record processed: {text}");
    // Deliveries: each record at least once (again after a lease moved, from the last
    // checkpoint on).
    assert!(n[2] >= n[1], "{text}");
    // 5,000 records over 4 shards at one checkpoint per 500 records: about 10, never 0.
    assert!((1..=20).contains(&n[3]), "{text}");
}

#[test]
fn the_fan_out_consumer_reads_every_record() {
    let text = run_to_end(env!("CARGO_BIN_EXE_fan_out_consumer"), &[]);
    let n = numbers(last_line(&text));
    assert_eq!(n[..2], [200, 200], "{text}");
}

#[test]
fn the_prometheus_scrape_names_producer_and_consumer_metrics() {
    let text = run_to_end(env!("CARGO_BIN_EXE_prometheus_metrics"), &[]);
    for name in [
        kinesis_producer::metric_names::USER_RECORDS_DELIVERED,
        kinesis_producer::metric_names::PUT_RECORDS_CALLS,
        kinesis_consumer::metric_names::RECORDS_PROCESSED,
        kinesis_consumer::metric_names::LEASES_HELD,
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let delivered = text
        .lines()
        .find(|l| l.starts_with(kinesis_producer::metric_names::USER_RECORDS_DELIVERED))
        .map(numbers)
        .and_then(|n| n.last().copied());
    assert_eq!(delivered, Some(1000), "{text}");
}

#[test]
fn the_file_sink_writes_every_record_to_files() {
    let dir = std::env::temp_dir().join(kinesis_emulators::LocalStack::unique_name("sink-test"));
    let text = run_to_end(
        env!("CARGO_BIN_EXE_file_sink"),
        &[dir.to_str().expect("utf-8 temp dir")],
    );
    let n = numbers(last_line(&text));
    assert_eq!(n[..2], [20_000, 20_000], "{text}");
    let mut lines = 0;
    for entry in std::fs::read_dir(&dir).expect("sink dir") {
        let path = entry.expect("entry").path();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonl"),
            "{path:?}"
        );
        lines += std::fs::read_to_string(&path)
            .expect("file")
            .lines()
            .count();
    }
    assert_eq!(lines, 20_000);
    std::fs::remove_dir_all(&dir).ok();
}
