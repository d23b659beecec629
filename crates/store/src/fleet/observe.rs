//! What the database says about each tenant: index usage and connections
//! (`atrium indexes`, `atrium connections`). Tenants are named by the
//! registry; PostgreSQL's statistics views are read once per command.

use serde::Serialize;

use crate::Database;

/// A tenant's indexes, summed.
#[derive(Debug, Clone, Serialize)]
pub struct TenantIndexes {
    /// Filled in by the caller that reads several clusters.
    pub cluster: String,
    pub subdomain: String,
    pub schema_name: String,
    pub indexes: i64,
    pub scans: i64,
    pub bytes: i64,
    /// Indexes never scanned that enforce nothing (not primary, not unique).
    pub unused: i64,
}

/// One index of one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct IndexUsage {
    pub table: String,
    pub index: String,
    pub scans: i64,
    pub bytes: i64,
    /// Enforces a primary key or uniqueness, so it stays even unscanned.
    pub enforces: bool,
    pub unused: bool,
}

const UNUSED: &str = "s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary";

/// Every tenant's index totals, by tenant id.
pub async fn indexes_by_tenant(db: &Database) -> anyhow::Result<Vec<TenantIndexes>> {
    let session = db.connection().await?;
    let rows = session
        .query(
            &format!(
                "SELECT t.subdomain, t.schema_name, count(s.indexrelid), coalesce(sum(s.idx_scan), 0)::bigint,
                        coalesce(sum(pg_relation_size(s.indexrelid)), 0)::bigint,
                        count(*) FILTER (WHERE {UNUSED})
                   FROM public.tenants t
                   LEFT JOIN pg_stat_user_indexes s ON s.schemaname = t.schema_name
                   LEFT JOIN pg_index i ON i.indexrelid = s.indexrelid
                  GROUP BY t.id, t.subdomain, t.schema_name
                  ORDER BY t.id"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TenantIndexes {
            cluster: String::new(),
            subdomain: r.get(0),
            schema_name: r.get(1),
            indexes: r.get(2),
            scans: r.get(3),
            bytes: r.get(4),
            unused: r.get(5),
        })
        .collect())
}

/// One tenant's indexes, largest first.
pub async fn indexes_of(db: &Database, schema_name: &str) -> anyhow::Result<Vec<IndexUsage>> {
    let session = db.connection().await?;
    let rows = session
        .query(
            &format!(
                "SELECT s.relname::text, s.indexrelname::text, s.idx_scan,
                        pg_relation_size(s.indexrelid), i.indisunique OR i.indisprimary, {UNUSED}
                   FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
                  WHERE s.schemaname = $1
                  ORDER BY 4 DESC, 1, 2"
            ),
            &[&schema_name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| IndexUsage {
            table: r.get(0),
            index: r.get(1),
            scans: r.get(2),
            bytes: r.get(3),
            enforces: r.get(4),
            unused: r.get(5),
        })
        .collect())
}

/// Open connections to this database, grouped by what they serve.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionGroup {
    /// Filled in by the caller that reads several clusters.
    pub cluster: String,
    /// The tenant whose transaction the connections are in (the tenant
    /// context sets `application_name` to its schema), if any.
    pub tenant: Option<String>,
    pub application_name: String,
    pub state: String,
    pub connections: i64,
    /// How long the longest of them has been in this state.
    pub longest_seconds: f64,
}

/// A tenant session's `application_name`: its schema, then a space and
/// the id of the request it serves, if any.
const TENANT_SESSION: &str = "'^tenant_[1-9][0-9]*( |$)'";

