//! SIA DC-09 (alarm reporting over IP): frames, replies and AES encryption.
//!
//! A frame on the wire is `<LF>` CRC LEN body `<CR>`. CRC is four upper-case hex digits of
//! CRC-16/ARC over the body, LEN four hex digits (`0LLL`) giving the body's byte length. The
//! body is
//!
//! ```text
//! "token" seq [R rcvr] [L line] [#acct] [data] [x-data]… [_HH:MM:SS,MM-DD-YYYY]
//! ```
//!
//! Encrypted frames put `*` before the token and replace everything after the first `[` with
//! the hex of an AES-CBC ciphertext (zero IV). The plaintext is a pad, an optional `|`, then
//! what an unencrypted frame would carry after its `[`: see [`decrypt_payload`] for the layout
//! and where it comes from.
//!
//! Everything here is pure: no I/O and no clock. Time enters as a [`Timestamp`] parameter,
//! and the encoder takes a seed for its pad characters instead of reading a random source.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use thiserror::Error;

use crate::contact_id::{self, CidEvent};
use crate::sia::{self, SiaData, SiaError, SiaEvent};
use crate::{Account, Ascii, Step, printable};

/// The frame start byte.
const LF: u8 = b'\n';
/// The frame end byte.
const CR: u8 = b'\r';

/// Longest body a frame can announce: LEN is `0LLL`, three significant hex digits.
pub const MAX_BODY: usize = 0x0FFF;
/// Longest frame on the wire: `<LF>`, CRC, LEN, the body and `<CR>`.
pub const MAX_FRAME: usize = 1 + 4 + 4 + MAX_BODY + 1;

/// How far (in seconds) a message timestamp may lie behind the receiver clock.
///
/// ANSI/SIA DC-09-2013 §5.5.1.9 has receivers accept timestamps within +20/−40 seconds of
/// their own UTC clock. Sources: pysiaalarm `SIAAccount.allowed_timeband = (40, 20)`, applied
/// in `SIAEvent.valid_timestamp` as `now - 40 s <= timestamp <= now + 20 s`, and its README
/// ("allowed between -40 and +20 seconds"); a public PHP DC-09 receiver configuration citing
/// §5.5.1.9 as `past_seconds = 40`, `future_seconds = 20`.
pub const DEFAULT_BEFORE_SECONDS: u32 = 40;
/// How far (in seconds) a message timestamp may lie ahead of the receiver clock; see
/// [`DEFAULT_BEFORE_SECONDS`] for the source.
pub const DEFAULT_AFTER_SECONDS: u32 = 20;

/// Longest pad accepted in front of a decrypted payload. Encoders pad to a multiple of the
/// 16-byte block (1–16 characters: pysiaalarm, `dc09_spt`), some to the key length (up to
/// 32 characters: fioletoven/dc09 with AES-256).
const MAX_PAD: usize = 32;

/// CRC-16/ARC (poly 0x8005 reflected, init 0), the CRC DC-09 takes from DC-07.
const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_ARC);

/// DC-09 encrypts with a zero initialisation vector.
const ZERO_IV: [u8; 16] = [0; 16];

