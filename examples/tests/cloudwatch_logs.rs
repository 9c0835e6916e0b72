//! The `cloudwatch_logs` example runs on the embedded stack and reads every log event out
//! of the gzip payloads.

mod common;

#[test]
fn the_cloudwatch_logs_example_reads_every_log_event() {
    let text = common::run_to_end(env!("CARGO_BIN_EXE_cloudwatch_logs"), &[]);
    assert!(text.contains("12 log events read"), "{text}");
    assert_eq!(text.matches("served").count(), 12, "{text}");
}
