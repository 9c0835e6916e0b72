//! A MultiLang record processor written without a library: what a child of
//! `kinesis-cat multilang` (or of the Java MultiLangDaemon) does, for languages that have
//! no amazon-kclpy or aws-kcl. It prints every record to standard error and checkpoints
//! after every batch, at the shard end and at shutdown.
//!
//! ```text
//!  host ──stdin: one JSON object per line──▶ this child
//!    initialize        ─▶ remember the shard                       ─▶ status
//!    processRecords    ─▶ print records (stderr) ─▶ checkpoint ⇄   ─▶ status
//!    shardEnded        ─▶ checkpoint ⇄ (SHARD_END: children may start) ─▶ status
//!    shutdownRequested ─▶ checkpoint ⇄                             ─▶ status
//!    leaseLost         ─▶ (nothing to checkpoint: another worker owns the shard) ─▶ status
//!  checkpoint ⇄: stdout {"action":"checkpoint","sequenceNumber":null,...}
//!                stdin  {"action":"checkpoint",...,"error":null | "ThrottlingException" | ...}
//!  end of stdin ─▶ exit 0
//! ```
//!
//! Standard output carries only protocol messages (each on its own line, flushed); logs go
//! to standard error, which the host passes on prefixed with the shard id.
//!
//! Use it from a properties file (`kinesis-cat multilang --properties app.properties`):
//!
//! ```text
//! executableName = /path/to/target/release/multilang_child
//! streamName = my-stream
//! applicationName = my-app
//! initialPositionInStream = TRIM_HORIZON
//! ```

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

/// How often a throttled checkpoint is tried before the child moves on.
const CHECKPOINT_ATTEMPTS: u32 = 5;

/// Why the child stops.
#[derive(Debug)]
enum Stop {
    /// Reading or writing a pipe failed.
    Io(std::io::Error),
    /// The host sent something that is not a protocol message.
    Protocol(String),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

/// The protocol endpoints of the child: messages in, messages out.
struct Pipes<R, W> {
    /// Messages from the host, one per line.
    input: R,
    /// Messages to the host.
    output: W,
}

impl<R: BufRead, W: Write> Pipes<R, W> {
    /// The next message, or `None` at the end of input.
    fn read(&mut self) -> Result<Option<Value>, Stop> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.input.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| Stop::Protocol(format!("{e}: {line}")))
    }

    /// Writes one message on its own line and flushes it.
    fn write(&mut self, message: &Value) -> Result<(), Stop> {
        writeln!(self.output, "{message}")?;
        self.output.flush()?;
        Ok(())
    }

    /// Asks the host to checkpoint everything delivered so far; returns the error name it
    /// answers with, if any.
    fn checkpoint_once(&mut self) -> Result<Option<String>, Stop> {
        self.write(
            &json!({"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}),
        )?;
        let answer = self.read()?.ok_or_else(|| {
            Stop::Protocol("end of input while waiting for a checkpoint answer".into())
        })?;
        if answer["action"] != "checkpoint" {
            return Err(Stop::Protocol(format!(
                "expected a checkpoint answer, got {answer}"
            )));
        }
        Ok(answer["error"].as_str().map(str::to_owned))
    }

    /// Checkpoints, trying again after throttling; other errors are logged and left.
    fn checkpoint(&mut self, shard: &str) -> Result<(), Stop> {
        for attempt in 1..=CHECKPOINT_ATTEMPTS {
            match self.checkpoint_once()?.as_deref() {
                None => return Ok(()),
                Some("ThrottlingException") if attempt < CHECKPOINT_ATTEMPTS => {
                    eprintln!("checkpoint throttled; trying again");
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
                // Another worker has the shard now: nothing more to do for it.
                Some("ShutdownException") => {
                    eprintln!("{shard}: lease lost while checkpointing");
                    return Ok(());
                }
                Some(other) => {
                    eprintln!("{shard}: checkpoint failed: {other}");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Prints one record of a `processRecords` message.
fn print_record(shard: &str, record: &Value) {
    let data = record["data"]
        .as_str()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .unwrap_or_default();
    eprintln!(
        "{shard} {}/{} key={} {}",
        record["sequenceNumber"].as_str().unwrap_or("?"),
        record["subSequenceNumber"].as_u64().unwrap_or(0),
        record["partitionKey"].as_str().unwrap_or("?"),
        String::from_utf8_lossy(&data)
    );
}

/// Serves the host until its input ends.
fn serve<R: BufRead, W: Write>(pipes: &mut Pipes<R, W>) -> Result<(), Stop> {
    let mut shard = String::from("?");
    while let Some(message) = pipes.read()? {
        let action = message["action"]
            .as_str()
            .ok_or_else(|| Stop::Protocol(format!("no action in {message}")))?
            .to_owned();
        match action.as_str() {
            "initialize" => {
                shard = message["shardId"].as_str().unwrap_or("?").to_owned();
                eprintln!(
                    "{shard} starts after {}",
                    message["sequenceNumber"].as_str().unwrap_or("?")
                );
            }
            "processRecords" => {
                let records = message["records"].as_array().cloned().unwrap_or_default();
                for r in &records {
                    print_record(&shard, r);
                }
                if !records.is_empty() {
                    pipes.checkpoint(&shard)?;
                }
            }
            "shardEnded" | "shutdownRequested" => pipes.checkpoint(&shard)?,
            "leaseLost" => eprintln!("{shard}: lease lost"),
            other => return Err(Stop::Protocol(format!("unknown action {other:?}"))),
        }
        pipes.write(&json!({"action": "status", "responseFor": action}))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut pipes = Pipes {
        input: stdin.lock(),
        output: stdout.lock(),
    };
    match serve(&mut pipes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::Io(e)) => {
            eprintln!("multilang_child: pipe error: {e}");
            ExitCode::FAILURE
        }
        Err(Stop::Protocol(e)) => {
            eprintln!("multilang_child: protocol error: {e}");
            ExitCode::FAILURE
        }
    }
}
