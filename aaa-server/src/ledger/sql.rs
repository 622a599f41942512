//! The statements of the write path, once for both drivers.
//!
//! Decisions, settlements, SQN reservations and re-authentication use run
//! on two drivers: `sqlx` (PostgreSQL, and every read of either backend) and
//! `rusqlite` on the SQLite writer thread (`sqlite_store.rs`), where each
//! statement is a function call instead of a hand-off to sqlx's worker
//! thread. Both take the same SQL text (`$1, $2` placeholders: SQLite numbers
//! `$N` parameters by first appearance, and every statement here names them
//! in order) and the same typed parameters, and decode rows through [`Row`],
//! so each statement and each row decoder is written once.

use std::future::Future;
use std::pin::Pin;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Transaction};

use super::db::Backend;
use crate::error::ServerError;

/// One bound parameter. NULLs are typed: PostgreSQL checks a parameter's
/// type against its column even when it is NULL.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(Some(v))
    }
}

impl<'a> From<Option<&'a [u8]>> for Value<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        Value::Blob(v)
    }
}

/// A result row, read by column index.
pub trait Row {
    fn int(&self, column: usize) -> Result<Option<i64>, ServerError>;
    fn text(&self, column: usize) -> Result<Option<String>, ServerError>;
    fn blob(&self, column: usize) -> Result<Option<Vec<u8>>, ServerError>;

    fn int_required(&self, column: usize) -> Result<i64, ServerError> {
        self.int(column)?.ok_or_else(|| null(column))
    }
    fn text_required(&self, column: usize) -> Result<String, ServerError> {
        self.text(column)?.ok_or_else(|| null(column))
    }
    fn blob_required(&self, column: usize) -> Result<Vec<u8>, ServerError> {
        self.blob(column)?.ok_or_else(|| null(column))
    }
}

fn null(column: usize) -> ServerError {
    ServerError::Ledger(format!("stored column {column} is NULL where a value is required"))
}

/// A statement's result to await. Boxed, not `impl Future`: with an opaque
/// type here rustc cannot prove an `async fn` generic over [`SqlConn`] `Send`
/// when it runs on the pool (rust-lang/rust#100013). One small allocation
/// per statement.
pub type StatementFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ServerError>> + Send + 'a>>;

/// A connection (or open transaction) that runs statements. The futures are
/// `Send` so that the sqlx side runs on tokio; the rusqlite side finishes
/// its work before it returns the (ready) future.
pub trait SqlConn: Send {
    fn backend(&self) -> Backend;

    /// Rows changed.
    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Value<'a>]) -> StatementFuture<'a, u64>;

    /// The first row, decoded; None if there is none.
    fn fetch_optional<'a, T: Send + 'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value<'a>],
        decode: impl FnOnce(&dyn Row) -> Result<T, ServerError> + Send + 'a,
    ) -> StatementFuture<'a, Option<T>>;
}

/// The first row, which the statement always yields (an aggregate, `RETURNING`).
pub async fn fetch_one<'a, C: SqlConn + ?Sized, T: Send + 'a>(
    conn: &'a mut C,
    sql: &'a str,
    params: &'a [Value<'a>],
    decode: impl FnOnce(&dyn Row) -> Result<T, ServerError> + Send + 'a,
) -> Result<T, ServerError> {
    conn.fetch_optional(sql, params, decode)
        .await?
        .ok_or_else(|| ServerError::Ledger("internal: a statement that always yields a row yielded none".into()))
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    params: &'q [Value<'q>],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for param in params {
        query = match *param {
            Value::Int(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Blob(v) => query.bind(v),
        };
    }
    query
}

impl SqlConn for AnyConnection {
    fn backend(&self) -> Backend {
        match self.backend_name() {
            "PostgreSQL" => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Value<'a>]) -> StatementFuture<'a, u64> {
        Box::pin(async move { Ok(bind(sqlx::query(sql), params).execute(self).await?.rows_affected()) })
    }

    fn fetch_optional<'a, T: Send + 'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value<'a>],
        decode: impl FnOnce(&dyn Row) -> Result<T, ServerError> + Send + 'a,
    ) -> StatementFuture<'a, Option<T>> {
        Box::pin(async move {
            match bind(sqlx::query(sql), params).fetch_optional(self).await? {
                Some(row) => Ok(Some(decode(&row)?)),
                None => Ok(None),
            }
        })
    }
}

impl SqlConn for Transaction<'static, Any> {
    fn backend(&self) -> Backend {
        (**self).backend()
    }

    fn execute<'a>(&'a mut self, sql: &'a str, params: &'a [Value<'a>]) -> StatementFuture<'a, u64> {
        (**self).execute(sql, params)
    }

    fn fetch_optional<'a, T: Send + 'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value<'a>],
        decode: impl FnOnce(&dyn Row) -> Result<T, ServerError> + Send + 'a,
    ) -> StatementFuture<'a, Option<T>> {
        (**self).fetch_optional(sql, params, decode)
    }
}

impl Row for AnyRow {
    fn int(&self, column: usize) -> Result<Option<i64>, ServerError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
    fn text(&self, column: usize) -> Result<Option<String>, ServerError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
    fn blob(&self, column: usize) -> Result<Option<Vec<u8>>, ServerError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}
