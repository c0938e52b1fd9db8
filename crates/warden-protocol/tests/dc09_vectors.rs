//! Every SIA DC-09 vector of `shared/vectors/PROTOCOL-VECTORS.md` section C, through the
//! stream decoder, the reply builders and the encoder.
//!
//! The vectors file gives frames without their `<LF>`/`<CR>` delimiters; [`wire`] adds them.

use warden_protocol::Step;
use warden_protocol::dc09::{
    self, AccountForm, Dc09Content, Dc09Decoder, Dc09Error, Dc09Frame, Dc09Key, Dc09Message,
    Timestamp, Token, XData,
};
use warden_protocol::{Account, Ascii};
use warden_types::Qualifier;

const C1: &str = "F4D20029\"SIA-DCS\"0001RF3L77#1234[#1234|NRR|Atest]";
const C2: &str = "96ED0016\"SIA-DCS\"0001L0#1234[]";
const C3: &str = "E4410025\"NAK\"0000R0L0A0[]_16:20:01,09-24-2025";
const C4: &str = "CA2F0038\"NULL\"0000L0#7890[#0000|0000 00 000]_22:13:29,12-29-2022";
const C5: &str = "D0850078\"*ADM-CID\"6879R0L0#123F[64F7ADD9BA9377DBF2C014BC709329BEEE345B5F20C60B7EB9D2C6B8C222666B13D0B4A114B448B0AC555FCC658DB6EE";
const C6: &str = "76D80055\"*NULL\"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D476A3E557CAD64D9";
const C7: &str = "57150047\"ADM-CID\"0247R4F39L4F39#4F39[#4F39|3401 01 057]";
const C8: &str = "97F90078\"SIA-DCS\"6002L0#AAA[|Nri2/JC12]_12:58:23,09-15-2021";
const C9: &str = "87570078\"SIA-DCS\"6002L0#AAA[|Nri1/CL501][M0026B9E4268B]_14:12:04,09-25-2019";
const C10: &str =
    "02310052\"SIA-DCS\"6002L0#1111[|Nri1/RP000][KAAAAAAAAAAAAAAAA]_14:12:04,09-25-2019";
const C11: &str = "5B090059\"SIA-DCS\"0004L0#1111[#1111|Nri1/PA501][X006E07.7777777][Y49N06.6666666]_20:45:46,04-22-2021";
const C12: &str = "60AB0078\"*SIA-DCS\"5994L0#AAA[5AB718E008C616BF16F6468033A11326B0F7546CAB230910BCA10E4DEBA42283C436E4F8EFF50931070DDE36D5BB5F0C";
const C13: &str = "E5D50078\"SIA-DCS\"6002L0#AAA[|Nri1/CL501]_14:12:04,09-25-2019";
const C14: &str =
    "9618004D\"SIA-DCS\"7960L0#123456[#123456|Nri1CL0^VX FRONTE ^]_22:40:48,04-11-2021";
const C15: &str =
    "5670004D\"SIA-DCS\"8070L0#123456[#123456|Nri0KR1^TAST. 001 ^]_13:49:12,04-13-2021";
const C16: &str =
    "87CD0037\"ADM-CID\"9876R579BDFL789ABC#12345A[#12345A|1110 00 129]_14:12:04,09-25-2011";
const C17: &str = "CE110032\"SIA-DCS\"9876R579BDFL789ABC#12345A[#12345A|NFA129]_14:12:04,09-25-201";
const C18: &str = "90820051\"SIA-DCS\"4738R0001L0001[#006969|Nri04/OP001NM]";
const C19: &str = "C4160279\"SIA-DCS\"5268L0#AAA[Nri1/WA000]_08:40:47,07-08-2020";
const C20: &str = "SR0001L0001    006969XX    [ID00000000]";
const C21: &str = "this is not a parsable event";

const C22: &[u8] = b"\n61DB0016\"ACK\"0001RF3L77#1234[]\r";
const C23: &[u8] = b"\n683C0014\"ACK\"7960L0#123456[]\r";
const C24: &[u8] = b"\n251F0012\"DUH\"0001L0#1234[]\r";
const C25: &[u8] = b"\nFA00003A\"SIA-DCS\"0001L0#1234[#1234|Nri1/MA001]_12:00:00,01-01-2024\r";
const C26: &[u8] = b"\n3A90003B\"ADM-CID\"0002L0#1234[#1234|1101 01 001]_12:00:00,01-01-2024\r";
const C27: &[u8] = b"\n4C650027\"NULL\"0003L0#1234[]_12:00:00,01-01-2024\r";

