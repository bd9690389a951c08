//! Time, injected: the one [`Clock`] every wait of the protocol takes, the real clock behind it,
//! and the wall-clock seconds written into `mmp_time`.
//!
//! Protocol code never reads the time itself, so the claim, the check and the heartbeat run in
//! memory on a fake clock in tests (`crate::testing::FakeClock`) and on [`SystemClock`] for
//! real.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time, injected so the protocol is tested without sleeping.
pub trait Clock {
    /// Monotonic time since an arbitrary origin.
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration);
}

/// The real clock: `CLOCK_BOOTTIME`, which keeps counting while the machine is suspended
/// (`CLOCK_MONOTONIC`, behind `Instant`, stops). A holder suspended for a minute must see that a
/// minute passed since its last write, not none; a reader's wait must not shrink either.
///
/// It is `Copy`: a daemon hands one clock, started once, to every thread, so all of them
/// measure from the same origin.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    /// [`boottime`] at the origin.
    origin: Duration,
}

impl SystemClock {
    /// A clock whose `now()` counts from this moment.
    pub fn start() -> Self {
        SystemClock { origin: boottime() }
    }

    /// A clock whose `now()` counts from `origin`, a past [`boottime`] (tests start one
    /// "earlier" to stand for time already spent).
    pub fn with_origin(origin: Duration) -> Self {
        SystemClock { origin }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::start()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        boottime().saturating_sub(self.origin)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// `CLOCK_BOOTTIME` now (falls back to `CLOCK_MONOTONIC`, which cannot fail on Linux).
pub fn boottime() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
        .map(Duration::from)
        .unwrap_or_default()
}

/// Wall-clock seconds since the epoch, for `mmp_time` and state files (informational only:
/// readers of the MMP block never trust it).
pub fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_boottime_and_moves() {
        let c = SystemClock::default();
        let a = c.now();
        c.sleep(Duration::from_millis(20));
        let b = c.now();
        assert!(b >= a + Duration::from_millis(20), "{a:?} {b:?}");
        let m = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        // BOOTTIME = MONOTONIC + time suspended: never behind it.
        assert!(boottime() >= Duration::from(m));
    }

    #[test]
    fn a_clock_with_an_earlier_origin_is_ahead() {
        let c = SystemClock::with_origin(boottime().saturating_sub(Duration::from_secs(100)));
        assert!(c.now() >= Duration::from_secs(100));
    }
}
