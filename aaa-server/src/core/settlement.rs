//! Capture, reversal and refund (DESIGN.md §1): an accounting request (RADIUS
//! Accounting-Request, Diameter ACR) with Eapay-Settlement-Action and
//! Eapay-Transaction-Id.
//!
//! The accounting answer is the acknowledgement the terminal's
//! store-and-forward queue waits for, so it is sent only once the change is
//! durable, and also for a refused action (with Eapay-Decline-Code): a
//! terminal must not retry for ever what will never succeed.

use aaa_proto::dictionary::eapay::{self, DeclineCode, SettlementAction};
use aaa_proto::payment::MAX_ID_LEN;
use tracing::info;

use super::counters::{SettlementResult, Settlements};
use crate::error::ServerError;
use crate::ledger::{Decline, Ledger, Settlement, SettlementOutcome};

/// The terminal asking: its name and the merchants it may act for.
#[derive(Debug, Clone, Copy)]
pub struct Terminal<'a> {
    pub name: &'a str,
    pub merchants: &'a [String],
}

/// Carries out what the Eapay attributes of one accounting request
/// (`(vendor type, value)` pairs; `None` when its vendor attributes do not
/// parse) ask for. `Ok(None)`: nothing to settle (plain session accounting),
/// or settled; otherwise the refusal to send back, which the audit log also
/// records when the request named no usable settlement.
pub async fn account<L: Ledger>(
    ledger: &L,
    counts: &Settlements,
    attrs: Option<&[(u8, &[u8])]>,
    terminal: Terminal<'_>,
    now_ms: u64,
) -> Result<Option<Decline>, ServerError> {
    let asked = match attrs {
        Some(attrs) => settlement_of(attrs, terminal, now_ms),
        None => Some(Err(invalid("malformed Vendor-Specific"))),
    };
    match asked {
        None => Ok(None),
        Some(Ok(settlement)) => settle(ledger, counts, settlement).await,
        Some(Err(refusal)) => {
            ledger.audit_refusal(terminal.name, &refusal.reason, now_ms).await?;
            Ok(Some(refusal))
        }
    }
}

/// The settlement the Eapay attributes of an accounting request ask for;
/// `None` if they ask for none, `Err` if they ask for one badly.
fn settlement_of(attrs: &[(u8, &[u8])], terminal: Terminal<'_>, now_ms: u64) -> Option<Result<Settlement, Decline>> {
    match single(attrs, eapay::SETTLEMENT_ACTION, "Eapay-Settlement-Action") {
        Ok(None) => None,
        Ok(Some(action)) => Some(parse(action, attrs, terminal, now_ms)),
        Err(d) => Some(Err(d)),
    }
}

/// The value of an attribute that may appear at most once.
fn single<'a>(attrs: &[(u8, &'a [u8])], kind: u8, name: &str) -> Result<Option<&'a [u8]>, Decline> {
    let mut values = attrs.iter().filter(|(t, _)| *t == kind).map(|(_, v)| *v);
    let first = values.next();
    match values.next() {
        Some(_) => Err(invalid(&format!("{name} appears more than once"))),
        None => Ok(first),
    }
}

fn text(value: &[u8], name: &str) -> Result<String, Decline> {
    match std::str::from_utf8(value) {
        Ok(s) if !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(s.to_string()),
        _ => Err(invalid(&format!("{name} is not 1-{MAX_ID_LEN} printable characters"))),
    }
}

fn parse(action: &[u8], attrs: &[(u8, &[u8])], terminal: Terminal<'_>, now_ms: u64) -> Result<Settlement, Decline> {
    let action = <[u8; 4]>::try_from(action)
        .ok()
        .map(u32::from_be_bytes)
        .and_then(SettlementAction::from_value)
        .ok_or_else(|| invalid("Eapay-Settlement-Action is not capture, reverse or refund"))?;
    let transaction_id = match single(attrs, eapay::TRANSACTION_ID, "Eapay-Transaction-Id")? {
        Some(v) => text(v, "Eapay-Transaction-Id")?,
        None => return Err(invalid("Eapay-Transaction-Id is missing")),
    };
    // A terminal that acts for one merchant may leave the merchant out.
    let merchant_id = match single(attrs, eapay::MERCHANT_ID, "Eapay-Merchant-Id")? {
        Some(v) => text(v, "Eapay-Merchant-Id")?,
        None => match terminal.merchants {
            [only] => only.clone(),
            _ => return Err(invalid("Eapay-Merchant-Id is missing")),
        },
    };
    let amount = match single(attrs, eapay::AMOUNT, "Eapay-Amount")? {
        Some(v) => Some(
            <[u8; 8]>::try_from(v).map(u64::from_be_bytes).map_err(|_| invalid("Eapay-Amount is not an integer64"))?,
        ),
        None => None,
    };
    Ok(Settlement { client: terminal.name.to_string(), merchant_id, transaction_id, action, amount, now_ms })
}

/// Applies a settlement; `Some(decline)` if the ledger refused it.
async fn settle<L: Ledger>(
    ledger: &L,
    counts: &Settlements,
    settlement: Settlement,
) -> Result<Option<Decline>, ServerError> {
    let (client, merchant, txn, action) = (
        settlement.client.clone(),
        settlement.merchant_id.clone(),
        settlement.transaction_id.clone(),
        settlement.action,
    );
    let outcome = ledger.settle(settlement).await?;
    info!(client, merchant, transaction = txn, action = action.name(), outcome = ?outcome, "settlement");
    counts.record(
        action,
        match &outcome {
            SettlementOutcome::Done(_) => SettlementResult::Done,
            SettlementOutcome::AlreadyDone(_) => SettlementResult::AlreadyDone,
            SettlementOutcome::Tombstoned => SettlementResult::Tombstoned,
            SettlementOutcome::Refused(_) => SettlementResult::Refused,
        },
    );
    Ok(match outcome {
        SettlementOutcome::Refused(decline) => Some(decline),
        SettlementOutcome::Done(_) | SettlementOutcome::AlreadyDone(_) | SettlementOutcome::Tombstoned => None,
    })
}

fn invalid(reason: &str) -> Decline {
    Decline { code: DeclineCode::InvalidTransaction, reason: reason.to_string() }
}
