//! EAP-TTLS v0 server (RFC 5281; TLS 1.3: RFC 9427).
//!
//! Phase 1 is a server-authenticated TLS handshake (no client certificate:
//! the [`TlsServerConfig`] must be built with [`ClientAuth::None`]), framed
//! and fragmented as in EAP-TLS with the TTLS version (0) in the low bits of
//! the flags. Phase 2 runs inside the tunnel ([`super::inner`]): inner PAP
//! with the card's PIN, or inner EAP-AKA/AKA'; the card's payment
//! confirmation and the server's result travel as Eapay vendor AVPs.
//!
//! The exchange, as wpa_supplicant and hostapd run it:
//!
//! ```text
//! S: Start                       P: ClientHello
//! S: server flight (fragmented)  P: [ACKs], client flight
//! S: TLS 1.2: CCS/Finished       P: tunnel: credentials [+ confirmation]
//!    TLS 1.3: the client flight carries the tunnel data after Finished
//! S: tunnel: inner EAP requests  P: tunnel: inner EAP responses
//! ...                            (or the PIN check with the caller, PAP)
//! S: tunnel: result AVPs         P: ACK          (a card that confirmed)
//! S: EAP-Success / EAP-Failure
//! ```
//!
//! Keys: TLS 1.2 `TLS-PRF(master, "ttls keying material", client.random ||
//! server.random)`; TLS 1.3 the exporter `EXPORTER_EAP_TLS_Key_Material`
//! with context 0x15 (RFC 9427 §2.1); no protected success indication (the
//! 0x00 commitment message) is sent, as RFC 9427 §2.5 allows for TTLS.

use openssl::ssl::SslVerifyMode;

use crate::method::{Answer, FailureReason, Keys, MethodStep, ServerMethod, Verdict};
use crate::packet::{Code, EapType, Packet};
use crate::tls::config::{ClientAuth, TlsServerConfig, TlsVersion};
use crate::tls::engine::{TlsEngine, TlsError};
use crate::tls::fragment::{self, Flight, Frame, Reassembler};
use crate::tls::keys::{session_secrets, KeyLabels};
use crate::tls::session_cards::BoundCard;
use crate::ttls::inner::{InnerOut, InnerServer, TtlsInner};

/// The TTLS version eapay speaks (the low bits of the flags octet).
pub(crate) const TTLS_VERSION: u8 = 0;
/// The method's name in errors.
pub(crate) const NAME: &str = "EAP-TTLS";

enum State {
    /// `start` not called yet.
    Idle,
    /// The TLS handshake is running.
    Handshake,
    /// Handshake done; waiting for the peer's tunnel data.
    Tunnel,
    /// A query or the Authenticated event is with the caller.
    Caller,
    /// Sent the last tunnel message; the peer's ACK ends the conversation.
    Final(Option<FailureReason>),
    /// Sent our TLS alert; the next response ends the conversation.
    AlertSent(FailureReason),
    Done,
}

/// One EAP-TTLS authentication, server side.
pub struct EapTtlsServer {
    engine: Result<TlsEngine, String>,
    identity: String,
    fragment_size: usize,
    vendor_id: u32,
    reassembler: Reassembler,
    /// The flight being sent, while fragments remain.
    outgoing: Flight,
    methods: Option<TtlsInner>,
    inner: Option<InnerServer>,
    keys: Option<Keys>,
    state: State,
    /// The server context: its session-to-card bindings serve resumption.
    config: TlsServerConfig,
    /// The id of the session the peer resumed, taken before this
    /// handshake issues a new ticket (which moves OpenSSL to a new session).
    resumed_from: Option<Vec<u8>>,
    /// The card phase 2 (or the resumed session) authenticated.
    card: Option<BoundCard>,
}

