//! The demo, end to end on the embedded emulators in a reduced mode (3,000 records, still
//! with the split and the SIGKILL), checked through its `--json-summary` line; and its
//! refusals (a real AWS account without `--yes`, bad flags).

mod common;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

/// A bound to fail on instead of hanging, never a measured assertion.
const LIMIT: Duration = Duration::from_secs(240);

/// Runs the demo with `args` and no endpoint overrides; its output once it ended.
fn demo(args: &[&str], env: &[(&str, &str)]) -> Output {
    common::run(env!("CARGO_BIN_EXE_demo"), args, env, LIMIT)
}

/// The reduced run's flags.
const REDUCED: &[&str] = &[
    "--records",
    "3000",
    "--rate",
    "600",
    "--failover-ms",
    "2000",
    "--checkpoint-ms",
    "500",
    "--plain",
    "--json-summary",
];

/// Checks a reduced run's summary; returns it.
fn check_reduced_run(extra: &[&str]) -> Value {
    let args: Vec<&str> = REDUCED.iter().chain(extra).copied().collect();
    let out = demo(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary:\n{stdout}"));
    let s: Value = serde_json::from_str(line).expect("the summary is JSON");
    let r = &s["report"];
    let n = |v: &Value| {
        v.as_u64()
            .unwrap_or_else(|| panic!("not a count: {v} in {line}"))
    };
    assert_eq!(s["ok"], Value::Bool(true), "{line}");
    assert_eq!(n(&r["put"]), 3000, "{line}");
    assert_eq!(n(&r["produced"]), 3000, "every record delivered: {line}");
    assert_eq!(n(&r["processed"]), 3000, "every record processed: {line}");
    assert_eq!(n(&r["lost"]), 0, "{line}");
    assert_eq!(n(&r["order_violations"]), 0, "{line}");
    assert_eq!(n(&r["bad_records"]), 0, "{line}");
    assert_eq!(n(&r["parent_child_violations"]), 0, "{line}");
    assert!(
        n(&r["duplicates_after_kill"]) <= n(&r["duplicates"]),
        "{line}"
    );
    // The split happened: one parent, two children.
    let split = r["split"].as_array().expect("split pairs");
    assert_eq!(split.len(), 2, "{line}");
    assert_eq!(split[0][0], split[1][0], "one parent: {line}");
    // The kill happened, and every shard of the dead worker was processed again.
    let kill = &r["kill"];
    assert!(
        kill["worker"]
            .as_str()
            .is_some_and(|w| w.starts_with("worker-")),
        "{line}"
    );
    let resumed = kill["resumed_after_s"].as_array().expect("resumed");
    assert!(!resumed.is_empty(), "the killed worker held shards: {line}");
    assert!(resumed.iter().all(Value::is_f64), "{line}");
    assert!(s["kill_to_resumed_s"].is_f64(), "{line}");
    // Every record is accounted to a worker, the killed one included.
    let per_worker: u64 = r["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| n(&w[1]))
        .sum();
    assert_eq!(per_worker, 3000 + n(&r["duplicates"]), "{line}");
    // The readable summary and the progress lines are there too.
    assert!(stdout.contains("result      OK"), "{stdout}");
    assert!(stdout.contains("KILLED worker-"), "{stdout}");
    assert!(stdout.contains("produced "), "{stdout}");
    s
}

#[test]
fn a_reduced_run_splits_kills_and_verifies_every_record() {
    let s = check_reduced_run(&[]);
    assert_eq!(s["efo"], Value::Bool(false));
}

#[test]
fn a_reduced_run_on_enhanced_fan_out_verifies_every_record() {
    let s = check_reduced_run(&["--efo"]);
    assert_eq!(s["efo"], Value::Bool(true));
}

#[test]
fn a_real_account_is_not_touched_without_yes() {
    let out = demo(&["--aws"], &[("AWS_REGION", "us-east-1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("stream demo-"),
        "nothing created"
    );
}

#[test]
fn bad_flags_are_refused_with_status_2() {
    let out = demo(&["--workers", "1"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-kill"));
    let out = demo(&["--kill-at", "2"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kill-at"));
}
