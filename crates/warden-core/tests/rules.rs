//! Table tests, one group per triage rule.

mod common;

use common::{H, assert_audited, no_audit, opened, opened_one, rejected, resolved};
use warden_core::{
    Actor, AlarmKind, AuditAction, AutoReason, Change, Classifier, CodeOverride, CodeRef, Config,
    DeviceId, DeviceInfo, Effect, Event, IncidentId, IncidentState, Input, Kind, Micros, Name,
    PolicyOverride, Priority, PriorityOverride, RejectReason, Resolution, Role, SignalWhat,
    SlaThresholds, Snapshot, Subject, Timestamp, cid_kind, lane_of, sia_kind,
};
use warden_types::Qualifier;

const OP1: Actor = Actor::operator(1);
const OP2: Actor = Actor::operator(2);
const SUP: Actor = Actor::supervisor(9);
const ADMIN: Actor = Actor::admin(7);

fn cid(code: u16, q: Qualifier) -> SignalWhat {
    SignalWhat::ContactId { code, qualifier: q }
}

fn sia(code: [u8; 2]) -> SignalWhat {
    SignalWhat::Sia {
        code,
        restore: false,
    }
}

fn lane(what: &SignalWhat) -> Priority {
    lane_of(what, None, &Classifier::new(&Config::default()))
}

// ----- classification ------------------------------------------------------------------

#[test]
fn contact_id_codes_map_to_the_telecare_kinds_and_priorities() {
    use Priority::{Information as I, LifeCritical as L, Technical as T, Urgent as U};
    let table: &[(u16, Kind, Priority)] = &[
        (100, Kind::Medical, L),
        (101, Kind::Pendant, L),
        (102, Kind::FailToCheckIn, L),
        (110, Kind::Fire, L),
        (111, Kind::Smoke, L),
        (112, Kind::Fire, L),
        (113, Kind::Fire, L),
        (114, Kind::Heat, L),
        (115, Kind::Fire, L),
        (116, Kind::Smoke, L),
        (117, Kind::Fire, L),
        (118, Kind::Fire, L),
        (120, Kind::Panic, L),
        (121, Kind::Duress, L),
        (122, Kind::Duress, L),
        (151, Kind::Gas, L),
        (162, Kind::Co, L),
        (641, Kind::Inactivity, L),
        (130, Kind::Intrusion, U),
        (134, Kind::DoorExit, U),
        (154, Kind::Flood, U),
        (158, Kind::TemperatureHigh, U),
        (159, Kind::TemperatureLow, U),
        (137, Kind::Tamper, T),
        (300, Kind::DeviceFault, T),
        (301, Kind::MainsFail, T),
        (302, Kind::LowBattery, T),
        (350, Kind::CommsFault, T),
        (351, Kind::LineFault, T),
        (384, Kind::LowBattery, T),
        (406, Kind::Cancel, I),
        (465, Kind::Cancel, I),
        (401, Kind::OpenClose, I),
        (602, Kind::Test, I),
        (603, Kind::Test, I),
        (625, Kind::Status, I),
    ];
    let c = Classifier::new(&Config::default());
    for &(code, kind, priority) in table {
        let class = c.classify(&cid(code, Qualifier::New), None);
        assert_eq!((code, class.kind, class.priority), (code, kind, priority));
    }
    // A restore keeps its condition's lane, so it travels with the alarm.
    let r = c.classify(&cid(101, Qualifier::Restore), None);
    assert_eq!(
        (r.kind, r.event, r.priority),
        (Kind::Pendant, Event::Restore, L)
    );
    assert_eq!(
        c.classify(&cid(101, Qualifier::Status), None).event,
        Event::Status
    );
    assert_eq!(
        c.classify(&cid(406, Qualifier::New), None).event,
        Event::Cancel
    );
}

#[test]
fn every_code_of_the_shared_table_is_known_and_others_are_unknown() {
    for c in warden_protocol::codes::contact_id_codes() {
        assert_ne!(cid_kind(c.code), Kind::Unknown, "code {}", c.code);
    }
    for code in [0, 99, 160, 199, 699, 1000, u16::MAX] {
        assert_eq!(cid_kind(code), Kind::Unknown, "code {code}");
    }
    let c = Classifier::new(&Config::default());
    let u = c.classify(&cid(160, Qualifier::New), None);
    assert_eq!((u.kind, u.priority), (Kind::Unknown, Priority::Urgent));
    assert_ne!(u.tag, 0, "unknown codes are told apart");
}

#[test]
fn sia_codes_map_to_kinds_with_restores_in_the_code() {
    use Priority::{Information as I, LifeCritical as L, Technical as T, Urgent as U};
    let table: &[(&[u8; 2], Kind, bool, Priority)] = &[
        (b"MA", Kind::Medical, false, L),
        (b"QA", Kind::Pendant, false, L),
        (b"QH", Kind::Pendant, true, L),
        (b"FA", Kind::Fire, false, L),
        (b"PA", Kind::Panic, false, L),
        (b"HA", Kind::Duress, false, L),
        (b"GA", Kind::Gas, false, L),
        (b"KA", Kind::Heat, false, L),
        (b"NA", Kind::Inactivity, false, L),
        (b"WA", Kind::Flood, false, U),
        (b"ZA", Kind::TemperatureLow, false, U),
        (b"AT", Kind::MainsFail, false, T),
        (b"AR", Kind::MainsFail, true, T),
        (b"YT", Kind::LowBattery, false, T),
        (b"YC", Kind::CommsFault, false, T),
        (b"TA", Kind::Tamper, false, T),
        (b"RP", Kind::Test, false, I),
        (b"OP", Kind::OpenClose, false, I),
        (b"CL", Kind::OpenClose, false, I),
    ];
    let c = Classifier::new(&Config::default());
    for &(code, kind, restore, priority) in table {
        assert_eq!(sia_kind(*code), Some((kind, restore)));
        let class = c.classify(&sia(*code), None);
        assert_eq!(class.priority, priority, "{code:?}");
        assert_eq!(class.event == Event::Restore, restore);
    }
    assert_eq!(sia_kind(*b"ZZ"), None);
    assert_eq!(c.classify(&sia(*b"ZZ"), None).kind, Kind::Unknown);
    // Every SIA code the protocol crate can describe is classified.
    for (code, _) in warden_protocol::codes::sia_codes() {
        let b = code.as_bytes();
        assert!(sia_kind([b[0], b[1]]).is_some(), "SIA {code}");
    }
}

