//! Every error path a user meets, run as a user would: the built `kinesis-cat` binary
//! against the embedded stack, an unreachable endpoint (a closed loopback port), or a
//! configuration with something missing. Each run is bounded by a watchdog: a process
//! still alive at its limit is killed and the test fails ("hang"), so these tests cannot
//! hang themselves.
//!
//! ```text
//!  test ─spawn─▶ kinesis-cat (env: endpoints, credentials or none) ─▶ exit status, stderr
//!    │ signals: kill -INT/-TERM <pid>     stdout: read N lines, then closed
//!    └ watchdog: alive past the limit ─▶ SIGKILL + panic("hang")
//! ```

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use kinesis_emulators::{LocalStack, ServiceKind};

/// A secret and a token long enough to be redacted, to check that logs never show them.
const SECRET: &str = "sEcReT0123456789abcdefSECRETxyz0123456789";
const TOKEN: &str = "ToKeN0123456789abcdefTOKENxyz0123456789tok";

mod common;

use common::{
    closed_port, run_with_input_within as run_with_input, stack, Env, Finished, Io, Running,
};

/// Runs to the end with no input.
fn run(env: &Env, args: &[&str], limit: Duration) -> Finished {
    Running::start_with(env, args, Io::Quiet).finish(limit)
}

fn lines(n: usize) -> String {
    (0..n).map(|i| format!("line {i}\n")).collect()
}

async fn table_exists(stack: &LocalStack, table: &str) -> bool {
    let tables = stack
        .dynamodb_client()
        .list_tables()
        .send()
        .await
        .expect("ListTables");
    tables.table_names().iter().any(|t| t == table)
}

// ---- 1. hangs: consume on a stream that does not exist, signals, a second signal ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_of_a_missing_stream_fails_at_once_and_leaves_no_lease_table() {
    let stack = stack().await;
    let app = LocalStack::unique_name("nope-app");
    let f = run(
        &Env::stack(&stack),
        &["consume", "--stream", "nope-stream", "--app", &app],
        Duration::from_secs(60),
    );
    assert_eq!(f.code(), Some(3), "{f:?}");
    assert!(f.stderr.contains("nope-stream"), "{}", f.stderr);
    assert!(
        f.stderr.to_lowercase().contains("not found"),
        "{}",
        f.stderr
    );
    assert!(
        !table_exists(&stack, &app).await,
        "a typo must not leave a lease table behind"
    );
}

#[test]
fn consume_on_an_unreachable_endpoint_says_why_and_stops_on_sigterm() {
    let dead = closed_port();
    let env = Env::local(&dead, &dead);
    let r = Running::start_with(
        &env,
        &["consume", "--stream", "s", "--app", "unreachable-app"],
        Io::Quiet,
    );
    std::thread::sleep(Duration::from_secs(3));
    r.signal("-TERM");
    let f = r.finish(Duration::from_secs(30));
    assert_eq!(f.code(), Some(0), "a graceful stop: {f:?}");
    assert!(
        f.stderr.to_lowercase().contains("connection refused")
            || f.stderr.contains("DispatchFailure"),
        "the cause is said: {}",
        f.stderr
    );
}

