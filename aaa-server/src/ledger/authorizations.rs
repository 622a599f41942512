//! Authorizations: the decision transaction (permission, duplicates, the
//! checks of `decision.rs`, recording) and reading rows back.

use aaa_proto::dictionary::eapay::{CardConfirmation, DeclineCode};
use aaa_proto::payment::PaymentDetails;
use aaa_proto::receipt::{IssuerSigningKey, ReceiptBody};
use rand::rngs::OsRng;
use rand::Rng;
use sqlx::AnyConnection;

use super::audit;
use super::cards;
use super::db::{lock_nonce, to_i64, to_u64, wire_from_i64, wire_to_i64};
use super::decision::{self, History};
use super::model::{
    Attempt, AuthorizationRecord, AuthorizationStatus, Decision, Decline, Outcome, PaymentPolicy, TxnFilter, TxnKey,
};
use super::sql::{fetch_one, Row, SqlConn, Value};
use crate::error::ServerError;

/// What the decision transaction needs besides the database.
pub struct Context<'a> {
    pub policy: &'a PaymentPolicy,
    pub signer: Option<&'a IssuerSigningKey>,
}

/// The contract's decision order, inside the caller's transaction.
pub async fn authorize<C: SqlConn + ?Sized>(
    ctx: &Context<'_>,
    conn: &mut C,
    attempt: &Attempt,
    draft: Option<ApprovalDraft>,
) -> Result<Decision, ServerError> {
    let d = &attempt.details;
    let now = to_i64(attempt.now_ms, "time")?;
    let line = |event, authorization_id, detail| audit::Line {
        at_ms: now,
        actor: &attempt.client,
        event,
        authorization_id,
        card_id: attempt.card_id.as_deref(),
        merchant_id: Some(&d.merchant_id),
        transaction_id: Some(&d.transaction_id),
        detail,
    };
    let unrecorded = |decline: Decline, authorization_id, repeated| Decision {
        authorization_id,
        outcome: Outcome::Declined(decline),
        confirmation: attempt.confirmation,
        repeated,
    };

    // One statement for the common case (on PostgreSQL each is a round trip).
    let (may_act, known) = precheck(conn, &attempt.client, d).await?;

    // 1. Nothing is recorded for a client acting for someone else's merchant:
    // it must not burn that merchant's transaction ids.
    if !may_act {
        let why = format!("client {} may not act for merchant {}", attempt.client, d.merchant_id);
        audit::append(conn, line("authorization not permitted", None, why.clone())).await?;
        return Ok(unrecorded(Decline::new(DeclineCode::NotPermitted, why), None, false));
    }

    // 2. The transaction id is known already.
    let canonical = d.canonical();
    let earlier = match known {
        true => find(conn, &TxnKey::merchant(&d.merchant_id, &d.transaction_id)).await?,
        false => None,
    };
    if let Some(earlier) = earlier {
        if earlier.tombstone {
            let why = "reversed before it arrived";
            audit::append(conn, line("late original after reversal", Some(earlier.id), why.into())).await?;
            return Ok(unrecorded(Decline::new(DeclineCode::InvalidTransaction, why), None, false));
        }
        // Only the card the original was recorded against gets its answer again;
        // an original without a card (failed authentication) was a decline for anyone.
        let same_card = earlier.card_id.is_none() || earlier.card_id == attempt.card_id;
        if earlier.details != canonical || !same_card {
            let why =
                if same_card { "same transaction id, different details" } else { "same transaction id, other card" };
            audit::append(conn, line("duplicate transaction", Some(earlier.id), why.into())).await?;
            return Ok(unrecorded(Decline::new(DeclineCode::DuplicateTransaction, why), None, false));
        }
        return repeat(conn, attempt, earlier, now).await;
    }

    // 3. Everything from here is recorded.
    let card = match &attempt.card_id {
        Some(id) => cards::snapshot(conn, id).await?,
        None => None,
    };
    lock_nonce(conn, &d.merchant_id, &d.terminal_nonce).await?;
    let velocity_card = match (&attempt.card_id, &card) {
        // Approvals are only counted when a limit applies.
        (Some(id), Some(_)) if ctx.policy.velocity_max > 0 => Some(id.as_str()),
        _ => None,
    };
    let history = history(
        conn,
        d,
        attempt.now_ms.saturating_sub(decision::nonce_memory_ms(ctx.policy)),
        velocity_card,
        attempt.now_ms.saturating_sub(ctx.policy.velocity_window_ms),
    )
    .await?;
    // An unknown card id cannot be stored (foreign key); the audit line keeps what was claimed.
    let known_card = card.as_ref().and(attempt.card_id.as_deref());
    let verdict =
        decision::decide(d, attempt.pre_declined.as_ref(), card.as_ref(), &history, ctx.policy, attempt.now_ms);
    let row = NewRow { attempt, details: &canonical, card_id: known_card, now };
    match verdict {
        Err(decline) => {
            let id = row.insert_declined(conn, &decline).await?;
            let detail = format!(
                "code={} reason={:?} amount={} currency={} card={}",
                decline.code.value(),
                decline.reason,
                d.amount,
                d.currency,
                attempt.card_id.as_deref().unwrap_or("-")
            );
            audit::append(conn, line("authorization declined", Some(id), detail)).await?;
            Ok(Decision {
                authorization_id: Some(id),
                outcome: Outcome::Declined(decline),
                confirmation: attempt.confirmation,
                repeated: false,
            })
        }
        Ok(()) => {
            // decide() approved, so the card is known.
            let card_id = known_card.ok_or_else(|| ServerError::Ledger("approval without a card".into()))?;
            let amount = to_i64(d.amount, "amount")?;
            cards::adjust_available(conn, card_id, -amount).await?;
            // The code is checked unused by the insert itself; a collision
            // (one in ~2e9) draws another, and the receipt is signed again.
            let mut inserted = None;
            let mut drafted = draft.filter(|x| x.card_id == card_id);
            for _ in 0..8 {
                let next = match drafted.take() {
                    Some(x) => x,
                    None => ApprovalDraft::new(ctx.signer, attempt)?,
                };
                if let Some(id) = row.insert_approved(conn, &next.code, &next.receipt).await? {
                    inserted = Some((id, next.code, next.receipt));
                    break;
                }
            }
            let (id, approval_code, receipt) =
                inserted.ok_or_else(|| ServerError::Ledger("no unused approval code found".into()))?;
            let detail = format!("code={approval_code} amount={} currency={} card={card_id}", d.amount, d.currency);
            audit::append(conn, line("authorization approved", Some(id), detail)).await?;
            Ok(Decision {
                authorization_id: Some(id),
                outcome: Outcome::Approved { approval_code, approved_amount: d.amount, receipt },
                confirmation: attempt.confirmation,
                repeated: false,
            })
        }
    }
}

