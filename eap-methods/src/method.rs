//! The contract between an EAP session and the methods it runs.
//!
//! Methods are sans-IO state machines: they take the bytes of one EAP packet
//! and return what to do next. Whatever they need from the outside world (an
//! authentication vector, a resynchronisation) they ask for with a [`Query`]
//! and receive as an [`Answer`]; the I/O layer decides how to get it.

use std::fmt;

use crate::packet::EapType;
use crate::sim_aka::sqn::SqnWindow;

/// Keying material exported by a successful method (RFC 5247 §2).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// Master Session Key; RADIUS carries it as MS-MPPE-Recv/Send-Key.
    pub msk: [u8; 64],
    /// Extended Master Session Key; never leaves the server.
    pub emsk: [u8; 64],
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<hidden>)")
    }
}

/// A UMTS authentication vector (TS 33.102 §6.3.2), produced by the card
/// store from K/OPc and the card's SQN.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthVector {
    /// The challenge.
    pub rand: [u8; 16],
    /// SQN ⊕ AK || AMF || MAC-A.
    pub autn: [u8; 16],
    /// Expected response, 4 to 16 octets.
    pub xres: Vec<u8>,
    /// Cipher key.
    pub ck: [u8; 16],
    /// Integrity key.
    pub ik: [u8; 16],
}

impl fmt::Debug for AuthVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthVector(<hidden>)")
    }
}

/// A GSM triplet (RAND, SRES, Kc; 3GPP TS 43.020), produced by the issuer
/// from the card's K/OPc with GSM-Milenage (TS 55.205).
#[derive(Clone, PartialEq, Eq)]
pub struct Triplet {
    /// The challenge.
    pub rand: [u8; 16],
    /// The expected signed response.
    pub sres: [u8; 4],
    /// The cipher key.
    pub kc: [u8; 8],
}

impl fmt::Debug for Triplet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Triplet(<hidden>)")
    }
}

/// What a server method needs from outside before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A fresh authentication vector for this AKA or AKA' (`method`) card.
    /// `require_active`: the card was named by a pseudonym, and a blocked
    /// card must not be found that way (`Answer::BlockedCard`).
    AkaVector {
        /// The card.
        card_id: String,
        /// `EapType::AKA` or `EapType::AKA_PRIME`.
        method: EapType,
        /// Refuse a blocked card.
        require_active: bool,
    },
    /// The card reported a synchronisation failure: resynchronise its SQN
    /// from AUTS (TS 33.102 §6.3.5) and return a fresh vector.
    AkaResync {
        /// The card.
        card_id: String,
        /// `EapType::AKA` or `EapType::AKA_PRIME`.
        method: EapType,
        /// The RAND the card rejected.
        rand: [u8; 16],
        /// The card's AUTS.
        auts: [u8; 14],
    },
    /// Three GSM triplets with distinct RANDs for this EAP-SIM card.
    SimTriplets {
        /// The card.
        card_id: String,
        /// Refuse a blocked card (see `AkaVector`).
        require_active: bool,
    },
    /// Which card is this pseudonym (the whole NAI as received)?
    /// `Answer::Pseudonym { card_id }`, or `Answer::UnknownCard` if the issuer
    /// cannot or will not map it (forged, retired key, blocked card).
    Pseudonym {
        /// The method the pseudonym was presented for.
        method: EapType,
        /// The NAI.
        identity: String,
    },
    /// Resolve and consume this fast re-authentication identity:
    /// `Answer::Reauth(state)` if it is the card's current one, else
    /// `Answer::UnknownCard`. A granted identity is used up durably, so the
    /// same one never works twice.
    Reauth {
        /// The method the identity was presented for.
        method: EapType,
        /// The NAI.
        identity: String,
    },
    /// The identities to hand the card inside this authentication:
    /// a pseudonym for its next full authentication and, with `reauth`, a
    /// fast re-authentication identity that resolves to that state.
    NextIdentities {
        /// The method.
        method: EapType,
        /// The card.
        card_id: String,
        /// What the next re-authentication will resume.
        reauth: Option<crate::sim_aka::ReauthState>,
    },
    /// The TLS client certificate's public key (DER SubjectPublicKeyInfo):
    /// which registered card does it belong to? The key is trusted because
    /// it was registered at issuance, not because a CA signed it (DESIGN.md §5).
    CardKey {
        /// The SubjectPublicKeyInfo of the peer's certificate.
        spki: Vec<u8>,
    },
    /// TTLS inner PAP: does this PIN open this card? The I/O layer counts
    /// the tries (decline 55, then 75 once they are used up).
    Pin {
        /// The card id the peer named in the inner User-Name.
        card_id: String,
        /// The PIN as the peer sent it.
        pin: Pin,
    },
}

