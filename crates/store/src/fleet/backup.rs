//! One tenant's `pg_dump` backup and its restore: `atrium tenant
//! backup|restore`.
//!
//! A backup file is one header line (what the registry knew of the tenant)
//! followed by `pg_dump`'s custom format for the tenant's schema, taken
//! without owners or privileges. A restore recreates the schema with
//! `pg_restore` in one transaction, then, in another, the registry row
//! with the same id and subdomain, the counters, and the tenant role with
//! its grants: so a backup restores into the database it came from (after
//! the tenant was deleted) or into another installation. It never
//! replaces a tenant that exists.
//!
//! Unlike `tenant export`, `pg_dump` reads the whole database catalog to
//! find one schema's objects, so a backup takes longer as tenants are
//! added; the archive is the fast way to move a tenant.

use crate::AdminDatabase;
use std::process::Stdio;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::connection::database::quote_ident;
use crate::connection::embedded::client_program;
use crate::fleet::migrate::grant_tenant_role_sql;
use crate::fleet::provision::{default_privileges_sql, tenant_role_sql};
use crate::registry::naming::{is_tenant_schema_name, tenant_role_name, tenant_schema_name};
use crate::registry::{self, TenantEntry, live_counts_sql, role_prefix};
use crate::{Database, PooledTx, StoreError};

const MAGIC: &str = "ATRIUM TENANT BACKUP 1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHeader {
    pub tenant_id: i32,
    pub name: String,
    pub subdomain: String,
    pub schema_name: String,
    pub status: String,
    pub tier: String,
    pub schema_version: i32,
    pub tenant_created_at: DateTime<Utc>,
    pub taken_at: DateTime<Utc>,
}

