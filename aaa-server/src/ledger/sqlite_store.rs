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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    checkpointer: Checkpointer,
}

impl SqliteStore {
    /// Opens the ledger file that the sqlx pool opened (and migrated), with
    /// the same pragmas as every other connection: WAL, synchronous=FULL
    /// (an approval leaves only once its batch is on disk), foreign keys,
    /// and a busy timeout for the admin CLI writing at the same moment.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        Self::open_with(path, CheckpointPolicy::DEFAULT)
    }

    fn open_with(path: &Path, policy: CheckpointPolicy) -> Result<Self, ServerError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| ServerError::Ledger(format!("cannot open ledger {} for writing: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ServerError::Ledger(format!("ledger {}: journal_mode is {mode}, not WAL", path.display())));
        }
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let frames = |bytes: u64| (bytes / page_size.max(512) as u64).max(1);
        conn.execute_batch(&format!(
            "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA wal_autocheckpoint = {};",
            frames(policy.backstop_bytes)
        ))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let checkpointer = Checkpointer::start(path, policy, frames(policy.restart_bytes))?;
        Ok(Self { conn, checkpointer })
    }
}

/// When the WAL is copied back and started over (see [`Checkpointer`]).
#[derive(Debug, Clone, Copy)]
struct CheckpointPolicy {
    /// How often the checkpointer looks at what the writer did.
    poll: Duration,
    /// The longest time between two passes (copies of committed frames
    /// into the file). A pass that no commit overtakes (at low load,
    /// nearly every one) ends with a sync of the database file, and the
    /// writer's commits wait behind it on the device: with a pass every
    /// 100 ms, p99 at 500 payments/s was 9.5-13.8 ms, with one a second
    /// 6.4-7.4 ms, and the disk wrote half as much (BENCHMARKS.md, "The
    /// checkpointer's own syncs").
    idle: Duration,
    /// Rows the writer changes (a few per payment: the card's balance, the
    /// authorization, its audit line) after which a pass comes sooner than
    /// `idle`, so that under load `restart_bytes` is seen in time: at the
    /// peak the WAL reached 70-81 MiB with 6,000, 105-120 MiB with 20,000,
    /// which is too close to the backstop.
    busy_changes: u64,
    /// WAL size from which the writer finishes a checkpoint between two
    /// batches, so that the WAL starts over. Larger means fewer syncs of
    /// the database file, each longer: a page written many times between
    /// two syncs is written to disk once (BENCHMARKS.md, "The checkpoint
    /// stall": 24 MiB wrote 12% more than 48 MiB, 128 MiB had a worse p99).
    restart_bytes: u64,
    /// The writer's own automatic checkpoint, should the checkpointer fall
    /// behind this far: a bound on the WAL.
    backstop_bytes: u64,
}

impl CheckpointPolicy {
    const DEFAULT: CheckpointPolicy = CheckpointPolicy {
        poll: Duration::from_millis(100),
        idle: Duration::from_secs(1),
        busy_changes: 6_000,
        restart_bytes: 48 << 20,
        backstop_bytes: 128 << 20,
    };
}

/// At most this many syncs of the database file before a restart; a sync
/// this short means there is too little left to be worth another.
const RESTART_SYNCS: usize = 4;
const RESTART_SYNC_SHORT: Duration = Duration::from_millis(5);

