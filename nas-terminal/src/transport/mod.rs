//! How the terminal reaches the issuer: one EAP round trip at a time, over
//! RADIUS ([`radius`]) or Diameter ([`diameter`]). The payment
//! ([`crate::payment`]) is the same over both; a transport only writes the
//! round in its wire form and reads the server's verdict, EAP packet and
//! Eapay attributes back out of the answer.

pub mod diameter;
pub mod radius;

use aaa_proto::diameter::Message;
use aaa_proto::payment::PaymentDetails;
use aaa_proto::radius::Packet;

use crate::payment::PaymentError;

/// What the terminal sends in one round.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The card's identity (User-Name).
    pub user_name: &'a str,
    /// The card's EAP Response.
    pub eap: &'a [u8],
    /// The payment the terminal asserts; sent in every round (eapol_test
    /// `-N` does the same), so any server in a pool sees it.
    pub payment: Option<&'a PaymentDetails>,
    /// Round number, from 0: the first may go to any server, the rest
    /// belong to the one holding the conversation.
    pub number: usize,
}

/// The server's verdict on one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// More EAP (Access-Challenge, DEA 1001).
    Challenge,
    /// Access-Accept, DEA 2001.
    Accept,
    /// Access-Reject, DEA 4001 (or another final failure).
    Reject,
}

/// The final answer as it came off the wire, for callers that need more
/// than the payment (MPPE keys, tests).
#[derive(Debug, Clone)]
pub enum FinalReply {
    /// The RADIUS reply and the Request Authenticator it answers.
    Radius { packet: Packet, authenticator: [u8; 16] },
    /// The DEA.
    Diameter(Message),
}

/// A round's answer, whatever carried it.
#[derive(Debug, Clone)]
pub struct ServerAnswer {
    pub verdict: Verdict,
    /// The EAP packet for the card, if any.
    pub eap: Option<Vec<u8>>,
    /// The Eapay attributes by vendor type; values of one type that were
    /// split over several attributes are joined in order.
    pub eapay: Vec<(u8, Vec<u8>)>,
    pub reply: FinalReply,
}

impl ServerAnswer {
    /// The value of an Eapay attribute, if present.
    pub fn eapay(&self, vendor_type: u8) -> Option<&[u8]> {
        self.eapay.iter().find(|(t, _)| *t == vendor_type).map(|(_, v)| v.as_slice())
    }
}

/// Joins values of one type in order, keeping first-appearance order of types.
pub(crate) fn joined<'a>(attrs: impl IntoIterator<Item = (u8, &'a [u8])>) -> Vec<(u8, Vec<u8>)> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for (kind, value) in attrs {
        match out.iter_mut().find(|(t, _)| *t == kind) {
            Some((_, joined)) => joined.extend_from_slice(value),
            None => out.push((kind, value.to_vec())),
        }
    }
    out
}

/// One conversation's way to the server.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends one round and returns the server's answer.
    async fn round(&mut self, round: Round<'_>) -> Result<ServerAnswer, PaymentError>;
}

/// The issuer's servers as this terminal reaches them.
pub enum Issuer {
    Radius(crate::client::RadiusClient),
    Diameter(crate::diameter::DiameterClient),
}

impl Issuer {
    /// A new conversation (one payment) with the issuer.
    pub fn conversation<'a>(&'a mut self, settings: &'a crate::payment::TerminalSettings) -> Conversation<'a> {
        match self {
            Self::Radius(client) => Conversation::Radius(radius::RadiusConversation::new(client, settings)),
            Self::Diameter(client) => Conversation::Diameter(diameter::DiameterConversation::new(client, settings)),
        }
    }

    /// Closes the connections politely (Diameter: DPR/DPA; RADIUS/TLS:
    /// close_notify; RADIUS/UDP: nothing to close).
    pub async fn close(&self) {
        match self {
            Self::Radius(client) => client.close().await,
            Self::Diameter(client) => client.close().await,
        }
    }
}

/// One conversation over whichever protocol the [`Issuer`] speaks.
pub enum Conversation<'a> {
    Radius(radius::RadiusConversation<'a>),
    Diameter(diameter::DiameterConversation<'a>),
}

impl Transport for Conversation<'_> {
    async fn round(&mut self, round: Round<'_>) -> Result<ServerAnswer, PaymentError> {
        match self {
            Self::Radius(c) => c.round(round).await,
            Self::Diameter(c) => c.round(round).await,
        }
    }
}
