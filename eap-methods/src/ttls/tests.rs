//! EAP-TTLS server and peer talking to each other in memory through
//! [`ServerSession`] and [`PeerSession`]: inner PAP and inner AKA/AKA', the
//! payment confirmation and result, TLS 1.2 and 1.3, fragmentation, and
//! hostile input.

use std::sync::OnceLock;

use aaa_proto::dictionary::eapay;
use aaa_proto::payment::{PaymentDetails, PaymentOutcome, PaymentResult};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Builder, X509NameBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::crypto::milenage::Milenage;
use crate::method::{
    Answer, Authenticated, FailureReason, MethodStep, PeerMemory, PeerMethod, PeerStep, Pin, Query, ServerMethod,
    Verdict,
};
use crate::packet::{Code, EapType, Packet};
use crate::peer::{PeerEvent, PeerSession};
use crate::server::{ServerSession, Step};
use crate::sim_aka::auc::{generate_vector, sqn_from_auts, DEFAULT_AMF};
use crate::sim_aka::peer::{Identities, SimAkaPeer, SimAkaPeerConfig, Subscriber};
use crate::sim_aka::server::SimAkaServerConfig;
use crate::sim_aka::sqn::{Sqn, SqnWindow};
use crate::sim_aka::usim::Usim;
use crate::sim_aka::Flavor;
use crate::tls::config::{ClientAuth, PaymentToSign, TlsServerConfig, TlsServerOptions, TlsVersion};
use crate::tls::confirmation;
use crate::tls::fragment::{FLAG_LENGTH, FLAG_MORE, FLAG_START};
use crate::ttls::avps::{PeerAvps, ServerAvps, TunnelConfirmation};
use crate::ttls::inner::{InnerOut, InnerServer};

const REALM: &str = "issuer.example";
const CARD: &str = "c0ffee";
const PIN: &str = "2468";
const K: [u8; 16] = [0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc];
const OPC: [u8; 16] = [0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf];
const BOTH: [TlsVersion; 2] = [TlsVersion::V1_2, TlsVersion::V1_3];

struct Pki {
    server_cert_pem: Vec<u8>,
    server_key_pem: Vec<u8>,
    server_pin: [u8; 32],
    card_key_pem: Vec<u8>,
    card_spki: Vec<u8>,
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A self-signed server certificate (the card trusts it by pin, not by CA)
/// and a card key pair.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let key = p256();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "eapay ttls test server").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let card = p256();
        Pki {
            server_cert_pem: cert.to_pem().unwrap(),
            server_key_pem: key.private_key_to_pem_pkcs8().unwrap(),
            server_pin: openssl::sha::sha256(&key.public_key_to_der().unwrap()),
            card_key_pem: card.private_key_to_pem_pkcs8().unwrap(),
            card_spki: card.public_key_to_der().unwrap(),
        }
    })
}

fn server_options(min: TlsVersion, max: TlsVersion) -> TlsServerOptions {
    TlsServerOptions {
        certificate_chain_pem: pki().server_cert_pem.clone(),
        private_key_pem: pki().server_key_pem.clone(),
        min_version: min,
        max_version: max,
        ..TlsServerOptions::default()
    }
}

fn server_config(version: TlsVersion) -> TlsServerConfig {
    TlsServerConfig::with_client_auth(&server_options(version, version), ClientAuth::None).unwrap()
}

fn details() -> PaymentDetails {
    PaymentDetails {
        transaction_id: "T-77".into(),
        merchant_id: "M-42".into(),
        amount: 1250,
        currency: 978,
        installments: 0,
        terminal_nonce: *b"0123456789abcdef",
        terminal_time_ms: 1_700_000_000_000,
    }
}

fn approved() -> Vec<u8> {
    PaymentResult {
        transaction_id: "T-77".into(),
        outcome: PaymentOutcome::Approved { approval_code: "A1B2C3".into(), approved_amount: 1250 },
    }
    .encode()
}

fn declined(code: u32) -> Vec<u8> {
    PaymentResult { transaction_id: "T-77".into(), outcome: PaymentOutcome::Declined { code } }.encode()
}

fn payment() -> PaymentToSign {
    PaymentToSign { details: details().canonical(), pan_token: Some([0x5a; 32]) }
}

fn pap(pin: &str) -> TtlsPeerInner {
    TtlsPeerInner::Pap { user: format!("{CARD}@{REALM}"), pin: Pin(pin.into()) }
}