/// Why a DC-09 frame, key or timestamp was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Dc09Error {
    #[error("missing <LF> start")]
    MissingStart,
    #[error("missing <CR> end")]
    MissingEnd,
    #[error("garbage before <LF> start: \"{0}\"")]
    Garbage(String),
    #[error("truncated frame \"{frame}\": {why}")]
    Truncated { frame: String, why: &'static str },
    #[error("frame longer than {MAX_FRAME} bytes")]
    Oversized,
    #[error("frame too short for crc and length fields: \"{0}\"")]
    TooShort(String),
    #[error("bad crc field \"{0}\"")]
    BadCrcField(String),
    #[error("bad length field \"{0}\"")]
    BadLengthField(String),
    #[error("crc mismatch: frame says {frame:04X}, computed {computed:04X}")]
    CrcMismatch { frame: u16, computed: u16 },
    #[error("length mismatch: frame says {field}, body is 0x{body:02X} bytes")]
    LengthMismatch { field: String, body: usize },
    #[error("control byte 0x{byte:02X} at position {position} of the body")]
    BadByte { byte: u8, position: usize },
    #[error("bad token \"{0}\"")]
    BadToken(String),
    #[error("unknown token \"{0}\"")]
    UnknownToken(String),
    #[error("bad sequence number \"{0}\"")]
    BadSequence(String),
    #[error("bad {field} field \"{value}\"")]
    BadField { field: &'static str, value: String },
    #[error("unexpected \"{found}\" in header \"{header}\"")]
    BadHeader { found: char, header: String },
    #[error("unterminated data block \"[{0}\"")]
    UnterminatedData(String),
    #[error("bad data block \"{0}\": it contains \"[\"")]
    BadData(String),
    #[error("bad extended data block \"{0}\"")]
    BadXData(String),
    #[error("bad timestamp \"{0}\"")]
    BadTimestamp(String),
    #[error("unexpected \"{0}\" after the data")]
    TrailingBytes(String),
    #[error("encrypted frame but no key configured")]
    NoKey { header: Box<Dc09Header> },
    #[error("bad ciphertext: {0}")]
    BadCiphertext(&'static str),
    #[error("decryption failed (wrong key?)")]
    DecryptFailed { header: Box<Dc09Header> },
    #[error("bad SIA data: {source}")]
    Sia {
        header: Box<Dc09Header>,
        source: SiaError,
    },
    #[error("bad ADM-CID data \"{data}\": {detail}")]
    AdmCid {
        header: Box<Dc09Header>,
        data: String,
        detail: String,
    },
    #[error("bad key: {0}")]
    BadKey(String),
    #[error(
        "timestamp {timestamp} is {} the receiver clock {now} (allowed: {before} s behind, {after} s ahead)",
        describe_offset(*.offset)
    )]
    TimestampOutOfWindow {
        timestamp: Timestamp,
        now: Timestamp,
        /// Message time minus receiver time, in seconds.
        offset: i64,
        before: u32,
        after: u32,
    },
    #[error("invalid message: {0}")]
    InvalidMessage(String),
}

fn describe_offset(offset: i64) -> String {
    if offset < 0 {
        format!("{} s behind", offset.unsigned_abs())
    } else {
        format!("{offset} s ahead of")
    }
}

impl Dc09Error {
    /// The header of a frame that passed its CRC but could not be fully decoded (no key,
    /// wrong key, bad content), so a receiver can still answer it (DUH or NAK) with the
    /// sequence number and account it echoes.
    pub fn header(&self) -> Option<&Dc09Header> {
        match self {
            Dc09Error::NoKey { header }
            | Dc09Error::DecryptFailed { header }
            | Dc09Error::Sia { header, .. }
            | Dc09Error::AdmCid { header, .. } => Some(header),
            _ => None,
        }
    }
}

/// The ID token naming what a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// `SIA-DCS`: a SIA (DC-03/DC-04) data block.
    SiaDcs,
    /// `ADM-CID`: an Ademco Contact ID event.
    AdmCid,
    /// `NULL`: a link test (supervision) message.
    Null,
    /// `ACK`: the receiver accepted the message.
    Ack,
    /// `NAK`: the receiver rejected the message (bad CRC, format or timestamp).
    Nak,
    /// `DUH`: the receiver did not understand the message.
    Duh,
    /// `RSP`: the receiver answers with data of its own.
    Rsp,
    /// Any other token, kept as sent so a receiver can answer it with DUH.
    Other(Ascii<16>),
}

impl Token {
    /// The token as on the wire, without quotes or the encryption `*`.
    pub fn as_str(&self) -> &str {
        match self {
            Token::SiaDcs => "SIA-DCS",
            Token::AdmCid => "ADM-CID",
            Token::Null => "NULL",
            Token::Ack => "ACK",
            Token::Nak => "NAK",
            Token::Duh => "DUH",
            Token::Rsp => "RSP",
            Token::Other(raw) => raw.as_str(),
        }
    }

    /// Reads a token from between the quotes (encryption `*` already removed). Unknown
    /// tokens become [`Token::Other`]; `None` when the text cannot be a token at all.
    fn from_wire(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"SIA-DCS" => Token::SiaDcs,
            b"ADM-CID" => Token::AdmCid,
            b"NULL" => Token::Null,
            b"ACK" => Token::Ack,
            b"NAK" => Token::Nak,
            b"DUH" => Token::Duh,
            b"RSP" => Token::Rsp,
            _ if name.is_empty() || name.contains(&b'"') || name.starts_with(b"*") => {
                return None;
            }
            _ => Token::Other(Ascii::new(name)?),
        })
    }

    /// True for the tokens a receiver sends back.
    pub fn is_reply(&self) -> bool {
        matches!(self, Token::Ack | Token::Nak | Token::Duh | Token::Rsp)
    }
}

