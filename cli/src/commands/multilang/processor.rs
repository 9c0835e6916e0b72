//! The record processor that stands in for the MultiLangDaemon's: each call of the
//! library becomes one protocol exchange with the shard's child process.
//!
//! ```text
//!  kinesis_consumer ─initialize──────▶ (pause after failures) spawn child ─▶ exchange(initialize)
//!  Scheduler        ─process_records─▶ exchange(processRecords, checkpointer)
//!                   ─shard_ended─────▶ exchange(shardEnded, checkpointer) ─▶ close at SHARD_END
//!                   ─shutdown_requested▶ exchange(shutdownRequested, checkpointer) ─▶ close
//!                   ─lease_lost──────▶ exchange(leaseLost) ─▶ close
//!  exchange: write the message ─▶ read messages until `status`:
//!     checkpoint ─▶ Checkpointer ─▶ answer { error: Java exception name | null }
//!     status { responseFor = action } ─▶ done
//!     wrong responseFor / end of output / silent past timeoutInSeconds ─▶ ChildFailure
//!  ChildFailure during initialize / process_records / shard_ended:
//!     count + log ─▶ kill the child ─▶ unwind (resume_unwind, no panic message) ─▶ the
//!     library's dispatcher starts the shard again from its last checkpoint after
//!     parentShardPollIntervalMillis, with a new processor and a new child
//! ```
//!
//! # Giving a shard up
//! The library's [`RecordProcessor`] has no way to hand a lease back from a processor.
//! What it does offer: a processor whose call unwinds ends its shard consumer, and the
//! dispatcher starts the shard again, from the last checkpoint, after the parent poll
//! interval, as long as this worker holds the lease. That is what a failed child needs
//! (the records it did not checkpoint are delivered again, to a new child), so a failure
//! ends the call with [`std::panic::resume_unwind`], which unwinds without running the
//! panic hook: no panic message, only this module's error line and the dispatcher's
//! (`shard consumer failed; restarting it ... task N panicked with message "child process of
//! shard ... given up: ..."`). A shard whose children keep failing is retried after a pause
//! that doubles from 0.5 s up to 30 s (cut short by shutdown); a first batch handled without
//! failure resets it. The Java daemon exits the whole JVM instead.
//!
//! Failures while the shard is ending anyway (`leaseLost`, `shutdownRequested`) are counted
//! and logged, and the child killed; nothing is restarted.
//!
//! # Empty record lists
//! The library calls `process_records` only with records. With
//! `callProcessRecordsEvenForEmptyRecordList`, a ticker sends the child an empty
//! `processRecords` (with the last batch's checkpointer) whenever no batch came for the
//! idle interval, once a first batch was delivered. A child failing then is given up at
//! the next call of the library.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_consumer::{
    Checkpointer, InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    ShardEndedInput, ShutdownRequestedInput,
};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::child::ChildProcess;
use super::messages::{ChildMessage, HostMessage};
use super::properties::Executable;

/// Counter of child processes given up, labelled by `reason` (`spawn`, `exited`,
/// `timeout`, `wrong_response`).
pub const CHILD_FAILURES: &str = "kinesis_cat_multilang_child_failures_total";

/// The first pause before a shard whose child failed gets a new child; doubles per
/// consecutive failure.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The longest pause before a shard whose children keep failing gets a new child.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// How long a child may take to exit after its standard input closed, when
/// `timeoutInSeconds` does not say.
const DEFAULT_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Why a child was given up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChildFailure {
    /// The program could not be started.
    #[error("could not start {command:?}: {error}")]
    Spawn {
        /// `executableName`.
        command: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The child's output ended (it exited), or it stopped reading its input.
    #[error("the child process exited (or closed its pipes) during {action}")]
    Exited {
        /// The action under way.
        action: &'static str,
    },
    /// No message came within `timeoutInSeconds`.
    #[error("the child sent nothing for {secs} s during {action} (timeoutInSeconds)")]
    TimedOut {
        /// The action under way.
        action: &'static str,
        /// The timeout, in seconds.
        secs: u64,
    },
    /// The child's `status` named another action.
    #[error(
        "the child answered {action} with a status for {}",
        got.as_deref().unwrap_or("no action")
    )]
    WrongResponse {
        /// The action under way.
        action: &'static str,
        /// What its `responseFor` said.
        got: Option<String>,
    },
    /// A call came while there was no child (it had been given up).
    #[error("no child process for {action}")]
    NoChild {
        /// The action asked for.
        action: &'static str,
    },
}