fn aka_inner(kind: EapType, k: [u8; 16]) -> TtlsPeerInner {
    let identity = aka_identity(kind);
    let config = SimAkaPeerConfig {
        flavor: flavor(kind),
        identity: identity.clone(),
        result_ind: true,
        confirmation: None,
        identities: Identities::default(),
    };
    let usim = Subscriber::Usim(Usim::new(&k, &OPC, SqnWindow::default()));
    TtlsPeerInner::Eap { identity, method: Box::new(SimAkaPeer::new(config, usim)) }
}

fn flavor(kind: EapType) -> Flavor {
    if kind == EapType::AKA {
        Flavor::Aka
    } else {
        Flavor::AkaPrime { network_name: REALM.into() }
    }
}

fn aka_identity(kind: EapType) -> String {
    let prefix = if kind == EapType::AKA { '0' } else { '6' };
    format!("{prefix}{CARD}@{REALM}")
}

fn peer_options(version: TlsVersion, inner: TtlsPeerInner, payment: Option<PaymentToSign>) -> TtlsPeerOptions {
    TtlsPeerOptions {
        min_version: version,
        max_version: version,
        payment,
        signing_key_pem: pki().card_key_pem.clone(),
        ..TtlsPeerOptions::new(pki().server_pin, inner)
    }
}

fn card(opts: TtlsPeerOptions) -> PeerSession {
    PeerSession::new(format!("anonymous@{REALM}"), vec![Box::new(EapTtlsPeer::new(opts).unwrap())])
}

/// The issuer's AuC for the inner AKA card.
struct Store {
    milenage: Milenage,
    sqn: Sqn,
    vectors: u32,
}

impl Store {
    fn new() -> Self {
        Self { milenage: Milenage::new(&K, &OPC), sqn: Sqn::new(0), vectors: 0 }
    }

    fn vector(&mut self, q: &Query) -> Answer {
        if let Query::AkaResync { rand, auts, .. } = q {
            match sqn_from_auts(&self.milenage, rand, auts) {
                Some(ms) => self.sqn = self.sqn.resynchronised(ms),
                None => return Answer::ResyncRejected,
            }
        }
        self.sqn = self.sqn.next();
        self.vectors += 1;
        Answer::AkaVector(generate_vector(&self.milenage, self.sqn, DEFAULT_AMF, [self.vectors as u8; 16]))
    }
}

/// The I/O layer of the test: answers PIN checks and vector requests.
struct Backend {
    pin_answer: Answer,
    store: Store,
    queries: Vec<Query>,
}

impl Backend {
    fn new() -> Self {
        Self { pin_answer: Answer::PinAccepted, store: Store::new(), queries: Vec::new() }
    }

    fn answer(&mut self, q: Query) -> Answer {
        let a = match &q {
            Query::Pin { card_id, pin } => {
                assert_eq!(card_id, CARD);
                if pin.0 == PIN {
                    self.pin_answer.clone()
                } else {
                    Answer::PinRejected { tries_left: 2 }
                }
            }
            Query::AkaVector { .. } | Query::AkaResync { .. } => self.store.vector(&q),
            other => panic!("TTLS inner methods without privacy never ask {other:?}"),
        };
        self.queries.push(q);
        a
    }
}

struct Setup {
    version: TlsVersion,
    server_fragment: usize,
    inner: TtlsInner,
    config: Option<TlsServerConfig>,
}

impl Setup {
    fn new(version: TlsVersion) -> Self {
        let inner = TtlsInner {
            pap: true,
            eap: vec![SimAkaServerConfig::new(Flavor::Aka), SimAkaServerConfig::new(flavor(EapType::AKA_PRIME))],
        };
        Self { version, server_fragment: 1024, inner, config: None }
    }

    fn server(&self, identity: &str) -> EapTtlsServer {
        let config = self.config.clone().unwrap_or_else(|| server_config(self.version));
        EapTtlsServer::new(&config, identity, self.server_fragment, self.inner.clone())
    }
}

struct Outcome {
    /// The server's last step (Accept, Reject, or what it said when the peer stopped).
    server: Step,
    /// The peer's last event.
    peer: PeerEvent,
    authenticated: Option<Authenticated>,
    /// Every EAP-TTLS request the server sent and response the peer sent.
    requests: Vec<Vec<u8>>,
    responses: Vec<Vec<u8>>,
}

