//! A tenant's users.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::connection::database::constraint_of;
use crate::{StoreError, TenantTx};

#[derive(Debug, Clone)]
pub struct User {
    pub id: i32,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    pub permissions: serde_json::Value,
    pub active: bool,
    pub email_verified: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

pub(crate) const USER_COLUMNS: &str = "u.id, u.email, u.first_name, u.last_name, u.role, \
     u.permissions, u.active, u.email_verified, u.last_login, u.created_at, u.updated_at, \
     u.deleted_at";

/// Reads a user from the first 12 columns of `row` (as [`USER_COLUMNS`]).
pub(crate) fn user_from_row(row: &Row, offset: usize) -> User {
    User {
        id: row.get(offset),
        email: row.get(offset + 1),
        first_name: row.get(offset + 2),
        last_name: row.get(offset + 3),
        role: row.get(offset + 4),
        permissions: row.get(offset + 5),
        active: row.get(offset + 6),
        email_verified: row.get(offset + 7),
        last_login: row.get(offset + 8),
        created_at: row.get(offset + 9),
        updated_at: row.get(offset + 10),
        deleted_at: row.get(offset + 11),
    }
}

/// The user signing in with `email` (any case), with their password hash.
pub async fn find_for_login(
    tx: &TenantTx,
    email: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {USER_COLUMNS}, u.password_hash FROM users u
                 WHERE lower(u.email) = lower($1) AND u.deleted_at IS NULL"
            ),
            &[&email],
        )
        .await?;
    Ok(row.map(|r| (user_from_row(&r, 0), r.get(12))))
}

pub async fn get(
    tx: &TenantTx,
    id: i32,
    include_deleted: bool,
) -> Result<Option<User>, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {USER_COLUMNS} FROM users u
                 WHERE u.id = $1 AND ($2 OR u.deleted_at IS NULL)"
            ),
            &[&id, &include_deleted],
        )
        .await?;
    Ok(row.map(|r| user_from_row(&r, 0)))
}

/// A live user, locked until the transaction ends (read-check-write).
pub async fn get_locked(tx: &TenantTx, id: i32) -> Result<Option<User>, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL FOR UPDATE"),
            &[&id],
        )
        .await?;
    Ok(row.map(|r| user_from_row(&r, 0)))
}

pub async fn get_password_hash(tx: &TenantTx, id: i32) -> Result<Option<String>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT password_hash FROM users WHERE id = $1 AND deleted_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A page of users ordered by id, after `after`.
pub async fn list(
    tx: &TenantTx,
    after: i32,
    limit: i64,
    include_deleted: bool,
) -> Result<Vec<User>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {USER_COLUMNS} FROM users u
                 WHERE u.id > $1 AND ($3 OR u.deleted_at IS NULL)
                 ORDER BY u.id LIMIT $2"
            ),
            &[&after, &limit, &include_deleted],
        )
        .await?;
    Ok(rows.iter().map(|r| user_from_row(r, 0)).collect())
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub role: &'a str,
    pub email_verified: bool,
    pub created_by: Option<i32>,
}

pub async fn insert(tx: &TenantTx, new: &NewUser<'_>) -> Result<User, StoreError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO users AS u (email, password_hash, first_name, last_name, role,
                                         email_verified, created_by, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 RETURNING {USER_COLUMNS}"
            ),
            &new.params(),
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some("users_email_key") => {
                StoreError::Conflict("a user with this email already exists".into())
            }
            _ => e.into(),
        })?;
    Ok(user_from_row(&row, 0))
}

impl NewUser<'_> {
    /// `$1`–`$7` of an insert or a revival: email, password hash, names,
    /// role, whether the email is verified, who made the user.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        [
            &self.email,
            &self.password_hash,
            &self.first_name,
            &self.last_name,
            &self.role,
            &self.email_verified,
            &self.created_by,
        ]
    }
}

/// Brings back a deleted user with this email as a new member (an
/// invitation accepted by someone who was removed earlier): same id and
/// history, new name, password and role, no old overrides.
pub async fn revive(tx: &TenantTx, new: &NewUser<'_>) -> Result<Option<User>, StoreError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE users AS u SET deleted_at = NULL, active = true, password_hash = $2,
                   first_name = $3, last_name = $4, role = $5, email_verified = $6,
                   permissions = '{{}}', updated_by = $7
                 WHERE lower(u.email) = lower($1) AND u.deleted_at IS NOT NULL
                 RETURNING {USER_COLUMNS}"
            ),
            &new.params(),
        )
        .await?;
    Ok(row.map(|r| user_from_row(&r, 0)))
}

/// Checked changes to a user; `None` keeps the value.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Option<atrium_domain::Role>,
    pub active: Option<bool>,
    pub permissions: Option<atrium_domain::Permissions>,
}

pub async fn update(
    tx: &TenantTx,
    id: i32,
    changes: &UserChanges,
    by: i32,
) -> Result<Option<User>, StoreError> {
    let role = changes.role.map(|r| r.as_str());
    let permissions = changes.permissions.as_ref().map(|p| p.to_json());
    let row = tx
        .query_opt(
            &format!(
                "UPDATE users AS u SET
                   first_name = COALESCE($2, u.first_name),
                   last_name = COALESCE($3, u.last_name),
                   role = COALESCE($4, u.role),
                   active = COALESCE($5, u.active),
                   permissions = COALESCE($6, u.permissions),
                   updated_by = $7
                 WHERE u.id = $1 AND u.deleted_at IS NULL
                 RETURNING {USER_COLUMNS}"
            ),
            &[
                &id,
                &changes.first_name,
                &changes.last_name,
                &role,
                &changes.active,
                &permissions,
                &by,
            ],
        )
        .await?;
    Ok(row.map(|r| user_from_row(&r, 0)))
}

/// Deactivates and soft-deletes a user.
pub async fn soft_delete(tx: &TenantTx, id: i32, by: i32) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "UPDATE users SET active = false, deleted_at = now(), updated_by = $2
             WHERE id = $1 AND deleted_at IS NULL",
            &[&id, &by],
        )
        .await?;
    Ok(n == 1)
}

/// Active admins other than `except`, locked until the transaction ends so
/// two concurrent demotions cannot both see the other as the remaining
/// admin.
pub async fn other_active_admins(tx: &TenantTx, except: i32) -> Result<i64, StoreError> {
    let rows = tx
        .query(
            "SELECT id FROM users
             WHERE role = 'admin' AND active AND deleted_at IS NULL
             ORDER BY id FOR UPDATE",
            &[],
        )
        .await?;
    Ok(rows.iter().filter(|r| r.get::<_, i32>(0) != except).count() as i64)
}

pub async fn set_password(tx: &TenantTx, id: i32, password_hash: &str) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE users SET password_hash = $2, updated_by = $1 WHERE id = $1",
        &[&id, &password_hash],
    )
    .await?;
    Ok(())
}

pub async fn record_login(tx: &TenantTx, id: i32) -> Result<(), StoreError> {
    tx.execute("UPDATE users SET last_login = now() WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// Whether `id` is an active, not deleted user of this tenant.
pub async fn active_user_exists(tx: &TenantTx, id: i32) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = $1 AND active AND deleted_at IS NULL)",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}
