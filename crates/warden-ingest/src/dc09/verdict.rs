//! What a DC-09 receiver does with one frame, decided without I/O: the frame as decoded
//! (with the account's key, when it has one), whether the account has a key, the receiver's
//! clock and the allowed window in, a verdict out. The listener does the key lookup, the
//! durable write and the socket.

use warden_protocol::dc09::{self, Dc09Error, Dc09Frame, Dc09Header, Timestamp, Token};

/// How far a message's timestamp may be from the receiver's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Seconds behind (default 40).
    pub before: u32,
    /// Seconds ahead (default 20).
    pub after: u32,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            before: dc09::DEFAULT_BEFORE_SECONDS,
            after: dc09::DEFAULT_AFTER_SECONDS,
        }
    }
}

/// The receiver (`R`) and line (`L`) numbers an account's frames must carry (hex, compared
/// as numbers: `R0012` is `R12`); `None`: not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefixes {
    pub receiver: Option<String>,
    pub line: Option<String>,
}

fn hex_value(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim(), 16).ok()
}

/// Whether `sent` (the frame's field) is the `expected` number.
fn prefix_matches(expected: Option<&str>, sent: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(e) => sent.is_some_and(|s| hex_value(s).is_some() && hex_value(s) == hex_value(e)),
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a frame Warden can trust (bad CRC, broken framing): no reply, so the transmitter
    /// sends it again; the bytes are kept as evidence.
    Silent { reason: String },
    /// Refused with `reply` (NAK or DUH); the bytes are kept as evidence with the reason.
    Refuse {
        reply: Vec<u8>,
        reason_code: &'static str,
        reason: String,
    },
    /// A link test or an event: store it, then acknowledge.
    Store(Box<Dc09Frame>),
    /// Well framed, but its content cannot be read: stored as an unreadable signal (an
    /// operator looks at it), then acknowledged.
    Unreadable {
        header: Box<Dc09Header>,
        reason: String,
    },
    /// A receiver's own reply token (ACK, NAK, DUH, RSP) sent to us: nothing to do.
    Ignore,
}

/// The verdict on `decoded` (decrypted with the account's key when it has one, `keyed`)
/// at receiver time `now`.
pub fn judge(
    decoded: Result<Dc09Frame, Dc09Error>,
    keyed: bool,
    now: Timestamp,
    window: Window,
) -> Verdict {
    judge_account(decoded, keyed, now, window, &Prefixes::default())
}

/// [`judge`], also refusing (with `DUH`) a frame whose receiver or line number is not the one
/// registered for its account: a transmitter programmed for another centre, or a copy of an
/// account's identity on another line.
pub fn judge_account(
    decoded: Result<Dc09Frame, Dc09Error>,
    keyed: bool,
    now: Timestamp,
    window: Window,
    prefixes: &Prefixes,
) -> Verdict {
    let frame = match decoded {
        Ok(frame) => frame,
        Err(Dc09Error::NoKey { header }) => {
            return Verdict::Refuse {
                reply: dc09::duh(&header),
                reason_code: "dc09_no_key",
                reason: format!(
                    "encrypted message from account {}, which has no key in the registry",
                    account_of(&header)
                ),
            };
        }
        Err(Dc09Error::DecryptFailed { header }) => {
            return Verdict::Refuse {
                reply: dc09::duh(&header),
                reason_code: "dc09_decrypt_failed",
                reason: format!(
                    "message from account {} does not decrypt with its key",
                    account_of(&header)
                ),
            };
        }
        Err(e) => {
            return match e.header() {
                Some(h) => Verdict::Unreadable {
                    header: Box::new(*h),
                    reason: e.to_string(),
                },
                None => Verdict::Silent {
                    reason: e.to_string(),
                },
            };
        }
    };
    if frame.token.is_reply() {
        return Verdict::Ignore;
    }
    if let Token::Other(_) = frame.token {
        return Verdict::Refuse {
            reply: dc09::duh(&frame.header()),
            reason_code: "dc09_unknown_token",
            reason: format!("token \"{}\" is not one Warden understands", frame.token),
        };
    }
    if keyed && !frame.encrypted {
        return Verdict::Refuse {
            reply: dc09::duh(&frame.header()),
            reason_code: "dc09_not_encrypted",
            reason: format!(
                "plain message from account {}, which must encrypt (it has a key)",
                account_of(&frame.header())
            ),
        };
    }
    let header = frame.header();
    let (receiver, line) = (
        header.receiver.as_ref().map(|r| r.as_str().to_owned()),
        header.line.as_ref().map(|l| l.as_str().to_owned()),
    );
    if !prefix_matches(prefixes.receiver.as_deref(), receiver.as_deref())
        || !prefix_matches(prefixes.line.as_deref(), line.as_deref())
    {
        return Verdict::Refuse {
            reply: dc09::duh(&header),
            reason_code: "dc09_wrong_prefix",
            reason: format!(
                "account {} sent receiver {} line {}; it is registered for receiver {} line {}",
                account_of(&header),
                receiver.as_deref().unwrap_or("(none)"),
                line.as_deref().unwrap_or("(none)"),
                prefixes.receiver.as_deref().unwrap_or("(any)"),
                prefixes.line.as_deref().unwrap_or("(any)"),
            ),
        };
    }
    if let Some(ts) = &frame.timestamp
        && let Err(e) = dc09::check_timestamp(ts, now, window.before, window.after)
    {
        return Verdict::Refuse {
            reply: dc09::nak(now),
            reason_code: "dc09_timestamp",
            reason: e.to_string(),
        };
    }
    Verdict::Store(Box::new(frame))
}

