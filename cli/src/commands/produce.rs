//! `kinesis-cat produce`: standard input to a stream, one record per line, through the
//! producer library (aggregation, retries, rate limits).
//!
//! ```text
//!  stdin lines ─▶ parse (text | json) ─▶ Producer::put ─▶ handles ─▶ outcome counter
//!      │ bad line: reported, counted failed        (waits on the budget)      │
//!      ▼                                                                      ▼
//!  EOF ─▶ shutdown (flush) ─────────────────────────────────▶ summary on stderr, exit code
//! ```

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kinesis_producer::{CallFailure, Producer, ProducerRecord, PutHandle};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{FailureKind, Service};
use crate::{args, Error};

/// How each input line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// The line is the data; the key is `--partition-key` or a random one per line.
    Text,
    /// `{"partition_key": "...", "explicit_hash_key": "..." (optional), "data": "utf-8"}`
    /// or with `"data_b64"` instead of `"data"`.
    Json,
}

/// Arguments of `kinesis-cat produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The stream to write to.
    #[arg(long, value_parser = args::stream_name)]
    pub stream: String,
    /// How to read each line.
    #[arg(long, value_enum, default_value_t = InputFormat::Text)]
    pub input: InputFormat,
    /// Partition key for every line in text mode (1 to 256 characters). Default: a random
    /// key per line.
    #[arg(long, value_parser = args::partition_key)]
    pub partition_key: Option<String>,
    /// Send each line as its own Kinesis record (no KPL aggregation).
    #[arg(long)]
    pub no_aggregate: bool,
    /// Keep per-key order, also across retries (one record per shard in flight).
    #[arg(long)]
    pub ordered: bool,
    /// Compress Kinesis records (only this project's consumer inflates them).
    #[arg(long)]
    pub compress: bool,
    /// How long a record may wait to be batched, in milliseconds (1 to 60000). Default: 100.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub max_buffered_ms: u64,
    /// Read at most this many lines per second (at least 1). Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Stop at the first failed call other than throttling (an unreachable endpoint, a
    /// server error) instead of retrying until each record's TTL (30 s). Calls that no
    /// retry can fix (stream not found, access denied, no credentials) stop the run
    /// either way. Default: off.
    #[arg(long)]
    pub fail_fast: bool,
    /// After Ctrl-C/SIGTERM, wait at most this many seconds for the records already read
    /// to be delivered; those still undelivered then fail. Default: until each record's
    /// TTL (30 s).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_timeout_secs: Option<u64>,
}

/// One JSON input line.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    partition_key: String,
    #[serde(default)]
    explicit_hash_key: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_b64: Option<String>,
}

/// Turns one input line into a record, or says what is wrong with it.
fn parse_line(args: &ProduceArgs, line: Vec<u8>) -> Result<ProducerRecord, String> {
    match args.input {
        InputFormat::Text => {
            let key = match &args.partition_key {
                Some(k) => k.clone(),
                None => format!("{:032x}", rand::random::<u128>()),
            };
            Ok(ProducerRecord::new(&args.stream, key, line))
        }
        InputFormat::Json => {
            let j: JsonLine =
                serde_json::from_slice(&line).map_err(|e| format!("bad JSON: {e}"))?;
            let data = match (j.data, j.data_b64) {
                (Some(text), None) => Bytes::from(text),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| format!("bad data_b64: {e}"))?
                    .into(),
                (None, None) => return Err("one of \"data\" or \"data_b64\" is required".into()),
                (Some(_), Some(_)) => return Err("give \"data\" or \"data_b64\", not both".into()),
            };
            let mut r = ProducerRecord::new(&args.stream, j.partition_key, data);
            if let Some(h) = j.explicit_hash_key {
                r = r.with_explicit_hash_key(h);
            }
            Ok(r)
        }
    }
}

/// Input lines that could not be sent (not parsable, refused by `put`): the first few
/// are printed with their line number, the rest only counted.
#[derive(Debug, Default)]
struct BadLines {
    /// How many.
    count: u64,
}

