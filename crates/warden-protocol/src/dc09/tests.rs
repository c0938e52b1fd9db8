//! DC-09 unit and property tests.

use super::*;
use proptest::prelude::*;

fn key() -> Dc09Key {
    Dc09Key::parse("AAAAAAAAAAAAAAAA").expect("ascii key")
}

fn decode_all(d: &mut Dc09Decoder, input: &[u8]) -> Vec<Result<Dc09Frame, Dc09Error>> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let step = d.decode(rest);
        let consumed = step.consumed();
        match step {
            Step::Incomplete => break,
            Step::Frame { frame, .. } => out.push(Ok(frame)),
            Step::Invalid { error, .. } => out.push(Err(error)),
            Step::Skipped { .. } => {}
        }
        assert!(
            consumed > 0 && consumed <= rest.len(),
            "progress: {consumed}"
        );
        rest = rest.get(consumed..).unwrap_or_default();
    }
    out.extend(d.finish(rest));
    out
}

#[test]
fn crc_is_crc16_arc() {
    assert_eq!(CRC16.checksum(b"123456789"), 0xBB3D);
}

#[test]
fn timestamps_convert_to_and_from_unix_seconds() {
    let t = Timestamp::new(2024, 1, 1, 12, 0, 0).expect("valid");
    assert_eq!(t.unix_seconds(), 1_704_110_400);
    assert_eq!(Timestamp::from_unix(1_704_110_400), Some(t));
    let leap = Timestamp::new(2000, 2, 29, 23, 59, 59).expect("leap day");
    assert_eq!(Timestamp::from_unix(leap.unix_seconds()), Some(leap));
    assert_eq!(
        Timestamp::from_unix(0).map(|t| t.to_string()).as_deref(),
        Some("00:00:00,01-01-1970")
    );
    assert_eq!(Timestamp::new(2023, 2, 29, 0, 0, 0), None);
    assert_eq!(Timestamp::new(2024, 13, 1, 0, 0, 0), None);
    assert_eq!(Timestamp::new(2024, 1, 1, 24, 0, 0), None);
    assert_eq!(Timestamp::parse(b"14:12:04,09-25-201"), None);
    assert_eq!(Timestamp::from_unix(i64::MAX), None);
}

#[test]
fn the_window_allows_forty_seconds_behind_and_twenty_ahead() {
    let now = Timestamp::new(2024, 1, 1, 12, 0, 0).expect("valid");
    let at = |s: i64| Timestamp::from_unix(now.unix_seconds() + s).expect("valid");
    let check = |s| check_timestamp(&at(s), now, DEFAULT_BEFORE_SECONDS, DEFAULT_AFTER_SECONDS);
    assert!(check(-40).is_ok());
    assert!(check(20).is_ok());
    assert!(check(0).is_ok());
    let e = check(-41).expect_err("too old");
    assert_eq!(
        e.to_string(),
        "timestamp 11:59:19,01-01-2024 is 41 s behind the receiver clock 12:00:00,01-01-2024 \
         (allowed: 40 s behind, 20 s ahead)"
    );
    assert!(
        check(21)
            .expect_err("too new")
            .to_string()
            .contains("21 s ahead of")
    );
    // Across midnight and a year boundary the arithmetic still holds.
    let midnight = Timestamp::new(2025, 1, 1, 0, 0, 10).expect("valid");
    let late = Timestamp::new(2024, 12, 31, 23, 59, 50).expect("valid");
    assert!(check_timestamp(&late, midnight, 40, 20).is_ok());
}

