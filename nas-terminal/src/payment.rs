//! One payment as the terminal runs it (DESIGN.md §1): show the details to
//! the card over the card link, relay the card's EAP to the server in
//! Access-Requests carrying the payment attributes (RFC 3579), and read the
//! answer from the final Access-Accept or Access-Reject.
//!
//! The terminal is blind: it reads of EAP only the identity it copies into
//! User-Name (RFC 3579 §2.1) and the EAP header, to refuse garbage before it
//! reaches the server. It never holds a key that protects the card's
//! conversation.

use std::time::Duration;

use aaa_proto::card_link::{CardLink, LinkError};
use aaa_proto::dictionary::{eapay, rfc};
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{concat, is_approval_code, PaymentDetails, PaymentOutcome, PaymentResult};
use aaa_proto::radius::{Code, Packet};
use thiserror::Error;
use tracing::{debug, trace, warn};

use crate::client::{ClientError, RadiusClient};

/// Round trips allowed before the terminal gives up on a conversation.
const MAX_ROUNDS: usize = 64;
/// RFC 3748 §4: code, identifier, length; §5: the type.
const EAP_REQUEST: u8 = 1;
const EAP_RESPONSE: u8 = 2;
const EAP_IDENTITY: u8 = 1;

/// How the terminal presents itself.
#[derive(Debug, Clone)]
pub struct TerminalSettings {
    /// The RADIUS vendor id of the Eapay attributes.
    pub vendor_id: u32,
    /// NAS-Identifier, if any.
    pub nas_identifier: Option<String>,
    /// Framed-MTU: the largest EAP packet the card link carries in one
    /// frame, which bounds the server's EAP-TLS fragments.
    pub framed_mtu: u32,
    /// How long the card may take for one answer.
    pub card_timeout: Duration,
}

impl Default for TerminalSettings {
    fn default() -> Self {
        Self {
            vendor_id: eapay::VENDOR_ID,
            nas_identifier: None,
            framed_mtu: 1400,
            card_timeout: Duration::from_secs(30),
        }
    }
}

/// What the terminal asks for.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// A payment with these details, which the card confirms.
    Payment(&'a PaymentDetails),
    /// Authentication only (load tests, other servers): no payment
    /// attributes, no details shown to the card.
    AuthOnly,
}

/// The answer the terminal displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Access-Accept with an approval code.
    Approved { approval_code: String, approved_amount: u64, receipt: Option<Vec<u8>> },
    /// Access-Reject, with Eapay-Decline-Code if the server sent one.
    Declined { code: Option<u32>, reason: Option<String> },
    /// Access-Accept of an authentication-only conversation.
    Authenticated,
    /// The card holder refused the details; nothing was sent to the server.
    RefusedByCard,
}

/// A conversation that reached an answer.
#[derive(Debug)]
pub struct Finished {
    pub answer: Answer,
    /// The identity the card presented (User-Name); `None` if the card refused.
    pub user_name: Option<String>,
    /// Access-Request/reply round trips.
    pub rounds: usize,
    /// The final reply and the authenticator of the request it answers.
    pub reply: Option<(Packet, [u8; 16])>,
}

/// Why a conversation did not reach an answer.
#[derive(Debug, Error)]
pub enum PaymentError {
    #[error("payment details: {0}")]
    Details(String),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the card did not answer within {0:?}")]
    CardTimeout(Duration),
    #[error("the card broke the card link protocol: {0}")]
    CardProtocol(String),
    #[error(transparent)]
    Radius(#[from] ClientError),
    #[error("the server answered with {0}")]
    UnexpectedCode(Code),
    #[error("Access-Challenge without EAP-Message")]
    NoEap,
    #[error("more than {MAX_ROUNDS} round trips")]
    TooManyRounds,
    #[error("the server's answer is not usable: {0}")]
    BadAnswer(String),
}

/// A failed conversation, and whether the server may have approved it: then
/// the terminal owes a reversal (DESIGN.md §1, ISO 8583 timeout reversal).
#[derive(Debug, Error)]
#[error("{error}")]
pub struct Failed {
    #[source]
    pub error: PaymentError,
    pub in_doubt: bool,
}

/// Runs one payment (or authentication) with the card on `link`.
pub async fn run<L: CardLink>(
    link: &mut L,
    client: &mut RadiusClient,
    settings: &TerminalSettings,
    request: Request<'_>,
) -> Result<Finished, Failed> {
    let mut conversation = Conversation { link, client, settings, in_doubt: false, rounds: 0 };
    match conversation.run(request).await {
        Ok(done) => Ok(done),
        Err(error) => Err(Failed { error, in_doubt: conversation.in_doubt }),
    }
}

struct Conversation<'a, L> {
    link: &'a mut L,
    client: &'a mut RadiusClient,
    settings: &'a TerminalSettings,
    /// Set once an Access-Request with payment attributes has left, cleared
    /// by a usable final answer.
    in_doubt: bool,
    rounds: usize,
}

