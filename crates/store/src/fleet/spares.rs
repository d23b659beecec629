//! Spare tenant schemas: made and migrated ahead of need, so creating a
//! tenant renames one (schema and role) instead of running every
//! migration. Spare n is schema `spare_<n>` with role `<prefix>_spare_<n>`,
//! built exactly as a tenant's (default privileges, default pipeline
//! stages); `migrate` keeps them at the newest version and `check`
//! compares them with `template`. Renaming the role keeps its grants,
//! default privileges and memberships, which are held by the role's OID.

use crate::AdminDatabase;
use crate::connection::database::quote_ident;
use crate::fleet::migrate::{MigrationSets, QueryCounter, apply_pending, latest_tenant_version};
use crate::fleet::provision::{default_stages_sql, empty_schema_sql};
use crate::registry::naming::{spare_role_name, spare_schema_name};
use crate::registry::role_prefix;
use crate::{Database, PooledTx, StoreError};

/// Session-level advisory lock held by the one process refilling the pool.
pub const REFILL_LOCK_KEY: i64 = 0x4174_7269_756d_0003;

/// Takes a spare at the newest version, if any, and makes it `schema` with
/// role `role`, inside the caller's transaction (a rollback puts it back).
/// Concurrent provisionings take different spares.
pub(crate) async fn claim(
    tx: &PooledTx,
    schema: &str,
    role: &str,
    role_prefix: &str,
) -> Result<bool, StoreError> {
    let row = tx
        .client()
        .query_opt(
            "DELETE FROM public.spare_schemas WHERE id = (
               SELECT id FROM public.spare_schemas WHERE schema_version = $1
                ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&latest_tenant_version()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let id: i32 = row.get(0);
    tx.client()
        .batch_execute(&format!(
            "ALTER SCHEMA {} RENAME TO {};
             ALTER ROLE {} RENAME TO {};",
            quote_ident(&spare_schema_name(id)),
            quote_ident(schema),
            quote_ident(&spare_role_name(role_prefix, id)),
            quote_ident(role),
        ))
        .await?;
    Ok(true)
}

/// Spares at the newest version.
pub async fn ready_count(db: &Database) -> anyhow::Result<i64> {
    Ok(db
        .connection()
        .await?
        .query_one(
            "SELECT count(*) FROM public.spare_schemas WHERE schema_version = $1",
            &[&latest_tenant_version()],
        )
        .await?
        .get(0))
}

/// Every spare's schema name, for `check`.
pub(crate) async fn schema_names(client: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    Ok(client
        .query("SELECT id FROM public.spare_schemas ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| spare_schema_name(r.get(0)))
        .collect())
}

/// Makes one spare, in one transaction.
async fn create_one(db: &Database, sets: &MigrationSets) -> anyhow::Result<()> {
    let mut tx = PooledTx::begin(db, "").await?;
    tx.note_schema_created();
    let client = tx.client();
    let prefix = role_prefix(client).await?;
    let id: i32 = client
        .query_one(
            "INSERT INTO public.spare_schemas (schema_version) VALUES ($1) RETURNING id",
            &[&sets.latest_tenant_version()],
        )
        .await?
        .get(0);
    let schema = spare_schema_name(id);
    client
        .batch_execute(&empty_schema_sql(
            &schema,
            &spare_role_name(&prefix, id),
            &prefix,
        ))
        .await?;
    apply_pending(client, &schema, sets.tenant, &QueryCounter::default())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    client.batch_execute(&default_stages_sql()).await?;
    tx.commit().await?;
    Ok(())
}

/// Drops one spare: its schema, role and row.
async fn drop_one(db: &Database, id: i32) -> anyhow::Result<()> {
    let tx = PooledTx::begin(db, "").await?;
    let client = tx.client();
    let prefix = role_prefix(client).await?;
    let gone = client
        .execute("DELETE FROM public.spare_schemas WHERE id = $1", &[&id])
        .await?;
    if gone == 1 {
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE; DROP ROLE IF EXISTS {};",
                quote_ident(&spare_schema_name(id)),
                quote_ident(&spare_role_name(&prefix, id))
            ))
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Brings the pool to `size` spares at the newest version (making or
/// dropping spares) unless another process is doing it; the number made.
pub async fn refill(
    admin: &AdminDatabase,
    sets: &MigrationSets,
    size: usize,
) -> anyhow::Result<usize> {
    let db = admin.database();
    let lock = db.dedicated_connection().await?;
    let acquired: bool = lock
        .query_one("SELECT pg_try_advisory_lock($1)", &[&REFILL_LOCK_KEY])
        .await?
        .get(0);
    if !acquired {
        return Ok(0);
    }
    let rows = lock
        .query(
            "SELECT id, schema_version FROM public.spare_schemas ORDER BY id",
            &[],
        )
        .await?;
    let latest = sets.latest_tenant_version();
    let mut ready = 0;
    for row in rows {
        let (id, version): (i32, i32) = (row.get(0), row.get(1));
        // Left behind by an older version (migrate brings spares along;
        // this is for a migrate that failed on one), or more than asked.
        if version != latest || ready >= size {
            drop_one(db, id).await?;
        } else {
            ready += 1;
        }
    }
    let mut made = 0;
    while ready + made < size {
        create_one(db, sets).await?;
        made += 1;
    }
    Ok(made)
}
