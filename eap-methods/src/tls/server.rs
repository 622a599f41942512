//! EAP-TLS server (RFC 5216, RFC 9190) with eapay's payment binding
//! (DESIGN.md §4).
//!
//! The conversation: Start; the TLS handshake, fragmented both ways; once
//! the server's handshake is complete, the client certificate's key goes
//! to the I/O layer ([`Query::CardKey`]) before anything else is sent, on
//! resumption too (the card may have been blocked since). Then:
//!
//! - TLS 1.3, and TLS 1.2 resumed: the client's final flight may carry one
//!   application-data record, the card's `EAPAY1` confirmation;
//!   [`MethodStep::Authenticated`] follows the card-key answer at once.
//! - TLS 1.2 full handshake: the server's final flight (CCS, Finished,
//!   ticket), held during the query, goes out after it; the card answers
//!   with the standard empty acknowledgement (no confirmation) or with the
//!   confirmation record.
//!
//! After the verdict: a card that confirmed gets the result record; in TLS
//! 1.3 an approval also carries the commitment message (0x00, RFC 9190
//! §2.5) after any NewSessionTicket; the card's acknowledgement then ends
//! the conversation. A standard peer gets the standard exchange: EAP-Success
//! (TLS 1.3: after the commitment) or EAP-Failure.
//!
//! A handshake that fails with an alert sends it in one request and ends
//! with the next response (RFC 5216 §2.1.3); an alert from the peer ends
//! the conversation at once.

use crate::method::{
    Answer, Authenticated, CardSignature, FailureReason, Keys, MethodStep, Query, ServerMethod, Verdict,
};
use crate::packet::{Code, EapType, Packet};
use crate::tls::config::{TlsServerConfig, TlsVersion};
use crate::tls::confirmation::{self, ConfirmationRecord, EXPORTER_LEN};
use crate::tls::engine::{TlsEngine, TlsError};
use crate::tls::fragment::{self, Flight, Frame, Reassembler};
use crate::tls::keys::{session_secrets, KeyLabels};

const NAME: &str = "EAP-TLS";

enum State {
    /// Created; `start` not called yet.
    Idle,
    /// Sent Start or handshake data; waiting for the peer's TLS data.
    Handshake,
    /// Asked for the card key; `full12` holds the final flight back.
    CardKey {
        full12: bool,
    },
    /// TLS 1.2 full handshake: sent the final flight; waiting for the
    /// acknowledgement or the confirmation record.
    Confirmation,
    /// Reported Authenticated; waiting for `conclude`.
    Verdict,
    /// Sent the last request; its acknowledgement ends the conversation.
    Final {
        approved: bool,
    },
    /// Sent a TLS alert; the next response ends the conversation.
    Alerted(FailureReason),
    Done,
}

/// What the handshake established, kept for the verdict.
struct Session {
    version: TlsVersion,
    keys: Keys,
    exporter: [u8; EXPORTER_LEN],
    spki: Vec<u8>,
}

/// One EAP-TLS authentication, server side.
pub struct EapTlsServer {
    identity: String,
    fragment_size: usize,
    engine: Result<TlsEngine, TlsError>,
    reassembler: Reassembler,
    outgoing: Flight,
    state: State,
    /// Output of the completed handshake held back until the card key is
    /// known (TLS 1.2 final flight) or the verdict (TLS 1.3 ticket).
    held: Vec<u8>,
    session: Option<Session>,
    confirmation: Option<ConfirmationRecord>,
    card_id: String,
}

impl EapTlsServer {
    /// A conversation with the peer that sent `identity` in
    /// EAP-Response/Identity; `fragment_size` is this conversation's limit
    /// (from RADIUS Framed-MTU; the smaller of it and the configured one is
    /// used, 0 meaning no limit of its own).
    pub fn new(config: &TlsServerConfig, identity: &str, fragment_size: usize) -> Self {
        let fragment_size = match fragment_size {
            0 => config.fragment_size(),
            n => n.min(config.fragment_size()),
        };
        Self {
            identity: identity.to_string(),
            fragment_size: fragment::clamp_fragment_size(fragment_size),
            engine: TlsEngine::server(config.context()),
            reassembler: Reassembler::new(NAME, config.max_message()),
            outgoing: Flight::default(),
            state: State::Idle,
            held: Vec::new(),
            session: None,
            confirmation: None,
            card_id: String::new(),
        }
    }

