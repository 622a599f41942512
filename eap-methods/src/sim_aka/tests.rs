//! Server and peer sessions of the SIM/AKA family talking to each other in
//! memory, with an issuer built on the AuC functions that also issues and
//! resolves pseudonyms and re-authentication identities: every path end to
//! end, for SIM, AKA and AKA'.

use std::collections::HashMap;

use crate::crypto::bytes::testhex::{arr, vec};
use crate::crypto::milenage::Milenage;
use crate::crypto::rfc4186_vectors as a;
use crate::method::ServerMethod;
use crate::method::{Answer, Authenticated, FailureReason, PeerMemory, Query, Triplet, Verdict};
use crate::packet::{Code, EapType, Packet};
use crate::peer::{PeerEvent, PeerSession};
use crate::server::{ServerSession, Step};
use crate::sim_aka::attributes::{at, client_error, subtype, AttributeWriter, Message};
use crate::sim_aka::auc::{generate_triplets, generate_vector, sqn_from_auts, DEFAULT_AMF};
use crate::sim_aka::gsm::GsmSim;
use crate::sim_aka::identity::{classify, prefix, user_part, IdentityKind};
use crate::sim_aka::peer::{Identities, SimAkaPeer, SimAkaPeerConfig, Subscriber};
use crate::sim_aka::server::{SimAkaServer, SimAkaServerConfig};
use crate::sim_aka::sqn::{Sqn, SqnWindow};
use crate::sim_aka::usim::Usim;
use crate::sim_aka::{Flavor, ReauthState};

const K: [u8; 16] = [0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc];
const OPC: [u8; 16] = [0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf];
const REALM: &str = "issuer.example";
const CARD: &str = "c0ffee";
const KINDS: [EapType; 3] = [EapType::SIM, EapType::AKA, EapType::AKA_PRIME];

/// The issuer's side of the card: K/OPc, SQN_HE, and the identities it
/// handed out (each re-authentication identity works once).
struct Issuer {
    milenage: Milenage,
    sqn: Sqn,
    vectors: u32,
    blocked: bool,
    pseudonyms: HashMap<String, String>,
    reauth: HashMap<String, ReauthState>,
    issued: u32,
}

impl Issuer {
    fn new() -> Self {
        Self {
            milenage: Milenage::new(&K, &OPC),
            sqn: Sqn::new(0),
            vectors: 0,
            blocked: false,
            pseudonyms: HashMap::new(),
            reauth: HashMap::new(),
            issued: 0,
        }
    }

    fn answer(&mut self, q: Query) -> Answer {
        match q {
            Query::AkaVector { require_active, .. } if require_active && self.blocked => Answer::BlockedCard,
            Query::AkaVector { card_id, .. } | Query::AkaResync { card_id, .. } if card_id != CARD => {
                Answer::UnknownCard
            }
            Query::AkaVector { .. } => self.vector(),
            Query::AkaResync { rand, auts, .. } => match sqn_from_auts(&self.milenage, &rand, &auts) {
                Some(ms) => {
                    self.sqn = self.sqn.resynchronised(ms);
                    self.vector()
                }
                None => Answer::ResyncRejected,
            },
            Query::SimTriplets { require_active, .. } if require_active && self.blocked => Answer::BlockedCard,
            Query::SimTriplets { card_id, .. } if card_id != CARD => Answer::UnknownCard,
            Query::SimTriplets { .. } => Answer::SimTriplets(generate_triplets(&self.milenage, 3)),
            Query::Pseudonym { identity, .. } => match self.pseudonyms.get(user_part(&identity)) {
                Some(card_id) => Answer::Pseudonym { card_id: card_id.clone() },
                None => Answer::UnknownCard,
            },
            Query::Reauth { identity, .. } => match self.reauth.remove(&identity) {
                Some(state) => Answer::Reauth(state),
                None => Answer::UnknownCard,
            },
            Query::NextIdentities { method, card_id, reauth } => {
                self.issued += 1;
                let p = format!("{}p{}", prefix(method, IdentityKind::Pseudonym).unwrap(), self.issued);
                self.pseudonyms.insert(p.clone(), card_id);
                let reauth_id = reauth.map(|state| {
                    let r = format!("{}r{}@{REALM}", prefix(method, IdentityKind::Reauth).unwrap(), self.issued);
                    self.reauth.insert(r.clone(), state);
                    r
                });
                Answer::NextIdentities { pseudonym: Some(p), reauth_id }
            }
            other => panic!("unexpected query {other:?}"),
        }
    }

    fn vector(&mut self) -> Answer {
        self.sqn = self.sqn.next();
        self.vectors += 1;
        let rand = [self.vectors as u8; 16];
        Answer::AkaVector(generate_vector(&self.milenage, self.sqn, DEFAULT_AMF, rand))
    }
}

