//! Sign-in sessions. The table holds the SHA-256 of each token, never the
//! token.

use chrono::{DateTime, Utc};

use std::sync::Arc;
use std::time::Duration;

use crate::data::users::{USER_COLUMNS, User, user_from_row};
use crate::{Database, StoreError, TenantContext, TenantTx};

pub struct NewSession<'a> {
    pub user_id: i32,
    pub token_hash: &'a str,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
}

pub async fn create(tx: &TenantTx, new: &NewSession<'_>) -> Result<i32, StoreError> {
    let row = tx
        .query_one(
            "INSERT INTO sessions (user_id, token, expires_at, user_agent, ip)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &new.user_id,
                &new.token_hash,
                &new.expires_at,
                &new.user_agent,
                &new.ip,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub session_id: i32,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

fn authenticate_sql() -> String {
    format!(
        "SELECT s.id, s.last_seen_at, s.expires_at, {USER_COLUMNS}
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
           AND s.last_seen_at > now() - make_interval(secs => $2)
           AND u.active AND u.deleted_at IS NULL"
    )
}

/// Opens the request's tenant transaction and, in the same round trip,
/// finds the session with this token hash if it is neither revoked, past
/// its absolute expiry, nor idle longer than `idle_seconds`, and its user
/// is active.
pub async fn begin_authenticated(
    db: &Database,
    tenant: &Arc<TenantContext>,
    statement_timeout: Duration,
    token_hash: &str,
    idle_seconds: f64,
    writes: bool,
) -> Result<(TenantTx, Option<Authenticated>), StoreError> {
    let (tx, row) = TenantTx::begin_with_query_opt(
        db,
        tenant,
        statement_timeout,
        writes,
        &authenticate_sql(),
        &[&token_hash, &idle_seconds],
    )
    .await?;
    Ok((
        tx,
        row.map(|r| Authenticated {
            session_id: r.get(0),
            last_seen_at: r.get(1),
            expires_at: r.get(2),
            user: user_from_row(&r, 3),
        }),
    ))
}

/// Sets the session's idle clock. Unless `durable`, the transaction then
/// commits without waiting for the WAL flush (`synchronous_commit` off for
/// this transaction only): for transactions whose only write this is.
pub async fn touch(tx: &TenantTx, session_id: i32, durable: bool) -> Result<(), StoreError> {
    let sql = if durable {
        TOUCH_SQL
    } else {
        TOUCH_SQL_NOT_DURABLE
    };
    tx.execute(sql, &[&session_id]).await?;
    Ok(())
}

pub const TOUCH_SQL: &str = "UPDATE sessions SET last_seen_at = now() WHERE id = $1";
pub const TOUCH_SQL_NOT_DURABLE: &str =
    "WITH touched AS (UPDATE sessions SET last_seen_at = now() WHERE id = $1 RETURNING 1)
     SELECT set_config('synchronous_commit', 'off', true) FROM touched";

pub async fn revoke(tx: &TenantTx, session_id: i32) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        &[&session_id],
    )
    .await?;
    Ok(())
}

/// Ends every session of a user, except `keep` if given.
pub async fn revoke_all_for_user(
    tx: &TenantTx,
    user_id: i32,
    keep: Option<i32>,
) -> Result<u64, StoreError> {
    Ok(tx
        .execute(
            "UPDATE sessions SET revoked_at = now()
             WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
            &[&user_id, &keep],
        )
        .await?)
}
