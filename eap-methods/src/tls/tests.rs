//! EAP-TLS server and card talking to each other in memory through
//! [`ServerSession`] and [`PeerSession`], with an in-test PKI (P-256 CA,
//! server and card certificates): every path of the exchange, and the
//! hostile inputs a server must survive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{
    CardTls, ClientContext, PaymentToSign, TlsPeerOptions, TlsServerConfig, TlsServerOptions, TlsVersion,
};
use super::confirmation;
use super::engine::TlsEngine;
use super::fragment::{self, Frame, FLAG_LENGTH, FLAG_MORE};
use super::peer::EapTlsPeer;
use super::server::EapTlsServer;
use crate::method::{
    Answer, Authenticated, FailureReason, Keys, MethodStep, PeerMemory, PeerMethod, PeerStep, Query, ServerMethod,
    TlsSession, Verdict,
};
use crate::packet::{Code, EapType, Packet};
use crate::peer::{PeerEvent, PeerSession};
use crate::server::{ServerSession, Step};

const REALM: &str = "issuer.example";
const CARD: &str = "c0ffee";
const DETAILS: &[u8] = b"\x1a\x10canonical details";
const APPROVAL: &[u8] = b"A1B2C3";
const BOTH: [TlsVersion; 2] = [TlsVersion::V1_2, TlsVersion::V1_3];

/// The test PKI, made once per test process.
pub(crate) struct Pki {
    pub server_chain_pem: Vec<u8>,
    pub server_key_pem: Vec<u8>,
    pub server_pin: [u8; 32],
    pub card_key_pem: Vec<u8>,
    pub card_cert_pem: Vec<u8>,
    pub card_cert_der: Vec<u8>,
    pub card_spki: Vec<u8>,
}

impl Pki {
    /// The card's certificate and key.
    pub fn card(&self) -> (X509, PKey<Private>) {
        (X509::from_pem(&self.card_cert_pem).unwrap(), PKey::private_key_from_pem(&self.card_key_pem).unwrap())
    }
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn certificate(cn: &str, serial: u32, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    match issuer {
        Some((ca, _)) => b.set_issuer_name(ca.subject_name()).unwrap(),
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
            b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
        }
    }
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap()).unwrap();
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).unwrap();
    b.build()
}

pub(crate) fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca_key = p256();
        let ca = certificate("issuer.example eapay issuer CA", 1, &ca_key, None);
        let server_key = p256();
        let server = certificate("aaa.issuer.example", 2, &server_key, Some((&ca, &ca_key)));
        let card_key = p256();
        let card = certificate(CARD, 3, &card_key, Some((&ca, &ca_key)));
        let server_spki = server_key.public_key_to_der().unwrap();
        Pki {
            server_chain_pem: [server.to_pem().unwrap(), ca.to_pem().unwrap()].concat(),
            server_key_pem: server_key.private_key_to_pem_pkcs8().unwrap(),
            server_pin: openssl::sha::sha256(&server_spki),
            // The card's key in the traditional EC form, the server's in PKCS#8.
            card_key_pem: card_key.ec_key().unwrap().private_key_to_pem().unwrap(),
            card_cert_pem: card.to_pem().unwrap(),
            card_cert_der: card.to_der().unwrap(),
            card_spki: card_key.public_key_to_der().unwrap(),
        }
    })
}

fn server_options(min: TlsVersion, max: TlsVersion) -> TlsServerOptions {
    let pki = pki();
    TlsServerOptions {
        certificate_chain_pem: pki.server_chain_pem.clone(),
        private_key_pem: pki.server_key_pem.clone(),
        min_version: min,
        max_version: max,
        ..TlsServerOptions::default()
    }
}

fn server_config(version: TlsVersion) -> TlsServerConfig {
    TlsServerConfig::new(&server_options(version, version)).unwrap()
}

fn card_options(version: TlsVersion, payment: bool) -> TlsPeerOptions {
    let pki = pki();
    TlsPeerOptions {
        identity: format!("{CARD}@{REALM}"),
        private_key_pem: pki.card_key_pem.clone(),
        certificate_pem: pki.card_cert_pem.clone(),
        server_pin: pki.server_pin,
        min_version: TlsVersion::V1_2,
        max_version: version,
        payment: payment.then(|| PaymentToSign { details: DETAILS.to_vec(), pan_token: Some([0x5a; 32]) }),
        ..TlsPeerOptions::default()
    }
}

/// What the spies saw of the methods inside the sessions.
#[derive(Debug, Default, Clone)]
struct Seen {
    server_reused: bool,
    server_version: Option<TlsVersion>,
    server_session_id: Option<Vec<u8>>,
    peer_reused: bool,
    peer_session_id: Option<Vec<u8>>,
}

struct ServerSpy {
    inner: EapTlsServer,
    seen: Arc<Mutex<Seen>>,
}

impl ServerSpy {
    fn record(&self, step: MethodStep) -> MethodStep {
        let mut seen = self.seen.lock().unwrap();
        seen.server_reused |= self.inner.session_reused();
        seen.server_version = seen.server_version.or(self.inner.tls_version());
        if let Some(id) = self.inner.session_id() {
            seen.server_session_id = Some(id);
        }
        step
    }
}

