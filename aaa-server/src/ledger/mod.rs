//! The payment ledger: cards, merchants, authorizations and the audit log in
//! SQLite (embedded, the default) or PostgreSQL (several server instances
//! sharing one ledger), behind one implementation, [`SqlLedger`].
//!
//! Exactly once (DESIGN.md §8): `authorize` and `settle` return only after
//! their transaction is committed (group commit, `writer.rs`); a repeat of a
//! (merchant, transaction id) with the same details gets the original answer,
//! with other details 94. No PAN is stored, only its keyed PAN-token; K and
//! OPc are sealed under the KEK.
//!
//! Module map: `db` (pool, backend differences), `schema` (migrations),
//! `writer` (group commit on a thread of its own), `sql` (the write path's
//! statements, once for both drivers), `sqlite_store` (the SQLite writer's
//! rusqlite connection and its checkpointer), `decision` (the pure checks),
//! `authorizations`, `settlement`, `cards`, `merchants`, `audit`, `model`
//! (the types).
//!
//! Two drivers: sqlx serves PostgreSQL and every read; on SQLite the writer
//! owns a rusqlite connection, because sqlx hands each SQLite statement to a
//! worker thread and back, which profiled at several times SQLite's own work
//! per payment (BENCHMARKS.md, "Durable payments", 2026-12-07).
//!
//! Decisions the contract leaves open:
//! - A repeat gets the original answer only if it comes from the card the
//!   original was recorded against (or the original had no card); otherwise
//!   94. A repeat of a reversed approval is declined 12 like a late original
//!   after a tombstone; a repeat whose card failed authentication this time
//!   gets its own pre-decline, not the stored approval.
//! - Terminal nonces are remembered for twice the time window: the longest
//!   span over which two requests can both pass the time check.
//! - Velocity counts approvals whatever happened to them later (a reversal
//!   does not make room for another attempt).
//! - An unknown card id is not stored in the authorization (it would violate
//!   the foreign key); the audit line keeps the id that was claimed.
//! - Merchant links are only ever added by `add_merchant`.
//! - Nothing is pruned: the nonce, velocity and duplicate checks read the
//!   authorizations themselves, through indexes bounded by their windows.
//!   Authorizations are the ledger of record (settlement, audit, disputes);
//!   an archive policy is the issuer's, outside the request path.

mod audit;
mod authorizations;
mod bounded_map;
mod cards;
mod db;
pub mod decision;
pub mod merchants;
mod model;
mod profile_cache;
mod schema;
mod settlement;
mod sql;
mod sqlite_store;
mod sqn_blocks;
mod writer;

use std::future::Future;
use std::sync::Arc;

use eap_methods::sim_aka::sqn::Sqn;
use eap_methods::Answer;
use sqlx::Row;

pub use self::cards::{is_valid_card_id, v_card, AkaExport, PinUnlock, MAX_PIN_TRIES};
pub use self::db::Backend;
use self::db::{to_i64, to_u64, Db};
pub use self::model::{
    Attempt, AuditEntry, AuthorizationRecord, AuthorizationStatus, CardProfile, CardStatus, CardSummary, Decision,
    Decline, Evidence, IssuerInfo, LedgerOptions, LedgerSnapshot, MerchantSummary, NewAkaCredential, NewCard, Outcome,
    PaymentPolicy, RegisteredKey, Settlement, SettlementOutcome, TxnFilter, TxnKey,
};
use self::profile_cache::ProfileCache;
use self::sqn_blocks::SqnBlocks;
pub use self::writer::WriterStats;
use self::writer::{SqnRequest, Writer};
use crate::auc::SubscriberKeys;
use crate::cards::CardMethod;
use crate::error::ServerError;
use crate::seal::Kek;