/// Parses one of the known token names, e.g. from a simulator's command line, where a typo
/// should be an error rather than an exotic token.
impl FromStr for Token {
    type Err = Dc09Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match Token::from_wire(s.as_bytes()) {
            Some(Token::Other(_)) | None => Err(Dc09Error::UnknownToken(printable(s.as_bytes()))),
            Some(token) => Ok(token),
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// How the account was introduced in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum AccountForm {
    /// `#acct`, the form every message uses.
    #[default]
    #[serde(rename = "#")]
    Hash,
    /// `A…`, seen in receiver NAKs (`R0L0A0[]`).
    #[serde(rename = "A")]
    A,
}

impl AccountForm {
    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if passes a reference"
    )]
    fn is_hash(&self) -> bool {
        *self == AccountForm::Hash
    }
}

/// The header fields of a frame: what a reply echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Dc09Header {
    pub token: Token,
    pub encrypted: bool,
    /// Four decimal digits, echoed in the reply.
    pub sequence: Ascii<4>,
    /// Receiver number (hex digits after `R`).
    pub receiver: Option<Ascii<6>>,
    /// Line (account prefix) number (hex digits after `L`).
    pub line: Option<Ascii<6>>,
    pub account: Option<Account>,
    #[serde(skip_serializing_if = "AccountForm::is_hash")]
    pub account_form: AccountForm,
}

/// An extended-data block such as `[M0026B9E4268B]`: an identifying letter and its content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct XData {
    pub letter: char,
    pub content: String,
}

/// What a frame's data block means, by token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dc09Content {
    /// `SIA-DCS`: the parsed SIA data (no events when the data block is empty, `[]`).
    Sia(SiaData),
    /// `ADM-CID`: `#acct|QXYZ GG CCC`, the account inside the data (if any) and the event.
    ContactId {
        account: Option<Account>,
        event: CidEvent,
    },
    /// `NULL`: a link test; any data is kept raw in [`Dc09Frame::data`].
    Null,
    /// `ACK`, `NAK`, `DUH` or `RSP` from a receiver.
    Reply,
    /// A token this codec does not know; the data is kept raw. Receivers answer it with DUH.
    Unknown,
}

/// One decoded DC-09 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dc09Frame {
    pub token: Token,
    /// Whether the frame was encrypted (`*` before the token); its fields are the decrypted
    /// ones.
    pub encrypted: bool,
    pub sequence: Ascii<4>,
    pub receiver: Option<Ascii<6>>,
    pub line: Option<Ascii<6>>,
    pub account: Option<Account>,
    pub account_form: AccountForm,
    /// The data block as sent, without its brackets (decrypted and without the pad).
    pub data: String,
    pub xdata: Vec<XData>,
    pub timestamp: Option<Timestamp>,
    pub content: Dc09Content,
}

impl Dc09Frame {
    /// The fields a reply echoes.
    pub fn header(&self) -> Dc09Header {
        Dc09Header {
            token: self.token,
            encrypted: self.encrypted,
            sequence: self.sequence,
            receiver: self.receiver,
            line: self.line,
            account: self.account,
            account_form: self.account_form,
        }
    }

    /// The message this frame carries, ready to be encoded again.
    pub fn to_message(&self) -> Dc09Message {
        Dc09Message {
            token: self.token,
            sequence: decimal(self.sequence.as_bytes()).unwrap_or(0),
            receiver: self.receiver,
            line: self.line,
            account: self.account,
            data: self.data.clone(),
            xdata: self.xdata.clone(),
            timestamp: self.timestamp,
        }
    }

