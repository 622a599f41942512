//! Phase 2 of EAP-TTLS: what happens inside the tunnel once the TLS
//! handshake is done, without the TLS itself. The server and peer methods
//! feed it the application data they decrypt and send what it returns.
//!
//! The peer speaks first (RFC 5281 §7.3): its first tunnel message carries
//! the inner credentials (PAP: User-Name + User-Password; EAP: an
//! EAP-Response/Identity in EAP-Message, as wpa_supplicant sends it) and, for
//! a payment, the card's confirmation. Inner EAP runs through a whole inner
//! [`ServerSession`] (identity, Nak, round limit); its EAP-Success/Failure is
//! not tunnelled: the outer EAP-Success/Failure ends both conversations, as
//! hostapd and FreeRADIUS do.

use openssl::pkey::{PKey, Private};

use crate::method::{
    Answer, Authenticated, CardSignature, FailureReason, PeerMemory, PeerMethod, PeerStep, Pin, Query, Verdict,
};
use crate::packet::{Code, EapType, Packet};
use crate::server::{ServerSession, Step};
use crate::sim_aka::server::{SimAkaServer, SimAkaServerConfig};
use crate::tls::config::PaymentToSign;
use crate::tls::confirmation;
use crate::ttls::avps::{PeerAvps, ServerAvps, TunnelConfirmation};

/// The inner methods a TTLS server offers.
#[derive(Debug, Clone, Default)]
pub struct TtlsInner {
    /// Inner PAP: the card's PIN as User-Password, checked with [`Query::Pin`].
    pub pap: bool,
    /// Inner EAP-AKA / EAP-AKA', best first (they are run with
    /// `result_ind = false`: the TTLS tunnel already protects the result).
    pub eap: Vec<SimAkaServerConfig>,
}

/// What the server's phase 2 wants done.
#[derive(Debug)]
pub(crate) enum InnerOut {
    /// Write these AVPs into the tunnel and send them.
    Reply(Vec<u8>),
    /// Ask the outside world.
    Query(Query),
    /// The card is authenticated; waiting for the verdict.
    Authenticated(Authenticated),
    /// The end: deliver `deliver` (AVPs) first if Some, then succeed (`failure`
    /// None) or fail.
    Conclude { failure: Option<FailureReason>, deliver: Option<Vec<u8>> },
    /// The conversation fails now.
    Fail(FailureReason),
}

enum ServerState {
    /// Waiting for the peer's first tunnel message.
    Start,
    /// Asked whether the PIN opens the card.
    Pin {
        card_id: String,
        identity: String,
    },
    /// Inner EAP running; `authenticated` once it reported Authenticated.
    Eap {
        session: Box<ServerSession>,
        authenticated: bool,
    },
    /// Inner PAP authenticated; waiting for the verdict.
    PapVerdict,
    /// Inner EAP concluded but the inner method sent one more request.
    EapConcluding {
        session: Box<ServerSession>,
        verdict: Verdict,
    },
    Done,
}

/// The server side of phase 2.
pub(crate) struct InnerServer {
    methods: TtlsInner,
    vendor_id: u32,
    /// The realm of the outer (anonymous) identity, for a PAP User-Name without one.
    outer_realm: Option<String>,
    /// TLS exporter for the card signature (DESIGN.md §4).
    exporter: [u8; confirmation::EXPORTER_LEN],
    confirmation: Option<TunnelConfirmation>,
    state: ServerState,
}

impl InnerServer {
    pub(crate) fn new(
        methods: TtlsInner,
        vendor_id: u32,
        outer_identity: &str,
        exporter: [u8; confirmation::EXPORTER_LEN],
    ) -> Self {
        let outer_realm = crate::sim_aka::identity::realm(outer_identity).filter(|r| !r.is_empty()).map(str::to_string);
        Self { methods, vendor_id, outer_realm, exporter, confirmation: None, state: ServerState::Start }
    }

    fn fail(&mut self, reason: FailureReason) -> InnerOut {
        self.state = ServerState::Done;
        InnerOut::Fail(reason)
    }

    fn protocol(&mut self, why: impl std::fmt::Display) -> InnerOut {
        self.fail(FailureReason::Protocol(format!("EAP-TTLS: {why}")))
    }

