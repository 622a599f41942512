//! The ledger schema and its migration runner.
//!
//! Migrations are an ordered list; each has its DDL written once (with the
//! two type names that differ substituted per backend) plus each backend's
//! own triggers: DDL is the only SQL that differs per backend and is applied in its own transaction
//! together with its row in `schema_migrations`. The server and the admin CLI
//! may open the ledger at the same moment, so the runner serialises on a lock
//! (SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: a transaction
//! advisory lock) and re-reads what is applied under it; a migration another
//! process applied first is simply skipped.

use sqlx::{AnyConnection, Row};

use super::db::{Backend, Db};
use crate::error::ServerError;

/// One schema change: DDL common to both backends, then each backend's own
/// (triggers differ in syntax).
struct Migration {
    version: i64,
    both: &'static [&'static str],
    sqlite: &'static [&'static str],
    postgres: &'static [&'static str],
}

/// The common DDL in a backend's spelling: the two type names that differ.
fn ddl(backend: Backend, statement: &str) -> String {
    match backend {
        Backend::Sqlite => statement.replace("ID_PRIMARY_KEY", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Backend::Postgres => statement.replace("BLOB", "BYTEA").replace("ID_PRIMARY_KEY", "BIGSERIAL PRIMARY KEY"),
    }
}

/// Arbitrary constant naming the advisory lock of the migration runner.
const PG_MIGRATION_LOCK: i64 = 0x6561_7061_795f_6d67; // "eapay_mg"

const CREATE_MIGRATIONS: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        // Written once; `BLOB` and `ID_PRIMARY_KEY` are spelled per backend by `ddl`.
        both: &[
            "CREATE TABLE issuer (
            id BIGINT PRIMARY KEY CHECK (id = 1),
            realm TEXT NOT NULL,
            public_key_pem BLOB NOT NULL,
            key_id BLOB NOT NULL,
            created_at BIGINT NOT NULL
        )",
            "CREATE TABLE cards (
            card_id TEXT PRIMARY KEY,
            method TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'blocked')),
            confirmation TEXT NOT NULL CHECK (confirmation IN ('required', 'optional')),
            currency BIGINT NOT NULL,
            credit_limit BIGINT NOT NULL CHECK (credit_limit >= 0),
            available BIGINT NOT NULL CHECK (available >= 0 AND available <= credit_limit),
            expires_at BIGINT NOT NULL,
            issued_at BIGINT NOT NULL,
            pan_token BLOB,
            v_card BLOB,
            sealed_k TEXT,
            sealed_opc TEXT,
            amf TEXT,
            sqn_he BIGINT NOT NULL DEFAULT 0,
            pin_verifier BLOB,
            pin_tries BIGINT NOT NULL DEFAULT 0
        )",
            "CREATE INDEX cards_pan_token ON cards (pan_token)",
            "CREATE INDEX cards_v_card ON cards (v_card)",
            "CREATE TABLE merchants (
            merchant_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
            created_at BIGINT NOT NULL
        )",
            "CREATE TABLE merchant_clients (
            merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
            client_name TEXT NOT NULL,
            PRIMARY KEY (merchant_id, client_name)
        )",
            "CREATE TABLE authorizations (
            id ID_PRIMARY_KEY,
            merchant_id TEXT NOT NULL REFERENCES merchants (merchant_id),
            transaction_id TEXT NOT NULL,
            card_id TEXT REFERENCES cards (card_id),
            amount BIGINT NOT NULL,
            currency BIGINT NOT NULL,
            installments BIGINT NOT NULL,
            terminal_nonce BLOB NOT NULL,
            terminal_time_ms BIGINT NOT NULL,
            details BLOB NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('approved', 'declined', 'captured', 'reversed', 'refunded')),
            approval_code TEXT UNIQUE,
            decline_code BIGINT,
            decline_reason TEXT,
            method TEXT NOT NULL,
            confirmation BIGINT NOT NULL,
            evidence_kind TEXT,
            evidence BLOB,
            receipt BLOB,
            tombstone BIGINT NOT NULL DEFAULT 0,
            client TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            updated_at_ms BIGINT NOT NULL,
            UNIQUE (merchant_id, transaction_id)
        )",
            "CREATE INDEX authorizations_nonce ON authorizations (merchant_id, terminal_nonce)",
            "CREATE INDEX authorizations_velocity ON authorizations (card_id, status, created_at_ms)",
            "CREATE TABLE audit_log (
            id ID_PRIMARY_KEY,
            at_ms BIGINT NOT NULL,
            actor TEXT NOT NULL,
            event TEXT NOT NULL,
            authorization_id BIGINT,
            card_id TEXT,
            merchant_id TEXT,
            transaction_id TEXT,
            detail TEXT NOT NULL
        )",
            "CREATE INDEX audit_log_authorization ON audit_log (authorization_id)",
        ],
        // The code never changes the audit log; the database refuses to as well.
        sqlite: &[
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
        ],
        postgres: &[
            "CREATE FUNCTION eapay_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION eapay_audit_log_append_only()",
        ],
    },
    Migration {
        version: 2,
        // TLS/TTLS cards: the registered public key (DER SubjectPublicKeyInfo)
        // and its SHA-256, unique: one key, one card. NULL for other cards (both
        // backends let a unique index hold many NULLs).
        both: &[
            "ALTER TABLE cards ADD COLUMN card_key BLOB",
            "ALTER TABLE cards ADD COLUMN card_key_id BLOB",
            "CREATE UNIQUE INDEX cards_card_key_id ON cards (card_key_id)",
        ],
        sqlite: &[],
        postgres: &[],
    },
    Migration {
        version: 3,
        // SIM/AKA fast re-authentication (`crate::identities`): the issue time
        // (µs) of the last re-authentication identity used. One at or below
        // it is refused, so each works once, across restarts and instances.
        both: &["ALTER TABLE cards ADD COLUMN reauth_floor BIGINT NOT NULL DEFAULT 0"],
        sqlite: &[],
        postgres: &[],
    },
    Migration {
        version: 4,
        // Where a merchant link comes from: eapay.toml ('config': it follows
        // the file, see `merchants::follow_config`) or `merchant add --client`
        // ('admin': it stays until `merchant remove-client`). Links made
        // before this version cannot be told apart and are kept as 'admin'.
        both: &["ALTER TABLE merchant_clients ADD COLUMN source TEXT NOT NULL DEFAULT 'admin' \
                 CHECK (source IN ('admin', 'config'))"],
        sqlite: &[],
        postgres: &[],
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the schema up to date. Idempotent; safe to run from two processes.
pub async fn migrate(db: &Db, now_s: i64) -> Result<(), ServerError> {
    for migration in MIGRATIONS {
        // A failure can be the other process winning a race the lock does not
        // cover (PostgreSQL creating schema_migrations itself); one retry sees
        // its result.
        if let Err(first) = apply(db, migration, now_s).await {
            apply(db, migration, now_s).await.map_err(|e| {
                ServerError::Ledger(format!("migration {}: {e} (first attempt: {first})", migration.version))
            })?;
        }
    }
    let applied = applied_versions(&mut *db.pool.acquire().await?).await?;
    if let Some(newer) = applied.iter().copied().find(|v| *v > latest_version()) {
        return Err(ServerError::Ledger(format!(
            "the ledger schema is version {newer}, newer than this server knows ({}): upgrade eapay",
            latest_version()
        )));
    }
    Ok(())
}

async fn apply(db: &Db, migration: &Migration, now_s: i64) -> Result<(), ServerError> {
    let mut tx = db.begin_write().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_MIGRATION_LOCK).execute(&mut *tx).await?;
    }
    sqlx::query(CREATE_MIGRATIONS).execute(&mut *tx).await?;
    if applied_versions(&mut tx).await?.contains(&migration.version) {
        tx.rollback().await?;
        return Ok(());
    }
    let own = match db.backend {
        Backend::Sqlite => migration.sqlite,
        Backend::Postgres => migration.postgres,
    };
    let statements = migration.both.iter().map(|s| ddl(db.backend, s)).chain(own.iter().map(|s| s.to_string()));
    for statement in statements {
        sqlx::query(&statement).persistent(false).execute(&mut *tx).await?;
    }
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(migration.version)
        .bind(now_s)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(version = migration.version, "ledger schema migrated");
    Ok(())
}

async fn applied_versions(conn: &mut AnyConnection) -> Result<Vec<i64>, ServerError> {
    let rows = sqlx::query("SELECT version FROM schema_migrations ORDER BY version").fetch_all(conn).await?;
    rows.iter().map(|r| r.try_get::<i64, _>(0).map_err(ServerError::from)).collect()
}
