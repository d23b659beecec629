//! How much room each tenant takes and how fast it grows: sizes read from
//! the catalogs (no table is read), one sample per tenant and day kept in
//! the home registry (`public.capacity_samples`, control migration 0012)
//! by the scheduled maintain, and the growth over the last 7 and 30 days
//! from them.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;

use crate::Database;
use crate::registry::naming::{TENANT_SCHEMA_PATTERN, is_tenant_schema_name};

/// Days of samples kept: the 30-day growth needs the sample of 30 days
/// ago, with room for a missed day or two.
pub const SAMPLES_KEPT_DAYS: i32 = 35;

/// One tenant table's size. `rows` is the planner's estimate (exact with
/// [`count_rows`]).
#[derive(Debug, Clone, Serialize)]
pub struct TableSize {
    pub schema_name: String,
    pub table: String,
    pub rows: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub total_bytes: i64,
}

/// Every tenant table of this cluster, from the catalogs alone: sizes are
/// `relpages` (as of each relation's last VACUUM, ANALYZE or index
/// build: autovacuum and the scheduled maintain keep them fresh), rows
/// the planner's estimate. Asking the files instead opens every relation
/// of the fleet (one backend caching 550,000 relations at 10,000 tenants).
pub async fn table_sizes(db: &Database) -> anyhow::Result<Vec<TableSize>> {
    sizes(
        db,
        "c.relpages::bigint * bs,
         coalesce((SELECT sum(ic.relpages) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                    WHERE i.indrelid = c.oid), 0)::bigint * bs,
         coalesce((SELECT t.relpages + coalesce((SELECT sum(ti.relpages)
                                                   FROM pg_index x JOIN pg_class ti ON ti.oid = x.indexrelid
                                                  WHERE x.indrelid = t.oid), 0)
                     FROM pg_class t WHERE t.oid = c.reltoastrelid), 0)::bigint * bs",
        None,
    )
    .await
}

/// One tenant's tables as their files are now (`pg_relation_size` and
/// friends): exact, for one schema.
pub async fn table_sizes_of(db: &Database, schema: &str) -> anyhow::Result<Vec<TableSize>> {
    sizes(
        db,
        "pg_relation_size(c.oid), pg_indexes_size(c.oid),
         coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)",
        Some(schema),
    )
    .await
}

async fn sizes(
    db: &Database,
    size_columns: &str,
    only: Option<&str>,
) -> anyhow::Result<Vec<TableSize>> {
    let rows = db
        .connection()
        .await?
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, greatest(c.reltuples, 0)::bigint,
                        {size_columns}
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
                        (SELECT current_setting('block_size')::bigint AS bs) b
                  WHERE c.relkind IN ('r', 'p') AND n.nspname ~ $2
                    AND ($1::text IS NULL OR n.nspname = $1)
                  ORDER BY 1, 2"
            ),
            &[&only, &TENANT_SCHEMA_PATTERN],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (table_bytes, index_bytes, toast_bytes): (i64, i64, i64) =
                (r.get(3), r.get(4), r.get(5));
            TableSize {
                schema_name: r.get(0),
                table: r.get(1),
                rows: r.get(2),
                table_bytes,
                index_bytes,
                toast_bytes,
                total_bytes: table_bytes + index_bytes + toast_bytes,
            }
        })
        .collect())
}

/// Replaces the estimated `rows` of one tenant's tables with a count:
/// worth it for one tenant, never for a fleet.
pub async fn count_rows(db: &Database, tables: &mut [TableSize]) -> anyhow::Result<()> {
    let session = db.connection().await?;
    for table in tables.iter_mut() {
        anyhow::ensure!(
            is_tenant_schema_name(&table.schema_name),
            "not a tenant schema: {:?}",
            table.schema_name
        );
        table.rows = session
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    crate::connection::database::quote_ident(&table.schema_name),
                    crate::connection::database::quote_ident(&table.table)
                ),
                &[],
            )
            .await?
            .get(0);
    }
    Ok(())
}

/// A tenant's tables summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantSize {
    pub schema_name: String,
    pub rows: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub toast_bytes: i64,
    pub total_bytes: i64,
}

/// Sums tables by schema, largest tenant first.
pub fn by_tenant(tables: &[TableSize]) -> Vec<TenantSize> {
    let mut sums: HashMap<&str, TenantSize> = HashMap::new();
    for t in tables {
        let sum = sums.entry(&t.schema_name).or_insert_with(|| TenantSize {
            schema_name: t.schema_name.clone(),
            ..Default::default()
        });
        sum.rows += t.rows;
        sum.table_bytes += t.table_bytes;
        sum.index_bytes += t.index_bytes;
        sum.toast_bytes += t.toast_bytes;
        sum.total_bytes += t.total_bytes;
    }
    let mut sizes: Vec<TenantSize> = sums.into_values().collect();
    sizes.sort_by(|a, b| {
        b.total_bytes
            .cmp(&a.total_bytes)
            .then_with(|| a.schema_name.cmp(&b.schema_name))
    });
    sizes
}