/// An approval code and its signed receipt, drawn before the decision so
/// that the Ed25519 signature is made by the caller, outside the ledger
/// writer's serial section; used if the attempt is approved for this card.
#[derive(Debug)]
pub struct ApprovalDraft {
    card_id: String,
    code: String,
    receipt: Vec<u8>,
}

impl ApprovalDraft {
    /// None if the attempt cannot be approved anyway (no card, or declined
    /// before the ledger).
    pub fn for_attempt(signer: Option<&IssuerSigningKey>, attempt: &Attempt) -> Result<Option<Self>, ServerError> {
        if attempt.card_id.is_none() || attempt.pre_declined.is_some() {
            return Ok(None);
        }
        Self::new(signer, attempt).map(Some)
    }

    fn new(signer: Option<&IssuerSigningKey>, attempt: &Attempt) -> Result<Self, ServerError> {
        let d = &attempt.details;
        let card_id = attempt.card_id.clone().ok_or_else(|| ServerError::Ledger("approval without a card".into()))?;
        let code = random_approval_code();
        let receipt = match signer {
            Some(signer) => signer
                .sign(&ReceiptBody {
                    approval_code: code.clone(),
                    transaction_id: d.transaction_id.clone(),
                    merchant_id: d.merchant_id.clone(),
                    card_id: card_id.clone(),
                    amount: d.amount,
                    // Only an ISO 4217 code gets approved, and all of them fit u16.
                    currency: u16::try_from(d.currency)
                        .map_err(|_| ServerError::Ledger(format!("currency {} out of range", d.currency)))?,
                    authorized_at_ms: attempt.now_ms,
                })
                .map_err(|e| ServerError::Ledger(format!("signing the receipt: {e}")))?,
            None => Vec::new(),
        };
        Ok(Self { card_id, code, receipt })
    }
}