    /// The JSON fields in output order. Content fields are flattened next to the header, so
    /// the data block's own account is renamed `data_account` to keep keys unique.
    fn fields(&self) -> Vec<(&'static str, Field<'_>)> {
        let mut f = vec![
            ("token", Field::Str(self.token.as_str())),
            ("encrypted", Field::Bool(self.encrypted)),
            ("sequence", Field::Str(self.sequence.as_str())),
            (
                "receiver",
                Field::Opt(self.receiver.as_ref().map(Ascii::as_str)),
            ),
            ("line", Field::Opt(self.line.as_ref().map(Ascii::as_str))),
            (
                "account",
                Field::Opt(self.account.as_ref().map(Ascii::as_str)),
            ),
        ];
        if self.account_form == AccountForm::A {
            f.push(("account_form", Field::Str("A")));
        }
        f.push(("data", Field::Str(&self.data)));
        f.push(("xdata", Field::XData(&self.xdata)));
        f.push(("timestamp", Field::Time(self.timestamp)));
        match &self.content {
            Dc09Content::Sia(d) => {
                f.push(("kind", Field::Str("event")));
                f.push(("protocol", Field::Str("sia")));
                if let Some(a) = &d.account {
                    f.push(("data_account", Field::Str(a.as_str())));
                }
                f.push(("events", Field::Events(&d.events)));
                if let Some(date) = &d.panel_date {
                    f.push(("panel_date", Field::Str(date.as_str())));
                }
                if let Some(time) = &d.panel_time {
                    f.push(("panel_time", Field::Str(time.as_str())));
                }
                if !d.text.is_empty() {
                    f.push(("text", Field::Str(&d.text)));
                }
            }
            Dc09Content::ContactId { account, event } => {
                f.push(("kind", Field::Str("event")));
                f.push(("protocol", Field::Str("contact_id")));
                if let Some(a) = account {
                    f.push(("data_account", Field::Str(a.as_str())));
                }
                f.push(("qualifier", Field::Str(event.qualifier.as_str())));
                f.push(("event_code", Field::Str(event.event_code())));
                f.push(("group", Field::Str(event.group())));
                f.push(("zone", Field::Str(event.zone())));
                f.push(("description", Field::Str(event.description())));
                f.push(("sia_code", Field::Opt(event.sia_code())));
            }
            // A NULL message is the transmitter's link test: DC-09's heartbeat.
            Dc09Content::Null => f.push(("kind", Field::Str("heartbeat"))),
            Dc09Content::Reply => f.push(("kind", Field::Str("reply"))),
            Dc09Content::Unknown => f.push(("kind", Field::Str("unknown"))),
        }
        f
    }
}

