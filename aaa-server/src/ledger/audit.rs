//! The append-only audit log: one line per change and per refusal, written
//! in the same transaction as the change it describes. This module only ever
//! INSERTs into it (and the schema's triggers refuse UPDATE and DELETE).

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::db::to_u64;
use super::model::AuditEntry;
use super::sql::SqlConn;
use crate::error::ServerError;

/// One line to append.
#[derive(Debug, Default)]
pub struct Line<'a> {
    pub at_ms: i64,
    pub actor: &'a str,
    pub event: &'a str,
    pub authorization_id: Option<i64>,
    pub card_id: Option<&'a str>,
    pub merchant_id: Option<&'a str>,
    pub transaction_id: Option<&'a str>,
    pub detail: String,
}

pub async fn append<C: SqlConn + ?Sized>(conn: &mut C, line: Line<'_>) -> Result<(), ServerError> {
    const SQL: &str =
        "INSERT INTO audit_log (at_ms, actor, event, authorization_id, card_id, merchant_id, transaction_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
    let params = [
        line.at_ms.into(),
        line.actor.into(),
        line.event.into(),
        line.authorization_id.into(),
        line.card_id.into(),
        line.merchant_id.into(),
        line.transaction_id.into(),
        line.detail.as_str().into(),
    ];
    conn.execute(SQL, &params).await?;
    Ok(())
}

const COLUMNS: &str = "id, at_ms, actor, event, authorization_id, card_id, merchant_id, transaction_id, detail";

/// The lines about one authorization, oldest first.
pub async fn for_authorization(
    conn: &mut AnyConnection,
    authorization_id: i64,
) -> Result<Vec<AuditEntry>, ServerError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE authorization_id = $1 ORDER BY id"))
        .bind(authorization_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(entry).collect()
}

/// The newest `limit` lines (0 = all), newest first.
pub async fn recent(conn: &mut AnyConnection, limit: u32) -> Result<Vec<AuditEntry>, ServerError> {
    let limit = if limit == 0 { i64::MAX } else { i64::from(limit) };
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(entry).collect()
}

/// Every line, oldest first.
pub async fn all(conn: &mut AnyConnection) -> Result<Vec<AuditEntry>, ServerError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY id")).fetch_all(conn).await?;
    rows.iter().map(entry).collect()
}

fn entry(row: &AnyRow) -> Result<AuditEntry, ServerError> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at_ms: to_u64(row.try_get("at_ms")?, "audit time")?,
        actor: row.try_get("actor")?,
        event: row.try_get("event")?,
        authorization_id: row.try_get("authorization_id")?,
        card_id: row.try_get("card_id")?,
        merchant_id: row.try_get("merchant_id")?,
        transaction_id: row.try_get("transaction_id")?,
        detail: row.try_get("detail")?,
    })
}