impl EapTtlsServer {
    /// A conversation with a peer whose EAP-Response/Identity was `identity`
    /// (usually `anonymous@realm`), sending at most `fragment_size` TLS
    /// octets per request (the smaller of this and the configured size;
    /// the I/O layer derives it from RADIUS Framed-MTU).
    ///
    /// `config` must come from [`TlsServerConfig::with_client_auth`] with
    /// [`ClientAuth::None`]: a TTLS peer has no certificate to send. A config
    /// that requires one fails the conversation at `start`.
    pub fn new(config: &TlsServerConfig, identity: &str, fragment_size: usize, inner: TtlsInner) -> Self {
        let engine = if config.context().verify_mode().contains(SslVerifyMode::FAIL_IF_NO_PEER_CERT) {
            Err(format!("the TLS config requires client certificates; build it with {:?}", ClientAuth::None))
        } else {
            TlsEngine::server(config.context()).map_err(|e| e.reason)
        };
        Self {
            engine,
            identity: identity.to_string(),
            fragment_size: fragment_size.min(config.fragment_size()),
            vendor_id: aaa_proto::dictionary::eapay::VENDOR_ID,
            reassembler: Reassembler::new(NAME, config.max_message()),
            outgoing: Flight::default(),
            methods: Some(inner),
            inner: None,
            keys: None,
            state: State::Idle,
            config: config.clone(),
            resumed_from: None,
            card: None,
        }
    }

    /// Uses `vendor_id` for the Eapay AVPs instead of the dictionary's
    /// (a deployment with its own Private Enterprise Number).
    pub fn with_vendor_id(mut self, vendor_id: u32) -> Self {
        self.vendor_id = vendor_id;
        self
    }

    /// The negotiated TLS version, once the handshake got that far.
    pub fn tls_version(&self) -> Option<TlsVersion> {
        self.engine.as_ref().ok().and_then(TlsEngine::version)
    }

    /// True if the handshake resumed a session.
    pub fn session_reused(&self) -> bool {
        self.engine.as_ref().is_ok_and(TlsEngine::session_reused)
    }

    /// The EAP Session-Id (Type-Code 0x15), once established.
    pub fn session_id(&self) -> Option<Vec<u8>> {
        let engine = self.engine.as_ref().ok()?;
        crate::tls::keys::session_id(engine, KeyLabels::EAP_TTLS).ok()
    }

    /// EAP-Success: the session is kept for resumption and bound to the card
    /// it authenticated.
    fn succeed(&mut self, keys: Keys) -> MethodStep {
        if let Ok(engine) = self.engine.as_mut() {
            engine.keep_session();
            let id = engine.ssl().session().map(|s| s.id().to_vec());
            if let (Some(id), Some(card)) = (id, self.card.clone()) {
                self.config.session_cards().bind(&id, card);
            }
        }
        self.state = State::Done;
        MethodStep::Success(keys)
    }

    fn fail(&mut self, reason: FailureReason) -> MethodStep {
        self.state = State::Done;
        self.outgoing.clear();
        MethodStep::Failure(reason)
    }

    fn protocol(&mut self, why: impl std::fmt::Display) -> MethodStep {
        self.fail(FailureReason::Protocol(format!("{NAME}: {why}")))
    }

    fn request(&self, id: u8, type_data: Vec<u8>) -> Result<Vec<u8>, String> {
        Packet::new(Code::Request, id, EapType::TTLS, type_data).encode().map_err(|e| e.to_string())
    }

    /// Sends `message` (TLS octets, possibly empty), fragmented.
    fn send(&mut self, id: u8, message: Vec<u8>) -> MethodStep {
        let first = self.outgoing.start(message, self.fragment_size, TTLS_VERSION);
        match self.request(id, first) {
            Ok(bytes) => MethodStep::Send(bytes),
            Err(e) => self.protocol(e),
        }
    }

    /// Sends whatever TLS output is pending.
    fn flush(&mut self, id: u8) -> MethodStep {
        let output = self.engine.as_mut().map(TlsEngine::take_output).unwrap_or_default();
        self.send(id, output)
    }

    /// A TLS failure: our alert goes out first if OpenSSL wrote one.
    fn tls_failure(&mut self, id: u8, e: TlsError) -> MethodStep {
        let reason = if e.peer_alert.is_some() {
            if e.peer_rejected_authentication() {
                FailureReason::RejectedByPeer
            } else {
                FailureReason::Protocol(format!("{NAME}: peer sent a TLS alert: {}", e.reason))
            }
        } else if e.failed_proof {
            FailureReason::AuthenticationFailed("TLS Finished or signature check")
        } else {
            FailureReason::Protocol(format!("{NAME}: TLS: {}", e.reason))
        };
        let alert = self.engine.as_mut().map(TlsEngine::take_output).unwrap_or_default();
        if alert.is_empty() || e.peer_alert.is_some() {
            return self.fail(reason);
        }
        let step = self.send(id, alert);
        self.state = State::AlertSent(reason);
        step
    }

