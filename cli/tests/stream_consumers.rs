//! `kinesis-cat stream consumers list|register|deregister` and `consume --efo`, run as a
//! user would: the built binary against the embedded stack (or whatever
//! `AWS_ENDPOINT_URL_*` point at), with nothing from the machine's AWS configuration. Each
//! run is bounded by a watchdog: a process still alive at its limit is killed and the test
//! fails ("hang").
//!
//! ```text
//!  register c ─▶ list: c ACTIVE ─▶ register c again (same ARN) ─▶ produce N
//!    ─▶ consume --efo --consumer-name c: N records, c still registered
//!    ─▶ consume --efo (no name): N records through a consumer named after --app
//!    ─▶ deregister c ─▶ list: DELETING, then gone ─▶ deregister c again: status 3
//!    ─▶ deregister <app> --wait: gone at once
//! ```

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kinesis_emulators::LocalStack;

mod common;

use common::{closed_port, Env, Finished};

/// Where the child's AWS calls go.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// The stack's endpoints (an external stack keeps the caller's own configuration).
    Stack(&'a LocalStack),
    /// A loopback address where nothing listens, with test credentials: for what must be
    /// refused before any call.
    Nowhere,
}

impl Target<'_> {
    /// The environment of a run aimed here: isolated from the machine's AWS configuration
    /// (no profile files, no instance metadata) unless the stack is external.
    fn env(self) -> Env {
        match self {
            Target::Stack(s) => Env::stack(s),
            Target::Nowhere => Env::local(&closed_port(), &closed_port()),
        }
    }
}

/// Runs to the end with `input` on standard input; past [`common::LIMIT`] the process is killed
/// and the test fails.
fn run_with_input(target: Target<'_>, args: &[&str], input: &[u8]) -> Finished {
    common::run_with_input(&target.env(), args, input)
}

/// Runs to the end with no input.
fn run(target: Target<'_>, args: &[&str]) -> Finished {
    run_with_input(target, args, b"")
}

/// Runs and checks that it succeeded: its standard output.
fn ok(target: Target<'_>, args: &[&str]) -> Finished {
    let f = run(target, args);
    assert_eq!(f.code(), Some(0), "kinesis-cat {args:?}: {f:?}");
    f
}

/// One line of `stream consumers list`: name, status, ARN, creation time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    name: String,
    status: String,
    arn: String,
    created: String,
}

fn list(stack: &LocalStack, stream: &str) -> Vec<Listed> {
    ok(
        Target::Stack(stack),
        &["stream", "consumers", "list", "--stream", stream],
    )
    .stdout
    .lines()
    .map(|l| {
        let cols: Vec<&str> = l.split('\t').collect();
        assert_eq!(cols.len(), 4, "four tab-separated columns: {l:?}");
        Listed {
            name: cols[0].to_owned(),
            status: cols[1].to_owned(),
            arn: cols[2].to_owned(),
            created: cols[3].to_owned(),
        }
    })
    .collect()
}

/// `consume --efo` with `extra` flags until 5 s without records: the data it printed.
fn consume_efo(stack: &LocalStack, stream: &str, app: &str, extra: &[&str]) -> Finished {
    let mut args = vec![
        "consume",
        "--stream",
        stream,
        "--app",
        app,
        "--efo",
        "--exit-when-idle",
        "5",
        "--output",
        "raw",
    ];
    args.extend_from_slice(extra);
    let f = run(Target::Stack(stack), &args);
    assert_eq!(f.code(), Some(0), "{f:?}");
    f
}