impl ChildFailure {
    /// The metric label of this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            ChildFailure::Spawn { .. } => "spawn",
            ChildFailure::Exited { .. } | ChildFailure::NoChild { .. } => "exited",
            ChildFailure::TimedOut { .. } => "timeout",
            ChildFailure::WrongResponse { .. } => "wrong_response",
        }
    }
}

/// What every processor of one host shares.
#[derive(Debug)]
pub struct Host {
    /// The child command.
    pub executable: Executable,
    /// `timeoutInSeconds`: the longest wait for each message from a child.
    pub timeout: Option<Duration>,
    /// With `callProcessRecordsEvenForEmptyRecordList`: how long without records before
    /// an empty `processRecords`.
    pub empty_record_list_interval: Option<Duration>,
    /// Cancelled when the host shuts down: cuts retry pauses short.
    pub stopping: CancellationToken,
    /// Children given up so far.
    pub failures: AtomicU64,
    /// Consecutive failures per shard, for the retry pause.
    consecutive: Mutex<HashMap<String, u32>>,
}

impl Host {
    /// Settings shared by the processors of one host.
    pub fn new(
        executable: Executable,
        timeout: Option<Duration>,
        empty_record_list_interval: Option<Duration>,
        stopping: CancellationToken,
    ) -> Self {
        Host {
            executable,
            timeout,
            empty_record_list_interval,
            stopping,
            failures: AtomicU64::new(0),
            consecutive: Mutex::new(HashMap::new()),
        }
    }

    /// A processor for `shard_id`.
    pub fn processor(self: &Arc<Self>, shard_id: &str) -> MultiLangProcessor {
        MultiLangProcessor {
            host: self.clone(),
            shard_id: shard_id.to_owned(),
            slot: Arc::new(tokio::sync::Mutex::new(Slot::default())),
            ticker: None,
        }
    }

