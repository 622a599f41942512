//! Diameter: a message with the server's limits, and a bare AVP run.
#![no_main]

use aaa_proto::diameter::avp::parse_avps;
use aaa_proto::diameter::message::{Limits, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(message) = Message::decode(bytes, &Limits::default()) {
        let _ = message.encode();
    }
    let _ = parse_avps(bytes);
});
