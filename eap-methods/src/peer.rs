//! The peer side of one EAP conversation (RFC 3748 §2).
//!
//! [`PeerSession`] answers Identity and Notification requests itself, Naks
//! methods it does not have, and hands every other request to the method.
//! EAP-Success is honoured only once the method has authenticated the server
//! (RFC 3748 §4.2, "the peer MUST NOT accept a Success before..." and
//! RFC 4137's `decision`), so a relay cannot fake a result.

use crate::method::{FailureReason, Keys, PeerMemory, PeerMethod, PeerStep};
use crate::packet::{Code, EapType, Packet};

/// What the card's I/O layer must do next.
#[derive(Debug)]
pub enum PeerEvent {
    /// Send this EAP Response.
    Send(Vec<u8>),
    /// EAP-Success after the method authenticated the server.
    Success {
        /// The method's keys.
        keys: Keys,
        /// What the server delivered inside the protected channel.
        result: Option<Vec<u8>>,
    },
    /// EAP-Failure, or the method gave up.
    Failure(FailureReason),
    /// Silently ignored (duplicate, premature Success, garbage).
    Ignore(&'static str),
}

/// One EAP conversation, peer side.
pub struct PeerSession {
    identity: String,
    methods: Vec<Box<dyn PeerMethod>>,
    active: Option<usize>,
    /// The last request identifier and our answer to it, so a
    /// retransmitted request gets the same response (RFC 3748 §4.1).
    last: Option<(u8, Vec<u8>)>,
    done: bool,
}

impl PeerSession {
    /// A peer answering EAP-Request/Identity with `identity` and offering
    /// `methods` (in preference order for Naks).
    pub fn new(identity: impl Into<String>, methods: Vec<Box<dyn PeerMethod>>) -> Self {
        Self { identity: identity.into(), methods, active: None, last: None, done: false }
    }

    /// The EAP-Response/Identity to send unprompted, as a supplicant does
    /// after EAPOL-Start when the authenticator's lower layer (RADIUS) starts
    /// with the identity.
    pub fn identity_response(&mut self, id: u8) -> Vec<u8> {
        let bytes = Packet::new(Code::Response, id, EapType::IDENTITY, self.identity.as_bytes().to_vec())
            .encode()
            .unwrap_or_default();
        self.last = Some((id, bytes.clone()));
        bytes
    }

    /// True once Success or Failure has been received.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// What the card must keep from this conversation so far (see
    /// [`PeerMethod::remember`]), from every method offered.
    pub fn remember(&self) -> Vec<PeerMemory> {
        self.methods.iter().flat_map(|m| m.remember()).collect()
    }

    /// The result the server delivered inside the protected channel, if the
    /// running method received one. [`PeerEvent::Success`] carries it too;
    /// this is how the card reads it after EAP-Failure (a decline).
    pub fn result(&self) -> Option<Vec<u8>> {
        self.active.and_then(|i| self.methods.get(i)).and_then(|m| m.result())
    }

    /// Handles one packet from the authenticator.
    pub fn handle(&mut self, raw: &[u8]) -> PeerEvent {
        if self.done {
            return PeerEvent::Ignore("conversation already ended");
        }
        let packet = match Packet::decode(raw) {
            Ok(p) => p,
            Err(_) => return PeerEvent::Ignore("undecodable EAP packet"),
        };
        match packet.code {
            Code::Response => PeerEvent::Ignore("a response sent to the peer"),
            Code::Success => self.on_success(),
            Code::Failure => {
                self.done = true;
                PeerEvent::Failure(FailureReason::Protocol("EAP-Failure".into()))
            }
            Code::Request => {
                if let Some((id, answer)) = &self.last {
                    if *id == packet.identifier {
                        // A retransmission (RFC 3748 §4.1): answer exactly as before.
                        return PeerEvent::Send(answer.clone());
                    }
                }
                let event = self.on_request(&packet, raw);
                if let PeerEvent::Send(bytes) = &event {
                    self.last = Some((packet.identifier, bytes.clone()));
                }
                event
            }
        }
    }

