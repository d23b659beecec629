//! Housekeeping across every tenant: `atrium maintain`, and the same run
//! on a schedule inside `atrium serve`.
//!
//! One run at a time, across every process (a session-level advisory
//! lock). Each tenant is one statement: expired, revoked or idle sessions
//! and spent reset tokens go, and records soft-deleted before the
//! retention are purged with their audit events; a tenant that fails is
//! reported and the others go on. Then the registry's expired invitations
//! go and expired tokens are blanked in the outbox. With `vacuum`,
//! `VACUUM ANALYZE` runs on the schemas written since they were last
//! vacuumed or analyzed, as the statistics say (so a quiet tenant costs
//! nothing). With `reindex_every`, the bloated tenant indexes are rebuilt
//! concurrently when the last run that did so is that old.

use crate::AdminDatabase;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Database;
use crate::connection::database::quote_ident;
use crate::fleet::archive::{ARCHIVED_TABLES, NOT_ARCHIVED};
use crate::fleet::index_health::{self, Reindexed};
use crate::registry::naming::is_tenant_schema_name;

/// Session-level advisory lock held by the one `maintain` run at a time.
pub const MAINTENANCE_LOCK_KEY: i64 = 0x4174_7269_756d_0002;

/// Runs kept in `public.maintenance_runs`.
const RUNS_KEPT: i64 = 200;

#[derive(Debug, Clone)]
pub struct Policy {
    /// Records soft-deleted longer ago than this are purged.
    pub retention: Duration,
    /// Sessions unused for this long are removed (they no longer sign in).
    pub session_idle: Duration,
    pub vacuum: bool,
    /// Rebuild bloated indexes when no run has in this long (zero: in
    /// this run); `None` never.
    pub reindex_every: Option<Duration>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MaintainReport {
    pub started_at: Option<DateTime<Utc>>,
    pub tenants: u64,
    pub sessions_removed: u64,
    pub reset_tokens_removed: u64,
    pub companies_purged: u64,
    pub contacts_purged: u64,
    pub deals_purged: u64,
    pub activities_purged: u64,
    pub audit_events_purged: u64,
    pub invitations_removed: u64,
    pub outbox_tokens_blanked: u64,
    /// Schemas vacuumed and analyzed (with `vacuum`).
    pub vacuumed: Vec<String>,
    /// Whether this run looked for bloated indexes (the schedule does
    /// weekly), and the ones it rebuilt.
    pub reindex_ran: bool,
    pub reindexed: Vec<Reindexed>,
    /// Sources of tenants moved to another cluster, kept renamed
    /// (`moved_<id>_<timestamp>`) and dropped once past the retention.
    pub moved_sources_dropped: Vec<String>,
    /// Scratch copies left by a `migrate --rehearse` that was interrupted
    /// (older than a day).
    pub rehearsals_dropped: Vec<String>,
    /// Tenants whose size was sampled for `atrium capacity` (once a day;
    /// the caller takes the samples, into the home registry).
    pub capacity_samples: u64,
    pub failures: Vec<TenantFailure>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantFailure {
    pub subdomain: String,
    pub error: String,
}

/// Runs `maintain` now; `None` when another run holds the lock.
pub async fn maintain(
    admin: &AdminDatabase,
    policy: &Policy,
) -> anyhow::Result<Option<MaintainReport>> {
    let db = admin.database();
    // The lock goes with the session when `_lock` is dropped.
    let Some(_lock) = lock(db).await? else {
        return Ok(None);
    };
    run(db, policy).await.map(Some)
}

/// A session holding the `maintain` lock, unless another run holds it.
async fn lock(db: &Database) -> anyhow::Result<Option<tokio_postgres::Client>> {
    let session = db.dedicated_connection().await?;
    let acquired: bool = session
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTENANCE_LOCK_KEY])
        .await?
        .get(0);
    Ok(acquired.then_some(session))
}