#[test]
fn consume_exit_when_idle_ends_even_when_nothing_answers() {
    let dead = closed_port();
    let f = run(
        &Env::local(&dead, &dead),
        &[
            "consume",
            "--stream",
            "s",
            "--app",
            "idle-app",
            "--exit-when-idle",
            "2",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(f.code(), Some(0), "{f:?}");
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    // produce against a dead endpoint: the first signal waits (up to the records' TTL)
    // for the flush; the second must not wait.
    let dead = closed_port();
    let env = Env::local(&dead, &dead);
    let mut r = Running::start_with(&env, &["produce", "--stream", "s"], Io::InputNoOutput);
    let mut stdin = r.stdin.take().unwrap();
    stdin.write_all(lines(10).as_bytes()).unwrap();
    r.interrupt_twice(Duration::from_secs(2), Duration::from_millis(500));
    let f = r.finish(Duration::from_secs(10));
    drop(stdin);
    assert_eq!(f.code(), Some(130), "{f:?}");
    assert!(f.stderr.contains("exiting now"), "{}", f.stderr);
}

// ---- 2. a closed standard output ends tail and consume cleanly ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_and_consume_end_with_status_0_when_the_reader_goes_away() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-pipe", 2).await.unwrap();
    let put = run_with_input(
        &Env::stack(&stack),
        &["produce", "--stream", &stream, "--max-buffered-ms", "10"],
        lines(200).as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(put.code(), Some(0), "{put:?}");
    let app = LocalStack::unique_name("pipe-app");
    for args in [
        vec!["tail", "--stream", &stream, "--from", "trim-horizon"],
        vec!["consume", "--stream", &stream, "--app", &app],
    ] {
        // `| head -2`: read two lines, then close the pipe.
        let mut r = Running::start_with(&Env::stack(&stack), &args, Io::Output);
        let mut out = BufReader::new(r.stdout.take().unwrap());
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert!(line.contains("line "), "{line}");
        }
        drop(out);
        let f = r.finish(Duration::from_secs(60));
        assert_eq!(f.code(), Some(0), "{args:?}: {f:?}");
        assert!(
            !f.stderr.contains("Broken pipe"),
            "{args:?} says nothing about the pipe: {}",
            f.stderr
        );
    }
}

// ---- 3. Ctrl-C on produce flushes and prints the summary ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_produce_flushes_what_was_read_and_prints_the_summary() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-sigint", 1).await.unwrap();
    let mut r = Running::start_with(
        &Env::stack(&stack),
        &["produce", "--stream", &stream, "--max-buffered-ms", "2000"],
        Io::InputNoOutput,
    );
    // Standard input stays open, as at a terminal: only the signal can end the run.
    let mut stdin = r.stdin.take().unwrap();
    stdin.write_all(lines(300).as_bytes()).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    r.signal("-INT");
    let f = r.finish(Duration::from_secs(30));
    drop(stdin);
    assert_eq!(f.code(), Some(0), "{f:?}");
    assert!(f.stderr.contains("300 delivered, 0 failed"), "{}", f.stderr);
    let got = integration_tests::kinesis::read_user_records(&stack.kinesis_client(), &stream)
        .await
        .len();
    assert_eq!(got, 300, "buffered records were flushed, not dropped");
}

// ---- 4-6. the real cause, said once, with what to do ----

#[test]
fn produce_to_an_unreachable_endpoint_says_the_cause_once_and_fail_fast_stops() {
    let dead = closed_port();
    let env = Env::local(&dead, &dead);
    let f = run_with_input(
        &env,
        &["produce", "--stream", "s", "--fail-fast"],
        lines(2_000).as_bytes(),
        Duration::from_secs(25),
    );
    assert_eq!(f.code(), Some(5), "unreachable: {f:?}");
    assert!(
        f.stderr.to_lowercase().contains("connection refused"),
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.contains("kinesis-cat local"),
        "a hint: {}",
        f.stderr
    );
    assert!(
        f.stderr.lines().count() < 20,
        "summarised, not one line per record:\n{}",
        f.stderr
    );
}

