//! The EAP-TLS and EAP-TTLS world: a P-256 PKI and the card OpenSSL
//! contexts (built once per process), the server's context (built per
//! input), and the settings a fuzz input picks.
//!
//! The server context holds the session cache. Shared between inputs, it
//! would make an input's path depend on the ones before it, and every input
//! that adds a session would leave more allocations than frees, which
//! libFuzzer's leak check answers with a LeakSanitizer pass. Built per
//! input (the PEM key and chain parsed again), it costs little next to the
//! handshakes.
//!
//! TLS brings its own randomness (OpenSSL's), so a recorded TLS message
//! does not replay after the first ClientHello; the structure (which side
//! is tampered with, when, and how) does.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eap_methods::method::{PeerMemory, ServerMethod, TlsSession};
use eap_methods::peer::PeerSession;
use eap_methods::sim_aka::peer::{Identities, SimAkaPeer, SimAkaPeerConfig, Subscriber};
use eap_methods::sim_aka::server::SimAkaServerConfig;
use eap_methods::sim_aka::sqn::SqnWindow;
use eap_methods::sim_aka::usim::Usim;
use eap_methods::sim_aka::Flavor;
use eap_methods::tls::config::{ClientAuth, TlsServerOptions};
use eap_methods::tls::{CardTls, EapTlsPeer, EapTlsServer, PaymentToSign, TlsPeerOptions, TlsServerConfig, TlsVersion};
use eap_methods::ttls::{EapTtlsPeer, EapTtlsServer, TtlsInner, TtlsPeerInner, TtlsPeerOptions};
use eap_methods::{Answer, EapType, Pin, Query};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use crate::aka::{self, Issuer, CARD, OPC, REALM};
use crate::conversation::World;
use crate::tape::Tape;

/// The card's PIN (TTLS inner PAP).
pub const PIN: &str = "2468";

/// The version ranges a setup picks from: both (1.3 is negotiated), 1.2
/// only, 1.3 only.
const RANGES: [(TlsVersion, TlsVersion); 3] =
    [(TlsVersion::V1_2, TlsVersion::V1_3), (TlsVersion::V1_2, TlsVersion::V1_2), (TlsVersion::V1_3, TlsVersion::V1_3)];

/// Fragment sizes a setup picks from (0: the configured 1024).
const FRAGMENTS: [usize; 4] = [0, 64, 300, 1400];

/// Everything built once per process.
pub struct Contexts {
    /// SubjectPublicKeyInfo of the card's key (the card store's key).
    pub card_spki: Vec<u8>,
    /// Per version range: the server's options.
    servers: Vec<TlsServerOptions>,
    /// Per version range: the EAP-TLS card.
    tls_cards: Vec<Arc<CardTls>>,
    /// Per version range: the EAP-TTLS card (with its signing key).
    ttls_cards: Vec<Arc<CardTls>>,
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("EC key")
}

fn certificate(cn: &str, serial: u32, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
    let name = name.build();
    let mut b = X509Builder::new().expect("certificate");
    b.set_version(2).expect("version");
    b.set_serial_number(&BigNum::from_u32(serial).expect("serial").to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&*name, |(ca, _)| ca.subject_name())).expect("issuer");
    b.set_pubkey(key).expect("key");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(365).expect("time")).expect("not after");
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).expect("sign");
    b.build()
}

/// The process's PKI and contexts.
pub fn contexts() -> &'static Contexts {
    static CONTEXTS: OnceLock<Contexts> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let ca_key = p256();
        let ca = certificate("issuer.example eapay issuer CA", 1, &ca_key, None);
        let server_key = p256();
        let server = certificate("aaa.issuer.example", 2, &server_key, Some((&ca, &ca_key)));
        let card_key = p256();
        let card = certificate(CARD, 3, &card_key, Some((&ca, &ca_key)));
        let server_pin = openssl::sha::sha256(&server_key.public_key_to_der().expect("SPKI"));
        let chain = [server.to_pem().expect("PEM"), ca.to_pem().expect("PEM")].concat();
        let server_key_pem = server_key.private_key_to_pem_pkcs8().expect("PEM");
        let card_key_pem = card_key.private_key_to_pem_pkcs8().expect("PEM");
        let card_cert_pem = card.to_pem().expect("PEM");
        let server = |range: &(TlsVersion, TlsVersion)| TlsServerOptions {
            certificate_chain_pem: chain.clone(),
            private_key_pem: server_key_pem.clone(),
            min_version: range.0,
            max_version: range.1,
            session_lifetime: Duration::from_secs(3600),
            session_cache_size: 8,
            ..TlsServerOptions::default()
        };
        Contexts {
            card_spki: card_key.public_key_to_der().expect("SPKI"),
            servers: RANGES.iter().map(server).collect(),
            tls_cards: RANGES
                .iter()
                .map(|r| Arc::new(CardTls::tls(&card_key_pem, &card_cert_pem, server_pin, r.0, r.1).expect("card")))
                .collect(),
            ttls_cards: RANGES
                .iter()
                .map(|r| Arc::new(CardTls::ttls(&card_key_pem, server_pin, r.0, r.1).expect("card")))
                .collect(),
        }
    })
}

