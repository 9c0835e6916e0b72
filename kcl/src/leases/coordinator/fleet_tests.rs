//! The coordinator with a fleet, on memory stores and a paused clock: deaths seen within
//! the failover time, newcomers served at once, no churn through an outage shorter than
//! the failover time, steals and wrongful declarations noticed at the next beat.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::test_support::fresh_table;
use super::*;
use crate::checkpoint::Checkpoint;
use crate::leases::fleet::MemoryFleetStore;
use crate::leases::handoff::Standing;
use crate::leases::{Lease, MemoryLeaseStore};

const FAILOVER: Duration = Duration::from_secs(10);

/// The tenures `worker` holds now (each tells when it is lost).
fn tenures(worker: &LeaseCoordinator) -> Vec<Arc<HeldLease>> {
    worker.held_leases().into_iter().map(|(_, h)| h).collect()
}

/// The keys counted more than once in `seen`, sorted.
fn more_than_once(seen: HashMap<String, usize>) -> Vec<String> {
    let mut twice: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect();
    twice.sort();
    twice
}

struct Fleet {
    leases: Arc<MemoryLeaseStore>,
    fleet: Arc<MemoryFleetStore>,
    workers: Vec<LeaseCoordinator>,
    /// Workers still running (the others were "killed": they do nothing any more).
    running: Vec<bool>,
    /// When each worker's taker last ran (it also runs every taker_interval).
    last_take: std::sync::Mutex<Vec<Option<Instant>>>,
}

impl Fleet {
    async fn new(n: usize, shards: usize) -> Self {
        let leases = fresh_table(shards).await;
        let fleet = Arc::new(MemoryFleetStore::new());
        let mut f = Self {
            leases,
            fleet,
            workers: Vec::new(),
            running: Vec::new(),
            last_take: std::sync::Mutex::new(Vec::new()),
        };
        for _ in 0..n {
            f.join();
        }
        f
    }

    /// A new worker, not started yet (it beats and takes at the next step).
    fn join(&mut self) -> usize {
        let mut config = LeaseConfig::new(FAILOVER);
        config.max_leases_to_steal_at_one_time = usize::MAX;
        let w = LeaseCoordinator::new(
            self.leases.clone() as Arc<dyn LeaseStore>,
            format!("worker-{}", self.workers.len()),
            config,
        )
        .with_fleet(self.fleet.clone());
        self.workers.push(w);
        self.running.push(true);
        self.last_take.lock().unwrap().push(None);
        self.workers.len() - 1
    }

    /// One heartbeat interval: every running worker beats, and runs a taker round when
    /// its beat says so, it never took (a fresh worker) or its taker interval passed.
    async fn step(&self) {
        tokio::time::advance(LeaseConfig::new(FAILOVER).heartbeat_interval).await;
        for (i, (w, running)) in self.workers.iter().zip(&self.running).enumerate() {
            if !running {
                continue;
            }
            let fresh = w.heartbeat.as_ref().is_some_and(|h| !h.has_looked());
            let due = self.last_take.lock().unwrap()[i]
                .is_none_or(|t| t.elapsed() >= w.config().taker_interval);
            if w.beat().await || fresh || due {
                w.take_leases().await.unwrap();
                self.last_take.lock().unwrap()[i] = Some(Instant::now());
            }
            // The dispatcher's part: handoffs the worker knows of are settled.
            w.settle_handoffs().await;
        }
    }

    /// `n` steps, one after the other.
    async fn steps(&self, n: usize) {
        for _ in 0..n {
            self.step().await;
        }
    }

    fn held(&self, i: usize) -> Vec<String> {
        self.workers[i].held_lease_keys()
    }

