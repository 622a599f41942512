//! The connection pool: one `sqlx::any` pool for SQLite and PostgreSQL.
//!
//! All DML is one SQL text for both backends (`$1, $2` placeholders, BIGINT
//! integers, no booleans); what differs is only how a connection is set up,
//! how a write transaction starts, and the DDL in `schema.rs`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Transaction};

use super::sql::SqlConn;

use crate::error::ServerError;

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From the URL scheme: `sqlite:` or `postgres:` / `postgresql:`.
    pub fn of_url(url: &str) -> Result<Self, ServerError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(ServerError::Ledger(format!(
                "unsupported ledger URL {:?}: use sqlite://PATH or postgres://...",
                redact(url)
            )))
        }
    }

    /// The statement that opens a write transaction. SQLite takes the write
    /// lock at BEGIN IMMEDIATE, so a transaction that reads and then writes
    /// never fails half way with SQLITE_BUSY because another process (the
    /// admin CLI) wrote in between; busy_timeout makes it wait instead.
    fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// The statement that opens a read-only transaction whose reads all see
    /// one moment of the ledger. SQLite (WAL) fixes a deferred transaction's
    /// snapshot at its first read; PostgreSQL's default READ COMMITTED would
    /// give each statement its own.
    fn begin_snapshot(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN",
            Self::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        }
    }
}

/// The pool and the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl From<sqlx::Error> for ServerError {
    fn from(e: sqlx::Error) -> Self {
        ServerError::Ledger(e.to_string())
    }
}

/// SQLite pragmas for every connection: WAL so readers never block the
/// writer, synchronous=FULL so a commit is on disk before an Accept leaves,
/// a busy timeout so the server and the admin CLI wait for each other.
const SQLITE_PRAGMAS: [&str; 5] = [
    "PRAGMA busy_timeout = 5000",
    "PRAGMA page_size = 1024",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
];

/// PostgreSQL settings for every connection. sqlx prepares each statement
/// once per connection, and after five runs PostgreSQL may switch it to a
/// generic plan chosen with the statistics of that moment: a server started
/// on a young ledger kept sequential scans of `authorizations` (planned
/// when it was nearly empty) as it grew, and its payments slowed with every
/// thousand rows (BENCHMARKS.md, "Durable payments", 2026-12-07). Custom
/// plans cost a few microseconds of planning per statement and always see
/// the ledger as it is.
const POSTGRES_SETTINGS: &str = "SET plan_cache_mode = force_custom_plan";

impl Db {
    pub async fn connect(url: &str) -> Result<Self, ServerError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let url = match backend {
            Backend::Sqlite if is_sqlite_memory(url) => {
                // Every pooled connection would get a database of its own, and
                // nothing would survive a restart: not a ledger.
                return Err(ServerError::Ledger(
                    "an in-memory SQLite ledger is not supported; use sqlite://PATH".into(),
                ));
            }
            Backend::Sqlite => sqlite_url(url),
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| ServerError::Ledger(format!("ledger URL {:?}: {e}", redact(&url))))?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                // One writer at a time anyway; the rest serve listings and card look-ups.
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(30))
            // A SQLite connection is a file handle that cannot go stale; a
            // ping before each use only costs a thread round trip.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            for pragma in SQLITE_PRAGMAS {
                                Executor::execute(&mut *conn, pragma).await?;
                            }
                        }
                        Backend::Postgres => {
                            Executor::execute(&mut *conn, POSTGRES_SETTINGS).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| ServerError::Ledger(format!("cannot open ledger {:?}: {e}", redact(&url))))?;
        Ok(Self { pool, backend })
    }

    /// A transaction that will write (see [`Backend::begin_write`]).
    pub async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>, ServerError> {
        Ok(self.pool.begin_with(self.backend.begin_write()).await?)
    }

    /// A read transaction over one consistent snapshot (admin exports).
    pub async fn begin_snapshot(&self) -> Result<Transaction<'static, sqlx::Any>, ServerError> {
        Ok(self.pool.begin_with(self.backend.begin_snapshot()).await?)
    }

    /// The file a SQLite ledger lives in, as SQLite itself resolved the URL
    /// (for the writer thread's own connection, `sqlite_store.rs`).
    pub async fn sqlite_file(&self) -> Result<std::path::PathBuf, ServerError> {
        let row =
            sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'").fetch_one(&self.pool).await?;
        let file: String = sqlx::Row::try_get(&row, 0)?;
        if file.is_empty() {
            return Err(ServerError::Ledger("the SQLite ledger has no file".into()));
        }
        Ok(file.into())
    }
}

