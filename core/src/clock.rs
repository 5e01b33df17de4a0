//! The clock seam: where the engine asks what time it is.
//!
//! Two readings with different jobs. [`Clock::now`] is monotonic (a `tokio` [`Instant`]) and
//! measures durations: leases, TTLs, deadlines. [`Clock::unix_ms`] is the wall clock, stamped
//! into replicated commands (lock-delays run from the proposer's `now_ms`). Under tokio's paused
//! time (`start_paused`, the simulator) `tokio::time::Instant` is already virtual, so only the
//! wall clock needs a twin: [`ManualClock`] derives it from the virtual monotonic clock plus an
//! offset a test can move, instead of reading the host's time.
//!
//! A leaf module: it calls nothing in the crate.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A source of monotonic and wall-clock time.
///
/// ### Contract
/// - `now()` never goes backwards.
/// - `unix_ms()` may jump (it is a wall clock), but every reading is milliseconds since the unix
///   epoch as the proposer believes it; it is only ever compared with other `unix_ms` readings.
pub trait Clock: Send + Sync + Debug {
    /// Monotonic time, for durations and deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock time in milliseconds since the unix epoch.
    fn unix_ms(&self) -> u64;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The host's clocks: tokio's monotonic clock and the system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`] (the default wherever a clock is injected).
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock for simulations and tests: the monotonic reading is tokio's (virtual under paused
/// time), and the wall clock is a fixed epoch plus the monotonic time elapsed since the clock was
/// made, plus an offset moved with [`ManualClock::shift_wall`] (a wall-clock step, e.g. NTP).
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    epoch_ms: u64,
    offset_ms: AtomicI64,
}

impl ManualClock {
    /// A clock whose wall time reads `epoch_ms` now.
    pub fn new(epoch_ms: u64) -> Self {
        ManualClock { origin: Instant::now(), epoch_ms, offset_ms: AtomicI64::new(0) }
    }

    /// Steps the wall clock by `ms` (negative steps go back in time); the monotonic clock is
    /// unaffected, as on a real host.
    pub fn shift_wall(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ms(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        let base = self.epoch_ms.saturating_add(elapsed.as_millis() as u64);
        base.saturating_add_signed(self.offset_ms.load(Ordering::Relaxed))
    }
}

/// Time left until `deadline` by `clock` (zero once it passed).
pub fn until(clock: &dyn Clock, deadline: Instant) -> Duration {
    deadline.saturating_duration_since(clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_manual_wall_clock_follows_virtual_time_and_can_step() {
        let clock = ManualClock::new(1_000_000);
        assert_eq!(clock.unix_ms(), 1_000_000);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(clock.unix_ms(), 1_003_000);
        clock.shift_wall(-500);
        assert_eq!(clock.unix_ms(), 1_002_500);
        let deadline = clock.now() + Duration::from_millis(10);
        assert_eq!(until(&clock, deadline), Duration::from_millis(10));
    }
}