#[test]
fn keys_parse_as_ascii_or_hex_and_never_print() {
    assert_eq!(key().bits(), 128);
    assert_eq!(
        Dc09Key::parse("123456789012345678901234").map(|k| k.bits()),
        Ok(192)
    );
    assert_eq!(Dc09Key::parse(&"0F".repeat(32)).map(|k| k.bits()), Ok(256));
    assert_eq!(Dc09Key::parse(&"0F".repeat(24)).map(|k| k.bits()), Ok(192));
    // 32 hex digits are a hex AES-128 key unless forced to ASCII.
    let a32 = "A".repeat(32);
    assert_eq!(Dc09Key::parse(&a32).map(|k| k.bits()), Ok(128));
    assert_eq!(
        Dc09Key::parse(&format!("ascii:{a32}")).map(|k| k.bits()),
        Ok(256)
    );
    assert_eq!(
        Dc09Key::parse(&format!("hex:{}", "G".repeat(32))).map(|k| k.bits()),
        Err(Dc09Error::BadKey(
            "expected 32, 48 or 64 hex digits, got 32 characters with non-hex ones".into()
        ))
    );
    let e = Dc09Key::parse("secret").expect_err("short");
    assert_eq!(
        e.to_string(),
        "bad key: expected 16, 24 or 32 ASCII characters or 32, 48 or 64 hex digits, got 6 characters"
    );
    assert!(Dc09Key::parse("AAAAAAAA AAAAAAA").is_err());
    assert_eq!(format!("{:?}", key()), "Dc09Key(AES-128, redacted)");
}

#[test]
fn tokens_parse_strictly_from_text_and_leniently_from_the_wire() {
    assert_eq!("SIA-DCS".parse::<Token>(), Ok(Token::SiaDcs));
    assert_eq!(
        "FOO".parse::<Token>().map_err(|e| e.to_string()),
        Err("unknown token \"FOO\"".into())
    );
    let mut d = Dc09Decoder::new(None);
    let frame = frame(b"\"4-2\"0001L0#1234[abc]");
    let Step::Frame { frame, .. } = d.decode(&frame) else {
        panic!("frame")
    };
    assert_eq!(frame.token.as_str(), "4-2");
    assert_eq!(frame.content, Dc09Content::Unknown);
    assert_eq!(frame.data, "abc");
}

#[test]
fn garbage_and_whitespace_between_frames() {
    let mut d = Dc09Decoder::new(None);
    let good = frame(b"\"NULL\"0001L0#1234[]");
    let mut input = b"\r  junk here \r".to_vec();
    input.extend_from_slice(b"more junk");
    input.extend_from_slice(&good);
    input.extend_from_slice(b"\r\n\r\n");
    input.extend_from_slice(&good);
    let out = decode_all(&mut d, &input);
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0], Err(Dc09Error::Garbage("junk here".into())));
    assert_eq!(
        out[1].as_ref().map_err(ToString::to_string),
        Err("garbage before <LF> start: \"more junk\"".to_string())
    );
    assert!(out[2].is_ok() && out[3].is_ok());
}

#[test]
fn an_lf_before_the_cr_ends_a_truncated_frame_and_starts_the_next() {
    let mut d = Dc09Decoder::new(None);
    let mut input = b"\n96ED0016\"SIA".to_vec();
    input.extend_from_slice(&frame(b"\"NULL\"0001L0#1234[]"));
    input.extend_from_slice(b"\n61DB");
    let out = decode_all(&mut d, &input);
    assert!(matches!(&out[0], Err(Dc09Error::Truncated { frame, .. }) if frame == "96ED0016\"SIA"));
    assert!(out[1].is_ok());
    assert_eq!(
        out[2].as_ref().map_err(ToString::to_string),
        Err("truncated frame \"61DB\": input ended before <CR>".to_string())
    );
}

#[test]
fn an_oversized_frame_is_reported_once_then_skipped() {
    let mut d = Dc09Decoder::new(None);
    let mut big = vec![LF];
    big.extend(std::iter::repeat_n(b'A', MAX_FRAME + 5));
    assert_eq!(
        d.decode(&big),
        Step::Invalid {
            error: Dc09Error::Oversized,
            consumed: big.len()
        }
    );
    assert_eq!(
        d.decode(b"AAAA"),
        Step::Skipped {
            consumed: 4,
            terminated: false
        }
    );
    assert_eq!(
        d.decode(b"AA\r"),
        Step::Skipped {
            consumed: 3,
            terminated: true
        }
    );
    assert!(matches!(
        d.decode(&frame(b"\"NULL\"0001L0#1234[]")),
        Step::Frame { .. }
    ));
    // A complete but oversized frame is one invalid step through its CR.
    let mut whole = vec![LF];
    whole.extend(std::iter::repeat_n(b'0', 8 + MAX_BODY + 1));
    whole.push(CR);
    assert_eq!(
        d.decode(&whole),
        Step::Invalid {
            error: Dc09Error::Oversized,
            consumed: whole.len()
        }
    );
}

