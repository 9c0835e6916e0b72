//! [`Heartbeat`]: a coordinator's side of the fleet (see `leases::fleet`): its beats, what
//! they showed of the others, and the fleet writes that go with takes and shutdown.
//!
//! ```text
//!  beat() ─▶ FleetStore::beat(me, current, next, handled notices)
//!    view ─▶ Liveness::observe ─▶ wake the taker if someone departed or fell silent
//!         ─▶ notices for me ─▶ BeatOutcome::Beat { taken } (the coordinator loses them,
//!            or reads them: a graceful handoff)
//!    refused ─▶ BeatOutcome::Refused (declared gone: lose everything, register again)
//!    error, or no answer before the fence is due ─▶ BeatOutcome::Failed { fence }:
//!      fence once no beat landed for silence − 1.1 × interval (before anyone can take
//!      over: 6.8 s at the default 10 s failover);
//!      while fenced, nothing is taken
//!  declare_gone(w, beat) ─▶ FleetStore::remove ─▶ Liveness::forget
//!  notify_taken(victim, lease, counter) ─▶ FleetStore::notify
//!  leave() ─▶ FleetStore::remove(me)
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::lease_config::LeaseConfig;
use crate::error::Error;
use crate::leases::fleet::{parse_taken_notice, taken_notice, FleetStore, Liveness, LoadMeter};
use crate::metric_names as m;

/// How long without a landed beat fences a worker: a tenth of an interval less than the
/// earliest another worker can declare it gone.
fn fence_after(config: &LeaseConfig) -> Duration {
    config
        .silence_threshold()
        .saturating_sub(config.heartbeat_interval + config.heartbeat_interval / 10)
}

/// How many beats that may have landed unseen are remembered (more than fit in the
/// failover time at the default interval).
const MAX_UNCERTAIN: usize = 8;

/// What one beat showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BeatOutcome {
    /// The beat landed.
    Beat {
        /// Leases taken from this worker (key, counter the take left).
        taken: Vec<(String, u64)>,
        /// Whether the taker should look now: a worker departed or fell silent.
        wake: bool,
    },
    /// This worker's entry was removed by another: it was declared gone, and its leases
    /// are being taken. The next beat registers it again.
    Refused,
    /// The beat failed; `fence` once no beat has landed for the failover time (the
    /// others may have declared this worker gone by then).
    Failed {
        /// Whether to give every lease up now.
        fence: bool,
    },
}

/// This worker's beat as last written.
#[derive(Debug)]
struct BeatState {
    /// The heartbeat last written (none: not registered).
    current: Option<u64>,
    /// Heartbeats sent since that failed or timed out (the last few): each may have
    /// landed, so the next beat accepts any of them as the current one too.
    uncertain: Vec<u64>,
    /// Notices read at the last beat, deleted by the next.
    handled: Vec<String>,
    /// When the last beat that landed was sent.
    last_landed: Instant,
    /// Whether the leases were already given up since that beat (or no beat landed yet):
    /// no lease is taken while fenced.
    fenced: bool,
    /// Set once the worker is leaving (graceful shutdown): it never registers again.
    leaving: bool,
}

/// A coordinator's heartbeats; see the module docs.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    /// Where the fleet lives.
    store: Arc<dyn FleetStore>,
    /// This worker's id.
    me: String,
    /// How often to beat, and the silences that count.
    interval: Duration,
    /// A heartbeat standing still this long means its worker is gone.
    silence: Duration,
    /// No beat landing for this long (from its sending) fences this worker: less than the
    /// earliest another worker can declare it gone (silence − interval, counted from the
    /// earliest its last beat can have landed), so it always stops first.
    fence_after: Duration,
    /// The longest a beat call may take once fenced.
    failover: Duration,
    /// The others, as seen.
    liveness: SyncMutex<Liveness>,
    /// What this worker's shard consumers read, reported with each beat (none: no load is
    /// published).
    load: Option<Arc<LoadMeter>>,
    /// This worker's own beat; the async mutex keeps beats from overlapping.
    state: Mutex<BeatState>,
}

impl Heartbeat {
    /// Heartbeats of `me` in `store`, timed by `config`.
    pub(crate) fn new(store: Arc<dyn FleetStore>, me: &str, config: &LeaseConfig) -> Self {
        Self {
            store,
            me: me.to_owned(),
            interval: config.heartbeat_interval,
            silence: config.silence_threshold(),
            fence_after: fence_after(config),
            failover: config.failover_time,
            liveness: SyncMutex::new(Liveness::new(
                config.heartbeat_interval,
                fence_after(config),
            )),
            load: None,
            state: Mutex::new(BeatState {
                current: None,
                uncertain: Vec::new(),
                handled: Vec::new(),
                last_landed: Instant::now(),
                fenced: true,
                leaving: false,
            }),
        }
    }

