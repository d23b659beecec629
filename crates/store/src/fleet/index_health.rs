//! Index bloat: how much of each tenant B-tree index is dead space,
//! estimated from the planner's statistics (`pg_class.reltuples`,
//! `pg_stats` widths) against the index's size on disk, so no table or
//! index is read; and rebuilding the bloated ones with
//! `REINDEX INDEX CONCURRENTLY`, which never blocks the tenant's writes.
//!
//! Only B-tree indexes are estimated: the layout of a GIN index (the
//! full-text and trigram ones) cannot be told from column statistics.

use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::Database;
use crate::connection::database::quote_ident;
use crate::registry::naming::{TENANT_SCHEMA_PATTERN, is_tenant_schema_name};

/// An index counts as bloated when at least this share of it is dead
/// space...
pub const BLOATED_RATIO: f64 = 0.3;
/// ...and that space is at least this large: rebuilding a small index
/// gains nothing worth the work (a tenant of a few hundred records has
/// indexes of a few pages).
pub const BLOATED_MIN_BYTES: i64 = 1024 * 1024;

/// Tables whose indexes are rebuilt at once by `maintain --reindex`: each
/// rebuild reads its table, so a few at a time keeps the cluster's I/O for
/// the tenants.
pub const REINDEX_AT_ONCE: usize = 2;

/// One tenant B-tree index with its estimated bloat.
#[derive(Debug, Clone, Serialize)]
pub struct IndexBloat {
    /// Filled in by the caller that reads several clusters.
    pub cluster: String,
    /// Filled in by the caller from the home registry.
    pub tenant: Option<String>,
    pub schema_name: String,
    pub table: String,
    pub index: String,
    pub bytes: i64,
    /// What the index would take rebuilt (at its fill factor).
    pub expected_bytes: i64,
    pub bloat_bytes: i64,
    /// `bloat_bytes / bytes`, 0 to 1.
    pub bloat_ratio: f64,
}

impl IndexBloat {
    pub fn is_bloated(&self) -> bool {
        self.bloat_ratio >= BLOATED_RATIO && self.bloat_bytes >= BLOATED_MIN_BYTES
    }
}

/// The estimate for every tenant B-tree index of this cluster (or of
/// schema `only`), most bloat first. An index whose table was never
/// analyzed (`reltuples` unknown) is left out: there is nothing to
/// estimate from.
///
/// A tuple of the index is its 8-byte header and its key columns' average
/// widths (`pg_stats`, weighted by how often they are not null), aligned
/// to 8 bytes, plus a 4-byte line pointer; a page holds
/// `8192 - 24 - 16` bytes of them, filled to the index's fill factor
/// (B-tree default 90); one more page is the metapage. Deduplication can
/// make a real index smaller than this, which reads as no bloat.
pub async fn estimate(db: &Database, only: Option<&str>) -> anyhow::Result<Vec<IndexBloat>> {
    estimate_where(db, only, false).await
}

/// The bloated indexes of every tenant of this cluster, most bloat first:
/// [`estimate`] filtered in the database, so a fleet's 600,000 healthy
/// indexes never leave it.
pub async fn bloated(db: &Database) -> anyhow::Result<Vec<IndexBloat>> {
    estimate_where(db, None, true).await
}

