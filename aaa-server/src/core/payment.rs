//! The payment side of an EAP conversation: what the terminal asserted, how
//! the card's confirmation compares with it, and the decision that ends the
//! conversation (DESIGN.md §1 steps 3-6, §4).
//!
//! The EAP layer knows how the card authenticated and what it confirmed; the
//! ledger knows balances, limits and history. This module joins the two:
//! declines that only the EAP layer can see (authentication failed 63,
//! confirmation mismatch 59) go to the ledger as `pre_declined`, so every
//! answer about a well-formed payment is recorded in one place.

use aaa_proto::dictionary::eapay::{self, CardConfirmation, DeclineCode, SettlementAction};
use aaa_proto::payment::{PaymentDetails, PaymentOutcome, PaymentResult};
use eap_methods::tls::confirmation;
use eap_methods::{Authenticated, CardSignature, FailureReason};
use subtle::ConstantTimeEq;
use tracing::{error, warn};

use crate::cards::Confirmation;
use crate::ledger::{Attempt, Decline, Evidence, Ledger, Outcome, Settlement};

/// What the terminal asserted about the payment, over all rounds so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No payment attribute at all: an authentication-only request, which
    /// never gets an approval.
    AuthOnly,
    /// A well-formed payment.
    Payment(PaymentDetails),
    /// Payment attributes that cannot be a payment; the transaction id, if
    /// one was usable, is echoed in the decline.
    Invalid { reason: String, transaction_id: Option<String> },
}

impl Claim {
    /// The claim of one request, from the Eapay vendor attributes it carried
    /// as `(vendor type, value)` pairs (RADIUS Vendor-Specific or Diameter
    /// vendor AVPs: the rules are the same).
    pub fn from_attributes(attrs: &[(u8, &[u8])]) -> Self {
        match PaymentDetails::from_attributes(attrs.iter().copied()) {
            Ok(Some(details)) => Self::Payment(details),
            Ok(None) => Self::AuthOnly,
            Err(e) => Self::Invalid { reason: e.to_string(), transaction_id: usable_transaction_id(attrs) },
        }
    }

    /// The claim of a request whose vendor attributes could not be read at all.
    pub fn unreadable(why: impl std::fmt::Display) -> Self {
        Self::Invalid { reason: format!("bad Vendor-Specific attribute: {why}"), transaction_id: None }
    }

    /// Folds in a later round. A terminal may send the attributes in the
    /// first request only (a later round without them changes nothing) or
    /// in every round (eapol_test `-N`), but never different ones.
    pub fn merge(self, later: Claim) -> Claim {
        match (self, later) {
            (invalid @ Self::Invalid { .. }, _) => invalid,
            (current, Self::AuthOnly) => current,
            (current, later) if current == later => current,
            (_, invalid @ Self::Invalid { .. }) => invalid,
            (current, later) => Self::Invalid {
                reason: "payment attributes changed between rounds".into(),
                transaction_id: current.transaction_id().or(later.transaction_id()).map(str::to_string),
            },
        }
    }

    /// The transaction id the terminal named, when it named a usable one.
    pub fn transaction_id(&self) -> Option<&str> {
        match self {
            Self::Payment(d) => Some(&d.transaction_id),
            Self::Invalid { transaction_id, .. } => transaction_id.as_deref(),
            Self::AuthOnly => None,
        }
    }
}

/// The single, well-formed Eapay-Transaction-Id among attributes that are
/// otherwise unusable as a payment.
fn usable_transaction_id(attrs: &[(u8, &[u8])]) -> Option<String> {
    let mut ids = attrs.iter().filter(|(t, _)| *t == eapay::TRANSACTION_ID);
    let id = std::str::from_utf8(ids.next()?.1).ok()?;
    (ids.next().is_none() && aaa_proto::payment::is_valid_id(id)).then(|| id.to_string())
}

/// The answer to a conversation, for the RADIUS or Diameter reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAnswer {
    /// The transaction answered, when the request named one.
    pub transaction_id: Option<String>,
    pub outcome: Outcome,
    pub confirmation: CardConfirmation,
}

impl PaymentAnswer {
    /// True for an approval.
    pub fn approved(&self) -> bool {
        matches!(self.outcome, Outcome::Approved { .. })
    }

    /// What the card receives inside its protected channel.
    pub fn for_card(&self) -> Option<Vec<u8>> {
        let transaction_id = self.transaction_id.clone()?;
        let outcome = match &self.outcome {
            Outcome::Approved { approval_code, approved_amount, .. } => {
                PaymentOutcome::Approved { approval_code: approval_code.clone(), approved_amount: *approved_amount }
            }
            Outcome::Declined(d) => PaymentOutcome::Declined { code: d.code.value() },
        };
        Some(PaymentResult { transaction_id, outcome }.encode())
    }

