//! One child process per shard: started from `executableName`, fed lines on its standard
//! input, its standard output read for protocol messages and its standard error passed
//! through.
//!
//! ```text
//!               ┌──────────── ChildProcess (one per shard) ────────────┐
//!  send(line) ──┼─▶ stdin (flushed per message)          ─────────────▶│ child
//!  next() ◀─────┼── mpsc ◀── stdout task: line ─▶ parse_child_line ◀───│  (own process
//!               │              message ─▶ queued; other ─▶ logged      │   group)
//!  host stderr ◀┼── stderr task: "[shardId] line"  ◀───────────────────│
//!  close(grace) ┼─▶ stdin closed ─▶ wait ≤ grace ─▶ SIGKILL            │
//!               └──────────────────────────────────────────────────────┘
//! ```
//!
//! The child runs in a process group of its own, so that a Ctrl-C at the terminal reaches
//! only the host, which then hands `shutdownRequested` to every child; a child whose host
//! dies sees its standard input close. Dropping a [`ChildProcess`] kills the child.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::messages::{parse_child_line, ChildLine, ChildMessage};
use super::properties::Executable;

/// Messages read ahead of the host; the reader waits (and so does the child) beyond this.
const QUEUED_MESSAGES: usize = 64;

/// A standard error line longer than this is passed on in pieces (a child that logs
/// without newlines is still seen).
const MAX_STDERR_LINE: usize = 16 * 1024;

/// A running child and its pipes.
#[derive(Debug)]
pub struct ChildProcess {
    /// The shard it processes, for logs.
    shard_id: String,
    /// The process (killed when dropped).
    child: Child,
    /// Its standard input; `None` once closed.
    stdin: Option<ChildStdin>,
    /// Protocol messages read from its standard output; closed at its end of file.
    messages: mpsc::Receiver<ChildMessage>,
    /// The standard output reader.
    stdout_task: JoinHandle<()>,
    /// The standard error forwarder.
    stderr_task: JoinHandle<()>,
}

impl ChildProcess {
    /// Starts `exe` for `shard_id` in the properties file's folder, with the host's
    /// environment.
    ///
    /// # Errors
    /// The I/O error of starting the program (not found, not executable, ...).
    pub fn spawn(exe: &Executable, shard_id: &str) -> std::io::Result<Self> {
        let mut child = Command::new(&exe.program)
            .args(&exe.args)
            .current_dir(&exe.working_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => {
                    return Err(std::io::Error::other("the child's pipes were not set up"));
                }
            };
        let (tx, messages) = mpsc::channel(QUEUED_MESSAGES);
        let stdout_task =
            tokio::spawn(read_stdout(BufReader::new(stdout), tx, shard_id.to_owned()));
        let stderr_task = tokio::spawn(forward_stderr(BufReader::new(stderr), shard_id.to_owned()));
        tracing::debug!(shard = shard_id, pid = child.id(), command = %exe.text, "child started");
        Ok(ChildProcess {
            shard_id: shard_id.to_owned(),
            child,
            stdin: Some(stdin),
            messages,
            stdout_task,
            stderr_task,
        })
    }

    /// The child's process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Writes one message line (newline included) and flushes it.
    ///
    /// # Cancellation
    /// Dropping the future may leave part of the line written: the child must then be
    /// given up (the protocol cannot resume mid-line).
    ///
    /// # Errors
    /// The write failed (the child closed its standard input or exited), or standard input
    /// was already closed.
    pub async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed"))?;
        stdin.write_all(line).await?;
        stdin.flush().await
    }

    /// The next protocol message; `None` once the child closed its standard output
    /// (it exited).
    ///
    /// # Cancellation
    /// Safe to drop: a message not yet taken stays queued.
    pub async fn next(&mut self) -> Option<ChildMessage> {
        self.messages.recv().await
    }

    /// Ends the child: closes its standard input (the libraries exit at end of input),
    /// waits up to `grace` for it to exit, then kills it. Returns its exit status when it
    /// exited on its own.
    ///
    /// # Cancellation
    /// Dropping the future kills the child (it is dropped with it).
    pub async fn close(mut self, grace: Duration) -> Option<ExitStatus> {
        self.stdin = None;
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                tracing::warn!(shard = %self.shard_id, error = %e, "could not wait for the child");
                None
            }
            Err(_) => {
                tracing::warn!(
                    shard = %self.shard_id,
                    grace_ms = grace.as_millis() as u64,
                    "the child did not exit after its input was closed; killing it"
                );
                None
            }
        };
        self.finish().await;
        status
    }

    /// Kills the child at once and waits for it.
    ///
    /// # Cancellation
    /// Dropping the future kills the child all the same (it is dropped with it).
    pub async fn kill(mut self) {
        self.stdin = None;
        self.finish().await;
    }

    /// Kills the child if it still runs, reaps it, and lets the pipe tasks drain.
    async fn finish(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        // The pipes close with the process (unless it left descendants holding them:
        // those are not waited for).
        let drain = async {
            let _ = (&mut self.stdout_task).await;
            let _ = (&mut self.stderr_task).await;
        };
        if tokio::time::timeout(Duration::from_secs(1), drain)
            .await
            .is_err()
        {
            self.stdout_task.abort();
            self.stderr_task.abort();
        }
    }
}

/// Reads the child's standard output: protocol messages go to `tx`, other lines are
/// logged and skipped. Keeps reading after the host stopped listening, so that the child
/// never blocks on a full pipe.
async fn read_stdout(
    mut out: impl AsyncBufRead + Unpin,
    tx: mpsc::Sender<ChildMessage>,
    shard: String,
) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match out.read_until(b'\n', &mut buf).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(shard, error = %e, "reading the child's standard output failed");
                return;
            }
        }
        let line = String::from_utf8_lossy(&buf);
        match parse_child_line(&line) {
            ChildLine::Message(m) => {
                tracing::trace!(shard, message = ?m, "from child");
                // The host stopped listening (the child is being given up): keep draining.
                let _ = tx.send(m).await;
            }
            ChildLine::Other => {
                let text = line.trim();
                if !text.is_empty() {
                    tracing::info!(
                        shard,
                        line = text,
                        "child output that is not a message (skipped)"
                    );
                }
            }
        }
    }
}

/// Passes the child's standard error on to the host's, each line prefixed with the shard.
async fn forward_stderr(mut err: impl AsyncBufRead + Unpin, shard: String) {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match err.fill_buf().await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(_) => break,
        };
        let n = chunk.len();
        pending.extend_from_slice(chunk);
        err.consume(n);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            emit(&shard, &line[..line.len() - 1]);
        }
        if pending.len() >= MAX_STDERR_LINE {
            emit(&shard, &pending);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        emit(&shard, &pending);
    }
}

/// Writes one line of a child's standard error to the host's.
fn emit(shard: &str, line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    crate::say!("[{shard}] {}", line.trim_end_matches('\r'));
}
