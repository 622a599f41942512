//! Server and peer sessions talking to each other in memory, with a card
//! store built on the AuC functions: every AKA/AKA' path end to end.

use super::*;
use crate::crypto::milenage::Milenage;
use crate::method::{Answer, Authenticated, FailureReason, Query, Verdict};
use crate::peer::{PeerEvent, PeerSession};
use crate::server::{ServerSession, Step};
use crate::sim_aka::attributes::{at, subtype, AttributeWriter, Message};
use crate::sim_aka::auc::{generate_vector, sqn_from_auts, DEFAULT_AMF};
use crate::sim_aka::sqn::{Sqn, SqnWindow};
use crate::sim_aka::usim::Usim;
use crate::sim_aka::Flavor;
use crate::packet::{Code, EapType};

const K: [u8; 16] = [0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc];
const OPC: [u8; 16] = [0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf];
const REALM: &str = "issuer.example";

/// The issuer's side of the card: K/OPc and SQN_HE.
struct Store {
    milenage: Milenage,
    sqn: Sqn,
    vectors: u32,
}

impl Store {
    fn new() -> Self {
        Self { milenage: Milenage::new(&K, &OPC), sqn: Sqn::new(0), vectors: 0 }
    }

    fn answer(&mut self, q: Query) -> Answer {
        if let Query::AkaResync { rand, auts, .. } = &q {
            match sqn_from_auts(&self.milenage, rand, auts) {
                Some(ms) => self.sqn = self.sqn.resynchronised(ms),
                None => return Answer::ResyncRejected,
            }
        }
        self.sqn = self.sqn.next();
        self.vectors += 1;
        let rand = [self.vectors as u8; 16];
        Answer::AkaVector(generate_vector(&self.milenage, self.sqn, DEFAULT_AMF, rand))
    }
}

fn flavor(kind: EapType) -> Flavor {
    if kind == EapType::AKA {
        Flavor::Aka
    } else {
        Flavor::AkaPrime { network_name: REALM.into() }
    }
}

fn identity(kind: EapType) -> String {
    let prefix = if kind == EapType::AKA { '0' } else { '6' };
    format!("{prefix}c0ffee@{REALM}")
}

fn card(kind: EapType, k: [u8; 16], window: SqnWindow, confirmation: Option<Vec<u8>>) -> PeerSession {
    let config = AkaPeerConfig { flavor: flavor(kind), identity: identity(kind), result_ind: true, confirmation };
    let peer = AkaPeer::new(config, Usim::new(&k, &OPC, window));
    PeerSession::new(identity(kind), vec![Box::new(peer)])
}

struct Outcome {
    server: Step,
    peer: PeerEvent,
    authenticated: Option<Authenticated>,
}

/// Runs a conversation; `tamper` may change each response before the server sees it.
fn converse(
    kind: EapType,
    eap_identity: &str,
    peer: &mut PeerSession,
    store: &mut Store,
    verdict: Verdict,
    mut tamper: impl FnMut(&mut Vec<u8>),
) -> Outcome {
    let mut server = ServerSession::new(10);
    let mut authenticated = None;
    let mut first = peer.identity_response(0);
    // The identity the NAS saw may differ from the card's permanent one.
    first = crate::packet::Packet::new(Code::Response, first[1], EapType::IDENTITY, eap_identity.as_bytes().to_vec())
        .encode()
        .unwrap();
    let mut step = server.handle(&first);
    loop {
        step = match step {
            Step::NeedMethods { identity } => {
                let config = AkaServerConfig::new(flavor(kind));
                server.offer_methods(vec![Box::new(AkaServer::new(config, &identity))])
            }
            Step::Query(q) => server.answer(store.answer(q)),
            Step::Authenticated(a) => {
                authenticated = Some(a);
                server.conclude(verdict.clone())
            }
            Step::Send(request) => match peer.handle(&request) {
                PeerEvent::Send(mut response) => {
                    tamper(&mut response);
                    server.handle(&response)
                }
                other => panic!("peer stopped mid-conversation: {other:?}"),
            },
            Step::Accept { ref packet, .. } | Step::Reject { ref packet, .. } => {
                let p = peer.handle(packet);
                return Outcome { server: step, peer: p, authenticated };
            }
            Step::Discard(why) => panic!("server discarded: {why}"),
        }
    }
}

