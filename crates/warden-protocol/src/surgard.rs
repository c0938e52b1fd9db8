//! Sur-Gard (DSC) receiver automation output, as MLR2/MLR2-E/System III/5 receivers send it
//! over RS-232 (or SG-TCP port 1025).
//!
//! Every frame ends with DC4 (0x14) and the computer answers each one, heartbeats included,
//! with ACK (0x06) within 4 s, or NAK (0x15) to have it sent again. Frame shapes decoded:
//!
//! * heartbeat: `1011` + 11 spaces + `@` + 4 spaces (MLR2), or the 6-character header form
//!   `1RR000` + the same tail (System III/5);
//! * Contact ID, protocol `5`: `5RRL 18AAAAQXYZGGCCC` (MLR2) or `5RRLLL 18AAAAQXYZGGCCC`
//!   (System III/5), message type 18 or 98, `Q` one of E (new), R (restore), P (previous,
//!   still present); optionally followed by the receiver's clock `HH:MM:SS-dd/mm`;
//! * 10-digit accounts, protocol `Q`: `QRRLLL 58AAAAAAAAAAQXYZGGCCC`;
//! * SIA, protocol `S` (and receiver-internal messages, protocol `0`):
//!   `SRRL[#1234|Nri1BA01]`.
//!
//! Other protocol numbers (basic 4/2, BFSK, Ademco high speed, …) are reported as
//! [`SurGardError::UnsupportedProtocol`] so the caller can keep the frame and decide whether
//! to ACK it; they are never silently dropped.

use serde::Serialize;
use serde::ser::SerializeMap;
use thiserror::Error;
use warden_types::Qualifier;

use crate::contact_id::{CidEvent, ContactIdError};
use crate::sia::{self, SiaData, SiaError};
use crate::{Account, Ascii, DC4, Split, Splitter, Step, printable};

/// Longest frame accepted before DC4 (a Contact ID frame is 20–40 bytes; SIA with text more).
pub const MAX_FRAME: usize = 512;

/// Why a Sur-Gard frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SurGardError {
    #[error("empty frame")]
    Empty,
    #[error(
        "unsupported Sur-Gard protocol {0:?}: only heartbeats, Contact ID (5, Q) and SIA (S, 0) are decoded"
    )]
    UnsupportedProtocol(char),
    #[error("bad header {0:?}: expected receiver and line digits (RRL or RRLLL) then a space")]
    Header(String),
    #[error("message type {0:?} is not 18, 98 or 58")]
    MessageType(String),
    #[error("bad account {0:?}")]
    Account(String),
    #[error("qualifier {0:?} is not E, R or P")]
    Qualifier(char),
    #[error("frame too short: {0:?}")]
    Short(String),
    #[error("unexpected trailing bytes {0:?} after the event (frames run together without DC4?)")]
    Trailing(String),
    #[error(transparent)]
    ContactId(#[from] ContactIdError),
    #[error("bad SIA block: {0}")]
    Sia(#[from] SiaError),
    #[error("frame longer than {MAX_FRAME} bytes without DC4")]
    Oversized,
    #[error("truncated frame at end of input (no DC4): {0:?}")]
    Truncated(String),
}

/// Where a frame came from inside the receiver: receiver number and line card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    pub receiver: Ascii<2>,
    pub line: Ascii<3>,
}

/// One decoded Sur-Gard frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SurGardFrame {
    /// The receiver's supervisory heartbeat ("I am alive"); it must be ACKed too.
    Heartbeat { origin: Origin },
    /// A Contact ID event.
    ContactId {
        origin: Origin,
        /// The protocol character: `5` (4-digit account) or `Q` (10-digit).
        protocol: char,
        account: Account,
        message_type: Ascii<2>,
        event: CidEvent,
        /// The receiver's clock, `HH:MM:SS-dd/mm`, in the clock-signal variant.
        receiver_time: Option<Ascii<14>>,
    },
    /// A SIA event block.
    Sia {
        origin: Origin,
        /// `S` for panel events, `0` for receiver-internal messages.
        protocol: char,
        raw: String,
        data: SiaData,
    },
}

impl SurGardFrame {
    pub fn origin(&self) -> Origin {
        match self {
            SurGardFrame::Heartbeat { origin }
            | SurGardFrame::ContactId { origin, .. }
            | SurGardFrame::Sia { origin, .. } => *origin,
        }
    }