impl ServerMethod for ServerSpy {
    fn kind(&self) -> EapType {
        self.inner.kind()
    }
    fn start(&mut self, id: u8) -> MethodStep {
        let step = self.inner.start(id);
        self.record(step)
    }
    fn on_response(&mut self, id: u8, response: &[u8]) -> MethodStep {
        let step = self.inner.on_response(id, response);
        self.record(step)
    }
    fn on_answer(&mut self, id: u8, answer: Answer) -> MethodStep {
        let step = self.inner.on_answer(id, answer);
        self.record(step)
    }
    fn conclude(&mut self, id: u8, verdict: Verdict) -> MethodStep {
        let step = self.inner.conclude(id, verdict);
        self.record(step)
    }
}

struct PeerSpy {
    inner: EapTlsPeer,
    seen: Arc<Mutex<Seen>>,
}

impl PeerMethod for PeerSpy {
    fn kind(&self) -> EapType {
        self.inner.kind()
    }
    fn on_request(&mut self, request: &[u8]) -> PeerStep {
        let step = self.inner.on_request(request);
        let mut seen = self.seen.lock().unwrap();
        seen.peer_reused |= self.inner.session_reused();
        if let Some(id) = self.inner.session_id() {
            seen.peer_session_id = Some(id);
        }
        step
    }
    fn keys(&self) -> Option<Keys> {
        self.inner.keys()
    }
    fn result(&self) -> Option<Vec<u8>> {
        self.inner.result()
    }
    fn remember(&self) -> Vec<PeerMemory> {
        self.inner.remember()
    }
}

/// One conversation's setting.
struct Run<'a> {
    config: &'a TlsServerConfig,
    /// The identity the server sees in EAP-Response/Identity.
    identity: String,
    /// The conversation's fragment size (Framed-MTU), 0 for the config's.
    fragment_size: usize,
    /// The card store: SubjectPublicKeyInfo -> answer.
    cards: HashMap<Vec<u8>, Answer>,
    verdict: Verdict,
    /// Hand the card a forged EAP-Success before the server's EAP-Failure.
    probe_premature_success: bool,
}

impl<'a> Run<'a> {
    fn new(config: &'a TlsServerConfig) -> Self {
        let mut cards = HashMap::new();
        cards.insert(pki().card_spki.clone(), Answer::CardKey { card_id: CARD.into() });
        Self {
            config,
            identity: format!("{CARD}@{REALM}"),
            fragment_size: 0,
            cards,
            verdict: Verdict { approved: true, result: Some(APPROVAL.to_vec()) },
            probe_premature_success: false,
        }
    }
}

#[derive(Debug)]
struct Outcome {
    /// Accept or Reject, if the server ended.
    server: Option<Step>,
    /// The card's last event.
    peer: PeerEvent,
    authenticated: Option<Authenticated>,
    card_key_queries: usize,
    seen: Seen,
    memory: Vec<PeerMemory>,
    /// The result as the card's session reports it after the end.
    result: Option<Vec<u8>>,
    requests: Vec<Vec<u8>>,
    responses: Vec<Vec<u8>>,
    premature_success: Option<PeerEvent>,
}

impl Outcome {
    fn server_keys(&self) -> &Keys {
        match &self.server {
            Some(Step::Accept { keys, method, .. }) => {
                assert_eq!(*method, EapType::TLS);
                keys
            }
            other => panic!("server did not accept: {other:?}"),
        }
    }

    fn reject_reason(&self) -> &FailureReason {
        match &self.server {
            Some(Step::Reject { reason, .. }) => reason,
            other => panic!("server did not reject: {other:?} (peer {:?})", self.peer),
        }
    }

    fn session(&self) -> Option<TlsSession> {
        self.memory.iter().find_map(|m| match m {
            PeerMemory::TlsSession(s) => Some(s.clone()),
            _ => None,
        })
    }
}

/// Runs a conversation; `tamper` may change each method response (its index
/// counts from the ClientHello) before the server sees it.
fn converse(run: &Run<'_>, card: TlsPeerOptions, tamper: impl FnMut(usize, &mut Vec<u8>)) -> Outcome {
    converse_with(run, EapTlsPeer::new(card).unwrap(), tamper)
}

/// [`converse`] with a peer built by the caller.
fn converse_with(run: &Run<'_>, card: EapTlsPeer, mut tamper: impl FnMut(usize, &mut Vec<u8>)) -> Outcome {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let spy = PeerSpy { inner: card, seen: Arc::clone(&seen) };
    let mut peer = PeerSession::new(format!("{CARD}@{REALM}"), vec![Box::new(spy)]);
    let mut server = ServerSession::new(1);
    let mut out = Outcome {
        server: None,
        peer: PeerEvent::Ignore("not started"),
        authenticated: None,
        card_key_queries: 0,
        seen: Seen::default(),
        memory: Vec::new(),
        result: None,
        requests: Vec::new(),
        responses: Vec::new(),
        premature_success: None,
    };
    let first = Packet::new(Code::Response, 0, EapType::IDENTITY, run.identity.as_bytes().to_vec()).encode().unwrap();
    let mut step = server.handle(&first);
    loop {
        step = match step {
            Step::NeedMethods { identity } => {
                let inner = EapTlsServer::new(run.config, &identity, run.fragment_size);
                server.offer_methods(vec![Box::new(ServerSpy { inner, seen: Arc::clone(&seen) })])
            }
            Step::Query(Query::CardKey { spki }) => {
                out.card_key_queries += 1;
                server.answer(run.cards.get(&spki).cloned().unwrap_or(Answer::UnknownCard))
            }
            Step::Query(other) => panic!("unexpected query {other:?}"),
            Step::Authenticated(a) => {
                out.authenticated = Some(a);
                server.conclude(run.verdict.clone())
            }
            Step::Send(request) => {
                out.requests.push(request.clone());
                match peer.handle(&request) {
                    PeerEvent::Send(mut response) => {
                        tamper(out.responses.len(), &mut response);
                        out.responses.push(response.clone());
                        server.handle(&response)
                    }
                    other => {
                        out.peer = other;
                        break;
                    }
                }
            }
            Step::Accept { ref packet, .. } | Step::Reject { ref packet, .. } => {
                if run.probe_premature_success && matches!(step, Step::Reject { .. }) {
                    let forged = Packet::success(packet[1]).encode().unwrap();
                    out.premature_success = Some(peer.handle(&forged));
                }
                out.peer = peer.handle(packet);
                out.server = Some(step);
                break;
            }
            Step::Discard(why) => panic!("server discarded: {why}"),
        };
    }
    out.seen = seen.lock().unwrap().clone();
    out.memory = peer.remember();
    out.result = peer.result();
    out
}

