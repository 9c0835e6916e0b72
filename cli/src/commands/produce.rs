//! `kinesis-cat produce`: standard input to a stream, one record per line, through the
//! producer library (aggregation, retries, rate limits).
//!
//! ```text
//!  stdin lines ─▶ parse (text | json) ─▶ Producer::put ─▶ handles ─▶ outcome counter
//!  (bytes, any     │ bad line (bad JSON, too      (waits on the budget,    (its own task:
//!   encoding)      │ long, refused by put):        which bounds memory)     reading never
//!      │           ▼ reported, counted failed                               waits for it)
//!      ▼                                                                      ▼
//!  EOF, a read error, a signal ─▶ shutdown (flush) ─────▶ summary on stderr, exit code
//! ```
//!
//! No input error loses the records read before it: a bad line is counted and skipped, a
//! failed read of standard input ends the reading, and either way the records already
//! accepted are flushed and counted before the summary and a non-zero exit.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kinesis_producer::{CallFailure, Producer, ProducerRecord, PutHandle};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
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
    /// or with `"data_b64"` instead of (or agreeing with) `"data"`; the other fields of
    /// `consume` / `tail` JSON lines are accepted and ignored.
    Json,
}

/// Arguments of `kinesis-cat produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The stream to write to.
    #[arg(short, long, value_parser = args::stream_name)]
    pub stream: String,
    /// How to read each line.
    #[arg(short, long, value_enum, default_value_t = InputFormat::Text)]
    pub input: InputFormat,
    /// Partition key for every line in text mode (1 to 256 characters). Default: a random
    /// key per line.
    #[arg(short = 'k', long, value_parser = args::partition_key)]
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
    /// How long a record may wait to be batched, in milliseconds (1 to 60000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub max_buffered_ms: u64,
    /// Read at most this many lines per second (at least 1). Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// The producer's per-shard rate limit, in per cent of a shard's write limits (1,000
    /// records/s and 1 MiB/s): 1 to 10000. Kinesis throttles what goes over its limits
    /// and the producer retries it; against an emulator that enforces no limits, raise it
    /// to send as fast as the emulator takes. 150 is the KPL's default.
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub rate_limit_percent: u32,
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
    /// Serve Prometheus metrics (the producer library's kinesis_producer_*) on this
    /// address, e.g. 127.0.0.1:9464 (port 0: any free port, said on standard error), at
    /// /metrics. Default: not served.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// One JSON input line: the record's fields, and those `consume` and `tail` add about
/// where it was read (accepted so that their output is input as it is, and ignored:
/// `produce --stream` decides the stream, Kinesis the rest). Any other field is refused,
/// so that a misspelt one is not silently dropped.
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
    // Written by consume / tail (crate::render), ignored here.
    #[serde(default, rename = "stream")]
    _stream: serde::de::IgnoredAny,
    #[serde(default, rename = "shard_id")]
    _shard_id: serde::de::IgnoredAny,
    #[serde(default, rename = "sequence_number")]
    _sequence_number: serde::de::IgnoredAny,
    #[serde(default, rename = "sub_sequence_number")]
    _sub_sequence_number: serde::de::IgnoredAny,
    #[serde(default, rename = "approximate_arrival_timestamp")]
    _approximate_arrival_timestamp: serde::de::IgnoredAny,
    #[serde(default, rename = "millis_behind_latest")]
    _millis_behind_latest: serde::de::IgnoredAny,
    #[serde(default, rename = "outside_shard_range")]
    _outside_shard_range: serde::de::IgnoredAny,
    #[serde(default, rename = "payload_encoding")]
    _payload_encoding: serde::de::IgnoredAny,
}

