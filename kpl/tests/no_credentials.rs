//! A producer whose client has no credentials, against the embedded emulator: the SDK
//! fails each call before sending, and the records must fail at once, naming the cause,
//! instead of expiring at their TTL.
//!
//! A process of its own: the test empties the AWS environment (no credential variables,
//! profile files that do not exist, instance metadata disabled, so the SDK contacts
//! nothing but loopback), which must happen before any other thread reads it.

mod common;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::config::Region;
use futures::future::join_all;
use kinesis_emulators::LocalStack;
use kinesis_producer::{FailureReason, Producer, ProducerRecord};

use common::{assert_concise, next_report};

/// Environment variables through which the SDK could find credentials or an endpoint.
const REMOVED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_ENDPOINT_URL_DYNAMODB",
];

#[test]
fn without_credentials_records_fail_at_once_and_say_so() {
    // One test in this process, and no runtime yet: nothing else reads the environment.
    for var in REMOVED {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/kpl-test/credentials",
    );
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/kpl-test/config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let stack = LocalStack::builder()
        .start_async()
        .await
        .expect("local stack");
    let stream = stack.create_stream("kpl-no-credentials", 1).await.unwrap();
    let endpoint = stack.kinesis_endpoint().to_owned();
    // The default credentials chain, as an application loads it, finding nothing...
    let loaded = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let from_environment = aws_sdk_kinesis::Client::new(&loaded);
    // ...and a client built with no credentials provider at all.
    let bare = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .build(),
    );
    for (case, client, says) in [
        ("default chain", from_environment, "no credentials found"),
        ("no provider", bare, "no credentials provider"),
    ] {
        let producer = Producer::builder(client)
            .with_record_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut failures = producer.failures();
        let mut handles = Vec::new();
        for i in 0..100 {
            let record = ProducerRecord::new(&stream, format!("k{i}"), "x");
            handles.push(producer.put(record).await.unwrap());
        }
        // Long before the 60 s TTL.
        let outcomes = tokio::time::timeout(Duration::from_secs(20), join_all(handles))
            .await
            .unwrap_or_else(|_| panic!("{case}: records were left to expire"));
        for outcome in outcomes {
            let failed = outcome.expect_err("no credentials");
            let FailureReason::Rejected { code, message } = &failed.reason else {
                panic!("{case}: not a rejection: {failed}");
            };
            assert_eq!(code, "NoCredentials", "{case}: {failed}");
            assert!(message.contains(says), "{case}: {failed}");
            assert!(!failed.reason.is_retryable(), "{case}");
            assert!(failed.reason.is_stream_level(), "{case}");
            assert!(failed.to_string().contains("NoCredentials"), "{case}");
            assert_concise(&failed, message);
        }
        let report = next_report(&mut failures, Duration::from_secs(10), |r| {
            r.code == "NoCredentials"
        })
        .await;
        assert!(!report.retryable, "{case}: {report:?}");
        assert_eq!(&*report.stream, stream.as_str());
        producer.shutdown().await;
    }
    // The same stream takes records from a client with credentials: the credentials were
    // the cause.
    let producer = Producer::builder(stack.kinesis_client()).build().unwrap();
    let delivered = producer
        .put(ProducerRecord::new(&stream, "k", "x"))
        .await
        .unwrap()
        .await;
    assert!(delivered.is_ok(), "{delivered:?}");
    producer.shutdown().await;
}
