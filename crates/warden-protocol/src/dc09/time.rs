//! DC-09 timestamps: parsing, the calendar arithmetic behind them, and the receive window.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A DC-09 timestamp (`HH:MM:SS,MM-DD-YYYY`, UTC by the standard), always a real date and
/// time of day.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    // Field order is significance order, so the derived `Ord` is chronological.
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Timestamp {
    /// A timestamp from its parts, if they form a real date (years 0–9999, proleptic
    /// Gregorian) and time of day.
    pub fn new(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<Self> {
        let ok = year <= 9999
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        ok.then_some(Self {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// Parses `HH:MM:SS,MM-DD-YYYY` (without the leading `_`).
    pub fn parse(text: &[u8]) -> Option<Self> {
        let [
            h1,
            h2,
            b':',
            n1,
            n2,
            b':',
            s1,
            s2,
            b',',
            m1,
            m2,
            b'-',
            d1,
            d2,
            b'-',
            y1,
            y2,
            y3,
            y4,
        ] = *text
        else {
            return None;
        };
        let year = decimal(&[y1, y2, y3, y4])?;
        let two = |a, b| decimal(&[a, b]).and_then(|v| u8::try_from(v).ok());
        Self::new(
            year,
            two(m1, m2)?,
            two(d1, d2)?,
            two(h1, h2)?,
            two(n1, n2)?,
            two(s1, s2)?,
        )
    }

    /// The UTC date and time `seconds` after 1970-01-01T00:00:00, if within years 0–9999.
    pub fn from_unix(seconds: i64) -> Option<Self> {
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days)?;
        let part = |v: i64| u8::try_from(v).ok();
        Self::new(
            year,
            month,
            day,
            part(secs / 3600)?,
            part(secs / 60 % 60)?,
            part(secs % 60)?,
        )
    }

    /// Seconds since 1970-01-01T00:00:00 (negative before).
    pub fn unix_seconds(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    pub fn month(&self) -> u8 {
        self.month
    }

    pub fn day(&self) -> u8 {
        self.day
    }

    pub fn hour(&self) -> u8 {
        self.hour
    }

    pub fn minute(&self) -> u8 {
        self.minute
    }

    pub fn second(&self) -> u8 {
        self.second
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}:{:02},{:02}-{:02}-{:04}",
            self.hour, self.minute, self.second, self.month, self.day, self.year
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a run of ASCII decimal digits.
pub(super) fn decimal(digits: &[u8]) -> Option<u16> {
    digits.iter().try_fold(0u16, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u16::from(b - b'0')))
            .flatten()
    })
}

pub(super) fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

pub(super) fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(super) fn days_from_civil(year: u16, month: u8, day: u8) -> i64 {
    let (m, d) = (i64::from(month), i64::from(day));
    // The algorithm counts years from March, so January and February belong to the year before.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (inverse of
/// [`days_from_civil`]); `None` outside years 0–9999.
pub(super) fn civil_from_days(days: i64) -> Option<(u16, u8, u8)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some((
        u16::try_from(year).ok().filter(|y| *y <= 9999)?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
    ))
}

/// Checks a message timestamp against the receiver clock: it may lie at most `before`
/// seconds behind `now` and at most `after` seconds ahead of it.
///
/// DC-09 has receivers reject (NAK) messages outside +20/−40 seconds, i.e. `before` =
/// [`DEFAULT_BEFORE_SECONDS`] (40) and `after` = [`DEFAULT_AFTER_SECONDS`] (20); the sources
/// are listed there. Both times must be in the same zone (UTC for DC-09).
pub fn check_timestamp(
    ts: &Timestamp,
    now: Timestamp,
    before: u32,
    after: u32,
) -> Result<(), Dc09Error> {
    let offset = ts.unix_seconds() - now.unix_seconds();
    if offset < -i64::from(before) || offset > i64::from(after) {
        return Err(Dc09Error::TimestampOutOfWindow {
            timestamp: *ts,
            now,
            offset,
            before,
            after,
        });
    }
    Ok(())
}
