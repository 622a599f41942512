//! EAP-TTLS v0 peer: the card (RFC 5281; TLS 1.3: RFC 9427).
//!
//! The card checks the server by the pin of its certificate key (as in
//! EAP-TLS) and sends no certificate. Once the handshake is done it speaks
//! first in the tunnel: inner PAP (User-Name + PIN) or an inner EAP identity,
//! and for a payment the confirmation signed with the card's key over the
//! TLS exporter (DESIGN.md §4). It accepts EAP-Success only when the
//! handshake is done, its credentials have gone out to their last fragment,
//! an inner EAP method has authenticated the server too, and, if it
//! confirmed a payment, the result has arrived in the tunnel.

use std::fmt;
use std::sync::Arc;

use crate::error::EapError;
use crate::method::{FailureReason, Keys, PeerMemory, PeerMethod, PeerStep, TlsSession};
use crate::packet::{Code, EapType, Packet};
use crate::tls::config::{CardTls, Observed, PaymentToSign, TlsVersion};
use crate::tls::engine::{TlsEngine, TlsError};
use crate::tls::fragment::{self, Flight, Frame, Reassembler, DEFAULT_FRAGMENT_SIZE, DEFAULT_MAX_MESSAGE};
use crate::tls::keys::{session_secrets, KeyLabels};
use crate::ttls::inner::{InnerPeer, TtlsPeerInner};
use crate::ttls::server::{NAME, TTLS_VERSION};

/// The card's EAP-TTLS configuration for one conversation.
pub struct TtlsPeerOptions {
    /// SHA-256 of the server leaf certificate's SubjectPublicKeyInfo DER.
    pub server_pin: [u8; 32],
    /// Lowest version accepted (default 1.2).
    pub min_version: TlsVersion,
    /// Highest version offered (default 1.3).
    pub max_version: TlsVersion,
    /// TLS octets per EAP packet (default 1024).
    pub fragment_size: usize,
    /// Cap on one reassembled server message (default 64 KiB).
    pub max_message: usize,
    /// A session to resume (from [`PeerMemory::TlsSession`]).
    pub session: Option<TlsSession>,
    /// The inner authentication.
    pub inner: TtlsPeerInner,
    /// Some: the card confirms and signs this payment.
    pub payment: Option<PaymentToSign>,
    /// The card's private key (PEM) that signs the confirmation. TTLS sends
    /// no certificate, but the issuer registered the key's public half;
    /// needed only with `payment`.
    pub signing_key_pem: Vec<u8>,
    /// Vendor-Id of the Eapay AVPs (default the dictionary's).
    pub vendor_id: u32,
}

impl TtlsPeerOptions {
    /// Options with the defaults: TLS 1.2-1.3, 1024-octet fragments, no
    /// session, no payment.
    pub fn new(server_pin: [u8; 32], inner: TtlsPeerInner) -> Self {
        Self {
            server_pin,
            min_version: TlsVersion::V1_2,
            max_version: TlsVersion::V1_3,
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            max_message: DEFAULT_MAX_MESSAGE,
            session: None,
            inner,
            payment: None,
            signing_key_pem: Vec::new(),
            vendor_id: aaa_proto::dictionary::eapay::VENDOR_ID,
        }
    }
}

impl fmt::Debug for TtlsPeerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtlsPeerOptions")
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field("fragment_size", &self.fragment_size)
            .field("max_message", &self.max_message)
            .field("session", &self.session)
            .field("inner", &self.inner)
            .field("payment", &self.payment)
            .field("signing_key_pem", &"<hidden>")
            .field("vendor_id", &self.vendor_id)
            .finish_non_exhaustive()
    }
}

enum State {
    /// Waiting for the Start.
    Idle,
    /// The TLS handshake is running.
    Handshake,
    /// Handshake done; phase 2.
    Tunnel,
    /// Failed; nothing more is answered and Success is not accepted.
    Failed,
}

/// One EAP-TTLS authentication, peer side.
pub struct EapTtlsPeer {
    card: Arc<CardTls>,
    observed: Observed,
    session: Option<TlsSession>,
    engine: Option<TlsEngine>,
    fragment_size: usize,
    reassembler: Reassembler,
    outgoing: Flight,
    inner: InnerPeer,
    payment: Option<PaymentToSign>,
    keys: Option<Keys>,
    state: State,
    /// Tests: tunnel these bytes instead of the inner credentials.
    #[cfg(test)]
    pub(crate) tunnel_override: Option<Vec<u8>>,
}