#[test]
fn register_list_consume_with_efo_and_deregister() {
    let stack = LocalStack::builder().start().expect("stack");
    let target = Target::Stack(&stack);
    let stream = LocalStack::unique_name("cat-efo");
    ok(
        target,
        &[
            "stream",
            "create",
            "-s",
            &stream,
            "--shards",
            "2",
            "--wait-secs",
            "60",
        ],
    );
    assert!(list(&stack, &stream).is_empty(), "no consumer yet");

    let name = "cat-efo-reader";
    let f = ok(
        target,
        &["stream", "consumers", "register", "--stream", &stream, name],
    );
    let arn = f.stdout.trim().to_owned();
    assert!(
        arn.starts_with("arn:") && arn.contains(&format!("/consumer/{name}")),
        "the ARN alone on stdout: {f:?}"
    );
    assert!(
        f.stderr.contains("registered stream consumer"),
        "{}",
        f.stderr
    );
    let listed = list(&stack, &stream);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].status.as_str(),
            listed[0].arn.as_str()
        ),
        (name, "ACTIVE", arn.as_str())
    );
    assert!(
        listed[0].created.ends_with('Z') && listed[0].created.contains('T'),
        "an RFC 3339 time: {listed:?}"
    );

    let again = ok(
        target,
        &["stream", "consumers", "register", "--stream", &stream, name],
    );
    assert_eq!(again.stdout.trim(), arn, "the same consumer: {again:?}");
    assert!(
        again.stderr.contains("already registered"),
        "{}",
        again.stderr
    );
    assert_eq!(list(&stack, &stream).len(), 1);

    let n = 300;
    let data: String = (0..n).map(|i| format!("efo-{i}\n")).collect();
    let put = run_with_input(
        target,
        &["produce", "--stream", &stream, "--max-buffered-ms", "10"],
        data.as_bytes(),
    );
    assert_eq!(put.code(), Some(0), "{put:?}");
    let expected: HashSet<String> = data.lines().map(str::to_owned).collect();

    // Through the named consumer: every record once, and the consumer stays.
    let app = LocalStack::unique_name("cat-efo-app");
    let f = consume_efo(&stack, &stream, &app, &["--consumer-name", name]);
    let got: Vec<&str> = f.stdout.lines().collect();
    assert_eq!(got.len(), n, "each record once: {}", f.stderr);
    assert_eq!(
        got.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        expected
    );
    assert!(
        f.stderr.contains("enhanced fan-out") && f.stderr.contains("stream consumers deregister"),
        "says how the consumer goes: {}",
        f.stderr
    );
    let listed = list(&stack, &stream);
    assert_eq!(
        listed.len(),
        1,
        "no consumer named after the app: {listed:?}"
    );
    assert_eq!(
        (listed[0].status.as_str(), listed[0].arn.as_str()),
        ("ACTIVE", arn.as_str()),
        "left registered"
    );

    // Without a name: a consumer named after the application, registered by the worker.
    let app2 = LocalStack::unique_name("cat-efo-app2");
    let f = consume_efo(&stack, &stream, &app2, &[]);
    assert_eq!(
        f.stdout.lines().map(str::to_owned).collect::<HashSet<_>>(),
        expected,
        "{}",
        f.stderr
    );
    let listed = list(&stack, &stream);
    assert!(
        listed
            .iter()
            .any(|c| c.name == app2 && c.status == "ACTIVE"),
        "{listed:?}"
    );

    // Deregister: DELETING for a moment, then gone; a second time is "not found".
    let f = ok(
        target,
        &[
            "stream",
            "consumers",
            "deregister",
            "--stream",
            &stream,
            name,
        ],
    );
    assert!(f.stdout.contains("deregistering stream consumer"), "{f:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match list(&stack, &stream).into_iter().find(|c| c.name == name) {
            None => break,
            Some(c) => assert_eq!(c.status, "DELETING", "{c:?}"),
        }
        assert!(Instant::now() < deadline, "{name} still listed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let f = run(
        target,
        &[
            "stream",
            "consumers",
            "deregister",
            "--stream",
            &stream,
            name,
        ],
    );
    assert_eq!(f.code(), Some(3), "not found: {f:?}");
    assert!(
        f.stderr
            .contains(&format!("stream consumer {name} is not registered"))
            && f.stderr.contains("stream consumers list --stream"),
        "{}",
        f.stderr
    );

    let f = ok(
        target,
        &[
            "stream",
            "consumers",
            "deregister",
            "--stream",
            &stream,
            &app2,
            "--wait",
            "--wait-secs",
            "60",
        ],
    );
    assert!(f.stdout.contains("gone"), "{f:?}");
    assert!(list(&stack, &stream).is_empty(), "gone once --wait returns");
}

