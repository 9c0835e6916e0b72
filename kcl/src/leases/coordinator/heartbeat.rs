//! [`Heartbeat`]: a coordinator's side of the fleet (see `leases::fleet`): its beats, what
//! they showed of the others, and the fleet writes that go with takes and shutdown.
//!
//! ```text
//!  beat() ─▶ FleetStore::beat(me, current, next, handled notices)
//!    view ─▶ Liveness::observe ─▶ wake the taker if someone departed or fell silent
//!         ─▶ notices for me ─▶ BeatOutcome::Beat { taken } (the coordinator loses them)
//!    refused ─▶ BeatOutcome::Refused (declared gone: lose everything, register again)
//!    error ─▶ BeatOutcome::Failed { fence }: fence once no beat landed for the failover time
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
use crate::leases::fleet::{parse_taken_notice, taken_notice, FleetStore, Liveness};
use crate::metric_names as m;

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
    /// Whether the leases were already given up since that beat.
    fenced: bool,
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
    /// No beat landing for this long fences this worker.
    failover: Duration,
    /// The others, as seen.
    liveness: SyncMutex<Liveness>,
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
            failover: config.failover_time,
            liveness: SyncMutex::new(Liveness::new(config.heartbeat_interval)),
            state: Mutex::new(BeatState {
                current: None,
                uncertain: Vec::new(),
                handled: Vec::new(),
                last_landed: Instant::now(),
                fenced: false,
            }),
        }
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
        // A beat that takes longer than the interval counts as failed: a DynamoDB that
        // does not answer must not keep this worker from fencing itself.
        let beat = tokio::time::timeout(
            self.interval,
            self.store.beat(&self.me, &previous, next, &state.handled),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::DynamoDb {
                operation: "UpdateItem",
                table: "fleet".into(),
                message: format!(
                    "no answer within the heartbeat interval ({:?})",
                    self.interval
                ),
                retryable: true,
                throttled: false,
            })
        });
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
                tracing::warn!(worker = %self.me, "another worker declared this one gone; its leases are lost, registering again");
                state.current = None;
                state.uncertain.clear();
                state.handled.clear();
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
                let late = state.last_landed.elapsed() >= self.failover;
                let fence = late && !state.fenced;
                state.fenced |= late;
                if fence {
                    tracing::error!(worker = %self.me, error = %e, "no heartbeat landed for the failover time; giving up every lease");
                } else {
                    tracing::warn!(worker = %self.me, error = %e, "heartbeat failed");
                }
                BeatOutcome::Failed { fence }
            }
        }
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

    /// Tells `victim` that `lease_key` was taken from it, leaving `counter`.
    ///
    /// # Cancellation
    /// Safe to drop: the victim learns at the next scan otherwise.
    pub(crate) async fn notify_taken(&self, victim: &str, lease_key: &str, counter: u64) {
        let notice = taken_notice(lease_key, counter);
        if let Err(e) = self.store.notify(victim, &notice).await {
            tracing::warn!(victim, lease = lease_key, error = %e, "telling the old owner failed; it learns at its next scan");
        }
    }

    /// Removes this worker from the fleet (after its leases were released).
    ///
    /// # Cancellation
    /// Safe to drop: the others declare it gone after the failover time otherwise.
    pub(crate) async fn leave(&self) {
        let mut state = self.state.lock().await;
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
}
