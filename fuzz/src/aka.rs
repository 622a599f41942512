//! The SIM/AKA/AKA' world: one card, its issuer (an AuC over Milenage that
//! also issues pseudonyms and re-authentication identities), and the
//! settings a fuzz input picks. Everything is deterministic (the RANDs come
//! from a counter), so a recorded conversation replays exactly; the only
//! randomness left is in the methods themselves (AT_IV, NONCE_S, NONCE_MT),
//! which MACs and keys cover but no decision depends on.

use aaa_proto::payment::{PaymentDetails, PaymentOutcome, PaymentResult};
use eap_methods::crypto::milenage::Milenage;
use eap_methods::method::{PeerMemory, ServerMethod};
use eap_methods::peer::PeerSession;
use eap_methods::sim_aka::auc::{generate_triplet, generate_vector, sqn_from_auts, DEFAULT_AMF};
use eap_methods::sim_aka::gsm::GsmSim;
use eap_methods::sim_aka::identity::{prefix, user_part, IdentityKind};
use eap_methods::sim_aka::peer::{Identities, SimAkaPeer, SimAkaPeerConfig, Subscriber};
use eap_methods::sim_aka::server::{SimAkaServer, SimAkaServerConfig};
use eap_methods::sim_aka::sqn::{Sqn, SqnWindow};
use eap_methods::sim_aka::usim::Usim;
use eap_methods::sim_aka::{Flavor, ReauthState};
use eap_methods::{Answer, EapType, Query};

use crate::conversation::World;
use crate::tape::Tape;

/// The card's secret key (TS 35.207 test set 1).
pub const K: [u8; 16] =
    [0x46, 0x5b, 0x5c, 0xe8, 0xb1, 0x99, 0xb4, 0x9f, 0xaa, 0x5f, 0x0a, 0x2e, 0xe2, 0x38, 0xa6, 0xbc];
/// Its OPc.
pub const OPC: [u8; 16] =
    [0xcd, 0x63, 0xcb, 0x71, 0x95, 0x4a, 0x9f, 0x4e, 0x48, 0xa5, 0x99, 0x4e, 0x37, 0xa0, 0x2b, 0xaf];
/// The issuer realm (AKA' network name).
pub const REALM: &str = "issuer.example";
/// The one card the issuer knows.
pub const CARD: &str = "c0ffee";
/// The family's methods, in the order a setup byte picks them.
pub const KINDS: [EapType; 3] = [EapType::SIM, EapType::AKA, EapType::AKA_PRIME];

/// The payment a confirming card signs.
pub fn payment_details() -> Vec<u8> {
    PaymentDetails {
        transaction_id: "T-77".into(),
        merchant_id: "M-42".into(),
        amount: 1250,
        currency: 978,
        installments: 0,
        terminal_nonce: *b"0123456789abcdef",
        terminal_time_ms: 1_700_000_000_000,
    }
    .canonical()
}

/// The result the server hands the card.
pub fn payment_result(approved: bool) -> Vec<u8> {
    let outcome = if approved {
        PaymentOutcome::Approved { approval_code: "A1B2C3".into(), approved_amount: 1250 }
    } else {
        PaymentOutcome::Declined { code: 51 }
    };
    PaymentResult { transaction_id: "T-77".into(), outcome }.encode()
}

/// What the card's subscriber module is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardState {
    /// In step with the issuer.
    Normal,
    /// Its SQN is ahead of the issuer's: AKA resynchronises.
    Ahead,
    /// Another K: AUTN fails at the card, RES and SRES at the server.
    WrongKey,
}

/// One conversation's settings, read from the first two input bytes.
#[derive(Debug, Clone)]
pub struct Setup {
    /// SIM, AKA or AKA'.
    pub kind: EapType,
    /// Pseudonyms and fast re-authentication (three in a row) on.
    pub privacy: bool,
    /// The server offers AT_RESULT_IND.
    pub server_result_ind: bool,
    /// The card asks for it.
    pub peer_result_ind: bool,
    /// The card confirms a payment inside AT_ENCR_DATA.
    pub confirm: bool,
    /// A conversation first (untampered), so this one starts from the
    /// pseudonym or re-authentication identity it left (with privacy).
    pub second: bool,
    /// The card's subscriber module.
    pub card: CardState,
    /// The server offers another method of the family first: the card Naks.
    pub nak: bool,
    /// The server's first EAP identifier.
    pub first_id: u8,
}

impl Setup {
    /// Reads the settings.
    pub fn read(tape: &mut Tape<'_>) -> Self {
        let (a, b) = (tape.byte(), tape.byte());
        Self {
            kind: KINDS[usize::from(a & 0x03) % 3],
            privacy: a & 0x04 != 0,
            server_result_ind: a & 0x08 == 0,
            peer_result_ind: a & 0x10 == 0,
            confirm: a & 0x20 == 0,
            second: a & 0x40 != 0,
            card: match b % 4 {
                1 => CardState::Ahead,
                2 => CardState::WrongKey,
                _ => CardState::Normal,
            },
            nak: b & 0x04 != 0,
            first_id: b & 0xf8,
        }
    }

    /// The setup byte pair that reads as these settings (seeds).
    pub fn bytes(kind: usize, privacy: bool, second: bool, card: CardState, nak: bool) -> [u8; 2] {
        let a = kind as u8 | if privacy { 0x04 } else { 0 } | if second { 0x40 } else { 0 };
        let b = match card {
            CardState::Normal => 0,
            CardState::Ahead => 1,
            CardState::WrongKey => 2,
        } | if nak { 0x04 } else { 0 };
        [a, b]
    }

