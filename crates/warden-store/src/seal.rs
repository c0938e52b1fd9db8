//! Encryption at rest of the most sensitive fields (key-safe codes, medical notes): each
//! value is sealed with AES-256-GCM under the current key, tagged with its key id, and
//! opened with whichever configured key it names, so keys rotate without a flag day
//! (`wardend rekey` re-seals every value under the current key).
//!
//! A sealed value is text: `enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, with the
//! field's name as associated data (a medical note cannot be passed off as a key-safe
//! code). A value without the prefix is a plaintext one written before encryption was on;
//! it is read as is and sealed by the next write or by `rekey`.
//!
//! The keys are installed once per process ([`install`]); the store seals and opens through
//! [`seal`] and [`open`], so no write path can forget it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const PREFIX: &str = "enc:v1:";

/// The field a sealed value belongs to (its associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    KeySafe,
    MedicalNotes,
    /// A console account's TOTP secret.
    TotpSecret,
}

impl Field {
    fn aad(self) -> &'static [u8] {
        match self {
            Field::KeySafe => b"clients.key_safe",
            Field::MedicalNotes => b"clients.medical_notes",
            Field::TotpSecret => b"users.totp_secret",
        }
    }
}

/// Why a key set or a sealed value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("key {0:?}: a key is 32 bytes written as 64 hex digits or as base64")]
    BadKey(String),
    #[error("key id {0:?}: 1-32 characters of a-z, A-Z, 0-9, '-' or '_'")]
    BadKeyId(String),
    #[error("the current key {0:?} is not among the configured keys")]
    NoCurrent(String),
    #[error("sealed with key {0:?}, which is not configured")]
    UnknownKey(String),
    #[error("a sealed value that does not open (damaged, or sealed for another field)")]
    Damaged,
    #[error("sealed, but no encryption keys are configured in this process")]
    NoKeys,
    #[error("no randomness for a nonce")]
    NoRandomness,
}

/// The configured keys and the one new values are sealed with.
pub struct Sealer {
    current: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("current", &self.current)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads a 32-byte key written as 64 hex digits or as base64 (standard or URL-safe).
pub fn parse_key(id: &str, text: &str) -> Result<[u8; 32], SealError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| SealError::BadKey(id.to_owned()))
}

/// A new random key, as 64 hex digits.
pub fn generate_key() -> Result<String, SealError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|_| SealError::NoRandomness)?;
    Ok(hex::encode(k))
}

impl Sealer {
    /// `keys`: id → key text (see [`parse_key`]); `current` must be one of them.
    pub fn new<'a>(
        current: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Sealer, SealError> {
        let mut map = BTreeMap::new();
        for (id, text) in keys {
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SealError::BadKeyId(id.to_owned()));
            }
            let key = parse_key(id, text)?;
            map.insert(id.to_owned(), Aes256Gcm::new(&key.into()));
        }
        if !map.contains_key(current) {
            return Err(SealError::NoCurrent(current.to_owned()));
        }
        Ok(Sealer {
            current: current.to_owned(),
            keys: map,
        })
    }

    /// The id of the key new values are sealed with.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// Seals `plain` for `field` under the current key.
    pub fn seal(&self, field: Field, plain: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| SealError::NoRandomness)?;
        let cipher = self
            .keys
            .get(&self.current)
            .ok_or_else(|| SealError::NoCurrent(self.current.clone()))?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: field.aad(),
                },
            )
            .map_err(|_| SealError::Damaged)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.current,
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// Opens a stored value of `field` (a plaintext one is returned as it is).
    pub fn open(&self, field: Field, stored: &str) -> Result<String, SealError> {
        let Some((id, body)) = split(stored) else {
            return Ok(stored.to_owned());
        };
        let cipher = self
            .keys
            .get(id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Damaged)?;
        if bytes.len() < 12 + 16 {
            return Err(SealError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce = Nonce::from(<[u8; 12]>::try_from(nonce).map_err(|_| SealError::Damaged)?);
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: field.aad(),
                },
            )
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain).map_err(|_| SealError::Damaged)
    }

    /// Whether `stored` is sealed under the current key (nothing for `rekey` to do).
    pub fn is_current(&self, stored: &str) -> bool {
        split(stored).is_some_and(|(id, _)| id == self.current)
    }
}

/// The key id and body of a sealed value; `None` for a plaintext one.
fn split(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(PREFIX)?.split_once(':')
}

