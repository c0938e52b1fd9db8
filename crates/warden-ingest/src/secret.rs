//! A value that must never appear in logs or in `print-config` output.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret (a broker password): `Debug` and `Serialize` both show `[redacted]`, so neither
/// a log line nor `wardend print-config` can reveal it. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_or_serializes_its_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(json, "\"[redacted]\"");
        let back: Secret = serde_json::from_str("\"hunter2\"").expect("parse");
        assert_eq!(back.expose(), "hunter2");
    }
}
