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
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kinesis_producer::{Producer, ProducerRecord, PutHandle};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::Error;

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
    #[arg(long)]
    pub stream: String,
    /// How to read each line.
    #[arg(long, value_enum, default_value_t = InputFormat::Text)]
    pub input: InputFormat,
    /// Partition key for every line in text mode (default: a random key per line).
    #[arg(long)]
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
    /// How long a record may wait to be batched, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub max_buffered_ms: u64,
    /// Read at most this many lines per second.
    #[arg(long)]
    pub rate: Option<u64>,
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
fn parse_line(args: &ProduceArgs, line: String) -> Result<ProducerRecord, String> {
    match args.input {
        InputFormat::Text => {
            let key = match &args.partition_key {
                Some(k) => k.clone(),
                None => format!("{:032x}", rand::random::<u128>()),
            };
            Ok(ProducerRecord::new(&args.stream, key, line))
        }
        InputFormat::Json => {
            let j: JsonLine = serde_json::from_str(&line).map_err(|e| format!("bad JSON: {e}"))?;
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

/// Outcome counts, kept by the task that awaits the handles.
#[derive(Debug, Default)]
struct Tally {
    delivered: u64,
    failed: u64,
    payload_bytes: u64,
}

/// Runs `produce` until standard input ends.
///
/// # Cancellation
/// Dropping the future drops the producer: records not yet sent fail, nothing is retried.
///
/// # Errors
/// [`Error::Produce`] when any record failed (after all others were delivered), or when
/// standard input cannot be read.
pub async fn run(args: ProduceArgs) -> Result<(), Error> {
    let client = super::kinesis_client().await;
    let producer = Producer::builder(client)
        .with_aggregation(!args.no_aggregate)
        .with_per_key_ordering(args.ordered)
        .with_compression(args.compress.then_some(6))
        .with_max_buffered_time(Duration::from_millis(args.max_buffered_ms))
        .build()
        .map_err(|e| Error::Produce(e.to_string()))?;

    // Handles are awaited in put order by one task; the memory budget bounds how many
    // can be outstanding, so the channel is only a hand-off.
    let (handles_tx, mut handles_rx) = mpsc::channel::<PutHandle>(1024);
    let tally_task = tokio::spawn(async move {
        let mut tally = Tally::default();
        while let Some(h) = handles_rx.recv().await {
            match h.await {
                Ok(_) => tally.delivered += 1,
                Err(f) => {
                    tally.failed += 1;
                    eprintln!("kinesis-cat: record failed: {f}");
                }
            }
        }
        tally
    });

    let started = Instant::now();
    let progress = std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut line_no = 0u64;
    let mut bad_lines = 0u64;
    let mut payload = 0u64;
    while let Some(line) = lines.next_line().await.map_err(Error::Input)? {
        line_no += 1;
        if let Some(rate) = args.rate.filter(|r| *r > 0) {
            let due = started + Duration::from_secs_f64(line_no as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let record = match parse_line(&args, line) {
            Ok(r) => r,
            Err(why) => {
                bad_lines += 1;
                eprintln!("kinesis-cat: line {line_no}: {why}");
                continue;
            }
        };
        payload += record.data.len() as u64;
        match producer.put(record).await {
            Ok(h) => {
                if handles_tx.send(h).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                bad_lines += 1;
                eprintln!("kinesis-cat: line {line_no}: {e}");
            }
        }
        if progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let s = producer.stats();
            eprint!(
                "\r{} read, {} delivered, {} in flight, {:.0} records/s   ",
                line_no,
                s.user_records_delivered,
                s.outstanding_records,
                s.user_records_delivered as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    producer.shutdown().await;
    drop(handles_tx);
    let tally = tally_task.await.unwrap_or_default();
    let stats = producer.stats();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    if progress {
        eprintln!();
    }
    eprintln!(
        "kinesis-cat: {} delivered, {} failed ({} bad lines), {} Kinesis records in {} PutRecords calls, {} retries, {} throttled; {:.0} records/s, {:.2} MB/s in {:.1}s",
        tally.delivered,
        tally.failed + bad_lines,
        bad_lines,
        stats.kinesis_records_sent,
        stats.put_records_calls,
        stats.retries,
        stats.throttles,
        tally.delivered as f64 / secs,
        payload as f64 / secs / 1e6,
        secs,
    );
    let _ = tally.payload_bytes;
    if tally.failed + bad_lines > 0 {
        return Err(Error::Produce(format!(
            "{} of {line_no} records were not delivered",
            tally.failed + bad_lines
        )));
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
        assert!(!a.no_aggregate && !a.ordered && !a.compress);
        assert_eq!(a.rate, None);
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
