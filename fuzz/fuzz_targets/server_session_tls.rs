//! The server side of EAP-TLS (TLS 1.2 and 1.3, fragment sizes, a
//! confirmed payment, resumption after a first conversation, the identity
//! the card names): a real card answers a real `ServerSession`, and the
//! input decides, response by response, whether the server gets the real
//! one, a mutated copy, arbitrary bytes or the previous one again
//! (`eapay_fuzz::conversation`).
#![no_main]

use eapay_fuzz::conversation::Side;
use eapay_fuzz::tape::Tape;
use eapay_fuzz::targets;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    targets::eap_tls(&mut Tape::new(data), Side::Server);
});
