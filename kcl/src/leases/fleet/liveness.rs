//! [`Liveness`]: what this worker concludes from the heartbeats it reads, on its own
//! monotonic clock. Pure: the caller passes `now`.
//!
//! ```text
//!  observe(me, beats, now)
//!    new worker ─▶ joined; since = now
//!    beat changed ─▶ since = the earliest it can have landed: my look before, or
//!                    now − heartbeat_interval if that look is older
//!    beat unchanged ─▶ nothing (since stays)
//!    entry gone ─▶ departed (remembered, so its leases can be taken at once)
//!    my own looks were interrupted for blind_after (I was cut off, so fenced) ─▶ every
//!      since = now: after an outage of everyone, nobody declares everybody gone
//!  silent(now, threshold): unchanged for the threshold since `since`
//! ```
//!
//! The bound on `since` is what makes detection quick and still safe: a worker's last beat
//! landed after my look before I first saw it, so its silence is counted from there, not
//! from when I happened to look.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// How long a departed worker is remembered.
const REMEMBER_DEPARTED: Duration = Duration::from_secs(600);

/// A worker's last heartbeat as this worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    /// The heartbeat.
    beat: u64,
    /// The earliest time it can have been written, on this worker's clock.
    since: Instant,
}

/// What an observation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Workers seen for the first time.
    pub(crate) joined: Vec<String>,
    /// Workers whose entry is gone (shut down, or declared gone by someone).
    pub(crate) departed: Vec<String>,
}

/// The other workers' heartbeats as this worker saw them; see the module docs.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// How often workers beat: bounds how early a changed beat can have been written.
    heartbeat_interval: Duration,
    /// A gap in my own looks this long means I was cut off (and fenced): silences are
    /// counted again from my next look.
    blind_after: Duration,
    /// Every other registered worker's last heartbeat.
    seen: HashMap<String, Seen>,
    /// Workers whose entry went away, and when this worker noticed.
    departed: HashMap<String, Instant>,
    /// When this worker last read the fleet.
    last_look: Option<Instant>,
}

impl Liveness {
    /// Nothing seen yet; workers beat every `heartbeat_interval`; a gap of `blind_after` in
    /// this worker's own looks restarts every silence.
    pub(crate) fn new(heartbeat_interval: Duration, blind_after: Duration) -> Self {
        Self {
            heartbeat_interval,
            blind_after,
            seen: HashMap::new(),
            departed: HashMap::new(),
            last_look: None,
        }
    }

    /// Takes in the fleet read at `now` (`me` is left out).
    pub(crate) fn observe(
        &mut self,
        me: &str,
        beats: &HashMap<String, u64>,
        now: Instant,
    ) -> Changes {
        let blind = self
            .last_look
            .is_none_or(|t| now.duration_since(t) > self.blind_after);
        let bound = match self.last_look {
            Some(t) if !blind => t.max(now.checked_sub(self.heartbeat_interval).unwrap_or(t)),
            _ => now,
        };
        let mut changes = Changes::default();
        for (worker, &beat) in beats {
            if worker == me {
                continue;
            }
            match self.seen.get_mut(worker) {
                Some(s) if s.beat == beat => {
                    if blind {
                        s.since = now;
                    }
                }
                Some(s) => *s = Seen { beat, since: bound },
                None => {
                    self.seen.insert(worker.clone(), Seen { beat, since: now });
                    self.departed.remove(worker);
                    changes.joined.push(worker.clone());
                }
            }
        }
        let gone: Vec<String> = self
            .seen
            .keys()
            .filter(|w| !beats.contains_key(*w))
            .cloned()
            .collect();
        for worker in gone {
            self.forget(&worker, now);
            changes.departed.push(worker);
        }
        self.departed
            .retain(|_, at| now.duration_since(*at) < REMEMBER_DEPARTED);
        self.last_look = Some(now);
        changes.joined.sort();
        changes.departed.sort();
        changes
    }

    /// Notes that `worker` is gone (its entry was removed), at `now`.
    pub(crate) fn forget(&mut self, worker: &str, now: Instant) {
        self.seen.remove(worker);
        self.departed.insert(worker.to_owned(), now);
    }

