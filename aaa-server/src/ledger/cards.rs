//! Cards: issuance, listing, blocking, the balance, and the AKA credential
//! with its SQN. K and OPc are stored sealed under the KEK with the card id as
//! associated data; the PAN never reaches this module, only its PAN-token.

use eap_methods::crypto::milenage::Milenage;
use eap_methods::sim_aka::sqn::Sqn;
use eap_methods::Answer;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::audit;
use super::db::{lock_card, to_i64, to_u64, Backend};
use super::decision::CardSnapshot;
use super::model::{
    confirmation_from_name, confirmation_name, method_from_name, CardProfile, CardStatus, CardSummary, NewCard,
    RegisteredKey,
};
use super::sql::{self, SqlConn};
use crate::auc::SubscriberKeys;
use crate::cards::CardMethod;
use crate::error::ServerError;
use crate::seal::Kek;

/// A card id is the NAI user part: printable ASCII, no '@', at most 64 bytes.
pub fn is_valid_card_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() && b != b'@')
}

pub async fn issue(
    conn: &mut AnyConnection,
    kek: &Kek,
    card: &NewCard,
    actor: &str,
    now_ms: u64,
) -> Result<(), ServerError> {
    let id = card.card_id.as_str();
    if !is_valid_card_id(id) {
        return Err(ServerError::Usage(format!("card id {id:?}: 1 to 64 printable characters, no '@'")));
    }
    if aaa_proto::currency::by_numeric(u32::from(card.currency)).is_none() {
        return Err(ServerError::Usage(format!("card {id}: {} is not an ISO 4217 currency", card.currency)));
    }
    let limit = to_i64(card.credit_limit, "credit limit")?;
    let exists =
        sqlx::query("SELECT card_id FROM cards WHERE card_id = $1").bind(id).fetch_optional(&mut *conn).await?;
    if exists.is_some() {
        return Err(ServerError::Usage(format!("card {id} already exists")));
    }
    let key = registered_key(conn, card).await?;
    let (sealed_k, sealed_opc, amf, sqn_he) = match &card.aka {
        Some(aka) => (
            Some(kek.seal(id, &aka.k)?),
            Some(kek.seal(id, &aka.opc)?),
            Some(hex::encode(aka.amf)),
            to_i64(aka.sqn_he, "SQN")?,
        ),
        None => (None, None, None, 0),
    };
    let pin_verifier = card.pin.as_deref().map(|pin| kek.pin_verifier(id, pin).to_vec());
    sqlx::query(
        "INSERT INTO cards (card_id, method, status, confirmation, currency, credit_limit, available, expires_at,
             issued_at, pan_token, v_card, sealed_k, sealed_opc, amf, sqn_he, pin_verifier, pin_tries,
             card_key, card_key_id)
         VALUES ($1, $2, 'active', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, $16, $17)",
    )
    .bind(id)
    .bind(card.method.name())
    .bind(confirmation_name(card.confirmation))
    .bind(i64::from(card.currency))
    .bind(limit)
    .bind(limit)
    .bind(to_i64(card.expires_at, "expiry")?)
    .bind(to_i64(now_ms / 1000, "issue time")?)
    .bind(card.pan_token.map(|t| t.to_vec()))
    .bind(key.as_ref().map(|k| k.v_card.to_vec()))
    .bind(sealed_k)
    .bind(sealed_opc)
    .bind(amf)
    .bind(sqn_he)
    .bind(pin_verifier)
    .bind(card.card_key.as_deref())
    .bind(key.as_ref().map(|k| k.id.to_vec()))
    .execute(&mut *conn)
    .await?;
    let key_detail = key.map(|k| format!(" card_key_id={}", hex::encode(k.id))).unwrap_or_default();
    let detail = format!(
        "method={} confirmation={} currency={} credit_limit={} expires_at={} pan_token={} pin={}{key_detail}",
        card.method.name(),
        confirmation_name(card.confirmation),
        card.currency,
        card.credit_limit,
        card.expires_at,
        if card.pan_token.is_some() { "yes" } else { "no" },
        if card.pin.is_some() { "yes" } else { "no" },
    );
    let line = audit::Line {
        at_ms: to_i64(now_ms, "time")?,
        actor,
        event: "card issued",
        card_id: Some(id),
        detail,
        ..Default::default()
    };
    audit::append(conn, line).await
}