    /// Parses one frame without its DC4.
    pub fn parse(frame: &[u8]) -> Result<Self, SurGardError> {
        let frame = trim(frame);
        let Some(&protocol) = frame.first() else {
            return Err(SurGardError::Empty);
        };
        match protocol {
            b'1' => parse_heartbeat(frame),
            b'5' | b'Q' => parse_contact_id(frame),
            b'S' | b'0' => parse_sia(frame),
            // A frame that looks like automation output (a protocol character, then the
            // receiver number) but uses a protocol not decoded here; anything else is noise.
            other
                if other.is_ascii_alphanumeric()
                    && frame
                        .get(1..3)
                        .is_some_and(|r| r.iter().all(u8::is_ascii_digit)) =>
            {
                Err(SurGardError::UnsupportedProtocol(char::from(other)))
            }
            _ => Err(SurGardError::Header(printable(frame))),
        }
    }

    /// Appends the frame, DC4 included, as a receiver would send it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let push_origin = |out: &mut Vec<u8>, o: &Origin| {
            out.extend_from_slice(o.receiver.as_bytes());
            out.extend_from_slice(o.line.as_bytes());
        };
        match self {
            SurGardFrame::Heartbeat { origin } => {
                out.push(b'1');
                push_origin(out, origin);
                out.extend_from_slice(b"           @    ");
            }
            SurGardFrame::ContactId {
                origin,
                protocol,
                account,
                message_type,
                event,
                receiver_time,
            } => {
                out.push(u8::try_from(*protocol).unwrap_or(b'5'));
                push_origin(out, origin);
                out.push(b' ');
                out.extend_from_slice(message_type.as_bytes());
                out.extend_from_slice(account.as_bytes());
                out.push(match event.qualifier {
                    Qualifier::Restore => b'R',
                    Qualifier::Status => b'P',
                    _ => b'E',
                });
                out.extend_from_slice(event.event_code().as_bytes());
                out.extend_from_slice(event.group().as_bytes());
                out.extend_from_slice(event.zone().as_bytes());
                if let Some(t) = receiver_time {
                    out.extend_from_slice(t.as_bytes());
                }
            }
            SurGardFrame::Sia {
                origin,
                protocol,
                raw,
                ..
            } => {
                out.push(u8::try_from(*protocol).unwrap_or(b'S'));
                push_origin(out, origin);
                out.push(b'[');
                out.extend_from_slice(raw.as_bytes());
                out.push(b']');
            }
        }
        out.push(DC4);
    }
}

/// Drops line noise some receivers and cables add around frames: trailing CR/LF/NUL, and
/// anything up to the last CR/LF/NUL before the frame (a frame never contains one, so what
/// precedes it is noise from before the receiver started the frame). Spaces are kept, since
/// the heartbeat's spaces are significant. The caller keeps the whole chunk as raw bytes.
fn trim(frame: &[u8]) -> &[u8] {
    let noise = |b: &u8| matches!(b, b'\r' | b'\n' | 0);
    let end = frame.iter().rposition(|b| !noise(b)).map_or(0, |i| i + 1);
    let start = frame[..end].iter().rposition(noise).map_or(0, |i| i + 1);
    &frame[start..end]
}

/// Splits `RRL`/`RRLLL` digits off the start of `rest`, up to `stop`.
fn origin(frame: &[u8], stop: u8) -> Result<(Origin, &[u8]), SurGardError> {
    let rest = &frame[1..];
    let n = rest.iter().position(|&b| b == stop).unwrap_or(rest.len());
    let digits = &rest[..n];
    let bad = || SurGardError::Header(printable(&frame[..(n + 1).min(frame.len())]));
    if !(n == 3 || n == 5) || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let o = Origin {
        receiver: Ascii::new(&digits[..2]).ok_or_else(bad)?,
        line: Ascii::new(&digits[2..]).ok_or_else(bad)?,
    };
    Ok((o, &rest[n..]))
}

