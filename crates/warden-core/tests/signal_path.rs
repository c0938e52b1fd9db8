//! Decode → meaning → stored form → triage never panics, whatever arrives (the
//! `signal_path` fuzz target runs the same driver for longer).

use proptest::prelude::*;
use warden_core::drive_signal_path;

proptest! {
    #[test]
    fn arbitrary_bytes_on_any_path_never_panic(selector in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..600)) {
        drive_signal_path(selector, &data);
    }

    #[test]
    fn arbitrary_text_in_contact_id_pass_through_fields_never_panics(receiver in "\\PC{0,200}", line in "\\PC{0,50}", zone in "\\PC{0,80}") {
        let payload = serde_json::json!({
            "v": 1, "msg_id": "p1",
            "contact_id": {"message": "1234181131010158", "receiver": receiver, "line": line},
        });
        drive_signal_path(1, payload.to_string().as_bytes());
        let alarm = serde_json::json!({"v": 1, "msg_id": "a1", "alarm": {"kind": "pendant", "zone": zone}});
        drive_signal_path(1, alarm.to_string().as_bytes());
    }

    #[test]
    fn frames_with_arbitrary_sia_text_and_receiver_noise_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut frame = b"S011[#1234|Nri1/YT01/MA02".to_vec();
        frame.extend(&body);
        frame.extend(b"]\x14");
        drive_signal_path(0, &frame);
        let mut internal = b"0011 ".to_vec();
        internal.extend(&body);
        internal.push(0x14);
        drive_signal_path(0, &internal);
    }
}

#[test]
fn the_poison_message_of_the_issue_maps_to_a_triaged_contact_id_event() {
    let receiver = "€".repeat(150);
    let payload = serde_json::json!({
        "v": 1, "msg_id": "p1",
        "contact_id": {"message": "12341811B1010010", "receiver": receiver},
    });
    // Whatever the checksum verdict, the path completes; a readable message is triaged.
    drive_signal_path(1, payload.to_string().as_bytes());
    let good = serde_json::json!({
        "v": 1, "msg_id": "p2",
        "contact_id": {"message": "1234181131010158", "receiver": receiver},
    });
    assert_eq!(drive_signal_path(1, good.to_string().as_bytes()), 1);
}

#[test]
fn every_event_of_a_multi_event_sia_block_reaches_the_core() {
    assert_eq!(drive_signal_path(0, b"S011[#1234|Nri1/YT01/MA02]\x14"), 2);
}