#[test]
fn produce_without_fail_fast_reports_the_first_failed_attempt_long_before_the_ttl() {
    let dead = closed_port();
    let env = Env::local(&dead, &dead);
    let mut r = Running::start_with(
        &env,
        &["produce", "--stream", "s", "--flush-timeout-secs", "1"],
        Io::InputNoOutput,
    );
    let mut stdin = r.stdin.take().unwrap();
    stdin.write_all(lines(500).as_bytes()).unwrap();
    // The record TTL is 30 s: the report must come well before it (read line by line, as
    // it comes).
    let first = r.stderr_line(Duration::from_secs(15), |l| l.contains("PutRecords"));
    assert!(
        first.contains("retrying"),
        "first failed attempt reported: {first:?}"
    );
    r.signal("-INT");
    let f = r.finish(Duration::from_secs(20));
    drop(stdin);
    assert_eq!(f.code(), Some(5), "{f:?}");
    assert!(f.stderr.contains("500 failed"), "{}", f.stderr);
    assert!(
        f.stderr.lines().count() < 20,
        "identical failures summarised:\n{}",
        f.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_fails_every_command_at_once_with_status_3_and_a_short_message() {
    let stack = stack().await;
    let env = Env::stack(&stack);
    let f = run_with_input(
        &env,
        &["produce", "--stream", "nope"],
        lines(20_000).as_bytes(),
        Duration::from_secs(30),
    );
    assert_eq!(f.code(), Some(3), "{f:?}");
    assert!(
        f.stderr.contains("ResourceNotFoundException"),
        "{}",
        f.stderr
    );
    assert!(
        f.stderr.len() < 4_000,
        "no dump per record ({} bytes):\n{}",
        f.stderr.len(),
        f.stderr
    );
    for args in [
        vec!["stream", "describe", "-s", "nope"],
        vec!["tail", "--stream", "nope"],
    ] {
        let f = run(&env, &args, Duration::from_secs(30));
        assert_eq!(f.code(), Some(3), "{args:?}: {f:?}");
        assert_eq!(
            f.stderr.matches("ResourceNotFoundException").count(),
            1,
            "{args:?}: the cause once: {}",
            f.stderr
        );
        assert!(
            !f.stderr.contains("x-amzn-requestid") && !f.stderr.contains("ServiceError {"),
            "{args:?}: no SDK debug dump: {}",
            f.stderr
        );
    }
    let f = run(
        &env,
        &["-v", "stream", "describe", "-s", "nope"],
        Duration::from_secs(30),
    );
    assert!(
        f.stderr.contains("detail:"),
        "-v shows the full chain: {}",
        f.stderr
    );
}

#[test]
fn missing_region_credentials_and_endpoint_each_say_what_to_do() {
    let dead = closed_port();
    let no_region = Env::local(&dead, &dead).without("AWS_REGION");
    let f = run(&no_region, &["stream", "list"], Duration::from_secs(20));
    assert_eq!(f.code(), Some(4), "{f:?}");
    assert!(f.stderr.contains("AWS_REGION"), "{}", f.stderr);

    let no_creds = Env::local(&dead, &dead)
        .without("AWS_ACCESS_KEY_ID")
        .without("AWS_SECRET_ACCESS_KEY");
    for args in [
        vec!["stream", "list"],
        vec!["tail", "--stream", "s"],
        vec!["consume", "--stream", "s", "--app", "app"],
    ] {
        let f = run(&no_creds, &args, Duration::from_secs(20));
        assert_eq!(f.code(), Some(4), "{args:?}: {f:?}");
        assert!(
            f.stderr.contains("AWS_ACCESS_KEY_ID"),
            "{args:?}: {}",
            f.stderr
        );
    }
    let f = run_with_input(
        &no_creds,
        &["produce", "--stream", "s"],
        b"x\n",
        Duration::from_secs(20),
    );
    assert_eq!(f.code(), Some(4), "{f:?}");

    let f = run(
        &Env::local(&dead, &dead),
        &["stream", "describe", "-s", "s"],
        Duration::from_secs(30),
    );
    assert_eq!(f.code(), Some(5), "{f:?}");
    assert!(
        f.stderr.contains("AWS_ENDPOINT_URL_KINESIS") && f.stderr.contains(&dead),
        "{}",
        f.stderr
    );
}

// ---- 8. arguments refused at parse time ----

#[test]
fn bad_arguments_are_refused_with_status_2_naming_the_flag() {
    let env = Env::isolated();
    for (args, flag) in [
        (vec!["consume", "--stream", "", "--app", "app"], "--stream"),
        (vec!["consume", "--stream", "s", "--app", ""], "--app"),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--failover-ms",
                "0",
            ],
            "--failover-ms",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--from",
                "yesterday",
            ],
            "--from",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--checkpoint-every",
                "0",
            ],
            "--checkpoint-every",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--batch-size",
                "0",
            ],
            "--batch-size",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--batch-size",
                "10001",
            ],
            "--batch-size",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--batch-window",
                "0s",
            ],
            "--batch-window",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--batch-window",
                "6m",
            ],
            "--batch-window",
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--batch-window",
                "10s",
                "--exit-when-idle",
                "10",
            ],
            "--batch-window",
        ),
        (vec!["tail", "--stream", "s", "--from", "oldest"], "--from"),
        (vec!["tail", "--stream", "bad name"], "--stream"),
        (vec!["produce", "--stream", "s", "--rate", "0"], "--rate"),
        (vec!["produce", "--stream", ""], "--stream"),
        (
            vec!["produce", "--stream", "s", "--partition-key", ""],
            "--partition-key",
        ),
        (
            vec!["stream", "create", "-s", "s", "--shards", "0"],
            "--shards",
        ),
        (vec!["stream", "create", "-s", ""], "--stream"),
        (vec!["leases", "--app", "x"], "--app"),
        (vec!["leases", "--app", "app-x", "--watch", "0"], "--watch"),
    ] {
        let f = run(&env, &args, Duration::from_secs(10));
        assert_eq!(f.code(), Some(2), "{args:?}: {f:?}");
        assert!(f.stderr.contains(flag), "{args:?}: {}", f.stderr);
        assert!(
            f.elapsed < Duration::from_secs(5),
            "refused before any call"
        );
    }
}

