//! The authenticator side of one EAP conversation (RFC 3748 §2, §4.1).
//!
//! [`ServerSession`] owns identifiers, the identity exchange, method
//! selection with Nak, and the round limit; the method owns everything after
//! its first request. Retransmission is the lower layer's job (RADIUS
//! duplicate detection), so a response with a stale identifier is discarded.

use crate::method::{Answer, Authenticated, FailureReason, Keys, MethodStep, ServerMethod, Verdict};
use crate::packet::{Code, EapType, Packet};

/// Most round trips one conversation may take. EAP-TLS with a 16 KiB
/// certificate flight at a 1000-octet fragment size needs about 20.
pub const MAX_ROUNDS: u32 = 64;

/// What the I/O layer must do next.
#[derive(Debug)]
pub enum Step {
    /// Send this EAP Request to the peer (RADIUS: Access-Challenge).
    Send(Vec<u8>),
    /// Look up which methods this identity may use and call
    /// [`ServerSession::offer_methods`], best first.
    NeedMethods {
        /// What the peer sent in EAP-Response/Identity.
        identity: String,
    },
    /// The method asks for credentials: answer with [`ServerSession::answer`].
    Query(crate::method::Query),
    /// The peer is authenticated: decide, then [`ServerSession::conclude`].
    Authenticated(Authenticated),
    /// Done: send EAP-Success (RADIUS: Access-Accept with the MSK).
    Accept {
        /// The EAP-Success packet.
        packet: Vec<u8>,
        /// The method's keys.
        keys: Keys,
        /// The method that succeeded.
        method: EapType,
    },
    /// Done: send EAP-Failure (RADIUS: Access-Reject).
    Reject {
        /// The EAP-Failure packet.
        packet: Vec<u8>,
        /// Why, for the log and the decline code.
        reason: FailureReason,
    },
    /// Silently discard the packet (RFC 3748 §4.1), e.g. a stale identifier.
    Discard(&'static str),
}

enum State {
    /// Waiting for EAP-Response/Identity (or an EAP-Start).
    Identity,
    /// Asked the caller which methods the identity may use.
    Selecting,
    /// A method is running.
    Method(Box<dyn ServerMethod>),
    /// Ended; every further packet is discarded.
    Done,
}

/// One EAP conversation, authenticator side.
pub struct ServerSession {
    state: State,
    /// Methods still eligible after a Nak, best first.
    alternatives: Vec<Box<dyn ServerMethod>>,
    /// Identifier of the outstanding request; responses must echo it.
    outstanding: Option<u8>,
    next_id: u8,
    rounds: u32,
    /// Requests the current method has sent; a Nak is legal only after the first.
    method_rounds: u32,
    identity: Option<String>,
}

impl ServerSession {
    /// A new conversation whose first request will use `first_id`.
    pub fn new(first_id: u8) -> Self {
        Self {
            state: State::Identity,
            alternatives: Vec::new(),
            outstanding: None,
            next_id: first_id,
            rounds: 0,
            method_rounds: 0,
            identity: None,
        }
    }

    /// The identity from EAP-Response/Identity, once received.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// True once the conversation has ended.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Handles one packet from the peer. An empty slice is an EAP-Start
    /// (RFC 3579 §2.1): the answer is EAP-Request/Identity.
    pub fn handle(&mut self, raw: &[u8]) -> Step {
        if matches!(self.state, State::Done) {
            return Step::Discard("conversation already ended");
        }
        if raw.is_empty() {
            return match self.state {
                State::Identity => self.send_identity_request(),
                _ => Step::Discard("EAP-Start in the middle of a conversation"),
            };
        }
        let packet = match Packet::decode(raw) {
            Ok(p) => p,
            Err(e) => return self.reject(FailureReason::Protocol(e.to_string())),
        };
        if packet.code != Code::Response {
            return Step::Discard("not an EAP-Response");
        }
        if let Some(expected) = self.outstanding {
            if packet.identifier != expected {
                return Step::Discard("identifier does not match the outstanding request");
            }
        }
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return self.reject(FailureReason::TooManyRounds);
        }
        match (&self.state, packet.kind) {
            (State::Identity, Some(EapType::IDENTITY)) => {
                let identity = String::from_utf8_lossy(&packet.data).into_owned();
                self.identity = Some(identity.clone());
                self.outstanding = None;
                self.state = State::Selecting;
                Step::NeedMethods { identity }
            }
            (State::Identity, _) => self.reject(FailureReason::Protocol("expected EAP-Response/Identity".into())),
            (State::Selecting, _) => Step::Discard("waiting for the method list"),
            (State::Method(_), _) => self.on_method_response(&packet, raw),
            (State::Done, _) => Step::Discard("conversation already ended"),
        }
    }

