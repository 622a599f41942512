//! The card's side of a card link (the protocol of
//! `aaa_proto::card_link`): for each payment, show the details to the
//! holder, answer with consent, run the EAP peer through the terminal, and
//! compare what the terminal says it displays with what the issuer told the
//! card inside the protected channel (DESIGN.md §1 steps 1, 2, 7).
//!
//! One payment on the link, the terminal driving:
//!
//! ```text
//! T->C Payment(Details)   C->T Payment(Consent)   C->T Start
//! T->C Eap(Request/Identity) ... C->T Eap(Response) ... T->C Eap(Success|Failure)
//! T->C Payment(Shown)
//! ```
//!
//! In auth-only mode the terminal starts directly with the EAP request and
//! sends no Shown. End of stream or EAPOL-Logoff between payments ends the
//! session; anything else out of place is a protocol error. Every wait in
//! the middle of a payment is bounded ([`ServeOptions::frame_timeout`]).
//! The state the EAP peer reports (the SQN window) is stored through
//! [`Card::remember`] before the card's next response leaves.

use std::time::Duration;

use aaa_proto::card_link::{CardLink, LinkError};
use aaa_proto::eapol::{Frame, PaymentFrame};
use aaa_proto::payment::{PaymentDetails, PaymentOutcome, PaymentResult};
use eap_methods::method::FailureReason;
use eap_methods::peer::{PeerEvent, PeerSession};

use crate::card::Card;
use crate::error::CardError;
use crate::holder::Holder;
use crate::show;

/// The EAP code of a Failure packet (RFC 3748 §4.2).
const EAP_FAILURE: u8 = 4;

/// Bounds on how long the card waits for the terminal.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Longest wait for the next frame in the middle of a payment.
    pub frame_timeout: Duration,
    /// Longest wait for a terminal to start the next payment; `None`:
    /// wait until it closes the link.
    pub idle_timeout: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { frame_timeout: Duration::from_secs(30), idle_timeout: None }
    }
}

/// What happened in one payment (or auth-only authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardReport {
    /// The details the card was asked to confirm; `None` in auth-only mode.
    pub details: Option<PaymentDetails>,
    /// Whether the holder accepted them (true in auth-only mode).
    pub consented: bool,
    /// What the card learnt from the issuer.
    pub outcome: CardOutcome,
    /// What the terminal said it displays, if it said so readably.
    pub terminal_showed: Option<PaymentResult>,
    /// Whether that agrees with what the issuer told the card: `None` if
    /// there is nothing to compare; `Some(false)` also when the terminal
    /// displays an approval the card never received, or sent an unreadable
    /// display.
    pub display_agrees: Option<bool>,
}

/// The card's view of how a payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardOutcome {
    /// The issuer approved, inside the protected channel, and sent EAP-Success.
    Approved { approval_code: String, approved_amount: u64 },
    /// The issuer declined with this ISO 8583 code, inside the protected channel.
    Declined { code: u32 },
    /// EAP-Success without a payment result (auth-only, or a server that
    /// delivers none).
    Authenticated,
    /// EAP-Failure without a protected decline, or the card's method gave up.
    Failed(String),
    /// The holder refused; nothing was sent to the issuer.
    Refused,
}

/// Serves payments on one link until the terminal closes it (or sends
/// Logoff); returns what happened in each.
pub async fn serve_link<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    holder: &mut dyn Holder,
) -> Result<Vec<CardReport>, CardError> {
    serve_link_with(link, card, holder, &ServeOptions::default()).await
}

/// [`serve_link`] with explicit timeouts.
pub async fn serve_link_with<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    holder: &mut dyn Holder,
    options: &ServeOptions,
) -> Result<Vec<CardReport>, CardError> {
    let mut reports = Vec::new();
    while let Some(report) = serve_next(link, card, holder, options).await? {
        reports.push(report);
    }
    Ok(reports)
}

