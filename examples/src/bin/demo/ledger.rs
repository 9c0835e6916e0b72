//! The demo's books: what the producer delivered, what each worker reported, and the checks
//! of the summary (lost, duplicates, per-key order, latency, parents before children, the
//! time from the kill until the dead worker's shards were processed again).
//!
//! ```text
//!  producer outcomes ─▶ produced(key, seq)          lease table scans ─▶ set_leases ─▶ moves
//!  worker lines ──────▶ apply(worker, WorkerEvent) ─▶ deliveries (every copy, with its time)
//!                                                  ─▶ notices for the screen
//!  killed(worker) ─▶ the shards it was processing ─▶ resumed when another worker processes them
//!  report() ─▶ Report (pure: computed from the books alone)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use kinesis_consumer::Lease;

use crate::protocol::WorkerEvent;

/// Notices about bad records printed per worker before the rest are only counted.
const BAD_RECORDS_SHOWN: usize = 5;

/// One processed copy of a record.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    /// The record: (key index, producer sequence).
    id: (u32, u64),
    /// When the worker processed it (µs since the Unix epoch).
    at_us: u64,
    /// Order of arrival at the demo (breaks ties of `at_us`).
    arrival: u64,
    /// Which worker.
    worker: usize,
    /// Put → processed, in µs.
    latency_us: u64,
}

/// What one worker is doing.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerView {
    /// Its name ("worker-2").
    pub(crate) name: String,
    /// Its process id, once it said it is ready.
    pub(crate) pid: Option<u32>,
    /// Shards it is processing (started, not ended or lost).
    pub(crate) active: BTreeSet<String>,
    /// Records it processed (copies included).
    pub(crate) processed: u64,
    /// When it was killed (µs since the Unix epoch).
    pub(crate) killed_at_us: Option<u64>,
    /// Whether it stopped with an error, and which.
    pub(crate) failed: Option<String>,
}

/// What happened to one shard.
#[derive(Debug, Clone, Default)]
struct ShardView {
    /// Its parent, if it is a child of the split.
    parent: Option<String>,
    /// First `started` (µs).
    first_started: Option<u64>,
    /// First batch with records (µs).
    first_records_at: Option<u64>,
    /// When it reached its end (µs).
    ended_at: Option<u64>,
}

/// The kill and what followed.
#[derive(Debug, Clone)]
struct Kill {
    /// The worker killed.
    worker: usize,
    /// When (µs since the Unix epoch).
    at_us: u64,
    /// Shards it was processing, and when each was processed again by another worker.
    shards: BTreeMap<String, Option<u64>>,
}

/// The books.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// When the demo started (µs since the Unix epoch): times are shown from here.
    t0_us: u64,
    /// Key name → index.
    keys: HashMap<String, u32>,
    /// Records the producer put (handed over).
    pub(crate) put: u64,
    /// First and last put (µs).
    put_span: Option<(u64, u64)>,
    /// Records the producer reported delivered.
    produced: HashSet<(u32, u64)>,
    /// Records the producer reported failed, with the first reasons.
    producer_failed: u64,
    /// Every processed copy.
    deliveries: Vec<Delivery>,
    /// Records processed at least once, by which worker first and when.
    seen: HashMap<(u32, u64), (usize, u64)>,
    /// The workers.
    pub(crate) workers: Vec<WorkerView>,
    /// The shards seen in events or made by the split.
    shards: BTreeMap<String, ShardView>,
    /// The kill, once done.
    kill: Option<Kill>,
    /// Records that were not demo events, or under another key.
    bad_records: u64,
    /// Lines from workers that were not events.
    protocol_errors: u64,
    /// Warnings workers sent.
    warnings: u64,
    /// The lease table at the last scan: shard → (owner, shard ended).
    leases: BTreeMap<String, (Option<String>, bool)>,
}

impl Ledger {
    /// Books for a demo started at `t0_us` with these workers.
    pub(crate) fn new(t0_us: u64, workers: &[String]) -> Self {
        Self {
            t0_us,
            workers: workers
                .iter()
                .map(|n| WorkerView {
                    name: n.clone(),
                    ..WorkerView::default()
                })
                .collect(),
            ..Self::default()
        }
    }

