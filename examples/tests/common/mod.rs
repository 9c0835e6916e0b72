//! Runs an example binary on the embedded stack (endpoint overrides removed), bounded by a
//! watchdog: a run still going at its limit is killed and the test fails.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest [`run_to_end`] lets an example run.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `bin` with `args` and the extra variables `env`, stdin closed, and returns its
/// output once it ended; panics (failing the test) if it is still running after `limit`:
/// a bound to fail on, never a measured assertion.
pub(crate) fn run(bin: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{bin}: {e}"));
    // Read on threads, so that a child writing more than a pipe holds never blocks.
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = read_all(Box::new(child.stdout.take().expect("stdout")));
    let err = read_all(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("{bin} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `bin` with `args` and returns its stdout; panics (failing the test) when it does
/// not exit successfully within two minutes.
#[allow(dead_code)] // not every test file runs an example to its end
pub(crate) fn run_to_end(bin: &str, args: &[&str]) -> String {
    let out = run(bin, args, &[], LIMIT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin}: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The numbers in `line`, in order (`"put 5, delivered 5"` → `[5, 5]`).
#[allow(dead_code)] // not every test file reads numbers
pub(crate) fn numbers(line: &str) -> Vec<u64> {
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}
