//! EAP-AKA / EAP-AKA' server (RFC 4187 §4-6, RFC 5448 §3, RFC 9048).
//!
//! Full authentication: an optional AKA-Identity round (when the
//! EAP-Response/Identity is not a permanent identity), then AKA-Challenge.
//! With AT_RESULT_IND agreed, the verdict travels in a MAC-protected
//! Notification before EAP-Success/Failure, which is where eapay delivers the
//! payment result to the card (AT_EAPAY_RESULT, DESIGN.md §4).

use crate::method::{Answer, Authenticated, FailureReason, MethodStep, Query, ServerMethod, Verdict};
use crate::packet::{Code, EapType};
use crate::sim_aka::attributes::{at, notification, subtype, AttributeWriter, Message};
use crate::sim_aka::identity::{classify, IdentityKind};
use crate::sim_aka::{Checkcode, Flavor, SessionKeys, KDF_AKA_PRIME};

/// Server policy for AKA and AKA'.
#[derive(Debug, Clone)]
pub struct AkaServerConfig {
    /// AKA or AKA' (with the network name, the issuer realm).
    pub flavor: Flavor,
    /// Offer AT_RESULT_IND (protected result indications). eapay needs it
    /// to deliver the payment result to the card; standard peers may ignore it.
    pub result_ind: bool,
    /// Resynchronisations allowed in one conversation (RFC 4187 §6.3.1
    /// expects at most one).
    pub max_resyncs: u8,
}

impl AkaServerConfig {
    /// Defaults for `flavor`: result indications on, one resynchronisation.
    pub fn new(flavor: Flavor) -> Self {
        Self { flavor, result_ind: true, max_resyncs: 1 }
    }
}

enum State {
    /// Sent AKA-Identity; waiting for AT_IDENTITY.
    Identity,
    /// Asked for a vector (first time or after resync).
    WaitVector,
    /// Sent AKA-Challenge.
    Challenge {
        rand: [u8; 16],
        xres: Vec<u8>,
        keys: SessionKeys,
    },
    /// Reported Authenticated; waiting for the caller's verdict.
    Verdict {
        keys: SessionKeys,
        result_ind: bool,
    },
    /// Sent the protected Notification; waiting for its acknowledgement.
    Notified {
        keys: SessionKeys,
        approved: bool,
    },
    Done,
}

/// One AKA/AKA' authentication, server side.
pub struct AkaServer {
    config: AkaServerConfig,
    /// The identity the keys are bound to: the last AT_IDENTITY, or the
    /// EAP-Response/Identity if there was no identity round.
    identity: String,
    state: State,
    checkcode: Checkcode,
    resyncs: u8,
}

impl AkaServer {
    /// A conversation with a peer that sent `identity` in EAP-Response/Identity.
    pub fn new(config: AkaServerConfig, identity: &str) -> Self {
        let checkcode = config.flavor.checkcode();
        Self { config, identity: identity.to_string(), state: State::Done, checkcode, resyncs: 0 }
    }