/// A PIN in transit from the tunnel to the card store; Debug hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(pub String);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<hidden>)")
    }
}

/// The I/O layer's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The vector asked for.
    AkaVector(AuthVector),
    /// [`Query::SimTriplets`]: the triplets.
    SimTriplets(Vec<Triplet>),
    /// [`Query::Pseudonym`]: the pseudonym names this active card.
    Pseudonym {
        /// The card.
        card_id: String,
    },
    /// [`Query::Reauth`]: the identity was the card's current one, now used up.
    Reauth(crate::sim_aka::ReauthState),
    /// [`Query::NextIdentities`]: what to send in AT_NEXT_PSEUDONYM (the
    /// username only, RFC 4187 §10.11) and AT_NEXT_REAUTH_ID (a whole NAI),
    /// either absent if the issuer gives none.
    NextIdentities {
        /// The next pseudonym.
        pseudonym: Option<String>,
        /// The next fast re-authentication identity.
        reauth_id: Option<String>,
    },
    /// No active card has this identity.
    UnknownCard,
    /// The AUTS did not verify (wrong MAC-S): the peer is not the card.
    ResyncRejected,
    /// [`Query::CardKey`]: the key belongs to this active card.
    CardKey {
        /// The card id (the NAI user part of a TLS card's identity).
        card_id: String,
    },
    /// [`Query::CardKey`]: the key belongs to a card that is blocked.
    BlockedCard,
    /// [`Query::Pin`]: the PIN is right.
    PinAccepted,
    /// [`Query::Pin`]: wrong PIN; this many tries are left.
    PinRejected {
        /// Tries left before the card locks.
        tries_left: u32,
    },
    /// [`Query::Pin`]: the tries are used up (or were already).
    PinLocked,
}

/// Why a conversation ended in EAP-Failure. Maps to decline code 63 for
/// authentication failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The peer proved no knowledge of the card's secret (RES, MAC, ...).
    AuthenticationFailed(&'static str),
    /// The identity belongs to no active card.
    UnknownIdentity,
    /// The peer refused us (AKA Authentication-Reject: our AUTN failed).
    RejectedByPeer,
    /// The peer sent Client-Error with this code.
    ClientError(u16),
    /// The peer sent something the method cannot parse or did not expect.
    Protocol(String),
    /// The peer offered no method we can run for this identity.
    NoCommonMethod,
    /// The payment decision declined; the method delivered the verdict.
    Declined,
    /// Too many round trips.
    TooManyRounds,
    /// TTLS inner PAP: wrong PIN (decline 55).
    IncorrectPin,
    /// TTLS inner PAP: no PIN tries left (decline 75).
    PinTriesExceeded,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthenticationFailed(why) => write!(f, "authentication failed: {why}"),
            Self::UnknownIdentity => f.write_str("unknown identity"),
            Self::RejectedByPeer => f.write_str("peer rejected the server's authentication"),
            Self::ClientError(code) => write!(f, "peer sent Client-Error {code}"),
            Self::Protocol(why) => write!(f, "protocol error: {why}"),
            Self::NoCommonMethod => f.write_str("no common method"),
            Self::Declined => f.write_str("declined"),
            Self::TooManyRounds => f.write_str("too many round trips"),
            Self::IncorrectPin => f.write_str("incorrect PIN"),
            Self::PinTriesExceeded => f.write_str("PIN tries exceeded"),
        }
    }
}

/// Reported once a method has authenticated the peer, before the final
/// EAP packet: the caller decides and then calls `conclude`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The method that authenticated the card.
    pub method: EapType,
    /// The permanent identity the keys were derived for.
    pub identity: String,
    /// The card the method authenticated: the NAI user part without an
    /// AKA prefix digit, or the card that owns a TLS client key.
    pub card_id: String,
    /// The payment details the card confirmed inside the protected channel,
    /// if it sent any (canonical form, DESIGN.md §3).
    pub confirmation: Option<Vec<u8>>,
    /// The card's signature over `confirmation` (TLS, TTLS). The method
    /// does not verify it: the I/O layer checks it against the card's
    /// registered key and stores it as evidence.
    pub signature: Option<CardSignature>,
}

/// A card's signature over its payment confirmation (DESIGN.md §4): the
/// card's TLS key signs SHA-256("eapay payment v1" || details || exporter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSignature {
    /// TLS exporter value (label "EXPORTER-eapay-payment", 32 octets) that
    /// binds the signature to this session.
    pub exporter: [u8; 32],
    /// The signature, in the key algorithm's DER form (ECDSA: SEQUENCE {r, s}).
    pub signature: Vec<u8>,
    /// The card's PAN-token, if it has one: with the key it gives V-Card
    /// (DESIGN.md §5). Not secret from the issuer, who derived it.
    pub pan_token: Option<[u8; 32]>,
    /// The SubjectPublicKeyInfo of the client certificate the card
    /// authenticated with (EAP-TLS); None in TTLS, where the card presents
    /// no certificate.
    pub spki: Option<Vec<u8>>,
}

