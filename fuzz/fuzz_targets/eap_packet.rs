//! EAP: the packet decoder every method's input goes through.
#![no_main]

use eap_methods::packet::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(packet) = Packet::decode(bytes) {
        let _ = packet.encode();
    }
});
