//! EAP-AKA / EAP-AKA' peer: the card (RFC 4187 §4-6, RFC 5448 §3).
//!
//! The peer authenticates the issuer through AUTN (a USIM check), proves
//! itself with RES and AT_MAC, and, if configured with payment details,
//! confirms them inside AT_ENCR_DATA (DESIGN.md §4). With result indications
//! it accepts EAP-Success only after the MAC-protected success Notification,
//! which is also where it learns the payment result.

use crate::crypto::mac::constant_time_eq;
use crate::method::{FailureReason, Keys, PeerMemory, PeerMethod, PeerStep};
use crate::packet::{Code, EapType};
use crate::sim_aka::attributes::{at, client_error, notification, subtype, AttributeWriter, Message};
use crate::sim_aka::usim::{Usim, UsimResult};
use crate::sim_aka::{Checkcode, Flavor, SessionKeys, KDF_AKA_PRIME};

/// The card's configuration for one conversation.
pub struct AkaPeerConfig {
    /// AKA, or AKA' with the network name the card expects (its issuer realm).
    pub flavor: Flavor,
    /// The permanent identity, `0<card-id>@realm` or `6<card-id>@realm`.
    pub identity: String,
    /// Ask for protected result indications.
    pub result_ind: bool,
    /// Canonical payment details to confirm, if this is a payment.
    pub confirmation: Option<Vec<u8>>,
}

enum State {
    /// Nothing received yet, or identity rounds.
    Start,
    /// Proposed another KDF; the next challenge must list it first.
    KdfNegotiated { offered: Vec<u16> },
    /// Answered the challenge; waiting for the Notification (result_ind) or Success.
    Answered { keys: SessionKeys },
    /// Success may be accepted.
    Authenticated { keys: SessionKeys },
    /// Failed or declined; Success must not be accepted.
    Finished,
}

/// One AKA/AKA' authentication, peer side.
pub struct AkaPeer {
    config: AkaPeerConfig,
    usim: Usim,
    state: State,
    checkcode: Checkcode,
    result: Option<Vec<u8>>,
}

impl AkaPeer {
    /// A card with this configuration and USIM.
    pub fn new(config: AkaPeerConfig, usim: Usim) -> Self {
        let checkcode = config.flavor.checkcode();
        Self { config, usim, state: State::Start, checkcode, result: None }
    }

    /// The USIM, whose SQN window the caller persists after the conversation.
    pub fn usim(&self) -> &Usim {
        &self.usim
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

    fn on_identity(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
        if !(msg.has(at::PERMANENT_ID_REQ) || msg.has(at::FULLAUTH_ID_REQ) || msg.has(at::ANY_ID_REQ)) {
            return self.client_error(msg.identifier, client_error::UNABLE_TO_PROCESS);
        }
        self.checkcode.absorb(raw);
        let mut w = AttributeWriter::new();
        w.with_actual_length(at::IDENTITY, self.config.identity.as_bytes());
        let (bytes, _) = self.response(msg.identifier, subtype::AKA_IDENTITY, w);
        self.checkcode.absorb(&bytes);
        PeerStep::Send(bytes)
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

    fn on_challenge(&mut self, msg: &Message, raw: &[u8]) -> PeerStep {
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
        let (res, ck, ik) = match self.usim.authenticate(&rand, &autn, require_separation) {
            UsimResult::Ok { res, ck, ik } => (res, ck, ik),
            UsimResult::MacFailure | UsimResult::AmfSeparationBit => return self.reject(id),
            UsimResult::SyncFailure { auts } => {
                let mut w = AttributeWriter::new();
                w.raw(at::AUTS, &auts);
                if matches!(self.config.flavor, Flavor::AkaPrime { .. }) {
                    w.u16(at::KDF, KDF_AKA_PRIME);
                }
                self.state = State::Start;
                return PeerStep::Send(self.response(id, subtype::AKA_SYNCHRONIZATION_FAILURE, w).0);
            }
        };
        let vector = crate::method::AuthVector { rand, autn, xres: res.clone(), ck, ik };
        let keys = self.config.flavor.derive(self.config.identity.as_bytes(), &vector);
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
        let result_ind = self.config.result_ind && msg.has(at::RESULT_IND);
        let mut w = AttributeWriter::new();
        w.res(&res);
        if checkcode_sent.is_some() {
            w.reserved(at::CHECKCODE, &ours);
        }
        if result_ind {
            w.reserved(at::RESULT_IND, &[]);
        }
        if let Some(details) = &self.config.confirmation {
            let mut inner = AttributeWriter::new();
            inner.with_actual_length(at::EAPAY_PAYMENT, details);
            inner.pad_to_block();
            keys.encrypt_into(&mut w, inner);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.response(id, subtype::AKA_CHALLENGE, w);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        self.state = if result_ind { State::Answered { keys } } else { State::Authenticated { keys } };
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
        let keys = match std::mem::replace(&mut self.state, State::Finished) {
            State::Answered { keys, .. } | State::Authenticated { keys } => keys,
            _ => return self.client_error(id, client_error::UNABLE_TO_PROCESS),
        };
        if !keys.k_aut.verify(raw, msg, &[]) {
            return self.client_error(id, client_error::UNABLE_TO_PROCESS);
        }
        match keys.decrypt(msg, self.name()) {
            Ok(inner) => {
                self.result = inner
                    .iter()
                    .find(|a| a.kind == at::EAPAY_RESULT)
                    .and_then(|a| a.with_actual_length())
                    .map(<[u8]>::to_vec);
            }
            Err(_) => return self.client_error(id, client_error::UNABLE_TO_PROCESS),
        }
        let mut w = AttributeWriter::new();
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.response(id, subtype::NOTIFICATION, w);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        if code & notification::S_BIT != 0 {
            self.state = State::Authenticated { keys };
        }
        PeerStep::Send(bytes)
    }
}

impl PeerMethod for AkaPeer {
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
        match msg.subtype {
            subtype::AKA_IDENTITY if matches!(self.state, State::Start) => self.on_identity(&msg, request),
            subtype::AKA_CHALLENGE if matches!(self.state, State::Start | State::KdfNegotiated { .. }) => {
                self.on_challenge(&msg, request)
            }
            subtype::NOTIFICATION => self.on_notification(&msg, request),
            _ => self.client_error(msg.identifier, client_error::UNABLE_TO_PROCESS),
        }
    }

    fn keys(&self) -> Option<Keys> {
        match &self.state {
            State::Authenticated { keys } => Some(keys.exported()),
            _ => None,
        }
    }

    fn result(&self) -> Option<Vec<u8>> {
        self.result.clone()
    }

    fn remember(&self) -> Vec<PeerMemory> {
        vec![PeerMemory::SqnWindow(self.usim.window().clone())]
    }
}