/// Serves exactly one payment (or auth-only authentication) and returns.
/// A link that ends before a payment starts is [`CardError::Closed`].
pub async fn serve_one<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    holder: &mut dyn Holder,
) -> Result<CardReport, CardError> {
    serve_one_with(link, card, holder, &ServeOptions::default()).await
}

/// [`serve_one`] with explicit timeouts.
pub async fn serve_one_with<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    holder: &mut dyn Holder,
    options: &ServeOptions,
) -> Result<CardReport, CardError> {
    serve_next(link, card, holder, options).await?.ok_or(CardError::Closed { during: "before a payment started" })
}

/// Serves the next payment on the link: `Ok(None)` if the terminal ended
/// the session instead (end of stream, EAPOL-Logoff, or idle timeout).
/// This is the step [`serve_link`] repeats; a caller that reports each
/// payment as it completes (`eapay-card`) loops on it.
pub async fn serve_next<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    holder: &mut dyn Holder,
    options: &ServeOptions,
) -> Result<Option<CardReport>, CardError> {
    let first = match options.idle_timeout {
        None => link.recv().await,
        Some(idle) => match tokio::time::timeout(idle, link.recv()).await {
            Ok(received) => received,
            Err(_) => {
                tracing::info!("no payment from the terminal for {} s: ending the session", idle.as_secs_f64());
                return Ok(None);
            }
        },
    };
    let first = match first {
        Ok(frame) => frame,
        Err(LinkError::Closed) => return Ok(None),
        Err(e) => return Err(CardError::Link(e)),
    };
    tracing::trace!(frame = ?first, "from the terminal");
    match first {
        Frame::Logoff => {
            tracing::debug!("the terminal sent EAPOL-Logoff");
            Ok(None)
        }
        Frame::Payment(PaymentFrame::Details(canonical)) => pay(link, card, holder, options, canonical).await.map(Some),
        Frame::Eap(request) => authenticate_only(link, card, options, request).await.map(Some),
        other => Err(unexpected(&other, "payment details or an EAP request")),
    }
}

/// A payment: consent, EAP with the confirmation, the terminal's display.
async fn pay<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    holder: &mut dyn Holder,
    options: &ServeOptions,
    canonical: Vec<u8>,
) -> Result<CardReport, CardError> {
    let details = match PaymentDetails::from_canonical(&canonical) {
        Ok(d) => d,
        Err(e) => {
            // Say no to what cannot be shown, then report the terminal.
            let _ = link.send(Frame::Payment(PaymentFrame::Consent(false))).await;
            return Err(CardError::BadDetails(e));
        }
    };
    let card_id = card.file().card_id.clone();
    tracing::debug!(card = %card_id, "asked to confirm {}", show::details(&details));
    let consented = holder.consent(&details);
    send(link, Frame::Payment(PaymentFrame::Consent(consented))).await?;
    if !consented {
        tracing::debug!(card = %card_id, transaction = %details.transaction_id, "the holder refused");
        return Ok(CardReport {
            details: Some(details),
            consented: false,
            outcome: CardOutcome::Refused,
            terminal_showed: None,
            display_agrees: None,
        });
    }
    send(link, Frame::Start).await?;
    let mut peer = card.peer_session(Some(canonical))?;
    let end = converse(link, card, &mut peer, options, None, true).await?;
    let (outcome, told) = outcome(&end, &peer, Some(&details));
    let shown = match end {
        // The terminal displays something before the card has the issuer's
        // answer: that is what it displays.
        End::ShownEarly(bytes) => Some(bytes),
        // The card gave up and said so: the terminal has no answer to show.
        End::Failure { eap_failure: false, .. } => None,
        End::Success { .. } | End::Failure { eap_failure: true, .. } => {
            match recv(link, options.frame_timeout, "the result the terminal displays").await {
                Ok(Frame::Payment(PaymentFrame::Shown(bytes))) => Some(bytes),
                Ok(Frame::Logoff) | Err(CardError::Closed { .. }) => {
                    tracing::warn!(card = %card_id, transaction = %details.transaction_id,
                        "the terminal closed the link without saying what it displays");
                    None
                }
                Ok(other) => return Err(unexpected(&other, "the result the terminal displays")),
                Err(e) => return Err(e),
            }
        }
    };
    let (terminal_showed, display_agrees) = judge_display(&card_id, &details, told.as_ref(), shown.as_deref());
    let report = CardReport { details: Some(details), consented: true, outcome, terminal_showed, display_agrees };
    tracing::debug!(card = %card_id, "payment done: {:?}", show::report(&report));
    Ok(report)
}

