#![no_main]
//! Arbitrary bytes through the SCAIP receiver's pure path: TCP framing, the SIP request, the
//! `<mrq>` body, and the answer built from what was read.

use libfuzzer_sys::fuzz_target;
use warden_protocol::scaip::{self, Split};
use warden_protocol::sip_digest;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Split::Message { len } = scaip::split(rest) {
        let (one, tail) = rest.split_at(len.min(rest.len()));
        if let Ok(req) = scaip::parse_request(one)
            && let Some(c) = req.authorization.as_deref().and_then(sip_digest::parse)
        {
            let _ = sip_digest::verify(&c, &req.method, "00");
        }
        if let Ok(req) = scaip::parse_request(one)
            && let Ok(mrq) = scaip::parse_mrq(&req.body)
        {
            let _ = mrq.unit();
            let _ = scaip::response(&req, 200, "OK", "t", Some(&scaip::mrs(&mrq.reference)));
        }
        if len == 0 {
            break;
        }
        rest = tail;
    }
    let _ = scaip::parse_request(data);
});
