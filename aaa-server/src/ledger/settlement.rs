//! Capture, reversal and refund (contract "Settlement rules"), inside the
//! caller's transaction. A reversal for a transaction the ledger has never
//! seen records a tombstone, so a late original is declined, never approved
//! (ISO 8583 timeout reversal).

use aaa_proto::dictionary::eapay::{CardConfirmation, DeclineCode, SettlementAction};

use super::audit;
use super::authorizations::find;
use super::cards;
use super::db::to_i64;
use super::model::{AuthorizationRecord, AuthorizationStatus, Decline, Settlement, SettlementOutcome, TxnKey};
use super::sql::{fetch_one, SqlConn, Value};
use crate::error::ServerError;

/// What the rules say for an authorization in `status` (tombstones are
/// `Reversed`), before the amount check.
fn rule(status: AuthorizationStatus, tombstone: bool, action: SettlementAction) -> Rule {
    use AuthorizationStatus::*;
    use SettlementAction::*;
    match (status, action) {
        (Reversed, Reverse) | (Declined, Reverse) | (Captured, Capture) | (Refunded, Refund) => Rule::AlreadyDone,
        _ if tombstone => Rule::Refuse,
        (Approved, Capture) => Rule::Change { to: Captured, restore: false },
        (Approved, Reverse) => Rule::Change { to: Reversed, restore: true },
        (Captured, Refund) => Rule::Change { to: Refunded, restore: true },
        _ => Rule::Refuse,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Rule {
    AlreadyDone,
    Refuse,
    /// New status; whether the amount goes back to the card's available balance.
    Change {
        to: AuthorizationStatus,
        restore: bool,
    },
}

pub async fn settle<C: SqlConn + ?Sized>(conn: &mut C, s: &Settlement) -> Result<SettlementOutcome, ServerError> {
    let now = to_i64(s.now_ms, "time")?;
    let action = s.action.name();
    let line = |event, authorization_id, card_id, detail| audit::Line {
        at_ms: now,
        actor: &s.client,
        event,
        authorization_id,
        card_id,
        merchant_id: Some(&s.merchant_id),
        transaction_id: Some(&s.transaction_id),
        detail,
    };
    let refuse = |code, why: String| SettlementOutcome::Refused(Decline::new(code, why));

    if !super::merchants::may_act(conn, &s.client, &s.merchant_id).await? {
        let why = format!("client {} may not act for merchant {}", s.client, s.merchant_id);
        audit::append(conn, line("settlement refused", None, None, format!("{action}: {why}"))).await?;
        return Ok(refuse(DeclineCode::NotPermitted, why));
    }

    let Some(auth) = find(conn, &TxnKey::merchant(&s.merchant_id, &s.transaction_id)).await? else {
        if s.action != SettlementAction::Reverse {
            let why = "unknown transaction".to_string();
            audit::append(conn, line("settlement refused", None, None, format!("{action}: {why}"))).await?;
            return Ok(refuse(DeclineCode::InvalidTransaction, why));
        }
        let id = insert_tombstone(conn, s, now).await?;
        let detail =
            format!("reversal before the authorization; amount={}", s.amount.map_or("-".into(), |a| a.to_string()));
        audit::append(conn, line("tombstone recorded", Some(id), None, detail)).await?;
        return Ok(SettlementOutcome::Tombstoned);
    };

    let card = auth.card_id.as_deref();
    let rule = rule(auth.status, auth.tombstone, s.action);
    let amount_differs = s.amount.is_some_and(|a| a != auth.amount);
    if amount_differs && !auth.tombstone && auth.status != AuthorizationStatus::Declined {
        let why = format!("amount {} differs from the authorized {}", s.amount.unwrap_or_default(), auth.amount);
        audit::append(conn, line("settlement refused", Some(auth.id), card, format!("{action}: {why}"))).await?;
        return Ok(refuse(DeclineCode::InvalidAmount, why));
    }
    match rule {
        Rule::AlreadyDone => {
            let detail = format!("{action}: already {}", auth.status.name());
            audit::append(conn, line("settlement repeated", Some(auth.id), card, detail)).await?;
            Ok(SettlementOutcome::AlreadyDone(auth.status))
        }
        Rule::Refuse => {
            let why = format!("cannot {} a {} authorization", action.to_lowercase(), state_name(&auth));
            audit::append(conn, line("settlement refused", Some(auth.id), card, format!("{action}: {why}"))).await?;
            Ok(refuse(DeclineCode::InvalidTransaction, why))
        }
        Rule::Change { to, restore } => {
            if restore {
                let card_id =
                    card.ok_or_else(|| ServerError::Ledger(format!("authorization {} has no card", auth.id)))?;
                cards::snapshot(conn, card_id).await?;
                cards::adjust_available(conn, card_id, to_i64(auth.amount, "amount")?).await?;
            }
            // The status guard makes a concurrent settlement by another server
            // instance (PostgreSQL) fail loudly instead of applying twice.
            let done = conn
                .execute(
                    "UPDATE authorizations SET status = $1, updated_at_ms = $2 WHERE id = $3 AND status = $4",
                    &[to.name().into(), now.into(), auth.id.into(), auth.status.name().into()],
                )
                .await?;
            if done != 1 {
                return Err(ServerError::Ledger(format!("authorization {} changed concurrently", auth.id)));
            }
            let detail = format!(
                "{} -> {}; amount={}{}",
                auth.status.name(),
                to.name(),
                auth.amount,
                if restore { " restored to available" } else { "" }
            );
            audit::append(conn, line(event_of(to), Some(auth.id), card, detail)).await?;
            Ok(SettlementOutcome::Done(to))
        }
    }
}

fn state_name(auth: &AuthorizationRecord) -> &'static str {
    if auth.tombstone {
        "tombstoned"
    } else {
        auth.status.name()
    }
}

fn event_of(status: AuthorizationStatus) -> &'static str {
    match status {
        AuthorizationStatus::Captured => "authorization captured",
        AuthorizationStatus::Reversed => "authorization reversed",
        AuthorizationStatus::Refunded => "authorization refunded",
        AuthorizationStatus::Approved | AuthorizationStatus::Declined => "authorization changed",
    }
}