/// What the request path needs from storage. One implementation
/// ([`SqlLedger`]) serves SQLite and PostgreSQL.
pub trait Ledger: Send + Sync + 'static {
    /// The method and confirmation policy a card was issued with, whatever
    /// its status (blocked cards authenticate and are then declined 62);
    /// None if unknown.
    fn card_profile(&self, card_id: &str) -> impl Future<Output = Result<Option<CardProfile>, ServerError>> + Send;

    /// The next SQN of a card issued for `method` (AKA, AKA', or AKA inside
    /// TTLS), durable before it returns, after a resynchronisation to the
    /// card's `resync_to` if given (TS 33.102 C.3.4), with the card's opened
    /// K/OPc; None if the card is unknown or of another method. The
    /// authentication centre (`crate::auc`) builds the vector.
    fn next_sqn(
        &self,
        card_id: &str,
        method: CardMethod,
        resync_to: Option<u64>,
    ) -> impl Future<Output = Result<Option<(SubscriberKeys, Sqn)>, ServerError>> + Send;

    /// The opened K/OPc of a card issued for `method` (SIM triplets, AUTS
    /// checks); None if unknown or of another method.
    fn subscriber(
        &self,
        card_id: &str,
        method: CardMethod,
    ) -> impl Future<Output = Result<Option<SubscriberKeys>, ServerError>> + Send;

    /// Whether the card exists and is active (a pseudonym must not reach a
    /// blocked card).
    fn card_active(&self, card_id: &str) -> impl Future<Output = Result<bool, ServerError>> + Send;

    /// Uses up the SIM/AKA re-authentication identity issued at `issued_us`
    /// for this card (`crate::identities`): true once, for an active card,
    /// if nothing issued at or after that time was used before.
    fn use_reauth(&self, card_id: &str, issued_us: u64) -> impl Future<Output = Result<bool, ServerError>> + Send;

    /// Which card owns this client key (DER SubjectPublicKeyInfo):
    /// `Answer::CardKey { card_id }` if the card is active,
    /// `Answer::BlockedCard`, or `Answer::UnknownCard` if no card has it.
    fn card_by_key(&self, spki: &[u8]) -> impl Future<Output = Result<Answer, ServerError>> + Send;

    /// The registered key of a TLS/TTLS card; None for other or unknown cards.
    fn card_key(&self, card_id: &str) -> impl Future<Output = Result<Option<RegisteredKey>, ServerError>> + Send;

    /// TTLS inner PAP: checks `pin` against the card's stored verifier (in
    /// constant time) and counts wrong tries durably: `PinAccepted` (the
    /// count starts again), `PinRejected { tries_left }`, `PinLocked` once
    /// [`MAX_PIN_TRIES`] wrong ones came in a row (it stays locked, also for
    /// the right PIN), `UnknownCard` for an unknown card or one without a
    /// PIN. Each wrong PIN and the lock are audited.
    fn check_pin(
        &self,
        card_id: &str,
        pin: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<Answer, ServerError>> + Send;

    /// The payment decision, committed durably before it returns.
    fn authorize(&self, attempt: Attempt) -> impl Future<Output = Result<Decision, ServerError>> + Send;

    /// Whether `client`'s payment (merchant, transaction id) holds an
    /// approval (approved or captured, not a tombstone): what a request may
    /// have led to that continues a conversation this server no longer has.
    fn holds_approval(
        &self,
        client: &str,
        merchant_id: &str,
        transaction_id: &str,
    ) -> impl Future<Output = Result<bool, ServerError>> + Send;

    /// Capture / reverse / refund, durable before it returns.
    fn settle(&self, settlement: Settlement) -> impl Future<Output = Result<SettlementOutcome, ServerError>> + Send;

    /// Appends an audit line for a request refused before it named a
    /// transaction the ledger could record (malformed payment attributes).
    fn audit_refusal(
        &self,
        client: &str,
        reason: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), ServerError>> + Send;
}