    /// Application data from the peer: one tunnel message.
    pub(crate) fn on_data(&mut self, data: &[u8]) -> InnerOut {
        let avps = match PeerAvps::decode(data, self.vendor_id) {
            Ok(a) => a,
            Err(e) => return self.protocol(e),
        };
        if let Some(c) = avps.confirmation {
            if self.confirmation.is_some() || !matches!(self.state, ServerState::Start) {
                return self.protocol("a confirmation after the first tunnel message");
            }
            self.confirmation = Some(c);
        }
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Start => self.first(avps.user_name, avps.password, avps.eap_message),
            ServerState::Eap { session, authenticated: false } => {
                if avps.password.is_some() || avps.user_name.is_some() {
                    return self.protocol("PAP attributes during inner EAP");
                }
                let Some(eap) = avps.eap_message else { return self.protocol("no EAP-Message during inner EAP") };
                self.eap_response(session, &eap)
            }
            ServerState::EapConcluding { mut session, verdict } => {
                let Some(eap) = avps.eap_message else { return self.protocol("no EAP-Message during inner EAP") };
                let step = session.handle(&eap);
                self.after_conclude(session, verdict, step)
            }
            _ => self.protocol("tunnel data while none was expected"),
        }
    }

    fn first(&mut self, user_name: Option<String>, password: Option<Pin>, eap: Option<Vec<u8>>) -> InnerOut {
        match (password, eap) {
            (Some(_), Some(_)) => self.protocol("both User-Password and EAP-Message"),
            (Some(_), None) if !self.methods.pap => self.fail(FailureReason::NoCommonMethod),
            (Some(pin), None) => {
                let Some(user) = user_name else { return self.protocol("User-Password without User-Name") };
                let (card_id, realm) = match user.split_once('@') {
                    Some((id, realm)) if !realm.is_empty() => (id.to_string(), Some(realm.to_string())),
                    Some((id, _)) => (id.to_string(), self.outer_realm.clone()),
                    None => (user.clone(), self.outer_realm.clone()),
                };
                if card_id.is_empty() {
                    return self.fail(FailureReason::UnknownIdentity);
                }
                let identity = match realm {
                    Some(realm) => format!("{card_id}@{realm}"),
                    None => card_id.clone(),
                };
                self.state = ServerState::Pin { card_id: card_id.clone(), identity };
                InnerOut::Query(Query::Pin { card_id, pin })
            }
            (None, Some(_)) if self.methods.eap.is_empty() => self.fail(FailureReason::NoCommonMethod),
            (None, Some(eap)) => self.eap_response(Box::new(ServerSession::new(1)), &eap),
            (None, None) => self.protocol("the first tunnel message has no inner credentials"),
        }
    }

    fn eap_response(&mut self, mut session: Box<ServerSession>, eap: &[u8]) -> InnerOut {
        let step = session.handle(eap);
        self.inner_step(session, step)
    }

    /// Maps what the inner EAP session wants before the verdict.
    fn inner_step(&mut self, mut session: Box<ServerSession>, step: Step) -> InnerOut {
        match step {
            Step::NeedMethods { identity } => {
                let methods: Vec<Box<dyn crate::method::ServerMethod>> = self
                    .methods
                    .eap
                    .iter()
                    .map(|c| {
                        let config = SimAkaServerConfig { result_ind: false, ..c.clone() };
                        Box::new(SimAkaServer::new(config, &identity)) as Box<dyn crate::method::ServerMethod>
                    })
                    .collect();
                let step = session.offer_methods(methods);
                self.inner_step(session, step)
            }
            Step::Send(request) => {
                match (ServerAvps { eap_message: Some(request), ..ServerAvps::default() }).encode(self.vendor_id) {
                    Ok(avps) => {
                        self.state = ServerState::Eap { session, authenticated: false };
                        InnerOut::Reply(avps)
                    }
                    Err(e) => self.protocol(e),
                }
            }
            Step::Query(q) => {
                self.state = ServerState::Eap { session, authenticated: false };
                InnerOut::Query(q)
            }
            Step::Authenticated(inner) => {
                let outer = self.authenticated(inner.identity.clone(), inner.card_id.clone());
                self.state = ServerState::Eap { session, authenticated: true };
                InnerOut::Authenticated(outer)
            }
            Step::Reject { reason, .. } => self.fail(reason),
            Step::Accept { .. } => self.protocol("inner EAP succeeded before the verdict"),
            Step::Discard(why) => self.protocol(format!("inner EAP: {why}")),
        }
    }

    /// The outer Authenticated event, with the confirmation from the tunnel.
    fn authenticated(&self, identity: String, card_id: String) -> Authenticated {
        let confirmation = self.confirmation.as_ref();
        let signature = confirmation.and_then(|c| {
            c.signature.as_ref().map(|signature| CardSignature {
                exporter: self.exporter,
                signature: signature.clone(),
                pan_token: c.pan_token,
                spki: None,
            })
        });
        Authenticated {
            method: EapType::TTLS,
            identity,
            card_id,
            confirmation: confirmation.map(|c| c.details.clone()),
            signature,
        }
    }

    /// Phase 2 skipped on resumption: the card the resumed session
    /// authenticated, as if its inner authentication had just succeeded.
    pub(crate) fn resumed(&mut self, identity: String, card_id: String) -> InnerOut {
        if !matches!(self.state, ServerState::Start) {
            return self.protocol("resumption after phase 2 began");
        }
        let authenticated = self.authenticated(identity, card_id);
        self.state = ServerState::PapVerdict;
        InnerOut::Authenticated(authenticated)
    }

    /// The caller's answer to the last query.
    pub(crate) fn on_answer(&mut self, answer: Answer) -> InnerOut {
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Pin { card_id, identity } => match answer {
                Answer::PinAccepted => {
                    let authenticated = self.authenticated(identity, card_id);
                    self.state = ServerState::PapVerdict;
                    InnerOut::Authenticated(authenticated)
                }
                Answer::PinRejected { .. } => self.fail(FailureReason::IncorrectPin),
                Answer::PinLocked => self.fail(FailureReason::PinTriesExceeded),
                Answer::UnknownCard => self.fail(FailureReason::UnknownIdentity),
                _ => self.protocol("an answer of another kind than the PIN check asked for"),
            },
            ServerState::Eap { mut session, authenticated: false } => {
                let step = session.answer(answer);
                self.inner_step(session, step)
            }
            _ => self.protocol("an answer while none was asked for"),
        }
    }

    /// The caller's decision.
    pub(crate) fn conclude(&mut self, verdict: Verdict) -> InnerOut {
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::PapVerdict => self.finish(verdict, None),
            ServerState::Eap { mut session, authenticated: true } => {
                let step = session.conclude(verdict.clone());
                self.after_conclude(session, verdict, step)
            }
            _ => self.protocol("a verdict without authentication"),
        }
    }

    fn after_conclude(&mut self, session: Box<ServerSession>, verdict: Verdict, step: Step) -> InnerOut {
        match step {
            Step::Accept { .. } => self.finish(verdict, None),
            Step::Reject { reason, .. } => {
                let reason = if verdict.approved { reason } else { FailureReason::Declined };
                self.finish(verdict, Some(reason))
            }
            Step::Send(request) => {
                match (ServerAvps { eap_message: Some(request), ..ServerAvps::default() }).encode(self.vendor_id) {
                    Ok(avps) => {
                        self.state = ServerState::EapConcluding { session, verdict };
                        InnerOut::Reply(avps)
                    }
                    Err(e) => self.protocol(e),
                }
            }
            Step::Discard(why) => self.protocol(format!("inner EAP: {why}")),
            _ => self.protocol("inner EAP asked for more after the verdict"),
        }
    }

    /// The outer end: the result goes to a card that confirmed.
    fn finish(&mut self, verdict: Verdict, inner_failure: Option<FailureReason>) -> InnerOut {
        self.state = ServerState::Done;
        let failure = match inner_failure {
            Some(reason) => Some(reason),
            None if verdict.approved => None,
            None => Some(FailureReason::Declined),
        };
        let deliver = match (&self.confirmation, verdict.result) {
            // A result the codec refuses is not delivered; the caller made it.
            (Some(_), Some(result)) => {
                (ServerAvps { result: Some(result), ..ServerAvps::default() }).encode(self.vendor_id).ok()
            }
            _ => None,
        };
        InnerOut::Conclude { failure, deliver }
    }
}

