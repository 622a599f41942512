//! EAP-SIM/AKA/AKA': the attribute parser of a whole packet, and of the
//! decrypted AT_ENCR_DATA contents.
#![no_main]

use eap_methods::sim_aka::attributes::{decode_encrypted, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = Message::decode(bytes, "EAP-AKA");
    let _ = decode_encrypted(bytes, "EAP-AKA");
});
