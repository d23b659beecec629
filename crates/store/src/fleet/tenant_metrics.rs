//! Servers' per-tenant figures of the last hour, shared through the
//! registry (`public.tenant_metrics`) for `atrium top`.

use std::collections::HashMap;

use atrium_domain::latency::Histogram;
use serde::Serialize;

use crate::Database;

/// One server's last hour of one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub tenant_id: i32,
    pub requests: u64,
    pub errors: u64,
    pub db_time_ms: f64,
    pub latency: Vec<i32>,
    pub slow_statements: u64,
}

/// Rows older than this are from servers that stopped.
const FRESH_SECONDS: f64 = 180.0;

/// Replaces `server_id`'s figures with `rows` (tenants without traffic in
/// the last hour drop out).
pub async fn publish(db: &Database, server_id: &str, rows: &[Published]) -> anyhow::Result<()> {
    let session = db.connection().await?;
    let ids: Vec<i32> = rows.iter().map(|r| r.tenant_id).collect();
    session
        .execute(
            "WITH gone AS (
               DELETE FROM public.tenant_metrics WHERE server_id = $1 AND tenant_id <> ALL($3))
             INSERT INTO public.tenant_metrics
                    (server_id, tenant_id, reported_at, requests, errors, db_time_ms, latency_histogram,
                     slow_statements)
             SELECT $1, r.tenant_id, now(), r.requests, r.errors, r.db_time_ms,
                    ARRAY(SELECT jsonb_array_elements_text(r.latency)::int), r.slow_statements
               FROM jsonb_to_recordset($2) AS r(tenant_id int, requests bigint, errors bigint,
                                                db_time_ms float8, latency jsonb,
                                                slow_statements bigint)
               -- a tenant deleted since the figures were taken
              WHERE EXISTS (SELECT 1 FROM public.tenants t WHERE t.id = r.tenant_id)
             ON CONFLICT (server_id, tenant_id) DO UPDATE SET
                    reported_at = now(), requests = EXCLUDED.requests, errors = EXCLUDED.errors,
                    db_time_ms = EXCLUDED.db_time_ms, latency_histogram = EXCLUDED.latency_histogram,
                    slow_statements = EXCLUDED.slow_statements",
            &[&server_id, &serde_json::to_value(rows)?, &ids],
        )
        .await?;
    Ok(())
}

/// Removes a stopping server's figures.
pub async fn withdraw(db: &Database, server_id: &str) -> anyhow::Result<()> {
    db.connection()
        .await?
        .execute(
            "DELETE FROM public.tenant_metrics WHERE server_id = $1",
            &[&server_id],
        )
        .await?;
    Ok(())
}

/// A tenant's last hour across every running server.
#[derive(Debug, Clone, Serialize)]
pub struct TenantLoad {
    pub tenant_id: i32,
    pub subdomain: String,
    pub cluster: String,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub db_time_ms: f64,
    /// Statements past the servers' slow-statement threshold.
    pub slow_statements: u64,
    pub servers: usize,
}

/// The busiest tenants of the last hour, most requests first.
pub async fn busiest(db: &Database, limit: usize) -> anyhow::Result<Vec<TenantLoad>> {
    let session = db.connection().await?;
    let rows = session
        .query(
            "SELECT m.tenant_id, t.subdomain, m.requests, m.errors, m.db_time_ms, m.latency_histogram,
                    t.cluster, m.slow_statements
               FROM public.tenant_metrics m JOIN public.tenants t ON t.id = m.tenant_id
              WHERE m.reported_at > now() - make_interval(secs => $1)",
            &[&FRESH_SECONDS],
        )
        .await?;
    let mut by_tenant: HashMap<i32, (TenantLoad, Histogram)> = HashMap::new();
    for row in rows {
        let tenant_id: i32 = row.get(0);
        let entry = by_tenant.entry(tenant_id).or_insert_with(|| {
            (
                TenantLoad {
                    tenant_id,
                    subdomain: row.get(1),
                    cluster: row.get(6),
                    requests: 0,
                    errors: 0,
                    p50_ms: 0.0,
                    p99_ms: 0.0,
                    db_time_ms: 0.0,
                    slow_statements: 0,
                    servers: 0,
                },
                Histogram::default(),
            )
        });
        entry.0.requests += row.get::<_, i64>(2).max(0) as u64;
        entry.0.errors += row.get::<_, i64>(3).max(0) as u64;
        entry.0.db_time_ms += row.get::<_, f64>(4);
        entry.0.slow_statements += row.get::<_, i64>(7).max(0) as u64;
        entry.0.servers += 1;
        entry
            .1
            .merge(&Histogram::from_counts(&row.get::<_, Vec<i32>>(5)));
    }
    let mut loads: Vec<TenantLoad> = by_tenant
        .into_values()
        .map(|(mut load, latency)| {
            load.p50_ms = (latency.quantile_ms(0.5) * 100.0).round() / 100.0;
            load.p99_ms = (latency.quantile_ms(0.99) * 100.0).round() / 100.0;
            load.db_time_ms = (load.db_time_ms * 100.0).round() / 100.0;
            load
        })
        .collect();
    loads.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(b.db_time_ms.total_cmp(&a.db_time_ms))
            .then(a.tenant_id.cmp(&b.tenant_id))
    });
    loads.truncate(limit);
    Ok(loads)
}