    fn name(&self) -> &'static str {
        self.config.flavor.name()
    }

    fn fail(&mut self, reason: FailureReason) -> MethodStep {
        self.state = State::Done;
        MethodStep::Failure(reason)
    }

    fn protocol(&mut self, why: &str) -> MethodStep {
        let reason = FailureReason::Protocol(format!("{}: {why}", self.name()));
        self.fail(reason)
    }

    fn packet(&self, id: u8, subtype: u8, w: AttributeWriter) -> (Vec<u8>, Option<usize>) {
        w.into_packet(Code::Request, id, self.config.flavor.eap_type(), subtype)
    }

    fn identity_request(&mut self, id: u8) -> MethodStep {
        let mut w = AttributeWriter::new();
        w.reserved(at::PERMANENT_ID_REQ, &[]);
        let (bytes, _) = self.packet(id, subtype::AKA_IDENTITY, w);
        self.checkcode.absorb(&bytes);
        self.state = State::Identity;
        MethodStep::Send(bytes)
    }

    fn challenge(&mut self, id: u8, v: crate::method::AuthVector) -> MethodStep {
        let keys = self.config.flavor.derive(self.identity.as_bytes(), &v);
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &v.rand).reserved(at::AUTN, &v.autn);
        if let Flavor::AkaPrime { network_name } = &self.config.flavor {
            w.with_actual_length(at::KDF_INPUT, network_name.as_bytes());
            w.u16(at::KDF, KDF_AKA_PRIME);
        }
        w.reserved(at::CHECKCODE, &self.checkcode.value());
        if self.config.result_ind {
            w.reserved(at::RESULT_IND, &[]);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.packet(id, subtype::AKA_CHALLENGE, w);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        self.state = State::Challenge { rand: v.rand, xres: v.xres, keys };
        MethodStep::Send(bytes)
    }

    fn on_identity(&mut self, msg: &Message, raw: &[u8]) -> MethodStep {
        if msg.subtype != subtype::AKA_IDENTITY {
            return self.protocol("expected AKA-Identity");
        }
        let Some(identity) = msg.get(at::IDENTITY).and_then(|a| a.with_actual_length()) else {
            return self.protocol("AKA-Identity without AT_IDENTITY");
        };
        let identity = String::from_utf8_lossy(identity).into_owned();
        self.checkcode.absorb(raw);
        if classify(self.config.flavor.eap_type(), &identity) != IdentityKind::Permanent {
            return self.fail(FailureReason::UnknownIdentity);
        }
        self.identity = identity;
        self.state = State::WaitVector;
        MethodStep::Query(Query::AkaVector { identity: self.identity.clone() })
    }

    fn on_challenge(&mut self, msg: &Message, raw: &[u8]) -> MethodStep {
        let State::Challenge { rand, xres, keys } = std::mem::replace(&mut self.state, State::Done) else {
            return self.protocol("challenge response out of order");
        };
        match msg.subtype {
            subtype::AKA_CHALLENGE => {}
            subtype::AKA_AUTHENTICATION_REJECT => return self.fail(FailureReason::RejectedByPeer),
            subtype::AKA_SYNCHRONIZATION_FAILURE => {
                // AT_AUTS has no reserved octets: 14 octets follow the length.
                let Some(auts) = msg.get(at::AUTS).and_then(|a| <[u8; 14]>::try_from(a.value.as_slice()).ok()) else {
                    return self.protocol("Synchronization-Failure without a valid AT_AUTS");
                };
                if self.resyncs >= self.config.max_resyncs {
                    return self.fail(FailureReason::AuthenticationFailed("repeated synchronization failure"));
                }
                self.resyncs += 1;
                self.state = State::WaitVector;
                return MethodStep::Query(Query::AkaResync { identity: self.identity.clone(), rand, auts });
            }
            subtype::CLIENT_ERROR => {
                let code = msg.get(at::CLIENT_ERROR_CODE).and_then(|a| a.u16()).unwrap_or(0);
                return self.fail(FailureReason::ClientError(code));
            }
            _ => return self.protocol("unexpected subtype after AKA-Challenge"),
        }
        if msg.has(at::KDF) && !msg.has(at::RES) {
            // KDF negotiation (RFC 5448 §3.2): we offered only KDF 1, so a
            // peer asking for another has nothing to choose.
            return self.fail(FailureReason::Protocol("peer rejected the only KDF offered".into()));
        }
        if !keys.k_aut.verify(raw, msg, &[]) {
            return self.fail(FailureReason::AuthenticationFailed("AT_MAC"));
        }
        let Some(res) = msg.get(at::RES).and_then(|a| a.res()) else {
            return self.protocol("AKA-Challenge response without a valid AT_RES");
        };
        if !crate::crypto::mac::constant_time_eq(res, &xres) {
            return self.fail(FailureReason::AuthenticationFailed("AT_RES"));
        }
        if let Some(cc) = msg.get(at::CHECKCODE) {
            if !crate::crypto::mac::constant_time_eq(cc.after_reserved(), &self.checkcode.value()) {
                return self.fail(FailureReason::AuthenticationFailed("AT_CHECKCODE"));
            }
        }
        let confirmation = match keys.decrypt(msg, self.name()) {
            Ok(inner) => inner
                .iter()
                .find(|a| a.kind == at::EAPAY_PAYMENT)
                .and_then(|a| a.with_actual_length())
                .map(<[u8]>::to_vec),
            Err(e) => return self.protocol(&e.to_string()),
        };
        let result_ind = self.config.result_ind && msg.has(at::RESULT_IND);
        self.state = State::Verdict { keys, result_ind };
        MethodStep::Authenticated(Authenticated {
            method: self.config.flavor.eap_type(),
            identity: self.identity.clone(),
            card_id: crate::sim_aka::identity::card_id(&self.identity).to_string(),
            confirmation,
            signature: None,
        })
    }

    fn on_notification(&mut self, msg: &Message, raw: &[u8]) -> MethodStep {
        let State::Notified { keys, approved } = std::mem::replace(&mut self.state, State::Done) else {
            return self.protocol("notification response out of order");
        };
        if msg.subtype == subtype::CLIENT_ERROR {
            let code = msg.get(at::CLIENT_ERROR_CODE).and_then(|a| a.u16()).unwrap_or(0);
            return self.fail(FailureReason::ClientError(code));
        }
        if msg.subtype != subtype::NOTIFICATION {
            return self.protocol("expected the Notification acknowledgement");
        }
        // RFC 4187 §9.11: after a challenge (P bit clear) the peer's
        // acknowledgement must carry a valid AT_MAC.
        if !keys.k_aut.verify(raw, msg, &[]) {
            return self.fail(FailureReason::AuthenticationFailed("AT_MAC on the Notification"));
        }
        if approved {
            MethodStep::Success(keys.exported())
        } else {
            self.fail(FailureReason::Declined)
        }
    }
}

