//! `--metrics-addr`: what the libraries emit through the `metrics` facade (their
//! `metric_names` modules), served in the Prometheus text format for a scraper.
//!
//! ```text
//!  kinesis-producer / kinesis-consumer ─metrics::counter!/gauge!/histogram!─▶ PrometheusRecorder
//!  scraper ─GET /metrics─▶ axum (ADDR) ─▶ PrometheusHandle::render() ─▶ text/plain; version=0.0.4
//! ```
//!
//! The recorder is installed for the whole process before the command builds its producer
//! or consumer, so every metric from the start is counted. Port 0 picks a free port; the
//! address actually served is said on standard error
//! (`kinesis-cat: metrics on http://127.0.0.1:PORT/metrics`).

use std::net::SocketAddr;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Error;

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// Installs the Prometheus recorder and serves `GET /metrics` (and `GET /`) on `addr`
/// until the process ends; returns the address bound (its port is known also when
/// `addr` asks for port 0).
///
/// Must be called from within the tokio runtime.
///
/// # Cancellation
/// Binding is done when this returns; the server task runs until the runtime stops.
///
/// # Errors
/// [`Error::Metrics`] when the address cannot be bound (in use, not local) or another
/// recorder is already installed.
pub async fn serve(addr: SocketAddr) -> Result<SocketAddr, Error> {
    let fail = |reason: String| Error::Metrics { addr, reason };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| fail(e.to_string()))?;
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(scrape))
        .with_state(handle);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics server stopped");
        }
    });
    crate::say!("kinesis-cat: metrics on http://{bound}/metrics");
    Ok(bound)
}

async fn scrape(
    axum::extract::State(handle): axum::extract::State<PrometheusHandle>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Histograms and summaries are computed from what was recorded since the last render.
    handle.run_upkeep();
    ([(CONTENT_TYPE, TEXT_FORMAT)], handle.render())
}
