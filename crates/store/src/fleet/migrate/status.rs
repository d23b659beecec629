//! Where the registry, `template` and the tenants stand.

use super::{MigrationSets, latest_tenant_version};
use crate::Database;

/// How many tenants are at each version, and the newest version.
#[derive(Debug, serde::Serialize)]
pub struct MigrationStatus {
    pub latest_version: i32,
    pub control_version: i32,
    pub template_version: i32,
    pub tenants_by_version: Vec<(i32, i64)>,
}

/// The newest version applied to the registry and to `template`.
async fn applied_versions(client: &tokio_postgres::Client) -> anyhow::Result<(i32, i32)> {
    let row = client
        .query_one(
            "SELECT
               (SELECT COALESCE(max(version::int), 0) FROM public.schema_migrations),
               (SELECT COALESCE(max(version::int), 0) FROM template.schema_migrations)",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

pub async fn status(db: &Database) -> anyhow::Result<MigrationStatus> {
    let client = db.connection().await?;
    let (control_version, template_version) = applied_versions(&client).await?;
    let rows = client
        .query(
            "SELECT schema_version, count(*) FROM public.tenants GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    Ok(MigrationStatus {
        latest_version: latest_tenant_version(),
        control_version,
        template_version,
        tenants_by_version: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    })
}

/// Whether the registry has been created and is at this program's version:
/// a server without rights to migrate refuses to start otherwise.
pub async fn pending_control_or_template(db: &Database) -> anyhow::Result<bool> {
    let client = db.connection().await?;
    let row = client
        .query_one(
            "SELECT to_regclass('public.schema_migrations') IS NOT NULL
                AND to_regclass('template.schema_migrations') IS NOT NULL",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(true);
    }
    let (control, template) = applied_versions(&client).await?;
    let sets = MigrationSets::embedded();
    Ok(control < sets.latest_control_version() || template < sets.latest_tenant_version())
}

#[derive(Debug, serde::Serialize)]
pub struct TenantVersion {
    pub id: i32,
    pub cluster: String,
    pub subdomain: String,
    pub schema_name: String,
    pub schema_version: i32,
}

/// Every tenant's version, from the registry.
pub async fn tenant_versions(db: &Database) -> anyhow::Result<Vec<TenantVersion>> {
    let client = db.connection().await?;
    let rows = client
        .query(
            "SELECT id, subdomain, schema_name, schema_version, cluster FROM public.tenants ORDER BY id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TenantVersion {
            id: r.get(0),
            cluster: r.get(4),
            subdomain: r.get(1),
            schema_name: r.get(2),
            schema_version: r.get(3),
        })
        .collect())
}