impl<L: CardLink> Conversation<'_, L> {
    async fn run(&mut self, request: Request<'_>) -> Result<Finished, PaymentError> {
        let payment = match request {
            Request::Payment(d) => Some(d),
            Request::AuthOnly => None,
        };
        let mut extra = Packet::new_request(Code::AccessRequest, 0);
        if let Some(details) = payment {
            details.validate().map_err(|e| PaymentError::Details(e.to_string()))?;
            details.push_to(&mut extra, self.settings.vendor_id).map_err(|e| PaymentError::Details(e.to_string()))?;
            self.link.send(Frame::Payment(PaymentFrame::Details(details.canonical()))).await?;
            match self.next_frame().await? {
                Frame::Payment(PaymentFrame::Consent(true)) => {}
                Frame::Payment(PaymentFrame::Consent(false)) => {
                    return Ok(Finished { answer: Answer::RefusedByCard, user_name: None, rounds: 0, reply: None });
                }
                other => return Err(unexpected(&other, "the holder's consent")),
            }
            match self.next_frame().await? {
                Frame::Start => {}
                other => return Err(unexpected(&other, "EAPOL-Start")),
            }
        }
        let identity_id: u8 = rand::random();
        self.link.send(Frame::Eap(vec![EAP_REQUEST, identity_id, 0, 5, EAP_IDENTITY])).await?;
        let mut eap = self.next_eap().await?;
        let user_name = identity_of(&eap, identity_id)?;
        let mut state: Option<Vec<u8>> = None;
        for round in 0..MAX_ROUNDS {
            let mut packet = Packet::new_request(Code::AccessRequest, 0);
            packet.add_message_authenticator();
            push(&mut packet, rfc::USER_NAME, user_name.as_bytes());
            if let Some(id) = &self.settings.nas_identifier {
                push(&mut packet, rfc::NAS_IDENTIFIER, id.as_bytes());
            }
            packet.push_u32(rfc::FRAMED_MTU, self.settings.framed_mtu);
            packet.push_eap_message(&eap);
            if let Some(s) = &state {
                push(&mut packet, rfc::STATE, s);
            }
            packet.attributes.extend(extra.attributes.iter().cloned());
            let authenticator = packet.authenticator;
            if payment.is_some() {
                self.in_doubt = true;
            }
            self.rounds = round + 1;
            // The first round may go to any server; the rest belong to the
            // one holding the conversation's State.
            let reply = if round == 0 {
                self.client.exchange(packet).await?
            } else {
                self.client.exchange_pinned(packet).await?
            };
            debug!(round = self.rounds, answer = reply.code.name(), "server answered");
            match reply.code {
                Code::AccessChallenge => {
                    let challenge = reply.eap_message().ok_or(PaymentError::NoEap)?;
                    state = reply.get(rfc::STATE).map(<[u8]>::to_vec);
                    self.link.send(Frame::Eap(challenge)).await?;
                    eap = self.next_eap().await?;
                }
                Code::AccessAccept | Code::AccessReject => {
                    let answer = answer_of(&reply, self.settings.vendor_id, payment)?;
                    self.in_doubt = false;
                    self.tell_card(&reply, payment, &answer).await;
                    return Ok(Finished {
                        answer,
                        user_name: Some(user_name),
                        rounds: self.rounds,
                        reply: Some((reply, authenticator)),
                    });
                }
                other => return Err(PaymentError::UnexpectedCode(other)),
            }
        }
        Err(PaymentError::TooManyRounds)
    }

    async fn next_frame(&mut self) -> Result<Frame, PaymentError> {
        match tokio::time::timeout(self.settings.card_timeout, self.link.recv()).await {
            Err(_) => Err(PaymentError::CardTimeout(self.settings.card_timeout)),
            Ok(frame) => {
                let frame = frame?;
                // Frames print as their type and length only.
                trace!(?frame, "from the card");
                Ok(frame)
            }
        }
    }

    /// The card's next EAP Response, checked for a sane header.
    async fn next_eap(&mut self) -> Result<Vec<u8>, PaymentError> {
        match self.next_frame().await? {
            Frame::Eap(bytes) => {
                let length = bytes.get(2..4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
                if bytes.first() != Some(&EAP_RESPONSE) || length != Some(bytes.len()) {
                    return Err(PaymentError::CardProtocol("a frame that is not an EAP Response".into()));
                }
                Ok(bytes)
            }
            other => Err(unexpected(&other, "an EAP Response")),
        }
    }

    /// The card sees the final EAP packet and what the terminal displays;
    /// it checks both against what the issuer told it inside the method. The
    /// answer stands whatever the card does now, so errors are only logged.
    async fn tell_card(&mut self, reply: &Packet, payment: Option<&PaymentDetails>, answer: &Answer) {
        if let Some(last) = reply.eap_message() {
            if let Err(e) = self.link.send(Frame::Eap(last)).await {
                warn!(error = %e, "could not pass the final EAP packet to the card");
                return;
            }
        }
        let Some(details) = payment else { return };
        let outcome = match answer {
            Answer::Approved { approval_code, approved_amount, .. } => {
                PaymentOutcome::Approved { approval_code: approval_code.clone(), approved_amount: *approved_amount }
            }
            Answer::Declined { code: Some(code), .. } => PaymentOutcome::Declined { code: *code },
            _ => return,
        };
        let shown = PaymentResult { transaction_id: details.transaction_id.clone(), outcome };
        if let Err(e) = self.link.send(Frame::Payment(PaymentFrame::Shown(shown.encode()))).await {
            debug!(error = %e, "card left before seeing the displayed result");
        }
    }
}