/// Runs a conversation; `tamper` may change each peer response.
fn converse(
    setup: &Setup,
    peer: &mut PeerSession,
    backend: &mut Backend,
    verdict: impl Fn(&Authenticated) -> Verdict,
    mut tamper: impl FnMut(&mut Vec<u8>),
) -> Outcome {
    let mut server = ServerSession::new(1);
    let mut authenticated = None;
    let (mut requests, mut responses) = (Vec::new(), Vec::new());
    let mut step = server.handle(&peer.identity_response(0));
    loop {
        step = match step {
            Step::NeedMethods { identity } => server.offer_methods(vec![Box::new(setup.server(&identity))]),
            Step::Query(q) => server.answer(backend.answer(q)),
            Step::Authenticated(a) => {
                let v = verdict(&a);
                authenticated = Some(a);
                server.conclude(v)
            }
            Step::Send(request) => {
                requests.push(request.clone());
                match peer.handle(&request) {
                    PeerEvent::Send(mut response) => {
                        tamper(&mut response);
                        responses.push(response.clone());
                        server.handle(&response)
                    }
                    other => {
                        return Outcome { server: Step::Send(request), peer: other, authenticated, requests, responses }
                    }
                }
            }
            Step::Accept { ref packet, .. } | Step::Reject { ref packet, .. } => {
                let p = peer.handle(packet);
                return Outcome { server: step, peer: p, authenticated, requests, responses };
            }
            Step::Discard(why) => panic!("server discarded: {why}"),
        }
    }
}

fn approve_with_result(_: &Authenticated) -> Verdict {
    Verdict { approved: true, result: Some(approved()) }
}

fn assert_agreed_keys(out: &Outcome) {
    let Step::Accept { keys, method, .. } = &out.server else { panic!("server: {:?}", out.server) };
    assert_eq!(*method, EapType::TTLS);
    let PeerEvent::Success { keys: peer_keys, .. } = &out.peer else { panic!("peer: {:?}", out.peer) };
    assert_eq!(keys, peer_keys);
}

fn assert_signed(a: &Authenticated) {
    assert_eq!(a.confirmation.as_deref(), Some(details().canonical().as_slice()));
    let sig = a.signature.as_ref().expect("a signature");
    assert_eq!(sig.pan_token, Some([0x5a; 32]));
    assert_eq!(sig.spki, None, "TTLS has no client certificate");
    assert!(confirmation::verify(&pki().card_spki, &details().canonical(), &sig.exporter, &sig.signature));
    assert!(!confirmation::verify(&pki().card_spki, &details().canonical(), &[0; 32], &sig.signature));
}

#[test]
fn pap_payment_with_signature_and_result() {
    for version in BOTH {
        let setup = Setup::new(version);
        let mut backend = Backend::new();
        let mut peer = card(peer_options(version, pap(PIN), Some(payment())));
        let out = converse(&setup, &mut peer, &mut backend, approve_with_result, |_| {});
        assert_agreed_keys(&out);
        let PeerEvent::Success { result, .. } = &out.peer else { unreachable!() };
        assert_eq!(result.as_deref(), Some(approved().as_slice()), "{version}");
        let a = out.authenticated.unwrap();
        assert_eq!(a.method, EapType::TTLS);
        assert_eq!(a.card_id, CARD);
        assert_eq!(a.identity, format!("{CARD}@{REALM}"));
        assert_signed(&a);
        assert_eq!(backend.queries, [Query::Pin { card_id: CARD.into(), pin: Pin(PIN.into()) }]);
        // The card keeps its TLS session for next time.
        assert!(peer.remember().iter().any(|m| matches!(m, PeerMemory::TlsSession(_))), "{version}");
    }
}

#[test]
fn pap_wrong_pin_locked_and_unknown_card() {
    let cases = [
        (Answer::PinAccepted, "1111", FailureReason::IncorrectPin),
        (Answer::PinLocked, PIN, FailureReason::PinTriesExceeded),
        (Answer::UnknownCard, PIN, FailureReason::UnknownIdentity),
    ];
    for version in BOTH {
        for (answer, pin, expected) in cases.clone() {
            let setup = Setup::new(version);
            let mut backend = Backend { pin_answer: answer, ..Backend::new() };
            let mut peer = card(peer_options(version, pap(pin), Some(payment())));
            let out = converse(&setup, &mut peer, &mut backend, approve_with_result, |_| {});
            let Step::Reject { reason, .. } = &out.server else { panic!("{:?}", out.server) };
            assert_eq!(*reason, expected);
            assert!(matches!(out.peer, PeerEvent::Failure(_)), "{:?}", out.peer);
            assert!(out.authenticated.is_none());
            assert_eq!(peer.result(), None);
        }
    }
}