/// What the ledger derives from a TLS card's key.
struct DerivedKey {
    /// SHA-256(SPKI): the unique look-up key.
    id: [u8; 32],
    /// SHA-256(SPKI || PAN-token).
    v_card: [u8; 32],
}

/// Checks a new card's key against its method and the keys already
/// registered (one key, one card); None for a card without a key.
async fn registered_key(conn: &mut AnyConnection, card: &NewCard) -> Result<Option<DerivedKey>, ServerError> {
    let id = card.card_id.as_str();
    let tls = matches!(card.method, CardMethod::Tls | CardMethod::Ttls);
    let (spki, pan_token) = match (tls, &card.card_key, card.pan_token) {
        (false, None, _) => return Ok(None),
        (false, Some(_), _) => {
            return Err(ServerError::Usage(format!("card {id}: only tls and ttls cards have a registered key")));
        }
        (true, Some(spki), Some(pan_token)) => (spki, pan_token),
        (true, _, _) => {
            return Err(ServerError::Usage(format!(
                "card {id}: a {} card needs a key and a PAN-token",
                card.method.name()
            )));
        }
    };
    if openssl::pkey::PKey::public_key_from_der(spki).is_err() {
        return Err(ServerError::Usage(format!("card {id}: the card key is not a DER SubjectPublicKeyInfo")));
    }
    let key_id = key_id(spki);
    let taken = sqlx::query("SELECT card_id FROM cards WHERE card_key_id = $1")
        .bind(key_id.as_slice())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = taken {
        let other: String = row.try_get(0)?;
        return Err(ServerError::Usage(format!("card {id}: its key is already registered to card {other}")));
    }
    Ok(Some(DerivedKey { id: key_id, v_card: v_card(spki, &pan_token) }))
}

/// V-Card = SHA-256(SPKI || PAN-token) (DESIGN.md §5).
pub fn v_card(spki: &[u8], pan_token: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(spki);
    h.update(pan_token);
    h.finalize().into()
}

/// The id a card key is registered under: SHA-256 of its SPKI DER.
pub fn key_id(spki: &[u8]) -> [u8; 32] {
    Sha256::digest(spki).into()
}

/// The card a client key (DER SubjectPublicKeyInfo) is registered to:
/// `CardKey` if active, `BlockedCard`, or `UnknownCard`.
pub async fn by_key(conn: &mut AnyConnection, spki: &[u8]) -> Result<Answer, ServerError> {
    let key_id = self::key_id(spki);
    let row = sqlx::query("SELECT card_id, status, card_key FROM cards WHERE card_key_id = $1")
        .bind(key_id.as_slice())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(Answer::UnknownCard) };
    let stored: Option<Vec<u8>> = row.try_get("card_key")?;
    if stored.as_deref() != Some(spki) {
        // Not reachable short of a SHA-256 collision or a hand-edited row.
        return Ok(Answer::UnknownCard);
    }
    let card_id: String = row.try_get("card_id")?;
    let status: String = row.try_get("status")?;
    match CardStatus::from_name(&status) {
        Some(CardStatus::Active) => Ok(Answer::CardKey { card_id }),
        Some(CardStatus::Blocked) => Ok(Answer::BlockedCard),
        None => Err(ServerError::Ledger(format!("card {card_id}: stored status is invalid"))),
    }
}