/// Replaces a response's EAP-TLS type-data.
fn retype(response: &mut Vec<u8>, flags: u8, length: Option<u32>, data: &[u8]) {
    *response =
        Packet::new(Code::Response, response[1], EapType::TLS, fragment::encode(flags, length, data)).encode().unwrap();
}

fn type_data(packet: &[u8]) -> Vec<u8> {
    Packet::decode(packet).unwrap().data
}

#[test]
fn full_handshakes_confirm_and_deliver_the_result() {
    for version in BOTH {
        let config = server_config(version);
        let run = Run::new(&config);
        let out = converse(&run, card_options(version, true), |_, _| {});
        let keys = out.server_keys().clone();
        let PeerEvent::Success { keys: card_keys, result } = &out.peer else { panic!("{version}: {:?}", out.peer) };
        assert_eq!(&keys, card_keys, "{version}: MSK/EMSK agree");
        assert_eq!(result.as_deref(), Some(APPROVAL), "{version}: the card got the result");
        assert_eq!(out.seen.server_version, Some(version));
        assert!(!out.seen.server_reused && !out.seen.peer_reused);
        assert_eq!(out.card_key_queries, 1);
        let session_id = out.seen.server_session_id.clone().unwrap();
        assert_eq!(Some(session_id.clone()), out.seen.peer_session_id, "{version}: Session-Id agrees");
        assert_eq!((session_id.len(), session_id[0]), (65, 13));

        let a = out.authenticated.unwrap();
        assert_eq!(a.method, EapType::TLS);
        assert_eq!(a.card_id, CARD);
        assert_eq!(a.identity, format!("{CARD}@{REALM}"));
        assert_eq!(a.confirmation.as_deref(), Some(DETAILS));
        let sig = a.signature.expect("signed");
        assert_eq!(sig.spki.as_deref(), Some(pki().card_spki.as_slice()));
        assert_eq!(sig.pan_token, Some([0x5a; 32]));
        assert!(confirmation::verify(&pki().card_spki, DETAILS, &sig.exporter, &sig.signature), "{version}");
        assert!(!confirmation::verify(&pki().card_spki, b"other details", &sig.exporter, &sig.signature));
    }
}

#[test]
fn a_standard_peer_gets_the_standard_exchange() {
    for version in BOTH {
        let config = server_config(version);
        // A result is only for a card that confirmed.
        let run = Run::new(&config);
        let out = converse(&run, card_options(version, false), |_, _| {});
        let keys = out.server_keys().clone();
        let PeerEvent::Success { keys: card_keys, result } = &out.peer else { panic!("{version}: {:?}", out.peer) };
        assert_eq!(&keys, card_keys);
        assert_eq!(*result, None, "{version}");
        let a = out.authenticated.unwrap();
        assert_eq!((a.confirmation, a.signature), (None, None));
        // RFC 5216 §2.1.1 / RFC 9190 §2.1.1: the last request is the server's
        // final flight (TLS 1.2) or the commitment (TLS 1.3), answered by an
        // empty response.
        let last = type_data(out.responses.last().unwrap());
        assert_eq!(last, vec![0], "{version}: the final acknowledgement is empty");
    }
}

#[test]
fn declines_reach_the_card_and_no_success_is_accepted_before_the_commitment() {
    for version in BOTH {
        let config = server_config(version);
        let mut run = Run::new(&config);
        run.verdict = Verdict { approved: false, result: Some(b"51".to_vec()) };
        run.probe_premature_success = version == TlsVersion::V1_3;
        let out = converse(&run, card_options(version, true), |_, _| {});
        assert_eq!(out.reject_reason(), &FailureReason::Declined, "{version}");
        assert!(matches!(out.peer, PeerEvent::Failure(_)), "{version}: {:?}", out.peer);
        assert_eq!(out.result.as_deref(), Some(b"51".as_slice()), "{version}: the card read the decline");
        if version == TlsVersion::V1_3 {
            assert!(
                matches!(out.premature_success, Some(PeerEvent::Ignore(_))),
                "TLS 1.3 without the commitment: {:?}",
                out.premature_success
            );
        }

        // A standard peer is declined at once.
        let out = converse(&run, card_options(version, false), |_, _| {});
        assert_eq!(out.reject_reason(), &FailureReason::Declined);
        assert_eq!(out.result, None);
    }
}