    /// The negotiated TLS version, once the handshake got that far.
    pub fn tls_version(&self) -> Option<TlsVersion> {
        self.engine.as_ref().ok().and_then(TlsEngine::version)
    }

    /// True if the handshake resumed a session.
    pub fn session_reused(&self) -> bool {
        self.engine.as_ref().is_ok_and(TlsEngine::session_reused)
    }

    /// The EAP Session-Id (RFC 5216 §2.3, RFC 9190 §2.3), once established.
    pub fn session_id(&self) -> Option<Vec<u8>> {
        let engine = self.engine.as_ref().ok()?;
        crate::tls::keys::session_id(engine, KeyLabels::EAP_TLS).ok()
    }

    fn fail(&mut self, reason: FailureReason) -> MethodStep {
        self.state = State::Done;
        self.outgoing.clear();
        MethodStep::Failure(reason)
    }

    fn protocol(&mut self, why: impl std::fmt::Display) -> MethodStep {
        self.fail(FailureReason::Protocol(format!("{NAME}: {why}")))
    }

    fn request(&mut self, id: u8, type_data: Vec<u8>) -> MethodStep {
        match Packet::new(Code::Request, id, EapType::TLS, type_data).encode() {
            Ok(bytes) => MethodStep::Send(bytes),
            Err(e) => self.protocol(e),
        }
    }

    /// Sends a TLS message, fragmented as needed.
    fn send_message(&mut self, id: u8, message: Vec<u8>) -> MethodStep {
        let first = self.outgoing.start(message, self.fragment_size, 0);
        self.request(id, first)
    }

    fn send_next_fragment(&mut self, id: u8) -> MethodStep {
        match self.outgoing.next_fragment() {
            Some(data) => self.request(id, data),
            None => self.protocol("no fragment to send"),
        }
    }

    /// The handshake failed: send our alert if OpenSSL wrote one (and the
    /// peer did not send one itself), else end now.
    fn tls_failure(&mut self, id: u8, err: TlsError) -> MethodStep {
        let reason = failure_reason(&err);
        let alert = match self.engine.as_mut() {
            Ok(engine) => engine.take_output(),
            Err(_) => Vec::new(),
        };
        if alert.is_empty() || err.peer_alert.is_some() {
            return self.fail(reason);
        }
        self.state = State::Alerted(reason);
        self.send_message(id, alert)
    }

    fn on_handshake_data(&mut self, id: u8, message: Vec<u8>) -> MethodStep {
        if message.is_empty() {
            return self.protocol("empty response during the TLS handshake");
        }
        let engine = match self.engine.as_mut() {
            Ok(engine) => engine,
            Err(e) => {
                let why = format!("TLS unavailable: {e}");
                return self.protocol(why);
            }
        };
        engine.feed(&message);
        match engine.handshake() {
            Err(e) => self.tls_failure(id, e),
            Ok(false) => {
                let out = engine.take_output();
                if out.is_empty() {
                    return self.protocol("the peer's TLS data is incomplete");
                }
                self.send_message(id, out)
            }
            Ok(true) => self.on_established(),
        }
    }

    fn on_established(&mut self) -> MethodStep {
        let Ok(engine) = self.engine.as_mut() else { return self.protocol("TLS unavailable") };
        let Some(version) = engine.version() else { return self.protocol("no TLS version") };
        let (keys, exporter) = match session_secrets(engine, KeyLabels::EAP_TLS) {
            Ok(secrets) => secrets,
            Err(e) => return self.protocol(e),
        };
        let Some(spki) = engine.peer_spki() else {
            return self.fail(FailureReason::AuthenticationFailed("no client certificate"));
        };
        let full12 = version == TlsVersion::V1_2 && !engine.session_reused();
        self.held = engine.take_output();
        if !full12 {
            // TLS 1.3 and 1.2 resumed: the confirmation rides on the
            // client's Finished flight.
            match self.read_confirmation() {
                Ok(confirmation) => self.confirmation = confirmation,
                Err(reason) => return self.fail(reason),
            }
        }
        self.session = Some(Session { version, keys, exporter, spki: spki.clone() });
        self.state = State::CardKey { full12 };
        MethodStep::Query(Query::CardKey { spki })
    }