/// One JSON value of a serialised frame.
enum Field<'a> {
    Str(&'a str),
    Opt(Option<&'a str>),
    Bool(bool),
    Time(Option<Timestamp>),
    XData(&'a [XData]),
    Events(&'a [SiaEvent]),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::Opt(v) => v.serialize(s),
            Field::Bool(v) => s.serialize_bool(*v),
            Field::Time(v) => v.serialize(s),
            Field::XData(v) => v.serialize(s),
            Field::Events(v) => v.serialize(s),
        }
    }
}

impl Serialize for Dc09Frame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields();
        let mut map = s.serialize_map(Some(fields.len()))?;
        for (key, value) in &fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Incremental decoder for a stream of DC-09 frames (TCP, or a serial line).
///
/// Follows the crate's [`Step`] conventions: whitespace between frames is consumed silently;
/// anything else before an `<LF>` is reported once as garbage (up to the next `<LF>` or
/// through the next `<CR>`); a frame longer than [`MAX_FRAME`] is reported once and the rest
/// of it skipped. Because a frame never contains `<LF>`, an `<LF>` before the `<CR>` ends a
/// truncated frame and starts the next one.
#[derive(Debug, Clone, Default)]
pub struct Dc09Decoder {
    key: Option<Dc09Key>,
    accept_bad_length: bool,
    discarding: bool,
}

impl Dc09Decoder {
    /// A decoder that decrypts encrypted frames with `key`, if given.
    pub fn new(key: Option<Dc09Key>) -> Self {
        Self {
            key,
            accept_bad_length: false,
            discarding: false,
        }
    }

    /// Accept frames whose LEN field disagrees with the body length (the CRC is still
    /// checked). Some senders write the decimal length as if it were hex, as pysiaalarm's
    /// test vectors do.
    #[must_use]
    pub fn accept_bad_length(mut self, accept: bool) -> Self {
        self.accept_bad_length = accept;
        self
    }

    /// Offers `buf`, which starts where the previous step's `consumed` ended.
    pub fn decode(&mut self, buf: &[u8]) -> Step<Dc09Frame, Dc09Error> {
        if self.discarding
            && let Some(step) = self.discard(buf)
        {
            return step;
        }
        let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if ws == buf.len() {
            return Step::Incomplete;
        }
        let Some(start) = buf.get(..ws).and_then(|w| w.iter().rposition(|&b| b == LF)) else {
            return garbage(buf, ws);
        };
        let region = buf.get(start + 1..).unwrap_or_default();
        match region
            .iter()
            .enumerate()
            .find(|&(_, &b)| b == CR || b == LF)
        {
            Some((i, &CR)) => {
                let consumed = start + 1 + i + 1;
                let line = region.get(..i).unwrap_or_default();
                if line.len() > 8 + MAX_BODY {
                    return Step::Invalid {
                        error: Dc09Error::Oversized,
                        consumed,
                    };
                }
                match parse_line(line, self.key.as_ref(), self.accept_bad_length) {
                    Ok(frame) => Step::Frame { frame, consumed },
                    Err(error) => Step::Invalid { error, consumed },
                }
            }
            Some((i, _)) => Step::Invalid {
                error: Dc09Error::Truncated {
                    frame: printable(region.get(..i).unwrap_or_default().trim_ascii_end()),
                    why: "a new <LF> arrived before <CR>",
                },
                consumed: start + 1 + i,
            },
            None if region.len() > 8 + MAX_BODY => {
                self.discarding = true;
                Step::Invalid {
                    error: Dc09Error::Oversized,
                    consumed: buf.len(),
                }
            }
            None => Step::Incomplete,
        }
    }

    /// Skips the rest of an oversized frame, up to and including its `<CR>`, or up to the
    /// `<LF>` of the next frame. `None` when `buf` starts with that `<LF>`.
    fn discard(&mut self, buf: &[u8]) -> Option<Step<Dc09Frame, Dc09Error>> {
        Some(
            match buf.iter().enumerate().find(|&(_, &b)| b == CR || b == LF) {
                Some((i, &CR)) => {
                    self.discarding = false;
                    Step::Skipped {
                        consumed: i + 1,
                        terminated: true,
                    }
                }
                Some((0, _)) => {
                    self.discarding = false;
                    return None;
                }
                Some((i, _)) => {
                    self.discarding = false;
                    Step::Skipped {
                        consumed: i,
                        terminated: true,
                    }
                }
                None if buf.is_empty() => Step::Incomplete,
                None => Step::Skipped {
                    consumed: buf.len(),
                    terminated: false,
                },
            },
        )
    }

    /// Reports what is left when the input ends (after [`decode`](Self::decode) answered
    /// [`Step::Incomplete`]): a frame without its `<CR>`, or garbage. `None` when only
    /// whitespace or the tail of an already reported oversized frame is left.
    pub fn finish(&mut self, rest: &[u8]) -> Option<Result<Dc09Frame, Dc09Error>> {
        let was_discarding = std::mem::take(&mut self.discarding);
        let ws = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let tail = rest.get(ws..).unwrap_or_default().trim_ascii_end();
        if tail.is_empty() || was_discarding {
            return None;
        }
        let starts_frame = rest.get(..ws).is_some_and(|w| w.contains(&LF));
        Some(Err(if starts_frame {
            Dc09Error::Truncated {
                frame: printable(tail),
                why: "input ended before <CR>",
            }
        } else {
            Dc09Error::Garbage(printable(tail))
        }))
    }

    /// Decodes one whole frame, `<LF>` to `<CR>`, such as a UDP datagram. Surrounding
    /// whitespace other than the delimiters is ignored.
    pub fn decode_frame(&self, frame: &[u8]) -> Result<Dc09Frame, Dc09Error> {
        let trimmed = trim_spaces(frame);
        let Some(inner) = trimmed.strip_prefix(&[LF]) else {
            return Err(Dc09Error::MissingStart);
        };
        let Some(line) = inner.strip_suffix(&[CR]) else {
            return Err(Dc09Error::MissingEnd);
        };
        if line.len() > 8 + MAX_BODY {
            return Err(Dc09Error::Oversized);
        }
        parse_line(line, self.key.as_ref(), self.accept_bad_length)
    }
}

/// Strips spaces and tabs (not `<LF>`/`<CR>`, which delimit the frame) from both ends.
fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    let rest = bytes.get(start..).unwrap_or_default();
    let end = rest.len()
        - rest
            .iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
    rest.get(..end).unwrap_or_default()
}

