#![no_main]
//! Arbitrary bytes through the Sur-Gard stream decoder: no panic, always progress, and every
//! decoded frame re-encodes to something that decodes to the same frame.

use libfuzzer_sys::fuzz_target;
use warden_protocol::Step;
use warden_protocol::surgard::{SurGardDecoder, SurGardFrame};

fuzz_target!(|data: &[u8]| {
    let mut d = SurGardDecoder::default();
    let mut start = 0;
    while start < data.len() {
        let step = d.decode(&data[start..]);
        if let Step::Frame { frame, .. } = &step {
            let mut wire = Vec::new();
            frame.encode(&mut wire);
            let again = SurGardFrame::parse(&wire[..wire.len() - 1]).expect("re-encoded frame decodes");
            assert_eq!(&again, frame);
        }
        let n = step.consumed();
        if n == 0 {
            break;
        }
        start += n;
    }
    let _ = d.finish(&data[start..]);
});
