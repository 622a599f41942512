//! A real [`ServerSession`] and a real [`PeerSession`] talking, with the
//! fuzz input ([`Tape`]) standing between them on one side: each message
//! to that side is delivered as it is, mutated, replaced by arbitrary
//! bytes, or replaced by the previous one, as the tape says. The other
//! side's messages pass unchanged, so the real partner keeps the
//! conversation going as far as the tampered side lets it; that is what
//! takes the fuzzer past the first message of each method.
//!
//! Checked besides "no panic": the server never sends EAP-Success unless
//! the method reported the peer authenticated and the verdict approved it,
//! for the method that authenticated; a TLS or TTLS card never accepts
//! EAP-Success before the real server has at least completed the
//! handshake (it cannot have the keys otherwise).

use eap_methods::method::ServerMethod;
use eap_methods::peer::{PeerEvent, PeerSession};
use eap_methods::server::{ServerSession, Step};
use eap_methods::{Answer, AuthVector, EapType, Query, Verdict};

use crate::tape::{Delivered, Tape};

/// Messages one conversation may take; above the server's round limit
/// (64) with room for discarded ones.
const MAX_MESSAGES: usize = 200;

/// Which side the tape stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server gets the tampered messages (the card is real).
    Server,
    /// The card gets the tampered messages (the server is real).
    Peer,
}

/// The server's environment: which methods an identity gets, and the
/// answers of the card store and issuer.
pub trait World {
    /// The methods offered to `identity`, best first.
    fn methods(&mut self, identity: &str) -> Vec<Box<dyn ServerMethod>>;
    /// The right answer to `query`.
    fn answer(&mut self, query: Query) -> Answer;
    /// The card's method proves the server by the TLS handshake: it must
    /// not accept EAP-Success before the server completed one.
    fn handshake_proves_server(&self) -> bool {
        false
    }
}

/// What happened, for the seed generator and the next conversation.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The server sent EAP-Success.
    pub accepted: bool,
    /// The card accepted EAP-Success.
    pub peer_success: bool,
    /// Every message as it was delivered, both ways, in order.
    pub messages: Vec<Vec<u8>>,
}

/// What the server has shown so far, for the checks.
#[derive(Default)]
struct Seen {
    /// The method that reported Authenticated, and the verdict it got.
    authenticated: Option<(EapType, bool)>,
    /// The server completed a handshake or authenticated someone: it asked
    /// for the card's key, PIN or vector, or reported Authenticated.
    established: bool,
}

enum Pending {
    ToPeer(Vec<u8>),
    ToServer(Vec<u8>),
}

/// One conversation from EAP-Start to its end. `side` None: no tampering
/// and no decisions read (a conversation that prepares the next one, such
/// as the one that leaves a session or a re-authentication identity).
pub fn converse(
    tape: &mut Tape<'_>,
    side: Option<Side>,
    first_id: u8,
    peer: &mut PeerSession,
    world: &mut dyn World,
) -> Outcome {
    let mut c = Conversation { tape, side, server: ServerSession::new(first_id), world, seen: Seen::default() };
    c.run(peer)
}

struct Conversation<'t, 'a, 'w> {
    tape: &'t mut Tape<'a>,
    side: Option<Side>,
    server: ServerSession,
    world: &'w mut dyn World,
    seen: Seen,
}