/// The pysiaalarm test key.
const KEY: &str = "AAAAAAAAAAAAAAAA";

/// A vector as it travels: `<LF>` + text + `<CR>`.
fn wire(text: &str) -> Vec<u8> {
    let mut out = vec![b'\n'];
    out.extend_from_slice(text.as_bytes());
    out.push(b'\r');
    out
}

fn key() -> Dc09Key {
    Dc09Key::parse(KEY).expect("pysiaalarm key")
}

/// Decodes one wrapped vector, which must be taken whole by a single step.
fn decode_with(d: &mut Dc09Decoder, text: &str) -> Result<Dc09Frame, Dc09Error> {
    let bytes = wire(text);
    match d.decode(&bytes) {
        Step::Frame { frame, consumed } => {
            assert_eq!(consumed, bytes.len(), "{text}");
            Ok(frame)
        }
        Step::Invalid { error, consumed } => {
            assert_eq!(consumed, bytes.len(), "{text}");
            Err(error)
        }
        other => panic!("{text}: unexpected step {other:?}"),
    }
}

fn strict(text: &str) -> Result<Dc09Frame, Dc09Error> {
    decode_with(&mut Dc09Decoder::new(Some(key())), text)
}

fn lenient(text: &str) -> Result<Dc09Frame, Dc09Error> {
    decode_with(
        &mut Dc09Decoder::new(Some(key())).accept_bad_length(true),
        text,
    )
}

fn ok(result: Result<Dc09Frame, Dc09Error>) -> Dc09Frame {
    result.unwrap_or_else(|e| panic!("expected a frame: {e}"))
}

fn s<const N: usize>(field: Option<Ascii<N>>) -> Option<String> {
    field.map(|a| a.to_string())
}

fn sia_events(frame: &Dc09Frame) -> Vec<(String, String)> {
    let Dc09Content::Sia(data) = &frame.content else {
        panic!("not SIA: {:?}", frame.content)
    };
    data.events
        .iter()
        .map(|e| (e.code.to_string(), e.address.to_string()))
        .collect()
}

fn ts(text: &str) -> Option<Timestamp> {
    Timestamp::parse(text.as_bytes())
}

#[test]
fn c1_sia_dcs_with_receiver_line_and_text_decodes() {
    let f = ok(strict(C1));
    assert_eq!(f.token, Token::SiaDcs);
    assert!(!f.encrypted);
    assert_eq!(f.sequence.as_str(), "0001");
    assert_eq!(s(f.receiver).as_deref(), Some("F3"));
    assert_eq!(s(f.line).as_deref(), Some("77"));
    assert_eq!(s(f.account).as_deref(), Some("1234"));
    assert_eq!(f.data, "#1234|NRR|Atest");
    assert_eq!(sia_events(&f), [("RR".into(), String::new())]);
    let Dc09Content::Sia(data) = &f.content else {
        panic!("not SIA")
    };
    assert_eq!(data.text, "test");
    assert_eq!(f.timestamp, None);
}

#[test]
fn c2_sia_dcs_with_empty_data_decodes_to_no_events() {
    let f = ok(strict(C2));
    assert_eq!(f.sequence.as_str(), "0001");
    assert_eq!(f.receiver, None);
    assert_eq!(s(f.line).as_deref(), Some("0"));
    assert_eq!(s(f.account).as_deref(), Some("1234"));
    assert_eq!(f.data, "");
    assert!(sia_events(&f).is_empty());
}

#[test]
fn c3_receiver_nak_decodes_with_its_a_form_account_and_timestamp() {
    let f = ok(strict(C3));
    assert_eq!(f.token, Token::Nak);
    assert_eq!(f.sequence.as_str(), "0000");
    assert_eq!(s(f.receiver).as_deref(), Some("0"));
    assert_eq!(s(f.line).as_deref(), Some("0"));
    assert_eq!(s(f.account).as_deref(), Some("0"));
    assert_eq!(f.account_form, AccountForm::A);
    assert_eq!(f.content, Dc09Content::Reply);
    assert_eq!(f.timestamp, ts("16:20:01,09-24-2025"));
}

#[test]
fn c4_unencrypted_null_with_adm_style_data_decodes() {
    let f = ok(strict(C4));
    assert_eq!(f.token, Token::Null);
    assert_eq!(s(f.account).as_deref(), Some("7890"));
    assert_eq!(f.data, "#0000|0000 00 000");
    assert_eq!(f.content, Dc09Content::Null);
    assert_eq!(f.timestamp, ts("22:13:29,12-29-2022"));
}

