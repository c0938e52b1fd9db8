//! Warden's shared vocabulary.
//!
//! Architecture invariant: this crate depends on `serde` and `thiserror` only. It holds the
//! words every other crate speaks (what a qualifier is, how urgent a signal is), never I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether an alarm event is new, a restore of an earlier one, or a still-present condition.
///
/// Contact ID carries this as the digit 1/3/6, the Sur-Gard automation output as E/R/P and
/// SIA as the event code itself. Values outside the standard set are kept, never dropped,
/// so an operator can still see what the panel sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Qualifier {
    /// A new event or an opening (Contact ID 1, Sur-Gard E).
    New,
    /// A restore or a closing (Contact ID 3, Sur-Gard R).
    Restore,
    /// A previously reported condition that is still present (Contact ID 6, Sur-Gard P).
    Status,
    /// A qualifier digit outside 1/3/6, kept as the raw ASCII character.
    Other(char),
}

impl Qualifier {
    /// The wire-neutral name used in JSON output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Qualifier::New => "new",
            Qualifier::Restore => "restore",
            Qualifier::Status => "status",
            Qualifier::Other(_) => "other",
        }
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Other(c) => write!(f, "other({c})"),
            q => f.write_str(q.as_str()),
        }
    }
}

/// Which kind of link a signal arrived on (the `signals.source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An RS-232 hardware receiver (Sur-Gard automation output).
    Serial,
    /// An MQTT unit, sensor or gateway.
    Mqtt,
    /// A SIA DC-09 transmitter over TCP/UDP.
    Dc09,
    /// Warden itself (link lost/restored, supervision results).
    Internal,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Serial => "serial",
            Source::Mqtt => "mqtt",
            Source::Dc09 => "dc09",
            Source::Internal => "internal",
        }
    }

    /// The inverse of [`Source::as_str`].
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "serial" => Some(Source::Serial),
            "mqtt" => Some(Source::Mqtt),
            "dc09" => Some(Source::Dc09),
            "internal" => Some(Source::Internal),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgently a signal needs a person. Ordered: `LifeCritical` sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Pendant, fall, fire/smoke/heat, CO, panic, inactivity.
    LifeCritical,
    /// Flood, door exit at night, extreme temperature.
    Urgent,
    /// Mains fail, low battery, line fault, missed test.
    Technical,
    /// Periodic test, restores, openings and closings.
    Information,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::LifeCritical => "life_critical",
            Priority::Urgent => "urgent",
            Priority::Technical => "technical",
            Priority::Information => "information",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn life_critical_sorts_before_everything_else() {
        let mut v = [
            Priority::Information,
            Priority::Technical,
            Priority::LifeCritical,
            Priority::Urgent,
        ];
        v.sort();
        assert_eq!(v[0], Priority::LifeCritical);
        assert_eq!(v[3], Priority::Information);
    }

    #[test]
    fn unknown_qualifier_keeps_its_raw_character() {
        assert_eq!(Qualifier::Other('7').to_string(), "other(7)");
        assert_eq!(Qualifier::Status.as_str(), "status");
    }
}
