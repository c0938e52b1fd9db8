//! The triage configuration: windows, thresholds, answer-time targets, overrides.
//!
//! Every span is held in microseconds ([`Micros`]) so the core needs no clock; in the
//! configuration file a span is written like every other duration, `"45s"`, `"2m"`,
//! `"1h 30m"` (humantime), never as a bare number.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use warden_protocol::mqtt::AlarmKind;
use warden_types::Priority;

use crate::classify::Kind;
use crate::ids::Name;
use crate::time::Micros;

/// Everything the triage core can be told. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Signals with the same subject, kind and event within this window count once (the
    /// same alarm through two paths, a redelivery). Default 10 s.
    #[serde(with = "span")]
    pub dedupe_window: Micros,
    /// Answer-time thresholds per priority lane.
    pub sla: SlaConfig,
    /// Fail-to-report timing.
    pub supervision: SupervisionConfig,
    /// Grouping of technical floods per area.
    pub storm: StormConfig,
    /// Folding of a single unit that signals too fast.
    pub runaway: RunawayConfig,
    /// The priority of an unknown code. Default urgent. Unknown codes always open an
    /// incident, whatever this says.
    pub unknown_priority: Priority,
    /// The longest note accepted, in bytes. Default 4000.
    pub max_note_len: u32,
    /// Per-device-type and per-client changes to the default tables.
    pub overrides: Overrides,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dedupe_window: Micros::from_secs(10),
            sla: SlaConfig::default(),
            supervision: SupervisionConfig::default(),
            storm: StormConfig::default(),
            runaway: RunawayConfig::default(),
            unknown_priority: Priority::Urgent,
            max_note_len: 4000,
            overrides: Overrides::default(),
        }
    }
}

/// Answer-time thresholds, measured from the arrival of an incident's first signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaThresholds {
    /// Warn the room. Default 45 s.
    #[serde(with = "span")]
    pub warn: Micros,
    /// Overflow to supervisors (or another group). Default 60 s, the TSA target.
    #[serde(with = "span")]
    pub overflow: Micros,
    /// Critical: the TSA 180 s limit. Default 180 s.
    #[serde(with = "span")]
    pub critical: Micros,
}

impl Default for SlaThresholds {
    fn default() -> Self {
        SlaThresholds {
            warn: Micros::from_secs(45),
            overflow: Micros::from_secs(60),
            critical: Micros::from_secs(180),
        }
    }
}

/// Which lanes have answer-time targets. Default: life-critical and urgent (every alarm
/// call, as the TSA framework counts them); technical and information have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlaConfig {
    /// Life-critical incidents.
    pub life_critical: Option<SlaThresholds>,
    /// Urgent incidents (and unknown codes, which are urgent by default).
    pub urgent: Option<SlaThresholds>,
    /// Technical incidents.
    pub technical: Option<SlaThresholds>,
    /// Information incidents (only unknown codes configured as information reach this).
    pub information: Option<SlaThresholds>,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            life_critical: Some(SlaThresholds::default()),
            urgent: Some(SlaThresholds::default()),
            technical: None,
            information: None,
        }
    }
}

impl SlaConfig {
    /// The thresholds for a lane, if it has any.
    pub fn for_priority(&self, p: Priority) -> Option<&SlaThresholds> {
        match p {
            Priority::LifeCritical => self.life_critical.as_ref(),
            Priority::Urgent => self.urgent.as_ref(),
            Priority::Technical => self.technical.as_ref(),
            Priority::Information => self.information.as_ref(),
        }
    }
}

/// When a supervised unit that missed its periodic test is reported: `interval +
/// interval × margin_percent / 100 + grace` after it was last heard (24 h → 26 h 26 min
/// with the defaults; Patriot uses 25 h 30 m).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Default 10.
    pub margin_percent: u32,
    /// Default 2 min.
    #[serde(with = "span")]
    pub grace: Micros,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            margin_percent: 10,
            grace: Micros::from_mins(2),
        }
    }
}