// ---- 9. resharding a closed shard ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splitting_or_merging_a_closed_shard_is_refused() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-closed", 2).await.unwrap();
    let env = Env::stack(&stack);
    let limit = Duration::from_secs(60);
    let split = || {
        run(
            &env,
            &[
                "stream",
                "split",
                "-s",
                &stream,
                "--shard",
                "shardId-000000000000",
            ],
            limit,
        )
    };
    let first = split();
    assert_eq!(first.code(), Some(0), "{first:?}");
    let again = split();
    assert_eq!(again.code(), Some(1), "{again:?}");
    assert!(again.stderr.contains("closed"), "{}", again.stderr);
    let merge = run(
        &env,
        &[
            "stream",
            "merge",
            "-s",
            &stream,
            "--shard",
            "shardId-000000000000",
            "--adjacent",
            "shardId-000000000001",
        ],
        limit,
    );
    assert_eq!(merge.code(), Some(1), "{merge:?}");
    assert!(merge.stderr.contains("closed"), "{}", merge.stderr);
    let describe = run(&env, &["stream", "describe", "-s", &stream], limit);
    let open = describe
        .stdout
        .lines()
        .filter(|l| l.starts_with("shardId-") && l.contains(" open "))
        .count();
    assert_eq!(open, 3, "no overlapping open shards:\n{}", describe.stdout);
}

// ---- 11. one bounded retry policy for listing and reading in tail ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_retries_a_stopped_stack_then_gives_up_with_a_clear_message() {
    let stack = stack().await;
    if stack.kinesis_kind() == ServiceKind::External {
        return; // cannot stop an endpoint we did not start
    }
    let stream = stack.create_stream("cat-giveup", 1).await.unwrap();
    let env = Env::stack(&stack);
    let r = Running::start_with(
        &env,
        &["tail", "--stream", &stream, "--give-up-after-secs", "3"],
        Io::Quiet,
    );
    std::thread::sleep(Duration::from_secs(2));
    drop(stack);
    let f = r.finish(Duration::from_secs(40));
    assert_eq!(f.code(), Some(5), "{f:?}");
    assert!(f.stderr.contains("giving up"), "{}", f.stderr);
    assert!(
        f.stderr.to_lowercase().contains("connection refused")
            || f.stderr.contains("DispatchFailure"),
        "{}",
        f.stderr
    );
}

