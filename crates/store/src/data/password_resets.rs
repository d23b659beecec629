//! Password reset tokens (stored as SHA-256).

use chrono::{DateTime, Utc};

use crate::{StoreError, TenantTx};

pub async fn create(
    tx: &TenantTx,
    user_id: i32,
    token_hash: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO password_reset_tokens (user_id, token, expires_at) VALUES ($1, $2, $3)",
        &[&user_id, &token_hash, &expires_at],
    )
    .await?;
    Ok(())
}

/// Uses up the token if it is unused and unexpired; returns its user.
pub async fn consume(tx: &TenantTx, token_hash: &str) -> Result<Option<i32>, StoreError> {
    let row = tx
        .query_opt(
            "UPDATE password_reset_tokens SET used_at = now()
             WHERE token = $1 AND used_at IS NULL AND expires_at > now()
             RETURNING user_id",
            &[&token_hash],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Uses up every unused token of a user (the password just changed).
pub async fn expire_all(tx: &TenantTx, user_id: i32) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE password_reset_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL",
        &[&user_id],
    )
    .await?;
    Ok(())
}

/// Whether a token could be used now (without using it).
pub async fn is_usable(tx: &TenantTx, token_hash: &str) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM password_reset_tokens
                            WHERE token = $1 AND used_at IS NULL AND expires_at > now())",
            &[&token_hash],
        )
        .await?;
    Ok(row.get(0))
}
