//! The SIM/AKA family's server: EAP-SIM (RFC 4186), EAP-AKA (RFC 4187),
//! EAP-AKA' (RFC 5448, RFC 9048).
//!
//! One state machine for the three: the identity round (carried by
//! AKA-Identity, or by SIM-Start together with version negotiation),
//! pseudonyms and fast re-authentication identities resolved and issued
//! through queries, the full authentication of the flavour, fast
//! re-authentication, and the Notification phase. With AT_RESULT_IND
//! agreed, the verdict travels in a MAC-protected Notification before
//! EAP-Success/Failure, which is where eapay delivers the payment result to
//! the card (AT_EAPAY_RESULT, DESIGN.md §4).
//!
//! Identity requests only ever get stronger (RFC 4187 §4.1.6): AT_ANY_ID_REQ
//! for a name the server cannot place, AT_FULLAUTH_ID_REQ when a
//! re-authentication identity does not resolve, AT_PERMANENT_ID_REQ when a
//! pseudonym does not; a failure after that ends the conversation. So a
//! forged, retired or replayed identity can cost the card its privacy for
//! one exchange, never win an approval.

use crate::crypto::mac::constant_time_eq;
use crate::method::{
    Answer, AuthVector, Authenticated, FailureReason, MethodStep, Query, ServerMethod, Triplet, Verdict,
};
use crate::packet::{Code, EapType};
use crate::sim_aka::attributes::{at, notification, subtype, AttributeWriter, Message};
use crate::sim_aka::identity::{classify, permanent_card_id, IdentityKind};
use crate::sim_aka::{
    encrypted_counter, encrypted_value, version_list, Checkcode, Flavor, ReauthState, SessionKeys, KDF_AKA_PRIME,
    SIM_VERSIONS,
};

/// Server policy for the family.
#[derive(Debug, Clone)]
pub struct SimAkaServerConfig {
    /// SIM, AKA or AKA' (with the network name, the issuer realm).
    pub flavor: Flavor,
    /// Offer AT_RESULT_IND (protected result indications). eapay needs it
    /// to deliver the payment result to the card; standard peers may ignore it.
    pub result_ind: bool,
    /// Resynchronisations allowed in one conversation (RFC 4187 §6.3.1
    /// expects at most one).
    pub max_resyncs: u8,
    /// Resolve pseudonyms and re-authentication identities, and hand out
    /// new ones (through [`Query::Pseudonym`], [`Query::Reauth`],
    /// [`Query::NextIdentities`]). Off, every identity but a permanent one
    /// is asked for the permanent one.
    pub privacy: bool,
    /// Fast re-authentications allowed in a row before a full one; 0 never
    /// offers one.
    pub fast_reauth_limit: u16,
}

impl SimAkaServerConfig {
    /// Defaults for `flavor`: result indications on, one resynchronisation,
    /// no pseudonyms, no re-authentication.
    pub fn new(flavor: Flavor) -> Self {
        Self { flavor, result_ind: true, max_resyncs: 1, privacy: false, fast_reauth_limit: 0 }
    }
}

/// The identity requests, weakest first (RFC 4187 §4.1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum IdRequest {
    Any,
    FullAuth,
    Permanent,
}

impl IdRequest {
    fn attribute(self) -> u8 {
        match self {
            Self::Any => at::ANY_ID_REQ,
            Self::FullAuth => at::FULLAUTH_ID_REQ,
            Self::Permanent => at::PERMANENT_ID_REQ,
        }
    }

    fn allows(self, kind: IdentityKind) -> bool {
        match (self, kind) {
            (_, IdentityKind::Unknown) => false,
            (Self::Any, _) => true,
            (Self::FullAuth, k) => k != IdentityKind::Reauth,
            (Self::Permanent, k) => k == IdentityKind::Permanent,
        }
    }
}

/// What the peer's SIM-Start response brought: NONCE_MT and the version.
#[derive(Clone, Copy)]
struct SimStart {
    nonce_mt: [u8; 16],
    selected: u16,
}

/// What the peer must prove in its challenge response.
enum Expect {
    /// AKA: RES.
    Res(Vec<u8>),
    /// SIM: n*SRES, the MAC's extra input.
    Sres(Vec<u8>),
}