    /// The approval or decline attributes (DESIGN.md §3) as `(vendor type,
    /// value)` pairs, in the order they are sent; each front end writes them
    /// in its own form (Vendor-Specific, vendor AVPs).
    pub fn attributes(&self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::with_capacity(5);
        if let Some(txn) = &self.transaction_id {
            out.push((eapay::TRANSACTION_ID, txn.as_bytes().to_vec()));
        }
        match &self.outcome {
            Outcome::Approved { approval_code, approved_amount, receipt } => {
                out.push((eapay::APPROVAL_CODE, approval_code.as_bytes().to_vec()));
                out.push((eapay::APPROVED_AMOUNT, approved_amount.to_be_bytes().to_vec()));
                out.push((eapay::RECEIPT, receipt.clone()));
            }
            Outcome::Declined(d) => out.extend(decline_attributes(d.code, &d.reason)),
        }
        out.push((eapay::CARD_CONFIRMATION, self.confirmation.value().to_be_bytes().to_vec()));
        out
    }

    fn declined(claim: &Claim, code: DeclineCode, reason: impl Into<String>, confirmation: CardConfirmation) -> Self {
        Self {
            transaction_id: claim.transaction_id().map(str::to_string),
            outcome: Outcome::Declined(Decline { code, reason: reason.into() }),
            confirmation,
        }
    }
}

/// Eapay-Decline-Code and Eapay-Decline-Reason as `(vendor type, value)` pairs.
pub fn decline_attributes(code: DeclineCode, reason: &str) -> [(u8, Vec<u8>); 2] {
    [(eapay::DECLINE_CODE, code.value().to_be_bytes().to_vec()), (eapay::DECLINE_REASON, reason.as_bytes().to_vec())]
}

/// Who is asking and when: the parts of an attempt that come from the transport.
pub struct Context<'a> {
    /// The terminal's name: its RADIUS client or Diameter peer entry.
    pub client: &'a str,
    /// Where its packet came from (rate-limits the log lines about it).
    pub source: std::net::IpAddr,
    /// Server clock, Unix ms.
    pub now_ms: u64,
}

/// A card's registered public key, as the signature check needs it.
#[derive(Debug, Clone, Copy)]
pub struct CardKey<'a> {
    /// DER SubjectPublicKeyInfo registered at issuance.
    pub spki: &'a [u8],
    /// SHA-256(SPKI || PAN-token), if the card was issued with one.
    pub v_card: Option<[u8; 32]>,
}

/// Checks a TLS-family card signature (DESIGN.md §4, §5): the key that
/// signed is the card's registered key (and, in EAP-TLS, the key of the
/// certificate the card authenticated with), the signature covers exactly
/// the confirmed details bound to this session's exporter, and the
/// PAN-token the card sent gives back the stored V-Card. `Err` says why not.
pub fn check_signature(
    key: Option<CardKey<'_>>,
    details: &[u8],
    signature: &CardSignature,
) -> Result<(), &'static str> {
    let Some(key) = key else { return Err("the card has no registered key") };
    if signature.spki.as_deref().is_some_and(|spki| spki != key.spki) {
        return Err("the client certificate key is not the card's registered key");
    }
    if !confirmation::verify(key.spki, details, &signature.exporter, &signature.signature) {
        return Err("the card's payment signature does not verify");
    }
    if let Some(stored) = key.v_card {
        let Some(pan_token) = signature.pan_token else { return Err("the card sent no PAN-token") };
        if !bool::from(crate::ledger::v_card(key.spki, &pan_token).ct_eq(&stored)) {
            return Err("the PAN-token does not give the card's V-Card");
        }
    }
    Ok(())
}