fn flavor(kind: EapType) -> Flavor {
    Flavor::of(kind, REALM).unwrap()
}

fn identity(kind: EapType) -> String {
    format!("{}{CARD}@{REALM}", prefix(kind, IdentityKind::Permanent).unwrap())
}

fn subscriber(kind: EapType, k: [u8; 16], window: SqnWindow) -> Subscriber {
    if kind == EapType::SIM {
        Subscriber::Sim(GsmSim::new(&k, &OPC))
    } else {
        Subscriber::Usim(Usim::new(&k, &OPC, window))
    }
}

/// A card's peer session and the identity it opens with.
fn card_with(
    kind: EapType,
    k: [u8; 16],
    window: SqnWindow,
    confirmation: Option<Vec<u8>>,
    ids: Identities,
) -> PeerSession {
    let config = SimAkaPeerConfig {
        flavor: flavor(kind),
        identity: identity(kind),
        result_ind: true,
        confirmation,
        identities: ids,
    };
    let peer = SimAkaPeer::new(config, subscriber(kind, k, window));
    PeerSession::new(peer.eap_identity().to_string(), vec![Box::new(peer)])
}

fn card(kind: EapType, k: [u8; 16], window: SqnWindow, confirmation: Option<Vec<u8>>) -> PeerSession {
    card_with(kind, k, window, confirmation, Identities::default())
}

fn identities_of(peer: &PeerSession) -> Identities {
    peer.remember()
        .into_iter()
        .find_map(|m| match m {
            PeerMemory::SimAkaIdentities(ids) => Some(ids),
            _ => None,
        })
        .expect("a SIM/AKA peer reports its identities")
}

struct Outcome {
    server: Step,
    peer: PeerEvent,
    authenticated: Option<Authenticated>,
    /// Every identity the peer named, in order (what a terminal sees).
    named: Vec<String>,
    /// The subtypes of the server's requests, in order.
    requests: Vec<u8>,
}

fn server_config(kind: EapType, privacy: bool) -> SimAkaServerConfig {
    let mut config = SimAkaServerConfig::new(flavor(kind));
    config.privacy = privacy;
    config.fast_reauth_limit = if privacy { 3 } else { 0 };
    config
}

/// Runs a conversation with the card's own EAP-Response/Identity.
fn converse(
    config: SimAkaServerConfig,
    peer: &mut PeerSession,
    issuer: &mut Issuer,
    verdict: Verdict,
    tamper: impl FnMut(&mut Vec<u8>),
) -> Outcome {
    let first = peer.identity_response(0);
    converse_from(config, first, peer, issuer, verdict, tamper)
}

/// Runs a conversation that starts with `first` as the EAP-Response/Identity.
fn converse_from(
    config: SimAkaServerConfig,
    first: Vec<u8>,
    peer: &mut PeerSession,
    issuer: &mut Issuer,
    verdict: Verdict,
    mut tamper: impl FnMut(&mut Vec<u8>),
) -> Outcome {
    let mut server = ServerSession::new(10);
    let mut authenticated = None;
    let mut named = vec![String::from_utf8_lossy(&Packet::decode(&first).unwrap().data).into_owned()];
    let mut requests = Vec::new();
    let mut step = server.handle(&first);
    loop {
        step = match step {
            Step::NeedMethods { identity } => {
                server.offer_methods(vec![Box::new(SimAkaServer::new(config.clone(), &identity))])
            }
            Step::Query(q) => server.answer(issuer.answer(q)),
            Step::Authenticated(a) => {
                authenticated = Some(a);
                server.conclude(verdict.clone())
            }
            Step::Send(request) => {
                requests.push(request[5]);
                match peer.handle(&request) {
                    PeerEvent::Send(mut response) => {
                        if let Some(id) = Message::decode(&response, "test")
                            .ok()
                            .and_then(|m| m.get(at::IDENTITY).and_then(|a| a.with_actual_length()).map(<[u8]>::to_vec))
                        {
                            named.push(String::from_utf8_lossy(&id).into_owned());
                        }
                        tamper(&mut response);
                        server.handle(&response)
                    }
                    other => panic!("peer stopped mid-conversation: {other:?}"),
                }
            }
            Step::Accept { ref packet, .. } | Step::Reject { ref packet, .. } => {
                let p = peer.handle(packet);
                return Outcome { server: step, peer: p, authenticated, named, requests };
            }
            Step::Discard(why) => panic!("server discarded: {why}"),
        }
    }
}