/// An exchange whose request waits for the next identities.
enum Pending {
    /// A full-authentication challenge.
    Challenge { keys: SessionKeys, expect: Expect, attributes: AttributeWriter, mac_extra: Vec<u8>, rand: [u8; 16] },
    /// A re-authentication request.
    Reauth { keys: SessionKeys, counter: u16, nonce_s: [u8; 16] },
}

enum State {
    /// Sent an identity request (AKA-Identity or SIM-Start); waiting for the answer.
    Identity,
    /// Asked the issuer which card a pseudonym names.
    ResolvingPseudonym,
    /// Asked the issuer to resolve a re-authentication identity.
    ResolvingReauth,
    /// Asked for a vector (first time or after resync) or triplets.
    WaitCredentials,
    /// Asked for the identities to hand out in the next request.
    WaitIdentities(Box<Pending>),
    /// Sent the full-authentication challenge.
    Challenge {
        keys: SessionKeys,
        expect: Expect,
        rand: [u8; 16],
    },
    /// Sent the re-authentication request.
    Reauth {
        keys: SessionKeys,
        counter: u16,
        nonce_s: [u8; 16],
    },
    /// Reported Authenticated; waiting for the caller's verdict.
    Verdict {
        keys: SessionKeys,
        result_ind: bool,
        counter: Option<u16>,
    },
    /// Sent the protected Notification; waiting for its acknowledgement.
    Notified {
        keys: SessionKeys,
        approved: bool,
        counter: Option<u16>,
    },
    Done,
}

/// One SIM/AKA/AKA' authentication, server side.
pub struct SimAkaServer {
    config: SimAkaServerConfig,
    /// The identity the keys are bound to: the last AT_IDENTITY, or the
    /// EAP-Response/Identity if there was no identity round.
    identity: String,
    /// The card, once known.
    card_id: Option<String>,
    /// The card was named by a pseudonym: a blocked card is not found.
    via_pseudonym: bool,
    /// The strongest identity request sent so far.
    asked: Option<IdRequest>,
    /// EAP-SIM: the last Start response's NONCE_MT and version.
    sim_start: Option<SimStart>,
    state: State,
    checkcode: Checkcode,
    resyncs: u8,
}

impl SimAkaServer {
    /// A conversation with a peer that sent `identity` in EAP-Response/Identity.
    pub fn new(config: SimAkaServerConfig, identity: &str) -> Self {
        let checkcode = config.flavor.checkcode();
        Self {
            config,
            identity: identity.to_string(),
            card_id: None,
            via_pseudonym: false,
            asked: None,
            sim_start: None,
            state: State::Done,
            checkcode,
            resyncs: 0,
        }
    }

    fn kind_of_method(&self) -> EapType {
        self.config.flavor.eap_type()
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
        w.into_packet(Code::Request, id, self.kind_of_method(), subtype)
    }

    /// An identity request: AKA-Identity, or SIM-Start (which always also
    /// negotiates the version, and may ask for no identity at all).
    fn request_identity(&mut self, id: u8, request: Option<IdRequest>) -> MethodStep {
        let mut w = AttributeWriter::new();
        if self.config.flavor.is_sim() {
            w.with_actual_length(at::VERSION_LIST, &version_list());
        }
        if let Some(r) = request {
            w.reserved(r.attribute(), &[]);
            self.asked = Some(r);
        }
        let sub = if self.config.flavor.is_sim() { subtype::SIM_START } else { subtype::AKA_IDENTITY };
        let (bytes, _) = self.packet(id, sub, w);
        self.checkcode.absorb(&bytes);
        self.sim_start = None;
        self.state = State::Identity;
        MethodStep::Send(bytes)
    }

    /// Asks for a stronger identity than the last request, or gives up.
    fn escalate(&mut self, id: u8, to: IdRequest) -> MethodStep {
        match self.asked {
            Some(asked) if asked >= to => self.fail(FailureReason::UnknownIdentity),
            _ => self.request_identity(id, Some(to)),
        }
    }