/// The ledger on SQLite or PostgreSQL. Share it behind an `Arc`; the pool
/// and the writer are shared internally.
#[derive(Debug)]
pub struct SqlLedger {
    db: Db,
    kek: Arc<Kek>,
    writer: Writer,
    sqns: SqnBlocks,
    profiles: ProfileCache,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl SqlLedger {
    /// Opens (creating a SQLite file if missing) and migrates the ledger at
    /// `url` (`sqlite://PATH` or `postgres://...`), then starts the writer.
    /// Must run inside a tokio runtime.
    pub async fn open(url: &str, kek: Kek, options: LedgerOptions) -> Result<Self, ServerError> {
        let db = Db::connect(url).await?;
        schema::migrate(&db, to_i64(now_ms() / 1000, "time")?).await?;
        let ledger_key_id = sqlx::query("SELECT key_id FROM issuer WHERE id = 1").fetch_optional(&db.pool).await?;
        if let (Some(signer), Some(row)) = (&options.signer, ledger_key_id) {
            let stored: Vec<u8> = row.try_get(0)?;
            if stored != signer.key_id() {
                // Key rotation is legitimate, so this is not fatal; but receipts
                // will not verify with the public key the ledger publishes.
                tracing::warn!(
                    ledger = %hex::encode(&stored),
                    signer = %hex::encode(signer.key_id()),
                    "the receipt signing key is not the issuer key recorded in the ledger"
                );
            }
        }
        let writer = Writer::start(db.clone(), options.policy, options.signer, options.batch_max).await?;
        Ok(Self { db, kek: Arc::new(kek), writer, sqns: SqnBlocks::default(), profiles: ProfileCache::default() })
    }

    /// The key-encryption key (PAN-tokens for issuance).
    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// The commit durability setting of a pooled connection, as the database
    /// reports it: SQLite `synchronous` (2 = FULL) or PostgreSQL
    /// `synchronous_commit` ("on"). An approval is only as durable as this.
    pub async fn durability(&self) -> Result<String, ServerError> {
        let mut conn = self.db.pool.acquire().await?;
        Ok(match self.db.backend {
            Backend::Sqlite => {
                let row = sqlx::query("PRAGMA synchronous").fetch_one(&mut *conn).await?;
                format!("synchronous={}", row.try_get::<i64, _>(0)?)
            }
            Backend::Postgres => {
                let row = sqlx::query("SHOW synchronous_commit").fetch_one(&mut *conn).await?;
                format!("synchronous_commit={}", row.try_get::<String, _>(0)?)
            }
        })
    }

    /// Records the issuer realm and the public half of the receipt key (one row; replaced).
    pub async fn set_issuer(&self, realm: &str, public_key_pem: &[u8], key_id: [u8; 8]) -> Result<(), ServerError> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO issuer (id, realm, public_key_pem, key_id, created_at) VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET realm = excluded.realm, public_key_pem = excluded.public_key_pem,
                 key_id = excluded.key_id",
        )
        .bind(realm)
        .bind(public_key_pem)
        .bind(key_id.as_slice())
        .bind(to_i64(now / 1000, "time")?)
        .execute(&mut *tx)
        .await?;
        let line = audit::Line {
            at_ms: to_i64(now, "time")?,
            actor: "admin",
            event: "issuer set",
            detail: format!("realm={realm} key_id={}", hex::encode(key_id)),
            ..Default::default()
        };
        audit::append(&mut tx, line).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn issuer(&self) -> Result<Option<IssuerInfo>, ServerError> {
        let row = sqlx::query("SELECT realm, public_key_pem, key_id, created_at FROM issuer WHERE id = 1")
            .fetch_optional(&self.db.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key_id: Vec<u8> = row.try_get("key_id")?;
        Ok(Some(IssuerInfo {
            realm: row.try_get("realm")?,
            public_key_pem: row.try_get("public_key_pem")?,
            key_id: key_id.try_into().map_err(|_| ServerError::Ledger("stored issuer key id is not 8 bytes".into()))?,
            created_at: to_u64(row.try_get("created_at")?, "issuer creation time")?,
        }))
    }

    /// Issues a card: seals K/OPc, stores the PIN verifier, audits "card issued".
    pub async fn issue_card(&self, card: NewCard, actor: &str) -> Result<(), ServerError> {
        let mut tx = self.db.begin_write().await?;
        cards::issue(&mut tx, &self.kek, &card, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Issues many cards in one transaction (one commit): all or none.
    pub async fn issue_cards(&self, cards: &[NewCard], actor: &str) -> Result<(), ServerError> {
        let mut tx = self.db.begin_write().await?;
        cards::issue_many(&mut tx, &self.kek, cards, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// K, OPc, AMF and SQN_HE of the active cards of `methods`, in the clear,
    /// ordered by card id: for `card export` to another AAA server.
    pub async fn aka_exports(&self, methods: &[CardMethod]) -> Result<Vec<AkaExport>, ServerError> {
        cards::aka_exports(&mut *self.db.pool.acquire().await?, &self.kek, methods).await
    }

    /// All cards, ordered by card id.
    pub async fn cards(&self) -> Result<Vec<CardSummary>, ServerError> {
        cards::list(&mut *self.db.pool.acquire().await?).await
    }

    pub async fn card(&self, card_id: &str) -> Result<Option<CardSummary>, ServerError> {
        cards::get(&mut *self.db.pool.acquire().await?, card_id).await
    }

    /// False if the card is unknown.
    /// `card unblock`: the card pays again; false if unknown.
    pub async fn unblock_card(&self, card_id: &str, actor: &str) -> Result<bool, ServerError> {
        let mut tx = self.db.begin_write().await?;
        let found = cards::set_status(&mut tx, card_id, CardStatus::Active, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// `card unlock-pin`: the count of wrong PINs starts again from zero.
    pub async fn unlock_pin(&self, card_id: &str, actor: &str) -> Result<PinUnlock, ServerError> {
        let mut tx = self.db.begin_write().await?;
        let done = cards::unlock_pin(&mut tx, card_id, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(done)
    }

    pub async fn block_card(&self, card_id: &str, actor: &str) -> Result<bool, ServerError> {
        let mut tx = self.db.begin_write().await?;
        let found = cards::block(&mut tx, card_id, actor, now_ms()).await?;
        tx.commit().await?;
        self.profiles.forget_owner(card_id);
        Ok(found)
    }

    /// Creates or renames a merchant, activates it and links `clients` to it.
    /// `merchant remove-client`: the terminal no longer acts for the
    /// merchant; false if it did not.
    pub async fn remove_merchant_client(
        &self,
        merchant_id: &str,
        client: &str,
        actor: &str,
    ) -> Result<bool, ServerError> {
        let mut tx = self.db.begin_write().await?;
        let removed = merchants::remove_client(&mut tx, merchant_id, client, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(removed)
    }

    pub async fn add_merchant(
        &self,
        merchant_id: &str,
        name: &str,
        clients: &[String],
        actor: &str,
    ) -> Result<(), ServerError> {
        let mut tx = self.db.begin_write().await?;
        merchants::add(&mut tx, merchant_id, name, clients, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// See [`merchants::follow_config`]; one transaction.
    pub async fn follow_config_links(
        &self,
        links: &std::collections::BTreeSet<merchants::Link>,
        actor: &str,
    ) -> Result<merchants::ConfigChanges, ServerError> {
        let mut tx = self.db.begin_write().await?;
        let changes = merchants::follow_config(&mut tx, links, actor, now_ms()).await?;
        tx.commit().await?;
        Ok(changes)
    }

    pub async fn merchants(&self) -> Result<Vec<MerchantSummary>, ServerError> {
        merchants::list(&mut *self.db.pool.acquire().await?).await
    }

    /// Newest first, at most `filter.limit` (0 = all).
    pub async fn authorizations(&self, filter: &TxnFilter) -> Result<Vec<AuthorizationRecord>, ServerError> {
        authorizations::list(&mut *self.db.pool.acquire().await?, filter).await
    }

    pub async fn authorization(&self, key: &TxnKey) -> Result<Option<AuthorizationRecord>, ServerError> {
        authorizations::find(&mut *self.db.pool.acquire().await?, key).await
    }

    /// The audit lines of one authorization, oldest first.
    pub async fn audit(&self, authorization_id: i64) -> Result<Vec<AuditEntry>, ServerError> {
        audit::for_authorization(&mut *self.db.pool.acquire().await?, authorization_id).await
    }

    /// The newest `limit` audit lines (0 = all), newest first.
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditEntry>, ServerError> {
        audit::recent(&mut *self.db.pool.acquire().await?, limit).await
    }

    /// The whole ledger at one moment (`txn export`): every card, every
    /// authorization and every audit line, each oldest (or by card id)
    /// first. Read into memory: an export for reconciliation and tests, not
    /// an archive of a ledger of millions.
    pub async fn snapshot(&self) -> Result<LedgerSnapshot, ServerError> {
        let mut tx = self.db.begin_snapshot().await?;
        let cards = cards::list(&mut tx).await?;
        let all = TxnFilter { merchant_id: None, card_id: None, limit: 0 };
        let mut authorizations = authorizations::list(&mut tx, &all).await?;
        authorizations.reverse();
        let audit = audit::all(&mut tx).await?;
        tx.rollback().await?;
        Ok(LedgerSnapshot { cards, authorizations, audit })
    }

    /// Jobs and commits of the writer so far.
    pub fn stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// Answers every queued request, then closes the pool.
    pub async fn close(self) {
        self.writer.close().await;
        self.db.pool.close().await;
    }

    /// Takes the card's next reserved SQN, reserving a new block in the
    /// writer when none is left (or to resynchronise).
    async fn reserve(
        &self,
        card_id: &str,
        method: CardMethod,
        resync_to: Option<u64>,
    ) -> Result<Option<(SubscriberKeys, Sqn)>, ServerError> {
        let reserved = match resync_to {
            None => self.sqns.take(card_id, method),
            Some(_) => {
                self.sqns.forget(card_id, method);
                None
            }
        };
        let (cred, sqn) = match reserved {
            Some(taken) => taken,
            None => {
                let request = SqnRequest { card_id: card_id.to_string(), method, resync_to, count: sqn_blocks::BLOCK };
                let Some(block) = self.writer.advance_sqn(request).await? else { return Ok(None) };
                self.sqns.store(card_id, method, block)
            }
        };
        Ok(Some((cred.open(&self.kek, card_id)?, sqn)))
    }
}

impl Ledger for SqlLedger {
    async fn card_profile(&self, card_id: &str) -> Result<Option<CardProfile>, ServerError> {
        if let Some(profile) = self.profiles.get(card_id) {
            return Ok(Some(profile));
        }
        let profile = cards::profile(&mut *self.db.pool.acquire().await?, card_id).await?;
        if let Some(p) = &profile {
            self.profiles.insert(card_id, *p);
        }
        Ok(profile)
    }

    async fn audit_refusal(&self, client: &str, reason: &str, now_ms: u64) -> Result<(), ServerError> {
        let line = audit::Line {
            at_ms: to_i64(now_ms, "audit time")?,
            actor: client,
            event: "request refused",
            detail: reason.to_string(),
            ..Default::default()
        };
        audit::append(&mut *self.db.pool.acquire().await?, line).await
    }

    async fn next_sqn(
        &self,
        card_id: &str,
        method: CardMethod,
        resync_to: Option<u64>,
    ) -> Result<Option<(SubscriberKeys, Sqn)>, ServerError> {
        self.reserve(card_id, method, resync_to).await
    }

    async fn subscriber(&self, card_id: &str, method: CardMethod) -> Result<Option<SubscriberKeys>, ServerError> {
        // K/OPc never change: read once (no writer), then from memory.
        let cred = match self.profiles.credential(card_id, method) {
            Some(cred) => Some(cred),
            None => {
                let cred = cards::aka_credential(&mut *self.db.pool.acquire().await?, card_id, method).await?;
                if let Some(c) = &cred {
                    self.profiles.insert_credential(card_id, method, c.clone());
                }
                cred
            }
        };
        cred.map(|c| c.open(&self.kek, card_id)).transpose()
    }

    async fn card_active(&self, card_id: &str) -> Result<bool, ServerError> {
        cards::is_active(&mut *self.db.pool.acquire().await?, card_id).await
    }

    async fn use_reauth(&self, card_id: &str, issued_us: u64) -> Result<bool, ServerError> {
        // Through the writer: re-authentications share its group commits.
        self.writer.use_reauth(card_id.to_string(), issued_us).await
    }

    async fn card_by_key(&self, spki: &[u8]) -> Result<Answer, ServerError> {
        let key_id = cards::key_id(spki);
        if let Some(card_id) = self.profiles.owner(&key_id) {
            return Ok(Answer::CardKey { card_id });
        }
        let answer = cards::by_key(&mut *self.db.pool.acquire().await?, spki).await?;
        if let Answer::CardKey { card_id } = &answer {
            self.profiles.insert_owner(key_id, card_id);
        }
        Ok(answer)
    }

    async fn card_key(&self, card_id: &str) -> Result<Option<RegisteredKey>, ServerError> {
        if let Some(key) = self.profiles.key(card_id) {
            return Ok(Some(key));
        }
        let key = cards::key(&mut *self.db.pool.acquire().await?, card_id).await?;
        if let Some(k) = &key {
            self.profiles.insert_key(card_id, k.clone());
        }
        Ok(key)
    }

    async fn check_pin(&self, card_id: &str, pin: &str, now_ms: u64) -> Result<Answer, ServerError> {
        // The common case, the right PIN with no wrong one before, needs no
        // write: a plain read decides it. Anything else is decided again
        // under the card's lock and recorded.
        let state = cards::pin_state(&mut *self.db.pool.acquire().await?, card_id).await?;
        match state {
            None => return Ok(Answer::UnknownCard),
            Some((verifier, 0)) if self.kek.verify_pin(card_id, pin, &verifier) => return Ok(Answer::PinAccepted),
            Some(_) => {}
        }
        let mut tx = self.db.begin_write().await?;
        let answer = cards::record_pin_try(&mut tx, &self.kek, card_id, pin, now_ms).await?;
        tx.commit().await?;
        Ok(answer)
    }

    async fn authorize(&self, attempt: Attempt) -> Result<Decision, ServerError> {
        self.writer.authorize(attempt).await
    }

    async fn settle(&self, settlement: Settlement) -> Result<SettlementOutcome, ServerError> {
        self.writer.settle(settlement).await
    }

    async fn holds_approval(&self, client: &str, merchant_id: &str, transaction_id: &str) -> Result<bool, ServerError> {
        let key = TxnKey::merchant(merchant_id, transaction_id);
        let found = authorizations::find(&mut *self.db.pool.acquire().await?, &key).await?;
        Ok(found.is_some_and(|a| {
            a.client == client
                && !a.tombstone
                && matches!(a.status, AuthorizationStatus::Approved | AuthorizationStatus::Captured)
        }))
    }
}