    /// Publishes what `meter` counts with every beat.
    pub(crate) fn with_load_meter(mut self, meter: Arc<LoadMeter>) -> Self {
        self.load = Some(meter);
        self
    }

    /// How often to beat.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness.lock().expect("not poisoned")
    }

    /// Creates the fleet table if needed.
    ///
    /// # Cancellation
    /// Safe to drop.
    pub(crate) async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        self.store.create_table_if_not_exists().await
    }

    /// Beats once; see [`BeatOutcome`].
    ///
    /// # Cancellation
    /// Safe to drop: a beat already sent may land; the next one is then refused, and
    /// this worker registers again.
    pub(crate) async fn beat(&self) -> BeatOutcome {
        let mut state = self.state.lock().await;
        if state.leaving && state.current.is_none() {
            // Left (or declared gone while leaving): never registered again.
            return BeatOutcome::Beat {
                taken: Vec::new(),
                wake: false,
            };
        }
        // The wall clock (for operators), always moving on: a fresh registration differs
        // from any value an earlier life of this id left.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let next = match state.current {
            Some(b) => wall.max(b.wrapping_add(1)),
            None => wall,
        };
        let sent = Instant::now();
        let previous: Vec<u64> = state
            .current
            .into_iter()
            .chain(state.uncertain.iter().copied())
            .collect();
        // A call may take until the fence is due (a slow DynamoDB that still answers in
        // time keeps the worker going); once fenced, up to the failover time.
        let limit = if state.fenced {
            self.failover
        } else {
            (state.last_landed + self.fence_after).saturating_duration_since(sent)
        };
        let beat = Error::dynamodb_within(
            "UpdateItem",
            "fleet",
            limit,
            self.store.beat(
                &self.me,
                &previous,
                next,
                &state.handled,
                self.load.as_ref().map(|m| m.report()),
            ),
        )
        .await;
        match beat {
            Ok(Some(view)) => {
                state.current = Some(next);
                state.uncertain.clear();
                state.last_landed = sent;
                state.fenced = false;
                state.handled = view.notices.clone();
                ::metrics::gauge!(m::FLEET_WORKERS).set(view.beats.len() as f64);
                let now = Instant::now();
                let mut liveness = self.liveness();
                let changes = liveness.observe(&self.me, &view.beats, now);
                let wake =
                    !changes.departed.is_empty() || !liveness.silent(now, self.silence).is_empty();
                for w in &changes.joined {
                    tracing::info!(worker = %self.me, joined = %w, "worker joined the fleet");
                }
                for w in &changes.departed {
                    tracing::info!(worker = %self.me, departed = %w, "worker left the fleet");
                }
                let taken = view
                    .notices
                    .iter()
                    .filter_map(|n| parse_taken_notice(n))
                    .map(|(k, c)| (k.to_owned(), c))
                    .collect();
                BeatOutcome::Beat { taken, wake }
            }
            Ok(None) => {
                if state.leaving {
                    tracing::info!(worker = %self.me, "declared gone while leaving");
                } else {
                    tracing::warn!(worker = %self.me, "another worker declared this one gone (or another process uses its worker id); its leases are lost, registering again");
                }
                state.current = None;
                state.uncertain.clear();
                state.fenced = true;
                BeatOutcome::Refused
            }
            Err(e) => {
                // It may have landed (only a registration leaves nothing to accept).
                if state.current.is_some() {
                    if state.uncertain.len() == MAX_UNCERTAIN {
                        state.uncertain.remove(0);
                    }
                    state.uncertain.push(next);
                }
                ::metrics::counter!(m::HEARTBEAT_FAILURES).increment(1);
                let fence = Self::fence_if_due(&mut state, self.fence_after);
                if fence {
                    tracing::error!(worker = %self.me, error = %e, "no heartbeat landed in time; giving up every lease before another worker can take them");
                } else {
                    tracing::warn!(worker = %self.me, error = %e, "heartbeat failed");
                }
                BeatOutcome::Failed { fence }
            }
        }
    }

    /// Fences `state` if no beat has landed for `fence_after` and it is not fenced yet;
    /// whether it did.
    fn fence_if_due(state: &mut BeatState, fence_after: Duration) -> bool {
        let due = !state.fenced && state.last_landed.elapsed() >= fence_after;
        state.fenced |= due;
        due
    }

    /// When the fence falls due if no beat lands before (none: fenced already).
    pub(crate) async fn fence_deadline(&self) -> Option<Instant> {
        let state = self.state.lock().await;
        (!state.fenced).then(|| state.last_landed + self.fence_after)
    }

    /// Fences now if it is due (the deadline passed between beats); whether it did.
    pub(crate) async fn fence_now_if_due(&self) -> bool {
        let mut state = self.state.lock().await;
        let fence = Self::fence_if_due(&mut state, self.fence_after);
        if fence {
            tracing::error!(worker = %self.me, "no heartbeat landed in time; giving up every lease before another worker can take them");
        }
        fence
    }

    /// Whether this worker may take leases: a beat landed recently (it is not fenced,
    /// and knows the fleet).
    pub(crate) async fn can_take(&self) -> bool {
        !self.state.lock().await.fenced
    }

    /// Whether a lease of `owner` may be taken now, as far as the fleet knows: `Some(true)`
    /// if the owner's entry is gone (it left, or was declared gone: a silent worker's
    /// leases wait until its removal landed), `Some(false)` while it is registered, `None`
    /// if the fleet never showed it (the caller falls back on the lease counter).
    pub(crate) fn owner_gone(&self, owner: &str) -> Option<bool> {
        let liveness = self.liveness();
        if liveness.has_departed(owner) {
            Some(true)
        } else if liveness.is_registered(owner) {
            Some(false)
        } else {
            None
        }
    }

    /// The other workers alive now.
    pub(crate) fn alive(&self, now: Instant) -> HashSet<String> {
        self.liveness().alive(now, self.silence)
    }

    /// Declares every silent worker gone (removing its entry, unless it beat since): those
    /// declared here, or by someone else, count as departed from now on.
    ///
    /// # Cancellation
    /// Safe to drop: a removal already sent may land.
    pub(crate) async fn declare_silent_gone(&self) {
        let silent = self.liveness().silent(Instant::now(), self.silence);
        for (worker, beat) in silent {
            match self.store.remove(&worker, beat).await {
                Ok(true) => {
                    ::metrics::counter!(m::WORKERS_DECLARED_GONE).increment(1);
                    tracing::warn!(worker = %self.me, gone = %worker, "declared a silent worker gone; taking its leases");
                    self.liveness().forget(&worker, Instant::now());
                }
                // It beat since (alive after all), or someone removed it first: the next
                // beat shows which.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(gone = %worker, error = %e, "declaring a worker gone failed")
                }
            }
        }
    }

    /// Tells `victim` that `lease_key` moved from it, at `counter` (a graceful handoff
    /// leaves the counter: the victim reads the lease to learn of it); whether it was told
    /// (or is gone: nothing to tell). Not told, it learns at its next scan.
    ///
    /// # Cancellation
    /// Safe to drop: a notice already sent may land; the victim then reads the lease.
    pub(crate) async fn notify_taken(&self, victim: &str, lease_key: &str, counter: u64) -> bool {
        let notice = taken_notice(lease_key, counter);
        match tokio::time::timeout(self.interval, self.store.notify(victim, &notice)).await {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                tracing::warn!(victim, lease = lease_key, error = %e, "could not tell the owner of a handoff; it learns at its next scan");
                false
            }
            Err(_) => {
                tracing::warn!(
                    victim,
                    lease = lease_key,
                    "telling the owner of a handoff took too long; it learns at its next scan"
                );
                false
            }
        }
    }

    /// Removes this worker from the fleet (after its leases were released).
    ///
    /// # Cancellation
    /// Safe to drop: the others declare it gone after the failover time otherwise.
    pub(crate) async fn leave(&self) {
        let mut state = self.state.lock().await;
        state.leaving = true;
        let Some(current) = state.current.take() else {
            return;
        };
        let mut removed = self.store.remove(&self.me, current).await;
        for uncertain in std::mem::take(&mut state.uncertain) {
            if !matches!(removed, Ok(false)) {
                break;
            }
            removed = self.store.remove(&self.me, uncertain).await;
        }
        if let Err(e) = removed {
            tracing::warn!(worker = %self.me, error = %e, "leaving the fleet failed; the others see this worker go silent");
        }
    }

    /// Whether this worker has read the fleet at least once.
    pub(crate) fn has_looked(&self) -> bool {
        self.liveness().has_looked()
    }

    /// Marks the worker leaving (graceful shutdown begins): once its entry is gone it is
    /// never registered again.
    pub(crate) async fn begin_leaving(&self) {
        self.state.lock().await.leaving = true;
    }
}