#[test]
fn every_mqtt_alarm_kind_has_a_kind_and_other_signals_have_lanes() {
    let c = Classifier::new(&Config::default());
    for k in AlarmKind::ALL {
        let class = c.classify(
            &SignalWhat::Mqtt {
                kind: k,
                restore: false,
            },
            None,
        );
        assert_ne!(class.kind, Kind::Unknown, "{k:?}");
    }
    assert_eq!(
        lane(&SignalWhat::Mqtt {
            kind: AlarmKind::Fall,
            restore: false
        }),
        Priority::LifeCritical
    );
    assert_eq!(lane(&SignalWhat::Heartbeat), Priority::Information);
    assert_eq!(lane(&SignalWhat::LinkLost), Priority::Technical);
    assert_eq!(
        lane(&SignalWhat::Presence { online: false }),
        Priority::Technical
    );
    assert_eq!(
        lane(&SignalWhat::Unknown {
            raw_summary: "?".into()
        }),
        Priority::Urgent
    );
}

#[test]
fn overrides_remap_codes_per_device_type_and_priorities_per_client() {
    let mut config = Config::default();
    config.overrides.codes.push(CodeOverride {
        code: CodeRef::ContactId(130),
        device_type: Some(Name::from("door-contact")),
        kind: Kind::DoorExit,
    });
    config.overrides.priorities.extend([
        PriorityOverride {
            kind: Kind::DoorExit,
            device_type: None,
            client: Some(77),
            priority: Priority::LifeCritical,
        },
        PriorityOverride {
            kind: Kind::LowBattery,
            device_type: Some(Name::from("smoke")),
            client: None,
            priority: Priority::Urgent,
        },
        PriorityOverride {
            kind: Kind::LowBattery,
            device_type: Some(Name::from("smoke")),
            client: Some(5),
            priority: Priority::Information,
        },
    ]);
    config.unknown_priority = Priority::LifeCritical;
    let c = Classifier::new(&config);
    let door = DeviceInfo {
        device_type: Some(Name::from("door-contact")),
        ..DeviceInfo::new(DeviceId(1))
    };
    let door_77 = DeviceInfo {
        client: Some(77),
        ..door.clone()
    };
    let smoke = |client| DeviceInfo {
        device_type: Some(Name::from("smoke")),
        client,
        ..DeviceInfo::new(DeviceId(2))
    };
    let burglary = cid(130, Qualifier::New);
    assert_eq!(c.classify(&burglary, None).kind, Kind::Intrusion);
    assert_eq!(c.classify(&burglary, Some(&door)).kind, Kind::DoorExit);
    assert_eq!(lane_of(&burglary, Some(&door), &c), Priority::Urgent);
    assert_eq!(
        lane_of(&burglary, Some(&door_77), &c),
        Priority::LifeCritical
    );
    let battery = cid(302, Qualifier::New);
    assert_eq!(lane_of(&battery, None, &c), Priority::Technical);
    assert_eq!(lane_of(&battery, Some(&smoke(None)), &c), Priority::Urgent);
    assert_eq!(
        lane_of(&battery, Some(&smoke(Some(4))), &c),
        Priority::Urgent
    );
    assert_eq!(
        lane_of(&battery, Some(&smoke(Some(5))), &c),
        Priority::Information,
        "client and type together are the most specific"
    );
    assert_eq!(
        lane_of(&cid(160, Qualifier::New), None, &c),
        Priority::LifeCritical
    );
}

// ----- correlation -----------------------------------------------------------------------

#[test]
fn repeated_presses_and_restores_join_the_open_incident() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    h.secs(30);
    let e = h.press(5);
    assert!(opened(&e).is_empty());
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated { incident, change: Change::Signal { event: Event::Raise }, signal_count: 2, .. } if *incident == id
    )));
    h.secs(30);
    let e = h.cid(5, 101, Qualifier::Restore);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated {
            change: Change::Restored,
            signal_count: 3,
            ..
        }
    )));
    assert!(
        resolved(&e).is_empty(),
        "a life-critical restore never closes"
    );
    assert_audited(&e);
    let inc = h.core.incident(id).expect("still open");
    assert_eq!((inc.restore_count, inc.condition_active), (1, false));
    // Another cause at the same unit is another incident.
    h.secs(1);
    assert_ne!(opened_one(&h.cid(5, 111, Qualifier::New)), id);
    assert_eq!(h.core.open_incident_count(), 2);
}

#[test]
fn the_same_alarm_through_two_paths_counts_once() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    h.advance(Micros::from_millis(800));
    // Second path: another signal id, same unit, cause and qualifier.
    let e = h.signal(
        5,
        SignalWhat::Sia {
            code: *b"QA",
            restore: false,
        },
    );
    assert_eq!(
        no_audit(&e),
        vec![&Effect::Duplicate {
            signal: warden_core::SignalId(2),
            incident: Some(id)
        }]
    );
    // The very same signal offered again (redelivery) is a duplicate whatever the time.
    h.secs(5);
    let s = h.make(5, cid(101, Qualifier::New), warden_core::SignalId(1));
    let e = h.core.handle(Input::Signal(s), h.now);
    assert!(matches!(no_audit(&e)[..], [Effect::Duplicate { .. }]));
    // After the window, a press is a repeat press.
    h.secs(6);
    assert!(h.press(5).iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated {
            signal_count: 2,
            ..
        }
    )));
    assert_eq!(h.core.incident(id).map(|i| i.signal_count), Some(2));
}