/// Auth-only: the terminal starts with the EAP request; no confirmation,
/// no display.
async fn authenticate_only<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    options: &ServeOptions,
    request: Vec<u8>,
) -> Result<CardReport, CardError> {
    let mut peer = card.peer_session(None)?;
    let end = converse(link, card, &mut peer, options, Some(request), false).await?;
    let (outcome, _) = outcome(&end, &peer, None);
    tracing::debug!(card = %card.file().card_id, "authentication done: {outcome:?}");
    Ok(CardReport { details: None, consented: true, outcome, terminal_showed: None, display_agrees: None })
}

/// How the EAP conversation ended.
enum End {
    /// EAP-Success, accepted by the peer (the server is authenticated).
    Success { result: Option<Vec<u8>> },
    /// EAP-Failure (`eap_failure`), or the method gave up.
    Failure { eap_failure: bool, reason: FailureReason },
    /// The terminal sent what it displays before the conversation ended.
    ShownEarly(Vec<u8>),
}

/// Relays the EAP conversation: requests in, responses out.
async fn converse<L: CardLink>(
    link: &mut L,
    card: &mut Card,
    peer: &mut PeerSession,
    options: &ServeOptions,
    mut next: Option<Vec<u8>>,
    payment: bool,
) -> Result<End, CardError> {
    loop {
        let packet = match next.take() {
            Some(packet) => packet,
            None => match recv(link, options.frame_timeout, "the next EAP request").await? {
                Frame::Eap(packet) => packet,
                Frame::Payment(PaymentFrame::Shown(bytes)) if payment => return Ok(End::ShownEarly(bytes)),
                Frame::Logoff => return Err(CardError::Closed { during: "mid-payment (EAPOL-Logoff)" }),
                other => return Err(unexpected(&other, "the next EAP request")),
            },
        };
        let event = peer.handle(&packet);
        // What the USIM accepted is kept before anything leaves the card.
        card.remember(&peer.remember())?;
        match event {
            PeerEvent::Send(response) => send(link, Frame::Eap(response)).await?,
            PeerEvent::Success { result, .. } => return Ok(End::Success { result }),
            PeerEvent::Failure(reason) => {
                let eap_failure = packet.first() == Some(&EAP_FAILURE);
                if !eap_failure {
                    // The method cannot answer: tell the terminal the card is
                    // done rather than leave it waiting for a response.
                    tracing::warn!(card = %card.file().card_id, "the card's EAP method gave up: {reason}");
                    let _ = link.send(Frame::Logoff).await;
                }
                return Ok(End::Failure { eap_failure, reason });
            }
            PeerEvent::Ignore(why) => {
                tracing::warn!(card = %card.file().card_id, "ignored an EAP packet from the terminal: {why}");
            }
        }
    }
}