fn challenge_subtype(kind: EapType) -> u8 {
    if kind == EapType::SIM {
        subtype::SIM_CHALLENGE
    } else {
        subtype::AKA_CHALLENGE
    }
}

#[test]
fn full_authentication_agrees_on_keys() {
    for kind in KINDS {
        for privacy in [false, true] {
            let mut issuer = Issuer::new();
            let mut peer = card(kind, K, SqnWindow::default(), None);
            let out = converse(server_config(kind, privacy), &mut peer, &mut issuer, Verdict::accept(), |_| {});
            let Step::Accept { keys, method, .. } = out.server else { panic!("{kind:?}: {:?}", out.server) };
            assert_eq!(method, kind);
            let PeerEvent::Success { keys: peer_keys, .. } = out.peer else { panic!("{:?}", out.peer) };
            assert_eq!(keys, peer_keys);
            let a = out.authenticated.unwrap();
            assert_eq!((a.identity.as_str(), a.card_id.as_str()), (identity(kind).as_str(), CARD));
        }
    }
}

#[test]
fn keys_differ_between_the_methods() {
    let run = |kind| {
        let mut issuer = Issuer::new();
        let mut peer = card(kind, K, SqnWindow::default(), None);
        match converse(server_config(kind, false), &mut peer, &mut issuer, Verdict::accept(), |_| {}).server {
            Step::Accept { keys, .. } => keys.msk,
            other => panic!("{other:?}"),
        }
    };
    let msks: Vec<[u8; 64]> = KINDS.iter().map(|&k| run(k)).collect();
    assert!(msks[0] != msks[1] && msks[1] != msks[2] && msks[0] != msks[2]);
}

#[test]
fn wrong_k_fails_both_ways() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let mut peer = card(kind, [0x11; 16], SqnWindow::default(), None);
        let out = converse(server_config(kind, false), &mut peer, &mut issuer, Verdict::accept(), |_| {});
        // AKA: the card cannot verify AUTN and rejects the issuer. SIM: the
        // card cannot verify AT_MAC (it has other Kc) and says so.
        let want_reason = if kind == EapType::SIM {
            FailureReason::ClientError(client_error::UNABLE_TO_PROCESS)
        } else {
            FailureReason::RejectedByPeer
        };
        assert!(matches!(&out.server, Step::Reject { reason, .. } if *reason == want_reason), "{:?}", out.server);
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
        assert!(out.authenticated.is_none());
    }
}

#[test]
fn card_ahead_resynchronises_then_succeeds() {
    for kind in [EapType::AKA, EapType::AKA_PRIME] {
        let mut issuer = Issuer::new();
        let ahead = Sqn::new(0x1000);
        let mut peer = card(kind, K, SqnWindow::starting_at(ahead), None);
        let out = converse(server_config(kind, true), &mut peer, &mut issuer, Verdict::accept(), |_| {});
        assert!(matches!(out.server, Step::Accept { .. }), "{:?}", out.server);
        assert!(issuer.sqn.seq() > ahead.seq(), "issuer moved past the card");
        assert_eq!(issuer.vectors, 2);
    }
}

#[test]
fn a_card_that_keeps_failing_sync_is_refused() {
    let mut issuer = Issuer::new();
    let kind = EapType::AKA;
    let mut peer = card(kind, K, SqnWindow::starting_at(Sqn::new(0x1000)), None);
    // Forge AUTS so the issuer cannot verify it.
    let out = converse(server_config(kind, false), &mut peer, &mut issuer, Verdict::accept(), |r| {
        if r.get(5) == Some(&subtype::AKA_SYNCHRONIZATION_FAILURE) {
            let n = r.len();
            r[n - 1] ^= 0xff;
        }
    });
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed("AUTS"), .. }));
}

#[test]
fn tampered_mac_fails() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let mut peer = card(kind, K, SqnWindow::default(), None);
        let out = converse(server_config(kind, false), &mut peer, &mut issuer, Verdict::accept(), |r| {
            if r.get(5) == Some(&challenge_subtype(kind)) {
                let n = r.len();
                r[n - 1] ^= 1;
            }
        });
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed(_), .. }));
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
    }
}

#[test]
fn tampered_res_fails() {
    let mut issuer = Issuer::new();
    let kind = EapType::AKA;
    let mut peer = card(kind, K, SqnWindow::default(), None);
    let out = converse(server_config(kind, false), &mut peer, &mut issuer, Verdict::accept(), |r| {
        if r.get(5) == Some(&subtype::AKA_CHALLENGE) {
            // AT_RES is the first attribute: flip a RES octet (after type, length, bit count).
            r[12] ^= 1;
        }
    });
    // Changing RES breaks AT_MAC first; either way the server must refuse.
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed(_), .. }));
}