    fn on_request(&mut self, packet: &Packet, raw: &[u8]) -> PeerEvent {
        let kind = match packet.kind {
            Some(k) => k,
            None => return PeerEvent::Ignore("request without a type"),
        };
        let respond = |kind: EapType, data: Vec<u8>| {
            Packet::new(Code::Response, packet.identifier, kind, data)
                .encode()
                .map_or(PeerEvent::Ignore("response too large"), PeerEvent::Send)
        };
        match kind {
            EapType::IDENTITY => respond(EapType::IDENTITY, self.identity.as_bytes().to_vec()),
            // RFC 3748 §5.2: a Notification is acknowledged with an empty one.
            EapType::NOTIFICATION => respond(EapType::NOTIFICATION, Vec::new()),
            EapType::NAK | EapType(0) => PeerEvent::Ignore("Nak is not a request type"),
            _ => {
                if let Some(i) = self.active {
                    if self.methods[i].kind() != kind {
                        return PeerEvent::Ignore("request of another method mid-conversation");
                    }
                } else {
                    match self.methods.iter().position(|m| m.kind() == kind) {
                        Some(i) => self.active = Some(i),
                        None => {
                            let ours: Vec<u8> = self.methods.iter().map(|m| m.kind().0).collect();
                            let ours = if ours.is_empty() { vec![0] } else { ours };
                            return respond(EapType::NAK, ours);
                        }
                    }
                }
                let Some(i) = self.active else { return PeerEvent::Ignore("no method") };
                match self.methods[i].on_request(raw) {
                    PeerStep::Send(bytes) => PeerEvent::Send(bytes),
                    PeerStep::Fail(reason) => {
                        self.done = true;
                        PeerEvent::Failure(reason)
                    }
                }
            }
        }
    }

    fn on_success(&mut self) -> PeerEvent {
        let Some(method) = self.active.and_then(|i| self.methods.get(i)) else {
            return PeerEvent::Ignore("EAP-Success before any method ran");
        };
        match method.keys() {
            Some(keys) => {
                self.done = true;
                PeerEvent::Success { keys, result: method.result() }
            }
            None => PeerEvent::Ignore("EAP-Success before the server was authenticated"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim_aka::sqn::{Sqn, SqnWindow};

    /// A method that remembers a window and has a result once asked.
    struct Stub {
        asked: bool,
    }

    impl PeerMethod for Stub {
        fn kind(&self) -> EapType {
            EapType::AKA
        }
        fn on_request(&mut self, request: &[u8]) -> PeerStep {
            self.asked = true;
            PeerStep::Send(Packet::new(Code::Response, request[1], EapType::AKA, vec![0]).encode().unwrap())
        }
        fn keys(&self) -> Option<Keys> {
            None
        }
        fn result(&self) -> Option<Vec<u8>> {
            self.asked.then(|| b"51".to_vec())
        }
        fn remember(&self) -> Vec<PeerMemory> {
            vec![PeerMemory::SqnWindow(SqnWindow::starting_at(Sqn::new(u64::from(self.asked))))]
        }
    }

    #[test]
    fn memory_and_result_come_from_the_methods() {
        let mut peer = PeerSession::new("0c@r", vec![Box::new(Stub { asked: false })]);
        assert_eq!(peer.remember(), vec![PeerMemory::SqnWindow(SqnWindow::starting_at(Sqn::new(0)))]);
        assert_eq!(peer.result(), None, "no method running yet");
        let request = Packet::new(Code::Request, 3, EapType::AKA, vec![1]).encode().unwrap();
        assert!(matches!(peer.handle(&request), PeerEvent::Send(_)));
        assert_eq!(peer.remember(), vec![PeerMemory::SqnWindow(SqnWindow::starting_at(Sqn::new(1)))]);
        // After EAP-Failure the result is still there to read (a decline).
        assert!(matches!(peer.handle(&[4, 4, 0, 4]), PeerEvent::Failure(_)));
        assert_eq!(peer.result(), Some(b"51".to_vec()));
        // A method with nothing to keep reports nothing.
        struct Plain;
        impl PeerMethod for Plain {
            fn kind(&self) -> EapType {
                EapType::TLS
            }
            fn on_request(&mut self, _: &[u8]) -> PeerStep {
                PeerStep::Fail(FailureReason::NoCommonMethod)
            }
            fn keys(&self) -> Option<Keys> {
                None
            }
        }
        assert!(PeerSession::new("x", vec![Box::new(Plain)]).remember().is_empty());
    }
}
