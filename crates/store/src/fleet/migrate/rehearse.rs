//! Rehearsing the pending migrations on a copy of one tenant
//! (`atrium migrate --rehearse`): how long each takes on real data, and
//! which locks it takes, without touching the tenant.
//!
//! The copy is a scratch schema on the tenant's cluster, built by the
//! same migration files up to the tenant's version and filled from a
//! consistent snapshot of its tables (one transaction, committed so that
//! the rehearsal's own locks are not hidden behind the ones creating the
//! tables takes). The pending files then run on it in a second
//! transaction, which is rolled back; the scratch schema is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use chrono::Utc;
use serde::Serialize;
use tokio_postgres::Client;

use super::{MigrationFile, MigrationSets, QueryCounter, SCHEMA_MIGRATIONS_DDL, apply_pending};
use crate::Database;
use crate::connection::database::quote_ident;
use crate::registry::naming::is_tenant_schema_name;

/// Scratch schemas are named `rehearsal_<tenant id>_<UTC timestamp>_<6 hex
/// digits>` (two rehearsals in one second get two schemas); ones older
/// than a day are left over from an interrupted rehearsal, and `maintain`
/// drops them.
pub const SCRATCH_PATTERN: &str = "^rehearsal_[0-9]+_[0-9]{14}_[0-9a-f]{6}$";

/// A fresh scratch schema's name, as [`SCRATCH_PATTERN`] describes it.
pub fn scratch_schema_name(tenant_id: i32, at: chrono::DateTime<Utc>) -> String {
    format!(
        "rehearsal_{tenant_id}_{}_{:06x}",
        at.format("%Y%m%d%H%M%S"),
        rand::random_range(0..0x100_0000u32)
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct Rehearsal {
    pub schema_name: String,
    pub from_version: i32,
    pub to_version: i32,
    /// Rows copied into the scratch schema, and how long the copy took.
    pub rows_copied: i64,
    pub copy_seconds: f64,
    pub migrations: Vec<RehearsedMigration>,
    /// The pending files together, as one tenant's migration runs them.
    pub total_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RehearsedMigration {
    pub version: i32,
    pub name: String,
    pub seconds: f64,
    /// Locks this file takes that the ones before it did not, on the
    /// tenant's relations (named as in the tenant's schema) or on shared
    /// ones (schema-qualified).
    pub locks: Vec<RehearsedLock>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RehearsedLock {
    pub relation: String,
    pub mode: String,
    /// What the lock keeps the tenant's requests from doing while the
    /// migration's transaction lasts: `reads and writes`, `writes`, or
    /// `nothing`.
    pub blocks: &'static str,
}

/// What a table-level lock mode stops ordinary reads (ACCESS SHARE) and
/// writes (ROW EXCLUSIVE) from doing.
fn blocks(mode: &str) -> &'static str {
    match mode {
        "AccessExclusiveLock" => "reads and writes",
        "ExclusiveLock" | "ShareRowExclusiveLock" | "ShareLock" => "writes",
        _ => "nothing",
    }
}

/// Rehearses the files of `sets` newer than `version` on a copy of tenant
/// `tenant_id`'s schema `schema`, on `db` (its cluster, as the operator).
/// `None` when nothing is pending.
pub async fn rehearse(
    db: &Database,
    tenant_id: i32,
    schema: &str,
    version: i32,
    sets: MigrationSets,
) -> anyhow::Result<Option<Rehearsal>> {
    anyhow::ensure!(
        is_tenant_schema_name(schema),
        "not a tenant schema: {schema:?}"
    );
    let pending: Vec<&MigrationFile> = sets.tenant.iter().filter(|f| f.version > version).collect();
    if pending.is_empty() {
        return Ok(None);
    }
    let built = sets
        .tenant
        .iter()
        .position(|f| f.version > version)
        .unwrap_or(sets.tenant.len());
    let scratch = scratch_schema_name(tenant_id, Utc::now());
    let session = db.dedicated_connection().await?;
    let result = async {
        let copy_started = Instant::now();
        let rows_copied = build_copy(&session, schema, &scratch, &sets.tenant[..built]).await?;
        let copy_seconds = copy_started.elapsed().as_secs_f64();
        let (migrations, total_seconds) = run_pending(&session, &scratch, schema, &pending).await?;
        anyhow::Ok(Rehearsal {
            schema_name: schema.to_owned(),
            from_version: version,
            to_version: sets.latest_tenant_version(),
            rows_copied,
            copy_seconds: round(copy_seconds),
            migrations,
            total_seconds: round(total_seconds),
        })
    }
    .await;
    // Gone whatever happened above (a failure inside a transaction leaves
    // it aborted: end it first). The name is this run's alone.
    let _ = session.batch_execute("ROLLBACK").await;
    if let Err(e) = session
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&scratch)
        ))
        .await
    {
        tracing::warn!(
            error = %e,
            schema = scratch,
            "dropping the rehearsal's copy failed; maintain drops it after a day"
        );
    }
    result.map(Some)
}

fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Makes `scratch` as the files up to the tenant's version made the
/// tenant, and fills it from one snapshot of the tenant's tables, parents
/// before children (foreign keys stay checked; user triggers, which keep
/// the registry's counters and audit history, are off while copying).
/// The rows copied.
async fn build_copy(
    session: &Client,
    schema: &str,
    scratch: &str,
    files: &[MigrationFile],
) -> anyhow::Result<i64> {
    session
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             CREATE SCHEMA {scratch};
             SELECT set_config('search_path', '{scratch}, extensions', true);
             {SCHEMA_MIGRATIONS_DDL};",
            scratch = quote_ident(scratch)
        ))
        .await?;
    apply_pending(session, scratch, files, &QueryCounter::default()).await?;
    let mut rows_copied = 0;
    for table in tables_parents_first(session, schema).await? {
        let (from, to) = (
            format!("{}.{}", quote_ident(schema), quote_ident(&table)),
            format!("{}.{}", quote_ident(scratch), quote_ident(&table)),
        );
        let columns: String = session
            .query_one(
                "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                   FROM pg_attribute
                  WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
                    AND attgenerated = ''",
                &[&from],
            )
            .await?
            .get(0);
        session
            .batch_execute(&format!("ALTER TABLE {to} DISABLE TRIGGER USER"))
            .await?;
        rows_copied += session
            .execute(
                &format!(
                    "INSERT INTO {to} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {from}"
                ),
                &[],
            )
            .await? as i64;
        session
            .batch_execute(&format!("ALTER TABLE {to} ENABLE TRIGGER USER"))
            .await?;
    }
    // Sequences where the tenant's are, for a migration that inserts.
    let sequences = session
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'S'",
            &[&schema],
        )
        .await?;
    for row in sequences {
        let name: String = row.get(0);
        session
            .execute(
                "SELECT setval(format('%I.%I', $1::text, $3::text)::regclass, s.last_value, s.is_called)
                   FROM pg_sequences q,
                        LATERAL (SELECT coalesce(q.last_value, 1) AS last_value,
                                        q.last_value IS NOT NULL AS is_called) s
                  WHERE q.schemaname = $2 AND q.sequencename = $3",
                &[&scratch, &schema, &name],
            )
            .await?;
    }
    session.batch_execute("COMMIT").await?;
    Ok(rows_copied)
}

/// The tenant's tables ordered so that every table comes after the ones
/// its foreign keys point to (a table's references to itself are checked
/// at the end of its one statement, so they need no order).
async fn tables_parents_first(session: &Client, schema: &str) -> anyhow::Result<Vec<String>> {
    let rows = session
        .query(
            "SELECT c.relname::text,
                    coalesce(array_agg(DISTINCT p.relname::text)
                               FILTER (WHERE p.oid IS NOT NULL AND p.oid <> c.oid), '{}')
               FROM pg_class c
               LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
               LEFT JOIN pg_class p ON p.oid = k.confrelid AND p.relnamespace = c.relnamespace
              WHERE c.relnamespace = $1::text::regnamespace AND c.relkind IN ('r', 'p')
                AND c.relname <> 'schema_migrations'
              GROUP BY c.relname",
            &[&schema],
        )
        .await?;
    let mut waiting: BTreeMap<String, BTreeSet<String>> = rows
        .iter()
        .map(|r| {
            let parents: Vec<String> = r.get(1);
            (r.get(0), parents.into_iter().collect())
        })
        .collect();
    let mut ordered = Vec::with_capacity(waiting.len());
    while !waiting.is_empty() {
        let ready: Vec<String> = waiting
            .iter()
            .filter(|(_, parents)| parents.iter().all(|p| !waiting.contains_key(p)))
            .map(|(table, _)| table.clone())
            .collect();
        anyhow::ensure!(
            !ready.is_empty(),
            "the foreign keys of {schema} form a cycle ({}): the rehearsal cannot order its copy",
            waiting.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        for table in ready {
            waiting.remove(&table);
            ordered.push(table);
        }
    }
    Ok(ordered)
}

/// Runs each pending file on `scratch` in one transaction, timing it and
/// noting the locks it added; then rolls everything back.
async fn run_pending(
    session: &Client,
    scratch: &str,
    schema: &str,
    pending: &[&MigrationFile],
) -> anyhow::Result<(Vec<RehearsedMigration>, f64)> {
    session
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('search_path', '{}, extensions', true);",
            quote_ident(scratch)
        ))
        .await?;
    let mut migrations = Vec::with_capacity(pending.len());
    let started = Instant::now();
    for file in pending {
        let before = held_locks(session).await?;
        let existing = scratch_relations(session, scratch).await?;
        let file_started = Instant::now();
        session.batch_execute(file.sql).await.map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "migration {} ({}) failed on the copy of {schema}",
                file.version, file.name
            ))
        })?;
        let seconds = file_started.elapsed().as_secs_f64();
        let after = held_locks(session).await?;
        migrations.push(RehearsedMigration {
            version: file.version,
            name: file.name.to_owned(),
            seconds: round(seconds),
            locks: locks_added(&before, &after, &existing),
        });
    }
    let total = started.elapsed().as_secs_f64();
    session.batch_execute("ROLLBACK").await?;
    Ok((migrations, total))
}

