//! What the API benchmarks run against: tenants filled with records,
//! large-tier, each with a signed-in admin.

use atrium_store::Database;
use atrium_store::registry::naming::tenant_role_name;
use futures::{StreamExt, TryStreamExt};

/// A tenant as the benchmarks drive it.
#[derive(Clone)]
pub(crate) struct BenchTenant {
    pub subdomain: String,
    pub schema: String,
    pub role: String,
    pub token: String,
    pub token_hash: String,
}

/// Contacts and deals per tenant for the record workloads.
pub(crate) const CONTACTS_PER_TENANT: i32 = 200;
pub(crate) const DEALS_PER_TENANT: i32 = 100;
/// Fills the tenants' schemas with a few hundred records each, `jobs` at
/// a time, on connections that close after a few hundred tenants (a
/// backend's caches grow with every schema it writes to).
pub(crate) async fn fill_all(
    db: &Database,
    tenants: &[BenchTenant],
    jobs: usize,
) -> anyhow::Result<()> {
    futures::stream::iter(tenants.chunks(atrium_store::CONNECTION_MAX_TENANTS / jobs.max(1)))
        .map(|chunk| async move {
            let session = db.dedicated_connection().await?;
            for t in chunk {
                fill_records(&session, &t.schema).await?;
            }
            anyhow::Ok(())
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<()>()
        .await
}

/// Fills a tenant's schema with a few hundred records, in one statement,
/// then leaves the tables as the scheduled maintenance (hourly `VACUUM
/// ANALYZE` of written schemas) does: vacuumed, which also moves the new
/// rows' entries from the GIN indexes' pending lists into the indexes
/// proper. Left pending, every search of the tenant would scan the whole
/// list once per index condition, a state a server never keeps for more
/// than the maintenance interval.
async fn fill_records(session: &tokio_postgres::Client, schema: &str) -> anyhow::Result<()> {
    session
        .batch_execute(&format!(
            "INSERT INTO {schema}.contacts (first_name, last_name, email, created_by)
               SELECT (ARRAY['John','Maria','Joanna','Ahmed','Wei','Olga','Jon'])[1 + g % 7],
                      (ARRAY['Smith','Garcia','Okafor','Chen','Novak','Smithers'])[1 + g % 6] || g,
                      'person' || g || '@example.com', 1
               FROM generate_series(1, {CONTACTS_PER_TENANT}) g;
             INSERT INTO {schema}.deals (title, value, probability, stage, owner_id, created_by, expected_close_date)
               SELECT 'Deal ' || g, (g * 137 % 50000)::numeric, 50, 
                      (ARRAY['lead','qualified','proposal','negotiation','won','lost'])[1 + g % 6], 1, 1,
                      DATE '2026-01-01' + g
               FROM generate_series(1, {DEALS_PER_TENANT}) g;"
        ))
        .await?;
    // Not in the statement above: VACUUM refuses to run inside a
    // multi-statement string.
    session
        .batch_execute(&format!(
            "VACUUM (ANALYZE) {schema}.contacts, {schema}.deals"
        ))
        .await?;
    Ok(())
}

/// Makes every tenant large-tier: throughput benchmarks measure the server,
/// and a small tier's request rate (50/s) would cap a hot set of 100
/// tenants at 5,000 requests a second.
pub(crate) async fn large_tier_for_all(db: &Database) -> anyhow::Result<()> {
    db.connection()
        .await?
        .execute("UPDATE public.tenants SET tier = 'large'", &[])
        .await?;
    Ok(())
}

/// Gives every tenant's admin a session with a known token. The inserts
/// run on short-lived connections, so the benchmark's own backends do not
/// grow a cache of the whole fleet.
pub(crate) async fn sessions_for_all(db: &Database) -> anyhow::Result<Vec<BenchTenant>> {
    let rows = {
        let session = db.connection().await?;
        let prefix = atrium_store::registry::role_prefix(&session).await?;
        let rows = session
            .query(
                "SELECT id, subdomain, schema_name FROM public.tenants ORDER BY id",
                &[],
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let (id, subdomain, schema): (i32, String, String) =
                    (row.get(0), row.get(1), row.get(2));
                (tenant_role_name(&prefix, id), id, subdomain, schema)
            })
            .collect::<Vec<_>>()
    };
    // Each session was last seen at a random point of the idle clock's
    // interval, as in a steady state: their clocks come due one by one,
    // not all in the same minute.
    let touch_seconds = atrium_services::auth::AuthSettings::default()
        .touch_interval
        .as_secs_f64();
    let mut tenants = Vec::new();
    for chunk in rows.chunks(atrium_store::CONNECTION_MAX_TENANTS) {
        let session = db.dedicated_connection().await?;
        for (role, id, subdomain, schema) in chunk {
            let token = format!("bench-token-{id}-{}", rand::random::<u64>());
            let token_hash = atrium_services::tokens::hash(&token);
            session
                .execute(
                    &format!(
                        "INSERT INTO {schema}.sessions (user_id, token, expires_at, last_seen_at)
                         VALUES (1, $1, now() + interval '1 day', now() - random() * make_interval(secs => $2))"
                    ),
                    &[&token_hash, &touch_seconds],
                )
                .await?;
            tenants.push(BenchTenant {
                subdomain: subdomain.clone(),
                role: role.clone(),
                schema: schema.clone(),
                token,
                token_hash,
            });
        }
    }
    Ok(tenants)
}