    fn server_config(&self, kind: EapType) -> SimAkaServerConfig {
        let Some(flavor) = Flavor::of(kind, REALM) else { return SimAkaServerConfig::new(Flavor::Aka) };
        let mut config = SimAkaServerConfig::new(flavor);
        config.result_ind = self.server_result_ind;
        config.privacy = self.privacy;
        config.fast_reauth_limit = if self.privacy { 3 } else { 0 };
        config
    }
}

/// The card's permanent identity for `kind`.
pub fn permanent_identity(kind: EapType) -> String {
    let p = prefix(kind, IdentityKind::Permanent).unwrap_or('0');
    format!("{p}{CARD}@{REALM}")
}

/// The card of a setup, holding `identities` from earlier conversations.
pub fn card(setup: &Setup, identities: Identities) -> PeerSession {
    let config = SimAkaPeerConfig {
        flavor: Flavor::of(setup.kind, REALM).unwrap_or(Flavor::Aka),
        identity: permanent_identity(setup.kind),
        result_ind: setup.peer_result_ind,
        confirmation: setup.confirm.then(payment_details),
        identities,
    };
    let peer = SimAkaPeer::new(config, subscriber(setup));
    PeerSession::new(peer.eap_identity().to_string(), vec![Box::new(peer)])
}

fn subscriber(setup: &Setup) -> Subscriber {
    let k = if setup.card == CardState::WrongKey { [0x55; 16] } else { K };
    if setup.kind == EapType::SIM {
        return Subscriber::Sim(GsmSim::new(&k, &OPC));
    }
    let start = if setup.card == CardState::Ahead { Sqn::new(0x1000) } else { Sqn::new(0) };
    Subscriber::Usim(Usim::new(&k, &OPC, SqnWindow::starting_at(start)))
}

/// The identities a card keeps after a conversation.
pub fn identities_of(peer: &PeerSession) -> Identities {
    peer.remember()
        .into_iter()
        .find_map(|m| match m {
            PeerMemory::SimAkaIdentities(ids) => Some(ids),
            _ => None,
        })
        .unwrap_or_default()
}

/// The issuer: K/OPc of the one card, SQN_HE, and the identities it
/// handed out (a re-authentication identity works once).
pub struct Issuer {
    milenage: Milenage,
    sqn: Sqn,
    challenges: u8,
    pseudonyms: Vec<(String, String)>,
    reauth: Vec<(String, ReauthState)>,
    issued: u32,
}

impl Default for Issuer {
    fn default() -> Self {
        Self {
            milenage: Milenage::new(&K, &OPC),
            sqn: Sqn::new(0),
            challenges: 0,
            pseudonyms: Vec::new(),
            reauth: Vec::new(),
            issued: 0,
        }
    }
}

impl Issuer {
    /// The issuer's answer to a SIM/AKA query.
    pub fn answer(&mut self, query: Query) -> Answer {
        match query {
            Query::AkaVector { card_id, .. }
            | Query::AkaResync { card_id, .. }
            | Query::SimTriplets { card_id, .. }
                if card_id != CARD =>
            {
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
            Query::SimTriplets { .. } => {
                self.challenges = self.challenges.wrapping_add(1);
                let base = self.challenges.wrapping_mul(3);
                Answer::SimTriplets(
                    (0..3).map(|i| generate_triplet(&self.milenage, [base.wrapping_add(i); 16])).collect(),
                )
            }
            Query::Pseudonym { identity, .. } => {
                let user = user_part(&identity);
                match self.pseudonyms.iter().find(|(p, _)| p == user) {
                    Some((_, card_id)) => Answer::Pseudonym { card_id: card_id.clone() },
                    None => Answer::UnknownCard,
                }
            }
            Query::Reauth { identity, .. } => match self.reauth.iter().position(|(r, _)| *r == identity) {
                Some(i) => Answer::Reauth(self.reauth.swap_remove(i).1),
                None => Answer::UnknownCard,
            },
            Query::NextIdentities { method, card_id, reauth } => {
                self.issued += 1;
                let p = format!("{}p{}", prefix(method, IdentityKind::Pseudonym).unwrap_or('2'), self.issued);
                self.pseudonyms.push((p.clone(), card_id));
                let reauth_id = reauth.map(|state| {
                    let r = format!("{}r{}@{REALM}", prefix(method, IdentityKind::Reauth).unwrap_or('4'), self.issued);
                    self.reauth.push((r.clone(), state));
                    r
                });
                Answer::NextIdentities { pseudonym: Some(p), reauth_id }
            }
            _ => Answer::UnknownCard,
        }
    }

    fn vector(&mut self) -> Answer {
        self.sqn = self.sqn.next();
        self.challenges = self.challenges.wrapping_add(1);
        Answer::AkaVector(generate_vector(&self.milenage, self.sqn, DEFAULT_AMF, [self.challenges; 16]))
    }
}

/// The server's world for the family: the issuer, and the method (with
/// the setup's alternative first when the card is to Nak).
pub struct AkaWorld {
    /// The settings.
    pub setup: Setup,
    /// The issuer, kept across the conversations of one input.
    pub issuer: Issuer,
}

impl World for AkaWorld {
    fn methods(&mut self, identity: &str) -> Vec<Box<dyn ServerMethod>> {
        let ours: Box<dyn ServerMethod> =
            Box::new(SimAkaServer::new(self.setup.server_config(self.setup.kind), identity));
        if !self.setup.nak {
            return vec![ours];
        }
        let other = KINDS[(KINDS.iter().position(|k| *k == self.setup.kind).unwrap_or(0) + 1) % 3];
        vec![Box::new(SimAkaServer::new(self.setup.server_config(other), identity)), ours]
    }

    fn answer(&mut self, query: Query) -> Answer {
        self.issuer.answer(query)
    }
}