#[test]
fn an_unknown_name_is_asked_for_an_identity() {
    for kind in KINDS {
        for privacy in [false, true] {
            let mut issuer = Issuer::new();
            let mut peer = card(kind, K, SqnWindow::default(), None);
            let anonymous =
                Packet::new(Code::Response, 0, EapType::IDENTITY, format!("anonymous@{REALM}").into_bytes());
            let out = converse_from(
                server_config(kind, privacy),
                anonymous.encode().unwrap(),
                &mut peer,
                &mut issuer,
                Verdict::accept(),
                |_| {},
            );
            assert!(matches!(out.server, Step::Accept { .. }), "{kind:?}: {:?}", out.server);
            assert_eq!(out.authenticated.unwrap().identity, identity(kind));
        }
    }
}

#[test]
fn tampered_identity_round_breaks_the_checkcode() {
    let kind = EapType::AKA_PRIME;
    let mut issuer = Issuer::new();
    let mut peer = card(kind, K, SqnWindow::default(), None);
    let anonymous = Packet::new(Code::Response, 0, EapType::IDENTITY, format!("anonymous@{REALM}").into_bytes());
    // A relay rewrites the padding of AT_IDENTITY: the server hashes what it
    // received, the card what it sent, so AT_CHECKCODE no longer matches.
    let out = converse_from(
        server_config(kind, false),
        anonymous.encode().unwrap(),
        &mut peer,
        &mut issuer,
        Verdict::accept(),
        |r| {
            if r.get(5) == Some(&subtype::AKA_IDENTITY) {
                let n = r.len();
                r[n - 1] ^= 0x01;
            }
        },
    );
    assert!(matches!(out.server, Step::Reject { .. }), "{:?}", out.server);
}

#[test]
fn payment_confirmation_and_result_cross_the_protected_channel() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let details = b"canonical payment details".to_vec();
        let mut peer = card(kind, K, SqnWindow::default(), Some(details.clone()));
        let verdict = Verdict { approved: true, result: Some(b"A1B2C3".to_vec()) };
        let out = converse(server_config(kind, true), &mut peer, &mut issuer, verdict, |_| {});
        assert_eq!(out.authenticated.unwrap().confirmation, Some(details));
        let PeerEvent::Success { result, .. } = out.peer else { panic!("{:?}", out.peer) };
        assert_eq!(result, Some(b"A1B2C3".to_vec()));
    }
}

#[test]
fn a_decline_reaches_the_card_and_ends_in_failure() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let mut peer = card(kind, K, SqnWindow::default(), Some(b"d".to_vec()));
        let verdict = Verdict { approved: false, result: Some(b"51".to_vec()) };
        let out = converse(server_config(kind, false), &mut peer, &mut issuer, verdict, |_| {});
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::Declined, .. }));
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
        assert_eq!(peer.result(), Some(b"51".to_vec()));
    }
}

#[test]
fn success_without_authentication_is_ignored_by_the_card() {
    for kind in KINDS {
        let mut peer = card(kind, K, SqnWindow::default(), None);
        let _ = peer.identity_response(0);
        let ev = peer.handle(&Packet::success(0).encode().unwrap());
        assert!(matches!(ev, PeerEvent::Ignore(_)));
    }
}

/// Ten payments of one card: the first names the permanent identity, every
/// later one a re-authentication identity or a pseudonym, none twice; full
/// authentications and fast re-authentications alternate as the limit says,
/// and each one's keys agree and its confirmation and result get through.
#[test]
fn ten_payments_name_no_identity_twice() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let mut ids = Identities::default();
        let mut window = SqnWindow::default();
        let mut seen: Vec<String> = Vec::new();
        let mut reauths = 0;
        for n in 0..10 {
            let details = format!("payment {n}").into_bytes();
            let mut peer = card_with(kind, K, window.clone(), Some(details.clone()), ids.clone());
            let verdict = Verdict { approved: true, result: Some(format!("R{n}").into_bytes()) };
            let out = converse(server_config(kind, true), &mut peer, &mut issuer, verdict, |_| {});
            let Step::Accept { keys, .. } = out.server else { panic!("{kind:?} payment {n}: {:?}", out.server) };
            let PeerEvent::Success { keys: card_keys, result } = out.peer else { panic!("{:?}", out.peer) };
            assert_eq!(keys, card_keys);
            assert_eq!(result, Some(format!("R{n}").into_bytes()));
            let a = out.authenticated.unwrap();
            assert_eq!((a.card_id.as_str(), a.confirmation), (CARD, Some(details)));
            if out.requests.contains(&subtype::REAUTHENTICATION) {
                reauths += 1;
                assert_eq!(classify(kind, &out.named[0]), IdentityKind::Reauth);
            }
            for name in out.named {
                assert!(!seen.contains(&name), "{kind:?}: {name} named twice");
                if n > 0 {
                    assert_ne!(classify(kind, &name), IdentityKind::Permanent, "{kind:?} payment {n} named {name}");
                }
                seen.push(name);
            }
            ids = identities_of(&peer);
            if let Some(m) = peer.remember().into_iter().find_map(|m| match m {
                PeerMemory::SqnWindow(w) => Some(w),
                _ => None,
            }) {
                window = m;
            }
        }
        // A limit of 3: full, 3 re-authentications, full, 3, full, 1.
        assert_eq!(reauths, 7, "{kind:?}");
    }
}