    /// How long the child must exit in once its input is closed.
    fn close_grace(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_CLOSE_GRACE)
    }

    /// Counts and logs a failure of `shard`'s child.
    fn note_failure(&self, shard: &str, failure: &ChildFailure, restart: bool) {
        ::metrics::counter!(CHILD_FAILURES, "reason" => failure.reason()).increment(1);
        self.failures.fetch_add(1, Ordering::Relaxed);
        if restart {
            *self.consecutive().entry(shard.to_owned()).or_insert(0) += 1;
            tracing::error!(
                shard,
                error = %failure,
                "giving the child process up; the shard starts again from its last checkpoint"
            );
        } else {
            tracing::error!(shard, error = %failure, "the child process failed while its shard was ending");
        }
    }

    /// The pause before `shard` gets a new child: none at first, then 0.5 s doubling per
    /// consecutive failure, up to 30 s.
    fn retry_pause(&self, shard: &str) -> Duration {
        let n = self.consecutive().get(shard).copied().unwrap_or(0);
        if n == 0 {
            return Duration::ZERO;
        }
        FIRST_RETRY_PAUSE
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_RETRY_PAUSE)
    }

    /// Forgets `shard`'s failures (its child handled a batch).
    fn note_success(&self, shard: &str) {
        self.consecutive().remove(shard);
    }

    fn consecutive(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.consecutive.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The child of a processor and what the empty-list ticker needs.
#[derive(Debug, Default)]
struct Slot {
    /// The running child; `None` before `initialize`, after it ended or was given up.
    child: Option<ChildProcess>,
    /// A failure found by the ticker, to be acted on at the next call of the library.
    failed: Option<ChildFailure>,
    /// The checkpointer of the latest batch (for empty `processRecords`).
    checkpointer: Option<Checkpointer>,
    /// When the last exchange ended.
    last_exchange: Option<Instant>,
}

/// The processor of one shard: owns the shard's child process.
#[derive(Debug)]
pub struct MultiLangProcessor {
    /// Settings and counters of the host.
    host: Arc<Host>,
    /// The shard.
    shard_id: String,
    /// The child, shared with the empty-list ticker.
    slot: Arc<tokio::sync::Mutex<Slot>>,
    /// Stops the empty-list ticker when dropped.
    ticker: Option<DropGuard>,
}

impl MultiLangProcessor {
    /// Gives the child up: counts and logs the failure, kills the child, and returns the
    /// message to unwind with.
    async fn abandon(&mut self, failure: ChildFailure) -> String {
        self.ticker = None;
        self.host.note_failure(&self.shard_id, &failure, true);
        let child = self.slot.lock().await.child.take();
        if let Some(child) = child {
            child.kill().await;
        }
        format!(
            "child process of shard {} given up: {failure}",
            self.shard_id
        )
    }

    /// Ends the call so that the library starts the shard again (see the module docs).
    async fn restart_shard(&mut self, failure: ChildFailure) {
        let message = self.abandon(failure).await;
        std::panic::resume_unwind(Box::new(message));
    }

    /// Runs one exchange with the child, or says why it failed (a failure the ticker found
    /// first included).
    async fn call(
        &self,
        message: &HostMessage,
        checkpointer: Option<&Checkpointer>,
    ) -> Result<(), ChildFailure> {
        let mut slot = self.slot.lock().await;
        if let Some(f) = slot.failed.take() {
            return Err(f);
        }
        let timeout = self.host.timeout;
        let Some(child) = slot.child.as_mut() else {
            return Err(ChildFailure::NoChild {
                action: message.action(),
            });
        };
        let result = exchange(child, message, checkpointer, timeout).await;
        slot.last_exchange = Some(Instant::now());
        if result.is_err() {
            // Out of the slot at once, so that the ticker never talks to it again.
            if let Some(child) = slot.child.take() {
                child.kill().await;
            }
        }
        result
    }

    /// Closes the child (its input ends; it exits), if there is one.
    async fn close_child(&mut self) {
        self.ticker = None;
        let child = self.slot.lock().await.child.take();
        if let Some(child) = child {
            if let Some(status) = child.close(self.host.close_grace()).await {
                if !status.success() {
                    tracing::warn!(shard = %self.shard_id, %status, "the child process exited with a failure status");
                }
            }
        }
    }

    /// Starts the empty-list ticker after the first batch, when configured.
    fn start_ticker(&mut self) {
        let Some(interval) = self.host.empty_record_list_interval else {
            return;
        };
        if self.ticker.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        self.ticker = Some(stop.clone().drop_guard());
        let slot = self.slot.clone();
        let timeout = self.host.timeout;
        let shard = self.shard_id.clone();
        tokio::spawn(async move {
            loop {
                let due = {
                    let s = slot.lock().await;
                    s.last_exchange.unwrap_or_else(Instant::now) + interval
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
                let mut s = slot.lock().await;
                if stop.is_cancelled() || s.failed.is_some() {
                    return;
                }
                if s.last_exchange
                    .is_some_and(|t| t + interval > Instant::now())
                {
                    continue;
                }
                let checkpointer = s.checkpointer.clone();
                let Some(child) = s.child.as_mut() else {
                    return;
                };
                let empty = HostMessage::process_records(&[], None);
                let result = exchange(child, &empty, checkpointer.as_ref(), timeout).await;
                s.last_exchange = Some(Instant::now());
                if let Err(f) = result {
                    tracing::warn!(shard, error = %f, "the child failed an empty processRecords");
                    if let Some(child) = s.child.take() {
                        child.kill().await;
                    }
                    s.failed = Some(f);
                    return;
                }
            }
        });
    }
}

#[async_trait]
impl RecordProcessor for MultiLangProcessor {
    async fn initialize(&mut self, input: InitializationInput) {
        let pause = self.host.retry_pause(&self.shard_id);
        if !pause.is_zero() {
            tracing::info!(shard = %self.shard_id, pause_ms = pause.as_millis() as u64, "pausing before a new child process");
            tokio::select! {
                _ = self.host.stopping.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if self.host.stopping.is_cancelled() {
            // Shutting down: no child; the library asks for shutdown_requested next.
            return;
        }
        let child = match ChildProcess::spawn(&self.host.executable, &self.shard_id) {
            Ok(c) => c,
            Err(error) => {
                let command = self.host.executable.text.clone();
                return self
                    .restart_shard(ChildFailure::Spawn { command, error })
                    .await;
            }
        };
        tracing::info!(shard = %self.shard_id, pid = child.id(), checkpoint = %input.checkpoint, "child process started");
        self.slot.lock().await.child = Some(child);
        let message = HostMessage::initialize(&input.shard_id, &input.checkpoint);
        if let Err(f) = self.call(&message, None).await {
            self.restart_shard(f).await;
        }
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        if self.host.stopping.is_cancelled() && self.slot.lock().await.child.is_none() {
            // Shutting down before a child was started: leave the batch to the next owner.
            return;
        }
        self.slot.lock().await.checkpointer = Some(input.checkpointer.clone());
        let message = HostMessage::process_records(&input.records, input.millis_behind_latest);
        match self.call(&message, Some(&input.checkpointer)).await {
            Ok(()) => {
                self.host.note_success(&self.shard_id);
                self.start_ticker();
            }
            Err(f) => self.restart_shard(f).await,
        }
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        self.ticker = None;
        if self.slot.lock().await.child.is_none() {
            return;
        }
        match self.call(&HostMessage::LeaseLost, None).await {
            Ok(()) => self.close_child().await,
            Err(f) => {
                let _ = self.abandon_quietly(f).await;
            }
        }
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        self.ticker = None;
        if self.host.stopping.is_cancelled() && self.slot.lock().await.child.is_none() {
            return;
        }
        match self
            .call(&HostMessage::ShardEnded, Some(&input.checkpointer))
            .await
        {
            Ok(()) if input.checkpointer.last_checkpoint().is_shard_end() => {
                self.close_child().await
            }
            // Not checkpointed: the library asks again, and the same child answers again.
            Ok(()) => {}
            Err(f) => self.restart_shard(f).await,
        }
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        self.ticker = None;
        if self.slot.lock().await.child.is_none() {
            return;
        }
        match self
            .call(&HostMessage::ShutdownRequested, Some(&input.checkpointer))
            .await
        {
            Ok(()) => self.close_child().await,
            Err(f) => {
                let _ = self.abandon_quietly(f).await;
            }
        }
    }
}

impl MultiLangProcessor {
    /// Gives the child up at the end of its shard: counted and logged, not restarted.
    async fn abandon_quietly(&mut self, failure: ChildFailure) {
        self.ticker = None;
        self.host.note_failure(&self.shard_id, &failure, false);
        let child = self.slot.lock().await.child.take();
        if let Some(child) = child {
            child.kill().await;
        }
    }
}

/// Waits for `fut`, for at most `limit` when there is one.
async fn bounded<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Duration> {
    match limit {
        Some(d) => tokio::time::timeout(d, fut).await.map_err(|_| d),
        None => Ok(fut.await),
    }
}

/// One protocol exchange: writes `message`, serves the child's checkpoint requests with
/// `checkpointer` (none: answered `InvalidStateException`, as the daemon does during
/// `initialize` and `leaseLost`), and ends at the child's `status`.
///
/// # Cancellation
/// Dropping the future may leave the child mid-exchange: it must then be given up.
async fn exchange(
    child: &mut ChildProcess,
    message: &HostMessage,
    checkpointer: Option<&Checkpointer>,
    timeout: Option<Duration>,
) -> Result<(), ChildFailure> {
    let action = message.action();
    let timed_out = |d: Duration| ChildFailure::TimedOut {
        action,
        secs: d.as_secs(),
    };
    match bounded(timeout, child.send(&message.to_line())).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ChildFailure::Exited { action }),
        Err(d) => return Err(timed_out(d)),
    }
    loop {
        let next = bounded(timeout, child.next())
            .await
            .map_err(timed_out)?
            .ok_or(ChildFailure::Exited { action })?;
        let answer = match next {
            ChildMessage::Status { response_for } => {
                return if response_for.as_deref() == Some(action) {
                    Ok(())
                } else {
                    Err(ChildFailure::WrongResponse {
                        action,
                        got: response_for,
                    })
                };
            }
            ChildMessage::Checkpoint {
                sequence_number,
                sub_sequence_number,
            } => {
                let error = checkpoint(
                    checkpointer,
                    sequence_number.as_deref(),
                    sub_sequence_number,
                )
                .await;
                HostMessage::Checkpoint {
                    sequence_number,
                    sub_sequence_number,
                    error: error.map(str::to_owned),
                }
            }
            ChildMessage::BadCheckpoint { reason } => {
                tracing::warn!(reason, "unreadable checkpoint request");
                HostMessage::Checkpoint {
                    sequence_number: None,
                    sub_sequence_number: None,
                    error: Some("IllegalArgumentException".to_owned()),
                }
            }
        };
        match bounded(timeout, child.send(&answer.to_line())).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ChildFailure::Exited { action }),
            Err(d) => return Err(timed_out(d)),
        }
    }
}

