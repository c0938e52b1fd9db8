//! Warden's shared vocabulary.
//!
//! Architecture invariant: this crate depends on `serde` and `thiserror` only (and, with the
//! optional `utoipa` feature the console turns on, `utoipa` for `ToSchema`). It holds the
//! words every other crate speaks (what a qualifier is, how urgent a signal is, what a role,
//! a device protocol or an out-of-hours job status is), never I/O.
//!
//! `Role`, `DeviceProtocol` and `JobStatus` each have one name mapping (`as_str` and
//! `FromStr`, equal to their serde names, checked by a test): the store writes and reads
//! those names, the API sends and accepts them, and the OpenAPI schema lists them.

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

/// Why a stored or typed name is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}; expected one of {expected}")]
pub struct UnknownName {
    /// What was expected ("role", "device protocol", ...).
    pub what: &'static str,
    /// The name that was given.
    pub value: String,
    /// The accepted names, comma separated.
    pub expected: &'static str,
}

/// Defines a fieldless enum whose one name mapping (`as_str` / `FromStr`) is used for SQL,
/// JSON (serde `snake_case`, checked equal by a test) and the OpenAPI schema.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The one name of this value: stored in SQL, sent in JSON, listed in OpenAPI.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            /// The inverse of `as_str`.
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownName;

            /// The inverse of `as_str`, for text read from SQL.
            fn try_from(s: String) -> Result<Self, UnknownName> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// Which kind of link a signal arrived on (the `signals.source` column).
    pub enum Source: "signal source" {
        /// An RS-232 hardware receiver (Sur-Gard automation output).
        Serial = "serial",
        /// An MQTT unit, sensor or gateway.
        Mqtt = "mqtt",
        /// A SIA DC-09 transmitter over TCP/UDP.
        Dc09 = "dc09",
        /// A SCAIP social-alarm unit over SIP (UDP/TCP).
        Scaip = "scaip",
        /// Warden itself (link lost/restored, supervision results).
        Internal = "internal",
    }
}

named_enum! {
    /// What a console user may do. The triage core knows the first three; `OnCall` is the
    /// out-of-hours staff who see and update jobs but never handle alarms.
    pub enum Role: "role" {
        /// Answers alarms: claim, release and resolve their own incidents, write notes.
        Operator = "operator",
        /// An operator who may also take over, release or resolve anyone's incident.
        Supervisor = "supervisor",
        /// Runs the system; may write notes but never handles alarms.
        Admin = "admin",
        /// Out-of-hours staff: read and update out-of-hours jobs only.
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

named_enum! {
    /// The protocol a registered device speaks (the `devices.protocol` column).
    pub enum DeviceProtocol: "device protocol" {
        /// Contact ID (SIA DC-05), usually through a serial receiver.
        ContactId = "contact_id",
        /// SIA data blocks.
        Sia = "sia",
        /// Warden's MQTT JSON schema.
        Mqtt = "mqtt",
        /// SIA DC-09 over IP.
        Dc09 = "dc09",
        /// SCAIP (SS 91100 / BS 8521-2) over SIP.
        Scaip = "scaip",
    }
}

named_enum! {
    /// Where an out-of-hours job stands (`ooh_jobs.status`, `ooh_updates.status`).
    pub enum JobStatus: "job status" {
        /// Logged and passed to the category's on-call contact.
        Routed = "routed",
        /// Logged, but nobody is on call for its category: the desk must act.
        Unrouted = "unrouted",
        /// The on-call person has seen it.
        Acknowledged = "acknowledged",
        /// Someone is working on it.
        InProgress = "in_progress",
        /// Done.
        Closed = "closed",
    }
}

impl JobStatus {
    /// Whether a person may move a job to this status (the first two are set on creation
    /// by routing only).
    pub fn is_settable(self) -> bool {
        match self {
            JobStatus::Routed | JobStatus::Unrouted => false,
            JobStatus::Acknowledged | JobStatus::InProgress | JobStatus::Closed => true,
        }
    }
}

/// A SCAIP unit's id (`cid`) as the device registry keeps it: digits without leading zeros
/// (vendors pad differently, and some send a leading space: `" 008031372"` and `"8031372"`
/// are one unit); any other id as sent, trimmed.
pub fn scaip_unit(cid: &str) -> String {
    let t = cid.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let s = t.trim_start_matches('0');
        if s.is_empty() { "0" } else { s }.to_owned()
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    /// serde's names, `as_str` and `FromStr` are one mapping.
    fn one_mapping<T>(all: &[T])
    where
        T: Copy + fmt::Display + PartialEq + fmt::Debug + Serialize + std::str::FromStr,
    {
        for v in all {
            let json = serde_json::to_value(v).expect("a name");
            assert_eq!(json, serde_json::Value::from(v.to_string()));
            assert!(v.to_string().parse::<T>().ok() == Some(*v), "{v:?}");
        }
        assert!("no_such_name".parse::<T>().is_err());
    }

    #[test]
    fn roles_protocols_and_job_statuses_have_one_name_each() {
        one_mapping(Role::ALL);
        one_mapping(DeviceProtocol::ALL);
        one_mapping(JobStatus::ALL);
        one_mapping(Source::ALL);
        assert_eq!(Role::OnCall.as_str(), "on_call");
        let e = "boss".parse::<Role>().expect_err("not a role");
        assert_eq!(e.expected, "operator supervisor admin on_call");
    }

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