/// What the card answers the tunnel with (TTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inner {
    /// PAP with the right PIN.
    Pap,
    /// PAP with a wrong PIN.
    WrongPin,
    /// EAP-AKA or EAP-AKA'.
    Aka(EapType),
}

/// One conversation's settings, read from the first two input bytes.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Index into the version ranges.
    pub range: usize,
    /// The card confirms a payment (and signs it).
    pub payment: bool,
    /// A conversation first (untampered), so this one resumes its session.
    pub resume: bool,
    /// The server's fragment size for this conversation (Framed-MTU).
    pub server_fragment: usize,
    /// The card's.
    pub peer_fragment: usize,
    /// What the card names itself in EAP-Response/Identity.
    pub identity: String,
    /// TTLS: the inner authentication.
    pub inner: Inner,
    /// The server's first EAP identifier.
    pub first_id: u8,
}

impl Setup {
    /// Reads the settings.
    pub fn read(tape: &mut Tape<'_>) -> Self {
        let (a, b) = (tape.byte(), tape.byte());
        Self {
            range: usize::from(a & 0x03) % 3,
            payment: a & 0x04 == 0,
            resume: a & 0x08 != 0,
            server_fragment: FRAGMENTS[usize::from((a >> 4) % 4)],
            peer_fragment: FRAGMENTS[usize::from((a >> 6) % 4)],
            identity: match b % 4 {
                1 => format!("anonymous@{REALM}"),
                2 => format!("beef@{REALM}"),
                _ => format!("{CARD}@{REALM}"),
            },
            inner: match (b >> 2) % 4 {
                1 => Inner::WrongPin,
                2 => Inner::Aka(EapType::AKA),
                3 => Inner::Aka(EapType::AKA_PRIME),
                _ => Inner::Pap,
            },
            first_id: b & 0xf0,
        }
    }

    /// The setup byte pair for a version range, payment, resumption and
    /// TTLS inner method (seeds); default fragments and identity.
    pub fn bytes(range: usize, payment: bool, resume: bool, inner: Inner) -> [u8; 2] {
        let a = range as u8 | if payment { 0 } else { 0x04 } | if resume { 0x08 } else { 0 };
        let b = match inner {
            Inner::Pap => 0,
            Inner::WrongPin => 1,
            Inner::Aka(EapType::AKA) => 2,
            Inner::Aka(_) => 3,
        } << 2;
        [a, b]
    }

    fn payment(&self) -> Option<PaymentToSign> {
        self.payment.then(|| PaymentToSign { details: aka::payment_details(), pan_token: Some([0x5a; 32]) })
    }
}

/// The TLS session a card keeps after a conversation.
pub fn session_of(peer: &PeerSession) -> Option<TlsSession> {
    peer.remember().into_iter().find_map(|m| match m {
        PeerMemory::TlsSession(s) => Some(s),
        _ => None,
    })
}

/// The EAP-TLS card of a setup, offering `session` for resumption.
pub fn tls_card(setup: &Setup, session: Option<TlsSession>) -> PeerSession {
    let c = contexts();
    let options = TlsPeerOptions {
        identity: setup.identity.clone(),
        fragment_size: if setup.peer_fragment == 0 { 1024 } else { setup.peer_fragment },
        session,
        payment: setup.payment(),
        ..TlsPeerOptions::default()
    };
    let peer = EapTlsPeer::with_card(Arc::clone(&c.tls_cards[setup.range]), options);
    PeerSession::new(setup.identity.clone(), vec![Box::new(peer)])
}