/// Sizes are `relpages` (as of the index's last VACUUM, ANALYZE or
/// build, like `reltuples` beside it): opening 600,000 index files to
/// ask their size would load each into the backend's caches.
async fn estimate_where(
    db: &Database,
    only: Option<&str>,
    bloated_only: bool,
) -> anyhow::Result<Vec<IndexBloat>> {
    let rows = db
        .connection()
        .await?
        .query(
            "WITH idx AS (
               SELECT n.nspname::text AS schema_name, ct.relname::text AS table_name,
                      ci.relname::text AS index_name, ci.oid, i.indrelid, i.indkey::int2[] AS keys,
                      ci.reltuples,
                      ci.relpages::bigint * current_setting('block_size')::bigint AS bytes,
                      coalesce(substring(array_to_string(ci.reloptions, ' ')
                                         FROM 'fillfactor=([0-9]+)')::int, 90) AS fillfactor
                 FROM pg_index i
                 JOIN pg_class ci ON ci.oid = i.indexrelid
                 JOIN pg_class ct ON ct.oid = i.indrelid
                 JOIN pg_namespace n ON n.oid = ci.relnamespace
                 JOIN pg_am am ON am.oid = ci.relam
                WHERE am.amname = 'btree' AND i.indisvalid AND ci.reltuples >= 0
                  AND n.nspname ~ $2
                  AND ($1::text IS NULL OR n.nspname = $1)),
             widths AS (
               SELECT idx.oid,
                      sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024)) AS data_width
                 FROM idx
                 CROSS JOIN LATERAL unnest(idx.keys) WITH ORDINALITY AS k(attnum, position)
                 LEFT JOIN pg_attribute a
                        ON a.attrelid = CASE WHEN k.attnum = 0 THEN idx.oid ELSE idx.indrelid END
                       AND a.attnum = CASE WHEN k.attnum = 0 THEN k.position::int2 ELSE k.attnum END
                 LEFT JOIN pg_stats s
                        ON s.schemaname = idx.schema_name
                       AND s.tablename = CASE WHEN k.attnum = 0 THEN idx.index_name ELSE idx.table_name END
                       AND s.attname = a.attname
                GROUP BY idx.oid),
             sized AS (
               SELECT idx.*,
                      (1 + ceil(idx.reltuples * (8 * ceil((8 + w.data_width) / 8) + 4)
                                / ((8192 - 24 - 16) * idx.fillfactor / 100.0)))::bigint
                        * current_setting('block_size')::bigint AS expected_bytes
                 FROM idx JOIN widths w ON w.oid = idx.oid)
             SELECT schema_name, table_name, index_name, bytes, expected_bytes,
                    greatest(bytes - expected_bytes, 0) AS bloat_bytes
               FROM sized
              WHERE NOT $3
                 OR (bytes - expected_bytes >= $4 AND bytes - expected_bytes >= $5::float8 * bytes)
              ORDER BY 6 DESC, 1, 3",
            &[
                &only,
                &TENANT_SCHEMA_PATTERN,
                &bloated_only,
                &BLOATED_MIN_BYTES,
                &BLOATED_RATIO,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let bytes: i64 = r.get(3);
            let bloat_bytes: i64 = r.get(5);
            IndexBloat {
                cluster: String::new(),
                tenant: None,
                schema_name: r.get(0),
                table: r.get(1),
                index: r.get(2),
                bytes,
                expected_bytes: r.get(4),
                bloat_bytes,
                bloat_ratio: if bytes > 0 {
                    (bloat_bytes as f64 / bytes as f64 * 100.0).round() / 100.0
                } else {
                    0.0
                },
            }
        })
        .collect())
}

/// One index rebuilt by `maintain --reindex`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Reindexed {
    pub schema_name: String,
    pub index: String,
    pub bytes_before: i64,
    pub bytes_after: i64,
    pub seconds: f64,
}