/// The card's inner credentials.
pub enum TtlsPeerInner {
    /// Inner PAP: the card id as User-Name and the PIN as User-Password.
    Pap {
        /// The User-Name, `<card_id>` or `<card_id>@<realm>`.
        user: String,
        /// The PIN.
        pin: Pin,
    },
    /// Inner EAP (AKA, AKA'): the method and the identity it answers
    /// EAP-Request/Identity with (`0<card_id>@<realm>`).
    Eap {
        /// The inner identity.
        identity: String,
        /// The inner method.
        method: Box<dyn PeerMethod>,
    },
}

impl std::fmt::Debug for TtlsPeerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pap { user, .. } => f.debug_struct("Pap").field("user", user).finish_non_exhaustive(),
            Self::Eap { identity, method } => {
                f.debug_struct("Eap").field("identity", identity).field("method", &method.kind()).finish()
            }
        }
    }
}

/// The peer side of phase 2.
pub(crate) struct InnerPeer {
    inner: TtlsPeerInner,
    vendor_id: u32,
    /// Whether the first tunnel message went out.
    started: bool,
    /// Whether the card sent a confirmation (and so waits for the result).
    confirmed: bool,
    result: Option<Vec<u8>>,
}

impl InnerPeer {
    pub(crate) fn new(inner: TtlsPeerInner, vendor_id: u32) -> Self {
        Self { inner, vendor_id, started: false, confirmed: false, result: None }
    }