    /// Seconds since the start, for notices.
    pub(crate) fn secs(&self, at_us: u64) -> f64 {
        at_us.saturating_sub(self.t0_us) as f64 / 1e6
    }

    /// Interns a key.
    fn key(&mut self, key: &str) -> u32 {
        let next = self.keys.len() as u32;
        *self.keys.entry(key.to_owned()).or_insert(next)
    }

    /// A record was handed to the producer at `at_us`.
    pub(crate) fn record_put(&mut self, at_us: u64) {
        self.put += 1;
        self.put_span = Some(match self.put_span {
            None => (at_us, at_us),
            Some((first, _)) => (first, at_us),
        });
    }

    /// The producer delivered a record.
    pub(crate) fn produced(&mut self, key: &str, seq: u64) {
        let k = self.key(key);
        self.produced.insert((k, seq));
    }

    /// The producer gave a record up.
    pub(crate) fn producer_failed(&mut self) {
        self.producer_failed += 1;
    }

    /// Records delivered by the producer.
    pub(crate) fn produced_count(&self) -> u64 {
        self.produced.len() as u64
    }

    /// Distinct delivered records processed so far.
    pub(crate) fn processed_count(&self) -> u64 {
        self.seen
            .keys()
            .filter(|id| self.produced.contains(id))
            .count() as u64
    }

    /// Distinct records processed, delivered or not (cheap, for the progress line).
    pub(crate) fn distinct_processed(&self) -> u64 {
        self.seen.len() as u64
    }

    /// Copies processed beyond the first.
    pub(crate) fn duplicate_count(&self) -> u64 {
        self.deliveries.len() as u64 - self.seen.len() as u64
    }

    /// Put → processed of the latest delivery, in ms.
    pub(crate) fn last_latency_ms(&self) -> Option<f64> {
        self.deliveries.last().map(|d| d.latency_us as f64 / 1e3)
    }

    /// The shard `parent` was split into `children` (also learnt from the lease table).
    pub(crate) fn split(&mut self, parent: &str, children: &[String]) {
        for c in children {
            self.shards.entry(c.clone()).or_default().parent = Some(parent.to_owned());
        }
    }

    /// A line from a worker that is not an event.
    pub(crate) fn protocol_error(&mut self) {
        self.protocol_errors += 1;
    }

    /// Books one event from worker `w`; returns the lines worth showing.
    pub(crate) fn apply(&mut self, w: usize, event: WorkerEvent) -> Vec<String> {
        let name = self.workers[w].name.clone();
        let mut notes = Vec::new();
        match event {
            WorkerEvent::Ready { pid } => {
                self.workers[w].pid = Some(pid);
                notes.push(format!("{name} is up (pid {pid})"));
            }
            WorkerEvent::Started {
                shard,
                at_us,
                checkpoint,
            } => {
                self.workers[w].active.insert(shard.clone());
                let mut why = String::new();
                if let Some(k) = &self.kill {
                    if k.shards.contains_key(&shard) && w != k.worker {
                        why = format!(
                            ", {:.1} s after {} was killed",
                            (at_us.saturating_sub(k.at_us)) as f64 / 1e6,
                            self.workers[k.worker].name
                        );
                    }
                }
                let view = self.shards.entry(shard.clone()).or_default();
                view.first_started.get_or_insert(at_us);
                if let Some(parent) = view.parent.clone() {
                    // Checked in `report`, from the times alone; said here when known.
                    if let Some(end) = self.shards.get(&parent).and_then(|p| p.ended_at) {
                        why.push_str(&format!(
                            ", after its parent {parent} ended ({:.1} s before)",
                            at_us.saturating_sub(end) as f64 / 1e6
                        ));
                    }
                }
                // A sequence checkpoint is 56 digits: say where it resumes in words.
                let from = if checkpoint.contains('/') {
                    "from its checkpoint"
                } else {
                    checkpoint.as_str()
                };
                notes.push(format!("{name} started {shard} ({from}){why}"));
            }
            WorkerEvent::Batch {
                shard,
                at_us,
                records,
                bad,
            } => {
                if !bad.is_empty() {
                    self.bad_records += bad.len() as u64;
                    for b in bad.iter().take(BAD_RECORDS_SHOWN) {
                        notes.push(format!("{name} {shard}: BAD RECORD {b}"));
                    }
                }
                if !records.is_empty() {
                    self.book_records(w, &shard, at_us, &records, &mut notes);
                }
            }
            WorkerEvent::ShardEnded { shard, at_us } => {
                self.workers[w].active.remove(&shard);
                // The first time counts: a worker killed between this line and its
                // checkpoint leaves the end to be reached again by the next owner.
                self.shards
                    .entry(shard.clone())
                    .or_default()
                    .ended_at
                    .get_or_insert(at_us);
                self.note_resumed(w, &shard, at_us, &mut notes);
                notes.push(format!("{name} finished {shard} (SHARD_END)"));
            }
            WorkerEvent::LeaseLost { shard, .. } => {
                self.workers[w].active.remove(&shard);
                notes.push(format!("{name} lost the lease of {shard}"));
            }
            WorkerEvent::Stopped { shard, .. } => {
                // Handed to another worker (a graceful handoff), or the worker shuts down.
                if self.workers[w].active.remove(&shard) {
                    notes.push(format!("{name} stopped {shard} (last checkpoint taken)"));
                }
            }
            WorkerEvent::Warning { message } => {
                self.warnings += 1;
                notes.push(format!("{name}: {message}"));
            }
            WorkerEvent::Failed { message } => {
                self.workers[w].failed = Some(message.clone());
                notes.push(format!("{name} FAILED: {message}"));
            }
        }
        notes
    }

