#![no_main]
//! Arbitrary bytes through decode → meaning → stored form → triage (Sur-Gard stream, MQTT
//! payload, stored JSON, chosen by the first byte): nothing panics and the stored form of
//! every decoded signal reads back to the same events.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, rest)) = data.split_first() {
        warden_core::drive_signal_path(selector, rest);
    }
});
