//! Merchants and which RADIUS clients may act for them. The permission check
//! keeps a rogue terminal from authorizing (or reversing) in another
//! merchant's name.
//!
//! A link (merchant, client) has a source. `merchant add --client` makes an
//! 'admin' link, which stays until `merchant remove-client`. The `merchants`
//! lists of `[[radius.clients]]` and `[[diameter.peers]]` make 'config'
//! links, which follow the file: each start of the server adds the ones it
//! lists and removes the ones it no longer lists (each change audited). An
//! admin link the file also lists stays an admin link. Instances sharing a
//! ledger must therefore list the same links: the last one started wins.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyConnection, Row};

use super::audit;
use super::db::{to_i64, to_u64};
use super::model::MerchantSummary;
use super::sql::SqlConn;
use crate::error::ServerError;

/// Creates the merchant or renames it, makes it active, and links `clients`
/// to it as admin links (links are only added; existing ones stay, and a
/// config link named here becomes an admin link).
pub async fn add(
    conn: &mut AnyConnection,
    merchant_id: &str,
    name: &str,
    clients: &[String],
    actor: &str,
    now_ms: u64,
) -> Result<(), ServerError> {
    check_id(merchant_id)?;
    if clients.iter().any(|c| c.is_empty()) {
        return Err(ServerError::Usage("a RADIUS client name is empty".into()));
    }
    sqlx::query(
        "INSERT INTO merchants (merchant_id, name, status, created_at) VALUES ($1, $2, 'active', $3)
         ON CONFLICT (merchant_id) DO UPDATE SET name = excluded.name, status = 'active'",
    )
    .bind(merchant_id)
    .bind(name)
    .bind(to_i64(now_ms / 1000, "time")?)
    .execute(&mut *conn)
    .await?;
    for client in clients {
        sqlx::query(
            "INSERT INTO merchant_clients (merchant_id, client_name, source) VALUES ($1, $2, 'admin')
             ON CONFLICT (merchant_id, client_name) DO UPDATE SET source = 'admin'",
        )
        .bind(merchant_id)
        .bind(client)
        .execute(&mut *conn)
        .await?;
    }
    let line = audit::Line {
        at_ms: to_i64(now_ms, "time")?,
        actor,
        event: "merchant added",
        merchant_id: Some(merchant_id),
        detail: format!("name={name:?} clients={}", clients.join(",")),
        ..Default::default()
    };
    audit::append(conn, line).await
}

fn check_id(merchant_id: &str) -> Result<(), ServerError> {
    if aaa_proto::payment::is_valid_id(merchant_id) {
        return Ok(());
    }
    Err(ServerError::Usage(format!(
        "merchant id {merchant_id:?}: 1 to {} printable characters without spaces",
        aaa_proto::payment::MAX_ID_LEN
    )))
}

/// A (merchant id, client name) link.
pub type Link = (String, String);

/// What [`follow_config`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConfigChanges {
    /// Merchants created because the configuration names them.
    pub merchants_added: Vec<String>,
    pub links_added: Vec<Link>,
    pub links_removed: Vec<Link>,
}