impl Conversation<'_, '_, '_> {
    fn run(&mut self, peer: &mut PeerSession) -> Outcome {
        let mut outcome = Outcome::default();
        let first = self.server.handle(&[]);
        let Step::Send(request) = self.resolve(first) else { return outcome };
        let mut last_request = request.clone();
        let mut last_response = Vec::new();
        let mut pending = Pending::ToPeer(request);
        let (mut previous_to_peer, mut previous_to_server) = (Vec::new(), Vec::new());
        for _ in 0..MAX_MESSAGES {
            pending = match pending {
                Pending::ToPeer(request) => {
                    let (bytes, delivered) = self.deliver(Side::Peer, &request, &previous_to_peer);
                    previous_to_peer = bytes;
                    outcome.messages.push(previous_to_peer.clone());
                    match peer.handle(&previous_to_peer) {
                        PeerEvent::Send(response) => {
                            last_response.clone_from(&response);
                            Pending::ToServer(response)
                        }
                        PeerEvent::Success { .. } => {
                            assert!(
                                !self.world.handshake_proves_server() || self.seen.established,
                                "the card accepted EAP-Success before the server completed the handshake"
                            );
                            outcome.peer_success = true;
                            break;
                        }
                        PeerEvent::Failure(_) => break,
                        PeerEvent::Ignore(_) => match self.retry(Side::Peer, delivered) {
                            Some(Side::Peer) => Pending::ToPeer(last_request.clone()),
                            Some(Side::Server) => Pending::ToServer(last_response.clone()),
                            None => break,
                        },
                    }
                }
                Pending::ToServer(response) => {
                    let (bytes, delivered) = self.deliver(Side::Server, &response, &previous_to_server);
                    previous_to_server = bytes;
                    outcome.messages.push(previous_to_server.clone());
                    let step = self.server.handle(&previous_to_server);
                    let step = self.resolve(step);
                    if let Step::Send(packet) | Step::Accept { packet, .. } | Step::Reject { packet, .. } = &step {
                        last_request.clone_from(packet);
                    }
                    match step {
                        Step::Send(request) => Pending::ToPeer(request),
                        Step::Accept { packet, method, .. } => {
                            assert_eq!(
                                self.seen.authenticated,
                                Some((method, true)),
                                "EAP-Success without an approved authentication by {method:?}"
                            );
                            outcome.accepted = true;
                            Pending::ToPeer(packet)
                        }
                        Step::Reject { packet, .. } => Pending::ToPeer(packet),
                        Step::Discard(_) => match self.retry(Side::Server, delivered) {
                            Some(Side::Peer) => Pending::ToPeer(last_request.clone()),
                            Some(Side::Server) => Pending::ToServer(last_response.clone()),
                            None => break,
                        },
                        // `resolve` gave up on a server that keeps asking.
                        Step::NeedMethods { .. } | Step::Query(_) | Step::Authenticated(_) => break,
                    }
                }
            };
        }
        outcome
    }

    /// After `receiver` ignored what it got: whose pending real message
    /// goes next. The tampered receiver's, if it got something else (the
    /// real one is still due); else, while the input lasts, the tampered
    /// side's (a duplicate or a stale message can be ignored in a
    /// conversation that goes on); else none: the real conversation is stuck.
    fn retry(&self, receiver: Side, delivered: Delivered) -> Option<Side> {
        let tampered = self.side?;
        if tampered == receiver && delivered == Delivered::Other {
            return Some(receiver);
        }
        (!self.tape.exhausted()).then_some(tampered)
    }

    fn deliver(&mut self, to: Side, real: &[u8], previous: &[u8]) -> (Vec<u8>, Delivered) {
        if self.side == Some(to) {
            self.tape.deliver(real, previous)
        } else {
            (real.to_vec(), Delivered::Real)
        }
    }

    fn fuzzing(&self) -> bool {
        self.side.is_some()
    }

    /// Serves the server's requests to its caller until it has something
    /// for the peer (or has ended).
    fn resolve(&mut self, mut step: Step) -> Step {
        for _ in 0..32 {
            step = match step {
                Step::NeedMethods { identity } => {
                    let methods = self.world.methods(&identity);
                    self.server.offer_methods(methods)
                }
                Step::Query(query) => {
                    if matches!(
                        query,
                        Query::CardKey { .. } | Query::Pin { .. } | Query::AkaVector { .. } | Query::AkaResync { .. }
                    ) {
                        self.seen.established = true;
                    }
                    let answer = self.answer(query);
                    self.server.answer(answer)
                }
                Step::Authenticated(a) => {
                    let verdict = self.verdict();
                    self.seen.authenticated = Some((a.method, verdict.approved));
                    self.seen.established = true;
                    self.server.conclude(verdict)
                }
                other => return other,
            };
        }
        step
    }

    /// The world's answer, or (one decision in eight) a wrong one: the card
    /// store and issuer are trusted, but a method must still survive any
    /// answer of theirs without panicking.
    fn answer(&mut self, query: Query) -> Answer {
        if !self.fuzzing() || self.tape.byte() % 8 != 7 {
            return self.world.answer(query);
        }
        match self.tape.byte() % 10 {
            0 => Answer::UnknownCard,
            1 => Answer::BlockedCard,
            2 => Answer::ResyncRejected,
            3 => Answer::PinAccepted,
            4 => Answer::PinRejected { tries_left: 1 },
            5 => Answer::PinLocked,
            6 => Answer::NextIdentities { pseudonym: None, reauth_id: None },
            7 => Answer::NextIdentities {
                pseudonym: Some("p@other.example".into()),
                reauth_id: Some(String::from_utf8_lossy(&self.tape.bytes(24)).into_owned()),
            },
            8 => Answer::AkaVector(AuthVector {
                rand: [1; 16],
                autn: [2; 16],
                xres: self.tape.bytes(20),
                ck: [3; 16],
                ik: [4; 16],
            }),
            _ => Answer::Pseudonym { card_id: crate::aka::CARD.into() },
        }
    }

    /// Approve with a result for the card, unless the tape says otherwise.
    fn verdict(&mut self) -> Verdict {
        let (approved, result) = if self.fuzzing() {
            let b = self.tape.byte();
            (b & 1 == 0, b & 2 == 0)
        } else {
            (true, true)
        };
        let result = result.then(|| crate::aka::payment_result(approved));
        Verdict { approved, result }
    }
}