#[test]
fn a_declined_payment_reaches_the_card_before_the_failure() {
    for version in BOTH {
        let setup = Setup::new(version);
        let mut peer = card(peer_options(version, pap(PIN), Some(payment())));
        let decline = |_: &Authenticated| Verdict { approved: false, result: Some(declined(51)) };
        let out = converse(&setup, &mut peer, &mut Backend::new(), decline, |_| {});
        let Step::Reject { reason, .. } = &out.server else { panic!("{:?}", out.server) };
        assert_eq!(*reason, FailureReason::Declined);
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
        assert_eq!(peer.result(), Some(declined(51)));
    }
}

#[test]
fn a_standard_peer_gets_the_standard_exchange() {
    for version in BOTH {
        let setup = Setup::new(version);
        let mut peer = card(peer_options(version, pap(PIN), None));
        // The caller may hand a result; a card that did not confirm gets none.
        let out = converse(&setup, &mut peer, &mut Backend::new(), approve_with_result, |_| {});
        assert_agreed_keys(&out);
        let PeerEvent::Success { result, .. } = &out.peer else { unreachable!() };
        assert_eq!(*result, None);
        let a = out.authenticated.unwrap();
        assert_eq!((a.confirmation, a.signature), (None, None));
        // Declined: EAP-Failure right after the verdict.
        let mut peer = card(peer_options(version, pap(PIN), None));
        let out =
            converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict { approved: false, result: None }, |_| {});
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::Declined, .. }));
    }
}

#[test]
fn pap_identity_without_realm_takes_the_outer_realm() {
    let setup = Setup::new(TlsVersion::V1_3);
    let inner = TtlsPeerInner::Pap { user: CARD.into(), pin: Pin(PIN.into()) };
    let mut peer = card(peer_options(TlsVersion::V1_3, inner, None));
    let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
    assert_agreed_keys(&out);
    assert_eq!(out.authenticated.unwrap().identity, format!("{CARD}@{REALM}"));
}

#[test]
fn inner_aka_and_aka_prime_with_payment() {
    for version in BOTH {
        for kind in [EapType::AKA, EapType::AKA_PRIME] {
            let setup = Setup::new(version);
            let mut backend = Backend::new();
            let mut peer = card(peer_options(version, aka_inner(kind, K), Some(payment())));
            let out = converse(&setup, &mut peer, &mut backend, approve_with_result, |_| {});
            assert_agreed_keys(&out);
            let PeerEvent::Success { result, .. } = &out.peer else { unreachable!() };
            assert_eq!(result.as_deref(), Some(approved().as_slice()));
            let a = out.authenticated.unwrap();
            assert_eq!(a.method, EapType::TTLS);
            assert_eq!(a.card_id, CARD);
            assert_eq!(a.identity, aka_identity(kind));
            assert_signed(&a);
            assert_eq!(
                backend.queries,
                [Query::AkaVector { card_id: CARD.into(), method: kind, require_active: false }],
                "{version} {kind:?}"
            );
            // The inner card's SQN window is part of what the card keeps.
            assert!(peer
                .remember()
                .iter()
                .any(|m| matches!(m, PeerMemory::SqnWindow(w) if *w != SqnWindow::default())));
        }
    }
}

#[test]
fn inner_aka_standard_peer_and_wrong_key() {
    for version in BOTH {
        let setup = Setup::new(version);
        let mut peer = card(peer_options(version, aka_inner(EapType::AKA, K), None));
        let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
        assert_agreed_keys(&out);
        assert_eq!(out.authenticated.unwrap().confirmation, None);

        // A card with another K cannot verify AUTN: it rejects the issuer.
        let mut peer = card(peer_options(version, aka_inner(EapType::AKA, [0x11; 16]), Some(payment())));
        let out = converse(&setup, &mut peer, &mut Backend::new(), approve_with_result, |_| {});
        assert!(matches!(out.server, Step::Reject { reason: FailureReason::RejectedByPeer, .. }), "{:?}", out.server);
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
        assert!(out.authenticated.is_none());
    }
}

#[test]
fn inner_aka_resynchronises() {
    let setup = Setup::new(TlsVersion::V1_3);
    let identity = aka_identity(EapType::AKA);
    let config = SimAkaPeerConfig {
        flavor: Flavor::Aka,
        identity: identity.clone(),
        result_ind: true,
        confirmation: None,
        identities: Identities::default(),
    };
    let usim = Subscriber::Usim(Usim::new(&K, &OPC, SqnWindow::starting_at(Sqn::new(0x1000))));
    let inner = TtlsPeerInner::Eap { identity, method: Box::new(SimAkaPeer::new(config, usim)) };
    let mut backend = Backend::new();
    let mut peer = card(peer_options(TlsVersion::V1_3, inner, None));
    let out = converse(&setup, &mut peer, &mut backend, |_| Verdict::accept(), |_| {});
    assert_agreed_keys(&out);
    assert_eq!(backend.store.vectors, 2);
    assert!(matches!(backend.queries[1], Query::AkaResync { .. }));
}