fn parse_heartbeat(frame: &[u8]) -> Result<SurGardFrame, SurGardError> {
    let (origin, tail) = origin(frame, b' ')?;
    // `sssssssssss@ssss`: accept a little slack in the padding, which varies between
    // receiver firmware, but nothing but spaces around the `@`.
    let at = tail.iter().position(|&b| b == b'@');
    let is_heartbeat = at.is_some_and(|i| {
        (1..=15).contains(&i)
            && tail[..i].iter().all(|&b| b == b' ')
            && tail[i + 1..].len() <= 8
            && tail[i + 1..].iter().all(|&b| b == b' ')
    });
    if is_heartbeat {
        Ok(SurGardFrame::Heartbeat { origin })
    } else {
        Err(SurGardError::UnsupportedProtocol('1'))
    }
}

fn parse_contact_id(frame: &[u8]) -> Result<SurGardFrame, SurGardError> {
    let protocol = char::from(frame[0]);
    let (origin, rest) = origin(frame, b' ')?;
    let Some(body) = rest.strip_prefix(b" ") else {
        return Err(SurGardError::Header(printable(frame)));
    };
    let short = || SurGardError::Short(printable(frame));
    let mt = body.get(..2).ok_or_else(short)?;
    let account_len = match (protocol, mt) {
        ('5', b"18" | b"98") => 4,
        ('Q', b"58") => 10,
        _ => return Err(SurGardError::MessageType(printable(mt))),
    };
    let body = &body[2..];
    if body.len() < account_len + 9 {
        return Err(short());
    }
    let (acct, body) = body.split_at(account_len);
    if !acct.iter().all(u8::is_ascii_hexdigit) {
        return Err(SurGardError::Account(printable(acct)));
    }
    let qualifier = match body[0] {
        b'E' => Qualifier::New,
        b'R' => Qualifier::Restore,
        b'P' => Qualifier::Status,
        other => return Err(SurGardError::Qualifier(char::from(other))),
    };
    let event = CidEvent::new(qualifier, &body[1..4], &body[4..6], &body[6..9])?;
    let tail = &body[9..];
    let receiver_time = match tail {
        [] => None,
        t if is_receiver_clock(t) => Ascii::new(t),
        t => return Err(SurGardError::Trailing(printable(t))),
    };
    Ok(SurGardFrame::ContactId {
        origin,
        protocol,
        account: Account::new(acct).ok_or_else(|| SurGardError::Account(printable(acct)))?,
        message_type: Ascii::new(mt).ok_or_else(|| SurGardError::MessageType(printable(mt)))?,
        event,
        receiver_time,
    })
}

/// `HH:MM:SS-dd/mm`, the clock-signal protocol's suffix.
fn is_receiver_clock(t: &[u8]) -> bool {
    t.len() == 14
        && t.iter().enumerate().all(|(i, &b)| match i {
            2 | 5 => b == b':',
            8 => b == b'-',
            11 => b == b'/',
            _ => b.is_ascii_digit(),
        })
}

fn parse_sia(frame: &[u8]) -> Result<SurGardFrame, SurGardError> {
    let protocol = char::from(frame[0]);
    let (origin, rest) = origin(frame, b'[')?;
    let inner = rest
        .strip_prefix(b"[")
        .and_then(|r| r.strip_suffix(b"]"))
        .ok_or_else(|| SurGardError::Header(printable(frame)))?;
    // Receiver-internal messages (protocol 0) may carry only status codes; panel messages
    // must carry an event.
    let data = sia::parse_data(inner, protocol == 'S')?;
    Ok(SurGardFrame::Sia {
        origin,
        protocol,
        raw: String::from_utf8_lossy(inner).into_owned(),
        data,
    })
}

