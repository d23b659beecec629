//! Creating a tenant: one transaction from registry row to first admin, so a
//! failure at any step leaves no schema, no role and no row behind.

use crate::AdminDatabase;
use atrium_domain::{Email, Subdomain, Tier};

use crate::connection::database::{constraint_of, quote_ident};
use crate::fleet::migrate::{MigrationSets, QueryCounter, apply_pending, latest_tenant_version};
use crate::registry::naming::{tenant_group_role, tenant_role_name};
use crate::registry::{self, TenantEntry};
use crate::{ClusterDatabases, HOME_CLUSTER, PooledTx, StoreError};

/// The first admin of a new tenant. The password arrives already hashed:
/// hashing is slow on purpose and belongs on a blocking thread, not inside
/// an open transaction.
pub struct FirstAdmin<'a> {
    pub email: &'a Email,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: &'a str,
}

pub struct NewTenant<'a> {
    pub name: &'a str,
    pub subdomain: &'a Subdomain,
    pub tier: Tier,
    pub admin: FirstAdmin<'a>,
}

/// The pipeline every tenant starts with: name, probability, kind.
pub const DEFAULT_STAGES: &[(&str, i32, &str)] = &[
    ("lead", 10, "open"),
    ("qualified", 25, "open"),
    ("proposal", 50, "open"),
    ("negotiation", 75, "open"),
    ("won", 100, "won"),
    ("lost", 0, "lost"),
];

/// The login role of a production install (see `atrium db roles`): it
/// reaches tenant data only by switching to a tenant role it is a member of.
pub const APPLICATION_ROLE: &str = "atrium_application";

/// Creates the tenant on `cluster`. On the home database (`default`) that
/// is one transaction. Elsewhere the registry row is written in a home
/// transaction that stays open while the cluster's transaction makes the
/// schema, and commits after it: a failure before leaves nothing, and
/// the rare failure of the home commit itself is undone on the cluster.
#[tracing::instrument(skip_all, fields(tenant = %new.subdomain.as_str(), cluster = %cluster.name))]
pub async fn provision(
    home: &AdminDatabase,
    cluster: &ClusterDatabases,
    new: &NewTenant<'_>,
) -> Result<(TenantEntry, i32), StoreError> {
    let mut home_tx = PooledTx::begin(home.database(), "").await?;
    let (id, schema, role_prefix) = insert_registry_row(
        &mut home_tx,
        new.name,
        new.subdomain,
        new.tier,
        &cluster.name,
    )
    .await?;
    let admin_id = if cluster.name == HOME_CLUSTER {
        let admin_id = fill_tenant(&mut home_tx, id, &schema, &role_prefix, new).await?;
        home_tx.commit().await?;
        admin_id
    } else {
        let mut tx = PooledTx::begin(cluster.admin.database(), "").await?;
        expect_role_prefix(tx.client(), &cluster.name, &role_prefix).await?;
        tx.client()
            .execute(
                "INSERT INTO public.tenants (id, name, subdomain, schema_name, tier, cluster,
                                             created_at)
                 VALUES ($1, $2, $3, $3, $4, $5, now())",
                &[&id, &new.name, &schema, &new.tier.as_str(), &cluster.name],
            )
            .await?;
        tx.note_tenant(id);
        tx.note_schema_created();
        let admin_id = fill_tenant(&mut tx, id, &schema, &role_prefix, new).await?;
        home_tx
            .client()
            .execute(
                "UPDATE public.tenants SET schema_version = $2 WHERE id = $1",
                &[&id, &latest_tenant_version()],
            )
            .await?;
        tx.commit().await?;
        if let Err(e) = home_tx.commit().await {
            let role = tenant_role_name(&role_prefix, id);
            if let Err(undo) = drop_on_cluster(&cluster.admin, id, &schema, &role).await {
                tracing::error!(
                    error = format!("{undo:#}"),
                    schema,
                    "a tenant the registry did not record is left on its cluster"
                );
            }
            return Err(e.into());
        }
        admin_id
    };
    Ok((registry::find_by_id(home.database(), id).await?, admin_id))
}