#[test]
fn consumer_mistakes_exit_with_the_documented_statuses() {
    // Refused before any call: a name without --efo (usage, 2), a name the consumer
    // library refuses (its typed ConfigError, 2), an application name too long to stand
    // in for the consumer name (2), a malformed name to `register` (2).
    let long_app = "a".repeat(129);
    for (args, says) in [
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--consumer-name",
                "c",
            ],
            vec!["--efo"],
        ),
        (
            vec![
                "consume",
                "--stream",
                "s",
                "--app",
                "app",
                "--efo",
                "--consumer-name",
                "bad name",
            ],
            vec![
                "invalid stream consumer name \"bad name\"",
                "--consumer-name",
            ],
        ),
        (
            vec!["consume", "--stream", "s", "--app", &long_app, "--efo"],
            vec!["invalid stream consumer name", "application name"],
        ),
        (
            vec![
                "stream",
                "consumers",
                "register",
                "--stream",
                "s",
                "bad name",
            ],
            vec!["<NAME>"],
        ),
        (
            vec!["stream", "consumers", "deregister", "s"],
            vec!["--stream"],
        ),
    ] {
        let f = run(Target::Nowhere, &args);
        assert_eq!(f.code(), Some(2), "{args:?}: {f:?}");
        for s in says {
            assert!(f.stderr.contains(s), "{args:?} names {s:?}: {}", f.stderr);
        }
        assert!(
            f.elapsed < Duration::from_secs(5),
            "{args:?}: refused before any call"
        );
    }

    // A stream that does not exist: status 3 and the stream hint, for every action.
    let stack = LocalStack::builder().start().expect("stack");
    let missing = LocalStack::unique_name("cat-efo-missing");
    for action in [vec!["list"], vec!["register", "c"], vec!["deregister", "c"]] {
        let mut args = vec!["stream", "consumers", action[0], "--stream", &missing];
        args.extend_from_slice(&action[1..]);
        let f = run(Target::Stack(&stack), &args);
        assert_eq!(f.code(), Some(3), "{args:?}: {f:?}");
        assert!(
            f.stderr.contains("ResourceNotFoundException") && f.stderr.contains("stream list"),
            "{args:?}: {}",
            f.stderr
        );
    }
    // A consumer that was never registered, on a stream that exists.
    let stream = LocalStack::unique_name("cat-efo-none");
    ok(Target::Stack(&stack), &["stream", "create", "-s", &stream]);
    let f = run(
        Target::Stack(&stack),
        &[
            "stream",
            "consumers",
            "deregister",
            "--stream",
            &stream,
            "never",
        ],
    );
    assert_eq!(f.code(), Some(3), "{f:?}");
    assert!(f.stderr.contains("never is not registered"), "{}", f.stderr);
}

/// The CLI's SDK configuration bounds every attempt (30 s) so that a silent endpoint is a
/// timeout; those bounds end with the response headers of `SubscribeToShard`, before its
/// event stream is read, so they must not cut a subscription. Checked with 1 s bounds and
/// a subscription read for 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_and_operation_timeouts_do_not_cut_a_subscription() {
    use aws_sdk_kinesis::config::timeout::TimeoutConfig;
    use aws_sdk_kinesis::config::StalledStreamProtectionConfig;
    use aws_sdk_kinesis::types::{
        ShardIteratorType, StartingPosition, SubscribeToShardEventStream,
    };

    let stack = LocalStack::builder().start_async().await.expect("stack");
    let stream = stack
        .create_stream("cat-efo-timeouts", 1)
        .await
        .expect("stream");
    let registered = tokio::task::block_in_place(|| {
        ok(
            Target::Stack(&stack),
            &["stream", "consumers", "register", "--stream", &stream, "t"],
        )
    });
    let consumer_arn = registered.stdout.trim().to_owned();
    // The stack's client (its endpoint and credentials), with the bounds.
    let bounded = stack
        .kinesis_client()
        .config()
        .to_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(1))
                .operation_timeout(Duration::from_secs(1))
                .build(),
        )
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .build();
    let kinesis = aws_sdk_kinesis::Client::from_conf(bounded);
    let shard = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards")
        .shards()[0]
        .shard_id()
        .to_owned();
    let mut events = kinesis
        .subscribe_to_shard()
        .consumer_arn(&consumer_arn)
        .shard_id(&shard)
        .starting_position(
            StartingPosition::builder()
                .r#type(ShardIteratorType::TrimHorizon)
                .build()
                .expect("position"),
        )
        .send()
        .await
        .expect("SubscribeToShard")
        .event_stream;
    let started = Instant::now();
    let mut received = 0;
    while started.elapsed() < Duration::from_secs(3) {
        match events.recv().await {
            Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(_))) => received += 1,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the subscription ended after {:?}", started.elapsed()),
            Err(e) => panic!(
                "the subscription failed after {:?}: {}",
                started.elapsed(),
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            ),
        }
    }
    assert!(received > 3, "events kept coming: {received}");
}