/// The same request again: its original answer, never a second charge.
/// A reversed authorization answers 12 like a tombstone (the terminal already
/// cancelled it), and a retry whose card failed this time gets its own
/// decline rather than the stored approval.
async fn repeat<C: SqlConn + ?Sized>(
    conn: &mut C,
    attempt: &Attempt,
    earlier: AuthorizationRecord,
    now: i64,
) -> Result<Decision, ServerError> {
    let d = &attempt.details;
    let (event, outcome, repeated) = match (&earlier.status, &earlier.approval_code, &attempt.pre_declined) {
        (AuthorizationStatus::Declined, _, _) => {
            let code = earlier.decline_code.and_then(DeclineCode::from_value).unwrap_or(DeclineCode::DoNotHonor);
            let decline = Decline::new(code, earlier.decline_reason.clone().unwrap_or_default());
            ("repeated request", Outcome::Declined(decline), true)
        }
        (_, _, Some(pre)) => ("repeated request refused", Outcome::Declined(pre.clone()), false),
        (AuthorizationStatus::Reversed, _, _) => (
            "repeated request",
            Outcome::Declined(Decline::new(DeclineCode::InvalidTransaction, "authorization was reversed")),
            true,
        ),
        (_, Some(code), _) => (
            "repeated request",
            Outcome::Approved {
                approval_code: code.clone(),
                approved_amount: earlier.amount,
                receipt: earlier.receipt.clone().unwrap_or_default(),
            },
            true,
        ),
        (_, None, _) => return Err(ServerError::Ledger(format!("authorization {} has no approval code", earlier.id))),
    };
    let detail = match &outcome {
        Outcome::Approved { approval_code, .. } => format!("status={} code={approval_code}", earlier.status.name()),
        Outcome::Declined(decline) => format!("status={} decline={}", earlier.status.name(), decline.code.value()),
    };
    let line = audit::Line {
        at_ms: now,
        actor: &attempt.client,
        event,
        authorization_id: Some(earlier.id),
        card_id: attempt.card_id.as_deref(),
        merchant_id: Some(&d.merchant_id),
        transaction_id: Some(&d.transaction_id),
        detail,
    };
    audit::append(conn, line).await?;
    let confirmation = if repeated { earlier.confirmation } else { attempt.confirmation };
    Ok(Decision { authorization_id: Some(earlier.id), outcome, confirmation, repeated })
}

/// The columns every insert fills from the attempt.
struct NewRow<'a> {
    attempt: &'a Attempt,
    details: &'a [u8],
    card_id: Option<&'a str>,
    now: i64,
}

/// No row comes back when the approval code is taken. (Not `INSERT ...
/// SELECT ... WHERE NOT EXISTS`: SQLite copies such a SELECT into a
/// temporary b-tree first, on every payment, because it reads the table it
/// inserts into.)
const INSERT: &str = "INSERT INTO authorizations (merchant_id, transaction_id, card_id, amount, currency, installments,
        terminal_nonce, terminal_time_ms, details, status, approval_code, decline_code, decline_reason, method,
        confirmation, evidence_kind, evidence, receipt, tombstone, client, created_at_ms, updated_at_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0, $19, $20, $21)
     ON CONFLICT (approval_code) DO NOTHING
     RETURNING id";

