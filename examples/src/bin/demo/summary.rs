//! The verified summary: the [`Report`] in words, and as one JSON line for scripts and tests.
//!
//! ```text
//!  Report ─▶ text (stdout) ─▶ "result  OK" / "result  FAILED: ..."
//!         └▶ --json-summary: {"ok":…,"problems":[…],"elapsed_s":…,"kill_to_resumed_s":…,"report":{…}}
//! ```

use std::fmt::Write as _;

use serde::Serialize;

use crate::ledger::Report;
use crate::progress::short;

/// The JSON summary line.
#[derive(Debug, Serialize)]
pub(crate) struct JsonSummary<'a> {
    /// No problem found.
    pub(crate) ok: bool,
    /// What went wrong (the exit status is 1 when not empty).
    pub(crate) problems: &'a [String],
    /// Seconds from the start to the summary.
    pub(crate) elapsed_s: f64,
    /// Seconds from the kill until all its shards were processed again.
    pub(crate) kill_to_resumed_s: Option<f64>,
    /// Whether the workers read by enhanced fan-out.
    pub(crate) efo: bool,
    /// The numbers.
    pub(crate) report: &'a Report,
}

/// `12345` → `12,345`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An optional number with a unit.
fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}{unit}"))
}

/// The summary in words.
pub(crate) fn text(r: &Report, problems: &[String], elapsed_s: f64) -> String {
    let mut s = String::from("\n=== summary ===\n");
    let _ = writeln!(
        s,
        "produced    {} records put, {} delivered by the producer, {} failed ({} records/s offered)",
        thousands(r.put),
        thousands(r.produced),
        thousands(r.producer_failed),
        opt(r.produce_rate, "")
    );
    let _ = writeln!(
        s,
        "processed   {} distinct records; lost {}{}",
        thousands(r.processed),
        thousands(r.lost),
        if r.processed_not_reported_delivered > 0 {
            format!(
                " ({} more processed that the producer did not report delivered)",
                r.processed_not_reported_delivered
            )
        } else {
            String::new()
        }
    );
    let why = if r.duplicates == 0 {
        String::new()
    } else if r.duplicates == r.duplicates_after_kill {
        ": all processed by the killed worker after its last checkpoint, so delivered again \
         to the worker that took its lease (at-least-once)"
            .into()
    } else {
        format!(
            ": {} processed by the killed worker after its last checkpoint and delivered again; \
             {} others (leases handed over between checkpoints)",
            r.duplicates_after_kill,
            r.duplicates - r.duplicates_after_kill
        )
    };
    let _ = writeln!(s, "duplicates  {}{why}", thousands(r.duplicates));
    let _ = writeln!(
        s,
        "order       {} per-key order violations (each key's records processed in the producer's order)",
        r.order_violations
    );
    let _ = writeln!(
        s,
        "latency     put -> processed p50 {}, p99 {}",
        opt(r.latency_p50_ms, " ms"),
        opt(r.latency_p99_ms, " ms")
    );
    let _ = writeln!(
        s,
        "throughput  {} records/s end to end (first put to last record processed)",
        opt(r.end_to_end_rate, "")
    );
    if !r.split.is_empty() {
        let parent = &r.split[0].0;
        let children: Vec<&str> = r.split.iter().map(|(_, c)| c.as_str()).collect();
        let _ = writeln!(
            s,
            "split       {parent} -> {}; children started after their parent: {}",
            children.join(", "),
            if r.parent_child_violations == 0 {
                "yes"
            } else {
                "NO"
            }
        );
    }
    if let Some(k) = &r.kill {
        let each: Vec<String> = k
            .shards
            .iter()
            .zip(&k.resumed_after_s)
            .map(|(sh, t)| {
                format!(
                    "{} {}",
                    short(sh),
                    t.map_or("never".into(), |t| format!("{t:.1} s"))
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "kill        {} killed (SIGKILL) at {:.1} s while processing {} shard(s); all processed again after {} ({})",
            k.worker,
            k.at_s,
            k.shards.len(),
            r.kill_to_resumed_s()
                .map_or("-".into(), |t| format!("{t:.1} s")),
            each.join(", ")
        );
    }
    let per_worker: Vec<String> = r
        .workers
        .iter()
        .map(|(w, n)| format!("{w} {}", thousands(*n)))
        .collect();
    let _ = writeln!(
        s,
        "workers     records processed: {}",
        per_worker.join(", ")
    );
    if r.warnings > 0 {
        let _ = writeln!(s, "warnings    {} (shown above)", r.warnings);
    }
    let _ = writeln!(s, "elapsed     {elapsed_s:.1} s");
    if problems.is_empty() {
        s.push_str("result      OK\n");
    } else {
        let _ = writeln!(s, "result      FAILED: {}", problems.join("; "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(60_000), "60,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