/// The caller's decision after [`Authenticated`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Accept (EAP-Success) or not (EAP-Failure).
    pub approved: bool,
    /// Result bytes to deliver to the card inside the protected channel
    /// (AT_EAPAY_RESULT, TLS result record), if the method can.
    pub result: Option<Vec<u8>>,
}

impl Verdict {
    /// Plain authentication success, nothing for the card.
    pub fn accept() -> Self {
        Self { approved: true, result: None }
    }
}

/// What a server method wants done next.
#[derive(Debug)]
pub enum MethodStep {
    /// Send this EAP Request (complete packet bytes).
    Send(Vec<u8>),
    /// Ask the outside world; the reply comes to `on_answer`.
    Query(Query),
    /// The peer is authenticated; the verdict comes to `conclude`.
    Authenticated(Authenticated),
    /// Done: EAP-Success with these keys.
    Success(Keys),
    /// Done: EAP-Failure.
    Failure(FailureReason),
}

/// A server-side EAP method.
///
/// `id` is the identifier the method must use for the request it builds
/// (methods that MAC the whole packet, like AKA, need it).
pub trait ServerMethod: Send {
    /// The method type.
    fn kind(&self) -> EapType;
    /// First request of the method.
    fn start(&mut self, id: u8) -> MethodStep;
    /// A response of this method type (complete packet bytes).
    fn on_response(&mut self, id: u8, response: &[u8]) -> MethodStep;
    /// The answer to the last [`Query`].
    fn on_answer(&mut self, id: u8, answer: Answer) -> MethodStep;
    /// The decision after [`MethodStep::Authenticated`].
    fn conclude(&mut self, id: u8, verdict: Verdict) -> MethodStep;
}

/// What a peer method wants done next.
#[derive(Debug)]
pub enum PeerStep {
    /// Send this EAP Response (complete packet bytes).
    Send(Vec<u8>),
    /// The method cannot go on; the reason is for the card's log.
    Fail(FailureReason),
}

/// A peer-side EAP method.
pub trait PeerMethod: Send {
    /// The method type.
    fn kind(&self) -> EapType;
    /// A request of this method type (complete packet bytes).
    fn on_request(&mut self, request: &[u8]) -> PeerStep;
    /// The keys, once the method has authenticated the server and may
    /// accept EAP-Success (RFC 3748 §4.2: Success before that is ignored).
    fn keys(&self) -> Option<Keys>;
    /// The result the server delivered inside the protected channel.
    fn result(&self) -> Option<Vec<u8>> {
        None
    }

    /// What the card must keep for its next conversations (see
    /// [`PeerMemory`]): the method's current state, whether or not it
    /// changed; the card compares it with what it stored and writes it back
    /// before it sends the next response. Methods with nothing to keep
    /// report nothing.
    fn remember(&self) -> Vec<PeerMemory> {
        Vec::new()
    }
}

/// State a peer method hands to the card to keep across conversations, in
/// a method-neutral form the card's store can persist without knowing the
/// method. New kinds (AKA pseudonyms and fast re-authentication identities,
/// TLS session tickets) are added as variants; a store ignores kinds it does
/// not keep. A variant holding a secret (a session ticket) must hide it
/// from `Debug`, like [`Keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// Short-lived (one per conversation end): the window's size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum PeerMemory {
    /// The USIM's SQN freshness window (TS 33.102 Annex C). Sequence numbers
    /// are not secret. It must be stored before the response that follows
    /// its change leaves the card, or a restarted card could accept the same
    /// challenge twice.
    SqnWindow(SqnWindow),
    /// A TLS session to resume next time (RFC 5216 §2.1.2, RFC 9190 §2.1.3),
    /// serialised by the TLS library; it holds the resumption secret.
    TlsSession(TlsSession),
    /// The SIM/AKA identities the card holds for its next conversation
    /// (RFC 4187 §4.1.1.7, §5): a pseudonym, and a fast re-authentication
    /// identity with its keys. Like the SQN window it is stored before the
    /// next response leaves: a used re-authentication identity must not be
    /// offered again after a crash.
    SimAkaIdentities(crate::sim_aka::peer::Identities),
}

/// A serialised TLS session (DER `SSL_SESSION`); Debug hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSession(pub Vec<u8>);

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSession(<{} octets hidden>)", self.0.len())
    }
}