    /// Goes on with an identity the peer presented (in EAP-Response/Identity
    /// or AT_IDENTITY).
    fn on_identity_known(&mut self, id: u8) -> MethodStep {
        let kind = classify(self.kind_of_method(), &self.identity);
        match kind {
            IdentityKind::Permanent => {
                self.card_id = permanent_card_id(self.kind_of_method(), &self.identity).map(str::to_string);
                self.via_pseudonym = false;
                self.full_authentication(id)
            }
            IdentityKind::Pseudonym if self.config.privacy => {
                self.state = State::ResolvingPseudonym;
                MethodStep::Query(Query::Pseudonym { method: self.kind_of_method(), identity: self.identity.clone() })
            }
            IdentityKind::Reauth if self.config.privacy => {
                self.state = State::ResolvingReauth;
                MethodStep::Query(Query::Reauth { method: self.kind_of_method(), identity: self.identity.clone() })
            }
            IdentityKind::Pseudonym => self.escalate(id, IdRequest::Permanent),
            IdentityKind::Reauth => self.escalate(id, IdRequest::FullAuth),
            IdentityKind::Unknown if self.config.privacy => self.escalate(id, IdRequest::Any),
            IdentityKind::Unknown => self.escalate(id, IdRequest::Permanent),
        }
    }

    /// The card is known: fetch its credentials (EAP-SIM first needs a
    /// Start round for NONCE_MT, unless it had one).
    fn full_authentication(&mut self, id: u8) -> MethodStep {
        let Some(card_id) = self.card_id.clone() else { return self.fail(FailureReason::UnknownIdentity) };
        let require_active = self.via_pseudonym;
        if self.config.flavor.is_sim() {
            if self.sim_start.is_none() {
                return self.request_identity(id, None);
            }
            self.state = State::WaitCredentials;
            return MethodStep::Query(Query::SimTriplets { card_id, require_active });
        }
        self.state = State::WaitCredentials;
        MethodStep::Query(Query::AkaVector { card_id, method: self.kind_of_method(), require_active })
    }

    fn on_identity_response(&mut self, id: u8, msg: &Message, raw: &[u8]) -> MethodStep {
        let sim = self.config.flavor.is_sim();
        let expected = if sim { subtype::SIM_START } else { subtype::AKA_IDENTITY };
        if msg.subtype == subtype::CLIENT_ERROR {
            return self.client_error(msg);
        }
        if msg.subtype != expected {
            return self.protocol("expected the answer to the identity request");
        }
        let presented = msg.get(at::IDENTITY).and_then(|a| a.with_actual_length());
        let kind = match (self.asked, presented) {
            (None, Some(_)) => return self.protocol("AT_IDENTITY that was not asked for"),
            (Some(_), None) => return self.protocol("the identity asked for is missing"),
            (None, None) => None,
            (Some(asked), Some(identity)) => {
                let identity = String::from_utf8_lossy(identity).into_owned();
                let kind = classify(self.kind_of_method(), &identity);
                if !asked.allows(kind) {
                    return self.fail(FailureReason::UnknownIdentity);
                }
                self.identity = identity;
                Some(kind)
            }
        };
        self.checkcode.absorb(raw);
        if sim && kind != Some(IdentityKind::Reauth) {
            // RFC 4186 §9.2: a full authentication's Start response carries
            // NONCE_MT and the selected version (a re-authentication
            // identity comes without them).
            let Some(nonce_mt) = msg.fixed::<16>(at::NONCE_MT) else {
                return self.protocol("SIM-Start response without a valid AT_NONCE_MT");
            };
            let Some(selected) = msg.get(at::SELECTED_VERSION).and_then(|a| a.u16()) else {
                return self.protocol("SIM-Start response without AT_SELECTED_VERSION");
            };
            if !SIM_VERSIONS.contains(&selected) {
                return self.fail(FailureReason::Protocol(format!("EAP-SIM: version {selected} was not offered")));
            }
            self.sim_start = Some(SimStart { nonce_mt, selected });
        }
        match kind {
            // The identity was already known (SIM-Start without a request).
            None => self.full_authentication(id),
            Some(_) => self.on_identity_known(id),
        }
    }

