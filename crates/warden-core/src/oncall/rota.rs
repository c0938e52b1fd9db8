//! Who is on call: a rota is a pure function of (rota, instant).
//!
//! A [`Rota`] lives in one IANA time zone. It has ordered [`Layer`]s (a later layer, when it
//! applies, covers the ones before it) and [`Override`]s (absolute intervals that cover every
//! layer). A layer hands over from one participant to the next every [`ShiftLength`]:
//! whole days and weeks hand over at the same wall-clock time (so a shift that spans a clock
//! change is 23 or 25 hours long), hours are counted in real time. A layer may apply only
//! inside weekly [`Window`]s (for example weekdays 17:00-09:00 and all weekend) and, if it
//! says so, all day on the rota's bank holidays.
//!
//! Wall-clock times that do not exist (the hour skipped when clocks go forward) or exist
//! twice (the hour repeated when they go back) are resolved the way `jiff` calls
//! "compatible": a skipped time moves forward by the gap, a repeated one takes its first
//! occurrence. Every boundary of a rota is resolved the same way, so shifts never overlap
//! and never leave a hole.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp as Instant};
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A person who can be on call (`people.id` in the store).
pub type PersonId = i64;

/// How long each participant's turn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "unit", content = "count")]
pub enum ShiftLength {
    /// This many hours of real time.
    Hours(u32),
    /// This many days, handing over at the start's wall-clock time.
    Days(u32),
    /// This many weeks, handing over at the start's wall-clock time and weekday.
    Weeks(u32),
}

impl ShiftLength {
    fn count(self) -> i64 {
        let n = match self {
            ShiftLength::Hours(n) | ShiftLength::Days(n) | ShiftLength::Weeks(n) => n,
        };
        i64::from(n.max(1))
    }

    /// The nominal length, used only to guess which shift an instant falls in.
    fn nominal_seconds(self) -> i64 {
        let unit = match self {
            ShiftLength::Hours(_) => 3_600,
            ShiftLength::Days(_) => 86_400,
            ShiftLength::Weeks(_) => 7 * 86_400,
        };
        unit * self.count()
    }
}

/// A weekly time window in the rota's zone: from `from` on each of `days` until `to`. When
/// `to` is not after `from` the window runs past midnight into the next day (17:00-09:00);
/// `from == to` is a whole day from that time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The days the window starts on (written `"mon"` … `"sun"`).
    #[serde(with = "weekdays")]
    pub days: Vec<Weekday>,
    /// Wall-clock start.
    pub from: Time,
    /// Wall-clock end (on the next day when not after `from`).
    pub to: Time,
}

impl Window {
    fn overnight(&self) -> bool {
        self.to <= self.from
    }

    /// Whether the local wall-clock moment `at` is inside the window.
    fn contains(&self, at: DateTime) -> bool {
        let (day, time) = (at.weekday(), at.time());
        if self.overnight() {
            (self.days.contains(&day) && time >= self.from)
                || (self.days.contains(&day.previous()) && time < self.to)
        } else {
            self.days.contains(&day) && time >= self.from && time < self.to
        }
    }
}

/// One layer of a rota: participants taking turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Shown to people ("Weeknights", "Weekend cover").
    pub name: String,
    /// In turn order; the first takes the shift that begins at `start`.
    pub participants: Vec<PersonId>,
    /// The first hand-off, wall-clock time in the rota's zone. Turns repeat before it too.
    pub start: DateTime,
    /// Each turn's length.
    pub shift: ShiftLength,
    /// When the layer applies; empty means always.
    #[serde(default)]
    pub windows: Vec<Window>,
    /// Whether the layer also applies all day on the rota's bank holidays.
    #[serde(default)]
    pub bank_holidays: bool,
}

/// One turn of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    /// Which turn: 0 begins at the layer's start, negative ones before it.
    pub index: i64,
    /// Whose turn it is.
    pub person: PersonId,
    /// When it begins (inclusive).
    pub start: Timestamp,
    /// When the next one begins (exclusive).
    pub end: Timestamp,
}

/// Someone covering every layer for a while (holiday swap, sickness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Inclusive.
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
    /// Who is on call instead.
    pub person: PersonId,
}