/// Runs `maintain` unless a run started less than `interval` ago (on any
/// server) or one is running: what the schedule inside `serve` calls.
pub async fn maintain_if_due(
    admin: &AdminDatabase,
    policy: &Policy,
    interval: Duration,
) -> anyhow::Result<Option<MaintainReport>> {
    let db = admin.database();
    let Some(lock) = lock(db).await? else {
        return Ok(None);
    };
    let due: bool = lock
        .query_one(
            "SELECT coalesce(max(started_at) < now() - make_interval(secs => $1), true)
               FROM public.maintenance_runs",
            &[&interval.as_secs_f64()],
        )
        .await?
        .get(0);
    if !due {
        return Ok(None);
    }
    run(db, policy).await.map(Some)
}

async fn run(db: &Database, policy: &Policy) -> anyhow::Result<MaintainReport> {
    let started = Instant::now();
    let started_at = Utc::now();
    let mut report = MaintainReport {
        started_at: Some(started_at),
        ..Default::default()
    };
    let session = db.connection().await?;
    let tenants = session
        .query(
            "SELECT subdomain, schema_name FROM public.tenants ORDER BY id",
            &[],
        )
        .await?;
    let mut walker = SchemaWalker::new(db);
    for tenant in tenants {
        let (subdomain, schema): (String, String) = (tenant.get(0), tenant.get(1));
        report.tenants += 1;
        let housekeeping = async {
            tenant_housekeeping(walker.connection().await?, &schema, policy, &mut report).await
        };
        let span = tracing::info_span!("maintain_tenant", tenant = %subdomain);
        if let Err(e) = tracing::Instrument::instrument(housekeeping, span).await {
            report.failures.push(TenantFailure {
                subdomain,
                error: format!("{e:#}"),
            });
        }
    }
    report.invitations_removed = session
        .execute(
            "DELETE FROM public.invitations
              WHERE revoked_at IS NOT NULL OR (accepted_at IS NULL AND expires_at <= now())",
            &[],
        )
        .await?;
    let expired = session
        .query(
            "SELECT id, body FROM public.outbox
              WHERE token_expires_at <= now()
                AND (body ~ 'token=[A-Za-z0-9_-]' OR body LIKE 'sealed:v1:%')",
            &[],
        )
        .await?;
    for row in expired {
        let (id, body): (i64, String) = (row.get(0), row.get(1));
        let blanked = crate::data::outbox::expired_body(&body);
        if blanked != body {
            session
                .execute(
                    "UPDATE public.outbox SET body = $2 WHERE id = $1",
                    &[&id, &blanked],
                )
                .await?;
            report.outbox_tokens_blanked += 1;
        }
    }
    // Figures of servers that stopped without withdrawing them.
    session
        .execute(
            "DELETE FROM public.tenant_metrics WHERE reported_at < now() - interval '1 hour'",
            &[],
        )
        .await?;
    report.moved_sources_dropped = drop_old_moved_sources(&session, policy.retention).await?;
    report.rehearsals_dropped = drop_old_rehearsals(&session).await?;
    if policy.vacuum {
        report.vacuumed = vacuum_written(db).await?;
    }
    if let Some(every) = policy.reindex_every
        && reindex_due(&session, every).await?
    {
        // After the vacuum: the estimate reads the statistics it refreshed.
        let (rebuilt, failed) = index_health::reindex_bloated(db).await?;
        report.reindex_ran = true;
        report.reindexed = rebuilt;
        report.failures.extend(
            failed
                .into_iter()
                .map(|(subdomain, error)| TenantFailure { subdomain, error }),
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    session
        .execute(
            "WITH run AS (INSERT INTO public.maintenance_runs (started_at, report) VALUES ($1, $2))
             DELETE FROM public.maintenance_runs
              WHERE id <= (SELECT max(id) FROM public.maintenance_runs) - $3 + 1
                -- the last run that rebuilt indexes says when the next is due
                AND id IS DISTINCT FROM (SELECT max(id) FROM public.maintenance_runs
                                          WHERE (report->>'reindex_ran')::boolean)",
            &[&started_at, &serde_json::to_value(&report)?, &RUNS_KEPT],
        )
        .await?;
    Ok(report)
}

/// Whether no run has looked for bloated indexes in the last `every`.
async fn reindex_due(session: &tokio_postgres::Client, every: Duration) -> anyhow::Result<bool> {
    if every.is_zero() {
        return Ok(true);
    }
    Ok(session
        .query_one(
            "SELECT coalesce(max(started_at) < now() - make_interval(secs => $1), true)
               FROM public.maintenance_runs WHERE (report->>'reindex_ran')::boolean",
            &[&every.as_secs_f64()],
        )
        .await?
        .get(0))
}

/// Drops the kept sources of moved tenants whose move is older than
/// `retention`.
async fn drop_old_moved_sources(
    session: &tokio_postgres::Client,
    retention: Duration,
) -> anyhow::Result<Vec<String>> {
    drop_schemas_older_than(session, "^moved_[0-9]+_[0-9]{14}$", retention).await
}

/// Drops the scratch schemas of rehearsals that were interrupted before
/// they could drop their own (a rehearsal lasts minutes, not a day).
async fn drop_old_rehearsals(session: &tokio_postgres::Client) -> anyhow::Result<Vec<String>> {
    drop_schemas_older_than(
        session,
        crate::fleet::migrate::rehearse::SCRATCH_PATTERN,
        Duration::from_secs(24 * 3600),
    )
    .await
}

/// Drops the schemas whose name matches `pattern` and holds, as its first
/// run of 14 digits, a UTC time (`YYYYMMDDHHMMSS`) older than `age`.
async fn drop_schemas_older_than(
    session: &tokio_postgres::Client,
    pattern: &str,
    age: Duration,
) -> anyhow::Result<Vec<String>> {
    let old = session
        .query(
            "SELECT nspname::text FROM pg_namespace
              WHERE nspname ~ $1
                -- the name's digits are UTC, read back as they are written
                AND to_timestamp(substring(nspname FROM '[0-9]{14}'), 'YYYYMMDDHH24MISS')::timestamp
                    < (now() AT TIME ZONE 'UTC') - make_interval(secs => $2)
              ORDER BY 1",
            &[&pattern, &age.as_secs_f64()],
        )
        .await?;
    let mut dropped = Vec::new();
    for row in old {
        let schema: String = row.get(0);
        session
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", quote_ident(&schema)))
            .await?;
        dropped.push(schema);
    }
    Ok(dropped)
}

/// One tenant's housekeeping, in one statement (one transaction).
async fn tenant_housekeeping(
    session: &tokio_postgres::Client,
    schema: &str,
    policy: &Policy,
    report: &mut MaintainReport,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_tenant_schema_name(schema),
        "the registry names schema {schema:?}"
    );
    let s = quote_ident(schema);
    let row = session
        .query_one(
            &format!(
                "WITH
                 sessions AS (
                   DELETE FROM {s}.sessions
                    WHERE expires_at <= now() OR revoked_at IS NOT NULL
                       OR last_seen_at <= now() - make_interval(secs => $1)
                   RETURNING 1),
                 tokens AS (
                   DELETE FROM {s}.password_reset_tokens
                    WHERE expires_at <= now() OR used_at IS NOT NULL
                   RETURNING 1),
                 activities AS (
                   DELETE FROM {s}.activities WHERE deleted_at <= now() - make_interval(secs => $2)
                   RETURNING id),
                 deals AS (
                   DELETE FROM {s}.deals WHERE deleted_at <= now() - make_interval(secs => $2)
                   RETURNING id),
                 contacts AS (
                   DELETE FROM {s}.contacts WHERE deleted_at <= now() - make_interval(secs => $2)
                   RETURNING id),
                 companies AS (
                   DELETE FROM {s}.companies WHERE deleted_at <= now() - make_interval(secs => $2)
                   RETURNING id),
                 audit AS (
                   DELETE FROM {s}.audit_events a
                    WHERE (a.entity = 'activity' AND a.entity_id IN (SELECT id FROM activities))
                       OR (a.entity = 'deal' AND a.entity_id IN (SELECT id FROM deals))
                       OR (a.entity = 'contact' AND a.entity_id IN (SELECT id FROM contacts))
                       OR (a.entity = 'company' AND a.entity_id IN (SELECT id FROM companies))
                   RETURNING 1)
                 SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM tokens),
                        (SELECT count(*) FROM companies), (SELECT count(*) FROM contacts),
                        (SELECT count(*) FROM deals), (SELECT count(*) FROM activities),
                        (SELECT count(*) FROM audit)"
            ),
            &[
                &policy.session_idle.as_secs_f64(),
                &policy.retention.as_secs_f64(),
            ],
        )
        .await?;
    let count = |i: usize| row.get::<_, i64>(i) as u64;
    report.sessions_removed += count(0);
    report.reset_tokens_removed += count(1);
    report.companies_purged += count(2);
    report.contacts_purged += count(3);
    report.deals_purged += count(4);
    report.activities_purged += count(5);
    report.audit_events_purged += count(6);
    Ok(())
}