/// Turns one input line into a record, or says what is wrong with it.
pub(crate) fn parse_line(args: &ProduceArgs, line: &[u8]) -> Result<ProducerRecord, String> {
    match args.input {
        InputFormat::Text => {
            let key = match &args.partition_key {
                Some(k) => k.clone(),
                None => format!("{:032x}", rand::random::<u128>()),
            };
            // One allocation of the line's exact size (the caller's buffer is reused).
            Ok(ProducerRecord::new(
                &args.stream,
                key,
                Bytes::copy_from_slice(line),
            ))
        }
        InputFormat::Json => {
            // serde reads a struct from an array too (fields by position): only an object is
            // a record.
            if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return Err("bad JSON: a line must be one JSON object".into());
            }
            let j: JsonLine = serde_json::from_slice(line).map_err(|e| format!("bad JSON: {e}"))?;
            let data = match (j.data, j.data_b64) {
                (Some(text), None) => Bytes::from(text),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| format!("bad data_b64: {e}"))?
                    .into(),
                (None, None) => return Err("one of \"data\" or \"data_b64\" is required".into()),
                // What consume and tail write for a UTF-8 payload: both, the same bytes.
                (Some(text), Some(b64)) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.as_bytes())
                        .map_err(|e| format!("bad data_b64: {e}"))?;
                    if bytes != text.as_bytes() {
                        return Err(
                            "\"data\" and \"data_b64\" disagree: give one, or both with the same bytes"
                                .into(),
                        );
                    }
                    Bytes::from(bytes)
                }
            };
            let mut r = ProducerRecord::new(&args.stream, j.partition_key, data);
            if let Some(h) = j.explicit_hash_key {
                r = r.with_explicit_hash_key(h);
            }
            Ok(r)
        }
    }
}

/// The longest line read as one, in bytes (its end of line aside): `text` lines are
/// the data, so none longer than a Kinesis record can be sent; a `json` line may carry
/// data of a record escaped (`\u0001` is six bytes for one) or in base64.
fn max_line_len(format: InputFormat) -> usize {
    match format {
        InputFormat::Text => kinesis_agg::MAX_RECORD_SIZE,
        InputFormat::Json => 8 * kinesis_agg::MAX_RECORD_SIZE,
    }
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// The end of the input: no more lines.
    End,
    /// A line, in the buffer without its end of line (`\n` or `\r\n`).
    Line,
    /// A line longer than the limit, skipped up to its end; its length in bytes.
    TooLong(usize),
}

