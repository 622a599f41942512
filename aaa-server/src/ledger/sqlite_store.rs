//! The SQLite writer's own connection: `rusqlite` on the writer thread.
//!
//! sqlx runs each SQLite connection on a worker thread of its own and hands
//! every statement to it and back; a payment's seven statements cost
//! fourteen thread hand-offs, which profiled at several times SQLite's own
//! work (BENCHMARKS.md, "Durable payments"). Here the writer thread owns the
//! connection: statements are prepared once and run as function calls, and
//! the only hand-offs left are one job in and one answer out per payment.
//! Reads (card profiles, listings) stay on the sqlx pool; WAL lets them run
//! beside the writer.

use std::future::{ready, Future};
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use super::db::Backend;
use super::sql::{Row, SqlConn, StatementFuture, Value};
use super::writer::Store;
use crate::error::ServerError;

impl From<rusqlite::Error> for ServerError {
    fn from(e: rusqlite::Error) -> Self {
        ServerError::Ledger(e.to_string())
    }
}

/// Statements the writer keeps prepared (each job kind uses a handful).
const STATEMENT_CACHE: usize = 64;

/// The writer thread's connection to the ledger file.
pub struct SqliteStore {
    conn: Connection,
    _checkpointer: Checkpointer,
}

impl SqliteStore {
    /// Opens the ledger file that the sqlx pool opened (and migrated), with
    /// the same pragmas as every other connection: WAL, synchronous=FULL
    /// (an approval leaves only once its batch is on disk), foreign keys,
    /// and a busy timeout for the admin CLI writing at the same moment.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| ServerError::Ledger(format!("cannot open ledger {} for writing: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ServerError::Ledger(format!("ledger {}: journal_mode is {mode}, not WAL", path.display())));
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA wal_autocheckpoint = {BACKSTOP_CHECKPOINT_PAGES};"
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let checkpointer = Checkpointer::start(path)?;
        Ok(Self { conn, _checkpointer: checkpointer })
    }
}

/// The writer checkpoints only if the checkpointer falls this far behind
/// (pages of WAL, 64 MiB with 1 KiB pages): a backstop that bounds the WAL.
const BACKSTOP_CHECKPOINT_PAGES: u32 = 65_536;

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Copies committed WAL frames into the database file from a thread of its
/// own (PASSIVE: it never blocks the writer or the readers), so that the
/// writer's commits do not pay for SQLite's automatic checkpoint, which
/// profiled at 8% of the writer thread with its own fsync of the file.
struct Checkpointer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, ServerError> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eapay-ledger-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!("ledger checkpoint failed (the writer's backstop still bounds the WAL): {e}");
                    }
                }
            })
            .map_err(|e| ServerError::Ledger(format!("cannot start the ledger checkpoint thread: {e}")))?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An open write transaction (BEGIN IMMEDIATE: the write lock is taken at
/// the start, so a read-then-write never fails half way with SQLITE_BUSY).
/// Dropped without [`Store::commit`], it rolls back.
pub struct SqliteTx<'c> {
    conn: &'c mut Connection,
    open: bool,
}

impl SqliteTx<'_> {
    fn end(&mut self, sql: &str) -> Result<(), ServerError> {
        self.open = false;
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!("ledger writer: rollback failed: {e}");
            }
        }
    }
}

impl Store for SqliteStore {
    type Tx<'a> = SqliteTx<'a>;

    fn begin(&mut self) -> impl Future<Output = Result<SqliteTx<'_>, ServerError>> + Send {
        let started = self.conn.prepare_cached("BEGIN IMMEDIATE").and_then(|mut s| s.execute([]));
        ready(match started {
            Ok(_) => Ok(SqliteTx { conn: &mut self.conn, open: true }),
            Err(e) => Err(e.into()),
        })
    }

    fn commit(mut tx: Self::Tx<'_>) -> impl Future<Output = Result<(), ServerError>> + Send {
        let result = tx.end("COMMIT");
        if result.is_err() {
            // A failed COMMIT can leave the transaction open; the caller
            // must find the connection usable for the next one.
            tx.open = true;
        }
        drop(tx);
        ready(result)
    }

    fn rollback(mut tx: Self::Tx<'_>) -> impl Future<Output = ()> + Send {
        if let Err(e) = tx.end("ROLLBACK") {
            tracing::error!("ledger writer: rollback failed: {e}");
        }
        ready(())
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Int(Some(v)) => ValueRef::Integer(v),
            Value::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Value::Blob(Some(v)) => ValueRef::Blob(v),
            Value::Int(None) | Value::Text(None) | Value::Blob(None) => ValueRef::Null,
        }))
    }
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, column: usize) -> Result<Option<i64>, ServerError> {
        Ok(self.get(column)?)
    }
    fn text(&self, column: usize) -> Result<Option<String>, ServerError> {
        Ok(self.get(column)?)
    }
    fn blob(&self, column: usize) -> Result<Option<Vec<u8>>, ServerError> {
        Ok(self.get(column)?)
    }
}

impl SqlConn for SqliteTx<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Value<'a>]) -> StatementFuture<'a, u64> {
        let changed = self.conn.prepare_cached(sql).and_then(|mut s| s.execute(rusqlite::params_from_iter(params)));
        Box::pin(ready(changed.map(|n| n as u64).map_err(ServerError::from)))
    }

    fn fetch_optional<'a, T: Send + 'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value<'a>],
        decode: impl FnOnce(&dyn Row) -> Result<T, ServerError> + Send + 'a,
    ) -> StatementFuture<'a, Option<T>> {
        let run = || -> Result<Option<T>, ServerError> {
            let mut statement = self.conn.prepare_cached(sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(params))?;
            match rows.next()? {
                Some(row) => Ok(Some(decode(row)?)),
                None => Ok(None),
            }
        };
        Box::pin(ready(run()))
    }
}