#[test]
fn an_approval_without_a_result_still_succeeds() {
    for version in BOTH {
        let config = server_config(version);
        let mut run = Run::new(&config);
        run.verdict = Verdict::accept();
        let out = converse(&run, card_options(version, true), |_, _| {});
        let PeerEvent::Success { result, .. } = &out.peer else { panic!("{version}: {:?}", out.peer) };
        assert_eq!(*result, None);
        assert!(out.authenticated.unwrap().signature.is_some());
    }
}

#[test]
fn resumption_uses_the_remembered_session_and_still_asks_for_the_card_key() {
    for version in BOTH {
        let config = server_config(version);
        let mut run = Run::new(&config);
        let first = converse(&run, card_options(version, true), |_, _| {});
        first.server_keys();
        let session = first.session().unwrap_or_else(|| panic!("{version}: the card keeps a session"));
        assert!(format!("{session:?}").contains("hidden"));

        let card = TlsPeerOptions { session: Some(session.clone()), ..card_options(version, true) };
        let second = converse(&run, card.clone(), |_, _| {});
        let keys = second.server_keys().clone();
        assert_ne!(&keys, first.server_keys(), "{version}: fresh keys");
        assert!(matches!(second.peer, PeerEvent::Success { .. }), "{version}: {:?}", second.peer);
        assert_eq!(second.card_key_queries, 1, "{version}: the card key is checked on resumption too");
        let a = second.authenticated.unwrap();
        assert_eq!(a.card_id, CARD);
        let sig = a.signature.unwrap();
        assert!(confirmation::verify(&pki().card_spki, DETAILS, &sig.exporter, &sig.signature));
        assert!(second.seen.server_reused && second.seen.peer_reused, "{version}: abbreviated");
        // TLS 1.2 saves a round trip; in TLS 1.3 a full handshake whose
        // server flight fits one fragment takes as many (the saving is the
        // certificates and the signatures).
        assert!(second.requests.len() <= first.requests.len(), "{version}: no more round trips");

        // A card blocked since is refused on resumption.
        run.cards.insert(pki().card_spki.clone(), Answer::BlockedCard);
        let third = converse(&run, card, |_, _| {});
        assert!(matches!(third.reject_reason(), FailureReason::AuthenticationFailed(_)), "{version}");
        assert_eq!(third.card_key_queries, 1);
        assert!(third.seen.server_reused, "{version}");
    }
}

/// A forged EAP-Success (the relay's) is refused until every fragment of
/// the card's last flight has gone out and the server has checked the card.
/// A resumed TLS 1.2 handshake completes on the card's side with the
/// server's Finished, before the card's own Finished (and confirmation)
/// has left; with small fragments that takes several round trips. Found by
/// the `peer_session_tls` fuzz target.
#[test]
fn no_success_before_the_last_fragment_of_the_cards_flight() {
    for version in BOTH {
        let config = server_config(version);
        let run = Run::new(&config);
        let first = converse(&run, card_options(version, true), |_, _| {});
        let session = first.session().unwrap_or_else(|| panic!("{version}: the card keeps a session"));
        let card = TlsPeerOptions { session: Some(session), fragment_size: 40, ..card_options(version, true) };
        let mut peer = PeerSession::new(format!("{CARD}@{REALM}"), vec![Box::new(EapTlsPeer::new(card).unwrap())]);
        let mut server = ServerSession::new(1);
        let (mut checked, mut refused, mut fragments) = (false, 0, 0);
        let identity = Packet::new(Code::Response, 0, EapType::IDENTITY, run.identity.as_bytes().to_vec());
        let mut step = server.handle(&identity.encode().unwrap());
        loop {
            step = match step {
                Step::NeedMethods { identity } => {
                    server.offer_methods(vec![Box::new(EapTlsServer::new(run.config, &identity, 0))])
                }
                Step::Query(Query::CardKey { spki }) => {
                    checked = true;
                    server.answer(run.cards.get(&spki).cloned().unwrap_or(Answer::UnknownCard))
                }
                Step::Authenticated(_) => server.conclude(run.verdict.clone()),
                Step::Send(request) => {
                    match peer.handle(&Packet::success(request[1]).encode().unwrap()) {
                        PeerEvent::Ignore(_) => refused += 1,
                        PeerEvent::Success { .. } if checked => break,
                        other => {
                            panic!("{version}: a forged EAP-Success before the server checked the card: {other:?}")
                        }
                    }
                    let PeerEvent::Send(response) = peer.handle(&request) else { panic!("{version}: no response") };
                    fragments += usize::from(response.len() > 5 && response[5] & FLAG_MORE != 0);
                    server.handle(&response)
                }
                Step::Accept { packet, .. } => {
                    assert!(checked && matches!(peer.handle(&packet), PeerEvent::Success { .. }), "{version}");
                    break;
                }
                other => panic!("{version}: {other:?}"),
            };
        }
        assert!(fragments >= 2 && refused > fragments, "{version}: {fragments} fragments, {refused} refused");
    }
}

