//! One retry policy for the calls a command repeats on its own (shard listings and reads
//! in `tail`): jittered exponential backoff for what may pass, a bound, and a clear
//! message when it gives up.
//!
//! ```text
//!  call ──Ok──▶ value
//!    └─Err─▶ ServiceFailure ── not retryable (not found, access, bad iterator) ──▶ Error::Kinesis at once
//!                └─ retryable (network, throttling, 5xx) ─▶ warn once ─▶ sleep 200 ms … 5 s ─▶ call
//!                       └─ more than `give_up_after` of delays ─▶ Error::GaveUp { attempts, secs }
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::ServiceFailure;
use crate::Error;

/// How long and how often a call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay; doubles (with jitter) after each failure.
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// The total of delays after which the call is given up.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// 200 ms doubling to 5 s, given up after 60 s of failures.
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries (for one-shot commands such as `stream describe`).
    pub const NONE: RetryPolicy = RetryPolicy {
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        give_up_after: Duration::ZERO,
    };

    /// Calls `call` until it succeeds, fails for good, or the policy gives up. The first
    /// retryable failure is logged at warn level (with its cause); later ones at debug.
    ///
    /// # Cancellation
    /// Dropping the future stops retrying; a call in flight is abandoned.
    ///
    /// # Errors
    /// [`Error::Kinesis`] for a failure retrying cannot fix, [`Error::GaveUp`] when the
    /// retryable failures outlast the policy.
    pub async fn run<T, E, F, Fut>(
        &self,
        operation: &'static str,
        stream: &str,
        mut call: F,
    ) -> Result<T, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .with_total_delay(Some(self.give_up_after))
            .without_max_times()
            .build();
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let failure = match call().await {
                Ok(v) => {
                    if attempts > 1 {
                        tracing::info!(operation, stream, attempts, "succeeded again");
                    }
                    return Ok(v);
                }
                Err(e) => ServiceFailure::from_sdk(&e),
            };
            if !failure.retryable || self.give_up_after.is_zero() {
                return Err(Error::Kinesis {
                    operation,
                    stream: stream.to_owned(),
                    failure: Box::new(failure),
                });
            }
            let Some(delay) = delays.next() else {
                return Err(Error::GaveUp {
                    operation,
                    stream: stream.to_owned(),
                    attempts,
                    secs: started.elapsed().as_secs(),
                    failure: Box::new(failure),
                });
            };
            if attempts == 1 {
                tracing::warn!(operation, stream, error = %failure, "call failed; retrying");
            } else {
                tracing::debug!(operation, stream, attempts, error = %failure, "call failed again");
            }
            tokio::time::sleep(delay).await;
        }
    }
}