pub async fn connections(db: &Database) -> anyhow::Result<Vec<ConnectionGroup>> {
    let session = db.connection().await?;
    let rows = session
        .query(
            &format!(
                "WITH a AS (
                   SELECT CASE WHEN application_name ~ {TENANT_SESSION}
                               THEN split_part(application_name, ' ', 1)
                               ELSE coalesce(application_name, '') END AS name,
                          coalesce(state, 'unknown') AS state, state_change
                     FROM pg_stat_activity
                    WHERE datname = current_database() AND backend_type = 'client backend'
                      AND pid <> pg_backend_pid())
                 SELECT t.subdomain, a.name, a.state, count(*),
                        coalesce(extract(epoch FROM max(now() - a.state_change)), 0)::float8
                   FROM a LEFT JOIN public.tenants t ON t.schema_name = a.name
                  GROUP BY t.subdomain, a.name, a.state
                  ORDER BY count(*) DESC, 2, 3"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ConnectionGroup {
            cluster: String::new(),
            tenant: r.get(0),
            application_name: r.get(1),
            state: r.get(2),
            connections: r.get(3),
            longest_seconds: (r.get::<_, f64>(4) * 10.0).round() / 10.0,
        })
        .collect())
}

/// A statement running in a tenant transaction.
#[derive(Debug, Clone, Serialize)]
pub struct RunningQuery {
    /// Filled in by the caller that reads several clusters.
    pub cluster: String,
    /// Filled in by the caller from the home registry.
    pub tenant: Option<String>,
    pub schema_name: String,
    pub pid: i32,
    pub state: String,
    /// The request it serves (its `X-Request-Id`), when it serves one.
    pub request_id: Option<String>,
    /// How long the statement has run.
    pub seconds: f64,
    /// Its text, cut at 200 characters (parameters are not in it).
    pub query: String,
}

/// Tenant statements that have run for at least `over_seconds`, longest
/// first. A tenant transaction names its session after its schema
/// (`application_name`), which is how they are told from the rest.
pub async fn running_queries(
    db: &Database,
    over_seconds: f64,
) -> anyhow::Result<Vec<RunningQuery>> {
    let rows = db
        .connection()
        .await?
        .query(
            &format!(
                "SELECT split_part(a.application_name, ' ', 1), a.pid, COALESCE(a.state, 'unknown'),
                        extract(epoch FROM now() - a.query_start)::float8, left(a.query, 200),
                        nullif(split_part(a.application_name, ' ', 2), '')
                   FROM pg_stat_activity a
                  WHERE a.datname = current_database() AND a.backend_type = 'client backend'
                    AND a.application_name ~ {TENANT_SESSION}
                    AND a.state IS DISTINCT FROM 'idle' AND a.pid <> pg_backend_pid()
                    AND now() - a.query_start >= make_interval(secs => $1)
                  ORDER BY 4 DESC"
            ),
            &[&over_seconds],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunningQuery {
            cluster: String::new(),
            tenant: None,
            schema_name: r.get(0),
            pid: r.get(1),
            state: r.get(2),
            request_id: r.get(5),
            seconds: (r.get::<_, f64>(3) * 10.0).round() / 10.0,
            query: r.get(4),
        })
        .collect())
}

/// Cancels the running statements of tenant sessions: the one with `pid`,
/// or every one of schema `schema`. Only sessions in a tenant transaction
/// are touched (never the operator's, nor another program's); returns the
/// statements cancelled.
pub async fn cancel_queries(
    db: &Database,
    pid: Option<i32>,
    schema: Option<&str>,
) -> anyhow::Result<u64> {
    let rows = db
        .connection()
        .await?
        .query(
            &format!(
                "SELECT pg_cancel_backend(a.pid) FROM pg_stat_activity a
                  WHERE a.datname = current_database() AND a.backend_type = 'client backend'
                    AND a.application_name ~ {TENANT_SESSION}
                    AND a.state IS DISTINCT FROM 'idle' AND a.pid <> pg_backend_pid()
                    AND ($1::int IS NULL OR a.pid = $1)
                    AND ($2::text IS NULL OR split_part(a.application_name, ' ', 1) = $2)"
            ),
            &[&pid, &schema],
        )
        .await?;
    Ok(rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64)
}
