//! The structured targets' bodies, shared with the seed generator.

use eap_methods::sim_aka::peer::Identities;

use crate::aka::{self, AkaWorld, Issuer};
use crate::conversation::{converse, Outcome, Side};
use crate::tape::Tape;
use crate::tls::{self, TlsWorld, TtlsWorld};

/// The identifier the tampered conversation starts from when an untampered
/// one went first: a server process does not reuse the last one's.
const SECOND_ID_OFFSET: u8 = 100;

/// EAP-SIM, EAP-AKA or EAP-AKA' (the setup bytes pick), tampered on `side`.
pub fn sim_aka(tape: &mut Tape<'_>, side: Side) -> Outcome {
    let setup = aka::Setup::read(tape);
    let mut world = AkaWorld { setup: setup.clone(), issuer: Issuer::default() };
    let mut identities = Identities::default();
    if setup.second {
        let mut first = aka::card(&setup, Identities::default());
        converse(tape, None, setup.first_id, &mut first, &mut world);
        identities = aka::identities_of(&first);
    }
    let mut peer = aka::card(&setup, identities);
    converse(tape, Some(side), setup.first_id.wrapping_add(SECOND_ID_OFFSET), &mut peer, &mut world)
}

/// EAP-TLS, tampered on `side`.
pub fn eap_tls(tape: &mut Tape<'_>, side: Side) -> Outcome {
    let setup = tls::Setup::read(tape);
    let mut world = TlsWorld::new(setup.clone());
    let mut session = None;
    if setup.resume {
        let mut first = tls::tls_card(&setup, None);
        converse(tape, None, setup.first_id, &mut first, &mut world);
        session = tls::session_of(&first);
    }
    let mut peer = tls::tls_card(&setup, session);
    converse(tape, Some(side), setup.first_id.wrapping_add(SECOND_ID_OFFSET), &mut peer, &mut world)
}

/// EAP-TTLS (inner PAP, AKA or AKA'), tampered on `side`.
pub fn eap_ttls(tape: &mut Tape<'_>, side: Side) -> Outcome {
    let setup = tls::Setup::read(tape);
    let mut world = TtlsWorld::new(setup.clone());
    let mut session = None;
    if setup.resume {
        let mut first = tls::ttls_card(&setup, None);
        converse(tape, None, setup.first_id, &mut first, &mut world);
        session = tls::session_of(&first);
    }
    let mut peer = tls::ttls_card(&setup, session);
    converse(tape, Some(side), setup.first_id.wrapping_add(SECOND_ID_OFFSET), &mut peer, &mut world)
}

/// The card side of EAP-TLS (first byte even) or EAP-TTLS (odd).
pub fn peer_tls(tape: &mut Tape<'_>) -> Outcome {
    if tape.byte() & 1 == 0 {
        eap_tls(tape, Side::Peer)
    } else {
        eap_ttls(tape, Side::Peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aka::CardState;
    use crate::tls::Inner;
    use eap_methods::EapType;

    /// What the empty tail of an input means: the real conversation, to
    /// its end, on either side (the seeds and the fuzzer's depth rely on it).
    #[test]
    fn an_input_of_setup_bytes_alone_is_the_whole_real_conversation() {
        for side in [Side::Server, Side::Peer] {
            for kind in 0..3 {
                for (privacy, second) in [(false, false), (true, true)] {
                    let setup = aka::Setup::bytes(kind, privacy, second, CardState::Normal, kind == 1);
                    let out = sim_aka(&mut Tape::new(&setup), side);
                    assert!(out.accepted && out.peer_success, "{kind} {privacy} {side:?}");
                }
            }
            let setup = aka::Setup::bytes(1, false, false, CardState::WrongKey, false);
            assert!(!sim_aka(&mut Tape::new(&setup), side).accepted);
        }
        for range in 0..3 {
            let setup = tls::Setup::bytes(range, true, true, Inner::Pap);
            let out = eap_tls(&mut Tape::new(&setup), Side::Server);
            assert!(out.accepted && out.peer_success, "TLS {range}");
            let setup = tls::Setup::bytes(range, false, false, Inner::Aka(EapType::AKA_PRIME));
            let out = peer_tls(&mut Tape::new(&[&[1][..], &setup].concat()));
            assert!(out.accepted && out.peer_success, "TTLS {range}");
        }
    }

    /// A card that gets garbage instead of the server's first request does
    /// not get far, and nothing panics.
    #[test]
    fn arbitrary_bytes_instead_of_a_request() {
        let mut input = aka::Setup::bytes(1, false, false, CardState::Normal, false).to_vec();
        input.extend_from_slice(&[2, 0, 5, 1, 9, 0, 5, 23]);
        let out = sim_aka(&mut Tape::new(&input), Side::Peer);
        assert_eq!(out.messages[0], [1, 9, 0, 5, 23]);
    }
}