/// Checkpoints as a child asked: at the last delivered record (`sequence_number` null),
/// or at a record (sub-sequence number 0 when not given, as the Java checkpointer).
/// Returns the simple name of the Java exception the daemon would answer with, if any.
async fn checkpoint(
    checkpointer: Option<&Checkpointer>,
    sequence_number: Option<&str>,
    sub_sequence_number: Option<u64>,
) -> Option<&'static str> {
    let Some(cp) = checkpointer else {
        tracing::warn!(
            "checkpoint asked for outside processRecords, shardEnded and shutdownRequested"
        );
        return Some("InvalidStateException");
    };
    let result = match sequence_number {
        None => cp.checkpoint().await,
        Some(s) => cp.checkpoint_at(s, sub_sequence_number.unwrap_or(0)).await,
    };
    match result {
        Ok(()) => None,
        Err(e) => {
            let name = java_exception_name(&e);
            tracing::warn!(shard = cp.shard_id(), error = %e, answered = name, "checkpoint failed");
            Some(name)
        }
    }
}

/// The Java KCL exception a checkpointer would have thrown for `e` (simple name).
pub fn java_exception_name(e: &kinesis_consumer::Error) -> &'static str {
    use kinesis_consumer::Error;
    match e {
        Error::LeaseLost { .. } | Error::ShuttingDown => "ShutdownException",
        Error::InvalidCheckpoint { .. } => "IllegalArgumentException",
        e if e.is_throttling() => "ThrottlingException",
        e if e.is_retryable() => "KinesisClientLibDependencyException",
        _ => "InvalidStateException",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_errors_carry_the_java_exception_names() {
        use kinesis_consumer::Error;
        assert_eq!(
            java_exception_name(&Error::LeaseLost {
                lease_key: "s".into()
            }),
            "ShutdownException"
        );
        assert_eq!(
            java_exception_name(&Error::ShuttingDown),
            "ShutdownException"
        );
        assert_eq!(
            java_exception_name(&Error::InvalidCheckpoint {
                shard_id: "s".into(),
                requested: "1/0".into(),
                reason: "after the last record delivered".into()
            }),
            "IllegalArgumentException"
        );
        let ddb = |retryable, throttled| Error::DynamoDb {
            operation: "UpdateItem",
            table: "t".into(),
            message: "m".into(),
            retryable,
            throttled,
        };
        assert_eq!(java_exception_name(&ddb(true, true)), "ThrottlingException");
        assert_eq!(
            java_exception_name(&ddb(true, false)),
            "KinesisClientLibDependencyException"
        );
        assert_eq!(
            java_exception_name(&ddb(false, false)),
            "InvalidStateException"
        );
    }

    #[test]
    fn retry_pauses_double_up_to_a_bound() {
        let host = Host::new(
            Executable {
                text: "x".into(),
                program: "x".into(),
                args: vec![],
                working_dir: ".".into(),
                line: 1,
            },
            None,
            None,
            CancellationToken::new(),
        );
        let f = ChildFailure::Exited {
            action: "processRecords",
        };
        assert_eq!(host.retry_pause("s"), Duration::ZERO);
        let mut pauses = Vec::new();
        for _ in 0..8 {
            host.note_failure("s", &f, true);
            pauses.push(host.retry_pause("s").as_millis());
        }
        assert_eq!(
            pauses,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert_eq!(host.retry_pause("other"), Duration::ZERO);
        host.note_success("s");
        assert_eq!(host.retry_pause("s"), Duration::ZERO);
        host.note_failure("s", &f, false);
        assert_eq!(
            host.retry_pause("s"),
            Duration::ZERO,
            "a failure at the end does not count"
        );
        assert_eq!(host.failures.load(Ordering::Relaxed), 9);
    }
}