    /// Builds the challenge from a vector (AKA, AKA').
    fn aka_challenge(&mut self, id: u8, v: AuthVector) -> MethodStep {
        let keys = self.config.flavor.derive(self.identity.as_bytes(), &v);
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &v.rand).reserved(at::AUTN, &v.autn);
        if let Flavor::AkaPrime { network_name } = &self.config.flavor {
            w.with_actual_length(at::KDF_INPUT, network_name.as_bytes());
            w.u16(at::KDF, KDF_AKA_PRIME);
        }
        w.reserved(at::CHECKCODE, &self.checkcode.value());
        let pending = Pending::Challenge {
            keys,
            expect: Expect::Res(v.xres),
            attributes: w,
            mac_extra: Vec::new(),
            rand: v.rand,
        };
        self.with_next_identities(id, pending)
    }

    /// Builds the challenge from triplets (SIM).
    fn sim_challenge(&mut self, id: u8, triplets: Vec<Triplet>) -> MethodStep {
        let Some(start) = self.sim_start else { return self.protocol("triplets before the Start round") };
        let distinct = triplets.iter().enumerate().all(|(i, t)| triplets[..i].iter().all(|u| u.rand != t.rand));
        if !(2..=3).contains(&triplets.len()) || !distinct {
            return self.fail(FailureReason::Protocol("EAP-SIM: the issuer gave no usable triplets".into()));
        }
        let keys =
            Flavor::derive_sim(self.identity.as_bytes(), &triplets, &start.nonce_mt, &version_list(), start.selected);
        let rands: Vec<u8> = triplets.iter().flat_map(|t| t.rand).collect();
        let sres: Vec<u8> = triplets.iter().flat_map(|t| t.sres).collect();
        let mut w = AttributeWriter::new();
        w.reserved(at::RAND, &rands);
        let pending = Pending::Challenge {
            keys,
            expect: Expect::Sres(sres),
            attributes: w,
            mac_extra: start.nonce_mt.to_vec(),
            rand: [0; 16],
        };
        self.with_next_identities(id, pending)
    }

    /// Asks for the identities to hand out, or builds the request at once
    /// when there are none to give.
    fn with_next_identities(&mut self, id: u8, pending: Pending) -> MethodStep {
        let Some(card_id) = self.card_id.clone() else { return self.fail(FailureReason::UnknownIdentity) };
        if !self.config.privacy {
            return self.send_pending(id, pending, None, None);
        }
        let reauth = match &pending {
            Pending::Challenge { keys, .. } if self.config.fast_reauth_limit > 0 => {
                Some(ReauthState { card_id: card_id.clone(), counter: 0, secret: keys.reauth.clone() })
            }
            Pending::Reauth { keys, counter, .. } if *counter < self.config.fast_reauth_limit => {
                Some(ReauthState { card_id: card_id.clone(), counter: *counter, secret: keys.reauth.clone() })
            }
            _ => None,
        };
        self.state = State::WaitIdentities(Box::new(pending));
        MethodStep::Query(Query::NextIdentities { method: self.kind_of_method(), card_id, reauth })
    }

    fn send_pending(
        &mut self,
        id: u8,
        pending: Pending,
        pseudonym: Option<String>,
        reauth_id: Option<String>,
    ) -> MethodStep {
        match pending {
            Pending::Challenge { keys, expect, mut attributes, mac_extra, rand } => {
                let mut inner = AttributeWriter::new();
                if let Some(p) = &pseudonym {
                    inner.with_actual_length(at::NEXT_PSEUDONYM, p.as_bytes());
                }
                if let Some(r) = &reauth_id {
                    inner.with_actual_length(at::NEXT_REAUTH_ID, r.as_bytes());
                }
                if self.config.result_ind {
                    attributes.reserved(at::RESULT_IND, &[]);
                }
                if pseudonym.is_some() || reauth_id.is_some() {
                    keys.encrypt_into(&mut attributes, inner);
                }
                attributes.reserved(at::MAC, &[0; 16]);
                let sub = if self.config.flavor.is_sim() { subtype::SIM_CHALLENGE } else { subtype::AKA_CHALLENGE };
                let (mut bytes, mac) = self.packet(id, sub, attributes);
                keys.k_aut.sign(&mut bytes, mac, &mac_extra);
                self.state = State::Challenge { keys, expect, rand };
                MethodStep::Send(bytes)
            }
            Pending::Reauth { keys, counter, nonce_s } => {
                let mut inner = AttributeWriter::new();
                inner.u16(at::COUNTER, counter);
                inner.reserved(at::NONCE_S, &nonce_s);
                if let Some(r) = &reauth_id {
                    inner.with_actual_length(at::NEXT_REAUTH_ID, r.as_bytes());
                }
                let mut w = AttributeWriter::new();
                keys.encrypt_into(&mut w, inner);
                if self.config.result_ind {
                    w.reserved(at::RESULT_IND, &[]);
                }
                w.reserved(at::MAC, &[0; 16]);
                let (mut bytes, mac) = self.packet(id, subtype::REAUTHENTICATION, w);
                keys.k_aut.sign(&mut bytes, mac, &[]);
                self.state = State::Reauth { keys, counter, nonce_s };
                MethodStep::Send(bytes)
            }
        }
    }

    /// A re-authentication identity resolved: start the exchange.
    fn reauthenticate(&mut self, id: u8, state: ReauthState) -> MethodStep {
        let Some(counter) = state.counter.checked_add(1) else {
            return self.escalate(id, IdRequest::FullAuth);
        };
        let nonce_s: [u8; 16] = rand::random();
        let keys = state.secret.reauth_keys(self.identity.as_bytes(), counter, &nonce_s);
        self.card_id = Some(state.card_id);
        self.with_next_identities(id, Pending::Reauth { keys, counter, nonce_s })
    }

    fn client_error(&mut self, msg: &Message) -> MethodStep {
        let code = msg.get(at::CLIENT_ERROR_CODE).and_then(|a| a.u16()).unwrap_or(0);
        self.fail(FailureReason::ClientError(code))
    }

    fn on_challenge(&mut self, msg: &Message, raw: &[u8]) -> MethodStep {
        let State::Challenge { keys, expect, rand } = std::mem::replace(&mut self.state, State::Done) else {
            return self.protocol("challenge response out of order");
        };
        let sim = self.config.flavor.is_sim();
        match msg.subtype {
            subtype::CLIENT_ERROR => return self.client_error(msg),
            subtype::SIM_CHALLENGE if sim => {}
            subtype::AKA_CHALLENGE if !sim => {}
            subtype::AKA_AUTHENTICATION_REJECT if !sim => return self.fail(FailureReason::RejectedByPeer),
            subtype::AKA_SYNCHRONIZATION_FAILURE if !sim => {
                // AT_AUTS has no reserved octets: 14 octets follow the length.
                let Some(auts) = msg.get(at::AUTS).and_then(|a| <[u8; 14]>::try_from(a.value.as_slice()).ok()) else {
                    return self.protocol("Synchronization-Failure without a valid AT_AUTS");
                };
                if self.resyncs >= self.config.max_resyncs {
                    return self.fail(FailureReason::AuthenticationFailed("repeated synchronization failure"));
                }
                let Some(card_id) = self.card_id.clone() else { return self.fail(FailureReason::UnknownIdentity) };
                self.resyncs += 1;
                self.state = State::WaitCredentials;
                return MethodStep::Query(Query::AkaResync { card_id, method: self.kind_of_method(), rand, auts });
            }
            _ => return self.protocol("unexpected subtype after the challenge"),
        }
        let proof = match &expect {
            Expect::Res(xres) => {
                if msg.has(at::KDF) && !msg.has(at::RES) {
                    // KDF negotiation (RFC 5448 §3.2): we offered only KDF 1,
                    // so a peer asking for another has nothing to choose.
                    return self.fail(FailureReason::Protocol("peer rejected the only KDF offered".into()));
                }
                if !keys.k_aut.verify(raw, msg, &[]) {
                    return self.fail(FailureReason::AuthenticationFailed("AT_MAC"));
                }
                let Some(res) = msg.get(at::RES).and_then(|a| a.res()) else {
                    return self.protocol("challenge response without a valid AT_RES");
                };
                constant_time_eq(res, xres)
            }
            Expect::Sres(sres) => keys.k_aut.verify(raw, msg, sres),
        };
        if !proof {
            let what = if sim { "AT_MAC over SRES" } else { "AT_RES" };
            return self.fail(FailureReason::AuthenticationFailed(what));
        }
        if let Some(cc) = msg.get(at::CHECKCODE) {
            if !constant_time_eq(cc.after_reserved(), &self.checkcode.value()) {
                return self.fail(FailureReason::AuthenticationFailed("AT_CHECKCODE"));
            }
        }
        let confirmation = match keys.decrypt(msg, self.name()) {
            Ok(inner) => encrypted_value(&inner, at::EAPAY_PAYMENT),
            Err(e) => return self.protocol(&e.to_string()),
        };
        self.authenticated(msg, keys, None, confirmation)
    }

    fn on_reauth(&mut self, id: u8, msg: &Message, raw: &[u8]) -> MethodStep {
        let State::Reauth { keys, counter, nonce_s } = std::mem::replace(&mut self.state, State::Done) else {
            return self.protocol("re-authentication response out of order");
        };
        match msg.subtype {
            subtype::REAUTHENTICATION => {}
            subtype::CLIENT_ERROR => return self.client_error(msg),
            _ => return self.protocol("a full-authentication answer to a re-authentication"),
        }
        if !keys.k_aut.verify(raw, msg, &nonce_s) {
            return self.fail(FailureReason::AuthenticationFailed("AT_MAC of the re-authentication"));
        }
        let inner = match keys.decrypt(msg, self.name()) {
            Ok(inner) => inner,
            Err(e) => return self.protocol(&e.to_string()),
        };
        if encrypted_counter(&inner, at::COUNTER) != Some(counter) {
            return self.fail(FailureReason::AuthenticationFailed("AT_COUNTER"));
        }
        if inner.iter().any(|a| a.kind == at::COUNTER_TOO_SMALL) {
            // RFC 4187 §5.4: the peer has seen a later counter; no keys from
            // this exchange. A full authentication, identity first.
            self.card_id = None;
            return self.escalate(id, IdRequest::FullAuth);
        }
        let confirmation = encrypted_value(&inner, at::EAPAY_PAYMENT);
        self.authenticated(msg, keys, Some(counter), confirmation)
    }

    fn authenticated(
        &mut self,
        msg: &Message,
        keys: SessionKeys,
        counter: Option<u16>,
        confirmation: Option<Vec<u8>>,
    ) -> MethodStep {
        let Some(card_id) = self.card_id.clone() else { return self.fail(FailureReason::UnknownIdentity) };
        let result_ind = self.config.result_ind && msg.has(at::RESULT_IND);
        self.state = State::Verdict { keys, result_ind, counter };
        MethodStep::Authenticated(Authenticated {
            method: self.kind_of_method(),
            identity: self.identity.clone(),
            card_id,
            confirmation,
            signature: None,
        })
    }

    fn on_notification(&mut self, msg: &Message, raw: &[u8]) -> MethodStep {
        let State::Notified { keys, approved, counter } = std::mem::replace(&mut self.state, State::Done) else {
            return self.protocol("notification response out of order");
        };
        if msg.subtype == subtype::CLIENT_ERROR {
            return self.client_error(msg);
        }
        if msg.subtype != subtype::NOTIFICATION {
            return self.protocol("expected the Notification acknowledgement");
        }
        // RFC 4187 §9.11: after a challenge (P bit clear) the peer's
        // acknowledgement must carry a valid AT_MAC, and in a
        // re-authentication the counter inside AT_ENCR_DATA.
        if !keys.k_aut.verify(raw, msg, &[]) {
            return self.fail(FailureReason::AuthenticationFailed("AT_MAC on the Notification"));
        }
        if let Some(counter) = counter {
            let echoed = keys.decrypt(msg, self.name()).ok().and_then(|inner| encrypted_counter(&inner, at::COUNTER));
            if echoed != Some(counter) {
                return self.fail(FailureReason::AuthenticationFailed("AT_COUNTER on the Notification"));
            }
        }
        if approved {
            MethodStep::Success(keys.exported())
        } else {
            self.fail(FailureReason::Declined)
        }
    }
}