fn both(kinds: impl Fn(EapType)) {
    kinds(EapType::AKA);
    kinds(EapType::AKA_PRIME);
}

#[test]
fn full_authentication_agrees_on_keys() {
    both(|kind| {
        let mut store = Store::new();
        let mut peer = card(kind, K, SqnWindow::default(), None);
        let out = converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |_| {});
        let Step::Accept { keys, method, .. } = out.server else { panic!("{kind:?}: {:?}", out.server) };
        assert_eq!(method, kind);
        let PeerEvent::Success { keys: peer_keys, .. } = out.peer else { panic!("{:?}", out.peer) };
        assert_eq!(keys, peer_keys);
        assert_eq!(out.authenticated.unwrap().identity, identity(kind));
    });
}

#[test]
fn aka_and_aka_prime_keys_differ() {
    let run = |kind| {
        let mut store = Store::new();
        let mut peer = card(kind, K, SqnWindow::default(), None);
        match converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |_| {}).server {
            Step::Accept { keys, .. } => keys,
            other => panic!("{other:?}"),
        }
    };
    assert_ne!(run(EapType::AKA).msk, run(EapType::AKA_PRIME).msk);
}

#[test]
fn wrong_k_fails_both_ways() {
    both(|kind| {
        let mut store = Store::new();
        let mut peer = card(kind, [0x11; 16], SqnWindow::default(), None);
        let out = converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |_| {});
        // The card cannot verify AUTN: it rejects the issuer.
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::RejectedByPeer, .. }), "{:?}", out.server);
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
        assert!(out.authenticated.is_none());
    });
}

#[test]
fn card_ahead_resynchronises_then_succeeds() {
    both(|kind| {
        let mut store = Store::new();
        let ahead = Sqn::new(0x1000);
        let mut peer = card(kind, K, SqnWindow::starting_at(ahead), None);
        let out = converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |_| {});
        assert!(matches!(out.server, Step::Accept { .. }), "{:?}", out.server);
        assert!(store.sqn.seq() > ahead.seq(), "issuer moved past the card");
        assert_eq!(store.vectors, 2);
    });
}

#[test]
fn a_card_that_keeps_failing_sync_is_refused() {
    let mut store = Store::new();
    let mut peer = card(EapType::AKA, K, SqnWindow::starting_at(Sqn::new(0x1000)), None);
    // Forge AUTS so the store cannot verify it.
    let out = converse(EapType::AKA, &identity(EapType::AKA), &mut peer, &mut store, Verdict::accept(), |r| {
        if r.get(5) == Some(&subtype::AKA_SYNCHRONIZATION_FAILURE) {
            let n = r.len();
            r[n - 1] ^= 0xff;
        }
    });
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed("AUTS"), .. }));
}

#[test]
fn tampered_mac_fails() {
    both(|kind| {
        let mut store = Store::new();
        let mut peer = card(kind, K, SqnWindow::default(), None);
        let out = converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |r| {
            if r.get(5) == Some(&subtype::AKA_CHALLENGE) {
                let n = r.len();
                r[n - 1] ^= 1;
            }
        });
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed("AT_MAC"), .. }));
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
    });
}

#[test]
fn tampered_res_fails() {
    let mut store = Store::new();
    let mut peer = card(EapType::AKA, K, SqnWindow::default(), None);
    let kind = EapType::AKA;
    let out = converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |r| {
        if r.get(5) == Some(&subtype::AKA_CHALLENGE) {
            // AT_RES is the first attribute: flip a RES octet (after type, length, bit count).
            r[12] ^= 1;
        }
    });
    // Changing RES breaks AT_MAC first; either way the server must refuse.
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed(_), .. }));
}