/// Reports the non-whitespace run starting at `from` that precedes the next `<LF>` (or ends
/// with a `<CR>`) as one piece of garbage.
fn garbage(buf: &[u8], from: usize) -> Step<Dc09Frame, Dc09Error> {
    let tail = buf.get(from..).unwrap_or_default();
    match tail.iter().enumerate().find(|&(_, &b)| b == CR || b == LF) {
        Some((i, &b)) => Step::Invalid {
            error: Dc09Error::Garbage(printable(
                tail.get(..i).unwrap_or_default().trim_ascii_end(),
            )),
            consumed: from + i + usize::from(b == CR),
        },
        None if tail.len() > MAX_FRAME => Step::Invalid {
            error: Dc09Error::Garbage(printable(tail)),
            consumed: buf.len(),
        },
        None => Step::Incomplete,
    }
}

/// Parses four hex digits.
fn hex4(field: &[u8]) -> Option<u16> {
    if field.len() != 4 || !field.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(field).ok()?, 16).ok()
}

/// Decodes the bytes between `<LF>` and `<CR>`: CRC, LEN and body.
fn parse_line(
    line: &[u8],
    key: Option<&Dc09Key>,
    accept_bad_length: bool,
) -> Result<Dc09Frame, Dc09Error> {
    let (Some(crc_field), Some(len_field), Some(body)) =
        (line.get(..4), line.get(4..8), line.get(8..))
    else {
        return Err(Dc09Error::TooShort(printable(line)));
    };
    let frame_crc = hex4(crc_field).ok_or_else(|| Dc09Error::BadCrcField(printable(crc_field)))?;
    let frame_len =
        hex4(len_field).ok_or_else(|| Dc09Error::BadLengthField(printable(len_field)))?;
    // The CRC goes first: it is the stronger check, and a frame failing both is corrupt
    // rather than merely mis-counted.
    let computed = CRC16.checksum(body);
    if frame_crc != computed {
        return Err(Dc09Error::CrcMismatch {
            frame: frame_crc,
            computed,
        });
    }
    if !accept_bad_length && usize::from(frame_len) != body.len() {
        return Err(Dc09Error::LengthMismatch {
            field: printable(len_field),
            body: body.len(),
        });
    }
    // DC-09 bodies are ASCII, but a panel writing a zone name in UTF-8 inside `^…^` still
    // reports a real alarm, so only control bytes (which no frame can carry) are refused.
    if let Some((position, &byte)) = body.iter().enumerate().find(|&(_, b)| b.is_ascii_control()) {
        return Err(Dc09Error::BadByte { byte, position });
    }
    let (header, after_bracket) = parse_header(body)?;
    let decrypted;
    let payload = if header.encrypted {
        let Some(key) = key else {
            return Err(Dc09Error::NoKey {
                header: Box::new(header),
            });
        };
        decrypted = decrypt_payload(key, after_bracket).map_err(|e| match e {
            Decrypt::Ciphertext(why) => Dc09Error::BadCiphertext(why),
            Decrypt::Failed => Dc09Error::DecryptFailed {
                header: Box::new(header),
            },
        })?;
        decrypted.as_slice()
    } else {
        after_bracket
    };
    let Payload {
        data,
        xdata,
        timestamp,
    } = parse_payload(payload)?;
    let content = parse_content(&header, data)?;
    Ok(Dc09Frame {
        token: header.token,
        encrypted: header.encrypted,
        sequence: header.sequence,
        receiver: header.receiver,
        line: header.line,
        account: header.account,
        account_form: header.account_form,
        data: String::from_utf8_lossy(data).into_owned(),
        xdata,
        timestamp,
        content,
    })
}

/// Printable ASCII: what the encoder writes, and what a decrypted payload must be (the bytes
/// a wrong key yields almost never are).
fn is_text(b: u8) -> bool {
    (0x20..=0x7E).contains(&b)
}

/// Splits a leading run of hex digits off `bytes`.
fn hex_run(bytes: &[u8]) -> (&[u8], &[u8]) {
    let n = bytes.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    bytes.split_at(n)
}

/// In `L0A0[` the run after `L` is `0A0`, all hex digits, yet DC-09 NAKs mean line `0` and
/// account `A0`. When a receiver or line run directly precedes `[`, a trailing `A` plus
/// decimal digits is therefore read as an `A`-form account.
fn split_a_form(run: &[u8]) -> Option<(&[u8], &[u8])> {
    let k = run.iter().rposition(|&b| b == b'A')?;
    let (field, account) = (run.get(..k)?, run.get(k + 1..)?);
    (!field.is_empty() && !account.is_empty() && account.iter().all(u8::is_ascii_digit))
        .then_some((field, account))
}

