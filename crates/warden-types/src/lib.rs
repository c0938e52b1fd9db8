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

/// An enum whose every value has one name, used for SQL columns, JSON and the API alike:
/// `as_str` and `parse` are generated from the same list as the serde names, so the three
/// cannot drift apart.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Its one name (SQL, JSON, API).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value named `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Every name, for error messages ("one of a, b, c").
            pub fn names() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What a console user may do in the control room.
    Role {
        /// Answers alarms: claims, releases and resolves their own incidents, writes notes,
        /// takes out-of-hours calls.
        Operator = "operator",
        /// An operator who may also take over, release or resolve anyone's incident.
        Supervisor = "supervisor",
        /// Runs the system: clients, devices, users, categories. Never handles alarms.
        Admin = "admin",
        /// Out-of-hours officer: reads and updates the jobs routed to them.
        OnCall = "on_call",
    }
}

impl Role {
    /// Whether the role answers alarms (claims, releases, resolves incidents).
    pub fn handles_alarms(self) -> bool {
        match self {
            Role::Operator | Role::Supervisor => true,
            Role::Admin | Role::OnCall => false,
        }
    }
}

vocabulary! {
    /// The protocol a registered device speaks.
    DeviceProtocol {
        /// Contact ID (SIA DC-05), usually through a serial receiver.
        ContactId = "contact_id",
        /// SIA data blocks.
        Sia = "sia",
        /// Warden's MQTT JSON schema.
        Mqtt = "mqtt",
        /// SIA DC-09 over IP.
        Dc09 = "dc09",
    }
}

vocabulary! {
    /// Where an out-of-hours job is.
    JobStatus {
        /// Handed to the category's on-call contact when it was logged.
        Routed = "routed",
        /// Logged with nobody to hand it to.
        Unrouted = "unrouted",
        /// The on-call officer has it.
        Acknowledged = "acknowledged",
        /// Being dealt with.
        InProgress = "in_progress",
        /// Done.
        Closed = "closed",
    }
}

impl JobStatus {
    /// The statuses a person may set; `routed`/`unrouted` are only ever set when logging.
    pub fn is_settable(self) -> bool {
        match self {
            JobStatus::Acknowledged | JobStatus::InProgress | JobStatus::Closed => true,
            JobStatus::Routed | JobStatus::Unrouted => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_names_are_the_serde_names_and_parse_back() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Serialize>(
            all: &[T],
            name: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            for &v in all {
                assert_eq!(serde_json::to_value(v).ok(), Some(name(v).into()), "{v:?}");
                assert_eq!(parse(name(v)), Some(v));
            }
        }
        check(Role::ALL, Role::as_str, Role::parse);
        check(
            DeviceProtocol::ALL,
            DeviceProtocol::as_str,
            DeviceProtocol::parse,
        );
        check(JobStatus::ALL, JobStatus::as_str, JobStatus::parse);
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::names(), "operator, supervisor, admin, on_call");
    }

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