#[test]
fn unknown_prefix_asks_for_the_permanent_identity() {
    both(|kind| {
        let mut store = Store::new();
        let mut peer = card(kind, K, SqnWindow::default(), None);
        let out = converse(kind, &format!("anonymous@{REALM}"), &mut peer, &mut store, Verdict::accept(), |_| {});
        assert!(matches!(out.server, Step::Accept { .. }), "{:?}", out.server);
        assert_eq!(out.authenticated.unwrap().identity, identity(kind));
    });
}

#[test]
fn tampered_identity_round_breaks_the_checkcode() {
    let kind = EapType::AKA_PRIME;
    let mut store = Store::new();
    let mut peer = card(kind, K, SqnWindow::default(), None);
    // A relay rewrites the padding of AT_IDENTITY: the server hashes what it
    // received, the card what it sent, so AT_CHECKCODE no longer matches.
    let out = converse(kind, &format!("anonymous@{REALM}"), &mut peer, &mut store, Verdict::accept(), |r| {
        if r.get(5) == Some(&subtype::AKA_IDENTITY) {
            let n = r.len();
            r[n - 1] ^= 0x01;
        }
    });
    assert!(matches!(out.server, Step::Reject { .. }), "{:?}", out.server);
}

#[test]
fn payment_confirmation_and_result_cross_the_protected_channel() {
    both(|kind| {
        let mut store = Store::new();
        let details = b"canonical payment details".to_vec();
        let mut peer = card(kind, K, SqnWindow::default(), Some(details.clone()));
        let verdict = Verdict { approved: true, result: Some(b"A1B2C3".to_vec()) };
        let out = converse(kind, &identity(kind), &mut peer, &mut store, verdict, |_| {});
        assert_eq!(out.authenticated.unwrap().confirmation, Some(details));
        let PeerEvent::Success { result, .. } = out.peer else { panic!("{:?}", out.peer) };
        assert_eq!(result, Some(b"A1B2C3".to_vec()));
    });
}

#[test]
fn a_decline_reaches_the_card_and_ends_in_failure() {
    both(|kind| {
        let mut store = Store::new();
        let mut peer = card(kind, K, SqnWindow::default(), Some(b"d".to_vec()));
        let verdict = Verdict { approved: false, result: Some(b"51".to_vec()) };
        let out = converse(kind, &identity(kind), &mut peer, &mut store, verdict, |_| {});
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::Declined, .. }));
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
    });
}

#[test]
fn success_without_authentication_is_ignored_by_the_card() {
    let mut peer = card(EapType::AKA, K, SqnWindow::default(), None);
    let _ = peer.identity_response(0);
    let ev = peer.handle(&crate::packet::Packet::success(0).encode().unwrap());
    assert!(matches!(ev, PeerEvent::Ignore(_)));
}

#[test]
fn peer_negotiates_kdf_and_checks_the_reoffer() {
    let kind = EapType::AKA_PRIME;
    let store_m = Milenage::new(&K, &OPC);
    let v = generate_vector(&store_m, Sqn::new(0).next(), DEFAULT_AMF, [3; 16]);
    let challenge = |id: u8, kdfs: &[u16]| {
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &v.rand).reserved(at::AUTN, &v.autn);
        w.with_actual_length(at::KDF_INPUT, REALM.as_bytes());
        for k in kdfs {
            w.u16(at::KDF, *k);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = w.into_packet(Code::Request, id, kind, subtype::AKA_CHALLENGE);
        let keys = flavor(kind).derive(identity(kind).as_bytes(), &v);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        bytes
    };
    // Offer [2, 1]: the card picks 1 and says so.
    let mut peer = card(kind, K, SqnWindow::default(), None);
    let PeerEvent::Send(r) = peer.handle(&challenge(1, &[2, 1])) else { panic!() };
    let m = Message::decode(&r, "AKA'").unwrap();
    assert_eq!(m.subtype, subtype::AKA_CHALLENGE);
    assert_eq!(m.get(at::KDF).and_then(|a| a.u16()), Some(1));
    assert!(!m.has(at::RES));
    // A re-offer that does not repeat the original list is refused.
    let PeerEvent::Send(r) = peer.handle(&challenge(2, &[1])) else { panic!() };
    assert_eq!(Message::decode(&r, "AKA'").unwrap().subtype, subtype::CLIENT_ERROR);
    // The correct re-offer [1, 2, 1] is answered with RES.
    let mut peer = card(kind, K, SqnWindow::default(), None);
    let _ = peer.handle(&challenge(1, &[2, 1]));
    let PeerEvent::Send(r) = peer.handle(&challenge(2, &[1, 2, 1])) else { panic!() };
    assert!(Message::decode(&r, "AKA'").unwrap().has(at::RES));
    // No KDF the card knows: Client-Error.
    let mut peer = card(kind, K, SqnWindow::default(), None);
    let PeerEvent::Send(r) = peer.handle(&challenge(1, &[7])) else { panic!() };
    assert_eq!(Message::decode(&r, "AKA'").unwrap().subtype, subtype::CLIENT_ERROR);
}