#[test]
fn a_press_after_its_incident_was_resolved_is_never_swallowed_as_a_duplicate() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    h.secs(2);
    h.claim(id, OP1);
    h.secs(2);
    assert_eq!(resolved(&h.resolve(id, OP1, "false_alarm")), vec![id]);
    h.secs(2);
    let e = h.press(5);
    let again = opened_one(&e);
    assert_ne!(again, id);
    assert!(e.iter().any(|e| matches!(e, Effect::Offer { .. })));
}

// ----- cancel policy -------------------------------------------------------------------

#[test]
fn a_cancel_is_recorded_but_a_life_critical_incident_waits_for_an_operator() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    h.secs(20);
    let e = h.cid(5, 406, Qualifier::New);
    assert!(resolved(&e).is_empty());
    assert!(e.iter().any(
        |e| matches!(e, Effect::IncidentUpdated { incident, change: Change::Cancelled, .. } if *incident == id)
    ));
    assert!(e.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == AuditAction::CancelRecorded && a.detail.contains("operator must close"))));
    let inc = h.core.incident(id).expect("open");
    assert_eq!(inc.cancelled_at, Some(h.now));
    assert_eq!(inc.state, IncidentState::Offered);
    // Even a policy asking for it cannot close a life-critical incident.
    let mut config = Config::default();
    config.overrides.policies.push(PolicyOverride {
        kind: Kind::Pendant,
        auto_close_on_restore: true,
        auto_close_on_cancel: true,
    });
    let mut h = H::new(config);
    let id = opened_one(&h.press(5));
    h.secs(20);
    assert!(resolved(&h.cid(5, 465, Qualifier::New)).is_empty());
    h.secs(20);
    assert!(resolved(&h.cid(5, 101, Qualifier::Restore)).is_empty());
    assert!(h.core.incident(id).is_some());
}

#[test]
fn cancel_policy_per_kind_closes_unclaimed_urgent_incidents_when_configured() {
    let mut config = Config::default();
    config.overrides.policies.push(PolicyOverride {
        kind: Kind::Flood,
        auto_close_on_restore: false,
        auto_close_on_cancel: true,
    });
    let mut h = H::new(config);
    let flood = opened_one(&h.cid(5, 154, Qualifier::New));
    h.secs(20);
    let e = h.signal(
        5,
        SignalWhat::Mqtt {
            kind: AlarmKind::Cancel,
            restore: false,
        },
    );
    assert_eq!(resolved(&e), vec![flood]);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Resolved {
            resolution: Resolution::Auto {
                reason: AutoReason::Cancelled
            },
            ..
        }
    )));
    // Claimed: recorded, left to the operator.
    h.secs(20);
    let flood = opened_one(&h.cid(5, 154, Qualifier::New));
    h.claim(flood, OP1);
    h.secs(20);
    assert!(resolved(&h.cid(5, 406, Qualifier::New)).is_empty());
    // A cancel with nothing open does nothing.
    assert!(no_audit(&h.cid(6, 406, Qualifier::New)).is_empty());
}

#[test]
fn technical_restores_close_unclaimed_incidents_and_annotate_claimed_ones() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.cid(5, 301, Qualifier::New));
    h.secs(60);
    let e = h.cid(5, 301, Qualifier::Restore);
    assert_eq!(resolved(&e), vec![id]);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Resolved {
            resolution: Resolution::Auto {
                reason: AutoReason::Restored
            },
            ..
        }
    )));
    h.secs(60);
    let id = opened_one(&h.cid(5, 302, Qualifier::New));
    h.claim(id, OP1);
    h.secs(60);
    let e = h.cid(5, 302, Qualifier::Restore);
    assert!(resolved(&e).is_empty());
    assert_eq!(h.core.incident(id).map(|i| i.condition_active), Some(false));
}

// ----- lifecycle and roles -------------------------------------------------------------

#[test]
fn lifecycle_runs_raised_offered_claimed_resolved_with_every_step_timestamped_and_audited() {
    let mut h = H::new(Config::default());
    let t0 = h.now;
    let e = h.press(5);
    let id = opened_one(&e);
    assert_audited(&e);
    let actions: Vec<AuditAction> = e
        .iter()
        .filter_map(|e| match e {
            Effect::Audit(a) => Some(a.action),
            _ => None,
        })
        .collect();
    assert_eq!(actions, vec![AuditAction::Opened, AuditAction::Offered]);
    assert!(matches!(e.last(), Some(Effect::Offer { .. })));
    let inc = h.core.incident(id).expect("open");
    assert_eq!(
        (inc.state, inc.raised_at, inc.offered_at),
        (IncidentState::Offered, t0, Some(t0))
    );
    h.secs(23);
    let e = h.claim(id, OP1);
    assert_audited(&e);
    assert_eq!(
        no_audit(&e),
        vec![&Effect::Claimed {
            incident: id,
            actor: OP1,
            answer_time: Some(Micros::from_secs(23)),
            taken_from: None
        }]
    );
    h.secs(10);
    let e = h.note(id, OP1, "spoke to client, fell in bathroom");
    assert!(e.iter().any(|e| matches!(e, Effect::Audit(a) if a.action == AuditAction::Noted && a.actor == Some(OP1) && a.detail.contains("bathroom"))));
    h.secs(100);
    let e = h.resolve(id, OP1, "ambulance_called");
    assert_audited(&e);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Resolved { resolution: Resolution::Operator { actor, .. }, answer_time: Some(t), .. } if *actor == OP1 && *t == Micros::from_secs(23)
    )));
    assert!(h.core.incident(id).is_none());
    assert_eq!(
        rejected(&h.resolve(id, OP1, "again")),
        vec![RejectReason::AlreadyResolved]
    );
}

#[test]
fn two_operators_can_never_hold_one_incident() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    h.claim(id, OP1);
    assert_eq!(
        rejected(&h.claim(id, OP2)),
        vec![RejectReason::ClaimedByOther { holder: OP1 }]
    );
    assert_eq!(
        rejected(&h.claim(id, OP1)),
        vec![RejectReason::AlreadyHolder]
    );
    assert_eq!(
        rejected(&h.claim(id, SUP)),
        vec![RejectReason::ClaimedByOther { holder: OP1 }],
        "a supervisor must take over explicitly"
    );
    assert_eq!(h.core.incident(id).and_then(|i| i.holder), Some(OP1));
}

