//! Time: the seconds-since-the-epoch reading every check uses, and the
//! [`Clock`] that lockout, refresh rotation and tests can replace.
//!
//! Below every other module: nothing here depends on the rest of the crate.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(target_os = "linux"))]
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
///
/// On Linux this reads the coarse real-time clock (`CLOCK_REALTIME_COARSE`,
/// through the vDSO): the time at the kernel's last timer tick, at most a
/// few milliseconds behind, for a tenth of the cost of a precise reading.
/// Every claim it is compared with counts whole seconds. Elsewhere it reads
/// [`SystemTime`](std::time::SystemTime).
pub fn now_seconds() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        u64::try_from(now.tv_sec).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Seconds since the Unix epoch, from a source tests can control.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> u64;
}

/// The system clock ([`now_seconds`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        now_seconds()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: u64) -> Self {
        ManualClock(AtomicU64::new(now))
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