/// The outcome, and the issuer's result the card received (to compare with
/// the terminal's display).
fn outcome(end: &End, peer: &PeerSession, details: Option<&PaymentDetails>) -> (CardOutcome, Option<PaymentResult>) {
    let decode = |bytes: &[u8]| -> Result<PaymentResult, String> {
        let result =
            PaymentResult::decode(bytes).map_err(|e| format!("unreadable payment result from the issuer: {e}"))?;
        match details {
            Some(d) if d.transaction_id != result.transaction_id => Err(format!(
                "the issuer's result is for transaction {}, not {}",
                result.transaction_id, d.transaction_id
            )),
            _ => Ok(result),
        }
    };
    match end {
        End::Success { result: None } => (CardOutcome::Authenticated, None),
        End::Success { result: Some(bytes) } => match decode(bytes) {
            Ok(r) => {
                let outcome = match &r.outcome {
                    PaymentOutcome::Approved { approval_code, approved_amount } => CardOutcome::Approved {
                        approval_code: approval_code.clone(),
                        approved_amount: *approved_amount,
                    },
                    PaymentOutcome::Declined { code } => CardOutcome::Declined { code: *code },
                };
                (outcome, Some(r))
            }
            Err(why) => (CardOutcome::Failed(why), None),
        },
        End::Failure { eap_failure: true, .. } => match peer.result().map(|b| decode(&b)) {
            Some(Ok(r)) => match &r.outcome {
                PaymentOutcome::Declined { code } => (CardOutcome::Declined { code: *code }, Some(r)),
                // Someone sent EAP-Failure after the issuer's protected
                // approval; the issuer voids an approval the card never
                // completes, so this is no approval.
                PaymentOutcome::Approved { .. } => {
                    (CardOutcome::Failed("EAP-Failure after the issuer's approval; the approval is void".into()), None)
                }
            },
            Some(Err(why)) => (CardOutcome::Failed(why), None),
            None => (CardOutcome::Failed("EAP-Failure".into()), None),
        },
        End::Failure { eap_failure: false, reason } => (CardOutcome::Failed(reason.to_string()), None),
        End::ShownEarly(_) => (
            CardOutcome::Failed("the terminal ended the payment before the issuer's answer reached the card".into()),
            None,
        ),
    }
}

/// Compares what the terminal displays with what the issuer told the card
/// (DESIGN.md §1 step 7) and warns about any disagreement.
fn judge_display(
    card_id: &str,
    details: &PaymentDetails,
    told: Option<&PaymentResult>,
    shown: Option<&[u8]>,
) -> (Option<PaymentResult>, Option<bool>) {
    let Some(bytes) = shown else { return (None, None) };
    let currency = Some(details.currency);
    let shown = match PaymentResult::decode(bytes) {
        Ok(shown) => shown,
        Err(e) => {
            tracing::warn!(card = %card_id, transaction = %details.transaction_id,
                "the terminal's display is unreadable ({e}); the card cannot check it");
            return (None, Some(false));
        }
    };
    let agrees = match told {
        Some(told) => {
            let same = *told == shown;
            if !same {
                tracing::warn!(card = %card_id, transaction = %details.transaction_id,
                    "terminal displays {} but the issuer said {}",
                    describe(&shown, currency), describe(told, currency));
            }
            Some(same)
        }
        None if matches!(shown.outcome, PaymentOutcome::Approved { .. }) => {
            tracing::warn!(card = %card_id, transaction = %details.transaction_id,
                "terminal displays {} but the card received no approval from the issuer",
                describe(&shown, currency));
            Some(false)
        }
        // A decline the card cannot confirm harms no one.
        None => None,
    };
    (Some(shown), agrees)
}

/// A result with its transaction, for logs.
fn describe(r: &PaymentResult, currency: Option<u32>) -> String {
    format!("{} for transaction {}", show::result(r, currency), r.transaction_id)
}

async fn send<L: CardLink>(link: &mut L, frame: Frame) -> Result<(), CardError> {
    tracing::trace!(?frame, "to the terminal");
    link.send(frame).await.map_err(|e| CardError::link(e, "mid-payment"))
}

async fn recv<L: CardLink>(link: &mut L, timeout: Duration, waiting: &'static str) -> Result<Frame, CardError> {
    match tokio::time::timeout(timeout, link.recv()).await {
        Err(_) => Err(CardError::Timeout { waiting, after: timeout }),
        Ok(Err(e)) => Err(CardError::link(e, "mid-payment")),
        Ok(Ok(frame)) => {
            tracing::trace!(?frame, "from the terminal");
            Ok(frame)
        }
    }
}

fn unexpected(frame: &Frame, waiting: &'static str) -> CardError {
    CardError::Unexpected { frame: format!("{frame:?}"), waiting }
}