fn account_of(h: &Dc09Header) -> String {
    h.account
        .map_or_else(|| "(none)".to_owned(), |a| a.as_str().to_owned())
}

/// What to answer once a stored frame is durable: ACK, encrypted with the account's key when
/// the frame was.
pub fn ack(
    frame: &Dc09Frame,
    key: Option<&dc09::Dc09Key>,
    now: Timestamp,
    pad_seed: u64,
) -> Vec<u8> {
    match key {
        Some(k) if frame.encrypted => dc09::ack_encrypted(&frame.header(), k, now, pad_seed),
        _ => dc09::ack(&frame.header()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_protocol::dc09 as encode;
    use warden_protocol::dc09::{Dc09Decoder, Dc09Key, Dc09Message};

    fn now() -> Timestamp {
        Timestamp::new(2026, 12, 5, 10, 0, 0).expect("valid")
    }

    fn msg(token: Token, ts: Option<Timestamp>) -> Dc09Message {
        Dc09Message {
            token,
            sequence: 7,
            receiver: None,
            line: None,
            account: warden_protocol::Account::new(b"1234"),
            data: "#1234|NFA01".into(),
            xdata: Vec::new(),
            timestamp: ts,
        }
    }

    fn key() -> Dc09Key {
        Dc09Key::parse("0123456789ABCDEF0123456789ABCDEF").expect("key")
    }

    fn decode(bytes: &[u8], key: Option<Dc09Key>) -> Result<Dc09Frame, Dc09Error> {
        Dc09Decoder::new(key).decode_frame(bytes)
    }

    #[test]
    fn a_frame_for_another_receiver_or_line_is_refused_when_the_account_names_its_own() {
        let mut m = msg(Token::SiaDcs, Some(now()));
        m.receiver = warden_protocol::Ascii::new(b"0012");
        m.line = warden_protocol::Ascii::new(b"3");
        let bytes = encode::encode(&m);
        let expect = |r: Option<&str>, l: Option<&str>| Prefixes {
            receiver: r.map(str::to_owned),
            line: l.map(str::to_owned),
        };
        for ok in [
            expect(None, None),
            expect(Some("12"), None),
            expect(Some("0012"), Some("03")),
        ] {
            let v = judge_account(decode(&bytes, None), false, now(), Window::default(), &ok);
            assert!(matches!(v, Verdict::Store(_)), "{ok:?}: {v:?}");
        }
        for bad in [expect(Some("13"), None), expect(None, Some("4"))] {
            let v = judge_account(decode(&bytes, None), false, now(), Window::default(), &bad);
            let Verdict::Refuse {
                reply, reason_code, ..
            } = v
            else {
                panic!("{bad:?}: {v:?}");
            };
            assert_eq!(reason_code, "dc09_wrong_prefix");
            assert!(reply.windows(4).any(|w| w == b"DUH\""));
        }
        // A frame without the field is refused when the account names one.
        let bare = encode::encode(&msg(Token::SiaDcs, Some(now())));
        let v = judge_account(
            decode(&bare, None),
            false,
            now(),
            Window::default(),
            &expect(Some("12"), None),
        );
        assert!(
            matches!(
                v,
                Verdict::Refuse {
                    reason_code: "dc09_wrong_prefix",
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn an_event_in_the_window_is_stored_and_acknowledged_in_kind() {
        let plain = encode::encode(&msg(Token::SiaDcs, Some(now())));
        let Verdict::Store(frame) = judge(decode(&plain, None), false, now(), Window::default())
        else {
            panic!("stored");
        };
        assert_eq!(ack(&frame, None, now(), 1), encode::ack(&frame.header()));
        let secret = encode::encode_encrypted(&msg(Token::SiaDcs, Some(now())), &key(), 3);
        let Verdict::Store(frame) =
            judge(decode(&secret, Some(key())), true, now(), Window::default())
        else {
            panic!("stored");
        };
        let reply = ack(&frame, Some(&key()), now(), 1);
        assert!(
            reply.windows(5).any(|w| w == b"*ACK\""),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }

    #[test]
    fn refusals_name_their_reason_and_answer_as_the_standard_says() {
        let late = Timestamp::from_unix(now().unix_seconds() - 41).expect("valid");
        let v = judge(
            decode(&encode::encode(&msg(Token::SiaDcs, Some(late))), None),
            false,
            now(),
            Window::default(),
        );
        assert!(
            matches!(&v, Verdict::Refuse { reason_code: "dc09_timestamp", reply, .. } if reply.windows(5).any(|w| w == b"\"NAK\"")),
            "{v:?}"
        );
        // 20 s ahead is allowed, 21 s is not.
        let ahead = |s| Timestamp::from_unix(now().unix_seconds() + s).expect("valid");
        assert!(matches!(
            judge(
                decode(&encode::encode(&msg(Token::SiaDcs, Some(ahead(20)))), None),
                false,
                now(),
                Window::default()
            ),
            Verdict::Store(_)
        ));
        assert!(matches!(
            judge(
                decode(&encode::encode(&msg(Token::SiaDcs, Some(ahead(21)))), None),
                false,
                now(),
                Window::default()
            ),
            Verdict::Refuse { .. }
        ));

        let secret = encode::encode_encrypted(&msg(Token::SiaDcs, Some(now())), &key(), 3);
        let v = judge(decode(&secret, None), false, now(), Window::default());
        assert!(
            matches!(
                &v,
                Verdict::Refuse {
                    reason_code: "dc09_no_key",
                    ..
                }
            ),
            "{v:?}"
        );
        let wrong = Dc09Key::parse("FEDCBA9876543210FEDCBA9876543210").expect("key");
        let v = judge(decode(&secret, Some(wrong)), true, now(), Window::default());
        assert!(
            matches!(
                &v,
                Verdict::Refuse {
                    reason_code: "dc09_decrypt_failed",
                    ..
                }
            ),
            "{v:?}"
        );
        let plain = encode::encode(&msg(Token::SiaDcs, Some(now())));
        let v = judge(decode(&plain, Some(key())), true, now(), Window::default());
        assert!(
            matches!(&v, Verdict::Refuse { reason_code: "dc09_not_encrypted", reply, .. } if reply.windows(5).any(|w| w == b"\"DUH\"")),
            "{v:?}"
        );
    }

    #[test]
    fn a_bad_crc_gets_no_answer() {
        let mut bytes = encode::encode(&msg(Token::Null, None));
        bytes[2] = if bytes[2] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            judge(decode(&bytes, None), false, now(), Window::default()),
            Verdict::Silent { .. }
        ));
    }
}
