//! SIA (DC-03/DC-04 style) data blocks as carried by the Sur-Gard SIA output and by DC-09
//! `SIA-DCS` frames: `#acct|Nri1/BA01`, `#1234|Nda04-22-94ti16:02:15/id22/CL/PA31`,
//! `|Nri2/JC12`, `Nri1/WA000`, `#1234|NRR|Atest`.
//!
//! The grammar accepted here: an optional `#account`, then `|`-separated blocks. A block's
//! first letter is its type (`N` new event, `O` old event, `L` listen-in, `I` information,
//! `A` ASCII text, …). Event blocks hold, optionally separated by `/`, two-letter lower-case
//! modifiers with a value (`ri` area, `id` user, `da` date, `ti` time, …), two-letter
//! upper-case event codes with an optional numeric address, and `^text^` annotations.

use serde::Serialize;
use thiserror::Error;

use crate::{Account, Ascii, codes, printable};

/// Why a SIA data block was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SiaError {
    #[error("empty SIA data")]
    Empty,
    #[error("bad SIA account {0:?}")]
    Account(String),
    #[error("unexpected {found:?} at position {position} of SIA data {data:?}")]
    Unexpected {
        found: char,
        position: usize,
        data: String,
    },
    #[error("unterminated ^text^ in SIA data {0:?}")]
    UnterminatedText(String),
    #[error("SIA field too long at position {position} of {data:?}")]
    FieldTooLong { position: usize, data: String },
    #[error("SIA data holds no event code: {0:?}")]
    NoEvent(String),
}

/// One SIA event: a two-letter code with its address and the modifiers in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiaEvent {
    /// The block type letter: `N` new, `O` old, `L` listen-in, …
    pub block: char,
    pub code: Ascii<2>,
    /// Zone, user or other number, as sent (may be empty).
    pub address: Ascii<8>,
    /// The `ri` (area/partition) modifier in force, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub area: Option<Ascii<8>>,
    /// The `id` (user) modifier in force, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Ascii<8>>,
    pub description: &'static str,
}

/// A decoded SIA data block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiaData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    pub events: Vec<SiaEvent>,
    /// `da` and `ti` modifiers (panel date and time) as sent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel_date: Option<Ascii<10>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel_time: Option<Ascii<8>>,
    /// `L` modifier: seconds to keep the line open for listen-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_in: Option<Ascii<4>>,
    /// Free text from `^…^` annotations and `A` blocks, joined by a space.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.data[start..self.pos]
    }

    fn unexpected(&self) -> SiaError {
        SiaError::Unexpected {
            found: char::from(self.peek().unwrap_or(b'?')),
            position: self.pos,
            data: printable(self.data),
        }
    }

    fn field<const N: usize>(&self, src: &[u8]) -> Result<Ascii<N>, SiaError> {
        Ascii::new(src).ok_or(SiaError::FieldTooLong {
            position: self.pos,
            data: printable(self.data),
        })
    }
}

/// Parses a SIA data block (the text between `[` and `]` of a DC-09 frame, or of a Sur-Gard
/// SIA frame). `require_event` makes a block with no event code an error, as it is in an
/// alarm frame; link tests (`NULL`) carry none.
pub fn parse_data(data: &[u8], require_event: bool) -> Result<SiaData, SiaError> {
    if data.is_empty() {
        return Err(SiaError::Empty);
    }
    let mut out = SiaData {
        account: None,
        events: Vec::new(),
        panel_date: None,
        panel_time: None,
        listen_in: None,
        text: String::new(),
    };
    let mut blocks = data.split(|&b| b == b'|');
    let mut offset = 0;
    if data.contains(&b'|') {
        let first = blocks.next().unwrap_or_default();
        offset = first.len() + 1;
        match first {
            [] => {}
            [b'#', acct @ ..] => {
                let ok = !acct.is_empty() && acct.iter().all(u8::is_ascii_alphanumeric);
                out.account = Some(
                    Account::new(acct)
                        .filter(|_| ok)
                        .ok_or_else(|| SiaError::Account(printable(acct)))?,
                );
            }
            _ => {
                return Err(SiaError::Unexpected {
                    found: char::from(first[0]),
                    position: 0,
                    data: printable(data),
                });
            }
        }
    }
    for block in blocks {
        parse_block(data, offset, block, &mut out)?;
        offset += block.len() + 1;
    }
    if require_event && out.events.is_empty() {
        return Err(SiaError::NoEvent(printable(data)));
    }
    Ok(out)
}