/// Keeps the WAL short and its pages synced into the database file, off
/// the writer's path.
///
/// A thread of its own copies committed frames into the database file
/// (PASSIVE: it never blocks the writer or the readers), so that commits do
/// not pay for SQLite's automatic checkpoint (8% of the writer thread); once
/// a second, or sooner when the writer changed many rows
/// ([`CheckpointPolicy`]). But SQLite syncs the file after a checkpoint,
/// and lets the next transaction start the WAL over, only if no commit
/// landed while the checkpoint ran, which under steady load is never. The
/// WAL then grew to the backstop, and the writer's automatic checkpoint
/// there synced seconds of copied pages in one go: no answer for 100-330 ms
/// every few seconds (BENCHMARKS.md, "The checkpoint stall"). So once the
/// WAL holds `restart_bytes`, this
/// thread syncs the file itself, again until what is left is small, and
/// then asks the writer for one checkpoint between two batches. With no
/// other writer that checkpoint completes: it copies what landed since the
/// last pass, syncs those few pages, and the next transaction starts the
/// WAL from its first frame (overwriting blocks the file already has).
struct Checkpointer {
    restart_wanted: Arc<AtomicBool>,
    /// The writer connection's `total_changes`, as of its last batch.
    changes: Arc<AtomicU64>,
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (busy, frames in the WAL, frames copied).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

impl Checkpointer {
    fn start(path: &Path, policy: CheckpointPolicy, restart_frames: u64) -> Result<Self, ServerError> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let file = std::fs::File::open(path)
            .map_err(|e| ServerError::Ledger(format!("cannot open ledger {} to sync it: {e}", path.display())))?;
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let wanted = restart_wanted.clone();
        let changes = Arc::new(AtomicU64::new(0));
        let written = changes.clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("eapay-ledger-checkpoint".into())
            .spawn(move || {
                let (mut passed_at, mut changes_then) = (Instant::now(), 0u64);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(policy.poll) {
                    let changes = written.load(Ordering::Relaxed);
                    if passed_at.elapsed() < policy.idle && changes.saturating_sub(changes_then) < policy.busy_changes {
                        continue;
                    }
                    (passed_at, changes_then) = (Instant::now(), changes);
                    match checkpoint(&conn) {
                        Ok((_, log, _)) if u64::try_from(log).is_ok_and(|log| log >= restart_frames) => {
                            sync_most(&conn, &file);
                            wanted.store(true, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("ledger checkpoint failed (the writer's backstop still bounds the WAL): {e}")
                        }
                    }
                }
            })
            .map_err(|e| ServerError::Ledger(format!("cannot start the ledger checkpoint thread: {e}")))?;
        Ok(Self { restart_wanted, changes, stop, thread: Some(thread) })
    }
}

/// Syncs the database file, and copies and syncs again what landed during
/// the sync, until a sync is short: the writer's checkpoint then has only
/// a moment's pages left to sync.
fn sync_most(conn: &Connection, file: &std::fs::File) {
    for round in 1..=RESTART_SYNCS {
        let started = Instant::now();
        if let Err(e) = file.sync_data() {
            tracing::warn!("ledger checkpoint: cannot sync the database file: {e}");
            return;
        }
        if round == RESTART_SYNCS || started.elapsed() < RESTART_SYNC_SHORT {
            return;
        }
        if let Err(e) = checkpoint(conn) {
            tracing::warn!("ledger checkpoint failed: {e}");
            return;
        }
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

    /// The checkpoint the checkpointer asked for (see [`Checkpointer`]).
    /// Busy (the checkpointer is in a pass of its own) or held back by a
    /// reader, it is asked for again after the checkpointer's next pass.
    fn between_batches(&mut self) {
        self.checkpointer.changes.store(self.conn.total_changes(), Ordering::Relaxed);
        if self.checkpointer.restart_wanted.swap(false, Ordering::Relaxed) {
            if let Err(e) = checkpoint(&self.conn) {
                tracing::warn!("ledger writer: checkpoint failed: {e}");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::writer::block_on;

    /// A ledger-like file and a writer on it whose checkpointer passes every
    /// `every` and asks for a restart from `restart_bytes` on.
    fn writer(dir: &tempfile::TempDir, every: Duration, restart_bytes: u64) -> (SqliteStore, Connection) {
        let policy = CheckpointPolicy {
            poll: every,
            idle: every,
            busy_changes: u64::MAX,
            restart_bytes,
            backstop_bytes: 64 << 20,
        };
        writer_with(dir, policy)
    }

    fn writer_with(dir: &tempfile::TempDir, policy: CheckpointPolicy) -> (SqliteStore, Connection) {
        let path = dir.path().join("ledger.db");
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)",
            )
            .unwrap();
        (SqliteStore::open_with(&path, policy).unwrap(), other)
    }

    fn write(store: &mut SqliteStore, transactions: usize) {
        for i in 0..transactions {
            let tx = block_on(store.begin()).unwrap();
            tx.conn.execute("INSERT INTO t (v) VALUES (?1)", [vec![i as u8; 600]]).unwrap();
            block_on(SqliteStore::commit(tx)).unwrap();
        }
    }

    /// Frames in the WAL, read by a connection that is not the writer's.
    fn wal_frames(other: &Connection) -> i64 {
        checkpoint(other).unwrap().1
    }

    #[test]
    fn the_writers_checkpoint_between_batches_starts_the_wal_over() {
        let dir = tempfile::tempdir().unwrap();
        // A checkpointer that never wakes: the test asks for the restart.
        let (mut store, other) = writer(&dir, Duration::from_secs(3600), 1 << 20);
        write(&mut store, 200);
        store.between_batches();
        write(&mut store, 1);
        assert!(wal_frames(&other) >= 200, "nothing asked for a restart: the WAL keeps growing");

        store.checkpointer.restart_wanted.store(true, Ordering::Relaxed);
        write(&mut store, 200);
        store.between_batches();
        assert!(!store.checkpointer.restart_wanted.load(Ordering::Relaxed), "the request is taken");
        write(&mut store, 1);
        let frames = wal_frames(&other);
        assert!(frames < 10, "the next transaction starts at the WAL's first frame, found {frames} frames");
    }

    #[test]
    fn the_checkpointer_asks_for_a_restart_once_the_wal_is_large() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, other) = writer(&dir, Duration::from_millis(5), 64 << 10);
        write(&mut store, 20);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!store.checkpointer.restart_wanted.load(Ordering::Relaxed), "20 frames are below 64 KiB");
        // A reader in the middle of a read keeps the WAL from starting over
        // on its own (as a pass that no commit overtook would let it).
        other.execute_batch("BEGIN; SELECT count(*) FROM t;").unwrap();
        write(&mut store, 200);
        let asked = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            store.checkpointer.restart_wanted.load(Ordering::Relaxed)
        });
        assert!(asked, "200 KiB of WAL is above 64 KiB");
    }

    /// Until a pass copies them, new pages live in the WAL only: the
    /// database file grows at a pass, and only then.
    fn file_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("ledger.db")).unwrap().len()
    }

    #[test]
    fn the_checkpointer_passes_once_the_writer_changed_enough_rows() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CheckpointPolicy {
            poll: Duration::from_millis(5),
            idle: Duration::from_secs(3600),
            busy_changes: 100,
            restart_bytes: 64 << 20,
            backstop_bytes: 64 << 20,
        };
        let (mut store, _other) = writer_with(&dir, policy);
        let before = file_len(&dir);
        write(&mut store, 60);
        store.between_batches();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(file_len(&dir), before, "60 changes, and the idle period is an hour: no pass yet");

        write(&mut store, 60);
        store.between_batches();
        let passed = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            file_len(&dir) > before
        });
        assert!(passed, "120 changes are above 100: a pass copies the new pages into the file");
    }
}