impl EapTtlsPeer {
    /// A card with these options; fails on a version range or signing key
    /// that cannot be used.
    pub fn new(opts: TtlsPeerOptions) -> Result<Self, EapError> {
        // The signing key is needed (and parsed) only to confirm a payment.
        let key = if opts.payment.is_some() { opts.signing_key_pem.as_slice() } else { &[] };
        let card = CardTls::ttls(key, opts.server_pin, opts.min_version, opts.max_version)?;
        Self::with_card(Arc::new(card), opts)
    }

    /// A conversation of a card whose credentials are built already
    /// ([`CardTls::ttls`]); the key, pin and version fields of `opts` are not
    /// used. Fails if the card is to confirm a payment but has no key.
    pub fn with_card(card: Arc<CardTls>, opts: TtlsPeerOptions) -> Result<Self, EapError> {
        if opts.payment.is_some() && card.key.is_none() {
            return Err(EapError::TlsConfig("card signing key: none, and the card is to sign a payment".into()));
        }
        let payment = opts.payment;
        Ok(Self {
            card,
            observed: Observed::default(),
            session: opts.session,
            engine: None,
            fragment_size: opts.fragment_size,
            reassembler: Reassembler::new(NAME, opts.max_message),
            outgoing: Flight::default(),
            inner: InnerPeer::new(opts.inner, opts.vendor_id),
            payment,
            keys: None,
            state: State::Idle,
            #[cfg(test)]
            tunnel_override: None,
        })
    }

    /// The negotiated TLS version, once the handshake got that far.
    pub fn tls_version(&self) -> Option<TlsVersion> {
        self.engine.as_ref().and_then(TlsEngine::version)
    }

    /// True if the handshake resumed the stored session.
    pub fn session_reused(&self) -> bool {
        self.engine.as_ref().is_some_and(TlsEngine::session_reused)
    }

    /// The EAP Session-Id (Type-Code 0x15), once established.
    pub fn session_id(&self) -> Option<Vec<u8>> {
        crate::tls::keys::session_id(self.engine.as_ref()?, KeyLabels::EAP_TTLS).ok()
    }

    fn fail(&mut self, reason: FailureReason) -> PeerStep {
        self.state = State::Failed;
        self.outgoing.clear();
        PeerStep::Fail(reason)
    }

    fn protocol(&mut self, why: impl fmt::Display) -> PeerStep {
        self.fail(FailureReason::Protocol(format!("{NAME}: {why}")))
    }

    fn tls_failure(&mut self, e: TlsError) -> PeerStep {
        if self.observed.pin_failed() {
            return self.fail(FailureReason::AuthenticationFailed("server certificate does not match the pin"));
        }
        if e.peer_rejected_authentication() {
            return self.fail(FailureReason::RejectedByPeer);
        }
        if e.failed_proof {
            return self.fail(FailureReason::AuthenticationFailed("TLS Finished or signature check"));
        }
        self.protocol(format!("TLS: {e}"))
    }

    fn response(&self, id: u8, type_data: Vec<u8>) -> PeerStep {
        match Packet::new(Code::Response, id, EapType::TTLS, type_data).encode() {
            Ok(bytes) => PeerStep::Send(bytes),
            Err(e) => PeerStep::Fail(FailureReason::Protocol(format!("{NAME}: {e}"))),
        }
    }

    /// Sends `message` (TLS octets, possibly empty: an acknowledgement), fragmented.
    fn send(&mut self, id: u8, message: Vec<u8>) -> PeerStep {
        let first = self.outgoing.start(message, self.fragment_size, TTLS_VERSION);
        self.response(id, first)
    }

    fn flush(&mut self, id: u8) -> PeerStep {
        let output = self.engine.as_mut().map(TlsEngine::take_output).unwrap_or_default();
        self.send(id, output)
    }

    fn on_start(&mut self, id: u8) -> PeerStep {
        let session = self.session.as_ref().map(|s| s.0.as_slice());
        let mut engine = match self.card.context.connect(session) {
            Ok((engine, observed)) => {
                self.observed = observed;
                engine
            }
            Err(e) => return self.protocol(e),
        };
        if let Err(e) = engine.handshake() {
            return self.tls_failure(e);
        }
        self.engine = Some(engine);
        self.state = State::Handshake;
        self.flush(id)
    }