/// Table-level lock modes, weakest first.
const MODES: [&str; 8] = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

fn strength(mode: &str) -> usize {
    MODES.iter().position(|m| *m == mode).unwrap_or(0)
}

/// The strongest mode of each relation lock this session holds, by the
/// relation's oid, with the relation's name (schema-qualified unless it
/// is the copy's) when it still exists.
type HeldLocks = HashMap<u32, (String, Option<String>)>;

/// The copy's relations now, by oid, named as the tenant's would be.
async fn scratch_relations(
    session: &Client,
    scratch: &str,
) -> anyhow::Result<HashMap<u32, String>> {
    let rows = session
        .query(
            "SELECT c.oid, c.relname::text FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1",
            &[&scratch],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What a file added: for each relation that existed before it (one the
/// file makes is nobody else's to wait for; one it drops is named as it
/// was), its strongest lock, when stronger than what the files before it
/// held. The copy's relations are named as the tenant's; TOAST tables
/// follow their table and are left out.
fn locks_added(
    before: &HeldLocks,
    after: &HeldLocks,
    existing: &HashMap<u32, String>,
) -> Vec<RehearsedLock> {
    let mut locks: Vec<RehearsedLock> = after
        .iter()
        .filter_map(|(oid, (mode, name))| {
            let relation = match existing.get(oid) {
                Some(copy) => copy.clone(),
                // Not the copy's before the file: a shared relation (named
                // with its schema), or one the file made (`None`: the copy
                // has it now, unqualified... or it is gone again).
                None => name.clone().filter(|n| n.contains('.'))?,
            };
            let stronger = before
                .get(oid)
                .is_none_or(|(held, _)| strength(mode) > strength(held));
            (stronger && !relation.starts_with("pg_toast.")).then(|| RehearsedLock {
                relation,
                mode: mode.clone(),
                blocks: blocks(mode),
            })
        })
        .collect();
    locks.sort_by(|a, b| {
        strength(&b.mode)
            .cmp(&strength(&a.mode))
            .then_with(|| a.relation.cmp(&b.relation))
    });
    locks
}

/// The relation locks this session holds: the copy's relations named
/// without their schema, others with it, dropped ones without a name.
async fn held_locks(session: &Client) -> anyhow::Result<HeldLocks> {
    let rows = session
        .query(
            "SELECT l.relation, l.mode,
                    CASE WHEN n.nspname LIKE 'rehearsal\\_%' THEN c.relname::text
                         ELSE n.nspname || '.' || c.relname END
               FROM pg_locks l
               LEFT JOIN pg_class c ON c.oid = l.relation
               LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
                AND n.nspname IS DISTINCT FROM 'pg_catalog'",
            &[],
        )
        .await?;
    let mut held = HeldLocks::new();
    for row in rows {
        let (oid, mode, name): (u32, String, Option<String>) = (row.get(0), row.get(1), row.get(2));
        let entry = held.entry(oid).or_insert((mode.clone(), name));
        if strength(&mode) > strength(&entry.0) {
            entry.0 = mode;
        }
    }
    Ok(held)
}
