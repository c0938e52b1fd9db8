//! A small harness for driving the core in tests.
#![allow(dead_code)]

use std::collections::HashMap;

use warden_core::{
    Actor, Config, DeviceId, DeviceInfo, Effect, IncidentId, Input, Micros, Name, OutcomeCode,
    SignalId, SignalIn, SignalWhat, Source, Timestamp, Triage,
};
use warden_types::Qualifier;

/// An arbitrary, realistic start time (2027-01-15).
pub const T0: i64 = 1_800_000_000;

pub struct H {
    pub core: Triage,
    pub now: Timestamp,
    pub devices: HashMap<DeviceId, DeviceInfo>,
    next_signal: u128,
}

impl H {
    pub fn new(config: Config) -> Self {
        H {
            core: Triage::new(config),
            now: Timestamp::from_secs(T0),
            devices: HashMap::new(),
            next_signal: 1,
        }
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, d: Micros) {
        self.now = self.now.saturating_add(d);
    }

    pub fn secs(&mut self, s: i64) {
        self.advance(Micros::from_secs(s));
    }

    /// Registers a device (area, interval, type, client optional).
    pub fn device(&mut self, info: DeviceInfo) -> Vec<Effect> {
        self.devices.insert(info.id, info.clone());
        self.core.handle(Input::RegisterDevice(info), self.now)
    }

    pub fn next_id(&mut self) -> SignalId {
        let id = SignalId(self.next_signal);
        self.next_signal += 1;
        id
    }

    /// A signal from `dev` (registered info attached), received now, with a fresh id.
    pub fn signal(&mut self, dev: i64, what: SignalWhat) -> Vec<Effect> {
        let id = self.next_id();
        self.signal_with_id(dev, what, id)
    }

    pub fn signal_with_id(&mut self, dev: i64, what: SignalWhat, id: SignalId) -> Vec<Effect> {
        let s = self.make(dev, what, id);
        self.core.handle(Input::Signal(s), self.now)
    }

    pub fn make(&self, dev: i64, what: SignalWhat, id: SignalId) -> SignalIn {
        SignalIn {
            id,
            source: Source::Serial,
            link: Name::from("serial:ttyS0"),
            account: Some(Name::from(format!("{dev:04}").as_str())),
            device: Some(
                self.devices
                    .get(&DeviceId(dev))
                    .cloned()
                    .unwrap_or_else(|| DeviceInfo::new(DeviceId(dev))),
            ),
            what,
            received_at: self.now,
        }
    }

    pub fn cid(&mut self, dev: i64, code: u16, q: Qualifier) -> Vec<Effect> {
        self.signal(dev, SignalWhat::ContactId { code, qualifier: q })
    }

    pub fn press(&mut self, dev: i64) -> Vec<Effect> {
        self.cid(dev, 101, Qualifier::New)
    }

    pub fn link(&mut self, link: &str, what: SignalWhat) -> Vec<Effect> {
        let id = self.next_id();
        let s = SignalIn {
            id,
            source: Source::Internal,
            link: Name::from(link),
            account: None,
            device: None,
            what,
            received_at: self.now,
        };
        self.core.handle(Input::Signal(s), self.now)
    }

    pub fn tick(&mut self) -> Vec<Effect> {
        self.core.handle(Input::Tick, self.now)
    }

    pub fn claim(&mut self, id: IncidentId, actor: Actor) -> Vec<Effect> {
        self.core.handle(
            Input::Claim {
                incident: id,
                actor,
            },
            self.now,
        )
    }

    pub fn release(&mut self, id: IncidentId, actor: Actor) -> Vec<Effect> {
        self.core.handle(
            Input::Release {
                incident: id,
                actor,
            },
            self.now,
        )
    }

    pub fn take_over(&mut self, id: IncidentId, actor: Actor) -> Vec<Effect> {
        self.core.handle(
            Input::TakeOver {
                incident: id,
                actor,
            },
            self.now,
        )
    }

    pub fn resolve(&mut self, id: IncidentId, actor: Actor, outcome: &str) -> Vec<Effect> {
        let outcome = OutcomeCode::parse(outcome).expect("valid outcome code");
        self.core.handle(
            Input::Resolve {
                incident: id,
                actor,
                outcome,
            },
            self.now,
        )
    }

    pub fn note(&mut self, id: IncidentId, actor: Actor, text: &str) -> Vec<Effect> {
        self.core.handle(
            Input::Note {
                incident: id,
                actor,
                text: text.to_owned(),
            },
            self.now,
        )
    }
}

/// Incidents opened by these effects, in order.
pub fn opened(effects: &[Effect]) -> Vec<IncidentId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::IncidentOpened { incident, .. } => Some(*incident),
            _ => None,
        })
        .collect()
}

/// The single incident opened by these effects.
pub fn opened_one(effects: &[Effect]) -> IncidentId {
    let o = opened(effects);
    assert_eq!(o.len(), 1, "expected one incident opened: {effects:#?}");
    o[0]
}

/// Incidents resolved by these effects, in order.
pub fn resolved(effects: &[Effect]) -> Vec<IncidentId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Resolved { incident, .. } => Some(*incident),
            _ => None,
        })
        .collect()
}

/// The rejection reasons in these effects.
pub fn rejected(effects: &[Effect]) -> Vec<warden_core::RejectReason> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// Effects other than audit entries, for compact assertions.
pub fn no_audit(effects: &[Effect]) -> Vec<&Effect> {
    effects
        .iter()
        .filter(|e| !matches!(e, Effect::Audit(_)))
        .collect()
}

/// Every state-changing effect must come with an audit entry for the same incident in the
/// same step.
pub fn assert_audited(effects: &[Effect]) {
    for e in effects {
        // State changes only: audit entries, duplicates, refusals and fail-to-report
        // notices are not themselves audited.
        if matches!(
            e,
            Effect::Audit(_)
                | Effect::Duplicate { .. }
                | Effect::Rejected { .. }
                | Effect::FailToReport { .. }
        ) {
            continue;
        }
        let Some(incident) = e.incident() else {
            continue;
        };
        assert!(
            effects
                .iter()
                .any(|a| matches!(a, Effect::Audit(x) if x.incident == Some(incident))),
            "no audit entry for {e:?} in {effects:#?}"
        );
    }
}