fn unexpected(frame: &Frame, wanted: &str) -> PaymentError {
    PaymentError::CardProtocol(format!("sent {frame:?} where {wanted} was due"))
}

/// The identity of an EAP-Response/Identity to our request `id`.
fn identity_of(eap: &[u8], id: u8) -> Result<String, PaymentError> {
    let bad = |why: &str| PaymentError::CardProtocol(format!("EAP-Response/Identity {why}"));
    if eap.get(1) != Some(&id) || eap.get(4) != Some(&EAP_IDENTITY) {
        return Err(bad("expected"));
    }
    let identity = std::str::from_utf8(&eap[5..]).map_err(|_| bad("is not UTF-8"))?;
    // User-Name holds at most 253 octets; an empty one names nobody.
    if identity.is_empty() || identity.len() > 253 {
        return Err(bad("is empty or longer than 253 bytes"));
    }
    Ok(identity.to_owned())
}

/// Reads the answer from a final reply. In a payment an Access-Accept must
/// carry a well-formed approval for our transaction: anything less leaves
/// the terminal in doubt, and it reverses.
fn answer_of(reply: &Packet, vendor: u32, payment: Option<&PaymentDetails>) -> Result<Answer, PaymentError> {
    let text = |t: u8| concat(reply, vendor, t).map(|v| String::from_utf8_lossy(&v).into_owned());
    let Some(details) = payment else {
        return Ok(match reply.code {
            Code::AccessAccept => Answer::Authenticated,
            _ => Answer::Declined { code: decline_code(reply, vendor)?, reason: text(eapay::DECLINE_REASON) },
        });
    };
    if let Some(id) = text(eapay::TRANSACTION_ID) {
        if id != details.transaction_id {
            return Err(PaymentError::BadAnswer(format!(
                "it is for transaction {id:?}, not {:?}",
                details.transaction_id
            )));
        }
    }
    match reply.code {
        Code::AccessAccept => {
            let approval_code = text(eapay::APPROVAL_CODE)
                .filter(|c| is_approval_code(c))
                .ok_or_else(|| PaymentError::BadAnswer("Access-Accept without a valid Eapay-Approval-Code".into()))?;
            let approved_amount = match concat(reply, vendor, eapay::APPROVED_AMOUNT) {
                None => details.amount,
                Some(v) => <[u8; 8]>::try_from(v.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| PaymentError::BadAnswer("Eapay-Approved-Amount is not an integer64".into()))?,
            };
            if approved_amount != details.amount {
                // eapay never approves part of an amount; a server that
                // does is not one this terminal can settle with.
                return Err(PaymentError::BadAnswer(format!(
                    "approved {approved_amount} of {} minor units",
                    details.amount
                )));
            }
            Ok(Answer::Approved { approval_code, approved_amount, receipt: concat(reply, vendor, eapay::RECEIPT) })
        }
        _ => Ok(Answer::Declined { code: decline_code(reply, vendor)?, reason: text(eapay::DECLINE_REASON) }),
    }
}

