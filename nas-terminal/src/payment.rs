//! One payment as the terminal runs it (DESIGN.md §1): show the details to
//! the card over the card link, relay the card's EAP to the server in
//! requests carrying the payment attributes (RADIUS Access-Requests, RFC
//! 3579, or Diameter DERs, RFC 4072: see [`crate::transport`]), and read the
//! answer from the final Accept or Reject.
//!
//! The terminal is blind: it reads of EAP only the identity it copies into
//! User-Name (RFC 3579 §2.1) and the EAP header, to refuse garbage before it
//! reaches the server. It never holds a key that protects the card's
//! conversation.

use std::time::Duration;

use aaa_proto::card_link::{CardLink, LinkError};
use aaa_proto::dictionary::eapay;
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{is_approval_code, PaymentDetails, PaymentOutcome, PaymentResult};
use thiserror::Error;
use tracing::{debug, trace, warn};

use crate::client::{ClientError, RadiusClient};
use crate::transport::radius::RadiusConversation;
use crate::transport::{FinalReply, Round, ServerAnswer, Transport, Verdict};

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
    /// Request/answer round trips.
    pub rounds: usize,
    /// The final answer as it came; `None` if the card refused.
    pub reply: Option<FinalReply>,
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
    #[error(transparent)]
    Diameter(#[from] crate::diameter::DiameterError),
    #[error("the server answered with {0}")]
    UnexpectedAnswer(String),
    #[error("a challenge without an EAP packet")]
    NoEap,
    #[error("more than {MAX_ROUNDS} round trips")]
    TooManyRounds,
    #[error("the server's answer is not usable: {0}")]
    BadAnswer(String),
}

impl PaymentError {
    /// True if the request certainly never left the terminal.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, Self::Radius(e) if e.nothing_sent())
    }
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

/// Runs one payment (or authentication) with the card on `link`, over RADIUS.
pub async fn run<L: CardLink>(
    link: &mut L,
    client: &mut RadiusClient,
    settings: &TerminalSettings,
    request: Request<'_>,
) -> Result<Finished, Failed> {
    run_over(link, &mut RadiusConversation::new(client, settings), settings, request).await
}

/// Runs one payment (or authentication) with the card on `link`, its EAP
/// carried by `transport`.
pub async fn run_over<L: CardLink, T: Transport>(
    link: &mut L,
    transport: &mut T,
    settings: &TerminalSettings,
    request: Request<'_>,
) -> Result<Finished, Failed> {
    let mut conversation = Conversation { link, transport, settings, in_doubt: false, rounds: 0 };
    match conversation.run(request).await {
        Ok(done) => Ok(done),
        Err(error) => Err(Failed { error, in_doubt: conversation.in_doubt }),
    }
}

struct Conversation<'a, L, T> {
    link: &'a mut L,
    transport: &'a mut T,
    settings: &'a TerminalSettings,
    /// Set once a request with payment attributes has left, cleared by a
    /// usable final answer.
    in_doubt: bool,
    rounds: usize,
}

