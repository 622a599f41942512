//! EAP-TLS peer: the card (RFC 5216, RFC 9190), with eapay's payment
//! confirmation (DESIGN.md §4).
//!
//! The card trusts the server by its pinned key, checked during the
//! handshake before the card's own certificate leaves, and again on the
//! established session (a resumed session carries no certificate message).
//! Once its handshake is complete, a card with a payment to confirm writes
//! one `EAPAY1` confirmation record: after its Finished (TLS 1.3, TLS 1.2
//! resumed) or as the whole response (TLS 1.2 full handshake, which
//! completes on the server's Finished). It then reads the server's
//! application data: the result record, and in TLS 1.3 the commitment
//! message (0x00), before which EAP-Success is not accepted (RFC 9190 §2.5),
//! nor before the last fragment of the card's own flight has gone out.
//!
//! A server alert is acknowledged with an empty response (RFC 5216 §2.1.3)
//! and the method accepts no EAP-Success afterwards; a failure of the card's
//! own (the pin, a TLS error) stops the method with [`PeerStep::Fail`].

use std::sync::Arc;

use crate::error::EapError;
use crate::method::{FailureReason, Keys, PeerMemory, PeerMethod, PeerStep, TlsSession};
use crate::packet::{Code, EapType, Packet};
use crate::tls::config::{pin_eq, CardTls, Observed, PaymentToSign, TlsPeerOptions, TlsVersion};
use crate::tls::confirmation::{self, ConfirmationRecord, EXPORTER_LABEL, EXPORTER_LEN, MAGIC};
use crate::tls::engine::{TlsEngine, TlsError};
use crate::tls::fragment::{self, Flight, Frame, Reassembler};
use crate::tls::keys::{derive_keys, KeyLabels};

const NAME: &str = "EAP-TLS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the Start.
    Idle,
    /// Handshake in progress.
    Handshake,
    /// Handshake complete.
    Established,
    /// The server sent an alert; no Success is accepted.
    Failed,
}

/// One EAP-TLS authentication, peer side.
pub struct EapTlsPeer {
    card: Arc<CardTls>,
    observed: Observed,
    server_pin: [u8; 32],
    session: Option<TlsSession>,
    payment: Option<PaymentToSign>,
    fragment_size: usize,
    engine: Option<TlsEngine>,
    reassembler: Reassembler,
    outgoing: Flight,
    state: State,
    keys: Option<Keys>,
    /// TLS 1.3: the commitment message arrived (TLS 1.2: set with the keys).
    committed: bool,
    result: Option<Vec<u8>>,
}

impl EapTlsPeer {
    /// A card with these options. Fails if the key or certificate does not
    /// load or does not match. Parses them and builds the OpenSSL context:
    /// a card that pays more than once keeps a [`CardTls`] and uses
    /// [`EapTlsPeer::with_card`].
    pub fn new(opts: TlsPeerOptions) -> Result<Self, EapError> {
        let card = CardTls::tls(
            &opts.private_key_pem,
            &opts.certificate_pem,
            opts.server_pin,
            opts.min_version,
            opts.max_version,
        )?;
        Ok(Self::with_card(Arc::new(card), opts))
    }

    /// A conversation of a card whose credentials are built already
    /// ([`CardTls::tls`]); the PEM, pin and version fields of `opts` are not
    /// used.
    pub fn with_card(card: Arc<CardTls>, opts: TlsPeerOptions) -> Self {
        let server_pin = card.context.server_pin();
        Self {
            card,
            observed: Observed::default(),
            server_pin,
            session: opts.session,
            payment: opts.payment,
            fragment_size: fragment::clamp_fragment_size(opts.fragment_size),
            engine: None,
            reassembler: Reassembler::new(NAME, opts.max_message),
            outgoing: Flight::default(),
            state: State::Idle,
            keys: None,
            committed: false,
            result: None,
        }
    }

    /// The negotiated TLS version, once known.
    pub fn tls_version(&self) -> Option<TlsVersion> {
        self.engine.as_ref().and_then(TlsEngine::version)
    }

    /// True if the handshake resumed the stored session.
    pub fn session_reused(&self) -> bool {
        self.engine.as_ref().is_some_and(TlsEngine::session_reused)
    }

    /// The EAP Session-Id, once established.
    pub fn session_id(&self) -> Option<Vec<u8>> {
        crate::tls::keys::session_id(self.engine.as_ref()?, KeyLabels::EAP_TLS).ok()
    }