impl SupervisionConfig {
    /// How long after last heard a unit with `interval` is reported.
    pub fn allowance(&self, interval: Micros) -> Micros {
        interval
            .saturating_add(interval.percent(self.margin_percent))
            .saturating_add(self.grace)
    }
}

/// Technical signals of one kind from more than `devices` units of one area within
/// `window` become one group incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StormConfig {
    /// Default 60 s.
    #[serde(with = "span")]
    pub window: Micros,
    /// Default 5: the sixth unit forms the group.
    pub devices: u32,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            window: Micros::from_secs(60),
            devices: 5,
        }
    }
}

/// A unit sending more than `max_signals` non-life-critical signals within `window` is
/// folded into one runaway incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunawayConfig {
    /// Default 60 s.
    #[serde(with = "span")]
    pub window: Micros,
    /// Default 10.
    pub max_signals: u32,
}

impl Default for RunawayConfig {
    fn default() -> Self {
        RunawayConfig {
            window: Micros::from_secs(60),
            max_signals: 10,
        }
    }
}

/// Changes to the default classification and close policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    /// Code → kind remappings.
    pub codes: Vec<CodeOverride>,
    /// Kind → priority changes.
    pub priorities: Vec<PriorityOverride>,
    /// Close policies per kind.
    pub policies: Vec<PolicyOverride>,
}

/// A protocol code, for [`CodeOverride`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeRef {
    /// A Contact ID event code.
    ContactId(u16),
    /// A SIA two-letter code, written as text (`"QA"`).
    Sia(#[serde(with = "crate::classify::sia_code_serde")] [u8; 2]),
    /// An MQTT alarm kind.
    Mqtt(AlarmKind),
}

/// "This code means this kind", for every unit or only for one device type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeOverride {
    /// The code.
    pub code: CodeRef,
    /// Only for units of this type; `None` for all.
    #[serde(default)]
    pub device_type: Option<Name>,
    /// The kind it means.
    pub kind: Kind,
}

/// "This kind has this priority", optionally only for a device type and/or a client. The
/// most specific matching override wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityOverride {
    /// The kind.
    pub kind: Kind,
    /// Only for units of this type.
    #[serde(default)]
    pub device_type: Option<Name>,
    /// Only for this client.
    #[serde(default)]
    pub client: Option<i64>,
    /// The priority.
    pub priority: Priority,
}

/// Whether incidents of a kind close themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Close an unclaimed incident when its condition restores.
    pub auto_close_on_restore: bool,
    /// Close an unclaimed incident when a cancel/reset arrives.
    pub auto_close_on_cancel: bool,
}

/// A close policy for one kind. Ignored for life-critical incidents: those always wait for
/// an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    /// The kind.
    pub kind: Kind,
    /// Close an unclaimed incident when its condition restores.
    pub auto_close_on_restore: bool,
    /// Close an unclaimed incident when a cancel/reset arrives.
    pub auto_close_on_cancel: bool,
}

/// A span in the configuration: written `"45s"`, read from any humantime duration.
mod span {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use crate::time::Micros;

    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's `with` passes a reference"
    )]
    pub(super) fn serialize<S: Serializer>(v: &Micros, s: S) -> Result<S::Ok, S::Error> {
        let us = u64::try_from(v.as_micros()).unwrap_or(0);
        let text = humantime::format_duration(std::time::Duration::from_micros(us)).to_string();
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(i64),
        }
        match Written::deserialize(d)? {
            Written::Text(t) => {
                let span = humantime::parse_duration(&t).map_err(|e| {
                    D::Error::custom(format!("{t:?} is not a duration such as \"45s\": {e}"))
                })?;
                i64::try_from(span.as_micros())
                    .map(Micros::from_micros)
                    .map_err(|_| D::Error::custom(format!("{t:?} is too long")))
            }
            Written::Number(n) => Err(D::Error::custom(format!(
                "{n} has no unit: write a duration such as \"45s\" or \"2m\""
            ))),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A window or threshold is negative.
    #[error("{field} must not be negative (got {value})")]
    Negative {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: Micros,
    },
    /// Answer-time thresholds out of order.
    #[error("{lane} answer-time thresholds must satisfy warn <= overflow <= critical")]
    SlaOrder {
        /// The lane.
        lane: Priority,
    },
    /// A count that must be at least one.
    #[error("{field} must be at least 1")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
}