/// The decision after the method authenticated the card. `policy` is the
/// card's confirmation policy (None if the card is unknown); `signature` the
/// outcome of [`check_signature`] when the card signed its confirmation.
pub async fn after_authentication<L: Ledger>(
    ledger: &L,
    ctx: &Context<'_>,
    claim: &Claim,
    card_id: &str,
    authenticated: &Authenticated,
    policy: Option<Confirmation>,
    signature: Option<Result<(), &'static str>>,
) -> PaymentAnswer {
    let details = match claim {
        Claim::Payment(details) => details,
        Claim::AuthOnly => {
            return PaymentAnswer::declined(
                claim,
                DeclineCode::InvalidTransaction,
                "authentication-only request: no payment attributes",
                CardConfirmation::NotConfirmed,
            );
        }
        Claim::Invalid { reason, .. } => {
            audit_refusal(ledger, ctx, reason).await;
            return PaymentAnswer::declined(
                claim,
                DeclineCode::InvalidTransaction,
                reason.clone(),
                CardConfirmation::NotConfirmed,
            );
        }
    };
    let method = authenticated.method.name();
    // What the ledger keeps as proof: the signature with the exporter value
    // it binds to, or the MAC-covered details of the SIM/AKA family.
    let evidence_of = |confirmed: &Vec<u8>| match &authenticated.signature {
        Some(sig) => Evidence { kind: "signature", bytes: confirmation::evidence_bytes(&sig.exporter, &sig.signature) },
        None => Evidence { kind: "mac", bytes: confirmed.clone() },
    };
    let refused = match signature {
        Some(Err(why)) => Some(why),
        _ => None,
    };
    let (confirmation, evidence, pre_declined) = match (&authenticated.confirmation, refused) {
        (Some(confirmed), Some(why)) => {
            warn!(client = ctx.client, transaction = %details.transaction_id, card = card_id, why, "card signature refused");
            (
                CardConfirmation::NotConfirmed,
                Some(evidence_of(confirmed)),
                Some(Decline { code: DeclineCode::SecurityViolation, reason: why.into() }),
            )
        }
        (Some(confirmed), None) if *confirmed == details.canonical() => {
            (CardConfirmation::Confirmed, Some(evidence_of(confirmed)), None)
        }
        (Some(confirmed), None) => {
            warn!(
                client = ctx.client,
                merchant = %details.merchant_id,
                transaction = %details.transaction_id,
                card = card_id,
                "the card confirmed other payment details than the terminal sent: suspected terminal tampering"
            );
            (
                CardConfirmation::Mismatch,
                Some(evidence_of(confirmed)),
                Some(Decline {
                    code: DeclineCode::SuspectedFraud,
                    reason: "card confirmed different payment details".into(),
                }),
            )
        }
        (None, _) if policy == Some(Confirmation::Required) => (
            CardConfirmation::NotConfirmed,
            None,
            Some(Decline {
                code: DeclineCode::SuspectedFraud,
                reason: "the card must confirm the payment and did not".into(),
            }),
        ),
        (None, _) => (CardConfirmation::NotConfirmed, None, None),
    };
    let attempt = Attempt {
        client: ctx.client.to_string(),
        details: details.clone(),
        card_id: policy.map(|_| card_id.to_string()),
        method,
        confirmation,
        evidence,
        pre_declined,
        now_ms: ctx.now_ms,
    };
    authorize(ledger, claim, attempt).await
}

/// The answer when the conversation failed before a decision: a payment is
/// still recorded as declined (63, or 14 for an unknown card), so the
/// terminal's repeat gets the same answer.
pub async fn after_failure<L: Ledger>(
    ledger: &L,
    ctx: &Context<'_>,
    claim: &Claim,
    reason: &FailureReason,
    method: &'static str,
) -> PaymentAnswer {
    let decline = match reason {
        FailureReason::UnknownIdentity | FailureReason::NoCommonMethod => {
            Decline { code: DeclineCode::InvalidCard, reason: "unknown card".into() }
        }
        FailureReason::IncorrectPin => Decline { code: DeclineCode::IncorrectPin, reason: "incorrect PIN".into() },
        FailureReason::PinTriesExceeded => {
            Decline { code: DeclineCode::PinTriesExceeded, reason: "PIN tries exceeded".into() }
        }
        other => Decline { code: DeclineCode::SecurityViolation, reason: other.to_string() },
    };
    match claim {
        Claim::Payment(details) => {
            let attempt = Attempt {
                client: ctx.client.to_string(),
                details: details.clone(),
                card_id: None,
                method,
                confirmation: CardConfirmation::NotConfirmed,
                evidence: None,
                pre_declined: Some(decline),
                now_ms: ctx.now_ms,
            };
            authorize(ledger, claim, attempt).await
        }
        Claim::Invalid { reason, .. } => {
            audit_refusal(ledger, ctx, reason).await;
            PaymentAnswer::declined(claim, decline.code, decline.reason, CardConfirmation::NotConfirmed)
        }
        Claim::AuthOnly => PaymentAnswer::declined(claim, decline.code, decline.reason, CardConfirmation::NotConfirmed),
    }
}

/// Takes back an approval the card never completed: the conversation failed
/// (or was abandoned) after the ledger had approved, in the AT_RESULT_IND
/// round that carries the result to the card. The approval is reversed
/// durably, so the funds are released and a repeat of the transaction is
/// declined; the terminal gets a decline, never approval attributes.
pub async fn withdraw_approval<L: Ledger>(
    ledger: &L,
    client: &str,
    claim: &Claim,
    answer: PaymentAnswer,
    why: &str,
    now_ms: u64,
) -> PaymentAnswer {
    let Claim::Payment(details) = claim else { return answer };
    if !answer.approved() {
        return answer;
    }
    let settlement = Settlement {
        client: client.to_string(),
        merchant_id: details.merchant_id.clone(),
        transaction_id: details.transaction_id.clone(),
        action: SettlementAction::Reverse,
        amount: None,
        now_ms,
    };
    let (code, reason) = match ledger.settle(settlement).await {
        Ok(outcome) => {
            warn!(client, transaction = %details.transaction_id, why, ?outcome, "approval reversed: the card did not complete");
            (DeclineCode::SecurityViolation, format!("{why}; the approval was reversed"))
        }
        // The approval stands in the ledger; the terminal's timeout reversal
        // (or an operator) releases it. Still no approval to the terminal.
        Err(e) => {
            error!(client, transaction = %details.transaction_id, error = %e, "could not reverse an uncompleted approval");
            (DeclineCode::SystemMalfunction, "system malfunction".to_string())
        }
    };
    PaymentAnswer::declined(claim, code, reason, answer.confirmation)
}

