//! Rotas across the UK clock changes: no gap, no overlap, every shift the length its rule
//! says, hand-offs at the wall-clock time (issue "escalation and on-call", part 7).
//!
//! In 2026 Europe/London goes from GMT to BST at 01:00 UTC on 29 March (01:00-02:00 local
//! does not exist) and back at 01:00 UTC on 25 October (01:00-02:00 local happens twice).

use jiff::civil::{DateTime, Time, Weekday, date, time};
use jiff::tz::TimeZone;
use proptest::prelude::*;
use warden_core::Timestamp;
use warden_core::oncall::{Cover, Layer, Override, Rota, ShiftLength, Window};

fn london() -> TimeZone {
    TimeZone::get("Europe/London").expect("the tz database has Europe/London")
}

/// A core timestamp of a London wall-clock time (first occurrence; a skipped time moves on).
fn at(rota: &Rota, dt: DateTime) -> Timestamp {
    let i = rota
        .zone
        .to_ambiguous_timestamp(dt)
        .compatible()
        .expect("in range");
    Timestamp::from_micros(i.as_microsecond())
}

fn local(rota: &Rota, t: Timestamp) -> DateTime {
    let i = jiff::Timestamp::from_microsecond(t.as_micros()).expect("in range");
    rota.zone.to_datetime(i)
}

const HOUR: i64 = 3_600_000_000;

fn layer(start: DateTime, shift: ShiftLength, people: usize) -> Layer {
    Layer {
        name: "primary".into(),
        participants: (1..=i64::try_from(people).expect("small")).collect(),
        start,
        shift,
        windows: Vec::new(),
        bank_holidays: false,
    }
}

fn rota(layers: Vec<Layer>) -> Rota {
    Rota {
        layers,
        ..Rota::new(london())
    }
}

fn weekdays() -> Vec<Weekday> {
    vec![
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
    ]
}

/// Weeknights 17:00-09:00 and Friday 17:00 to Monday 09:00, with bank holidays, as
/// councils run out of hours. (Weeknights and whole weekend days alone would leave Monday
/// 00:00-09:00 uncovered: the configuration lint's "nobody on call" case.)
fn out_of_hours(start: DateTime, shift: ShiftLength, people: usize) -> Layer {
    Layer {
        windows: vec![
            Window {
                days: weekdays(),
                from: time(17, 0, 0, 0),
                to: time(9, 0, 0, 0),
            },
            Window {
                days: vec![Weekday::Saturday, Weekday::Sunday],
                from: Time::midnight(),
                to: Time::midnight(),
            },
            Window {
                days: vec![Weekday::Monday],
                from: Time::midnight(),
                to: time(9, 0, 0, 0),
            },
        ],
        bank_holidays: true,
        ..layer(start, shift, people)
    }
}

#[test]
fn a_daily_nine_oclock_hand_off_stays_at_nine_through_both_clock_changes() {
    let r = rota(vec![layer(
        date(2026, 3, 1).at(9, 0, 0, 0),
        ShiftLength::Days(1),
        3,
    )]);
    let l = &r.layers[0];
    // The shift from Saturday 28 March 09:00 GMT to Sunday 09:00 BST is 23 hours.
    let spring = r
        .shift_at(l, at(&r, date(2026, 3, 28).at(12, 0, 0, 0)))
        .expect("a shift");
    assert_eq!(local(&r, spring.start), date(2026, 3, 28).at(9, 0, 0, 0));
    assert_eq!(local(&r, spring.end), date(2026, 3, 29).at(9, 0, 0, 0));
    assert_eq!(spring.end.as_micros() - spring.start.as_micros(), 23 * HOUR);
    // And from Saturday 24 October 09:00 BST to Sunday 09:00 GMT, 25.
    let autumn = r
        .shift_at(l, at(&r, date(2026, 10, 24).at(12, 0, 0, 0)))
        .expect("a shift");
    assert_eq!(local(&r, autumn.end), date(2026, 10, 25).at(9, 0, 0, 0));
    assert_eq!(autumn.end.as_micros() - autumn.start.as_micros(), 25 * HOUR);
    // Turns keep their order: 1 March is person 1, so 28 March (27 turns later, a multiple
    // of three) is person 1 again and the Sunday after the change person 2.
    assert_eq!(spring.person, 1);
    let sunday = r
        .shift_at(l, at(&r, date(2026, 3, 29).at(12, 0, 0, 0)))
        .expect("a shift");
    assert_eq!((sunday.index, sunday.person), (28, 2));
}