    fn counts(&self) -> Vec<usize> {
        (0..self.workers.len())
            .filter(|i| self.running[*i])
            .map(|i| self.held(i).len())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_workers_leases_are_taken_within_the_failover_time() {
    // Fresh workers take everything free, then hand the surplus over, leases pending a
    // handoff moving at a later taker round: a minute.
    let mut f = Fleet::new(3, 12).await;
    f.steps(30).await;
    assert_eq!(f.counts(), [4, 4, 4]);
    let dead = f.held(2);
    f.running[2] = false;
    let killed = Instant::now();
    let mut taken_at = None;
    for _ in 0..20 {
        f.step().await;
        let survivors: HashSet<String> = f.held(0).into_iter().chain(f.held(1)).collect();
        if dead.iter().all(|k| survivors.contains(k)) {
            taken_at = Some(killed.elapsed());
            break;
        }
    }
    let taken_at = taken_at.expect("taken over");
    assert!(taken_at <= FAILOVER, "taken {taken_at:?} after the death");
    assert!(
        taken_at >= LeaseConfig::new(FAILOVER).silence_threshold() - Duration::from_secs(3),
        "not before the worker could be silent: {taken_at:?}"
    );
    assert_eq!(f.counts(), [6, 6]);
    assert_eq!(f.fleet.workers(), ["worker-0", "worker-1"], "declared gone");
}

#[tokio::test(start_paused = true)]
async fn a_newcomer_takes_its_share_at_its_first_round_and_the_others_let_go_at_their_next_beat() {
    let mut f = Fleet::new(3, 8).await;
    f.steps(30).await;
    let mut before = f.counts();
    before.sort();
    assert_eq!(before, [2, 3, 3]);
    let new = f.join();
    f.step().await;
    assert_eq!(f.held(new).len(), 2, "its share at its first round");
    // The victims were told: after their next beat nobody holds a lease twice.
    f.step().await;
    let mut all: Vec<String> = (0..4).flat_map(|i| f.held(i)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8);
    assert_eq!(f.counts().iter().sum::<usize>(), 8, "{:?}", f.counts());
    // Settled: more steps move nothing.
    let settled = f.counts();
    f.steps(10).await;
    assert_eq!(f.counts(), settled);
}

#[tokio::test(start_paused = true)]
async fn an_outage_shorter_than_the_fence_time_moves_no_lease() {
    let f = Fleet::new(2, 6).await;
    f.steps(3).await;
    let before: Vec<Vec<String>> = (0..2).map(|i| f.held(i)).collect();
    f.fleet.set_unavailable(true);
    // A heartbeat (2 s) without a beat landing anywhere: less than the 6.8 s after which a
    // worker gives its leases up.
    f.step().await;
    f.fleet.set_unavailable(false);
    f.steps(8).await;
    let after: Vec<Vec<String>> = (0..2).map(|i| f.held(i)).collect();
    assert_eq!(after, before, "no lease moved");
}

#[tokio::test(start_paused = true)]
async fn a_worker_cut_off_gives_its_leases_up_before_anyone_may_take_them() {
    let f = Fleet::new(1, 3).await;
    f.step().await;
    let held = tenures(&f.workers[0]);
    assert_eq!(held.len(), 3);
    f.fleet.set_unavailable(true);
    // Its last beat was sent at the first step: it fences 6.8 s later (failover − 1.6
    // heartbeats), before any other worker could declare it gone (7 s after that beat at
    // the earliest: the silence threshold, counted from up to a heartbeat before).
    f.steps(3).await;
    assert!(held.iter().all(|h| !h.is_lost()), "not yet (6 s)");
    f.step().await;
    assert!(held.iter().all(|h| h.is_lost()), "fenced (8 s)");
}

#[tokio::test(start_paused = true)]
async fn a_worker_declared_gone_while_alive_loses_everything_and_comes_back() {
    let f = Fleet::new(2, 4).await;
    f.steps(3).await;
    let victim = tenures(&f.workers[1]);
    assert!(!victim.is_empty());
    // Someone removed worker-1's entry (as a survivor does to a silent worker).
    let beat = f
        .fleet
        .beat("probe", &[], 0, &[], None)
        .await
        .unwrap()
        .unwrap()
        .beats["worker-1"];
    assert!(f.fleet.remove("worker-1", beat).await.unwrap());
    assert!(f.fleet.remove("probe", 0).await.unwrap());
    f.step().await;
    assert!(victim.iter().all(|h| h.is_lost()), "lost at its next beat");
    f.steps(4).await;
    assert_eq!(f.counts().iter().sum::<usize>(), 4);
    assert!(
        f.fleet.workers().contains(&"worker-1".to_owned()),
        "registered again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_lease_deleted_from_the_table_stops_counting_as_held() {
    // One worker at its target: 2 leases of 2. A shard ends and its lease is deleted, a
    // child appears: the deleted one must not keep the child from being taken.
    let f = Fleet::new(1, 2).await;
    f.step().await;
    let w = &f.workers[0];
    let held = w.held_lease("shardId-000000000000").unwrap();
    held.checkpoint(&Checkpoint::ShardEnd, &[]).await.unwrap();
    assert!(f
        .leases
        .delete_finished_lease("shardId-000000000000")
        .await
        .unwrap());
    let child = Lease::new("shardId-000000000002", Checkpoint::TrimHorizon);
    f.leases.create_lease_if_not_exists(&child).await.unwrap();
    w.take_leases().await.unwrap();
    assert!(held.is_lost());
    assert_eq!(
        w.held_lease_keys(),
        ["shardId-000000000001", "shardId-000000000002"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dynamodb_that_never_answers_does_not_keep_a_worker_from_fencing() {
    let f = Fleet::new(1, 2).await;
    f.step().await;
    let held = tenures(&f.workers[0]);
    f.fleet.set_hanging(true);
    // Beats time out after a heartbeat interval each; after the failover time the
    // worker gives its leases up.
    for _ in 0..8 {
        tokio::time::advance(LeaseConfig::new(FAILOVER).heartbeat_interval).await;
        f.workers[0].beat().await;
    }
    assert!(held.iter().all(|h| h.is_lost()), "fenced");
}

#[tokio::test(start_paused = true)]
async fn a_beat_whose_answer_was_lost_is_not_taken_for_a_removal() {
    let f = Fleet::new(1, 2).await;
    f.step().await;
    let held = tenures(&f.workers[0]);
    // The beat lands but its answer is lost; the next one accepts it as current.
    f.fleet.lose_next_answer();
    f.step().await;
    f.step().await;
    f.step().await;
    assert!(held.iter().all(|h| !h.is_lost()), "still holding");
    assert_eq!(f.fleet.workers(), ["worker-0"]);
}

// ---------------------------------------------------------------------------------------
// Review: fault scenarios. Each worker reaches the shared fleet through its own `Faulty`
// wrapper, so that one worker's fleet calls can fail, hang, be slow, or land with their
// response lost, while the others' work.
// ---------------------------------------------------------------------------------------

use std::sync::Mutex as StdMutex;

use async_trait::async_trait;

use crate::leases::fleet::{FleetView, WorkerLoad};

/// How a worker's fleet calls behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As the shared store answers.
    Ok,
    /// Every call fails at once (an outage, access denied, a missing table).
    Fail,
    /// Every call waits this long before it reaches the store (a slow DynamoDB, a call
    /// retried by the SDK with backoff).
    Latency(Duration),
    /// Every call hangs this long and then fails (no response, no timeout).
    HangThenFail(Duration),
    /// The next beat lands, but its response is lost (the caller gets an error); then Ok.
    LandThenLoseResponse,
    /// Only notices fail (or the thief crashed right after its steal).
    NotifyFails,
}

#[derive(Debug)]
struct Faulty {
    inner: Arc<MemoryFleetStore>,
    mode: StdMutex<Mode>,
}

impl Faulty {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    fn error(operation: &'static str) -> Error {
        Error::DynamoDb {
            operation,
            table: "faulty fleet".into(),
            message: "injected (test)".into(),
            retryable: true,
            throttled: false,
        }
    }

    /// What happens before the call reaches the store.
    async fn before(&self, operation: &'static str) -> Result<(), Error> {
        match self.mode() {
            Mode::Ok | Mode::LandThenLoseResponse | Mode::NotifyFails => Ok(()),
            Mode::Fail => Err(Self::error(operation)),
            Mode::Latency(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Mode::HangThenFail(d) => {
                tokio::time::sleep(d).await;
                Err(Self::error(operation))
            }
        }
    }
}

#[async_trait]
impl FleetStore for Faulty {
    async fn beat(
        &self,
        worker: &str,
        previous: &[u64],
        next: u64,
        handled: &[String],
        load: Option<WorkerLoad>,
    ) -> Result<Option<FleetView>, Error> {
        self.before("UpdateItem").await?;
        let out = self.inner.beat(worker, previous, next, handled, load).await;
        if self.mode() == Mode::LandThenLoseResponse {
            self.set(Mode::Ok);
            return Err(Self::error("UpdateItem"));
        }
        out
    }

    async fn read(&self) -> Result<FleetView, Error> {
        self.before("GetItem").await?;
        self.inner.read().await
    }

    async fn remove(&self, worker: &str, beat: u64) -> Result<bool, Error> {
        self.before("UpdateItem").await?;
        self.inner.remove(worker, beat).await
    }

    async fn notify(&self, worker: &str, notice: &str) -> Result<bool, Error> {
        if self.mode() == Mode::NotifyFails {
            return Err(Self::error("UpdateItem"));
        }
        self.before("UpdateItem").await?;
        self.inner.notify(worker, notice).await
    }
}

/// Workers on shared memory stores, each with its own fault switch.
struct Rig {
    leases: Arc<MemoryLeaseStore>,
    fleet: Arc<MemoryFleetStore>,
    faults: Vec<Arc<Faulty>>,
    workers: Vec<Arc<LeaseCoordinator>>,
    running: Vec<bool>,
    /// When each worker's taker last ran (the taker also runs every taker_interval).
    last_take: StdMutex<Vec<Option<Instant>>>,
}

impl Rig {
    async fn new(n: usize, shards: usize) -> Self {
        let leases = fresh_table(shards).await;
        let mut rig = Self {
            leases,
            fleet: Arc::new(MemoryFleetStore::new()),
            faults: Vec::new(),
            workers: Vec::new(),
            running: Vec::new(),
            last_take: StdMutex::new(Vec::new()),
        };
        for i in 0..n {
            rig.join(&format!("worker-{i}"), LeaseConfig::new(FAILOVER));
        }
        rig
    }

    fn config() -> LeaseConfig {
        let mut config = LeaseConfig::new(FAILOVER);
        // As the scheduler sets it with heartbeats.
        config.max_leases_to_steal_at_one_time = usize::MAX;
        config
    }

    fn join(&mut self, id: &str, mut config: LeaseConfig) -> usize {
        config.max_leases_to_steal_at_one_time = usize::MAX;
        let faulty = Arc::new(Faulty {
            inner: self.fleet.clone(),
            mode: StdMutex::new(Mode::Ok),
        });
        let w = LeaseCoordinator::new(self.leases.clone() as Arc<dyn LeaseStore>, id, config)
            .with_fleet(faulty.clone());
        self.faults.push(faulty);
        self.workers.push(Arc::new(w));
        self.running.push(true);
        self.last_take.lock().unwrap().push(None);
        self.workers.len() - 1
    }

    /// One heartbeat interval, as `Fleet::step`, but the taker also runs when its
    /// taker_interval has passed (as `run_taker` does).
    async fn step(&self) {
        tokio::time::advance(Self::config().heartbeat_interval).await;
        for (i, w) in self.workers.iter().enumerate() {
            if !self.running[i] {
                continue;
            }
            let fresh = w.heartbeat.as_ref().is_some_and(|h| !h.has_looked());
            let due = self.last_take.lock().unwrap()[i]
                .is_none_or(|t| t.elapsed() >= w.config().taker_interval);
            if w.beat().await || fresh || due {
                let _ = w.take_leases().await;
                self.last_take.lock().unwrap()[i] = Some(Instant::now());
            }
            // The dispatcher's part: handoffs the worker knows of are settled.
            w.settle_handoffs().await;
        }
    }

    /// `n` steps, one after the other.
    async fn steps(&self, n: usize) {
        for _ in 0..n {
            self.step().await;
        }
    }

    /// Keys processed (held, and not waiting for a handoff to it) by more than one
    /// running worker at once.
    fn processed_twice(&self) -> Vec<String> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, w) in self.workers.iter().enumerate() {
            if !self.running[i] {
                continue;
            }
            for (k, h) in w.held_leases() {
                if !matches!(h.standing_now(), Some(Standing::Incoming { .. })) {
                    *seen.entry(k).or_default() += 1;
                }
            }
        }
        more_than_once(seen)
    }

    fn held(&self, i: usize) -> Vec<String> {
        self.workers[i].held_lease_keys()
    }

    /// Keys held (a tenure not lost) by more than one running worker at once.
    fn held_twice(&self) -> Vec<String> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for i in 0..self.workers.len() {
            for k in self.held(i) {
                *seen.entry(k).or_default() += 1;
            }
        }
        more_than_once(seen)
    }

    /// Spawns every worker's renewer (heartbeats) and taker, as `Background` does.
    fn spawn(&self) -> Vec<Vec<tokio::task::JoinHandle<()>>> {
        self.workers
            .iter()
            .map(|w| {
                let wake = Arc::new(tokio::sync::Notify::new());
                let cancel = CancellationToken::new();
                let (r, t) = (w.clone(), w.clone());
                let (c1, c2, w1, w2) = (cancel.clone(), cancel, wake.clone(), wake);
                vec![
                    tokio::spawn(async move { r.run_renewer(c1, w1).await }),
                    tokio::spawn(async move { t.run_taker(c2, w2).await }),
                ]
            })
            .collect()
    }
}

/// Fault: the survivors take a worker's leases before that worker gives them up. A worker
/// whose beats fail (its path to the fleet table is down, it is throttled) but which still
/// runs is declared gone once its beat stood still for failover − heartbeat, counted from
/// `since`, which may lie a heartbeat before the look that saw the beat; it fences itself
/// only when no beat landed for the whole failover time, counted from when its last beat
/// was sent, and only at a beat. In between both hold (and process) the same shards: here
/// 2.5 s, up to two heartbeats depending on phase. The Java rule starts the taker's clock
/// no earlier than the owner's, so the owner always gives up first.
#[tokio::test(start_paused = true)]
async fn review_a_worker_whose_beats_fail_is_taken_over_before_it_fences_itself() {
    let rig = Rig::new(2, 4).await;
    rig.steps(4).await;
    let mine = tenures(&rig.workers[1]);
    assert_eq!(mine.len(), 2);
    rig.faults[1].set(Mode::Fail);
    let cut = Instant::now();
    let mut overlap: Option<(Duration, Vec<String>)> = None;
    while !mine.iter().all(|h| h.is_lost()) {
        assert!(cut.elapsed() < FAILOVER * 2, "never fenced");
        rig.step().await;
        let twice = rig.held_twice();
        if !twice.is_empty() && overlap.is_none() && !mine.iter().all(|h| h.is_lost()) {
            overlap = Some((cut.elapsed(), twice));
        }
    }
    let fenced_at = cut.elapsed();
    assert_eq!(
        overlap, None,
        "the survivor held the cut-off worker's leases (at, keys) before it fenced itself at {fenced_at:?}"
    );
}

/// Fault: fencing is undone at once. A worker that could not beat for the failover time
/// gives every lease up, but the fence wakes its taker, which takes leases again (its own
/// as "an earlier life", or steals from the survivor, whom it counts from a stale view)
/// while its beats still fail: it holds leases nobody can see it is alive for, the
/// survivor (who already took them, seeing it gone) is not told (the notice fails too),
/// and the survivor takes them back at its next round (the owner departed): a steal loop
/// with both holding the same shards for up to a taker interval each time. `fenced` is
/// set once per outage, so it never fences again.
#[tokio::test(start_paused = true)]
async fn review_a_fenced_worker_that_still_cannot_beat_takes_leases_again() {
    let rig = Rig::new(2, 4).await;
    rig.steps(4).await;
    rig.faults[1].set(Mode::Fail);
    // 4 heartbeats: the failover time without a beat, the fence.
    rig.steps(4).await;
    let mut held_while_cut_off = Vec::new();
    let mut twice = Vec::new();
    for _ in 0..12 {
        rig.step().await;
        let cut_off = Instant::now();
        held_while_cut_off.extend(rig.held(1).into_iter().map(|k| (cut_off, k)));
        twice.extend(rig.held_twice());
    }
    twice.sort();
    twice.dedup();
    assert!(
        held_while_cut_off.is_empty(),
        "held by a worker that could not beat for {FAILOVER:?} and more: {} tenures; held by both workers at once: {twice:?}",
        held_while_cut_off.len()
    );
}

/// Fault: a heartbeat whose write landed but whose response was lost (a timeout, a reset
/// connection; or, within one call, the SDK's own retry of an attempt that had landed)
/// leaves this worker with a `current` beat the item no longer holds, so its next beat is
/// refused and it concludes it was declared gone: it drops every lease, though nobody
/// removed it. The shards restart elsewhere or here from their checkpoints.
#[tokio::test(start_paused = true)]
async fn review_a_beat_that_landed_with_its_response_lost_drops_every_lease() {
    let rig = Rig::new(2, 4).await;
    rig.steps(4).await;
    let mine = tenures(&rig.workers[1]);
    assert_eq!(mine.len(), 2);
    rig.faults[1].set(Mode::LandThenLoseResponse);
    rig.steps(3).await;
    assert_eq!(
        rig.fleet.workers(),
        ["worker-0", "worker-1"],
        "nobody removed worker-1"
    );
    let lost = mine.iter().filter(|h| h.is_lost()).count();
    assert_eq!(lost, 0, "leases dropped after one lost response");
}

/// Fault: a worker that has never read the fleet (its first beats fail: no access to the
/// `-Workers` table, an outage at start) judges every fleet worker's leases by the Java
/// counter rule, and fleet workers no longer renew: after the failover time it finds all
/// of them expired and takes its share of leases that healthy workers hold and process,
/// without telling them (a take, not a steal). It goes on while its beats fail.
#[tokio::test(start_paused = true)]
async fn review_a_worker_that_never_beat_takes_live_workers_leases_by_the_counter_rule() {
    let mut rig = Rig::new(2, 8).await;
    rig.steps(4).await;
    assert_eq!(rig.held(0).len() + rig.held(1).len(), 8);
    let late = rig.join("worker-2", LeaseConfig::new(FAILOVER));
    rig.faults[late].set(Mode::Fail);
    rig.steps(12).await;
    assert_eq!(rig.fleet.workers(), ["worker-0", "worker-1"]);
    assert_eq!(
        rig.held(late),
        Vec::<String>::new(),
        "taken from live workers by a worker that never beat; held by two at once: {:?}",
        rig.held_twice()
    );
}

/// Fault: a worker alive and beating, whose fleet calls are slow (3 s each: throttling and
/// the SDK's backoff, a congested network), is declared gone. It beats every
/// heartbeat_interval + latency (5.5 s, well under the 7.5 s silence threshold; 2.5 s
/// passes, 3 s fails), but the others
/// count its silence from a `since` that lies up to a heartbeat before the beat landed, and
/// the beat in flight lands after the removal: refused, every lease lost, registered again,
/// over and over.
#[tokio::test(start_paused = true)]
async fn review_a_worker_with_slow_fleet_calls_is_declared_gone_while_alive() {
    let rig = Rig::new(2, 4).await;
    let tasks = rig.spawn();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(rig.held(0).len() + rig.held(1).len(), 4);
    let mut lost_by_slow = 0;
    let mut removed = 0;
    let mut twice = 0;
    let mut watched: Vec<Arc<HeldLease>> = Vec::new();
    // DynamoDB answering in 1.5 s (15 % of the failover time; beyond about 22 % a worker
    // can no longer prove itself alive in time and fences itself: safe, not tested here).
    rig.faults[1].set(Mode::Latency(Duration::from_millis(1_500)));
    for _ in 0..240 {
        if !rig.fleet.workers().contains(&"worker-1".to_owned()) {
            removed += 1;
        }
        if !rig.held_twice().is_empty() {
            twice += 1;
        }
        for (_, h) in rig.workers[1].held_leases() {
            if !watched.iter().any(|w| Arc::ptr_eq(w, &h)) {
                watched.push(h);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lost_by_slow += watched.iter().filter(|h| h.is_lost()).count();
    for t in tasks.into_iter().flatten() {
        t.abort();
    }
    assert_eq!(
        lost_by_slow, 0,
        "tenures of the slow but alive worker lost within 60 s (sampled every 250 ms: its entry removed {removed} times, a lease held by both {twice} times)"
    );
}

/// Fault: when every fleet call takes longer than the heartbeat interval (3 s here, 2.5 s
/// by default; 250 ms with a 1 s failover), every look comes more than two heartbeats after
/// the one before, so every look is "blind" and resets every silence: a dead worker is
/// never declared gone, stays registered, and its leases are never taken (a registered
/// owner's leases never expire by counter either). Its shards stop for good.
#[tokio::test(start_paused = true)]
async fn review_a_dead_worker_is_never_declared_gone_when_the_fleet_is_slower_than_a_heartbeat() {
    let rig = Rig::new(2, 4).await;
    for f in &rig.faults {
        f.set(Mode::Latency(Duration::from_millis(1_500)));
    }
    let tasks = rig.spawn();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(rig.held(0).len() + rig.held(1).len(), 4);
    let dead = rig.held(1);
    assert!(!dead.is_empty());
    for t in &tasks[1] {
        t.abort();
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    let survivor = rig.held(0);
    let orphaned: Vec<&String> = dead.iter().filter(|k| !survivor.contains(k)).collect();
    let registered = rig.fleet.workers();
    for t in tasks.into_iter().flatten() {
        t.abort();
    }
    assert!(
        orphaned.is_empty(),
        "120 s after worker-1 died its leases {orphaned:?} are still not taken; fleet: {registered:?}"
    );
}

/// Fault: self-fencing is judged only when a beat call returns. A worker whose beat call
/// hangs (no response; the SDK sets no operation timeout by default) keeps every lease and
/// its consumers keep running for as long as the call hangs, while the others, seeing it
/// silent, declare it gone and take its leases after the failover time.
#[tokio::test(start_paused = true)]
async fn review_a_hung_beat_call_keeps_the_worker_from_fencing() {
    let rig = Rig::new(2, 4).await;
    let tasks = rig.spawn();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mine = tenures(&rig.workers[1]);
    assert!(!mine.is_empty());
    rig.faults[1].set(Mode::HangThenFail(Duration::from_secs(120)));
    let cut = Instant::now();
    // Well past the failover time (plus a heartbeat, the granularity of beats).
    tokio::time::sleep(FAILOVER * 2).await;
    let still_held = mine.iter().filter(|h| !h.is_lost()).count();
    let twice = rig.held_twice();
    let elapsed = cut.elapsed();
    for t in tasks.into_iter().flatten() {
        t.abort();
    }
    assert_eq!(
        still_held, 0,
        "{elapsed:?} after its beats stopped landing the worker still holds its leases; held by both: {twice:?}"
    );
}

/// A lease store whose scans fail (no `Scan` permission, a throttled table); every other
/// call goes through.
#[derive(Debug)]
struct ScanFails(Arc<MemoryLeaseStore>);

#[async_trait]
impl LeaseStore for ScanFails {
    async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
        Err(Faulty::error("Scan"))
    }
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
        self.0.get_lease(lease_key).await
    }
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
        self.0.create_lease_if_not_exists(lease).await
    }
    async fn update_lease(&self, update: &crate::leases::LeaseUpdate) -> Result<bool, Error> {
        self.0.update_lease(update).await
    }
    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
        self.0.delete_finished_lease(lease_key).await
    }
    async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.0.delete_lease(lease).await
    }
}

/// Fault (stuck shards): a worker that beats but cannot take leases (its scans fail; or
/// its taker is stuck) is counted by every other worker as an alive worker with a full
/// share, so the others aim at fewer leases than there are, and new leases (here four
/// child shards) stay unowned for as long as it beats. Without a fleet (the Java rule) only lease owners count and the
/// healthy worker takes everything.
#[tokio::test(start_paused = true)]
async fn review_an_alive_worker_that_cannot_take_leaves_its_share_unowned() {
    let mut rig = Rig::new(1, 4).await;
    let broken = LeaseCoordinator::new(
        Arc::new(ScanFails(rig.leases.clone())) as Arc<dyn LeaseStore>,
        "worker-broken",
        Rig::config(),
    )
    .with_fleet(rig.fleet.clone());
    rig.workers.push(Arc::new(broken));
    rig.running.push(true);
    rig.last_take.lock().unwrap().push(None);
    rig.steps(8).await;
    assert_eq!(rig.held(0).len(), 4);
    // New shards (a resharding): their leases appear unowned.
    for i in 4..8 {
        let lease = Lease::new(format!("shardId-{i:012}"), Checkpoint::TrimHorizon);
        rig.leases.create_lease_if_not_exists(&lease).await.unwrap();
    }
    rig.steps(40).await;
    let unowned: Vec<String> = rig
        .leases
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.owner.is_none())
        .map(|l| l.lease_key)
        .collect();
    assert_eq!(
        unowned,
        Vec::<String>::new(),
        "unowned after 100 s; the healthy worker holds {:?}",
        rig.held(0)
    );
}

/// Fault (flapping): a worker restarted under the same worker id (a fixed id such as a
/// pod or host name) while its previous process is still shutting down gracefully (taker
/// stopped, heartbeats going on while processors finish, up to shutdown_timeout, 60 s by
/// default). The new process registers over the old entry; the old process's next beat is
/// refused, it re-registers over the new one; the new one's beat is refused, it drops every
/// lease and takes them back as "an earlier life"; and so on every heartbeat.
#[tokio::test(start_paused = true)]
async fn review_a_restart_under_the_same_id_flaps_while_the_old_process_shuts_down() {
    let mut rig = Rig::new(2, 4).await;
    rig.steps(4).await;
    // The old worker-1 stops taking (graceful shutdown begins) but beats; the new worker-1
    // starts.
    let old = rig.workers[1].clone();
    old.begin_leaving().await;
    rig.running[1] = false;
    let new = rig.join("worker-1", LeaseConfig::new(FAILOVER));
    let mut tenures: Vec<Arc<HeldLease>> = Vec::new();
    for _ in 0..16 {
        rig.step().await;
        old.beat().await;
        for (_, h) in rig.workers[new].held_leases() {
            if !tenures.iter().any(|t| Arc::ptr_eq(t, &h)) {
                tenures.push(h);
            }
        }
    }
    let lost = tenures.iter().filter(|h| h.is_lost()).count();
    assert_eq!(
        lost,
        0,
        "the new process lost {lost} of its {} tenures within 40 s",
        tenures.len()
    );
}

/// A handoff whose notice does not arrive (the call failed, or the thief crashed right
/// after its write) is found by the victim at its next taker scan (a taker interval at
/// most) instead of its next beat; meanwhile the victim keeps processing and the thief
/// waits (it starts nothing while `checkpointOwner` is set), so no lease is processed by
/// two workers at any step.
#[tokio::test(start_paused = true)]
async fn review_a_lost_handoff_notice_delays_the_move_but_never_doubles_processing() {
    let mut rig = Rig::new(2, 8).await;
    rig.steps(10).await;
    let new = rig.join("worker-2", LeaseConfig::new(FAILOVER));
    rig.faults[new].set(Mode::NotifyFails);
    rig.step().await;
    let handed: Vec<String> = rig.workers[new]
        .held_leases()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(!handed.is_empty(), "handoffs started without notices");
    assert!(rig.processed_twice().is_empty());
    rig.faults[new].set(Mode::Ok);
    let started = Instant::now();
    let mut moved_after = None;
    for _ in 0..15 {
        rig.step().await;
        assert!(
            rig.processed_twice().is_empty(),
            "{:?}",
            rig.processed_twice()
        );
        let all_started = handed.iter().all(|k| {
            rig.workers[new]
                .held_lease(k)
                .is_some_and(|h| h.standing_now() == Some(Standing::Held))
        });
        if all_started {
            moved_after = Some(started.elapsed());
            break;
        }
    }
    let moved_after = moved_after.expect("handed over");
    assert!(
        moved_after <= Rig::config().taker_interval + Rig::config().heartbeat_interval,
        "{moved_after:?}"
    );
    assert!(rig.held_twice().is_empty());
    let table = rig.leases.list_leases().await.unwrap();
    assert!(
        table.iter().all(|l| l.checkpoint_owner.is_none()),
        "{table:?}"
    );
}

/// Fault (shutdown ordering): `release_all` releases, then leaves the fleet; the renewer
/// is stopped only afterwards. A beat that starts while the removal is in flight waits for
/// the state lock, finds `current = None` and registers the worker again, after it left:
/// a ghost entry that every other worker counts as an alive worker (so they aim at a
/// smaller share and leave some released leases unowned) until it is declared gone, a
/// failover time later. Here the fleet answers in 2 s; with a 10 ms call it happens on
/// about one shutdown in 250.
#[tokio::test(start_paused = true)]
async fn review_a_beat_during_leave_registers_the_departing_worker_again() {
    let rig = Rig::new(1, 2).await;
    rig.faults[0].set(Mode::Latency(Duration::from_secs(2)));
    let w = rig.workers[0].clone();
    let cancel = CancellationToken::new();
    let renewer = {
        let (w, c) = (w.clone(), cancel.clone());
        tokio::spawn(async move { w.run_renewer(c, Arc::new(tokio::sync::Notify::new())).await })
    };
    // Beat at 0 lands at 2 s; the next starts at 4.5 s.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(rig.fleet.workers(), ["worker-0"]);
    // The scheduler's shutdown: release_all, then stop the renewer and wait for it.
    w.release_all().await;
    cancel.cancel();
    renewer.await.unwrap();
    assert_eq!(
        rig.fleet.workers(),
        Vec::<String>::new(),
        "still registered after leaving and stopping"
    );
}

fn no_processor(_: &str) -> Box<dyn crate::processor::RecordProcessor> {
    unreachable!("not called")
}

/// Fault (pure): the builder accepts a lease table name up to DynamoDB's 255 characters,
/// but the fleet table is named `<lease table>-Workers`, 8 characters longer: with
/// heartbeats on (the default) a name of 248 to 255 characters builds, then every start
/// fails on an invalid fleet table name (a validation error: not retried, `run` returns
/// it), where it worked before heartbeats.
#[test]
fn review_a_valid_lease_table_name_can_make_an_invalid_fleet_table_name() {
    let dconf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .build();
    let kconf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .build();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(dconf);
    let kinesis = aws_sdk_kinesis::Client::from_conf(kconf);
    let name = "a".repeat(250);
    let built = crate::Scheduler::builder(name.clone(), "stream", no_processor)
        .with_clients(kinesis, dynamodb.clone())
        .build();
    assert!(built.is_ok(), "the builder accepts it: {built:?}");
    let fleet = crate::leases::FleetTable::for_lease_table(dynamodb, &name);
    assert!(
        fleet.table_name().len() <= 255,
        "fleet table name of {} characters",
        fleet.table_name().len()
    );
}

/// Balancing throughput with heartbeats: the figures reach the table with the drift
/// refreshes alone (no checkpoints here), the hot lease ends alone on its worker, and once
/// loads hold still the workers write nothing but their scans.
#[tokio::test(start_paused = true)]
async fn balancing_throughput_the_hot_lease_ends_alone_and_steady_loads_write_nothing() {
    let leases = fresh_table(4).await;
    let fleet = Arc::new(MemoryFleetStore::new());
    let config = LeaseConfig {
        balancing: Balancing::throughput(),
        max_leases_to_steal_at_one_time: usize::MAX,
        ..LeaseConfig::new(FAILOVER)
    };
    let ws: Vec<LeaseCoordinator> = (0..2)
        .map(|i| {
            LeaseCoordinator::new(
                leases.clone() as Arc<dyn LeaseStore>,
                format!("worker-{i}"),
                config.clone(),
            )
            .with_fleet(fleet.clone())
        })
        .collect();
    for w in &ws {
        w.beat().await;
    }
    for w in &ws {
        w.take_leases().await.unwrap();
    }
    // The first to take took everything; the steals reach it at its next beat.
    for w in &ws {
        w.beat().await;
    }
    let held = |i: usize| ws[i].held_lease_keys();
    assert_eq!(
        (held(0).len(), held(1).len()),
        (2, 2),
        "nothing measured: by count"
    );
    let hot = "shardId-000000000000";
    // One taker interval: beats every heartbeat, bytes read at 80 KiB/s on the hot shard
    // and 10 KiB/s on the others, then a taker round on each worker.
    let interval = || async {
        let mut elapsed = Duration::ZERO;
        while elapsed < config.taker_interval {
            tokio::time::advance(config.heartbeat_interval).await;
            elapsed += config.heartbeat_interval;
            for w in &ws {
                w.beat().await;
                for (key, lease) in w.held_leases() {
                    let kib_per_s = if key == hot { 80 } else { 10 };
                    let secs = config.heartbeat_interval.as_secs() as usize;
                    lease.throughput().record(kib_per_s * 1024 * secs);
                }
            }
        }
        for w in &ws {
            w.take_leases().await.unwrap();
        }
        for w in &ws {
            w.beat().await;
            w.settle_handoffs().await;
        }
        for w in &ws {
            w.settle_handoffs().await;
        }
    };
    for _ in 0..6 {
        interval().await;
    }
    let (holder, other) = if held(0).contains(&hot.to_owned()) {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(held(holder), vec![hot.to_owned()], "{:?}", held(other));
    assert_eq!(held(other).len(), 3);
    let stored = leases.get_lease(hot).await.unwrap().unwrap();
    let kbps = stored.throughput.expect("written by the refresh").kbps();
    assert!((40.0..=80.0).contains(&kbps), "{kbps}");
    // Loads hold still: each round costs its scan, nothing more, and nothing moves.
    let before = leases.calls();
    for _ in 0..3 {
        interval().await;
    }
    assert_eq!(
        leases.calls() - before,
        2 * 3,
        "one scan per worker per round"
    );
    assert_eq!(held(holder), vec![hot.to_owned()]);
}