    fn on_method_response(&mut self, packet: &Packet, raw: &[u8]) -> Step {
        let running = match &self.state {
            State::Method(m) => m.kind(),
            _ => return Step::Discard("no method is running"),
        };
        match packet.kind {
            // A Nak is only legal as the answer to a method's first request
            // (RFC 3748 §5.3.1).
            Some(EapType::NAK) if self.method_rounds == 1 => self.on_nak(packet),
            Some(kind) if kind == running => {
                let id = self.bump_id();
                let State::Method(method) = &mut self.state else { return Step::Discard("no method is running") };
                let step = method.on_response(id, raw);
                self.drive(step)
            }
            Some(EapType::IDENTITY) => Step::Discard("late EAP-Response/Identity"),
            _ => self.reject(FailureReason::Protocol("response of another method type".into())),
        }
    }

    /// The methods the identity may use, best first. Empty means the
    /// identity is unknown.
    pub fn offer_methods(&mut self, mut methods: Vec<Box<dyn ServerMethod>>) -> Step {
        if !matches!(self.state, State::Selecting) {
            return Step::Discard("no method list was asked for");
        }
        if methods.is_empty() {
            return self.reject(FailureReason::UnknownIdentity);
        }
        let first = methods.remove(0);
        self.alternatives = methods;
        self.start_method(first)
    }

    /// The answer to the running method's query.
    pub fn answer(&mut self, answer: Answer) -> Step {
        let id = self.bump_id();
        match &mut self.state {
            State::Method(m) => {
                let step = m.on_answer(id, answer);
                self.drive(step)
            }
            _ => Step::Discard("no query is outstanding"),
        }
    }

    /// The decision after [`Step::Authenticated`].
    pub fn conclude(&mut self, verdict: Verdict) -> Step {
        let id = self.bump_id();
        match &mut self.state {
            State::Method(m) => {
                let step = m.conclude(id, verdict);
                self.drive(step)
            }
            _ => Step::Discard("nothing to conclude"),
        }
    }

    fn on_nak(&mut self, nak: &Packet) -> Step {
        let wanted = nak.nak_types();
        let pick = self.alternatives.iter().position(|m| wanted.contains(&m.kind()));
        match pick {
            Some(i) => {
                let next = self.alternatives.remove(i);
                self.start_method(next)
            }
            None => self.reject(FailureReason::NoCommonMethod),
        }
    }

    fn start_method(&mut self, mut method: Box<dyn ServerMethod>) -> Step {
        let id = self.bump_id();
        let step = method.start(id);
        self.state = State::Method(method);
        self.method_rounds = 0;
        self.drive(step)
    }

    fn drive(&mut self, step: MethodStep) -> Step {
        match step {
            MethodStep::Send(packet) => {
                self.outstanding = packet.get(1).copied();
                self.method_rounds += 1;
                Step::Send(packet)
            }
            MethodStep::Query(q) => Step::Query(q),
            MethodStep::Authenticated(a) => Step::Authenticated(a),
            MethodStep::Success(keys) => {
                let method = match &self.state {
                    State::Method(m) => m.kind(),
                    _ => EapType(0),
                };
                let packet = self.final_packet(Packet::success);
                Step::Accept { packet, keys, method }
            }
            MethodStep::Failure(reason) => self.reject(reason),
        }
    }

    fn send_identity_request(&mut self) -> Step {
        let id = self.bump_id();
        self.outstanding = Some(id);
        match Packet::new(Code::Request, id, EapType::IDENTITY, Vec::new()).encode() {
            Ok(bytes) => Step::Send(bytes),
            Err(e) => self.reject(FailureReason::Protocol(e.to_string())),
        }
    }

    fn reject(&mut self, reason: FailureReason) -> Step {
        let packet = self.final_packet(Packet::failure);
        Step::Reject { packet, reason }
    }

    /// EAP-Success/Failure reuse the identifier of the last response
    /// (RFC 3748 §4.2 allows either; hostapd and FreeRADIUS do this).
    fn final_packet(&mut self, make: fn(u8) -> Packet) -> Vec<u8> {
        let id = self.outstanding.unwrap_or(self.next_id);
        self.state = State::Done;
        // A four-octet packet always encodes.
        make(id).encode().unwrap_or_default()
    }

    fn bump_id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }
}