/// Whether every tenant of `cluster` already has today's sample.
pub async fn sampled_today(home: &Database, cluster: &str) -> anyhow::Result<bool> {
    Ok(home
        .connection()
        .await?
        .query_one(
            "SELECT NOT EXISTS (
               SELECT 1 FROM public.tenants t
                WHERE t.cluster = $1
                  AND NOT EXISTS (SELECT 1 FROM public.capacity_samples s
                                   WHERE s.tenant_id = t.id AND s.sampled_on = current_date))",
            &[&cluster],
        )
        .await?
        .get(0))
}

/// Records today's sample of each tenant in `sizes`, read on `cluster`
/// (replacing one taken earlier today), and forgets samples older than
/// [`SAMPLES_KEPT_DAYS`]. Schemas are matched to the tenants the registry
/// places on that cluster; returns the samples written.
pub async fn record_samples(
    home: &Database,
    cluster: &str,
    sizes: &[TenantSize],
) -> anyhow::Result<u64> {
    let schemas: Vec<&str> = sizes.iter().map(|s| s.schema_name.as_str()).collect();
    let bytes: Vec<i64> = sizes.iter().map(|s| s.total_bytes).collect();
    let rows: Vec<i64> = sizes.iter().map(|s| s.rows).collect();
    let session = home.connection().await?;
    let written = session
        .execute(
            "INSERT INTO public.capacity_samples (tenant_id, sampled_on, total_bytes, rows)
             SELECT t.id, current_date, s.bytes, s.rows
               FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS s(schema_name, bytes, rows)
               JOIN public.tenants t ON t.schema_name = s.schema_name AND t.cluster = $4
             ON CONFLICT (tenant_id, sampled_on) DO UPDATE
                SET total_bytes = EXCLUDED.total_bytes, rows = EXCLUDED.rows",
            &[&schemas, &bytes, &rows, &cluster],
        )
        .await?;
    session
        .execute(
            "DELETE FROM public.capacity_samples WHERE sampled_on < current_date - $1::int",
            &[&SAMPLES_KEPT_DAYS],
        )
        .await?;
    Ok(written)
}

/// A tenant's earliest sample within the last 7 and 30 days, before
/// today: its growth is measured from there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baselines {
    pub week: Option<(NaiveDate, i64)>,
    pub month: Option<(NaiveDate, i64)>,
}

/// Baselines by schema name, for every tenant with samples, and the
/// registry's date today (the samples' calendar: the database's time
/// zone, not this machine's).
pub async fn baselines(home: &Database) -> anyhow::Result<(NaiveDate, HashMap<String, Baselines>)> {
    let session = home.connection().await?;
    let today: NaiveDate = session.query_one("SELECT current_date", &[]).await?.get(0);
    let rows = session
        .query(
            "SELECT t.schema_name,
                    (array_agg(s.sampled_on ORDER BY s.sampled_on)
                        FILTER (WHERE s.sampled_on >= current_date - 7))[1],
                    (array_agg(s.total_bytes ORDER BY s.sampled_on)
                        FILTER (WHERE s.sampled_on >= current_date - 7))[1],
                    (array_agg(s.sampled_on ORDER BY s.sampled_on))[1],
                    (array_agg(s.total_bytes ORDER BY s.sampled_on))[1]
               FROM public.capacity_samples s JOIN public.tenants t ON t.id = s.tenant_id
              WHERE s.sampled_on >= current_date - 30 AND s.sampled_on < current_date
              GROUP BY t.schema_name",
            &[],
        )
        .await?;
    Ok((
        today,
        rows.iter()
            .map(|r| {
                let pair = |date: Option<NaiveDate>, bytes: Option<i64>| date.zip(bytes);
                (
                    r.get(0),
                    Baselines {
                        week: pair(r.get(1), r.get(2)),
                        month: pair(r.get(3), r.get(4)),
                    },
                )
            })
            .collect(),
    ))
}

pub async fn database_bytes(db: &Database) -> anyhow::Result<i64> {
    Ok(db
        .connection()
        .await?
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0))
}

/// The filesystem holding the cluster's data, when this machine can see
/// it: the data directory is readable here and its `postmaster.pid`
/// names the port this connection reached (so a directory of the same
/// name on another machine is not mistaken for it). `None` otherwise.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Disk {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

pub async fn local_disk(db: &Database) -> Option<Disk> {
    let session = db.connection().await.ok()?;
    let row = session
        .query_one(
            "SELECT current_setting('data_directory'), current_setting('port')",
            &[],
        )
        .await
        .ok()?;
    let (directory, port): (String, String) = (row.get(0), row.get(1));
    let directory = Path::new(&directory);
    let pid_file = std::fs::read_to_string(directory.join("postmaster.pid")).ok()?;
    // Line 4 of postmaster.pid is the port the server listens on.
    if pid_file.lines().nth(3).map(str::trim) != Some(port.as_str()) {
        return None;
    }
    let stats = nix::sys::statvfs::statvfs(directory).ok()?;
    let fragment = stats.fragment_size() as u64;
    Some(Disk {
        total_bytes: stats.blocks() as u64 * fragment,
        free_bytes: stats.blocks_available() as u64 * fragment,
    })
}
