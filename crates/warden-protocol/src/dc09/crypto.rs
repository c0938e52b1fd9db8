//! DC-09 AES keys (128, 192, 256 bits; given as ASCII or hex) and block helpers.

#[allow(clippy::wildcard_imports)]
use super::*;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};

/// An AES key for encrypted DC-09 frames (128, 192 or 256 bits). Its `Debug` output never
/// shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Dc09Key(KeyBytes);

#[derive(Clone, PartialEq, Eq)]
enum KeyBytes {
    Aes128([u8; 16]),
    Aes192([u8; 24]),
    Aes256([u8; 32]),
}

const KEY_EXPECTED: &str = "expected 16, 24 or 32 ASCII characters or 32, 48 or 64 hex digits";

impl Dc09Key {
    /// Parses a key as configured: 32, 48 or 64 hex digits (the form the standard and most
    /// receivers use) or 16, 24 or 32 ASCII characters used as the key bytes themselves (the
    /// form pysiaalarm and Home Assistant use). A 32-character key made only of hex digits is
    /// read as hex (AES-128); write `ascii:` in front to force the other reading, or `hex:`
    /// to insist on hex.
    pub fn parse(text: &str) -> Result<Self, Dc09Error> {
        let bytes = text.as_bytes();
        if let Some(hex) = bytes.strip_prefix(b"hex:") {
            return Self::from_hex(hex);
        }
        if let Some(ascii) = bytes.strip_prefix(b"ascii:") {
            return Self::from_ascii(ascii);
        }
        let all_hex = bytes.iter().all(u8::is_ascii_hexdigit);
        match bytes.len() {
            48 | 64 => Self::from_hex(bytes),
            32 if all_hex => Self::from_hex(bytes),
            16 | 24 | 32 => Self::from_ascii(bytes),
            n => Err(Dc09Error::BadKey(format!(
                "{KEY_EXPECTED}, got {n} characters"
            ))),
        }
    }

    /// A key from its raw 16, 24 or 32 bytes.
    pub fn from_bytes(key: &[u8]) -> Result<Self, Dc09Error> {
        let wrong = || Dc09Error::BadKey(format!("expected 16, 24 or 32 bytes, got {}", key.len()));
        Ok(Self(match key.len() {
            16 => KeyBytes::Aes128(key.try_into().map_err(|_| wrong())?),
            24 => KeyBytes::Aes192(key.try_into().map_err(|_| wrong())?),
            32 => KeyBytes::Aes256(key.try_into().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        }))
    }

    fn from_hex(text: &[u8]) -> Result<Self, Dc09Error> {
        if !matches!(text.len(), 32 | 48 | 64) || !text.iter().all(u8::is_ascii_hexdigit) {
            // The key is a secret: say what is wrong with it, never what it is.
            return Err(Dc09Error::BadKey(format!(
                "expected 32, 48 or 64 hex digits, got {} characters{}",
                text.len(),
                if text.iter().all(u8::is_ascii_hexdigit) {
                    ""
                } else {
                    " with non-hex ones"
                }
            )));
        }
        let raw = hex::decode(text).map_err(|_| Dc09Error::BadKey("not hex".into()))?;
        Self::from_bytes(&raw)
    }

    fn from_ascii(text: &[u8]) -> Result<Self, Dc09Error> {
        if !text.iter().all(u8::is_ascii_graphic) {
            return Err(Dc09Error::BadKey(
                "ASCII keys must be printable characters without spaces".into(),
            ));
        }
        Self::from_bytes(text)
    }

    /// The key's bytes as upper-case hex: the one form it is stored in (so an ASCII key and
    /// its hex spelling are the same key). A secret: never log it.
    pub fn to_hex(&self) -> String {
        let bytes: &[u8] = match &self.0 {
            KeyBytes::Aes128(k) => k,
            KeyBytes::Aes192(k) => k,
            KeyBytes::Aes256(k) => k,
        };
        hex::encode_upper(bytes)
    }

    /// The key size in bits.
    pub fn bits(&self) -> u16 {
        match self.0 {
            KeyBytes::Aes128(_) => 128,
            KeyBytes::Aes192(_) => 192,
            KeyBytes::Aes256(_) => 256,
        }
    }

    /// Encrypts whole blocks in place with AES-CBC and the zero IV.
    pub(super) fn encrypt(&self, blocks: &mut [aes::Block]) {
        let iv = ZERO_IV.into();
        match &self.0 {
            KeyBytes::Aes128(k) => {
                cbc::Encryptor::<aes::Aes128>::new(&(*k).into(), &iv).encrypt_blocks(blocks);
            }
            KeyBytes::Aes192(k) => {
                cbc::Encryptor::<aes::Aes192>::new(&(*k).into(), &iv).encrypt_blocks(blocks);
            }
            KeyBytes::Aes256(k) => {
                cbc::Encryptor::<aes::Aes256>::new(&(*k).into(), &iv).encrypt_blocks(blocks);
            }
        }
    }

    /// Decrypts whole blocks in place with AES-CBC and the zero IV.
    pub(super) fn decrypt(&self, blocks: &mut [aes::Block]) {
        let iv = ZERO_IV.into();
        match &self.0 {
            KeyBytes::Aes128(k) => {
                cbc::Decryptor::<aes::Aes128>::new(&(*k).into(), &iv).decrypt_blocks(blocks);
            }
            KeyBytes::Aes192(k) => {
                cbc::Decryptor::<aes::Aes192>::new(&(*k).into(), &iv).decrypt_blocks(blocks);
            }
            KeyBytes::Aes256(k) => {
                cbc::Decryptor::<aes::Aes256>::new(&(*k).into(), &iv).decrypt_blocks(blocks);
            }
        }
    }
}

impl fmt::Debug for Dc09Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dc09Key(AES-{}, redacted)", self.bits())
    }
}