#[test]
fn c5_encrypted_adm_cid_needs_a_key_but_its_header_is_readable() {
    let e = decode_with(&mut Dc09Decoder::new(None), C5).expect_err("no key");
    assert_eq!(e.to_string(), "encrypted frame but no key configured");
    let h = e.header().expect("header");
    assert_eq!((h.token, h.encrypted), (Token::AdmCid, true));
    assert_eq!(h.sequence.as_str(), "6879");
    assert_eq!(s(h.receiver).as_deref(), Some("0"));
    assert_eq!(s(h.line).as_deref(), Some("0"));
    assert_eq!(s(h.account).as_deref(), Some("123F"));
    // The vector's key was never published; the test key does not open it.
    assert!(matches!(strict(C5), Err(Dc09Error::DecryptFailed { .. })));
}

#[test]
fn c6_encrypted_null_decrypts_to_its_timestamp() {
    let f = ok(strict(C6));
    assert_eq!(f.token, Token::Null);
    assert!(f.encrypted);
    assert_eq!(f.sequence.as_str(), "0000");
    assert_eq!(s(f.account).as_deref(), Some("AAAB"));
    assert_eq!(f.data, "");
    assert_eq!(f.content, Dc09Content::Null);
    assert_eq!(f.timestamp, ts("18:24:52,07-05-2020"));
    let e = decode_with(&mut Dc09Decoder::new(None), C6).expect_err("no key");
    assert!(matches!(e, Dc09Error::NoKey { .. }));
}

#[test]
fn c7_to_c13_fail_on_length_by_default() {
    let cases = [
        (C7, "0047", 0x2F),
        (C8, "0078", 0x33),
        (C9, "0078", 0x43),
        (C10, "0052", 0x48),
        (C11, "0059", 0x5B),
        (C12, "0078", 0x75),
        (C13, "0078", 0x34),
    ];
    for (text, field, body) in cases {
        let e = strict(text).expect_err(text);
        assert_eq!(
            e,
            Dc09Error::LengthMismatch {
                field: field.into(),
                body
            },
            "{text}"
        );
    }
    assert_eq!(
        strict(C7).map_err(|e| e.to_string()).err().as_deref(),
        Some("length mismatch: frame says 0047, body is 0x2F bytes")
    );
}

#[test]
fn c7_adm_cid_maps_to_a_restore_of_401_partition_01_user_057() {
    let f = ok(lenient(C7));
    assert_eq!(f.token, Token::AdmCid);
    assert_eq!(f.sequence.as_str(), "0247");
    assert_eq!(s(f.receiver).as_deref(), Some("4F39"));
    assert_eq!(s(f.line).as_deref(), Some("4F39"));
    assert_eq!(s(f.account).as_deref(), Some("4F39"));
    let Dc09Content::ContactId { account, event } = &f.content else {
        panic!("not Contact ID: {:?}", f.content)
    };
    assert_eq!(s(*account).as_deref(), Some("4F39"));
    assert_eq!(event.qualifier, Qualifier::Restore);
    assert_eq!(event.event_code(), "401");
    assert_eq!(event.group(), "01");
    assert_eq!(event.zone(), "057");
    assert_eq!(event.description(), "O/C by user");
    assert_eq!(event.sia_code(), Some("CL"));
}

#[test]
fn c8_user_code_tamper_cancelled_decodes() {
    let f = ok(lenient(C8));
    assert_eq!(s(f.account).as_deref(), Some("AAA"));
    assert_eq!(f.sequence.as_str(), "6002");
    assert_eq!(sia_events(&f), [("JC".into(), "12".into())]);
    let Dc09Content::Sia(data) = &f.content else {
        panic!("not SIA")
    };
    assert_eq!(s(data.events[0].area).as_deref(), Some("2"));
    assert_eq!(data.events[0].description, "User code tamper cancelled");
    assert_eq!(f.timestamp, ts("12:58:23,09-15-2021"));
}

#[test]
fn c9_closing_carries_mac_address_xdata() {
    let f = ok(lenient(C9));
    assert_eq!(sia_events(&f), [("CL".into(), "501".into())]);
    assert_eq!(
        f.xdata,
        [XData {
            letter: 'M',
            content: "0026B9E4268B".into()
        }]
    );
    assert_eq!(f.timestamp, ts("14:12:04,09-25-2019"));
}

