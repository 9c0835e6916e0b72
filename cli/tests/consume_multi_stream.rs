//! `kinesis-cat consume --stream A --stream B`, run as a user would: one worker (one
//! lease table) consumes both streams, every JSON line names its stream, raw lines carry a
//! `STREAM: ` prefix, and `kinesis-cat leases` names the stream of each lease.

mod common;

use std::collections::BTreeSet;

use aws_sdk_kinesis::primitives::Blob;
use common::Env;

/// Puts `n` records tagged `tag` to `stream`.
async fn put(stack: &kinesis_emulators::LocalStack, stream: &str, tag: &str, n: usize) {
    for i in 0..n {
        stack
            .kinesis_client()
            .put_record()
            .stream_name(stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(format!("{tag}-{i}")))
            .send()
            .await
            .expect("PutRecord");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_consumes_several_streams_and_names_them() {
    let stack = common::stack().await;
    let a = stack.create_stream("cat-multi-a", 2).await.unwrap();
    let b = stack.create_stream("cat-multi-b", 1).await.unwrap();
    put(&stack, &a, "a", 10).await;
    put(&stack, &b, "b", 5).await;
    let env = Env::stack(&stack);
    let app = kinesis_emulators::unique_name("cat-multi-app");
    let consume = |output: &str| {
        common::run(
            &env,
            &[
                "consume",
                "--stream",
                &a,
                "-s",
                &b,
                "--app",
                &app,
                "--output",
                output,
                "--exit-when-idle",
                "3",
                "--failover-ms",
                "2000",
            ],
        )
        .ok()
    };
    let out = consume("json");
    let mut got = BTreeSet::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let (stream, data) = (v["stream"].as_str().unwrap(), v["data"].as_str().unwrap());
        let want = if data.starts_with("a-") { &a } else { &b };
        assert_eq!(stream, want, "{line}");
        assert!(
            v["shard_id"].as_str().unwrap().starts_with("shardId-"),
            "{line}"
        );
        got.insert(data.to_owned());
    }
    assert_eq!(got.len(), 15, "every record once: {out}");

    // Checkpointed: a second run with new records prints only those, prefixed in raw.
    put(&stack, &b, "b2", 3).await;
    let raw = consume("raw");
    let lines: BTreeSet<&str> = raw.lines().collect();
    let want: BTreeSet<String> = (0..3).map(|i| format!("{b}: b2-{i}")).collect();
    assert_eq!(lines, want.iter().map(String::as_str).collect(), "{raw}");

    let table = common::run(&env, &["leases", "--app", &app]).ok();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("stream") && header.contains("shard"),
        "{table}"
    );
    for (stream, shards) in [(&a, 2), (&b, 1)] {
        let rows = table
            .lines()
            .filter(|l| l.split(':').nth(1) == Some(stream.as_str()))
            .count();
        assert_eq!(rows, shards, "{stream} in\n{table}");
    }
}