impl NewRow<'_> {
    async fn insert_declined<C: SqlConn + ?Sized>(&self, conn: &mut C, decline: &Decline) -> Result<i64, ServerError> {
        self.insert(conn, AuthorizationStatus::Declined, None, Some(decline), None)
            .await?
            .ok_or_else(|| ServerError::Ledger("declined authorization not inserted".into()))
    }

    /// `None` if `code` is already used by another authorization.
    async fn insert_approved<C: SqlConn + ?Sized>(
        &self,
        conn: &mut C,
        code: &str,
        receipt: &[u8],
    ) -> Result<Option<i64>, ServerError> {
        let receipt = (!receipt.is_empty()).then_some(receipt);
        self.insert(conn, AuthorizationStatus::Approved, Some(code), None, receipt).await
    }

    async fn insert<C: SqlConn + ?Sized>(
        &self,
        conn: &mut C,
        status: AuthorizationStatus,
        approval_code: Option<&str>,
        decline: Option<&Decline>,
        receipt: Option<&[u8]>,
    ) -> Result<Option<i64>, ServerError> {
        let d: &PaymentDetails = &self.attempt.details;
        let evidence = self.attempt.evidence.as_ref();
        let params: [Value; 21] = [
            d.merchant_id.as_str().into(),
            d.transaction_id.as_str().into(),
            self.card_id.into(),
            wire_to_i64(d.amount).into(),
            i64::from(d.currency).into(),
            i64::from(d.installments).into(),
            d.terminal_nonce.as_slice().into(),
            wire_to_i64(d.terminal_time_ms).into(),
            self.details.into(),
            status.name().into(),
            approval_code.into(),
            decline.map(|x| i64::from(x.code.value())).into(),
            decline.map(|x| x.reason.as_str()).into(),
            self.attempt.method.into(),
            i64::from(self.attempt.confirmation.value()).into(),
            evidence.map(|e| e.kind).into(),
            evidence.map(|e| e.bytes.as_slice()).into(),
            receipt.into(),
            self.attempt.client.as_str().into(),
            self.now.into(),
            self.now.into(),
        ];
        conn.fetch_optional(INSERT, &params, |r| r.int_required(0)).await
    }
}

/// Whether the client may act for the merchant, and whether the
/// transaction id is known already, in one query.
async fn precheck<C: SqlConn + ?Sized>(
    conn: &mut C,
    client: &str,
    d: &PaymentDetails,
) -> Result<(bool, bool), ServerError> {
    const SQL: &str = "SELECT
           (SELECT CAST(COUNT(*) AS BIGINT) FROM merchant_clients c JOIN merchants m ON m.merchant_id = c.merchant_id
             WHERE c.merchant_id = $1 AND c.client_name = $2 AND m.status = 'active'),
           (SELECT CAST(COUNT(*) AS BIGINT) FROM authorizations WHERE merchant_id = $1 AND transaction_id = $3)";
    let params = [d.merchant_id.as_str().into(), client.into(), d.transaction_id.as_str().into()];
    fetch_one(conn, SQL, &params, |r| Ok((r.int_required(0)? > 0, r.int_required(1)? > 0))).await
}

/// Whether the merchant used the terminal nonce since `nonce_since_ms`, and
/// the approvals of `velocity_card` since `velocity_since_ms` (a later
/// reversal or refund does not take an attempt back out of the count), in
/// one statement. Both are index range scans bounded by their windows
/// (`authorizations_nonce`, `authorizations_velocity`): their cost does not
/// grow with the ledger.
async fn history<C: SqlConn + ?Sized>(
    conn: &mut C,
    d: &PaymentDetails,
    nonce_since_ms: u64,
    velocity_card: Option<&str>,
    velocity_since_ms: u64,
) -> Result<History, ServerError> {
    const SQL: &str = "SELECT
           (SELECT CAST(COUNT(*) AS BIGINT) FROM authorizations
             WHERE merchant_id = $1 AND terminal_nonce = $2 AND created_at_ms >= $3),
           (SELECT CAST(COUNT(*) AS BIGINT) FROM authorizations
             WHERE card_id = $4 AND status IN ('approved', 'captured', 'reversed', 'refunded') AND created_at_ms >= $5)";
    let params = [
        d.merchant_id.as_str().into(),
        d.terminal_nonce.as_slice().into(),
        to_i64(nonce_since_ms, "time")?.into(),
        velocity_card.into(),
        to_i64(velocity_since_ms, "time")?.into(),
    ];
    let (nonce_seen, approvals) =
        fetch_one(conn, SQL, &params, |r| Ok((r.int_required(0)?, r.int_required(1)?))).await?;
    Ok(History { nonce_seen: nonce_seen > 0, recent_approvals: to_u64(approvals, "count")? })
}

