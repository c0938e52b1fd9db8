#![no_main]
//! Arbitrary bytes through the Contact ID line decoder; valid messages must re-encode to the
//! same 16 digits.

use libfuzzer_sys::fuzz_target;
use warden_protocol::contact_id::{ContactIdMessage, LineDecoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ContactIdMessage::parse(data) {
        assert_eq!(&m.encode().expect("valid message re-encodes")[..], data);
    }
    let mut d = LineDecoder::default();
    let mut start = 0;
    while start < data.len() {
        let n = d.decode(&data[start..]).consumed();
        if n == 0 {
            break;
        }
        start += n;
    }
    let _ = d.finish(&data[start..]);
});
