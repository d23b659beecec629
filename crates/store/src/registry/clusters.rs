//! The data clusters the registry records (`public.clusters`): their
//! names, whether new tenants may be placed on them, and their tenants.

use crate::{AdminDatabase, Database, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterEntry {
    pub name: String,
    /// Whether new tenants may be placed on the cluster.
    pub accepting: bool,
    pub tenants: i64,
}

/// Every recorded cluster, by name, with its tenant count.
pub async fn list(db: &Database) -> Result<Vec<ClusterEntry>, StoreError> {
    let rows = db
        .connection()
        .await?
        .query(
            "SELECT c.name, c.accepting, count(t.id)
             FROM public.clusters c LEFT JOIN public.tenants t ON t.cluster = c.name
             GROUP BY c.name, c.accepting ORDER BY c.name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClusterEntry {
            name: r.get(0),
            accepting: r.get(1),
            tenants: r.get(2),
        })
        .collect())
}

/// Lets new tenants be placed on the cluster, or stops it; `NotFound`
/// for a cluster the registry does not record.
pub async fn set_accepting(
    admin: &AdminDatabase,
    name: &str,
    accepting: bool,
) -> Result<(), StoreError> {
    let changed = admin
        .database()
        .connection()
        .await?
        .execute(
            "UPDATE public.clusters SET accepting = $2 WHERE name = $1",
            &[&name, &accepting],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Records declared clusters the registry does not know yet (accepting
/// new tenants, as a new cluster is added to take them).
pub async fn record(admin: &AdminDatabase, names: &[&str]) -> Result<(), StoreError> {
    if names.is_empty() {
        return Ok(());
    }
    admin
        .database()
        .connection()
        .await?
        .execute(
            "INSERT INTO public.clusters (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&names],
        )
        .await?;
    Ok(())
}

/// The server's version and the database's size in bytes.
pub async fn version_and_size(db: &Database) -> Result<(String, i64), StoreError> {
    let row = db
        .connection()
        .await?
        .query_one(
            "SELECT current_setting('server_version'), pg_database_size(current_database())",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