/// The key a card was issued with; None for a card without one (or unknown).
pub async fn key(conn: &mut AnyConnection, card_id: &str) -> Result<Option<RegisteredKey>, ServerError> {
    let row =
        sqlx::query("SELECT card_key, v_card FROM cards WHERE card_id = $1").bind(card_id).fetch_optional(conn).await?;
    let Some(row) = row else { return Ok(None) };
    let Some(spki) = row.try_get::<Option<Vec<u8>>, _>("card_key")? else { return Ok(None) };
    let v_card = match row.try_get::<Option<Vec<u8>>, _>("v_card")? {
        Some(v) => Some(
            v.try_into().map_err(|_| ServerError::Ledger(format!("card {card_id}: stored V-Card is not 32 bytes")))?,
        ),
        None => None,
    };
    Ok(Some(RegisteredKey { spki, v_card }))
}

/// Wrong PINs in a row after which a card's PIN is locked.
pub const MAX_PIN_TRIES: u32 = 3;

/// A card's PIN verifier and its count of wrong tries; None if the card is
/// unknown or has no PIN.
pub async fn pin_state(conn: &mut AnyConnection, card_id: &str) -> Result<Option<(Vec<u8>, u32)>, ServerError> {
    let row = sqlx::query("SELECT pin_verifier, pin_tries FROM cards WHERE card_id = $1")
        .bind(card_id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let Some(verifier) = row.try_get::<Option<Vec<u8>>, _>("pin_verifier")? else { return Ok(None) };
    let tries = u32::try_from(to_u64(row.try_get("pin_tries")?, "PIN tries")?).unwrap_or(u32::MAX);
    Ok(Some((verifier, tries)))
}

/// Checks `pin` and records the outcome in the caller's write transaction:
/// a wrong PIN counts (audited, and the lock when the count reaches
/// [`MAX_PIN_TRIES`]), a right one resets the count unless the card is locked.
pub async fn record_pin_try(
    conn: &mut AnyConnection,
    kek: &Kek,
    card_id: &str,
    pin: &str,
    now_ms: u64,
) -> Result<Answer, ServerError> {
    lock_card(conn, card_id).await?;
    let Some((verifier, tries)) = pin_state(conn, card_id).await? else { return Ok(Answer::UnknownCard) };
    let at_ms = to_i64(now_ms, "time")?;
    let line = |event, detail| audit::Line {
        at_ms,
        actor: "server",
        event,
        card_id: Some(card_id),
        detail,
        ..Default::default()
    };
    if tries >= MAX_PIN_TRIES {
        audit::append(conn, line("card pin refused", format!("PIN locked after {tries} wrong tries"))).await?;
        return Ok(Answer::PinLocked);
    }
    let set_tries =
        |n: u32| sqlx::query("UPDATE cards SET pin_tries = $1 WHERE card_id = $2").bind(i64::from(n)).bind(card_id);
    if kek.verify_pin(card_id, pin, &verifier) {
        if tries > 0 {
            set_tries(0).execute(&mut *conn).await?;
        }
        return Ok(Answer::PinAccepted);
    }
    let tries = tries + 1;
    set_tries(tries).execute(&mut *conn).await?;
    let tries_left = MAX_PIN_TRIES - tries;
    audit::append(conn, line("card pin rejected", format!("wrong PIN; tries_left={tries_left}"))).await?;
    if tries_left == 0 {
        audit::append(conn, line("card pin locked", format!("{tries} wrong PINs in a row"))).await?;
        return Ok(Answer::PinLocked);
    }
    Ok(Answer::PinRejected { tries_left })
}

/// Issues every card of `cards` on one connection (the caller's transaction):
/// the same checks, rows and audit lines as [`issue`] once per card, but one
/// commit for the lot, so bulk issuance costs one fsync instead of one per card.
pub async fn issue_many(
    conn: &mut AnyConnection,
    kek: &Kek,
    cards: &[NewCard],
    actor: &str,
    now_ms: u64,
) -> Result<(), ServerError> {
    for card in cards {
        issue(conn, kek, card, actor, now_ms).await?;
    }
    Ok(())
}

/// An AKA family credential opened for export to another AAA server
/// (`card export`). Debug shows no secret.
#[derive(Clone)]
pub struct AkaExport {
    pub card_id: String,
    pub method: CardMethod,
    pub k: [u8; 16],
    pub opc: [u8; 16],
    pub amf: [u8; 2],
    /// SQN_HE: at or past the SQN of the last vector the issuer generated
    /// (SQNs are reserved in blocks).
    pub sqn_he: u64,
}

impl std::fmt::Debug for AkaExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AkaExport")
            .field("card_id", &self.card_id)
            .field("method", &self.method)
            .field("amf", &self.amf)
            .field("sqn_he", &self.sqn_he)
            .finish_non_exhaustive()
    }
}