/// Runs one approved conversation and returns what the card holds after it.
fn pay_once(kind: EapType, issuer: &mut Issuer, ids: Identities) -> (Outcome, Identities) {
    let mut peer = card_with(kind, K, SqnWindow::default(), None, ids);
    let out = converse(server_config(kind, true), &mut peer, issuer, Verdict::accept(), |_| {});
    let ids = identities_of(&peer);
    (out, ids)
}

#[test]
fn a_replayed_reauth_identity_falls_back_to_a_full_authentication() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let (_, after_full) = pay_once(kind, &mut issuer, Identities::default());
        let (out, _) = pay_once(kind, &mut issuer, after_full.clone());
        assert!(out.requests.contains(&subtype::REAUTHENTICATION), "{kind:?}: {:?}", out.requests);
        // The same re-authentication identity again: used up. The server
        // asks for a full-authentication identity, the card has none left
        // but its permanent one, and a full authentication follows.
        let (out, _) = pay_once(kind, &mut issuer, after_full);
        assert!(matches!(out.server, Step::Accept { .. }), "{:?}", out.server);
        assert!(!out.requests.contains(&subtype::REAUTHENTICATION), "{kind:?}: {:?}", out.requests);
        assert!(out.requests.contains(&challenge_subtype(kind)));
        // Asked for a full-authentication identity, the card names its
        // pseudonym (never a re-authentication identity again).
        assert_eq!(classify(kind, &out.named[1]), IdentityKind::Pseudonym, "{:?}", out.named);
    }
}

#[test]
fn a_forged_pseudonym_is_asked_for_the_permanent_identity() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let forged = format!("{}forged", prefix(kind, IdentityKind::Pseudonym).unwrap());
        let ids = Identities { pseudonym: Some(forged), reauth: None };
        let (out, _) = pay_once(kind, &mut issuer, ids);
        assert!(matches!(out.server, Step::Accept { .. }), "{:?}", out.server);
        assert_eq!(out.named.len(), 2, "{:?}", out.named);
        assert_eq!(out.named[1], identity(kind));
    }
}

#[test]
fn a_pseudonym_of_a_blocked_card_is_not_enough() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let (_, ids) = pay_once(kind, &mut issuer, Identities::default());
        issuer.blocked = true;
        let ids = Identities { reauth: None, ..ids };
        let (out, _) = pay_once(kind, &mut issuer, ids);
        // The permanent identity is asked for; a blocked card then
        // authenticates and its payment is declined by the caller (here the
        // test issuer still answers, so the method succeeds).
        assert_eq!(out.named.last(), Some(&identity(kind)), "{kind:?}: {:?}", out.named);
    }
}

#[test]
fn a_counter_the_card_has_seen_forces_a_full_authentication() {
    for kind in KINDS {
        let mut issuer = Issuer::new();
        let (_, mut ids) = pay_once(kind, &mut issuer, Identities::default());
        // The card has already seen counter 5 with these keys; the issuer
        // will send 1.
        ids.reauth.as_mut().unwrap().counter = 5;
        let (out, _) = pay_once(kind, &mut issuer, ids);
        assert!(matches!(out.server, Step::Accept { .. }), "{:?}", out.server);
        let reauth_at = out.requests.iter().position(|&s| s == subtype::REAUTHENTICATION).expect("a re-authentication");
        assert!(out.requests[reauth_at..].contains(&challenge_subtype(kind)), "then a full one: {:?}", out.requests);
    }
}

/// A re-authentication after one full payment, its response changed by `tamper`.
fn tampered_reauthentication(kind: EapType, mut tamper: impl FnMut(&mut Vec<u8>)) -> Outcome {
    let mut issuer = Issuer::new();
    let (_, ids) = pay_once(kind, &mut issuer, Identities::default());
    let mut peer = card_with(kind, K, SqnWindow::default(), None, ids);
    converse(server_config(kind, true), &mut peer, &mut issuer, Verdict::accept(), |r| {
        if r.get(5) == Some(&subtype::REAUTHENTICATION) {
            tamper(r);
        }
    })
}