impl ServerMethod for AkaServer {
    fn kind(&self) -> EapType {
        self.config.flavor.eap_type()
    }

    fn start(&mut self, id: u8) -> MethodStep {
        match classify(self.kind(), &self.identity) {
            IdentityKind::Permanent => {
                self.state = State::WaitVector;
                MethodStep::Query(Query::AkaVector { identity: self.identity.clone() })
            }
            // Pseudonyms and re-authentication identities are not issued
            // yet, so anything else is asked for its permanent identity.
            _ => self.identity_request(id),
        }
    }

    fn on_response(&mut self, _id: u8, response: &[u8]) -> MethodStep {
        let msg = match Message::decode(response, self.name()) {
            Ok(m) => m,
            Err(e) => return self.protocol(&e.to_string()),
        };
        match self.state {
            State::Identity => self.on_identity(&msg, response),
            State::Challenge { .. } => self.on_challenge(&msg, response),
            State::Notified { .. } => self.on_notification(&msg, response),
            State::WaitVector | State::Verdict { .. } | State::Done => {
                self.protocol("response while none was asked for")
            }
        }
    }

    fn on_answer(&mut self, id: u8, answer: Answer) -> MethodStep {
        if !matches!(self.state, State::WaitVector) {
            return self.protocol("answer while none was asked for");
        }
        match answer {
            Answer::AkaVector(v) => self.challenge(id, v),
            Answer::UnknownCard => self.fail(FailureReason::UnknownIdentity),
            Answer::ResyncRejected => self.fail(FailureReason::AuthenticationFailed("AUTS")),
            _ => self.protocol("answer of another kind than the vector asked for"),
        }
    }

    fn conclude(&mut self, id: u8, verdict: Verdict) -> MethodStep {
        let State::Verdict { keys, result_ind } = std::mem::replace(&mut self.state, State::Done) else {
            return self.protocol("verdict without authentication");
        };
        if !result_ind {
            return if verdict.approved {
                MethodStep::Success(keys.exported())
            } else {
                self.fail(FailureReason::Declined)
            };
        }
        let code = if verdict.approved { notification::SUCCESS } else { notification::GENERAL_FAILURE_AFTER_AUTH };
        let mut w = AttributeWriter::new();
        w.u16(at::NOTIFICATION, code);
        if let Some(result) = &verdict.result {
            let mut inner = AttributeWriter::new();
            inner.with_actual_length(at::EAPAY_RESULT, result);
            inner.pad_to_block();
            keys.encrypt_into(&mut w, inner);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.packet(id, subtype::NOTIFICATION, w);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        self.state = State::Notified { keys, approved: verdict.approved };
        MethodStep::Send(bytes)
    }
}