#[test]
fn card_bound_to_another_network_name_rejects() {
    let kind = EapType::AKA_PRIME;
    let mut store = Store::new();
    let config = AkaPeerConfig {
        flavor: Flavor::AkaPrime { network_name: "other.example".into() },
        identity: identity(kind),
        result_ind: true,
        confirmation: None,
    };
    let mut peer = PeerSession::new(identity(kind), vec![Box::new(AkaPeer::new(config, Usim::new(&K, &OPC, SqnWindow::default())))]);
    let out = converse(kind, &identity(kind), &mut peer, &mut store, Verdict::accept(), |_| {});
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::RejectedByPeer, .. }));
}

#[test]
fn peer_naks_a_method_it_lacks() {
    let mut peer = card(EapType::AKA, K, SqnWindow::default(), None);
    let req = crate::packet::Packet::new(Code::Request, 4, EapType::TLS, vec![0x20]).encode().unwrap();
    let PeerEvent::Send(r) = peer.handle(&req) else { panic!() };
    let nak = crate::packet::Packet::decode(&r).unwrap();
    assert_eq!(nak.kind, Some(EapType::NAK));
    assert_eq!(nak.nak_types(), vec![EapType::AKA]);
}

#[test]
fn server_switches_method_on_nak() {
    let mut server = ServerSession::new(1);
    let _ = server.handle(&crate::packet::Packet::new(Code::Response, 0, EapType::IDENTITY, identity(EapType::AKA).into_bytes()).encode().unwrap());
    let aka_prime = AkaServer::new(AkaServerConfig::new(flavor(EapType::AKA_PRIME)), &format!("anon@{REALM}"));
    let aka = AkaServer::new(AkaServerConfig::new(Flavor::Aka), &identity(EapType::AKA));
    let Step::Send(req) = server.offer_methods(vec![Box::new(aka_prime), Box::new(aka)]) else { panic!() };
    let mut peer = card(EapType::AKA, K, SqnWindow::default(), None);
    let PeerEvent::Send(nak) = peer.handle(&req) else { panic!() };
    // The Nak for AKA' names AKA: the session moves to it and asks for a vector.
    assert!(matches!(server.handle(&nak), Step::Query(Query::AkaVector { .. })));
}

#[test]
fn stale_identifier_is_discarded() {
    let mut server = ServerSession::new(1);
    let _ = server.handle(&crate::packet::Packet::new(Code::Response, 0, EapType::IDENTITY, b"anon@x".to_vec()).encode().unwrap());
    let aka = AkaServer::new(AkaServerConfig::new(Flavor::Aka), "anon@x");
    let Step::Send(req) = server.offer_methods(vec![Box::new(aka)]) else { panic!() };
    let mut resp = crate::packet::Packet::decode(&req).unwrap();
    resp.code = Code::Response;
    resp.identifier = req[1].wrapping_add(7);
    assert!(matches!(server.handle(&resp.encode().unwrap()), Step::Discard(_)));
}