    /// Workers whose heartbeat has not changed for `threshold`, with that heartbeat.
    pub(crate) fn silent(&self, now: Instant, threshold: Duration) -> Vec<(String, u64)> {
        let mut silent: Vec<(String, u64)> = self
            .seen
            .iter()
            .filter(|(_, s)| now.duration_since(s.since) >= threshold)
            .map(|(w, s)| (w.clone(), s.beat))
            .collect();
        silent.sort();
        silent
    }

    /// Whether `worker` is registered and not silent for `threshold`.
    pub(crate) fn is_alive(&self, worker: &str, now: Instant, threshold: Duration) -> bool {
        self.seen
            .get(worker)
            .is_some_and(|s| now.duration_since(s.since) < threshold)
    }

    /// Whether `worker` is registered (alive or silent).
    pub(crate) fn is_registered(&self, worker: &str) -> bool {
        self.seen.contains_key(worker)
    }

    /// Whether `worker`'s entry went away recently.
    pub(crate) fn has_departed(&self, worker: &str) -> bool {
        self.departed.contains_key(worker)
    }

    /// The other workers registered and not silent for `threshold`.
    pub(crate) fn alive(&self, now: Instant, threshold: Duration) -> HashSet<String> {
        self.seen
            .keys()
            .filter(|w| self.is_alive(w, now, threshold))
            .cloned()
            .collect()
    }

    /// Whether this worker has read the fleet at all.
    pub(crate) fn has_looked(&self) -> bool {
        self.last_look.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Duration = Duration::from_millis(2_500);
    const T: Duration = Duration::from_millis(7_500);

    fn beats(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(w, b)| ((*w).to_owned(), *b)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_stops_beating_is_silent_within_the_threshold_plus_a_heartbeat() {
        let mut l = Liveness::new(H, H * 2);
        let t0 = Instant::now();
        let c = l.observe("me", &beats(&[("me", 1), ("a", 10)]), t0);
        assert_eq!(c.joined, ["a"]);
        // a beats every heartbeat, then dies right after its beat 13 lands.
        for (i, beat) in (11..=13).enumerate() {
            let now = t0 + H * (i as u32 + 1);
            l.observe("me", &beats(&[("me", 2), ("a", beat)]), now);
            assert!(l.is_alive("a", now, T));
        }
        // Beat 13 was first seen at 3H, so it landed after 2H: silent from 2H + T on.
        let last_seen = t0 + H * 3;
        let mut now = last_seen;
        while l.silent(now, T).is_empty() {
            now += H;
            l.observe("me", &beats(&[("me", 3), ("a", 13)]), now);
        }
        assert_eq!(l.silent(now, T), vec![("a".to_owned(), 13)]);
        assert!(now - (t0 + H * 2) >= T, "never before the threshold");
        assert!(
            now - last_seen <= T,
            "declared within the threshold of first sight"
        );
        assert!(!l.is_alive("a", now, T));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_in_my_own_looks_restarts_every_silence() {
        let mut l = Liveness::new(H, H * 2);
        let t0 = Instant::now();
        l.observe("me", &beats(&[("a", 1)]), t0);
        // I could not read for 20 s (an outage): a's unchanged beat proves nothing.
        let later = t0 + Duration::from_secs(20);
        l.observe("me", &beats(&[("a", 1)]), later);
        assert!(l.silent(later, T).is_empty());
        assert!(l.is_alive("a", later, T));
        assert!(!l.silent(later + T, T).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_that_go_away_are_departed_and_remembered_for_a_while() {
        let mut l = Liveness::new(H, H * 2);
        let t0 = Instant::now();
        l.observe("me", &beats(&[("a", 1), ("b", 1)]), t0);
        let c = l.observe("me", &beats(&[("b", 2)]), t0 + H);
        assert_eq!(c.departed, ["a"]);
        assert!(l.has_departed("a") && !l.has_departed("b"));
        assert_eq!(l.alive(t0 + H, T), HashSet::from(["b".to_owned()]));
        // Back (a restart under the same id): joined again, no longer departed.
        let c = l.observe("me", &beats(&[("a", 9), ("b", 3)]), t0 + H * 2);
        assert_eq!(c.joined, ["a"]);
        assert!(!l.has_departed("a"));
        l.forget("b", t0 + H * 2);
        let far = t0 + REMEMBER_DEPARTED + H * 3;
        l.observe("me", &beats(&[("a", 10)]), far);
        assert!(
            !l.has_departed("b"),
            "forgotten after {REMEMBER_DEPARTED:?}"
        );
    }
}