/// Splits bytes (a multiple of 16 long) into AES blocks.
pub(super) fn to_blocks(bytes: &[u8]) -> Vec<aes::Block> {
    bytes
        .chunks_exact(16)
        .map(|chunk| {
            let mut block = aes::Block::default();
            block.copy_from_slice(chunk);
            block
        })
        .collect()
}

/// Why an encrypted payload could not be read.
pub(super) enum Decrypt {
    Ciphertext(&'static str),
    Failed,
}

/// Decrypts the hex after the first `[` of an encrypted frame and strips the pad, giving
/// what an unencrypted frame would carry after its `[` (`data]`, x-data, `_timestamp`).
///
/// The plaintext is `pad [|data] ] [x-data]… [_timestamp]`, a multiple of 16 bytes:
/// * the pad is 1–16 characters (1–32 when padded to a 256-bit key length) that are never
///   `|`, `[` or `]`; `jvanovost/dc09_spt` draws them at random excluding exactly those three,
///   pysiaalarm writes `0`s (`str.zfill`), fioletoven/dc09 random alphanumerics;
/// * non-empty data follows a `|` (`dc09_spt` writes `'|' + msg`); empty data does not: vector C6
///   decrypts to `ppppppppppp]_18:24:52,07-05-2020` and pysiaalarm's encrypted ACK is
///   `zfill("]" + timestamp)`;
/// * pysiaalarm reads it with the regex `[^|\[\]]*` `[|]?` before the unencrypted content
///   pattern, which is the rule applied here.
///
/// A wrong key yields random bytes, which fail the pad rule or the printable-ASCII check on
/// the rest, or lack the `]`.
pub(super) fn decrypt_payload(key: &Dc09Key, hex_text: &[u8]) -> Result<Vec<u8>, Decrypt> {
    let bytes =
        hex::decode(hex_text).map_err(|_| Decrypt::Ciphertext("encrypted data is not hex"))?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(16) {
        return Err(Decrypt::Ciphertext(
            "encrypted data is not a whole number of 16-byte blocks",
        ));
    }
    let mut blocks = to_blocks(&bytes);
    key.decrypt(&mut blocks);
    let plain: Vec<u8> = blocks.iter().flat_map(|b| b.iter().copied()).collect();
    let pad = plain
        .iter()
        .position(|&b| matches!(b, b'|' | b'[' | b']'))
        .ok_or(Decrypt::Failed)?;
    let rest = plain.get(pad..).unwrap_or_default();
    let rest = rest.strip_prefix(b"|").unwrap_or(rest);
    if pad > MAX_PAD || !rest.contains(&b']') || !rest.iter().all(|&b| is_text(b)) {
        return Err(Decrypt::Failed);
    }
    Ok(rest.to_vec())
}