#[test]
fn a_hand_off_in_the_skipped_hour_happens_when_the_clocks_reach_it() {
    // 01:30 does not exist on 29 March: that hand-off is at 02:30 BST, an hour after 01:30
    // GMT would have been, and the next one is at 01:30 BST again.
    let r = rota(vec![layer(
        date(2026, 3, 20).at(1, 30, 0, 0),
        ShiftLength::Days(1),
        2,
    )]);
    let l = &r.layers[0];
    let s = r
        .shift_at(l, at(&r, date(2026, 3, 29).at(12, 0, 0, 0)))
        .expect("a shift");
    assert_eq!(local(&r, s.start), date(2026, 3, 29).at(2, 30, 0, 0));
    assert_eq!(local(&r, s.end), date(2026, 3, 30).at(1, 30, 0, 0));
    assert_eq!(s.end.as_micros() - s.start.as_micros(), 23 * HOUR);
}

#[test]
fn weeknights_and_weekends_cover_the_spring_weekend_and_leave_weekdays_as_a_gap() {
    let mut r = rota(vec![out_of_hours(
        date(2026, 3, 2).at(9, 0, 0, 0),
        ShiftLength::Weeks(1),
        2,
    )]);
    r.bank_holidays = vec![date(2026, 5, 4)];
    let from = at(&r, date(2026, 3, 27).at(9, 0, 0, 0)); // Friday
    let to = at(&r, date(2026, 3, 30).at(12, 0, 0, 0)); // Monday noon
    let segments = r.timeline(from, to);
    let shown: Vec<(DateTime, DateTime, Option<i64>)> = segments
        .iter()
        .map(|s| {
            (
                local(&r, s.start),
                local(&r, s.end),
                s.on_call.map(|o| o.person),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            // Friday daytime: nobody (the lint's "nobody on call" case).
            (
                date(2026, 3, 27).at(9, 0, 0, 0),
                date(2026, 3, 27).at(17, 0, 0, 0),
                None
            ),
            // Friday 17:00 to Monday 09:00 without a break, across the skipped hour.
            (
                date(2026, 3, 27).at(17, 0, 0, 0),
                date(2026, 3, 30).at(9, 0, 0, 0),
                Some(2)
            ),
            (
                date(2026, 3, 30).at(9, 0, 0, 0),
                date(2026, 3, 30).at(12, 0, 0, 0),
                None
            ),
        ]
    );
    // Friday 17:00 to Monday 09:00 is 64 wall-clock hours but 63 real ones: the clocks went
    // forward that weekend.
    let weekend = &segments[1];
    assert_eq!(
        weekend.end.as_micros() - weekend.start.as_micros(),
        63 * HOUR
    );
    // The early-May bank holiday (a Monday) is covered all day.
    let holiday = r
        .on_call(at(&r, date(2026, 5, 4).at(12, 0, 0, 0)))
        .expect("covered on a bank holiday");
    assert!(matches!(holiday.cover, Cover::Layer(0, _)));
    assert_eq!(r.on_call(at(&r, date(2026, 5, 5).at(12, 0, 0, 0))), None);
}

#[test]
fn an_override_covers_every_layer_and_the_last_layer_that_applies_decides() {
    let mut r = rota(vec![
        layer(date(2026, 1, 5).at(9, 0, 0, 0), ShiftLength::Weeks(1), 3),
        Layer {
            participants: vec![40],
            ..out_of_hours(date(2026, 1, 5).at(9, 0, 0, 0), ShiftLength::Weeks(1), 1)
        },
    ]);
    let monday_noon = at(&r, date(2026, 10, 26).at(12, 0, 0, 0));
    let monday_night = at(&r, date(2026, 10, 26).at(22, 0, 0, 0));
    assert!(matches!(
        r.on_call(monday_noon).map(|o| o.cover),
        Some(Cover::Layer(0, _))
    ));
    assert_eq!(r.on_call(monday_night).map(|o| o.person), Some(40));
    r.overrides.push(Override {
        from: monday_noon,
        to: monday_night.saturating_add(warden_core::Micros::from_secs(1)),
        person: 99,
    });
    assert_eq!(r.on_call(monday_noon).map(|o| o.person), Some(99));
    assert_eq!(r.on_call(monday_night).map(|o| o.person), Some(99));
    assert_eq!(
        r.on_call(monday_night.saturating_add(warden_core::Micros::from_secs(1)))
            .map(|o| o.person),
        Some(40)
    );
}

fn shift_rule() -> impl Strategy<Value = ShiftLength> {
    prop_oneof![
        (1u32..=12).prop_map(ShiftLength::Hours),
        (1u32..=3).prop_map(ShiftLength::Days),
        (1u32..=2).prop_map(ShiftLength::Weeks),
    ]
}

/// A start in 2026 at any minute of the day (quarter hours, so the skipped and repeated
/// hours are hit often).
fn start() -> impl Strategy<Value = DateTime> {
    (
        1i8..=12,
        1i8..=28,
        0i8..24,
        prop_oneof![Just(0i8), Just(15), Just(30), Just(45)],
    )
        .prop_map(|(m, d, h, min)| date(2026, m, d).at(h, min, 0, 0))
}

/// A day around one of the two clock changes.
fn around_a_change() -> impl Strategy<Value = DateTime> {
    (
        prop_oneof![Just((3i8, 29i8)), Just((10, 25))],
        -3i8..=3,
        0i8..24,
    )
        .prop_map(|((m, d), offset, h)| {
            date(2026, m, d)
                .checked_add(jiff::Span::new().days(offset))
                .expect("in 2026")
                .at(h, 0, 0, 0)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Consecutive turns meet exactly, each is as long as its rule says (real hours for
    /// `Hours`, wall-clock days that may be 23 or 25 hours for `Days`/`Weeks`), and day
    /// turns hand over at the start's wall-clock time.
    #[test]
    fn turns_meet_exactly_and_have_their_rule_length(
        shift in shift_rule(),
        first in start(),
        from in around_a_change(),
        people in 1usize..5,
    ) {
        let r = rota(vec![layer(first, shift, people)]);
        let l = &r.layers[0];
        let mut s = r.shift_at(l, at(&r, from)).expect("a turn");
        for _ in 0..12 {
            prop_assert!(s.start < s.end);
            let next = r.shift_at(l, s.end).expect("a turn");
            prop_assert_eq!(next.start, s.end, "no gap, no overlap");
            prop_assert_eq!(next.index, s.index + 1);
            let len = s.end.as_micros() - s.start.as_micros();
            match shift {
                ShiftLength::Hours(n) => prop_assert_eq!(len, i64::from(n) * HOUR),
                ShiftLength::Days(n) | ShiftLength::Weeks(n) => {
                    let days = i64::from(n) * if matches!(shift, ShiftLength::Weeks(_)) { 7 } else { 1 };
                    prop_assert!((len - days * 24 * HOUR).abs() <= HOUR, "length {len}");
                    // The hand-off is at the start's wall-clock time, or an hour later
                    // when that time was skipped that night.
                    let t = local(&r, s.start).time();
                    let expected = first.time();
                    let skipped = t == expected.checked_add(jiff::Span::new().hours(1)).unwrap_or(expected);
                    prop_assert!(t == expected || skipped, "hand-off at {t}, rule {expected}");
                }
            }
            // Anywhere inside the turn, it is that turn's person.
            let mid = warden_core::Timestamp::from_micros(s.start.as_micros() + len / 2);
            prop_assert_eq!(r.shift_at(l, mid).map(|m| m.person), Some(s.person));
            prop_assert_eq!(r.on_call(mid).map(|o| o.person), Some(s.person));
            s = next;
        }
    }

    /// A whole rota's timeline over two weeks covers the range exactly, and each segment
    /// answers "who is on call" the way `on_call` does at its start, middle and last moment.
    #[test]
    fn a_timeline_covers_its_range_and_agrees_with_on_call(
        shift in shift_rule(),
        first in start(),
        from in around_a_change(),
        people in 1usize..4,
        with_override in any::<bool>(),
    ) {
        let mut r = rota(vec![
            layer(first, shift, people),
            out_of_hours(first, shift, people),
        ]);
        r.layers[0].windows = vec![Window { days: weekdays(), from: time(9, 0, 0, 0), to: time(13, 0, 0, 0) }];
        r.bank_holidays = vec![date(2026, 3, 30), date(2026, 10, 26)];
        let from = at(&r, from);
        let to = from.saturating_add(warden_core::Micros::from_secs(14 * 86_400));
        if with_override {
            r.overrides.push(Override {
                from: from.saturating_add(warden_core::Micros::from_secs(3_600)),
                to: from.saturating_add(warden_core::Micros::from_secs(30 * 3_600)),
                person: 77,
            });
        }
        let segments = r.timeline(from, to);
        prop_assert_eq!(segments.first().map(|s| s.start), Some(from));
        prop_assert_eq!(segments.last().map(|s| s.end), Some(to));
        for pair in segments.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
        for s in &segments {
            prop_assert!(s.start < s.end);
            let len = s.end.as_micros() - s.start.as_micros();
            for t in [s.start.as_micros(), s.start.as_micros() + len / 2, s.end.as_micros() - 1] {
                prop_assert_eq!(r.on_call(Timestamp::from_micros(t)), s.on_call, "at {}", local(&r, Timestamp::from_micros(t)));
            }
        }
    }
}

mod lint {
    use std::collections::{BTreeMap, BTreeSet};

    use jiff::civil::date;
    use warden_core::Micros;
    use warden_core::oncall::lint::check;
    use warden_core::oncall::{Chain, Finding, Setup, ShiftLength, Step, Target};

    use super::{at, layer, local, out_of_hours, rota};

    fn chain(targets: Vec<Target>, fallback: Vec<i64>) -> Chain {
        Chain {
            steps: vec![Step {
                targets,
                wait: Micros::from_secs(120),
                keep_calling_every: None,
            }],
            repeat: 0,
            fallback,
            ack_timeout: Micros::from_secs(1_800),
            reminder_every: None,
        }
    }

    /// Over the fortnight around the spring change: the out-of-hours rota a chain pages is
    /// empty every weekday daytime, and on its bank holiday when that layer does not cover
    /// holidays; one person has no verified contact; one chain has no fallback and names a
    /// team that does not exist.
    #[test]
    fn the_lint_finds_gaps_holidays_unreachable_people_and_chains_without_a_fallback() {
        let mut ooh = rota(vec![out_of_hours(
            date(2026, 3, 2).at(9, 0, 0, 0),
            ShiftLength::Weeks(1),
            2,
        )]);
        ooh.layers[0].bank_holidays = false;
        ooh.bank_holidays = vec![date(2026, 4, 3)]; // Good Friday
        let always = rota(vec![layer(
            date(2026, 3, 2).at(9, 0, 0, 0),
            ShiftLength::Days(1),
            3,
        )]);
        let rotas = BTreeMap::from([(1, ooh), (2, always)]);
        let chains = BTreeMap::from([
            (10, chain(vec![Target::Rota(1)], vec![900])),
            (
                11,
                chain(vec![Target::Rota(2), Target::Team(5)], Vec::new()),
            ),
        ]);
        let teams = BTreeMap::new();
        let reachable: BTreeSet<i64> = [1, 3, 900].into_iter().collect();
        let setup = Setup {
            rotas: &rotas,
            chains: &chains,
            teams: &teams,
            reachable: &reachable,
        };
        let r = &rotas[&1];
        let from = at(r, date(2026, 3, 30).at(0, 0, 0, 0)); // a Monday
        let to = at(r, date(2026, 4, 6).at(0, 0, 0, 0));
        let findings = check(&setup, from, to);

        let gaps: Vec<_> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::NobodyOnCall {
                    chain: 10,
                    rota: 1,
                    from,
                    to,
                } => Some((local(r, *from), local(r, *to))),
                _ => None,
            })
            .collect();
        // Monday to Friday 09:00-17:00: Good Friday is a gap too, the layer does not cover
        // holidays.
        assert_eq!(gaps.len(), 5, "{gaps:?}");
        assert_eq!(
            gaps[0],
            (
                date(2026, 3, 30).at(9, 0, 0, 0),
                date(2026, 3, 30).at(17, 0, 0, 0)
            )
        );
        assert!(findings.contains(&Finding::EmptyOnBankHoliday {
            rota: 1,
            date: date(2026, 4, 3)
        }));
        assert!(findings.contains(&Finding::NoFallback { chain: 11 }));
        assert!(!findings.contains(&Finding::NoFallback { chain: 10 }));
        assert!(findings.contains(&Finding::MissingTarget {
            chain: 11,
            target: Target::Team(5)
        }));
        // People 1 and 2 (out of hours) and 1-3 (always) can be paged; 2 has no verified
        // contact method.
        let unreachable: Vec<_> = findings
            .iter()
            .filter_map(|f| match f {
                Finding::NoVerifiedContact { person } => Some(*person),
                _ => None,
            })
            .collect();
        assert_eq!(unreachable, vec![2]);
        // The rota that always has someone raises no gap.
        assert!(
            !findings
                .iter()
                .any(|f| matches!(f, Finding::NobodyOnCall { rota: 2, .. }))
        );

        // Covering holidays closes the holiday finding and that Friday's gap.
        let mut covered = rotas.clone();
        covered.get_mut(&1).expect("rota 1").layers[0].bank_holidays = true;
        let findings = check(
            &Setup {
                rotas: &covered,
                ..setup
            },
            from,
            to,
        );
        assert!(
            !findings
                .iter()
                .any(|f| matches!(f, Finding::EmptyOnBankHoliday { .. }))
        );
        assert_eq!(
            findings
                .iter()
                .filter(|f| matches!(f, Finding::NobodyOnCall { rota: 1, .. }))
                .count(),
            4
        );
    }
}
