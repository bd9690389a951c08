//! The daemon's clock, shared by the main loop, the claim threads and the I/O pool.

use libmmp::protocol::check::Clock;
use std::time::Duration;

/// Time since the daemon started, shared by every thread: `CLOCK_BOOTTIME`, which keeps counting
/// while the machine is suspended (a holder must see that time passed since its last write).
#[derive(Debug, Clone, Copy)]
pub struct EpochClock {
    /// `libmmp::protocol::check::boottime()` at the start.
    pub origin: Duration,
}

impl EpochClock {
    pub fn start() -> Self {
        EpochClock {
            origin: libmmp::protocol::check::boottime(),
        }
    }
}

impl Clock for EpochClock {
    fn now(&self) -> Duration {
        libmmp::protocol::check::boottime().saturating_sub(self.origin)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}
