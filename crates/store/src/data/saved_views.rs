//! Saved views: named addresses of list pages, kept by one person or
//! shared with the organisation.

use tokio_postgres::Row;

use crate::connection::database::constraint_of;
use crate::{StoreError, TenantTx};

#[derive(Debug, Clone)]
pub struct SavedView {
    pub id: i32,
    pub name: String,
    /// The list page: `/contacts`, `/companies` or `/deals`.
    pub path: String,
    /// The page's query string, without `?`.
    pub query: String,
    pub shared: bool,
    pub created_by: i32,
}

const COLUMNS: &str = "id, name, path, query, shared, created_by";

fn from_row(r: &Row) -> SavedView {
    SavedView {
        id: r.get(0),
        name: r.get(1),
        path: r.get(2),
        query: r.get(3),
        shared: r.get(4),
        created_by: r.get(5),
    }
}

/// The views of a page that `user_id` sees: their own and the shared
/// ones, by name.
pub async fn visible(
    tx: &TenantTx,
    user_id: i32,
    path: &str,
) -> Result<Vec<SavedView>, StoreError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM saved_views
                 WHERE path = $2 AND (created_by = $1 OR shared)
                 ORDER BY lower(name), id LIMIT 100"
            ),
            &[&user_id, &path],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn get(tx: &TenantTx, id: i32) -> Result<Option<SavedView>, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM saved_views WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

pub async fn insert(
    tx: &TenantTx,
    name: &str,
    path: &str,
    query: &str,
    shared: bool,
    by: i32,
) -> Result<SavedView, StoreError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO saved_views (name, path, query, shared, created_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[&name, &path, &query, &shared, &by],
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some("saved_views_created_by_path_name_key") => {
                StoreError::Conflict("you have a view of this page with this name".into())
            }
            _ => e.into(),
        })?;
    Ok(from_row(&row))
}

pub async fn delete(tx: &TenantTx, id: i32) -> Result<bool, StoreError> {
    Ok(tx
        .execute("DELETE FROM saved_views WHERE id = $1", &[&id])
        .await?
        == 1)
}
