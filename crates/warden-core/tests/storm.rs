//! Lanes under a storm: 20,000 units report mains failure within ten seconds, and one
//! pendant press arrives in the middle of it.

mod common;

use common::{H, opened};
use warden_core::{
    Config, DeviceId, DeviceInfo, Effect, IncidentState, Kind, Micros, Name, Priority, Subject,
};
use warden_types::Qualifier;

const UNITS: i64 = 20_000;
const AREAS: i64 = 150;

#[test]
fn a_pendant_press_inside_a_twenty_thousand_unit_mains_storm_is_offered_first() {
    let mut h = H::new(Config::default());
    let areas: Vec<Name> = (0..AREAS)
        .map(|a| Name::from(format!("scheme-{a:03}")))
        .collect();
    for d in 1..=UNITS {
        // Every 97th unit has no area: they form their own group.
        let area = (d % 97 != 0).then(|| areas[usize::try_from(d % AREAS).unwrap_or(0)].clone());
        h.device(DeviceInfo {
            area,
            test_interval: Some(Micros::from_hours(24)),
            ..DeviceInfo::new(DeviceId(d))
        });
    }
    let pendant_unit = UNITS + 1;
    let mut all = Vec::new();
    let mut pendant_effects = Vec::new();
    let step = Micros::from_micros(10_000_000 / UNITS);
    for d in 1..=UNITS {
        h.advance(step);
        all.extend(h.cid(d, 301, Qualifier::New));
        if d == UNITS / 2 {
            pendant_effects = h.press(pendant_unit);
        }
    }
    // The press became its own life-critical incident and was offered at once.
    let p = opened(&pendant_effects);
    assert_eq!(p.len(), 1);
    let p = p[0];
    assert!(pendant_effects.iter().any(|e| matches!(
        e,
        Effect::Offer { incident, priority: Priority::LifeCritical, kind: Kind::Pendant, .. } if *incident == p
    )));
    assert!(
        pendant_effects.len() < 10,
        "the press did not pay for the storm"
    );
    // It heads the queue, ahead of everything the storm produced.
    let queue = h.core.pending_offers();
    assert_eq!(queue.first().map(|q| q.incident), Some(p));
    assert!(queue[1..].iter().all(|q| q.priority == Priority::Technical));
    // The storm is a bounded number of group incidents, one per area (plus the no-area
    // group), not 20,000.
    let open = h.core.open_incidents();
    let groups: Vec<_> = open
        .iter()
        .filter(|i| matches!(i.subject, Subject::Group { .. }))
        .collect();
    assert_eq!(groups.len(), usize::try_from(AREAS).unwrap_or(0) + 1);
    assert_eq!(
        open.len(),
        groups.len() + 1,
        "every individual incident was folded"
    );
    let members: usize = groups
        .iter()
        .map(|g| g.group.as_ref().map_or(0, |i| i.members.len()))
        .sum();
    assert_eq!(members, usize::try_from(UNITS).unwrap_or(0));
    assert!(
        groups
            .iter()
            .all(|g| g.kind == Kind::MainsFail && g.state == IncidentState::Offered)
    );
    // Individual incidents opened before each area's threshold were at most five per area.
    let individually_opened = opened(&all).len() - groups.len();
    assert!(individually_opened <= 5 * (usize::try_from(AREAS).unwrap_or(0) + 1));
    assert_eq!(
        h.core.incident(p).map(|i| (i.priority, i.state)),
        Some((Priority::LifeCritical, IncidentState::Offered))
    );
}
