//! The `stream_consumer` example runs on the embedded stack, prints every record it put,
//! and stops gracefully on Ctrl-C (SIGINT).

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A bound to fail on instead of hanging, never a measured assertion.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn the_stream_consumer_example_prints_every_record_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stream_consumer"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stream_consumer");
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // "shardId-… customer-K order-N", one line per record.
    let mut seen = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while seen.len() < 100 {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            child.kill().ok();
            panic!("{} records printed in {LIMIT:?}: {seen:?}", seen.len());
        };
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert!(fields[0].starts_with("shardId-"), "{line}");
        assert!(fields[1].starts_with("customer-"), "{line}");
        seen.push(fields[2].to_owned());
    }
    let expected: HashSet<String> = (0..100).map(|i| format!("order-{i}")).collect();
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    assert_eq!(seen.len(), 100, "each record once");

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(interrupted.success(), "kill -INT");
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the example did not stop after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().expect("status");
    reader.join().expect("stdout reader");
    let errors = errors.join().expect("stderr reader");
    assert!(status.success(), "{status:?}: {errors}");
    assert!(
        errors.contains("stopping") && errors.ends_with("stopped\n"),
        "{errors}"
    );
    assert!(
        lines.try_recv().is_err(),
        "nothing more after the 100 records"
    );
}