#[test]
fn one_card_context_serves_every_conversation_of_the_card() {
    for version in BOTH {
        let config = server_config(version);
        let run = Run::new(&config);
        let opts = card_options(version, true);
        let card = Arc::new(
            CardTls::tls(&opts.private_key_pem, &opts.certificate_pem, opts.server_pin, version, version).unwrap(),
        );
        let first = converse_with(&run, EapTlsPeer::with_card(Arc::clone(&card), opts.clone()), |_, _| {});
        assert!(matches!(first.peer, PeerEvent::Success { .. }), "{version}: {:?}", first.peer);
        // The session OpenSSL handed to this connection reached this conversation.
        let session = first.session().unwrap_or_else(|| panic!("{version}: the card keeps a session"));
        let resumed = TlsPeerOptions { session: Some(session), ..opts.clone() };
        let second = converse_with(&run, EapTlsPeer::with_card(Arc::clone(&card), resumed), |_, _| {});
        assert!(matches!(second.peer, PeerEvent::Success { .. }), "{version}: {:?}", second.peer);
        assert!(second.seen.server_reused && second.seen.peer_reused, "{version}: abbreviated");
        assert_eq!(Arc::strong_count(&card), 1, "{version}: the conversations are gone, the context stays");

        // A pin mismatch is the failing conversation's own: the same
        // context still completes the next one.
        let wrong =
            Arc::new(CardTls::tls(&opts.private_key_pem, &opts.certificate_pem, [0xaa; 32], version, version).unwrap());
        for _ in 0..2 {
            let out = converse_with(&run, EapTlsPeer::with_card(Arc::clone(&wrong), opts.clone()), |_, _| {});
            let PeerEvent::Failure(reason) = &out.peer else { panic!("{version}: {:?}", out.peer) };
            assert_eq!(reason, &FailureReason::AuthenticationFailed("server certificate does not match the pin"));
        }
        let third = converse_with(&run, EapTlsPeer::with_card(Arc::clone(&card), opts.clone()), |_, _| {});
        assert!(matches!(third.peer, PeerEvent::Success { .. }), "{version}: {:?}", third.peer);
    }
}

#[test]
fn a_session_of_another_server_means_a_full_handshake() {
    let first = converse(&Run::new(&server_config(TlsVersion::V1_3)), card_options(TlsVersion::V1_3, true), |_, _| {});
    let card = TlsPeerOptions { session: first.session(), ..card_options(TlsVersion::V1_3, true) };
    // Another server process: other ticket keys.
    let out = converse(&Run::new(&server_config(TlsVersion::V1_3)), card, |_, _| {});
    out.server_keys();
    assert!(!out.seen.server_reused);
    // Garbage instead of a session too.
    let card = TlsPeerOptions { session: Some(TlsSession(vec![1, 2, 3])), ..card_options(TlsVersion::V1_2, false) };
    converse(&Run::new(&server_config(TlsVersion::V1_2)), card, |_, _| {}).server_keys();
}

#[test]
fn a_zero_lifetime_disables_resumption_and_others_reach_openssl() {
    for version in BOTH {
        let opts = TlsServerOptions { session_lifetime: Duration::ZERO, ..server_options(version, version) };
        let config = TlsServerConfig::new(&opts).unwrap();
        let out = converse(&Run::new(&config), card_options(version, true), |_, _| {});
        out.server_keys();
        assert_eq!(out.session(), None, "{version}: nothing to resume");
    }
    for version in BOTH {
        let opts = TlsServerOptions { session_lifetime: Duration::from_secs(600), ..server_options(version, version) };
        let config = TlsServerConfig::new(&opts).unwrap();
        let (card_cert, card_key) = pki().card();
        let client = ClientContext::new(Some((&card_cert, &card_key)), pki().server_pin, version, version).unwrap();
        let mut server = TlsEngine::server(config.context()).unwrap();
        let mut card = client.connect(None).unwrap().0;
        super::engine::tests::pair(&mut server, &mut card);
        assert_eq!(server.ssl().session().unwrap().timeout(), 600, "{version}");
    }
}

#[test]
fn small_fragments_both_ways() {
    for version in BOTH {
        let config = server_config(version);
        let mut run = Run::new(&config);
        run.fragment_size = 100;
        let card = TlsPeerOptions { fragment_size: 100, ..card_options(version, true) };
        let out = converse(&run, card, |_, _| {});
        let PeerEvent::Success { keys, .. } = &out.peer else { panic!("{version}: {:?}", out.peer) };
        assert_eq!(keys, out.server_keys());
        for (side, packets) in [("server", &out.requests), ("card", &out.responses)] {
            let frames: Vec<Vec<u8>> = packets.iter().map(|p| type_data(p)).collect();
            assert!(frames.iter().all(|f| f.len() <= 100 + 5), "{version} {side}: fragment size kept");
            let first_fragments = frames.iter().filter(|f| f[0] & (FLAG_LENGTH | FLAG_MORE) == FLAG_LENGTH | FLAG_MORE);
            assert!(first_fragments.count() >= 1, "{version} {side}: L on a first fragment");
            let middle = frames.iter().filter(|f| f[0] == FLAG_MORE).count();
            assert!(middle >= 1, "{version} {side}: fragments without L after the first");
            let acks = frames.iter().filter(|f| f.as_slice() == [0]).count();
            assert!(acks >= 3, "{version} {side}: acknowledgements");
        }
    }
}

#[test]
fn an_l_length_over_the_cap_fails() {
    let config = server_config(TlsVersion::V1_3);
    let out = converse(&Run::new(&config), card_options(TlsVersion::V1_3, true), |n, r| {
        if n == 0 {
            retype(r, FLAG_MORE, Some(1 << 20), b"\x16\x03\x01");
        }
    });
    let FailureReason::Protocol(why) = out.reject_reason() else { panic!("{:?}", out.server) };
    assert!(why.contains("size cap"), "{why}");
    assert!(matches!(out.peer, PeerEvent::Failure(_)));
}

