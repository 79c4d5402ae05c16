//! Time as the store sees it: an input, never read from a clock here.

use std::ops::Add;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock instant in microseconds since the Unix epoch (what gmond's `apr_time_t` holds).
///
/// The daemon passes `Timestamp::from_system_time(SystemTime::now())`; tests pass simulated
/// times. Wall-clock rather than monotonic because REPORTED and LOCALTIME are epoch seconds
/// other tools compare across hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros)
    }

    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Fractional epoch seconds (pcap timestamps); negative or NaN inputs give the epoch.
    pub fn from_secs_f64(secs: f64) -> Self {
        // `as` saturates on out-of-range floats and maps NaN to 0, which is what we want.
        Timestamp((secs * 1e6).round() as u64)
    }

    /// A clock before 1970 reads as the epoch.
    pub fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole epoch seconds (truncated), as gmond prints LOCALTIME and REPORTED.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }

    /// Time elapsed since `earlier`; zero if the clock went backwards.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    fn add(self, d: Duration) -> Timestamp {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Timestamp::from_secs(3).as_micros(), 3_000_000);
        assert_eq!(Timestamp::from_secs_f64(1.5).as_micros(), 1_500_000);
        assert_eq!(Timestamp::from_secs_f64(-4.0), Timestamp::ZERO);
        assert_eq!(Timestamp::from_secs_f64(f64::NAN), Timestamp::ZERO);
        assert_eq!(Timestamp::from_micros(2_999_999).as_secs(), 2);
        let t = UNIX_EPOCH + Duration::from_micros(42);
        assert_eq!(Timestamp::from_system_time(t).as_micros(), 42);
    }

    #[test]
    fn elapsed_saturates() {
        let (a, b) = (Timestamp::from_secs(10), Timestamp::from_secs(12));
        assert_eq!(b.saturating_since(a), Duration::from_secs(2));
        assert_eq!(a.saturating_since(b), Duration::ZERO);
        assert_eq!(
            a + Duration::from_millis(1500),
            Timestamp::from_micros(11_500_000)
        );
    }
}
