//! Property tests: what an encoder writes its decoder reads back, and no byte string makes
//! a decoder panic or lose its place in the stream.

use proptest::prelude::*;
use warden_protocol::contact_id::{CidEvent, ContactIdMessage, LineDecoder};
use warden_protocol::surgard::{Origin, SurGardDecoder, SurGardFrame};
use warden_protocol::{Account, Ascii, Step};
use warden_types::Qualifier;

fn cid_digits(n: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"0123456789BCDEF".to_vec()), n)
}

fn qualifier() -> impl Strategy<Value = Qualifier> {
    prop_oneof![
        Just(Qualifier::New),
        Just(Qualifier::Restore),
        Just(Qualifier::Status)
    ]
}

fn event() -> impl Strategy<Value = CidEvent> {
    (qualifier(), cid_digits(3), cid_digits(2), cid_digits(3))
        .prop_map(|(q, c, g, z)| CidEvent::new(q, &c, &g, &z).expect("strategy makes valid fields"))
}

fn decimal(n: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(b"0123456789".to_vec()), n)
}

fn origin() -> impl Strategy<Value = Origin> {
    (decimal(2), prop_oneof![decimal(1), decimal(3)]).prop_map(|(r, l)| Origin {
        receiver: Ascii::new(&r).expect("2 digits"),
        line: Ascii::new(&l).expect("1 or 3 digits"),
    })
}

fn surgard_frame() -> impl Strategy<Value = SurGardFrame> {
    let hex = prop::collection::vec(prop::sample::select(b"0123456789ABCDEF".to_vec()), 4);
    prop_oneof![
        origin().prop_map(|origin| SurGardFrame::Heartbeat { origin }),
        (
            origin(),
            hex,
            prop_oneof![Just(&b"18"[..]), Just(&b"98"[..])],
            event()
        )
            .prop_map(|(origin, acct, mt, event)| SurGardFrame::ContactId {
                origin,
                protocol: '5',
                account: Account::new(&acct).expect("4 hex digits"),
                message_type: Ascii::new(mt).expect("2 digits"),
                event,
                receiver_time: None,
            }),
    ]
}

/// Feeds `data` to a decoder step by step until it needs more bytes, checking that every
/// other answer consumes at least one byte; returns where the unconsumed rest starts.
fn drive<F, E>(
    data: &[u8],
    mut step: impl FnMut(&[u8]) -> Step<F, E>,
) -> Result<usize, TestCaseError> {
    let mut start = 0;
    while start < data.len() {
        let s = step(&data[start..]);
        if matches!(s, Step::Incomplete) {
            break;
        }
        prop_assert!(s.consumed() > 0);
        start += s.consumed();
    }
    Ok(start)
}

proptest! {
    #[test]
    fn contact_id_messages_round_trip(acct in cid_digits(4), mt in cid_digits(2), event in event()) {
        let msg = ContactIdMessage {
            account: Account::new(&acct).expect("4 digits"),
            message_type: Ascii::new(&mt).expect("2 digits"),
            event,
        };
        let wire = msg.encode().expect("valid message encodes");
        prop_assert_eq!(ContactIdMessage::parse(&wire), Ok(msg));
    }

    #[test]
    fn any_single_digit_change_breaks_the_checksum(acct in cid_digits(4), event in event(), pos in 0usize..16, to in prop::sample::select(b"0123456789BCDEF".to_vec())) {
        let msg = ContactIdMessage { account: Account::new(&acct).expect("4"), message_type: Ascii::new(b"18").expect("2"), event };
        let mut wire = msg.encode().expect("encodes");
        prop_assume!(wire[pos] != to);
        // Every digit has its own value in 1..=15, so replacing one changes the sum by a
        // non-zero amount smaller than 15 and the sum can no longer be a multiple of 15.
        wire[pos] = to;
        prop_assert!(ContactIdMessage::parse(&wire).is_err());
    }

    #[test]
    fn surgard_frames_round_trip_through_the_stream_decoder(frames in prop::collection::vec(surgard_frame(), 1..8)) {
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let mut d = SurGardDecoder::default();
        let mut got = Vec::new();
        let mut start = 0;
        loop {
            match d.decode(&wire[start..]) {
                Step::Frame { frame, consumed } => { got.push(frame); start += consumed; }
                Step::Incomplete => break,
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn surgard_decoder_never_panics_and_always_progresses(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut d = SurGardDecoder::default();
        let rest = drive(&data, |b| d.decode(b))?;
        let _ = d.finish(&data[rest..]);
    }

    #[test]
    fn contact_id_line_decoder_never_panics_and_always_progresses(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut d = LineDecoder::default();
        let rest = drive(&data, |b| d.decode(b))?;
        let _ = d.finish(&data[rest..]);
    }
}
