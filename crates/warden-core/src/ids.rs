//! Identities and small value types: incident and signal ids, shared names, actors, outcome
//! codes.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// An incident's identity, assigned by the core in opening order (1, 2, 3, ...).
///
/// Ids are deterministic so that replaying the same inputs gives the same ids; a rebuilt core
/// continues from [`crate::Snapshot::next_incident`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A durable signal's identity: the UUID the store gave it (`signals.id`), as 128 bits.
///
/// Serialised as the hyphenated UUID text, so JSON consumers (Postgres, browsers) never see
/// a number above 2^53.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SignalId(pub u128);

impl SignalId {
    /// From the 16 bytes of a UUID (`uuid::Uuid::as_bytes`), big-endian as UUIDs are.
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        SignalId(u128::from_be_bytes(b))
    }

    /// The 16 bytes of the UUID.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Parses 32 hex digits, with or without the four UUID hyphens.
    pub fn parse(s: &str) -> Option<Self> {
        let mut v: u128 = 0;
        let mut digits = 0;
        for c in s.chars() {
            if c == '-' {
                continue;
            }
            let d = c.to_digit(16)?;
            v = (v << 4) | u128::from(d);
            digits += 1;
            if digits > 32 {
                return None;
            }
        }
        (digits == 32).then_some(SignalId(v))
    }
}

impl fmt::Display for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Debug for SignalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignalId({self})")
    }
}

impl Serialize for SignalId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SignalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SignalId::parse(&s).ok_or_else(|| serde::de::Error::custom("expected a UUID"))
    }
}

/// A cheaply cloned, immutable string: link ids, accounts, areas, device types.
///
/// Cloning is a reference-count increment, so the engine can keep one `Name` per link or
/// area and attach it to every signal without allocating.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    /// A name holding a copy of `s`.
    pub fn new(s: &str) -> Self {
        Name(Arc::from(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Name::new(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Arc::from(s))
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Name::from)
    }
}

/// What a console user may do in the control room (defined once, in `warden-types`).
pub use warden_types::Role;

/// The person behind a command: a console user id and the role they acted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The console user's id (`users.id`).
    pub id: i64,
    /// The role the user holds.
    pub role: Role,
}

impl Actor {
    /// An operator.
    pub const fn operator(id: i64) -> Self {
        Actor {
            id,
            role: Role::Operator,
        }
    }

    /// A supervisor.
    pub const fn supervisor(id: i64) -> Self {
        Actor {
            id,
            role: Role::Supervisor,
        }
    }

    /// An administrator.
    pub const fn admin(id: i64) -> Self {
        Actor {
            id,
            role: Role::Admin,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role.as_str(), self.id)
    }
}

/// Why a string is not an [`OutcomeCode`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("outcome code {0:?} is not 1-{max} characters of a-z 0-9 _", max = OutcomeCode::MAX_LEN)]
pub struct OutcomeCodeError(pub String);

/// How an operator closed an incident, from the centre's own list (`false_alarm`,
/// `assistance_given`, `ambulance_called`, ...): 1–32 characters of `a-z 0-9 _`.
///
/// Parsed on construction, so a value of this type is always a valid code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OutcomeCode(String);

impl OutcomeCode {
    /// The longest code accepted.
    pub const MAX_LEN: usize = 32;

    /// Checks and wraps a code.
    pub fn parse(s: &str) -> Result<Self, OutcomeCodeError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(OutcomeCode(s.to_owned()))
        } else {
            Err(OutcomeCodeError(s.to_owned()))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OutcomeCode {
    type Error = OutcomeCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        OutcomeCode::parse(&s)
    }
}

impl From<OutcomeCode> for String {
    fn from(c: OutcomeCode) -> String {
        c.0
    }
}

impl fmt::Display for OutcomeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_ids_print_and_parse_as_uuids() {
        let id = SignalId(0x0190_1234_5678_7abc_8def_0123_4567_89ab);
        let s = id.to_string();
        assert_eq!(s, "01901234-5678-7abc-8def-0123456789ab");
        assert_eq!(SignalId::parse(&s), Some(id));
        assert_eq!(SignalId::parse(&s.replace('-', "")), Some(id));
        assert_eq!(SignalId::parse("0190"), None);
        assert_eq!(SignalId::parse(&format!("{s}0")), None);
        assert_eq!(SignalId::from_bytes(id.to_bytes()), id);
        let json = serde_json::to_string(&id).expect("serialises");
        assert_eq!(serde_json::from_str::<SignalId>(&json).expect("parses"), id);
    }

    #[test]
    fn outcome_codes_are_short_lowercase_words() {
        assert!(OutcomeCode::parse("false_alarm").is_ok());
        assert!(OutcomeCode::parse("").is_err());
        assert!(OutcomeCode::parse("False alarm").is_err());
        assert!(OutcomeCode::parse(&"a".repeat(33)).is_err());
        assert!(serde_json::from_str::<OutcomeCode>("\"Bad\"").is_err());
    }
}