impl<L: CardLink, T: Transport> Conversation<'_, L, T> {
    async fn run(&mut self, request: Request<'_>) -> Result<Finished, PaymentError> {
        let payment = match request {
            Request::Payment(d) => Some(d),
            Request::AuthOnly => None,
        };
        if let Some(details) = payment {
            details.validate().map_err(|e| PaymentError::Details(e.to_string()))?;
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
        for number in 0..MAX_ROUNDS {
            if payment.is_some() {
                self.in_doubt = true;
            }
            self.rounds = number + 1;
            let round = Round { user_name: &user_name, eap: &eap, payment, number };
            let reply = match self.transport.round(round).await {
                Ok(reply) => reply,
                Err(e) => {
                    // The first request never left (RADIUS/TLS: no
                    // connection): no server knows of this payment.
                    if number == 0 && e.nothing_sent() {
                        self.in_doubt = false;
                    }
                    return Err(e);
                }
            };
            debug!(round = self.rounds, verdict = ?reply.verdict, "server answered");
            match reply.verdict {
                Verdict::Challenge => {
                    let challenge = reply.eap.ok_or(PaymentError::NoEap)?;
                    self.link.send(Frame::Eap(challenge)).await?;
                    eap = self.next_eap().await?;
                }
                Verdict::Accept | Verdict::Reject => {
                    let answer = answer_of(&reply, payment)?;
                    self.in_doubt = false;
                    self.tell_card(&reply, payment, &answer).await;
                    return Ok(Finished {
                        answer,
                        user_name: Some(user_name),
                        rounds: self.rounds,
                        reply: Some(reply.reply),
                    });
                }
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
    async fn tell_card(&mut self, reply: &ServerAnswer, payment: Option<&PaymentDetails>, answer: &Answer) {
        if let Some(last) = &reply.eap {
            if let Err(e) = self.link.send(Frame::Eap(last.clone())).await {
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

/// Reads the answer from a final reply. In a payment an Accept must carry a
/// well-formed approval for our transaction: anything less leaves the
/// terminal in doubt, and it reverses.
fn answer_of(reply: &ServerAnswer, payment: Option<&PaymentDetails>) -> Result<Answer, PaymentError> {
    let text = |t: u8| reply.eapay(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let accepted = reply.verdict == Verdict::Accept;
    let Some(details) = payment else {
        return Ok(if accepted {
            Answer::Authenticated
        } else {
            Answer::Declined { code: decline_code(reply)?, reason: text(eapay::DECLINE_REASON) }
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
    if !accepted {
        return Ok(Answer::Declined { code: decline_code(reply)?, reason: text(eapay::DECLINE_REASON) });
    }
    let approval_code = text(eapay::APPROVAL_CODE)
        .filter(|c| is_approval_code(c))
        .ok_or_else(|| PaymentError::BadAnswer("an Accept without a valid Eapay-Approval-Code".into()))?;
    let approved_amount = match reply.eapay(eapay::APPROVED_AMOUNT) {
        None => details.amount,
        Some(v) => <[u8; 8]>::try_from(v)
            .map(u64::from_be_bytes)
            .map_err(|_| PaymentError::BadAnswer("Eapay-Approved-Amount is not an integer64".into()))?,
    };
    if approved_amount != details.amount {
        // eapay never approves part of an amount; a server that does is not
        // one this terminal can settle with.
        return Err(PaymentError::BadAnswer(format!("approved {approved_amount} of {} minor units", details.amount)));
    }
    let receipt = reply.eapay(eapay::RECEIPT).map(<[u8]>::to_vec);
    Ok(Answer::Approved { approval_code, approved_amount, receipt })
}

fn decline_code(reply: &ServerAnswer) -> Result<Option<u32>, PaymentError> {
    match reply.eapay(eapay::DECLINE_CODE) {
        None => Ok(None),
        Some(v) => <[u8; 4]>::try_from(v)
            .map(|b| Some(u32::from_be_bytes(b)))
            .map_err(|_| PaymentError::BadAnswer("Eapay-Decline-Code is not an integer".into())),
    }
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
    use aaa_proto::radius::{Code, Packet};

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

    fn reply(code: Code, attrs: &[(u8, &[u8])]) -> ServerAnswer {
        let verdict = if code == Code::AccessAccept { Verdict::Accept } else { Verdict::Reject };
        let packet = Packet::new(code, 1, [0; 16]);
        ServerAnswer {
            verdict,
            eap: None,
            eapay: attrs.iter().map(|(t, v)| (*t, v.to_vec())).collect(),
            reply: FinalReply::Radius { packet, authenticator: [0; 16] },
        }
    }

    #[test]
    fn an_accept_must_carry_our_approval() {
        let d = details();
        let ok = reply(Code::AccessAccept, &[(eapay::APPROVAL_CODE, b"AB12CD"), (eapay::TRANSACTION_ID, b"T-1")]);
        assert_eq!(
            answer_of(&ok, Some(&d)).unwrap(),
            Answer::Approved { approval_code: "AB12CD".into(), approved_amount: 1250, receipt: None }
        );
        let none = reply(Code::AccessAccept, &[]);
        assert!(answer_of(&none, Some(&d)).is_err());
        let other = reply(Code::AccessAccept, &[(eapay::APPROVAL_CODE, b"AB12CD"), (eapay::TRANSACTION_ID, b"T-2")]);
        assert!(answer_of(&other, Some(&d)).is_err());
        let partial = reply(
            Code::AccessAccept,
            &[(eapay::APPROVAL_CODE, b"AB12CD"), (eapay::APPROVED_AMOUNT, &100u64.to_be_bytes())],
        );
        assert!(answer_of(&partial, Some(&d)).is_err());
        assert_eq!(answer_of(&none, None).unwrap(), Answer::Authenticated);
    }

    #[test]
    fn a_reject_is_a_decline_with_or_without_code() {
        let d = details();
        let coded = reply(Code::AccessReject, &[(eapay::DECLINE_CODE, &51u32.to_be_bytes())]);
        assert_eq!(answer_of(&coded, Some(&d)).unwrap(), Answer::Declined { code: Some(51), reason: None });
        let bare = reply(Code::AccessReject, &[]);
        assert_eq!(answer_of(&bare, Some(&d)).unwrap(), Answer::Declined { code: None, reason: None });
        assert_eq!(describe_decline(51), "51 Insufficient-Funds");
        assert_eq!(describe_decline(7), "07");
    }
}