#[test]
fn a_full_authentication_answer_to_a_reauthentication_fails() {
    for kind in KINDS {
        let out = tampered_reauthentication(kind, |r| r[5] = challenge_subtype(kind));
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::Protocol(_), .. }), "{:?}", out.server);
        assert!(out.authenticated.is_none());
    }
}

#[test]
fn a_tampered_reauthentication_response_fails() {
    for kind in KINDS {
        let out = tampered_reauthentication(kind, |r| {
            let n = r.len();
            r[n - 1] ^= 1;
        });
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::AuthenticationFailed(_), .. }));
        assert!(out.authenticated.is_none());
    }
}

/// A server method run by hand: start it for `eap_identity`, then feed it
/// a SIM-Start response built from `attributes`.
fn sim_server_after_start(attributes: AttributeWriter) -> crate::method::MethodStep {
    let mut server = SimAkaServer::new(server_config(EapType::SIM, false), &identity(EapType::SIM));
    let crate::method::MethodStep::Send(start) = server.start(1) else { panic!("no SIM-Start") };
    assert_eq!(start[5], subtype::SIM_START);
    let (response, _) = attributes.into_packet(Code::Response, 1, EapType::SIM, subtype::SIM_START);
    server.on_response(2, &response)
}

#[test]
fn sim_start_answers_the_server_refuses() {
    use crate::method::MethodStep;
    let good_nonce = [7u8; 16];
    // A version the server did not offer.
    let mut w = AttributeWriter::new();
    w.reserved(at::NONCE_MT, &good_nonce).u16(at::SELECTED_VERSION, 2);
    assert!(matches!(sim_server_after_start(w), MethodStep::Failure(FailureReason::Protocol(_))));
    // No NONCE_MT.
    let mut w = AttributeWriter::new();
    w.u16(at::SELECTED_VERSION, 1);
    assert!(matches!(sim_server_after_start(w), MethodStep::Failure(FailureReason::Protocol(_))));
    // NONCE_MT of the wrong length.
    let mut w = AttributeWriter::new();
    w.reserved(at::NONCE_MT, &[7u8; 12]).u16(at::SELECTED_VERSION, 1);
    assert!(matches!(sim_server_after_start(w), MethodStep::Failure(FailureReason::Protocol(_))));
    // The right answer asks for triplets.
    let mut w = AttributeWriter::new();
    w.reserved(at::NONCE_MT, &good_nonce).u16(at::SELECTED_VERSION, 1);
    assert!(matches!(sim_server_after_start(w), MethodStep::Query(Query::SimTriplets { .. })));
}

/// A SIM peer that has answered a SIM-Start offering `versions`.
fn sim_peer_started(versions: &[u8]) -> (SimAkaPeer, Vec<u8>) {
    let config = SimAkaPeerConfig {
        flavor: Flavor::Sim,
        identity: identity(EapType::SIM),
        result_ind: true,
        confirmation: None,
        identities: Identities::default(),
    };
    let mut peer = SimAkaPeer::new(config, Subscriber::Sim(GsmSim::new(&K, &OPC)));
    let mut w = AttributeWriter::new();
    w.with_actual_length(at::VERSION_LIST, versions);
    let (start, _) = w.into_packet(Code::Request, 1, EapType::SIM, subtype::SIM_START);
    let crate::method::PeerStep::Send(response) = crate::method::PeerMethod::on_request(&mut peer, &start) else {
        panic!()
    };
    (peer, response)
}

fn client_error_code(response: &[u8]) -> Option<u16> {
    let m = Message::decode(response, "test").unwrap();
    (m.subtype == subtype::CLIENT_ERROR).then(|| m.get(at::CLIENT_ERROR_CODE).and_then(|a| a.u16())).flatten()
}

#[test]
fn the_sim_card_refuses_bad_starts_and_challenges() {
    use crate::method::{PeerMethod, PeerStep};
    // Only version 2 offered: Client-Error "unsupported version".
    let (_, response) = sim_peer_started(&[0, 2]);
    assert_eq!(client_error_code(&response), Some(client_error::UNSUPPORTED_VERSION));
    let challenge = |rands: &[[u8; 16]]| {
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &rands.concat()).reserved(at::MAC, &[0; 16]);
        w.into_packet(Code::Request, 2, EapType::SIM, subtype::SIM_CHALLENGE).0
    };
    // One RAND: "insufficient number of challenges".
    let (mut peer, response) = sim_peer_started(&[0, 1]);
    assert_eq!(client_error_code(&response), None);
    let PeerStep::Send(r) = peer.on_request(&challenge(&[[1; 16]])) else { panic!() };
    assert_eq!(client_error_code(&r), Some(client_error::INSUFFICIENT_CHALLENGES));
    // Two equal RANDs: "RANDs are not fresh".
    let (mut peer, _) = sim_peer_started(&[0, 1]);
    let PeerStep::Send(r) = peer.on_request(&challenge(&[[1; 16], [2; 16], [1; 16]])) else { panic!() };
    assert_eq!(client_error_code(&r), Some(client_error::RANDS_NOT_FRESH));
}