const CODE_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Six characters A-Z0-9 from the OS RNG.
fn random_approval_code() -> String {
    (0..6).map(|_| char::from(CODE_ALPHABET[OsRng.gen_range(0..CODE_ALPHABET.len())])).collect()
}

/// The columns [`record`] reads, in its order.
macro_rules! columns {
    () => {
        "id, merchant_id, transaction_id, card_id, amount, currency, installments, terminal_nonce,
    terminal_time_ms, details, status, approval_code, decline_code, decline_reason, method, confirmation,
    evidence_kind, evidence, receipt, tombstone, client, created_at_ms, updated_at_ms"
    };
}
const COLUMNS: &str = columns!();
const BY_ID: &str = concat!("SELECT ", columns!(), " FROM authorizations WHERE id = $1");
const BY_TRANSACTION: &str =
    concat!("SELECT ", columns!(), " FROM authorizations WHERE merchant_id = $1 AND transaction_id = $2");

impl TxnKey {
    pub fn merchant(merchant_id: &str, transaction_id: &str) -> Self {
        Self::Merchant { merchant_id: merchant_id.to_string(), transaction_id: transaction_id.to_string() }
    }
}

pub async fn find<C: SqlConn + ?Sized>(conn: &mut C, key: &TxnKey) -> Result<Option<AuthorizationRecord>, ServerError> {
    match key {
        TxnKey::Id(id) => conn.fetch_optional(BY_ID, &[(*id).into()], record).await,
        TxnKey::Merchant { merchant_id, transaction_id } => {
            conn.fetch_optional(BY_TRANSACTION, &[merchant_id.as_str().into(), transaction_id.as_str().into()], record)
                .await
        }
    }
}

