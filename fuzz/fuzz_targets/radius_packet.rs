//! RADIUS: the datagram decoder, then what the server does with a packet
//! that decodes (the Request Authenticator and Message-Authenticator checks,
//! the payment attributes), and the client's check of a response.
#![no_main]

use aaa_proto::dictionary::eapay;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::{verify_request, verify_response, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let Ok(packet) = Packet::decode(datagram) else { return };
    let _ = verify_request(datagram, &packet, b"fuzz-secret", true);
    let _ = verify_request(datagram, &packet, b"fuzz-secret", false);
    let _ = verify_response(datagram, &[0x42; 16], b"fuzz-secret", true);
    let _ = PaymentDetails::from_packet(&packet, eapay::VENDOR_ID);
    let _ = packet.encode_unsigned();
});