#[test]
fn c10_automatic_test_carries_a_key_change_xdata() {
    let f = ok(lenient(C10));
    assert_eq!(s(f.account).as_deref(), Some("1111"));
    assert_eq!(sia_events(&f), [("RP".into(), "000".into())]);
    assert_eq!(
        f.xdata,
        [XData {
            letter: 'K',
            content: "AAAAAAAAAAAAAAAA".into()
        }]
    );
}

#[test]
fn c11_panic_carries_longitude_and_latitude_xdata() {
    let f = ok(lenient(C11));
    assert_eq!(f.sequence.as_str(), "0004");
    assert_eq!(sia_events(&f), [("PA".into(), "501".into())]);
    assert_eq!(
        f.xdata,
        [
            XData {
                letter: 'X',
                content: "006E07.7777777".into()
            },
            XData {
                letter: 'Y',
                content: "49N06.6666666".into()
            }
        ]
    );
    assert_eq!(f.timestamp, ts("20:45:46,04-22-2021"));
}

#[test]
fn c12_does_not_decrypt_with_the_test_key() {
    let e = lenient(C12).expect_err("wrong key");
    assert_eq!(e.to_string(), "decryption failed (wrong key?)");
    let h = e.header().expect("header");
    assert_eq!((h.token, h.encrypted), (Token::SiaDcs, true));
    assert_eq!(h.sequence.as_str(), "5994");
    assert_eq!(s(h.account).as_deref(), Some("AAA"));
    let e =
        decode_with(&mut Dc09Decoder::new(None).accept_bad_length(true), C12).expect_err("no key");
    assert!(matches!(e, Dc09Error::NoKey { .. }));
}

#[test]
fn c13_closing_decodes() {
    let f = ok(lenient(C13));
    assert_eq!(sia_events(&f), [("CL".into(), "501".into())]);
    let Dc09Content::Sia(data) = &f.content else {
        panic!("not SIA")
    };
    assert_eq!(s(data.events[0].area).as_deref(), Some("1"));
    assert_eq!(f.timestamp, ts("14:12:04,09-25-2019"));
}

#[test]
fn c14_to_c19_fail_on_crc_in_either_length_mode() {
    let cases = [
        (C14, 0x9618, Some(0xB7C9)),
        (C15, 0x5670, Some(0xF4CC)),
        (C16, 0x87CD, Some(0x9692)),
        (C17, 0xCE11, None),
        (C18, 0x9082, Some(0x39D5)),
        (C19, 0xC416, Some(0xE9A4)),
    ];
    for (text, frame, computed) in cases {
        for result in [strict(text), lenient(text)] {
            match result {
                Err(Dc09Error::CrcMismatch {
                    frame: f,
                    computed: c,
                }) => {
                    assert_eq!(f, frame, "{text}");
                    if let Some(expected) = computed {
                        assert_eq!(c, expected, "{text}");
                    }
                    assert_ne!(f, c, "{text}");
                }
                other => panic!("{text}: expected a crc mismatch, got {other:?}"),
            }
        }
    }
    assert_eq!(
        strict(C14).map_err(|e| e.to_string()).err().as_deref(),
        Some("crc mismatch: frame says 9618, computed B7C9")
    );
}

/// Re-frames a vector's body with a correct CRC and LEN, to reach the checks after them.
fn refram(text: &str) -> String {
    let body = text.get(8..).expect("crc and len");
    let crc = crc::Crc::<u16>::new(&crc::CRC_16_ARC).checksum(body.as_bytes());
    format!("{crc:04X}{:04X}{body}", body.len())
}

#[test]
fn c14_to_c16_bodies_decode_once_their_crc_is_fixed() {
    let f = ok(strict(&refram(C14)));
    assert_eq!(sia_events(&f), [("CL".into(), "0".into())]);
    let f = ok(strict(&refram(C15)));
    assert_eq!(sia_events(&f), [("KR".into(), "1".into())]);
    let f = ok(strict(&refram(C16)));
    assert_eq!(s(f.receiver).as_deref(), Some("579BDF"));
    assert_eq!(s(f.line).as_deref(), Some("789ABC"));
    assert_eq!(s(f.account).as_deref(), Some("12345A"));
    let Dc09Content::ContactId { event, .. } = &f.content else {
        panic!("not Contact ID")
    };
    assert_eq!(
        (
            event.qualifier,
            event.event_code(),
            event.zone(),
            event.sia_code()
        ),
        (Qualifier::New, "110", "129", Some("FA"))
    );
}