/// Whether `stored` is a sealed value.
pub fn is_sealed(stored: &str) -> bool {
    split(stored).is_some()
}

static SEALER: OnceLock<Sealer> = OnceLock::new();

/// Installs this process's keys (once; a second call is refused with the keys it brought).
pub fn install(s: Sealer) -> Result<(), Sealer> {
    SEALER.set(s)
}

/// This process's keys, if installed.
pub fn installed() -> Option<&'static Sealer> {
    SEALER.get()
}

/// Seals `plain` with the installed keys; as it is when none are installed (a test store).
pub fn seal(field: Field, plain: &str) -> Result<String, SealError> {
    match SEALER.get() {
        Some(s) if !plain.is_empty() => s.seal(field, plain),
        _ => Ok(plain.to_owned()),
    }
}

/// Opens a stored value with the installed keys.
pub fn open(field: Field, stored: &str) -> Result<String, SealError> {
    match SEALER.get() {
        Some(s) => s.open(field, stored),
        None if is_sealed(stored) => Err(SealError::NoKeys),
        None => Ok(stored.to_owned()),
    }
}

/// What a reader is shown for a value that does not open (never the sealed text, never
/// a failed page: the rest of the record is still needed during an alarm). Logged.
pub fn open_or_placeholder(field: Field, stored: &str) -> String {
    open(field, stored).unwrap_or_else(|e| {
        metrics::counter!(warden_telemetry::SEAL_FAILURES).increment(1);
        tracing::error!(error = %e, ?field, "a sealed value could not be opened");
        format!("[cannot be read here: {e}]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_value_round_trips_under_its_key_and_never_shows_in_the_stored_text() {
        let s = Sealer::new("k1", [("k1", K1)]).expect("keys");
        let stored = s.seal(Field::KeySafe, "4471").expect("seal");
        assert!(stored.starts_with("enc:v1:k1:"), "{stored}");
        assert!(!stored.contains("4471"));
        // A fresh nonce each time.
        assert_ne!(stored, s.seal(Field::KeySafe, "4471").expect("seal"));
        assert_eq!(s.open(Field::KeySafe, &stored).expect("open"), "4471");
        // Bound to its field.
        assert_eq!(
            s.open(Field::MedicalNotes, &stored),
            Err(SealError::Damaged)
        );
        // Plaintext written before encryption reads as it is.
        assert_eq!(
            s.open(Field::MedicalNotes, "Type 2 diabetes")
                .expect("open"),
            "Type 2 diabetes"
        );
    }

    #[test]
    fn keys_rotate_old_values_still_open_and_tampering_is_caught() {
        let old = Sealer::new("k1", [("k1", K1)]).expect("keys");
        let stored = old
            .seal(Field::MedicalNotes, "Allergic to penicillin")
            .expect("seal");
        let k2 = generate_key().expect("key");
        let both = Sealer::new("k2", [("k1", K1), ("k2", k2.as_str())]).expect("keys");
        assert!(!both.is_current(&stored));
        assert_eq!(
            both.open(Field::MedicalNotes, &stored).expect("open"),
            "Allergic to penicillin"
        );
        let resealed = both
            .seal(Field::MedicalNotes, "Allergic to penicillin")
            .expect("seal");
        assert!(both.is_current(&resealed));
        let only_new = Sealer::new("k2", [("k2", k2.as_str())]).expect("keys");
        assert_eq!(
            only_new.open(Field::MedicalNotes, &stored),
            Err(SealError::UnknownKey("k1".into()))
        );
        let mut bytes = resealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("text");
        assert_eq!(
            both.open(Field::MedicalNotes, &tampered),
            Err(SealError::Damaged)
        );
    }

    #[test]
    fn bad_keys_and_ids_are_named() {
        assert_eq!(
            Sealer::new("a", [("a", "too short")]).err(),
            Some(SealError::BadKey("a".into()))
        );
        assert_eq!(
            Sealer::new("a b", [("a b", K1)]).err(),
            Some(SealError::BadKeyId("a b".into()))
        );
        assert_eq!(
            Sealer::new("k9", [("k1", K1)]).err(),
            Some(SealError::NoCurrent("k9".into()))
        );
        // Base64 works too.
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert!(Sealer::new("k", [("k", b64.as_str())]).is_ok());
    }
}
