//! Invitations live in the registry (`public.invitations`); a tenant
//! transaction reaches its own rows only, through row-level security keyed
//! to the tenant's role.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::connection::database::constraint_of;
use crate::{StoreError, TenantTx};

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: i32,
    pub email: String,
    pub role: String,
    pub expires_at: DateTime<Utc>,
    pub invited_by: Option<i32>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, role, expires_at, invited_by, created_at";

fn from_row(r: &Row) -> Invitation {
    Invitation {
        id: r.get(0),
        email: r.get(1),
        role: r.get(2),
        expires_at: r.get(3),
        invited_by: r.get(4),
        created_at: r.get(5),
    }
}

/// Issues an invitation. An expired pending invitation for the same email
/// is revoked first; a live one, or an existing user, is a conflict.
pub async fn create(
    tx: &TenantTx,
    email: &str,
    role: &str,
    token_hash: &str,
    expires_at: DateTime<Utc>,
    invited_by: i32,
) -> Result<Invitation, StoreError> {
    let tenant_id = tx.tenant().id;
    let user_exists = tx
        .query_opt(
            "SELECT 1 FROM users WHERE lower(email) = lower($1) AND deleted_at IS NULL",
            &[&email],
        )
        .await?
        .is_some();
    if user_exists {
        return Err(StoreError::Conflict(
            "a user with this email already exists".into(),
        ));
    }
    tx.execute(
        "UPDATE public.invitations SET revoked_at = now()
             WHERE tenant_id = $1 AND lower(email) = lower($2)
               AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at <= now()",
        &[&tenant_id, &email],
    )
    .await?;
    let row = tx.query_one(
            &format!(
                "INSERT INTO public.invitations (tenant_id, email, role, token, expires_at, invited_by)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[&tenant_id, &email, &role, &token_hash, &expires_at, &invited_by],
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some("idx_invitations_tenant_email_active") => {
                StoreError::Conflict("an active invitation for this email already exists".into())
            }
            _ => e.into(),
        })?;
    Ok(from_row(&row))
}

/// Pending invitations (not accepted, revoked or expired), by id.
pub async fn list_pending(
    tx: &TenantTx,
    after: i32,
    limit: i64,
) -> Result<Vec<Invitation>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM public.invitations
                 WHERE tenant_id = $1 AND id > $2 AND accepted_at IS NULL AND revoked_at IS NULL
                   AND expires_at > now()
                 ORDER BY id LIMIT $3"
            ),
            &[&tx.tenant().id, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Revokes a pending invitation; false if there is none with that id.
pub async fn revoke(tx: &TenantTx, id: i32) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "UPDATE public.invitations SET revoked_at = now()
             WHERE tenant_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
            &[&tx.tenant().id, &id],
        )
        .await?;
    Ok(n == 1)
}

/// The usable invitation with this token hash in this tenant.
pub async fn find_usable(
    tx: &TenantTx,
    token_hash: &str,
) -> Result<Option<Invitation>, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM public.invitations
                 WHERE tenant_id = $1 AND token = $2 AND accepted_at IS NULL
                   AND revoked_at IS NULL AND expires_at > now()"
            ),
            &[&tx.tenant().id, &token_hash],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Marks the invitation accepted if it is usable; at most once.
pub async fn accept(tx: &TenantTx, token_hash: &str) -> Result<Option<Invitation>, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE public.invitations SET accepted_at = now()
                 WHERE tenant_id = $1 AND token = $2 AND accepted_at IS NULL
                   AND revoked_at IS NULL AND expires_at > now()
                 RETURNING {COLUMNS}"
            ),
            &[&tx.tenant().id, &token_hash],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}
