//! The registry of tenants in `public`: the only place schema names come
//! from.

pub mod clusters;
pub mod directory;
pub mod naming;

use crate::AdminDatabase;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use tokio_postgres::{Client, Row};

use atrium_domain::{Subdomain, TenantStatus, Tier};

use crate::connection::database::{constraint_of, quote_ident};
use crate::registry::naming::tenant_role_name;
use crate::{Database, Fleet, HOME_CLUSTER, PooledTx, StoreError};

/// Enough of a tenant to find its schema.
#[derive(Debug, Clone)]
pub struct TenantRef {
    pub id: i32,
    pub subdomain: String,
    pub schema_name: String,
    pub schema_version: i32,
    /// A spare schema (`spare_<id>`, named by its schema as subdomain),
    /// which `migrate` keeps at the newest version like a tenant.
    pub spare: bool,
}

/// Live record counts kept current by triggers in each tenant schema, so
/// reading them never opens the tenant's tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TenantCounts {
    pub users: i64,
    pub companies: i64,
    pub contacts: i64,
    pub deals: i64,
    pub activities: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantEntry {
    pub id: i32,
    pub name: String,
    pub subdomain: String,
    pub schema_name: String,
    pub status: TenantStatus,
    pub tier: Tier,
    pub cluster: String,
    pub schema_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub counts: TenantCounts,
    /// While in maintenance: what its people are told, who put it there,
    /// and since when.
    pub maintenance: Option<Maintenance>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Maintenance {
    pub message: Option<String>,
    pub by: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

const TENANT_COLUMNS: &str = "t.id, t.name, t.subdomain, t.schema_name, t.status, t.tier, \
     t.cluster, t.schema_version, t.created_at, t.updated_at, \
     COALESCE(c.users, 0), COALESCE(c.companies, 0), COALESCE(c.contacts, 0), \
     COALESCE(c.deals, 0), COALESCE(c.activities, 0), \
     t.maintenance_message, t.maintenance_by, t.maintenance_since";

const TENANT_FROM: &str =
    "public.tenants t LEFT JOIN public.tenant_counters c ON c.tenant_id = t.id";

/// Notified by a trigger whenever a tenant row changes (control migration
/// 0003), so servers drop cached lookups; the payload is the tenant id.
pub const TENANT_CHANNEL: &str = "atrium_tenants";

fn tenant_from_row(row: &Row) -> anyhow::Result<TenantEntry> {
    Ok(TenantEntry {
        id: row.get(0),
        name: row.get(1),
        subdomain: row.get(2),
        schema_name: row.get(3),
        status: TenantStatus::parse(row.get(4))?,
        tier: Tier::parse(row.get(5))?,
        cluster: row.get(6),
        schema_version: row.get(7),
        created_at: row.get(8),
        updated_at: row.get(9),
        counts: TenantCounts {
            users: row.get(10),
            companies: row.get(11),
            contacts: row.get(12),
            deals: row.get(13),
            activities: row.get(14),
        },
        maintenance: (row.get::<_, &str>(4) == "maintenance").then(|| Maintenance {
            message: row.get(15),
            by: row.get(16),
            since: row.get(17),
        }),
    })
}

/// The live counts of tenants `ids` as the database they live on keeps
/// them (the home registry's counters cover only the home's tenants).
pub async fn counts_of(db: &Database, ids: &[i32]) -> anyhow::Result<HashMap<i32, TenantCounts>> {
    let rows = db
        .connection()
        .await?
        .query(
            "SELECT tenant_id, users, companies, contacts, deals, activities
               FROM public.tenant_counters WHERE tenant_id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                TenantCounts {
                    users: r.get(1),
                    companies: r.get(2),
                    contacts: r.get(3),
                    deals: r.get(4),
                    activities: r.get(5),
                },
            )
        })
        .collect())
}