#[test]
fn c17_has_a_truncated_year_even_with_a_valid_crc() {
    assert_eq!(
        strict(&refram(C17))
            .map_err(|e| e.to_string())
            .err()
            .as_deref(),
        Some("bad timestamp \"_14:12:04,09-25-201\"")
    );
}

#[test]
fn c18_and_c19_bodies_decode_once_their_crc_is_fixed() {
    let f = ok(strict(&refram(C18)));
    assert_eq!(f.account, None);
    assert_eq!(s(f.receiver).as_deref(), Some("0001"));
    let Dc09Content::Sia(data) = &f.content else {
        panic!("not SIA")
    };
    assert_eq!(s(data.account).as_deref(), Some("006969"));
    assert_eq!(data.events[0].code.as_str(), "OP");
    let f = ok(strict(&refram(C19)));
    assert_eq!(sia_events(&f), [("WA".into(), "000".into())]);
}

#[test]
fn c20_and_c21_are_not_dc09_frames() {
    for text in [C20, C21] {
        // Wrapped as a frame, the first four characters are not a CRC.
        let e = strict(text).expect_err(text);
        assert!(matches!(e, Dc09Error::BadCrcField(_)), "{text}: {e}");
        // Bare, ending in <CR>, they are garbage before any <LF>.
        let mut d = Dc09Decoder::new(None);
        let mut bare = text.as_bytes().to_vec();
        bare.push(b'\r');
        assert_eq!(
            d.decode(&bare),
            Step::Invalid {
                error: Dc09Error::Garbage(text.into()),
                consumed: bare.len()
            }
        );
        // Bare at the end of input, they are reported by finish.
        assert_eq!(d.decode(text.as_bytes()), Step::Incomplete);
        assert_eq!(
            d.finish(text.as_bytes()),
            Some(Err(Dc09Error::Garbage(text.into())))
        );
    }
    assert_eq!(
        strict(C21).map_err(|e| e.to_string()).err().as_deref(),
        Some("bad crc field \"this\"")
    );
}

#[test]
fn c22_ack_to_c1_matches_byte_for_byte() {
    let f = ok(strict(C1));
    assert_eq!(dc09::ack(&f.header()), C22);
}

#[test]
fn c23_ack_to_c14_matches_once_its_crc_is_fixed() {
    let f = ok(strict(&refram(C14)));
    assert_eq!(dc09::ack(&f.header()), C23);
}

#[test]
fn c24_duh_matches_byte_for_byte() {
    let f = ok(strict(C2));
    assert_eq!(dc09::duh(&f.header()), C24);
}

#[test]
fn c3_nak_is_rebuilt_byte_for_byte_from_its_timestamp() {
    let now = Timestamp::new(2025, 9, 24, 16, 20, 1).expect("valid");
    assert_eq!(dc09::nak(now), wire(C3));
}

fn noon() -> Option<Timestamp> {
    Timestamp::new(2024, 1, 1, 12, 0, 0)
}

fn message(token: Token, sequence: u16, data: &str) -> Dc09Message {
    Dc09Message {
        token,
        sequence,
        receiver: None,
        line: Ascii::new(b"0"),
        account: Account::new(b"1234"),
        data: data.into(),
        xdata: Vec::new(),
        timestamp: noon(),
    }
}

#[test]
fn c25_to_c27_encode_byte_for_byte_and_decode_back() {
    let cases = [
        (message(Token::SiaDcs, 1, "#1234|Nri1/MA001"), C25),
        (message(Token::AdmCid, 2, "#1234|1101 01 001"), C26),
        (message(Token::Null, 3, ""), C27),
    ];
    for (msg, expected) in cases {
        assert_eq!(msg.validate(), Ok(()));
        let bytes = dc09::encode(&msg);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(expected)
        );
        let f = Dc09Decoder::new(None)
            .decode_frame(&bytes)
            .expect("decodes");
        assert_eq!(f.to_message(), msg);
    }
    let f = Dc09Decoder::new(None).decode_frame(C25).expect("C25");
    assert_eq!(sia_events(&f), [("MA".into(), "001".into())]);
    let f = Dc09Decoder::new(None).decode_frame(C26).expect("C26");
    let Dc09Content::ContactId { event, .. } = &f.content else {
        panic!("not Contact ID")
    };
    assert_eq!(
        (
            event.qualifier,
            event.event_code(),
            event.group(),
            event.zone()
        ),
        (Qualifier::New, "101", "01", "001")
    );
    assert_eq!(event.description(), "Personal emergency");
}