/// RFC 4186 Appendix A, the whole exchange: the server, fed the peer's
/// Start response and the published triplets, derives the published keys
/// (its challenge verifies under the published K_aut and decrypts under the
/// published K_encr to the published identities), accepts the published
/// response, and exports the published MSK; the peer, fed the published
/// challenge, learns the published identities and answers with exactly the
/// published response.
#[test]
fn rfc4186_appendix_a() {
    use crate::method::{MethodStep, PeerMethod, PeerStep};
    let identity = String::from_utf8(a::IDENTITY.to_vec()).unwrap();
    let triplets: Vec<Triplet> =
        (0..3).map(|i| Triplet { rand: arr(a::RANDS[i]), sres: arr(a::SRES[i]), kc: arr(a::KC[i]) }).collect();
    let pseudonym = "w8w49PexCazWJ&xCIARmxuMKht5S1sxRDqXSEFBEg3DcZP9cIxTe5J4OyIwNGVzxeJOU1G";
    let reauth_id = "Y24fNSrz8BP274jOJaF17WfxI8YO7QX00pMXk9XMMVOw7broaNhTczuFq53aEpOkk3L0dm@eapsim.foo";

    // Server.
    let mut config = SimAkaServerConfig::new(Flavor::Sim);
    config.result_ind = false;
    config.privacy = true;
    config.fast_reauth_limit = 1;
    let mut server = SimAkaServer::new(config, &identity);
    assert!(matches!(server.start(1), MethodStep::Send(_)));
    let mut w = AttributeWriter::new();
    w.reserved(at::NONCE_MT, &vec(a::NONCE_MT)).u16(at::SELECTED_VERSION, 1);
    let (start_response, _) = w.into_packet(Code::Response, 1, EapType::SIM, subtype::SIM_START);
    let MethodStep::Query(Query::SimTriplets { card_id, .. }) = server.on_response(2, &start_response) else {
        panic!()
    };
    assert_eq!(card_id, "244070100000001");
    let MethodStep::Query(Query::NextIdentities { reauth: Some(_), .. }) =
        server.on_answer(2, Answer::SimTriplets(triplets.clone()))
    else {
        panic!("no identities asked for")
    };
    let next = Answer::NextIdentities { pseudonym: Some(pseudonym.into()), reauth_id: Some(reauth_id.into()) };
    let MethodStep::Send(challenge) = server.on_answer(2, next) else { panic!() };
    let m = Message::decode(&challenge, "SIM").unwrap();
    let keys = crate::sim_aka::SessionKeys::from_mk(arr(a::MK));
    assert!(keys.k_aut.verify(&challenge, &m, &vec(a::NONCE_MT)), "the challenge is MACed with the published K_aut");
    assert_eq!(keys.k_encr, arr::<16>(a::K_ENCR));
    let inner = keys.decrypt(&m, "SIM").unwrap();
    let published = crate::sim_aka::attributes::decode_encrypted(&a::encr_plaintext(), "SIM").unwrap();
    assert_eq!(inner, published, "AT_ENCR_DATA holds the published identities");
    let mut response = vec(a::CHALLENGE_RESPONSE_ZEROED_MAC);
    response[1] = challenge[1];
    let mac = crate::crypto::mac::sim_aka_mac(
        &keys_k_aut(&keys),
        &response,
        &triplets.iter().flat_map(|t| t.sres).collect::<Vec<u8>>(),
    );
    response[12..28].copy_from_slice(&mac);
    let MethodStep::Authenticated(auth) = server.on_response(3, &response) else {
        panic!("the response is not accepted")
    };
    assert_eq!(auth.card_id, "244070100000001");
    let MethodStep::Success(exported) = server.conclude(3, Verdict::accept()) else { panic!() };
    assert_eq!((exported.msk, exported.emsk), (arr(a::MSK), arr(a::EMSK)));

    // Peer.
    let config = SimAkaPeerConfig {
        flavor: Flavor::Sim,
        identity: identity.clone(),
        result_ind: false,
        confirmation: None,
        identities: Identities::default(),
    };
    let mut peer = SimAkaPeer::new(config, Subscriber::Triplets(triplets));
    let mut w = AttributeWriter::new();
    w.with_actual_length(at::VERSION_LIST, &vec(a::VERSION_LIST));
    w.reserved(at::PERMANENT_ID_REQ, &[]);
    let (start, _) = w.into_packet(Code::Request, 1, EapType::SIM, subtype::SIM_START);
    assert!(matches!(peer.on_request(&start), PeerStep::Send(_)));
    // The peer picked its own NONCE_MT: put the published one in its place.
    peer.set_nonce_mt_for_test(arr(a::NONCE_MT));
    let mut published_challenge = a::challenge_request_zeroed_mac();
    let n = published_challenge.len();
    published_challenge[n - 16..].copy_from_slice(&vec(a::CHALLENGE_REQUEST_MAC));
    let PeerStep::Send(answer) = peer.on_request(&published_challenge) else { panic!() };
    let mut want = vec(a::CHALLENGE_RESPONSE_ZEROED_MAC);
    want[12..28].copy_from_slice(&vec(a::CHALLENGE_RESPONSE_MAC));
    assert_eq!(answer, want, "the published EAP-Response/SIM/Challenge");
    let ids = match peer.remember().remove(0) {
        PeerMemory::SimAkaIdentities(ids) => ids,
        other => panic!("{other:?}"),
    };
    assert_eq!(ids.pseudonym.as_deref(), Some(pseudonym));
    assert_eq!(ids.reauth.map(|r| r.identity).as_deref(), Some(reauth_id));
    assert_eq!(peer.keys().map(|k| k.msk), Some(arr(a::MSK)));
}

