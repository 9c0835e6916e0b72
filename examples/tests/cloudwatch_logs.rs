//! The `cloudwatch_logs` example runs on the embedded stack and reads every log event out
//! of the gzip payloads.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_cloudwatch_logs_example_reads_every_log_event() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudwatch_logs"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cloudwatch_logs");
    // A bound to fail on instead of hanging, never a measured assertion.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the example did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("12 log events read"), "{text}");
    assert_eq!(text.matches("served").count(), 12, "{text}");
}