#[test]
fn encrypted_encoding_decodes_back_and_matches_c6_layout() {
    let msg = Dc09Message {
        account: Account::new(b"AAAB"),
        receiver: Ascii::new(b"0"),
        timestamp: Timestamp::new(2020, 7, 5, 18, 24, 52),
        ..message(Token::Null, 0, "")
    };
    let bytes = dc09::encode_encrypted(&msg, &key(), 42);
    // Same header, same ciphertext length as C6: a 32-byte plaintext of pad, `]` and the
    // timestamp.
    assert_eq!(bytes.len(), C6.len() + 2);
    assert_eq!(bytes.get(9..30), Some(&b"\"*NULL\"0000R0L0#AAAB["[..]));
    let f = Dc09Decoder::new(Some(key()))
        .decode_frame(&bytes)
        .expect("decrypts");
    assert_eq!(f.to_message(), msg);
    assert!(f.encrypted);
    // The same seed gives the same frame; another seed another ciphertext.
    assert_eq!(dc09::encode_encrypted(&msg, &key(), 42), bytes);
    assert_ne!(dc09::encode_encrypted(&msg, &key(), 43), bytes);
}

#[test]
fn an_encrypted_frame_is_acked_encrypted() {
    let c6 = ok(strict(C6));
    let now = Timestamp::new(2020, 7, 5, 18, 24, 53).expect("valid");
    let reply = dc09::ack_encrypted(&c6.header(), &key(), now, 7);
    assert!(reply.starts_with(b"\n") && reply.ends_with(b"\r"));
    assert_eq!(reply.get(9..15), Some(&b"\"*ACK\""[..]));
    let f = Dc09Decoder::new(Some(key()))
        .decode_frame(&reply)
        .expect("decrypts");
    assert_eq!((f.token, f.encrypted), (Token::Ack, true));
    assert_eq!(f.sequence.as_str(), "0000");
    assert_eq!(s(f.receiver).as_deref(), Some("0"));
    assert_eq!(s(f.line).as_deref(), Some("0"));
    assert_eq!(s(f.account).as_deref(), Some("AAAB"));
    assert_eq!(f.timestamp, Some(now));
    assert_eq!(
        dc09::check_timestamp(
            &c6.timestamp.expect("C6 has one"),
            now,
            dc09::DEFAULT_BEFORE_SECONDS,
            dc09::DEFAULT_AFTER_SECONDS
        ),
        Ok(())
    );
}

#[test]
fn a_stream_of_all_the_vectors_decodes_in_order() {
    let mut input = Vec::new();
    for text in [C1, C2, C3, C4, C5, C6, C7, C14, C21] {
        input.extend_from_slice(&wire(text));
        input.extend_from_slice(b"\r\n");
    }
    let mut d = Dc09Decoder::new(Some(key()));
    let mut rest = &input[..];
    let mut results = Vec::new();
    loop {
        let step = d.decode(rest);
        let consumed = step.consumed();
        match step {
            Step::Incomplete => break,
            Step::Frame { frame, .. } => results.push(Ok(frame.token)),
            Step::Invalid { error, .. } => results.push(Err(error.to_string())),
            Step::Skipped { .. } => {}
        }
        rest = rest.get(consumed..).expect("in bounds");
    }
    assert_eq!(d.finish(rest), None);
    assert_eq!(
        results,
        [
            Ok(Token::SiaDcs),
            Ok(Token::SiaDcs),
            Ok(Token::Nak),
            Ok(Token::Null),
            Err("decryption failed (wrong key?)".into()),
            Ok(Token::Null),
            Err("length mismatch: frame says 0047, body is 0x2F bytes".into()),
            Err("crc mismatch: frame says 9618, computed B7C9".into()),
            Err("bad crc field \"this\"".into()),
        ]
    );
}

#[test]
fn a_frame_split_across_reads_waits_for_its_cr() {
    let bytes = wire(C1);
    let mut d = Dc09Decoder::new(None);
    for cut in 0..bytes.len() {
        assert_eq!(
            d.decode(bytes.get(..cut).expect("in bounds")),
            Step::Incomplete,
            "cut {cut}"
        );
    }
    assert!(matches!(d.decode(&bytes), Step::Frame { .. }));
    let e = d
        .finish(bytes.get(..20).expect("in bounds"))
        .expect("something left");
    assert!(matches!(e, Err(Dc09Error::Truncated { .. })), "{e:?}");
}
