//! The fleet: worker processes (`demo worker ...`, the same binary), their output read into the
//! [`Ledger`], and the kill.
//!
//! ```text
//!  Fleet::spawn ─▶ child "worker-K" ─ stdout lines ─▶ reader task ─▶ Ledger::apply ─▶ notices
//!                                   ─ stderr lines ─▶ notices ("worker-K: ...")
//!                  stdin: a pipe kept open; closing it asks for a graceful stop (and the
//!                  worker stops by itself if the demo dies)
//!  Fleet::kill(K) ─▶ SIGKILL: no shutdown, no lease release, no last checkpoint
//! ```

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ledger::Ledger;
use crate::protocol::WorkerEvent;

/// How long a worker may take to stop gracefully before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// One worker process.
#[derive(Debug)]
struct Worker {
    /// The process.
    child: Child,
    /// Its standard input; dropped to ask it to stop.
    stdin: Option<ChildStdin>,
    /// The readers of its stdout and stderr.
    readers: Vec<JoinHandle<()>>,
    /// Whether the demo killed it.
    killed: bool,
}

/// The worker processes.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// Indexed like the ledger's workers.
    workers: Vec<Worker>,
}

impl Fleet {
    /// Starts one process per name: `exe worker --worker-id NAME` plus `args`; their events go
    /// to `ledger`, the lines worth showing to `notices`.
    ///
    /// # Errors
    /// A message when a process cannot be started.
    pub(crate) fn spawn(
        exe: &PathBuf,
        names: &[String],
        args: &[String],
        ledger: &Arc<Mutex<Ledger>>,
        notices: &mpsc::UnboundedSender<String>,
    ) -> Result<Self, String> {
        let mut workers = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut child = Command::new(exe)
                .arg("worker")
                .arg("--worker-id")
                .arg(name)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {name} ({}): {e}", exe.display()))?;
            let stdin = child.stdin.take();
            let mut readers = Vec::new();
            if let Some(out) = child.stdout.take() {
                let (ledger, notices) = (ledger.clone(), notices.clone());
                let name = name.clone();
                readers.push(tokio::spawn(async move {
                    let mut lines = BufReader::new(out).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let notes = match WorkerEvent::parse(&line) {
                            Ok(event) => lock(&ledger).apply(i, event),
                            Err(e) => {
                                lock(&ledger).protocol_error();
                                vec![format!("{name}: unreadable line ({e}): {line}")]
                            }
                        };
                        for n in notes {
                            let _ = notices.send(n);
                        }
                    }
                }));
            }
            if let Some(err) = child.stderr.take() {
                let (notices, name) = (notices.clone(), name.clone());
                readers.push(tokio::spawn(async move {
                    let mut lines = BufReader::new(err).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let _ = notices.send(format!("{name} (stderr): {line}"));
                    }
                }));
            }
            workers.push(Worker {
                child,
                stdin,
                readers,
                killed: false,
            });
        }
        Ok(Self { workers })
    }

    /// Kills worker `i` with SIGKILL and waits until it is gone and its output read.
    ///
    /// # Cancellation
    /// Dropping the future after the signal leaves the process killed.
    ///
    /// # Errors
    /// A message when the signal cannot be sent (the process already ended).
    pub(crate) async fn kill(&mut self, i: usize) -> Result<(), String> {
        let w = &mut self.workers[i];
        w.child
            .start_kill()
            .map_err(|e| format!("cannot kill the worker: {e}"))?;
        w.killed = true;
        let _ = w.child.wait().await;
        for r in w.readers.drain(..) {
            let _ = r.await;
        }
        Ok(())
    }

    /// Asks every live worker to stop gracefully (closes its stdin), waits for each up to
    /// 20 s, kills those still running; returns the ones that did not stop cleanly.
    ///
    /// # Cancellation
    /// Dropping the future kills the workers not yet stopped (they are killed on drop).
    pub(crate) async fn stop(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for w in &mut self.workers {
            w.stdin = None;
        }
        for (i, w) in self.workers.iter_mut().enumerate() {
            match tokio::time::timeout(STOP_GRACE, w.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                // The killed worker ended by SIGKILL: that is the demo.
                Ok(Ok(_)) if w.killed => {}
                Ok(Ok(status)) => problems.push(format!("worker {} ended with {status}", i + 1)),
                Ok(Err(e)) => problems.push(format!("worker {}: {e}", i + 1)),
                Err(_) => {
                    let _ = w.child.start_kill();
                    let _ = w.child.wait().await;
                    problems.push(format!("worker {} did not stop in {STOP_GRACE:?}", i + 1));
                }
            }
            for r in w.readers.drain(..) {
                let _ = r.await;
            }
        }
        problems
    }
}

/// Locks the ledger (a panic elsewhere does not hide the books).
pub(crate) fn lock(ledger: &Arc<Mutex<Ledger>>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}