/// Writes the backup of `tenant` to `out`; the bytes written.
#[tracing::instrument(skip_all, fields(tenant = %tenant.subdomain))]
pub async fn backup<W>(
    admin: &AdminDatabase,
    tenant: &TenantEntry,
    out: &mut W,
) -> anyhow::Result<u64>
where
    W: AsyncWrite + Unpin,
{
    let db = admin.database();
    let header = BackupHeader {
        tenant_id: tenant.id,
        name: tenant.name.clone(),
        subdomain: tenant.subdomain.clone(),
        schema_name: tenant.schema_name.clone(),
        status: tenant.status.as_str().to_owned(),
        tier: tenant.tier.as_str().to_owned(),
        schema_version: tenant.schema_version,
        tenant_created_at: tenant.created_at,
        taken_at: Utc::now(),
    };
    let head = format!("{MAGIC}\n{}\n", serde_json::to_string(&header)?);
    out.write_all(head.as_bytes()).await?;
    let mut child = Command::new(client_program("pg_dump")?)
        .args(["--format=custom", "--no-owner", "--no-privileges"])
        .arg(format!("--schema={}", quote_ident(&tenant.schema_name)))
        .envs(db.libpq_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut dump = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (copied, errors) = tokio::join!(tokio::io::copy(&mut dump, out), async {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let status = child.wait().await?;
    anyhow::ensure!(
        status.success(),
        "pg_dump failed: {}",
        errors.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    out.flush().await?;
    Ok(head.len() as u64 + copied?)
}

/// Restores a backup as the tenant it was, under its id, subdomain and
/// schema; refuses when any of them is in use.
#[tracing::instrument(name = "backup_restore", skip_all)]
pub async fn restore<R>(admin: &AdminDatabase, input: R) -> Result<TenantEntry, StoreError>
where
    R: AsyncRead + Unpin,
{
    let db = admin.database();
    let mut input = BufReader::new(input);
    let mut line = String::new();
    input
        .read_line(&mut line)
        .await
        .map_err(|e| anyhow::anyhow!("reading the backup: {e}"))?;
    if line.trim_end() != MAGIC {
        return Err(StoreError::Damaged(
            "this is not an Atrium tenant backup".into(),
        ));
    }
    line.clear();
    input
        .read_line(&mut line)
        .await
        .map_err(|e| anyhow::anyhow!("reading the backup: {e}"))?;
    let header: BackupHeader = serde_json::from_str(&line)
        .map_err(|e| StoreError::Damaged(format!("the backup's header cannot be read: {e}")))?;
    // The schema name goes into SQL: it must have the registry's shape and
    // agree with the id.
    if !is_tenant_schema_name(&header.schema_name)
        || header.schema_name != tenant_schema_name(header.tenant_id)
    {
        return Err(StoreError::Damaged(format!(
            "the backup names schema {:?} for tenant {}",
            header.schema_name, header.tenant_id
        )));
    }
    refuse_if_present(db, &header).await?;

    let mut child = Command::new(client_program("pg_restore")?)
        .args([
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
        ])
        // Without a database name pg_restore writes a script instead; the
        // rest of the connection comes from the environment.
        .arg(format!("--dbname={}", db.dbname()))
        .envs(db.libpq_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(anyhow::Error::from)?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (fed, errors) = tokio::join!(
        async {
            let copied = tokio::io::copy(&mut input, &mut stdin).await;
            drop(stdin);
            copied
        },
        async {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        }
    );
    let status = child.wait().await.map_err(anyhow::Error::from)?;
    if !status.success() {
        let errors = errors.split_whitespace().collect::<Vec<_>>().join(" ");
        return Err(StoreError::Damaged(format!(
            "pg_restore refused the backup: {errors}"
        )));
    }
    fed.map_err(|e| anyhow::anyhow!("feeding pg_restore: {e}"))?;

    match register(db, &header).await {
        Ok(()) => Ok(registry::find_by_id(db, header.tenant_id).await?),
        Err(e) => {
            // The schema is restored but not registered: take it back out.
            if let Ok(session) = db.connection().await {
                let _ = session
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {} CASCADE",
                        quote_ident(&header.schema_name)
                    ))
                    .await;
            }
            Err(e)
        }
    }
}

async fn refuse_if_present(db: &Database, header: &BackupHeader) -> Result<(), StoreError> {
    let session = db.connection().await?;
    let row = session
        .query_one(
            "SELECT
               (SELECT subdomain FROM public.tenants WHERE id = $1),
               EXISTS (SELECT 1 FROM public.tenants WHERE subdomain = $2),
               EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $3)",
            &[&header.tenant_id, &header.subdomain, &header.schema_name],
        )
        .await?;
    let (live, subdomain_taken, schema_exists): (Option<String>, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    if let Some(live) = live {
        return Err(StoreError::Conflict(format!(
            "tenant {} exists ({live}): restore never replaces a live tenant; delete it first",
            header.tenant_id
        )));
    }
    if subdomain_taken {
        return Err(StoreError::Conflict(format!(
            "subdomain '{}' is taken by another tenant",
            header.subdomain
        )));
    }
    if schema_exists {
        return Err(StoreError::Conflict(format!(
            "schema {} exists without a registry row: drop it or investigate before restoring",
            header.schema_name
        )));
    }
    Ok(())
}

/// The registry row, counters, role and grants of a restored schema, in
/// one transaction.
async fn register(db: &Database, header: &BackupHeader) -> Result<(), StoreError> {
    let mut tx = PooledTx::begin(db, "").await?;
    tx.note_tenant(header.tenant_id);
    let client = tx.client();
    let prefix = role_prefix(client).await?;
    let role = tenant_role_name(&prefix, header.tenant_id);
    client
        .execute(
            "INSERT INTO public.tenants (id, name, subdomain, schema_name, status, tier, schema_version, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &header.tenant_id,
                &header.name,
                &header.subdomain,
                &header.schema_name,
                &header.status,
                &header.tier,
                &header.schema_version,
                &header.tenant_created_at,
            ],
        )
        .await
        .map_err(|e| StoreError::Damaged(format!("the backup's tenant cannot be registered: {e}")))?;
    client
        .batch_execute(&format!(
            "SELECT setval('public.tenants_id_seq',
                           greatest((SELECT last_value FROM public.tenants_id_seq), {id}));
             INSERT INTO public.tenant_counters (tenant_id, users, companies, contacts, deals, activities)
               SELECT {id}, {counts};
             {}
             {}
             {}",
            tenant_role_sql(&role, &prefix),
            grant_tenant_role_sql(&header.schema_name, &role),
            default_privileges_sql(&quote_ident(&header.schema_name), &quote_ident(&role)),
            id = header.tenant_id,
            counts = live_counts_sql(&quote_ident(&header.schema_name)),
        ))
        .await?;
    tx.commit().await?;
    Ok(())
}