    /// One complete TLS message from the peer.
    fn on_message(&mut self, id: u8, message: Vec<u8>) -> MethodStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Handshake => self.on_handshake(id, &message),
            State::Tunnel => {
                let data = match self.read(&message) {
                    Ok(d) => d,
                    Err(e) => return self.tls_failure(id, e),
                };
                if data.is_empty() {
                    return self.skip_phase2(id);
                }
                self.on_tunnel_data(id, &data)
            }
            State::Final(failure) => {
                match self.read(&message) {
                    Ok(d) if d.is_empty() => {}
                    Ok(_) => return self.protocol("tunnel data where the acknowledgement was expected"),
                    Err(e) => return self.tls_failure(id, e),
                }
                match (failure, self.keys.take()) {
                    (None, Some(keys)) => self.succeed(keys),
                    (None, None) => self.protocol("no keys"),
                    (Some(reason), _) => self.fail(reason),
                }
            }
            State::AlertSent(reason) => self.fail(reason),
            State::Idle | State::Caller | State::Done => self.protocol("a response while none was expected"),
        }
    }

    /// Feeds TLS octets and returns the application data they carry.
    fn read(&mut self, message: &[u8]) -> Result<Vec<u8>, TlsError> {
        let engine =
            self.engine.as_mut().map_err(|e| TlsError { reason: e.clone(), peer_alert: None, failed_proof: false })?;
        engine.feed(message);
        let data = engine.read_application_data()?;
        if engine.is_closed() {
            return Err(TlsError {
                reason: "the peer closed the tunnel".into(),
                peer_alert: None,
                failed_proof: false,
            });
        }
        Ok(data)
    }

    fn on_handshake(&mut self, id: u8, message: &[u8]) -> MethodStep {
        if message.is_empty() {
            return self.protocol("empty response during the TLS handshake");
        }
        let Ok(engine) = self.engine.as_mut() else { return self.protocol("no TLS engine") };
        engine.feed(message);
        let progress = engine.handshake();
        if self.resumed_from.is_none() && engine.session_reused() {
            self.resumed_from = engine.ssl().session().map(|s| s.id().to_vec());
        }
        match progress {
            Ok(false) if !engine.has_output() => self.protocol("the peer's TLS data is incomplete"),
            Ok(false) => {
                self.state = State::Handshake;
                self.flush(id)
            }
            Ok(true) => self.established(id),
            Err(e) => self.tls_failure(id, e),
        }
    }

    /// The handshake just completed: keys, then phase 2.
    fn established(&mut self, id: u8) -> MethodStep {
        let Ok(engine) = self.engine.as_mut() else { return self.protocol("no TLS engine") };
        let (keys, exporter) = match session_secrets(engine, KeyLabels::EAP_TTLS) {
            Ok(secrets) => secrets,
            Err(e) => return self.protocol(e),
        };
        self.keys = Some(keys);
        let methods = self.methods.take().unwrap_or_default();
        self.inner = Some(InnerServer::new(methods, self.vendor_id, &self.identity, exporter));
        // TLS 1.3 and resumed TLS 1.2: the client's tunnel data may follow
        // its Finished in this very message.
        let data = match self.engine.as_mut().map(TlsEngine::read_application_data) {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return self.tls_failure(id, e),
            Err(e) => {
                let why = e.clone();
                return self.protocol(why);
            }
        };
        if data.is_empty() {
            // Our Finished (TLS 1.2), a session ticket (TLS 1.3) or an empty
            // request: the peer speaks next (RFC 5281 §7.3).
            self.state = State::Tunnel;
            return self.flush(id);
        }
        self.on_tunnel_data(id, &data)
    }

    /// The peer resumed a session and sent no phase 2 (RFC 5281 §8.2): the
    /// session authenticated the card before, so it is the card the session
    /// was bound to. A session we cannot vouch for ends the conversation.
    fn skip_phase2(&mut self, id: u8) -> MethodStep {
        let bound = self.resumed_from.as_deref().and_then(|id| self.config.session_cards().card_of(id));
        let (Some(card), Some(inner)) = (bound, self.inner.as_mut()) else {
            return self.protocol("no tunnel data where the inner credentials were expected");
        };
        let out = inner.resumed(card.identity, card.card_id);
        self.on_inner(id, out)
    }

    fn on_tunnel_data(&mut self, id: u8, data: &[u8]) -> MethodStep {
        let Some(inner) = self.inner.as_mut() else { return self.protocol("tunnel data before the handshake") };
        let out = inner.on_data(data);
        self.on_inner(id, out)
    }

    /// Carries out what phase 2 asked for.
    fn on_inner(&mut self, id: u8, out: InnerOut) -> MethodStep {
        match out {
            InnerOut::Reply(avps) => match self.write(&avps) {
                Ok(()) => {
                    self.state = State::Tunnel;
                    self.flush(id)
                }
                Err(e) => self.tls_failure(id, e),
            },
            InnerOut::Query(q) => {
                self.state = State::Caller;
                MethodStep::Query(q)
            }
            InnerOut::Authenticated(a) => {
                self.card = Some(BoundCard { card_id: a.card_id.clone(), identity: a.identity.clone() });
                self.state = State::Caller;
                MethodStep::Authenticated(a)
            }
            InnerOut::Conclude { failure, deliver } => {
                let pending = self.engine.as_ref().is_ok_and(TlsEngine::has_output);
                match deliver {
                    Some(avps) => {
                        if let Err(e) = self.write(&avps) {
                            return self.tls_failure(id, e);
                        }
                    }
                    // Nothing for the card: only a success still carries a
                    // pending session ticket over; a failure ends now.
                    None if failure.is_none() && pending => {}
                    None => {
                        return match (failure, self.keys.take()) {
                            (None, Some(keys)) => self.succeed(keys),
                            (None, None) => self.protocol("no keys"),
                            (Some(reason), _) => self.fail(reason),
                        };
                    }
                }
                self.state = State::Final(failure);
                self.flush(id)
            }
            InnerOut::Fail(reason) => self.fail(reason),
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<(), TlsError> {
        let engine =
            self.engine.as_mut().map_err(|e| TlsError { reason: e.clone(), peer_alert: None, failed_proof: false })?;
        engine.write_application_data(data)
    }
}

impl ServerMethod for EapTtlsServer {
    fn kind(&self) -> EapType {
        EapType::TTLS
    }

    fn start(&mut self, id: u8) -> MethodStep {
        if let Err(e) = &self.engine {
            let why = e.clone();
            return self.protocol(why);
        }
        self.state = State::Handshake;
        match self.request(id, fragment::start(TTLS_VERSION)) {
            Ok(bytes) => MethodStep::Send(bytes),
            Err(e) => self.protocol(e),
        }
    }

    fn on_response(&mut self, id: u8, response: &[u8]) -> MethodStep {
        if matches!(self.state, State::Done) {
            return self.protocol("a response after the end");
        }
        let packet = match Packet::decode(response) {
            Ok(p) => p,
            Err(e) => return self.protocol(e),
        };
        let frame = match Frame::parse(&packet.data, NAME) {
            Ok(f) => f,
            Err(e) => return self.protocol(e),
        };
        if frame.start() {
            return self.protocol("a Start from the peer");
        }
        if self.outgoing.in_progress() {
            // The rest of our flight: each fragment is acknowledged by an empty response.
            if !frame.is_ack() {
                return self.protocol("expected an acknowledgement of our fragment");
            }
            let next = self.outgoing.next_fragment().unwrap_or_else(|| fragment::ack(TTLS_VERSION));
            return match self.request(id, next) {
                Ok(bytes) => MethodStep::Send(bytes),
                Err(e) => self.protocol(e),
            };
        }
        match self.reassembler.push(&frame) {
            Ok(None) => match self.request(id, fragment::ack(TTLS_VERSION)) {
                Ok(bytes) => MethodStep::Send(bytes),
                Err(e) => self.protocol(e),
            },
            Ok(Some(message)) => self.on_message(id, message),
            Err(e) => self.protocol(e),
        }
    }

    fn on_answer(&mut self, id: u8, answer: Answer) -> MethodStep {
        if !matches!(self.state, State::Caller) {
            return self.protocol("an answer while none was asked for");
        }
        let Some(inner) = self.inner.as_mut() else { return self.protocol("no tunnel") };
        let out = inner.on_answer(answer);
        self.on_inner(id, out)
    }

    fn conclude(&mut self, id: u8, verdict: Verdict) -> MethodStep {
        if !matches!(self.state, State::Caller) {
            return self.protocol("a verdict without authentication");
        }
        let Some(inner) = self.inner.as_mut() else { return self.protocol("no tunnel") };
        let out = inner.conclude(verdict);
        self.on_inner(id, out)
    }
}
