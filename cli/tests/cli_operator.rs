//! The operator's flags of `kinesis-cat`, run as a user would: the built binary against
//! the embedded stack (or whatever `AWS_ENDPOINT_URL_*` point at).
//!
//! ```text
//!  aggregate ─▶ A ─▶ tail -e (JSON: arrival, lag, explicit hash key) ─▶ produce -i json ─▶ B ─▶ tail -e: same records
//!  tail -f TEMPLATE      ─▶ the fields the JSON lines carry, as the template says
//!  tail -c N / --from -2s / --since 2s / --shard + at-sequence: ─▶ exactly the records asked for
//!  consume -f / summary  ─▶ lines and "N records from M shards" on standard error
//!  stream update-shard-count / update-mode / describe ─▶ open shards and mode
//!  --metrics-addr        ─▶ GET /metrics names the libraries' metrics
//!  --endpoint-url / --region / --profile ─▶ calls reach the stack without the variables
//! ```
//!
//! Every run is bounded by the watchdog of `common` (no timings are asserted).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_kinesis::primitives::{Blob, DateTime, DateTimeFormat};
use common::{run, run_with_input, stack, Env, Running, LIMIT};
use kinesis_emulators::{LocalStack, ServiceKind};
use serde_json::Value;

/// The embedded stack, an environment aimed at it, and a new stream `name` (made unique)
/// of `shards` shards.
async fn stack_with_stream(name: &str, shards: i32) -> (LocalStack, Env, String) {
    let stack = stack().await;
    let env = Env::stack(&stack);
    let stream = stack.create_stream(name, shards).await.unwrap();
    (stack, env, stream)
}

/// Runs `args` to the end and checks that it exited with `code` (its standard error shown
/// otherwise); what it left.
fn exits(env: &Env, args: &[&str], code: i32) -> common::Finished {
    let f = run(env, args);
    assert_eq!(f.code(), Some(code), "{args:?}: {}", f.stderr);
    f
}

