#![no_main]
//! Arbitrary bytes through the DC-09 stream decoder, with and without a key.

use libfuzzer_sys::fuzz_target;
use warden_protocol::dc09::{Dc09Decoder, Dc09Key};

fuzz_target!(|data: &[u8]| {
    let key = Dc09Key::parse("AAAAAAAAAAAAAAAA").ok();
    for mut d in [Dc09Decoder::new(None), Dc09Decoder::new(key).accept_bad_length(true)] {
        let mut start = 0;
        while start < data.len() {
            let n = d.decode(&data[start..]).consumed();
            if n == 0 {
                break;
            }
            start += n;
        }
        let _ = d.finish(&data[start..]);
    }
});