/// PostgreSQL: locks the card's row until the transaction ends, so two
/// server instances sharing the ledger serialise on a card. SQLite already
/// holds the database write lock (BEGIN IMMEDIATE), so nothing to do.
pub async fn lock_card<C: SqlConn + ?Sized>(conn: &mut C, card_id: &str) -> Result<(), ServerError> {
    if conn.backend() == Backend::Postgres {
        conn.execute("UPDATE cards SET available = available WHERE card_id = $1", &[card_id.into()]).await?;
    }
    Ok(())
}

/// PostgreSQL: serialises, until the transaction ends, every decision about
/// one (merchant, terminal nonce), so two server instances cannot both see a
/// nonce as unused. SQLite's write lock already does.
pub async fn lock_nonce<C: SqlConn + ?Sized>(conn: &mut C, merchant_id: &str, nonce: &[u8]) -> Result<(), ServerError> {
    if conn.backend() == Backend::Postgres {
        let key = format!("eapay nonce {merchant_id} {}", hex::encode(nonce));
        conn.fetch_optional(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[key.as_str().into()],
            |_| Ok(()),
        )
        .await?;
    }
    Ok(())
}

fn is_sqlite_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    path.is_empty() || path == ":memory:" || query.split('&').any(|kv| kv == "mode=memory")
}

/// `sqlite://PATH` creates the file if missing unless the URL says otherwise.
fn sqlite_url(url: &str) -> String {
    let has_mode = url.split_once('?').is_some_and(|(_, q)| q.split('&').any(|kv| kv.starts_with("mode=")));
    match (has_mode, url.contains('?')) {
        (true, _) => url.to_string(),
        (false, true) => format!("{url}&mode=rwc"),
        (false, false) => format!("{url}?mode=rwc"),
    }
}

/// The URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{user}@{host}{slash}{tail}")
        }
        None => url.to_string(),
    }
}

/// Unsigned values the ledger owns (balances, times, SQN) must fit BIGINT.
pub fn to_i64(value: u64, what: &str) -> Result<i64, ServerError> {
    i64::try_from(value).map_err(|_| ServerError::Ledger(format!("{what} {value} does not fit a BIGINT")))
}

/// Stored BIGINTs the ledger wrote itself are never negative; a negative one
/// means the database was edited by hand.
pub fn to_u64(value: i64, what: &str) -> Result<u64, ServerError> {
    u64::try_from(value).map_err(|_| ServerError::Ledger(format!("stored {what} {value} is negative")))
}

/// Wire values (amount, terminal time) are kept bit for bit: a terminal's
/// integer64 above i64::MAX (a "negative" amount) is stored as the negative
/// BIGINT it encodes and read back unchanged, so a declined request is
/// recorded exactly as it arrived.
pub fn wire_to_i64(value: u64) -> i64 {
    value as i64
}

/// The inverse of [`wire_to_i64`].
pub fn wire_from_i64(value: i64) -> u64 {
    value as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Backend::of_url("sqlite:///tmp/x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of_url("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert!(Backend::of_url("mysql://h/db").is_err());
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(is_sqlite_memory("sqlite://:memory:"));
        assert!(is_sqlite_memory("sqlite://a.db?mode=memory"));
        assert!(is_sqlite_memory("sqlite://"));
        assert!(!is_sqlite_memory("sqlite:///var/lib/eapay/ledger.db"));
        assert!(!is_sqlite_memory("sqlite://eapay-data/ledger.db"));
        assert_eq!(sqlite_url("sqlite://a.db?cache=shared"), "sqlite://a.db?cache=shared&mode=rwc");
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(wire_from_i64(wire_to_i64(u64::MAX)), u64::MAX);
        assert!(to_i64(u64::MAX, "x").is_err());
        assert!(to_u64(-1, "x").is_err());
    }
}