    /// Books a batch's records.
    fn book_records(
        &mut self,
        w: usize,
        shard: &str,
        at_us: u64,
        records: &[(String, u64, u64)],
        notes: &mut Vec<String>,
    ) {
        self.shards
            .entry(shard.to_owned())
            .or_default()
            .first_records_at
            .get_or_insert(at_us);
        for (key, seq, sent_us) in records {
            let k = self.key(key);
            let arrival = self.deliveries.len() as u64;
            self.deliveries.push(Delivery {
                id: (k, *seq),
                at_us,
                arrival,
                worker: w,
                latency_us: at_us.saturating_sub(*sent_us),
            });
            self.seen.entry((k, *seq)).or_insert((w, at_us));
        }
        self.workers[w].processed += records.len() as u64;
        self.note_resumed(w, shard, at_us, notes);
    }

    /// Notes when a shard of the killed worker is processed by another one.
    fn note_resumed(&mut self, w: usize, shard: &str, at_us: u64, notes: &mut Vec<String>) {
        let Some(k) = &mut self.kill else { return };
        if w == k.worker {
            return;
        }
        if let Some(slot @ None) = k.shards.get_mut(shard) {
            *slot = Some(at_us);
            notes.push(format!(
                "{} processing {shard} again, {:.1} s after the kill",
                self.workers[w].name,
                at_us.saturating_sub(k.at_us) as f64 / 1e6
            ));
        }
    }

    /// The worker that holds the most shards (the one to kill).
    pub(crate) fn busiest_worker(&self) -> usize {
        (0..self.workers.len())
            .filter(|&w| self.workers[w].killed_at_us.is_none())
            .max_by_key(|&w| (self.workers[w].active.len(), std::cmp::Reverse(w)))
            .unwrap_or(0)
    }

    /// Worker `w` was killed at `at_us`; returns the shards it was processing.
    pub(crate) fn killed(&mut self, w: usize, at_us: u64) -> Vec<String> {
        self.workers[w].killed_at_us = Some(at_us);
        let shards: Vec<String> = std::mem::take(&mut self.workers[w].active)
            .into_iter()
            .collect();
        self.kill = Some(Kill {
            worker: w,
            at_us,
            shards: shards.iter().map(|s| (s.clone(), None)).collect(),
        });
        shards
    }

    /// Whether every shard of the killed worker was processed again (true without a kill).
    pub(crate) fn kill_recovered(&self) -> bool {
        self.kill
            .as_ref()
            .is_none_or(|k| k.shards.values().all(Option::is_some))
    }