    fn fail(&mut self, reason: FailureReason) -> PeerStep {
        self.state = State::Failed;
        self.keys = None;
        self.outgoing.clear();
        PeerStep::Fail(reason)
    }

    fn protocol(&mut self, why: impl std::fmt::Display) -> PeerStep {
        self.fail(FailureReason::Protocol(format!("{NAME}: {why}")))
    }

    fn response(&mut self, id: u8, type_data: Vec<u8>) -> PeerStep {
        match Packet::new(Code::Response, id, EapType::TLS, type_data).encode() {
            Ok(bytes) => PeerStep::Send(bytes),
            Err(e) => self.protocol(e),
        }
    }

    fn send_message(&mut self, id: u8, message: Vec<u8>) -> PeerStep {
        let first = self.outgoing.start(message, self.fragment_size, 0);
        self.response(id, first)
    }

    fn send_next_fragment(&mut self, id: u8) -> PeerStep {
        match self.outgoing.next_fragment() {
            Some(data) => self.response(id, data),
            None => self.protocol("no fragment to send"),
        }
    }

    fn on_start(&mut self, id: u8) -> PeerStep {
        if self.state != State::Idle {
            return self.protocol("Start in the middle of the conversation");
        }
        let session = self.session.as_ref().map(|s| s.0.as_slice());
        let mut engine = match self.card.context.connect(session) {
            Ok((engine, observed)) => {
                self.observed = observed;
                engine
            }
            Err(e) => return self.protocol(e),
        };
        if let Err(e) = engine.handshake() {
            return self.protocol(e);
        }
        let hello = engine.take_output();
        self.engine = Some(engine);
        self.state = State::Handshake;
        self.send_message(id, hello)
    }

    /// A TLS failure: acknowledge a server alert, stop on our own.
    fn tls_failure(&mut self, id: u8, err: TlsError) -> PeerStep {
        if self.observed.pin_failed() {
            return self.fail(FailureReason::AuthenticationFailed("server certificate does not match the pin"));
        }
        if err.peer_alert.is_some() {
            self.state = State::Failed;
            self.keys = None;
            return self.response(id, fragment::ack(0));
        }
        self.protocol(format_args!("TLS: {err}"))
    }

    fn on_message(&mut self, id: u8, message: Vec<u8>) -> PeerStep {
        if message.is_empty() {
            return self.protocol("empty request with nothing to acknowledge");
        }
        let Some(engine) = self.engine.as_mut() else { return self.protocol("no TLS connection") };
        engine.feed(&message);
        if self.state == State::Handshake {
            match engine.handshake() {
                Err(e) => return self.tls_failure(id, e),
                Ok(false) => {
                    let out = engine.take_output();
                    if out.is_empty() {
                        return self.protocol("the server's TLS data is incomplete");
                    }
                    return self.send_message(id, out);
                }
                Ok(true) => {
                    if let Err(step) = self.on_established() {
                        return step;
                    }
                }
            }
        }
        let Some(engine) = self.engine.as_mut() else { return self.protocol("no TLS connection") };
        let data = match engine.read_application_data() {
            Ok(data) => data,
            Err(e) => return self.tls_failure(id, e),
        };
        if let Err(why) = self.on_application_data(&data) {
            return self.protocol(why);
        }
        let Some(engine) = self.engine.as_mut() else { return self.protocol("no TLS connection") };
        let out = engine.take_output();
        if out.is_empty() {
            self.response(id, fragment::ack(0))
        } else {
            self.send_message(id, out)
        }
    }