#[test]
fn role_rules_for_every_command() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    let role = |r| vec![RejectReason::RoleNotAllowed { role: r }];
    // Admins never handle alarms, but may write notes.
    assert_eq!(rejected(&h.claim(id, ADMIN)), role(Role::Admin));
    assert_eq!(rejected(&h.take_over(id, ADMIN)), role(Role::Admin));
    assert_eq!(rejected(&h.resolve(id, ADMIN, "x")), role(Role::Admin));
    assert_eq!(rejected(&h.release(id, ADMIN)), role(Role::Admin));
    assert!(rejected(&h.note(id, ADMIN, "checked the unit history")).is_empty());
    // Operators cannot take over, release what they do not hold, or resolve unclaimed.
    assert_eq!(rejected(&h.take_over(id, OP1)), role(Role::Operator));
    assert_eq!(
        rejected(&h.release(id, OP1)),
        vec![RejectReason::NotClaimed]
    );
    assert_eq!(
        rejected(&h.resolve(id, OP1, "x")),
        vec![RejectReason::NotHolder { holder: None }]
    );
    h.claim(id, OP1);
    assert_eq!(
        rejected(&h.release(id, OP2)),
        vec![RejectReason::NotHolder { holder: Some(OP1) }]
    );
    assert_eq!(
        rejected(&h.resolve(id, OP2, "x")),
        vec![RejectReason::NotHolder { holder: Some(OP1) }]
    );
    // A supervisor takes over, and may release or resolve anyone's incident.
    h.secs(5);
    let e = h.take_over(id, SUP);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Claimed { actor, taken_from: Some(from), answer_time: None, .. } if *actor == SUP && *from == OP1
    )));
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Audit(a) if a.action == AuditAction::TakenOver))
    );
    assert_eq!(
        rejected(&h.take_over(id, SUP)),
        vec![RejectReason::AlreadyHolder]
    );
    let e = h.release(id, SUP);
    assert!(matches!(
        no_audit(&e)[..],
        [Effect::Released { .. }, Effect::Offer { .. }]
    ));
    assert_eq!(
        h.core.incident(id).map(|i| (i.state, i.holder)),
        Some((IncidentState::Offered, None))
    );
    h.claim(id, OP2);
    let e = h.release(id, SUP);
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Released { holder, .. } if *holder == OP2))
    );
    assert_eq!(resolved(&h.resolve(id, SUP, "no_response")), vec![id]);
}

#[test]
fn bad_input_is_rejected_with_a_reason_never_a_panic() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    assert_eq!(
        rejected(&h.claim(IncidentId(999), OP1)),
        vec![RejectReason::UnknownIncident]
    );
    assert_eq!(
        rejected(&h.claim(IncidentId(0), OP1)),
        vec![RejectReason::UnknownIncident]
    );
    assert_eq!(
        rejected(&h.note(id, OP1, "   ")),
        vec![RejectReason::EmptyNote]
    );
    assert_eq!(
        rejected(&h.note(id, OP1, &"x".repeat(4001))),
        vec![RejectReason::NoteTooLong { max: 4000 }]
    );
    let e = h.core.handle(
        Input::ForgetDevice {
            device: DeviceId(404),
        },
        h.now,
    );
    assert_eq!(
        rejected(&e),
        vec![RejectReason::UnknownDevice {
            device: DeviceId(404)
        }]
    );
    let mut bad = Config::default();
    bad.runaway.max_signals = 0;
    let e = h.core.handle(Input::Configure(Box::new(bad)), h.now);
    assert!(matches!(
        rejected(&e)[..],
        [RejectReason::InvalidConfig { .. }]
    ));
    let mut snap = h.core.snapshot();
    snap.version = 99;
    let e = h.core.handle(Input::Restore(Box::new(snap)), h.now);
    assert_eq!(
        rejected(&e),
        vec![RejectReason::UnsupportedSnapshot { version: 99 }]
    );
    assert!(h.core.incident(id).is_some(), "nothing changed");
}

// ----- unknown codes -------------------------------------------------------------------

#[test]
fn unknown_codes_are_shown_to_an_operator_with_the_raw_summary_never_dropped() {
    let mut h = H::new(Config {
        unknown_priority: Priority::Information,
        ..Config::default()
    });
    let e = h.signal(
        5,
        SignalWhat::Unknown {
            raw_summary: "sur-gard 5 0 ZZ 99 unknown frame".into(),
        },
    );
    let id = opened_one(&e);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentOpened { kind: Kind::Unknown, priority: Priority::Information, summary: Some(s), .. } if s.contains("ZZ 99")
    )));
    // An unknown Contact ID code, even as a "restore", is shown too: from the same unit it
    // joins the open unknown incident and becomes its summary.
    h.secs(1);
    let e = h.cid(5, 160, Qualifier::Restore);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated { incident, change: Change::Signal { event: Event::Raise }, .. } if *incident == id
    )));
    assert!(
        h.core
            .incident(id)
            .and_then(|i| i.summary.clone())
            .is_some_and(|s| s.contains("contact id 160"))
    );
    // From another unit, a new incident.
    let e = h.cid(6, 700, Qualifier::New);
    assert_eq!(opened(&e).len(), 1);
    assert_eq!(h.core.queue().count(), 2);
}

// ----- supervision ---------------------------------------------------------------------

fn supervised(id: i64, interval: Micros) -> DeviceInfo {
    DeviceInfo {
        test_interval: Some(interval),
        area: Some(Name::from("riverside")),
        ..DeviceInfo::new(DeviceId(id))
    }
}