#[test]
fn an_lf_resynchronises_while_skipping() {
    let mut d = Dc09Decoder::new(None);
    let mut big = vec![LF];
    big.extend(std::iter::repeat_n(b'A', MAX_FRAME + 5));
    assert!(matches!(d.decode(&big), Step::Invalid { .. }));
    let mut next = b"AAA".to_vec();
    let good = frame(b"\"NULL\"0001L0#1234[]");
    next.extend_from_slice(&good);
    assert_eq!(
        d.decode(&next),
        Step::Skipped {
            consumed: 3,
            terminated: true
        }
    );
    assert!(matches!(d.decode(&good), Step::Frame { .. }));
}

#[test]
fn decode_frame_requires_both_delimiters() {
    let d = Dc09Decoder::new(None);
    let good = frame(b"\"NULL\"0001L0#1234[]");
    assert!(d.decode_frame(&good).is_ok());
    assert_eq!(
        d.decode_frame(good.get(1..).unwrap_or_default())
            .map_err(|e| e.to_string()),
        Err("missing <LF> start".into())
    );
    assert_eq!(
        d.decode_frame(good.get(..good.len() - 1).unwrap_or_default()),
        Err(Dc09Error::MissingEnd)
    );
}

#[test]
fn header_errors_name_the_field() {
    let d = Dc09Decoder::new(None);
    let err = |body: &[u8]| {
        d.decode_frame(&frame(body))
            .map_err(|e| e.to_string())
            .err()
    };
    assert_eq!(
        err(b"\"NULL\"01a1L0#1234[]").as_deref(),
        Some("bad sequence number \"01a1\"")
    );
    assert_eq!(
        err(b"\"NULL\"0001L0#12[]").as_deref(),
        Some("bad account field \"#12\"")
    );
    assert_eq!(
        err(b"\"NULL\"0001R1234567L0[]").as_deref(),
        Some("bad receiver field \"R1234567\"")
    );
    assert_eq!(
        err(b"\"NULL\"0001L[]").as_deref(),
        Some("bad line field \"L\"")
    );
    assert_eq!(err(b"\"\"0001L0[]").as_deref(), Some("bad token \"\""));
    assert_eq!(
        err(b"\"NULL\"0001L0#1234![]").as_deref(),
        Some("unexpected \"!\" in header \"\"NULL\"0001L0#1234!\"")
    );
    assert_eq!(
        err(b"\"NULL\"0001L0#1234[abc").as_deref(),
        Some("unterminated data block \"[abc\"")
    );
    assert_eq!(
        err(b"\"NULL\"0001L0#1234[]x").as_deref(),
        Some("unexpected \"x\" after the data")
    );
    assert_eq!(
        err(b"\"NULL\"0001L0#1234[][]").as_deref(),
        Some("bad extended data block \"[]\"")
    );
    assert_eq!(
        err(b"\"NULL\"0001L0#1234[]\x01").as_deref(),
        Some("control byte 0x01 at position 19 of the body")
    );
    assert_eq!(
        err(b"\"ADM-CID\"0001L0#1234[#1234|1101 01 0A1]").as_deref(),
        Some("bad ADM-CID data \"#1234|1101 01 0A1\": zone field \"0A1\" is not 3 digits")
    );
    assert_eq!(
        d.decode_frame(b"\n96ED00G1\"SIA-DCS\"0001L0#1234[]\r")
            .map_err(|e| e.to_string()),
        Err("bad length field \"00G1\"".into())
    );
}

#[test]
fn non_ascii_text_in_an_annotation_is_kept() {
    let d = Dc09Decoder::new(None);
    let f = d
        .decode_frame(&frame(
            "\"SIA-DCS\"0001L0#1234[#1234|Nri1/BA01^Kuchyň^]".as_bytes(),
        ))
        .expect("frame");
    let Dc09Content::Sia(data) = &f.content else {
        panic!("not SIA")
    };
    assert_eq!(data.text, "Kuchyň");
}