    /// The card's confirmation record, if it sent application data. Data
    /// that is not one well-formed confirmation is refused: a standard peer
    /// sends none.
    fn read_confirmation(&mut self) -> Result<Option<ConfirmationRecord>, FailureReason> {
        let protocol = |why: String| FailureReason::Protocol(format!("{NAME}: {why}"));
        let engine = self.engine.as_mut().map_err(|e| protocol(format!("TLS unavailable: {e}")))?;
        let data = engine.read_application_data().map_err(|e| failure_reason(&e))?;
        if engine.is_closed() {
            return Err(protocol("the peer closed the TLS connection".into()));
        }
        if data.is_empty() {
            return Ok(None);
        }
        match ConfirmationRecord::decode(&data) {
            Ok(Some(record)) => Ok(Some(record)),
            Ok(None) => Err(protocol("application data that is not an eapay confirmation".into())),
            Err(e) => Err(protocol(e.to_string())),
        }
    }

    fn on_confirmation(&mut self, message: Vec<u8>) -> MethodStep {
        if !message.is_empty() {
            let Ok(engine) = self.engine.as_mut() else { return self.protocol("TLS unavailable") };
            engine.feed(&message);
            match self.read_confirmation() {
                Ok(confirmation) => self.confirmation = confirmation,
                Err(reason) => return self.fail(reason),
            }
        }
        self.authenticated()
    }

    fn authenticated(&mut self) -> MethodStep {
        let Some(session) = &self.session else { return self.protocol("no TLS session") };
        let identity = match realm(&self.identity) {
            Some(realm) if !realm.is_empty() => format!("{}@{realm}", self.card_id),
            _ => self.card_id.clone(),
        };
        let signature = self.confirmation.as_ref().map(|c| CardSignature {
            exporter: session.exporter,
            signature: c.signature.clone(),
            pan_token: c.pan_token,
            spki: Some(session.spki.clone()),
        });
        self.state = State::Verdict;
        MethodStep::Authenticated(Authenticated {
            method: EapType::TLS,
            identity,
            card_id: self.card_id.clone(),
            confirmation: self.confirmation.as_ref().map(|c| c.details.clone()),
            signature,
        })
    }

    fn on_final_ack(&mut self, approved: bool, message: &[u8]) -> MethodStep {
        if !message.is_empty() {
            return self.protocol("expected the acknowledgement of the last request");
        }
        match (&self.session, approved) {
            (Some(session), true) => {
                let keys = session.keys.clone();
                self.state = State::Done;
                if let Ok(engine) = self.engine.as_mut() {
                    engine.keep_session();
                }
                MethodStep::Success(keys)
            }
            _ => self.fail(FailureReason::Declined),
        }
    }
}

impl ServerMethod for EapTlsServer {
    fn kind(&self) -> EapType {
        EapType::TLS
    }

    fn start(&mut self, id: u8) -> MethodStep {
        if !matches!(self.state, State::Idle) {
            return self.protocol("started twice");
        }
        if let Err(e) = &self.engine {
            let why = format!("TLS unavailable: {e}");
            return self.protocol(why);
        }
        self.state = State::Handshake;
        self.request(id, fragment::start(0))
    }

    fn on_response(&mut self, id: u8, response: &[u8]) -> MethodStep {
        let packet = match Packet::decode(response) {
            Ok(p) if p.is(Code::Response, EapType::TLS) => p,
            Ok(_) => return self.protocol("not an EAP-TLS response"),
            Err(e) => return self.protocol(e),
        };
        match std::mem::replace(&mut self.state, State::Done) {
            // RFC 5216 §2.1.3: whatever the peer answers to our alert.
            State::Alerted(reason) => return self.fail(reason),
            State::Idle | State::CardKey { .. } | State::Verdict | State::Done => {
                return self.protocol("response while none was asked for")
            }
            other => self.state = other,
        }
        let frame = match Frame::parse(&packet.data, NAME) {
            Ok(f) => f,
            Err(e) => return self.protocol(e),
        };
        if self.outgoing.in_progress() {
            if !frame.is_ack() {
                return self.protocol("expected the acknowledgement of a fragment");
            }
            return self.send_next_fragment(id);
        }
        let message = match self.reassembler.push(&frame) {
            Ok(Some(message)) => message,
            Ok(None) => return self.request(id, fragment::ack(0)),
            Err(e) => return self.protocol(e),
        };
        match self.state {
            State::Handshake => self.on_handshake_data(id, message),
            State::Confirmation => self.on_confirmation(message),
            State::Final { approved } => self.on_final_ack(approved, &message),
            _ => self.protocol("response while none was asked for"),
        }
    }