/// The AKA credentials of the active cards of `methods`, opened with the
/// KEK, ordered by card id. Blocked cards and cards without a credential are
/// left out.
pub async fn aka_exports(
    conn: &mut AnyConnection,
    kek: &Kek,
    methods: &[CardMethod],
) -> Result<Vec<AkaExport>, ServerError> {
    let rows = sqlx::query(
        "SELECT card_id, method, sealed_k, sealed_opc, amf, sqn_he FROM cards
         WHERE status = 'active' AND sealed_k IS NOT NULL AND sealed_opc IS NOT NULL AND amf IS NOT NULL
         ORDER BY card_id",
    )
    .fetch_all(conn)
    .await?;
    let mut out = Vec::new();
    for row in &rows {
        let card_id: String = row.try_get("card_id")?;
        let stored: String = row.try_get("method")?;
        let Some(method) = method_from_name(&stored).filter(|m| methods.contains(m)) else { continue };
        let sealed = SealedAka {
            sealed_k: row.try_get("sealed_k")?,
            sealed_opc: row.try_get("sealed_opc")?,
            amf: row.try_get("amf")?,
            sqn_he: to_u64(row.try_get("sqn_he")?, "SQN")?,
        };
        let (k, opc, amf) = sealed.open_raw(kek, &card_id)?;
        out.push(AkaExport { card_id, method, k, opc, amf, sqn_he: sealed.sqn_he });
    }
    Ok(out)
}