// ---- 12. logs that can be turned on, never with credentials ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_rust_log_and_v_and_never_show_credentials() {
    let stack = stack().await;
    if stack.kinesis_kind() == ServiceKind::External {
        return; // the caller's own credentials are in use
    }
    let stream = stack.create_stream("cat-logs", 1).await.unwrap();
    let env = Env::stack(&stack)
        .with("AWS_SECRET_ACCESS_KEY", SECRET)
        .with("AWS_SESSION_TOKEN", TOKEN);
    let quiet = run(
        &env,
        &["stream", "describe", "-s", &stream],
        Duration::from_secs(30),
    );
    assert_eq!(quiet.code(), Some(0), "{quiet:?}");
    assert!(
        !quiet.stderr.contains(" INFO ") && !quiet.stderr.contains("DEBUG"),
        "quiet by default: {}",
        quiet.stderr
    );
    let traced = run(
        &env.clone().with("RUST_LOG", "trace"),
        &["stream", "describe", "-s", &stream],
        Duration::from_secs(30),
    );
    assert_eq!(traced.code(), Some(0), "{traced:?}");
    assert!(
        traced.stderr.contains("TRACE") || traced.stderr.contains("DEBUG"),
        "RUST_LOG turns logs on"
    );
    for (name, text) in [("quiet", &quiet.stderr), ("trace", &traced.stderr)] {
        assert!(!text.contains(SECRET), "{name}: secret key in logs");
        assert!(!text.contains(TOKEN), "{name}: session token in logs");
    }
    let app = LocalStack::unique_name("logs-app");
    let verbose = run(
        &env,
        &[
            "-v",
            "consume",
            "--stream",
            &stream,
            "--app",
            &app,
            "--exit-when-idle",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(verbose.code(), Some(0), "{verbose:?}");
    assert!(
        verbose.stderr.contains("INFO") && verbose.stderr.contains("kinesis_consumer"),
        "-v shows the library's info: {}",
        verbose.stderr
    );
    assert!(!verbose.stderr.contains(SECRET) && !verbose.stderr.contains(TOKEN));
}

// ---- found by trying to break it ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_sends_any_bytes_and_summarises_bad_lines() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-bytes", 1).await.unwrap();
    let env = Env::stack(&stack);
    // Invalid UTF-8 is data like any other in text mode: nothing after it is lost.
    let f = run_with_input(
        &env,
        &["produce", "--stream", &stream, "--partition-key", "k"],
        b"ok\n\xff\xfe\x00bin\r\nafter",
        Duration::from_secs(30),
    );
    assert_eq!(f.code(), Some(0), "{f:?}");
    assert!(f.stderr.contains("3 delivered, 0 failed"), "{}", f.stderr);
    let got: Vec<Vec<u8>> =
        integration_tests::kinesis::read_user_records(&stack.kinesis_client(), &stream)
            .await
            .into_iter()
            .map(|r| r.data.to_vec())
            .collect();
    assert_eq!(
        got,
        [
            b"ok".to_vec(),
            b"\xff\xfe\x00bin".to_vec(),
            b"after".to_vec()
        ]
    );

    // 1,000 bad JSON lines: the first ten are named, the rest counted.
    let input: String = (0..1_000).map(|_| "not json\n").collect();
    let f = run_with_input(
        &env,
        &["produce", "--stream", &stream, "--input", "json"],
        input.as_bytes(),
        Duration::from_secs(30),
    );
    assert_eq!(f.code(), Some(1), "{f:?}");
    assert!(f.stderr.contains("line 10: bad JSON"), "{}", f.stderr);
    assert!(!f.stderr.contains("line 11:"), "{}", f.stderr);
    assert!(
        f.stderr
            .contains("0 delivered, 1000 failed (1000 bad lines)"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.lines().count() < 20, "{}", f.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_heard_while_the_reader_of_stdout_is_stuck() {
    let stack = stack().await;
    let stream = stack.create_stream("cat-stuck", 2).await.unwrap();
    let env = Env::stack(&stack);
    // Far more output than a pipe holds (64 KiB), and a reader that never reads.
    let long: String = (0..4_000)
        .map(|i| format!("{i:06} {}\n", "x".repeat(200)))
        .collect();
    let put = run_with_input(
        &env,
        &["produce", "--stream", &stream],
        long.as_bytes(),
        Duration::from_secs(60),
    );
    assert_eq!(put.code(), Some(0), "{put:?}");
    let app = LocalStack::unique_name("stuck-app");
    for args in [
        vec!["tail", "--stream", &stream, "--from", "trim-horizon"],
        vec!["consume", "--stream", &stream, "--app", &app],
    ] {
        let mut r = Running::start_with(&env, &args, Io::Output);
        let stuck = r.stdout.take().unwrap(); // held, never read
        r.interrupt_twice(Duration::from_secs(4), Duration::from_millis(500));
        let f = r.finish(Duration::from_secs(15));
        drop(stuck);
        assert!(
            matches!(f.code(), Some(0) | Some(130)),
            "{args:?}: ends on signals, not when the reader reads: {f:?}"
        );
    }
}

#[test]
fn tail_exit_when_idle_ends_even_when_nothing_answers() {
    let dead = closed_port();
    let f = run(
        &Env::local(&dead, &dead),
        &["tail", "--stream", "s", "--exit-when-idle", "2"],
        Duration::from_secs(30),
    );
    assert_eq!(f.code(), Some(0), "{f:?}");
}