#[test]
fn fail_to_report_fires_at_exactly_interval_plus_ten_percent_plus_two_minutes() {
    let mut h = H::new(Config::default());
    h.device(supervised(5, Micros::from_hours(24)));
    h.secs(3600);
    let heard = h.now;
    assert!(
        no_audit(&h.cid(5, 602, Qualifier::New)).is_empty(),
        "a test opens nothing"
    );
    let due = heard.saturating_add(
        Micros::from_hours(24)
            .saturating_add(Micros::from_mins(144))
            .saturating_add(Micros::from_mins(2)),
    );
    settle_before(&mut h, due);
    assert_eq!(h.core.next_deadline(), Some(due));
    h.now = due.saturating_sub(Micros(1));
    assert!(h.tick().is_empty());
    h.now = due;
    let e = h.tick();
    assert_audited(&e);
    let id = opened_one(&e);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::FailToReport { incident: Some(inc), device: DeviceId(5), last_heard: Some(last), due: at } if *inc == id && *last == heard && *at == due
    )));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentOpened {
            kind: Kind::FailToReport,
            priority: Priority::Technical,
            ..
        }
    )));
    assert_eq!(h.core.next_deadline(), None, "reported once, not again");
    h.secs(3600);
    assert!(h.tick().is_empty());
    // Heard again: cleared, recorded.
    h.secs(60);
    let e = h.signal(5, SignalWhat::Heartbeat);
    assert_eq!(resolved(&e), vec![id]);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Resolved {
            resolution: Resolution::Auto {
                reason: AutoReason::DeviceHeard
            },
            ..
        }
    )));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated {
            change: Change::DeviceHeard,
            ..
        }
    )));
    assert!(h.core.next_deadline().is_some(), "supervised again");
}

#[test]
fn supervision_counts_from_registration_for_a_unit_never_heard_and_a_claimed_report_is_annotated() {
    let mut h = H::new(Config::default());
    let registered = h.now;
    h.device(supervised(5, Micros::from_mins(10)));
    let due = registered.saturating_add(Micros::from_mins(13));
    assert_eq!(h.core.next_deadline(), Some(due));
    h.now = due;
    let e = h.tick();
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::FailToReport {
            last_heard: None,
            ..
        }
    )));
    let id = opened_one(&e);
    h.claim(id, OP1);
    h.secs(5);
    let e = h.signal(5, SignalWhat::Heartbeat);
    assert!(resolved(&e).is_empty(), "the operator holding it closes it");
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated {
            change: Change::DeviceHeard,
            ..
        }
    )));
    // Silent again while still claimed: the report joins the same incident.
    h.secs(13 * 60);
    let e = h.tick();
    assert!(opened(&e).is_empty());
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::FailToReport { incident: Some(i), .. } if *i == id))
    );
}

/// Ticks at every deadline before `due`: a lazily rescheduled timer may sit earlier than
/// its real deadline, and ticking there must do nothing but reschedule.
fn settle_before(h: &mut H, due: Timestamp) {
    while let Some(t) = h.core.next_deadline() {
        if t >= due {
            break;
        }
        h.now = t;
        assert!(h.tick().is_empty());
    }
}

#[test]
fn heartbeats_move_the_supervision_deadline_without_effects() {
    let mut h = H::new(Config::default());
    h.device(supervised(5, Micros::from_mins(10)));
    for _ in 0..5 {
        h.secs(300);
        assert!(h.signal(5, SignalWhat::Heartbeat).is_empty());
    }
    let due = h.now.saturating_add(Micros::from_mins(13));
    settle_before(&mut h, due);
    assert_eq!(h.core.next_deadline(), Some(due));
}

#[test]
fn link_lost_and_restored_are_a_technical_incident_of_the_link() {
    let mut h = H::new(Config::default());
    let e = h.link("serial:ttyS0", SignalWhat::LinkLost);
    let id = opened_one(&e);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentOpened { kind: Kind::LinkLost, priority: Priority::Technical, subject: Subject::Link { link }, .. } if link.as_str() == "serial:ttyS0"
    )));
    h.secs(90);
    let e = h.link("serial:ttyS0", SignalWhat::LinkRestored);
    assert_eq!(resolved(&e), vec![id]);
    // With a policy that keeps it open, the restore only annotates it.
    let mut config = Config::default();
    config.overrides.policies.push(PolicyOverride {
        kind: Kind::LinkLost,
        auto_close_on_restore: false,
        auto_close_on_cancel: false,
    });
    let mut h = H::new(config);
    let id = opened_one(&h.link("mqtt:broker", SignalWhat::LinkLost));
    h.secs(90);
    let e = h.link("mqtt:broker", SignalWhat::LinkRestored);
    assert!(resolved(&e).is_empty());
    assert!(e.iter().any(|e| matches!(e, Effect::IncidentUpdated { incident, change: Change::Restored, .. } if *incident == id)));
}

#[test]
fn presence_offline_opens_a_technical_incident_that_online_closes() {
    let mut h = H::new(Config::default());
    let id = opened_one(&h.signal(5, SignalWhat::Presence { online: false }));
    assert_eq!(
        h.core.incident(id).map(|i| (i.kind, i.priority)),
        Some((Kind::DeviceOffline, Priority::Technical))
    );
    h.secs(30);
    assert_eq!(
        resolved(&h.signal(5, SignalWhat::Presence { online: true })),
        vec![id]
    );
}

// ----- storms and runaways -------------------------------------------------------------

fn in_area(id: i64, area: &str) -> DeviceInfo {
    DeviceInfo {
        area: Some(Name::from(area)),
        ..DeviceInfo::new(DeviceId(id))
    }
}

