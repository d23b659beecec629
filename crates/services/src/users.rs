//! A tenant's users, as admins manage them.

use atrium_domain::{Action, Permissions, Role};
use atrium_store::users::{self, User, UserChanges};
use atrium_store::{TenantTx, sessions};

use crate::tenants::parse_name;
use crate::{CurrentUser, Problems, ServiceError};

/// A user as the API shows it: never a password hash.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i32,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
    #[schema(value_type = Object)]
    pub permissions: serde_json::Value,
    pub active: bool,
    pub email_verified: bool,
    pub last_login: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            role: u.role.clone(),
            permissions: u.permissions.clone(),
            active: u.active,
            email_verified: u.email_verified,
            last_login: u.last_login,
            created_at: u.created_at,
            updated_at: u.updated_at,
            deleted_at: u.deleted_at,
        }
    }
}

/// Only managers and admins (`records.restore`) see deleted rows.
pub fn check_include_deleted(me: &CurrentUser, include_deleted: bool) -> Result<(), ServiceError> {
    if include_deleted {
        me.require(Action::RecordsRestore)?;
    }
    Ok(())
}

pub async fn list(
    tx: &TenantTx,
    me: &CurrentUser,
    after: i32,
    limit: i64,
    include_deleted: bool,
) -> Result<Vec<User>, ServiceError> {
    check_include_deleted(me, include_deleted)?;
    Ok(users::list(tx, after, limit, include_deleted).await?)
}

pub async fn get(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
    include_deleted: bool,
) -> Result<User, ServiceError> {
    check_include_deleted(me, include_deleted)?;
    users::get(tx, id, include_deleted)
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))
}

/// A user locked for a change: `If-Match` is checked against this version
/// and no other change can slip in before the update.
pub async fn get_for_change(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
) -> Result<User, ServiceError> {
    me.require(Action::UsersManage)?;
    users::get_locked(tx, id)
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))
}

/// Changes to a user as they arrive from the edge, unchecked; `update`
/// parses them into the store's `UserChanges`.
#[derive(Debug, Default)]
pub struct UpdateUser {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Option<String>,
    pub active: Option<bool>,
    pub permissions: Option<serde_json::Value>,
}

pub async fn update(
    tx: &TenantTx,
    me: &CurrentUser,
    id: i32,
    request: UpdateUser,
) -> Result<User, ServiceError> {
    me.require(Action::UsersManage)?;
    let mut problems = Problems::default();
    let changes = UserChanges {
        first_name: request
            .first_name
            .and_then(|n| problems.check(parse_name("first_name", &n, 100))),
        last_name: request
            .last_name
            .and_then(|n| problems.check(parse_name("last_name", &n, 100))),
        role: request.role.and_then(|r| problems.check(Role::parse(&r))),
        active: request.active,
        permissions: request
            .permissions
            .and_then(|p| problems.check(Permissions::parse(&p))),
    };
    problems.into_result()?;
    let current = users::get(tx, id, false)
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))?;
    let role = changes.role.map_or(current.role.as_str(), |r| r.as_str());
    let stays_admin = role == "admin" && changes.active.unwrap_or(current.active);
    if current.role == "admin" && current.active && !stays_admin {
        ensure_another_admin(tx, id).await?;
    }
    let updated = users::update(tx, id, &changes, me.id())
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))?;
    if changes.active == Some(false) {
        sessions::revoke_all_for_user(tx, id, None).await?;
    }
    Ok(updated)
}

/// Deactivates and soft-deletes a user, ending their sessions.
pub async fn delete(tx: &TenantTx, me: &CurrentUser, id: i32) -> Result<(), ServiceError> {
    me.require(Action::UsersManage)?;
    let current = users::get(tx, id, false)
        .await?
        .ok_or_else(|| ServiceError::NotFound("user".into()))?;
    if current.role == "admin" && current.active {
        ensure_another_admin(tx, id).await?;
    }
    users::soft_delete(tx, id, me.id()).await?;
    sessions::revoke_all_for_user(tx, id, None).await?;
    Ok(())
}

async fn ensure_another_admin(tx: &TenantTx, leaving: i32) -> Result<(), ServiceError> {
    if users::other_active_admins(tx, leaving).await? == 0 {
        return Err(ServiceError::Conflict(
            "this would leave the organisation without an active admin".into(),
        ));
    }
    Ok(())
}

/// The fields a person's name is made of, checked together.
pub(crate) fn parse_person(
    problems: &mut Problems,
    first_name: &str,
    last_name: &str,
) -> Option<(String, String)> {
    let first = problems.check(parse_name("first_name", first_name, 100));
    let last = problems.check(parse_name("last_name", last_name, 100));
    first.zip(last)
}