    /// Books a scan of the lease table; returns the moves since the last scan.
    pub(crate) fn set_leases(&mut self, leases: &[Lease]) -> Vec<String> {
        let mut notes = Vec::new();
        let now: BTreeMap<String, (Option<String>, bool)> = leases
            .iter()
            .map(|l| {
                (
                    l.lease_key.clone(),
                    (l.owner.clone(), l.checkpoint.is_shard_end()),
                )
            })
            .collect();
        for l in leases {
            if let Some(parent) = l.parent_shard_ids.first() {
                self.shards
                    .entry(l.lease_key.clone())
                    .or_default()
                    .parent
                    .get_or_insert_with(|| parent.clone());
            }
        }
        for (shard, (owner, ended)) in &now {
            match self.leases.get(shard) {
                None => notes.push(format!(
                    "lease {shard} created{}",
                    owner
                        .as_ref()
                        .map(|o| format!(", held by {o}"))
                        .unwrap_or_default()
                )),
                Some((before, _)) if before != owner && !ended => notes.push(format!(
                    "lease {shard}: {} -> {}",
                    before.as_deref().unwrap_or("nobody"),
                    owner.as_deref().unwrap_or("nobody")
                )),
                _ => {}
            }
        }
        self.leases = now;
        notes
    }

    /// Leases of unfinished shards per owner, from the last scan.
    pub(crate) fn leases_of(&self, worker: &str) -> Vec<String> {
        self.leases
            .iter()
            .filter(|(_, (owner, ended))| !ended && owner.as_deref() == Some(worker))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Whether every unfinished lease is held, the workers' counts differ by at most one, and
    /// no shard is being processed by two workers (a worker whose lease was stolen keeps its
    /// shard consumer until it learns of it: about one heartbeat).
    pub(crate) fn balanced(&self) -> bool {
        let mut processing = HashSet::new();
        for w in self.workers.iter().filter(|w| w.killed_at_us.is_none()) {
            for shard in &w.active {
                if !processing.insert(shard) {
                    return false;
                }
            }
        }
        let open: Vec<_> = self.leases.values().filter(|(_, ended)| !ended).collect();
        if open.is_empty() || open.iter().any(|(owner, _)| owner.is_none()) {
            return false;
        }
        let alive: Vec<&WorkerView> = self
            .workers
            .iter()
            .filter(|w| w.killed_at_us.is_none())
            .collect();
        let counts: Vec<usize> = alive
            .iter()
            .map(|w| self.leases_of(&w.name).len())
            .collect();
        let (min, max) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        counts.iter().sum::<usize>() == open.len() && max - min <= 1
    }

    /// The summary's numbers.
    pub(crate) fn report(&self) -> Report {
        let processed = self.processed_count();
        let lost = self.produced_count() - processed;
        let not_reported_delivered = self.seen.len() as u64 - processed;
        // Duplicates, and which of them the kill explains: first processed by the killed
        // worker, processed again by another after the kill.
        let mut after_kill = 0;
        let mut counted: HashSet<(u32, u64)> = HashSet::new();
        for d in &self.deliveries {
            // Deliveries are in arrival order, as `seen` was filled: the first is the first copy.
            if counted.insert(d.id) {
                continue;
            }
            let (first_worker, _) = self.seen[&d.id];
            if let Some(k) = &self.kill {
                if first_worker == k.worker && d.worker != k.worker && d.at_us >= k.at_us {
                    after_kill += 1;
                }
            }
        }
        // Per-key order: first copies sorted by processing time must have rising sequences.
        let mut firsts: Vec<&Delivery> = Vec::with_capacity(self.seen.len());
        let mut taken: HashSet<(u32, u64)> = HashSet::with_capacity(self.seen.len());
        let mut by_time: Vec<&Delivery> = self.deliveries.iter().collect();
        by_time.sort_by_key(|d| (d.at_us, d.arrival));
        for d in by_time {
            if taken.insert(d.id) {
                firsts.push(d);
            }
        }
        let mut highest: HashMap<u32, u64> = HashMap::new();
        let mut order_violations = 0;
        for d in &firsts {
            let top = highest.entry(d.id.0).or_insert(d.id.1);
            if d.id.1 < *top {
                order_violations += 1;
            } else {
                *top = d.id.1;
            }
        }
        let mut latencies: Vec<u64> = firsts.iter().map(|d| d.latency_us).collect();
        latencies.sort_unstable();
        let pct = |p: f64| -> Option<f64> {
            if latencies.is_empty() {
                return None;
            }
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            Some(latencies[i] as f64 / 1e3)
        };
        let first_put = self.put_span.map(|(a, _)| a);
        let last_put = self.put_span.map(|(_, b)| b);
        let last_processed = firsts.iter().map(|d| d.at_us).max();
        let rate = |n: u64, from: Option<u64>, to: Option<u64>| match (from, to) {
            (Some(a), Some(b)) if b > a => Some(n as f64 / ((b - a) as f64 / 1e6)),
            _ => None,
        };
        let kill = self.kill.as_ref().map(|k| KillReport {
            worker: self.workers[k.worker].name.clone(),
            at_s: self.secs(k.at_us),
            shards: k.shards.keys().cloned().collect(),
            resumed_after_s: k
                .shards
                .values()
                .map(|r| r.map(|at| at.saturating_sub(k.at_us) as f64 / 1e6))
                .collect(),
        });
        // Parents before children: no child started or processed anything before its parent
        // reached its end (the parent's line is written before its SHARD_END checkpoint).
        let parent_child_violations = self
            .shards
            .values()
            .filter(|child| {
                let Some(parent) = &child.parent else {
                    return false;
                };
                let first = match (child.first_started, child.first_records_at) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => match a.or(b) {
                        Some(t) => t,
                        None => return false,
                    },
                };
                !matches!(self.shards.get(parent).and_then(|p| p.ended_at), Some(end) if end <= first)
            })
            .count() as u64;
        let split = self
            .shards
            .iter()
            .filter_map(|(child, v)| v.parent.as_ref().map(|p| (p.clone(), child.clone())))
            .collect();
        Report {
            put: self.put,
            produced: self.produced_count(),
            producer_failed: self.producer_failed,
            processed,
            lost,
            processed_not_reported_delivered: not_reported_delivered,
            duplicates: self.duplicate_count(),
            duplicates_after_kill: after_kill,
            order_violations,
            latency_p50_ms: pct(0.50),
            latency_p99_ms: pct(0.99),
            produce_rate: rate(self.put, first_put, last_put),
            end_to_end_rate: rate(processed, first_put, last_processed),
            kill,
            split,
            parent_child_violations,
            bad_records: self.bad_records,
            protocol_errors: self.protocol_errors,
            warnings: self.warnings,
            workers: self
                .workers
                .iter()
                .map(|w| (w.name.clone(), w.processed))
                .collect(),
        }
    }
}