async fn authorize<L: Ledger>(ledger: &L, claim: &Claim, attempt: Attempt) -> PaymentAnswer {
    let confirmation = attempt.confirmation;
    match ledger.authorize(attempt).await {
        Ok(decision) => PaymentAnswer {
            transaction_id: claim.transaction_id().map(str::to_string),
            outcome: decision.outcome,
            confirmation: decision.confirmation,
        },
        // Never an approval that is not durable: the ledger failed, so decline.
        Err(e) => {
            error!(error = %e, "ledger failed; declining");
            PaymentAnswer::declined(claim, DeclineCode::SystemMalfunction, "system malfunction", confirmation)
        }
    }
}

async fn audit_refusal<L: Ledger>(ledger: &L, ctx: &Context<'_>, why: &str) {
    if let Err(e) = ledger.audit_refusal(ctx.client, why, ctx.now_ms).await {
        error!(error = %e, "audit log write failed");
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(amount: u64) -> PaymentDetails {
        PaymentDetails {
            transaction_id: "T1".into(),
            merchant_id: "M1".into(),
            amount,
            currency: 840,
            installments: 0,
            terminal_nonce: [7; 16],
            terminal_time_ms: 1,
        }
    }

    #[test]
    fn a_card_signature_must_come_from_the_registered_key_and_give_the_v_card() {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let spki = key.public_key_to_der().unwrap();
        let other = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap().public_key_to_der().unwrap();
        let pan_token = [4u8; 32];
        // DESIGN.md §5, computed here from the definition, not by the code under test.
        let v_card: [u8; 32] = {
            use sha2::{Digest, Sha256};
            Sha256::new().chain_update(&spki).chain_update(pan_token).finalize().into()
        };
        let exporter = [7u8; 32];
        let confirmed = details(100).canonical();
        let signed = CardSignature {
            exporter,
            signature: confirmation::sign(&key, &confirmed, &exporter).unwrap(),
            pan_token: Some(pan_token),
            spki: Some(spki.clone()),
        };
        let registered = CardKey { spki: &spki, v_card: Some(v_card) };
        assert_eq!(check_signature(Some(registered), &confirmed, &signed), Ok(()));
        assert!(check_signature(None, &confirmed, &signed).is_err(), "no registered key");
        let elsewhere = CardKey { spki: &other, v_card: None };
        assert!(check_signature(Some(elsewhere), &confirmed, &signed).is_err(), "another card's key");
        assert!(check_signature(Some(registered), &details(101).canonical(), &signed).is_err(), "other details");
        let no_token = CardSignature { pan_token: None, ..signed.clone() };
        assert!(check_signature(Some(registered), &confirmed, &no_token).is_err(), "V-Card needs the PAN-token");
        let wrong_token = CardSignature { pan_token: Some([5; 32]), ..signed.clone() };
        assert!(check_signature(Some(registered), &confirmed, &wrong_token).is_err(), "wrong PAN-token");
        let replayed = CardSignature { exporter: [8; 32], ..signed.clone() };
        assert!(check_signature(Some(registered), &confirmed, &replayed).is_err(), "another session");
        let ttls = CardSignature { spki: None, ..signed };
        assert_eq!(check_signature(Some(registered), &confirmed, &ttls), Ok(()), "TTLS has no client certificate");
    }

    #[test]
    fn later_rounds_may_repeat_or_omit_but_not_change() {
        let first = Claim::Payment(details(100));
        assert_eq!(first.clone().merge(Claim::AuthOnly), first);
        assert_eq!(first.clone().merge(first.clone()), first);
        assert!(matches!(first.clone().merge(Claim::Payment(details(101))), Claim::Invalid { .. }));
        assert!(matches!(Claim::AuthOnly.merge(first.clone()), Claim::Invalid { .. }));
        let invalid = Claim::Invalid { reason: "x".into(), transaction_id: None };
        assert_eq!(invalid.clone().merge(first), invalid);
        assert_eq!(Claim::AuthOnly.merge(Claim::AuthOnly), Claim::AuthOnly);
    }
}