/// The EAP-TTLS card of a setup, offering `session` for resumption.
pub fn ttls_card(setup: &Setup, session: Option<TlsSession>) -> PeerSession {
    let c = contexts();
    let inner = match setup.inner {
        Inner::Pap => TtlsPeerInner::Pap { user: format!("{CARD}@{REALM}"), pin: Pin(PIN.into()) },
        Inner::WrongPin => TtlsPeerInner::Pap { user: format!("{CARD}@{REALM}"), pin: Pin("1357".into()) },
        Inner::Aka(kind) => {
            let identity = aka::permanent_identity(kind);
            let config = SimAkaPeerConfig {
                flavor: Flavor::of(kind, REALM).unwrap_or(Flavor::Aka),
                identity: identity.clone(),
                result_ind: true,
                confirmation: None,
                identities: Identities::default(),
            };
            let usim = Subscriber::Usim(Usim::new(&aka::K, &OPC, SqnWindow::default()));
            TtlsPeerInner::Eap { identity, method: Box::new(SimAkaPeer::new(config, usim)) }
        }
    };
    let mut options = TtlsPeerOptions::new([0; 32], inner);
    options.fragment_size = if setup.peer_fragment == 0 { 1024 } else { setup.peer_fragment };
    options.session = session;
    options.payment = setup.payment();
    // The context is built already; its pin, versions and key are the ones used.
    let peer = EapTtlsPeer::with_card(Arc::clone(&c.ttls_cards[setup.range]), options).expect("the card has a key");
    PeerSession::new(format!("anonymous@{REALM}"), vec![Box::new(peer)])
}

/// The server context of a setup: the one of its input's conversations.
fn server_config(setup: &Setup, auth: ClientAuth) -> TlsServerConfig {
    TlsServerConfig::with_client_auth(&contexts().servers[setup.range], auth).expect("server context")
}

/// The EAP-TLS server's world: the card store knows the card's key.
pub struct TlsWorld {
    setup: Setup,
    config: TlsServerConfig,
}

impl TlsWorld {
    /// The world of a setup.
    pub fn new(setup: Setup) -> Self {
        let config = server_config(&setup, ClientAuth::Required);
        Self { setup, config }
    }
}

impl World for TlsWorld {
    fn methods(&mut self, identity: &str) -> Vec<Box<dyn ServerMethod>> {
        vec![Box::new(EapTlsServer::new(&self.config, identity, self.setup.server_fragment))]
    }

    fn answer(&mut self, query: Query) -> Answer {
        match query {
            Query::CardKey { spki } if spki == contexts().card_spki => Answer::CardKey { card_id: CARD.into() },
            _ => Answer::UnknownCard,
        }
    }

    /// Not for a resumed TLS 1.2 session: its abbreviated handshake ends
    /// with the card's Finished, after the server's (RFC 5216 §2.1.3), so
    /// nothing authenticated follows the card's last message. A relay that
    /// acknowledges that message's fragments itself and forges EAP-Success
    /// makes the card end authenticated (it did authenticate the server)
    /// though the server never saw its Finished; TLS 1.3's commitment
    /// message (RFC 9190 §2.5) is what closes that.
    fn handshake_proves_server(&self) -> bool {
        !(self.setup.resume && RANGES[self.setup.range].1 == TlsVersion::V1_2)
    }
}

/// The EAP-TTLS server's world: the PIN check and the inner AKA issuer.
pub struct TtlsWorld {
    setup: Setup,
    config: TlsServerConfig,
    issuer: Issuer,
}

impl TtlsWorld {
    /// The world of a setup.
    pub fn new(setup: Setup) -> Self {
        let config = server_config(&setup, ClientAuth::None);
        Self { setup, config, issuer: Issuer::default() }
    }
}

impl World for TtlsWorld {
    fn methods(&mut self, identity: &str) -> Vec<Box<dyn ServerMethod>> {
        let config = &self.config;
        let inner_aka = |flavor| SimAkaServerConfig { result_ind: false, ..SimAkaServerConfig::new(flavor) };
        let inner = TtlsInner {
            pap: true,
            eap: vec![inner_aka(Flavor::Aka), inner_aka(Flavor::AkaPrime { network_name: REALM.into() })],
        };
        let fragment = if self.setup.server_fragment == 0 { 1024 } else { self.setup.server_fragment };
        vec![Box::new(EapTtlsServer::new(config, identity, fragment, inner))]
    }

    fn answer(&mut self, query: Query) -> Answer {
        match query {
            Query::Pin { card_id, pin } if card_id == CARD && pin.0 == PIN => Answer::PinAccepted,
            Query::Pin { .. } => Answer::PinRejected { tries_left: 2 },
            other => self.issuer.answer(other),
        }
    }

    /// Not for inner PAP without a payment: PAP has no answer in the
    /// tunnel (RFC 5281 §11.2.5), so once the card's credentials have gone
    /// out only EAP-Success, never authenticated, follows; a relay that
    /// acknowledges their fragments itself and forges it makes the card end
    /// authenticated (it did authenticate the server) though the server
    /// never checked the PIN. With a payment the card waits for the
    /// protected result.
    fn handshake_proves_server(&self) -> bool {
        self.setup.payment || matches!(self.setup.inner, Inner::Aka(_))
    }
}