    fn on_established(&mut self) -> Result<(), PeerStep> {
        let Some(engine) = self.engine.as_mut() else { return Err(self.protocol("no TLS connection")) };
        // Again on the established session: a resumed one sent no certificate.
        let pinned = engine
            .ssl()
            .peer_certificate()
            .and_then(|c| crate::tls::config::spki_sha256(&c))
            .is_some_and(|h| pin_eq(&h, &self.server_pin));
        if !pinned {
            return Err(self.fail(FailureReason::AuthenticationFailed("server certificate does not match the pin")));
        }
        let version = engine.version();
        let keys = match derive_keys(engine, KeyLabels::EAP_TLS) {
            Ok(keys) => keys,
            Err(e) => return Err(self.protocol(e)),
        };
        if let Some(payment) = &self.payment {
            let exporter = engine
                .export_keying_material(EXPORTER_LABEL, None, EXPORTER_LEN)
                .ok()
                .and_then(|e| <[u8; EXPORTER_LEN]>::try_from(e).ok());
            let Some(exporter) = exporter else { return Err(self.protocol("no exporter")) };
            let Some(key) = self.card.key.as_ref() else { return Err(self.protocol("the card has no key")) };
            let signature = match confirmation::sign(key, &payment.details, &exporter) {
                Ok(s) => s,
                Err(e) => {
                    let why = format!("cannot sign the confirmation: {}", crate::tls::engine::reasons(&e));
                    return Err(self.protocol(why));
                }
            };
            let record =
                ConfirmationRecord { details: payment.details.clone(), pan_token: payment.pan_token, signature };
            if let Err(e) = engine.write_application_data(&record.encode()) {
                return Err(self.protocol(e));
            }
        }
        self.keys = Some(keys);
        // TLS 1.2: the server's Finished authenticated it; TLS 1.3 waits
        // for the commitment message.
        self.committed = version == Some(TlsVersion::V1_2);
        self.state = State::Established;
        Ok(())
    }

    /// The server's records: the result and (TLS 1.3) the commitment.
    fn on_application_data(&mut self, mut data: &[u8]) -> Result<(), String> {
        let tls13 = self.tls_version() == Some(TlsVersion::V1_3);
        while !data.is_empty() {
            if data.starts_with(MAGIC) {
                // MAGIC | kind | length u16 | result
                let Some(len) = data.get(MAGIC.len() + 1..MAGIC.len() + 3) else {
                    return Err("truncated eapay record".into());
                };
                let end = MAGIC.len() + 3 + usize::from(u16::from_be_bytes([len[0], len[1]]));
                let Some(record) = data.get(..end) else { return Err("truncated eapay record".into()) };
                match confirmation::decode_result(record) {
                    Ok(Some(result)) if self.result.is_none() => self.result = Some(result),
                    Ok(Some(_)) => return Err("a second result record".into()),
                    Ok(None) => return Err("not an eapay record".into()),
                    Err(e) => return Err(e.to_string()),
                }
                data = &data[end..];
            } else if tls13 && data[0] == 0 {
                self.committed = true;
                data = &data[1..];
            } else {
                return Err("application data from the server that is not ours".into());
            }
        }
        Ok(())
    }
}

impl PeerMethod for EapTlsPeer {
    fn kind(&self) -> EapType {
        EapType::TLS
    }

    fn on_request(&mut self, request: &[u8]) -> PeerStep {
        let packet = match Packet::decode(request) {
            Ok(p) if p.is(Code::Request, EapType::TLS) => p,
            Ok(_) => return self.protocol("not an EAP-TLS request"),
            Err(e) => return self.protocol(e),
        };
        let id = packet.identifier;
        let frame = match Frame::parse(&packet.data, NAME) {
            Ok(f) => f,
            Err(e) => return self.protocol(e),
        };
        if frame.start() {
            return self.on_start(id);
        }
        match self.state {
            State::Idle => return self.protocol("expected Start"),
            State::Failed => return self.protocol("request after the conversation failed"),
            State::Handshake | State::Established => {}
        }
        if self.outgoing.in_progress() {
            if !frame.is_ack() {
                return self.protocol("expected the acknowledgement of a fragment");
            }
            return self.send_next_fragment(id);
        }
        match self.reassembler.push(&frame) {
            Ok(Some(message)) => self.on_message(id, message),
            Ok(None) => self.response(id, fragment::ack(0)),
            Err(e) => self.protocol(e),
        }
    }

    fn keys(&self) -> Option<Keys> {
        match self.state {
            // A resumed TLS 1.2 handshake is complete for the card before
            // its Finished has left: until its last fragment has, the server
            // cannot have checked the card, and an EAP-Success is the relay's.
            State::Established if self.committed && !self.outgoing.in_progress() => self.keys.clone(),
            _ => None,
        }
    }

    fn result(&self) -> Option<Vec<u8>> {
        self.result.clone()
    }

    fn remember(&self) -> Vec<PeerMemory> {
        let latest = self.observed.latest_session().or_else(|| {
            // A resumed TLS 1.2 session stays valid; OpenSSL reports new
            // sessions only.
            let engine = self.engine.as_ref()?;
            (engine.is_established() && engine.session_reused() && engine.version() == Some(TlsVersion::V1_2))
                .then(|| engine.session_der())
                .flatten()
        });
        latest.map(|der| PeerMemory::TlsSession(TlsSession(der))).into_iter().collect()
    }
}