/// The kill in the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct KillReport {
    /// The worker killed.
    pub(crate) worker: String,
    /// When, in seconds from the start.
    pub(crate) at_s: f64,
    /// Shards it was processing.
    pub(crate) shards: Vec<String>,
    /// For each, seconds from the kill until another worker processed it (`None`: never).
    pub(crate) resumed_after_s: Vec<Option<f64>>,
}

/// The numbers of the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Report {
    /// Records handed to the producer.
    pub(crate) put: u64,
    /// Records the producer reported delivered.
    pub(crate) produced: u64,
    /// Records the producer reported failed.
    pub(crate) producer_failed: u64,
    /// Delivered records processed at least once.
    pub(crate) processed: u64,
    /// Delivered records never processed.
    pub(crate) lost: u64,
    /// Records processed that the producer did not report delivered.
    pub(crate) processed_not_reported_delivered: u64,
    /// Copies processed beyond the first.
    pub(crate) duplicates: u64,
    /// Of those: first processed by the killed worker, again by another after the kill.
    pub(crate) duplicates_after_kill: u64,
    /// Records processed (first copy) after a later record of the same key.
    pub(crate) order_violations: u64,
    /// Median put → processed, ms.
    pub(crate) latency_p50_ms: Option<f64>,
    /// 99th percentile put → processed, ms.
    pub(crate) latency_p99_ms: Option<f64>,
    /// Records put per second, first put to last.
    pub(crate) produce_rate: Option<f64>,
    /// Records processed per second, first put to last first processing.
    pub(crate) end_to_end_rate: Option<f64>,
    /// The kill, if one was made.
    pub(crate) kill: Option<KillReport>,
    /// (parent, child) of the split.
    pub(crate) split: Vec<(String, String)>,
    /// Children started or processed before their parent ended.
    pub(crate) parent_child_violations: u64,
    /// Records that were not demo events.
    pub(crate) bad_records: u64,
    /// Worker lines that were not events.
    pub(crate) protocol_errors: u64,
    /// Warnings from workers.
    pub(crate) warnings: u64,
    /// Records (copies included) per worker.
    pub(crate) workers: Vec<(String, u64)>,
}

