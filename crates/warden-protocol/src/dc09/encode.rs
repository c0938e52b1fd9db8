//! Encoding DC-09 frames (plain and encrypted) and the receiver's replies (ACK, NAK, DUH).

#[allow(clippy::wildcard_imports)]
use super::*;

/// A message to send, e.g. from a simulator; see [`encode`] and [`encode_encrypted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dc09Message {
    pub token: Token,
    /// 0–9999, written as four digits.
    pub sequence: u16,
    pub receiver: Option<Ascii<6>>,
    pub line: Option<Ascii<6>>,
    pub account: Option<Account>,
    /// The data block without brackets, e.g. `#1234|Nri1/BA01`.
    pub data: String,
    pub xdata: Vec<XData>,
    pub timestamp: Option<Timestamp>,
}

impl Dc09Message {
    /// Checks that the message encodes to a frame a receiver can read back: field syntax,
    /// no brackets in data, and a body within [`MAX_BODY`]. [`encode`] does not check.
    pub fn validate(&self) -> Result<(), Dc09Error> {
        let bad = |what: String| Err(Dc09Error::InvalidMessage(what));
        let hex_field = |f: &Option<Ascii<6>>| {
            f.as_ref()
                .is_none_or(|v| !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_hexdigit))
        };
        let text = |s: &str| s.bytes().all(|b| is_text(b) && b != b'[' && b != b']');
        if Token::from_wire(self.token.as_str().as_bytes()).is_none() {
            return bad(format!("token {:?}", self.token.as_str()));
        }
        if self.sequence > 9999 {
            return bad(format!("sequence {} is above 9999", self.sequence));
        }
        if !hex_field(&self.receiver) || !hex_field(&self.line) {
            return bad("receiver and line must be 1-6 hex digits".into());
        }
        if let Some(a) = &self.account
            && (a.as_bytes().len() < 3 || !a.as_bytes().iter().all(u8::is_ascii_alphanumeric))
        {
            return bad(format!("account {a:?} must be 3-16 letters or digits"));
        }
        if !text(&self.data) {
            return bad(format!(
                "data {:?} must be printable ASCII without brackets",
                self.data
            ));
        }
        for x in &self.xdata {
            if !x.letter.is_ascii_alphabetic() || !text(&x.content) {
                return bad(format!("x-data [{}{}]", x.letter, x.content));
            }
        }
        let len = body(self, false, &[]).len();
        if len > MAX_BODY {
            return bad(format!("body of {len} bytes exceeds {MAX_BODY}"));
        }
        Ok(())
    }
}

/// Writes `"token"seq R L #acct[` (the `*` when `encrypted`).
fn write_header(out: &mut Vec<u8>, token: &Token, encrypted: bool, sequence: &[u8], h: Fields<'_>) {
    out.push(b'"');
    if encrypted {
        out.push(b'*');
    }
    out.extend_from_slice(token.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(sequence);
    if let Some(r) = h.receiver {
        out.push(b'R');
        out.extend_from_slice(r.as_bytes());
    }
    if let Some(l) = h.line {
        out.push(b'L');
        out.extend_from_slice(l.as_bytes());
    }
    if let Some(a) = h.account {
        out.push(match h.account_form {
            AccountForm::Hash => b'#',
            AccountForm::A => b'A',
        });
        out.extend_from_slice(a.as_bytes());
    }
    out.push(b'[');
}

/// The header fields shared by messages and replies.
#[derive(Clone, Copy)]
struct Fields<'a> {
    receiver: Option<&'a Ascii<6>>,
    line: Option<&'a Ascii<6>>,
    account: Option<&'a Account>,
    account_form: AccountForm,
}

/// Writes what follows the `[` of an unencrypted frame: `data]`, x-data and `_timestamp`.
pub(super) fn write_payload(
    out: &mut Vec<u8>,
    data: &[u8],
    xdata: &[XData],
    timestamp: Option<Timestamp>,
) {
    out.extend_from_slice(data);
    out.push(b']');
    for x in xdata {
        out.push(b'[');
        let mut letter = [0; 4];
        out.extend_from_slice(x.letter.encode_utf8(&mut letter).as_bytes());
        out.extend_from_slice(x.content.as_bytes());
        out.push(b']');
    }
    if let Some(ts) = timestamp {
        out.push(b'_');
        out.extend_from_slice(ts.to_string().as_bytes());
    }
}

/// Wraps a body as `<LF>` CRC LEN body `<CR>`.
pub(super) fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 10);
    out.push(LF);
    out.extend_from_slice(format!("{:04X}{:04X}", CRC16.checksum(body), body.len()).as_bytes());
    out.extend_from_slice(body);
    out.push(CR);
    out
}