/// A reversed row with no card and no details: it only holds the
/// (merchant, transaction id) so the original, if it ever arrives, is declined.
async fn insert_tombstone<C: SqlConn + ?Sized>(conn: &mut C, s: &Settlement, now: i64) -> Result<i64, ServerError> {
    const SQL: &str =
        "INSERT INTO authorizations (merchant_id, transaction_id, card_id, amount, currency, installments,
             terminal_nonce, terminal_time_ms, details, status, method, confirmation, tombstone, client,
             created_at_ms, updated_at_ms)
         VALUES ($1, $2, NULL, $3, 0, 0, $4, 0, $5, 'reversed', '', $6, 1, $7, $8, $9)
         RETURNING id";
    let params = [
        s.merchant_id.as_str().into(),
        s.transaction_id.as_str().into(),
        super::db::wire_to_i64(s.amount.unwrap_or(0)).into(),
        Value::Blob(Some(&[])),
        Value::Blob(Some(&[])),
        i64::from(CardConfirmation::NotConfirmed.value()).into(),
        s.client.as_str().into(),
        now.into(),
        now.into(),
    ];
    fetch_one(conn, SQL, &params, |r| r.int_required(0)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthorizationStatus::*;
    use SettlementAction::*;

    #[test]
    fn the_contract_table() {
        let change = |to, restore| Rule::Change { to, restore };
        assert_eq!(rule(Approved, false, Capture), change(Captured, false));
        assert_eq!(rule(Approved, false, Reverse), change(Reversed, true));
        assert_eq!(rule(Approved, false, Refund), Rule::Refuse);
        assert_eq!(rule(Captured, false, Capture), Rule::AlreadyDone);
        assert_eq!(rule(Captured, false, Refund), change(Refunded, true));
        assert_eq!(rule(Captured, false, Reverse), Rule::Refuse);
        assert_eq!(rule(Reversed, false, Reverse), Rule::AlreadyDone);
        assert_eq!(rule(Reversed, false, Capture), Rule::Refuse);
        assert_eq!(rule(Reversed, false, Refund), Rule::Refuse);
        assert_eq!(rule(Refunded, false, Refund), Rule::AlreadyDone);
        assert_eq!(rule(Refunded, false, Capture), Rule::Refuse);
        assert_eq!(rule(Refunded, false, Reverse), Rule::Refuse);
        assert_eq!(rule(Declined, false, Reverse), Rule::AlreadyDone);
        assert_eq!(rule(Declined, false, Capture), Rule::Refuse);
        assert_eq!(rule(Declined, false, Refund), Rule::Refuse);
        assert_eq!(rule(Reversed, true, Reverse), Rule::AlreadyDone);
        assert_eq!(rule(Reversed, true, Capture), Rule::Refuse);
        assert_eq!(rule(Reversed, true, Refund), Rule::Refuse);
    }
}