    /// The first tunnel message: the credentials, and the signed
    /// confirmation when the card has a payment and a key.
    pub(crate) fn start(
        &mut self,
        payment: Option<(&PaymentToSign, &PKey<Private>)>,
        exporter: &[u8; confirmation::EXPORTER_LEN],
    ) -> Result<Vec<u8>, FailureReason> {
        let confirmation = match payment {
            Some((p, key)) => {
                let signature = confirmation::sign(key, &p.details, exporter)
                    .map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: signing the payment: {e}")))?;
                Some(TunnelConfirmation {
                    details: p.details.clone(),
                    signature: Some(signature),
                    pan_token: p.pan_token,
                })
            }
            None => None,
        };
        let avps = match &self.inner {
            TtlsPeerInner::Pap { user, pin } => PeerAvps {
                user_name: Some(user.clone()),
                password: Some(pin.clone()),
                eap_message: None,
                confirmation: confirmation.clone(),
            },
            TtlsPeerInner::Eap { identity, .. } => {
                // wpa_supplicant answers an implicit EAP-Request/Identity (identifier 0).
                let response = Packet::new(Code::Response, 0, EapType::IDENTITY, identity.as_bytes().to_vec())
                    .encode()
                    .map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: inner identity: {e}")))?;
                PeerAvps { eap_message: Some(response), confirmation: confirmation.clone(), ..PeerAvps::default() }
            }
        };
        let bytes = avps.encode(self.vendor_id).map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: {e}")))?;
        self.started = true;
        self.confirmed = confirmation.is_some();
        Ok(bytes)
    }

    /// A tunnel message from the server; `Some` is the reply to tunnel back,
    /// `None` means acknowledge with an empty response.
    pub(crate) fn on_data(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, FailureReason> {
        let avps =
            ServerAvps::decode(data, self.vendor_id).map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: {e}")))?;
        if let Some(result) = avps.result {
            if self.result.is_some() {
                return Err(FailureReason::Protocol("EAP-TTLS: a second payment result".into()));
            }
            self.result = Some(result);
        }
        let Some(request) = avps.eap_message else { return Ok(None) };
        let TtlsPeerInner::Eap { identity, method } = &mut self.inner else {
            return Err(FailureReason::Protocol("EAP-TTLS: inner EAP sent to a PAP card".into()));
        };
        let packet =
            Packet::decode(&request).map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: inner EAP: {e}")))?;
        if packet.code != Code::Request {
            // Inner Success/Failure are not tunnelled (RFC 5281 §11.2.1);
            // the outer result decides.
            return Err(FailureReason::Protocol("EAP-TTLS: inner EAP packet that is not a request".into()));
        }
        let respond = |kind: EapType, data: Vec<u8>| {
            Packet::new(Code::Response, packet.identifier, kind, data)
                .encode()
                .map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: inner EAP: {e}")))
        };
        let response = match packet.kind {
            Some(EapType::IDENTITY) => respond(EapType::IDENTITY, identity.as_bytes().to_vec())?,
            Some(EapType::NOTIFICATION) => respond(EapType::NOTIFICATION, Vec::new())?,
            Some(kind) if kind == method.kind() => match method.on_request(&request) {
                PeerStep::Send(bytes) => bytes,
                PeerStep::Fail(reason) => return Err(reason),
            },
            Some(EapType::NAK) | None => return Err(FailureReason::Protocol("EAP-TTLS: bad inner EAP request".into())),
            Some(_) => respond(EapType::NAK, vec![method.kind().0])?,
        };
        let reply = PeerAvps { eap_message: Some(response), ..PeerAvps::default() };
        reply.encode(self.vendor_id).map(Some).map_err(|e| FailureReason::Protocol(format!("EAP-TTLS: {e}")))
    }

    /// True once phase 2 has done what the card needs before it may accept
    /// EAP-Success: the credentials went out, an inner method authenticated
    /// the server too, and a card that confirmed a payment has its result.
    pub(crate) fn complete(&self) -> bool {
        let inner_done = match &self.inner {
            TtlsPeerInner::Pap { .. } => self.started,
            TtlsPeerInner::Eap { method, .. } => method.keys().is_some(),
        };
        inner_done && (!self.confirmed || self.result.is_some())
    }

    pub(crate) fn result(&self) -> Option<Vec<u8>> {
        self.result.clone()
    }

    /// What the inner method wants kept (an AKA card's SQN window).
    pub(crate) fn remember(&self) -> Vec<PeerMemory> {
        match &self.inner {
            TtlsPeerInner::Eap { method, .. } => method.remember(),
            TtlsPeerInner::Pap { .. } => Vec::new(),
        }
    }
}