/// Rebuilds this cluster's bloated tenant indexes with `REINDEX INDEX
/// CONCURRENTLY`, [`REINDEX_AT_ONCE`] tables at a time, each on its own session
/// (the statement cannot run in a transaction). Writes go on throughout:
/// the rebuild holds a SHARE UPDATE EXCLUSIVE lock, which conflicts with
/// no write. What an interrupted rebuild left behind (an invalid
/// `…_ccnew` index) is dropped first. Returns the indexes rebuilt and the
/// ones that failed, with why.
pub async fn reindex_bloated(
    db: &Database,
) -> anyhow::Result<(Vec<Reindexed>, Vec<(String, String)>)> {
    drop_interrupted_rebuilds(db, None).await?;
    let bloated = bloated(db).await?;
    // Two concurrent rebuilds of one table's indexes deadlock (each waits
    // for the other's transaction): a table's indexes go one after another,
    // different tables side by side.
    let mut by_table: Vec<Vec<IndexBloat>> = Vec::new();
    for index in bloated {
        match by_table.iter_mut().find(|group| {
            group[0].schema_name == index.schema_name && group[0].table == index.table
        }) {
            Some(group) => group.push(index),
            None => by_table.push(vec![index]),
        }
    }
    let results: Vec<Vec<(IndexBloat, anyhow::Result<Reindexed>)>> =
        futures::stream::iter(by_table.into_iter().map(|group| async move {
            let mut done = Vec::new();
            for index in group {
                let result = rebuild(db, &index).await;
                done.push((index, result));
            }
            done
        }))
        .buffer_unordered(REINDEX_AT_ONCE)
        .collect()
        .await;
    let mut rebuilt = Vec::new();
    let mut failed = Vec::new();
    for (index, result) in results.into_iter().flatten() {
        match result {
            Ok(done) => rebuilt.push(done),
            Err(e) => failed.push((
                format!("{}.{}", index.schema_name, index.index),
                format!("{e:#}"),
            )),
        }
    }
    Ok((rebuilt, failed))
}

async fn rebuild(db: &Database, index: &IndexBloat) -> anyhow::Result<Reindexed> {
    anyhow::ensure!(
        is_tenant_schema_name(&index.schema_name),
        "not a tenant schema: {:?}",
        index.schema_name
    );
    let session = db.dedicated_connection().await?;
    let started = Instant::now();
    let rebuilt = session
        .batch_execute(&format!(
            "REINDEX INDEX CONCURRENTLY {}.{}",
            quote_ident(&index.schema_name),
            quote_ident(&index.index)
        ))
        .await;
    if let Err(e) = rebuilt {
        // Its invalid copy would be kept up to date by every write until
        // the next run: gone now. Only its table's: another table's
        // rebuild may be running beside it, its copy invalid until done
        // (and one table's indexes are rebuilt one after another).
        drop(session);
        let table = Some((index.schema_name.as_str(), index.table.as_str()));
        if let Err(cleanup) = drop_interrupted_rebuilds(db, table).await {
            tracing::warn!(
                error = format!("{cleanup:#}"),
                "dropping a failed rebuild's copy"
            );
        }
        return Err(e.into());
    }
    let bytes_after: i64 = session
        .query_one(
            "SELECT pg_relation_size(format('%I.%I', $1::text, $2::text)::regclass)",
            &[&index.schema_name, &index.index],
        )
        .await?
        .get(0);
    Ok(Reindexed {
        schema_name: index.schema_name.clone(),
        index: index.index.clone(),
        bytes_before: index.bytes,
        bytes_after,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    })
}

/// Drops the invalid copies an interrupted `REINDEX CONCURRENTLY` leaves
/// (the new index `<index>_ccnew`, `_ccnew1`, …, or the old one,
/// `_ccold`, when it stopped at the swap), which writes would otherwise
/// keep maintaining.
async fn drop_interrupted_rebuilds(
    db: &Database,
    only_table: Option<(&str, &str)>,
) -> anyhow::Result<()> {
    let session = db.dedicated_connection().await?;
    let (schema, table) = only_table.unzip();
    let leftovers = session
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_class t ON t.oid = i.indrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'
                AND n.nspname ~ $1
                AND CASE WHEN $2::text IS NULL THEN true
                         ELSE n.nspname = $2 AND t.relname = $3 END",
            &[&TENANT_SCHEMA_PATTERN, &schema, &table],
        )
        .await?;
    for row in leftovers {
        let (schema, index): (String, String) = (row.get(0), row.get(1));
        tracing::warn!(schema, index, "dropping what an interrupted rebuild left");
        session
            .batch_execute(&format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                quote_ident(&schema),
                quote_ident(&index)
            ))
            .await?;
    }
    Ok(())
}
