//! The card link: EAPOL frames cut from a byte stream, as the terminal and
//! the card read them from a socket.
#![no_main]

use aaa_proto::eapol::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut rest = bytes;
    while let Ok(Some((_, used))) = Frame::decode(rest) {
        rest = &rest[used..];
    }
});
