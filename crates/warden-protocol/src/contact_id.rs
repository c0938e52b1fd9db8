//! Ademco Contact ID (SIA DC-05).
//!
//! A message is 16 hex digits `ACCT MT Q XYZ GG CCC S`. The checksum digit `S` makes the sum
//! of all digits a multiple of 15, with the digit 0 counted as 10 and B–F as 11–15; when the
//! first fifteen already sum to a multiple of 15, `S` is F. The digit A never appears.
//!
//! The event part (`Q XYZ GG CCC`) also travels without account and checksum on the
//! Sur-Gard automation output and inside DC-09 `ADM-CID` frames, so it is its own type,
//! [`CidEvent`].

use serde::Serialize;
use thiserror::Error;
use warden_types::Qualifier;

use crate::codes::{self, CidCode};
use crate::{Account, Ascii, Split, Splitter, Step, printable};

/// Longest line the line decoder accepts (a message is 16 digits; room for framing noise).
pub const MAX_LINE: usize = 64;

/// Why a Contact ID message or event was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContactIdError {
    #[error("wrong length: expected 16 digits, got {0}")]
    Length(usize),
    #[error("illegal digit 'A' at position {position}: Contact ID never uses hex A")]
    DigitA { position: usize },
    #[error("invalid character {found:?} at position {position}: expected 0-9 or B-F")]
    NotADigit { position: usize, found: char },
    #[error("checksum mismatch: expected {expected}, got {got}")]
    Checksum { expected: char, got: char },
    #[error("{field} field {found:?} is not {expected}")]
    Field {
        field: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("line longer than {MAX_LINE} bytes")]
    Oversized,
}

/// The value a Contact ID digit carries in the checksum: 0 → 10, 1–9, B–F → 11–15.
fn digit_value(b: u8, position: usize) -> Result<u32, ContactIdError> {
    match b {
        b'0' => Ok(10),
        b'1'..=b'9' => Ok(u32::from(b - b'0')),
        b'B'..=b'F' => Ok(u32::from(b - b'A') + 10),
        b'A' => Err(ContactIdError::DigitA { position }),
        _ => Err(ContactIdError::NotADigit {
            position,
            found: char::from(b),
        }),
    }
}

/// The digit that represents `value` (1–15) in Contact ID.
fn digit_for(value: u32) -> u8 {
    match value {
        10 => b'0',
        1..=9 => b'0' + u8::try_from(value).unwrap_or(0),
        11..=15 => b'A' + u8::try_from(value - 10).unwrap_or(0),
        _ => b'?',
    }
}

/// The checksum digit for the first fifteen digits of a message.
pub fn checksum_digit(first15: &[u8]) -> Result<u8, ContactIdError> {
    let mut sum = 0;
    for (i, &b) in first15.iter().enumerate() {
        sum += digit_value(b, i)?;
    }
    let r = (15 - sum % 15) % 15;
    Ok(digit_for(if r == 0 { 15 } else { r }))
}

/// Maps the Contact ID qualifier digit to the shared vocabulary.
pub fn qualifier_from_digit(b: u8) -> Qualifier {
    match b {
        b'1' => Qualifier::New,
        b'3' => Qualifier::Restore,
        b'6' => Qualifier::Status,
        other => Qualifier::Other(char::from(other)),
    }
}

/// The Contact ID qualifier digit for a qualifier.
pub fn qualifier_digit(q: Qualifier) -> u8 {
    match q {
        Qualifier::New => b'1',
        Qualifier::Restore => b'3',
        Qualifier::Status => b'6',
        Qualifier::Other(c) => u8::try_from(c).unwrap_or(b'?'),
    }
}

/// `Q XYZ GG CCC`: what happened, in which group/partition, on which zone or user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidEvent {
    pub qualifier: Qualifier,
    code: Ascii<3>,
    group: Ascii<2>,
    zone: Ascii<3>,
}