impl BadLines {
    /// Bad lines printed one by one before the rest are only counted.
    const PRINTED: u64 = 10;

    fn add(&mut self, line: u64, why: &dyn std::fmt::Display) {
        self.count += 1;
        if self.count <= Self::PRINTED {
            crate::say!("kinesis-cat: line {line}: {why}");
        } else if self.count == Self::PRINTED + 1 {
            crate::say!("kinesis-cat: (further bad lines are counted, not printed)");
        }
    }
}

/// Failed records grouped by what failed them: the first of each group is printed when
/// it happens, the rest are counted and summarised at the end.
#[derive(Debug, Default)]
struct Tally {
    /// Records delivered.
    delivered: u64,
    /// Records failed (after the producer accepted them).
    failed: u64,
    /// Failure groups in order of first occurrence: (key, first line, message, count).
    groups: Vec<FailureGroup>,
}

/// Records that failed the same way.
#[derive(Debug)]
struct FailureGroup {
    /// What makes failures the same: the reason and the last attempt's error code.
    key: String,
    /// The last attempt's error code, if there was an attempt.
    code: Option<String>,
    /// The input line of the first one.
    first_line: u64,
    /// The first one's message.
    message: String,
    /// How many.
    count: u64,
}

impl Tally {
    fn add(&mut self, line: u64, failed: &kinesis_producer::Failed) {
        self.failed += 1;
        let code = failed.attempts.last().map(|a| a.code.clone());
        let key = format!(
            "{:?}|{}",
            std::mem::discriminant(&failed.reason),
            code.as_deref().unwrap_or("-")
        );
        if let Some(g) = self.groups.iter_mut().find(|g| g.key == key) {
            g.count += 1;
            return;
        }
        crate::say!("kinesis-cat: line {line}: {failed}");
        if self.groups.len() == MAX_GROUPS {
            crate::say!("kinesis-cat: (further kinds of failure are only counted)");
        }
        if self.groups.len() <= MAX_GROUPS {
            self.groups.push(FailureGroup {
                key,
                code,
                first_line: line,
                message: failed.to_string(),
                count: 1,
            });
        }
    }

    /// The kind of the last error most failed records met (records that failed before
    /// any attempt, e.g. while their shard backed off, carry no error and do not count).
    fn main_kind(&self) -> Option<FailureKind> {
        self.groups
            .iter()
            .filter_map(|g| Some((g.count, g.code.as_deref()?)))
            .max_by_key(|(count, _)| *count)
            .map(|(_, code)| FailureKind::of_code(code))
    }
}

/// Kinds of failure printed on their own; more are counted in the last group.
const MAX_GROUPS: usize = 20;

/// Why the run stopped reading before the end of its input.
#[derive(Debug, Clone)]
struct Abort {
    /// What the exit status is derived from.
    kind: FailureKind,
    /// What to say.
    why: String,
}