#[test]
fn content_errors_keep_the_header_for_a_duh() {
    let d = Dc09Decoder::new(None);
    let e = d
        .decode_frame(&frame(b"\"SIA-DCS\"0042L0#1234[#1234|Nri1]"))
        .expect_err("no event");
    let h = e.header().expect("header");
    assert_eq!(
        String::from_utf8_lossy(&duh(h)),
        "\n1AFA0012\"DUH\"0042L0#1234[]\r"
    );
}

#[test]
fn frames_serialise_with_flat_contact_id_keys() {
    let d = Dc09Decoder::new(None);
    let f = d
        .decode_frame(&frame(
            b"\"ADM-CID\"0002L0#1234[#1234|1101 01 001]_12:00:00,01-01-2024",
        ))
        .expect("frame");
    let keys: Vec<&str> = f.fields().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "token",
            "encrypted",
            "sequence",
            "receiver",
            "line",
            "account",
            "data",
            "xdata",
            "timestamp",
            "kind",
            "protocol",
            "data_account",
            "qualifier",
            "event_code",
            "group",
            "zone",
            "description",
            "sia_code"
        ]
    );
    let f = d
        .decode_frame(&frame(b"\"SIA-DCS\"0002L0#1234[#1234|Nri1/BA01]"))
        .expect("frame");
    assert!(f.fields().iter().any(|(k, _)| *k == "events"));
}

#[test]
fn encrypted_frames_round_trip_with_every_key_size() {
    for k in [
        "AAAAAAAAAAAAAAAA",
        "123456789012345678901234",
        &"0F".repeat(32),
    ] {
        let key = Dc09Key::parse(k).expect("key");
        let msg = Dc09Message {
            token: Token::SiaDcs,
            sequence: 7,
            receiver: Ascii::new(b"12"),
            line: Ascii::new(b"3"),
            account: Account::new(b"1234"),
            data: "#1234|Nri1/BA01".into(),
            xdata: vec![XData {
                letter: 'M',
                content: "0026B9E4268B".into(),
            }],
            timestamp: Timestamp::new(2024, 1, 1, 12, 0, 0),
        };
        let wire = encode_encrypted(&msg, &key, 99);
        let f = Dc09Decoder::new(Some(key.clone()))
            .decode_frame(&wire)
            .expect("decrypts");
        assert!(f.encrypted);
        assert_eq!(f.to_message(), msg);
        let wrong = Dc09Key::parse("BBBBBBBBBBBBBBBB").expect("key");
        assert!(matches!(
            Dc09Decoder::new(Some(wrong)).decode_frame(&wire),
            Err(Dc09Error::DecryptFailed { .. })
        ));
    }
}

#[test]
fn an_encrypted_ack_round_trips() {
    let d = Dc09Decoder::new(Some(key()));
    let f = d
        .decode_frame(&frame(b"\"SIA-DCS\"0042R1L0#1234[#1234|Nri1/BA01]"))
        .expect("frame");
    let now = Timestamp::new(2024, 5, 6, 7, 8, 9).expect("valid");
    let wire = ack_encrypted(&f.header(), &key(), now, 1);
    let a = d.decode_frame(&wire).expect("decrypts");
    assert_eq!(
        (a.token, a.encrypted, a.timestamp),
        (Token::Ack, true, Some(now))
    );
    assert_eq!(a.header().sequence.as_str(), "0042");
    assert_eq!(a.account.map(|x| x.to_string()).as_deref(), Some("1234"));
    assert_eq!(a.content, Dc09Content::Reply);
    assert_eq!(a.data, "");
}

fn hex_field() -> impl Strategy<Value = Option<Ascii<6>>> {
    proptest::option::of("[0-9A-F]{1,6}".prop_map(|s| Ascii::new(s.as_bytes())))
        .prop_map(Option::flatten)
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of(
        (1990u16..2100, 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, 0u8..60)
            .prop_map(|(y, mo, d, h, mi, s)| Timestamp::new(y, mo, d, h, mi, s)),
    )
    .prop_map(Option::flatten)
}