impl Config {
    /// Checks the configuration, reporting the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let spans = [
            ("dedupe_window", self.dedupe_window),
            ("supervision.grace", self.supervision.grace),
            ("storm.window", self.storm.window),
            ("runaway.window", self.runaway.window),
        ];
        for (field, value) in spans {
            if value < Micros::ZERO {
                return Err(ConfigError::Negative { field, value });
            }
        }
        for lane in [
            Priority::LifeCritical,
            Priority::Urgent,
            Priority::Technical,
            Priority::Information,
        ] {
            if let Some(t) = self.sla.for_priority(lane) {
                if t.warn < Micros::ZERO {
                    return Err(ConfigError::Negative {
                        field: "sla.warn",
                        value: t.warn,
                    });
                }
                if !(t.warn <= t.overflow && t.overflow <= t.critical) {
                    return Err(ConfigError::SlaOrder { lane });
                }
            }
        }
        if self.storm.devices == 0 {
            return Err(ConfigError::Zero {
                field: "storm.devices",
            });
        }
        if self.runaway.max_signals == 0 {
            return Err(ConfigError::Zero {
                field: "runaway.max_signals",
            });
        }
        Ok(())
    }

    /// A copy with every invalid value replaced by something harmless: negative spans
    /// become zero, out-of-order thresholds are sorted, zero counts become one.
    #[must_use]
    pub fn sanitised(self) -> Config {
        let mut c = self;
        let clamp = |m: &mut Micros| *m = (*m).max(Micros::ZERO);
        clamp(&mut c.dedupe_window);
        clamp(&mut c.supervision.grace);
        clamp(&mut c.storm.window);
        clamp(&mut c.runaway.window);
        for t in [
            &mut c.sla.life_critical,
            &mut c.sla.urgent,
            &mut c.sla.technical,
            &mut c.sla.information,
        ]
        .into_iter()
        .flatten()
        {
            let mut v = [t.warn, t.overflow, t.critical];
            v.sort();
            for m in &mut v {
                clamp(m);
            }
            *t = SlaThresholds {
                warn: v[0],
                overflow: v[1],
                critical: v[2],
            };
        }
        c.storm.devices = c.storm.devices.max(1);
        c.runaway.max_signals = c.runaway.max_signals.max(1);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_brief() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.supervision.allowance(Micros::from_hours(24)),
            Micros::from_hours(24)
                .saturating_add(Micros::from_mins(144))
                .saturating_add(Micros::from_mins(2))
        );
        let t = c.sla.for_priority(Priority::LifeCritical).copied();
        assert_eq!(t, Some(SlaThresholds::default()));
        assert!(c.sla.for_priority(Priority::Technical).is_none());
    }

    #[test]
    fn invalid_values_are_reported_and_sanitised() {
        let mut c = Config::default();
        c.storm.window = Micros(-1);
        c.sla.urgent = Some(SlaThresholds {
            warn: Micros::from_secs(90),
            overflow: Micros::from_secs(60),
            critical: Micros::from_secs(180),
        });
        c.runaway.max_signals = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Negative { .. })));
        let s = c.clone().sanitised();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.sla.urgent.map(|t| t.warn), Some(Micros::from_secs(60)));
    }

    #[test]
    fn config_round_trips_through_json_and_refuses_unknown_fields() {
        let mut c = Config::default();
        c.overrides.codes.push(CodeOverride {
            code: CodeRef::Sia(*b"QA"),
            device_type: Some(Name::from("door")),
            kind: Kind::DoorExit,
        });
        let json = serde_json::to_string(&c).expect("serialises");
        assert!(json.contains("\"QA\""), "{json}");
        assert_eq!(serde_json::from_str::<Config>(&json).ok(), Some(c));
        assert!(serde_json::from_str::<Config>(r#"{"dedupe_windw": 1}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Config>("{}").ok(),
            Some(Config::default())
        );
    }
}