#[test]
fn more_than_five_units_of_one_area_reporting_one_cause_become_one_group() {
    let mut h = H::new(Config::default());
    for d in 1..=12 {
        h.device(in_area(d, if d <= 10 { "riverside" } else { "hilltop" }));
    }
    let mut individual = Vec::new();
    for d in 1..=5 {
        h.secs(2);
        individual.push(opened_one(&h.cid(d, 301, Qualifier::New)));
    }
    // Another area's units are not part of this storm.
    h.secs(1);
    let other = opened_one(&h.cid(11, 301, Qualifier::New));
    h.secs(2);
    let e = h.cid(6, 301, Qualifier::New);
    assert_audited(&e);
    let group = opened_one(&e);
    assert_eq!(
        resolved(&e),
        individual,
        "the five individual incidents are folded"
    );
    assert!(e.iter().all(|e| !matches!(e, Effect::Resolved { resolution: Resolution::Auto { reason }, .. } if *reason != AutoReason::FoldedIntoGroup { group })));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::StormGrouped { devices: 6, kind: Kind::MainsFail, area: Some(a), folded, .. } if a.as_str() == "riverside" && *folded == individual
    )));
    h.secs(2);
    let e = h.cid(7, 301, Qualifier::New);
    assert!(opened(&e).is_empty());
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentUpdated { incident, change: Change::GroupMember { device: DeviceId(7), devices: 7, active: 7 }, .. } if *incident == group
    )));
    assert!(h.core.incident(other).is_some());
    assert_eq!(h.core.open_incident_count(), 2);
    // Members restore; the last restore closes the group.
    for d in 1..=7 {
        h.secs(1);
        let e = h.cid(d, 301, Qualifier::Restore);
        if d < 7 {
            assert!(resolved(&e).is_empty());
        } else {
            assert_eq!(resolved(&e), vec![group]);
        }
    }
    // A later report starts counting afresh.
    h.secs(1);
    assert!(h.cid(8, 301, Qualifier::New).iter().any(|e| matches!(
        e,
        Effect::IncidentOpened {
            subject: Subject::Device { id: DeviceId(8) },
            ..
        }
    )));
}

#[test]
fn a_storm_only_forms_within_its_window_and_never_folds_a_claimed_incident() {
    let mut h = H::new(Config::default());
    for d in 1..=8 {
        h.device(in_area(d, "riverside"));
    }
    // Six reports spread over more than a minute: no storm.
    for d in 1..=6 {
        h.secs(15);
        assert_eq!(opened(&h.cid(d, 302, Qualifier::New)).len(), 1);
    }
    assert_eq!(h.core.open_incident_count(), 6);
    let claimed = IncidentId(6);
    h.claim(claimed, OP1);
    // Units 3-6 reported within the last minute; 7 makes five, 8 makes six.
    h.secs(1);
    assert_eq!(opened(&h.cid(7, 302, Qualifier::New)).len(), 1);
    h.secs(1);
    let e = h.cid(8, 302, Qualifier::New);
    assert_eq!(
        resolved(&e),
        vec![IncidentId(3), IncidentId(4), IncidentId(5), IncidentId(7)]
    );
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::StormGrouped { devices: 5, .. }))
    );
    assert!(h.core.incident(claimed).is_some());
    assert_eq!(h.core.open_incident_count(), 1 + 2 + 1);
}

#[test]
fn a_runaway_unit_is_folded_into_one_incident_but_its_life_critical_alarms_are_not() {
    let mut h = H::new(Config::default());
    // A chattering tamper switch: raise/restore every 2 s.
    let mut opened_count = 0;
    let mut runaway = None;
    for i in 0..11 {
        h.secs(2);
        let q = if i % 2 == 0 {
            Qualifier::New
        } else {
            Qualifier::Restore
        };
        let e = h.cid(5, 137, q);
        opened_count += opened(&e).len();
        if let Some(Effect::RunawayDetected {
            incident, signals, ..
        }) = e
            .iter()
            .find(|e| matches!(e, Effect::RunawayDetected { .. }))
        {
            assert_eq!((i, *signals), (10, 11), "the 11th signal in 60 s");
            runaway = Some(*incident);
        }
    }
    let runaway = runaway.expect("runaway detected");
    let before = h.core.open_incident_count();
    // Eight different (code, qualifier) pairs two seconds apart: none repeats within the
    // dedupe window, so each is a fresh signal and is folded.
    let cycle = [137, 302, 350, 301];
    h.secs(10);
    for i in 0..20 {
        h.secs(2);
        let q = if (i / 4) % 2 == 0 {
            Qualifier::New
        } else {
            Qualifier::Restore
        };
        let e = h.cid(5, cycle[i % 4], q);
        assert!(opened(&e).is_empty());
        assert!(e.iter().any(|e| matches!(e, Effect::IncidentUpdated { incident, change: Change::RunawaySignal { .. }, .. } if *incident == runaway)));
    }
    assert_eq!(h.core.open_incident_count(), before);
    assert_eq!(
        h.core
            .incident(runaway)
            .and_then(|i| i.runaway.as_ref().map(|r| r.folded)),
        Some(21)
    );
    // The person presses their pendant: a life-critical incident of its own, offered.
    h.secs(1);
    let e = h.press(5);
    let p = opened_one(&e);
    assert!(e.iter().any(|e| matches!(e, Effect::Offer { incident, priority: Priority::LifeCritical, .. } if *incident == p)));
    assert_eq!(h.core.queue().next().map(|i| i.id), Some(p));
    assert!(opened_count < 11);
    // Resolving the runaway incident lets the unit's signals through again.
    h.claim(runaway, OP1);
    h.resolve(runaway, OP1, "engineer_booked");
    h.secs(120);
    assert_eq!(opened(&h.cid(5, 302, Qualifier::New)).len(), 1);
}

#[test]
fn life_critical_alarms_are_never_rate_limited() {
    let mut h = H::new(Config::default());
    let mut ids = std::collections::BTreeSet::new();
    // Sixty presses a second apart, each resolved in between: every one is offered.
    for _ in 0..60 {
        h.secs(1);
        let e = h.press(5);
        let id = opened_one(&e);
        assert!(e.iter().any(|e| matches!(e, Effect::Offer { .. })));
        ids.insert(id);
        h.claim(id, OP1);
        h.resolve(id, OP1, "false_alarm");
    }
    assert_eq!(ids.len(), 60);
}

// ----- answer timers -------------------------------------------------------------------