/// Every tenant's schema name and subdomain.
pub async fn schema_subdomains(db: &Database) -> anyhow::Result<Vec<(String, String)>> {
    let rows = db
        .connection()
        .await?
        .query("SELECT schema_name, subdomain FROM public.tenants", &[])
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every tenant's cluster, schema name and subdomain: a schema is a
/// tenant only on the cluster the registry places it on (in the middle of
/// a move, the target holds a copy under the same name).
pub async fn placements(db: &Database) -> anyhow::Result<Vec<(String, String, String)>> {
    let rows = db
        .connection()
        .await?
        .query(
            "SELECT cluster, schema_name, subdomain FROM public.tenants",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Tenants ordered by id, a page at a time (`after` is the last id seen).
pub async fn list(db: &Database, after: i32, limit: i64) -> anyhow::Result<Vec<TenantEntry>> {
    let client = db.connection().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {TENANT_COLUMNS} FROM {TENANT_FROM} WHERE t.id > $1 ORDER BY t.id LIMIT $2"
            ),
            &[&after, &limit],
        )
        .await?;
    rows.iter().map(tenant_from_row).collect()
}

pub async fn find_by_id(db: &Database, id: i32) -> Result<TenantEntry, StoreError> {
    let client = db.connection().await?;
    let row = client
        .query_opt(
            &format!("SELECT {TENANT_COLUMNS} FROM {TENANT_FROM} WHERE t.id = $1"),
            &[&id],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(tenant_from_row(&row)?)
}

pub async fn find_by_subdomain(db: &Database, subdomain: &str) -> Result<TenantEntry, StoreError> {
    let client = db.connection().await?;
    let row = client
        .query_opt(
            &format!("SELECT {TENANT_COLUMNS} FROM {TENANT_FROM} WHERE t.subdomain = lower($1)"),
            &[&subdomain],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok(tenant_from_row(&row)?)
}

/// What may change on a tenant; `None` keeps the current value.
#[derive(Debug, Default, Clone)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub subdomain: Option<Subdomain>,
    pub tier: Option<Tier>,
    pub status: Option<TenantStatus>,
    /// What the tenant's people are told while it is in maintenance.
    pub maintenance_message: Option<String>,
    /// Who makes the change (recorded when it puts the tenant in
    /// maintenance).
    pub changed_by: Option<String>,
}

pub async fn update(
    admin: &AdminDatabase,
    id: i32,
    changes: &TenantChanges,
) -> Result<TenantEntry, StoreError> {
    let db = admin.database();
    let tx = PooledTx::begin(db, "").await?;
    let updated = tx
        .client()
        .execute(
            // Maintenance starts with who and when; a new message may
            // replace the one given; leaving it clears all three.
            "UPDATE public.tenants SET
               name = COALESCE($2, name),
               subdomain = COALESCE($3, subdomain),
               tier = COALESCE($4, tier),
               status = COALESCE($5, status),
               maintenance_message = CASE WHEN COALESCE($5, status) = 'maintenance'
                                          THEN COALESCE($6, maintenance_message) END,
               maintenance_by = CASE WHEN COALESCE($5, status) <> 'maintenance' THEN NULL
                                     WHEN status = 'maintenance' THEN maintenance_by
                                     ELSE $7 END,
               maintenance_since = CASE WHEN COALESCE($5, status) <> 'maintenance' THEN NULL
                                        WHEN status = 'maintenance' THEN maintenance_since
                                        ELSE now() END
             WHERE id = $1",
            &[
                &id,
                &changes.name,
                &changes.subdomain.as_ref().map(Subdomain::as_str),
                &changes.tier.map(Tier::as_str),
                &changes.status.map(TenantStatus::as_str),
                &changes.maintenance_message,
                &changes.changed_by,
            ],
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some("tenants_subdomain_key") => {
                StoreError::Conflict("subdomain is already taken".into())
            }
            _ => e.into(),
        })?;
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await?;
    find_by_id(db, id).await
}

/// Drops the tenant's schema with every row in it, its database role and
/// its registry row. On the home database that is one transaction; on
/// another cluster the registry row goes in a home transaction committed
/// once the cluster's schema is gone, so a cluster that cannot be reached
/// leaves the tenant as it was.
pub async fn delete(fleet: &Fleet, id: i32) -> Result<(), StoreError> {
    let home = fleet.home().admin.database();
    let tx = PooledTx::begin(home, "").await?;
    let client = tx.client();
    let row = client
        .query_opt(
            "DELETE FROM public.tenants WHERE id = $1 RETURNING schema_name, cluster",
            &[&id],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
    let (schema, cluster): (String, String) = (row.get(0), row.get(1));
    let role = tenant_role_name(&role_prefix(client).await?, id);
    if cluster == HOME_CLUSTER {
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE; DROP ROLE IF EXISTS {};",
                quote_ident(&schema),
                quote_ident(&role)
            ))
            .await?;
    } else {
        let on = fleet.cluster(&cluster).ok_or_else(|| {
            anyhow::anyhow!(
                "tenant {id} is on cluster {cluster}, which this process has no address for"
            )
        })?;
        crate::fleet::provision::drop_on_cluster(&on.admin, id, &schema, &role).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn tenants_below_version(
    client: &Client,
    version: i32,
) -> Result<Vec<TenantRef>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, subdomain, schema_name, schema_version, false FROM public.tenants
              WHERE schema_version < $1
             UNION ALL
             SELECT id, 'spare_' || id, 'spare_' || id, schema_version, true FROM public.spare_schemas
              WHERE schema_version < $1
             ORDER BY 5, 1",
            &[&version],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TenantRef {
            id: r.get(0),
            subdomain: r.get(1),
            schema_name: r.get(2),
            schema_version: r.get(3),
            spare: r.get(4),
        })
        .collect())
}

