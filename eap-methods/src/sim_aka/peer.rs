//! The SIM/AKA family's peer: the card (RFC 4186, RFC 4187, RFC 5448).
//!
//! The peer authenticates the issuer (AUTN through the USIM for AKA; the
//! MAC over NONCE_MT for SIM), proves itself with RES or SRES and AT_MAC,
//! and, if configured with payment details, confirms them inside
//! AT_ENCR_DATA (DESIGN.md §4). With result indications it accepts
//! EAP-Success only after the MAC-protected success Notification, which is
//! also where it learns the payment result.
//!
//! Privacy (RFC 4187 §4.1.1.7, §5): the card names itself with its fast
//! re-authentication identity if it has one, its pseudonym otherwise, and
//! its permanent identity only when the server asks for it. Every identity
//! is used once: as soon as the card has chosen one for this conversation,
//! [`PeerMethod::remember`] no longer reports it, and whatever the server
//! hands out in AT_NEXT_PSEUDONYM / AT_NEXT_REAUTH_ID replaces it.

use std::fmt;

use crate::crypto::mac::constant_time_eq;
use crate::method::{AuthVector, FailureReason, Keys, PeerMemory, PeerMethod, PeerStep, Triplet};
use crate::packet::{Code, EapType};
use crate::sim_aka::attributes::{at, client_error, notification, subtype, AttributeWriter, Message};
use crate::sim_aka::gsm::GsmSim;
use crate::sim_aka::identity::realm;
use crate::sim_aka::usim::{Usim, UsimResult};
use crate::sim_aka::{
    encrypted_counter, encrypted_value, Checkcode, Flavor, ReauthSecret, SessionKeys, KDF_AKA_PRIME, SIM_VERSIONS,
};

/// A fast re-authentication identity the card holds, with what it needs
/// to use it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReauthIdentity {
    /// The identity (a whole NAI, as the server sent it).
    pub identity: String,
    /// The counter of the last exchange with these keys (0 after the full
    /// authentication); the server must send a larger one.
    pub counter: u16,
    /// The keys.
    pub secret: ReauthSecret,
}

impl fmt::Debug for ReauthIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReauthIdentity").field("counter", &self.counter).finish_non_exhaustive()
    }
}

/// The identities a card holds between conversations.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// The pseudonym for the next full authentication (a username; the
    /// card adds its realm).
    pub pseudonym: Option<String>,
    /// The fast re-authentication identity.
    pub reauth: Option<ReauthIdentity>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Identities are not secret from the issuer, but they are what
        // keeps terminals from linking payments: keep them out of logs too.
        f.debug_struct("Identities")
            .field("pseudonym", &self.pseudonym.as_ref().map(|_| "<hidden>"))
            .field("reauth", &self.reauth)
            .finish()
    }
}

/// The subscriber module: a USIM (AKA, AKA') or a SIM (EAP-SIM).
// One per conversation: the USIM's SQN window being larger does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Subscriber {
    /// Milenage with SQN freshness.
    Usim(Usim),
    /// GSM-Milenage.
    Sim(GsmSim),
    /// Published triplets (RFC 4186 Appendix A), for the tests.
    #[cfg(test)]
    Triplets(Vec<Triplet>),
}

impl Subscriber {
    /// RUN GSM ALGORITHM, for a SIM.
    fn gsm(&self, rand: &[u8; 16]) -> Option<Triplet> {
        match self {
            Self::Sim(sim) => Some(sim.run(rand)),
            #[cfg(test)]
            Self::Triplets(t) => t.iter().find(|t| t.rand == *rand).cloned(),
            Self::Usim(_) => None,
        }
    }
}

/// The card's configuration for one conversation.
pub struct SimAkaPeerConfig {
    /// SIM, AKA, or AKA' with the network name the card expects (its issuer realm).
    pub flavor: Flavor,
    /// The permanent identity, e.g. `0<card-id>@realm`.
    pub identity: String,
    /// Ask for protected result indications.
    pub result_ind: bool,
    /// Canonical payment details to confirm, if this is a payment.
    pub confirmation: Option<Vec<u8>>,
    /// The pseudonym and re-authentication identity from earlier conversations.
    pub identities: Identities,
}