fn sla_effects(e: &[Effect]) -> Vec<&'static str> {
    e.iter()
        .filter_map(|e| match e {
            Effect::SlaWarning { .. } => Some("warn"),
            Effect::Overflow { .. } => Some("overflow"),
            Effect::Critical { .. } => Some("critical"),
            _ => None,
        })
        .collect()
}

#[test]
fn answer_time_thresholds_fire_once_each_on_the_tick_after_they_pass() {
    let mut h = H::new(Config::default());
    let t0 = h.now;
    let id = opened_one(&h.press(5));
    let at = |s| t0.saturating_add(Micros::from_secs(s));
    assert_eq!(h.core.next_deadline(), Some(at(45)));
    h.now = at(44);
    assert!(h.tick().is_empty());
    h.now = at(45);
    let e = h.tick();
    assert_eq!(sla_effects(&e), vec!["warn"]);
    assert_audited(&e);
    assert!(e.contains(&Effect::SlaWarning {
        incident: id,
        priority: Priority::LifeCritical,
        waited: Micros::from_secs(45)
    }));
    assert!(sla_effects(&h.tick()).is_empty());
    assert_eq!(h.core.next_deadline(), Some(at(60)));
    h.now = at(61);
    assert_eq!(sla_effects(&h.tick()), vec!["overflow"]);
    h.now = at(500);
    assert_eq!(sla_effects(&h.tick()), vec!["critical"]);
    h.secs(500);
    assert!(h.tick().is_empty());
    assert_eq!(h.core.next_deadline(), None);
    let inc = h.core.incident(id).expect("open");
    assert!(inc.sla.warned && inc.sla.overflowed && inc.sla.critical);
    // The answer time is recorded on claim.
    let e = h.claim(id, OP1);
    assert!(e.iter().any(|e| matches!(e, Effect::Claimed { answer_time: Some(t), .. } if *t == Micros::from_secs(1000))));
}

#[test]
fn a_late_tick_fires_all_passed_thresholds_in_order_and_a_claim_stops_them() {
    let mut h = H::new(Config::default());
    let t0 = h.now;
    opened_one(&h.press(5));
    h.secs(1);
    let flood = opened_one(&h.cid(6, 154, Qualifier::New));
    h.now = t0.saturating_add(Micros::from_secs(400));
    let e = h.tick();
    assert_eq!(
        sla_effects(&e),
        vec![
            "warn", "overflow", "critical", "warn", "overflow", "critical"
        ]
    );
    // Claimed before the warning: nothing fires while it is held. Released, it waits in the
    // queue again, so its thresholds run again, counted from the release.
    let mut h = H::new(Config::default());
    let id = opened_one(&h.press(5));
    h.secs(30);
    h.claim(id, OP1);
    h.secs(600);
    assert!(sla_effects(&h.tick()).is_empty(), "held: no timer");
    h.release(id, OP1);
    let released = h.now;
    assert_eq!(
        h.core.next_deadline(),
        Some(released.saturating_add(Micros::from_secs(45))),
        "the warning is due 45 s after the release"
    );
    h.secs(44);
    assert!(sla_effects(&h.tick()).is_empty());
    h.secs(200);
    let e = h.tick();
    assert_eq!(sla_effects(&e), vec!["warn", "overflow", "critical"]);
    assert!(e.iter().any(|x| matches!(x,
        Effect::Overflow { incident, waited, .. } if *incident == id && *waited == Micros::from_secs(244)
    )), "waited counts from the release: {e:?}");
    let _ = flood;
}

#[test]
fn technical_incidents_have_no_answer_timer_unless_configured() {
    let mut h = H::new(Config::default());
    opened_one(&h.cid(5, 301, Qualifier::New));
    assert_eq!(h.core.next_deadline(), None);
    let mut config = Config::default();
    config.sla.technical = Some(SlaThresholds {
        warn: Micros::from_mins(10),
        overflow: Micros::from_mins(30),
        critical: Micros::from_hours(2),
    });
    let mut h = H::new(config);
    let t0 = h.now;
    opened_one(&h.cid(5, 301, Qualifier::New));
    assert_eq!(
        h.core.next_deadline(),
        Some(t0.saturating_add(Micros::from_mins(10)))
    );
}

// ----- lanes ---------------------------------------------------------------------------

#[test]
fn the_queue_lists_life_critical_first_then_by_arrival() {
    let mut h = H::new(Config::default());
    let tech = opened_one(&h.cid(1, 301, Qualifier::New));
    h.secs(1);
    let flood = opened_one(&h.cid(2, 154, Qualifier::New));
    h.secs(1);
    let p1 = opened_one(&h.press(3));
    h.secs(1);
    let fire = opened_one(&h.cid(4, 111, Qualifier::New));
    let order: Vec<IncidentId> = h.core.pending_offers().iter().map(|q| q.incident).collect();
    assert_eq!(order, vec![p1, fire, flood, tech]);
    // A released incident returns to its place by arrival.
    h.claim(p1, OP1);
    assert_eq!(h.core.queue().next().map(|i| i.id), Some(fire));
    h.release(p1, OP1);
    assert_eq!(h.core.queue().next().map(|i| i.id), Some(p1));
}

#[test]
fn offers_within_one_step_list_life_critical_first() {
    // A hub whose missed test is life-critical (an override), beside an ordinary unit whose
    // missed test is technical and fell due earlier: one tick, two offers.
    let mut config = Config::default();
    config.overrides.priorities.push(PriorityOverride {
        kind: Kind::FailToReport,
        device_type: Some(Name::from("hub")),
        client: None,
        priority: Priority::LifeCritical,
    });
    let mut h = H::new(config);
    h.device(supervised(1, Micros::from_mins(10)));
    h.secs(10);
    h.device(DeviceInfo {
        device_type: Some(Name::from("hub")),
        ..supervised(2, Micros::from_mins(10))
    });
    h.secs(3600);
    let e = h.tick();
    let offers: Vec<(IncidentId, Priority)> = e
        .iter()
        .filter_map(|e| match e {
            Effect::Offer {
                incident, priority, ..
            } => Some((*incident, *priority)),
            _ => None,
        })
        .collect();
    assert_eq!(
        offers,
        vec![
            (IncidentId(2), Priority::LifeCritical),
            (IncidentId(1), Priority::Technical)
        ]
    );
    // Both were opened in due order; only the offers are reordered.
    assert_eq!(opened(&e), vec![IncidentId(1), IncidentId(2)]);
}

