//! The server side of EAP-SIM, EAP-AKA and EAP-AKA' (the first input byte
//! picks, with privacy, result indications, a confirming card, a card out
//! of sync or with the wrong key, a Nak, and a re-authentication after a
//! first conversation): a real card answers a real `ServerSession`, and the
//! input decides, response by response, whether the server gets the real
//! one, a mutated copy, arbitrary bytes or the previous one again
//! (`eapay_fuzz::conversation`).
#![no_main]

use eapay_fuzz::conversation::Side;
use eapay_fuzz::tape::Tape;
use eapay_fuzz::targets;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    targets::sim_aka(&mut Tape::new(data), Side::Server);
});