/// The JSON lines of a `tail` / `consume` output.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (partition key, explicit hash key, payload in base64) of each record, sorted.
fn records(lines: &[Value]) -> Vec<(String, Option<String>, String)> {
    let mut v: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["partition_key"].as_str().unwrap().to_owned(),
                l.get("explicit_hash_key")
                    .map(|h| h.as_str().expect("a decimal string").to_owned()),
                l["data_b64"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Puts one record per payload under key `k<i>`, one call each, in order.
async fn put(stack: &LocalStack, stream: &str, payloads: &[impl AsRef<str>]) -> Vec<String> {
    let client = stack.kinesis_client();
    let mut sequence_numbers = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let out = client
            .put_record()
            .stream_name(stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(p.as_ref().as_bytes()))
            .send()
            .await
            .expect("PutRecord");
        sequence_numbers.push(out.sequence_number().to_owned());
    }
    sequence_numbers
}

/// The payloads of JSON lines, in output order.
fn payloads(stdout: &str) -> Vec<String> {
    json_lines(stdout)
        .iter()
        .map(|l| l["data"].as_str().unwrap().to_owned())
        .collect()
}

/// A user record of a test: partition key, explicit hash key, payload.
type Rec = (String, Option<u128>, Vec<u8>);

/// Puts `records` as one KPL aggregate (built by kinesis-agg, explicit hash keys in its
/// table), so that what is read back says which keys it carried.
async fn put_aggregate(stack: &LocalStack, stream: &str, records: &[Rec]) {
    use kinesis_agg::{Aggregator, HashKey, UserRecord};
    let mut agg = Aggregator::builder().build().unwrap();
    for (key, ehk, data) in records {
        let mut r = UserRecord::new(key.as_str(), data.clone()).unwrap();
        if let Some(h) = ehk {
            r = r.with_explicit_hash_key(HashKey(*h));
        }
        agg.try_add(r).expect("fits");
    }
    let record = agg.finish().unwrap();
    let mut put = stack
        .kinesis_client()
        .put_record()
        .stream_name(stream)
        .partition_key(record.partition_key)
        .data(Blob::new(record.data.to_vec()));
    if let Some(h) = record.explicit_hash_key {
        put = put.explicit_hash_key(h.to_string());
    }
    put.send().await.expect("PutRecord");
}

/// `records` as `records()` lists them.
fn as_listed(records: &[Rec]) -> Vec<(String, Option<String>, String)> {
    use base64::Engine;
    let mut v: Vec<_> = records
        .iter()
        .map(|(k, h, d)| {
            (
                k.clone(),
                h.map(|h| h.to_string()),
                base64::engine::general_purpose::STANDARD.encode(d),
            )
        })
        .collect();
    v.sort();
    v
}

/// 20 user records: every third with an explicit hash key (in the upper half of the key
/// space, wherever its partition key would go), every fifth binary, the rest text.
fn fixture() -> Vec<Rec> {
    (0..20u128)
        .map(|i| {
            let ehk = (i % 3 == 0).then(|| u128::MAX - i * 1_000_000);
            let data = if i % 5 == 0 {
                vec![0, 1, 2, 0xff, i as u8]
            } else {
                format!("line {i} é").into_bytes()
            };
            (format!("key-{i}"), ehk, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_json_is_produce_input_and_carries_arrival_lag_and_explicit_hash_keys() {
    let (stack, env, a) = stack_with_stream("cat-round-a", 2).await;
    let b = stack.create_stream("cat-round-b", 2).await.unwrap();
    let put = fixture();
    put_aggregate(&stack, &a, &put).await;

    let first = run(
        &env,
        &["tail", "-s", &a, "--from", "trim-horizon", "--exit-at-end"],
    )
    .ok();
    let lines = json_lines(&first);
    assert_eq!(
        records(&lines),
        as_listed(&put),
        "read back as put, keys included"
    );
    for l in &lines {
        let arrival = l["approximate_arrival_timestamp"]
            .as_str()
            .expect("arrival");
        DateTime::from_str(arrival, DateTimeFormat::DateTime).expect("RFC 3339");
        assert!(l["millis_behind_latest"].is_i64(), "lag: {l}");
    }

    // The lines as they are, as input: the same records in the second stream, each with
    // an explicit hash key in the shard that key routes to (its partition key alone would
    // send some of them to the other shard).
    let copied = run_with_input(&env, &["produce", "-s", &b, "-i", "json"], first.as_bytes());
    assert!(
        copied.stderr.contains("20 delivered, 0 failed"),
        "{}",
        copied.stderr
    );
    let second = json_lines(&run(&env, &["tail", "-s", &b, "--from", "trim-horizon", "-e"]).ok());
    let strip = |v: Vec<(String, Option<String>, String)>| -> Vec<(String, String)> {
        v.into_iter().map(|(k, _, d)| (k, d)).collect()
    };
    assert_eq!(strip(records(&second)), strip(as_listed(&put)));
    let shards = stack
        .kinesis_client()
        .list_shards()
        .stream_name(&b)
        .send()
        .await
        .unwrap();
    let owner = |h: u128| {
        shards
            .shards()
            .iter()
            .find(|s| {
                let r = s.hash_key_range().unwrap();
                r.starting_hash_key().parse::<u128>().unwrap() <= h
                    && h <= r.ending_hash_key().parse::<u128>().unwrap()
            })
            .unwrap()
            .shard_id()
            .to_owned()
    };
    let mut routed_against_the_key = 0;
    for (key, ehk, _) in put.iter().filter(|r| r.1.is_some()) {
        let line = second
            .iter()
            .find(|l| l["partition_key"] == key.as_str())
            .unwrap();
        let by_ehk = owner(ehk.unwrap());
        assert_eq!(
            line["shard_id"],
            by_ehk.as_str(),
            "{key} routed by its explicit hash key"
        );
        if owner(kinesis_agg::HashKey::from_partition_key(key).0) != by_ehk {
            routed_against_the_key += 1;
        }
    }
    assert!(
        routed_against_the_key > 0,
        "the fixture tells keys from hash keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_templates_print_what_the_json_lines_carry() {
    let (stack, env, s) = stack_with_stream("cat-format", 2).await;
    let text: Vec<Rec> = fixture()
        .into_iter()
        .filter(|(_, _, d)| std::str::from_utf8(d).is_ok())
        .collect();
    put_aggregate(&stack, &s, &text).await;
    put(&stack, &s, &["plain-1", "plain-2"]).await;
    let json = run(&env, &["tail", "-s", &s, "--from", "trim-horizon", "-e"]).ok();
    let template = r"%t|%p|%o|%u|%k|%K|%h|%S|%T|%l|%s|%%\t.\n";
    let printed = run(
        &env,
        &[
            "tail",
            "-s",
            &s,
            "--from",
            "trim-horizon",
            "-e",
            "-f",
            template,
        ],
    )
    .ok();
    let mut want: Vec<String> = json_lines(&json)
        .iter()
        .map(|l| {
            let arrival = DateTime::from_str(
                l["approximate_arrival_timestamp"].as_str().unwrap(),
                DateTimeFormat::DateTime,
            )
            .unwrap()
            .to_millis()
            .unwrap();
            let key = l["partition_key"].as_str().unwrap();
            let data = l["data"].as_str().unwrap();
            format!(
                "{}|{}|{}|{}|{key}|{}|{}|{}|{arrival}|{}|{data}|%\t.",
                l["stream"].as_str().unwrap(),
                l["shard_id"].as_str().unwrap(),
                l["sequence_number"].as_str().unwrap(),
                l["sub_sequence_number"],
                key.len(),
                l.get("explicit_hash_key")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
                data.len(),
                l["millis_behind_latest"],
            )
        })
        .collect();
    let mut got: Vec<String> = printed.lines().map(str::to_owned).collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), text.len() + 2, "{printed}");
    assert_eq!(got, want);
    let ehk = (u128::MAX - 3_000_000).to_string();
    assert!(
        got.iter().any(|l| l.contains(&format!("|{ehk}|"))),
        "explicit hash keys print: {got:?}"
    );

    // A bad template is refused before anything is read, naming the flag.
    let bad = exits(&env, &["tail", "-s", &s, "-f", "%k %x"], 2);
    assert!(
        bad.stderr.contains("--format") && bad.stderr.contains("%x"),
        "{}",
        bad.stderr
    );
    exits(&env, &["tail", "-s", &s, "-f", "%s", "-o", "raw"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_stops_after_exactly_n_records() {
    let (stack, env, s) = stack_with_stream("cat-count", 3).await;
    let data: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    put(&stack, &s, &data).await;
    // No --exit-at-end: the count alone ends it.
    let out = run(
        &env,
        &["tail", "-s", &s, "--from", "trim-horizon", "-c", "7"],
    )
    .ok();
    let got = payloads(&out);
    assert_eq!(got.len(), 7, "{out}");
    assert!(got.iter().all(|p| data.contains(p)));
    let all = run(
        &env,
        &[
            "tail",
            "-s",
            &s,
            "--from",
            "trim-horizon",
            "-e",
            "--count",
            "100",
        ],
    )
    .ok();
    assert_eq!(payloads(&all).len(), 30, "-e ends it before the count");
    exits(&env, &["tail", "-s", &s, "-c", "0"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_starts_read_only_what_came_since() {
    let (stack, env, s) = stack_with_stream("cat-since", 2).await;
    put(&stack, &s, &["old-1", "old-2"]).await;
    // Arrival times may be cut to whole seconds (the embedded emulator): 4 s apart, a
    // start 2 s back lies between the old records and the new ones.
    tokio::time::sleep(Duration::from_secs(4)).await;
    put(&stack, &s, &["new-1", "new-2", "new-3"]).await;
    for from in [
        vec!["--from", "-2s"],
        vec!["--from=-2s"],
        vec!["--since", "2s"],
        vec!["--from", "-2000ms"],
    ] {
        let mut args = vec!["tail", "-s", &s, "-e"];
        args.extend(from.iter().copied());
        let mut got = payloads(&run(&env, &args).ok());
        got.sort();
        assert_eq!(got, ["new-1", "new-2", "new-3"], "{from:?}");
    }
    let mut all = payloads(&run(&env, &["tail", "-s", &s, "-e", "--from", "TRIM_HORIZON"]).ok());
    all.sort();
    assert_eq!(all.len(), 5, "{all:?}");
    exits(
        &env,
        &["tail", "-s", &s, "--since", "2s", "--from", "latest"],
        2,
    );
    exits(&env, &["tail", "-s", &s, "--from", "-5w"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shard_from_a_sequence_number() {
    let (stack, env, s) = stack_with_stream("cat-at-seq", 1).await;
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    let seqs = put(&stack, &s, &names).await;
    let shard = "shardId-000000000000";
    let at = format!("at-sequence:{}", seqs[2]);
    let got = payloads(
        &run(
            &env,
            &["tail", "-s", &s, "--shard", shard, "--from", &at, "-e"],
        )
        .ok(),
    );
    assert_eq!(got, ["r2", "r3", "r4", "r5"]);
    let after = format!("after-sequence:{}", seqs[2]);
    let got = payloads(
        &run(
            &env,
            &["tail", "-s", &s, "--shard", shard, "--from", &after, "-e"],
        )
        .ok(),
    );
    assert_eq!(got, ["r3", "r4", "r5"]);
    let no_shard = exits(&env, &["tail", "-s", &s, "--from", &at], 2);
    assert!(no_shard.stderr.contains("--shard"), "{}", no_shard.stderr);
    exits(
        &env,
        &["tail", "-s", &s, "--shard", "shardId-000000000009", "-e"],
        3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_prints_with_a_template_and_sums_up_on_stderr() {
    let (stack, env, s) = stack_with_stream("cat-consume-fmt", 2).await;
    let data: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    put(&stack, &s, &data).await;
    let out = run(
        &env,
        &[
            "consume",
            "-s",
            &s,
            "-a",
            "cat-consume-fmt-app",
            "-f",
            r"%k=%s\n",
            "--exit-when-idle",
            "3",
            "--failover-ms",
            "2000",
        ],
    );
    let stderr = out.stderr.clone();
    let stdout = out.ok();
    let mut got: Vec<&str> = stdout.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("k{i}=c{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    // Not a terminal: no progress line, only the summary.
    assert!(stderr.contains("20 records from 2 shards in "), "{stderr}");
    assert!(stderr.contains("records/s)"), "{stderr}");
    assert!(
        !stderr.contains('\r'),
        "no progress line off a terminal: {stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_shard_count_and_mode_show_in_describe() {
    let (_stack, env, s) = stack_with_stream("cat-scale", 2).await;
    let out = run(
        &env,
        &["stream", "update-shard-count", "-s", &s, "--target", "4"],
    )
    .ok();
    assert!(out.contains("2 -> 4 open shards"), "{out}");
    let described = run(&env, &["stream", "describe", "-s", &s]).ok();
    assert!(described.contains("open shards: 4"), "{described}");
    assert!(
        described.contains("mode:        PROVISIONED"),
        "{described}"
    );
    let open = described.lines().filter(|l| l.contains(" open ")).count();
    assert_eq!(open, 4, "{described}");

    let out = run(
        &env,
        &["stream", "update-mode", "-s", &s, "--mode", "on-demand"],
    )
    .ok();
    assert!(out.contains("ON_DEMAND"), "{out}");
    let described = run(&env, &["stream", "describe", "--stream", &s]).ok();
    assert!(described.contains("mode:        ON_DEMAND"), "{described}");

    exits(
        &env,
        &[
            "stream",
            "update-shard-count",
            "-s",
            "cat-nope",
            "--target",
            "2",
        ],
        3,
    );
}

/// `GET /metrics` from `addr` (`host:port`), the body.
fn scrape(addr: &str) -> String {
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the metrics server");
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The address a `--metrics-addr 127.0.0.1:0` run said it serves.
fn metrics_address(running: &mut Running) -> String {
    let line = running.stderr_line(LIMIT, |l| l.contains("metrics on http://"));
    let url = line.split("http://").nth(1).unwrap();
    url.trim_end_matches("/metrics").to_owned()
}

/// Scrapes until `done` holds for the body (the libraries register their metrics when
/// built, at zero, and count as they work: wait for the count, not the name).
fn scrape_until(addr: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let body = scrape(addr);
        if done(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} within the limit:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sum of every series of the counter `name` in a Prometheus text body.
fn counter_total(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_the_libraries_metrics() {
    use kinesis_consumer::metric_names as consumer;
    use kinesis_producer::metric_names as producer;
    let (_stack, env, s) = stack_with_stream("cat-metrics", 2).await;

    let mut produce = Running::start(
        &env,
        &[
            "produce",
            "-s",
            &s,
            "--metrics-addr",
            "127.0.0.1:0",
            "--max-buffered-ms",
            "10",
        ],
    );
    let addr = metrics_address(&mut produce);
    produce.write(b"one\ntwo\nthree\n");
    let body = scrape_until(&addr, "three records delivered", |b| {
        counter_total(b, producer::USER_RECORDS_DELIVERED) == 3.0
    });
    for name in [producer::USER_RECORDS_PUT, producer::PUT_RECORDS_CALLS] {
        assert!(body.contains(name), "{name} missing: {body}");
    }
    assert!(
        counter_total(&body, producer::PUT_RECORDS_CALLS) >= 1.0,
        "{body}"
    );
    produce.close_stdin();
    let done = produce.finish(LIMIT);
    assert!(done.status.success(), "{}", done.stderr);

    let mut consume = Running::start(
        &env,
        &[
            "consume",
            "-s",
            &s,
            "-a",
            "cat-metrics-app",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let addr = metrics_address(&mut consume);
    let body = scrape_until(&addr, "three records processed", |b| {
        counter_total(b, consumer::RECORDS_PROCESSED) == 3.0
    });
    assert!(body.contains(consumer::LEASES_HELD), "{body}");
    assert!(body.contains("# TYPE"), "Prometheus text: {body}");
    consume.signal("-TERM");
    let done = consume.finish(LIMIT);
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(payloads(&done.stdout).len(), 3);

    // An address in use is a clear failure, before anything is done.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let refused = exits(
        &env,
        &[
            "consume",
            "-s",
            &s,
            "-a",
            "cat-metrics-b",
            "--metrics-addr",
            &busy,
        ],
        1,
    );
    assert!(
        refused.stderr.contains("cannot serve metrics"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_profile_and_endpoint_flags_replace_the_variables() {
    let stack = stack().await;
    if stack.kinesis_kind() == ServiceKind::External {
        eprintln!("skipped: the flags are checked against the embedded stack only");
        return;
    }
    let s = stack.create_stream("cat-flags", 1).await.unwrap();
    let endpoint = stack.kinesis_endpoint().to_owned();
    let lists = |out: common::Finished| out.ok().lines().any(|l| l == s);

    // No endpoint variable: --endpoint-url alone reaches the stack.
    let no_endpoint = Env::local(&endpoint, stack.dynamodb_endpoint())
        .without("AWS_ENDPOINT_URL_KINESIS")
        .without("AWS_ENDPOINT_URL_DYNAMODB");
    assert!(lists(run(
        &no_endpoint,
        &["--endpoint-url", &endpoint, "stream", "list"]
    )));
    // It wins over a variable pointing elsewhere.
    let elsewhere = no_endpoint
        .clone()
        .with("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9");
    assert!(lists(run(
        &elsewhere,
        &["stream", "list", "--endpoint-url", &endpoint]
    )));

    // No region anywhere: status 4; --region fixes it.
    let no_region = Env::local(&endpoint, stack.dynamodb_endpoint()).without("AWS_REGION");
    assert_eq!(run(&no_region, &["stream", "list"]).code(), Some(4));
    assert!(lists(run(
        &no_region,
        &["--region", "us-east-1", "stream", "list"]
    )));

    // Region and credentials only in a named profile.
    let dir = std::env::temp_dir().join(format!("cat-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    let credentials = dir.join("credentials");
    std::fs::write(&config, "[profile ops]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        &credentials,
        "[ops]\naws_access_key_id = test\naws_secret_access_key = test\n",
    )
    .unwrap();
    let profiled = Env::isolated()
        .with("AWS_ENDPOINT_URL_KINESIS", &endpoint)
        .with("AWS_CONFIG_FILE", config.to_str().unwrap())
        .with("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap());
    assert_eq!(run(&profiled, &["stream", "list"]).code(), Some(4));
    assert!(lists(run(
        &profiled,
        &["stream", "list", "--profile", "ops"]
    )));
    let _ = std::fs::remove_dir_all(&dir);

    exits(
        &no_endpoint,
        &["--endpoint-url", "127.0.0.1:1", "stream", "list"],
        2,
    );
}

#[test]
fn every_help_shows_examples_and_exit_statuses() {
    let env = Env::isolated();
    for args in [
        vec!["tail", "--help"],
        vec!["consume", "--help"],
        vec!["produce", "--help"],
        vec!["stream", "update-shard-count", "--help"],
        vec!["stream", "consumers", "register", "--help"],
    ] {
        let out = run(&env, &args).ok();
        let examples = out
            .find("Examples:")
            .unwrap_or_else(|| panic!("{args:?}: {out}"));
        let status = out
            .find("Exit status:")
            .unwrap_or_else(|| panic!("{args:?}: {out}"));
        assert!(examples < status, "{args:?}");
        for line in out.lines().filter(|l| l.contains("[default: ")) {
            assert!(!line.contains("Default:"), "{args:?}: said twice: {line}");
        }
    }
}