#[test]
fn inner_methods_the_server_does_not_offer() {
    let mut setup = Setup::new(TlsVersion::V1_3);
    setup.inner = TtlsInner { pap: false, eap: Vec::new() };
    let mut peer = card(peer_options(TlsVersion::V1_3, pap(PIN), None));
    let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::NoCommonMethod, .. }), "{:?}", out.server);
    let mut peer = card(peer_options(TlsVersion::V1_3, aka_inner(EapType::AKA, K), None));
    let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
    assert!(matches!(out.server, Step::Reject { reason: FailureReason::NoCommonMethod, .. }), "{:?}", out.server);
    // Only AKA' offered to an AKA card: the inner Nak finds nothing.
    setup.inner = TtlsInner { pap: false, eap: vec![SimAkaServerConfig::new(flavor(EapType::AKA_PRIME))] };
    let mut peer = card(peer_options(TlsVersion::V1_3, aka_inner(EapType::AKA, K), None));
    let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
    assert!(matches!(out.server, Step::Reject { .. }), "{:?}", out.server);
}

fn flags(packet: &[u8]) -> u8 {
    packet[5]
}

#[test]
fn small_fragments_both_ways() {
    for version in BOTH {
        let mut setup = Setup::new(version);
        setup.server_fragment = 100;
        let mut backend = Backend::new();
        let opts = TtlsPeerOptions { fragment_size: 100, ..peer_options(version, pap(PIN), Some(payment())) };
        let mut peer = card(opts);
        let out = converse(&setup, &mut peer, &mut backend, approve_with_result, |_| {});
        assert_agreed_keys(&out);
        assert_signed(out.authenticated.as_ref().unwrap());
        let ttls = |p: &&Vec<u8>| p.len() > 5 && p[4] == EapType::TTLS.0;
        let requests: Vec<&Vec<u8>> = out.requests.iter().filter(ttls).collect();
        let responses: Vec<&Vec<u8>> = out.responses.iter().filter(ttls).collect();
        assert_eq!(flags(requests[0]), FLAG_START);
        for side in [&requests, &responses] {
            assert!(side.iter().any(|p| flags(p) & (FLAG_LENGTH | FLAG_MORE) == FLAG_LENGTH | FLAG_MORE));
            assert!(side.iter().all(|p| p.len() <= 5 + 1 + 4 + 100), "no fragment over the size");
            assert!(side.iter().all(|p| flags(p) & 0x07 == 0), "TTLS version 0");
        }
    }
}

/// A forged EAP-Success (the relay's: EAP-Success is never authenticated)
/// is refused until every fragment of the card's credentials has gone out
/// and the server has had them. With small fragments the card's last
/// flight (its Finished and PAP in TLS 1.3, PAP in 1.2) takes several round
/// trips; a Success between them is not the server's. Found by the
/// `peer_session_tls` fuzz target.
#[test]
fn no_success_before_the_last_fragment_of_the_credentials() {
    for version in BOTH {
        let setup = Setup::new(version);
        let mut backend = Backend::new();
        let mut peer = card(TtlsPeerOptions { fragment_size: 40, ..peer_options(version, pap(PIN), None) });
        let mut server = ServerSession::new(1);
        let (mut pin_asked, mut refused, mut fragments) = (false, 0, 0);
        let mut step = server.handle(&peer.identity_response(0));
        loop {
            step = match step {
                Step::NeedMethods { identity } => server.offer_methods(vec![Box::new(setup.server(&identity))]),
                Step::Query(q) => {
                    pin_asked |= matches!(q, Query::Pin { .. });
                    server.answer(backend.answer(q))
                }
                Step::Authenticated(a) => server.conclude(approve_with_result(&a)),
                Step::Send(request) => {
                    // The card is handed the forgery first, then the real request.
                    match peer.handle(&[3, request[1], 0, 4]) {
                        PeerEvent::Ignore(_) => refused += 1,
                        // TLS 1.3: the server's ticket after the PIN check.
                        PeerEvent::Success { .. } if pin_asked => break,
                        other => {
                            panic!("{version:?}: a forged EAP-Success before the PIN reached the server: {other:?}")
                        }
                    }
                    let PeerEvent::Send(response) = peer.handle(&request) else { panic!("{version:?}: no response") };
                    fragments += usize::from(response.len() > 5 && flags(&response) & FLAG_MORE != 0);
                    server.handle(&response)
                }
                Step::Accept { packet, .. } => {
                    assert!(pin_asked && matches!(peer.handle(&packet), PeerEvent::Success { .. }), "{version:?}");
                    break;
                }
                other => panic!("{version:?}: {other:?}"),
            };
        }
        assert!(fragments >= 3 && refused > fragments, "{version:?}: {fragments} fragments, {refused} refused");
    }
}