/// The schema, counters and first admin of tenant `id`, in the open
/// transaction of the database it lives on (whose own registry row for
/// it is written).
async fn fill_tenant(
    tx: &mut PooledTx,
    id: i32,
    schema: &str,
    role_prefix: &str,
    new: &NewTenant<'_>,
) -> Result<i32, StoreError> {
    let role = tenant_role_name(role_prefix, id);
    let claimed = crate::fleet::spares::claim(tx, schema, &role, role_prefix).await?;
    let client = tx.client();
    if claimed {
        client
            .batch_execute(&format!(
                "INSERT INTO public.tenant_counters (tenant_id) VALUES ({id});
                 SELECT set_config('search_path', '{}, extensions', true);",
                quote_ident(schema)
            ))
            .await?;
    } else {
        client
            .batch_execute(&format!(
                "INSERT INTO public.tenant_counters (tenant_id) VALUES ({id});"
            ))
            .await?;
        newest_schema(client, schema, &role, role_prefix).await?;
        client.batch_execute(&default_stages_sql()).await?;
    }
    client
        .batch_execute(&format!(
            "UPDATE public.tenants SET schema_version = {} WHERE id = {id};",
            latest_tenant_version()
        ))
        .await?;
    let admin = &new.admin;
    let admin_id: i32 = client
        .query_one(
            "INSERT INTO users (email, password_hash, first_name, last_name, role, email_verified)
             VALUES ($1, $2, $3, $4, 'admin', true) RETURNING id",
            &[
                &admin.email.as_str(),
                &admin.password_hash,
                &admin.first_name,
                &admin.last_name,
            ],
        )
        .await?
        .get(0);
    Ok(admin_id)
}

/// Refuses to place tenants on a cluster whose roles are named for another
/// registry: `atrium migrate` sets a new cluster up for this one.
pub(crate) async fn expect_role_prefix(
    client: &tokio_postgres::Client,
    cluster: &str,
    home_prefix: &str,
) -> Result<(), StoreError> {
    let prefix = registry::role_prefix(client).await.map_err(|e| {
        anyhow::Error::from(e).context(format!(
            "cluster {cluster} is not set up (run `atrium migrate`)"
        ))
    })?;
    if prefix != home_prefix {
        return Err(anyhow::anyhow!(
            "cluster {cluster} is not set up for this registry (run `atrium migrate`)"
        )
        .into());
    }
    Ok(())
}