impl ServerMethod for SimAkaServer {
    fn kind(&self) -> EapType {
        self.kind_of_method()
    }

    fn start(&mut self, id: u8) -> MethodStep {
        self.on_identity_known(id)
    }

    fn on_response(&mut self, id: u8, response: &[u8]) -> MethodStep {
        let msg = match Message::decode(response, self.name()) {
            Ok(m) => m,
            Err(e) => return self.protocol(&e.to_string()),
        };
        match self.state {
            State::Identity => self.on_identity_response(id, &msg, response),
            State::Challenge { .. } => self.on_challenge(&msg, response),
            State::Reauth { .. } => self.on_reauth(id, &msg, response),
            State::Notified { .. } => self.on_notification(&msg, response),
            State::ResolvingPseudonym
            | State::ResolvingReauth
            | State::WaitCredentials
            | State::WaitIdentities(_)
            | State::Verdict { .. }
            | State::Done => self.protocol("response while none was asked for"),
        }
    }

    fn on_answer(&mut self, id: u8, answer: Answer) -> MethodStep {
        match (std::mem::replace(&mut self.state, State::Done), answer) {
            (State::ResolvingPseudonym, Answer::Pseudonym { card_id }) => {
                self.card_id = Some(card_id);
                self.via_pseudonym = true;
                self.full_authentication(id)
            }
            (State::ResolvingPseudonym, _) => self.escalate(id, IdRequest::Permanent),
            (State::ResolvingReauth, Answer::Reauth(state)) => self.reauthenticate(id, state),
            (State::ResolvingReauth, _) => self.escalate(id, IdRequest::FullAuth),
            (State::WaitCredentials, Answer::AkaVector(v)) if !self.config.flavor.is_sim() => self.aka_challenge(id, v),
            (State::WaitCredentials, Answer::SimTriplets(t)) if self.config.flavor.is_sim() => {
                self.sim_challenge(id, t)
            }
            // A pseudonym that names a blocked or unknown card: the peer may
            // still name itself (RFC 4187 §4.1.4); the permanent identity of
            // a blocked card authenticates and is then declined.
            (State::WaitCredentials, Answer::UnknownCard | Answer::BlockedCard) if self.via_pseudonym => {
                self.card_id = None;
                self.via_pseudonym = false;
                self.escalate(id, IdRequest::Permanent)
            }
            (State::WaitCredentials, Answer::UnknownCard | Answer::BlockedCard) => {
                self.fail(FailureReason::UnknownIdentity)
            }
            (State::WaitCredentials, Answer::ResyncRejected) => self.fail(FailureReason::AuthenticationFailed("AUTS")),
            (State::WaitIdentities(pending), Answer::NextIdentities { pseudonym, reauth_id }) => {
                self.send_pending(id, *pending, pseudonym, reauth_id)
            }
            (State::WaitIdentities(pending), _) => self.send_pending(id, *pending, None, None),
            _ => self.protocol("answer of another kind than asked for"),
        }
    }

    fn conclude(&mut self, id: u8, verdict: Verdict) -> MethodStep {
        let State::Verdict { keys, result_ind, counter } = std::mem::replace(&mut self.state, State::Done) else {
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
        if verdict.result.is_some() || counter.is_some() {
            let mut inner = AttributeWriter::new();
            if let Some(c) = counter {
                inner.u16(at::COUNTER, c);
            }
            if let Some(result) = &verdict.result {
                inner.with_actual_length(at::EAPAY_RESULT, result);
            }
            keys.encrypt_into(&mut w, inner);
        }
        w.reserved(at::MAC, &[0; 16]);
        let (mut bytes, mac) = self.packet(id, subtype::NOTIFICATION, w);
        keys.k_aut.sign(&mut bytes, mac, &[]);
        self.state = State::Notified { keys, approved: verdict.approved, counter };
        MethodStep::Send(bytes)
    }
}
