//! Stream helpers shared by the stack, tests and the CLI.
//!
//! ```text
//!  DescribeStreamSummary --CREATING/UPDATING/not found--> sleep (100 ms, doubling to 1 s) --+
//!        ^                                                                                  |
//!        +----------------------------------------------------------------------------------+
//!        --ACTIVE--> Ok          --deadline passed--> Error::StreamNotActive
//! ```

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::StreamStatus;

use crate::Error;

/// First pause between polls; local emulators are usually ACTIVE by the first or second poll.
const FIRST_POLL: Duration = Duration::from_millis(100);
/// Longest pause between polls, to stay well inside DescribeStreamSummary's
/// 20 calls/s account limit on real AWS.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Polls `DescribeStreamSummary` until the stream is `ACTIVE` or `timeout` has passed.
///
/// A stream that is not found yet counts as not ready (real AWS can briefly answer
/// `ResourceNotFoundException` right after `CreateStream`).
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Errors
/// [`Error::StreamNotActive`] on timeout (with the last status seen, e.g. `DELETING`);
/// [`Error::Kinesis`] for any other failure of the call.
pub async fn wait_for_stream_active(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_POLL;
    loop {
        let last_status = match client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
        {
            Ok(out) => {
                let status = out
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone());
                if status == Some(StreamStatus::Active) {
                    return Ok(());
                }
                status.map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                "not found".to_owned()
            }
            Err(e) => return Err(Error::kinesis("DescribeStreamSummary", stream, e)),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::StreamNotActive {
                stream: stream.to_owned(),
                timeout,
                last_status,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}