fn decline_code(reply: &Packet, vendor: u32) -> Result<Option<u32>, PaymentError> {
    match concat(reply, vendor, eapay::DECLINE_CODE) {
        None => Ok(None),
        Some(v) => <[u8; 4]>::try_from(v.as_slice())
            .map(|b| Some(u32::from_be_bytes(b)))
            .map_err(|_| PaymentError::BadAnswer("Eapay-Decline-Code is not an integer".into())),
    }
}

fn push(p: &mut Packet, kind: u8, value: &[u8]) {
    // User-Name, NAS-Identifier and State come from bounded sources (at
    // most 253 octets, checked above or by the codec); an oversized one is
    // left out and the server rejects the request.
    let _ = p.push(kind, value);
}

/// A decline code with its dictionary name, for people: `51 Insufficient-Funds`.
pub fn describe_decline(code: u32) -> String {
    match eapay::DeclineCode::from_value(code) {
        Some(c) => format!("{code:02} {}", c.name()),
        None => format!("{code:02}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_read_from_the_response_to_our_request() {
        let mut eap = vec![2, 7, 0, 0, 1];
        eap.extend_from_slice(b"0abc@issuer.example");
        let len = eap.len() as u16;
        eap[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(identity_of(&eap, 7).unwrap(), "0abc@issuer.example");
        assert!(identity_of(&eap, 8).is_err());
        assert!(identity_of(&[2, 7, 0, 5, 1], 7).is_err());
        assert!(identity_of(&[2, 7, 0, 6, 1, 0xff], 7).is_err());
        assert!(identity_of(&[2, 7, 0, 4], 7).is_err());
    }

    fn details() -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T-1".into(),
            merchant_id: "M-1".into(),
            amount: 1250,
            currency: 840,
            installments: 0,
            terminal_nonce: [7; 16],
            terminal_time_ms: 1,
        }
    }

    fn reply(code: Code, attrs: &[(u8, &[u8])]) -> Packet {
        let mut p = Packet::new(code, 1, [0; 16]);
        for (t, v) in attrs {
            p.push_vendor(eapay::VENDOR_ID, *t, v).unwrap();
        }
        p
    }

    #[test]
    fn an_accept_must_carry_our_approval() {
        let d = details();
        let ok = reply(Code::AccessAccept, &[(eapay::APPROVAL_CODE, b"AB12CD"), (eapay::TRANSACTION_ID, b"T-1")]);
        assert_eq!(
            answer_of(&ok, eapay::VENDOR_ID, Some(&d)).unwrap(),
            Answer::Approved { approval_code: "AB12CD".into(), approved_amount: 1250, receipt: None }
        );
        let none = reply(Code::AccessAccept, &[]);
        assert!(answer_of(&none, eapay::VENDOR_ID, Some(&d)).is_err());
        let other = reply(Code::AccessAccept, &[(eapay::APPROVAL_CODE, b"AB12CD"), (eapay::TRANSACTION_ID, b"T-2")]);
        assert!(answer_of(&other, eapay::VENDOR_ID, Some(&d)).is_err());
        let partial = reply(
            Code::AccessAccept,
            &[(eapay::APPROVAL_CODE, b"AB12CD"), (eapay::APPROVED_AMOUNT, &100u64.to_be_bytes())],
        );
        assert!(answer_of(&partial, eapay::VENDOR_ID, Some(&d)).is_err());
        assert_eq!(answer_of(&none, eapay::VENDOR_ID, None).unwrap(), Answer::Authenticated);
    }

    #[test]
    fn a_reject_is_a_decline_with_or_without_code() {
        let d = details();
        let coded = reply(Code::AccessReject, &[(eapay::DECLINE_CODE, &51u32.to_be_bytes())]);
        assert_eq!(
            answer_of(&coded, eapay::VENDOR_ID, Some(&d)).unwrap(),
            Answer::Declined { code: Some(51), reason: None }
        );
        let bare = reply(Code::AccessReject, &[]);
        assert_eq!(
            answer_of(&bare, eapay::VENDOR_ID, Some(&d)).unwrap(),
            Answer::Declined { code: None, reason: None }
        );
        assert_eq!(describe_decline(51), "51 Insufficient-Funds");
        assert_eq!(describe_decline(7), "07");
    }
}
