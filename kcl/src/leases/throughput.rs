//! [`Throughput`]: a shard's measured load, as the Java KCL 3.x stores it on its lease
//! (`throughputKBps`, a DynamoDB number of kilobytes — 1,024 bytes — per second), and
//! [`ThroughputMeter`]: how the lease's holder measures it.
//!
//! ```text
//!  ShardConsumer, each batch ─▶ ThroughputMeter::record(bytes of user record data)
//!  HeldLease, each owner write (renewal, checkpoint, refresh) ─▶ ThroughputMeter::sample(now)
//!     window ≥ `window` since the last sample ─▶ rate = bytes / window / 1024
//!        ─▶ average = rate (first sample, nothing stored) or (rate + average) / 2
//!     shorter ─▶ the average as it is
//!     ─▶ Change::Throughput ─▶ SET throughputKBps with the write
//! ```
//!
//! The Java KCL 3.x (`LeaseStatsRecorder`, read 2026-11-29) averages the bytes its record
//! processors received per renewal interval with an exponential moving average of
//! alpha 0.5, and writes it with each renewal; the same average is kept here, over windows
//! of at least the renewal interval, so a value this library writes means what a Java
//! worker's does. A meter starts from the value stored on the lease, so a new holder does
//! not begin at zero.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes per kilobyte in `throughputKBps` (the Java KCL's `BYTES_PER_KB`).
const BYTES_PER_KB: f64 = 1024.0;

/// The Java KCL 3.x's smoothing: each window's rate counts half.
const ALPHA: f64 = 0.5;

/// A shard's throughput in kilobytes (1,024 bytes) per second: finite and not negative,
/// so that leases holding one compare as equal or not.
#[derive(Debug, Clone, Copy, PartialOrd)]
pub struct Throughput(f64);

impl Throughput {
    /// Zero: an idle shard.
    pub const ZERO: Self = Self(0.0);

    /// `kbps` as a throughput; `None` when it is negative, NaN or infinite.
    pub fn from_kbps(kbps: f64) -> Option<Self> {
        (kbps.is_finite() && kbps >= 0.0).then_some(Self(kbps + 0.0))
    }

    /// Kilobytes (1,024 bytes) per second.
    pub fn kbps(self) -> f64 {
        self.0
    }
}

impl PartialEq for Throughput {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

// Never NaN (see `from_kbps`): equality is total.
impl Eq for Throughput {}

impl std::fmt::Display for Throughput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} KB/s", self.0)
    }
}

/// One held lease's throughput as its holder measures it; see the module docs.
#[derive(Debug)]
pub(crate) struct ThroughputMeter {
    /// The shortest window a rate is taken over: the renewal interval, as the Java KCL.
    window: Duration,
    /// What was counted since the last sample, and the average so far.
    state: Mutex<MeterState>,
}

/// The counts of a [`ThroughputMeter`].
#[derive(Debug)]
struct MeterState {
    /// Bytes recorded since `since`.
    bytes: u64,
    /// When the current window began.
    since: Instant,
    /// The moving average (none: nothing measured, and nothing stored on the lease).
    average: Option<f64>,
}

impl ThroughputMeter {
    /// A meter starting now from `stored` (the lease's `throughputKBps`, if any), taking
    /// rates over windows of at least `window`.
    pub(crate) fn new(stored: Option<Throughput>, window: Duration, now: Instant) -> Self {
        Self {
            window,
            state: Mutex::new(MeterState {
                bytes: 0,
                since: now,
                average: stored.map(Throughput::kbps),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MeterState> {
        // A panic elsewhere while holding it left counts only: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `bytes` of user record data handed to the processor.
    pub(crate) fn record(&self, bytes: usize) {
        let mut s = self.state();
        s.bytes = s.bytes.saturating_add(bytes as u64);
    }

    /// The average at `now`: a window of at least `window` since the last one closes and
    /// counts half; a shorter one leaves the average as it is. `None` until a window
    /// closed when the lease stored none.
    pub(crate) fn sample(&self, now: Instant) -> Option<Throughput> {
        let mut s = self.state();
        let elapsed = now.saturating_duration_since(s.since);
        if elapsed >= self.window && !elapsed.is_zero() {
            let rate = s.bytes as f64 / BYTES_PER_KB / elapsed.as_secs_f64();
            s.average = Some(match s.average {
                Some(average) => ALPHA * rate + (1.0 - ALPHA) * average,
                None => rate,
            });
            (s.bytes, s.since) = (0, now);
        }
        s.average.and_then(Throughput::from_kbps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn only_finite_non_negative_figures_are_throughputs() {
        assert_eq!(Throughput::from_kbps(1.5).map(Throughput::kbps), Some(1.5));
        assert_eq!(Throughput::from_kbps(-0.0), Some(Throughput::ZERO));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Throughput::from_kbps(bad), None, "{bad}");
        }
        assert_eq!(Throughput::from_kbps(2.0).unwrap().to_string(), "2.0 KB/s");
    }

    #[test]
    fn windows_average_with_alpha_one_half_and_short_ones_wait() {
        let t0 = Instant::now();
        let meter = ThroughputMeter::new(None, 2 * SECOND, t0);
        meter.record(4096);
        assert_eq!(meter.sample(t0 + SECOND), None, "window not over yet");
        meter.record(4096);
        // 8 KiB over 2 s: 4 KB/s, the first measurement.
        assert_eq!(meter.sample(t0 + 2 * SECOND).unwrap().kbps(), 4.0);
        // An idle window halves it, and so on.
        assert_eq!(meter.sample(t0 + 4 * SECOND).unwrap().kbps(), 2.0);
        meter.record(20 * 1024);
        assert_eq!(meter.sample(t0 + 5 * SECOND).unwrap().kbps(), 2.0, "short");
        // 20 KiB over 2 s (10 KB/s) with the average 2: 6.
        assert_eq!(meter.sample(t0 + 6 * SECOND).unwrap().kbps(), 6.0);
    }

    #[test]
    fn a_meter_starts_from_the_stored_figure() {
        let t0 = Instant::now();
        let stored = Throughput::from_kbps(100.0);
        let meter = ThroughputMeter::new(stored, SECOND, t0);
        assert_eq!(meter.sample(t0), stored, "nothing measured yet");
        meter.record(10 * 1024);
        assert_eq!(meter.sample(t0 + SECOND).unwrap().kbps(), 55.0);
    }
}
