//! What the user watches: live bars refreshed in place on a terminal (indicatif), plain
//! periodic lines otherwise; notices (leases moving, shards starting and ending, the split,
//! the kill) printed as they come, stamped with the seconds since the start.
//!
//! ```text
//!  notices (mpsc) ──────────────┐
//!  every 200 ms: Ledger snapshot ┴─▶ Progress ─▶ terminal: bars (produced, processed, one per worker)
//!                                              └─▶ not a terminal: a status line every --progress-secs
//! ```

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fleet::lock;
use crate::ledger::Ledger;

/// How often the bars are refreshed.
const TICK: Duration = Duration::from_millis(200);

/// The bars of a terminal.
#[derive(Debug)]
struct Bars {
    /// Their owner (prints notices above them).
    multi: MultiProgress,
    /// Records put.
    produced: ProgressBar,
    /// Distinct records processed.
    processed: ProgressBar,
    /// One line per worker.
    workers: Vec<ProgressBar>,
}

/// The display task; [`Progress::finish`] stops it.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Tells the task to print what is left and stop.
    stop: oneshot::Sender<()>,
    /// The task.
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts showing `ledger`'s progress towards `total` records, and `notices`; bars when
    /// standard output is a terminal and `plain` is false.
    pub(crate) fn start(
        ledger: Arc<Mutex<Ledger>>,
        mut notices: mpsc::UnboundedReceiver<String>,
        total: u64,
        plain: bool,
        every: Duration,
        started: Instant,
    ) -> Self {
        let bars = (!plain && std::io::stdout().is_terminal()).then(|| bars(&ledger, total));
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut last_line = Instant::now();
            loop {
                tokio::select! {
                    n = notices.recv() => match n {
                        Some(n) => say(bars.as_ref(), started, &n),
                        None => break,
                    },
                    _ = tick.tick() => {
                        if let Some(b) = &bars {
                            refresh(b, &lock(&ledger));
                        } else if last_line.elapsed() >= every {
                            last_line = Instant::now();
                            say(None, started, &status_line(&lock(&ledger), total));
                        }
                    }
                    _ = &mut stopped => break,
                }
            }
            while let Ok(n) = notices.try_recv() {
                say(bars.as_ref(), started, &n);
            }
            match &bars {
                Some(b) => {
                    refresh(b, &lock(&ledger));
                    for bar in [&b.produced, &b.processed].into_iter().chain(&b.workers) {
                        bar.finish();
                    }
                }
                None => say(None, started, &status_line(&lock(&ledger), total)),
            }
        });
        Self { stop, task }
    }

    /// Prints what is pending, leaves the bars as they are, and stops.
    ///
    /// # Cancellation
    /// Dropping the future leaves the display task to stop by itself.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Prints a notice above the bars (or as a line).
fn say(bars: Option<&Bars>, started: Instant, text: &str) {
    let line = format!("[{:6.1}s] {text}", started.elapsed().as_secs_f64());
    match bars {
        Some(b) => {
            let _ = b.multi.println(line);
        }
        None => println!("{line}"),
    }
}

/// The bars, drawn on standard output.
fn bars(ledger: &Arc<Mutex<Ledger>>, total: u64) -> Bars {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
    let style =
        |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
    let counted = style("{prefix:>10} [{bar:24.cyan/blue}] {human_pos:>7}/{human_len:7} {msg}")
        .progress_chars("=> ");
    let produced = multi.add(ProgressBar::new(total).with_style(counted.clone()));
    produced.set_prefix("produced");
    let processed = multi.add(ProgressBar::new(total).with_style(counted));
    processed.set_prefix("processed");
    let names: Vec<String> = lock(ledger)
        .workers
        .iter()
        .map(|w| w.name.clone())
        .collect();
    let workers = names
        .iter()
        .map(|n| {
            let b = multi.add(ProgressBar::new(0).with_style(style("{prefix:>10} {msg}")));
            b.set_prefix(n.clone());
            b
        })
        .collect();
    Bars {
        multi,
        produced,
        processed,
        workers,
    }
}

/// Updates the bars from the books.
fn refresh(b: &Bars, l: &Ledger) {
    b.produced.set_position(l.put);
    b.produced
        .set_message(format!("delivered {}", l.produced_count()));
    let processed = l.distinct_processed();
    b.processed.set_position(processed);
    b.processed.set_message(format!(
        "dup {}  lag {}  latency {}",
        l.duplicate_count(),
        l.put.saturating_sub(processed),
        l.last_latency_ms()
            .map_or("-".into(), |ms| format!("{ms:.0} ms"))
    ));
    for (bar, w) in b.workers.iter().zip(&l.workers) {
        bar.set_message(worker_text(l, w));
    }
}

/// One worker's state in a few words.
fn worker_text(l: &Ledger, w: &crate::ledger::WorkerView) -> String {
    if let Some(at) = w.killed_at_us {
        return format!(
            "KILLED (SIGKILL) at {:.1} s after {} records",
            l.secs(at),
            w.processed
        );
    }
    if let Some(e) = &w.failed {
        return format!("FAILED: {e}");
    }
    let leases = l.leases_of(&w.name);
    let mut s = format!(
        "pid {:<7} {:>7} records  leases [{}]",
        w.pid.map_or("-".into(), |p| p.to_string()),
        w.processed,
        shorts(&leases)
    );
    if !w.active.is_empty() {
        let _ = write!(s, "  processing [{}]", shorts(&w.active));
    }
    s
}

/// The plain status line.
fn status_line(l: &Ledger, total: u64) -> String {
    let processed = l.distinct_processed();
    let mut s = format!(
        "produced {}/{total} (delivered {}), processed {processed}, duplicates {}, lag {}",
        l.put,
        l.produced_count(),
        l.duplicate_count(),
        l.put.saturating_sub(processed)
    );
    for w in &l.workers {
        let _ = write!(s, " | {}: ", w.name);
        if w.killed_at_us.is_some() {
            let _ = write!(s, "killed");
        } else {
            let leases = l.leases_of(&w.name);
            let _ = write!(s, "{} records, leases [{}]", w.processed, shorts(&leases));
        }
    }
    s
}

/// `shards` by their [`short`] names, space separated.
fn shorts<'a>(shards: impl IntoIterator<Item = &'a String>) -> String {
    shards
        .into_iter()
        .map(|s| short(s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `shardId-000000000004` → `4`.
pub(crate) fn short(shard: &str) -> &str {
    let n = shard.strip_prefix("shardId-").unwrap_or(shard);
    let t = n.trim_start_matches('0');
    if t.is_empty() && !n.is_empty() {
        "0"
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_are_shortened() {
        assert_eq!(short("shardId-000000000004"), "4");
        assert_eq!(short("shardId-000000000000"), "0");
        assert_eq!(short("shardId-000000000120"), "120");
        assert_eq!(short("other"), "other");
        let ids = [
            "shardId-000000000004".to_owned(),
            "shardId-000000000120".to_owned(),
        ];
        assert_eq!(shorts(&ids), "4 120");
        assert_eq!(shorts(&Vec::<String>::new()), "");
    }

    #[test]
    fn the_status_line_names_every_worker() {
        let l = Ledger::new(0, &["worker-1".into(), "worker-2".into()]);
        let s = status_line(&l, 10);
        assert!(s.starts_with("produced 0/10"), "{s}");
        assert!(
            s.contains("worker-1: 0 records") && s.contains("worker-2"),
            "{s}"
        );
    }
}