fn hex_field<const N: usize>(field: &'static str, src: &[u8]) -> Result<Ascii<N>, ContactIdError> {
    let ok = src.len() == N && src.iter().all(|b| matches!(b, b'0'..=b'9' | b'B'..=b'F'));
    match Ascii::new(src) {
        Some(a) if ok => Ok(a),
        _ => Err(ContactIdError::Field {
            field,
            found: printable(src),
            expected: match N {
                2 => "2 digits",
                3 => "3 digits",
                _ => "digits",
            },
        }),
    }
}

impl CidEvent {
    /// Builds an event from its wire fields (digits 0–9 and B–F).
    pub fn new(
        qualifier: Qualifier,
        code: &[u8],
        group: &[u8],
        zone: &[u8],
    ) -> Result<Self, ContactIdError> {
        Ok(Self {
            qualifier,
            code: hex_field("event code", code)?,
            group: hex_field("group", group)?,
            zone: hex_field("zone", zone)?,
        })
    }

    /// The three-character event code as on the wire, e.g. `"101"`.
    pub fn event_code(&self) -> &str {
        self.code.as_str()
    }

    /// The two-character group (partition) as on the wire.
    pub fn group(&self) -> &str {
        self.group.as_str()
    }

    /// The three-character zone or user number as on the wire.
    pub fn zone(&self) -> &str {
        self.zone.as_str()
    }

    /// The event code as a number, when it is all decimal digits.
    pub fn code_number(&self) -> Option<u16> {
        self.event_code().parse().ok()
    }

    /// The table entry for this event's code, if it is a known code.
    pub fn info(&self) -> Option<&'static CidCode> {
        self.code_number().and_then(codes::contact_id)
    }

    /// A human description: the table's, or "unknown event code" for codes outside it.
    pub fn description(&self) -> &'static str {
        self.info().map_or("unknown event code", CidCode::describe)
    }

    /// The SIA two-letter code DC-09's ADM-CID mapping assigns to this event, if any.
    pub fn sia_code(&self) -> Option<&'static str> {
        self.info().and_then(|c| c.sia_code(self.qualifier))
    }
}

impl Serialize for CidEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CidEvent", 5)?;
        st.serialize_field("qualifier", self.qualifier.as_str())?;
        st.serialize_field("event_code", self.event_code())?;
        st.serialize_field("group", self.group())?;
        st.serialize_field("zone", self.zone())?;
        st.serialize_field("description", self.description())?;
        st.end()
    }
}

/// A whole 16-digit Contact ID message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ContactIdMessage {
    pub account: Account,
    pub message_type: Ascii<2>,
    #[serde(flatten)]
    pub event: CidEvent,
}

impl ContactIdMessage {
    /// Parses and checks one 16-digit message.
    pub fn parse(msg: &[u8]) -> Result<Self, ContactIdError> {
        if msg.len() != 16 {
            return Err(ContactIdError::Length(msg.len()));
        }
        let mut sum = 0;
        for (i, &b) in msg.iter().enumerate() {
            sum += digit_value(b, i)?;
        }
        if sum % 15 != 0 {
            return Err(ContactIdError::Checksum {
                expected: char::from(checksum_digit(&msg[..15])?),
                got: char::from(msg[15]),
            });
        }
        let field = |a: Option<Ascii<16>>| a.ok_or(ContactIdError::Length(msg.len()));
        Ok(Self {
            account: field(Ascii::new(&msg[0..4]))?,
            message_type: Ascii::new(&msg[4..6]).ok_or(ContactIdError::Length(msg.len()))?,
            event: CidEvent::new(
                qualifier_from_digit(msg[6]),
                &msg[7..10],
                &msg[10..12],
                &msg[12..15],
            )?,
        })
    }

    /// Renders the message with its checksum digit.
    pub fn encode(&self) -> Result<[u8; 16], ContactIdError> {
        let mut out = [0u8; 16];
        let acct = self.account.as_bytes();
        if acct.len() != 4 {
            return Err(ContactIdError::Field {
                field: "account",
                found: self.account.to_string(),
                expected: "4 digits",
            });
        }
        out[0..4].copy_from_slice(acct);
        out[4..6].copy_from_slice(self.message_type.as_bytes());
        out[6] = qualifier_digit(self.event.qualifier);
        out[7..10].copy_from_slice(self.event.code.as_bytes());
        out[10..12].copy_from_slice(self.event.group.as_bytes());
        out[12..15].copy_from_slice(self.event.zone.as_bytes());
        out[15] = checksum_digit(&out[..15])?;
        Ok(out)
    }
}