impl Report {
    /// The seconds from the kill until all its shards were processed again, if they were.
    pub(crate) fn kill_to_resumed_s(&self) -> Option<f64> {
        let k = self.kill.as_ref()?;
        k.resumed_after_s
            .iter()
            .try_fold(0.0f64, |m, r| r.map(|r| m.max(r)))
    }

    /// What is wrong, if anything: the reasons for a non-zero exit.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                p.push(what);
            }
        };
        check(self.lost > 0, format!("{} records lost", self.lost));
        check(
            self.order_violations > 0,
            format!("{} per-key order violations", self.order_violations),
        );
        check(
            self.producer_failed > 0,
            format!(
                "{} records not delivered by the producer",
                self.producer_failed
            ),
        );
        check(
            self.parent_child_violations > 0,
            format!(
                "{} children processed before their parent ended",
                self.parent_child_violations
            ),
        );
        check(
            self.bad_records > 0,
            format!("{} records were not the events put", self.bad_records),
        );
        check(
            self.protocol_errors > 0,
            format!("{} unreadable lines from workers", self.protocol_errors),
        );
        check(
            self.kill.is_some() && self.kill_to_resumed_s().is_none(),
            "the killed worker's shards were not all processed again".into(),
        );
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(shard: &str, at_us: u64, recs: &[(&str, u64)]) -> WorkerEvent {
        WorkerEvent::Batch {
            shard: shard.into(),
            at_us,
            records: recs
                .iter()
                .map(|(k, s)| ((*k).to_owned(), *s, at_us.saturating_sub(1_000)))
                .collect(),
            bad: vec![],
        }
    }

    fn started(shard: &str, at_us: u64) -> WorkerEvent {
        WorkerEvent::Started {
            shard: shard.into(),
            at_us,
            checkpoint: "TRIM_HORIZON".into(),
        }
    }

    fn ledger(records: &[(&str, u64)]) -> Ledger {
        let mut l = Ledger::new(0, &["w1".into(), "w2".into()]);
        for (k, s) in records {
            l.record_put(1);
            l.produced(k, *s);
        }
        l
    }

    #[test]
    fn a_clean_run_has_no_problems() {
        let mut l = ledger(&[("a", 0), ("a", 1), ("b", 0)]);
        l.apply(0, started("s0", 10));
        l.apply(0, batch("s0", 2_000, &[("a", 0), ("b", 0)]));
        l.apply(0, batch("s0", 3_000, &[("a", 1)]));
        let r = l.report();
        assert_eq!(
            (r.processed, r.lost, r.duplicates, r.order_violations),
            (3, 0, 0, 0)
        );
        assert_eq!(r.latency_p50_ms, Some(1.0));
        assert!(r.problems().is_empty(), "{:?}", r.problems());
    }

    #[test]
    fn lost_and_reordered_records_are_problems() {
        let mut l = ledger(&[("a", 0), ("a", 1), ("a", 2)]);
        l.apply(0, batch("s0", 20, &[("a", 1)]));
        l.apply(1, batch("s1", 30, &[("a", 0)]));
        let r = l.report();
        assert_eq!(r.lost, 1);
        assert_eq!(r.order_violations, 1);
        assert_eq!(r.problems().len(), 2, "{:?}", r.problems());
    }

    #[test]
    fn copies_after_a_kill_are_duplicates_not_reordering() {
        let mut l = ledger(&[("a", 0), ("a", 1), ("a", 2)]);
        l.apply(0, started("s0", 5));
        l.apply(0, batch("s0", 10, &[("a", 0), ("a", 1)]));
        assert_eq!(l.busiest_worker(), 0);
        assert_eq!(l.killed(0, 15), vec!["s0".to_owned()]);
        assert!(!l.kill_recovered());
        l.apply(1, started("s0", 40));
        let notes = l.apply(1, batch("s0", 50, &[("a", 1), ("a", 2)]));
        assert!(notes.iter().any(|n| n.contains("again")), "{notes:?}");
        assert!(l.kill_recovered());
        let r = l.report();
        assert_eq!((r.lost, r.duplicates, r.duplicates_after_kill), (0, 1, 1));
        assert_eq!(r.order_violations, 0);
        assert!((r.kill_to_resumed_s().expect("resumed") - 35e-6).abs() < 1e-9);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
    }

    #[test]
    fn a_kill_never_recovered_is_a_problem() {
        let mut l = ledger(&[("a", 0)]);
        l.apply(0, started("s0", 5));
        l.apply(0, batch("s0", 10, &[("a", 0)]));
        l.killed(0, 15);
        assert!(l.report().problems().iter().any(|p| p.contains("killed")));
    }

    #[test]
    fn children_must_start_after_their_parent_ended() {
        let mut l = ledger(&[("a", 0), ("a", 1)]);
        l.split("p", &["c1".into(), "c2".into()]);
        l.apply(0, batch("p", 10, &[("a", 0)]));
        l.apply(1, started("c1", 12));
        l.apply(
            0,
            WorkerEvent::ShardEnded {
                shard: "p".into(),
                at_us: 20,
            },
        );
        let ok = l.apply(1, started("c2", 25));
        assert!(ok[0].contains("after its parent p ended"), "{ok:?}");
        let r = l.report();
        assert_eq!(r.parent_child_violations, 1);
        assert_eq!(r.split.len(), 2);
        assert!(!r.problems().is_empty());
    }

    #[test]
    fn lease_moves_and_balance_come_from_the_table() {
        let mut l = ledger(&[]);
        let lease = |k: &str, o: &str| {
            let mut x = Lease::new(k, kinesis_consumer::Checkpoint::TrimHorizon);
            x.owner = Some(o.into());
            x
        };
        let first = l.set_leases(&[lease("s0", "w1"), lease("s1", "w1")]);
        assert_eq!(first.len(), 2);
        assert!(!l.balanced());
        let moved = l.set_leases(&[lease("s0", "w1"), lease("s1", "w2")]);
        assert_eq!(moved, vec!["lease s1: w1 -> w2".to_owned()]);
        assert!(l.balanced());
        // w1 still runs s1's consumer: not settled until it hears that it lost it.
        l.apply(0, started("s1", 1));
        l.apply(1, started("s1", 2));
        assert!(!l.balanced());
        l.apply(
            0,
            WorkerEvent::LeaseLost {
                shard: "s1".into(),
                at_us: 3,
            },
        );
        assert!(l.balanced());
        assert_eq!(l.leases_of("w2"), vec!["s1".to_owned()]);
    }

    #[test]
    fn a_shard_handed_over_is_no_longer_the_old_owners() {
        let mut l = ledger(&[]);
        let lease = |k: &str, o: &str| {
            let mut x = Lease::new(k, kinesis_consumer::Checkpoint::TrimHorizon);
            x.owner = Some(o.into());
            x
        };
        l.set_leases(&[lease("s0", "w1"), lease("s1", "w1")]);
        l.apply(0, started("s0", 1));
        l.apply(0, started("s1", 1));
        // s1 handed to w2: w1's consumer is asked to stop (no lease_lost), w2 starts it.
        l.set_leases(&[lease("s0", "w1"), lease("s1", "w2")]);
        l.apply(1, started("s1", 2));
        assert!(!l.balanced());
        l.apply(
            0,
            WorkerEvent::Stopped {
                shard: "s1".into(),
                at_us: 3,
            },
        );
        assert!(l.balanced());
        // Killed now, w1 was processing s0 alone.
        assert_eq!(l.killed(0, 4), vec!["s0".to_owned()]);
    }

    #[test]
    fn foreign_records_are_counted() {
        let mut l = ledger(&[]);
        let notes = l.apply(
            0,
            WorkerEvent::Batch {
                shard: "s".into(),
                at_us: 1,
                records: vec![],
                bad: vec!["x".into()],
            },
        );
        assert_eq!(notes.len(), 1);
        assert_eq!(l.report().bad_records, 1);
    }
}