#[test]
fn wrong_server_pin_is_refused_by_the_card() {
    for version in BOTH {
        let setup = Setup::new(version);
        let opts = TtlsPeerOptions { server_pin: [9; 32], ..peer_options(version, pap(PIN), Some(payment())) };
        let mut peer = card(opts);
        let out = converse(&setup, &mut peer, &mut Backend::new(), approve_with_result, |_| {});
        let PeerEvent::Failure(reason) = out.peer else { panic!("{:?}", out.peer) };
        assert_eq!(reason, FailureReason::AuthenticationFailed("server certificate does not match the pin"));
        assert!(out.authenticated.is_none());
    }
}

#[test]
fn version_mismatch_fails_with_an_alert() {
    let mut setup = Setup::new(TlsVersion::V1_3);
    setup.config = Some(
        TlsServerConfig::with_client_auth(&server_options(TlsVersion::V1_3, TlsVersion::V1_3), ClientAuth::None)
            .unwrap(),
    );
    let mut peer = card(peer_options(TlsVersion::V1_2, pap(PIN), None));
    let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
    // The server's alert reaches the card, which gives up.
    assert!(matches!(out.peer, PeerEvent::Failure(_)), "{:?}", out.peer);
    assert!(out.authenticated.is_none());
}

#[test]
fn a_config_that_requires_client_certificates_is_refused() {
    let mut setup = Setup::new(TlsVersion::V1_3);
    setup.config = Some(TlsServerConfig::new(&server_options(TlsVersion::V1_2, TlsVersion::V1_3)).unwrap());
    let mut server = setup.server("anonymous@issuer.example");
    assert!(matches!(server.start(1), MethodStep::Failure(FailureReason::Protocol(_))));
}

/// A peer whose tunnel speaks raw bytes instead of its inner method.
fn junk_peer(version: TlsVersion, tunnel: Vec<u8>) -> PeerSession {
    let mut peer = EapTtlsPeer::new(peer_options(version, pap(PIN), None)).unwrap();
    peer.tunnel_override = Some(tunnel);
    PeerSession::new(format!("anonymous@{REALM}"), vec![Box::new(peer)])
}

#[test]
fn junk_in_the_tunnel_is_a_protocol_failure() {
    let mut unknown_mandatory = Vec::new();
    aaa_proto::diameter::push_avp(&mut unknown_mandatory, 60, 0x40, None, b"chap").unwrap();
    let mut half_confirmation =
        PeerAvps { user_name: Some(CARD.into()), password: Some(Pin(PIN.into())), ..PeerAvps::default() }
            .encode(eapay::VENDOR_ID)
            .unwrap();
    aaa_proto::diameter::push_avp(&mut half_confirmation, 16, 0, Some(eapay::VENDOR_ID), &[1; 8]).unwrap();
    let cases: [Vec<u8>; 4] = [vec![0xff; 3], vec![0, 0, 0, 1, 0x40, 0, 0, 200], unknown_mandatory, half_confirmation];
    for version in BOTH {
        for junk in &cases {
            let setup = Setup::new(version);
            let mut peer = junk_peer(version, junk.clone());
            let out = converse(&setup, &mut peer, &mut Backend::new(), |_| Verdict::accept(), |_| {});
            assert!(matches!(out.server, Step::Reject { reason: FailureReason::Protocol(_), .. }), "{:?}", out.server);
            assert!(matches!(out.peer, PeerEvent::Failure(_)));
        }
    }
}

fn response(id: u8, type_data: Vec<u8>) -> Vec<u8> {
    Packet::new(Code::Response, id, EapType::TTLS, type_data).encode().unwrap()
}