/// Reads the next line of `input` into `line` (cleared first), holding at most `limit`
/// bytes of it: a longer line is read to its end and dropped, so memory stays bounded
/// whatever the input (a binary file with no newline included). The last line may lack
/// its `\n`.
///
/// # Errors
/// The input's read error; the line read so far is then lost.
///
/// # Cancellation
/// Dropping the future loses the part of the line read so far.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    // Bytes of the line so far, and the last two (to leave its end of line out).
    let mut seen = 0usize;
    let mut last_two = [0u8; 2];
    let mut too_long = false;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            if seen == 0 {
                return Ok(LineRead::End);
            }
            break;
        }
        let (chunk, ended) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let n = chunk.len();
        seen += n;
        last_two = match chunk {
            [.., a, b] => [*a, *b],
            [b] => [last_two[1], *b],
            [] => last_two,
        };
        // Room for the end of line (`\r\n`), stripped below.
        if !too_long && line.len() + n <= limit + 2 {
            line.extend_from_slice(chunk);
        } else if !too_long {
            too_long = true;
            line.clear();
        }
        input.consume(n);
        if ended {
            break;
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if too_long || line.len() > limit {
        line.clear();
        let end_of_line = match last_two {
            [b'\r', b'\n'] => 2,
            [_, b'\n'] => 1,
            _ => 0,
        };
        return Ok(LineRead::TooLong(seen - end_of_line));
    }
    Ok(LineRead::Line)
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
    /// What makes failures the same: the reason and the last attempt's error code (or,
    /// with no attempt, the code of a `Rejected` reason).
    key: String,
    /// The last attempt's error code, or with no attempt a `Rejected` reason's code.
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
        // A record refused before an attempt of its own (its stream's ListShards said
        // the stream does not exist) has its code in the reason.
        let code = match (failed.attempts.last(), &failed.reason) {
            (Some(a), _) => Some(a.code.clone()),
            (None, kinesis_producer::FailureReason::Rejected { code, .. }) => Some(code.clone()),
            (None, _) => None,
        };
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
/// As [`produce`], plus [`Error::Config`] for an unusable AWS configuration and
/// [`Error::Signal`] when the signal handlers cannot be installed.
pub async fn run(args: ProduceArgs, aws: &crate::aws::AwsOptions) -> Result<(), Error> {
    let client = crate::aws::kinesis_client(aws).await?;
    if let Some(addr) = args.metrics_addr {
        crate::metrics_server::serve(addr).await?;
    }
    let stop = crate::signals::install("flushing the records read")?;
    let input = BufReader::with_capacity(INPUT_BUFFER, tokio::io::stdin());
    produce(args, client, input, stop).await
}

/// Bytes read from standard input at a time: each read is a hop to a blocking thread.
const INPUT_BUFFER: usize = 64 * 1024;

/// Puts each line of `input` to `args.stream` through `client`, until the input ends,
/// fails, `stop` is cancelled (then records still undelivered after
/// `--flush-timeout-secs` fail), or a failure ends the run; then flushes and prints the
/// summary on standard error.
///
/// # Cancellation
/// Dropping the future drops the producer: records not yet sent fail, nothing is retried.
///
/// # Errors
/// [`Error::Produce`] when any line was not delivered (a bad line, a record that failed,
/// a line read but not sent because the run was stopped), when reading `input` failed
/// (after the records read before were flushed), or when the producer cannot be built;
/// its exit status comes from the kind of failure.
pub async fn produce(
    args: ProduceArgs,
    client: aws_sdk_kinesis::Client,
    mut input: impl AsyncBufRead + Unpin,
    stop: CancellationToken,
) -> Result<(), Error> {
    let ttl = Duration::from_secs(30);
    let producer = Producer::builder(client)
        .with_aggregation(!args.no_aggregate)
        .with_per_key_ordering(args.ordered)
        .with_compression(args.compress.then_some(6))
        .with_max_buffered_time(Duration::from_millis(args.max_buffered_ms))
        .with_rate_limit_percent(args.rate_limit_percent)
        .with_record_ttl(ttl)
        .build()
        .map_err(|e| Error::Produce {
            message: e.to_string(),
            exit_code: crate::error::EXIT_USAGE,
        })?;
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
    let limit = max_line_len(args.input);
    let mut line = Vec::new();
    let mut input_error: Option<std::io::Error> = None;
    let mut line_no = 0u64;
    let mut bad = BadLines::default();
    let mut not_sent = 0u64;
    let mut payload = 0u64;
    let interrupted = |stop: &CancellationToken, abort: &CancellationToken| {
        stop.is_cancelled() || abort.is_cancelled()
    };
    loop {
        // Lines are bytes: text mode sends them as they are (any encoding, or binary).
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = abort.cancelled() => break,
            read = read_line(&mut input, &mut line, limit) => read,
        };
        match read {
            Ok(LineRead::End) => break,
            Ok(LineRead::Line) => line_no += 1,
            Ok(LineRead::TooLong(len)) => {
                line_no += 1;
                let why = format!("{len} bytes, longer than {limit}: skipped");
                bad.add(line_no, &why);
                continue;
            }
            Err(e) => {
                // What was read before is flushed and counted; the run then fails.
                crate::say!(
                    "kinesis-cat: could not read standard input after line {line_no}: {e}; \
                     flushing the records read"
                );
                input_error = Some(e);
                break;
            }
        }
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
        let record = match parse_line(&args, &line) {
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
    if let Some(e) = input_error {
        return Err(Error::Produce {
            message: format!(
                "could not read standard input after line {line_no}: {e}; {} of the {line_no} \
                 records read were delivered",
                tally.delivered
            ),
            exit_code: crate::error::EXIT_FAILED,
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
    fn a_record_rejected_before_any_attempt_gives_the_status_of_its_code() {
        // A stream-level refusal (ListShards: the stream does not exist) fails the queued
        // records at once, with no attempt of their own: the reason carries the code, and
        // the exit status must not depend on whether the failure report or the outcome
        // is seen first.
        use kinesis_producer::FailureReason;
        let mut t = Tally::default();
        let not_found = FailureReason::Rejected {
            code: "ResourceNotFoundException".into(),
            message: "Stream nope not found.".into(),
        };
        t.add(1, &failed(not_found, None));
        assert_eq!(t.main_kind(), Some(FailureKind::NotFound));
    }

    /// Every line of `input` read through a buffer of `capacity` bytes, with `limit`.
    async fn lines_of(input: &[u8], capacity: usize, limit: usize) -> Vec<Result<Vec<u8>, usize>> {
        let mut reader = BufReader::with_capacity(capacity, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut reader, &mut line, limit).await.unwrap() {
                LineRead::End => return out,
                LineRead::Line => out.push(Ok(line.clone())),
                LineRead::TooLong(len) => {
                    assert!(line.is_empty());
                    out.push(Err(len));
                }
            }
        }
    }

    #[tokio::test]
    async fn lines_are_bytes_bounded_in_length_whatever_the_buffer() {
        let ok = |s: &[u8]| Ok(s.to_vec());
        for capacity in [1, 2, 3, 8, 1024] {
            assert_eq!(
                lines_of(b"a\r\n\xff\n\nlast", capacity, 10).await,
                vec![ok(b"a"), ok(b"\xff"), ok(b""), ok(b"last")],
                "capacity {capacity}"
            );
            assert_eq!(
                lines_of(
                    b"0123456789\r\n0123456789a\r\nb\n0123456789ab",
                    capacity,
                    10
                )
                .await,
                vec![ok(b"0123456789"), Err(11), ok(b"b"), Err(12)],
                "capacity {capacity}"
            );
            assert!(lines_of(b"", capacity, 10).await.is_empty());
        }
    }

    #[test]
    fn text_lines_use_the_given_or_a_random_key() {
        let fixed = args(&["--partition-key", "k"]);
        assert_eq!(parse_line(&fixed, b"hi").unwrap().partition_key, "k");
        let random = args(&[]);
        let a = parse_line(&random, b"x").unwrap();
        let b = parse_line(&random, b"x").unwrap();
        assert_ne!(a.partition_key, b.partition_key);
        assert_eq!(a.data, Bytes::from("x"));
    }

    #[test]
    fn json_lines_take_text_or_base64_and_name_what_is_wrong() {
        let j = args(&["--input", "json"]);
        let r = parse_line(
            &j,
            r#"{"partition_key":"p","explicit_hash_key":"5","data":"héllo"}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (r.partition_key.as_str(), r.explicit_hash_key.as_deref()),
            ("p", Some("5"))
        );
        assert_eq!(r.data, Bytes::from("héllo"));
        let r = parse_line(&j, br#"{"partition_key":"p","data_b64":"AAEC"}"#).unwrap();
        assert_eq!(r.data, Bytes::from_static(&[0, 1, 2]));
        // A line as consume and tail print it.
        let r = parse_line(
            &j,
            br#"{"stream":"a","shard_id":"shardId-000000000001","sequence_number":"4960",
                "sub_sequence_number":2,"partition_key":"p","explicit_hash_key":"42",
                "data_b64":"aGk=","data":"hi","approximate_arrival_timestamp":"2024-01-02T03:04:05.123Z",
                "millis_behind_latest":0,"outside_shard_range":true,"payload_encoding":"gzip"}"#,
        )
        .unwrap();
        assert_eq!(
            (
                r.partition_key.as_str(),
                r.explicit_hash_key.as_deref(),
                &r.data[..]
            ),
            ("p", Some("42"), &b"hi"[..])
        );
        for (line, why) in [
            ("not json", "bad JSON"),
            (r#"{"partition_key":"p"}"#, "required"),
            (
                r#"{"partition_key":"p","data":"a","data_b64":"AA=="}"#,
                "disagree",
            ),
            (r#"{"partition_key":"p","data_b64":"!!"}"#, "bad data_b64"),
            (r#"{"partition_key":"p","data":"a","extra":1}"#, "bad JSON"),
            (r#"["p", null, "a"]"#, "one JSON object"),
        ] {
            let e = parse_line(&j, line.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