/// A receiver, line or account field, or the error naming it with its prefix letter.
fn field<const N: usize>(
    name: &'static str,
    prefix: &str,
    run: &[u8],
    ok: bool,
) -> Result<Ascii<N>, Dc09Error> {
    Ascii::new(run)
        .filter(|_| ok)
        .ok_or_else(|| Dc09Error::BadField {
            field: name,
            value: format!("{prefix}{}", printable(run)),
        })
}

/// Parses `"token"seq[R…][L…][#acct]` and the `[` after it; returns the header and the bytes
/// after the `[`.
fn parse_header(body: &[u8]) -> Result<(Dc09Header, &[u8]), Dc09Error> {
    let bad_token = || Dc09Error::BadToken(printable(body.get(..24).unwrap_or(body)));
    let quoted = body.strip_prefix(b"\"").ok_or_else(bad_token)?;
    let q = quoted
        .iter()
        .position(|&b| b == b'"')
        .ok_or_else(bad_token)?;
    let (raw, rest) = quoted.split_at(q);
    let rest = rest.get(1..).unwrap_or_default();
    let (encrypted, name) = match raw.strip_prefix(b"*") {
        Some(name) => (true, name),
        None => (false, raw),
    };
    let token = Token::from_wire(name).ok_or_else(|| Dc09Error::BadToken(printable(raw)))?;

    let (seq, mut rest) = rest.split_at_checked(4).unwrap_or((rest, &[]));
    let sequence = Ascii::new(seq)
        .filter(|_| seq.len() == 4 && seq.iter().all(u8::is_ascii_digit))
        .ok_or_else(|| Dc09Error::BadSequence(printable(seq)))?;

    let mut receiver = None;
    let mut line = None;
    if let Some(r) = rest.strip_prefix(b"R") {
        let (run, tail) = hex_run(r);
        receiver = Some(run);
        rest = tail;
    }
    if let Some(r) = rest.strip_prefix(b"L") {
        let (run, tail) = hex_run(r);
        line = Some(run);
        rest = tail;
    }
    let mut account = None;
    let mut account_form = AccountForm::Hash;
    if rest.starts_with(b"[") {
        let last = if line.is_some() {
            &mut line
        } else {
            &mut receiver
        };
        if let Some((field, acct)) = last.and_then(split_a_form) {
            *last = Some(field);
            account = Some(acct);
            account_form = AccountForm::A;
        }
    }
    let receiver = receiver
        .map(|r| field("receiver", "R", r, (1..=6).contains(&r.len())))
        .transpose()?;
    let line = line
        .map(|l| field("line", "L", l, (1..=6).contains(&l.len())))
        .transpose()?;
    for (prefix, form) in [(b'#', AccountForm::Hash), (b'A', AccountForm::A)] {
        if account.is_none()
            && let Some(r) = rest.strip_prefix(&[prefix])
        {
            let n = r.iter().take_while(|b| b.is_ascii_alphanumeric()).count();
            let (run, tail) = r.split_at(n);
            account = Some(run);
            account_form = form;
            rest = tail;
        }
    }
    let account = account
        .map(|a| {
            let (prefix, range) = match account_form {
                AccountForm::Hash => ("#", 3..=16),
                AccountForm::A => ("A", 1..=16),
            };
            field("account", prefix, a, range.contains(&a.len()))
        })
        .transpose()?;
    let Some(after) = rest.strip_prefix(b"[") else {
        let found = rest.first().map_or('?', |&b| char::from(b));
        let end = body.len() - rest.len();
        return Err(Dc09Error::BadHeader {
            found,
            header: printable(body.get(..=end).unwrap_or(body)),
        });
    };
    let header = Dc09Header {
        token,
        encrypted,
        sequence,
        receiver,
        line,
        account,
        account_form,
    };
    Ok((header, after))
}

/// What follows the first `[` of a frame, parsed.
struct Payload<'a> {
    data: &'a [u8],
    xdata: Vec<XData>,
    timestamp: Option<Timestamp>,
}