enum State {
    /// Nothing received yet, or identity rounds.
    Start,
    /// Proposed another KDF; the next challenge must list it first.
    KdfNegotiated { offered: Vec<u16> },
    /// Answered the challenge; waiting for the Notification (result_ind) or Success.
    Answered { keys: SessionKeys, counter: Option<u16> },
    /// Success may be accepted.
    Authenticated { keys: SessionKeys, counter: Option<u16> },
    /// Failed or declined; Success must not be accepted.
    Finished,
}

/// What this conversation's SIM-Start response sent.
struct SimStart {
    nonce_mt: [u8; 16],
    version_list: Vec<u8>,
}

/// One SIM/AKA/AKA' authentication, peer side.
pub struct SimAkaPeer {
    config: SimAkaPeerConfig,
    subscriber: Subscriber,
    state: State,
    checkcode: Checkcode,
    result: Option<Vec<u8>>,
    /// The identity named last (EAP-Response/Identity or AT_IDENTITY): the
    /// keys are bound to it.
    current: String,
    /// The re-authentication identity named in this conversation, if any.
    reauth_in_use: Option<ReauthIdentity>,
    /// The pseudonym named in EAP-Response/Identity, if any: the answer to
    /// AT_FULLAUTH_ID_REQ in this conversation.
    named_pseudonym: Option<String>,
    /// What the card keeps for its next conversations.
    memory: Identities,
    sim_start: Option<SimStart>,
}

impl SimAkaPeer {
    /// A card with this configuration and subscriber module. The card's
    /// EAP-Response/Identity must be [`SimAkaPeer::eap_identity`].
    pub fn new(config: SimAkaPeerConfig, subscriber: Subscriber) -> Self {
        let checkcode = config.flavor.checkcode();
        let mut memory = config.identities.clone();
        // The first identity the card names: it is used from now on.
        let (current, reauth_in_use, named_pseudonym) = match memory.reauth.take() {
            Some(r) => (r.identity.clone(), Some(r), None),
            None => match memory.pseudonym.take() {
                Some(p) => {
                    let p = with_realm(&p, &config.identity);
                    (p.clone(), None, Some(p))
                }
                None => (config.identity.clone(), None, None),
            },
        };
        Self {
            config,
            subscriber,
            state: State::Start,
            checkcode,
            result: None,
            current,
            reauth_in_use,
            named_pseudonym,
            memory,
            sim_start: None,
        }
    }

    /// The identity for EAP-Response/Identity: the re-authentication
    /// identity, else the pseudonym, else the permanent identity.
    pub fn eap_identity(&self) -> &str {
        &self.current
    }

    /// The USIM, whose SQN window the caller persists after the conversation.
    pub fn usim(&self) -> Option<&Usim> {
        match &self.subscriber {
            Subscriber::Usim(u) => Some(u),
            _ => None,
        }
    }

    /// Replaces the NONCE_MT this peer chose, so a test can replay a
    /// published exchange.
    #[cfg(test)]
    pub(crate) fn set_nonce_mt_for_test(&mut self, nonce_mt: [u8; 16]) {
        if let Some(start) = self.sim_start.as_mut() {
            start.nonce_mt = nonce_mt;
        }
    }

