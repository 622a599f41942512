//! The card side of EAP-TLS (first input byte even) or EAP-TTLS (odd),
//! settings as in `server_session_tls` and `server_session_ttls`: a real
//! `ServerSession` sends its requests to a real `PeerSession`, and the input
//! decides, request by request, whether the card gets the real one, a
//! mutated copy, arbitrary bytes or the previous one again; the card must
//! not accept EAP-Success before the server completed the handshake
//! (`eapay_fuzz::conversation`).
#![no_main]

use eapay_fuzz::tape::Tape;
use eapay_fuzz::targets;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    targets::peer_tls(&mut Tape::new(data));
});