/// A rota: layers and overrides in one time zone, with its bank holidays.
#[derive(Debug, Clone, PartialEq)]
pub struct Rota {
    /// The zone every wall-clock time of the rota is read in.
    pub zone: TimeZone,
    /// Lowest first: when several apply, the last one decides.
    pub layers: Vec<Layer>,
    /// When several cover an instant, the last one decides.
    pub overrides: Vec<Override>,
    /// Dates (in the rota's zone) on which layers with `bank_holidays` apply all day.
    pub bank_holidays: Vec<Date>,
}

/// Where the person on call comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// Override number `n` of the rota.
    Override(usize),
    /// Layer number `n`, in its turn `shift`.
    Layer(usize, Shift),
}

/// Who is on call at an instant; `None` is a gap that must be paged to the fallback and
/// recorded, never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnCall {
    /// Who.
    pub person: PersonId,
    /// Through which override or layer turn.
    pub cover: Cover,
}

/// A stretch of time with one answer to "who is on call".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Inclusive.
    pub start: Timestamp,
    /// Exclusive.
    pub end: Timestamp,
    /// `None`: nobody.
    pub on_call: Option<OnCall>,
}

/// Microseconds of the core's timestamps, as `jiff` instants (saturating at jiff's range,
/// far beyond any rota).
fn instant(t: Timestamp) -> Instant {
    Instant::from_microsecond(t.as_micros()).unwrap_or(if t.as_micros() < 0 {
        Instant::MIN
    } else {
        Instant::MAX
    })
}

fn timestamp(i: Instant) -> Timestamp {
    Timestamp::from_micros(i.as_microsecond())
}

impl Rota {
    /// A rota with no layers in `zone`.
    pub fn new(zone: TimeZone) -> Self {
        Rota {
            zone,
            layers: Vec::new(),
            overrides: Vec::new(),
            bank_holidays: Vec::new(),
        }
    }

    /// The instant of a wall-clock time, skipped and repeated times resolved "compatibly".
    fn resolve(&self, at: DateTime) -> Timestamp {
        self.zone
            .to_ambiguous_timestamp(at)
            .compatible()
            .map_or(Timestamp::from_micros(i64::MAX), timestamp)
    }

    /// When `date` begins in the rota's zone.
    pub fn start_of(&self, date: Date) -> Timestamp {
        self.resolve(date.to_datetime(Time::midnight()))
    }

    fn local(&self, t: Timestamp) -> DateTime {
        self.zone.to_datetime(instant(t))
    }

    /// Where turn `k` of `layer` begins.
    fn turn_start(&self, layer: &Layer, k: i64) -> Timestamp {
        let n = layer.shift.count();
        match layer.shift {
            ShiftLength::Hours(_) => {
                let start = self.resolve(layer.start);
                let micros = k.saturating_mul(n).saturating_mul(3_600_000_000);
                Timestamp::from_micros(start.as_micros().saturating_add(micros))
            }
            ShiftLength::Days(_) | ShiftLength::Weeks(_) => {
                let days = if matches!(layer.shift, ShiftLength::Weeks(_)) {
                    k.saturating_mul(n).saturating_mul(7)
                } else {
                    k.saturating_mul(n)
                };
                let span = Span::new().try_days(days).unwrap_or_default();
                let Ok(at) = layer.start.checked_add(span) else {
                    return Timestamp::from_micros(if days < 0 { i64::MIN } else { i64::MAX });
                };
                self.resolve(at)
            }
        }
    }

    /// The turn of `layer` that covers `t` (whether or not the layer applies then).
    /// `None` when the layer has no participants.
    pub fn shift_at(&self, layer: &Layer, t: Timestamp) -> Option<Shift> {
        if layer.participants.is_empty() {
            return None;
        }
        let origin = self.turn_start(layer, 0);
        let elapsed = t.as_micros().saturating_sub(origin.as_micros()) / 1_000_000;
        let mut k = elapsed.div_euclid(layer.shift.nominal_seconds());
        // The guess is off by at most one turn per clock change crossed; walk to the turn.
        while self.turn_start(layer, k) > t {
            k -= 1;
        }
        while self.turn_start(layer, k + 1) <= t {
            k += 1;
        }
        let len = i64::try_from(layer.participants.len()).unwrap_or(i64::MAX);
        let who = usize::try_from(k.rem_euclid(len)).unwrap_or(0);
        Some(Shift {
            index: k,
            person: layer.participants[who],
            start: self.turn_start(layer, k),
            end: self.turn_start(layer, k + 1),
        })
    }

