//! EAP-TTLS: the AVPs the server reads from the tunnel and those the card reads.
#![no_main]

use aaa_proto::dictionary::eapay;
use eap_methods::ttls::avps::{PeerAvps, ServerAvps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = PeerAvps::decode(bytes, eapay::VENDOR_ID);
    let _ = ServerAvps::decode(bytes, eapay::VENDOR_ID);
});