/// Token and data that the content parsers accept.
fn token_and_data() -> impl Strategy<Value = (Token, String)> {
    let text = "[ -Z^-~]{0,30}";
    prop_oneof![
        (
            "[0-9A-F]{3,6}",
            1u8..9,
            "(BA|CL|OP|FA|MA|RP|PA)",
            "[0-9]{0,4}"
        )
            .prop_map(|(a, ri, code, zone)| (Token::SiaDcs, format!("#{a}|Nri{ri}/{code}{zone}"))),
        ("[0-9B-F]{4}", "[136]", "[0-9]{3}", "[0-9]{2}", "[0-9]{3}")
            .prop_map(|(a, q, xyz, gg, ccc)| (Token::AdmCid, format!("#{a}|{q}{xyz} {gg} {ccc}"))),
        text.prop_map(|d| (Token::Null, d)),
        (
            prop_oneof![
                Just(Token::Ack),
                Just(Token::Nak),
                Just(Token::Duh),
                Just(Token::Rsp)
            ],
            text
        ),
        ("[A-Z][A-Z0-9-]{0,7}", text).prop_filter_map("a known name", |(t, d)| {
            match Token::from_wire(t.as_bytes()) {
                Some(tok @ Token::Other(_)) => Some((tok, d)),
                _ => None,
            }
        }),
    ]
}

fn message() -> impl Strategy<Value = Dc09Message> {
    (
        token_and_data(),
        0u16..10_000,
        hex_field(),
        hex_field(),
        proptest::option::of("[0-9A-Za-z]{3,16}".prop_map(|s| Account::new(s.as_bytes()))),
        proptest::collection::vec(("[A-Z]", "[ -Z^-~]{0,20}"), 0..3),
        timestamp(),
    )
        .prop_map(
            |((token, data), sequence, receiver, line, account, xdata, timestamp)| Dc09Message {
                token,
                sequence,
                receiver,
                line,
                account: account.flatten(),
                data,
                xdata: xdata
                    .into_iter()
                    .map(|(l, content)| XData {
                        letter: l.chars().next().unwrap_or('X'),
                        content,
                    })
                    .collect(),
                timestamp,
            },
        )
}

/// Without an account, a receiver or line run ending in `A` and digits reads as an
/// `A`-form account (see [`split_a_form`]); such messages do not round-trip.
fn ambiguous(m: &Dc09Message) -> bool {
    let last = m.line.or(m.receiver);
    m.account.is_none() && last.is_some_and(|f| split_a_form(f.as_bytes()).is_some())
}

proptest! {
    #[test]
    fn any_valid_message_round_trips(m in message(), seed in any::<u64>()) {
        prop_assume!(!ambiguous(&m));
        prop_assert_eq!(m.validate(), Ok(()));
        let mut d = Dc09Decoder::new(Some(key()));
        let wire = encode(&m);
        let Step::Frame { frame, consumed } = d.decode(&wire) else {
            return Err(TestCaseError::fail(format!("no frame from {:?}", String::from_utf8_lossy(&wire))));
        };
        prop_assert_eq!(consumed, wire.len());
        prop_assert!(!frame.encrypted);
        prop_assert_eq!(frame.to_message(), m.clone());
        let wire = encode_encrypted(&m, &key(), seed);
        let frame = d.decode_frame(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(frame.encrypted);
        prop_assert_eq!(frame.to_message(), m);
    }

    #[test]
    fn decode_never_panics_and_always_progresses(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        lenient in any::<bool>(),
    ) {
        let mut d = Dc09Decoder::new(Some(key())).accept_bad_length(lenient);
        let _ = decode_all(&mut d, &input);
        let _ = d.decode_frame(&input);
    }

    #[test]
    fn bodies_with_a_valid_crc_never_panic(
        body in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'['), Just(b']'), Just(b'#'), Just(b'_'), Just(b'*'),
                        Just(b'A'), Just(b'R'), Just(b'L'), Just(b'|'), b' '..=b'~'],
            0..120),
        encrypted_tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let d = Dc09Decoder::new(Some(key()));
        let _ = d.decode_frame(&frame(&body));
        let mut enc = b"\"*SIA-DCS\"0001L0#1234[".to_vec();
        enc.extend_from_slice(hex::encode_upper(&encrypted_tail).as_bytes());
        let _ = d.decode_frame(&frame(&enc));
    }
}
