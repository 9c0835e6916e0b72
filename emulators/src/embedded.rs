//! The in-process emulators: ferrokinesis and dynoxide behind axum on loopback listeners.
//!
//! ```text
//!  TcpListener 127.0.0.1:p --> axum::serve(ferrokinesis router)   (task on the stack runtime)
//!  TcpListener 127.0.0.1:q --> dynoxide::server::serve_on(memory) (task on the stack runtime)
//! ```
//! Both tasks die with the stack's runtime, which closes their listeners.

use std::net::SocketAddr;

use ferrokinesis::store::StoreOptions;
use tokio::net::TcpListener;

use crate::builder::LocalStackBuilder;
use crate::Error;

/// Store options for embedded ferrokinesis: no artificial state-change delays, a shard limit
/// high enough for resharding tests, and the caller's limit, iterator and subscription
/// settings.
pub(crate) fn store_options(b: &LocalStackBuilder) -> StoreOptions {
    let LocalStackBuilder {
        enforce_limits,
        iterator_ttl,
        subscribe_session,
        subscribe_event_records,
        ..
    } = *b;
    StoreOptions {
        create_stream_ms: 0,
        update_stream_ms: 0,
        delete_stream_ms: 0,
        shard_limit: 1000,
        enforce_limits,
        iterator_ttl_seconds: iterator_ttl.as_secs().max(1),
        subscribe_to_shard_session_ms: u64::try_from(subscribe_session.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
        subscribe_to_shard_event_record_limit: subscribe_event_records.max(1),
        ..StoreOptions::default()
    }
}

async fn bind(service: &'static str, port: u16) -> Result<TcpListener, Error> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|source| Error::Bind {
            service,
            port,
            source,
        })
}

fn local_addr(service: &'static str, port: u16, l: &TcpListener) -> Result<SocketAddr, Error> {
    l.local_addr().map_err(|source| Error::Bind {
        service,
        port,
        source,
    })
}

/// Largest request body the embedded Kinesis accepts: room for a full 5 MiB `PutRecords`
/// after base64 and JSON framing.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// Starts ferrokinesis on `127.0.0.1:port` as a task of the current runtime.
pub(crate) async fn start_kinesis(port: u16, options: StoreOptions) -> Result<SocketAddr, Error> {
    let listener = bind("Kinesis", port).await?;
    let addr = local_addr("Kinesis", port, &listener)?;
    // Axum's default body limit (2 MB) is below what Kinesis accepts: a full PutRecords
    // (5 MiB of data, base64 in JSON) is about 7 MB on the wire.
    let (app, _store) = ferrokinesis::create_app(options);
    let app = app.layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "embedded Kinesis server stopped");
        }
    });
    Ok(addr)
}

/// Starts dynoxide with an in-memory database on `127.0.0.1:port` as a task of the current
/// runtime.
pub(crate) async fn start_dynamodb(port: u16) -> Result<SocketAddr, Error> {
    let db = dynoxide::Database::memory().map_err(|e| Error::Dynoxide(e.to_string()))?;
    let listener = bind("DynamoDB", port).await?;
    let addr = local_addr("DynamoDB", port, &listener)?;
    tokio::spawn(dynoxide::server::serve_on(listener, db));
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn store_options_remove_delays_and_raise_the_shard_limit() {
        let o = store_options(
            &LocalStackBuilder::default()
                .with_enforce_limits(true)
                .with_iterator_ttl(Duration::from_millis(2500))
                .with_subscribe_session(Duration::from_secs(3))
                .with_subscribe_event_records(7),
        );
        assert_eq!(
            (o.create_stream_ms, o.update_stream_ms, o.delete_stream_ms),
            (0, 0, 0)
        );
        assert_eq!(o.shard_limit, 1000);
        assert!(o.enforce_limits);
        assert_eq!(o.iterator_ttl_seconds, 2);
        assert_eq!(o.subscribe_to_shard_session_ms, 3_000);
        assert_eq!(o.subscribe_to_shard_event_record_limit, 7);
        let zero = store_options(
            &LocalStackBuilder::default()
                .with_iterator_ttl(Duration::ZERO)
                .with_subscribe_session(Duration::ZERO)
                .with_subscribe_event_records(0),
        );
        assert_eq!(zero.subscribe_to_shard_session_ms, 1);
        assert_eq!(zero.subscribe_to_shard_event_record_limit, 1);
        assert_eq!(
            zero.iterator_ttl_seconds, 1,
            "a zero TTL would expire every iterator at once"
        );
    }
}