/// Parses what follows the first `[`: `data]`, `[x-data]` blocks and the `_timestamp`.
fn parse_payload(payload: &[u8]) -> Result<Payload<'_>, Dc09Error> {
    let Some(close) = payload.iter().position(|&b| b == b']') else {
        return Err(Dc09Error::UnterminatedData(printable(payload)));
    };
    let (data, rest) = payload.split_at(close);
    if data.contains(&b'[') {
        return Err(Dc09Error::BadData(printable(data)));
    }
    let mut rest = rest.get(1..).unwrap_or_default();
    let mut xdata = Vec::new();
    while let Some(open) = rest.strip_prefix(b"[") {
        let bad = || Dc09Error::BadXData(printable(rest.get(..40).unwrap_or(rest)));
        let end = open.iter().position(|&b| b == b']').ok_or_else(bad)?;
        let (block, tail) = open.split_at(end);
        let Some((&letter, content)) = block.split_first() else {
            return Err(bad());
        };
        if !letter.is_ascii_alphabetic() || content.contains(&b'[') {
            return Err(bad());
        }
        xdata.push(XData {
            letter: char::from(letter),
            content: String::from_utf8_lossy(content).into_owned(),
        });
        rest = tail.get(1..).unwrap_or_default();
    }
    let timestamp = match rest {
        [] => None,
        [b'_', ts @ ..] => {
            Some(Timestamp::parse(ts).ok_or_else(|| Dc09Error::BadTimestamp(printable(rest)))?)
        }
        _ => return Err(Dc09Error::TrailingBytes(printable(rest))),
    };
    Ok(Payload {
        data,
        xdata,
        timestamp,
    })
}

/// Interprets the data block according to the token.
fn parse_content(header: &Dc09Header, data: &[u8]) -> Result<Dc09Content, Dc09Error> {
    Ok(match header.token {
        Token::SiaDcs if data.is_empty() => Dc09Content::Sia(SiaData {
            account: None,
            events: Vec::new(),
            panel_date: None,
            panel_time: None,
            listen_in: None,
            text: String::new(),
        }),
        Token::SiaDcs => {
            Dc09Content::Sia(
                sia::parse_data(data, true).map_err(|source| Dc09Error::Sia {
                    header: Box::new(*header),
                    source,
                })?,
            )
        }
        Token::AdmCid => {
            let (account, event) = parse_adm_cid(data).map_err(|detail| Dc09Error::AdmCid {
                header: Box::new(*header),
                data: printable(data),
                detail,
            })?;
            Dc09Content::ContactId { account, event }
        }
        Token::Null => Dc09Content::Null,
        Token::Ack | Token::Nak | Token::Duh | Token::Rsp => Dc09Content::Reply,
        Token::Other(_) => Dc09Content::Unknown,
    })
}

/// Parses ADM-CID data, `#acct|QXYZ GG CCC` (account and bar optional).
fn parse_adm_cid(data: &[u8]) -> Result<(Option<Account>, CidEvent), String> {
    let mut rest = data;
    let mut account = None;
    if let Some(r) = data.strip_prefix(b"#") {
        let bar = r
            .iter()
            .position(|&b| b == b'|')
            .ok_or("missing \"|\" after the account")?;
        let (acct, tail) = r.split_at(bar);
        let ok = (3..=16).contains(&acct.len()) && acct.iter().all(u8::is_ascii_alphanumeric);
        account = Some(
            Account::new(acct)
                .filter(|_| ok)
                .ok_or_else(|| format!("bad account \"#{}\"", printable(acct)))?,
        );
        rest = tail.get(1..).unwrap_or_default();
    } else if let Some(r) = data.strip_prefix(b"|") {
        rest = r;
    }
    let &[q, x, y, z, b' ', g1, g2, b' ', c1, c2, c3] = rest else {
        return Err("expected QXYZ GG CCC".into());
    };
    if !q.is_ascii_digit() {
        return Err(format!("qualifier {:?} is not a digit", char::from(q)));
    }
    let event = CidEvent::new(
        contact_id::qualifier_from_digit(q),
        &[x, y, z],
        &[g1, g2],
        &[c1, c2, c3],
    )
    .map_err(|e| e.to_string())?;
    Ok((account, event))
}

mod crypto;
mod encode;
#[cfg(test)]
mod tests;
mod time;

pub use crypto::*;
pub use encode::*;
pub use time::*;
