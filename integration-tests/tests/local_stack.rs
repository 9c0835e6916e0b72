//! Embedded tier: the default [`LocalStack`] (ferrokinesis + dynoxide in-process), or
//! whatever `AWS_ENDPOINT_URL_*` points at.
//!
//! ```text
//!  each test --> LocalStack::builder().start_async() --> checks / direct SDK calls --> drop
//! ```

use std::net::TcpStream;
use std::time::Duration;

use integration_tests::checks;
use kinesis_emulators::{EndpointOverrides, LocalStack, ServiceKind};

async fn stack() -> LocalStack {
    LocalStack::builder()
        .start_async()
        .await
        .expect("stack starts")
}

#[tokio::test]
async fn stack_starts_with_both_services_answering() {
    let stack = stack().await;
    for (kind, endpoint) in [
        (stack.kinesis_kind(), stack.kinesis_endpoint()),
        (stack.dynamodb_kind(), stack.dynamodb_endpoint()),
    ] {
        assert!(endpoint.starts_with("http"), "{endpoint}");
        if kind == ServiceKind::Embedded {
            assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
        }
    }
    stack
        .kinesis_client()
        .list_streams()
        .send()
        .await
        .expect("Kinesis answers");
    stack
        .dynamodb_client()
        .list_tables()
        .send()
        .await
        .expect("DynamoDB answers");
}

#[tokio::test]
async fn create_stream_reaches_active_with_the_asked_shard_count() {
    let stack = stack().await;
    let stream = stack.create_stream("active", 5).await.expect("create");
    let summary = stack
        .kinesis_client()
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .expect("describe");
    let summary = summary.stream_description_summary().expect("summary");
    assert_eq!(summary.stream_status().as_str(), "ACTIVE");
    assert_eq!(summary.open_shard_count(), 5);
    let shards = integration_tests::kinesis::list_shards(&stack.kinesis_client(), &stream).await;
    assert_eq!(shards.len(), 5);
    stack.delete_stream(&stream).await.expect("delete");
}

#[tokio::test]
async fn put_get_round_trip() {
    checks::put_get_round_trip(&stack().await).await;
}

#[tokio::test]
async fn lease_table_conditional_writes() {
    checks::lease_table_conditional_writes(&stack().await).await;
}

#[tokio::test]
async fn resharding_lineage() {
    checks::resharding_lineage(&stack().await).await;
}

#[tokio::test]
async fn shard_end() {
    let stack = stack().await;
    // ferrokinesis never sends ChildShards; every other server must.
    let strict = stack.kinesis_kind() != ServiceKind::Embedded;
    checks::shard_end(&stack, strict).await;
}

#[tokio::test]
async fn write_limit_enforcement_is_reported() {
    let plain = stack().await;
    let enforced = LocalStack::builder()
        .with_enforce_limits(true)
        .start_async()
        .await
        .expect("stack");
    if plain.kinesis_kind() == ServiceKind::Embedded {
        assert_eq!(plain.write_limits_enforced(), Some(false));
        assert_eq!(enforced.write_limits_enforced(), Some(true));
    } else {
        assert_eq!(plain.write_limits_enforced(), None);
    }
}

#[tokio::test]
async fn endpoint_overrides_use_the_given_endpoint_and_start_nothing_for_it() {
    let first = stack().await;
    let stream = first.create_stream("shared", 1).await.expect("create");
    let second = LocalStack::builder()
        .with_endpoint_overrides(EndpointOverrides {
            kinesis: Some(first.kinesis_endpoint().to_owned()),
            dynamodb: None,
        })
        .start_async()
        .await
        .expect("second stack");
    assert_eq!(second.kinesis_kind(), ServiceKind::External);
    assert_eq!(second.kinesis_endpoint(), first.kinesis_endpoint());
    assert_eq!(second.kinesis_port(), None);
    assert_ne!(second.dynamodb_kind(), ServiceKind::External);
    assert_ne!(second.dynamodb_endpoint(), first.dynamodb_endpoint());
    let listed = second
        .kinesis_client()
        .list_streams()
        .send()
        .await
        .expect("list through the external endpoint");
    assert!(listed.stream_names().contains(&stream), "{listed:?}");
    first.delete_stream(&stream).await.expect("delete");
}

#[tokio::test]
async fn drop_stops_the_servers() {
    let stack = LocalStack::builder()
        .with_endpoint_overrides(EndpointOverrides::default())
        .start_async()
        .await
        .expect("stack");
    assert_eq!(stack.kinesis_kind(), ServiceKind::Embedded);
    assert_eq!(stack.dynamodb_kind(), ServiceKind::Embedded);
    let ports = [
        stack.kinesis_port().expect("kinesis port"),
        stack.dynamodb_port().expect("dynamodb port"),
    ];
    for port in ports {
        TcpStream::connect(("127.0.0.1", port)).expect("server listening before drop");
    }
    drop(stack);
    for port in ports {
        let refused = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(1),
        );
        assert!(
            refused.is_err(),
            "port {port} still accepts connections after drop"
        );
    }
}

#[test]
fn starts_and_stops_from_sync_code() {
    let stack = LocalStack::builder()
        .with_endpoint_overrides(EndpointOverrides::default())
        .start()
        .expect("stack from sync code");
    let port = stack.kinesis_port().expect("port");
    TcpStream::connect(("127.0.0.1", port)).expect("listening");
}

#[test]
fn a_taken_fixed_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = LocalStack::builder()
        .with_endpoint_overrides(EndpointOverrides::default())
        .with_kinesis_port(port)
        .start()
        .expect_err("port is taken");
    let text = err.to_string();
    assert!(
        text.contains("Kinesis") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );
}
