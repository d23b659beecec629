//! Record lookups with a rule of their own: by name or email for an
//! import, a company's ancestry, the server's today.

use crate::{StoreError, TenantTx};

/// Today's date in UTC, as the server derives "today".
pub async fn today_utc(tx: &TenantTx) -> Result<chrono::NaiveDate, StoreError> {
    let row = tx
        .query_one("SELECT (now() AT TIME ZONE 'UTC')::date", &[])
        .await?;
    Ok(row.get(0))
}

/// Whether making `parent` the parent of company `id` would close a cycle.
pub async fn company_parent_makes_cycle(
    tx: &TenantTx,
    id: i32,
    parent: i32,
) -> Result<bool, StoreError> {
    let row = tx
        .query_one(
            "WITH RECURSIVE up (id, parent_company_id, depth) AS (
               SELECT id, parent_company_id, 1 FROM companies WHERE id = $2
               UNION ALL
               SELECT c.id, c.parent_company_id, up.depth + 1
               FROM companies c JOIN up ON c.id = up.parent_company_id
               WHERE up.depth < 10000
             )
             SELECT EXISTS (SELECT 1 FROM up WHERE id = $1)",
            &[&id, &parent],
        )
        .await?;
    Ok(row.get(0))
}

/// Live contacts with this email (any case): an import updates the one
/// it finds; two or more make the row ambiguous.
pub async fn contacts_by_email(tx: &TenantTx, email: &str) -> Result<Vec<i32>, StoreError> {
    let rows = tx
        .query(
            "SELECT id FROM contacts WHERE lower(email) = lower($1) AND deleted_at IS NULL ORDER BY id LIMIT 2",
            &[&email],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A live company with this name (any case), the oldest if several.
pub async fn company_by_name(tx: &TenantTx, name: &str) -> Result<Option<i32>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id FROM companies WHERE lower(name) = lower($1) AND deleted_at IS NULL ORDER BY id LIMIT 1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Company names by id, for the export's `company` column.
pub async fn company_names(tx: &TenantTx, ids: &[i32]) -> Result<Vec<(i32, String)>, StoreError> {
    let rows = tx
        .query("SELECT id, name FROM companies WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
