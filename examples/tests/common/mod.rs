//! Runs an example binary to its end on the embedded stack (endpoint overrides removed).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `bin` with `args` and returns its stdout; panics (failing the test) when it does not
/// exit successfully within two minutes: a bound to fail on, never a measured assertion.
pub(crate) fn run_to_end(bin: &str, args: &[&str]) -> String {
    let mut child = Command::new(bin)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("{bin} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{bin}: {:?}\n{text}", out.status);
    text
}

/// The numbers in `line`, in order (`"put 5, delivered 5"` → `[5, 5]`).
#[allow(dead_code)] // not every test file reads numbers
pub(crate) fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}