/// The prefix of this database's tenant role names, made when the registry
/// was created.
pub async fn role_prefix(client: &Client) -> Result<String, tokio_postgres::Error> {
    client
        .query_one("SELECT role_prefix FROM public.installation", &[])
        .await
        .map(|r| r.get(0))
}

/// System-wide totals, read from the counters: no tenant schema is opened.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Totals {
    pub tenant_count: i64,
    pub total_users: i64,
    pub total_companies: i64,
    pub total_contacts: i64,
    pub total_deals: i64,
    pub total_activities: i64,
}

pub async fn totals(db: &Database) -> anyhow::Result<Totals> {
    let client = db.connection().await?;
    let row = client
        .query_one(
            "SELECT count(*),
                    COALESCE(sum(c.users), 0)::bigint, COALESCE(sum(c.companies), 0)::bigint,
                    COALESCE(sum(c.contacts), 0)::bigint, COALESCE(sum(c.deals), 0)::bigint,
                    COALESCE(sum(c.activities), 0)::bigint
             FROM public.tenants t LEFT JOIN public.tenant_counters c ON c.tenant_id = t.id",
            &[],
        )
        .await?;
    Ok(Totals {
        tenant_count: row.get(0),
        total_users: row.get(1),
        total_companies: row.get(2),
        total_contacts: row.get(3),
        total_deals: row.get(4),
        total_activities: row.get(5),
    })
}

/// Counts a tenant's live rows the slow way, by reading its tables: for
/// checking the counters, never for serving a request.
pub async fn count_rows(db: &Database, schema_name: &str) -> anyhow::Result<TenantCounts> {
    let client = db.connection().await?;
    let s = quote_ident(schema_name);
    let row = client
        .query_one(&format!("SELECT {}", live_counts_sql(&s)), &[])
        .await?;
    Ok(TenantCounts {
        users: row.get(0),
        companies: row.get(1),
        contacts: row.get(2),
        deals: row.get(3),
        activities: row.get(4),
    })
}

/// The live-row counts of a schema (quoted), in the counters' column
/// order (users, companies, contacts, deals, activities): the rule the
/// counter triggers keep.
pub(crate) fn live_counts_sql(q_schema: &str) -> String {
    format!(
        "(SELECT count(*) FROM {q_schema}.users WHERE active AND deleted_at IS NULL),
         (SELECT count(*) FROM {q_schema}.companies WHERE deleted_at IS NULL),
         (SELECT count(*) FROM {q_schema}.contacts WHERE deleted_at IS NULL),
         (SELECT count(*) FROM {q_schema}.deals WHERE deleted_at IS NULL),
         (SELECT count(*) FROM {q_schema}.activities WHERE deleted_at IS NULL)"
    )
}
