#![no_main]
//! Arbitrary bytes through the SIA data-block parser.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = warden_protocol::sia::parse_data(data, true);
    let _ = warden_protocol::sia::parse_data(data, false);
});