/// Makes the config links exactly `links` (module docs): creates the
/// merchants they name that do not exist (named by their id; an existing
/// merchant's name and status are left alone), adds the missing links, and
/// removes the config links not in `links`. Each change has an audit line;
/// a start with nothing to change writes none.
pub async fn follow_config(
    conn: &mut AnyConnection,
    links: &BTreeSet<Link>,
    actor: &str,
    now_ms: u64,
) -> Result<ConfigChanges, ServerError> {
    let at_ms = to_i64(now_ms, "time")?;
    let mut changes = ConfigChanges::default();
    for (merchant_id, client) in links {
        check_id(merchant_id)?;
        if client.is_empty() {
            return Err(ServerError::Config(format!("merchant {merchant_id}: a client name is empty")));
        }
        let created = sqlx::query(
            "INSERT INTO merchants (merchant_id, name, status, created_at) VALUES ($1, $1, 'active', $2)
             ON CONFLICT (merchant_id) DO NOTHING",
        )
        .bind(merchant_id)
        .bind(to_i64(now_ms / 1000, "time")?)
        .execute(&mut *conn)
        .await?;
        if created.rows_affected() > 0 {
            let detail = format!("name={merchant_id:?} from the configuration");
            let line = audit::Line {
                at_ms,
                actor,
                event: "merchant added",
                merchant_id: Some(merchant_id),
                detail,
                ..Default::default()
            };
            audit::append(conn, line).await?;
            changes.merchants_added.push(merchant_id.clone());
        }
        let linked = sqlx::query(
            "INSERT INTO merchant_clients (merchant_id, client_name, source) VALUES ($1, $2, 'config')
             ON CONFLICT (merchant_id, client_name) DO NOTHING",
        )
        .bind(merchant_id)
        .bind(client)
        .execute(&mut *conn)
        .await?;
        if linked.rows_affected() > 0 {
            let detail = format!("client={client} from the configuration");
            let line = audit::Line {
                at_ms,
                actor,
                event: "merchant client added",
                merchant_id: Some(merchant_id),
                detail,
                ..Default::default()
            };
            audit::append(conn, line).await?;
            changes.links_added.push((merchant_id.clone(), client.clone()));
        }
    }
    let configured = sqlx::query("SELECT merchant_id, client_name FROM merchant_clients WHERE source = 'config'")
        .fetch_all(&mut *conn)
        .await?;
    for row in configured {
        let link: Link = (row.try_get("merchant_id")?, row.try_get("client_name")?);
        if links.contains(&link) {
            continue;
        }
        sqlx::query("DELETE FROM merchant_clients WHERE merchant_id = $1 AND client_name = $2 AND source = 'config'")
            .bind(&link.0)
            .bind(&link.1)
            .execute(&mut *conn)
            .await?;
        let detail = format!("client={}: no longer in the configuration", link.1);
        let line = audit::Line {
            at_ms,
            actor,
            event: "merchant client removed",
            merchant_id: Some(&link.0),
            detail,
            ..Default::default()
        };
        audit::append(conn, line).await?;
        changes.links_removed.push(link);
    }
    Ok(changes)
}

/// All merchants ordered by id, with their clients.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<MerchantSummary>, ServerError> {
    let links = sqlx::query("SELECT merchant_id, client_name FROM merchant_clients ORDER BY merchant_id, client_name")
        .fetch_all(&mut *conn)
        .await?;
    let mut clients: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &links {
        clients.entry(row.try_get("merchant_id")?).or_default().push(row.try_get("client_name")?);
    }
    let rows = sqlx::query("SELECT merchant_id, name, status, created_at FROM merchants ORDER BY merchant_id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let merchant_id: String = row.try_get("merchant_id")?;
            let status: String = row.try_get("status")?;
            Ok(MerchantSummary {
                name: row.try_get("name")?,
                active: status == "active",
                clients: clients.remove(&merchant_id).unwrap_or_default(),
                created_at: to_u64(row.try_get("created_at")?, "merchant creation time")?,
                merchant_id,
            })
        })
        .collect()
}

/// Unlinks `client` from `merchant_id`, with an audit line; false if it was
/// not linked.
pub async fn remove_client(
    conn: &mut AnyConnection,
    merchant_id: &str,
    client: &str,
    actor: &str,
    now_ms: u64,
) -> Result<bool, ServerError> {
    let done = sqlx::query("DELETE FROM merchant_clients WHERE merchant_id = $1 AND client_name = $2")
        .bind(merchant_id)
        .bind(client)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let line = audit::Line {
        at_ms: to_i64(now_ms, "time")?,
        actor,
        event: "merchant client removed",
        merchant_id: Some(merchant_id),
        detail: format!("client={client}"),
        ..Default::default()
    };
    audit::append(conn, line).await?;
    Ok(true)
}

/// Whether RADIUS client `client` may act for the active merchant `merchant_id`.
pub async fn may_act<C: SqlConn + ?Sized>(conn: &mut C, client: &str, merchant_id: &str) -> Result<bool, ServerError> {
    const SQL: &str = "SELECT m.merchant_id FROM merchant_clients c JOIN merchants m ON m.merchant_id = c.merchant_id
         WHERE c.merchant_id = $1 AND c.client_name = $2 AND m.status = 'active'";
    Ok(conn.fetch_optional(SQL, &[merchant_id.into(), client.into()], |_| Ok(())).await?.is_some())
}