/// A session for visiting every tenant schema in turn. It is replaced
/// after as many schemas as a pooled session may serve: a backend's catalog
/// caches grow with every schema it touches and never shrink, so one
/// session walking ten thousand schemas would end up holding about a GiB.
struct SchemaWalker<'a> {
    db: &'a Database,
    session: Option<tokio_postgres::Client>,
    visits: usize,
}

impl<'a> SchemaWalker<'a> {
    fn new(db: &'a Database) -> Self {
        Self {
            db,
            session: None,
            visits: 0,
        }
    }

    /// The session for the next schema.
    async fn connection(&mut self) -> anyhow::Result<&tokio_postgres::Client> {
        if self.visits.is_multiple_of(crate::CONNECTION_MAX_TENANTS) {
            self.session = None;
        }
        self.visits += 1;
        if self.session.is_none() {
            self.session = Some(self.db.dedicated_connection().await?);
        }
        Ok(self.session.as_ref().expect("connected above"))
    }
}

/// `VACUUM ANALYZE` of every tenant schema with a table written since it
/// was last vacuumed or analyzed; the schemas vacuumed.
async fn vacuum_written(db: &Database) -> anyhow::Result<Vec<String>> {
    let session = db.connection().await?;
    let rows = session
        .query(
            "SELECT t.schema_name
               FROM public.tenants t
               JOIN pg_stat_user_tables s ON s.schemaname = t.schema_name
              GROUP BY t.id, t.schema_name
             HAVING sum(s.n_mod_since_analyze + s.n_ins_since_vacuum + s.n_dead_tup) > 0
              ORDER BY t.id",
            &[],
        )
        .await?;
    let mut vacuumed = Vec::new();
    let mut walker = SchemaWalker::new(db);
    for row in rows {
        let schema: String = row.get(0);
        anyhow::ensure!(
            is_tenant_schema_name(&schema),
            "the registry names schema {schema:?}"
        );
        let tables: Vec<&str> = ARCHIVED_TABLES
            .iter()
            .chain(NOT_ARCHIVED)
            .copied()
            .collect();
        walker
            .connection()
            .await?
            .batch_execute(&vacuum_statement(&schema, &tables))
            .await?;
        vacuumed.push(schema);
    }
    Ok(vacuumed)
}

/// `VACUUM ANALYZE` of some of one tenant's tables, after a bulk write
/// (an import): the new rows' entries leave the GIN indexes' pending
/// lists, which every search of the tenant otherwise reads whole, once
/// per index condition (on 100,000 imported contacts a search took two
/// seconds instead of ten milliseconds), and the planner learns the
/// tables' new sizes. A login that does not own the tables gets
/// PostgreSQL's warning and nothing is done; the scheduled run catches up.
pub async fn vacuum_tables(
    admin: &AdminDatabase,
    schema: &str,
    tables: &[&str],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_tenant_schema_name(schema),
        "not a tenant schema: {schema:?}"
    );
    admin
        .database()
        .connection()
        .await?
        .batch_execute(&vacuum_statement(schema, tables))
        .await?;
    Ok(())
}

fn vacuum_statement(schema: &str, tables: &[&str]) -> String {
    let s = quote_ident(schema);
    let tables: Vec<String> = tables
        .iter()
        .map(|t| format!("{s}.{}", quote_ident(t)))
        .collect();
    format!("VACUUM (ANALYZE) {}", tables.join(", "))
}
