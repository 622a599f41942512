//! Capture, reversal and refund over RADIUS accounting (DESIGN.md §1): an
//! Accounting-Request with Eapay-Settlement-Action and Eapay-Transaction-Id.
//!
//! The Accounting-Response is the acknowledgement the terminal's
//! store-and-forward queue waits for, so it is sent only once the change is
//! durable, and also for a refused action (with Eapay-Decline-Code): a
//! terminal must not retry for ever what will never succeed.

use aaa_proto::dictionary::eapay::{self, DeclineCode, SettlementAction};
use aaa_proto::payment::MAX_ID_LEN;
use aaa_proto::radius::{Packet, VendorAttribute};
use tracing::info;

use super::clients::Client;
use crate::error::ServerError;
use crate::ledger::{Decline, Ledger, Settlement, SettlementOutcome};

/// The settlement an Accounting-Request asks for; `None` if it asks for
/// none (plain session accounting), `Err` if it asks for one badly.
pub fn settlement_of(request: &Packet, vendor_id: u32, client: &Client) -> Option<Result<Settlement, Decline>> {
    let attrs = match request.vendor_attributes(vendor_id) {
        Ok(attrs) => attrs,
        Err(_) => return Some(Err(invalid("malformed Vendor-Specific"))),
    };
    match single(&attrs, eapay::SETTLEMENT_ACTION, "Eapay-Settlement-Action") {
        Ok(None) => None,
        Ok(Some(action)) => Some(parse(action, &attrs, client)),
        Err(d) => Some(Err(d)),
    }
}

/// The value of an attribute that may appear at most once.
fn single<'a>(attrs: &[VendorAttribute<'a>], kind: u8, name: &str) -> Result<Option<&'a [u8]>, Decline> {
    let mut values = attrs.iter().filter(|a| a.vendor_type == kind).map(|a| a.value);
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

fn parse(action: &[u8], attrs: &[VendorAttribute<'_>], client: &Client) -> Result<Settlement, Decline> {
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
        None => match client.merchants.as_slice() {
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
    Ok(Settlement {
        client: client.name.clone(),
        merchant_id,
        transaction_id,
        action,
        amount,
        now_ms: crate::payment::now_ms(),
    })
}

/// Applies a settlement; `Some(decline)` if the ledger refused it.
pub async fn settle<L: Ledger>(
    ledger: &L,
    client: &Client,
    settlement: Settlement,
) -> Result<Option<Decline>, ServerError> {
    let (merchant, txn, action) =
        (settlement.merchant_id.clone(), settlement.transaction_id.clone(), settlement.action.name());
    let outcome = ledger.settle(settlement).await?;
    info!(client = %client.name, merchant, transaction = txn, action, outcome = ?outcome, "settlement");
    Ok(match outcome {
        SettlementOutcome::Refused(decline) => Some(decline),
        SettlementOutcome::Done(_) | SettlementOutcome::AlreadyDone(_) | SettlementOutcome::Tombstoned => None,
    })
}

fn invalid(reason: &str) -> Decline {
    Decline { code: DeclineCode::InvalidTransaction, reason: reason.to_string() }
}