/// Deterministic pad characters: alphanumerics from a `SplitMix64` sequence seeded by the
/// caller, so the encoder stays pure and its output reproducible.
pub(super) fn pad_chars(len: usize, seed: u64) -> impl Iterator<Item = u8> {
    const ALNUM: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut state = seed;
    std::iter::repeat_with(move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let i = usize::try_from(z % 62).unwrap_or(0);
        ALNUM.get(i).copied().unwrap_or(b'0')
    })
    .take(len)
}

/// Builds a message's body: the plain payload, or when `encrypted` the given ciphertext hex.
pub(super) fn body(msg: &Dc09Message, encrypted: bool, ciphertext_hex: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let sequence = format!("{:04}", msg.sequence % 10_000);
    let fields = Fields {
        receiver: msg.receiver.as_ref(),
        line: msg.line.as_ref(),
        account: msg.account.as_ref(),
        account_form: AccountForm::Hash,
    };
    write_header(&mut out, &msg.token, encrypted, sequence.as_bytes(), fields);
    if encrypted {
        out.extend_from_slice(ciphertext_hex);
    } else {
        write_payload(&mut out, msg.data.as_bytes(), &msg.xdata, msg.timestamp);
    }
    out
}

/// Encodes an unencrypted message as `<LF>` CRC LEN body `<CR>`. The message should pass
/// [`Dc09Message::validate`]; this does not check it.
pub fn encode(msg: &Dc09Message) -> Vec<u8> {
    frame(&body(msg, false, &[]))
}

/// Encodes a message encrypted with `key` (`*` before the token). The pad characters come
/// from `pad_seed`, so the same seed gives the same frame; pass a fresh value per message
/// (a counter or a random number) so equal messages do not give equal ciphertexts. DC-09
/// expects encrypted messages to carry a timestamp.
pub fn encode_encrypted(msg: &Dc09Message, key: &Dc09Key, pad_seed: u64) -> Vec<u8> {
    let mut inner = Vec::new();
    if !msg.data.is_empty() {
        inner.push(b'|');
    }
    write_payload(&mut inner, msg.data.as_bytes(), &msg.xdata, msg.timestamp);
    // Always at least one pad character, as the senders in the field do, so the plaintext
    // never starts with the content itself.
    let pad_len = 16 - inner.len() % 16;
    let mut plain: Vec<u8> = pad_chars(pad_len, pad_seed).collect();
    plain.extend_from_slice(&inner);
    let mut blocks = to_blocks(&plain);
    key.encrypt(&mut blocks);
    let cipher: Vec<u8> = blocks.iter().flat_map(|b| b.iter().copied()).collect();
    frame(&body(msg, true, hex::encode_upper(cipher).as_bytes()))
}

/// Builds an unencrypted reply echoing the frame's sequence, receiver, line and account,
/// with empty data `[]`.
pub(super) fn reply(token: Token, header: &Dc09Header) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = Fields {
        receiver: header.receiver.as_ref(),
        line: header.line.as_ref(),
        account: header.account.as_ref(),
        account_form: header.account_form,
    };
    write_header(&mut out, &token, false, header.sequence.as_bytes(), fields);
    out.push(b']');
    frame(&out)
}

/// The ACK for a frame: `"ACK"seq R L #acct[]`, unencrypted and without a timestamp, as
/// pysiaalarm answers unencrypted frames.
pub fn ack(header: &Dc09Header) -> Vec<u8> {
    reply(Token::Ack, header)
}

/// The DUH ("don't understand") for a frame, e.g. one with an unknown token or content:
/// `"DUH"seq R L #acct[]`. pysiaalarm sends it unencrypted even to encrypted frames.
pub fn duh(header: &Dc09Header) -> Vec<u8> {
    reply(Token::Duh, header)
}

/// The NAK for a frame that cannot be trusted (bad CRC, format or timestamp):
/// `"NAK"0000R0L0A0[]_HH:MM:SS,MM-DD-YYYY` carrying the receiver's clock, so the sender can
/// correct its own.
pub fn nak(now: Timestamp) -> Vec<u8> {
    let mut out = b"\"NAK\"0000R0L0A0[]_".to_vec();
    out.extend_from_slice(now.to_string().as_bytes());
    frame(&out)
}

/// The ACK for an encrypted frame: `"*ACK"seq R L #acct[` + ciphertext of `pad]_now`,
/// encrypted with the same key, as DC-09 asks and pysiaalarm does.
pub fn ack_encrypted(header: &Dc09Header, key: &Dc09Key, now: Timestamp, pad_seed: u64) -> Vec<u8> {
    let msg = Dc09Message {
        token: Token::Ack,
        sequence: decimal(header.sequence.as_bytes()).unwrap_or(0),
        receiver: header.receiver,
        line: header.line,
        account: header.account,
        data: String::new(),
        xdata: Vec::new(),
        timestamp: Some(now),
    };
    encode_encrypted(&msg, key, pad_seed)
}