    fn on_message(&mut self, id: u8, message: &[u8]) -> PeerStep {
        let Some(engine) = self.engine.as_mut() else { return self.protocol("TLS data before the Start") };
        engine.feed(message);
        match self.state {
            State::Handshake => match engine.handshake() {
                Ok(false) => self.flush(id),
                Ok(true) => self.established(id),
                Err(e) => self.tls_failure(e),
            },
            State::Tunnel => {
                let data = match engine.read_application_data() {
                    Ok(d) => d,
                    Err(e) => return self.tls_failure(e),
                };
                if engine.is_closed() {
                    return self.protocol("the server closed the tunnel");
                }
                // An empty message, a session ticket, or the TLS 1.3
                // commitment octet some servers send in TTLS too: acknowledge.
                if data.is_empty() || data == [0] {
                    return self.flush(id);
                }
                match self.inner.on_data(&data) {
                    Ok(Some(reply)) => self.write_and_flush(id, &reply),
                    Ok(None) => self.flush(id),
                    Err(reason) => self.fail(reason),
                }
            }
            State::Idle | State::Failed => self.protocol("a request while none was expected"),
        }
    }

    /// Our handshake completed: keys, then the first tunnel message.
    fn established(&mut self, id: u8) -> PeerStep {
        let Some(engine) = self.engine.as_mut() else { return self.protocol("no TLS engine") };
        let (keys, exporter) = match session_secrets(engine, KeyLabels::EAP_TTLS) {
            Ok(secrets) => secrets,
            Err(e) => return self.protocol(e),
        };
        // The server sends nothing in the tunnel before we speak; a ticket
        // that came with its Finished is processed here.
        match engine.read_application_data() {
            Ok(d) if d.is_empty() => {}
            Ok(_) => return self.protocol("tunnel data from the server before the inner credentials"),
            Err(e) => return self.tls_failure(e),
        }
        self.keys = Some(keys);
        self.state = State::Tunnel;
        #[cfg(test)]
        if let Some(junk) = self.tunnel_override.take() {
            return self.write_and_flush(id, &junk);
        }
        let payment = self.payment.as_ref().zip(self.card.key.as_ref());
        match self.inner.start(payment, &exporter) {
            Ok(first) => self.write_and_flush(id, &first),
            Err(reason) => self.fail(reason),
        }
    }

    fn write_and_flush(&mut self, id: u8, data: &[u8]) -> PeerStep {
        let Some(engine) = self.engine.as_mut() else { return self.protocol("no TLS engine") };
        if let Err(e) = engine.write_application_data(data) {
            return self.tls_failure(e);
        }
        self.flush(id)
    }
}

impl PeerMethod for EapTtlsPeer {
    fn kind(&self) -> EapType {
        EapType::TTLS
    }

    fn on_request(&mut self, request: &[u8]) -> PeerStep {
        if matches!(self.state, State::Failed) {
            return PeerStep::Fail(FailureReason::Protocol(format!("{NAME}: a request after the failure")));
        }
        let packet = match Packet::decode(request) {
            Ok(p) => p,
            Err(e) => return self.protocol(e),
        };
        let id = packet.identifier;
        let frame = match Frame::parse(&packet.data, NAME) {
            Ok(f) => f,
            Err(e) => return self.protocol(e),
        };
        if frame.start() {
            return match self.state {
                State::Idle => self.on_start(id),
                _ => self.protocol("a second Start"),
            };
        }
        if matches!(self.state, State::Idle) {
            return self.protocol("a request before the Start");
        }
        if self.outgoing.in_progress() {
            if !frame.is_ack() {
                return self.protocol("expected an acknowledgement of our fragment");
            }
            let next = self.outgoing.next_fragment().unwrap_or_else(|| fragment::ack(TTLS_VERSION));
            return self.response(id, next);
        }
        match self.reassembler.push(&frame) {
            Ok(None) => self.response(id, fragment::ack(TTLS_VERSION)),
            Ok(Some(message)) => self.on_message(id, &message),
            Err(e) => self.protocol(e),
        }
    }

    fn keys(&self) -> Option<Keys> {
        match self.state {
            // The credentials have gone out only with their last fragment:
            // until then the server cannot have checked them, and an
            // EAP-Success is the relay's.
            State::Tunnel if self.inner.complete() && !self.outgoing.in_progress() => self.keys.clone(),
            _ => None,
        }
    }

    fn result(&self) -> Option<Vec<u8>> {
        self.inner.result()
    }

    fn remember(&self) -> Vec<PeerMemory> {
        let mut memory = self.inner.remember();
        if let Some(der) = self.observed.latest_session() {
            memory.push(PeerMemory::TlsSession(TlsSession(der)));
        }
        memory
    }
}