fn parse_block(all: &[u8], offset: usize, block: &[u8], out: &mut SiaData) -> Result<(), SiaError> {
    let Some((&kind, body)) = block.split_first() else {
        return Ok(());
    };
    if kind == b'A' {
        push_text(&mut out.text, body);
        return Ok(());
    }
    if !kind.is_ascii_uppercase() {
        return Err(SiaError::Unexpected {
            found: char::from(kind),
            position: offset,
            data: printable(all),
        });
    }
    let mut c = Cursor {
        data: all,
        pos: offset + 1,
    };
    let end = offset + block.len();
    let (mut area, mut user) = (None, None);
    while c.pos < end {
        let Some(b) = c.peek() else { break };
        match b {
            b'/' | b' ' => c.pos += 1,
            b'^' => {
                c.pos += 1;
                let text = c.take_while(|b| b != b'^');
                if c.pos >= end {
                    return Err(SiaError::UnterminatedText(printable(all)));
                }
                c.pos += 1;
                push_text(&mut out.text, text);
            }
            b'a'..=b'z' => {
                let name = [b, all.get(c.pos + 1).copied().unwrap_or(0)];
                if !name[1].is_ascii_lowercase() {
                    c.pos += 1;
                    return Err(c.unexpected());
                }
                c.pos += 2;
                let value = c.take_while(|b| b.is_ascii_digit() || matches!(b, b':' | b'-' | b'.'));
                match &name {
                    b"ri" => area = Some(c.field(value)?),
                    b"id" => user = Some(c.field(value)?),
                    b"da" => out.panel_date = Some(c.field(value)?),
                    b"ti" => out.panel_time = Some(c.field(value)?),
                    _ => {}
                }
            }
            b'A'..=b'Z' => {
                let code = [b, all.get(c.pos + 1).copied().unwrap_or(0)];
                if code[1].is_ascii_digit() {
                    // A one-letter modifier with a number, such as `L90` (keep the line open
                    // for listen-in for 90 s).
                    c.pos += 1;
                    let value = c.take_while(|b| b.is_ascii_digit());
                    if b == b'L' {
                        out.listen_in = Some(c.field(value)?);
                    }
                    continue;
                }
                if !code[1].is_ascii_uppercase() {
                    c.pos += 1;
                    return Err(c.unexpected());
                }
                c.pos += 2;
                let address = c.take_while(|b| b.is_ascii_digit());
                let code: Ascii<2> = c.field(&code)?;
                out.events.push(SiaEvent {
                    block: char::from(kind),
                    description: codes::sia_description(code.as_str())
                        .unwrap_or("unknown SIA code"),
                    code,
                    address: c.field(address)?,
                    area,
                    user,
                });
            }
            _ => return Err(c.unexpected()),
        }
    }
    Ok(())
}

fn push_text(text: &mut String, raw: &[u8]) {
    let t = String::from_utf8_lossy(raw);
    let t = t.trim();
    if t.is_empty() {
        return;
    }
    if !text.is_empty() {
        text.push(' ');
    }
    text.push_str(t);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(d: &SiaData) -> Vec<(String, String)> {
        d.events
            .iter()
            .map(|e| (e.code.to_string(), e.address.to_string()))
            .collect()
    }

    #[test]
    fn account_area_code_and_zone_without_a_slash() {
        let d = parse_data(b"#1234|Nri1BA01", true).expect("valid");
        assert_eq!(d.account.map(|a| a.to_string()).as_deref(), Some("1234"));
        assert_eq!(events(&d), [("BA".into(), "01".into())]);
        assert_eq!(
            d.events[0].area.map(|a| a.to_string()).as_deref(),
            Some("1")
        );
        assert_eq!(d.events[0].description, "Burglary alarm");
    }

    #[test]
    fn date_time_user_and_two_events() {
        let d = parse_data(b"#1234|Nda04-22-94ti16:02:15/id22/CL/PA31", true).expect("valid");
        assert_eq!(
            events(&d),
            [("CL".into(), String::new()), ("PA".into(), "31".into())]
        );
        assert_eq!(
            d.panel_date.map(|a| a.to_string()).as_deref(),
            Some("04-22-94")
        );
        assert_eq!(
            d.panel_time.map(|a| a.to_string()).as_deref(),
            Some("16:02:15")
        );
        assert_eq!(
            d.events[1].user.map(|a| a.to_string()).as_deref(),
            Some("22")
        );
    }

    #[test]
    fn text_blocks_and_annotations_are_kept() {
        let d = parse_data(b"#1234|NRR|Atest", true).expect("valid");
        assert_eq!(events(&d), [("RR".into(), String::new())]);
        assert_eq!(d.text, "test");
        let d = parse_data(b"#123456|Nri1CL0^VX FRONTE ^", true).expect("valid");
        assert_eq!(d.text, "VX FRONTE");
    }

    #[test]
    fn missing_account_or_bar_is_accepted() {
        assert_eq!(
            events(&parse_data(b"|Nri2/JC12", true).expect("valid")),
            [("JC".into(), "12".into())]
        );
        assert_eq!(
            events(&parse_data(b"Nri1/WA000", true).expect("valid")),
            [("WA".into(), "000".into())]
        );
    }

    #[test]
    fn garbage_is_rejected_with_its_position() {
        let e = parse_data(b"#1234|Nri1B!01", true).expect_err("invalid");
        assert!(e.to_string().contains("position 11"), "{e}");
        assert!(matches!(
            parse_data(b"#1234|Nri1", true),
            Err(SiaError::NoEvent(_))
        ));
        assert!(matches!(
            parse_data(b"#12 4|NBA1", true),
            Err(SiaError::Account(_))
        ));
    }
}