/// Removes tenant `id`'s schema, role and bookkeeping row from a data
/// cluster, in one transaction.
pub(crate) async fn drop_on_cluster(
    cluster: &AdminDatabase,
    id: i32,
    schema: &str,
    role: &str,
) -> anyhow::Result<()> {
    let tx = PooledTx::begin(cluster.database(), "").await?;
    tx.client()
        .batch_execute(&format!(
            "DELETE FROM public.tenants WHERE id = {id};
             DROP SCHEMA IF EXISTS {} CASCADE; DROP ROLE IF EXISTS {};",
            quote_ident(schema),
            quote_ident(role)
        ))
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A new tenant's registry row, counters row, empty schema (with its
/// migration history table, the search path set to it) and role: what
/// provisioning and an archive import share. Nothing is committed.
pub(crate) struct Shell {
    pub id: i32,
    pub schema: String,
}

pub(crate) async fn create_shell(
    tx: &mut PooledTx,
    name: &str,
    subdomain: &Subdomain,
    tier: Tier,
) -> Result<Shell, StoreError> {
    let (id, schema, role_prefix) =
        insert_registry_row(tx, name, subdomain, tier, HOME_CLUSTER).await?;
    let role = tenant_role_name(&role_prefix, id);
    tx.client()
        .batch_execute(&format!(
            "INSERT INTO public.tenant_counters (tenant_id) VALUES ({id});
             {}",
            empty_schema_sql(&schema, &role, &role_prefix)
        ))
        .await?;
    Ok(Shell { id, schema })
}

/// The registry row of a new tenant: its id, schema name and the role
/// prefix of this database.
async fn insert_registry_row(
    tx: &mut PooledTx,
    name: &str,
    subdomain: &Subdomain,
    tier: Tier,
    cluster: &str,
) -> Result<(i32, String, String), StoreError> {
    let row = tx
        .client()
        .query_one(
            "WITH new_id AS (SELECT nextval('public.tenants_id_seq')::int AS id)
             INSERT INTO public.tenants (id, name, subdomain, schema_name, tier, cluster)
             SELECT id, $1, $2, 'tenant_' || id, $3, $4 FROM new_id
             RETURNING id, schema_name, (SELECT role_prefix FROM public.installation)",
            &[&name, &subdomain.as_str(), &tier.as_str(), &cluster],
        )
        .await
        .map_err(|e| match constraint_of(&e) {
            Some("tenants_subdomain_key") => {
                StoreError::Conflict(format!("subdomain '{subdomain}' is already taken"))
            }
            _ => e.into(),
        })?;
    let id: i32 = row.get(0);
    tx.note_tenant(id);
    tx.note_schema_created();
    Ok((id, row.get(1), row.get(2)))
}

/// Tenant schema `schema` with its role, at the newest version, in the
/// open transaction (whose search path it is left on).
pub(crate) async fn newest_schema(
    client: &tokio_postgres::Client,
    schema: &str,
    role: &str,
    role_prefix: &str,
) -> Result<(), StoreError> {
    client
        .batch_execute(&empty_schema_sql(schema, role, role_prefix))
        .await?;
    apply_pending(
        client,
        schema,
        MigrationSets::embedded().tenant,
        &QueryCounter::default(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}

/// An empty schema with its migration history table and its data-only
/// role (a member of the tenants' group, granted to the application
/// login), the search path set to it: what a tenant and a spare schema
/// start from.
pub(crate) fn empty_schema_sql(schema: &str, role: &str, role_prefix: &str) -> String {
    let (q_schema, q_role) = (quote_ident(schema), quote_ident(role));
    format!(
        "CREATE SCHEMA {q_schema};
         {}
         SELECT set_config('search_path', '{q_schema}, extensions', true);
         -- made before the default privileges: the tenant role never gets it
         {};
         {}",
        tenant_role_sql(role, role_prefix),
        crate::fleet::migrate::SCHEMA_MIGRATIONS_DDL,
        default_privileges_sql(&q_schema, &q_role),
    )
}

/// A tenant's data-only role: a member of the tenants' group, and granted
/// to the application login where there is one. The role may exist
/// already: a tenant moving back to a cluster it lived on finds its role
/// there (roles belong to the server, and outlive the schema renamed when
/// it left).
pub(crate) fn tenant_role_sql(role: &str, role_prefix: &str) -> String {
    let q_role = quote_ident(role);
    let q_group = quote_ident(&tenant_group_role(role_prefix));
    format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
             CREATE ROLE {q_role} NOLOGIN;
           END IF;
           GRANT {q_group} TO {q_role};
           IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APPLICATION_ROLE}') THEN
             GRANT {q_role} TO {APPLICATION_ROLE};
           END IF;
         END $$;"
    )
}

/// The pipeline stages every tenant starts with, as one statement.
pub(crate) fn default_stages_sql() -> String {
    let stages = DEFAULT_STAGES
        .iter()
        .enumerate()
        .map(|(i, (name, probability, kind))| {
            format!("('{name}', {}, {probability}, '{kind}')", i + 1)
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO pipeline_stages (name, position, probability, kind) VALUES {stages}")
}

/// Data rights for the tenant role on everything the migrations are about
/// to create, granted as each object is made. `GRANT ... ON ALL TABLES IN
/// SCHEMA` would do the same afterwards, but it scans all of `pg_class`,
/// which grows with every tenant: at a thousand tenants it doubled the cost
/// of provisioning. (Objects made later by another role are covered by the
/// migrator, which grants explicitly when a migration creates relations.)
pub(crate) fn default_privileges_sql(q_schema: &str, q_role: &str) -> String {
    format!(
        "GRANT USAGE ON SCHEMA {q_schema} TO {q_role};
         ALTER DEFAULT PRIVILEGES IN SCHEMA {q_schema}
           GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {q_role};
         ALTER DEFAULT PRIVILEGES IN SCHEMA {q_schema}
           GRANT USAGE, SELECT ON SEQUENCES TO {q_role};"
    )
}
