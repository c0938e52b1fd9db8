//! Time as plain numbers: the core never reads a clock, every instant is passed in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An instant: microseconds since the Unix epoch (UTC), the precision Postgres stores.
///
/// All arithmetic saturates, so an absurd timestamp on the input can never overflow (and so
/// never panic in a debug build); it only makes a deadline absurdly early or late.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// An instant from microseconds since the epoch.
    pub const fn from_micros(us: i64) -> Self {
        Timestamp(us)
    }

    /// An instant from whole seconds since the epoch (saturating).
    pub const fn from_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// This instant moved later by `d` (earlier if `d` is negative), saturating.
    #[must_use]
    pub const fn saturating_add(self, d: Micros) -> Self {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// This instant moved earlier by `d`, saturating.
    #[must_use]
    pub const fn saturating_sub(self, d: Micros) -> Self {
        Timestamp(self.0.saturating_sub(d.0))
    }

    /// The time from `earlier` to `self` (negative when `earlier` is later), saturating.
    pub const fn since(self, earlier: Timestamp) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }
}

impl From<time::OffsetDateTime> for Timestamp {
    /// The instant of a database or wall-clock time, to the microsecond (saturating).
    fn from(t: time::OffsetDateTime) -> Self {
        Timestamp(i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX))
    }
}

impl Timestamp {
    /// This instant as a UTC date-time, for the database (the epoch if out of its range).
    pub fn to_offset(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", Micros(self.0))
    }
}

/// A span of time in microseconds. Negative values are allowed in arithmetic but rejected
/// in configuration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

impl Micros {
    /// No time at all.
    pub const ZERO: Micros = Micros(0);

    /// A span of `us` microseconds.
    pub const fn from_micros(us: i64) -> Self {
        Micros(us)
    }

    /// A span of `ms` milliseconds (saturating).
    pub const fn from_millis(ms: i64) -> Self {
        Micros(ms.saturating_mul(1_000))
    }

    /// A span of `s` seconds (saturating).
    pub const fn from_secs(s: i64) -> Self {
        Micros(s.saturating_mul(1_000_000))
    }

    /// A span of `m` minutes (saturating).
    pub const fn from_mins(m: i64) -> Self {
        Micros(m.saturating_mul(60_000_000))
    }

    /// A span of `h` hours (saturating).
    pub const fn from_hours(h: i64) -> Self {
        Micros(h.saturating_mul(3_600_000_000))
    }

    /// The span in microseconds.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The span in seconds, for display and metrics.
    #[allow(clippy::cast_precision_loss)]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// `self + other`, saturating.
    #[must_use]
    pub const fn saturating_add(self, other: Micros) -> Micros {
        Micros(self.0.saturating_add(other.0))
    }

    /// `self × percent / 100`, saturating, rounding towards zero.
    #[must_use]
    pub const fn percent(self, percent: u32) -> Micros {
        // i128 arithmetic: an i64 times a u32 cannot overflow it.
        let v = (self.0 as i128) * (percent as i128) / 100;
        if v > i64::MAX as i128 {
            Micros(i64::MAX)
        } else if v < i64::MIN as i128 {
            Micros(i64::MIN)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            Micros(v as i64)
        }
    }
}

impl From<std::time::Duration> for Micros {
    /// Converts, saturating at `i64::MAX` microseconds (about 292,000 years).
    fn from(d: std::time::Duration) -> Self {
        Micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (s, us) = (abs / 1_000_000, abs % 1_000_000);
        if us == 0 {
            write!(f, "{sign}{s}s")
        } else {
            write!(f, "{sign}{s}.{us:06}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(
            Timestamp(i64::MAX).saturating_add(Micros::from_hours(1)),
            Timestamp(i64::MAX)
        );
        assert_eq!(Timestamp(i64::MIN).since(Timestamp(1)), Micros(i64::MIN));
        assert_eq!(Micros(i64::MAX).percent(110), Micros(i64::MAX));
        assert_eq!(Micros::from_hours(24).percent(10), Micros::from_mins(144));
    }

    #[test]
    fn spans_display_in_seconds() {
        assert_eq!(Micros::from_secs(60).to_string(), "60s");
        assert_eq!(Micros::from_millis(-1500).to_string(), "-1.500000s");
        assert_eq!(
            Micros::from(std::time::Duration::from_millis(2)),
            Micros(2000)
        );
    }
}