    fn name(&self) -> &'static str {
        self.config.flavor.name()
    }

    fn response(&self, id: u8, subtype: u8, w: AttributeWriter) -> (Vec<u8>, Option<usize>) {
        w.into_packet(Code::Response, id, self.config.flavor.eap_type(), subtype)
    }

    fn client_error(&mut self, id: u8, code: u16) -> PeerStep {
        self.state = State::Finished;
        let mut w = AttributeWriter::new();
        w.u16(at::CLIENT_ERROR_CODE, code);
        PeerStep::Send(self.response(id, subtype::CLIENT_ERROR, w).0)
    }

    fn reject(&mut self, id: u8) -> PeerStep {
        self.state = State::Finished;
        PeerStep::Send(self.response(id, subtype::AKA_AUTHENTICATION_REJECT, AttributeWriter::new()).0)
    }

    /// The identity to answer an identity request with (RFC 4187 §4.1.6),
    /// used up once named.
    fn answer_identity(&mut self, msg: &Message) -> Option<String> {
        let identity = if msg.has(at::ANY_ID_REQ) {
            match self.memory.reauth.take() {
                Some(r) => {
                    let id = r.identity.clone();
                    self.reauth_in_use = Some(r);
                    id
                }
                None => self.take_pseudonym().unwrap_or_else(|| self.config.identity.clone()),
            }
        } else if msg.has(at::FULLAUTH_ID_REQ) {
            self.reauth_in_use = None;
            self.take_pseudonym().unwrap_or_else(|| self.config.identity.clone())
        } else if msg.has(at::PERMANENT_ID_REQ) {
            self.reauth_in_use = None;
            self.config.identity.clone()
        } else {
            return None;
        };
        self.current = identity.clone();
        Some(identity)
    }

    fn take_pseudonym(&mut self) -> Option<String> {
        match self.memory.pseudonym.take() {
            Some(p) => Some(with_realm(&p, &self.config.identity)),
            None => self.named_pseudonym.clone(),
        }
    }

    fn on_aka_identity(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
        let Some(identity) = self.answer_identity(msg) else {
            return self.client_error(msg.identifier, client_error::UNABLE_TO_PROCESS);
        };
        self.checkcode.absorb(raw);
        let mut w = AttributeWriter::new();
        w.with_actual_length(at::IDENTITY, identity.as_bytes());
        let (bytes, _) = self.response(msg.identifier, subtype::AKA_IDENTITY, w);
        self.checkcode.absorb(&bytes);
        PeerStep::Send(bytes)
    }

    /// SIM-Start (RFC 4186 §9.2): version negotiation, an optional identity
    /// request, and NONCE_MT for a full authentication.
    fn on_sim_start(&mut self, msg: &Message) -> PeerStep {
        let id = msg.identifier;
        let Some(list) = msg.get(at::VERSION_LIST).and_then(|a| a.with_actual_length()).map(<[u8]>::to_vec) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let offered: Vec<u16> = list.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        let Some(&version) = SIM_VERSIONS.iter().find(|v| offered.contains(v)) else {
            return self.client_error(id, client_error::UNSUPPORTED_VERSION);
        };
        let asked = msg.has(at::ANY_ID_REQ) || msg.has(at::FULLAUTH_ID_REQ) || msg.has(at::PERMANENT_ID_REQ);
        let mut w = AttributeWriter::new();
        let mut reauth = false;
        if asked {
            let Some(identity) = self.answer_identity(msg) else {
                return self.client_error(id, client_error::UNABLE_TO_PROCESS);
            };
            reauth = self.reauth_in_use.as_ref().is_some_and(|r| r.identity == identity);
            w.with_actual_length(at::IDENTITY, identity.as_bytes());
        }
        if !reauth {
            let nonce_mt: [u8; 16] = rand::random();
            w.reserved(at::NONCE_MT, &nonce_mt);
            w.u16(at::SELECTED_VERSION, version);
            self.sim_start = Some(SimStart { nonce_mt, version_list: list });
        }
        PeerStep::Send(self.response(id, subtype::SIM_START, w).0)
    }

    /// RFC 5448 §3.2. Returns the response to send if the offer must be
    /// renegotiated or refused, `None` to go on with KDF 1.
    fn check_kdf(&mut self, msg: &Message) -> Option<PeerStep> {
        let offered: Vec<u16> = msg.get_all(at::KDF).filter_map(|a| a.u16()).collect();
        if let State::KdfNegotiated { offered: original } = &self.state {
            // The re-sent challenge must list our choice first, then the
            // original offer, or someone tampered with the first one.
            let mut expected = vec![KDF_AKA_PRIME];
            expected.extend_from_slice(original);
            if offered != expected {
                return Some(self.client_error(msg.identifier, client_error::UNABLE_TO_PROCESS));
            }
            return None;
        }
        match offered.first() {
            Some(&KDF_AKA_PRIME) => None,
            _ if offered.contains(&KDF_AKA_PRIME) => {
                self.state = State::KdfNegotiated { offered };
                let mut w = AttributeWriter::new();
                w.u16(at::KDF, KDF_AKA_PRIME);
                Some(PeerStep::Send(self.response(msg.identifier, subtype::AKA_CHALLENGE, w).0))
            }
            _ => Some(self.client_error(msg.identifier, client_error::UNABLE_TO_PROCESS)),
        }
    }

    fn on_aka_challenge(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
        let id = msg.identifier;
        if let Flavor::AkaPrime { network_name } = self.config.flavor.clone() {
            if let Some(step) = self.check_kdf(msg) {
                return step;
            }
            // RFC 5448 §3.1: the card checks the network name it is bound to.
            let name = msg.get(at::KDF_INPUT).and_then(|a| a.with_actual_length());
            if name != Some(network_name.as_bytes()) {
                return self.reject(id);
            }
        }
        // AT_BIDDING (RFC 5448 §4) matters only to a peer that could also do
        // AKA'; an eapay card is issued for exactly one method, so it has
        // nothing to be bid down from and ignores the attribute.
        let (Some(rand), Some(autn)) = (msg.fixed::<16>(at::RAND), msg.fixed::<16>(at::AUTN)) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let require_separation = matches!(self.config.flavor, Flavor::AkaPrime { .. });
        let Subscriber::Usim(usim) = &mut self.subscriber else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let (res, ck, ik) = match usim.authenticate(&rand, &autn, require_separation) {
            UsimResult::Ok { res, ck, ik } => (res, ck, ik),
            UsimResult::MacFailure | UsimResult::AmfSeparationBit => return self.reject(id),
            UsimResult::SyncFailure { auts } => {
                let mut w = AttributeWriter::new();
                w.raw(at::AUTS, &auts);
                if require_separation {
                    w.u16(at::KDF, KDF_AKA_PRIME);
                }
                self.state = State::Start;
                return PeerStep::Send(self.response(id, subtype::AKA_SYNCHRONIZATION_FAILURE, w).0);
            }
        };
        let vector = AuthVector { rand, autn, xres: res.clone(), ck, ik };
        let keys = self.config.flavor.derive(self.current.as_bytes(), &vector);
        if !keys.k_aut.verify(raw, msg, &[]) {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        let ours = self.checkcode.value();
        let checkcode_sent = msg.get(at::CHECKCODE).map(|a| a.after_reserved().to_vec());
        if let Some(theirs) = &checkcode_sent {
            if !constant_time_eq(theirs, &ours) {
                return self.client_error(id, client_error::UNABLE_TO_PROCESS);
            }
        } else if !ours.is_empty() {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        if !self.learn_identities(msg, &keys) {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        let mut w = AttributeWriter::new();
        w.res(&res);
        if checkcode_sent.is_some() {
            w.reserved(at::CHECKCODE, &ours);
        }
        self.answer_challenge(id, msg, keys, w, subtype::AKA_CHALLENGE, &[])
    }

    fn on_sim_challenge(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
        let id = msg.identifier;
        let Some(start) = self.sim_start.take() else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let Some(rands) = msg.get(at::RAND).map(|a| a.after_reserved().to_vec()) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        // RFC 4186 §9.3: two or three RANDs, all different.
        if rands.len() % 16 != 0 || rands.len() / 16 > 3 {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        if rands.len() / 16 < 2 {
            return self.client_error(id, client_error::INSUFFICIENT_CHALLENGES);
        }
        let rands: Vec<[u8; 16]> = rands.chunks_exact(16).filter_map(|c| c.try_into().ok()).collect();
        if rands.iter().enumerate().any(|(i, r)| rands[..i].contains(r)) {
            return self.client_error(id, client_error::RANDS_NOT_FRESH);
        }
        let Some(triplets) = rands.iter().map(|r| self.subscriber.gsm(r)).collect::<Option<Vec<Triplet>>>() else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let Some(&selected) = SIM_VERSIONS.first() else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let keys =
            Flavor::derive_sim(self.current.as_bytes(), &triplets, &start.nonce_mt, &start.version_list, selected);
        if !keys.k_aut.verify(raw, msg, &start.nonce_mt) {
            // Not our issuer: it does not know Kc.
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        if !self.learn_identities(msg, &keys) {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        let sres: Vec<u8> = triplets.iter().flat_map(|t| t.sres).collect();
        self.answer_challenge(id, msg, keys, AttributeWriter::new(), subtype::SIM_CHALLENGE, &sres)
    }

    /// AT_NEXT_PSEUDONYM and AT_NEXT_REAUTH_ID of a full authentication:
    /// they replace whatever the card held. False if AT_ENCR_DATA is bad.
    fn learn_identities(&mut self, msg: &Message, keys: &SessionKeys) -> bool {
        let Ok(inner) = keys.decrypt(msg, self.name()) else { return false };
        let pseudonym = encrypted_value(&inner, at::NEXT_PSEUDONYM).and_then(|v| String::from_utf8(v).ok());
        let reauth = encrypted_value(&inner, at::NEXT_REAUTH_ID).and_then(|v| String::from_utf8(v).ok());
        if pseudonym.is_some() {
            self.memory.pseudonym = pseudonym;
        }
        // A full authentication makes any earlier re-authentication keys stale.
        self.memory.reauth =
            reauth.map(|identity| ReauthIdentity { identity, counter: 0, secret: keys.reauth.clone() });
        true
    }

    /// The challenge response: the proof, AT_CHECKCODE or nothing, the
    /// payment confirmation, AT_RESULT_IND, AT_MAC over `mac_extra`.
    fn answer_challenge(
        &mut self,
        id: u8,
        msg: &Message,
        keys: SessionKeys,
        mut w: AttributeWriter,
        sub: u8,
        mac_extra: &[u8],
    ) -> PeerStep {
        let result_ind = self.config.result_ind && msg.has(at::RESULT_IND);
        if result_ind {
            w.reserved(at::RESULT_IND, &[]);
        }
        if let Some(details) = &self.config.confirmation {
            let mut inner = AttributeWriter::new();
            inner.with_actual_length(at::EAPAY_PAYMENT, details);
            keys.encrypt_into(&mut w, inner);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.response(id, sub, w);
        keys.k_aut.sign(&mut bytes, mac, mac_extra);
        self.state = if result_ind {
            State::Answered { keys, counter: None }
        } else {
            State::Authenticated { keys, counter: None }
        };
        PeerStep::Send(bytes)
    }

    /// Fast re-authentication (RFC 4187 §5, RFC 4186 §5).
    fn on_reauth(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
        let id = msg.identifier;
        let Some(held) = self.reauth_in_use.take() else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        // K_encr and K_aut are the full authentication's.
        let base = held.secret.protection();
        if !base.k_aut.verify(raw, msg, &[]) {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        let Ok(inner) = base.decrypt(msg, self.name()) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let (Some(counter), Some(nonce_s)) = (
            encrypted_counter(&inner, at::COUNTER),
            inner.iter().find(|a| a.kind == at::NONCE_S).and_then(|a| <[u8; 16]>::try_from(a.after_reserved()).ok()),
        ) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        let mut w = AttributeWriter::new();
        let mut reply = AttributeWriter::new();
        reply.u16(at::COUNTER, counter);
        if counter <= held.counter {
            // An old or replayed request: no keys, and a full authentication next.
            reply.reserved(at::COUNTER_TOO_SMALL, &[]);
            base.encrypt_into(&mut w, reply);
            w.reserved(at::MAC, &[0; 16]);
            let (mut bytes, mac) = self.response(id, subtype::REAUTHENTICATION, w);
            base.k_aut.sign(&mut bytes, mac, &nonce_s);
            self.state = State::Start;
            return PeerStep::Send(bytes);
        }
        let keys = held.secret.reauth_keys(self.current.as_bytes(), counter, &nonce_s);
        let next = encrypted_value(&inner, at::NEXT_REAUTH_ID).and_then(|v| String::from_utf8(v).ok());
        self.memory.reauth = next.map(|identity| ReauthIdentity { identity, counter, secret: held.secret.clone() });
        if let Some(details) = &self.config.confirmation {
            reply.with_actual_length(at::EAPAY_PAYMENT, details);
        }
        keys.encrypt_into(&mut w, reply);
        let result_ind = self.config.result_ind && msg.has(at::RESULT_IND);
        if result_ind {
            w.reserved(at::RESULT_IND, &[]);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.response(id, subtype::REAUTHENTICATION, w);
        keys.k_aut.sign(&mut bytes, mac, &nonce_s);
        let counter = Some(counter);
        self.state =
            if result_ind { State::Answered { keys, counter } } else { State::Authenticated { keys, counter } };
        PeerStep::Send(bytes)
    }

    fn on_notification(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
        let id = msg.identifier;
        let Some(code) = msg.get(at::NOTIFICATION).and_then(|a| a.u16()) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        if code & notification::P_BIT != 0 {
            // Before any challenge: nothing to protect, nothing learnt.
            self.state = State::Finished;
            return PeerStep::Send(self.response(id, subtype::NOTIFICATION, AttributeWriter::new()).0);
        }
        let (keys, counter) = match std::mem::replace(&mut self.state, State::Finished) {
            State::Answered { keys, counter } | State::Authenticated { keys, counter } => (keys, counter),
            _ => return self.client_error(id, client_error::UNABLE_TO_PROCESS),
        };
        if !keys.k_aut.verify(raw, msg, &[]) {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        let Ok(inner) = keys.decrypt(msg, self.name()) else {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        };
        // RFC 4187 §9.10: in a re-authentication the counter comes along.
        if counter.is_some() && encrypted_counter(&inner, at::COUNTER) != counter {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        self.result = encrypted_value(&inner, at::EAPAY_RESULT);
        let mut w = AttributeWriter::new();
        if let Some(c) = counter {
            let mut reply = AttributeWriter::new();
            reply.u16(at::COUNTER, c);
            keys.encrypt_into(&mut w, reply);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.response(id, subtype::NOTIFICATION, w);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        if code & notification::S_BIT != 0 {
            self.state = State::Authenticated { keys, counter };
        }
        PeerStep::Send(bytes)
    }
}

/// A pseudonym is a username (RFC 4187 §4.1.1.7): the card adds the realm
/// of its permanent identity.
fn with_realm(pseudonym: &str, permanent: &str) -> String {
    match (pseudonym.contains('@'), realm(permanent)) {
        (false, Some(r)) => format!("{pseudonym}@{r}"),
        _ => pseudonym.to_string(),
    }
}

impl PeerMethod for SimAkaPeer {
    fn kind(&self) -> EapType {
        self.config.flavor.eap_type()
    }

    fn on_request(&mut self, request: &[u8]) -> PeerStep {
        let msg = match Message::decode(request, self.name()) {
            Ok(m) => m,
            Err(_) => {
                let id = request.get(1).copied().unwrap_or(0);
                return self.client_error(id, client_error::UNABLE_TO_PROCESS);
            }
        };
        if matches!(self.state, State::Finished) {
            return PeerStep::Fail(FailureReason::Protocol(format!("{}: request after the end", self.name())));
        }
        let sim = matches!(self.config.flavor, Flavor::Sim);
        let start = matches!(self.state, State::Start);
        match msg.subtype {
            subtype::AKA_IDENTITY if !sim && start => self.on_aka_identity(&msg, request),
            subtype::AKA_CHALLENGE if !sim && matches!(self.state, State::Start | State::KdfNegotiated { .. }) => {
                self.on_aka_challenge(&msg, request)
            }
            subtype::SIM_START if sim && start => self.on_sim_start(&msg),
            subtype::SIM_CHALLENGE if sim && start => self.on_sim_challenge(&msg, request),
            subtype::REAUTHENTICATION if start => self.on_reauth(&msg, request),
            subtype::NOTIFICATION => self.on_notification(&msg, request),
            _ => self.client_error(msg.identifier, client_error::UNABLE_TO_PROCESS),
        }
    }

    fn keys(&self) -> Option<Keys> {
        match &self.state {
            State::Authenticated { keys, .. } => Some(keys.exported()),
            _ => None,
        }
    }

    fn result(&self) -> Option<Vec<u8>> {
        self.result.clone()
    }

    fn remember(&self) -> Vec<PeerMemory> {
        let mut memory = vec![PeerMemory::SimAkaIdentities(self.memory.clone())];
        if let Subscriber::Usim(usim) = &self.subscriber {
            memory.push(PeerMemory::SqnWindow(usim.window().clone()));
        }
        memory
    }
}
