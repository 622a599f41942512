//! The card side of EAP-SIM, EAP-AKA and EAP-AKA' (settings as in
//! `server_session_aka`): a real `ServerSession` sends its requests to a
//! real `PeerSession`, and the input decides, request by request, whether
//! the card gets the real one, a mutated copy, arbitrary bytes or the
//! previous one again (`eapay_fuzz::conversation`).
#![no_main]

use eapay_fuzz::conversation::Side;
use eapay_fuzz::tape::Tape;
use eapay_fuzz::targets;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    targets::sim_aka(&mut Tape::new(data), Side::Peer);
});