/// Newest first.
pub async fn list(conn: &mut AnyConnection, filter: &TxnFilter) -> Result<Vec<AuthorizationRecord>, ServerError> {
    let mut sql = format!("SELECT {COLUMNS} FROM authorizations");
    let mut conditions = Vec::new();
    if filter.merchant_id.is_some() {
        conditions.push(format!("merchant_id = ${}", conditions.len() + 1));
    }
    if filter.card_id.is_some() {
        conditions.push(format!("card_id = ${}", conditions.len() + 1));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", conditions.len() + 1));
    let mut q = sqlx::query(&sql);
    if let Some(m) = &filter.merchant_id {
        q = q.bind(m.as_str());
    }
    if let Some(c) = &filter.card_id {
        q = q.bind(c.as_str());
    }
    let limit = if filter.limit == 0 { i64::MAX } else { i64::from(filter.limit) };
    let rows = q.bind(limit).fetch_all(conn).await?;
    rows.iter().map(|row| record(row)).collect()
}

fn record(row: &dyn Row) -> Result<AuthorizationRecord, ServerError> {
    let id = row.int_required(0)?;
    let bad = |what: &str| ServerError::Ledger(format!("authorization {id}: stored {what} is invalid"));
    let small = |column: usize, what: &str| -> Result<u32, ServerError> {
        u32::try_from(row.int_required(column)?).map_err(|_| bad(what))
    };
    let status = row.text_required(10)?;
    Ok(AuthorizationRecord {
        id,
        merchant_id: row.text_required(1)?,
        transaction_id: row.text_required(2)?,
        card_id: row.text(3)?,
        amount: wire_from_i64(row.int_required(4)?),
        currency: small(5, "currency")?,
        installments: small(6, "installments")?,
        terminal_nonce: row.blob_required(7)?,
        terminal_time_ms: wire_from_i64(row.int_required(8)?),
        details: row.blob_required(9)?,
        status: AuthorizationStatus::from_name(&status).ok_or_else(|| bad("status"))?,
        approval_code: row.text(11)?,
        decline_code: row.int(12)?.map(|c| u32::try_from(c).map_err(|_| bad("decline code"))).transpose()?,
        decline_reason: row.text(13)?,
        method: row.text_required(14)?,
        confirmation: CardConfirmation::from_value(small(15, "confirmation")?).ok_or_else(|| bad("confirmation"))?,
        evidence_kind: row.text(16)?,
        evidence: row.blob(17)?,
        receipt: row.blob(18)?,
        tombstone: row.int_required(19)? != 0,
        client: row.text_required(20)?,
        created_at_ms: to_u64(row.int_required(21)?, "creation time")?,
        updated_at_ms: to_u64(row.int_required(22)?, "update time")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::db::Db;
    use crate::ledger::schema;
    use sqlx::Connection;

    fn attempt(txn: &str) -> Attempt {
        Attempt {
            client: "term1".into(),
            details: PaymentDetails {
                transaction_id: txn.into(),
                merchant_id: "M1".into(),
                amount: 100,
                currency: 840,
                installments: 0,
                terminal_nonce: rand::random(),
                terminal_time_ms: 1,
            },
            card_id: None,
            method: "aka",
            confirmation: CardConfirmation::Confirmed,
            evidence: None,
            pre_declined: None,
            now_ms: 1,
        }
    }

    /// `INSERT` finds a taken approval code itself: no row, no error, so
    /// that the approval draws another code.
    async fn a_taken_code_inserts_nothing(url: &str) {
        let db = Db::connect(url).await.unwrap();
        schema::migrate(&db, 1).await.unwrap();
        sqlx::query("INSERT INTO merchants (merchant_id, name, status, created_at) VALUES ('M1', 'Shop', 'active', 1)")
            .execute(&db.pool)
            .await
            .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        let (first, second, third) = (attempt("T1"), attempt("T2"), attempt("T3"));
        let row = |attempt| NewRow { attempt, details: b"details", card_id: None, now: 1 };
        let taken = row(&first).insert_approved(&mut tx, "ABC123", b"receipt").await.unwrap();
        assert!(taken.is_some(), "a fresh code is inserted");
        let again = row(&second).insert_approved(&mut tx, "ABC123", b"receipt").await.unwrap();
        assert_eq!(again, None, "the same code again");
        let other = row(&third).insert_approved(&mut tx, "ABC124", b"receipt").await.unwrap();
        assert!(other.is_some() && other != taken, "another code");
        // A taken transaction id is still an error (the repeat check comes first).
        assert!(row(&first).insert_approved(&mut tx, "ABC125", b"receipt").await.is_err());
        drop(tx);
        db.pool.close().await;
    }

    #[tokio::test]
    async fn a_taken_approval_code_inserts_nothing_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        a_taken_code_inserts_nothing(&format!("sqlite://{}", dir.path().join("ledger.db").display())).await;
    }

    #[tokio::test]
    async fn a_taken_approval_code_inserts_nothing_on_postgres() {
        sqlx::any::install_default_drivers();
        let admin = match std::env::var("EAPAY_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("EAPAY_REQUIRE_INTEROP").as_deref() == Ok("1") => {
                panic!("EAPAY_REQUIRE_INTEROP=1 but EAPAY_TEST_POSTGRES_URL is not set")
            }
            _ => return eprintln!("SKIP postgres: EAPAY_TEST_POSTGRES_URL not set"),
        };
        let name = format!("eapay_u_{}", hex::encode(rand::random::<[u8; 8]>()));
        let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let base = admin.split('?').next().unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        a_taken_code_inserts_nothing(&format!("{server}/{name}")).await;
        sqlx::query(&format!("DROP DATABASE {name}")).execute(&mut conn).await.unwrap();
    }
}