const SUMMARY: &str = "card_id, method, status, confirmation, currency, credit_limit, available, expires_at, issued_at,
     CAST(CASE WHEN pan_token IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_pan_token";

pub async fn list(conn: &mut AnyConnection) -> Result<Vec<CardSummary>, ServerError> {
    let rows = sqlx::query(&format!("SELECT {SUMMARY} FROM cards ORDER BY card_id")).fetch_all(conn).await?;
    rows.iter().map(summary).collect()
}

pub async fn get(conn: &mut AnyConnection, card_id: &str) -> Result<Option<CardSummary>, ServerError> {
    let row = sqlx::query(&format!("SELECT {SUMMARY} FROM cards WHERE card_id = $1"))
        .bind(card_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(summary).transpose()
}

fn summary(row: &AnyRow) -> Result<CardSummary, ServerError> {
    let card_id: String = row.try_get("card_id")?;
    let bad = |what: &str| ServerError::Ledger(format!("card {card_id}: stored {what} is invalid"));
    let method: String = row.try_get("method")?;
    let status: String = row.try_get("status")?;
    let confirmation: String = row.try_get("confirmation")?;
    Ok(CardSummary {
        method: method_from_name(&method).ok_or_else(|| bad("method"))?,
        status: CardStatus::from_name(&status).ok_or_else(|| bad("status"))?,
        confirmation: confirmation_from_name(&confirmation).ok_or_else(|| bad("confirmation"))?,
        currency: u16::try_from(row.try_get::<i64, _>("currency")?).map_err(|_| bad("currency"))?,
        credit_limit: to_u64(row.try_get("credit_limit")?, "credit limit")?,
        available: to_u64(row.try_get("available")?, "available balance")?,
        expires_at: to_u64(row.try_get("expires_at")?, "expiry")?,
        issued_at: to_u64(row.try_get("issued_at")?, "issue time")?,
        has_pan_token: row.try_get::<i64, _>("has_pan_token")? != 0,
        card_id,
    })
}

/// False if the card is unknown. Blocking a blocked card changes nothing but is audited.
pub async fn block(conn: &mut AnyConnection, card_id: &str, actor: &str, now_ms: u64) -> Result<bool, ServerError> {
    set_status(conn, card_id, CardStatus::Blocked, actor, now_ms).await
}

/// The card's status set by an operator (`card block` / `card unblock`),
/// with its audit line; false if there is no such card.
pub async fn set_status(
    conn: &mut AnyConnection,
    card_id: &str,
    status: CardStatus,
    actor: &str,
    now_ms: u64,
) -> Result<bool, ServerError> {
    let (name, event) = match status {
        CardStatus::Blocked => ("blocked", "card blocked"),
        CardStatus::Active => ("active", "card unblocked"),
    };
    let done = sqlx::query("UPDATE cards SET status = $1 WHERE card_id = $2")
        .bind(name)
        .bind(card_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let line =
        audit::Line { at_ms: to_i64(now_ms, "time")?, actor, event, card_id: Some(card_id), ..Default::default() };
    audit::append(conn, line).await?;
    Ok(true)
}

/// What `card unlock-pin` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinUnlock {
    /// The count of wrong PINs was set back to zero (it was this).
    Unlocked {
        wrong_tries: u32,
    },
    /// The card has no PIN (not a TTLS/PAP card).
    NoPin,
    NoCard,
}

/// Sets the card's count of wrong PINs back to zero, with an audit line:
/// the cardholder proved themselves to the issuer some other way.
pub async fn unlock_pin(
    conn: &mut AnyConnection,
    card_id: &str,
    actor: &str,
    now_ms: u64,
) -> Result<PinUnlock, ServerError> {
    lock_card(conn, card_id).await?;
    let Some((_, wrong_tries)) = pin_state(conn, card_id).await? else {
        let exists =
            sqlx::query("SELECT 1 FROM cards WHERE card_id = $1").bind(card_id).fetch_optional(&mut *conn).await?;
        return Ok(if exists.is_some() { PinUnlock::NoPin } else { PinUnlock::NoCard });
    };
    sqlx::query("UPDATE cards SET pin_tries = 0 WHERE card_id = $1").bind(card_id).execute(&mut *conn).await?;
    let line = audit::Line {
        at_ms: to_i64(now_ms, "time")?,
        actor,
        event: "card pin unlocked",
        card_id: Some(card_id),
        detail: format!("wrong_tries={wrong_tries}"),
        ..Default::default()
    };
    audit::append(conn, line).await?;
    Ok(PinUnlock::Unlocked { wrong_tries })
}

pub async fn profile(conn: &mut AnyConnection, card_id: &str) -> Result<Option<CardProfile>, ServerError> {
    let row = sqlx::query("SELECT method, confirmation FROM cards WHERE card_id = $1")
        .bind(card_id)
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let method: String = row.try_get(0)?;
    let confirmation: String = row.try_get(1)?;
    match (method_from_name(&method), confirmation_from_name(&confirmation)) {
        (Some(method), Some(confirmation)) => Ok(Some(CardProfile { method, confirmation })),
        _ => Err(ServerError::Ledger(format!("card {card_id}: stored method or confirmation is invalid"))),
    }
}

/// Whether the card exists and is active.
pub async fn is_active(conn: &mut AnyConnection, card_id: &str) -> Result<bool, ServerError> {
    let row = sqlx::query("SELECT status FROM cards WHERE card_id = $1").bind(card_id).fetch_optional(conn).await?;
    let Some(row) = row else { return Ok(false) };
    let status: String = row.try_get(0)?;
    Ok(CardStatus::from_name(&status) == Some(CardStatus::Active))
}

/// Uses up the re-authentication identity issued at `issued_us`: moves the
/// card's floor to it if it is above the floor and the card is active, in
/// one statement, so of two servers resolving the same identity one wins.
pub async fn use_reauth<C: SqlConn + ?Sized>(conn: &mut C, card_id: &str, issued_us: u64) -> Result<bool, ServerError> {
    let issued = to_i64(issued_us, "re-authentication time")?;
    let done = conn
        .execute(
            "UPDATE cards SET reauth_floor = $1 WHERE card_id = $2 AND reauth_floor < $1 AND status = 'active'",
            &[issued.into(), card_id.into()],
        )
        .await?;
    Ok(done == 1)
}

/// The card as the decision sees it, locked for the rest of the transaction:
/// on PostgreSQL the row lock and the read are one statement (a no-op
/// UPDATE ... RETURNING), one round trip; SQLite holds its write lock.
pub async fn snapshot<C: SqlConn + ?Sized>(conn: &mut C, card_id: &str) -> Result<Option<CardSnapshot>, ServerError> {
    let sql = match conn.backend() {
        Backend::Postgres => {
            "UPDATE cards SET available = available WHERE card_id = $1
             RETURNING status, currency, credit_limit, available, expires_at"
        }
        Backend::Sqlite => "SELECT status, currency, credit_limit, available, expires_at FROM cards WHERE card_id = $1",
    };
    let decode = |row: &dyn sql::Row| {
        Ok((
            row.text_required(0)?,
            row.int_required(1)?,
            row.int_required(2)?,
            row.int_required(3)?,
            row.int_required(4)?,
        ))
    };
    let Some((status, currency, credit_limit, available, expires_at)) =
        conn.fetch_optional(sql, &[card_id.into()], decode).await?
    else {
        return Ok(None);
    };
    let bad = |what: &str| ServerError::Ledger(format!("card {card_id}: stored {what} is invalid"));
    Ok(Some(CardSnapshot {
        status: CardStatus::from_name(&status).ok_or_else(|| bad("status"))?,
        currency: u16::try_from(currency).map_err(|_| bad("currency"))?,
        credit_limit: to_u64(credit_limit, "credit limit")?,
        available: to_u64(available, "available balance")?,
        expires_at: to_u64(expires_at, "expiry")?,
    }))
}

/// Moves the available balance by `delta` (negative = a charge). The card
/// must be locked (see [`snapshot`]); the schema's CHECK keeps the balance
/// within 0..=credit_limit whatever happens here.
pub async fn adjust_available<C: SqlConn + ?Sized>(conn: &mut C, card_id: &str, delta: i64) -> Result<(), ServerError> {
    let done = conn
        .execute("UPDATE cards SET available = available + $1 WHERE card_id = $2", &[delta.into(), card_id.into()])
        .await?;
    if done != 1 {
        return Err(ServerError::Ledger(format!("card {card_id} vanished while its balance changed")));
    }
    Ok(())
}

/// K, OPc and AMF of a card, in the clear.
pub type AkaSecrets = ([u8; 16], [u8; 16], [u8; 2]);

/// The sealed AKA credential of a card issued for `method`.
#[derive(Debug, Clone)]
pub struct SealedAka {
    pub sealed_k: String,
    pub sealed_opc: String,
    pub amf: String,
    pub sqn_he: u64,
}

impl SealedAka {
    /// Opens K and OPc for the authentication centre.
    pub fn open(&self, kek: &Kek, card_id: &str) -> Result<SubscriberKeys, ServerError> {
        let (k, opc, amf) = self.open_raw(kek, card_id)?;
        Ok(SubscriberKeys { milenage: Milenage::new(&k, &opc), amf })
    }

    /// Opens K and OPc; returns them with the AMF.
    pub fn open_raw(&self, kek: &Kek, card_id: &str) -> Result<AkaSecrets, ServerError> {
        let key = |sealed: &str| -> Result<[u8; 16], ServerError> {
            kek.open(card_id, sealed)?
                .try_into()
                .map_err(|_| ServerError::Ledger(format!("card {card_id}: sealed key is not 16 bytes")))
        };
        let amf: [u8; 2] = hex::decode(&self.amf)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| ServerError::Ledger(format!("card {card_id}: AMF is not 2 hex bytes")))?;
        Ok((key(&self.sealed_k)?, key(&self.sealed_opc)?, amf))
    }
}

/// None if the card is unknown, of another method, or has no AKA credential.
pub async fn aka_credential<C: SqlConn + ?Sized>(
    conn: &mut C,
    card_id: &str,
    method: CardMethod,
) -> Result<Option<SealedAka>, ServerError> {
    const SQL: &str = "SELECT method, sealed_k, sealed_opc, amf, sqn_he FROM cards WHERE card_id = $1";
    let decode = |row: &dyn sql::Row| {
        Ok((row.text_required(0)?, row.text(1)?, row.text(2)?, row.text(3)?, row.int_required(4)?))
    };
    let Some((stored, sealed_k, sealed_opc, amf, sqn_he)) = conn.fetch_optional(SQL, &[card_id.into()], decode).await?
    else {
        return Ok(None);
    };
    // A TTLS card with inner EAP-AKA keeps its K/OPc like an AKA card: the
    // inner conversation asks for vectors as AKA (identity 0<card_id>@realm).
    // Only the tunnel offers EAP-AKA for it: the outer method follows the
    // card's profile (ttls).
    let inner_aka = method == CardMethod::Aka && stored == CardMethod::Ttls.name();
    if stored != method.name() && !inner_aka {
        return Ok(None);
    }
    let (Some(sealed_k), Some(sealed_opc), Some(amf)) = (sealed_k, sealed_opc, amf) else { return Ok(None) };
    Ok(Some(SealedAka { sealed_k, sealed_opc, amf, sqn_he: to_u64(sqn_he, "SQN")? }))
}

/// SQNs reserved for one card: `first` and the `count - 1` after it, up to
/// `last`, which is what SQN_HE durably says.
#[derive(Debug, Clone)]
pub struct ReservedSqns {
    /// The credential; its `sqn_he` is `last`.
    pub cred: SealedAka,
    pub first: Sqn,
    pub last: Sqn,
}

/// Reserves the next `count` SQNs for vectors (TS 33.102 C.3.2), after a
/// resynchronisation to the card's SQN_MS if given (C.3.4): SQN_HE moves to
/// the last of them, durable once the transaction commits, so a crash
/// skips the unused ones and never hands one out twice.
pub async fn reserve_sqns<C: SqlConn + ?Sized>(
    conn: &mut C,
    card_id: &str,
    method: CardMethod,
    resync_to: Option<u64>,
    count: u32,
) -> Result<Option<ReservedSqns>, ServerError> {
    lock_card(conn, card_id).await?;
    let Some(mut cred) = aka_credential(conn, card_id, method).await? else { return Ok(None) };
    let mut sqn = Sqn::new(cred.sqn_he);
    if let Some(sqn_ms) = resync_to {
        sqn = sqn.resynchronised(Sqn::new(sqn_ms));
    }
    let first = sqn.next();
    let last = (1..count.max(1)).fold(first, |s, _| s.next());
    conn.execute(
        "UPDATE cards SET sqn_he = $1 WHERE card_id = $2",
        &[to_i64(last.value(), "SQN")?.into(), card_id.into()],
    )
    .await?;
    cred.sqn_he = last.value();
    Ok(Some(ReservedSqns { cred, first, last }))
}