    /// Whether `layer` applies at `t`: always without windows, else inside one of them or
    /// on a bank holiday when the layer covers those.
    pub fn applies(&self, layer: &Layer, t: Timestamp) -> bool {
        if layer.windows.is_empty() {
            return true;
        }
        let local = self.local(t);
        (layer.bank_holidays && self.bank_holidays.contains(&local.date()))
            || layer.windows.iter().any(|w| w.contains(local))
    }

    /// Who is on call at `t`, and why; `None` when nobody is.
    pub fn on_call(&self, t: Timestamp) -> Option<OnCall> {
        if let Some((n, o)) = self
            .overrides
            .iter()
            .enumerate()
            .rev()
            .find(|(_, o)| o.from <= t && t < o.to)
        {
            return Some(OnCall {
                person: o.person,
                cover: Cover::Override(n),
            });
        }
        self.layers
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, l)| self.applies(l, t))
            .find_map(|(n, l)| {
                self.shift_at(l, t).map(|s| OnCall {
                    person: s.person,
                    cover: Cover::Layer(n, s),
                })
            })
    }

    /// Every instant in `[from, to)` at which the answer to "who is on call" may change:
    /// hand-offs, window edges, bank-holiday midnights and override edges.
    fn boundaries(&self, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        let mut out = vec![from];
        let inside = |t: Timestamp| from < t && t < to;
        for layer in &self.layers {
            if let Some(mut s) = self.shift_at(layer, from) {
                while s.end < to {
                    out.push(s.end);
                    let next = self.shift_at(layer, s.end);
                    match next {
                        Some(n) if n.end > s.end => s = n,
                        _ => break,
                    }
                }
            }
        }
        // Wall-clock edges, one day either side so overnight windows are not missed.
        let (first, last) = (self.local(from).date(), self.local(to).date());
        let mut day = first.yesterday().unwrap_or(first);
        while day <= last {
            let at = |time: Time| self.resolve(day.to_datetime(time));
            for layer in self.layers.iter().filter(|l| !l.windows.is_empty()) {
                for w in layer
                    .windows
                    .iter()
                    .filter(|w| w.days.contains(&day.weekday()))
                {
                    out.push(at(w.from));
                    let end_day = if w.overnight() {
                        day.tomorrow().unwrap_or(day)
                    } else {
                        day
                    };
                    out.push(self.resolve(end_day.to_datetime(w.to)));
                }
            }
            if self.bank_holidays.contains(&day) {
                out.push(at(Time::midnight()));
                if let Ok(next) = day.tomorrow() {
                    out.push(self.resolve(next.to_datetime(Time::midnight())));
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        for o in &self.overrides {
            out.extend([o.from, o.to]);
        }
        out.retain(|&t| t == from || inside(t));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Who is on call from `from` to `to`, as consecutive segments that cover the range
    /// exactly (no hole, no overlap); gaps are segments with nobody. Adjacent segments with
    /// the same person from the same layer turn or override are merged.
    pub fn timeline(&self, from: Timestamp, to: Timestamp) -> Vec<Segment> {
        if from >= to {
            return Vec::new();
        }
        let points = self.boundaries(from, to);
        let mut out: Vec<Segment> = Vec::with_capacity(points.len());
        for (i, &start) in points.iter().enumerate() {
            let end = points.get(i + 1).copied().unwrap_or(to);
            let on_call = self.on_call(start);
            match out.last_mut() {
                Some(prev) if prev.on_call == on_call => prev.end = end,
                _ => out.push(Segment {
                    start,
                    end,
                    on_call,
                }),
            }
        }
        out
    }
}

/// Weekdays as their three-letter English names, the way rotas are written.
mod weekdays {
    use jiff::civil::Weekday;
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    fn name(d: Weekday) -> &'static str {
        NAMES[usize::try_from(d.to_monday_zero_offset()).unwrap_or(0)]
    }

    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(days.iter().map(|d| name(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|n| {
                NAMES
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(n))
                    .and_then(|i| Weekday::from_monday_zero_offset(i8::try_from(i).ok()?).ok())
                    .ok_or_else(|| {
                        D::Error::custom(format!(
                            "{n:?} is not a day; expected one of {}",
                            NAMES.join(", ")
                        ))
                    })
            })
            .collect()
    }
}