impl Serialize for SurGardFrame {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let o = self.origin();
        match self {
            SurGardFrame::Heartbeat { .. } => {
                m.serialize_entry("kind", "heartbeat")?;
                m.serialize_entry("receiver", &o.receiver)?;
                m.serialize_entry("line", &o.line)?;
            }
            SurGardFrame::ContactId {
                account,
                message_type,
                event,
                receiver_time,
                ..
            } => {
                m.serialize_entry("kind", "event")?;
                m.serialize_entry("protocol", "contact_id")?;
                m.serialize_entry("receiver", &o.receiver)?;
                m.serialize_entry("line", &o.line)?;
                m.serialize_entry("account", account)?;
                m.serialize_entry("message_type", message_type)?;
                m.serialize_entry("qualifier", event.qualifier.as_str())?;
                m.serialize_entry("event_code", event.event_code())?;
                m.serialize_entry("group", event.group())?;
                m.serialize_entry("zone", event.zone())?;
                m.serialize_entry("description", event.description())?;
                if let Some(t) = receiver_time {
                    m.serialize_entry("receiver_time", t)?;
                }
            }
            SurGardFrame::Sia {
                protocol,
                raw,
                data,
                ..
            } => {
                m.serialize_entry("kind", "event")?;
                m.serialize_entry(
                    "protocol",
                    if *protocol == '0' {
                        "receiver_internal"
                    } else {
                        "sia"
                    },
                )?;
                m.serialize_entry("receiver", &o.receiver)?;
                m.serialize_entry("line", &o.line)?;
                if let Some(a) = &data.account {
                    m.serialize_entry("account", a)?;
                }
                if let Some(first) = data.events.first() {
                    m.serialize_entry("sia_code", &first.code)?;
                    m.serialize_entry("zone", &first.address)?;
                    m.serialize_entry("description", first.description)?;
                }
                m.serialize_entry("sia_data", raw)?;
                m.serialize_entry("events", &data.events)?;
                if !data.text.is_empty() {
                    m.serialize_entry("text", &data.text)?;
                }
            }
        }
        m.end()
    }
}

/// Incremental decoder for the DC4-framed automation output.
#[derive(Debug, Clone)]
pub struct SurGardDecoder {
    split: Splitter,
}

impl Default for SurGardDecoder {
    fn default() -> Self {
        Self {
            split: Splitter::new(DC4, MAX_FRAME),
        }
    }
}

impl SurGardDecoder {
    /// Offers `buf`. Every DC4-terminated chunk yields exactly one `Frame` or `Invalid`, so
    /// the caller answers each with exactly one ACK or NAK.
    pub fn decode(&mut self, buf: &[u8]) -> Step<SurGardFrame, SurGardError> {
        match self.split.next(buf) {
            Split::Incomplete => Step::Incomplete,
            Split::Oversized(consumed) => Step::Invalid {
                error: SurGardError::Oversized,
                consumed,
            },
            Split::Skipped(consumed, terminated) => Step::Skipped {
                consumed,
                terminated,
            },
            Split::Frame(frame, consumed) => match SurGardFrame::parse(frame) {
                Ok(frame) => Step::Frame { frame, consumed },
                Err(error) => Step::Invalid { error, consumed },
            },
        }
    }

    /// Reports bytes left over when the input ends without a final DC4.
    pub fn finish(&mut self, rest: &[u8]) -> Option<SurGardError> {
        let rest = trim(rest);
        (!rest.is_empty()).then(|| SurGardError::Truncated(printable(rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ack_or_nak_per_dc4_even_for_garbage() {
        let mut d = SurGardDecoder::default();
        let input = b"garbage\x145011 181234E12101001\x14";
        let first = d.decode(input);
        assert!(matches!(
            first,
            Step::Invalid {
                error: SurGardError::Header(_),
                consumed: 8
            }
        ));
        assert!(matches!(
            d.decode(&input[8..]),
            Step::Frame { consumed: 21, .. }
        ));
    }

    #[test]
    fn oversized_run_is_reported_once_and_resynchronises_at_dc4() {
        let mut d = SurGardDecoder::default();
        let junk = vec![b'9'; MAX_FRAME + 1];
        assert!(matches!(
            d.decode(&junk),
            Step::Invalid {
                error: SurGardError::Oversized,
                ..
            }
        ));
        assert_eq!(
            d.decode(b"99\x14"),
            Step::Skipped {
                consumed: 3,
                terminated: true
            }
        );
        assert!(matches!(
            d.decode(b"1011           @    \x14"),
            Step::Frame { .. }
        ));
    }

    #[test]
    fn encode_reproduces_the_manual_examples() {
        for wire in [
            &b"5011 181234E12101001\x14"[..],
            b"501100 181234E12101001\x14",
            b"1011           @    \x14",
        ] {
            let frame = SurGardFrame::parse(&wire[..wire.len() - 1]).expect("valid");
            let mut out = Vec::new();
            frame.encode(&mut out);
            assert_eq!(out, wire);
        }
    }
}