// ----- configuration, registry and snapshots -------------------------------------------

#[test]
fn configure_replaces_thresholds_and_reschedules_timers() {
    let mut h = H::new(Config::default());
    let t0 = h.now;
    opened_one(&h.press(5));
    let mut c = Config::default();
    c.sla.life_critical = Some(SlaThresholds {
        warn: Micros::from_secs(20),
        overflow: Micros::from_secs(30),
        critical: Micros::from_secs(90),
    });
    let e = h.core.handle(Input::Configure(Box::new(c)), h.now);
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Audit(a) if a.action == AuditAction::ConfigChanged))
    );
    assert_eq!(
        h.core.next_deadline(),
        Some(t0.saturating_add(Micros::from_secs(20)))
    );
}

#[test]
fn forgetting_a_device_keeps_its_incidents_and_stops_its_supervision() {
    let mut h = H::new(Config::default());
    h.device(supervised(5, Micros::from_mins(10)));
    let id = opened_one(&h.press(5));
    let e = h.core.handle(
        Input::ForgetDevice {
            device: DeviceId(5),
        },
        h.now,
    );
    assert!(
        e.iter()
            .any(|e| matches!(e, Effect::Audit(a) if a.action == AuditAction::DeviceForgotten))
    );
    assert!(h.core.incident(id).is_some());
    h.secs(3600);
    assert!(
        !h.tick()
            .iter()
            .any(|e| matches!(e, Effect::FailToReport { .. }))
    );
}

#[test]
fn effects_and_snapshots_serialise_to_json_and_back() {
    let mut h = H::new(Config::default());
    h.device(supervised(5, Micros::from_mins(10)));
    let mut all = h.press(5);
    all.extend(h.claim(IncidentId(1), OP1));
    all.extend(h.note(IncidentId(1), OP1, "ok"));
    for e in &all {
        let json = serde_json::to_string(e).expect("serialises");
        let back: Effect = serde_json::from_str(&json).expect("parses");
        assert_eq!(&back, e, "{json}");
    }
    let snap = h.core.snapshot();
    let json = serde_json::to_string(&snap).expect("serialises");
    let back: Snapshot = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, snap);
}

#[test]
fn a_core_rebuilt_from_persisted_rows_keeps_incidents_and_supervision() {
    let mut h = H::new(Config::default());
    h.device(supervised(5, Micros::from_mins(10)));
    h.device(supervised(6, Micros::from_mins(10)));
    let pendant = opened_one(&h.press(5));
    h.claim(pendant, OP1);
    h.secs(12 * 60);
    h.signal(5, SignalWhat::Heartbeat);
    h.secs(60);
    let e = h.tick();
    let ftr = opened(&e);
    assert_eq!(ftr.len(), 1, "unit 6 never heard");
    // The engine restarts with only its tables: open incidents, devices, last heard.
    let incidents: Vec<_> = h.core.open_incidents().into_iter().cloned().collect();
    let devices = vec![
        (
            h.devices[&DeviceId(5)].clone(),
            h.core.device(DeviceId(5)).and_then(|d| d.1),
        ),
        (
            h.devices[&DeviceId(6)].clone(),
            h.core.device(DeviceId(6)).and_then(|d| d.1),
        ),
    ];
    let snap = Snapshot::rebuild(Config::default(), 3, devices, incidents, h.now);
    let mut t = warden_core::Triage::from_snapshot(snap).expect("restores");
    assert_eq!(t.open_incident_count(), 2);
    assert_eq!(t.incident(pendant).and_then(|i| i.holder), Some(OP1));
    assert_eq!(
        rejected(&t.handle(
            Input::Claim {
                incident: pendant,
                actor: OP2
            },
            h.now
        )),
        vec![RejectReason::ClaimedByOther { holder: OP1 }]
    );
    // Unit 6 stays reported (no second fail-to-report); unit 5 is due from its last heard.
    let later = h.now.saturating_add(Micros::from_mins(30));
    let e = t.handle(Input::Tick, later);
    let reports: Vec<DeviceId> = e
        .iter()
        .filter_map(|e| match e {
            Effect::FailToReport { device, .. } => Some(*device),
            _ => None,
        })
        .collect();
    assert_eq!(reports, vec![DeviceId(5)]);
    // New incidents continue the id sequence.
    assert!(opened(&e).iter().all(|i| i.0 >= 3));
    let _ = Timestamp::EPOCH;
}

#[test]
fn a_failed_self_check_is_a_technical_incident_that_passing_closes() {
    let mut h = H::new(Config::default());
    let check = |ok: bool| SignalWhat::SelfCheck {
        check: "oncall_config".into(),
        ok,
        detail: if ok {
            String::new()
        } else {
            "chain 1 has no fallback".into()
        },
    };
    // A restore with nothing open (what a restarted wardend reports first) joins nothing...
    let e = h.link("warden:oncall_config", check(true));
    assert!(resolved(&e).is_empty());
    h.secs(1);
    let e = h.link("warden:oncall_config", check(false));
    let id = opened_one(&e);
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::IncidentOpened { kind: Kind::SelfCheck, priority: Priority::Technical, summary: Some(s), .. }
            if s == "self-check oncall_config failed: chain 1 has no fallback"
    )));
    // Still failing a little later: the same incident.
    h.secs(2);
    let e = h.link("warden:oncall_config", check(false));
    assert!(
        e.iter()
            .all(|e| !matches!(e, Effect::IncidentOpened { .. }))
    );
    // ...and does not make the restore after a new raise a duplicate: it closes it, even
    // within the dedupe window of the first.
    h.secs(1);
    let e = h.link("warden:oncall_config", check(true));
    assert_eq!(resolved(&e), vec![id]);
}