/// Prints each kind of failed call once, as it happens, and decides when the run must
/// stop: at once for a failure no retry can fix for the whole stream (it does not exist,
/// access denied, no credentials); at the first failed call other than throttling with
/// `--fail-fast`.
async fn watch_failures(
    mut reports: tokio::sync::broadcast::Receiver<CallFailure>,
    fail_fast: bool,
    abort: CancellationToken,
    reason: Arc<Mutex<Option<Abort>>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    let mut hinted: Vec<FailureKind> = Vec::new();
    loop {
        let f = match reports.recv().await {
            Ok(f) => f,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let kind = FailureKind::of_code(&f.code);
        let stream_fatal = !f.retryable
            && matches!(
                kind,
                FailureKind::NotFound
                    | FailureKind::NoCredentials
                    | FailureKind::NoRegion
                    | FailureKind::AccessDenied
            );
        let stop = stream_fatal || (fail_fast && !f.throttled);
        if abort.is_cancelled() {
            // The run is ending; what fails now is summarised at the end.
            continue;
        }
        if !seen
            .iter()
            .any(|(op, code)| *op == f.operation && *code == f.code)
        {
            seen.push((f.operation, f.code.clone()));
            let then = if stop {
                "stopping"
            } else if f.throttled {
                "backing off and retrying"
            } else if f.retryable {
                "retrying until each record's TTL runs out (--fail-fast stops at once)"
            } else {
                "the records concerned fail"
            };
            crate::say!(
                "kinesis-cat: {} for stream {} failed: {}: {}; {then}",
                f.operation,
                f.stream,
                f.code,
                f.message
            );
            if !hinted.contains(&kind) {
                hinted.push(kind);
                if let Some(hint) = kind.hint(Service::Kinesis) {
                    crate::say!("kinesis-cat: hint: {hint}");
                }
            }
        }
        if stop && !abort.is_cancelled() {
            *reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(Abort {
                kind,
                why: format!("{} for stream {} failed: {}", f.operation, f.stream, f.code),
            });
            abort.cancel();
        }
    }
}

/// Runs `produce` until standard input ends, a signal, or a failure that ends the run.
///
/// On the first Ctrl-C/SIGTERM it stops reading, waits up to `--flush-timeout-secs` for
/// the records already read, fails the rest, and prints the summary; a second signal
/// exits at once (status 130).
///
/// # Cancellation
/// Dropping the future drops the producer: records not yet sent fail, nothing is retried.
///
/// # Errors
/// [`Error::Config`] for an unusable AWS configuration; [`Error::Produce`] when any
/// record was not delivered (its exit status from the kind of failure), or when the
/// producer cannot be built; [`Error::Input`] when standard input cannot be read.
pub async fn run(args: ProduceArgs) -> Result<(), Error> {
    let client = crate::aws::kinesis_client().await?;
    let ttl = Duration::from_secs(30);
    let producer = Producer::builder(client)
        .with_aggregation(!args.no_aggregate)
        .with_per_key_ordering(args.ordered)
        .with_compression(args.compress.then_some(6))
        .with_max_buffered_time(Duration::from_millis(args.max_buffered_ms))
        .with_record_ttl(ttl)
        .build()
        .map_err(|e| Error::Produce {
            message: e.to_string(),
            exit_code: crate::error::EXIT_USAGE,
        })?;
    let stop = crate::signals::install("flushing the records read")?;
    let abort = CancellationToken::new();
    let abort_reason: Arc<Mutex<Option<Abort>>> = Arc::default();
    let watcher = tokio::spawn(watch_failures(
        producer.failures(),
        args.fail_fast,
        abort.clone(),
        abort_reason.clone(),
    ));

    // Handles are awaited in put order by one task. The producer's memory budget bounds
    // how many can be outstanding, so the channel needs no bound of its own; a bounded one
    // would stall reading behind the oldest record's outcome (up to its TTL).
    let (handles_tx, mut handles_rx) = mpsc::unbounded_channel::<(u64, PutHandle)>();
    let tally_task = tokio::spawn(async move {
        let mut tally = Tally::default();
        while let Some((line, h)) = handles_rx.recv().await {
            match h.await {
                Ok(_) => tally.delivered += 1,
                Err(f) => tally.add(line, &f),
            }
        }
        tally
    });

    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    let mut input = BufReader::new(tokio::io::stdin());
    let mut line_no = 0u64;
    let mut bad = BadLines::default();
    let mut not_sent = 0u64;
    let mut payload = 0u64;
    let interrupted = |stop: &CancellationToken, abort: &CancellationToken| {
        stop.is_cancelled() || abort.is_cancelled()
    };
    loop {
        // Lines are bytes: text mode sends them as they are (any encoding, or binary).
        let mut line = Vec::new();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = abort.cancelled() => break,
            read = input.read_until(b'\n', &mut line) => {
                if read.map_err(Error::Input)? == 0 {
                    break;
                }
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        line_no += 1;
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(line_no as f64 / rate as f64);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = stop.cancelled() => {}
                _ = abort.cancelled() => {}
            }
        }
        if interrupted(&stop, &abort) {
            not_sent += 1;
            break;
        }
        let record = match parse_line(&args, line) {
            Ok(r) => r,
            Err(why) => {
                bad.add(line_no, &why);
                continue;
            }
        };
        payload += record.data.len() as u64;
        // `put` waits while the memory budget is full; a signal must not wait behind it.
        let put = tokio::select! {
            biased;
            r = producer.put(record) => Some(r),
            _ = stop.cancelled() => None,
            _ = abort.cancelled() => None,
        };
        match put {
            Some(Ok(h)) => {
                if handles_tx.send((line_no, h)).is_err() {
                    break;
                }
            }
            Some(Err(e)) => bad.add(line_no, &e),
            None => {
                not_sent += 1;
                break;
            }
        }
        if progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let s = producer.stats();
            crate::say_inline!(
                "\r{} read, {} delivered, {} in flight, {:.0} records/s   ",
                line_no,
                s.user_records_delivered,
                s.outstanding_records,
                s.user_records_delivered as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if progress {
        crate::say!();
    }
    let stats = if abort.is_cancelled() {
        // The run failed for good: what is still queued fails now instead of being
        // retried until its TTL.
        producer.stats()
    } else {
        let flush_limit = args.flush_timeout_secs.map(Duration::from_secs);
        let shutdown = producer.shutdown();
        tokio::pin!(shutdown);
        // A signal (now or during the flush) bounds the flush by --flush-timeout-secs; a
        // failure that ends the run ends it too.
        let mut deadline = None;
        let done = loop {
            if deadline.is_none() && stop.is_cancelled() {
                deadline =
                    Some(tokio::time::Instant::now() + flush_limit.unwrap_or(Duration::MAX / 4));
            }
            tokio::select! {
                _ = &mut shutdown => break true,
                _ = abort.cancelled() => break false,
                _ = stop.cancelled(), if deadline.is_none() => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => break false,
            }
        };
        if !done && !abort.is_cancelled() {
            crate::say!(
                "kinesis-cat: records still undelivered after --flush-timeout-secs; failing them"
            );
        }
        producer.stats()
    };
    // Dropping the producer fails whatever it still holds (FailureReason::ShutDown).
    drop(producer);
    let aborted = abort_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    drop(handles_tx);
    let tally = tally_task
        .await
        .map_err(|e| Error::Internal(format!("the outcome task failed: {e}")))?;
    watcher.abort();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let failed = tally.failed + bad.count + not_sent;
    crate::say!(
        "kinesis-cat: {} delivered, {} failed ({} bad lines), {} Kinesis records in {} PutRecords calls, {} retries, {} throttled; {:.0} records/s, {:.2} MB/s in {:.1}s",
        tally.delivered,
        failed,
        bad.count,
        stats.kinesis_records_sent,
        stats.put_records_calls,
        stats.retries,
        stats.throttles,
        tally.delivered as f64 / secs,
        payload as f64 / secs / 1e6,
        secs,
    );
    for g in tally.groups.iter().filter(|g| g.count > 1) {
        crate::say!(
            "kinesis-cat:   {} records failed like line {}: {}",
            g.count,
            g.first_line,
            g.message
        );
    }
    if not_sent > 0 {
        crate::say!("kinesis-cat:   {not_sent} line(s) read but not sent: the run was stopped");
    }
    if let Some(a) = &aborted {
        return Err(Error::Produce {
            message: format!(
                "stopped: {}; {failed} of {line_no} records were not delivered",
                a.why
            ),
            exit_code: a.kind.exit_code(),
        });
    }
    if failed > 0 {
        let exit_code = match tally.main_kind() {
            Some(kind) if tally.failed >= bad.count => kind.exit_code(),
            _ => crate::error::EXIT_FAILED,
        };
        return Err(Error::Produce {
            message: format!("{failed} of {line_no} records were not delivered"),
            exit_code: exit_code.max(crate::error::EXIT_FAILED),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: ProduceArgs,
    }

    fn args(extra: &[&str]) -> ProduceArgs {
        let mut v = vec!["t", "--stream", "s"];
        v.extend_from_slice(extra);
        T::parse_from(v).args
    }

    #[test]
    fn defaults() {
        let a = args(&[]);
        assert_eq!(a.input, InputFormat::Text);
        assert_eq!(a.max_buffered_ms, 100);
        assert!(!a.no_aggregate && !a.ordered && !a.compress && !a.fail_fast);
        assert_eq!(a.rate, None);
        assert_eq!(a.flush_timeout_secs, None);
    }

    fn failed(
        reason: kinesis_producer::FailureReason,
        last: Option<&str>,
    ) -> kinesis_producer::Failed {
        kinesis_producer::Failed {
            stream: "s".into(),
            reason,
            attempts: last
                .map(|code| kinesis_producer::Attempt {
                    elapsed: Duration::from_millis(5),
                    code: code.into(),
                    message: "m".into(),
                    throttled: false,
                })
                .into_iter()
                .collect(),
            record: None,
        }
    }

    #[test]
    fn failures_are_grouped_by_reason_and_last_error() {
        use kinesis_producer::FailureReason;
        let expired = || FailureReason::Expired {
            ttl: Duration::from_secs(30),
        };
        let mut t = Tally::default();
        for line in 1..=3 {
            t.add(line, &failed(expired(), Some("DispatchFailure")));
        }
        // Records that never got an attempt are the most numerous here, but carry no
        // cause: the exit status comes from the failures that have one.
        for line in 4..=8 {
            t.add(line, &failed(expired(), None));
        }
        t.add(9, &failed(FailureReason::ShutDown, Some("DispatchFailure")));
        assert_eq!(t.failed, 9);
        let counts: Vec<(u64, u64)> = t.groups.iter().map(|g| (g.first_line, g.count)).collect();
        assert_eq!(counts, [(1, 3), (4, 5), (9, 1)]);
        assert_eq!(t.main_kind(), Some(FailureKind::Unreachable));
        assert_eq!(Tally::default().main_kind(), None);
    }

    #[test]
    fn text_lines_use_the_given_or_a_random_key() {
        let fixed = args(&["--partition-key", "k"]);
        assert_eq!(parse_line(&fixed, "hi".into()).unwrap().partition_key, "k");
        let random = args(&[]);
        let a = parse_line(&random, "x".into()).unwrap();
        let b = parse_line(&random, "x".into()).unwrap();
        assert_ne!(a.partition_key, b.partition_key);
        assert_eq!(a.data, Bytes::from("x"));
    }

    #[test]
    fn json_lines_take_text_or_base64_and_name_what_is_wrong() {
        let j = args(&["--input", "json"]);
        let r = parse_line(
            &j,
            r#"{"partition_key":"p","explicit_hash_key":"5","data":"héllo"}"#.into(),
        )
        .unwrap();
        assert_eq!(
            (r.partition_key.as_str(), r.explicit_hash_key.as_deref()),
            ("p", Some("5"))
        );
        assert_eq!(r.data, Bytes::from("héllo"));
        let r = parse_line(&j, r#"{"partition_key":"p","data_b64":"AAEC"}"#.into()).unwrap();
        assert_eq!(r.data, Bytes::from_static(&[0, 1, 2]));
        for (line, why) in [
            ("not json", "bad JSON"),
            (r#"{"partition_key":"p"}"#, "required"),
            (
                r#"{"partition_key":"p","data":"a","data_b64":"AA=="}"#,
                "not both",
            ),
            (r#"{"partition_key":"p","data_b64":"!!"}"#, "bad data_b64"),
            (r#"{"partition_key":"p","data":"a","extra":1}"#, "bad JSON"),
        ] {
            let e = parse_line(&j, line.into()).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
