//! Runs the built `kinesis-cat` binary against a [`LocalStack`] (embedded by default, or
//! whatever `AWS_ENDPOINT_URL_*` points at).
//!
//! ```text
//!  LocalStack --endpoint--> env of `kinesis-cat stream ...` --> stdout / stderr / exit code
//!  `kinesis-cat local` --stdout export lines--> SDK clients --> SIGTERM --> ports closed
//! ```

use std::io::{BufRead, BufReader, Lines};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kinesis_emulators::{LocalStack, ServiceKind};

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-cat");

/// Runs `kinesis-cat` with its Kinesis endpoint pointed at `stack`.
fn cat(stack: &LocalStack, args: &[&str]) -> Output {
    cat_at(
        stack.kinesis_endpoint(),
        stack.kinesis_kind() != ServiceKind::External,
        args,
    )
}

/// Runs `kinesis-cat` against `endpoint`, with test credentials when it is a local server
/// (external endpoints keep the caller's AWS configuration).
fn cat_at(endpoint: &str, local: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("AWS_ENDPOINT_URL_KINESIS", endpoint)
        .stdin(Stdio::null());
    if local {
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN");
    }
    cmd.output().expect("run kinesis-cat")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(stack: &LocalStack, args: &[&str]) -> String {
    let o = cat(stack, args);
    assert!(
        o.status.success(),
        "kinesis-cat {args:?} failed: {}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// `kinesis-cat stream split -s STREAM --shard SHARD [--at AT]`.
fn split(stack: &LocalStack, stream: &str, shard: &str, at: Option<&str>) -> Output {
    let mut args = vec!["stream", "split", "-s", stream, "--shard", shard];
    if let Some(at) = at {
        args.extend(["--at", at]);
    }
    cat(stack, &args)
}

/// Shard rows of `describe`: (id, state, parent, adjacent parent).
fn shard_rows(text: &str) -> Vec<(String, String, String, String)> {
    text.lines()
        .filter(|l| l.starts_with("shardId-"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 6, "{l}");
            (
                cols[0].to_owned(),
                cols[1].to_owned(),
                cols[4].to_owned(),
                cols[5].to_owned(),
            )
        })
        .collect()
}

fn stack() -> LocalStack {
    LocalStack::builder().start().expect("stack")
}

#[test]
fn create_describe_split_merge_list_delete() {
    let stack = stack();
    let name = kinesis_emulators::unique_name("cli");
    let out = ok(
        &stack,
        &[
            "stream",
            "create",
            "-s",
            &name,
            "--shards",
            "2",
            "--wait-secs",
            "120",
        ],
    );
    assert!(out.contains("ACTIVE"), "{out}");
    assert!(ok(&stack, &["stream", "list"]).lines().any(|l| l == name));

    let rows = shard_rows(&ok(&stack, &["stream", "describe", "-s", &name]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.1 == "open" && r.2 == "-" && r.3 == "-"),
        "{rows:?}"
    );
    let first = rows[0].0.clone();

    let o = split(&stack, &name, &first, None);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let children: Vec<String> = out
        .split("children ")
        .nth(1)
        .expect("children listed")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(children.len(), 2, "{out}");
    let rows = shard_rows(&ok(&stack, &["stream", "describe", "-s", &name]));
    assert_eq!(rows.len(), 4, "{rows:?}");
    let parent = rows.iter().find(|r| r.0 == first).expect("parent row");
    assert_eq!(parent.1, "closed");
    for child in &children {
        let row = rows.iter().find(|r| &r.0 == child).expect("child row");
        assert_eq!(
            (row.1.as_str(), row.2.as_str(), row.3.as_str()),
            ("open", first.as_str(), "-")
        );
    }

    let out = ok(
        &stack,
        &[
            "stream",
            "merge",
            "-s",
            &name,
            "--shard",
            &children[0],
            "--adjacent",
            &children[1],
        ],
    );
    let merged = out
        .split("child ")
        .nth(1)
        .expect("child named")
        .trim()
        .to_owned();
    assert!(merged.starts_with("shardId-"), "{out}");
    let rows = shard_rows(&ok(&stack, &["stream", "describe", "-s", &name]));
    let row = rows.iter().find(|r| r.0 == merged).expect("merged row");
    assert_eq!(row.1, "open");
    let parents = [row.2.as_str(), row.3.as_str()];
    assert!(parents.contains(&children[0].as_str()) && parents.contains(&children[1].as_str()));
    assert_eq!(rows.iter().filter(|r| r.1 == "open").count(), 2, "{rows:?}");

    assert!(ok(&stack, &["stream", "delete", "-s", &name]).contains(&name));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let o = cat(&stack, &["stream", "describe", "-s", &name]);
        if o.status.code() == Some(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stream still described after delete"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn errors_go_to_stderr_with_distinct_exit_codes() {
    let stack = stack();
    let missing = kinesis_emulators::unique_name("missing");
    let o = cat(&stack, &["stream", "describe", "-s", &missing]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("kinesis-cat: error:") && err.contains(&missing),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let name = kinesis_emulators::unique_name("cli-err");
    ok(&stack, &["stream", "create", "-s", &name]);
    let o = split(&stack, &name, "shardId-000000000042", None);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let o = split(&stack, &name, "shardId-000000000000", Some("0"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid hash key"));
    let o = split(&stack, &name, "shardId-000000000000", Some("x"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let o = cat(&stack, &["stream", "nonsense"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2: {o:?}");
    ok(&stack, &["stream", "delete", "-s", &name]);
}

/// Starts `kinesis-cat local` on these ports (0: any free one): the process and the lines
/// of its standard output (the export lines first).
fn local(kinesis_port: u16, dynamodb_port: u16) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(BIN)
        .args([
            "local",
            "--kinesis-port",
            &kinesis_port.to_string(),
            "--dynamodb-port",
            &dynamodb_port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn local");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    (child, lines)
}

fn refused(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_err()
}

#[tokio::test]
async fn local_prints_exports_serves_and_stops_on_sigterm() {
    let (mut child, mut lines) = local(0, 0);
    let mut exports = Vec::new();
    for _ in 0..3 {
        exports.push(lines.next().expect("export line").expect("utf-8"));
    }
    let endpoint = |var: &str| {
        exports
            .iter()
            .find_map(|l| l.strip_prefix(&format!("export {var}=")))
            .unwrap_or_else(|| panic!("{var} in {exports:?}"))
            .to_owned()
    };
    let kinesis = endpoint("AWS_ENDPOINT_URL_KINESIS");
    let dynamodb = endpoint("AWS_ENDPOINT_URL_DYNAMODB");
    assert_eq!(
        exports[2],
        "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
    );
    let port = |url: &str| -> u16 {
        url.strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("loopback URL: {url}"))
    };
    let ports = [port(&kinesis), port(&dynamodb)];

    let stack = LocalStack::builder()
        .with_endpoint_overrides(kinesis_emulators::EndpointOverrides {
            kinesis: Some(kinesis.clone()),
            dynamodb: Some(dynamodb.clone()),
        })
        .start_async()
        .await
        .expect("clients for the local endpoints");
    let stream = stack
        .create_stream("local", 1)
        .await
        .expect("create on local");
    stack
        .dynamodb_client()
        .list_tables()
        .send()
        .await
        .expect("DynamoDB answers");
    let listed = cat_at(&kinesis, true, &["stream", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(stdout(&listed).contains(&stream));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("local did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    for p in ports {
        assert!(refused(p), "port {p} still open after local stopped");
    }
}

#[test]
fn local_uses_the_fixed_ports_it_is_given() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    };
    let (kp, dp) = (free(), free());
    let (mut child, mut lines) = local(kp, dp);
    let first = lines.next().expect("line").expect("utf-8");
    let second = lines.next().expect("line").expect("utf-8");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        first,
        format!("export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:{kp}")
    );
    assert_eq!(
        second,
        format!("export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:{dp}")
    );
}