fn keys_k_aut(keys: &crate::sim_aka::SessionKeys) -> [u8; 16] {
    match &keys.k_aut {
        crate::sim_aka::MacKey::Sha1(k) => *k,
        crate::sim_aka::MacKey::Sha256(_) => panic!("SIM keys MAC with SHA-1"),
    }
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
    let mut issuer = Issuer::new();
    let config = SimAkaPeerConfig {
        flavor: Flavor::AkaPrime { network_name: "other.example".into() },
        identity: identity(kind),
        result_ind: true,
        confirmation: None,
        identities: Identities::default(),
    };
    let peer = SimAkaPeer::new(config, Subscriber::Usim(Usim::new(&K, &OPC, SqnWindow::default())));
    let mut peer = PeerSession::new(identity(kind), vec![Box::new(peer)]);
    let out = converse(server_config(kind, false), &mut peer, &mut issuer, Verdict::accept(), |_| {});
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::RejectedByPeer, .. }));
}

#[test]
fn peer_naks_a_method_it_lacks() {
    let mut peer = card(EapType::AKA, K, SqnWindow::default(), None);
    let req = Packet::new(Code::Request, 4, EapType::TLS, vec![0x20]).encode().unwrap();
    let PeerEvent::Send(r) = peer.handle(&req) else { panic!() };
    let nak = Packet::decode(&r).unwrap();
    assert_eq!(nak.kind, Some(EapType::NAK));
    assert_eq!(nak.nak_types(), vec![EapType::AKA]);
}

#[test]
fn server_switches_method_on_nak() {
    let mut server = ServerSession::new(1);
    let _ = server.handle(
        &Packet::new(Code::Response, 0, EapType::IDENTITY, identity(EapType::AKA).into_bytes()).encode().unwrap(),
    );
    let aka_prime = SimAkaServer::new(server_config(EapType::AKA_PRIME, false), &format!("anon@{REALM}"));
    let aka = SimAkaServer::new(server_config(EapType::AKA, false), &identity(EapType::AKA));
    let Step::Send(req) = server.offer_methods(vec![Box::new(aka_prime), Box::new(aka)]) else { panic!() };
    let mut peer = card(EapType::AKA, K, SqnWindow::default(), None);
    let PeerEvent::Send(nak) = peer.handle(&req) else { panic!() };
    // The Nak for AKA' names AKA: the session moves to it and asks for a vector.
    assert!(matches!(server.handle(&nak), Step::Query(Query::AkaVector { .. })));
}

#[test]
fn stale_identifier_is_discarded() {
    let mut server = ServerSession::new(1);
    let _ = server.handle(&Packet::new(Code::Response, 0, EapType::IDENTITY, b"anon@x".to_vec()).encode().unwrap());
    let aka = SimAkaServer::new(server_config(EapType::AKA, false), "anon@x");
    let Step::Send(req) = server.offer_methods(vec![Box::new(aka)]) else { panic!() };
    let mut resp = Packet::decode(&req).unwrap();
    resp.code = Code::Response;
    resp.identifier = req[1].wrapping_add(7);
    assert!(matches!(server.handle(&resp.encode().unwrap()), Step::Discard(_)));
}