#[test]
fn an_l_length_disagreeing_with_the_data_fails() {
    let config = server_config(TlsVersion::V1_2);
    let out = converse(&Run::new(&config), card_options(TlsVersion::V1_2, true), |n, r| {
        if n == 0 {
            let hello = Frame::parse(&type_data(r), "t").unwrap().data.to_vec();
            retype(r, 0, Some(hello.len() as u32 + 10), &hello);
        }
    });
    let FailureReason::Protocol(why) = out.reject_reason() else { panic!("{:?}", out.server) };
    assert!(why.contains("Length"), "{why}");
}

#[test]
fn an_endless_chain_of_fragments_ends() {
    let config = server_config(TlsVersion::V1_3);
    let mut server = EapTlsServer::new(&config, "c0ffee@issuer.example", 0);
    assert!(matches!(server.start(1), MethodStep::Send(_)));
    let mut id = 2u8;
    for n in 0.. {
        let fragment = Packet::new(Code::Response, id, EapType::TLS, fragment::encode(FLAG_MORE, None, b"\x16"));
        match server.on_response(id, &fragment.encode().unwrap()) {
            MethodStep::Send(ack) => assert_eq!(type_data(&ack), vec![0], "acknowledged"),
            MethodStep::Failure(FailureReason::Protocol(why)) => {
                assert!(why.contains("too many fragments"), "{why}");
                assert!(n < 2000, "ended after {n} fragments");
                break;
            }
            other => panic!("{other:?}"),
        }
        id = id.wrapping_add(1);
    }
    // Through a session the round limit ends it even sooner.
    let mut session = ServerSession::new(1);
    let hello = Packet::new(Code::Response, 0, EapType::IDENTITY, b"c0ffee@issuer.example".to_vec());
    let Step::NeedMethods { identity } = session.handle(&hello.encode().unwrap()) else { panic!("identity") };
    let mut step = session.offer_methods(vec![Box::new(EapTlsServer::new(&config, &identity, 0))]);
    loop {
        step = match step {
            Step::Send(request) => {
                let fragment = fragment::encode(FLAG_MORE, None, b"\x16");
                session.handle(&Packet::new(Code::Response, request[1], EapType::TLS, fragment).encode().unwrap())
            }
            Step::Reject { reason, .. } => {
                assert_eq!(reason, FailureReason::TooManyRounds);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn garbage_instead_of_tls_fails() {
    let config = server_config(TlsVersion::V1_3);
    let out = converse(&Run::new(&config), card_options(TlsVersion::V1_3, true), |n, r| {
        if n == 0 {
            retype(r, 0, None, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        }
    });
    let FailureReason::Protocol(why) = out.reject_reason() else { panic!("{:?}", out.server) };
    assert!(why.contains("TLS"), "{why}");
    assert_eq!(out.card_key_queries, 0);
}

#[test]
fn a_client_certificate_that_does_not_parse_fails() {
    let config = server_config(TlsVersion::V1_2);
    let der = pki().card_cert_der.clone();
    let mut tampered = false;
    let out = converse(&Run::new(&config), card_options(TlsVersion::V1_2, true), |_, r| {
        // TLS 1.2 sends the client Certificate in the clear: break the
        // certificate's inner SEQUENCE so that it no longer parses.
        if let Some(at) = r.windows(der.len()).position(|w| w == der.as_slice()) {
            assert_eq!(r[at + 4], 0x30);
            r[at + 4] = 0x31;
            tampered = true;
        }
    });
    assert!(tampered, "the certificate was in one response");
    let reason = out.reject_reason();
    assert!(matches!(reason, FailureReason::Protocol(_) | FailureReason::AuthenticationFailed(_)), "{reason:?}");
    assert!(out.authenticated.is_none());
    assert_eq!(out.card_key_queries, 0);
    // The server sent its alert and the card acknowledged it (RFC 5216 §2.1.3).
    assert_eq!(type_data(out.responses.last().unwrap()), vec![0]);
    assert!(matches!(out.peer, PeerEvent::Failure(_)));
}

#[test]
fn a_card_below_the_servers_minimum_version_fails() {
    let config = TlsServerConfig::new(&server_options(TlsVersion::V1_3, TlsVersion::V1_3)).unwrap();
    let out = converse(&Run::new(&config), card_options(TlsVersion::V1_2, true), |_, _| {});
    let FailureReason::Protocol(why) = out.reject_reason() else { panic!("{:?}", out.server) };
    assert!(why.contains("protocol"), "{why}");
    assert!(matches!(out.peer, PeerEvent::Failure(_)));

    // The other way round: the server refuses the card's alert at once.
    let config = TlsServerConfig::new(&server_options(TlsVersion::V1_2, TlsVersion::V1_2)).unwrap();
    let card = TlsPeerOptions { min_version: TlsVersion::V1_3, ..card_options(TlsVersion::V1_3, true) };
    let out = converse(&Run::new(&config), card, |_, _| {});
    assert!(out.server.is_none() || matches!(out.server, Some(Step::Reject { .. })), "{:?}", out.server);
    assert!(matches!(out.peer, PeerEvent::Failure(_)), "{:?}", out.peer);
}

#[test]
fn unknown_and_blocked_keys_fail() {
    for version in BOTH {
        let config = server_config(version);
        let mut run = Run::new(&config);
        run.cards.clear();
        let out = converse(&run, card_options(version, true), |_, _| {});
        assert_eq!(
            out.reject_reason(),
            &FailureReason::AuthenticationFailed("client certificate key is not registered"),
            "{version}"
        );
        assert!(out.authenticated.is_none());
        run.cards.insert(pki().card_spki.clone(), Answer::BlockedCard);
        let out = converse(&run, card_options(version, true), |_, _| {});
        assert!(matches!(out.reject_reason(), FailureReason::AuthenticationFailed(why) if why.contains("blocked")));
        assert!(matches!(out.peer, PeerEvent::Failure(_)));
    }
}

#[test]
fn the_identity_must_name_the_card_unless_anonymous() {
    let config = server_config(TlsVersion::V1_3);
    let mut run = Run::new(&config);
    run.identity = format!("beef@{REALM}");
    let out = converse(&run, card_options(TlsVersion::V1_3, true), |_, _| {});
    assert_eq!(out.reject_reason(), &FailureReason::AuthenticationFailed("identity does not match the client key"));

    run.identity = format!("anonymous@{REALM}");
    let out = converse(&run, card_options(TlsVersion::V1_3, true), |_, _| {});
    out.server_keys();
    assert_eq!(out.authenticated.unwrap().identity, format!("{CARD}@{REALM}"));

    run.identity = String::new();
    let out = converse(&run, card_options(TlsVersion::V1_3, true), |_, _| {});
    out.server_keys();
    assert_eq!(out.authenticated.unwrap().identity, CARD, "no realm to add");

    run.cards.insert(pki().card_spki.clone(), Answer::PinAccepted);
    let out = converse(&run, card_options(TlsVersion::V1_3, true), |_, _| {});
    assert!(matches!(out.reject_reason(), FailureReason::Protocol(_)), "an answer of another kind");
}

#[test]
fn a_server_with_the_wrong_pin_is_refused_before_the_card_shows_its_certificate() {
    for version in BOTH {
        let config = server_config(version);
        let card = TlsPeerOptions { server_pin: [0xaa; 32], ..card_options(version, true) };
        let out = converse(&Run::new(&config), card, |_, _| {});
        assert!(out.server.is_none(), "{version}: the card stopped");
        let PeerEvent::Failure(reason) = &out.peer else { panic!("{version}: {:?}", out.peer) };
        assert_eq!(reason, &FailureReason::AuthenticationFailed("server certificate does not match the pin"));
        assert_eq!(out.card_key_queries, 0);
        let der = &pki().card_cert_der;
        assert!(
            !out.responses.iter().any(|r| r.windows(der.len()).any(|w| w == der.as_slice())),
            "{version}: the card's certificate never left"
        );
    }
}

/// Drives the server with a hand-made client that sends `extra` as
/// application data once its handshake is complete; returns the server's
/// last step.
fn hand_made_client(version: TlsVersion, extra: &[u8]) -> MethodStep {
    let pki = pki();
    let opts = TlsServerOptions { fragment_size: 8000, ..server_options(version, version) };
    let config = TlsServerConfig::new(&opts).unwrap();
    let mut server = EapTlsServer::new(&config, "c0ffee@issuer.example", 0);
    let card = pki.card();
    let client = ClientContext::new(Some((&card.0, &card.1)), pki.server_pin, version, version).unwrap();
    let mut engine = client.connect(None).unwrap().0;
    let mut step = server.start(1);
    let mut id = 1u8;
    let mut sent = false;
    for _ in 0..20 {
        id = id.wrapping_add(1);
        step = match step {
            MethodStep::Send(request) => {
                let data = type_data(&request);
                let frame = Frame::parse(&data, "t").unwrap();
                assert!(!frame.more(), "unfragmented at this size");
                engine.feed(frame.data);
                if engine.handshake().unwrap() && !sent {
                    engine.write_application_data(extra).unwrap();
                    sent = true;
                }
                let response = Packet::new(
                    Code::Response,
                    request[1],
                    EapType::TLS,
                    fragment::encode(0, None, &engine.take_output()),
                );
                server.on_response(id, &response.encode().unwrap())
            }
            MethodStep::Query(Query::CardKey { .. }) => server.on_answer(id, Answer::CardKey { card_id: CARD.into() }),
            other => return other,
        };
    }
    panic!("no end");
}

#[test]
fn application_data_that_is_not_a_confirmation_is_refused() {
    for version in BOTH {
        for extra in [b"hello".as_slice(), b"EAPAY1\x01\x00\x05trunc".as_slice(), b"EAPAY1\x02\x00\x00".as_slice()] {
            match hand_made_client(version, extra) {
                MethodStep::Failure(FailureReason::Protocol(why)) => assert!(!why.is_empty()),
                other => panic!("{version} {extra:?}: {other:?}"),
            }
        }
        // A well-formed one from the hand-made client is taken (the
        // signature is the I/O layer's to check).
        let record =
            confirmation::ConfirmationRecord { details: DETAILS.to_vec(), pan_token: None, signature: vec![1] };
        match hand_made_client(version, &record.encode()) {
            MethodStep::Authenticated(a) => assert_eq!(a.confirmation.as_deref(), Some(DETAILS)),
            other => panic!("{version}: {other:?}"),
        }
    }
}

#[test]
fn a_card_with_empty_details_is_refused() {
    let config = server_config(TlsVersion::V1_3);
    let mut card = card_options(TlsVersion::V1_3, true);
    card.payment = Some(PaymentToSign { details: Vec::new(), pan_token: None });
    let out = converse(&Run::new(&config), card, |_, _| {});
    assert!(matches!(out.reject_reason(), FailureReason::Protocol(why) if why.contains("EAPAY1")), "{:?}", out.server);
}

#[test]
fn the_server_refuses_out_of_order_calls() {
    let config = server_config(TlsVersion::V1_3);
    let mut server = EapTlsServer::new(&config, CARD, 0);
    assert!(matches!(server.on_answer(1, Answer::UnknownCard), MethodStep::Failure(_)));
    let mut server = EapTlsServer::new(&config, CARD, 0);
    assert!(matches!(server.conclude(1, Verdict::accept()), MethodStep::Failure(_)));
    let mut server = EapTlsServer::new(&config, CARD, 0);
    let response = Packet::new(Code::Response, 1, EapType::TLS, vec![0]).encode().unwrap();
    assert!(matches!(server.on_response(1, &response), MethodStep::Failure(_)), "before start");
    let mut server = EapTlsServer::new(&config, CARD, 0);
    server.start(1);
    assert!(matches!(server.on_response(2, &response), MethodStep::Failure(_)), "empty instead of a ClientHello");
    let mut server = EapTlsServer::new(&config, CARD, 0);
    server.start(1);
    let other = Packet::new(Code::Response, 2, EapType::AKA, vec![0]).encode().unwrap();
    assert!(matches!(server.on_response(2, &other), MethodStep::Failure(_)));
}

#[test]
fn bad_card_options_are_errors() {
    let mut card = card_options(TlsVersion::V1_3, true);
    card.private_key_pem = b"nope".to_vec();
    assert!(matches!(EapTlsPeer::new(card), Err(crate::EapError::TlsConfig(_))));
    let mut card = card_options(TlsVersion::V1_3, true);
    card.certificate_pem = pki().server_chain_pem.clone();
    assert!(EapTlsPeer::new(card).is_err(), "certificate of another key");
    assert!(format!("{:?}", card_options(TlsVersion::V1_3, true)).contains("<hidden>"));
}

/// Feeds random and mutated responses to the server method: it must end
/// in a step, never panic, and never authenticate.
#[test]
fn fuzz_the_server_with_random_and_mutated_responses() {
    let config = server_config(TlsVersion::V1_3);
    let config12 = server_config(TlsVersion::V1_2);
    let mut recorded = Vec::new();
    for (cfg, version) in [(&config, TlsVersion::V1_3), (&config12, TlsVersion::V1_2)] {
        let mut run = Run::new(cfg);
        run.fragment_size = 200;
        let card = TlsPeerOptions { fragment_size: 200, ..card_options(version, true) };
        recorded.extend(converse(&run, card, |_, _| {}).responses);
    }
    let mut rng = StdRng::seed_from_u64(0xeab0_7a15);
    for round in 0..300 {
        let cfg = if round % 2 == 0 { &config } else { &config12 };
        let mut server = EapTlsServer::new(cfg, "c0ffee@issuer.example", 0);
        let mut step = server.start(1);
        let mut id = 1u8;
        for _ in 0..40 {
            id = id.wrapping_add(1);
            let pick = rng.gen_range(0..4);
            let packet = match pick {
                0 => (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect::<Vec<u8>>(),
                1 => {
                    let flags = rng.gen::<u8>();
                    let length = rng.gen_bool(0.5).then(|| rng.gen_range(0..100_000u32));
                    let data: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
                    Packet::new(Code::Response, id, EapType::TLS, fragment::encode(flags, length, &data))
                        .encode()
                        .unwrap()
                }
                _ => {
                    let mut p = recorded[rng.gen_range(0..recorded.len())].clone();
                    for _ in 0..rng.gen_range(1..4) {
                        let at = rng.gen_range(0..p.len());
                        match rng.gen_range(0..3) {
                            0 => p[at] ^= 1 << rng.gen_range(0..8),
                            1 => p.truncate(at.max(5)),
                            _ => p[at] = rng.gen(),
                        }
                    }
                    p
                }
            };
            step = match step {
                MethodStep::Query(_) => server.on_answer(id, Answer::CardKey { card_id: CARD.into() }),
                MethodStep::Authenticated(a) => panic!("random input authenticated: {a:?}"),
                MethodStep::Success(_) => panic!("random input succeeded"),
                MethodStep::Failure(_) => break,
                MethodStep::Send(_) => server.on_response(id, &packet),
            };
        }
    }
}

#[test]
fn the_card_survives_random_requests() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let mut card = EapTlsPeer::new(card_options(TlsVersion::V1_3, true)).unwrap();
        let start = Packet::new(Code::Request, 1, EapType::TLS, fragment::start(0)).encode().unwrap();
        assert!(matches!(card.on_request(&start), PeerStep::Send(_)));
        for id in 2..30u8 {
            let flags = rng.gen::<u8>() & !fragment::FLAG_START;
            let data: Vec<u8> = (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect();
            let length = rng.gen_bool(0.3).then(|| rng.gen_range(0..70_000u32));
            let request = Packet::new(Code::Request, id, EapType::TLS, fragment::encode(flags, length, &data));
            if let PeerStep::Fail(_) = card.on_request(&request.encode().unwrap()) {
                break;
            }
            assert!(card.keys().is_none(), "random input never authenticates the server");
        }
    }
}