    fn on_answer(&mut self, id: u8, answer: Answer) -> MethodStep {
        let State::CardKey { full12 } = self.state else {
            return self.protocol("answer while none was asked for");
        };
        match answer {
            Answer::CardKey { card_id } => {
                if !identity_matches(&self.identity, &card_id) {
                    return self.fail(FailureReason::AuthenticationFailed("identity does not match the client key"));
                }
                self.card_id = card_id;
                if full12 {
                    self.state = State::Confirmation;
                    let flight = std::mem::take(&mut self.held);
                    if flight.is_empty() {
                        return self.protocol("no final flight to send");
                    }
                    return self.send_message(id, flight);
                }
                self.authenticated()
            }
            Answer::UnknownCard => {
                self.fail(FailureReason::AuthenticationFailed("client certificate key is not registered"))
            }
            Answer::BlockedCard => {
                self.fail(FailureReason::AuthenticationFailed("client certificate key is not active: card blocked"))
            }
            _ => self.protocol("answer of another kind than the card key asked for"),
        }
    }

    fn conclude(&mut self, id: u8, verdict: Verdict) -> MethodStep {
        if !matches!(self.state, State::Verdict) {
            return self.protocol("verdict without authentication");
        }
        let Some(version) = self.session.as_ref().map(|s| s.version) else {
            return self.protocol("no TLS session");
        };
        let Ok(engine) = self.engine.as_mut() else { return self.protocol("TLS unavailable") };
        let mut records = false;
        if let (Some(_), Some(result)) = (&self.confirmation, &verdict.result) {
            if let Err(e) = engine.write_application_data(&confirmation::encode_result(result)) {
                return self.protocol(e);
            }
            records = true;
        }
        if version == TlsVersion::V1_3 && verdict.approved {
            // RFC 9190 §2.5: the commitment message, after which the server
            // sends no more handshake messages.
            if let Err(e) = engine.write_application_data(&[0]) {
                return self.protocol(e);
            }
            records = true;
        }
        if !records {
            return self.on_final_ack(verdict.approved, &[]);
        }
        let mut flight = std::mem::take(&mut self.held);
        flight.extend_from_slice(&engine.take_output());
        self.state = State::Final { approved: verdict.approved };
        self.send_message(id, flight)
    }
}

/// The reason a TLS failure ends the conversation with.
fn failure_reason(err: &TlsError) -> FailureReason {
    if err.peer_rejected_authentication() {
        FailureReason::RejectedByPeer
    } else if err.peer_alert.is_some() {
        FailureReason::Protocol(format!("{NAME}: peer sent TLS alert: {}", err.reason))
    } else if err.failed_proof {
        FailureReason::AuthenticationFailed("the client's TLS signature or Finished did not verify")
    } else {
        FailureReason::Protocol(format!("{NAME}: TLS handshake failed: {}", err.reason))
    }
}

/// The NAI user part must name the card that owns the key, unless the
/// peer hid it (RFC 9190 §2.1.2: empty or "anonymous").
fn identity_matches(identity: &str, card_id: &str) -> bool {
    let user = match identity.rsplit_once('@') {
        Some((user, _)) => user,
        None => identity,
    };
    user.is_empty() || user.eq_ignore_ascii_case("anonymous") || user == card_id
}

fn realm(identity: &str) -> Option<&str> {
    identity.rsplit_once('@').map(|(_, realm)| realm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert!(identity_matches("c0ffee@issuer.example", "c0ffee"));
        assert!(identity_matches("c0ffee", "c0ffee"));
        assert!(identity_matches("@issuer.example", "c0ffee"));
        assert!(identity_matches("anonymous@issuer.example", "c0ffee"));
        assert!(identity_matches("Anonymous", "c0ffee"));
        assert!(!identity_matches("beef@issuer.example", "c0ffee"));
        assert!(!identity_matches("C0FFEE@issuer.example", "c0ffee"), "card ids are exact");
        assert_eq!(realm("a@b"), Some("b"));
        assert_eq!(realm("a"), None);
    }
}
