//! Time as the controller sees it: a monotonic instant owned by the driver.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An instant on the driver's clock, in nanoseconds since the start of the run.
///
/// The simulator's virtual clock and the live gateway's tokio clock both map onto it, which is
/// what lets the controller stay free of any clock of its own. Integer nanoseconds keep event
/// ordering exact and runs reproducible bit for bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The start of a run.
    pub const ZERO: Timestamp = Timestamp(0);
    /// Later than any instant a run reaches.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// From nanoseconds since the start of the run.
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// From seconds since the start of the run; negative or non-finite input saturates.
    pub fn from_secs_f64(secs: f64) -> Self {
        Timestamp(secs_to_nanos(secs))
    }

    /// Nanoseconds since the start of the run.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the start of the run.
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 * 1e-9
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Seconds elapsed since `earlier` (may be negative).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 as f64 - earlier.0 as f64) * 1e-9
    }
}

fn secs_to_nanos(secs: f64) -> u64 {
    if secs.is_nan() || secs <= 0.0 {
        0
    } else {
        (secs * 1e9).round().min(u64::MAX as f64) as u64
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX)))
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}s", self.as_secs_f64())
    }
}

/// A duration from seconds; negative or non-finite input gives zero.
pub fn duration_from_secs(secs: f64) -> Duration {
    Duration::from_nanos(secs_to_nanos(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_trip_and_saturate() {
        let t = Timestamp::from_secs_f64(1.5);
        assert_eq!(t.as_nanos(), 1_500_000_000);
        assert_eq!(t.as_secs_f64(), 1.5);
        assert_eq!(Timestamp::from_secs_f64(-3.0), Timestamp::ZERO);
        assert_eq!(Timestamp::from_secs_f64(f64::NAN), Timestamp::ZERO);
        assert_eq!(Timestamp::ZERO - t, Duration::ZERO);
        assert_eq!(t + Duration::from_millis(500), Timestamp::from_secs_f64(2.0));
    }
}