/// Incremental decoder for Contact ID messages, one per line (LF, optional CR).
#[derive(Debug, Clone)]
pub struct LineDecoder {
    split: Splitter,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self {
            split: Splitter::new(b'\n', MAX_LINE),
        }
    }
}

impl LineDecoder {
    /// Offers `buf`; blank lines are consumed silently.
    pub fn decode(&mut self, buf: &[u8]) -> Step<ContactIdMessage, ContactIdError> {
        let mut offset = 0;
        loop {
            match self.split.next(&buf[offset..]) {
                Split::Incomplete => return Step::Incomplete,
                Split::Oversized(n) => {
                    return Step::Invalid {
                        error: ContactIdError::Oversized,
                        consumed: offset + n,
                    };
                }
                Split::Skipped(n, terminated) => {
                    return Step::Skipped {
                        consumed: offset + n,
                        terminated,
                    };
                }
                Split::Frame(line, n) => {
                    let line = line.trim_ascii();
                    if line.is_empty() {
                        offset += n;
                        continue;
                    }
                    let consumed = offset + n;
                    return match ContactIdMessage::parse(line) {
                        Ok(frame) => Step::Frame { frame, consumed },
                        Err(error) => Step::Invalid { error, consumed },
                    };
                }
            }
        }
    }

    /// Decodes what is left when the input ends: a last line without a newline.
    pub fn finish(&mut self, rest: &[u8]) -> Option<Result<ContactIdMessage, ContactIdError>> {
        let line = rest.trim_ascii();
        (!line.is_empty()).then(|| ContactIdMessage::parse(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> ContactIdMessage {
        ContactIdMessage::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn checksum_digit_is_f_when_the_sum_is_already_a_multiple_of_15() {
        assert_eq!(checksum_digit(b"123418340103005"), Ok(b'F'));
        assert_eq!(checksum_digit(b"123418113101015"), Ok(b'8'));
    }

    #[test]
    fn zero_counts_as_ten_in_the_expected_digit() {
        // A remainder of 10 is written as the digit 0.
        let m = ok("1234181131010158");
        let mut again = m;
        again.event = CidEvent::new(Qualifier::New, b"131", b"01", b"015").expect("fields");
        assert_eq!(&again.encode().expect("encode"), b"1234181131010158");
    }

    #[test]
    fn lines_with_crlf_and_blank_lines_decode_in_order() {
        let mut d = LineDecoder::default();
        let input = b"\r\n1234181131010158\r\n\n1234181131010150\n12341811";
        let Step::Frame { frame, consumed } = d.decode(input) else {
            panic!("frame")
        };
        assert_eq!(frame.event.event_code(), "131");
        let rest = &input[consumed..];
        let Step::Invalid { error, consumed } = d.decode(rest) else {
            panic!("invalid")
        };
        assert_eq!(error.to_string(), "checksum mismatch: expected 8, got 0");
        assert_eq!(d.decode(&rest[consumed..]), Step::Incomplete);
        assert_eq!(
            d.finish(&rest[consumed..]),
            Some(Err(ContactIdError::Length(8)))
        );
    }

    #[test]
    fn an_endless_line_is_reported_once_then_skipped_to_the_next_newline() {
        let mut d = LineDecoder::default();
        let long = vec![b'1'; MAX_LINE + 10];
        assert!(matches!(
            d.decode(&long),
            Step::Invalid {
                error: ContactIdError::Oversized,
                ..
            }
        ));
        assert_eq!(
            d.decode(b"111\n"),
            Step::Skipped {
                consumed: 4,
                terminated: true
            }
        );
        assert!(matches!(
            d.decode(b"1234181131010158\n"),
            Step::Frame { .. }
        ));
    }
}