#[test]
fn fragment_caps_end_in_failure() {
    let setup = Setup::new(TlsVersion::V1_3);
    // An announced length over the cap.
    let mut server = setup.server("anonymous@issuer.example");
    assert!(matches!(server.start(1), MethodStep::Send(_)));
    let mut data = vec![FLAG_LENGTH | FLAG_MORE];
    data.extend_from_slice(&(1u32 << 20).to_be_bytes());
    data.extend_from_slice(&[0x16; 100]);
    assert!(matches!(server.on_response(1, &response(1, data)), MethodStep::Failure(FailureReason::Protocol(_))));
    // An endless chain of M fragments.
    let mut server = setup.server("anonymous@issuer.example");
    server.start(1);
    let mut failed = false;
    for i in 0..10_000u32 {
        match server.on_response(i as u8, &response(i as u8, vec![FLAG_MORE, 0x16, 3, 3])) {
            MethodStep::Send(ack) => assert_eq!(&ack[4..], [EapType::TTLS.0, 0]),
            MethodStep::Failure(FailureReason::Protocol(_)) => {
                failed = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(failed, "the chain must end");
    // An L length that disagrees with the data.
    let mut server = setup.server("anonymous@issuer.example");
    server.start(1);
    let mut data = vec![FLAG_LENGTH];
    data.extend_from_slice(&50u32.to_be_bytes());
    data.extend_from_slice(&[0x16; 10]);
    assert!(matches!(server.on_response(2, &response(2, data)), MethodStep::Failure(_)));
    // Garbage instead of TLS.
    let mut server = setup.server("anonymous@issuer.example");
    server.start(1);
    let step = server.on_response(3, &response(3, b"\0GET / HTTP/1.1\r\n\r\n".to_vec()));
    assert!(matches!(step, MethodStep::Failure(_) | MethodStep::Send(_)));
}

#[test]
fn inner_server_rules() {
    let inner = TtlsInner { pap: true, eap: vec![SimAkaServerConfig::new(Flavor::Aka)] };
    let new = || InnerServer::new(inner.clone(), eapay::VENDOR_ID, "anonymous@issuer.example", [3; 32]);
    let encode = |a: PeerAvps| a.encode(eapay::VENDOR_ID).unwrap();
    let pap =
        |user: &str| PeerAvps { user_name: Some(user.into()), password: Some(Pin(PIN.into())), ..PeerAvps::default() };
    // No credentials at all.
    assert!(matches!(new().on_data(&encode(PeerAvps::default())), InnerOut::Fail(FailureReason::Protocol(_))));
    // A password without a name, and both kinds of credentials at once.
    let nameless = PeerAvps { password: Some(Pin(PIN.into())), ..PeerAvps::default() };
    assert!(matches!(new().on_data(&encode(nameless)), InnerOut::Fail(FailureReason::Protocol(_))));
    let both = PeerAvps { eap_message: Some(vec![2, 0, 0, 5, 1]), ..pap(CARD) };
    assert!(matches!(new().on_data(&encode(both)), InnerOut::Fail(FailureReason::Protocol(_))));
    // An empty card id.
    assert!(matches!(new().on_data(&encode(pap("@issuer.example"))), InnerOut::Fail(FailureReason::UnknownIdentity)));
    // A realm in the User-Name wins over the outer one.
    let mut s = new();
    assert!(matches!(s.on_data(&encode(pap("c0ffee@other.example"))), InnerOut::Query(Query::Pin { .. })));
    let InnerOut::Authenticated(a) = s.on_answer(Answer::PinAccepted) else { panic!() };
    assert_eq!(a.identity, "c0ffee@other.example");
    // Tunnel data while the caller decides, and an answer of the wrong kind.
    assert!(matches!(s.on_data(&encode(pap(CARD))), InnerOut::Fail(FailureReason::Protocol(_))));
    let mut s = new();
    s.on_data(&encode(pap(CARD)));
    assert!(matches!(s.on_answer(Answer::BlockedCard), InnerOut::Fail(FailureReason::Protocol(_))));
    // A confirmation without a signature is a confirmation; a second one is not allowed.
    let confirmation = TunnelConfirmation { details: details().canonical(), signature: None, pan_token: None };
    let mut s = new();
    s.on_data(&encode(PeerAvps { confirmation: Some(confirmation.clone()), ..pap(CARD) }));
    let InnerOut::Authenticated(a) = s.on_answer(Answer::PinAccepted) else { panic!() };
    assert_eq!(a.confirmation, Some(details().canonical()));
    assert_eq!(a.signature, None);
    let InnerOut::Conclude { failure, deliver } = s.conclude(Verdict { approved: true, result: Some(approved()) })
    else {
        panic!()
    };
    assert_eq!(failure, None);
    let delivered = ServerAvps::decode(&deliver.unwrap(), eapay::VENDOR_ID).unwrap();
    assert_eq!(delivered.result, Some(approved()));
    // Inner EAP: a second confirmation mid-conversation.
    let mut s = new();
    let identity =
        Packet::new(Code::Response, 0, EapType::IDENTITY, b"0c0ffee@issuer.example".to_vec()).encode().unwrap();
    let first =
        PeerAvps { eap_message: Some(identity), confirmation: Some(confirmation.clone()), ..PeerAvps::default() };
    assert!(matches!(s.on_data(&encode(first)), InnerOut::Query(Query::AkaVector { .. })));
    let again =
        PeerAvps { eap_message: Some(vec![2, 1, 0, 5, 23]), confirmation: Some(confirmation), ..PeerAvps::default() };
    assert!(matches!(s.on_data(&encode(again)), InnerOut::Fail(FailureReason::Protocol(_))));
}

#[test]
fn random_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x771);
    // Record a real conversation to mutate.
    let setup = Setup::new(TlsVersion::V1_3);
    let mut peer = card(peer_options(TlsVersion::V1_3, pap(PIN), Some(payment())));
    let out = converse(&setup, &mut peer, &mut Backend::new(), approve_with_result, |_| {});
    assert_agreed_keys(&out);
    for round in 0..300 {
        // Server: a fresh conversation fed the real responses with one of them damaged, or pure noise.
        let mut server = setup.server("anonymous@issuer.example");
        server.start(1);
        let victim = rng.gen_range(0..out.responses.len());
        for (i, r) in out.responses.iter().enumerate().skip(1) {
            let mut r = r.clone();
            if i == victim || round % 3 == 0 {
                let at = rng.gen_range(0..r.len());
                r[at] ^= rng.gen::<u8>() | 1;
                if rng.gen_bool(0.3) {
                    r.truncate(rng.gen_range(0..r.len()));
                }
            }
            match server.on_response(r.get(1).copied().unwrap_or(0), &r) {
                MethodStep::Send(_) => {}
                MethodStep::Query(_) => {
                    let _ = server.on_answer(2, Answer::PinAccepted);
                }
                MethodStep::Authenticated(_) => {
                    let _ = server.conclude(3, Verdict::accept());
                }
                MethodStep::Success(_) | MethodStep::Failure(_) => break,
            }
        }
        let noise: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
        let mut server = setup.server("anonymous@issuer.example");
        server.start(1);
        let _ = server.on_response(1, &response(1, noise.clone()));
        let _ = server.on_response(1, &noise);
        // Peer: real requests damaged, and noise.
        let mut card = EapTtlsPeer::new(peer_options(TlsVersion::V1_3, pap(PIN), Some(payment()))).unwrap();
        for (i, r) in out.requests.iter().enumerate().skip(1) {
            let mut r = r.clone();
            if i == victim % out.requests.len() || round % 3 == 1 {
                let at = rng.gen_range(0..r.len());
                r[at] ^= rng.gen::<u8>() | 1;
            }
            if matches!(card.on_request(&r), PeerStep::Fail(_)) {
                break;
            }
        }
        let _ = card.on_request(&noise);
        let _ = card.keys();
    }
}

#[test]
fn both_sides_report_version_and_session_id() {
    for version in BOTH {
        let setup = Setup::new(version);
        let mut server = setup.server("anonymous@issuer.example");
        let mut peer = EapTtlsPeer::new(peer_options(version, pap(PIN), Some(payment()))).unwrap();
        let mut backend = Backend::new();
        let mut step = server.start(1);
        let mut id = 1u8;
        let keys = loop {
            id = id.wrapping_add(1);
            step = match step {
                MethodStep::Send(request) => match peer.on_request(&request) {
                    PeerStep::Send(response) => server.on_response(id, &response),
                    PeerStep::Fail(reason) => panic!("{reason:?}"),
                },
                MethodStep::Query(q) => server.on_answer(id, backend.answer(q)),
                MethodStep::Authenticated(_) => {
                    server.conclude(id, Verdict { approved: true, result: Some(approved()) })
                }
                MethodStep::Success(keys) => break keys,
                MethodStep::Failure(reason) => panic!("{reason:?}"),
            };
        };
        assert_eq!(peer.keys(), Some(keys));
        assert_eq!(peer.result(), Some(approved()));
        assert_eq!(server.tls_version(), Some(version));
        assert_eq!(peer.tls_version(), Some(version));
        assert!(!server.session_reused() && !peer.session_reused());
        let session_id = server.session_id().unwrap();
        assert_eq!(session_id.len(), 65);
        assert_eq!(session_id[0], EapType::TTLS.0);
        assert_eq!(peer.session_id(), Some(session_id));
    }
}
