//! EAP-TLS/TTLS fragments: a run of type-data frames (each prefixed here by
//! a 2-octet length) into one reassembler, as a conversation feeds them.
#![no_main]

use eap_methods::tls::fragment::{Frame, Reassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut reassembler = Reassembler::new("EAP-TLS", 16_384);
    let mut rest = bytes;
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (type_data, next) = tail.split_at(len);
        rest = next;
        let Ok(frame) = Frame::parse(type_data, "EAP-TLS") else { continue };
        if reassembler.push(&frame).is_err() {
            reassembler = Reassembler::new("EAP-TLS", 16_384);
        }
    }
});
